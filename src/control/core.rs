//! The control core's front: takes SIP datagrams with their capture time, runs call tracking,
//! the trigger rules and the recording roles, and hands back what the dataplane must do.
//!
//! Poll order (quinn/str0m style): after every `handle_*` call, drain `poll_output` until it
//! returns `None`; check `poll_timeout` once per burst and call `handle_timeout` when due.

use super::calls::{CallEvent, CallHandle, CallTracker, CallTrackerConfig, Party};
use super::roles::{RecordRequest, RecordingRoles, RoleError, RoleOutput, RolesConfig, SessionId, TraceRecord};
use crate::cti::protocol::Event;
use callrec_pipeline::flow::FlowUpdate;
use callrec_pipeline::writer::WriterMsg;
use super::sip::SipMessage;
use super::triggers::{PartyView, StaticTriggers};
use crate::config::Config;
use callrec_pipeline::writer::OutputFormat;
use callrec_pipeline::Timestamp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A CTI client connection, numbered by the CTI server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtiClient(pub u64);

/// What the control core asks of the world, in order.
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
    /// Calls that ended (any reason).
    pub calls_ended: u64,
    /// Recordings started.
    pub recordings_started: u64,
    /// Recordings a trigger asked for but that could not start (no media, role error).
    pub recordings_failed: u64,
}

struct Recorded {
    session: SessionId,
    customer_is_caller: bool,
}

/// The control core.
pub struct ControlCore {
    tracker: CallTracker,
    triggers: StaticTriggers,
    roles: RecordingRoles,
    recorded: HashMap<CallHandle, Recorded>,
    counters: ControlCounters,
}

impl ControlCore {
    /// A control core with no calls; fails when the configured RM address cannot go into a
    /// Request-URI.
    pub fn new(cfg: ControlConfig) -> Result<Self, RoleError> {
        let roles = RecordingRoles::new(RolesConfig {
            resource_manager: cfg.config.recording.resource_manager.clone(),
            sip_server_addr: "127.0.0.1:5060".into(),
            rm_addr: cfg.config.recording.resource_manager.clone(),
            // Local MCPs live on their own loopback hosts so that no configured RM address
            // can collide with them on the in-process transport.
            mcp_addrs: (0..cfg.writers).map(|k| format!("127.0.{}.{}:5070", 1 + k / 250, 1 + k % 250)).collect(),
            writers: cfg.writers,
            out_dir: cfg.out_dir,
            format: cfg.format,
            conf_id_prefix: cfg.conf_id_prefix,
        })?;
        Ok(ControlCore {
            tracker: CallTracker::new(CallTrackerConfig::default()),
            triggers: StaticTriggers::new(&cfg.config),
            roles,
            recorded: HashMap::new(),
            counters: ControlCounters::default(),
        })
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
        self.tracker.handle(now, src, dst, &msg);
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
        self.roles.poll_output().map(Output::from)
    }

    /// Counters so far.
    pub fn counters(&self) -> ControlCounters {
        ControlCounters { calls_seen: self.tracker.stats().calls, ..self.counters }
    }

    fn drain_calls(&mut self, now: Timestamp) {
        while let Some(ev) = self.tracker.poll_event() {
            match ev {
                CallEvent::Answered { call, call_id, caller, callee, .. } => {
                    self.counters.calls_answered += 1;
                    self.on_answered(now, call, call_id, caller, callee);
                }
                CallEvent::MediaChanged { call, caller, callee, .. } => {
                    let Some(rec) = self.recorded.get(&call) else { continue };
                    let (customer, agent) = sides(rec.customer_is_caller, caller, callee);
                    if let (Some(c), Some(a)) = (customer.media, agent.media) {
                        if let Err(e) = self.roles.update_media(now, rec.session, c, a) {
                            tracing::warn!(error = %e, "could not move a recording's media");
                        }
                    }
                }
                CallEvent::Ended { call, .. } => {
                    self.counters.calls_ended += 1;
                    if let Some(rec) = self.recorded.remove(&call) {
                        if let Err(e) = self.roles.stop(now, rec.session) {
                            tracing::warn!(error = %e, "could not stop a recording");
                        }
                    }
                }
            }
        }
    }

    fn on_answered(&mut self, now: Timestamp, call: CallHandle, call_id: String, caller: Party, callee: Party) {
        let Some(decision) = self.triggers.decide(view(&caller), view(&callee)) else { return };
        let (customer, agent) = sides(decision.customer_is_caller, caller, callee);
        let (Some(customer_media), Some(agent_media)) = (customer.media, agent.media) else {
            self.counters.recordings_failed += 1;
            tracing::warn!(%call_id, dn = %decision.dn, "call to record has no media description on one side");
            return;
        };
        let request = RecordRequest {
            dn: decision.dn,
            call_ids: vec![call_id.clone()],
            customer: customer_media,
            agent: agent_media,
            trigger: decision.trigger.name().to_string(),
            dns: (customer.dn, agent.dn),
            extensions: Vec::new(),
            conf_id: None,
        };
        match self.roles.start(now, request) {
            Ok(session) => {
                self.counters.recordings_started += 1;
                self.recorded.insert(call, Recorded { session, customer_is_caller: decision.customer_is_caller });
            }
            Err(e) => {
                self.counters.recordings_failed += 1;
                tracing::warn!(%call_id, error = %e, "recording did not start");
            }
        }
    }
}

/// (customer, agent) from (caller, callee).
fn sides(customer_is_caller: bool, caller: Party, callee: Party) -> (Party, Party) {
    if customer_is_caller {
        (caller, callee)
    } else {
        (callee, caller)
    }
}

fn view(p: &Party) -> PartyView<'_> {
    PartyView { dn: p.dn.as_deref(), sip_addr: p.sip_addr }
}
