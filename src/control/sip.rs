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
#[cfg(test)]
mod tests;

pub use build::{response_to, SipBuilder};

use bytes::Bytes;
use ezk_sip_types::header::typed::{CSeq, CallID, FromTo};
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Name};

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

/// The first application/sdp part of a multipart body (RFC 2046 5.1), by hand: it is a
/// boundary search and a header check, not worth a MIME crate.
fn multipart_sdp<'a>(content_type: &str, body: &'a [u8]) -> Option<&'a [u8]> {
    let boundary = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))?;
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let starts: Vec<usize> = (0..body.len().saturating_sub(delim.len() - 1))
        .filter(|&i| body[i..].starts_with(delim) && (i == 0 || body[i - 1] == b'\n'))
        .collect();
    for w in starts.windows(2) {
        let part = &body[w[0] + delim.len()..w[1]];
        // Drop the rest of the delimiter line, and the CRLF that belongs to the next delimiter.
        let nl = part.iter().position(|&b| b == b'\n')?;
        let part = &part[nl + 1..];
        let part = part.strip_suffix(b"\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r").unwrap_or(part);
        let (head, content) = split_head(part);
        let head = String::from_utf8_lossy(head);
        let is_sdp = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                same_name(n.trim(), "Content-Type")
                    && v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/sdp")
            })
        });
        if is_sdp {
            return Some(content);
        }
    }
    None
}

/// Cheap check for the packet classifier: does this UDP payload start like a SIP message?
/// A status line (`SIP/2.0 `) or `METHOD scheme:... SIP/2.0` on the first line.
pub fn looks_like_sip(payload: &[u8]) -> bool {
    if payload.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let line_end = payload
        .iter()
        .take(2048)
        .position(|&b| b == b'\n')
        .unwrap_or(payload.len().min(2048));
    let line = &payload[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (method, rest) = (&line[..sp], &line[sp + 1..]);
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return false;
    }
    let scheme_end = rest.iter().position(|&b| b == b':');
    let has_scheme = matches!(scheme_end, Some(n) if n > 0
        && rest[..n].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')));
    has_scheme && line.ends_with(b" SIP/2.0")
}

/// RFC 3261 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Splits the datagram at the first empty line. A datagram without one is all head (some
/// senders drop the final CRLF when there is no body).
fn split_head(payload: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < payload.len() {
        if payload[i] == b'\n' {
            let rest = &payload[i + 1..];
            if rest.starts_with(b"\r\n") {
                return (&payload[..i + 1], &rest[2..]);
            }
            if rest.starts_with(b"\n") {
                return (&payload[..i + 1], &rest[1..]);
            }
        }
        i += 1;
    }
    (payload, &[])
}

/// Head lines with folded continuation lines joined by one space. Invalid UTF-8 (Latin-1
/// display names are common) is replaced rather than rejected.
fn unfold(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(line.trim_start_matches([' ', '\t']));
                continue;
            }
        }
        if !line.is_empty() {
            lines.push(line.to_string());
        }
    }
    // Trailing whitespace left by the join.
    for l in &mut lines {
        let t = l.trim_end_matches([' ', '\t']).len();
        l.truncate(t);
    }
    lines
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    let bad = || SipError::StartLine(line.chars().take(80).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let mut parts = line.split([' ', '\t']).filter(|s| !s.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if version != "SIP/2.0" || !method.bytes().all(is_token) || !uri.contains(':') {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

/// Every Via value (top first, as written) and the top Via's branch, by hand: ezk's Via
/// decoder accepts a valid prefix of a malformed value and silently drops the rest (e.g.
/// `SIP/2.0/UDP bad host;branch=x` becomes host `bad` without a branch), so its result
/// cannot be trusted for the one parameter transaction matching depends on.
fn vias(raw: &[(String, String)]) -> (Vec<String>, Option<String>) {
    let vias: Vec<String> = raw
        .iter()
        .filter(|(n, _)| same_name(n, "Via"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    let branch = vias.first().and_then(|v| {
        v.split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
            .map(|(_, b)| b.trim().to_string())
            .filter(|b| !b.is_empty())
    });
    (vias, branch)
}

/// Header names equal, case-insensitively, compact forms included. A local table rather
/// than ezk's `Name`, whose lookup needs an owned string per comparison.
fn same_name(written: &str, wanted: &str) -> bool {
    expand_compact(written).eq_ignore_ascii_case(expand_compact(wanted))
}

/// The long form of an RFC 3261 / 3265 / 3515 / 4028 compact header name.
fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        b'b' => "Referred-By",
        _ => name,
    }
}

fn first_value<'a>(raw: &'a [(String, String)], name: &str) -> Option<&'a str> {
    raw.iter()
        .find(|(n, _)| same_name(n, name))
        .map(|(_, v)| v.as_str())
}

/// User part and tag of From or To: ezk's typed `FromTo` for SIP URIs, the hand-written
/// split for other schemes (`tel:`).
#[allow(clippy::type_complexity)]
fn name_addr_header(
    map: &Headers,
    raw: &[(String, String)],
    name: Name,
    what: &'static str,
) -> Result<(Option<String>, Option<String>), SipError> {
    if let Some(Ok(ft)) = map.try_get::<FromTo>(name) {
        let user = match &ft.uri.uri.user_part {
            SipUriUserPart::Empty => None,
            SipUriUserPart::User(u) => Some(u.to_string()),
            SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
        };
        return Ok((user, ft.tag.map(|t| t.to_string())));
    }
    let value = first_value(raw, what).ok_or(SipError::Header(what))?;
    let (uri, params) = split_name_addr(value).map_err(|_| SipError::Header(what))?;
    let tag = params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim().to_string());
    Ok((uri_user(uri), tag))
}

/// Splits a name-addr or addr-spec header value into the URI and the header parameters
/// after it: `"Name" <uri>;p=1`, `Name <uri>`, `<uri>`, `uri;p=1`.
pub(crate) fn split_name_addr(value: &str) -> Result<(&str, &str), ()> {
    let v = value.trim();
    // A quoted display name may contain '<' and escaped quotes: skip it first.
    let mut i = 0;
    if v.starts_with('"') {
        let b = v.as_bytes();
        i = 1;
        loop {
            match b.get(i) {
                None => return Err(()),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    if let Some(lt) = v[i..].find('<') {
        let open = i + lt + 1;
        let close = v[open..].find('>').ok_or(())? + open;
        return Ok((v[open..close].trim(), &v[close + 1..]));
    }
    if i > 0 {
        return Err(());
    }
    // addr-spec: parameters after ';' belong to the header, not the URI (RFC 3261 20.10).
    match v.find(';') {
        Some(semi) => Ok((&v[..semi], &v[semi..])),
        None => Ok((v, "")),
    }
}

/// User part of a URI: `sip:user@host` (percent-decoded), `tel:+123;phone-context=x` (the
/// number). None for URIs without a user part.
pub(crate) fn uri_user(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or("").trim();
        return (!number.is_empty()).then(|| number.to_string());
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        if let Ok(parsed) = uri.parse::<ezk_sip_types::uri::SipUri>() {
            return match parsed.user_part {
                SipUriUserPart::Empty => None,
                SipUriUserPart::User(u) => Some(u.to_string()),
                SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
            };
        }
        // ezk rejects some legal user parts (e.g. '?' or '#' escapes); take the text
        // before the last '@' and percent-decode it ourselves.
        let at = rest.rfind('@')?;
        let user = rest[..at].split(':').next().unwrap_or("");
        return (!user.is_empty()).then(|| percent_decode(user));
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body per Content-Length: cut to it, or Truncated if the datagram is shorter.
/// Several Content-Length headers must agree (RFC 4475 "mcl01" has two that do not).
fn cut_body<'a>(raw: &[(String, String)], body: &'a [u8]) -> Result<&'a [u8], SipError> {
    let mut len: Option<usize> = None;
    for (_, v) in raw.iter().filter(|(n, _)| same_name(n, "Content-Length")) {
        let n: usize = v
            .trim()
            .parse()
            .map_err(|_| SipError::Header("Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(SipError::Header("Content-Length"));
        }
        len = Some(n);
    }
    match len {
        None => Ok(body),
        Some(n) if n > body.len() => Err(SipError::Truncated),
        Some(n) => Ok(&body[..n]),
    }
}
