//! The control core's front: takes SIP datagrams with their capture time, runs call tracking,
//! the trigger rules and the recording roles, and hands back what the dataplane must do.
//!
//! CTI requests come in through `handle_cti` (see the `cti` child module); their answers and
//! the call events for registered clients come out of `poll_output` as [`Output::Cti`], in
//! order with the recording flow's outputs they caused.
//!
//! Poll order (quinn/str0m style): after every `handle_*` call, drain `poll_output` until it
//! returns `None`; check `poll_timeout` once per burst and call `handle_timeout` when due.

use super::calls::{CallEvent, CallHandle, CallTracker, CallTrackerConfig, Party};
use super::connection::ConnectionIds;
use super::on_demand::{Agents, Registrations};
use super::roles::{RecordRequest, RecordingRoles, RoleError, RoleOutput, RolesConfig, SessionId, TraceRecord};
use super::sip::SipMessage;
use super::triggers::{PartyView, StaticTriggers, TriggerKind};
use crate::config::{Config, CtiConfig};
use crate::cti::protocol::Event;
use callrec_pipeline::flow::FlowUpdate;
use callrec_pipeline::writer::OutputFormat;
use callrec_pipeline::writer::WriterMsg;
use callrec_pipeline::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A CTI client connection, numbered by the CTI server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtiClient(pub u64);

/// What the control core asks of the world, in order.
// Same trade-off as `RoleOutput`: a few control-path values per call; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// A flow-table change.
    Flow(FlowUpdate),
    /// A message for a writer's ring.
    Writer {
        /// The writer.
        writer: u16,
        /// The message.
        msg: WriterMsg,
    },
    /// A message between the recording roles, for `--sip-trace`.
    Trace(TraceRecord),
    /// An event for one CTI client.
    Cti {
        /// The client.
        client: CtiClient,
        /// The event.
        event: Event,
    },
}

impl From<RoleOutput> for Output {
    fn from(o: RoleOutput) -> Output {
        match o {
            RoleOutput::Flow(u) => Output::Flow(u),
            RoleOutput::Writer { writer, msg } => Output::Writer { writer, msg },
            RoleOutput::Trace(t) => Output::Trace(t),
        }
    }
}

/// What the control core is built from.
pub struct ControlConfig {
    /// The parsed configuration (triggers, RM address, ...).
    pub config: Config,
    /// Number of writer cores (local MCPs).
    pub writers: usize,
    /// Where recordings go.
    pub out_dir: PathBuf,
    /// File format asked for.
    pub format: OutputFormat,
    /// Prefix of generated conf-ids; make it unique per run (e.g. from the start time) so runs
    /// sharing an output directory never overwrite each other's files.
    pub conf_id_prefix: String,
}

/// Control-core counters for the summary.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ControlCounters {
    /// SIP messages parsed.
    pub sip_messages: u64,
    /// SIP datagrams that did not parse (skipped, other calls unaffected).
    pub malformed_sip: u64,
    /// Calls seen (initial INVITEs).
    pub calls_seen: u64,
    /// Calls answered.
    pub calls_answered: u64,
    /// Calls already in progress when first seen, picked up from a re-INVITE.
    pub calls_picked_up: u64,
    /// Calls that ended (any reason).
    pub calls_ended: u64,
    /// Recordings started.
    pub recordings_started: u64,
    /// Recordings a trigger asked for but that could not start (no media, role error).
    pub recordings_failed: u64,
}

/// What started a call's recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Static DN configuration (extension or trunk).
    Static(TriggerKind),
    /// PrivateService start.
    PrivateService,
    /// RouteCall record=source.
    RouteSource,
    /// RouteCall record=destination.
    RouteDestination,
    /// A recorded agent logged in on the DN.
    AgentLogin,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Static(k) => k.name(),
            Trigger::PrivateService => "private_service",
            Trigger::RouteSource => "route_source",
            Trigger::RouteDestination => "route_destination",
            Trigger::AgentLogin => "agent_login",
        }
    }
}

/// A recording in progress for one call (at most one per call), on the dialog that holds
/// the customer (see the `follow` module).
pub(crate) struct Recorded {
    session: SessionId,
    customer_is_caller: bool,
    trigger: Trigger,
    paused: bool,
    conf_id: String,
    /// The recorded DN (the agent's, for an agent-side recording: it ends when they leave).
    dn: String,
    /// When the customer talks to a conference focus: each agent's own dialog with it
    /// (dialog, agent is its caller), mixed into the right channel.
    agent_legs: Vec<(CallHandle, bool)>,
    /// Agents still in a dialog the customer has left (a transfer's referrer before its BYE):
    /// (dialog, agent is its caller), listed as present until that dialog ends.
    former: Vec<(CallHandle, bool)>,
    /// Source slot of each agent-side stream: (dialog, that agent is its caller, slot).
    slots: Vec<(CallHandle, bool, u8)>,
    /// Where the search for a free slot starts: slots rotate, so a newcomer does not take
    /// the slot just freed (the writer would see the same SSRC continue, since SSRCs
    /// collide, and hold its first packet back as a suspected jump).
    next_slot: u8,
    /// Every Call-ID that carried the recording's media.
    call_ids: Vec<String>,
    /// Handed to a dialog that has not been answered yet: its media counts from the answer.
    awaiting_answer: bool,
}

/// A RouteCall recording waiting for the call to be answered (or to reach the agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PendingRoute {
    /// Record this DN, agent side, once it is a party of the answered call.
    Source(String),
    /// Record the caller (the DN that sent the call to the routing point), customer side.
    Destination,
}

/// A call as the core knows it: the tracker's parties plus its CTI name and recording.
pub(crate) struct LiveCall {
    seq: u64,
    conn_id: String,
    call_id: String,
    caller: Party,
    callee: Party,
    established: bool,
    recording: Option<Recorded>,
    pending_route: Option<PendingRoute>,
    /// A REFER sent in this dialog, waiting for the INVITE it asks for.
    refer: Option<follow::PendingRefer>,
    /// `user@host` of the conference focus this dialog's callee answered as.
    focus: Option<String>,
    /// The recorded call whose agent placed this dialog (consultation, or the second leg of
    /// a three-way call the agent's phone mixes).
    consult_of: Option<CallHandle>,
}

impl LiveCall {
    /// Whether `dn` is the caller (Some(true)), the callee (Some(false)) or neither.
    fn side_of(&self, dn: &str) -> Option<bool> {
        if self.caller.dn.as_deref() == Some(dn) {
            Some(true)
        } else if self.callee.dn.as_deref() == Some(dn) {
            Some(false)
        } else {
            None
        }
    }
}

/// Why a recording could not start.
pub(crate) enum StartError {
    /// One side has no SDP yet.
    NoMedia,
    /// The roles refused.
    Role(RoleError),
}

/// The control core.
pub struct ControlCore {
    tracker: CallTracker,
    triggers: StaticTriggers,
    roles: RecordingRoles,
    calls: HashMap<CallHandle, LiveCall>,
    by_conn: HashMap<String, CallHandle>,
    conn_ids: ConnectionIds,
    next_seq: u64,
    regs: Registrations,
    agents: Agents,
    cti: CtiConfig,
    /// Dialogs that had a RouteCall recording waiting (`pending_route`), so an answer looks
    /// at those only.
    routed: Vec<CallHandle>,
    /// Indexes over `calls` for following calls across dialogs.
    links: follow::Links,
    /// Redirected INVITEs waiting for the caller's next try.
    redirects: Vec<follow::Redirect>,
    /// Recording ids (`Extensions.id`) used this run: a reused one would overwrite its file.
    used_ids: HashSet<String>,
    out_dir: PathBuf,
    out: VecDeque<Output>,
    counters: ControlCounters,
}

impl ControlCore {
    /// A control core with no calls; fails when the configured RM address cannot go into a
    /// Request-URI. ConnectionIDs are seeded from `conf_id_prefix` (unique per run).
    pub fn new(cfg: ControlConfig) -> Result<Self, RoleError> {
        let conn_ids = ConnectionIds::from_label(&cfg.conf_id_prefix);
        let roles = RecordingRoles::new(RolesConfig {
            resource_manager: cfg.config.recording.resource_manager.clone(),
            sip_server_addr: "127.0.0.1:5060".into(),
            rm_addr: cfg.config.recording.resource_manager.clone(),
            // Local MCPs live on their own loopback hosts so that no configured RM address
            // can collide with them on the in-process transport.
            mcp_addrs: (0..cfg.writers).map(|k| format!("127.0.{}.{}:5070", 1 + k / 250, 1 + k % 250)).collect(),
            writers: cfg.writers,
            out_dir: cfg.out_dir.clone(),
            format: cfg.format,
            conf_id_prefix: cfg.conf_id_prefix,
        })?;
        Ok(ControlCore {
            tracker: CallTracker::new(CallTrackerConfig::default()),
            triggers: StaticTriggers::new(&cfg.config),
            roles,
            calls: HashMap::new(),
            by_conn: HashMap::new(),
            conn_ids,
            next_seq: 0,
            regs: Registrations::default(),
            agents: Agents::new(cfg.config.agents.iter().filter(|a| a.record).map(|a| a.id.as_str())),
            cti: cfg.config.cti.clone(),
            used_ids: HashSet::new(),
            redirects: Vec::new(),
            links: follow::Links::default(),
            routed: Vec::new(),
            out_dir: cfg.out_dir,
            out: VecDeque::new(),
            counters: ControlCounters::default(),
        })
    }

    /// A core for sans-IO tests: the TOML configuration, one writer, files under /rec.
    #[cfg(test)]
    pub(crate) fn for_tests(toml: &str) -> ControlCore {
        ControlCore::new(ControlConfig {
            config: Config::parse(toml).expect("test configuration"),
            writers: 1,
            out_dir: PathBuf::from("/rec"),
            format: OutputFormat::G711,
            conf_id_prefix: "callrec".into(),
        })
        .expect("test core")
    }

    /// One SIP datagram from `src` to `dst`, captured at `now`. Malformed SIP is counted and
    /// skipped; it never touches other calls.
    pub fn handle_sip(&mut self, now: Timestamp, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let msg = match SipMessage::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed_sip += 1;
                tracing::debug!(%src, %dst, error = %e, "skipped malformed SIP");
                return;
            }
        };
        self.counters.sip_messages += 1;
        let known = self.tracker.find(&msg.call_id).is_some();
        self.tracker.handle(now, src, dst, &msg);
        if !known {
            // An initial INVITE creates a call and no tracker event: the call becomes visible
            // to CTI here, before it is answered.
            if let Some(h) = self.tracker.find(&msg.call_id) {
                self.on_new_call(now, h);
            }
        }
        self.drain_calls(now);
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.tracker.poll_timeout()
    }

    /// Runs timers due at `now` (abandoned calls end).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.tracker.handle_timeout(now);
        self.drain_calls(now);
    }

    /// End of input: every call ends, every recording stops.
    pub fn finish(&mut self, now: Timestamp) {
        self.tracker.end_all(now);
        self.drain_calls(now);
    }

    /// The next thing for the dataplane (or a CTI client) to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.pull_roles();
        self.out.pop_front()
    }

    /// Recording sessions in progress.
    pub fn active_recordings(&self) -> usize {
        self.roles.active_sessions()
    }

    /// Counters so far.
    pub fn counters(&self) -> ControlCounters {
        let s = self.tracker.stats();
        ControlCounters { calls_seen: s.calls, calls_picked_up: s.picked_up, ..self.counters }
    }

    /// The ConnectionID of the call with this SIP Call-ID, while it is tracked.
    pub fn connection_id(&self, call_id: &str) -> Option<&str> {
        let h = self.tracker.find(call_id)?;
        self.calls.get(&h).map(|c| c.conn_id.as_str())
    }

    /// Moves the roles' outputs into the queue, keeping them in front of whatever the core
    /// queues next.
    fn pull_roles(&mut self) {
        while let Some(o) = self.roles.poll_output() {
            self.out.push_back(o.into());
        }
    }

    fn on_new_call(&mut self, now: Timestamp, h: CallHandle) {
        let link = self.find_link(now, h);
        let Some(c) = self.tracker.call(h) else { return };
        let consult_of = if link.is_none() { self.consultation_of(h) } else { None };
        let (conn_id, pending_route) = match link {
            Some(l) => {
                tracing::debug!(call_id = %c.call_id, conn_id = %l.conn_id, from = ?l.from, "dialog continues a call");
                (l.conn_id, l.pending_route)
            }
            None => (self.conn_ids.next_id(), None),
        };
        let call = LiveCall {
            seq: self.next_seq,
            conn_id: conn_id.clone(),
            call_id: c.call_id.clone(),
            caller: c.caller.clone(),
            callee: c.callee.clone(),
            established: false,
            recording: None,
            pending_route,
            refer: None,
            focus: None,
            consult_of,
        };
        self.next_seq += 1;
        tracing::debug!(call_id = %c.call_id, %conn_id, "new call");
        let evs = call_events(&self.regs, &call, CallNote::Ringing);
        self.out.extend(evs);
        self.by_conn.entry(conn_id).or_insert(h);
        self.links.add(h, &call);
        if call.pending_route.is_some() {
            self.routed.push(h);
        }
        self.calls.insert(h, call);
    }

    fn drain_calls(&mut self, now: Timestamp) {
        while let Some(ev) = self.tracker.poll_event() {
            match ev {
                CallEvent::Answered { call, caller, callee, .. } => {
                    self.counters.calls_answered += 1;
                    self.on_answered(now, call, caller, callee);
                }
                CallEvent::MediaChanged { call, caller, callee, .. } => {
                    let Some(c) = self.calls.get_mut(&call) else { continue };
                    c.caller = caller;
                    c.callee = callee;
                    let conn_id = c.conn_id.clone();
                    // The recording this dialog's media feeds: its own, or the one of the
                    // customer's dialog it is a conference leg of.
                    let home = if c.recording.is_some() {
                        Some(call)
                    } else {
                        self.recording_home(&conn_id).filter(|k| {
                            self.calls.get(k).and_then(|hc| hc.recording.as_ref()).is_some_and(|r| r.agent_legs.iter().any(|(l, _)| *l == call))
                        })
                    };
                    if let Some(home) = home {
                        self.refresh_streams(now, home);
                    }
                }
                CallEvent::Refer { call, by_caller, target, at } => self.on_refer(call, by_caller, target, at),
                CallEvent::Redirected { call, call_id, caller, contact_user, .. } => {
                    self.on_redirect(now, call, call_id, caller, contact_user)
                }
                CallEvent::Ended { call, .. } => {
                    self.counters.calls_ended += 1;
                    let Some(mut c) = self.calls.remove(&call) else { continue };
                    self.links.remove(call, &c);
                    self.leave_legs(now, call, &c);
                    if let Some(rec) = c.recording.take() {
                        if let Some(rec) = self.hand_over(now, &c, rec) {
                            if let Err(e) = self.roles.stop(now, rec.session) {
                                tracing::warn!(error = %e, "could not stop a recording");
                            }
                            self.pull_roles();
                        }
                    }
                    if let Some(home) = c.consult_of {
                        self.refresh_streams(now, home);
                    }
                    if self.by_conn.get(&c.conn_id) == Some(&call) {
                        let next = self.recording_home(&c.conn_id).or_else(|| {
                            self.links.members(&c.conn_id).iter().copied().filter(|k| self.calls.contains_key(k)).max_by_key(|k| self.calls.get(k).map(|o| o.seq))
                        });
                        match next {
                            Some(k) => self.by_conn.insert(c.conn_id.clone(), k),
                            None => self.by_conn.remove(&c.conn_id),
                        };
                    }
                    let evs = call_events(&self.regs, &c, CallNote::Released);
                    self.out.extend(evs);
                }
            }
        }
    }

    fn on_answered(&mut self, now: Timestamp, h: CallHandle, caller: Party, callee: Party) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        c.caller = caller;
        c.callee = callee;
        c.established = true;
        self.notify_call(h, CallNote::Established);
        if self.follow_on_answer(now, h) {
            return;
        }
        let Some(c) = self.calls.get(&h) else { return };
        if let Some(d) = self.triggers.decide(view(&c.caller), view(&c.callee)) {
            self.start_auto(now, h, d.dn, d.customer_is_caller, Trigger::Static(d.trigger));
            return;
        }
        if c.pending_route.is_some() {
            self.try_route(now, h);
        }
        for waiting in self.routes_waiting_for(h) {
            self.try_route(now, waiting);
        }
        let Some(c) = self.calls.get(&h).filter(|c| c.recording.is_none()) else { return };
        let agent_side = [(false, &c.callee), (true, &c.caller)].into_iter().find_map(|(is_caller, p)| {
            let dn = p.dn.as_deref()?;
            self.agents.recorded_on(dn).map(|agent| (is_caller, dn.to_string(), agent.to_string()))
        });
        if let Some((agent_is_caller, dn, agent)) = agent_side {
            tracing::info!(%dn, %agent, conn_id = %c.conn_id, "recording a logged-in agent's call");
            self.start_auto(now, h, dn, !agent_is_caller, Trigger::AgentLogin);
        }
    }

    /// Starts a recording no client waits for: failures are counted and logged.
    fn start_auto(&mut self, now: Timestamp, h: CallHandle, dn: String, customer_is_caller: bool, trigger: Trigger) {
        let call_id = self.calls.get(&h).map(|c| c.call_id.clone()).unwrap_or_default();
        match self.start_recording(now, h, dn.clone(), customer_is_caller, trigger, Vec::new(), None, None) {
            Ok(_) => {}
            Err(StartError::NoMedia) => {
                tracing::warn!(%call_id, %dn, "call to record has no media description on one side");
            }
            Err(StartError::Role(e)) => tracing::warn!(%call_id, error = %e, "recording did not start"),
        }
    }

    /// Starts recording call `h` for `dn`; the roles' outputs are queued before this returns.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_recording(
        &mut self,
        now: Timestamp,
        h: CallHandle,
        dn: String,
        customer_is_caller: bool,
        trigger: Trigger,
        extensions: Vec<(String, String)>,
        conf_id: Option<String>,
        dest: Option<PathBuf>,
    ) -> Result<String, StartError> {
        let Some(c) = self.calls.get(&h) else { return Err(StartError::NoMedia) };
        let (customer, agent) = sides(customer_is_caller, &c.caller, &c.callee);
        let (Some(customer_media), Some(agent_media)) = (customer.media.clone(), agent.media.clone()) else {
            self.counters.recordings_failed += 1;
            return Err(StartError::NoMedia);
        };
        let request_dn = dn.clone();
        let request = RecordRequest {
            dn,
            call_ids: vec![c.call_id.clone()],
            customer: customer_media,
            agent: agent_media,
            trigger: trigger.name().to_string(),
            dns: (customer.dn.clone(), agent.dn.clone()),
            extensions,
            conf_id,
            dest,
            connection_id: Some(c.conn_id.clone()),
        };
        let result = self.roles.start(now, request);
        self.pull_roles();
        match result {
            Ok(session) => {
                self.counters.recordings_started += 1;
                let conf_id = self.roles.conf_id(session).map(|c| c.to_string()).unwrap_or_default();
                if let Some(c) = self.calls.get_mut(&h) {
                    c.recording = Some(Recorded {
                        session,
                        customer_is_caller,
                        trigger,
                        paused: false,
                        conf_id: conf_id.clone(),
                        dn: request_dn,
                        agent_legs: Vec::new(),
                        former: Vec::new(),
                        slots: vec![(h, !customer_is_caller, 0)],
                        next_slot: 1,
                        call_ids: vec![c.call_id.clone()],
                        awaiting_answer: false,
                    });
                    c.pending_route = None;
                    self.by_conn.insert(c.conn_id.clone(), h);
                    let agent_dn = if customer_is_caller { c.callee.dn.clone() } else { c.caller.dn.clone() };
                    self.links.note_home(h, agent_dn.as_deref());
                }
                Ok(conf_id)
            }
            Err(e) => {
                self.counters.recordings_failed += 1;
                Err(StartError::Role(e))
            }
        }
    }

    /// Queues the events about call `h` for every client registered on one of its DNs.
    fn notify_call(&mut self, h: CallHandle, note: CallNote) {
        if let Some(c) = self.calls.get(&h) {
            let evs = call_events(&self.regs, c, note);
            self.out.extend(evs);
        }
    }
}

/// Events about a call for every client registered on one of its DNs: ThisDN is the
/// registered DN, OtherDN the other party's.
fn call_events(regs: &Registrations, c: &LiveCall, note: CallNote) -> Vec<Output> {
    let caller = c.caller.dn.as_deref();
    let callee = c.callee.dn.as_deref();
    let mut pairs = vec![(caller, callee)];
    if callee != caller {
        pairs.push((callee, caller));
    }
    let mut out = Vec::new();
    for (this, other) in pairs {
        let Some(this) = this else { continue };
        for client in regs.clients(this) {
            let (connection_id, this_dn, other_dn) =
                (c.conn_id.clone(), this.to_string(), other.unwrap_or_default().to_string());
            let event = match note {
                CallNote::Ringing => Event::EventRinging { connection_id, this_dn, other_dn },
                CallNote::Established => Event::EventEstablished { connection_id, this_dn, other_dn },
                CallNote::Released => Event::EventReleased { connection_id, this_dn, other_dn },
            };
            out.push(Output::Cti { client, event });
        }
    }
    out
}

#[derive(Clone, Copy)]
enum CallNote {
    Ringing,
    Established,
    Released,
}

/// (customer, agent) from (caller, callee).
fn sides<'a>(customer_is_caller: bool, caller: &'a Party, callee: &'a Party) -> (&'a Party, &'a Party) {
    if customer_is_caller {
        (caller, callee)
    } else {
        (callee, caller)
    }
}

fn view(p: &Party) -> PartyView<'_> {
    PartyView { dn: p.dn.as_deref(), sip_addr: p.sip_addr }
}

mod cti;
mod follow;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod follow_tests;
