//! SIP messages as the control core sees them: parsed from bytes by ezk-sip-types (which
//! survives real traffic: compact headers, multi-value lines, any case), then reduced to an
//! owned summary of what call tracking and the recording roles need. Building messages for the
//! recording roles lives in the `build` submodule ([`SipBuilder`], [`response_to`]).
//!
//! What ezk-sip-types does not do, and this module does by hand in a small pass around it:
//! - line splitting and unfolding: ezk's `PullParser` keeps a folded header as one line with the
//!   CRLF and indentation inside, which its typed value parsers then reject; we join
//!   continuation lines with one space first;
//! - the start line: ezk's `RequestLine` only accepts `sip:`/`sips:` Request-URIs and matches
//!   methods by case-insensitive prefix (`INVITEX` becomes INVITE); we split the three tokens
//!   ourselves and keep the method exactly as written;
//! - `tel:` URIs (and other non-SIP schemes) in the Request-URI, From, To and
//!   P-Asserted-Identity: ezk's `NameAddr` only knows SIP URIs, so those fall back to a
//!   hand-written name-addr split;
//! - Via values and the top branch (see `vias`: ezk's decoder keeps a valid prefix of a
//!   malformed Via);
//! - Content-Length against the datagram, and repeated Content-Length headers.
//!
//! ezk does the rest: Call-ID, CSeq, From/To name-addr with tags, SIP URI user parts
//! (percent-decoded), and the compact/any-case header names behind its `Headers` map.

mod build;
mod links;
#[cfg(test)]
mod tests;
mod text;

pub use build::{response_to, SipBuilder};
pub use links::ReferTarget;

use bytes::Bytes;
use ezk_sip_types::header::typed::{CSeq, CallID};
use ezk_sip_types::{Headers, Name};
use text::{
    cut_body, first_value, is_token, multipart_sdp, name_addr_header, parse_start_line, same_name,
    split_head, split_name_addr, unfold, uri_user, vias,
};

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
    /// Every Via header value, top first, as written (unfolded; one entry per comma-separated
    /// value, each `SIP/2.0/UDP host;branch=...`).
    pub vias: Vec<String>,
    /// The branch parameter of the top Via.
    pub top_branch: Option<String>,
    /// Content-Type value (lower-cased media type, no parameters), if any.
    pub content_type: Option<String>,
    /// Every header line, name as written and unfolded value, in message order (so X-
    /// extension headers can be read, and responses can copy Via/From/To verbatim).
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length bytes).
    pub body: Bytes,
    /// The Contact URI (first Contact, without display name and `<>`), if any.
    pub contact: Option<String>,
}

impl SipMessage {
    /// Parses one SIP message from a UDP payload.
    ///
    /// Without a Content-Length header the body is the rest of the datagram (RFC 3261 18.3
    /// allows that on UDP); a longer datagram is cut to Content-Length.
    pub fn parse(payload: &[u8]) -> Result<SipMessage, SipError> {
        let (head, body) = split_head(payload);
        let lines = unfold(head);
        let mut lines = lines.into_iter();
        let first = lines
            .next()
            .ok_or_else(|| SipError::StartLine("empty message".into()))?;
        let start = parse_start_line(&first)?;

        let mut raw: Vec<(String, String)> = Vec::new();
        let mut map = Headers::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(SipError::StartLine(format!(
                    "header line without ':': {line}"
                )));
            };
            let name = name.trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(SipError::StartLine(format!("bad header name {name:?}")));
            }
            let value = value.trim_matches([' ', '\t']);
            map.insert(Name::from(name.to_string()), value);
            raw.push((name.to_string(), value.to_string()));
        }

        let call_id = match map.try_get_named::<CallID>() {
            Some(Ok(id)) if !id.0.is_empty() => id.0.to_string(),
            _ => return Err(SipError::Header("Call-ID")),
        };
        let cseq = match map.try_get_named::<CSeq>() {
            Some(Ok(c)) => (c.cseq, c.method.to_string()),
            _ => return Err(SipError::Header("CSeq")),
        };
        // A request whose CSeq method differs from its own method is broken (RFC 4475
        // 3.1.2.x "mismatch01"); trusting either would misfile the transaction.
        if let StartLine::Request { method, .. } = &start {
            if *method != cseq.1 {
                return Err(SipError::Header("CSeq"));
            }
        }
        let (from_user, from_tag) = name_addr_header(&map, &raw, Name::FROM, "From")?;
        let (to_user, to_tag) = name_addr_header(&map, &raw, Name::TO, "To")?;
        let pai_user = first_value(&raw, "P-Asserted-Identity")
            .and_then(|v| split_name_addr(v).ok())
            .and_then(|(uri, _)| uri_user(uri));
        let ruri_user = match &start {
            StartLine::Request { uri, .. } => uri_user(uri),
            StartLine::Response { .. } => None,
        };

        let (vias, top_branch) = vias(&raw);

        let content_type = first_value(&raw, "Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let contact = first_value(&raw, "Contact")
            .and_then(|v| split_name_addr(v).ok())
            .map(|(uri, _)| uri.to_string());

        let body = cut_body(&raw, body)?;

        Ok(SipMessage {
            start,
            call_id,
            from_user,
            from_tag,
            to_user,
            to_tag,
            ruri_user,
            pai_user,
            cseq,
            vias,
            top_branch,
            content_type,
            headers: raw,
            body: Bytes::copy_from_slice(body),
            contact,
        })
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
    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    /// Value of the first header of that name (case-insensitive, compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_value(&self.headers, name)
    }
    /// Values of every header of that name, in order; values of one comma-separated line
    /// are not split.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as SDP: the whole body if Content-Type is application/sdp (or absent), the
    /// application/sdp part of a multipart body (carriers attach ISUP or XML next to the
    /// SDP), else None. Never an empty slice.
    pub fn sdp_body(&self) -> Option<&[u8]> {
        let body = match self.content_type.as_deref() {
            None | Some("application/sdp") => &self.body[..],
            Some(ct) if ct.starts_with("multipart/") => {
                multipart_sdp(self.header("Content-Type")?, &self.body)?
            }
            Some(_) => return None,
        };
        (!body.is_empty()).then_some(body)
    }
}


/// User part of a URI (`sip:user@host`, `tel:number`), percent-decoded.
pub fn uri_user_of(uri: &str) -> Option<String> {
    uri_user(uri)
}
