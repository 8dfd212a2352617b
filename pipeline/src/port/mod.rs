//! Ports: where frames come from. Each delivers bursts of frames with their capture time.

pub mod af_packet;
pub mod pcap;
pub mod tap;

use crate::Timestamp;

/// Most frames in one burst.
pub const BURST: usize = 32;

/// Link-layer framing of a port's frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkType {
    /// Ethernet II (with optional 802.1Q / QinQ tags).
    Ethernet,
    /// Linux cooked capture v1 (DLT_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2, 276).
    LinuxSll2,
    /// Raw IPv4 or IPv6, no link header (DLT_RAW 101 / 12, IPV4 228, IPV6 229).
    RawIp,
    /// BSD loopback / null (DLT_NULL 0, host-order family; LOOP 108, network-order family):
    /// a 4-byte address family, read in either byte order.
    Null,
}

/// One received frame, borrowed from the port's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Framing of `data`.
    pub link: LinkType,
    /// The captured bytes (may be shorter than the frame on the wire if snapped).
    pub data: &'a [u8],
}
