//! `callrec replay`: a capture file through the whole pipeline as fast as it can go.

use crate::dataplane::{Dataplane, NoCti, RecordingOptions, SetupError, Summary};
use callrec_pipeline::port::pcap::{CaptureFile, PortError};
use callrec_pipeline::Timestamp;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `callrec replay` was asked to do.
pub struct ReplayOptions {
    /// The capture file.
    pub capture: PathBuf,
    /// Triggers and outputs.
    pub rec: RecordingOptions,
}

/// Why a replay could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture could not be opened.
    #[error("{0}")]
    Capture(#[from] PortError),
    /// The pipeline could not be set up.
    #[error("{0}")]
    Setup(#[from] SetupError),
}

/// What a replay did, for the summary.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Counters.
    pub run: Summary,
    /// Warning about a truncated capture, if any.
    pub truncated: Option<String>,
    /// Wall time.
    pub wall: Duration,
}

/// Runs a replay to the end of the capture and finalizes every recording.
pub fn run(opts: ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let mut port = CaptureFile::open(&opts.capture)?;
    let mut dp = Dataplane::new(opts.rec)?;
    let mut last_ts = Timestamp::default();
    loop {
        let burst = port.rx_burst();
        let Some(last) = burst.last() else { break };
        last_ts = last.ts;
        for frame in burst.iter() {
            dp.frame(frame, &mut NoCti);
        }
        dp.tick(last_ts, &mut NoCti);
    }
    let run = dp.finish(last_ts, &mut NoCti);
    Ok(ReplaySummary { run, truncated: port.truncated(), wall: started.elapsed() })
}
