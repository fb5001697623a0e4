//! The smaller findings of issue 10, end to end: a long output line reaches the journal (and
//! the log file) whole, in marked pieces; a NUL in the configuration is refused by `check`
//! with its location; a failed detached start's hint gives the command that reproduces it; a
//! long stop says what it waits for; `status` of scopes that emptied behind the registry's
//! back does not say "running".

mod common;

use std::time::Duration;

use ccscope::contain::{AnyContainment, BackendChoice, BackendKind, BusKind, Containment, detect};
use ccscope::launch::{Launched, OutputTarget, launch};
use common::{Sandbox, marked, require_test_env, wait_for};

fn project(tag: &str) -> String {
    format!("m{}-{tag}", std::process::id())
}

/// One line of 3.3 MB without a newline until its end: `a`, 3,000,000 `x`, then 100,000 `€`
/// (three bytes each, so a cut every 48 KiB would fall inside one), then a marker line.
fn long_line_script(marker: &str) -> String {
    format!(
        "printf a; head -c 3000000 /dev/zero | tr '\\0' x; \
         yes '€' | tr -d '\\n' | head -c 300000; echo; echo {marker}; \
         echo > \"$READY\"; exec sleep 300"
    )
}

const LONG_LINE_BYTES: usize = 1 + 3_000_000 + 300_000;

async fn systemd() -> AnyContainment {
    detect(
        BackendChoice::Forced(BackendKind::Systemd),
        BusKind::Session,
    )
    .await
    .unwrap()
    .0
}

async fn kill_and_wait(c: &AnyContainment, mut launched: Launched) {
    c.kill(&launched.scope).await.unwrap();
    assert!(
        c.wait_empty(&launched.scope, Duration::from_secs(10))
            .await
            .unwrap(),
        "{} did not empty within 10 s after kill",
        launched.scope.display_name()
    );
    let _ = launched.child.wait();
}

/// Every journal entry matching `filters`, fields of any size included (`--all`: without it
/// journalctl prints a field over 4 KiB as null).
fn all_entries(filters: &[String]) -> Vec<serde_json::Value> {
    let _ = std::process::Command::new("journalctl")
        .arg("--sync")
        .status();
    let out = std::process::Command::new("journalctl")
        .args(["-o", "json", "--all", "--no-pager"])
        .args(filters)
        .output()
        .expect("run journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("journalctl -o json prints JSON"))
        .collect()
}

#[test]
#[ignore = "system test: needs journald and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn a_long_line_reaches_the_journal_whole_in_marked_pieces() {
    require_test_env();
    common::runtime().block_on(async {
        let c = systemd().await;
        let dir = tempfile::tempdir().unwrap();
        let mut spec = common::shell_service(&project("longline"), "talker", "", dir.path());
        let marker = format!("done-{}", spec.run_id);
        spec.argv[2] = long_line_script(&marker);
        spec.output = OutputTarget::Journald;
        let launched = launch(&c, &spec).await.unwrap();
        common::wait_ready(dir.path(), "talker");
        let identifier = format!("SYSLOG_IDENTIFIER={}/talker", spec.project);
        common::wait_for_journal_entry(
            "the marker line after the long one",
            &[identifier.clone(), format!("MESSAGE={marker}")],
        );
        let entries = all_entries(&[identifier, "PRIORITY=6".to_string()]);
        kill_and_wait(&c, launched).await;
        let (last, long) = entries.split_last().expect("entries");
        assert_eq!(last["MESSAGE"], marker.as_str());
        let (end, pieces) = long.split_last().expect("pieces of the long line");
        // journald cuts at its LineMax, inside a character if it must: such a piece is printed
        // as an array of bytes, and the pieces are joined as bytes.
        let bytes = |e: &serde_json::Value| -> Vec<u8> {
            match &e["MESSAGE"] {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|b| b.as_u64().expect("a byte") as u8)
                    .collect(),
                other => panic!("MESSAGE is text or bytes: {other}"),
            }
        };
        let mut joined = Vec::new();
        for p in pieces {
            assert_eq!(p["_LINE_BREAK"], "line-max", "{}", bytes(p).len());
            joined.extend(bytes(p));
        }
        assert!(
            end.get("_LINE_BREAK").is_none(),
            "the line's last piece is not marked"
        );
        joined.extend(bytes(end));
        let whole = String::from_utf8(joined).expect("the pieces join back to the line");
        assert_eq!(whole.len(), LONG_LINE_BYTES, "{} entries", long.len());
        assert!(!whole.contains('\u{FFFD}'), "a character was cut in two");
        assert!(whole.starts_with("ax") && whole.ends_with("€€"));
        assert_eq!(whole.matches('x').count(), 3_000_000);
        assert_eq!(whole.matches('€').count(), 100_000);
        assert!(
            long.len() < 200,
            "{} entries: far below the rate limit",
            long.len()
        );
    });
}

#[test]
#[ignore = "system test: needs the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn a_long_line_reaches_the_log_file_byte_for_byte() {
    require_test_env();
    common::runtime().block_on(async {
        let c = systemd().await;
        let dir = tempfile::tempdir().unwrap();
        let mut spec = common::shell_service(&project("longfile"), "talker", "", dir.path());
        let marker = format!("done-{}", spec.run_id);
        spec.argv[2] = long_line_script(&marker);
        // With a tap (a `log` readiness probe reads along) the forwarder writes the file; alone,
        // the service writes it itself.
        spec.tap = true;
        let log = dir.path().join("talker.log");
        let expected_len = LONG_LINE_BYTES + 1 + marker.len() + 1;
        let launched = launch(&c, &spec).await.unwrap();
        common::wait_ready(dir.path(), "talker");
        wait_for(
            "the log file to hold both lines",
            Duration::from_secs(20),
            || std::fs::metadata(&log).is_ok_and(|m| m.len() as usize >= expected_len),
        );
        kill_and_wait(&c, launched).await;
        let bytes = std::fs::read(&log).unwrap();
        let text = String::from_utf8(bytes).expect("whole characters");
        assert_eq!(text.len(), expected_len, "no byte lost or added");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "no newline added inside the long line");
        assert_eq!(lines[0].len(), LONG_LINE_BYTES);
        assert_eq!(lines[1], marker);
        assert!(marked(&spec.project).is_empty());
    });
}

#[test]
fn check_refuses_a_nul_in_an_env_value_with_its_location() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"nul\"\n[services.a]\ncommand = [\"true\"]\n\
         env = { BAD = \"x\\u0000y\" }\n",
    );
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains("ccscope.toml:5:17")
        .expect_stderr_contains("the value of `BAD` in the env of service `a` contains a NUL");
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_failed_detached_start_hints_the_command_that_reproduces_it() {
    require_test_env();
    let project = project("hint");
    let sb = Sandbox::new();
    // A stack whose readiness never comes, in a file that lookup would not find.
    sb.write(
        "stacks/dev.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"1s\"\n\
             [services.web]\nshell = \"exec sleep 300\"\n\
             ready = {{ exec = [\"false\"], interval = \"100ms\", start_timeout = \"1s\" }}\n"
        ),
    );
    let state = sb.state_dir();
    let state = state.to_str().unwrap();
    let ran = sb.run(&[
        "-f",
        "stacks/dev.toml",
        "--state-dir",
        state,
        "run",
        "--detach",
        "--backend",
        "systemd",
    ]);
    ran.expect_code(9).expect_stderr_contains(&format!(
        "run it in the foreground to see why: ccscope run -f stacks/dev.toml \
         --state-dir {state} --backend systemd"
    ));
    assert_eq!(marked(&project), Vec::<i32>::new());
}

/// A sandbox whose project `web` has a stop timeout of an hour, and `web` running on systemd,
/// ignoring SIGTERM.
fn web_ignoring_term_for_an_hour(tag: &str) -> (String, Sandbox) {
    let project = project(tag);
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[services.web]\ncommand = [\"true\"]\n\
             stop_timeout = \"1h\"\n"
        ),
    );
    common::runtime().block_on(async {
        let c = systemd().await;
        let spec = common::shell_service(&project, "web", common::scripts::IGNORES_TERM, sb.path());
        let launched = launch(&c, &spec).await.unwrap();
        // The scope is `stop`'s to end.
        std::mem::forget(launched.child);
        common::wait_ready(sb.path(), "web");
    });
    (project, sb)
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn a_long_stop_says_what_it_waits_for_and_stop_force_cuts_it_short() {
    use std::io::BufRead;
    require_test_env();
    let (project, sb) = web_ignoring_term_for_an_hour("longstop");
    let mut slow = sb
        .command(&["stop", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The notice comes on stderr a few seconds into the grace; read it on a thread of its own.
    let stderr = slow.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let notice = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a notice on stderr while stop waits");
    assert!(
        notice.starts_with("`web` has not exited 3s after SIGTERM: waiting up to 59m5"),
        "{notice}"
    );
    assert!(
        notice.ends_with("`ccscope stop --force` (from another terminal) kills what is left now"),
        "{notice}"
    );
    sb.run(&["stop", "--force"]).expect_code(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = slow.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first stop still waits after stop --force"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut slow.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("--json stdout is JSON only");
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(marked(&project), Vec::<i32>::new());
}

/// A foreground `ccscope run`, resumed and stopped if the test ends early.
struct Foreground(std::process::Child);

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) {
            let pid = self.0.id() as i32;
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGTERM);
            }
            let _ = self.0.wait();
        }
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn status_of_a_service_whose_scope_was_emptied_behind_the_registry_is_not_running() {
    require_test_env();
    let project = project("emptied");
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n\
             [services.web]\ncommand = [\"sleep\", \"300\"]\n"
        ),
    );
    let mut run = Foreground(
        sb.command(&["run", "--backend", "systemd"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let supervisor = run.0.id() as i32;
    let web =
        |sb: &Sandbox| sb.run(&["status", "--json"]).expect_code(0).json()["services"][0].clone();
    wait_for(
        "web to be running and ready",
        Duration::from_secs(20),
        || {
            let w = web(&sb);
            w["state"] == "running" && w["ready"] == true
        },
    );
    // The supervisor, held still, cannot see or answer what happens next: its record says
    // `running, ready` while the scope is emptied behind its back.
    unsafe { libc::kill(supervisor, libc::SIGSTOP) };
    let unit = web(&sb)["scopes"][0].as_str().unwrap().to_string();
    let killed = std::process::Command::new("systemctl")
        .args(["--user", "kill", "--signal=SIGKILL", &unit])
        .status()
        .unwrap();
    assert!(killed.success(), "systemctl --user kill {unit}");
    wait_for("the scope to be empty", Duration::from_secs(10), || {
        marked(&project).is_empty()
    });
    let w = web(&sb);
    unsafe { libc::kill(supervisor, libc::SIGCONT) };
    assert_eq!(w["state"], "stopped", "{w}");
    assert_eq!(w["processes"], 0, "{w}");
    assert_eq!(w["ready"], false, "{w}");
    assert!(
        w["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("recorded as running, but no process is left")),
        "{w}"
    );
    unsafe { libc::kill(supervisor, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "run did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.run(&["stop"]);
    assert_eq!(marked(&project), Vec::<i32>::new());
}
