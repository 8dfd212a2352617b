//! Mutated SIP, SDP, MSML and Request-URIs never panic the parsers or the control core, and
//! a broken call never touches another: a clean call interleaved with a mutated one is still
//! recorded, and at the end every recording started was stopped and every flow installed was
//! removed. Deterministic (a fixed xorshift seed), so a failure names its iteration.

use callrec::config::Config;
use callrec::control::core::{ControlConfig, ControlCore, Output};
use callrec::control::msml::MsmlRequest;
use callrec::control::sdp::SessionDescription;
use callrec::control::sip::SipMessage;
use callrec::control::uri::RequestUri;
use callrec_pipeline::flow::{FlowKey, FlowUpdate};
use callrec_pipeline::writer::{OutputFormat, WriterMsg};
use callrec_pipeline::Timestamp;
use std::collections::HashSet;
use std::net::SocketAddr;

const CALL: [&[u8]; 6] = [
    include_bytes!("data/sip/sipp-uac-basic/00-a2b-INVITE.sip"),
    include_bytes!("data/sip/sipp-uac-basic/01-b2a-180-INVITE.sip"),
    include_bytes!("data/sip/sipp-uac-basic/02-b2a-200-INVITE.sip"),
    include_bytes!("data/sip/sipp-uac-basic/03-a2b-ACK.sip"),
    include_bytes!("data/sip/sipp-uac-basic/04-a2b-BYE.sip"),
    include_bytes!("data/sip/sipp-uac-basic/05-b2a-200-BYE.sip"),
];

const MSML: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?>
<msml version="1.1">
  <dialogstart target="conf:c1" name="record" type="application/moml+xml">
    <record dest="file:///rec/c1.wav" format="audio/wav;codec=pcma"/>
  </dialogstart>
</msml>"#;

const ITERS: usize = 800;

const URI: &[u8] = b"sip:msml=callrec-0000000a@127.0.0.1:5070;dn=20%2501;record";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b":;,<>@%\"\r\n \t0912=/-+.x\x00\xff";

/// One to three random edits: byte changes, deletions, duplications, truncation, a huge or
/// signed number.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len());
        match rng.below(7) {
            0 => v[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => v[at] = rng.next() as u8,
            2 => {
                let end = (at + rng.below(40)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(80)).min(v.len());
                let dup = v[at..end].to_vec();
                v.splice(at..at, dup);
            }
            4 => v.truncate(at),
            5 => {
                let n: &[u8] = [
                    &b"99999999999999999999999"[..],
                    b"65536",
                    b"0",
                    b"-1",
                    b"4294967296",
                ][rng.below(5)];
                v.splice(at..at, n.iter().copied());
            }
            _ => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
        }
        if v.is_empty() {
            break;
        }
    }
    v
}

/// The same call under another Call-ID, tags, branches and media ports.
fn renamed(msg: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(msg)
        .replace("1-26418@", "clean-1@")
        .replace("SIPpTag0", "CleanTag0")
        .replace("z9hG4bK-", "z9hG4bK-clean-")
        .replace("m=audio 6004", "m=audio 7004")
        .replace("m=audio 6000", "m=audio 7000")
        .into_bytes()
}

fn core() -> ControlCore {
    let mut config = Config::default();
    config.add_recorded_dns(&["service".to_string()]);
    ControlCore::new(ControlConfig {
        config,
        writers: 2,
        out_dir: "/nonexistent-callrec-test".into(),
        format: OutputFormat::G711,
        conf_id_prefix: "mut".into(),
    })
    .unwrap()
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct Effects {
    started: usize,
    stopped: usize,
    installed: HashSet<FlowKey>,
}

fn drain(core: &mut ControlCore, fx: &mut Effects) {
    while let Some(out) = core.poll_output() {
        match out {
            Output::Writer {
                msg: WriterMsg::Start(_),
                ..
            } => fx.started += 1,
            Output::Writer {
                msg: WriterMsg::Stop { .. },
                ..
            } => fx.stopped += 1,
            Output::Flow(FlowUpdate::Install(k, _)) => {
                fx.installed.insert(k);
            }
            Output::Flow(FlowUpdate::Remove(k)) => {
                fx.installed.remove(&k);
            }
            _ => {}
        }
    }
}

#[test]
fn the_clean_call_alone_is_recorded() {
    let mut c = core();
    let mut fx = Effects::default();
    let (ua, ub) = (a("127.0.0.1:15060"), a("127.0.0.1:15070"));
    for (i, m) in CALL.iter().enumerate() {
        let (src, dst) = if m.starts_with(b"SIP/2.0") {
            (ub, ua)
        } else {
            (ua, ub)
        };
        c.handle_sip(
            Timestamp(1_000_000_000 * (i as u64 + 1)),
            src,
            dst,
            &renamed(m),
        );
        drain(&mut c, &mut fx);
    }
    c.finish(Timestamp(10_000_000_000));
    drain(&mut c, &mut fx);
    assert_eq!((fx.started, fx.stopped), (1, 1));
    assert!(fx.installed.is_empty());
}

#[test]
fn mutated_messages_never_panic_and_never_touch_the_clean_call() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (ua, ub) = (a("127.0.0.1:15060"), a("127.0.0.1:15070"));
    for iter in 0..ITERS {
        let mut c = core();
        let mut fx = Effects::default();
        let bad = rng.below(CALL.len());
        let mut t = 1_000_000_000u64;
        for (i, m) in CALL.iter().enumerate() {
            let (src, dst) = if m.starts_with(b"SIP/2.0") {
                (ub, ua)
            } else {
                (ua, ub)
            };
            let mutated = if i == bad {
                mutate(&mut rng, m)
            } else {
                m.to_vec()
            };
            // Every parser on its own must survive the bytes.
            if let Ok(msg) = SipMessage::parse(&mutated) {
                if let Some(sdp) = msg.sdp_body() {
                    let _ = SessionDescription::parse(sdp);
                }
            }
            c.handle_sip(Timestamp(t), src, dst, &mutated);
            drain(&mut c, &mut fx);
            c.handle_sip(Timestamp(t + 1), src, dst, &renamed(m));
            drain(&mut c, &mut fx);
            t += 1_000_000_000;
        }
        c.finish(Timestamp(t));
        drain(&mut c, &mut fx);
        assert!(
            fx.started >= 1,
            "iteration {iter}: the clean call was not recorded"
        );
        assert_eq!(
            fx.started, fx.stopped,
            "iteration {iter}: a recording was never stopped"
        );
        assert!(
            fx.installed.is_empty(),
            "iteration {iter}: flows left installed: {:?}",
            fx.installed
        );
    }
}

#[test]
fn mutated_msml_and_request_uris_never_panic() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for _ in 0..20_000 {
        let m = mutate(&mut rng, MSML);
        let _ = MsmlRequest::parse(&m);
        let u = mutate(&mut rng, URI);
        let _ = RequestUri::parse(&String::from_utf8_lossy(&u));
        let s = mutate(&mut rng, &CALL[0][CALL[0].len() - 129..]);
        let _ = SessionDescription::parse(&s);
    }
}

/// A re-INVITE (CSeq 2, in dialog) from the caller with `caller_c` as its connection line,
/// answered by the callee, then ACKed.
fn reinvite(caller_c: &str) -> [Vec<u8>; 3] {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let tag = "tag=26366SIPpTag011";
    let invite = text(CALL[0])
        .replace(
            "To: service <sip:service@127.0.0.1:15070>",
            &format!("To: service <sip:service@127.0.0.1:15070>;{tag}"),
        )
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace("branch=z9hG4bK-26418-1-0", "branch=z9hG4bK-26418-1-2")
        .replace("c=IN IP4 127.0.0.1", caller_c);
    // Content-Length must follow the body's new size.
    let fix_len = |m: String| {
        let (head, body) = m.split_once("\r\n\r\n").unwrap();
        let head: Vec<String> = head
            .split("\r\n")
            .map(|l| {
                if l.starts_with("Content-Length") {
                    format!("Content-Length: {}", body.len())
                } else {
                    l.to_string()
                }
            })
            .collect();
        format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
    };
    let ok = text(CALL[2])
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace("branch=z9hG4bK-26418-1-0", "branch=z9hG4bK-26418-1-2");
    let ack = text(CALL[3]).replace("CSeq: 1 ACK", "CSeq: 2 ACK");
    [fix_len(invite), ok.into_bytes(), ack.into_bytes()]
}

#[test]
fn hold_and_resume_reinvites_keep_the_recording_and_its_flows() {
    let mut c = core();
    let mut fx = Effects::default();
    let (ua, ub) = (a("127.0.0.1:15060"), a("127.0.0.1:15070"));
    let mut t = 0u64;
    let mut send = |c: &mut ControlCore, fx: &mut Effects, m: &[u8]| {
        t += 1_000_000_000;
        let (src, dst) = if m.starts_with(b"SIP/2.0") {
            (ub, ua)
        } else {
            (ua, ub)
        };
        c.handle_sip(Timestamp(t), src, dst, m);
        drain(c, fx);
    };
    for m in &CALL[..4] {
        send(&mut c, &mut fx, m);
    }
    let flows = fx.installed.clone();
    assert_eq!(flows.len(), 2, "{flows:?}");
    for m in reinvite("c=IN IP4 0.0.0.0") {
        send(&mut c, &mut fx, &m);
    }
    assert_eq!(fx.installed, flows, "hold moved the flows");
    for m in reinvite("c=IN IP4 127.0.0.1") {
        send(&mut c, &mut fx, &m);
    }
    assert_eq!(fx.installed, flows);
    for m in &CALL[4..] {
        send(&mut c, &mut fx, m);
    }
    assert_eq!((fx.started, fx.stopped), (1, 1));
    assert!(fx.installed.is_empty());
}

#[test]
fn capture_times_with_the_top_bit_set_do_not_panic_the_core() {
    // A damaged pcapng can give any u64 nanoseconds; call tracking compares them with
    // `nanos_since`, which overflowed (a debug-build panic) before it saturated.
    let mut c = core();
    let mut fx = Effects::default();
    let (ua, ub) = (a("127.0.0.1:15060"), a("127.0.0.1:15070"));
    let times = [
        1u64 << 63,
        (1 << 63) + 1,
        u64::MAX,
        5,
        1_700_000_000_000_000_000,
        0,
    ];
    for (m, t) in CALL.iter().zip(times) {
        let (src, dst) = if m.starts_with(b"SIP/2.0") {
            (ub, ua)
        } else {
            (ua, ub)
        };
        c.handle_sip(Timestamp(t), src, dst, m);
        drain(&mut c, &mut fx);
    }
    for (m, t) in CALL.iter().zip(times.iter().rev()) {
        let (src, dst) = if m.starts_with(b"SIP/2.0") {
            (ub, ua)
        } else {
            (ua, ub)
        };
        c.handle_sip(Timestamp(*t), src, dst, &renamed(m));
        drain(&mut c, &mut fx);
        let _ = c.poll_timeout();
        c.handle_timeout(Timestamp(*t));
        drain(&mut c, &mut fx);
    }
    c.finish(Timestamp(u64::MAX));
    drain(&mut c, &mut fx);
    assert_eq!(fx.started, fx.stopped);
    assert!(fx.installed.is_empty());
}

/// The attended-transfer flow (hold, consultation, REFER with Replaces, INVITE with Replaces):
/// every datagram with its addresses from the file name.
fn transfer_flow() -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip/attended-transfer");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let parts: Vec<&str> = name.split('-').collect();
            let addr = |s: &str| a(&s.replacen('_', ":", 1));
            (addr(parts[1]), addr(parts[2]), std::fs::read(p).unwrap())
        })
        .collect()
}

fn trunk_core() -> ControlCore {
    let config = Config::parse("[[trunk]]\ndn = \"trunk1\"\ndn_pattern = \"+1555*\"\nrecord = true\n").unwrap();
    ControlCore::new(ControlConfig { config, writers: 2, out_dir: "/nonexistent-callrec-test".into(), format: OutputFormat::G711, conf_id_prefix: "mut".into() })
        .unwrap()
}

#[test]
fn the_attended_transfer_is_one_recording() {
    let mut c = trunk_core();
    let mut fx = Effects::default();
    for (i, (src, dst, m)) in transfer_flow().iter().enumerate() {
        c.handle_sip(Timestamp(1_000_000_000 * (i as u64 + 1)), *src, *dst, m);
        drain(&mut c, &mut fx);
    }
    assert_eq!((fx.started, fx.stopped), (1, 1));
    assert!(fx.installed.is_empty());
}

#[test]
fn mutated_transfer_messages_never_panic_and_every_recording_ends() {
    let flow = transfer_flow();
    let mut rng = Rng(0xC0FF_EE12_3456_789B);
    for iter in 0..ITERS {
        let mut c = trunk_core();
        let mut fx = Effects::default();
        let bad = rng.below(flow.len());
        for (i, (src, dst, m)) in flow.iter().enumerate() {
            let bytes = if i == bad { mutate(&mut rng, m) } else { m.clone() };
            if let Ok(msg) = SipMessage::parse(&bytes) {
                let _ = (msg.refer_target(), msg.replaces(), msg.referred_by_user(), msg.contact_is_focus());
            }
            c.handle_sip(Timestamp(1_000_000_000 * (i as u64 + 1)), *src, *dst, &bytes);
            drain(&mut c, &mut fx);
        }
        c.finish(Timestamp(100_000_000_000));
        drain(&mut c, &mut fx);
        assert!(fx.started <= 2, "iteration {iter}: {} recordings for one call and its consultation", fx.started);
        assert_eq!(fx.started, fx.stopped, "iteration {iter}: a recording was never stopped");
        assert!(fx.installed.is_empty(), "iteration {iter}: flows left installed: {:?}", fx.installed);
    }
}
