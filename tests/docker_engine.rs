//! The Docker Engine client against the real dockerd of scripts/test-env.sh, with its offline
//! image: run, inspect, list, stop (and the kill after a timeout), remove, the event stream,
//! exec, logs, stats, name conflicts, a missing image and a daemon that is not there; pause
//! and unpause, and the stop of a paused container (by the Engine, and by `ccscope stop`).
//! Every container a test creates carries `ccscope.test=1` and a project of its own, and is
//! removed by id (or, if `run` failed half-way, by its name after checking its labels) when
//! the test's guard drops.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ccscope::config::{DockerSpec, PullPolicy};
use ccscope::docker::{
    ContainerEvent, ContainerSpec, DockerError, Engine, LABEL_PROJECT, LogStream, Piece, Selector,
};
use futures_util::StreamExt;

const IMAGE: &str = "ccscope-test/busybox:latest";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A project name no other test (or run of this binary) uses.
fn project() -> String {
    format!(
        "engtest-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn docker_spec(argv: &[&str]) -> DockerSpec {
    DockerSpec {
        image: IMAGE.into(),
        command: Some(argv.iter().map(|s| s.to_string()).collect()),
        entrypoint: None,
        name: None,
        ports: Vec::new(),
        env: BTreeMap::new(),
        volumes: Vec::new(),
        labels: BTreeMap::from([("ccscope.test".to_string(), "1".to_string())]),
        network: None,
        workdir: None,
        user: None,
        init: true,
        pull: PullPolicy::Never,
    }
}

/// Removes what the test made when it ends, however it ends.
struct Cleanup {
    ids: Vec<String>,
    /// Names of containers `run` may have created without saying so; removed only if they
    /// carry `ccscope.test=1` and the test's project.
    names: Vec<(String, String)>,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup {
            ids: Vec::new(),
            names: Vec::new(),
        }
    }

    fn spec(&mut self, spec: &ContainerSpec) {
        self.names.push((spec.name.clone(), spec.project.clone()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        let names = std::mem::take(&mut self.names);
        // Drop runs inside the test's runtime: its own thread gets a runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleaning up");
            rt.block_on(async {
                let Ok(engine) = Engine::connect().await else {
                    return;
                };
                for id in ids {
                    let _ = engine.remove(&id).await;
                }
                for (name, project) in names {
                    if let Ok(Some(c)) = engine.inspect(&name).await {
                        let ours = c.labels.get("ccscope.test").map(String::as_str) == Some("1")
                            && c.labels.get(LABEL_PROJECT) == Some(&project);
                        if ours {
                            let _ = engine.remove(&c.id).await;
                        }
                    }
                }
            });
        });
        let _ = done.join();
    }
}

async fn engine() -> Engine {
    match Engine::connect().await {
        Ok(e) => e,
        Err(e) => panic!("dockerd must answer for this test: {e}"),
    }
}

async fn start(
    engine: &Engine,
    cleanup: &mut Cleanup,
    spec: &ContainerSpec,
) -> (
    ccscope::docker::ContainerInfo,
    ccscope::proc::ProcessIdentity,
) {
    cleanup.spec(spec);
    let (info, identity) = match engine.run(spec).await {
        Ok(x) => x,
        Err(e) => panic!("run {}: {e} (hint: {:?})", spec.name, e.hint()),
    };
    cleanup.ids.push(info.id.clone());
    (info, identity)
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_container_runs_is_listed_by_label_stops_and_is_removed() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let spec = ContainerSpec::of(&p, "web", &docker_spec(&["sleep", "1000"]), "run-1");
    engine.ensure_image(IMAGE, PullPolicy::Never).await.unwrap();
    let (info, identity) = start(&engine, &mut cleanup, &spec).await;

    assert!(info.is_running(), "{info:?}");
    assert_eq!(info.name, format!("ccscope-{p}-web"));
    assert_eq!(info.image, IMAGE);
    assert_eq!(info.definition(), Some(spec.definition.as_str()));
    assert_eq!(info.labels["ccscope.run_id"], "run-1");
    let pid = info.pid.expect("a running container has a pid");
    assert_eq!(identity.pid, pid);
    let stat = ccscope::proc::read_stat(std::path::Path::new("/proc"), pid).unwrap();
    assert_eq!(stat.start_time, identity.start_time);
    assert!(info.started_at.is_some());

    let by_project = engine.list(Selector::Project(&p)).await.unwrap();
    assert_eq!(
        by_project.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [info.id.as_str()]
    );
    let by_service = engine
        .list(Selector::Service {
            project: &p,
            service: "web",
        })
        .await
        .unwrap();
    assert_eq!(by_service.len(), 1);
    let other_service = engine
        .list(Selector::Service {
            project: &p,
            service: "db",
        })
        .await
        .unwrap();
    assert!(other_service.is_empty(), "{other_service:?}");
    assert!(engine.list(Selector::Compose(&p)).await.unwrap().is_empty());

    // docker-init passes TERM on; sleep dies of it at once.
    let outcome = engine
        .stop(&info.id, libc::SIGTERM, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!outcome.killed, "{outcome:?}");
    assert!(outcome.took < Duration::from_secs(5), "{outcome:?}");
    let stopped = engine.inspect(&info.id).await.unwrap().unwrap();
    assert_eq!(stopped.state, "exited");
    assert_eq!(stopped.pid, None);
    // Listed in every state.
    assert_eq!(engine.list(Selector::Project(&p)).await.unwrap().len(), 1);
    // Stopping a stopped container is nothing to do.
    let again = engine
        .stop(&info.id, libc::SIGTERM, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!again.killed);

    engine.remove(&info.id).await.unwrap();
    assert!(engine.inspect(&info.id).await.unwrap().is_none());
    engine
        .remove(&info.id)
        .await
        .expect("a container already gone is fine");
    assert!(engine.list(Selector::Project(&p)).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_container_ignoring_term_is_killed_after_its_timeout() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let spec = ContainerSpec::of(
        &p,
        "stubborn",
        &docker_spec(&["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]),
        "run-1",
    );
    let (info, _) = start(&engine, &mut cleanup, &spec).await;
    let timeout = Duration::from_millis(1500);
    let outcome = engine.stop(&info.id, libc::SIGTERM, timeout).await.unwrap();
    assert!(outcome.killed, "{outcome:?}");
    assert!(outcome.took >= timeout, "{outcome:?}");
    assert!(
        outcome.took < timeout + Duration::from_secs(5),
        "{outcome:?}"
    );
    let after = engine.inspect(&info.id).await.unwrap().unwrap();
    assert!(!after.is_running(), "{after:?}");
    assert_eq!(after.exit_code, Some(137), "SIGKILL: {after:?}");
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn the_event_stream_reports_the_start_and_the_death_with_its_exit_code() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    // Subscribing from just before the run: nothing between the two is missed.
    let since = SystemTime::now() - Duration::from_secs(1);
    let mut events = Box::pin(engine.events_since(&p, Some(since)));
    let spec = ContainerSpec::of(
        &p,
        "crash",
        &docker_spec(&["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 1; done"]),
        "run-1",
    );
    let (info, _) = start(&engine, &mut cleanup, &spec).await;
    // A container of another project is not in this project's stream.
    let q = project();
    let other = ContainerSpec::of(&q, "x", &docker_spec(&["sleep", "1000"]), "run-1");
    let (other_info, _) = start(&engine, &mut cleanup, &other).await;
    engine
        .stop(&other_info.id, libc::SIGKILL, Duration::from_secs(5))
        .await
        .unwrap();
    engine
        .stop(&info.id, libc::SIGTERM, Duration::from_secs(10))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, ContainerEvent::Died { .. }))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            Ok(Some(Err(e))) => panic!("event stream: {e}"),
            Ok(None) => panic!("the event stream ended; seen {seen:?}"),
            Err(_) => panic!("no die event within 20s; seen {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ContainerEvent::Started {
                id: info.id.clone()
            },
            ContainerEvent::Died {
                id: info.id.clone(),
                exit_code: 3
            }
        ]
    );
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn exec_gives_the_exit_code_and_is_bounded_by_its_timeout() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let spec = ContainerSpec::of(&p, "box", &docker_spec(&["sleep", "1000"]), "run-1");
    let (info, _) = start(&engine, &mut cleanup, &spec).await;
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let t = Duration::from_secs(10);
    assert_eq!(engine.exec(&info.id, &argv(&["true"]), t).await.unwrap(), 0);
    assert_eq!(
        engine
            .exec(&info.id, &argv(&["sh", "-c", "echo noise; exit 7"]), t)
            .await
            .unwrap(),
        7
    );
    let started = Instant::now();
    match engine
        .exec(
            &info.id,
            &argv(&["sleep", "30"]),
            Duration::from_millis(500),
        )
        .await
    {
        Err(DockerError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(500)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let missing = engine.exec(&info.id, &argv(&["/no/such/program"]), t).await;
    assert!(
        !matches!(missing, Ok(0)),
        "a missing program is not a success: {missing:?}"
    );
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn logs_come_as_lines_per_stream_with_long_lines_in_bounded_pieces() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let script = "echo out1; echo err1 >&2; head -c 70000 /dev/zero | tr '\\0' a; echo; \
                  printf 'no newline'; sleep 1";
    let spec = ContainerSpec::of(&p, "talk", &docker_spec(&["sh", "-c", script]), "run-1");
    let (info, _) = start(&engine, &mut cleanup, &spec).await;
    let logs = engine.logs(&info.id);
    // The stream ends when the container does (a second after its output).
    let lines: Vec<(LogStream, Piece)> =
        tokio::time::timeout(Duration::from_secs(20), logs.collect::<Vec<_>>())
            .await
            .expect("the log stream ends when the container stops")
            .into_iter()
            .map(|l| l.unwrap())
            .collect();
    let text = |s: LogStream| -> Vec<String> {
        lines
            .iter()
            .filter(|(st, _)| *st == s)
            .map(|(_, l)| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    };
    let out = text(LogStream::Stdout);
    let shape: Vec<(LogStream, usize)> = lines.iter().map(|(s, l)| (*s, l.bytes.len())).collect();
    assert_eq!(text(LogStream::Stderr), ["err1"]);
    assert_eq!(out[0], "out1");
    assert_eq!(
        out.last().map(String::as_str),
        Some("no newline"),
        "{shape:?}"
    );
    let long = &out[1..out.len() - 1];
    assert_eq!(
        long.len(),
        2,
        "70000 bytes in two pieces: {:?}",
        long.iter().map(String::len).collect::<Vec<_>>()
    );
    assert_eq!(long[0].len(), ccscope::launch::forward::MAX_LINE);
    // The long line's first piece says the line goes on; its last does not.
    let marks: Vec<bool> = lines
        .iter()
        .filter(|(s, l)| *s == LogStream::Stdout && l.bytes.first() == Some(&b'a'))
        .map(|(_, l)| l.continued)
        .collect();
    assert_eq!(marks, [true, false], "{shape:?}");
    assert_eq!(long.iter().map(String::len).sum::<usize>(), 70000);
    assert!(long.iter().all(|l| l.bytes().all(|b| b == b'a')));
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn stats_give_cpu_time_and_memory() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let spec = ContainerSpec::of(
        &p,
        "busy",
        &docker_spec(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000",
        ]),
        "run-1",
    );
    let (info, _) = start(&engine, &mut cleanup, &spec).await;
    let stats = engine.stats(&info.id).await.unwrap();
    assert!(stats.cpu_ns > 0, "{stats:?}");
    assert!(stats.memory_bytes > 0, "{stats:?}");
    assert!(stats.memory_bytes < 1 << 30, "{stats:?}");
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_name_held_by_a_stopped_container_of_ours_is_reused_but_not_anyone_elses() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    let docker = docker_spec(&["sleep", "1000"]);
    let first = ContainerSpec::of(&p, "db", &docker, "run-1");
    let (old, _) = start(&engine, &mut cleanup, &first).await;

    // Ours and still running: not ours to remove from under an earlier run.
    let second = ContainerSpec::of(&p, "db", &docker, "run-2");
    match engine.run(&second).await {
        Err(e @ DockerError::NameTaken { .. }) => {
            assert!(e.to_string().contains(&second.name), "{e}");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(engine.inspect(&old.id).await.unwrap().unwrap().is_running());

    // Ours and stopped: removed, the name reused.
    engine
        .stop(&old.id, libc::SIGTERM, Duration::from_secs(10))
        .await
        .unwrap();
    let (new, _) = start(&engine, &mut cleanup, &second).await;
    assert_ne!(new.id, old.id);
    assert!(engine.inspect(&old.id).await.unwrap().is_none());
    assert_eq!(new.labels["ccscope.run_id"], "run-2");

    // Someone else's container holding the name the service wants: named, left alone.
    let q = project();
    let mut foreign = docker_spec(&["sleep", "1000"]);
    foreign.name = Some(format!("held-{q}"));
    let holder = ContainerSpec::of(&q, "other", &foreign, "run-x");
    let (held, _) = start(&engine, &mut cleanup, &holder).await;
    engine
        .stop(&held.id, libc::SIGKILL, Duration::from_secs(5))
        .await
        .unwrap();
    let mut wants = docker_spec(&["sleep", "1000"]);
    wants.name = Some(format!("held-{q}"));
    let mine = ContainerSpec::of(&p, "cache", &wants, "run-2");
    match engine.run(&mine).await {
        Err(e @ DockerError::NameTaken { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("held-{q}")), "{msg}");
            assert!(msg.contains(&held.id[..12]), "{msg}");
            assert!(e.hint().unwrap().contains("name"), "{:?}", e.hint());
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(
        engine.inspect(&held.id).await.unwrap().is_some(),
        "another's container stays"
    );
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_missing_image_is_named_with_the_pull_to_run() {
    let engine = engine().await;
    let image = format!("ccscope-test/absent-{}:1", std::process::id());
    for pull in [PullPolicy::Never, PullPolicy::Missing] {
        match engine.ensure_image(&image, pull).await {
            Err(e @ DockerError::ImageMissing { .. }) => {
                assert!(e.to_string().contains(&image), "{e}");
                assert!(
                    e.hint().unwrap().contains(&format!("docker pull {image}")),
                    "{:?}",
                    e.hint()
                );
            }
            other => panic!("{pull:?}: expected ImageMissing, got {other:?}"),
        }
    }
    engine
        .ensure_image(IMAGE, PullPolicy::Never)
        .await
        .expect("the test image is there");
    let (api, rootless) = engine.version().await.unwrap();
    assert!(api.starts_with("1."), "{api}");
    assert!(!rootless, "the test daemon runs as root");
}

#[tokio::test]
async fn a_daemon_that_is_not_there_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // No socket at all.
    let nowhere = format!("unix://{}/docker.sock", dir.path().display());
    match Engine::connect_to(&nowhere).await {
        Err(e @ DockerError::Unreachable { .. }) => {
            assert!(e.to_string().contains(&nowhere), "{e}");
            assert!(e.hint().unwrap().contains("DOCKER_HOST"), "{:?}", e.hint());
        }
        other => panic!("expected Unreachable, got {:?}", other.map(|_| ())),
    }
    // A socket file nobody listens on any more.
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let dead = format!("unix://{}", path.display());
    match Engine::connect_to(&dead).await {
        Err(e @ DockerError::Unreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&dead), "{msg}");
            assert!(msg.to_lowercase().contains("refused"), "{msg}");
            assert!(!msg.contains("os error"), "{msg}");
        }
        other => panic!("expected Unreachable, got {:?}", other.map(|_| ())),
    }
    match Engine::connect_to("ssh://somewhere").await {
        Err(e @ DockerError::Unreachable { .. }) => assert!(e.to_string().contains("unix://")),
        other => panic!("expected Unreachable, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_container_that_cannot_start_is_not_left_behind() {
    let engine = engine().await;
    let mut cleanup = Cleanup::new();
    let p = project();
    // A port held on the loopback address: docker cannot publish it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut docker = docker_spec(&["sleep", "1000"]);
    docker.ports = vec![ccscope::config::PortMapping {
        host: port,
        container: 80,
    }];
    let spec = ContainerSpec::of(&p, "web", &docker, "run-1");
    cleanup.spec(&spec);
    match engine.run(&spec).await {
        Err(e @ DockerError::Api { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("start container {}", spec.name)),
                "{msg}"
            );
        }
        Ok((info, _)) => {
            cleanup.ids.push(info.id.clone());
            panic!("it started although port {port} is held: {info:?}");
        }
        Err(other) => panic!("expected a start failure, got {other}"),
    }
    assert!(
        engine.list(Selector::Project(&p)).await.unwrap().is_empty(),
        "the created container is removed"
    );
    drop(holder);
}

/// A PID 1 that ends on SIGTERM, whose container's own stop signal is another: docker
/// unpauses a paused container for that one only, so a SIGTERM alone would wait.
const POLITE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];
const OTHER_STOP_SIGNAL: &[&str] = &["--stop-signal", "SIGUSR2"];

async fn state_of(engine: &Engine, id: &str) -> String {
    engine.inspect(id).await.unwrap().expect("it exists").state
}

#[tokio::test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
async fn a_container_pauses_unpauses_and_stops_paused_without_its_timeout() {
    let engine = engine().await;
    let p = project();
    let c = common::TestContainer::run(&[(LABEL_PROJECT, p.as_str())], OTHER_STOP_SIGNAL, POLITE);
    c.wait_running(Duration::from_secs(10));

    engine.pause(&c.id).await.unwrap();
    assert_eq!(state_of(&engine, &c.id).await, "paused");
    engine
        .pause(&c.id)
        .await
        .expect("pausing a paused one is fine");
    engine.unpause(&c.id).await.unwrap();
    assert_eq!(state_of(&engine, &c.id).await, "running");
    engine
        .unpause(&c.id)
        .await
        .expect("unpausing a running one is fine");

    engine.pause(&c.id).await.unwrap();
    let timeout = Duration::from_secs(20);
    let outcome = engine.stop(&c.id, libc::SIGTERM, timeout).await.unwrap();
    assert!(
        !outcome.killed,
        "unpaused, it ended on SIGTERM: {outcome:?}"
    );
    assert!(
        outcome.took < Duration::from_secs(10),
        "paused, it was waited on for its timeout: {outcome:?}"
    );
    let after = engine.inspect(&c.id).await.unwrap().unwrap();
    assert_eq!(after.state, "exited", "{after:?}");
    assert_eq!(after.exit_code, Some(0), "its trap's exit: {after:?}");

    let gone = "ccscope-no-such-container";
    let e = engine.pause(gone).await.expect_err("no such container");
    assert!(
        e.to_string()
            .starts_with(&format!("pause container {gone}: ")),
        "{e}"
    );
    let e = engine.unpause(gone).await.expect_err("no such container");
    assert!(
        e.to_string()
            .starts_with(&format!("unpause container {gone}: ")),
        "{e}"
    );
}

#[test]
#[ignore = "system test: needs dockerd (scripts/test.sh)"]
fn a_paused_container_of_the_stack_is_stopped_and_removed_without_its_timeout() {
    common::require_docker();
    let p = project();
    let sb = common::Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{p}\"\n\
             [services.db]\ncommand = [\"true\"]\nstop_timeout = \"20s\"\n"
        ),
    );
    let c = common::TestContainer::run(
        &[(LABEL_PROJECT, p.as_str()), ("ccscope.service", "db")],
        OTHER_STOP_SIGNAL,
        POLITE,
    );
    c.wait_running(Duration::from_secs(10));
    common::docker(&["pause", &c.id]).expect_code(0);
    assert_eq!(c.inspect().unwrap()["State"]["Status"], "paused");

    let began = Instant::now();
    let ran = sb.run(&["--json", "stop"]);
    let took = began.elapsed();
    ran.expect_code(0);
    let doc = ran.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    let entry = doc["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .unwrap_or_else(|| panic!("the container is in the report: {doc}"));
    assert_eq!(entry["state"], "paused", "{doc}");
    assert_eq!(entry["signal"], "SIGTERM", "{doc}");
    assert_eq!(
        entry["killed"], false,
        "unpaused, it ended on SIGTERM: {doc}"
    );
    assert_eq!(entry["removed"], true, "{doc}");
    assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    assert!(
        took < Duration::from_secs(10),
        "stop took {took:?}: the paused container's 20 s timeout was waited out: {doc}"
    );
    assert!(!c.exists(), "the container is gone");
}
