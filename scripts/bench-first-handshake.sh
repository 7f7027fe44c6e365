#!/usr/bin/env bash
# Benchmark (not a test): how long fresh pairs take to answer. RUNS times: a fresh lab, `meshctl up --json`, then
# every matrix cell that failed or took over 500 ms (a handshake retried after REKEY_TIMEOUT shows as ~5000 ms).
#   bash scripts/bench-first-handshake.sh [INVENTORY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
inventory=${1:-inventories/homelab.yaml}
runs=${2:-10}
name=hs$$
npm run --silent build
trap 'node bin/meshctl.js lab down --name "$name" >/dev/null 2>&1 || true' EXIT
for i in $(seq "$runs"); do
  node bin/meshctl.js lab up "$inventory" --name "$name" >/dev/null
  rc=0
  node bin/meshctl.js lab run --name "$name" -- up "$inventory" --yes --json >"/tmp/$name.json" 2>/dev/null || rc=$?
  node -e '
    const [file, run, rc] = process.argv.slice(1);
    const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
    const slow = [];
    for (const a of r.matrix.nodes) for (const b of r.matrix.nodes) {
      const c = a === b ? undefined : r.matrix.cells[a][b];
      if (c && (!c.ok || (c.rttMs ?? 0) > 500)) slow.push(`${a}->${b} ${c.ok ? `${Math.round(c.rttMs)} ms` : "FAIL"}`);
    }
    console.log(`run ${run}: exit ${rc}, ping phase ${r.phases.at(-1).durationMs} ms${slow.length ? `, slow: ${slow.join(", ")}` : ""}`);
  ' "/tmp/$name.json" "$i" "$rc"
  node bin/meshctl.js lab down --name "$name" >/dev/null
done
rm -f "/tmp/$name.json"
