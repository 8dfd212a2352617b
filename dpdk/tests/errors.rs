//! DPDK failures give one clear sentence, not a panic; the EAL is shared and cleaned up once.
//!
//! The EAL starts once per process and cannot restart after cleanup, so each scenario runs in
//! a child process: the `errors` test re-runs this binary's ignored `scenario` test with
//! `CALLREC_DPDK_SCENARIO` set and checks the line it prints. Needs root (skips without).

use std::path::PathBuf;
use std::process::Command;

use callrec_dpdk::{DpdkError, DpdkPort};

mod common;
use common::{file_prefix, is_root, RuntimeDir};

const ENV: &str = "CALLREC_DPDK_SCENARIO";

fn demo() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.pcap");
    p.canonicalize().expect("demo.pcap").display().to_string()
}

fn base(prefix: &str) -> String {
    format!("-l 0 --no-huge -m 1024 --no-pci --log-level=error --file-prefix {prefix}")
}

fn show(r: Result<DpdkPort, DpdkError>) -> String {
    match r {
        Ok(p) => format!("OK port {} queues {}", p.port_id(), p.rx_queues()),
        Err(e) => format!("ERR {e}"),
    }
}

/// One scenario; prints `RESULT <line>` per step for the parent to check.
#[test]
#[ignore = "run by `errors` in a child process"]
fn scenario() {
    let Ok(which) = std::env::var(ENV) else {
        return;
    };
    let prefix = file_prefix(&which);
    let _rundir = RuntimeDir(prefix.clone());
    let eal = base(&prefix);
    let pcap = format!("{eal} --vdev=net_pcap0,rx_pcap={}", demo());
    let out = |s: String| println!("RESULT {s}");
    match which.as_str() {
        "no_queues" => out(show(DpdkPort::init(&pcap, None, 0))),
        "bad_args" => {
            out(show(DpdkPort::init("--no-such-option", None, 1)));
            // DPDK allows another init after an argument error.
            out(show(DpdkPort::init(&pcap, None, 1)));
        }
        "no_port" => out(show(DpdkPort::init(&eal, None, 1))),
        "no_such_port" => out(show(DpdkPort::init(&pcap, Some(9), 1))),
        "too_many_queues" => out(show(DpdkPort::init(&pcap, None, 4))),
        "in_use" => {
            let a = DpdkPort::init(&pcap, None, 1);
            out(show(DpdkPort::init(&pcap, Some(0), 1)));
            drop(a);
        }
        "shared_then_cleaned" => {
            let two = format!("{pcap} --vdev=net_pcap1,rx_pcap={}", demo());
            let a = DpdkPort::init(&two, Some(0), 1);
            let b = DpdkPort::init(&two, Some(1), 1);
            out(show(DpdkPort::init(&pcap, Some(1), 1)));
            out(show(a));
            out(show(b));
            // Both dropped above: the EAL is cleaned up and cannot start again.
            out(show(DpdkPort::init(&two, Some(0), 1)));
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn run(which: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary path");
    let o = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, which)
        .output()
        .expect("spawn scenario");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{which}: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
        .lines()
        // The harness may print "test scenario ... " on the same line first.
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .collect()
}

#[test]
fn errors() {
    if !is_root() {
        eprintln!("SKIP errors: needs root");
        return;
    }
    assert_eq!(
        run("no_queues"),
        ["ERR a DPDK port needs at least one rx queue: check the rx core count"]
    );

    let r = run("bad_args");
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].starts_with("ERR EAL init failed ("), "{r:?}");
    assert!(
        r[0].ends_with(
            "): check --eal; without hugepages use --no-huge -m 1024 --file-prefix NAME"
        ),
        "{r:?}"
    );
    assert_eq!(r[1], "OK port 0 queues 1");

    assert_eq!(
        run("no_port"),
        ["ERR no DPDK port: add --vdev=net_tap0,iface=NAME or --vdev=net_pcap0,rx_pcap=FILE (or bind a NIC to vfio-pci and drop --no-pci)"]
    );
    assert_eq!(
        run("no_such_port"),
        ["ERR no DPDK port 9: 1 port(s) probed; check the --vdev / -a options in --eal"]
    );
    assert_eq!(
        run("too_many_queues"),
        ["ERR DPDK port 0 has at most 1 rx queue(s), 4 asked: lower the rx core count (net_pcap needs one rx_pcap= per queue)"]
    );

    assert_eq!(
        run("in_use"),
        ["ERR DPDK port 0 is already open in this process: open each port once"]
    );

    let r = run("shared_then_cleaned");
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(
        r[0].starts_with("ERR EAL already initialised in this process with other arguments ("),
        "{r:?}"
    );
    assert_eq!(r[1], "OK port 0 queues 1");
    assert_eq!(r[2], "OK port 1 queues 1");
    assert_eq!(
        r[3],
        "ERR EAL was already cleaned up in this process and DPDK cannot initialise it twice: open DPDK ports in a new process"
    );
}
