#!/usr/bin/env bash
# Runs the test suite with node's built-in runner, as one run so there is one summary.
#   scripts/test.sh          all tests (lab tests skip themselves when not root or without systemd-nspawn)
#   scripts/test.sh unit     pure, fast tests only
#   scripts/test.sh FILE...  the named files
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-all}" in
  unit) mapfile -t files < <(find test/unit -name '*.test.ts' | sort) ;;
  integration) mapfile -t files < <(find test/integration -name '*.test.ts' | sort) ;;
  lab) mapfile -t files < <(find test/lab -name '*.test.ts' | sort) ;;
  all) mapfile -t files < <(find test/unit test/integration test/lab -name '*.test.ts' | sort) ;;
  *) files=("$@") ;;
esac
# Test files run two at a time (MESHCTL_TEST_JOBS, one per core): each lab file builds its own lab under its own
# name, so two files side by side share nothing but the cores.
exec node --import tsx --test --test-concurrency="${MESHCTL_TEST_JOBS:-2}" --test-reporter=spec "${files[@]}"
