//! The live load run: scripts/live-setup.sh with many SIPp calls at once, every call judged
//! against tshark's decode of the reference capture, one result line printed (bench/load-live.sh
//! runs it; the figures go to bench/RESULTS.md).
//!
//! Ignored by default (it is a benchmark, minutes long). Environment: CALLREC_LOAD_CALLS (200),
//! CALLREC_LOAD_CONC (100), CALLREC_LOAD_LEN seconds (8), CALLREC_LOAD_RATE calls per second
//! (10), CALLREC_LOAD_PORT af_packet|tap|dpdk (af_packet), CALLREC_LOAD_NICE (0: callrec's
//! `nice -n`). It fails when a call is not recorded
//! with zero gap, after printing the result line.

mod common;

use common::judge::{self, Limits, StreamKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const DN: &str = "2001";
const LEFT_SRC: &str = "192.0.2.10";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Lines of `text` starting with `key ` (the rest of the line).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Every number of the first line starting with `prefix`.
fn numbers(text: &str, prefix: &str) -> Vec<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| {
            let l = l.split_once(": ").map_or(l, |(_, r)| r);
            l.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
        })
        .unwrap_or_default()
}

/// tshark fields of the frames matching `filter`, split at '|'.
fn tshark_fields(cap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(cap).args(["-o", "rtp.heuristic_rtp:TRUE", "-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}

fn sidecar(wav: &Path) -> serde_json::Value {
    std::fs::read_to_string(wav.with_extension("json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
#[ignore = "a load benchmark: bench/load-live.sh runs it as root"]
fn load() {
    let calls: usize = env_or("CALLREC_LOAD_CALLS", "200").parse().expect("CALLREC_LOAD_CALLS");
    let conc = env_or("CALLREC_LOAD_CONC", "100");
    let len = env_or("CALLREC_LOAD_LEN", "8");
    let rate = env_or("CALLREC_LOAD_RATE", "10");
    let port = env_or("CALLREC_LOAD_PORT", "af_packet");
    let nice = env_or("CALLREC_LOAD_NICE", "0");
    let dir = tempfile::Builder::new().prefix("callrec-load-").tempdir().expect("tempdir");
    let (cap, out_dir) = (dir.path().join("capture.pcap"), dir.path().join("out"));
    let t = Instant::now();
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/live-setup.sh"))
        .args(["--port", &port, "--callrec", env!("CARGO_BIN_EXE_callrec"), "--dn", DN])
        .args(["--calls", &calls.to_string(), "--concurrent", &conc, "--length", &len, "--rate", &rate, "--nice", &nice])
        .arg("--out")
        .arg(&out_dir)
        .arg("--capture")
        .arg(&cap)
        .output()
        .expect("run live-setup.sh");
    let wall = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}\n{stderr}");
    let script_ok = out.status.success();

    // callrec's own view: the last number of `packets:` is RTP dropped at a full writer ring;
    // the af_packet line's third number is the kernel's drops (ring full)
    let ring_drops = numbers(&stdout, "packets: ").last().copied().unwrap_or(0);
    let pc = numbers(&stdout, "port ");
    let kernel_drops = if port == "af_packet" { pc.get(2).copied().unwrap_or(0) } else { 0 };
    let cpu: Vec<f64> = field(&stdout, "cpu-ticks").unwrap_or("0 100").split(' ').filter_map(|s| s.parse().ok()).collect();
    let cpu_s = cpu.first().copied().unwrap_or(0.0) / cpu.get(1).copied().unwrap_or(100.0);
    let calls_s: f64 = field(&stdout, "calls-s").and_then(|s| s.parse().ok()).unwrap_or(0.0);

    // judge: a call may only match the WAV whose sidecar names its Call-ID
    let t_judge = Instant::now();
    let ids: HashMap<(String, u16), String> =
        tshark_fields(&cap, "sdp && !icmp", &["sip.Call-ID", "sdp.connection_info.address", "sdp.media.port"])
            .into_iter()
            .filter_map(|f| {
                let port = f.get(2)?.split(',').next()?.parse().ok()?;
                Some(((f.get(1)?.split(',').next()?.to_string(), port), f.first()?.clone()))
            })
            .collect();
    let mut rtp: HashMap<StreamKey, u64> = HashMap::new();
    for f in tshark_fields(&cap, "rtp && !icmp", &["ip.src", "udp.srcport", "ip.dst", "udp.dstport"]) {
        if let [a, ap, b, bp] = &f[..] {
            if let (Ok(ap), Ok(bp)) = (ap.parse(), bp.parse()) {
                *rtp.entry((a.clone(), ap, b.clone(), bp)).or_insert(0) += 1;
            }
        }
    }
    let call_of =
        |c: &StreamKey, a: &StreamKey| ids.get(&(c.0.clone(), c.1)).or_else(|| ids.get(&(a.0.clone(), a.1))).cloned();
    let holds = |c: &StreamKey, a: &StreamKey, wav: &Path| {
        let Some(id) = call_of(c, a) else { return false };
        sidecar(wav)["call_ids"].as_array().is_some_and(|v| v.iter().any(|x| x.as_str() == Some(id.as_str())))
    };
    let r = judge::judge_with(&cap, &out_dir, LEFT_SRC, Limits::default(), holds).expect("judge");
    let to_dn: Vec<_> = r.calls_to(DN).collect();
    let mut correct = 0;
    let mut zero_gap = 0;
    for c in &to_dn {
        if c.problem.is_some() {
            eprintln!("not recorded correctly: {:?} {:?}", c.customer, c.problem);
            continue;
        }
        correct += 1;
        let side = sidecar(c.file.as_deref().expect("a matched call has a file"));
        let ch = |n: &str, k: &str| side["channels"][n][k].as_u64().unwrap_or(u64::MAX);
        let want = (rtp.get(&c.customer).copied().unwrap_or(0), rtp.get(&c.agent).copied().unwrap_or(0));
        let exact = c.mismatches.0 == 0 && c.mismatches.1 == 0;
        if exact && ch("left", "lost") == 0 && ch("right", "lost") == 0 && (ch("left", "packets"), ch("right", "packets")) == want {
            zero_gap += 1;
        } else {
            eprintln!(
                "gap: {:?} mismatches {:?} lost ({}, {}) packets ({}, {}) capture {want:?}",
                c.file,
                c.mismatches,
                ch("left", "lost"),
                ch("right", "lost"),
                ch("left", "packets"),
                ch("right", "packets")
            );
        }
    }
    let judge_s = t_judge.elapsed().as_secs_f64();
    println!(
        "load {port}: calls {calls} concurrent {conc} rate {rate}/s length {len} s nice {nice}: in capture {}, recorded correctly {correct}, \
         zero gap {zero_gap}; ring drops {ring_drops}, kernel drops {kernel_drops}; calls took {calls_s:.0} s, run {wall:.1} s, \
         judge {judge_s:.1} s; callrec CPU {cpu_s:.2} s ({:.1} % of one core over the calls); script ok {script_ok}",
        to_dn.len(),
        if calls_s > 0.0 { 100.0 * cpu_s / calls_s } else { 0.0 }
    );
    assert!(script_ok, "live-setup.sh failed");
    assert_eq!(to_dn.len(), calls, "the capture holds {} calls to {DN}", to_dn.len());
    assert_eq!(zero_gap, calls, "not every call recorded with zero gap");
}
