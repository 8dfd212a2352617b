//! Why a DPDK port cannot be used: one sentence each, what failed and what to check.

use std::ffi::CStr;

/// Why a [`crate::DpdkPort`] cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// The `--eal` string holds a NUL byte.
    #[error("EAL arguments contain a NUL byte: check --eal")]
    BadEalArgs,
    /// `rte_eal_init` failed.
    #[error("EAL init failed ({code}: {reason}): check --eal; without hugepages use --no-huge -m 1024 --file-prefix NAME")]
    EalInit {
        /// `rte_errno`.
        code: i32,
        /// DPDK's text for it.
        reason: String,
    },
    /// The EAL is live in this process with other arguments.
    #[error("EAL already initialised in this process with other arguments ({live:?}): give every DPDK port the same --eal")]
    EalArgsDiffer {
        /// The arguments the live EAL was started with.
        live: String,
    },
    /// The EAL was cleaned up (its last port dropped); DPDK cannot start it again.
    #[error("EAL was already cleaned up in this process and DPDK cannot initialise it twice: open DPDK ports in a new process")]
    EalCleanedUp,
    /// No port was probed.
    #[error("no DPDK port: add --vdev=net_tap0,iface=NAME or --vdev=net_pcap0,rx_pcap=FILE (or bind a NIC to vfio-pci and drop --no-pci)")]
    NoPort,
    /// The asked port id was not probed.
    #[error(
        "no DPDK port {port}: {available} port(s) probed; check the --vdev / -a options in --eal"
    )]
    NoSuchPort {
        /// The asked port id.
        port: u16,
        /// How many ports the EAL probed.
        available: u16,
    },
    /// The port is already open in this process.
    #[error("DPDK port {port} is already open in this process: open each port once")]
    PortInUse {
        /// The port id.
        port: u16,
    },
    /// Zero rx queues asked.
    #[error("a DPDK port needs at least one rx queue: check the rx core count")]
    NoQueues,
    /// More rx queues than the device has.
    #[error("DPDK port {port} has at most {max} rx queue(s), {asked} asked: lower the rx core count (net_pcap needs one rx_pcap= per queue)")]
    TooManyQueues {
        /// The port id.
        port: u16,
        /// Queues asked.
        asked: u16,
        /// The device's maximum.
        max: u16,
    },
    /// The mbuf pool could not be made.
    #[error("cannot create the pool of {mbufs} mbufs for DPDK port {port} ({code}: {reason}): give the EAL more memory (--no-huge -m 1024) or hugepages")]
    Mempool {
        /// The port id.
        port: u16,
        /// Pool size.
        mbufs: u32,
        /// `rte_errno`.
        code: i32,
        /// DPDK's text for it.
        reason: String,
    },
    /// A port set-up call failed.
    #[error("DPDK port {port}: {step} failed ({code}: {reason}): check the driver's messages above and the --vdev options")]
    Port {
        /// The port id.
        port: u16,
        /// Which call failed.
        step: &'static str,
        /// The negative errno DPDK returned.
        code: i32,
        /// DPDK's text for it.
        reason: String,
    },
}

/// DPDK's text for an errno value (its own codes and the libc ones).
pub(crate) fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that stays valid
    // (static or thread-local) at least until the next call on this thread; copied at once.
    unsafe {
        let p = crate::sys::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The current thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int through the shim; no preconditions.
    unsafe { crate::sys::callrec_rte_errno() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_failure_says_what_to_check() {
        let e = DpdkError::EalInit {
            code: 22,
            reason: "Invalid argument".into(),
        };
        assert_eq!(
            e.to_string(),
            "EAL init failed (22: Invalid argument): check --eal; without hugepages use --no-huge -m 1024 --file-prefix NAME"
        );
    }

    #[test]
    fn strerror_knows_dpdk_codes() {
        // EINVAL, and one of DPDK's own codes above the libc range.
        assert_eq!(strerror(22), "Invalid argument");
        assert_eq!(strerror(1001), "Invalid call in secondary process");
    }
}
