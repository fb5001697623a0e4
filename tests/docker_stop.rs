//! `ccscope stop`'s sweep of containers, against the real dockerd and the offline image
//! `ccscope-test/busybox:latest`: containers with the project's labels (started by hand here,
//! as after a SIGKILLed supervisor) and those of a listed compose project are found by
//! `discover` and removed by `stop`; an unlabelled container and another project's survive
//! `stop`, `adopt --all` and `stop --force`; a PID 1 that ignores SIGTERM is killed after its
//! timeout; `--keep-containers` keeps it; without a daemon a process-only stop exits 0 with a
//! notice. Every container made here carries `ccscope.test=1` and is removed by its id.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Sandbox, require_test_env, wait_for};

const IMAGE: &str = "ccscope-test/busybox:latest";

fn project(tag: &str) -> String {
    format!("ds{}-{tag}", std::process::id())
}

/// Containers this test started, removed by id however the test ends.
struct Containers(Vec<String>);

impl Containers {
    fn new() -> Containers {
        Containers(Vec::new())
    }

    /// `docker run -d` of `argv` with `labels` (and `ccscope.test=1`); its id.
    fn start(&mut self, labels: &[(&str, &str)], extra: &[&str], argv: &[&str]) -> String {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--label", "ccscope.test=1"]);
        for (k, v) in labels {
            cmd.args(["--label", &format!("{k}={v}")]);
        }
        cmd.args(extra).arg(IMAGE).args(argv);
        let out = cmd.output().expect("run the docker CLI");
        assert!(
            out.status.success(),
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.0.push(id.clone());
        id
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

/// The container's state (`running`, `exited`, …), or None once it is gone.
fn state(id: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Status}}", id])
        .output()
        .expect("run the docker CLI");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn require_docker() {
    require_test_env();
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "dockerd with the image {IMAGE} is needed: `scripts/test-env.sh up` brings them up"
    );
}

/// A stack of one process service `db` (stop timeout 1 s) whose compose projects are `compose`.
fn sandbox(project: &str, compose: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    let compose: Vec<String> = compose.iter().map(|c| format!("\"{c}\"")).collect();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\ndocker_compose_projects = [{}]\n\
             [services.db]\ncommand = [\"true\"]\nstop_timeout = \"1s\"\n\
             [services.api]\ncommand = [\"true\"]\ndepends_on = [\"db\"]\n",
            compose.join(", ")
        ),
    );
    sb
}

/// A PID 1 that ends at once on SIGTERM.
const POLITE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];
/// A PID 1 with no handler: the kernel ignores SIGTERM for it, only SIGKILL ends it.
const DEAF: &[&str] = &["sleep", "300"];

fn explain(r: &common::Ran) -> String {
    format!(
        "{}: exit {}\nstdout:\n{}\nstderr:\n{}",
        r.description,
        r.code(),
        r.stdout(),
        r.stderr()
    )
}

fn container_entry<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("no containers in {report}"))
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("container {id} is not in {report}"))
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn labelled_and_compose_containers_are_swept_and_nothing_else_is() {
    require_docker();
    let project = project("sweep");
    let compose = format!("{project}-otel");
    let sb = sandbox(&project, &[&compose]);
    let mut c = Containers::new();
    let ours = c.start(
        &[("ccscope.project", &project), ("ccscope.service", "db")],
        &[],
        POLITE,
    );
    let composed = c.start(&[("com.docker.compose.project", &compose)], &[], POLITE);
    let unlabelled = c.start(&[], &[], POLITE);
    let other = c.start(
        &[
            ("ccscope.project", &format!("{project}-other")),
            ("ccscope.service", "db"),
        ],
        &[],
        POLITE,
    );
    // A look-alike label is not ours: only the exact key and value select a container.
    let lookalike = c.start(
        &[("com.docker.compose.project", &format!("{compose}x"))],
        &[],
        POLITE,
    );

    let discovered = sb.run(&["--json", "discover"]);
    discovered.expect_code(0);
    let report = discovered.json();
    for id in [&ours, &composed] {
        assert_eq!(container_entry(&report, id)["class"], "stray", "{report}");
    }
    let listed: Vec<&str> = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in [&unlabelled, &other, &lookalike] {
        assert!(!listed.contains(&id.as_str()), "{id} listed: {report}");
    }

    // adopt --all takes no container that is not the project's; ours is refused with a reason.
    let adopted = sb.run(&["--json", "adopt", "--all"]);
    adopted.expect_code(5);
    let refused: Vec<(String, String)> = adopted.json()["containers_refused"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", explain(&adopted)))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ids: Vec<&str> = refused.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{}", explain(&adopted));
    assert!(ids.contains(&ours.as_str()) && ids.contains(&composed.as_str()));
    assert!(
        refused
            .iter()
            .all(|(_, r)| r.contains("needs a running supervisor")),
        "{}",
        explain(&adopted)
    );
    for id in [&ours, &composed, &unlabelled, &other, &lookalike] {
        assert_eq!(
            state(id).as_deref(),
            Some("running"),
            "{}",
            explain(&adopted)
        );
    }
    // Asked by id for a container that is not ours, adopt says so and touches nothing.
    let asked = sb.run(&["--json", "adopt", "--container", &unlabelled]);
    asked.expect_code(5);
    assert!(
        asked.json()["containers_refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not this project's"),
        "{}",
        explain(&asked)
    );
    assert_eq!(state(&unlabelled).as_deref(), Some("running"));

    let dry = sb.run(&["--json", "stop", "--dry-run"]);
    dry.expect_code(0);
    assert_eq!(container_entry(&dry.json(), &ours)["removed"], false);
    assert_eq!(
        state(&ours).as_deref(),
        Some("running"),
        "--dry-run stopped it"
    );

    let stopped = sb.run(&["--json", "stop"]);
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    let entry = container_entry(&report, &ours);
    assert_eq!(entry["service"], "db");
    assert_eq!(entry["signal"], "SIGTERM");
    assert_eq!(entry["killed"], false, "{report}");
    assert_eq!(entry["removed"], true, "{report}");
    assert_eq!(container_entry(&report, &composed)["removed"], true);
    for id in [&ours, &composed] {
        assert_eq!(state(id), None, "{id} is still there after stop");
    }
    for id in [&unlabelled, &other, &lookalike] {
        assert_eq!(state(id).as_deref(), Some("running"), "stop touched {id}");
    }

    let forced = sb.run(&["--json", "stop", "--force"]);
    forced.expect_code(0);
    for id in [&unlabelled, &other, &lookalike] {
        assert_eq!(
            state(id).as_deref(),
            Some("running"),
            "stop --force touched {id}"
        );
    }
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_container_deaf_to_sigterm_is_killed_after_its_stop_timeout() {
    require_docker();
    let project = project("deaf");
    let sb = sandbox(&project, &[]);
    let mut c = Containers::new();
    let deaf = c.start(
        &[("ccscope.project", &project), ("ccscope.service", "db")],
        &[],
        DEAF,
    );
    let stopped = sb.run(&["--json", "stop"]);
    stopped.expect_code(0);
    let report = stopped.json();
    let entry = container_entry(&report, &deaf);
    assert_eq!(entry["killed"], true, "{report}");
    assert_eq!(entry["removed"], true, "{report}");
    let ms = entry["time_to_stop_ms"].as_u64().unwrap();
    // Its service's stop timeout is 1 s: killed after it, and not much later.
    assert!(
        (1000..6000).contains(&ms),
        "stopped after {ms} ms: {report}"
    );
    assert_eq!(state(&deaf), None);
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn keep_containers_stops_without_removing() {
    require_docker();
    let project = project("keep");
    let sb = sandbox(&project, &[]);
    let mut c = Containers::new();
    let kept = c.start(
        &[("ccscope.project", &project), ("ccscope.service", "api")],
        &[],
        POLITE,
    );
    let stopped = sb.run(&["--json", "stop", "--keep-containers"]);
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    let entry = container_entry(&report, &kept);
    assert_eq!(entry["removed"], false);
    assert_eq!(entry["killed"], false);
    assert_eq!(state(&kept).as_deref(), Some("exited"));

    // A second stop finds it stopped, and now removes it.
    let again = sb.run(&["--json", "stop"]);
    again.expect_code(0);
    assert_eq!(container_entry(&again.json(), &kept)["removed"], true);
    wait_for(
        "the kept container to be removed",
        Duration::from_secs(5),
        || state(&kept).is_none(),
    );
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn without_docker_a_process_only_stop_exits_0_with_a_notice() {
    require_test_env();
    let project = project("nodocker");
    let sb = sandbox(&project, &[]);
    // A process of the project, run through ccscope itself.
    let mut exec = sb.command(&["exec", "--service", "db", "--", "sleep", "300"]);
    exec.env("DOCKER_HOST", "unix:///nonexistent");
    let mut child = exec.spawn().expect("start ccscope exec");
    wait_for(
        "the exec'd process to carry the project's markers",
        Duration::from_secs(20),
        || !common::marked(&project).is_empty(),
    );
    let mut stop = sb.command(&["--json", "stop"]);
    stop.env("DOCKER_HOST", "unix:///nonexistent");
    let stopped = common::Ran::of(stop);
    let _ = child.wait();
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{}", explain(&stopped));
    let notices = report["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{report}");
    assert!(
        notices[0].as_str().unwrap().contains("/nonexistent"),
        "{report}"
    );
    assert_eq!(
        stopped.stderr().matches("notice:").count(),
        1,
        "{}",
        explain(&stopped)
    );
    assert!(common::marked(&project).is_empty());
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_container_publishing_a_declared_port_is_foreign_and_named_by_runs_preflight() {
    require_docker();
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let project = project("port");
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\
             [services.web]\ncommand = [\"sleep\", \"300\"]\nports = [{port}]\n"
        ),
    );
    let mut c = Containers::new();
    let foreign = c.start(
        &[],
        &["-p", &format!("127.0.0.1:{port}:80")],
        &["httpd", "-f", "-p", "80"],
    );
    wait_for(
        "the container's port to answer",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let discovered = sb.run(&["--json", "discover"]);
    discovered.expect_code(0);
    let report = discovered.json();
    let holder = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["class"] == "foreign" && p["ports"] == serde_json::json!([port]))
        .unwrap_or_else(|| panic!("no foreign holder of {port}: {report}"));
    assert!(
        holder["command_line"]
            .as_str()
            .unwrap()
            .contains("docker-proxy")
    );
    // The container itself is named too, as foreign, with the port it publishes.
    let named = report["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("no containers list: {report}"))
        .iter()
        .find(|c| {
            c["id"]
                .as_str()
                .is_some_and(|id| foreign.starts_with(id) || id.starts_with(&foreign))
        })
        .unwrap_or_else(|| panic!("the foreign container is not listed: {report}"));
    assert_eq!(named["class"], "foreign", "{named}");
    assert!(
        named["reason"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{named}"
    );
    let ran = sb.run(&["run"]);
    ran.expect_code(5)
        .expect_stderr_contains(&format!("port {port} needed by web is published"))
        .expect_stderr_contains("by a docker container at")
        .expect_stderr_contains("not this project's");
    assert!(common::marked(&project).is_empty(), "nothing was started");
    assert_eq!(
        state(&foreign).as_deref(),
        Some("running"),
        "run touched it"
    );
    let stopped = sb.run(&["stop"]);
    stopped.expect_code(0);
    assert_eq!(
        state(&foreign).as_deref(),
        Some("running"),
        "stop touched it"
    );
}

/// The ids of the containers labelled with `project`, in every state.
fn labelled(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=ccscope.project={project}"))
        .output()
        .expect("run docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn after_a_sigkilled_supervisor_a_fresh_stop_removes_its_containers() {
    require_docker();
    let project = project("killed");
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"3s\"\n\
             [services.db]\n\
             ready = {{ http = \"http://127.0.0.1:{port}/\", interval = \"100ms\", start_timeout = \"20s\" }}\n\
             [services.db.docker]\nimage = \"{IMAGE}\"\nports = [\"{port}:8080\"]\n\
             labels = {{ \"ccscope-test\" = \"1\" }}\n\
             command = [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n\
             [services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n"
        ),
    );
    // Whatever happens, what carries the project's label goes (by id).
    let mut c = Containers::new();
    let ran = sb.run(&["run", "--detach"]);
    c.0.extend(labelled(&project));
    ran.expect_code(0);
    let ids = labelled(&project);
    assert_eq!(ids.len(), 1, "{ids:?}");
    c.0.extend(ids.iter().cloned());

    let ps = sb.run(&["--json", "ps"]);
    ps.expect_code(0);
    let rows = ps.json()["containers"].clone();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["service"], "db");
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(
        rows[0]["ports"],
        serde_json::json!([format!("{port}:8080")])
    );
    assert!(rows[0]["memory_bytes"].as_u64().is_some(), "{rows}");
    let status = sb.run(&["--json", "status"]);
    status.expect_code(0);
    let doc = status.json();
    assert_eq!(doc["containers"].as_array().map(Vec::len), Some(1), "{doc}");
    let supervisor = doc["supervisor_pid"].as_i64().expect("a live supervisor") as i32;
    let discovered = sb.run(&["--json", "discover"]);
    assert_eq!(
        container_entry(&discovered.json(), &ids[0])["class"],
        "managed"
    );

    ccscope::proc::sys::kill(supervisor, libc::SIGKILL).unwrap();
    wait_for("the supervisor to die", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{supervisor}")).exists()
    });
    let discovered = sb.run(&["--json", "discover"]);
    assert_eq!(
        container_entry(&discovered.json(), &ids[0])["class"],
        "stray"
    );

    let stopped = sb.run(&["--json", "stop"]);
    stopped.expect_code(0);
    let report = stopped.json();
    assert_eq!(report["outcome"], "complete", "{report}");
    let entry = container_entry(&report, &ids[0]);
    assert_eq!(entry["removed"], true, "{report}");
    assert_eq!(entry["service"], "db");
    assert_eq!(
        labelled(&project),
        Vec::<String>::new(),
        "a container is left"
    );
    assert!(common::marked(&project).is_empty(), "a process is left");
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn ps_all_lists_every_projects_containers_and_never_an_unlabelled_one() {
    require_docker();
    let (mine, theirs) = (project("all-a"), project("all-b"));
    let mut c = Containers::new();
    let a = c.start(&[("ccscope.project", &mine)], &[], &["sleep", "300"]);
    let b = c.start(&[("ccscope.project", &theirs)], &[], &["sleep", "300"]);
    let unlabelled = c.start(&[], &[], &["sleep", "300"]);
    // No configuration here: --all is every project's.
    let sb = Sandbox::new();
    let ps = sb.run(&["--json", "ps", "--all"]);
    ps.expect_code(0);
    let report = ps.json();
    let listed = report["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("no containers list: {report}"));
    let project_of = |id: &str| {
        listed
            .iter()
            .find(|r| r["id"].as_str().is_some_and(|short| id.starts_with(short)))
            .map(|r| r["project"].clone())
    };
    assert_eq!(project_of(&a), Some(serde_json::json!(mine)), "{report}");
    assert_eq!(project_of(&b), Some(serde_json::json!(theirs)), "{report}");
    assert_eq!(
        project_of(&unlabelled),
        None,
        "an unlabelled container is listed: {report}"
    );
}
