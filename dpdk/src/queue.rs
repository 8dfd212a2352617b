//! One rx queue of a [`crate::DpdkPort`], handed to its own thread by [`crate::DpdkPort::split`].

use std::marker::PhantomData;

use crate::mbuf::DpdkBurst;
use crate::port::{device_stats, receive, DpdkPort, DpdkStats};

/// The receive side of one rx queue; see [`DpdkPort::split`].
#[derive(Debug)]
pub struct DpdkRxQueue<'p> {
    port: u16,
    queue: u16,
    delivered: u64,
    chained: u64,
    _port: PhantomData<&'p mut DpdkPort>,
}

impl<'p> DpdkRxQueue<'p> {
    pub(crate) fn new(port: u16, queue: u16) -> DpdkRxQueue<'p> {
        DpdkRxQueue {
            port,
            queue,
            delivered: 0,
            chained: 0,
            _port: PhantomData,
        }
    }

    /// Up to [`callrec_pipeline::port::BURST`] frames from this queue, stamped with the wall
    /// clock read once for the burst. Never waits: an empty burst means nothing was ready.
    #[inline]
    pub fn rx_burst(&mut self) -> DpdkBurst<'_> {
        // SAFETY: `split` made exactly one handle per queue of the started port, which stays
        // borrowed (open) for 'p; this handle is polled only through &mut self.
        unsafe {
            receive(
                self.port,
                self.queue,
                &mut self.delivered,
                &mut self.chained,
            )
        }
    }

    /// The queue's number on its port.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// The device-wide counters with this queue's own `delivered` and `chained`.
    pub fn stats(&self) -> DpdkStats {
        device_stats(self.port, self.delivered, self.chained)
    }
}
