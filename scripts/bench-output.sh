#!/usr/bin/env bash
# The output-throughput benchmark of issue 13 (see scripts/bench-output.py): a service writing
# BENCH_OUTPUT_LINES (default 2,000,000) short lines as fast as it can, its lines sent to
# journald three ways in one run: through ccscope's forwarder, by systemd itself (the same
# program under `systemd-run --user`, its stdout a journal stream), and piped to `systemd-cat`.
# Lines per second reaching journald, lines lost (counted back from the journal), the
# forwarder's CPU time and resident memory.
#
# It runs in a private mount namespace with a journald of its own (rate limit off, storage on
# a tmpfs) and a user manager of its own, so neither the shared journald's rate limit nor its
# disk is touched, and nothing else that runs on the machine is disturbed.
# Usage: scripts/bench-output.sh        (as root)
#   BENCH_OUTPUT_LINES   lines per method (default 2000000)
#   BENCH_OUTPUT_PROFILE cargo profile of ccscope (release; `dev` reuses the debug build,
#                        for checking the script)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_OUTPUT_PROFILE:-release}
cargo build --quiet --profile "$profile" --bin ccscope
case "$profile" in
    dev) exe=$PWD/target/debug/ccscope ;;
    *) exe=$PWD/target/$profile/ccscope ;;
esac
exec scripts/with-test-env.sh python3 scripts/bench-output.py "$exe" "$@"
