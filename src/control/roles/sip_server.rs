//! The SIP Server role: the UAC of each recording session. It names the session (conf-id,
//! Request-URI), sends the INVITE to the Resource Manager, ACKs, drives the recording with
//! MSML INFOs and ends it with BYE, tracking each dialog's CSeq and route.

use super::{
    escape_token, header_safe, sdp_body, RecordRequest, RecordStreams, RoleError, RolesConfig, SessionId,
    StreamSpec, Transmit, HDR_AGENT_DN, HDR_PRESENT_DN, HDR_STREAM, HDR_CALL_ID, HDR_CONNECTION_ID, HDR_CUSTOMER_DN, HDR_EXTENSION_PREFIX, HDR_TRIGGER,
    MSML_CONTENT_TYPE,
};
use crate::control::msml::{MsmlRequest, MsmlResult};
use crate::control::sdp::MediaDescription;
use crate::control::sip::{SipBuilder, SipMessage};
use crate::control::uri::{ConfId, ConfIdGenerator, RequestUri};
use callrec_pipeline::writer::jitter::SampleKind;
use callrec_pipeline::writer::{Codec, OutputFormat};
use callrec_pipeline::Timestamp;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE sent, no final answer yet.
    Inviting,
    /// Dialog up, `<dialogstart>` sent or not yet answered.
    Starting,
    /// Recording.
    Recording,
    /// Recording, paused.
    Paused,
    /// `<dialogend>` or BYE sent.
    Ending,
    /// Refused or torn down; kept until the caller has seen the outcome.
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Inviting => "being set up",
            State::Starting => "starting",
            State::Recording => "recording",
            State::Paused => "paused",
            State::Ending => "ending",
            State::Closed => "closed",
        }
    }
}

/// What the caller's operation waited for (checked by [`SipServerRole::outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    Recording,
    Paused,
    Closed,
    /// A media update: the state stays as it was.
    Unchanged,
}

/// The transaction a session waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Invite { cseq: u32, re: bool },
    Info { cseq: u32, op: Op },
    Bye { cseq: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Pause,
    Resume,
    Stop,
}

impl Op {
    fn step(self) -> &'static str {
        match self {
            Op::Start => "dialogstart",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop => "dialogend",
        }
    }
}

struct Session {
    conf_id: ConfId,
    uri: RequestUri,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// The MCP's Contact (Request-URI of in-dialog requests).
    remote_target: Option<String>,
    /// Record-Route of the 2xx, sent back as Route.
    route: Vec<String>,
    cseq: u32,
    /// Branch of the last INVITE: the ACK of a failure answer reuses it (RFC 3261 17.1.1.3).
    invite_branch: String,
    sdp_version: u32,
    state: State,
    pending: Option<Pending>,
    /// The first refusal seen since the last operation began.
    error: Option<RoleError>,
    customer: MediaDescription,
    agent: MediaDescription,
    /// Where the MCP is asked to write the file (`<dialogstart>` dest).
    wav_path: PathBuf,
}

/// The SIP Server role. Sans-IO: operations and [`handle`](Self::handle) queue messages,
/// drained with `drain_transmits`.
pub struct SipServerRole {
    addr: String,
    rm_addr: String,
    resource_manager: String,
    out_dir: PathBuf,
    format: OutputFormat,
    confs: ConfIdGenerator,
    next_session: u32,
    next_branch: u64,
    sessions: BTreeMap<SessionId, Session>,
    outbox: Vec<Transmit>,
    /// Session by the recording dialog's Call-ID and by conf-id: looked up per message and
    /// per start, so setups cost the same with 10 or 10,000 recordings live.
    by_call_id: std::collections::HashMap<String, SessionId>,
    by_conf: std::collections::HashMap<String, SessionId>,
    /// Files named by a client (`id`, `dest`) this run.
    wav_paths: std::collections::HashSet<PathBuf>,
}

impl SipServerRole {
    /// A SIP Server at `cfg.sip_server_addr` sending to the RM at `cfg.rm_addr`.
    pub fn new(cfg: &RolesConfig) -> Result<SipServerRole, RoleError> {
        Ok(SipServerRole {
            addr: cfg.sip_server_addr.clone(),
            rm_addr: cfg.rm_addr.clone(),
            resource_manager: cfg.resource_manager.clone(),
            out_dir: cfg.out_dir.clone(),
            format: cfg.format,
            confs: ConfIdGenerator::new(cfg.conf_id_prefix.clone())?,
            next_session: 1,
            next_branch: 1,
            sessions: BTreeMap::new(),
            wav_paths: Default::default(),
            by_call_id: Default::default(),
            by_conf: Default::default(),
            outbox: Vec::new(),
        })
    }

    /// This role's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sessions held (not yet closed).
    pub fn session_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.state != State::Closed)
            .count()
    }

    /// A session's conf-id.
    pub fn conf_id(&self, id: SessionId) -> Option<&ConfId> {
        self.sessions.get(&id).map(|s| &s.conf_id)
    }

    /// Names a new session and queues its INVITE to the RM.
    pub fn start_recording(
        &mut self,
        _now: Timestamp,
        req: &RecordRequest,
    ) -> Result<SessionId, RoleError> {
        let conf_id = match &req.conf_id {
            Some(c) => ConfId::new(c.clone())?,
            None => self.confs.next_id(),
        };
        if self
            .by_conf
            .get(conf_id.as_str())
            .and_then(|id| self.sessions.get(id))
            .is_some_and(|s| s.state != State::Closed)
        {
            return Err(RoleError::ConfIdInUse(conf_id.to_string()));
        }
        let uri = RequestUri::recording(
            conf_id.clone(),
            self.resource_manager.clone(),
            req.dn.clone(),
        )?;
        let id = SessionId(self.next_session);
        self.next_session = self.next_session.wrapping_add(1);
        let branch = self.branch();
        let file = format!("{conf_id}.wav");
        let wav_path = match &req.dest {
            Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) => p.clone(),
            Some(dir) => dir.join(file),
            None => self.out_dir.join(file),
        };
        // Two recordings on one file would interleave their audio and the later would
        // overwrite the earlier's header: refused, like a reused conf-id.
        // Generated names never repeat within a run; only client-chosen ones (id, dest) are kept.
        let chosen = req.dest.is_some() || req.conf_id.is_some();
        if chosen && !self.wav_paths.insert(wav_path.clone()) {
            return Err(RoleError::FileInUse(wav_path.display().to_string()));
        }
        let session = Session {
            wav_path,
            invite_branch: branch.clone(),
            call_id: format!("{conf_id}-{:x}@{}", id.0, super::host_of(&self.addr)),
            local_tag: format!("ss{:x}", id.0),
            conf_id,
            uri,
            remote_tag: None,
            remote_target: None,
            route: Vec::new(),
            cseq: 1,
            sdp_version: 1,
            state: State::Inviting,
            pending: Some(Pending::Invite { cseq: 1, re: false }),
            error: None,
            customer: labelled(&req.customer, "customer"),
            agent: labelled(&req.agent, "agent"),
        };
        let uri_text = session.uri.to_string();
        let mut b = SipBuilder::request("INVITE", &uri_text)
            .via("UDP", &self.addr, &branch)
            .max_forwards(70)
            .from(&self.local_uri(), &session.local_tag)
            .to(&uri_text, None)
            .call_id(&session.call_id)
            .cseq(1, "INVITE")
            .contact(&self.local_uri());
        for call_id in &req.call_ids {
            b = b.header(HDR_CALL_ID, &header_safe(call_id));
        }
        b = b.header(HDR_TRIGGER, &header_safe(&req.trigger));
        if let Some(dn) = &req.dns.0 {
            b = b.header(HDR_CUSTOMER_DN, &header_safe(dn));
        }
        if let Some(dn) = &req.dns.1 {
            b = b.header(HDR_AGENT_DN, &header_safe(dn));
        }
        if let Some(c) = &req.connection_id {
            b = b.header(HDR_CONNECTION_ID, &header_safe(c));
        }
        for (k, v) in &req.extensions {
            b = b.header(
                &format!("{HDR_EXTENSION_PREFIX}{}", escape_token(k)),
                &header_safe(v),
            );
        }
        let sdp = sdp_body(
            &self.addr,
            session.sdp_version,
            &[&session.customer, &session.agent],
        );
        let bytes = b.body("application/sdp", sdp.as_bytes());
        self.outbox.push(Transmit {
            to: self.rm_addr.clone(),
            bytes,
        });
        self.by_call_id.insert(session.call_id.clone(), id);
        self.by_conf.insert(session.conf_id.to_string(), id);
        self.sessions.insert(id, session);
        Ok(id)
    }

    /// Queues INFO `<send event="pause">`.
    pub fn pause(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.info(now, id, Op::Pause, &[State::Recording, State::Paused])
    }

    /// Queues INFO `<send event="resume">`.
    pub fn resume(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.info(now, id, Op::Resume, &[State::Recording, State::Paused])
    }

    /// Queues INFO `<dialogend>`; BYE follows its answer.
    pub fn stop(&mut self, now: Timestamp, id: SessionId) -> Result<(), RoleError> {
        self.info(
            now,
            id,
            Op::Stop,
            &[State::Starting, State::Recording, State::Paused],
        )
    }

    /// Queues a re-INVITE with the new streams (two-party call: each stream goes to the other).
    pub fn update_media(
        &mut self,
        now: Timestamp,
        id: SessionId,
        customer: MediaDescription,
        agent: MediaDescription,
    ) -> Result<(), RoleError> {
        let streams = RecordStreams {
            customer: StreamSpec { peer: agent.addr, media: customer.clone(), dn: None },
            agents: vec![(0, StreamSpec { peer: customer.addr, media: agent, dn: None })],
            present_dns: Vec::new(),
            call_ids: Vec::new(),
        };
        self.update_streams(now, id, &streams)
    }

    /// Queues a re-INVITE listing every stream to record: `customer`, then each agent-side
    /// party as `agent` (slot 0) or `agent-N` (slot N-1), each described in an
    /// `X-Callrec-Stream: <label>;dn=<dn>;peer=<ip:port>` header, plus `X-Callrec-Present-DN`
    /// for parties present without a stream of their own and `X-Callrec-Call-ID` for every leg.
    pub fn update_streams(&mut self, _now: Timestamp, id: SessionId, streams: &RecordStreams) -> Result<(), RoleError> {
        self.check(
            id,
            "update the media of",
            &[State::Starting, State::Recording, State::Paused],
        )?;
        let branch = self.branch();
        let local = self.local_uri();
        let addr = self.addr.clone();
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(RoleError::UnknownSession(id));
        };
        s.customer = labelled(&streams.customer.media, "customer");
        let mut media = vec![s.customer.clone()];
        let mut meta = vec![stream_header("customer", &streams.customer)];
        for (slot, st) in &streams.agents {
            let label = agent_label(*slot);
            media.push(labelled(&st.media, &label));
            meta.push(stream_header(&label, st));
        }
        if let Some(first) = media.get(1) {
            s.agent = first.clone();
        }
        s.sdp_version += 1;
        s.invite_branch = branch.clone();
        s.cseq += 1;
        s.pending = Some(Pending::Invite {
            cseq: s.cseq,
            re: true,
        });
        s.error = None;
        let refs: Vec<&MediaDescription> = media.iter().collect();
        let sdp = sdp_body(&addr, s.sdp_version, &refs);
        let mut b = in_dialog(s, "INVITE", s.cseq, &addr, &branch, &local).contact(&local);
        for m in &meta {
            b = b.header(HDR_STREAM, m);
        }
        for dn in &streams.present_dns {
            b = b.header(HDR_PRESENT_DN, &header_safe(dn));
        }
        for call_id in &streams.call_ids {
            b = b.header(HDR_CALL_ID, &header_safe(call_id));
        }
        let bytes = b.body("application/sdp", sdp.as_bytes());
        self.outbox.push(Transmit {
            to: self.rm_addr.clone(),
            bytes,
        });
        Ok(())
    }

    /// Handles a message from the RM.
    pub fn handle(&mut self, now: Timestamp, msg: &SipMessage) {
        let Some(code) = msg.status() else {
            // The SIP Server only ever sends requests in these dialogs; a request from the
            // RM/MCP side (e.g. a BYE) is not part of the flow yet.
            tracing::warn!(
                method = msg.method(),
                "SIP Server role ignores an incoming request"
            );
            return;
        };
        if code < 200 {
            return;
        }
        let Some(&id) = self.by_call_id.get(&msg.call_id) else {
            tracing::warn!(call_id = %msg.call_id, "response for an unknown recording dialog");
            return;
        };
        let pending = self.sessions.get(&id).and_then(|s| s.pending);
        match pending {
            Some(Pending::Invite { cseq, re }) if msg.cseq == (cseq, "INVITE".to_string()) => {
                self.on_invite_response(now, id, code, msg, cseq, re)
            }
            Some(Pending::Info { cseq, op }) if msg.cseq == (cseq, "INFO".to_string()) => {
                self.on_info_response(now, id, code, msg, op)
            }
            Some(Pending::Bye { cseq }) if msg.cseq == (cseq, "BYE".to_string()) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.pending = None;
                    s.state = State::Closed;
                    if code >= 300 {
                        s.error.get_or_insert(rejected(s, "BYE", code, msg));
                    }
                }
            }
            _ => tracing::debug!(cseq = ?msg.cseq, "response to no pending transaction"),
        }
    }

    /// After an operation's exchange: Ok when the session reached `goal`, else the refusal.
    /// A closed session is forgotten here.
    pub(crate) fn outcome(&mut self, id: SessionId, goal: Goal) -> Result<(), RoleError> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(RoleError::UnknownSession(id));
        };
        let error = s.error.take();
        let step = match s.pending {
            Some(Pending::Invite { re: false, .. }) => Some("INVITE"),
            Some(Pending::Invite { re: true, .. }) => Some("re-INVITE"),
            Some(Pending::Info { op, .. }) => Some(op.step()),
            Some(Pending::Bye { .. }) => Some("BYE"),
            None => None,
        };
        let conf_id = s.conf_id.to_string();
        let reached = match goal {
            Goal::Recording => s.state == State::Recording,
            Goal::Paused => s.state == State::Paused,
            Goal::Closed => s.state == State::Closed,
            Goal::Unchanged => s.pending.is_none(),
        };
        if error.is_none() && step.is_some() {
            // The exchange ended without the answer (a role dropped a message): give up the
            // transaction so the session can still be stopped; an unanswered INVITE leaves
            // no dialog to keep.
            s.pending = None;
            if s.state == State::Inviting {
                s.state = State::Closed;
            }
        }
        if s.state == State::Closed {
            if let Some(s) = self.sessions.remove(&id) {
                self.by_call_id.remove(&s.call_id);
                if self.by_conf.get(s.conf_id.as_str()) == Some(&id) {
                    self.by_conf.remove(s.conf_id.as_str());
                }
            }
        }
        match (error, step) {
            (Some(e), _) => Err(e),
            (None, Some(step)) => Err(RoleError::NoAnswer { conf_id, step }),
            (None, None) if reached => Ok(()),
            (None, None) => Err(RoleError::NoAnswer {
                conf_id,
                step: "the last request",
            }),
        }
    }

    pub(crate) fn drain_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.outbox)
    }

    fn on_invite_response(
        &mut self,
        now: Timestamp,
        id: SessionId,
        code: u16,
        msg: &SipMessage,
        cseq: u32,
        re: bool,
    ) {
        let branch = self.branch();
        let local = self.local_uri();
        let addr = self.addr.clone();
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.pending = None;
        if !re && code < 300 {
            s.remote_tag = msg.to_tag.clone();
            s.remote_target = msg.contact.clone();
            s.route = msg.header_all("Record-Route").map(str::to_string).collect();
        }
        // ACK: for a 2xx a new transaction end to end; for a failure it completes the INVITE
        // transaction, so it reuses the INVITE's branch (same CSeq either way).
        let branch = if code >= 300 {
            s.invite_branch.clone()
        } else {
            branch
        };
        let ack = in_dialog(s, "ACK", cseq, &addr, &branch, &local).finish();
        self.outbox.push(Transmit {
            to: self.rm_addr.clone(),
            bytes: ack,
        });
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if code >= 300 {
            let step = if re { "re-INVITE" } else { "INVITE" };
            s.error.get_or_insert(rejected(s, step, code, msg));
            if !re {
                s.state = State::Closed;
            }
            return;
        }
        if !re {
            s.state = State::Starting;
            let _ = self.info(now, id, Op::Start, &[State::Starting]);
        }
    }

    fn on_info_response(
        &mut self,
        now: Timestamp,
        id: SessionId,
        code: u16,
        msg: &SipMessage,
        op: Op,
    ) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.pending = None;
        let result = if code < 300 {
            match MsmlResult::parse(&msg.body) {
                Ok(r) => r,
                Err(e) => MsmlResult::error(500, format!("unreadable MSML result: {e}")),
            }
        } else {
            let description = MsmlResult::parse(&msg.body)
                .ok()
                .and_then(|r| r.description)
                .unwrap_or_else(|| reason(msg));
            MsmlResult::error(code, description)
        };
        if !result.is_success() {
            s.error.get_or_insert(RoleError::Rejected {
                conf_id: s.conf_id.to_string(),
                step: op.step(),
                code: result.code,
                reason: result.description.clone().unwrap_or_default(),
            });
        }
        match (op, result.is_success()) {
            (Op::Start, true) | (Op::Resume, true) => s.state = State::Recording,
            (Op::Pause, true) => s.state = State::Paused,
            // A refused dialogstart leaves nothing to record: hang up. A refused dialogend
            // still ends the session.
            (Op::Start, false) | (Op::Stop, _) => self.bye(now, id),
            (Op::Pause, false) | (Op::Resume, false) => {}
        }
    }

    fn info(
        &mut self,
        _now: Timestamp,
        id: SessionId,
        op: Op,
        allowed: &[State],
    ) -> Result<(), RoleError> {
        let verb = match op {
            Op::Start => "start",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop => "stop",
        };
        self.check(id, verb, allowed)?;
        let branch = self.branch();
        let local = self.local_uri();
        let addr = self.addr.clone();
        let format = self.format;
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(RoleError::UnknownSession(id));
        };
        let conf_id = s.conf_id.clone();
        let request = match op {
            Op::Start => MsmlRequest::Start {
                dest: format!("file://{}", s.wav_path.display()),
                format: record_format(format, &s.customer, &s.agent).to_string(),
                conf_id,
            },
            Op::Pause => MsmlRequest::Pause { conf_id },
            Op::Resume => MsmlRequest::Resume { conf_id },
            Op::Stop => MsmlRequest::Stop { conf_id },
        };
        s.cseq += 1;
        s.pending = Some(Pending::Info { cseq: s.cseq, op });
        if op == Op::Stop {
            s.state = State::Ending;
        }
        if op != Op::Start {
            s.error = None;
        }
        let body = request.to_xml();
        let bytes = in_dialog(s, "INFO", s.cseq, &addr, &branch, &local)
            .body(MSML_CONTENT_TYPE, body.as_bytes());
        self.outbox.push(Transmit {
            to: self.rm_addr.clone(),
            bytes,
        });
        Ok(())
    }

    fn bye(&mut self, _now: Timestamp, id: SessionId) {
        let branch = self.branch();
        let local = self.local_uri();
        let addr = self.addr.clone();
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.cseq += 1;
        s.pending = Some(Pending::Bye { cseq: s.cseq });
        s.state = State::Ending;
        let bytes = in_dialog(s, "BYE", s.cseq, &addr, &branch, &local).finish();
        self.outbox.push(Transmit {
            to: self.rm_addr.clone(),
            bytes,
        });
    }

    fn check(&self, id: SessionId, op: &'static str, allowed: &[State]) -> Result<(), RoleError> {
        let s = self
            .sessions
            .get(&id)
            .ok_or(RoleError::UnknownSession(id))?;
        if s.state == State::Closed {
            return Err(RoleError::UnknownSession(id));
        }
        if !allowed.contains(&s.state) || s.pending.is_some() {
            return Err(RoleError::State {
                conf_id: s.conf_id.to_string(),
                state: s.state.name(),
                op,
            });
        }
        Ok(())
    }

    fn branch(&mut self) -> String {
        let b = format!("z9hG4bK-ss-{:x}", self.next_branch);
        self.next_branch += 1;
        b
    }

    fn local_uri(&self) -> String {
        format!("sip:callrec@{}", self.addr)
    }
}

/// An in-dialog request's start and headers, up to (not including) Contact/body.
fn in_dialog(
    s: &Session,
    method: &str,
    cseq: u32,
    addr: &str,
    branch: &str,
    local: &str,
) -> SipBuilder {
    let uri_text = s.uri.to_string();
    let target = s.remote_target.clone().unwrap_or_else(|| uri_text.clone());
    let mut b = SipBuilder::request(method, &target)
        .via("UDP", addr, branch)
        .max_forwards(70);
    for route in &s.route {
        b = b.header("Route", route);
    }
    b.from(local, &s.local_tag)
        .to(&uri_text, s.remote_tag.as_deref())
        .call_id(&s.call_id)
        .cseq(cseq, method)
}

/// The SDP label of agent slot `slot`: `agent`, `agent-2`, ...
pub(crate) fn agent_label(slot: u8) -> String {
    if slot == 0 {
        "agent".to_string()
    } else {
        format!("agent-{}", u32::from(slot) + 1)
    }
}

/// `<label>;dn=<escaped dn>;peer=<ip:port>`.
fn stream_header(label: &str, st: &StreamSpec) -> String {
    let mut v = format!("{label};peer={}", st.peer);
    if let Some(dn) = &st.dn {
        v.push_str(";dn=");
        v.push_str(&escape_token(dn));
    }
    v
}

fn labelled(m: &MediaDescription, label: &str) -> MediaDescription {
    MediaDescription {
        label: Some(label.to_string()),
        ..m.clone()
    }
}

/// The MSML `format` of the recording: the file's codec, as the writer will choose it (the
/// same function decides both).
fn record_format(
    format: OutputFormat,
    customer: &MediaDescription,
    agent: &MediaDescription,
) -> &'static str {
    let channels = [
        super::mcp::channel_spec(customer),
        super::mcp::channel_spec(agent),
    ];
    match callrec_pipeline::writer::recording::kind_for(format, &channels) {
        SampleKind::Law(Codec::Pcma) => "audio/wav;codec=pcma",
        SampleKind::Law(Codec::Pcmu) => "audio/wav;codec=pcmu",
        SampleKind::Linear => "audio/wav;codec=l16",
    }
}

fn reason(msg: &SipMessage) -> String {
    match &msg.start {
        crate::control::sip::StartLine::Response { reason, .. } => reason.clone(),
        crate::control::sip::StartLine::Request { method, .. } => method.clone(),
    }
}

fn rejected(s: &Session, step: &'static str, code: u16, msg: &SipMessage) -> RoleError {
    RoleError::Rejected {
        conf_id: s.conf_id.to_string(),
        step,
        code,
        reason: reason(msg),
    }
}
