//! SIP fixtures shared by the root crate's benchmarks: one recorded call as the bytes a
//! capture holds (INVITE with SDP, 180, 200 with SDP, ACK, BYE, 200), with a unique Call-ID and
//! unique media ports per call number, and the control core that records it (extension 2001).

#![allow(dead_code)] // each bench uses part of it

use callrec::config::Config;
use callrec::control::core::{ControlConfig, ControlCore};
use callrec_pipeline::writer::OutputFormat;
use callrec_pipeline::Timestamp;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// Caller (customer) SIP address.
pub const A: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 5060));
/// Callee (agent, the recorded DN 2001) SIP address.
pub const B: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 20), 5060));

/// Media address of call `n`'s caller (`callee = false`) or callee: hosts spread over
/// 198.51.100.0/24 and 203.0.113.0/24, even ports, unique per call up to 250 x 25,000 calls.
pub fn media(n: u32, callee: bool) -> SocketAddrV4 {
    let host = (n / 25_000 % 250) as u8 + 1;
    let port = 10_000 + (n % 25_000) as u16 * 2;
    if callee {
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port)
    } else {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, host), port)
    }
}

/// The SIP of call `n`, in capture order, with the direction of each message
/// (`true` = caller to callee).
pub struct CallSip {
    /// INVITE, 180, 200, ACK: the recording starts at the ACK's 200 (the answer).
    pub setup: [(bool, Vec<u8>); 4],
    /// BYE and its 200.
    pub teardown: [(bool, Vec<u8>); 2],
}

fn text(n: u32, start: &str, cseq: &str, to_tag: bool, body: Option<String>) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    let tag = if to_tag { ";tag=b1" } else { "" };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-{n}-{b}\r\nFrom: <sip:5551234@192.0.2.10>;tag=a1\r\nTo: <sip:2001@192.0.2.20>{tag}\r\nCall-ID: bench-{n}@pbx\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContact: <sip:5551234@192.0.2.10:5060>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        b = cseq.replace(' ', "-"),
    )
    .into_bytes()
}

fn sdp(m: SocketAddrV4) -> String {
    let ip = m.ip();
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        m.port()
    )
}

/// Call `n`'s messages.
pub fn call(n: u32) -> CallSip {
    let invite = "INVITE sip:2001@192.0.2.20 SIP/2.0";
    CallSip {
        setup: [
            (true, text(n, invite, "1 INVITE", false, Some(sdp(media(n, false))))),
            (false, text(n, "SIP/2.0 180 Ringing", "1 INVITE", true, None)),
            (false, text(n, "SIP/2.0 200 OK", "1 INVITE", true, Some(sdp(media(n, true))))),
            (true, text(n, "ACK sip:2001@192.0.2.20 SIP/2.0", "1 ACK", true, None)),
        ],
        teardown: [
            (true, text(n, "BYE sip:2001@192.0.2.20 SIP/2.0", "2 BYE", true, None)),
            (false, text(n, "SIP/2.0 200 OK", "2 BYE", true, None)),
        ],
    }
}

/// A control core recording extension 2001 to `out` on one writer.
pub fn core(out: &str) -> ControlCore {
    let mut config = Config::parse("").expect("empty configuration parses");
    config.add_recorded_dns(&["2001".to_string()]);
    ControlCore::new(ControlConfig {
        config,
        writers: 1,
        out_dir: PathBuf::from(out),
        format: OutputFormat::G711,
        conf_id_prefix: "bench".into(),
    })
    .expect("control core")
}

/// Capture time `us` microseconds after a fixed start.
pub fn at(us: u64) -> Timestamp {
    Timestamp::from_parts(1_700_000_000, 0).plus_nanos(us * 1000)
}

/// Source and destination of a message in direction `a_to_b`.
pub fn ends(a_to_b: bool) -> (SocketAddr, SocketAddr) {
    if a_to_b {
        (A, B)
    } else {
        (B, A)
    }
}
