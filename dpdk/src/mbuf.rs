//! Received packet buffers: [`Mbuf`] owns one DPDK mbuf, [`DpdkBurst`] a burst of them.
//!
//! The burst borrows its port mutably, so no mbuf outlives the port's mempool; its frames
//! borrow the burst, so no frame outlives the mbuf its bytes live in. A burst frees its
//! mbufs back to the pool in one bulk call when dropped.

use std::marker::PhantomData;
use std::ptr::NonNull;

use callrec_pipeline::port::{Frame, BURST};

use crate::sys;

/// One DPDK packet buffer, returned to its mempool when dropped.
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.data().len())
            .finish()
    }
}

impl Mbuf {
    /// Takes ownership of a received mbuf.
    ///
    /// # Safety
    /// `raw` is an mbuf nobody else owns or frees, whose pool outlives the `Mbuf`.
    pub(crate) unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership without freeing.
    pub(crate) fn into_raw(self) -> *mut sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// The bytes of the first segment (the whole frame unless the driver chained segments).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw.as_ptr();
        // SAFETY: we own a valid mbuf; mtod points at its data_len bytes of packet data,
        // which stay untouched until the mbuf is freed (after this borrow ends).
        unsafe {
            let p = sys::callrec_rte_pktmbuf_mtod(m) as *const u8;
            let len = usize::from((*m).data_len);
            if p.is_null() || len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(p, len)
        }
    }

    /// True if the packet spans more than one segment (then [`Mbuf::data`] is its start).
    #[inline]
    pub fn is_chained(&self) -> bool {
        // SAFETY: we own a valid mbuf; reads a plain field.
        unsafe { (*self.raw.as_ptr()).nb_segs > 1 }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (from_raw's contract) and nobody uses it after this.
        unsafe { sys::callrec_rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Up to [`BURST`] received frames over the mbufs that hold them; see the module docs.
pub struct DpdkBurst<'p> {
    mbufs: heapless::Vec<Mbuf, BURST>,
    // Private: the 'p lifetime is longer than the mbufs live; handed out only re-borrowed
    // for the burst's own lifetime (see `frames`).
    frames: heapless::Vec<Frame<'p>, BURST>,
    _port: PhantomData<&'p mut ()>,
}

impl std::fmt::Debug for DpdkBurst<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkBurst")
            .field("len", &self.frames.len())
            .finish()
    }
}

impl<'p> DpdkBurst<'p> {
    /// Wraps received mbufs; `frames[i]` views `mbufs[i]`.
    pub(crate) fn new(
        mbufs: heapless::Vec<Mbuf, BURST>,
        frames: heapless::Vec<Frame<'p>, BURST>,
    ) -> DpdkBurst<'p> {
        DpdkBurst {
            mbufs,
            frames,
            _port: PhantomData,
        }
    }

    /// The frames, in the order the queue delivered them.
    #[inline]
    pub fn frames<'b>(&'b self) -> &'b [Frame<'b>] {
        &self.frames
    }
    /// The mbufs behind the frames, same order.
    #[inline]
    pub fn mbufs(&self) -> &[Mbuf] {
        &self.mbufs
    }
    /// How many frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// True if nothing was ready (a live port: not the end of anything).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// Iterates over the frames.
    #[inline]
    pub fn iter<'b>(&'b self) -> std::slice::Iter<'b, Frame<'b>> {
        self.frames().iter()
    }
}

impl<'b> IntoIterator for &'b DpdkBurst<'_> {
    type Item = &'b Frame<'b>;
    type IntoIter = std::slice::Iter<'b, Frame<'b>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Drop for DpdkBurst<'_> {
    fn drop(&mut self) {
        // The frames view the mbufs: gone first.
        self.frames.clear();
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        let mut n = 0;
        while let Some(m) = self.mbufs.pop() {
            raw[n] = m.into_raw();
            n += 1;
        }
        if n > 0 {
            // SAFETY: raw[..n] are mbufs this burst owned (ownership released above), each
            // freed exactly once here.
            unsafe { sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n as u32) }
        }
    }
}
