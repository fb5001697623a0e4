//! ccscope's own D-Bus interface end to end (issue 14), driven the way a person would, with
//! `busctl` and `gdbus` against the real session bus: the supervisor owns
//! `dev.ccscope.Project.<project>` and introspects as `dbus/dev.ccscope.Project1.xml` says;
//! `Restart` restarts one service (a new pid, the other's left alone) and a name it does not
//! know is a `dev.ccscope.Project1.Error.UnknownService`; `get-property` reads each service's
//! state; `Pause`/`Resume` freeze and thaw, a `Reload` of a broken file is a `...Error.Config`
//! with its location, a `Stop` of nothing is `...Error.Invalid`; a monitor sees `ServiceStateChanged` (and `PropertiesChanged`) when a service
//! crashes; `StopProject` answers with the stop report, `StopFinished` is seen and nothing of
//! the project is left; a call from another uid is refused (on a bus both users may join,
//! so the refusal is the supervisor's, not the bus daemon's); and without a bus the
//! supervisor warns once and runs on.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{OtherUser, OutputLines, Ran, Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

const INTERFACE: &str = "dev.ccscope.Project1";

/// A stack of two plain services, stopped (`stop --force`) however the test ends.
struct Stack {
    sb: Sandbox,
    project: String,
    /// The bus the test talks to (the session bus unless a test brings its own).
    address: Option<String>,
}

impl Stack {
    fn new(tag: &str) -> Stack {
        let project = format!("db{}-{tag}", std::process::id());
        let sb = Sandbox::new();
        sb.write(
            "ccscope.toml",
            &format!(
                "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"5s\"\n\
                 restart = {{ policy = \"on-failure\", initial_backoff = \"300ms\" }}\n\
                 [services.dashboard]\ncommand = [\"sleep\", \"300\"]\nports = [18431]\n\
                 [services.worker]\ncommand = [\"sleep\", \"300\"]\n"
            ),
        );
        Stack {
            sb,
            project,
            address: None,
        }
    }

    fn name(&self) -> String {
        ccscope::dbus::bus_name(&self.project).unwrap()
    }

    fn path(&self) -> String {
        ccscope::dbus::object_path(&self.project)
    }

    fn ccscope(&self, args: &[&str]) -> Command {
        let mut cmd = self.sb.command(args);
        if let Some(address) = &self.address {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", address);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Ran {
        Ran::of(self.ccscope(args))
    }

    fn up(&self, backend: &str) {
        self.run(&["run", "--detach", "--backend", backend])
            .expect_code(0);
    }

    /// `busctl --user ARGS` (or on the test's own bus).
    fn busctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("busctl");
        match &self.address {
            Some(address) => cmd.arg(format!("--address={address}")),
            None => cmd.arg("--user"),
        };
        cmd.args(args);
        cmd
    }

    /// `busctl call NAME PATH dev.ccscope.Project1 METHOD ARGS`.
    fn call(&self, method: &str, args: &[&str]) -> Ran {
        let (name, path) = (self.name(), self.path());
        let mut all = vec!["call", &name, &path, INTERFACE, method];
        all.extend_from_slice(args);
        Ran::of(self.busctl(&all))
    }

    /// A property, as `busctl --json=short get-property` gives its value.
    fn property(&self, property: &str) -> serde_json::Value {
        let (name, path) = (self.name(), self.path());
        let ran = Ran::of(self.busctl(&[
            "--json=short",
            "get-property",
            &name,
            &path,
            INTERFACE,
            property,
        ]));
        ran.expect_code(0);
        ran.json()["data"].clone()
    }

    /// The `Services` row of `service`: [name, state, ready, restarts, pids, ports, reason].
    fn service_row(&self, service: &str) -> serde_json::Value {
        let services = self.property("Services");
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row[0] == service)
            .cloned()
            .unwrap_or_else(|| panic!("no `{service}` in Services: {services}"))
    }

    /// Each service's registered main process, as `ps --json` lists them.
    fn pids(&self) -> BTreeMap<String, i64> {
        let ps = self.run(&["ps", "--json"]).expect_code(0).json();
        ps["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["registered"] == true && p["inside_scope"] == true)
            .map(|p| {
                (
                    p["service"].as_str().unwrap().to_string(),
                    p["pid"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    fn wait_pids(&self) -> BTreeMap<String, i64> {
        let mut pids = BTreeMap::new();
        wait_for("both services' main processes", DEADLINE, || {
            pids = self.pids();
            pids.len() == 2
        });
        pids
    }

    /// `busctl monitor NAME --json=short`, once it says it is monitoring.
    fn monitor(&self) -> (Child, OutputLines) {
        let name = self.name();
        let mut child = self
            .busctl(&["--json=short", "monitor", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run busctl monitor");
        let mut lines = OutputLines::of(&mut child);
        lines.wait_line(&["Monitoring bus message stream"], DEADLINE);
        (child, lines)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self
            .ccscope(&["stop", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Ends a child of the test (a monitor, a bus daemon) by its pid, and reaps it.
fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The next message of a `--json=short` monitor that is the signal `member`, with `first` as
/// its first argument.
fn wait_signal(lines: &mut OutputLines, member: &str, first: &str) -> serde_json::Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines.wait_line(&[&format!("\"member\":\"{member}\"")], left);
        let message: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a monitor line that is not JSON ({e}): {line}"));
        let data = &message["payload"]["data"];
        if first.is_empty() || data[0] == first {
            return data.clone();
        }
    }
}

/// The `<interface>` element of an introspection, each line trimmed, comments left out
/// (the live object's XML and the file's differ only in them, if at all).
fn interface_lines(xml: &str) -> Vec<String> {
    let start = xml
        .find(&format!("<interface name=\"{INTERFACE}\">"))
        .unwrap_or_else(|| panic!("no {INTERFACE} in:\n{xml}"));
    let end = start + xml[start..].find("</interface>").unwrap();
    let body = &xml[start..end];
    let mut out = Vec::new();
    let mut in_comment = false;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("<!--") {
            in_comment = !line.ends_with("-->");
            continue;
        }
        if in_comment {
            in_comment = !line.ends_with("-->");
            continue;
        }
        out.push(line.to_string());
    }
    out
}

#[test]
#[ignore = "system test: needs the real user manager and session bus (scripts/test.sh)"]
fn busctl_introspects_the_interface_as_the_shipped_xml_describes_it() {
    require_test_env();
    let stack = Stack::new("intro");
    stack.up("systemd");
    let (name, path) = (stack.name(), stack.path());
    let listed = Ran::of(stack.busctl(&["list", "--no-pager"]));
    listed.expect_code(0).expect_stdout_contains(&name);
    let ran = Ran::of(stack.busctl(&["introspect", "--no-pager", &name, &path]));
    ran.expect_code(0);
    for member in [
        INTERFACE,
        ".Restart",
        ".StopProject",
        ".Services",
        "a(ssbuauaqs)",
        ".ServiceStateChanged",
        ".StackReady",
        ".StopFinished",
    ] {
        ran.expect_stdout_contains(member);
    }
    let xml = Ran::of(stack.busctl(&["introspect", "--xml-interface", &name, &path]));
    xml.expect_code(0);
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/dev.ccscope.Project1.xml"),
    )
    .unwrap();
    assert_eq!(
        interface_lines(&xml.stdout()),
        interface_lines(&shipped),
        "the live object and dbus/dev.ccscope.Project1.xml differ"
    );
    assert_eq!(stack.property("Project"), stack.project.as_str());
}

#[test]
#[ignore = "system test: needs the real user manager and session bus (scripts/test.sh)"]
fn restart_over_the_bus_gives_the_service_a_new_pid_and_properties_say_its_state() {
    require_test_env();
    let stack = Stack::new("restart");
    stack.up("systemd");
    let before = stack.wait_pids();
    assert_eq!(stack.property("State"), "running");
    let row = stack.service_row("dashboard");
    assert_eq!(row[1], "running", "{row}");
    assert_eq!(row[2], true, "ready: {row}");
    assert_eq!(row[5], serde_json::json!([18431]), "ports: {row}");
    assert!(
        row[4]
            .as_array()
            .unwrap()
            .contains(&before["dashboard"].into()),
        "the main pid {} among the pids: {row}",
        before["dashboard"]
    );

    let ran = stack.call("Restart", &["as", "1", "dashboard"]);
    ran.expect_code(0);
    // busctl prints `s "<the reply as JSON>"`: the reply `ccscope restart --json` prints.
    let out = ran.stdout();
    let quoted = out.trim().strip_prefix("s ").expect("a string reply");
    let reply: serde_json::Value =
        serde_json::from_str(&serde_json::from_str::<String>(quoted).unwrap()).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["verb"], "restart", "{reply}");
    let after = stack.wait_pids();
    assert_ne!(
        after["dashboard"], before["dashboard"],
        "dashboard has a new pid"
    );
    assert_eq!(after["worker"], before["worker"], "worker was left alone");
    assert_eq!(reply["services"][0]["pid"], after["dashboard"], "{reply}");
    let row = stack.service_row("dashboard");
    assert_eq!(row[1], "running", "{row}");
    assert!(
        row[4]
            .as_array()
            .unwrap()
            .contains(&after["dashboard"].into()),
        "the new pid among the pids: {row}"
    );
    let status = stack.run(&["status", "--json"]).expect_code(0).json();
    assert_eq!(
        status["supervisor_pid"], reply["supervisor_pid"],
        "{status}"
    );

    // A name the stack does not have: the supervisor's refusal, by its D-Bus error name.
    let wrong = gdbus(&stack, "Restart", &["['nope']"]);
    assert_ne!(wrong.code(), 0);
    wrong
        .expect_stderr_contains("dev.ccscope.Project1.Error.UnknownService")
        .expect_stderr_contains("`nope` is not a service of this stack");
    assert_eq!(stack.pids(), after, "a refused call changes nothing");
}

/// `gdbus call` of a method of the interface: its exit code and what it printed.
fn gdbus(stack: &Stack, method: &str, args: &[&str]) -> Ran {
    let mut cmd = Command::new("gdbus");
    cmd.args([
        "call",
        "--session",
        "--dest",
        &stack.name(),
        "--object-path",
        &stack.path(),
        "--method",
        &format!("{INTERFACE}.{method}"),
    ])
    .args(args);
    Ran::of(cmd)
}

#[test]
#[ignore = "system test: needs the real user manager and session bus (scripts/test.sh)"]
fn pause_resume_and_a_broken_reload_over_the_bus() {
    require_test_env();
    let stack = Stack::new("pause");
    stack.up("systemd");
    let before = stack.wait_pids();
    stack.call("Pause", &["as", "1", "worker"]).expect_code(0);
    assert_eq!(stack.service_row("worker")[1], "paused");
    assert_eq!(stack.service_row("dashboard")[1], "running");
    stack.call("Resume", &["as", "0"]).expect_code(0);
    assert_eq!(stack.service_row("worker")[1], "running");
    // A file that does not parse: the supervisor's refusal, by name, and nothing changes.
    let good = std::fs::read_to_string(stack.sb.path().join("ccscope.toml")).unwrap();
    stack.sb.write(
        "ccscope.toml",
        &format!("{good}\n[services.broken]\ncommand = 3\n"),
    );
    let refused = gdbus(&stack, "Reload", &[]);
    stack.sb.write("ccscope.toml", &good);
    assert_ne!(refused.code(), 0);
    refused.expect_stderr_contains("dev.ccscope.Project1.Error.Config");
    refused.expect_stderr_contains("ccscope.toml:");
    // Start and Stop name what they act on.
    gdbus(&stack, "Stop", &["[]"]).expect_stderr_contains("dev.ccscope.Project1.Error.Invalid");
    assert_eq!(stack.pids(), before, "nothing was restarted");
}

#[test]
#[ignore = "system test: needs the real user manager and session bus (scripts/test.sh)"]
fn a_monitor_sees_service_state_changed_when_a_service_crashes() {
    require_test_env();
    let stack = Stack::new("crash");
    stack.up("systemd");
    let before = stack.wait_pids();
    let (monitor, mut lines) = stack.monitor();
    let pid = before["dashboard"] as i32;
    // SAFETY: kill(2) on a pid the registry names as the dashboard's main process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let changed = wait_signal(&mut lines, "ServiceStateChanged", "dashboard");
    assert_eq!(changed[1], "restarting", "{changed}");
    assert!(
        changed[2].as_str().unwrap().contains("SIGKILL"),
        "the reason names the signal: {changed}"
    );
    // Generic tools hear it too.
    let props = wait_signal(&mut lines, "PropertiesChanged", INTERFACE);
    assert!(props[1]["Services"].is_object(), "{props}");
    // And it comes back, with a new pid.
    let back = wait_signal(&mut lines, "ServiceStateChanged", "dashboard");
    assert_ne!(back[1], "restarting", "{back}");
    wait_for("dashboard running again", DEADLINE, || {
        stack.service_row("dashboard")[1] == "running"
    });
    assert_eq!(stack.service_row("dashboard")[3], 1, "one restart counted");
    end(monitor);
}

#[test]
#[ignore = "system test: needs the real user manager and session bus (scripts/test.sh)"]
fn stop_project_answers_with_the_report_and_leaves_nothing() {
    require_test_env();
    let stack = Stack::new("stop");
    stack.up("systemd");
    stack.wait_pids();
    let (monitor, mut lines) = stack.monitor();
    let ran = stack.call("StopProject", &[]);
    ran.expect_code(0);
    let out = ran.stdout();
    let quoted = out.trim().strip_prefix("s ").expect("a string reply");
    let report: serde_json::Value =
        serde_json::from_str(&serde_json::from_str::<String>(quoted).unwrap()).unwrap();
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["project"], stack.project.as_str(), "{report}");
    assert_eq!(report["services"].as_array().unwrap().len(), 2, "{report}");
    let finished = wait_signal(&mut lines, "StopFinished", "");
    let signalled: serde_json::Value = serde_json::from_str(finished[0].as_str().unwrap()).unwrap();
    assert_eq!(signalled["outcome"], "complete", "{signalled}");
    end(monitor);
    assert!(
        marked(&stack.project).is_empty(),
        "nothing of the project is left"
    );
    wait_for("the supervisor's name to be released", DEADLINE, || {
        !Ran::of(stack.busctl(&["list", "--no-pager"]))
            .stdout()
            .contains(&stack.name())
    });
}

/// A private bus daemon both users may connect to: on the session buses of the test
/// environment, each daemon turns the other user away before any call is made.
struct SharedBus {
    daemon: Option<Child>,
    address: String,
    _dir: tempfile::TempDir,
}

impl SharedBus {
    fn start() -> SharedBus {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>\
                 <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
                 <allow own=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run dbus-daemon");
        // It prints its address once it listens.
        let mut line = String::new();
        std::io::BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the bus daemon's address");
        assert!(line.starts_with("unix:"), "dbus-daemon said {line:?}");
        SharedBus {
            daemon: Some(daemon),
            address: format!("unix:path={}", socket.display()),
            _dir: dir,
        }
    }
}

impl Drop for SharedBus {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            end(daemon);
        }
    }
}

#[test]
#[ignore = "system test: needs the test environment's other user (scripts/test.sh)"]
fn a_call_from_another_uid_is_refused() {
    require_test_env();
    let other = OtherUser::from_env();
    let bus = SharedBus::start();
    let mut stack = Stack::new("uid");
    stack.address = Some(bus.address.clone());
    // cgroupfs: the systemd backend would look for the user manager on this bus.
    stack.up("cgroupfs");
    let before = stack.wait_pids();
    let as_other = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            format!("--reuid={}", other.uid),
            format!("--regid={}", other.gid),
            "--clear-groups".into(),
            "env".into(),
            "-i".into(),
            "busctl".into(),
            format!("--address={}", bus.address),
        ])
        .args(args);
        Ran::of(cmd)
    };
    let (name, path) = (stack.name(), stack.path());
    // The other user reaches the bus (the daemon lets them in)...
    as_other(&["list", "--no-pager"])
        .expect_code(0)
        .expect_stdout_contains(&name);
    // ...and the supervisor turns them away.
    let refused = as_other(&[
        "call",
        &name,
        &path,
        INTERFACE,
        "Restart",
        "as",
        "1",
        "dashboard",
    ]);
    assert_ne!(refused.code(), 0);
    refused.expect_stderr_contains(&format!("uid {} may not control project", other.uid));
    let read = as_other(&["get-property", &name, &path, INTERFACE, "Services"]);
    assert_ne!(read.code(), 0);
    // sd-bus says org.freedesktop.DBus.Error.AccessDenied in its own words.
    read.expect_stderr_contains("Access denied");
    let stop = as_other(&["call", &name, &path, INTERFACE, "StopProject"]);
    assert_ne!(stop.code(), 0);
    assert_eq!(stack.pids(), before, "nothing was restarted or stopped");
    // The supervisor's own user is served on the same bus.
    stack
        .call("Restart", &["as", "1", "dashboard"])
        .expect_code(0);
    assert_ne!(stack.wait_pids()["dashboard"], before["dashboard"]);
}

#[test]
#[ignore = "system test: needs the test environment (scripts/test.sh)"]
fn without_a_bus_the_supervisor_warns_once_and_runs_on() {
    require_test_env();
    let mut stack = Stack::new("nobus");
    stack.address = Some("unix:path=/nonexistent/ccscope-test-bus".into());
    let mut child = stack
        .ccscope(&["run", "--backend", "cgroupfs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the supervisor");
    let mut lines = OutputLines::of(&mut child);
    lines.wait_line(&["stack ready"], DEADLINE);
    assert_eq!(stack.pids().len(), 2, "both services run");
    // SAFETY: SIGTERM to the supervisor this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let (code, output) = lines.wait_exit(&mut child, DEADLINE);
    assert_eq!(code, 0, "{output}");
    let warnings = output
        .lines()
        .filter(|l| l.contains("D-Bus interface"))
        .count();
    assert_eq!(warnings, 1, "one warning about the bus:\n{output}");
    assert!(
        output.contains("is not exported") && output.contains("runs on without it"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    assert!(marked(&stack.project).is_empty(), "nothing left");
}
