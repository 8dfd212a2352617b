//! DPDK net_pcap port: every packet of examples/demo.pcap arrives once, byte for byte, in
//! file order, as the repo's own pcap reader sees it. One test per binary: the EAL starts
//! once per process. Needs root (skips without).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use callrec_dpdk::DpdkPort;
use callrec_pipeline::port::pcap::CaptureFile;
use callrec_pipeline::port::LinkType;

mod common;
use common::{file_prefix, is_root, RuntimeDir};

/// The CPUs this thread may run on.
fn affinity() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; the call fills the live set of the given size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[test]
fn net_pcap_delivers_the_capture_exactly() {
    if !is_root() {
        eprintln!("SKIP net_pcap: needs root");
        return;
    }
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.pcap");
    let file = file.canonicalize().expect("examples/demo.pcap");

    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut cap = CaptureFile::open(&file).expect("open demo.pcap");
    loop {
        let b = cap.rx_burst();
        if b.is_empty() {
            break;
        }
        for f in b.iter() {
            assert_eq!(f.link, LinkType::Ethernet);
            want.push(f.data.to_vec());
        }
    }
    assert!(want.len() > 1000, "demo.pcap has {} packets", want.len());

    let prefix = file_prefix("test");
    let _rundir = RuntimeDir(prefix.clone());
    let eal = format!(
        "-l 0 --no-huge -m 1024 --no-pci --file-prefix {prefix} --vdev=net_pcap0,rx_pcap={f} --vdev=net_pcap1,rx_pcap={f},rx_pcap={f}",
        f = file.display()
    );
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let before = affinity();
    let mut port = DpdkPort::init(&eal, None, 1).expect("DPDK init");
    assert_eq!(affinity(), before, "the EAL's pin to lcore 0 is undone");
    assert_eq!(port.port_id(), 0);

    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut max_burst = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut idle = 0u32;
    // Bounded: stops at the deadline, or after many empty polls once the file is drained.
    while Instant::now() < deadline && got.len() <= want.len() {
        let b = port.rx_burst(0);
        if b.is_empty() {
            idle += 1;
            if got.len() == want.len() && idle > 10_000 {
                break;
            }
            continue;
        }
        idle = 0;
        max_burst = max_burst.max(b.len());
        let ts = b.frames()[0].ts;
        for f in &b {
            assert_eq!(f.link, LinkType::Ethernet);
            assert_eq!(f.ts, ts, "one wall-clock stamp per burst");
            assert!(
                f.ts.0 >= t0,
                "stamped with the wall clock, not the capture's"
            );
            got.push(f.data.to_vec());
        }
        assert_eq!(b.mbufs().len(), b.len());
    }
    assert_eq!(got.len(), want.len(), "packets received");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "packet {i} differs");
    }
    assert!(max_burst <= 32);
    // A queue that does not exist gives nothing rather than touching DPDK.
    assert!(port.rx_burst(7).is_empty());

    let s = port.stats();
    assert_eq!(s.delivered, want.len() as u64);
    assert_eq!(s.ipackets, want.len() as u64);
    assert_eq!(s.chained, 0);
    assert_eq!((s.imissed, s.rx_nombuf), (0, 0));

    // Port 1 (same EAL): two rx queues, each replaying the file, polled from two threads.
    let mut two = DpdkPort::init(&eal, Some(1), 2).expect("second port, two queues");
    let queues = two.split();
    assert_eq!(queues.len(), 2);
    let per_queue: Vec<(u16, Vec<Vec<u8>>, u64)> = std::thread::scope(|sc| {
        let handles: Vec<_> = queues
            .into_iter()
            .map(|mut q| {
                let n = want.len();
                sc.spawn(move || {
                    let mut got = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < deadline && got.len() < n {
                        for f in &q.rx_burst() {
                            got.push(f.data.to_vec());
                        }
                    }
                    (q.queue_id(), got, q.stats().delivered)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rx thread"))
            .collect()
    });
    for (q, got, delivered) in &per_queue {
        assert_eq!(got.len(), want.len(), "queue {q}");
        assert_eq!(*delivered, want.len() as u64, "queue {q}");
        assert!(got == &want, "queue {q} bytes differ");
    }
    assert_eq!(two.stats().ipackets, 2 * want.len() as u64);
    drop(two);
    drop(port);
}
