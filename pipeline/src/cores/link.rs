//! The rings between one rx core and the control core: SIP datagrams up (copied into fixed
//! slots; a full ring is a counted drop, never a stall of rx), flow-table updates down (the
//! rx core applies them at the start of each burst and acknowledges how many it applied).
//!
//! The acknowledgment is one atomic counter per rx core, written by the rx core once per
//! burst and read by the control core: it lets the control core send a recording's `Stop` to
//! its writer only after every rx core has removed the recording's flows, so no RTP of the
//! recording can follow the `Stop`.

use crate::flow::FlowUpdate;
use crate::Timestamp;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Longest SIP datagram carried to the control core (reassembled INVITEs with large SDP fit);
/// longer ones are counted as dropped.
pub const MAX_SIP_LEN: usize = 8192;

/// One SIP datagram on its way to the control core, copied so the ring never points into an
/// rx buffer.
#[derive(Clone)]
pub struct SipDatagram {
    /// Capture time.
    pub ts: Timestamp,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    len: u16,
    data: [u8; MAX_SIP_LEN],
}

impl SipDatagram {
    /// A copy of `payload`; `None` when it is longer than [`MAX_SIP_LEN`].
    #[inline]
    pub fn new(ts: Timestamp, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Option<SipDatagram> {
        if payload.len() > MAX_SIP_LEN {
            return None;
        }
        let mut d = SipDatagram { ts, src, dst, len: payload.len() as u16, data: [0; MAX_SIP_LEN] };
        d.data[..payload.len()].copy_from_slice(payload);
        Some(d)
    }

    /// The UDP payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(MAX_SIP_LEN)]
    }
}

/// A flow-table change for an rx core's copy of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxUpdate {
    /// The change.
    pub update: FlowUpdate,
    /// For an install: capture time of the SIP message that caused it. RTP of the flow the
    /// rx core saw since then, before the install reached it, is still delivered (see
    /// [`super::rx::RxCore`]).
    pub since: Timestamp,
}

/// Acknowledged updates of one rx core, on its own cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Acked(AtomicU64);

/// The rx core's end of its link to the control core.
pub struct RxLink {
    pub(crate) sip: rtrb::Producer<SipDatagram>,
    pub(crate) updates: rtrb::Consumer<RxUpdate>,
    acked: Arc<Acked>,
    applied: u64,
}

impl RxLink {
    /// Notes that `n` more updates were applied, and publishes the total.
    #[inline]
    pub(crate) fn applied(&mut self, n: usize) {
        if n > 0 {
            self.applied += n as u64;
            // Release: the RTP this core pushed before (into writer rings) is visible to
            // whoever reads the count with Acquire, and so to the writer that gets the Stop
            // the control core sends after reading it.
            self.acked.0.store(self.applied, Ordering::Release);
        }
    }
}

/// The control core's end of its link to one rx core.
pub struct ControlLink {
    /// SIP datagrams from the rx core, oldest first.
    pub sip: rtrb::Consumer<SipDatagram>,
    updates: rtrb::Producer<RxUpdate>,
    acked: Arc<Acked>,
    sent: u64,
}

impl ControlLink {
    /// Sends an update, waiting while the ring is full (the rx core drains it every burst
    /// and never waits on the control core). False when the rx core is gone.
    pub fn send(&mut self, update: RxUpdate) -> bool {
        let mut u = update;
        loop {
            match self.updates.push(u) {
                Ok(()) => {
                    self.sent += 1;
                    return true;
                }
                Err(rtrb::PushError::Full(back)) => {
                    if self.updates.is_abandoned() {
                        return false;
                    }
                    u = back;
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Updates sent so far: the epoch to wait for with [`ControlLink::has_applied`].
    pub fn epoch(&self) -> u64 {
        self.sent
    }

    /// True when the rx core applied every update up to `epoch`, or is gone (a core that
    /// exited delivers nothing more).
    pub fn has_applied(&self, epoch: u64) -> bool {
        self.acked.0.load(Ordering::Acquire) >= epoch || self.updates.is_abandoned()
    }
}

/// A link with `sip_slots` SIP slots and `update_slots` update slots.
pub fn link(sip_slots: usize, update_slots: usize) -> (RxLink, ControlLink) {
    let (sip_p, sip_c) = rtrb::RingBuffer::new(sip_slots.max(1));
    let (up_p, up_c) = rtrb::RingBuffer::new(update_slots.max(1));
    let acked = Arc::new(Acked::default());
    (
        RxLink { sip: sip_p, updates: up_c, acked: Arc::clone(&acked), applied: 0 },
        ControlLink { sip: sip_c, updates: up_p, acked, sent: 0 },
    )
}

/// Takes the oldest SIP datagram (by capture time) at the heads of `links`' rings: rx cores
/// share flows by hash, so the two directions of a SIP transaction can arrive on different
/// cores, and the control core must see the request before its response.
pub fn next_sip(links: &mut [ControlLink]) -> Option<SipDatagram> {
    let mut best: Option<(usize, Timestamp)> = None;
    for (i, l) in links.iter().enumerate() {
        if let Ok(d) = l.sip.peek() {
            if best.is_none_or(|(_, t)| d.ts < t) {
                best = Some((i, d.ts));
            }
        }
    }
    links[best?.0].sip.pop().ok()
}
