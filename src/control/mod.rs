//! The control core: one thread, sans-IO. It takes parsed SIP and CTI requests with
//! the capture time, tracks calls, decides what to record, runs the SIP Server, Resource
//! Manager and MCP roles of the MSML recording flow, and returns flow-table updates, writer
//! commands and SIP trace lines. It never reads a clock or touches a socket.

pub mod calls;
pub mod connection;
pub mod core;
pub mod msml;
pub mod on_demand;
pub mod roles;
pub mod sdp;
pub mod sip;
pub mod triggers;
pub mod uri;
