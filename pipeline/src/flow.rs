//! The flow table: which UDP 5-tuples carry the RTP of a recording, and where it goes.
//!
//! The control core writes it (through `FlowUpdate`s applied by the thread that owns the
//! table), the classifier reads it. A flow is keyed by the full address pair, never by SSRC:
//! SSRCs collide across calls. Senders that do not use symmetric RTP (their source differs
//! from the address they announced in SDP) are still found through the destination-only map.

use rustc_hash::FxHashMap;
use std::net::SocketAddr;

/// One direction of UDP traffic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
}

/// Identifies a recording inside one writer; chosen by the control core, unique per process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RecordingId(pub u32);

/// Which side of the stereo file a stream lands in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Channel {
    /// Customer side: the trunk side, or the party opposite a recorded agent.
    Left = 0,
    /// Agent side.
    Right = 1,
}

impl Channel {
    /// 0 for left, 1 for right.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How many parties' streams one channel of a recording holds at once (sources
/// `0..MAX_SOURCES`); their audio is mixed where it overlaps.
pub const MAX_SOURCES: usize = 4;

/// Where the packets of a flow go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowTarget {
    /// Index of the writer thread (and its ring).
    pub writer: u16,
    /// The recording inside that writer.
    pub recording: RecordingId,
    /// The channel of the recording.
    pub channel: Channel,
    /// Which party's stream inside the channel (0..[`MAX_SOURCES`]); the control core gives
    /// each party present in a channel its own source so two agents' streams can be mixed
    /// and a transfer's overlapping tails do not fight.
    pub source: u8,
}

/// A change the control core asks of the flow table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlowUpdate {
    /// Send this flow's packets to `target` from now on.
    Install(FlowKey, FlowTarget),
    /// Stop sending this flow anywhere.
    Remove(FlowKey),
}

/// The table itself. Lookups allocate nothing.
#[derive(Default)]
pub struct FlowTable {
    exact: FxHashMap<FlowKey, FlowTarget>,
    by_dst: FxHashMap<SocketAddr, FlowTarget>,
}

impl FlowTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update.
    pub fn apply(&mut self, update: FlowUpdate) {
        match update {
            FlowUpdate::Install(key, target) => {
                self.exact.insert(key, target);
                self.by_dst.insert(key.dst, target);
            }
            FlowUpdate::Remove(key) => {
                if let Some(t) = self.exact.remove(&key) {
                    if self.by_dst.get(&key.dst) == Some(&t) {
                        self.by_dst.remove(&key.dst);
                    }
                }
            }
        }
    }

    /// Where a packet from `src` to `dst` goes, if anywhere.
    #[inline]
    pub fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> Option<FlowTarget> {
        if let Some(t) = self.exact.get(&FlowKey { src, dst }) {
            return Some(*t);
        }
        self.by_dst.get(&dst).copied()
    }

    /// Number of installed flows.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// True when no flow is installed.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_then_destination_fallback_then_removed() {
        let mut t = FlowTable::new();
        let key = FlowKey { src: a("192.0.2.1:4000"), dst: a("192.0.2.2:6000") };
        let target = FlowTarget { writer: 1, recording: RecordingId(7), channel: Channel::Left, source: 0 };
        t.apply(FlowUpdate::Install(key, target));
        assert_eq!(t.lookup(key.src, key.dst), Some(target));
        // an asymmetric sender reaching the announced destination
        assert_eq!(t.lookup(a("192.0.2.9:1234"), key.dst), Some(target));
        assert_eq!(t.lookup(key.dst, key.src), None);
        t.apply(FlowUpdate::Remove(key));
        assert_eq!(t.lookup(key.src, key.dst), None);
        assert!(t.is_empty());
    }
}
