//! `ccscope stop SERVICE…` with no supervisor live, against the real user manager and
//! cgroupfs: a stack db ← api ← web plus cache is run detached, its supervisor SIGKILLed;
//! `stop api` then ends api and web (its dependent), their `exec` instance and a stray marked
//! as api's, and nothing else: db and cache run on with the same pids, a stray of db too.
//! Labelled containers of api and web are stopped (kept with `--keep-containers`) and db's
//! runs on, never counted as a survivor.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use ccscope::proc::{LivenessProbe, ProcFs, ProcessIdentity};
use ccscope::registry::{ProcessFilter, Registry, StateDir, StateDirOrigin};
use common::{Sandbox, marked, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(15);

fn project(tag: &str) -> String {
    format!("ss{}-{tag}", std::process::id())
}

/// db ← api ← web, and cache alone.
fn stack(project: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n\
             [services.db]\nshell = \"exec sleep 300\"\n\
             [services.api]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n\
             [services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"api\"]\n\
             [services.cache]\nshell = \"exec sleep 300\"\n"
        ),
    );
    sb
}

/// Whatever the test started goes at the end, passed or failed: the stack and the children.
struct Cleanup<'a> {
    sb: &'a Sandbox,
    children: Vec<Child>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.sb.command(&["stop", "--force"]).output();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The service's main process (`sleep 300`) per service, as `ps` lists them.
fn main_pids(sb: &Sandbox) -> Vec<(String, i64)> {
    let ps = sb.run(&["ps", "--json"]).expect_code(0).json();
    let mut rows: Vec<(String, i64)> = ps["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["command_line"] == "sleep 300" && p["inside_scope"] == true)
        .map(|p| {
            (
                p["service"].as_str().unwrap().to_string(),
                p["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn registry(sb: &Sandbox) -> Registry {
    let dir = StateDir {
        path: sb.state_dir(),
        origin: StateDirOrigin::Flag,
    };
    Registry::open(&dir).unwrap().0
}

/// The services the registry holds live process records of.
fn registered(sb: &Sandbox, project: &str) -> BTreeSet<String> {
    let procfs = ProcFs::default();
    registry(sb)
        .list(ProcessFilter::Project(project))
        .unwrap()
        .into_iter()
        .filter(|r| procfs.is_alive(r.identity()))
        .map(|r| r.service.to_string())
        .collect()
}

fn recorded_states(sb: &Sandbox, project: &str) -> BTreeSet<String> {
    registry(sb)
        .service_states(project)
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect()
}

/// A process started by hand, outside every scope, carrying `service`'s markers.
fn stray(project: &str, service: &str) -> Child {
    let child = std::process::Command::new("setsid")
        .args(["sleep", "300"])
        .env("CCSCOPE_PROJECT", project)
        .env("CCSCOPE_SERVICE", service)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for("the stray to exec", DEADLINE, || {
        marked(project).contains(&pid)
    });
    child
}

fn identity(pid: i64) -> ProcessIdentity {
    ProcFs::default().identity(pid as i32).unwrap()
}

fn names(doc: &serde_json::Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` in {doc}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn stopped_services(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap().to_string())
        .collect()
}

fn stray_pids(doc: &serde_json::Value) -> Vec<i64> {
    doc["strays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pid"].as_i64().unwrap())
        .collect()
}

fn stop_one_service_without_a_supervisor(backend: &str) {
    require_test_env();
    let project = project(backend);
    let sb = stack(&project);
    let mut cleanup = Cleanup {
        sb: &sb,
        children: Vec::new(),
    };
    sb.run(&["run", "--detach", "--backend", backend])
        .expect_code(0);
    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    let supervisor = status["supervisor_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("a live supervisor: {status}")) as i32;
    // No supervisor from here on: the stop is ours to do, directly.
    ccscope::proc::sys::kill(supervisor, libc::SIGKILL).unwrap();
    wait_for("the supervisor to die", DEADLINE, || {
        !std::path::Path::new(&format!("/proc/{supervisor}")).exists()
    });

    // A second instance of web, by `exec`, and strays of api and of db.
    let mut exec = sb.command(&["exec", "--service", "web", "--", "sleep", "300"]);
    exec.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cleanup.children.push(exec.spawn().unwrap());
    let api_stray = stray(&project, "api");
    let api_stray_pid = i64::from(api_stray.id());
    cleanup.children.push(api_stray);
    let db_stray = stray(&project, "db");
    let db_stray_pid = i64::from(db_stray.id());
    cleanup.children.push(db_stray);
    let mut before = Vec::new();
    wait_for("web's exec instance to run", DEADLINE, || {
        before = main_pids(&sb);
        before.len() == 5
    });
    assert_eq!(
        before.iter().filter(|(s, _)| s == "web").count(),
        2,
        "web runs twice: {before:?}"
    );
    let kept: Vec<(String, i64)> = before
        .iter()
        .filter(|(s, _)| s == "db" || s == "cache")
        .cloned()
        .collect();
    let kept_ids: Vec<ProcessIdentity> = kept.iter().map(|(_, p)| identity(*p)).collect();
    let ended: Vec<ProcessIdentity> = before
        .iter()
        .filter(|(s, _)| s == "api" || s == "web")
        .map(|(_, p)| identity(*p))
        .collect();
    let api_stray_id = identity(api_stray_pid);
    let db_stray_id = identity(db_stray_pid);
    assert_eq!(
        registered(&sb, &project),
        ["api", "cache", "db", "web"].map(String::from).into(),
        "everything is registered before"
    );

    // A typo stops nothing, and says what was meant.
    let typo = sb.run(&["stop", "cahce"]);
    typo.expect_code(2)
        .expect_stderr_contains("`cahce` is not a service of project")
        .expect_stderr_contains("did you mean `cache`?");
    assert_eq!(main_pids(&sb), before, "the typo stopped nothing");

    // --dry-run lists api and web, and the stray of api only; it signals nothing.
    let dry = sb
        .run(&["stop", "api", "--dry-run", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(dry["outcome"], "dry_run", "{dry}");
    assert_eq!(names(&dry, "selected"), ["api"], "{dry}");
    assert_eq!(names(&dry, "dependents"), ["web"], "{dry}");
    assert_eq!(
        stopped_services(&dry),
        ["api", "web"].map(String::from).into(),
        "{dry}"
    );
    assert_eq!(
        dry["services"].as_array().unwrap().len(),
        3,
        "api's scope and web's two: {dry}"
    );
    assert_eq!(stray_pids(&dry), [api_stray_pid], "{dry}");
    assert_eq!(main_pids(&sb), before, "the dry run stopped nothing");

    let human = sb.run(&["stop", "api", "--dry-run"]);
    human
        .expect_code(0)
        .expect_stdout_contains("would stop api (and dependents: web)");

    // The stop: api and web, in reverse dependency order, and api's stray.
    let doc = sb.run(&["stop", "api", "--json"]).expect_code(0).json();
    assert_eq!(doc["outcome"], "complete", "{doc}");
    assert_eq!(names(&doc, "selected"), ["api"], "{doc}");
    assert_eq!(names(&doc, "dependents"), ["web"], "{doc}");
    let order: Vec<&str> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["web", "web", "api"], "web before api: {doc}");
    assert_eq!(stray_pids(&doc), [api_stray_pid], "{doc}");
    assert_eq!(doc["strays"][0]["service"], "api", "{doc}");
    assert_eq!(doc["survivors"], serde_json::json!([]), "{doc}");
    let procfs = ProcFs::default();
    for id in ended.iter().chain([&api_stray_id]) {
        assert!(!procfs.is_alive(*id), "{id:?} of api or web is gone");
    }
    for id in kept_ids.iter().chain([&db_stray_id]) {
        assert!(procfs.is_alive(*id), "{id:?} of db or cache runs on");
    }
    assert_eq!(main_pids(&sb), kept, "db and cache keep their pids");
    assert_eq!(
        registered(&sb, &project),
        ["cache", "db"].map(String::from).into(),
        "the registry forgets api and web only"
    );
    let states = recorded_states(&sb, &project);
    assert!(
        !states.contains("api") && !states.contains("web"),
        "api's and web's states are cleared: {states:?}"
    );
    assert!(
        states.contains("db") && states.contains("cache"),
        "db's and cache's states stay: {states:?}"
    );

    // Again: nothing of api or web is left to stop, and the rest is still untouched.
    sb.run(&["stop", "web"])
        .expect_code(0)
        .expect_stdout_contains("nothing to stop");
    assert_eq!(main_pids(&sb), kept);

    // The whole stack stops as ever, and says nothing of a selection.
    let all = sb.run(&["stop", "--json"]).expect_code(0).json();
    assert_eq!(all["outcome"], "complete", "{all}");
    assert!(
        all.get("selected").is_none() && all.get("dependents").is_none(),
        "a whole-project report has no selection: {all}"
    );
    assert_eq!(stray_pids(&all), [db_stray_pid], "{all}");
    assert!(marked(&project).is_empty(), "{:?}", marked(&project));
    // The exec waiting for web's instance has ended with it.
    let exec = &mut cleanup.children[0];
    wait_for("`ccscope exec` to end", DEADLINE, || {
        exec.try_wait().unwrap().is_some()
    });
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_one_service_without_a_supervisor_systemd() {
    stop_one_service_without_a_supervisor("systemd");
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn stop_one_service_without_a_supervisor_cgroupfs() {
    stop_one_service_without_a_supervisor("cgroupfs");
}

/// A PID 1 that ends at once on SIGTERM.
const POLITE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];

fn container_ids(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("no containers in {doc}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn stop_one_service_ends_its_containers_and_no_other() {
    require_test_env();
    common::require_docker();
    let project = project("docker");
    let sb = stack(&project);
    let _cleanup = Cleanup {
        sb: &sb,
        children: Vec::new(),
    };
    // As a SIGKILLed supervisor leaves them: labelled, running, nobody's.
    let labelled = |service: &str| {
        let c = common::TestContainer::run(
            &[("ccscope.project", &project), ("ccscope.service", service)],
            &[],
            POLITE,
        );
        c.wait_running(DEADLINE);
        c
    };
    let (db, api, web) = (labelled("db"), labelled("api"), labelled("web"));

    let dry = sb
        .run(&["stop", "api", "--dry-run", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(
        container_ids(&dry),
        [api.id.clone(), web.id.clone()].into(),
        "{dry}"
    );
    assert!(db.running() && api.running() && web.running(), "a dry run");

    // --keep-containers: api's and web's stop and stay; db's runs on.
    let kept = sb
        .run(&["stop", "api", "--keep-containers", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(kept["outcome"], "complete", "{kept}");
    assert_eq!(
        container_ids(&kept),
        [api.id.clone(), web.id.clone()].into(),
        "{kept}"
    );
    assert!(
        api.exists() && !api.running(),
        "api's container is kept, stopped"
    );
    assert!(
        web.exists() && !web.running(),
        "web's container is kept, stopped"
    );
    assert!(db.running(), "db's container runs on");

    // `stop web`: its stopped container is removed, api's (not asked) stays.
    let removed = sb.run(&["stop", "web", "--json"]).expect_code(0).json();
    assert_eq!(
        container_ids(&removed),
        [web.id.clone()].into(),
        "{removed}"
    );
    assert!(!web.exists(), "web's container is removed");
    assert!(api.exists() && db.running(), "api's and db's are untouched");
}
