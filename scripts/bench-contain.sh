#!/usr/bin/env bash
# Containment benchmarks on the real systemd user manager and cgroupfs (see benches/contain.rs):
# scope start latency (sequential and concurrent) and the time to kill a 1,000-process service,
# side by side with systemd-run + systemctl kill and a signal-every-pid loop.
set -euo pipefail
cd "$(dirname "$0")/.."
was_up=0
if scripts/test-env.sh status >/dev/null 2>&1; then was_up=1; fi
teardown() { if [ "$was_up" = 0 ]; then scripts/test-env.sh down; fi; }
trap teardown EXIT
eval "$(scripts/test-env.sh up)"
cargo bench --bench contain "$@"
