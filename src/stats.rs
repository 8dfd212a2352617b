//! `--stats SECS` and `--metrics ADDR`: the rx cores' counters (summed, and one line / label
//! per rx core when there are several), printed periodically and served in Prometheus text.
//!
//! The reporting thread (the reader, or the control thread with several rx cores) publishes a
//! copy of the counters at most once a second into a shared slot; the metrics thread reads
//! that slot when scraped. Locks are taken about once a second, never per packet.

use crate::control::core::ControlCounters;
use callrec_pipeline::classify::Counters;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What is published.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Rx counters, summed over rx cores.
    pub packets: Counters,
    /// Each rx core's counters, when there are several (empty: one rx core, `packets`).
    pub rx_cores: Vec<Counters>,
    /// Control-core counters.
    pub control: ControlCounters,
    /// Recordings in progress.
    pub active_recordings: u64,
}

/// The reader's side: decides when to publish and print.
pub struct StatsReporter {
    every: Option<Duration>,
    shared: Option<Arc<Mutex<Snapshot>>>,
    last_print: Instant,
    last_publish: Instant,
    last_rx: u64,
}

impl StatsReporter {
    /// Prints every `every` (if set) and serves `/metrics` on `metrics` (if set).
    pub fn new(every: Option<Duration>, metrics: Option<SocketAddr>) -> std::io::Result<StatsReporter> {
        let shared = match metrics {
            Some(addr) => {
                let shared = Arc::new(Mutex::new(Snapshot::default()));
                serve(addr, Arc::clone(&shared))?;
                Some(shared)
            }
            None => None,
        };
        let now = Instant::now();
        Ok(StatsReporter { every, shared, last_print: now, last_publish: now, last_rx: 0 })
    }

    /// True when `report` has something to do now; cheap, call once per burst.
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        (self.shared.is_some() && now.duration_since(self.last_publish) >= Duration::from_secs(1))
            || self.every.is_some_and(|e| now.duration_since(self.last_print) >= e)
    }

    /// Publishes and/or prints `snap`.
    pub fn report(&mut self, now: Instant, snap: Snapshot) {
        if let Some(shared) = &self.shared {
            if let Ok(mut slot) = shared.lock() {
                *slot = snap.clone();
            }
            self.last_publish = now;
        }
        if self.every.is_some_and(|e| now.duration_since(self.last_print) >= e) {
            let secs = now.duration_since(self.last_print).as_secs_f64().max(1e-9);
            let p = &snap.packets;
            eprintln!(
                "stats: rx {} ({:.0}/s) sip {} rtp {} rtcp {} unrecorded {} not_udp {} fragments {} ring_full {} sip_dropped {} | calls {} answered {} recordings {} active {} malformed_sip {}",
                p.rx,
                (p.rx - self.last_rx) as f64 / secs,
                p.sip,
                p.rtp,
                p.rtcp,
                p.unrecorded,
                p.not_udp,
                p.fragments,
                p.ring_full,
                p.sip_dropped,
                snap.control.calls_seen,
                snap.control.calls_answered,
                snap.control.recordings_started,
                snap.active_recordings,
                snap.control.malformed_sip,
            );
            for (i, c) in snap.rx_cores.iter().enumerate() {
                eprintln!("stats: rx-thread {i}: {}", rx_line(c));
            }
            self.last_print = now;
            self.last_rx = p.rx;
        }
    }
}

/// One rx core's counters on one line (the summary's and `--stats`' per-thread lines).
pub fn rx_line(c: &Counters) -> String {
    format!(
        "rx {} sip {} rtp {} rtcp {} other {} ring_full {} sip_dropped {}",
        c.rx,
        c.sip,
        c.rtp,
        c.rtcp,
        c.other(),
        c.ring_full,
        c.sip_dropped
    )
}

/// The Prometheus text exposition of a snapshot: per rx core (label `core`, the rx thread's
/// index) when there are several, else core 0.
pub fn prometheus(s: &Snapshot) -> String {
    let mut out = String::new();
    let one = [s.packets];
    let cores: &[Counters] = if s.rx_cores.is_empty() { &one } else { &s.rx_cores };
    let _ = writeln!(out, "# HELP callrec_packets_total Frames read by the rx core, by class.");
    let _ = writeln!(out, "# TYPE callrec_packets_total counter");
    for (core, p) in cores.iter().enumerate() {
        packet_lines(&mut out, core, p);
    }
    let _ = writeln!(out, "# HELP callrec_rx_packets_total Frames received by the rx core.");
    let _ = writeln!(out, "# TYPE callrec_rx_packets_total counter");
    for (core, p) in cores.iter().enumerate() {
        let _ = writeln!(out, "callrec_rx_packets_total{{core=\"{core}\"}} {}", p.rx);
    }
    let _ = writeln!(out, "# HELP callrec_drops_total Datagrams dropped at a full ring, by reason.");
    let _ = writeln!(out, "# TYPE callrec_drops_total counter");
    for (core, p) in cores.iter().enumerate() {
        let _ = writeln!(out, "callrec_drops_total{{core=\"{core}\",reason=\"ring_full\"}} {}", p.ring_full);
        let _ = writeln!(out, "callrec_drops_total{{core=\"{core}\",reason=\"sip_ring_full\"}} {}", p.sip_dropped);
    }
    control_lines(&mut out, s);
    out
}

fn packet_lines(out: &mut String, core: usize, p: &Counters) {
    for (class, v) in [
        ("sip", p.sip),
        ("sip_tcp", p.sip_tcp),
        ("rtp", p.rtp),
        ("rtcp", p.rtcp),
        ("unrecorded", p.unrecorded),
        ("keepalive", p.keepalive),
        ("not_rtp", p.not_rtp),
        ("oversize", p.oversize),
        ("not_udp", p.not_udp),
        ("fragment", p.fragments),
    ] {
        let _ = writeln!(out, "callrec_packets_total{{core=\"{core}\",class=\"{class}\"}} {v}");
    }
}

fn control_lines(out: &mut String, s: &Snapshot) {
    let c = &s.control;
    for (name, help, v) in [
        ("callrec_calls_seen_total", "Calls seen (initial INVITEs).", c.calls_seen),
        ("callrec_calls_answered_total", "Calls answered.", c.calls_answered),
        ("callrec_recordings_started_total", "Recordings started.", c.recordings_started),
        ("callrec_recordings_failed_total", "Recordings that could not start.", c.recordings_failed),
        ("callrec_sip_malformed_total", "SIP datagrams that did not parse.", c.malformed_sip),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP callrec_recordings_active Recordings in progress.\n# TYPE callrec_recordings_active gauge\ncallrec_recordings_active {}",
        s.active_recordings
    );
}

/// A minimal HTTP/1.0 responder for `GET /metrics` on its own thread: one request per
/// connection, bounded reads, never touches the rx path.
fn serve(addr: SocketAddr, shared: Arc<Mutex<Snapshot>>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new().name("callrec-metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let n = conn.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if request.starts_with("GET /metrics ") || request.starts_with("GET / ") {
                let snap = shared.lock().map(|s| s.clone()).unwrap_or_default();
                let body = prometheus(&snap);
                format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = conn.write_all(response.as_bytes());
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_class_and_accounts_for_rx() {
        let mut s = Snapshot::default();
        s.packets.rx = 10;
        s.packets.sip = 2;
        s.packets.rtp = 7;
        s.packets.unrecorded = 1;
        s.control.recordings_started = 1;
        let t = prometheus(&s);
        assert!(t.contains("callrec_rx_packets_total{core=\"0\"} 10\n"), "{t}");
        assert!(t.contains("callrec_packets_total{core=\"0\",class=\"rtp\"} 7\n"), "{t}");
        assert!(t.contains("callrec_recordings_started_total 1\n"), "{t}");
        // every class line summed gives rx (no ring drops here)
        let sum: u64 = t
            .lines()
            .filter(|l| l.starts_with("callrec_packets_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, 10);
    }

    #[test]
    fn metrics_endpoint_serves_the_published_snapshot() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut r = StatsReporter::new(None, Some(port)).unwrap();
        let mut s = Snapshot::default();
        s.packets.rx = 42;
        r.report(Instant::now(), s);
        let mut c = std::net::TcpStream::connect(port).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
        assert!(text.contains("callrec_rx_packets_total{core=\"0\"} 42"), "{text}");
    }
}

#[cfg(test)]
mod per_core_tests {
    use super::*;

    #[test]
    fn several_rx_cores_get_a_label_each_and_add_up() {
        let mut s = Snapshot::default();
        for (rx, rtp, drop) in [(5u64, 4u64, 1u64), (7, 7, 0)] {
            let mut c = Counters::default();
            (c.rx, c.rtp, c.sip_dropped) = (rx, rtp, drop);
            s.packets.merge(&c);
            s.rx_cores.push(c);
        }
        let t = prometheus(&s);
        assert!(t.contains("callrec_rx_packets_total{core=\"0\"} 5\n"), "{t}");
        assert!(t.contains("callrec_rx_packets_total{core=\"1\"} 7\n"), "{t}");
        assert!(t.contains("callrec_drops_total{core=\"0\",reason=\"sip_ring_full\"} 1\n"), "{t}");
        let sum = |prefix: &str| -> u64 {
            t.lines().filter(|l| l.starts_with(prefix)).map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
        };
        assert_eq!(sum("callrec_packets_total{") + sum("callrec_drops_total{"), sum("callrec_rx_packets_total{"));
        assert_eq!(rx_line(&s.rx_cores[0]), "rx 5 sip 0 rtp 4 rtcp 0 other 0 ring_full 0 sip_dropped 1");
    }
}
