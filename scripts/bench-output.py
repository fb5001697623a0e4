#!/usr/bin/env python3
"""The output-throughput benchmark of issue 13: one flood of lines, three ways to journald.

The program is `seq -f 'line %.0f' 1 N; echo END; exec sleep 600` (N short lines, written as
fast as seq writes, then a marker, then idle so whatever reads its stdout stays up to be
measured). It runs, one after the other:

  (a) ccscope: as the one service of a stack (`ccscope run`), its stdout and stderr read by
      ccscope's forwarder (`ccscope __journal-forward`), which sends each line as a native
      journal entry with the service's fields;
  (b) systemd: under `systemd-run --user` (a transient service of a user manager): systemd
      connects its stdout to journald's stream socket, and journald reads the pipe itself;
  (c) systemd-cat: piped into `systemd-cat -t TAG`, which copies it into a journal stream.

Measured for each: the rate at which journald received the lines (N divided by the time
between the first line's and the END marker's `__REALTIME_TIMESTAMP`, so start-up costs are
not counted), the wall time from spawn to END being readable in the journal, the lines lost
(every `line K` is counted back from the journal, as a set: missing and duplicated ones both
show), and the CPU time and peak resident memory (VmHWM) of the process between the program
and journald (ccscope's forwarder; systemd-cat), read while it still runs, plus journald's own
CPU time.

Everything runs in a private mount namespace (this script re-executes itself under
`unshare --mount`): a journald of its own (rate limit off, `Storage=volatile` on a tmpfs of
its own, a fresh one for each method), and a user manager of its own for (b), in a cgroup of
its own, so the shared journald, its rate limit and the disk are never touched. ccscope asks
the test environment's user manager (over its session bus) for its scope as always; its
processes stay in this namespace, so its forwarder writes to the private journald.

Usage (through scripts/bench-output.sh, which builds the binary and brings up the test
environment, as root): bench-output.py CCSCOPE     (BENCH_OUTPUT_LINES: lines, default 2000000)
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

IN_NS = "BENCH_OUTPUT_IN_NAMESPACE"
CONF = """[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
RuntimeMaxUse=3500M
RuntimeKeepFree=16M
RuntimeMaxFileSize=256M
ForwardToSyslog=no
ForwardToWall=no
ForwardToConsole=no
ReadKMsg=no
"""
TICKS = os.sysconf("SC_CLK_TCK")


def say(text):
    print(text, flush=True)


def run(args, **kw):
    return subprocess.run(args, check=True, **kw)


def wait_until(what, deadline, check, every=0.05):
    """Polls `check` (the harness's own waits; nothing here is a test assertion)."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(every)


def mounts():
    """(cgroup2 mount, name=systemd v1 mount or None) from mountinfo."""
    v2 = v1 = None
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        fstype, _src, opts = right.split()[:3]
        point = left.split()[4]
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        if fstype == "cgroup" and "name=systemd" in opts.split(","):
            v1 = point
    if v2 is None:
        raise RuntimeError("no cgroup2 mount: the private user manager needs one")
    return v2, v1


def proc_stats(pid):
    """CPU seconds (user + system) and VmHWM/VmRSS in KiB of a live process."""
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        status[key] = value.strip()
    kib = lambda k: int(status.get(k, "0 kB").split()[0])
    return {"cpu_s": cpu, "hwm_kib": kib("VmHWM"), "rss_kib": kib("VmRSS")}


def find_pids(needle, env_match=None):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            if needle not in cmd:
                continue
            if env_match is not None:
                env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
                if env_match not in env:
                    continue
            found.append(int(entry))
        except OSError:
            continue
    return found


class Journald:
    """A journald of this namespace, fresh storage each time it starts."""

    def __init__(self):
        self.proc = None

    def start(self):
        for d in pathlib.Path("/run/log/journal").glob("*"):
            shutil.rmtree(d, ignore_errors=True)
        self.proc = subprocess.Popen(["/lib/systemd/systemd-journald"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until("the private journald to accept entries", 20, lambda: subprocess.run(
            ["systemd-cat", "-t", "bench-output-probe", "true"],
            stderr=subprocess.DEVNULL).returncode == 0)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def cpu(self):
        return proc_stats(self.proc.pid)["cpu_s"]


def journal(args):
    return subprocess.run(["journalctl", "--no-pager", "-q"] + args, check=True,
                          capture_output=True).stdout


def wait_end(tag, deadline=900):
    """Waits (journalctl -f: inotify, no polling) until the END marker of `tag` is in."""
    follow = subprocess.Popen(["journalctl", "--no-pager", "-q", "-f", "--lines=all", "-o",
                               "cat", f"SYSLOG_IDENTIFIER={tag}", "MESSAGE=END"],
                              stdout=subprocess.PIPE)
    try:
        start = time.monotonic()
        line = follow.stdout.readline()
        if line.strip() != b"END":
            raise RuntimeError(f"journalctl -f for {tag}'s END ended: {line!r}")
        if time.monotonic() - start > deadline:
            raise RuntimeError("END came after the deadline")
    finally:
        follow.kill()
        follow.wait()


def count_back(tag, n):
    """Realtime of the first line and of END (µs), lines lost, lines duplicated."""
    run(["journalctl", "--sync"])
    head = subprocess.Popen(["journalctl", "--no-pager", "-q", "-o", "json",
                             "--output-fields=MESSAGE", f"SYSLOG_IDENTIFIER={tag}"],
                            stdout=subprocess.PIPE)
    first = json.loads(head.stdout.readline())
    head.kill()
    head.wait()
    end = json.loads(journal(["-o", "json", "--output-fields=MESSAGE", f"SYSLOG_IDENTIFIER={tag}",
                              "MESSAGE=END"]).splitlines()[0])
    seen = bytearray(n + 1)
    dups = 0
    lines = 0
    out = subprocess.Popen(["journalctl", "--no-pager", "-q", "-o", "cat",
                            f"SYSLOG_IDENTIFIER={tag}"], stdout=subprocess.PIPE)
    for raw in out.stdout:
        if not raw.startswith(b"line "):
            continue
        lines += 1
        k = int(raw[5:])
        if 1 <= k <= n:
            if seen[k]:
                dups += 1
            seen[k] = 1
    out.wait()
    lost = n - sum(seen[1:])
    if lost:
        missing = [k for k in range(1, n + 1) if not seen[k]][:5]
        say(f"  {tag}: {lost} line(s) missing, the first: {missing}")
    return int(first["__REALTIME_TIMESTAMP"]), int(end["__REALTIME_TIMESTAMP"]), lost, dups, lines


def program(n):
    return f"seq -f 'line %.0f' 1 {n}; echo END; exec sleep 600"


def result(name, n, t_spawn, t_seen, tag, middle, journald_cpu):
    first, end, lost, dups, lines = count_back(tag, n)
    span = max(end - first, 1) / 1e6
    r = {"method": name, "lines": n, "received": lines, "lost": lost, "duplicated": dups,
         "journald_span_s": round(span, 3), "lines_per_s": round(n / span),
         "wall_s": round(t_seen - t_spawn, 3), "journald_cpu_s": round(journald_cpu, 2)}
    if middle is not None:
        r.update({"middle_cpu_s": round(middle["cpu_s"], 2), "middle_hwm_kib": middle["hwm_kib"],
                  "middle_rss_kib": middle["rss_kib"]})
    say(f"  {name}: {r['lines_per_s']:,} lines/s into journald "
        f"({n:,} lines in {span:.2f} s, {r['wall_s']:.2f} s from spawn), lost {lost}, "
        f"duplicated {dups}, journald CPU {journald_cpu:.2f} s"
        + (f"; {'forwarder' if name == 'ccscope' else 'systemd-cat'} CPU {middle['cpu_s']:.2f} s, "
           f"peak RSS {middle['hwm_kib']} KiB (now {middle['rss_kib']} KiB)" if middle else ""))
    return r


def bench_ccscope(ccscope, n, work, jd):
    project = f"benchout{os.getpid()}"
    d = work / "stack"
    d.mkdir()
    (d / "ccscope.toml").write_text(
        f'[project]\nname = "{project}"\n[services.flood]\nshell = "{program(n)}"\n')
    env = dict(os.environ, CCSCOPE_STATE_DIR=str(d / "state"))
    jd.start()
    t0 = time.monotonic()
    sup = subprocess.Popen([ccscope, "run"], cwd=d, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The forwarder writes under `<project>/<service>`.
        wait_end(f"{project}/flood")
        t1 = time.monotonic()
        fwd = find_pids(b"__journal-forward", f"CCSCOPE_PROJECT={project}".encode())
        if len(fwd) != 1:
            raise RuntimeError(f"expected one forwarder of {project}, found {fwd}")
        middle = proc_stats(fwd[0])
        jcpu = jd.cpu()
    finally:
        subprocess.run([ccscope, "stop"], cwd=d, env=env, stdout=subprocess.DEVNULL)
        sup.wait(timeout=60)
    r = result("ccscope", n, t0, t1, f"{project}/flood", middle, jcpu)
    jd.stop()
    return r


class UserManager:
    """systemd --user of this namespace, in a cgroup of its own, its units' stdout going to
    this namespace's journald."""

    def __init__(self, work):
        self.rt = work / "rt"
        self.rt.mkdir(mode=0o700)
        v2, v1 = mounts()
        name = f"ccscope-bench-output-{os.getpid()}.slice/user@0.service"
        self.cgroups = [pathlib.Path(v2) / name] + ([pathlib.Path(v1) / name] if v1 else [])
        for cg in self.cgroups:
            cg.mkdir(parents=True)
        move = "; ".join(f"echo $$ > '{cg}/cgroup.procs'" for cg in self.cgroups)
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
               "XDG_RUNTIME_DIR": str(self.rt)}
        self.proc = subprocess.Popen(
            ["sh", "-c", f"{move}; exec /lib/systemd/systemd --user --log-target=journal"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self.env = env
        wait_until("the private user manager to run", 30, lambda: subprocess.run(
            ["systemctl", "--user", "is-system-running"], env=env, capture_output=True
        ).stdout.strip() in (b"running", b"degraded"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        v2 = self.cgroups[0]
        if (v2 / "cgroup.kill").exists():
            try:
                (v2 / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for cg in self.cgroups:
            for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            for p in (cg, cg.parent):
                try:
                    p.rmdir()
                except OSError:
                    pass


def bench_systemd(n, manager, jd):
    jd.start()
    unit = f"flood-systemd-{os.getpid()}"
    t0 = time.monotonic()
    run(["systemd-run", "--user", "-q", f"--unit={unit}", "-p", "SyslogIdentifier=flood-systemd",
         "sh", "-c", program(n)], env=manager.env)
    try:
        wait_end("flood-systemd")
        t1 = time.monotonic()
        jcpu = jd.cpu()
    finally:
        subprocess.run(["systemctl", "--user", "stop", unit], env=manager.env)
    r = result("systemd-run", n, t0, t1, "flood-systemd", None, jcpu)
    jd.stop()
    return r


def bench_cat(n, jd):
    jd.start()
    t0 = time.monotonic()
    producer = subprocess.Popen(["sh", "-c", program(n)], stdout=subprocess.PIPE,
                                start_new_session=True)
    cat = subprocess.Popen(["systemd-cat", "-t", "flood-cat"], stdin=producer.stdout)
    producer.stdout.close()
    try:
        wait_end("flood-cat")
        t1 = time.monotonic()
        middle = proc_stats(cat.pid)
        jcpu = jd.cpu()
    finally:
        os.killpg(producer.pid, signal.SIGTERM)
        producer.wait()
        cat.wait(timeout=30)
    r = result("systemd-cat", n, t0, t1, "flood-cat", middle, jcpu)
    jd.stop()
    return r


def inside(ccscope):
    n = int(os.environ.get("BENCH_OUTPUT_LINES", "2000000"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="ccscope-bench-output-", dir="/run"))
    conf = work / "journald.conf"
    conf.write_text(CONF)
    run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/systemd/journal"])
    run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4g", "tmpfs", "/run/log"])
    os.makedirs("/run/log/journal", exist_ok=True)
    if os.path.isdir("/var/log/journal"):
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/log/journal"])
    run(["mount", "--bind", str(conf), "/etc/systemd/journald.conf"])
    say(f"output benchmark: {n:,} lines per method; a private journald (rate limit off, "
        f"volatile storage), fresh for each; ccscope {ccscope}")
    jd = Journald()
    results = []
    manager = None
    try:
        results.append(bench_ccscope(ccscope, n, work, jd))
        jd.start()
        manager = UserManager(work)
        jd.stop()
        results.append(bench_systemd(n, manager, jd))
        results.append(bench_cat(n, jd))
    finally:
        if manager:
            manager.stop()
        jd.stop()
        shutil.rmtree(work, ignore_errors=True)
    by = {r["method"]: r for r in results}
    ratio = by["ccscope"]["lines_per_s"] / by["systemd-run"]["lines_per_s"]
    cat_ratio = by["ccscope"]["lines_per_s"] / by["systemd-cat"]["lines_per_s"]
    fwd = by["ccscope"]
    say(f"ccscope / systemd-run: {ratio:.2f}x (target >= 0.9); ccscope / systemd-cat: "
        f"{cat_ratio:.2f}x; lost: ccscope {fwd['lost']}, systemd-run {by['systemd-run']['lost']}, "
        f"systemd-cat {by['systemd-cat']['lost']} (target 0); forwarder peak RSS "
        f"{fwd['middle_hwm_kib']} KiB (target < 2048)")
    print(json.dumps({"lines": n, "ratio_vs_systemd": round(ratio, 3),
                      "ratio_vs_systemd_cat": round(cat_ratio, 3), "results": results}))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ccscope = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        sys.exit("bench-output.py runs as root (it mounts in a namespace of its own)")
    if os.environ.get(IN_NS) != "1":
        env = dict(os.environ, **{IN_NS: "1"})
        os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private",
                               sys.executable, os.path.abspath(__file__), ccscope], env)
    inside(ccscope)


if __name__ == "__main__":
    main()
