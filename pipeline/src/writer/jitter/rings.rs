//! The sample rings of a recording's two channels: fixed storage, allocated when the
//! recording opens, where packets are written at their ring offset and committed spans are
//! read out and reset to silence.

use super::{Frames, SampleKind};
use crate::writer::Codec;
use core::ops::Range;

enum Samples {
    Law(Codec, [Vec<u8>; 2]),
    Linear([Vec<i16>; 2]),
}

/// Both channels' rings, `cap` samples each (a power of two).
pub(super) struct Rings {
    samples: Samples,
    mask: usize,
}

impl Rings {
    pub fn new(kind: SampleKind, cap: usize) -> Self {
        let samples = match kind {
            SampleKind::Law(c) => Samples::Law(c, [vec![c.silence(); cap], vec![c.silence(); cap]]),
            SampleKind::Linear => Samples::Linear([vec![0; cap], vec![0; cap]]),
        };
        Rings {
            samples,
            mask: cap - 1,
        }
    }

    pub fn kind(&self) -> SampleKind {
        match self.samples {
            Samples::Law(c, _) => SampleKind::Law(c),
            Samples::Linear(_) => SampleKind::Linear,
        }
    }

    pub fn cap(&self) -> usize {
        self.mask + 1
    }

    /// Writes `payload` (bytes of `codec`) on channel `ci` from timeline position `start`,
    /// wrapping around the ring.
    pub fn put(&mut self, ci: usize, start: i64, codec: Codec, payload: &[u8]) {
        let first = start as usize & self.mask;
        let n1 = payload.len().min(self.mask + 1 - first);
        let (a, b) = payload.split_at(n1);
        self.put_span(ci, first, codec, a);
        self.put_span(ci, 0, codec, b);
    }

    fn put_span(&mut self, ci: usize, at: usize, codec: Codec, src: &[u8]) {
        let r = at..at + src.len();
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

    /// Resets a ring-contiguous `range` of both channels to silence.
    pub fn silence(&mut self, range: Range<usize>) {
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
