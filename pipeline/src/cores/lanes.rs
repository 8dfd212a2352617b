//! A writer fed by several producers: one RTP ring per rx core and one command ring from the
//! control core, polled in turn in bursts, no lock.
//!
//! Two orderings make this equivalent to one ring in order:
//! - `Start` before RTP: the control core pushes `Start` before it sends the flow install to
//!   the rx cores, so any RTP of the recording is pushed after the `Start`. Each round counts
//!   the RTP waiting in every rx ring first, then drains the command ring, then takes only the
//!   counted RTP: every counted packet's `Start` has been read.
//! - `Stop` after the last RTP: the control core sends `Stop` only after every rx core has
//!   acknowledged the removal of the recording's flows ([`super::link`]), so every RTP of the
//!   recording is in the rx rings when the `Stop` is read. A round that reads a `Stop` takes
//!   everything then in the rx rings before applying it.

use crate::writer::{Writer, WriterConfig, WriterMsg, WriterReport};
use std::time::{Duration, Instant};

/// RTP messages taken from one rx ring per round.
const LANE_BURST: usize = 256;

/// The rings of one writer as its producers see them.
pub struct WriterLanes {
    /// One RTP ring per rx core, by rx index.
    pub rtp: Vec<rtrb::Producer<WriterMsg>>,
    /// The command ring from the control core.
    pub control: rtrb::Producer<WriterMsg>,
    /// The writer thread; its totals once every producer is gone.
    pub thread: std::thread::JoinHandle<WriterReport>,
}

/// Starts writer `index` on its own thread (pinned to `core` when given) with `rx_cores` RTP
/// rings and one command ring of `capacity` messages each.
pub fn spawn_lanes(index: usize, core: Option<usize>, rx_cores: usize, capacity: usize, config: WriterConfig) -> std::io::Result<WriterLanes> {
    let (rtp, consumers): (Vec<_>, Vec<_>) = (0..rx_cores.max(1)).map(|_| rtrb::RingBuffer::new(capacity.max(1))).unzip();
    let (control, control_c) = rtrb::RingBuffer::new(capacity.max(1));
    let body = move || {
        if let Some(id) = core {
            if !crate::cores::pin_current(id) {
                tracing::warn!(writer = index, core = id, "cannot pin writer to core; running unpinned");
            }
        }
        run_lanes(consumers, control_c, index, config)
    };
    let thread = std::thread::Builder::new().name(format!("callrec-writer-{index}")).spawn(body)?;
    Ok(WriterLanes { rtp, control, thread })
}

/// The writer loop over several rings (see the module docs), until every producer is gone and
/// every ring empty; then finalizes all open recordings and returns the totals.
pub fn run_lanes(rtp: Vec<rtrb::Consumer<WriterMsg>>, control: rtrb::Consumer<WriterMsg>, index: usize, config: WriterConfig) -> WriterReport {
    let mut writer = Writer::new(index, config);
    let mut lanes = Lanes::new(rtp, control);
    let mut idle: u32 = 0;
    loop {
        let now = Instant::now();
        if lanes.round(&mut writer, now) {
            idle = 0;
            writer.tick(now);
            continue;
        }
        if lanes.control.is_abandoned() && lanes.rtp.iter().all(|c| c.is_abandoned()) {
            if lanes.control.slots() == 0 && lanes.rtp.iter().all(|c| c.slots() == 0) {
                break;
            }
            continue;
        }
        writer.tick(now);
        // As the one-ring writer: spin, then yield, then sleep longer the longer it is idle.
        idle = idle.saturating_add(1);
        if idle < 64 {
            std::hint::spin_loop();
        } else if idle < 128 {
            std::thread::yield_now();
        } else {
            let us = (50u64 << ((idle - 128) / 64).min(4)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
        }
    }
    writer.finish_all();
    let report = writer.report();
    tracing::debug!(writer = index, ?report, "writer done");
    report
}

/// A writer's consumers and the round's scratch (allocated once).
pub struct Lanes {
    /// RTP rings, by rx index.
    pub rtp: Vec<rtrb::Consumer<WriterMsg>>,
    /// The command ring.
    pub control: rtrb::Consumer<WriterMsg>,
    counts: Vec<usize>,
    stops: Vec<WriterMsg>,
}

impl Lanes {
    /// Consumers of one writer.
    pub fn new(rtp: Vec<rtrb::Consumer<WriterMsg>>, control: rtrb::Consumer<WriterMsg>) -> Lanes {
        let counts = vec![0; rtp.len()];
        Lanes { rtp, control, counts, stops: Vec::with_capacity(64) }
    }

    /// One round (see the module docs); true when anything was taken.
    pub fn round(&mut self, writer: &mut Writer, now: Instant) -> bool {
        let mut work = false;
        for (c, n) in self.rtp.iter().zip(self.counts.iter_mut()) {
            *n = c.slots().min(LANE_BURST);
        }
        let n = self.control.slots();
        if n > 0 {
            work = true;
            if let Ok(chunk) = self.control.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                for msg in a.iter().chain(b) {
                    match msg {
                        WriterMsg::Stop { .. } => self.stops.push(msg.clone()),
                        other => writer.handle(other.clone(), now),
                    }
                }
                chunk.commit_all();
            }
        }
        for (c, &n) in self.rtp.iter_mut().zip(self.counts.iter()) {
            work |= n > 0;
            take(c, n, writer, now);
        }
        if !self.stops.is_empty() {
            // Everything of a stopped recording is in the rings by now: take it first.
            for c in self.rtp.iter_mut() {
                let n = c.slots();
                take(c, n, writer, now);
            }
            for s in self.stops.drain(..) {
                writer.handle(s, now);
            }
        }
        work
    }
}

/// Takes `n` messages of an RTP ring, reading RTP in place.
#[inline]
fn take(c: &mut rtrb::Consumer<WriterMsg>, n: usize, writer: &mut Writer, now: Instant) {
    if n == 0 {
        return;
    }
    if let Ok(chunk) = c.read_chunk(n) {
        let (a, b) = chunk.as_slices();
        for msg in a.iter().chain(b) {
            match msg {
                WriterMsg::Rtp(item) => writer.rtp(item),
                other => writer.handle(other.clone(), now),
            }
        }
        chunk.commit_all();
    }
}
