//! Discovery and adoption end to end, on real processes, real procfs and the real user
//! manager: strays started by hand (setsid, nohup, double fork, another cgroup, with and
//! without markers) are found and classified; a dashboard started by hand on 9999 is named by
//! its command line (seed check 2); after `adopt`, `stop` leaves nothing; a foreign process on
//! a needed port, a process whose pid was reused, and another user's process are never
//! touched.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("d{}-{tag}", std::process::id())
}

/// Processes spawned by the test, killed by pid (with their process groups) however it ends.
#[derive(Default)]
struct Spawned(Vec<Child>);

impl Spawned {
    fn sh(&mut self, script: &str, env: &[(&str, &str)]) -> i32 {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("CCSCOPE_PROJECT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn");
        let pid = child.id() as i32;
        self.0.push(child);
        pid
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn discover(sb: &Sandbox, global: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let mut cmd = sb.command(&[global, &["discover", "--json"]].concat());
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Ran::of(cmd).expect_code(0).json()
}

/// pid → (class, service) of a discovery report.
fn classes(doc: &serde_json::Value) -> BTreeMap<i64, (String, String)> {
    doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_i64().unwrap(),
                (
                    p["class"].as_str().unwrap().to_string(),
                    p["service"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    ccscope::proc::ProcFs::default().identity(pid).is_ok()
}

/// Pids whose command line contains `needle` (the test's own strays).
fn with_cmdline(needle: &str) -> Vec<i32> {
    ccscope::discover::scan::scan(std::path::Path::new("/proc"))
        .processes
        .values()
        .filter(|p| p.command_line.contains(needle))
        .map(|p| p.pid)
        .collect()
}

#[test]
#[ignore = "system test: needs the user manager and a writable cgroup tree (scripts/test.sh)"]
fn strays_started_by_hand_are_found_classified_adopted_and_then_stopped() {
    require_test_env();
    let project = project("strays");
    let tag = format!("stray-{}", std::process::id());
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n\
             [services.worker]\ncommand = [\"sleep\", \"300\"]\ndiscover = {{ cmdline = [\"{tag}\"] }}\n\
             [services.api]\ncommand = [\"sleep\", \"300\"]\n"
        ),
    );
    let mut spawned = Spawned::default();
    // setsid, with its own child.
    spawned.sh(
        &format!("exec setsid sh -c 'sleep 300 & wait; : {tag}-setsid'"),
        &[],
    );
    // nohup … & from a shell that returns.
    spawned.sh(
        &format!("nohup sh -c 'sleep 300; : {tag}-nohup' >/dev/null 2>&1 &"),
        &[],
    );
    // A double fork: nobody's child.
    spawned.sh(
        &format!("(setsid sh -c 'sleep 300; : {tag}-daemon' &)"),
        &[],
    );
    // Markers and nothing else: an unremarkable command line.
    let marked_pid = spawned.sh(
        "exec sleep 301",
        &[("CCSCOPE_PROJECT", &project), ("CCSCOPE_SERVICE", "api")],
    );
    // In another cgroup.
    let other_cgroup = ccscope::contain::cgroup::v2_mount()
        .unwrap()
        .unwrap()
        .join(format!("ccscope-test-elsewhere-{}", std::process::id()));
    std::fs::create_dir_all(&other_cgroup).unwrap();
    let _remove = RemoveCgroup(other_cgroup.clone());
    let elsewhere = spawned.sh(&format!("sleep 300; : {tag}-elsewhere"), &[]);
    std::fs::write(other_cgroup.join("cgroup.procs"), elsewhere.to_string()).unwrap();

    wait_for("the strays to start", DEADLINE, || {
        with_cmdline(&tag).len() >= 4
    });
    let ours: Vec<i32> = with_cmdline(&tag);
    let doc = discover(&sb, &[], &[]);
    let found = classes(&doc);
    // What it found is on record in the audit trail, each stray named.
    wait_for("the discover.stray event", DEADLINE, || {
        let audit = sb.run(&["audit", "--event", "discover.stray", "--json"]);
        audit.code() == 0 && audit.stdout().contains(&format!("pid {marked_pid} (api)"))
    });
    for pid in &ours {
        assert_eq!(
            found.get(&i64::from(*pid)),
            Some(&("stray".to_string(), "worker".to_string())),
            "pid {pid} is a stray of worker: {doc}"
        );
    }
    assert_eq!(
        found.get(&i64::from(marked_pid)),
        Some(&("stray".to_string(), "api".to_string())),
        "the marked process is a stray of api: {doc}"
    );
    // The `sleep` children of the strays inherit their service.
    let descendants = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["reason"]
                .as_str()
                .unwrap()
                .starts_with("descends from stray")
        })
        .count();
    assert!(descendants >= 3, "children are strays too: {doc}");

    // Adopt them all; then they are inside, and stop ends them with the rest.
    let adopted = sb.run(&["adopt", "--all", "--json"]);
    adopted.expect_code(0);
    let after = classes(&discover(&sb, &[], &[]));
    for pid in ours.iter().chain([&marked_pid]) {
        assert_eq!(
            after.get(&i64::from(*pid)).map(|c| c.0.as_str()),
            Some("managed"),
            "pid {pid} is inside its scope after adopt: {}",
            adopted.stdout()
        );
    }
    let ps = sb.run(&["ps", "--json"]).expect_code(0).json();
    assert!(
        ps["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["source"] == "adopted" && p["inside_scope"] == true),
        "{ps}"
    );
    sb.run(&["stop"]).expect_code(0);
    for pid in ours.iter().chain([&marked_pid]) {
        assert!(!alive(*pid), "pid {pid} was stopped");
    }
    assert_eq!(marked(&project), Vec::<i32>::new());
    assert_eq!(with_cmdline(&tag), Vec::<i32>::new(), "no stray is left");
}

/// Kills what is left in a cgroup the test made, and removes it, however the test ends.
struct RemoveCgroup(std::path::PathBuf);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        let cg = ccscope::contain::cgroup::Cgroup::at(&self.0);
        let _ = cg.kill();
        let _ = cg.wait_empty(Duration::from_secs(5));
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_dashboard_started_by_hand_on_9999_is_classified_by_its_command_line() {
    require_test_env();
    let project = project("seed2");
    let env = vec![
        ("CCSCOPE_DEMO_PROJECT", project.clone()),
        ("CCSCOPE_DEMO_PORT_BASE", "31000".to_string()),
    ];
    let sb = Sandbox::new();
    let mut spawned = Spawned::default();
    let dashboard = spawned.sh(
        &format!(
            "exec {} __demo http --name dashboard --port 9999 --path /health",
            env!("CARGO_BIN_EXE_ccscope")
        ),
        &[],
    );
    wait_for("the dashboard to listen on 9999", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", 9999)).is_ok()
    });
    let doc = discover(&sb, &["--profile", "demo"], &env);
    let p = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == dashboard)
        .unwrap_or_else(|| panic!("the dashboard is found: {doc}"))
        .clone();
    assert_eq!(p["class"], "stray", "{p}");
    assert_eq!(p["service"], "dashboard", "{p}");
    assert_eq!(p["ports"], serde_json::json!([9999]), "{p}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("command line matches"),
        "{p}"
    );
    // stop finds it by the same rule.
    let mut stop = sb.command(&["--profile", "demo", "stop", "--json"]);
    for (k, v) in &env {
        stop.env(k, v);
    }
    let report = common::Ran::of(stop).expect_code(0).json();
    assert!(
        report["strays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["pid"] == dashboard),
        "{report}"
    );
    wait_for("the dashboard to be gone", DEADLINE, || !alive(dashboard));
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_foreign_holder_a_reused_pid_and_another_users_process_are_never_touched() {
    require_test_env();
    let project = project("foreign");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\
             [services.web]\ncommand = [\"sleep\", \"300\"]\nports = [{port}]\n\
             discover = {{ cmdline = [\"web-{project}\"] }}\n"
        ),
    );
    let mut spawned = Spawned::default();
    // A foreign process on the declared port (no markers, no matching command line).
    let holder = spawned.sh(
        &format!("exec python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",{port})); s.listen(); time.sleep(300)'"),
        &[],
    );
    wait_for("the holder to listen", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Another user's process that carries the project's markers (one process: nothing is left
    // behind when the test kills it).
    let other = spawned.sh(
        "exec setpriv --reuid=ccscope-other --regid=ccscope-other --clear-groups sleep 303",
        &[("CCSCOPE_PROJECT", &project), ("CCSCOPE_SERVICE", "web")],
    );
    // A bystander whose pid the registry holds with another start time (a reused pid).
    let bystander = spawned.sh("exec sleep 302", &[]);
    wait_for("the others to start", DEADLINE, || {
        alive(other) && alive(bystander)
    });
    let identity = ccscope::proc::ProcFs::default()
        .identity(bystander)
        .unwrap();
    {
        let dir = ccscope::registry::StateDir {
            path: sb.state_dir(),
            origin: ccscope::registry::StateDirOrigin::Flag,
        };
        let (registry, _) = ccscope::registry::Registry::open(&dir).unwrap();
        registry
            .register(&ccscope::registry::NewProcess {
                identity: ccscope::proc::ProcessIdentity {
                    pid: bystander,
                    start_time: identity.start_time + 1,
                },
                command_line: "sleep 302".into(),
                project: project.clone(),
                service: "web".into(),
                run_id: None,
                unit: None,
                cgroup: None,
                ports: vec![],
                status: ccscope::registry::ProcessStatus::Running,
                source: ccscope::registry::ProcessSource::Launched,
            })
            .unwrap();
    }

    let found = classes(&discover(&sb, &[], &[]));
    assert_eq!(
        found.get(&i64::from(holder)).map(|c| c.0.as_str()),
        Some("foreign")
    );
    assert_eq!(
        found.get(&i64::from(other)).map(|c| c.0.as_str()),
        Some("foreign")
    );
    assert!(!found.contains_key(&i64::from(bystander)));

    sb.run(&["run"])
        .expect_code(5)
        .expect_stderr_contains(&format!("pid {holder}"))
        .expect_stderr_contains("not this project's");
    sb.run(&["adopt", &holder.to_string(), "--service", "web"])
        .expect_code(5)
        .expect_stderr_contains("foreign");
    sb.run(&["adopt", &other.to_string(), "--service", "web"])
        .expect_code(5)
        .expect_stderr_contains("uid");
    sb.run(&["stop"]).expect_code(0);
    sb.run(&["ps"]).expect_code(0);
    for (what, pid) in [
        ("the foreign holder", holder),
        ("the other user's process", other),
        ("the bystander", bystander),
    ] {
        assert!(alive(pid), "{what} (pid {pid}) survives every command");
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_corrupt_registry_is_rebuilt_from_the_live_scopes() {
    require_test_env();
    let project = project("rebuild");
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[services.web]\ncommand = [\"sleep\", \"300\"]\n"
        ),
    );
    sb.run(&["run", "--detach"]).expect_code(0);
    // The file is garbage now; the supervisor keeps its own (renamed) copy open.
    for side in ["registry.db-wal", "registry.db-shm"] {
        let _ = std::fs::remove_file(sb.state_dir().join(side));
    }
    std::fs::write(sb.state_dir().join("registry.db"), vec![0x5a; 8192]).unwrap();
    let ps = sb.run(&["ps", "--json"]);
    ps.expect_code(0).expect_stderr_contains("registry rebuilt");
    let doc = ps.json();
    assert!(
        doc["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["service"] == "web" && p["registered"] == true && p["inside_scope"] == true),
        "the scope's processes are registered again: {doc}"
    );
    let rebuilt = sb
        .run(&["registry", "rebuild", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(rebuilt["project"], project.as_str());
    assert!(rebuilt["managed"].as_u64().unwrap() >= 1, "{rebuilt}");
    sb.run(&["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new());
}
