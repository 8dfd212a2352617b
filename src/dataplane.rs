//! The inline pipeline between a port and the writers, shared by `replay` and a one-rx-core
//! `run`: an rx core (parse -> classify -> writer rings) with the control core on the same
//! thread, plus the writer threads themselves. (Several rx cores and a control core on its own
//! thread: `crate::threaded`.)
//!
//! The control core runs inline on the reader thread, so a flow is in the table before the
//! RTP that follows its SIP is classified. A full writer ring makes the reader wait: a capture
//! file has no line rate to keep up with and no audio may be lost (the live ports of the
//! line-rate issue count it as a drop instead).

use crate::config::Config;
use crate::control::core::{ControlConfig, ControlCore, ControlCounters, CtiClient, Output};
use crate::cti::protocol::Event;
use crate::linger::{is_bye, Lingering, StopLinger};
use crate::stats::Snapshot;
use crate::trace::SipTrace;
use callrec_pipeline::classify::Counters;
pub use callrec_pipeline::cores::rx::RingFull;
use callrec_pipeline::cores::rx::{push_waiting, RxCore};
use callrec_pipeline::port::Frame;
use callrec_pipeline::writer::{spawn_writer, OutputFormat, WriterMsg, WriterReport};
use callrec_pipeline::Timestamp;
use std::path::PathBuf;
use std::thread::JoinHandle;

/// Slots per writer ring: a few hundred milliseconds of RTP at full replay speed.
pub(crate) const RING_SLOTS: usize = 8192;

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
    /// The OS would not start a thread.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
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

/// What a run did, for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Packet counters.
    pub packets: Counters,
    /// Control-core counters.
    pub control: ControlCounters,
    /// Writer totals, summed.
    pub writers: WriterReport,
    /// Each rx core's counters (summed in `packets`), when there were several threads.
    pub rx_cores: Vec<Counters>,
}

/// The reader side of the pipeline and the writer threads it feeds.
pub struct Dataplane {
    /// The control core (inline).
    pub control: ControlCore,
    rx: RxCore,
    writers: Vec<JoinHandle<WriterReport>>,
    trace: Option<SipTrace>,
    linger: StopLinger,
}

impl Dataplane {
    /// Creates the output directory and trace file, the control core, and the writer threads
    /// (pinned as `writer_cores` says; by default writer k to core k+1, wrapping, so the
    /// reader keeps core 0).
    pub fn new(opts: RecordingOptions) -> Result<Dataplane, SetupError> {
        let Setup { control, trace, sip_ports, writers, writer_cores } = setup(opts)?;
        let (rings, writers) = (0..writers).map(|i| spawn_writer(i, Some(writer_core(&writer_cores, i)), RING_SLOTS)).unzip();
        Ok(Dataplane {
            control,
            rx: RxCore::new(&sip_ports, rings, RingFull::Wait),
            writers,
            trace,
            linger: StopLinger::new(),
        })
    }

    /// Sets what a full writer ring does to RTP (control messages always wait).
    pub fn set_ring_full(&mut self, policy: RingFull) {
        self.rx.set_ring_full(policy);
    }

    /// The counters as they are now, for `--stats` and `--metrics`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            packets: self.rx.counters(),
            rx_cores: Vec::new(),
            control: self.control.counters(),
            active_recordings: self.control.active_recordings() as u64,
        }
    }

    /// One received frame through parse and classify, to the control core or a writer.
    #[inline]
    pub fn frame(&mut self, frame: &Frame<'_>, cti: &mut dyn CtiSink) {
        if let Some(d) = self.rx.frame(frame) {
            let bye = is_bye(d.payload);
            self.control.handle_sip(frame.ts, d.src, d.dst, d.payload);
            self.drain_after(cti, bye);
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
        StopLinger::end(&l, self.rx.flows_mut(), &mut |_| {});
        match self.rx.rings_mut().get_mut(l.writer as usize) {
            Some(ring) => push_waiting(ring, WriterMsg::Stop { recording: l.recording, at: l.at }),
            None => tracing::error!(writer = l.writer, "control core named a writer that does not exist"),
        }
    }

    /// Applies everything the control core asked for (after anything but a BYE).
    pub fn drain(&mut self, cti: &mut dyn CtiSink) {
        self.drain_after(cti, false);
    }

    /// Applies everything the control core asked for; after a BYE (`bye`), a recording's stop
    /// and the removal of its flows linger (see [`crate::linger`]).
    fn drain_after(&mut self, cti: &mut dyn CtiSink, bye: bool) {
        while let Some(out) = self.control.poll_output() {
            match out {
                Output::Flow(u) => self.linger.flow(u, self.rx.flows_mut(), &mut |_| {}),
                Output::Writer { writer, msg: WriterMsg::Stop { recording, at } } => {
                    // The writer learns the stop time now, so what the linger lets in after it
                    // is not written; the Stop itself follows the linger.
                    if bye {
                        if let Some(ring) = self.rx.rings_mut().get_mut(writer as usize) {
                            push_waiting(ring, WriterMsg::Stopping { recording, at });
                        }
                    }
                    if let Some(now) = self.linger.stop(writer, recording, at, bye) {
                        self.end_linger(now);
                    }
                }
                Output::Writer { writer, msg } => match self.rx.rings_mut().get_mut(writer as usize) {
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
        self.linger.end_of_drain(self.rx.flows_mut(), &mut |_| {});
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
        self.rx.close_rings();
        let total = join_writers(self.writers.drain(..));
        Summary { packets: self.rx.counters(), control: self.control.counters(), writers: total, rx_cores: Vec::new() }
    }
}

/// What every mode builds before its threads: the control core and the trace file.
pub(crate) struct Setup {
    pub control: ControlCore,
    pub trace: Option<SipTrace>,
    pub sip_ports: Vec<u16>,
    pub writers: usize,
    pub writer_cores: Vec<usize>,
}

/// Creates the output directory and trace file, and the control core.
pub(crate) fn setup(opts: RecordingOptions) -> Result<Setup, SetupError> {
    std::fs::create_dir_all(&opts.out).map_err(|err| SetupError::Output { path: opts.out.display().to_string(), err })?;
    let trace = match &opts.sip_trace {
        Some(p) => Some(SipTrace::create(p).map_err(|err| SetupError::Output { path: p.display().to_string(), err })?),
        None => None,
    };
    let sip_ports = opts.config.sip.ports.clone();
    let writers = opts.writers.max(1);
    let control = ControlCore::new(ControlConfig {
        config: opts.config,
        writers,
        out_dir: opts.out,
        format: opts.format,
        conf_id_prefix: opts.conf_id_prefix,
    })
    .map_err(|e| SetupError::Config(e.to_string()))?;
    Ok(Setup { control, trace, sip_ports, writers, writer_cores: opts.writer_cores })
}

/// The core writer `i` is pinned to: `writer_cores[i % len]`, or by default core i+1 wrapping
/// (the reader keeps core 0).
pub(crate) fn writer_core(writer_cores: &[usize], i: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match writer_cores {
        [] => (i + 1) % cores,
        list => list[i % list.len()],
    }
}

/// Waits for writer threads (their producers gone) and totals their reports.
pub(crate) fn join_writers(handles: impl Iterator<Item = JoinHandle<WriterReport>>) -> WriterReport {
    let mut total = WriterReport::default();
    for h in handles {
        match h.join() {
            Ok(r) => total.merge(&r),
            Err(_) => tracing::error!("a writer thread panicked; its open recordings may be unfinalized"),
        }
    }
    total
}
