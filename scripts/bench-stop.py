#!/usr/bin/env python3
"""The stop benchmark of issue 4: one generated stack, three supervisors, one run.

A stack of N services (default 40), each leaving 5 extra processes behind the way real
scripts do: double-forked setsid daemons, `nohup … &` children, a service that ignores
SIGTERM, grandchildren that ignore SIGTERM. Stop timeout 3 s. Run side by side under
  - ccscope (`run --detach`, then `stop`),
  - supervisord (pip `supervisor`, stopasgroup/killasgroup on, stopwaitsecs = 3),
  - plain `systemd-run --user --scope` units (TimeoutStopSec = 3, stopped with one
    `systemctl --user stop` of all of them),
and once more with a stack without SIGTERM-ignorers. Measured per peer: time from start to
all ready, time of the stop, processes left 2 s after the stop, and for the supervisors their
resident memory and CPU time over an idle period.

Every process of the benchmark carries BENCH_TAG=<tag> in its environment; that is how the
leftovers are counted, and how they are cleaned up afterwards (by pid, never by pattern).

Usage (through scripts/bench-stop.sh, which brings up the test environment):
  bench-stop.py CCSCOPE SUPERVISORD SUPERVISORCTL [--services N] [--idle SECONDS]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

STOP_TIMEOUT = 3


def service_script(kind, name, ready_dir):
    """The shell script of one service: 5 extra processes of its kind, then `ready`."""
    extras = {
        # Double-forked daemons in their own sessions: they escape any process group.
        "daemon": "for k in 1 2 3 4 5; do (setsid sleep 100000 >/dev/null 2>&1 &); done",
        # nohup children that outlive the shell that started them.
        "nohup": "for k in 1 2 3 4 5; do nohup sleep 100000 >/dev/null 2>&1 & done",
        # The service itself and everything it starts ignore SIGTERM.
        "ignores": "trap '' TERM; for k in 1 2 3 4 5; do sleep 100000 & done",
        # Grandchildren that ignore SIGTERM, under a well-behaved service.
        "grandchild": "for k in 1 2 3 4 5; do (trap '' TERM; exec sleep 100000) & done",
    }[kind]
    return f"{extras}; echo ready; touch {ready_dir}/{name}; exec sleep 100000"


def kinds(hostile):
    return ["daemon", "nohup", "ignores", "grandchild"] if hostile else ["daemon", "nohup"]


def tagged(tag):
    """Pids of live (non-zombie) processes carrying BENCH_TAG=tag."""
    needle = f"BENCH_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found.append(int(entry))
        except OSError:
            pass
    return found


def clean_up(tag):
    """SIGKILLs what the benchmark left, by pid."""
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_files(ready_dir, names, deadline=60):
    start = time.monotonic()
    while not all(os.path.exists(os.path.join(ready_dir, n)) for n in names):
        if time.monotonic() - start > deadline:
            raise RuntimeError("services did not become ready")
        time.sleep(0.002)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * 1000 / ticks


def idle_cost(pid, idle):
    """(RSS in KiB, CPU ms over `idle` seconds, scaled to ms per 30 s)."""
    before = cpu_ms(pid)
    time.sleep(idle)
    used = cpu_ms(pid) - before
    return rss_kib(pid), used, used * 30 / idle


def left_after(tag, seconds=2):
    time.sleep(seconds)
    return len(tagged(tag))


# ---- peers ---------------------------------------------------------------------------------


def bench_ccscope(args, names, scripts, tag, work, idle):
    project = f"bench-{tag}"
    lines = [f'[project]\nname = "{project}"\n[defaults]\nstop_timeout = "{STOP_TIMEOUT}s"\n']
    for name in names:
        script = scripts[name].replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'[services.{name}]\nshell = "{script}"\nenv = {{ BENCH_TAG = "{tag}" }}\n'
            f'ready = {{ log = "^ready$", start_timeout = "60s" }}\nrestart = "no"\n'
        )
    config = os.path.join(work, "ccscope.toml")
    with open(config, "w") as f:
        f.write("\n".join(lines))
    env = dict(os.environ, CCSCOPE_STATE_DIR=os.path.join(work, "state"))
    base = [args.ccscope, "-f", config, "-q"]
    t0 = time.monotonic()
    subprocess.run(base + ["run", "--detach"], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.monotonic() - t0
    status = json.loads(subprocess.run(base + ["status", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    pid = status["supervisor_pid"]
    rss, used, per30 = idle_cost(pid, idle) if idle else (rss_kib(pid), None, None)
    t0 = time.monotonic()
    stopped = subprocess.run(base + ["stop", "--json"], env=env, capture_output=True, text=True)
    stop_s = time.monotonic() - t0
    report = json.loads(stopped.stdout)
    empty_ms = max((s["time_to_empty_ms"] or 0) for s in report["services"])
    left = left_after(tag)
    clean_up(tag)
    return dict(start_s=started, stop_s=stop_s, stop_report_ms=report["elapsed_ms"],
                slowest_service_empty_ms=empty_ms, left=left, rss_kib=rss,
                idle_cpu_ms=used, idle_cpu_ms_per_30s=per30)


def bench_supervisord(args, names, scripts, tag, work, idle, ready_dir):
    conf = os.path.join(work, "supervisord.conf")
    sock = os.path.join(work, "supervisor.sock")
    with open(conf, "w") as f:
        f.write(f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={work}/supervisord.log\n"
                f"pidfile={work}/supervisord.pid\nnodaemon=false\n"
                f"[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                f"supervisor.rpcinterface:make_main_rpcinterface\n"
                f"[supervisorctl]\nserverurl=unix://{sock}\n")
        for name in names:
            script = scripts[name].replace("%", "%%")
            f.write(f"[program:{name}]\ncommand=/bin/sh -c \"{script}\"\n"
                    f"environment=BENCH_TAG=\"{tag}\"\nstartsecs=0\nautorestart=false\n"
                    f"stopasgroup=true\nkillasgroup=true\nstopwaitsecs={STOP_TIMEOUT}\n"
                    f"stdout_logfile=NONE\nstderr_logfile=NONE\n")
    ctl = [args.supervisorctl, "-c", conf]
    t0 = time.monotonic()
    subprocess.run([args.supervisord, "-c", conf], check=True)
    wait_files(ready_dir, names)
    started = time.monotonic() - t0
    with open(f"{work}/supervisord.pid") as f:
        pid = int(f.read().strip())
    rss, used, per30 = idle_cost(pid, idle) if idle else (rss_kib(pid), None, None)
    t0 = time.monotonic()
    subprocess.run(ctl + ["stop", "all"], stdout=subprocess.DEVNULL)
    stop_s = time.monotonic() - t0
    left = left_after(tag)
    subprocess.run(ctl + ["shutdown"], stdout=subprocess.DEVNULL)
    clean_up(tag)
    return dict(start_s=started, stop_s=stop_s, left=left, rss_kib=rss, idle_cpu_ms=used,
                idle_cpu_ms_per_30s=per30)


def bench_systemd_run(names, scripts, tag, ready_dir):
    units = [f"bench-{tag}-{n}.scope".replace("_", "-") for n in names]
    t0 = time.monotonic()
    starters = [subprocess.Popen(
        ["systemd-run", "--user", "--scope", "--quiet", f"--unit={u}",
         f"-p", f"TimeoutStopSec={STOP_TIMEOUT}", "--setenv", f"BENCH_TAG={tag}",
         "/bin/sh", "-c", scripts[n]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, BENCH_TAG=tag))
        for n, u in zip(names, units)]
    wait_files(ready_dir, names)
    started = time.monotonic() - t0
    t0 = time.monotonic()
    subprocess.run(["systemctl", "--user", "stop"] + units)
    stop_s = time.monotonic() - t0
    left = left_after(tag)
    for p in starters:
        p.wait()
    subprocess.run(["systemctl", "--user", "reset-failed"] + units, stderr=subprocess.DEVNULL)
    clean_up(tag)
    return dict(start_s=started, stop_s=stop_s, left=left, rss_kib=None, idle_cpu_ms=None,
                idle_cpu_ms_per_30s=None)


def scenario(args, hostile, idle):
    names = [f"svc{i:02d}" for i in range(args.services)]
    results = {}
    for peer in ["ccscope", "supervisord", "systemd-run"]:
        tag = f"{os.getpid()}-{peer}-{'h' if hostile else 'c'}"
        with tempfile.TemporaryDirectory() as work:
            ready_dir = os.path.join(work, "ready")
            os.mkdir(ready_dir)
            scripts = {n: service_script(kinds(hostile)[i % len(kinds(hostile))], n, ready_dir)
                       for i, n in enumerate(names)}
            try:
                if peer == "ccscope":
                    results[peer] = bench_ccscope(args, names, scripts, tag, work, idle)
                elif peer == "supervisord":
                    results[peer] = bench_supervisord(args, names, scripts, tag, work, idle,
                                                      ready_dir)
                else:
                    results[peer] = bench_systemd_run(names, scripts, tag, ready_dir)
            finally:
                clean_up(tag)
    return results


def show(title, results):
    print(f"\n{title}")
    print(f"{'peer':<13} {'start→ready':>12} {'stop':>9} {'left 2s after':>14} "
          f"{'RSS':>9} {'idle CPU':>16}")
    for peer, r in results.items():
        rss = f"{r['rss_kib'] / 1024:.1f} MiB" if r.get("rss_kib") else "-"
        cpu = (f"{r['idle_cpu_ms']:.0f} ms ({r['idle_cpu_ms_per_30s']:.1f}/30s)"
               if r.get("idle_cpu_ms") is not None else "-")
        print(f"{peer:<13} {r['start_s'] * 1000:>9.0f} ms {r['stop_s'] * 1000:>6.0f} ms "
              f"{r['left']:>14} {rss:>9} {cpu:>16}")
    c = results["ccscope"]
    for peer in ["supervisord", "systemd-run"]:
        p = results[peer]
        print(f"  ccscope/{peer}: start {c['start_s'] / p['start_s']:.2f}, "
              f"stop {c['stop_s'] / p['stop_s']:.2f}")
    if "slowest_service_empty_ms" in c:
        print(f"  ccscope: the stop's own report says {c['stop_report_ms']} ms; "
              f"slowest service empty after {c['slowest_service_empty_ms']} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ccscope")
    parser.add_argument("supervisord")
    parser.add_argument("supervisorctl")
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--idle", type=float, default=60)
    args = parser.parse_args()
    print(f"{args.services} services x 5 extra processes, stop timeout {STOP_TIMEOUT} s, "
          f"idle period {args.idle:.0f} s")
    hostile = scenario(args, True, args.idle)
    show("with SIGTERM-ignoring services and grandchildren (daemon, nohup, ignores, grandchild):",
         hostile)
    clean = scenario(args, False, 0)
    show("without SIGTERM-ignorers (daemon, nohup):", clean)
    print("\njson: " + json.dumps({"hostile": hostile, "clean": clean}))


if __name__ == "__main__":
    sys.exit(main())
