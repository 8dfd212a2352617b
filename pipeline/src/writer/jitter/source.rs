//! One party's stream inside a channel: its anchor on the timeline, SSRC, sequence window,
//! loss count and re-anchor decisions. The placement buffer asks it where each packet goes.

use super::{ChannelCounters, NANOS_PER_SAMPLE, RATE, REANCHOR_SAMPLES};
use crate::writer::rtp::RtpPacket;
use crate::Timestamp;

/// Sequence numbers remembered behind the highest one, for duplicate detection.
const SEQ_WINDOW: i64 = 256;
/// A stream silent this long (capture time) may have been on a hold nobody told us about.
const SILENT_NANOS: i64 = 1_000_000_000;

/// Which of the last [`SEQ_WINDOW`] extended sequence numbers were placed: one bit each,
/// indexed by `ext & (SEQ_WINDOW - 1)`, valid relative to the stream's highest number.
#[derive(Clone, Copy, Default)]
struct SeqWindow([u64; SEQ_WINDOW as usize / 64]);

impl SeqWindow {
    fn bit(ext: i64) -> (usize, u64) {
        let i = ext as usize & (SEQ_WINDOW as usize - 1);
        (i / 64, 1 << (i % 64))
    }
    fn contains(&self, max: i64, ext: i64) -> bool {
        let (w, b) = Self::bit(ext);
        ext <= max && max - ext < SEQ_WINDOW && self.0[w] & b != 0
    }
    /// The highest number moves from `old` to `new`: slots that now stand for numbers
    /// never seen are cleared.
    fn advance(&mut self, old: i64, new: i64) {
        if new - old >= SEQ_WINDOW {
            self.0 = [0; SEQ_WINDOW as usize / 64];
            return;
        }
        for e in old + 1..=new {
            let (w, b) = Self::bit(e);
            self.0[w] &= !b;
        }
    }
    fn insert(&mut self, ext: i64) {
        let (w, b) = Self::bit(ext);
        self.0[w] |= b;
    }
}

/// Position bookkeeping between anchors.
#[derive(Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Position of extended timestamp 0: `pos = ext_ts + offset`.
    offset: i64,
    ts_ref: u32,
    ts_ref_ext: i64,
    seq_max_ext: i64,
    seq_min_ext: i64,
    received: u64,
    /// `pos - capture position` at the anchor: the stream's expected skew.
    skew0: i64,
    /// Skew of the last packet that disagreed with `skew0` beyond the threshold, held back
    /// until the next packet confirms (re-anchor) or refutes it.
    suspect: Option<i64>,
    /// Capture time and extended timestamp of the stream's last packet (arrival order).
    last_at: Timestamp,
    last_ext_ts: i64,
}

impl Stream {
    fn ext_ts(&self, ts: u32) -> i64 {
        self.ts_ref_ext + ts.wrapping_sub(self.ts_ref) as i32 as i64
    }
    fn ext_seq(&self, seq: u16) -> i64 {
        self.seq_max_ext + seq.wrapping_sub(self.seq_max_ext as u16) as i16 as i64
    }
    fn lost(&self) -> u64 {
        let expected = self.seq_max_ext - self.seq_min_ext + 1;
        (expected - self.received as i64).max(0) as u64
    }
    /// Back from a silence longer than [`SILENT_NANOS`] with a timestamp step the capture
    /// gap disagrees with by more than `window`: a hold (or a restart) the control core did
    /// not announce. A capture time further than [`REANCHOR_SAMPLES`] past anything the
    /// recording has seen is more likely damage than a hold, and left to the confirmed path.
    fn woke_from_hold(&self, ext_ts: i64, cap: &Capture, window: i64) -> bool {
        let gap_ns = cap.at.nanos_since(self.last_at);
        if gap_ns <= SILENT_NANOS {
            return false;
        }
        if cap
            .latest
            .is_some_and(|l| cap.at.nanos_since(l) > REANCHOR_SAMPLES * NANOS_PER_SAMPLE)
        {
            return false;
        }
        let step = ext_ts - self.last_ext_ts;
        (step - gap_ns / NANOS_PER_SAMPLE).abs() > window
    }
}

/// Where the capture clock puts a packet, as the placement buffer sees it.
pub(super) struct Capture {
    /// Timeline position of the capture time, unclamped.
    pub raw: i64,
    /// Where a stream (re-)anchored on this packet starts: `raw` kept within what can still
    /// be written.
    pub anchor: i64,
    /// The capture time.
    pub at: Timestamp,
    /// Latest capture time of the recording's placed packets before this one.
    pub latest: Option<Timestamp>,
}

/// What became of a packet.
pub(super) enum Admit {
    /// Place its first sample at this timeline position.
    Place(i64),
    /// Its sequence number was placed already (counted).
    Duplicate,
    /// Held back until the next packet confirms a timestamp jump (counted late).
    Held,
}

/// One source of a channel: at most one stream at a time, replaced on re-anchor.
#[derive(Clone, Copy, Default)]
pub(super) struct Source {
    stream: Option<Stream>,
    /// Lost packets of streams replaced by a re-anchor.
    lost_before: u64,
    seen: SeqWindow,
    /// Anchor the next packet on its capture time (set at a resume).
    reanchor_next: bool,
}

impl Source {
    /// Packets never seen, over all of this source's streams.
    pub fn lost(&self) -> u64 {
        self.lost_before + self.stream.map_or(0, |s| s.lost())
    }

    /// The timeline start moved back by `by` samples.
    pub fn shift(&mut self, by: i64) {
        if let Some(s) = &mut self.stream {
            s.offset += by;
        }
    }

    /// The next packet anchors on its capture time, whatever its timestamp says.
    pub fn reanchor_next(&mut self) {
        self.reanchor_next = self.stream.is_some();
    }

    fn retire(&mut self, s: &Stream) {
        self.lost_before += s.lost();
        self.seen = SeqWindow::default();
    }

    /// Decides where `pkt` goes. Within a stream the sender's clock decides; the stream is
    /// re-anchored on capture time on an SSRC change, a timestamp jump past
    /// [`REANCHOR_SAMPLES`], a disagreement with the capture clock beyond the resync
    /// threshold that the next packet confirms, a return from an unannounced hold, or
    /// after a resume.
    pub fn admit(
        &mut self,
        pkt: &RtpPacket<'_>,
        cap: &Capture,
        window: i64,
        counters: &mut ChannelCounters,
    ) -> Admit {
        let resync = window.max(RATE) as u64;
        let (ssrc, ts, seq) = (pkt.ssrc(), pkt.timestamp(), pkt.seq());
        let fresh = |pos: i64| Stream {
            ssrc,
            offset: pos - ts as i64,
            ts_ref: ts,
            ts_ref_ext: ts as i64,
            seq_max_ext: seq as i64,
            seq_min_ext: seq as i64,
            received: 0,
            skew0: pos - cap.raw,
            suspect: None,
            last_at: cap.at,
            last_ext_ts: ts as i64,
        };
        let mut stream = match self.stream {
            None => fresh(cap.anchor),
            Some(s) if self.reanchor_next => {
                // A planned re-anchor (resume), not a damaged stream: not counted.
                self.retire(&s);
                fresh(cap.anchor)
            }
            Some(s) => {
                let ext_ts = s.ext_ts(ts);
                let jump = (ext_ts - s.ts_ref_ext).abs() > REANCHOR_SAMPLES;
                // Same SSRC, timestamps in range: does the sender's clock still agree with
                // the capture clock? A disagreement is believed when the next packet shares
                // it, or at once when the stream comes back from a long silence.
                let skew = ext_ts + s.offset - cap.raw;
                let diverged = skew.abs_diff(s.skew0) > resync;
                let confirmed = s.suspect.is_some_and(|p| p.abs_diff(skew) <= resync);
                let woke = s.ssrc == ssrc && s.woke_from_hold(ext_ts, cap, window);
                if s.ssrc == ssrc && !jump && diverged && !confirmed && !woke {
                    // Received but not placed: late, not lost.
                    let ext_seq = s.ext_seq(seq);
                    counters.late += 1;
                    let max = s.seq_max_ext.max(ext_seq);
                    self.seen.advance(s.seq_max_ext, max);
                    self.stream = Some(Stream {
                        suspect: Some(skew),
                        received: s.received + 1,
                        seq_max_ext: max,
                        seq_min_ext: s.seq_min_ext.min(ext_seq),
                        last_at: cap.at,
                        last_ext_ts: ext_ts,
                        ..s
                    });
                    return Admit::Held;
                }
                if s.ssrc != ssrc || jump || diverged || woke {
                    counters.reanchors += 1;
                    self.retire(&s);
                    fresh(cap.anchor)
                } else {
                    Stream { suspect: None, ..s }
                }
            }
        };
        self.reanchor_next = false;
        let ext_seq = stream.ext_seq(seq);
        let ext_ts = stream.ext_ts(ts);
        stream.last_at = cap.at;
        stream.last_ext_ts = ext_ts;
        if self.seen.contains(stream.seq_max_ext, ext_seq) {
            counters.duplicate += 1;
            self.stream = Some(stream);
            return Admit::Duplicate;
        }
        let max = stream.seq_max_ext.max(ext_seq);
        self.seen.advance(stream.seq_max_ext, max);
        self.seen.insert(ext_seq);
        stream.received += 1;
        stream.seq_max_ext = max;
        stream.seq_min_ext = stream.seq_min_ext.min(ext_seq);
        if ext_ts > stream.ts_ref_ext {
            stream.ts_ref = ts;
            stream.ts_ref_ext = ext_ts;
        }
        self.stream = Some(stream);
        Admit::Place(ext_ts + stream.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_window_remembers_the_last_256_numbers_only() {
        let mut w = SeqWindow::default();
        w.insert(10);
        assert!(w.contains(10, 10));
        assert!(!w.contains(10, 9));
        w.advance(10, 200);
        w.insert(200);
        assert!(w.contains(200, 10) && w.contains(200, 200));
        // 266 reuses 10's slot: the slot is cleared, and 10 is out of the window anyway
        w.advance(200, 266);
        assert!(!w.contains(266, 10) && !w.contains(266, 266));
        w.insert(-3);
        assert!(!w.contains(266, -3), "beyond the window");
        w.advance(266, 10_000);
        assert!(!w.contains(10_000, 200));
        // per-call state budget: MAX_SOURCES of these per channel
        assert!(
            std::mem::size_of::<Source>() <= 192,
            "{}",
            std::mem::size_of::<Source>()
        );
    }
}
