//! Link layer: strips Ethernet (+ 802.1Q/QinQ tags), Linux SLL/SLL2 or NULL/LOOP headers down to
//! the network layer. smoltcp reads plain Ethernet; the rest are hand-written views because
//! smoltcp has none for them.

use smoltcp::wire::EthernetFrame;

use super::{DropReason, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::port::LinkType;

/// 802.1Q customer tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad service tag (QinQ outer).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Most VLAN tags stripped from one frame (QinQ is two).
pub const MAX_TAGS: usize = 4;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A view of one 802.1Q / 802.1ad tag: TCI (2 bytes) then the inner ethertype (2 bytes).
#[derive(Clone, Copy, Debug)]
pub struct VlanTag<'a>(&'a [u8]);

impl<'a> VlanTag<'a> {
    /// Tag length.
    pub const LEN: usize = 4;
    /// The tag at the start of `b`, `None` if `b` is too short.
    #[inline]
    pub fn new_checked(b: &'a [u8]) -> Option<Self> {
        (b.len() >= Self::LEN).then_some(VlanTag(b))
    }
    /// VLAN id (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        be16(self.0, 0) & 0x0fff
    }
    /// Ethertype of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.0, 2)
    }
    /// The bytes after the tag.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

/// A view of a Linux cooked capture v1 header (16 bytes, protocol last).
#[derive(Clone, Copy, Debug)]
pub struct SllHeader<'a>(&'a [u8]);

impl<'a> SllHeader<'a> {
    /// Header length.
    pub const LEN: usize = 16;
    /// The header at the start of `b`, `None` if `b` is too short.
    #[inline]
    pub fn new_checked(b: &'a [u8]) -> Option<Self> {
        (b.len() >= Self::LEN).then_some(SllHeader(b))
    }
    /// Packet type (0 to us, 4 sent by us, ...).
    #[inline]
    pub fn packet_type(&self) -> u16 {
        be16(self.0, 0)
    }
    /// ARPHRD_ type of the interface.
    #[inline]
    pub fn arphrd(&self) -> u16 {
        be16(self.0, 2)
    }
    /// Protocol (an ethertype for Ethernet-like interfaces).
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.0, 14)
    }
    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

/// A view of a Linux cooked capture v2 header (20 bytes, protocol first).
#[derive(Clone, Copy, Debug)]
pub struct Sll2Header<'a>(&'a [u8]);

impl<'a> Sll2Header<'a> {
    /// Header length.
    pub const LEN: usize = 20;
    /// The header at the start of `b`, `None` if `b` is too short.
    #[inline]
    pub fn new_checked(b: &'a [u8]) -> Option<Self> {
        (b.len() >= Self::LEN).then_some(Sll2Header(b))
    }
    /// Protocol (an ethertype).
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.0, 0)
    }
    /// Interface index the packet was captured on.
    #[inline]
    pub fn if_index(&self) -> u32 {
        u32::from_be_bytes([self.0[4], self.0[5], self.0[6], self.0[7]])
    }
    /// ARPHRD_ type of the interface.
    #[inline]
    pub fn arphrd(&self) -> u16 {
        be16(self.0, 8)
    }
    /// Packet type (0 to us, 4 sent by us, ...).
    #[inline]
    pub fn packet_type(&self) -> u8 {
        self.0[10]
    }
    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.0[Self::LEN..]
    }
}

/// The network-layer ethertype and bytes of a frame of the given framing.
#[inline]
pub fn network_layer(link: LinkType, data: &[u8]) -> Result<(u16, &[u8]), DropReason> {
    match link {
        LinkType::Ethernet => {
            let eth = EthernetFrame::new_checked(data).map_err(|_| DropReason::Truncated)?;
            strip_tags(u16::from(eth.ethertype()), eth.payload())
        }
        LinkType::LinuxSll => {
            let h = SllHeader::new_checked(data).ok_or(DropReason::Truncated)?;
            strip_tags(h.protocol(), h.payload())
        }
        LinkType::LinuxSll2 => {
            let h = Sll2Header::new_checked(data).ok_or(DropReason::Truncated)?;
            strip_tags(h.protocol(), h.payload())
        }
        LinkType::RawIp => by_version(data),
        LinkType::Null => {
            let fam = data.get(..4).ok_or(DropReason::Truncated)?;
            // Host order of the capturing machine (NULL) or network order (LOOP): try both.
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (the BSDs, macOS).
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
            if [le, be].iter().any(|f| matches!(f, 2 | 10 | 24 | 28 | 30)) {
                by_version(&data[4..])
            } else {
                Err(DropReason::NotIp)
            }
        }
    }
}

/// Strips up to [`MAX_TAGS`] VLAN tags.
#[inline]
fn strip_tags(mut ethertype: u16, mut p: &[u8]) -> Result<(u16, &[u8]), DropReason> {
    for stripped in 0..=MAX_TAGS {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            return Ok((ethertype, p));
        }
        if stripped == MAX_TAGS {
            break;
        }
        let tag = VlanTag::new_checked(p).ok_or(DropReason::Truncated)?;
        ethertype = tag.ethertype();
        p = tag.payload();
    }
    Err(DropReason::NotIp)
}

/// Raw IP: the version nibble says which.
#[inline]
fn by_version(p: &[u8]) -> Result<(u16, &[u8]), DropReason> {
    match p.first().map(|b| b >> 4) {
        Some(4) => Ok((ETHERTYPE_IPV4, p)),
        Some(6) => Ok((ETHERTYPE_IPV6, p)),
        Some(_) => Err(DropReason::NotIp),
        None => Err(DropReason::Truncated),
    }
}
