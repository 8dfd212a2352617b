//! Live ports against real kernel traffic: AF_PACKET and TAP inside network namespaces.
//!
//! Each test makes its own pair of namespaces joined by a veth (192.0.2.1 <-> 192.0.2.2), sends
//! a bounded number of UDP datagrams from one side to the other, and checks that the port under
//! test delivers every one, byte for byte, with sane timestamps. Traffic never leaves the
//! namespaces; they are deleted when the test ends, even on failure. Needs root (skipped, loudly,
//! otherwise).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::af_packet::{AfPacketError, AfPacketOptions, AfPacketPort};
use callrec_pipeline::port::tap::{TapError, TapPort};
use callrec_pipeline::port::{Frame, LinkType};

#[path = "live_ports/netns.rs"]
mod netns;

use netns::{allocs, can_run, drop_thread_capabilities, in_netns, run, Pair};

const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PORT: u16 = 40000;
const MAGIC: &[u8] = b"callrec-h10 seq ";
/// Longest any capture loop runs.
const CAPTURE_LIMIT: Duration = Duration::from_secs(10);

fn payload(seq: u32) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend(format!("{seq:06} ").bytes());
    p.extend((0..100u32).map(|i| (seq.wrapping_mul(7).wrapping_add(i)) as u8));
    p
}

/// Sends `n` numbered datagrams from namespace `b` to 192.0.2.1, spread over `sources` source
/// ports, paced so no queue on the way overflows.
fn send_from(b: &str, n: u32, sources: usize) -> JoinHandle<()> {
    in_netns(b, move || {
        let socks: Vec<UdpSocket> = (0..sources)
            .map(|_| UdpSocket::bind(SocketAddrV4::new(B_IP, 0)).expect("bind sender"))
            .collect();
        let to = SocketAddrV4::new(A_IP, PORT);
        // Resolve ARP first so no datagram waits (or is dropped) in the neighbour queue.
        socks[0].send_to(b"warm-up", to).expect("send warm-up");
        thread::sleep(Duration::from_millis(300));
        for seq in 0..n {
            socks[seq as usize % sources]
                .send_to(&payload(seq), to)
                .expect("send");
            if seq % 16 == 15 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

/// The sequence number of one of our datagrams, after checking its bytes; `None` for other traffic.
fn our_datagram(f: &Frame<'_>, reasm: &mut Ipv4Reassembler) -> Option<u32> {
    let Parsed::Udp(d) = parse_frame(f, reasm) else {
        return None;
    };
    if d.dst != SocketAddr::V4(SocketAddrV4::new(A_IP, PORT)) || !d.payload.starts_with(MAGIC) {
        return None;
    }
    assert_eq!(d.src.ip(), B_IP, "source address");
    let digits = std::str::from_utf8(&d.payload[MAGIC.len()..MAGIC.len() + 6]).expect("digits");
    let seq: u32 = digits.parse().expect("sequence number");
    assert_eq!(d.payload, &payload(seq)[..], "payload of datagram {seq}");
    Some(seq)
}

/// Checks that `got` (sequence, timestamp in delivery order) holds each of 0..n exactly once,
/// timestamps never go back, and lie within the test's wall-clock window.
fn check_all(got: &[(u32, u64)], n: u32, window: (u64, u64)) {
    let mut seen = vec![false; n as usize];
    for &(seq, _) in got {
        assert!(seq < n, "unexpected sequence {seq}");
        assert!(!seen[seq as usize], "datagram {seq} delivered twice");
        seen[seq as usize] = true;
    }
    let missing: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| i)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {n} datagrams missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for w in got.windows(2) {
        assert!(w[1].1 >= w[0].1, "timestamp went back: {w:?}");
    }
    let (lo, hi) = window;
    for &(seq, ts) in got {
        assert!(
            ts >= lo && ts <= hi,
            "datagram {seq}: timestamp {ts} outside [{lo}, {hi}]"
        );
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Captures from an AF_PACKET port on `va` in namespace `a` until `n` of our datagrams arrived.
fn af_packet_capture(
    a: &str,
    opts: AfPacketOptions,
    n: u32,
    ready: mpsc::Sender<()>,
) -> JoinHandle<(Vec<(u32, u64)>, u64)> {
    in_netns(a, move || {
        // Absorbs the datagrams so the stack does not answer with ICMP port unreachable.
        let _sink = UdpSocket::bind(SocketAddrV4::new(A_IP, PORT)).expect("bind sink");
        let mut port = AfPacketPort::open("va", opts).expect("open af_packet on va");
        assert_eq!(port.link(), LinkType::Ethernet);
        ready.send(()).expect("ready");
        let mut reasm = Ipv4Reassembler::default();
        let mut got = Vec::new();
        let mut rx_allocs = 0;
        let probe = allocs();
        drop(std::hint::black_box(vec![0u8; 8]));
        assert!(allocs() > probe, "the allocation counter counts nothing");
        let end = Instant::now() + CAPTURE_LIMIT;
        while (got.len() as u32) < n && Instant::now() < end {
            let before = allocs();
            let burst = port.rx_burst(Duration::from_millis(50));
            rx_allocs += allocs() - before;
            assert!(burst.len() <= callrec_pipeline::port::BURST);
            for f in burst.iter() {
                if let Some(seq) = our_datagram(f, &mut reasm) {
                    got.push((seq, f.ts.0));
                }
            }
        }
        let stats = port.stats();
        assert_eq!(stats.bad_headers, 0);
        assert_eq!(rx_allocs, 0, "rx_burst allocated");
        (got, stats.drops)
    })
}

#[test]
fn af_packet_delivers_every_datagram_with_rising_timestamps() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let start = now_ns();
    let (tx, rx) = mpsc::channel();
    // Small blocks, so the 1000 datagrams span many of them and blocks are recycled.
    let opts = AfPacketOptions {
        block_size: 16 * 1024,
        block_count: 8,
        ..AfPacketOptions::default()
    };
    let cap = af_packet_capture(&pair.a, opts, 1000, tx);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("port did not open");
    send_from(&pair.b, 1000, 1).join().expect("sender");
    let (got, drops) = cap.join().expect("capture thread");
    assert_eq!(drops, 0, "kernel dropped packets");
    check_all(&got, 1000, (start, now_ns()));
}

#[test]
fn af_packet_fanout_shares_flows_without_loss_or_duplicates() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let start = now_ns();
    let opts = AfPacketOptions {
        fanout_group: Some(4242),
        ..AfPacketOptions::default()
    };
    let (tx, rx) = mpsc::channel();
    let n = 1000;
    // Each member stops when the union is complete or at the time limit; the count each must
    // reach is unknown, so both run until the limit unless stopped.
    let members: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            in_netns(&pair.a, move || {
                let mut port = AfPacketPort::open("va", opts).expect("open fanout member");
                tx.send(()).expect("ready");
                let mut reasm = Ipv4Reassembler::default();
                let mut got = Vec::new();
                let mut quiet_since = Instant::now();
                let end = Instant::now() + CAPTURE_LIMIT;
                // Stops after 1 s without any of our datagrams once some arrived.
                while Instant::now() < end
                    && (got.is_empty() || quiet_since.elapsed() < Duration::from_secs(1))
                {
                    for f in port.rx_burst(Duration::from_millis(50)).iter() {
                        if let Some(seq) = our_datagram(f, &mut reasm) {
                            got.push((seq, f.ts.0));
                            quiet_since = Instant::now();
                        }
                    }
                }
                got
            })
        })
        .collect();
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("port did not open");
    }
    send_from(&pair.b, n, 32).join().expect("sender");
    let parts: Vec<Vec<(u32, u64)>> = members
        .into_iter()
        .map(|m| m.join().expect("member"))
        .collect();
    let end = now_ns();
    for part in &parts {
        assert!(
            !part.is_empty(),
            "one fanout member got nothing: flows were not shared"
        );
        for w in part.windows(2) {
            assert!(w[1].1 >= w[0].1, "timestamp went back");
        }
    }
    // Flow affinity: all datagrams of one source port went to the same member.
    let mut union: Vec<(u32, u64)> = parts.concat();
    for (i, part) in parts.iter().enumerate() {
        for &(seq, _) in part {
            let other = &parts[1 - i];
            assert!(
                !other.iter().any(|&(s, _)| s % 32 == seq % 32),
                "flow {} split across fanout members",
                seq % 32
            );
        }
    }
    union.sort_by_key(|&(_, ts)| ts);
    check_all(&union, n, (start, end));
}

#[test]
fn af_packet_refuses_a_missing_interface_in_the_namespace() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    // `va` lives in namespace a only; from namespace b it does not exist.
    let e = in_netns(&pair.b, || {
        AfPacketPort::open("va", AfPacketOptions::default()).map(|_| ())
    })
    .join()
    .expect("thread");
    assert!(
        matches!(e, Err(AfPacketError::NoSuchInterface { .. })),
        "{e:?}"
    );
}

#[test]
fn tap_captures_traffic_mirrored_by_tc() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let start = now_ns();
    let (tx, rx) = mpsc::channel();
    let n = 1000u32;
    let cap = in_netns(&pair.a, move || {
        let _sink = UdpSocket::bind(SocketAddrV4::new(A_IP, PORT)).expect("bind sink");
        let mut port = TapPort::open("h10tap").expect("open tap");
        tx.send(port.created()).expect("ready");
        let mut reasm = Ipv4Reassembler::default();
        let mut got = Vec::new();
        let mut rx_allocs = 0;
        let end = Instant::now() + CAPTURE_LIMIT;
        while (got.len() as u32) < n && Instant::now() < end {
            let before = allocs();
            let burst = port.rx_burst(Duration::from_millis(50));
            rx_allocs += allocs() - before;
            for f in burst.iter() {
                assert_eq!(f.link, LinkType::Ethernet);
                if let Some(seq) = our_datagram(f, &mut reasm) {
                    got.push((seq, f.ts.0));
                }
            }
        }
        let stats = port.stats();
        assert_eq!(rx_allocs, 0, "rx_burst allocated");
        assert_eq!(stats.truncated, 0);
        assert!(stats.packets >= got.len() as u64);
        got
    });
    let created = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("tap did not open");
    assert!(
        created,
        "the TAP did not exist before, so the port created it"
    );
    let a = pair.a.as_str();
    for dir in ["ingress", "egress"] {
        if dir == "ingress" {
            run(&[
                "ip", "netns", "exec", a, "tc", "qdisc", "add", "dev", "va", "clsact",
            ])
            .expect("clsact");
        }
        #[rustfmt::skip]
        let filter = ["ip", "netns", "exec", a, "tc", "filter", "add", "dev", "va", dir, "protocol", "all",
            "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "h10tap"];
        run(&filter).expect("tc mirror");
    }
    send_from(&pair.b, n, 1).join().expect("sender");
    let got = cap.join().expect("capture thread");
    check_all(&got, n, (start, now_ns()));
    // The port created the device, so it is gone with the port.
    assert!(
        run(&["ip", "-n", a, "link", "show", "h10tap"]).is_err(),
        "TAP left behind"
    );
}

#[test]
fn tap_attaches_to_an_existing_persistent_tap_and_leaves_it() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    run(&[
        "ip", "-n", &a, "tuntap", "add", "dev", "ptap", "mode", "tap",
    ])
    .expect("persistent tap");
    let created = in_netns(&a, || TapPort::open("ptap").map(|p| p.created()))
        .join()
        .expect("thread");
    assert!(
        !created.expect("attach"),
        "the TAP existed, so the port attached"
    );
    run(&["ip", "-n", &a, "link", "show", "ptap"]).expect("persistent TAP still there");
    let e = in_netns(&a, || TapPort::open("va").map(|_| ()))
        .join()
        .expect("thread");
    assert!(matches!(e, Err(TapError::NotTap { .. })), "{e:?}");
}

#[test]
fn ports_without_capabilities_say_how_to_get_them() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let (af, tap) = in_netns(&pair.a, || {
        drop_thread_capabilities();
        (
            AfPacketPort::open("va", AfPacketOptions::default()).map(|_| ()),
            TapPort::open("h10tap").map(|_| ()),
        )
    })
    .join()
    .expect("thread");
    let af = af.unwrap_err();
    assert!(matches!(af, AfPacketError::Permission { .. }), "{af:?}");
    assert_eq!(
        af.to_string(),
        "cannot open va: permission denied; run as root or grant CAP_NET_RAW"
    );
    let tap = tap.unwrap_err();
    assert!(matches!(tap, TapError::Permission { .. }), "{tap:?}");
}

#[test]
fn af_packet_on_loopback_sees_each_packet_once_as_ethernet() {
    if !can_run() {
        return;
    }
    let pair = Pair::new();
    let start = now_ns();
    let n = 200u32;
    let got = in_netns(&pair.a, move || {
        let mut port = AfPacketPort::open("lo", AfPacketOptions::default()).expect("open lo");
        assert_eq!(port.link(), LinkType::Ethernet);
        // Loopback within the test namespace: 192.0.2.1 is local there.
        let sink = UdpSocket::bind(SocketAddrV4::new(A_IP, PORT)).expect("bind sink");
        let src = UdpSocket::bind(SocketAddrV4::new(A_IP, 0)).expect("bind source");
        let mut reasm = Ipv4Reassembler::default();
        let mut got = Vec::new();
        let end = Instant::now() + CAPTURE_LIMIT;
        let mut sent = 0u32;
        while Instant::now() < end {
            if sent < n {
                src.send_to(&payload(sent), sink.local_addr().expect("addr"))
                    .expect("send");
                sent += 1;
            }
            for f in port.rx_burst(Duration::from_millis(5)).iter() {
                let Parsed::Udp(d) = parse_frame(f, &mut reasm) else {
                    continue;
                };
                if d.dst.port() == PORT && d.payload.starts_with(MAGIC) {
                    let seq: u32 = std::str::from_utf8(&d.payload[MAGIC.len()..MAGIC.len() + 6])
                        .expect("digits")
                        .parse()
                        .expect("seq");
                    assert_eq!(d.payload, &payload(seq)[..]);
                    got.push((seq, f.ts.0));
                }
            }
            // Done once everything sent arrived and a further quiet burst brought no copy.
            if sent == n && got.len() as u32 >= n {
                for f in port.rx_burst(Duration::from_millis(100)).iter() {
                    if let Parsed::Udp(d) = parse_frame(f, &mut reasm) {
                        assert!(d.dst.port() != PORT, "a datagram was delivered twice");
                    }
                }
                break;
            }
        }
        got
    })
    .join()
    .expect("capture thread");
    check_all(&got, n, (start, now_ns()));
}
