#!/usr/bin/env python3
"""Post-processing for make-capture.sh test captures (stdlib only).

post IN --out OUT [--same-ssrc] [--unique-audio] [--reorder PCT] [--seed N]
    --same-ssrc     every RTP stream gets the same SSRC (rtp-pcap streams already share one;
                    this is for captures made otherwise).
    --unique-audio  every RTP stream's payload is replaced by its own noise, indexed by RTP
                    timestamp. SIPp plays the same file in every call, so without this all calls
                    sound alike and a recorder that mixed up two calls would still correlate.
    --reorder PCT   swaps PCT % of each stream's packets with the stream's next packet. This
                    kernel has no netem qdisc, so reordering is made here: frame contents swap
                    places while every position keeps its capture time, so times stay increasing
                    and the recorder sees late arrival exactly as on a mirror port.
rtp-pcap WAV PT OUT
    packs a G.711 WAV's samples into an RTP pcap (20 ms, 160 bytes a packet) for SIPp's
    play_pcap_audio. SIPp 3.6.1's rtp_stream binds every call of a process to the same -mp
    port, so concurrent calls would share one address pair; play_pcap_audio sends from
    [auto_media_port], a port per call. Every packet carries the same SSRC in both directions,
    so SSRCs collide across all calls of the capture (as with SIPp's fixed 0xCA110000 base).
send-malformed HOST PORT DN
    sends a few malformed SIP datagrams (garbage after a valid start line, broken Via,
    truncated Content-Length body, non-UTF-8 bytes, a broken status line, pure garbage).
encap MODE IN OUT
    rewrites a microsecond Ethernet pcap IN into another encapsulation, same packets and times,
    to prove the capture port and parser on each (tests/e2e_encapsulation.rs):
    vlan        every frame 802.1Q-tagged (VID 100)
    qinq        every frame 802.1ad (0x88a8, VID 200) + 802.1Q (VID 100) tagged
    sll         Linux cooked v1 (link type 113)
    sll2        Linux cooked v2 (link type 276)
    raw         no link header, raw IP (link type 101); raw4 the same as LINKTYPE_IPV4 (228)
    null        BSD loopback, host-order (little-endian) address family (link type 0);
                loop the same in network order (link type 108)
    bloat:N     every IPv4 SIP message with a body gets an N-byte X-Filler header (big INVITEs
                carry many headers); chain with frag:1500 for fragments at a real MTU
    frag[:MTU]  every IPv4 UDP SIP message with a body split into IPv4 fragments of at most MTU
                bytes (default 296); every second message's fragments come last-first
    fcs         every Ethernet frame ends with its 4-byte FCS, as NICs with rx-fcs on capture it
                (the link type's F bit and FCS length say so)
    dup         every frame twice, the copy 1 us later (a capture on "any" sees a forwarded
                packet on both interfaces)
    nsec        nanosecond-resolution pcap (magic 0xa1b23c4d)
    be          big-endian pcap (as written on a big-endian host)
    pcapng      pcapng, one Ethernet interface, microsecond resolution (if_tsresol absent)
    pcapng-ns   pcapng with if_tsresol = 9 (nanoseconds), big-endian section
    ipv6        every IPv4 UDP frame as IPv6: a.b.c.d becomes 2001:db8:AABB::CCDD (hex) in the
                IP header and in SIP text ([...] in headers, `IN IP6` in SDP; Call-ID lines
                untouched), Content-Length and UDP length/checksum fixed
"""
import ipaddress
import random
import re
import socket
import struct
import sys
import time
import zlib

SIP_PORTS = range(5060, 5070)


def read_pcap(path):
    d = open(path, "rb").read()
    magic = d[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        e = ">"
    else:
        raise SystemExit(f"{path}: not a microsecond pcap (tcpdump -w writes one)")
    linktype = struct.unpack(e + "I", d[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, expected Ethernet")
    frames, i = [], 24
    while i + 16 <= len(d):
        sec, usec, incl, orig = struct.unpack(e + "IIII", d[i:i + 16])
        frames.append([sec, usec, bytearray(d[i + 16:i + 16 + incl]), orig])
        i += 16 + incl
    return d[:24], e, frames


def write_pcap(path, header, e, frames):
    with open(path, "wb") as f:
        f.write(header)
        for sec, usec, data, orig in frames:
            f.write(struct.pack(e + "IIII", sec, usec, len(data), max(orig, len(data))))
            f.write(data)


def rtp_view(frame):
    """(stream key, offset of the RTP header) for an IPv4/UDP RTP frame, else None"""
    if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    u = 14 + ihl
    sport, dport = struct.unpack(">HH", frame[u:u + 4])
    if sport in SIP_PORTS or dport in SIP_PORTS:
        return None
    r = u + 8
    if len(frame) < r + 12 or frame[r] >> 6 != 2 or frame[r + 1] & 0x7F not in (0, 8):
        return None
    key = (bytes(frame[26:30]), sport, bytes(frame[30:34]), dport)
    return key, u, r


def post(args):
    src = args[0]
    out, same_ssrc, unique, reorder, seed = None, False, False, 0.0, 1
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--out":
            out = args[i + 1]; i += 2
        elif a == "--same-ssrc":
            same_ssrc = True; i += 1
        elif a == "--unique-audio":
            unique = True; i += 1
        elif a == "--reorder":
            reorder = float(args[i + 1]); i += 2
        elif a == "--seed":
            seed = int(args[i + 1]); i += 2
        else:
            raise SystemExit(f"unknown option {a}")
    header, e, frames = read_pcap(src)
    streams = {}  # key -> list of frame indexes
    for n, (_, _, data, _) in enumerate(frames):
        v = rtp_view(data)
        if v:
            streams.setdefault(v[0], []).append(n)
    if unique:
        for k, (key, idx) in enumerate(streams.items()):
            ts = [struct.unpack(">I", frames[n][2][rtp_view(frames[n][2])[2] + 4:][:4])[0] for n in idx]
            t0 = ts[0]
            span = max(((t - t0) & 0xFFFFFFFF) for t in ts if ((t - t0) & 0xFFFFFFFF) < 1 << 30) + 2000
            noise = random.Random(seed * 100003 + k).randbytes(span)
            for n, t in zip(idx, ts):
                data = frames[n][2]
                _, u, r = rtp_view(data)
                off = (t - t0) & 0xFFFFFFFF
                if off >= 1 << 30:
                    continue
                p = r + 12 + 4 * (data[r] & 0x0F)
                ln = len(data) - p
                data[p:] = noise[off:off + ln]
                data[u + 6:u + 8] = b"\0\0"  # UDP checksum off: the payload changed
    if same_ssrc:
        for idx in streams.values():
            for n in idx:
                r = rtp_view(frames[n][2])[2]
                frames[n][2][r + 8:r + 12] = b"\x5e\xed\xca\x11"
    if reorder > 0:
        rnd = random.Random(seed)
        for idx in streams.values():
            j = 0
            while j + 1 < len(idx):
                if rnd.random() * 100 < reorder:
                    a, b = idx[j], idx[j + 1]
                    frames[a][2], frames[b][2] = frames[b][2], frames[a][2]
                    frames[a][3], frames[b][3] = frames[b][3], frames[a][3]
                    j += 2
                else:
                    j += 1
    write_pcap(out, header, e, frames)
    print(f"pcap_tool: {len(frames)} frames, {len(streams)} RTP streams", file=sys.stderr)


SSRC = 0x5EEDCA11


def wav_data(path):
    d = open(path, "rb").read()
    if d[:4] != b"RIFF" or d[8:12] != b"WAVE":
        raise SystemExit(f"{path}: not a WAV file")
    i = 12
    while i + 8 <= len(d):
        cid, size = d[i:i + 4], struct.unpack("<I", d[i + 4:i + 8])[0]
        if cid == b"data":
            return d[i + 8:i + 8 + size]
        i += 8 + size + (size & 1)
    raise SystemExit(f"{path}: no data chunk")


def rtp_pcap(wav, pt, out):
    data = wav_data(wav)
    pt = int(pt)
    frames = []
    for n in range(len(data) // 160):
        rtp = struct.pack(">BBHII", 0x80, pt, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, SSRC) + data[n * 160:(n + 1) * 160]
        udp = struct.pack(">HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
        t = n * 20000
        frames.append([t // 1000000, t % 1000000, bytearray(eth + ip + udp), 14 + len(ip) + len(udp)])
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    write_pcap(out, header, "<", frames)


def send_malformed(host, port, dn):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 5070))
    msgs = [
        # garbage after a valid start line
        f"INVITE sip:{dn}@{host} SIP/2.0\r\n".encode() + bytes(range(256)) + b"\r\n\r\n",
        # broken Via (no sent-by), otherwise plausible
        (f"INVITE sip:{dn}@{host} SIP/2.0\r\nVia: SIP/2.0/UDP ;;branch\r\n"
         f"From: <sip:bad@192.0.2.10>;tag=m1\r\nTo: <sip:{dn}@{host}>\r\n"
         "Call-ID: malformed-via@192.0.2.10\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode(),
        # Content-Length larger than the body (a truncated datagram)
        (f"INVITE sip:{dn}@{host} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKmal3\r\n"
         f"From: <sip:bad@192.0.2.10>;tag=m3\r\nTo: <sip:{dn}@{host}>\r\n"
         "Call-ID: malformed-cl@192.0.2.10\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
         "Content-Length: 900\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n").encode(),
        # non-UTF-8 bytes in header values
        (b"OPTIONS sip:" + dn.encode() + b"@" + host.encode() + b" SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK\xff\xfe\r\n"
         b"From: \"\xc3\x28\xa0\xa1\" <sip:bad@192.0.2.10>;tag=m4\r\nTo: <sip:\xff@192.0.2.20>\r\n"
         b"Call-ID: \xfe\xfe\xfe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
        # broken status line
        b"SIP/2.0 abc Broken\r\nVia: SIP/2.0/UDP 192.0.2.20:5060\r\n\r\n",
        # a start line and nothing else
        b"BYE sip:x SIP/2.0",
        # pure garbage
        bytes(random.Random(7).randbytes(300)),
    ]
    for m in msgs:
        s.sendto(m, (host, int(port)))
        time.sleep(0.05)


def ip_checksum(h):
    t = sum(struct.unpack(">%dH" % (len(h) // 2), h))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return (~t) & 0xFFFF


def sip_with_body(frame):
    """True for an Ethernet IPv4 UDP frame to or from a SIP port carrying a message body"""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:
        return False
    u = 14 + (frame[14] & 0x0F) * 4
    sport, dport = struct.unpack(">HH", frame[u:u + 4])
    if sport not in SIP_PORTS and dport not in SIP_PORTS:
        return False
    head, sep, body = bytes(frame[u + 8:]).partition(b"\r\n\r\n")
    return bool(sep) and len(body) > 0


def fragment(frame, mtu, ident, reverse):
    """IPv4 fragments (Ethernet frames) of `frame`'s IP datagram, each at most `mtu` IP bytes"""
    eth, ihl = frame[:14], (frame[14] & 0x0F) * 4
    total = struct.unpack(">H", frame[16:18])[0]
    hdr, payload = bytearray(frame[14:14 + ihl]), frame[14 + ihl:14 + total]
    step = (mtu - ihl) // 8 * 8
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off:off + step]
        more = off + step < len(payload)
        h = bytearray(hdr)
        h[2:4] = struct.pack(">H", ihl + len(chunk))
        h[4:6] = struct.pack(">H", ident)
        h[6:8] = struct.pack(">H", (0x2000 if more else 0) | (off // 8))  # DF cleared
        h[10:12] = b"\0\0"
        h[10:12] = struct.pack(">H", ip_checksum(bytes(h)))
        f = bytearray(eth + h + chunk)
        f += b"\0" * (60 - len(f))  # Ethernet pads short frames; IP total length says where to stop
        out.append(f)
    return out[::-1] if reverse else out


def write_pcapng(path, frames, nsec):
    """pcapng: SHB, one Ethernet IDB, an EPB per frame; big-endian when `nsec`, so both byte
    orders and both resolutions are covered by the two variants"""
    e = ">" if nsec else "<"

    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    opts = b""
    if nsec:
        opts = struct.pack(e + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(e + "HH", 0, 0)
    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(block(1, struct.pack(e + "HHI", 1, 0, 262144) + opts))
        for sec, usec, data, orig in frames:
            t = sec * (10**9 if nsec else 10**6) + usec * (1000 if nsec else 1)
            f.write(block(6, struct.pack(e + "IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(data),
                                         max(orig, len(data))) + bytes(data)))


IPV4_RE = re.compile(rb"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def v6_of(a, b, c, d):
    """2001:db8:AABB::CCDD for a.b.c.d, in RFC 5952 canonical text"""
    return ipaddress.IPv6Address(f"2001:db8:{a << 8 | b:x}::{c << 8 | d:x}")


def v6_text(m, bracket):
    parts = [int(x) for x in m.groups()]
    if any(x > 255 for x in parts):
        return m.group(0)
    t = str(v6_of(*parts)).encode()
    return b"[" + t + b"]" if bracket else t


def sip_to_v6(msg):
    """SIP message text with IPv4 addresses as IPv6 ones; Content-Length fixed"""
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = []
    for line in head.split(b"\r\n"):
        name = line.split(b":", 1)[0].strip().lower()
        if name not in (b"call-id", b"i"):
            line = IPV4_RE.sub(lambda m: v6_text(m, True), line)
        lines.append(line)
    if sep:
        body = body.replace(b"IN IP4 ", b"IN IP6 ")
        body = IPV4_RE.sub(lambda m: v6_text(m, False), body)
        for n, line in enumerate(lines):
            name, colon, _ = line.partition(b":")
            if colon and name.strip().lower() in (b"content-length", b"l"):
                lines[n] = name + b": " + str(len(body)).encode()
    return b"\r\n".join(lines) + sep + body


def ipv6_frame(frame):
    """The Ethernet IPv4 UDP `frame` as IPv6, SIP text rewritten; other frames unchanged"""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack(">H", frame[16:18])[0]
    src, dst = v6_of(*frame[26:30]).packed, v6_of(*frame[30:34]).packed
    u = 14 + ihl
    sport, dport, ulen = struct.unpack(">HHH", frame[u:u + 6])
    payload = bytes(frame[u + 8:u + ulen])
    if sport in SIP_PORTS or dport in SIP_PORTS:
        payload = sip_to_v6(payload)
    udp = bytearray(struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)
    pseudo = src + dst + struct.pack(">IxxxB", len(udp), 17)
    ck = ip_checksum(pseudo + bytes(udp) + b"\0" * (len(udp) % 2)) or 0xFFFF
    udp[6:8] = struct.pack(">H", ck)
    ip6 = struct.pack(">IHBB", 6 << 28, len(udp), 17, frame[14 + 8]) + src + dst
    return bytearray(frame[:12] + b"\x86\xdd" + ip6 + udp)


def encap(mode, src, out):
    header, e, frames = read_pcap(src)
    hdr = bytearray(header)
    nfrag = 0
    if mode in ("vlan", "qinq"):
        tags = struct.pack(">HH", 0x8100, 100)
        if mode == "qinq":
            tags = struct.pack(">HH", 0x88A8, 200) + tags
        for fr in frames:
            fr[2] = bytearray(fr[2][:12] + tags + fr[2][12:])
            fr[3] += len(tags)
    elif mode in ("sll", "sll2"):
        for n, fr in enumerate(frames):
            d = fr[2]
            proto, addr = d[12:14], bytes(d[6:12]) + b"\0\0"
            ptype = 4 if n % 2 else 0  # outgoing / to us, as a cooked capture on "any" mixes them
            if mode == "sll":
                h = struct.pack(">HHH", ptype, 1, 6) + addr + proto
            else:
                h = proto + b"\0\0" + struct.pack(">IHBB", 2, 1, ptype, 6) + addr
            fr[2] = bytearray(h + d[14:])
            fr[3] += len(h) - 14
        hdr[20:24] = struct.pack(e + "I", 113 if mode == "sll" else 276)
    elif mode in ("raw", "raw4", "null", "loop"):
        for fr in frames:
            d = fr[2]
            v6 = d[12:14] == b"\x86\xdd"
            fam = 10 if v6 else 2  # Linux AF_INET6; BSDs differ, the reader accepts those too
            h = {"null": struct.pack("<I", fam), "loop": struct.pack(">I", fam)}.get(mode, b"")
            fr[2] = bytearray(h + d[14:])
            fr[3] += len(h) - 14
        hdr[20:24] = struct.pack(e + "I", {"raw": 101, "raw4": 228, "null": 0, "loop": 108}[mode])
    elif mode.startswith("bloat:"):
        n = int(mode.split(":")[1])
        for fr in frames:
            d = fr[2]
            if not sip_with_body(d):
                continue
            u = 14 + (d[14] & 0x0F) * 4
            msg = bytes(d[u + 8:u + struct.unpack(">H", d[u + 4:u + 6])[0]])
            line_end = msg.index(b"\r\n") + 2
            filler = b"X-Filler: " + b"f" * max(0, n - 12) + b"\r\n"
            msg = msg[:line_end] + filler + msg[line_end:]
            d = bytearray(d[:u + 8] + msg)
            d[u + 4:u + 8] = struct.pack(">HH", 8 + len(msg), 0)  # checksum off: payload changed
            d[16:18] = struct.pack(">H", len(d) - 14)
            d[24:26] = b"\0\0"
            d[24:26] = struct.pack(">H", ip_checksum(bytes(d[14:u])))
            fr[2], fr[3] = d, len(d)
    elif mode == "frag" or mode.startswith("frag:"):
        mtu = int(mode.split(":")[1]) if ":" in mode else 296
        res, ident = [], 0x4000
        for sec, usec, d, orig in frames:
            if sip_with_body(d) and 14 + struct.unpack(">H", d[16:18])[0] - 14 > mtu:
                for f in fragment(d, mtu, ident, nfrag % 2 == 1):
                    res.append([sec, usec, f, len(f)])
                nfrag += 1
                ident += 1
            else:
                res.append([sec, usec, d, orig])
        frames = res
    elif mode == "fcs":
        for fr in frames:
            fr[2] = bytearray(fr[2] + struct.pack("<I", zlib.crc32(fr[2])))
            fr[3] += 4
        lt = struct.unpack(e + "I", hdr[20:24])[0]
        hdr[20:24] = struct.pack(e + "I", lt | 1 << 26 | 2 << 28)  # FCS present, 2 x 16 bits
    elif mode == "dup":
        res = []
        for sec, usec, d, orig in frames:
            res.append([sec, usec, d, orig])
            t = sec * 1000000 + usec + 1
            res.append([t // 1000000, t % 1000000, bytearray(d), orig])
        frames = res
    elif mode == "ipv6":
        for fr in frames:
            fr[2] = ipv6_frame(fr[2])
            fr[3] = len(fr[2])
    elif mode == "nsec":
        hdr[0:4] = struct.pack(e + "I", 0xA1B23C4D)
        for fr in frames:
            fr[1] = fr[1] * 1000 + 7  # a few ns that a reader taking them for us would misplace
    elif mode == "be":
        magic, vmaj, vmin, zone, sigf, snap, lt = struct.unpack(e + "IHHiIII", header)
        hdr = bytearray(struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sigf, snap, lt))
        e = ">"
    elif mode in ("pcapng", "pcapng-ns"):
        write_pcapng(out, frames, mode == "pcapng-ns")
        print(f"pcap_tool: {len(frames)} frames as {mode}", file=sys.stderr)
        return
    else:
        raise SystemExit(f"unknown encap mode {mode}")
    if mode != "be":
        snap = struct.unpack(e + "I", hdr[16:20])[0]
        hdr[16:20] = struct.pack(e + "I", max(snap, max((len(f[2]) for f in frames), default=0)))
    write_pcap(out, bytes(hdr), e, frames)
    extra = f", {nfrag} SIP messages fragmented" if nfrag else ""
    print(f"pcap_tool: {len(frames)} frames as {mode}{extra}", file=sys.stderr)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "post":
        post(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "rtp-pcap":
        rtp_pcap(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "encap":
        encap(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "send-malformed":
        send_malformed(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
