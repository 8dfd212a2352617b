//! Block walking over hand-built TPACKET_V3 blocks, and option checks.

use super::block::*;
use super::*;
use crate::Timestamp;

/// A block with the given packets: (sec, nsec, mac offset, net offset, bytes).
fn block(pkts: &[(u32, u32, u16, u16, &[u8])], size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size];
    let first = 48usize;
    b[bd::NUM_PKTS..bd::NUM_PKTS + 4].copy_from_slice(&(pkts.len() as u32).to_ne_bytes());
    b[bd::FIRST_PKT..bd::FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
    let mut at = first;
    let mut lens = 0;
    for (i, (sec, nsec, mac, net, data)) in pkts.iter().enumerate() {
        let len = (*mac as usize + data.len()).next_multiple_of(16);
        let next = if i + 1 == pkts.len() { 0 } else { len as u32 };
        let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| {
            b[at + off..at + off + v.len()].copy_from_slice(v)
        };
        put(&mut b, ph::NEXT, &next.to_ne_bytes());
        put(&mut b, ph::SEC, &sec.to_ne_bytes());
        put(&mut b, ph::NSEC, &nsec.to_ne_bytes());
        put(&mut b, ph::SNAPLEN, &(data.len() as u32).to_ne_bytes());
        put(&mut b, ph::MAC, &mac.to_ne_bytes());
        put(&mut b, ph::NET, &net.to_ne_bytes());
        put(&mut b, *mac as usize, data);
        at += len;
        lens = at;
    }
    b[bd::BLK_LEN..bd::BLK_LEN + 4].copy_from_slice(&(lens.max(first) as u32).to_ne_bytes());
    b
}

#[test]
fn walks_two_packets_with_timestamps() {
    let eth = [0xaau8; 60];
    let other = [0x55u8; 98];
    let b = block(
        &[
            (1_700_000_000, 5, 80, 94, &eth),
            (1_700_000_001, 999_999_999, 80, 94, &other),
        ],
        4096,
    );
    let w = start_walk(&b).unwrap();
    assert_eq!(w.left, 2);
    let (f, next) = packet_at(&b, w.next, LinkType::Ethernet, false).unwrap();
    assert_eq!(f.data, &eth[..]);
    assert_eq!(f.ts, Timestamp(1_700_000_000_000_000_005));
    assert_eq!(f.link, LinkType::Ethernet);
    let (g, _) = packet_at(&b, w.next + next, LinkType::Ethernet, false).unwrap();
    assert_eq!(g.data, &other[..]);
    assert_eq!(g.ts, Timestamp(1_700_000_001_999_999_999));
}

#[test]
fn from_network_skips_to_the_network_header() {
    // A device whose "link header" is 4 bytes long: data starts 4 bytes further, 4 shorter.
    let data = [1u8, 2, 3, 4, 0x45, 0, 0, 20];
    let b = block(&[(1, 0, 80, 84, &data)], 4096);
    let w = start_walk(&b).unwrap();
    let (f, _) = packet_at(&b, w.next, LinkType::RawIp, true).unwrap();
    assert_eq!(f.data, &data[4..]);
}

#[test]
fn out_of_block_fields_are_refused() {
    let data = [0u8; 100];
    let mut b = block(&[(1, 0, 80, 94, &data)], 4096);
    let at = start_walk(&b).unwrap().next;
    // Snap length past the block end.
    b[at + ph::SNAPLEN..at + ph::SNAPLEN + 4].copy_from_slice(&5000u32.to_ne_bytes());
    assert!(packet_at(&b, at, LinkType::Ethernet, false).is_none());
    // Header itself past the end.
    assert!(packet_at(&b, 4090, LinkType::Ethernet, false).is_none());
    assert!(packet_at(&b, usize::MAX - 2, LinkType::Ethernet, false).is_none());
    // Network header before the MAC header.
    let mut c = block(&[(1, 0, 80, 70, &data)], 4096);
    assert!(packet_at(&c, at, LinkType::RawIp, true).is_none());
    // A block length larger than the block.
    c[bd::BLK_LEN..bd::BLK_LEN + 4].copy_from_slice(&8192u32.to_ne_bytes());
    assert!(start_walk(&c).is_none());
    // First packet beyond the block length.
    let mut d = block(&[(1, 0, 80, 94, &data)], 4096);
    d[bd::FIRST_PKT..bd::FIRST_PKT + 4].copy_from_slice(&4000u32.to_ne_bytes());
    assert!(start_walk(&d).is_none());
}

#[test]
fn empty_block_has_nothing_to_walk() {
    let b = block(&[], 4096);
    assert_eq!(start_walk(&b).unwrap().left, 0);
}

#[test]
fn options_are_checked_with_a_reason() {
    let ok = AfPacketOptions::default();
    assert_eq!(check_options(&ok, 4096), Ok(()));
    let bad = |o: AfPacketOptions| check_options(&o, 4096).unwrap_err();
    assert!(bad(AfPacketOptions {
        block_size: 5000,
        ..ok
    })
    .contains("page size"));
    assert!(bad(AfPacketOptions {
        frame_size: 100,
        ..ok
    })
    .contains("multiple of 16"));
    assert!(bad(AfPacketOptions {
        frame_size: 2050,
        ..ok
    })
    .contains("multiple of 16"));
    assert!(bad(AfPacketOptions {
        frame_size: 8192,
        block_size: 4096,
        ..ok
    })
    .contains("larger than the block"));
    assert!(bad(AfPacketOptions {
        block_size: 1 << 30,
        block_count: 4,
        ..ok
    })
    .contains("4 GiB limit"));
    assert_eq!(
        check_options(
            &AfPacketOptions {
                block_size: 1 << 30,
                block_count: 3,
                ..ok
            },
            4096
        ),
        Ok(())
    );
    assert!(bad(AfPacketOptions {
        block_count: 0,
        ..ok
    })
    .contains("at least one block"));
}

#[test]
fn missing_interface_is_one_sentence() {
    let e = AfPacketPort::open("nonexistent-if0", AfPacketOptions::default()).unwrap_err();
    assert!(matches!(e, AfPacketError::NoSuchInterface { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "no such interface nonexistent-if0; list interfaces with `ip link` (in the network namespace callrec runs in)"
    );
    let long =
        AfPacketPort::open("an-interface-name-too-long", AfPacketOptions::default()).unwrap_err();
    assert!(matches!(long, AfPacketError::NoSuchInterface { .. }));
}

#[test]
fn permission_message_says_what_to_do() {
    let e = AfPacketError::Permission {
        iface: "eth0".into(),
    };
    assert_eq!(
        e.to_string(),
        "cannot open eth0: permission denied; run as root or grant CAP_NET_RAW"
    );
}
