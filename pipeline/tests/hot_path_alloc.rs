//! The per-packet path allocates nothing: parse + classify + flow lookup over bursts of RTP
//! frames, and the writer placing and writing that RTP, counted by a global allocator that
//! counts only on the thread (and only in the span) that asks it to.

use callrec_pipeline::classify::{Class, Classifier, Counters};
use callrec_pipeline::flow::{Channel, FlowKey, FlowTable, FlowTarget, FlowUpdate, RecordingId};
use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::{Frame, LinkType, BURST};
use callrec_pipeline::writer::{
    ChannelSpec, Codec, OutputFormat, RecordingSpec, RtpItem, Writer, WriterConfig, WriterMsg,
    MAX_RTP_LEN,
};
use callrec_pipeline::Timestamp;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

struct Counting;

thread_local! {
    // const-initialized: reading them never allocates (which would recurse into `alloc`).
    // Per thread, so tests running in parallel do not count each other's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCS.with(Cell::get) - before, r)
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Ethernet + IPv4 + UDP around `payload` (checksums are not verified by parse).
fn eth_ipv4_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&s.ip().octets());
    f.extend_from_slice(&d.ip().octets());
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut b = vec![0x80, 8];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(&[0x55; 160]);
    b
}

#[test]
fn parse_classify_and_flow_lookup_allocate_nothing() {
    let classifier = Classifier::default();
    let mut flows = FlowTable::new();
    // Many calls' flows, so lookups hit a populated table.
    for i in 0..500u16 {
        let key = FlowKey {
            src: SocketAddr::from(([192, 0, 2, 10], 10000 + 2 * i)),
            dst: SocketAddr::from(([192, 0, 2, 20], 20000 + 2 * i)),
        };
        let target = FlowTarget {
            writer: 0,
            recording: RecordingId(u32::from(i)),
            channel: Channel::Left,
            source: 0,
        };
        flows.apply(FlowUpdate::Install(key, target));
    }
    let mut reasm = Ipv4Reassembler::new(64, 30_000_000_000);
    // A burst of recorded RTP, unrecorded RTP and a SIP message.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for i in 0..BURST as u16 {
        let (src, dst) = match i % 3 {
            0 => (
                SocketAddr::from(([192, 0, 2, 10], 10000 + 2 * i)),
                SocketAddr::from(([192, 0, 2, 20], 20000 + 2 * i)),
            ),
            1 => (a("198.51.100.1:4000"), a("198.51.100.2:4002")),
            _ => (
                a("192.0.2.99:7000"),
                SocketAddr::from(([192, 0, 2, 20], 20000 + 2 * i)),
            ),
        };
        frames.push(eth_ipv4_udp(src, dst, &rtp(i, u32::from(i) * 160, 7)));
    }
    frames.push(eth_ipv4_udp(
        a("192.0.2.1:5060"),
        a("192.0.2.2:5060"),
        b"OPTIONS sip:a@b SIP/2.0\r\n\r\n",
    ));
    let mut counters = Counters::default();
    let mut rtp_seen = 0u64;
    let (n, ()) = allocations(|| {
        for round in 0..200u64 {
            for data in &frames {
                let frame = Frame {
                    ts: Timestamp(round * 20_000_000),
                    link: LinkType::Ethernet,
                    data,
                };
                counters.rx += 1;
                if let Parsed::Udp(d) = parse_frame(&frame, &mut reasm) {
                    let class = classifier.classify(d.src, d.dst, d.payload, &flows);
                    counters.count(class);
                    rtp_seen += u64::from(matches!(class, Class::Rtp(_)));
                }
            }
        }
    });
    assert_eq!(counters.rx, 200 * (BURST as u64 + 1));
    // 11 of every 32 frames hit an exact flow, 10 the destination fallback.
    assert_eq!(rtp_seen, 200 * 21);
    assert_eq!(counters.sip, 200);
    assert_eq!(n, 0, "the rx path allocated {n} times");
}

#[test]
fn writer_places_and_writes_rtp_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let mut pts = heapless::Vec::new();
    pts.push((8, Codec::Pcma)).unwrap();
    let ch = ChannelSpec {
        payload_types: pts,
        event_pt: Some(101),
    };
    for format in [OutputFormat::G711, OutputFormat::Pcm16] {
        let id = RecordingId(1);
        let spec = RecordingSpec {
            id,
            conf_id: "alloc".into(),
            wav_path: dir.path().join("alloc.wav"),
            sidecar_path: dir.path().join("alloc.json"),
            format,
            channels: [ch.clone(), ch.clone()],
            started: Timestamp(0),
            sidecar: Default::default(),
        };
        let mut w = Writer::new(0, WriterConfig::default());
        w.handle(WriterMsg::Start(Box::new(spec)), Instant::now());
        let mut item = RtpItem {
            recording: id,
            channel: Channel::Left,
            source: 0,
            ts: Timestamp(0),
            len: 0,
            data: [0; MAX_RTP_LEN],
        };
        // 20 s of both channels: many window commits and ring laps, with some reordering.
        let mut packets = Vec::new();
        for i in 0..1000u16 {
            let seq = if i % 7 == 3 {
                i + 1
            } else if i % 7 == 4 {
                i - 1
            } else {
                i
            };
            // The right channel carries two agents (sources 0 and 1) mixed, from the
            // second half on.
            let streams = [(Channel::Left, 0, 1), (Channel::Right, 0, 2), (Channel::Right, 1, 3)];
            for (c, source, ssrc) in streams {
                if source == 1 && i < 500 {
                    continue;
                }
                packets.push((
                    c,
                    source,
                    rtp(seq, u32::from(seq) * 160, ssrc),
                    Timestamp(u64::from(i) * 20_000_000),
                ));
            }
        }
        let mut feed = |w: &mut Writer, batch: &[(Channel, u8, Vec<u8>, Timestamp)]| {
            for (c, source, p, ts) in batch {
                item.data[..p.len()].copy_from_slice(p);
                item.len = p.len() as u16;
                item.channel = *c;
                item.source = *source;
                item.ts = *ts;
                w.rtp(&item);
            }
        };
        // Warm-up (the first second): the WAV writer's interleave buffer grows to the
        // largest commit once; after that nothing may allocate.
        feed(&mut w, &packets[..100]);
        let (n, ()) = allocations(|| feed(&mut w, &packets[100..]));
        assert_eq!(n, 0, "the writer allocated {n} times for {} packets", packets.len() - 100);
        w.handle(
            WriterMsg::Stop {
                recording: id,
                at: Timestamp(20_000_000_000),
            },
            Instant::now(),
        );
        let r = w.report();
        assert_eq!((r.packets, r.late, r.recordings_failed), (2500, 0, 0));
    }
}

/// The threaded hand-off: a linked rx core (flow updates applied at each burst, SIP copied into
/// the control ring, unmatched RTP remembered for late installs, RTP pushed to a writer ring)
/// and the writer taking RTP from several rings, over many bursts: nothing allocates.
#[test]
fn linked_rx_core_and_writer_lanes_hand_off_without_allocating() {
    use callrec_pipeline::cores::lanes::Lanes;
    use callrec_pipeline::cores::link::{link, next_sip, RxUpdate};
    use callrec_pipeline::cores::rx::{RingFull, RxCore};

    let dir = tempfile::tempdir().unwrap();
    let (p0, c0) = rtrb::RingBuffer::new(8192);
    let (_p1, c1) = rtrb::RingBuffer::new(16);
    let (mut pc, cc) = rtrb::RingBuffer::new(16);
    let mut rx = RxCore::new(&[5060], vec![p0], RingFull::Drop);
    let (up, down) = link(64, 1024);
    rx.link(up);
    let mut links = [down];
    for i in 0..500u16 {
        let key = FlowKey {
            src: SocketAddr::from(([192, 0, 2, 10], 10000 + 2 * i)),
            dst: SocketAddr::from(([192, 0, 2, 20], 20000 + 2 * i)),
        };
        let target = FlowTarget { writer: 0, recording: RecordingId(1), channel: Channel::Left, source: 0 };
        links[0].send(RxUpdate { update: FlowUpdate::Install(key, target), since: Timestamp(0) });
    }
    rx.apply_updates();
    let mut pts = heapless::Vec::new();
    pts.push((8, Codec::Pcma)).unwrap();
    let ch = ChannelSpec { payload_types: pts, event_pt: None };
    let spec = RecordingSpec {
        id: RecordingId(1),
        conf_id: "lanes".into(),
        wav_path: dir.path().join("lanes.wav"),
        sidecar_path: dir.path().join("lanes.json"),
        format: OutputFormat::G711,
        channels: [ch.clone(), ch],
        started: Timestamp(0),
        sidecar: Default::default(),
    };
    let mut w = Writer::new(0, WriterConfig::default());
    let mut lanes = Lanes::new(vec![c0, c1], cc);
    let _ = pc.push(WriterMsg::Start(Box::new(spec)));
    lanes.round(&mut w, Instant::now());
    // One burst: recorded RTP of 11 flows (one packet each), unrecorded RTP, a SIP message.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for i in 0..BURST as u16 {
        let (src, dst) = if i % 3 == 0 {
            (SocketAddr::from(([192, 0, 2, 10], 10000 + 2 * i)), SocketAddr::from(([192, 0, 2, 20], 20000 + 2 * i)))
        } else {
            (SocketAddr::from(([198, 51, 100, 1], 4000 + i)), a("198.51.100.2:4002"))
        };
        frames.push(eth_ipv4_udp(src, dst, &rtp(i, u32::from(i) * 160, 7)));
    }
    frames.push(eth_ipv4_udp(a("192.0.2.1:5060"), a("192.0.2.2:5060"), b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"));
    let mut run = |rounds: std::ops::Range<u64>, rx: &mut RxCore, w: &mut Writer| {
        let mut sip = 0;
        for round in rounds {
            rx.apply_updates();
            // The recorded packets are one stream: number them on (in place, no allocation).
            for (j, data) in frames.iter_mut().step_by(3).enumerate() {
                let seq = (round * 11 + j as u64) as u16;
                data[44..46].copy_from_slice(&seq.to_be_bytes());
                data[46..50].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            }
            for data in &frames {
                let _ = rx.frame(&Frame { ts: Timestamp(round * 20_000_000), link: LinkType::Ethernet, data });
            }
            lanes.round(w, Instant::now());
            while next_sip(&mut links).is_some() {
                sip += 1;
            }
        }
        sip
    };
    // Warm-up: the writer's buffers reach their size.
    run(0..50, &mut rx, &mut w);
    let (n, sip) = allocations(|| run(50..250, &mut rx, &mut w));
    assert_eq!(n, 0, "the rx -> ring -> writer hand-off allocated {n} times");
    assert_eq!(sip, 200);
    let c = rx.counters();
    assert_eq!((c.rx, c.rtp, c.sip, c.ring_full, c.sip_dropped), (250 * 33, 250 * 11, 250, 0, 0));
    assert_eq!(w.report().orphans, 0);
}
