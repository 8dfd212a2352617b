//! ConnectionIDs: the CTI name of a call, 16 lower-case hex digits, assigned when the call
//! tracker first sees the call and stable for its life.
//!
//! An id is `splitmix64(seed + n)` for the n-th call: the finalizer is a bijection, so ids
//! never repeat within a run, and a per-run seed keeps two runs from handing out the same ids
//! while tests (fixed seed) stay deterministic.

/// Hands out ConnectionIDs.
#[derive(Debug, Clone)]
pub struct ConnectionIds {
    seed: u64,
    next: u64,
}

impl ConnectionIds {
    /// A generator with this seed.
    pub fn new(seed: u64) -> ConnectionIds {
        ConnectionIds { seed, next: 0 }
    }

    /// A generator seeded from a per-run label (the conf-id prefix): FNV-1a of its bytes.
    pub fn from_label(label: &str) -> ConnectionIds {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        ConnectionIds::new(h)
    }

    /// The next ConnectionID.
    pub fn next_id(&mut self) -> String {
        let x = splitmix64(self.seed.wrapping_add(self.next));
        self.next = self.next.wrapping_add(1);
        format!("{x:016x}")
    }
}

/// The splitmix64 output function (a bijection on u64).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A ConnectionID as a client may spell it, in the form the core keys calls by.
pub fn normalize(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_16_lower_hex_unique_and_deterministic() {
        let mut g = ConnectionIds::from_label("callrec");
        let ids: Vec<String> = (0..10_000).map(|_| g.next_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        }
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let mut again = ConnectionIds::from_label("callrec");
        assert_eq!(again.next_id(), ids[0]);
        // another run label, other ids
        assert_ne!(ConnectionIds::from_label("callrec-2").next_id(), ids[0]);
        // zero seed still gives a mixed id, not 0000000000000000
        assert_ne!(ConnectionIds::new(0).next_id(), "0000000000000000");
    }

    #[test]
    fn normalize_accepts_upper_case_and_spaces() {
        assert_eq!(normalize(" 00A1B2C3D4E5F607 "), "00a1b2c3d4e5f607");
    }
}
