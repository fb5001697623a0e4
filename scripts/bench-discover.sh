#!/usr/bin/env bash
# The discovery benchmark of issue 5 (see benches/discover.rs): a full scan with 2,000 live
# processes and 5,000 listening sockets, side by side with `ss -ltnp`, `lsof -i -P -n` and
# psutil. Installs psutil into target/bench-venv on first use; needs ss (iproute2) and lsof.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import psutil' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet psutil
fi
ulimit -n 65536 2>/dev/null || true
BENCH_PYTHON="$PWD/$venv/bin/python3" exec cargo bench --bench discover "$@"
