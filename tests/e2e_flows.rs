//! End-to-end: recording through the call flows of a contact centre. Each flow of
//! scripts/flows/make-flow.sh (hold by re-INVITE sendonly / inactive / c=0.0.0.0 and by
//! UPDATE, blind and triple blind transfer, attended transfer with
//! Replaces, 302 redirect, focus conference, local three-way) is captured once with real SIPp
//! parties and RTP in a network namespace; `callrec replay` then records it with a customer-side
//! trigger (a Trunk DN matching the customer) and with agent-side ones (`--record-dn`), and
//! every recording is checked against tshark's decode: one file per recording, each channel
//! segment by segment against the stream it should carry (correlation >= 0.97, in place within
//! 80 ms), silence on hold, the file's ends at the right SIP events, and the sidecar's
//! `parties`, `holds` and `call_ids`. The hold, blind, attended, redirect and conference flows
//! are also recorded live (`callrec run --port af_packet:lo` in the flow's namespace) and
//! judged the same way.
//!
//! The checks are themselves checked ("checks self-test" cases, no recorder involved):
//! recordings built here from the capture's own streams pass when correct and fail, at the
//! check that should catch it, with each defect (a channel 200 ms late, channels swapped, the
//! previous agent kept after a transfer, a conference's mix missing, the consultation heard
//! during a hold, hold silence 300 ms short, the hold cut from the timeline, a party missing
//! or 0.6 s off, Call-IDs out of order).
//!
//! All flows run in parallel threads inside ONE #[test] (their length is mostly SIPp pauses).
//! A failing case fails the test with "flow/case: what differed"; the others still run.
//! `CALLREC_FLOWS_ONLY=name[,name]` runs only those flows (`FLOW-live` records FLOW live;
//! `hold-live`, `blind-live`, `attended-live`, `redirect-live`, `conference-live` run by default);
//! `CALLREC_FLOWS_KEEP=1` keeps captures, recordings and logs.
//!
//! Needs root, `ip netns`, sipp, tcpdump and tshark; without them it prints a loud SKIP line and
//! passes.

mod common;

use common::flows::{self, agent_ip, check_channels, make_flow, recordings, FlowCapture, Rec, CUSTOMER_DN, CUSTOMER_IP};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Party intervals in the sidecar: within this of the SIP events.
const PARTY_TOL: f64 = 0.5;
/// Silence on hold: its ends within this of the SIP events.
const HOLD_TOL: f64 = 0.08;
/// A file's ends: within this of the SIP events (a packet or two plus the pcap's lead).
const END_TOL: f64 = 0.1;
/// Key SIP events of a capture: within this of their planned times (the flows leave >= 300 ms
/// between dependent steps).
const PLAN_TOL: f64 = 0.2;
/// Captures made at once (each is ~6 SIPp processes and a tcpdump, timed by pauses).
const JOBS: usize = 4;

const TRUNK_CONFIG: &str = "[[trunk]]\ndn = \"trunk1\"\ndn_pattern = \"+1555*\"\nrecord = true\n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn can_capture() -> bool {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    let netns = Command::new("ip").args(["netns", "list"]).output().map(|o| o.status.success()).unwrap_or(false);
    let tools = ["sipp", "tcpdump", "tshark"]
        .iter()
        .all(|t| Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success()));
    if is_root && netns && tools {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIP e2e_flows: needs root, `ip netns`, sipp, tcpdump and tshark (root={is_root} \
         netns={netns} tools={tools}); run scripts/install.sh and the tests as root !!!!!!!!\n"
    );
    false
}

/// How a case triggers recording.
#[derive(Clone, Copy)]
enum Trigger {
    /// `[[trunk]] dn_pattern = "+1555*"`: customer side.
    Trunk,
    /// `--record-dn` for each.
    Dns(&'static [&'static str]),
}

/// `callrec replay` of the flow's capture with `trigger` into `dir`; the recordings.
/// (For a live flow: the live run's recordings, made with the trunk configuration.)
fn replay(fc: &FlowCapture, dir: &Path, trigger: Trigger) -> Result<Vec<Rec>, String> {
    if let Some(out) = &fc.live_out {
        return match trigger {
            Trigger::Trunk => with_trace(recordings(out), &out.with_file_name("live-sip-trace.txt")),
            Trigger::Dns(_) => Err("live flows are recorded with the trunk configuration only".into()),
        };
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = dir.join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
    cmd.arg("replay").arg("--out").arg(&out).arg("--sip-trace").arg(dir.join("sip-trace.txt"));
    cmd.args(trigger_args(dir, trigger)?);
    let res = cmd.arg(&fc.cap).output().map_err(|e| format!("callrec replay: {e}"))?;
    std::fs::write(dir.join("replay.log"), [&res.stdout[..], &res.stderr[..]].concat()).ok();
    if !res.status.success() {
        return Err(format!("callrec replay failed ({}): {}", res.status, String::from_utf8_lossy(&res.stderr)));
    }
    with_trace(recordings(&out), &dir.join("sip-trace.txt"))
}

fn with_trace(recs: Result<Vec<Rec>, String>, trace: &Path) -> Result<Vec<Rec>, String> {
    let mut recs = recs?;
    for r in &mut recs {
        r.trace = trace.is_file().then(|| trace.to_path_buf());
    }
    Ok(recs)
}

fn trigger_args(dir: &Path, trigger: Trigger) -> Result<Vec<String>, String> {
    Ok(match trigger {
        Trigger::Trunk => {
            let cfg = dir.join("callrec.toml");
            std::fs::write(&cfg, TRUNK_CONFIG).map_err(|e| e.to_string())?;
            vec!["--config".into(), cfg.display().to_string()]
        }
        Trigger::Dns(dns) => dns.iter().flat_map(|d| ["--record-dn".to_string(), d.to_string()]).collect(),
    })
}

/// Exactly one recording.
fn one(recs: Vec<Rec>) -> Result<Rec, String> {
    if recs.len() == 1 {
        return recs.into_iter().next().ok_or_else(|| "no recording".into());
    }
    let each: Vec<String> = recs.iter().map(|r| format!("call_ids {:?} {:.2} s", r.call_ids(), r.secs)).collect();
    Err(format!("expected one recording, got {}: [{}]", recs.len(), each.join("; ")))
}

/// The checks of one case: every check runs; all failures are reported together.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn add(&mut self, what: &str, r: Result<(), String>) {
        if let Err(e) = r {
            self.0.push(format!("{what}: {e}"));
        }
    }

    fn done(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} check(s) failed:\n    - {}", self.0.len(), self.0.join("\n    - ")))
        }
    }
}

fn expect_call_ids(rec: &Rec, want: &[&str]) -> Result<(), String> {
    let got = rec.call_ids();
    if got != want {
        return Err(format!("call_ids {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn connection_id(rec: &Rec) -> Result<(), String> {
    match rec.sc["connection_id"].as_str() {
        Some(c) if !c.is_empty() => Ok(()),
        _ => Err(format!("no connection_id in the sidecar {}", rec.path.display())),
    }
}

// ------------------------------------------------------------------------------------ flows

/// hold: left C, right A1 outside the hold; both silent from the hold's 200 to the resume's;
/// the timeline kept; one `holds` entry.
fn hold(fc: &FlowCapture, dir: &Path, trigger: Trigger) -> Result<(), String> {
    hold_with(fc, |_| one(replay(fc, dir, trigger)?))
}

/// The hold flow's times and streams: D1's answer, hold, resume (their 200 OKs) and BYE.
struct HoldT {
    cid: String,
    t: [f64; 4],
    c: flows::Ref,
    a: flows::Ref,
}

/// Checks the recording `rec` makes from the flow's times and streams.
fn hold_with(fc: &FlowCapture, rec: impl FnOnce(&HoldT) -> Result<Rec, String>) -> Result<(), String> {
    let d1 = &fc.dialog("D1")?;
    let oks = fc.sdp_oks(d1);
    let [ans, held, resumed] = oks[..] else { return Err(format!("capture: {} 200 OKs to INVITE/UPDATE in {d1}, expected 3", oks.len())) };
    let bye = fc.bye(d1)?;
    let (c, a) = (fc.one(&fc.stream(d1, CUSTOMER_IP)?)?, fc.one(&fc.stream(d1, &agent_ip("2001"))?)?);
    let h = HoldT { cid: d1.to_string(), t: [ans, held, resumed, bye], c, a };
    let rec = rec(&h)?;
    let (c, a) = (&h.c, &h.a);
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(ans, bye, END_TOL));
    ck.add("audio", check_channels(&rec, &vec![(c, ans, held), (c, resumed, bye)], &vec![(a, ans, held), (a, resumed, bye)]));
    ck.add("hold silence", rec.silent(held, resumed, HOLD_TOL).map_err(|e| format!("hold: {e}")));
    ck.add("holds", rec.check_holds(&[(held, resumed)], PARTY_TOL));
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", ans, bye), ("2001", "right", ans, bye)], true, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(&rec, &[d1.as_str()]));
    ck.add("connection_id", connection_id(&rec));
    ck.done()
}

/// The hold checks on synthetic recordings: a correct one passes; silence ending 300 ms
/// early, no `holds` entry, or the hold cut out of the timeline fail.
fn hold_self_test(fc: &FlowCapture, _dir: &Path) -> Result<(), String> {
    let make = |h: &HoldT, resume_at: f64, holds: bool| {
        let [ans, held, _, bye] = h.t;
        let mut sc = sidecar(&[h.cid.as_str()], &[(CUSTOMER_DN, "left", ans, bye), ("2001", "right", ans, bye)]);
        if holds {
            sc["holds"] = json!([{"from": flows::rfc3339(held), "to": flows::rfc3339(h.t[2])}]);
        }
        flows::synthetic(ans, bye, &[(&h.c, ans, held), (&h.c, resume_at, bye)], &[(&h.a, ans, held), (&h.a, resume_at, bye)], sc)
    };
    expect_caught(
        "hold",
        hold_with(fc, |h| Ok(make(h, h.t[2], true))),
        vec![
            ("the silence ending 300 ms early", "hold silence", hold_with(fc, |h| Ok(make(h, h.t[2] - 0.3, true)))),
            ("no holds entry", "holds", hold_with(fc, |h| Ok(make(h, h.t[2], false)))),
            (
                "the hold cut out of the timeline",
                "file span",
                hold_with(fc, |h| {
                    let mut r = make(h, h.t[2], true);
                    let (a, b) = (((h.t[1] - h.t[0]) * 8000.0) as usize, ((h.t[2] - h.t[0]) * 8000.0) as usize);
                    for c in &mut r.wav.chans {
                        c.drain(a..b);
                    }
                    r.secs = r.wav.chans[0].len() as f64 / 8000.0;
                    Ok(r)
                }),
            ),
        ],
    )
}

/// The times of one blind transfer chain's dialogs.
struct Leg {
    cid: String,
    answered: f64,
    refer: Option<f64>,
    bye: f64,
    cust: flows::Ref,
    agent: flows::Ref,
    dn: String,
}

fn chain(fc: &FlowCapture, flow: &str, dns: &[&str]) -> Result<Vec<Leg>, String> {
    dns.iter()
        .enumerate()
        .map(|(k, dn)| {
            let cid = format!("{flow}-d{}@192.0.2.10", k + 1);
            Ok(Leg {
                answered: fc.answered(&cid)?,
                refer: if k + 1 < dns.len() { Some(fc.request(&cid, "REFER")?) } else { None },
                bye: fc.bye(&cid)?,
                cust: fc.one(&fc.stream(&cid, CUSTOMER_IP)?)?,
                agent: fc.one(&fc.stream(&cid, &agent_ip(dn))?)?,
                dn: dn.to_string(),
                cid,
            })
        })
        .collect()
}

/// One file through every leg of a blind chain: left C's stream of each dialog (answer to its
/// REFER), silence between; right each agent from when the previous one left to the next
/// dialog's answer (while two agents send, either may be on the right: not judged).
fn check_chain(rec: &Rec, legs: &[Leg]) -> Result<(), String> {
    let last = legs.last().ok_or("no legs")?;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(legs[0].answered, last.bye, END_TOL));
    let mut left = Vec::new();
    let mut right = Vec::new();
    for (k, l) in legs.iter().enumerate() {
        left.push((&l.cust, l.answered, l.refer.unwrap_or(l.bye)));
        let from = if k == 0 { l.answered } else { legs[k - 1].bye };
        let to = legs.get(k + 1).map_or(l.bye, |n| n.answered);
        right.push((&l.agent, from, to));
        if let (Some(refer), Some(n)) = (l.refer, legs.get(k + 1)) {
            ck.add("left between transfers", rec.channel_silent(0, refer, n.answered).map_err(|e| format!("between C's REFER and its new dialog: {e}")));
        }
    }
    ck.add("audio", check_channels(rec, &left, &right));
    let mut want = vec![(CUSTOMER_DN, "left", legs[0].answered, last.bye)];
    want.extend(legs.iter().map(|l| (l.dn.as_str(), "right", l.answered, l.bye)));
    ck.add("parties", rec.check_parties(&want, true, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(rec, &legs.iter().map(|l| l.cid.as_str()).collect::<Vec<_>>()));
    ck.add("connection_id", connection_id(rec));
    ck.done()
}

fn blind_trunk(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind", &["2001", "2002"])?;
    check_chain(&one(replay(fc, dir, Trigger::Trunk)?)?, &legs)
}

/// `--record-dn 2001`: the recording ends when A1 leaves (D1's BYE), right = A1 throughout.
fn blind_2001(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind", &["2001", "2002"])?;
    let l = &legs[0];
    let rec = one(replay(fc, dir, Trigger::Dns(&["2001"]))?)?;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(l.answered, l.bye, END_TOL));
    let refer = l.refer.ok_or("no REFER")?;
    ck.add("audio", check_channels(&rec, &vec![(&l.cust, l.answered, refer)], &vec![(&l.agent, l.answered, l.bye)]));
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", l.answered, l.bye), ("2001", "right", l.answered, l.bye)], false, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(&rec, &[&l.cid]));
    ck.done()
}

/// `--record-dn 2001 --record-dn 2002`: one file through both agents.
fn blind_both(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind", &["2001", "2002"])?;
    check_chain(&one(replay(fc, dir, Trigger::Dns(&["2001", "2002"]))?)?, &legs)
}

fn blind3_trunk(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind3", &["2001", "2002", "2003", "2004"])?;
    check_chain(&one(replay(fc, dir, Trigger::Trunk)?)?, &legs)
}

/// `--record-dn 2003`: from A3's answer to A3's leaving, right = A3.
fn blind3_2003(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind3", &["2001", "2002", "2003", "2004"])?;
    let l = &legs[2];
    let rec = one(replay(fc, dir, Trigger::Dns(&["2003"]))?)?;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(l.answered, l.bye, END_TOL));
    let refer = l.refer.ok_or("no REFER")?;
    ck.add("audio", check_channels(&rec, &vec![(&l.cust, l.answered, refer)], &vec![(&l.agent, l.answered, l.bye)]));
    ck.add("parties", rec.check_parties(&[("2003", "right", l.answered, l.bye)], false, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(&rec, &[&l.cid]));
    ck.done()
}

/// attended: right A1, silence from the hold's 200 to D3's answer (the consultation is not in
/// the file), then A2 in D3; left C in D1 then D3.
fn attended(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    attended_with(fc, |_| one(replay(fc, dir, Trigger::Trunk)?))
}

/// The attended flow's times (D1 answer, hold, D1 BYE, D3 answer, D3 BYE) and streams (C in D1
/// and D3, A1 in D1, A2 in D3, A1 in the consultation D2).
struct AttT {
    t: [f64; 5],
    refs: [flows::Ref; 5],
}

fn attended_with(fc: &FlowCapture, rec: impl FnOnce(&AttT) -> Result<Rec, String>) -> Result<(), String> {
    let (d1, d2, d3) = ("att-d1@192.0.2.10", "att-d2@192.0.2.21", "att-d3@192.0.2.10");
    let oks = fc.invite_oks(d1);
    let [a1, held] = oks[..] else { return Err(format!("capture: {} 200 OKs to INVITE in {d1}, expected 2", oks.len())) };
    let (b1, a3, b3) = (fc.bye(d1)?, fc.answered(d3)?, fc.bye(d3)?);
    let refs = [
        fc.one(&fc.stream(d1, CUSTOMER_IP)?)?,
        fc.one(&fc.stream(d3, CUSTOMER_IP)?)?,
        fc.one(&fc.stream(d1, &agent_ip("2001"))?)?,
        fc.one(&fc.stream(d3, &agent_ip("2002"))?)?,
        fc.one(&fc.stream(d2, &agent_ip("2001"))?)?,
    ];
    let at = AttT { t: [a1, held, b1, a3, b3], refs };
    let rec = rec(&at)?;
    let [c1, c3, ag1, ag2, _] = &at.refs;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(a1, b3, END_TOL));
    ck.add("audio", check_channels(&rec, &vec![(c1, a1, held), (c3, a3, b3)], &vec![(ag1, a1, held), (ag2, a3, b3)]));
    ck.add("hold silence", rec.silent(held, a3, HOLD_TOL).map_err(|e| format!("hold until D3 answered (no consultation audio): {e}")));
    let holds = rec.sc["holds"].as_array().map(|h| h.len());
    if holds != Some(1) {
        ck.add("holds", Err(format!("expected one entry, sidecar has {}", rec.sc["holds"])));
    }
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", a1, b3), ("2001", "right", a1, b1), ("2002", "right", a3, b3)], true, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(&rec, &[d1, d3]));
    ck.add("connection_id", connection_id(&rec));
    ck.done()
}

/// The attended checks on synthetic recordings: a correct one passes; one with the
/// consultation (A1 to A2) on the right during the hold fails.
fn attended_self_test(fc: &FlowCapture, _dir: &Path) -> Result<(), String> {
    let make = |at: &AttT, leak: bool| {
        let [a1, held, b1, a3, b3] = at.t;
        let [c1, c3, ag1, ag2, consult] = &at.refs;
        let mut sc = sidecar(
            &["att-d1@192.0.2.10", "att-d3@192.0.2.10"],
            &[(CUSTOMER_DN, "left", a1, b3), ("2001", "right", a1, b1), ("2002", "right", a3, b3)],
        );
        sc["holds"] = json!([{"from": flows::rfc3339(held), "to": flows::rfc3339(a3)}]);
        let mut right = vec![(ag1, a1, held), (ag2, a3, b3)];
        if leak {
            right.push((consult, held, a3));
        }
        flows::synthetic(a1, b3, &[(c1, a1, held), (c3, a3, b3)], &right, sc)
    };
    expect_caught(
        "attended",
        attended_with(fc, |at| Ok(make(at, false))),
        vec![("the consultation on the right during the hold", "hold silence", attended_with(fc, |at| Ok(make(at, true))))],
    )
}

/// redirect: one Call-ID, 302 from A1 then 200 from A2: left C, right A2, parties C and 2002.
fn redirect_check(fc: &FlowCapture, rec: &Rec) -> Result<(), String> {
    let d1 = "redir-d1@192.0.2.10";
    let (ans, bye) = (fc.answered(d1)?, fc.bye(d1)?);
    let (c, a) = (fc.one(&fc.stream(d1, CUSTOMER_IP)?)?, fc.one(&fc.stream(d1, &agent_ip("2002"))?)?);
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(ans, bye, END_TOL));
    ck.add("audio", check_channels(rec, &vec![(&c, ans, bye)], &vec![(&a, ans, bye)]));
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", ans, bye), ("2002", "right", ans, bye)], true, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    ck.add("call_ids", expect_call_ids(rec, &[d1]));
    ck.done()
}

fn redirect_trunk(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    redirect_check(fc, &one(replay(fc, dir, Trigger::Trunk)?)?)
}

fn redirect_2001(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let recs = replay(fc, dir, Trigger::Dns(&["2001"]))?;
    if !recs.is_empty() {
        return Err(format!("2001 redirected the call (302) and never talked, yet {} recording(s) were made", recs.len()));
    }
    Ok(())
}

fn redirect_2002(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    redirect_check(fc, &one(replay(fc, dir, Trigger::Dns(&["2002"]))?)?)
}

/// conference: left C (D1, then C->focus); right A1 (D1), A1->focus, the mix of A1->focus and
/// A2->focus while A2 is in, A1->focus again; parties C, 2001, 2002 (D4's answer..BYE).
/// The conference's dialogs, times and references.
struct Conf {
    ids: [&'static str; 4],
    /// D1 answered, REFER, D3 answered, D4 answered, D4 BYE, D3 BYE.
    t: [f64; 6],
    c1: flows::Ref,
    c3: flows::Ref,
    ag1: flows::Ref,
    f1: flows::Ref,
    f2: flows::Ref,
    mix: flows::Ref,
    /// A1->focus and A2->focus.
    keys: (common::judge::StreamKey, common::judge::StreamKey),
}

fn conf(fc: &FlowCapture) -> Result<Conf, String> {
    let ids @ [d1, d2, d3, d4] = ["conf-d1@192.0.2.10", "conf-d2@192.0.2.21", "conf-d3@192.0.2.10", "conf-d4@192.0.2.22"];
    let t = [fc.answered(d1)?, fc.request(d1, "REFER")?, fc.answered(d3)?, fc.answered(d4)?, fc.bye(d4)?, fc.bye(d3)?];
    let (k1, k2) = (fc.stream(d2, &agent_ip("2001"))?, fc.stream(d4, &agent_ip("2002"))?);
    Ok(Conf {
        ids,
        t,
        c1: fc.one(&fc.stream(d1, CUSTOMER_IP)?)?,
        c3: fc.one(&fc.stream(d3, CUSTOMER_IP)?)?,
        ag1: fc.one(&fc.stream(d1, &agent_ip("2001"))?)?,
        f1: fc.one(&k1)?,
        f2: fc.one(&k2)?,
        mix: fc.mix(&k1, &k2)?,
        keys: (k1, k2),
    })
}

fn conference(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let mut cf = conf(fc)?;
    let rec = one(replay(fc, dir, Trigger::Trunk)?)?;
    // Each agent's stream may sit up to a packet off the decode's layout (anchored on the
    // first packet recorded); the sum is judged with each stream where the file has it: A1's
    // shift from where it is alone, A2's from the mix given A1's.
    let [_, _, a3, a4, b4, _] = cf.t;
    let (k1, k2) = cf.keys.clone();
    let max = 0.03;
    let s1 = rec.best_shift(1, a3 + 0.3, a4 - 0.1, max, |s| fc.one_shifted(&k1, s).expect("stream A1->focus"));
    let s2 = rec.best_shift(1, a4 + 0.3, b4 - 0.3, max, |s| fc.mix_shifted(&k1, &k2, s1, s).expect("streams A1, A2 ->focus"));
    cf.mix = fc.mix_shifted(&k1, &k2, s1, s2)?;
    conference_check(&cf, &rec)
}

/// conference: left C (D1, then C->focus); right A1 (D1), A1->focus, the mix of A1->focus and
/// A2->focus while A2 is in, A1->focus again; parties C, 2001, 2002 (D4's answer..BYE).
fn conference_check(cf: &Conf, rec: &Rec) -> Result<(), String> {
    let [a1, refer, a3, a4, b4, b3] = cf.t;
    let [d1, d2, d3, d4] = cf.ids;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(a1, b3, END_TOL));
    ck.add(
        "audio",
        check_channels(
            rec,
            &vec![(&cf.c1, a1, refer), (&cf.c3, a3, b3)],
            &vec![(&cf.ag1, a1, refer), (&cf.f1, a3, a4), (&cf.mix, a4, b4), (&cf.f1, b4, b3)],
        ),
    );
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", a1, b3), ("2001", "right", a1, b3), ("2002", "right", a4, b4)], true, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    let ids = rec.call_ids();
    let mut sorted = ids.clone();
    sorted.sort();
    if ids.first().map(String::as_str) != Some(d1) || sorted != [d1, d2, d3, d4] {
        ck.add("call_ids", Err(format!("{ids:?}, expected {d1} first and all of {:?}", [d1, d2, d3, d4])));
    }
    ck.add("connection_id", connection_id(rec));
    ck.done()
}

/// local3: A1's phone mixes; right = A1's D1 stream; silence on hold; 2002 a party from the
/// resume to D2's BYE.
fn local3(fc: &FlowCapture, dir: &Path) -> Result<(), String> {
    let (d1, d2) = ("loc-d1@192.0.2.10", "loc-d2@192.0.2.21");
    let oks = fc.invite_oks(d1);
    let [a1, held, resumed] = oks[..] else { return Err(format!("capture: {} 200 OKs to INVITE in {d1}, expected 3", oks.len())) };
    let (b1, b2) = (fc.bye(d1)?, fc.bye(d2)?);
    let (c, a) = (fc.one(&fc.stream(d1, CUSTOMER_IP)?)?, fc.one(&fc.stream(d1, &agent_ip("2001"))?)?);
    let rec = one(replay(fc, dir, Trigger::Trunk)?)?;
    let mut ck = Checks::default();
    ck.add("file span", rec.spans(a1, b1, END_TOL));
    ck.add("audio", check_channels(&rec, &vec![(&c, a1, held), (&c, resumed, b1)], &vec![(&a, a1, held), (&a, resumed, b1)]));
    ck.add("hold silence", rec.silent(held, resumed, HOLD_TOL).map_err(|e| format!("hold: {e}")));
    ck.add("holds", rec.check_holds(&[(held, resumed)], PARTY_TOL));
    ck.add("parties", rec.check_parties(&[(CUSTOMER_DN, "left", a1, b1), ("2001", "right", a1, b1), ("2002", "right", resumed, b2)], false, PARTY_TOL));
    ck.add("mcp", rec.check_mcp(END_TOL));
    if rec.call_ids().first().map(String::as_str) != Some(d1) {
        ck.add("call_ids", Err(format!("{:?}, expected {d1} first", rec.call_ids())));
    }
    ck.add("connection_id", connection_id(&rec));
    ck.done()
}

/// A sidecar for a synthetic recording.
fn sidecar(call_ids: &[&str], parties: &[(&str, &str, f64, f64)]) -> serde_json::Value {
    let parties: Vec<_> = parties
        .iter()
        .map(|(dn, ch, from, to)| json!({"dn": dn, "channel": ch, "from": flows::rfc3339(*from), "to": flows::rfc3339(*to)}))
        .collect();
    json!({"call_ids": call_ids, "connection_id": "synthetic", "parties": parties, "holds": []})
}

/// Every defect is caught by the check it names; the correct recording passes.
fn expect_caught(flow: &str, good: Result<(), String>, bad: Vec<(&str, &str, Result<(), String>)>) -> Result<(), String> {
    good.map_err(|e| format!("{flow}: a correct synthetic recording failed the checks: {e}"))?;
    for (defect, check, r) in bad {
        match r {
            Ok(()) => return Err(format!("{flow}: a recording with {defect} passed the checks")),
            Err(e) if !e.contains(&format!("- {check}:")) && !e.starts_with(check) => {
                return Err(format!("{flow}: {defect} was not caught by the {check} check: {e}"))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The blind checks on recordings made here from the capture's streams: a correct one passes,
/// one with each defect fails where it should. Needs no recorder: proves the checks.
fn blind_self_test(fc: &FlowCapture, _dir: &Path) -> Result<(), String> {
    let legs = chain(fc, "blind", &["2001", "2002"])?;
    let (l1, l2) = (&legs[0], &legs[1]);
    let refer = l1.refer.ok_or("no REFER")?;
    let left = [(&l1.cust, l1.answered, refer), (&l2.cust, l2.answered, l2.bye)];
    let right = [(&l1.agent, l1.answered, l1.bye), (&l2.agent, l1.bye, l2.bye)];
    let parties = [(CUSTOMER_DN, "left", l1.answered, l2.bye), ("2001", "right", l1.answered, l1.bye), ("2002", "right", l2.answered, l2.bye)];
    let ids = [l1.cid.as_str(), l2.cid.as_str()];
    let make = |end: f64, right: &[(&flows::Ref, f64, f64)], ids: &[&str], parties: &[(&str, &str, f64, f64)]| {
        flows::synthetic(l1.answered, end, &left, right, sidecar(ids, parties))
    };
    let good = make(l2.bye, &right, &ids, &parties);
    let mut late = make(l2.bye, &right, &ids, &parties);
    late.wav.chans[1].splice(0..0, std::iter::repeat_n(8.0, 1600));
    let n = late.wav.chans[0].len();
    late.wav.chans[1].truncate(n);
    let mut swapped = make(l2.bye, &right, &ids, &parties);
    swapped.wav.chans.swap(0, 1);
    let stays = make(l2.bye, &right[..1], &ids, &parties);
    let short = make(l1.bye, &right, &ids, &parties);
    let no_a2 = make(l2.bye, &right, &ids, &parties[..2]);
    let a2_late = make(l2.bye, &right, &ids, &[parties[0], parties[1], ("2002", "right", l1.bye + 0.6, l2.bye)]);
    let reversed = make(l2.bye, &right, &[ids[1], ids[0]], &parties);
    expect_caught(
        "blind",
        check_chain(&good, &legs),
        vec![
            ("the right channel 200 ms late", "audio", check_chain(&late, &legs)),
            ("the channels swapped", "audio", check_chain(&swapped, &legs)),
            ("A1 kept on the right after the transfer", "audio", check_chain(&stays, &legs)),
            ("the file ending at A1's BYE", "file span", check_chain(&short, &legs)),
            ("2002 missing from the parties", "parties", check_chain(&no_a2, &legs)),
            ("2002's interval 0.6 s late", "parties", check_chain(&a2_late, &legs)),
            ("the call_ids reversed", "call_ids", check_chain(&reversed, &legs)),
        ],
    )
}

/// The conference checks on synthetic recordings: the mix passes; A1 alone or A2 alone on the
/// right while both are in fails.
fn conference_self_test(fc: &FlowCapture, _dir: &Path) -> Result<(), String> {
    let cf = conf(fc)?;
    let [a1, refer, a3, a4, b4, b3] = cf.t;
    let left = [(&cf.c1, a1, refer), (&cf.c3, a3, b3)];
    let sc = sidecar(&cf.ids, &[(CUSTOMER_DN, "left", a1, b3), ("2001", "right", a1, b3), ("2002", "right", a4, b4)]);
    let make = |during: &flows::Ref| {
        flows::synthetic(a1, b3, &left, &[(&cf.ag1, a1, refer), (&cf.f1, refer, a4), (during, a4, b4), (&cf.f1, b4, b3)], sc.clone())
    };
    expect_caught(
        "conference",
        conference_check(&cf, &make(&cf.mix)),
        vec![
            ("A1 alone on the right while A2 is in", "audio", conference_check(&cf, &make(&cf.f1))),
            ("A2 alone on the right while A2 is in", "audio", conference_check(&cf, &make(&cf.f2))),
        ],
    )
}

/// `flow` recorded live on the namespace's lo (`callrec run --port af_packet:lo`, trunk
/// configuration) while it is captured; its "trunk" case then judges the live files.
fn live(root: &Path, flow: &str, dir: &Path) -> Result<FlowCapture, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = dir.join("live-out");
    let mut args = vec![
        env!("CARGO_BIN_EXE_callrec").to_string(),
        "run".into(),
        "--port".into(),
        "af_packet:lo".into(),
        "--out".into(),
        out.display().to_string(),
        "--sip-trace".into(),
        dir.join("live-sip-trace.txt").display().to_string(),
    ];
    args.extend(trigger_args(dir, Trigger::Trunk)?);
    let mut fc = make_flow(root, flow, dir, &args)?;
    fc.live_out = Some(out);
    Ok(fc)
}

type Case = fn(&FlowCapture, &Path) -> Result<(), String>;

fn cases(flow: &str) -> Vec<(String, Case)> {
    let c = |n: &str, f: Case| (n.to_string(), f);
    match flow {
        "hold" => vec![
            c("checks self-test", hold_self_test),
            c("trunk", |fc, d| hold(fc, d, Trigger::Trunk)),
            c("record-dn 2001", |fc, d| hold(fc, d, Trigger::Dns(&["2001"]))),
        ],
        "hold-inactive" | "hold-c0" | "hold-update" => vec![c("trunk", |fc, d| hold(fc, d, Trigger::Trunk))],
        "blind" => vec![c("checks self-test", blind_self_test), c("trunk", blind_trunk), c("record-dn 2001", blind_2001), c("record-dn 2001+2002", blind_both)],
        "blind3" => vec![c("trunk", blind3_trunk), c("record-dn 2003", blind3_2003)],
        "attended" => vec![c("checks self-test", attended_self_test), c("trunk", attended)],
        "redirect" => vec![c("trunk", redirect_trunk), c("record-dn 2001", redirect_2001), c("record-dn 2002", redirect_2002)],
        "conference" => vec![c("checks self-test", conference_self_test), c("trunk", conference)],
        "local3" => vec![c("trunk", local3)],
        _ => vec![],
    }
}

const FLOWS: [&str; 10] = ["hold", "hold-inactive", "hold-c0", "hold-update", "blind", "blind3", "attended", "redirect", "conference", "local3"];
/// Flows also recorded live by default (any `FLOW-live` can be named in CALLREC_FLOWS_ONLY).
const LIVE: [&str; 5] = ["hold", "blind", "attended", "redirect", "conference"];

/// A counting semaphore for the captures.
struct Slots(Mutex<usize>, Condvar);

impl Slots {
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut n = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while *n == 0 {
            n = self.1.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n -= 1;
        drop(n);
        let r = f();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.1.notify_one();
        r
    }
}

#[test]
fn call_flows_end_to_end() {
    if !can_capture() {
        return;
    }
    let t0 = Instant::now();
    let d = tempfile::Builder::new().prefix("callrec-e2e-flows-").tempdir().expect("tempdir");
    let only = std::env::var("CALLREC_FLOWS_ONLY").ok();
    let chosen: Vec<String> = match only.as_deref() {
        None => FLOWS.iter().map(|f| f.to_string()).chain(LIVE.iter().map(|f| format!("{f}-live"))).collect(),
        Some(o) => o.split(',').map(String::from).collect(),
    };
    for n in &chosen {
        assert!(FLOWS.contains(&n.strip_suffix("-live").unwrap_or(n)), "CALLREC_FLOWS_ONLY names {n:?}, not one of {FLOWS:?} (or FLOW-live)");
    }
    let slots = Slots(Mutex::new(JOBS), Condvar::new());
    let root = root();
    // (flow/case, result)
    let results: Vec<(String, Result<f64, String>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = chosen
            .iter()
            .map(|flow| {
                let (slots, root, dir) = (&slots, &root, d.path().join(flow));
                let base = flow.strip_suffix("-live").unwrap_or(flow);
                sc.spawn(move || -> Vec<(String, Result<f64, String>)> {
                    std::fs::create_dir_all(&dir).ok();
                    let t = Instant::now();
                    let make = || {
                        let made = if base == flow { make_flow(root, flow, &dir, &[]) } else { live(root, base, &dir) };
                        made.and_then(|fc| fc.on_plan(PLAN_TOL).map(|_| fc))
                    };
                    // A capture that did not keep to its plan (a loaded machine delays a SIPp
                    // process) is made once more before the flow counts as failed.
                    let fc = match slots.run(make).or_else(|e| {
                        eprintln!("e2e_flows: {flow}: {e}; capturing again");
                        std::fs::remove_dir_all(dir.join("live-out")).ok();
                        slots.run(make)
                    }) {
                        Ok(fc) => fc,
                        Err(e) => return vec![(format!("{flow}/capture"), Err(e))],
                    };
                    eprintln!("e2e_flows: {flow} captured in {:.1} s", t.elapsed().as_secs_f64());
                    cases(base)
                        .into_iter()
                        .filter(|(name, _)| base == flow || name == "trunk")
                        .map(|(name, case)| {
                            let t = Instant::now();
                            let sub = dir.join(name.replace([' ', '+'], "_"));
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&fc, &sub)))
                                .unwrap_or_else(|p| {
                                    Err(p
                                        .downcast_ref::<String>()
                                        .cloned()
                                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                        .unwrap_or_else(|| "panicked".into()))
                                });
                            (format!("{flow}/{name}"), r.map(|_| t.elapsed().as_secs_f64()))
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![("?".into(), Err("thread panicked".into()))])).collect()
    });
    eprintln!("e2e_flows: {} cases in {:.1} s", results.len(), t0.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(t) => eprintln!("  ok   {name} ({t:.1} s)"),
            Err(e) => {
                eprintln!("  FAIL {name}: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    if !failed.is_empty() || std::env::var_os("CALLREC_FLOWS_KEEP").is_some() {
        let kept = d.keep();
        eprintln!("e2e_flows: files kept in {}", kept.display());
        assert!(failed.is_empty(), "{} case(s) failed (files kept in {}):\n{}", failed.len(), kept.display(), failed.join("\n"));
    }
}
