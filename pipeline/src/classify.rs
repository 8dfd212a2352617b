//! Classify: decides each UDP datagram's fate (SIP to the control core, RTP of a recorded
//! flow to its writer, the rest counted and dropped), and keeps the per-class counters.
//!
//! One `match` on cheap tests, in order of cost: SIP port, flow-table hit, SIP-looking payload.

use crate::flow::{FlowTable, FlowTarget};
use std::net::SocketAddr;

/// Most SIP ports one classifier listens for.
pub const MAX_SIP_PORTS: usize = 8;

/// A datagram's fate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// A SIP message, for the control core.
    Sip,
    /// RTP of a recorded flow, for the writer named in the target.
    Rtp(FlowTarget),
    /// RTCP multiplexed on a recorded flow (RFC 5761): counted, not recorded.
    Rtcp,
    /// Nothing callrec wants.
    Other(Unwanted),
}

/// Why a datagram is not wanted; each reason has its own counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unwanted {
    /// UDP that is neither SIP nor a recorded flow (includes RTP of unrecorded calls).
    Unrecorded,
    /// A SIP keep-alive (CRLF ping) or empty datagram on a SIP port.
    KeepAlive,
    /// A recorded flow's datagram that is not RTP version 2.
    NotRtp,
    /// RTP longer than a writer ring slot.
    Oversize,
}

/// Decides fates. Holds the configured SIP ports; the flow table is passed in so that its
/// owner can update it between bursts.
#[derive(Clone, Debug)]
pub struct Classifier {
    sip_ports: heapless::Vec<u16, MAX_SIP_PORTS>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(&[5060])
    }
}

impl Classifier {
    /// A classifier for these SIP ports (extra ports past `MAX_SIP_PORTS` are ignored).
    pub fn new(sip_ports: &[u16]) -> Self {
        let mut v = heapless::Vec::new();
        for p in sip_ports.iter().take(MAX_SIP_PORTS) {
            let _ = v.push(*p);
        }
        Classifier { sip_ports: v }
    }

    /// True for a configured SIP port.
    #[inline]
    pub fn is_sip_port(&self, port: u16) -> bool {
        self.sip_ports.contains(&port)
    }

    /// The fate of one UDP datagram.
    #[inline]
    pub fn classify(&self, src: SocketAddr, dst: SocketAddr, payload: &[u8], flows: &FlowTable) -> Class {
        if self.is_sip_port(dst.port()) || self.is_sip_port(src.port()) {
            if payload.iter().all(|b| matches!(b, b'\r' | b'\n' | 0 | b' ')) {
                return Class::Other(Unwanted::KeepAlive);
            }
            return Class::Sip;
        }
        if let Some(target) = flows.lookup(src, dst) {
            if payload.len() < 12 || payload[0] >> 6 != 2 {
                return Class::Other(Unwanted::NotRtp);
            }
            // RFC 5761: RTCP packet types 200..=204 sit where RTP's marker+PT byte is.
            if (200..=204).contains(&payload[1]) {
                return Class::Rtcp;
            }
            if payload.len() > crate::writer::MAX_RTP_LEN {
                return Class::Other(Unwanted::Oversize);
            }
            return Class::Rtp(target);
        }
        if looks_like_sip(payload) {
            return Class::Sip;
        }
        Class::Other(Unwanted::Unrecorded)
    }
}

/// A cheap test that a payload starts like a SIP message: a status line (`SIP/2.0 NNN`) or a
/// request line whose first line ends in ` SIP/2.0`. Used for SIP on unconfigured ports.
pub fn looks_like_sip(p: &[u8]) -> bool {
    if p.starts_with(b"SIP/2.0 ") {
        return p.len() >= 11 && p[8..11].iter().all(u8::is_ascii_digit);
    }
    // A request method is an upper-case token; look at the first line only (bounded).
    let method_len = p.iter().take(20).take_while(|b| b.is_ascii_uppercase()).count();
    if method_len < 3 || p.get(method_len) != Some(&b' ') {
        return false;
    }
    let line_end = p.iter().take(2048).position(|&b| b == b'\r' || b == b'\n');
    match line_end {
        Some(end) => p[..end].ends_with(b" SIP/2.0"),
        None => false,
    }
}

/// Packet counters of one rx core, by class and by drop reason.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Frames received.
    pub rx: u64,
    /// SIP datagrams handed to the control core.
    pub sip: u64,
    /// SIP over TCP seen (not yet supported).
    pub sip_tcp: u64,
    /// RTP datagrams handed to writers.
    pub rtp: u64,
    /// RTCP on recorded flows.
    pub rtcp: u64,
    /// UDP that was neither SIP nor recorded RTP.
    pub unrecorded: u64,
    /// SIP keep-alives.
    pub keepalive: u64,
    /// Recorded-flow datagrams that were not RTP.
    pub not_rtp: u64,
    /// RTP too long for a ring slot.
    pub oversize: u64,
    /// Frames that were not UDP/TCP over IP, or broken (by parse).
    pub not_udp: u64,
    /// IPv4 fragments held for reassembly.
    pub fragments: u64,
    /// RTP dropped because a writer ring was full (live ports only; replay waits).
    pub ring_full: u64,
    /// SIP dropped on the way to a control core on another thread (its ring full, or longer
    /// than a ring slot).
    pub sip_dropped: u64,
}

impl Counters {
    /// Adds `other` into `self` (totals over rx cores).
    pub fn merge(&mut self, o: &Counters) {
        self.rx += o.rx;
        self.sip += o.sip;
        self.sip_tcp += o.sip_tcp;
        self.rtp += o.rtp;
        self.rtcp += o.rtcp;
        self.unrecorded += o.unrecorded;
        self.keepalive += o.keepalive;
        self.not_rtp += o.not_rtp;
        self.oversize += o.oversize;
        self.not_udp += o.not_udp;
        self.fragments += o.fragments;
        self.ring_full += o.ring_full;
        self.sip_dropped += o.sip_dropped;
    }

    /// Frames that were neither SIP, RTP, RTCP nor dropped at a ring: the "other" classes.
    pub fn other(&self) -> u64 {
        self.unrecorded + self.keepalive + self.not_rtp + self.oversize + self.not_udp + self.fragments + self.sip_tcp
    }

    /// Counts one classified datagram.
    #[inline]
    pub fn count(&mut self, class: Class) {
        match class {
            Class::Sip => self.sip += 1,
            Class::Rtp(_) => self.rtp += 1,
            Class::Rtcp => self.rtcp += 1,
            Class::Other(Unwanted::Unrecorded) => self.unrecorded += 1,
            Class::Other(Unwanted::KeepAlive) => self.keepalive += 1,
            Class::Other(Unwanted::NotRtp) => self.not_rtp += 1,
            Class::Other(Unwanted::Oversize) => self.oversize += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Channel, FlowKey, FlowUpdate, RecordingId};

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(pt: u8) -> [u8; 172] {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[1] = pt;
        p
    }

    #[test]
    fn sip_port_then_flow_then_heuristic() {
        let c = Classifier::new(&[5060]);
        let mut flows = FlowTable::new();
        let key = FlowKey { src: a("192.0.2.10:6000"), dst: a("192.0.2.20:6002") };
        let target = FlowTarget { writer: 0, recording: RecordingId(1), channel: Channel::Left, source: 0 };
        flows.apply(FlowUpdate::Install(key, target));

        assert_eq!(c.classify(a("192.0.2.10:5060"), a("192.0.2.20:5060"), b"INVITE sip:a@b SIP/2.0\r\n", &flows), Class::Sip);
        assert_eq!(c.classify(a("192.0.2.10:5060"), a("192.0.2.20:5060"), b"\r\n\r\n", &flows), Class::Other(Unwanted::KeepAlive));
        assert_eq!(c.classify(key.src, key.dst, &rtp(8), &flows), Class::Rtp(target));
        assert_eq!(c.classify(key.src, key.dst, &rtp(200), &flows), Class::Rtcp);
        assert_eq!(c.classify(key.src, key.dst, &[0x40; 20], &flows), Class::Other(Unwanted::NotRtp));
        assert_eq!(c.classify(key.dst, key.src, &rtp(8), &flows), Class::Other(Unwanted::Unrecorded));
        assert_eq!(c.classify(a("192.0.2.1:7000"), a("192.0.2.2:5080"), b"SIP/2.0 200 OK\r\n", &flows), Class::Sip);
        let big = [0x80u8; crate::writer::MAX_RTP_LEN + 1];
        assert_eq!(c.classify(key.src, key.dst, &big, &flows), Class::Other(Unwanted::Oversize));
    }

    #[test]
    fn sip_heuristic_is_strict() {
        assert!(looks_like_sip(b"OPTIONS sip:x@y SIP/2.0\r\nVia: x\r\n"));
        assert!(looks_like_sip(b"SIP/2.0 180 Ringing\r\n"));
        assert!(!looks_like_sip(b"SIP/2.0 OK\r\n"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_sip(&[0x80, 8, 0, 1, 2, 3]));
        assert!(!looks_like_sip(b"INVITE sip:x@y SIP/2.0")); // no line end: not a message
        assert!(!looks_like_sip(b""));
        assert!(looks_like_sip(b"BYE tel:+123 SIP/2.0\r\n"));
        assert!(!looks_like_sip(b"INVITE sip:x SIP/3.0\r\n"));
    }
}
