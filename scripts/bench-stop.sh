#!/usr/bin/env bash
# The stop benchmark of issue 4 (see scripts/bench-stop.py): a generated 40-service stack of
# escaping, SIGTERM-ignoring processes under ccscope, supervisord and plain systemd-run scopes,
# side by side in one run. Installs supervisor (pip) into target/bench-venv on first use.
# Usage: scripts/bench-stop.sh [--services N] [--idle SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/supervisord" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet supervisor
fi
cargo build --release --quiet
exec scripts/with-test-env.sh python3 scripts/bench-stop.py \
    "$PWD/target/release/ccscope" "$PWD/$venv/bin/supervisord" "$PWD/$venv/bin/supervisorctl" "$@"
