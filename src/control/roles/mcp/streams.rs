//! What an MCP dialog records: the labelled streams of the INVITE / re-INVITE SDP (one
//! `customer`, one or more `agent`, `agent-2`, ... on their source slots) with the
//! `X-Callrec-Stream` facts about each (peer address, DN), the flow keys they give, and the
//! bookkeeping behind the sidecar's `parties` and `holds`.

use super::super::{HDR_PRESENT_DN, HDR_STREAM};
use crate::control::roles::transport::rfc3339;
use crate::control::sdp::{Direction, MediaDescription, SessionDescription};
use crate::control::sip::SipMessage;
use crate::control::uri::unescape;
use callrec_pipeline::flow::{Channel, FlowKey};
use callrec_pipeline::writer::MAX_SOURCES;
use callrec_pipeline::Timestamp;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// One stream the dialog records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stream {
    /// Source slot inside its channel (always 0 for the customer).
    pub slot: u8,
    /// The sender's media description.
    pub media: MediaDescription,
    /// Where the sender's RTP goes; None when the INVITE did not say (then: the opposite
    /// channel's first stream, the two-party case).
    pub peer: Option<SocketAddr>,
    /// The sender's DN, when told.
    pub dn: Option<String>,
}

/// The customer stream and the agent streams of an SDP offer, plus the agent-side parties
/// present without a stream of their own.
#[derive(Debug, Clone)]
pub(super) struct Streams {
    pub customer: Stream,
    pub agents: Vec<Stream>,
    pub present: Vec<String>,
}

impl Streams {
    /// Parses the labelled streams of `msg`'s SDP. `customer_dn`/`agent_dn` are the DNs of the
    /// initial INVITE's headers, used when a stream's own header names none.
    pub fn parse(msg: &SipMessage, customer_dn: Option<&str>, agent_dn: Option<&str>) -> Result<Streams, String> {
        let body = msg.sdp_body().ok_or_else(|| "no SDP body".to_string())?;
        let sdp = SessionDescription::parse(body).map_err(|e| e.to_string())?;
        let facts = |label: &str| -> (Option<SocketAddr>, Option<String>) {
            let Some(v) = msg.header_all(HDR_STREAM).find(|v| v.split(';').next().map(str::trim) == Some(label)) else {
                return (None, None);
            };
            let mut peer = None;
            let mut dn = None;
            for p in v.split(';').skip(1) {
                match p.split_once('=') {
                    Some((k, val)) if k.trim().eq_ignore_ascii_case("peer") => peer = val.trim().parse().ok(),
                    Some((k, val)) if k.trim().eq_ignore_ascii_case("dn") => {
                        dn = Some(unescape(val.trim()).unwrap_or_else(|_| val.trim().to_string()))
                    }
                    _ => {}
                }
            }
            (peer, dn)
        };
        let mut customer = None;
        let mut agents: Vec<Stream> = Vec::new();
        for m in &sdp.audio {
            let Some(label) = m.label.as_deref() else { continue };
            let (peer, dn) = facts(label);
            if label == "customer" {
                if customer.is_some() {
                    return Err("two audio streams labelled customer".into());
                }
                let dn = dn.or(customer_dn.map(str::to_string));
                customer = Some(Stream { slot: 0, media: m.clone(), peer, dn });
            } else if let Some(slot) = agent_slot(label) {
                if agents.iter().any(|a| a.slot == slot) {
                    return Err(format!("two audio streams labelled {label}"));
                }
                let dn = dn.or_else(|| (slot == 0).then(|| agent_dn.map(str::to_string)).flatten());
                agents.push(Stream { slot, media: m.clone(), peer, dn });
            }
        }
        let customer = customer.ok_or_else(|| "no audio stream labelled customer".to_string())?;
        if agents.is_empty() {
            return Err("no audio stream labelled agent".into());
        }
        agents.sort_by_key(|a| a.slot);
        let present = msg
            .header_all(HDR_PRESENT_DN)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let s = Streams { customer, agents, present };
        // Two streams on one 5-tuple would be one flow, and flows are never told apart by SSRC.
        let keys = s.flow_keys();
        for (i, (k, _, _)) in keys.iter().enumerate() {
            if keys[..i].iter().any(|(o, _, _)| o == k) && !s.any_hold() {
                return Err(format!("two streams share the address pair {} -> {}", k.src, k.dst));
            }
        }
        Ok(s)
    }

    /// Keeps each stream's last real address when the new SDP puts it on hold with
    /// `c=0.0.0.0` or port 0 (RFC 2543 hold): the party still sends (music on hold) and
    /// resumes from where it was.
    pub fn keep_addresses_of(mut self, old: &Streams) -> Streams {
        let unreal = |a: SocketAddr| a.ip().is_unspecified() || a.port() == 0;
        let keep = |old: &Stream, new: &mut Stream| {
            if unreal(new.media.addr) {
                new.media.addr = old.media.addr;
            }
            if new.peer.is_some_and(unreal) {
                new.peer = old.peer;
            }
        };
        keep(&old.customer, &mut self.customer);
        for a in &mut self.agents {
            match old.agents.iter().find(|o| o.slot == a.slot) {
                Some(o) => keep(o, a),
                None if a.peer.is_some_and(unreal) => a.peer = None,
                None => {}
            }
        }
        self
    }

    /// Whether the customer is on hold, or holds: the customer's stream or the stream of the
    /// party at the other end of the customer's own dialog sends or receives nothing
    /// (`sendonly`/`recvonly`/`inactive`, `c=0.0.0.0`, port 0). Other agent-side streams (a
    /// listen-only supervisor in a conference) do not make a hold.
    pub fn any_hold(&self) -> bool {
        let held = |s: &Stream| s.media.is_hold() || s.media.direction == Direction::RecvOnly;
        held(&self.customer)
            || self
                .agents
                .iter()
                .filter(|a| self.customer.peer.is_none_or(|p| p == a.media.addr))
                .any(held)
    }

    /// (flow, channel, source slot) per stream: customer -> its peer on the left, each agent
    /// -> its peer on the right.
    pub fn flow_keys(&self) -> Vec<(FlowKey, Channel, u8)> {
        let first_agent = self.agents.first().map(|a| a.media.addr).unwrap_or(self.customer.media.addr);
        let mut keys = vec![(
            FlowKey { src: self.customer.media.addr, dst: self.customer.peer.unwrap_or(first_agent) },
            Channel::Left,
            0,
        )];
        for a in &self.agents {
            keys.push((
                FlowKey { src: a.media.addr, dst: a.peer.unwrap_or(self.customer.media.addr) },
                Channel::Right,
                a.slot,
            ));
        }
        keys
    }

    /// The parties present: (dn, channel). Parties without a DN are listed by address.
    pub fn parties(&self) -> Vec<(String, Channel)> {
        let name = |s: &Stream| s.dn.clone().unwrap_or_else(|| s.media.addr.to_string());
        let mut v = vec![(name(&self.customer), Channel::Left)];
        for a in &self.agents {
            v.push((name(a), Channel::Right));
        }
        for h in &self.present {
            v.push((h.clone(), Channel::Right));
        }
        v
    }
}

/// `agent` -> 0, `agent-N` -> N-1 for N in 2..=MAX_SOURCES.
fn agent_slot(label: &str) -> Option<u8> {
    if label == "agent" {
        return Some(0);
    }
    let n: usize = label.strip_prefix("agent-")?.parse().ok()?;
    (2..=MAX_SOURCES).contains(&n).then(|| (n - 1) as u8)
}

/// One party's presence in the recording.
#[derive(Debug, Clone)]
struct Span {
    dn: String,
    channel: Channel,
    from: Timestamp,
    to: Option<Timestamp>,
}

/// Who was present when, and the holds: what the sidecar's `parties` and `holds` list.
#[derive(Debug, Clone, Default)]
pub(super) struct Presence {
    spans: Vec<Span>,
    holds: Vec<(Timestamp, Option<Timestamp>)>,
}

impl Presence {
    /// The parties present from `now` on are `now_present`: spans of parties gone are closed,
    /// new ones opened.
    pub fn update(&mut self, now: Timestamp, now_present: &[(String, Channel)]) {
        for s in self.spans.iter_mut().filter(|s| s.to.is_none()) {
            if !now_present.iter().any(|(dn, ch)| *dn == s.dn && *ch == s.channel) {
                s.to = Some(now);
            }
        }
        for (dn, ch) in now_present {
            if !self.spans.iter().any(|s| s.to.is_none() && s.dn == *dn && s.channel == *ch) {
                self.spans.push(Span { dn: dn.clone(), channel: *ch, from: now, to: None });
            }
        }
    }

    /// Hold began or ended at `now`.
    pub fn hold(&mut self, now: Timestamp, held: bool) {
        match (held, self.holds.last_mut()) {
            (true, Some((_, None))) => {}
            (true, _) => self.holds.push((now, None)),
            (false, Some((_, end @ None))) => *end = Some(now),
            (false, _) => {}
        }
    }

    /// Closes everything open at `now` and renders (`parties`, `holds`).
    pub fn finish(&mut self, now: Timestamp) -> (Value, Value) {
        self.update(now, &[]);
        self.hold(now, false);
        let parties = self
            .spans
            .iter()
            .map(|s| {
                json!({
                    "dn": s.dn,
                    "channel": if s.channel == Channel::Left { "left" } else { "right" },
                    "from": rfc3339(s.from),
                    "to": rfc3339(s.to.unwrap_or(now)),
                })
            })
            .collect();
        let holds = self
            .holds
            .iter()
            .map(|(f, t)| json!({"from": rfc3339(*f), "to": rfc3339(t.unwrap_or(now))}))
            .collect();
        (Value::Array(parties), Value::Array(holds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_from_labels() {
        assert_eq!(agent_slot("agent"), Some(0));
        assert_eq!(agent_slot("agent-2"), Some(1));
        assert_eq!(agent_slot(&format!("agent-{MAX_SOURCES}")), Some(MAX_SOURCES as u8 - 1));
        assert_eq!(agent_slot(&format!("agent-{}", MAX_SOURCES + 1)), None);
        assert_eq!(agent_slot("agent-1"), None);
        assert_eq!(agent_slot("agent-x"), None);
        assert_eq!(agent_slot("customer"), None);
    }

    #[test]
    fn only_the_customers_own_dialog_makes_a_hold() {
        let m = |addr: &str, dir: Direction| MediaDescription {
            addr: addr.parse().unwrap(),
            payload_types: vec![(8, callrec_pipeline::writer::Codec::Pcma)],
            all_payload_types: vec![8],
            event_pt: None,
            direction: dir,
            label: None,
        };
        let st = |slot, media, peer: Option<&str>| Stream { slot, media, peer: peer.map(|p| p.parse().unwrap()), dn: None };
        // Conference: the customer talks to the focus; a listen-only supervisor leg is no hold.
        let conf = Streams {
            customer: st(0, m("192.0.2.10:4000", Direction::SendRecv), Some("192.0.2.40:7000")),
            agents: vec![
                st(0, m("192.0.2.21:5000", Direction::SendRecv), Some("192.0.2.40:7001")),
                st(1, m("192.0.2.23:5000", Direction::RecvOnly), Some("192.0.2.40:7002")),
            ],
            present: Vec::new(),
        };
        assert!(!conf.any_hold());
        // Two parties: the agent holding (sendonly, or c=0.0.0.0 with the customer answering
        // sendrecv) is a hold; so is the customer answering recvonly.
        let two = |c: Direction, a: MediaDescription| Streams {
            customer: st(0, m("192.0.2.10:4000", c), Some(&a.addr.to_string())),
            agents: vec![st(0, a, Some("192.0.2.10:4000"))],
            present: Vec::new(),
        };
        assert!(two(Direction::SendRecv, m("192.0.2.21:5000", Direction::SendOnly)).any_hold());
        assert!(two(Direction::SendRecv, m("0.0.0.0:5000", Direction::SendRecv)).any_hold());
        assert!(two(Direction::RecvOnly, m("192.0.2.21:5000", Direction::SendRecv)).any_hold());
        assert!(!two(Direction::SendRecv, m("192.0.2.21:5000", Direction::SendRecv)).any_hold());
    }

    #[test]
    fn presence_spans_and_holds() {
        let t = |s: u64| Timestamp::from_parts(1_700_000_000 + s, 0);
        let mut p = Presence::default();
        p.update(t(0), &[("c".into(), Channel::Left), ("a1".into(), Channel::Right)]);
        p.hold(t(2), true);
        p.hold(t(3), true);
        p.hold(t(4), false);
        p.update(t(5), &[("c".into(), Channel::Left), ("a2".into(), Channel::Right)]);
        p.update(t(6), &[("c".into(), Channel::Left), ("a2".into(), Channel::Right)]);
        let (parties, holds) = p.finish(t(9));
        let parties = parties.as_array().unwrap();
        assert_eq!(parties.len(), 3);
        assert_eq!(parties[1]["dn"], "a1");
        assert_eq!(parties[1]["to"], rfc3339(t(5)));
        assert_eq!(parties[2]["from"], rfc3339(t(5)));
        assert_eq!(parties[2]["to"], rfc3339(t(9)));
        assert_eq!(parties[0]["channel"], "left");
        let holds = holds.as_array().unwrap();
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0]["from"], rfc3339(t(2)));
        assert_eq!(holds[0]["to"], rfc3339(t(4)));
    }
}
