"""100,000 audit events of one project in journald, read back two ways.

The events are written with journald's native protocol, the fields ccscope's own entries carry
(CCSCOPE_AUDIT, CCSCOPE_PROJECT, CCSCOPE_EVENT, CCSCOPE_SERVICE, CCSCOPE_REASON, the actor).
journald's rate limit would drop most of them: the writer paces itself and checks how many were
stored. Then, three rounds each: `ccscope audit --json` (all of them; and `-n 10`) against
`journalctl CCSCOPE_PROJECT=<p> -o json` (the same entries), time to the first byte of output
and to the end.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

JOURNAL = "/run/systemd/journal/socket"


def write_events(project, n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    events = ["service.restarting", "service.running", "service.launching", "service.starting"]
    services = ["clickhouse", "telemetry_collector", "bridge_sync", "dashboard"]
    for i in range(n):
        fields = {
            "MESSAGE": f"bench event {i}",
            "PRIORITY": "6",
            "SYSLOG_IDENTIFIER": "ccscope-bench",
            "CCSCOPE_AUDIT": "1",
            "CCSCOPE_PROJECT": project,
            "CCSCOPE_EVENT": events[i % len(events)],
            "CCSCOPE_SERVICE": services[i % len(services)],
            "CCSCOPE_REASON": f"bench event {i}",
            "CCSCOPE_ACTOR_UID": "0",
            "CCSCOPE_ACTOR_PID": str(os.getpid()),
            "CCSCOPE_ACTOR_COMM": "bench",
            "CCSCOPE_RUN_ID": "bench-run",
        }
        data = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
        while True:
            try:
                s.sendto(data, JOURNAL)
                break
            except (BlockingIOError, ConnectionRefusedError, OSError):
                time.sleep(0.001)
    subprocess.run(["journalctl", "--sync"], check=False)


def stored(project):
    out = subprocess.run(
        ["journalctl", "-q", "-o", "cat", "--output-fields=MESSAGE", f"CCSCOPE_PROJECT={project}"],
        capture_output=True, check=False,
    )
    return out.stdout.count(b"\n")


def timed(argv, env=None):
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    first = p.stdout.read(1)
    t_first = time.monotonic() - start
    rest = p.stdout.read()
    p.wait()
    t_end = time.monotonic() - start
    return t_first * 1000, t_end * 1000, len(first) + len(rest)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("reader")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    project = f"bench-audit-{os.getpid()}"
    t0 = time.monotonic()
    write_events(project, args.events)
    written_s = time.monotonic() - t0
    got = stored(project)
    print(f"audit over {args.events} events of one project ({got} stored by journald; written in {written_s:.1f} s)")
    print(f"  {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "ccscope.toml")
        with open(cfg, "w") as f:
            f.write(f'[project]\nname = "{project}"\n[services.x]\ncommand = ["true"]\n')
        env = dict(os.environ, CCSCOPE_STATE_DIR=os.path.join(d, "state"))
        runs = {
            "ccscope audit --json (all)": [args.exe, "-f", cfg, "--json", "audit"],
            "journalctl CCSCOPE_PROJECT=p -o json (all)": ["journalctl", "-q", "-o", "json", f"CCSCOPE_PROJECT={project}"],
            # libsystemd's own reader, the other way `audit` could read (examples/sd_journal_reader.rs).
            "sd-journal reader (all)": [args.reader, project],
            "ccscope audit --json -n 10": [args.exe, "-f", cfg, "--json", "audit", "-n", "10"],
            "journalctl CCSCOPE_PROJECT=p -o json -n 10": ["journalctl", "-q", "-o", "json", "-n", "10", f"CCSCOPE_PROJECT={project}"],
        }
        results = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, argv in runs.items():
                results[name].append(timed(argv, env))
        print(f"  {'':46} {'first byte':>11} {'end':>9}  (ms, median of {args.rounds})  bytes")
        med = {}
        for name, rs in results.items():
            first = statistics.median(r[0] for r in rs)
            end = statistics.median(r[1] for r in rs)
            med[name] = (first, end)
            print(f"  {name:46} {first:11.1f} {end:9.1f}  {rs[-1][2]}")
        a = med["ccscope audit --json (all)"]
        j = med["journalctl CCSCOPE_PROJECT=p -o json (all)"]
        r = med["sd-journal reader (all)"]
        print(f"  ratio sd-journal reader/journalctl (all, to the end): {r[1] / j[1]:.2f}")
        print(f"  ratio ccscope/journalctl (all, to the end): {a[1] / j[1]:.2f}; target < 300 ms to the first line: "
              f"{'met' if a[0] < 300 else 'not met'} ({a[0]:.0f} ms)")
    # The bench's entries stay in the journal (they are the bench project's alone); vacuuming
    # would touch every other entry too.


if __name__ == "__main__":
    sys.exit(main())
