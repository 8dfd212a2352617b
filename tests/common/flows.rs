//! Call-flow captures (scripts/flows/make-flow.sh) and the checks on recordings made through
//! transfers, holds and conferences: SIP event times and per-dialog streams from tshark, each
//! channel judged per segment against the stream (or mix of streams) it should carry, runs of
//! silence, and the sidecar's parties, holds and Call-IDs.

use super::cti::parse_rfc3339;
use super::judge::{self, alaw, Spectra, Stream, StreamKey, Wav};
use super::segment::{MAX_OFFSET, MIN_CORR};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RATE: f64 = 8000.0;
const WIN: usize = 8000;
/// Zero samples each side of a reference, so windows reaching past its ends are still searched.
const PAD: usize = 4000;
/// The customer's address in every flow.
pub const CUSTOMER_IP: &str = "192.0.2.10";
/// The customer's DN (From user) in every flow.
pub const CUSTOMER_DN: &str = "+15550001";

/// The address of agent DN 200k.
pub fn agent_ip(dn: &str) -> String {
    format!("192.0.2.2{}", dn.chars().last().unwrap_or('0'))
}

/// One SIP message of the capture (first copy; retransmissions skipped).
#[derive(Debug, Clone)]
pub struct SipMsg {
    /// Capture time.
    pub at: f64,
    /// Call-ID.
    pub call_id: String,
    /// Request method, or empty for a response.
    pub method: String,
    /// Response status, or 0 for a request.
    pub status: u16,
    /// The CSeq method.
    pub cseq_method: String,
    /// Source address.
    pub src: String,
}

/// A flow's capture and tshark's view of it.
pub struct FlowCapture {
    /// Flow name.
    pub name: String,
    /// The capture file.
    pub cap: PathBuf,
    /// What make-flow.sh printed (Call-IDs, tags, planned times).
    pub facts: String,
    /// SIP messages in capture order.
    pub sip: Vec<SipMsg>,
    /// Every RTP stream, decoded.
    pub streams: HashMap<StreamKey, Stream>,
    /// (Call-ID, ip, port) of every SDP media line.
    pub media: Vec<(String, String, u16)>,
    /// Where a live recorder run during the flow wrote its files (make-flow.sh --live).
    pub live_out: Option<PathBuf>,
}

/// Runs make-flow.sh for `flow` into `dir/<flow>.pcap` (with `live`, the command is run inside
/// the flow's namespace for the flow's length), then decodes the capture.
pub fn make_flow(root: &Path, flow: &str, dir: &Path, live: &[String]) -> Result<FlowCapture, String> {
    let cap = dir.join(format!("{flow}.pcap"));
    let mut cmd = Command::new("timeout");
    cmd.arg("90").arg(root.join("scripts/flows/make-flow.sh")).args(["--flow", flow, "--out"]).arg(&cap);
    if !live.is_empty() {
        cmd.arg("--live").args(live);
    }
    let out = cmd.output().map_err(|e| format!("make-flow.sh: {e}"))?;
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    std::fs::write(dir.join(format!("{flow}.make.log")), format!("{so}\n--- stderr\n{se}")).ok();
    if !out.status.success() {
        return Err(format!("make-flow.sh --flow {flow} failed ({}):\n{so}\n{se}", out.status));
    }
    FlowCapture::read(flow, &cap, so)
}

impl FlowCapture {
    /// Decodes an existing capture.
    pub fn read(flow: &str, cap: &Path, facts: String) -> Result<FlowCapture, String> {
        let c = cap.to_str().ok_or("capture path is not UTF-8")?;
        let out = Command::new("tshark")
            .args(["-r", c, "-Y", "sip", "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch", "-e", "sip.Call-ID"])
            .args(["-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.CSeq.method", "-e", "ip.src", "-e", "sip.CSeq.seq"])
            .output()
            .map_err(|e| format!("tshark: {e}"))?;
        if !out.status.success() {
            return Err(format!("tshark: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let mut sip: Vec<SipMsg> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() != 7 {
                continue;
            }
            let m = SipMsg {
                at: f[0].parse().unwrap_or(0.0),
                call_id: f[1].to_string(),
                method: f[2].to_string(),
                status: f[3].parse().unwrap_or(0),
                cseq_method: f[4].to_string(),
                src: f[5].to_string(),
            };
            // a retransmission repeats call, source, CSeq and method/status
            if seen.insert((m.call_id.clone(), m.src.clone(), f[6].to_string(), m.method.clone(), m.status)) {
                sip.push(m);
            }
        }
        Ok(FlowCapture {
            name: flow.to_string(),
            cap: cap.to_path_buf(),
            facts,
            sip,
            streams: judge::streams(cap)?,
            media: judge::sdp_media(cap)?,
            live_out: None,
        })
    }

    /// Every key SIP event of the capture within `tol` s of its planned time (make-flow.sh's
    /// facts, ms from the run's start, anchored on D1's answer): the parties kept to the plan,
    /// so the order of events is the flow's. Fails when the machine was too loaded for that.
    pub fn on_plan(&self, tol: f64) -> Result<(), String> {
        let mut dialogs: HashMap<String, String> = HashMap::new();
        let mut base = None;
        for line in self.facts.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let (Some(kind), Some(d), Some(planned)) = (w.first(), w.get(1), w.last().and_then(|t| t.parse::<f64>().ok())) else {
                continue;
            };
            if *kind == "call" {
                dialogs.insert(d.to_string(), w.get(2).unwrap_or(&"").to_string());
            }
            let Some(cid) = dialogs.get(*d) else { continue };
            let actual = match *kind {
                "call" => self.answered(cid)?,
                "refer" => self.request(cid, "REFER")?,
                "bye" => self.bye(cid)?,
                "hold" | "resume" => {
                    let k = if *kind == "hold" { 1 } else { 2 };
                    *self.sdp_oks(cid).get(k).ok_or_else(|| format!("{}: no {kind} offer answered in {cid}", self.name))?
                }
                _ => continue,
            };
            let base = *base.get_or_insert(actual - planned / 1000.0);
            let off = actual - base - planned / 1000.0;
            if off.abs() > tol {
                return Err(format!(
                    "{}: capture off its plan: `{line}` happened {:+.0} ms from its planned time (machine overloaded?)",
                    self.name,
                    off * 1000.0
                ));
            }
        }
        Ok(())
    }

    /// The Call-ID of dialog `d` ("D1", ...) from the flow's facts.
    pub fn dialog(&self, d: &str) -> Result<String, String> {
        self.facts
            .lines()
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"call") && w.get(1) == Some(&d)).then(|| w.get(2).map(|c| c.to_string())).flatten()
            })
            .ok_or_else(|| format!("{}: no dialog {d} in the flow's facts", self.name))
    }

    /// Times of the 200 OKs to INVITEs and UPDATEs in dialog `cid` (the answer, then each
    /// offer's: hold, resume).
    pub fn sdp_oks(&self, cid: &str) -> Vec<f64> {
        self.sip
            .iter()
            .filter(|m| m.call_id == cid && m.status == 200 && (m.cseq_method == "INVITE" || m.cseq_method == "UPDATE"))
            .map(|m| m.at)
            .collect()
    }

    /// Times of the 200 OKs to INVITEs in dialog `cid` (answer, then each re-INVITE's).
    pub fn invite_oks(&self, cid: &str) -> Vec<f64> {
        self.sip.iter().filter(|m| m.call_id == cid && m.status == 200 && m.cseq_method == "INVITE").map(|m| m.at).collect()
    }

    /// When dialog `cid` was answered (its first 200 OK to an INVITE).
    pub fn answered(&self, cid: &str) -> Result<f64, String> {
        self.invite_oks(cid).first().copied().ok_or_else(|| format!("{}: no 200 OK to an INVITE in {cid}", self.name))
    }

    /// When the first `method` request of dialog `cid` was sent.
    pub fn request(&self, cid: &str, method: &str) -> Result<f64, String> {
        self.sip
            .iter()
            .find(|m| m.call_id == cid && m.method == method)
            .map(|m| m.at)
            .ok_or_else(|| format!("{}: no {method} in {cid}", self.name))
    }

    /// When dialog `cid` ended (its BYE).
    pub fn bye(&self, cid: &str) -> Result<f64, String> {
        self.request(cid, "BYE")
    }

    /// The RTP stream sent from `from_ip` in dialog `cid` (between endpoints of its SDP).
    pub fn stream(&self, cid: &str, from_ip: &str) -> Result<StreamKey, String> {
        let eps: Vec<(&str, u16)> = self.media.iter().filter(|m| m.0 == cid).map(|m| (m.1.as_str(), m.2)).collect();
        self.streams
            .keys()
            .find(|k| k.0 == from_ip && eps.contains(&(k.0.as_str(), k.1)) && eps.contains(&(k.2.as_str(), k.3)))
            .cloned()
            .ok_or_else(|| format!("{}: no RTP from {from_ip} in dialog {cid} (SDP endpoints {eps:?})", self.name))
    }

    /// A reference for one stream moved by `shift` seconds.
    pub fn one_shifted(&self, key: &StreamKey, shift: f64) -> Result<Ref, String> {
        let s = self.streams.get(key).ok_or_else(|| format!("no stream {key:?}"))?;
        Ok(Ref::new(format!("{}:{}->{}:{}", key.0, key.1, key.2, key.3), &s.pcm, s.start + shift))
    }

    /// A reference for one stream.
    pub fn one(&self, key: &StreamKey) -> Result<Ref, String> {
        let s = self.streams.get(key).ok_or_else(|| format!("no stream {key:?}"))?;
        Ok(Ref::new(format!("{}:{}->{}:{}", key.0, key.1, key.2, key.3), &s.pcm, s.start))
    }

    /// A reference for the sum of two streams laid out by capture time, clipped to 16 bit (what
    /// a recorder mixing two parties into one channel should write).
    pub fn mix(&self, a: &StreamKey, b: &StreamKey) -> Result<Ref, String> {
        self.mix_shifted(a, b, 0.0, 0.0)
    }

    /// [`mix`](Self::mix) with each stream moved by its own shift (seconds): a recorder
    /// anchors a stream on the capture time of the first packet it records, and a sender's
    /// first packets may leave in a burst, so two streams can each sit a packet off the
    /// decode's layout (the per-stream checks allow 80 ms) while their sum must still match.
    pub fn mix_shifted(&self, a: &StreamKey, b: &StreamKey, shift_a: f64, shift_b: f64) -> Result<Ref, String> {
        let (sa, sb) = (
            self.streams.get(a).ok_or_else(|| format!("no stream {a:?}"))?,
            self.streams.get(b).ok_or_else(|| format!("no stream {b:?}"))?,
        );
        let (a0, b0) = (sa.start + shift_a, sb.start + shift_b);
        let start = a0.min(b0);
        let end = (a0 + sa.pcm.len() as f64 / RATE).max(b0 + sb.pcm.len() as f64 / RATE);
        let mut pcm = vec![0.0; ((end - start) * RATE).ceil() as usize + 1];
        for (s, s0) in [(sa, a0), (sb, b0)] {
            let off = ((s0 - start) * RATE).round() as usize;
            for (i, x) in s.pcm.iter().enumerate() {
                pcm[off + i] += x;
            }
        }
        for x in &mut pcm {
            *x = x.clamp(-32768.0, 32767.0);
        }
        Ok(Ref::new(format!("mix of {}:{} and {}:{}", a.0, a.1, b.0, b.1), &pcm, start))
    }
}

/// The audio one channel should hold over a time: one stream, or a mix.
pub struct Ref {
    /// What it is, for messages.
    pub what: String,
    spectra: Spectra,
    pcm: Vec<f64>,
    start: f64,
}

impl Ref {
    fn new(what: String, pcm: &[f64], start: f64) -> Ref {
        let mut v = vec![0.0; PAD];
        v.extend_from_slice(pcm);
        v.extend(std::iter::repeat_n(0.0, PAD));
        Ref { what, spectra: Spectra::new(Wav { rate: 8000, chans: vec![v] }), pcm: pcm.to_vec(), start }
    }

    /// The reference's sample at capture time `t` (0 outside it).
    fn sample(&self, t: f64) -> f64 {
        let i = ((t - self.start) * RATE).round();
        if i < 0.0 {
            return 0.0;
        }
        self.pcm.get(i as usize).copied().unwrap_or(0.0)
    }
}

/// Pearson correlation of two equal-length runs (0 when either is flat).
fn corr(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// A recording made here, not by callrec, to prove the checks: capture times `start`..`end`,
/// each channel A-law silence except where a segment (reference, from, to) puts its audio.
/// `sc` is the sidecar (its `start` is set here).
pub fn synthetic(start: f64, end: f64, left: &[(&Ref, f64, f64)], right: &[(&Ref, f64, f64)], mut sc: Value) -> Rec {
    let n = ((end - start) * RATE) as usize;
    let silence = alaw(0xD5) as f64;
    let chans = [left, right]
        .iter()
        .map(|plan| {
            let mut c = vec![silence; n];
            for (r, from, to) in plan.iter() {
                let (a, b) = ((((from - start) * RATE).max(0.0)) as usize, (((to - start) * RATE) as usize).min(n));
                for (i, x) in c.iter_mut().enumerate().take(b).skip(a) {
                    *x = r.sample(start + i as f64 / RATE);
                }
            }
            c
        })
        .collect();
    sc["start"] = serde_json::json!(start);
    Rec { sc, path: PathBuf::from("(synthetic)"), wav: Wav { rate: 8000, chans }, start, secs: n as f64 / RATE, trace: None }
}

/// `t` (seconds since the epoch) as RFC 3339 UTC with microseconds, as sidecars write times.
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let micros = ((t - secs as f64) * 1e6).round() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A recording read back: sidecar, WAV, where sample 0 was captured.
pub struct Rec {
    /// The sidecar.
    pub sc: Value,
    /// The sidecar's path.
    pub path: PathBuf,
    /// The audio.
    pub wav: Wav,
    /// Capture time of sample 0 (sidecar `start`).
    pub start: f64,
    /// Seconds in the file.
    pub secs: f64,
    /// The recorder's `--sip-trace` (recording roles' SIP/MSML), when there is one.
    pub trace: Option<PathBuf>,
}

/// Every recording (sidecar + WAV) under `dir`.
pub fn recordings(dir: &Path) -> Result<Vec<Rec>, String> {
    let mut res = Vec::new();
    for (path, sc) in super::cti::sidecars(dir) {
        let wav_name = sc["wav"].as_str().ok_or_else(|| format!("{}: no \"wav\" in the sidecar", path.display()))?;
        let wav_path = path.with_file_name(wav_name);
        let wav = judge::read_wav(&wav_path).map_err(|e| format!("{}: {e}", wav_path.display()))?;
        if wav.chans.len() != 2 || wav.rate != 8000 {
            return Err(format!("{}: {} channels at {} Hz, expected stereo 8000 Hz", wav_path.display(), wav.chans.len(), wav.rate));
        }
        let start = sc["start"].as_f64().ok_or_else(|| format!("{}: no number \"start\"", path.display()))?;
        let secs = wav.chans[0].len() as f64 / RATE;
        if sc["duration_samples"].as_u64() != Some(wav.chans[0].len() as u64) {
            return Err(format!("{}: duration_samples {} but the WAV holds {}", path.display(), sc["duration_samples"], wav.chans[0].len()));
        }
        res.push(Rec { sc, path, wav, start, secs, trace: None });
    }
    Ok(res)
}

/// Which channel: 0 left (customer), 1 right (agent).
pub fn chan_name(ch: usize) -> &'static str {
    if ch == 0 {
        "left"
    } else {
        "right"
    }
}

/// Margin kept from each end of a segment (transitions may take a packet or two).
pub const EDGE: f64 = 0.15;

impl Rec {
    /// The shift (seconds, 1-sample steps within +-`max`) that best lines reference `make(shift)`
    /// up with channel `ch` over capture times `from..to` (plain correlation).
    pub fn best_shift(&self, ch: usize, from: f64, to: f64, max: f64, make: impl Fn(f64) -> Ref) -> f64 {
        let (a, b) = ((self.at(from) * RATE).max(0.0) as usize, ((self.at(to) * RATE) as usize).min(self.wav.chans[ch].len()));
        if b <= a + 8 {
            return 0.0;
        }
        let x = &self.wav.chans[ch][a..b];
        let steps = (max * RATE) as i64;
        let mut best = (f64::MIN, 0.0);
        for k in -steps..=steps {
            let shift = k as f64 / RATE;
            let r = make(shift);
            let y: Vec<f64> = (a..b).map(|i| r.sample(self.start + i as f64 / RATE)).collect();
            let c = corr(x, &y);
            if c > best.0 {
                best = (c, shift);
            }
        }
        best.1
    }

    /// Seconds into the file of capture time `t`.
    pub fn at(&self, t: f64) -> f64 {
        t - self.start
    }

    /// Channel `ch` holds `r` from capture time `from` to `to` (shrunk by [`EDGE`] each end):
    /// up to 4 spread 1 s windows, each correlating >= MIN_CORR, each within MAX_OFFSET of where
    /// its audio was captured. Returns each window's (file second, offset).
    pub fn holds(&self, ch: usize, r: &Ref, from: f64, to: f64) -> Result<Vec<(f64, f64)>, String> {
        let len = self.wav.chans[ch].len();
        let a = ((self.at(from + EDGE) * RATE).max(0.0)) as usize;
        let b = ((self.at(to - EDGE) * RATE).max(0.0) as usize).min(len);
        if b < a + WIN {
            return Err(format!(
                "{} channel should hold {} from {:.2} to {:.2} s into the file, but the file has {:.2} s",
                chan_name(ch),
                r.what,
                self.at(from),
                self.at(to),
                self.secs
            ));
        }
        let n = ((b - a) / WIN).clamp(1, 4);
        let step = if n > 1 { (b - a - WIN) / (n - 1) } else { 0 };
        let mut res = Vec::new();
        for w in 0..n {
            let i = a + w * step;
            let (c, k) = r.spectra.corr(0, &self.wav.chans[ch][i..i + WIN]);
            let expected = (i + PAD) as f64 + (self.start - r.start) * RATE;
            let off = (k as f64 - expected) / RATE;
            let sec = i as f64 / RATE;
            if c < MIN_CORR {
                return Err(format!(
                    "{} channel at {sec:.2} s (of {:.2}..{:.2} s) does not hold {}: correlation {c:.3} < {MIN_CORR}",
                    chan_name(ch),
                    self.at(from),
                    self.at(to),
                    r.what
                ));
            }
            if off.abs() > MAX_OFFSET {
                return Err(format!(
                    "{} channel at {sec:.2} s holds {} captured {:.0} ms away from its place",
                    chan_name(ch),
                    r.what,
                    off * 1000.0
                ));
            }
            res.push((sec, off));
        }
        Ok(res)
    }

    /// Both channels are silent (A-law 0xD5) around capture times `from`..`to`: the silent run
    /// containing the middle starts and ends within `tol` of them.
    pub fn silent(&self, from: f64, to: f64, tol: f64) -> Result<(), String> {
        let value = alaw(0xD5) as f64;
        let mid = ((self.at((from + to) / 2.0)) * RATE) as usize;
        let Some((a, b)) = super::segment::silent_run(&self.wav, mid, value) else {
            let (l, r) = (self.wav.chans[0].get(mid), self.wav.chans[1].get(mid));
            return Err(format!(
                "not silent at {:.2} s (middle of {:.2}..{:.2} s): left {l:?}, right {r:?} (silence is {value})",
                mid as f64 / RATE,
                self.at(from),
                self.at(to)
            ));
        };
        let (a, b) = (a as f64 / RATE, b as f64 / RATE);
        if (a - self.at(from)).abs() > tol || (b - self.at(to)).abs() > tol {
            return Err(format!(
                "silence from {a:.3} to {b:.3} s, expected {:.3}..{:.3} s (+-{:.0} ms)",
                self.at(from),
                self.at(to),
                tol * 1000.0
            ));
        }
        Ok(())
    }

    /// Channel `ch` is silent (A-law 0xD5) from `from` to `to` (capture times, shrunk by EDGE).
    pub fn channel_silent(&self, ch: usize, from: f64, to: f64) -> Result<(), String> {
        let value = alaw(0xD5) as f64;
        let a = ((self.at(from + EDGE) * RATE).max(0.0)) as usize;
        let b = ((self.at(to - EDGE) * RATE).max(0.0) as usize).min(self.wav.chans[ch].len());
        match (a..b).find(|i| self.wav.chans[ch][*i] != value) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{} channel not silent at {:.3} s (expected silence {:.2}..{:.2} s)",
                chan_name(ch),
                i as f64 / RATE,
                self.at(from),
                self.at(to)
            )),
        }
    }

    /// The file spans capture times `from`..`to`, each end within `tol`.
    pub fn spans(&self, from: f64, to: f64, tol: f64) -> Result<(), String> {
        let end = self.start + self.secs;
        if (self.start - from).abs() > tol || (end - to).abs() > tol {
            return Err(format!(
                "file covers {:.3}..{:.3} (capture time, s), expected {from:.3}..{to:.3} +-{:.0} ms (starts {:+.0} ms, ends {:+.0} ms off)",
                self.start,
                end,
                tol * 1000.0,
                (self.start - from) * 1000.0,
                (end - to) * 1000.0
            ));
        }
        Ok(())
    }

    /// The MCP side saw one recording: every recording INVITE for this conf-id in one SIP
    /// dialog (re-INVITEs, not new sessions), and the first `<dialogend>` for it at the file's
    /// end (within `tol`), none earlier. Nothing to check without a trace.
    pub fn check_mcp(&self, tol: f64) -> Result<(), String> {
        let Some(trace) = &self.trace else { return Ok(()) };
        let conf = self.sc["conf_id"].as_str().ok_or("no conf_id in the sidecar")?;
        let msgs = super::cti::read_trace(trace);
        let mut dialogs: Vec<&str> = msgs
            .iter()
            .filter(|m| m.first_line().starts_with(&format!("INVITE sip:msml={conf}@")))
            .filter_map(|m| m.call_id())
            .collect();
        dialogs.sort();
        dialogs.dedup();
        if dialogs.len() != 1 {
            return Err(format!("{} recording dialogs (INVITE sip:msml={conf}) in the trace, expected one: {dialogs:?}", dialogs.len()));
        }
        let end = self.start + self.secs;
        let first = msgs
            .iter()
            .filter(|m| m.first_line().starts_with("INFO ") && m.text.contains("<dialogend") && m.text.contains(&format!("conf:{conf}")))
            .map(|m| m.at)
            .fold(f64::INFINITY, f64::min);
        if !first.is_finite() {
            return Err(format!("no <dialogend> for conf:{conf} in the trace"));
        }
        if (first - end).abs() > tol {
            return Err(format!("<dialogend> {:+.0} ms from the file's end", (first - end) * 1000.0));
        }
        Ok(())
    }

    /// The sidecar's `call_ids`.
    pub fn call_ids(&self) -> Vec<String> {
        self.sc["call_ids"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
    }

    /// The sidecar's `parties`, merged per (dn, channel) into one interval each:
    /// (dn, channel) -> (from, to).
    pub fn parties(&self) -> Result<Vec<(String, String, f64, f64)>, String> {
        let arr = self.sc["parties"].as_array().ok_or_else(|| format!("no \"parties\" list in the sidecar {}", self.path.display()))?;
        let mut res: Vec<(String, String, f64, f64)> = Vec::new();
        for p in arr {
            let (Some(dn), Some(ch), Some(from), Some(to)) = (
                p["dn"].as_str(),
                p["channel"].as_str(),
                p["from"].as_str().and_then(parse_rfc3339),
                p["to"].as_str().and_then(parse_rfc3339),
            ) else {
                return Err(format!("party without dn/channel/from/to (RFC 3339): {p}"));
            };
            match res.iter_mut().find(|r| r.0 == dn && r.1 == ch) {
                Some(r) => {
                    r.2 = r.2.min(from);
                    r.3 = r.3.max(to);
                }
                None => res.push((dn.to_string(), ch.to_string(), from, to)),
            }
        }
        Ok(res)
    }

    /// The parties are exactly `want` (dn, channel, from, to), or include them when `exact` is
    /// false; intervals within `tol`.
    pub fn check_parties(&self, want: &[(&str, &str, f64, f64)], exact: bool, tol: f64) -> Result<(), String> {
        let got = self.parties()?;
        let show = |v: &[(String, String, f64, f64)]| {
            v.iter().map(|p| format!("{}/{} {:.2}..{:.2}", p.0, p.1, self.at(p.2), self.at(p.3))).collect::<Vec<_>>().join(", ")
        };
        for (dn, ch, from, to) in want {
            let Some(p) = got.iter().find(|p| p.0 == *dn && p.1 == *ch) else {
                return Err(format!("no party {dn}/{ch} in the sidecar (parties, s into the file: {})", show(&got)));
            };
            if (p.2 - from).abs() > tol || (p.3 - to).abs() > tol {
                return Err(format!(
                    "party {dn}/{ch} present {:.2}..{:.2} s into the file, expected {:.2}..{:.2} (+-{tol} s)",
                    self.at(p.2),
                    self.at(p.3),
                    self.at(*from),
                    self.at(*to)
                ));
            }
        }
        if exact && got.len() != want.len() {
            return Err(format!("parties {} but expected only {:?}", show(&got), want.iter().map(|w| (w.0, w.1)).collect::<Vec<_>>()));
        }
        Ok(())
    }

    /// The sidecar's `holds` are `want` (from, to), within `tol`.
    pub fn check_holds(&self, want: &[(f64, f64)], tol: f64) -> Result<(), String> {
        let arr = self.sc["holds"].as_array().ok_or_else(|| format!("no \"holds\" list in the sidecar {}", self.path.display()))?;
        let got: Vec<(f64, f64)> = arr
            .iter()
            .map(|h| {
                match (h["from"].as_str().and_then(parse_rfc3339), h["to"].as_str().and_then(parse_rfc3339)) {
                    (Some(a), Some(b)) => Ok((a, b)),
                    _ => Err(format!("hold without from/to (RFC 3339): {h}")),
                }
            })
            .collect::<Result<_, _>>()?;
        let ok = got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| (g.0 - w.0).abs() <= tol && (g.1 - w.1).abs() <= tol);
        if !ok {
            let fmt = |v: &[(f64, f64)]| v.iter().map(|h| format!("{:.2}..{:.2}", self.at(h.0), self.at(h.1))).collect::<Vec<_>>().join(", ");
            return Err(format!("holds [{}] s into the file, expected [{}] (+-{tol} s)", fmt(&got), fmt(want)));
        }
        Ok(())
    }
}

/// What one channel should hold, segment by segment: (reference, from, to) in capture time.
pub type Plan<'a> = Vec<(&'a Ref, f64, f64)>;

/// Checks both channels' plans and that the channels are in step (mean offsets within
/// MAX_OFFSET of each other).
pub fn check_channels(rec: &Rec, left: &Plan, right: &Plan) -> Result<(), String> {
    let mut means = [None; 2];
    for (ch, plan) in [left, right].into_iter().enumerate() {
        let mut offs = Vec::new();
        for (r, from, to) in plan {
            offs.extend(rec.holds(ch, r, *from, *to)?.into_iter().map(|w| w.1));
        }
        if !offs.is_empty() {
            means[ch] = Some(offs.iter().sum::<f64>() / offs.len() as f64);
        }
    }
    if let [Some(l), Some(r)] = means {
        if (l - r).abs() > MAX_OFFSET {
            return Err(format!("channels {:.0} ms out of step", (l - r) * 1000.0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trips() {
        for t in [0.0, 1795649283.5, 1795659070.998211, 951782400.25] {
            let s = super::rfc3339(t);
            let back = super::parse_rfc3339(&s).unwrap_or(-1.0);
            assert!((back - t).abs() < 2e-6, "{t} -> {s} -> {back}");
        }
        assert_eq!(super::rfc3339(1795649283.5), "2026-11-25T23:28:03.500000Z");
    }
}
