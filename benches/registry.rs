//! Registry costs on a real file (WAL mode, as ccscope opens it):
//! - a register and an unregister, each committed on its own (target ≥ 20,000 operations/s);
//! - listing 10,000 records (target < 10 ms).
//!
//! Run: `cargo bench --bench registry`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ccscope::proc::ProcessIdentity;
use ccscope::registry::*;

fn record(pid: i32) -> NewProcess {
    NewProcess {
        identity: ProcessIdentity {
            pid,
            start_time: 12345,
        },
        command_line: format!("python3 -m context_cleaner dashboard --port {pid}"),
        project: "bench".into(),
        service: format!("svc{}", pid % 40),
        run_id: Some("0123456789abcdef".into()),
        unit: Some("ccscope-bench-svc.scope".into()),
        cgroup: Some("/ccscope.slice/ccscope-bench.slice/ccscope-bench-svc.scope".into()),
        ports: vec![8110],
        status: ProcessStatus::Running,
        source: ProcessSource::Launched,
    }
}

fn open(tmp: &tempfile::TempDir) -> Registry {
    let dir = StateDir {
        path: tmp.path().join("state"),
        origin: StateDirOrigin::Flag,
    };
    Registry::open(&dir).expect("open the registry").0
}

fn register_unregister(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let registry = open(&tmp);
    let mut group = c.benchmark_group("registry");
    // Two operations per iteration, so criterion's elements/s is operations/s.
    group.throughput(Throughput::Elements(2));
    let mut pid = 0;
    group.bench_function("register+unregister, each committed", |b| {
        b.iter(|| {
            pid += 1;
            let p = record(pid);
            registry.register(&p).unwrap();
            assert!(registry.unregister(p.identity).unwrap());
        })
    });
    group.finish();
}

fn list_10k(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let registry = open(&tmp);
    for pid in 1..=10_000 {
        registry.register(&record(pid)).unwrap();
    }
    let mut group = c.benchmark_group("registry");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("list 10,000 records", |b| {
        b.iter(|| {
            let all = registry.list(ProcessFilter::All).unwrap();
            assert_eq!(all.len(), 10_000);
            all
        })
    });
    group.finish();
}

criterion_group!(benches, register_unregister, list_10k);
criterion_main!(benches);
