//! End-to-end on live ports: `callrec run --port af_packet:VETH` and `--port tap:TAP` (fed by
//! tc mirroring) inside the agent namespace of scripts/live-setup.sh, real SIPp calls across a
//! veth, SIGTERM, then every call judged against tshark's decode of a tcpdump capture taken on
//! the same veth. One more af_packet run (and one more dpdk run) uses two rx threads and a
//! control thread (`--rx-cores 0,1 --control-core 1`) and is judged the same way.
//!
//! Every live call plays the same audio, so a call may only match the WAV whose sidecar names
//! its SIP Call-ID (found from the SDP addresses in the capture); a recorder that swapped two
//! calls would fail. The run summary's packet counters must add up (rx = SIP + RTP + RTCP +
//! other) and rx must equal the frames the reference capture holds. Two more runs (one per
//! port) send SIGTERM mid-call, right after an RTP packet: every open recording must be final
//! and hold every packet the capture holds up to the signal.
//!
//! Needs root, `ip netns`, tc, sipp and tcpdump; without them each test prints a loud SKIP line
//! and passes. The tests run one after the other (a lock), so their timings are their own.

mod common;

use common::judge::{self, Limits, StreamKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

const DN: &str = "2001";
const LEFT_SRC: &str = "192.0.2.10";
const CALLS: usize = 10;

static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the live setup can run here; prints why not.
fn can_run(test: &str) -> bool {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    let netns = Command::new("ip").args(["netns", "list"]).output().map(|o| o.status.success()).unwrap_or(false);
    let tools = ["sipp", "tcpdump", "tc", "tshark"]
        .iter()
        .all(|t| Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success()));
    if is_root && netns && tools {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIP {test}: needs root, `ip netns`, tc, sipp, tcpdump and tshark \
         (root={is_root} netns={netns} tools={tools}); run scripts/install.sh and the tests as root !!!!!!!!\n"
    );
    false
}

/// What live-setup.sh printed: callrec's summary lines and its own trailer.
struct LiveRun {
    stdout: String,
    stderr: String,
    capture: PathBuf,
}

impl LiveRun {
    fn field(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
}

impl std::fmt::Display for LiveRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs scripts/live-setup.sh for `port` (af_packet or tap) with 10 calls, 5 at once, 6 s, PCMA,
/// and `extra` script options.
fn live(port: &str, dir: &Path, extra: &[&str]) -> LiveRun {
    live_with(port, dir, extra, &[])
}

/// [`live`] with `callrec_args` added to `callrec run`'s arguments.
fn live_with(port: &str, dir: &Path, extra: &[&str], callrec_args: &[&str]) -> LiveRun {
    let capture = dir.join("capture.pcap");
    let t = Instant::now();
    let out = Command::new("timeout")
        .arg("240")
        .arg(root().join("scripts/live-setup.sh"))
        .args(["--port", port, "--callrec", env!("CARGO_BIN_EXE_callrec"), "--dn", DN])
        .args(["--calls", &CALLS.to_string(), "--concurrent", "5", "--length", "6", "--codec", "PCMA"])
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--capture")
        .arg(&capture)
        .args(extra)
        .arg("--")
        .arg("--sip-trace")
        .arg(dir.join("sip-trace.txt"))
        .args(callrec_args)
        .output()
        .expect("run live-setup.sh");
    let run = LiveRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        capture,
    };
    eprintln!("live {port}: {:.1} s in all\n{}", t.elapsed().as_secs_f64(), run.stderr.trim_end());
    assert!(out.status.success(), "live-setup.sh --port {port} failed ({:?})\n{run}", out.status);
    assert_eq!(run.field("callrec-exit"), Some("0"), "callrec did not exit 0 after SIGTERM\n{run}");
    assert!(run.stdout.contains("stopped by signal"), "callrec did not say a signal stopped it\n{run}");
    run
}

/// The numbers of the summary's `packets:` line: rx, SIP, RTP, RTCP, other, and the
/// parenthesized parts of other.
fn packet_counters(run: &LiveRun) -> (u64, u64, u64, u64, u64, Vec<u64>) {
    let line = run.stdout.lines().find(|l| l.starts_with("packets: ")).unwrap_or_else(|| panic!("no packets: line\n{run}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    // packets: RX read: SIP S (malformed M), RTP R, RTCP C, other O (unrecorded U, keep-alive K,
    // not RTP N, oversize Z, not UDP X, fragments F), SIP over TCP T, SIP dropped at a full
    // control ring DS, RTP dropped at a full writer ring D. The drops (DS + D) are returned as
    // the last part.
    assert_eq!(nums.len(), 15, "unexpected packets: line {line:?}");
    let mut parts = nums[6..13].to_vec();
    parts.push(nums[13] + nums[14]);
    (nums[0], nums[1], nums[3], nums[4], nums[5], parts)
}

/// Frames in a classic pcap file (what tcpdump -w writes).
fn pcap_frames(path: &Path) -> u64 {
    let d = std::fs::read(path).expect("read capture");
    assert!(d.len() >= 24, "capture too short");
    let le = match &d[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("not a pcap file: magic {m:02x?}"),
    };
    let (mut at, mut n) = (24usize, 0u64);
    while at + 16 <= d.len() {
        let b = [d[at + 8], d[at + 9], d[at + 10], d[at + 11]];
        let incl = if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as usize;
        at += 16 + incl;
        n += 1;
    }
    n
}

/// Frames of the capture tshark shows for `filter`.
fn tshark_count(cap: &Path, filter: &str) -> u64 {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark -Y {filter}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count() as u64
}

/// The numbers of the port's own counters line (`port KIND:NAME: ...`).
fn port_counters(run: &LiveRun) -> Vec<u64> {
    let line = run.stdout.lines().find(|l| l.starts_with("port ")).unwrap_or_else(|| panic!("no port counters line\n{run}"));
    let (_, rest) = line.split_once(": ").unwrap_or_else(|| panic!("bad port line {line:?}"));
    rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().expect("number")).collect()
}

/// rx = SIP + RTP + RTCP + other, other = its parts, rx = every frame of the reference capture,
/// and SIP / RTP as tshark counts them (ICMP errors quote RTP headers: not RTP). The port
/// delivered rx frames and lost none: no kernel drops (AF_PACKET), no truncation (TAP).
fn assert_counters(run: &LiveRun, port: &str) {
    let (rx, sip, rtp, rtcp, other, parts) = packet_counters(run);
    let pc = port_counters(run);
    if port == "af_packet" {
        // delivered; kernel received, dropped, freezes; bad headers, socket errors
        assert_eq!(pc.len(), 6, "af_packet counters line\n{run}");
        assert_eq!((pc[0], pc[1], pc[2]), (rx, rx, 0), "af_packet delivered / kernel received / dropped\n{run}");
        assert_eq!((pc[4], pc[5]), (0, 0), "af_packet bad headers / socket errors\n{run}");
    } else if port == "dpdk" {
        // delivered; device received, missed, errors, no mbuf
        assert_eq!(pc.len(), 5, "dpdk counters line\n{run}");
        assert_eq!((pc[0], pc[1], pc[2], pc[3], pc[4]), (rx, rx, 0, 0, 0), "dpdk delivered / received / missed / errors / no mbuf\n{run}");
    } else {
        // delivered, truncated, read errors
        assert_eq!(pc, vec![rx, 0, 0], "tap delivered / truncated / read errors\n{run}");
    }
    let (drops, parts) = parts.split_last().expect("drops");
    assert_eq!(other, parts.iter().sum::<u64>(), "other != the sum of its parts\n{run}");
    assert_eq!(rx, sip + rtp + rtcp + other + drops, "rx != SIP + RTP + RTCP + other + ring drops\n{run}");
    assert_eq!(*drops, 0, "SIP or RTP dropped at a full ring on a quiet test link\n{run}");
    let frames = pcap_frames(&run.capture);
    assert_eq!(rx, frames, "callrec read {rx} frames, the capture on the same veth holds {frames}\n{run}");
    let t_sip = tshark_count(&run.capture, "sip && !icmp");
    let t_rtp = tshark_count(&run.capture, "rtp && !icmp");
    assert_eq!(sip, t_sip, "callrec counted {sip} SIP datagrams, tshark {t_sip}\n{run}");
    assert_eq!(rtp + rtcp, t_rtp, "callrec counted {rtp} RTP + {rtcp} RTCP, tshark {t_rtp} RTP (every call is recorded)\n{run}");
}

/// Media endpoint (ip, port) announced in SDP -> the SIP Call-ID of that SDP.
fn call_ids_by_media(cap: &Path) -> HashMap<(String, u16), String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args(["-Y", "sdp && !icmp", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "sip.Call-ID", "-e", "sdp.connection_info.address", "-e", "sdp.media.port"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let port = f.get(2)?.split(',').next()?.parse().ok()?;
            Some(((f.get(1)?.split(',').next()?.to_string(), port), f[0].to_string()))
        })
        .collect()
}

/// RTP packets per stream (src ip, src port, dst ip, dst port) of the capture.
fn rtp_counts(cap: &Path) -> HashMap<StreamKey, u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args(["-o", "rtp.heuristic_rtp:TRUE", "-Y", "rtp && !icmp", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let mut counts = HashMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('|').collect();
        if let [a, ap, b, bp] = f[..] {
            if let (Ok(ap), Ok(bp)) = (ap.parse(), bp.parse()) {
                *counts.entry((a.to_string(), ap, b.to_string(), bp)).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn sidecar(wav: &Path) -> serde_json::Value {
    let p = wav.with_extension("json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("sidecar {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sidecar {}: {e}", p.display()))
}

/// A WAV is final: RIFF size = file length - 8, the data chunk runs exactly to the end.
fn assert_final(wav: &Path) {
    let d = std::fs::read(wav).expect("read wav");
    assert!(d.len() >= 44 && &d[..4] == b"RIFF" && &d[8..12] == b"WAVE", "{}: not RIFF/WAVE", wav.display());
    let u32at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]) as usize;
    assert_eq!(u32at(4), d.len() - 8, "{}: RIFF size not final", wav.display());
    let mut at = 12;
    while at + 8 <= d.len() {
        let size = u32at(at + 4);
        if &d[at..at + 4] == b"data" {
            assert_eq!(at + 8 + size, d.len(), "{}: data chunk size not final", wav.display());
            assert!(size > 0, "{}: no audio", wav.display());
            return;
        }
        at += 8 + size + (size & 1);
    }
    panic!("{}: no data chunk", wav.display());
}

/// Every call to DN of `cap` (`calls` of them) recorded in the WAV whose sidecar names its
/// Call-ID, left = customer, corr >= 0.97, in step within 80 ms, every sample equal to the
/// capture's, every file final; nothing else recorded. Each channel holds the RTP packets the
/// capture holds of its stream, and at most `extra` more (read after the capture's end).
fn assert_recorded(run: &LiveRun, cap: &Path, out: &Path, calls: usize, extra: u64) {
    let ids = call_ids_by_media(cap);
    let rtp = rtp_counts(cap);
    let call_of = |c: &StreamKey, a: &StreamKey| {
        ids.get(&(c.0.clone(), c.1)).or_else(|| ids.get(&(a.0.clone(), a.1))).cloned()
    };
    let holds = |c: &StreamKey, a: &StreamKey, wav: &Path| {
        let Some(id) = call_of(c, a) else { return false };
        sidecar(wav)["call_ids"].as_array().is_some_and(|v| v.iter().any(|x| x.as_str() == Some(id.as_str())))
    };
    let t = Instant::now();
    let r = judge::judge_with(cap, out, LEFT_SRC, Limits::default(), holds).expect("judge");
    eprintln!("judged in {:.1} s\n{r}", t.elapsed().as_secs_f64());
    let to_dn: Vec<_> = r.calls_to(DN).collect();
    assert_eq!(to_dn.len(), calls, "capture holds {} calls to {DN}, expected {calls}\n{r}\n{run}", to_dn.len());
    for c in &to_dn {
        assert!(c.problem.is_none(), "call not recorded correctly: {:?}\n{r}\n{run}", c.problem);
        // nothing is lost on a veth: every packet the capture holds is in the file, exactly
        assert_eq!((c.mismatches.0, c.mismatches.1), (0, 0), "samples differ from the capture\n{r}\n{run}");
        let side = sidecar(c.file.as_deref().expect("a matched call has a file"));
        let got = |ch: &str| side["channels"][ch]["packets"].as_u64().unwrap_or(0);
        let want = (rtp.get(&c.customer).copied().unwrap_or(0), rtp.get(&c.agent).copied().unwrap_or(0));
        let (l, r_) = (got("left"), got("right"));
        assert!(
            (want.0..=want.0 + extra).contains(&l) && (want.1..=want.1 + extra).contains(&r_),
            "{:?}: RTP packets recorded (left, right) ({l}, {r_}), in the capture {want:?} (+ up to {extra})\n{r}\n{run}",
            c.file
        );
        assert!(call_of(&c.customer, &c.agent).is_some(), "no Call-ID for {:?}\n{r}", c.customer);
    }
    for c in r.calls.iter().filter(|c| c.dn.as_deref() != Some(DN)) {
        assert!(c.file.is_none(), "a call to {:?} was recorded in {:?}\n{r}", c.dn, c.file);
    }
    assert_eq!(r.wavs.len(), calls, "expected exactly one WAV per call to {DN}\n{r}\n{run}");
    assert!(r.unreadable.is_empty(), "unreadable WAVs\n{r}");
    for w in &r.wavs {
        assert_final(w);
        let s = sidecar(w);
        assert_eq!(s["failed"], false, "{}: sidecar says failed", w.display());
        assert_eq!(s["dn"], DN, "{}: sidecar dn", w.display());
        assert!(s["stop"].as_f64().is_some(), "{}: sidecar without stop time (not final)", w.display());
    }
}

/// A scratch directory, kept (and named on stderr) when CALLREC_E2E_KEEP is set.
fn scratch(name: &str) -> tempfile::TempDir {
    let mut d = tempfile::Builder::new().prefix(&format!("callrec-live-{name}-")).tempdir().expect("tempdir");
    if std::env::var_os("CALLREC_E2E_KEEP").is_some() {
        d.disable_cleanup(true);
        eprintln!("CALLREC_E2E_KEEP: keeping {}", d.path().display());
    }
    d
}

fn live_test(port: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = scratch(port);
    let run = live(port, d.path(), &[]);
    assert_counters(&run, port);
    assert_recorded(&run, &run.capture, &d.path().join("out"), CALLS, 0);
}

/// `live_test` with two rx threads (af_packet: two fanout sockets; dpdk: two RSS queues) and
/// the control core on its own thread, sharing core 1 with the second rx thread: judged
/// exactly as the inline run, and the per-thread counters add up to the totals, each thread
/// having read frames.
fn threaded_test(port: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = scratch(&format!("threaded-{port}"));
    let run = live_with(port, d.path(), &[], &["--rx-cores", "0,1", "--control-core", "1"]);
    assert_counters(&run, port);
    let per_thread: Vec<Vec<u64>> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("rx-thread "))
        .map(|l| l.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().expect("number")).collect())
        .collect();
    assert_eq!(per_thread.len(), 2, "expected two rx-thread lines\n{run}");
    let (rx, sip, rtp, ..) = packet_counters(&run);
    // rx-thread I: rx R sip S rtp P rtcp C other O ring_full D sip_dropped E
    for t in &per_thread {
        assert_eq!(t.len(), 8, "rx-thread line {t:?}\n{run}");
        assert_eq!(t[1], t[2..].iter().sum::<u64>(), "an rx thread's counters do not add up\n{run}");
        assert!(t[1] > 0, "an rx thread read nothing: flows were not shared\n{run}");
    }
    let sum = |i: usize| per_thread.iter().map(|t| t[i]).sum::<u64>();
    assert_eq!((sum(1), sum(2), sum(3)), (rx, sip, rtp), "per-thread counters do not sum to the totals\n{run}");
    assert_recorded(&run, &run.capture, &d.path().join("out"), CALLS, 0);
}

/// The frames of classic pcap `src` stamped before `until_ns`, written to `dst`.
fn pcap_until(src: &Path, dst: &Path, until_ns: u64) {
    let d = std::fs::read(src).expect("read capture");
    // tcpdump -w writes host-order (little-endian here) microsecond pcap
    assert_eq!(&d[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "expected a little-endian microsecond pcap");
    let u32at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    let mut at = 24;
    while at + 16 <= d.len() {
        let ns = u32at(at) as u64 * 1_000_000_000 + u32at(at + 4) as u64 * 1000;
        if ns >= until_ns {
            break;
        }
        at += 16 + u32at(at + 8) as usize;
    }
    std::fs::write(dst, &d[..at.min(d.len())]).expect("write truncated capture");
}

/// SIGTERM while calls are in progress: callrec exits 0 at once, and every call it had begun
/// recording is in a final file that matches the capture up to the signal.
fn sigterm_test(port: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = scratch(&format!("sigterm-{port}"));
    let run = live(port, d.path(), &["--stop-at", "3"]);
    let (rx, sip, rtp, rtcp, other, parts) = packet_counters(&run);
    let (drops, parts) = parts.split_last().expect("drops");
    assert_eq!(other, parts.iter().sum::<u64>(), "other != the sum of its parts\n{run}");
    assert_eq!(rx, sip + rtp + rtcp + other + drops, "rx != SIP + RTP + RTCP + other + ring drops\n{run}");
    assert_eq!(*drops, 0, "RTP dropped at a full writer ring on a quiet test link\n{run}");
    let stop_ms: u64 = run.field("stop-ms").and_then(|s| s.parse().ok()).expect("stop-ms");
    assert!(stop_ms < 5000, "callrec took {stop_ms} ms from SIGTERM to exit\n{run}");
    let recorded: usize = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("calls: ")?.split(", ").nth(2)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no recorded count in the summary\n{run}"));
    // 5 at once, started at 10 a second: all five are up well before the signal at 3 s
    assert_eq!(recorded, 5, "expected the first 5 calls recorded before SIGTERM\n{run}");
    let sigterm: u64 = run.field("sigterm-ns").and_then(|s| s.parse().ok()).expect("sigterm-ns");
    let cut = d.path().join("until-sigterm.pcap");
    pcap_until(&run.capture, &cut, sigterm);
    // callrec reads on for 30 ms after the signal (src/run.rs STOP_GRACE): 2 packets at 20 ms
    assert_recorded(&run, &cut, &d.path().join("out"), recorded, 2);
}

#[test]
fn af_packet_records_live_sipp_calls() {
    if can_run("af_packet_records_live_sipp_calls") {
        live_test("af_packet");
    }
}

#[test]
fn af_packet_two_rx_threads_and_a_control_thread_record_live_sipp_calls() {
    if can_run("af_packet_two_rx_threads_and_a_control_thread_record_live_sipp_calls") {
        threaded_test("af_packet");
    }
}

#[test]
fn tap_mirrored_by_tc_records_live_sipp_calls() {
    if can_run("tap_mirrored_by_tc_records_live_sipp_calls") {
        live_test("tap");
    }
}

#[test]
fn af_packet_sigterm_mid_call_finalizes_every_open_recording() {
    if can_run("af_packet_sigterm_mid_call_finalizes_every_open_recording") {
        sigterm_test("af_packet");
    }
}

#[test]
fn tap_sigterm_mid_call_finalizes_every_open_recording() {
    if can_run("tap_sigterm_mid_call_finalizes_every_open_recording") {
        sigterm_test("tap");
    }
}

/// The same live calls through DPDK 22.11's net_tap PMD (no hugepages), in a build with the
/// `dpdk` feature (`cargo test --release --features dpdk --test e2e_live dpdk`, as
/// scripts/test.sh does).
#[cfg(feature = "dpdk")]
#[test]
fn dpdk_net_tap_records_live_sipp_calls() {
    if can_run("dpdk_net_tap_records_live_sipp_calls") {
        live_test("dpdk");
    }
}

/// Two net_tap rx queues (the kernel spreads flows over a multi-queue TAP), one rx thread
/// each, and a control thread.
#[cfg(feature = "dpdk")]
#[test]
fn dpdk_net_tap_two_queues_record_live_sipp_calls() {
    if can_run("dpdk_net_tap_two_queues_record_live_sipp_calls") {
        threaded_test("dpdk");
    }
}
