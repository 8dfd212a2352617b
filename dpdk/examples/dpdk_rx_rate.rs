//! Receive rate of the DPDK port on one core: Mpps from `net_pcap` replaying a capture from
//! memory (`infinite_rx=1`) for a fixed number of seconds.
//!
//! `cargo run -p callrec-dpdk --features dpdk --release --example dpdk_rx_rate -- FILE [SECS]`
//! (root; default examples/demo.pcap for 5 s). Touches every frame's first byte so the bytes
//! are really read, as a classifier would.

use std::time::{Duration, Instant};

use callrec_dpdk::DpdkPort;

fn main() {
    let mut args = std::env::args().skip(1);
    let file = args.next().unwrap_or_else(|| "examples/demo.pcap".into());
    let secs: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .clamp(1, 600);
    let prefix = format!("cr-rate-{}", std::process::id());
    let eal = format!(
        "-l 0 --no-huge -m 1024 --no-pci --file-prefix {prefix} --log-level=error --vdev=net_pcap0,rx_pcap={file},infinite_rx=1"
    );
    let mut port = match DpdkPort::init(&eal, None, 1) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dpdk_rx_rate: {e}");
            std::process::exit(1);
        }
    };
    // Warm-up: net_pcap loads the capture into mbufs on start; let the first bursts through.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        drop(port.rx_burst(0));
    }
    let before = port.stats();
    let (mut frames, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    'outer: loop {
        // Reading the clock once per 1024 bursts keeps it off the measured cost.
        for _ in 0..1024 {
            let b = port.rx_burst(0);
            for f in &b {
                frames += 1;
                bytes += f.data.len() as u64;
                sum += u64::from(f.data.first().copied().unwrap_or(0));
            }
        }
        if Instant::now() >= end {
            break 'outer;
        }
    }
    let dt = start.elapsed().as_secs_f64();
    let after = port.stats();
    println!(
        "dpdk_rx_rate: {frames} frames in {dt:.2} s on one core: {:.2} Mpps, {:.2} Gbit/s (file {file}; imissed {}, rx_nombuf {}; checksum {sum})",
        frames as f64 / dt / 1e6,
        bytes as f64 * 8.0 / dt / 1e9,
        after.imissed - before.imissed,
        after.rx_nombuf - before.rx_nombuf,
    );
    drop(port);
    // rte_eal_cleanup leaves its runtime directory behind.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}
