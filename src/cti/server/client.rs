//! One CTI client's threads: the reader turning bytes into request lines (answering bad ones
//! itself) and the writer draining the client's bounded event queue.

use super::{Counters, CtiInput, Internal, QUEUE_LEN};
use crate::control::core::CtiClient;
use crate::cti::line::{self, MAX_LINE};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// After dropping a client for a too-long line, how long (and how much) its remaining input
/// is read and discarded so that the error reaches it instead of being lost to a TCP reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 4 * 1024 * 1024;

/// What a client's writer thread takes.
pub(super) enum Outgoing {
    /// One serialized event, newline included.
    Line(String),
    /// Write what came before, then stop sending (the client is being dropped).
    Close,
}

/// The server's handle on one client.
pub(super) struct Client {
    pub(super) id: u64,
    /// None once retired: dropping it lets the writer finish what is queued and end.
    pub(super) out: Option<SyncSender<Outgoing>>,
    /// A clone of the socket, kept to shut it down (which wakes the blocked reader and writer).
    stream: TcpStream,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Client {
    pub(super) fn shut(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    pub(super) fn finished(&self) -> bool {
        self.reader.is_finished() && self.writer.is_finished()
    }

    pub(super) fn join(mut self) {
        drop(self.out.take());
        let _ = self.reader.join();
        let _ = self.writer.join();
    }
}

/// A client whose reader waits for `go`, sent once the server has been told of the client.
pub(super) struct Started {
    pub(super) client: Client,
    pub(super) go: SyncSender<()>,
}

pub(super) fn start_client(id: u64, stream: TcpStream, tx: Sender<Internal>, counters: Arc<Counters>) -> io::Result<Started> {
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
