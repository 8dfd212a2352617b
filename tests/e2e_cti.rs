//! End-to-end: recording on demand. `callrec run --port pcap:FILE` replays a SIPp capture at
//! capture pace while CTI requests (through `callrec ctl` and a raw JSON-lines client) start,
//! pause, resume and stop recordings, route calls and log agents in; the files, sidecars and
//! SIP trace are then checked, the audio against tshark's decode of the capture.
//!
//! One capture (3 concurrent 16 s calls to 2001, 1 to 2999, each stream its own noise) is made
//! once, given a 2 s idle lead-in, and shared. The scenarios run in parallel threads, each
//! against its own `callrec run` on its own CTI port, inside ONE #[test]: the capture pace
//! dominates, and the test harness would otherwise run only as many tests at once as there
//! are cores. A failing scenario fails the test with its name and message; the others still
//! run to the end. `CALLREC_CTI_ONLY=name[,name]` runs only those scenarios;
//! `CALLREC_CTI_KEEP=1` keeps the capture, files, traces and logs.
//!
//! Needs root, `ip netns`, sipp and tshark (CI runs as root); without them it prints a loud
//! SKIP line and passes.

mod common;

use common::cti::{self, ctl, ctl_ok, free_ports, read_trace, sidecars, Callrec, Client};
use common::judge::{self, Stream, StreamKey, Wav};
use common::segment::{alaw_silence, silent_run, Reference};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DN: &str = "2001";
const OTHER_DN: &str = "2999";
const LEFT_SRC: &str = "192.0.2.10";
const CALL_SECS: u32 = 16;
/// Idle seconds before the first call, so requests can come before the calls.
const LEAD: u32 = 2;
/// Longest a run may take past the capture's end.
const FINISH: Duration = Duration::from_secs(60);
/// Capture-pace jitter allowed when comparing request times with the files (the run serves
/// CTI between packets, every 20 ms at most, plus scheduling).
const PACE: f64 = 0.06;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn can_capture() -> bool {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let netns = Command::new("ip").args(["netns", "list"]).output().map(|o| o.status.success()).unwrap_or(false);
    let sipp = Command::new("sipp").arg("-v").output().is_ok();
    let tshark = Command::new("tshark").arg("-v").output().is_ok();
    if is_root && netns && sipp && tshark {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIP e2e_cti: needs root, `ip netns`, sipp and tshark (root={is_root} netns={netns} \
         sipp={sipp} tshark={tshark}); run scripts/install.sh and the tests as root !!!!!!!!\n"
    );
    false
}

fn make_capture(dir: &Path) -> PathBuf {
    let cap = dir.join("capture.pcap");
    let len = CALL_SECS.to_string();
    let out = Command::new("timeout")
        .arg("120")
        .arg(root().join("scripts/make-capture.sh"))
        .arg("--out")
        .arg(&cap)
        .args(["--dn", DN, "--other-dn", OTHER_DN, "--calls", "3", "--concurrent", "3", "--length", &len])
        .args(["--other-calls", "1", "--codec", "PCMA"])
        .output()
        .expect("run make-capture.sh");
    assert!(
        out.status.success(),
        "make-capture.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cap
}

/// tshark's view of the capture, decoded once.
struct Decoded {
    streams: HashMap<StreamKey, Stream>,
    /// (Call-ID, ip, port) of every SDP media line.
    media: Vec<(String, String, u16)>,
}

struct Env {
    cap: PathBuf,
    /// Capture time of the capture's first packet (the lead-in).
    first: f64,
    dir: PathBuf,
    decoded: OnceLock<Result<Decoded, String>>,
}

impl Env {
    fn decoded(&self) -> &Decoded {
        self.decoded
            .get_or_init(|| Ok(Decoded { streams: judge::streams(&self.cap)?, media: judge::sdp_media(&self.cap)? }))
            .as_ref()
            .unwrap_or_else(|e| panic!("tshark decode: {e}"))
    }

    /// The customer and agent streams of the call with this Call-ID, ready for correlation.
    fn reference(&self, call_id: &str) -> Reference {
        let d = self.decoded();
        let eps: Vec<(String, u16)> =
            d.media.iter().filter(|m| m.0 == call_id).map(|m| (m.1.clone(), m.2)).collect();
        let cust = eps.iter().find(|e| e.0 == LEFT_SRC).unwrap_or_else(|| panic!("no customer SDP for {call_id}"));
        let agent = eps.iter().find(|e| e.0 != LEFT_SRC).unwrap_or_else(|| panic!("no agent SDP for {call_id}"));
        let to = |ep: &(String, u16)| {
            d.streams.keys().find(|k| k.2 == ep.0 && k.3 == ep.1).cloned().unwrap_or_else(|| panic!("no RTP to {ep:?}"))
        };
        Reference::new(&d.streams, &to(agent), &to(cust)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn scenario_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("sidecar without number {k}: {v}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}"))
}

/// A recording read back: its sidecar, WAV, the call's reference and file timing.
struct Rec {
    sc: Value,
    wav: Wav,
    reference: Reference,
    /// Capture time of sample 0.
    start: f64,
    /// Seconds in the file.
    secs: f64,
}

fn load(env: &Env, sidecar: &Path, sc: &Value) -> Rec {
    let wav_path = sidecar.with_file_name(s(sc, "wav"));
    let wav = judge::read_wav(&wav_path).unwrap_or_else(|e| panic!("{wav_path:?}: {e}"));
    assert_eq!(sc["failed"], json!(false), "{sc}");
    assert_eq!(s(sc, "format"), "g711-alaw");
    let call_id = sc["call_ids"][0].as_str().unwrap_or_else(|| panic!("no call_ids in {sc}"));
    let secs = wav.chans[0].len() as f64 / 8000.0;
    assert_eq!(wav.chans[0].len() as u64, sc["duration_samples"].as_u64().unwrap_or(0), "WAV length vs sidecar: {sc}");
    Rec { reference: env.reference(call_id), start: f(sc, "start"), secs, wav, sc: sc.clone() }
}

impl Rec {
    /// Seconds `a..b` of the file hold the call's audio at its place.
    fn audio(&self, a: f64, b: f64) {
        if let Err(e) = self.reference.check(&self.wav, self.start, a, b, 6) {
            panic!("{}: {e}", s(&self.sc, "conf_id"));
        }
    }

    /// The file reaches the call's end (within one packet plus jitter).
    fn runs_to_call_end(&self) {
        let want = self.reference.end() - self.start;
        assert!((self.secs - want).abs() <= 0.1, "{}: {:.3} s long, the call had {want:.3} s left", s(&self.sc, "conf_id"), self.secs);
    }

    /// The first sample is the first packet at or after the MSML start.
    fn begins_at_start(&self) {
        let d = self.start - f(&self.sc, "started");
        assert!((-0.001..=0.04).contains(&d), "file begins {:.0} ms after its start request: {}", d * 1000.0, self.sc);
    }
}

/// The recording INVITE for `conf` (Request-URI checked byte-exact up to the RM host) and the
/// INFO with `<dialogend` for it.
fn invite_of<'a>(trace: &'a [cti::TraceMsg], conf: &str, dn: &str) -> &'a cti::TraceMsg {
    trace
        .iter()
        .find(|m| {
            let l = m.first_line();
            l.starts_with(&format!("INVITE sip:msml={conf}@")) && l.ends_with(&format!(";dn={dn};record SIP/2.0"))
        })
        .unwrap_or_else(|| panic!("no INVITE sip:msml={conf}@...;dn={dn};record in the trace"))
}

fn dialogend_of<'a>(trace: &'a [cti::TraceMsg], conf: &str) -> &'a cti::TraceMsg {
    trace
        .iter()
        .find(|m| m.first_line().starts_with("INFO ") && m.text.contains("<dialogend") && m.text.contains(&format!("conf:{conf}")))
        .unwrap_or_else(|| panic!("no INFO <dialogend for conf:{conf} in the trace"))
}

/// Waits for the 3 calls to 2001; ConnectionIDs oldest first and when seen.
fn calls_up(c: &mut Client) -> (Vec<String>, Instant) {
    let (ids, seen) = c.wait_calls(DN, 3, Duration::from_secs(LEAD as u64 + 10));
    (ids, seen)
}

// ---------------------------------------------------------------------------------------------

/// (1) Start mid-call through `callrec ctl`: the file begins at the request.
fn start_mid_call(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("start_mid_call"), port, &[]);
    let mut c = Client::connect(cr.cti);
    let (ids, seen) = calls_up(&mut c);
    let listed = ctl(cr.cti, &["calls"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    for id in &ids {
        let line = listed.stdout.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("ctl calls misses {id}: {listed:?}"));
        assert!(line.contains("established none") && line.contains(DN), "{line}");
    }
    sleep_until(seen + Duration::from_secs(4));
    let before = Instant::now();
    let ev = ctl_ok(cr.cti, &["start", "--dn", DN, "--conn", &ids[0], "--reason", "why=qa"]);
    let after = Instant::now();
    assert_eq!((s(&ev, "event"), s(&ev, "State")), ("EventPrivateInfo", "recording"), "{ev}");
    let conf = s(&ev, "RecordingID").to_string();
    cr.finish(FINISH);

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 1, "expected one recording: {scs:?}");
    let (p, sc) = &scs[0];
    assert_eq!((s(sc, "conf_id"), s(sc, "trigger"), s(sc, "dn"), s(sc, "connection_id")), (conf.as_str(), "private_service", DN, ids[0].as_str()));
    let r = load(env, p, sc);
    let started = f(sc, "started");
    let (lo, hi) = (cr.capture_time(env.first, before).0, cr.capture_time(env.first, after).1);
    assert!(started >= lo && started <= hi + 0.05, "started {started:.3} outside the request's window {lo:.3}..{hi:.3}");
    let into_call = started - r.reference.start();
    assert!((3.9..5.5).contains(&into_call), "recording started {into_call:.2} s into the call, asked ~4 s");
    r.begins_at_start();
    r.runs_to_call_end();
    assert!(r.secs < CALL_SECS as f64 - 3.0, "the file holds the whole call ({:.2} s)", r.secs);
    r.audio(0.0, r.secs);
    // the segment judge can fail: the same file placed 0.3 s off, or judged against another call
    assert!(r.reference.check(&r.wav, r.start + 0.3, 0.0, r.secs, 3).is_err(), "a misplaced file passed");
    let other = env.reference(sc_call_id_other(env, sc));
    assert!(other.check(&r.wav, r.start, 0.0, r.secs, 3).is_err(), "another call's audio passed");
}

/// A Call-ID of a call to DN other than the sidecar's.
fn sc_call_id_other<'a>(env: &'a Env, sc: &Value) -> &'a str {
    let mine = sc["call_ids"][0].as_str().unwrap_or_default();
    env.decoded().media.iter().map(|m| m.0.as_str()).find(|c| *c != mine).unwrap_or_else(|| panic!("only one call in the capture"))
}

/// (2) Pause 2 s then resume over raw TCP: that interval is silence of the right length at the
/// right place; the audio around it matches; the sidecar lists the pause.
fn pause_resume(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("pause_resume"), port, &[]);
    let mut c = Client::connect(cr.cti);
    c.register(DN);
    let (ids, seen) = calls_up(&mut c);
    let id = &ids[1];
    sleep_until(seen + Duration::from_millis(1500));
    let t_start = Instant::now();
    let ev = c.private(3013, DN, id, json!({}));
    assert_eq!(s(&ev, "State"), "recording", "{ev}");
    sleep_until(seen + Duration::from_secs(5));
    let t_pause = Instant::now();
    let ev = c.private(3015, DN, id, json!({}));
    assert_eq!((s(&ev, "event"), s(&ev, "State")), ("EventPrivateInfo", "paused"), "{ev}");
    let ev = c.private(3015, DN, id, json!({}));
    assert_eq!(ev["ErrorCode"], json!(1145), "pause while paused: {ev}");
    sleep_until(t_pause + Duration::from_secs(2));
    let t_resume = Instant::now();
    let ev = c.private(3016, DN, id, json!({}));
    assert_eq!((s(&ev, "event"), s(&ev, "State")), ("EventPrivateInfo", "recording"), "{ev}");
    let ev = c.private(3016, DN, id, json!({}));
    assert_eq!(ev["ErrorCode"], json!(1145), "resume while recording: {ev}");
    cr.finish(FINISH);
    // the call events this client got, registered on 2001 before the calls: read to the close
    let mut evs = std::mem::take(&mut c.unsolicited);
    let until = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(ev)) = c.next_event(Duration::from_secs(1)) {
        evs.push(ev);
        assert!(Instant::now() < until, "events without end");
    }
    for conn in &ids {
        let kinds: Vec<&str> = evs
            .iter()
            .filter(|e| e["ConnectionID"] == json!(conn) && e["ThisDN"] == json!(DN) && e["ReferenceID"].is_null())
            .filter_map(|e| e["event"].as_str())
            .collect();
        assert_eq!(kinds, ["EventRinging", "EventEstablished", "EventReleased"], "call events of {conn}: {evs:?}");
    }
    assert!(evs.iter().all(|e| e["ThisDN"] != json!(OTHER_DN)), "events for a DN not registered: {evs:?}");

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 1, "{scs:?}");
    let r = load(env, &scs[0].0, &scs[0].1);
    let sc = &r.sc;
    r.begins_at_start();
    r.runs_to_call_end();
    let pauses = sc["pauses"].as_array().unwrap_or_else(|| panic!("no pauses: {sc}"));
    assert_eq!(pauses.len(), 1, "{sc}");
    let (p0, p1) = (f(&pauses[0], "start"), f(&pauses[0], "stop"));
    let asked = (t_resume - t_pause).as_secs_f64();
    assert!(((p1 - p0) - asked).abs() <= PACE, "sidecar pause {:.3} s, requests {asked:.3} s apart", p1 - p0);
    let at = (t_pause - t_start).as_secs_f64();
    assert!(((p0 - f(sc, "started")) - at).abs() <= PACE, "pause at {:.3} s into the recording, requested at {at:.3}", p0 - f(sc, "started"));
    // the silent interval of the file
    let mid = (((p0 + p1) / 2.0 - r.start) * 8000.0) as usize;
    let (a, b) = silent_run(&r.wav, mid, alaw_silence()).unwrap_or_else(|| panic!("the middle of the pause is not silent"));
    let (a_s, b_s) = (a as f64 / 8000.0, b as f64 / 8000.0);
    assert!((a_s - (p0 - r.start)).abs() <= 0.025, "silence starts at {a_s:.3} s, the pause at {:.3} s", p0 - r.start);
    assert!((b_s - (p1 - r.start)).abs() <= 0.025, "silence ends at {b_s:.3} s, the pause at {:.3} s", p1 - r.start);
    assert!(((b_s - a_s) - asked).abs() <= PACE, "silence of {:.3} s for a {asked:.3} s pause", b_s - a_s);
    assert!((a_s - at).abs() <= PACE + 0.04, "silence at {a_s:.3} s, pause requested {at:.3} s after the start");
    eprintln!(
        "pause_resume: requests {asked:.3} s apart; sidecar pause {:.3} s; silence {a_s:.3}..{b_s:.3} s ({:.3} s)",
        p1 - p0,
        b_s - a_s
    );
    r.audio(0.0, a_s - 0.05);
    r.audio(b_s + 0.05, r.secs);
}

/// (3) Stop mid-call through `callrec ctl`: the file ends at the request; the trace shows
/// `<dialogend>` and BYE for that conf-id after the stop.
fn stop_mid_call(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("stop_mid_call"), port, &[]);
    let mut c = Client::connect(cr.cti);
    let (ids, seen) = calls_up(&mut c);
    let id = &ids[2];
    sleep_until(seen + Duration::from_secs(2));
    let b0 = Instant::now();
    let ev = ctl_ok(cr.cti, &["start", "--dn", DN, "--conn", id]);
    let a0 = Instant::now();
    let conf = s(&ev, "RecordingID").to_string();
    sleep_until(seen + Duration::from_secs(7));
    let b1 = Instant::now();
    let ev = ctl_ok(cr.cti, &["stop", "--dn", DN, "--conn", id, "--reason", "why=done"]);
    let a1 = Instant::now();
    assert_eq!((s(&ev, "State"), s(&ev, "RecordingID")), ("stopped", conf.as_str()), "{ev}");
    let again = ctl(cr.cti, &["stop", "--dn", DN, "--conn", id]);
    assert_eq!(again.code, 1, "second stop must be refused: {again:?}");
    cr.finish(FINISH);

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 1, "{scs:?}");
    let r = load(env, &scs[0].0, &scs[0].1);
    let sc = &r.sc;
    let (started, stop) = (f(sc, "started"), f(sc, "stop"));
    let (lo, hi) = ((b1 - a0).as_secs_f64(), (a1 - b0).as_secs_f64());
    assert!(stop - started >= lo - PACE && stop - started <= hi + PACE, "recorded {:.3} s, requests {lo:.3}..{hi:.3} s apart", stop - started);
    r.begins_at_start();
    assert!((r.start + r.secs - stop).abs() <= PACE, "file ends at {:.3}, stop requested at {stop:.3}", r.start + r.secs);
    assert!(r.reference.end() - stop > 5.0, "the call should go on after the stop");
    r.audio(0.0, r.secs);

    let trace = read_trace(&cr.trace);
    invite_of(&trace, &conf, DN);
    let end = dialogend_of(&trace, &conf);
    assert!(end.at >= stop - 0.001 && end.at <= stop + PACE, "dialogend at {:.3}, stop at {stop:.3}", end.at);
    let cid = end.call_id().expect("INFO without Call-ID");
    let pos = |m: &cti::TraceMsg| trace.iter().position(|x| std::ptr::eq(x, m)).unwrap_or(0);
    let bye = trace
        .iter()
        .find(|m| m.first_line().starts_with("BYE ") && m.call_id() == Some(cid))
        .unwrap_or_else(|| panic!("no BYE in the MCP dialog of {conf}"));
    assert!(pos(bye) > pos(end) && bye.at >= end.at, "BYE before the dialogend");
    assert!(bye.at < r.reference.end() - 4.0, "BYE at {:.3} only with the call's end", bye.at);
    let ok = trace.iter().any(|m| m.first_line().starts_with("SIP/2.0 200") && m.call_id() == Some(cid) && m.text.contains(" BYE\n"));
    assert!(ok, "no 200 OK to the BYE of {conf}");
}

/// (4) Over raw TCP, PrivateService for a DN this client did not register is EventError 1141
/// echoing its ReferenceID, as are other bad requests; no file is written.
fn unregistered_dn_refused(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("unregistered_dn_refused"), port, &[]);
    let mut a = Client::connect(cr.cti);
    let mut b = Client::connect(cr.cti);
    b.register(DN); // another client's registration does not count for `a`
    a.register(OTHER_DN);
    let (ids, seen) = calls_up(&mut b);
    sleep_until(seen + Duration::from_secs(1));
    let line = format!(
        "{{\"request\": \"PrivateService\", \"ReferenceID\": 4242, \"PrivateMsgID\": 3013, \"ThisDN\": \"{DN}\", \
         \"ConnectionID\": \"{}\", \"Extensions\": {{\"id\": \"must-not-exist\"}}, \"Reasons\": {{}}}}\n",
        ids[0]
    );
    a.send_raw(line.as_bytes()).expect("send");
    let ev = a.answer(4242, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((&ev["event"], &ev["ErrorCode"], &ev["ReferenceID"]), (&json!("EventError"), &json!(1141), &json!(4242)), "{ev}");
    assert!(s(&ev, "ErrorMessage").contains(DN), "{ev}");
    for msg in [3014, 3015, 3016] {
        let ev = a.private(msg, DN, &ids[0], json!({}));
        assert_eq!(ev["ErrorCode"], json!(1141), "{msg}: {ev}");
    }
    // the registered client's other mistakes, each with its own code
    let cases = [
        (3013, DN, "00000000deadbeef", 1142),
        (4000, DN, ids[0].as_str(), 1144),
        (3015, DN, ids[0].as_str(), 1145),
        (3013, OTHER_DN, ids[0].as_str(), 1141),
    ];
    for (msg, dn, conn, code) in cases {
        let ev = b.private(msg, dn, conn, json!({}));
        assert_eq!((&ev["event"], &ev["ErrorCode"]), (&json!("EventError"), &json!(code)), "{msg} {dn} {conn}: {ev}");
    }
    // through ctl: a DN not in the call is one sentence and exit 1
    let o = ctl(cr.cti, &["start", "--dn", OTHER_DN, "--conn", &ids[0]]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.starts_with("callrec ctl: ") && o.stderr.trim_end().lines().count() == 1 && o.stdout.is_empty(), "{o:?}");
    assert!(b.calls().iter().all(|c| c.2 == "none"), "a refused request started a recording");
    cr.finish(FINISH);
    let files: Vec<_> = cti::files_with(&cr.out, "wav").into_iter().chain(cti::files_with(&cr.out, "json")).collect();
    assert!(files.is_empty(), "refused requests wrote {files:?}");
}

/// (5) RouteCall through `callrec ctl route`: source records the agent (OtherDN), destination
/// the customer; disable_destination stops the destination recording.
fn route_call(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("route_call"), port, &[]);
    let watch = cti::ctl_spawn(cr.cti, &["watch", "--dn", DN, "--count", "6"]);
    let mut c = Client::connect(cr.cti);
    let (_, seen) = calls_up(&mut c);
    // `ctl watch`, registered before the calls, prints their ringing and established events
    let w = watch.output(Duration::from_secs(5));
    assert_eq!(w.code, 0, "{w:?}");
    let evs: Vec<Value> = w.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let kinds: Vec<&str> = evs.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "EventRinging").count(), 3, "{w:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "EventEstablished").count(), 3, "{w:?}");
    assert!(evs.iter().all(|e| e["ThisDN"] == json!(DN)), "{w:?}");
    let listed = ctl(cr.cti, &["calls"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    // "<ConnectionID> <state> <recording> <dn,dn>"
    let to_dn: Vec<(String, String)> = listed
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dns: Vec<&str> = f.get(3)?.split(',').collect();
            (dns.len() == 2 && dns[1] == DN).then(|| (f[0].to_string(), dns[0].to_string()))
        })
        .collect();
    assert_eq!(to_dn.len(), 3, "ctl calls: {listed:?}");
    let (src, (dst, customer_dn)) = (&to_dn[0].0, &to_dn[1]);
    sleep_until(seen + Duration::from_secs(2));
    let ev = ctl_ok(cr.cti, &["route", "--rp", "7000", "--conn", src, "--to", DN, "--record", "source"]);
    assert_eq!(s(&ev, "event"), "EventRouteUsed", "{ev}");
    let ev = ctl_ok(cr.cti, &["route", "--rp", "7000", "--conn", dst, "--to", DN, "--record", "destination"]);
    assert_eq!(s(&ev, "event"), "EventRouteUsed", "{ev}");
    let b0 = Instant::now();
    sleep_until(seen + Duration::from_secs(8));
    let t_dis = Instant::now();
    ctl_ok(cr.cti, &["route", "--rp", "7000", "--conn", dst, "--to", DN, "--record", "disable_destination"]);
    let a1 = Instant::now();
    cr.finish(FINISH);

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 2, "{scs:?}");
    let by = |conn: &str| scs.iter().find(|(_, v)| v["connection_id"] == json!(conn)).unwrap_or_else(|| panic!("no recording of {conn}: {scs:?}"));
    let trace = read_trace(&cr.trace);

    let (p, sc) = by(src);
    assert_eq!((s(sc, "trigger"), s(sc, "dn")), ("route_source", DN), "{sc}");
    let r = load(env, p, sc);
    r.begins_at_start();
    r.runs_to_call_end();
    r.audio(0.0, r.secs);
    invite_of(&trace, s(sc, "conf_id"), DN);

    let (p, sc) = by(dst);
    assert_eq!((s(sc, "trigger"), s(sc, "dn")), ("route_destination", customer_dn.as_str()), "{sc}");
    assert_eq!(s(&sc["dns"], "customer"), customer_dn.as_str(), "{sc}");
    let r = load(env, p, sc);
    r.begins_at_start();
    let (started, stop) = (f(sc, "started"), f(sc, "stop"));
    let lo = (t_dis - b0).as_secs_f64();
    assert!(stop - started >= lo - PACE && stop - started <= (a1 - b0).as_secs_f64() + 1.0, "destination recorded {:.3} s", stop - started);
    assert!((r.start + r.secs - stop).abs() <= PACE, "file ends at {:.3}, disabled at {stop:.3}", r.start + r.secs);
    assert!(r.reference.end() - stop > 4.0, "disable_destination should stop mid-call");
    r.audio(0.0, r.secs);
    invite_of(&trace, s(sc, "conf_id"), customer_dn);
    let end = dialogend_of(&trace, s(sc, "conf_id"));
    assert!((end.at - stop).abs() <= PACE, "dialogend at {:.3}, stop {stop:.3}", end.at);
}

/// (6) Agent login before the calls (config `[[agent]] id = "a1" record = true`): every call of
/// that DN is recorded, trigger agent_login; an agent without `record` records nothing.
fn agent_login(env: &Env, port: u16) {
    let dir = env.scenario_dir("agent_login");
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("callrec.toml");
    std::fs::write(&cfg, "[[agent]]\nid = \"a1\"\nrecord = true\n\n[[agent]]\nid = \"a2\"\nrecord = false\n").expect("config");
    let mut cr = Callrec::start(&env.cap, &dir, port, &["--config", cfg.to_str().expect("utf-8 path")]);
    let mut c = Client::connect(cr.cti);
    let ev = c.request(json!({"request": "AgentLogin", "ThisDN": DN, "AgentID": "a1"}));
    assert_eq!((s(&ev, "event"), s(&ev, "AgentID")), ("EventAgentLogin", "a1"), "{ev}");
    let late = Instant::now().saturating_duration_since(cr.spawned).as_secs_f64();
    assert!(late < LEAD as f64 - 0.3, "logged in {late:.2} s after the start: too close to the calls (machine overloaded?)");
    let ev = c.request(json!({"request": "AgentLogin", "ThisDN": OTHER_DN, "AgentID": "a2"}));
    assert_eq!(s(&ev, "event"), "EventAgentLogin", "{ev}");
    let ev = c.request(json!({"request": "AgentLogin", "ThisDN": DN, "AgentID": "a9"}));
    assert_eq!((&ev["event"], &ev["ErrorCode"]), (&json!("EventError"), &json!(1160)), "a DN taken by another agent: {ev}");
    cr.finish(FINISH);

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 3, "expected the 3 calls of {DN}: {scs:?}");
    let mut call_ids = Vec::new();
    for (p, sc) in &scs {
        assert_eq!((s(sc, "trigger"), s(sc, "dn")), ("agent_login", DN), "{sc}");
        assert_eq!(s(&sc["dns"], "agent"), DN, "{sc}");
        let r = load(env, p, sc);
        assert!(r.start - r.reference.start() < 0.05, "the login came before the call, yet the file starts late");
        r.runs_to_call_end();
        r.audio(0.0, r.secs);
        call_ids.push(sc["call_ids"][0].clone());
    }
    call_ids.sort_by_key(|v| v.to_string());
    call_ids.dedup();
    assert_eq!(call_ids.len(), 3, "one recording per call");
}

/// (7) Extensions travel into the sidecar and the recording INVITE (`X-Genesys-<key>`); `id`
/// names the files (a clash is refused) and `dest` puts them where asked.
fn extensions(env: &Env, port: u16) {
    let dir = env.scenario_dir("extensions");
    // The writer does not create a missing `dest` directory (see the report): make it.
    let dest = dir.join("dest-dir");
    let named = dir.join("named");
    for d in [&dest, &named] {
        std::fs::create_dir_all(d).expect("dest dir");
    }
    // `dest` may only name places under --out or a configured root.
    let cfg = dir.join("callrec.toml");
    std::fs::write(&cfg, format!("[cti]\ndest_roots = [{:?}]\n", dir.display().to_string())).expect("config");
    let cfg = cfg.display().to_string();
    let mut cr = Callrec::start(&env.cap, &dir, port, &["--config", &cfg]);
    let mut c = Client::connect(cr.cti);
    let (ids, seen) = calls_up(&mut c);
    sleep_until(seen + Duration::from_secs(1));
    let outside = ctl(cr.cti, &["start", "--dn", DN, "--conn", &ids[0], "--ext", "dest=/etc"]);
    assert!(outside.stderr.contains("outside the recording directories"), "{outside:?}");
    let dest_ext = format!("dest={}", dest.display());
    let ev = ctl_ok(
        cr.cti,
        &["start", "--dn", DN, "--conn", &ids[0], "--ext", "id=h11-ext-1", "--ext", "customer=42", "--ext", &dest_ext, "--reason", "why=qa"],
    );
    assert_eq!(s(&ev, "RecordingID"), "h11-ext-1", "{ev}");
    let clash = ctl(cr.cti, &["start", "--dn", DN, "--conn", &ids[1], "--ext", "id=h11-ext-1"]);
    assert_eq!(clash.code, 1, "a second recording with the same id must be refused: {clash:?}");
    assert!(clash.stderr.contains("h11-ext-1"), "{clash:?}");
    let wav_dest = format!("dest={}", named.join("custom.wav").display());
    let ev = ctl_ok(cr.cti, &["start", "--dn", DN, "--conn", &ids[2], "--ext", "id=h11-ext-3", "--ext", &wav_dest]);
    assert_eq!(s(&ev, "RecordingID"), "h11-ext-3", "{ev}");
    cr.finish(FINISH);

    assert!(cti::files_with(&cr.out, "wav").is_empty(), "files in the default directory despite dest");
    let p = dest.join("h11-ext-1.json");
    assert!(dest.join("h11-ext-1.wav").is_file() && p.is_file(), "dest directory holds {:?}", cti::files_with(&dest, "json"));
    let sc = &sidecars(&dest)[0].1;
    assert_eq!(
        sc["extensions"],
        json!({"id": "h11-ext-1", "customer": "42", "dest": dest.display().to_string()}),
        "sidecar extensions: {sc}"
    );
    assert_eq!(s(sc, "conf_id"), "h11-ext-1");
    let r = load(env, &p, sc);
    r.runs_to_call_end();
    r.audio(0.0, r.secs);
    let trace = read_trace(&cr.trace);
    let inv = invite_of(&trace, "h11-ext-1", DN);
    assert_eq!(inv.header("X-Genesys-customer", "X-Genesys-customer"), Some("42"), "{}", inv.text);
    assert_eq!(inv.header("X-Genesys-id", "X-Genesys-id"), Some("h11-ext-1"), "{}", inv.text);

    let p = named.join("custom.json");
    assert!(named.join("custom.wav").is_file() && p.is_file(), "dest=.wav not honoured: {:?}", cti::files_with(&named, "wav"));
    let sc: Value = serde_json::from_slice(&std::fs::read(&p).expect("sidecar")).expect("json");
    assert_eq!(s(&sc, "conf_id"), "h11-ext-3");
    let r = load(env, &p, &sc);
    r.audio(0.0, r.secs);
    let all = cti::files_with(&dir, "wav");
    assert_eq!(all.len(), 2, "the clashing start wrote a file: {all:?}");
}

/// (8) While one client's recording runs: malformed JSON is answered BAD_REQUEST and the
/// client stays; a 1 MB line is LINE_TOO_LONG or a drop; a client vanishes mid-line; another
/// floods requests without reading; a third client keeps being answered; the recording is
/// still exact.
fn robustness(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("robustness"), port, &[]);
    let addr = cr.cti;
    let mut rec = Client::connect(addr);
    rec.register(DN);
    let (ids, seen) = calls_up(&mut rec);
    sleep_until(seen + Duration::from_secs(1));
    let ev = rec.private(3013, DN, &ids[0], json!({"id": "h11-robust"}));
    assert_eq!(s(&ev, "State"), "recording", "{ev}");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        // the third client: answered all along
        let keeper = sc.spawn(|| {
            let mut k = Client::connect(addr);
            let (mut n, mut worst) = (0u32, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 400 {
                let t = Instant::now();
                let _ = k.calls();
                worst = worst.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (n, worst)
        });
        // a flood from a client that never reads
        // (its answers, ~20 MB, outgrow the socket buffers and the server's queue)
        let flood = sc.spawn(|| {
            const N: usize = 60_000;
            let mut f = Client::connect(addr);
            let _ = f.writer.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = f.send_raw(&b"{\"request\": \"QueryCalls\", \"ReferenceID\": 1}\n".repeat(N));
            std::thread::sleep(Duration::from_secs(2));
            let (mut n, until) = (0, Instant::now() + Duration::from_secs(15));
            let closed = loop {
                match f.next_event(Duration::from_secs(2)) {
                    Ok(Some(_)) if Instant::now() < until => n += 1,
                    Err(_) => break true,
                    _ => break false,
                }
            };
            (n, closed, N)
        });

        let mut m = Client::connect(addr);
        m.send_raw(b"{not json\n").expect("send");
        let ev = m.next_event(Duration::from_secs(5)).expect("still connected").expect("an answer to malformed JSON");
        assert_eq!((&ev["event"], &ev["ErrorCode"]), (&json!("EventError"), &json!(1100)), "{ev}");
        m.send_raw(b"{\"request\": \"Frobnicate\", \"ReferenceID\": 9}\n").expect("send");
        let ev = m.next_event(Duration::from_secs(5)).expect("still connected").expect("an answer to an unknown request");
        assert_eq!(ev["ErrorCode"], json!(1100), "{ev}");
        m.register(OTHER_DN);

        let mut big = Client::connect(addr);
        let _ = big.writer.set_write_timeout(Some(Duration::from_secs(5)));
        let mut line = vec![b'x'; 1 << 20];
        line.push(b'\n');
        let _ = big.send_raw(&line); // the server may drop us before it is all written
        let until = Instant::now() + Duration::from_secs(5);
        let mut got_error = false;
        let dropped = loop {
            match big.next_event(Duration::from_millis(200)) {
                Err(_) => break true,
                Ok(Some(ev)) => {
                    assert_eq!(ev["ErrorCode"], json!(1101), "1 MB line: {ev}");
                    got_error = true;
                }
                Ok(None) if Instant::now() >= until => break false,
                Ok(None) => {}
            }
        };
        assert!(got_error || dropped, "a 1 MB line got neither LINE_TOO_LONG nor a drop");
        eprintln!("robustness: 1 MB line -> LINE_TOO_LONG {got_error}, dropped {dropped}");

        let mut d = Client::connect(addr);
        d.send_raw(b"{\"request\": \"RegisterAddress\", \"ReferenceID\": 1, \"This").expect("send");
        drop(d);

        m.register(DN); // the malformed client still served
        assert_eq!(m.calls().len(), 4, "calls listed after the abuse");
        sleep_until(seen + Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (n, closed, sent) = flood.join().unwrap_or_else(|_| panic!("flood client"));
        assert!(closed && n < sent, "a client that never reads was not dropped ({n} of {sent} answers, closed {closed})");
        eprintln!("robustness: the non-reading client got {n} of {sent} answers, then was dropped");
        let (n, worst) = keeper.join().unwrap_or_else(|_| panic!("the third client was not answered"));
        assert!(n >= 20, "the third client got only {n} answers");
        assert!(worst < Duration::from_secs(1), "the third client waited {worst:?} for an answer");
        eprintln!("robustness: third client answered {n} times, slowest {worst:?}");
    });
    cr.finish(FINISH);

    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 1, "{scs:?}");
    let r = load(env, &scs[0].0, &scs[0].1);
    assert_eq!(s(&r.sc, "conf_id"), "h11-robust");
    for ch in ["left", "right"] {
        assert_eq!(r.sc["channels"][ch]["lost"], json!(0), "{}", r.sc);
    }
    r.begins_at_start();
    r.runs_to_call_end();
    r.audio(0.0, r.secs);
}

/// SIGTERM mid-call finalizes the open recording (valid WAV up to the signal, sidecar) and
/// exits 0.
fn sigterm_finalizes(env: &Env, port: u16) {
    let mut cr = Callrec::start(&env.cap, &env.scenario_dir("sigterm_finalizes"), port, &[]);
    let mut c = Client::connect(cr.cti);
    c.register(DN);
    let (ids, seen) = calls_up(&mut c);
    sleep_until(seen + Duration::from_secs(1));
    let ev = c.private(3013, DN, &ids[0], json!({"id": "h11-term"}));
    assert_eq!(s(&ev, "State"), "recording", "{ev}");
    sleep_until(seen + Duration::from_secs(5));
    let t0 = Instant::now();
    cr.terminate();
    cr.finish(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?} to end the run");
    let scs = sidecars(&cr.out);
    assert_eq!(scs.len(), 1, "{scs:?}");
    let r = load(env, &scs[0].0, &scs[0].1);
    let b = std::fs::read(cr.out.join("h11-term.wav")).expect("wav");
    assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize + 8, b.len(), "RIFF size not finalized");
    r.begins_at_start();
    assert!((3.0..5.0).contains(&r.secs), "{:.2} s recorded between the start and SIGTERM 4 s later", r.secs);
    assert!((r.start + r.secs - f(&r.sc, "stop")).abs() <= PACE, "file end vs sidecar stop: {}", r.sc);
    r.audio(0.0, r.secs);
}

type Scenario = fn(&Env, u16);

#[test]
fn cti_end_to_end() {
    if !can_capture() {
        return;
    }
    let t0 = Instant::now();
    let d = tempfile::Builder::new().prefix("callrec-e2e-cti-").tempdir().expect("tempdir");
    let raw = make_capture(d.path());
    let made = t0.elapsed();
    let cap = d.path().join("lead-in.pcap");
    let first = cti::with_lead_in(&raw, &cap, LEAD).unwrap_or_else(|e| panic!("{e}"));
    let env = Env { cap, first, dir: d.path().to_path_buf(), decoded: OnceLock::new() };
    let all: [(&str, Scenario); 9] = [
        ("start_mid_call", start_mid_call),
        ("pause_resume", pause_resume),
        ("stop_mid_call", stop_mid_call),
        ("unregistered_dn_refused", unregistered_dn_refused),
        ("route_call", route_call),
        ("agent_login", agent_login),
        ("extensions", extensions),
        ("robustness", robustness),
        ("sigterm_finalizes", sigterm_finalizes),
    ];
    let only = std::env::var("CALLREC_CTI_ONLY").ok();
    let chosen: Vec<(&str, Scenario)> =
        all.into_iter().filter(|(n, _)| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == *n))).collect();
    let ports = free_ports(chosen.len());
    let results: Vec<(&str, Result<Duration, String>)> = std::thread::scope(|sc| {
        let env = &env;
        // decode while the runs go (the scenarios need it only at their end)
        sc.spawn(move || {
            let _ = env.decoded.get_or_init(|| Ok(Decoded { streams: judge::streams(&env.cap)?, media: judge::sdp_media(&env.cap)? }));
        });
        let hs: Vec<_> = chosen
            .iter()
            .zip(ports)
            .map(|(&(name, run), port)| {
                let h = std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn_scoped(sc, move || {
                        let t = Instant::now();
                        run(env, port);
                        t.elapsed()
                    })
                    .expect("spawn scenario");
                (name, h)
            })
            .collect();
        hs.into_iter()
            .map(|(name, h)| {
                let r = h.join().map_err(|p| {
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
                });
                (name, r)
            })
            .collect()
    });
    eprintln!("e2e_cti: capture made in {:.1} s, total {:.1} s", made.as_secs_f64(), t0.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(t) => eprintln!("  ok   {name} ({:.1} s)", t.as_secs_f64()),
            Err(e) => {
                eprintln!("  FAIL {name}: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    if !failed.is_empty() || std::env::var_os("CALLREC_CTI_KEEP").is_some() {
        // keep the evidence
        let kept = d.keep();
        eprintln!("e2e_cti: files kept in {}", kept.display());
        assert!(failed.is_empty(), "{} scenario(s) failed (files kept in {}):\n{}", failed.len(), kept.display(), failed.join("\n"));
    }
}
