//! Alerts end to end: a notification server written here (a zbus object serving
//! `org.freedesktop.Notifications` on the test session bus) gets one notification for five
//! crashes within the rate-limit window, with the service and reason in its body; an `exec`
//! alert command gets the alert as JSON on its stdin; `desktop = false` sends the server
//! nothing; with no server on the bus the stack runs on and says so once.
//!
//! Only one process can own `org.freedesktop.Notifications`, and nextest runs each test in a
//! process of its own, at once: every test here holds one lock file while it runs, so none
//! sees another's server (or its absence) by mistake.

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::{Sandbox, marked, require_test_env, wait_for};
use zbus::zvariant::OwnedValue;

const DEADLINE: Duration = Duration::from_secs(30);

fn project(tag: &str) -> String {
    format!("al{}-{tag}", std::process::id())
}

/// Held while a test runs: the bus name is one for all of them.
fn notifications_lock() -> std::fs::File {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").expect("the test environment sets it");
    let path = std::path::Path::new(&dir).join("ccscope-test-notifications.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    file
}

/// One Notify call, as the server got it.
#[derive(Debug, Clone)]
struct Received {
    app_name: String,
    summary: String,
    body: String,
    urgency: Option<u8>,
}

struct Server {
    got: Arc<Mutex<Vec<Received>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[expect(clippy::too_many_arguments, reason = "the method as the spec has it")]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let mut got = self.got.lock().unwrap();
        got.push(Received {
            app_name,
            summary,
            body,
            urgency,
        });
        got.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "ccscope-test".into(),
            "ccscope".into(),
            "0".into(),
            "1.2".into(),
        )
    }
}

/// A notification server on the test session bus, in a thread of its own, until dropped.
struct NotificationServer {
    got: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotificationServer {
    fn start() -> NotificationServer {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (up_tx, up) = mpsc::channel();
        let served = got.clone();
        let thread = std::thread::spawn(move || {
            common::runtime().block_on(async move {
                let built = async {
                    zbus::connection::Builder::session()?
                        .name("org.freedesktop.Notifications")?
                        .serve_at("/org/freedesktop/Notifications", Server { got: served })?
                        .build()
                        .await
                }
                .await;
                let connection = match built {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = up_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = up_tx.send(Ok(()));
                let _ = stopped.await;
                drop(connection);
            });
        });
        up.recv_timeout(DEADLINE)
            .expect("the notification server thread answers")
            .expect("claim org.freedesktop.Notifications on the test session bus");
        NotificationServer {
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// What it got for `project` (the body names the project).
    fn for_project(&self, project: &str) -> Vec<Received> {
        let needle = format!("project {project}");
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body.contains(&needle))
            .cloned()
            .collect()
    }
}

impl Drop for NotificationServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `ccscope run` in the background whose output lines the test waits on.
struct Supervisor<'a> {
    sb: &'a Sandbox,
    child: Child,
    out: common::OutputLines,
}

impl<'a> Supervisor<'a> {
    fn start(sb: &'a Sandbox) -> Supervisor<'a> {
        let mut cmd = sb.command(&["-v", "run"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start ccscope run");
        let out = common::OutputLines::of(&mut child);
        Supervisor { sb, child, out }
    }

    /// Waits for the next output line (after the last one matched) containing all `needles`.
    fn wait_line(&mut self, needles: &[&str]) -> String {
        self.out.wait_line(needles, DEADLINE)
    }

    /// `ccscope stop`, then waits for `run` to exit; returns all it printed.
    fn stop(&mut self) -> String {
        self.sb.run(&["stop"]).expect_code(0);
        self.out.wait_exit(&mut self.child, DEADLINE).1
    }
}

impl Drop for Supervisor<'_> {
    /// A test that failed half-way leaves nothing running.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = self.sb.command(&["stop", "--force"]).output();
    }
}

/// A stack with a service that crashes (`echo boom; exit 3`) and restarts quickly up to
/// `max_restarts` times, beside one that runs on; `alerts` is the `[project.alerts]` table.
fn crash_loop(project: &str, max_restarts: u32, alerts: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n{alerts}\n[defaults]\nstop_timeout = \"2s\"\n\
             [services.crasher]\nshell = \"echo boom; exit 3\"\n\
             restart = {{ policy = \"on-failure\", initial_backoff = \"100ms\", \
             max_backoff = \"200ms\", max_restarts = {max_restarts} }}\n\
             [services.steady]\ncommand = [\"sleep\", \"300\"]\n"
        ),
    );
    sb
}

#[test]
#[ignore = "system test: needs the session bus and the user manager (scripts/test.sh)"]
fn five_crashes_within_the_window_are_one_desktop_notification() {
    require_test_env();
    let _lock = notifications_lock();
    let server = NotificationServer::start();
    let project = project("loop");
    let sb = crash_loop(&project, 5, "");
    let mut run = Supervisor::start(&sb);
    for _ in 0..5 {
        run.wait_line(&["crasher", "restarting in"]);
    }
    let failed = run.wait_line(&["crasher", "gave up after 5 restart(s)"]);
    assert!(failed.contains("exit code 3"), "{failed}");
    wait_for("the give-up notification", DEADLINE, || {
        server
            .for_project(&project)
            .iter()
            .any(|r| r.summary.contains("gave up"))
    });
    let output = run.stop();
    let got = server.for_project(&project);
    let crashed: Vec<&Received> = got
        .iter()
        .filter(|r| r.summary == "ccscope: crasher crashed")
        .collect();
    assert_eq!(
        crashed.len(),
        1,
        "five crashes within the window are one notification: {got:#?}\n{output}"
    );
    let crash = crashed[0];
    assert_eq!(crash.app_name, "ccscope");
    assert!(
        crash.body.contains("service crasher") && crash.body.contains("exit code 3"),
        "the body names the service and the reason: {crash:?}"
    );
    assert_eq!(crash.urgency, Some(1), "a crash is normal urgency");
    let gave_up: Vec<&Received> = got
        .iter()
        .filter(|r| r.summary == "ccscope: crasher gave up restarting")
        .collect();
    assert_eq!(gave_up.len(), 1, "{got:#?}");
    assert!(
        gave_up[0].body.contains("gave up after 5 restart(s)"),
        "{got:#?}"
    );
    assert_eq!(gave_up[0].urgency, Some(2), "giving up is critical");
    assert_eq!(got.len(), 2, "nothing else was told: {got:#?}");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the session bus and the user manager (scripts/test.sh)"]
fn an_exec_alert_gets_the_alert_as_json_and_desktop_false_sends_nothing() {
    require_test_env();
    let _lock = notifications_lock();
    let server = NotificationServer::start();
    let project = project("exec");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("alerts.jsonl");
    let script = format!(
        "cat >> '{0}'; echo >> '{0}'; echo exec alert delivered",
        file.display()
    );
    let alerts = format!(
        "[project.alerts]\ndesktop = false\nexec = [\"sh\", \"-c\", {}]\n",
        toml_string(&script)
    );
    let sb = crash_loop(&project, 1, &alerts);
    let mut run = Supervisor::start(&sb);
    run.wait_line(&["crasher", "gave up after 1 restart(s)"]);
    let read = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    wait_for("the exec alerts", DEADLINE, || read().len() >= 2);
    // The supervisor's exit waits for the alerts on their way: what the server got by then is
    // all it will get.
    let output = run.stop();
    let alerts = read();
    assert_eq!(
        alerts.len(),
        2,
        "a crash and a give-up: {alerts:#?}\n{output}"
    );
    let crash = &alerts[0];
    assert_eq!(crash["kind"], "crashed", "{crash}");
    assert_eq!(crash["project"], project.as_str());
    assert_eq!(crash["service"], "crasher");
    assert_eq!(crash["exit_code"], 3);
    assert_eq!(crash["signal"], serde_json::Value::Null);
    assert_eq!(crash["suppressed"], 0);
    assert!(
        crash["reason"].as_str().unwrap().contains("exit code 3"),
        "{crash}"
    );
    assert!(
        crash["run_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{crash}"
    );
    assert!(crash["time"].as_str().unwrap().ends_with('Z'), "{crash}");
    let keys: Vec<&String> = crash.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        9,
        "kind, project, service, reason, run_id, exit_code, signal, time, suppressed: {crash}"
    );
    assert_eq!(alerts[1]["kind"], "gave_up", "{alerts:#?}");
    assert_eq!(alerts[1]["run_id"], crash["run_id"]);
    assert!(
        output.contains("exec alert delivered"),
        "the command's output is in the log:\n{output}"
    );
    assert!(
        server.for_project(&project).is_empty(),
        "desktop = false: {:#?}",
        server.for_project(&project)
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the session bus and the user manager (scripts/test.sh)"]
fn without_a_notification_server_the_stack_runs_on_and_says_so_once() {
    require_test_env();
    let _lock = notifications_lock();
    let project = project("noserver");
    let sb = crash_loop(&project, 2, "");
    let mut run = Supervisor::start(&sb);
    run.wait_line(&["crasher", "gave up after 2 restart(s)"]);
    // The warning is on stderr, the progress on stdout: in either order.
    run.out.rewind();
    run.wait_line(&["desktop alerts are off", "no notification server answers"]);
    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    let steady = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "steady")
        .unwrap()
        .clone();
    assert_eq!(steady["state"], "running", "the stack runs on: {status}");
    let output = run.stop();
    assert_eq!(
        output.matches("desktop alerts are off").count(),
        1,
        "said once, for a crash and a give-up:\n{output}"
    );
    assert!(
        !output.contains("failed to deliver an alert"),
        "no server is not a failure:\n{output}"
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
