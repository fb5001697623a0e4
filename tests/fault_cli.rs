//! The fault suite: ccscope killed, its registry broken, its disk full, its commands raced, its
//! records lying — and each case ends the same way: nothing of the project is left (no live
//! process carries its markers), every command exited with the code it should, and the
//! registry passes `PRAGMA quick_check`.
//!
//! The kills go through the test-only hook `CCSCOPE_TEST_ABORT_AT=<point>`
//! (`ccscope::proc::fault`): the supervisor or `stop` SIGKILLs itself at that named point.

mod common;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ccscope::proc::fault;
use common::{Ran, Sandbox, marked, require_test_env};

/// How long a start or a stop may take here: generous, the machine is shared.
const DEADLINE: Duration = Duration::from_secs(60);

fn project(tag: &str) -> String {
    format!("f{}-{tag}", std::process::id())
}

/// Two layers (`web` depends on `db`, which is restarted when it fails), `web` with a
/// double-forked helper that leaves its process group; with `crasher`, a third service that
/// crashes once and is restarted.
fn stack(project: &str, crasher: bool) -> Sandbox {
    let sb = Sandbox::new();
    let mut text = format!(
        "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"1s\"\n\
         [services.db]\ncommand = [\"sleep\", \"300\"]\n\
         restart = {{ policy = \"on-failure\", initial_backoff = \"100ms\" }}\n\
         [services.web]\nshell = \"( setsid sh -c 'exec sleep 301' & ); exec sleep 302\"\n\
         depends_on = [\"db\"]\n"
    );
    if crasher {
        let once = sb.path().join("crashed-once");
        text.push_str(&format!(
            "[services.crasher]\nshell = \"test -e {0} || {{ touch {0}; exit 3; }}; exec sleep 303\"\n\
             restart = {{ policy = \"on-failure\", initial_backoff = \"100ms\" }}\n",
            once.display()
        ));
    }
    sb.write("ccscope.toml", &text);
    sb
}

/// A command in the background, its output in files (never pipes: a service that inherited a
/// pipe would keep a reader waiting for its end long after the command exited).
struct Bg {
    child: Child,
    description: String,
    out: PathBuf,
    err: PathBuf,
}

impl Bg {
    fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Bg {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let description = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {description}: {e}"));
        Bg {
            child,
            description,
            out,
            err,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until stdout or stderr holds `needle`.
    fn wait_output(&mut self, needle: &str, deadline: Duration) {
        self.wait_output_times(needle, 1, deadline);
    }

    /// Waits until stdout and stderr hold `needle` `times` times.
    fn wait_output_times(&mut self, needle: &str, times: usize, deadline: Duration) {
        let start = Instant::now();
        loop {
            let said = format!(
                "{}{}",
                self.stdout(),
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
            if said.matches(needle).count() >= times {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before saying {needle:?}:\n{said}",
                    self.description
                );
            }
            assert!(
                start.elapsed() < deadline,
                "{} did not say {needle:?} within {deadline:?}:\n{said}",
                self.description
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to exit; its output as a [`Ran`].
    fn wait(mut self, deadline: Duration) -> Ran {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                let ran = self.ran(status);
                panic!(
                    "{} did not exit within {deadline:?}:\n{}\n{}",
                    ran.description,
                    ran.stdout(),
                    ran.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.ran(status)
    }

    fn ran(&self, status: std::process::ExitStatus) -> Ran {
        Ran {
            description: self.description.clone(),
            output: Output {
                status,
                stdout: std::fs::read(&self.out).unwrap_or_default(),
                stderr: std::fs::read(&self.err).unwrap_or_default(),
            },
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// However a test ends, what it started is stopped (by `ccscope stop --force`, with the
/// sandbox's state directory).
struct StopOnDrop<'a> {
    sb: &'a Sandbox,
    state_dir: Option<String>,
}

impl<'a> StopOnDrop<'a> {
    fn new(sb: &'a Sandbox) -> StopOnDrop<'a> {
        StopOnDrop {
            sb,
            state_dir: None,
        }
    }
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let mut args = Vec::new();
        if let Some(dir) = &self.state_dir {
            args.extend(["--state-dir", dir.as_str()]);
        }
        args.extend(["stop", "--force"]);
        let _ = self
            .sb
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `command` ran to its end by SIGKILL from the armed fault point `point`.
fn assert_killed_at(ran: &Ran, point: &str) {
    assert_eq!(
        ran.output.status.signal(),
        Some(libc::SIGKILL),
        "{} was to die by SIGKILL at {point}: exit {:?}\n{}\n{}",
        ran.description,
        ran.output.status,
        ran.stdout(),
        ran.stderr()
    );
    assert!(
        ran.stderr().contains(&format!("{}={point}", fault::ENV)),
        "it died at its point: {}",
        ran.stderr()
    );
}

/// `PRAGMA quick_check` of the registry in `state_dir`.
fn quick_check(state_dir: &Path) -> String {
    let path = state_dir.join("registry.db");
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("quick_check {}: {e}", path.display()))
}

/// What the registry in `state_dir` still holds of `project`: process records and service
/// states. (A killed supervisor's run stays "running": every reader checks its pid and start
/// time before believing it.)
fn records_of(project: &str, state_dir: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(state_dir.join("registry.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let count = |sql: &str| -> i64 {
        conn.query_row(sql, [project], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    (
        count("SELECT count(*) FROM processes WHERE project = ?1"),
        count("SELECT count(*) FROM service_states WHERE project = ?1"),
    )
}

/// The project's scopes and services the user manager still has active (its slice may stay).
fn active_units(project: &str) -> Vec<String> {
    let escaped = ccscope::contain::escape_unit_part(project);
    let out = Command::new("systemctl")
        .args([
            "--user",
            "list-units",
            "--plain",
            "--no-legend",
            "--state=active",
        ])
        .args(["ccscope-*.scope", "ccscope-*.service"])
        .output()
        .expect("run systemctl --user list-units");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        // `ccscope-<project>.service` (a detached supervisor), `ccscope-<project>-<service>.scope`:
        // the project's dashes are escaped, so another project's units never match.
        .filter(|unit| {
            *unit == format!("ccscope-{escaped}.service")
                || unit.starts_with(&format!("ccscope-{escaped}-"))
        })
        .map(str::to_string)
        .collect()
}

/// The end every case comes to: nothing of the project runs, and the registry is sound and
/// holds nothing of it.
fn assert_nothing_left(project: &str, state_dir: &Path) {
    assert_nothing_running(project);
    assert_eq!(quick_check(state_dir), "ok", "the registry is sound");
    assert_eq!(
        records_of(project, state_dir),
        (0, 0),
        "the registry holds no process record or service state of a stopped project"
    );
}

/// No live process carries the project's markers, and the user manager runs no scope or
/// service of it.
fn assert_nothing_running(project: &str) {
    // A killed process may take a moment to be reaped by its parent, and a unit to go
    // inactive once its last process is gone: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!marked(project).is_empty() || !active_units(project).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        active_units(project),
        Vec::<String>::new(),
        "no unit is left"
    );
    let left = marked(project);
    let described: Vec<String> = left
        .iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect();
    assert!(left.is_empty(), "0 left expected, found {described:#?}");
}

/// The stop that cleans up after a fault: exit 0, and nothing survived.
fn stop_cleans_up(sb: &Sandbox, extra: &[&str]) -> serde_json::Value {
    let ran = Ran::of(sb.command(&[extra, &["stop", "--json"]].concat()));
    ran.expect_code(0);
    let doc = ran.json();
    assert!(
        doc["outcome"] == "complete" || doc["outcome"] == "nothing_to_stop",
        "{doc}"
    );
    assert_eq!(doc["survivors"].as_array().map_or(0, Vec::len), 0, "{doc}");
    doc
}

/// After a fault, the project is not wedged: a detached run comes up and a stop ends it.
fn runs_again(sb: &Sandbox, project: &str) {
    Ran::of(sb.command(&["run", "--detach"]))
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    assert!(!marked(project).is_empty(), "the new run started the stack");
    stop_cleans_up(sb, &[]);
    assert_nothing_left(project, &sb.state_dir());
}

// ---- the supervisor killed at each point of start-up and supervision ---------------------------

/// `ccscope run`, armed at `point`, dies there; then `stop` leaves nothing and exits 0, and
/// the next run works.
fn supervisor_killed_at(point: &'static str, tag: &str, backend: &str) {
    require_test_env();
    let project = project(tag);
    let crasher = point == fault::SUPERVISOR_RESTARTING;
    let sb = stack(&project, crasher);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = sb.command(&["-v", "run", "--backend", backend]);
    run.env(fault::ENV, point);
    let ran = Bg::spawn(run, sb.path(), "run").wait(DEADLINE);
    assert_killed_at(&ran, point);
    let started_something =
        point != fault::SUPERVISOR_LOCKED && point != fault::SUPERVISOR_RUN_RECORDED;
    if started_something {
        assert!(
            !marked(&project).is_empty(),
            "the services outlive their supervisor"
        );
    }
    let doc = stop_cleans_up(&sb, &[]);
    if started_something {
        assert_eq!(doc["outcome"], "complete", "{doc}");
    }
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_after_taking_the_lock() {
    supervisor_killed_at(fault::SUPERVISOR_LOCKED, "locked", "systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_after_recording_the_run() {
    supervisor_killed_at(fault::SUPERVISOR_RUN_RECORDED, "recorded", "systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_after_making_the_first_scope() {
    supervisor_killed_at(fault::SUPERVISOR_FIRST_SCOPE, "scope", "systemd");
}

#[test]
#[ignore = "system test: needs a writable cgroup v2 tree (scripts/test.sh)"]
fn supervisor_killed_after_making_the_first_scope_cgroupfs() {
    supervisor_killed_at(fault::SUPERVISOR_FIRST_SCOPE, "scope-cg", "cgroupfs");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_before_reporting_ready() {
    supervisor_killed_at(fault::SUPERVISOR_BEFORE_READY, "ready", "systemd");
}

#[test]
#[ignore = "system test: needs a writable cgroup v2 tree (scripts/test.sh)"]
fn supervisor_killed_before_reporting_ready_cgroupfs() {
    supervisor_killed_at(fault::SUPERVISOR_BEFORE_READY, "ready-cg", "cgroupfs");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_while_restarting_a_crashed_service() {
    supervisor_killed_at(fault::SUPERVISOR_RESTARTING, "restart", "systemd");
}

#[test]
#[ignore = "system test: needs a writable cgroup v2 tree (scripts/test.sh)"]
fn supervisor_killed_while_restarting_a_crashed_service_cgroupfs() {
    supervisor_killed_at(fault::SUPERVISOR_RESTARTING, "restart-cg", "cgroupfs");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_detached_supervisor_killed_before_ready_fails_the_run_and_stop_leaves_nothing() {
    require_test_env();
    let project = project("detach-ready");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = sb.command(&["run", "--detach"]);
    run.env(fault::ENV, fault::SUPERVISOR_BEFORE_READY);
    let ran = Ran::of(run);
    // Its supervisor died: the run did not succeed, and does not claim the stack was stopped.
    ran.expect_code(9);
    assert!(!marked(&project).is_empty(), "the services outlive it");
    assert!(
        !ran.stderr().contains("stopped it again"),
        "the supervisor died; nobody stopped the stack: {}",
        ran.stderr()
    );
    stop_cleans_up(&sb, &[]);
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_half_way_through_its_own_stop() {
    require_test_env();
    let project = project("ownstop");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = sb.command(&["-v", "run"]);
    run.env(fault::ENV, fault::STOP_LAYER_DONE);
    let mut run = Bg::spawn(run, sb.path(), "run");
    run.wait_output("stack ready", DEADLINE);
    ccscope::proc::sys::kill(run.child.id() as i32, libc::SIGTERM).unwrap();
    let ran = run.wait(DEADLINE);
    assert_killed_at(&ran, fault::STOP_LAYER_DONE);
    assert!(!marked(&project).is_empty(), "db outlives the half stop");
    let doc = stop_cleans_up(&sb, &[]);
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn supervisor_killed_while_standing_down_for_a_stop() {
    require_test_env();
    let project = project("standing");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = sb.command(&["-v", "run"]);
    run.env(fault::ENV, fault::SUPERVISOR_STANDING_DOWN);
    let mut run = Bg::spawn(run, sb.path(), "run");
    run.wait_output("stack ready", DEADLINE);
    // The stop asks, the supervisor dies before it answers: the stop goes on without it.
    let doc = stop_cleans_up(&sb, &[]);
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_killed_at(&run.wait(DEADLINE), fault::SUPERVISOR_STANDING_DOWN);
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

// ---- `stop` killed at each of its points, then run again ---------------------------------------

/// `stop`, armed at `point`, dies there; a second `stop` leaves nothing and exits 0. The
/// supervisor runs in the foreground of the test, or `detached` as a user service.
fn stop_killed_at(point: &'static str, tag: &str, detached: bool) {
    require_test_env();
    let project = project(tag);
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let run = if detached {
        Ran::of(sb.command(&["run", "--detach"]))
            .expect_code(0)
            .expect_stdout_contains("stack ready");
        None
    } else {
        let mut run = Bg::spawn(sb.command(&["-v", "run"]), sb.path(), "run");
        run.wait_output("stack ready", DEADLINE);
        Some(run)
    };
    let mut stop = sb.command(&["stop", "--json"]);
    stop.env(fault::ENV, point);
    let ran = Bg::spawn(stop, sb.path(), "stop-killed").wait(DEADLINE);
    assert_killed_at(&ran, point);
    stop_cleans_up(&sb, &[]);
    // The supervisor stood down for the first stop: it ends once the stack is gone, by the
    // second stop or by finishing the stop itself (a detached one's unit goes inactive,
    // which the end of the case checks).
    if let Some(run) = run {
        run.wait(DEADLINE).expect_code(0);
    }
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_after_the_stand_down_then_stop_again() {
    stop_killed_at(fault::STOP_STOOD_DOWN, "stop-stood", false);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_after_the_stand_down_of_a_detached_supervisor_then_stop_again() {
    stop_killed_at(fault::STOP_STOOD_DOWN, "stop-stood-d", true);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_after_its_first_layer_then_stop_again() {
    stop_killed_at(fault::STOP_LAYER_DONE, "stop-layer", false);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_after_its_first_layer_of_a_detached_supervisor_then_stop_again() {
    stop_killed_at(fault::STOP_LAYER_DONE, "stop-layer-d", true);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_before_updating_the_registry_then_stop_again() {
    stop_killed_at(fault::STOP_BEFORE_REGISTRY, "stop-registry", false);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_killed_before_updating_the_registry_of_a_detached_supervisor_then_stop_again() {
    stop_killed_at(fault::STOP_BEFORE_REGISTRY, "stop-registry-d", true);
}

// ---- the registry broken while a stack runs ----------------------------------------------------

/// How the registry is broken under a running supervisor.
#[derive(Debug, Clone, Copy)]
enum Corruption {
    Truncated,
    Garbage,
    Empty,
    Deleted,
    GarbageWal,
}

/// Bytes no SQLite file has: a fixed pseudo-random stream.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn corrupt(state_dir: &Path, how: Corruption) {
    let db = state_dir.join("registry.db");
    let wal = state_dir.join("registry.db-wal");
    match how {
        Corruption::Truncated => {
            // Cut mid-page, as a torn write or a full disk leaves it; the log goes with it.
            for file in [&db, &wal] {
                if let Ok(meta) = std::fs::metadata(file) {
                    let f = File::options().write(true).open(file).unwrap();
                    f.set_len(meta.len() / 2 + 100).unwrap();
                }
            }
        }
        Corruption::Garbage => {
            let len = std::fs::metadata(&db).unwrap().len() as usize;
            std::fs::write(&db, garbage(len.max(8192))).unwrap();
        }
        Corruption::Empty => {
            File::options()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        Corruption::Deleted => {
            for file in ["registry.db", "registry.db-wal", "registry.db-shm"] {
                let _ = std::fs::remove_file(state_dir.join(file));
            }
        }
        Corruption::GarbageWal => {
            std::fs::write(&wal, garbage(64 * 1024)).unwrap();
        }
    }
}

fn registry_broken_while_running(how: Corruption, tag: &str) {
    require_test_env();
    let project = project(tag);
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = Bg::spawn(sb.command(&["-v", "run"]), sb.path(), "run");
    run.wait_output("stack ready", DEADLINE);
    corrupt(&sb.state_dir(), how);
    let doc = stop_cleans_up(&sb, &[]);
    assert_eq!(doc["outcome"], "complete", "{how:?}: {doc}");
    let supervisor = run.wait(DEADLINE);
    supervisor.expect_code(0);
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn registry_truncated_while_running() {
    registry_broken_while_running(Corruption::Truncated, "reg-trunc");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn registry_overwritten_with_garbage_while_running() {
    registry_broken_while_running(Corruption::Garbage, "reg-garbage");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn registry_emptied_while_running() {
    registry_broken_while_running(Corruption::Empty, "reg-empty");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn registry_deleted_while_running() {
    registry_broken_while_running(Corruption::Deleted, "reg-deleted");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn registry_wal_overwritten_with_garbage_while_running() {
    registry_broken_while_running(Corruption::GarbageWal, "reg-wal");
}

// ---- a full state disk -------------------------------------------------------------------------

/// A small tmpfs of its own as the state directory, unmounted when dropped (lazily if
/// something still holds it), even when the test fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=2m,mode=0700",
                "ccscope-test-faults",
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
        let mut f = File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 16 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The pid of `service`'s registered main process, as `ps` lists it.
fn main_pid(sb: &Sandbox, service: &str) -> i32 {
    let doc = Ran::of(sb.command(&["ps", "--json"])).expect_code(0).json();
    doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service"] == service && p["registered"] == true)
        .unwrap_or_else(|| panic!("{service} has a registered process: {doc}"))["pid"]
        .as_i64()
        .unwrap() as i32
}

#[test]
#[ignore = "system test: needs the user manager, session bus and mount(8) (scripts/test.sh)"]
fn with_the_state_disk_full_before_the_start_run_says_so_and_stop_still_works() {
    require_test_env();
    let project = project("fullstart");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let disk = SmallDisk::mount(sb.state_dir());
    disk.fill();
    let ran = Bg::spawn(sb.command(&["run"]), sb.path(), "run-full").wait(DEADLINE);
    if ran.code() != 0 {
        assert!(
            ["no space left", "disk is full"]
                .iter()
                .any(|s| ran.stderr().to_lowercase().contains(s)),
            "a refused run names the full disk:\n{}",
            ran.stderr()
        );
        assert!(!ran.stderr().contains("panicked"), "{}", ran.stderr());
    }
    // Nothing to stop, and nothing to record: the stop says so and exits 0.
    stop_cleans_up(&sb, &[]);
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
    disk.free();
    runs_again(&sb, &project);
}

#[test]
#[ignore = "system test: needs the user manager, session bus and mount(8) (scripts/test.sh)"]
fn with_the_state_disk_full_while_running_the_supervisor_and_stop_say_what_they_could_not_record() {
    require_test_env();
    let project = project("fullrun");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let disk = SmallDisk::mount(sb.state_dir());
    // A crash makes the supervisor restart and record on the full disk, and the stop records
    // its end there.
    let mut run = Bg::spawn(sb.command(&["-v", "run"]), sb.path(), "run");
    run.wait_output("stack ready", DEADLINE);
    let db = main_pid(&sb, "db");
    disk.fill();
    ccscope::proc::sys::kill(db, libc::SIGKILL).unwrap();
    run.wait_output("restarting", DEADLINE);
    // Back up: db restarted, and web (which depends on it) started again.
    run.wait_output_times("web                  running", 2, DEADLINE);
    let ran = Ran::of(sb.command(&["stop", "--json"]));
    ran.expect_code(0);
    let doc = ran.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(doc["services"].as_array().unwrap().len(), 2, "{doc}");
    // Whether SQLite needs new room for a write depends on how much of its write-ahead log
    // is free: when it does, what could not be recorded is said, and only that.
    for warning in doc["warnings"].as_array().unwrap() {
        assert!(
            warning.as_str().unwrap().contains("registry"),
            "only registry trouble is warned about: {doc}"
        );
    }
    let supervisor = run.wait(DEADLINE);
    supervisor.expect_code(0);
    let said = supervisor.stdout() + &supervisor.stderr();
    assert!(!said.contains("panicked"), "{said}");
    // What could not be recorded is said, with why.
    for line in said.lines().filter(|l| l.contains("could not")) {
        assert!(line.contains("disk is full"), "{line}\n{said}");
    }
    assert!(
        !said.contains("os error"),
        "no bare os error from the supervisor:\n{said}"
    );
    // What could not be removed from the registry stays there until there is room again.
    assert_nothing_running(&project);
    assert_eq!(quick_check(&sb.state_dir()), "ok");
    disk.free();
    runs_again(&sb, &project);
}

// ---- 20 concurrent mixed commands --------------------------------------------------------------

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn twenty_concurrent_mixed_commands_leave_nothing_and_a_sound_registry() {
    require_test_env();
    // Three projects in one state directory: one registry for all of them.
    let projects = [project("race-a"), project("race-b"), project("race-c")];
    let boxes: Vec<Sandbox> = projects.iter().map(|p| stack(p, false)).collect();
    let shared = boxes[0].state_dir().display().to_string();
    let cleanups: Vec<StopOnDrop> = boxes
        .iter()
        .map(|sb| StopOnDrop {
            sb,
            state_dir: Some(shared.clone()),
        })
        .collect();
    let plan: &[(usize, &[&str])] = &[
        (0, &["run", "--detach"]),
        (0, &["run", "--detach"]),
        (0, &["ps", "--json"]),
        (0, &["run", "--detach"]),
        (0, &["discover", "--json"]),
        (0, &["status", "--json"]),
        (0, &["stop", "--json"]),
        (0, &["ps", "--json"]),
        (0, &["discover", "--json"]),
        (0, &["status", "--json"]),
        (0, &["ps", "--json"]),
        (0, &["stop", "--json"]),
        (1, &["run", "--detach"]),
        (1, &["status", "--json"]),
        (1, &["ps", "--json"]),
        (1, &["stop", "--json"]),
        (2, &["run", "--detach"]),
        (2, &["discover", "--json"]),
        (2, &["ps", "--json"]),
        (2, &["stop", "--json"]),
    ];
    assert_eq!(plan.len(), 20);
    let started: Vec<(usize, &[&str], Bg)> = plan
        .iter()
        .enumerate()
        .map(|(i, (which, args))| {
            let sb = &boxes[*which];
            let cmd = sb.command(&[&["--state-dir", shared.as_str()], *args].concat());
            (*which, *args, Bg::spawn(cmd, sb.path(), &format!("cmd{i}")))
        })
        .collect();
    // Every command is judged, and all that went wrong said at the end, after the clean-up.
    let mut codes = Vec::new();
    let mut wrong = Vec::new();
    for (which, args, bg) in started {
        let ran = bg.wait(DEADLINE);
        let said = ran.stderr();
        let what = format!("{args:?} of {} exited {}", projects[which], ran.code());
        codes.push(what.clone());
        if said.contains("panicked") || ran.code() == 101 {
            wrong.push(format!("{what}, a panic:\n{said}"));
        }
        if said.contains("os error") {
            wrong.push(format!("{what}, a bare os error:\n{said}"));
        }
        // A run may find the project taken (5) or stopped under it while it started (9); a
        // stop racing a start may see what the start is still making (8). Anything else is
        // a failure of its own.
        let allowed: &[i32] = match args[0] {
            "run" => &[0, 5, 9],
            "stop" => &[0, 8],
            _ => &[0],
        };
        if !allowed.contains(&ran.code()) {
            wrong.push(format!("{what}:\n{}\n{said}", ran.stdout()));
        }
    }
    eprintln!("exit codes: {codes:#?}");
    assert_eq!(quick_check(Path::new(&shared)), "ok", "{codes:?}");
    // What the race left running, a plain stop ends.
    for (sb, project) in boxes.iter().zip(&projects) {
        stop_cleans_up(sb, &["--state-dir", &shared]);
        assert_nothing_left(project, Path::new(&shared));
    }
    drop(cleanups);
    assert!(wrong.is_empty(), "{}", wrong.join("\n---\n"));
}

// ---- a record whose pid a bystander now has ----------------------------------------------------

/// Whether `pid` is alive with `start_time` and not stopped.
fn alive_and_running(pid: i32, start_time: u64) -> bool {
    ccscope::proc::read_stat(Path::new("/proc"), pid)
        .is_ok_and(|s| s.start_time == start_time && s.state != 'T' && s.state != 'Z')
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_record_whose_pid_a_bystander_now_has_never_gets_the_bystander_signalled() {
    require_test_env();
    let project = project("reuse");
    let sb = stack(&project, false);
    let _cleanup = StopOnDrop::new(&sb);
    let mut run = Bg::spawn(sb.command(&["-v", "run"]), sb.path(), "run");
    run.wait_output("stack ready", DEADLINE);
    // The supervisor dies (its records stay), and a process that is none of ccscope's
    // business now has the pid of a recorded service and of the recorded supervisor.
    ccscope::proc::sys::kill(run.child.id() as i32, libc::SIGKILL).unwrap();
    let _ = run.wait(DEADLINE);
    let mut bystander = Command::new("setsid");
    bystander
        .args(["sleep", "300"])
        .env_remove("CCSCOPE_PROJECT");
    // Killed by its pid however the test ends (a Bg is killed when dropped).
    let bystander = Bg::spawn(bystander, sb.path(), "bystander");
    let pid = bystander.child.id() as i32;
    let start_time = ccscope::proc::read_stat(Path::new("/proc"), pid)
        .unwrap()
        .start_time;
    let db = sb.state_dir().join("registry.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        // The service's record keeps its own start time: the pid is the bystander's, the
        // process is not.
        let moved = conn
            .execute(
                "UPDATE processes SET pid = ?1 WHERE project = ?2 AND service = 'db'",
                rusqlite::params![pid, project],
            )
            .unwrap();
        assert!(moved >= 1, "db was registered");
        conn.execute(
            "UPDATE runs SET supervisor_pid = ?1 WHERE project = ?2",
            rusqlite::params![pid, project],
        )
        .unwrap();
    }
    let doc = Ran::of(sb.command(&["ps", "--json"])).expect_code(0).json();
    assert!(
        doc["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["pid"] != pid),
        "ps never lists the bystander as the project's: {doc}"
    );
    let doc = stop_cleans_up(&sb, &[]);
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert!(
        alive_and_running(pid, start_time),
        "the bystander was not signalled: {doc}"
    );
    assert_nothing_left(&project, &sb.state_dir());
    runs_again(&sb, &project);
    assert!(alive_and_running(pid, start_time), "nor by the next run");
    drop(bystander);
}
