#!/usr/bin/env bash
# `npm run bench`: meshctl against the floor and Ansible on labs of 4, 8, 16 and 32 nodes (see scripts/bench/run.ts).
#   npm run bench -- [--sizes 4,8,16,32] [--runs 3] [--no-ansible] [--out docs/bench.json] [--table-only]
# Needs root. Installs Ansible (Debian's package, scripts/setup.sh ansible) when it is missing, unless --no-ansible.
set -euo pipefail
cd "$(dirname "$0")/../.."
for arg in "$@"; do case "$arg" in --table-only) exec node --import tsx scripts/bench/run.ts "$@" ;; esac; done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (it builds labs)" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
case " $* " in
  *" --no-ansible "*) ;;
  *) command -v ansible-playbook >/dev/null || bash scripts/setup.sh ansible ;;
esac
npm run --silent build
exec node --import tsx scripts/bench/run.ts "$@"
