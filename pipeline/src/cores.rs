//! Cores: pinning threads to cores, and the per-core pieces of the threaded dataplane: the
//! rx core ([`rx::RxCore`]: parse, classify, RTP to the writers' rings), the rings between rx
//! cores and the control core ([`link`]), and the writer loop that drains one ring per
//! producer ([`lanes`]).
//!
//! Topology with R rx threads, one control thread and W writers: R x W RTP rings (rx -> writer),
//! R SIP rings (rx -> control), R update rings (control -> rx, each rx owns its flow table
//! copy), W command rings (control -> writer). Every ring is an SPSC `rtrb` ring: no lock and
//! no shared map on the hot path; each thread owns its counters.

pub mod lanes;
pub mod link;
pub mod rx;

/// Pins the calling thread to core `id`; false (and the thread runs unpinned) when the OS
/// refuses, e.g. the core does not exist or is outside the process's allowed set.
pub fn pin_current(id: usize) -> bool {
    // core_affinity indexes a fixed-size CPU set with `id` and panics (inside a non-unwinding
    // libc call: an abort) past its end; only ids the OS listed are passed on.
    available().contains(&id) && core_affinity::set_for_current(core_affinity::CoreId { id })
}

/// Cores this process may run on, by id.
pub fn available() -> Vec<usize> {
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_to_an_allowed_core_and_refuses_a_missing_one() {
        let cores = super::available();
        assert!(!cores.is_empty());
        let t = std::thread::spawn(move || (super::pin_current(cores[0]), super::pin_current(100_000)));
        assert_eq!(t.join().unwrap(), (true, false));
    }
}
