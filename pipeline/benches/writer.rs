//! Writer cost per RTP frame: placement + WAV write of one 20 ms G.711 packet, per channel,
//! through `Writer::handle` (the ring is left out; it is rtrb's cost, not ours).
//! `g711_two_agents_frame`: the right channel carries two sources mixed (a conference), so
//! every third packet is added to another's audio.

use callrec_pipeline::flow::{Channel, RecordingId};
use callrec_pipeline::writer::{
    ChannelSpec, Codec, OutputFormat, RecordingSpec, RtpItem, Writer, WriterConfig, WriterMsg,
    MAX_RTP_LEN,
};
use callrec_pipeline::Timestamp;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Instant;

fn spec(dir: &std::path::Path, format: OutputFormat, codec: Codec) -> Box<RecordingSpec> {
    let mut payload_types = heapless::Vec::new();
    let pt = if codec == Codec::Pcma { 8 } else { 0 };
    let _ = payload_types.push((pt, codec));
    let ch = ChannelSpec { payload_types, event_pt: Some(101) };
    Box::new(RecordingSpec {
        id: RecordingId(1),
        conf_id: "bench".into(),
        wav_path: dir.join("bench.wav"),
        sidecar_path: dir.join("bench.json"),
        format,
        channels: [ch.clone(), ch],
        started: Timestamp(0),
        sidecar: serde_json::Map::new(),
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Elements(1));
    for (name, format, codec, streams) in [
        ("g711_frame", OutputFormat::G711, Codec::Pcma, 2u32),
        ("pcm16_frame", OutputFormat::Pcm16, Codec::Pcmu, 2),
        ("g711_two_agents_frame", OutputFormat::G711, Codec::Pcma, 3),
    ] {
        let mut w = Writer::new(0, WriterConfig::default());
        let now = Instant::now();
        w.handle(WriterMsg::Start(spec(dir.path(), format, codec)), now);
        let mut data = [0x55u8; MAX_RTP_LEN];
        data[..2].copy_from_slice(&[0x80, if codec == Codec::Pcma { 8 } else { 0 }]);
        let mut item = RtpItem {
            recording: RecordingId(1),
            channel: Channel::Left,
            source: 0,
            ts: Timestamp(1_000_000_000),
            len: 172,
            data,
        };
        let mut i: u32 = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let (k, seq) = (i % streams, (i / streams) as u16);
                item.channel = if k == 0 { Channel::Left } else { Channel::Right };
                item.source = (k / 2) as u8;
                item.data[2..4].copy_from_slice(&seq.to_be_bytes());
                item.data[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
                item.data[8..12].copy_from_slice(&k.to_be_bytes());
                item.ts = Timestamp(1_000_000_000 + (i / streams) as u64 * 20_000_000);
                w.handle(WriterMsg::Rtp(item), now);
            })
        });
        w.handle(WriterMsg::Stop { recording: RecordingId(1), at: item.ts }, now);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
