//! Control path cost: MSML bodies built and parsed, and one recorded call through the control
//! core (call tracking, the static trigger, the SIP Server -> Resource Manager -> MCP roles
//! exchanging real SIP) from the capture's SIP bytes to the flow updates and writer commands.
//!
//! `cargo bench --bench control -- --warm-up-time 1 --measurement-time 3`
//!
//! "recording setup" is INVITE, 180, 200 and ACK of a call to the recorded DN, each message
//! handed to `ControlCore::handle_sip` and its outputs drained: the recording starts at the
//! 200 (the roles' INVITE/200/ACK/INFO exchange runs inside that call). "teardown" is BYE and
//! its 200 (the roles' INFO <dialogend> and BYE). Every iteration is a new Call-ID with new
//! media ports; building the message bytes is left out of the time. One call is live at a
//! time: the cost of many concurrent calls is in benches/setup_rate.rs.

#[path = "common/mod.rs"]
mod common;

use callrec::control::core::{ControlCore, Output};
use callrec::control::msml::{MsmlRequest, MsmlResult};
use callrec::control::uri::ConfId;
use callrec_pipeline::flow::FlowUpdate;
use callrec_pipeline::writer::WriterMsg;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};

fn msml(c: &mut Criterion) {
    let conf_id = ConfId::new("bench-0000000042").expect("conf id");
    let start = MsmlRequest::Start {
        conf_id: conf_id.clone(),
        dest: "file:///rec/bench-0000000042.wav".into(),
        format: "audio/wav;codec=pcma".into(),
    };
    let stop = MsmlRequest::Stop { conf_id };
    let ok = MsmlResult::ok();
    let start_xml = start.to_xml();
    let stop_xml = stop.to_xml();
    let ok_xml = ok.to_xml();
    assert_eq!(MsmlRequest::parse(start_xml.as_bytes()), Ok(start.clone()));
    assert_eq!(MsmlResult::parse(ok_xml.as_bytes()), Ok(ok.clone()));
    let mut g = c.benchmark_group("msml");
    g.bench_function("dialogstart build", |b| b.iter(|| black_box(&start).to_xml()));
    g.bench_function("dialogstart parse", |b| b.iter(|| MsmlRequest::parse(black_box(start_xml.as_bytes()))));
    g.bench_function("dialogend build", |b| b.iter(|| black_box(&stop).to_xml()));
    g.bench_function("dialogend parse", |b| b.iter(|| MsmlRequest::parse(black_box(stop_xml.as_bytes()))));
    g.bench_function("result 200 build", |b| b.iter(|| black_box(&ok).to_xml()));
    g.bench_function("result 200 parse", |b| b.iter(|| MsmlResult::parse(black_box(ok_xml.as_bytes()))));
    g.finish();
}

/// What one message's outputs held, to check the benchmark runs the recording path.
#[derive(Default)]
struct Seen {
    installs: u32,
    removes: u32,
    starts: u32,
    stops: u32,
}

fn feed(core: &mut ControlCore, now_us: u64, msgs: &[(bool, Vec<u8>)], seen: &mut Seen) {
    for (a_to_b, bytes) in msgs {
        let (src, dst) = common::ends(*a_to_b);
        core.handle_sip(common::at(now_us), src, dst, bytes);
        while let Some(o) = core.poll_output() {
            match o {
                Output::Flow(FlowUpdate::Install(..)) => seen.installs += 1,
                Output::Flow(FlowUpdate::Remove(..)) => seen.removes += 1,
                Output::Writer { msg: WriterMsg::Start(s), .. } => {
                    seen.starts += 1;
                    black_box(s);
                }
                Output::Writer { msg: WriterMsg::Stop { .. }, .. } => seen.stops += 1,
                other => {
                    black_box(other);
                }
            }
        }
    }
}

fn recording(c: &mut Criterion) {
    let mut core = common::core("/rec");
    let mut n: u32 = 0;
    let mut clock_us: u64 = 0;
    // Calls arrive 10 ms apart in capture time: the tracker remembers ended Call-IDs for 32 s
    // and scans that list on each INVITE once it passes 4096 entries, which this pace keeps it
    // under (benches/setup_rate.rs shows the cost at 5,000 calls/s and with many live calls).
    const PACE_US: u64 = 10_000;
    let mut g = c.benchmark_group("recording");
    g.throughput(Throughput::Elements(1));
    // Times INVITE..ACK; the call is then torn down outside the time so the core stays at one
    // call (the steady state of a core that ends as many calls as it starts).
    g.bench_function("setup INVITE..ACK", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut seen = Seen::default();
            for _ in 0..iters {
                let call = common::call(n);
                n = n.wrapping_add(1);
                clock_us += PACE_US;
                let t0 = Instant::now();
                feed(&mut core, clock_us, &call.setup, &mut seen);
                total += t0.elapsed();
                feed(&mut core, clock_us + 500, &call.teardown, &mut seen);
            }
            check(&seen, iters);
            total
        })
    });
    g.bench_function("teardown BYE+200", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut seen = Seen::default();
            for _ in 0..iters {
                let call = common::call(n);
                n = n.wrapping_add(1);
                clock_us += PACE_US;
                feed(&mut core, clock_us, &call.setup, &mut seen);
                let t0 = Instant::now();
                feed(&mut core, clock_us + 500, &call.teardown, &mut seen);
                total += t0.elapsed();
            }
            check(&seen, iters);
            total
        })
    });
    g.finish();
    assert_eq!(core.active_recordings(), 0, "every benchmarked call ended");
}

/// Every call installed two flows and started a recording, and every teardown removed the
/// flows and stopped it: the benchmark timed the recording path, not a call it ignored.
fn check(seen: &Seen, iters: u64) {
    let n = iters as u32;
    assert_eq!((seen.installs, seen.starts), (2 * n, n), "each setup installs 2 flows and starts 1 recording");
    assert_eq!((seen.removes, seen.stops), (2 * n, n), "each teardown removes 2 flows and stops 1 recording");
}

criterion_group!(benches, msml, recording);
criterion_main!(benches);
