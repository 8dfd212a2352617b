//! SDP (RFC 4566) as call tracking and the recording roles need it: each audio m= line's RTP
//! address, payload types with their codecs, telephone-event, direction and label.
//!
//! Parsed by hand, not with an SDP crate: callrec needs only c=, m=, and a=rtpmap /
//! sendrecv / sendonly / recvonly / inactive / label, and real-world SDP is often slightly
//! off (LF line ends, trailing spaces, missing o= or t=, unknown lines). A tolerant line
//! parser that skips what it does not need is simpler, faster and more forgiving than a full
//! SDP model that rejects a whole body for one odd line.

use callrec_pipeline::writer::Codec;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Why an SDP body could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// A line the parser needs is malformed.
    #[error("malformed SDP line {0:?}")]
    Line(String),
    /// An audio m= line has no connection address (neither media nor session c=).
    #[error("audio stream without a connection address")]
    NoConnection,
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// a=sendrecv (the default).
    #[default]
    SendRecv,
    /// a=sendonly.
    SendOnly,
    /// a=recvonly.
    RecvOnly,
    /// a=inactive.
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    fn from_attr(a: &str) -> Option<Direction> {
        Some(match a {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// One audio m= line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Where this party receives RTP (c= address, m= port); with symmetric RTP also where it
    /// sends from. Port 0 means the stream is disabled.
    pub addr: SocketAddr,
    /// G.711 payload types offered, in preference order (static 0/8 and rtpmap PCMU/PCMA).
    pub payload_types: Vec<(u8, Codec)>,
    /// All payload types on the m= line, in order, including ones callrec does not write.
    pub all_payload_types: Vec<u8>,
    /// RFC 4733 telephone-event payload type.
    pub event_pt: Option<u8>,
    /// Direction attribute.
    pub direction: Direction,
    /// a=label value.
    pub label: Option<String>,
}

impl MediaDescription {
    /// On hold or not flowing towards this party: `c=0.0.0.0` (RFC 2543 hold), port 0,
    /// or a direction in which this party receives nothing.
    pub fn is_hold(&self) -> bool {
        self.addr.ip().is_unspecified()
            || self.addr.port() == 0
            || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
    /// The preferred G.711 codec, if any is offered.
    pub fn codec(&self) -> Option<Codec> {
        self.payload_types.first().map(|&(_, c)| c)
    }
}

/// The parts of a session description callrec uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// Audio m= lines, in order.
    pub audio: Vec<MediaDescription>,
}

/// An audio m= section while its attribute lines are read.
struct Pending {
    port: u16,
    conn: Option<IpAddr>,
    pts: Vec<u8>,
    rtpmap: Vec<(u8, Codec)>,
    event_pt: Option<u8>,
    direction: Option<Direction>,
    label: Option<String>,
}

impl SessionDescription {
    /// Parses an SDP body. Accepts CRLF or LF line ends; lines it does not need are skipped.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = String::from_utf8_lossy(body);
        let mut session_conn: Option<IpAddr> = None;
        let mut session_dir: Option<Direction> = None;
        let mut pending: Option<Pending> = None;
        // Inside a non-audio m= section, whose attributes must not leak into anything.
        let mut in_other = false;
        let mut out = SessionDescription::default();

        for line in text.lines() {
            let line = line.trim_end();
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind.trim() {
                "m" => {
                    if let Some(p) = pending.take() {
                        out.audio.push(finish(p, session_conn, session_dir)?);
                    }
                    let mut f = value.split_ascii_whitespace();
                    let media = f.next().unwrap_or("");
                    if !media.eq_ignore_ascii_case("audio") {
                        in_other = true;
                        continue;
                    }
                    in_other = false;
                    let port = f
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| SdpError::Line(line.to_string()))?;
                    let _proto = f.next().ok_or_else(|| SdpError::Line(line.to_string()))?;
                    let pts = f.filter_map(|p| p.parse::<u8>().ok()).filter(|&p| p < 128);
                    pending = Some(Pending {
                        port,
                        conn: None,
                        pts: pts.collect(),
                        rtpmap: Vec::new(),
                        event_pt: None,
                        direction: None,
                        label: None,
                    });
                }
                "c" => {
                    let ip =
                        parse_connection(value).ok_or_else(|| SdpError::Line(line.to_string()))?;
                    match (&mut pending, in_other) {
                        (_, true) => {}
                        (Some(p), false) => p.conn = Some(ip),
                        (None, false) => session_conn = Some(ip),
                    }
                }
                "a" if !in_other => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let name = name.trim();
                    if let Some(d) = Direction::from_attr(name) {
                        match &mut pending {
                            Some(p) => p.direction = Some(d),
                            None => session_dir = Some(d),
                        }
                        continue;
                    }
                    let Some(p) = &mut pending else { continue };
                    match name {
                        "rtpmap" => parse_rtpmap(arg, p),
                        "label" => p.label = Some(arg.trim().to_string()),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(p) = pending.take() {
            out.audio.push(finish(p, session_conn, session_dir)?);
        }
        Ok(out)
    }
}

/// `IN IP4 192.0.2.1`, `IN IP4 224.2.1.1/127`, `IN IP6 2001:db8::1`.
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut f = value.split_ascii_whitespace();
    let (_net, _family, addr) = (f.next()?, f.next()?, f.next()?);
    addr.split('/').next()?.parse().ok()
}

/// `PT NAME/RATE[/CHANNELS]`: only 8 kHz PCMU, PCMA and telephone-event matter.
fn parse_rtpmap(arg: &str, p: &mut Pending) {
    let mut f = arg.split_ascii_whitespace();
    let (Some(pt), Some(enc)) = (f.next().and_then(|s| s.parse::<u8>().ok()), f.next()) else {
        return;
    };
    let mut e = enc.split('/');
    let name = e.next().unwrap_or("");
    if e.next() != Some("8000") {
        return;
    }
    if name.eq_ignore_ascii_case("PCMU") {
        p.rtpmap.push((pt, Codec::Pcmu));
    } else if name.eq_ignore_ascii_case("PCMA") {
        p.rtpmap.push((pt, Codec::Pcma));
    } else if name.eq_ignore_ascii_case("telephone-event") && p.event_pt.is_none() {
        p.event_pt = Some(pt);
    }
}

fn finish(
    p: Pending,
    session_conn: Option<IpAddr>,
    session_dir: Option<Direction>,
) -> Result<MediaDescription, SdpError> {
    let ip = p.conn.or(session_conn).ok_or(SdpError::NoConnection)?;
    let payload_types = p
        .pts
        .iter()
        .filter_map(|&pt| {
            let mapped = p.rtpmap.iter().find(|(m, _)| *m == pt).map(|&(_, c)| c);
            // Static types keep their meaning unless an rtpmap says otherwise.
            let static_codec = match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            };
            mapped.or(static_codec).map(|c| (pt, c))
        })
        .collect();
    let event_pt = p.event_pt.filter(|e| p.pts.contains(e));
    Ok(MediaDescription {
        addr: SocketAddr::new(ip, p.port),
        payload_types,
        all_payload_types: p.pts,
        event_pt,
        direction: p.direction.or(session_dir).unwrap_or_default(),
        label: p.label,
    })
}

/// Writes one audio media section: `m=audio`, `c=`, an `a=rtpmap` per G.711 and
/// telephone-event payload type, the direction and `a=label` when set. Lines end in CRLF.
/// The m= line lists `all_payload_types` (or, when that is empty, the G.711 types and the
/// event type).
pub fn write_audio_media(out: &mut String, m: &MediaDescription) {
    let _ = write!(out, "m=audio {} RTP/AVP", m.addr.port());
    if m.all_payload_types.is_empty() {
        for (pt, _) in &m.payload_types {
            let _ = write!(out, " {pt}");
        }
        if let Some(e) = m.event_pt {
            let _ = write!(out, " {e}");
        }
    } else {
        for pt in &m.all_payload_types {
            let _ = write!(out, " {pt}");
        }
    }
    out.push_str("\r\n");
    let family = if m.addr.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(out, "c=IN {family} {}\r\n", m.addr.ip());
    for (pt, codec) in &m.payload_types {
        let name = match codec {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        };
        let _ = write!(out, "a=rtpmap:{pt} {name}/8000\r\n");
    }
    if let Some(e) = m.event_pt {
        let _ = write!(out, "a=rtpmap:{e} telephone-event/8000\r\n");
    }
    let _ = write!(out, "a={}\r\n", m.direction.as_str());
    if let Some(l) = &m.label {
        let _ = write!(out, "a=label:{l}\r\n");
    }
}

#[cfg(test)]
mod tests;
