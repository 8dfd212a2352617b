//! Parse + classify cost per packet: an Ethernet/IPv4/UDP RTP frame (and a VLAN-tagged one)
//! against a flow table holding 20,000 calls' flows (40,000 flows), the size the design aims
//! for per writer core. Reported per packet and per burst of 32.

use callrec_pipeline::classify::{Class, Classifier, Counters};
use callrec_pipeline::flow::{Channel, FlowKey, FlowTable, FlowTarget, FlowUpdate, RecordingId};
use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::{Frame, LinkType, BURST};
use callrec_pipeline::Timestamp;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

const CALLS: u32 = 20_000;

fn addr(host: u32, port: u16) -> SocketAddr {
    // hosts spread over 198.51.100.0/24 and 203.0.113.0/24, ports per call
    let ip = if host.is_multiple_of(2) { Ipv4Addr::new(198, 51, 100, (host % 250) as u8 + 1) } else { Ipv4Addr::new(203, 0, 113, (host % 250) as u8 + 1) };
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn rtp_frame(src: SocketAddr, dst: SocketAddr, vlan: bool) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { unreachable!("IPv4 only here") };
    let payload_len = 12 + 160;
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload_len;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&s.ip().octets());
    f.extend_from_slice(&d.ip().octets());
    let ulen = 8 + payload_len;
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&[(ulen >> 8) as u8, ulen as u8, 0, 0]);
    f.extend_from_slice(&[0x80, 8, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef]);
    f.extend(std::iter::repeat_n(0xd5u8, 160));
    f
}

fn table() -> FlowTable {
    let mut t = FlowTable::new();
    for c in 0..CALLS {
        let port = 10_000 + (c % 25_000) as u16 * 2;
        let (a, b) = (addr(c, port), addr(c + 1, port));
        let target = |channel| FlowTarget { writer: 0, recording: RecordingId(c), channel, source: 0 };
        t.apply(FlowUpdate::Install(FlowKey { src: a, dst: b }, target(Channel::Left)));
        t.apply(FlowUpdate::Install(FlowKey { src: b, dst: a }, target(Channel::Right)));
    }
    t
}

fn bench(c: &mut Criterion) {
    let flows = table();
    let classifier = Classifier::new(&[5060]);
    // a burst of frames from different calls, as a mirror port delivers them
    let frames: Vec<Vec<u8>> = (0..BURST as u32)
        .map(|i| {
            let call = i * 613 % CALLS;
            let port = 10_000 + (call % 25_000) as u16 * 2;
            rtp_frame(addr(call, port), addr(call + 1, port), i % 4 == 0)
        })
        .collect();
    let mut reasm = Ipv4Reassembler::new(64, 30_000_000_000);
    let mut g = c.benchmark_group("parse+classify");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("rtp burst of 32 (40k flows)", |b| {
        b.iter(|| {
            let mut counters = Counters::default();
            for data in &frames {
                let frame = Frame { ts: Timestamp(1), link: LinkType::Ethernet, data };
                if let Parsed::Udp(d) = parse_frame(&frame, &mut reasm) {
                    let class = classifier.classify(d.src, d.dst, d.payload, &flows);
                    counters.count(class);
                }
            }
            assert_eq!(counters.rtp, BURST as u64, "every frame is recorded RTP");
            black_box(counters)
        })
    });
    g.finish();
    let unrecorded = rtp_frame(addr(7, 40_000), addr(9, 40_002), false);
    c.bench_function("parse+classify/unrecorded udp (40k flows)", |b| {
        b.iter(|| {
            let frame = Frame { ts: Timestamp(1), link: LinkType::Ethernet, data: black_box(&unrecorded) };
            match parse_frame(&frame, &mut reasm) {
                Parsed::Udp(d) => black_box(classifier.classify(d.src, d.dst, d.payload, &flows)),
                _ => Class::Sip,
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
