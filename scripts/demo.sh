#!/usr/bin/env bash
# Installs what is needed, builds, and records the bundled example capture (examples/demo.pcap,
# 4 calls to DN 2001 and 1 to DN 2999) into out/demo/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release
rm -rf out/demo
mkdir -p out/demo
target/release/callrec replay examples/demo.pcap --out out/demo --record-dn 2001 \
  --sip-trace out/demo/sip-trace.txt
echo
echo "demo.sh: files in out/demo/ (left channel = customer, right = agent):"
ls -l out/demo/
