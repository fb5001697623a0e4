#!/usr/bin/env bash
# The container benchmark of issue 11 (see scripts/bench-docker.py): 10 busybox container
# services, one ignoring SIGTERM, stop timeout 3 s, under ccscope, plain `docker run -d` /
# `docker stop` in parallel, and docker-compose, side by side in one run.
# docker-compose 1.29 comes from Debian (apt-get, as root) or else PyPI into
# target/bench-docker-venv; if neither installs, the compose column is skipped and says so.
# Usage: scripts/bench-docker.sh [--services N] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."

compose=$(command -v docker-compose || true)
if [ -z "$compose" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench-docker: installing docker-compose (Debian)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null 2>&1 || true
    compose=$(command -v docker-compose || true)
fi
venv=target/bench-docker-venv
if [ -z "$compose" ] && [ -x "$venv/bin/docker-compose" ]; then compose=$PWD/$venv/bin/docker-compose; fi
if [ -z "$compose" ]; then
    echo "bench-docker: installing docker-compose (PyPI) into $venv" >&2
    if python3 -m venv "$venv" && "$venv/bin/pip" install --quiet docker-compose; then
        compose=$PWD/$venv/bin/docker-compose
    else
        echo "bench-docker: docker-compose could not be installed; its column is skipped" >&2
    fi
fi

cargo build --release --quiet
exec scripts/with-test-env.sh python3 scripts/bench-docker.py \
    "$PWD/target/release/ccscope" ${compose:+--compose "$compose"} "$@"
