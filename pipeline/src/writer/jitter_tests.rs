//! Placement buffer tests: scripted packet sequences against the exact samples expected out.

use super::*;

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn spec(pts: &[(u8, Codec)], event: Option<u8>) -> ChannelSpec {
    let mut payload_types = heapless::Vec::new();
    for p in pts {
        payload_types.push(*p).unwrap();
    }
    ChannelSpec { payload_types, event_pt: event }
}

fn pcma() -> ChannelSpec {
    spec(&[(8, Codec::Pcma)], Some(101))
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, pt];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Collects committed audio.
#[derive(Default)]
struct Out {
    l: Vec<u8>,
    r: Vec<u8>,
    ll: Vec<i16>,
    rl: Vec<i16>,
}

impl Out {
    fn sink(&mut self) -> impl FnMut(Frames<'_>) + '_ {
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

struct Rig {
    p: Placement,
    out: Out,
}

impl Rig {
    fn new(window: u32) -> Self {
        let cfg = PlacementConfig { window_samples: window };
        Rig {
            p: Placement::new([pcma(), pcma()], SampleKind::Law(Codec::Pcma), cfg),
            out: Out::default(),
        }
    }
    /// Packet `seq` of a 20 ms stream whose byte value is `fill`, captured at `at_ms`.
    fn send(&mut self, ch: Channel, at_ms: u64, seq: u16, ts: u32, fill: u8) {
        let b = rtp(8, seq, ts, 0x1111 + ch.index() as u32, &[fill; 160]);
        self.p.place(ch, Timestamp(T0 + at_ms * MS), &b, &mut self.out.sink());
    }
    fn finish(&mut self) {
        self.p.flush(&mut self.out.sink());
    }
}

/// Byte value of packet `i`, never the silence byte.
fn val(i: u16) -> u8 {
    (i % 100) as u8 + 1
}

fn runs(v: &[u8]) -> Vec<(u8, usize)> {
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
        r.send(Channel::Left, i as u64 * 20, i, 1000 + i as u32 * 160, val(i));
        r.send(Channel::Right, i as u64 * 20, 500 + i, 7 + i as u32 * 160, val(i) + 100);
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

const ALAW_SILENCE_FOR_TESTS: u8 = crate::writer::g711::ALAW_SILENCE;

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
    assert_eq!(runs(&r.out.r), vec![(ALAW_SILENCE_FOR_TESTS, 8000), (2, 8000)]);
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
    assert_eq!(r.p.pauses(), &[(Timestamp(T0 + 200 * MS), Some(Timestamp(T0 + 600 * MS)))]);
}

#[test]
fn events_and_unknown_payload_types_are_ignored() {
    let mut r = Rig::new(2000);
    r.send(Channel::Left, 0, 0, 0, 1);
    let ev = rtp(101, 1, 160, 0x1111, &[1, 0, 0, 160]);
    r.p.place(Channel::Left, Timestamp(T0 + 20 * MS), &ev, &mut r.out.sink());
    let g729 = rtp(18, 2, 160, 0x1111, &[0; 20]);
    r.p.place(Channel::Left, Timestamp(T0 + 20 * MS), &g729, &mut r.out.sink());
    r.p.place(Channel::Left, Timestamp(T0 + 20 * MS), &[0x80, 8, 0], &mut r.out.sink());
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
    r.p.place(Channel::Left, Timestamp(T0 + 1000 * MS), &b, &mut r.out.sink());
    // same SSRC, timestamp jumps 40 s ahead, captured 20 ms later
    let b = rtp(8, 9001, 777_777 + 40 * 8000, 0x2222, &[4; 160]);
    r.p.place(Channel::Left, Timestamp(T0 + 1020 * MS), &b, &mut r.out.sink());
    r.finish();
    let s = ALAW_SILENCE_FOR_TESTS;
    assert_eq!(runs(&r.out.l), vec![(1, 160), (s, 7840), (3, 160), (4, 160)]);
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
    p.place(Channel::Left, Timestamp(T0), &rtp(8, 0, 0, 1, &[0x12; 160]), &mut out.sink());
    p.place(
        Channel::Left,
        Timestamp(T0 + 20 * MS),
        &rtp(0, 1, 160, 1, &[0xFF; 160]),
        &mut out.sink(),
    );
    p.flush(&mut out.sink());
    assert_eq!(runs(&out.l), vec![(0x12, 160), (crate::writer::g711::ALAW_SILENCE, 160)]);
    assert_eq!(p.last_codec(Channel::Left), Some(Codec::Pcmu));

    let mut p = Placement::new(
        [pcma(), spec(&[(0, Codec::Pcmu)], None)],
        SampleKind::Linear,
        PlacementConfig::default(),
    );
    let mut out = Out::default();
    p.place(Channel::Left, Timestamp(T0), &rtp(8, 0, 0, 1, &[0xAA; 160]), &mut out.sink());
    p.place(Channel::Right, Timestamp(T0), &rtp(0, 0, 0, 2, &[0x80; 160]), &mut out.sink());
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
    r.p.place(Channel::Left, Timestamp(u64::MAX), &rtp(8, 0, 0, 1, &[1; 160]), &mut r.out.sink());
    r.p.place(Channel::Right, Timestamp(0), &rtp(8, 0, u32::MAX, 2, &[2; 160]), &mut r.out.sink());
    r.p.place(Channel::Left, Timestamp(5), &rtp(8, 1, 1 << 31, 1, &[3; 1000]), &mut r.out.sink());
    r.p.pause(Timestamp(0));
    r.p.resume(Timestamp(u64::MAX));
    r.finish();
    assert_eq!(r.out.l.len(), r.out.r.len());
    assert_eq!(r.p.counters(Channel::Left).reanchors, 1);
}
