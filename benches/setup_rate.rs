//! Sustained recording setups per second of the control core, as a capture would feed it:
//! calls arrive at a fixed pace in capture time, each is held for a fixed number of later
//! arrivals (the concurrency), then torn down (BYE, 200). Prints setups/s (INVITE..ACK, outputs
//! drained) and teardowns/s per slice of calls, so a cost that grows with the state the core
//! keeps (live calls, recently ended Call-IDs) shows as a falling rate.
//!
//! `cargo bench --bench setup_rate -- PACE CONCURRENT CALLS`
//! (default 5000 calls/s of capture time, 1000 concurrent, 100,000 calls; wall time grows
//! with CALLS, keep it near 10^5).

#[path = "common/mod.rs"]
mod common;

use callrec::control::core::{ControlCore, Output};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Feeds messages, drains the outputs; returns how many SIP messages the roles exchanged.
fn feed(core: &mut ControlCore, us: u64, msgs: &[(bool, Vec<u8>)]) -> u32 {
    let mut traced = 0;
    for (a_to_b, bytes) in msgs {
        let (src, dst) = common::ends(*a_to_b);
        core.handle_sip(common::at(us), src, dst, bytes);
        while let Some(o) = core.poll_output() {
            traced += u32::from(matches!(o, Output::Trace(_)));
            std::hint::black_box(o);
        }
    }
    traced
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pace = args.first().copied().unwrap_or(5000).max(1);
    let concurrent = args.get(1).copied().unwrap_or(1000).max(1) as usize;
    let calls = args.get(2).copied().unwrap_or(100_000).clamp(1, 10_000_000) as u32;
    let slice = (calls / 10).max(1);
    let step_us = 1_000_000 / pace;
    println!("control core: {calls} calls at {pace} calls/s of capture time, {concurrent} concurrent");
    println!("{:>16} {:>12} {:>10} {:>12} {:>10}", "calls", "setup us", "setups/s", "teardown us", "teardn/s");
    let mut core = common::core("/rec");
    // the teardown messages of each live call, oldest first
    let mut live: VecDeque<[(bool, Vec<u8>); 2]> = VecDeque::new();
    let (mut t_setup, mut t_down, mut n_down) = (Duration::ZERO, Duration::ZERO, 0u32);
    let (mut all_setup, mut all_down, mut all_n_down) = (Duration::ZERO, Duration::ZERO, 0u32);
    let mut recorded = 0u64;
    for n in 0..calls {
        let us = u64::from(n) * step_us;
        let c = common::call(n);
        let t0 = Instant::now();
        let traced = feed(&mut core, us, &c.setup);
        t_setup += t0.elapsed();
        if n == 0 {
            println!("(one setup: 4 SIP messages in, {traced} SIP messages between the roles)");
        }
        if n + 1 == (concurrent as u32 + 1).min(calls) {
            // counting sessions walks them all: once, when the concurrency is first reached
            recorded = core.active_recordings() as u64;
        }
        live.push_back(c.teardown);
        if live.len() > concurrent {
            if let Some(bye) = live.pop_front() {
                let t0 = Instant::now();
                let traced = feed(&mut core, us + step_us / 2, &bye);
                t_down += t0.elapsed();
                if n_down == 0 && all_n_down == 0 {
                    println!("(one teardown: 2 SIP messages in, {traced} SIP messages between the roles)");
                }
                n_down += 1;
            }
        }
        if (n + 1) % slice == 0 {
            let per = |d: Duration, k: u32| if k == 0 { 0.0 } else { d.as_secs_f64() * 1e6 / f64::from(k) };
            println!(
                "{:>7}..{:<8} {:>12.1} {:>10.0} {:>12.1} {:>10.0}",
                n + 1 - slice,
                n + 1,
                per(t_setup, slice),
                1e6 / per(t_setup, slice),
                per(t_down, n_down),
                if n_down == 0 { 0.0 } else { 1e6 / per(t_down, n_down) }
            );
            all_setup += t_setup;
            all_down += t_down;
            all_n_down += n_down;
            (t_setup, t_down, n_down) = (Duration::ZERO, Duration::ZERO, 0);
        }
    }
    assert_eq!(recorded as usize, (concurrent + 1).min(calls as usize), "every live call was being recorded");
    let setups = f64::from(calls) / all_setup.as_secs_f64().max(1e-9);
    let downs = f64::from(all_n_down) / all_down.as_secs_f64().max(1e-9);
    println!("all: {setups:.0} setups/s, {downs:.0} teardowns/s, {:.0} calls/s set up and torn down (goal >= 5000 setups/s)",
        1.0 / (1.0 / setups + 1.0 / downs));
}
