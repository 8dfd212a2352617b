//! CTI: the T-Library style interface through which desktops, recorders and routing
//! strategies trigger, pause, resume and stop recordings (design section 3).

pub mod protocol;
pub mod ctl;
pub mod line;
pub mod server;
