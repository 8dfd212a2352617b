//! Parser and builder tests: everyday messages, RFC 4475 torture messages (re-typed from
//! memory, close to the RFC's text), and builder round trips.

use super::*;

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

const INVITE: &str = "INVITE sip:2001@192.0.2.20 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1
Max-Forwards: 70
From: \"Alice Customer\" <sip:5551234@192.0.2.10>;tag=f1
To: <sip:2001@192.0.2.20>
Call-ID: call-1@192.0.2.10
CSeq: 1 INVITE
Contact: <sip:5551234@192.0.2.10:5060>
Content-Type: application/sdp
Content-Length: 4

v=0
";

#[test]
fn basic_invite() {
    let m = SipMessage::parse(&crlf(INVITE)).unwrap();
    assert_eq!(
        m.start,
        StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:2001@192.0.2.20".into()
        }
    );
    assert_eq!(m.call_id, "call-1@192.0.2.10");
    assert_eq!(m.from_user.as_deref(), Some("5551234"));
    assert_eq!(m.from_tag.as_deref(), Some("f1"));
    assert_eq!(m.to_user.as_deref(), Some("2001"));
    assert_eq!(m.to_tag, None);
    assert_eq!(m.ruri_user.as_deref(), Some("2001"));
    assert_eq!(m.cseq, (1, "INVITE".to_string()));
    assert_eq!(
        m.vias,
        vec!["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1"]
    );
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-a1"));
    assert_eq!(m.content_type.as_deref(), Some("application/sdp"));
    assert_eq!(m.contact.as_deref(), Some("sip:5551234@192.0.2.10:5060"));
    assert_eq!(&m.body[..], b"v=0\r");
    assert_eq!(m.method(), "INVITE");
    assert_eq!(m.header("max-forwards"), Some("70"));
    assert_eq!(m.header("i"), Some("call-1@192.0.2.10"));
}

#[test]
fn lf_only_line_ends() {
    let m = SipMessage::parse(INVITE.as_bytes()).unwrap();
    assert_eq!(m.call_id, "call-1@192.0.2.10");
    assert_eq!(&m.body[..], b"v=0\n");
}

#[test]
fn compact_forms_multi_value_and_case() {
    let msg = "BYE sip:5551234@192.0.2.10 SIP/2.0
v: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-top, SIP/2.0/UDP 192.0.2.30:5080;branch=z9hG4bK-2
VIA: SIP/2.0/UDP 192.0.2.40;branch=z9hG4bK-3
f: <sip:2001@192.0.2.20>;tag=t9
t: sip:5551234@192.0.2.10;tag=f1
i: compact@x
cseq: 2 BYE
l: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.vias.len(), 3);
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-top"));
    assert_eq!(m.vias[1], "SIP/2.0/UDP 192.0.2.30:5080;branch=z9hG4bK-2");
    assert_eq!(m.from_user.as_deref(), Some("2001"));
    assert_eq!(m.from_tag.as_deref(), Some("t9"));
    assert_eq!(m.to_user.as_deref(), Some("5551234"));
    assert_eq!(m.to_tag.as_deref(), Some("f1"));
    assert_eq!(m.call_id, "compact@x");
    assert_eq!(m.header("Call-ID"), Some("compact@x"));
    assert_eq!(m.header("Content-Length"), Some("0"));
    assert_eq!(m.header("l"), Some("0"));
    assert!(m.body.is_empty());
}

#[test]
fn folded_lines_are_joined() {
    let msg = "INVITE sip:2001@h SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1
  ;branch=z9hG4bK-fold
From: A
\t<sip:a@h>;tag=1
To: <sip:2001@h>
Call-ID: fold
CSeq:
 1 INVITE
Subject: I know you're there,
   pick up the phone
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-fold"));
    assert_eq!(m.from_user.as_deref(), Some("a"));
    assert_eq!(m.cseq.0, 1);
    assert_eq!(
        m.header("s"),
        Some("I know you're there, pick up the phone")
    );
}

#[test]
fn content_length_against_body() {
    let base =
        "OPTIONS sip:h SIP/2.0\nCall-ID: x\nCSeq: 1 OPTIONS\nFrom: <sip:a@h>;tag=1\nTo: <sip:h>\n";
    let short = format!("{base}Content-Length: 10\n\n12345");
    assert_eq!(
        SipMessage::parse(short.as_bytes()).unwrap_err(),
        SipError::Truncated
    );
    let long = format!("{base}Content-Length: 3\n\n12345");
    assert_eq!(
        &SipMessage::parse(long.as_bytes()).unwrap().body[..],
        b"123"
    );
    let none = format!("{base}\n12345");
    assert_eq!(
        &SipMessage::parse(none.as_bytes()).unwrap().body[..],
        b"12345"
    );
    let no_blank_line = base.to_string();
    assert!(SipMessage::parse(no_blank_line.as_bytes())
        .unwrap()
        .body
        .is_empty());
}

#[test]
fn pai_tel_and_display_names() {
    let msg = "INVITE tel:+15551000;phone-context=example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-t
From: \"Quoted <not uri>\" <tel:+15552000>;tag=q1
To: Bob <sip:%32001@h;user=phone>
P-Asserted-Identity: \"Real\" <sip:+15553000@carrier.example>, <tel:+15553000>
Call-ID: tel
CSeq: 1 INVITE
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.ruri_user.as_deref(), Some("+15551000"));
    assert_eq!(m.from_user.as_deref(), Some("+15552000"));
    assert_eq!(m.from_tag.as_deref(), Some("q1"));
    assert_eq!(m.to_user.as_deref(), Some("2001"), "percent-decoded");
    assert_eq!(m.pai_user.as_deref(), Some("+15553000"));
}

#[test]
fn responses() {
    let msg = "SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-a1
From: <sip:5551234@192.0.2.10>;tag=f1
To: <sip:2001@192.0.2.20>;tag=b1
Call-ID: call-1@192.0.2.10
CSeq: 1 INVITE
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.status(), Some(486));
    assert_eq!(m.method(), "INVITE");
    assert!(!m.is_request());
    assert_eq!(m.to_tag.as_deref(), Some("b1"));
    assert!(SipMessage::parse(b"SIP/2.0 99 Low\r\nCall-ID: x\r\n\r\n").is_err());
    assert!(SipMessage::parse(b"SIP/2.0 abc Low\r\n\r\n").is_err());
}

#[test]
fn missing_mandatory_headers() {
    let no_callid =
        "INVITE sip:a@h SIP/2.0\nFrom: <sip:b@h>;tag=1\nTo: <sip:a@h>\nCSeq: 1 INVITE\n\n";
    assert_eq!(
        SipMessage::parse(no_callid.as_bytes()).unwrap_err(),
        SipError::Header("Call-ID")
    );
    let no_cseq = "INVITE sip:a@h SIP/2.0\nFrom: <sip:b@h>;tag=1\nTo: <sip:a@h>\nCall-ID: x\n\n";
    assert_eq!(
        SipMessage::parse(no_cseq.as_bytes()).unwrap_err(),
        SipError::Header("CSeq")
    );
    let no_from = "INVITE sip:a@h SIP/2.0\nTo: <sip:a@h>\nCall-ID: x\nCSeq: 1 INVITE\n\n";
    assert_eq!(
        SipMessage::parse(no_from.as_bytes()).unwrap_err(),
        SipError::Header("From")
    );
    assert!(SipMessage::parse(b"").is_err());
    assert!(SipMessage::parse(b"\x16\x03\x01\x02\x00garbage").is_err());
}

// ---- RFC 4475 torture messages ----

/// 3.1.1.1 wsinv: compact forms, folding, odd whitespace, escaped quotes, unknown headers.
const WSINV: &str = "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

#[test]
fn rfc4475_wsinv() {
    let msg = crlf(WSINV);
    let m = SipMessage::parse(&msg).unwrap();
    assert_eq!(m.call_id, "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.cseq, (9, "INVITE".to_string()));
    assert_eq!(m.ruri_user.as_deref(), Some("vivekg"));
    assert_eq!(m.to_user.as_deref(), Some("vivekg"));
    assert_eq!(m.from_user.as_deref(), Some("jdrosen"));
    assert_eq!(m.from_tag.as_deref(), Some("98asjd8"));
    assert_eq!(m.to_tag.as_deref(), Some("1918181833n"));
    assert_eq!(m.contact.as_deref(), Some("sip:jdrosen@example.com"));
    assert_eq!(
        m.header("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.content_type.as_deref(), Some("application/sdp"));
    assert_eq!(m.body.len(), 150);
    assert_eq!(m.top_branch.as_deref(), Some("390skdjuw"));
    assert_eq!(m.vias.len(), 3, "{:?}", m.vias);
}

#[test]
fn rfc4475_intmeth_and_esc01() {
    let intmeth = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{5045}\u{9593}\u{5c0f}\u{5045}\u{9593}
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(intmeth)).unwrap();
    assert_eq!(m.method(), "!interesting-Method0123456789_*+`.%indeed'~");
    assert_eq!(m.from_tag.as_deref(), Some("_token~1'+`*%!-."));
    assert!(m.header("extensionHeader-!.%*+_`'~").is_some());

    let esc01 = "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(esc01)).unwrap();
    assert_eq!(m.ruri_user.as_deref(), Some("sips:user@example.com"));
    assert_eq!(m.to_user.as_deref(), Some("user"));
    assert_eq!(m.from_user.as_deref(), Some("I have spaces"));
    assert_eq!(m.content_type.as_deref(), Some("application/sdp"));
}

#[test]
fn rfc4475_lwsdisp_longreq_dblreq() {
    let lwsdisp = "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

";
    let m = SipMessage::parse(&crlf(lwsdisp)).unwrap();
    assert_eq!(m.from_user.as_deref(), Some("caller"));
    assert_eq!(m.from_tag.as_deref(), Some("323"));

    let long_user = "amazinglylongcallername".repeat(20);
    let longreq = format!(
        "INVITE sip:user@example.com SIP/2.0
To: \"I have a user name of {0} proportion\"<sip:user@example.com:6000;unknownparam1=verylonguserparameter{0};lr>
From: sip:{0}@example.net;tag=12982982982
Call-ID: longreq.onereallyreallyreallyreallyreallyreallyreallyreallylongcallid
CSeq: 3882340 INVITE
Via: SIP/2.0/TCP sip33.example.com
v: SIP/2.0/TCP sip32.example.com
V: SIP/2.0/TCP sip31.example.com
Max-Forwards: 70
Content-Type: application/sdp
l: 0

",
        long_user
    );
    let m = SipMessage::parse(&crlf(&longreq)).unwrap();
    assert_eq!(m.from_user.as_deref(), Some(long_user.as_str()));
    assert_eq!(m.vias.len(), 3);

    // dblreq: a REGISTER followed by a second message in the same datagram; Content-Length 0
    // cuts the body, so the trailing INVITE is ignored.
    let dblreq = "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(dblreq)).unwrap();
    assert_eq!(m.method(), "REGISTER");
    assert!(m.body.is_empty());
    assert_eq!(m.contact.as_deref(), Some("sip:j.user@host.example.com"));
}

#[test]
fn rfc4475_invalid_messages_are_errors() {
    let mcl01 = "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
";
    assert_eq!(
        SipMessage::parse(&crlf(mcl01)).unwrap_err(),
        SipError::Header("Content-Length")
    );
    // ncl: negative Content-Length.
    let ncl = "INVITE sip:user@example.com SIP/2.0\nMax-Forwards: 254\nTo: sip:j.user@example.com\nFrom: sip:caller@example.net;tag=32394234\nCall-ID: ncl.0ha0isndaksdj2193423r542w35\nCSeq: 0 INVITE\nVia: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\nContent-Type: application/sdp\nContact: <sip:caller@example53.example.net>\nContent-Length: -999\n\nv=0\n";
    assert!(SipMessage::parse(ncl.as_bytes()).is_err());
    // mismatch01: CSeq method differs from the request method.
    let mismatch = "OPTIONS sip:user@example.com SIP/2.0\nTo: sip:j.user@example.com\nFrom: sip:caller@example.net;tag=34525\nMax-Forwards: 6\nCall-ID: mismatch01.dj0234sxdfl3\nCSeq: 8 INVITE\nVia: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\nl: 0\n\n";
    assert_eq!(
        SipMessage::parse(mismatch.as_bytes()).unwrap_err(),
        SipError::Header("CSeq")
    );
    // badvers: SIP/7.0.
    let badvers = "OPTIONS sip:t.watson@example.org SIP/7.0\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\nMax-Forwards: 70\nFrom: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\nTo: T. Watson <sip:t.watson@example.org>\nCall-ID: badvers.31417@c.example.com\nCSeq: 1 OPTIONS\nl: 0\n\n";
    assert!(SipMessage::parse(badvers.as_bytes()).is_err());
    // lwsstart / scalar overflow: CSeq beyond 2^32.
    let scalar = "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\nTo: <sip:user@example.com>\nFrom: <sip:user@example.com>;tag=239232jh3\nCSeq: 36893488147419103232 REGISTER\nCall-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\nMax-Forwards: 300\nl: 0\n\n";
    assert!(SipMessage::parse(scalar.as_bytes()).is_err());
    // Request-URI with spaces (lwsruri) is not three tokens.
    let lwsruri = "INVITE sip:user@example.com; lr SIP/2.0\nTo: sip:user@example.com\nFrom: sip:caller@example.com;tag=234\nCall-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\nCSeq: 2130706432 INVITE\nVia: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\nl: 0\n\n";
    assert!(SipMessage::parse(lwsruri.as_bytes()).is_err());
}

#[test]
fn rfc4475_bcast_response_with_odd_via() {
    let bcast = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(bcast)).unwrap();
    assert_eq!(m.vias.len(), 2);
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK1324923"));
}

#[test]
fn no_panic_on_any_prefix_or_mutation() {
    let all = [crlf(INVITE), crlf(WSINV)];
    for msg in &all {
        for n in 0..msg.len() {
            let _ = SipMessage::parse(&msg[..n]);
            let mut m = msg.clone();
            m[n] = m[n].wrapping_add(0x80);
            let _ = SipMessage::parse(&m);
        }
    }
}


#[test]
fn builder_round_trip() {
    let ruri = "sip:msml=abc123@rm.example:5070;dn=2001;record";
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
    let bytes = SipBuilder::request("INVITE", ruri)
        .via("UDP", "192.0.2.1:5060", "z9hG4bK-rt1")
        .max_forwards(70)
        .from("sip:ss@192.0.2.1", "ss1")
        .to("sip:msml=abc123@rm.example:5070", None)
        .call_id("rt-1@192.0.2.1")
        .cseq(1, "INVITE")
        .contact("sip:ss@192.0.2.1:5060")
        .header("X-Genesys-Record", "yes")
        .body("application/sdp", sdp);
    let m = SipMessage::parse(&bytes).unwrap();
    assert_eq!(
        m.start,
        StartLine::Request {
            method: "INVITE".into(),
            uri: ruri.into()
        }
    );
    assert_eq!(m.ruri_user.as_deref(), Some("msml=abc123"));
    assert_eq!(
        m.vias,
        vec!["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-rt1"]
    );
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-rt1"));
    assert_eq!(m.from_user.as_deref(), Some("ss"));
    assert_eq!(m.from_tag.as_deref(), Some("ss1"));
    assert_eq!(m.to_user.as_deref(), Some("msml=abc123"));
    assert_eq!(m.call_id, "rt-1@192.0.2.1");
    assert_eq!(m.cseq, (1, "INVITE".into()));
    assert_eq!(m.contact.as_deref(), Some("sip:ss@192.0.2.1:5060"));
    assert_eq!(m.header("X-Genesys-Record"), Some("yes"));
    assert_eq!(&m.body[..], sdp);

    let ok = response_to(&m, 200, "OK", Some("rm7"))
        .contact("sip:rm@rm.example:5070")
        .body("application/sdp", sdp);
    let r = SipMessage::parse(&ok).unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.vias, m.vias);
    assert_eq!(r.from_tag.as_deref(), Some("ss1"));
    assert_eq!(r.to_tag.as_deref(), Some("rm7"));
    assert_eq!(r.call_id, m.call_id);
    assert_eq!(r.cseq, m.cseq);
    assert_eq!(r.header("From"), m.header("From"));

    // An in-dialog request already has a To tag: response_to keeps it.
    let bye = SipBuilder::request("BYE", "sip:rm@rm.example:5070")
        .via("UDP", "192.0.2.1:5060", "z9hG4bK-rt2")
        .from("sip:ss@192.0.2.1", "ss1")
        .to("sip:msml=abc123@rm.example:5070", Some("rm7"))
        .call_id("rt-1@192.0.2.1")
        .cseq(3, "BYE")
        .finish();
    let bye = SipMessage::parse(&bye).unwrap();
    let ok = SipMessage::parse(&response_to(&bye, 200, "OK", Some("other")).finish()).unwrap();
    assert_eq!(ok.to_tag.as_deref(), Some("rm7"));
    assert_eq!(ok.cseq, (3, "BYE".into()));
    assert!(ok.body.is_empty());
}

#[test]
fn via_forms() {
    let msg = "SIP/2.0 200 OK
Via: SIP/2.0/UDP [2001:db8::1]:5060;rport=5061;received=2001:db8::9;branch=z9hG4bK-v6
Via: SIP/2.0/TCP pbx.example.com;rport;branch=z9hG4bK-2;alias
Via: SIP/2.0/TLS 192.0.2.3:5061;maddr=192.0.2.4;branch=z9hG4bK-3
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: v
CSeq: 1 INVITE
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-v6"));
    assert_eq!(m.vias.len(), 3, "{:?}", m.vias);
    assert_eq!(
        m.vias[1],
        "SIP/2.0/TCP pbx.example.com;rport;branch=z9hG4bK-2;alias"
    );
}

#[test]
fn via_ezk_cannot_parse_falls_back_to_raw() {
    let msg = "SIP/2.0 200 OK
Via: SIP/2.0/UDP bad host name;branch=z9hG4bK-top
Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bK-second
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: v
CSeq: 1 INVITE
Content-Length: 0

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.top_branch.as_deref(), Some("z9hG4bK-top"));
    assert_eq!(
        m.vias,
        vec![
            "SIP/2.0/UDP bad host name;branch=z9hG4bK-top",
            "SIP/2.0/UDP 192.0.2.3;branch=z9hG4bK-second"
        ]
    );
}

#[test]
fn tags_after_odd_parameters() {
    let msg = "BYE sip:a@h SIP/2.0
From: <sip:b@h>;x=\"a b\";tag=9
To: \"Semi;colon\" <sip:a@h;transport=udp>;tag=10
Call-ID: p
CSeq: 1 BYE

";
    let m = SipMessage::parse(&crlf(msg)).unwrap();
    assert_eq!(m.from_tag.as_deref(), Some("9"));
    assert_eq!(m.to_tag.as_deref(), Some("10"));
    assert_eq!(m.to_user.as_deref(), Some("a"));
}

#[test]
fn multipart_body_sdp_part() {
    let body = "--uniqueBoundary\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 192.0.2.1\r\n\r\n--uniqueBoundary\r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\r\n--uniqueBoundary--\r\n";
    let msg = format!(
        "INVITE sip:2001@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:2001@h>\r\nCall-ID: mp\r\nCSeq: 1 INVITE\r\nContent-Type: multipart/mixed;boundary=\"uniqueBoundary\"\r\nMIME-Version: 1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let m = SipMessage::parse(msg.as_bytes()).unwrap();
    assert_eq!(m.content_type.as_deref(), Some("multipart/mixed"));
    assert_eq!(m.sdp_body(), Some(&b"v=0\r\nc=IN IP4 192.0.2.1\r\n"[..]));
    // Other types and empty bodies give no SDP.
    let info = msg.replace(
        "multipart/mixed;boundary=\"uniqueBoundary\"",
        "application/msml+xml",
    );
    assert_eq!(SipMessage::parse(info.as_bytes()).unwrap().sdp_body(), None);
    let no_sdp_part = msg.replace("application/sdp", "application/xyz");
    assert_eq!(
        SipMessage::parse(no_sdp_part.as_bytes())
            .unwrap()
            .sdp_body(),
        None
    );
    let empty = "BYE sip:a@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: e\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        SipMessage::parse(empty.as_bytes()).unwrap().sdp_body(),
        None
    );
    for n in 0..msg.len() {
        if let Ok(m) = SipMessage::parse(&msg.as_bytes()[..n]) {
            let _ = m.sdp_body();
        }
    }
}
