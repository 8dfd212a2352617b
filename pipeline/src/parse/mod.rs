//! Parse: finds the UDP (or TCP) payload in a frame through link, VLAN, IPv4/IPv6 headers, as
//! zero-copy views; reassembles fragmented IPv4 (large SIP INVITEs fragment).
//!
//! smoltcp's wire views read Ethernet, IPv4, IPv6 and UDP; 802.1Q/QinQ tags and Linux cooked
//! (SLL, SLL2) headers have no smoltcp view, so [`link`] has small hand-written ones.
//!
//! Not handled, on purpose: IPv6 fragments are counted as [`DropReason::Ipv6Fragment`] (SIP over
//! IPv6 rarely fragments, and RTP never should); IP and UDP checksums are not verified (mirror
//! copies taken on the sender carry offloaded, not-yet-filled checksums).

pub mod link;
pub mod reasm;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, UdpPacket};

use crate::port::Frame;
pub use reasm::{FragKey, Ipv4Reassembler, Reasm, ReasmStats};

/// A UDP datagram found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload (exactly the UDP length field's worth).
    pub payload: &'a [u8],
}

/// What a frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A UDP datagram (possibly reassembled from IPv4 fragments).
    Udp(UdpDatagram<'a>),
    /// A TCP segment (SIP over TCP); the payload is this segment's bytes only.
    Tcp {
        /// Source address and port.
        src: SocketAddr,
        /// Destination address and port.
        dst: SocketAddr,
        /// The segment's payload.
        payload: &'a [u8],
    },
    /// An IPv4 fragment held by the reassembler until its datagram is complete.
    Fragment,
    /// Nothing callrec uses; the reason goes to a counter.
    Other(DropReason),
}

/// Why a frame yields no UDP or TCP payload; one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not IPv4 or IPv6 (ARP, LLDP, 802.3 LLC, unknown loopback family, ...).
    NotIp,
    /// Captured bytes end before a header or the length a header claims (snapped capture).
    Truncated,
    /// An IP header that cannot be right (version, header length, total length).
    BadIpHeader,
    /// A UDP length below 8, or a TCP data offset below 20.
    BadL4Header,
    /// IP carrying something other than UDP, TCP or ICMP.
    NonUdpTcp,
    /// ICMP or ICMPv6.
    IcmpEtc,
    /// An IPv4 fragment the reassembler refused (bad length, conflicting ends, too large).
    FragmentDropped,
    /// An IPv6 fragment: not reassembled.
    Ipv6Fragment,
    /// More than [`MAX_IPV6_EXT`] IPv6 extension headers, or a jumbogram.
    Ipv6Unsupported,
}

impl DropReason {
    /// Every reason, for counter tables.
    pub const ALL: [DropReason; 9] = [
        DropReason::NotIp,
        DropReason::Truncated,
        DropReason::BadIpHeader,
        DropReason::BadL4Header,
        DropReason::NonUdpTcp,
        DropReason::IcmpEtc,
        DropReason::FragmentDropped,
        DropReason::Ipv6Fragment,
        DropReason::Ipv6Unsupported,
    ];

    /// Short snake_case name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::NotIp => "not_ip",
            DropReason::Truncated => "truncated",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadL4Header => "bad_l4_header",
            DropReason::NonUdpTcp => "non_udp_tcp",
            DropReason::IcmpEtc => "icmp",
            DropReason::FragmentDropped => "fragment_dropped",
            DropReason::Ipv6Fragment => "ipv6_fragment",
            DropReason::Ipv6Unsupported => "ipv6_unsupported",
        }
    }

    /// Index into [`DropReason::ALL`], for array counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Most IPv6 extension headers walked before giving up.
pub const MAX_IPV6_EXT: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

/// Finds the UDP or TCP payload in `frame`. IPv4 fragments go to `reasm`; the one that completes
/// a datagram returns it, borrowed from the reassembler. Allocates nothing.
#[inline]
pub fn parse_frame<'a>(frame: &Frame<'a>, reasm: &'a mut Ipv4Reassembler) -> Parsed<'a> {
    let (ethertype, l3) = match link::network_layer(frame.link, frame.data) {
        Ok(x) => x,
        Err(r) => return Parsed::Other(r),
    };
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(l3, frame, reasm),
        ETHERTYPE_IPV6 => ipv6(l3),
        _ => Parsed::Other(DropReason::NotIp),
    }
}

#[inline]
fn ipv4<'a>(d: &'a [u8], frame: &Frame<'a>, reasm: &'a mut Ipv4Reassembler) -> Parsed<'a> {
    if d.len() < 20 {
        return Parsed::Other(DropReason::Truncated);
    }
    let ihl = (d[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([d[2], d[3]]) as usize;
    if d[0] >> 4 != 4 || ihl < 20 || total < ihl {
        return Parsed::Other(DropReason::BadIpHeader);
    }
    if d.len() < total {
        return Parsed::Other(DropReason::Truncated);
    }
    // Checked above: header and total length fit, so the view's accessors cannot panic.
    // Slicing to `total` drops Ethernet padding and trailing FCS.
    let ip = Ipv4Packet::new_unchecked(&d[..total]);
    let proto = d[9];
    let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    if ip.more_frags() || ip.frag_offset() != 0 {
        if proto != PROTO_UDP && proto != PROTO_TCP {
            return Parsed::Other(not_udp_tcp(proto));
        }
        let key = FragKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            id: ip.ident(),
            proto,
        };
        return match reasm.push(
            key,
            frame.ts,
            ip.frag_offset() as usize,
            ip.more_frags(),
            ip.payload(),
        ) {
            Reasm::Held => Parsed::Fragment,
            Reasm::Dropped => Parsed::Other(DropReason::FragmentDropped),
            Reasm::Complete(whole) => l4(proto, src, dst, whole),
        };
    }
    l4(proto, src, dst, ip.payload())
}

#[inline]
fn ipv6(d: &[u8]) -> Parsed<'_> {
    if d.len() < 40 {
        return Parsed::Other(DropReason::Truncated);
    }
    if d[0] >> 4 != 6 {
        return Parsed::Other(DropReason::BadIpHeader);
    }
    let payload_len = u16::from_be_bytes([d[4], d[5]]) as usize;
    if payload_len == 0 {
        // Jumbogram (hop-by-hop jumbo option) or an empty packet: neither carries SIP or RTP.
        return Parsed::Other(DropReason::Ipv6Unsupported);
    }
    if d.len() < 40 + payload_len {
        return Parsed::Other(DropReason::Truncated);
    }
    let ip = Ipv6Packet::new_unchecked(&d[..40 + payload_len]);
    let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
    let mut next = d[6];
    let mut p = ip.payload();
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units, minus one.
            0 | 43 | 60 => p.get(1).map(|&l| (l as usize + 1) * 8),
            // Authentication header: length in 4-octet units, minus two.
            51 => p.get(1).map(|&l| (l as usize + 2) * 4),
            44 => return Parsed::Other(DropReason::Ipv6Fragment),
            _ => return l4(next, src, dst, p),
        };
        match len {
            Some(len) if len <= p.len() => {
                next = p[0];
                p = &p[len..];
            }
            _ => return Parsed::Other(DropReason::Truncated),
        }
    }
    Parsed::Other(DropReason::Ipv6Unsupported)
}

#[inline]
fn l4(proto: u8, src: IpAddr, dst: IpAddr, p: &[u8]) -> Parsed<'_> {
    match proto {
        PROTO_UDP => {
            if p.len() < 8 {
                return Parsed::Other(DropReason::Truncated);
            }
            let udp = UdpPacket::new_unchecked(p);
            let len = udp.len() as usize;
            if len < 8 {
                return Parsed::Other(DropReason::BadL4Header);
            }
            if len > p.len() {
                // The IP datagram ends before the UDP length says.
                return Parsed::Other(DropReason::Truncated);
            }
            Parsed::Udp(UdpDatagram {
                src: SocketAddr::new(src, udp.src_port()),
                dst: SocketAddr::new(dst, udp.dst_port()),
                payload: &p[8..len],
            })
        }
        PROTO_TCP => {
            if p.len() < 20 {
                return Parsed::Other(DropReason::Truncated);
            }
            let off = (p[12] >> 4) as usize * 4;
            if off < 20 {
                return Parsed::Other(DropReason::BadL4Header);
            }
            let Some(payload) = p.get(off..) else {
                return Parsed::Other(DropReason::Truncated);
            };
            Parsed::Tcp {
                src: SocketAddr::new(src, u16::from_be_bytes([p[0], p[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([p[2], p[3]])),
                payload,
            }
        }
        _ => Parsed::Other(not_udp_tcp(proto)),
    }
}

#[inline]
fn not_udp_tcp(proto: u8) -> DropReason {
    if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
        DropReason::IcmpEtc
    } else {
        DropReason::NonUdpTcp
    }
}
