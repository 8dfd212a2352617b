//! The rx -> writer hand-off of one RTP packet (172 bytes): built on the stack and moved into
//! the ring (the former `push_rtp`) against built in its ring slot (`cores::rx::push_rtp`),
//! each followed by the writer side reading the slot in place. Reported per packet.

use callrec_pipeline::cores::rx::push_rtp;
use callrec_pipeline::flow::{Channel, FlowTarget, RecordingId};
use callrec_pipeline::writer::{RtpItem, WriterMsg, MAX_RTP_LEN};
use callrec_pipeline::Timestamp;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// Pushes one message, as the former `push_rtp` did (ring never full here).
fn push_moved(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8]) {
    let len = payload.len().min(MAX_RTP_LEN);
    let mut item = RtpItem { recording: target.recording, channel: target.channel, source: target.source, ts, len: len as u16, data: [0; MAX_RTP_LEN] };
    item.data[..len].copy_from_slice(&payload[..len]);
    let _ = ring.push(WriterMsg::Rtp(item));
}

/// Reads up to 32 waiting messages in place, as the writer does; their total length.
fn drain(c: &mut rtrb::Consumer<WriterMsg>) -> usize {
    let n = c.slots().min(32);
    let Ok(chunk) = c.read_chunk(n) else { return 0 };
    let (a, b) = chunk.as_slices();
    let sum = a.iter().chain(b).map(|m| if let WriterMsg::Rtp(i) = m { i.bytes().len() } else { 0 }).sum();
    chunk.commit_all();
    sum
}

fn bench(c: &mut Criterion) {
    let target = FlowTarget { writer: 0, recording: RecordingId(1), channel: Channel::Left, source: 0 };
    let payload = [0x80u8; 172];
    let mut g = c.benchmark_group("rtp_handoff");
    g.throughput(Throughput::Elements(32));
    let (mut p, mut cons) = rtrb::RingBuffer::new(8192);
    g.bench_function("moved_into_ring_burst32", |b| {
        b.iter(|| {
            for i in 0..32u64 {
                push_moved(&mut p, target, Timestamp(i), black_box(&payload));
            }
            black_box(drain(&mut cons))
        })
    });
    g.bench_function("built_in_slot_burst32", |b| {
        b.iter(|| {
            for i in 0..32u64 {
                push_rtp(&mut p, target, Timestamp(i), black_box(&payload));
            }
            black_box(drain(&mut cons))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
