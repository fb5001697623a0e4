//! ccscope as an ordinary user, the way a workstation runs it: every command here runs as the
//! unprivileged `ccscope-other`, from a terminal-like scope under their own `user@UID.service`,
//! against their own user manager and session bus (scripts/test-env.sh brings them up). `doctor`
//! picks systemd; `run` (foreground and `--detach`) puts a stack with a double-forking service
//! in scopes of that manager; `ps` and `status` show it; `stop` leaves nothing; `exec` runs in a
//! scope of theirs; a stray the user started is discovered and adopted. And each refusal of
//! another user's processes: the user's commands never touch root's processes of a project of
//! the same name, and root's `stop` of that name leaves the user's alone. One test starts
//! `run` as the user outside their terminal (from the test's own cgroup, out of the manager's
//! tree) on purpose: it fails, and says why and what to do.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ccscope::proc::{ProcFs, ProcessIdentity};
use common::{OtherSandbox, Ran, Sandbox, marked, marked_by, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("n{}-{tag}", std::process::id())
}

/// A stack of two services: `web` double-forks a daemon (a `setsid` grandchild nobody waits
/// for) and `worker` starts after it; strays whose command line holds `tag` are `worker`'s.
fn stack(project: &str, tag: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"10s\"\n\
         [services.web]\ncommand = [\"sh\", \"-c\", \"( setsid sh -c 'sleep 300; : {tag}-daemon' & ); exec sleep 300\"]\n\
         [services.worker]\ncommand = [\"sleep\", \"301\"]\ndepends_on = [\"web\"]\n\
         discover = {{ cmdline = [\"{tag}\"] }}\n"
    )
}

fn other_sandbox(project: &str, tag: &str) -> OtherSandbox {
    let sb = OtherSandbox::new();
    sb.write("ccscope.toml", &stack(project, tag));
    sb
}

fn uid_of(pid: i32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The process's cgroup on the cgroup2 mount (its `0::` line).
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

fn identity(pid: i32) -> ProcessIdentity {
    ProcFs::default()
        .identity(pid)
        .unwrap_or_else(|e| panic!("pid {pid} runs: {e}"))
}

/// Still the same process (same pid and start time), not dead and not a reused pid.
fn survives(id: &ProcessIdentity) -> bool {
    ProcFs::default()
        .identity(id.pid)
        .is_ok_and(|now| now.start_time == id.start_time)
}

/// Pids whose command line contains `needle`.
fn with_cmdline(needle: &str) -> Vec<i32> {
    ccscope::discover::scan::scan(std::path::Path::new("/proc"))
        .processes
        .values()
        .filter(|p| p.command_line.contains(needle))
        .map(|p| p.pid)
        .collect()
}

/// pid → class of a discovery report.
fn classes(doc: &serde_json::Value) -> BTreeMap<i64, String> {
    doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_i64().unwrap(),
                p["class"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ps_pids(doc: &serde_json::Value) -> Vec<i64> {
    doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect()
}

/// The escaped name systemd gives the project's slice (`-` is `\x2d` in a unit name).
fn slice_of(project: &str) -> String {
    format!("ccscope-{}.slice", project.replace('-', "\\x2d"))
}

/// A process started by the test (a command of either user), killed by its pid however the
/// test ends.
struct Spawned(Child);

impl Spawned {
    fn of(mut cmd: Command) -> Spawned {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Spawned(cmd.spawn().expect("spawn"))
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A foreground `ccscope run` in the background of the test, its output lines collected.
struct Foreground {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Foreground {
    fn start(mut cmd: Command) -> Foreground {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start ccscope run");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Foreground {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_line(&mut self, needle: &str) {
        let until = Instant::now() + DEADLINE;
        if self.seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {DEADLINE:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn wait_exit(&mut self) -> (i32, String) {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            assert!(
                Instant::now() < until,
                "ccscope run did not exit within {DEADLINE:?}; output:\n{}",
                self.seen.join("\n")
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line);
            }
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every process of the user's stack: theirs, in a scope of the project's slice under their
/// own `user@UID.service`, and listed by `ps` inside its scope.
fn assert_in_the_users_tree(sb: &OtherSandbox, project: &str, tag: &str) {
    let uid = sb.user.uid;
    let manager = format!("/user@{uid}.service/");
    let ps = sb.run(&["ps", "--json"]).expect_code(0).json();
    let processes = ps["processes"].as_array().unwrap();
    assert!(
        processes.iter().any(|p| p["service"] == "web"
            && p["command_line"]
                .as_str()
                .unwrap()
                .contains(&format!("{tag}-daemon"))),
        "the double-forked daemon is found in web's scope: {ps}"
    );
    for p in processes {
        let pid = p["pid"].as_i64().unwrap() as i32;
        assert_eq!(p["inside_scope"], true, "{p}");
        assert_eq!(uid_of(pid), Some(uid), "pid {pid} runs as the user: {p}");
        let cgroup = cgroup_of(pid);
        assert!(
            cgroup.contains(&manager) && cgroup.contains(&slice_of(project)),
            "pid {pid} is in the project's slice of the user's own manager: {cgroup}"
        );
    }
    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["state"], "running", "{status}");
        assert_eq!(service["ready"], true, "{status}");
        assert!(service["processes"].as_u64().unwrap() >= 1, "{status}");
    }
    assert_eq!(status["services"].as_array().unwrap().len(), 2, "{status}");
}

/// `stop` as the user: COMPLETE, and nothing of the project is left.
fn assert_stop_leaves_nothing(sb: &OtherSandbox, project: &str, tag: &str) {
    let stopped = sb.run(&["stop", "--json"]);
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    // A detached supervisor exits just after it acknowledged the stand-down.
    wait_for("the user's supervisor to exit", DEADLINE, || {
        marked(project).is_empty()
    });
    assert_eq!(with_cmdline(&format!("{tag}-daemon")), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn doctor_as_the_user_picks_systemd_on_their_own_manager() {
    let sb = OtherSandbox::new();
    let doc = sb.run(&["doctor", "--json"]).expect_code(0).json();
    assert_eq!(doc["backend"], "systemd", "{doc}");
    let systemd = doc["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["backend"] == "systemd")
        .unwrap_or_else(|| panic!("a systemd candidate: {doc}"));
    assert_eq!(systemd["available"], true, "{doc}");
    assert!(
        systemd["detail"]
            .as_str()
            .unwrap()
            .contains("user manager on the session bus"),
        "{doc}"
    );
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn run_in_the_foreground_as_the_user_ps_status_and_stop_leave_nothing() {
    let project = project("fg");
    let tag = format!("tag-{project}");
    let sb = other_sandbox(&project, &tag);
    let mut run = Foreground::start(sb.command(&["run"]));
    run.wait_line("stack ready");
    assert_eq!(uid_of(run.child.id() as i32), Some(sb.user.uid));
    assert_in_the_users_tree(&sb, &project, &tag);
    assert_stop_leaves_nothing(&sb, &project, &tag);
    let (code, output) = run.wait_exit();
    assert_eq!(
        code, 0,
        "the foreground run exits 0 once stop took over:\n{output}"
    );
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn run_detached_as_the_user_runs_its_supervisor_in_their_manager_and_stop_leaves_nothing() {
    let project = project("detach");
    let tag = format!("tag-{project}");
    let sb = other_sandbox(&project, &tag);
    sb.run(&["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    let supervisor = status["supervisor_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("a supervisor pid: {status}")) as i32;
    assert_eq!(uid_of(supervisor), Some(sb.user.uid));
    let cgroup = cgroup_of(supervisor);
    assert!(
        cgroup.contains(&format!("/user@{}.service/", sb.user.uid)),
        "the supervisor is a unit of the user's own manager: {cgroup}"
    );
    assert_in_the_users_tree(&sb, &project, &tag);
    let supervisor = identity(supervisor);
    assert_stop_leaves_nothing(&sb, &project, &tag);
    assert!(!survives(&supervisor), "the supervisor is gone");
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn exec_as_the_user_runs_in_a_scope_of_their_manager() {
    let project = project("exec");
    let sb = other_sandbox(&project, "unused");
    let ran = sb.run(&[
        "exec",
        "--service",
        "worker",
        "--",
        "sh",
        "-c",
        "id -u; echo \"$CCSCOPE_PROJECT/$CCSCOPE_SERVICE\"; grep '^0::' /proc/self/cgroup; exit 3",
    ]);
    ran.expect_code(3)
        .expect_stdout_contains(&format!("{}\n", sb.user.uid))
        .expect_stdout_contains(&format!("{project}/worker"))
        .expect_stdout_contains(&format!(
            "/user@{}.service/ccscope.slice/{}/",
            sb.user.uid,
            slice_of(&project)
        ));
    let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
    assert_eq!(doc["processes"], serde_json::json!([]), "nothing is left");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn a_stray_the_user_started_is_discovered_adopted_and_stopped() {
    let project = project("stray");
    let tag = format!("tag-{project}");
    let sb = other_sandbox(&project, &tag);
    // Started by hand in the user's terminal: a double fork, nobody's child, no markers.
    sb.run_sh(&format!(
        "(setsid sh -c 'sleep 300; : {tag}-by-hand' </dev/null >/dev/null 2>&1 &)"
    ));
    let mut strays = Vec::new();
    wait_for("the stray to start", DEADLINE, || {
        strays = with_cmdline(&format!("{tag}-by-hand"));
        !strays.is_empty()
    });
    let stray = strays[0];
    assert_eq!(uid_of(stray), Some(sb.user.uid));
    let before = cgroup_of(stray);
    assert!(
        sb.term.v2.to_string_lossy().ends_with(&before) && !before.is_empty(),
        "the stray sits in the user's terminal {}: {before}",
        sb.term.v2.display()
    );
    let found = sb.run(&["discover", "--json"]).expect_code(0).json();
    assert_eq!(
        classes(&found).get(&i64::from(stray)).map(String::as_str),
        Some("stray"),
        "{found}"
    );
    sb.run(&["adopt", "--all", "--json"]).expect_code(0);
    let after = sb.run(&["discover", "--json"]).expect_code(0).json();
    assert_eq!(
        classes(&after).get(&i64::from(stray)).map(String::as_str),
        Some("managed"),
        "{after}"
    );
    let cgroup = cgroup_of(stray);
    assert!(
        cgroup.contains(&format!("/user@{}.service/", sb.user.uid))
            && cgroup.contains(&slice_of(&project)),
        "adopted into a scope of the user's manager: {cgroup}"
    );
    let id = identity(stray);
    sb.run(&["stop"]).expect_code(0);
    assert!(!survives(&id), "the adopted stray was stopped");
    assert_eq!(with_cmdline(&tag), Vec::<i32>::new(), "no stray is left");
}

/// Root's side of a project of the same name: a detached stack under root's manager and a
/// marked stray root started by hand.
struct RootSide {
    sb: Sandbox,
    stray: Spawned,
}

impl RootSide {
    fn start(project: &str, tag: &str) -> RootSide {
        let sb = Sandbox::new();
        sb.write("ccscope.toml", &stack(project, tag));
        sb.run(&["run", "--detach"]).expect_code(0);
        // One process, so killing it by its pid leaves nothing.
        let mut cmd = Command::new("sleep");
        cmd.arg("300")
            .env("CCSCOPE_PROJECT", project)
            .env("CCSCOPE_SERVICE", "worker");
        let stray = Spawned::of(cmd);
        RootSide { sb, stray }
    }
}

impl Drop for RootSide {
    fn drop(&mut self) {
        let _ = self.sb.run(&["stop", "--force"]).code();
    }
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn the_users_discover_adopt_ps_and_stop_never_touch_roots_processes_of_the_same_name() {
    let project = project("theirs");
    let tag = format!("tag-{project}");
    let root = RootSide::start(&project, &tag);
    let sb = other_sandbox(&project, &tag);
    sb.run(&["run", "--detach"]).expect_code(0);
    wait_for("root's stray to start", DEADLINE, || {
        marked_by(&project, 0).contains(&root.stray.pid())
    });
    let roots: Vec<ProcessIdentity> = marked_by(&project, 0).into_iter().map(identity).collect();
    assert!(roots.len() >= 5, "root's stack and stray run: {roots:?}");
    let stray_cgroup = cgroup_of(root.stray.pid());

    // discover: root's are never managed nor strays of the user's.
    let found = classes(&sb.run(&["discover", "--json"]).expect_code(0).json());
    for id in &roots {
        let class = found.get(&i64::from(id.pid)).map(String::as_str);
        assert!(
            matches!(class, None | Some("foreign")),
            "root's pid {} is not the user's: {class:?}",
            id.pid
        );
    }
    // ps: only the user's own.
    let listed = ps_pids(&sb.run(&["ps", "--json"]).expect_code(0).json());
    for id in &roots {
        assert!(
            !listed.contains(&i64::from(id.pid)),
            "root's pid {} in the user's ps",
            id.pid
        );
    }
    // adopt: root's stray by pid is refused; --all leaves it where it is.
    sb.run(&[
        "adopt",
        &root.stray.pid().to_string(),
        "--service",
        "worker",
    ])
    .expect_code(5)
    .expect_stderr_contains("uid");
    sb.run(&["adopt", "--all"]);
    assert_eq!(
        cgroup_of(root.stray.pid()),
        stray_cgroup,
        "root's stray was not moved"
    );
    // stop: the user's stack goes, COMPLETE, without waiting on root's, which all survive.
    let started = Instant::now();
    let stopped = sb.run(&["stop", "--json"]);
    let took = started.elapsed();
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    assert!(
        took < Duration::from_secs(5),
        "the user's stop did not wait on root's processes (stop_timeout is 10s): {took:?}\n{report}"
    );
    wait_for("the user's stack to be gone", DEADLINE, || {
        marked_by(&project, sb.user.uid).is_empty()
    });
    for id in &roots {
        assert!(
            survives(id),
            "root's pid {} survives the user's stop",
            id.pid
        );
    }
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn roots_stop_ps_discover_and_adopt_of_the_same_name_leave_the_users_processes_alone() {
    let project = project("mine");
    let tag = format!("tag-{project}");
    let sb = other_sandbox(&project, &tag);
    sb.run(&["run", "--detach"]).expect_code(0);
    let stray = Spawned::of(sb.sh(
        "exec sleep 300",
        &[("CCSCOPE_PROJECT", &project), ("CCSCOPE_SERVICE", "worker")],
    ));
    let uid = sb.user.uid;
    wait_for("the user's stray to start", DEADLINE, || {
        marked_by(&project, uid).contains(&stray.pid())
    });
    let users: Vec<ProcessIdentity> = marked_by(&project, uid).into_iter().map(identity).collect();
    assert!(
        users.len() >= 5,
        "the user's stack and stray run: {users:?}"
    );
    let stray_cgroup = cgroup_of(stray.pid());
    // Root runs its own stack of that name, so its stop has work to do and looks for strays.
    let root_side = RootSide::start(&project, &tag);
    wait_for("root's stray to start", DEADLINE, || {
        marked_by(&project, 0).contains(&root_side.stray.pid())
    });
    let roots = marked_by(&project, 0);
    let root = &root_side.sb;
    let listed = ps_pids(&root.run(&["ps", "--all", "--json"]).expect_code(0).json());
    for id in &users {
        assert!(
            !listed.contains(&i64::from(id.pid)),
            "the user's pid {} in root's ps",
            id.pid
        );
    }
    let found = classes(&root.run(&["discover", "--json"]).expect_code(0).json());
    for id in &users {
        let class = found.get(&i64::from(id.pid)).map(String::as_str);
        assert!(
            matches!(class, None | Some("foreign")),
            "the user's pid {} is not root's: {class:?}",
            id.pid
        );
    }
    root.run(&["adopt", &stray.pid().to_string(), "--service", "worker"])
        .expect_code(5)
        .expect_stderr_contains("uid");
    root.run(&["adopt", "--all"]);
    assert_eq!(
        cgroup_of(stray.pid()),
        stray_cgroup,
        "the user's stray was not moved"
    );

    let started = Instant::now();
    let stopped = root.run(&["stop", "--json"]);
    let took = started.elapsed();
    stopped.expect_code(0);
    let mut report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    // The user's processes are named only as left alone (never as stopped or as survivors).
    let not_ours = report
        .as_object_mut()
        .and_then(|r| r.remove("not_ours"))
        .unwrap_or_default();
    let text = report.to_string();
    wait_for("root's stack to be gone", DEADLINE, || {
        marked_by(&project, 0).is_empty()
    });
    assert!(!roots.is_empty());
    for id in &users {
        assert!(
            survives(id),
            "the user's pid {} survives root's stop",
            id.pid
        );
        assert!(
            !text.contains(&format!("\"pid\":{}", id.pid)),
            "root's stop report does not name the user's pid {}: {report}",
            id.pid
        );
        assert!(
            not_ours
                .to_string()
                .contains(&format!("\"pid\":{}", id.pid))
                || !marked_by(&project, uid).contains(&id.pid),
            "the user's pid {} is named as left alone: {not_ours}",
            id.pid
        );
    }
    assert!(
        took < Duration::from_secs(5),
        "root's stop did not wait on the user's processes (stop_timeout is 10s): {took:?}\n{report}"
    );
    // The user's own stop still ends all of it.
    sb.run(&["stop"]).expect_code(0);
    wait_for("the user's stack to be gone", DEADLINE, || {
        marked_by(&project, uid).is_empty()
    });
}

/// The user's session environment without their terminal: `ccscope run` as the user, started
/// straight from the test's own (root's) cgroup, outside the user manager's tree.
fn outside_the_users_tree(sb: &OtherSandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", sb.user.uid))
        .arg(format!("--regid={}", sb.user.gid))
        .args(["--clear-groups", "env", "-i"]);
    for (k, v) in sb.user.session_env() {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(format!("CCSCOPE_STATE_DIR={}", sb.state_dir().display()))
        .arg(sb.user.ccscope())
        .args(args)
        .current_dir(sb.path())
        .stdin(Stdio::null());
    cmd
}

#[test]
#[ignore = "system test: needs ccscope-other's user manager of scripts/test-env.sh, as root (run scripts/test.sh)"]
fn run_as_the_user_outside_their_managers_tree_says_why_the_scope_failed_and_what_to_do() {
    let project = project("outside");
    let tag = format!("tag-{project}");
    let sb = other_sandbox(&project, &tag);
    let own = cgroup_of(std::process::id() as i32);
    let manager = format!("user@{}.service", sb.user.uid);
    assert!(
        !own.split('/').any(|part| part == manager),
        "the test itself runs outside the user's manager: {own}"
    );
    let args = ["run", "--backend", "systemd"];

    let outside = Ran::of(outside_the_users_tree(&sb, &args));
    outside
        .expect_code(9)
        .expect_stderr_contains(&format!(
            "the user manager ({manager}) cannot move a process out of cgroup {own}, which it \
             does not own"
        ))
        .expect_stderr_contains("run ccscope from a terminal of your desktop session")
        .expect_stderr_contains("systemd-run --user --pty")
        .expect_stderr_contains("--backend cgroupfs");
    assert!(
        !outside.stderr().contains("job failed"),
        "systemd's bare words are explained, not repeated:\n{}",
        outside.stderr()
    );
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was left");

    // The same command from a terminal of the user's, inside their manager's tree, starts.
    let mut run = Foreground::start(sb.command(&args));
    run.wait_line("stack ready");
    assert_in_the_users_tree(&sb, &project, &tag);
    assert_stop_leaves_nothing(&sb, &project, &tag);
    let (code, output) = run.wait_exit();
    assert_eq!(
        code, 0,
        "the run from the terminal exits 0 once stopped:\n{output}"
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}
