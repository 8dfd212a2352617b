#!/usr/bin/env bash
# Makes a capture of one contact-centre call flow (hold, blind and attended transfer, redirect,
# conference...): every party is its own SIPp process in ONE network namespace, each on its own
# address of the namespace's lo (customer C 192.0.2.10, agents A1..A4 192.0.2.21..24 with DNs
# 2001..2004, conference focus 192.0.2.40), so every packet between parties crosses lo once,
# where tcpdump sees it as a mirror port would. The flows' scenarios and RTP segments come from
# scripts/flows/flows.py (one timeline per flow; `flows.py list` names them); the processes
# start together and keep to the timeline with pauses. Then scripts/pcap_tool.py gives every
# RTP stream its own noise payload, as make-capture.sh does, so no two streams correlate.
#
# usage: make-flow.sh --flow NAME --out FILE.pcap [--keep-audio] [--live CMD...]
#   --keep-audio   keeps the audio as played (each segment of flows.py is already its own
#                  noise, so streams do not correlate either way)
#   --live CMD...  also runs CMD (the rest of the line) inside the namespace from before the
#                  first SIP message to 1 s after the last, then sends it SIGTERM and waits for
#                  it (at most 20 s): for live recording on af_packet:lo. Its output goes to
#                  the script's stderr. Implies --keep-audio: the capture must hold what the
#                  live recorder heard.
# prints the flow's facts (Call-IDs, tags, planned times in ms) on stdout.
# Needs root (ip netns), sipp, tcpdump, python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

FLOW="" OUT="" LIVE=() KEEP_AUDIO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --flow) FLOW="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep-audio) KEEP_AUDIO=1; shift ;;
    --live) shift; LIVE=("$@"); KEEP_AUDIO=1; break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "make-flow.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$FLOW" ] && [ -n "$OUT" ] || { echo "make-flow.sh: --flow NAME and --out FILE are required" >&2; exit 2; }
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
[ "$(id -u)" -eq 0 ] || { echo "make-flow.sh: needs root (ip netns)" >&2; exit 3; }
for t in ip sipp tcpdump; do
  command -v "$t" >/dev/null || { echo "make-flow.sh: $t is missing (run scripts/install.sh)" >&2; exit 3; }
done

NS="crflow$$"
WORK="$(mktemp -d /tmp/callrec-flow.XXXXXX)"
PIDS=() TCPDUMP_PID="" LIVE_PID=""

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$LIVE_PID" ] && kill "$LIVE_PID" 2>/dev/null
  [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null
  # anything left inside the namespace is ours: the namespace is ours
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" "$HERE/flows.py" build "$FLOW" "$WORK/scen"

ip netns add "$NS"
ip -n "$NS" link set lo up
for a in 192.0.2.10 192.0.2.21 192.0.2.22 192.0.2.23 192.0.2.24 192.0.2.40; do
  ip -n "$NS" addr add "$a/32" dev lo
done

CAP_RAW="$WORK/raw.pcap"
ip netns exec "$NS" tcpdump -i lo -s 0 -U -B 8192 -w "$CAP_RAW" udp 2>"$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/tcpdump.log" || { echo "make-flow.sh: tcpdump did not start" >&2; cat "$WORK/tcpdump.log" >&2; exit 1; }

if [ "${#LIVE[@]}" -gt 0 ]; then
  ip netns exec "$NS" "${LIVE[@]}" >&2 &
  LIVE_PID=$!
  sleep "${LIVE_SETTLE:-1}"
fi

# Every process is bounded by its own -timeout and by `timeout`; the flows last <= 20 s.
BOUND=25
cd "$WORK/scen"
START=$(date +%s.%N)
while read -r name ip port mp calls remote cid; do
  args=(-sf "$name.xml" -i "$ip" -p "$port" -mi "$ip" -mp "$mp" -m "$calls" -nostdin -trace_err
        -timeout "${BOUND}s" -timeout_error -default_behaviors bye)
  [ "$cid" != - ] && args+=(-cid_str "$cid")
  [ "$remote" != - ] && args+=("$remote")
  ip netns exec "$NS" timeout "$((BOUND + 5))" sipp "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
done < legs

rc=0 failed=()
for i in "${!PIDS[@]}"; do
  if ! wait "${PIDS[$i]}"; then rc=1; failed+=("${NAMES[$i]}"); fi
done
PIDS=()
END=$(date +%s.%N)
sleep 0.5  # trailing RTP and retransmissions
if [ -n "$LIVE_PID" ]; then
  sleep 0.5
  kill -TERM "$LIVE_PID" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$LIVE_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$LIVE_PID" || echo "make-flow.sh: live command exited with $?" >&2
  LIVE_PID=""
fi
kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=""

if [ "$rc" != 0 ]; then
  echo "make-flow.sh: flow $FLOW: sipp failed for ${failed[*]}:" >&2
  for n in "${failed[@]}"; do echo "--- $n" >&2; tail -n 15 "$WORK/$n.log" >&2; cat "$WORK/scen/${n}"_*errors.log >&2 2>/dev/null; done
  exit 1
fi

POST=(--out "$OUT")
[ "$KEEP_AUDIO" = 1 ] || POST+=(--unique-audio)
"$PY" "$HERE/../pcap_tool.py" post "$CAP_RAW" "${POST[@]}"
echo "capture $OUT: flow $FLOW, $(awk "BEGIN { printf \"%.1f\", $END - $START }") s" >&2
cat "$WORK/scen/facts"
