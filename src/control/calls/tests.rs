//! Scripted call flows through the tracker: each step is a SIP text fixture with its
//! direction and time; the checks are on the events that come out.

use super::*;
use crate::control::sdp::Direction;
use crate::control::sip::SipError;

const A: &str = "192.0.2.10:5060"; // caller (customer side)
const B: &str = "192.0.2.20:5060"; // callee (agent side)

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_parts(1_700_000_000 + secs, 0)
}

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
}

/// A message of call `cid`: start line, the headers that vary, optional SDP body.
fn msg(
    start: &str,
    cid: &str,
    cseq: &str,
    to_tag: Option<&str>,
    from_b: bool,
    body: Option<&str>,
) -> SipMessage {
    let (from, ftag, to) = if from_b {
        (
            "<sip:2001@192.0.2.20>",
            "b1",
            "<sip:5551234@192.0.2.10>;tag=a1".to_string(),
        )
    } else {
        let to = match to_tag {
            Some(tt) => format!("<sip:2001@192.0.2.20>;tag={tt}"),
            None => "<sip:2001@192.0.2.20>".to_string(),
        };
        ("\"Cust\" <sip:5551234@192.0.2.10>", "a1", to)
    };
    let body = body.unwrap_or("");
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{cseq_n}\r\nFrom: {from};tag={ftag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        cseq_n = cseq.replace(' ', "-"),
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

struct Run {
    tr: CallTracker,
    events: Vec<CallEvent>,
}

impl Run {
    fn new() -> Run {
        Run {
            tr: CallTracker::new(CallTrackerConfig::default()),
            events: Vec::new(),
        }
    }
    /// Feeds a message A->B (`a_to_b`) or B->A at second `s`, collecting events.
    fn feed(&mut self, s: u64, a_to_b: bool, m: &SipMessage) {
        let (src, dst) = if a_to_b {
            (addr(A), addr(B))
        } else {
            (addr(B), addr(A))
        };
        self.tr.handle(t(s), src, dst, m);
        while let Some(e) = self.tr.poll_event() {
            self.events.push(e);
        }
    }
    fn drain(&mut self) -> Vec<CallEvent> {
        std::mem::take(&mut self.events)
    }
}

fn invite(cid: &str, body: Option<&str>) -> SipMessage {
    msg(
        "INVITE sip:2001@192.0.2.20 SIP/2.0",
        cid,
        "1 INVITE",
        None,
        false,
        body,
    )
}
fn resp(code: u16, cid: &str, cseq: &str, body: Option<&str>) -> SipMessage {
    msg(
        &format!("SIP/2.0 {code} X"),
        cid,
        cseq,
        Some("b1"),
        false,
        body,
    )
}

/// INVITE (SDP) -> 100 -> 180 -> 200 (SDP) -> ACK; returns the Answered event.
fn establish(r: &mut Run, cid: &str) -> CallEvent {
    let a_sdp = sdp("192.0.2.10", 4000);
    let b_sdp = sdp("192.0.2.20", 5000);
    r.feed(0, true, &invite(cid, Some(&a_sdp)));
    r.feed(
        0,
        false,
        &msg("SIP/2.0 100 Trying", cid, "1 INVITE", None, false, None),
    );
    r.feed(1, false, &resp(180, cid, "1 INVITE", None));
    r.feed(5, false, &resp(200, cid, "1 INVITE", Some(&b_sdp)));
    r.feed(
        5,
        true,
        &msg(
            "ACK sip:2001@192.0.2.20 SIP/2.0",
            cid,
            "1 ACK",
            Some("b1"),
            false,
            None,
        ),
    );
    let ev = r.drain();
    assert_eq!(ev.len(), 1, "{ev:?}");
    ev.into_iter().next().unwrap()
}

#[test]
fn basic_call() {
    let mut r = Run::new();
    let CallEvent::Answered {
        call,
        call_id,
        caller,
        callee,
        at,
    } = establish(&mut r, "basic")
    else {
        panic!("not answered")
    };
    assert_eq!(call_id, "basic");
    assert_eq!(at, t(5));
    assert_eq!(caller.dn.as_deref(), Some("5551234"));
    assert_eq!(caller.sip_addr, addr(A));
    assert_eq!(caller.media.as_ref().unwrap().addr, addr("192.0.2.10:4000"));
    assert_eq!(callee.dn.as_deref(), Some("2001"));
    assert_eq!(callee.sip_addr, addr(B));
    assert_eq!(callee.media.as_ref().unwrap().addr, addr("192.0.2.20:5000"));
    assert_eq!(callee.media.as_ref().unwrap().event_pt, Some(101));
    let c = r.tr.call(call).unwrap();
    assert_eq!(c.state, CallState::Established);
    assert_eq!(c.answered, Some(t(5)));
    assert_eq!(r.tr.find("basic"), Some(call));

    // BYE from the callee side, then its 200 and a retransmitted BYE: one Ended.
    let bye = msg(
        "BYE sip:5551234@192.0.2.10 SIP/2.0",
        "basic",
        "7 BYE",
        None,
        true,
        None,
    );
    r.feed(60, false, &bye);
    r.feed(60, true, &resp(200, "basic", "7 BYE", None));
    r.feed(61, false, &bye);
    assert_eq!(
        r.drain(),
        vec![CallEvent::Ended {
            call,
            call_id: "basic".into(),
            at: t(60),
            reason: EndReason::Bye
        }]
    );
    assert!(r.tr.call(call).is_none());
    assert!(r.tr.is_empty());
    assert_eq!(
        r.tr.stats().unknown_dialog,
        0,
        "retransmission of a just-ended call"
    );
}

#[test]
fn rejected_call_and_late_invite_retransmission() {
    let mut r = Run::new();
    let inv = invite("rej", Some(&sdp("192.0.2.10", 4000)));
    r.feed(0, true, &inv);
    r.feed(1, false, &resp(486, "rej", "1 INVITE", None));
    r.feed(
        1,
        true,
        &msg(
            "ACK sip:2001@192.0.2.20 SIP/2.0",
            "rej",
            "1 ACK",
            Some("b1"),
            false,
            None,
        ),
    );
    let ev = r.drain();
    assert!(
        matches!(
            ev.as_slice(),
            [CallEvent::Ended {
                reason: EndReason::Rejected(486),
                ..
            }]
        ),
        "{ev:?}"
    );
    // A copy of the INVITE arriving late must not start a phantom call.
    r.feed(2, true, &inv);
    assert!(r.tr.is_empty());
    assert!(r.drain().is_empty());
}

#[test]
fn auth_challenge_then_new_invite_is_one_call() {
    let mut r = Run::new();
    r.feed(0, true, &invite("auth", Some(&sdp("192.0.2.10", 4000))));
    r.feed(0, false, &resp(407, "auth", "1 INVITE", None));
    let inv2 = msg(
        "INVITE sip:2001@192.0.2.20 SIP/2.0",
        "auth",
        "2 INVITE",
        None,
        false,
        Some(&sdp("192.0.2.10", 4002)),
    );
    r.feed(1, true, &inv2);
    r.feed(
        2,
        false,
        &resp(200, "auth", "2 INVITE", Some(&sdp("192.0.2.20", 5000))),
    );
    let ev = r.drain();
    let [CallEvent::Answered { caller, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(caller.media.as_ref().unwrap().addr.port(), 4002);
    assert_eq!(r.tr.stats().calls, 1);
}

#[test]
fn cancel_before_answer() {
    let mut r = Run::new();
    r.feed(0, true, &invite("can", Some(&sdp("192.0.2.10", 4000))));
    r.feed(1, false, &resp(180, "can", "1 INVITE", None));
    assert_eq!(
        r.tr.call(r.tr.find("can").unwrap()).unwrap().state,
        CallState::Early
    );
    r.feed(
        3,
        true,
        &msg(
            "CANCEL sip:2001@192.0.2.20 SIP/2.0",
            "can",
            "1 CANCEL",
            None,
            false,
            None,
        ),
    );
    r.feed(3, false, &resp(200, "can", "1 CANCEL", None));
    assert!(r.drain().is_empty(), "a 200 may still cross the CANCEL");
    r.feed(3, false, &resp(487, "can", "1 INVITE", None));
    let ev = r.drain();
    assert!(
        matches!(ev.as_slice(), [CallEvent::Ended { reason: EndReason::Cancel, at, .. }] if *at == t(3)),
        "{ev:?}"
    );
}

#[test]
fn reinvite_moves_media_in_both_directions() {
    let mut r = Run::new();
    let CallEvent::Answered { call, .. } = establish(&mut r, "re") else {
        panic!()
    };
    // Callee puts the caller on hold and moves its own media.
    let hold = sdp("192.0.2.21", 6000).replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    let reinv = msg(
        "INVITE sip:5551234@192.0.2.10 SIP/2.0",
        "re",
        "1 INVITE",
        None,
        true,
        Some(&hold),
    );
    r.feed(10, false, &reinv);
    r.feed(10, false, &reinv); // mirror duplicate
    assert!(r.drain().is_empty(), "no change before the 2xx");
    let answer = sdp("192.0.2.10", 4000).replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
    let ok = msg(
        "SIP/2.0 200 OK",
        "re",
        "1 INVITE",
        None,
        true,
        Some(&answer),
    );
    r.feed(10, true, &ok);
    r.feed(11, true, &ok); // retransmission
    let ev = r.drain();
    let [CallEvent::MediaChanged {
        call: c,
        caller,
        callee,
        at,
    }] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!((*c, *at), (call, t(10)));
    assert_eq!(callee.media.as_ref().unwrap().addr, addr("192.0.2.21:6000"));
    assert_eq!(
        callee.media.as_ref().unwrap().direction,
        Direction::SendOnly
    );
    assert_eq!(
        caller.media.as_ref().unwrap().direction,
        Direction::RecvOnly
    );

    // Caller re-INVITE rejected with 488: nothing changes.
    let reinv2 = msg(
        "INVITE sip:2001@192.0.2.20 SIP/2.0",
        "re",
        "2 INVITE",
        Some("b1"),
        false,
        Some(&sdp("192.0.2.99", 1)),
    );
    r.feed(20, true, &reinv2);
    r.feed(20, false, &resp(488, "re", "2 INVITE", None));
    assert!(r.drain().is_empty());
    // Caller moves media; answer SDP identical to before still counts (caller changed).
    let reinv3 = msg(
        "INVITE sip:2001@192.0.2.20 SIP/2.0",
        "re",
        "3 INVITE",
        Some("b1"),
        false,
        Some(&sdp("192.0.2.11", 4100)),
    );
    r.feed(30, true, &reinv3);
    r.feed(
        30,
        false,
        &resp(200, "re", "3 INVITE", Some(&sdp("192.0.2.21", 6000))),
    );
    let ev = r.drain();
    let [CallEvent::MediaChanged { caller, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(caller.media.as_ref().unwrap().addr, addr("192.0.2.11:4100"));
    // Session refresh with the same SDP: no event.
    r.feed(
        40,
        true,
        &msg(
            "INVITE sip:2001@192.0.2.20 SIP/2.0",
            "re",
            "4 INVITE",
            Some("b1"),
            false,
            Some(&sdp("192.0.2.11", 4100)),
        ),
    );
    r.feed(
        40,
        false,
        &resp(
            200,
            "re",
            "4 INVITE",
            Some(&sdp("192.0.2.21", 6000).replace("a=rtpmap", "a=sendrecv\r\na=rtpmap")),
        ),
    );
    assert!(r.drain().is_empty());
}

#[test]
fn late_offer_invite_without_sdp() {
    let mut r = Run::new();
    r.feed(0, true, &invite("late", None));
    r.feed(
        2,
        false,
        &resp(200, "late", "1 INVITE", Some(&sdp("192.0.2.20", 5000))),
    );
    let ev = r.drain();
    let [CallEvent::Answered { caller, callee, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert!(caller.media.is_none());
    assert_eq!(callee.media.as_ref().unwrap().addr.port(), 5000);
    let ack = msg(
        "ACK sip:2001@192.0.2.20 SIP/2.0",
        "late",
        "1 ACK",
        Some("b1"),
        false,
        Some(&sdp("192.0.2.10", 4000)),
    );
    r.feed(2, true, &ack);
    r.feed(2, true, &ack);
    let ev = r.drain();
    let [CallEvent::MediaChanged { caller, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(caller.media.as_ref().unwrap().addr.port(), 4000);
}

#[test]
fn early_media_183_sets_callee_media() {
    let mut r = Run::new();
    r.feed(0, true, &invite("early", Some(&sdp("192.0.2.10", 4000))));
    r.feed(
        1,
        false,
        &resp(183, "early", "1 INVITE", Some(&sdp("192.0.2.30", 7000))),
    );
    let h = r.tr.find("early").unwrap();
    assert_eq!(
        r.tr.call(h).unwrap().callee.media.as_ref().unwrap().addr,
        addr("192.0.2.30:7000")
    );
    assert!(r.drain().is_empty());
    // 200 without SDP: the 183's answer stands.
    r.feed(4, false, &resp(200, "early", "1 INVITE", None));
    let ev = r.drain();
    let [CallEvent::Answered { callee, .. }] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(callee.media.as_ref().unwrap().addr, addr("192.0.2.30:7000"));
}

#[test]
fn retransmitted_invite_and_200_do_not_duplicate() {
    let mut r = Run::new();
    let inv = invite("rtx", Some(&sdp("192.0.2.10", 4000)));
    let ok = resp(200, "rtx", "1 INVITE", Some(&sdp("192.0.2.20", 5000)));
    for s in 0..3 {
        r.feed(s, true, &inv);
    }
    r.feed(3, false, &ok);
    r.feed(3, false, &ok);
    r.feed(4, true, &inv);
    r.feed(4, false, &ok);
    let ev = r.drain();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(r.tr.stats().duplicate_invites >= 3);
    assert_eq!(r.tr.len(), 1);
}

#[test]
fn compact_header_flow() {
    let inv = format!(
        "INVITE sip:2001@192.0.2.20 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-c1\r\nf: <sip:5551234@192.0.2.10>;tag=a1\r\nt: <sip:2001@192.0.2.20>\r\ni: compact-flow\r\nCSeq: 1 INVITE\r\nc: application/sdp\r\nl: {}\r\n\r\n{}",
        sdp("192.0.2.10", 4000).len(),
        sdp("192.0.2.10", 4000)
    );
    let ok = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-c1\r\nf: <sip:5551234@192.0.2.10>;tag=a1\r\nt: <sip:2001@192.0.2.20>;tag=b1\r\ni: compact-flow\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
    let bye = "BYE sip:5551234@192.0.2.10 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-c2\r\nf: <sip:2001@192.0.2.20>;tag=b1\r\nt: <sip:5551234@192.0.2.10>;tag=a1\r\ni: compact-flow\r\nCSeq: 1 BYE\r\nl: 0\r\n\r\n";
    let mut r = Run::new();
    r.feed(0, true, &SipMessage::parse(inv.as_bytes()).unwrap());
    r.feed(1, false, &SipMessage::parse(ok.as_bytes()).unwrap());
    r.feed(9, false, &SipMessage::parse(bye.as_bytes()).unwrap());
    let ev = r.drain();
    assert!(
        matches!(&ev[..], [CallEvent::Answered { caller, .. }, CallEvent::Ended { reason: EndReason::Bye, .. }] if caller.media.is_some()),
        "{ev:?}"
    );
}

#[test]
fn missing_call_id_is_a_parse_error() {
    let text = "INVITE sip:2001@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:2001@h>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        SipMessage::parse(text.as_bytes()).unwrap_err(),
        SipError::Header("Call-ID")
    );
}

#[test]
fn bye_for_unknown_call_is_counted_and_ignored() {
    let mut r = Run::new();
    r.feed(
        0,
        false,
        &msg(
            "BYE sip:5551234@192.0.2.10 SIP/2.0",
            "nobody",
            "5 BYE",
            None,
            true,
            None,
        ),
    );
    r.feed(
        0,
        true,
        &msg(
            "INFO sip:2001@192.0.2.20 SIP/2.0",
            "nobody2",
            "5 INFO",
            Some("b1"),
            false,
            None,
        ),
    );
    r.feed(0, true, &resp(200, "nobody3", "5 INVITE", None));
    assert!(r.drain().is_empty());
    assert!(r.tr.is_empty());
    assert_eq!(r.tr.stats().unknown_dialog, 2);
}

#[test]
fn dialog_failure_481_ends_call() {
    let mut r = Run::new();
    establish(&mut r, "gone");
    r.feed(
        9,
        true,
        &msg(
            "INFO sip:2001@192.0.2.20 SIP/2.0",
            "gone",
            "2 INFO",
            Some("b1"),
            false,
            None,
        ),
    );
    r.feed(9, false, &resp(481, "gone", "2 INFO", None));
    let ev = r.drain();
    assert!(
        matches!(
            ev.as_slice(),
            [CallEvent::Ended {
                reason: EndReason::DialogFailed(481),
                ..
            }]
        ),
        "{ev:?}"
    );
}

#[test]
fn timeouts_and_end_of_input() {
    let cfg = CallTrackerConfig {
        idle_timeout: Duration::from_secs(100),
        ring_timeout: Duration::from_secs(30),
    };
    let mut r = Run {
        tr: CallTracker::new(cfg),
        events: Vec::new(),
    };
    assert_eq!(r.tr.poll_timeout(), None);
    r.feed(0, true, &invite("ring", Some(&sdp("192.0.2.10", 4000))));
    establish(&mut r, "up"); // INVITE at 0, answered at 5
    r.feed(0, true, &invite("eoi", Some(&sdp("192.0.2.10", 4000))));
    assert_eq!(r.tr.poll_timeout(), Some(t(30)));
    r.tr.handle_timeout(t(29));
    assert!(r.tr.poll_event().is_none());
    r.tr.handle_timeout(t(30));
    let mut ended: Vec<String> = std::iter::from_fn(|| r.tr.poll_event())
        .map(|e| match e {
            CallEvent::Ended {
                call_id,
                reason: EndReason::Timeout,
                ..
            } => call_id,
            e => panic!("{e:?}"),
        })
        .collect();
    ended.sort();
    assert_eq!(ended, vec!["eoi", "ring"]);
    assert_eq!(
        r.tr.poll_timeout(),
        Some(t(105)),
        "idle timer from the ACK at 5 s"
    );
    // SIP in the call (an INFO) pushes the idle timer out: the tracker looks at 105 s, ends
    // nothing, and names the new deadline.
    r.feed(
        50,
        true,
        &msg(
            "INFO sip:2001@192.0.2.20 SIP/2.0",
            "up",
            "2 INFO",
            Some("b1"),
            false,
            None,
        ),
    );
    assert_eq!(r.tr.poll_timeout(), Some(t(105)), "a deadline only moves later: the old one is a safe early look");
    r.tr.handle_timeout(t(105));
    assert!(r.tr.poll_event().is_none());
    assert_eq!(r.tr.poll_timeout(), Some(t(150)));
    r.tr.end_all(t(60));
    let ev: Vec<_> = std::iter::from_fn(|| r.tr.poll_event()).collect();
    assert!(
        matches!(ev.as_slice(), [CallEvent::Ended { reason: EndReason::EndOfInput, at, .. }] if *at == t(60)),
        "{ev:?}"
    );
    assert!(r.tr.is_empty());
    assert_eq!(r.tr.poll_timeout(), None);
}

#[test]
fn stale_handle_finds_nothing_after_slot_reuse() {
    let mut r = Run::new();
    let CallEvent::Answered { call: first, .. } = establish(&mut r, "one") else {
        panic!()
    };
    r.feed(
        9,
        true,
        &msg(
            "BYE sip:2001@192.0.2.20 SIP/2.0",
            "one",
            "2 BYE",
            Some("b1"),
            false,
            None,
        ),
    );
    assert!(matches!(r.drain().as_slice(), [CallEvent::Ended { call, .. }] if *call == first));
    let CallEvent::Answered { call: second, .. } = establish(&mut r, "two") else {
        panic!()
    };
    assert_ne!(first, second);
    assert!(r.tr.call(first).is_none());
    assert_eq!(r.tr.call(second).unwrap().call_id, "two");
}

/// A call SIPp made (`sipp -sn uac` against `sipp -sn uas`, messages from `-trace_msg`),
/// replayed byte for byte: A = the uac at 127.0.0.1:15060, B = the uas at 127.0.0.1:15070.
#[test]
fn sipp_basic_call_fixture() {
    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sip/sipp-uac-basic");
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6);
    let (a, b) = (addr("127.0.0.1:15060"), addr("127.0.0.1:15070"));
    let mut tr = CallTracker::new(CallTrackerConfig::default());
    let mut events = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        assert!(callrec_pipeline::classify::looks_like_sip(&bytes));
        let m = SipMessage::parse(&bytes).unwrap();
        let a_to_b = f.file_name().unwrap().to_str().unwrap().contains("-a2b-");
        let (src, dst) = if a_to_b { (a, b) } else { (b, a) };
        tr.handle(t(i as u64), src, dst, &m);
        events.extend(std::iter::from_fn(|| tr.poll_event()));
    }
    let [CallEvent::Answered {
        call_id,
        caller,
        callee,
        at,
        ..
    }, CallEvent::Ended {
        reason: EndReason::Bye,
        at: end,
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(call_id, "1-26418@127.0.0.1");
    assert_eq!((*at, *end), (t(2), t(4)));
    assert_eq!(caller.dn.as_deref(), Some("sipp"));
    assert_eq!(callee.dn.as_deref(), Some("service"));
    assert_eq!(caller.media.as_ref().unwrap().addr, addr("127.0.0.1:6004"));
    assert_eq!(callee.media.as_ref().unwrap().addr, addr("127.0.0.1:6000"));
    assert!(tr.is_empty());
}

#[test]
fn a_call_in_progress_is_picked_up_from_its_reinvite() {
    let mut r = Run::new();
    // Capture starts mid-call: the first thing seen is the callee's session-refresh re-INVITE.
    let b_sdp = sdp("192.0.2.20", 5000);
    let a_sdp = sdp("192.0.2.10", 4000);
    let reinvite = msg("INVITE sip:5551234@192.0.2.10 SIP/2.0", "mid", "9 INVITE", None, true, Some(&b_sdp));
    r.feed(100, false, &reinvite);
    assert!(r.drain().is_empty(), "nothing before its 2xx");
    let ok = msg("SIP/2.0 200 OK", "mid", "9 INVITE", None, true, Some(&a_sdp));
    r.feed(100, true, &ok);
    let ev = r.drain();
    let [CallEvent::Answered { caller, callee, at, .. }] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(*at, t(100));
    assert_eq!(caller.dn.as_deref(), Some("2001"));
    assert_eq!(caller.media.as_ref().unwrap().addr, addr("192.0.2.20:5000"));
    assert_eq!(callee.dn.as_deref(), Some("5551234"));
    assert_eq!(callee.media.as_ref().unwrap().addr, addr("192.0.2.10:4000"));
    assert_eq!(r.tr.stats().picked_up, 1);
    // Its BYE ends it.
    r.feed(200, true, &msg("BYE sip:2001@192.0.2.20 SIP/2.0", "mid", "3 BYE", Some("b1"), false, None));
    assert!(matches!(r.drain()[..], [CallEvent::Ended { reason: EndReason::Bye, .. }]));
    // A re-INVITE of a call that just ended, or one without SDP, picks up nothing.
    r.feed(201, false, &msg("INVITE sip:5551234@192.0.2.10 SIP/2.0", "mid", "10 INVITE", None, true, Some(&b_sdp)));
    r.feed(201, false, &msg("INVITE sip:5551234@192.0.2.10 SIP/2.0", "other", "4 INVITE", None, true, None));
    r.feed(202, true, &msg("SIP/2.0 200 OK", "other", "4 INVITE", None, true, Some(&a_sdp)));
    assert!(r.drain().is_empty());
    assert_eq!(r.tr.stats().picked_up, 1);
}
