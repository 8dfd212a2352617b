//! `callrec ctl`: a CTI client for people and scripts. Each command opens its own connection,
//! registers the DN it acts for (registrations belong to a connection), sends one request and
//! prints the answer.
//!
//! Exit status: 0 success, 1 the server answered `EventError` (its message on stderr), 2 the
//! server could not be reached or did not answer in time.

use super::protocol::{Event, KeyValues, Request, RequestLine};
use clap::{Args, Subcommand, ValueEnum};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `callrec ctl` options.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct CtlArgs {
    /// Address of the CTI server (`callrec run --cti`).
    #[arg(long, global = true, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub cti: String,
    /// Seconds to wait for the connection and for each answer.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `callrec ctl` subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum CtlCommand {
    /// Register a DN and print the answer.
    Register {
        /// The DN.
        dn: String,
        /// Keep the registration and print its events as JSON lines until killed.
        #[arg(long)]
        watch: bool,
    },
    /// List live calls: ConnectionID, state, recording state, DNs.
    Calls,
    /// Register DNs and print every event for them as a JSON line.
    Watch {
        /// A DN to register (repeatable).
        #[arg(long = "dn", value_name = "DN")]
        dns: Vec<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Start recording a call (PrivateService 3013).
    Start(CallOp),
    /// Pause a recording (PrivateService 3015).
    Pause(CallOp),
    /// Resume a paused recording (PrivateService 3016).
    Resume(CallOp),
    /// Stop a recording (PrivateService 3014).
    Stop(CallOp),
    /// Route a call from a routing point, asking for recording (RouteCall).
    Route {
        /// The routing point DN.
        #[arg(long, value_name = "DN")]
        rp: String,
        /// The call's ConnectionID.
        #[arg(long, value_name = "ID")]
        conn: String,
        /// The routing destination DN (the agent).
        #[arg(long, value_name = "DN")]
        to: String,
        /// Which side to record.
        #[arg(long, value_enum)]
        record: RouteRecord,
    },
}

/// Options of start, pause, resume and stop.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct CallOp {
    /// The DN acting (registered first on this connection; must be a party of the call).
    #[arg(long, value_name = "DN")]
    pub dn: String,
    /// The call's ConnectionID.
    #[arg(long, value_name = "ID")]
    pub conn: String,
    /// An Extensions key-value pair, e.g. `id=rec-1` or `dest=/srv/rec` (repeatable).
    #[arg(long = "ext", value_name = "K=V", value_parser = parse_kv)]
    pub ext: Vec<(String, String)>,
    /// A Reasons key-value pair (repeatable).
    #[arg(long = "reason", value_name = "K=V", value_parser = parse_kv)]
    pub reason: Vec<(String, String)>,
    /// PrivateMsgID to send instead of the operation's default.
    #[arg(long = "msg-id", value_name = "N")]
    pub msg_id: Option<i64>,
}

/// RouteCall's `Extensions.record`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum RouteRecord {
    /// Record the routing destination (the agent).
    Source,
    /// Record the DN that sent the call to the routing point (the customer).
    Destination,
    /// Stop a destination recording.
    DisableDestination,
}

impl RouteRecord {
    fn wire(self) -> &'static str {
        match self {
            RouteRecord::Source => "source",
            RouteRecord::Destination => "destination",
            RouteRecord::DisableDestination => "disable_destination",
        }
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn key_values(pairs: &[(String, String)]) -> KeyValues {
    pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
}

/// Runs `callrec ctl` on stdout and stderr.
pub fn run(args: CtlArgs) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    ExitCode::from(run_with(&args, &mut stdout.lock(), &mut stderr.lock()))
}

/// Runs `callrec ctl`, writing results to `out` and error sentences to `err`; returns the
/// exit status (0, 1 or 2, see the module doc).
pub fn run_with(args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run_inner(args, out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "callrec ctl: {}", e.sentence());
            let _ = err.flush();
            e.status()
        }
    }
}

/// Why a ctl command failed.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot reach the CTI server at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("no answer from the CTI server at {addr} within {secs} s")]
    Timeout { addr: String, secs: f64 },
    #[error("the CTI server at {addr} closed the connection")]
    Closed { addr: String },
    #[error("connection to the CTI server at {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    #[error("--timeout must be a positive number of seconds, got {0}")]
    BadTimeout(f64),
}

impl CtlError {
    fn sentence(&self) -> String {
        self.to_string()
    }

    fn status(&self) -> u8 {
        match self {
            CtlError::Refused(_) => 1,
            _ => 2,
        }
    }
}

/// One connection to the CTI server.
struct Conn {
    addr: String,
    timeout: Duration,
    secs: f64,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_ref: i64,
    /// Events that arrived while waiting for an answer, kept for `print_events`.
    skipped: VecDeque<String>,
}

impl Conn {
    fn open(addr: &str, secs: f64) -> Result<Conn, CtlError> {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(CtlError::BadTimeout(secs));
        }
        let timeout = Duration::from_secs_f64(secs);
        let connect = |source| CtlError::Connect { addr: addr.to_string(), source };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(connect)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    let io = |source| CtlError::Io { addr: addr.to_string(), source };
                    let writer = s.try_clone().map_err(io)?;
                    return Ok(Conn { addr: addr.to_string(), timeout, secs, reader: BufReader::new(s), writer, next_ref: 1, skipped: VecDeque::new() });
                }
                Err(e) => last = e,
            }
        }
        Err(connect(last))
    }

    fn send(&mut self, request: Request) -> Result<i64, CtlError> {
        let reference_id = self.next_ref;
        self.next_ref += 1;
        let line = RequestLine { reference_id: Some(reference_id), request };
        // Serializing a RequestLine cannot fail: only string keys.
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).map_err(|source| CtlError::Io { addr: self.addr.clone(), source })?;
        Ok(reference_id)
    }

    /// The next event and its line; `None` as timeout means wait for ever.
    fn next(&mut self, timeout: Option<Duration>) -> Result<(Event, String), CtlError> {
        let _ = self.reader.get_ref().set_read_timeout(timeout);
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err(CtlError::Closed { addr: self.addr.clone() }),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(CtlError::Timeout { addr: self.addr.clone(), secs: self.secs })
                }
                Err(source) => return Err(CtlError::Io { addr: self.addr.clone(), source }),
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(&line) {
                Ok(ev) => return Ok((ev, line)),
                // An event this client does not know (a newer server): skip it.
                Err(_) => continue,
            }
        }
    }

    /// Waits for the event answering `reference_id`, skipping unsolicited ones. An
    /// `EventError` answer becomes `CtlError::Refused`.
    fn answer(&mut self, reference_id: i64) -> Result<(Event, String), CtlError> {
        // One deadline for the answer, however many unsolicited events come first.
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CtlError::Timeout { addr: self.addr.clone(), secs: self.secs });
            }
            let (ev, line) = self.next(Some(left))?;
            if answers(&ev) != Some(reference_id) {
                self.skipped.push_back(line);
                continue;
            }
            if let Event::EventError { error_message, .. } = ev {
                return Err(CtlError::Refused(error_message));
            }
            return Ok((ev, line));
        }
    }

    fn register(&mut self, dn: &str) -> Result<String, CtlError> {
        let r = self.send(Request::RegisterAddress { this_dn: dn.to_string() })?;
        Ok(self.answer(r)?.1)
    }

    /// Prints events as JSON lines, `count` of them or until the connection ends.
    fn print_events(&mut self, out: &mut dyn Write, count: Option<u64>) -> Result<(), CtlError> {
        let mut printed = 0u64;
        while count.is_none_or(|n| printed < n) {
            let line = match self.skipped.pop_front() {
                Some(line) => line,
                None => self.next(None)?.1,
            };
            print(out, &line)?;
            printed += 1;
        }
        Ok(())
    }
}

/// The ReferenceID an event echoes.
fn answers(ev: &Event) -> Option<i64> {
    match ev {
        Event::EventRegistered { reference_id, .. }
        | Event::EventUnregistered { reference_id, .. }
        | Event::EventAgentLogin { reference_id, .. }
        | Event::EventAgentLogout { reference_id, .. }
        | Event::EventRouteUsed { reference_id, .. }
        | Event::EventPrivateInfo { reference_id, .. }
        | Event::EventCalls { reference_id, .. }
        | Event::EventError { reference_id, .. } => *reference_id,
        Event::EventRinging { .. } | Event::EventEstablished { .. } | Event::EventReleased { .. } => None,
    }
}

fn print(out: &mut dyn Write, line: &str) -> Result<(), CtlError> {
    let res = writeln!(out, "{line}").and_then(|_| out.flush());
    res.map_err(CtlError::Output)
}

fn run_inner(args: &CtlArgs, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut conn = Conn::open(&args.cti, args.timeout)?;
    match &args.command {
        CtlCommand::Register { dn, watch } => {
            let line = conn.register(dn)?;
            print(out, &line)?;
            if *watch {
                conn.print_events(out, None)?;
            }
        }
        CtlCommand::Calls => {
            let r = conn.send(Request::QueryCalls {})?;
            if let (Event::EventCalls { calls, .. }, _) = conn.answer(r)? {
                for c in calls {
                    print(out, &format!("{} {} {} {}", c.connection_id, c.state, c.recording, c.dns.join(",")))?;
                }
            }
        }
        CtlCommand::Watch { dns, count } => {
            for dn in dns {
                conn.register(dn)?;
            }
            conn.print_events(out, *count)?;
        }
        CtlCommand::Start(op) => private_service(&mut conn, out, op, 3013)?,
        CtlCommand::Stop(op) => private_service(&mut conn, out, op, 3014)?,
        CtlCommand::Pause(op) => private_service(&mut conn, out, op, 3015)?,
        CtlCommand::Resume(op) => private_service(&mut conn, out, op, 3016)?,
        CtlCommand::Route { rp, conn: connection_id, to, record } => {
            conn.register(rp)?;
            let mut extensions = KeyValues::new();
            extensions.insert("record".into(), serde_json::Value::String(record.wire().into()));
            let r = conn.send(Request::RouteCall {
                this_dn: rp.clone(),
                connection_id: connection_id.clone(),
                other_dn: to.clone(),
                extensions,
            })?;
            print(out, &conn.answer(r)?.1)?;
        }
    }
    Ok(())
}

fn private_service(conn: &mut Conn, out: &mut dyn Write, op: &CallOp, default_id: i64) -> Result<(), CtlError> {
    conn.register(&op.dn)?;
    let r = conn.send(Request::PrivateService {
        private_msg_id: op.msg_id.unwrap_or(default_id),
        this_dn: op.dn.clone(),
        connection_id: op.conn.clone(),
        extensions: key_values(&op.ext),
        reasons: key_values(&op.reason),
    })?;
    print(out, &conn.answer(r)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    fn parse(args: &[&str]) -> Result<CtlArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())).map(|c| c.ctl)
    }

    #[test]
    fn defaults_and_global_options() {
        let a = parse(&["calls"]).unwrap();
        assert_eq!((a.cti.as_str(), a.timeout, a.command), ("127.0.0.1:3000", 5.0, CtlCommand::Calls));
        let a = parse(&["register", "2001", "--cti", "10.0.0.1:4000", "--timeout", "0.5", "--watch"]).unwrap();
        assert_eq!(a.cti, "10.0.0.1:4000");
        assert_eq!(a.timeout, 0.5);
        assert_eq!(a.command, CtlCommand::Register { dn: "2001".into(), watch: true });
    }

    #[test]
    fn call_ops_take_repeated_key_values() {
        let a = parse(&["pause", "--dn", "2001", "--conn", "00a1b2c3d4e5f607", "--ext", "id=rec-1", "--ext", "dest=/tmp/x=y", "--reason", "why=break", "--msg-id", "4015"]).unwrap();
        let CtlCommand::Pause(op) = a.command else { panic!("{:?}", a.command) };
        assert_eq!(op.dn, "2001");
        assert_eq!(op.conn, "00a1b2c3d4e5f607");
        assert_eq!(op.ext, vec![("id".into(), "rec-1".into()), ("dest".into(), "/tmp/x=y".into())]);
        assert_eq!(op.reason, vec![("why".into(), "break".into())]);
        assert_eq!(op.msg_id, Some(4015));
        let ext = key_values(&op.ext);
        assert_eq!(ext["dest"], serde_json::json!("/tmp/x=y"));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&["start", "--dn", "2001"]).is_err(), "--conn is required");
        assert!(parse(&["start", "--dn", "2001", "--conn", "c", "--ext", "novalue"]).is_err());
        assert!(parse(&["start", "--dn", "2001", "--conn", "c", "--ext", "=v"]).is_err());
        assert!(parse(&["route", "--rp", "7000", "--conn", "c", "--to", "2001", "--record", "both"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn route_and_watch() {
        let a = parse(&["route", "--rp", "7000", "--conn", "c", "--to", "2001", "--record", "disable_destination"]).unwrap();
        match a.command {
            CtlCommand::Route { record, .. } => assert_eq!(record.wire(), "disable_destination"),
            other => panic!("{other:?}"),
        }
        let a = parse(&["watch", "--dn", "2001", "--dn", "2002", "--count", "3"]).unwrap();
        assert_eq!(a.command, CtlCommand::Watch { dns: vec!["2001".into(), "2002".into()], count: Some(3) });
    }

    #[test]
    fn unreachable_server_is_one_sentence_and_status_2() {
        // Bind then drop: the port is free and nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let args = parse(&["calls", "--cti", &addr.to_string(), "--timeout", "1"]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_with(&args, &mut out, &mut err), 2);
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with(&format!("callrec ctl: cannot reach the CTI server at {addr}")), "{err}");
        assert_eq!(err.lines().count(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn silent_server_times_out_with_status_2() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let args = parse(&["calls", "--cti", &addr.to_string(), "--timeout", "0.2"]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_with(&args, &mut out, &mut err), 2);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("no answer from the CTI server"), "{err}");
        drop(listener);
    }

    #[test]
    fn server_closing_is_status_2_and_garbage_is_skipped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
            // Not an event this client knows, then the connection ends without an answer.
            s.write_all(b"{\"event\":\"EventFromTheFuture\"}\nnot json\n\n").unwrap();
            line
        });
        let args = parse(&["register", "2001", "--cti", &addr.to_string()]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_with(&args, &mut out, &mut err), 2);
        assert_eq!(String::from_utf8(err).unwrap(), format!("callrec ctl: the CTI server at {addr} closed the connection\n"));
        let sent: RequestLine = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(sent, RequestLine { reference_id: Some(1), request: Request::RegisterAddress { this_dn: "2001".into() } });
    }
}
