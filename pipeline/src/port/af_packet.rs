//! AF_PACKET port: a TPACKET_V3 memory-mapped receive ring on one interface, in bursts.
//!
//! The kernel fills fixed-size blocks of the ring with packets and hands each block to user space
//! when it is full or when the block timeout (10 ms) expires, so a quiet link still delivers.
//! [`AfPacketPort::rx_burst`] walks the packets of ready blocks and lends them out as frames
//! borrowed from the ring: no copy, no allocation. A block goes back to the kernel only at the
//! next `rx_burst` call after all its frames were delivered, which the borrow checker enforces
//! (a [`Burst`] borrows the port mutably).
//!
//! Several ports on the same interface with the same `fanout_group` share its traffic by flow
//! hash (PACKET_FANOUT_HASH, fragments reassembled first so a flow's fragments stay together):
//! one port per rx thread.
//!
//! Link types: Ethernet and loopback devices deliver Ethernet frames; on other devices (TUN,
//! WireGuard, PPP, ...) the frame starts at the network header and is delivered as raw IP. On
//! loopback each packet would show up twice (sent and received), so sent copies are ignored.
//! VLAN tags stripped by the NIC are not put back.
//!
//! Why by hand over libc: the kept crates' nearest tool, smoltcp's `phy::RawSocket`, reads one
//! frame per system call into a freshly allocated buffer, with no ring and no fanout; the
//! TPACKET_V3 ring protocol is a few header fields and one status word per block.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

mod block;

use super::pcap::Burst;
use super::{Frame, LinkType};
use block::{bd, packet_at, ph, start_walk, Walk};

/// How long the kernel keeps a partly filled block before handing it over.
const BLOCK_TIMEOUT_MS: u32 = 10;

/// Ring geometry and membership of an [`AfPacketPort`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Join this fanout group (flow-hash load sharing among ports with the same id). Ids are
    /// shared by every process in the network namespace: pick one per callrec instance (e.g.
    /// derived from the process id) so two instances on one interface do not split traffic.
    pub fanout_group: Option<u16>,
    /// Bytes per ring block: a multiple of the page size.
    pub block_size: u32,
    /// Blocks in the ring (ring memory = `block_size * block_count`).
    pub block_count: u32,
    /// Nominal frame slot size (multiple of 16); TPACKET_V3 packs packets tighter, the kernel
    /// only checks the geometry with it.
    pub frame_size: u32,
    /// Put the interface in promiscuous mode while the port is open.
    pub promiscuous: bool,
}

impl Default for AfPacketOptions {
    /// 32 blocks of 1 MiB, 2 KiB frames, promiscuous, no fanout.
    fn default() -> Self {
        AfPacketOptions {
            fanout_group: None,
            block_size: 1 << 20,
            block_count: 32,
            frame_size: 2048,
            promiscuous: true,
        }
    }
}

/// Why an AF_PACKET port cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// No CAP_NET_RAW.
    #[error("cannot open {iface}: permission denied; run as root or grant CAP_NET_RAW")]
    Permission {
        /// The interface.
        iface: String,
    },
    /// The interface does not exist (in this network namespace).
    #[error("no such interface {iface}; list interfaces with `ip link` (in the network namespace callrec runs in)")]
    NoSuchInterface {
        /// The interface.
        iface: String,
    },
    /// The options cannot describe a ring.
    #[error("cannot open {iface}: {reason}")]
    Options {
        /// The interface.
        iface: String,
        /// What is wrong, and what would do.
        reason: String,
    },
    /// The kernel refused the ring memory.
    #[error("cannot allocate a {mib} MiB receive ring for {iface}: {source}; use fewer or smaller blocks")]
    Ring {
        /// The interface.
        iface: String,
        /// Ring size asked for.
        mib: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The fanout group could not be joined.
    #[error("cannot join fanout group {group} on {iface}: {source}; another socket may use this group id with other settings, pick another id")]
    Fanout {
        /// The interface.
        iface: String,
        /// The group id.
        group: u16,
        /// The OS error.
        source: io::Error,
    },
    /// Any other system call failure.
    #[error("cannot open {iface}: {step} failed: {source}")]
    Os {
        /// The interface.
        iface: String,
        /// Which step failed.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Counters of an [`AfPacketPort`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames delivered by `rx_burst`.
    pub packets: u64,
    /// Packets the kernel saw for this socket, drops included (PACKET_STATISTICS tp_packets).
    pub kernel_packets: u64,
    /// Packets the kernel dropped because the ring was full (tp_drops).
    pub drops: u64,
    /// Times the ring froze because user space had not released a block (tp_freeze_q_cnt).
    pub freezes: u64,
    /// Packet headers inside a block that did not make sense (rest of that block skipped).
    pub bad_headers: u64,
    /// Socket errors reported by poll (e.g. the interface went down).
    pub socket_errors: u64,
}

/// The mapped ring; unmapped on drop.
struct Ring {
    base: *mut u8,
    len: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, and no borrow of the ring can
        // outlive the port that owns this `Ring` (frames borrow the port).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// An AF_PACKET TPACKET_V3 receive ring on one interface; see the module docs.
pub struct AfPacketPort {
    iface: String,
    ring: Ring,
    fd: OwnedFd,
    block_size: usize,
    block_count: usize,
    link: LinkType,
    /// Deliver from the network header (devices without an Ethernet header).
    from_network: bool,
    /// The block being walked (or waited for).
    cur: usize,
    walk: Option<Walk>,
    /// Fully delivered blocks, starting at `release_from`, to hand back on the next call.
    release_from: usize,
    pending: usize,
    stats: AfPacketStats,
}

// SAFETY: the raw ring pointer is owned by the port (nothing else refers to the mapping), so
// moving the port to another thread moves sole access with it.
unsafe impl Send for AfPacketPort {}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("iface", &self.iface)
            .field("blocks", &self.block_count)
            .field("block_size", &self.block_size)
            .field("link", &self.link)
            .finish()
    }
}

fn sys_err(iface: &str, step: &'static str) -> AfPacketError {
    let source = io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => AfPacketError::Permission {
            iface: iface.into(),
        },
        Some(libc::ENODEV | libc::ENXIO) => AfPacketError::NoSuchInterface {
            iface: iface.into(),
        },
        _ => AfPacketError::Os {
            iface: iface.into(),
            step,
            source,
        },
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of exactly the length passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Checks the ring geometry; the reason says what to change.
pub(crate) fn check_options(o: &AfPacketOptions, page: usize) -> Result<(), String> {
    let (bs, fs) = (o.block_size as usize, o.frame_size as usize);
    if bs == 0 || bs % page != 0 {
        return Err(format!(
            "block size {bs} is not a multiple of the page size {page}"
        ));
    }
    if fs < ph::LEN + 32 || fs % 16 != 0 {
        return Err(format!(
            "frame size {fs} must be a multiple of 16 and at least {}",
            ph::LEN + 32
        ));
    }
    if fs > bs {
        return Err(format!(
            "frame size {fs} is larger than the block size {bs}"
        ));
    }
    if o.block_count == 0 {
        return Err("the ring needs at least one block".into());
    }
    let total = bs as u64 * o.block_count as u64;
    if total > u32::MAX as u64 {
        return Err(format!(
            "a ring of {} MiB is past the kernel's 4 GiB limit; use fewer or smaller blocks",
            total >> 20
        ));
    }
    Ok(())
}

impl AfPacketPort {
    /// Opens a receive ring on `iface` (in the caller's network namespace) and starts capture.
    pub fn open(iface: &str, opts: AfPacketOptions) -> Result<AfPacketPort, AfPacketError> {
        let no_such = || AfPacketError::NoSuchInterface {
            iface: iface.into(),
        };
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        check_options(&opts, page).map_err(|reason| AfPacketError::Options {
            iface: iface.into(),
            reason,
        })?;
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(no_such());
        }
        let cname = CString::new(iface).map_err(|_| no_such())?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(no_such());
        }

        // Protocol 0: nothing is queued before the ring exists; bind() starts reception.
        // SAFETY: plain socket creation; the fd is owned right below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys_err(iface, "socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let hatype = hardware_type(&fd, iface)?;
        let (link, from_network) = match hatype {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => (LinkType::Ethernet, false),
            _ => (LinkType::RawIp, true),
        };
        if hatype == libc::ARPHRD_LOOPBACK {
            let one: libc::c_int = 1;
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one).map_err(
                |source| AfPacketError::Os {
                    iface: iface.into(),
                    step: "PACKET_IGNORE_OUTGOING",
                    source,
                },
            )?;
        }

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version).map_err(|source| {
            AfPacketError::Os {
                iface: iface.into(),
                step: "PACKET_VERSION V3",
                source,
            }
        })?;

        let req = libc::tpacket_req3 {
            tp_block_size: opts.block_size,
            tp_block_nr: opts.block_count,
            tp_frame_size: opts.frame_size,
            // Cannot overflow: the whole ring fits in u32 (checked above), frames are smaller.
            tp_frame_nr: (opts.block_size / opts.frame_size) * opts.block_count,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        let len = opts.block_size as usize * opts.block_count as usize;
        let ring_err = |source| AfPacketError::Ring {
            iface: iface.into(),
            mib: (len as u64) >> 20,
            source,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(ring_err)?;
        // SAFETY: maps the ring the kernel just allocated for this socket; the result is checked
        // and owned by `Ring`, which unmaps it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ring_err(io::Error::last_os_error()));
        }
        let ring = Ring {
            base: base.cast(),
            len,
        };

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` is a live sockaddr_ll and its exact size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(sys_err(iface, "bind"));
        }

        if opts.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as libc::c_int,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(
                |source| AfPacketError::Os {
                    iface: iface.into(),
                    step: "promiscuous mode",
                    source,
                },
            )?;
        }
        if let Some(group) = opts.fanout_group {
            let kind = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
            let arg = (group as libc::c_int) | ((kind as libc::c_int) << 16);
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(|source| {
                AfPacketError::Fanout {
                    iface: iface.into(),
                    group,
                    source,
                }
            })?;
        }

        Ok(AfPacketPort {
            iface: iface.into(),
            ring,
            fd,
            block_size: opts.block_size as usize,
            block_count: opts.block_count as usize,
            link,
            from_network,
            cur: 0,
            walk: None,
            release_from: 0,
            pending: 0,
            stats: AfPacketStats::default(),
        })
    }

    /// Up to [`super::BURST`] frames borrowed from the ring, waiting at most `timeout` when none
    /// is ready. An empty burst only means nothing arrived in time (a live port never ends).
    pub fn rx_burst(&mut self, timeout: Duration) -> Burst<'_> {
        self.release_delivered();
        let mut frames = heapless::Vec::new();
        self.fill(&mut frames);
        if frames.is_empty() && self.wait(timeout) {
            self.fill(&mut frames);
        }
        Burst { frames }
    }

    /// Hands the blocks delivered by the previous burst back to the kernel.
    fn release_delivered(&mut self) {
        for i in 0..self.pending {
            let b = (self.release_from + i) % self.block_count;
            self.block_status(b)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.release_from = self.cur;
        self.pending = 0;
    }

    /// The status word of block `b`, shared with the kernel.
    fn block_status(&self, b: usize) -> &AtomicU32 {
        // SAFETY: `b < block_count`, so the word lies inside the mapping, 4-byte aligned (blocks
        // are page-aligned); the kernel accesses it concurrently, hence only atomically here.
        unsafe { AtomicU32::from_ptr(self.ring.base.add(b * self.block_size + bd::STATUS).cast()) }
    }

    fn fill<'a>(&mut self, frames: &mut heapless::Vec<Frame<'a>, { super::BURST }>) {
        // Bounded: each pass delivers a frame or finishes a block, and at most every block can
        // be finished once before `cur` reaches a block that is not ready.
        for _ in 0..(super::BURST + self.block_count + 1) {
            let walk = match self.walk {
                Some(w) => w,
                None => {
                    if self.pending >= self.block_count
                        || self.block_status(self.cur).load(Ordering::Acquire)
                            & libc::TP_STATUS_USER
                            == 0
                    {
                        return;
                    }
                    // SAFETY: the status says user space owns the block; it is only used here.
                    let w = start_walk(unsafe { self.block(self.cur) });
                    if w.is_none() {
                        self.stats.bad_headers += 1;
                    }
                    w.unwrap_or(Walk { next: 0, left: 0 })
                }
            };
            if walk.left == 0 {
                self.walk = None;
                self.pending += 1;
                self.cur = (self.cur + 1) % self.block_count;
                continue;
            }
            if frames.is_full() {
                self.walk = Some(walk);
                return;
            }
            // SAFETY: the block is user-owned (its walk started after the status said so) and
            // is handed back only by `release_delivered`, at the next `rx_burst`: after every
            // frame of this burst is gone, since the burst borrows the port mutably. The
            // mapping outlives the frames because the port owns it.
            let block: &'a [u8] = unsafe { self.block(self.cur) };
            match packet_at(block, walk.next, self.link, self.from_network) {
                Some((frame, next)) => {
                    // Cannot fail: fullness was checked above.
                    let _ = frames.push(frame);
                    self.stats.packets += 1;
                    let left = walk.left - 1;
                    self.walk = Some(if left > 0 && next < ph::LEN {
                        // A next offset that does not move past this header would loop.
                        self.stats.bad_headers += 1;
                        Walk { next: 0, left: 0 }
                    } else {
                        Walk {
                            next: walk.next.saturating_add(next),
                            left,
                        }
                    });
                }
                None => {
                    self.stats.bad_headers += 1;
                    self.walk = Some(Walk { next: 0, left: 0 });
                }
            }
        }
    }

    /// Block `b` as bytes.
    ///
    /// # Safety
    /// Block `b` must be owned by user space (its status had TP_STATUS_USER), and the slice must
    /// not be used after the block is handed back or the port is dropped.
    unsafe fn block<'a>(&self, b: usize) -> &'a [u8] {
        // SAFETY: `b < block_count`, so the block lies inside the mapping; the kernel does not
        // write a user-owned block (the caller's contract).
        unsafe {
            std::slice::from_raw_parts(self.ring.base.add(b * self.block_size), self.block_size)
        }
    }

    /// Waits for a block; true if it is worth looking again.
    fn wait(&mut self, timeout: Duration) -> bool {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: `pfd` is one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return false;
        }
        if pfd.revents & libc::POLLERR != 0 {
            // Reading SO_ERROR clears it; otherwise every poll would return at once.
            let mut err: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `err`/`len` are live and sized for SO_ERROR.
            unsafe {
                libc::getsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            self.stats.socket_errors += 1;
            if self.stats.socket_errors == 1 {
                tracing::warn!(iface = %self.iface, "{}", io::Error::from_raw_os_error(err));
            }
        }
        true
    }

    /// Counters; reads (and accumulates) the kernel's, which reset on each read: call it
    /// periodically, not per burst.
    pub fn stats(&mut self) -> AfPacketStats {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st`/`len` are live and sized for PACKET_STATISTICS on a V3 socket.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.stats.kernel_packets += st.tp_packets as u64;
            self.stats.drops += st.tp_drops as u64;
            self.stats.freezes += st.tp_freeze_q_cnt as u64;
        }
        self.stats
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Framing of the frames this port delivers.
    pub fn link(&self) -> LinkType {
        self.link
    }
}

/// The device's ARPHRD_ type.
fn hardware_type(fd: &OwnedFd, iface: &str) -> Result<u16, AfPacketError> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `ifr` is a live ifreq with a NUL-terminated name (checked shorter than IFNAMSIZ).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) };
    if rc != 0 {
        return Err(sys_err(iface, "SIOCGIFHWADDR"));
    }
    // SAFETY: SIOCGIFHWADDR fills the hwaddr member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family })
}

#[cfg(test)]
mod tests;
