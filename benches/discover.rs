//! The discovery engine's full scan with 2,000 live processes and 5,000 open listening
//! sockets (created here), timed and its allocations counted, side by side in the same run
//! with `ss -ltnp`, `lsof -i -P -n` and Python psutil `net_connections(kind="inet")`; and
//! the re-check of a project's own registered processes.
//!
//! Run it with `scripts/bench-discover.sh` (it installs psutil into target/bench-venv).
//! Everything it starts lives in one cgroup of its own, killed at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ccscope::contain::cgroup::{self, Cgroup};
use ccscope::proc::{LivenessProbe, ProcFs, ProcessIdentity};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PROCESSES: usize = 2000;
const SOCKETS: usize = 5000;
const HOLDERS: usize = 5;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command `RUNS` times (3 for slow ones); the median wall time.
fn time_command(program: &str, args: &[&str], runs: usize) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() && program != "lsof" {
            return None;
        }
        times.push(t.elapsed());
    }
    Some(median(times))
}

/// The fields our scan reads, read with the `procfs` crate (single-threaded).
fn procfs_crate_scan() -> (usize, usize) {
    use procfs::process::{FDTarget, all_processes};
    let mut listening = std::collections::HashSet::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
    {
        for entry in table {
            if entry.state == procfs::net::TcpState::Listen {
                listening.insert(entry.inode);
            }
        }
    }
    let (mut processes, mut joined) = (0, 0);
    for process in all_processes().unwrap().flatten() {
        let Ok(_stat) = process.stat() else { continue };
        let _ = process.uid();
        let _ = process.cmdline();
        let _ = process.cgroups();
        let _ = process.environ();
        let _ = process.exe();
        if let Ok(fds) = process.fd() {
            for fd in fds.flatten() {
                if let FDTarget::Socket(inode) = fd.target {
                    if listening.contains(&inode) {
                        joined += 1;
                    }
                }
            }
        }
        processes += 1;
    }
    (processes, joined)
}

fn main() {
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mount = cgroup::v2_mount().unwrap().expect("a cgroup2 mount");
    let base = std::env::var_os("CCSCOPE_CGROUP_ROOT")
        .map(PathBuf::from)
        .unwrap_or(mount);
    let cg = Cgroup::create(base.join(format!("ccscope-bench-discover-{}", std::process::id())))
        .expect("create the bench cgroup");
    let enter = |cmd: &mut Command| {
        let procs = cg.path.join("cgroup.procs");
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                std::fs::write(&procs, std::process::id().to_string())
            });
        }
    };

    // 2,000 processes, and 5,000 listening sockets held by a few of them.
    let mut spawner = Command::new("/bin/sh");
    spawner.arg("-c").arg(format!(
        "i=0; while [ $i -lt {} ]; do sleep 600 & i=$((i+1)); done; wait",
        PROCESSES - HOLDERS - 1
    ));
    enter(&mut spawner);
    let mut children = vec![spawner.spawn().unwrap()];
    for _ in 0..HOLDERS {
        let mut holder = Command::new(&python);
        holder.arg("-c").arg(format!(
            "import socket, time\nsocks = []\nfor _ in range({}):\n    s = socket.socket()\n    s.bind(('127.0.0.1', 0))\n    s.listen()\n    socks.append(s)\nprint('ready', flush=True)\ntime.sleep(600)",
            SOCKETS / HOLDERS
        ));
        holder.stdout(Stdio::piped());
        enter(&mut holder);
        children.push(holder.spawn().unwrap());
    }
    for child in children.iter_mut().skip(1) {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while cg.procs().unwrap().len() < PROCESSES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let live = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    let listening = ccscope::discover::scan::listening_sockets(Path::new("/proc")).len();
    println!(
        "{live} processes live ({} of the bench), {listening} listening sockets",
        cg.procs().unwrap().len()
    );

    // ccscope: the whole scan, in process.
    let _ = ccscope::discover::scan::scan(Path::new("/proc"));
    let mut times = Vec::new();
    let (mut allocs, mut bytes) = (0, 0);
    let mut found = (0, 0);
    for _ in 0..RUNS {
        let (a0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let t = Instant::now();
        let snapshot = ccscope::discover::scan::scan(Path::new("/proc"));
        times.push(t.elapsed());
        allocs = ALLOCS.load(Ordering::Relaxed) - a0;
        bytes = BYTES.load(Ordering::Relaxed) - b0;
        found = (
            snapshot.processes.len(),
            snapshot
                .processes
                .values()
                .map(|p| p.listening.len())
                .sum::<usize>(),
        );
    }
    let ours = median(times);
    println!(
        "ccscope scan            {:>9.1} ms  ({} processes, {} sockets joined; {} allocations, {:.1} MiB per scan)",
        ms(ours),
        found.0,
        found.1,
        allocs,
        bytes as f64 / 1048576.0
    );
    // The same pass written with the `procfs` crate, for the choice of parser.
    let _ = procfs_crate_scan();
    let mut times = Vec::new();
    let mut crate_found = (0, 0);
    for _ in 0..RUNS {
        let t = Instant::now();
        crate_found = procfs_crate_scan();
        times.push(t.elapsed());
    }
    let with_crate = median(times);
    println!(
        "procfs crate, 1 thread  {:>9.1} ms  ({} processes, {} sockets joined)",
        ms(with_crate),
        crate_found.0,
        crate_found.1
    );
    let one_thread = {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let _ = ccscope::discover::scan::scan_with(Path::new("/proc"), 1);
            times.push(t.elapsed());
        }
        median(times)
    };
    println!(
        "ccscope scan, 1 thread  {:>9.1} ms  ours/procfs crate (both 1 thread) = {:.2}",
        ms(one_thread),
        ms(one_thread) / ms(with_crate)
    );
    let peers: [(&str, &str, Vec<&str>, usize); 3] = [
        ("ss -ltnp", "ss", vec!["-ltnp"], RUNS),
        ("lsof -i -P -n", "lsof", vec!["-i", "-P", "-n"], 3),
        (
            "psutil net_connections",
            python.as_str(),
            vec!["-c", "import psutil; psutil.net_connections(kind='inet')"],
            3,
        ),
    ];
    for (name, program, args, runs) in peers {
        match time_command(program, &args, runs) {
            Some(t) => println!(
                "{name:<23} {:>9.1} ms  ccscope/{name} = {:.2}",
                ms(t),
                ms(ours) / ms(t)
            ),
            None => println!("{name:<23} unavailable"),
        }
    }
    // psutil without the interpreter's start-up, for fairness.
    let inner = Command::new(&python)
        .arg("-c")
        .arg("import psutil, time\nt = time.perf_counter(); psutil.net_connections(kind='inet'); print((time.perf_counter() - t) * 1000)")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok());
    if let Some(inner) = inner {
        println!(
            "psutil (call only)      {inner:>9.1} ms  ccscope/psutil = {:.2}",
            ms(ours) / inner
        );
    }

    // Re-checking a project's own registered processes: (pid, start time) alive and no zombie.
    let procfs = ProcFs::default();
    let registered: Vec<ProcessIdentity> = cg
        .procs()
        .unwrap()
        .into_iter()
        .take(20)
        .filter_map(|p| procfs.identity(p).ok())
        .collect();
    let mut checks = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let alive = registered.iter().filter(|id| procfs.is_alive(**id)).count();
        checks.push(t.elapsed());
        assert_eq!(alive, registered.len());
    }
    println!(
        "re-check of {} registered processes: {:.3} ms (median of 100)",
        registered.len(),
        ms(median(checks))
    );

    let _ = cg.kill();
    for mut c in children {
        let _ = c.wait();
    }
    let _ = cg.wait_empty(Duration::from_secs(10));
    let _ = cg.remove(Duration::from_secs(5));
}
