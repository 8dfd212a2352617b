#!/usr/bin/env bash
# Makes a test capture of real SIP calls: two network namespaces (customer, agent) joined by a
# veth pair, SIPp UAC in the customer namespace calling a SIPp UAS in the agent namespace, RTP
# both ways with different audio, tcpdump on the agent-side veth (where a mirror port would be).
#
# usage: make-capture.sh --out FILE [--calls N] [--concurrent C] [--length SECONDS]
#          [--codec PCMA|PCMU] [--dn DN] [--other-dn DN] [--other-calls K] [--loss PCT]
#          [--reorder PCT] [--malformed] [--keep-audio]
#   --other-calls K  K more calls to --other-dn (not to be recorded), from their own UAC
#   --loss PCT       nftables drops PCT % of RTP on each veth's egress (no netem on this kernel)
#   --reorder PCT    swaps PCT % of each stream's packets with the next one, in the pcap
#   --malformed      sends seven malformed SIP datagrams to 192.0.2.30:5060 mid-run
#   --keep-audio     keeps SIPp's audio; by default every stream gets its own noise payload
#                    (scripts/pcap_tool.py says why) so no two calls correlate
# Every RTP stream has SSRC 0x5EEDCA11: SSRCs collide across all calls by construction.
# prints on its last lines: "left-src 192.0.2.10", "dn <DN>", "other-dn <DN>", "calls <N> <K>".
# Needs root (ip netns), sipp, tcpdump, sox, nft (with --loss), python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

OUT="" CALLS=20 CONC=10 LEN=6 CODEC=PCMA DN=2001 OTHER_DN=2999 OTHER_CALLS=0
LOSS=0 REORDER=0 MALFORMED=0 KEEP_AUDIO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --calls) CALLS="$2"; shift 2 ;;
    --concurrent) CONC="$2"; shift 2 ;;
    --length) LEN="$2"; shift 2 ;;
    --codec) CODEC="$2"; shift 2 ;;
    --dn) DN="$2"; shift 2 ;;
    --other-dn) OTHER_DN="$2"; shift 2 ;;
    --other-calls) OTHER_CALLS="$2"; shift 2 ;;
    --loss) LOSS="$2"; shift 2 ;;
    --reorder) REORDER="$2"; shift 2 ;;
    --malformed) MALFORMED=1; shift ;;
    --keep-audio) KEEP_AUDIO=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "make-capture.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "make-capture.sh: --out FILE is required" >&2; exit 2; }
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
case "$CODEC" in PCMA) PT=8; ENC=a-law ;; PCMU) PT=0; ENC=u-law ;;
  *) echo "make-capture.sh: --codec must be PCMA or PCMU" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "make-capture.sh: needs root (ip netns)" >&2; exit 3; }
for t in ip sipp tcpdump sox; do
  command -v "$t" >/dev/null || { echo "make-capture.sh: $t is missing (run scripts/install.sh)" >&2; exit 3; }
done

CUST_IP=192.0.2.10 AGENT_IP=192.0.2.20 SINK_IP=192.0.2.30
TAG="cr$$"
NS_C="$TAG-cust" NS_A="$TAG-agent"
WORK="$(mktemp -d /tmp/callrec-capture.XXXXXX)"
TCPDUMP_PID="" UAS_PID=""

cleanup() {
  set +e
  [ -n "$UAS_PID" ] && kill "$UAS_PID" 2>/dev/null
  [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null
  # processes left inside the namespaces (only ours: the namespaces are ours)
  for ns in "$NS_C" "$NS_A"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- audio: two distinct signals, one per direction, as G.711 WAVs of the call's codec.
# Sweeps in opposite directions over different bands plus differently coloured noise, so a
# window of one never correlates with the other.
DUR=$LEN
sox -q -n -r 8000 -c 1 -e "$ENC" -b 8 "$WORK/cust.wav" synth "$DUR" sine 200-2400 synth "$DUR" whitenoise mix vol 0.5
sox -q -n -r 8000 -c 1 -e "$ENC" -b 8 "$WORK/agent.wav" synth "$DUR" sine 3200-500 synth "$DUR" pinknoise mix vol 0.5
# SIPp 3.6.1's rtp_stream sends every call of a process from the same -mp port, so concurrent
# calls would share an address pair; play_pcap_audio sends from [auto_media_port], one port per
# call (-mp + 4 * (call - 1)). So the WAVs are packed into RTP pcaps, both with one SSRC.
"$PY" "$HERE/pcap_tool.py" rtp-pcap "$WORK/cust.wav" "$PT" "$WORK/cust.pcap"
"$PY" "$HERE/pcap_tool.py" rtp-pcap "$WORK/agent.wav" "$PT" "$WORK/agent.pcap"
for role in uac uas; do
  pcap="$WORK/cust.pcap"; [ "$role" = uas ] && pcap="$WORK/agent.pcap"
  sed -e "s/@PT@/$PT/g" -e "s/@CODEC@/$CODEC/g" -e "s#@PCAP@#$pcap#g" -e "s/@MS@/$((LEN * 1000))/g" \
    "$HERE/sipp/$role.xml" > "$WORK/$role.xml"
done

# --- network: customer 192.0.2.10 <-veth-> agent 192.0.2.20
ip netns add "$NS_C"
ip netns add "$NS_A"
ip link add "$TAG-c" type veth peer name "$TAG-a"
ip link set "$TAG-c" netns "$NS_C"
ip link set "$TAG-a" netns "$NS_A"
ip -n "$NS_C" addr add "$CUST_IP/24" dev "$TAG-c"
ip -n "$NS_A" addr add "$AGENT_IP/24" dev "$TAG-a"
# a second agent-side address with no SIP listener: the malformed SIP goes there, because a
# malformed INVITE with SDP makes the SIPp UAS exit (extract_rtp_remote_addr is fatal)
ip -n "$NS_A" addr add "$SINK_IP/24" dev "$TAG-a"
for ns in "$NS_C" "$NS_A"; do ip -n "$ns" link set lo up; done
ip -n "$NS_C" link set "$TAG-c" up
ip -n "$NS_A" link set "$TAG-a" up

if [ "$LOSS" != 0 ]; then
  # This kernel has no netem qdisc, so loss is made by nftables on each veth's egress hook:
  # dropped packets never reach the wire, so the capture shows the loss as a mirror port would.
  # Not the output hook: a drop there fails the sender's sendto with EPERM, and SIPp's
  # play_pcap_audio stops the whole stream at its first failed send. (An egress drop reads as
  # ENOBUFS, which UDP and raw sockets swallow.)
  command -v nft >/dev/null || { echo "make-capture.sh: nft is missing (run scripts/install.sh)" >&2; exit 3; }
  for side in c a; do
    ns="$NS_C"; [ "$side" = a ] && ns="$NS_A"
    ip netns exec "$ns" nft -f - <<NFT
table netdev callrec_loss {
  chain egress {
    type filter hook egress device "$TAG-$side" priority 0; policy accept;
    ip protocol udp udp sport 20000-49999 udp dport 20000-49999 numgen random mod 100 < $LOSS drop
  }
}
NFT
  done
fi

CAP_RAW="$WORK/raw.pcap"
ip netns exec "$NS_A" tcpdump -i "$TAG-a" -s 0 -U -w "$CAP_RAW" udp 2>"$WORK/tcpdump.log" &
TCPDUMP_PID=$!
# tcpdump prints "listening on" once the capture is armed
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done

cd "$WORK"
BOUND=$(( (CALLS / CONC + 2) * (LEN + 5) + OTHER_CALLS * 2 + 30 ))
ip netns exec "$NS_A" timeout "$BOUND" sipp -sf uas.xml -i "$AGENT_IP" -p 5060 -mi "$AGENT_IP" \
  -mp 20000 -nostdin -trace_err >"$WORK/uas.log" 2>&1 &
UAS_PID=$!
sleep 0.3

uac() { # dn, calls, local sip port, rtp port base
  ip netns exec "$NS_C" timeout "$BOUND" sipp -sf uac.xml -i "$CUST_IP" -p "$3" -mi "$CUST_IP" \
    -mp "$4" -s "$1" -m "$2" -l "$CONC" -r 10 \
    -timeout "${BOUND}s" -timeout_error -nostdin -trace_err -default_behaviors all \
    "$AGENT_IP:5060" >"$WORK/uac-$1.log" 2>&1
}
MAL_PID=""
if [ "$MALFORMED" = 1 ]; then
  # sent mid-run from the customer side to SIP port 5060, as a broken peer would
  ( sleep "$(( LEN / 2 + 1 ))"; ip netns exec "$NS_C" "$PY" "$HERE/pcap_tool.py" send-malformed "$SINK_IP" 5060 "$DN" ) &
  MAL_PID=$!
fi
OTHER_PID=""
if [ "$OTHER_CALLS" -gt 0 ]; then
  uac "$OTHER_DN" "$OTHER_CALLS" 5062 40000 & OTHER_PID=$!
fi
START=$(date +%s)
rc=0
uac "$DN" "$CALLS" 5061 30000 || rc=$?
[ -n "$OTHER_PID" ] && { wait "$OTHER_PID" || rc=$?; }
[ -n "$MAL_PID" ] && wait "$MAL_PID" || true
# loss only touches RTP ports, so every call must still complete
if [ "$rc" != 0 ]; then
  echo "make-capture.sh: sipp uac failed (rc $rc):" >&2; tail -n 30 "$WORK"/uac-*.log >&2 || true
  cat "$WORK"/*errors.log >&2 2>/dev/null || true
  exit 1
fi
sleep 1  # the last 200 OK to BYE and trailing RTP
kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=""
END=$(date +%s)

POST=(--out "$OUT")
[ "$KEEP_AUDIO" = 1 ] || POST+=(--unique-audio)
[ "$REORDER" != 0 ] && POST+=(--reorder "$REORDER")
"$PY" "$HERE/pcap_tool.py" post "$CAP_RAW" "${POST[@]}"

echo "capture $OUT: $CALLS calls to $DN, $OTHER_CALLS to $OTHER_DN, $CODEC, loss $LOSS%, reorder $REORDER%, malformed $MALFORMED, $((END - START)) s of calls" >&2
echo "left-src $CUST_IP"
echo "dn $DN"
echo "other-dn $OTHER_DN"
echo "calls $CALLS $OTHER_CALLS"
