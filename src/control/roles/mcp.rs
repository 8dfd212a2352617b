//! The MCP role for one writer core: the UAS of recording dialogs. It accepts the INVITE (the
//! `customer` and `agent` labelled streams), and turns MSML into dataplane effects: flow-table
//! installs/removes for the two streams and Start/Pause/Resume/Stop on its writer's ring.
//! Whatever it cannot do is answered with a 4xx (SIP status or MSML result), never a panic.

use super::{
    host_of, sdp_body, RoleOutput, Transmit, HDR_AGENT_DN, HDR_CALL_ID, HDR_CONNECTION_ID, HDR_CUSTOMER_DN,
    HDR_EXTENSION_PREFIX, HDR_TRIGGER, MSML_CONTENT_TYPE,
};
use crate::control::msml::{MsmlRequest, MsmlResult};
use crate::control::sdp::{Direction, MediaDescription};
use crate::control::sip::{response_to, SipMessage, StartLine};
use crate::control::uri::{unescape, ConfId, RequestUri};
use callrec_pipeline::flow::{FlowTarget, FlowUpdate, RecordingId};
use callrec_pipeline::writer::{ChannelSpec, OutputFormat, RecordingSpec, WriterMsg};
use callrec_pipeline::Timestamp;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

mod streams;

use streams::{Presence, Streams};

struct Recording {
    id: RecordingId,
    /// Paused by MSML.
    paused: bool,
}

struct Dialog {
    conf_id: ConfId,
    local_tag: String,
    streams: Streams,
    /// Fields for the sidecar, from the INVITE.
    sidecar: Map<String, Value>,
    sdp_version: u32,
    recording: Option<Recording>,
    /// On hold by the latest SDP (the writer is silent while held or paused).
    held: bool,
    presence: Presence,
    /// Every Call-ID the SIP Server named for this recording, in order.
    call_ids: Vec<String>,
}

impl Dialog {
    fn silent(&self) -> bool {
        self.held || self.recording.as_ref().is_some_and(|r| r.paused)
    }
}

/// The MCP role of writer `k`. Sans-IO: [`handle`](Self::handle) queues messages and outputs.
pub struct McpRole {
    writer: u16,
    addr: String,
    format: OutputFormat,
    /// Recording ids are `writer + 1 + n * stride`: unique across all MCPs of the process.
    next_recording: u32,
    stride: u32,
    next_tag: u64,
    dialogs: HashMap<String, Dialog>,
    /// Conf-ids of the dialogs held (a new INVITE for one in use is refused), kept beside
    /// `dialogs` so the check does not walk every dialog.
    conf_ids: std::collections::HashSet<String>,
    outbox: Vec<Transmit>,
    outputs: Vec<RoleOutput>,
}

impl McpRole {
    /// The MCP of writer `writer` (of `writers`), at `addr`, writing `format`.
    pub fn new(writer: u16, writers: u32, addr: String, format: OutputFormat) -> McpRole {
        McpRole {
            writer,
            addr,
            format,
            next_recording: u32::from(writer) + 1,
            stride: writers.max(1),
            next_tag: 1,
            dialogs: HashMap::new(),
            conf_ids: Default::default(),
            outbox: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// This role's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Dialogs held.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Handles a request relayed by the RM. Responses are not expected (the MCP sends none
    /// of its own requests) and are ignored.
    pub fn handle(&mut self, now: Timestamp, msg: &SipMessage) {
        let Some(reply_to) = msg
            .vias
            .first()
            .and_then(|v| super::via_sent_by(v))
            .map(str::to_string)
        else {
            return;
        };
        let StartLine::Request { method, uri } = &msg.start else {
            return;
        };
        match method.as_str() {
            "INVITE" if msg.to_tag.is_none() => self.on_invite(msg, uri, &reply_to),
            "INVITE" => self.on_reinvite(now, msg, &reply_to),
            "ACK" => {}
            "INFO" => self.on_info(now, msg, &reply_to),
            "BYE" => {
                let Some(mut d) = self.dialogs.remove(&msg.call_id) else {
                    return self.reply(
                        msg,
                        &reply_to,
                        481,
                        "Call/Transaction Does Not Exist",
                        None,
                    );
                };
                if d.recording.is_some() {
                    self.stop(now, &mut d);
                }
                self.conf_ids.remove(d.conf_id.as_str());
                let tag = d.local_tag.clone();
                let bytes = response_to(msg, 200, "OK", Some(&tag)).finish();
                self.outbox.push(Transmit {
                    to: reply_to,
                    bytes,
                });
            }
            _ => self.reply(msg, &reply_to, 501, "Not Implemented", None),
        }
    }

    pub(crate) fn drain_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.outbox)
    }

    pub(crate) fn drain_outputs(&mut self) -> Vec<RoleOutput> {
        std::mem::take(&mut self.outputs)
    }

    fn on_invite(&mut self, msg: &SipMessage, uri: &str, reply_to: &str) {
        if self.dialogs.contains_key(&msg.call_id) {
            return self.reply(msg, reply_to, 482, "Loop Detected", None);
        }
        let ruri = match RequestUri::parse(uri) {
            Ok(u) if u.record => u,
            Ok(_) => {
                return self.reply(msg, reply_to, 404, "Not Found (no record parameter)", None)
            }
            Err(e) => return self.reply(msg, reply_to, 404, &format!("Not Found ({e})"), None),
        };
        if self.conf_ids.contains(ruri.conf_id.as_str()) {
            return self.reply(msg, reply_to, 486, "Busy Here (conf-id in use)", None);
        }
        let streams = match Streams::parse(msg, msg.header(HDR_CUSTOMER_DN).map(str::trim), msg.header(HDR_AGENT_DN).map(str::trim)) {
            Ok(s) => s,
            Err(why) => {
                return self.reply(
                    msg,
                    reply_to,
                    488,
                    &format!("Not Acceptable Here ({why})"),
                    None,
                )
            }
        };
        let sidecar = sidecar_fields(msg, &ruri, self.writer);
        let held = streams.any_hold();
        let dialog = Dialog {
            conf_id: ruri.conf_id,
            local_tag: format!("mcp{}-{:x}", self.writer, self.next_tag),
            streams,
            sidecar,
            sdp_version: 1,
            recording: None,
            held,
            presence: Presence::default(),
            call_ids: msg.header_all(HDR_CALL_ID).map(|v| v.trim().to_string()).collect(),
        };
        self.next_tag += 1;
        self.answer_sdp(msg, reply_to, &dialog);
        self.conf_ids.insert(dialog.conf_id.to_string());
        self.dialogs.insert(msg.call_id.clone(), dialog);
    }

    fn on_reinvite(&mut self, now: Timestamp, msg: &SipMessage, reply_to: &str) {
        let Some(mut d) = self.dialogs.remove(&msg.call_id) else {
            return self.reply(msg, reply_to, 481, "Call/Transaction Does Not Exist", None);
        };
        let (cdn, adn) = (d.streams.customer.dn.clone(), d.streams.agents.first().and_then(|a| a.dn.clone()));
        match Streams::parse(msg, cdn.as_deref(), adn.as_deref()) {
            Ok(new) => {
                // Hold is read before a held address (c=0.0.0.0) is replaced by the last real one.
                let held = new.any_hold();
                let new = new.keep_addresses_of(&d.streams);
                if let Some(rec) = &d.recording {
                    let id = rec.id;
                    let was_silent = d.silent();
                    self.remove_flows(&d);
                    d.streams = new;
                    d.held = held;
                    self.install_flows(&d, id);
                    d.presence.update(now, &d.streams.parties());
                    d.presence.hold(now, d.held);
                    match (was_silent, d.silent()) {
                        (false, true) => self.writer_msg(WriterMsg::Pause { recording: id, at: now }),
                        (true, false) => self.writer_msg(WriterMsg::Resume { recording: id, at: now }),
                        _ => {}
                    }
                } else {
                    d.streams = new;
                    d.held = held;
                }
                for c in msg.header_all(HDR_CALL_ID).map(str::trim) {
                    if !d.call_ids.iter().any(|x| x == c) {
                        d.call_ids.push(c.to_string());
                    }
                }
                d.sdp_version += 1;
                self.answer_sdp(msg, reply_to, &d);
            }
            Err(why) => {
                let tag = d.local_tag.clone();
                self.reply(
                    msg,
                    reply_to,
                    488,
                    &format!("Not Acceptable Here ({why})"),
                    Some(&tag),
                );
            }
        }
        self.dialogs.insert(msg.call_id.clone(), d);
    }

    fn on_info(&mut self, now: Timestamp, msg: &SipMessage, reply_to: &str) {
        let Some(mut d) = self.dialogs.remove(&msg.call_id) else {
            let body = MsmlResult::error(481, "no such recording dialog").to_xml();
            return self.reply_body(
                msg,
                reply_to,
                481,
                "Call/Transaction Does Not Exist",
                None,
                &body,
            );
        };
        let tag = d.local_tag.clone();
        if msg.content_type.as_deref() != Some(MSML_CONTENT_TYPE) {
            let body =
                MsmlResult::error(415, format!("INFO body must be {MSML_CONTENT_TYPE}")).to_xml();
            self.dialogs.insert(msg.call_id.clone(), d);
            let bytes = response_to(msg, 415, "Unsupported Media Type", Some(&tag))
                .header("Accept", MSML_CONTENT_TYPE)
                .body(MSML_CONTENT_TYPE, body.as_bytes());
            self.outbox.push(Transmit {
                to: reply_to.to_string(),
                bytes,
            });
            return;
        }
        let result = match MsmlRequest::parse(&msg.body) {
            Err(e) => MsmlResult::error(400, e.to_string()),
            Ok(req) if req.conf_id() != &d.conf_id => MsmlResult::error(
                404,
                format!("unknown conference {} in this dialog", req.conf_id()),
            ),
            Ok(req) => self.apply(now, &mut d, req),
        };
        self.dialogs.insert(msg.call_id.clone(), d);
        let body = result.to_xml();
        self.reply_body(msg, reply_to, 200, "OK", Some(&tag), &body);
    }

    fn apply(&mut self, now: Timestamp, d: &mut Dialog, req: MsmlRequest) -> MsmlResult {
        match (req, &mut d.recording) {
            (MsmlRequest::Start { dest, .. }, None) => {
                let Some(path) = dest.strip_prefix("file://").filter(|p| !p.is_empty()) else {
                    return MsmlResult::error(400, format!("dest {dest:?} is not a file:// URL"));
                };
                let wav_path = PathBuf::from(path);
                let id = RecordingId(self.next_recording);
                self.next_recording = self.next_recording.wrapping_add(self.stride);
                let spec = RecordingSpec {
                    id,
                    conf_id: d.conf_id.to_string(),
                    sidecar_path: wav_path.with_extension("json"),
                    wav_path,
                    format: self.format,
                    channels: [channel_spec(&d.streams.customer.media), channel_spec(&d.streams.agents[0].media)],
                    started: now,
                    sidecar: d.sidecar.clone(),
                };
                // The writer must know the recording before the first packet of its flows.
                self.writer_msg(WriterMsg::Start(Box::new(spec)));
                self.install_flows(d, id);
                d.recording = Some(Recording { id, paused: false });
                d.presence.update(now, &d.streams.parties());
                if d.held {
                    d.presence.hold(now, true);
                    self.writer_msg(WriterMsg::Pause { recording: id, at: now });
                }
                MsmlResult::ok()
            }
            (MsmlRequest::Start { .. }, Some(_)) => MsmlResult::error(409, "already recording"),
            (MsmlRequest::Pause { .. }, Some(rec)) if !rec.paused => {
                rec.paused = true;
                let recording = rec.id;
                if !d.held {
                    self.writer_msg(WriterMsg::Pause { recording, at: now });
                }
                MsmlResult::ok()
            }
            (MsmlRequest::Pause { .. }, Some(_)) => MsmlResult::error(409, "already paused"),
            (MsmlRequest::Resume { .. }, Some(rec)) if rec.paused => {
                rec.paused = false;
                let recording = rec.id;
                if !d.held {
                    self.writer_msg(WriterMsg::Resume { recording, at: now });
                }
                MsmlResult::ok()
            }
            (MsmlRequest::Resume { .. }, Some(_)) => MsmlResult::error(409, "not paused"),
            (MsmlRequest::Stop { .. }, Some(_)) => {
                self.stop(now, d);
                MsmlResult::ok()
            }
            (_, None) => MsmlResult::error(409, "not recording"),
        }
    }

    fn stop(&mut self, now: Timestamp, d: &mut Dialog) {
        if let Some(rec) = d.recording.take() {
            // Flows go first so no packet reaches the writer after its Stop.
            self.remove_flows(d);
            let (parties, holds) = d.presence.finish(now);
            let call_ids = Value::Array(d.call_ids.iter().cloned().map(Value::String).collect());
            for (key, value) in [("parties", parties), ("holds", holds), ("call_ids", call_ids)] {
                self.writer_msg(WriterMsg::Sidecar { recording: rec.id, key: key.to_string(), value: Box::new(value) });
            }
            self.writer_msg(WriterMsg::Stop {
                recording: rec.id,
                at: now,
            });
        }
    }

    fn install_flows(&mut self, d: &Dialog, id: RecordingId) {
        for (key, channel, source) in d.streams.flow_keys() {
            let target = FlowTarget {
                writer: self.writer,
                recording: id,
                channel,
                source,
            };
            self.outputs
                .push(RoleOutput::Flow(FlowUpdate::Install(key, target)));
        }
    }

    fn remove_flows(&mut self, d: &Dialog) {
        for (key, _, _) in d.streams.flow_keys() {
            self.outputs.push(RoleOutput::Flow(FlowUpdate::Remove(key)));
        }
    }

    fn writer_msg(&mut self, msg: WriterMsg) {
        self.outputs.push(RoleOutput::Writer {
            writer: self.writer,
            msg,
        });
    }

    fn answer_sdp(&mut self, msg: &SipMessage, reply_to: &str, d: &Dialog) {
        // A recorder only listens (it sniffs the call's RTP), so it answers recvonly on the
        // discard port: there is no socket behind these streams.
        let ip = host_of(&self.addr)
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let answer = |m: &MediaDescription| MediaDescription {
            addr: SocketAddr::new(ip, 9),
            direction: Direction::RecvOnly,
            ..m.clone()
        };
        let answers: Vec<MediaDescription> = std::iter::once(&d.streams.customer)
            .chain(&d.streams.agents)
            .map(|s| answer(&s.media))
            .collect();
        let refs: Vec<&MediaDescription> = answers.iter().collect();
        let sdp = sdp_body(&self.addr, d.sdp_version, &refs);
        let mut b = response_to(msg, 200, "OK", Some(&d.local_tag));
        for rr in msg.header_all("Record-Route") {
            b = b.header("Record-Route", rr);
        }
        let bytes = b
            .contact(&format!("sip:mcp{}@{}", self.writer, self.addr))
            .body("application/sdp", sdp.as_bytes());
        self.outbox.push(Transmit {
            to: reply_to.to_string(),
            bytes,
        });
    }

    fn reply(&mut self, msg: &SipMessage, to: &str, code: u16, reason: &str, tag: Option<&str>) {
        let tag = tag
            .map(str::to_string)
            .unwrap_or_else(|| format!("mcp{}", self.writer));
        let bytes = response_to(msg, code, reason, Some(&tag)).finish();
        self.outbox.push(Transmit {
            to: to.to_string(),
            bytes,
        });
    }

    fn reply_body(
        &mut self,
        msg: &SipMessage,
        to: &str,
        code: u16,
        reason: &str,
        tag: Option<&str>,
        body: &str,
    ) {
        let tag = tag
            .map(str::to_string)
            .unwrap_or_else(|| format!("mcp{}", self.writer));
        let bytes =
            response_to(msg, code, reason, Some(&tag)).body(MSML_CONTENT_TYPE, body.as_bytes());
        self.outbox.push(Transmit {
            to: to.to_string(),
            bytes,
        });
    }
}

pub(super) fn channel_spec(m: &MediaDescription) -> ChannelSpec {
    // heapless::Vec holds 8; an m= line with more G.711 types than that keeps the first 8.
    ChannelSpec {
        payload_types: m.payload_types.iter().copied().take(8).collect(),
        event_pt: m.event_pt,
    }
}

fn sidecar_fields(msg: &SipMessage, ruri: &RequestUri, writer: u16) -> Map<String, Value> {
    let text = |name: &str| {
        msg.header(name)
            .map(|v| Value::String(v.trim().to_string()))
            .unwrap_or(Value::Null)
    };
    let mut extensions = Map::new();
    for (name, value) in &msg.headers {
        let Some(key) = name
            .get(..HDR_EXTENSION_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(HDR_EXTENSION_PREFIX))
        else {
            continue;
        };
        let key = &name[key.len()..];
        let key = unescape(key).unwrap_or_else(|_| key.to_string());
        extensions.insert(key, Value::String(value.trim().to_string()));
    }
    let mut m = Map::new();
    m.insert("conf_id".into(), Value::String(ruri.conf_id.to_string()));
    m.insert("dn".into(), Value::String(ruri.dn.clone()));
    m.insert(
        "call_ids".into(),
        Value::Array(
            msg.header_all(HDR_CALL_ID)
                .map(|v| Value::String(v.trim().to_string()))
                .collect(),
        ),
    );
    let mut dns = Map::new();
    dns.insert("customer".into(), text(HDR_CUSTOMER_DN));
    dns.insert("agent".into(), text(HDR_AGENT_DN));
    m.insert("dns".into(), Value::Object(dns));
    m.insert("trigger".into(), text(HDR_TRIGGER));
    if let Some(c) = msg.header(HDR_CONNECTION_ID) {
        m.insert("connection_id".into(), Value::String(c.trim().to_string()));
    }
    m.insert("extensions".into(), Value::Object(extensions));
    m.insert("mcp".into(), Value::from(writer));
    m
}
