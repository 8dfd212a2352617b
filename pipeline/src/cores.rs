//! Pinning threads to cores: the rx, writer and control threads each own a core, so nothing
//! on the hot path is shared or migrated.

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
