//! The rx core: one thread's parse -> classify -> writer rings, with its own flow table,
//! reassembler and counters. Alone (inline mode) it hands SIP back to its caller, which runs
//! the control core on the same thread; linked to a control core ([`RxCore::link`]) it copies
//! SIP into the control ring and applies the control core's flow updates at each burst.
//!
//! The install race: with a separate control core, the RTP that follows a 200 OK/ACK can
//! reach classify (on any rx core) a few hundred microseconds before the flow's install
//! does. Each linked rx core therefore keeps the last [`RECENT_SLOTS`] RTP-shaped datagrams
//! that matched no flow; an install delivers those of its flow seen since the SIP message that
//! caused it (less a slack, [`RECENT_SLACK_NS`]), in arrival order, before anything newer. Only
//! a flow whose install takes longer than that window (at line rate, a few hundred packets of
//! other traffic) misses its first packets.

use crate::classify::{Class, Classifier, Counters, Unwanted};
use crate::cores::link::{RxLink, SipDatagram};
use crate::flow::{FlowTable, FlowTarget, FlowUpdate};
use crate::parse::{parse_frame, Ipv4Reassembler, Parsed, UdpDatagram};
use crate::port::Frame;
use crate::writer::{RtpItem, WriterMsg, MAX_RTP_LEN};
use crate::Timestamp;
use std::net::SocketAddr;

/// IPv4 datagrams reassembled at once (SIP INVITEs with large SDP fragment).
const REASSEMBLY_SLOTS: usize = 64;
/// Fragments of a datagram must all arrive within this much capture time (RFC 791 suggests
/// 15 s; Linux uses 30 s).
const REASSEMBLY_TIMEOUT_NS: u64 = 30_000_000_000;
/// Unmatched RTP-shaped datagrams a linked rx core remembers for late installs.
pub const RECENT_SLOTS: usize = 256;
/// How much earlier than the install's SIP message a remembered packet may be stamped and
/// still be delivered. Rx cores stamp independently (a poll-mode driver stamps at read time,
/// so a core that was descheduled stamps late), so a packet sent after the 200 OK can carry an
/// earlier time than the 200 OK read on another core. One 20 ms packet of early media at most
/// gets in through this slack.
pub const RECENT_SLACK_NS: u64 = 20_000_000;
/// Updates applied per burst at most (the rest wait for the next burst).
const UPDATES_PER_BURST: usize = 1024;

/// What to do with RTP when a writer's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFull {
    /// Wait for room: capture files, where nothing may be lost and there is no line rate.
    Wait,
    /// Count the packet as dropped and go on: live ports, where rx must never stall.
    Drop,
}

/// One rx thread's dataplane state; see the module docs.
pub struct RxCore {
    classifier: Classifier,
    flows: FlowTable,
    reasm: Ipv4Reassembler,
    counters: Counters,
    rings: Vec<rtrb::Producer<WriterMsg>>,
    ring_full: RingFull,
    link: Option<Box<Linked>>,
}

struct Linked {
    link: RxLink,
    recent: Recent,
}

impl RxCore {
    /// An rx core for these SIP ports, feeding `rings` (one per writer, by writer index).
    pub fn new(sip_ports: &[u16], rings: Vec<rtrb::Producer<WriterMsg>>, ring_full: RingFull) -> RxCore {
        RxCore {
            classifier: Classifier::new(sip_ports),
            flows: FlowTable::new(),
            reasm: Ipv4Reassembler::new(REASSEMBLY_SLOTS, REASSEMBLY_TIMEOUT_NS),
            counters: Counters::default(),
            rings,
            ring_full,
            link: None,
        }
    }

    /// Links this core to a control core: SIP goes up the link, flow updates come down it.
    pub fn link(&mut self, link: RxLink) {
        self.link = Some(Box::new(Linked { link, recent: Recent::new() }));
    }

    /// Sets what a full writer ring does to RTP (control messages always wait).
    pub fn set_ring_full(&mut self, policy: RingFull) {
        self.ring_full = policy;
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The flow table (inline mode: the control core's driver applies updates to it).
    pub fn flows_mut(&mut self) -> &mut FlowTable {
        &mut self.flows
    }

    /// The writer rings (inline mode: the control core's driver sends commands on them).
    pub fn rings_mut(&mut self) -> &mut [rtrb::Producer<WriterMsg>] {
        &mut self.rings
    }

    /// Drops the writer rings: each writer drains, finalizes and returns once every producer
    /// of its rings is gone.
    pub fn close_rings(&mut self) {
        self.rings.clear();
    }

    /// Linked: applies the control core's pending flow updates and acknowledges them. Call
    /// at the start of every burst (and when idle, so that acknowledgments flow).
    #[inline]
    pub fn apply_updates(&mut self) {
        let Some(l) = self.link.as_deref_mut() else { return };
        let n = l.link.updates.slots().min(UPDATES_PER_BURST);
        if n == 0 {
            return;
        }
        for _ in 0..n {
            let Ok(u) = l.link.updates.pop() else { break };
            self.flows.apply(u.update);
            if let FlowUpdate::Install(_, target) = u.update {
                // Deliver what this core saw of the flow before the install reached it.
                let (flows, rings, counters, policy) = (&self.flows, &mut self.rings, &mut self.counters, self.ring_full);
                l.recent.take_matching(u.since, target, flows, &mut |ts, payload| {
                    counters.unrecorded -= 1;
                    counters.rtp += 1;
                    deliver(rings, counters, policy, target, ts, payload);
                });
            }
        }
        l.link.applied(n);
    }

    /// One received frame through parse and classify. RTP goes to its writer's ring; SIP is
    /// returned (inline mode) or copied to the control core (linked: `None` is returned).
    #[inline]
    pub fn frame<'s>(&'s mut self, frame: &Frame<'s>) -> Option<UdpDatagram<'s>> {
        self.counters.rx += 1;
        match parse_frame(frame, &mut self.reasm) {
            Parsed::Udp(d) => {
                let class = self.classifier.classify(d.src, d.dst, d.payload, &self.flows);
                self.counters.count(class);
                match class {
                    Class::Sip => match self.link.as_deref_mut() {
                        None => return Some(d),
                        Some(l) => {
                            let sent = SipDatagram::new(frame.ts, d.src, d.dst, d.payload)
                                .is_some_and(|s| l.link.sip.push(s).is_ok());
                            if !sent {
                                // a drop, not SIP handed on: rx still adds up
                                self.counters.sip -= 1;
                                self.counters.sip_dropped += 1;
                            }
                        }
                    },
                    Class::Rtp(target) => {
                        deliver(&mut self.rings, &mut self.counters, self.ring_full, target, frame.ts, d.payload)
                    }
                    Class::Other(Unwanted::Unrecorded) => {
                        if let Some(l) = self.link.as_deref_mut() {
                            l.recent.remember(frame.ts, d.src, d.dst, d.payload);
                        }
                    }
                    Class::Rtcp | Class::Other(_) => {}
                }
            }
            Parsed::Tcp { src, dst, .. } => {
                if self.classifier.is_sip_port(src.port()) || self.classifier.is_sip_port(dst.port()) {
                    self.counters.sip_tcp += 1;
                } else {
                    self.counters.not_udp += 1;
                }
            }
            Parsed::Fragment => self.counters.fragments += 1,
            Parsed::Other(_) => self.counters.not_udp += 1,
        }
        None
    }
}

/// RTP (already counted as RTP) to its writer's ring, or counted as a ring drop.
#[inline]
fn deliver(
    rings: &mut [rtrb::Producer<WriterMsg>],
    counters: &mut Counters,
    policy: RingFull,
    target: FlowTarget,
    ts: Timestamp,
    payload: &[u8],
) {
    if let Some(ring) = rings.get_mut(target.writer as usize) {
        match policy {
            RingFull::Wait => push_rtp(ring, target, ts, payload),
            RingFull::Drop => {
                if !try_push_rtp(ring, target, ts, payload) {
                    // a drop, not delivered RTP: rx still adds up
                    counters.rtp -= 1;
                    counters.ring_full += 1;
                }
            }
        }
    }
}

/// Copies one RTP packet into a writer's ring, waiting while the ring is full (see
/// [`RingFull`]).
#[inline]
pub fn push_rtp(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8]) {
    while !try_push_rtp(ring, target, ts, payload) {
        if ring.is_abandoned() {
            tracing::error!("a writer thread is gone; dropping its input");
            return;
        }
        std::thread::yield_now();
    }
}

/// Copies one RTP packet into a writer's ring if it has a free slot; false when full. The
/// item is built in its ring slot: a 1 KiB `RtpItem` built on the stack and then moved in
/// would be written twice.
#[inline]
pub fn try_push_rtp(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8]) -> bool {
    debug_assert!(payload.len() <= MAX_RTP_LEN, "classify drops oversize RTP");
    let len = payload.len().min(MAX_RTP_LEN);
    let Ok(mut chunk) = ring.write_chunk_uninit(1) else { return false };
    let (first, _) = chunk.as_mut_slices();
    if let Some(slot) = first.first_mut() {
        let msg = slot.write(WriterMsg::Rtp(RtpItem {
            recording: target.recording,
            channel: target.channel,
            source: target.source,
            ts,
            len: len as u16,
            data: [0; MAX_RTP_LEN],
        }));
        if let WriterMsg::Rtp(item) = msg {
            item.data[..len].copy_from_slice(&payload[..len]);
        }
    }
    // SAFETY: a chunk of one slot has it in its first slice (rtrb splits only at the ring's
    // end, and a one-slot chunk cannot straddle it), and that slot was just written: every
    // slot of the chunk is initialised.
    unsafe { chunk.commit_all() };
    true
}

/// Pushes, waiting while the ring is full (capture files; control messages).
pub fn push_waiting(ring: &mut rtrb::Producer<WriterMsg>, mut msg: WriterMsg) {
    loop {
        match ring.push(msg) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(m)) => {
                if ring.is_abandoned() {
                    tracing::error!("a writer thread is gone; dropping its input");
                    return;
                }
                msg = m;
                std::thread::yield_now();
            }
        }
    }
}

/// The last unmatched RTP-shaped datagrams, in a fixed ring allocated once.
struct Recent {
    meta: Vec<RecentMeta>,
    data: Vec<[u8; MAX_RTP_LEN]>,
    next: usize,
}

#[derive(Clone, Copy)]
struct RecentMeta {
    ts: Timestamp,
    src: SocketAddr,
    dst: SocketAddr,
    /// 0: empty or already delivered.
    len: u16,
}

impl Recent {
    fn new() -> Recent {
        let empty = RecentMeta { ts: Timestamp(0), src: SocketAddr::from(([0, 0, 0, 0], 0)), dst: SocketAddr::from(([0, 0, 0, 0], 0)), len: 0 };
        Recent { meta: vec![empty; RECENT_SLOTS], data: vec![[0; MAX_RTP_LEN]; RECENT_SLOTS], next: 0 }
    }

    /// Keeps `payload` if it could be RTP of a flow about to be installed.
    #[inline]
    fn remember(&mut self, ts: Timestamp, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        // What classify would call RTP once the flow is installed.
        if payload.len() < 12 || payload.len() > MAX_RTP_LEN || payload[0] >> 6 != 2 || (200..=204).contains(&payload[1]) {
            return;
        }
        let i = self.next;
        self.next = (i + 1) % RECENT_SLOTS;
        self.meta[i] = RecentMeta { ts, src, dst, len: payload.len() as u16 };
        self.data[i][..payload.len()].copy_from_slice(payload);
    }

    /// Hands each remembered datagram of `target`'s flow seen at or after `since` to `each`
    /// (oldest first) and forgets it.
    fn take_matching(&mut self, since: Timestamp, target: FlowTarget, flows: &FlowTable, each: &mut dyn FnMut(Timestamp, &[u8])) {
        for k in 0..RECENT_SLOTS {
            let i = (self.next + k) % RECENT_SLOTS;
            let m = self.meta[i];
            if m.len == 0 || m.ts.0 < since.0.saturating_sub(RECENT_SLACK_NS) || flows.lookup(m.src, m.dst) != Some(target) {
                continue;
            }
            self.meta[i].len = 0;
            each(m.ts, &self.data[i][..m.len as usize]);
        }
    }
}

#[cfg(test)]
mod tests;
