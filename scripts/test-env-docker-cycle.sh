#!/usr/bin/env bash
# Checks that scripts/test-env.sh's Docker part leaves nothing: up-docker / down-docker twice
# (with containers still running at each down, one of them ignoring SIGTERM, one on a network
# of its own with a published port), then once with
# the daemon SIGKILLed before down-docker. It runs in private network and mount namespaces
# (its own docker0, iptables tables, /run and /var/lib), so a live test environment and its
# dockerd stay untouched; cgroupfs is shared, and only what this daemon made is removed there.
# Root only. Exit 0 when every round left nothing.
#   scripts/test-env-docker-cycle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-env-docker-cycle: needs root" >&2; exit 2; }

if [ "${1:-}" != --inside ]; then
    exec unshare --net --mount --propagation private "$0" --inside
fi

mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
ip link set lo up
export CCSCOPE_TEST_ENV_DIR=/run/ccscope-test-env-cycle
unset DOCKER_HOST

# What a daemon could leave, in this namespace.
snapshot() {
    echo "links: $(ip -o link | awk -F': ' '{ print $2 }' | tr '\n' ' ')"
    local ipt table
    for ipt in iptables-nft ip6tables-nft; do
        for table in filter nat; do echo "$ipt $table: $("$ipt" -t "$table" -S 2>/dev/null | tr '\n' '|')"; done
    done
    echo "legacy tables: $(cat /proc/net/ip_tables_names /proc/net/ip6_tables_names 2>/dev/null | tr '\n' ' ')"
    echo "run: $(ls -A /run | grep -v '^ccscope-test-env-cycle$' | tr '\n' ' ')"
    echo "var/lib: $(ls -A /var/lib | tr '\n' ' ')"
    echo "ip_forward: $(cat /proc/sys/net/ipv4/ip_forward)"
}

# Mounts under /run and /var/lib as "ID PATH" (those copied from the parent namespace sit
# hidden under our tmpfs mounts; only new ones count).
mounts() { awk '$5 ~ "^/(run|var/lib)/" { print $1, $5 }' /proc/self/mountinfo | sort; }

# cgroup directories of containers $@ (cgroupfs is shared: others' containers come and go).
container_cgroups() {
    local m id
    for m in $(awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo); do
        for id in "$@"; do [ ! -d "$m/docker/$id" ] || echo "$m/docker/$id"; done
    done
}

# Live non-zombie pids among $@.
live() { local p; for p in "$@"; do [ -e "/proc/$p" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && echo "$p"; done; true; }

daemon_pids() {
    local pids
    pids="$(cat "$CCSCOPE_TEST_ENV_DIR/dockerd.pid") $(cat /run/docker/containerd/containerd.pid 2>/dev/null || true)"
    local f p
    for f in /run/docker/containerd/daemon/io.containerd.runtime.v2.task/*/*/init.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f"); pids="$pids $p $(awk '$1 == "PPid:" { print $2 }' "/proc/$p/status" 2>/dev/null || true)"
    done
    echo "$pids"
}

before=$(snapshot)
mounts_before=$(mounts)
failed=0
for round in 1 2 kill; do
    scripts/test-env.sh up-docker >/dev/null
    docker run -d --label ccscope.test=1 -p 127.0.0.1:18099:80 ccscope-test/busybox:latest httpd -f -p 80 -h /etc >/dev/null
    docker run -d --label ccscope.test=1 ccscope-test/busybox:latest sh -c "trap '' TERM; sleep 1000 & wait" >/dev/null
    # A user-defined network (as compose makes): its own bridge and rules.
    docker network create --label ccscope.test=1 ccscope-cycle >/dev/null
    docker run -d --label ccscope.test=1 --network ccscope-cycle -p 127.0.0.1:18098:80 ccscope-test/busybox:latest httpd -f -p 80 -h /etc >/dev/null
    pids=$(daemon_pids)
    ids=$(docker ps -aq --no-trunc)
    if [ "$round" = kill ]; then kill -KILL "$(cat "$CCSCOPE_TEST_ENV_DIR/dockerd.pid")"; fi
    scripts/test-env.sh down-docker
    after=$(snapshot)
    left=$(live $pids)
    # shellcheck disable=SC2086
    cgroups=$(container_cgroups $ids)
    new_mounts=$(comm -13 <(echo "$mounts_before") <(mounts))
    if [ "$before" = "$after" ] && [ -z "$left" ] && [ -z "$cgroups" ] && [ -z "$new_mounts" ]; then
        echo "round $round: nothing left"
    else
        failed=1
        echo "round $round: LEFT"
        diff <(echo "$before") <(echo "$after") || true
        [ -z "$left" ] || echo "processes: $left"
        [ -z "$cgroups" ] || echo "cgroups: $cgroups"
        [ -z "$new_mounts" ] || echo "mounts: $new_mounts"
    fi
done
exit "$failed"
