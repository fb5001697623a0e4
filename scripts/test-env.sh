#!/usr/bin/env bash
# The real components ccscope talks to, brought up for its tests: journald, a private
# `systemd --user` manager in its own cgroup, and that manager's session bus; and, as root, a
# second user manager and session bus for the unprivileged test user ccscope-other, in a cgroup
# tree that user owns, with a terminal-like scope (user@UID.service/app.slice/term.scope) for
# the tests to run that user's commands from, as a desktop terminal sits in app-*.scope; and a
# Docker daemon (Debian's docker.io, started by hand where none answers) with an offline test
# image, ccscope-test/busybox:latest (no registry can be reached: a busybox rootfs, imported).
#
#   scripts/test-env.sh up          bring them up (idempotent: adds only what is missing);
#                                   prints the environment to export
#   scripts/test-env.sh env         print the environment to export (eval "$(scripts/test-env.sh env)")
#   scripts/test-env.sh status      say what runs and who started it
#   scripts/test-env.sh down        stop what `up` started (idempotent); leaves no process or cgroup
#   scripts/test-env.sh down-other  stop only ccscope-other's manager, bus and cgroups (root's
#                                   manager, bus and journald stay up); `up` brings it back
#   scripts/test-env.sh up-docker   bring up only dockerd and the test image
#   scripts/test-env.sh down-docker stop only the dockerd `up` started and remove what it left
#                                   (docker0, its iptables chains, /run/docker, its cgroups);
#                                   the rest stays up; `up` brings it back
#
# On a host that already has a user manager and a session bus (a real workstation), `up`
# uses them and changes nothing; `down` then changes nothing either.
#
# Everything `up` starts is recorded under $CCSCOPE_TEST_ENV_DIR (default /run/ccscope-test-env)
# and `down` stops exactly that: by recorded pid and by the cgroup it made, never by pattern.
set -euo pipefail

ENV_DIR=${CCSCOPE_TEST_ENV_DIR:-/run/ccscope-test-env}
# Unix socket paths are limited to 108 bytes: keep the runtime directory short.
RUNTIME_DIR="$ENV_DIR/rt"
# Another slice (and $CCSCOPE_TEST_ENV_DIR) gives a second, independent environment.
SLICE=${CCSCOPE_TEST_ENV_SLICE:-ccscope-test.slice}
MANAGER_CGROUP="$SLICE/user@$(id -u).service"
DEADLINE_SECONDS=${CCSCOPE_TEST_ENV_DEADLINE:-20}

say() { printf 'test-env: %s\n' "$*" >&2; }
die() { printf 'test-env: error: %s\n' "$*" >&2; exit 1; }

# The cgroup2 mount, read from mountinfo (v2-only hosts: /sys/fs/cgroup; hybrid: .../unified).
cgroup2_mount() { awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo; }
# The v1 name=systemd hierarchy of hybrid hosts, if there is one.
systemd_v1_mount() { awk '$9 == "cgroup" && $NF ~ /(^|,)name=systemd(,|$)/ { print $5; exit }' /proc/self/mountinfo; }

# Runs "$@" until it succeeds or the deadline passes; polling a condition with a deadline.
wait_until() {
    local what=$1; shift
    local end=$((SECONDS + DEADLINE_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then
            die "timed out after ${DEADLINE_SECONDS}s waiting for $what"
        fi
        sleep 0.05
    done
}

alive() { [ -n "${1:-}" ] && [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Waits until pid $1 is gone (absent or a zombie), with the deadline.
wait_gone() { local end=$((SECONDS + DEADLINE_SECONDS)); while alive "$1"; do ((SECONDS < end)) || return 1; sleep 0.05; done; }

journald_works() { systemd-cat -t ccscope-test-env true 2>/dev/null; }

manager_running() {
    local state
    state=$(XDG_RUNTIME_DIR=$RUNTIME_DIR systemctl --user is-system-running 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ]
}

bus_answers() {
    DBUS_SESSION_BUS_ADDRESS="unix:path=$RUNTIME_DIR/bus" XDG_RUNTIME_DIR=$RUNTIME_DIR \
        busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping
}

# A host whose own user manager and session bus already answer in this environment.
host_has_user_manager() {
    [ -n "${XDG_RUNTIME_DIR:-}" ] && [ "${XDG_RUNTIME_DIR}" != "$RUNTIME_DIR" ] || return 1
    [ -S "${XDG_RUNTIME_DIR}/bus" ] || [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || return 1
    busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping >/dev/null 2>&1
}

print_env() {
    if [ -f "$ENV_DIR/external" ] || { [ ! -d "$ENV_DIR" ] && host_has_user_manager; }; then
        printf 'export XDG_RUNTIME_DIR=%q\n' "$XDG_RUNTIME_DIR"
        printf 'export DBUS_SESSION_BUS_ADDRESS=%q\n' "${DBUS_SESSION_BUS_ADDRESS:-unix:path=$XDG_RUNTIME_DIR/bus}"
    else
        printf 'export XDG_RUNTIME_DIR=%q\n' "$RUNTIME_DIR"
        printf 'export DBUS_SESSION_BUS_ADDRESS=%q\n' "unix:path=$RUNTIME_DIR/bus"
    fi
    printf 'export CCSCOPE_TEST_ENV=1\n'
    print_other_env
    print_docker_env
}

# The unprivileged user the tests run "another user's" processes as (never adopted, never
# killed). Created once; left in place (it owns nothing and cannot log in).
OTHER_USER=ccscope-other
ensure_other_user() {
    id -u "$OTHER_USER" >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v useradd >/dev/null; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$OTHER_USER" \
            || die "could not create the test user $OTHER_USER"
    fi
}

# --- The other user's manager -------------------------------------------------------------
# ccscope as an ordinary user, the way a workstation runs it: a user manager running as
# ccscope-other in `ccscope-test.slice/user@UID.service` (both hierarchies, chowned to the
# user, as logind delegates it), its session bus, and `app.slice/term.scope` under it, owned
# by the user, which the tests move a shell into before dropping to the user. From a
# root-owned cgroup that manager could not move the user's processes into their scopes.
#
# Its runtime directory and home sit beside $ENV_DIR, not inside it: $ENV_DIR is root's 0700.
# Records (pid, cgroups, base directory) are kept in $ENV_DIR as other-*.
other_ids() {
    OTHER_UID=$(id -u "$OTHER_USER" 2>/dev/null) || die "the test user $OTHER_USER does not exist (run \`$0 up\` as root)"
    OTHER_GID=$(id -g "$OTHER_USER")
    OTHER_BASE="$ENV_DIR-u$OTHER_UID"
    OTHER_RT="$OTHER_BASE/rt"
    OTHER_HOME="$OTHER_BASE/home"
    OTHER_CGROUP="$SLICE/user@$OTHER_UID.service"
    TERM_CGROUP="$OTHER_CGROUP/app.slice/term.scope"
}
OTHER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# "$@" run as the other user with exactly that user's session environment.
as_other() {
    setpriv --reuid "$OTHER_UID" --regid "$OTHER_GID" --clear-groups \
        env -i HOME="$OTHER_HOME" PATH="$OTHER_PATH" XDG_RUNTIME_DIR="$OTHER_RT" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=$OTHER_RT/bus" "$@"
}

other_manager_running() {
    local state
    state=$(as_other systemctl --user is-system-running 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ]
}

other_bus_answers() {
    as_other busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping
}

other_is_up() {
    [ -f "$ENV_DIR/other-manager.pid" ] && alive "$(cat "$ENV_DIR/other-manager.pid")"
}

print_other_env() {
    [ -f "$ENV_DIR/other-manager.pid" ] || return 0
    other_ids
    printf 'export CCSCOPE_TEST_OTHER_USER=%q\n' "$OTHER_USER"
    printf 'export CCSCOPE_TEST_OTHER_UID=%q\n' "$OTHER_UID"
    printf 'export CCSCOPE_TEST_OTHER_GID=%q\n' "$OTHER_GID"
    printf 'export CCSCOPE_TEST_OTHER_HOME=%q\n' "$OTHER_HOME"
    printf 'export CCSCOPE_TEST_OTHER_RUNTIME_DIR=%q\n' "$OTHER_RT"
    printf 'export CCSCOPE_TEST_OTHER_TERM_V2=%q\n' "$(cat "$ENV_DIR/other-cgroup-v2")/app.slice/term.scope"
    if [ -f "$ENV_DIR/other-cgroup-v1" ]; then
        printf 'export CCSCOPE_TEST_OTHER_TERM_V1=%q\n' "$(cat "$ENV_DIR/other-cgroup-v1")/app.slice/term.scope"
    fi
}

up_other() {
    if [ "$(id -u)" != 0 ]; then
        say "not root: no user manager for $OTHER_USER (the non-root tests need one)"
        return 0
    fi
    other_ids
    if other_is_up && other_manager_running; then
        say "$OTHER_USER's user manager already up (pid $(cat "$ENV_DIR/other-manager.pid"))"
    else
        # Whatever a failed earlier `up` left of it goes first.
        if compgen -G "$ENV_DIR/other-*" >/dev/null; then down_other; fi
        local v2 v1
        v2=$(cgroup2_mount)
        [ -n "$v2" ] || die "no cgroup2 mount in /proc/self/mountinfo; the user manager needs one"
        v1=$(systemd_v1_mount)
        mkdir -p "$OTHER_BASE"
        echo "$OTHER_BASE" >"$ENV_DIR/other-base"
        chmod 0755 "$OTHER_BASE"
        install -d -m 0700 -o "$OTHER_UID" -g "$OTHER_GID" "$OTHER_RT" "$OTHER_HOME"
        mkdir -p "$v2/$OTHER_CGROUP"
        echo "$v2/$OTHER_CGROUP" >"$ENV_DIR/other-cgroup-v2"
        chown -R "$OTHER_UID:$OTHER_GID" "$v2/$OTHER_CGROUP"
        local move="echo \$\$ > '$v2/$OTHER_CGROUP/cgroup.procs'"
        if [ -n "$v1" ]; then
            mkdir -p "$v1/$OTHER_CGROUP"
            echo "$v1/$OTHER_CGROUP" >"$ENV_DIR/other-cgroup-v1"
            chown -R "$OTHER_UID:$OTHER_GID" "$v1/$OTHER_CGROUP"
            move="echo \$\$ > '$v1/$OTHER_CGROUP/cgroup.procs'; $move"
        fi
        # Root moves the child into the user's cgroup (the user may not move a process out of
        # root's), then it drops to the user and becomes the manager.
        setsid sh -c "$move; exec setpriv --reuid $OTHER_UID --regid $OTHER_GID --clear-groups \
            env -i HOME='$OTHER_HOME' PATH='$OTHER_PATH' XDG_RUNTIME_DIR='$OTHER_RT' \
            /lib/systemd/systemd --user --log-target=journal" \
            </dev/null >"$ENV_DIR/other-manager.log" 2>&1 &
        echo $! >"$ENV_DIR/other-manager.pid"
        wait_until "$OTHER_USER's user manager to report running (log: $ENV_DIR/other-manager.log)" other_manager_running
        say "started systemd --user as $OTHER_USER (pid $(cat "$ENV_DIR/other-manager.pid")) in $v2/$OTHER_CGROUP"
    fi
    if ! other_bus_answers >/dev/null 2>&1; then
        as_other systemctl --user start dbus.socket dbus.service
        wait_until "$OTHER_USER's session bus to answer" other_bus_answers
        say "$OTHER_USER's session bus up at $OTHER_RT/bus"
    fi
    # The terminal-like scope, made (again, if the manager pruned it) and handed to the user.
    local cg
    for cg in "$ENV_DIR/other-cgroup-v2" "$ENV_DIR/other-cgroup-v1"; do
        [ -f "$cg" ] || continue
        cg=$(cat "$cg")
        mkdir -p "$cg/app.slice/term.scope"
        chown "$OTHER_UID:$OTHER_GID" "$cg/app.slice"
        chown -R "$OTHER_UID:$OTHER_GID" "$cg/app.slice/term.scope"
    done
}

# Pids in every cgroup.procs of (v1) tree $1.
tree_pids() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null; }

down_other() {
    [ -d "$ENV_DIR" ] || return 0
    local pid stopped=0
    if [ -f "$ENV_DIR/other-manager.pid" ]; then
        pid=$(cat "$ENV_DIR/other-manager.pid")
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" || say "$OTHER_USER's user manager $pid ignored SIGTERM; killing its cgroup"
        fi
        rm -f "$ENV_DIR/other-manager.pid"
        stopped=1
    fi
    if [ -f "$ENV_DIR/other-cgroup-v2" ]; then
        remove_cgroup_tree "$(cat "$ENV_DIR/other-cgroup-v2")"
        rm -f "$ENV_DIR/other-cgroup-v2"
        stopped=1
    fi
    if [ -f "$ENV_DIR/other-cgroup-v1" ]; then
        # v1 has no cgroup.kill: what is still in the tree we made (nothing, when every process
        # sat in both hierarchies as they do) is killed by pid.
        local v1 p
        v1=$(cat "$ENV_DIR/other-cgroup-v1")
        if [ -d "$v1" ]; then
            for p in $(tree_pids "$v1"); do kill -KILL "$p" 2>/dev/null || true; done
            wait_until "cgroup $v1 to empty" test -z "$(tree_pids "$v1")"
            find "$v1" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ ! -d "$v1" ] || die "could not remove cgroup $v1"
        fi
        rm -f "$ENV_DIR/other-cgroup-v1"
        stopped=1
    fi
    if [ -f "$ENV_DIR/other-base" ]; then
        rm -rf -- "$(cat "$ENV_DIR/other-base")"
        rm -f "$ENV_DIR/other-base"
        stopped=1
    fi
    rm -f "$ENV_DIR/other-manager.log"
    if [ "$stopped" = 1 ]; then say "$OTHER_USER's user manager down"; else say "$OTHER_USER's user manager already down"; fi
}

# --- Docker -------------------------------------------------------------------------------
# A daemon answering on $DOCKER_HOST (default unix:///var/run/docker.sock) is used as it is and
# never stopped. Where none answers, Debian's dockerd is started by hand (PID 1 is not systemd
# here), recorded in $ENV_DIR/dockerd.pid; `down` stops exactly that one and removes what a
# daemon leaves behind: docker0 and its networks' bridges, its iptables chains and the rules
# that reach them, /run/docker
# and its socket and pid file, the empty `docker` cgroups, /var/lib/docker when `up` made it,
# and net.ipv4.ip_forward when the daemon turned it on.
DOCKER_IMAGE=ccscope-test/busybox:latest
DOCKERD=${CCSCOPE_TEST_DOCKERD:-/usr/sbin/dockerd}
DOCKER_DATA_ROOT=/var/lib/docker

docker_answers() { docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

# The daemon's bridges in this network namespace (sysfs may show another's; it is the
# fallback without iproute2): docker0 and br-<12 hex> of its user-defined networks (compose's).
docker_bridges() {
    if command -v ip >/dev/null; then
        ip -o link show type bridge 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'
    else
        ls /sys/class/net 2>/dev/null
    fi | grep -E '^(docker0|br-[0-9a-f]{12})$' || true
}

# Dotted IPv4 address $1 as an integer.
ipv4_int() { local IFS=.; set -- $1; echo $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4)); }

# Whether IPv4 address $1 lies in one of the CIDRs $2 (space-separated).
in_any_cidr() {
    local cidr
    for cidr in $2; do
        if in_cidr "$1" "$cidr"; then return 0; fi
    done
    return 1
}

# Whether IPv4 address $1 (optionally /32) lies in CIDR $2.
in_cidr() {
    local ip=${1%/*} net=${2%/*} bits=${2#*/}
    [[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
    local mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
    (($(($(ipv4_int "$ip") & mask)) == $(($(ipv4_int "$net") & mask))))
}

dockerd_is_ours() { [ -f "$ENV_DIR/dockerd.pid" ] && alive "$(cat "$ENV_DIR/dockerd.pid")"; }

# The offline test image: /bin/busybox (static) and a link per applet (sh, httpd, nc, sleep,
# wget, ...), a passwd/group naming root and nobody (for `user = "nobody"`), and /tmp.
build_test_image() {
    if docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then return 0; fi
    local busybox rootfs
    busybox=$(command -v busybox) || die "busybox is missing (the test image is made of it): apt-get install busybox-static"
    file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
        || ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' \
        || die "$busybox is not statically linked (the test image has no libc): apt-get install busybox-static"
    rootfs=$(mktemp -d "$ENV_DIR/rootfs.XXXXXX")
    mkdir -p "$rootfs"/{bin,sbin,etc,tmp,proc,sys,dev,root,var/www,usr/bin,usr/sbin}
    chmod 1777 "$rootfs/tmp"
    cp "$busybox" "$rootfs/bin/busybox"
    # Links to /bin/busybox, where it sits inside the image (`busybox --install -s DIR` would
    # point them at the host path it ran from).
    local applet
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -s /bin/busybox "$rootfs/bin/$applet"
    done
    [ -L "$rootfs/bin/sh" ] && [ -L "$rootfs/bin/httpd" ] && [ -L "$rootfs/bin/nc" ] \
        || die "$busybox --list names no sh/httpd/nc applets (the tests need them)"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' -c 'CMD ["/bin/sh"]' \
        -m 'ccscope test image: busybox, built offline by scripts/test-env.sh' \
        - "$DOCKER_IMAGE" >/dev/null \
        || { rm -rf "$rootfs"; die "docker import of the test image $DOCKER_IMAGE failed"; }
    rm -rf "$rootfs"
    # The image must run what the tests run in it.
    docker run --rm --network none --label ccscope.test=1 "$DOCKER_IMAGE" \
        sh -c 'for a in sh httpd nc sleep wget cat echo trap; do command -v $a >/dev/null || { echo "no $a"; exit 1; }; done' \
        || { docker image rm "$DOCKER_IMAGE" >/dev/null 2>&1 || true; die "the test image $DOCKER_IMAGE does not run sh/httpd/nc/sleep/wget"; }
    say "built the test image $DOCKER_IMAGE"
}

up_docker() {
    mkdir -p "$ENV_DIR"
    chmod 0700 "$ENV_DIR"
    if dockerd_is_ours && docker_answers; then
        say "dockerd already up (pid $(cat "$ENV_DIR/dockerd.pid"), ours)"
    elif ! dockerd_is_ours && docker_answers; then
        say "using the Docker daemon answering at ${DOCKER_HOST:-unix:///var/run/docker.sock}; not started by us"
    else
        # Ours but not answering (wedged), or dead: stop and tidy, then start afresh.
        if [ -f "$ENV_DIR/dockerd.pid" ]; then down_docker; fi
        if [ "$(id -u)" != 0 ]; then
            # A workstation user without Docker: the rest of the environment is still of use;
            # the container tests fail and say how to get a daemon (tests/common require_docker).
            say "no Docker daemon answers at ${DOCKER_HOST:-unix:///var/run/docker.sock} and only root can start one here: the container tests will fail (start Docker, or run this as root)"
            rm -f "$ENV_DIR/docker-image"
            return 0
        fi
        [ -x "$DOCKERD" ] || die "no Docker daemon answers and $DOCKERD is missing: apt-get install docker.io"
        command -v docker >/dev/null || die "the docker CLI is missing: apt-get install docker.io"
        # We start a daemon on the default socket only; one named elsewhere is the caller's.
        case ${DOCKER_HOST:-unix:///var/run/docker.sock} in
            unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
            *) die "DOCKER_HOST=$DOCKER_HOST does not answer; start that daemon, or unset DOCKER_HOST to let $0 start one on /var/run/docker.sock" ;;
        esac
        # A daemon of someone else's that holds the socket but does not answer is not ours to replace.
        [ ! -S /var/run/docker.sock ] \
            || die "/var/run/docker.sock exists but no daemon answers on it: a dockerd not started by $0 may be starting or wedged (see /var/run/docker.pid); if none runs, remove the socket and run $0 up again"
        [ -d "$DOCKER_DATA_ROOT" ] || : >"$ENV_DIR/created-docker-data-root"
        cat /proc/sys/net/ipv4/ip_forward >"$ENV_DIR/ip-forward-before" 2>/dev/null || true
        # dockerd sets the filter table's FORWARD policy to DROP: down puts back what was.
        forward_policies >"$ENV_DIR/forward-policies-before"
        docker_bridges >"$ENV_DIR/docker-bridges-before"
        { mounts_under "$DOCKER_DATA_ROOT"; mounts_under /run/docker; } >"$ENV_DIR/docker-mounts-before"
        local mnt
        for mnt in $(cgroup_mounts); do [ ! -d "$mnt/docker" ] || echo "$mnt/docker"; done >"$ENV_DIR/docker-cgroups-before"
        # The shims' socket directory, when no containerd of the host's made it.
        [ -e /run/containerd ] || : >"$ENV_DIR/created-run-containerd"
        setsid "$DOCKERD" </dev/null >"$ENV_DIR/dockerd.log" 2>&1 &
        echo $! >"$ENV_DIR/dockerd.pid"
        local pid end=$((SECONDS + DEADLINE_SECONDS))
        pid=$(cat "$ENV_DIR/dockerd.pid")
        until docker_answers; do
            alive "$pid" || die "dockerd (pid $pid) exited before answering; its log: $ENV_DIR/dockerd.log: $(tail -3 "$ENV_DIR/dockerd.log" | tr '\n' ' ')"
            ((SECONDS < end)) || die "timed out after ${DEADLINE_SECONDS}s waiting for dockerd (pid $pid) to answer (log: $ENV_DIR/dockerd.log)"
            sleep 0.05
        done
        say "started dockerd (pid $pid; log $ENV_DIR/dockerd.log)"
    fi
    build_test_image
    echo "$DOCKER_IMAGE" >"$ENV_DIR/docker-image"
}

# The filter table's FORWARD policy, one line per iptables binary there is: `BINARY POLICY`
# (legacy tables only where the kernel holds them: listing one would create it).
forward_policies() {
    local ipt
    for ipt in iptables ip6tables iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
        command -v "$ipt" >/dev/null || continue
        case $ipt in
            iptables-legacy) grep -qx filter /proc/net/ip_tables_names 2>/dev/null || continue ;;
            ip6tables-legacy) grep -qx filter /proc/net/ip6_tables_names 2>/dev/null || continue ;;
        esac
        printf '%s %s\n' "$ipt" "$("$ipt" -w -t filter -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }')"
    done
}

# Rules in the built-in chains of table $2 (for iptables binary $1) that jump to a DOCKER*
# chain, name one of the bridges $3 (space-separated), or masquerade from inside one of their
# subnets $4 (the hairpin rule of a published port, which a daemon that died leaves), deleted
# one by one; then the DOCKER* chains flushed and deleted. Nothing else is touched.
remove_docker_chains() {
    local ipt=$1 table=$2 bridges=${3:-} subnets=${4:-} rules rule chain names src
    rules=$("$ipt" -t "$table" -S 2>/dev/null) || return 0
    names=$(tr ' ' '\n' <<<"$bridges" | grep -v '^$' | paste -sd'|' || true)
    rules=$(grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ' <<<"$rules" || true)
    while IFS= read -r rule; do
        [ -n "$rule" ] || continue
        if grep -qE -- '-[jg] DOCKER[-A-Z0-9]*( |$)' <<<"$rule"; then
            :
        elif [ -n "$names" ] && grep -qE -- "(-i|-o) ($names)( |\$)" <<<"$rule"; then
            :
        elif [[ $rule =~ -s\ ([0-9.]+)(/[0-9]+)?\ .*-j\ MASQUERADE ]]; then
            src=${BASH_REMATCH[1]}
            in_any_cidr "$src" "$subnets" || continue
        else
            continue
        fi
        # `-S` prints a rule quoted the way `-A` takes it back; eval splits it the same way.
        eval "\"\$ipt\" -t \"\$table\" -D ${rule#-A }" 2>/dev/null \
            || say "could not delete $ipt -t $table rule: $rule"
    done <<<"$rules"
    for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || say "could not delete $ipt -t $table chain $chain"
    done
}

# Mounts at or under $1 as "ID PATH", deepest (then newest) first.
mounts_under() {
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print length($5), $1, $5 }' /proc/self/mountinfo \
        | sort -k1,1rn -k2,2rn | cut -d' ' -f2-
}

# Unmounts what the daemon mounted at or under $1 (its bind of the data root on itself, which
# it leaves when it exits; overlay layers and network namespaces of a daemon that died); a
# mount that was there before `up` started the daemon (its id recorded in $2) stays.
umount_docker_mounts() {
    local id m
    while read -r id m; do
        [ -n "$id" ] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
    done <<<"$(new_mounts_under "$1" "$2")"
}

# mounts_under $1 without those whose id is listed in file $2.
new_mounts_under() {
    local id m
    mounts_under "$1" | while read -r id m; do
        if [ -f "$2" ] && grep -q "^$id " "$2"; then continue; fi
        echo "$id $m"
    done
}

cgroup_mounts() { awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo; }

# Empty `docker` cgroups (and their empty children) our daemon made, under every mounted
# hierarchy, and those of the containers in $1 (ids); a populated one stays.
remove_docker_cgroups() {
    local mnt id
    for mnt in $(cgroup_mounts); do
        [ -d "$mnt/docker" ] || continue
        # Those of our containers that died with the daemon (runc removes the others).
        for id in $1; do
            [ ! -d "$mnt/docker/$id" ] || rmdir "$mnt/docker/$id" 2>/dev/null || say "left $mnt/docker/$id: not empty"
        done
        # A `docker` cgroup that was there before our daemon started is another daemon's.
        if grep -qxF "$mnt/docker" "$ENV_DIR/docker-cgroups-before" 2>/dev/null; then continue; fi
        find "$mnt/docker" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$mnt/docker" ] || say "left $mnt/docker: not empty"
    done
}

down_docker() {
    [ -f "$ENV_DIR/dockerd.pid" ] || { rm -f "$ENV_DIR/docker-image"; return 0; }
    local pid
    pid=$(cat "$ENV_DIR/dockerd.pid")
    if alive "$pid"; then
        # SIGTERM: dockerd stops its containers (10 s each at most, in parallel), its
        # containerd, unmounts, and exits.
        kill -TERM "$pid" 2>/dev/null || true
        local DEADLINE_SECONDS=$((DEADLINE_SECONDS + 15))
        if ! wait_gone "$pid"; then
            say "dockerd $pid did not stop after SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" || die "dockerd $pid did not die"
        fi
    fi
    # A daemon that stopped cleanly took its containerd, containers and shims with it. One that
    # died (or was killed above) leaves them: each by the pid files the daemon's containerd
    # keeps, the container's PID 1 (its pid namespace goes with it), the shim that is its
    # parent, and containerd itself.
    local cpid ipid spid f f_dir ids=""
    cpid=$(cat /run/docker/containerd/containerd.pid 2>/dev/null || true)
    for f in /run/docker/containerd/daemon/io.containerd.runtime.v2.task/*/*/init.pid; do
        [ -f "$f" ] || continue
        f_dir=${f%/init.pid}
        ids="$ids ${f_dir##*/}"
        ipid=$(cat "$f" 2>/dev/null || true)
        alive "$ipid" || continue
        spid=$(awk '$1 == "PPid:" { print $2 }' "/proc/$ipid/status" 2>/dev/null || true)
        kill -KILL "$ipid" 2>/dev/null || true
        wait_gone "$ipid" || say "container process $ipid (from $f) did not die"
        if alive "$spid" && [ "$(cat "/proc/$spid/comm" 2>/dev/null)" = containerd-shim ]; then
            kill -TERM "$spid" 2>/dev/null || true
            wait_gone "$spid" || { kill -KILL "$spid" 2>/dev/null || true; wait_gone "$spid" || true; }
        fi
    done
    if alive "$cpid" && [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ]; then
        kill -TERM "$cpid" 2>/dev/null || true
        wait_gone "$cpid" || { kill -KILL "$cpid" 2>/dev/null || true; wait_gone "$cpid" || true; }
    fi
    # Its bridges (docker0 unless it was there before, and its networks'), with their subnets
    # for the rules below; the links go after the rules.
    local bridges="" subnets="" b
    for b in $(docker_bridges); do
        if grep -qxF "$b" "$ENV_DIR/docker-bridges-before" 2>/dev/null; then continue; fi
        bridges="$bridges $b"
        if command -v ip >/dev/null; then
            subnets="$subnets $(ip -o -4 addr show dev "$b" 2>/dev/null | awk '{ print $4 }' | tr '\n' ' ')"
        fi
    done
    local ipt table
    for ipt in iptables ip6tables iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
        command -v "$ipt" >/dev/null || continue
        for table in filter nat; do
            # Listing a legacy table the kernel does not hold yet would create it.
            case $ipt in
                iptables-legacy) grep -qx "$table" /proc/net/ip_tables_names 2>/dev/null || continue ;;
                ip6tables-legacy) grep -qx "$table" /proc/net/ip6_tables_names 2>/dev/null || continue ;;
            esac
            remove_docker_chains "$ipt" "$table" "$bridges" "$subnets"
        done
    done
    for b in $bridges; do
        if command -v ip >/dev/null; then
            ip link delete "$b" || say "could not delete the $b link"
        else
            say "left the $b link: no \`ip\` to delete it with (apt-get install iproute2)"
        fi
    done
    local policy
    while read -r ipt policy; do
        [ -n "$policy" ] || continue
        "$ipt" -w -t filter -P FORWARD "$policy" 2>/dev/null || say "could not put back $ipt's FORWARD policy ($policy)"
    done <"$ENV_DIR/forward-policies-before" 2>/dev/null || true
    if [ "$(cat "$ENV_DIR/ip-forward-before" 2>/dev/null)" = 0 ]; then
        echo 0 >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    fi
    # What the daemon keeps in /run (/var/run is a link to /run on Debian) and its mounts: it
    # bind-mounts its data root on itself and leaves that behind when it exits.
    umount_docker_mounts /run/docker "$ENV_DIR/docker-mounts-before"
    umount_docker_mounts "$DOCKER_DATA_ROOT" "$ENV_DIR/docker-mounts-before"
    rm -rf /run/docker /run/docker.sock /run/docker.pid || say "could not remove /run/docker"
    if [ -f "$ENV_DIR/created-run-containerd" ] && [ -d /run/containerd ]; then
        find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
        [ ! -e /run/containerd ] || say "left /run/containerd: not empty"
    fi
    remove_docker_cgroups "$ids"
    if [ -f "$ENV_DIR/created-docker-data-root" ] && [ -d "$DOCKER_DATA_ROOT" ]; then
        if [ -n "$(new_mounts_under "$DOCKER_DATA_ROOT" "$ENV_DIR/docker-mounts-before")" ]; then
            say "left $DOCKER_DATA_ROOT: something is still mounted under it"
        else
            rm -rf "$DOCKER_DATA_ROOT" || say "could not remove $DOCKER_DATA_ROOT"
        fi
    fi
    rm -f "$ENV_DIR/dockerd.pid" "$ENV_DIR/dockerd.log" "$ENV_DIR/docker-image" "$ENV_DIR/ip-forward-before" \
        "$ENV_DIR/docker-bridges-before" "$ENV_DIR/created-docker-data-root" "$ENV_DIR/docker-mounts-before" \
        "$ENV_DIR/docker-cgroups-before" "$ENV_DIR/created-run-containerd"
    say "dockerd (pid $pid) down"
}

print_docker_env() {
    [ -f "$ENV_DIR/docker-image" ] || return 0
    [ -z "${DOCKER_HOST:-}" ] || printf 'export DOCKER_HOST=%q\n' "$DOCKER_HOST"
    printf 'export CCSCOPE_TEST_DOCKER_IMAGE=%q\n' "$(cat "$ENV_DIR/docker-image")"
}

up() {
    ensure_other_user
    if [ -f "$ENV_DIR/external" ]; then up_docker; print_env; return; fi
    if [ ! -d "$ENV_DIR" ] && host_has_user_manager && journald_works; then
        mkdir -p "$ENV_DIR"
        : >"$ENV_DIR/external"
        say "using the host's own user manager, session bus and journald; nothing started"
        up_docker
        print_env
        return
    fi
    mkdir -p "$ENV_DIR"
    chmod 0700 "$ENV_DIR"

    # journald: only if the host has none answering.
    if ! journald_works; then
        [ -x /lib/systemd/systemd-journald ] || die "journald is not running and /lib/systemd/systemd-journald is missing: apt-get install systemd"
        setsid /lib/systemd/systemd-journald </dev/null >"$ENV_DIR/journald.log" 2>&1 &
        echo $! >"$ENV_DIR/journald.pid"
        wait_until "journald to accept entries" journald_works
        say "started journald (pid $(cat "$ENV_DIR/journald.pid"))"
    fi

    if [ -f "$ENV_DIR/manager.pid" ] && alive "$(cat "$ENV_DIR/manager.pid")" && manager_running; then
        say "user manager already up (pid $(cat "$ENV_DIR/manager.pid"))"
    else
        # systemd --user refuses to start unless the host looks booted with systemd.
        if [ ! -d /run/systemd/system ]; then
            mkdir -p /run/systemd/system
            : >"$ENV_DIR/created-run-systemd-system"
        fi
        local v2 v1
        v2=$(cgroup2_mount)
        [ -n "$v2" ] || die "no cgroup2 mount in /proc/self/mountinfo; the user manager needs one"
        v1=$(systemd_v1_mount)
        mkdir -p "$v2/$MANAGER_CGROUP"
        echo "$v2/$SLICE" >"$ENV_DIR/cgroup-v2"
        if [ -n "$v1" ]; then
            mkdir -p "$v1/$MANAGER_CGROUP"
            echo "$v1/$SLICE" >"$ENV_DIR/cgroup-v1"
        fi
        mkdir -p "$RUNTIME_DIR"
        chmod 0700 "$RUNTIME_DIR"
        # The child moves itself into the manager's cgroup, then becomes the manager.
        local move="echo \$\$ > '$v2/$MANAGER_CGROUP/cgroup.procs'"
        [ -z "$v1" ] || move="$move; echo \$\$ > '$v1/$MANAGER_CGROUP/cgroup.procs'"
        XDG_RUNTIME_DIR=$RUNTIME_DIR DBUS_SESSION_BUS_ADDRESS="unix:path=$RUNTIME_DIR/bus" \
            setsid sh -c "$move; exec /lib/systemd/systemd --user --log-target=journal" \
            </dev/null >"$ENV_DIR/manager.log" 2>&1 &
        echo $! >"$ENV_DIR/manager.pid"
        wait_until "the user manager to report running (log: $ENV_DIR/manager.log)" manager_running
        say "started systemd --user (pid $(cat "$ENV_DIR/manager.pid")) in $v2/$MANAGER_CGROUP"
    fi

    if ! bus_answers; then
        XDG_RUNTIME_DIR=$RUNTIME_DIR systemctl --user start dbus.socket dbus.service
        wait_until "the session bus to answer" bus_answers
        say "session bus up at $RUNTIME_DIR/bus"
    fi
    up_other
    up_docker
    print_env
}

# Kills every process left in cgroup v2 directory $1, waits for it to empty, removes it depth-first.
remove_cgroup_tree() {
    local root=$1
    [ -d "$root" ] || return 0
    if [ -f "$root/cgroup.kill" ]; then
        echo 1 >"$root/cgroup.kill" 2>/dev/null || true
    fi
    if [ -f "$root/cgroup.events" ]; then
        wait_until "cgroup $root to empty" grep -q '^populated 0' "$root/cgroup.events"
    fi
    # Depth-first: children before parents; rmdir is bounded by the deadline above.
    find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$root" ] || die "could not remove cgroup $root: $(find "$root" -type d | head -3 | tr '\n' ' ')"
}

down() {
    if [ ! -d "$ENV_DIR" ]; then say "already down"; return; fi
    # The daemon first: its containers may hold processes of the tests.
    down_docker
    if [ -f "$ENV_DIR/external" ]; then
        rm -f "$ENV_DIR/external"; rmdir "$ENV_DIR" 2>/dev/null || true
        say "host components were not ours; nothing else stopped"
        return
    fi
    # The other user's manager first, by its own pid: it lives inside the slice killed below.
    down_other
    local pid
    if [ -f "$ENV_DIR/manager.pid" ]; then
        pid=$(cat "$ENV_DIR/manager.pid")
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" || { say "user manager $pid ignored SIGTERM; killing its cgroup"; }
        fi
        rm -f "$ENV_DIR/manager.pid"
    fi
    if [ -f "$ENV_DIR/cgroup-v2" ]; then
        remove_cgroup_tree "$(cat "$ENV_DIR/cgroup-v2")"
        rm -f "$ENV_DIR/cgroup-v2"
    fi
    if [ -f "$ENV_DIR/cgroup-v1" ]; then
        # v1 has no cgroup.kill; its processes died with the v2 tree above.
        local v1
        v1=$(cat "$ENV_DIR/cgroup-v1")
        [ ! -d "$v1" ] || find "$v1" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$v1" ] || die "could not remove cgroup $v1"
        rm -f "$ENV_DIR/cgroup-v1"
    fi
    if [ -f "$ENV_DIR/journald.pid" ]; then
        pid=$(cat "$ENV_DIR/journald.pid")
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" || die "journald $pid did not stop"
        fi
        rm -f "$ENV_DIR/journald.pid"
    fi
    if [ -f "$ENV_DIR/created-run-systemd-system" ]; then
        rmdir /run/systemd/system 2>/dev/null || true
    fi
    rm -rf "$ENV_DIR"
    say "down"
}

docker_status() {
    local d
    d=$(cat "$ENV_DIR/dockerd.pid" 2>/dev/null || true)
    if [ -n "$d" ]; then
        if alive "$d"; then echo "dockerd: running (pid $d, ours)"; else echo "dockerd: not running (pid $d recorded)"; fi
    elif docker_answers; then
        echo "dockerd: the host's, answering at ${DOCKER_HOST:-unix:///var/run/docker.sock}"
    else
        echo "dockerd: not answering"
    fi
    if docker_answers && docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then
        echo "test image: $DOCKER_IMAGE"
    fi
}

status() {
    if [ -f "$ENV_DIR/external" ]; then echo "up (the host's own components)"; docker_status; return; fi
    if [ ! -d "$ENV_DIR" ]; then echo "down"; return 3; fi
    local m j
    m=$(cat "$ENV_DIR/manager.pid" 2>/dev/null || true)
    j=$(cat "$ENV_DIR/journald.pid" 2>/dev/null || true)
    if alive "$m"; then echo "user manager: running (pid $m)"; else echo "user manager: not running"; fi
    if [ -n "$j" ]; then
        if alive "$j"; then echo "journald: running (pid $j, ours)"; else echo "journald: not running"; fi
    else
        echo "journald: the host's"
    fi
    if bus_answers >/dev/null 2>&1; then echo "session bus: answering at $RUNTIME_DIR/bus"; else echo "session bus: not answering"; fi
    if other_is_up; then
        other_ids
        echo "$OTHER_USER's user manager: running (pid $(cat "$ENV_DIR/other-manager.pid"), uid $OTHER_UID, in $(cat "$ENV_DIR/other-cgroup-v2"))"
        if other_bus_answers >/dev/null 2>&1; then echo "$OTHER_USER's session bus: answering at $OTHER_RT/bus"; else echo "$OTHER_USER's session bus: not answering"; fi
        echo "$OTHER_USER's terminal scope: $(cat "$ENV_DIR/other-cgroup-v2")/app.slice/term.scope"
    else
        echo "$OTHER_USER's user manager: not running"
    fi
    docker_status
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    down-other) down_other ;;
    up-docker) up_docker; print_docker_env ;;
    down-docker) down_docker ;;
    env) print_env ;;
    status) status ;;
    *) echo "usage: $0 up|down|down-other|up-docker|down-docker|env|status" >&2; exit 2 ;;
esac
