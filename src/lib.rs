//! callrec: the application around the dataplane: CLI, configuration, the sans-IO control
//! core, the replay driver.
#![deny(missing_docs)]

pub mod config;
pub mod control;
pub mod cti;
pub mod dataplane;
pub mod linger;
pub mod replay;
pub mod run;
pub mod stats;
pub mod threaded;
pub mod trace;
