#!/usr/bin/env bash
# The whole test suite on real components, in one command: brings up journald, a private
# systemd --user manager and its session bus (scripts/test-env.sh), runs every test including
# the system tier, and tears the environment down again. Extra arguments go to the test runner.
#
# System tests are #[ignore]d with a reason so a bare `cargo test` counts them as skipped;
# here the environment is up, so every test runs and nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
    exec scripts/with-test-env.sh cargo nextest run --workspace --run-ignored all --no-fail-fast "$@"
else
    exec scripts/with-test-env.sh cargo test --workspace --no-fail-fast "$@" -- --include-ignored
fi
