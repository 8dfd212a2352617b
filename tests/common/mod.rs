//! Shared support for the end-to-end tests: the recording judge and capture helpers.
#![allow(dead_code)]

pub mod cti;
pub mod flows;
pub mod judge;
pub mod segment;
