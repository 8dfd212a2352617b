//! Capture-file port: files written by our own writer (every format variant, damage) and files
//! written by real tools (tcpdump, editcap).

mod common;

use std::path::{Path, PathBuf};

use callrec_pipeline::parse::{parse_frame, DropReason, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::pcap::{CaptureFile, PortError};
use callrec_pipeline::port::{LinkType, BURST};
use common::{eth_udp, pcap, raw_udp, Ng};

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

type Owned = Vec<(u64, LinkType, Vec<u8>)>;

/// All frames as (ts ns, link, bytes), plus the burst sizes seen.
fn read_all(path: &Path) -> (CaptureFile, Owned, Vec<usize>) {
    let mut cap = CaptureFile::open(path).unwrap();
    let mut frames = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let b = cap.rx_burst();
        sizes.push(b.len());
        if b.is_empty() {
            break;
        }
        frames.extend(b.iter().map(|f| (f.ts.0, f.link, f.data.to_vec())));
    }
    assert!(cap.rx_burst().is_empty(), "end of stream stays ended");
    (cap, frames, sizes)
}

const T0: u64 = 1_700_000_000_123_456_789;

#[test]
fn classic_both_byte_orders_and_resolutions() {
    let dir = tempfile::tempdir().unwrap();
    let a = eth_udp(5060, b"first");
    let b = eth_udp(5062, b"second");
    for big in [false, true] {
        for nanos in [false, true] {
            let file = pcap(big, nanos, 1, &[(T0, &a), (T0 + 1_500, &b)]);
            let p = write(&dir, "x.pcap", &file);
            let (cap, frames, _) = read_all(&p);
            let want_t0 = if nanos { T0 } else { T0 / 1000 * 1000 };
            let want_t1 = if nanos {
                T0 + 1_500
            } else {
                (T0 + 1_500) / 1000 * 1000
            };
            assert_eq!(
                frames,
                vec![
                    (want_t0, LinkType::Ethernet, a.clone()),
                    (want_t1, LinkType::Ethernet, b.clone())
                ],
                "big={big} nanos={nanos}"
            );
            assert_eq!(cap.packets_read(), 2);
            assert_eq!(cap.truncated(), None);
        }
    }
}

#[test]
fn classic_link_types() {
    let dir = tempfile::tempdir().unwrap();
    let ip = raw_udp(5060, b"x");
    for (lt, want) in [
        (101, LinkType::RawIp),
        (12, LinkType::RawIp),
        (14, LinkType::RawIp),
        (228, LinkType::RawIp),
        (229, LinkType::RawIp),
        (0, LinkType::Null),
        (108, LinkType::Null),
        (113, LinkType::LinuxSll),
        (276, LinkType::LinuxSll2),
        (1, LinkType::Ethernet),
    ] {
        let p = write(&dir, "l.pcap", &pcap(false, false, lt, &[(T0, &ip)]));
        let (_, frames, _) = read_all(&p);
        assert_eq!(frames[0].1, want, "linktype {lt}");
    }
    let p = write(&dir, "wifi.pcap", &pcap(false, false, 105, &[(T0, &ip)]));
    let err = CaptureFile::open(&p).unwrap_err();
    assert!(
        matches!(err, PortError::UnsupportedLink { linktype: 105, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("link type 105 is not supported"),
        "{err}"
    );
}

#[test]
fn bursts_are_at_most_burst_and_empty_at_end() {
    let dir = tempfile::tempdir().unwrap();
    let f = eth_udp(5060, b"rtp");
    let recs: Vec<(u64, &[u8])> = (0..70).map(|i| (T0 + i, &f[..])).collect();
    let p = write(&dir, "many.pcap", &pcap(false, true, 1, &recs));
    let (cap, frames, sizes) = read_all(&p);
    assert_eq!(sizes, vec![BURST, BURST, 70 - 2 * BURST, 0]);
    assert_eq!(frames.len(), 70);
    assert!(frames.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(cap.packets_read(), 70);
}

#[test]
fn empty_but_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "e.pcap", &pcap(true, false, 1, &[]));
    let (cap, frames, _) = read_all(&p);
    assert!(frames.is_empty());
    assert_eq!(cap.truncated(), None);
    let mut ng = Ng::new(false);
    ng.idb(1, None, None);
    let p = write(&dir, "e.pcapng", &ng.buf);
    let (cap, frames, _) = read_all(&p);
    assert!(frames.is_empty());
    assert_eq!(cap.truncated(), None);
}

#[test]
fn truncated_classic_keeps_packets_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let a = eth_udp(5060, b"one");
    let b = eth_udp(5060, b"two");
    let file = pcap(false, false, 1, &[(T0, &a), (T0, &b)]);
    let second = 24 + 16 + a.len();
    // Cut inside the second record's header, and inside its data.
    for cut in [second + 5, second + 16 + 3] {
        let p = write(&dir, "t.pcap", &file[..cut]);
        let (cap, frames, _) = read_all(&p);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            cap.truncated().as_deref(),
            Some(
                format!("capture ends mid-record at byte {second}; kept the 1 packets before it")
                    .as_str()
            )
        );
    }
    // Cut inside the file header.
    let p = write(&dir, "h.pcap", &file[..10]);
    assert!(matches!(
        CaptureFile::open(&p),
        Err(PortError::BadHeader { .. })
    ));
}

#[test]
fn corrupt_length_ends_stream_with_warning() {
    let dir = tempfile::tempdir().unwrap();
    let a = eth_udp(5060, b"one");
    let mut file = pcap(false, false, 1, &[(T0, &a), (T0, &a), (T0, &a)]);
    let second = 24 + 16 + a.len();
    file[second + 8..second + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let p = write(&dir, "c.pcap", &file);
    let (cap, frames, _) = read_all(&p);
    assert_eq!(frames.len(), 1);
    let w = cap.truncated().unwrap();
    assert!(
        w.starts_with(&format!("corrupt record at byte {second}"))
            && w.ends_with("kept the 1 packets before it"),
        "{w}"
    );
}

#[test]
fn garbage_missing_and_tiny_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "g.bin", b"GIF89a garbage garbage garbage");
    let err = CaptureFile::open(&p).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a pcap or pcapng capture (magic 47494638)"),
        "{err}"
    );
    let p = write(&dir, "tiny", b"ab");
    let err = CaptureFile::open(&p).unwrap_err();
    assert!(err.to_string().contains("only 2 bytes"), "{err}");
    let p = write(&dir, "zero", b"");
    assert!(matches!(
        CaptureFile::open(&p),
        Err(PortError::NotCapture { .. })
    ));
    let err = CaptureFile::open(&dir.path().join("absent.pcap")).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot open ") && err.to_string().contains("No such file"),
        "{err}"
    );
}

#[test]
fn pcapng_interfaces_resolutions_and_block_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let e = eth_udp(5060, b"eth");
    let ip = raw_udp(5062, b"raw");
    for big in [false, true] {
        let mut ng = Ng::new(big);
        ng.idb(1, None, None); // 0: Ethernet, microseconds
        ng.idb(101, Some(9), None); // 1: raw IP, nanoseconds
        ng.idb(105, None, None); // 2: 802.11, unsupported
        ng.idb(276, Some(0x80 | 10), Some(100)); // 3: SLL2, 2^-10 s ticks, +100 s offset
        ng.block(0x0bad, b"custom block to skip");
        ng.epb(0, T0 / 1000, &e);
        ng.epb(1, T0, &ip);
        ng.epb(2, 0, &ip);
        ng.epb(3, 1024 * 5 + 512, &ip);
        ng.spb(&e);
        let p = write(&dir, "n.pcapng", &ng.buf);
        let (cap, frames, _) = read_all(&p);
        assert_eq!(
            frames,
            vec![
                (T0 / 1000 * 1000, LinkType::Ethernet, e.clone()),
                (T0, LinkType::RawIp, ip.clone()),
                (105_500_000_000, LinkType::LinuxSll2, ip.clone()),
                // SPB: first interface, last timestamp seen.
                (105_500_000_000, LinkType::Ethernet, e.clone()),
            ],
            "big={big}"
        );
        assert_eq!(cap.skipped(), 1);
        assert_eq!(cap.truncated(), None);
    }
}

#[test]
fn pcapng_sections_switch_byte_order_and_reset_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let e = eth_udp(5060, b"eth");
    let mut ng = Ng::new(false);
    ng.idb(1, Some(9), None);
    ng.epb(0, 1, &e);
    ng.section(true);
    ng.idb(101, Some(3), None);
    ng.epb(0, 2, &e);
    let p = write(&dir, "s.pcapng", &ng.buf);
    let (_, frames, _) = read_all(&p);
    assert_eq!(
        frames.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        vec![(1, LinkType::Ethernet), (2_000_000, LinkType::RawIp)]
    );
}

#[test]
fn pcapng_truncated_and_corrupt_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let e = eth_udp(5060, b"eth");
    let mut ng = Ng::new(false);
    ng.idb(1, None, None);
    ng.epb(0, 1, &e);
    let second = ng.buf.len();
    ng.epb(0, 2, &e);
    for cut in [second + 3, second + 20, ng.buf.len() - 1] {
        let p = write(&dir, "t.pcapng", &ng.buf[..cut]);
        let (cap, frames, _) = read_all(&p);
        assert_eq!(frames.len(), 1, "cut at {cut}");
        assert_eq!(
            cap.truncated().as_deref(),
            Some(
                format!("capture ends mid-record at byte {second}; kept the 1 packets before it")
                    .as_str()
            )
        );
    }
    // Trailing length disagreeing with the leading one.
    let mut bad = ng.buf.clone();
    let last = bad.len() - 4;
    bad[last] ^= 4;
    let p = write(&dir, "c.pcapng", &bad);
    let (cap, frames, _) = read_all(&p);
    assert_eq!(frames.len(), 1);
    assert!(cap
        .truncated()
        .unwrap()
        .contains("lengths at start and end disagree"));
    // Block length 0.
    let mut zero = ng.buf.clone();
    zero[second + 4..second + 8].copy_from_slice(&0u32.to_le_bytes());
    let p = write(&dir, "z.pcapng", &zero);
    let (cap, _, _) = read_all(&p);
    assert!(cap.truncated().unwrap().contains("block length below 12"));
    // Packet of an interface never described.
    let mut orphan = Ng::new(false);
    orphan.epb(0, 1, &e);
    let p = write(&dir, "o.pcapng", &orphan.buf);
    let (cap, frames, _) = read_all(&p);
    assert!(frames.is_empty());
    assert!(cap
        .truncated()
        .unwrap()
        .contains("interface never described"));
}

/// Every prefix of a valid file opens (or errors) and reads without panicking.
#[test]
fn no_panic_on_any_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let e = eth_udp(5060, b"eth");
    let mut ng = Ng::new(true);
    ng.idb(1, Some(9), None);
    ng.epb(0, 1, &e);
    ng.spb(&e);
    let classic = pcap(true, true, 1, &[(T0, &e), (T0, &e)]);
    for file in [&ng.buf, &classic] {
        for n in 0..file.len() {
            let p = write(&dir, "p", &file[..n]);
            if let Ok(mut cap) = CaptureFile::open(&p) {
                while !cap.rx_burst().is_empty() {}
            }
        }
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// What the fixtures made by tests/data/make_fixtures.sh hold, after parse.
fn check_fixture(name: &str, want_ts: [u64; 6], want_link: LinkType) {
    let mut cap = CaptureFile::open(&data_dir().join(name)).unwrap();
    let mut reasm = Ipv4Reassembler::default();
    let mut got = Vec::new();
    loop {
        let burst = cap.rx_burst();
        if burst.is_empty() {
            break;
        }
        for f in burst.iter() {
            assert_eq!(f.link, want_link);
            let what = match parse_frame(f, &mut reasm) {
                Parsed::Udp(d) => format!("udp {} {} {}", d.src.ip(), d.dst, d.payload.len()),
                Parsed::Fragment => "fragment".to_string(),
                Parsed::Other(why) => why.name().to_string(),
                Parsed::Tcp { .. } => "tcp".to_string(),
            };
            got.push((f.ts.0, what));
        }
    }
    let want = [
        "udp 127.0.0.1 127.0.0.1:5060 35",
        "fragment",
        "fragment",
        "udp 127.0.0.1 127.0.0.1:5060 3000",
        "udp ::1 [::1]:5062 15",
        DropReason::IcmpEtc.name(),
    ];
    assert_eq!(
        got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(),
        want,
        "{name}"
    );
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        want_ts,
        "{name}"
    );
    assert_eq!(cap.truncated(), None);
    assert_eq!(reasm.stats().completed, 1);
}

const FIXTURE_US: [u64; 6] = [
    1_795_649_208_568_498_000,
    1_795_649_208_569_081_000,
    1_795_649_208_569_092_000,
    1_795_649_208_569_094_000,
    1_795_649_208_569_203_000,
    1_795_649_208_569_218_000,
];

#[test]
fn tcpdump_ethernet_pcap_and_editcap_pcapng() {
    check_fixture("lo_eth.pcap", FIXTURE_US, LinkType::Ethernet);
    check_fixture("lo_eth.pcapng", FIXTURE_US, LinkType::Ethernet);
}

#[test]
fn tcpdump_any_sll2_nanosecond_pcap() {
    let ns = [
        1_795_649_208_568_498_009,
        1_795_649_208_569_081_559,
        1_795_649_208_569_092_995,
        1_795_649_208_569_094_389,
        1_795_649_208_569_203_826,
        1_795_649_208_569_218_403,
    ];
    check_fixture("any_sll2_ns.pcap", ns, LinkType::LinuxSll2);
}

/// Our big-endian nanosecond pcap, converted by editcap to pcapng, reads back the same frames.
#[test]
fn editcap_conversion_round_trip() {
    let Ok(status) = std::process::Command::new("editcap").arg("-h").output() else {
        eprintln!("editcap not installed; skipping");
        return;
    };
    assert!(status.status.success());
    let dir = tempfile::tempdir().unwrap();
    let a = eth_udp(5060, b"alpha");
    let b = eth_udp(5062, b"beta");
    let src = write(
        &dir,
        "in.pcap",
        &pcap(true, true, 1, &[(T0, &a), (T0 + 7, &b)]),
    );
    let dst = dir.path().join("out.pcapng");
    let out = std::process::Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, want, _) = read_all(&src);
    let (_, got, _) = read_all(&dst);
    assert_eq!(got, want);
    assert_eq!(got[1].0, T0 + 7);
}
