//! The control core driven sans-IO: scripted SIP calls and CTI request lines in, the exact
//! CTI events and recording outputs out, in order.

use super::*;
use crate::cti::protocol::{error_code, CallInfo, RequestLine};
use callrec_pipeline::flow::RecordingId;

const A: &str = "192.0.2.10:5060"; // caller side (customer)
const B: &str = "192.0.2.20:5060"; // callee side (agent)
const C1: CtiClient = CtiClient(1);
const C2: CtiClient = CtiClient(2);
const C3: CtiClient = CtiClient(3);

fn t(ms: u64) -> Timestamp {
    Timestamp::from_parts(1_700_000_000, 0).plus_nanos(ms * 1_000_000)
}

/// One scripted call: `caller` at A calls `callee` at B.
struct Call {
    cid: &'static str,
    caller: &'static str,
    callee: &'static str,
    /// Media ports: caller's, callee's.
    ports: (u16, u16),
}

impl Call {
    fn text(&self, start: &str, cseq: &str, to_tag: bool, body: Option<String>) -> Vec<u8> {
        let body = body.unwrap_or_default();
        let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        let tag = if to_tag { ";tag=b1" } else { "" };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-{cid}-{n}\r\nFrom: <sip:{caller}@192.0.2.10>;tag=a1\r\nTo: <sip:{callee}@192.0.2.20>{tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            cid = self.cid,
            n = cseq.replace(' ', "-"),
            caller = self.caller,
            callee = self.callee,
        )
        .into_bytes()
    }
    fn sdp(ip: &str, port: u16) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    }
    fn invite(&self) -> Vec<u8> {
        self.text(&format!("INVITE sip:{}@192.0.2.20 SIP/2.0", self.callee), "1 INVITE", false, Some(Self::sdp("192.0.2.10", self.ports.0)))
    }
    fn ringing(&self) -> Vec<u8> {
        self.text("SIP/2.0 180 Ringing", "1 INVITE", true, None)
    }
    fn ok(&self) -> Vec<u8> {
        self.text("SIP/2.0 200 OK", "1 INVITE", true, Some(Self::sdp("192.0.2.20", self.ports.1)))
    }
    fn ack(&self) -> Vec<u8> {
        self.text(&format!("ACK sip:{}@192.0.2.20 SIP/2.0", self.callee), "1 ACK", true, None)
    }
    fn bye(&self) -> Vec<u8> {
        self.text(&format!("BYE sip:{}@192.0.2.20 SIP/2.0", self.callee), "2 BYE", true, None)
    }
}

const CALL1: Call = Call { cid: "call-1@pbx", caller: "5551234", callee: "2001", ports: (4000, 5000) };
const CALL2: Call = Call { cid: "call-2@pbx", caller: "5559999", callee: "2002", ports: (4010, 5010) };
const CALL3: Call = Call { cid: "call-3@pbx", caller: "5558888", callee: "2003", ports: (4020, 5020) };

/// An output as a line: `cti <client> <json>`, `writer <k> <what>`, `flow <what>`,
/// `trace <from> -> <to>: <first line>`.
fn render(o: &Output) -> String {
    match o {
        Output::Cti { client, event } => format!("cti {} {}", client.0, event.to_line().trim_end()),
        Output::Flow(u) => format!("flow {u:?}"),
        Output::Trace(r) => format!("trace {} -> {}: {}", r.from, r.to, r.text.lines().next().unwrap_or("")),
        Output::Writer { writer, msg } => {
            let what = match msg {
                WriterMsg::Rtp(_) => "rtp".to_string(),
                WriterMsg::Start(s) => format!("start {:?} {} {}", s.id, s.wav_path.display(), s.sidecar_path.display()),
                WriterMsg::Pause { recording, at } => format!("pause {recording:?} {}", at.nanos_since(t(0)) / 1_000_000),
                WriterMsg::Resume { recording, at } => format!("resume {recording:?} {}", at.nanos_since(t(0)) / 1_000_000),
                WriterMsg::Stop { recording, at } => format!("stop {recording:?} {}", at.nanos_since(t(0)) / 1_000_000),
                WriterMsg::Sidecar { recording, key, value } => format!("sidecar {recording:?} {key} {value}"),
                WriterMsg::Stopping { recording, at } => format!("stopping {recording:?} {}", at.nanos_since(t(0)) / 1_000_000),
            };
            format!("writer {writer} {what}")
        }
    }
}

struct H {
    core: ControlCore,
    /// Every output so far, raw.
    raw: Vec<Output>,
}

impl H {
    fn new(toml: &str) -> H {
        let core = ControlCore::for_tests(toml);
        H { core, raw: Vec::new() }
    }
    /// SIP from A to B (`a_to_b`) or back at `ms`; returns the rendered outputs.
    fn sip(&mut self, ms: u64, a_to_b: bool, bytes: &[u8]) -> Vec<String> {
        let (src, dst) = if a_to_b { (A, B) } else { (B, A) };
        self.core.handle_sip(t(ms), src.parse().unwrap(), dst.parse().unwrap(), bytes);
        self.drain()
    }
    fn cti(&mut self, ms: u64, client: CtiClient, json: &str) -> Vec<String> {
        let line: RequestLine = serde_json::from_str(json).unwrap();
        self.core.handle_cti(t(ms), client, line);
        self.drain()
    }
    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(o) = self.core.poll_output() {
            lines.push(render(&o));
            self.raw.push(o);
        }
        lines
    }
    /// INVITE, 180 at +1 s, 200 at +2 s, ACK; all outputs.
    fn establish(&mut self, ms: u64, c: &Call) -> Vec<String> {
        let mut out = self.sip(ms, true, &c.invite());
        out.extend(self.sip(ms + 1000, false, &c.ringing()));
        out.extend(self.sip(ms + 2000, false, &c.ok()));
        out.extend(self.sip(ms + 2000, true, &c.ack()));
        out
    }
    fn conn(&self, c: &Call) -> String {
        self.core.connection_id(c.cid).unwrap().to_string()
    }
    /// The last answer to a client, parsed.
    fn last_event(&self) -> Event {
        self.raw
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Cti { event, .. } => Some(event.clone()),
                _ => None,
            })
            .unwrap()
    }
    fn last_spec(&self) -> &callrec_pipeline::writer::RecordingSpec {
        self.raw
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Writer { msg: WriterMsg::Start(s), .. } => Some(&**s),
                _ => None,
            })
            .unwrap()
    }
    fn last_invite(&self) -> String {
        self.raw
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Trace(r) if r.text.starts_with("INVITE ") && r.to == "127.0.0.1:5070" && r.from == "127.0.0.1:5060" => Some(r.text.clone()),
                _ => None,
            })
            .unwrap()
    }
}

fn ps(id: i64, dn: &str, conn: &str, rid: i64, ext: &str) -> String {
    format!(r#"{{"request":"PrivateService","ReferenceID":{rid},"PrivateMsgID":{id},"ThisDN":"{dn}","ConnectionID":"{conn}","Extensions":{ext},"Reasons":{{"why":"test"}}}}"#)
}

fn error_line(client: u64, rid: i64, code: u32, msg: &str) -> String {
    format!("cti {client} {{\"event\":\"EventError\",\"ReferenceID\":{rid},\"ErrorCode\":{code},\"ErrorMessage\":\"{msg}\"}}")
}

fn only_cti(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.starts_with("cti ")).collect()
}

fn count(lines: &[String], prefix: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn register_and_unregister_answer_and_errors() {
    let mut h = H::new("");
    assert_eq!(
        h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#),
        vec![r#"cti 1 {"event":"EventRegistered","ReferenceID":1,"ThisDN":"2001"}"#]
    );
    // again is fine
    assert_eq!(count(&h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":2,"ThisDN":"2001"}"#), "cti 1 {\"event\":\"EventRegistered\""), 1);
    assert_eq!(
        h.cti(0, C1, r#"{"request":"UnregisterAddress","ReferenceID":3,"ThisDN":"2001"}"#),
        vec![r#"cti 1 {"event":"EventUnregistered","ReferenceID":3,"ThisDN":"2001"}"#]
    );
    assert_eq!(
        h.cti(0, C1, r#"{"request":"UnregisterAddress","ReferenceID":4,"ThisDN":"2001"}"#),
        vec![error_line(1, 4, error_code::DN_NOT_REGISTERED, "DN 2001 is not registered by this client")]
    );
    assert_eq!(
        h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":5,"ThisDN":""}"#),
        vec![error_line(1, 5, error_code::BAD_REQUEST, "ThisDN must not be empty")]
    );
    // no ReferenceID: the answer has none either
    assert_eq!(
        h.cti(0, C2, r#"{"request":"RegisterAddress","ThisDN":"2002"}"#),
        vec![r#"cti 2 {"event":"EventRegistered","ThisDN":"2002"}"#]
    );
}

#[test]
fn call_events_reach_exactly_the_registered_clients() {
    let mut h = H::new("");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    h.cti(0, C2, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"5551234"}"#);
    h.cti(0, C3, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2002"}"#);
    h.cti(0, C2, r#"{"request":"RegisterAddress","ReferenceID":2,"ThisDN":"2001"}"#);
    let out = h.sip(100, true, &CALL1.invite());
    let conn = h.conn(&CALL1);
    assert_eq!(conn.len(), 16);
    assert!(conn.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let ev = |client: u64, kind: &str, this: &str, other: &str| {
        format!(r#"cti {client} {{"event":"{kind}","ConnectionID":"{conn}","ThisDN":"{this}","OtherDN":"{other}"}}"#)
    };
    assert_eq!(out, vec![ev(2, "EventRinging", "5551234", "2001"), ev(1, "EventRinging", "2001", "5551234"), ev(2, "EventRinging", "2001", "5551234")]);
    // 180 changes nothing a client sees
    assert!(h.sip(1000, false, &CALL1.ringing()).is_empty());
    let out = h.sip(2000, false, &CALL1.ok());
    assert_eq!(out, vec![ev(2, "EventEstablished", "5551234", "2001"), ev(1, "EventEstablished", "2001", "5551234"), ev(2, "EventEstablished", "2001", "5551234")]);
    assert!(h.sip(2000, true, &CALL1.ack()).is_empty());
    // the connection id stays the call's for its life
    assert_eq!(h.conn(&CALL1), conn);
    // client 2 goes away: it hears nothing more, the others still do
    h.core.cti_client_gone(C2);
    let out = h.sip(9000, true, &CALL1.bye());
    assert_eq!(out, vec![ev(1, "EventReleased", "2001", "5551234")]);
    assert_eq!(h.core.connection_id(CALL1.cid), None);
    // a second call gets another id; client 3 (2002) hears it, client 2's registrations are gone
    let out = h.sip(10_000, true, &CALL2.invite());
    let conn2 = h.conn(&CALL2);
    assert_ne!(conn2, conn);
    assert_eq!(out, vec![format!(r#"cti 3 {{"event":"EventRinging","ConnectionID":"{conn2}","ThisDN":"2002","OtherDN":"5559999"}}"#)]);
    assert_eq!(
        h.cti(10_000, C2, &ps(3013, "2001", &conn2, 9, "{}")),
        vec![error_line(2, 9, error_code::DN_NOT_REGISTERED, "DN 2001 is not registered by this client")]
    );
}

#[test]
fn connection_ids_are_deterministic_per_run_label() {
    let mut h1 = H::new("");
    let mut h2 = H::new("");
    h1.sip(0, true, &CALL1.invite());
    h2.sip(0, true, &CALL1.invite());
    assert_eq!(h1.conn(&CALL1), h2.conn(&CALL1));
    assert_eq!(h1.conn(&CALL1), ConnectionIds::from_label("callrec").next_id());
}

#[test]
fn private_service_errors_change_nothing() {
    let mut h = H::new("");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    h.sip(0, true, &CALL1.invite());
    let conn = h.conn(&CALL1);
    // ringing: start refused
    assert_eq!(
        only_cti(&h.cti(500, C1, &ps(3013, "2001", &conn, 2, "{}"))),
        vec![&error_line(1, 2, error_code::WRONG_STATE, &format!("cannot start: call {conn} is still ringing; start once it is answered"))]
    );
    h.sip(1000, false, &CALL1.ok());
    h.sip(1000, true, &CALL1.ack());
    h.cti(1000, C2, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2002"}"#);
    let cases: Vec<(CtiClient, String, u32, String)> = vec![
        (C1, ps(4000, "2001", &conn, 3, "{}"), error_code::UNKNOWN_PRIVATE_MSG, "PrivateMsgID 4000 is unknown: start is 3013, stop 3014, pause 3015, resume 3016".into()),
        (C1, ps(3013, "5551234", &conn, 3, "{}"), error_code::DN_NOT_REGISTERED, "DN 5551234 is not registered by this client".into()),
        (C1, ps(3013, "2001", "ffffffffffffffff", 3, "{}"), error_code::UNKNOWN_CONNECTION, "no call with ConnectionID ffffffffffffffff".into()),
        (C2, ps(3013, "2002", &conn, 3, "{}"), error_code::DN_NOT_IN_CALL, format!("DN 2002 is not a party of call {conn}")),
        (C1, ps(3015, "2001", &conn, 3, "{}"), error_code::WRONG_STATE, format!("cannot pause: call {conn} is not being recorded")),
        (C1, ps(3016, "2001", &conn, 3, "{}"), error_code::WRONG_STATE, format!("cannot resume: call {conn} is not being recorded")),
        (C1, ps(3014, "2001", &conn, 3, "{}"), error_code::WRONG_STATE, format!("cannot stop: call {conn} is not being recorded")),
        (C1, ps(3013, "2001", &conn, 3, r#"{"id":"../etc"}"#), error_code::BAD_EXTENSIONS, "Extensions id \\\"../etc\\\" cannot name a recording: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'".into()),
        (C1, ps(3013, "2001", &conn, 3, r#"{"dest":""}"#), error_code::BAD_EXTENSIONS, "Extensions dest must be a directory or a .wav path".into()),
    ];
    for (client, req, code, msg) in cases {
        let out = h.cti(2000, client, &req);
        assert_eq!(out, vec![error_line(client.0, 3, code, &msg)], "{req}");
    }
    assert_eq!(h.core.counters().recordings_started, 0);
    assert_eq!(h.core.roles.active_sessions(), 0);
}

#[test]
fn private_service_start_pause_resume_stop_in_order() {
    let mut h = H::new("");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    let info = |rid: i64, id: i64, state: &str, rec: &str| {
        format!(r#"cti 1 {{"event":"EventPrivateInfo","ReferenceID":{rid},"ConnectionID":"{conn}","ThisDN":"2001","PrivateMsgID":{id},"State":"{state}","RecordingID":"{rec}"}}"#)
    };
    // start at 3 s: the whole INVITE/INFO exchange, the writer Start and flows, then the answer
    let out = h.cti(3000, C1, &ps(3013, "2001", &conn, 2, r#"{"id":"rec-1","customer":42}"#));
    assert_eq!(out.last().unwrap(), &info(2, 3013, "recording", "rec-1"));
    assert_eq!(count(&out, "trace "), 10, "{out:#?}");
    let start = out.iter().position(|l| l.starts_with("writer 0 start")).unwrap();
    assert_eq!(out[start], "writer 0 start RecordingId(1) /rec/rec-1.wav /rec/rec-1.json");
    assert_eq!(count(&out[start..], "flow Install"), 2);
    let spec = h.last_spec();
    assert_eq!(spec.started, t(3000));
    assert_eq!(spec.sidecar["trigger"], "private_service");
    assert_eq!(spec.sidecar["connection_id"], conn.as_str());
    assert_eq!(spec.sidecar["dn"], "2001");
    assert_eq!(spec.sidecar["dns"]["agent"], "2001");
    assert_eq!(spec.sidecar["dns"]["customer"], "5551234");
    assert_eq!(spec.sidecar["extensions"]["id"], "rec-1");
    assert_eq!(spec.sidecar["extensions"]["customer"], "42");
    let invite = h.last_invite();
    assert!(invite.starts_with("INVITE sip:msml=rec-1@127.0.0.1:5070;dn=2001;record SIP/2.0\r\n"), "{invite}");
    assert!(invite.contains("\r\nX-Genesys-id: rec-1\r\n"), "{invite}");
    assert!(invite.contains("\r\nX-Genesys-customer: 42\r\n"), "{invite}");
    assert!(invite.contains(&format!("\r\nX-Callrec-Connection-ID: {conn}\r\n")), "{invite}");
    // wrong order
    assert_eq!(
        h.cti(3500, C1, &ps(3013, "2001", &conn, 3, "{}")),
        vec![error_line(1, 3, error_code::WRONG_STATE, &format!("cannot start: call {conn} is already being recorded (rec-1)"))]
    );
    assert_eq!(
        h.cti(3500, C1, &ps(3016, "2001", &conn, 4, "{}")),
        vec![error_line(1, 4, error_code::WRONG_STATE, "cannot resume: recording rec-1 is not paused")]
    );
    // pause at 5 s, resume at 7 s: writer Pause/Resume at those times, each after its INFO
    let out = h.cti(5000, C1, &ps(3015, "2001", &conn, 5, "{}"));
    assert_eq!(out.iter().filter(|l| l.starts_with("writer")).collect::<Vec<_>>(), vec!["writer 0 pause RecordingId(1) 5000"]);
    assert!(out[0].contains(": INFO "), "{out:#?}");
    assert_eq!(out.last().unwrap(), &info(5, 3015, "paused", "rec-1"));
    assert_eq!(
        h.cti(6000, C1, &ps(3015, "2001", &conn, 6, "{}")),
        vec![error_line(1, 6, error_code::WRONG_STATE, "cannot pause: recording rec-1 is already paused")]
    );
    let q = h.cti(6000, C1, r#"{"request":"QueryCalls","ReferenceID":7}"#);
    assert_eq!(h.last_event(), Event::EventCalls {
        reference_id: Some(7),
        calls: vec![CallInfo { connection_id: conn.clone(), dns: vec!["5551234".into(), "2001".into()], state: "established".into(), recording: "paused".into() }],
    }, "{q:?}");
    let out = h.cti(7000, C1, &ps(3016, "2001", &conn, 8, "{}"));
    assert_eq!(out.iter().filter(|l| l.starts_with("writer")).collect::<Vec<_>>(), vec!["writer 0 resume RecordingId(1) 7000"]);
    assert_eq!(out.last().unwrap(), &info(8, 3016, "recording", "rec-1"));
    // stop at 8 s: dialogend INFO, flows removed, writer Stop, BYE, then the answer
    let out = h.cti(8000, C1, &ps(3014, "2001", &conn, 9, "{}"));
    assert_eq!(out.last().unwrap(), &info(9, 3014, "stopped", "rec-1"));
    let stop = out.iter().position(|l| l == "writer 0 stop RecordingId(1) 8000").unwrap();
    let bye = out.iter().position(|l| l.contains(": BYE ")).unwrap();
    assert!(out[0].contains(": INFO "));
    assert!(stop < bye, "{out:#?}");
    assert_eq!(h.core.roles.active_sessions(), 0);
    assert_eq!(
        h.cti(8500, C1, &ps(3014, "2001", &conn, 10, "{}")),
        vec![error_line(1, 10, error_code::WRONG_STATE, &format!("cannot stop: call {conn} is not being recorded"))]
    );
    // a new start after a stop is a new session; reusing its id would overwrite its file
    assert_eq!(
        h.cti(9000, C1, &ps(3013, "2001", &conn, 11, r#"{"id":"rec-1"}"#)),
        vec![error_line(1, 11, error_code::BAD_EXTENSIONS, "Extensions id rec-1 was already used by an earlier recording of this run: pick another")]
    );
    let out = h.cti(9000, C1, &ps(3013, "2001", &conn, 11, r#"{"id":"rec-2"}"#));
    assert_eq!(out.last().unwrap(), &info(11, 3013, "recording", "rec-2"));
    // the call ends: the recording stops first, then the client hears EventReleased
    let out = h.sip(12_000, true, &CALL1.bye());
    let stop = out.iter().position(|l| l.starts_with("writer 0 stop") && l.ends_with(" 12000")).unwrap();
    assert_eq!(out.last().unwrap(), &format!(r#"cti 1 {{"event":"EventReleased","ConnectionID":"{conn}","ThisDN":"2001","OtherDN":"5551234"}}"#));
    assert!(stop < out.len() - 1);
}

#[test]
fn start_on_the_caller_side_records_the_caller_as_agent() {
    let mut h = H::new("");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"5551234"}"#);
    h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    h.cti(3000, C1, &ps(3013, "5551234", &conn, 2, "{}"));
    let spec = h.last_spec();
    assert_eq!(spec.conf_id, "callrec-00000001");
    assert_eq!(spec.wav_path, PathBuf::from("/rec/callrec-00000001.wav"));
    assert_eq!(spec.sidecar["dns"]["agent"], "5551234");
    assert_eq!(spec.sidecar["dns"]["customer"], "2001");
    assert!(h.last_invite().contains(";dn=5551234;record SIP/2.0"));
}

#[test]
fn extensions_id_clash_and_dest_directory_or_file() {
    let mut h = H::new("[cti]\ndest_roots = [\"/data\"]\n");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2002"}"#);
    h.establish(0, &CALL1);
    h.establish(0, &CALL2);
    let (c1, c2) = (h.conn(&CALL1), h.conn(&CALL2));
    h.cti(3000, C1, &ps(3013, "2001", &c1, 2, r#"{"id":"dup","dest":"/data/calls"}"#));
    assert_eq!(h.last_spec().wav_path, PathBuf::from("/data/calls/dup.wav"));
    assert_eq!(h.last_spec().sidecar_path, PathBuf::from("/data/calls/dup.json"));
    assert_eq!(
        h.cti(3000, C1, &ps(3013, "2002", &c2, 3, r#"{"id":"dup"}"#)),
        vec![error_line(1, 3, error_code::BAD_EXTENSIONS, "Extensions id dup is already used by a recording in progress")]
    );
    // a .wav dest is the file; relative paths are under the output directory
    let out = h.cti(3000, C1, &ps(3013, "2002", &c2, 4, r#"{"dest":"team-a/x.WAV"}"#));
    assert!(out.last().unwrap().contains("\"State\":\"recording\""), "{out:#?}");
    assert_eq!(h.last_spec().wav_path, PathBuf::from("/rec/team-a/x.WAV"));
    assert_eq!(h.last_spec().sidecar_path, PathBuf::from("/rec/team-a/x.json"));
    // Nowhere outside --out and [cti] dest_roots, and no climbing out with '..'.
    h.establish(4000, &CALL3);
    let c3 = h.conn(&CALL3);
    h.cti(4000, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2003"}"#);
    assert_eq!(
        h.cti(7000, C1, &ps(3013, "2003", &c3, 5, r#"{"dest":"/etc/cron.d"}"#)),
        vec![error_line(1, 5, error_code::BAD_EXTENSIONS, "Extensions dest /etc/cron.d is outside the recording directories (--out and [cti] dest_roots)")]
    );
    assert_eq!(
        h.cti(7000, C1, &ps(3013, "2003", &c3, 6, r#"{"dest":"../etc/x.wav"}"#)),
        vec![error_line(1, 6, error_code::BAD_EXTENSIONS, "Extensions dest /rec/../etc/x.wav must not contain '..'")]
    );
    // The file another recording of this run writes is refused.
    assert_eq!(
        h.cti(7000, C1, &ps(3013, "2003", &c3, 8, r#"{"dest":"team-a/x.WAV"}"#)),
        vec![error_line(1, 8, error_code::BAD_EXTENSIONS, "/rec/team-a/x.WAV is already written by another recording of this run")]
    );
    assert_eq!(
        h.cti(7000, C1, &ps(3013, "2003", &c3, 7, r#"{"dest":"/data2/x.wav"}"#)),
        vec![error_line(1, 7, error_code::BAD_EXTENSIONS, "Extensions dest /data2/x.wav is outside the recording directories (--out and [cti] dest_roots)")]
    );
}

#[test]
fn configured_private_msg_ids_replace_the_defaults() {
    let mut h = H::new("[cti]\nprivate_msg_start = 1\nprivate_msg_stop = 2\nprivate_msg_pause = 3\nprivate_msg_resume = 4\n");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    let out = h.cti(3000, C1, &ps(3013, "2001", &conn, 2, "{}"));
    assert_eq!(out, vec![error_line(1, 2, error_code::UNKNOWN_PRIVATE_MSG, "PrivateMsgID 3013 is unknown: start is 1, stop 2, pause 3, resume 4")]);
    let out = h.cti(3000, C1, &ps(1, "2001", &conn, 3, "{}"));
    assert!(out.last().unwrap().contains("\"State\":\"recording\""));
    let out = h.cti(3000, C1, &ps(3, "2001", &conn, 4, "{}"));
    assert!(out.last().unwrap().contains("\"State\":\"paused\""));
}

fn route(rid: i64, conn: &str, to: &str, record: &str) -> String {
    format!(r#"{{"request":"RouteCall","ReferenceID":{rid},"ThisDN":"7000","ConnectionID":"{conn}","OtherDN":"{to}","Extensions":{{"record":"{record}"}}}}"#)
}

fn route_used(client: u64, rid: i64, conn: &str, to: &str) -> String {
    format!(r#"cti {client} {{"event":"EventRouteUsed","ReferenceID":{rid},"ConnectionID":"{conn}","ThisDN":"7000","OtherDN":"{to}"}}"#)
}

#[test]
fn route_source_before_the_answer_starts_at_the_answer() {
    let mut h = H::new("");
    h.sip(0, true, &CALL1.invite());
    let conn = h.conn(&CALL1);
    assert_eq!(h.cti(500, C1, &route(1, &conn, "2001", "source")), vec![route_used(1, 1, &conn, "2001")]);
    let out = h.sip(1000, false, &CALL1.ringing());
    assert!(out.is_empty());
    let out = h.sip(2000, false, &CALL1.ok());
    assert_eq!(count(&out, "writer 0 start"), 1, "{out:#?}");
    let spec = h.last_spec();
    assert_eq!(spec.started, t(2000));
    assert_eq!(spec.sidecar["trigger"], "route_source");
    assert_eq!(spec.sidecar["dn"], "2001");
    assert_eq!(spec.sidecar["dns"]["agent"], "2001");
    // until the call ends
    let out = h.sip(9000, true, &CALL1.bye());
    assert_eq!(count(&out, "writer 0 stop RecordingId(1) 9000"), 1);
}

#[test]
fn route_source_after_the_answer_starts_at_once() {
    let mut h = H::new("");
    h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    // RouteCall needs no registration of the routing point
    let out = h.cti(4000, C1, &route(1, &conn.to_uppercase(), "2001", "source"));
    assert_eq!(out.last().unwrap(), &route_used(1, 1, &conn.to_uppercase(), "2001"));
    assert!(out.iter().position(|l| l.starts_with("writer 0 start")).unwrap() < out.len() - 1);
    assert_eq!(h.last_spec().started, t(4000));
    // a DN not in the call: routed, nothing recorded (yet)
    let mut h = H::new("");
    h.establish(0, &CALL1);
    let out = h.cti(4000, C1, &route(1, &conn, "2999", "source"));
    assert_eq!(out, vec![route_used(1, 1, &conn, "2999")]);
}

#[test]
fn route_destination_records_the_customer_side_and_disable_stops_it() {
    let mut h = H::new("");
    h.sip(0, true, &CALL1.invite());
    let conn = h.conn(&CALL1);
    assert_eq!(h.cti(500, C1, &route(1, &conn, "2001", "destination")), vec![route_used(1, 1, &conn, "2001")]);
    let out = h.establish(0, &CALL1);
    assert_eq!(count(&out, "writer 0 start"), 1);
    let spec = h.last_spec();
    assert_eq!(spec.sidecar["trigger"], "route_destination");
    assert_eq!(spec.sidecar["dn"], "5551234");
    assert_eq!(spec.sidecar["dns"]["customer"], "5551234");
    assert!(h.last_invite().contains("sip:msml=callrec-00000001@127.0.0.1:5070;dn=5551234;record"));
    let out = h.cti(5000, C1, &route(2, &conn, "2001", "disable_destination"));
    assert_eq!(out.last().unwrap(), &route_used(1, 2, &conn, "2001"));
    assert_eq!(count(&out, "writer 0 stop RecordingId(1) 5000"), 1, "{out:#?}");
    assert!(out.iter().any(|l| l.contains(": BYE ")));
    // nothing left to disable: still routed, nothing happens
    assert_eq!(h.cti(6000, C1, &route(3, &conn, "2001", "disable_destination")), vec![route_used(1, 3, &conn, "2001")]);
    // disable before the answer cancels the pending recording
    let mut h = H::new("");
    h.sip(0, true, &CALL1.invite());
    h.cti(500, C1, &route(1, &conn, "2001", "destination"));
    h.cti(600, C1, &route(2, &conn, "2001", "disable_destination"));
    assert_eq!(count(&h.establish(0, &CALL1), "writer"), 0);
}

#[test]
fn route_errors() {
    let mut h = H::new("");
    h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    assert_eq!(
        h.cti(0, C1, &route(1, &conn, "2001", "everything")),
        vec![error_line(1, 1, error_code::BAD_EXTENSIONS, "Extensions record must be source, destination or disable_destination, not \\\"everything\\\"")]
    );
    assert_eq!(
        h.cti(0, C1, &route(2, "0000000000000000", "2001", "source")),
        vec![error_line(1, 2, error_code::UNKNOWN_CONNECTION, "no call with ConnectionID 0000000000000000")]
    );
    // no record key: just routed
    let plain = format!(r#"{{"request":"RouteCall","ReferenceID":3,"ThisDN":"7000","ConnectionID":"{conn}","OtherDN":"2001"}}"#);
    assert_eq!(h.cti(0, C1, &plain), vec![route_used(1, 3, &conn, "2001")]);
    assert_eq!(h.core.counters().recordings_started, 0);
}

#[test]
fn agent_login_records_that_dns_calls_until_logout() {
    let mut h = H::new("[[agent]]\nid = \"a1\"\nrecord = true\n[[agent]]\nid = \"a2\"\n");
    assert_eq!(
        h.cti(0, C1, r#"{"request":"AgentLogin","ReferenceID":1,"ThisDN":"2001","AgentID":"a1"}"#),
        vec![r#"cti 1 {"event":"EventAgentLogin","ReferenceID":1,"ThisDN":"2001","AgentID":"a1"}"#]
    );
    assert_eq!(
        h.cti(0, C2, r#"{"request":"AgentLogin","ReferenceID":2,"ThisDN":"2001","AgentID":"a2"}"#),
        vec![error_line(2, 2, error_code::AGENT, "agent a1 is already logged in on DN 2001: log it out first")]
    );
    // a2 (not recorded) on 2002
    h.cti(0, C2, r#"{"request":"AgentLogin","ReferenceID":3,"ThisDN":"2002","AgentID":"a2"}"#);
    let out = h.establish(100, &CALL1);
    assert_eq!(count(&out, "writer 0 start"), 1);
    let spec = h.last_spec();
    assert_eq!(spec.sidecar["trigger"], "agent_login");
    assert_eq!(spec.sidecar["dns"]["agent"], "2001");
    assert_eq!(spec.sidecar["dn"], "2001");
    assert_eq!(count(&h.establish(100, &CALL2), "writer"), 0);
    h.sip(9000, true, &CALL1.bye());
    assert_eq!(
        h.cti(10_000, C1, r#"{"request":"AgentLogout","ReferenceID":4,"ThisDN":"2001"}"#),
        vec![r#"cti 1 {"event":"EventAgentLogout","ReferenceID":4,"ThisDN":"2001","AgentID":"a1"}"#]
    );
    assert_eq!(
        h.cti(10_000, C1, r#"{"request":"AgentLogout","ReferenceID":5,"ThisDN":"2001"}"#),
        vec![error_line(1, 5, error_code::AGENT, "no agent is logged in on DN 2001")]
    );
    let call3 = Call { cid: "call-3@pbx", ..CALL1 };
    assert_eq!(count(&h.establish(11_000, &call3), "writer"), 0);
    // logging in elsewhere moves the agent: its calls on the new DN are recorded
    h.cti(20_000, C1, r#"{"request":"AgentLogin","ReferenceID":6,"ThisDN":"2001","AgentID":"a1"}"#);
    h.cti(20_000, C1, r#"{"request":"AgentLogin","ReferenceID":7,"ThisDN":"2003","AgentID":"a1"}"#);
    let call4 = Call { cid: "call-4@pbx", ..CALL1 };
    assert_eq!(count(&h.establish(21_000, &call4), "writer"), 0);
    let call5 = Call { cid: "call-5@pbx", callee: "2003", ..CALL1 };
    assert_eq!(count(&h.establish(21_000, &call5), "writer 0 start"), 1);
}

#[test]
fn static_triggers_still_record_and_cti_can_pause_them() {
    let mut h = H::new("[[extension]]\ndn = \"2001\"\nrecord = true\n");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    let out = h.establish(0, &CALL1);
    let conn = h.conn(&CALL1);
    let est = out.iter().position(|l| l.contains("EventEstablished")).unwrap();
    let start = out.iter().position(|l| l.starts_with("writer 0 start")).unwrap();
    assert!(est < start, "{out:#?}");
    assert_eq!(h.last_spec().sidecar["trigger"], "extension");
    let out = h.cti(3000, C1, &ps(3015, "2001", &conn, 2, "{}"));
    assert!(out.last().unwrap().contains("\"State\":\"paused\",\"RecordingID\":\"callrec-00000001\""), "{out:#?}");
    // a route on an already recorded call starts nothing more
    let out = h.cti(3000, C2, &route(3, &conn, "2001", "source"));
    assert_eq!(out, vec![route_used(2, 3, &conn, "2001")]);
    assert_eq!(h.core.counters().recordings_started, 1);
    let out = h.sip(9000, true, &CALL1.bye());
    assert_eq!(count(&out, "writer 0 stop"), 1);
    assert_eq!(h.core.counters().calls_ended, 1);
}

#[test]
fn query_calls_lists_live_calls_in_arrival_order() {
    let mut h = H::new("");
    h.establish(0, &CALL1);
    h.sip(100, true, &CALL2.invite());
    h.cti(200, C1, r#"{"request":"QueryCalls","ReferenceID":1}"#);
    assert_eq!(
        h.last_event(),
        Event::EventCalls {
            reference_id: Some(1),
            calls: vec![
                CallInfo { connection_id: h.conn(&CALL1), dns: vec!["5551234".into(), "2001".into()], state: "established".into(), recording: "none".into() },
                CallInfo { connection_id: h.conn(&CALL2), dns: vec!["5559999".into(), "2002".into()], state: "ringing".into(), recording: "none".into() },
            ],
        }
    );
    h.core.finish(t(300));
    h.drain();
    h.cti(400, C1, r#"{"request":"QueryCalls","ReferenceID":2}"#);
    assert_eq!(h.last_event(), Event::EventCalls { reference_id: Some(2), calls: vec![] });
}

#[test]
fn recording_ids_differ_between_sessions() {
    // two simultaneous recordings on one writer get distinct recording ids and files
    let mut h = H::new("[[extension]]\ndn = \"2001\"\nrecord = true\n[[extension]]\ndn = \"2002\"\nrecord = true\n");
    h.establish(0, &CALL1);
    h.establish(0, &CALL2);
    let starts: Vec<(RecordingId, PathBuf)> = h
        .raw
        .iter()
        .filter_map(|o| match o {
            Output::Writer { msg: WriterMsg::Start(s), .. } => Some((s.id, s.wav_path.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2);
    assert_ne!(starts[0], starts[1]);
}

#[test]
fn route_source_follows_the_leg_to_the_agent_under_another_call_id() {
    let mut h = H::new("");
    let to_rp = Call { cid: "to-rp@pbx", callee: "7000", ..CALL1 };
    h.establish(0, &to_rp);
    let conn = h.conn(&to_rp);
    assert_eq!(h.cti(3000, C1, &route(1, &conn, "2001", "source")), vec![route_used(1, 1, &conn, "2001")]);
    // another caller's call to 2001 is not the routed one
    let other = Call { cid: "other@pbx", caller: "5550000", ..CALL1 };
    assert_eq!(count(&h.establish(3500, &other), "writer"), 0);
    // the B2BUA's leg from the same caller to the agent: recorded when answered
    let leg = Call { cid: "leg@pbx", ports: (4020, 5020), ..CALL1 };
    let out = h.establish(4000, &leg);
    assert_eq!(count(&out, "writer 0 start"), 1, "{out:#?}");
    assert_eq!(h.last_spec().sidecar["trigger"], "route_source");
    assert_eq!(h.last_spec().sidecar["call_ids"][0], "leg@pbx");
    assert_eq!(h.last_spec().started, t(6000));
    // the route was used up: a later leg starts nothing
    let again = Call { cid: "again@pbx", ..CALL1 };
    assert_eq!(count(&h.establish(8000, &again), "writer 0 start"), 0);
}

#[test]
fn start_without_media_on_one_side_fails_and_changes_nothing() {
    let mut h = H::new("");
    h.cti(0, C1, r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2001"}"#);
    // late offer: the INVITE has no SDP and the ACK answers nothing, so the caller's media
    // stays unknown
    let invite = CALL1.text("INVITE sip:2001@192.0.2.20 SIP/2.0", "1 INVITE", false, None);
    h.sip(0, true, &invite);
    h.sip(1000, false, &CALL1.ok());
    h.sip(1000, true, &CALL1.ack());
    let conn = h.conn(&CALL1);
    assert_eq!(
        h.cti(2000, C1, &ps(3013, "2001", &conn, 2, "{}")),
        vec![error_line(1, 2, error_code::RECORDING_FAILED, &format!("cannot start: call {conn} has no media description on one side"))]
    );
    assert_eq!(h.core.counters().recordings_failed, 1);
    h.cti(2000, C1, r#"{"request":"QueryCalls","ReferenceID":3}"#);
    match h.last_event() {
        Event::EventCalls { calls, .. } => assert_eq!(calls[0].recording, "none"),
        other => panic!("{other:?}"),
    }
}
