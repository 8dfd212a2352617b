//! Whole rx pipeline rate on one core: DPDK `net_pcap` replaying a call mix from memory
//! (`infinite_rx=1`) -> parse -> classify against the flow table of every call in the mix ->
//! dispatch of each recorded RTP packet into its writer's SPSC ring, as `Dataplane::frame`
//! does (an `RtpItem` copied inline, `push`; a full ring is a counted drop). The writer
//! threads here only drain their rings (read each item's bytes and count them), so the figure
//! is rx + classify + dispatch, not the writers' file work (see pipeline/benches/writer_core.rs).
//! SIP frames are classified and counted; the control core (root crate) is not run here.
//!
//! `cargo run -p callrec-dpdk --features dpdk --release --example pipeline_rate -- RATE_PCAP FLOWS [SECS] [WRITERS] [STAGE]`
//! (root). RATE_PCAP and FLOWS come from `bench/gen_mix.py --calls K --rate-out RATE_PCAP
//! --flows FLOWS`; every call's two flows are installed up front (writer = call mod WRITERS).
//! The rx loop runs on core 0, writer k on core 1 + k (wrapping). Prints Mpps of the rx core
//! and what became of the frames, per second of wall time and per second of the rx thread's
//! own CPU time (the machine may be shared: the second is what one dedicated core would do).
//! STAGE stops the per-frame work early, to split the cost: `rx` (receive and free only),
//! `classify` (parse + classify, no dispatch), `dispatch` (everything, the default), and
//! `burst`: dispatch as the design says, each burst's RTP moved into a writer's ring
//! in one chunk (one ring commit per burst and writer instead of one push per packet; the
//! dataplane does not do this yet); `small`: per-packet push as `dispatch`, into rings whose
//! slots hold 176 bytes of RTP instead of `MAX_RTP_LEN` (an experiment on the slot size);
//! `copy`: each RTP item built as `dispatch` builds it but written into a local array of as
//! many slots as a ring has, no other thread involved (the cost of the copy alone, without the
//! cross-core transfer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callrec_dpdk::DpdkPort;
use callrec_pipeline::classify::{Class, Classifier, Counters};
use callrec_pipeline::flow::{Channel, FlowKey, FlowTable, FlowTarget, FlowUpdate, RecordingId};
use callrec_pipeline::parse::{parse_frame, Ipv4Reassembler, Parsed};
use callrec_pipeline::writer::{RtpItem, WriterMsg, MAX_RTP_LEN};
use callrec_pipeline::Timestamp;

/// Slots per writer ring, as the dataplane's.
const RING_SLOTS: usize = 8192;

fn load_flows(path: &str, writers: u16) -> Result<FlowTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut t = FlowTable::new();
    for (n, line) in text.lines().enumerate() {
        let mut it = line.split_whitespace();
        let (Some(a), Some(b)) = (it.next(), it.next()) else { continue };
        let (a, b): (SocketAddr, SocketAddr) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("{path}:{}: expected two IP:PORT", n + 1)),
        };
        let target = |channel| FlowTarget { writer: (n % writers as usize) as u16, recording: RecordingId(n as u32), channel, source: 0 };
        t.apply(FlowUpdate::Install(FlowKey { src: a, dst: b }, target(Channel::Left)));
        t.apply(FlowUpdate::Install(FlowKey { src: b, dst: a }, target(Channel::Right)));
    }
    Ok(t)
}

/// What a drained ring item yields: (is RTP, last payload byte + recording id).
trait Touch {
    fn touch(&self) -> Option<u64>;
}

impl Touch for WriterMsg {
    fn touch(&self) -> Option<u64> {
        match self {
            WriterMsg::Rtp(item) => {
                let bytes = item.bytes();
                Some(u64::from(bytes[bytes.len() - 1]) + u64::from(item.recording.0))
            }
            _ => None,
        }
    }
}

/// Experiment: a ring slot sized for 20 ms of G.711 (172 bytes of RTP) instead of
/// `MAX_RTP_LEN`, to see what the slot size costs.
#[derive(Clone, Copy)]
struct SmallItem {
    target: FlowTarget,
    ts: Timestamp,
    len: u16,
    data: [u8; SMALL_LEN],
}

const SMALL_LEN: usize = 176;

impl Touch for SmallItem {
    fn touch(&self) -> Option<u64> {
        let len = (self.len as usize).clamp(1, SMALL_LEN);
        Some(u64::from(self.data[len - 1]) + u64::from(self.target.recording.0) + (self.ts.0 & 1))
    }
}

/// A writer stand-in: drains its ring in bursts, reads every item's bytes, counts them.
fn drain<T: Touch>(mut ring: rtrb::Consumer<T>, core: usize) -> (u64, u64) {
    callrec_pipeline::cores::pin_current(core);
    let (mut items, mut sum) = (0u64, 0u64);
    loop {
        let n = ring.slots().min(256);
        if n == 0 {
            if ring.is_abandoned() && ring.slots() == 0 {
                return (items, sum);
            }
            std::hint::spin_loop();
            continue;
        }
        if let Ok(chunk) = ring.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            for m in a.iter().chain(b) {
                if let Some(v) = m.touch() {
                    items += 1;
                    sum = sum.wrapping_add(v);
                }
            }
            chunk.commit_all();
        }
    }
}

/// As `Dataplane::frame`'s dispatch under `RingFull::Drop`.
#[inline]
fn dispatch(ring: &mut rtrb::Producer<WriterMsg>, target: FlowTarget, ts: Timestamp, payload: &[u8], c: &mut Counters) {
    // As the dataplane does: built in its ring slot.
    if !callrec_pipeline::cores::rx::try_push_rtp(ring, target, ts, payload) {
        c.rtp -= 1;
        c.ring_full += 1;
    }
}

/// How far each frame goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Rx,
    Classify,
    Dispatch,
    Burst,
    Small,
    Copy,
}

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Classifies a burst, then moves each writer's RTP into its ring in one chunk.
fn burst_dispatch(
    frames: &[callrec_pipeline::port::Frame<'_>],
    classifier: &Classifier,
    flows: &FlowTable,
    reasm: &mut Ipv4Reassembler,
    rings: &mut [rtrb::Producer<WriterMsg>],
    c: &mut Counters,
) {
    // (target, frame index, payload offset in the frame, payload length)
    let mut pending: heapless::Vec<(FlowTarget, usize, usize, usize), { callrec_pipeline::port::BURST }> = heapless::Vec::new();
    for (i, f) in frames.iter().enumerate() {
        c.rx += 1;
        match parse_frame(f, reasm) {
            Parsed::Udp(d) => {
                let class = classifier.classify(d.src, d.dst, d.payload, flows);
                c.count(class);
                if let Class::Rtp(t) = class {
                    let off = (d.payload.as_ptr() as usize).wrapping_sub(f.data.as_ptr() as usize);
                    if off + d.payload.len() <= f.data.len() {
                        let _ = pending.push((t, i, off, d.payload.len()));
                    } else if let Some(ring) = rings.get_mut(t.writer as usize) {
                        // reassembled: not inside the frame, sent on its own
                        dispatch(ring, t, f.ts, d.payload, c);
                    }
                }
            }
            Parsed::Fragment => c.fragments += 1,
            _ => c.not_udp += 1,
        }
    }
    for (w, ring) in rings.iter_mut().enumerate() {
        let n = pending.iter().filter(|p| p.0.writer as usize == w).count();
        if n == 0 {
            continue;
        }
        let room = ring.slots().min(n);
        c.rtp -= (n - room) as u64;
        c.ring_full += (n - room) as u64;
        let Ok(chunk) = ring.write_chunk_uninit(room) else { continue };
        chunk.fill_from_iter(pending.iter().filter(|p| p.0.writer as usize == w).take(room).map(|&(t, i, off, len)| {
            let len = len.min(MAX_RTP_LEN);
            let mut item = RtpItem { recording: t.recording, channel: t.channel, source: t.source, ts: frames[i].ts, len: len as u16, data: [0; MAX_RTP_LEN] };
            item.data[..len].copy_from_slice(&frames[i].data[off..off + len]);
            WriterMsg::Rtp(item)
        }));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), Some(flows_path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: pipeline_rate RATE_PCAP FLOWS [SECS] [WRITERS]");
        std::process::exit(2);
    };
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5).clamp(1, 600);
    let writers: u16 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1).clamp(1, 64);
    let stage = match args.get(4).map(String::as_str) {
        None | Some("dispatch") => Stage::Dispatch,
        Some("classify") => Stage::Classify,
        Some("rx") => Stage::Rx,
        Some("burst") => Stage::Burst,
        Some("small") => Stage::Small,
        Some("copy") => Stage::Copy,
        Some(other) => {
            eprintln!("pipeline_rate: unknown stage {other:?}: rx, classify, dispatch, burst, small or copy");
            std::process::exit(2);
        }
    };
    let flows = match load_flows(flows_path, writers) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pipeline_rate: {e}");
            std::process::exit(1);
        }
    };
    let prefix = format!("cr-pipe-{}", std::process::id());
    let eal = format!(
        "-l 0 --no-huge -m 1024 --no-pci --file-prefix {prefix} --log-level=error --vdev=net_pcap0,rx_pcap={file},infinite_rx=1"
    );
    let mut port = match DpdkPort::init(&eal, None, 1) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pipeline_rate: {e}");
            // the EAL leaves its runtime directory behind on a failed start too
            let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
            std::process::exit(1);
        }
    };
    callrec_pipeline::cores::pin_current(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let small = stage == Stage::Small;
    let (mut rings, mut handles): (Vec<_>, Vec<_>) = (0..if small { 0 } else { writers as usize })
        .map(|k| {
            let (p, c) = rtrb::RingBuffer::<WriterMsg>::new(RING_SLOTS);
            (p, std::thread::spawn(move || drain(c, (1 + k) % cores)))
        })
        .unzip();
    let (mut small_rings, small_handles): (Vec<_>, Vec<_>) = (0..if small { writers as usize } else { 0 })
        .map(|k| {
            let (p, c) = rtrb::RingBuffer::<SmallItem>::new(RING_SLOTS);
            (p, std::thread::spawn(move || drain(c, (1 + k) % cores)))
        })
        .unzip();
    handles.extend(small_handles);
    let classifier = Classifier::new(&[5060]);
    let mut reasm = Ipv4Reassembler::new(64, 30_000_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    // Warm-up: net_pcap loads the capture into mbufs on start; caches and rings settle.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        drop(port.rx_burst(0));
    }
    let before = port.stats();
    let mut c = Counters::default();
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let end = start + Duration::from_secs(secs);
    let mut touched = 0u64;
    let mut local: Vec<WriterMsg> = if stage == Stage::Copy {
        (0..RING_SLOTS).map(|_| WriterMsg::Stop { recording: RecordingId(0), at: Timestamp(0) }).collect()
    } else {
        Vec::new()
    };
    let mut next_local = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // The clock is read once per 256 bursts, off the measured cost.
        for _ in 0..256 {
            let burst = port.rx_burst(0);
            if stage == Stage::Burst {
                burst_dispatch(burst.frames(), &classifier, &flows, &mut reasm, &mut rings, &mut c);
                continue;
            }
            for f in burst.iter() {
                c.rx += 1;
                if stage == Stage::Rx {
                    touched += u64::from(f.data.first().copied().unwrap_or(0));
                    c.not_udp += 1;
                    continue;
                }
                match parse_frame(f, &mut reasm) {
                    Parsed::Udp(d) => {
                        let class = classifier.classify(d.src, d.dst, d.payload, &flows);
                        c.count(class);
                        match (class, stage) {
                            (Class::Rtp(t), Stage::Dispatch) => {
                                if let Some(ring) = rings.get_mut(t.writer as usize) {
                                    dispatch(ring, t, f.ts, d.payload, &mut c);
                                }
                            }
                            (Class::Rtp(t), Stage::Copy) => {
                                let len = d.payload.len().min(MAX_RTP_LEN);
                                let mut item = RtpItem { recording: t.recording, channel: t.channel, source: t.source, ts: f.ts, len: len as u16, data: [0; MAX_RTP_LEN] };
                                item.data[..len].copy_from_slice(&d.payload[..len]);
                                local[next_local] = WriterMsg::Rtp(item);
                                next_local = (next_local + 1) % RING_SLOTS;
                            }
                            (Class::Rtp(t), Stage::Small) => {
                                if let Some(ring) = small_rings.get_mut(t.writer as usize) {
                                    if d.payload.len() > SMALL_LEN || ring.is_full() {
                                        c.rtp -= 1;
                                        c.ring_full += 1;
                                    } else {
                                        let mut item = SmallItem { target: t, ts: f.ts, len: d.payload.len() as u16, data: [0; SMALL_LEN] };
                                        item.data[..d.payload.len()].copy_from_slice(d.payload);
                                        let _ = ring.push(item);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    Parsed::Fragment => c.fragments += 1,
                    _ => c.not_udp += 1,
                }
            }
        }
        if Instant::now() >= end {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let dt = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu0;
    let after = port.stats();
    rings.clear();
    small_rings.clear();
    let (mut drained, mut sum) = (0u64, 0u64);
    for h in handles {
        if let Ok((n, s)) = h.join() {
            drained += n;
            sum = sum.wrapping_add(s);
        }
    }
    touched += local.iter().filter(|m| matches!(m, WriterMsg::Rtp(_))).count() as u64;
    let accounted = c.sip + c.rtp + c.ring_full + c.unrecorded + c.rtcp + c.keepalive + c.not_rtp + c.oversize + c.not_udp + c.fragments;
    let what = match stage {
        Stage::Rx => "rx only",
        Stage::Classify => "rx+parse+classify",
        Stage::Dispatch => "rx+parse+classify+dispatch",
        Stage::Burst => "rx+parse+classify+dispatch in bursts",
        Stage::Small => "rx+parse+classify+dispatch into 176-byte slots",
        Stage::Copy => "rx+parse+classify+item copied into a local array",
    };
    println!(
        "pipeline_rate: {} frames in {dt:.2} s wall, {cpu:.2} s rx-thread CPU: {:.2} Mpps per wall s, {:.2} Mpps per rx CPU s ({what}; {} flows, {writers} writer ring(s) drained on other cores; file {file})",
        c.rx,
        c.rx as f64 / dt / 1e6,
        c.rx as f64 / cpu.max(1e-9) / 1e6,
        flows.len(),
    );
    println!(
        "  rtp dispatched {} ({:.2} Mpps), ring full drops {}, sip {}, unrecorded {}, other {}; writers drained {drained}; imissed {}, rx_nombuf {}; accounted {}/{} (checksum {sum} {touched})",
        c.rtp,
        c.rtp as f64 / dt / 1e6,
        c.ring_full,
        c.sip,
        c.unrecorded,
        c.not_udp + c.fragments + c.rtcp + c.keepalive + c.not_rtp + c.oversize,
        after.imissed - before.imissed,
        after.rx_nombuf - before.rx_nombuf,
        accounted,
        c.rx,
    );
    drop(port);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}
