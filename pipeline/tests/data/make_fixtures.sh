#!/bin/sh
# Regenerates the real-tool fixtures used by tests/pcap_file.rs (needs root, tcpdump, editcap,
# python3). Traffic stays inside a throwaway network namespace on loopback; lo's MTU is lowered
# so the 3000-byte datagram fragments.
set -eu
out=$(cd "$(dirname "$0")" && pwd)
ns=callrec-fixture-$$
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link set lo up
ip -n "$ns" link set lo mtu 1500
ip netns exec "$ns" tcpdump -q -U -i lo -w "$out/lo_eth.pcap" udp or ip6 2>/dev/null &
p1=$!
ip netns exec "$ns" tcpdump -q -U -i any --time-stamp-precision nano -w "$out/any_sll2_ns.pcap" udp or ip6 2>/dev/null &
p2=$!
sleep 1
ip netns exec "$ns" python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\r\n", ("127.0.0.1", 5060))
s.sendto(bytes((i * 7) % 251 for i in range(3000)), ("127.0.0.1", 5060))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
# Destination-options extension header (PadN) so the IPv6 walk is exercised.
s6.setsockopt(socket.IPPROTO_IPV6, 59, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s6.sendto(b"v6 with dstopts", ("::1", 5062))
PY
sleep 1
kill "$p1" "$p2"
wait "$p1" "$p2" || true
editcap -F pcapng "$out/lo_eth.pcap" "$out/lo_eth.pcapng"
