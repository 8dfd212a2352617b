//! Judging part of a recording: a time segment of a WAV against tshark's decode of the call's
//! two streams, and runs of silence (pauses). For recordings that start, pause or stop
//! mid-call, where the whole-call judge (`judge::judge`) does not apply.

use super::judge::{alaw, Spectra, Stream, StreamKey, Wav};
use std::collections::HashMap;

/// Minimum correlation of a window with the stream it should hold.
pub const MIN_CORR: f64 = 0.97;
/// Largest distance in time between where a window is and where its audio was captured, and
/// between the two channels (the "in step within 80 ms").
pub const MAX_OFFSET: f64 = 0.08;
const RATE: f64 = 8000.0;
const WIN: usize = 8000;
/// Zero samples on each side of the reference streams (0.5 s).
const PAD: usize = 4000;

/// Both streams of one call, ready for correlation: index 0 customer (left), 1 agent (right).
pub struct Reference {
    spectra: Spectra,
    starts: [f64; 2],
    ends: [f64; 2],
}

/// Where one window of the file was found in the streams.
#[derive(Debug, Clone, Copy)]
pub struct WindowMatch {
    /// Window start, seconds into the file.
    pub at: f64,
    /// Correlation per channel.
    pub corr: [f64; 2],
    /// Found minus expected capture time per channel, seconds.
    pub offset: [f64; 2],
}

impl Reference {
    /// The reference for a call whose customer and agent streams are `cust` and `agent`.
    pub fn new(streams: &HashMap<StreamKey, Stream>, cust: &StreamKey, agent: &StreamKey) -> Result<Reference, String> {
        let (c, a) = (
            streams.get(cust).ok_or_else(|| format!("no stream {cust:?} in the capture"))?,
            streams.get(agent).ok_or_else(|| format!("no stream {agent:?} in the capture"))?,
        );
        // Zeros around the streams, so a window reaching a little past either end (a file
        // starts and ends on packet boundaries the decode may not share) is still searched.
        let len = c.pcm.len().max(a.pcm.len()) + 2 * PAD;
        let pad = |x: &[f64]| {
            let mut v = vec![0.0; PAD];
            v.extend_from_slice(x);
            v.resize(len, 0.0);
            v
        };
        Ok(Reference {
            spectra: Spectra::new(Wav { rate: 8000, chans: vec![pad(&c.pcm), pad(&a.pcm)] }),
            starts: [c.start, a.start],
            ends: [c.start + c.pcm.len() as f64 / RATE, a.start + a.pcm.len() as f64 / RATE],
        })
    }

    /// Capture time of the first sample of the earlier stream.
    pub fn start(&self) -> f64 {
        self.starts[0].min(self.starts[1])
    }

    /// Capture time just past the last sample of the later stream.
    pub fn end(&self) -> f64 {
        self.ends[0].max(self.ends[1])
    }

    /// Checks that seconds `from..to` of `wav` (whose sample 0 is capture time `file_start`)
    /// hold the call's audio where it was captured: up to `max_windows` 1 s windows spread over
    /// the segment, each correlating >= [`MIN_CORR`] on both channels, each within
    /// [`MAX_OFFSET`] of its capture time, the channels within [`MAX_OFFSET`] of each other.
    pub fn check(&self, wav: &Wav, file_start: f64, from: f64, to: f64, max_windows: usize) -> Result<Vec<WindowMatch>, String> {
        if wav.chans.len() != 2 || wav.rate != 8000 {
            return Err(format!("expected 8000 Hz stereo, got {} Hz, {} channels", wav.rate, wav.chans.len()));
        }
        let len = wav.chans[0].len();
        let (a, b) = (((from * RATE).max(0.0)) as usize, ((to * RATE) as usize).min(len));
        if b < a + WIN {
            return Err(format!("segment {from:.2}..{to:.2} s of a {:.2} s file is shorter than a window", len as f64 / RATE));
        }
        let n = ((b - a) / WIN).clamp(1, max_windows.max(1));
        let step = if n > 1 { (b - a - WIN) / (n - 1) } else { 0 };
        let mut res = Vec::new();
        for w in 0..n {
            let i = a + w * step;
            let mut m = WindowMatch { at: i as f64 / RATE, corr: [0.0; 2], offset: [0.0; 2] };
            for ch in 0..2 {
                let (c, k) = self.spectra.corr(ch, &wav.chans[ch][i..i + WIN]);
                let expected = (i + PAD) as f64 + (file_start - self.starts[ch]) * RATE;
                m.corr[ch] = c;
                m.offset[ch] = (k as f64 - expected) / RATE;
            }
            for ((side, corr), offset) in ["left (customer)", "right (agent)"].iter().zip(m.corr).zip(m.offset) {
                if corr < MIN_CORR {
                    return Err(format!("{side} at {:.2} s: correlation {corr:.3} < {MIN_CORR}; {m:?}", m.at));
                }
                if offset.abs() > MAX_OFFSET {
                    return Err(format!(
                        "{side} at {:.2} s holds audio captured {:.0} ms away from its place; {m:?}",
                        m.at,
                        offset * 1000.0
                    ));
                }
            }
            if (m.offset[0] - m.offset[1]).abs() > MAX_OFFSET {
                return Err(format!("channels {:.0} ms out of step at {:.2} s; {m:?}", (m.offset[0] - m.offset[1]) * 1000.0, m.at));
            }
            res.push(m);
        }
        Ok(res)
    }
}

/// The A-law silence byte 0xD5 decoded, as the judge decodes files.
pub fn alaw_silence() -> f64 {
    alaw(0xD5) as f64
}

/// The longest run of samples silent (`value`) on both channels that contains sample `at`:
/// (first, one past last), or None when `at` is not silent.
pub fn silent_run(wav: &Wav, at: usize, value: f64) -> Option<(usize, usize)> {
    let silent = |i: usize| wav.chans.iter().all(|c| c.get(i) == Some(&value));
    if !silent(at) {
        return None;
    }
    let mut a = at;
    while a > 0 && silent(a - 1) {
        a -= 1;
    }
    let mut b = at;
    while silent(b) {
        b += 1;
    }
    Some((a, b))
}
