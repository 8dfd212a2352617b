//! `callrec run`: the long-running mode. Reads a port, serves CTI clients, records until
//! SIGINT/SIGTERM (or the end of a capture port), then finalizes every open recording.
//!
//! `pcap:FILE` releases each packet at its capture time (relative to the first), so a capture
//! behaves like a live link and CTI requests land mid-call. Time inside the control core is
//! the capture clock: a CTI request is stamped with the capture time the link has reached.

use crate::control::core::CtiClient;
use crate::cti::protocol::Event;
use crate::cti::server::{CtiInput, CtiServer};
use crate::dataplane::{CtiSink, Dataplane, RecordingOptions, SetupError, Summary};
use callrec_pipeline::port::pcap::{CaptureFile, PortError};
use callrec_pipeline::Timestamp;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `--port` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `pcap:FILE`: a capture file read at capture pace.
    Pcap(PathBuf),
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("pcap:").filter(|p| !p.is_empty()) {
            return Ok(PortSpec::Pcap(PathBuf::from(path)));
        }
        if s == "dpdk" || s.starts_with("af_packet:") || s.starts_with("tap:") {
            return Err(format!("port {s} is not available yet: this build reads pcap:FILE only"));
        }
        Err(format!("unknown port {s:?}: expected pcap:FILE"))
    }
}

/// What `callrec run` was asked to do.
pub struct RunOptions {
    /// The port to read.
    pub port: PortSpec,
    /// Where the CTI server listens, if anywhere.
    pub cti: Option<SocketAddr>,
    /// Triggers and outputs.
    pub rec: RecordingOptions,
}

/// Why `run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The port could not be opened.
    #[error("{0}")]
    Port(#[from] PortError),
    /// The pipeline could not be set up.
    #[error("{0}")]
    Setup(#[from] SetupError),
    /// The CTI address could not be bound.
    #[error("cannot listen for CTI on {addr}: {err}")]
    Cti {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        err: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Counters.
    pub run: Summary,
    /// Warning about a truncated capture, if any.
    pub truncated: Option<String>,
    /// True when a signal ended the run.
    pub interrupted: bool,
    /// Wall time.
    pub wall: Duration,
}

struct Cti(Option<CtiServer>);

impl CtiSink for Cti {
    fn send(&mut self, client: CtiClient, event: &Event) {
        if let Some(s) = self.0.as_mut() {
            s.send(client, event);
        }
    }
}

/// Longest sleep between checks for signals and CTI input.
const POLL: Duration = Duration::from_millis(20);

/// Runs until the port ends or a signal arrives; finalizes every recording.
pub fn run(opts: RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    let PortSpec::Pcap(path) = &opts.port;
    let mut port = CaptureFile::open(path)?;
    let server = match opts.cti {
        Some(addr) => Some(CtiServer::bind(addr).map_err(|err| RunError::Cti { addr, err })?),
        None => None,
    };
    if let Some(s) = &server {
        tracing::info!(addr = %s.local_addr(), "CTI server listening");
    }
    let mut cti = Cti(server);
    let mut dp = Dataplane::new(opts.rec)?;

    // The capture clock is pinned to the wall clock at the first packet.
    let mut origin: Option<(Timestamp, Instant)> = None;
    let mut last_ts = Timestamp::default();
    'outer: loop {
        let burst = port.rx_burst();
        if burst.is_empty() {
            break;
        }
        for frame in burst.iter() {
            let (t0, w0) = *origin.get_or_insert((frame.ts, Instant::now()));
            let due = w0 + Duration::from_nanos(frame.ts.0.saturating_sub(t0.0));
            // Wait for the frame's time, serving CTI meanwhile.
            loop {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                let now = Instant::now();
                let link_now = Timestamp(t0.0 + now.duration_since(w0).as_nanos() as u64).max(last_ts);
                serve_cti(&mut dp, &mut cti, link_now, Duration::ZERO);
                if now >= due {
                    break;
                }
                serve_cti(&mut dp, &mut cti, link_now, (due - now).min(POLL));
            }
            last_ts = frame.ts;
            dp.frame(frame, &mut cti);
        }
        dp.tick(last_ts, &mut cti);
    }
    let interrupted = stop.load(Ordering::Relaxed);
    let end = match origin {
        Some((t0, w0)) if interrupted => Timestamp(t0.0 + w0.elapsed().as_nanos() as u64).max(last_ts),
        _ => last_ts,
    };
    let summary = dp.finish(end, &mut cti);
    Ok(RunSummary { run: summary, truncated: port.truncated(), interrupted, wall: started.elapsed() })
}

/// Hands every pending CTI input to the control core, waiting up to `wait` for the first.
fn serve_cti(dp: &mut Dataplane, cti: &mut Cti, now: Timestamp, wait: Duration) {
    let Some(server) = cti.0.as_mut() else {
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        return;
    };
    let mut next = if wait.is_zero() { server.poll() } else { server.wait(wait) };
    while let Some(input) = next {
        match input {
            CtiInput::Request { client, line } => dp.control.handle_cti(now, client, line),
            CtiInput::Gone { client } => dp.control.cti_client_gone(client),
        }
        dp.drain(cti);
        next = cti.0.as_mut().and_then(|s| s.poll());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!("pcap:/tmp/x.pcap".parse::<PortSpec>(), Ok(PortSpec::Pcap("/tmp/x.pcap".into())));
        assert!("pcap:".parse::<PortSpec>().is_err());
        assert!("af_packet:eth0".parse::<PortSpec>().unwrap_err().contains("not available yet"));
        assert!("dpdk".parse::<PortSpec>().unwrap_err().contains("not available yet"));
        assert!("eth0".parse::<PortSpec>().unwrap_err().contains("expected pcap:FILE"));
    }
}
