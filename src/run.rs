//! `callrec run`: the long-running mode. Reads a port, serves CTI clients, records until
//! SIGINT/SIGTERM (or the end of a capture port), then finalizes every open recording.
//!
//! `af_packet:IFACE`, `tap:NAME` and `dpdk` are live ports on the wall clock. `pcap:FILE`
//! releases each packet at its capture time (relative to the first), so a capture behaves
//! like a live link and CTI requests land mid-call. Time inside the control core is the
//! capture clock: a CTI request is stamped with the capture time the link has reached.

use crate::control::core::CtiClient;
use crate::cti::protocol::Event;
use crate::cti::server::{CtiInput, CtiServer};
use crate::dataplane::{CtiSink, Dataplane, RecordingOptions, RingFull, SetupError, Summary};
use crate::stats::StatsReporter;
use crate::threaded::run_threaded;
use callrec_pipeline::port::af_packet::{AfPacketError, AfPacketOptions, AfPacketPort, AfPacketStats};
use callrec_pipeline::port::pcap::{CaptureFile, PortError};
use callrec_pipeline::port::Frame;
use callrec_pipeline::port::tap::{TapError, TapPort};
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
    /// `af_packet:IFACE`: a TPACKET_V3 ring on an interface (mirror/SPAN port), promiscuous.
    AfPacket(String),
    /// `tap:NAME`: a TAP device (created if missing); what the kernel sends into it is read.
    Tap(String),
    /// `dpdk`: the first DPDK port of the EAL set up by `--eal` (build with `--features dpdk`).
    Dpdk,
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match (kind, arg) {
            ("pcap", f) if !f.is_empty() => Ok(PortSpec::Pcap(PathBuf::from(f))),
            ("af_packet", i) if !i.is_empty() => Ok(PortSpec::AfPacket(i.to_string())),
            ("tap", n) if !n.is_empty() => Ok(PortSpec::Tap(n.to_string())),
            ("dpdk", "") => Ok(PortSpec::Dpdk),
            _ => Err(format!("unknown port {s:?}: expected pcap:FILE, af_packet:IFACE, tap:NAME or dpdk")),
        }
    }
}

/// What `callrec run` was asked to do.
pub struct RunOptions {
    /// The port to read.
    pub port: PortSpec,
    /// EAL arguments for `--port dpdk`.
    pub eal: Option<String>,
    /// Where the CTI server listens, if anywhere.
    pub cti: Option<SocketAddr>,
    /// Cores for the rx threads, one thread each (af_packet: one fanout socket each; dpdk: one
    /// RSS queue each; pcap and tap: the first only). Empty: one unpinned rx thread.
    pub rx_cores: Vec<usize>,
    /// Run the control core (and CTI) on its own thread, pinned to this core. Implied (unpinned)
    /// by several rx cores; without it and with one rx core, the control core runs inline.
    pub control_core: Option<usize>,
    /// Print counters to stderr this often.
    pub stats: Option<Duration>,
    /// Serve Prometheus text on `http://ADDR/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Triggers and outputs.
    pub rec: RecordingOptions,
}

/// Why `run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The port could not be opened.
    #[error("{0}")]
    Port(#[from] PortError),
    /// The AF_PACKET port could not be opened.
    #[error("{0}")]
    AfPacket(#[from] AfPacketError),
    /// The TAP port could not be opened.
    #[error("{0}")]
    Tap(#[from] TapError),
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
    /// The DPDK port could not be opened (or this build has no DPDK).
    #[error("{0}")]
    Dpdk(String),
    /// A thread could not be pinned.
    #[error("cannot pin a thread to core {0}: no such core, or not in this process's CPU set (see `nproc`, `taskset -p $$`)")]
    Core(usize),
    /// The metrics address could not be bound.
    #[error("cannot serve metrics: {0}")]
    Metrics(std::io::Error),
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
    /// A live port's own counters, one line (frames delivered and the kernel's drops).
    pub port: Option<String>,
}

/// The CTI server, if any, as the drivers use it.
pub(crate) struct Cti(pub(crate) Option<CtiServer>);

impl CtiSink for Cti {
    fn send(&mut self, client: CtiClient, event: &Event) {
        if let Some(s) = self.0.as_mut() {
            s.send(client, event);
        }
    }
}

/// Longest sleep between checks for signals and CTI input.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Runs until the port ends or a signal arrives; finalizes every recording.
pub fn run(opts: RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signals)?;
    }
    for &core in opts.rx_cores.iter().chain(&opts.control_core) {
        if !callrec_pipeline::cores::available().contains(&core) {
            return Err(RunError::Core(core));
        }
    }
    let threaded = opts.rx_cores.len() > 1 || opts.control_core.is_some();
    let single_rx = matches!(opts.port, PortSpec::Pcap(_) | PortSpec::Tap(_));
    if single_rx && opts.rx_cores.len() > 1 {
        tracing::warn!("pcap and tap ports have one rx thread: using the first of --rx-cores only");
    }
    let inline = !threaded || matches!(opts.port, PortSpec::Pcap(_));
    if matches!(opts.port, PortSpec::Pcap(_)) && threaded {
        tracing::warn!("a pcap port runs the control core inline: --control-core ignored");
    }
    if inline {
        if let Some(&core) = opts.rx_cores.first() {
            if !callrec_pipeline::cores::pin_current(core) {
                return Err(RunError::Core(core));
            }
        }
    }
    let rx_pins: Vec<Option<usize>> = match opts.rx_cores.as_slice() {
        [] => vec![None],
        list if single_rx => vec![Some(list[0])],
        list => list.iter().map(|&c| Some(c)).collect(),
    };
    let server = match opts.cti {
        Some(addr) => Some(CtiServer::bind(addr).map_err(|err| RunError::Cti { addr, err })?),
        None => None,
    };
    let mut cti = Cti(server);
    let mut stats = StatsReporter::new(opts.stats, opts.metrics).map_err(RunError::Metrics)?;
    let outcome = match &opts.port {
        PortSpec::Pcap(path) => {
            let mut port = CaptureFile::open(path)?;
            if let Some(s) = &cti.0 {
                tracing::info!(addr = %s.local_addr(), "CTI server listening");
            }
            let mut dp = Dataplane::new(opts.rec)?;
            let end = run_capture(&mut port, &mut dp, &mut cti, &mut stats, &stop);
            (dp.finish(end, &mut cti), port.truncated(), None)
        }
        PortSpec::AfPacket(iface) => {
            // Several sockets share the interface by flow hash; the group id is this process's.
            let fanout_group = (rx_pins.len() > 1).then(|| (std::process::id() & 0xffff) as u16);
            let mut ports = Vec::with_capacity(rx_pins.len());
            for _ in 0..rx_pins.len() {
                ports.push(AfPacketPort::open(iface, AfPacketOptions { fanout_group, ..AfPacketOptions::default() })?);
            }
            let summary = if inline {
                let mut dp = Dataplane::new(opts.rec)?;
                dp.set_ring_full(RingFull::Drop);
                let end = run_live(&mut ports[0], &mut dp, &mut cti, &mut stats, &stop);
                dp.finish(end, &mut cti)
            } else {
                run_threaded(&mut ports, &rx_pins, opts.control_core, opts.rec, &mut cti, &mut stats, &stop)?
            };
            let mut st = AfPacketStats::default();
            for p in ports.iter_mut() {
                let s = p.stats();
                st.packets += s.packets;
                st.kernel_packets += s.kernel_packets;
                st.drops += s.drops;
                st.freezes += s.freezes;
                st.bad_headers += s.bad_headers;
                st.socket_errors += s.socket_errors;
            }
            let line = format!(
                "port af_packet:{iface}: {} delivered; kernel: {} received, {} dropped (ring full), {} ring freezes; {} bad block headers, {} socket errors",
                st.packets, st.kernel_packets, st.drops, st.freezes, st.bad_headers, st.socket_errors
            );
            (summary, None, Some(line))
        }
        PortSpec::Tap(name) => {
            let mut ports = [TapPort::open(name)?];
            let summary = if inline {
                let mut dp = Dataplane::new(opts.rec)?;
                dp.set_ring_full(RingFull::Drop);
                let end = run_live(&mut ports[0], &mut dp, &mut cti, &mut stats, &stop);
                dp.finish(end, &mut cti)
            } else {
                run_threaded(&mut ports, &rx_pins, opts.control_core, opts.rec, &mut cti, &mut stats, &stop)?
            };
            let [port] = ports;
            let st = port.stats();
            let line = format!(
                "port tap:{name}: {} delivered, {} truncated, {} read errors",
                st.packets, st.truncated, st.read_errors
            );
            (summary, None, Some(line))
        }
        PortSpec::Dpdk => {
            let threads = (!inline).then_some((rx_pins.as_slice(), opts.control_core));
            run_dpdk(opts.eal.as_deref(), opts.rec, threads, &mut cti, &mut stats, &stop)?
        }
    };
    let (summary, truncated, port) = outcome;
    Ok(RunSummary { run: summary, truncated, interrupted: stop.load(Ordering::Relaxed), wall: started.elapsed(), port })
}

/// A capture file at capture pace; returns the capture time the link reached.
fn run_capture(
    port: &mut CaptureFile,
    dp: &mut Dataplane,
    cti: &mut Cti,
    stats: &mut StatsReporter,
    stop: &AtomicBool,
) -> Timestamp {
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
            // The time the link has reached, read when each CTI request is handled.
            let link_now = || Timestamp(t0.0 + w0.elapsed().as_nanos() as u64).max(last_ts);
            loop {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                serve_cti(dp, cti, &link_now, Duration::ZERO);
                let now = Instant::now();
                if now >= due {
                    break;
                }
                serve_cti(dp, cti, &link_now, (due - now).min(POLL));
            }
            last_ts = frame.ts;
            dp.frame(frame, cti);
        }
        dp.tick(last_ts, cti);
        report(stats, dp);
    }
    match origin {
        Some((t0, w0)) if stop.load(Ordering::Relaxed) => Timestamp(t0.0 + w0.elapsed().as_nanos() as u64).max(last_ts),
        _ => last_ts,
    }
}

/// After a signal, how long a live port is still read. The kernel may hold what arrived
/// before the signal for a while (an AF_PACKET block is handed over only when full or after
/// its 10 ms retire timeout; a TAP queues frames until read), and the run must not drop the
/// last packets of every open recording. Frames stamped past the grace are not processed.
pub(crate) const STOP_GRACE: Duration = Duration::from_millis(30);

/// A live port until a signal; the clock is the wall clock (packets carry kernel receive
/// times). Returns the time of the stop.
fn run_live<P: LivePort>(
    port: &mut P,
    dp: &mut Dataplane,
    cti: &mut Cti,
    stats: &mut StatsReporter,
    stop: &AtomicBool,
) -> Timestamp {
    while !stop.load(Ordering::Relaxed) {
        port.rx(POLL, &mut |frame| dp.frame(frame, cti));
        serve_cti(dp, cti, &wall_now, Duration::ZERO);
        dp.tick(wall_now(), cti);
        report(stats, dp);
    }
    drain_after_stop(port, &mut |frame| dp.frame(frame, cti))
}

/// After a signal: hands `each` what the kernel received up to the signal plus
/// [`STOP_GRACE`], then stops there. Returns the time of the stop.
pub(crate) fn drain_after_stop<P: LivePort>(port: &mut P, each: &mut dyn FnMut(&Frame<'_>)) -> Timestamp {
    let deadline = Instant::now() + STOP_GRACE;
    let cutoff = Timestamp(wall_now().0 + STOP_GRACE.as_nanos() as u64);
    let mut end = wall_now();
    let mut past_cutoff = false;
    while !past_cutoff {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        port.rx(left, &mut |frame| {
            if frame.ts > cutoff {
                past_cutoff = true;
            } else if !past_cutoff {
                end = end.max(frame.ts);
                each(frame);
            }
        });
    }
    end.max(wall_now().min(cutoff))
}

/// A port that never ends: nothing received only means nothing arrived in time.
pub(crate) trait LivePort {
    /// Hands each frame of the next burst to `each`, waiting up to `timeout` for one.
    fn rx(&mut self, timeout: Duration, each: &mut dyn FnMut(&Frame<'_>));
}

impl LivePort for AfPacketPort {
    fn rx(&mut self, timeout: Duration, each: &mut dyn FnMut(&Frame<'_>)) {
        self.rx_burst(timeout).iter().for_each(each);
    }
}

impl LivePort for TapPort {
    fn rx(&mut self, timeout: Duration, each: &mut dyn FnMut(&Frame<'_>)) {
        self.rx_burst(timeout).iter().for_each(each);
    }
}

#[cfg(feature = "dpdk")]
impl LivePort for callrec_dpdk::DpdkPort {
    fn rx(&mut self, timeout: Duration, each: &mut dyn FnMut(&Frame<'_>)) {
        poll_until(timeout, || {
            let burst = self.rx_burst(0);
            burst.frames().iter().for_each(&mut *each);
            !burst.frames().is_empty()
        })
    }
}

/// A poll-mode driver never blocks: polls (`poll` returns whether it got frames) until a
/// burst or `timeout`, backing off briefly when idle so that a quiet link does not spin a core
/// the writers may need (this machine has two).
#[cfg(feature = "dpdk")]
fn poll_until(timeout: Duration, mut poll: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !poll() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Several rx threads (their pins) and the control core's pin; `None`: inline.
type Threads<'a> = Option<(&'a [Option<usize>], Option<usize>)>;

#[cfg(feature = "dpdk")]
impl LivePort for callrec_dpdk::DpdkRxQueue<'_> {
    fn rx(&mut self, timeout: Duration, each: &mut dyn FnMut(&Frame<'_>)) {
        poll_until(timeout, || {
            let burst = self.rx_burst();
            burst.frames().iter().for_each(&mut *each);
            !burst.frames().is_empty()
        })
    }
}

#[cfg(feature = "dpdk")]
fn run_dpdk(
    eal: Option<&str>,
    rec: RecordingOptions,
    threads: Threads<'_>,
    cti: &mut Cti,
    stats: &mut StatsReporter,
    stop: &AtomicBool,
) -> Result<(Summary, Option<String>, Option<String>), RunError> {
    let eal = eal.ok_or_else(|| RunError::Dpdk("--port dpdk needs --eal \"ARGS\", e.g. --eal \"-l 0 --no-huge -m 1024 --no-pci --file-prefix callrec --vdev=net_tap0,iface=cr0\"".into()))?;
    let queues = threads.map_or(1, |(pins, _)| pins.len().max(1)) as u16;
    let mut port = callrec_dpdk::DpdkPort::init(eal, None, queues).map_err(|e| RunError::Dpdk(e.to_string()))?;
    let (summary, delivered) = match threads {
        None => {
            let mut dp = Dataplane::new(rec)?;
            dp.set_ring_full(RingFull::Drop);
            let end = run_live(&mut port, &mut dp, cti, stats, stop);
            (dp.finish(end, cti), port.stats().delivered)
        }
        Some((pins, control_core)) => {
            // One RSS queue per rx thread.
            let mut queues = port.split();
            let s = run_threaded(&mut queues, pins, control_core, rec, cti, stats, stop)?;
            let delivered = queues.iter().map(|q| q.stats().delivered).sum();
            (s, delivered)
        }
    };
    let mut st = port.stats();
    st.delivered = delivered;
    let line = format!(
        "port dpdk {}: {} delivered; device: {} received, {} missed, {} errors, {} no mbuf",
        port.port_id(), st.delivered, st.ipackets, st.imissed, st.ierrors, st.rx_nombuf
    );
    Ok((summary, None, Some(line)))
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk(
    _eal: Option<&str>,
    _rec: RecordingOptions,
    _threads: Threads<'_>,
    _cti: &mut Cti,
    _stats: &mut StatsReporter,
    _stop: &AtomicBool,
) -> Result<(Summary, Option<String>, Option<String>), RunError> {
    Err(RunError::Dpdk(
        "this callrec was built without DPDK: rebuild with `cargo build --release --features dpdk` (needs libdpdk-dev, libclang-dev, pkg-config)".into(),
    ))
}

#[inline]
fn report(stats: &mut StatsReporter, dp: &Dataplane) {
    let now = Instant::now();
    if stats.due(now) {
        stats.report(now, dp.snapshot());
    }
}

pub(crate) fn wall_now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(d.as_nanos() as u64)
}

/// Hands every pending CTI input to the control core, waiting up to `wait` for the first.
/// Each request is stamped with `now()` read as it is handled, so one that arrives late in a
/// wait is not timed early.
fn serve_cti(dp: &mut Dataplane, cti: &mut Cti, now: &dyn Fn() -> Timestamp, wait: Duration) {
    let Some(server) = cti.0.as_mut() else {
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        return;
    };
    let mut next = if wait.is_zero() { server.poll() } else { server.wait(wait) };
    while let Some(input) = next {
        match input {
            CtiInput::Request { client, line } => dp.control.handle_cti(now(), client, line),
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
        assert_eq!("af_packet:eth0".parse::<PortSpec>(), Ok(PortSpec::AfPacket("eth0".into())));
        assert_eq!("tap:cr0".parse::<PortSpec>(), Ok(PortSpec::Tap("cr0".into())));
        assert!("tap:".parse::<PortSpec>().is_err());
        assert_eq!("dpdk".parse::<PortSpec>(), Ok(PortSpec::Dpdk));
        assert!("eth0".parse::<PortSpec>().unwrap_err().contains("expected pcap:FILE"));
    }
}
