#!/usr/bin/env bash
# The audit benchmark of issue 13 (see scripts/bench-audit.py): 100,000 audit events of one
# project written to journald with ccscope's fields, then `ccscope audit --json` of them
# against `journalctl CCSCOPE_PROJECT=<p> -o json` of the same entries, time to the first
# line and to the end, in one run; and libsystemd's own reader (sd-journal, through
# examples/sd_journal_reader.rs) over the same entries.
# Usage: scripts/bench-audit.sh [--events N]
#   BENCH_AUDIT_PROFILE (release; `dev` reuses the debug build, for checking the script).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_AUDIT_PROFILE:-release}
cargo build --quiet --profile "$profile" --bin ccscope --example sd_journal_reader
case "$profile" in
    dev) dir=$PWD/target/debug ;;
    *) dir=$PWD/target/$profile ;;
esac
exec scripts/with-test-env.sh python3 scripts/bench-audit.py "$dir/ccscope" "$dir/examples/sd_journal_reader" "$@"
