#!/usr/bin/env bash
# The restart benchmark of issue 12 (see scripts/bench-restart.py): `ccscope restart` of one
# service of the demo stack (dashboard, an HTTP service ready on GET /health), against the
# same program's own stop + start without ccscope and against `systemctl --user restart` of it
# as a transient unit, 20 rounds interleaved, medians and p90s, overhead and ratio in one run.
# The benchmark's config is the demo profile with its readiness probes polling every 10 ms.
# Usage: scripts/bench-restart.sh [--runs N] [--warmup N] [--interval DURATION] [--tight MS]
#   BENCH_RESTART_PROFILE (release; `dev` reuses the debug build, for checking the script).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_RESTART_PROFILE:-release}
cargo build --quiet --profile "$profile" --bin ccscope
case "$profile" in
    dev) exe=$PWD/target/debug/ccscope ;;
    *) exe=$PWD/target/$profile/ccscope ;;
esac
exec scripts/with-test-env.sh python3 scripts/bench-restart.py "$exe" "$@"
