//! Conference ids and the recording Request-URI
//! `sip:msml=<conf-id>@<resource-manager>;dn=<DN>;record`, built byte-exact and parsed back.
//!
//! Character rules (RFC 3261 section 25.1), chosen so the text survives every place it lands:
//! - a conf-id is also a file stem and part of MSML targets (`conf:ID/dialog:record`), so it is
//!   *rejected* unless it is 1..=64 of `A-Z a-z 0-9 - _ .` and does not start with `.`;
//! - a DN comes from captured SIP or CTI and may hold anything (`#`, spaces, `;`), so it is
//!   *escaped*: every byte outside RFC 3261 `unreserved` and `+` becomes `%HH` (upper-case hex),
//!   and the parser unescapes it. An empty DN is rejected.
//! - the resource manager is `host[:port]` as configured; it is rejected if it is empty or holds
//!   a character that would end the host part (`; ? @ < > " /`, whitespace, controls).

use std::fmt;

/// Why a conf-id, DN, host or Request-URI is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    /// The conf-id holds a character outside `A-Z a-z 0-9 - _ .`, starts with `.`, is empty,
    /// or is longer than 64 characters.
    #[error("conf-id {0:?} is not usable: use 1 to 64 of A-Z a-z 0-9 - _ . (not starting with .)")]
    ConfId(String),
    /// The DN is empty.
    #[error("the DN to record is empty")]
    EmptyDn,
    /// The resource manager host[:port] is empty or holds a character that ends a host part.
    #[error("resource manager {0:?} is not a host[:port]")]
    Host(String),
    /// The text is not a recording Request-URI; the message says which part is wrong.
    #[error("not a recording Request-URI ({0}): expected sip:msml=<conf-id>@<host[:port]>;dn=<DN>;record")]
    Syntax(&'static str),
    /// A `%` escape in the DN is not followed by two hex digits or does not decode to UTF-8.
    #[error("bad %-escape in dn parameter {0:?}")]
    Escape(String),
}

/// Longest conf-id accepted: well inside file-name and SIP-header limits.
const MAX_CONF_ID_LEN: usize = 64;

/// A recording session's conference id: unique per session, safe in a SIP URI user part, an
/// MSML target and a file name (see the module docs for the rules).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConfId(String);

impl ConfId {
    /// Checks and wraps a conf-id given by a caller (for example a CTI client).
    pub fn new(id: impl Into<String>) -> Result<ConfId, UriError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_CONF_ID_LEN
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(ConfId(id))
        } else {
            Err(UriError::ConfId(id))
        }
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes unique conf-ids, deterministically: `<prefix>-<counter as 8+ hex digits>`.
///
/// The prefix is the caller's (sans-IO: no clock or pid read here); an application that writes
/// into a directory shared across runs should put something per-process in it, e.g.
/// `format!("callrec-{:x}", start_secs)`.
#[derive(Debug, Clone)]
pub struct ConfIdGenerator {
    prefix: String,
    next: u64,
}

impl ConfIdGenerator {
    /// A generator whose ids start with `prefix-`. The prefix must itself be a valid conf-id
    /// no longer than 40 characters (so prefix + counter stays within 64).
    pub fn new(prefix: impl Into<String>) -> Result<ConfIdGenerator, UriError> {
        let prefix = prefix.into();
        if prefix.len() > 40 {
            return Err(UriError::ConfId(prefix));
        }
        let prefix = ConfId::new(prefix)?.0;
        Ok(ConfIdGenerator { prefix, next: 1 })
    }
    /// The next id: `<prefix>-00000001`, `<prefix>-00000002`, ...
    pub fn next_id(&mut self) -> ConfId {
        let id = format!("{}-{:08x}", self.prefix, self.next);
        self.next = self.next.wrapping_add(1);
        // A valid prefix of <= 40 chars + '-' + <= 16 hex digits is always a valid conf-id.
        ConfId(id)
    }
}

/// The Request-URI of a recording INVITE.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestUri {
    /// The session's conf-id.
    pub conf_id: ConfId,
    /// The resource manager, `host[:port]`, as configured.
    pub resource_manager: String,
    /// The recorded endpoint's DN (unescaped).
    pub dn: String,
    /// Whether the `record` flag parameter is present.
    pub record: bool,
}

impl RequestUri {
    /// A recording URI (`record` flag set) after checking the host and DN.
    pub fn recording(
        conf_id: ConfId,
        resource_manager: impl Into<String>,
        dn: impl Into<String>,
    ) -> Result<RequestUri, UriError> {
        let resource_manager = resource_manager.into();
        check_host(&resource_manager)?;
        let dn = dn.into();
        if dn.is_empty() {
            return Err(UriError::EmptyDn);
        }
        Ok(RequestUri {
            conf_id,
            resource_manager,
            dn,
            record: true,
        })
    }

    /// Parses `sip:msml=<conf-id>@<host[:port]>;dn=<DN>[;record]`. The scheme and parameter
    /// names are matched case-insensitively; unknown parameters are ignored; a `?headers` part
    /// ends the parameters.
    pub fn parse(text: &str) -> Result<RequestUri, UriError> {
        let text = text.trim();
        let rest = strip_prefix_ci(text, "sip:").ok_or(UriError::Syntax("scheme is not sip:"))?;
        let (user, rest) = rest
            .split_once('@')
            .ok_or(UriError::Syntax("no @ after the user part"))?;
        let conf = strip_prefix_ci(user, "msml=")
            .ok_or(UriError::Syntax("user part is not msml=<conf-id>"))?;
        let conf_id = ConfId::new(conf)?;
        let rest = rest.split('?').next().unwrap_or(rest);
        let mut parts = rest.split(';');
        let host = parts.next().unwrap_or("");
        check_host(host)?;
        let mut dn = None;
        let mut record = false;
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (param, None),
            };
            if name.eq_ignore_ascii_case("dn") {
                dn = Some(unescape(value.unwrap_or(""))?);
            } else if name.eq_ignore_ascii_case("record") {
                record = true;
            }
        }
        let dn = dn.ok_or(UriError::Syntax("no dn parameter"))?;
        if dn.is_empty() {
            return Err(UriError::EmptyDn);
        }
        Ok(RequestUri {
            conf_id,
            resource_manager: host.to_string(),
            dn,
            record,
        })
    }
}

impl fmt::Display for RequestUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sip:msml={}@{};dn=", self.conf_id, self.resource_manager)?;
        write_escaped(f, &self.dn)?;
        if self.record {
            f.write_str(";record")?;
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn check_host(host: &str) -> Result<(), UriError> {
    let bad = host.is_empty()
        || host.bytes().any(|b| {
            b.is_ascii_whitespace()
                || b.is_ascii_control()
                || b >= 0x80
                || b";?@<>\"/,".contains(&b)
        });
    if bad {
        Err(UriError::Host(host.to_string()))
    } else {
        Ok(())
    }
}

/// RFC 3261 `unreserved` (alphanum / mark) plus `+`, which every DN format uses and which is a
/// legal `paramchar` (param-unreserved).
fn dn_byte_is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b)
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for b in s.bytes() {
        if dn_byte_is_plain(b) {
            fmt::Write::write_char(f, b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

pub(crate) fn unescape(s: &str) -> Result<String, UriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| UriError::Escape(s.to_string()))?;
            // Both checked as hex digits above: from_str_radix alone would take "+1".
            let v = u8::from_str_radix(hex, 16).map_err(|_| UriError::Escape(s.to_string()))?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::Escape(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(s: &str) -> ConfId {
        ConfId::new(s).unwrap()
    }

    #[test]
    fn builds_the_seed_uri_byte_exact() {
        let uri = RequestUri::recording(conf("callrec-00000001"), "10.0.0.5:5070", "2001").unwrap();
        assert_eq!(
            uri.to_string(),
            "sip:msml=callrec-00000001@10.0.0.5:5070;dn=2001;record"
        );
        let uri = RequestUri::recording(conf("abc"), "rm.example.com", "+14155550100").unwrap();
        assert_eq!(
            uri.to_string(),
            "sip:msml=abc@rm.example.com;dn=+14155550100;record"
        );
        let uri = RequestUri::recording(conf("a.b_c-d"), "[2001:db8::1]:5060", "7000").unwrap();
        assert_eq!(
            uri.to_string(),
            "sip:msml=a.b_c-d@[2001:db8::1]:5060;dn=7000;record"
        );
    }

    #[test]
    fn parses_back_every_part() {
        let uri =
            RequestUri::parse("sip:msml=callrec-0000000a@127.0.0.1:5070;dn=2001;record").unwrap();
        assert_eq!(uri.conf_id.as_str(), "callrec-0000000a");
        assert_eq!(uri.resource_manager, "127.0.0.1:5070");
        assert_eq!(uri.dn, "2001");
        assert!(uri.record);
        let uri = RequestUri::parse("SIP:msml=x@[::1];DN=42").unwrap();
        assert_eq!(uri.resource_manager, "[::1]");
        assert_eq!(uri.dn, "42");
        assert!(!uri.record);
        // unknown parameters and headers are ignored
        let uri = RequestUri::parse("sip:msml=x@h;transport=udp;record;dn=5?Subject=hi").unwrap();
        assert_eq!((uri.dn.as_str(), uri.record), ("5", true));
    }

    #[test]
    fn dn_is_escaped_and_round_trips() {
        let dn = "*77#1 2;x@y%";
        let uri = RequestUri::recording(conf("c1"), "rm", dn).unwrap();
        let text = uri.to_string();
        assert_eq!(text, "sip:msml=c1@rm;dn=*77%231%202%3Bx%40y%25;record");
        assert_eq!(RequestUri::parse(&text).unwrap(), uri);
        let uri = RequestUri::recording(conf("c1"), "rm", "Anrufbeantworter-ü").unwrap();
        assert_eq!(
            uri.to_string(),
            "sip:msml=c1@rm;dn=Anrufbeantworter-%C3%BC;record"
        );
        assert_eq!(
            RequestUri::parse(&uri.to_string()).unwrap().dn,
            "Anrufbeantworter-ü"
        );
    }

    #[test]
    fn unsafe_conf_ids_and_hosts_are_rejected() {
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a b",
            "a@b",
            "a;b",
            "conf:1",
            "ü",
            &"x".repeat(65),
        ] {
            assert_eq!(
                ConfId::new(bad),
                Err(UriError::ConfId(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(ConfId::new("x".repeat(64)).is_ok());
        for bad in ["", "a;b", "a b", "a@b", "a/b"] {
            assert_eq!(
                RequestUri::recording(conf("c"), bad, "1"),
                Err(UriError::Host(bad.to_string()))
            );
        }
        assert_eq!(
            RequestUri::recording(conf("c"), "rm", ""),
            Err(UriError::EmptyDn)
        );
    }

    #[test]
    fn malformed_uris_are_errors() {
        let cases = [
            "tel:+1234",
            "sip:msml=c@",
            "sip:c@rm;dn=1",
            "sip:msml=c;dn=1",
            "sip:msml=c@rm;record",
            "sip:msml=c@rm;dn=;record",
            "sip:msml=c@rm;dn=%G1",
            "sip:msml=c@rm;dn=%2",
            "sip:msml=c@rm;dn=%FF",
            "sip:msml=../x@rm;dn=1",
        ];
        for c in cases {
            assert!(RequestUri::parse(c).is_err(), "{c}");
        }
    }

    #[test]
    fn escapes_must_be_two_hex_digits() {
        // "%+1" was read as 0x01: from_str_radix accepts a sign.
        for bad in ["%+1", "%-1", "%1", "%", "%g0", "%+F"] {
            assert!(unescape(bad).is_err(), "{bad}");
            let text = format!("sip:msml=c1@rm;dn={bad};record");
            assert!(RequestUri::parse(&text).is_err(), "{text}");
        }
        assert_eq!(unescape("20%2B1").unwrap(), "20+1");
    }

    #[test]
    fn generator_is_deterministic_and_unique() {
        let mut g = ConfIdGenerator::new("callrec-5f00").unwrap();
        assert_eq!(g.next_id().as_str(), "callrec-5f00-00000001");
        assert_eq!(g.next_id().as_str(), "callrec-5f00-00000002");
        for _ in 0..20 {
            g.next_id();
        }
        assert_eq!(g.next_id().as_str(), "callrec-5f00-00000017");
        assert!(ConfIdGenerator::new("bad prefix").is_err());
        assert!(ConfIdGenerator::new("x".repeat(41)).is_err());
    }
}
