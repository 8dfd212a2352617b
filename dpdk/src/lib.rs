//! callrec's DPDK port: receives Ethernet frames through DPDK 22.11 (Debian's `libdpdk-dev`).
//!
//! Built only with the `dpdk` feature; without it this crate is empty and needs no DPDK on the
//! machine. The binding is our own, shaped like capsule's (EAL, port, mempool, RAII mbufs in
//! bursts): capsule 0.1.5 targets DPDK 19.11 and does not build against 22.11 (no pkg-config,
//! KNI removed, `ETH_RSS_*` renamed `RTE_ETH_*`, most of its hard-coded library names gone).
//! build.rs runs bindgen over the installed headers and compiles a small C shim
//! (csrc/shim.c) for DPDK's static inline fast-path functions, which have no symbol to link.
//!
//! Without hugepages or a NIC (CI, laptops): `--no-huge -m 1024 --no-pci --file-prefix NAME`
//! plus `--vdev=net_tap0,iface=NAME` (a TAP device) or `--vdev=net_pcap0,rx_pcap=FILE`
//! (`,infinite_rx=1` replays the capture from memory at line rate).
#![deny(missing_docs)]

#[cfg(feature = "dpdk")]
mod eal;
#[cfg(feature = "dpdk")]
mod error;
#[cfg(feature = "dpdk")]
mod mbuf;
#[cfg(feature = "dpdk")]
mod port;
#[cfg(feature = "dpdk")]
mod queue;
#[cfg(feature = "dpdk")]
mod sys;

#[cfg(feature = "dpdk")]
pub use error::DpdkError;
#[cfg(feature = "dpdk")]
pub use mbuf::{DpdkBurst, Mbuf};
#[cfg(feature = "dpdk")]
pub use port::{DpdkPort, DpdkStats};
#[cfg(feature = "dpdk")]
pub use queue::DpdkRxQueue;
