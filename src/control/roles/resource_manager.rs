//! The Resource Manager role: a proxy between the SIP Server and the MCPs. It picks the least
//! loaded MCP (local writer core) for each new recording INVITE, forwards it with its own Via
//! and a Record-Route, relays responses back along the Via path, and proxies the dialog's
//! in-dialog requests (ACK, INFO, re-INVITE, BYE) to the MCP that owns it.

use super::{is_header, via_branch, via_sent_by, Transmit};
use crate::control::sip::{response_to, SipBuilder, SipMessage, StartLine};
use callrec_pipeline::Timestamp;
use std::collections::HashMap;

struct Dialog {
    mcp: usize,
    /// A 2xx to the initial INVITE has passed: the session counts until BYE.
    established: bool,
}

/// The RM role. Sans-IO: [`handle`](Self::handle) queues messages, drained with
/// `drain_transmits`.
pub struct ResourceManagerRole {
    addr: String,
    mcps: Vec<String>,
    load: Vec<usize>,
    dialogs: HashMap<String, Dialog>,
    next_branch: u64,
    outbox: Vec<Transmit>,
}

impl ResourceManagerRole {
    /// An RM at `addr` fronting the MCPs at `mcps` (index = writer).
    pub fn new(addr: String, mcps: Vec<String>) -> ResourceManagerRole {
        let load = vec![0; mcps.len()];
        ResourceManagerRole {
            addr,
            mcps,
            load,
            dialogs: HashMap::new(),
            next_branch: 1,
            outbox: Vec::new(),
        }
    }

    /// This role's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Active sessions per MCP.
    pub fn load(&self) -> &[usize] {
        &self.load
    }

    /// Handles a message from the SIP Server or an MCP.
    pub fn handle(&mut self, _now: Timestamp, msg: &SipMessage) {
        match &msg.start {
            StartLine::Request { method, uri } => self.on_request(msg, method, uri),
            StartLine::Response { code, .. } => self.on_response(msg, *code),
        }
    }

    pub(crate) fn drain_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.outbox)
    }

    fn on_request(&mut self, msg: &SipMessage, method: &str, uri: &str) {
        let Some(reply_to) = msg
            .vias
            .first()
            .and_then(|v| via_sent_by(v))
            .map(str::to_string)
        else {
            tracing::warn!("request without a usable Via; dropped");
            return;
        };
        let max_forwards = msg
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if max_forwards == 0 {
            self.respond(msg, &reply_to, 483, "Too Many Hops");
            return;
        }
        let initial = method == "INVITE" && msg.to_tag.is_none();
        let mcp = if initial {
            if let Some(d) = self.dialogs.get(&msg.call_id) {
                d.mcp // a retransmission goes where the first one went
            } else {
                // Least loaded; ties go to the lowest index so placement is deterministic.
                let Some(k) = (0..self.load.len()).min_by_key(|&k| (self.load[k], k)) else {
                    self.respond(msg, &reply_to, 503, "No Media Server Available");
                    return;
                };
                self.load[k] += 1;
                self.dialogs.insert(
                    msg.call_id.clone(),
                    Dialog {
                        mcp: k,
                        established: false,
                    },
                );
                k
            }
        } else {
            match self.dialogs.get(&msg.call_id) {
                Some(d) => d.mcp,
                None => {
                    if method != "ACK" {
                        self.respond(msg, &reply_to, 481, "Call/Transaction Does Not Exist");
                    }
                    return;
                }
            }
        };
        if method == "BYE" {
            self.release(&msg.call_id);
        }
        let branch = format!("z9hG4bK-rm-{:x}", self.next_branch);
        self.next_branch += 1;
        let mut b = SipBuilder::request(method, uri).via("UDP", &self.addr, &branch);
        let mut record_route = initial.then(|| format!("<sip:{};lr>", self.addr));
        let mut own_route_seen = false;
        for (name, value) in &msg.headers {
            if !is_header(name, "Via", Some("v")) {
                if let Some(rr) = record_route.take() {
                    b = b.header("Record-Route", &rr);
                }
            }
            if is_header(name, "Max-Forwards", None) {
                b = b.max_forwards(max_forwards.saturating_sub(1).min(255) as u8);
            } else if is_header(name, "Route", None)
                && !own_route_seen
                && value.contains(self.addr.as_str())
            {
                // Our own loose route: consumed here (RFC 3261 16.4).
                own_route_seen = true;
            } else if !is_body_header(name) {
                b = b.header(name, value);
            }
        }
        let bytes = finish(b, msg);
        if let Some(to) = self.mcps.get(mcp).cloned() {
            self.outbox.push(Transmit { to, bytes });
        }
    }

    fn on_response(&mut self, msg: &SipMessage, code: u16) {
        let ours = msg.vias.first().and_then(|v| via_sent_by(v)) == Some(self.addr.as_str())
            && msg
                .vias
                .first()
                .and_then(|v| via_branch(v))
                .is_some_and(|b| b.starts_with("z9hG4bK-rm-"));
        if !ours {
            tracing::warn!("response whose top Via is not the RM's; dropped");
            return;
        }
        let Some(next) = msg
            .vias
            .get(1)
            .and_then(|v| via_sent_by(v))
            .map(str::to_string)
        else {
            tracing::warn!("response with no Via below the RM's; dropped");
            return;
        };
        if msg.cseq.1 == "INVITE" && code >= 200 {
            let established = self.dialogs.get(&msg.call_id).map(|d| d.established);
            match established {
                Some(false) if code < 300 => {
                    if let Some(d) = self.dialogs.get_mut(&msg.call_id) {
                        d.established = true;
                    }
                }
                Some(false) => self.release(&msg.call_id),
                _ => {}
            }
        }
        let (reason, status) = match &msg.start {
            StartLine::Response { reason, code } => (reason.as_str(), *code),
            StartLine::Request { .. } => return,
        };
        let mut b = SipBuilder::response(status, reason);
        let mut own_via_removed = false;
        for (name, value) in &msg.headers {
            if is_header(name, "Via", Some("v")) && !own_via_removed {
                own_via_removed = true;
                // Several Vias on one line: drop only the first (ours).
                if let Some((_, rest)) = value.split_once(',') {
                    b = b.header(name, rest.trim_start());
                }
            } else if !is_body_header(name) {
                b = b.header(name, value);
            }
        }
        let bytes = finish(b, msg);
        self.outbox.push(Transmit { to: next, bytes });
    }

    fn release(&mut self, call_id: &str) {
        if let Some(d) = self.dialogs.remove(call_id) {
            if let Some(l) = self.load.get_mut(d.mcp) {
                *l = l.saturating_sub(1);
            }
        }
    }

    fn respond(&mut self, msg: &SipMessage, to: &str, code: u16, reason: &str) {
        let bytes = response_to(msg, code, reason, Some("rm")).finish();
        self.outbox.push(Transmit {
            to: to.to_string(),
            bytes,
        });
    }
}

fn is_body_header(name: &str) -> bool {
    is_header(name, "Content-Length", Some("l")) || is_header(name, "Content-Type", Some("c"))
}

/// Ends a relayed message with the original body and Content-Type.
fn finish(b: SipBuilder, msg: &SipMessage) -> Vec<u8> {
    match msg.header("Content-Type") {
        Some(ct) if !msg.body.is_empty() => b.body(ct, &msg.body),
        _ => b.finish(),
    }
}
