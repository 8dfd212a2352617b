//! The control core following calls through transfers, redirects, holds and conferences,
//! sans-IO: scripted SIP between several parties in, the flow table the dataplane would hold
//! and the writer messages out.

use super::*;
use callrec_pipeline::flow::{Channel, FlowKey, FlowTarget};
use std::collections::HashMap;

const C: &str = "192.0.2.10"; // customer +15550001
const A1: &str = "192.0.2.21"; // agent 2001
const A2: &str = "192.0.2.22"; // agent 2002
const FOCUS: &str = "192.0.2.40"; // conference focus conf1

const TRUNK: &str = "[[trunk]]\ndn = \"trunk1\"\ndn_pattern = \"+1555*\"\nrecord = true\n";

fn t(ms: u64) -> Timestamp {
    Timestamp::from_parts(1_700_000_000, 0).plus_nanos(ms * 1_000_000)
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// One dialog: `from` (user, ip) calls `to` (user, ip).
#[derive(Clone)]
struct Dlg {
    cid: &'static str,
    from: (&'static str, &'static str),
    to: (&'static str, &'static str),
}

fn sdp(ip: &str, port: u16, dir: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na={dir}\r\n")
}

impl Dlg {
    /// A request; `by_caller` says who sends it.
    fn req(&self, method: &str, cseq: u32, by_caller: bool, extra: &str, body: Option<String>) -> (SocketAddr, SocketAddr, Vec<u8>) {
        let ((fu, fi), (tu, ti)) = (self.from, self.to);
        let initial = method == "INVITE" && (cseq == 1 || extra.contains("X-Initial"));
        let to_tag = if initial { String::new() } else { ";tag=callee".into() };
        let (from_h, to_h) = (
            format!("<sip:{fu}@{fi}>;tag=caller"),
            format!("<sip:{tu}@{ti}>{to_tag}"),
        );
        let (src, dst, ruri, f, t_) = if by_caller {
            (fi, ti, format!("sip:{tu}@{ti}:5060"), from_h, to_h)
        } else {
            (ti, fi, format!("sip:{fu}@{fi}:5060"), to_h, from_h)
        };
        let body = body.unwrap_or_default();
        let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        let text = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{}{cseq}{method}\r\nFrom: {f}\r\nTo: {t_}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            self.cid, self.cid, body.len()
        );
        (sa(src, 5060), sa(dst, 5060), text.into_bytes())
    }
    /// A response to the caller's (`to_caller`) or the callee's request.
    fn resp(&self, code: u16, method: &str, cseq: u32, to_caller: bool, extra: &str, body: Option<String>) -> (SocketAddr, SocketAddr, Vec<u8>) {
        let ((fu, fi), (tu, ti)) = (self.from, self.to);
        let (from_h, to_h) = (format!("<sip:{fu}@{fi}>;tag=caller"), format!("<sip:{tu}@{ti}>;tag=callee"));
        let (src, dst, f, t_) = if to_caller { (ti, fi, from_h, to_h) } else { (fi, ti, to_h, from_h) };
        let body = body.unwrap_or_default();
        let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP {dst}:5060;branch=z9hG4bK{}{cseq}{method}\r\nFrom: {f}\r\nTo: {t_}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            self.cid, self.cid, body.len()
        );
        (sa(src, 5060), sa(dst, 5060), text.into_bytes())
    }
}

/// The core plus what the dataplane would hold.
struct World {
    core: ControlCore,
    flows: HashMap<FlowKey, FlowTarget>,
    /// Writer messages so far, rendered: `start`, `pause MS`, `resume MS`, `stop MS`,
    /// `sidecar KEY JSON`.
    writer: Vec<String>,
    /// CTI events so far, as JSON lines.
    cti: Vec<String>,
}

impl World {
    fn new(toml: &str) -> World {
        let core = ControlCore::for_tests(toml);
        World { core, flows: HashMap::new(), writer: Vec::new(), cti: Vec::new() }
    }
    fn sip(&mut self, ms: u64, m: (SocketAddr, SocketAddr, Vec<u8>)) {
        self.core.handle_sip(t(ms), m.0, m.1, &m.2);
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Flow(FlowUpdate::Install(k, v)) => {
                    self.flows.insert(k, v);
                }
                Output::Flow(FlowUpdate::Remove(k)) => {
                    self.flows.remove(&k);
                }
                Output::Writer { msg, .. } => self.writer.push(match msg {
                    WriterMsg::Start(_) => "start".into(),
                    WriterMsg::Pause { at, .. } => format!("pause {}", at.nanos_since(t(0)) / 1_000_000),
                    WriterMsg::Resume { at, .. } => format!("resume {}", at.nanos_since(t(0)) / 1_000_000),
                    WriterMsg::Stop { at, .. } => format!("stop {}", at.nanos_since(t(0)) / 1_000_000),
                    WriterMsg::Sidecar { key, value, .. } => format!("sidecar {key} {value}"),
                    WriterMsg::Stopping { at, .. } => format!("stopping {}", at.nanos_since(t(0)) / 1_000_000),
                    WriterMsg::Rtp(_) => "rtp".into(),
                }),
                Output::Cti { event, .. } => self.cti.push(event.to_line().trim_end().to_string()),
                _ => {}
            }
        }
    }
    /// INVITE with SDP, 200 with SDP, ACK.
    fn call(&mut self, ms: u64, d: &Dlg, caller_port: u16, callee_port: u16, extra: &str, ok_extra: &str) {
        self.sip(ms, d.req("INVITE", 1, true, extra, Some(sdp(d.from.1, caller_port, "sendrecv"))));
        self.sip(ms + 100, d.resp(200, "INVITE", 1, true, ok_extra, Some(sdp(d.to.1, callee_port, "sendrecv"))));
        self.sip(ms + 110, d.req("ACK", 1, true, "", None));
    }
    fn bye(&mut self, ms: u64, d: &Dlg, cseq: u32, by_caller: bool) {
        self.sip(ms, d.req("BYE", cseq, by_caller, "", None));
        self.sip(ms + 10, d.resp(200, "BYE", cseq, by_caller, "", None));
    }
    /// REFER sent by the callee of `d` (the agent) to its caller.
    fn refer(&mut self, ms: u64, d: &Dlg, cseq: u32, refer_to: &str) {
        self.sip(ms, d.req("REFER", cseq, false, &format!("Refer-To: <{refer_to}>\r\nReferred-By: <sip:{}@{}>\r\n", d.to.0, d.to.1), None));
        self.sip(ms + 10, d.resp(202, "REFER", cseq, false, "", None));
    }
    /// The flow table as `src>dst L|R slot`, sorted.
    fn table(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .flows
            .iter()
            .map(|(k, t)| format!("{}>{} {} {}", k.src, k.dst, if t.channel == Channel::Left { "L" } else { "R" }, t.source))
            .collect();
        v.sort();
        v
    }
    fn count(&self, prefix: &str) -> usize {
        self.writer.iter().filter(|w| w.starts_with(prefix)).count()
    }
    fn sidecar(&self, key: &str) -> serde_json::Value {
        let p = format!("sidecar {key} ");
        let s = self.writer.iter().rev().find_map(|w| w.strip_prefix(&p)).unwrap_or_else(|| panic!("no sidecar {key}: {:?}", self.writer));
        serde_json::from_str(s).unwrap()
    }
}

/// The two flows of a customer (`a`) / agent (`b`) pair, the agent on mix slot `slot`.
fn pair_on(a: (&str, u16), b: (&str, u16), slot: u8) -> Vec<String> {
    let mut v = vec![format!("{}:{}>{}:{} L 0", a.0, a.1, b.0, b.1), format!("{}:{}>{}:{} R {slot}", b.0, b.1, a.0, a.1)];
    v.sort();
    v
}

fn pair(a: (&str, u16), b: (&str, u16)) -> Vec<String> {
    pair_on(a, b, 0)
}

const D1: Dlg = Dlg { cid: "d1@cc", from: ("+15550001", C), to: ("2001", A1) };
const D2: Dlg = Dlg { cid: "d2@cc", from: ("+15550001", C), to: ("2002", A2) };

/// Blind transfer: A1 REFERs the customer to 2002, the customer INVITEs A2, A1 hangs up.
fn blind(w: &mut World) {
    w.call(0, &D1, 4000, 5000, "", "");
    w.refer(3000, &D1, 2, "sip:2002@192.0.2.22:5060");
    w.call(3200, &D2, 4002, 6000, "Referred-By: <sip:2001@192.0.2.21>\r\n", "");
}

#[test]
fn customer_side_recording_follows_a_blind_transfer_in_one_file() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    assert_eq!(w.table(), pair((C, 4000), (A1, 5000)));
    let conn = w.core.connection_id(D1.cid).unwrap().to_string();
    w.refer(3000, &D1, 2, "sip:2002@192.0.2.22:5060");
    w.call(3200, &D2, 4002, 6000, "Referred-By: <sip:2001@192.0.2.21>\r\n", "");
    // Same call, same file: the flows moved to the new dialog at its answer.
    assert_eq!(w.core.connection_id(D2.cid), Some(conn.as_str()));
    // A2 mixes on the next slot: A1's tail (same SSRC in SIPp captures) cannot disturb it.
    assert_eq!(w.table(), pair_on((C, 4002), (A2, 6000), 1));
    assert_eq!(w.count("start"), 1);
    w.bye(3500, &D1, 3, false);
    assert_eq!(w.count("stop"), 0, "{:?}", w.writer);
    assert_eq!(w.table(), pair_on((C, 4002), (A2, 6000), 1));
    w.bye(6000, &D2, 2, true);
    assert_eq!(w.writer.last().map(String::as_str), Some("stop 6000"));
    assert!(w.table().is_empty());
    let parties = w.sidecar("parties");
    let dns: Vec<(&str, &str)> = parties.as_array().unwrap().iter().map(|p| (p["dn"].as_str().unwrap(), p["channel"].as_str().unwrap())).collect();
    assert_eq!(dns, [("+15550001", "left"), ("2001", "right"), ("2002", "right")]);
    // The referrer is present until it hangs up, though the right channel is A2's from the
    // answer on.
    assert_eq!(parties[1]["to"], crate::control::roles::transport_rfc3339(t(3500)));
    assert_eq!(w.sidecar("call_ids"), serde_json::json!(["d1@cc", "d2@cc"]));
}

#[test]
fn three_consecutive_transfers_stay_in_one_file() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    let agents = [("2002", "192.0.2.22", "e2@cc"), ("2003", "192.0.2.23", "e3@cc"), ("2004", "192.0.2.24", "e4@cc")];
    let mut prev = D1.clone();
    for (i, (dn, ip, cid)) in agents.iter().enumerate() {
        let ms = 2000 * (i as u64 + 1);
        w.refer(ms, &prev, 2, &format!("sip:{dn}@{ip}"));
        let next = Dlg { cid, from: ("+15550001", C), to: (dn, ip) };
        w.call(ms + 100, &next, 4010 + i as u16, 6010 + i as u16, "", "");
        w.bye(ms + 300, &prev, 3, false);
        assert_eq!(w.table(), pair_on((C, 4010 + i as u16), (ip, 6010 + i as u16), i as u8 + 1), "after transfer {}", i + 1);
        prev = next;
    }
    assert_eq!(w.count("start"), 1);
    assert_eq!(w.count("stop"), 0);
    w.bye(9000, &prev, 2, true);
    assert_eq!(w.count("stop"), 1);
    assert_eq!(w.sidecar("call_ids").as_array().unwrap().len(), 4);
}

#[test]
fn agent_side_recording_ends_when_the_recorded_agent_leaves() {
    let mut w = World::new("[[extension]]\ndn = \"2001\"\nrecord = true\n");
    blind(&mut w);
    // The agent is still in its dialog: the recording stays there.
    assert_eq!(w.table(), pair((C, 4000), (A1, 5000)));
    w.bye(3500, &D1, 3, false);
    assert_eq!(w.writer.last().map(String::as_str), Some("stop 3500"));
    assert!(w.table().is_empty());
    w.bye(6000, &D2, 2, true);
    assert_eq!(w.count("start"), 1, "the transfer target is not recorded: {:?}", w.writer);
}

#[test]
fn agent_side_recording_goes_on_when_the_next_agent_is_recorded_too() {
    let mut w = World::new("[[extension]]\ndn = \"2001\"\nrecord = true\n[[extension]]\ndn = \"2002\"\nrecord = true\n");
    blind(&mut w);
    assert_eq!(w.table(), pair_on((C, 4002), (A2, 6000), 1));
    w.bye(3500, &D1, 3, false);
    assert_eq!(w.count("stop"), 0);
    w.bye(6000, &D2, 2, true);
    assert_eq!((w.count("start"), w.count("stop")), (1, 1));
}

#[test]
fn a_transfer_that_fails_ends_the_recording_when_the_call_does() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    w.refer(3000, &D1, 2, "sip:2002@192.0.2.22:5060");
    w.sip(3200, D2.req("INVITE", 1, true, "", Some(sdp(C, 4002, "sendrecv"))));
    // A1 hangs up while the target rings: the recording waits for the target.
    w.bye(3300, &D1, 3, false);
    assert_eq!(w.count("stop"), 0);
    w.sip(5000, D2.resp(486, "INVITE", 1, true, "", None));
    assert_eq!(w.writer.last().map(String::as_str), Some("stop 5000"));
}

#[test]
fn redirect_keeps_the_connection_id_and_records_the_new_target() {
    let mut w = World::new(TRUNK);
    w.sip(0, D1.req("INVITE", 1, true, "", Some(sdp(C, 4000, "sendrecv"))));
    let conn = w.core.connection_id(D1.cid).unwrap().to_string();
    w.sip(50, D1.resp(302, "INVITE", 1, true, "Contact: <sip:2002@192.0.2.22:5060>\r\n", None));
    w.sip(60, D1.req("ACK", 1, true, "", None));
    assert_eq!(w.count("start"), 0);
    let retry = Dlg { cid: "d1@cc", from: ("+15550001", C), to: ("2002", A2) };
    w.sip(100, retry.req("INVITE", 2, true, "X-Initial: retry after 302\r\n", Some(sdp(C, 4000, "sendrecv"))));
    assert_eq!(w.core.connection_id(D1.cid), Some(conn.as_str()));
    w.sip(300, retry.resp(200, "INVITE", 2, true, "", Some(sdp(A2, 6000, "sendrecv"))));
    assert_eq!(w.table(), pair((C, 4000), (A2, 6000)));
    w.bye(3000, &retry, 3, true);
    let dns: Vec<String> = w.sidecar("parties").as_array().unwrap().iter().map(|p| p["dn"].as_str().unwrap().to_string()).collect();
    assert_eq!(dns, ["+15550001", "2002"]);
}

#[test]
fn redirect_away_from_a_recorded_extension_records_nothing() {
    let mut w = World::new("[[extension]]\ndn = \"2001\"\nrecord = true\n");
    w.sip(0, D1.req("INVITE", 1, true, "", Some(sdp(C, 4000, "sendrecv"))));
    w.sip(50, D1.resp(302, "INVITE", 1, true, "Contact: <sip:2002@192.0.2.22:5060>\r\n", None));
    let retry = Dlg { cid: "d1@cc", from: ("+15550001", C), to: ("2002", A2) };
    w.call(100, &retry, 4000, 6000, "", "");
    w.bye(3000, &retry, 3, true);
    assert!(w.writer.is_empty(), "{:?}", w.writer);
}

#[test]
fn hold_and_resume_pause_the_writer_and_are_listed() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    // The agent holds (sendonly), the customer answers recvonly.
    w.sip(3000, D1.req("INVITE", 2, false, "", Some(sdp(A1, 5000, "sendonly"))));
    w.sip(3050, D1.resp(200, "INVITE", 2, false, "", Some(sdp(C, 4000, "recvonly"))));
    assert_eq!(w.writer.last().map(String::as_str), Some("pause 3050"));
    assert_eq!(w.table(), pair((C, 4000), (A1, 5000)));
    w.sip(6000, D1.req("INVITE", 3, false, "", Some(sdp(A1, 5000, "sendrecv"))));
    w.sip(6050, D1.resp(200, "INVITE", 3, false, "", Some(sdp(C, 4000, "sendrecv"))));
    assert_eq!(w.writer.last().map(String::as_str), Some("resume 6050"));
    w.bye(9000, &D1, 4, true);
    let holds = w.sidecar("holds");
    assert_eq!(holds.as_array().map(Vec::len), Some(1), "{holds}");
    assert_eq!(holds[0]["from"], crate::control::roles::transport_rfc3339(t(3050)));
    assert_eq!(holds[0]["to"], crate::control::roles::transport_rfc3339(t(6050)));
}

#[test]
fn attended_transfer_with_replaces_continues_the_customer_recording() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    let conn = w.core.connection_id(D1.cid).unwrap().to_string();
    // Hold, consultation call A1 -> A2 (its own call: nothing recorded on the trunk rule).
    w.sip(3000, D1.req("INVITE", 2, false, "", Some(sdp(A1, 5000, "sendonly"))));
    w.sip(3050, D1.resp(200, "INVITE", 2, false, "", Some(sdp(C, 4000, "recvonly"))));
    let consult = Dlg { cid: "consult@cc", from: ("2001", A1), to: ("2002", A2) };
    w.call(3200, &consult, 5002, 6000, "", "");
    assert_ne!(w.core.connection_id(consult.cid), Some(conn.as_str()));
    assert_eq!(w.count("start"), 1);
    w.refer(5000, &D1, 3, "sip:2002@192.0.2.22:5060?Replaces=consult%40cc%3Bto-tag%3Dcallee%3Bfrom-tag%3Dcaller");
    let d3 = Dlg { cid: "d3@cc", from: ("+15550001", C), to: ("2002", A2) };
    w.call(5200, &d3, 4004, 6004, "Replaces: consult@cc;to-tag=callee;from-tag=caller\r\n", "");
    assert_eq!(w.core.connection_id(d3.cid), Some(conn.as_str()));
    assert_eq!(w.table(), pair_on((C, 4004), (A2, 6004), 1));
    assert_eq!(w.writer.last().map(String::as_str), Some("resume 5300"));
    w.bye(5400, &consult, 2, false);
    w.bye(5500, &D1, 4, false);
    assert_eq!(w.count("stop"), 0);
    w.bye(8000, &d3, 2, true);
    assert_eq!((w.count("start"), w.count("stop")), (1, 1));
    assert_eq!(w.sidecar("holds").as_array().map(Vec::len), Some(1));
    assert_eq!(w.sidecar("call_ids"), serde_json::json!(["d1@cc", "d3@cc"]));
}

#[test]
fn conference_through_a_focus_mixes_every_agent_into_the_right_channel() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    let focus_ok = "Contact: <sip:conf1@192.0.2.40:5060>;isfocus\r\n";
    // A1 creates the conference, then sends the customer there.
    let a1f = Dlg { cid: "a1f@cc", from: ("2001", A1), to: ("conf1", FOCUS) };
    w.call(2000, &a1f, 5002, 7002, "", focus_ok);
    assert_eq!(w.count("start"), 1, "a dialog to a focus starts no recording of its own");
    w.refer(2500, &D1, 2, "sip:conf1@192.0.2.40:5060");
    let cf = Dlg { cid: "cf@cc", from: ("+15550001", C), to: ("conf1", FOCUS) };
    w.call(2700, &cf, 4004, 7003, "Referred-By: <sip:2001@192.0.2.21>\r\n", focus_ok);
    let mut want = vec![format!("{C}:4004>{FOCUS}:7003 L 0"), format!("{A1}:5002>{FOCUS}:7002 R 1")];
    want.sort();
    assert_eq!(w.table(), want);
    w.bye(3000, &D1, 3, false);
    assert_eq!(w.count("stop"), 0);
    // A second agent dials in: its stream is mixed in on the next slot.
    let a2f = Dlg { cid: "a2f@cc", from: ("2002", A2), to: ("conf1", FOCUS) };
    w.call(4000, &a2f, 6002, 7004, "", focus_ok);
    let mut want3 = want.clone();
    want3.push(format!("{A2}:6002>{FOCUS}:7004 R 2"));
    want3.sort();
    assert_eq!(w.table(), want3);
    assert_eq!(w.core.connection_id(a2f.cid), w.core.connection_id(cf.cid));
    w.bye(7000, &a2f, 2, true);
    assert_eq!(w.table(), want);
    w.bye(9000, &cf, 2, true);
    assert_eq!((w.count("start"), w.count("stop")), (1, 1));
    let parties = w.sidecar("parties");
    let a2 = parties.as_array().unwrap().iter().find(|p| p["dn"] == "2002").expect("2002 listed");
    assert_eq!(a2["channel"], "right");
    assert_eq!(a2["from"], crate::control::roles::transport_rfc3339(t(4100)));
    assert_eq!(a2["to"], crate::control::roles::transport_rfc3339(t(7000)));
    w.bye(9100, &a1f, 2, true);
    assert_eq!(w.count("stop"), 1);
}

#[test]
fn local_three_way_lists_the_party_the_agents_phone_mixes_in() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    w.sip(2000, D1.req("INVITE", 2, false, "", Some(sdp(A1, 5000, "sendonly"))));
    w.sip(2050, D1.resp(200, "INVITE", 2, false, "", Some(sdp(C, 4000, "recvonly"))));
    let leg = Dlg { cid: "leg@cc", from: ("2001", A1), to: ("2002", A2) };
    w.call(2200, &leg, 5002, 6000, "", "");
    assert_eq!(w.count("start"), 1, "the second leg is its own call");
    // The phone resumes the customer and mixes both: 2002 is heard from here on.
    w.sip(4000, D1.req("INVITE", 3, false, "", Some(sdp(A1, 5000, "sendrecv"))));
    w.sip(4050, D1.resp(200, "INVITE", 3, false, "", Some(sdp(C, 4000, "sendrecv"))));
    assert_eq!(w.table(), pair((C, 4000), (A1, 5000)), "the recording still hears the agent's stream");
    w.bye(7000, &leg, 2, false);
    w.bye(9000, &D1, 4, true);
    let parties = w.sidecar("parties");
    let a2 = parties.as_array().unwrap().iter().find(|p| p["dn"] == "2002").expect("2002 listed");
    assert_eq!(a2["channel"], "right");
    assert_eq!(a2["from"], crate::control::roles::transport_rfc3339(t(4050)));
    assert_eq!(a2["to"], crate::control::roles::transport_rfc3339(t(7000)));
}

#[test]
fn cti_clients_see_one_connection_id_through_a_transfer() {
    let mut w = World::new(TRUNK);
    let line: crate::cti::protocol::RequestLine =
        serde_json::from_str(r#"{"request":"RegisterAddress","ReferenceID":1,"ThisDN":"2002"}"#).unwrap();
    w.core.handle_cti(t(0), CtiClient(7), line);
    while w.core.poll_output().is_some() {}
    w.call(0, &D1, 4000, 5000, "", "");
    let conn = w.core.connection_id(D1.cid).unwrap().to_string();
    w.refer(3000, &D1, 2, "sip:2002@192.0.2.22:5060");
    w.call(3200, &D2, 4002, 6000, "", "");
    let ringing = w.cti.iter().find(|l| l.contains("EventRinging")).expect("2002 is told it rings");
    assert!(ringing.contains(&format!("\"ConnectionID\":\"{conn}\"")), "{ringing}");
    assert!(w.cti.iter().any(|l| l.contains("EventEstablished") && l.contains(&conn)), "{:?}", w.cti);
}

#[test]
fn an_invite_that_matches_no_refer_is_a_call_of_its_own() {
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    let conn = w.core.connection_id(D1.cid).unwrap().to_string();
    w.refer(3000, &D1, 2, "sip:2002@192.0.2.22:5060");
    // To another DN than the REFER named: a new call, recorded on its own.
    let other = Dlg { cid: "other@cc", from: ("+15550001", C), to: ("2003", "192.0.2.23") };
    w.call(3200, &other, 4002, 6000, "", "");
    assert_ne!(w.core.connection_id(other.cid), Some(conn.as_str()));
    assert_eq!(w.count("start"), 2);
    // A REFER older than 32 s links nothing either.
    let mut w = World::new(TRUNK);
    w.call(0, &D1, 4000, 5000, "", "");
    w.refer(1000, &D1, 2, "sip:2002@192.0.2.22:5060");
    w.call(40_000, &D2, 4002, 6000, "", "");
    assert_eq!(w.count("start"), 2);
    // Replaces naming a dialog nobody saw: no link, no panic.
    let mut w = World::new(TRUNK);
    let lone = Dlg { cid: "lone@cc", from: ("+15550001", C), to: ("2002", A2) };
    w.call(0, &lone, 4000, 6000, "Replaces: nobody@x;to-tag=a;from-tag=b\r\n", "");
    assert_eq!(w.count("start"), 1);
}

#[test]
fn agent_side_recording_follows_its_agent_into_a_conference_and_ends_when_it_leaves() {
    let mut w = World::new("[[extension]]\ndn = \"2001\"\nrecord = true\n");
    w.call(0, &D1, 4000, 5000, "", "");
    let focus_ok = "Contact: <sip:conf1@192.0.2.40:5060>;isfocus\r\n";
    let a1f = Dlg { cid: "a1f@cc", from: ("2001", A1), to: ("conf1", FOCUS) };
    w.call(2000, &a1f, 5002, 7002, "", focus_ok);
    w.refer(2500, &D1, 2, "sip:conf1@192.0.2.40:5060");
    let cf = Dlg { cid: "cf@cc", from: ("+15550001", C), to: ("conf1", FOCUS) };
    w.call(2700, &cf, 4004, 7003, "", focus_ok);
    w.bye(3000, &D1, 3, false);
    assert_eq!((w.count("start"), w.count("stop")), (1, 0), "{:?}", w.writer);
    assert!(w.table().contains(&format!("{A1}:5002>{FOCUS}:7002 R 1")), "{:?}", w.table());
    // The recorded agent leaves the conference: its recording ends, the customer stays.
    w.bye(6000, &a1f, 2, true);
    assert_eq!(w.writer.last().map(String::as_str), Some("stop 6000"));
    assert!(w.table().is_empty());
    w.bye(8000, &cf, 2, true);
    assert_eq!(w.count("stop"), 1);
}
