//! Containment costs, whole-operation timings on the real systemd user manager and cgroupfs:
//! - start 100 scopes one after another, and 100 at once: per-scope p50 and p99;
//! - kill a 1,000-process service: from the kill call until `populated 0`, side by side with
//!   `systemd-run --user --scope` + `systemctl --user kill`, and with a signal-every-pid loop.
//!
//! Needs the test environment: run `scripts/bench-contain.sh` (it brings it up and down).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ccscope::config::Limits;
use ccscope::contain::cgroup::{self, Cgroup};
use ccscope::contain::{AnyContainment, BackendChoice, BackendKind, BusKind, Containment, detect};
use ccscope::launch::{LaunchSpec, Launched, OutputTarget, launch};

const SCOPES: usize = 100;
const KILL_PROCESSES: usize = 1000;

fn spec(project: &str, service: &str, instance: Option<String>, script: &str) -> LaunchSpec {
    LaunchSpec {
        project: project.into(),
        service: service.into(),
        instance,
        run_id: ccscope::registry::new_run_id(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        env_files: vec![],
        cwd: None,
        limits: Limits::default(),
        output: OutputTarget::File(std::env::temp_dir().join("ccscope-bench.log")),
        inherit_stdin: false,
        own_process_group: true,
        strict_limits: false,
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_ccscope")),
        tap: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<48} n={:<4} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().unwrap()
    );
}

async fn stop_all(c: &AnyContainment, launched: Vec<Launched>) {
    for mut l in launched {
        c.kill(&l.scope).await.unwrap();
        c.wait_empty(&l.scope, Duration::from_secs(10))
            .await
            .unwrap();
        let _ = l.child.wait();
        c.release(&l.scope).await.unwrap();
    }
}

async fn start_scopes(kind: BackendKind) {
    let (c, _) = detect(BackendChoice::Forced(kind), BusKind::Session)
        .await
        .unwrap();
    let project = format!("bench{}", std::process::id());

    let mut samples = Vec::new();
    let mut launched = Vec::new();
    for i in 0..SCOPES {
        let s = spec(&project, "seq", Some(i.to_string()), "exec sleep 300");
        let t = Instant::now();
        launched.push(launch(&c, &s).await.unwrap());
        samples.push(t.elapsed());
    }
    report(
        &format!("{}: start {SCOPES} scopes one after another", kind.as_str()),
        samples,
    );
    stop_all(&c, launched).await;

    let specs: Vec<LaunchSpec> = (0..SCOPES)
        .map(|i| spec(&project, "par", Some(i.to_string()), "exec sleep 300"))
        .collect();
    let t0 = Instant::now();
    let timed = futures_util::future::join_all(specs.iter().map(|s| async {
        let t = Instant::now();
        let l = launch(&c, s).await.unwrap();
        (t.elapsed(), l)
    }))
    .await;
    let wall = t0.elapsed();
    let (samples, launched): (Vec<_>, Vec<_>) = timed.into_iter().unzip();
    report(
        &format!(
            "{}: start {SCOPES} scopes at once (wall {wall:.0?})",
            kind.as_str()
        ),
        samples,
    );
    stop_all(&c, launched).await;
}

fn fork_script() -> String {
    format!("i=0; while [ $i -lt {KILL_PROCESSES} ]; do sleep 300 & i=$((i+1)); done; wait")
}

/// Waits until `cg` holds the forker and all its children.
fn wait_full(cg: &Cgroup) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cg.all_procs().len() < KILL_PROCESSES + 1 {
        assert!(
            Instant::now() < deadline,
            "the service did not reach {KILL_PROCESSES} processes in {} (has {})",
            cg.path.display(),
            cg.all_procs().len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn kill_ccscope(kind: BackendKind) -> Duration {
    let (c, _) = detect(BackendChoice::Forced(kind), BusKind::Session)
        .await
        .unwrap();
    let project = format!("kill{}", std::process::id());
    let mut l = launch(&c, &spec(&project, "big", None, &fork_script()))
        .await
        .unwrap();
    wait_full(&Cgroup::at(l.scope.cgroup.clone().unwrap()));
    let t = Instant::now();
    c.kill(&l.scope).await.unwrap();
    assert!(
        c.wait_empty(&l.scope, Duration::from_secs(30))
            .await
            .unwrap()
    );
    let took = t.elapsed();
    let _ = l.child.wait();
    c.release(&l.scope).await.unwrap();
    took
}

fn user_cgroup_of_unit(unit: &str) -> PathBuf {
    let out = Command::new("systemctl")
        .args(["--user", "show", "-P", "ControlGroup", unit])
        .output()
        .unwrap();
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    cgroup::v2_mount()
        .unwrap()
        .unwrap()
        .join(rel.trim_start_matches('/'))
}

fn kill_systemd_run() -> Duration {
    let unit = format!("bench-kill-{}.scope", std::process::id());
    let mut child = Command::new("systemd-run")
        .args([
            "--user",
            "--scope",
            "--quiet",
            &format!("--unit={unit}"),
            "sh",
            "-c",
            &fork_script(),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dir = loop {
        let d = user_cgroup_of_unit(&unit);
        if d.join("cgroup.procs").exists() {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "systemd-run did not create {unit}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let cg = Cgroup::at(&dir);
    wait_full(&cg);
    let t = Instant::now();
    let status = Command::new("systemctl")
        .args(["--user", "kill", "-s", "KILL", &unit])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(cg.wait_empty(Duration::from_secs(30)).unwrap());
    let took = t.elapsed();
    let _ = child.wait();
    took
}

fn kill_every_pid() -> Duration {
    let base = ccscope::contain::CgroupTree::find_base().unwrap();
    let cg =
        Cgroup::create(base.join(format!("ccscope-bench-loop-{}", std::process::id()))).unwrap();
    // The child writes itself into the cgroup before exec, so all it forks is inside.
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cg.path.join("cgroup.procs"))
        .unwrap();
    let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    let mut command = Command::new("sh");
    command.args(["-c", &fork_script()]);
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(procs);
    wait_full(&cg);
    let t = Instant::now();
    loop {
        let pids = cg.all_procs();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = ccscope::proc::sys::kill(pid, libc::SIGKILL);
        }
    }
    assert!(cg.wait_empty(Duration::from_secs(30)).unwrap());
    let took = t.elapsed();
    let _ = child.wait();
    cg.remove(Duration::from_secs(2)).unwrap();
    took
}

fn main() {
    assert!(
        std::env::var_os("CCSCOPE_TEST_ENV").is_some(),
        "run through scripts/bench-contain.sh"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for kind in [BackendKind::Systemd, BackendKind::Cgroupfs] {
        rt.block_on(start_scopes(kind));
    }
    let systemd = rt.block_on(kill_ccscope(BackendKind::Systemd));
    let cgroupfs = rt.block_on(kill_ccscope(BackendKind::Cgroupfs));
    let peer = kill_systemd_run();
    let naive = kill_every_pid();
    println!("kill a {KILL_PROCESSES}-process service, kill call → populated 0:");
    println!("  ccscope systemd backend (cgroup.kill)        {systemd:>9.2?}");
    println!("  ccscope cgroupfs backend (cgroup.kill)       {cgroupfs:>9.2?}");
    println!(
        "  systemd-run --scope + systemctl --user kill  {peer:>9.2?}   (ratio ccscope/peer {:.2})",
        systemd.as_secs_f64() / peer.as_secs_f64()
    );
    println!(
        "  signal-every-pid loop                        {naive:>9.2?}   (ratio ccscope/loop {:.2})",
        cgroupfs.as_secs_f64() / naive.as_secs_f64()
    );
}
