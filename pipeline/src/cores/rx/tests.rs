use super::*;
use crate::cores::lanes::Lanes;
use crate::cores::link::{link, next_sip, RxUpdate};
use crate::flow::{Channel, FlowKey, RecordingId};
use crate::port::LinkType;
use crate::writer::{ChannelSpec, Codec, OutputFormat, RecordingSpec, Writer, WriterConfig};
use std::time::Instant;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Ethernet + IPv4 + UDP around `payload`.
fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { panic!("IPv4 only") };
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

fn rtp(seq: u16) -> Vec<u8> {
    let mut b = vec![0x80, 8];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&[0xd5; 160]);
    b
}

fn feed(rx: &mut RxCore, ms: u64, data: &[u8]) -> bool {
    rx.frame(&Frame { ts: Timestamp(ms * 1_000_000), link: LinkType::Ethernet, data }).is_some()
}

fn key() -> FlowKey {
    FlowKey { src: a("192.0.2.10:40000"), dst: a("192.0.2.20:50000") }
}

fn target(rec: u32) -> FlowTarget {
    FlowTarget { writer: 0, recording: RecordingId(rec), channel: Channel::Left, source: 0 }
}

fn balanced(c: &Counters) -> bool {
    c.rx == c.sip + c.rtp + c.rtcp + c.other() + c.ring_full + c.sip_dropped
}

#[test]
fn inline_core_returns_sip_and_linked_core_sends_it_up_or_counts_a_drop() {
    let sip = udp(a("192.0.2.1:5060"), a("192.0.2.2:5060"), b"OPTIONS sip:a@b SIP/2.0\r\n\r\n");
    let mut inline = RxCore::new(&[5060], Vec::new(), RingFull::Drop);
    assert!(feed(&mut inline, 0, &sip), "inline: SIP comes back to the caller");
    let mut rx = RxCore::new(&[5060], Vec::new(), RingFull::Drop);
    let (up, down) = link(2, 8);
    rx.link(up);
    for ms in 0..3 {
        assert!(!feed(&mut rx, ms, &sip));
    }
    let c = rx.counters();
    assert_eq!((c.rx, c.sip, c.sip_dropped), (3, 2, 1), "two slots, the third is a counted drop");
    assert!(balanced(&c));
    let mut links = [down];
    let d = next_sip(&mut links).expect("a datagram");
    assert_eq!((d.ts, d.src, d.payload()), (Timestamp(0), a("192.0.2.1:5060"), &b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"[..]));
}

#[test]
fn sip_from_two_rx_cores_is_taken_oldest_first() {
    let (mut up0, down0) = link(4, 4);
    let (mut up1, down1) = link(4, 4);
    let d = |ms: u64| SipDatagram::new(Timestamp(ms), a("192.0.2.1:5060"), a("192.0.2.2:5060"), b"x").unwrap();
    up0.sip.push(d(5)).ok().unwrap();
    up1.sip.push(d(3)).ok().unwrap();
    up1.sip.push(d(9)).ok().unwrap();
    let mut links = [down0, down1];
    let order: Vec<u64> = std::iter::from_fn(|| next_sip(&mut links)).map(|d| d.ts.0).collect();
    assert_eq!(order, vec![3, 5, 9]);
}

/// RTP that reached this core before its install did is delivered when the install arrives
/// (from the install's SIP time on, oldest first), and acknowledged updates are counted.
#[test]
fn late_install_delivers_the_flows_recent_packets_in_order() {
    let (p, mut c) = rtrb::RingBuffer::new(64);
    let mut rx = RxCore::new(&[5060], vec![p], RingFull::Drop);
    let (up, mut down) = link(4, 4);
    rx.link(up);
    let k = key();
    feed(&mut rx, 70, &udp(k.src, k.dst, &rtp(1))); // before the 200 OK (and the slack): not recorded
    feed(&mut rx, 95, &udp(k.src, k.dst, &rtp(2))); // stamped earlier by this core: within the slack
    feed(&mut rx, 102, &udp(a("198.51.100.1:4000"), a("198.51.100.2:4002"), &rtp(77))); // another call
    feed(&mut rx, 103, &udp(k.src, k.dst, &rtp(3)));
    assert_eq!(rx.counters().unrecorded, 4);
    assert!(down.send(RxUpdate { update: FlowUpdate::Install(k, target(1)), since: Timestamp(100_000_000) }));
    assert!(!down.has_applied(down.epoch()));
    rx.apply_updates();
    assert!(down.has_applied(down.epoch()));
    feed(&mut rx, 104, &udp(k.src, k.dst, &rtp(4)));
    let seqs: Vec<u16> = std::iter::from_fn(|| c.pop().ok())
        .map(|m| match m {
            WriterMsg::Rtp(i) => u16::from_be_bytes([i.data[2], i.data[3]]),
            _ => panic!("only RTP on an rx ring"),
        })
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    let cn = rx.counters();
    assert_eq!((cn.rtp, cn.unrecorded), (3, 2));
    assert!(balanced(&cn));
    // A second install of the same flow finds nothing left to deliver since then.
    assert!(down.send(RxUpdate { update: FlowUpdate::Install(k, target(1)), since: Timestamp(100_000_000) }));
    rx.apply_updates();
    assert!(c.pop().is_err());
}

fn spec(dir: &std::path::Path, rec: u32) -> Box<RecordingSpec> {
    let mut pts = heapless::Vec::new();
    pts.push((8, Codec::Pcma)).unwrap();
    let ch = ChannelSpec { payload_types: pts, event_pt: None };
    Box::new(RecordingSpec {
        id: RecordingId(rec),
        conf_id: format!("r{rec}"),
        wav_path: dir.join(format!("r{rec}.wav")),
        sidecar_path: dir.join(format!("r{rec}.json")),
        format: OutputFormat::G711,
        channels: [ch.clone(), ch],
        started: Timestamp(0),
        sidecar: Default::default(),
    })
}

/// Start, RTP on two rx rings and Stop all waiting at once: the writer takes the Start before
/// the RTP and the Stop after it, so no packet is an orphan.
#[test]
fn lanes_take_start_before_rtp_and_stop_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p0, c0) = rtrb::RingBuffer::new(16);
    let (mut p1, c1) = rtrb::RingBuffer::new(16);
    let (mut pc, cc) = rtrb::RingBuffer::new(16);
    let mut lanes = Lanes::new(vec![c0, c1], cc);
    let mut w = Writer::new(0, WriterConfig::default());
    pc.push(WriterMsg::Start(spec(dir.path(), 1))).ok().unwrap();
    for seq in 1..=6u16 {
        let ring = if seq % 2 == 0 { &mut p0 } else { &mut p1 };
        push_rtp(ring, target(1), Timestamp(u64::from(seq) * 20_000_000), &rtp(seq));
    }
    pc.push(WriterMsg::Stop { recording: RecordingId(1), at: Timestamp(200_000_000) }).ok().unwrap();
    assert!(lanes.round(&mut w, Instant::now()));
    let r = w.report();
    assert_eq!((r.recordings_opened, r.recordings_closed, r.orphans, r.packets), (1, 1, 0, 6), "{r:?}");
    assert!(!lanes.round(&mut w, Instant::now()), "nothing left");
}
