//! SIP messages as the control core sees them: parsed from bytes by ezk-sip-types (which
//! survives real traffic: compact headers, multi-value lines, any case, folding), then reduced
//! to an owned summary of what call tracking and the recording roles need.
//!
//! STUB: interface fixed, implementation to come (helper H3).

use bytes::Bytes;

/// Why a SIP message could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SipError {
    /// Not a SIP message at all, or its start line is broken.
    #[error("malformed SIP start line: {0}")]
    StartLine(String),
    /// A header the control core needs is missing or broken.
    #[error("malformed or missing {0} header")]
    Header(&'static str),
    /// The body is shorter than Content-Length says.
    #[error("body shorter than Content-Length")]
    Truncated,
}

/// Request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// A request: method (upper case, e.g. "INVITE") and the Request-URI as text.
    Request {
        /// Method name.
        method: String,
        /// Request-URI, as written.
        uri: String,
    },
    /// A response: status code and reason phrase.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// An owned, parsed SIP message.
#[derive(Debug, Clone)]
pub struct SipMessage {
    /// Request or response line.
    pub start: StartLine,
    /// Call-ID.
    pub call_id: String,
    /// From: URI user part (the DN), and tag.
    pub from_user: Option<String>,
    /// From tag.
    pub from_tag: Option<String>,
    /// To: URI user part.
    pub to_user: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
    /// User part of the Request-URI (requests only).
    pub ruri_user: Option<String>,
    /// User part of P-Asserted-Identity, if present.
    pub pai_user: Option<String>,
    /// CSeq number and method.
    pub cseq: (u32, String),
    /// Every Via header value, top first, as text (each `SIP/2.0/UDP host;branch=...`).
    pub vias: Vec<String>,
    /// The branch parameter of the top Via.
    pub top_branch: Option<String>,
    /// Content-Type value (lower-cased media type, no parameters), if any.
    pub content_type: Option<String>,
    /// Other headers, name as written and value, in order (for X- extension headers etc.).
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length bytes).
    pub body: Bytes,
}

impl SipMessage {
    /// Parses one SIP message from a UDP payload.
    pub fn parse(_payload: &[u8]) -> Result<SipMessage, SipError> {
        todo!("H3")
    }
    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> &str {
        match &self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => &self.cseq.1,
        }
    }
    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            _ => None,
        }
    }
    /// Value of the first header of that name (case-insensitive, compact forms accepted).
    pub fn header(&self, _name: &str) -> Option<&str> {
        todo!("H3")
    }
}
