//! Builds the DPDK binding only when the `dpdk` feature is on; otherwise does nothing, so the
//! workspace builds on machines without libdpdk-dev.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    /// The raw `pkg-config --cflags libdpdk` words: they hold `-include rte_config.h` and
    /// `-march=corei7`, which the pkg-config crate's include-path list would lose, and without
    /// which the headers do not compile (or compile to a different ABI).
    fn raw_cflags() -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run pkg-config ({e})")));
        if !out.status.success() {
            fail(&String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn fail(why: &str) -> ! {
        panic!(
            "callrec-dpdk (feature `dpdk`): libdpdk not found through pkg-config: {why}; \
             install libdpdk-dev, libclang-dev and pkg-config (scripts/install.sh does)"
        )
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=csrc/shim.c");
        println!("cargo:rerun-if-changed=csrc/shim.h");
        // Emits the link flags (shared libs: the PMDs load from DPDK's plugin directory).
        if let Err(e) = pkg_config::Config::new().probe("libdpdk") {
            fail(&e.to_string());
        }
        let cflags = raw_cflags();

        let mut cc = cc::Build::new();
        cc.file("csrc/shim.c").include("csrc").opt_level(3);
        for f in &cflags {
            cc.flag(f);
        }
        cc.compile("callrec_dpdk_shim");

        let bindings = bindgen::Builder::default()
            .header("csrc/shim.h")
            .clang_args(&cflags)
            .allowlist_function("rte_.*")
            .allowlist_type("rte_.*")
            .allowlist_var("rte_.*|RTE_.*")
            .allowlist_function("callrec_.*")
            // Packed structs holding aligned members, which Rust cannot lay out.
            .opaque_type("rte_arp_ipv4")
            .opaque_type("rte_arp_hdr")
            .opaque_type("rte_l2tpv2_combined_msg_hdr")
            .opaque_type("rte_gtp_psc_generic_hdr")
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .unwrap_or_else(|e| fail(&format!("bindgen over the DPDK headers failed ({e})")));
        let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
        bindings
            .write_to_file(out.join("bindings.rs"))
            .unwrap_or_else(|e| fail(&format!("cannot write bindings.rs ({e})")));
    }
}
