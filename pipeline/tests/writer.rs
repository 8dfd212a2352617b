//! Writer end to end: recordings fed through `Writer::handle` and through `spawn_writer`'s
//! ring, files and sidecars read back.

use callrec_pipeline::flow::{Channel, RecordingId};
use callrec_pipeline::writer::{
    g711, spawn_writer, ChannelSpec, Codec, OutputFormat, RecordingSpec, RtpItem, Writer,
    WriterConfig, WriterMsg, MAX_RTP_LEN,
};
use callrec_pipeline::Timestamp;
use std::path::Path;
use std::time::{Duration, Instant};

const T0: u64 = 1_764_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn chan(pt: u8, codec: Codec) -> ChannelSpec {
    let mut payload_types = heapless::Vec::new();
    payload_types.push((pt, codec)).unwrap();
    ChannelSpec { payload_types, event_pt: Some(101) }
}

fn spec(dir: &Path, id: u32, format: OutputFormat, codecs: [Codec; 2]) -> Box<RecordingSpec> {
    let conf_id = format!("conf-{id}");
    let pt = |c| if c == Codec::Pcma { 8 } else { 0 };
    let mut sidecar = serde_json::Map::new();
    sidecar.insert("conf_id".into(), conf_id.clone().into());
    Box::new(RecordingSpec {
        id: RecordingId(id),
        wav_path: dir.join(format!("{conf_id}.wav")),
        sidecar_path: dir.join(format!("{conf_id}.json")),
        conf_id,
        format,
        channels: [chan(pt(codecs[0]), codecs[0]), chan(pt(codecs[1]), codecs[1])],
        started: Timestamp(T0),
        sidecar,
    })
}

fn item(id: u32, ch: Channel, at_ms: u64, seq: u16, pt: u8, fill: u8) -> RtpItem {
    let mut data = [0u8; MAX_RTP_LEN];
    data[0] = 0x80;
    data[1] = pt;
    data[2..4].copy_from_slice(&seq.to_be_bytes());
    data[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    data[8..12].copy_from_slice(&(0xABCD + ch.index() as u32).to_be_bytes());
    data[12..172].fill(fill);
    RtpItem {
        recording: RecordingId(id),
        channel: ch,
        source: 0,
        ts: Timestamp(T0 + at_ms * MS),
        len: 172,
        data,
    }
}

/// Pushes, waiting while the ring is full (the writer drains it).
fn push(tx: &mut rtrb::Producer<WriterMsg>, mut m: WriterMsg) {
    loop {
        match tx.push(m) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(back)) => {
                m = back;
                std::thread::yield_now();
            }
        }
    }
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn sidecar(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn g711_recording_with_pause_checkpoint_and_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Start(spec(dir.path(), 1, OutputFormat::G711, [Codec::Pcma; 2])), t);
    for i in 0..100u16 {
        let at = i as u64 * 20;
        if i == 25 {
            w.handle(
                WriterMsg::Pause { recording: RecordingId(1), at: Timestamp(T0 + 500 * MS) },
                t,
            );
        }
        if i == 50 {
            w.handle(
                WriterMsg::Resume { recording: RecordingId(1), at: Timestamp(T0 + 1000 * MS) },
                t,
            );
        }
        w.handle(WriterMsg::Rtp(item(1, Channel::Left, at, i, 8, 0x11)), t);
        w.handle(WriterMsg::Rtp(item(1, Channel::Right, at, i, 8, 0x22)), t);
    }
    // a killed process now would leave this file: its header must describe what is there
    w.tick(t + Duration::from_secs(2));
    let d = std::fs::read(dir.path().join("conf-1.wav")).unwrap();
    assert_eq!(&d[0..4], b"RIFF");
    let data_len = u32_at(&d, 54) as usize;
    assert!(data_len > 0 && data_len <= d.len() - 58, "data {data_len} file {}", d.len());
    assert_eq!(u32_at(&d, 4) as usize, 50 + data_len);

    w.handle(WriterMsg::Stop { recording: RecordingId(1), at: Timestamp(T0 + 2100 * MS) }, t);
    assert_eq!(w.open_recordings(), 0);
    let d = std::fs::read(dir.path().join("conf-1.wav")).unwrap();
    assert_eq!(u16::from_le_bytes([d[20], d[21]]), 6);
    assert_eq!(u32_at(&d, 54), 2 * 16000);
    let data = &d[58..];
    let (l, r): (Vec<u8>, Vec<u8>) = data.chunks(2).map(|p| (p[0], p[1])).unzip();
    let s = g711::ALAW_SILENCE;
    assert!(l[..4000].iter().all(|&b| b == 0x11));
    assert!(l[4000..8000].iter().all(|&b| b == s), "paused span is silent");
    assert!(l[8000..].iter().all(|&b| b == 0x11));
    assert!(r[..4000].iter().all(|&b| b == 0x22) && r[4000..8000].iter().all(|&b| b == s));

    let j = sidecar(&dir.path().join("conf-1.json"));
    assert_eq!(j["conf_id"], "conf-1");
    assert_eq!(j["format"], "g711-alaw");
    assert_eq!(j["wav"], "conf-1.wav");
    assert_eq!(j["codec"]["left"], "PCMA");
    assert_eq!(j["duration_samples"], 16000);
    assert_eq!(j["pauses"][0]["start"], (T0 + 500 * MS) as f64 / 1e9);
    assert_eq!(j["channels"]["left"]["packets"], 100);
    assert_eq!(j["channels"]["right"]["lost"], 0);
    assert_eq!(j["failed"], false);
    let rep = w.report();
    assert_eq!((rep.recordings_opened, rep.recordings_closed, rep.packets), (1, 1, 200));
}

#[test]
fn mixed_codecs_give_pcm16_read_back_with_hound() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(
        WriterMsg::Start(spec(dir.path(), 2, OutputFormat::G711, [Codec::Pcma, Codec::Pcmu])),
        t,
    );
    for i in 0..10u16 {
        w.handle(WriterMsg::Rtp(item(2, Channel::Left, i as u64 * 20, i, 8, 0xAA)), t);
        w.handle(WriterMsg::Rtp(item(2, Channel::Right, i as u64 * 20, i, 0, 0x80)), t);
    }
    w.handle(WriterMsg::Stop { recording: RecordingId(2), at: Timestamp(T0 + 200 * MS) }, t);
    let r = hound::WavReader::open(dir.path().join("conf-2.wav")).unwrap();
    assert_eq!((r.spec().channels, r.spec().bits_per_sample, r.spec().sample_rate), (2, 16, 8000));
    let s: Vec<i16> = r.into_samples::<i16>().map(|x| x.unwrap()).collect();
    assert_eq!(s.len(), 2 * 1600);
    assert!(s.chunks(2).all(|p| p == [32256, 32124]));
    let j = sidecar(&dir.path().join("conf-2.json"));
    assert_eq!(j["format"], "pcm16");
    assert_eq!(j["codec"]["right"], "PCMU");
}

#[test]
fn a_failing_recording_does_not_stop_the_others() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    let mut bad = spec(dir.path(), 3, OutputFormat::G711, [Codec::Pcmu; 2]);
    bad.wav_path = "/dev/full".into();
    w.handle(WriterMsg::Start(bad), t);
    w.handle(WriterMsg::Start(spec(dir.path(), 4, OutputFormat::G711, [Codec::Pcmu; 2])), t);
    // 60 s of audio: far more than the write buffer, so /dev/full reports ENOSPC
    for i in 0..3000u16 {
        let at = i as u64 * 20;
        for id in [3, 4] {
            w.handle(WriterMsg::Rtp(item(id, Channel::Left, at, i, 0, 0x55)), t);
        }
        w.tick(t + Duration::from_millis(at));
    }
    for id in [3, 4] {
        w.handle(
            WriterMsg::Stop { recording: RecordingId(id), at: Timestamp(T0 + 60_000 * MS) },
            t,
        );
    }
    let rep = w.report();
    assert_eq!((rep.recordings_closed, rep.recordings_failed), (2, 1));
    assert!(rep.write_errors >= 1);
    let j = sidecar(&dir.path().join("conf-3.json"));
    assert_eq!(j["failed"], true);
    assert!(j["error"].as_str().unwrap().contains("/dev/full"));
    let d = std::fs::read(dir.path().join("conf-4.wav")).unwrap();
    assert_eq!(u32_at(&d, 54) as usize, 2 * 3000 * 160);
    assert_eq!(sidecar(&dir.path().join("conf-4.json"))["failed"], false);
}

#[test]
fn orphans_are_counted() {
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Rtp(item(9, Channel::Left, 0, 0, 8, 1)), t);
    w.handle(WriterMsg::Stop { recording: RecordingId(9), at: Timestamp(T0) }, t);
    assert_eq!(w.report().orphans, 2);
}

#[test]
fn spawn_writer_end_to_end_through_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tx, handle) = spawn_writer(0, None, 64);
    let mut send = |m: WriterMsg| push(&mut tx, m);
    send(WriterMsg::Start(spec(dir.path(), 5, OutputFormat::G711, [Codec::Pcmu; 2])));
    send(WriterMsg::Start(spec(dir.path(), 6, OutputFormat::Pcm16, [Codec::Pcmu; 2])));
    for i in 0..500u16 {
        // right joins 1 s late; seq 100 of the left is lost
        if i != 100 {
            send(WriterMsg::Rtp(item(5, Channel::Left, i as u64 * 20, i, 0, 0x10)));
        }
        if i >= 50 {
            send(WriterMsg::Rtp(item(5, Channel::Right, i as u64 * 20, i - 50, 0, 0x20)));
        }
        send(WriterMsg::Rtp(item(6, Channel::Left, i as u64 * 20, i, 0, 0x80)));
    }
    send(WriterMsg::Stop { recording: RecordingId(5), at: Timestamp(T0 + 10_000 * MS) });
    // recording 6 is never stopped: the writer must finalize it when the producer goes
    drop(tx);
    let rep = handle.join().unwrap();
    assert_eq!((rep.recordings_opened, rep.recordings_closed, rep.recordings_failed), (2, 2, 0));
    assert_eq!(rep.lost, 1);
    assert_eq!(rep.packets, 499 + 450 + 500);

    let d = std::fs::read(dir.path().join("conf-5.wav")).unwrap();
    assert_eq!(u16::from_le_bytes([d[20], d[21]]), 7);
    assert_eq!(u32_at(&d, 54) as usize, 2 * 80_000);
    let (l, r): (Vec<u8>, Vec<u8>) = d[58..].chunks(2).map(|p| (p[0], p[1])).unzip();
    assert!(r[..8000].iter().all(|&b| b == 0xFF) && r[8000..].iter().all(|&b| b == 0x20));
    assert!(l[16000..16160].iter().all(|&b| b == 0xFF), "lost packet is silence");
    assert!(l[..16000].iter().chain(&l[16160..]).all(|&b| b == 0x10));

    let s: Vec<i16> = hound::WavReader::open(dir.path().join("conf-6.wav"))
        .unwrap()
        .into_samples::<i16>()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(s.len(), 2 * 80_000);
    assert!(s.chunks(2).all(|p| p == [32124, 0]));
    let j = sidecar(&dir.path().join("conf-6.json"));
    assert_eq!(j["format"], "pcm16");
    assert_eq!(j["channels"]["left"]["packets"], 500);
}

#[test]
fn running_writer_makes_the_header_valid_without_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tx, handle) = spawn_writer(1, None, 1024);
    push(&mut tx, WriterMsg::Start(spec(dir.path(), 7, OutputFormat::G711, [Codec::Pcma; 2])));
    for i in 0..200u16 {
        push(&mut tx, WriterMsg::Rtp(item(7, Channel::Left, i as u64 * 20, i, 8, 0x33)));
    }
    // No Stop: like a process about to be killed. Within about a second of wall time the
    // header on disk must describe the audio written so far.
    let path = dir.path().join("conf-7.wav");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while Instant::now() < deadline {
        if let Ok(d) = std::fs::read(&path) {
            if d.len() >= 58 {
                seen = u32_at(&d, 54) as usize;
                if seen > 0 {
                    assert!(seen <= d.len() - 58);
                    assert_eq!(u32_at(&d, 4) as usize, 50 + seen);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen > 0, "header never checkpointed while writing");
    drop(tx);
    let rep = handle.join().unwrap();
    assert_eq!(rep.recordings_closed, 1);
}

#[test]
fn sidecar_keys_from_the_control_core_are_written_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tx, handle) = spawn_writer(2, None, 64);
    let mut send = |m: WriterMsg| push(&mut tx, m);
    let id = RecordingId(8);
    let set = |key: &str, value: serde_json::Value| WriterMsg::Sidecar {
        recording: id,
        key: key.into(),
        value: Box::new(value),
    };
    send(WriterMsg::Start(spec(dir.path(), 8, OutputFormat::G711, [Codec::Pcma; 2])));
    let agent_a = serde_json::json!({"dn": "2001", "channel": "right", "from": 0.0, "to": 1.0});
    let agent_b = serde_json::json!({"dn": "2002", "channel": "right", "from": 1.0, "to": null});
    send(set("parties", serde_json::json!([agent_a])));
    for i in 0..100u16 {
        send(WriterMsg::Rtp(item(8, Channel::Left, i as u64 * 20, i, 8, 0x11)));
    }
    // a later value of the same key replaces the earlier; other keys are kept
    send(set("parties", serde_json::json!([agent_a, agent_b])));
    send(set("holds", serde_json::json!([{"from": 0.5, "to": 0.7}])));
    // the writer's own facts stay the writer's
    send(set("format", serde_json::json!("mp3")));
    send(WriterMsg::Sidecar {
        recording: RecordingId(99),
        key: "parties".into(),
        value: Box::new(serde_json::json!([])),
    });
    send(WriterMsg::Stop { recording: id, at: Timestamp(T0 + 2000 * MS) });
    drop(tx);
    let rep = handle.join().unwrap();
    assert_eq!((rep.recordings_closed, rep.orphans), (1, 1), "unknown recording is an orphan");
    let j = sidecar(&dir.path().join("conf-8.json"));
    assert_eq!(j["parties"], serde_json::json!([agent_a, agent_b]));
    assert_eq!(j["holds"][0]["to"], 0.7);
    assert_eq!(j["conf_id"], "conf-8", "the spec's fields are kept");
    assert_eq!(j["format"], "g711-alaw");
    assert_eq!(j["channels"]["left"]["packets"], 100);
}

#[test]
fn two_agents_in_the_right_channel_are_mixed_in_the_file() {
    // A conference: agents on sources 0 and 1 of the right channel, the second joining
    // 1 s in; a packet naming a source past MAX_SOURCES is counted invalid.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Start(spec(dir.path(), 10, OutputFormat::G711, [Codec::Pcma; 2])), t);
    let (a, b) = (g711::linear_to_alaw(4000), g711::linear_to_alaw(-1500));
    for i in 0..100u16 {
        let at = i as u64 * 20;
        w.handle(WriterMsg::Rtp(item(10, Channel::Left, at, i, 8, 0x11)), t);
        w.handle(WriterMsg::Rtp(item(10, Channel::Right, at, i, 8, a)), t);
        if i >= 50 {
            let mut second = item(10, Channel::Right, at, i - 50, 8, b);
            second.source = 1;
            second.data[8..12].copy_from_slice(&0x5EED_u32.to_be_bytes());
            w.handle(WriterMsg::Rtp(second), t);
        }
    }
    let mut stray = item(10, Channel::Right, 0, 0, 8, b);
    stray.source = callrec_pipeline::writer::MAX_SOURCES as u8;
    w.handle(WriterMsg::Rtp(stray), t);
    w.handle(WriterMsg::Stop { recording: RecordingId(10), at: Timestamp(T0 + 2000 * MS) }, t);
    let d = std::fs::read(dir.path().join("conf-10.wav")).unwrap();
    let (l, r): (Vec<u8>, Vec<u8>) = d[58..].chunks(2).map(|p| (p[0], p[1])).unzip();
    let sum = g711::linear_to_alaw(g711::ALAW_TO_LINEAR[a as usize] + g711::ALAW_TO_LINEAR[b as usize]);
    assert_eq!(r.len(), 16000);
    assert!(r[..8000].iter().all(|&x| x == a), "one agent alone is written as sent");
    assert!(r[8000..].iter().all(|&x| x == sum), "two agents are summed");
    assert!(l.iter().all(|&x| x == 0x11));
    let right = &sidecar(&dir.path().join("conf-10.json"))["channels"]["right"];
    assert_eq!((right["packets"].as_u64(), right["invalid"].as_u64()), (Some(151), Some(1)));
    assert_eq!(right["reanchors"], 0);
}

/// Audio a stop's linger (300 ms) lets in after the stop time is dropped: the file ends within
/// STOP_TAIL_NS of the Stop. (Audio beyond the reorder window would already be written: the
/// linger is shorter than the window plus the tail.)
#[test]
fn audio_after_the_stop_time_is_not_written() {
    use callrec_pipeline::writer::recording::STOP_TAIL_NS;
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Start(spec(dir.path(), 1, OutputFormat::G711, [Codec::Pcma; 2])), t);
    // 2 s of audio, then a party goes on sending through the linger (captured after the BYE).
    for i in 0..115u16 {
        w.handle(WriterMsg::Rtp(item(1, Channel::Left, i as u64 * 20, i, 8, 0x11)), t);
    }
    w.handle(WriterMsg::Stop { recording: RecordingId(1), at: Timestamp(T0 + 2000 * MS) }, t);
    let d = std::fs::read(dir.path().join("conf-1.wav")).unwrap();
    let frames = u32_at(&d, 54) as u64 / 2;
    let limit = 2000 * 8 + STOP_TAIL_NS / 125_000;
    assert!(frames >= 2000 * 8 && frames <= limit, "{frames} frames, expected 16000..={limit}");
}

/// Once the stop time is known (`Stopping`), nothing captured past its tail is written, however
/// long the `Stop` takes to follow.
#[test]
fn stopping_caps_the_file_at_the_stop_time() {
    use callrec_pipeline::writer::recording::STOP_TAIL_NS;
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Start(spec(dir.path(), 1, OutputFormat::G711, [Codec::Pcma; 2])), t);
    for i in 0..200u16 {
        if i == 100 {
            w.handle(WriterMsg::Stopping { recording: RecordingId(1), at: Timestamp(T0 + 2000 * MS) }, t);
        }
        w.handle(WriterMsg::Rtp(item(1, Channel::Left, i as u64 * 20, i, 8, 0x11)), t);
    }
    w.handle(WriterMsg::Stop { recording: RecordingId(1), at: Timestamp(T0 + 2000 * MS) }, t);
    let d = std::fs::read(dir.path().join("conf-1.wav")).unwrap();
    let frames = u32_at(&d, 54) as u64 / 2;
    let limit = 2000 * 8 + STOP_TAIL_NS / 125_000;
    assert!(frames >= 2000 * 8 && frames <= limit, "{frames} frames, expected 16000..={limit}");
    let sc = sidecar(&dir.path().join("conf-1.json"));
    assert_eq!(sc["channels"]["left"]["packets"], 200, "every packet is counted as received");
}

/// A starved sender's last packets, captured after the stop but stamped before it, are
/// still written where their timestamps put them.
#[test]
fn late_packets_from_before_the_stop_are_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(0, WriterConfig::default());
    let t = Instant::now();
    w.handle(WriterMsg::Start(spec(dir.path(), 1, OutputFormat::G711, [Codec::Pcma; 2])), t);
    // Both channels to 1.8 s, except the right channel's last 9 packets (1.62..1.8 s): its
    // sender falls behind and they come in one burst 150 ms after the stop.
    for i in 0..91u16 {
        w.handle(WriterMsg::Rtp(item(1, Channel::Left, i as u64 * 20, i, 8, 0x11)), t);
        if i < 82 {
            w.handle(WriterMsg::Rtp(item(1, Channel::Right, i as u64 * 20, i, 8, 0x22)), t);
        }
    }
    w.handle(WriterMsg::Stopping { recording: RecordingId(1), at: Timestamp(T0 + 1800 * MS) }, t);
    for i in 82..91u16 {
        w.handle(WriterMsg::Rtp(item(1, Channel::Right, 1950, i, 8, 0x22)), t);
    }
    // And a party still talking after the end: not written.
    for i in 91..120u16 {
        w.handle(WriterMsg::Rtp(item(1, Channel::Left, i as u64 * 20, i, 8, 0x11)), t);
    }
    w.handle(WriterMsg::Stop { recording: RecordingId(1), at: Timestamp(T0 + 1800 * MS) }, t);
    let sc = sidecar(&dir.path().join("conf-1.json"));
    assert_eq!(sc["channels"]["right"]["packets"], 91);
    let d = std::fs::read(dir.path().join("conf-1.wav")).unwrap();
    let data = &d[58..58 + u32_at(&d, 54) as usize];
    let right_audio = data.chunks(2).filter(|f| f[1] == 0x22).count();
    assert_eq!(right_audio, 91 * 160, "the late tail is in the file");
    assert!(data.len() / 2 <= 1800 * 8 + 480, "{} frames: audio past the end was written", data.len() / 2);
}
