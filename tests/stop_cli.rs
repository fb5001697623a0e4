//! `ccscope stop` end to end against the real user manager and cgroupfs: everything of the
//! project goes (scopes of any backend, strays found by their markers), with no supervisor and
//! no registry; `--dry-run` touches nothing; stop never ends its own caller; a paused
//! (frozen) service is thawed and stopped gracefully, not waited on for its whole timeout.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ccscope::contain::{BackendChoice, BackendKind, BusKind, detect};
use ccscope::launch::launch;
use common::scripts::{DOUBLE_FORK_DAEMON as DOUBLE_FORK, IGNORES_TERM, NOHUP_AND_RETURN as NOHUP};
use common::{Sandbox, marked, require_test_env, wait_for};

fn project(tag: &str) -> String {
    format!("s{}-{tag}", std::process::id())
}

fn sandbox(project: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"1s\"\n\
             [services.web]\ncommand = [\"true\"]\n[services.worker]\ncommand = [\"true\"]\ndepends_on = [\"web\"]\n"
        ),
    );
    sb
}

/// Starts `script` as `service` of `project` on `backend`, and waits until it says ready.
async fn start(project: &str, service: &str, backend: BackendKind, dir: &Path, script: &str) {
    let (c, _) = detect(BackendChoice::Forced(backend), BusKind::Session)
        .await
        .unwrap();
    let spec = common::shell_service(project, service, script, dir);
    // The launched child is left to its scope: `stop` is what must end it.
    let launched = launch(&c, &spec)
        .await
        .unwrap_or_else(|e| panic!("{service}: {e}"));
    std::mem::forget(launched.child);
    common::wait_ready(dir, service);
}

/// A project whose `web` service, on systemd, ignores SIGTERM and is up.
fn with_web_running(tag: &str) -> (String, Sandbox) {
    let project = project(tag);
    let sb = sandbox(&project);
    common::runtime().block_on(start(
        &project,
        "web",
        BackendKind::Systemd,
        sb.path(),
        IGNORES_TERM,
    ));
    (project, sb)
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_leaves_nothing_without_supervisor_or_registry() {
    require_test_env();
    let project = project("all");
    let sb = sandbox(&project);
    let rt = common::runtime();
    rt.block_on(async {
        start(
            &project,
            "web",
            BackendKind::Systemd,
            sb.path(),
            IGNORES_TERM,
        )
        .await;
        start(
            &project,
            "worker",
            BackendKind::Cgroupfs,
            sb.path(),
            DOUBLE_FORK,
        )
        .await;
        start(&project, "extra", BackendKind::Pgroup, sb.path(), NOHUP).await;
    });
    // A process started by hand with the project's marker, outside every scope.
    let mut stray = std::process::Command::new("setsid");
    stray
        .args(["sleep", "300"])
        .env("CCSCOPE_PROJECT", &project)
        .stdin(Stdio::null());
    let mut stray = stray.spawn().unwrap();
    wait_for("the stray to exec", Duration::from_secs(5), || {
        marked(&project).contains(&(stray.id() as i32))
    });
    assert!(
        marked(&project).len() >= 6,
        "everything is up: {:?}",
        marked(&project)
    );

    let doc = sb.run(&["stop", "--json"]).expect_code(0).json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    let services: Vec<&str> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["worker", "web"],
        "reverse dependency order: {doc}"
    );
    assert_eq!(
        doc["services"][1]["killed_by_force"], true,
        "web ignores SIGTERM: {doc}"
    );
    let stray_pids: Vec<i64> = doc["strays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_i64().unwrap())
        .collect();
    assert!(
        stray_pids.contains(&i64::from(stray.id())),
        "the hand-started stray is found: {doc}"
    );
    assert!(
        marked(&project).is_empty(),
        "survivors: {:?}",
        marked(&project)
    );
    let _ = stray.wait();

    // The decisions are in the journal, queryable by project.
    let events = |event: &str| {
        common::journal_entries(&[
            format!("CCSCOPE_PROJECT={project}"),
            format!("CCSCOPE_EVENT={event}"),
        ])
    };
    wait_for(
        "the stop's outcome in the journal",
        Duration::from_secs(10),
        || !events("stop.complete").is_empty(),
    );
    let kills = events("stop.kill");
    assert!(
        kills.iter().any(|e| e["CCSCOPE_SERVICE"] == "web"),
        "web's kill is audited: {kills:?}"
    );
    assert!(!events("stop.stray").is_empty(), "the stray is audited");

    sb.run(&["stop"])
        .expect_code(0)
        .expect_stdout_contains("nothing to stop");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn dry_run_signals_nothing() {
    require_test_env();
    let (project, sb) = with_web_running("dry");
    let before = marked(&project);
    let ran = sb.run(&["stop", "--dry-run"]);
    ran.expect_code(0)
        .expect_stdout_contains("would stop")
        .expect_stdout_contains("dry run: nothing was signalled");
    assert_eq!(marked(&project), before, "nothing was touched");
    let doc = sb.run(&["stop", "--force", "--json"]).expect_code(0).json();
    assert_eq!(
        doc["services"][0]["signal"],
        serde_json::Value::Null,
        "--force skips the graceful signal"
    );
    assert!(marked(&project).is_empty());
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_never_ends_its_caller() {
    require_test_env();
    let (project, sb) = with_web_running("caller");
    // `stop` runs inside a scope of the very project it stops.
    let bin = env!("CARGO_BIN_EXE_ccscope");
    let ran = sb.run(&["exec", "--", bin, "stop", "--json"]);
    ran.expect_code(0);
    let doc = ran.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(
        doc["spared"].as_array().unwrap().len(),
        1,
        "its own scope is spared: {doc}"
    );
    assert_eq!(doc["services"][0]["service"], "web");
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn status_follows_the_scopes() {
    require_test_env();
    let (_, sb) = with_web_running("status");
    let doc = sb.run(&["status", "--json"]).expect_code(0).json();
    let find = |doc: &serde_json::Value, name: &str| {
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .cloned()
            .unwrap()
    };
    let web = find(&doc, "web");
    assert_eq!(web["state"], "running", "{doc}");
    assert!(
        web["processes"].as_u64().unwrap() >= 2,
        "the shell and its sleep: {web}"
    );
    assert!(
        web["cpu_usec"].as_u64().is_some(),
        "cpu.stat is read: {web}"
    );
    assert_eq!(find(&doc, "worker")["state"], "stopped");
    sb.run(&["stop", "--force"]).expect_code(0);
    let doc = sb.run(&["status", "--json"]).expect_code(0).json();
    assert_eq!(find(&doc, "web")["state"], "stopped", "{doc}");
}

/// A tmpfs of its own, unmounted when dropped: a state directory whose disk can be filled.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=4m,mode=0700",
                "ccscope-test-full",
            ])
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {}", at.display());
        SmallDisk(at)
    }

    /// Writes one file until the disk says it is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn with_the_state_disk_full_stop_still_stops_everything_and_says_what_it_could_not_record() {
    require_test_env();
    let project = project("full");
    let sb = sandbox(&project);
    let disk = SmallDisk::mount(sb.path().join("state"));
    let state = disk.0.display().to_string();
    // A registered process of the project, started through ccscope so the registry knows it.
    let mut exec = sb.command(&["--state-dir", &state, "exec", "--", "sleep", "300"]);
    let mut running = exec
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the exec'd process to be registered",
        Duration::from_secs(10),
        || {
            sb.run(&["--state-dir", &state, "ps", "--json"])
                .stdout()
                .contains("sleep 300")
        },
    );
    disk.fill();

    let ran = sb.run(&["--state-dir", &state, "stop", "--json"]);
    ran.expect_code(0);
    let doc = ran.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(doc["survivors"].as_array().unwrap().len(), 0, "{doc}");
    // Whether SQLite needs new room for the stop's writes depends on how much of its
    // write-ahead log is free: when it does, the trouble is a warning about the registry.
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .all(|w| w.as_str().unwrap().contains("registry")),
        "only registry trouble is warned about: {doc}"
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
    let _ = running.wait();

    // In words, too: the report, then the warning, and still exit 0.
    let again = sb.run(&["--state-dir", &state, "stop"]);
    again.expect_code(0);
}

/// A service that ends on SIGTERM at once, its child with it.
const TERM_EXITS: &str = "trap 'exit 0' TERM; sleep 300 & echo > \"$READY\"; wait";

/// Whether the kernel says the cgroup at `dir` is frozen.
fn frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l.trim() == "frozen 1"))
}

/// A stack whose `web` ends at once on SIGTERM but has a 20 s stop timeout, started on
/// `backend` and then frozen behind ccscope's back (its cgroup's own `cgroup.freeze`, as
/// `systemctl freeze` or a `pause` would): `stop` thaws it and ends it gracefully, well
/// within the timeout a frozen process would otherwise have been waited on for.
fn a_paused_service_stops_at_once(backend: BackendKind, tag: &str) {
    require_test_env();
    let project = project(tag);
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\
             [services.web]\ncommand = [\"true\"]\nstop_timeout = \"20s\"\n"
        ),
    );
    let scope = common::runtime().block_on(async {
        let (c, _) = detect(BackendChoice::Forced(backend), BusKind::Session)
            .await
            .unwrap();
        let spec = common::shell_service(&project, "web", TERM_EXITS, sb.path());
        let launched = launch(&c, &spec)
            .await
            .unwrap_or_else(|e| panic!("web: {e}"));
        std::mem::forget(launched.child);
        common::wait_ready(sb.path(), "web");
        launched.scope
    });
    let dir = scope.cgroup.clone().expect("a cgroup scope");
    std::fs::write(dir.join("cgroup.freeze"), "1").unwrap();
    wait_for("web to be frozen", Duration::from_secs(5), || frozen(&dir));
    let pids = marked(&project);
    assert!(pids.len() >= 2, "the shell and its child: {pids:?}");

    let began = std::time::Instant::now();
    let doc = sb.run(&["stop", "--json"]).expect_code(0).json();
    let took = began.elapsed();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    let web = &doc["services"][0];
    assert_eq!(web["service"], "web", "{doc}");
    assert_eq!(web["signal"], "SIGTERM", "{doc}");
    assert_eq!(
        web["killed_by_force"], false,
        "thawed, it ended on its stop signal: {doc}"
    );
    assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    // Frozen and not thawed, it would have been waited on for the whole 20 s.
    assert!(
        took < Duration::from_secs(10),
        "stop took {took:?}, the paused service's stop timeout was waited out: {doc}"
    );
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
    // The scope goes too: removed by the stop (cgroupfs), or collected by systemd once empty.
    wait_for(
        &format!("{} to be removed", dir.display()),
        Duration::from_secs(5),
        || !dir.exists(),
    );
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn a_paused_systemd_service_is_thawed_and_stopped_within_its_timeout() {
    a_paused_service_stops_at_once(BackendKind::Systemd, "paused-sd");
}

#[test]
#[ignore = "system test: needs root and a writable cgroup v2 hierarchy (run scripts/test.sh)"]
fn a_paused_cgroupfs_service_is_thawed_and_stopped_within_its_timeout() {
    a_paused_service_stops_at_once(BackendKind::Cgroupfs, "paused-cg");
}
