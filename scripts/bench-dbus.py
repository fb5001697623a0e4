#!/usr/bin/env python3
"""The D-Bus benchmark of issue 14: a restart three ways, then the supervisor at rest.

The stack and the restarted service are bench-restart.py's (the demo profile on free ports,
readiness polled every `--interval`, the service `dashboard`, ready on GET /health); its
helpers are reused from there. Measured, interleaved round by round, `--runs` times after
`--warmup` rounds, each from the client's spawn to its exit (the reply comes when the service
is ready again, so the three include the same stop and start of the program):

  (a) D-Bus: `busctl --user call dev.ccscope.Project.<p> /dev/ccscope/project/<p>
      dev.ccscope.Project1 Restart as 1 dashboard`;
  (b) the CLI: `ccscope restart dashboard --json` (a ccscope process started each time, which
      finds the supervisor and asks over the control socket);
  (c) systemd: `systemctl --user restart` of the same program as a transient unit, until its
      GET /health answers (polled every --tight ms), and apart the time systemctl returned.

The dashboard's liveness probe is left out of the config (it would wake the supervisor every
5 s at rest; the restarts do not use it). Each restart must give the dashboard a new pid
(checked from the replies). Then, at rest: the
supervisor's CPU time (utime + stime from /proc/PID/stat, in clock ticks) and its context
switches (/proc/PID/status) over `--idle` seconds (default 60), with the interface exported
and `busctl --user monitor` subscribed to its name; the target is 0 ticks. The benchmark
sleeps through that window on purpose: it measures a duration, it waits for no condition.
Everything started is ended as bench-restart.py ends it.

Usage (through scripts/bench-dbus.sh, which builds the binary and brings up the test
environment):
  bench-dbus.py CCSCOPE [--runs N] [--warmup N] [--interval DURATION] [--tight MS] [--idle S]
"""

import argparse
import importlib.util
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_restart", HERE / "bench-restart.py")
br = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(br)

INTERFACE = "dev.ccscope.Project1"


def escape(project):
    """The project's name element, as src/dbus/names.rs escapes it."""
    if not project:
        return "_"
    out = []
    for i, b in enumerate(project.encode()):
        c = chr(b)
        if (c.isascii() and c.isalpha()) or (c.isdigit() and i > 0):
            out.append(c)
        else:
            out.append(f"_{b:02x}")
    return "".join(out)


class Bus:
    """Restart over ccscope's bus interface, on the stack `cli` started."""

    def __init__(self, cli):
        self.cli = cli
        self.name = f"dev.ccscope.Project.{escape(cli.project)}"
        self.path = f"/dev/ccscope/project/{escape(cli.project)}"
        self.replies = []

    def start(self):
        pass

    def once(self):
        t0 = time.monotonic()
        done = subprocess.run(["busctl", "--user", "call", self.name, self.path, INTERFACE,
                               "Restart", "as", "1", br.SERVICE],
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        if done.returncode != 0:
            raise RuntimeError(f"busctl call Restart exited {done.returncode}: "
                               f"{done.stdout.strip()} {done.stderr.strip()}")
        # `s "<the reply as JSON>"`
        reply = json.loads(json.loads(done.stdout.strip()[2:]))
        self.replies.append(reply)
        elapsed = reply.get("elapsed_ms", 0) / 1000
        return {"total": wall, "reply_elapsed": elapsed, "client": wall - elapsed}

    def end(self):
        pass


def cpu_ticks(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
    return int(fields[11]) + int(fields[12])


def switches(pid):
    total = 0
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            total += int(line.split()[1])
    return total


def idle(cli, bus, seconds):
    status = json.loads(cli.run("--json", "status").stdout)
    pid = status["supervisor_pid"]
    monitor = subprocess.Popen(["busctl", "--user", "--json=short", "monitor", bus.name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Subscribed once it says so (on stderr).
        line = monitor.stderr.readline()
        if "Monitoring" not in line:
            raise RuntimeError(f"busctl monitor said {line!r}")
        # Settled: the last restart's trim of start-up pages (1 s after it) is over, and so is
        # the runtime's idle blocking thread (it exits 10 s after its last job).
        time.sleep(12)
        ticks0, switches0 = cpu_ticks(pid), switches(pid)
        time.sleep(seconds)
        ticks1, switches1 = cpu_ticks(pid), switches(pid)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate()
    heard = [l for l in out.splitlines() if l.strip()]
    return {"supervisor_pid": pid, "seconds": seconds, "cpu_ticks": ticks1 - ticks0,
            "clock_ticks_per_s": os.sysconf("SC_CLK_TCK"),
            "context_switches": switches1 - switches0, "messages_monitored": len(heard)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ccscope")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--interval", default="10ms")
    parser.add_argument("--tight", type=float, default=1.0)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    tight_s = args.tight / 1000
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    load = os.getloadavg()
    base, (unit_port,) = br.free_ports(1)
    with tempfile.TemporaryDirectory(prefix="ccscope-bench-dbus.") as work:
        cli = br.Ccscope(args.ccscope, work, base, args.interval)
        # The dashboard's liveness probe (every 5 s) would be the supervisor's only work at
        # rest; without it, what is left at rest is what the interface costs.
        text = pathlib.Path(cli.config).read_text()
        pathlib.Path(cli.config).write_text(
            "".join(l for l in text.splitlines(True) if not l.startswith("liveness")))
        ways = {"dbus": Bus(cli), "cli": cli,
                "systemd": br.Systemd(args.ccscope, unit_port, tight_s)}
        samples = {name: [] for name in ways}
        try:
            for way in ways.values():
                way.start()
            br.rounds(ways, samples, args.warmup, args.runs)
            rest = idle(cli, ways["dbus"], args.idle)
        finally:
            for way in ways.values():
                way.end()
        br.wait_down(base + 10)
        br.wait_down(unit_port)

    replies = ways["dbus"].replies + cli.replies
    pids = [s.get("pid") for r in replies for s in r["services"] if s.get("service") == br.SERVICE]
    if None in pids or len(set(pids)) != len(pids):
        raise RuntimeError(f"a restart did not give {br.SERVICE} a new pid: {pids}")

    stats = {name: br.summary(s) for name, s in samples.items()}
    a, b, c = stats["dbus"]["total"], stats["cli"]["total"], stats["systemd"]["total"]

    def row(label, s):
        print(f"  {label:<62} {s['median_ms']:>8.1f} {s['p90_ms']:>8.1f}")

    print(f"restart of {br.SERVICE} of the demo stack three ways, {args.runs} runs after "
          f"{args.warmup} warm-up, interleaved; {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before the run")
    print(f"  ccscope's readiness probes poll every {args.interval}; (c) polls every "
          f"{args.tight:g} ms")
    print(f"  {'':<62} {'median':>8} {'p90':>8}  (ms)")
    row("(a) busctl --user call ... Restart as 1 dashboard", a)
    row("    its reply's elapsed_ms (the supervisor's own count)", stats["dbus"]["reply_elapsed"])
    row("    the rest: busctl's start, the bus, the uid check, exit", stats["dbus"]["client"])
    row("(b) ccscope restart dashboard (process start included)", b)
    row("    its reply's elapsed_ms", stats["cli"]["reply_elapsed"])
    row("    the rest: ccscope's start, finding the supervisor, exit", stats["cli"]["client"])
    row("(c) systemctl --user restart of a transient unit, to ready", c)
    row("    systemctl --user restart returned", stats["systemd"]["systemctl_returned"])
    print(f"  (a) - (b), medians: {a['median_ms'] - b['median_ms']:.1f} ms; "
          f"ratio (a)/(c): {a['median_ms'] / c['median_ms']:.2f}")
    verdict = "met" if rest["cpu_ticks"] == 0 else "NOT met"
    print(f"  at rest for {rest['seconds']:g} s with the interface exported and a monitor "
          f"subscribed: {rest['cpu_ticks']} clock ticks of CPU (target 0: {verdict}), "
          f"{rest['context_switches']} context switches, {rest['messages_monitored']} "
          f"messages on the bus from or to it")
    print("json: " + json.dumps({
        "service": br.SERVICE, "runs": args.runs, "warmup": args.warmup,
        "probe_interval": args.interval, "cpus": os.cpu_count(), "loadavg": load,
        "stats": stats, "idle": rest}))


if __name__ == "__main__":
    sys.exit(main())
