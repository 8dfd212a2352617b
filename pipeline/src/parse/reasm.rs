//! IPv4 fragment reassembly with fixed capacity and buffers reused across datagrams.
//!
//! Why by hand: smoltcp's `iface::fragmentation` is tied to its interface and buffer types and
//! needs features we do not enable; the job here is small and must not allocate per packet.
//!
//! Policy: fragments are keyed by (src, dst, id, proto). A fragment that overlaps bytes already
//! held overwrites them (duplicates from a mirror are byte-identical, so order does not matter for
//! them). A datagram not complete `timeout` of capture time after its first fragment is evicted;
//! when all slots are busy the oldest is evicted. A non-last fragment whose length is not a
//! multiple of 8, a datagram past 65535 bytes, or two different ends conflict: the fragment
//! (conflict: the whole datagram) is dropped.
//!
//! A duplicate fragment arriving after its datagram completed opens a new slot that never
//! completes; it ends in `evicted_timeout`, so that counter includes such late duplicates.

use std::net::Ipv4Addr;

use crate::Timestamp;

/// Identity of a fragmented datagram (RFC 791).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP identification.
    pub id: u16,
    /// IP protocol.
    pub proto: u8,
}

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reasm<'a> {
    /// Held; the datagram is not complete yet.
    Held,
    /// This fragment completed the datagram: its whole IP payload, borrowed until the next push.
    Complete(&'a [u8]),
    /// The fragment was refused (see module docs).
    Dropped,
}

/// Reassembler counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasmStats {
    /// Datagrams completed.
    pub completed: u64,
    /// Incomplete datagrams evicted because they timed out.
    pub evicted_timeout: u64,
    /// Incomplete datagrams evicted because all slots were busy.
    pub evicted_full: u64,
    /// Fragments refused, plus datagrams abandoned on conflicting ends.
    pub dropped: u64,
}

/// Largest IPv4 payload: total length is 16 bits.
const MAX_PAYLOAD: usize = 65_535;
const UNITS: usize = MAX_PAYLOAD.div_ceil(8);
const WORDS: usize = UNITS.div_ceil(64);

struct Slot {
    key: Option<FragKey>,
    first_seen: Timestamp,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    /// Highest end offset of any fragment held, to catch a last fragment that ends too early.
    max_end: usize,
    /// 8-byte units received, counted as bits are set so completion needs no scan.
    covered: usize,
    bitmap: Box<[u64; WORDS]>,
    /// Allocated on the slot's first use, then reused.
    buf: Vec<u8>,
}

/// Fixed-capacity IPv4 reassembler; see the module docs for the policy.
pub struct Ipv4Reassembler {
    slots: Vec<Slot>,
    timeout_ns: u64,
    stats: ReasmStats,
}

impl Default for Ipv4Reassembler {
    /// 64 datagrams in flight, 30 s timeout.
    fn default() -> Self {
        Self::new(64, 30_000_000_000)
    }
}

impl std::fmt::Debug for Ipv4Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipv4Reassembler")
            .field("capacity", &self.slots.len())
            .field("in_progress", &self.in_progress())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Ipv4Reassembler {
    /// Room for `capacity` (at least 1) datagrams in flight; incomplete ones are evicted after
    /// `timeout_ns` of capture time. Each slot's 64 KiB buffer is allocated on first use.
    pub fn new(capacity: usize, timeout_ns: u64) -> Self {
        let slots = (0..capacity.max(1))
            .map(|_| Slot {
                key: None,
                first_seen: Timestamp(0),
                total: None,
                max_end: 0,
                covered: 0,
                bitmap: Box::new([0; WORDS]),
                buf: Vec::new(),
            })
            .collect();
        Ipv4Reassembler {
            slots,
            timeout_ns,
            stats: ReasmStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReasmStats {
        self.stats
    }

    /// Datagrams currently incomplete.
    pub fn in_progress(&self) -> usize {
        self.slots.iter().filter(|s| s.key.is_some()).count()
    }

    /// Evicts datagrams older than the timeout at capture time `now`.
    pub fn expire(&mut self, now: Timestamp) {
        for s in &mut self.slots {
            if s.key.is_some() && now.nanos_since(s.first_seen) > self.timeout_ns as i64 {
                s.key = None;
                self.stats.evicted_timeout += 1;
            }
        }
    }

    /// Adds one fragment: `offset` in bytes into the IP payload, `more` the MF flag, `data` the
    /// fragment's payload, `now` its capture time.
    pub fn push(
        &mut self,
        key: FragKey,
        now: Timestamp,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Reasm<'_> {
        self.expire(now);
        let end = offset + data.len();
        if (more && (data.is_empty() || !data.len().is_multiple_of(8)))
            || end > MAX_PAYLOAD
            || !offset.is_multiple_of(8)
        {
            self.stats.dropped += 1;
            return Reasm::Dropped;
        }
        let i = match self.slots.iter().position(|s| s.key == Some(key)) {
            Some(i) => i,
            None => self.claim(key, now),
        };
        let s = &mut self.slots[i];
        let conflict = match (more, s.total) {
            (false, Some(t)) => t != end,
            (false, None) => s.max_end > end,
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        if conflict {
            s.key = None;
            self.stats.dropped += 1;
            return Reasm::Dropped;
        }
        if !more {
            s.total = Some(end);
        }
        s.max_end = s.max_end.max(end);
        s.buf[offset..end].copy_from_slice(data);
        s.covered += set_bits(&mut s.bitmap, offset / 8, end.div_ceil(8));
        match s.total {
            Some(t) if s.covered == t.div_ceil(8) => {
                s.key = None;
                self.stats.completed += 1;
                Reasm::Complete(&s.buf[..t])
            }
            _ => Reasm::Held,
        }
    }

    /// A free slot for `key`, evicting the oldest datagram if none is free.
    fn claim(&mut self, key: FragKey, now: Timestamp) -> usize {
        let i = match self.slots.iter().position(|s| s.key.is_none()) {
            Some(i) => i,
            None => {
                self.stats.evicted_full += 1;
                // Capacity is at least 1, so there is a minimum.
                self.slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.first_seen)
                    .map_or(0, |(i, _)| i)
            }
        };
        let s = &mut self.slots[i];
        if s.buf.len() < MAX_PAYLOAD {
            s.buf.resize(MAX_PAYLOAD, 0);
        }
        s.key = Some(key);
        s.first_seen = now;
        s.total = None;
        s.max_end = 0;
        s.covered = 0;
        s.bitmap.fill(0);
        i
    }
}

/// Sets bits `[from, to)`, returns how many were newly set.
fn set_bits(map: &mut [u64; WORDS], from: usize, to: usize) -> usize {
    let mut new = 0;
    let mut bit = from;
    while bit < to {
        let w = bit / 64;
        let lo = bit % 64;
        let hi = (to - w * 64).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        if let Some(word) = map.get_mut(w) {
            new += (mask & !*word).count_ones() as usize;
            *word |= mask;
        }
        bit = w * 64 + hi;
    }
    new
}
