//! pcapng: a sequence of blocks; sections (SHB) set the byte order, interface blocks (IDB) the
//! link type and timestamp resolution of the packet blocks (EPB, SPB, OPB) that name them.

use super::{frame, link_type_from_pcap, rd_u16, rd_u32, Damage, Step, TsRes};
use crate::port::LinkType;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

#[derive(Clone, Copy, Debug)]
struct Iface {
    link: Option<LinkType>,
    res: TsRes,
    offset_s: i64,
}

/// Cursor over the blocks of a pcapng file.
pub(crate) struct Reader {
    big: bool,
    pos: usize,
    /// Interfaces of the current section; grows only on IDBs, never per packet.
    ifaces: Vec<Iface>,
    /// SPBs carry no timestamp: they get the last one seen.
    last_ts: u64,
}

impl Reader {
    /// Checks the first section header; the cursor stays on it.
    pub(crate) fn new(b: &[u8]) -> Result<Reader, &'static str> {
        if b.len() < 12 {
            return Err("the pcapng section header is cut short");
        }
        let big =
            section_order(b, 0).ok_or("the pcapng section header has a wrong byte-order magic")?;
        Ok(Reader {
            big,
            pos: 0,
            ifaces: Vec::new(),
            last_ts: 0,
        })
    }

    /// Reads the block at the cursor.
    #[inline]
    pub(crate) fn next<'a>(&mut self, b: &'a [u8]) -> Step<'a> {
        let at = self.pos;
        if at == b.len() {
            return Step::End;
        }
        let Some(kind) = rd_u32(b, at, self.big) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        if kind == SHB {
            if b.len() < at + 12 {
                return Step::Damaged(Damage::Truncated { at });
            }
            match section_order(b, at) {
                Some(big) => self.big = big,
                None => {
                    return Step::Damaged(Damage::Corrupt {
                        at,
                        what: "section header with a wrong byte-order magic",
                    })
                }
            }
            self.ifaces.clear();
        }
        let Some(total) = rd_u32(b, at + 4, self.big) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        let total = total as usize;
        if total < 12 || !total.is_multiple_of(4) {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "block length below 12 or not a multiple of 4",
            });
        }
        let Some(end) = at.checked_add(total).filter(|&e| e <= b.len()) else {
            return Step::Damaged(Damage::Truncated { at });
        };
        if rd_u32(b, end - 4, self.big) != Some(total as u32) {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "block lengths at start and end disagree",
            });
        }
        let body = &b[at + 8..end - 4];
        self.pos = end;
        match kind {
            SHB => Step::Skip { unsupported: false },
            IDB => self.interface(body, at),
            EPB => self.packet(body, at, 4),
            OPB => self.packet(body, at, 2),
            SPB => {
                let (Some(iface), Some(orig)) =
                    (self.ifaces.first().copied(), rd_u32(body, 0, self.big))
                else {
                    return Step::Damaged(Damage::Corrupt {
                        at,
                        what: "simple packet block before any interface",
                    });
                };
                let data = &body[4..];
                let data = &data[..data.len().min(orig as usize)];
                match iface.link {
                    Some(link) => Step::Frame(frame(self.last_ts, link, data)),
                    None => Step::Skip { unsupported: true },
                }
            }
            _ => Step::Skip { unsupported: false },
        }
    }

    fn interface<'a>(&mut self, body: &[u8], at: usize) -> Step<'a> {
        let Some(linktype) = rd_u16(body, 0, self.big) else {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "interface block too short",
            });
        };
        let mut iface = Iface {
            link: link_type_from_pcap(linktype as u32),
            res: TsRes::Dec(6),
            offset_s: 0,
        };
        let mut opt = 8;
        while let (Some(code), Some(len)) =
            (rd_u16(body, opt, self.big), rd_u16(body, opt + 2, self.big))
        {
            let Some(val) = body.get(opt + 4..opt + 4 + len as usize) else {
                break;
            };
            match (code, val) {
                (OPT_END, _) => break,
                (OPT_IF_TSRESOL, [r]) => {
                    // Clamped so the conversion cannot overflow its power; such files are bogus anyway.
                    iface.res = if r & 0x80 != 0 {
                        TsRes::Bin((r & 0x7f).min(63))
                    } else {
                        TsRes::Dec((*r).min(19))
                    };
                }
                (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                    let raw = if self.big {
                        i64::from_be_bytes(v.try_into().unwrap_or([0; 8]))
                    } else {
                        i64::from_le_bytes(v.try_into().unwrap_or([0; 8]))
                    };
                    iface.offset_s = raw;
                }
                _ => {}
            }
            opt += 4 + (len as usize).next_multiple_of(4);
        }
        self.ifaces.push(iface);
        Step::Skip { unsupported: false }
    }

    /// EPB (`id_len` 4) or obsolete packet block (`id_len` 2, followed by a 2-byte drop count).
    #[inline]
    fn packet<'a>(&mut self, body: &'a [u8], at: usize, id_len: usize) -> Step<'a> {
        let id = if id_len == 4 {
            rd_u32(body, 0, self.big)
        } else {
            rd_u16(body, 0, self.big).map(u32::from)
        };
        let (Some(id), Some(hi), Some(lo), Some(caplen)) = (
            id,
            rd_u32(body, 4, self.big),
            rd_u32(body, 8, self.big),
            rd_u32(body, 12, self.big),
        ) else {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "packet block too short",
            });
        };
        let Some(data) = body.get(20..20 + caplen as usize) else {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "captured length larger than its block",
            });
        };
        let Some(iface) = self.ifaces.get(id as usize) else {
            return Step::Damaged(Damage::Corrupt {
                at,
                what: "packet of an interface never described",
            });
        };
        let Some(link) = iface.link else {
            return Step::Skip { unsupported: true };
        };
        let ns = iface.res.to_ns(((hi as u64) << 32) | lo as u64);
        let ts = ns.saturating_add_signed(iface.offset_s.saturating_mul(1_000_000_000));
        self.last_ts = ts;
        Step::Frame(frame(ts, link, data))
    }
}

/// Byte order of the section header at `at` (true = big endian), from its byte-order magic.
fn section_order(b: &[u8], at: usize) -> Option<bool> {
    [false, true]
        .into_iter()
        .find(|&big| rd_u32(b, at + 8, big) == Some(BYTE_ORDER_MAGIC))
}
