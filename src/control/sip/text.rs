//! The text-level pieces of SIP parsing that ezk-sip-types does not cover or that are
//! cheaper by hand: head/body split, unfolding, the start line, Via, name-addr and URI user
//! parts, header-name matching with compact forms, Content-Length, multipart bodies.

use super::{SipError, StartLine};
use ezk_sip_types::header::typed::FromTo;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Name};

/// The first application/sdp part of a multipart body (RFC 2046 5.1), by hand: it is a
/// boundary search and a header check, not worth a MIME crate.
pub(super) fn multipart_sdp<'a>(content_type: &str, body: &'a [u8]) -> Option<&'a [u8]> {
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

/// RFC 3261 `token` characters.
pub(super) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Splits the datagram at the first empty line. A datagram without one is all head (some
/// senders drop the final CRLF when there is no body).
pub(super) fn split_head(payload: &[u8]) -> (&[u8], &[u8]) {
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
pub(super) fn unfold(head: &[u8]) -> Vec<String> {
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

pub(super) fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
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
pub(super) fn vias(raw: &[(String, String)]) -> (Vec<String>, Option<String>) {
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
pub(super) fn same_name(written: &str, wanted: &str) -> bool {
    expand_compact(written).eq_ignore_ascii_case(expand_compact(wanted))
}

/// The long form of an RFC 3261 / 3265 / 3515 / 4028 compact header name.
pub(super) fn expand_compact(name: &str) -> &str {
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

pub(super) fn first_value<'a>(raw: &'a [(String, String)], name: &str) -> Option<&'a str> {
    raw.iter()
        .find(|(n, _)| same_name(n, name))
        .map(|(_, v)| v.as_str())
}

/// User part and tag of From or To: ezk's typed `FromTo` for SIP URIs, the hand-written
/// split for other schemes (`tel:`).
#[allow(clippy::type_complexity)]
pub(super) fn name_addr_header(
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
pub(super) fn split_name_addr(value: &str) -> Result<(&str, &str), ()> {
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
pub(super) fn uri_user(uri: &str) -> Option<String> {
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

pub(super) fn percent_decode(s: &str) -> String {
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
pub(super) fn cut_body<'a>(raw: &[(String, String)], body: &'a [u8]) -> Result<&'a [u8], SipError> {
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
