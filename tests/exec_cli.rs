//! `ccscope exec` end to end, on every backend: the command runs inside a scope of the
//! project with its markers, its exit code, stdin and signals pass through, what it leaves
//! behind stays contained and registered, and bad input leaves nothing behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{Ran, Sandbox, require_test_env};

const BACKENDS: [&str; 3] = ["systemd", "cgroupfs", "pgroup"];

fn sandbox(project: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\n[services.worker]\ncommand = [\"true\"]\nenv = {{ WORKER_MODE = \"batch\" }}\n\n\
             [services.badcwd]\ncommand = [\"true\"]\ncwd = \"no/such/dir\"\n\n[services.badenv]\ncommand = [\"true\"]\nenv_file = \"missing.env\"\n\n\
             [services.limited]\ncommand = [\"true\"]\nlimits = {{ memory = \"64M\", tasks = 32 }}\n"
        ),
    );
    sb
}

fn project(tag: &str) -> String {
    format!("x{}-{tag}", std::process::id())
}

/// Ends whatever a test left running, and the scopes and cgroups holding it.
fn kill_recorded(sb: &Sandbox) {
    sb.run(&["stop", "--force"]).expect_code(0);
}

#[test]
#[ignore = "system test: needs the user manager, session bus and root cgroupfs of scripts/test-env.sh (run scripts/test.sh)"]
fn runs_inside_the_project_scope_with_markers_and_exit_code() {
    require_test_env();
    for backend in BACKENDS {
        let project = project(backend);
        let sb = sandbox(&project);
        let ran = sb.run(&[
            "exec", "--backend", backend, "--service", "worker", "--",
            "sh", "-c", "echo \"$CCSCOPE_PROJECT/$CCSCOPE_SERVICE/$WORKER_MODE\"; grep '^0::' /proc/self/cgroup; exit 3",
        ]);
        ran.expect_code(3)
            .expect_stdout_contains(&format!("{project}/worker/batch"));
        let cgroup_line = ran
            .stdout()
            .lines()
            .find(|l| l.starts_with("0::"))
            .unwrap_or_default()
            .to_string();
        match backend {
            "systemd" => assert!(
                cgroup_line.contains(&format!(
                    "ccscope-{}.slice/ccscope-{}-worker-",
                    project.replace('-', "\\x2d"),
                    project.replace('-', "\\x2d")
                )),
                "{cgroup_line}"
            ),
            "cgroupfs" => assert!(
                cgroup_line.contains(&format!("/ccscope/{project}/worker@")),
                "{cgroup_line}"
            ),
            _ => {}
        }
        // Nothing was left: the registry is empty again and the scope is gone.
        let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
        assert_eq!(doc["processes"], serde_json::json!([]), "{backend}");
    }
}

#[test]
#[ignore = "system test: needs the user manager, session bus and root cgroupfs of scripts/test-env.sh (run scripts/test.sh)"]
fn stdin_passes_through_and_leftovers_stay_contained() {
    require_test_env();
    for backend in BACKENDS {
        let sb = sandbox(&project(&format!("in-{backend}")));
        let mut cmd = sb.command(&[
            "exec",
            "--backend",
            backend,
            "--",
            "sh",
            "-c",
            "cat; setsid sleep 300 >/dev/null 2>&1 </dev/null &",
        ]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello through stdin\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{backend}: {stderr}");
        assert_eq!(stdout, "hello through stdin\n", "{backend}");
        assert!(
            stderr.contains("still run, contained in"),
            "{backend}: {stderr}"
        );
        // The daemon was forked before the command exited, so it is registered; `ps` shows
        // its command line as it is now (once it has exec'd sleep).
        let mut doc = serde_json::Value::Null;
        common::wait_for(
            "ps to show the daemonized sleep",
            std::time::Duration::from_secs(5),
            || {
                doc = sb.run(&["ps", "--json"]).expect_code(0).json();
                let procs = doc["processes"].as_array().unwrap();
                procs.len() == 1
                    && procs[0]["command_line"]
                        .as_str()
                        .unwrap()
                        .ends_with("sleep 300")
            },
        );
        kill_recorded(&sb);
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn sigterm_to_ccscope_reaches_the_command() {
    require_test_env();
    for backend in BACKENDS {
        let sb = sandbox(&project(&format!("sig-{backend}")));
        let mut cmd = sb.command(&[
            "exec",
            "--backend",
            backend,
            "--",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready", "{backend}");
        ccscope::proc::sys::kill(child.id() as i32, libc::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(7),
            "{backend}: the command's TERM trap ran and its exit code came back"
        );
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn bad_input_is_refused_and_leaves_nothing() {
    require_test_env();
    for backend in BACKENDS {
        let project = project(&format!("bad-{backend}"));
        let sb = sandbox(&project);
        sb.run(&[
            "exec",
            "--backend",
            backend,
            "--",
            "no-such-program-anywhere",
        ])
        .expect_code(7)
        .expect_stderr_contains("command `no-such-program-anywhere` was not found in PATH");
        sb.write("script.sh", "echo not executable\n");
        sb.run(&["exec", "--backend", backend, "--", "./script.sh"])
            .expect_code(7)
            .expect_stderr_contains("is not an executable file");
        sb.run(&[
            "exec",
            "--backend",
            backend,
            "--service",
            "badcwd",
            "--",
            "true",
        ])
        .expect_code(7)
        .expect_stderr_contains("working directory");
        sb.run(&[
            "exec",
            "--backend",
            backend,
            "--service",
            "badenv",
            "--",
            "true",
        ])
        .expect_code(7)
        .expect_stderr_contains("could not read env file");
        let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
        assert_eq!(
            doc["processes"],
            serde_json::json!([]),
            "{backend}: nothing registered"
        );
        if backend == "cgroupfs" {
            let mount = ccscope::contain::cgroup::v2_mount().unwrap().unwrap();
            assert!(
                !mount.join("ccscope").join(&project).exists(),
                "no cgroup left behind"
            );
        }
    }
    // No scope of these projects was ever created in systemd.
    let out = std::process::Command::new("systemctl")
        .args([
            "--user",
            "list-units",
            "--all",
            "--no-legend",
            &format!("ccscope-x{}\\x2dbad*.scope", std::process::id()),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "no scope left behind"
    );
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn doctor_names_the_backend_and_what_answers() {
    require_test_env();
    let sb = Sandbox::new();
    let doc = sb.run(&["doctor", "--json"]).expect_code(0).json();
    assert_eq!(doc["backend"], "systemd");
    assert_eq!(doc["journald"]["reachable"], true);
    let names: Vec<&str> = doc["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["systemd", "cgroupfs", "pgroup"]);
    sb.run(&["doctor", "--backend", "cgroupfs"])
        .expect_code(0)
        .expect_stdout_contains("backend: cgroupfs");
    let mut no_bus = sb.command(&["doctor", "--json"]);
    no_bus.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let doc = Ran::of(no_bus).expect_code(0).json();
    assert_eq!(doc["backend"], "cgroupfs", "without a bus, cgroupfs: {doc}");
    assert_eq!(doc["candidates"][0]["available"], false);
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn unenforceable_limits_warn_or_refuse_under_strict_limits() {
    require_test_env();
    let mount = ccscope::contain::cgroup::v2_mount().unwrap().unwrap();
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
    let host_enforces = ["memory", "pids"]
        .iter()
        .all(|c| controllers.split_whitespace().any(|x| x == *c));
    for backend in BACKENDS {
        let sb = sandbox(&project(&format!("lim-{backend}")));
        // The process-group backend never can; cgroup backends can where v2 has the controllers.
        if host_enforces && backend != "pgroup" {
            let ran = sb.run(&[
                "exec",
                "--backend",
                backend,
                "--strict-limits",
                "--service",
                "limited",
                "--",
                "true",
            ]);
            ran.expect_code(0);
            assert!(
                !ran.stderr().contains("not enforced"),
                "{backend}: {}",
                ran.stderr()
            );
            continue;
        }
        sb.run(&[
            "exec",
            "--backend",
            backend,
            "--service",
            "limited",
            "--",
            "true",
        ])
        .expect_code(0)
        .expect_stderr_contains("service `limited`: the memory limit is not enforced");
        sb.run(&[
            "exec",
            "--backend",
            backend,
            "--strict-limits",
            "--service",
            "limited",
            "--",
            "true",
        ])
        .expect_code(6)
        .expect_stderr_contains("limits cannot be enforced: memory");
        let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
        assert_eq!(
            doc["processes"],
            serde_json::json!([]),
            "{backend}: nothing started under --strict-limits"
        );
    }
}
