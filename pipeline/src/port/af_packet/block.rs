//! The TPACKET_V3 block format: walking a block's packet headers, bounds-checked.
//!
//! Safe code over the bytes of a block user space owns; every offset the kernel wrote is
//! checked against the block, so a bad header ends the walk instead of reading out of bounds.

use super::{Frame, LinkType};
use crate::Timestamp;

/// Where the walk of the current block stands.
#[derive(Clone, Copy, Debug)]
pub(super) struct Walk {
    /// Offset of the next packet header within the block.
    pub(super) next: usize,
    /// Packets not yet delivered.
    pub(super) left: u32,
}

/// Block descriptor offsets (struct tpacket_block_desc / tpacket_hdr_v1).
pub(super) mod bd {
    pub const STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const FIRST_PKT: usize = 16;
    pub const BLK_LEN: usize = 20;
}

/// Packet header offsets (struct tpacket3_hdr).
pub(super) mod ph {
    pub const NEXT: usize = 0;
    pub const SEC: usize = 4;
    pub const NSEC: usize = 8;
    pub const SNAPLEN: usize = 12;
    pub const MAC: usize = 24;
    pub const NET: usize = 26;
    pub const LEN: usize = 48;
}

#[inline]
fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[inline]
fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The walk of a block just handed over; `None` if its descriptor makes no sense.
pub(super) fn start_walk(block: &[u8]) -> Option<Walk> {
    let left = rd32(block, bd::NUM_PKTS)?;
    let next = rd32(block, bd::FIRST_PKT)? as usize;
    let blk_len = rd32(block, bd::BLK_LEN)? as usize;
    if blk_len > block.len() || (left > 0 && next >= blk_len) {
        return None;
    }
    Some(Walk { next, left })
}

/// The frame whose tpacket3_hdr is at `at`, and the offset of the next header relative to `at`.
/// `None` if any field points outside the block.
pub(super) fn packet_at(
    block: &[u8],
    at: usize,
    link: LinkType,
    from_network: bool,
) -> Option<(Frame<'_>, usize)> {
    let next = rd32(block, at.checked_add(ph::NEXT)?)? as usize;
    let sec = rd32(block, at + ph::SEC)? as u64;
    let nsec = rd32(block, at + ph::NSEC)? as u64;
    let snap = rd32(block, at + ph::SNAPLEN)? as usize;
    let mac = rd16(block, at + ph::MAC)? as usize;
    let net = rd16(block, at + ph::NET)? as usize;
    let (skip, len) = if from_network {
        (net, snap.checked_sub(net.checked_sub(mac)?)?)
    } else {
        (mac, snap)
    };
    let start = at.checked_add(skip)?;
    let data = block.get(start..start.checked_add(len)?)?;
    Some((
        Frame {
            ts: Timestamp::from_parts(sec, nsec.min(999_999_999)),
            link,
            data,
        },
        next,
    ))
}
