#!/usr/bin/env bash
# Replay throughput of callrec side by side with tshark and tcpdump reading the same capture,
# in the same run. Each tool runs 3 times; the best wall time counts (page cache warm for all).
#
# usage: bench/bench-replay.sh [CAPTURE]
#   without CAPTURE, makes the largest capture the tests make (50 calls, 25 concurrent) with
#   scripts/make-capture.sh (needs root for network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$cap" ]; then
    cap=$work/bench.pcap
    bash scripts/make-capture.sh --calls 50 --concurrent 25 --length 8 --codec PCMA --out "$cap" >/dev/null
fi
cargo build --release -q
bin=target/release/callrec
packets=$(tshark -r "$cap" -T fields -e frame.number 2>/dev/null | wc -l)
best() { # best wall seconds of 3 runs of "$@"
    local b=""
    for _ in 1 2 3; do
        local t0 t1
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        b=$(python3 -c "t=$t1-$t0; b='$b'; print(t if b=='' or t<float(b) else b)")
    done
    echo "$b"
}
t_callrec=$(best "$bin" replay "$cap" --out "$work/out" --record-dn 2001)
t_tshark=$(best tshark -r "$cap")
t_tshark_rtp=$(best tshark -r "$cap" -o rtp.heuristic_rtp:TRUE -Y rtp)
t_tcpdump=$(best tcpdump -r "$cap" -w /dev/null)
echo "capture: $cap ($packets packets, $(du -h "$cap" | cut -f1))"
python3 - "$packets" "$t_callrec" "$t_tshark" "$t_tshark_rtp" "$t_tcpdump" <<'PY'
import sys
n = int(sys.argv[1]); rows = [("callrec replay (records)", float(sys.argv[2])), ("tshark -r", float(sys.argv[3])),
    ("tshark -r -Y rtp (heuristic)", float(sys.argv[4])), ("tcpdump -r -w /dev/null", float(sys.argv[5]))]
print(f"{'tool':32} {'wall s':>9} {'packets/s':>12} {'vs callrec':>10}")
for name, t in rows:
    print(f"{name:32} {t:9.4f} {n / t:12.0f} {t / rows[0][1]:9.1f}x")
PY
