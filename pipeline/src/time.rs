//! The capture clock: every part of callrec that needs "now" is handed one of these.
//!
//! Why not `std::time::Instant`: in replay the clock is the capture's own timestamps, and the
//! sidecar reports wall-clock start/stop times; an opaque `Instant` can carry neither. Sans-IO
//! cores take a `Timestamp` as input and never read a clock themselves.

/// Nanoseconds since the Unix epoch, on the capture clock (the packet's capture time).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From seconds and nanoseconds (the pcap record header form).
    pub const fn from_parts(secs: u64, nanos: u64) -> Self {
        Timestamp(secs * 1_000_000_000 + nanos)
    }
    /// Seconds since the epoch, as f64, for humans and JSON.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Nanoseconds from `earlier` to `self`, negative if `self` is earlier; saturates at the
    /// ends of `i64` (a damaged capture can hold any u64).
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        (self.0 as i128 - earlier.0 as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
    /// RFC 3339 UTC with millisecond precision (`2026-11-25T23:15:58.123Z`).
    pub fn rfc3339_millis(self) -> String {
        humantime::format_rfc3339_millis(self.system_time()).to_string()
    }
    /// RFC 3339 UTC with nanosecond precision (`2026-11-25T23:15:58.123456789Z`).
    pub fn rfc3339_nanos(self) -> String {
        humantime::format_rfc3339_nanos(self.system_time()).to_string()
    }
    fn system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.0)
    }
    /// This time moved forward by `nanos`.
    pub fn plus_nanos(self, nanos: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }
}
