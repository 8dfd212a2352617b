//! SDP parser tests: typical offers, session vs media c=, IPv6, hold, odd formatting, and
//! the write/parse round trip.

use super::*;

const OFFER: &str = "v=0\r
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r
s=-\r
c=IN IP4 192.0.2.10\r
t=0 0\r
m=audio 49170 RTP/AVP 0 8 18 101\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:18 G729/8000\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-15\r
a=ptime:20\r
a=sendrecv\r
";

#[test]
fn typical_offer() {
    let s = SessionDescription::parse(OFFER.as_bytes()).unwrap();
    assert_eq!(s.audio.len(), 1);
    let m = &s.audio[0];
    assert_eq!(m.addr, "192.0.2.10:49170".parse().unwrap());
    assert_eq!(m.payload_types, vec![(0, Codec::Pcmu), (8, Codec::Pcma)]);
    assert_eq!(m.all_payload_types, vec![0, 8, 18, 101]);
    assert_eq!(m.event_pt, Some(101));
    assert_eq!(m.direction, Direction::SendRecv);
    assert_eq!(m.label, None);
    assert!(!m.is_hold());
    assert_eq!(m.codec(), Some(Codec::Pcmu));
}

#[test]
fn lf_media_level_c_ipv6_dynamic_pcma_and_labels() {
    let sdp = "v=0
c=IN IP4 192.0.2.1
m=video 5000 RTP/AVP 96
c=IN IP4 198.51.100.99
a=rtpmap:96 PCMU/8000
a=sendonly
m=audio 6000 RTP/AVP 97 0
c=IN IP6 2001:db8::7
a=rtpmap:97 pcma/8000
a=recvonly
a=label:1
m=audio 6002 RTP/AVP 8
a=label:2
";
    let s = SessionDescription::parse(sdp.as_bytes()).unwrap();
    assert_eq!(s.audio.len(), 2, "video skipped");
    assert_eq!(s.audio[0].addr, "[2001:db8::7]:6000".parse().unwrap());
    assert_eq!(
        s.audio[0].payload_types,
        vec![(97, Codec::Pcma), (0, Codec::Pcmu)]
    );
    assert_eq!(s.audio[0].direction, Direction::RecvOnly);
    assert_eq!(s.audio[0].label.as_deref(), Some("1"));
    assert_eq!(
        s.audio[1].addr,
        "192.0.2.1:6002".parse().unwrap(),
        "session c="
    );
    assert_eq!(
        s.audio[1].direction,
        Direction::SendRecv,
        "video's sendonly does not leak"
    );
    assert_eq!(s.audio[1].label.as_deref(), Some("2"));
}

#[test]
fn hold_forms_and_session_direction() {
    let sdp = "v=0\nc=IN IP4 0.0.0.0\na=inactive\nm=audio 4000 RTP/AVP 0\n";
    let s = SessionDescription::parse(sdp.as_bytes()).unwrap();
    assert!(s.audio[0].addr.ip().is_unspecified());
    assert_eq!(s.audio[0].direction, Direction::Inactive);
    assert!(s.audio[0].is_hold());
    let sdp = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=sendonly\n";
    assert!(SessionDescription::parse(sdp.as_bytes()).unwrap().audio[0].is_hold());
    let sdp = "v=0\nc=IN IP4 192.0.2.1\nm=audio 0 RTP/AVP 0\n";
    assert!(SessionDescription::parse(sdp.as_bytes()).unwrap().audio[0].is_hold());
}

#[test]
fn errors_and_oddities() {
    assert_eq!(
        SessionDescription::parse(b"v=0\nm=audio 4000 RTP/AVP 0\n").unwrap_err(),
        SdpError::NoConnection
    );
    assert!(matches!(
        SessionDescription::parse(b"v=0\nc=IN IP4 pbx.example.com\nm=audio 4000 RTP/AVP 0\n"),
        Err(SdpError::Line(_))
    ));
    assert!(matches!(
        SessionDescription::parse(b"c=IN IP4 192.0.2.1\nm=audio 99999 RTP/AVP 0\n"),
        Err(SdpError::Line(_))
    ));
    // No audio at all, garbage lines, multicast TTL suffix, rtpmap at another rate.
    assert_eq!(SessionDescription::parse(b"").unwrap().audio.len(), 0);
    let s = SessionDescription::parse(
        b"junk\n\xff\xfe\nc=IN IP4 224.2.1.1/127\nm=audio 4000/2 RTP/AVP 96 8 x 300\na=rtpmap:96 PCMU/16000\n",
    )
    .unwrap();
    assert_eq!(s.audio[0].addr, "224.2.1.1:4000".parse().unwrap());
    assert_eq!(s.audio[0].payload_types, vec![(8, Codec::Pcma)]);
    assert_eq!(s.audio[0].all_payload_types, vec![96, 8]);
}

#[test]
fn no_panic_on_prefixes() {
    let b = OFFER.as_bytes();
    for n in 0..b.len() {
        let _ = SessionDescription::parse(&b[..n]);
    }
}

#[test]
fn write_then_parse_round_trip() {
    let cases = [
        MediaDescription {
            addr: "192.0.2.5:30000".parse().unwrap(),
            payload_types: vec![(8, Codec::Pcma), (0, Codec::Pcmu)],
            all_payload_types: vec![8, 0, 101],
            event_pt: Some(101),
            direction: Direction::SendOnly,
            label: Some("1".into()),
        },
        MediaDescription {
            addr: "[2001:db8::5]:30002".parse().unwrap(),
            payload_types: vec![(0, Codec::Pcmu)],
            all_payload_types: vec![0],
            event_pt: None,
            direction: Direction::SendRecv,
            label: None,
        },
        MediaDescription {
            addr: "0.0.0.0:30004".parse().unwrap(),
            payload_types: vec![(96, Codec::Pcmu)],
            all_payload_types: vec![96, 18],
            event_pt: None,
            direction: Direction::Inactive,
            label: Some("agent".into()),
        },
    ];
    let mut out = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nt=0 0\r\n");
    for m in &cases {
        write_audio_media(&mut out, m);
    }
    let parsed = SessionDescription::parse(out.as_bytes()).unwrap();
    assert_eq!(parsed.audio, cases.to_vec(), "{out}");
}
