#!/usr/bin/env bash
# Benchmark (not a test): wall time and peak RSS of `meshctl up --dry-run` and `up` on a fresh lab, of a second, converged `up`,
# and of `verify` on the healthy mesh.
#   bash scripts/bench-up.sh [INVENTORY] [RUNS]
# Uses the built CLI (dist/), runs meshctl directly in the lab's operator namespace, and removes the lab after.
set -euo pipefail
cd "$(dirname "$0")/.."
inventory=${1:-inventories/homelab.yaml}
runs=${2:-1}
name=bench$$
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
npm run --silent build
trap 'node bin/meshctl.js lab down --name "$name" >/dev/null 2>&1 || true' EXIT
labdir=/var/lib/meshctl/labs/$name
measure() { # label, then meshctl args
  local label=$1; shift
  ip netns exec "ml-$name.operator" env MESHCTL_KNOWN_HOSTS="$labdir/known_hosts" MESHCTL_IDENTITY="$labdir/id_ed25519" \
    /usr/bin/time -f "$label: %e s wall, %U s user, %S s sys, peak RSS %M KiB" node bin/meshctl.js "$@" >/dev/null 2>/tmp/bench-$$.err \
    || { cat /tmp/bench-$$.err >&2; exit 1; }
  tail -1 /tmp/bench-$$.err
}
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  node bin/meshctl.js lab up "$inventory" --name "$name" >/dev/null
  echo "lab up (warm cache): $(echo "$(date +%s.%N) - $start" | bc) s"
  measure "up --dry-run (bare nodes)" up "$inventory" --dry-run
  measure "up, first run (bare nodes)" up "$inventory" --yes
  measure "up, second run (converged)" up "$inventory" --yes
  measure "up, second run, --json" up "$inventory" --yes --json
  measure "verify, healthy mesh" verify "$inventory"
  node bin/meshctl.js lab down --name "$name" >/dev/null
done
