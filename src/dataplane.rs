//! The pipeline between a port and the writers, shared by `replay` and `run`: parse ->
//! classify -> control core (inline) | writer rings, plus the writer threads themselves.
//!
//! The control core runs inline on the reader thread, so a flow is in the table before the
//! RTP that follows its SIP is classified. A full writer ring makes the reader wait: a capture
//! file has no line rate to keep up with and no audio may be lost (the live ports of the
//! line-rate issue count it as a drop instead).

use crate::config::Config;
use crate::control::core::{ControlConfig, ControlCore, ControlCounters, CtiClient, Output};
use crate::cti::protocol::Event;
use crate::linger::{Lingering, StopLinger};
use crate::stats::Snapshot;
use crate::trace::SipTrace;
use callrec_pipeline::classify::{Class, Classifier, Counters};
use callrec_pipeline::flow::{FlowTable, FlowTarget};
use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::port::Frame;
use callrec_pipeline::writer::{spawn_writer, OutputFormat, RtpItem, WriterMsg, WriterReport, MAX_RTP_LEN};
use callrec_pipeline::Timestamp;
use std::path::PathBuf;
use std::thread::JoinHandle;

/// Slots per writer ring: a few hundred milliseconds of RTP at full replay speed.
const RING_SLOTS: usize = 8192;
/// IPv4 datagrams reassembled at once (SIP INVITEs with large SDP fragment).
const REASSEMBLY_SLOTS: usize = 64;
/// Fragments of a datagram must all arrive within this much capture time (RFC 791 suggests
/// 15 s; Linux uses 30 s).
const REASSEMBLY_TIMEOUT_NS: u64 = 30_000_000_000;

/// Trigger and output options every mode shares.
pub struct RecordingOptions {
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
    /// Cores to pin writer k to (`writer_cores[k % len]`); empty: core k+1, wrapping.
    pub writer_cores: Vec<usize>,
    /// Prefix of generated conf-ids (unique per run).
    pub conf_id_prefix: String,
}

/// Why the pipeline could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
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

/// Where CTI events go; replay has none.
pub trait CtiSink {
    /// Delivers one event to one client (never blocks).
    fn send(&mut self, client: CtiClient, event: &Event);
}

/// No CTI: events are dropped.
pub struct NoCti;

impl CtiSink for NoCti {
    fn send(&mut self, _client: CtiClient, _event: &Event) {}
}

/// What to do with RTP when a writer's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFull {
    /// Wait for room: capture files, where nothing may be lost and there is no line rate.
    Wait,
    /// Count the packet as dropped and go on: live ports, where rx must never stall.
    Drop,
}

/// What a run did, for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Packet counters.
    pub packets: Counters,
    /// Control-core counters.
    pub control: ControlCounters,
    /// Writer totals, summed.
    pub writers: WriterReport,
}

/// The reader side of the pipeline and the writer threads it feeds.
pub struct Dataplane {
    /// The control core (inline).
    pub control: ControlCore,
    classifier: Classifier,
    flows: FlowTable,
    reasm: Ipv4Reassembler,
    counters: Counters,
    rings: Vec<rtrb::Producer<WriterMsg>>,
    writers: Vec<JoinHandle<WriterReport>>,
    trace: Option<SipTrace>,
    ring_full: RingFull,
    linger: StopLinger,
}

impl Dataplane {
    /// Creates the output directory and trace file, the control core, and the writer threads
    /// (pinned as `writer_cores` says; by default writer k to core k+1, wrapping, so the
    /// reader keeps core 0).
    pub fn new(opts: RecordingOptions) -> Result<Dataplane, SetupError> {
        std::fs::create_dir_all(&opts.out)
            .map_err(|err| SetupError::Output { path: opts.out.display().to_string(), err })?;
        let trace = match &opts.sip_trace {
            Some(p) => Some(SipTrace::create(p).map_err(|err| SetupError::Output { path: p.display().to_string(), err })?),
            None => None,
        };
        let classifier = Classifier::new(&opts.config.sip.ports);
        let writers = opts.writers.max(1);
        let control = ControlCore::new(ControlConfig {
            config: opts.config,
            writers,
            out_dir: opts.out,
            format: opts.format,
            conf_id_prefix: opts.conf_id_prefix,
        })
        .map_err(|e| SetupError::Config(e.to_string()))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let core_of = |i: usize| match opts.writer_cores.as_slice() {
            [] => (i + 1) % cores,
            list => list[i % list.len()],
        };
        let (rings, writers) = (0..writers).map(|i| spawn_writer(i, Some(core_of(i)), RING_SLOTS)).unzip();
        Ok(Dataplane {
            control,
            classifier,
            flows: FlowTable::new(),
            reasm: Ipv4Reassembler::new(REASSEMBLY_SLOTS, REASSEMBLY_TIMEOUT_NS),
            counters: Counters::default(),
            rings,
            writers,
            trace,
            ring_full: RingFull::Wait,
            linger: StopLinger::new(),
        })
    }

    /// Sets what a full writer ring does to RTP (control messages always wait).
    pub fn set_ring_full(&mut self, policy: RingFull) {
        self.ring_full = policy;
    }

    /// The counters as they are now, for `--stats` and `--metrics`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            packets: self.counters,
            control: self.control.counters(),
            active_recordings: self.control.active_recordings() as u64,
        }
    }

    /// One received frame through parse and classify, to the control core or a writer.
    #[inline]
    pub fn frame(&mut self, frame: &Frame<'_>, cti: &mut dyn CtiSink) {
        self.counters.rx += 1;
        match parse_frame(frame, &mut self.reasm) {
            Parsed::Udp(d) => {
                let class = self.classifier.classify(d.src, d.dst, d.payload, &self.flows);
                self.counters.count(class);
                match class {
                    Class::Sip => {
                        self.control.handle_sip(frame.ts, d.src, d.dst, d.payload);
                        self.drain(cti);
                    }
                    Class::Rtp(target) => {
                        if let Some(ring) = self.rings.get_mut(target.writer as usize) {
                            if self.ring_full == RingFull::Drop && ring.is_full() {
                                // a drop, not delivered RTP: rx still adds up
                                self.counters.rtp -= 1;
                                self.counters.ring_full += 1;
                            } else {
                                push_rtp(ring, target, frame.ts, d.payload);
                            }
                        }
                    }
                    Class::Rtcp | Class::Other(_) => {}
                }
            }
            Parsed::Tcp { src, dst, .. } => {
                if self.classifier.is_sip_port(src.port()) || self.classifier.is_sip_port(dst.port()) {
                    self.counters.sip_tcp += 1;
                } else {
                    self.counters.not_udp += 1;
                }
            }
            Parsed::Fragment => self.counters.fragments += 1,
            Parsed::Other(_) => self.counters.not_udp += 1,
        }
    }

    /// Runs the control core's timers due at `now` and ends the stop lingers due by then;
    /// call once per burst.
    pub fn tick(&mut self, now: Timestamp, cti: &mut dyn CtiSink) {
        if self.control.poll_timeout().is_some_and(|t| t <= now) {
            self.control.handle_timeout(now);
            self.drain(cti);
        }
        if self.linger.next_due().is_some_and(|t| t <= now) {
            while let Some(l) = self.linger.pop_due(now) {
                self.end_linger(l);
            }
        }
    }

    /// Stops lingering now.
    pub fn lingering(&self) -> usize {
        self.linger.len()
    }

    /// Removes a lingering recording's flows (those still its own) and sends its `Stop`.
    fn end_linger(&mut self, l: Lingering) {
        StopLinger::end(&l, &mut self.flows, &mut |_| {});
        match self.rings.get_mut(l.writer as usize) {
            Some(ring) => push_waiting(ring, WriterMsg::Stop { recording: l.recording, at: l.at }),
            None => tracing::error!(writer = l.writer, "control core named a writer that does not exist"),
        }
    }

    /// Applies everything the control core asked for; a recording's stop and the removal of
    /// its flows linger (see [`crate::linger`]).
    pub fn drain(&mut self, cti: &mut dyn CtiSink) {
        while let Some(out) = self.control.poll_output() {
            match out {
                Output::Flow(u) => self.linger.flow(u, &mut self.flows, &mut |_| {}),
                Output::Writer { writer, msg: WriterMsg::Stop { recording, at } } => {
                    self.linger.stop(writer, recording, at)
                }
                Output::Writer { writer, msg } => match self.rings.get_mut(writer as usize) {
                    Some(ring) => push_waiting(ring, msg),
                    None => tracing::error!(writer, "control core named a writer that does not exist"),
                },
                Output::Trace(t) => {
                    if let Some(tr) = self.trace.as_mut() {
                        tr.write(&t);
                    }
                }
                Output::Cti { client, event } => cti.send(client, &event),
            }
        }
        self.linger.end_of_drain(&mut self.flows, &mut |_| {});
    }

    /// Ends every call at `now`, finalizes every recording, stops the writers.
    pub fn finish(mut self, now: Timestamp, cti: &mut dyn CtiSink) -> Summary {
        self.control.finish(now);
        self.drain(cti);
        // The input has ended: nothing more can arrive for a lingering recording.
        while let Some(l) = self.linger.pop_all() {
            self.end_linger(l);
        }
        if let Some(t) = self.trace.as_mut() {
            t.flush();
        }
        // Dropping the producers tells each writer to drain, finalize and return.
        self.rings.clear();
        let mut total = WriterReport::default();
        for h in self.writers.drain(..) {
            match h.join() {
                Ok(r) => total.merge(&r),
                Err(_) => tracing::error!("a writer thread panicked; its open recordings may be unfinalized"),
            }
        }
        Summary { packets: self.counters, control: self.control.counters(), writers: total }
    }
}

#[inline]
fn push_rtp(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_RTP_LEN, "classify drops oversize RTP");
    let len = payload.len().min(MAX_RTP_LEN);
    let mut item = RtpItem { recording: target.recording, channel: target.channel, ts, len: len as u16, data: [0; MAX_RTP_LEN] };
    item.data[..len].copy_from_slice(&payload[..len]);
    push_waiting(ring, WriterMsg::Rtp(item));
}

/// Pushes, waiting while the ring is full (see the module doc).
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
