//! Placement tests for several sources in one channel: independent streams, mixing where
//! they overlap, and holds (announced by pause/resume or not).

use super::tests::{rtp, runs, Rig, ALAW_SILENCE_FOR_TESTS as S, MS, T0};
use super::*;

impl Rig {
    /// One packet of `source` on `ch`; `hdr` is (sequence number, timestamp, SSRC).
    fn put(&mut self, ch: Channel, source: u8, at_ms: u64, hdr: (u16, u32, u32), payload: &[u8]) {
        let b = rtp(8, hdr.0, hdr.1, hdr.2, payload);
        let at = Timestamp(T0 + at_ms * MS);
        self.p.place(ch, source, at, &b, &mut self.out.sink());
    }
}

#[test]
fn a_source_past_max_sources_is_invalid_not_a_panic() {
    let mut r = Rig::new(2000);
    r.put(Channel::Right, MAX_SOURCES as u8, 0, (0, 0, 1), &[1; 160]);
    r.put(Channel::Right, u8::MAX, 0, (0, 0, 1), &[1; 160]);
    r.finish();
    let c = r.p.counters(Channel::Right);
    assert_eq!((c.packets, c.invalid), (2, 2));
    assert!(r.out.r.is_empty());
}

#[test]
fn two_sources_in_a_channel_keep_their_own_streams() {
    // Two agents on the right channel, interleaved packet by packet, with the same sequence
    // numbers and unrelated timestamp bases. One stream per channel would re-anchor on
    // every packet (SSRC change) and call the second agent's packets duplicates.
    let mut r = Rig::new(2000);
    for i in 0..50u16 {
        if i != 20 {
            r.put(
                Channel::Right,
                0,
                i as u64 * 20,
                (i, 1000 + i as u32 * 160, 0xA),
                &[1; 160],
            );
        }
        if i < 25 {
            r.put(
                Channel::Right,
                2,
                i as u64 * 20,
                (i, 777_000 + i as u32 * 160, 0xB),
                &[2; 80],
            );
        }
    }
    r.finish();
    let c = r.p.counters(Channel::Right);
    assert_eq!(
        (c.packets, c.reanchors, c.duplicate, c.late),
        (49 + 25, 0, 0, 0)
    );
    assert_eq!(c.lost, 1, "losses are summed over the sources");
}

#[test]
fn a_transfer_hands_the_channel_to_the_next_source_at_its_capture_time() {
    // Agent A (source 0) talks for 1 s and leaves; agent B (source 1) starts 1.5 s in with
    // its own SSRC, sequence and timestamp base: B lands at its capture time and A's
    // stream is untouched (no re-anchor counted).
    let mut r = Rig::new(2000);
    for i in 0..100u16 {
        r.put(
            Channel::Left,
            0,
            i as u64 * 20,
            (i, i as u32 * 160, 0xC),
            &[9; 160],
        );
        if i < 50 {
            r.put(
                Channel::Right,
                0,
                i as u64 * 20,
                (300 + i, 5 + i as u32 * 160, 0xA),
                &[1; 160],
            );
        }
        if i >= 75 {
            let k = i - 75;
            r.put(
                Channel::Right,
                1,
                i as u64 * 20,
                (40_000 + k, 3_000_000 + k as u32 * 160, 0xB),
                &[2; 160],
            );
        }
    }
    r.finish();
    assert_eq!(runs(&r.out.r), vec![(1, 8000), (S, 4000), (2, 4000)]);
    assert_eq!(r.p.counters(Channel::Right).reanchors, 0);
}

/// Channel `ch` from a linear (PCM16) rig of window 2000.
fn linear_rig() -> Placement {
    let cfg = PlacementConfig::default();
    Placement::new(
        [super::tests::pcma(), super::tests::pcma()],
        SampleKind::Linear,
        cfg,
    )
}

#[test]
fn overlapping_sources_are_summed_and_saturate() {
    // A-law file: two agents speaking constant levels at once.
    let (a, b) = (Codec::Pcma.encode(1000), Codec::Pcma.encode(-3000));
    let (loud, louder) = (Codec::Pcma.encode(30_000), Codec::Pcma.encode(20_000));
    let mut r = Rig::new(2000);
    for i in 0..10u16 {
        let (at, ts) = (i as u64 * 20, i as u32 * 160);
        let (x, y) = if i < 5 { (a, b) } else { (loud, louder) };
        r.put(Channel::Right, 0, at, (i, ts, 0xA), &[x; 160]);
        r.put(
            Channel::Right,
            3,
            at,
            (100 + i, 50_000 + ts, 0xB),
            &[y; 160],
        );
    }
    r.finish();
    let dec = |x: u8| Codec::Pcma.decode(x);
    let sum = Codec::Pcma.encode(dec(a).saturating_add(dec(b)));
    assert_ne!(sum, b, "the sum is not the last writer's bytes");
    let sat = Codec::Pcma.encode(i16::MAX);
    assert_eq!(runs(&r.out.r), vec![(sum, 800), (sat, 800)]);
    assert_eq!(
        runs(&r.out.l),
        vec![(S, 1600)],
        "the other channel is untouched"
    );
}

#[test]
fn linear_mix_is_the_saturating_sum_of_two_sines() {
    let mut p = linear_rig();
    let mut out = super::tests::Out::default();
    let sine = |f: f64, amp: f64, n: usize| -> Vec<u8> {
        (0..n)
            .map(|k| {
                Codec::Pcma
                    .encode((amp * (f * k as f64 / 8000.0 * std::f64::consts::TAU).sin()) as i16)
            })
            .collect()
    };
    let (s0, s1) = (sine(440.0, 20_000.0, 1600), sine(1000.0, 18_000.0, 1600));
    for i in 0..10usize {
        let (at, ts) = (Timestamp(T0 + i as u64 * 20 * MS), i as u32 * 160);
        let chunk = |s: &[u8]| s[i * 160..(i + 1) * 160].to_vec();
        let b0 = rtp(8, i as u16, 7 + ts, 0xA, &chunk(&s0));
        let b1 = rtp(8, 9 + i as u16, 90_000 + ts, 0xB, &chunk(&s1));
        p.place(Channel::Left, 0, at, &b0, &mut out.sink());
        p.place(Channel::Left, 1, at, &b1, &mut out.sink());
    }
    p.flush(&mut out.sink());
    let dec = |x: &u8| Codec::Pcma.decode(*x);
    let want: Vec<i16> = s0
        .iter()
        .zip(&s1)
        .map(|(a, b)| dec(a).saturating_add(dec(b)))
        .collect();
    assert_eq!(out.ll, want);
    assert!(
        want.contains(&i16::MAX) && want.contains(&i16::MIN),
        "the test reaches saturation"
    );
}

#[test]
fn the_mix_follows_each_source_timing() {
    // Source 1 starts 10 ms (80 samples) after source 0 and its packets are 10 ms long:
    // source 0 alone for 80 samples, then the sum, then source 0 alone where 1 stopped.
    let (a, b) = (Codec::Pcma.encode(2000), Codec::Pcma.encode(500));
    let sum = Codec::Pcma.encode(Codec::Pcma.decode(a) + Codec::Pcma.decode(b));
    let mut r = Rig::new(2000);
    for i in 0..10u16 {
        r.put(
            Channel::Left,
            0,
            i as u64 * 20,
            (i, i as u32 * 160, 0xA),
            &[a; 160],
        );
    }
    for k in 0..6u16 {
        // 80-sample packets every 10 ms from 10 ms on, timestamps on its own base
        let at = 10 + k as u64 * 10;
        r.put(
            Channel::Left,
            1,
            at,
            (k, 4000 + k as u32 * 80, 0xB),
            &[b; 80],
        );
    }
    r.finish();
    assert_eq!(runs(&r.out.l), vec![(a, 80), (sum, 480), (a, 1600 - 560)]);
}

#[test]
fn gap_fill_is_not_mixed_and_a_source_overwrites_itself() {
    // A-law samples near zero, where adding the silence byte's +8 would change the byte.
    let quiet = Codec::Pcma.encode(24);
    assert_ne!(Codec::Pcma.encode(Codec::Pcma.decode(quiet) + 8), quiet);
    let mut r = Rig::new(2000);
    // source 0 loses its packet 2; source 1 speaks exactly there
    for i in [0u16, 1, 3] {
        r.put(
            Channel::Left,
            0,
            i as u64 * 20,
            (i, i as u32 * 160, 0xA),
            &[5; 160],
        );
    }
    r.put(Channel::Left, 1, 40, (0, 0, 0xB), &[quiet; 160]);
    // source 0 restarts (new SSRC) at 70 ms, on top of the second half of its packet 3:
    // its own audio is overwritten, not added to
    r.put(Channel::Left, 0, 70, (500, 9999, 0xC), &[6; 160]);
    r.finish();
    assert_eq!(
        runs(&r.out.l),
        vec![(5, 320), (quiet, 160), (5, 80), (6, 160)],
        "{:?}",
        runs(&r.out.l)
    );
}

/// How the agent's sender numbers its packets after a 3 s hold.
#[derive(Clone, Copy)]
enum AfterHold {
    /// Timestamps pick up where they stopped (the clock was frozen).
    Frozen,
    /// Timestamps went on counting through the hold.
    Continuing,
    /// Timestamps (and sequence numbers) restart at an arbitrary value.
    Restart(u32),
}

/// 6 s call: the customer (left) talks throughout; the agent (right) talks 1 s, is on hold
/// 3 s (sends nothing), then talks 2 s. `announced`: the control core paused at 1 s and
/// resumed at 4 s.
fn hold_call(announced: bool, after: AfterHold) -> Rig {
    let mut r = Rig::new(2000);
    let seq_ts = |i: u16| -> (u16, u32) {
        let base = 123_456u32;
        match (i < 50, after) {
            (true, _) => (i, base + i as u32 * 160),
            (false, AfterHold::Frozen) => (i - 150, base + (i as u32 - 150) * 160),
            (false, AfterHold::Continuing) => (i - 150, base + i as u32 * 160),
            (false, AfterHold::Restart(t)) => (9_000 + i, t.wrapping_add((i as u32 - 200) * 160)),
        }
    };
    for i in 0..300u16 {
        let at = i as u64 * 20;
        if announced && i == 50 {
            r.p.pause(Timestamp(T0 + 1000 * MS));
        }
        if announced && i == 200 {
            r.p.resume(Timestamp(T0 + 4000 * MS));
        }
        r.put(Channel::Left, 0, at, (i, i as u32 * 160, 0xC), &[1; 160]);
        if !(50..200).contains(&i) {
            let (seq, ts) = seq_ts(i);
            r.put(Channel::Right, 0, at, (seq, ts, 0xA), &[2; 160]);
        }
    }
    r.finish();
    r
}

#[test]
fn after_a_resume_every_stream_restarts_on_capture_time() {
    let cases = [
        AfterHold::Frozen,
        AfterHold::Continuing,
        AfterHold::Restart(123_456 + 50 * 160 - 9_000), // back 1.1 s: no "jump"
        AfterHold::Restart(0x9E37_79B9),
    ];
    for after in cases {
        let r = hold_call(true, after);
        let (left, right) = (r.p.counters(Channel::Left), r.p.counters(Channel::Right));
        // exactly the hold is silent, on both channels, and nothing is held back
        assert_eq!(runs(&r.out.l), vec![(1, 8000), (S, 24_000), (1, 16_000)]);
        assert_eq!(runs(&r.out.r), vec![(2, 8000), (S, 24_000), (2, 16_000)]);
        assert_eq!((right.late, right.lost, right.duplicate), (0, 0, 0));
        // a planned re-anchor is not counted as a damaged stream
        assert_eq!((left.reanchors, right.reanchors), (0, 0));
    }
}

#[test]
fn an_unannounced_hold_reanchors_on_the_first_packet_back() {
    for (after, reanchors) in [
        (AfterHold::Frozen, 1),
        (AfterHold::Continuing, 0),
        (AfterHold::Restart(123_456 + 50 * 160 - 9_000), 1),
        (AfterHold::Restart(0x9E37_79B9), 1),
    ] {
        let r = hold_call(false, after);
        let right = r.p.counters(Channel::Right);
        assert_eq!((right.reanchors, right.late, right.lost), (reanchors, 0, 0));
        // the agent's audio comes back at its capture time: no packet held back, the hold
        // is silence and the customer's channel never notices
        assert_eq!(runs(&r.out.r), vec![(2, 8000), (S, 24_000), (2, 16_000)]);
        assert_eq!(runs(&r.out.l), vec![(1, 48_000)]);
    }
}

#[test]
fn a_short_silence_or_a_far_capture_time_keeps_the_confirmation_rule() {
    // Frozen timestamps (seq and ts go on from where they stopped) after `silent_ms` of
    // silence in the only stream of the recording.
    let run = |silent_ms: u64| {
        let mut r = Rig::new(2000);
        for i in 0..80u16 {
            let at = i as u64 * 20 + if i < 40 { 0 } else { silent_ms };
            r.put(
                Channel::Left,
                0,
                at,
                (i, 777 + i as u32 * 160, 0xA),
                &[1; 160],
            );
        }
        r.finish();
        r
    };
    // 800 ms is a talk-spurt gap, not a hold: 800 ms < the 1 s resync threshold, so the
    // sender's clock still decides and the stream continues 800 ms early, nothing lost.
    let r = run(800);
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.reanchors, c.late), (0, 0));
    assert_eq!(runs(&r.out.l), vec![(1, 80 * 160)]);
    // 45 s with nothing else in the recording is further than a damaged capture time is
    // trusted: the first packet back waits for the second to confirm (one 20 ms hole).
    let r = run(45_000);
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.reanchors, c.late), (1, 1));
    assert_eq!(
        runs(&r.out.l),
        vec![(1, 40 * 160), (S, 45 * 8000 + 160), (1, 39 * 160)]
    );
}

#[test]
fn per_call_state_stays_small() {
    // The design's budget is 8 KiB of state per call outside sample buffers; the placement
    // buffer's share (both channels, MAX_SOURCES streams each) is well under it.
    let n = std::mem::size_of::<Placement>();
    assert!(n <= 2048, "Placement is {n} bytes");
}
