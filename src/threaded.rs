//! The threaded dataplane of `callrec run` (`--rx-cores LIST` with several cores, or
//! `--control-core N`): one rx thread per port queue, the control core and CTI on the calling
//! thread, writers fed by one ring per producer.
//!
//! Rings (all SPSC, see `callrec_pipeline::cores`): rx i -> writer k RTP; rx i -> control SIP
//! (copied into fixed slots, a full ring is a counted drop); control -> rx i flow updates
//! (each rx thread owns its copy of the flow table and applies them at every burst, then
//! acknowledges the count); control -> writer k commands.
//!
//! Ordering: the control thread pushes a recording's `Start` before it sends the flow installs
//! (installs of one drain go out at its end), so a writer has the `Start` before any RTP of
//! the recording (`cores::lanes` reads the rings so that this holds). A `Stop` lingers
//! (`crate::linger`), then the flows are removed on every rx thread, and the `Stop` goes to
//! the writer only once every rx thread acknowledged that removal: no RTP follows it.

use crate::control::core::{ControlCore, Output};
use crate::cti::server::CtiInput;
use crate::dataplane::{join_writers, setup, writer_core, CtiSink, RecordingOptions, SetupError, Summary, RING_SLOTS};
use crate::linger::{is_bye, Lingering, StopLinger};
use crate::run::{drain_after_stop, wall_now, Cti, LivePort, POLL};
use crate::stats::{Snapshot, StatsReporter};
use crate::trace::SipTrace;
use callrec_pipeline::classify::Counters;
use callrec_pipeline::cores::lanes::spawn_lanes;
use callrec_pipeline::cores::link::{link, next_sip, ControlLink, RxUpdate};
use callrec_pipeline::cores::rx::{push_waiting, RingFull, RxCore};
use callrec_pipeline::flow::{FlowTable, FlowUpdate};
use callrec_pipeline::writer::{WriterConfig, WriterMsg};
use callrec_pipeline::Timestamp;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// SIP slots per rx -> control ring (8 KiB each): a burst of call setups well beyond what the
/// control core handles in the time it takes to look again.
const SIP_SLOTS: usize = 512;
/// Updates per control -> rx ring.
const UPDATE_SLOTS: usize = 4096;
/// SIP datagrams the control thread handles before it looks at CTI, timers and lingers.
const SIP_PER_ROUND: usize = 256;
/// How long the control thread sleeps when a round found nothing to do: short, because an
/// install that waits delays the recording's first packets (see `cores::rx`).
const CONTROL_IDLE: Duration = Duration::from_micros(100);

/// The control thread's state.
struct ControlSide {
    control: ControlCore,
    /// The authoritative flow table (rx threads hold copies).
    flows: FlowTable,
    linger: StopLinger,
    links: Vec<ControlLink>,
    writers: Vec<rtrb::Producer<WriterMsg>>,
    trace: Option<SipTrace>,
    /// Updates of the current drain, sent to every rx thread at its end.
    outbox: Vec<FlowUpdate>,
    /// Stops whose flows are removed, waiting for every rx thread to acknowledge that.
    acks: VecDeque<(Lingering, Vec<u64>)>,
    /// Stops of the current drain that do not linger.
    ending: Vec<Lingering>,
}

impl ControlSide {
    /// Applies the control core's outputs; `since` is the capture time of what caused them,
    /// `bye` whether that was a BYE (its stops linger).
    fn drain(&mut self, cti: &mut dyn CtiSink, since: Timestamp, bye: bool) {
        while let Some(out) = self.control.poll_output() {
            match out {
                Output::Flow(u) => {
                    let outbox = &mut self.outbox;
                    self.linger.flow(u, &mut self.flows, &mut |u| outbox.push(u));
                }
                Output::Writer { writer, msg: WriterMsg::Stop { recording, at } } => {
                    // The writer learns the stop time now, so what the linger lets in after it
                    // is not written; the Stop itself follows the linger.
                    if bye {
                        if let Some(ring) = self.writers.get_mut(writer as usize) {
                            push_waiting(ring, WriterMsg::Stopping { recording, at });
                        }
                    }
                    if let Some(now) = self.linger.stop(writer, recording, at, bye) {
                        self.ending.push(now);
                    }
                }
                Output::Writer { writer, msg } => match self.writers.get_mut(writer as usize) {
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
        let outbox = &mut self.outbox;
        self.linger.end_of_drain(&mut self.flows, &mut |u| outbox.push(u));
        self.send_outbox(since);
        while let Some(l) = self.ending.pop() {
            self.end_linger(l, since);
        }
    }

    fn send_outbox(&mut self, since: Timestamp) {
        for u in self.outbox.drain(..) {
            for l in self.links.iter_mut() {
                l.send(RxUpdate { update: u, since });
            }
        }
    }

    /// Timers, ended lingers, acknowledged stops.
    fn tick(&mut self, now: Timestamp, cti: &mut dyn CtiSink) {
        if self.control.poll_timeout().is_some_and(|t| t <= now) {
            self.control.handle_timeout(now);
            self.drain(cti, now, false);
        }
        while let Some(l) = self.linger.pop_due(now) {
            self.end_linger(l, now);
        }
        while self.acks.front().is_some_and(|(_, epochs)| self.links.iter().zip(epochs).all(|(l, e)| l.has_applied(*e))) {
            if let Some((l, _)) = self.acks.pop_front() {
                self.stop(&l);
            }
        }
    }

    /// Removes a lingering recording's flows everywhere; its Stop waits for the acks.
    fn end_linger(&mut self, l: Lingering, now: Timestamp) {
        let outbox = &mut self.outbox;
        StopLinger::end(&l, &mut self.flows, &mut |u| outbox.push(u));
        self.send_outbox(now);
        let epochs = self.links.iter().map(ControlLink::epoch).collect();
        self.acks.push_back((l, epochs));
    }

    fn stop(&mut self, l: &Lingering) {
        match self.writers.get_mut(l.writer as usize) {
            Some(ring) => push_waiting(ring, WriterMsg::Stop { recording: l.recording, at: l.at }),
            None => tracing::error!(writer = l.writer, "control core named a writer that does not exist"),
        }
    }

    /// SIP waiting in the rx rings, oldest first, up to `max`; how many were handled.
    fn sip(&mut self, cti: &mut dyn CtiSink, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(d) = next_sip(&mut self.links) else { break };
            self.control.handle_sip(d.ts, d.src, d.dst, d.payload());
            self.drain(cti, d.ts, is_bye(d.payload()));
            n += 1;
        }
        n
    }
}

/// What one rx thread did.
struct RxDone {
    counters: Counters,
    end: Timestamp,
}

/// Runs `ports` (one rx thread each, pinned to `rx_pins[i]`) with the control core on this
/// thread (pinned to `control_core`) until `stop`, then finalizes every recording.
pub(crate) fn run_threaded<P: LivePort + Send>(
    ports: &mut [P],
    rx_pins: &[Option<usize>],
    control_core: Option<usize>,
    rec: RecordingOptions,
    cti: &mut Cti,
    stats: &mut StatsReporter,
    stop: &AtomicBool,
) -> Result<Summary, SetupError> {
    let n = ports.len().max(1);
    let st = setup(rec)?;
    let mut lanes = Vec::with_capacity(st.writers);
    for k in 0..st.writers {
        lanes.push(spawn_lanes(k, Some(writer_core(&st.writer_cores, k)), n, RING_SLOTS, WriterConfig::default()).map_err(SetupError::Thread)?);
    }
    let mut by_writer: Vec<_> = lanes.iter_mut().map(|w| std::mem::take(&mut w.rtp).into_iter()).collect();
    let mut cores = Vec::with_capacity(n);
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        let rings = by_writer.iter_mut().filter_map(Iterator::next).collect();
        let mut core = RxCore::new(&st.sip_ports, rings, RingFull::Drop);
        let (up, down) = link(SIP_SLOTS, UPDATE_SLOTS);
        core.link(up);
        cores.push(core);
        links.push(down);
    }
    let (writers, threads): (Vec<_>, Vec<_>) = lanes.into_iter().map(|w| (w.control, w.thread)).unzip();
    let mut side = ControlSide {
        control: st.control,
        flows: FlowTable::new(),
        linger: StopLinger::new(),
        links,
        writers,
        trace: st.trace,
        outbox: Vec::new(),
        acks: VecDeque::new(),
        ending: Vec::new(),
    };
    let published: Vec<Mutex<Counters>> = (0..n).map(|_| Mutex::new(Counters::default())).collect();
    let done: Vec<RxDone> = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        for (i, (port, core)) in ports.iter_mut().zip(cores).enumerate() {
            let pin = rx_pins.get(i).copied().flatten();
            let slot = &published[i];
            let spawned = std::thread::Builder::new()
                .name(format!("callrec-rx-{i}"))
                .spawn_scoped(s, move || rx_thread(i, port, core, pin, stop, slot));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::error!(rx = i, error = %e, "cannot start rx thread; stopping");
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        if let Some(c) = control_core {
            if !callrec_pipeline::cores::pin_current(c) {
                tracing::warn!(core = c, "cannot pin the control thread; running unpinned");
            }
        }
        while !handles.iter().all(|h| h.is_finished()) {
            let mut work = side.sip(cti, SIP_PER_ROUND);
            work += serve_cti(&mut side, cti);
            side.tick(wall_now(), cti);
            let now = Instant::now();
            if stats.due(now) {
                stats.report(now, snapshot(&side.control, &published));
            }
            if work == 0 {
                std::thread::sleep(CONTROL_IDLE);
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| {
                tracing::error!("an rx thread panicked; its counters are lost");
                RxDone { counters: Counters::default(), end: Timestamp::default() }
            }))
            .collect()
    });
    // Every rx thread is gone: what they sent is all there is.
    while side.sip(cti, usize::MAX) > 0 {}
    let end = done.iter().map(|d| d.end).max().unwrap_or_else(wall_now);
    side.control.finish(end);
    side.drain(cti, end, false);
    side.tick(end, cti);
    while let Some(l) = side.linger.pop_all() {
        StopLinger::end(&l, &mut side.flows, &mut |_| {});
        side.stop(&l);
    }
    while let Some((l, _)) = side.acks.pop_front() {
        side.stop(&l);
    }
    if let Some(t) = side.trace.as_mut() {
        t.flush();
    }
    let control = side.control.counters();
    drop(side);
    let writers = join_writers(threads.into_iter());
    let mut packets = Counters::default();
    for d in &done {
        packets.merge(&d.counters);
    }
    Ok(Summary { packets, control, writers, rx_cores: done.iter().map(|d| d.counters).collect() })
}

/// CTI requests, stamped with the wall clock; how many.
fn serve_cti(side: &mut ControlSide, cti: &mut Cti) -> usize {
    let mut n = 0;
    while let Some(input) = cti.0.as_mut().and_then(|s| s.poll()) {
        let now = wall_now();
        match input {
            CtiInput::Request { client, line } => side.control.handle_cti(now, client, line),
            CtiInput::Gone { client } => side.control.cti_client_gone(client),
        }
        side.drain(cti, now, false);
        n += 1;
    }
    n
}

fn snapshot(control: &ControlCore, published: &[Mutex<Counters>]) -> Snapshot {
    let rx_cores: Vec<Counters> = published.iter().map(|m| m.lock().map(|c| *c).unwrap_or_default()).collect();
    let mut packets = Counters::default();
    for c in &rx_cores {
        packets.merge(c);
    }
    Snapshot { packets, rx_cores, control: control.counters(), active_recordings: control.active_recordings() as u64 }
}

/// One rx thread: bursts until `stop`, then the stop grace (as the inline mode); publishes
/// its counters about once a second.
fn rx_thread<P: LivePort>(i: usize, port: &mut P, mut core: RxCore, pin: Option<usize>, stop: &AtomicBool, slot: &Mutex<Counters>) -> RxDone {
    if let Some(c) = pin {
        if !callrec_pipeline::cores::pin_current(c) {
            tracing::warn!(rx = i, core = c, "cannot pin rx thread; running unpinned");
        }
    }
    let mut last_publish = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut first = true;
        port.rx(POLL, &mut |f| {
            if first {
                // Updates that came while the port waited go in before this burst.
                core.apply_updates();
                first = false;
            }
            let _ = core.frame(f);
        });
        core.apply_updates();
        if last_publish.elapsed() >= Duration::from_secs(1) {
            if let Ok(mut c) = slot.lock() {
                *c = core.counters();
            }
            last_publish = Instant::now();
        }
    }
    let end = drain_after_stop(port, &mut |f| {
        core.apply_updates();
        let _ = core.frame(f);
    });
    core.apply_updates();
    let counters = core.counters();
    if let Ok(mut c) = slot.lock() {
        *c = counters;
    }
    RxDone { counters, end }
}
