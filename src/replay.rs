//! `callrec replay`: a capture file through the whole pipeline as fast as it can go.
//!
//! One thread runs port -> parse -> classify -> control core (inline, so a flow is in the
//! table before the RTP that follows its SIP is classified); writer threads take RTP and
//! commands from SPSC rings. In replay a full ring makes the reader wait (a file has no line
//! rate to keep up with, and no audio may be lost); live ports count it as a drop instead.

use crate::config::Config;
use crate::control::core::{ControlConfig, ControlCore, ControlCounters, Output};
use crate::trace::SipTrace;
use callrec_pipeline::classify::{Class, Classifier, Counters};
use callrec_pipeline::flow::{FlowTable, FlowTarget};
use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::pcap::{CaptureFile, PortError};
use callrec_pipeline::writer::{spawn_writer, OutputFormat, RtpItem, WriterMsg, WriterReport, MAX_RTP_LEN};
use callrec_pipeline::Timestamp;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Slots per writer ring: a few hundred milliseconds of RTP at full replay speed.
const RING_SLOTS: usize = 8192;
/// IPv4 datagrams reassembled at once (SIP INVITEs with large SDP fragment).
const REASSEMBLY_SLOTS: usize = 64;
/// Fragments of a datagram must all arrive within this much capture time (RFC 791 suggests
/// 15 s; Linux uses 30 s).
const REASSEMBLY_TIMEOUT_NS: u64 = 30_000_000_000;

/// What `callrec replay` was asked to do.
pub struct ReplayOptions {
    /// The capture file.
    pub capture: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Configuration (triggers already merged with `--record-dn`).
    pub config: Config,
    /// File format.
    pub format: OutputFormat,
    /// Where to write the SIP trace, if anywhere.
    pub sip_trace: Option<PathBuf>,
    /// Number of writer threads.
    pub writers: usize,
    /// Prefix of generated conf-ids (unique per run).
    pub conf_id_prefix: String,
}

/// Why a replay could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture could not be opened.
    #[error("{0}")]
    Capture(#[from] PortError),
    /// The configuration cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The output directory or trace file could not be created.
    #[error("cannot create {path}: {err}")]
    Output {
        /// The path.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
}

/// What a replay did, for the summary.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Packet counters.
    pub packets: Counters,
    /// Control-core counters.
    pub control: ControlCounters,
    /// Writer totals, summed.
    pub writers: WriterReport,
    /// Warning about a truncated capture, if any.
    pub truncated: Option<String>,
    /// Wall time.
    pub wall: Duration,
}

/// Runs a replay to the end of the capture and finalizes every recording.
pub fn run(opts: ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out)
        .map_err(|err| ReplayError::Output { path: opts.out.display().to_string(), err })?;
    let mut port = CaptureFile::open(&opts.capture)?;
    let mut trace = match &opts.sip_trace {
        Some(p) => Some(SipTrace::create(p).map_err(|err| ReplayError::Output { path: p.display().to_string(), err })?),
        None => None,
    };
    let classifier = Classifier::new(&opts.config.sip.ports);
    let writers = opts.writers.max(1);
    let mut control = ControlCore::new(ControlConfig {
        config: opts.config,
        writers,
        out_dir: opts.out.clone(),
        format: opts.format,
        conf_id_prefix: opts.conf_id_prefix,
    })
    .map_err(|e| ReplayError::Config(e.to_string()))?;
    // The reader runs wherever the OS puts it (core 0 in practice); writer k is pinned to
    // core k+1, wrapping when there are more writers than cores.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (mut rings, handles): (Vec<_>, Vec<_>) =
        (0..writers).map(|i| spawn_writer(i, Some((i + 1) % cores), RING_SLOTS)).unzip();
    let mut flows = FlowTable::new();
    let mut reasm = Ipv4Reassembler::new(REASSEMBLY_SLOTS, REASSEMBLY_TIMEOUT_NS);
    let mut counters = Counters::default();
    let mut last_ts = Timestamp::default();

    loop {
        let burst = port.rx_burst();
        if burst.is_empty() {
            break;
        }
        for frame in burst.iter() {
            counters.rx += 1;
            last_ts = frame.ts;
            match parse_frame(frame, &mut reasm) {
                Parsed::Udp(d) => {
                    let class = classifier.classify(d.src, d.dst, d.payload, &flows);
                    counters.count(class);
                    match class {
                        Class::Sip => {
                            control.handle_sip(frame.ts, d.src, d.dst, d.payload);
                            drain(&mut control, &mut flows, &mut rings, trace.as_mut());
                        }
                        Class::Rtp(target) => push_rtp(&mut rings[target.writer as usize], target, frame.ts, d.payload),
                        Class::Rtcp | Class::Other(_) => {}
                    }
                }
                Parsed::Tcp { src, dst, .. } => {
                    if opts_is_sip_port(&classifier, src.port(), dst.port()) {
                        counters.sip_tcp += 1;
                    } else {
                        counters.not_udp += 1;
                    }
                }
                Parsed::Fragment => counters.fragments += 1,
                Parsed::Other(_) => counters.not_udp += 1,
            }
        }
        if control.poll_timeout().is_some_and(|t| t <= last_ts) {
            control.handle_timeout(last_ts);
            drain(&mut control, &mut flows, &mut rings, trace.as_mut());
        }
    }
    control.finish(last_ts);
    drain(&mut control, &mut flows, &mut rings, trace.as_mut());
    if let Some(t) = trace.as_mut() {
        t.flush();
    }
    // Dropping the producers tells each writer to drain, finalize and return.
    drop(rings);
    let mut total = WriterReport::default();
    for h in handles {
        match h.join() {
            Ok(r) => total.merge(&r),
            Err(_) => tracing::error!("a writer thread panicked; its open recordings may be unfinalized"),
        }
    }
    Ok(ReplaySummary {
        packets: counters,
        control: control.counters(),
        writers: total,
        truncated: port.truncated(),
        wall: started.elapsed(),
    })
}

fn opts_is_sip_port(c: &Classifier, a: u16, b: u16) -> bool {
    c.is_sip_port(a) || c.is_sip_port(b)
}

/// Applies everything the control core asked for.
fn drain(
    control: &mut ControlCore,
    flows: &mut FlowTable,
    rings: &mut [rtrb::Producer<WriterMsg>],
    mut trace: Option<&mut SipTrace>,
) {
    while let Some(out) = control.poll_output() {
        match out {
            Output::Flow(u) => flows.apply(u),
            Output::Writer { writer, msg } => match rings.get_mut(writer as usize) {
                Some(ring) => push_waiting(ring, msg),
                None => tracing::error!(writer, "control core named a writer that does not exist"),
            },
            Output::Trace(t) => {
                if let Some(tr) = trace.as_deref_mut() {
                    tr.write(&t);
                }
            }
            // replay has no CTI server
            Output::Cti { .. } => {}
        }
    }
}

#[inline]
fn push_rtp(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_RTP_LEN, "classify drops oversize RTP");
    let mut item = RtpItem { recording: target.recording, channel: target.channel, ts, len: payload.len() as u16, data: [0; MAX_RTP_LEN] };
    item.data[..payload.len()].copy_from_slice(payload);
    push_waiting(ring, WriterMsg::Rtp(item));
}

/// Pushes, waiting while the ring is full (replay only: see the module doc).
fn push_waiting(ring: &mut rtrb::Producer<WriterMsg>, mut msg: WriterMsg) {
    loop {
        match ring.push(msg) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(m)) => {
                if ring.is_abandoned() {
                    tracing::error!("a writer thread is gone; dropping its input");
                    return;
                }
                msg = m;
                std::thread::yield_now();
            }
        }
    }
}
