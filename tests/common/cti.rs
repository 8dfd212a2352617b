//! Harness for end-to-end CTI tests: `callrec run` processes (killed when dropped), a raw
//! JSON-lines CTI client, `callrec ctl`, SIP trace parsing, sidecars, and a capture lead-in.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports free now: all bound at once (so no two are equal) and released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0")).collect();
    ls.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// Copies a little-endian Ethernet pcap, putting one non-RTP UDP datagram `secs` before its
/// first packet, so `callrec run` (which pins the capture clock at the first packet) idles
/// that long before the calls. Returns the capture time of that first datagram.
pub fn with_lead_in(src: &Path, dst: &Path, secs: u32) -> Result<f64, String> {
    let b = std::fs::read(src).map_err(|e| format!("read {src:?}: {e}"))?;
    if b.len() < 40 {
        return Err(format!("{src:?} holds no packet"));
    }
    let frac = match b[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => 1e-6,
        [0x4d, 0x3c, 0xb2, 0xa1] => 1e-9,
        _ => return Err(format!("{src:?} is not a little-endian pcap")),
    };
    let u32at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if u32at(20) != 1 {
        return Err(format!("{src:?}: link type {} is not Ethernet", u32at(20)));
    }
    let (sec, sub) = (u32at(24) - secs, u32at(28));
    let mut frame = Vec::new();
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 99, 192, 0, 2, 98];
    let sum: u32 = ip.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(c[1])).sum();
    let csum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    frame.extend_from_slice(&ip);
    // UDP 9 -> 9 (discard), no checksum, 8 zero bytes: not SIP, not RTP (version 0)
    frame.extend_from_slice(&[0, 9, 0, 9, 0, 16, 0, 0]);
    frame.extend_from_slice(&[0; 8]);
    let mut out = b[..24].to_vec();
    for v in [sec, sub, frame.len() as u32, frame.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&frame);
    out.extend_from_slice(&b[24..]);
    std::fs::write(dst, out).map_err(|e| format!("write {dst:?}: {e}"))?;
    Ok(sec as f64 + sub as f64 * frac)
}

/// A `callrec run` process; killed when dropped (so a failing test leaves none behind).
pub struct Callrec {
    child: Option<Child>,
    /// Its CTI address.
    pub cti: SocketAddr,
    /// Output directory.
    pub out: PathBuf,
    /// SIP trace file.
    pub trace: PathBuf,
    /// stdout + stderr.
    pub log: PathBuf,
    /// Just before the process was spawned.
    pub spawned: Instant,
    /// When its CTI server first accepted a connection.
    pub ready: Instant,
}

impl Callrec {
    /// Starts `callrec run --port pcap:CAP --out DIR/out --cti 127.0.0.1:PORT --sip-trace
    /// DIR/sip-trace.txt EXTRA...` and waits (at most 10 s) until its CTI server accepts.
    pub fn start(cap: &Path, dir: &Path, port: u16, extra: &[&str]) -> Callrec {
        std::fs::create_dir_all(dir).expect("test dir");
        let cti: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let (out, trace, log) = (dir.join("out"), dir.join("sip-trace.txt"), dir.join("callrec.log"));
        let logf = std::fs::File::create(&log).expect("log file");
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_callrec"))
            .arg("run")
            .arg(format!("--port=pcap:{}", cap.display()))
            .arg("--out")
            .arg(&out)
            .args(["--cti", &cti.to_string(), "--sip-trace"])
            .arg(&trace)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf)
            .spawn()
            .expect("spawn callrec run");
        let mut me = Callrec { child: Some(child), cti, out, trace, log, spawned, ready: spawned };
        let limit = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&cti, Duration::from_millis(200)).is_ok() {
                me.ready = Instant::now();
                return me;
            }
            if let Some(st) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("callrec run exited before serving CTI ({st}):\n{}", me.log_text());
            }
            assert!(Instant::now() < limit, "callrec run did not accept CTI connections within 10 s:\n{}", me.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it SIGTERM (through kill(1): the tests use no libc binding).
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(st.success(), "kill -TERM {pid} failed");
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most `limit`) for the run to end by itself (end of capture) and checks it
    /// exited 0; kills it and panics otherwise.
    pub fn finish(&mut self, limit: Duration) {
        let Some(mut child) = self.child.take() else { return };
        let until = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    assert!(st.success(), "callrec run exited with {st}:\n{}", self.log_text());
                    return;
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("callrec run did not end within {limit:?} of the capture's end:\n{}", self.log_text());
                }
            }
        }
    }

    /// The capture time (s) of wall instant `t`, bounded: the capture clock is pinned at the
    /// first packet, read between `spawned` and shortly after `ready`. `first` is the capture
    /// time of the first packet.
    pub fn capture_time(&self, first: f64, t: Instant) -> (f64, f64) {
        let since = |a: Instant| t.saturating_duration_since(a).as_secs_f64() - a.saturating_duration_since(t).as_secs_f64();
        (first + since(self.ready) - 0.05, first + since(self.spawned))
    }
}

impl Drop for Callrec {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw CTI client: JSON lines over TCP, as design section 3 puts them.
pub struct Client {
    reader: BufReader<TcpStream>,
    /// The write half.
    pub writer: TcpStream,
    next_ref: i64,
    /// Events read while waiting for an answer (call events and the like).
    pub unsolicited: Vec<Value>,
}

impl Client {
    /// Connects (at most 2 s).
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the CTI server");
        let writer = s.try_clone().expect("clone socket");
        Client { reader: BufReader::new(s), writer, next_ref: 100, unsolicited: Vec::new() }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The next event within `timeout`: Ok(None) on timeout, Err on a closed connection.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        self.reader.get_ref().set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => serde_json::from_str(line.trim_end()).map(Some).map_err(|e| format!("server sent {line:?}: {e}")),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends `req` (an object without ReferenceID) with a fresh ReferenceID and returns the
    /// event that echoes it, waiting at most 5 s.
    pub fn request(&mut self, mut req: Value) -> Value {
        let rid = self.next_ref;
        self.next_ref += 1;
        req["ReferenceID"] = json!(rid);
        let mut line = req.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).expect("send request");
        self.answer(rid, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{req}: {e}"))
    }

    /// The event echoing `rid`, within `limit`; other events are kept in `unsolicited`.
    pub fn answer(&mut self, rid: i64, limit: Duration) -> Result<Value, String> {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no answer to ReferenceID {rid} within {limit:?}"));
            }
            match self.next_event(left)? {
                Some(ev) if ev["ReferenceID"] == json!(rid) => return Ok(ev),
                Some(ev) => self.unsolicited.push(ev),
                None => {}
            }
        }
    }

    /// RegisterAddress, asserting EventRegistered.
    pub fn register(&mut self, dn: &str) {
        let ev = self.request(json!({"request": "RegisterAddress", "ThisDN": dn}));
        assert_eq!(ev["event"], "EventRegistered", "{ev}");
    }

    /// PrivateService with `msg` on `conn` for `dn`.
    pub fn private(&mut self, msg: i64, dn: &str, conn: &str, ext: Value) -> Value {
        self.request(json!({"request": "PrivateService", "PrivateMsgID": msg, "ThisDN": dn,
            "ConnectionID": conn, "Extensions": ext, "Reasons": {"why": "test"}}))
    }

    /// The live calls (callrec's QueryCalls): (ConnectionID, state, recording, DNs).
    pub fn calls(&mut self) -> Vec<(String, String, String, Vec<String>)> {
        let ev = self.request(json!({"request": "QueryCalls"}));
        ev["Calls"]
            .as_array()
            .unwrap_or_else(|| panic!("no Calls in {ev}"))
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                let dns = c["DNs"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(String::from)).collect();
                (s("ConnectionID"), s("State"), s("Recording"), dns)
            })
            .collect()
    }

    /// Polls QueryCalls (every 50 ms, at most `limit`) until `n` established calls have `dn`
    /// among their DNs; returns their ConnectionIDs (oldest first) and when they were seen.
    pub fn wait_calls(&mut self, dn: &str, n: usize, limit: Duration) -> (Vec<String>, Instant) {
        let until = Instant::now() + limit;
        loop {
            let ids: Vec<String> = self
                .calls()
                .into_iter()
                .filter(|c| c.1 == "established" && c.3.iter().any(|d| d == dn))
                .map(|c| c.0)
                .collect();
            if ids.len() >= n {
                return (ids, Instant::now());
            }
            assert!(Instant::now() < until, "{n} established calls with {dn} not listed within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What `callrec ctl` did.
#[derive(Debug)]
pub struct CtlOut {
    /// Exit status (-1 when killed).
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Runs `callrec ctl --cti ADDR --timeout 5 ARGS...`.
pub fn ctl(addr: SocketAddr, args: &[&str]) -> CtlOut {
    let o = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ctl", "--cti", &addr.to_string(), "--timeout", "5"])
        .args(args)
        .output()
        .expect("run callrec ctl");
    CtlOut {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A `callrec ctl` running in the background (e.g. `watch`); killed when dropped.
pub struct CtlChild(Option<Child>);

/// Starts `callrec ctl --cti ADDR ARGS...` in the background, stdout and stderr piped.
pub fn ctl_spawn(addr: SocketAddr, args: &[&str]) -> CtlChild {
    let c = Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ctl", "--cti", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callrec ctl");
    CtlChild(Some(c))
}

impl CtlChild {
    /// Waits at most `limit` for it to exit by itself; kills it and panics otherwise.
    pub fn output(mut self, limit: Duration) -> CtlOut {
        let mut c = self.0.take().expect("child");
        let until = Instant::now() + limit;
        while c.try_wait().ok().flatten().is_none() {
            if Instant::now() >= until {
                let _ = c.kill();
                let o = c.wait_with_output().expect("ctl output");
                panic!("callrec ctl did not end within {limit:?}; printed {}", String::from_utf8_lossy(&o.stdout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = c.wait_with_output().expect("ctl output");
        CtlOut {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for CtlChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `callrec ctl` and returns the JSON event it printed, asserting exit 0.
pub fn ctl_ok(addr: SocketAddr, args: &[&str]) -> Value {
    let o = ctl(addr, args);
    assert_eq!(o.code, 0, "callrec ctl {args:?} failed: {o:?}");
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("ctl {args:?} printed no JSON event ({e}): {o:?}"))
}

/// Every sidecar (`*.json`) under `dir`, recursively, with its path.
pub fn sidecars(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    collect(dir, "json", &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).expect("read sidecar")).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, v)
        })
        .collect()
}

/// Every file with extension `ext` under `dir`, recursively.
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    collect(dir, ext, &mut v);
    v.sort();
    v
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// One message of a `--sip-trace` file.
#[derive(Debug, Clone)]
pub struct TraceMsg {
    /// Capture time, seconds since the epoch.
    pub at: f64,
    /// The SIP message.
    pub text: String,
}

impl TraceMsg {
    /// The first line.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// A header's value (long or compact name).
    pub fn header(&self, long: &str, short: &str) -> Option<&str> {
        self.text.lines().take_while(|l| !l.is_empty()).skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(short)).then(|| v.trim())
        })
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID", "i")
    }
}

/// Reads a SIP trace: each message follows a line `<RFC 3339 time> <from> -> <to>`.
pub fn read_trace(path: &Path) -> Vec<TraceMsg> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read trace {path:?}: {e}"));
    let mut msgs: Vec<TraceMsg> = Vec::new();
    for line in text.lines() {
        let l = line.trim_end_matches('\r');
        let stamp = l.split(' ').collect::<Vec<_>>();
        if stamp.len() == 4 && stamp[2] == "->" {
            if let Some(at) = parse_rfc3339(stamp[0]) {
                msgs.push(TraceMsg { at, text: String::new() });
                continue;
            }
        }
        if let Some(m) = msgs.last_mut() {
            m.text.push_str(l);
            m.text.push('\n');
        }
    }
    msgs
}

/// `2026-11-25T23:28:03.692707000Z` as seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    // Howard Hinnant's days_from_civil
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) as f64 + frac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(super::parse_rfc3339("2026-11-25T23:28:03.5Z"), Some(1795649283.5));
    }
}
