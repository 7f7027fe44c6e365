#!/usr/bin/env bash
# Installs everything meshctl and its test suite need on Debian 12 (as root), then builds meshctl.
# Idempotent: safe to run again. Used by the README quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Optional, not for CI: `bash scripts/setup.sh ansible` installs Debian's Ansible for the benchmark
# (scripts/bench/bench.sh runs it when ansible-playbook is missing) and does nothing else.
if [ "${1:-}" = ansible ]; then
  command -v ansible-playbook >/dev/null && exit 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible time >/dev/null
  echo "setup: $(ansible-playbook --version | head -1)"
  exit 0
fi

debian_packages=(
  debootstrap systemd-container   # lab nodes: Debian base + systemd-nspawn
  iproute2 iptables nftables      # lab networks, NAT routers, port-forwards
  conntrack                       # lab tests reset a router's NAT state after changing a forward
  openssh-client openssh-server   # ssh -G for ~/.ssh/config, ssh-keygen; sshd for the transport tests
  dpkg-dev                        # dpkg-scanpackages for the lab's local apt repository
  tcpdump graphviz                # debug captures in tests; verify --graph (dot -Tsvg)
  ca-certificates procps psmisc util-linux iputils-ping   # ping: the 250-peer script test runs real pings in an empty namespace
  fping                           # the ping script's fping branch is tested against the real fping (empty namespace)
  bubblewrap                      # the simulated farm (scripts/bench/farm) runs node commands in bwrap sandboxes
  dnsmasq-base                    # the lab's DNS server for nat.publicHost names (src/lab/dns.ts)
)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${debian_packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get: skipping Debian packages (lab tests will be skipped)" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
echo "setup: done (meshctl $(node bin/meshctl.js --version))"
