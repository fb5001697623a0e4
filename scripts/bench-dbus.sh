#!/usr/bin/env bash
# The D-Bus benchmark of issue 14 (see scripts/bench-dbus.py): `Restart` of one service of the
# demo stack over ccscope's own bus interface (`busctl --user call`), against the CLI's
# `ccscope restart` of the same service and `systemctl --user restart` of the same program as
# a transient unit, interleaved; then the supervisor's CPU time and wake-ups while idle for
# 60 s with the interface exported and a `busctl monitor` subscribed (target: 0).
# Usage: scripts/bench-dbus.sh [--runs N] [--warmup N] [--interval DURATION] [--idle SECONDS]
#   BENCH_DBUS_PROFILE (release; `dev` reuses the debug build, for checking the script).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_DBUS_PROFILE:-release}
cargo build --quiet --profile "$profile" --bin ccscope
case "$profile" in
    dev) exe=$PWD/target/debug/ccscope ;;
    *) exe=$PWD/target/$profile/ccscope ;;
esac
exec scripts/with-test-env.sh python3 scripts/bench-dbus.py "$exe" "$@"
