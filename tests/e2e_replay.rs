//! End-to-end: captures of real SIPp calls made in network namespaces, replayed through
//! `callrec replay`, judged against tshark's decode of the same capture.
//!
//! The capture-making tests need root and `ip netns` (CI runs as root); without them they print
//! a loud SKIP line and pass. The others use the bundled examples/demo.pcap.

mod common;

use common::judge::{self, Limits, Report};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DN: &str = "2001";
const OTHER_DN: &str = "2999";
const LEFT_SRC: &str = "192.0.2.10";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether captures can be made here; prints why not.
fn can_capture(test: &str) -> bool {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let netns = Command::new("ip").args(["netns", "list"]).output().map(|o| o.status.success()).unwrap_or(false);
    let sipp = Command::new("sipp").arg("-v").output().is_ok();
    if is_root && netns && sipp {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIP {test}: needs root, `ip netns` and sipp (root={is_root} netns={netns} sipp={sipp}); \
         run scripts/install.sh and the tests as root !!!!!!!!\n"
    );
    false
}

/// Makes a capture with scripts/make-capture.sh.
fn make_capture(dir: &Path, args: &[&str]) -> PathBuf {
    let cap = dir.join("capture.pcap");
    let t = std::time::Instant::now();
    let out = Command::new("timeout")
        .arg("300")
        .arg(root().join("scripts/make-capture.sh"))
        .arg("--out")
        .arg(&cap)
        .args(["--dn", DN, "--other-dn", OTHER_DN])
        .args(args)
        .output()
        .expect("run make-capture.sh");
    assert!(
        out.status.success(),
        "make-capture.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("capture {args:?} made in {:.1} s", t.elapsed().as_secs_f64());
    cap
}

/// Runs `callrec replay CAP --out DIR --record-dn 2001 --sip-trace T EXTRA...` with T next to
/// DIR (so the trace is not in the output directory the judge reads, and DIR need not exist).
fn replay(cap: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
        .arg("replay")
        .arg(cap)
        .arg("--out")
        .arg(out)
        .args(["--record-dn", DN, "--sip-trace"])
        .arg(trace_of(out))
        .args(extra)
        .output()
        .expect("run callrec")
}

fn trace_of(out: &Path) -> PathBuf {
    out.with_file_name("sip-trace.txt")
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every call to DN has exactly one matching WAV (left = customer), nothing else is recorded,
/// and (when `exact`) every present sample equals tshark's decode. Returns the report.
fn assert_recorded(cap: &Path, out: &Path, calls: usize, exact: bool) -> Report {
    let r = judge::judge(cap, out, LEFT_SRC, Limits::default()).expect("judge");
    let to_dn: Vec<_> = r.calls_to(DN).collect();
    assert_eq!(to_dn.len(), calls, "capture holds {} calls to {DN}, expected {calls}\n{r}", to_dn.len());
    for c in &to_dn {
        assert!(c.problem.is_none(), "call not recorded correctly: {:?}\n{r}", c.problem);
        if exact {
            assert_eq!((c.mismatches.0, c.mismatches.1), (0, 0), "samples differ from the capture\n{r}");
        } else {
            // loss and reordering: a packet past the reorder window may be dropped as late
            assert!(
                (c.mismatches.0 + c.mismatches.1) * 50 <= c.mismatches.2,
                "more than 2% of samples differ from the capture\n{r}"
            );
        }
    }
    for c in r.calls.iter().filter(|c| c.dn.as_deref() != Some(DN)) {
        assert!(c.file.is_none(), "a call to {:?} was recorded in {:?}\n{r}", c.dn, c.file);
    }
    assert_eq!(r.wavs.len(), calls, "expected exactly one WAV per call to {DN}\n{r}");
    assert!(r.unreadable.is_empty(), "unreadable WAVs\n{r}");
    r
}

/// The SIP trace holds, for each recorded call, the MSML flow of the issue.
fn assert_trace(out: &Path, calls: usize) {
    let trace = std::fs::read_to_string(trace_of(out)).expect("read sip trace");
    let msgs = split_messages(&trace);
    let conf_ids: Vec<String> = msgs
        .iter()
        .filter_map(|m| {
            let first = m.lines().next()?;
            let rest = first.strip_prefix("INVITE sip:msml=")?;
            let (id, tail) = rest.split_once('@')?;
            (tail.ends_with(&format!(";dn={DN};record SIP/2.0"))).then(|| id.to_string())
        })
        .collect();
    let mut unique = conf_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), calls, "expected {calls} INVITEs to sip:msml=<conf-id>@...;dn={DN};record, found {unique:?}");
    let invites = msgs.iter().filter(|m| m.starts_with("INVITE ")).count();
    assert!(invites >= 2 * calls, "expected the SIP Server's and the RM's forwarded INVITE per call, {invites} INVITEs");
    for id in &unique {
        assert!(out.join(format!("{id}.wav")).exists(), "no {id}.wav for conf-id {id}");
        let conf = format!("conf:{id}");
        let info = |tag: &str| {
            msgs.iter().find(|m| m.starts_with("INFO ") && m.contains(tag) && m.contains(&conf)).unwrap_or_else(|| {
                panic!("no INFO with {tag} for {conf} in the trace")
            })
        };
        let start = info("<dialogstart");
        let end = info("<dialogend");
        let cid = call_id(start).expect("INFO without Call-ID");
        assert_eq!(call_id(end).as_deref(), Some(cid.as_str()), "dialogstart and dialogend in different dialogs");
        let dialog: Vec<&String> = msgs.iter().filter(|m| call_id(m).as_deref() == Some(cid.as_str())).collect();
        assert!(dialog.iter().any(|m| m.starts_with("BYE ")), "no BYE in the MCP dialog of {conf}");
        for method in ["INVITE", "INFO", "BYE"] {
            let oks = dialog.iter().filter(|m| m.starts_with("SIP/2.0 200") && cseq_method(m).as_deref() == Some(method)).count();
            let want = if method == "INFO" { 2 } else { 1 };
            assert!(oks >= want, "{conf}: {oks} 200 OK to {method}, expected {want}");
        }
    }
}

/// Splits a trace into SIP messages: each starts at a request or status line.
fn split_messages(trace: &str) -> Vec<String> {
    let mut msgs: Vec<String> = Vec::new();
    for line in trace.lines() {
        let l = line.trim_end_matches('\r');
        let start = l.starts_with("SIP/2.0 ") || (l.ends_with(" SIP/2.0") && l.split(' ').count() == 3);
        if start {
            msgs.push(String::new());
        }
        if let Some(m) = msgs.last_mut() {
            m.push_str(l);
            m.push('\n');
        }
    }
    msgs
}

fn header<'a>(m: &'a str, long: &str, short: &str) -> Option<&'a str> {
    m.lines().find_map(|l| {
        let (name, v) = l.split_once(':')?;
        let n = name.trim();
        (n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(short)).then(|| v.trim())
    })
}

fn call_id(m: &str) -> Option<String> {
    header(m, "Call-ID", "i").map(str::to_string)
}

fn cseq_method(m: &str) -> Option<String> {
    header(m, "CSeq", "CSeq").and_then(|v| v.split_whitespace().nth(1)).map(str::to_string)
}

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("callrec-e2e-{name}-")).tempdir().expect("tempdir")
}

#[test]
fn pcma_many_concurrent_calls_colliding_ssrcs() {
    if !can_capture("pcma_many_concurrent_calls_colliding_ssrcs") {
        return;
    }
    let d = tmp("pcma");
    let cap = make_capture(d.path(), &["--calls", "25", "--concurrent", "12", "--length", "5", "--codec", "PCMA", "--other-calls", "3"]);
    let out = d.path().join("out");
    let o = replay(&cap, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_recorded(&cap, &out, 25, true);
    assert_trace(&out, 25);
}

#[test]
fn pcmu_to_pcm16() {
    if !can_capture("pcmu_to_pcm16") {
        return;
    }
    let d = tmp("pcmu");
    let cap = make_capture(d.path(), &["--calls", "20", "--concurrent", "10", "--length", "4", "--codec", "PCMU", "--other-calls", "2"]);
    let out = d.path().join("out");
    let o = replay(&cap, &out, &["--format", "pcm16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_recorded(&cap, &out, 20, true);
    for w in std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "wav")) {
        let b = std::fs::read(w.path()).unwrap();
        assert_eq!(u16::from_le_bytes([b[20], b[21]]), 1, "{:?} is not PCM16", w.path());
    }
    assert_trace(&out, 20);
}

#[test]
fn loss_and_reordering() {
    if !can_capture("loss_and_reordering") {
        return;
    }
    let d = tmp("loss");
    let cap = make_capture(
        d.path(),
        &["--calls", "20", "--concurrent", "10", "--length", "5", "--codec", "PCMA", "--other-calls", "2", "--loss", "3", "--reorder", "5"],
    );
    let out = d.path().join("out");
    let o = replay(&cap, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_recorded(&cap, &out, 20, false);
}

#[test]
fn malformed_sip_is_counted_and_skipped() {
    if !can_capture("malformed_sip_is_counted_and_skipped") {
        return;
    }
    let d = tmp("malformed");
    let cap = make_capture(d.path(), &["--calls", "12", "--concurrent", "6", "--length", "4", "--other-calls", "1", "--malformed"]);
    let out = d.path().join("out");
    let o = replay(&cap, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).to_lowercase();
    let counted = all.lines().any(|l| {
        l.contains("malformed") && l.split(|c: char| !c.is_ascii_digit()).any(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
    });
    assert!(counted, "the summary does not count malformed SIP\n{}", text(&o));
    assert_recorded(&cap, &out, 12, true);
}

fn demo() -> PathBuf {
    root().join("examples/demo.pcap")
}

#[test]
fn missing_and_non_capture_files_fail_with_one_sentence() {
    let d = tmp("bad");
    let not_cap = d.path().join("notes.txt");
    std::fs::write(&not_cap, "this is not a capture file\n".repeat(20)).unwrap();
    for cap in [d.path().join("missing.pcap"), not_cap] {
        let o = replay(&cap, &d.path().join("out"), &[]);
        assert!(!o.status.success(), "{:?} should fail\n{}", cap, text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one sentence on stderr\n{}", text(&o));
        assert!(!err.contains("panicked"), "{}", text(&o));
    }
}

#[test]
fn truncated_capture_keeps_what_was_read() {
    let d = tmp("trunc");
    let full = std::fs::read(demo()).expect("examples/demo.pcap");
    // cut mid-record, late enough that the calls have started
    let cut = d.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() * 3 / 4 + 7]).unwrap();
    let out = d.path().join("out");
    let o = replay(&cut, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).to_lowercase();
    assert!(all.contains("truncat"), "no warning about the truncated capture\n{}", text(&o));
    let wavs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("output dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    assert!(!wavs.is_empty(), "no file written for the calls read\n{}", text(&o));
    for w in wavs {
        let wav = judge::read_wav(&w).unwrap_or_else(|e| panic!("{w:?} not finalized: {e}"));
        assert_eq!(wav.chans.len(), 2);
        assert!(wav.chans[0].len() > 8000, "{w:?} holds under 1 s");
        let b = std::fs::read(&w).unwrap();
        let riff = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert_eq!(riff + 8, b.len(), "{w:?}: RIFF size not finalized");
    }
}

#[test]
fn demo_capture_replays() {
    let d = tmp("demo");
    let out = d.path().join("out");
    let o = replay(&demo(), &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_recorded(&demo(), &out, 4, true);
    assert_trace(&out, 4);
}

/// Stereo PCM16 WAV writer for the judge's self-test (the recorder's writer is what is tested
/// elsewhere; this must not share code with it).
fn write_pcm16(path: &Path, l: &[f64], r: &[f64]) {
    let n = l.len().max(r.len());
    let mut data = Vec::with_capacity(n * 4);
    for i in 0..n {
        for c in [l, r] {
            data.extend_from_slice(&(c.get(i).copied().unwrap_or(0.0) as i16).to_le_bytes());
        }
    }
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 2] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&32000u32.to_le_bytes());
    for v in [4u16, 16] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    std::fs::write(path, b).unwrap();
}

/// The judge accepts perfect recordings made from the capture itself, and rejects swapped
/// channels, a shifted channel and a missing call: it can fail.
#[test]
fn judge_self_test_on_demo_capture() {
    // CALLREC_JUDGE_CAP=FILE runs the self-test on another capture
    let other = std::env::var_os("CALLREC_JUDGE_CAP").map(PathBuf::from);
    let cap = other.clone().unwrap_or_else(demo);
    let streams = judge::streams(&cap).expect("tshark decode");
    let dns = judge::media_dns(&cap).expect("sdp");
    let d = tmp("judge");
    let mut n = 0;
    let mut to_dn = Vec::new();
    for (k, s) in &streams {
        if k.0 != LEFT_SRC || dns.get(&(k.0.clone(), k.1)).map(String::as_str) != Some(DN) {
            continue;
        }
        let back = (k.2.clone(), k.3, k.0.clone(), k.1);
        let a = &streams[&back];
        // lay both out on the capture clock from the earlier start
        let t0 = s.start.min(a.start);
        let pad = |x: &judge::Stream| {
            let mut v = vec![0.0; ((x.start - t0) * 8000.0).round() as usize];
            v.extend_from_slice(&x.pcm);
            v
        };
        to_dn.push((pad(s), pad(a)));
    }
    assert!(!to_dn.is_empty(), "no call to {DN} found in {cap:?}");
    if other.is_none() {
        assert_eq!(to_dn.len(), 4, "demo capture should hold 4 calls to {DN}");
    }
    // CALLREC_JUDGE_KEEP=DIR keeps the reference recordings, to cross-check with
    // ../shared/tools/check_recordings.py
    let good = std::env::var_os("CALLREC_JUDGE_KEEP").map(PathBuf::from).unwrap_or_else(|| d.path().join("good"));
    std::fs::create_dir_all(&good).unwrap();
    for (l, r) in &to_dn {
        write_pcm16(&good.join(format!("{n}.wav")), l, r);
        n += 1;
    }
    let r = judge::judge(&cap, &good, LEFT_SRC, Limits::default()).unwrap();
    assert!(r.calls_to(DN).all(|c| c.problem.is_none() && c.mismatches.0 == 0 && c.mismatches.1 == 0), "{r}");
    assert!(r.calls.iter().filter(|c| c.dn.as_deref() != Some(DN)).all(|c| c.file.is_none()), "{r}");

    let bad = d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let (l, rr) = &to_dn[0];
    write_pcm16(&bad.join("swapped.wav"), rr, l);
    write_pcm16(&bad.join("shifted.wav"), &to_dn[1].0, &{
        let mut v = vec![0.0; 4000];
        v.extend_from_slice(&to_dn[1].1);
        v
    });
    let r = judge::judge(&cap, &bad, LEFT_SRC, Limits::default()).unwrap();
    let bad_calls = r.calls_to(DN).filter(|c| c.problem.is_some()).count();
    assert_eq!(bad_calls, to_dn.len(), "swapped, shifted and the missing calls must all fail\n{r}");
}
