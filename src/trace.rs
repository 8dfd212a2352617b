//! `--sip-trace FILE`: every message between the recording roles, in order, each preceded by
//! one line with its time, sender and receiver.

use crate::control::roles::TraceRecord;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// An open trace file. Write errors are reported once and then ignored: a trace must never
/// stop recording.
pub struct SipTrace {
    out: BufWriter<File>,
    failed: bool,
}

impl SipTrace {
    /// Creates (truncates) the trace file.
    pub fn create(path: &Path) -> std::io::Result<SipTrace> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(SipTrace { out: BufWriter::with_capacity(1 << 16, File::create(path)?), failed: false })
    }

    /// Appends one message.
    pub fn write(&mut self, rec: &TraceRecord) {
        let r = self.out.write_all(rec.render().as_bytes());
        self.check(r);
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        let r = self.out.flush();
        self.check(r);
    }

    fn check(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            if !self.failed {
                tracing::error!(error = %e, "cannot write the SIP trace; continuing without it");
                self.failed = true;
            }
        }
    }
}
