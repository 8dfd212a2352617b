//! Reading one CTI request line: bytes to a `RequestLine`, or the `EventError` the server
//! answers by itself (malformed JSON, unknown request, missing fields, bad UTF-8).

use super::protocol::{error_code, Event, RequestLine};
use serde_json::Value;

/// The longest request line accepted, in bytes, without its line end.
pub const MAX_LINE: usize = 64 * 1024;

/// Every request name the protocol knows (design section 3 plus callrec's `QueryCalls`).
const REQUESTS: [&str; 7] =
    ["RegisterAddress", "UnregisterAddress", "AgentLogin", "AgentLogout", "RouteCall", "PrivateService", "QueryCalls"];

/// Parses one line (line end already removed; a trailing `\r` is tolerated). `Ok(None)` for a
/// blank line, which the protocol ignores.
pub fn parse_line(bytes: &[u8]) -> Result<Option<RequestLine>, Event> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        bad(None, format!("the line is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    // Through `Value` first so that the error can echo a readable ReferenceID and name what
    // is wrong more precisely than serde's tagged-enum messages do.
    let value: Value = serde_json::from_str(text).map_err(|e| bad(None, format!("the line is not valid JSON ({e})")))?;
    let Value::Object(map) = &value else {
        return Err(bad(None, "the line is not a JSON object".to_string()));
    };
    let reference_id = match map.get("ReferenceID") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(id) => Some(id),
            None => return Err(bad(None, format!("ReferenceID must be an integer, got {v}"))),
        },
    };
    let name = match map.get("request") {
        None => return Err(bad(reference_id, "the object has no \"request\" field naming the request".to_string())),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(bad(reference_id, format!("\"request\" must be a string, got {other}"))),
    };
    if !REQUESTS.contains(&name) {
        return Err(bad(reference_id, format!("unknown request \"{name}\"; known: {}", REQUESTS.join(", "))));
    }
    let name = name.to_string();
    serde_json::from_value::<RequestLine>(value)
        .map(Some)
        .map_err(|e| bad(reference_id, format!("bad {name} request: {e}")))
}

/// The `EventError` for a line longer than `MAX_LINE`.
pub fn too_long() -> Event {
    Event::EventError {
        reference_id: None,
        error_code: error_code::LINE_TOO_LONG,
        error_message: format!("request line longer than {MAX_LINE} bytes; closing the connection"),
    }
}

/// The `EventError` for a client over the server's limit.
pub fn too_many_clients(max_clients: u64) -> Event {
    Event::EventError {
        reference_id: None,
        error_code: error_code::TOO_MANY_CLIENTS,
        error_message: format!("the CTI server already serves {max_clients} clients; try again later"),
    }
}

fn bad(reference_id: Option<i64>, error_message: String) -> Event {
    Event::EventError { reference_id, error_code: error_code::BAD_REQUEST, error_message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cti::protocol::Request;

    fn err(line: &[u8]) -> (Option<i64>, u32, String) {
        match parse_line(line) {
            Err(Event::EventError { reference_id, error_code, error_message }) => (reference_id, error_code, error_message),
            other => panic!("expected an error for {:?}, got {other:?}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn good_lines_with_lf_or_crlf() {
        let lf = br#"{"request":"RegisterAddress","ReferenceID":7,"ThisDN":"2001"}"#.to_vec();
        let mut crlf = lf.clone();
        crlf.push(b'\r');
        for line in [lf, crlf] {
            let line = line.as_slice();
            let r = parse_line(line).unwrap().unwrap();
            assert_eq!(r.reference_id, Some(7));
            assert_eq!(r.request, Request::RegisterAddress { this_dn: "2001".into() });
        }
        let r = parse_line(b"{\"request\":\"QueryCalls\",\"ReferenceID\":1}\r").unwrap().unwrap();
        assert_eq!(r.request, Request::QueryCalls {});
        let r = parse_line(b"{\"request\":\"AgentLogout\",\"ThisDN\":\"2001\"}").unwrap().unwrap();
        assert_eq!(r.reference_id, None);
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert_eq!(parse_line(b"").unwrap(), None);
        assert_eq!(parse_line(b"\r").unwrap(), None);
        assert_eq!(parse_line(b"  \t ").unwrap(), None);
    }

    #[test]
    fn each_fault_has_its_own_sentence() {
        let (id, code, msg) = err(b"not json");
        assert_eq!((id, code), (None, error_code::BAD_REQUEST));
        assert!(msg.starts_with("the line is not valid JSON"), "{msg}");

        let (_, _, msg) = err(b"[1,2]");
        assert_eq!(msg, "the line is not a JSON object");

        let (id, _, msg) = err(br#"{"ReferenceID": 4, "ThisDN": "2001"}"#);
        assert_eq!(id, Some(4));
        assert!(msg.contains("no \"request\""), "{msg}");

        let (id, _, msg) = err(br#"{"request": "Nope", "ReferenceID": 5}"#);
        assert_eq!(id, Some(5));
        assert!(msg.starts_with("unknown request \"Nope\""), "{msg}");

        let (id, _, msg) = err(br#"{"request": "RegisterAddress", "ReferenceID": 6}"#);
        assert_eq!(id, Some(6));
        assert!(msg.starts_with("bad RegisterAddress request") && msg.contains("ThisDN"), "{msg}");

        let (id, _, msg) = err(br#"{"request": "PrivateService", "ReferenceID": 8, "PrivateMsgID": "x", "ThisDN": "1", "ConnectionID": "c"}"#);
        assert_eq!(id, Some(8));
        assert!(msg.starts_with("bad PrivateService request"), "{msg}");

        let (id, _, msg) = err(br#"{"request": "RegisterAddress", "ReferenceID": "one", "ThisDN": "1"}"#);
        assert_eq!(id, None);
        assert!(msg.starts_with("ReferenceID must be an integer"), "{msg}");

        let (_, _, msg) = err(br#"{"request": 5}"#);
        assert!(msg.starts_with("\"request\" must be a string"), "{msg}");

        let (id, code, msg) = err(b"{\"request\": \"Reg\xffister\"}");
        assert_eq!((id, code), (None, error_code::BAD_REQUEST));
        assert!(msg.contains("UTF-8"), "{msg}");
    }

    #[test]
    fn too_long_names_the_limit() {
        match too_long() {
            Event::EventError { error_code, error_message, .. } => {
                assert_eq!(error_code, error_code::LINE_TOO_LONG);
                assert!(error_message.contains("65536"));
            }
            other => panic!("{other:?}"),
        }
    }
}
