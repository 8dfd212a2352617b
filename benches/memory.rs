//! Memory per recorded call, state outside file buffers: N concurrent recorded calls built
//! through the control core, their flow updates applied to a flow table, their recordings
//! opened on the writer side; a counting global allocator gives the heap bytes each part
//! holds, and `size_of` the inline part the heap counts already include.
//!
//! `cargo bench --bench memory` (N = 10,000; `-- N` for another count). WAV files go to a
//! fresh directory under /dev/shm (tmpfs), removed at the end; each recording holds an open
//! file, so the fd limit must exceed N (`ulimit -n`).
//!
//! Heap deltas are measured phase by phase, so the one-off start-up allocations of each part
//! (an empty core, an empty table) are left out: what is reported is what one more call adds.

#[path = "common/mod.rs"]
mod common;

use callrec::control::core::Output;
use callrec_pipeline::flow::{FlowTable, FlowUpdate, RecordingId};
use callrec_pipeline::writer::jitter::{Placement, PlacementConfig};
use callrec_pipeline::writer::recording::{sample_kind, Recording};
use callrec_pipeline::writer::wav::WRITE_BUFFER;
use callrec_pipeline::writer::{RecordingSpec, WriterMsg};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// The system allocator, counting live heap bytes and allocation calls.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        CALLS.fetch_add(1, Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        CALLS.fetch_add(1, Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        CALLS.fetch_add(1, Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Relaxed)
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = std::path::PathBuf::from(format!("/dev/shm/callrec-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create the output directory under /dev/shm");
    let out = dir.to_str().expect("utf-8 path").to_string();
    // Built before any measurement: their own growth must not be charged to a part.
    let calls: Vec<common::CallSip> = (0..n).map(common::call).collect();
    let mut specs: Vec<Box<RecordingSpec>> = Vec::with_capacity(n as usize);
    let mut updates: Vec<FlowUpdate> = Vec::with_capacity(4 * n as usize);

    // 1. Control core: N answered, recorded calls. Specs and flow updates leave the core (they
    //    are the writer's and the table's); everything else it emits is dropped.
    let mut core = common::core(&out);
    let t0 = Instant::now();
    let before_calls = live();
    let mut us = 0;
    // heap added by each of INVITE, 180, 200, ACK (outputs included), summed over the calls
    let mut by_msg = [0isize; 4];
    for c in &calls {
        us += 100;
        for (i, (a_to_b, bytes)) in c.setup.iter().enumerate() {
            let b0 = live();
            let (src, dst) = common::ends(*a_to_b);
            core.handle_sip(common::at(us), src, dst, bytes);
            while let Some(o) = core.poll_output() {
                match o {
                    Output::Flow(u) => updates.push(u),
                    Output::Writer { msg: WriterMsg::Start(s), .. } => specs.push(s),
                    _ => {}
                }
            }
            by_msg[i] += live() - b0;
        }
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    let control_and_specs = live() - before_calls;
    assert_eq!(core.active_recordings(), n as usize, "every call is being recorded");
    assert_eq!(specs.len(), n as usize, "one writer Start per call");
    // What the specs hold on the heap: measured by dropping copies of them.
    let spec_bytes = {
        let base = live();
        let copies: Vec<Box<RecordingSpec>> = specs.clone();
        let b = live() - base - (copies.capacity() * std::mem::size_of::<Box<RecordingSpec>>()) as isize;
        drop(copies);
        b
    };
    let control = control_and_specs - spec_bytes;

    // 2. Flow table.
    let mut flows = FlowTable::new();
    let base = live();
    for u in &updates {
        flows.apply(*u);
    }
    let flow_bytes = live() - base;
    assert_eq!(flows.len(), 2 * n as usize, "two flows per call");

    // 3a. Placement buffers alone (what `Recording::open` allocates for them).
    let base = live();
    let placements: Vec<Placement> = specs
        .iter()
        .map(|s| Placement::new(s.channels.clone(), sample_kind(s), PlacementConfig::default()))
        .collect();
    let placement_bytes = live() - base - (placements.capacity() * std::mem::size_of::<Placement>()) as isize;
    drop(placements);

    // 3b. Recordings as the writer holds them (the map the writer keeps them in included).
    let base = live();
    let now = Instant::now();
    let mut writer: HashMap<RecordingId, Recording> = HashMap::new();
    for s in specs.drain(..) {
        let r = Recording::open(s, PlacementConfig::default(), now);
        writer.insert(r.id(), r);
    }
    let writer_heap = live() - base;
    // hashbrown: buckets are the next power of two above capacity * 8 / 7
    let map_capacity = (writer.capacity() * 8 / 7).next_power_of_two();
    let failed = writer.values().filter(|r| r.is_failed()).count();
    let file_buffers = (n as usize - failed) * WRITE_BUFFER;
    // specs moved into the writer: their heap stays, so it is added to the writer side
    let writer_rest = writer_heap - file_buffers as isize - placement_bytes + spec_bytes;

    // 4. Teardown: what the core keeps of ended calls.
    let base = live();
    for (i, c) in calls.iter().enumerate() {
        for (a_to_b, bytes) in &c.teardown {
            let (src, dst) = common::ends(*a_to_b);
            core.handle_sip(common::at(us + 100 * i as u64), src, dst, bytes);
            while core.poll_output().is_some() {}
        }
    }
    let after_bye = live() - base;
    assert_eq!(core.active_recordings(), 0, "every recording stopped");
    // 40 s later (capture time) the ended calls' Call-IDs have expired
    let last = us + 100 * calls.len() as u64;
    core.handle_timeout(common::at(last + 40_000_000));
    while core.poll_output().is_some() {}
    let after_expiry = live() - base;
    // N more calls, one at a time, 10 ms apart: growth here would be a leak, not capacity
    let base2 = live();
    for i in 0..n {
        let c = common::call(n + i);
        let t = last + 40_000_000 + 10_000 * u64::from(i + 1);
        for (a_to_b, bytes) in c.setup.iter().chain(c.teardown.iter()) {
            let (src, dst) = common::ends(*a_to_b);
            core.handle_sip(common::at(t), src, dst, bytes);
            while core.poll_output().is_some() {}
        }
    }
    core.handle_timeout(common::at(last + 40_000_000 + 10_000 * u64::from(n) + 40_000_000));
    while core.poll_output().is_some() {}
    let second_round = live() - base2;
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);

    let per = |b: isize| b as f64 / n as f64;
    println!("memory per recorded call, N = {n} concurrent calls (heap bytes from a counting allocator)");
    println!("  setup of {n} calls through the control core took {setup_secs:.3} s ({:.0} setups/s, allocator counting)", n as f64 / setup_secs);
    println!("{:<58} {:>12} {:>10}", "part", "total bytes", "bytes/call");
    let row = |name: &str, b: isize| println!("{name:<58} {b:>12} {:>10.0}", per(b));
    row("control core (tracker + core + roles, per-call state)", control);
    row("flow table (2 flows per call)", flow_bytes);
    row("writer: placement sample rings (heap, 2 channels)", placement_bytes);
    row("writer: rest (spec, map slots with Recording inline)", writer_rest);
    let total = control + flow_bytes + placement_bytes + writer_rest;
    row("TOTAL outside file buffers", total);
    row("  of which outside the placement sample rings", total - placement_bytes);
    row("file buffers (BufWriter, excluded from the goal)", file_buffers as isize);
    row("  control core: added by the INVITE (tracker, call, CTI name)", by_msg[0]);
    row("  control core: added by the 180", by_msg[1]);
    row("  control core: added by the 200 (roles' session, less spec)", by_msg[2] - spec_bytes);
    row("  control core: added by the ACK", by_msg[3]);
    row("control core heap change after every call's BYE", after_bye);
    row("control core heap change 40 s (capture time) after the BYEs", after_expiry);
    row("control core heap change over N more calls, one at a time, then 40 s", second_round);
    println!("  (spec heap moved from core to writer: {:.0} bytes/call; size_of Recording {} B (Placement {} B of it, inline);",
        per(spec_bytes), std::mem::size_of::<Recording>(), std::mem::size_of::<Placement>());
    println!("   writer map: {} buckets of {} B for {n} recordings = {:.0} B/call; failed opens {failed})",
        map_capacity, std::mem::size_of::<(RecordingId, Recording)>(), (map_capacity * std::mem::size_of::<(RecordingId, Recording)>()) as f64 / n as f64);
    println!("goal <= 8192 bytes/call: {}", if per(total) <= 8192.0 { "met" } else { "missed" });
}
