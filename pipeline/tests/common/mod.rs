//! Test-only writers for classic pcap and pcapng, and a tiny frame builder.
#![allow(dead_code)]

/// A classic pcap file: `nanos` picks the nanosecond magic; timestamps given in ns.
pub fn pcap(big: bool, nanos: bool, linktype: u32, recs: &[(u64, &[u8])]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(u16b(2));
    out.extend(u16b(4));
    out.extend(u32b(0));
    out.extend(u32b(0));
    out.extend(u32b(65535));
    out.extend(u32b(linktype));
    for (ts, data) in recs {
        let frac = if nanos {
            ts % 1_000_000_000
        } else {
            ts % 1_000_000_000 / 1000
        };
        out.extend(u32b((ts / 1_000_000_000) as u32));
        out.extend(u32b(frac as u32));
        out.extend(u32b(data.len() as u32));
        out.extend(u32b(data.len() as u32));
        out.extend_from_slice(data);
    }
    out
}

/// A pcapng file being written.
pub struct Ng {
    pub buf: Vec<u8>,
    big: bool,
}

impl Ng {
    pub fn new(big: bool) -> Ng {
        let mut ng = Ng {
            buf: Vec::new(),
            big,
        };
        ng.section(big);
        ng
    }
    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    /// Starts a new section in the given byte order (forgets interfaces).
    pub fn section(&mut self, big: bool) {
        self.big = big;
        let mut body = Vec::new();
        body.extend(self.u32b(0x1a2b_3c4d));
        body.extend(self.u16b(1));
        body.extend(self.u16b(0));
        body.extend([0xff; 8]);
        self.block(0x0a0d_0d0a, &body);
    }
    /// Any block, padded to 4.
    pub fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().next_multiple_of(4);
        let total = (12 + padded) as u32;
        let (k, t) = (self.u32b(kind), self.u32b(total));
        self.buf.extend(k);
        self.buf.extend(t);
        self.buf.extend_from_slice(body);
        self.buf.resize(self.buf.len() + padded - body.len(), 0);
        self.buf.extend(t);
    }
    fn option(&self, body: &mut Vec<u8>, code: u16, val: &[u8]) {
        body.extend(self.u16b(code));
        body.extend(self.u16b(val.len() as u16));
        body.extend_from_slice(val);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    pub fn idb(&mut self, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut body = Vec::new();
        body.extend(self.u16b(linktype));
        body.extend(self.u16b(0));
        body.extend(self.u32b(0));
        self.option(&mut body, 2, b"eth0"); // if_name, to be skipped
        if let Some(r) = tsresol {
            self.option(&mut body, 9, &[r]);
        }
        if let Some(o) = tsoffset {
            let v = if self.big {
                o.to_be_bytes()
            } else {
                o.to_le_bytes()
            };
            self.option(&mut body, 14, &v);
        }
        self.option(&mut body, 0, &[]);
        self.block(1, &body);
    }
    pub fn epb(&mut self, iface: u32, ticks: u64, data: &[u8]) {
        let mut body = Vec::new();
        body.extend(self.u32b(iface));
        body.extend(self.u32b((ticks >> 32) as u32));
        body.extend(self.u32b(ticks as u32));
        body.extend(self.u32b(data.len() as u32));
        body.extend(self.u32b(data.len() as u32 + 4));
        body.extend_from_slice(data);
        body.resize(body.len().next_multiple_of(4), 0);
        self.option(&mut body, 1, b"comment");
        self.option(&mut body, 0, &[]);
        self.block(6, &body);
    }
    pub fn spb(&mut self, data: &[u8]) {
        let mut body = Vec::new();
        body.extend(self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.block(3, &body);
    }
}

/// Ethernet + IPv4 + UDP frame from 192.0.2.1:5060 to 192.0.2.2:`dport`.
pub fn eth_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend(raw_udp(dport, payload));
    f
}

/// IPv4 + UDP packet from 192.0.2.1:5060 to 192.0.2.2:`dport`.
pub fn raw_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x45, 0];
    f.extend(((28 + payload.len()) as u16).to_be_bytes());
    f.extend([0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    f.extend(5060u16.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend(((8 + payload.len()) as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend_from_slice(payload);
    f
}
