//! WAV writer tests: headers read back byte by byte, PCM16 read back with hound, a file read
//! while still being written, and a full disk.

use super::*;

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}
fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[test]
fn g711_header_fields() {
    let h = g711_header(Codec::Pcmu, 320);
    assert_eq!(&h[0..4], b"RIFF");
    assert_eq!(u32_at(&h, 4), 50 + 320);
    assert_eq!(&h[8..16], b"WAVEfmt ");
    assert_eq!(u32_at(&h, 16), 18);
    assert_eq!(u16_at(&h, 20), 7);
    assert_eq!(u16_at(&h, 22), 2);
    assert_eq!(u32_at(&h, 24), 8000);
    assert_eq!(u32_at(&h, 28), 16000);
    assert_eq!(u16_at(&h, 32), 2);
    assert_eq!(u16_at(&h, 34), 8);
    assert_eq!(&h[38..42], b"fact");
    assert_eq!(u32_at(&h, 46), 160);
    assert_eq!(&h[50..54], b"data");
    assert_eq!(u32_at(&h, 54), 320);
    assert_eq!(u16_at(&g711_header(Codec::Pcma, 0), 20), 6);
}

#[test]
fn g711_file_is_valid_mid_write_and_after_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.wav");
    let mut w = WavOut::create(&path, SampleKind::Law(Codec::Pcma)).unwrap();
    w.write(Frames::Law(&[1, 2, 3], &[11, 12, 13])).unwrap();
    w.checkpoint().unwrap();
    let d = std::fs::read(&path).unwrap();
    assert_eq!(d.len(), G711_HEADER_LEN + 6);
    assert_eq!(u16_at(&d, 20), 6);
    assert_eq!(u32_at(&d, 4) as usize, d.len() - 8);
    assert_eq!(u32_at(&d, 54), 6);
    assert_eq!(u32_at(&d, 46), 3);
    assert_eq!(&d[58..], &[1, 11, 2, 12, 3, 13]);

    // more data, not yet checkpointed: the header on disk still describes a valid prefix
    w.write(Frames::Law(&[4; 1000], &[14; 1000])).unwrap();
    let d = std::fs::read(&path).unwrap();
    assert!(u32_at(&d, 54) as usize <= d.len() - G711_HEADER_LEN);
    assert_eq!(w.frames_written(), 1003);
    w.finish().unwrap();
    let d = std::fs::read(&path).unwrap();
    assert_eq!(d.len(), G711_HEADER_LEN + 2006);
    assert_eq!(u32_at(&d, 54), 2006);
    assert_eq!(u32_at(&d, 46), 1003);
    assert_eq!(u32_at(&d, 4) as usize, d.len() - 8);
    assert_eq!(&d[d.len() - 2..], &[4, 14]);
}

#[test]
fn pcm16_reads_back_with_hound_mid_write_and_after_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wav");
    let mut w = WavOut::create(&path, SampleKind::Linear).unwrap();
    w.write(Frames::Linear(&[1, -2, 300], &[-1000, 2000, i16::MIN])).unwrap();
    w.checkpoint().unwrap();
    let r = hound::WavReader::open(&path).unwrap();
    assert_eq!(r.spec().channels, 2);
    assert_eq!(r.spec().sample_rate, 8000);
    assert_eq!(r.spec().bits_per_sample, 16);
    let s: Vec<i16> = r.into_samples::<i16>().map(|x| x.unwrap()).collect();
    assert_eq!(s, vec![1, -1000, -2, 2000, 300, i16::MIN]);
    w.write(Frames::Linear(&[5], &[6])).unwrap();
    w.finish().unwrap();
    let s: Vec<i16> =
        hound::WavReader::open(&path).unwrap().into_samples::<i16>().map(|x| x.unwrap()).collect();
    assert_eq!(s.len(), 8);
    assert_eq!(&s[6..], &[5, 6]);
}

#[test]
fn linear_frames_into_a_g711_file_are_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.wav");
    let mut w = WavOut::create(&path, SampleKind::Law(Codec::Pcmu)).unwrap();
    w.write(Frames::Linear(&[0], &[32124])).unwrap();
    w.finish().unwrap();
    let d = std::fs::read(&path).unwrap();
    assert_eq!(&d[58..], &[0xFF, 0x80]);
}

#[test]
fn full_disk_is_an_error_not_a_panic() {
    let Ok(mut w) = WavOut::create(Path::new("/dev/full"), SampleKind::Law(Codec::Pcma)) else {
        return; // no /dev/full on this system
    };
    let big = vec![0xD5u8; WRITE_BUFFER];
    let mut failed = false;
    for _ in 0..4 {
        failed |= w.write(Frames::Law(&big, &big)).is_err();
    }
    failed |= w.checkpoint().is_err();
    assert!(failed, "writing to /dev/full must fail");
    assert!(matches!(w.finish(), Err(WavError::Write { .. })));

    let Ok(mut w) = WavOut::create(Path::new("/dev/full"), SampleKind::Linear) else { return };
    let big = vec![0i16; WRITE_BUFFER];
    let r1 = w.write(Frames::Linear(&big, &big));
    let r2 = w.checkpoint();
    assert!(r1.is_err() || r2.is_err());
}

#[test]
fn create_where_no_directory_can_be_made_says_so() {
    // a regular file where a directory should be: neither root nor anyone can make it
    let d = tempfile::tempdir().unwrap();
    let blocker = d.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("x.wav");
    let e = WavOut::create(&path, SampleKind::Linear).err().unwrap();
    assert!(matches!(e, WavError::Create { .. }));
    assert!(e.to_string().contains(&*path.to_string_lossy()));
}

#[test]
fn create_makes_missing_directories() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a/b/x.wav");
    let w = WavOut::create(&path, SampleKind::Linear).unwrap();
    drop(w);
    assert!(path.exists());
}
