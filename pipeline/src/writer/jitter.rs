//! Placement ("jitter") buffer of one recording: puts each stream's audio at the sample
//! position its RTP timestamp names, reorders within a window, mixes the streams that share
//! a channel, turns gaps and pauses into silence and hands finished (committed) stereo
//! frames to a sink.
//!
//! A channel holds up to `MAX_SOURCES` streams at once (one per party, chosen by the
//! control core as `RtpItem::source`), each with its own anchor, SSRC, sequence window and
//! loss count (jitter/source.rs). Where two sources' audio falls on the same samples the
//! channel holds their sum; gap fill is silence, never mixed (jitter/rings.rs).
//!
//! Timeline: position 0 is the capture time of the first packet of any stream (the
//! origin). A stream's first packet is anchored at its own capture time; later packets go at
//! `anchor + (rtp_ts - first_ts)`. So the streams are in step by the capture times of
//! their first packets, and within a stream the sender's clock decides, until the sender's
//! clock and the capture clock disagree by more than the resync threshold (a timestamp jump
//! with the same SSRC): then the stream is re-anchored on capture time, once a second packet
//! confirms the jump (the first one is held back, so a single packet with a damaged capture
//! time cannot move the stream). Two cases re-anchor at once: the first packet after a
//! resume, and a stream back from more than 1 s of silence whose timestamp step disagrees
//! with the capture gap by more than the window (a hold nobody announced). A stream whose
//! first packet overtook an earlier one, before anything was committed, moves the
//! timeline's start back to make room. Samples are committed once they are older than
//! `newest - window`, where `newest` is the furthest position seen in the recording; a
//! packet for a committed region is late. Storage is one fixed ring per channel, allocated
//! when the recording opens; placing a packet allocates nothing.

mod rings;
mod source;

use super::rtp::RtpPacket;
use super::{ChannelSpec, Codec};
use crate::flow::{Channel, MAX_SOURCES};
use crate::Timestamp;
use rings::Rings;
use source::{Admit, Capture, Source};

/// Samples per second of G.711.
pub const RATE: i64 = 8000;
const NANOS_PER_SAMPLE: i64 = 1_000_000_000 / RATE;
/// A timestamp step beyond this (either way) re-anchors the stream: 30 s.
pub const REANCHOR_SAMPLES: i64 = 30 * RATE;
/// A stream is anchored at most this far (1 h) past the newest audio: a capture time further
/// ahead is damage in the file, and following it would write that much silence.
pub const MAX_LEAP_SAMPLES: i64 = 3600 * RATE;
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
    /// Times a stream was re-anchored on capture time (SSRC change, timestamp jump, return
    /// from an unannounced hold); re-anchors after a resume are planned and not counted.
    pub reanchors: u64,
    /// Packets that are not valid RTP, or name a source past `MAX_SOURCES` (ignored).
    pub invalid: u64,
}

struct ChannelState {
    spec: ChannelSpec,
    /// The parties' streams in this channel, by `RtpItem::source`.
    sources: [Source; MAX_SOURCES],
    /// Summed over the sources.
    counters: ChannelCounters,
    last_codec: Option<Codec>,
}

/// The placement buffer of one recording (both channels).
pub struct Placement {
    rings: Rings,
    window: i64,
    origin: Option<Timestamp>,
    committed: i64,
    newest: i64,
    /// Latest capture time of a placed packet, any channel.
    latest: Option<Timestamp>,
    chans: [ChannelState; 2],
    pauses: Vec<(Timestamp, Option<Timestamp>)>,
    /// Capture time past which nothing is placed or written (the recording's stop is known).
    limit: Option<Timestamp>,
}

impl Placement {
    /// A buffer for the two channels' streams, storing `kind` samples.
    pub fn new(channels: [ChannelSpec; 2], kind: SampleKind, config: PlacementConfig) -> Self {
        let window = config.window_samples.clamp(1, MAX_WINDOW_SAMPLES) as i64;
        let cap = (window as usize + 2 * super::MAX_RTP_LEN).next_power_of_two();
        let [l, r] = channels;
        let chan = |spec| ChannelState {
            spec,
            sources: [Source::default(); MAX_SOURCES],
            counters: ChannelCounters::default(),
            last_codec: None,
        };
        Placement {
            rings: Rings::new(kind, cap),
            window,
            origin: None,
            committed: 0,
            newest: 0,
            latest: None,
            chans: [chan(l), chan(r)],
            pauses: Vec::new(),
            limit: None,
        }
    }

    /// What the rings hold.
    pub fn kind(&self) -> SampleKind {
        self.rings.kind()
    }

    /// Capture time of sample 0, once the first packet arrived.
    pub fn origin(&self) -> Option<Timestamp> {
        self.origin
    }

    /// Samples per channel handed to the sink so far.
    pub fn committed(&self) -> i64 {
        self.committed
    }

    /// The channel's counters (summed over its sources), with `lost` brought up to date.
    pub fn counters(&self, ch: Channel) -> ChannelCounters {
        let c = &self.chans[ch.index()];
        let mut out = c.counters;
        out.lost = c.sources.iter().map(Source::lost).sum();
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

    /// Ends the open pause, if any. Every stream then re-anchors on the capture time of its
    /// next packet: a sender's timestamps after a hold may continue, jump or restart, and the
    /// hold must come out as exactly the silence between pause and resume.
    pub fn resume(&mut self, at: Timestamp) {
        if let Some((start, end @ None)) = self.pauses.last_mut() {
            *end = Some(at.max(*start));
            for s in self.chans.iter_mut().flat_map(|c| c.sources.iter_mut()) {
                s.reanchor_next();
            }
        }
    }

    fn pos_of(&self, t: Timestamp) -> i64 {
        let origin = self.origin.unwrap_or(t);
        // i128: capture times from a damaged file may be anywhere in u64.
        let ns = t.0 as i128 - origin.0 as i128;
        ns.div_euclid(NANOS_PER_SAMPLE as i128)
            .clamp(i64::MIN as i128 / 2, i64::MAX as i128 / 2) as i64
    }

    /// Places one RTP packet (`bytes` is the whole UDP payload) of `source` on `ch`,
    /// captured at `ts`, handing to `sink` whatever audio that pushes out of the window.
    pub fn place<F: FnMut(Frames<'_>)>(
        &mut self,
        ch: Channel,
        source: u8,
        ts: Timestamp,
        bytes: &[u8],
        sink: &mut F,
    ) {
        let ci = ch.index();
        let c = &mut self.chans[ci];
        c.counters.packets += 1;
        c.counters.bytes += bytes.len() as u64;
        let si = source as usize;
        if si >= MAX_SOURCES {
            c.counters.invalid += 1;
            return;
        }
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
        let raw = self.pos_of(ts);
        let cap = Capture {
            raw,
            anchor: raw
                .max(self.committed)
                .min(self.newest.max(self.committed) + MAX_LEAP_SAMPLES),
            at: ts,
            latest: self.latest,
        };
        let c = &mut self.chans[ci];
        let mut pos = match c.sources[si].admit(&pkt, &cap, self.window, &mut c.counters) {
            Admit::Place(pos) => pos,
            Admit::Duplicate => {
                c.last_codec = Some(codec);
                return;
            }
            Admit::Held => return,
        };
        c.last_codec = Some(codec);
        // Past the recording's end by the sender's own clock (a party still talking after the
        // call ended): counted as received, not placed. A delayed packet from before the end
        // is placed where its timestamp says, so a starved sender's last burst still counts.
        if let Some(l) = self.limit {
            if pos > self.pos_of(l) {
                return;
            }
        }
        self.latest = Some(self.latest.map_or(ts, |l| l.max(ts)));

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
        self.rings
            .put(ci, source, pos + skip as i64, codec, &payload[skip..]);
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
        self.rings.shift(self.newest.max(0) as usize, by as usize);
        for s in self.chans.iter_mut().flat_map(|c| c.sources.iter_mut()) {
            s.shift(by);
        }
        self.origin = Some(Timestamp(t));
        self.newest += by;
        true
    }

    /// Commits everything placed so far (at Stop or when the ring is abandoned).
    pub fn flush<F: FnMut(Frames<'_>)>(&mut self, sink: &mut F) {
        self.commit_to(self.newest, sink);
    }

    /// Commits what was placed up to capture time `limit` and drops the rest: audio a stop's
    /// linger let in after the stop time is not the call's.
    pub fn flush_until<F: FnMut(Frames<'_>)>(&mut self, limit: Timestamp, sink: &mut F) {
        self.limit_to(limit);
        self.commit_to(self.newest, sink);
    }

    /// Never commits audio captured after `limit` (the stop is known, its Stop comes later).
    pub fn limit_to(&mut self, limit: Timestamp) {
        self.limit = Some(self.limit.map_or(limit, |l| l.min(limit)));
    }

    /// Hands `[committed, target)` to the sink in ring-contiguous pieces, silencing paused
    /// spans first, and resets the handed-out slots to silence for the next lap.
    fn commit_to<F: FnMut(Frames<'_>)>(&mut self, target: i64, sink: &mut F) {
        let target = match (self.limit, self.origin) {
            (Some(l), Some(_)) => target.min(self.pos_of(l)).max(self.committed),
            _ => target,
        };
        let cap = self.rings.cap();
        while self.committed < target {
            let start = self.committed as usize & (cap - 1);
            let n = ((target - self.committed) as usize).min(cap - start);
            let (lo, hi) = (self.committed, self.committed + n as i64);
            for i in 0..self.pauses.len() {
                let (p0, p1) = self.pauses[i];
                let a = self.pos_of(p0).max(lo);
                let b = p1.map_or(hi, |t| self.pos_of(t)).min(hi);
                if a < b {
                    self.rings
                        .silence(start + (a - lo) as usize..start + (b - lo) as usize);
                }
            }
            let range = start..start + n;
            sink(self.rings.frames(range.clone()));
            self.rings.silence(range);
            self.committed = hi;
        }
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
#[cfg(test)]
mod tests_sources;
