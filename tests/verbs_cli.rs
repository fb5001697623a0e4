//! The verbs of a running stack end to end (issue 12), with the built binary against the real
//! user manager, and cgroupfs where marked: `restart` of one service leaves the others' pids
//! alone, and with `restart = true` its dependent comes back after it is ready again; `stop`
//! of one service holds it down through several backoff periods until `start`; `run --only`
//! beside a live supervisor hands the service to it; `reload` changes exactly what changed in
//! the file, refuses a broken one, and SIGHUP does the same; `pause` freezes the cgroup (no
//! CPU time), `resume` thaws it, and `stop` of a paused stack is not slowed; a watched file
//! restarts its service once and an ignored one does nothing; names are checked, a missing
//! supervisor is said, clients at once and a client killed mid-restart leave a whole stack,
//! and the request is audited in the journal with the asking pid.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Ran, Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("vb{}-{tag}", std::process::id())
}

/// A project directory whose stack is stopped (`stop --force`) however the test ends, with
/// the last configuration that parsed written back first, so a test that failed after a
/// broken edit still cleans up.
struct Stack {
    sb: Sandbox,
    project: String,
    good: std::cell::RefCell<String>,
    /// Whether its services run in scopes (every backend but the process groups).
    scoped: std::cell::Cell<bool>,
}

impl Stack {
    /// `services` is the TOML of the `[services.*]` tables; `[project]` and `[defaults]` are
    /// added here.
    fn new(tag: &str, services: &str) -> Stack {
        let project = project(tag);
        let stack = Stack {
            sb: Sandbox::new(),
            project,
            good: std::cell::RefCell::new(String::new()),
            scoped: std::cell::Cell::new(true),
        };
        stack.configure(services);
        stack
    }

    fn toml(&self, services: &str) -> String {
        format!(
            "[project]\nname = \"{}\"\n[defaults]\nstop_timeout = \"5s\"\n\
             restart = {{ policy = \"on-failure\", initial_backoff = \"300ms\" }}\n{services}",
            self.project
        )
    }

    /// Writes a (valid) configuration.
    fn configure(&self, services: &str) {
        let text = self.toml(services);
        self.sb.write("ccscope.toml", &text);
        *self.good.borrow_mut() = text;
    }

    /// Writes a configuration that does not parse; cleanup writes the last good one back.
    fn configure_broken(&self, services: &str) {
        self.sb.write("ccscope.toml", &self.toml(services));
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.sb.run(args)
    }

    fn up(&self, backend: &str, extra: &[&str]) {
        let mut args = vec!["run", "--detach", "--backend", backend];
        args.extend_from_slice(extra);
        self.scoped.set(backend != "pgroup");
        self.run(&args).expect_code(0);
    }

    fn status(&self) -> serde_json::Value {
        self.run(&["status", "--json"]).expect_code(0).json()
    }

    fn supervisor_pid(&self) -> i64 {
        let status = self.status();
        status["supervisor_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("a live supervisor: {status}"))
    }

    fn service_status(&self, service: &str) -> serde_json::Value {
        let status = self.status();
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("no `{service}` in {status}"))
    }

    fn state(&self, service: &str) -> String {
        self.service_status(service)["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Each service's main process (the registered one in its scope), as `ps` lists them.
    fn pids(&self) -> BTreeMap<String, i64> {
        let ps = self.run(&["ps", "--json"]).expect_code(0).json();
        let mut pids = BTreeMap::new();
        for p in ps["processes"].as_array().unwrap() {
            if p["registered"] != true || p["inside_scope"] != self.scoped.get() {
                continue;
            }
            let service = p["service"].as_str().unwrap().to_string();
            let pid = p["pid"].as_i64().unwrap();
            if let Some(other) = pids.insert(service.clone(), pid) {
                panic!("two registered main processes of {service}: {other} and {pid}\n{ps}");
            }
        }
        pids
    }

    /// Waits until `ps` lists exactly `services`, each with a main process; returns the pids.
    fn wait_pids(&self, services: &[&str]) -> BTreeMap<String, i64> {
        let mut pids = BTreeMap::new();
        let want: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        wait_for(&format!("main processes of {want:?}"), DEADLINE, || {
            pids = self.pids();
            pids.keys().cloned().collect::<Vec<_>>() == want
        });
        pids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.sb.write("ccscope.toml", &self.good.borrow());
        let _ = self
            .sb
            .command(&["stop", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
fn stat_field(pid: i64, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    rest.split_whitespace()
        .nth(n - 3)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("field {n} of {stat}"))
}

/// When the process started, in clock ticks since boot.
fn start_ticks(pid: i64) -> u64 {
    stat_field(pid, 22)
}

/// Its CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: i64) -> u64 {
    stat_field(pid, 14) + stat_field(pid, 15)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The process's cgroup directory on the cgroup2 mount (its `0::` line).
fn cgroup_dir(pid: i64) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line in /proc/{pid}/cgroup: {text}"));
    let mount = ccscope::contain::cgroup::v2_mount()
        .unwrap()
        .expect("a cgroup2 mount");
    mount.join(path.trim_start_matches('/'))
}

fn frozen(cgroup: &Path) -> bool {
    let events = std::fs::read_to_string(cgroup.join("cgroup.events"))
        .unwrap_or_else(|e| panic!("read {}/cgroup.events: {e}", cgroup.display()));
    events.lines().any(|l| l == "frozen 1")
}

/// Asserts that for `window` nothing changes `what` (polled): the absence a test waits out.
fn holds_for(what: &str, window: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < window {
        assert!(
            condition(),
            "{what} stopped holding after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reply_services(reply: &serde_json::Value) -> BTreeMap<String, String> {
    reply["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {reply}"))
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A clickhouse-like db that is ready (a line in its log) only 0.4 s after it starts, the
/// bridge and the dashboard on it (the dashboard with `restart = true`), and telemetry alone.
const DEMO: &str = r#"
[services.db]
shell = "sleep 0.4; echo db is up; exec sleep 300"
ready = { log = "db is up", interval = "50ms" }
[services.bridge_sync]
shell = "exec sleep 301"
depends_on = { db = "healthy" }
restart = { policy = "always", initial_backoff = "200ms" }
[services.dashboard]
shell = "exec sleep 302"
depends_on = { db = { condition = "healthy", restart = true } }
[services.telemetry]
shell = "exec sleep 303"
"#;

const ALL4: [&str; 4] = ["bridge_sync", "dashboard", "db", "telemetry"];

fn restart_one_service(backend: &str) {
    require_test_env();
    let stack = Stack::new(&format!("restart-{backend}"), DEMO);
    stack.up(backend, &[]);
    let before = stack.wait_pids(&ALL4);
    let supervisor = stack.supervisor_pid();

    // `restart dashboard`: a new dashboard, the other three untouched.
    let reply = stack
        .run(&["restart", "dashboard", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["verb"], "restart", "{reply}");
    assert_eq!(reply["supervisor_pid"], supervisor, "{reply}");
    assert_eq!(
        reply_services(&reply),
        [("dashboard".to_string(), "restarted".to_string())].into(),
        "{reply}"
    );
    let after = stack.pids();
    assert_ne!(after["dashboard"], before["dashboard"], "a new dashboard");
    assert_eq!(
        reply["services"][0]["pid"], after["dashboard"],
        "the reply names the new pid: {reply}"
    );
    assert!(!alive(before["dashboard"]), "the old dashboard is gone");
    for service in ["bridge_sync", "db", "telemetry"] {
        assert_eq!(after[service], before[service], "{service} keeps its pid");
    }
    assert_eq!(stack.state("dashboard"), "running");

    // `restart db`: the dashboard (restart = true) comes back after the new db is ready;
    // the bridge (a plain dependency) runs on, as does telemetry.
    let reply = stack
        .run(&["restart", "db", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(
        reply_services(&reply),
        [
            ("dashboard".to_string(), "restarted".to_string()),
            ("db".to_string(), "restarted".to_string())
        ]
        .into(),
        "{reply}"
    );
    let again = stack.pids();
    assert_ne!(again["db"], after["db"], "a new db");
    assert_ne!(
        again["dashboard"], after["dashboard"],
        "a new dashboard too"
    );
    assert_eq!(
        again["bridge_sync"], before["bridge_sync"],
        "the bridge runs on"
    );
    assert_eq!(again["telemetry"], before["telemetry"], "telemetry runs on");
    // The db is ready 0.4 s after it starts: a dashboard started only once it was ready
    // started at least that much later than the db.
    let (db, dash) = (start_ticks(again["db"]), start_ticks(again["dashboard"]));
    let gap = ticks_per_second() * 35 / 100;
    assert!(
        dash >= db + gap,
        "the dashboard started {} ticks after the db, before it was ready ({gap} ticks)",
        dash.saturating_sub(db)
    );
    let db_status = stack.service_status("db");
    assert_eq!(db_status["ready"], true, "{db_status}");

    // Restart --all brings everything back with new pids.
    stack.run(&["restart", "--all"]).expect_code(0);
    let all = stack.pids();
    for service in ALL4 {
        assert_ne!(
            all[service], again[service],
            "{service} was restarted by --all"
        );
    }
    assert_eq!(
        stack.supervisor_pid(),
        supervisor,
        "one supervisor throughout"
    );
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn restart_one_service_systemd() {
    restart_one_service("systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn restart_one_service_cgroupfs() {
    restart_one_service("cgroupfs");
}

fn stop_and_start_one_service(backend: &str) {
    require_test_env();
    let stack = Stack::new(&format!("stopstart-{backend}"), DEMO);
    stack.up(backend, &[]);
    let before = stack.wait_pids(&ALL4);
    let supervisor = stack.supervisor_pid();

    let reply = stack
        .run(&["stop", "bridge_sync", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply_services(&reply),
        [("bridge_sync".to_string(), "stopped".to_string())].into(),
        "{reply}"
    );
    assert!(
        !alive(before["bridge_sync"]),
        "the bridge's process is gone"
    );
    // Held down: with `restart = always` and a 200 ms backoff, a second is five backoffs.
    holds_for(
        "the bridge staying stopped, the others running on",
        Duration::from_secs(1),
        || {
            let mut rest = before.clone();
            rest.remove("bridge_sync");
            stack.pids() == rest
        },
    );
    let bridge = stack.service_status("bridge_sync");
    assert_eq!(bridge["state"], "stopped", "{bridge}");
    assert_eq!(bridge["processes"], 0, "its scope is empty: {bridge}");
    assert!(
        bridge["message"]
            .as_str()
            .is_some_and(|m| m.contains("asked by")),
        "status says who stopped it: {bridge}"
    );

    let reply = stack
        .run(&["start", "bridge_sync", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(
        reply_services(&reply),
        [("bridge_sync".to_string(), "started".to_string())].into(),
        "{reply}"
    );
    let after = stack.pids();
    assert_ne!(after["bridge_sync"], before["bridge_sync"], "a new bridge");
    for service in ["dashboard", "db", "telemetry"] {
        assert_eq!(after[service], before[service], "{service} keeps its pid");
    }
    assert_eq!(stack.state("bridge_sync"), "running");

    // `stop db`: its dependents go first, and are said; telemetry runs on.
    let reply = stack.run(&["stop", "db", "--json"]).expect_code(0).json();
    let stopped = reply_services(&reply);
    assert_eq!(
        stopped,
        ["bridge_sync", "dashboard", "db"]
            .map(|s| (s.to_string(), "stopped".to_string()))
            .into(),
        "{reply}"
    );
    let why: BTreeMap<String, String> = reply["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(why["db"], "asked", "{reply}");
    assert!(
        why["dashboard"].contains("db"),
        "the reply says why: {reply}"
    );
    holds_for(
        "db and its dependents staying stopped",
        Duration::from_secs(1),
        || stack.pids() == [("telemetry".to_string(), before["telemetry"])].into(),
    );

    // `start dashboard` brings db back with it (it needs it), not the bridge.
    let reply = stack
        .run(&["start", "dashboard", "--json"])
        .expect_code(0)
        .json();
    let started = reply_services(&reply);
    assert_eq!(
        started.get("dashboard").map(String::as_str),
        Some("started"),
        "{reply}"
    );
    assert_eq!(
        started.get("db").map(String::as_str),
        Some("started"),
        "{reply}"
    );
    let last = stack.wait_pids(&["dashboard", "db", "telemetry"]);
    assert_eq!(last["telemetry"], before["telemetry"]);
    assert_eq!(
        stack.state("bridge_sync"),
        "stopped",
        "the bridge was not asked"
    );
    assert_eq!(stack.supervisor_pid(), supervisor);
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_and_start_one_service_systemd() {
    stop_and_start_one_service("systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_and_start_one_service_cgroupfs() {
    stop_and_start_one_service("cgroupfs");
}

/// The user manager's supervisor units of `project` (by their description: systemd escapes
/// the `-` of a project name in the unit's name), loaded now.
fn supervisor_units(project: &str) -> Vec<String> {
    let out = std::process::Command::new("systemctl")
        .args([
            "--user",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "ccscope-*",
        ])
        .output()
        .expect("run systemctl --user");
    let description = format!("ccscope supervisor of project {project}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_end().ends_with(&description))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn run_only_hands_the_service_to_the_live_supervisor(backend: &str) {
    require_test_env();
    let stack = Stack::new(&format!("handoff-{backend}"), DEMO);
    stack.up(backend, &["--only", "db"]);
    stack.wait_pids(&["db"]);
    let supervisor = stack.supervisor_pid();
    // Detached for systemd, the supervisor is a transient service; else a daemon.
    let units = supervisor_units(&stack.project);
    let want_units = usize::from(backend == "systemd");
    assert_eq!(units.len(), want_units, "supervisor units: {units:?}");

    let ran = stack.run(&["run", "--only", "dashboard"]);
    ran.expect_code(0).expect_stdout_contains("handed to it");
    let pids = stack.wait_pids(&["dashboard", "db"]);
    assert_eq!(stack.supervisor_pid(), supervisor, "the same supervisor");
    assert_eq!(
        supervisor_units(&stack.project),
        units,
        "no second supervisor unit"
    );
    assert!(alive(supervisor), "the supervisor runs on");
    assert_eq!(stack.state("dashboard"), "running");
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", pids["dashboard"])).unwrap();
    // systemd escapes a `-` inside a unit name's part.
    let slice = match backend {
        "systemd" => format!("/ccscope-{}.slice/", stack.project.replace('-', "\\x2d")),
        _ => format!("/ccscope/{}/", stack.project),
    };
    assert!(
        cgroup
            .lines()
            .any(|l| l.starts_with("0::") && l.contains(&slice)),
        "the dashboard's scope is in the project's slice {slice}: {cgroup}"
    );
    // Stopped (held down), `run --only` brings it back in the same supervisor.
    stack.run(&["stop", "dashboard"]).expect_code(0);
    assert_eq!(stack.state("dashboard"), "stopped");
    stack
        .run(&["run", "--only", "dashboard"])
        .expect_code(0)
        .expect_stdout_contains("handed to it");
    let back = stack.wait_pids(&["dashboard", "db"]);
    assert_ne!(back["dashboard"], pids["dashboard"], "a new dashboard");
    assert_eq!(back["db"], pids["db"], "db runs on");
    assert_eq!(stack.state("dashboard"), "running");
    assert_eq!(stack.supervisor_pid(), supervisor);
    // The lock is still the one supervisor's: a second detached run is refused.
    stack
        .run(&["run", "--detach"])
        .expect_code(5)
        .expect_stderr_contains(&format!("already running under ccscope pid {supervisor}"));
    assert_eq!(stack.supervisor_pid(), supervisor);
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn run_only_hands_the_service_to_the_live_supervisor_systemd() {
    run_only_hands_the_service_to_the_live_supervisor("systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn run_only_hands_the_service_to_the_live_supervisor_cgroupfs() {
    run_only_hands_the_service_to_the_live_supervisor("cgroupfs");
}

const RELOAD_BEFORE: &str = r#"
[services.keep]
shell = "exec sleep 310"
[services.change]
shell = "exec sleep 311"
[services.remove]
shell = "exec sleep 312"
[services.hup]
shell = "exec sleep 313"
"#;

const RELOAD_AFTER: &str = r#"
[services.keep]
shell = "exec sleep 310"
[services.change]
shell = "exec sleep 321"
[services.hup]
shell = "exec sleep 313"
[services.added]
shell = "exec sleep 314"
"#;

/// RELOAD_AFTER with `hup` changed, for the SIGHUP.
const RELOAD_HUP: &str = r#"
[services.keep]
shell = "exec sleep 310"
[services.change]
shell = "exec sleep 321"
[services.hup]
shell = "exec sleep 323"
[services.added]
shell = "exec sleep 314"
"#;

/// The project's processes, by their markers (whether or not the configuration parses).
fn marked_set(project: &str) -> std::collections::BTreeSet<i32> {
    marked(project).into_iter().collect()
}

fn command_line(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn reload_changes_exactly_what_changed() {
    require_test_env();
    let stack = Stack::new("reload", RELOAD_BEFORE);
    stack.up("systemd", &[]);
    let before = stack.wait_pids(&["change", "hup", "keep", "remove"]);
    let supervisor = stack.supervisor_pid();
    stack.configure(RELOAD_AFTER);

    // --dry-run: the plan, and nothing done.
    let plan = stack
        .run(&["reload", "--dry-run", "--json"])
        .expect_code(0)
        .json();
    let actions = reply_services(&plan);
    assert_eq!(actions["added"], "added", "{plan}");
    assert_eq!(actions["change"], "changed", "{plan}");
    assert_eq!(actions["remove"], "removed", "{plan}");
    assert_eq!(actions["keep"], "unchanged", "{plan}");
    assert_eq!(actions["hup"], "unchanged", "{plan}");
    assert_eq!(stack.pids(), before, "a dry run changes nothing");

    let reply = stack.run(&["reload", "--json"]).expect_code(0).json();
    assert_eq!(reply["ok"], true, "{reply}");
    let after = stack.wait_pids(&["added", "change", "hup", "keep"]);
    assert_eq!(after["keep"], before["keep"], "keep is untouched");
    assert_eq!(after["hup"], before["hup"], "hup is untouched");
    assert_ne!(after["change"], before["change"], "change was restarted");
    assert_eq!(
        command_line(after["change"]),
        "sleep 321",
        "with its new argv"
    );
    assert!(!alive(before["remove"]), "remove is gone");
    assert!(!alive(before["change"]), "the old change is gone");
    assert_eq!(command_line(after["added"]), "sleep 314");
    let status = stack.status();
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"remove"),
        "status forgets remove: {status}"
    );

    // A broken edit: refused with its location, nothing changed. (`ps` reads the file too,
    // so while it is broken the project's processes are told by their markers.)
    let processes = marked_set(&stack.project);
    stack.configure_broken(&format!("{RELOAD_HUP}[services.broken\n"));
    let broken = stack.run(&["reload"]);
    broken
        .expect_code(3)
        .expect_stderr_contains("ccscope.toml:");
    let located = broken.stderr().lines().any(|l| {
        l.split("ccscope.toml:").nth(1).is_some_and(|rest| {
            let mut parts = rest.split(':');
            parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
                && parts
                    .next()
                    .is_some_and(|n| n.trim().parse::<u32>().is_ok())
        })
    });
    assert!(
        located,
        "the error has file:line:column: {}",
        broken.stderr()
    );
    assert_eq!(
        marked_set(&stack.project),
        processes,
        "a refused reload changes nothing"
    );

    // SIGHUP with the broken file: the supervisor refuses it too, and runs on.
    ccscope::proc::sys::kill(supervisor as i32, libc::SIGHUP).unwrap();
    holds_for(
        "nothing changing after a SIGHUP with a broken file",
        Duration::from_millis(1000),
        || marked_set(&stack.project) == processes,
    );
    assert!(alive(supervisor), "the supervisor runs on");

    // SIGHUP after a good edit reloads: hup gets its new argv, the rest stay.
    stack.configure(RELOAD_HUP);
    ccscope::proc::sys::kill(supervisor as i32, libc::SIGHUP).unwrap();
    let mut hupped = BTreeMap::new();
    wait_for("the SIGHUP to restart hup", DEADLINE, || {
        hupped = stack.pids();
        hupped
            .get("hup")
            .is_some_and(|p| *p != after["hup"] && command_line(*p) == "sleep 323")
    });
    for service in ["added", "change", "keep"] {
        assert_eq!(hupped[service], after[service], "{service} keeps its pid");
    }
    assert_eq!(stack.supervisor_pid(), supervisor);
}

/// A busy loop that ends on SIGTERM, and a calm service beside it.
const PAUSE: &str = r#"
[services.hot]
shell = "trap 'exit 0' TERM; while :; do :; done"
stop_timeout = "20s"
[services.calm]
shell = "exec sleep 330"
"#;

fn pause_freezes_and_stop_is_not_slowed(backend: &str) {
    require_test_env();
    let stack = Stack::new(&format!("pause-{backend}"), PAUSE);
    stack.up(backend, &[]);
    let pids = stack.wait_pids(&["calm", "hot"]);
    let hot = pids["hot"];
    let cgroup = cgroup_dir(hot);
    // It burns CPU before.
    let start = cpu_ticks(hot);
    wait_for("the busy loop to use CPU", DEADLINE, || {
        cpu_ticks(hot) > start
    });

    let reply = stack.run(&["pause", "hot", "--json"]).expect_code(0).json();
    assert_eq!(
        reply_services(&reply),
        [("hot".to_string(), "paused".to_string())].into(),
        "{reply}"
    );
    assert!(frozen(&cgroup), "{} is frozen", cgroup.display());
    let held = cpu_ticks(hot);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cpu_ticks(hot), held, "a frozen loop uses no CPU");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    let procs: Vec<i64> = procs.lines().map(|l| l.parse().unwrap()).collect();
    assert!(procs.contains(&hot), "{procs:?}");
    for pid in procs {
        let state = stat_field_state(pid);
        assert_ne!(state, 'R', "frozen process {pid} of hot does not run");
    }
    assert_eq!(stack.state("hot"), "paused");
    assert_eq!(stack.state("calm"), "running", "only hot is paused");
    assert!(!frozen(&cgroup_dir(pids["calm"])), "calm is not frozen");

    stack.run(&["resume", "hot"]).expect_code(0);
    assert!(!frozen(&cgroup), "thawed");
    wait_for("the loop to use CPU again", DEADLINE, || {
        cpu_ticks(hot) > held
    });
    assert_eq!(stack.state("hot"), "running");
    assert_eq!(stack.pids(), pids, "pause and resume keep the pids");

    // Paused (all), then stopped: nothing left, well within the 20 s stop timeout.
    stack.run(&["pause"]).expect_code(0);
    assert!(frozen(&cgroup), "pause with no names freezes hot too");
    assert_eq!(stack.state("calm"), "paused");
    let began = Instant::now();
    stack.run(&["stop"]).expect_code(0);
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "stop of a paused stack took {took:?}"
    );
    assert!(
        marked(&stack.project).is_empty(),
        "nothing is left: {:?}",
        marked(&stack.project)
    );
    assert!(!alive(hot));
    wait_for(
        &format!("{} to be removed", cgroup.display()),
        DEADLINE,
        || !cgroup.exists(),
    );
}

fn stat_field_state(pid: i64) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn pause_freezes_and_stop_is_not_slowed_systemd() {
    pause_freezes_and_stop_is_not_slowed("systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn pause_freezes_and_stop_is_not_slowed_cgroupfs() {
    pause_freezes_and_stop_is_not_slowed("cgroupfs");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn pause_on_the_process_group_backend_says_it_cannot() {
    require_test_env();
    let stack = Stack::new("pause-pgroup", PAUSE);
    stack.up("pgroup", &[]);
    let pids = stack.wait_pids(&["calm", "hot"]);
    let ran = stack.run(&["pause", "hot"]);
    ran.expect_code(6)
        .expect_stderr_contains("process-group backend cannot pause");
    let held = cpu_ticks(pids["hot"]);
    wait_for("the loop to go on using CPU", DEADLINE, || {
        cpu_ticks(pids["hot"]) > held
    });
    assert_eq!(stack.pids(), pids, "nothing was restarted");
}

const WATCH: &str = r#"
[services.web]
shell = "exec sleep 340"
watch = { paths = ["src/**/*.py"], ignore = ["**/ignored/**"], debounce = "200ms" }
[services.other]
shell = "exec sleep 341"
"#;

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn a_watched_file_restarts_its_service_once() {
    require_test_env();
    let stack = Stack::new("watch", WATCH);
    let app = stack.sb.write("src/app/main.py", "print(1)\n");
    let ignored = stack.sb.write("src/ignored/x.py", "print(1)\n");
    let git = stack.sb.write("src/.git/hooks/x.py", "print(1)\n");
    stack.up("systemd", &[]);
    let before = stack.wait_pids(&["other", "web"]);

    // An ignored file, and one under `.git`: nothing, for well over the debounce.
    std::fs::write(&ignored, "print(2)\n").unwrap();
    std::fs::write(&git, "print(2)\n").unwrap();
    holds_for(
        "an ignored change doing nothing",
        Duration::from_secs(1),
        || stack.pids() == before,
    );

    // A watched one: web once, other untouched.
    std::fs::write(&app, "print(2)\n").unwrap();
    let mut after = BTreeMap::new();
    wait_for("the change to restart web", DEADLINE, || {
        after = stack.pids();
        after.get("web").is_some_and(|p| *p != before["web"])
    });
    assert_eq!(after["other"], before["other"], "other is untouched");
    holds_for(
        "no second restart for one change",
        Duration::from_secs(1),
        || stack.pids() == after,
    );
    let web = stack.service_status("web");
    assert!(
        web["last_trigger"]
            .as_str()
            .is_some_and(|t| t.contains("src/app/main.py")),
        "status names the file: {web}"
    );
    assert_eq!(web["state"], "running", "{web}");

    // A file in directories made after the start is watched too; a burst of changes to it
    // (closer together than the debounce) is one restart.
    let deep = stack.sb.write("src/new/deep/m.py", "print(1)\n");
    let mut made = BTreeMap::new();
    wait_for("the new file to restart web", DEADLINE, || {
        made = stack.pids();
        made.get("web").is_some_and(|p| *p != after["web"])
    });
    holds_for(
        "one restart for the new file",
        Duration::from_millis(600),
        || stack.pids() == made,
    );
    for n in 0..8 {
        std::fs::write(&deep, format!("print({n})\n")).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut burst = BTreeMap::new();
    wait_for("the burst to restart web", DEADLINE, || {
        burst = stack.pids();
        burst.get("web").is_some_and(|p| *p != made["web"])
    });
    holds_for("one restart for the burst", Duration::from_secs(1), || {
        stack.pids() == burst
    });
    assert_eq!(burst["other"], before["other"], "other is untouched");
    let web = stack.service_status("web");
    assert!(
        web["last_trigger"]
            .as_str()
            .is_some_and(|t| t.contains("src/new/deep/m.py")),
        "status names the last file: {web}"
    );
}

/// dashboard and telemetry as the demo's, and `slow`, whose stop takes a second and which
/// says when it began (its `stopping` file).
const BEHAVIOUR: &str = r#"
[services.dashboard]
shell = "exec sleep 350"
[services.telemetry]
shell = "exec sleep 351"
[services.slow]
shell = "trap 'echo > stopping; sleep 1; exit 0' TERM; while :; do sleep 0.05; done"
"#;

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn names_a_missing_supervisor_clients_at_once_and_a_killed_client() {
    require_test_env();
    let stack = Stack::new("behaviour", BEHAVIOUR);

    // No supervisor yet: restart says so, and how to start one.
    stack
        .run(&["restart", "dashboard"])
        .expect_code(10)
        .expect_stderr_contains("no supervisor runs project")
        .expect_stderr_contains("ccscope run --detach");

    // `start` with no supervisor starts one, for those services only.
    stack
        .run(&["start", "dashboard", "--backend", "systemd"])
        .expect_code(0)
        .expect_stdout_contains("starting one for dashboard");
    let supervisor = stack.supervisor_pid();
    stack.wait_pids(&["dashboard"]);
    assert_eq!(
        stack.state("telemetry"),
        "stopped",
        "only dashboard was asked"
    );
    // Then `start` hands the others to it.
    let reply = stack
        .run(&["start", "telemetry", "slow", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(reply["supervisor_pid"], supervisor, "{reply}");
    let before = stack.wait_pids(&["dashboard", "slow", "telemetry"]);
    assert_eq!(stack.supervisor_pid(), supervisor, "one supervisor");

    // A typo asks nothing.
    stack
        .run(&["restart", "dashbord"])
        .expect_code(2)
        .expect_stderr_contains("did you mean `dashboard`?");
    assert_eq!(stack.pids(), before, "the typo restarted nothing");

    // Two clients at once: both answered, both done.
    let clients: Vec<_> = ["dashboard", "telemetry", "dashboard"]
        .into_iter()
        .map(|service| {
            let cmd = stack.sb.command(&["restart", service, "--json"]);
            std::thread::spawn(move || Ran::of(cmd))
        })
        .collect();
    for client in clients {
        let ran = client.join().unwrap();
        ran.expect_code(0);
        assert_eq!(ran.json()["ok"], true, "{}", ran.stdout());
    }
    let after = stack.pids();
    assert_ne!(after["dashboard"], before["dashboard"]);
    assert_ne!(after["telemetry"], before["telemetry"]);
    assert_eq!(after["slow"], before["slow"]);
    assert_eq!(stack.state("dashboard"), "running");
    assert_eq!(stack.state("telemetry"), "running");

    // A client killed while slow is stopping: slow still comes back.
    let stopping = stack.sb.path().join("stopping");
    let mut client = stack
        .sb
        .command(&["restart", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client_pid = client.id();
    wait_for("slow's stop to begin", DEADLINE, || stopping.exists());
    client.kill().unwrap();
    client.wait().unwrap();
    let mut back = BTreeMap::new();
    wait_for("slow to come back up", DEADLINE, || {
        back = stack.pids();
        back.get("slow").is_some_and(|p| *p != after["slow"]) && stack.state("slow") == "running"
    });
    assert!(!alive(after["slow"]), "the old slow is gone");
    assert_eq!(back["dashboard"], after["dashboard"]);
    assert_eq!(back["telemetry"], after["telemetry"]);

    // The killed client's request is in the journal, with its pid.
    let entry = common::wait_for_journal_entry(
        "the audit event of the killed client's restart",
        &[
            "CCSCOPE_EVENT=control.request".to_string(),
            format!("CCSCOPE_PROJECT={}", stack.project),
            format!("CCSCOPE_ACTOR_PID={client_pid}"),
        ],
    );
    assert_eq!(entry["CCSCOPE_VERB"], "restart", "{entry}");
    assert_eq!(entry["CCSCOPE_SERVICES"], "slow", "{entry}");
    assert!(
        entry["CCSCOPE_ACTOR_CMDLINE"]
            .as_str()
            .is_some_and(|c| c.ends_with("restart slow")),
        "{entry}"
    );
    // And slow's transitions name who asked for them.
    let asked = format!(
        "asked by uid {} pid {client_pid} ",
        rustix::process::geteuid().as_raw()
    );
    let transitions = common::journal_entries(&[
        "CCSCOPE_EVENT=service.stopping".to_string(),
        format!("CCSCOPE_PROJECT={}", stack.project),
        "CCSCOPE_SERVICE=slow".to_string(),
        "CCSCOPE_STATE=stopping".to_string(),
    ]);
    assert!(
        transitions
            .iter()
            .any(|e| e["MESSAGE"].as_str().is_some_and(|m| m.contains(&asked))),
        "a `stopping` of slow {asked}: {transitions:?}"
    );
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn a_verb_racing_a_stop_is_refused() {
    require_test_env();
    let stack = Stack::new("racing", BEHAVIOUR);
    stack.up("systemd", &[]);
    stack.wait_pids(&["dashboard", "slow", "telemetry"]);
    let stopping = stack.sb.path().join("stopping");
    let mut stop = stack
        .sb
        .command(&["stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("slow's stop to begin", DEADLINE, || stopping.exists());
    for verb in [
        &["restart", "dashboard"][..],
        &["start", "dashboard"],
        &["stop", "telemetry"],
        &["pause"],
        &["reload"],
    ] {
        stack
            .run(verb)
            .expect_code(5)
            .expect_stderr_contains("the stack is being stopped: nothing was changed");
    }
    let status = stop.wait().unwrap();
    assert!(status.success(), "the stop ends well: {status:?}");
    // Nothing was started behind the stop.
    assert!(
        marked(&stack.project).is_empty(),
        "nothing is left: {:?}",
        marked(&stack.project)
    );
}
