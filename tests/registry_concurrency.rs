//! Many real processes writing one real registry file at once lose nothing and never see
//! "database is locked".
//!
//! The test re-runs its own binary as the workers (`registry_worker` below, told its number
//! and the shared state directory by environment), so each worker is a separate process with
//! its own SQLite connection, as separate ccscope invocations would be. Run on its own,
//! `registry_worker` is the single-process version of the same check on a private registry.

use std::path::PathBuf;
use std::process::Command;

use ccscope::proc::ProcessIdentity;
use ccscope::registry::*;

const WORKERS: i32 = 8;
const PAIRS: i32 = 1_000;
const KEPT: i32 = 25;

fn process(worker: i32, n: i32) -> NewProcess {
    NewProcess {
        identity: ProcessIdentity {
            pid: worker * 1_000_000 + n,
            start_time: 1,
        },
        command_line: format!("worker {worker} item {n}"),
        project: "stress".into(),
        service: format!("w{worker}"),
        run_id: None,
        unit: None,
        cgroup: None,
        ports: vec![],
        status: ProcessStatus::Running,
        source: ProcessSource::Launched,
    }
}

#[test]
fn registry_worker() {
    let worker: i32 = std::env::var("CCSCOPE_REGISTRY_WORKER").map_or(0, |w| w.parse().unwrap());
    let private = tempfile::tempdir().unwrap();
    let path = std::env::var_os("CCSCOPE_REGISTRY_WORKER_DIR")
        .map_or_else(|| private.path().join("state"), PathBuf::from);
    let dir = StateDir {
        path,
        origin: StateDirOrigin::Flag,
    };
    let (registry, _) =
        Registry::open(&dir).unwrap_or_else(|e| panic!("worker {worker}: open: {e}"));
    for n in 0..PAIRS {
        let p = process(worker, n);
        registry
            .register(&p)
            .unwrap_or_else(|e| panic!("worker {worker}: register {n}: {e}"));
        let gone = registry
            .unregister(p.identity)
            .unwrap_or_else(|e| panic!("worker {worker}: unregister {n}: {e}"));
        assert!(
            gone,
            "worker {worker}: record {n} vanished between register and unregister"
        );
    }
    for n in PAIRS..PAIRS + KEPT {
        registry
            .register(&process(worker, n))
            .unwrap_or_else(|e| panic!("worker {worker}: keep {n}: {e}"));
    }
    let mine = registry
        .list(ProcessFilter::Service {
            project: "stress",
            service: &format!("w{worker}"),
        })
        .unwrap();
    assert!(
        mine.len() >= KEPT as usize,
        "worker {worker} sees its kept records"
    );
}

#[test]
fn eight_processes_share_one_registry_without_loss_or_lock_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WORKERS)
        .map(|w| {
            Command::new(&exe)
                .args([
                    "registry_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CCSCOPE_REGISTRY_WORKER", w.to_string())
                .env("CCSCOPE_REGISTRY_WORKER_DIR", &state)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    for (w, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "worker {w} failed:\n{text}");
        assert!(
            !text.contains("locked"),
            "worker {w} saw a lock error:\n{text}"
        );
        assert!(
            text.contains("1 passed"),
            "worker {w} did not run its loop:\n{text}"
        );
    }
    let (registry, _) = Registry::open(&StateDir {
        path: state,
        origin: StateDirOrigin::Flag,
    })
    .unwrap();
    let left = registry.list(ProcessFilter::Project("stress")).unwrap();
    assert_eq!(
        left.len(),
        (WORKERS * KEPT) as usize,
        "every kept record survives, every pair is gone"
    );
    for w in 0..WORKERS {
        let mine = registry
            .list(ProcessFilter::Service {
                project: "stress",
                service: &format!("w{w}"),
            })
            .unwrap();
        let pids: Vec<i32> = mine.iter().map(|p| p.pid % 1_000_000).collect();
        assert_eq!(
            pids,
            (PAIRS..PAIRS + KEPT).collect::<Vec<_>>(),
            "worker {w}"
        );
    }
}
