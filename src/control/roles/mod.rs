//! The MSML recording flow's three roles (SIP Server, Resource Manager, MCP) as sans-IO state
//! machines, and [`RecordingRoles`], which wires them through an in-process transport.
//!
//! What travels between the roles is real RFC 3261 text: every message is built as bytes,
//! queued, traced, and parsed again with [`SipMessage::parse`] by the receiving role. One
//! public operation (start, pause, resume, stop, media update) runs its whole exchange to
//! completion before it returns; its effects come out of [`RecordingRoles::poll_output`] in
//! order: trace records, flow-table updates and writer commands interleaved as they happened.
//!
//! Session data the MCP needs for the sidecar rides in the INVITE as headers:
//! `X-Callrec-Call-ID` (one per Call-ID), `X-Callrec-Trigger`, `X-Callrec-Customer-DN`,
//! `X-Callrec-Agent-DN`, `X-Callrec-Connection-ID`, and each CTI extension as `X-Genesys-<key>: <value>` (key bytes outside
//! the RFC 3261 token set are %-escaped; CR, LF and other controls in values become spaces).

mod mcp;
mod resource_manager;
mod sip_server;
mod transport;

#[cfg(test)]
mod tests;

pub use mcp::McpRole;
pub use resource_manager::ResourceManagerRole;
pub use sip_server::SipServerRole;
pub use transport::{rfc3339, TraceRecord};

use crate::control::sdp::{write_audio_media, MediaDescription};
use crate::control::sip::SipMessage;
use crate::control::uri::{ConfId, UriError};
use callrec_pipeline::flow::FlowUpdate;
use callrec_pipeline::writer::{OutputFormat, WriterMsg};
use callrec_pipeline::Timestamp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use transport::InProcessTransport;

/// Header carrying each recorded Call-ID from the SIP Server to the MCP.
pub const HDR_CALL_ID: &str = "X-Callrec-Call-ID";
/// One recorded stream of a re-INVITE: `<label>;peer=<ip:port>[;dn=<dn>]`.
pub const HDR_STREAM: &str = "X-Callrec-Stream";
/// An agent-side party present in the call without a recorded stream of its own (heard
/// through the agent's phone mixing a three-way call, or an agent finishing a transfer).
pub const HDR_PRESENT_DN: &str = "X-Callrec-Present-DN";
/// Header carrying the trigger (`extension`, `trunk`, ...).
pub const HDR_TRIGGER: &str = "X-Callrec-Trigger";
/// Header carrying the customer side's DN.
pub const HDR_CUSTOMER_DN: &str = "X-Callrec-Customer-DN";
/// Header carrying the agent side's DN.
pub const HDR_AGENT_DN: &str = "X-Callrec-Agent-DN";
/// Header carrying the recorded call's CTI ConnectionID.
pub const HDR_CONNECTION_ID: &str = "X-Callrec-Connection-ID";
/// Prefix of the headers carrying CTI extension key-value pairs.
pub const HDR_EXTENSION_PREFIX: &str = "X-Genesys-";
/// Content type of MSML bodies.
pub const MSML_CONTENT_TYPE: &str = "application/msml+xml";

/// A recording session, as the SIP Server role (and so the caller) knows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// What to record: one call's two legs and the data that goes into the sidecar.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    /// The recorded endpoint's DN (goes into the Request-URI).
    pub dn: String,
    /// Call-IDs of the recorded call's SIP legs.
    pub call_ids: Vec<String>,
    /// The customer's stream (left channel): where the customer receives RTP.
    pub customer: MediaDescription,
    /// The agent's stream (right channel).
    pub agent: MediaDescription,
    /// What started the recording: `extension`, `trunk`, `route`, `cti`, ...
    pub trigger: String,
    /// (customer DN, agent DN), when known.
    pub dns: (Option<String>, Option<String>),
    /// CTI Extensions key-value pairs, passed through to the MCP and the sidecar.
    pub extensions: Vec<(String, String)>,
    /// A caller-chosen conf-id; one is generated when `None`.
    pub conf_id: Option<String>,
    /// Where the file goes: a path ending in `.wav` is the file itself, anything else a
    /// directory that gets `<conf-id>.wav`; the sidecar goes beside it (`.json`).
    /// `<out_dir>/<conf-id>.wav` when `None`.
    pub dest: Option<PathBuf>,
    /// The recorded call's CTI ConnectionID, for the sidecar.
    pub connection_id: Option<String>,
}

/// One recorded stream: what one party sends, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The sending party's media description (its address is where it receives and, with
    /// symmetric RTP, sends from).
    pub media: MediaDescription,
    /// Where its RTP goes: the address of the other end of the party's own dialog (the
    /// opposite party, or a conference focus).
    pub peer: SocketAddr,
    /// The party's DN, for the sidecar's party list.
    pub dn: Option<String>,
}

/// Everything a recording listens to after the call's parties or media changed: the
/// customer's stream (left) and one stream per agent-side party (right, mixed), each agent
/// on a stable source slot (`0..MAX_SOURCES`) while it stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStreams {
    /// The customer's stream.
    pub customer: StreamSpec,
    /// (source slot, stream) per agent-side party with a stream of its own.
    pub agents: Vec<(u8, StreamSpec)>,
    /// Agent-side parties present without a stream of their own (a phone mixing a local
    /// three-way call, an agent still in the call after handing the customer over): listed
    /// in the sidecar, no flows of their own.
    pub present_dns: Vec<String>,
    /// Every SIP Call-ID that carried the recording's media so far.
    pub call_ids: Vec<String>,
}

/// RFC 3339 text of a capture time, as the sidecar writes it (for tests elsewhere).
#[cfg(test)]
pub(crate) fn transport_rfc3339(at: Timestamp) -> String {
    transport::rfc3339(at)
}

/// Addresses and settings of the three roles.
#[derive(Debug, Clone)]
pub struct RolesConfig {
    /// The RM as written in the Request-URI, `host[:port]`.
    pub resource_manager: String,
    /// The SIP Server role's address (`host:port`), its Via and Contact.
    pub sip_server_addr: String,
    /// The RM role's address (`host:port`) on the in-process transport.
    pub rm_addr: String,
    /// One MCP address per writer (`127.0.0.1:5070+k`); missing ones are made up from
    /// `127.0.0.1:5070+k`.
    pub mcp_addrs: Vec<String>,
    /// Number of writer cores, one MCP each.
    pub writers: usize,
    /// Directory the recordings are written to (`<out>/<conf-id>.wav`).
    pub out_dir: PathBuf,
    /// Output format asked for.
    pub format: OutputFormat,
    /// Prefix of generated conf-ids (`<prefix>-<counter>`), e.g. `callrec` or
    /// `callrec-<start time hex>` to stay unique across runs sharing a directory.
    pub conf_id_prefix: String,
}

/// Why a recording operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    /// No such session (never started, or already stopped).
    #[error("no recording session {0:?}: it was never started or has already ended")]
    UnknownSession(SessionId),
    /// The conf-id, DN or RM address cannot go into the Request-URI.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A caller-chosen conf-id is already used by a live session.
    #[error("conf-id {0} is already used by a recording in progress")]
    ConfIdInUse(String),
    /// Another recording of this run already writes (or wrote) this file.
    #[error("{0} is already written by another recording of this run")]
    FileInUse(String),
    /// The operation does not fit the session's state (e.g. pause before the recording started).
    #[error("recording {conf_id} is {state}: cannot {op} it")]
    State {
        /// The session's conf-id.
        conf_id: String,
        /// Its state.
        state: &'static str,
        /// The refused operation.
        op: &'static str,
    },
    /// A role refused a step, with a SIP status or an MSML result.
    #[error("recording {conf_id}: {step} refused with {code} ({reason})")]
    Rejected {
        /// The session's conf-id.
        conf_id: String,
        /// The step: `INVITE`, `dialogstart`, `pause`, `resume`, `dialogend`, `re-INVITE`, `BYE`.
        step: &'static str,
        /// SIP status code or MSML result code.
        code: u16,
        /// Reason phrase or MSML description.
        reason: String,
    },
    /// The exchange ended without an answer to a step (a role dropped a message).
    #[error("recording {conf_id}: no answer to {step}")]
    NoAnswer {
        /// The session's conf-id.
        conf_id: String,
        /// The unanswered step.
        step: &'static str,
    },
}

/// An effect of the recording flow, in the order it happened.
// WriterMsg is large only for its Rtp variant, which the roles never emit; these are a few
// control-path values per call, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum RoleOutput {
    /// A flow-table change.
    Flow(FlowUpdate),
    /// A command for one writer's ring.
    Writer {
        /// Writer index.
        writer: u16,
        /// The command.
        msg: WriterMsg,
    },
    /// A message that travelled between two roles.
    Trace(TraceRecord),
}

impl std::fmt::Debug for RoleOutput {
    // WriterMsg has no Debug impl (it lives in the pipeline crate and carries raw RTP), so
    // writer commands are summarised by kind and recording.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleOutput::Flow(u) => write!(f, "Flow({u:?})"),
            RoleOutput::Trace(t) => write!(f, "Trace({} -> {})", t.from, t.to),
            RoleOutput::Writer { writer, msg } => {
                let what = match msg {
                    WriterMsg::Rtp(i) => format!("Rtp({:?})", i.recording),
                    WriterMsg::Start(s) => format!("Start({:?}, {})", s.id, s.wav_path.display()),
                    WriterMsg::Pause { recording, .. } => format!("Pause({recording:?})"),
                    WriterMsg::Resume { recording, .. } => format!("Resume({recording:?})"),
                    WriterMsg::Stop { recording, .. } => format!("Stop({recording:?})"),
                    WriterMsg::Sidecar { recording, key, .. } => format!("Sidecar({recording:?}, {key})"),
                    WriterMsg::Stopping { recording, .. } => format!("Stopping({recording:?})"),
                };
                write!(f, "Writer({writer}, {what})")
            }
        }
    }
}

/// A message a role wants sent.
#[derive(Debug)]
pub(crate) struct Transmit {
    pub to: String,
    pub bytes: Vec<u8>,
}

/// Most messages one operation may exchange: far above the 6 of the longest real exchange, it
/// only stops two misbehaving roles from looping forever.
const MAX_MESSAGES_PER_OPERATION: usize = 64;

/// The three roles and the transport between them.
pub struct RecordingRoles {
    ss: SipServerRole,
    rm: ResourceManagerRole,
    mcps: Vec<McpRole>,
    transport: InProcessTransport,
    outputs: VecDeque<RoleOutput>,
    dropped: u64,
}

impl RecordingRoles {
    /// Sets up the roles: one MCP per writer.
    pub fn new(cfg: RolesConfig) -> Result<RecordingRoles, RoleError> {
        let mcp_addrs: Vec<String> = (0..cfg.writers)
            .map(|k| {
                cfg.mcp_addrs
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| format!("127.0.0.1:{}", 5070 + k))
            })
            .collect();
        let ss = SipServerRole::new(&cfg)?;
        let rm = ResourceManagerRole::new(cfg.rm_addr.clone(), mcp_addrs.clone());
        let mcps = mcp_addrs
            .iter()
            .enumerate()
            .map(|(k, addr)| McpRole::new(k as u16, cfg.writers as u32, addr.clone(), cfg.format))
            .collect();
        Ok(RecordingRoles {
            ss,
            rm,
            mcps,
            transport: InProcessTransport::default(),
            outputs: VecDeque::new(),
            dropped: 0,
        })
    }

    /// Starts recording a call: INVITE through the RM to an MCP, 200, ACK, INFO
    /// `<dialogstart>`, 200. Returns the session once the MCP has answered the dialogstart
    /// with result 200.
    pub fn start(&mut self, now: Timestamp, req: RecordRequest) -> Result<SessionId, RoleError> {
        let id = self.ss.start_recording(now, &req)?;
        self.run(now);
        self.ss
            .outcome(id, sip_server::Goal::Recording)
            .map(|()| id)
    }

    /// Pauses a recording (`<send event="pause">`): silence from now on.
    pub fn pause(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.ss.pause(now, id)?;
        self.run(now);
        self.ss.outcome(id, sip_server::Goal::Paused)
    }

    /// Resumes a paused recording.
    pub fn resume(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.ss.resume(now, id)?;
        self.run(now);
        self.ss.outcome(id, sip_server::Goal::Recording)
    }

    /// Stops a recording: INFO `<dialogend>`, then BYE. The session is gone afterwards, even
    /// when the MCP refused the dialogend (the error is returned).
    pub fn stop(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.ss.stop(now, id)?;
        self.run(now);
        self.ss.outcome(id, sip_server::Goal::Closed)
    }

    /// The call's media moved: re-INVITE with the new streams; the MCP moves the flows and the
    /// writer keeps writing the same file.
    pub fn update_media(
        &mut self,
        now: Timestamp,
        id: SessionId,
        customer: MediaDescription,
        agent: MediaDescription,
    ) -> Result<(), RoleError> {
        self.ss.update_media(now, id, customer, agent)?;
        self.run(now);
        self.ss.outcome(id, sip_server::Goal::Unchanged)
    }

    /// The call's parties or media changed: re-INVITE with all streams (customer, each agent
    /// on its slot); the MCP moves the flows, tracks who was present and held, and the writer
    /// keeps writing the same file.
    pub fn update_streams(&mut self, now: Timestamp, id: SessionId, streams: &RecordStreams) -> Result<(), RoleError> {
        self.ss.update_streams(now, id, streams)?;
        self.run(now);
        self.ss.outcome(id, sip_server::Goal::Unchanged)
    }

    /// Number of recording sessions the SIP Server role holds (started, not yet stopped).
    pub fn active_sessions(&self) -> usize {
        self.ss.session_count()
    }

    /// The conf-id of a session.
    pub fn conf_id(&self, id: SessionId) -> Option<&ConfId> {
        self.ss.conf_id(id)
    }

    /// Sessions per MCP, as the RM counts them (index = writer).
    pub fn mcp_load(&self) -> &[usize] {
        self.rm.load()
    }

    /// Messages that could not be delivered or parsed (should stay 0).
    pub fn dropped_messages(&self) -> u64 {
        self.dropped
    }

    /// The next effect, oldest first. Drain after every operation.
    pub fn poll_output(&mut self) -> Option<RoleOutput> {
        self.outputs.pop_front()
    }

    /// Delivers queued messages until none is left.
    fn run(&mut self, now: Timestamp) {
        self.collect(now);
        let mut delivered = 0;
        while let Some(d) = self.transport.next() {
            delivered += 1;
            if delivered > MAX_MESSAGES_PER_OPERATION {
                tracing::error!("recording roles exchanged more than {MAX_MESSAGES_PER_OPERATION} messages; dropping the rest");
                self.dropped += 1;
                continue;
            }
            let msg = match SipMessage::parse(&d.bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(from = %d.from, to = %d.to, "unparsable message between roles: {e}");
                    self.dropped += 1;
                    continue;
                }
            };
            if d.to == self.ss.addr() {
                self.ss.handle(now, &msg);
            } else if d.to == self.rm.addr() {
                self.rm.handle(now, &msg);
            } else if let Some(mcp) = self.mcps.iter_mut().find(|m| m.addr() == d.to) {
                mcp.handle(now, &msg);
            } else {
                tracing::warn!(to = %d.to, "message to an address no role has");
                self.dropped += 1;
            }
            self.collect(now);
        }
    }

    /// Moves every role's outputs and messages out, in causal order: a role's outputs come
    /// before the messages it sent while producing them.
    fn collect(&mut self, now: Timestamp) {
        for mcp in &mut self.mcps {
            self.outputs.extend(mcp.drain_outputs());
        }
        let mut sent: Vec<(String, Transmit)> = Vec::new();
        sent.extend(
            self.ss
                .drain_transmits()
                .into_iter()
                .map(|t| (self.ss.addr().to_string(), t)),
        );
        sent.extend(
            self.rm
                .drain_transmits()
                .into_iter()
                .map(|t| (self.rm.addr().to_string(), t)),
        );
        for mcp in &mut self.mcps {
            let from = mcp.addr().to_string();
            sent.extend(mcp.drain_transmits().into_iter().map(|t| (from.clone(), t)));
        }
        for (from, t) in sent {
            let record = self.transport.send(now, &from, &t.to, t.bytes);
            self.outputs.push_back(RoleOutput::Trace(record));
        }
    }
}

/// The host part of `host[:port]` (`[v6]:port` keeps its brackets off).
pub(crate) fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// A whole SDP body: session lines, then each stream through [`write_audio_media`].
pub(crate) fn sdp_body(origin: &str, version: u32, streams: &[&MediaDescription]) -> String {
    let host = host_of(origin);
    let family = if host.contains(':') { "IP6" } else { "IP4" };
    let mut out =
        format!("v=0\r\no=callrec 1 {version} IN {family} {host}\r\ns=callrec\r\nt=0 0\r\n");
    for m in streams {
        write_audio_media(&mut out, m);
    }
    out
}

/// Is this header line named `full` (or its RFC 3261 compact form)?
pub(crate) fn is_header(name: &str, full: &str, compact: Option<&str>) -> bool {
    name.eq_ignore_ascii_case(full) || compact.is_some_and(|c| name.eq_ignore_ascii_case(c))
}

/// `sent-by` (`host[:port]`) of a Via value `SIP/2.0/UDP host:port;branch=...`.
pub(crate) fn via_sent_by(via: &str) -> Option<&str> {
    let after = via.trim().split_once(char::is_whitespace)?.1.trim_start();
    after
        .split(';')
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `branch` parameter of a Via value.
pub(crate) fn via_branch(via: &str) -> Option<&str> {
    via.split(';').skip(1).find_map(|p| {
        let (n, v) = p.trim().split_once('=')?;
        n.eq_ignore_ascii_case("branch").then_some(v.trim())
    })
}

/// %-escapes bytes outside the RFC 3261 `token` set, so any key can be a header name suffix.
pub(crate) fn escape_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-.!*_+`'~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A header value safe on one line: controls (CR, LF, ...) become spaces.
pub(crate) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
