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
"""
import random
import socket
import struct
import sys
import time

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


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "post":
        post(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "rtp-pcap":
        rtp_pcap(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "send-malformed":
        send_malformed(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
