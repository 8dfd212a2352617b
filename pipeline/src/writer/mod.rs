//! Writers: pinned threads that own recordings, take RTP and commands from an SPSC ring in
//! bursts, place audio by RTP timestamp, and write stereo WAV files plus a JSON sidecar.
//!
//! Everything a writer needs arrives on its ring, in order: `Start` before the first RTP of a
//! recording, `Stop` after its last. One producer per ring (the thread running classify and
//! the control core).

pub use crate::flow::MAX_SOURCES;
use crate::flow::{Channel, RecordingId};
use crate::Timestamp;
use std::path::PathBuf;

/// Longest RTP packet (header + payload) carried through a ring; longer ones are counted and
/// dropped by the classifier. 1024 bytes hold 120 ms of G.711 with room for header extensions.
pub const MAX_RTP_LEN: usize = 1024;

/// G.711 codecs callrec writes. Others are counted as unknown payload types.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
pub enum Codec {
    /// G.711 mu-law (static payload type 0).
    Pcmu,
    /// G.711 A-law (static payload type 8).
    Pcma,
}

/// The file format asked for on the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OutputFormat {
    /// G.711 stereo (format tag 6 or 7), falling back to PCM16 when the legs' codecs differ.
    #[default]
    G711,
    /// 16-bit linear PCM stereo.
    Pcm16,
}

/// What a channel's stream carries, from the SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Payload type -> codec, from the SDP's m= line and rtpmap.
    pub payload_types: heapless::Vec<(u8, Codec), 8>,
    /// RFC 4733 telephone-event payload type, if announced.
    pub event_pt: Option<u8>,
}

impl ChannelSpec {
    /// The codec a payload type maps to, if it is an audio codec we write.
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        self.payload_types.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c)
    }
    /// The codec of the first (preferred) audio payload type.
    pub fn preferred(&self) -> Option<Codec> {
        self.payload_types.first().map(|(_, c)| *c)
    }
}

/// Everything a writer needs to open and later close a recording.
#[derive(Clone, Debug)]
pub struct RecordingSpec {
    /// The recording's id on this writer's ring.
    pub id: RecordingId,
    /// The conference id (also the file stem).
    pub conf_id: String,
    /// Path of the `.wav`.
    pub wav_path: PathBuf,
    /// Path of the `.json` sidecar.
    pub sidecar_path: PathBuf,
    /// Format asked for.
    pub format: OutputFormat,
    /// Left (customer) and right (agent) channel streams.
    pub channels: [ChannelSpec; 2],
    /// When the recording was started (the MSML `<dialogstart>`), capture clock.
    pub started: Timestamp,
    /// Fields the control core puts in the sidecar (conf-id, Call-IDs, DNs, trigger, ...);
    /// the writer adds format, codec, start/stop, pauses and per-channel packet counts.
    pub sidecar: serde_json::Map<String, serde_json::Value>,
}

/// One RTP packet on its way to a writer, copied inline so rings never point into rx buffers.
#[derive(Clone, Copy)]
pub struct RtpItem {
    /// The recording it belongs to.
    pub recording: RecordingId,
    /// Its channel.
    pub channel: Channel,
    /// Which party's stream inside the channel (0..[`MAX_SOURCES`]); the control core gives
    /// each party present in a channel its own source so two agents' streams can be mixed
    /// and a transfer's overlapping tails do not fight. Copied from the flow's
    /// [`FlowTarget`](crate::flow::FlowTarget); out of range counts as invalid.
    pub source: u8,
    /// Capture time.
    pub ts: Timestamp,
    /// Bytes used in `data`.
    pub len: u16,
    /// The UDP payload: RTP header and payload.
    pub data: [u8; MAX_RTP_LEN],
}

impl RtpItem {
    /// The RTP packet bytes.
    pub fn bytes(&self) -> &[u8] {
        // A `len` past the array (a producer bug) yields the whole array, not a panic.
        &self.data[..(self.len as usize).min(MAX_RTP_LEN)]
    }
}

/// A message on a writer's ring.
#[derive(Clone)]
// RTP is carried inline on purpose: boxing it would allocate per packet, and a ring slot must
// not point into an rx buffer.
#[allow(clippy::large_enum_variant)]
pub enum WriterMsg {
    /// RTP for a recording.
    Rtp(RtpItem),
    /// Open a recording.
    Start(Box<RecordingSpec>),
    /// From `at` on, write silence for this recording until `Resume`.
    Pause {
        /// The recording.
        recording: RecordingId,
        /// Capture time of the pause.
        at: Timestamp,
    },
    /// End a pause.
    Resume {
        /// The recording.
        recording: RecordingId,
        /// Capture time of the resume.
        at: Timestamp,
    },
    /// The recording stops at `at`; its `Stop` follows once the driver's stop linger is over.
    /// Audio placed (by its RTP timestamp) later than `at` + [`recording::STOP_TAIL_NS`] is not
    /// written: parties still sending after the call ended. Late packets of audio from before
    /// `at` still are.
    Stopping {
        /// The recording.
        recording: RecordingId,
        /// Capture time of the stop.
        at: Timestamp,
    },
    /// Flush and finalize the recording (WAV header, sidecar) and forget it.
    Stop {
        /// The recording.
        recording: RecordingId,
        /// Capture time of the stop.
        at: Timestamp,
    },
    /// Sets (overwrites) top-level `key` of the recording's sidecar to `value`, as if it had
    /// been in [`RecordingSpec::sidecar`]; written at Stop, the last value sent winning.
    /// For what the control core learns during the call ("parties", "holds"). The writer's
    /// own keys (format, wav, codec, started, start, stop, sample_rate, duration_*, pauses,
    /// channels, failed, error, and their `_rfc3339` forms) are not overridden.
    Sidecar {
        /// The recording.
        recording: RecordingId,
        /// Top-level key.
        key: String,
        /// Its value.
        value: Box<serde_json::Value>,
    },
}

pub mod g711;
pub mod jitter;
pub mod recording;
pub mod repair;
pub mod rtp;
pub mod sidecar;
pub mod thread;
pub mod wav;

pub use jitter::{ChannelCounters, PlacementConfig};
pub use thread::{
    run, spawn_writer, spawn_writer_with, try_spawn_writer_with, Writer, WriterConfig,
    WriterReport,
};
