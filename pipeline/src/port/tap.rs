//! TAP port: captures the Ethernet frames the kernel transmits into a TAP device, in bursts.
//!
//! [`TapPort::open`] creates the TAP device if it does not exist (it then lives as long as the
//! port: a non-persistent TAP disappears when its descriptor closes) or attaches to an existing
//! persistent one (left in place on drop), and sets it up. Whatever the kernel sends into the
//! device is read: traffic routed to it, or traffic mirrored into it by tc, e.g.
//! `tc qdisc add dev X clsact; tc filter add dev X ingress protocol all u32 match u32 0 0 action
//! mirred egress mirror dev TAP` (and the same with `egress`).
//!
//! Frames are read with `read()` into a buffer of [`BURST`] slots allocated once, so a burst
//! allocates nothing; each frame is stamped with CLOCK_REALTIME when read (a TAP has no capture
//! timestamp of its own). Frames longer than a slot (64 KiB) are truncated and counted.
//!
//! Why by hand over libc: smoltcp's `phy::TunTapInterface` (a kept crate) allocates a buffer per
//! frame and reads one frame per call; here a burst reuses the port's slots.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::pcap::Burst;
use super::{Frame, LinkType, BURST};
use crate::Timestamp;

/// Bytes per receive slot: any Ethernet frame the stack hands a TAP without offloads.
const SLOT: usize = 64 * 1024;

/// Why a TAP port cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No CAP_NET_ADMIN (creating or attaching a TAP, setting it up).
    #[error("cannot open TAP {name}: permission denied; run as root or grant CAP_NET_ADMIN")]
    Permission {
        /// The TAP name.
        name: String,
    },
    /// The name cannot be an interface name.
    #[error("cannot open TAP {name:?}: an interface name is 1 to 15 bytes without NUL")]
    BadName {
        /// The TAP name.
        name: String,
    },
    /// The tun driver is not there.
    #[error(
        "cannot open TAP {name}: /dev/net/tun is missing; load the tun module (`modprobe tun`)"
    )]
    NoTunDriver {
        /// The TAP name.
        name: String,
    },
    /// An interface of that name exists and is not a TAP.
    #[error("cannot open TAP {name}: an interface of that name exists and is not a TAP device; pick another name or delete it (`ip link del {name}`)")]
    NotTap {
        /// The TAP name.
        name: String,
    },
    /// The TAP is already attached to another process.
    #[error("cannot open TAP {name}: it is already attached to another process")]
    Busy {
        /// The TAP name.
        name: String,
    },
    /// Any other system call failure.
    #[error("cannot open TAP {name}: {step} failed: {source}")]
    Os {
        /// The TAP name.
        name: String,
        /// Which step failed.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Counters of a [`TapPort`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames delivered.
    pub packets: u64,
    /// Frames longer than a slot, delivered truncated.
    pub truncated: u64,
    /// Failed reads other than "nothing to read".
    pub read_errors: u64,
}

/// A TAP device opened for capture; see the module docs.
pub struct TapPort {
    name: String,
    fd: OwnedFd,
    created: bool,
    slots: Box<[u8]>,
    stats: TapStats,
}

impl std::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPort")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish()
    }
}

fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr
}

impl TapPort {
    /// Creates or attaches the TAP device `name` (in the caller's network namespace), sets it
    /// up and starts capture.
    pub fn open(name: &str) -> Result<TapPort, TapError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(TapError::BadName { name: name.into() });
        }
        let cname = CString::new(name).map_err(|_| TapError::BadName { name: name.into() })?;
        let os = |step| {
            let source = io::Error::last_os_error();
            match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => TapError::Permission { name: name.into() },
                _ => TapError::Os {
                    name: name.into(),
                    step,
                    source,
                },
            }
        };
        // SAFETY: `cname` is a valid NUL-terminated string.
        let existed = unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0;

        // SAFETY: a plain open of a constant path; the fd is owned right below.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => {
                    TapError::NoTunDriver { name: name.into() }
                }
                _ => os("open /dev/net/tun"),
            });
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut ifr = ifreq_named(name);
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: `ifr` is a live ifreq with a NUL-terminated name, as TUNSETIFF expects.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } != 0 {
            return Err(match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) if existed => TapError::NotTap { name: name.into() },
                Some(libc::EBUSY) => TapError::Busy { name: name.into() },
                _ => os("TUNSETIFF"),
            });
        }
        set_up(name).map_err(|(step, source)| match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => TapError::Permission { name: name.into() },
            _ => TapError::Os {
                name: name.into(),
                step,
                source,
            },
        })?;

        Ok(TapPort {
            name: name.into(),
            fd,
            created: !existed,
            slots: vec![0u8; BURST * SLOT].into_boxed_slice(),
            stats: TapStats::default(),
        })
    }

    /// Up to [`BURST`] frames, waiting at most `timeout` when none is ready. An empty burst
    /// only means nothing arrived in time.
    pub fn rx_burst(&mut self, timeout: Duration) -> Burst<'_> {
        let mut got = [(0usize, Timestamp(0)); BURST];
        let mut n = self.read_some(&mut got);
        if n == 0 && self.wait(timeout) {
            n = self.read_some(&mut got);
        }
        let mut frames = heapless::Vec::new();
        for (slot, &(len, ts)) in self.slots.chunks_exact(SLOT).zip(&got[..n]) {
            // Cannot fail: n <= BURST.
            let _ = frames.push(Frame {
                ts,
                link: LinkType::Ethernet,
                data: &slot[..len],
            });
        }
        Burst { frames }
    }

    /// Reads ready frames into the slots; returns how many, with their lengths and times.
    fn read_some(&mut self, got: &mut [(usize, Timestamp); BURST]) -> usize {
        let mut n = 0;
        // Bounded: at most one read per slot plus a few interrupted ones.
        for _ in 0..BURST + 4 {
            if n == BURST {
                break;
            }
            let slot = &mut self.slots[n * SLOT..(n + 1) * SLOT];
            // SAFETY: reads at most `SLOT` bytes into the live, exclusively borrowed slot.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), slot.as_mut_ptr().cast(), SLOT) };
            if r > 0 {
                let r = r as usize;
                if r > SLOT {
                    // The driver reports the frame's length even when the buffer was shorter.
                    self.stats.truncated += 1;
                }
                got[n] = (r.min(SLOT), now());
                n += 1;
                continue;
            }
            if r < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {}
                    _ => self.stats.read_errors += 1,
                }
            }
            break;
        }
        self.stats.packets += n as u64;
        n
    }

    /// Waits until readable; true if it is worth reading again.
    fn wait(&self, timeout: Duration) -> bool {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Counters.
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if this port created the device (it disappears when the port is dropped).
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Sets IFF_UP on `name`; the error names the failed step.
fn set_up(name: &str) -> Result<(), (&'static str, io::Error)> {
    let fail = |step| Err((step, io::Error::last_os_error()));
    // SAFETY: plain socket creation; owned right below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return fail("socket for SIOCSIFFLAGS");
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq_named(name);
    // SAFETY: `ifr` is a live ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } != 0 {
        return fail("SIOCGIFFLAGS");
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; the kernel reads the flags member.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } != 0 {
        return fail("SIOCSIFFLAGS (set the device up)");
    }
    Ok(())
}

fn now() -> Timestamp {
    // Before 1970 only on a broken clock: 0 then, rather than a panic.
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        for name in ["", "a-name-far-too-long", "nul\0inside"] {
            let e = TapPort::open(name).unwrap_err();
            assert!(matches!(e, TapError::BadName { .. }), "{name:?}: {e:?}");
        }
    }

    #[test]
    fn not_a_tap_message_says_what_to_do() {
        let e = TapError::NotTap {
            name: "veth0".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot open TAP veth0: an interface of that name exists and is not a TAP device; pick another name or delete it (`ip link del veth0`)"
        );
    }
}
