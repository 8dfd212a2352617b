#!/usr/bin/env bash
# Installs every system package callrec's build, demo and tests use. Idempotent: when all
# packages are present it only checks them (no apt-get update), so it is quick to re-run.
set -euo pipefail

PKGS=(
  sip-tester        # SIPp: makes the test captures (uac/uas with RTP streams)
  tshark            # the tests' reference RTP decode
  tcpdump           # captures the veth between the namespaces
  iproute2          # ip netns, veth
  nftables          # packet loss in the namespaces (this kernel has no netem)
  sox               # generates the two G.711 test signals
  python3           # post-processing of captures (SSRC collisions, reordering, malformed SIP)
  python3-numpy     # the shared reference judge (check_recordings.py)
  build-essential   # the Rust toolchain's linker
  pkg-config
  libdpdk-dev       # DPDK 22.11: the `dpdk` port's libraries and headers (callrec-dpdk)
  libclang-dev      # bindgen, which generates callrec-dpdk's binding from the DPDK headers
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -E); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without this preseed the wireshark-common postinst asks whether non-root may capture.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | "${SUDO[@]}" debconf-set-selections
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install.sh: system packages already installed"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  # The machines this project runs on carry a rustup toolchain; nothing here downloads one.
  echo "install.sh: cargo is missing: install the Rust toolchain (rustup, stable) and re-run" >&2
  exit 1
fi
echo "install.sh: $(cargo --version)"
