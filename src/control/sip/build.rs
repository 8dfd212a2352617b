//! Building SIP messages as RFC 3261 text, for the recording roles (SIP Server, Resource
//! Manager, MCP). Plain string assembly: the roles make a handful of well-formed messages
//! and need exact control over every header, which ezk's typed printing would reorder.
//!
//! ```
//! use callrec::control::sip::{SipBuilder, SipMessage, response_to};
//! let invite = SipBuilder::request("INVITE", "sip:msml=abc123@rm.example:5070;dn=2001;record")
//!     .via("UDP", "192.0.2.1:5060", "z9hG4bK-1")
//!     .max_forwards(70)
//!     .from("sip:ss@192.0.2.1", "ss-tag")
//!     .to("sip:msml=abc123@rm.example:5070", None)
//!     .call_id("c1@192.0.2.1")
//!     .cseq(1, "INVITE")
//!     .contact("sip:ss@192.0.2.1:5060")
//!     .body("application/sdp", b"v=0\r\n");
//! let req = SipMessage::parse(&invite).unwrap();
//! let ok = response_to(&req, 200, "OK", Some("rm-tag"))
//!     .contact("sip:rm@192.0.2.2:5070")
//!     .finish();
//! let resp = SipMessage::parse(&ok).unwrap();
//! assert_eq!(resp.to_tag.as_deref(), Some("rm-tag"));
//! ```

use super::{SipMessage, StartLine};
use std::fmt::Write as _;

/// Assembles one SIP message. Headers come out in the order they are added; the body
/// method (or `finish`) appends Content-Length and ends the message.
#[derive(Debug, Clone)]
pub struct SipBuilder {
    text: String,
}

impl SipBuilder {
    /// Starts a request: `METHOD uri SIP/2.0`.
    pub fn request(method: &str, uri: &str) -> SipBuilder {
        let mut text = String::with_capacity(512);
        let _ = write!(text, "{method} {uri} SIP/2.0\r\n");
        SipBuilder { text }
    }
    /// Starts a response: `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> SipBuilder {
        let mut text = String::with_capacity(512);
        let _ = write!(text, "SIP/2.0 {code} {reason}\r\n");
        SipBuilder { text }
    }
    /// Any header line, `Name: value`, written as given.
    pub fn header(mut self, name: &str, value: &str) -> SipBuilder {
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }
    /// `Via: SIP/2.0/<transport> <sent_by>;branch=<branch>`. The branch should start with
    /// the RFC 3261 magic cookie `z9hG4bK`. `sent_by` is `host[:port]` (any Display).
    pub fn via(self, transport: &str, sent_by: impl std::fmt::Display, branch: &str) -> SipBuilder {
        let v = format!("SIP/2.0/{transport} {sent_by};branch={branch}");
        self.header("Via", &v)
    }
    /// `Max-Forwards: n`.
    pub fn max_forwards(self, n: u8) -> SipBuilder {
        self.header("Max-Forwards", &n.to_string())
    }
    /// `From: <uri>;tag=tag` (a From always carries a tag).
    pub fn from(self, uri: &str, tag: &str) -> SipBuilder {
        self.header("From", &format!("<{uri}>;tag={tag}"))
    }
    /// `To: <uri>` with `;tag=` when given (in-dialog requests and responses).
    pub fn to(self, uri: &str, tag: Option<&str>) -> SipBuilder {
        match tag {
            Some(t) => self.header("To", &format!("<{uri}>;tag={t}")),
            None => self.header("To", &format!("<{uri}>")),
        }
    }
    /// `Call-ID: id`.
    pub fn call_id(self, id: &str) -> SipBuilder {
        self.header("Call-ID", id)
    }
    /// `CSeq: n METHOD`.
    pub fn cseq(self, n: u32, method: &str) -> SipBuilder {
        self.header("CSeq", &format!("{n} {method}"))
    }
    /// `Contact: <uri>`.
    pub fn contact(self, uri: &str) -> SipBuilder {
        self.header("Contact", &format!("<{uri}>"))
    }
    /// Ends the message with `Content-Type`, `Content-Length` and the body.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Vec<u8> {
        let _ = write!(
            self.text,
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut out = self.text.into_bytes();
        out.extend_from_slice(body);
        out
    }
    /// Ends a message without body (`Content-Length: 0`).
    pub fn finish(mut self) -> Vec<u8> {
        self.text.push_str("Content-Length: 0\r\n\r\n");
        self.text.into_bytes()
    }
}

/// Starts a response to `req` (RFC 3261 8.2.6.2): status line, every Via in order, From,
/// To (with `to_tag` added unless the request's To already has a tag), Call-ID and CSeq,
/// copied as written. Add Contact etc. and end with `finish()` or `body()`.
pub fn response_to(req: &SipMessage, code: u16, reason: &str, to_tag: Option<&str>) -> SipBuilder {
    let mut b = SipBuilder::response(code, reason);
    for via in req.header_all("Via") {
        b = b.header("Via", via);
    }
    if let Some(from) = req.header("From") {
        b = b.header("From", from);
    }
    if let Some(to) = req.header("To") {
        match (to_tag, &req.to_tag) {
            (Some(tag), None) => b = b.header("To", &format!("{to};tag={tag}")),
            _ => b = b.header("To", to),
        }
    }
    b = b.call_id(&req.call_id);
    let method = match &req.start {
        StartLine::Request { method, .. } => method.as_str(),
        StartLine::Response { .. } => req.cseq.1.as_str(),
    };
    b.cseq(req.cseq.0, method)
}
