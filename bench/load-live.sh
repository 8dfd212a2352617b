#!/usr/bin/env bash
# Bounded live load: scripts/live-setup.sh in its namespaces with N SIPp calls, C at once, L s
# each, callrec on af_packet (or --port), then every call judged against tshark's decode of the
# reference capture (tests/load_live.rs). Prints one result line ("load PORT: calls ...").
#
# usage: bench/load-live.sh [-n CALLS] [-c CONCURRENT] [-l SECONDS] [-r RATE] [--port P] [--nice N]
#   defaults: -n 2x concurrency, -c 50, -l 8, -r 10 calls/s, --port af_packet, --nice 0 (callrec's
#   nice; negative puts it ahead of SIPp, which shares the cores). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
N="" C=50 L=8 R=10 P=af_packet NICE=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N="$2"; shift 2 ;;
    -c) C="$2"; shift 2 ;;
    -l) L="$2"; shift 2 ;;
    -r) R="$2"; shift 2 ;;
    --port) P="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "load-live.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$N" ] || N=$((2 * C))
feat=(); [ "$P" = dpdk ] && feat=(--features dpdk)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
CALLREC_LOAD_CALLS=$N CALLREC_LOAD_CONC=$C CALLREC_LOAD_LEN=$L CALLREC_LOAD_RATE=$R CALLREC_LOAD_PORT=$P CALLREC_LOAD_NICE=$NICE \
  cargo test -q --release "${feat[@]}" --test load_live -- --ignored --nocapture load >"$log" 2>&1 || rc=$?
grep -E '^(gap|not recorded)' "$log" | head -n 10 >&2 || true
if ! grep '^load ' "$log"; then tail -n 60 "$log" >&2; fi
exit "$rc"
