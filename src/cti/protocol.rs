//! The CTI wire protocol (design section 3): T-Library style requests and events, one JSON
//! object per line. Field names are the wire's own (`ThisDN`, `ConnectionID`, ...).
//!
//! Requests name themselves in `"request"` and carry a client-chosen integer `ReferenceID`;
//! events name themselves in `"event"` and echo the `ReferenceID` of the request they answer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key-value pairs of a request's `Extensions` or `Reasons`. Values are kept as JSON so a
/// number or a string both pass; `value_text` gives the text form.
pub type KeyValues = BTreeMap<String, serde_json::Value>;

/// The text form of a key-value value (strings without quotes).
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A request from a CTI client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "request")]
pub enum Request {
    /// Take events for a DN, and the right to act on its calls.
    RegisterAddress {
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
    },
    /// Stop taking events for a DN.
    UnregisterAddress {
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
    },
    /// An agent logs in on a DN (Agent Login trigger).
    AgentLogin {
        /// The DN the agent sits at.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The agent's id.
        #[serde(rename = "AgentID")]
        agent_id: String,
    },
    /// The agent on a DN logs out.
    AgentLogout {
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
    },
    /// A routing point routes a call to a DN, optionally asking for recording
    /// (`Extensions.record` = `source` | `destination` | `disable_destination`).
    RouteCall {
        /// The routing point.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The routing destination (the agent).
        #[serde(rename = "OtherDN")]
        other_dn: String,
        /// Options, `record` among them.
        #[serde(rename = "Extensions", default)]
        extensions: KeyValues,
    },
    /// Recording control: start, stop, pause, resume by `PrivateMsgID`.
    PrivateService {
        /// Which operation (3013 start, 3014 stop, 3015 pause, 3016 resume by default).
        #[serde(rename = "PrivateMsgID")]
        private_msg_id: i64,
        /// The DN acting; must be registered by this client and a party of the call.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// Key-values that travel into the recording session (`id`, `dest`, ...).
        #[serde(rename = "Extensions", default)]
        extensions: KeyValues,
        /// Reasons: accepted and logged.
        #[serde(rename = "Reasons", default)]
        reasons: KeyValues,
    },
    /// callrec's own: list live calls (for `callrec ctl calls`).
    QueryCalls {},
}

/// A request line: the request and its `ReferenceID`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RequestLine {
    /// Client-chosen id echoed by the answer.
    #[serde(rename = "ReferenceID", default)]
    pub reference_id: Option<i64>,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// One live call as `EventCalls` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CallInfo {
    /// The call's ConnectionID.
    #[serde(rename = "ConnectionID")]
    pub connection_id: String,
    /// DNs of its parties.
    #[serde(rename = "DNs")]
    pub dns: Vec<String>,
    /// `ringing` or `established`.
    #[serde(rename = "State")]
    pub state: String,
    /// Recording state: `none`, `recording`, `paused`.
    #[serde(rename = "Recording")]
    pub recording: String,
}

/// An event to a CTI client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    /// Answer to RegisterAddress.
    EventRegistered {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
    },
    /// Answer to UnregisterAddress.
    EventUnregistered {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
    },
    /// Answer to AgentLogin.
    EventAgentLogin {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The agent.
        #[serde(rename = "AgentID")]
        agent_id: String,
    },
    /// Answer to AgentLogout.
    EventAgentLogout {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The agent that was logged in.
        #[serde(rename = "AgentID")]
        agent_id: String,
    },
    /// A call rings at a registered DN.
    EventRinging {
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The registered DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The other party.
        #[serde(rename = "OtherDN")]
        other_dn: String,
    },
    /// A call is answered.
    EventEstablished {
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The registered DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The other party.
        #[serde(rename = "OtherDN")]
        other_dn: String,
    },
    /// A call ends for a DN.
    EventReleased {
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The registered DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The other party.
        #[serde(rename = "OtherDN")]
        other_dn: String,
    },
    /// Answer to RouteCall.
    EventRouteUsed {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The routing point.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The destination.
        #[serde(rename = "OtherDN")]
        other_dn: String,
    },
    /// Answer to PrivateService: the recording's state after it.
    EventPrivateInfo {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The call.
        #[serde(rename = "ConnectionID")]
        connection_id: String,
        /// The DN.
        #[serde(rename = "ThisDN")]
        this_dn: String,
        /// The PrivateMsgID answered.
        #[serde(rename = "PrivateMsgID")]
        private_msg_id: i64,
        /// `recording`, `paused` or `stopped`.
        #[serde(rename = "State")]
        state: String,
        /// The recording session's conf-id (its file name stem).
        #[serde(rename = "RecordingID", skip_serializing_if = "Option::is_none", default)]
        recording_id: Option<String>,
    },
    /// Answer to QueryCalls.
    EventCalls {
        /// Echoed.
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// The live calls.
        #[serde(rename = "Calls")]
        calls: Vec<CallInfo>,
    },
    /// A request failed; nothing changed.
    EventError {
        /// Echoed (absent when the line could not be read at all).
        #[serde(rename = "ReferenceID", skip_serializing_if = "Option::is_none", default)]
        reference_id: Option<i64>,
        /// T-Library style error code.
        #[serde(rename = "ErrorCode")]
        error_code: u32,
        /// One sentence.
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

/// Error codes of `EventError`.
pub mod error_code {
    /// The line is not JSON, not an object, or not a known request.
    pub const BAD_REQUEST: u32 = 1100;
    /// A line longer than the server accepts.
    pub const LINE_TOO_LONG: u32 = 1101;
    /// The server already serves as many clients as it accepts; the connection is closed.
    pub const TOO_MANY_CLIENTS: u32 = 1102;
    /// The DN is not registered by this client.
    pub const DN_NOT_REGISTERED: u32 = 1141;
    /// No call with that ConnectionID.
    pub const UNKNOWN_CONNECTION: u32 = 1142;
    /// The DN is not a party of the call.
    pub const DN_NOT_IN_CALL: u32 = 1143;
    /// Unknown PrivateMsgID.
    pub const UNKNOWN_PRIVATE_MSG: u32 = 1144;
    /// The request does not fit the recording's state (pause when not recording, ...).
    pub const WRONG_STATE: u32 = 1145;
    /// A recording session id (`Extensions.id`) already in use, or otherwise invalid
    /// Extensions (`dest`, `record`).
    pub const BAD_EXTENSIONS: u32 = 1146;
    /// The recording flow refused (RM/MCP answered an error).
    pub const RECORDING_FAILED: u32 = 1150;
    /// Agent login problems (already logged in elsewhere, not logged in).
    pub const AGENT: u32 = 1160;
}

impl Event {
    /// One JSON line (with the newline).
    pub fn to_line(&self) -> String {
        // Serializing these types cannot fail: string keys, no maps with non-string keys.
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples_parse_and_serialize() {
        let r: RequestLine =
            serde_json::from_str(r#"{"request": "RegisterAddress", "ReferenceID": 1, "ThisDN": "2001"}"#).unwrap();
        assert_eq!(r, RequestLine { reference_id: Some(1), request: Request::RegisterAddress { this_dn: "2001".into() } });
        let r: RequestLine = serde_json::from_str(
            r#"{"request": "PrivateService", "ReferenceID": 2, "PrivateMsgID": 3013, "ThisDN": "2001",
                "ConnectionID": "00a1b2c3d4e5f607", "Extensions": {"id": "rec-1"}, "Reasons": {}}"#,
        )
        .unwrap();
        match r.request {
            Request::PrivateService { private_msg_id, extensions, .. } => {
                assert_eq!(private_msg_id, 3013);
                assert_eq!(value_text(&extensions["id"]), "rec-1");
            }
            other => panic!("{other:?}"),
        }
        let e = Event::EventError { reference_id: Some(3), error_code: 1141, error_message: "DN 2001 is not registered by this client".into() };
        assert_eq!(
            e.to_line(),
            "{\"event\":\"EventError\",\"ReferenceID\":3,\"ErrorCode\":1141,\"ErrorMessage\":\"DN 2001 is not registered by this client\"}\n"
        );
        let e = Event::EventRinging { connection_id: "00a1b2c3d4e5f607".into(), this_dn: "2001".into(), other_dn: "5551234".into() };
        assert_eq!(e.to_line(), "{\"event\":\"EventRinging\",\"ConnectionID\":\"00a1b2c3d4e5f607\",\"ThisDN\":\"2001\",\"OtherDN\":\"5551234\"}\n");
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for line in ["", "{}", "[]", "{\"request\": \"Nope\"}", "{\"request\": \"RegisterAddress\"}", "not json", "{\"request\": 5}"] {
            assert!(serde_json::from_str::<RequestLine>(line).is_err(), "{line}");
        }
    }
}
