//! A DPDK ethdev port opened for receive: configure, rx queues, start, bursts, counters.

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::{SystemTime, UNIX_EPOCH};

use callrec_pipeline::port::{Frame, LinkType, BURST};
use callrec_pipeline::Timestamp;

use crate::eal::{release_port, EalUse};
use crate::error::{rte_errno, strerror, DpdkError};
use crate::mbuf::{DpdkBurst, Mbuf};
use crate::queue::DpdkRxQueue;
use crate::sys;

/// Rx descriptors asked per queue (the driver may adjust).
const RX_DESC: u16 = 1024;
/// Tx descriptors per (unused) tx queue.
const TX_DESC: u16 = 64;
/// Per-lcore mempool cache.
const POOL_CACHE: u32 = 256;
/// Fewest mbufs in a pool: 2^n - 1 is the mempool's most efficient size.
const MIN_MBUFS: u32 = 8191;

/// RSS hash input: `RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP` (addresses and UDP ports, so one RTP
/// stream stays on one queue). Function-like macros (`RTE_BIT64`) that bindgen cannot emit.
const RSS_IP_UDP: u64 = (1 << 2) // IPV4
    | (1 << 3) // FRAG_IPV4
    | (1 << 7) // NONFRAG_IPV4_OTHER
    | (1 << 8) // IPV6
    | (1 << 9) // FRAG_IPV6
    | (1 << 13) // NONFRAG_IPV6_OTHER
    | (1 << 15) // IPV6_EX
    | (1 << 5) // NONFRAG_IPV4_UDP
    | (1 << 11) // NONFRAG_IPV6_UDP
    | (1 << 17); // IPV6_UDP_EX

/// Counters of a [`DpdkPort`]: the device's (`rte_eth_stats_get`) and ours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkStats {
    /// Packets the device received.
    pub ipackets: u64,
    /// Packets the device dropped because the rx queues were full (we were too slow).
    pub imissed: u64,
    /// Erroneous packets the device received.
    pub ierrors: u64,
    /// Receive failures for want of an mbuf.
    pub rx_nombuf: u64,
    /// Frames handed out in bursts.
    pub delivered: u64,
    /// Frames spanning chained mbufs, delivered as their first segment only.
    pub chained: u64,
}

/// An ethdev port receiving on `rx_queues` queues; see the crate docs for EAL arguments.
pub struct DpdkPort {
    port: u16,
    rx_queues: u16,
    pool: NonNull<sys::rte_mempool>,
    started: bool,
    delivered: u64,
    chained: u64,
    // Dropped last (field order): the device and pool are released in `Drop::drop` first.
    _eal: EalUse,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("port", &self.port)
            .field("rx_queues", &self.rx_queues)
            .finish()
    }
}

// SAFETY: the pool pointer is only handed to DPDK, whose ethdev and mempool calls may come
// from any thread (a non-EAL thread uses the pool without a per-lcore cache); `rx_burst` takes
// `&mut self`, so each queue is polled by one thread at a time as DPDK requires.
unsafe impl Send for DpdkPort {}

impl DpdkPort {
    /// Initialises the EAL with `eal_args` (once per process; later ports with the same
    /// arguments share it), then configures port `port_id` (default: the first probed port)
    /// with `rx_queues` rx queues (RSS on addresses and UDP ports when more than one), one
    /// mbuf pool, promiscuous mode, and starts it.
    ///
    /// `eal_args` are split on whitespace (no quoting). The calling thread keeps its CPU
    /// affinity (the EAL's pin to its main lcore is undone). Frames are Ethernet, stamped with
    /// the wall clock. Threads other than the EAL's may poll (without a mempool cache).
    pub fn init(
        eal_args: &str,
        port_id: Option<u16>,
        rx_queues: u16,
    ) -> Result<DpdkPort, DpdkError> {
        if rx_queues == 0 {
            return Err(DpdkError::NoQueues);
        }
        let eal = EalUse::acquire(eal_args)?;
        // SAFETY: the EAL is live (eal); no preconditions.
        let available = unsafe { sys::rte_eth_dev_count_avail() };
        let port = match port_id {
            Some(p) => {
                // SAFETY: as above.
                if unsafe { sys::rte_eth_dev_is_valid_port(p) } == 0 {
                    return Err(DpdkError::NoSuchPort { port: p, available });
                }
                p
            }
            None => {
                // SAFETY: as above.
                let p = unsafe { sys::rte_eth_find_next(0) };
                if available == 0 || u32::from(p) >= sys::RTE_MAX_ETHPORTS {
                    return Err(DpdkError::NoPort);
                }
                p
            }
        };
        if !eal.claim(port) {
            return Err(DpdkError::PortInUse { port });
        }
        // Released on the error paths before `me` exists; `DpdkPort::drop` releases it after.
        let claim = PortClaim(port);
        let step = |step: &'static str, r: i32| -> Result<(), DpdkError> {
            if r < 0 {
                Err(DpdkError::Port {
                    port,
                    step,
                    code: -r,
                    reason: strerror(-r),
                })
            } else {
                Ok(())
            }
        };

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: `port` is valid; `info` is a live struct the call fills.
        step("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(port, &mut info)
        })?;
        if rx_queues > info.max_rx_queues {
            return Err(DpdkError::TooManyQueues {
                port,
                asked: rx_queues,
                max: info.max_rx_queues,
            });
        }
        // Enough for every rx ring full, bursts in flight and the per-lcore caches.
        let want = u32::from(rx_queues) * (u32::from(RX_DESC) + BURST as u32) + 2 * POOL_CACHE;
        let mbufs = want.max(MIN_MBUFS + 1).next_power_of_two() - 1;
        // SAFETY: `port` is valid.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port) };
        let name = CString::new(format!("callrec_rx_{port}")).map_err(|_| DpdkError::NoPort)?;
        // SAFETY: `name` is NUL-terminated and copied by the call; sizes are in range.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(
                name.as_ptr(),
                mbufs,
                POOL_CACHE,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        let Some(pool) = NonNull::new(pool) else {
            let code = rte_errno();
            return Err(DpdkError::Mempool {
                port,
                mbufs,
                code,
                reason: strerror(code),
            });
        };
        // From here `Drop` releases the pool (and the device once configured).
        let mut me = DpdkPort {
            port,
            rx_queues,
            pool,
            started: false,
            delivered: 0,
            chained: 0,
            _eal: eal,
        };
        std::mem::forget(claim);
        let mut conf = sys::rte_eth_conf::default();
        if rx_queues > 1 {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = RSS_IP_UDP & info.flow_type_rss_offloads;
        }
        // We never transmit, but net_tap insists on as many tx queues as rx queues; drivers
        // that have fewer (net_pcap without tx_pcap) get what they have.
        let tx_queues = rx_queues.min(info.max_tx_queues);
        // SAFETY: `port` is valid and stopped; `conf` is a live, initialised config.
        step("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(port, rx_queues, tx_queues, &conf)
        })?;
        let mut nb_rxd = RX_DESC;
        let mut nb_txd = TX_DESC;
        // SAFETY: `port` is valid; both pointers are live u16s.
        step("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nb_rxd, &mut nb_txd)
        })?;

        for q in 0..rx_queues {
            // SAFETY: `port` is configured with `rx_queues` queues; a NULL rxconf means the
            // driver's defaults; the pool outlives the queue (released after dev_close).
            step("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    port,
                    q,
                    nb_rxd,
                    socket as u32,
                    std::ptr::null(),
                    me.pool.as_ptr(),
                )
            })?;
        }
        for q in 0..tx_queues {
            // SAFETY: `port` is configured with `tx_queues` tx queues; NULL txconf means the
            // driver's defaults.
            step("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(port, q, nb_txd, socket as u32, std::ptr::null())
            })?;
        }
        // SAFETY: `port` is configured with every queue set up.
        step("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(port) })?;
        me.started = true;
        // SAFETY: `port` is started. Some virtual devices have no promiscuous switch (they
        // see everything anyway), so a refusal is not an error.
        let _ = unsafe { sys::rte_eth_promiscuous_enable(port) };
        Ok(me)
    }

    /// Up to [`BURST`] frames from rx queue `queue`, stamped with the wall clock read once for
    /// the burst. Never waits: an empty burst means nothing was ready. A queue at or past
    /// `rx_queues` gives an empty burst.
    #[inline]
    pub fn rx_burst(&mut self, queue: u16) -> DpdkBurst<'_> {
        if queue >= self.rx_queues {
            return DpdkBurst::new(heapless::Vec::new(), heapless::Vec::new());
        }
        // SAFETY: the port is started and `queue` is one of its rx queues, polled only by
        // this thread (&mut self; `split` hands queues out only under &mut self too).
        unsafe { receive(self.port, queue, &mut self.delivered, &mut self.chained) }
    }

    /// One receive handle per rx queue, each `Send`, to poll the queues from different
    /// threads (e.g. one pinned rx core per queue with RSS spreading flows); the port stays
    /// borrowed (so open) while they live.
    pub fn split(&mut self) -> Vec<DpdkRxQueue<'_>> {
        (0..self.rx_queues)
            .map(|q| DpdkRxQueue::new(self.port, q))
            .collect()
    }

    /// Counters: the device's and ours (frames from `rx_burst`, not from split queues). The
    /// device's read as zero if the driver refuses.
    pub fn stats(&self) -> DpdkStats {
        device_stats(self.port, self.delivered, self.chained)
    }

    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }

    /// How many rx queues (valid `queue` arguments are `0..rx_queues`).
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        // SAFETY: we own the port; no burst is alive (bursts borrow &mut self). Stop, then
        // close releases the rx rings and the mbufs in them, after which the pool is unused.
        unsafe {
            if self.started {
                sys::rte_eth_dev_stop(self.port);
            }
            sys::rte_eth_dev_close(self.port);
            sys::rte_mempool_free(self.pool.as_ptr());
        }
        release_port(self.port);
        // `_eal` drops after this and cleans the EAL up if this was its last port.
    }
}

/// A port claimed in the EAL's table, not yet owned by a `DpdkPort`.
struct PortClaim(u16);

impl Drop for PortClaim {
    fn drop(&mut self) {
        release_port(self.0);
    }
}

/// Receives up to [`BURST`] frames from `queue` of `port` into RAII mbufs, stamped with the
/// wall clock read once for the burst, and counts them.
///
/// # Safety
/// `port` is started, `queue` is one of its set-up rx queues, no other thread polls that
/// queue meanwhile, and the port (with its mempool) outlives the burst (`'a`).
#[inline]
pub(crate) unsafe fn receive<'a>(
    port: u16,
    queue: u16,
    delivered: &mut u64,
    chained: &mut u64,
) -> DpdkBurst<'a> {
    let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    // SAFETY: the caller's contract; `raw` has room for BURST pointers.
    let n = unsafe { sys::callrec_rte_eth_rx_burst(port, queue, raw.as_mut_ptr(), BURST as u16) };
    let n = usize::from(n).min(BURST);
    let mut mbufs = heapless::Vec::new();
    let mut frames = heapless::Vec::new();
    if n == 0 {
        return DpdkBurst::new(mbufs, frames);
    }
    let ts = now();
    for &p in &raw[..n] {
        let Some(p) = NonNull::new(p) else { continue };
        // SAFETY: the driver handed us this mbuf; from now on only the Mbuf frees it, and the
        // pool outlives it (the caller's contract).
        let m = unsafe { Mbuf::from_raw(p) };
        if m.is_chained() {
            *chained += 1;
        }
        let data = m.data();
        // SAFETY: the bytes live in the mbuf, which the burst keeps until it is dropped; the
        // burst hands frames out only re-borrowed for its own lifetime.
        let data: &'a [u8] = unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) };
        // Cannot fail: at most BURST of each.
        let _ = frames.push(Frame {
            ts,
            link: LinkType::Ethernet,
            data,
        });
        let _ = mbufs.push(m);
    }
    *delivered += frames.len() as u64;
    DpdkBurst::new(mbufs, frames)
}

/// The device's counters plus the given own ones.
pub(crate) fn device_stats(port: u16, delivered: u64, chained: u64) -> DpdkStats {
    let mut s = sys::rte_eth_stats::default();
    // SAFETY: the caller holds the open port; `s` is a live struct the call fills.
    let ok = unsafe { sys::rte_eth_stats_get(port, &mut s) } == 0;
    let mut out = DpdkStats {
        delivered,
        chained,
        ..DpdkStats::default()
    };
    if ok {
        out.ipackets = s.ipackets;
        out.imissed = s.imissed;
        out.ierrors = s.ierrors;
        out.rx_nombuf = s.rx_nombuf;
    }
    out
}

fn now() -> Timestamp {
    // Before 1970 only on a broken clock: 0 then, rather than a panic.
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos().min(u64::MAX as u128) as u64)
}
