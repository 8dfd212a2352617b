//! The stop linger: holds a recording's `Stop` (and the removal of its flows) for a moment
//! after the control core asks for it, so the tail of its streams still reaches the file.
//!
//! The MCP removes a recording's flows and stops its writer the moment it sees the BYE, but
//! the RTP sent just before the BYE is still in flight (another path, a NIC queue, a TPACKET
//! block not yet retired, another rx core). A load run at 600 concurrent calls lost the last
//! ~9 packets of 26 of 1200 agent channels that way. The driver that applies the control
//! core's outputs feeds every `Output::Flow` / `Output::Writer` of one drain through
//! [`StopLinger`]: flow removals wait until the end of the drain, those that belong to a
//! stopped recording wait with its `Stop` until capture time passes `stop_at +`
//! [`STOP_LINGER`], and then the driver removes the flows (only where the table still points
//! at that recording: an install of the same key for another recording meanwhile wins) and
//! sends the `Stop`. Nothing here runs per packet: the driver asks [`StopLinger::next_due`]
//! once per burst.
//!
//! Only a BYE's stop lingers: a stop mid-call (CTI, a routing rule, a timer) must end the file
//! where it was asked for, while the streams go on.

use callrec_pipeline::flow::{FlowKey, FlowTable, FlowUpdate, RecordingId};
use callrec_pipeline::Timestamp;
use std::collections::VecDeque;

/// How long a stopped recording still takes packets, in capture time. RTP is paced at 20 ms;
/// 300 ms covers the ~9 packets (180 ms) seen missing under load plus jitter-buffer-sized
/// path differences, and stays well under any gap a caller would notice in a file's end.
// Audio the linger lets in past the stop time is dropped by the writer (it writes up to
// `STOP_TAIL_NS` past it); the linger stays under the reorder window plus that tail, so none of
// it was committed before the Stop arrives.
pub const STOP_LINGER_NS: u64 = 300_000_000;

/// A `Stop` waiting out the linger, with the flows of its recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lingering {
    /// The writer the `Stop` goes to.
    pub writer: u16,
    /// The recording.
    pub recording: RecordingId,
    /// The `Stop`'s capture time (what the writer is told).
    pub at: Timestamp,
    /// When the linger ends.
    pub due: Timestamp,
    /// Flows of the recording the control core removed with the `Stop`.
    pub removes: Vec<FlowKey>,
}

/// The deferred removals of the current drain and the lingering stops; see the module docs.
#[derive(Debug, Default)]
pub struct StopLinger {
    /// Removals seen in this drain: key and the recording the table pointed it at.
    pending: Vec<(FlowKey, Option<RecordingId>)>,
    queue: VecDeque<Lingering>,
}

impl StopLinger {
    /// Nothing deferred.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a flow update of the control core to `table`, deferring removals: to the end
    /// of the drain, or, when a `Stop` of the key's recording follows in the same drain, to
    /// the end of its linger. `applied` sees every update that reached the table (the
    /// threaded driver forwards them to the rx cores' copies).
    pub fn flow(&mut self, update: FlowUpdate, table: &mut FlowTable, applied: &mut dyn FnMut(FlowUpdate)) {
        match update {
            FlowUpdate::Remove(key) => {
                let rec = table.lookup(key.src, key.dst).map(|t| t.recording);
                self.pending.push((key, rec));
            }
            FlowUpdate::Install(key, _) => {
                // A removal of the same key pending in this drain goes first (a re-INVITE's
                // remove-then-install keeps its order).
                if let Some(i) = self.pending.iter().position(|(k, _)| *k == key) {
                    let (k, _) = self.pending.remove(i);
                    apply(table, FlowUpdate::Remove(k), applied);
                }
                apply(table, update, applied);
            }
        }
    }

    /// A `Stop` output, with the pending removals of its recording. When `linger` (the stop
    /// comes from a BYE: the streams end, their tail is in flight) it lingers and `None` is
    /// returned; otherwise (a stop mid-call, by CTI or a timer: the streams go on and the file
    /// must end here) it is returned for the caller to end at once with [`StopLinger::end`].
    pub fn stop(&mut self, writer: u16, recording: RecordingId, at: Timestamp, linger: bool) -> Option<Lingering> {
        let mut removes = Vec::new();
        self.pending.retain(|(k, r)| {
            let ours = *r == Some(recording);
            if ours {
                removes.push(*k);
            }
            !ours
        });
        let l = Lingering { writer, recording, at, due: at.plus_nanos(if linger { STOP_LINGER_NS } else { 0 }), removes };
        if !linger {
            return Some(l);
        }
        self.queue.push_back(l);
        None
    }

    /// The end of a drain: applies the removals no stop claimed, in order.
    pub fn end_of_drain(&mut self, table: &mut FlowTable, applied: &mut dyn FnMut(FlowUpdate)) {
        for (k, _) in self.pending.drain(..) {
            apply(table, FlowUpdate::Remove(k), applied);
        }
    }

    /// Ends a linger: removes the recording's flows that the table still points at it (an
    /// install of the key for another recording meanwhile wins). The caller then sends
    /// `Stop { recording: l.recording, at: l.at }` to writer `l.writer`.
    pub fn end(l: &Lingering, table: &mut FlowTable, applied: &mut dyn FnMut(FlowUpdate)) {
        for k in &l.removes {
            if table.lookup(k.src, k.dst).is_some_and(|t| t.recording == l.recording) {
                apply(table, FlowUpdate::Remove(*k), applied);
            }
        }
    }

    /// When the oldest lingering stop is due, if any stop lingers. Stops come in capture-time
    /// order, so the oldest is the first due; one that came out of order (a timer's stop
    /// stamped earlier than a BYE's) waits for the one ahead of it: later, never lost.
    #[inline]
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.front().map(|l| l.due)
    }

    /// The oldest lingering stop if its linger has ended by `now` (call until `None`).
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Lingering> {
        if self.queue.front()?.due <= now {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Every lingering stop, at once (end of input, shutdown).
    pub fn pop_all(&mut self) -> Option<Lingering> {
        self.queue.pop_front()
    }

    /// Stops lingering now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no stop lingers.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// True for a SIP BYE request: the message whose recording stops linger.
pub fn is_bye(sip: &[u8]) -> bool {
    sip.starts_with(b"BYE ")
}

fn apply(table: &mut FlowTable, u: FlowUpdate, applied: &mut dyn FnMut(FlowUpdate)) {
    table.apply(u);
    applied(u);
}

#[cfg(test)]
mod tests {
    use super::*;
    use callrec_pipeline::flow::{Channel, FlowTarget};

    fn key(n: u16) -> FlowKey {
        FlowKey { src: format!("192.0.2.1:{n}").parse().unwrap(), dst: format!("192.0.2.2:{n}").parse().unwrap() }
    }
    fn target(rec: u32) -> FlowTarget {
        FlowTarget { writer: 0, recording: RecordingId(rec), channel: Channel::Left, source: 0 }
    }
    fn ms(n: u64) -> Timestamp {
        Timestamp(n * 1_000_000)
    }
    fn hit(t: &FlowTable, k: FlowKey) -> Option<u32> {
        t.lookup(k.src, k.dst).map(|t| t.recording.0)
    }

    /// The MCP's BYE outputs: Remove both flows, then Stop. The flows keep delivering until
    /// stop + 300 ms, then go, and only then is the Stop released.
    #[test]
    fn bye_tail_lingers_then_flows_go_and_stop_is_released() {
        let (mut t, mut l, mut seen) = (FlowTable::new(), StopLinger::new(), Vec::new());
        let mut log = |u| seen.push(u);
        l.flow(FlowUpdate::Install(key(1), target(7)), &mut t, &mut log);
        l.flow(FlowUpdate::Install(key(2), target(7)), &mut t, &mut log);
        l.flow(FlowUpdate::Remove(key(1)), &mut t, &mut log);
        l.flow(FlowUpdate::Remove(key(2)), &mut t, &mut log);
        assert!(l.stop(0, RecordingId(7), ms(1000), true).is_none());
        l.end_of_drain(&mut t, &mut log);
        assert_eq!((hit(&t, key(1)), hit(&t, key(2))), (Some(7), Some(7)), "tail packets still reach the recording");
        assert_eq!(l.next_due(), Some(ms(1300)));
        assert!(l.pop_due(ms(1299)).is_none());
        let due = l.pop_due(ms(1300)).expect("due at stop + 300 ms");
        assert_eq!((due.writer, due.recording, due.at), (0, RecordingId(7), ms(1000)));
        StopLinger::end(&due, &mut t, &mut log);
        assert!(t.is_empty());
        assert!(l.is_empty() && l.next_due().is_none());
        assert_eq!(seen.len(), 4, "two installs, two removes applied: {seen:?}");
    }

    /// A removal that no stop claims (a re-INVITE moving the media) is applied at the end of
    /// the drain; a remove-then-install of one key keeps its order.
    #[test]
    fn unclaimed_removes_apply_at_end_of_drain_and_reinstall_keeps_order() {
        let (mut t, mut l) = (FlowTable::new(), StopLinger::new());
        let mut none = |_| {};
        l.flow(FlowUpdate::Install(key(1), target(7)), &mut t, &mut none);
        l.flow(FlowUpdate::Install(key(2), target(7)), &mut t, &mut none);
        l.flow(FlowUpdate::Remove(key(1)), &mut t, &mut none);
        l.flow(FlowUpdate::Remove(key(2)), &mut t, &mut none);
        let mut moved = target(7);
        moved.channel = Channel::Right;
        l.flow(FlowUpdate::Install(key(2), moved), &mut t, &mut none);
        assert_eq!(t.lookup(key(2).src, key(2).dst), Some(moved));
        l.end_of_drain(&mut t, &mut none);
        assert_eq!((hit(&t, key(1)), t.lookup(key(2).src, key(2).dst)), (None, Some(moved)));
        assert!(l.is_empty());
    }

    /// A stop mid-call (CTI, timer: not a BYE) does not linger: it comes back at once with its
    /// removals, which end applies.
    #[test]
    fn a_stop_that_is_not_a_bye_ends_at_once() {
        let (mut t, mut l) = (FlowTable::new(), StopLinger::new());
        let mut none = |_| {};
        l.flow(FlowUpdate::Install(key(1), target(7)), &mut t, &mut none);
        l.flow(FlowUpdate::Remove(key(1)), &mut t, &mut none);
        let now = l.stop(0, RecordingId(7), ms(500), false).expect("not lingering");
        assert_eq!((now.at, now.removes.as_slice()), (ms(500), &[key(1)][..]));
        StopLinger::end(&now, &mut t, &mut none);
        l.end_of_drain(&mut t, &mut none);
        assert!(t.is_empty() && l.is_empty());
        assert!(is_bye(b"BYE sip:a@b SIP/2.0\r\n") && !is_bye(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n"));
    }

    /// An install of the key for another recording during the linger wins over the late
    /// removal; a second recording's stop does not take the first one's flows.
    #[test]
    fn install_for_another_recording_during_the_linger_wins() {
        let (mut t, mut l) = (FlowTable::new(), StopLinger::new());
        let mut none = |_| {};
        l.flow(FlowUpdate::Install(key(1), target(7)), &mut t, &mut none);
        l.flow(FlowUpdate::Install(key(3), target(8)), &mut t, &mut none);
        l.flow(FlowUpdate::Remove(key(1)), &mut t, &mut none);
        assert!(l.stop(0, RecordingId(7), ms(0), true).is_none());
        l.end_of_drain(&mut t, &mut none);
        assert!(l.stop(0, RecordingId(8), ms(100), true).is_none());
        l.end_of_drain(&mut t, &mut none);
        l.flow(FlowUpdate::Install(key(1), target(9)), &mut t, &mut none);
        let first = l.pop_due(ms(350)).expect("7 due");
        assert!(l.pop_due(ms(350)).is_none(), "8 is due at 400 ms");
        StopLinger::end(&first, &mut t, &mut none);
        assert_eq!((hit(&t, key(1)), hit(&t, key(3))), (Some(9), Some(8)));
        let second = l.pop_all().expect("8 at shutdown");
        assert!(second.removes.is_empty(), "8's stop came without removals");
        assert!(l.pop_all().is_none());
    }
}
