//! The receive path allocates nothing: 20,000 bursts from net_pcap `infinite_rx` (frames
//! received, bytes read, mbufs freed) under a counting global allocator. One test per binary:
//! the EAL starts once per process. Needs root (skips without).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use callrec_dpdk::DpdkPort;

mod common;
use common::{file_prefix, is_root, RuntimeDir};

thread_local! {
    /// Allocations made by this thread (the EAL's own threads are not counted).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread-local
// Cell, which allocates nothing itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn rx_burst_allocates_nothing() {
    if !is_root() {
        eprintln!("SKIP no_alloc: needs root");
        return;
    }
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.pcap");
    let file = file.canonicalize().expect("demo.pcap");
    let prefix = file_prefix("alloc");
    let _rundir = RuntimeDir(prefix.clone());
    let eal = format!(
        "-l 0 --no-huge -m 1024 --no-pci --log-level=error --file-prefix {prefix} --vdev=net_pcap0,rx_pcap={},infinite_rx=1",
        file.display()
    );
    let mut port = DpdkPort::init(&eal, None, 1).expect("DPDK init");
    let mut q = port.split().pop().expect("one queue");
    for _ in 0..100 {
        drop(q.rx_burst());
    }
    let (mut frames, mut sum) = (0u64, 0u64);
    let before = allocs();
    for _ in 0..20_000 {
        let b = q.rx_burst();
        for f in &b {
            frames += 1;
            sum += u64::from(f.data.last().copied().unwrap_or(0));
        }
    }
    let after = allocs();
    assert!(frames > 100_000, "{frames} frames");
    assert_eq!(
        after - before,
        0,
        "allocations over {frames} frames (checksum {sum})"
    );
    // The counter does count: this allocates.
    let v = vec![0u8; 16];
    assert!(allocs() > after, "{v:?}");
    drop(port);
}
