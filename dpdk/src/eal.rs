//! The process's one DPDK EAL: initialised by the first port, cleaned up after the last.
//!
//! DPDK allows `rte_eal_init` once per process and no init after `rte_eal_cleanup`, so the
//! state lives in a process-wide mutex (taken only when ports open and close, never per
//! packet) with a count of the ports using it.

use std::ffi::{c_char, c_int, CString};
use std::sync::Mutex;

use crate::error::{rte_errno, strerror, DpdkError};
use crate::sys;

enum State {
    Never,
    Live {
        args: String,
        users: usize,
        /// Ports open in this process: each may be configured by one `DpdkPort` at a time.
        ports: Vec<u16>,
    },
    CleanedUp,
}

static EAL: Mutex<State> = Mutex::new(State::Never);

/// A counted use of the live EAL; the last one dropped cleans the EAL up.
#[derive(Debug)]
pub(crate) struct EalUse(());

impl EalUse {
    /// Starts the EAL with `args` (split on whitespace; argv[0] is supplied) or joins the live
    /// one if it was started with the same arguments.
    pub(crate) fn acquire(args: &str) -> Result<EalUse, DpdkError> {
        let norm = args.split_whitespace().collect::<Vec<_>>().join(" ");
        // A poisoned lock only means a panic elsewhere while holding it; the state is still
        // one of the three values.
        let mut st = EAL.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *st {
            State::Live {
                args: live, users, ..
            } => {
                if *live != norm {
                    return Err(DpdkError::EalArgsDiffer { live: live.clone() });
                }
                *users += 1;
                return Ok(EalUse(()));
            }
            State::CleanedUp => return Err(DpdkError::EalCleanedUp),
            State::Never => {}
        }
        init(&norm)?;
        *st = State::Live {
            args: norm,
            users: 1,
            ports: Vec::new(),
        };
        Ok(EalUse(()))
    }
}

impl EalUse {
    /// Marks `port` open; false if it already is (or the EAL is not live).
    pub(crate) fn claim(&self, port: u16) -> bool {
        let mut st = EAL.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *st {
            State::Live { ports, .. } if !ports.contains(&port) => {
                ports.push(port);
                true
            }
            _ => false,
        }
    }
}

/// Marks `port` closed (a no-op if it was not open).
pub(crate) fn release_port(port: u16) {
    {
        let mut st = EAL.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Live { ports, .. } = &mut *st {
            ports.retain(|&p| p != port);
        }
    }
}

impl Drop for EalUse {
    fn drop(&mut self) {
        let mut st = EAL.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Live { users, .. } = &mut *st {
            *users -= 1;
            if *users == 0 {
                // SAFETY: the last port using the EAL is gone (each holds an EalUse and
                // releases its device and mempool before dropping it).
                unsafe { sys::rte_eal_cleanup() };
                *st = State::CleanedUp;
            }
        }
    }
}

fn init(args: &str) -> Result<(), DpdkError> {
    let mut owned = vec![CString::new("callrec").map_err(|_| DpdkError::BadEalArgs)?];
    for a in args.split_whitespace() {
        owned.push(CString::new(a).map_err(|_| DpdkError::BadEalArgs)?);
    }
    // The EAL may keep pointers into argv (and getopt permutes the array), so the strings
    // and the array live for the rest of the process: a few bytes, once.
    let owned: &'static mut [CString] = Vec::leak(owned);
    let argv: &'static mut [*mut c_char] = Vec::leak(
        owned
            .iter()
            .map(|s| s.as_ptr() as *mut c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect(),
    );
    let argc = (argv.len() - 1) as c_int;
    // rte_eal_init pins the calling thread to the main lcore, and every thread spawned from it
    // later would inherit that; callrec pins its own threads (--rx-cores, ...), so the
    // caller's affinity is put back afterwards.
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut cpus: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `cpus` is a live cpu_set_t of `size` bytes; 0 means this thread.
    let saved = unsafe { libc::sched_getaffinity(0, size, &mut cpus) } == 0;
    // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked so
    // they outlive the EAL; the EAL lock serialises calls.
    let r = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if saved {
        // SAFETY: as above; restores what sched_getaffinity read. Failure leaves the EAL's pin.
        unsafe { libc::sched_setaffinity(0, size, &cpus) };
    }
    if r < 0 {
        let code = rte_errno();
        return Err(DpdkError::EalInit {
            code,
            reason: strerror(code),
        });
    }
    Ok(())
}
