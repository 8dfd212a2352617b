//! Following a call through transfers, redirects and conferences: which new dialog continues
//! which call (REFER then INVITE, Replaces, 3xx then INVITE, dialogs to one conference focus),
//! and where its recording goes when parties come and leave.
//!
//! The model: a call (one ConnectionID) is a set of SIP dialogs over time. Its recording lives
//! on the dialog that holds the customer (the "home"); when the customer's media moves to a new
//! dialog (a transfer target answered), the recording moves with it and the MCP gets a
//! re-INVITE with the new streams, so the same file goes on. A customer-side recording follows
//! the customer through any number of transfers; an agent-side one stays with its agent and
//! ends when the agent leaves, unless the party the call moves to is itself recorded. When the
//! customer talks to a conference focus, the agent side is every agent's own dialog with that
//! focus, mixed into the right channel.

use super::{ControlCore, LiveCall, PendingRoute, Recorded, Trigger};
use crate::control::calls::{CallHandle, Party};
use crate::control::roles::{RecordStreams, StreamSpec};
use crate::control::sip::ReferTarget;
use crate::control::triggers::TriggerKind;
use callrec_pipeline::writer::MAX_SOURCES;
use callrec_pipeline::Timestamp;
use std::collections::HashMap;

/// How long a REFER or a redirect waits for the INVITE it asks for: 64*T1, as long as an
/// INVITE transaction lives.
const LINK_WINDOW_NS: i64 = 32_000_000_000;

/// A REFER seen in a dialog, waiting for its recipient's INVITE.
#[derive(Debug, Clone)]
pub(crate) struct PendingRefer {
    /// The REFER's recipient: the party that will INVITE the target.
    referee: Party,
    target: ReferTarget,
    at: Timestamp,
}

/// A redirected INVITE (3xx), waiting for the caller's next INVITE.
#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    at: Timestamp,
    call_id: String,
    caller: Party,
    contact_user: Option<String>,
    conn_id: String,
    pending_route: Option<PendingRoute>,
}

/// Indexes over the live dialogs, so following a call costs the same with 10 or 10,000 calls
/// tracked (no walk over every call per message).
#[derive(Default)]
pub(crate) struct Links {
    /// The dialogs of each call (ConnectionID).
    members: HashMap<String, Vec<CallHandle>>,
    /// Dialogs with a REFER waiting for its INVITE.
    refers: Vec<CallHandle>,
    /// Dialogs to each conference focus (`user@host`).
    focus: HashMap<String, Vec<CallHandle>>,
    /// Dialogs placed by the recorded agent of a dialog (consultations, three-way legs).
    consults: HashMap<CallHandle, Vec<CallHandle>>,
    /// Dialogs that got a recording, by the DN of their agent side (checked when read: the
    /// recording may have moved on since).
    agent_homes: HashMap<String, Vec<CallHandle>>,
}

fn push(map: &mut HashMap<String, Vec<CallHandle>>, key: &str, h: CallHandle) {
    let v = map.entry(key.to_string()).or_default();
    if !v.contains(&h) {
        v.push(h);
    }
}

fn pull(map: &mut HashMap<String, Vec<CallHandle>>, key: &str, h: CallHandle) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|k| *k != h);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl Links {
    /// A new dialog of call `conn_id`.
    pub fn add(&mut self, h: CallHandle, c: &LiveCall) {
        push(&mut self.members, &c.conn_id, h);
        if let Some(home) = c.consult_of {
            let v = self.consults.entry(home).or_default();
            v.push(h);
        }
    }

    /// Dialog `h` (already out of `calls`) is gone.
    pub fn remove(&mut self, h: CallHandle, c: &LiveCall) {
        pull(&mut self.members, &c.conn_id, h);
        self.refers.retain(|k| *k != h);
        if let Some(f) = &c.focus {
            pull(&mut self.focus, f, h);
        }
        if let Some(home) = c.consult_of {
            if let Some(v) = self.consults.get_mut(&home) {
                v.retain(|k| *k != h);
                if v.is_empty() {
                    self.consults.remove(&home);
                }
            }
        }
        self.consults.remove(&h);
        for dn in [&c.caller.dn, &c.callee.dn].into_iter().flatten() {
            pull(&mut self.agent_homes, dn, h);
        }
    }

    /// Dialog `h` holds a recording whose agent side is `dn`.
    pub fn note_home(&mut self, h: CallHandle, dn: Option<&str>) {
        if let Some(dn) = dn {
            push(&mut self.agent_homes, dn, h);
        }
    }

    /// Dialog `h` moves from call `old` to call `new`.
    fn regroup(&mut self, h: CallHandle, old: &str, new: &str) {
        pull(&mut self.members, old, h);
        push(&mut self.members, new, h);
    }

    /// The dialogs of call `conn_id`.
    pub fn members(&self, conn_id: &str) -> &[CallHandle] {
        self.members.get(conn_id).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// How a new dialog joins an existing call.
pub(crate) struct Link {
    /// The dialog it continues, when still live.
    pub from: Option<CallHandle>,
    /// The call's ConnectionID.
    pub conn_id: String,
    /// A RouteCall recording that waited on the redirected dialog.
    pub pending_route: Option<PendingRoute>,
}

/// Same party in two dialogs: same DN when both have one, else same signalling host.
fn same_party(a: &Party, b: &Party) -> bool {
    match (&a.dn, &b.dn) {
        (Some(x), Some(y)) => x == y,
        _ => a.sip_addr.ip() == b.sip_addr.ip(),
    }
}

/// Whether `party` is the caller (Some(true)) or the callee (Some(false)) of dialog `c`.
fn side_in(c: &LiveCall, party: &Party) -> Option<bool> {
    if same_party(&c.caller, party) {
        Some(true)
    } else if same_party(&c.callee, party) {
        Some(false)
    } else {
        None
    }
}

fn within(now: Timestamp, at: Timestamp) -> bool {
    now.nanos_since(at) < LINK_WINDOW_NS
}

impl Trigger {
    /// Whether the recorded party is agent side (the recording follows that agent).
    pub(super) fn agent_side(self) -> bool {
        !matches!(self, Trigger::Static(TriggerKind::Trunk) | Trigger::RouteDestination)
    }
}

impl ControlCore {
    /// A REFER in dialog `h`: its recipient is expected to INVITE the target.
    pub(super) fn on_refer(&mut self, h: CallHandle, by_caller: bool, target: ReferTarget, at: Timestamp) {
        let Some(c) = self.calls.get_mut(&h) else { return };
        let referee = if by_caller { c.callee.clone() } else { c.caller.clone() };
        tracing::debug!(call_id = %c.call_id, target = ?target.target, "REFER: waiting for the transfer's INVITE");
        c.refer = Some(PendingRefer { referee, target, at });
        if !self.links.refers.contains(&h) {
            self.links.refers.push(h);
        }
    }

    /// A 3xx to dialog `h`'s INVITE: the caller's next INVITE continues the call.
    pub(super) fn on_redirect(&mut self, now: Timestamp, h: CallHandle, call_id: String, caller: Party, contact_user: Option<String>) {
        let Some(c) = self.calls.get(&h) else { return };
        self.redirects.retain(|r| within(now, r.at));
        self.redirects.push(Redirect {
            at: now,
            call_id,
            caller,
            contact_user,
            conn_id: c.conn_id.clone(),
            pending_route: c.pending_route.clone(),
        });
    }

    /// For a new dialog `h` (initial INVITE just seen): the call it continues, if any.
    pub(super) fn find_link(&mut self, now: Timestamp, h: CallHandle) -> Option<Link> {
        let new = self.tracker.call(h)?;
        let (caller, callee_dn) = (new.caller.clone(), new.callee.dn.clone());
        let (replaces, target) = (new.replaces.clone(), new.request_target.clone());
        let call_id = new.call_id.clone();
        // The INVITE a REFER asked for: from the REFER's recipient, to its target.
        let calls = &self.calls;
        self.links.refers.retain(|k| calls.get(k).is_some_and(|c| c.refer.as_ref().is_some_and(|r| within(now, r.at))));
        let by_refer = self
            .links
            .refers
            .iter()
            .filter_map(|k| calls.get(k).map(|c| (*k, c)))
            .filter_map(|(k, c)| Some((k, c, c.refer.as_ref()?)))
            .filter(|(_, _, r)| within(now, r.at) && same_party(&r.referee, &caller))
            .filter(|(_, _, r)| {
                (r.target.user.is_some() && r.target.user == callee_dn)
                    || (r.target.target.is_some() && r.target.target == target)
            })
            .max_by_key(|(_, _, r)| r.at)
            .map(|(k, c, _)| (k, c.conn_id.clone()));
        if let Some((k, conn_id)) = by_refer {
            if let Some(c) = self.calls.get_mut(&k) {
                c.refer = None;
            }
            self.links.refers.retain(|r| *r != k);
            return Some(Link { from: Some(k), conn_id, pending_route: None });
        }
        // INVITE with Replaces: it takes the named dialog's place.
        if let Some(k) = replaces.and_then(|cid| self.tracker.find(&cid)) {
            if let Some(c) = self.calls.get(&k) {
                return Some(Link { from: Some(k), conn_id: c.conn_id.clone(), pending_route: None });
            }
        }
        // The caller trying the Contact of a 3xx (same Call-ID, or a new one to that user).
        if let Some(i) = self.redirects.iter().position(|r| {
            within(now, r.at)
                && (r.call_id == call_id
                    || (same_party(&r.caller, &caller) && r.contact_user.is_some() && r.contact_user == callee_dn))
        }) {
            let r = self.redirects.remove(i);
            return Some(Link { from: None, conn_id: r.conn_id, pending_route: r.pending_route });
        }
        // Another party joining a conference focus one of our calls talks to.
        let t = target?;
        let (k, c) = self
            .links
            .focus
            .get(&t)?
            .iter()
            .filter_map(|k| self.calls.get(k).map(|c| (*k, c)))
            .max_by_key(|(_, c)| (self.recording_home(&c.conn_id).is_some(), c.seq))?;
        Some(Link { from: Some(k), conn_id: c.conn_id.clone(), pending_route: None })
    }

    /// For a new dialog `h` that continues no call: the recorded call whose agent-side party
    /// placed it (a consultation, or the second leg of a three-way call the agent's phone
    /// mixes), if any.
    pub(super) fn consultation_of(&self, h: CallHandle) -> Option<CallHandle> {
        let new = self.tracker.call(h)?;
        let dn = new.caller.dn.as_deref()?;
        self.links
            .agent_homes
            .get(dn)?
            .iter()
            .filter_map(|k| self.calls.get(k).map(|c| (*k, c)))
            .filter(|(_, c)| c.established && c.focus.is_none())
            .find(|(_, c)| {
                c.recording.as_ref().is_some_and(|r| {
                    let agent = if r.customer_is_caller { &c.callee } else { &c.caller };
                    agent.dn.as_deref() == Some(dn)
                })
            })
            .map(|(k, _)| k)
    }

    /// The live dialog of call `conn_id` that holds its recording.
    pub(super) fn recording_home(&self, conn_id: &str) -> Option<CallHandle> {
        self.links.members(conn_id).iter().copied().find(|k| self.calls.get(k).is_some_and(|c| c.recording.is_some()))
    }

    /// Whether `dn` is an agent whose calls are recorded (Extension DN or logged-in agent).
    fn recorded_agent(&self, dn: Option<&str>) -> bool {
        dn.is_some_and(|d| self.triggers.is_recorded_extension(d) || self.agents.recorded_on(d).is_some())
    }

    /// Dialog `h` was answered. Returns true when the call it belongs to is already being
    /// recorded (the recording moved here, gained a leg, or stays with its agent elsewhere),
    /// so no trigger may start another.
    pub(super) fn follow_on_answer(&mut self, now: Timestamp, h: CallHandle) -> bool {
        let focus = self.tracker.call(h).filter(|c| c.callee_focus).and_then(|c| c.request_target.clone());
        let Some(c) = self.calls.get_mut(&h) else { return false };
        c.focus = focus.clone();
        if let Some(f) = &focus {
            push(&mut self.links.focus, f, h);
        }
        // A recording handed over while this dialog rang.
        if let Some(rec) = c.recording.as_mut().filter(|r| r.awaiting_answer) {
            rec.awaiting_answer = false;
            if !rec.call_ids.contains(&c.call_id) {
                rec.call_ids.push(c.call_id.clone());
            }
            if c.focus.is_some() {
                self.adopt_focus_legs(h);
            }
            self.refresh_streams(now, h);
            return true;
        }
        let conn_id = c.conn_id.clone();
        if let Some(home) = c.consult_of.filter(|_| focus.is_none()) {
            // The agent's phone may mix this leg into the recorded call: list its party.
            self.refresh_streams(now, home);
            return false;
        }
        let Some(home) = self.recording_home(&conn_id).filter(|k| *k != h) else {
            // Dialogs to a focus join the recording of a call that reaches the focus; they
            // start none of their own.
            return focus.is_some();
        };
        let Some((customer, rec_agent_side, rec_dn, home_focus)) = self.calls.get(&home).and_then(|hc| {
            let rec = hc.recording.as_ref()?;
            let cust = if rec.customer_is_caller { &hc.caller } else { &hc.callee };
            Some((cust.clone(), rec.trigger.agent_side(), rec.dn.clone(), hc.focus.clone()))
        }) else {
            return false;
        };
        let Some(new) = self.calls.get(&h) else { return false };
        if let Some(customer_is_caller) = side_in(new, &customer) {
            let other = if customer_is_caller { &new.callee } else { &new.caller };
            let other_dn = other.dn.clone();
            let agent_stays_in = |this: &ControlCore| {
                focus.as_ref().is_some_and(|f| {
                    this.links.focus.get(f).is_some_and(|v| {
                        v.iter().any(|k| this.calls.get(k).is_some_and(|l| l.caller.dn.as_deref() == Some(&rec_dn)))
                    })
                })
            };
            let follows = !rec_agent_side
                || other_dn.as_deref() == Some(rec_dn.as_str())
                || self.recorded_agent(other_dn.as_deref())
                || agent_stays_in(self);
            if follows {
                let new_dn = (rec_agent_side && other_dn.as_deref() != Some(rec_dn.as_str()) && self.recorded_agent(other_dn.as_deref()))
                    .then_some(other_dn)
                    .flatten();
                self.move_recording(now, home, h, customer_is_caller, new_dn);
            }
            return true;
        }
        // An agent's own dialog with the focus the customer talks to.
        if focus.is_some() && focus == home_focus {
            if let Some(hc) = self.calls.get_mut(&home) {
                if let Some(rec) = hc.recording.as_mut() {
                    rec.agent_legs.push((h, true));
                }
            }
            self.note_call_id(home, h);
            self.refresh_streams(now, home);
        }
        true
    }

    /// Moves the recording of dialog `from` to dialog `to`, where the customer is the caller
    /// when `customer_is_caller`; an agent-side recording now follows `new_dn` when given.
    fn move_recording(&mut self, now: Timestamp, from: CallHandle, to: CallHandle, customer_is_caller: bool, new_dn: Option<String>) {
        let Some(mut rec) = self.calls.get_mut(&from).and_then(|c| c.recording.take()) else { return };
        // The agent the customer leaves stays listed until its own dialog ends.
        if let Some(c) = self.calls.get(&from).filter(|c| c.established && c.focus.is_none()) {
            let agent_is_caller = !rec.customer_is_caller;
            let agent = if agent_is_caller { &c.caller } else { &c.callee };
            if agent.dn.is_some() {
                rec.former.push((from, agent_is_caller));
            }
        }
        if let Some(rec) = self.install_recording(now, to, rec, customer_is_caller, new_dn) {
            // `to` vanished meanwhile: put it back where it was.
            if let Some(c) = self.calls.get_mut(&from) {
                c.recording = Some(rec);
            }
        }
    }

    /// Puts recording `rec` on dialog `to` (customer on the caller side when
    /// `customer_is_caller`); gives it back if `to` is gone.
    fn install_recording(
        &mut self,
        now: Timestamp,
        to: CallHandle,
        mut rec: Recorded,
        customer_is_caller: bool,
        new_dn: Option<String>,
    ) -> Option<Recorded> {
        let Some(c) = self.calls.get_mut(&to) else { return Some(rec) };
        rec.customer_is_caller = customer_is_caller;
        rec.agent_legs.clear();
        if let Some(dn) = new_dn {
            rec.dn = dn;
        }
        tracing::info!(conf_id = %rec.conf_id, call_id = %c.call_id, "recording follows the call to another dialog");
        if !rec.call_ids.contains(&c.call_id) {
            rec.call_ids.push(c.call_id.clone());
        }
        let established = c.established;
        rec.awaiting_answer = !established;
        let agent_dn = if customer_is_caller { c.callee.dn.clone() } else { c.caller.dn.clone() };
        c.recording = Some(rec);
        self.links.note_home(to, agent_dn.as_deref());
        self.by_conn.insert(c.conn_id.clone(), to);
        if established {
            if self.calls.get(&to).is_some_and(|c| c.focus.is_some()) {
                self.adopt_focus_legs(to);
            }
            self.refresh_streams(now, to);
        }
        None
    }

    /// The customer's dialog `home` reaches a focus: every other live dialog with that focus
    /// becomes an agent leg of its recording (and part of its call).
    fn adopt_focus_legs(&mut self, home: CallHandle) {
        let Some(hc) = self.calls.get(&home) else { return };
        let (Some(f), conn_id) = (hc.focus.clone(), hc.conn_id.clone()) else { return };
        let legs: Vec<CallHandle> = self
            .links
            .focus
            .get(&f)
            .map(|v| v.iter().copied().filter(|k| *k != home && self.calls.get(k).is_some_and(|c| c.established)).collect())
            .unwrap_or_default();
        for leg in &legs {
            if let Some(l) = self.calls.get_mut(leg) {
                if l.conn_id != conn_id {
                    let old = std::mem::replace(&mut l.conn_id, conn_id.clone());
                    if self.by_conn.get(&old) == Some(leg) {
                        self.by_conn.remove(&old);
                    }
                    self.links.regroup(*leg, &old, &conn_id);
                }
            }
            self.note_call_id(home, *leg);
        }
        if let Some(rec) = self.calls.get_mut(&home).and_then(|c| c.recording.as_mut()) {
            rec.agent_legs = legs.into_iter().map(|k| (k, true)).collect();
        }
    }

    fn note_call_id(&mut self, home: CallHandle, leg: CallHandle) {
        let Some(cid) = self.calls.get(&leg).map(|c| c.call_id.clone()) else { return };
        if let Some(rec) = self.calls.get_mut(&home).and_then(|c| c.recording.as_mut()) {
            if !rec.call_ids.contains(&cid) {
                rec.call_ids.push(cid);
            }
        }
    }

    /// Dialog `gone` (just removed from `calls`) ended while holding recording `rec`: hands
    /// it to the dialog the call continues in, or gives it back to stop.
    pub(super) fn hand_over(&mut self, now: Timestamp, gone: &LiveCall, rec: Recorded) -> Option<Recorded> {
        let customer = if rec.customer_is_caller { &gone.caller } else { &gone.callee };
        let successor = self
            .links
            .members(&gone.conn_id)
            .iter()
            .filter_map(|k| self.calls.get(k).map(|c| (k, c)))
            .filter(|(_, c)| c.recording.is_none())
            .filter_map(|(k, c)| {
                let cust_is_caller = side_in(c, customer)?;
                let other = if cust_is_caller { &c.callee } else { &c.caller };
                let follows = !rec.trigger.agent_side()
                    || other.dn.as_deref() == Some(rec.dn.as_str())
                    || self.recorded_agent(other.dn.as_deref());
                follows.then_some((*k, cust_is_caller, c.seq, other.dn.clone()))
            })
            .max_by_key(|(_, _, seq, _)| *seq);
        let Some((to, customer_is_caller, _, other_dn)) = successor else { return Some(rec) };
        let new_dn = (rec.trigger.agent_side() && other_dn.as_deref() != Some(rec.dn.as_str())).then_some(other_dn).flatten();
        self.install_recording(now, to, rec, customer_is_caller, new_dn)
    }

    /// Dialog `gone` ended: if it was an agent's leg of a conference recording, that agent
    /// leaves it (and an agent-side recording of that agent stops, unless it is still there).
    pub(super) fn leave_legs(&mut self, now: Timestamp, gone: CallHandle, gone_call: &LiveCall) {
        // Legs and former agents share the call (ConnectionID) of the recording they feed.
        let homes: Vec<CallHandle> = self
            .recording_home(&gone_call.conn_id)
            .filter(|home| {
                self.calls.get(home).and_then(|c| c.recording.as_ref()).is_some_and(|r| {
                    r.agent_legs.iter().chain(&r.former).any(|(k, _)| *k == gone)
                })
            })
            .into_iter()
            .collect();
        for home in homes {
            let mut stop = false;
            if let Some(rec) = self.calls.get_mut(&home).and_then(|c| c.recording.as_mut()) {
                if let Some(&(_, agent_is_caller)) = rec.agent_legs.iter().find(|(k, _)| *k == gone) {
                    let agent = if agent_is_caller { &gone_call.caller } else { &gone_call.callee };
                    stop = rec.trigger.agent_side() && agent.dn.as_deref() == Some(rec.dn.as_str());
                }
                rec.agent_legs.retain(|(k, _)| *k != gone);
                rec.former.retain(|(k, _)| *k != gone);
            }
            if stop {
                if let Some(rec) = self.calls.get_mut(&home).and_then(|c| c.recording.take()) {
                    if let Err(e) = self.roles.stop(now, rec.session) {
                        tracing::warn!(error = %e, "could not stop a recording");
                    }
                    self.pull_roles();
                }
            } else {
                self.refresh_streams(now, home);
            }
        }
    }

    /// Sends the recording on dialog `home` its current streams (parties, media, holds).
    pub(super) fn refresh_streams(&mut self, now: Timestamp, home: CallHandle) {
        let Some((streams, session)) = self.streams_of(home) else { return };
        if let Err(e) = self.roles.update_streams(now, session, &streams) {
            tracing::warn!(error = %e, "could not move a recording's media");
        }
        self.pull_roles();
    }

    fn streams_of(&mut self, home: CallHandle) -> Option<(RecordStreams, crate::control::roles::SessionId)> {
        let c = self.calls.get(&home)?;
        let rec = c.recording.as_ref()?;
        if rec.awaiting_answer {
            return None;
        }
        let (cust, peer) = if rec.customer_is_caller { (&c.caller, &c.callee) } else { (&c.callee, &c.caller) };
        let cm = cust.media.clone()?;
        let pm = peer.media.clone()?;
        let customer = StreamSpec { media: cm.clone(), peer: pm.addr, dn: cust.dn.clone() };
        let mut agents: Vec<((CallHandle, bool), StreamSpec)> = Vec::new();
        for &(leg, agent_is_caller) in &rec.agent_legs {
            let Some(l) = self.calls.get(&leg) else { continue };
            let (a, f) = if agent_is_caller { (&l.caller, &l.callee) } else { (&l.callee, &l.caller) };
            if let (Some(am), Some(fm)) = (&a.media, &f.media) {
                agents.push(((leg, agent_is_caller), StreamSpec { media: am.clone(), peer: fm.addr, dn: a.dn.clone() }));
            }
        }
        if agents.is_empty() {
            agents.push(((home, !rec.customer_is_caller), StreamSpec { media: pm, peer: cm.addr, dn: peer.dn.clone() }));
        }
        // Each agent keeps its source slot while it stays; newcomers take the lowest free one.
        let mut slots: Vec<(CallHandle, bool, u8)> =
            rec.slots.iter().copied().filter(|(k, s, _)| agents.iter().any(|((ak, as_), _)| ak == k && as_ == s)).collect();
        let mut out = Vec::new();
        let mut next_slot = rec.next_slot;
        for ((k, side), spec) in agents {
            let slot = match slots.iter().find(|(sk, ss, _)| *sk == k && *ss == side) {
                Some((_, _, slot)) => *slot,
                None => match (0..MAX_SOURCES as u8)
                    .map(|i| (next_slot + i) % MAX_SOURCES as u8)
                    .find(|n| !slots.iter().any(|(_, _, s)| s == n))
                {
                    Some(n) => {
                        slots.push((k, side, n));
                        next_slot = (n + 1) % MAX_SOURCES as u8;
                        n
                    }
                    None => {
                        tracing::warn!(conf_id = %rec.conf_id, "more agent-side parties than mix slots; one is not recorded");
                        continue;
                    }
                },
            };
            out.push((slot, spec));
        }
        // A consultation the agent's phone mixes in: while this call is not on hold, its other
        // party is heard through the agent's stream.
        let held = [&c.caller, &c.callee].iter().any(|p| p.media.as_ref().is_some_and(|m| m.is_hold() || m.direction == crate::control::sdp::Direction::RecvOnly));
        let mut present_dns: Vec<String> = if held {
            Vec::new()
        } else {
            self.links
                .consults
                .get(&home)
                .into_iter()
                .flatten()
                .filter_map(|k| self.calls.get(k))
                .filter(|l| l.established && l.focus.is_none())
                .filter_map(|l| l.callee.dn.clone())
                .collect()
        };
        for &(leg, agent_is_caller) in &rec.former {
            let Some(l) = self.calls.get(&leg) else { continue };
            let agent = if agent_is_caller { &l.caller } else { &l.callee };
            if let Some(dn) = agent.dn.clone().filter(|d| !present_dns.contains(d)) {
                present_dns.push(dn);
            }
        }
        present_dns.retain(|d| !out.iter().any(|(_, s)| s.dn.as_deref() == Some(d.as_str())));
        let streams = RecordStreams { customer, agents: out, present_dns, call_ids: rec.call_ids.clone() };
        let session = rec.session;
        if let Some(rec) = self.calls.get_mut(&home).and_then(|c| c.recording.as_mut()) {
            rec.slots = slots;
            rec.next_slot = next_slot;
        }
        Some((streams, session))
    }
}
