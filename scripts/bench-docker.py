#!/usr/bin/env python3
"""The container benchmark of issue 11: one stack of N container services, three ways, one run.

N (default 10) busybox httpd containers, each publishing one port; the last one's process
ignores SIGTERM (`trap '' TERM`), so it costs the whole stop timeout of 3 s. Every way runs
them with an init (ccscope's `init` default, `docker run --init`, compose's `init: true`), so
the stop signal reaches the process. Side by side:
  - ccscope: `run --detach` of a generated ccscope.toml with N `[services.sN.docker]` tables
    (ready = an HTTP GET on the published port), then `ccscope stop`;
  - docker: N `docker run -d` in parallel, then N `docker stop -t 3` in parallel and one
    `docker rm`;
  - docker-compose (1.29, Debian's or PyPI's): `up -d` of a generated compose file, then
    `down -t 3`; skipped, and said so, when no docker-compose could be installed.
Measured for each: time to all ready (every port answers an HTTP GET with 200; for docker and
compose also the time until their command returned), time to stopped and removed, containers
left (by the benchmark's label), and ccscope's supervisor resident memory (VmRSS of the pid
its lock file names, `<state>/locks/<project>.lock`) with the N containers up.

Every container carries the label bench.tag=<tag>; leftovers are counted by it and removed
by id afterwards, never by pattern.

Usage (through scripts/bench-docker.sh, which brings up the test environment and dockerd):
  bench-docker.py CCSCOPE [--compose PATH] [--services N] [--image IMAGE] [--json]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

STOP_TIMEOUT = 3
CONTAINER_PORT = 8080
HTTPD = ["httpd", "-f", "-p", str(CONTAINER_PORT), "-h", "/etc"]
# sh ignores SIGTERM (and so does httpd, which inherits the ignored disposition); the init
# forwards SIGTERM to sh only, so the container stays until it is killed.
IGNORES_TERM = ["sh", "-c", f"trap '' TERM; httpd -f -p {CONTAINER_PORT} -h /etc & wait"]
READY_PATH = "/passwd"  # /etc/passwd of the test image, served by httpd -h /etc


def commands(n):
    return {f"s{i}": (IGNORES_TERM if i == n else HTTPD) for i in range(1, n + 1)}


def free_ports(count):
    """`count` consecutive host ports, all free now."""
    for base in range(18200, 30000, 50):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return list(range(base, base + count))
    raise RuntimeError("no run of free ports found")


def http_ok(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{READY_PATH}", timeout=0.5) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(ports, t0, deadline=60):
    """Seconds from t0 until every port answered; docker-proxy accepts before httpd listens,
    so a TCP connect alone proves nothing."""
    pending = set(ports)
    while pending:
        pending = {p for p in pending if not http_ok(p)}
        if pending:
            if time.monotonic() - t0 > deadline:
                raise RuntimeError(f"ports {sorted(pending)} did not answer within {deadline}s")
            time.sleep(0.005)
    return time.monotonic() - t0


def docker(*args, check=True):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def labelled(label):
    out = docker("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}").stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def remove_labelled(label):
    ids = labelled(label)
    if ids:
        docker("rm", "--force", "--volumes", *ids, check=False)
    return len(ids)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


# ---- peers ---------------------------------------------------------------------------------


class Refused(Exception):
    """ccscope does not run container services (yet): the message says why."""


def bench_ccscope(args, names, cmds, ports, tag, work):
    project = f"bench-docker-{tag}"
    label = f"bench.tag={tag}"
    lines = [f'[project]\nname = "{project}"\n']
    for name, port in zip(names, ports):
        lines.append(
            f'[services.{name}]\nstop_timeout = "{STOP_TIMEOUT}s"\nrestart = "no"\n'
            f'ready = {{ http = "http://127.0.0.1:{port}{READY_PATH}", interval = "20ms", '
            f'start_timeout = "60s" }}\n'
            f'[services.{name}.docker]\nimage = "{args.image}"\n'
            f"command = {json.dumps(cmds[name])}\n"
            f'ports = ["{port}:{CONTAINER_PORT}"]\nlabels = {{ "bench.tag" = "{tag}" }}\n'
        )
    config = os.path.join(work, "ccscope.toml")
    with open(config, "w") as f:
        f.write("\n".join(lines))
    state = os.path.join(work, "state")
    env = dict(os.environ, CCSCOPE_STATE_DIR=state)
    base = [args.ccscope, "-f", config, "-q"]
    try:
        t0 = time.monotonic()
        ran = subprocess.run(base + ["run", "--detach"], env=env, capture_output=True, text=True)
        started = time.monotonic() - t0
        if ran.returncode != 0:
            said = " ".join((ran.stderr or ran.stdout).split())
            raise Refused(f"`ccscope run --detach` exited {ran.returncode}: {said}")
        # Its own readiness said ready; the same check as the others' confirms it.
        wait_ready(ports, t0)
        with open(os.path.join(state, "locks", f"{project}.lock")) as f:
            pid = int(f.read().split()[0])
        rss = rss_kib(pid)
        running = len(labelled(label))
        t0 = time.monotonic()
        stopped = subprocess.run(base + ["stop", "--json"], env=env, capture_output=True,
                                 text=True)
        stop_s = time.monotonic() - t0
        if stopped.returncode != 0:
            print(f"bench-docker: `ccscope stop` exited {stopped.returncode}: "
                  f"{stopped.stderr.strip()}", file=sys.stderr)
        left = len(labelled(label))
        return dict(ready_s=started, returned_s=started, stop_s=stop_s, left=left,
                    running=running, rss_kib=rss, stop_exit=stopped.returncode)
    finally:
        subprocess.run(base + ["stop", "--force"], env=env, capture_output=True)
        remove_labelled(label)


def bench_docker_run(args, names, cmds, ports, tag):
    label = f"bench.tag={tag}"
    try:
        t0 = time.monotonic()
        runs = [subprocess.Popen(
            ["docker", "run", "--detach", "--init", "--label", label,
             "--name", f"bench-{tag}-{name}", "--publish", f"{port}:{CONTAINER_PORT}",
             "--stop-timeout", str(STOP_TIMEOUT), args.image, *cmds[name]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, port in zip(names, ports)]
        ids = []
        for p in runs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"docker run failed: {err.strip()}")
            ids.append(out.strip())
        returned = time.monotonic() - t0
        ready = wait_ready(ports, t0)
        running = len(labelled(label))
        t0 = time.monotonic()
        stops = [subprocess.Popen(["docker", "stop", "-t", str(STOP_TIMEOUT), i],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in ids]
        for p in stops:
            p.wait()
        stop_only = time.monotonic() - t0
        docker("rm", *ids)
        stop_s = time.monotonic() - t0
        left = len(labelled(label))
        return dict(ready_s=ready, returned_s=returned, stop_s=stop_s, stop_only_s=stop_only,
                    rm_s=stop_s - stop_only, left=left, running=running)
    finally:
        remove_labelled(label)


def bench_compose(args, names, cmds, ports, tag, work):
    project = f"bench-docker-{tag}"
    label = f"bench.tag={tag}"
    lines = ['version: "2.4"', "services:"]
    for name, port in zip(names, ports):
        lines += [f"  {name}:", f"    image: {json.dumps(args.image)}",
                  f"    command: {json.dumps(cmds[name])}", "    init: true",
                  f"    stop_grace_period: {STOP_TIMEOUT}s",
                  f'    ports: ["{port}:{CONTAINER_PORT}"]',
                  f'    labels: {{ "bench.tag": "{tag}" }}']
    path = os.path.join(work, "docker-compose.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    base = [args.compose, "--project-name", project, "--file", path]
    try:
        t0 = time.monotonic()
        up = subprocess.run(base + ["up", "--detach"], capture_output=True, text=True)
        if up.returncode != 0:
            raise RuntimeError(f"docker-compose up failed: {up.stderr.strip()}")
        returned = time.monotonic() - t0
        ready = wait_ready(ports, t0)
        running = len(labelled(label))
        t0 = time.monotonic()
        down = subprocess.run(base + ["down", "--timeout", str(STOP_TIMEOUT)],
                              capture_output=True, text=True)
        stop_s = time.monotonic() - t0
        if down.returncode != 0:
            print(f"bench-docker: docker-compose down failed: {down.stderr.strip()}",
                  file=sys.stderr)
        left = len(labelled(label))
        return dict(ready_s=ready, returned_s=returned, stop_s=stop_s, left=left,
                    running=running)
    finally:
        subprocess.run(base + ["down", "--timeout", "0"], capture_output=True)
        remove_labelled(label)


# ---- report --------------------------------------------------------------------------------


def table(results, n):
    def s(v):
        return "-" if v is None else f"{v:.2f} s"

    rows = [("", "all ready", "cmd returned", "stopped+removed", "left", "supervisor RSS")]
    for name, r in results.items():
        if isinstance(r, str):
            rows.append((name, f"skipped: {r}", "", "", "", ""))
            continue
        rss = f"{r['rss_kib'] / 1024:.1f} MiB" if r.get("rss_kib") else "-"
        stop = s(r["stop_s"])
        if "stop_only_s" in r:
            stop += f" (stop {r['stop_only_s']:.2f} + rm {r['rm_s']:.2f})"
        rows.append((name, s(r["ready_s"]), s(r["returned_s"]), stop, str(r["left"]), rss))
    widths = [max(len(row[i]) for row in rows if i == 0 or not row[1].startswith("skipped"))
              for i in range(len(rows[0]))]
    out = [f"{n} container services (one ignores SIGTERM), stop timeout {STOP_TIMEOUT} s"]
    for row in rows:
        if row[1].startswith("skipped"):
            out.append(f"{row[0]:<{widths[0]}}  {row[1]}")
        else:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return out


def ratios(results):
    c, d, k = (results.get(x) for x in ("ccscope", "docker run/stop", "docker-compose"))
    out = []
    if isinstance(c, dict) and isinstance(d, dict):
        out.append(f"ccscope / docker: start {c['ready_s'] / d['ready_s']:.2f}x to all ready "
                   f"({c['ready_s'] / d['returned_s']:.2f}x of `docker run -d` returning; "
                   f"target <= 1.1x), stop+remove {c['stop_s'] / d['stop_s']:.2f}x "
                   f"(target <= 1.0x)")
    if isinstance(c, dict) and isinstance(k, dict):
        out.append(f"ccscope / docker-compose: start {c['ready_s'] / k['ready_s']:.2f}x, "
                   f"stop+remove {c['stop_s'] / k['stop_s']:.2f}x")
    if isinstance(d, dict) and isinstance(k, dict):
        out.append(f"docker-compose / docker: start {k['ready_s'] / d['ready_s']:.2f}x, "
                   f"stop+remove {k['stop_s'] / d['stop_s']:.2f}x")
    if isinstance(c, dict) and c.get("rss_kib"):
        out.append(f"ccscope supervisor RSS with {c['running']} containers: "
                   f"{c['rss_kib'] / 1024:.1f} MiB (target < 8 MB)")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ccscope")
    parser.add_argument("--compose", help="docker-compose to compare with (skipped without)")
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--image", default=os.environ.get("CCSCOPE_TEST_DOCKER_IMAGE",
                                                           "ccscope-test/busybox:latest"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if docker("image", "inspect", args.image, check=False).returncode != 0:
        sys.exit(f"bench-docker: the image {args.image} is missing: run "
                 f"`scripts/test-env.sh up` (it builds it offline)")
    n = args.services
    names = [f"s{i}" for i in range(1, n + 1)]
    cmds = commands(n)
    tag = f"{os.getpid()}-{int(time.time())}"
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-docker-") as work:
        ports = free_ports(n)
        results["docker run/stop"] = bench_docker_run(args, names, cmds, ports, tag)
        if args.compose and shutil.which(args.compose):
            results["docker-compose"] = bench_compose(args, names, cmds, free_ports(n), tag,
                                                      work)
        elif args.compose:
            results["docker-compose"] = f"{args.compose} is not there"
        else:
            results["docker-compose"] = "no docker-compose (bench-docker.sh could not install one)"
        try:
            results["ccscope"] = bench_ccscope(args, names, cmds, free_ports(n), tag, work)
        except Refused as refused:
            results["ccscope"] = (f"ccscope refused the container services ({refused}); "
                                  f"they run once the supervisor drives containers")
    print("\n".join(table(results, n)))
    print("\n".join(ratios(results)))
    if args.json:
        print(json.dumps(dict(services=n, stop_timeout_s=STOP_TIMEOUT, results=results),
                         indent=2))
    left = sum(r["left"] for r in results.values() if isinstance(r, dict))
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
