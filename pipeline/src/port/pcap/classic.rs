//! Classic pcap: a 24-byte file header, then records of header + captured bytes.

use super::{frame, link_type_from_pcap, rd_u32, Damage, Step, TsRes};
use crate::port::LinkType;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Kuznetzov's patched libpcap: microseconds, 8 more bytes per record header.
const MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
const FILE_HEADER: usize = 24;
/// Larger than any snap length libpcap picks by default; a record claiming more than this and
/// more than the file's snap length is taken as corrupt rather than trusted.
const MAX_SANE_CAPLEN: u32 = 262_144;

/// Cursor over the records of a classic pcap.
pub(crate) struct Reader {
    big: bool,
    res: TsRes,
    rec_header: usize,
    linktype: u32,
    link: Option<LinkType>,
    max_caplen: u32,
    pos: usize,
}

impl Reader {
    /// `None` if `b` does not start with a pcap magic; `Some(Err)` if the header is unusable.
    pub(crate) fn new(b: &[u8]) -> Option<Result<Reader, &'static str>> {
        let (big, magic) = [false, true]
            .into_iter()
            .map(|big| (big, rd_u32(b, 0, big).unwrap_or(0)))
            .find(|(_, m)| matches!(*m, MAGIC_US | MAGIC_NS | MAGIC_MODIFIED))?;
        if b.len() < FILE_HEADER {
            return Some(Err("the 24-byte pcap file header is cut short"));
        }
        let snaplen = rd_u32(b, 16, big).unwrap_or(0);
        // The upper bits carry FCS-length flags, not the link type.
        let linktype = rd_u32(b, 20, big).unwrap_or(0) & 0xffff;
        Some(Ok(Reader {
            big,
            res: if magic == MAGIC_NS {
                TsRes::Dec(9)
            } else {
                TsRes::Dec(6)
            },
            rec_header: if magic == MAGIC_MODIFIED { 24 } else { 16 },
            linktype,
            link: link_type_from_pcap(linktype),
            max_caplen: snaplen.max(MAX_SANE_CAPLEN),
            pos: FILE_HEADER,
        }))
    }

    /// The file's framing, `None` if unsupported.
    pub(crate) fn link(&self) -> Option<LinkType> {
        self.link
    }

    /// The file's LINKTYPE_ value.
    pub(crate) fn linktype_raw(&self) -> u32 {
        self.linktype
    }

    /// Reads the record at the cursor.
    #[inline]
    pub(crate) fn next<'a>(&mut self, b: &'a [u8]) -> Step<'a> {
        let at = self.pos;
        if at == b.len() {
            return Step::End;
        }
        let Some(hdr) = b.get(at..).filter(|r| r.len() >= self.rec_header) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        let (Some(sec), Some(frac), Some(caplen)) = (
            rd_u32(hdr, 0, self.big),
            rd_u32(hdr, 4, self.big),
            rd_u32(hdr, 8, self.big),
        ) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        if caplen > self.max_caplen {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "captured length larger than any snap length",
            });
        }
        let start = at + self.rec_header;
        let Some(data) = b.get(start..start + caplen as usize) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        self.pos = start + caplen as usize;
        let Some(link) = self.link else {
            return Step::Skip { unsupported: true };
        };
        let ts = (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(self.res.to_ns(frac as u64));
        Step::Frame(frame(ts, link, data))
    }
}
