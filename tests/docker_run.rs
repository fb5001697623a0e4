//! `ccscope run` with container services against the real dockerd and the real user manager:
//! a container (busybox httpd standing in for ClickHouse, ready on HTTP) is the base
//! dependency of two process services — the order, status and journald show it; a container
//! that crashes three times follows the restart policy; a second run adopts the running
//! container back (the same one, not a duplicate), `--clean` replaces it; an unreachable
//! daemon fails the start naming its socket.
//!
//! Every container a test makes carries its test project's `ccscope.project` label; the guard
//! removes only containers with that label, by id.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Ran, Sandbox, journal_entries, marked, require_test_env, wait_for};

const IMAGE: &str = "ccscope-test/busybox:latest";
const READY: Duration = Duration::from_secs(60);

fn project(tag: &str) -> String {
    format!("d{}-{tag}", std::process::id())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn stack(project: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"3s\"\n{services}"),
    );
    sb
}

/// The busybox httpd service `db`, published on `port`, ready on HTTP, saying `serving` on
/// stdout and `warming up` on stderr first.
fn httpd(port: u16) -> String {
    format!(
        "[services.db]\n\
         ready = {{ http = \"http://127.0.0.1:{port}/\", interval = \"100ms\", start_timeout = \"20s\" }}\n\
         [services.db.docker]\n\
         image = \"{IMAGE}\"\n\
         ports = [\"{port}:8080\"]\n\
         command = [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/index.html && echo 'warming up' >&2 && echo serving && exec httpd -f -p 8080 -h /www\"]\n"
    )
}

/// The ids of the containers labelled with `project`, in every state.
fn containers(project: &str) -> Vec<String> {
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

/// The running ones.
fn running(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=ccscope.project={project}"))
        .output()
        .expect("run docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Stops the stack and removes what is left of the project's containers (by id, only those
/// with its label), however the test ended.
struct Cleanup<'a> {
    sb: &'a Sandbox,
    project: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.sb.run(&["stop", "--force"]);
        for id in containers(&self.project) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn status(sb: &Sandbox) -> serde_json::Value {
    sb.run(&["status", "--json"]).expect_code(0).json()
}

fn service<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == name))
        .unwrap_or_else(|| panic!("status has no `{name}`: {doc}"))
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_container_is_the_base_dependency_of_two_process_services() {
    require_test_env();
    let project = project("base");
    let port = free_port();
    let sb = stack(
        &project,
        &format!(
            "{}[services.web1]\nshell = \"echo web1 up; exec sleep 300\"\ndepends_on = [\"db\"]\n\
             [services.web2]\nshell = \"echo web2 up; exec sleep 300\"\ndepends_on = [\"db\"]\n",
            httpd(port)
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    let ran = sb.run(&["run", "--detach"]);
    ran.expect_code(0)
        .expect_stdout_contains("started in order db → web1, web2");
    let ids = running(&project);
    assert_eq!(ids.len(), 1, "one container runs: {ids:?}");
    // It answers on the published port (what the readiness probe saw).
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let doc = status(&sb);
    let db = service(&doc, "db");
    assert_eq!(db["state"], "running", "{doc}");
    assert_eq!(db["ready"], true, "{doc}");
    for web in ["web1", "web2"] {
        assert_eq!(service(&doc, web)["state"], "running", "{doc}");
    }

    // Its output reached journald under the identifier a process service's has.
    let filters = [format!("SYSLOG_IDENTIFIER={project}/db")];
    let mut entries = Vec::new();
    wait_for("db's lines in journald", Duration::from_secs(15), || {
        entries = journal_entries(&filters);
        entries.iter().any(|e| e["MESSAGE"] == "serving")
            && entries.iter().any(|e| e["MESSAGE"] == "warming up")
    });
    let serving = entries.iter().find(|e| e["MESSAGE"] == "serving").unwrap();
    assert_eq!(serving["_TRANSPORT"], "stdout", "{serving}");
    assert_eq!(serving["PRIORITY"], "6", "stdout is info: {serving}");
    let warming = entries
        .iter()
        .find(|e| e["MESSAGE"] == "warming up")
        .unwrap();
    assert_eq!(warming["PRIORITY"], "3", "stderr is error: {warming}");

    sb.run(&["stop"]).expect_code(0);
    assert_eq!(marked(&project), Vec::<i32>::new(), "no process is left");
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_container_that_crashes_three_times_follows_the_restart_policy() {
    require_test_env();
    let project = project("crash");
    let sb = stack(
        &project,
        &format!(
            "[services.base]\ncommand = [\"sleep\", \"300\"]\n\
             [services.crasher]\ndepends_on = {{ base = \"started\" }}\n\
             restart = {{ policy = \"on-failure\", initial_backoff = \"200ms\", max_backoff = \"1s\", max_restarts = 2 }}\n\
             [services.crasher.docker]\nimage = \"{IMAGE}\"\n\
             command = [\"sh\", \"-c\", \"echo about to crash; sleep 0.3; exit 3\"]\n"
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    let mut child = sb
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ccscope run");
    let (tx, lines) = mpsc::channel::<String>();
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
    let mut seen = Vec::new();
    let deadline = Instant::now() + READY;
    while !seen
        .iter()
        .any(|l: &String| l.contains("crasher") && l.contains("gave up after 2 restart(s)"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no `gave up` line within {READY:?}:\n{}", seen.join("\n")),
        }
    }
    let said = seen.join("\n");
    let restarts = seen
        .iter()
        .filter(|l| l.contains("crasher") && l.contains("exit code 3; restarting in"))
        .count();
    assert_eq!(restarts, 2, "{said}");
    // Each instance was a container of its own, and each said its line.
    let filters = [
        format!("SYSLOG_IDENTIFIER={project}/crasher"),
        "MESSAGE=about to crash".to_string(),
    ];
    let mut entries = Vec::new();
    wait_for(
        "three crash lines in journald",
        Duration::from_secs(15),
        || {
            entries = journal_entries(&filters);
            entries.len() >= 3
        },
    );
    assert_eq!(entries.len(), 3, "{entries:?}");
    let runs: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["_STREAM_ID"].as_str())
        .collect();
    assert_eq!(runs.len(), 3, "a stream for each container: {entries:?}");
    // Each instance's container was removed once it was over; none runs.
    wait_for(
        "the crashed containers to be removed",
        Duration::from_secs(15),
        || containers(&project).is_empty(),
    );
    // The stack goes on without it (degraded, not stopped): base still runs.
    assert!(!marked(&project).is_empty(), "{said}");
    ccscope::proc::sys::kill(child.id() as i32, libc::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "{status:?}");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_second_run_adopts_the_container_back_and_clean_replaces_it() {
    require_test_env();
    let project = project("adopt");
    let port = free_port();
    let sb = stack(
        &project,
        &format!(
            "{}[services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n",
            httpd(port)
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    let first = running(&project);
    assert_eq!(first.len(), 1, "{first:?}");
    let supervisor = status(&sb)["supervisor_pid"]
        .as_i64()
        .expect("a live supervisor") as i32;
    ccscope::proc::sys::kill(supervisor, libc::SIGKILL).unwrap();
    wait_for("the supervisor to die", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{supervisor}")).exists()
    });

    // Same definition: the very container is taken over.
    sb.run(&["run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("stack ready");
    assert_eq!(
        running(&project),
        first,
        "the same container, not a duplicate"
    );
    assert_eq!(containers(&project), first);
    assert_eq!(service(&status(&sb), "db")["state"], "running");

    // --clean: stopped and removed, then created anew.
    let supervisor = status(&sb)["supervisor_pid"].as_i64().unwrap() as i32;
    ccscope::proc::sys::kill(supervisor, libc::SIGKILL).unwrap();
    wait_for("the supervisor to die", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{supervisor}")).exists()
    });
    sb.run(&["run", "--detach", "--clean"])
        .expect_code(0)
        .expect_stdout_contains("--clean: stopping")
        .expect_stdout_contains("stack ready");
    let second = running(&project);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "a new container");
    assert_eq!(containers(&project), second, "the old one is gone");
    sb.run(&["stop"]).expect_code(0);
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn only_a_process_service_starts_its_container_dependency_too() {
    require_test_env();
    let project = project("only");
    let port = free_port();
    let sb = stack(
        &project,
        &format!(
            "{}[services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n\
             [services.other]\nshell = \"exec sleep 300\"\n",
            httpd(port)
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    sb.run(&["run", "--detach", "--only", "web"])
        .expect_code(0)
        .expect_stdout_contains("started in order db → web");
    assert_eq!(running(&project).len(), 1);
    let doc = status(&sb);
    assert_eq!(service(&doc, "web")["state"], "running", "{doc}");
    assert_ne!(service(&doc, "other")["state"], "running", "{doc}");
    sb.run(&["stop"]).expect_code(0);
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn an_unreachable_daemon_fails_the_start_naming_its_socket() {
    require_test_env();
    let project = project("nodaemon");
    let sb = stack(
        &project,
        &format!(
            "[services.db.docker]\nimage = \"{IMAGE}\"\n\
             [services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n"
        ),
    );
    let mut cmd = sb.command(&["run"]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent");
    let ran = Ran::of(cmd);
    ran.expect_code(9)
        .expect_stderr_contains("service `db`")
        .expect_stderr_contains("unix:///nonexistent");
    assert_eq!(marked(&project), Vec::<i32>::new(), "web never started");
    assert!(containers(&project).is_empty());
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn exec_and_log_probes_look_inside_the_container() {
    require_test_env();
    let project = project("probes");
    let port = free_port();
    // `inside` is ready once wget inside it gets its page (the Engine's exec); `said` once
    // its output has the line (the container's logs).
    let sb = stack(
        &project,
        &format!(
            "[services.inside]\n\
             ready = {{ exec = [\"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/\"], interval = \"100ms\", start_timeout = \"20s\" }}\n\
             [services.inside.docker]\nimage = \"{IMAGE}\"\nports = [\"{port}:8080\"]\n\
             command = [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n\
             [services.said]\ndepends_on = [\"inside\"]\n\
             ready = {{ log = \"^listening on [0-9]+$\", start_timeout = \"20s\" }}\n\
             [services.said.docker]\nimage = \"{IMAGE}\"\n\
             command = [\"sh\", \"-c\", \"sleep 0.5; echo listening on 42; exec sleep 300\"]\n"
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    let ran = sb.run(&["-v", "run", "--detach"]);
    ran.expect_code(0)
        .expect_stdout_contains("exec `wget -q -O /dev/null http://127.0.0.1:8080/` passed")
        .expect_stdout_contains("log line matched /^listening on [0-9]+$/")
        .expect_stdout_contains("started in order inside → said");
    assert_eq!(running(&project).len(), 2);
    sb.run(&["stop"]).expect_code(0);
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_missing_image_offline_fails_the_start_naming_the_image_and_the_pull() {
    require_test_env();
    let project = project("noimage");
    let sb = stack(
        &project,
        "[services.db.docker]\nimage = \"ccscope-test/not-there:1\"\n\
         [services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n",
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    sb.run(&["run"])
        .expect_code(9)
        .expect_stderr_contains("service `db`")
        .expect_stderr_contains("ccscope-test/not-there:1")
        .expect_stderr_contains("docker pull ccscope-test/not-there:1");
    assert_eq!(marked(&project), Vec::<i32>::new(), "web never started");
    assert!(containers(&project).is_empty());
}

/// An image of the offline busybox with a HEALTHCHECK, made here (`docker commit`, no
/// registry); removed on drop.
struct HealthyImage(String);

impl HealthyImage {
    fn new(project: &str) -> HealthyImage {
        let tag = format!("ccscope-test/healthy:{project}");
        let created = Command::new("docker")
            .args(["create", "--label", "ccscope.test=1", IMAGE, "true"])
            .output()
            .expect("run docker create");
        assert!(created.status.success(), "{created:?}");
        let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
        let committed = Command::new("docker")
            .args([
                "commit",
                "--change",
                "HEALTHCHECK --interval=1s --timeout=1s CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1",
                &id,
                &tag,
            ])
            .output()
            .expect("run docker commit");
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        assert!(committed.status.success(), "{committed:?}");
        HealthyImage(tag)
    }
}

impl Drop for HealthyImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn ready_docker_healthy_waits_for_the_images_healthcheck() {
    require_test_env();
    let project = project("healthy");
    let image = HealthyImage::new(&project);
    let sb = stack(
        &project,
        &format!(
            "[services.db]\nready = {{ docker = \"healthy\", interval = \"200ms\", start_timeout = \"30s\" }}\n\
             [services.db.docker]\nimage = \"{}\"\n\
             command = [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/index.html && sleep 1 && exec httpd -f -p 8080 -h /www\"]\n\
             [services.web]\nshell = \"exec sleep 300\"\ndepends_on = [\"db\"]\n",
            image.0
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        project: project.clone(),
    };
    sb.run(&["-v", "run", "--detach"])
        .expect_code(0)
        .expect_stdout_contains("docker HEALTHCHECK healthy passed")
        .expect_stdout_contains("started in order db → web");
    let health = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Health.Status}}"])
        .args(running(&project))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "healthy");
    sb.run(&["stop"]).expect_code(0);
}
