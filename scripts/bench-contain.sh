#!/usr/bin/env bash
# Containment benchmarks on the real systemd user manager and cgroupfs (see benches/contain.rs):
# scope start latency (sequential and concurrent) and the time to kill a 1,000-process service,
# side by side with systemd-run + systemctl kill and a signal-every-pid loop.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-test-env.sh cargo bench --bench contain "$@"
