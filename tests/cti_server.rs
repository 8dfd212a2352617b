//! The CTI server over real TCP on 127.0.0.1, and `callrec ctl` against a tiny fake control
//! loop (the test thread polls the server and answers requests).

use callrec::control::core::CtiClient;
use callrec::cti::ctl::{self, CtlArgs, CtlCommand, CallOp};
use callrec::cti::protocol::{error_code, CallInfo, Event, Request, RequestLine};
use callrec::cti::server::{CtiInput, CtiServer, QUEUE_LEN};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(5);

fn server() -> CtiServer {
    CtiServer::bind("127.0.0.1:0".parse().unwrap()).unwrap()
}

struct Peer {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Peer {
    fn connect(s: &CtiServer) -> Peer {
        let w = TcpStream::connect(s.local_addr()).unwrap();
        w.set_read_timeout(Some(STEP)).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Peer { w, r }
    }
    fn say(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
    }
    fn hear(&mut self) -> Event {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// The next input, failing the test after `STEP`.
fn next(s: &mut CtiServer) -> CtiInput {
    s.wait(STEP).expect("no input from the server within 5 s")
}

fn request(s: &mut CtiServer) -> (CtiClient, RequestLine) {
    match next(s) {
        CtiInput::Request { client, line } => (client, line),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn register_line(id: i64, dn: &str) -> String {
    format!("{{\"request\":\"RegisterAddress\",\"ReferenceID\":{id},\"ThisDN\":\"{dn}\"}}\n")
}

#[test]
fn several_clients_in_order_each_gets_its_own_answers() {
    let mut s = server();
    let mut peers: Vec<Peer> = (0..4).map(|_| Peer::connect(&s)).collect();
    for (p, peer) in peers.iter_mut().enumerate() {
        let mut batch = String::new();
        for i in 0..50 {
            batch += &register_line(i, &format!("{p}-{i}"));
        }
        // CRLF on one client: accepted like LF.
        if p == 1 {
            batch = batch.replace('\n', "\r\n");
        }
        peer.say(&batch);
    }
    let mut seen: std::collections::HashMap<CtiClient, Vec<i64>> = Default::default();
    let mut dn_of: std::collections::HashMap<CtiClient, String> = Default::default();
    for _ in 0..200 {
        let (client, line) = request(&mut s);
        let Request::RegisterAddress { this_dn } = &line.request else { panic!("{line:?}") };
        let prefix = this_dn.split('-').next().unwrap().to_string();
        assert_eq!(dn_of.entry(client).or_insert(prefix.clone()), &prefix, "a client's requests are its own");
        seen.entry(client).or_default().push(line.reference_id.unwrap());
        s.send(client, &Event::EventRegistered { reference_id: line.reference_id, this_dn: this_dn.clone() });
    }
    assert_eq!(seen.len(), 4);
    for ids in seen.values() {
        assert_eq!(ids, &(0..50).collect::<Vec<_>>(), "requests arrive in order per client");
    }
    for (p, peer) in peers.iter_mut().enumerate() {
        for i in 0..50 {
            assert_eq!(peer.hear(), Event::EventRegistered { reference_id: Some(i), this_dn: format!("{p}-{i}") });
        }
    }
    assert!(s.poll().is_none());
    // wait sleeps out its timeout when nothing comes.
    let t = Instant::now();
    assert!(s.wait(Duration::from_millis(50)).is_none());
    assert!(t.elapsed() >= Duration::from_millis(50));
    let st = s.stats();
    assert_eq!((st.clients_accepted, st.clients_connected, st.requests, st.bad_lines, st.dropped), (4, 4, 200, 0, 0));
}

#[test]
fn malformed_lines_get_bad_request_and_the_client_stays() {
    let mut s = server();
    let mut a = Peer::connect(&s);
    a.say("this is not json\n");
    match a.hear() {
        Event::EventError { reference_id: None, error_code: error_code::BAD_REQUEST, error_message } => {
            assert!(error_message.contains("not valid JSON"), "{error_message}")
        }
        other => panic!("{other:?}"),
    }
    a.say("\n\r\n{\"request\":\"Frobnicate\",\"ReferenceID\":9}\n");
    match a.hear() {
        Event::EventError { reference_id: Some(9), error_code: error_code::BAD_REQUEST, error_message } => {
            assert!(error_message.contains("Frobnicate"), "{error_message}")
        }
        other => panic!("{other:?}"),
    }
    a.say("{\"request\":\"RouteCall\",\"ReferenceID\":10,\"ThisDN\":\"7000\"}\n");
    match a.hear() {
        Event::EventError { reference_id: Some(10), error_code: error_code::BAD_REQUEST, error_message } => {
            assert!(error_message.contains("ConnectionID"), "{error_message}")
        }
        other => panic!("{other:?}"),
    }
    a.w.write_all(b"{\"request\":\"Register\xc3\x28\"}\n").unwrap();
    match a.hear() {
        Event::EventError { error_code: error_code::BAD_REQUEST, error_message, .. } => assert!(error_message.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
    // Still connected: a good request reaches the control core, and none of the bad ones did.
    a.say(&register_line(11, "2001"));
    let (_, line) = request(&mut s);
    assert_eq!(line.reference_id, Some(11));
    assert!(s.poll().is_none());
    assert_eq!(s.stats().bad_lines, 4);
    assert_eq!(s.stats().dropped, 0);
}

#[test]
fn a_one_megabyte_line_drops_that_client_only() {
    let mut s = server();
    let mut good = Peer::connect(&s);
    good.say(&register_line(1, "2001"));
    let (good_id, _) = request(&mut s);

    let mut big = Peer::connect(&s);
    let writer = {
        let mut w = big.w.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut line = format!("{{\"request\":\"RegisterAddress\",\"ReferenceID\":2,\"ThisDN\":\"{}", "9".repeat(1 << 20));
            line.push_str("\"}\n");
            // The server may close before taking it all.
            let _ = w.write_all(line.as_bytes());
        })
    };
    let big_id = match next(&mut s) {
        CtiInput::Gone { client } => client,
        other => panic!("expected Gone for the 1 MB client, got {other:?}"),
    };
    assert_ne!(big_id, good_id);
    // The client reads LINE_TOO_LONG then end of stream.
    let mut rest = Vec::new();
    let _ = big.r.read_to_end(&mut rest);
    // The server reads on (discarding) for a while, so the error is not lost to a reset.
    let text = String::from_utf8_lossy(&rest);
    let ev: Event = serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(matches!(ev, Event::EventError { reference_id: None, error_code: error_code::LINE_TOO_LONG, .. }), "{text}");
    assert_eq!(text.lines().count(), 1);
    writer.join().unwrap();
    // Sending to the dropped client is a no-op; the other client is untouched.
    s.send(big_id, &Event::EventRegistered { reference_id: None, this_dn: "x".into() });
    s.send(good_id, &Event::EventRegistered { reference_id: Some(1), this_dn: "2001".into() });
    assert_eq!(good.hear(), Event::EventRegistered { reference_id: Some(1), this_dn: "2001".into() });
    good.say(&register_line(3, "2002"));
    let (c, line) = request(&mut s);
    assert_eq!((c, line.reference_id), (good_id, Some(3)));
    let st = s.stats();
    assert_eq!((st.dropped, st.clients_connected, st.requests), (1, 1, 2));
}

#[test]
fn disconnect_mid_line_yields_gone_and_no_request() {
    let mut s = server();
    let mut a = Peer::connect(&s);
    let mut b = Peer::connect(&s);
    a.say(&register_line(1, "2001"));
    a.say("{\"request\":\"RegisterAddress\",\"Refer");
    let (a_id, _) = request(&mut s);
    drop(a);
    assert_eq!(next(&mut s), CtiInput::Gone { client: a_id });
    b.say(&register_line(2, "2002"));
    let (b_id, line) = request(&mut s);
    assert_ne!(b_id, a_id);
    assert_eq!(line.reference_id, Some(2));
    // A reset (RST, SO_LINGER 0 is not in std: close with unread data instead) is no different.
    let mut c = Peer::connect(&s);
    c.say(&register_line(3, "2003"));
    let (c_id, _) = request(&mut s);
    s.send(c_id, &Event::EventRegistered { reference_id: Some(3), this_dn: "2003".into() });
    std::thread::sleep(Duration::from_millis(50));
    drop(c); // unread answer: the kernel resets the connection
    assert_eq!(next(&mut s), CtiInput::Gone { client: c_id });
    s.send(c_id, &Event::EventRegistered { reference_id: None, this_dn: "gone".into() });
    s.send(b_id, &Event::EventRegistered { reference_id: Some(2), this_dn: "2002".into() });
    assert_eq!(b.hear(), Event::EventRegistered { reference_id: Some(2), this_dn: "2002".into() });
}

#[test]
fn a_client_that_never_reads_is_dropped_without_blocking_send() {
    let mut s = server();
    let lazy = Peer::connect(&s);
    let mut busy = Peer::connect(&s);
    busy.say(&register_line(1, "2001"));
    let (busy_id, _) = request(&mut s);
    let lazy_id = CtiClient(busy_id.0 - 1);
    let big = Event::EventError { reference_id: None, error_code: 0, error_message: "x".repeat(8 * 1024) };
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut gone = false;
    // Queue (4096) plus kernel buffers (a few MB at most) are far below this many 8 KB events.
    for _ in 0..QUEUE_LEN * 10 {
        let t = Instant::now();
        s.send(lazy_id, &big);
        slowest = slowest.max(t.elapsed());
        if let Some(input) = s.poll() {
            assert_eq!(input, CtiInput::Gone { client: lazy_id });
            gone = true;
            break;
        }
    }
    if !gone {
        assert_eq!(next(&mut s), CtiInput::Gone { client: lazy_id });
    }
    // A blocking send would hang for ever (the client never reads); allow for a loaded machine.
    assert!(slowest < Duration::from_secs(2), "one send took {slowest:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(s.stats().dropped, 1);
    // The busy client is unaffected.
    s.send(busy_id, &Event::EventRegistered { reference_id: Some(1), this_dn: "2001".into() });
    assert_eq!(busy.hear(), Event::EventRegistered { reference_id: Some(1), this_dn: "2001".into() });
    drop(lazy);
}

#[test]
fn dropping_the_server_closes_every_client() {
    let s = server();
    let mut a = Peer::connect(&s);
    let mut b = Peer::connect(&s);
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(2));
    for p in [&mut a, &mut b] {
        let mut buf = [0u8; 16];
        match p.r.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected end of stream, got {other:?}"),
        }
    }
}

// ---- callrec ctl against a fake control loop ----

fn ctl_args(s: &CtiServer, command: CtlCommand) -> CtlArgs {
    CtlArgs { cti: s.local_addr().to_string(), timeout: 5.0, command }
}

/// Runs `ctl` in a thread while the test thread answers with `answer` until it ends.
fn with_fake_core(
    s: &mut CtiServer,
    command: CtlCommand,
    mut answer: impl FnMut(CtiClient, &RequestLine) -> Vec<Event>,
) -> (u8, String, String, Vec<Request>) {
    let args = ctl_args(s, command);
    let h = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = ctl::run_with(&args, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    });
    let mut requests = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.is_finished() && Instant::now() < deadline {
        if let Some(CtiInput::Request { client, line }) = s.wait(Duration::from_millis(10)) {
            for ev in answer(client, &line) {
                s.send(client, &ev);
            }
            requests.push(line.request);
        }
    }
    let (code, out, err) = h.join().unwrap();
    (code, out, err, requests)
}

fn registered(line: &RequestLine) -> Option<Event> {
    match &line.request {
        Request::RegisterAddress { this_dn } => {
            Some(Event::EventRegistered { reference_id: line.reference_id, this_dn: this_dn.clone() })
        }
        _ => None,
    }
}

fn op(dn: &str, conn: &str) -> CallOp {
    CallOp { dn: dn.into(), conn: conn.into(), ext: vec![("id".into(), "rec-1".into())], reason: vec![], msg_id: None }
}

#[test]
fn ctl_start_registers_then_sends_private_service_and_prints_the_answer() {
    let mut s = server();
    let (code, out, err, reqs) = with_fake_core(&mut s, CtlCommand::Start(op("2001", "00a1b2c3d4e5f607")), |_, line| {
        if let Some(ev) = registered(line) {
            return vec![ev];
        }
        match &line.request {
            Request::PrivateService { private_msg_id, this_dn, connection_id, .. } => vec![
                // Unsolicited events before the answer are skipped.
                Event::EventEstablished { connection_id: connection_id.clone(), this_dn: this_dn.clone(), other_dn: "555".into() },
                Event::EventPrivateInfo {
                    reference_id: line.reference_id,
                    connection_id: connection_id.clone(),
                    this_dn: this_dn.clone(),
                    private_msg_id: *private_msg_id,
                    state: "recording".into(),
                    recording_id: Some("rec-1".into()),
                },
            ],
            _ => vec![],
        }
    });
    assert_eq!((code, err.as_str()), (0, ""));
    let ev: Event = serde_json::from_str(out.trim()).unwrap();
    assert!(matches!(ev, Event::EventPrivateInfo { private_msg_id: 3013, ref state, .. } if state == "recording"), "{out}");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0], Request::RegisterAddress { this_dn: "2001".into() });
    match &reqs[1] {
        Request::PrivateService { private_msg_id: 3013, this_dn, connection_id, extensions, .. } => {
            assert_eq!((this_dn.as_str(), connection_id.as_str()), ("2001", "00a1b2c3d4e5f607"));
            assert_eq!(extensions["id"], serde_json::json!("rec-1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ctl_error_answer_is_one_sentence_and_status_1() {
    let mut s = server();
    let mut o = op("2001", "ffff");
    o.msg_id = Some(4000);
    let (code, out, err, reqs) = with_fake_core(&mut s, CtlCommand::Pause(o), |_, line| {
        registered(line).map(|e| vec![e]).unwrap_or_else(|| {
            vec![Event::EventError {
                reference_id: line.reference_id,
                error_code: error_code::UNKNOWN_CONNECTION,
                error_message: "no call with ConnectionID ffff".into(),
            }]
        })
    });
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(err, "callrec ctl: no call with ConnectionID ffff\n");
    assert!(matches!(reqs[1], Request::PrivateService { private_msg_id: 4000, .. }), "--msg-id overrides");
}

#[test]
fn ctl_calls_prints_one_line_per_call() {
    let mut s = server();
    let (code, out, _, _) = with_fake_core(&mut s, CtlCommand::Calls, |_, line| {
        vec![Event::EventCalls {
            reference_id: line.reference_id,
            calls: vec![
                CallInfo { connection_id: "00000000000000a1".into(), dns: vec!["2001".into(), "5551234".into()], state: "established".into(), recording: "paused".into() },
                CallInfo { connection_id: "00000000000000a2".into(), dns: vec!["2002".into()], state: "ringing".into(), recording: "none".into() },
            ],
        }]
    });
    assert_eq!(code, 0);
    assert_eq!(out, "00000000000000a1 established paused 2001,5551234\n00000000000000a2 ringing none 2002\n");
}

#[test]
fn ctl_route_sends_record_extension_and_watch_counts_events() {
    let mut s = server();
    let cmd = CtlCommand::Route { rp: "7000".into(), conn: "c1".into(), to: "2001".into(), record: ctl::RouteRecord::Destination };
    let (code, out, _, reqs) = with_fake_core(&mut s, cmd, |_, line| {
        registered(line).map(|e| vec![e]).unwrap_or_else(|| match &line.request {
            Request::RouteCall { this_dn, connection_id, other_dn, .. } => vec![Event::EventRouteUsed {
                reference_id: line.reference_id,
                connection_id: connection_id.clone(),
                this_dn: this_dn.clone(),
                other_dn: other_dn.clone(),
            }],
            _ => vec![],
        })
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("EventRouteUsed"));
    match &reqs[1] {
        Request::RouteCall { extensions, other_dn, .. } => {
            assert_eq!(extensions["record"], serde_json::json!("destination"));
            assert_eq!(other_dn, "2001");
        }
        other => panic!("{other:?}"),
    }

    let cmd = CtlCommand::Watch { dns: vec!["2001".into(), "2002".into()], count: Some(2) };
    let (code, out, _, reqs) = with_fake_core(&mut s, cmd, |_, line| {
        let mut evs = vec![registered(line).unwrap()];
        if let Request::RegisterAddress { this_dn } = &line.request {
            evs.push(Event::EventRinging { connection_id: "c9".into(), this_dn: this_dn.clone(), other_dn: "555".into() });
        }
        evs
    });
    assert_eq!(code, 0);
    assert_eq!(reqs.len(), 2);
    let lines: Vec<Event> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|e| matches!(e, Event::EventRinging { .. })), "{out}");
}

#[test]
fn clients_over_the_limit_are_told_and_closed() {
    let mut s = CtiServer::bind_limited("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let mut a = Peer::connect(&s);
    let _b = Peer::connect(&s);
    a.say(&register_line(1, "2001"));
    let (a_id, _) = request(&mut s);
    // Both accepted before the third connects.
    let t = Instant::now();
    while s.stats().clients_connected < 2 && t.elapsed() < STEP {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut c = Peer::connect(&s);
    match c.hear() {
        Event::EventError { error_code: error_code::TOO_MANY_CLIENTS, error_message, .. } => {
            assert!(error_message.contains("2 clients"), "{error_message}")
        }
        other => panic!("{other:?}"),
    }
    // One leaves: a newcomer is served again.
    drop(a);
    assert_eq!(next(&mut s), CtiInput::Gone { client: a_id });
    let mut d = Peer::connect(&s);
    d.say(&register_line(2, "2002"));
    let (d_id, line) = request(&mut s);
    assert_eq!(line.reference_id, Some(2));
    s.send(d_id, &Event::EventRegistered { reference_id: Some(2), this_dn: "2002".into() });
    assert!(matches!(d.hear(), Event::EventRegistered { .. }));
    assert_eq!(s.stats().clients_accepted, 3);
}

#[test]
fn the_callrec_binary_runs_ctl() {
    let mut s = server();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["ctl", "--cti", &s.local_addr().to_string(), "stop", "--dn", "2001", "--conn", "00a1b2c3d4e5f607"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut asked = Vec::new();
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if let Some(CtiInput::Request { client, line }) = s.wait(Duration::from_millis(10)) {
            let answer = registered(&line).unwrap_or(Event::EventError {
                reference_id: line.reference_id,
                error_code: error_code::WRONG_STATE,
                error_message: "call 00a1b2c3d4e5f607 is not being recorded".into(),
            });
            s.send(client, &answer);
            asked.push(line.request);
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "callrec ctl: call 00a1b2c3d4e5f607 is not being recorded\n");
    assert!(out.stdout.is_empty());
    assert!(matches!(asked[1], Request::PrivateService { private_msg_id: 3014, .. }), "{asked:?}");
}
