//! Capture-file port: reads classic pcap and pcapng files, memory-mapped, zero-copy, in bursts.
//!
//! Frames borrow straight from the mapping, so a burst costs no allocation and no copy. A file
//! that ends mid-record (a capture cut while being written) or that carries a nonsensical length
//! ends the stream cleanly: the packets before the damage are delivered and [`CaptureFile::truncated`]
//! says what happened in one sentence.
//!
//! Link types: Ethernet (1), Linux SLL (113), SLL2 (276), raw IP (101, 12, 14), IPv4 (228),
//! IPv6 (229), NULL (0) and LOOP (108) map to [`LinkType`]; LOOP is delivered as
//! [`LinkType::Null`] because the parser reads the 4-byte family in either byte order. A classic
//! pcap with any other link type is refused at open (nothing in it could be parsed); in pcapng,
//! where each interface has its own link type, frames of unsupported interfaces are skipped and
//! counted in [`CaptureFile::skipped`].
//!
//! Why by hand and not a pcap crate: the kept crates have none, and the ones on crates.io either
//! copy each packet into an owned buffer or lack pcapng `if_tsresol`; the formats are small.
//!
//! pcapng Simple Packet Blocks carry no timestamp: they get the last timestamp seen (0 before any).
//!
//! The file must not shrink while open (a memory map of a truncated file faults on access).

mod classic;
mod ng;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Frame, LinkType, BURST};
use crate::Timestamp;

/// Why a capture file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The file could not be opened or mapped.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not start with a pcap or pcapng magic number.
    #[error(
        "{path} is not a pcap or pcapng capture (magic {magic}); convert it with `editcap -F pcap`"
    )]
    NotCapture {
        /// The file.
        path: PathBuf,
        /// The first bytes, in hex, or a note that the file is too short.
        magic: String,
    },
    /// The file header is present but unusable.
    #[error("{path}: bad capture header: {reason}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A classic pcap whose single link type callrec cannot parse.
    #[error("{path}: link type {linktype} is not supported (callrec reads Ethernet, Linux SLL/SLL2, raw IP, NULL/LOOP)")]
    UnsupportedLink {
        /// The file.
        path: PathBuf,
        /// The LINKTYPE_ value.
        linktype: u32,
    },
}

/// Maps a LINKTYPE_ value to the framing callrec parses, `None` if unsupported.
pub fn link_type_from_pcap(linktype: u32) -> Option<LinkType> {
    Some(match linktype {
        1 => LinkType::Ethernet,
        113 => LinkType::LinuxSll,
        276 => LinkType::LinuxSll2,
        101 | 12 | 14 | 228 | 229 => LinkType::RawIp,
        0 | 108 => LinkType::Null,
        _ => return None,
    })
}

/// Up to [`BURST`] frames borrowed from the port; empty at end of stream.
pub struct Burst<'a> {
    pub(super) frames: heapless::Vec<Frame<'a>, BURST>,
}

impl<'a> Burst<'a> {
    /// The frames, in capture-file order.
    #[inline]
    pub fn frames(&self) -> &[Frame<'a>] {
        &self.frames
    }
    /// How many frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// True at end of stream.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// Iterates over the frames.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Frame<'a>> {
        self.frames.iter()
    }
}

impl<'a> std::ops::Deref for Burst<'a> {
    type Target = [Frame<'a>];
    #[inline]
    fn deref(&self) -> &[Frame<'a>] {
        &self.frames
    }
}

impl<'a, 'b> IntoIterator for &'b Burst<'a> {
    type Item = &'b Frame<'a>;
    type IntoIter = std::slice::Iter<'b, Frame<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.frames.iter()
    }
}

/// Why the stream stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The last record or block is cut short at byte `at`.
    Truncated {
        /// Offset of the cut record.
        at: usize,
    },
    /// A record or block at byte `at` has a length that cannot be right.
    Corrupt {
        /// Offset of the bad record.
        at: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// One step of a format reader.
pub(crate) enum Step<'a> {
    /// A frame to deliver.
    Frame(Frame<'a>),
    /// A record that carries no frame (or an unsupported interface's frame): read on.
    Skip {
        /// True if it was a packet of an unsupported link type.
        unsupported: bool,
    },
    /// Clean end of file.
    End,
    /// Damaged file: stop here.
    Damaged(Damage),
}

enum Format {
    Classic(classic::Reader),
    Ng(ng::Reader),
}

/// A pcap or pcapng file opened for reading; see the module docs.
pub struct CaptureFile {
    path: PathBuf,
    map: Mmap,
    format: Format,
    packets: u64,
    skipped: u64,
    damage: Option<Damage>,
    done: bool,
}

impl fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .field("packets", &self.packets)
            .finish()
    }
}

const PCAPNG_SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl CaptureFile {
    /// Opens and maps `path`, reads its header; packets come from [`CaptureFile::rx_burst`].
    pub fn open(path: &Path) -> Result<CaptureFile, PortError> {
        let open_err = |source| PortError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        // SAFETY: the map is read-only and we never hand out a mutable view. Another process
        // shrinking the file while it is open would fault; the module docs say not to.
        let map = unsafe { Mmap::map(&file) }.map_err(open_err)?;
        let bytes: &[u8] = &map;
        if bytes.len() < 4 {
            return Err(PortError::NotCapture {
                path: path.to_owned(),
                magic: format!("file is only {} bytes long", bytes.len()),
            });
        }
        let format = if bytes[..4] == PCAPNG_SHB {
            Format::Ng(
                ng::Reader::new(bytes).map_err(|reason| PortError::BadHeader {
                    path: path.to_owned(),
                    reason: reason.to_string(),
                })?,
            )
        } else if let Some(r) = classic::Reader::new(bytes) {
            let r = r.map_err(|reason| PortError::BadHeader {
                path: path.to_owned(),
                reason: reason.to_string(),
            })?;
            if r.link().is_none() {
                return Err(PortError::UnsupportedLink {
                    path: path.to_owned(),
                    linktype: r.linktype_raw(),
                });
            }
            Format::Classic(r)
        } else {
            return Err(PortError::NotCapture {
                path: path.to_owned(),
                magic: format!(
                    "{:02x}{:02x}{:02x}{:02x}",
                    bytes[0], bytes[1], bytes[2], bytes[3]
                ),
            });
        };
        Ok(CaptureFile {
            path: path.to_owned(),
            map,
            format,
            packets: 0,
            skipped: 0,
            damage: None,
            done: false,
        })
    }

    /// The next up-to-[`BURST`] frames; an empty burst means end of stream (and stays empty).
    pub fn rx_burst(&mut self) -> Burst<'_> {
        let mut frames = heapless::Vec::new();
        let Self {
            map,
            format,
            packets,
            skipped,
            damage,
            done,
            ..
        } = self;
        let bytes: &[u8] = map;
        while !*done && !frames.is_full() {
            let step = match format {
                Format::Classic(r) => r.next(bytes),
                Format::Ng(r) => r.next(bytes),
            };
            match step {
                Step::Frame(f) => {
                    *packets += 1;
                    // Cannot fail: the loop stops when full.
                    let _ = frames.push(f);
                }
                Step::Skip { unsupported } => *skipped += unsupported as u64,
                Step::End => *done = true,
                Step::Damaged(d) => {
                    // Reported once by the caller through `truncated()`, with the summary.
                    tracing::debug!(path = %self.path.display(), "{}", describe(&d, *packets));
                    *damage = Some(d);
                    *done = true;
                }
            }
        }
        Burst { frames }
    }

    /// One sentence if the stream ended early because the file is cut short or corrupt.
    pub fn truncated(&self) -> Option<String> {
        self.damage.as_ref().map(|d| describe(d, self.packets))
    }

    /// Frames delivered so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// Packets skipped because their pcapng interface has an unsupported link type.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn describe(d: &Damage, packets: u64) -> String {
    match d {
        Damage::Truncated { at } => {
            format!("capture ends mid-record at byte {at}; kept the {packets} packets before it")
        }
        Damage::Corrupt { at, what } => {
            format!("corrupt record at byte {at} ({what}); kept the {packets} packets before it")
        }
    }
}

/// Reads a u16/u32 at `at` in the given byte order; `None` past the end.
#[inline]
pub(crate) fn rd_u32(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

#[inline]
pub(crate) fn rd_u16(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

/// Capture time from an integer count of ticks of the given resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsRes {
    /// 10^-n seconds per tick.
    Dec(u8),
    /// 2^-n seconds per tick.
    Bin(u8),
}

impl TsRes {
    #[inline]
    pub(crate) fn to_ns(self, ticks: u64) -> u64 {
        match self {
            TsRes::Dec(9) => ticks,
            TsRes::Dec(n) if n < 9 => ticks.saturating_mul(10u64.pow(9 - n as u32)),
            TsRes::Dec(n) => {
                // n <= 19 after validation, so the power fits.
                ticks / 10u64.pow((n as u32 - 9).min(19))
            }
            TsRes::Bin(n) => u64::try_from((ticks as u128 * 1_000_000_000u128) >> n.min(127)).unwrap_or(u64::MAX),
        }
    }
}

/// Builds a frame from parts already validated by the format reader.
#[inline]
pub(crate) fn frame(ts_ns: u64, link: LinkType, data: &[u8]) -> Frame<'_> {
    Frame {
        ts: Timestamp(ts_ns),
        link,
        data,
    }
}
