#!/usr/bin/env bash
# The cost benchmark of issue 15: a generated 40-service stack (each service one `sleep`)
# under `ccscope run --detach`; then, side by side in one run:
#   - the supervisor's CPU time over an idle period with no `top` open,
#   - `ccscope top` open on it in a 120x40 tmux terminal: top's own CPU time over the same
#     period (in % of one core) and its resident set at the end, and the supervisor's CPU
#     time meanwhile (its feed has a subscriber then).
# CPU is utime + stime from /proc/PID/stat; RSS is VmRSS. Everything the run starts is
# stopped at the end (`ccscope stop`, the tmux server of its own by name).
# Usage: scripts/bench-top.sh
#   BENCH_TOP_SECONDS (30), BENCH_TOP_SERVICES (40), BENCH_TOP_PROFILE (release; `dev`
#   reuses the debug build, for checking the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_TOP_SECONDS:-30}
services=${BENCH_TOP_SERVICES:-40}
profile=${BENCH_TOP_PROFILE:-release}

cargo build --quiet --profile "$profile" --bin ccscope
case "$profile" in
    dev) exe=$PWD/target/debug/ccscope ;;
    *) exe=$PWD/target/$profile/ccscope ;;
esac
command -v tmux >/dev/null || { echo "bench-top: needs tmux (apt-get install tmux)" >&2; exit 1; }

# The real user manager and session bus the tests use, unless they are up already.
if [ -z "${CCSCOPE_TEST_ENV:-}" ]; then
    exec scripts/with-test-env.sh env BENCH_TOP_PROFILE="$profile" "$0" "$@"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ccscope-bench-top.XXXXXX")
project=bench-top-$$
server=ccscope-bench-top-$$
export CCSCOPE_STATE_DIR=$work/state
cleanup() {
    tmux -L "$server" kill-server 2>/dev/null || true
    (cd "$work" && "$exe" stop --force >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT

{
    printf '[project]\nname = "%s"\n' "$project"
    for i in $(seq -w 1 "$services"); do
        printf '\n[services.svc%s]\ncommand = ["sleep", "100000"]\n' "$i"
    done
} > "$work/ccscope.toml"
cd "$work"
"$exe" run --detach >/dev/null
supervisor=$("$exe" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["supervisor_pid"])')

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
percent() { awk -v t="$1" -v s="$seconds" -v k="$tck" 'BEGIN { printf "%.2f", t * 100 / k / s }'; }

# The supervisor alone, nobody subscribed.
before=$(cpu_ticks "$supervisor")
sleep "$seconds"
idle_alone=$(( $(cpu_ticks "$supervisor") - before ))

# top open: wait (with a deadline) until it shows the whole stack ready, then measure.
tmux -L "$server" new-session -d -x 120 -y 40 "exec env CCSCOPE_STATE_DIR='$CCSCOPE_STATE_DIR' TERM=xterm-256color '$exe' top"
top=$(tmux -L "$server" display-message -p '#{pane_pid}')
deadline=$((SECONDS + 60))
until tmux -L "$server" capture-pane -p | grep -q "ready $services/$services"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "bench-top: top did not show $services/$services ready within 60 s:" >&2
        tmux -L "$server" capture-pane -p >&2
        exit 1
    fi
    sleep 0.1
done
top_before=$(cpu_ticks "$top")
sup_before=$(cpu_ticks "$supervisor")
sleep "$seconds"
top_ticks=$(( $(cpu_ticks "$top") - top_before ))
sup_ticks=$(( $(cpu_ticks "$supervisor") - sup_before ))
top_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$top/status")
top_threads=$(awk '/^Threads:/ { print $2 }' "/proc/$top/status")
sup_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$supervisor/status")
tmux -L "$server" send-keys q

echo "top benchmark: $services services ($profile build), ${seconds} s per measurement, CPU = utime + stime (1/${tck} s ticks)"
echo "  supervisor idle, no top open:   $(percent "$idle_alone") % of one core ($idle_alone ticks), RSS ${sup_rss} KiB"
echo "  supervisor idle, top open:      $(percent "$sup_ticks") % of one core ($sup_ticks ticks)"
echo "  top (120x40, one sample a s):   $(percent "$top_ticks") % of one core ($top_ticks ticks), RSS ${top_rss} KiB, $top_threads threads"
