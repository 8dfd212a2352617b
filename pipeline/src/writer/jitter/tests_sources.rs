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
