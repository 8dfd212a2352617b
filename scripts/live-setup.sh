#!/usr/bin/env bash
# Live recording in software mode: two network namespaces (customer 192.0.2.10, agent
# 192.0.2.20) joined by a veth pair, `callrec run` reading the agent-side veth inside the agent
# namespace, SIPp calls with RTP both ways across the veth, then SIGTERM to callrec.
#
# usage: live-setup.sh --port af_packet|tap|dpdk --out DIR --capture FILE [--callrec BIN]
#          [--calls N] [--concurrent C] [--length SECONDS] [--codec PCMA|PCMU] [--dn DN]
#          [--other-dn DN] [--other-calls K] [--stop-at SECONDS] [--stop-timeout SECONDS]
#          [-r|--rate CALLS-PER-SECOND] [--nice N] [-- CALLREC-ARGS...]
#   --port af_packet  callrec reads af_packet:<agent veth> (promiscuous: both directions)
#   --port dpdk       callrec (built with --features dpdk) runs DPDK's net_tap PMD, which creates
#                     the TAP <name>; mirrored like --port tap (EAL: --no-huge -m 1024 --no-pci)
#   --port tap        callrec creates tap:<name> in the agent namespace; once it is up, tc
#                     mirrors the agent veth's ingress and egress into it (clsact + u32 match-all
#                     + mirred: this kernel has no matchall/flower classifier)
#   --capture FILE    the reference capture: tcpdump on the agent veth, every frame (not only
#                     UDP), so its packet count is what callrec's port saw
#   --stop-at S       SIGTERM callrec S seconds after the first call starts, mid-call, just
#                     after an RTP packet (the calls run on; callrec must finalize every open
#                     recording); the capture then holds more than callrec read
#   --stop-timeout S  callrec must exit within S seconds of SIGTERM (default 30)
#   -r, --rate R      SIPp's call rate, new calls per second (default 10)
#   --nice N          runs callrec and the reference tcpdump (64 MiB buffer) under `nice -n N`
#                     (negative: ahead of SIPp on a small machine)
#   CALLREC-ARGS      passed to `callrec run` after --port/--out/--record-dn (e.g. --sip-trace T)
# Every call plays the same audio (SIPp's play_pcap_audio of two sox-made files): unlike
# make-capture.sh nothing can rewrite live packets per stream, so judge each call by its
# addresses, not by its sound. IPv6 is off in both namespaces so no router solicitations or MLD
# reach the port: every frame callrec reads is one the calls made (plus ARP).
# Sequence: namespaces -> callrec (port open) -> [tc mirror] -> tcpdump -> SIPp -> tcpdump stop
# -> SIGTERM callrec -> wait for its exit. Namespaces are always deleted.
# prints callrec's stdout, then "callrec-exit RC", "stop-ms MS" (SIGTERM to exit), "sigterm-ns NS"
# (wall clock when SIGTERM was sent), "calls-s S", "left-src 192.0.2.10", "dn DN",
# "other-dn DN", "calls N K", "capture FILE", "cpu-ticks T HZ" (callrec's user + system CPU
# time from /proc just before SIGTERM, in ticks of HZ a second).
# Exit status: 0 when SIPp's calls all completed and callrec exited 0 after SIGTERM.
# Needs root (ip netns, tc), sipp, tcpdump, sox, python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

PORT="" OUT="" CAP="" CALLREC="$HERE/../target/release/callrec"
CALLS=10 CONC=5 LEN=6 CODEC=PCMA DN=2001 OTHER_DN=2999 OTHER_CALLS=0 STOP_TIMEOUT=30
STOP_AT="" RATE=10 NICE=0 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --capture) CAP="$2"; shift 2 ;;
    --callrec) CALLREC="$2"; shift 2 ;;
    --calls) CALLS="$2"; shift 2 ;;
    --concurrent) CONC="$2"; shift 2 ;;
    --length) LEN="$2"; shift 2 ;;
    --codec) CODEC="$2"; shift 2 ;;
    --dn) DN="$2"; shift 2 ;;
    --other-dn) OTHER_DN="$2"; shift 2 ;;
    --other-calls) OTHER_CALLS="$2"; shift 2 ;;
    --stop-timeout) STOP_TIMEOUT="$2"; shift 2 ;;
    --stop-at) STOP_AT="$2"; shift 2 ;;
    -r|--rate) RATE="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "live-setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$PORT" in af_packet|tap|dpdk) ;; *) echo "live-setup.sh: --port af_packet|tap|dpdk is required" >&2; exit 2 ;; esac
[ -n "$OUT" ] || { echo "live-setup.sh: --out DIR is required" >&2; exit 2; }
[ -n "$CAP" ] || { echo "live-setup.sh: --capture FILE is required" >&2; exit 2; }
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
case "$CAP" in /*) ;; *) CAP="$PWD/$CAP" ;; esac
case "$CALLREC" in /*) ;; *) CALLREC="$PWD/$CALLREC" ;; esac
[ -x "$CALLREC" ] || { echo "live-setup.sh: no callrec binary at $CALLREC (cargo build --release, or --callrec BIN)" >&2; exit 2; }
case "$CODEC" in PCMA) PT=8; ENC=a-law ;; PCMU) PT=0; ENC=u-law ;;
  *) echo "live-setup.sh: --codec must be PCMA or PCMU" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "live-setup.sh: needs root (ip netns, tc)" >&2; exit 3; }
for t in ip tc sipp tcpdump sox; do
  command -v "$t" >/dev/null || { echo "live-setup.sh: $t is missing (run scripts/install.sh)" >&2; exit 3; }
done

CUST_IP=192.0.2.10 AGENT_IP=192.0.2.20
TAG="crl$$"
NS_C="$TAG-cust" NS_A="$TAG-agent"
VETH_C="$TAG-c" VETH_A="$TAG-a" TAP="$TAG-t"
WORK="$(mktemp -d /tmp/callrec-live.XXXXXX)"
TCPDUMP_PID="" UAS_PID="" CALLREC_PID="" UAC_PID=""
ms() { date +%s%3N; }

cleanup() {
  set +e
  [ -n "$UAS_PID" ] && kill "$UAS_PID" 2>/dev/null
  [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null
  [ -n "$CALLREC_PID" ] && kill -9 "$CALLREC_PID" 2>/dev/null
  # processes left inside the namespaces (only ours: the namespaces are ours)
  for ns in "$NS_C" "$NS_A"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "/var/run/dpdk/$TAG" 2>/dev/null
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(ms)
# --- audio, as make-capture.sh: one signal per direction, packed into RTP pcaps for SIPp
sox -q -n -r 8000 -c 1 -e "$ENC" -b 8 "$WORK/cust.wav" synth "$LEN" sine 200-2400 synth "$LEN" whitenoise mix vol 0.5
sox -q -n -r 8000 -c 1 -e "$ENC" -b 8 "$WORK/agent.wav" synth "$LEN" sine 3200-500 synth "$LEN" pinknoise mix vol 0.5
"$PY" "$HERE/pcap_tool.py" rtp-pcap "$WORK/cust.wav" "$PT" "$WORK/cust.pcap"
"$PY" "$HERE/pcap_tool.py" rtp-pcap "$WORK/agent.wav" "$PT" "$WORK/agent.pcap"
for role in uac uas; do
  pcap="$WORK/cust.pcap"; [ "$role" = uas ] && pcap="$WORK/agent.pcap"
  sed -e "s/@PT@/$PT/g" -e "s/@CODEC@/$CODEC/g" -e "s#@PCAP@#$pcap#g" -e "s/@MS@/$((LEN * 1000))/g" \
    "$HERE/sipp/$role.xml" > "$WORK/$role.xml"
done

# --- network: customer 192.0.2.10 <-veth-> agent 192.0.2.20, IPv6 off
ip netns add "$NS_C"
ip netns add "$NS_A"
for ns in "$NS_C" "$NS_A"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$VETH_C" type veth peer name "$VETH_A"
ip link set "$VETH_C" netns "$NS_C"
ip link set "$VETH_A" netns "$NS_A"
ip -n "$NS_C" addr add "$CUST_IP/24" dev "$VETH_C"
ip -n "$NS_A" addr add "$AGENT_IP/24" dev "$VETH_A"
for ns in "$NS_C" "$NS_A"; do ip -n "$ns" link set lo up; done
ip -n "$NS_C" link set "$VETH_C" up
ip -n "$NS_A" link set "$VETH_A" up

# --- callrec in the agent namespace
mkdir -p "$OUT"
SPEC="af_packet:$VETH_A"; [ "$PORT" = tap ] && SPEC="tap:$TAP"
if [ "$PORT" = dpdk ]; then
  SPEC=dpdk
  # no hugepages here: --no-huge needs -m for the mbuf pool; --file-prefix keeps runs apart
  EXTRA=(--eal "-l 0 --no-huge -m 1024 --no-pci --file-prefix $TAG --vdev=net_tap0,iface=$TAP" "${EXTRA[@]}")
fi
# `ip netns exec` execs callrec, so this pid is callrec's own and SIGTERM reaches it
ip netns exec "$NS_A" nice -n "$NICE" "$CALLREC" run --port "$SPEC" --out "$OUT" --record-dn "$DN" "${EXTRA[@]}" \
  >"$WORK/callrec.out" 2>"$WORK/callrec.err" &
CALLREC_PID=$!
ready=0
for _ in $(seq 100); do
  kill -0 "$CALLREC_PID" 2>/dev/null || break
  if [ "$PORT" = af_packet ]; then
    # its packet socket is the only one in the namespace until tcpdump starts
    [ "$(ip netns exec "$NS_A" cat /proc/net/packet | wc -l)" -gt 1 ] && { ready=1; break; }
  else
    ip -n "$NS_A" link show dev "$TAP" up 2>/dev/null | grep -q UP && { ready=1; break; }
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "live-setup.sh: callrec did not open $SPEC within 10 s:" >&2
  cat "$WORK/callrec.out" "$WORK/callrec.err" >&2
  exit 1
fi
if [ "$PORT" != af_packet ]; then
  # both directions of the agent veth into the TAP callrec reads
  tc -n "$NS_A" qdisc add dev "$VETH_A" clsact
  for dir in ingress egress; do
    tc -n "$NS_A" filter add dev "$VETH_A" "$dir" protocol all u32 match u32 0 0 \
      action mirred egress mirror dev "$TAP"
  done
fi

ip netns exec "$NS_A" nice -n "$NICE" tcpdump -i "$VETH_A" -s 0 -B 65536 -U -w "$CAP" 2>"$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
T_READY=$(ms)

# --- calls
cd "$WORK"
BOUND=$(( (CALLS / CONC + 2) * (LEN + 5) + OTHER_CALLS * 2 + 30 ))
ip netns exec "$NS_A" timeout "$BOUND" sipp -sf uas.xml -i "$AGENT_IP" -p 5060 -mi "$AGENT_IP" \
  -mp 20000 -nostdin -trace_err >"$WORK/uas.log" 2>&1 &
UAS_PID=$!
sleep 0.3
uac() { # dn, calls, local sip port, rtp port base
  ip netns exec "$NS_C" timeout "$BOUND" sipp -sf uac.xml -i "$CUST_IP" -p "$3" -mi "$CUST_IP" \
    -mp "$4" -s "$1" -m "$2" -l "$CONC" -r "$RATE" \
    -timeout "${BOUND}s" -timeout_error -nostdin -trace_err -default_behaviors all \
    "$AGENT_IP:5060" >"$WORK/uac-$1.log" 2>&1
}
OTHER_PID=""
if [ "$OTHER_CALLS" -gt 0 ]; then
  uac "$OTHER_DN" "$OTHER_CALLS" 5062 40000 & OTHER_PID=$!
fi
# SIGTERM, then wait for callrec to finalize and exit
T_STOP="" T_EXIT="" crc="" CPU_TICKS=""
stop_callrec() {
  # utime + stime (fields 14, 15; the name in field 2 holds no spaces: "(callrec)")
  CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$CALLREC_PID/stat" 2>/dev/null || true)
  T_STOP=$(ms)
  STOP_NS=$(date +%s%N)
  kill -TERM "$CALLREC_PID"
  for _ in $(seq $((STOP_TIMEOUT * 10))); do
    if ! kill -0 "$CALLREC_PID" 2>/dev/null; then
      crc=0; wait "$CALLREC_PID" || crc=$?
      CALLREC_PID=""
      break
    fi
    sleep 0.1
  done
  T_EXIT=$(ms)
  if [ -z "$crc" ]; then
    echo "live-setup.sh: callrec did not exit within $STOP_TIMEOUT s of SIGTERM" >&2
    crc=timeout  # the cleanup kills it
  fi
}
T_CALLS=$(ms)
uac "$DN" "$CALLS" 5061 30000 & UAC_PID=$!
if [ -n "$STOP_AT" ]; then
  sleep "$STOP_AT"
  # right after an RTP packet: the moment it may still sit in the kernel (an AF_PACKET block
  # not yet retired, a TAP queue), which callrec must drain before it finalizes
  ip netns exec "$NS_A" timeout 2 tcpdump --immediate-mode -c 1 -i "$VETH_A" \
    'udp and portrange 20000-39999' -w /dev/null 2>/dev/null || true
  stop_callrec
fi
rc=0
wait "$UAC_PID" || rc=$?
[ -n "$OTHER_PID" ] && { wait "$OTHER_PID" || rc=$?; }
T_CALLS_END=$(ms)
if [ "$rc" != 0 ]; then
  echo "live-setup.sh: sipp uac failed (rc $rc):" >&2; tail -n 30 "$WORK"/uac-*.log >&2 || true
  cat "$WORK"/*errors.log >&2 2>/dev/null || true
fi
sleep 1  # the last 200 OK to BYE and trailing RTP
kill "$UAS_PID" 2>/dev/null; wait "$UAS_PID" 2>/dev/null || true; UAS_PID=""
kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=""
[ -n "$T_STOP" ] || stop_callrec
cat "$WORK/callrec.out"
if [ -s "$WORK/callrec.err" ]; then sed 's/^/callrec stderr: /' "$WORK/callrec.err" >&2; fi
echo "live $PORT: setup $((T_READY - T0)) ms, calls $((T_CALLS_END - T_CALLS)) ms, SIGTERM to exit $((T_EXIT - T_STOP)) ms; $CALLS calls to $DN ($CONC at once, $LEN s, $CODEC), $OTHER_CALLS to $OTHER_DN" >&2
echo "callrec-exit $crc"
echo "stop-ms $((T_EXIT - T_STOP))"
echo "sigterm-ns $STOP_NS"
echo "calls-s $(( (T_CALLS_END - T_CALLS) / 1000 ))"
echo "left-src $CUST_IP"
echo "dn $DN"
echo "other-dn $OTHER_DN"
echo "calls $CALLS $OTHER_CALLS"
echo "capture $CAP"
echo "cpu-ticks ${CPU_TICKS:-0} $(getconf CLK_TCK)"
[ "$rc" = 0 ] && [ "$crc" = 0 ]
