//! SDP (RFC 4566) as call tracking and the recording roles need it: each audio m= line's RTP
//! address, payload types with their codecs, telephone-event, direction and label.
//!
//! STUB: interface fixed, implementation to come (helper H3).

use callrec_pipeline::writer::Codec;
use std::net::SocketAddr;

/// Why an SDP body could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// A line the parser needs is malformed.
    #[error("malformed SDP line {0:?}")]
    Line(String),
    /// An audio m= line has no connection address (neither media nor session c=).
    #[error("audio stream without a connection address")]
    NoConnection,
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// a=sendrecv (the default).
    #[default]
    SendRecv,
    /// a=sendonly.
    SendOnly,
    /// a=recvonly.
    RecvOnly,
    /// a=inactive.
    Inactive,
}

/// One audio m= line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Where this party receives RTP (c= address, m= port); with symmetric RTP also where it
    /// sends from. Port 0 means the stream is disabled.
    pub addr: SocketAddr,
    /// G.711 payload types offered, in preference order (static 0/8 and rtpmap PCMU/PCMA).
    pub payload_types: Vec<(u8, Codec)>,
    /// All payload types on the m= line, in order, including ones callrec does not write.
    pub all_payload_types: Vec<u8>,
    /// RFC 4733 telephone-event payload type.
    pub event_pt: Option<u8>,
    /// Direction attribute.
    pub direction: Direction,
    /// a=label value.
    pub label: Option<String>,
}

/// The parts of a session description callrec uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// Audio m= lines, in order.
    pub audio: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body.
    pub fn parse(_body: &[u8]) -> Result<SessionDescription, SdpError> {
        todo!("H3")
    }
}
