//! One recording on a writer: its placement buffer, its WAV file, its pauses and failure
//! state, and the sidecar written when it stops.

use super::jitter::{ChannelCounters, Frames, Placement, PlacementConfig, SampleKind};
use super::sidecar::{self, SidecarFacts};
use super::wav::WavOut;
use super::{Codec, OutputFormat, RecordingSpec, RtpItem};
use crate::flow::{Channel, RecordingId};
use crate::Timestamp;
use std::time::{Duration, Instant};

/// Audio placed up to this long after a Stop's time is still written (a packet straddling
/// the end, a sender whose clock runs a little ahead). Later audio (a party still sending
/// after the call ended, let in by the driver's stop linger) is dropped; late packets whose
/// timestamps place them before the end are not.
pub const STOP_TAIL_NS: u64 = 60_000_000;

/// How often (wall time) the WAV header is brought up to date while audio is written.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Most WAV header rewrites a writer does per second (wall time): with more recordings than
/// this x [`CHECKPOINT_EVERY`] open, each header is rewritten less often (20,000 recordings:
/// every 10 s) instead of header writes eating the writer (a quarter of its time at 20,000
/// recordings every 500 ms). A crash loses no audio either way: `callrec repair` sets the
/// sizes from what is on disk.
pub const MAX_CHECKPOINTS_PER_SEC: u32 = 2000;

/// The header checkpoint interval for a writer holding `open` recordings.
pub fn checkpoint_every(open: usize) -> Duration {
    CHECKPOINT_EVERY.max(Duration::from_secs(1) * (open as u32 / MAX_CHECKPOINTS_PER_SEC))
}

/// How a recording ended, for the writer's totals.
#[derive(Clone, Copy, Debug)]
pub struct RecordingOutcome {
    /// The recording.
    pub id: RecordingId,
    /// The WAV or the sidecar could not be written (fully).
    pub failed: bool,
    /// Left and right counters.
    pub channels: [ChannelCounters; 2],
    /// Write errors seen.
    pub write_errors: u64,
}

/// The samples a recording stores: PCM16 when asked, or when the legs use different codecs;
/// otherwise G.711 in the legs' common law.
///
/// The legs' lists come from an offer and its answer: an offer of PCMA and PCMU answered
/// with PCMU alone means both directions use PCMU, although the two preferred codecs differ.
/// So when one leg's codecs are a strict subset of the other's, that leg (the answer)
/// decides; only when neither list settles it is the file PCM16.
pub fn sample_kind(spec: &RecordingSpec) -> SampleKind {
    kind_for(spec.format, &spec.channels)
}

/// [`sample_kind`] from the format and the two channels alone (the SIP Server role names the
/// file's codec in MSML before any writer sees the recording).
pub fn kind_for(format: OutputFormat, channels: &[super::ChannelSpec; 2]) -> SampleKind {
    if format == OutputFormat::Pcm16 {
        return SampleKind::Linear;
    }
    let [l, r] = channels;
    let has = |ch: &super::ChannelSpec, c: Codec| ch.payload_types.iter().any(|(_, x)| *x == c);
    let within = |a: &super::ChannelSpec, b: &super::ChannelSpec| {
        a.payload_types.iter().all(|(_, c)| has(b, *c))
    };
    match (l.preferred(), r.preferred()) {
        (Some(a), Some(b)) if a == b => SampleKind::Law(a),
        (Some(a), Some(b)) => match (within(l, r), within(r, l)) {
            (true, false) => SampleKind::Law(a),
            (false, true) => SampleKind::Law(b),
            _ => SampleKind::Linear,
        },
        (Some(a), None) | (None, Some(a)) => SampleKind::Law(a),
        (None, None) => SampleKind::Law(Codec::Pcma),
    }
}

/// One recording being written.
pub struct Recording {
    spec: Box<RecordingSpec>,
    placement: Placement,
    wav: Option<WavOut>,
    error: Option<String>,
    write_errors: u64,
    dirty: bool,
    last_checkpoint: Instant,
}

impl Recording {
    /// Opens the WAV for `spec`. A file that cannot be created gives a failed recording that
    /// still counts packets and writes its sidecar at Stop.
    pub fn open(spec: Box<RecordingSpec>, config: PlacementConfig, now: Instant) -> Self {
        let kind = sample_kind(&spec);
        let placement = Placement::new(spec.channels.clone(), kind, config);
        let (wav, error) = match WavOut::create(&spec.wav_path, kind) {
            Ok(w) => (Some(w), None),
            Err(e) => {
                tracing::error!(conf_id = %spec.conf_id, error = %e, "recording failed to open");
                (None, Some(e.to_string()))
            }
        };
        let write_errors = u64::from(error.is_some());
        Recording {
            spec,
            placement,
            wav,
            error,
            write_errors,
            dirty: false,
            last_checkpoint: now,
        }
    }

    /// The recording's id.
    pub fn id(&self) -> RecordingId {
        self.spec.id
    }

    /// The spec it was opened with.
    pub fn spec(&self) -> &RecordingSpec {
        &self.spec
    }

    /// True once a write failed (or the file could not be created).
    pub fn is_failed(&self) -> bool {
        self.error.is_some()
    }

    /// The channel's counters so far.
    pub fn counters(&self, ch: Channel) -> ChannelCounters {
        self.placement.counters(ch)
    }

    /// Places one RTP packet.
    pub fn rtp(&mut self, item: &RtpItem) {
        let Recording {
            placement,
            wav,
            error,
            write_errors,
            dirty,
            spec,
            ..
        } = self;
        let mut sink =
            |f: Frames<'_>| write_frames(wav, error, write_errors, dirty, &spec.conf_id, f);
        placement.place(item.channel, item.source, item.ts, item.bytes(), &mut sink);
    }

    /// Sets top-level `key` of the sidecar (see `WriterMsg::Sidecar`).
    pub fn set_sidecar(&mut self, key: String, value: serde_json::Value) {
        self.spec.sidecar.insert(key, value);
    }

    /// The recording stops at `at` (its Stop comes later): nothing past the stop tail is
    /// written from now on.
    pub fn stopping(&mut self, at: Timestamp) {
        self.placement.limit_to(at.plus_nanos(STOP_TAIL_NS));
    }

    /// Silence from `at` until `resume`.
    pub fn pause(&mut self, at: Timestamp) {
        self.placement.pause(at);
    }

    /// Ends a pause.
    pub fn resume(&mut self, at: Timestamp) {
        self.placement.resume(at);
    }

    /// Rewrites the WAV header if audio was written since the last checkpoint and
    /// `every` (see [`checkpoint_every`]) has passed.
    pub fn checkpoint_if_due(&mut self, now: Instant, every: Duration) {
        if !self.dirty || now.saturating_duration_since(self.last_checkpoint) < every {
            return;
        }
        self.last_checkpoint = now;
        self.dirty = false;
        if let Some(w) = self.wav.as_mut() {
            if let Err(e) = w.checkpoint() {
                self.fail(e.to_string());
            }
        }
    }

    fn fail(&mut self, msg: String) {
        tracing::error!(conf_id = %self.spec.conf_id, error = %msg, "recording write failed");
        self.write_errors += 1;
        self.error.get_or_insert(msg);
        self.wav = None;
    }

    /// Flushes all placed audio, finalizes the WAV and writes the sidecar. `at` is the stop
    /// time (None when the ring was abandoned: the last packet's time is used).
    pub fn stop(mut self, at: Option<Timestamp>) -> RecordingOutcome {
        {
            let Recording {
                placement,
                wav,
                error,
                write_errors,
                dirty,
                spec,
                ..
            } = &mut self;
            let mut sink =
                |f: Frames<'_>| write_frames(wav, error, write_errors, dirty, &spec.conf_id, f);
            match at {
                Some(at) => placement.flush_until(at.plus_nanos(STOP_TAIL_NS), &mut sink),
                None => placement.flush(&mut sink),
            }
        }
        if let Some(w) = self.wav.take() {
            if let Err(e) = w.finish() {
                self.fail(e.to_string());
            }
        }
        let origin = self.placement.origin();
        let duration = self.placement.committed().max(0) as u64;
        let last_audio = origin.map(|o| o.plus_nanos(duration.saturating_mul(125_000)));
        let stop = at.or(last_audio).unwrap_or(self.spec.started);
        let format = match self.placement.kind() {
            SampleKind::Law(Codec::Pcma) => "g711-alaw",
            SampleKind::Law(Codec::Pcmu) => "g711-ulaw",
            SampleKind::Linear => "pcm16",
        };
        let codec = |ch: Channel, i: usize| {
            self.placement
                .last_codec(ch)
                .or(self.spec.channels[i].preferred())
                .map(Codec::name)
        };
        let channels = [
            self.placement.counters(Channel::Left),
            self.placement.counters(Channel::Right),
        ];
        let wav_name = self
            .spec
            .wav_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let facts = SidecarFacts {
            format,
            wav_name,
            codecs: [codec(Channel::Left, 0), codec(Channel::Right, 1)],
            started: self.spec.started,
            origin,
            stop,
            duration_samples: duration,
            pauses: self.placement.pauses(),
            channels,
            error: self.error.as_deref(),
        };
        let json = sidecar::build(&self.spec.sidecar, &facts);
        if let Err(e) = sidecar::write_atomic(&self.spec.sidecar_path, &json) {
            let msg = format!(
                "cannot write sidecar {}: {e}",
                self.spec.sidecar_path.display()
            );
            self.fail(msg);
        }
        RecordingOutcome {
            id: self.spec.id,
            failed: self.error.is_some(),
            channels,
            write_errors: self.write_errors,
        }
    }
}

/// The placement sink: writes committed frames, or turns the first write error into a failed
/// recording that no longer writes.
fn write_frames(
    wav: &mut Option<WavOut>,
    error: &mut Option<String>,
    write_errors: &mut u64,
    dirty: &mut bool,
    conf_id: &str,
    f: Frames<'_>,
) {
    let Some(w) = wav.as_mut() else { return };
    match w.write(f) {
        Ok(()) => *dirty = true,
        Err(e) => {
            tracing::error!(conf_id, error = %e, "recording write failed");
            *write_errors += 1;
            error.get_or_insert(e.to_string());
            *wav = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: OutputFormat, left: &[Codec], right: &[Codec]) -> RecordingSpec {
        let ch = |cs: &[Codec]| super::super::ChannelSpec {
            payload_types: cs
                .iter()
                .map(|c| (if *c == Codec::Pcmu { 0 } else { 8 }, *c))
                .collect(),
            event_pt: None,
        };
        RecordingSpec {
            id: RecordingId(1),
            conf_id: "c".into(),
            wav_path: "/x.wav".into(),
            sidecar_path: "/x.json".into(),
            format,
            channels: [ch(left), ch(right)],
            started: Timestamp(0),
            sidecar: Default::default(),
        }
    }

    #[test]
    fn header_checkpoints_spread_out_with_many_recordings() {
        assert_eq!(checkpoint_every(1), CHECKPOINT_EVERY);
        assert_eq!(checkpoint_every(1999), CHECKPOINT_EVERY);
        assert_eq!(checkpoint_every(20_000), Duration::from_secs(10));
        // never more than 2 x MAX_CHECKPOINTS_PER_SEC rewrites a second
        for open in [10usize, 1_000, 2_000, 3_999, 4_000, 19_900, 100_000] {
            let per_sec = open as f64 / checkpoint_every(open).as_secs_f64();
            assert!(per_sec <= 2.0 * MAX_CHECKPOINTS_PER_SEC as f64, "{open}: {per_sec}/s");
        }
    }

    #[test]
    fn the_answer_decides_the_file_codec() {
        use Codec::{Pcma as A, Pcmu as U};
        let g = OutputFormat::G711;
        let kind = |l: &[Codec], r: &[Codec]| sample_kind(&spec(g, l, r));
        // Before: an offer of A,U answered with U alone gave PCM16 though both legs send U.
        assert_eq!(kind(&[A, U], &[U]), SampleKind::Law(U));
        assert_eq!(kind(&[A], &[U, A]), SampleKind::Law(A));
        assert_eq!(kind(&[A], &[U]), SampleKind::Linear);
        assert_eq!(kind(&[A, U], &[U, A]), SampleKind::Linear);
        assert_eq!(kind(&[U], &[U, A]), SampleKind::Law(U));
        assert_eq!(kind(&[], &[U]), SampleKind::Law(U));
        assert_eq!(kind(&[], &[]), SampleKind::Law(A));
        assert_eq!(
            sample_kind(&spec(OutputFormat::Pcm16, &[A], &[A])),
            SampleKind::Linear
        );
    }
}
