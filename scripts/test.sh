#!/usr/bin/env bash
# The whole test suite on real components, in one command:
#   brings up journald, a private systemd --user manager and its session bus
#   (scripts/test-env.sh), runs every test including the system tier, and tears the
#   environment down again, whatever the outcome. Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

# Leave an environment that was already up (a developer's) as it was.
was_up=0
if scripts/test-env.sh status >/dev/null 2>&1; then was_up=1; fi
teardown() { if [ "$was_up" = 0 ]; then scripts/test-env.sh down; fi; }
trap teardown EXIT

env_text=$(scripts/test-env.sh up)
eval "$env_text"

# System tests are #[ignore]d with a reason so a bare `cargo test` counts them as skipped;
# here the environment is up, so every test runs and nothing is skipped.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --run-ignored all --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@" -- --include-ignored
fi
