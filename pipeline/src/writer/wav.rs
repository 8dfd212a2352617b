//! Stereo WAV output: G.711 (format tag 6/7, written by hand) and PCM16 (through hound), with
//! a header that can be made valid at any point so a killed process leaves a playable file.
//!
//! G.711 by hand because hound writes only PCM and IEEE float; non-PCM WAV needs the 18-byte
//! `fmt ` chunk (with cbSize) and a `fact` chunk, 58 header bytes in all.

use super::g711;
use super::jitter::{Frames, SampleKind};
use super::Codec;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Bytes buffered per file before a write system call.
pub const WRITE_BUFFER: usize = 64 * 1024;
/// Length of the G.711 WAV header (RIFF, `fmt ` with cbSize, `fact`, `data` chunk header).
pub const G711_HEADER_LEN: usize = 58;

/// Why a WAV file could not be written.
#[derive(Debug, Error)]
pub enum WavError {
    /// The file could not be created.
    #[error(
        "cannot create {path}: {source}; check that the output directory exists and is writable"
    )]
    Create {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing failed (full disk, I/O error).
    #[error("cannot write {path}: {source}; check free space on the output disk")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// hound reported an error for the PCM16 file.
    #[error("cannot write {path}: {source}")]
    Hound {
        /// The file.
        path: PathBuf,
        /// hound's error.
        source: hound::Error,
    },
}

/// The 58-byte header of a stereo 8 kHz G.711 WAV holding `data_len` bytes of samples.
pub fn g711_header(codec: Codec, data_len: u32) -> [u8; G711_HEADER_LEN] {
    let mut h = [0u8; G711_HEADER_LEN];
    let riff_len = (G711_HEADER_LEN as u32 - 8).saturating_add(data_len);
    let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
    put(0, b"RIFF");
    put(4, &riff_len.to_le_bytes());
    put(8, b"WAVE");
    put(12, b"fmt ");
    put(16, &18u32.to_le_bytes());
    put(20, &codec.wav_format_tag().to_le_bytes());
    put(22, &2u16.to_le_bytes()); // channels
    put(24, &8000u32.to_le_bytes()); // sample rate
    put(28, &16000u32.to_le_bytes()); // bytes per second
    put(32, &2u16.to_le_bytes()); // block align
    put(34, &8u16.to_le_bytes()); // bits per sample
    put(36, &0u16.to_le_bytes()); // cbSize
    put(38, b"fact");
    put(42, &4u32.to_le_bytes());
    put(46, &(data_len / 2).to_le_bytes()); // sample frames
    put(50, b"data");
    put(54, &data_len.to_le_bytes());
    h
}

/// A G.711 stereo WAV being written.
struct G711Wav {
    out: BufWriter<File>,
    codec: Codec,
    data_len: u32,
    scratch: Vec<u8>,
}

enum Inner {
    G711(G711Wav),
    Pcm16(hound::WavWriter<BufWriter<File>>),
}

/// A stereo WAV file being written; left = customer, right = agent.
pub struct WavOut {
    inner: Inner,
    path: PathBuf,
}

impl WavOut {
    /// Creates `path` (truncating) for `kind` samples and writes a valid empty header.
    pub fn create(path: &Path, kind: SampleKind) -> Result<Self, WavError> {
        // A CTI `dest` may name a directory nobody made yet; the recording must not be lost
        // for that. (A failure here shows up as the File::create error below.)
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = File::create(path)
            .map_err(|source| WavError::Create { path: path.to_owned(), source })?;
        let out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let inner = match kind {
            SampleKind::Law(codec) => {
                let mut w = G711Wav { out, codec, data_len: 0, scratch: Vec::new() };
                w.out
                    .write_all(&g711_header(codec, 0))
                    .map_err(|source| WavError::Write { path: path.to_owned(), source })?;
                Inner::G711(w)
            }
            SampleKind::Linear => {
                let spec = hound::WavSpec {
                    channels: 2,
                    sample_rate: 8000,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let w = hound::WavWriter::new(out, spec)
                    .map_err(|source| WavError::Hound { path: path.to_owned(), source })?;
                Inner::Pcm16(w)
            }
        };
        Ok(WavOut { inner, path: path.to_owned() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends interleaved stereo frames. Frames of the other kind than the file's are a bug
    /// in the caller; they are converted rather than dropped.
    pub fn write(&mut self, frames: Frames<'_>) -> Result<(), WavError> {
        let path = &self.path;
        let io_err = |source| WavError::Write { path: path.clone(), source };
        match (&mut self.inner, frames) {
            (Inner::G711(w), Frames::Law(l, r)) => {
                let n = l.len().min(r.len());
                w.scratch.resize(2 * n, 0);
                for (o, (a, b)) in w.scratch.chunks_exact_mut(2).zip(l.iter().zip(r)) {
                    o[0] = *a;
                    o[1] = *b;
                }
                w.data_len = w.data_len.saturating_add(w.scratch.len() as u32);
                w.out.write_all(&w.scratch).map_err(io_err)
            }
            (Inner::G711(w), Frames::Linear(l, r)) => {
                let enc = match w.codec {
                    Codec::Pcma => g711::linear_to_alaw,
                    Codec::Pcmu => g711::linear_to_ulaw,
                };
                w.scratch.clear();
                for (a, b) in l.iter().zip(r) {
                    w.scratch.push(enc(*a));
                    w.scratch.push(enc(*b));
                }
                w.data_len = w.data_len.saturating_add(w.scratch.len() as u32);
                w.out.write_all(&w.scratch).map_err(io_err)
            }
            (Inner::Pcm16(w), Frames::Linear(l, r)) => {
                let n = l.len().min(r.len());
                // Exactly 2n samples go into a writer sized for 2n, so it cannot panic.
                let mut sw = w.get_i16_writer(2 * n as u32);
                for (a, b) in l[..n].iter().zip(&r[..n]) {
                    sw.write_sample(*a);
                    sw.write_sample(*b);
                }
                sw.flush().map_err(|source| WavError::Hound { path: path.clone(), source })
            }
            (Inner::Pcm16(w), Frames::Law(..)) => {
                // The placement buffer and this file are made from the same SampleKind.
                let _ = w;
                tracing::error!(path = %path.display(), "G.711 frames sent to a PCM16 file; dropped");
                Ok(())
            }
        }
    }

    /// Makes the file on disk valid up to what was written: flushes the buffer and rewrites
    /// the header's sizes.
    pub fn checkpoint(&mut self) -> Result<(), WavError> {
        match &mut self.inner {
            Inner::G711(w) => {
                let hdr = g711_header(w.codec, w.data_len);
                let r = w.out.flush().and_then(|_| w.out.get_ref().write_all_at(&hdr, 0));
                r.map_err(|source| WavError::Write { path: self.path.clone(), source })
            }
            Inner::Pcm16(w) => {
                w.flush().map_err(|source| WavError::Hound { path: self.path.clone(), source })
            }
        }
    }

    /// Samples per channel written so far.
    pub fn frames_written(&self) -> u64 {
        match &self.inner {
            Inner::G711(w) => w.data_len as u64 / 2,
            Inner::Pcm16(w) => w.duration() as u64,
        }
    }

    /// Final header and flush; the file is complete.
    pub fn finish(self) -> Result<(), WavError> {
        let path = self.path;
        match self.inner {
            Inner::G711(mut w) => {
                let hdr = g711_header(w.codec, w.data_len);
                w.out
                    .flush()
                    .and_then(|_| w.out.get_ref().write_all_at(&hdr, 0))
                    .map_err(|source| WavError::Write { path, source })
            }
            Inner::Pcm16(w) => w.finalize().map_err(|source| WavError::Hound { path, source }),
        }
    }
}

#[cfg(test)]
#[path = "wav_tests.rs"]
mod tests;
