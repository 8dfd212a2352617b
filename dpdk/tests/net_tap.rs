//! DPDK net_tap port: UDP datagrams mirrored by tc into a TAP device inside a network
//! namespace all reach the port, each once and intact.
//!
//! The test thread enters a namespace it creates (veth pair va/vb, static neighbour), starts
//! the EAL there so net_tap creates its TAP in it, mirrors va's egress into the TAP with tc's
//! u32 classifier (this kernel has no matchall/flower), and sends N datagrams out of va to vb.
//! One test per binary: the EAL starts once per process. Needs root (skips without).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use callrec_dpdk::DpdkPort;
use callrec_pipeline::port::LinkType;

mod common;
use common::{file_prefix, is_root, RuntimeDir};

const N: usize = 300;
const DST_PORT: u16 = 40_000;

/// Deletes the namespace (and with it the veths and the TAP) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(ns: &str, cmd: &str) {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let st = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(&args)
        .status()
        .expect("spawn ip netns exec");
    assert!(st.success(), "in {ns}: {cmd}");
}

/// The payload of a UDP/IPv4 datagram to 198.51.100.2:DST_PORT in an Ethernet frame.
fn our_payload(f: &[u8]) -> Option<&[u8]> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ip[9] != 17 || ip[16..20] != [198, 51, 100, 2] || ip.len() < ihl + 8 {
        return None;
    }
    let udp = &ip[ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != DST_PORT {
        return None;
    }
    Some(&udp[8..])
}

#[test]
fn net_tap_receives_every_mirrored_datagram() {
    if !is_root() {
        eprintln!("SKIP net_tap: needs root");
        return;
    }
    let pid = std::process::id();
    let ns = Netns(format!("crdpdk{pid}"));
    let tap = format!("crtap{}", pid % 100_000);
    let st = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(st.success(), "ip netns add");
    run(&ns.0, "ip link set lo up");
    run(
        &ns.0,
        "ip link add va address 02:00:00:00:00:01 type veth peer name vb address 02:00:00:00:00:02",
    );
    run(&ns.0, "ip addr add 198.51.100.1/24 dev va");
    run(&ns.0, "ip link set va up");
    run(&ns.0, "ip link set vb up");
    // vb has no address (else 198.51.100.2 would be local and the datagrams would go over lo);
    // a permanent neighbour entry sends them out of va without an ARP exchange.
    run(
        &ns.0,
        "ip neigh replace 198.51.100.2 lladdr 02:00:00:00:00:02 dev va nud permanent",
    );

    // Enter the namespace on this thread: the EAL (probing net_tap) and the sockets below
    // then live in it; threads the EAL spawns inherit it.
    let nsfile = std::fs::File::open(format!("/var/run/netns/{}", ns.0)).expect("open netns");
    // SAFETY: a valid namespace fd; affects only this thread.
    let r = unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());

    let prefix = file_prefix("tap");
    let _rundir = RuntimeDir(prefix.clone());
    let eal = format!(
        "-l 0 --no-huge -m 1024 --no-pci --file-prefix {prefix} --vdev=net_tap0,iface={tap}"
    );
    let mut port = DpdkPort::init(&eal, None, 1).expect("DPDK init on net_tap");

    run(&ns.0, "tc qdisc add dev va clsact");
    run(
        &ns.0,
        &format!("tc filter add dev va egress protocol all u32 match u32 0 0 action mirred egress mirror dev {tap}"),
    );

    let tx = UdpSocket::bind(("198.51.100.1", 0)).expect("bind va address");
    // Drain what the TAP saw before the datagrams (IPv6 router solicitations and the like).
    for _ in 0..1000 {
        drop(port.rx_burst(0));
    }

    let mut seen = vec![0u32; N];
    let mut other = 0u64;
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(15);
    // Bounded: sends in steps of 10 while polling, stops once all are seen or at the deadline.
    while Instant::now() < deadline {
        if sent < N {
            for i in sent..(sent + 10).min(N) {
                let msg = format!("callrec-dpdk-test {i:05} {}", "x".repeat(100));
                tx.send_to(msg.as_bytes(), ("198.51.100.2", DST_PORT))
                    .expect("send");
            }
            sent = (sent + 10).min(N);
        }
        let b = port.rx_burst(0);
        for f in &b {
            assert_eq!(f.link, LinkType::Ethernet);
            match our_payload(f.data) {
                Some(p) => {
                    let text = std::str::from_utf8(p).expect("payload is text");
                    let i: usize = text[18..23].parse().expect("sequence number");
                    assert_eq!(
                        text,
                        format!("callrec-dpdk-test {i:05} {}", "x".repeat(100))
                    );
                    seen[i] += 1;
                }
                None => other += 1,
            }
        }
        drop(b);
        if sent == N && seen.iter().all(|&c| c >= 1) {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let missing: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    assert!(
        missing.is_empty(),
        "{} of {N} datagrams not received: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(seen.iter().all(|&c| c == 1), "a datagram arrived twice");
    // The mirror copies, it does not steal: vb received them as well.
    // (Through `ip netns exec`, which mounts the namespace's own /sys.)
    let vb_rx = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "cat",
            "/sys/class/net/vb/statistics/rx_packets",
        ])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        });
    assert!(
        vb_rx.is_some_and(|n| n >= N as u64),
        "vb rx_packets {vb_rx:?}"
    );

    let s = port.stats();
    assert!(s.delivered >= N as u64, "{s:?}");
    assert_eq!(s.delivered, s.ipackets, "{s:?} (other frames: {other})");
    drop(port);
}
