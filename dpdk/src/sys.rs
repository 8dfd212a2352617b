//! The raw DPDK binding bindgen generates at build time (see build.rs and csrc/shim.h).
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    clippy::all,
    unsafe_op_in_unsafe_fn,
    improper_ctypes
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
