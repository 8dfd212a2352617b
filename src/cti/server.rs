//! The CTI server's sockets: accepts TCP clients, reads their request lines and writes their
//! events, so that the control core only ever sees `CtiInput`s and hands back `Event`s.
//!
//! Threads, not an async runtime: an acceptor, and per client a reader and a writer. The
//! caller (the `callrec run` driver) never blocks on a client: `send` only pushes into the
//! client's bounded queue, and a client whose queue is full is dropped. Everything the
//! threads report reaches the caller through one channel, drained by `poll` / `wait`.
//!
//! Order guarantees: a client's requests arrive in the order it sent them, and its `Gone`
//! comes after its last request, exactly once.

use super::line::{self, MAX_LINE};
use super::protocol::{Event, RequestLine};
use crate::control::core::CtiClient;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Events a client may have waiting to be written before it counts as a slow reader.
pub const QUEUE_LEN: usize = 4096;

/// Clients served at once (two threads each); more are told so and closed.
pub const MAX_CLIENTS: u64 = 256;

/// How often the acceptor looks at the stop flag between accepts.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// After dropping a client for a too-long line, how long (and how much) its remaining input
/// is read and discarded so that the error reaches it instead of being lost to a TCP reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 4 * 1024 * 1024;

/// What a client gave the control core.
#[derive(Debug, Clone, PartialEq)]
pub enum CtiInput {
    /// A well-formed request line.
    Request {
        /// Who sent it.
        client: CtiClient,
        /// The request.
        line: RequestLine,
    },
    /// The client disconnected or was dropped; forget its registrations.
    Gone {
        /// The client.
        client: CtiClient,
    },
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtiStats {
    /// Clients accepted.
    pub clients_accepted: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Well-formed requests passed on.
    pub requests: u64,
    /// Lines answered with `EventError` by the server itself (malformed, too long).
    pub bad_lines: u64,
    /// Clients dropped by the server (slow reader, too-long line).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    connected: AtomicU64,
    requests: AtomicU64,
    bad_lines: AtomicU64,
    dropped: AtomicU64,
}

/// What a client's writer thread takes.
enum Outgoing {
    /// One serialized event, newline included.
    Line(String),
    /// Write what came before, then stop sending (the client is being dropped).
    Close,
}

/// What the threads tell the server.
enum Internal {
    /// A new client; sent by the acceptor before its reader starts, so it precedes every
    /// input from that client.
    New(Client),
    /// An input for the caller.
    Input(CtiInput),
}

/// The server's handle on one client.
struct Client {
    id: u64,
    /// None once retired: dropping it lets the writer finish what is queued and end.
    out: Option<SyncSender<Outgoing>>,
    /// A clone of the socket, kept to shut it down (which wakes the blocked reader and writer).
    stream: TcpStream,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Client {
    fn shut(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn finished(&self) -> bool {
        self.reader.is_finished() && self.writer.is_finished()
    }

    fn join(mut self) {
        drop(self.out.take());
        let _ = self.reader.join();
        let _ = self.writer.join();
    }
}

/// The CTI server: a listening socket and its clients.
pub struct CtiServer {
    local_addr: SocketAddr,
    rx: Receiver<Internal>,
    clients: HashMap<u64, Client>,
    /// Clients already gone or dropped whose threads may still be ending.
    retired: Vec<Client>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl CtiServer {
    /// Listens on `addr` (port 0 picks a free port; see `local_addr`), serving up to
    /// `MAX_CLIENTS` clients at once.
    pub fn bind(addr: SocketAddr) -> io::Result<CtiServer> {
        CtiServer::bind_limited(addr, MAX_CLIENTS)
    }

    /// Like `bind`, serving up to `max_clients` clients at once.
    pub fn bind_limited(addr: SocketAddr, max_clients: u64) -> io::Result<CtiServer> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        // Non-blocking so the acceptor can notice the stop flag: std has no way to wake a
        // thread blocked in accept().
        listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let acceptor = {
            let stop = stop.clone();
            let counters = counters.clone();
            thread::Builder::new()
                .name("cti-accept".into())
                .spawn(move || accept_loop(listener, tx, stop, counters, max_clients))?
        };
        Ok(CtiServer { local_addr, rx, clients: HashMap::new(), retired: Vec::new(), stop, acceptor: Some(acceptor), counters })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next input from any client, without blocking.
    pub fn poll(&mut self) -> Option<CtiInput> {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => {
                    if let Some(input) = self.take(msg) {
                        return Some(input);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            }
        }
    }

    /// The next input from any client, waiting up to `timeout` for one.
    pub fn wait(&mut self, timeout: Duration) -> Option<CtiInput> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    if let Some(input) = self.take(msg) {
                        return Some(input);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                // Only after the acceptor and every reader ended, i.e. never while running;
                // sleep out the timeout rather than spin.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(left);
                    return None;
                }
            }
        }
    }

    /// Queues `event` for `client` without blocking. A client whose queue is full is dropped
    /// (its `Gone` follows through `poll`); a client already gone is ignored.
    pub fn send(&mut self, client: CtiClient, event: &Event) {
        let Some(out) = self.clients.get(&client.0).and_then(|c| c.out.as_ref()) else { return };
        match out.try_send(Outgoing::Line(event.to_line())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::info!(client = client.0, "CTI client reads too slowly ({QUEUE_LEN} events waiting); dropping it");
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.retire(client.0, true);
            }
            // The writer ended (write error) and shut the socket; the reader reports Gone.
            Err(TrySendError::Disconnected(_)) => self.retire(client.0, false),
        }
    }

    /// Counters since the server started.
    pub fn stats(&self) -> CtiStats {
        let c = &self.counters;
        CtiStats {
            clients_accepted: c.accepted.load(Ordering::Relaxed),
            clients_connected: c.connected.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            bad_lines: c.bad_lines.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    fn take(&mut self, msg: Internal) -> Option<CtiInput> {
        match msg {
            Internal::New(c) => {
                self.clients.insert(c.id, c);
                None
            }
            Internal::Input(input) => {
                if let CtiInput::Gone { client } = input {
                    // The reader closes the socket itself (after lingering, for a too-long line).
                    self.retire(client.0, false);
                    self.reap();
                }
                Some(input)
            }
        }
    }

    /// Stops sending to a client, shutting its socket if `shut`; its threads end on their own.
    fn retire(&mut self, id: u64, shut: bool) {
        if let Some(mut c) = self.clients.remove(&id) {
            if shut {
                c.shut();
            }
            c.out = None;
            self.retired.push(c);
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.retired.len() {
            if self.retired[i].finished() {
                self.retired.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
    }
}

impl Drop for CtiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // Clients announced but not yet polled.
        while let Ok(msg) = self.rx.try_recv() {
            if let Internal::New(c) = msg {
                self.clients.insert(c.id, c);
            }
        }
        let clients: Vec<Client> = self.clients.drain().map(|(_, c)| c).chain(self.retired.drain(..)).collect();
        for c in &clients {
            c.shut();
        }
        for c in clients {
            c.join();
        }
    }
}

fn accept_loop(listener: TcpListener, tx: Sender<Internal>, stop: Arc<AtomicBool>, counters: Arc<Counters>, max_clients: u64) {
    let mut next_id = 1u64;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if counters.connected.load(Ordering::Relaxed) >= max_clients {
                    tracing::warn!(%peer, "CTI client refused: already {max_clients} clients");
                    refuse(stream, max_clients);
                    continue;
                }
                let id = next_id;
                next_id += 1;
                match start_client(id, stream, tx.clone(), counters.clone()) {
                    Ok(start) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        counters.connected.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(client = id, %peer, "CTI client connected");
                        if tx.send(Internal::New(start.client)).is_err() {
                            return;
                        }
                        // Only now may the reader report anything: its inputs must follow New.
                        let _ = start.go.send(());
                    }
                    Err(e) => tracing::warn!(%peer, "cannot serve CTI client: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("CTI accept failed: {e}");
                thread::sleep(ACCEPT_POLL * 10);
            }
        }
    }
}

/// Tells a client over `MAX_CLIENTS` why it is closed. Best effort and never blocking the
/// acceptor: the line fits any fresh socket's send buffer.
fn refuse(mut stream: TcpStream, max_clients: u64) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(line::too_many_clients(max_clients).to_line().as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

struct Started {
    client: Client,
    go: SyncSender<()>,
}

fn start_client(id: u64, stream: TcpStream, tx: Sender<Internal>, counters: Arc<Counters>) -> io::Result<Started> {
    // Accepted sockets inherit nothing reliable across platforms; make them blocking.
    stream.set_nonblocking(false)?;
    let _ = stream.set_nodelay(true);
    let read_half = stream.try_clone()?;
    let write_half = stream.try_clone()?;
    let (out, out_rx) = mpsc::sync_channel(QUEUE_LEN);
    let (go, go_rx) = mpsc::sync_channel(1);
    let writer = thread::Builder::new().name(format!("cti-w{id}")).spawn(move || write_loop(write_half, out_rx))?;
    let reader_out = out.clone();
    let reader = thread::Builder::new().name(format!("cti-r{id}")).spawn(move || {
        if go_rx.recv().is_ok() {
            read_loop(id, read_half, reader_out, tx, counters);
        }
    })?;
    Ok(Started { client: Client { id, out: Some(out), stream, reader, writer }, go })
}

/// Why a reader stopped.
enum ReadEnd {
    /// End of input, a socket error, or shutdown by the server.
    Closed,
    /// A line over `MAX_LINE`: the client is dropped after its error is written.
    TooLong,
}

fn read_loop(id: u64, stream: TcpStream, out: SyncSender<Outgoing>, tx: Sender<Internal>, counters: Arc<Counters>) {
    let client = CtiClient(id);
    let mut reader = BufReader::with_capacity(16 * 1024, &stream);
    let end = read_lines(&mut reader, |bytes| match line::parse_line(bytes) {
        Ok(None) => true,
        Ok(Some(line)) => {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            tx.send(Internal::Input(CtiInput::Request { client, line })).is_ok()
        }
        Err(error) => {
            counters.bad_lines.fetch_add(1, Ordering::Relaxed);
            // A client that cannot take its own error is a slow reader: drop it like `send` does.
            if out.try_send(Outgoing::Line(error.to_line())).is_err() {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = stream.shutdown(Shutdown::Both);
                return false;
            }
            true
        }
    });
    // Counters before Gone, so that whoever sees Gone sees them too.
    counters.connected.fetch_sub(1, Ordering::Relaxed);
    let too_long = matches!(end, ReadEnd::TooLong);
    if too_long {
        counters.bad_lines.fetch_add(1, Ordering::Relaxed);
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
    let _ = tx.send(Internal::Input(CtiInput::Gone { client }));
    if !too_long {
        // Wakes a writer blocked on a client that stopped reading.
        let _ = stream.shutdown(Shutdown::Both);
    } else {
        tracing::info!(client = id, "CTI client sent a line over {MAX_LINE} bytes; dropping it");
        if out.try_send(Outgoing::Line(line::too_long().to_line())).is_ok() && out.try_send(Outgoing::Close).is_ok() {
            linger(reader.into_inner());
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Reads `\n`-terminated lines of at most `MAX_LINE` bytes and hands each to `each` (which
/// returns false to stop). A longer line is never buffered whole.
fn read_lines<R: BufRead>(r: &mut R, mut each: impl FnMut(&[u8]) -> bool) -> ReadEnd {
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return ReadEnd::Closed,
        };
        if buf.is_empty() {
            // A partial last line is dropped: the client left mid-request.
            return ReadEnd::Closed;
        }
        let (take, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        // The limit excludes the line end; a CR may only be judged once the LF is seen.
        let cr = if take > 0 { buf[take - 1] == b'\r' } else { line.last() == Some(&b'\r') };
        let limit = if complete { MAX_LINE + usize::from(cr) } else { MAX_LINE + 1 };
        if line.len() + take > limit {
            return ReadEnd::TooLong;
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(if complete { take + 1 } else { take });
        if complete {
            if !each(&line) {
                return ReadEnd::Closed;
            }
            line.clear();
        }
    }
}

/// Reads and discards what the dropped client still sends, for a bounded time and amount, so
/// that closing does not reset the connection before the client has read its error.
fn linger(stream: &TcpStream) {
    if stream.set_read_timeout(Some(LINGER_TIME)).is_err() {
        return;
    }
    let _ = io::copy(&mut Read::take(stream, LINGER_BYTES), &mut io::sink());
}

fn write_loop(stream: TcpStream, rx: Receiver<Outgoing>) {
    let mut w = BufWriter::with_capacity(16 * 1024, &stream);
    let ok = 'run: loop {
        let Ok(mut msg) = rx.recv() else { break 'run w.flush().is_ok() };
        // Write what is queued, flushing once the queue is empty.
        loop {
            match msg {
                Outgoing::Line(s) => {
                    if w.write_all(s.as_bytes()).is_err() {
                        break 'run false;
                    }
                }
                Outgoing::Close => {
                    let _ = w.flush();
                    // The reader is lingering on the read side; stop the write side only.
                    let _ = stream.shutdown(Shutdown::Write);
                    return;
                }
            }
            match rx.try_recv() {
                Ok(m) => msg = m,
                Err(TryRecvError::Empty) => {
                    if w.flush().is_err() {
                        break 'run false;
                    }
                    continue 'run;
                }
                Err(TryRecvError::Disconnected) => break 'run w.flush().is_ok(),
            }
        }
    };
    if !ok {
        // Wakes the reader, which reports Gone.
        let _ = stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> (Vec<Vec<u8>>, bool) {
        let mut got = Vec::new();
        let end = read_lines(&mut BufReader::with_capacity(7, input), |l| {
            got.push(l.to_vec());
            true
        });
        (got, matches!(end, ReadEnd::TooLong))
    }

    #[test]
    fn lines_split_across_reads_and_partial_tail_dropped() {
        let (got, too_long) = lines(b"first line\nsecond\r\n\nthird without end");
        assert!(!too_long);
        assert_eq!(got, vec![b"first line".to_vec(), b"second\r".to_vec(), b"".to_vec()]);
    }

    #[test]
    fn a_line_at_the_limit_passes_one_over_does_not() {
        let mut at = vec![b'x'; MAX_LINE];
        at.extend_from_slice(b"\r\nnext\n");
        let (got, too_long) = lines(&at);
        assert!(!too_long);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE + 1);

        let mut over = vec![b'x'; MAX_LINE + 1];
        over.push(b'\n');
        let (got, too_long) = lines(&over);
        assert!(too_long);
        assert!(got.is_empty());

        let mut over = vec![b'x'; MAX_LINE];
        over.extend_from_slice(b"y\r\n");
        let (got, too_long) = lines(&over);
        assert!(too_long);
        assert!(got.is_empty());
    }

    #[test]
    fn stops_when_asked() {
        let mut n = 0;
        let end = read_lines(&mut BufReader::new(&b"a\nb\nc\n"[..]), |_| {
            n += 1;
            n < 2
        });
        assert!(matches!(end, ReadEnd::Closed));
        assert_eq!(n, 2);
    }
}
