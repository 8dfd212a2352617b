//! Repair of a WAV file a killed process left behind: its header says how much audio there
//! was at the last checkpoint (at most a second old); the audio written after that is on disk
//! but outside the sizes. Repair sets the RIFF, `data` (and `fact`) sizes from the file's
//! length, so every whole sample frame written is playable again.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be repaired.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Reading or writing the file failed.
    #[error("cannot repair {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a RIFF/WAVE file callrec could have written.
    #[error("cannot repair {path}: {why}")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
}

/// What a repair changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Audio bytes the header claimed.
    pub data_before: u32,
    /// Audio bytes it claims now (whole sample frames on disk).
    pub data_after: u32,
}

/// Sets the header's sizes from the file's length. Idempotent: a final file is left as is.
pub fn repair(path: &Path) -> Result<Repaired, RepairError> {
    let io = |source| RepairError::Io { path: path.to_owned(), source };
    let bad = |why| RepairError::NotWav { path: path.to_owned(), why };
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    // callrec's headers are 44 (PCM16) or 58 (G.711) bytes; 512 covers any extra chunk.
    let mut head = [0u8; 512];
    let n = read_up_to(&mut f, &mut head).map_err(io)?;
    let head = &head[..n];
    if n < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let (mut at, mut block_align, mut fact_at, mut data_at) = (12usize, None, None, None);
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u32::from_le_bytes([head[at + 4], head[at + 5], head[at + 6], head[at + 7]]) as usize;
        match id {
            b"fmt " if at + 8 + 14 <= head.len() => {
                block_align = Some(u16::from_le_bytes([head[at + 20], head[at + 21]]) as u64);
            }
            b"fact" => fact_at = Some(at + 8),
            b"data" => {
                data_at = Some(at);
                break;
            }
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    let (Some(block), Some(data_at)) = (block_align.filter(|b| *b > 0), data_at) else {
        return Err(bad("no fmt or data chunk in the first 512 bytes"));
    };
    let data_before = u32::from_le_bytes([head[data_at + 4], head[data_at + 5], head[data_at + 6], head[data_at + 7]]);
    let on_disk = len.saturating_sub(data_at as u64 + 8);
    // a WAV cannot say more than 4 GiB: keep the whole frames that fit
    let data_after = u32::try_from(on_disk - on_disk % block).unwrap_or(u32::MAX / block as u32 * block as u32);
    // RIFF size = everything after its own 8 bytes = header past them + data chunk
    let riff = u32::try_from(data_at as u64 + u64::from(data_after)).unwrap_or(u32::MAX);
    let mut put = |at: u64, v: u32| -> std::io::Result<()> {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&v.to_le_bytes())
    };
    put(4, riff).map_err(io)?;
    put(data_at as u64 + 4, data_after).map_err(io)?;
    if let Some(fact) = fact_at {
        put(fact as u64, data_after / block as u32).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    Ok(Repaired { data_before, data_after })
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::wav::g711_header;
    use crate::writer::Codec;

    #[test]
    fn a_killed_g711_file_gets_every_whole_frame_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.wav");
        // the header says 100 bytes (last checkpoint), 1001 bytes of audio are on disk
        let mut bytes = g711_header(Codec::Pcma, 100).to_vec();
        bytes.extend(std::iter::repeat_n(0xd5u8, 1001));
        std::fs::write(&p, &bytes).unwrap();
        let r = repair(&p).unwrap();
        assert_eq!(r, Repaired { data_before: 100, data_after: 1000 });
        let fixed = std::fs::read(&p).unwrap();
        assert_eq!(&fixed[..58], &g711_header(Codec::Pcma, 1000)[..], "header as a final file's");
        // idempotent
        assert_eq!(repair(&p).unwrap(), Repaired { data_before: 1000, data_after: 1000 });
    }

    #[test]
    fn a_killed_pcm16_file_is_readable_by_hound_after_repair() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("y.wav");
        let spec = hound::WavSpec { channels: 2, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for i in 0..800i16 {
            w.write_sample(i).unwrap();
        }
        w.finalize().unwrap(); // the last checkpoint: sizes valid for 800 samples
        // what the killed process wrote after it: 1200 more samples, outside the sizes
        let mut tail = Vec::new();
        for i in 0..1200i16 {
            tail.extend_from_slice(&(-i).to_le_bytes());
        }
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(&tail).unwrap();
        let r = repair(&p).unwrap();
        assert_eq!(r, Repaired { data_before: 1600, data_after: 4000 });
        let samples: Vec<i16> = hound::WavReader::open(&p).unwrap().into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(samples.len(), 2000);
        assert_eq!(samples[1999], -1199);
    }

    #[test]
    fn not_a_wav_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("z.wav");
        std::fs::write(&p, b"hello").unwrap();
        assert!(repair(&p).unwrap_err().to_string().contains("not a RIFF/WAVE file"));
        assert!(repair(&d.path().join("missing.wav")).unwrap_err().to_string().contains("cannot repair"));
    }
}
