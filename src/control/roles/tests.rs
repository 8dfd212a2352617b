//! Whole recording flows through the three roles, no sockets, no clock.

use super::*;
use crate::control::msml::MsmlResult;
use crate::control::sdp::{Direction, MediaDescription, SessionDescription};
use crate::control::sip::{SipBuilder, SipMessage};
use callrec_pipeline::flow::{Channel, FlowKey, FlowTarget, FlowUpdate, RecordingId};
use callrec_pipeline::writer::{Codec, OutputFormat, WriterMsg};
use callrec_pipeline::Timestamp;
use std::net::SocketAddr;
use std::path::PathBuf;

const SS: &str = "127.0.0.1:5060";
const RM: &str = "127.0.0.1:5065";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(writers: usize) -> RolesConfig {
    RolesConfig {
        resource_manager: "rm.callrec.test:5065".into(),
        sip_server_addr: SS.into(),
        rm_addr: RM.into(),
        mcp_addrs: (0..writers)
            .map(|k| format!("127.0.0.1:{}", 5070 + k))
            .collect(),
        writers,
        out_dir: PathBuf::from("/rec"),
        format: OutputFormat::G711,
        conf_id_prefix: "callrec".into(),
    }
}

fn media(addr: &str, pt: u8, codec: Codec) -> MediaDescription {
    MediaDescription {
        addr: a(addr),
        payload_types: vec![(pt, codec)],
        all_payload_types: vec![pt, 101],
        event_pt: Some(101),
        direction: Direction::SendRecv,
        label: None,
    }
}

fn request(dn: &str, call: &str) -> RecordRequest {
    RecordRequest {
        dn: dn.into(),
        call_ids: vec![call.into()],
        customer: media("192.0.2.10:40000", 8, Codec::Pcma),
        agent: media("198.51.100.20:50000", 8, Codec::Pcma),
        trigger: "extension".into(),
        dns: (Some("5551000".into()), Some(dn.into())),
        extensions: vec![("id".into(), "rec-1".into())],
        conf_id: None,
        dest: None,
        connection_id: None,
    }
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_parts(1_795_994_158 + s, 0)
}

/// Every output, traces as "from -> to: first line", others as they are.
type Drained = (
    Vec<String>,
    Vec<TraceRecord>,
    Vec<FlowUpdate>,
    Vec<(u16, WriterMsg)>,
);

fn drain(roles: &mut RecordingRoles) -> Drained {
    let (mut lines, mut traces, mut flows, mut writers) = (vec![], vec![], vec![], vec![]);
    while let Some(o) = roles.poll_output() {
        match o {
            RoleOutput::Trace(r) => {
                let first = r.text.lines().next().unwrap_or("").to_string();
                lines.push(format!("{} -> {}: {first}", r.from, r.to));
                traces.push(r);
            }
            RoleOutput::Flow(f) => flows.push(f),
            RoleOutput::Writer { writer, msg } => writers.push((writer, msg)),
        }
    }
    (lines, traces, flows, writers)
}

#[test]
fn start_to_stop_exchanges_the_seed_messages_in_order() {
    let mut roles = RecordingRoles::new(config(2)).unwrap();
    let id = roles.start(t(0), request("2001", "call-1@pbx")).unwrap();
    assert_eq!(roles.active_sessions(), 1);
    assert_eq!(roles.conf_id(id).unwrap().as_str(), "callrec-00000001");
    let (lines, traces, flows, writers) = drain(&mut roles);
    let uri = "sip:msml=callrec-00000001@rm.callrec.test:5065;dn=2001;record";
    let mcp_target = "sip:mcp0@127.0.0.1:5070";
    assert_eq!(
        lines,
        vec![
            format!("{SS} -> {RM}: INVITE {uri} SIP/2.0"),
            format!("{RM} -> 127.0.0.1:5070: INVITE {uri} SIP/2.0"),
            format!("127.0.0.1:5070 -> {RM}: SIP/2.0 200 OK"),
            format!("{RM} -> {SS}: SIP/2.0 200 OK"),
            // the SS sends ACK and INFO back to back, so both reach the RM before either
            // is forwarded
            format!("{SS} -> {RM}: ACK {mcp_target} SIP/2.0"),
            format!("{SS} -> {RM}: INFO {mcp_target} SIP/2.0"),
            format!("{RM} -> 127.0.0.1:5070: ACK {mcp_target} SIP/2.0"),
            format!("{RM} -> 127.0.0.1:5070: INFO {mcp_target} SIP/2.0"),
            format!("127.0.0.1:5070 -> {RM}: SIP/2.0 200 OK"),
            format!("{RM} -> {SS}: SIP/2.0 200 OK"),
        ]
    );
    // The INVITE carries everything RFC 3261 asks for, and the two labelled streams.
    let invite = SipMessage::parse(traces[0].text.as_bytes()).unwrap();
    for h in [
        "Via",
        "Max-Forwards",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Type",
        "Content-Length",
    ] {
        assert!(invite.header(h).is_some(), "INVITE lacks {h}");
    }
    assert!(invite.top_branch.as_deref().unwrap().starts_with("z9hG4bK"));
    assert!(invite.from_tag.is_some() && invite.to_tag.is_none());
    assert_eq!(invite.cseq, (1, "INVITE".to_string()));
    assert_eq!(invite.header("X-Genesys-id"), Some("rec-1"));
    let sdp = SessionDescription::parse(&invite.body).unwrap();
    let labels: Vec<_> = sdp
        .audio
        .iter()
        .map(|m| (m.label.clone().unwrap(), m.addr))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("customer".to_string(), a("192.0.2.10:40000")),
            ("agent".to_string(), a("198.51.100.20:50000"))
        ]
    );
    // The RM's forward: its Via on top of the SS's, a Record-Route, Max-Forwards decremented.
    let fwd = SipMessage::parse(traces[1].text.as_bytes()).unwrap();
    assert_eq!(fwd.vias.len(), 2);
    assert!(fwd.vias[0].contains(RM) && fwd.vias[1].contains(SS));
    assert_eq!(fwd.header("Max-Forwards"), Some("69"));
    assert_eq!(fwd.header("Record-Route"), Some("<sip:127.0.0.1:5065;lr>"));
    assert_eq!(fwd.body, invite.body);
    // The 200 relayed to the SS has lost the RM's Via and gained the MCP's tag.
    let ok = SipMessage::parse(traces[3].text.as_bytes()).unwrap();
    assert_eq!(ok.vias.len(), 1);
    assert!(ok.to_tag.is_some());
    // The INFO: in-dialog, routed through the RM, with the dialogstart body.
    let info = SipMessage::parse(traces[5].text.as_bytes()).unwrap();
    assert_eq!(info.cseq, (2, "INFO".to_string()));
    assert_eq!(info.header("Route"), Some("<sip:127.0.0.1:5065;lr>"));
    assert_eq!(info.content_type.as_deref(), Some("application/msml+xml"));
    let body = std::str::from_utf8(&info.body).unwrap();
    assert!(body.contains(
        r#"<dialogstart target="conf:callrec-00000001" name="record" type="application/moml+xml">"#
    ));
    assert!(body.contains(
        r#"<record dest="file:///rec/callrec-00000001.wav" format="audio/wav;codec=pcma" />"#
    ));
    let result = SipMessage::parse(traces[9].text.as_bytes()).unwrap();
    assert_eq!(MsmlResult::parse(&result.body), Ok(MsmlResult::ok()));

    // Outputs: writer Start first, then both flows on writer 0.
    let rec = RecordingId(1);
    let left = FlowKey {
        src: a("192.0.2.10:40000"),
        dst: a("198.51.100.20:50000"),
    };
    let right = FlowKey {
        src: a("198.51.100.20:50000"),
        dst: a("192.0.2.10:40000"),
    };
    assert_eq!(
        flows,
        vec![
            FlowUpdate::Install(
                left,
                FlowTarget {
                    writer: 0,
                    recording: rec,
                    channel: Channel::Left,
                    source: 0
                }
            ),
            FlowUpdate::Install(
                right,
                FlowTarget {
                    writer: 0,
                    recording: rec,
                    channel: Channel::Right,
                    source: 0
                }
            ),
        ]
    );
    assert_eq!(writers.len(), 1);
    let (w, WriterMsg::Start(spec)) = &writers[0] else {
        panic!("first writer message is not Start")
    };
    assert_eq!(*w, 0);
    assert_eq!(spec.id, rec);
    assert_eq!(spec.conf_id, "callrec-00000001");
    assert_eq!(spec.wav_path, PathBuf::from("/rec/callrec-00000001.wav"));
    assert_eq!(
        spec.sidecar_path,
        PathBuf::from("/rec/callrec-00000001.json")
    );
    assert_eq!(spec.started, t(0));
    assert_eq!(
        spec.channels[0].payload_types.as_slice(),
        &[(8, Codec::Pcma)]
    );
    assert_eq!(spec.channels[0].event_pt, Some(101));
    let sidecar = serde_json::Value::Object(spec.sidecar.clone());
    assert_eq!(
        sidecar,
        serde_json::json!({
            "conf_id": "callrec-00000001", "dn": "2001", "call_ids": ["call-1@pbx"],
            "dns": {"customer": "5551000", "agent": "2001"}, "trigger": "extension",
            "extensions": {"id": "rec-1"}, "mcp": 0
        })
    );

    roles.stop(t(30), id).unwrap();
    assert_eq!(roles.active_sessions(), 0);
    let (lines, traces, flows, writers) = drain(&mut roles);
    assert_eq!(
        lines,
        vec![
            format!("{SS} -> {RM}: INFO {mcp_target} SIP/2.0"),
            format!("{RM} -> 127.0.0.1:5070: INFO {mcp_target} SIP/2.0"),
            format!("127.0.0.1:5070 -> {RM}: SIP/2.0 200 OK"),
            format!("{RM} -> {SS}: SIP/2.0 200 OK"),
            format!("{SS} -> {RM}: BYE {mcp_target} SIP/2.0"),
            format!("{RM} -> 127.0.0.1:5070: BYE {mcp_target} SIP/2.0"),
            format!("127.0.0.1:5070 -> {RM}: SIP/2.0 200 OK"),
            format!("{RM} -> {SS}: SIP/2.0 200 OK"),
        ]
    );
    assert!(traces[0]
        .text
        .contains(r#"<dialogend id="conf:callrec-00000001/dialog:record"/>"#));
    assert!(traces[0].text.contains("CSeq: 3 INFO"));
    assert!(traces[4].text.contains("CSeq: 4 BYE"));
    assert_eq!(
        flows,
        vec![FlowUpdate::Remove(left), FlowUpdate::Remove(right)]
    );
    // The MCP's sidecar facts come first, then the Stop.
    let keys: Vec<&str> = writers
        .iter()
        .filter_map(|(_, m)| match m {
            WriterMsg::Sidecar { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["parties", "holds", "call_ids"]);
    let parties = writers.iter().find_map(|(_, m)| match m {
        WriterMsg::Sidecar { key, value, .. } if key == "parties" => Some(value.clone()),
        _ => None,
    });
    let parties = parties.unwrap();
    assert_eq!(parties.as_array().map(Vec::len), Some(2), "{parties}");
    assert_eq!(parties[0]["channel"], "left");
    assert_eq!(parties[1]["channel"], "right");
    assert!(
        matches!(writers.last(), Some((0, WriterMsg::Stop { recording, at })) if *recording == rec && *at == t(30))
    );
    assert_eq!(roles.mcp_load(), &[0, 0]);
    assert_eq!(roles.dropped_messages(), 0);
    // Gone for good.
    assert_eq!(roles.stop(t(31), id), Err(RoleError::UnknownSession(id)));
}

#[test]
fn trace_renders_time_from_to_and_the_message() {
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    roles.start(t(0), request("2001", "c")).unwrap();
    let (_, traces, _, _) = drain(&mut roles);
    let text = traces[0].render();
    assert!(text.starts_with(&format!(
        "2026-11-29T23:15:58.000000000Z {SS} -> {RM}\nINVITE sip:msml=callrec-00000001@rm.callrec.test:5065;dn=2001;record SIP/2.0\r\n"
    )));
    assert!(text.ends_with("\n\n"));
}

#[test]
fn least_loaded_mcp_takes_each_new_session() {
    let mut roles = RecordingRoles::new(config(3)).unwrap();
    let writer_of = |roles: &mut RecordingRoles| {
        let (_, _, _, w) = drain(roles);
        match w.as_slice() {
            [(k, WriterMsg::Start(spec))] => (*k, spec.id),
            _ => panic!("expected one Start"),
        }
    };
    let s1 = roles.start(t(0), request("1", "c1")).unwrap();
    assert_eq!(writer_of(&mut roles), (0, RecordingId(1)));
    let s2 = roles.start(t(0), request("2", "c2")).unwrap();
    assert_eq!(writer_of(&mut roles), (1, RecordingId(2)));
    let _s3 = roles.start(t(0), request("3", "c3")).unwrap();
    assert_eq!(writer_of(&mut roles), (2, RecordingId(3)));
    let _s4 = roles.start(t(0), request("4", "c4")).unwrap();
    assert_eq!(writer_of(&mut roles), (0, RecordingId(4)));
    assert_eq!(roles.mcp_load(), &[2, 1, 1]);
    roles.stop(t(1), s2).unwrap();
    roles.stop(t(1), s1).unwrap();
    drain(&mut roles);
    assert_eq!(roles.mcp_load(), &[1, 0, 1]);
    roles.start(t(2), request("5", "c5")).unwrap();
    assert_eq!(writer_of(&mut roles), (1, RecordingId(5)));
    assert_eq!(roles.active_sessions(), 3);
}

#[test]
fn pause_and_resume_reach_the_writer_and_double_pause_is_refused() {
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let id = roles.start(t(0), request("2001", "c")).unwrap();
    drain(&mut roles);
    roles.pause(t(5), id).unwrap();
    let (lines, traces, _, writers) = drain(&mut roles);
    assert_eq!(lines.len(), 4);
    assert!(traces[0]
        .text
        .contains(r#"<send target="conf:callrec-00000001/dialog:record" event="pause"/>"#));
    assert!(
        matches!(writers.as_slice(), [(0, WriterMsg::Pause { recording: RecordingId(1), at })] if *at == t(5))
    );

    let err = roles.pause(t(6), id).unwrap_err();
    assert_eq!(
        err,
        RoleError::Rejected {
            conf_id: "callrec-00000001".into(),
            step: "pause",
            code: 409,
            reason: "already paused".into()
        }
    );
    let (_, traces, _, writers) = drain(&mut roles);
    assert!(writers.is_empty());
    assert!(traces[3].text.contains("<result response=\"409\">"));

    roles.resume(t(7), id).unwrap();
    let (_, _, _, writers) = drain(&mut roles);
    assert!(
        matches!(writers.as_slice(), [(0, WriterMsg::Resume { recording: RecordingId(1), at })] if *at == t(7))
    );
    assert!(matches!(
        roles.resume(t(8), id),
        Err(RoleError::Rejected { code: 409, .. })
    ));
    // Still recording: stop works.
    roles.stop(t(9), id).unwrap();
}

#[test]
fn media_update_moves_the_flows_and_keeps_the_recording() {
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let id = roles.start(t(0), request("2001", "c")).unwrap();
    drain(&mut roles);
    let customer = media("192.0.2.11:41000", 8, Codec::Pcma);
    let agent = media("198.51.100.20:50000", 8, Codec::Pcma);
    roles.update_media(t(3), id, customer, agent).unwrap();
    let (lines, traces, flows, writers) = drain(&mut roles);
    assert!(
        lines[0].ends_with("INVITE sip:mcp0@127.0.0.1:5070 SIP/2.0"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 6); // re-INVITE, 200, ACK, each via the RM
    assert!(traces[0].text.contains("CSeq: 3 INVITE"));
    let old_left = FlowKey {
        src: a("192.0.2.10:40000"),
        dst: a("198.51.100.20:50000"),
    };
    let old_right = FlowKey {
        src: a("198.51.100.20:50000"),
        dst: a("192.0.2.10:40000"),
    };
    let new_left = FlowKey {
        src: a("192.0.2.11:41000"),
        dst: a("198.51.100.20:50000"),
    };
    let new_right = FlowKey {
        src: a("198.51.100.20:50000"),
        dst: a("192.0.2.11:41000"),
    };
    let target = |channel| FlowTarget {
        writer: 0,
        recording: RecordingId(1),
        channel,
        source: 0,
    };
    assert_eq!(
        flows,
        vec![
            FlowUpdate::Remove(old_left),
            FlowUpdate::Remove(old_right),
            FlowUpdate::Install(new_left, target(Channel::Left)),
            FlowUpdate::Install(new_right, target(Channel::Right)),
        ]
    );
    assert!(writers.is_empty(), "the writer keeps its file");
    roles.stop(t(4), id).unwrap();
    let (_, _, flows, _) = drain(&mut roles);
    assert_eq!(
        flows,
        vec![FlowUpdate::Remove(new_left), FlowUpdate::Remove(new_right)]
    );
}

#[test]
fn hold_reinvite_keeps_the_flows_on_the_real_addresses() {
    // RFC 2543 hold (c=0.0.0.0) on the customer, port 0 on the agent: neither is where RTP
    // comes from. Before the fix the flows moved to 0.0.0.0:41000 and :0, so the exact keys
    // of both directions were lost (only the by-destination fallback still caught packets).
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let id = roles.start(t(0), request("2001", "c")).unwrap();
    drain(&mut roles);
    let mut customer = media("0.0.0.0:40000", 8, Codec::Pcma);
    customer.direction = Direction::SendOnly;
    let agent = media("198.51.100.20:0", 8, Codec::Pcma);
    roles.update_media(t(3), id, customer, agent).unwrap();
    let (lines, _, flows, _) = drain(&mut roles);
    assert!(lines[2].ends_with("SIP/2.0 200 OK"), "{lines:?}");
    let left = FlowKey {
        src: a("192.0.2.10:40000"),
        dst: a("198.51.100.20:50000"),
    };
    let right = FlowKey {
        src: a("198.51.100.20:50000"),
        dst: a("192.0.2.10:40000"),
    };
    let target = |channel| FlowTarget {
        writer: 0,
        recording: RecordingId(1),
        channel,
        source: 0,
    };
    assert_eq!(
        flows,
        vec![
            FlowUpdate::Remove(left),
            FlowUpdate::Remove(right),
            FlowUpdate::Install(left, target(Channel::Left)),
            FlowUpdate::Install(right, target(Channel::Right)),
        ]
    );
}

#[test]
fn unknown_sessions_bad_uris_and_caller_conf_ids() {
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    assert_eq!(
        roles.pause(t(0), SessionId(42)),
        Err(RoleError::UnknownSession(SessionId(42)))
    );
    assert_eq!(
        roles.stop(t(0), SessionId(42)),
        Err(RoleError::UnknownSession(SessionId(42)))
    );
    let mut bad = request("", "c");
    assert!(matches!(
        roles.start(t(0), bad.clone()),
        Err(RoleError::Uri(_))
    ));
    bad.dn = "2001".into();
    bad.conf_id = Some("a/b".into());
    assert!(matches!(
        roles.start(t(0), bad.clone()),
        Err(RoleError::Uri(_))
    ));
    assert!(
        drain(&mut roles).0.is_empty(),
        "nothing sent for a refused start"
    );
    bad.conf_id = Some("cti-rec-7".into());
    let id = roles.start(t(0), bad.clone()).unwrap();
    assert_eq!(roles.conf_id(id).unwrap().as_str(), "cti-rec-7");
    // The same conf-id twice is refused before anything is sent.
    assert_eq!(
        roles.start(t(0), bad.clone()),
        Err(RoleError::ConfIdInUse("cti-rec-7".into()))
    );
    // Once the first has ended, the conf-id may be used again, but not its file: that would
    // overwrite the first recording.
    roles.stop(t(1), id).unwrap();
    assert_eq!(
        roles.start(t(2), bad.clone()),
        Err(RoleError::FileInUse("/rec/cti-rec-7.wav".into()))
    );
    bad.dest = Some("/rec/elsewhere".into());
    let again = roles.start(t(2), bad).unwrap();
    assert_ne!(again, id);
    assert_eq!(roles.active_sessions(), 1);
    assert_eq!(roles.mcp_load(), &[1]);
}

#[test]
fn both_streams_at_one_address_are_refused_with_488() {
    // Both directions would share one 5-tuple: the two flow installs collided (the second
    // overwrote the first) and both parties' packets landed on the right channel.
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let mut req = request("2001", "c");
    req.agent = media("192.0.2.10:40000", 8, Codec::Pcma);
    let err = roles.start(t(0), req).unwrap_err();
    assert!(
        matches!(
            err,
            RoleError::Rejected {
                step: "INVITE",
                code: 488,
                ..
            }
        ),
        "{err:?}"
    );
    let (_, _, flows, writers) = drain(&mut roles);
    assert!(flows.is_empty() && writers.is_empty());
    // Same host, different ports (a hairpin through one media server) is fine.
    let mut req = request("2001", "c2");
    req.agent = media("192.0.2.10:40002", 8, Codec::Pcma);
    roles.start(t(1), req).unwrap();
    let (_, _, flows, _) = drain(&mut roles);
    assert_eq!(flows.len(), 2);
}

#[test]
fn no_writers_means_503_from_the_rm() {
    let mut roles = RecordingRoles::new(config(0)).unwrap();
    let err = roles.start(t(0), request("2001", "c")).unwrap_err();
    assert!(
        matches!(
            err,
            RoleError::Rejected {
                step: "INVITE",
                code: 503,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(roles.active_sessions(), 0);
    let (lines, traces, flows, writers) = drain(&mut roles);
    assert_eq!(lines.len(), 3, "INVITE, 503, ACK: {lines:?}");
    assert!(flows.is_empty() && writers.is_empty());
    let invite = SipMessage::parse(traces[0].text.as_bytes()).unwrap();
    let ack = SipMessage::parse(traces[2].text.as_bytes()).unwrap();
    assert_eq!(ack.method(), "ACK");
    // the ACK of a failure belongs to the INVITE's transaction
    assert_eq!(ack.top_branch, invite.top_branch);
    assert_eq!(ack.cseq, (1, "ACK".to_string()));
}

#[test]
fn missing_labels_are_refused_with_488() {
    // The SIP Server always labels its streams, so send an unlabelled INVITE to an MCP directly.
    let mut mcp = McpRole::new(0, 1, "127.0.0.1:5070".into(), OutputFormat::G711);
    let sdp = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
    let invite = SipBuilder::request("INVITE", "sip:msml=x1@rm;dn=1;record")
        .via("UDP", RM, "z9hG4bK-1")
        .from("sip:a@b", "t1")
        .to("sip:msml=x1@rm", None)
        .call_id("x1")
        .cseq(1, "INVITE")
        .body("application/sdp", sdp.as_bytes());
    mcp.handle(t(0), &SipMessage::parse(&invite).unwrap());
    let out = mcp.drain_transmits();
    let resp = SipMessage::parse(&out[0].bytes).unwrap();
    assert_eq!(resp.status(), Some(488));
    assert_eq!(mcp.dialog_count(), 0);
}

/// Drives one MCP directly with hand-made INFOs.
fn mcp_with_dialog() -> McpRole {
    let mut mcp = McpRole::new(0, 1, "127.0.0.1:5070".into(), OutputFormat::G711);
    let sdp = "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\na=label:customer\r\n\
               m=audio 6000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\na=label:agent\r\n";
    let invite = SipBuilder::request("INVITE", "sip:msml=x1@rm;dn=1;record")
        .via("UDP", RM, "z9hG4bK-1")
        .from("sip:a@b", "t1")
        .to("sip:msml=x1@rm", None)
        .call_id("x1")
        .cseq(1, "INVITE")
        .body("application/sdp", sdp.as_bytes());
    mcp.handle(t(0), &SipMessage::parse(&invite).unwrap());
    let ok = SipMessage::parse(&mcp.drain_transmits()[0].bytes).unwrap();
    assert_eq!(ok.status(), Some(200));
    mcp
}

fn info(
    mcp: &mut McpRole,
    cseq: u32,
    content_type: &str,
    body: &str,
) -> (SipMessage, Vec<RoleOutput>) {
    let req = SipBuilder::request("INFO", "sip:mcp0@127.0.0.1:5070")
        .via("UDP", RM, &format!("z9hG4bK-{cseq}"))
        .from("sip:a@b", "t1")
        .to("sip:msml=x1@rm", Some("mcp-tag"))
        .call_id("x1")
        .cseq(cseq, "INFO")
        .body(content_type, body.as_bytes());
    mcp.handle(t(1), &SipMessage::parse(&req).unwrap());
    let resp = SipMessage::parse(&mcp.drain_transmits()[0].bytes).unwrap();
    (resp, mcp.drain_outputs())
}

#[test]
fn mcp_answers_what_it_cannot_do_with_4xx_results() {
    let mut mcp = mcp_with_dialog();
    let result = |m: &SipMessage| MsmlResult::parse(&m.body).unwrap();

    let (resp, out) = info(
        &mut mcp,
        2,
        MSML_CONTENT_TYPE,
        "<msml version=\"1.1\"><dialogstart",
    );
    assert_eq!(resp.status(), Some(200));
    let r = result(&resp);
    assert_eq!(r.code, 400);
    assert!(r.description.unwrap().starts_with("malformed XML"));
    assert!(out.is_empty());

    let (resp, _) = info(
        &mut mcp,
        3,
        MSML_CONTENT_TYPE,
        "<msml version=\"1.1\"><play/></msml>",
    );
    assert_eq!(
        result(&resp),
        MsmlResult::error(400, "unknown element <play> in <msml>")
    );

    let (resp, _) = info(&mut mcp, 4, "text/plain", "pause");
    assert_eq!(resp.status(), Some(415));
    assert_eq!(resp.header("Accept"), Some(MSML_CONTENT_TYPE));
    assert_eq!(result(&resp).code, 415);

    let other = crate::control::msml::MsmlRequest::Pause {
        conf_id: crate::control::uri::ConfId::new("zz").unwrap(),
    };
    let (resp, _) = info(&mut mcp, 5, MSML_CONTENT_TYPE, &other.to_xml());
    assert_eq!(result(&resp).code, 404);

    let pause = crate::control::msml::MsmlRequest::Pause {
        conf_id: crate::control::uri::ConfId::new("x1").unwrap(),
    };
    let (resp, _) = info(&mut mcp, 6, MSML_CONTENT_TYPE, &pause.to_xml());
    assert_eq!(result(&resp), MsmlResult::error(409, "not recording"));

    let start = crate::control::msml::MsmlRequest::Start {
        conf_id: crate::control::uri::ConfId::new("x1").unwrap(),
        dest: "http://elsewhere/x.wav".into(),
        format: "audio/wav".into(),
    };
    let (resp, out) = info(&mut mcp, 7, MSML_CONTENT_TYPE, &start.to_xml());
    assert_eq!(result(&resp).code, 400);
    assert!(out.is_empty());

    // Unknown dialog: 481 with an MSML description.
    let req = SipBuilder::request("INFO", "sip:mcp0@127.0.0.1:5070")
        .via("UDP", RM, "z9hG4bK-9")
        .from("sip:a@b", "t1")
        .to("sip:msml=x1@rm", Some("mcp-tag"))
        .call_id("nope")
        .cseq(1, "INFO")
        .body(MSML_CONTENT_TYPE, pause.to_xml().as_bytes());
    mcp.handle(t(1), &SipMessage::parse(&req).unwrap());
    let resp = SipMessage::parse(&mcp.drain_transmits()[0].bytes).unwrap();
    assert_eq!(resp.status(), Some(481));
    assert_eq!(result(&resp).code, 481);
}

#[test]
fn bye_while_recording_stops_the_writer_too() {
    let mut mcp = mcp_with_dialog();
    let start = crate::control::msml::MsmlRequest::Start {
        conf_id: crate::control::uri::ConfId::new("x1").unwrap(),
        dest: "file:///tmp/x1.wav".into(),
        format: "audio/wav;codec=pcmu".into(),
    };
    let (resp, out) = info(&mut mcp, 2, MSML_CONTENT_TYPE, &start.to_xml());
    assert_eq!(MsmlResult::parse(&resp.body), Ok(MsmlResult::ok()));
    assert_eq!(out.len(), 3);
    let bye = SipBuilder::request("BYE", "sip:mcp0@127.0.0.1:5070")
        .via("UDP", RM, "z9hG4bK-b")
        .from("sip:a@b", "t1")
        .to("sip:msml=x1@rm", Some("mcp-tag"))
        .call_id("x1")
        .cseq(3, "BYE")
        .finish();
    mcp.handle(t(2), &SipMessage::parse(&bye).unwrap());
    assert_eq!(
        SipMessage::parse(&mcp.drain_transmits()[0].bytes)
            .unwrap()
            .status(),
        Some(200)
    );
    let out = mcp.drain_outputs();
    assert!(matches!(
        out.as_slice(),
        [
            RoleOutput::Flow(FlowUpdate::Remove(_)),
            RoleOutput::Flow(FlowUpdate::Remove(_)),
            RoleOutput::Writer { writer: 0, msg: WriterMsg::Sidecar { .. } },
            RoleOutput::Writer { writer: 0, msg: WriterMsg::Sidecar { .. } },
            RoleOutput::Writer { writer: 0, msg: WriterMsg::Sidecar { .. } },
            RoleOutput::Writer {
                writer: 0,
                msg: WriterMsg::Stop { .. }
            }
        ]
    ));
    assert_eq!(mcp.dialog_count(), 0);
}

#[test]
fn pcm16_or_mixed_codecs_ask_for_l16() {
    let mut cfg = config(1);
    cfg.format = OutputFormat::Pcm16;
    let mut roles = RecordingRoles::new(cfg).unwrap();
    roles.start(t(0), request("1", "c")).unwrap();
    let (_, traces, _, _) = drain(&mut roles);
    assert!(traces[5].text.contains("format=\"audio/wav;codec=l16\""));
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let mut req = request("1", "c");
    req.agent = media("198.51.100.20:50000", 0, Codec::Pcmu);
    roles.start(t(0), req).unwrap();
    let (_, traces, _, _) = drain(&mut roles);
    assert!(traces[5].text.contains("format=\"audio/wav;codec=l16\""));
    // An offer of PCMA and PCMU answered with PCMU: both legs send PCMU, and MSML names the
    // codec the writer will write (before: l16 while the writer chose mu-law).
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let mut req = request("1", "c");
    req.customer.payload_types = vec![(8, Codec::Pcma), (0, Codec::Pcmu)];
    req.customer.all_payload_types = vec![8, 0, 101];
    req.agent = media("198.51.100.20:50000", 0, Codec::Pcmu);
    roles.start(t(0), req).unwrap();
    let (_, traces, _, writers) = drain(&mut roles);
    assert!(traces[5].text.contains("format=\"audio/wav;codec=pcmu\""));
    let Some((_, WriterMsg::Start(spec))) = writers.first() else {
        panic!("no Start first")
    };
    assert_eq!(
        callrec_pipeline::writer::recording::sample_kind(spec),
        callrec_pipeline::writer::jitter::SampleKind::Law(Codec::Pcmu)
    );
}

#[test]
fn extension_keys_and_values_are_made_header_safe() {
    let mut roles = RecordingRoles::new(config(1)).unwrap();
    let mut req = request("1", "c");
    req.extensions = vec![("odd key:1".into(), "two\r\nlines".into())];
    roles.start(t(0), req).unwrap();
    let (_, traces, _, writers) = drain(&mut roles);
    assert!(traces[0]
        .text
        .contains("X-Genesys-odd%20key%3A1: two  lines\r\n"));
    let (_, WriterMsg::Start(spec)) = &writers[0] else {
        panic!("no Start")
    };
    assert_eq!(
        spec.sidecar["extensions"],
        serde_json::json!({"odd key:1": "two  lines"})
    );
}

#[test]
fn mcp_refuses_a_second_dialog_for_the_same_conference_and_unknown_reinvites() {
    let mut mcp = mcp_with_dialog();
    let sdp = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=label:customer\r\nm=audio 6000 RTP/AVP 0\r\na=label:agent\r\n";
    let invite = |call_id: &str, to_tag: Option<&str>| {
        SipBuilder::request("INVITE", "sip:msml=x1@rm;dn=1;record")
            .via("UDP", RM, "z9hG4bK-2")
            .from("sip:a@b", "t2")
            .to("sip:msml=x1@rm", to_tag)
            .call_id(call_id)
            .cseq(1, "INVITE")
            .body("application/sdp", sdp.as_bytes())
    };
    mcp.handle(t(0), &SipMessage::parse(&invite("x2", None)).unwrap());
    let resp = SipMessage::parse(&mcp.drain_transmits()[0].bytes).unwrap();
    assert_eq!(resp.status(), Some(486));
    mcp.handle(
        t(0),
        &SipMessage::parse(&invite("x3", Some("gone"))).unwrap(),
    );
    let resp = SipMessage::parse(&mcp.drain_transmits()[0].bytes).unwrap();
    assert_eq!(resp.status(), Some(481));
    assert_eq!(mcp.dialog_count(), 1);
    assert!(mcp.drain_outputs().is_empty());
}

#[test]
fn roles_survive_every_message_with_any_one_header_line_missing() {
    // Record a whole run's messages, then hand each one, minus one line at a time, to every
    // role of a set that is mid-recording. Nothing may panic, and the session must still stop.
    let mut roles = RecordingRoles::new(config(2)).unwrap();
    let id = roles.start(t(0), request("2001", "c")).unwrap();
    roles.pause(t(1), id).unwrap();
    roles.resume(t(2), id).unwrap();
    roles
        .update_media(
            t(3),
            id,
            media("192.0.2.12:4000", 0, Codec::Pcmu),
            media("192.0.2.13:4000", 0, Codec::Pcmu),
        )
        .unwrap();
    roles.stop(t(4), id).unwrap();
    let (_, traces, _, _) = drain(&mut roles);
    assert!(traces.len() >= 30);

    let mut victim = RecordingRoles::new(config(2)).unwrap();
    let live = victim.start(t(0), request("2001", "c")).unwrap();
    let mut parsed = 0;
    for trace in &traces {
        let lines: Vec<&str> = trace.text.split("\r\n").collect();
        for skip in 0..lines.len() {
            let text: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            let Ok(msg) = SipMessage::parse(text.join("\r\n").as_bytes()) else {
                continue;
            };
            parsed += 1;
            victim.ss.handle(t(5), &msg);
            victim.rm.handle(t(5), &msg);
            for mcp in &mut victim.mcps {
                mcp.handle(t(5), &msg);
            }
            victim.run(t(5));
        }
    }
    assert!(parsed > 100, "only {parsed} mutated messages parsed");
    while victim.poll_output().is_some() {}
    // Whatever those did to the dialog, stopping ends the session without a panic.
    let _ = victim.stop(t(6), live);
    assert_eq!(victim.active_sessions(), 0);
}
