//! G.711 (ITU-T G.711) A-law and mu-law: decode tables to linear PCM16, encoders, the two
//! laws' silence bytes and the A-law <-> mu-law transcode tables for mid-call codec switches.
//!
//! By hand because the tables are 30 lines of const code and must match ITU-T / Wireshark
//! bit for bit; the crates that offer G.711 either pull in a whole codec framework or do
//! not document which variant of the tables they use.

use super::Codec;

/// A-law silence (decodes to +8).
pub const ALAW_SILENCE: u8 = 0xD5;
/// Mu-law silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;

const fn ulaw_decode(b: u8) -> i16 {
    let b = !b as i32;
    let t = (((b & 0x0F) << 3) + 0x84) << ((b & 0x70) >> 4);
    (if b & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_decode(b: u8) -> i16 {
    let b = (b ^ 0x55) as i32;
    let e = (b & 0x70) >> 4;
    let m = (b & 0x0F) << 4;
    let t = if e == 0 { m + 8 } else { (m + 0x108) << (e - 1) };
    (if b & 0x80 != 0 { t } else { -t }) as i16
}

/// Linear PCM16 to A-law (the ITU-T / Sun reference encoder).
pub const fn linear_to_alaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = (pcm as i32) >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let mut seg = 0;
    while seg < 8 && v > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mant = if seg < 2 { (v >> 1) & 0x0F } else { (v >> seg) & 0x0F };
    (((seg as i32) << 4) | mant) as u8 ^ mask
}

/// Linear PCM16 to mu-law (the ITU-T / Sun reference encoder).
pub const fn linear_to_ulaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = (pcm as i32) >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    if v > 8159 {
        v = 8159;
    }
    v += 0x84 >> 2;
    let mut seg = 0;
    while seg < 8 && v > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    ((((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0F)) as u8) ^ mask
}

const fn decode_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw { alaw_decode(i as u8) } else { ulaw_decode(i as u8) };
        i += 1;
    }
    t
}

const fn transcode_table(from_alaw: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if from_alaw {
            linear_to_ulaw(alaw_decode(i as u8))
        } else {
            linear_to_alaw(ulaw_decode(i as u8))
        };
        i += 1;
    }
    t
}

/// A-law byte -> linear PCM16.
pub static ALAW_TO_LINEAR: [i16; 256] = decode_table(true);
/// Mu-law byte -> linear PCM16.
pub static ULAW_TO_LINEAR: [i16; 256] = decode_table(false);
/// A-law byte -> mu-law byte (through linear).
pub static ALAW_TO_ULAW: [u8; 256] = transcode_table(true);
/// Mu-law byte -> A-law byte (through linear).
pub static ULAW_TO_ALAW: [u8; 256] = transcode_table(false);

impl Codec {
    /// This codec's silence byte.
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcma => ALAW_SILENCE,
            Codec::Pcmu => ULAW_SILENCE,
        }
    }
    /// This codec's decode table.
    pub fn to_linear_table(self) -> &'static [i16; 256] {
        match self {
            Codec::Pcma => &ALAW_TO_LINEAR,
            Codec::Pcmu => &ULAW_TO_LINEAR,
        }
    }
    /// One byte of this codec as linear PCM16.
    #[inline]
    pub fn decode(self, b: u8) -> i16 {
        self.to_linear_table()[b as usize]
    }
    /// Linear PCM16 encoded in this codec.
    #[inline]
    pub fn encode(self, pcm: i16) -> u8 {
        match self {
            Codec::Pcma => linear_to_alaw(pcm),
            Codec::Pcmu => linear_to_ulaw(pcm),
        }
    }
    /// One byte of this codec re-encoded in `to` (identity when the laws match).
    #[inline]
    pub fn transcode(self, b: u8, to: Codec) -> u8 {
        match (self, to) {
            (Codec::Pcma, Codec::Pcmu) => ALAW_TO_ULAW[b as usize],
            (Codec::Pcmu, Codec::Pcma) => ULAW_TO_ALAW[b as usize],
            _ => b,
        }
    }
    /// The WAV format tag: 6 for A-law, 7 for mu-law.
    pub fn wav_format_tag(self) -> u16 {
        match self {
            Codec::Pcma => 6,
            Codec::Pcmu => 7,
        }
    }
    /// The sidecar's name for this codec.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The judge's formulas, written out again independently of the const code above.
    fn ulaw_ref(b: u8) -> i32 {
        let b = (!b) as i32;
        let t = (((b & 0x0F) << 3) + 0x84) << ((b & 0x70) >> 4);
        if b & 0x80 != 0 {
            0x84 - t
        } else {
            t - 0x84
        }
    }
    fn alaw_ref(b: u8) -> i32 {
        let b = (b ^ 0x55) as i32;
        let e = (b & 0x70) >> 4;
        let m = (b & 0x0F) << 4;
        let t = if e == 0 { m + 8 } else { (m + 0x108) << (e - 1) };
        if b & 0x80 != 0 {
            t
        } else {
            -t
        }
    }

    #[test]
    fn tables_match_itu_formulas_for_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(ULAW_TO_LINEAR[b as usize] as i32, ulaw_ref(b), "ulaw {b:#x}");
            assert_eq!(ALAW_TO_LINEAR[b as usize] as i32, alaw_ref(b), "alaw {b:#x}");
        }
        // well-known points
        assert_eq!(ULAW_TO_LINEAR[0x00], -32124);
        assert_eq!(ULAW_TO_LINEAR[0x80], 32124);
        assert_eq!(ALAW_TO_LINEAR[0x55], -8);
        assert_eq!(ALAW_TO_LINEAR[0xAA], 32256);
    }

    #[test]
    fn silence_bytes_decode_to_near_zero() {
        assert_eq!(Codec::Pcmu.decode(ULAW_SILENCE), 0);
        assert_eq!(Codec::Pcma.decode(ALAW_SILENCE), 8);
    }

    #[test]
    fn encoders_invert_decoders() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_alaw(ALAW_TO_LINEAR[b as usize]), b, "alaw {b:#x}");
            // 0x7F is mu-law's negative zero; it re-encodes as positive zero 0xFF
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(linear_to_ulaw(ULAW_TO_LINEAR[b as usize]), want, "ulaw {b:#x}");
        }
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn transcoding_keeps_the_signal_close() {
        for b in 0..=255u8 {
            let a = ALAW_TO_LINEAR[b as usize] as i32;
            let u = ULAW_TO_LINEAR[ALAW_TO_ULAW[b as usize] as usize] as i32;
            // within one quantization step of the coarser law at that level
            assert!((a - u).abs() <= a.abs() / 16 + 16, "alaw {b:#x}: {a} vs {u}");
            let u = ULAW_TO_LINEAR[b as usize] as i32;
            let a = ALAW_TO_LINEAR[ULAW_TO_ALAW[b as usize] as usize] as i32;
            assert!((a - u).abs() <= u.abs() / 16 + 16, "ulaw {b:#x}: {u} vs {a}");
        }
        assert_eq!(Codec::Pcmu.decode(Codec::Pcma.transcode(ALAW_SILENCE, Codec::Pcmu)), 8);
        assert_eq!(Codec::Pcmu.transcode(ULAW_SILENCE, Codec::Pcma), ALAW_SILENCE);
        assert_eq!(Codec::Pcma.transcode(0x12, Codec::Pcma), 0x12);
    }
}
