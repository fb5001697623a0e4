//! `ccscope run` end to end against the real user manager and cgroupfs: the demo stack comes
//! up in dependency order and `ps` shows it (seed checks 1 and 4); `stop` leaves nothing
//! (seed check 3), also after the supervisor was SIGKILLed or the registry deleted; crashes
//! restart with growing delays and then fail; a crashed dependency takes its dependents down
//! and back; a held port, a second run and a readiness that never comes are refused or
//! stopped cleanly, each with the reason named.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Sandbox, marked, require_test_env, wait_for};

const READY: Duration = Duration::from_secs(30);

fn project(tag: &str) -> String {
    format!("r{}-{tag}", std::process::id())
}

/// A port base for the demo stack no other test of this run shares.
fn port_base(tag: &str) -> u16 {
    let seed = tag
        .bytes()
        .fold(u32::from(std::process::id() as u16), |h, b| {
            h.wrapping_mul(31).wrapping_add(u32::from(b))
        });
    20000 + (seed % 1400) as u16 * 30
}

/// A `ccscope run` in the background whose output lines the test waits on.
struct Supervisor {
    child: Child,
    /// Its output; waits go forward, in order.
    out: common::OutputLines,
    sandbox_state: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: std::path::PathBuf,
}

impl Supervisor {
    fn start(sb: &Sandbox, args: &[&str], env: &[(&str, String)]) -> Supervisor {
        let mut cmd = sb.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start ccscope run");
        let out = common::OutputLines::of(&mut child);
        Supervisor {
            child,
            out,
            sandbox_state: sb.state_dir(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            cwd: sb.path().to_path_buf(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the next output line (after the last one matched) containing every one of
    /// `needles`; returns it.
    fn wait_line(&mut self, needles: &[&str], deadline: Duration) -> String {
        self.out.wait_line(needles, deadline)
    }

    /// Waits for `ccscope run` to exit; returns its code and all it printed.
    fn wait_exit(&mut self, deadline: Duration) -> (i32, String) {
        self.out.wait_exit(&mut self.child, deadline)
    }
}

impl Drop for Supervisor {
    /// A test that failed half-way leaves nothing running: the supervisor is killed by its
    /// pid, and the stack by `ccscope stop --force`.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut stop = std::process::Command::new(env!("CARGO_BIN_EXE_ccscope"));
        let config: Vec<&String> = self.args.iter().take_while(|a| *a != "run").collect();
        stop.args(config)
            .args(["stop", "--force"])
            .current_dir(&self.cwd)
            .env("CCSCOPE_STATE_DIR", &self.sandbox_state)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            stop.env(k, v);
        }
        let _ = stop.status();
    }
}

/// Stops the demo project of a test that has no foreground supervisor, however the test ends.
struct StopOnDrop<'a>(&'a Sandbox, &'a [(&'static str, String)]);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = stop(self.0, &["--profile", "demo"], self.1).code();
    }
}

fn demo_env(project: &str, tag: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CCSCOPE_DEMO_PROJECT", project.to_string()),
        ("CCSCOPE_DEMO_PORT_BASE", port_base(tag).to_string()),
    ]
}

fn ps(sb: &Sandbox, args: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let mut cmd = sb.command(&[args, &["ps", "--json"]].concat());
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Ran::of(cmd).expect_code(0).json()
}

fn stop(sb: &Sandbox, args: &[&str], env: &[(&str, String)]) -> common::Ran {
    let mut cmd = sb.command(&[args, &["stop", "--json"]].concat());
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Ran::of(cmd)
}

/// Seed checks 1, 3 and 4 on one backend.
fn demo_round_trip(backend: &str) {
    require_test_env();
    let project = project(&format!("demo-{backend}"));
    let env = demo_env(&project, backend);
    let sb = Sandbox::new();
    let mut run = Supervisor::start(
        &sb,
        &["--profile", "demo", "-v", "run", "--backend", backend],
        &env,
    );
    // Seed check 4: the order, as planned and as it happened.
    run.wait_line(
        &["start order: clickhouse → telemetry_collector → bridge_sync, dashboard"],
        READY,
    );
    let ready = run.wait_line(&["stack ready"], READY);
    assert!(
        ready
            .contains("started in order clickhouse → telemetry_collector → bridge_sync, dashboard"),
        "{ready}"
    );

    // Seed check 1: ps shows the four services, every process inside its scope.
    let doc = ps(&sb, &["--profile", "demo"], &env);
    let processes = doc["processes"].as_array().unwrap();
    let services: BTreeSet<&str> = processes
        .iter()
        .map(|p| p["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "bridge_sync",
            "clickhouse",
            "dashboard",
            "telemetry_collector"
        ]),
        "{doc}"
    );
    assert!(
        processes.iter().all(|p| p["inside_scope"] == true),
        "every process is inside its scope: {doc}"
    );
    let bridge: Vec<&serde_json::Value> = processes
        .iter()
        .filter(|p| p["service"] == "bridge_sync")
        .collect();
    for helper in ["bridge-sync-worker", "bridge-sync-nohup"] {
        assert!(
            bridge
                .iter()
                .any(|p| p["command_line"].as_str().unwrap().contains(helper)),
            "the double-forked and nohup helpers are found in the scope: {doc}"
        );
    }
    let dashboard_port = port_base(backend) + 10;
    assert!(
        processes
            .iter()
            .any(|p| p["service"] == "dashboard"
                && p["ports"] == serde_json::json!([dashboard_port])),
        "the dashboard's port is listed: {doc}"
    );

    // Seed check 3: stop leaves no process of the project.
    let stopped = stop(&sb, &["--profile", "demo"], &env);
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["supervisor"]["acknowledged"], true, "{report}");
    let (code, output) = run.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code, 0,
        "the supervisor exits 0 once stop took over:\n{output}"
    );
    assert_eq!(
        marked(&project),
        Vec::<i32>::new(),
        "nothing of the project is left"
    );
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn demo_comes_up_in_order_ps_shows_it_and_stop_leaves_nothing_systemd() {
    demo_round_trip("systemd");
}

#[test]
#[ignore = "system test: needs a writable cgroup v2 tree (scripts/test.sh)"]
fn demo_comes_up_in_order_ps_shows_it_and_stop_leaves_nothing_cgroupfs() {
    demo_round_trip("cgroupfs");
}

/// Starts the demo on `backend` and waits until it is ready.
fn demo_ready(
    tag: &str,
    backend: &str,
) -> (Sandbox, Supervisor, String, Vec<(&'static str, String)>) {
    let project = project(tag);
    let env = demo_env(&project, tag);
    let sb = Sandbox::new();
    let mut run = Supervisor::start(
        &sb,
        &["--profile", "demo", "run", "--backend", backend],
        &env,
    );
    run.wait_line(&["stack ready"], READY);
    (sb, run, project, env)
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn after_the_supervisor_is_sigkilled_stop_from_a_fresh_shell_leaves_nothing() {
    require_test_env();
    for backend in ["systemd", "cgroupfs"] {
        let (sb, mut run, project, env) = demo_ready(&format!("kill9-{backend}"), backend);
        ccscope::proc::sys::kill(run.pid(), libc::SIGKILL).unwrap();
        run.wait_exit(Duration::from_secs(10));
        assert!(
            !marked(&project).is_empty(),
            "the stack outlives its supervisor"
        );
        let stopped = stop(&sb, &["--profile", "demo"], &env);
        stopped.expect_code(0);
        assert_eq!(stopped.json()["supervisor"], serde_json::Value::Null);
        assert_eq!(
            marked(&project),
            Vec::<i32>::new(),
            "{backend}: nothing is left"
        );
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn with_the_registry_deleted_stop_still_finds_the_supervisor_and_leaves_nothing() {
    require_test_env();
    let (sb, mut run, project, env) = demo_ready("noregistry", "systemd");
    for file in ["registry.db", "registry.db-wal", "registry.db-shm"] {
        let _ = std::fs::remove_file(sb.state_dir().join(file));
    }
    let stopped = stop(&sb, &["--profile", "demo"], &env);
    stopped.expect_code(0);
    assert_eq!(
        stopped.json()["supervisor"]["acknowledged"],
        true,
        "found by its lock, it stood down: nothing was restarted behind the stop"
    );
    let (code, _) = run.wait_exit(Duration::from_secs(15));
    assert_eq!(code, 0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}

fn stack(project: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n{services}"),
    );
    sb
}

/// The delay of a `restarting in N s` line.
fn delay_of(line: &str) -> f64 {
    let after = line.split("restarting in ").nth(1).expect("a restart line");
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_crashing_service_restarts_with_growing_delays_then_is_failed() {
    require_test_env();
    let project = project("crash");
    let sb = stack(
        &project,
        "[services.crasher]\nshell = \"echo about to crash; exit 3\"\n\
         restart = { policy = \"on-failure\", initial_backoff = \"300ms\", max_backoff = \"5s\", max_restarts = 2 }\n\
         [services.steady]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let mut run = Supervisor::start(&sb, &["-v", "run"], &[]);
    let first = run.wait_line(&["crasher", "restarting in"], READY);
    let second = run.wait_line(&["crasher", "restarting in"], READY);
    let failed = run.wait_line(&["crasher", "failed"], READY);
    assert!(failed.contains("exit code 3"), "{failed}");
    assert!(failed.contains("gave up after 2 restart(s)"), "{failed}");
    let (d1, d2) = (delay_of(&first), delay_of(&second));
    // 300 ms then 600 ms, each ±20%.
    assert!(
        (0.2..=0.4).contains(&d1) && (0.4..=0.8).contains(&d2) && d2 > d1,
        "{first}\n{second}"
    );

    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    let crasher = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "crasher")
        .unwrap()
        .clone();
    assert_eq!(crasher["state"], "failed", "{status}");
    assert_eq!(crasher["restarts"], 2, "{status}");
    let steady = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "steady")
        .unwrap()
        .clone();
    assert_eq!(
        steady["state"], "running",
        "the rest of the stack runs on: {status}"
    );
    stop(&sb, &[], &[]).expect_code(0);
    run.wait_exit(Duration::from_secs(15));
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_crashed_dependency_takes_its_dependents_down_and_back() {
    require_test_env();
    let project = project("cascade");
    let sb = stack(
        &project,
        "[services.db]\ncommand = [\"sleep\", \"300\"]\n\
         restart = { policy = \"on-failure\", initial_backoff = \"200ms\" }\n\
         [services.api]\ncommand = [\"sleep\", \"301\"]\ndepends_on = { db = \"healthy\" }\n",
    );
    let mut run = Supervisor::start(&sb, &["-v", "run"], &[]);
    run.wait_line(&["stack ready"], READY);
    let main_pid = |service: &str| -> i32 {
        let doc = ps(&sb, &[], &[]);
        doc["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["service"] == service && p["registered"] == true)
            .unwrap_or_else(|| panic!("{service} has a registered process: {doc}"))["pid"]
            .as_i64()
            .unwrap() as i32
    };
    let (db, api) = (main_pid("db"), main_pid("api"));
    ccscope::proc::sys::kill(db, libc::SIGKILL).unwrap();
    run.wait_line(&["db", "restarting", "signal SIGKILL"], READY);
    run.wait_line(&["api", "stopping", "depends on `db`"], READY);
    run.wait_line(&["api", "waiting"], READY);
    // Back: db first, then api again.
    run.wait_line(&["db", "running", "ready"], READY);
    run.wait_line(&["api", "running", "ready"], READY);
    assert_ne!(main_pid("api"), api);
    assert_ne!(main_pid("db"), db);
    stop(&sb, &[], &[]).expect_code(0);
    run.wait_exit(Duration::from_secs(15));
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_port_held_by_a_foreign_process_is_refused_with_the_holder_named() {
    require_test_env();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let project = project("port");
    let sb = stack(
        &project,
        &format!("[services.web]\ncommand = [\"sleep\", \"300\"]\nports = [{port}]\n"),
    );
    let ran = sb.run(&["run"]);
    ran.expect_code(5)
        .expect_stderr_contains(&format!("port {port} needed by web is held"))
        .expect_stderr_contains(&format!("pid {}", std::process::id()))
        .expect_stderr_contains("not this project's");
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was started");
    // The holder was never touched.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_second_run_is_refused_naming_the_first() {
    require_test_env();
    let project = project("twice");
    let sb = stack(&project, "[services.web]\ncommand = [\"sleep\", \"300\"]\n");
    let mut first = Supervisor::start(&sb, &["run"], &[]);
    first.wait_line(&["stack ready"], READY);
    sb.run(&["run"])
        .expect_code(5)
        .expect_stderr_contains(&format!(
            "already running under ccscope pid {}",
            first.pid()
        ));
    sb.run(&["run", "--detach"])
        .expect_code(5)
        .expect_stderr_contains(&format!("pid {}", first.pid()));
    stop(&sb, &[], &[]).expect_code(0);
    assert_eq!(first.wait_exit(Duration::from_secs(15)).0, 0);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn readiness_that_never_comes_stops_the_stack_and_names_the_probe() {
    require_test_env();
    for backend in ["systemd", "cgroupfs"] {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = unused.local_addr().unwrap().port();
        drop(unused);
        let project = project(&format!("never-{backend}"));
        let sb = stack(
            &project,
            &format!(
                "[services.db]\ncommand = [\"sleep\", \"300\"]\n\
                 [services.web]\nshell = \"echo booting web; exec sleep 300\"\ndepends_on = [\"db\"]\n\
                 ready = {{ tcp = {port}, interval = \"100ms\", start_timeout = \"1s\" }}\n"
            ),
        );
        let ran = sb.run(&["run", "--backend", backend]);
        ran.expect_code(9)
            .expect_stderr_contains("service `web`")
            .expect_stderr_contains(&format!("tcp 127.0.0.1:{port} did not pass within 1s"))
            .expect_stderr_contains("| booting web")
            .expect_stdout_contains("COMPLETE");
        assert_eq!(
            marked(&project),
            Vec::<i32>::new(),
            "{backend}: db was stopped too"
        );
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_command_that_is_not_found_fails_the_start_naming_its_service_once() {
    require_test_env();
    let project = project("notfound");
    let sb = stack(
        &project,
        "[services.db]\ncommand = [\"sleep\", \"300\"]\n\
         [services.web]\ncommand = [\"no-such-program-anywhere\"]\ndepends_on = [\"db\"]\n",
    );
    let ran = sb.run(&["run", "--backend", "cgroupfs"]);
    ran.expect_code(9)
        .expect_stderr_contains(
            "the stack did not start: service `web`: command `no-such-program-anywhere` was not found in PATH",
        )
        .expect_stdout_contains("COMPLETE");
    let said = ran.stderr();
    assert!(
        !said.contains("service `web`: service `web`"),
        "the service is named once: {said}"
    );
    assert_eq!(marked(&project), Vec::<i32>::new(), "db was stopped too");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn detach_returns_when_ready_and_the_supervisor_runs_as_a_user_service() {
    require_test_env();
    let project = project("detach");
    let env = demo_env(&project, "detach");
    let sb = Sandbox::new();
    let _cleanup = StopOnDrop(&sb, &env);
    let mut cmd = sb.command(&["--profile", "demo", "run", "--detach"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let unit = format!(
        "ccscope-{}.service",
        ccscope::contain::escape_unit_part(&project)
    );
    common::Ran::of(cmd)
        .expect_code(0)
        .expect_stdout_contains(&format!("supervisor started as {unit}"))
        .expect_stdout_contains("stack ready");
    let active = || {
        std::process::Command::new("systemctl")
            .args(["--user", "is-active", &unit])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "active")
            .unwrap_or(false)
    };
    assert!(active(), "systemctl --user shows the supervisor");
    let mut status = sb.command(&["--profile", "demo", "status", "--json"]);
    for (k, v) in &env {
        status.env(k, v);
    }
    let doc = common::Ran::of(status).expect_code(0).json();
    assert!(doc["supervisor_pid"].as_i64().is_some(), "{doc}");
    assert!(
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "running" && s["ready"] == true),
        "{doc}"
    );
    stop(&sb, &["--profile", "demo"], &env).expect_code(0);
    wait_for(
        "the supervisor's unit to go",
        Duration::from_secs(15),
        || !active(),
    );
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn an_earlier_runs_services_are_adopted_back_or_cleaned_never_duplicated() {
    require_test_env();
    let (sb, mut first, project, env) = demo_ready("adopt", "systemd");
    ccscope::proc::sys::kill(first.pid(), libc::SIGKILL).unwrap();
    first.wait_exit(Duration::from_secs(10));
    let before: BTreeSet<i32> = marked(&project).into_iter().collect();

    // Same stack definition: the running services are taken over, none started twice.
    let mut second = Supervisor::start(&sb, &["--profile", "demo", "-v", "run"], &env);
    second.wait_line(&["clickhouse", "adopted back from an earlier run"], READY);
    second.wait_line(&["stack ready"], READY);
    let after: BTreeSet<i32> = marked(&project).into_iter().collect();
    assert_eq!(
        before, after,
        "the same processes run: nothing was duplicated"
    );
    ccscope::proc::sys::kill(second.pid(), libc::SIGKILL).unwrap();
    second.wait_exit(Duration::from_secs(10));

    // --clean stops them first and starts afresh.
    let mut third = Supervisor::start(&sb, &["--profile", "demo", "-v", "run", "--clean"], &env);
    third.wait_line(&["--clean: stopping what an earlier run left"], READY);
    third.wait_line(&["stack ready"], READY);
    let fresh: BTreeSet<i32> = marked(&project).into_iter().collect();
    assert!(
        fresh.is_disjoint(&after),
        "all new processes: {fresh:?} vs {after:?}"
    );
    stop(&sb, &["--profile", "demo"], &env).expect_code(0);
    assert_eq!(third.wait_exit(Duration::from_secs(15)).0, 0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}
