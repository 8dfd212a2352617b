//! What the DPDK tests share: the root check and the EAL runtime directory's removal.
#![allow(dead_code)]

/// True when running as root (DPDK vdevs and network namespaces need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The `--file-prefix` of this test process: unique, so DPDK tests can run side by side.
pub fn file_prefix(test: &str) -> String {
    format!("cr-{test}-{}", std::process::id())
}

/// Removes the EAL's runtime directory, which `rte_eal_cleanup` leaves behind.
pub struct RuntimeDir(pub String);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.0));
    }
}
