//! Placement buffer tests: scripted packet sequences against the exact samples expected out.

use super::*;

pub(super) const T0: u64 = 1_700_000_000_000_000_000;
pub(super) const MS: u64 = 1_000_000;

pub(super) fn spec(pts: &[(u8, Codec)], event: Option<u8>) -> ChannelSpec {
    let mut payload_types = heapless::Vec::new();
    for p in pts {
        payload_types.push(*p).unwrap();
    }
    ChannelSpec {
        payload_types,
        event_pt: event,
    }
}

pub(super) fn pcma() -> ChannelSpec {
    spec(&[(8, Codec::Pcma)], Some(101))
}

pub(super) fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, pt];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Collects committed audio.
#[derive(Default)]
pub(super) struct Out {
    pub(super) l: Vec<u8>,
    pub(super) r: Vec<u8>,
    pub(super) ll: Vec<i16>,
    pub(super) rl: Vec<i16>,
}

impl Out {
    pub(super) fn sink(&mut self) -> impl FnMut(Frames<'_>) + '_ {
        move |f| match f {
            Frames::Law(a, b) => {
                assert_eq!(a.len(), b.len());
                self.l.extend_from_slice(a);
                self.r.extend_from_slice(b);
            }
            Frames::Linear(a, b) => {
                self.ll.extend_from_slice(a);
                self.rl.extend_from_slice(b);
            }
        }
    }
}

pub(super) struct Rig {
    pub(super) p: Placement,
    pub(super) out: Out,
}

impl Rig {
    pub(super) fn new(window: u32) -> Self {
        let cfg = PlacementConfig {
            window_samples: window,
        };
        Rig {
            p: Placement::new([pcma(), pcma()], SampleKind::Law(Codec::Pcma), cfg),
            out: Out::default(),
        }
    }
    /// Packet `seq` of a 20 ms stream whose byte value is `fill`, captured at `at_ms`.
    pub(super) fn send(&mut self, ch: Channel, at_ms: u64, seq: u16, ts: u32, fill: u8) {
        let b = rtp(8, seq, ts, 0x1111 + ch.index() as u32, &[fill; 160]);
        self.p
            .place(ch, 0, Timestamp(T0 + at_ms * MS), &b, &mut self.out.sink());
    }
    pub(super) fn finish(&mut self) {
        self.p.flush(&mut self.out.sink());
    }
}

/// Byte value of packet `i`, never the silence byte.
fn val(i: u16) -> u8 {
    (i % 100) as u8 + 1
}

pub(super) fn runs(v: &[u8]) -> Vec<(u8, usize)> {
    let mut out: Vec<(u8, usize)> = Vec::new();
    for &b in v {
        match out.last_mut() {
            Some((x, n)) if *x == b => *n += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

#[test]
fn in_order_packets_come_out_in_order() {
    let mut r = Rig::new(2000);
    for i in 0..20u16 {
        r.send(
            Channel::Left,
            i as u64 * 20,
            i,
            1000 + i as u32 * 160,
            val(i),
        );
        r.send(
            Channel::Right,
            i as u64 * 20,
            500 + i,
            7 + i as u32 * 160,
            val(i) + 100,
        );
    }
    r.finish();
    let want_l: Vec<(u8, usize)> = (0..20).map(|i| (val(i), 160)).collect();
    let want_r: Vec<(u8, usize)> = (0..20).map(|i| (val(i) + 100, 160)).collect();
    assert_eq!(runs(&r.out.l), want_l);
    assert_eq!(runs(&r.out.r), want_r);
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.packets, c.lost, c.late, c.duplicate), (20, 0, 0, 0));
}

#[test]
fn audio_is_committed_only_past_the_window() {
    let mut r = Rig::new(800);
    for i in 0..10u16 {
        r.send(Channel::Left, i as u64 * 20, i, i as u32 * 160, val(i));
    }
    // newest = 1600, window 800: exactly the first 800 samples are out
    assert_eq!(r.out.l.len(), 800);
    assert_eq!(r.p.committed(), 800);
}

#[test]
fn reordered_within_window_is_put_back_in_place() {
    let mut r = Rig::new(2000);
    let order = [0u16, 2, 1, 3, 5, 4, 7, 6, 8, 9];
    for (k, &i) in order.iter().enumerate() {
        r.send(Channel::Left, k as u64 * 20, i, i as u32 * 160, val(i));
    }
    r.finish();
    let want: Vec<(u8, usize)> = (0..10).map(|i| (val(i), 160)).collect();
    assert_eq!(runs(&r.out.l), want);
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.lost, c.late), (0, 0));
}

#[test]
fn late_beyond_window_is_counted_and_dropped() {
    let mut r = Rig::new(400);
    for i in (0..12u16).filter(|i| *i != 1) {
        r.send(Channel::Left, i as u64 * 20, i, i as u32 * 160, val(i));
    }
    r.send(Channel::Left, 240, 1, 160, val(1));
    r.finish();
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.late, c.lost), (1, 0));
    assert_eq!(&r.out.l[160..320], &[ALAW_SILENCE_FOR_TESTS; 160][..]);
    assert_eq!(r.out.l.len(), 12 * 160);
}

pub(super) const ALAW_SILENCE_FOR_TESTS: u8 = crate::writer::g711::ALAW_SILENCE;

#[test]
fn duplicates_are_counted_and_dropped() {
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 10, 0, 1);
    r.send(Channel::Left, 20, 11, 160, 2);
    r.send(Channel::Left, 21, 11, 160, 9); // same seq, different bytes: must not overwrite
    r.finish();
    assert_eq!(runs(&r.out.l), vec![(1, 160), (2, 160)]);
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.duplicate, c.packets), (1, 3));
}

#[test]
fn loss_becomes_silence_and_is_counted() {
    let mut r = Rig::new(2000);
    for i in [0u16, 1, 4, 5] {
        r.send(Channel::Left, i as u64 * 20, i, i as u32 * 160, val(i));
    }
    r.finish();
    assert_eq!(
        runs(&r.out.l),
        vec![
            (val(0), 160),
            (val(1), 160),
            (ALAW_SILENCE_FOR_TESTS, 320),
            (val(4), 160),
            (val(5), 160)
        ]
    );
    assert_eq!(r.p.counters(Channel::Left).lost, 2);
    // the right channel never spoke: all silence, same length
    assert_eq!(runs(&r.out.r), vec![(ALAW_SILENCE_FOR_TESTS, 960)]);
}

#[test]
fn sequence_and_timestamp_wrap() {
    let mut r = Rig::new(2000);
    let ts0 = u32::MAX - 400;
    for k in 0..6u16 {
        let seq = 65533u16.wrapping_add(k);
        let ts = ts0.wrapping_add(k as u32 * 160);
        if k != 3 {
            r.send(Channel::Left, k as u64 * 20, seq, ts, val(k));
        }
    }
    r.finish();
    assert_eq!(
        runs(&r.out.l),
        vec![
            (val(0), 160),
            (val(1), 160),
            (val(2), 160),
            (ALAW_SILENCE_FOR_TESTS, 160),
            (val(4), 160),
            (val(5), 160)
        ]
    );
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.lost, c.reanchors, c.late), (1, 0, 0));
}

#[test]
fn second_channel_starting_later_lands_at_its_capture_offset() {
    let mut r = Rig::new(2000);
    for i in 0..100u16 {
        r.send(Channel::Left, i as u64 * 20, i, 5000 + i as u32 * 160, 1);
        if i >= 50 {
            // right starts 1 s later (capture time), with an unrelated timestamp base
            let k = i - 50;
            r.send(Channel::Right, i as u64 * 20, k, 90_000 + k as u32 * 160, 2);
        }
    }
    r.finish();
    assert_eq!(
        runs(&r.out.r),
        vec![(ALAW_SILENCE_FOR_TESTS, 8000), (2, 8000)]
    );
    assert_eq!(runs(&r.out.l), vec![(1, 16000)]);
}

#[test]
fn pause_interval_is_silent() {
    let mut r = Rig::new(2000);
    for i in 0..50u16 {
        if i == 10 {
            r.p.pause(Timestamp(T0 + 200 * MS));
        }
        if i == 30 {
            r.p.resume(Timestamp(T0 + 600 * MS));
        }
        r.send(Channel::Left, i as u64 * 20, i, i as u32 * 160, 1);
        r.send(Channel::Right, i as u64 * 20, i, i as u32 * 160, 2);
    }
    r.finish();
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(runs(&r.out.l), vec![(1, 1600), (s, 3200), (1, 3200)]);
    assert_eq!(runs(&r.out.r), vec![(2, 1600), (s, 3200), (2, 3200)]);
    assert_eq!(
        r.p.pauses(),
        &[(Timestamp(T0 + 200 * MS), Some(Timestamp(T0 + 600 * MS)))]
    );
}

#[test]
fn events_and_unknown_payload_types_are_ignored() {
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 0, 0, 1);
    let ev = rtp(101, 1, 160, 0x1111, &[1, 0, 0, 160]);
    r.p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 20 * MS),
        &ev,
        &mut r.out.sink(),
    );
    let g729 = rtp(18, 2, 160, 0x1111, &[0; 20]);
    r.p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 20 * MS),
        &g729,
        &mut r.out.sink(),
    );
    r.p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 20 * MS),
        &[0x80, 8, 0],
        &mut r.out.sink(),
    );
    r.finish();
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.packets, c.events, c.unknown_pt, c.invalid), (4, 1, 1, 1));
    assert_eq!(runs(&r.out.l), vec![(1, 160)]);
}

#[test]
fn ssrc_change_and_huge_jump_reanchor_on_capture_time() {
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 0, 0, 1);
    // new SSRC 1 s later with a different timestamp base
    let b = rtp(8, 9000, 777_777, 0x2222, &[3; 160]);
    r.p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 1000 * MS),
        &b,
        &mut r.out.sink(),
    );
    // same SSRC, timestamp jumps 40 s ahead, captured 20 ms later
    let b = rtp(8, 9001, 777_777 + 40 * 8000, 0x2222, &[4; 160]);
    r.p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 1020 * MS),
        &b,
        &mut r.out.sink(),
    );
    r.finish();
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(
        runs(&r.out.l),
        vec![(1, 160), (s, 7840), (3, 160), (4, 160)]
    );
    assert_eq!(r.p.counters(Channel::Left).reanchors, 2);
}

#[test]
fn codec_switch_is_transcoded_and_linear_kind_decodes() {
    let both = spec(&[(8, Codec::Pcma), (0, Codec::Pcmu)], None);
    let mut p = Placement::new(
        [both.clone(), both],
        SampleKind::Law(Codec::Pcma),
        PlacementConfig::default(),
    );
    let mut out = Out::default();
    p.place(
        Channel::Left,
        0,
        Timestamp(T0),
        &rtp(8, 0, 0, 1, &[0x12; 160]),
        &mut out.sink(),
    );
    p.place(
        Channel::Left,
        0,
        Timestamp(T0 + 20 * MS),
        &rtp(0, 1, 160, 1, &[0xFF; 160]),
        &mut out.sink(),
    );
    p.flush(&mut out.sink());
    assert_eq!(
        runs(&out.l),
        vec![(0x12, 160), (crate::writer::g711::ALAW_SILENCE, 160)]
    );
    assert_eq!(p.last_codec(Channel::Left), Some(Codec::Pcmu));

    let mut p = Placement::new(
        [pcma(), spec(&[(0, Codec::Pcmu)], None)],
        SampleKind::Linear,
        PlacementConfig::default(),
    );
    let mut out = Out::default();
    p.place(
        Channel::Left,
        0,
        Timestamp(T0),
        &rtp(8, 0, 0, 1, &[0xAA; 160]),
        &mut out.sink(),
    );
    p.place(
        Channel::Right,
        0,
        Timestamp(T0),
        &rtp(0, 0, 0, 2, &[0x80; 160]),
        &mut out.sink(),
    );
    p.flush(&mut out.sink());
    assert_eq!(out.ll, vec![32256; 160]);
    assert_eq!(out.rl, vec![32124; 160]);
}

#[test]
fn long_gap_crosses_the_ring_many_times() {
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 0, 0, 1);
    // 20 s later (below the re-anchor threshold), timestamps agree with capture time
    r.send(Channel::Left, 20_000, 1, 160_000, 2);
    r.finish();
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(runs(&r.out.l), vec![(1, 160), (s, 160_000 - 160), (2, 160)]);
    assert_eq!(r.p.counters(Channel::Left).reanchors, 0);
}

#[test]
fn hostile_capture_times_and_window_do_not_panic() {
    let mut r = Rig::new(u32::MAX);
    r.p.place(
        Channel::Left,
        0,
        Timestamp(u64::MAX),
        &rtp(8, 0, 0, 1, &[1; 160]),
        &mut r.out.sink(),
    );
    r.p.place(
        Channel::Right,
        0,
        Timestamp(0),
        &rtp(8, 0, u32::MAX, 2, &[2; 160]),
        &mut r.out.sink(),
    );
    r.p.place(
        Channel::Left,
        0,
        Timestamp(5),
        &rtp(8, 1, 1 << 31, 1, &[3; 1000]),
        &mut r.out.sink(),
    );
    r.p.pause(Timestamp(0));
    r.p.resume(Timestamp(u64::MAX));
    r.finish();
    assert_eq!(r.out.l.len(), r.out.r.len());
    assert_eq!(r.p.counters(Channel::Left).reanchors, 1);
}

/// Left and right both talk for 100 packets (2 s); left's packet `jump_at` onwards carries
/// timestamps `jump` samples off the sender's clock (same SSRC), capture time unchanged.
fn left_timestamp_jump(jump: i64, jump_at: u16) -> Rig {
    let mut r = Rig::new(2000);
    for i in 0..100u16 {
        let mut ts = 1_000_000 + i as i64 * 160;
        if i >= jump_at {
            ts += jump;
        }
        r.send(Channel::Left, i as u64 * 20, i, ts as u32, 1);
        r.send(Channel::Right, i as u64 * 20, i, 50 + i as u32 * 160, 2);
    }
    r.finish();
    r
}

#[test]
fn timestamp_jump_back_with_same_ssrc_reanchors_instead_of_dropping_the_rest() {
    // 5 s back: before the fix every later left packet was "late" and the call went silent.
    let r = left_timestamp_jump(-5 * 8000, 50);
    let c = r.p.counters(Channel::Left);
    assert_eq!(
        (c.reanchors, c.late),
        (1, 1),
        "one packet held back, then re-anchored"
    );
    let s = ALAW_SILENCE_FOR_TESTS;
    // the held-back packet 50 leaves a 20 ms hole; the rest is where capture time puts it
    assert_eq!(runs(&r.out.l), vec![(1, 50 * 160), (s, 160), (1, 49 * 160)]);
    assert_eq!(runs(&r.out.r), vec![(2, 16000)]);
}

#[test]
fn timestamp_jump_ahead_on_one_channel_does_not_make_the_other_late() {
    // 5 s ahead with capture time going on in 20 ms steps: before the fix the left jump
    // pushed the commit point 5 s ahead and every right packet after it was late.
    let r = left_timestamp_jump(5 * 8000, 50);
    let right = r.p.counters(Channel::Right);
    assert_eq!(right.late, 0);
    assert_eq!(runs(&r.out.r), vec![(2, 16000)]);
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(runs(&r.out.l), vec![(1, 50 * 160), (s, 160), (1, 49 * 160)]);
    assert_eq!(r.p.counters(Channel::Left).reanchors, 1);
}

#[test]
fn small_timestamp_steps_and_jitter_do_not_reanchor() {
    // Talk-spurt gaps whose timestamps agree with capture time, and 150 ms of network
    // jitter, are the sender's clock at work: no re-anchor, nothing held back.
    let mut r = Rig::new(2000);
    for i in 0..200u16 {
        if (60..90).contains(&i) {
            continue; // 600 ms of silence suppression
        }
        let jitter = if i % 5 == 0 { 150 } else { 0 };
        r.send(Channel::Left, i as u64 * 20 + jitter, i, i as u32 * 160, 1);
    }
    r.finish();
    let c = r.p.counters(Channel::Left);
    assert_eq!((c.reanchors, c.late), (0, 0));
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(
        runs(&r.out.l),
        vec![(1, 60 * 160), (s, 30 * 160), (1, 110 * 160)]
    );
}

#[test]
fn one_packet_with_a_wild_capture_time_costs_that_packet_only() {
    let mut r = Rig::new(2000);
    for i in 0..20u16 {
        // packet 10's capture time is damaged: a day late
        let at = if i == 10 { 86_400_000 } else { i as u64 * 20 };
        r.send(Channel::Left, at, i, i as u32 * 160, val(i));
    }
    r.finish();
    let want: Vec<(u8, usize)> = (0..20)
        .filter(|&i| i != 10)
        .map(|i| (val(i), 160))
        .collect::<Vec<_>>();
    let got = runs(&r.out.l);
    // packet 10 is held back (20 ms of silence), nothing else moves
    assert_eq!(got.len(), 20);
    assert_eq!(got[10], (ALAW_SILENCE_FOR_TESTS, 160));
    assert_eq!([&got[..10], &got[11..]].concat(), want);
    let c = r.p.counters(Channel::Left);
    assert_eq!(
        (c.reanchors, c.late, c.lost),
        (0, 1, 0),
        "held back: late, not lost"
    );
}

#[test]
fn first_packet_of_a_channel_with_a_wild_capture_time_is_bounded() {
    // Before the fix, a right channel whose first capture time was 10 years off wrote
    // 10 years of silence (the test never finished). Now the anchor is at most
    // MAX_LEAP_SAMPLES past the newest audio, so the damage is bounded.
    let mut r = Rig::new(2000);
    let year_ms = 365 * 86_400_000u64;
    for i in 0..50u16 {
        r.send(Channel::Left, i as u64 * 20, i, i as u32 * 160, 1);
        let at = if i == 0 { 10 * year_ms } else { i as u64 * 20 };
        r.send(Channel::Right, at, i, i as u32 * 160, 2);
    }
    r.finish();
    let n = r.out.l.len() as i64;
    assert!(
        n > MAX_LEAP_SAMPLES && n <= MAX_LEAP_SAMPLES + 8000,
        "{n} samples"
    );
    assert_eq!(&r.out.l[..160], &[1; 160][..]);
}

#[test]
fn a_stream_whose_second_packet_arrives_first_keeps_its_first_packet() {
    // Before the fix packet 0 landed before the start of the timeline and was dropped late.
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 1, 1160, val(1));
    r.send(Channel::Left, 5, 0, 1000, val(0));
    r.send(Channel::Right, 10, 70, 9000, 200);
    for i in 2..10u16 {
        r.send(
            Channel::Left,
            i as u64 * 20,
            i,
            1000 + i as u32 * 160,
            val(i),
        );
        r.send(
            Channel::Right,
            i as u64 * 20,
            70 + i - 1,
            9000 + (i as u32 - 1) * 160,
            200,
        );
    }
    r.finish();
    let s = ALAW_SILENCE_FOR_TESTS;
    let mut want: Vec<(u8, usize)> = (0..10).map(|i| (val(i), 160)).collect();
    want.push((s, 80)); // the right stream runs 80 samples longer
    assert_eq!(runs(&r.out.l), want);
    assert_eq!(r.p.counters(Channel::Left).late, 0);
    // The right stream's first packet was captured 10 ms after left's packet 1, which is
    // sample 160 of the timeline once packet 0 went in front: 160 + 80.
    assert_eq!(runs(&r.out.r), vec![(s, 240), (200, 9 * 160)]);
}

#[test]
fn random_streams_never_panic_and_keep_the_channels_equal() {
    // xorshift: deterministic, so a failure names its round.
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n.max(1)
    };
    for round in 0..150 {
        let window = [1, 160, 2000, 80_000][rnd(4) as usize];
        let kind = [
            SampleKind::Law(Codec::Pcma),
            SampleKind::Law(Codec::Pcmu),
            SampleKind::Linear,
        ][rnd(3) as usize];
        let both = spec(&[(8, Codec::Pcma), (0, Codec::Pcmu)], Some(101));
        let mut p = Placement::new(
            [both.clone(), both],
            kind,
            PlacementConfig {
                window_samples: window,
            },
        );
        let mut out = Out::default();
        let (mut seq, mut ts, mut at) = ([rnd(65536) as u16; 2], [rnd(1 << 32) as u32; 2], T0);
        for _ in 0..200 {
            let ch = rnd(2) as usize;
            // mostly a steady 20 ms stream, sometimes anything
            match rnd(20) {
                0 => seq[ch] = rnd(65536) as u16,
                1 => ts[ch] = rnd(1 << 32) as u32,
                2 => at = at.wrapping_add(rnd(1 << 36)),
                3 => at = at.saturating_sub(rnd(1 << 34)),
                4 => p.pause(Timestamp(at)),
                5 => p.resume(Timestamp(at)),
                _ => {}
            }
            seq[ch] = seq[ch].wrapping_add(1 + (rnd(4) == 0) as u16);
            ts[ch] = ts[ch].wrapping_add(160);
            at = at.wrapping_add(rnd(40) * MS);
            let len = [0, 1, 160, 1012][rnd(4) as usize];
            let pt = [8, 0, 101, 18][rnd(4) as usize];
            let ssrc = if rnd(50) == 0 {
                rnd(3) as u32
            } else {
                ch as u32
            };
            let b = rtp(pt, seq[ch], ts[ch], ssrc, &vec![0x33; len]);
            let c = if ch == 0 {
                Channel::Left
            } else {
                Channel::Right
            };
            // mostly source 0; sometimes another party (mixed), sometimes out of range
            let source = [0, 0, 0, 1, 3, 4][rnd(6) as usize];
            p.place(c, source, Timestamp(at), &b, &mut out.sink());
        }
        p.flush(&mut out.sink());
        assert_eq!(out.l.len(), out.r.len(), "round {round}");
        assert_eq!(out.ll.len(), out.rl.len(), "round {round}");
        let n = (out.l.len() + out.ll.len()) as i64;
        assert_eq!(n, p.committed(), "round {round}");
    }
}
