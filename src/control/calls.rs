//! Call tracking by Call-ID: follows each call's INVITE dialog (answer, offer/answer media,
//! re-INVITEs, BYE, CANCEL, failures, silence) from the SIP it is handed and reports what
//! changed as [`CallEvent`]s. Sans-IO: the caller passes parsed messages with their capture
//! time and addresses, drains [`CallTracker::poll_event`], and drives timers with
//! [`CallTracker::poll_timeout`] / [`CallTracker::handle_timeout`] (the str0m/quinn shape).
//!
//! Duplicates are harmless by construction: every transition fires once (answered once, ended
//! once, media "changed" only when it differs), so retransmissions and mirror-port copies of
//! the same packet produce no second event.
//!
//! Offer/answer: the initial INVITE's SDP is the caller's media and the callee's comes from
//! 18x/2xx. An INVITE without SDP (late offer) gets the callee's offer in the 200 and the
//! caller's answer in the ACK: `Answered` is emitted at the 200 with the caller's media
//! unknown, then `MediaChanged` at the ACK. A re-INVITE or UPDATE changes media only when
//! its 2xx arrives (a rejected offer changes nothing).

use crate::control::sdp::{MediaDescription, SessionDescription};
use crate::control::sip::{ReferTarget, SipMessage};
use callrec_pipeline::Timestamp;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Identifies a tracked call. Stays unique after the call ends (a slot reused by a later
/// call gets a new serial), so a stale handle finds nothing instead of the wrong call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle {
    slot: u32,
    serial: u32,
}

/// One side of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The party's number: caller = P-Asserted-Identity user else From user; callee =
    /// Request-URI user else To user.
    pub dn: Option<String>,
    /// Where this party's SIP came from (caller = INVITE source, callee = INVITE
    /// destination).
    pub sip_addr: SocketAddr,
    /// The party's current audio stream (first audio m= line), if its SDP has been seen.
    pub media: Option<MediaDescription>,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// BYE from either side.
    Bye,
    /// CANCEL before answer (reported when the INVITE's final response or the ring timeout
    /// comes, since a 200 can still cross the CANCEL).
    Cancel,
    /// The initial INVITE got this 3xx-6xx final response.
    Rejected(u16),
    /// An in-dialog request got 481 or 408: the dialog is gone (RFC 5057).
    DialogFailed(u16),
    /// No SIP for the idle timeout, or no answer within the ring timeout.
    Timeout,
    /// The input ended ([`CallTracker::end_all`]).
    EndOfInput,
}

/// What the tracker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// The initial INVITE got a 2xx: the call is up.
    Answered {
        /// The call.
        call: CallHandle,
        /// Its Call-ID.
        call_id: String,
        /// The INVITE's sender.
        caller: Party,
        /// The INVITE's receiver.
        callee: Party,
        /// Time of the 2xx.
        at: Timestamp,
    },
    /// An established call's media changed (re-INVITE, UPDATE, late-offer ACK).
    MediaChanged {
        /// The call.
        call: CallHandle,
        /// Caller, with current media.
        caller: Party,
        /// Callee, with current media.
        callee: Party,
        /// Time of the message that completed the change.
        at: Timestamp,
    },
    /// A REFER was sent in an established call (blind or attended transfer, or an invitation
    /// into a conference): its recipient is expected to INVITE the target next. Reported once
    /// per REFER transaction, whether or not it is accepted: the INVITE that follows is what
    /// counts.
    Refer {
        /// The call the REFER was sent in.
        call: CallHandle,
        /// Whether the caller sent it (so the callee is the one being transferred).
        by_caller: bool,
        /// Where the recipient is sent.
        target: ReferTarget,
        /// Time of the REFER.
        at: Timestamp,
    },
    /// The initial INVITE was redirected (3xx): the caller is expected to try the Contact
    /// next, under the same or a new Call-ID. `Ended` follows.
    Redirected {
        /// The call.
        call: CallHandle,
        /// Its Call-ID.
        call_id: String,
        /// The caller.
        caller: Party,
        /// User part of the first Contact of the 3xx.
        contact_user: Option<String>,
        /// Time of the 3xx.
        at: Timestamp,
    },
    /// The call is over and forgotten; [`CallTracker::call`] no longer finds it.
    Ended {
        /// The call.
        call: CallHandle,
        /// Its Call-ID.
        call_id: String,
        /// Time of the ending message or timeout.
        at: Timestamp,
        /// Why.
        reason: EndReason,
    },
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE seen, no response beyond 100 yet.
    Calling,
    /// A 1xx (other than 100) seen: ringing or early media.
    Early,
    /// 2xx to the initial INVITE seen.
    Established,
}

/// A tracked call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Call-ID.
    pub call_id: String,
    /// The INVITE's sender.
    pub caller: Party,
    /// The INVITE's receiver.
    pub callee: Party,
    /// Where the call is.
    pub state: CallState,
    /// Time of the initial INVITE.
    pub started: Timestamp,
    /// Time of the 2xx, once answered.
    pub answered: Option<Timestamp>,
    /// Time of the last SIP message of this call.
    pub last_activity: Timestamp,
    /// `user@host` of the initial INVITE's Request-URI (what dialogs to one conference
    /// focus share).
    pub request_target: Option<String>,
    /// Call-ID named by the initial INVITE's Replaces header (it takes that dialog's place).
    pub replaces: Option<String>,
    /// User part of the initial INVITE's Referred-By (the caller was transferred by them).
    pub referred_by: Option<String>,
    /// The callee answered as a conference focus (`isfocus` in the 2xx Contact).
    pub callee_focus: bool,
    serial: u32,
    /// CSeq of the last REFER reported, so retransmissions report nothing.
    last_refer: Option<u32>,
    invite_cseq: u32,
    caller_tag: Option<String>,
    late_offer: bool,
    cancelled: bool,
    /// An in-dialog offer waiting for its 2xx: (CSeq, sent by caller?, offered media).
    pending: Option<(u32, bool, Option<MediaDescription>)>,
    /// A 2xx (initial or re-INVITE) carried an offer the ACK answers; who sends the ACK.
    ack_answers: Option<bool>,
}

/// Timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTrackerConfig {
    /// An established call with no SIP for this long is ended (default 4 h).
    pub idle_timeout: Duration,
    /// A call not answered within this long is ended (default 3 min).
    pub ring_timeout: Duration,
}

impl Default for CallTrackerConfig {
    fn default() -> Self {
        CallTrackerConfig {
            idle_timeout: Duration::from_secs(4 * 3600),
            ring_timeout: Duration::from_secs(180),
        }
    }
}

/// Counters for the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls started (initial INVITEs).
    pub calls: u64,
    /// In-dialog requests (To tag, or BYE/ACK/CANCEL/...) for a Call-ID not being tracked.
    pub unknown_dialog: u64,
    /// Copies of an initial INVITE already seen (retransmissions, mirror duplicates).
    pub duplicate_invites: u64,
    /// Calls already in progress when first seen, picked up from an in-dialog INVITE with
    /// SDP (a session refresh or media change) and its 2xx.
    pub picked_up: u64,
}

/// How long an ended call's Call-ID is remembered, so a late INVITE retransmission does not
/// start a phantom call: 64*T1, the INVITE transaction's lifetime (RFC 3261 Timer B).
const RECENT_NS: u64 = 32_000_000_000;

/// The call tracker.
#[derive(Debug, Default)]
pub struct CallTracker {
    config: CallTrackerConfig,
    calls: Slab<Call>,
    by_id: HashMap<String, CallHandle>,
    /// Ended Call-IDs: (when, initial INVITE CSeq).
    recent: HashMap<String, (Timestamp, u32)>,
    /// The same Call-IDs oldest first, so expiry costs only what expires.
    recent_order: VecDeque<(Timestamp, String)>,
    /// At or before the earliest call deadline (None: no call). Activity only moves deadlines
    /// later, so a stale value just makes `handle_timeout` scan once more; scans are at least
    /// a second of capture time apart, so timers cost nothing per packet burst however many
    /// calls are tracked.
    next_due: Option<Timestamp>,
    events: VecDeque<CallEvent>,
    next_serial: u32,
    stats: CallStats,
}

impl CallTracker {
    /// A tracker with these timers.
    pub fn new(config: CallTrackerConfig) -> CallTracker {
        CallTracker {
            config,
            ..CallTracker::default()
        }
    }

    /// Feeds one SIP message seen going from `src` to `dst` at `now`.
    pub fn handle(&mut self, now: Timestamp, src: SocketAddr, dst: SocketAddr, msg: &SipMessage) {
        let Some(h) = self.by_id.get(&msg.call_id).copied() else {
            self.handle_unknown(now, src, dst, msg);
            return;
        };
        let Some(call) = self.calls.get_mut(h.slot as usize) else {
            return;
        };
        call.last_activity = now;
        match msg.status() {
            Some(code) => self.on_response(now, h, code, msg),
            None => self.on_request(now, h, src, msg),
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: at or before the
    /// earliest call deadline (timers fire up to a second late, never early).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_due.filter(|_| !self.calls.is_empty())
    }

    /// Ends calls whose timers expired at `now` (reason Timeout, or Cancel for a cancelled
    /// call whose final response never showed).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.expire_recent(now);
        if self.next_due.is_none_or(|d| d > now) {
            return;
        }
        let expired: Vec<usize> = self
            .calls
            .iter()
            .filter(|(_, c)| self.deadline(c) <= now)
            .map(|(k, _)| k)
            .collect();
        for slot in expired {
            let reason = match self.calls.get(slot) {
                Some(c) if c.cancelled && c.state != CallState::Established => EndReason::Cancel,
                _ => EndReason::Timeout,
            };
            self.end(slot, now, reason);
        }
        self.next_due = self
            .calls
            .iter()
            .map(|(_, c)| self.deadline(c))
            .min()
            .map(|d| d.max(now.plus_nanos(1_000_000_000)));
    }

    /// Forgets ended Call-IDs older than [`RECENT_NS`].
    fn expire_recent(&mut self, now: Timestamp) {
        while let Some((t, id)) = self.recent_order.front() {
            if now.nanos_since(*t) < RECENT_NS as i64 {
                break;
            }
            // Only if not ended again since (a newer entry is further back in the queue).
            if self.recent.get(id).is_some_and(|(rt, _)| rt == t) {
                self.recent.remove(id);
            }
            self.recent_order.pop_front();
        }
    }

    /// End of input: ends every call still tracked, with reason EndOfInput.
    pub fn end_all(&mut self, now: Timestamp) {
        let slots: Vec<usize> = self.calls.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.end(slot, now, EndReason::EndOfInput);
        }
    }

    /// A tracked call, if it is still going.
    pub fn call(&self, h: CallHandle) -> Option<&Call> {
        self.calls
            .get(h.slot as usize)
            .filter(|c| c.serial == h.serial)
    }

    /// The handle of the call with this Call-ID, if tracked.
    pub fn find(&self, call_id: &str) -> Option<CallHandle> {
        self.by_id.get(call_id).copied()
    }

    /// Number of calls being tracked.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is being tracked.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> CallStats {
        self.stats
    }

    fn deadline(&self, c: &Call) -> Timestamp {
        match c.state {
            CallState::Established => c
                .last_activity
                .plus_nanos(self.config.idle_timeout.as_nanos() as u64),
            _ => c
                .started
                .plus_nanos(self.config.ring_timeout.as_nanos() as u64),
        }
    }

    fn handle_unknown(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &SipMessage,
    ) {
        // Responses of no tracked call, and requests of a call that just ended.
        if msg.status().is_some()
            || (self.recent.contains_key(&msg.call_id) && msg.method() != "INVITE")
        {
            return;
        }
        // A call already going when capture started (or callrec restarted) shows itself in its
        // next re-INVITE with SDP (session refresh, hold, media move): follow it from there,
        // its 2xx standing in for the answer. The sender is taken as the caller (the original
        // direction is unknown; triggers look at both sides).
        let pickup = msg.method() == "INVITE"
            && msg.to_tag.is_some()
            && msg.sdp_body().is_some()
            && !self.recent.contains_key(&msg.call_id);
        if (msg.method() != "INVITE" || msg.to_tag.is_some()) && !pickup {
            if msg.to_tag.is_some()
                || matches!(
                    msg.method(),
                    "BYE" | "ACK" | "CANCEL" | "INFO" | "UPDATE" | "PRACK"
                )
            {
                self.stats.unknown_dialog += 1;
            }
            return;
        }
        if let Some(&(_, cseq)) = self.recent.get(&msg.call_id) {
            if msg.cseq.0 <= cseq {
                self.stats.duplicate_invites += 1;
                return;
            }
        }
        // Bounded even if the driver never calls handle_timeout.
        self.expire_recent(now);
        let media = msg.sdp_body().and_then(first_audio);
        let late_offer = msg.sdp_body().is_none();
        if pickup {
            if media.is_none() {
                self.stats.unknown_dialog += 1;
                return;
            }
            self.stats.picked_up += 1;
            tracing::debug!(call_id = %msg.call_id, "picking up a call in progress from its re-INVITE");
        }
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let call = Call {
            call_id: msg.call_id.clone(),
            caller: Party {
                dn: msg.pai_user.clone().or_else(|| msg.from_user.clone()),
                sip_addr: src,
                media,
            },
            callee: Party {
                // An in-dialog Request-URI is the remote Contact, not the dialled number.
                dn: if pickup { msg.to_user.clone().or_else(|| msg.ruri_user.clone()) } else { msg.ruri_user.clone().or_else(|| msg.to_user.clone()) },
                sip_addr: dst,
                media: None,
            },
            state: CallState::Calling,
            started: now,
            answered: None,
            last_activity: now,
            request_target: msg.request_target(),
            replaces: msg.replaces(),
            referred_by: msg.referred_by_user(),
            callee_focus: false,
            serial,
            last_refer: None,
            invite_cseq: msg.cseq.0,
            caller_tag: msg.from_tag.clone(),
            late_offer,
            cancelled: false,
            pending: None,
            ack_answers: None,
        };
        let slot = self.calls.insert(call);
        let h = CallHandle {
            slot: slot as u32,
            serial,
        };
        self.by_id.insert(msg.call_id.clone(), h);
        self.stats.calls += 1;
        if let Some(c) = self.calls.get(slot) {
            let d = self.deadline(c);
            self.next_due = Some(self.next_due.map_or(d, |n| n.min(d)));
        }
    }

    fn on_request(&mut self, now: Timestamp, h: CallHandle, src: SocketAddr, msg: &SipMessage) {
        let slot = h.slot as usize;
        let Some(call) = self.calls.get_mut(slot) else {
            return;
        };
        let from_caller = match (&call.caller_tag, &msg.from_tag) {
            (Some(ct), Some(ft)) => ct == ft,
            _ => src == call.caller.sip_addr,
        };
        let sdp = msg.sdp_body().and_then(first_audio);
        match msg.method() {
            "INVITE" if msg.to_tag.is_none() && call.state != CallState::Established => {
                if msg.cseq.0 > call.invite_cseq && from_caller {
                    // A new INVITE after 401/407: same call, new transaction.
                    call.invite_cseq = msg.cseq.0;
                    call.late_offer = sdp.is_none();
                    if sdp.is_some() {
                        call.caller.media = sdp;
                    }
                } else {
                    self.stats.duplicate_invites += 1;
                }
            }
            "INVITE" | "UPDATE" if call.state == CallState::Established => {
                if msg.cseq.0 == call.invite_cseq && msg.method() == "INVITE" && from_caller {
                    self.stats.duplicate_invites += 1;
                    return;
                }
                call.pending = Some((msg.cseq.0, from_caller, sdp));
            }
            "ACK" => {
                if let (Some(acker_is_caller), Some(m)) = (call.ack_answers, sdp) {
                    call.ack_answers = None;
                    let party = if acker_is_caller {
                        &mut call.caller
                    } else {
                        &mut call.callee
                    };
                    if party.media.as_ref() != Some(&m) {
                        party.media = Some(m);
                        self.media_changed(h, now);
                    }
                }
            }
            "REFER" if call.state == CallState::Established => {
                if call.last_refer.is_some_and(|c| c >= msg.cseq.0) {
                    return;
                }
                call.last_refer = Some(msg.cseq.0);
                if let Some(target) = msg.refer_target() {
                    self.events.push_back(CallEvent::Refer { call: h, by_caller: from_caller, target, at: now });
                }
            }
            "CANCEL" if call.state != CallState::Established => call.cancelled = true,
            "BYE" => self.end(slot, now, EndReason::Bye),
            _ => {}
        }
    }

    fn on_response(&mut self, now: Timestamp, h: CallHandle, code: u16, msg: &SipMessage) {
        let slot = h.slot as usize;
        let Some(call) = self.calls.get_mut(slot) else {
            return;
        };
        let method = msg.cseq.1.as_str();
        let sdp = msg.sdp_body().and_then(first_audio);
        let initial = method == "INVITE"
            && msg.cseq.0 == call.invite_cseq
            && call.state != CallState::Established;
        if initial {
            match code {
                100 => {}
                101..=199 => {
                    call.state = CallState::Early;
                    if !call.late_offer && sdp.is_some() {
                        call.callee.media = sdp;
                    }
                }
                200..=299 => {
                    call.state = CallState::Established;
                    call.answered = Some(now);
                    call.callee_focus = msg.contact_is_focus();
                    if sdp.is_some() {
                        call.callee.media = sdp;
                    }
                    if call.late_offer {
                        call.ack_answers = Some(true);
                    }
                    let (caller, callee) = (call.caller.clone(), call.callee.clone());
                    self.events.push_back(CallEvent::Answered {
                        call: h,
                        call_id: call.call_id.clone(),
                        caller,
                        callee,
                        at: now,
                    });
                }
                401 | 407 => {} // the caller retries with credentials
                300..=399 if !call.cancelled => {
                    let contact_user = msg.contact.as_deref().and_then(crate::control::sip::uri_user_of);
                    self.events.push_back(CallEvent::Redirected {
                        call: h,
                        call_id: call.call_id.clone(),
                        caller: call.caller.clone(),
                        contact_user,
                        at: now,
                    });
                    self.end(slot, now, EndReason::Rejected(code));
                }
                _ => {
                    let reason = if call.cancelled {
                        EndReason::Cancel
                    } else {
                        EndReason::Rejected(code)
                    };
                    self.end(slot, now, reason);
                }
            }
            return;
        }
        if call.state != CallState::Established || method == "CANCEL" {
            return;
        }
        if matches!(code, 408 | 481) && method != "ACK" {
            self.end(slot, now, EndReason::DialogFailed(code));
            return;
        }
        let is_pending = matches!(call.pending, Some((cseq, _, _)) if cseq == msg.cseq.0);
        if !is_pending || !matches!(method, "INVITE" | "UPDATE") || code < 200 {
            return;
        }
        let Some((_, offerer_is_caller, offer)) = call.pending.take() else {
            return;
        };
        if code >= 300 {
            return;
        }
        let before = (call.caller.media.clone(), call.callee.media.clone());
        let (offerer, answerer) = if offerer_is_caller {
            (&mut call.caller, &mut call.callee)
        } else {
            (&mut call.callee, &mut call.caller)
        };
        match offer {
            Some(o) => {
                offerer.media = Some(o);
                if sdp.is_some() {
                    answerer.media = sdp;
                }
            }
            None if sdp.is_some() => {
                // Re-INVITE without SDP: the 2xx offers, the ACK (from the re-INVITE's
                // sender) answers.
                answerer.media = sdp;
                if method == "INVITE" {
                    call.ack_answers = Some(offerer_is_caller);
                }
            }
            None => {}
        }
        if before != (call.caller.media.clone(), call.callee.media.clone()) {
            self.media_changed(h, now);
        }
    }

    fn media_changed(&mut self, h: CallHandle, now: Timestamp) {
        if let Some(c) = self.calls.get(h.slot as usize) {
            self.events.push_back(CallEvent::MediaChanged {
                call: h,
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                at: now,
            });
        }
    }

    fn end(&mut self, slot: usize, now: Timestamp, reason: EndReason) {
        let Some(call) = self.calls.try_remove(slot) else {
            return;
        };
        self.by_id.remove(&call.call_id);
        self.recent
            .insert(call.call_id.clone(), (now, call.invite_cseq));
        self.recent_order.push_back((now, call.call_id.clone()));
        self.events.push_back(CallEvent::Ended {
            call: CallHandle {
                slot: slot as u32,
                serial: call.serial,
            },
            call_id: call.call_id,
            at: now,
            reason,
        });
    }
}

/// The first audio stream of an SDP body; SDP callrec cannot use counts as absent.
fn first_audio(body: &[u8]) -> Option<MediaDescription> {
    SessionDescription::parse(body)
        .ok()?
        .audio
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests;
