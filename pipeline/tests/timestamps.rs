//! Capture-clock arithmetic on any u64 a damaged capture can hold: never a panic (debug
//! builds check overflow), and the sign is always right.

use callrec_pipeline::Timestamp;

#[test]
fn nanos_since_saturates_instead_of_overflowing() {
    // Before: `self.0 as i64 - earlier.0 as i64` panicked here in debug builds (and gave a
    // wrong sign in release) once a pcapng timestamp had its top bit set.
    let high = Timestamp(1 << 63);
    let now = Timestamp(1_700_000_000_000_000_000);
    assert_eq!(now.nanos_since(high), -(((1u64 << 63) - now.0) as i64));
    assert_eq!(Timestamp(0).nanos_since(Timestamp(u64::MAX)), i64::MIN);
    assert_eq!(Timestamp(u64::MAX).nanos_since(Timestamp(0)), i64::MAX);
    assert_eq!(high.nanos_since(now), ((1u64 << 63) - now.0) as i64);
    assert_eq!(now.nanos_since(now), 0);
}
