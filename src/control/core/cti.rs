//! The control core's CTI side: each request of design section 3 checked against the calls,
//! registrations and recordings, acted on, and answered with one event (or `EventError`, in
//! which case nothing changed).
//!
//! Choices the design leaves open:
//! - `RouteCall` needs no registration of the routing point (a routing strategy server may or
//!   may not register it); `AgentLogin`/`AgentLogout` need none either.
//! - A call has at most one recording. `PrivateService` pause/resume/stop act on it whatever
//!   started it (static DN, route, agent login, an earlier start).
//! - An agent logging in on another DN moves there; a DN taken by another agent is refused.
//!   Logging out stops no recording in progress: it only stops new calls being recorded.
//! - `RouteCall record=source` records the routed call itself when OtherDN is one of its
//!   parties; otherwise the leg between OtherDN and the routed call's caller, should one appear
//!   (a B2BUA reaching the agent under a new Call-ID), once that leg is answered.
//! - `RouteCall` is answered `EventRouteUsed` whenever the call exists and `record` is valid,
//!   even when a recording it asks for must wait for the answer or is already running.

use super::{ControlCore, Output, PendingRoute, StartError, Trigger};
use crate::control::calls::CallHandle;
use crate::control::connection::normalize;
use crate::control::core::CtiClient;
use crate::control::roles::RoleError;
use crate::control::uri::ConfId;
use crate::cti::protocol::{error_code, value_text, CallInfo, Event, KeyValues, Request, RequestLine};
use callrec_pipeline::Timestamp;
use std::path::PathBuf;

/// Most DNs one client may register; past it a RegisterAddress is refused, so one client cannot
/// grow the core's memory without bound.
pub const MAX_DNS_PER_CLIENT: usize = 10_000;

/// An `EventError` in the making: code and one sentence.
type CtiError = (u32, String);

/// The PrivateService operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PrivateOp {
    Start,
    Stop,
    Pause,
    Resume,
}

impl ControlCore {
    /// One CTI request from `client` at `now`. Its answer (and any call events or recording
    /// outputs it causes, in order) come out of [`poll_output`](Self::poll_output).
    pub fn handle_cti(&mut self, now: Timestamp, client: CtiClient, line: RequestLine) {
        let rid = line.reference_id;
        let answer = match line.request {
            Request::RegisterAddress { this_dn } => self.register(client, rid, this_dn),
            Request::UnregisterAddress { this_dn } => {
                if self.regs.unregister(client, &this_dn) {
                    Ok(Event::EventUnregistered { reference_id: rid, this_dn })
                } else {
                    Err((error_code::DN_NOT_REGISTERED, format!("DN {this_dn} is not registered by this client")))
                }
            }
            Request::AgentLogin { this_dn, agent_id } => match self.agents.login(&this_dn, &agent_id) {
                Ok(moved_from) => {
                    tracing::info!(client = client.0, dn = %this_dn, agent = %agent_id, ?moved_from, "agent logged in");
                    Ok(Event::EventAgentLogin { reference_id: rid, this_dn, agent_id })
                }
                Err(e) => Err((error_code::AGENT, e.to_string())),
            },
            Request::AgentLogout { this_dn } => match self.agents.logout(&this_dn) {
                Ok(agent_id) => {
                    tracing::info!(client = client.0, dn = %this_dn, agent = %agent_id, "agent logged out");
                    Ok(Event::EventAgentLogout { reference_id: rid, this_dn, agent_id })
                }
                Err(e) => Err((error_code::AGENT, e.to_string())),
            },
            Request::RouteCall { this_dn, connection_id, other_dn, extensions } => {
                self.route_call(now, client, rid, this_dn, connection_id, other_dn, &extensions)
            }
            Request::PrivateService { private_msg_id, this_dn, connection_id, extensions, reasons } => self
                .private_service(now, client, rid, private_msg_id, this_dn, connection_id, &extensions, &reasons),
            Request::QueryCalls {} => Ok(Event::EventCalls { reference_id: rid, calls: self.call_list() }),
        };
        let event = answer.unwrap_or_else(|(error_code, error_message)| {
            tracing::info!(client = client.0, error_code, %error_message, "CTI request refused");
            Event::EventError { reference_id: rid, error_code, error_message }
        });
        self.pull_roles();
        self.out.push_back(Output::Cti { client, event });
    }

    /// The client's connection is gone: its registrations go with it. Recordings it started
    /// keep going (the call, not the desktop, decides when they end).
    pub fn cti_client_gone(&mut self, client: CtiClient) {
        self.regs.remove_client(client);
    }

    fn register(&mut self, client: CtiClient, rid: Option<i64>, this_dn: String) -> Result<Event, CtiError> {
        if this_dn.is_empty() {
            return Err((error_code::BAD_REQUEST, "ThisDN must not be empty".into()));
        }
        if !self.regs.is_registered(client, &this_dn) && self.regs.count_of(client) >= MAX_DNS_PER_CLIENT {
            return Err((
                error_code::BAD_REQUEST,
                format!("this client already registered {MAX_DNS_PER_CLIENT} DNs, the most one client may"),
            ));
        }
        self.regs.register(client, &this_dn);
        Ok(Event::EventRegistered { reference_id: rid, this_dn })
    }

    fn call_list(&self) -> Vec<CallInfo> {
        let mut calls: Vec<_> = self.calls.values().collect();
        calls.sort_by_key(|c| c.seq);
        calls
            .into_iter()
            .map(|c| CallInfo {
                connection_id: c.conn_id.clone(),
                dns: [&c.caller.dn, &c.callee.dn].into_iter().flatten().cloned().collect(),
                state: if c.established { "established" } else { "ringing" }.into(),
                recording: match &c.recording {
                    None => "none",
                    Some(r) if r.paused => "paused",
                    Some(_) => "recording",
                }
                .into(),
            })
            .collect()
    }

    fn find_call(&self, connection_id: &str) -> Result<CallHandle, CtiError> {
        self.by_conn
            .get(&normalize(connection_id))
            .copied()
            .ok_or_else(|| (error_code::UNKNOWN_CONNECTION, format!("no call with ConnectionID {connection_id}")))
    }

    #[allow(clippy::too_many_arguments)]
    fn route_call(
        &mut self,
        now: Timestamp,
        client: CtiClient,
        rid: Option<i64>,
        this_dn: String,
        connection_id: String,
        other_dn: String,
        extensions: &KeyValues,
    ) -> Result<Event, CtiError> {
        let h = self.find_call(&connection_id)?;
        let record = extensions.get("record").map(value_text);
        tracing::info!(client = client.0, rp = %this_dn, %connection_id, to = %other_dn, ?record, "RouteCall");
        let answer = Event::EventRouteUsed {
            reference_id: rid,
            connection_id: connection_id.clone(),
            this_dn,
            other_dn: other_dn.clone(),
        };
        let pending = match record.as_deref() {
            None => return Ok(answer),
            Some("source") if other_dn.is_empty() => {
                return Err((error_code::BAD_REQUEST, "RouteCall with record=source needs OtherDN".into()))
            }
            Some("source") => PendingRoute::Source(other_dn),
            Some("destination") => PendingRoute::Destination,
            Some("disable_destination") => {
                self.disable_destination(now, h);
                return Ok(answer);
            }
            Some(v) => {
                return Err((
                    error_code::BAD_EXTENSIONS,
                    format!("Extensions record must be source, destination or disable_destination, not {v:?}"),
                ))
            }
        };
        if let Some(c) = self.calls.get_mut(&h) {
            c.pending_route = Some(pending);
            if !self.routed.contains(&h) {
                self.routed.push(h);
            }
        }
        self.try_route(now, h);
        Ok(answer)
    }

    /// Starts the pending RouteCall recording of call `h` once the call to record is
    /// answered and the routed-to party is in it; until then it waits (until `h` ends).
    pub(super) fn try_route(&mut self, now: Timestamp, h: CallHandle) {
        let Some(c) = self.calls.get(&h) else { return };
        let Some(pending) = c.pending_route.clone() else { return };
        let (target, dn, customer_is_caller, trigger) = match &pending {
            PendingRoute::Source(dn) => {
                let Some(target) = self.source_target(h, dn) else { return };
                let Some(agent_is_caller) = self.calls.get(&target).and_then(|t| t.side_of(dn)) else { return };
                (target, dn.clone(), !agent_is_caller, Trigger::RouteSource)
            }
            // The DN that sent the call to the routing point is the caller; without a caller DN
            // the recording is named after the callee.
            PendingRoute::Destination => {
                let dn = c.caller.dn.clone().or_else(|| c.callee.dn.clone()).unwrap_or_else(|| "unknown".into());
                (h, dn, true, Trigger::RouteDestination)
            }
        };
        let Some(t) = self.calls.get(&target) else { return };
        if !t.established {
            return;
        }
        if let Some(rec) = &t.recording {
            tracing::info!(conn_id = %t.conn_id, conf_id = %rec.conf_id, "call already recorded; RouteCall recording not started");
        } else {
            tracing::info!(conn_id = %t.conn_id, %dn, trigger = trigger.name(), "RouteCall recording starts");
            self.start_auto(now, target, dn, customer_is_caller, trigger);
        }
        if let Some(c) = self.calls.get_mut(&h) {
            c.pending_route = None;
        }
    }

    /// The call a `source` route on call `h` records: `h` itself when `dn` is one of its
    /// parties, else the oldest live call between `dn` and `h`'s caller (the leg a B2BUA set up
    /// to the routed-to agent under another Call-ID).
    pub(super) fn source_target(&self, h: CallHandle, dn: &str) -> Option<CallHandle> {
        let c = self.calls.get(&h)?;
        if c.side_of(dn).is_some() {
            return Some(h);
        }
        let customer = c.caller.dn.as_deref()?;
        self.calls
            .iter()
            .filter(|(k, o)| **k != h && o.side_of(dn).is_some() && o.side_of(customer).is_some())
            .min_by_key(|(_, o)| o.seq)
            .map(|(k, _)| *k)
    }

    /// Calls whose pending `source` route waits for call `x`.
    pub(super) fn routes_waiting_for(&mut self, x: CallHandle) -> Vec<CallHandle> {
        let calls = &self.calls;
        self.routed.retain(|k| calls.get(k).is_some_and(|c| c.pending_route.is_some()));
        let mut v: Vec<(u64, CallHandle)> = self
            .routed
            .iter()
            .filter_map(|k| self.calls.get(k).map(|c| (k, c)))
            .filter(|(k, c)| {
                **k != x
                    && matches!(&c.pending_route, Some(PendingRoute::Source(dn)) if self.source_target(**k, dn) == Some(x))
            })
            .map(|(k, c)| (c.seq, *k))
            .collect();
        v.sort();
        v.into_iter().map(|(_, k)| k).collect()
    }

    fn disable_destination(&mut self, now: Timestamp, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.pending_route == Some(PendingRoute::Destination) {
            c.pending_route = None;
        }
        if c.recording.as_ref().is_some_and(|r| r.trigger == Trigger::RouteDestination) {
            if let Some(rec) = c.recording.take() {
                tracing::info!(conn_id = %c.conn_id, conf_id = %rec.conf_id, "destination recording disabled");
                if let Err(e) = self.roles.stop(now, rec.session) {
                    tracing::warn!(error = %e, "could not stop a recording");
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn private_service(
        &mut self,
        now: Timestamp,
        client: CtiClient,
        rid: Option<i64>,
        msg_id: i64,
        this_dn: String,
        connection_id: String,
        extensions: &KeyValues,
        reasons: &KeyValues,
    ) -> Result<Event, CtiError> {
        let cfg = &self.cti;
        let op = match msg_id {
            id if id == cfg.private_msg_start => PrivateOp::Start,
            id if id == cfg.private_msg_stop => PrivateOp::Stop,
            id if id == cfg.private_msg_pause => PrivateOp::Pause,
            id if id == cfg.private_msg_resume => PrivateOp::Resume,
            id => {
                return Err((
                    error_code::UNKNOWN_PRIVATE_MSG,
                    format!(
                        "PrivateMsgID {id} is unknown: start is {}, stop {}, pause {}, resume {}",
                        cfg.private_msg_start, cfg.private_msg_stop, cfg.private_msg_pause, cfg.private_msg_resume
                    ),
                ))
            }
        };
        if !self.regs.is_registered(client, &this_dn) {
            return Err((error_code::DN_NOT_REGISTERED, format!("DN {this_dn} is not registered by this client")));
        }
        let h = self.find_call(&connection_id)?;
        let c = &self.calls[&h];
        let Some(this_is_caller) = c.side_of(&this_dn) else {
            return Err((error_code::DN_NOT_IN_CALL, format!("DN {this_dn} is not a party of call {connection_id}")));
        };
        let reasons_text: Vec<(String, String)> = reasons.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
        tracing::info!(client = client.0, op = ?op, dn = %this_dn, %connection_id, reasons = ?reasons_text, "PrivateService");
        let conn = c.conn_id.clone();
        let answer = |state: &str, recording_id: String| Event::EventPrivateInfo {
            reference_id: rid,
            connection_id: conn.clone(),
            this_dn: this_dn.clone(),
            private_msg_id: msg_id,
            state: state.into(),
            recording_id: Some(recording_id),
        };
        let wrong = |s: String| Err((error_code::WRONG_STATE, s));
        match (op, &c.recording) {
            (PrivateOp::Start, _) if !c.established => {
                wrong(format!("cannot start: call {conn} is still ringing; start once it is answered"))
            }
            (PrivateOp::Start, Some(r)) => {
                wrong(format!("cannot start: call {conn} is already being recorded ({})", r.conf_id))
            }
            (PrivateOp::Start, None) => {
                let (conf_id, dest) = self.check_extensions(extensions)?;
                let ext: Vec<(String, String)> = extensions.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
                match self.start_recording(now, h, this_dn.clone(), !this_is_caller, Trigger::PrivateService, ext, conf_id, dest) {
                    Ok(conf_id) => {
                        if extensions.contains_key("id") {
                            self.used_ids.insert(conf_id.clone());
                        }
                        Ok(answer("recording", conf_id))
                    }
                    Err(StartError::NoMedia) => Err((
                        error_code::RECORDING_FAILED,
                        format!("cannot start: call {conn} has no media description on one side"),
                    )),
                    Err(StartError::Role(e @ (RoleError::ConfIdInUse(_) | RoleError::FileInUse(_)))) => {
                        Err((error_code::BAD_EXTENSIONS, e.to_string()))
                    }
                    Err(StartError::Role(e)) => Err((error_code::RECORDING_FAILED, e.to_string())),
                }
            }
            (_, None) => wrong(format!("cannot {}: call {conn} is not being recorded", op_verb(op))),
            (PrivateOp::Pause, Some(r)) if r.paused => wrong(format!("cannot pause: recording {} is already paused", r.conf_id)),
            (PrivateOp::Resume, Some(r)) if !r.paused => wrong(format!("cannot resume: recording {} is not paused", r.conf_id)),
            (PrivateOp::Pause | PrivateOp::Resume, Some(r)) => {
                let (session, conf_id) = (r.session, r.conf_id.clone());
                let pause = op == PrivateOp::Pause;
                let result = if pause { self.roles.pause(now, session) } else { self.roles.resume(now, session) };
                self.pull_roles();
                result.map_err(|e| (error_code::RECORDING_FAILED, e.to_string()))?;
                if let Some(rec) = self.calls.get_mut(&h).and_then(|c| c.recording.as_mut()) {
                    rec.paused = pause;
                }
                Ok(answer(if pause { "paused" } else { "recording" }, conf_id))
            }
            (PrivateOp::Stop, Some(_)) => {
                let Some(rec) = self.calls.get_mut(&h).and_then(|c| c.recording.take()) else {
                    return wrong(format!("cannot stop: call {conn} is not being recorded"));
                };
                // The session is gone even when the MCP refused the dialogend: report stopped
                // and log the refusal.
                if let Err(e) = self.roles.stop(now, rec.session) {
                    tracing::warn!(error = %e, "recording stop was refused; session closed anyway");
                }
                self.pull_roles();
                Ok(answer("stopped", rec.conf_id))
            }
        }
    }

    /// `id` (the conf-id) and `dest` (file or directory) from a start's Extensions.
    fn check_extensions(&self, extensions: &KeyValues) -> Result<(Option<String>, Option<PathBuf>), CtiError> {
        let conf_id = match extensions.get("id").map(value_text) {
            None => None,
            Some(id) => {
                let id = ConfId::new(id.clone()).map_err(|_| {
                    (
                        error_code::BAD_EXTENSIONS,
                        format!("Extensions id {id:?} cannot name a recording: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"),
                    )
                })?;
                if self.calls.values().any(|c| c.recording.as_ref().is_some_and(|r| r.conf_id == id.as_str())) {
                    return Err((error_code::BAD_EXTENSIONS, format!("Extensions id {id} is already used by a recording in progress")));
                }
                if self.used_ids.contains(id.as_str()) {
                    return Err((
                        error_code::BAD_EXTENSIONS,
                        format!("Extensions id {id} was already used by an earlier recording of this run: pick another"),
                    ));
                }
                Some(id.to_string())
            }
        };
        let dest = match extensions.get("dest").map(value_text) {
            None => None,
            Some(d) if d.trim().is_empty() || d.contains('\0') => {
                return Err((error_code::BAD_EXTENSIONS, "Extensions dest must be a directory or a .wav path".into()))
            }
            Some(d) => {
                let d = d.strip_prefix("file://").unwrap_or(&d);
                let path = self.out_dir.join(d);
                // Only under --out or a configured root, and no `..` to climb out of them.
                if path.components().any(|c| c == std::path::Component::ParentDir) {
                    return Err((error_code::BAD_EXTENSIONS, format!("Extensions dest {} must not contain '..'", path.display())));
                }
                if !std::iter::once(&self.out_dir).chain(&self.cti.dest_roots).any(|root| path.starts_with(root)) {
                    return Err((
                        error_code::BAD_EXTENSIONS,
                        format!("Extensions dest {} is outside the recording directories (--out and [cti] dest_roots)", path.display()),
                    ));
                }
                // A .wav path is the file; anything else is a directory the roles put
                // `<conf-id>.wav` into.
                Some(path)
            }
        };
        Ok((conf_id, dest))
    }
}

fn op_verb(op: PrivateOp) -> &'static str {
    match op {
        PrivateOp::Start => "start",
        PrivateOp::Stop => "stop",
        PrivateOp::Pause => "pause",
        PrivateOp::Resume => "resume",
    }
}
