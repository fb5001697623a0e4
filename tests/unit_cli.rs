//! ccscope as a systemd user unit (issue 14), against the real user manager of the test
//! environment: `ccscope enable` then `systemctl --user start ccscope@<project>` is active only
//! once every service is ready, its status line says so, the project's slice holds the
//! supervisor beside every service scope, `systemctl --user reload` applies an edited file,
//! `systemctl --user stop` leaves no process, and `disable` removes exactly what `enable`
//! added; a stack that never becomes ready fails the unit with the reason; with
//! `WatchdogSec=` a stopped supervisor is replaced and the new one adopts the scopes back;
//! `run --detach` of an enabled project starts its unit.
//!
//! The units live in the manager's one user unit directory (`~/.config/systemd/user`), which
//! these tests share: each holds a lock on it for its whole run.

mod common;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Ran, Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

fn project(tag: &str) -> String {
    format!("un{}-{tag}", std::process::id())
}

fn systemctl(args: &[&str]) -> Ran {
    let mut cmd = std::process::Command::new("systemctl");
    cmd.arg("--user").args(args);
    Ran::of(cmd)
}

/// One property of a unit, as `systemctl show` gives it.
fn show(unit: &str, property: &str) -> String {
    systemctl(&["show", "-p", property, "--value", unit])
        .stdout()
        .trim()
        .to_string()
}

fn unit_dir() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    Path::new(&home).join(".config/systemd/user")
}

/// Every file and link under the user unit directory, with its content or target.
fn unit_files() -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let kind = e.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, format!("-> {}", target.display()));
            } else if kind.is_dir() {
                walk(&path, out);
            } else {
                out.insert(
                    path.clone(),
                    std::fs::read_to_string(&path).unwrap_or_default(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&unit_dir(), &mut out);
    out
}

/// The user unit directory to this test alone: an exclusive lock held until dropped.
struct UnitDirLock {
    _file: std::fs::File,
}

impl UnitDirLock {
    fn take() -> UnitDirLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("ccscope-unit-tests.lock"))
            .unwrap();
        // SAFETY: flock on a descriptor this struct owns; blocks until the lock is ours.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        UnitDirLock { _file: file }
    }
}

/// An enabled project: however the test ends, its unit is stopped, its own extra drop-ins
/// removed, `disable` run, and its stack stopped.
struct Enabled<'a> {
    sb: &'a Sandbox,
    project: String,
    extra: Vec<PathBuf>,
    _lock: UnitDirLock,
}

impl Enabled<'_> {
    fn unit(&self) -> String {
        format!("ccscope@{}.service", self.project)
    }

    /// Each service's main process, as `ps` lists them (the forwarders left out).
    fn pids(&self) -> BTreeMap<String, i64> {
        let ps = self.sb.run(&["ps", "--json"]).expect_code(0).json();
        let mut pids = BTreeMap::new();
        for p in ps["processes"].as_array().unwrap() {
            let forwarder = p["command_line"]
                .as_str()
                .is_some_and(|c| c.contains("__journal-forward"));
            if p["registered"] == true && !forwarder {
                pids.insert(
                    p["service"].as_str().unwrap().to_string(),
                    p["pid"].as_i64().unwrap(),
                );
            }
        }
        pids
    }
}

impl Drop for Enabled<'_> {
    fn drop(&mut self) {
        let unit = self.unit();
        let _ = systemctl(&["stop", &unit]);
        for extra in &self.extra {
            let _ = std::fs::remove_file(extra);
        }
        let _ = self.sb.command(&["disable"]).output();
        let _ = systemctl(&["reset-failed", &unit]);
        let _ = self.sb.command(&["stop", "--force"]).output();
    }
}

fn enabled<'a>(
    sb: &'a Sandbox,
    project: &str,
    services: &str,
) -> (Enabled<'a>, BTreeMap<PathBuf, String>) {
    let lock = UnitDirLock::take();
    let before = unit_files();
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{project}\"\n\n{services}"),
    );
    let guard = Enabled {
        sb,
        project: project.to_string(),
        extra: vec![],
        _lock: lock,
    };
    (guard, before)
}

const TWO: &str = "[services.db]\nshell = \"sleep 0.5; echo db up; exec sleep 300\"\nready = { log = \"db up\" }\n\n\
                   [services.web]\nshell = \"echo web v1; exec sleep 300\"\ndepends_on = { db = \"healthy\" }\n";

#[test]
#[ignore = "system test: needs the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn a_unit_is_active_once_ready_reloads_stops_to_nothing_and_disables_to_what_was_there() {
    require_test_env();
    let sb = Sandbox::new();
    let project = project("life");
    let (guard, before) = enabled(&sb, &project, TWO);
    let unit = guard.unit();
    let enable = sb.run(&["enable", "--json"]);
    enable.expect_code(0);
    let doc = enable.json();
    assert_eq!(doc["unit"], unit.as_str(), "{doc}");
    assert_eq!(show(&unit, "UnitFileState"), "enabled");
    assert!(unit_dir().join("default.target.wants").join(&unit).exists());

    // Active only once every service is ready: at the first `active`, both are.
    systemctl(&["start", "--no-block", &unit]).expect_code(0);
    wait_for("the unit to be active", DEADLINE, || {
        let active = systemctl(&["is-active", &unit]).stdout().trim() == "active";
        if active {
            let status = sb.run(&["status", "--json"]).expect_code(0).json();
            for s in status["services"].as_array().unwrap() {
                assert_eq!(
                    s["ready"], true,
                    "active before every service was ready: {status}"
                );
            }
        }
        active
    });
    assert_eq!(show(&unit, "StatusText"), "2/2 services ready");
    let main_pid = show(&unit, "MainPID");
    let slice = ccscope::contain::slice_name(&project);
    let escaped = ccscope::contain::escape_unit_part(&project);
    let tree = systemctl(&["status", "--no-pager", &slice]);
    for part in [
        format!("ccscope-{escaped}-db.scope"),
        format!("ccscope-{escaped}-web.scope"),
        unit.clone(),
        main_pid.clone(),
    ] {
        assert!(
            tree.stdout().contains(&part),
            "{part} in the slice's tree:\n{}",
            tree.stdout()
        );
    }

    // An edited file, applied by `systemctl --user reload`: web restarts, db runs on.
    let pids = guard.pids();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\n{}",
            TWO.replace("web v1", "web v2")
        ),
    );
    systemctl(&["reload", &unit]).expect_code(0);
    wait_for("web to run again after the reload", DEADLINE, || {
        let now = guard.pids();
        now.get("web").is_some_and(|p| Some(p) != pids.get("web"))
    });
    assert_eq!(guard.pids().get("db"), pids.get("db"), "db was left alone");
    assert_eq!(show(&unit, "MainPID"), main_pid, "the same supervisor");
    assert_eq!(show(&unit, "ActiveState"), "active");

    // `systemctl --user stop`: the orderly stop, nothing of the project left.
    systemctl(&["stop", &unit]).expect_code(0);
    assert_eq!(show(&unit, "ActiveState"), "inactive");
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
    let projects = sb.run(&["projects", "--json"]).expect_code(0).json();
    let mine = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["project"] == project.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{project} in {projects}"));
    assert_eq!(mine["state"], "stopped", "{mine}");
    assert_eq!(mine["unit"], unit.as_str(), "{mine}");

    // `run --detach` of an enabled project is its unit; `ccscope stop` ends both.
    sb.run(&["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains(&format!("supervisor started as {unit}"));
    assert_eq!(show(&unit, "ActiveState"), "active");
    sb.run(&["stop"]).expect_code(0);
    wait_for("the unit to end with its stack", DEADLINE, || {
        show(&unit, "ActiveState") == "inactive"
    });
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));

    sb.run(&["disable"]).expect_code(0);
    assert_eq!(
        unit_files(),
        before,
        "disable removed exactly what enable added"
    );
    assert_eq!(show(&unit, "UnitFileState"), "");
}

#[test]
#[ignore = "system test: needs the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn a_stack_that_never_becomes_ready_fails_the_unit_with_the_reason() {
    require_test_env();
    let sb = Sandbox::new();
    let project = project("never");
    let (guard, _) = enabled(
        &sb,
        &project,
        "[services.slow]\nshell = \"exec sleep 300\"\nready = { log = \"never said\", start_timeout = \"1s\" }\n",
    );
    let unit = guard.unit();
    let ran = sb.run(&["enable", "--now"]);
    ran.expect_code(9).expect_stderr_contains("did not start");
    assert_eq!(show(&unit, "ActiveState"), "failed");
    let status = show(&unit, "StatusText");
    assert!(status.contains("slow did not come up"), "{status}");
    assert!(
        ran.stderr().contains("slow did not come up"),
        "{}",
        ran.stderr()
    );
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
}

#[test]
#[ignore = "system test: needs the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn a_hung_supervisor_is_replaced_by_the_watchdog_and_the_new_one_adopts_the_scopes() {
    require_test_env();
    let sb = Sandbox::new();
    let project = project("dog");
    let (mut guard, _) = enabled(&sb, &project, TWO);
    let unit = guard.unit();
    sb.run(&["enable"]).expect_code(0);
    let watchdog = unit_dir().join(format!("{unit}.d/watchdog.conf"));
    guard.extra.push(watchdog.clone());
    std::fs::write(&watchdog, "[Service]\nWatchdogSec=1s\nTimeoutAbortSec=1s\n").unwrap();
    systemctl(&["daemon-reload"]).expect_code(0);
    systemctl(&["start", &unit]).expect_code(0);
    let first = show(&unit, "MainPID");
    let pids = guard.pids();
    assert_eq!(pids.len(), 2, "{pids:?}");

    // Its loop stops: no more WATCHDOG=1; systemd aborts it, kills it, starts another.
    let pid: i32 = first.parse().unwrap();
    ccscope::proc::sys::kill(pid, libc::SIGSTOP).unwrap();
    wait_for("a new supervisor, ready", DEADLINE, || {
        let now = show(&unit, "MainPID");
        now != first && now != "0" && show(&unit, "ActiveState") == "active"
    });
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the hung one is gone"
    );
    assert_eq!(
        guard.pids(),
        pids,
        "the services ran on and were adopted back"
    );
    assert_eq!(show(&unit, "NRestarts"), "1");
}

#[test]
fn a_project_not_in_the_index_is_refused_with_what_to_do() {
    let sb = Sandbox::new();
    let ran = sb.run(&["--project-name", "nosuch", "status"]);
    ran.expect_code(2)
        .expect_stderr_contains("project `nosuch` is not in the projects index")
        .expect_stderr_contains("run it once with -f FILE");
    let listed = sb.run(&["projects", "--json"]);
    listed.expect_code(0);
    assert_eq!(listed.json()["projects"], serde_json::json!([]));
    // Once it ran, the index knows where its file is, and a misspelt name gets a hint.
    let name = project("known");
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{name}\"\n\n[services.a]\nshell = \"exec sleep 300\"\n"),
    );
    sb.run(&["run", "--detach", "--backend", "pgroup"])
        .expect_code(0);
    let projects = sb.run(&["projects", "--json"]).expect_code(0).json();
    assert_eq!(projects["projects"][0]["state"], "running", "{projects}");
    sb.run(&["stop"]).expect_code(0);
    let projects = sb.run(&["projects", "--json"]).expect_code(0).json();
    assert_eq!(
        projects["projects"][0]["project"],
        name.as_str(),
        "{projects}"
    );
    assert_eq!(projects["projects"][0]["state"], "stopped", "{projects}");
    let config = sb.path().join("ccscope.toml").canonicalize().unwrap();
    assert_eq!(
        projects["projects"][0]["config"],
        config.display().to_string()
    );
    sb.run(&["--project-name", &name, "check"]).expect_code(0);
    sb.run(&["--project-name", &format!("{name}x"), "check"])
        .expect_code(2)
        .expect_stderr_contains(&format!("did you mean `{name}`?"));
}
