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

mod client;

use super::line;
use super::protocol::{Event, RequestLine};
use client::{start_client, Client, Outgoing};
use crate::control::core::CtiClient;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Events a client may have waiting to be written before it counts as a slow reader.
pub const QUEUE_LEN: usize = 4096;

/// Clients served at once (two threads each); more are told so and closed.
pub const MAX_CLIENTS: u64 = 256;

/// How often the acceptor looks at the stop flag between accepts.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

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

/// What the threads tell the server.
enum Internal {
    /// A new client; sent by the acceptor before its reader starts, so it precedes every
    /// input from that client.
    New(Client),
    /// An input for the caller.
    Input(CtiInput),
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
