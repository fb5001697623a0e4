//! Processes that are not where ccscope put them, end to end as root on the real user manager
//! and cgroup v2 tree: a service's grandchild that moved itself to another cgroup, cleared its
//! environment and took a kernel thread's name is still found (it holds the service's output
//! pipe) and stopped; another user's processes carrying the project's markers are never ours:
//! no survivor of our stop, never waited on, never listed by our `ps`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ccscope::proc::{LivenessProbe, ProcFs, ProcessIdentity};
use common::{Sandbox, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("e{}-{tag}", std::process::id())
}

/// A cgroup the test made outside every scope: what is left in it is killed, and it is
/// removed, however the test ends.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(tag: &str) -> TestCgroup {
        let mount = ccscope::contain::cgroup::v2_mount()
            .expect("read the mounts")
            .expect("a cgroup v2 mount");
        let dir = mount.join(format!("ccscope-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make the test's cgroup");
        TestCgroup(dir)
    }

    /// The path as /proc/PID/cgroup names it.
    fn relative(&self) -> String {
        format!("/{}", self.0.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let cg = ccscope::contain::cgroup::Cgroup::at(&self.0);
        let _ = cg.kill();
        let _ = cg.wait_empty(Duration::from_secs(5));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Stops the sandbox's stack however the test ends (a failed assertion leaves it running).
struct StopAtEnd<'a>(&'a Sandbox);

impl Drop for StopAtEnd<'_> {
    fn drop(&mut self) {
        let _ = self.0.command(&["stop", "--force"]).output();
    }
}

fn cgroup_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

fn rows(doc: &serde_json::Value) -> &Vec<serde_json::Value> {
    doc["processes"].as_array().expect("a processes array")
}

fn row_of(doc: &serde_json::Value, pid: i32) -> Option<&serde_json::Value> {
    rows(doc).iter().find(|p| p["pid"] == pid)
}

#[test]
#[ignore = "system test: needs root, the user manager and a writable cgroup v2 tree (scripts/test.sh)"]
fn a_service_that_escaped_its_cgroup_environment_and_name_is_found_by_its_pipe_and_stopped() {
    escape_then(&["stop", "--json"], "escape");
}

/// The same with `--force`: the scope (and the forwarder, the trail's other end) is killed at
/// once, and the escapee is still found.
#[test]
#[ignore = "system test: needs root, the user manager and a writable cgroup v2 tree (scripts/test.sh)"]
fn a_forced_stop_still_follows_the_pipe_to_an_escaped_process() {
    escape_then(&["stop", "--force", "--json"], "escape-force");
}

/// A service whose grandchild escapes (the recipe), then `stop_args`: COMPLETE, no
/// survivor, the escapee among the strays and gone.
fn escape_then(stop_args: &[&str], tag: &str) {
    require_test_env();
    let project = project(tag);
    let sb = Sandbox::new();
    let cgroup = TestCgroup::new(tag);
    let pid_file = sb.path().join("escaped.pid");
    // The grandchild: it says who it is, moves itself out of the scope, and becomes `sleep`
    // with an empty environment and a kernel thread's argv[0] (bash: dash has no `exec -a`),
    // keeping the service's stdout and stderr.
    let escapee = sb.write(
        "escapee.sh",
        &format!(
            "echo $$ > {pid}\necho $$ > {procs}\n\
             exec env -i bash -c 'exec -a \"[kworker/u8:2]\" sleep 300'\n",
            pid = pid_file.display(),
            procs = cgroup.0.join("cgroup.procs").display(),
        ),
    );
    // The service double-forks: the middle shell exits at once, the grandchild is nobody's.
    let service = sb.write(
        "service.sh",
        &format!(
            "sh -c 'sh {} & exit 0'\nexec sleep 300\n",
            escapee.display()
        ),
    );
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\
             [services.svc]\ncommand = [\"/bin/sh\", \"{}\"]\n",
            service.display()
        ),
    );
    sb.run(&["run", "--detach"]).expect_code(0);
    let _stop = StopAtEnd(&sb);
    let mut escaped = 0;
    wait_for("the grandchild to escape", DEADLINE, || {
        escaped = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        escaped > 0
            && cgroup_of(escaped).as_deref() == Some(cgroup.relative().as_str())
            && ProcFs::default()
                .cmdline(escaped)
                .is_ok_and(|c| c.starts_with("[kworker/u8:2]"))
    });
    let identity = ProcFs::default().identity(escaped).unwrap();
    let environ = std::fs::read(format!("/proc/{escaped}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("CCSCOPE_"),
        "the escapee carries no marker"
    );

    let found = sb.run(&["discover", "--json"]).expect_code(0).json();
    let row =
        row_of(&found, escaped).unwrap_or_else(|| panic!("discover lists {escaped}: {found}"));
    assert_eq!(row["class"], "stray", "{row}");
    assert_eq!(row["service"], "svc", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains("pipe of service `svc`"),
        "the reason names the trail: {reason}"
    );
    let ps = sb.run(&["ps", "--json"]).expect_code(0).json();
    let row = row_of(&ps, escaped).unwrap_or_else(|| panic!("ps lists {escaped}: {ps}"));
    assert_eq!(row["inside_scope"], false, "{row}");
    assert_eq!(row["source"], "discovered", "{row}");

    let report = sb.run(stop_args).expect_code(0).json();
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["survivors"], serde_json::json!([]), "{report}");
    let strays = report["strays"].as_array().unwrap();
    assert!(
        strays
            .iter()
            .any(|s| s["pid"] == escaped && s["service"] == "svc"),
        "the escapee is among the stopped strays: {report}"
    );
    wait_for("the escapee to be gone", DEADLINE, || {
        !ProcFs::default().is_alive(identity)
    });
    assert_eq!(
        std::fs::read_to_string(cgroup.0.join("cgroup.procs")).unwrap(),
        "",
        "nothing is left in the cgroup it fled to"
    );
}

/// Another user's processes, killed by pid however the test ends.
struct Theirs(Vec<Child>);

impl Theirs {
    /// A `sleep` of ccscope-other's carrying `project`'s markers, down to the run id when given.
    fn start(project: &str, service: Option<&str>, run_id: Option<&str>, seconds: u32) -> Child {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=ccscope-other",
            "--regid=ccscope-other",
            "--clear-groups",
            "sleep",
            &seconds.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("CCSCOPE_PROJECT", project);
        match service {
            Some(s) => cmd.env("CCSCOPE_SERVICE", s),
            None => cmd.env_remove("CCSCOPE_SERVICE"),
        };
        if let Some(id) = run_id {
            cmd.env("CCSCOPE_RUN_ID", id);
        }
        cmd.spawn().expect("run setpriv")
    }

    fn pids(&self) -> Vec<i32> {
        self.0.iter().map(|c| c.id() as i32).collect()
    }
}

impl Drop for Theirs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn owner(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The run id in the environment of `pid` (one of our service's processes).
fn run_id_of(pid: i32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"CCSCOPE_RUN_ID="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("our service carries a run id")
}

#[test]
#[ignore = "system test: needs root, the user manager and the user ccscope-other (scripts/test.sh)"]
fn another_users_project_of_the_same_name_is_foreign_to_our_stop_and_ps() {
    another_users_project_is_foreign("theirs", "systemd");
}

/// The process-group backend finds its members by markers alone: another user's process
/// carrying the very same markers (run id included) is still not one of them.
#[test]
#[ignore = "system test: needs root and the user ccscope-other (scripts/test.sh)"]
fn another_users_marked_processes_are_no_members_of_our_process_groups() {
    another_users_project_is_foreign("theirpg", "pgroup");
}

fn another_users_project_is_foreign(tag: &str, backend: &str) {
    require_test_env();
    let project = project(tag);
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[services.web]\ncommand = [\"sleep\", \"300\"]\n"
        ),
    );
    sb.run(&["run", "--detach", "--backend", backend])
        .expect_code(0);
    let _stop = StopAtEnd(&sb);
    let ours = sb.run(&["ps", "--json"]).expect_code(0).json();
    let web = rows(&ours)
        .iter()
        .find(|p| p["service"] == "web")
        .and_then(|p| p["pid"].as_i64())
        .expect("ps lists our web") as i32;
    let run_id = run_id_of(web);
    let theirs = Theirs(vec![
        Theirs::start(&project, Some("web"), Some(&run_id), 303),
        Theirs::start(&project, None, None, 304),
    ]);
    let me = ccscope::proc::sys::euid();
    let mut identities: Vec<ProcessIdentity> = Vec::new();
    wait_for("their processes to run as ccscope-other", DEADLINE, || {
        let procfs = ProcFs::default();
        identities = theirs
            .pids()
            .into_iter()
            .filter(|pid| owner(*pid).is_some_and(|u| u != me))
            .filter(|pid| procfs.cmdline(*pid).is_ok_and(|c| c.starts_with("sleep")))
            .filter_map(|pid| procfs.identity(pid).ok())
            .collect();
        identities.len() == 2
    });

    let ps = sb.run(&["ps", "--json"]).expect_code(0).json();
    assert!(
        rows(&ps)
            .iter()
            .any(|p| p["service"] == "web" && (p["inside_scope"] == true || backend == "pgroup")),
        "our own service is listed: {ps}"
    );
    for pid in theirs.pids() {
        assert!(
            row_of(&ps, pid).is_none(),
            "ps lists another user's pid {pid} as ours: {ps}"
        );
    }
    // discover may name them, as foreign and why.
    let found = sb.run(&["discover", "--json"]).expect_code(0).json();
    for pid in theirs.pids() {
        if let Some(row) = row_of(&found, pid) {
            assert_eq!(row["class"], "foreign", "{row}");
            assert!(row["reason"].as_str().unwrap().contains("uid"), "{row}");
        }
    }

    let stop = sb.run(&["stop", "--json"]);
    stop.expect_code(0);
    let report = stop.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["survivors"], serde_json::json!([]), "{report}");
    let text = report.to_string();
    for pid in theirs.pids() {
        assert!(
            !report["strays"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["pid"] == pid),
            "another user's pid {pid} is no stray of ours: {text}"
        );
    }
    for id in &identities {
        assert!(
            ProcFs::default().is_alive(*id),
            "another user's pid {} is left alone",
            id.pid
        );
    }
}
