#!/usr/bin/env python3
"""Synthetic call mix for the pipeline benchmarks (standard library only).

Writes, for K calls to the recorded DN 2001 (caller 5551234 at 192.0.2.10:5060, callee at
192.0.2.20:5060; media of call n at 198.51.100.H:P (caller) and 203.0.113.H:P (callee), with
H = n // 25000 % 250 + 1 and P = 10000 + 2 * (n % 25000), as benches/common/mod.rs does):

  --out FILE        classic pcap: the SIP of every call (INVITE, 200, ACK, each INVITE and 200
                    with SDP, PCMA + telephone-event), then --seconds of RTP, 20 ms G.711 A-law
                    both directions of every call, interleaved tick by tick, then every BYE and
                    200. A capture `callrec replay FILE --record-dn 2001` records K calls from.
  --rate-out FILE   a small pcap for DPDK net_pcap infinite_rx (whose whole file must fit in the
                    port's mbuf pool, 8191 mbufs: keep it under ~8000 frames; default 7000):
                    --rate-packets RTP frames spread over all K calls
                    (call j * stride mod K, stride coprime to K, both directions, each stream's
                    sequence and timestamp advancing), with one SIP INVITE per 3000 frames, the
                    SIP share of 20,000 concurrent 3-minute calls.
  --flows FILE      one line per call: "CALLER_IP:PORT CALLEE_IP:PORT", call n on line n.

usage: gen_mix.py --calls K [--seconds S] [--out FILE] [--rate-out FILE] [--rate-packets N]
                  [--flows FILE]
"""
import argparse
import math
import struct
import sys

SIP_A = ("192.0.2.10", 5060)
SIP_B = ("192.0.2.20", 5060)
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
START = 1_700_000_000


def media(n, callee):
    host = n // 25000 % 250 + 1
    port = 10000 + 2 * (n % 25000)
    return (f"203.0.113.{host}" if callee else f"198.51.100.{host}", port)


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def checksum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp_headers(src, dst, payload_len):
    """Ethernet + IPv4 + UDP headers for a payload of payload_len bytes."""
    total = 20 + 8 + payload_len
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 17, 0, ip4(src[0]), ip4(dst[0])))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + payload_len, 0)
    mac = MAC_B + MAC_A if src[0].startswith("192.0.2.10") or src[0].startswith("198.") else MAC_A + MAC_B
    return mac + b"\x08\x00" + bytes(ip) + udp


def frame(src, dst, payload):
    return udp_headers(src, dst, len(payload)) + payload


def sdp(m):
    ip, port = m
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def sip(n, start, cseq, to_tag, body=""):
    ct = "Content-Type: application/sdp\r\n" if body else ""
    tag = ";tag=b1" if to_tag else ""
    branch = cseq.replace(" ", "-")
    return (f"{start}\r\nVia: SIP/2.0/UDP {SIP_A[0]}:{SIP_A[1]};branch=z9hG4bK-{n}-{branch}\r\n"
            f"From: <sip:5551234@192.0.2.10>;tag=a1\r\nTo: <sip:2001@192.0.2.20>{tag}\r\n"
            f"Call-ID: mix-{n}@pbx\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:5551234@192.0.2.10:5060>\r\n{ct}Content-Length: {len(body)}\r\n\r\n{body}").encode()


def invite(n):
    return frame(SIP_A, SIP_B, sip(n, "INVITE sip:2001@192.0.2.20 SIP/2.0", "1 INVITE", False, sdp(media(n, False))))


def setup(n):
    return [invite(n),
            frame(SIP_B, SIP_A, sip(n, "SIP/2.0 200 OK", "1 INVITE", True, sdp(media(n, True)))),
            frame(SIP_A, SIP_B, sip(n, "ACK sip:2001@192.0.2.20 SIP/2.0", "1 ACK", True))]


def teardown(n):
    return [frame(SIP_A, SIP_B, sip(n, "BYE sip:2001@192.0.2.20 SIP/2.0", "2 BYE", True)),
            frame(SIP_B, SIP_A, sip(n, "SIP/2.0 200 OK", "2 BYE", True))]


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.count = 0

    def write(self, t_us, data):
        self.f.write(struct.pack("<IIII", START + t_us // 1_000_000, t_us % 1_000_000, len(data), len(data)))
        self.f.write(data)
        self.count += 1

    def close(self):
        self.f.close()


class Streams:
    """RTP per call direction: a cached header and the stream's sequence / timestamp."""

    def __init__(self, k):
        self.k = k
        self.hdr = {}
        self.state = {}
        self.payload = bytes([0xD5]) * 160

    def packet(self, n, callee):
        key = (n, callee)
        h = self.hdr.get(key)
        if h is None:
            src, dst = (media(n, True), media(n, False)) if callee else (media(n, False), media(n, True))
            h = udp_headers(src, dst, 12 + 160)
            if len(self.hdr) < 200_000:
                self.hdr[key] = h
        seq, ts = self.state.get(key, (0, 0))
        self.state[key] = ((seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF)
        ssrc = (n * 2 + int(callee)) & 0xFFFFFFFF
        return h + struct.pack("!BBHII", 0x80, 8, seq, ts, ssrc) + self.payload


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out")
    ap.add_argument("--rate-out")
    ap.add_argument("--rate-packets", type=int, default=7000)
    ap.add_argument("--flows")
    a = ap.parse_args()
    k = a.calls
    if not 1 <= k <= 250 * 25000:
        sys.exit("gen_mix.py: --calls must be 1..6250000")
    if a.flows:
        with open(a.flows, "w") as f:
            for n in range(k):
                c, d = media(n, False), media(n, True)
                f.write(f"{c[0]}:{c[1]} {d[0]}:{d[1]}\n")
    if a.out:
        p = Pcap(a.out)
        t = 0
        sip_step = max(1, 1_000_000 // 5000)  # 5,000 setups a second of capture time
        for n in range(k):
            for i, fr in enumerate(setup(n)):
                p.write(t + i * 50, fr)
            t += sip_step
        s = Streams(k)
        ticks = int(a.seconds * 50)
        t0 = t + 100_000
        for tick in range(ticks):
            base = t0 + tick * 20_000
            for n in range(k):
                off = base + (n * 20_000) // k  # calls' 20 ms clocks spread over the tick
                p.write(off, s.packet(n, False))
                p.write(off + 7, s.packet(n, True))
        t = t0 + ticks * 20_000 + 100_000
        for n in range(k):
            for i, fr in enumerate(teardown(n)):
                p.write(t + i * 50, fr)
            t += sip_step
        p.close()
        print(f"{a.out}: {p.count} frames ({k} calls, {ticks} RTP ticks of 20 ms, {2 * k * ticks} RTP)")
    if a.rate_out:
        p = Pcap(a.rate_out)
        s = Streams(k)
        stride = max(1, int(k * 0.618))
        while math.gcd(stride, k) != 1:
            stride += 1
        t = 0
        for j in range(a.rate_packets):
            if j % 3000 == 1500:
                p.write(t, invite((j * 7) % k))
            n = (j // 2 * stride) % k
            p.write(t, s.packet(n, j % 2 == 1))
            t += 1
        p.close()
        print(f"{a.rate_out}: {p.count} frames (RTP over {min(k, a.rate_packets // 2)} calls of {k}, stride {stride})")


if __name__ == "__main__":
    main()
