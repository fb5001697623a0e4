#!/usr/bin/env python3
"""The restart benchmark of issue 12: one service of the demo stack, three ways, one run.

The stack is the demo profile (src/config/profiles/demo.toml, the issue's "demo stack": four
services made of ccscope's own `__demo` helpers), written to a file on free ports with one
change: the readiness probes poll every `--interval` (default 10 ms, the demo says 100 ms and
the built-in default is 500 ms), so the probe's polling does not dominate what is measured.
The service is `dashboard`: `ccscope __demo http --name dashboard --port P --path /health`,
ready when GET /health answers 200. Measured, interleaved round by round so that the load of
a shared machine falls on all three alike, `--runs` times (default 20) after `--warmup` rounds:

  (a) ccscope: wall time of `ccscope restart dashboard` from its spawn to its exit (its reply
      comes when the service is ready again);
  (b) the program alone, started bare (no ccscope, no systemd): time from SIGTERM to its exit,
      plus time from its spawn to GET /health answering 200, the check polled in a tight loop
      (every --tight, default 1 ms), which is what any restart cannot avoid;
  (c) systemd: the same program as a transient service (`systemd-run --user -p Type=exec`),
      time from the start of `systemctl --user restart` until the same check passes, polled
      the same tight way (and, apart, the wall time of `systemctl --user restart` itself);
      the unit has no start rate limit (StartLimitIntervalSec=0), or the 6th restart fails.

Printed: median and p90 of each, the overhead (a) - (b) in ms (target: < 20 ms), the ratio
(a)/(c), and a json line. Everything started is ended: the stack with `ccscope stop` and then
its project slice (which `ccscope stop` leaves, empty), the unit with `systemctl --user stop`,
the bare program by its pid.

Usage (through scripts/bench-restart.sh, which builds the binary and brings up the test
environment):
  bench-restart.py CCSCOPE [--runs N] [--warmup N] [--interval DURATION] [--tight MS]
"""

import argparse
import json
import math
import os
import pathlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SERVICE = "dashboard"
REPO = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "src" / "config" / "profiles" / "demo.toml"
# The demo's ports sit above its base by these (src/config/profiles.rs).
DEMO_OFFSETS = (23, 17, 10)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count):
    """A port base whose demo offsets are free, and `count` more free ports besides."""
    rng = random.Random(os.getpid())
    for _ in range(1000):
        base = rng.randrange(30000, 60000)
        demo = [base + o for o in DEMO_OFFSETS]
        extra = [base + 40 + i for i in range(count)]
        if all(port_free(p) for p in demo + extra):
            return base, extra
    raise RuntimeError("no free ports found between 30000 and 60100")


def demo_config(ccscope, project, base, interval):
    text = TEMPLATE.read_text()
    quoted = ccscope.replace("\\", "\\\\").replace('"', '\\"')
    text = (text.replace("@PROJECT@", project)
            .replace("@CCSCOPE@", quoted)
            .replace("@CLICKHOUSE_PORT@", str(base + 23))
            .replace("@TELEMETRY_PORT@", str(base + 17))
            .replace("@DASHBOARD_PORT@", str(base + 10)))
    old = 'ready = { interval = "100ms",'
    if old not in text:
        raise RuntimeError(f"{TEMPLATE}: its [defaults] ready line changed; "
                           f"update bench-restart.py to set the probe interval")
    return text.replace(old, f'ready = {{ interval = "{interval}",', 1)


def http_ok(port, path="/health"):
    """One GET, as ccscope's http probe does it: True when the status is 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = s.recv(64)
            return head.split(b" ", 2)[1:2] == [b"200"]
    except OSError:
        return False


def wait_ready(port, tight_s, deadline_s=30):
    """Polls GET /health every `tight_s` until it answers 200; the time it passed at."""
    end = time.monotonic() + deadline_s
    while True:
        if http_ok(port):
            return time.monotonic()
        if time.monotonic() > end:
            raise RuntimeError(f"127.0.0.1:{port}/health did not answer 200 within {deadline_s} s")
        time.sleep(tight_s)


def wait_down(port, deadline_s=30):
    end = time.monotonic() + deadline_s
    while not port_free(port):
        if time.monotonic() > end:
            raise RuntimeError(f"port {port} still taken {deadline_s} s after its service ended")
        time.sleep(0.005)


def program(ccscope, port):
    return [ccscope, "__demo", "http", "--name", SERVICE, "--port", str(port), "--path", "/health"]


# ---- the three ways ------------------------------------------------------------------------


class Ccscope:
    def __init__(self, ccscope, work, base, interval):
        self.project = f"bench-restart-{os.getpid()}"
        self.config = os.path.join(work, "ccscope.toml")
        with open(self.config, "w") as f:
            f.write(demo_config(ccscope, self.project, base, interval))
        self.env = dict(os.environ, CCSCOPE_STATE_DIR=os.path.join(work, "state"))
        self.base = [ccscope, "-f", self.config, "-q"]
        self.up = False
        self.replies = []

    def run(self, *args, check=True):
        return subprocess.run(self.base + list(args), env=self.env, check=check,
                              capture_output=True, text=True)

    def start(self):
        self.up = True
        self.run("run", "--detach")

    def once(self):
        t0 = time.monotonic()
        done = subprocess.run(self.base + ["restart", SERVICE, "--json"], env=self.env,
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        if done.returncode != 0:
            raise RuntimeError(f"ccscope restart {SERVICE} exited {done.returncode}: "
                               f"{done.stdout.strip()} {done.stderr.strip()}")
        reply = json.loads(done.stdout)
        if os.environ.get("BENCH_RESTART_SHOW_REPLY"):
            print(done.stdout.strip(), file=sys.stderr)
        self.replies.append(reply)
        elapsed = reply.get("elapsed_ms", 0) / 1000
        return {"total": wall, "reply_elapsed": elapsed, "client": wall - elapsed}

    def end(self):
        if self.up:
            self.run("stop", check=False)
            # `ccscope stop` leaves the project's slice, empty; the benchmark made it, so it
            # ends it.
            escaped = subprocess.run(["systemd-escape", self.project], capture_output=True,
                                     text=True, check=True).stdout.strip()
            subprocess.run(["systemctl", "--user", "stop", f"ccscope-{escaped}.slice"],
                           stderr=subprocess.DEVNULL)
            self.up = False


class Bare:
    def __init__(self, ccscope, port, tight_s):
        self.argv = program(ccscope, port)
        self.port = port
        self.tight_s = tight_s
        self.proc = None

    def spawn(self):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return wait_ready(self.port, self.tight_s) - t0

    def start(self):
        self.spawn()

    def once(self):
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        stop = time.monotonic() - t0
        self.proc = None
        start = self.spawn()
        return {"total": stop + start, "stop": stop, "start": start}

    def end(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Systemd:
    def __init__(self, ccscope, port, tight_s):
        self.unit = f"bench-restart-{os.getpid()}.service"
        self.argv = program(ccscope, port)
        self.port = port
        self.tight_s = tight_s
        self.up = False

    def start(self):
        self.up = True
        subprocess.run(["systemd-run", "--user", "--quiet", f"--unit={self.unit}",
                        "-p", "Type=exec",
                        # No start rate limit: 5 starts in 10 s would fail the 6th restart.
                        "-p", "StartLimitIntervalSec=0"] + self.argv, check=True)
        wait_ready(self.port, self.tight_s)

    def once(self):
        t0 = time.monotonic()
        subprocess.run(["systemctl", "--user", "restart", self.unit], check=True)
        returned = time.monotonic() - t0
        ready = wait_ready(self.port, self.tight_s) - t0
        return {"total": ready, "systemctl_returned": returned}

    def end(self):
        if self.up:
            subprocess.run(["systemctl", "--user", "stop", self.unit], stderr=subprocess.DEVNULL)
            subprocess.run(["systemctl", "--user", "reset-failed", self.unit],
                           stderr=subprocess.DEVNULL)
            self.up = False


# ---- statistics and output -----------------------------------------------------------------


def p90(values):
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(samples):
    keys = samples[0].keys()
    return {k: {"median_ms": statistics.median(s[k] for s in samples) * 1000,
                "p90_ms": p90([s[k] for s in samples]) * 1000} for k in keys}



def rounds(ways, samples, warmup, runs):
    """Each way once per round, the first `warmup` rounds not kept; the order rotates, so no
    way always runs right after another."""
    for i in range(warmup + runs):
        names = list(ways)
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            result = ways[name].once()
            if i >= warmup:
                samples[name].append(result)

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ccscope")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--interval", default="10ms",
                        help="the readiness probes' interval in the benchmark's config")
    parser.add_argument("--tight", type=float, default=1.0,
                        help="ms between tries of the tight readiness loop of (b) and (c)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    tight_s = args.tight / 1000

    # A SIGTERM to the benchmark still ends what it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    load = os.getloadavg()
    base, (bare_port, unit_port) = free_ports(2)
    with tempfile.TemporaryDirectory(prefix="ccscope-bench-restart.") as work:
        ways = {
            "ccscope": Ccscope(args.ccscope, work, base, args.interval),
            "bare": Bare(args.ccscope, bare_port, tight_s),
            "systemd": Systemd(args.ccscope, unit_port, tight_s),
        }
        samples = {name: [] for name in ways}
        try:
            for way in ways.values():
                way.start()
            rounds(ways, samples, args.warmup, args.runs)
        finally:
            for way in ways.values():
                way.end()
        wait_down(base + 10)
        wait_down(bare_port)
        wait_down(unit_port)

    pids = [s.get("pid") for r in ways["ccscope"].replies for s in r["services"]
            if s.get("service") == SERVICE]
    if None in pids or len(set(pids)) != len(pids):
        raise RuntimeError(f"ccscope restart did not give {SERVICE} a new pid every time: {pids}")

    stats = {name: summary(s) for name, s in samples.items()}
    a, b, c = stats["ccscope"]["total"], stats["bare"]["total"], stats["systemd"]["total"]
    overhead = {"median_ms": a["median_ms"] - b["median_ms"], "p90_ms": a["p90_ms"] - b["p90_ms"]}
    paired = [x["total"] - y["total"] for x, y in zip(samples["ccscope"], samples["bare"])]
    ratio = a["median_ms"] / c["median_ms"]
    last = ways["ccscope"].replies[-1].get("message", "") if ways["ccscope"].replies else ""

    def row(label, s):
        print(f"  {label:<62} {s['median_ms']:>8.1f} {s['p90_ms']:>8.1f}")

    print(f"restart of one service of the demo stack ({SERVICE}: ccscope __demo http, ready when "
          f"GET /health answers 200), {args.runs} runs after {args.warmup} warm-up, interleaved")
    print(f"  {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"before the run")
    print(f"  ccscope's readiness probes poll every {args.interval} in this config (demo: 100ms, "
          f"default 500ms); (b) and (c) poll the same GET every {args.tight:g} ms")
    print(f"  {'':<62} {'median':>8} {'p90':>8}  (ms)")
    row("(a) ccscope restart dashboard (spawn to exit; reply = ready)", a)
    own = stats["ccscope"]
    row("    its reply's elapsed_ms (the supervisor's own count)", own["reply_elapsed"])
    row("    the rest: the client's start, request and exit", own["client"])
    row("(b) the program alone: SIGTERM to exit + spawn to ready", b)
    row("    SIGTERM to exit", stats["bare"]["stop"])
    row("    spawn to ready", stats["bare"]["start"])
    row("(c) systemctl --user restart of a transient unit, to ready", c)
    row("    systemctl --user restart returned", stats["systemd"]["systemctl_returned"])
    print(f"  overhead (a) - (b): median {overhead['median_ms']:.1f} ms, "
          f"p90 {overhead['p90_ms']:.1f} ms, paired per round median "
          f"{statistics.median(paired) * 1000:.1f} ms (target < 20 ms): "
          f"{'met' if overhead['median_ms'] < 20 else 'NOT met'}")
    print(f"    (it includes up to one probe interval, {args.interval}: ccscope sees the service "
          f"ready at the first probe after it listens)")
    print(f"  ratio (a)/(c), medians: {ratio:.2f}")
    if last:
        print(f"  ccscope's last reply: {last}")
    print("json: " + json.dumps({
        "service": SERVICE, "runs": args.runs, "warmup": args.warmup,
        "probe_interval": args.interval, "tight_poll_ms": args.tight,
        "cpus": os.cpu_count(), "loadavg": load, "stats": stats,
        "overhead_ms": overhead, "overhead_paired_median_ms": statistics.median(paired) * 1000,
        "ratio_a_over_c": ratio}))


if __name__ == "__main__":
    sys.exit(main())
