//! The RTP header view (RFC 3550 section 5.1): a zero-copy borrow of one packet's bytes.
//!
//! Written by hand, not taken from a crate: the writer needs only these accessors on a
//! borrowed slice, and the RTP crates we looked at (rtp, webrtc-rtp) parse into owned
//! `Bytes`-backed structs, which would allocate per packet on the hot path.

use thiserror::Error;

/// Why a UDP payload is not a usable RTP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed 12-byte header.
    #[error("RTP packet of {0} bytes is shorter than the 12-byte fixed header")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The CSRC list or the header extension runs past the end of the packet.
    #[error("RTP header (CSRC list or extension) runs past the end of the packet")]
    HeaderOverrun,
    /// The padding count is zero or larger than what follows the header.
    #[error("RTP padding length is invalid")]
    BadPadding,
}

mod field {
    pub const FIXED_LEN: usize = 12;
    pub const SEQ: core::ops::Range<usize> = 2..4;
    pub const TIMESTAMP: core::ops::Range<usize> = 4..8;
    pub const SSRC: core::ops::Range<usize> = 8..12;
}

/// A checked view of an RTP packet. Once built by [`RtpPacket::new_checked`], no accessor
/// panics and `payload()` is exactly the media bytes (CSRCs, extension and padding removed).
#[derive(Clone, Copy, Debug)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Checks `buf` and returns the view, or why it is not RTP.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < field::FIXED_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let b0 = buf[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = (b0 & 0x0F) as usize;
        let mut start = field::FIXED_LEN + 4 * csrc_count;
        if start > buf.len() {
            return Err(RtpError::HeaderOverrun);
        }
        if b0 & 0x10 != 0 {
            // Extension: 16-bit profile id, 16-bit length in 32-bit words, then the words.
            let ext = buf.get(start..start + 4).ok_or(RtpError::HeaderOverrun)?;
            let words = u16::from_be_bytes([ext[2], ext[3]]) as usize;
            start += 4 + 4 * words;
            if start > buf.len() {
                return Err(RtpError::HeaderOverrun);
            }
        }
        let mut end = buf.len();
        if b0 & 0x20 != 0 {
            let pad = buf[end - 1] as usize;
            if pad == 0 || pad > end - start {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket { buf, payload_start: start, payload_end: end })
    }

    /// Number of CSRC identifiers.
    pub fn csrc_count(&self) -> u8 {
        self.buf[0] & 0x0F
    }
    /// The extension bit.
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }
    /// The padding bit.
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }
    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }
    /// The payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }
    /// The sequence number.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.buf[field::SEQ.start], self.buf[field::SEQ.start + 1]])
    }
    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        let t = &self.buf[field::TIMESTAMP];
        u32::from_be_bytes([t[0], t[1], t[2], t[3]])
    }
    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        let s = &self.buf[field::SSRC];
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    }
    /// The media bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // V=2, no P/X/CC, M=1 PT=8, seq 0x1234, ts 0xDEADBEEF, ssrc 0x01020304, payload 3 bytes
    const BASIC: [u8; 15] =
        [0x80, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xD5, 0xD4, 0x55];

    #[test]
    fn parses_fixed_header() {
        let p = RtpPacket::new_checked(&BASIC).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.seq(), 0x1234);
        assert_eq!(p.timestamp(), 0xDEADBEEF);
        assert_eq!(p.ssrc(), 0x01020304);
        assert_eq!(p.payload(), &[0xD5, 0xD4, 0x55]);
        assert_eq!(p.csrc_count(), 0);
        assert!(!p.has_extension() && !p.has_padding());
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        for n in 0..12 {
            assert_eq!(RtpPacket::new_checked(&BASIC[..n]).unwrap_err(), RtpError::TooShort(n));
        }
        let mut v1 = BASIC;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::new_checked(&v1).unwrap_err(), RtpError::BadVersion(1));
    }

    #[test]
    fn header_only_has_empty_payload() {
        let p = RtpPacket::new_checked(&BASIC[..12]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn skips_csrcs_and_extension() {
        // CC=1, X=1: 12 + 4 (csrc) + 4 (ext hdr, 1 word) + 4 (ext word) then payload
        let mut b = vec![0x91, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0xAA; 4]); // csrc
        b.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 1, 2, 3, 4]); // extension
        b.extend_from_slice(&[0xFF, 0x7F]);
        let p = RtpPacket::new_checked(&b).unwrap();
        assert_eq!(p.csrc_count(), 1);
        assert!(p.has_extension());
        assert_eq!(p.payload(), &[0xFF, 0x7F]);
        // extension length pointing past the end
        let mut bad = b.clone();
        bad[19] = 9;
        assert_eq!(RtpPacket::new_checked(&bad).unwrap_err(), RtpError::HeaderOverrun);
        // CSRC count larger than the packet
        let mut bad = BASIC;
        bad[0] = 0x8F;
        assert_eq!(RtpPacket::new_checked(&bad).unwrap_err(), RtpError::HeaderOverrun);
        // extension bit set but no room for the extension header
        let mut bad = BASIC;
        bad[0] = 0x90;
        assert_eq!(RtpPacket::new_checked(&bad).unwrap_err(), RtpError::HeaderOverrun);
    }

    #[test]
    fn strips_padding_and_rejects_bad_padding() {
        let mut b = BASIC.to_vec();
        b[0] |= 0x20;
        b.extend_from_slice(&[0, 0, 3]);
        let p = RtpPacket::new_checked(&b).unwrap();
        assert_eq!(p.payload(), &[0xD5, 0xD4, 0x55]);
        let last = b.len() - 1;
        b[last] = 0;
        assert_eq!(RtpPacket::new_checked(&b).unwrap_err(), RtpError::BadPadding);
        b[last] = 7; // more than the 6 bytes after the header
        assert_eq!(RtpPacket::new_checked(&b).unwrap_err(), RtpError::BadPadding);
    }
}
