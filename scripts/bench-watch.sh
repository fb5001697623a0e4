#!/usr/bin/env bash
# The watcher-idle benchmark of issue 12: a tree of 10,000 files (100 directories of 100),
# one watcher over all of them (examples/watch_idle.rs, the module `watch` alone), then its
# CPU time (utime + stime from /proc/PID/stat) over 60 s of idle, its resident set and its
# inotify watches. At the end one file is touched to show the watcher was awake all along.
# Usage: scripts/bench-watch.sh
#   BENCH_WATCH_SECONDS (60), BENCH_WATCH_FILES (10000), BENCH_WATCH_PROFILE (release; `dev`
#   reuses the debug build, for checking the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_WATCH_SECONDS:-60}
files=${BENCH_WATCH_FILES:-10000}
profile=${BENCH_WATCH_PROFILE:-release}
per_dir=100

cargo build --quiet --profile "$profile" --example watch_idle
case "$profile" in
    dev) exe=target/debug/examples/watch_idle ;;
    *) exe=target/$profile/examples/watch_idle ;;
esac

tree=$(mktemp -d "${TMPDIR:-/tmp}/ccscope-bench-watch.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tree"
}
trap cleanup EXIT

python3 - "$tree" "$files" "$per_dir" <<'PY'
import os, sys
tree, files, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    d = os.path.join(tree, "src", f"d{i // per_dir:04}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.py"), "w") as f:
        f.write("x = 1\n")
PY
dirs=$(find "$tree" -type d | wc -l)

coproc WATCH { exec "$exe" "$tree" 'src/**/*.py'; }
pid=$WATCH_PID
if ! read -r -t 120 -u "${WATCH[0]}" line || [ "$line" != ready ]; then
    echo "bench-watch: the watcher did not report ready within 120 s" >&2
    exit 1
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
watches=$(cat /proc/"$pid"/fdinfo/* 2>/dev/null | grep -c '^inotify wd:' || true)
before=$(cpu_ticks)
sleep "$seconds"
after=$(cpu_ticks)
rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")

# Awake all along: one touch gives one burst.
touch "$tree/src/d0000/f00000.py"
if ! read -r -t 10 -u "${WATCH[0]}" change; then
    echo "bench-watch: a touched file gave no change within 10 s" >&2
    exit 1
fi

ticks=$((after - before))
cpu_ms=$((ticks * 1000 / tck))
echo "watcher idle: $files files in $dirs directories, $watches inotify watches, $threads threads"
echo "  CPU over ${seconds} s idle: ${cpu_ms} ms (${ticks} ticks of 1/${tck} s, utime + stime)"
echo "  resident set: ${rss_kib} KiB"
echo "  after a touch: $change"
