//! Parse tests on frames built byte by byte.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;
use crate::port::{Frame, LinkType};
use crate::Timestamp;

const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// IPv4 header (no options) with `flags_off` = flags|offset/8 field as on the wire.
fn ipv4(proto: u8, id: u16, flags_off: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&((payload.len() + 20) as u16).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&flags_off.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&A4.octets());
    v.extend_from_slice(&B4.octets());
    v.extend_from_slice(payload);
    v
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&A6.octets());
    v.extend_from_slice(&B6.octets());
    v.extend_from_slice(payload);
    v
}

/// An IPv6 extension header of `units` 8-octet units (padding zero).
fn ext(next: u8, units: usize, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![next, (units - 1) as u8];
    v.resize(units * 8, 0);
    v.extend_from_slice(rest);
    v
}

fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (i, tpid) in tags.iter().enumerate() {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn sll(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn sll2(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = proto.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    v.extend_from_slice(payload);
    v
}

type Found = Option<(SocketAddr, SocketAddr, Vec<u8>)>;

fn parse(link: LinkType, data: &[u8]) -> (Found, Option<DropReason>) {
    let mut r = Ipv4Reassembler::default();
    let f = Frame {
        ts: Timestamp(1),
        link,
        data,
    };
    match parse_frame(&f, &mut r) {
        Parsed::Udp(d) => (Some((d.src, d.dst, d.payload.to_vec())), None),
        Parsed::Other(why) => (None, Some(why)),
        p => panic!("unexpected {p:?}"),
    }
}

fn sip4() -> Vec<u8> {
    ipv4(
        17,
        1,
        0x4000,
        &udp(5060, 5062, b"INVITE sip:a@b SIP/2.0\r\n"),
    )
}

fn assert_udp4(link: LinkType, data: &[u8]) {
    let (got, why) = parse(link, data);
    let (src, dst, payload) = got.unwrap_or_else(|| panic!("dropped: {why:?}"));
    assert_eq!(src, SocketAddr::new(A4.into(), 5060));
    assert_eq!(dst, SocketAddr::new(B4.into(), 5062));
    assert_eq!(payload, b"INVITE sip:a@b SIP/2.0\r\n");
}

#[test]
fn ethernet_ipv4_udp() {
    assert_udp4(LinkType::Ethernet, &eth(&[], 0x0800, &sip4()));
}

#[test]
fn ethernet_padding_and_fcs_are_not_payload() {
    let ip = ipv4(17, 1, 0, &udp(5060, 5062, b"hi"));
    let mut f = eth(&[], 0x0800, &ip);
    f.resize(64, 0xee);
    let (got, _) = parse(LinkType::Ethernet, &f);
    assert_eq!(got.unwrap().2, b"hi");
}

#[test]
fn vlan_qinq_and_old_qinq() {
    assert_udp4(LinkType::Ethernet, &eth(&[0x8100], 0x0800, &sip4()));
    assert_udp4(LinkType::Ethernet, &eth(&[0x88a8, 0x8100], 0x0800, &sip4()));
    assert_udp4(LinkType::Ethernet, &eth(&[0x9100, 0x8100], 0x0800, &sip4()));
    assert_udp4(LinkType::Ethernet, &eth(&[0x8100; 4], 0x0800, &sip4()));
    assert_eq!(
        parse(LinkType::Ethernet, &eth(&[0x8100; 5], 0x0800, &sip4())).1,
        Some(DropReason::NotIp)
    );
    // Tag cut short.
    let mut f = eth(&[0x8100], 0x0800, &[]);
    f.truncate(16);
    assert_eq!(parse(LinkType::Ethernet, &f).1, Some(DropReason::Truncated));
}

#[test]
fn sll_sll2_raw_null() {
    assert_udp4(LinkType::LinuxSll, &sll(0x0800, &sip4()));
    assert_udp4(LinkType::LinuxSll2, &sll2(0x0800, &sip4()));
    assert_udp4(
        LinkType::LinuxSll2,
        &sll2(
            0x8100,
            &[0, 7, 8, 0]
                .iter()
                .copied()
                .chain(sip4())
                .collect::<Vec<_>>(),
        ),
    );
    assert_udp4(LinkType::RawIp, &sip4());
    let mut null_le = 2u32.to_le_bytes().to_vec();
    null_le.extend(sip4());
    assert_udp4(LinkType::Null, &null_le);
    let mut loop_be = 2u32.to_be_bytes().to_vec();
    loop_be.extend(sip4());
    assert_udp4(LinkType::Null, &loop_be);
    let mut appletalk = 16u32.to_le_bytes().to_vec();
    appletalk.extend(sip4());
    assert_eq!(parse(LinkType::Null, &appletalk).1, Some(DropReason::NotIp));
    assert_eq!(
        parse(LinkType::LinuxSll2, &sll2(0x0806, &[0; 28])).1,
        Some(DropReason::NotIp)
    );
    assert_eq!(
        parse(LinkType::LinuxSll2, &[0x08, 0, 1]).1,
        Some(DropReason::Truncated)
    );
}

#[test]
fn ipv6_udp_through_extension_headers() {
    let u = udp(5060, 5060, b"OPTIONS");
    let dst_opts = ext(17, 1, &u);
    let hbh = ext(60, 2, &dst_opts);
    for (link, f) in [
        (LinkType::Ethernet, eth(&[], 0x86dd, &ipv6(0, &hbh))),
        (LinkType::LinuxSll2, sll2(0x86dd, &ipv6(0, &hbh))),
        (LinkType::RawIp, ipv6(17, &u)),
        (
            LinkType::Ethernet,
            eth(&[], 0x86dd, &ipv6(43, &ext(17, 1, &u))),
        ),
    ] {
        let (got, why) = parse(link, &f);
        let (src, dst, payload) = got.unwrap_or_else(|| panic!("{link:?} dropped: {why:?}"));
        assert_eq!(src, SocketAddr::new(A6.into(), 5060));
        assert_eq!(dst, SocketAddr::new(B6.into(), 5060));
        assert_eq!(payload, b"OPTIONS");
    }
    // Fragment header: not reassembled.
    assert_eq!(
        parse(LinkType::RawIp, &ipv6(44, &ext(17, 1, &u))).1,
        Some(DropReason::Ipv6Fragment)
    );
    // Extension header claiming more than the packet holds.
    let mut bad = ext(17, 1, &[]);
    bad[1] = 9;
    assert_eq!(
        parse(LinkType::RawIp, &ipv6(0, &bad)).1,
        Some(DropReason::Truncated)
    );
    // ICMPv6.
    assert_eq!(
        parse(LinkType::RawIp, &ipv6(58, &[128, 0, 0, 0])).1,
        Some(DropReason::IcmpEtc)
    );
    // Nine destination-options headers in a row: over the limit.
    let mut chain = u.clone();
    chain = ext(17, 1, &chain);
    for _ in 0..MAX_IPV6_EXT {
        chain = ext(60, 1, &chain);
    }
    assert_eq!(
        parse(LinkType::RawIp, &ipv6(60, &chain)).1,
        Some(DropReason::Ipv6Unsupported)
    );
}

#[test]
fn drop_reasons() {
    let full = sip4();
    // Snapped capture: IP total length past the captured bytes.
    assert_eq!(
        parse(LinkType::RawIp, &full[..full.len() - 1]).1,
        Some(DropReason::Truncated)
    );
    assert_eq!(
        parse(LinkType::RawIp, &full[..19]).1,
        Some(DropReason::Truncated)
    );
    // UDP length past the IP payload.
    let mut long = full.clone();
    long[24..26].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(parse(LinkType::RawIp, &long).1, Some(DropReason::Truncated));
    let mut short = full.clone();
    short[24..26].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        parse(LinkType::RawIp, &short).1,
        Some(DropReason::BadL4Header)
    );
    // UDP length shorter than the IP payload: payload follows the UDP length.
    let mut shorter = full.clone();
    shorter[24..26].copy_from_slice(&14u16.to_be_bytes());
    assert_eq!(parse(LinkType::RawIp, &shorter).0.unwrap().2, b"INVITE");
    let mut ihl = full.clone();
    ihl[0] = 0x44;
    assert_eq!(
        parse(LinkType::RawIp, &ihl).1,
        Some(DropReason::BadIpHeader)
    );
    let mut total = full.clone();
    total[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(
        parse(LinkType::RawIp, &total).1,
        Some(DropReason::BadIpHeader)
    );
    assert_eq!(
        parse(LinkType::Ethernet, &eth(&[], 0x0806, &[0; 28])).1,
        Some(DropReason::NotIp)
    );
    assert_eq!(
        parse(
            LinkType::Ethernet,
            &eth(&[], 0x0800, &ipv4(1, 1, 0, &[8, 0, 0, 0]))
        )
        .1,
        Some(DropReason::IcmpEtc)
    );
    assert_eq!(
        parse(
            LinkType::Ethernet,
            &eth(&[], 0x0800, &ipv4(47, 1, 0, &[0; 8]))
        )
        .1,
        Some(DropReason::NonUdpTcp)
    );
    assert_eq!(
        parse(LinkType::Ethernet, &[0; 13]).1,
        Some(DropReason::Truncated)
    );
    for r in DropReason::ALL {
        assert_eq!(DropReason::ALL[r.index()], r);
        assert!(!r.name().is_empty());
    }
}

#[test]
fn tcp_payload() {
    let mut seg = vec![
        0x13, 0xc4, 0x30, 0x39, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    seg.extend_from_slice(&[2, 4, 5, 0xb4]); // MSS option: data offset 24
    seg.extend_from_slice(b"REGISTER");
    let mut r = Ipv4Reassembler::default();
    let data = ipv4(6, 1, 0, &seg);
    let f = Frame {
        ts: Timestamp(0),
        link: LinkType::RawIp,
        data: &data,
    };
    assert_eq!(
        parse_frame(&f, &mut r),
        Parsed::Tcp {
            src: SocketAddr::new(A4.into(), 5060),
            dst: SocketAddr::new(B4.into(), 12345),
            payload: b"REGISTER"
        }
    );
    seg[12] = 0x40;
    let data = ipv4(6, 1, 0, &seg);
    let f = Frame {
        ts: Timestamp(0),
        link: LinkType::RawIp,
        data: &data,
    };
    assert_eq!(
        parse_frame(&f, &mut r),
        Parsed::Other(DropReason::BadL4Header)
    );
}

/// A SIP-sized UDP datagram and its IPv4 fragments at the given (offset, len) byte ranges of the
/// UDP datagram; the piece reaching the end is the last fragment.
fn fragments(id: u16, pieces: &[(usize, usize)]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let dgram = udp(5060, 5060, &body);
    let frames = pieces
        .iter()
        .map(|&(off, len)| {
            let end = (off + len).min(dgram.len());
            let mf = if end < dgram.len() { 0x2000 } else { 0 };
            eth(
                &[],
                0x0800,
                &ipv4(17, id, mf | (off / 8) as u16, &dgram[off..end]),
            )
        })
        .collect();
    (body, frames)
}

fn feed(
    r: &mut Ipv4Reassembler,
    frames: &[Vec<u8>],
    ts: u64,
) -> Vec<Result<Vec<u8>, Parsed<'static>>> {
    frames
        .iter()
        .map(|data| {
            let f = Frame {
                ts: Timestamp(ts),
                link: LinkType::Ethernet,
                data,
            };
            match parse_frame(&f, r) {
                Parsed::Udp(d) => Ok(d.payload.to_vec()),
                Parsed::Fragment => Err(Parsed::Fragment),
                Parsed::Other(w) => Err(Parsed::Other(w)),
                Parsed::Tcp { .. } => panic!("tcp"),
            }
        })
        .collect()
}

fn only_last_completes(results: &[Result<Vec<u8>, Parsed<'static>>], body: &[u8]) {
    let (last, rest) = results.split_last().unwrap();
    assert!(rest.iter().all(|r| *r == Err(Parsed::Fragment)), "{rest:?}");
    assert_eq!(last.as_deref().ok(), Some(body));
}

#[test]
fn fragments_in_order_out_of_order_duplicated_overlapping() {
    let in_order = [(0, 1480), (1480, 1480), (2960, 1480)];
    let mut r = Ipv4Reassembler::default();
    let (body, frames) = fragments(7, &in_order);
    only_last_completes(&feed(&mut r, &frames, 1), &body);

    let (_, mut frames) = fragments(8, &in_order);
    frames.reverse();
    only_last_completes(&feed(&mut r, &frames, 1), &body);

    let (_, frames) = fragments(
        9,
        &[
            (0, 1480),
            (0, 1480),
            (1480, 1480),
            (1480, 1480),
            (2960, 1480),
        ],
    );
    only_last_completes(&feed(&mut r, &frames, 1), &body);

    // Overlaps: the middle piece covers the tail of the first and head of the last.
    let (_, frames) = fragments(10, &[(0, 1000), (2000, 2000), (800, 1600)]);
    only_last_completes(&feed(&mut r, &frames, 1), &body);
    assert_eq!(r.stats().completed, 4);
    assert_eq!(r.in_progress(), 0);

    // Interleaved datagrams with different ids.
    let (_, a) = fragments(11, &in_order);
    let (_, b) = fragments(12, &in_order);
    let mixed = [
        a[0].clone(),
        b[0].clone(),
        b[2].clone(),
        a[1].clone(),
        b[1].clone(),
        a[2].clone(),
    ];
    let res = feed(&mut r, &mixed, 1);
    assert_eq!(res[4].as_deref().ok(), Some(&body[..]));
    assert_eq!(res[5].as_deref().ok(), Some(&body[..]));
}

#[test]
fn fragment_timeout_full_eviction_and_conflicts() {
    let mut r = Ipv4Reassembler::new(2, 30_000_000_000);
    let (body, frames) = fragments(1, &[(0, 1480), (1480, 1480), (2960, 1480)]);
    // First fragment, then the rest 31 s later: the first was evicted, so no completion.
    assert_eq!(feed(&mut r, &frames[..1], 0), vec![Err(Parsed::Fragment)]);
    let late = feed(&mut r, &frames[1..], 31_000_000_000);
    assert!(late.iter().all(|x| *x == Err(Parsed::Fragment)));
    assert_eq!(r.stats().evicted_timeout, 1);
    // Within the timeout it completes.
    let res = feed(&mut r, &frames[..1], 40_000_000_000);
    assert!(res[0].as_deref().ok() == Some(&body[..]));

    // Capacity 2: a third datagram evicts the oldest.
    let mut r = Ipv4Reassembler::new(2, 30_000_000_000);
    for (id, ts) in [(1, 1), (2, 2), (3, 3)] {
        let (_, f) = fragments(id, &[(0, 1480)]);
        feed(&mut r, &f, ts);
    }
    assert_eq!(r.stats().evicted_full, 1);
    let (_, rest2) = fragments(2, &[(1480, 1480), (2960, 1480)]);
    assert!(
        feed(&mut r, &rest2, 4)[1].as_deref().ok() == Some(&body[..]),
        "datagram 2 was kept"
    );
    let (_, rest1) = fragments(1, &[(1480, 1480), (2960, 1480)]);
    assert!(
        feed(&mut r, &rest1, 5).iter().all(|x| x.is_err()),
        "datagram 1 was evicted"
    );

    // Two different ends: the datagram is abandoned.
    let mut r = Ipv4Reassembler::default();
    let (_, a) = fragments(5, &[(0, 1480), (2960, 1480)]);
    let (_, b) = fragments(5, &[(1480, 3000)]);
    let mut res = feed(&mut r, &a, 0);
    let mut tail = b[0].clone();
    // Truncate the IP payload of `b` to end earlier but still claim to be last.
    let ip_len = 20 + 1480 - 8;
    tail.truncate(14 + ip_len);
    tail[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
    res.extend(feed(&mut r, &[tail], 0));
    assert_eq!(res[2], Err(Parsed::Other(DropReason::FragmentDropped)));
    assert_eq!(r.in_progress(), 0);

    // A non-last fragment whose length is not a multiple of 8 is refused.
    let (_, odd) = fragments(6, &[(0, 1001)]);
    assert_eq!(
        feed(&mut r, &odd, 0)[0],
        Err(Parsed::Other(DropReason::FragmentDropped))
    );
}

#[test]
fn fragmented_icmp_is_not_held() {
    let mut r = Ipv4Reassembler::default();
    let data = eth(&[], 0x0800, &ipv4(1, 3, 0x2000, &[0; 16]));
    let f = Frame {
        ts: Timestamp(0),
        link: LinkType::Ethernet,
        data: &data,
    };
    assert_eq!(parse_frame(&f, &mut r), Parsed::Other(DropReason::IcmpEtc));
    assert_eq!(r.in_progress(), 0);
}

/// Every prefix of valid frames and pseudo-random bytes: parse must never panic.
#[test]
fn no_panic_on_any_prefix_or_noise() {
    let u = udp(1, 2, b"x");
    let frames = [
        (LinkType::Ethernet, eth(&[0x88a8, 0x8100], 0x0800, &sip4())),
        (
            LinkType::Ethernet,
            eth(&[], 0x86dd, &ipv6(0, &ext(17, 1, &u))),
        ),
        (LinkType::LinuxSll, sll(0x0800, &sip4())),
        (LinkType::LinuxSll2, sll2(0x86dd, &ipv6(17, &u))),
        (
            LinkType::Null,
            [2, 0, 0, 0].into_iter().chain(sip4()).collect(),
        ),
        (LinkType::RawIp, ipv4(17, 9, 0x2000, &[0; 16])),
    ];
    let mut r = Ipv4Reassembler::new(4, 1_000);
    for (link, f) in &frames {
        for n in 0..=f.len() {
            let fr = Frame {
                ts: Timestamp(n as u64),
                link: *link,
                data: &f[..n],
            };
            let _ = parse_frame(&fr, &mut r);
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = [0u8; 96];
    for i in 0..20_000u64 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Make the noise look like IP often enough to reach the deeper code.
        buf[0] = if i % 2 == 0 { 0x45 } else { 0x60 };
        let link = frames[(i % frames.len() as u64) as usize].0;
        let data = if link == LinkType::RawIp {
            &buf[..]
        } else {
            &buf[..(x % 96) as usize]
        };
        let fr = Frame {
            ts: Timestamp(i),
            link,
            data,
        };
        let _ = parse_frame(&fr, &mut r);
    }
}
