//! The writer thread: owns its recordings, drains its SPSC ring in bursts, keeps headers
//! fresh, and finalizes everything when the producer goes away.

use super::jitter::PlacementConfig;
use super::recording::{Recording, RecordingOutcome};
use super::{RtpItem, WriterMsg};
use crate::flow::RecordingId;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// Messages taken from the ring per burst.
pub const WRITER_BURST: usize = 256;
/// How often the loop looks at every recording's header deadline.
const TICK_EVERY: Duration = Duration::from_millis(100);

/// Tuning of a writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterConfig {
    /// The placement buffer of each recording.
    pub placement: PlacementConfig,
}

/// A writer's totals, for the CLI summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterReport {
    /// Recordings started.
    pub recordings_opened: u64,
    /// Recordings finalized (by Stop or at shutdown).
    pub recordings_closed: u64,
    /// Recordings whose WAV or sidecar could not be fully written.
    pub recordings_failed: u64,
    /// RTP packets taken for recordings.
    pub packets: u64,
    /// Packets lost (sequence gaps).
    pub lost: u64,
    /// Packets that came too late to be placed.
    pub late: u64,
    /// Duplicate packets.
    pub duplicate: u64,
    /// RFC 4733 events.
    pub events: u64,
    /// Packets of payload types not announced as PCMA/PCMU.
    pub unknown_pt: u64,
    /// Packets that were not valid RTP, or named a source past `MAX_SOURCES`.
    pub invalid: u64,
    /// Stream re-anchors (SSRC change, timestamp jump).
    pub reanchors: u64,
    /// RTP or commands for a recording this writer does not hold.
    pub orphans: u64,
    /// Write errors (full disk, ...).
    pub write_errors: u64,
}

impl WriterReport {
    /// Adds `other` into `self` (to total several writers).
    pub fn merge(&mut self, other: &WriterReport) {
        self.recordings_opened += other.recordings_opened;
        self.recordings_closed += other.recordings_closed;
        self.recordings_failed += other.recordings_failed;
        self.packets += other.packets;
        self.lost += other.lost;
        self.late += other.late;
        self.duplicate += other.duplicate;
        self.events += other.events;
        self.unknown_pt += other.unknown_pt;
        self.invalid += other.invalid;
        self.reanchors += other.reanchors;
        self.orphans += other.orphans;
        self.write_errors += other.write_errors;
    }

    fn add_outcome(&mut self, o: &RecordingOutcome) {
        self.recordings_closed += 1;
        self.recordings_failed += u64::from(o.failed);
        self.write_errors += o.write_errors;
        for c in &o.channels {
            self.packets += c.packets;
            self.lost += c.lost;
            self.late += c.late;
            self.duplicate += c.duplicate;
            self.events += c.events;
            self.unknown_pt += c.unknown_pt;
            self.invalid += c.invalid;
            self.reanchors += c.reanchors;
        }
    }
}

/// One writer: the recordings it owns and its totals. Drive it with [`Writer::handle`] (and
/// [`Writer::tick`] when idle), or let [`run`] do so from a ring.
pub struct Writer {
    index: usize,
    config: WriterConfig,
    recordings: FxHashMap<RecordingId, Recording>,
    report: WriterReport,
    last_tick: Option<Instant>,
}

impl Writer {
    /// An empty writer; `index` names it in logs.
    pub fn new(index: usize, config: WriterConfig) -> Self {
        Writer {
            index,
            config,
            recordings: FxHashMap::default(),
            report: WriterReport::default(),
            last_tick: None,
        }
    }

    /// Handles one RTP packet.
    #[inline]
    pub fn rtp(&mut self, item: &RtpItem) {
        match self.recordings.get_mut(&item.recording) {
            Some(r) => r.rtp(item),
            None => self.report.orphans += 1,
        }
    }

    /// Handles one message; `now_wall` (read once per burst by the caller) paces header
    /// checkpoints.
    pub fn handle(&mut self, msg: WriterMsg, now_wall: Instant) {
        match msg {
            WriterMsg::Rtp(item) => self.rtp(&item),
            WriterMsg::Start(spec) => {
                tracing::debug!(writer = self.index, conf_id = %spec.conf_id, "recording start");
                self.report.recordings_opened += 1;
                let rec = Recording::open(spec, self.config.placement, now_wall);
                if let Some(old) = self.recordings.insert(rec.id(), rec) {
                    tracing::warn!(writer = self.index, id = ?old.id(), "recording started twice; finalizing the first");
                    let o = old.stop(None);
                    self.report.add_outcome(&o);
                }
            }
            WriterMsg::Pause { recording, at } => match self.recordings.get_mut(&recording) {
                Some(r) => r.pause(at),
                None => self.report.orphans += 1,
            },
            WriterMsg::Resume { recording, at } => match self.recordings.get_mut(&recording) {
                Some(r) => r.resume(at),
                None => self.report.orphans += 1,
            },
            WriterMsg::Sidecar { recording, key, value } => {
                match self.recordings.get_mut(&recording) {
                    Some(r) => r.set_sidecar(key, *value),
                    None => self.report.orphans += 1,
                }
            }
            WriterMsg::Stopping { recording, at } => match self.recordings.get_mut(&recording) {
                Some(r) => r.stopping(at),
                None => self.report.orphans += 1,
            },
            WriterMsg::Stop { recording, at } => match self.recordings.remove(&recording) {
                Some(r) => {
                    let o = r.stop(Some(at));
                    self.report.add_outcome(&o);
                }
                None => self.report.orphans += 1,
            },
        }
    }

    /// Brings due WAV headers up to date; cheap to call once per burst.
    pub fn tick(&mut self, now_wall: Instant) {
        if self.last_tick.is_some_and(|t| now_wall.saturating_duration_since(t) < TICK_EVERY) {
            return;
        }
        self.last_tick = Some(now_wall);
        let every = super::recording::checkpoint_every(self.recordings.len());
        for r in self.recordings.values_mut() {
            r.checkpoint_if_due(now_wall, every);
        }
    }

    /// Finalizes every open recording (producer gone, shutdown).
    pub fn finish_all(&mut self) {
        let mut ids: Vec<RecordingId> = self.recordings.keys().copied().collect();
        ids.sort();
        for id in ids {
            if let Some(r) = self.recordings.remove(&id) {
                let o = r.stop(None);
                self.report.add_outcome(&o);
            }
        }
    }

    /// Recordings currently open.
    pub fn open_recordings(&self) -> usize {
        self.recordings.len()
    }

    /// Totals so far (closed recordings' packets are counted when they close).
    pub fn report(&self) -> WriterReport {
        self.report
    }
}

/// Shortest sleep of an idle writer.
const MIN_NAP: Duration = Duration::from_micros(50);
/// Longest sleep of an idle writer: a ring of `RING_SLOTS` (8192 in callrec) fills in it
/// only at 8 M messages/s, far past what one rx thread delivers; and at light load the
/// writer wakes about once per millisecond instead of once per packet.
const MAX_NAP: Duration = Duration::from_millis(1);
/// Empty looks spent spinning, then yielding, before the writer sleeps.
const SPIN_ROUNDS: u32 = 64;
const YIELD_ROUNDS: u32 = 8;

/// What an idle writer does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idle {
    Spin,
    Yield,
    Sleep(Duration),
}

/// The idle policy. A writer that finds its ring empty spins a little (the producer may be
/// mid-burst), yields a little, then sleeps. The sleep's length is kept from one idle spell
/// to the next and steered by what the last sleep let pile up: a few messages or none, and
/// it doubles up to [`MAX_NAP`]; more than an eighth of the ring, and it drops to
/// [`MIN_NAP`]. So a lightly loaded writer drains its ring in batches about once per
/// millisecond, and a busy one (which rarely finds the ring empty) sleeps briefly.
struct Backoff {
    capacity: usize,
    empty_looks: u32,
    nap: Duration,
    napped: bool,
}

impl Backoff {
    fn new(capacity: usize) -> Self {
        Backoff { capacity, empty_looks: 0, nap: MIN_NAP, napped: false }
    }

    /// The ring holds `n` messages now.
    fn found(&mut self, n: usize) {
        if std::mem::take(&mut self.napped) {
            self.nap = if n.saturating_mul(8) > self.capacity {
                MIN_NAP
            } else {
                (self.nap * 2).min(MAX_NAP)
            };
        }
        if n > 0 {
            self.empty_looks = 0;
        }
    }

    /// The ring was empty: what to do before looking again.
    fn idle(&mut self) -> Idle {
        self.empty_looks = self.empty_looks.saturating_add(1);
        if self.empty_looks <= SPIN_ROUNDS {
            Idle::Spin
        } else if self.empty_looks <= SPIN_ROUNDS + YIELD_ROUNDS {
            Idle::Yield
        } else {
            self.napped = true;
            Idle::Sleep(self.nap)
        }
    }
}

/// The writer loop: drains `consumer` in bursts until its producer is gone and the ring is
/// empty, then finalizes all open recordings and returns the totals.
pub fn run(
    mut consumer: rtrb::Consumer<WriterMsg>,
    index: usize,
    config: WriterConfig,
) -> WriterReport {
    let mut writer = Writer::new(index, config);
    let mut backoff = Backoff::new(consumer.buffer().capacity());
    loop {
        let slots = consumer.slots();
        backoff.found(slots);
        let n = slots.min(WRITER_BURST);
        if n > 0 {
            let now = Instant::now();
            if let Ok(chunk) = consumer.read_chunk(n) {
                // RTP is read in place: moving a ring slot out would copy the whole inline
                // payload buffer once more per packet. Control messages are rare; cloned.
                let (a, b) = chunk.as_slices();
                for msg in a.iter().chain(b) {
                    match msg {
                        WriterMsg::Rtp(item) => writer.rtp(item),
                        other => writer.handle(other.clone(), now),
                    }
                }
                chunk.commit_all();
            }
            writer.tick(now);
            continue;
        }
        if consumer.is_abandoned() {
            if consumer.slots() == 0 {
                break;
            }
            continue;
        }
        writer.tick(Instant::now());
        // The machine may have fewer cores than threads: an idle writer must not steal the
        // capture core, nor wake once per packet at light load.
        match backoff.idle() {
            Idle::Spin => std::hint::spin_loop(),
            Idle::Yield => std::thread::yield_now(),
            Idle::Sleep(d) => std::thread::sleep(d),
        }
    }
    writer.finish_all();
    let report = writer.report();
    tracing::debug!(writer = index, ?report, "writer done");
    report
}

/// Starts writer `index` on its own thread (pinned to `core` when given) with a ring of
/// `ring_capacity` messages and the default configuration.
pub fn spawn_writer(
    index: usize,
    core: Option<usize>,
    ring_capacity: usize,
) -> (rtrb::Producer<WriterMsg>, std::thread::JoinHandle<WriterReport>) {
    spawn_writer_with(index, core, ring_capacity, WriterConfig::default())
}

/// [`spawn_writer`] with a configuration. Should the OS refuse a thread, this logs it and
/// returns a writer that has already finished (its producer is abandoned at once); use
/// [`try_spawn_writer_with`] to see the error.
pub fn spawn_writer_with(
    index: usize,
    core: Option<usize>,
    ring_capacity: usize,
    config: WriterConfig,
) -> (rtrb::Producer<WriterMsg>, std::thread::JoinHandle<WriterReport>) {
    match try_spawn_writer_with(index, core, ring_capacity, config) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(writer = index, error = %e, "cannot start writer thread");
            let (producer, _) = rtrb::RingBuffer::new(1);
            // A second failure here would panic inside std; the system is out of threads.
            (producer, std::thread::spawn(WriterReport::default))
        }
    }
}

/// Starts a writer thread, or says why the OS would not.
pub fn try_spawn_writer_with(
    index: usize,
    core: Option<usize>,
    ring_capacity: usize,
    config: WriterConfig,
) -> std::io::Result<(rtrb::Producer<WriterMsg>, std::thread::JoinHandle<WriterReport>)> {
    let (producer, consumer) = rtrb::RingBuffer::new(ring_capacity.max(1));
    let body = move || {
        if let Some(id) = core {
            if !crate::cores::pin_current(id) {
                tracing::warn!(
                    writer = index,
                    core = id,
                    "cannot pin writer to core; running unpinned"
                );
            }
        }
        run(consumer, index, config)
    };
    let handle = std::thread::Builder::new().name(format!("callrec-writer-{index}")).spawn(body)?;
    Ok((producer, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks at an empty ring until the backoff sleeps; returns that sleep.
    fn until_sleep(b: &mut Backoff) -> Duration {
        for _ in 0..1000 {
            b.found(0);
            if let Idle::Sleep(d) = b.idle() {
                return d;
            }
        }
        panic!("never slept");
    }

    #[test]
    fn light_load_climbs_to_the_longest_nap_and_stays_there() {
        let mut b = Backoff::new(8192);
        assert_eq!(b.idle(), Idle::Spin);
        let mut naps = vec![until_sleep(&mut b)];
        for _ in 0..8 {
            // each sleep lets one packet in, then the ring is empty again
            b.found(1);
            naps.push(until_sleep(&mut b));
        }
        let us: Vec<u128> = naps.iter().map(|d| d.as_micros()).collect();
        assert_eq!(us, [50, 100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn a_sleep_that_lets_an_eighth_of_the_ring_pile_up_drops_to_the_shortest() {
        let mut b = Backoff::new(8192);
        for _ in 0..6 {
            until_sleep(&mut b);
        }
        assert_eq!(until_sleep(&mut b), MAX_NAP);
        b.found(1025);
        // the burst is drained, the ring empties: spin and yield first, then a short sleep
        assert_eq!(b.idle(), Idle::Spin);
        assert_eq!(until_sleep(&mut b), MIN_NAP);
        b.found(1024);
        assert_eq!(until_sleep(&mut b), MIN_NAP * 2, "an eighth exactly is still light");
    }
}
