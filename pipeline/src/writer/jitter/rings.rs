//! The sample rings of a recording's two channels: fixed storage, allocated when the
//! recording opens, where packets are written (or mixed into what another source wrote) at
//! their ring offset, and committed spans are read out and reset to silence.
//!
//! Each sample has an owner byte beside it, so that silence (gap fill) is never mixed as if
//! it were audio: 0 = nothing written, `k + 1` = written by source k, [`MIXED`] = the sum of
//! several. A source writing where it wrote before (its stream re-anchored onto its own
//! audio) overwrites; a source writing over another's audio adds to it.

use super::{Frames, SampleKind};
use crate::flow::MAX_SOURCES;
use crate::writer::Codec;
use core::ops::Range;

enum Samples {
    Law(Codec, [Vec<u8>; 2]),
    Linear([Vec<i16>; 2]),
}

/// Owner of a sample holding the sum of several sources.
const MIXED: u8 = 0xFF;

/// Both channels' rings, `cap` samples each (a power of two).
pub(super) struct Rings {
    samples: Samples,
    /// Who wrote each sample, per channel (see the module doc).
    owners: [Vec<u8>; 2],
    /// Per channel and source, the timeline position past the last sample it wrote: a
    /// packet starting at or after every other source's reach cannot meet their audio, and
    /// takes the plain write without looking at the owners.
    reach: [[i64; MAX_SOURCES]; 2],
    mask: usize,
}

impl Rings {
    /// Silent rings of `cap` samples (a power of two) holding `kind`.
    pub fn new(kind: SampleKind, cap: usize) -> Self {
        let samples = match kind {
            SampleKind::Law(c) => Samples::Law(c, [vec![c.silence(); cap], vec![c.silence(); cap]]),
            SampleKind::Linear => Samples::Linear([vec![0; cap], vec![0; cap]]),
        };
        Rings {
            samples,
            owners: [vec![0; cap], vec![0; cap]],
            reach: [[i64::MIN; MAX_SOURCES]; 2],
            mask: cap - 1,
        }
    }

    /// What the rings hold.
    pub fn kind(&self) -> SampleKind {
        match self.samples {
            Samples::Law(c, _) => SampleKind::Law(c),
            Samples::Linear(_) => SampleKind::Linear,
        }
    }

    /// Samples per channel ring.
    pub fn cap(&self) -> usize {
        self.mask + 1
    }

    /// Writes `payload` (bytes of `codec`) of `source` on channel `ci` from timeline
    /// position `start`, wrapping around the ring; mixes where another source's audio is.
    pub fn put(&mut self, ci: usize, source: u8, start: i64, codec: Codec, payload: &[u8]) {
        let k = (source as usize).min(MAX_SOURCES - 1);
        let reach = &mut self.reach[ci];
        let alone = reach.iter().enumerate().all(|(j, &r)| j == k || r <= start);
        reach[k] = reach[k].max(start + payload.len() as i64);
        let first = start as usize & self.mask;
        let n1 = payload.len().min(self.mask + 1 - first);
        let (a, b) = payload.split_at(n1);
        let tag = k as u8 + 1;
        self.put_span(ci, tag, alone, first, codec, a);
        if !b.is_empty() {
            self.put_span(ci, tag, alone, 0, codec, b);
        }
    }

    fn put_span(&mut self, ci: usize, tag: u8, alone: bool, at: usize, codec: Codec, src: &[u8]) {
        let r = at..at + src.len();
        let owners = &mut self.owners[ci][r.clone()];
        if alone {
            // The common case (one party, or parties taking turns): a plain write.
            owners.fill(tag);
            match &mut self.samples {
                Samples::Law(out, rings) if *out == codec => rings[ci][r].copy_from_slice(src),
                Samples::Law(out, rings) => {
                    for (d, s) in rings[ci][r].iter_mut().zip(src) {
                        *d = codec.transcode(*s, *out);
                    }
                }
                Samples::Linear(rings) => {
                    let table = codec.to_linear_table();
                    for (d, s) in rings[ci][r].iter_mut().zip(src) {
                        *d = table[*s as usize];
                    }
                }
            }
            return;
        }
        let table = codec.to_linear_table();
        let mine = |o: &mut u8| {
            let free = *o == 0 || *o == tag;
            *o = if free { tag } else { MIXED };
            free
        };
        match &mut self.samples {
            Samples::Law(out, rings) => {
                let out = *out;
                for ((d, o), s) in rings[ci][r].iter_mut().zip(owners).zip(src) {
                    *d = if mine(o) {
                        codec.transcode(*s, out)
                    } else {
                        out.encode(out.decode(*d).saturating_add(table[*s as usize]))
                    };
                }
            }
            Samples::Linear(rings) => {
                for ((d, o), s) in rings[ci][r].iter_mut().zip(owners).zip(src) {
                    let v = table[*s as usize];
                    *d = if mine(o) { v } else { d.saturating_add(v) };
                }
            }
        }
    }

    /// The stereo frames of a ring-contiguous `range`.
    pub fn frames(&self, range: Range<usize>) -> Frames<'_> {
        match &self.samples {
            Samples::Law(_, [l, r]) => Frames::Law(&l[range.clone()], &r[range]),
            Samples::Linear([l, r]) => Frames::Linear(&l[range.clone()], &r[range]),
        }
    }

    /// Moves the first `n` samples of both rings up by `by`, silence in front.
    pub fn shift(&mut self, n: usize, by: usize) {
        for r in self.reach.iter_mut().flatten() {
            *r = r.saturating_add(by as i64);
        }
        for owners in &mut self.owners {
            owners.copy_within(0..n, by);
            owners[..by].fill(0);
        }
        match &mut self.samples {
            Samples::Law(c, rings) => {
                for ring in rings {
                    ring.copy_within(0..n, by);
                    ring[..by].fill(c.silence());
                }
            }
            Samples::Linear(rings) => {
                for ring in rings {
                    ring.copy_within(0..n, by);
                    ring[..by].fill(0);
                }
            }
        }
    }

    /// Resets a ring-contiguous `range` of both channels to silence, owned by nobody.
    pub fn silence(&mut self, range: Range<usize>) {
        for owners in &mut self.owners {
            owners[range.clone()].fill(0);
        }
        match &mut self.samples {
            Samples::Law(c, rings) => {
                for ring in rings {
                    ring[range.clone()].fill(c.silence());
                }
            }
            Samples::Linear(rings) => {
                for ring in rings {
                    ring[range.clone()].fill(0);
                }
            }
        }
    }
}
