//! callrec's dataplane: ports deliver bursts of frames, `parse` finds UDP in them, `classify`
//! sends SIP to the control core and RTP of recorded flows to the writer that owns the flow,
//! writers turn RTP into stereo files.
//!
//! Data flows one way: port -> parse -> classify -> (control | writer ring) -> writer -> file.
#![deny(missing_docs)]

pub mod classify;
pub mod cores;
pub mod flow;
pub mod parse;
pub mod port;
pub mod time;
pub mod writer;

pub use time::Timestamp;
