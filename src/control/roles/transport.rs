//! The in-process transport between the recording roles, and the SIP trace it keeps: every
//! message as the bytes that travelled, with capture time, sender and receiver.

use callrec_pipeline::Timestamp;
use std::collections::VecDeque;

/// One message between two roles, for `--sip-trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// Capture time of the operation that caused the message.
    pub at: Timestamp,
    /// Sender's address (`host:port`).
    pub from: String,
    /// Receiver's address.
    pub to: String,
    /// The message, verbatim (CRLF line ends, body included).
    pub text: String,
}

impl TraceRecord {
    /// `<RFC 3339 UTC time> <from> -> <to>`, a newline, the message text (ending in a newline)
    /// and one blank line.
    pub fn render(&self) -> String {
        let mut out = format!("{} {} -> {}\n", rfc3339(self.at), self.from, self.to);
        out.push_str(&self.text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// `2026-11-25T23:15:58.000000000Z`.
pub fn rfc3339(at: Timestamp) -> String {
    at.rfc3339_nanos()
}

/// A message waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub from: String,
    pub to: String,
    pub bytes: Vec<u8>,
}

/// FIFO of messages between roles: what one role sends is delivered after everything sent
/// before it, like one loss-free UDP path.
#[derive(Debug, Default)]
pub(crate) struct InProcessTransport {
    queue: VecDeque<Datagram>,
}

impl InProcessTransport {
    /// Queues a message and returns its trace record.
    pub fn send(&mut self, at: Timestamp, from: &str, to: &str, bytes: Vec<u8>) -> TraceRecord {
        let record = TraceRecord {
            at,
            from: from.to_string(),
            to: to.to_string(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.queue.push_back(Datagram {
            from: from.to_string(),
            to: to.to_string(),
            bytes,
        });
        record
    }
    /// The next message to deliver.
    pub fn next(&mut self) -> Option<Datagram> {
        self.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(Timestamp::from_parts(951_782_400, 5)),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_parts(1_795_994_158, 123_000_000)),
            "2026-11-29T23:15:58.123000000Z"
        );
    }

    #[test]
    fn trace_line_then_message_then_blank_line() {
        let r = TraceRecord {
            at: Timestamp::from_parts(1, 0),
            from: "a:1".into(),
            to: "b:2".into(),
            text: "BYE sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n".into(),
        };
        assert_eq!(
            r.render(),
            "1970-01-01T00:00:01.000000000Z a:1 -> b:2\nBYE sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n\n"
        );
    }
}
