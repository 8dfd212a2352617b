//! Placement ("jitter") buffer of one recording: puts each channel's audio at the sample
//! position its RTP timestamp names, reorders within a window, turns gaps and pauses into
//! silence and hands finished (committed) stereo frames to a sink.
//!
//! Timeline: position 0 is the capture time of the first packet of either channel (the
//! origin). A stream's first packet is anchored at its own capture time; later packets go at
//! `anchor + (rtp_ts - first_ts)`. So the two channels are in step by the capture times of
//! their first packets, and within a stream the sender's clock decides, until the sender's
//! clock and the capture clock disagree by more than the resync threshold (a timestamp jump
//! with the same SSRC): then the stream is re-anchored on capture time, once a second packet
//! confirms the jump (the first one is held back, so a single packet with a damaged capture
//! time cannot move the stream). A stream whose first packet overtook an earlier one, before
//! anything was committed, moves the timeline's start back to make room. Samples are committed
//! once they are older than `newest - window`, where `newest` is the furthest position seen in
//! the recording; a packet for a committed region is late. Storage is one fixed ring per
//! channel, allocated when the recording opens; placing a packet allocates nothing.

use super::rtp::RtpPacket;
use super::{ChannelSpec, Codec};
use crate::flow::Channel;
use crate::Timestamp;

/// Samples per second of G.711.
pub const RATE: i64 = 8000;
const NANOS_PER_SAMPLE: i64 = 1_000_000_000 / RATE;
/// A timestamp step beyond this (either way) re-anchors the stream: 30 s.
pub const REANCHOR_SAMPLES: i64 = 30 * RATE;
/// A stream is anchored at most this far (1 h) past the newest audio: a capture time further
/// ahead is damage in the file, and following it would write that much silence.
pub const MAX_LEAP_SAMPLES: i64 = 3600 * RATE;
const DUP_SLOTS: usize = 256;
/// Largest reorder window accepted (10 s); larger configurations are clamped.
pub const MAX_WINDOW_SAMPLES: u32 = 10 * RATE as u32;

/// Tuning of the placement buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementConfig {
    /// Reorder window in samples: audio is held this long (by the newest position seen)
    /// before it is written, and packets older than that are late. Default 2000 (250 ms),
    /// at most [`MAX_WINDOW_SAMPLES`].
    pub window_samples: u32,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            window_samples: 2000,
        }
    }
}

/// What the rings hold, chosen when the recording opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// G.711 bytes of this law (packets of the other law are transcoded).
    Law(Codec),
    /// Linear PCM16.
    Linear,
}

/// Committed stereo audio, left and right of equal length.
pub enum Frames<'a> {
    /// G.711 bytes.
    Law(&'a [u8], &'a [u8]),
    /// Linear PCM16.
    Linear(&'a [i16], &'a [i16]),
}

/// Per-channel packet counters, reported in the sidecar and summed for the CLI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelCounters {
    /// RTP packets that arrived for the channel (all kinds).
    pub packets: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    /// Packets never seen, from gaps in the sequence numbers.
    pub lost: u64,
    /// Packets that arrived after their place had been written.
    pub late: u64,
    /// Packets whose sequence number had already been placed.
    pub duplicate: u64,
    /// RFC 4733 telephone-event packets (ignored).
    pub events: u64,
    /// Packets of a payload type the SDP did not map to PCMA/PCMU (ignored).
    pub unknown_pt: u64,
    /// Times the stream was re-anchored on capture time (SSRC change or timestamp jump).
    pub reanchors: u64,
    /// Packets that are not valid RTP (ignored).
    pub invalid: u64,
}

/// One stream's position bookkeeping between anchors.
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
}

struct ChannelState {
    spec: ChannelSpec,
    stream: Option<Stream>,
    counters: ChannelCounters,
    /// Lost packets of streams replaced by a re-anchor.
    lost_before: u64,
    /// Extended sequence numbers recently placed, indexed by `ext & (DUP_SLOTS - 1)`.
    placed: [i64; DUP_SLOTS],
    last_codec: Option<Codec>,
}

enum Rings {
    Law(Codec, [Vec<u8>; 2]),
    Linear([Vec<i16>; 2]),
}

/// The placement buffer of one recording (both channels).
pub struct Placement {
    rings: Rings,
    mask: usize,
    window: i64,
    origin: Option<Timestamp>,
    committed: i64,
    newest: i64,
    chans: [ChannelState; 2],
    pauses: Vec<(Timestamp, Option<Timestamp>)>,
}

impl Placement {
    /// A buffer for the two channels' streams, storing `kind` samples.
    pub fn new(channels: [ChannelSpec; 2], kind: SampleKind, config: PlacementConfig) -> Self {
        let window = config.window_samples.clamp(1, MAX_WINDOW_SAMPLES) as i64;
        let cap = (window as usize + 2 * super::MAX_RTP_LEN).next_power_of_two();
        let rings = match kind {
            SampleKind::Law(c) => Rings::Law(c, [vec![c.silence(); cap], vec![c.silence(); cap]]),
            SampleKind::Linear => Rings::Linear([vec![0; cap], vec![0; cap]]),
        };
        let [l, r] = channels;
        let chan = |spec| ChannelState {
            spec,
            stream: None,
            counters: ChannelCounters::default(),
            lost_before: 0,
            placed: [i64::MIN; DUP_SLOTS],
            last_codec: None,
        };
        Placement {
            rings,
            mask: cap - 1,
            window,
            origin: None,
            committed: 0,
            newest: 0,
            chans: [chan(l), chan(r)],
            pauses: Vec::new(),
        }
    }

    /// What the rings hold.
    pub fn kind(&self) -> SampleKind {
        match self.rings {
            Rings::Law(c, _) => SampleKind::Law(c),
            Rings::Linear(_) => SampleKind::Linear,
        }
    }

    /// Capture time of sample 0, once the first packet arrived.
    pub fn origin(&self) -> Option<Timestamp> {
        self.origin
    }

    /// Samples per channel handed to the sink so far.
    pub fn committed(&self) -> i64 {
        self.committed
    }

    /// The channel's counters, with `lost` brought up to date.
    pub fn counters(&self, ch: Channel) -> ChannelCounters {
        let c = &self.chans[ch.index()];
        let mut out = c.counters;
        out.lost = c.lost_before + c.stream.map_or(0, |s| s.lost());
        out
    }

    /// The codec of the channel's last audio packet.
    pub fn last_codec(&self, ch: Channel) -> Option<Codec> {
        self.chans[ch.index()].last_codec
    }

    /// Pause intervals (capture clock); an open pause has no end.
    pub fn pauses(&self) -> &[(Timestamp, Option<Timestamp>)] {
        &self.pauses
    }

    /// From `at` on, the recording is silent until `resume`. A second pause is ignored.
    pub fn pause(&mut self, at: Timestamp) {
        if !matches!(self.pauses.last(), Some((_, None))) {
            self.pauses.push((at, None));
        }
    }

    /// Ends the open pause, if any.
    pub fn resume(&mut self, at: Timestamp) {
        if let Some((start, end @ None)) = self.pauses.last_mut() {
            *end = Some(at.max(*start));
        }
    }

    fn pos_of(&self, t: Timestamp) -> i64 {
        let origin = self.origin.unwrap_or(t);
        // i128: capture times from a damaged file may be anywhere in u64.
        let ns = t.0 as i128 - origin.0 as i128;
        ns.div_euclid(NANOS_PER_SAMPLE as i128)
            .clamp(i64::MIN as i128 / 2, i64::MAX as i128 / 2) as i64
    }

    /// Places one RTP packet (`bytes` is the whole UDP payload) captured at `ts` on `ch`,
    /// handing to `sink` whatever audio that pushes out of the window.
    pub fn place<F: FnMut(Frames<'_>)>(
        &mut self,
        ch: Channel,
        ts: Timestamp,
        bytes: &[u8],
        sink: &mut F,
    ) {
        let ci = ch.index();
        let c = &mut self.chans[ci];
        c.counters.packets += 1;
        c.counters.bytes += bytes.len() as u64;
        let Ok(pkt) = RtpPacket::new_checked(bytes) else {
            c.counters.invalid += 1;
            return;
        };
        let pt = pkt.payload_type();
        if c.spec.event_pt == Some(pt) {
            c.counters.events += 1;
            return;
        }
        let Some(codec) = c.spec.codec_of(pt) else {
            c.counters.unknown_pt += 1;
            return;
        };
        let payload = pkt.payload();
        if payload.is_empty() {
            return;
        }
        if self.origin.is_none() {
            self.origin = Some(ts);
        }
        let raw_pos = self.pos_of(ts);
        let capture_pos = raw_pos
            .max(self.committed)
            .min(self.newest.max(self.committed) + MAX_LEAP_SAMPLES);
        let resync = self.window.max(RATE) as u64;
        let c = &mut self.chans[ci];

        let fresh = |pos: i64| Stream {
            ssrc: pkt.ssrc(),
            offset: pos - pkt.timestamp() as i64,
            ts_ref: pkt.timestamp(),
            ts_ref_ext: pkt.timestamp() as i64,
            seq_max_ext: pkt.seq() as i64,
            seq_min_ext: pkt.seq() as i64,
            received: 0,
            skew0: pos - raw_pos,
            suspect: None,
        };
        let mut stream = match c.stream {
            None => fresh(capture_pos),
            Some(s) => {
                let ext_ts = s.ext_ts(pkt.timestamp());
                let jump = (ext_ts - s.ts_ref_ext).abs() > REANCHOR_SAMPLES;
                // Same SSRC, timestamps in range: does the sender's clock still agree with
                // the capture clock? A disagreement is believed when the next packet shares it.
                let skew = ext_ts + s.offset - raw_pos;
                let diverged = skew.abs_diff(s.skew0) > resync;
                let confirmed = s.suspect.is_some_and(|p| p.abs_diff(skew) <= resync);
                if s.ssrc == pkt.ssrc() && !jump && diverged && !confirmed {
                    // Received but not placed: late, not lost.
                    let ext_seq = s.ext_seq(pkt.seq());
                    c.counters.late += 1;
                    c.stream = Some(Stream {
                        suspect: Some(skew),
                        received: s.received + 1,
                        seq_max_ext: s.seq_max_ext.max(ext_seq),
                        seq_min_ext: s.seq_min_ext.min(ext_seq),
                        ..s
                    });
                    return;
                }
                if s.ssrc != pkt.ssrc() || jump || diverged {
                    c.counters.reanchors += 1;
                    c.lost_before += s.lost();
                    c.placed = [i64::MIN; DUP_SLOTS];
                    fresh(capture_pos)
                } else {
                    Stream { suspect: None, ..s }
                }
            }
        };
        c.last_codec = Some(codec);
        let ext_seq = stream.ext_seq(pkt.seq());
        let slot = ext_seq as usize & (DUP_SLOTS - 1);
        if c.placed[slot] == ext_seq {
            c.counters.duplicate += 1;
            c.stream = Some(stream);
            return;
        }
        c.placed[slot] = ext_seq;
        stream.received += 1;
        stream.seq_max_ext = stream.seq_max_ext.max(ext_seq);
        stream.seq_min_ext = stream.seq_min_ext.min(ext_seq);
        let ext_ts = stream.ext_ts(pkt.timestamp());
        if ext_ts > stream.ts_ref_ext {
            stream.ts_ref = pkt.timestamp();
            stream.ts_ref_ext = ext_ts;
        }
        c.stream = Some(stream);

        let mut pos = ext_ts + stream.offset;
        let mut end = pos + payload.len() as i64;
        // Before the start of a timeline that has not been written yet (the stream's second
        // packet came first): move the start back rather than drop the packet.
        if pos < 0 && self.committed == 0 && self.newest - pos <= self.window && self.shift(-pos) {
            end -= pos;
            pos = 0;
        }
        if end <= self.committed {
            self.chans[ci].counters.late += 1;
            return;
        }
        if end > self.newest {
            self.newest = end;
            self.commit_to(self.newest - self.window, sink);
        }
        // A packet straddling the commit point keeps its uncommitted tail.
        let skip = (self.committed - pos).max(0) as usize;
        let (start, payload) = (pos + skip as i64, &payload[skip..]);
        let mask = self.mask;
        let first = start as usize & mask;
        let n1 = payload.len().min(mask + 1 - first);
        let (a, b) = payload.split_at(n1);
        match &mut self.rings {
            Rings::Law(out, rings) if *out == codec => {
                let ring = &mut rings[ci];
                ring[first..first + n1].copy_from_slice(a);
                ring[..b.len()].copy_from_slice(b);
            }
            Rings::Law(out, rings) => {
                let ring = &mut rings[ci];
                for (d, s) in ring[first..first + n1].iter_mut().zip(a) {
                    *d = codec.transcode(*s, *out);
                }
                for (d, s) in ring[..b.len()].iter_mut().zip(b) {
                    *d = codec.transcode(*s, *out);
                }
            }
            Rings::Linear(rings) => {
                let ring = &mut rings[ci];
                let table = codec.to_linear_table();
                for (d, s) in ring[first..first + n1].iter_mut().zip(a) {
                    *d = table[*s as usize];
                }
                for (d, s) in ring[..b.len()].iter_mut().zip(b) {
                    *d = table[*s as usize];
                }
            }
        }
    }

    /// Moves sample 0 back by `by` samples (nothing committed yet, everything placed fits in
    /// the window): placed audio moves up, streams' offsets follow. False if the origin
    /// cannot move back that far.
    fn shift(&mut self, by: i64) -> bool {
        let Some(origin) = self.origin else {
            return false;
        };
        let Some(t) = origin.0.checked_sub(by as u64 * NANOS_PER_SAMPLE as u64) else {
            return false;
        };
        let (n, by_u) = (self.newest.max(0) as usize, by as usize);
        match &mut self.rings {
            Rings::Law(c, rings) => {
                for ring in rings {
                    ring.copy_within(0..n, by_u);
                    ring[..by_u].fill(c.silence());
                }
            }
            Rings::Linear(rings) => {
                for ring in rings {
                    ring.copy_within(0..n, by_u);
                    ring[..by_u].fill(0);
                }
            }
        }
        for c in &mut self.chans {
            if let Some(s) = &mut c.stream {
                s.offset += by;
            }
        }
        self.origin = Some(Timestamp(t));
        self.newest += by;
        true
    }

    /// Commits everything placed so far (at Stop or when the ring is abandoned).
    pub fn flush<F: FnMut(Frames<'_>)>(&mut self, sink: &mut F) {
        self.commit_to(self.newest, sink);
    }

    /// Hands `[committed, target)` to the sink in ring-contiguous pieces, silencing paused
    /// spans first, and resets the handed-out slots to silence for the next lap.
    fn commit_to<F: FnMut(Frames<'_>)>(&mut self, target: i64, sink: &mut F) {
        let cap = self.mask + 1;
        while self.committed < target {
            let start = self.committed as usize & self.mask;
            let n = ((target - self.committed) as usize).min(cap - start);
            let (lo, hi) = (self.committed, self.committed + n as i64);
            for i in 0..self.pauses.len() {
                let (p0, p1) = self.pauses[i];
                let a = self.pos_of(p0).max(lo);
                let b = p1.map_or(hi, |t| self.pos_of(t)).min(hi);
                if a < b {
                    let r = start + (a - lo) as usize..start + (b - lo) as usize;
                    self.silence(r);
                }
            }
            let range = start..start + n;
            match &self.rings {
                Rings::Law(_, [l, r]) => sink(Frames::Law(&l[range.clone()], &r[range.clone()])),
                Rings::Linear([l, r]) => sink(Frames::Linear(&l[range.clone()], &r[range.clone()])),
            }
            self.silence(range);
            self.committed = hi;
        }
    }

    fn silence(&mut self, range: core::ops::Range<usize>) {
        match &mut self.rings {
            Rings::Law(c, rings) => {
                for ring in rings {
                    ring[range.clone()].fill(c.silence());
                }
            }
            Rings::Linear(rings) => {
                for ring in rings {
                    ring[range.clone()].fill(0);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
