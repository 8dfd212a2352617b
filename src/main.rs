//! The `callrec` command line.

use callrec::config::Config;
use callrec::dataplane::{RecordingOptions, Summary};
use callrec::replay::{self, ReplayOptions};
use callrec::run::{self, PortSpec, RunOptions};
use callrec_pipeline::writer::OutputFormat;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "callrec", version, about = "Records SIP calls from captures and live traffic as stereo WAV files (customer left, agent right)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a capture file (pcap or pcapng) as fast as possible and record its calls.
    Replay {
        /// The capture file.
        capture: PathBuf,
        #[command(flatten)]
        rec: RecordingArgs,
    },
    /// Run: read a port, serve CTI clients, record until SIGINT/SIGTERM or the end of a
    /// capture port; every open recording is finalized on the way out.
    Run {
        /// Where packets come from: `pcap:FILE` (released at capture pace), `af_packet:IFACE`
        /// (mirror port, promiscuous), `tap:NAME` (TAP device; created if missing) or `dpdk`.
        #[arg(long, value_name = "SPEC")]
        port: PortSpec,
        /// EAL arguments for `--port dpdk`, e.g. "-l 0 --no-huge -m 1024 --no-pci
        /// --file-prefix callrec --vdev=net_tap0,iface=cr0" (build with `--features dpdk`).
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        eal: Option<String>,
        /// Listen for CTI (T-Library style JSON lines) clients here, e.g. 127.0.0.1:3000.
        #[arg(long, value_name = "ADDR")]
        cti: Option<SocketAddr>,
        /// One rx thread per core listed, e.g. 0,1, each pinned to its core. af_packet: one
        /// socket per thread in one PACKET_FANOUT_HASH group (the kernel spreads flows by
        /// 5-tuple); dpdk: one rx queue per thread with RSS on the UDP 5-tuple. pcap and tap
        /// ports have one rx thread (the first core). With one core and no --control-core the
        /// control core runs inline on the rx thread; several cores imply --control-core.
        #[arg(long = "rx-cores", value_name = "LIST", value_delimiter = ',')]
        rx_cores: Vec<usize>,
        /// Run the control core (SIP, recording setup, CTI) on its own thread pinned to this
        /// core (may be one of --rx-cores: they then share it). The rx threads hand it SIP and
        /// it sends them flow-table updates, all through SPSC rings.
        #[arg(long = "control-core", value_name = "CORE")]
        control_core: Option<usize>,
        /// Print the counters to stderr every SECS seconds.
        #[arg(long, value_name = "SECS")]
        stats: Option<u64>,
        /// Serve the counters in Prometheus text format on http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        #[command(flatten)]
        rec: RecordingArgs,
    },
    /// Repair WAV files a killed process left behind: set their sizes from what is on disk.
    Repair {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Talk to a running callrec's CTI server: register DNs, list calls, watch events,
    /// start/pause/resume/stop recordings, route calls.
    Ctl(callrec::cti::ctl::CtlArgs),
}

/// Trigger and output options shared by every mode.
#[derive(clap::Args)]
struct RecordingArgs {
    /// Output directory for `<conf-id>.wav` and `<conf-id>.json`.
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration (Extension/Trunk DNs, agents, SIP ports, resource manager, CTI).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Record calls of this Extension DN (repeatable).
    #[arg(long = "record-dn", value_name = "DN")]
    record_dn: Vec<String>,
    /// File format.
    #[arg(long, value_enum, default_value_t = Format::G711)]
    format: Format,
    /// Write every SIP/MSML message between the recording roles to this file.
    #[arg(long = "sip-trace", value_name = "FILE")]
    sip_trace: Option<PathBuf>,
    /// Number of writer threads (default: one per spare core).
    #[arg(long)]
    writers: Option<usize>,
    /// Pin writer k to the k-th of these cores, wrapping (default: core k+1).
    #[arg(long = "writer-cores", value_name = "LIST", value_delimiter = ',')]
    writer_cores: Vec<usize>,
}

impl RecordingArgs {
    fn options(self) -> Result<RecordingOptions, String> {
        let mut config = match &self.config {
            Some(p) => Config::load(p).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        config.add_recorded_dns(&self.record_dn);
        Ok(RecordingOptions {
            out: self.out,
            config,
            format: match self.format {
                Format::G711 => OutputFormat::G711,
                Format::Pcm16 => OutputFormat::Pcm16,
            },
            sip_trace: self.sip_trace,
            writers: self.writers.unwrap_or_else(|| if self.writer_cores.is_empty() { default_writers() } else { self.writer_cores.len() }),
            writer_cores: self.writer_cores,
            conf_id_prefix: conf_id_prefix(),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// G.711 stereo (A-law or mu-law, as the call); PCM16 when the legs' codecs differ.
    G711,
    /// 16-bit linear PCM stereo.
    Pcm16,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLREC_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Replay { capture, rec } => {
            let rec = match rec.options() {
                Ok(r) => r,
                Err(msg) => return fail(&msg),
            };
            let out = rec.out.clone();
            match replay::run(ReplayOptions { capture, rec }) {
                Ok(s) => {
                    print_summary(&s.run, s.truncated.as_deref(), s.wall, &out);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Run { port, eal, cti, rx_cores, control_core, stats, metrics, rec } => {
            let rec = match rec.options() {
                Ok(r) => r,
                Err(msg) => return fail(&msg),
            };
            let out = rec.out.clone();
            let stats = stats.filter(|s| *s > 0).map(std::time::Duration::from_secs);
            match run::run(RunOptions { port, eal, cti, rx_cores, control_core, stats, metrics, rec }) {
                Ok(s) => {
                    if s.interrupted {
                        println!("stopped by signal; every open recording finalized");
                    }
                    print_summary(&s.run, s.truncated.as_deref(), s.wall, &out);
                    if let Some(p) = &s.port {
                        println!("{p}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Repair { files } => {
            let mut failed = false;
            for f in files {
                match callrec_pipeline::writer::repair::repair(&f) {
                    Ok(r) => println!("{}: {} audio bytes in the header, {} now", f.display(), r.data_before, r.data_after),
                    Err(e) => {
                        eprintln!("callrec: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Ctl(args) => callrec::cti::ctl::run(args),
    }
}

/// One writer per core left after the reader thread, at least one.
fn default_writers() -> usize {
    std::thread::available_parallelism().map(|n| n.get().saturating_sub(1)).unwrap_or(1).max(1)
}

/// `callrec-<start time in hex>`: unique per run, so runs sharing an output directory never
/// overwrite each other's files.
fn conf_id_prefix() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("callrec-{:x}", now.as_secs())
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("callrec: {msg}");
    ExitCode::from(2)
}

fn print_summary(s: &Summary, truncated: Option<&str>, wall: std::time::Duration, out: &std::path::Path) {
    let p = &s.packets;
    let c = &s.control;
    let w = &s.writers;
    let secs = wall.as_secs_f64().max(1e-9);
    if let Some(t) = truncated {
        eprintln!("callrec: warning: truncated capture: {t}");
    }
    println!(
        "calls: {} seen, {} answered, {} recorded ({} failed to start), {} ended",
        c.calls_seen, c.calls_answered, c.recordings_started, c.recordings_failed, c.calls_ended
    );
    println!(
        "packets: {} read: SIP {} (malformed {}), RTP {}, RTCP {}, other {} (unrecorded UDP {}, keep-alive {}, not RTP {}, oversize {}, not UDP {}, fragments {}), SIP over TCP {} (not yet supported), SIP dropped at a full control ring {}, RTP dropped at a full writer ring {}",
        p.rx, p.sip, c.malformed_sip, p.rtp, p.rtcp, p.other(),
        p.unrecorded, p.keepalive, p.not_rtp, p.oversize, p.not_udp, p.fragments, p.sip_tcp, p.sip_dropped, p.ring_full
    );
    for (i, r) in s.rx_cores.iter().enumerate() {
        println!("rx-thread {i}: {}", callrec::stats::rx_line(r));
    }
    println!(
        "audio: {} recordings written, {} failed; RTP lost {}, late {}, duplicate {}, events {}",
        w.recordings_closed, w.recordings_failed, w.lost, w.late, w.duplicate, w.events
    );
    println!("wall time {:.3} s, {:.0} packets/s; files in {}", secs, p.rx as f64 / secs, out.display());
}
