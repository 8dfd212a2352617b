//! Calls per writer core: one writer thread (`try_spawn_writer_with`, its SPSC ring of 8192
//! messages) holding K concurrent recordings, each receiving 50 packets/s per direction of
//! capture time (20 ms G.711 A-law), fed as fast as the writer drains its ring. The writer's
//! sustained packets/s, divided by 100 packets per call-second, is how many calls one writer
//! core keeps up with in real time, with no gap (the run checks lost = late = 0).
//!
//! `cargo bench -p callrec-pipeline --bench writer_core -- DIR [K] [SECONDS]`
//! (default K = 20,000, 3 s of capture time). Files go to a fresh directory inside DIR
//! (e.g. /tmp on disk, /dev/shm on tmpfs), removed at the end; K files are open at once
//! (`ulimit -n` must exceed K). The RTP phase is timed from the first RTP pushed (after every
//! recording is open) to the ring drained after the last; opening and finalizing are timed
//! apart. Rates are given per wall second and per second of the writer thread's own CPU time
//! (utime + stime from /proc; the machine may be shared).

use callrec_pipeline::flow::{Channel, RecordingId};
use callrec_pipeline::writer::{
    try_spawn_writer_with, ChannelSpec, Codec, OutputFormat, RecordingSpec, RtpItem, WriterConfig, WriterMsg,
    MAX_RTP_LEN,
};
use callrec_pipeline::Timestamp;
use std::path::Path;
use std::time::Instant;

const T0: u64 = 1_764_000_000_000_000_000;
const RING: usize = 8192;

fn spec(dir: &Path, id: u32) -> Box<RecordingSpec> {
    let mut payload_types = heapless::Vec::new();
    let _ = payload_types.push((8, Codec::Pcma));
    let ch = ChannelSpec { payload_types, event_pt: Some(101) };
    let conf_id = format!("wc-{id}");
    Box::new(RecordingSpec {
        id: RecordingId(id),
        wav_path: dir.join(format!("{conf_id}.wav")),
        sidecar_path: dir.join(format!("{conf_id}.json")),
        conf_id,
        format: OutputFormat::G711,
        channels: [ch.clone(), ch],
        started: Timestamp(T0),
        sidecar: serde_json::Map::new(),
    })
}

fn push(tx: &mut rtrb::Producer<WriterMsg>, mut m: WriterMsg) {
    loop {
        match tx.push(m) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(back)) => {
                // as the dataplane's producer: yield, so a shared core goes to the writer
                m = back;
                std::thread::yield_now();
            }
        }
    }
}

fn wait_drained(tx: &rtrb::Producer<WriterMsg>) {
    while tx.slots() < RING {
        std::thread::yield_now();
    }
}

/// utime + stime of the thread named `name` in this process, in seconds.
fn thread_cpu(name: &str) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // comm is cut to 15 bytes
        if !name.starts_with(comm.trim()) || comm.trim().is_empty() {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // fields after the ")" that ends comm: state is field 3, utime 14, stime 15
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        return Some((u + s) / hz);
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(base) = args.first() else {
        eprintln!("usage: writer_core DIR [K] [SECONDS]");
        std::process::exit(2);
    };
    let k: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000).max(1);
    let secs: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3).clamp(1, 600);
    let dir = Path::new(base).join(format!("callrec-writer-core-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("writer_core: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let (mut tx, handle) = match try_spawn_writer_with(0, None, RING, WriterConfig::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("writer_core: cannot start the writer: {e}");
            std::process::exit(1);
        }
    };
    let t_open = Instant::now();
    for id in 0..k {
        push(&mut tx, WriterMsg::Start(spec(&dir, id)));
    }
    wait_drained(&tx);
    let open_s = t_open.elapsed().as_secs_f64();

    let ticks = secs * 50;
    let packets = u64::from(ticks) * u64::from(k) * 2;
    let mut item = RtpItem { recording: RecordingId(0), channel: Channel::Left, source: 0, ts: Timestamp(T0), len: 172, data: [0xD5; MAX_RTP_LEN] };
    item.data[0] = 0x80;
    item.data[1] = 8;
    let cpu0 = thread_cpu("callrec-writer-0");
    let t_rtp = Instant::now();
    for tick in 0..ticks {
        let seq = tick as u16;
        for id in 0..k {
            // each call's 20 ms clock sits at its own offset inside the tick, as in a capture
            let at = T0 + 100_000_000 + u64::from(tick) * 20_000_000 + u64::from(id) * 20_000_000 / u64::from(k);
            for ch in [Channel::Left, Channel::Right] {
                item.recording = RecordingId(id);
                item.channel = ch;
                item.ts = Timestamp(at + ch.index() as u64 * 7_000);
                item.data[2..4].copy_from_slice(&seq.to_be_bytes());
                item.data[4..8].copy_from_slice(&(tick * 160).to_be_bytes());
                item.data[8..12].copy_from_slice(&(id * 2 + ch.index() as u32).to_be_bytes());
                push(&mut tx, WriterMsg::Rtp(item));
            }
        }
    }
    wait_drained(&tx);
    let rtp_s = t_rtp.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu("callrec-writer-0")) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let t_stop = Instant::now();
    let at = Timestamp(T0 + 200_000_000 + u64::from(ticks) * 20_000_000);
    for id in 0..k {
        push(&mut tx, WriterMsg::Stop { recording: RecordingId(id), at });
    }
    drop(tx);
    let report = match handle.join() {
        Ok(r) => r,
        Err(_) => {
            eprintln!("writer_core: the writer thread panicked");
            std::process::exit(1);
        }
    };
    let stop_s = t_stop.elapsed().as_secs_f64();
    let fs = std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(&dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let pps = packets as f64 / rtp_s;
    println!("writer_core: {k} concurrent recordings, {secs} s of capture time each, files in {} ({fs})", dir.display());
    println!("  opened {k} recordings in {open_s:.2} s; finalized in {stop_s:.2} s");
    print!("  RTP: {packets} packets in {rtp_s:.2} s wall = {:.2} M packets/s -> {:.0} calls per writer core (wall)", pps / 1e6, pps / 100.0);
    match cpu {
        Some(c) if c > 0.0 => println!("; writer CPU {c:.2} s = {:.2} M packets/s per CPU s -> {:.0} calls per writer core (CPU)", packets as f64 / c / 1e6, packets as f64 / c / 100.0),
        _ => println!("; writer CPU time unavailable"),
    }
    println!(
        "  writer report: packets {}, lost {}, late {}, duplicate {}, orphans {}, write errors {}, failed recordings {}",
        report.packets, report.lost, report.late, report.duplicate, report.orphans, report.write_errors, report.recordings_failed
    );
    let gapless = report.packets == packets && report.lost == 0 && report.late == 0 && report.recordings_failed == 0;
    println!("  no gap: {}; real time kept: {} (capture {secs} s vs {rtp_s:.2} s wall); goal >= 20000 calls per writer core: {}",
        if gapless { "yes" } else { "NO" },
        if rtp_s <= f64::from(secs) { "yes" } else { "no" },
        if pps / 100.0 >= 20_000.0 { "met" } else { "missed" });
}
