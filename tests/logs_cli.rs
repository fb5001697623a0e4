//! `ccscope logs` against the real journald and user manager: two chatty services run
//! detached; their output comes back prefixed and interleaved in journal time order, with
//! `-n`, `--since`, `--grep`, `--no-prefix`, `--json` and a did-you-mean for an unknown
//! service; `--follow` shows both live and goes on across `ccscope restart` of one of them,
//! and Ctrl-C ends it (and its journalctl) with 130. What a service prints right before it
//! crashes is all there. Without journald (its socket hidden by a mount namespace) the log
//! files in the state directory answer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Ran, Sandbox, require_test_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("lg{}-{tag}", std::process::id())
}

/// A service printing `NAME PID i` for i in 1..=count, a few ms apart (then one stderr line
/// and sleeping on), or forever with `count` 0.
fn chatty(name: &str, count: u32) -> String {
    let lines = if count == 0 {
        "while :; do i=$((i+1)); echo \"NAME $$ $i\"; sleep 0.02; done".to_string()
    } else {
        format!(
            "while [ $i -lt {count} ]; do i=$((i+1)); echo \"NAME $$ $i\"; sleep 0.01; done; \
             echo \"NAME $$ done\" >&2; exec sleep 300"
        )
    };
    format!(
        "[services.{name}]\nshell = '''i=0; {}'''\n",
        lines.replace("NAME", name)
    )
}

fn stack(project: &str, services: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!("[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"2s\"\n{services}"),
    );
    sb
}

/// Stops what the test started, passed or failed.
struct Cleanup<'a> {
    sb: &'a Sandbox,
    children: Vec<Child>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.sb.command(&["stop", "--force"]).output();
    }
}

/// `logs --json ARGS` as parsed lines.
fn logs_json(sb: &Sandbox, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    let ran = sb.run(&all);
    ran.expect_code(0);
    ran.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn messages(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

/// The numbers `SERVICE PID i` lines of `service` carry, in order.
fn numbers(lines: &[String], service: &str) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(service)).then_some(())?;
            words.nth(1)?.parse().ok()
        })
        .collect()
}

/// Each line's journal time is at or after the one before it.
fn assert_time_ordered(lines: &[serde_json::Value]) {
    let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
    // RFC 3339 in UTC with a fixed number of digits: as strings they sort as times.
    for pair in times.windows(2) {
        assert!(
            pair[0] <= pair[1],
            "out of time order: {pair:?} in {times:?}"
        );
    }
}

#[test]
#[ignore = "system test: needs journald and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn logs_interleave_two_services_in_time_order_with_prefixes_and_filters() {
    require_test_env();
    let project = project("two");
    let sb = stack(
        &project,
        &format!("{}{}", chatty("alpha", 30), chatty("beta", 30)),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        children: vec![],
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    let mut all = Vec::new();
    wait_for("both services' 31 lines in logs", DEADLINE, || {
        all = logs_json(&sb, &[]);
        all.len() >= 62
    });
    assert_eq!(all.len(), 62, "{:#?}", messages(&all));
    let texts = messages(&all);
    assert_eq!(numbers(&texts, "alpha"), (1..=30).collect::<Vec<_>>());
    assert_eq!(numbers(&texts, "beta"), (1..=30).collect::<Vec<_>>());
    assert_time_ordered(&all);
    // Interleaved, not one service after the other: beta's first line comes before alpha's last.
    let first_beta = texts.iter().position(|t| t.starts_with("beta ")).unwrap();
    let last_alpha = texts.iter().rposition(|t| t.starts_with("alpha ")).unwrap();
    assert!(first_beta < last_alpha, "{texts:#?}");
    for line in &all {
        let service = line["service"].as_str().unwrap();
        assert!(line["message"].as_str().unwrap().starts_with(service));
        let stream = if line["message"].as_str().unwrap().ends_with(" done") {
            "stderr"
        } else {
            "stdout"
        };
        assert_eq!(line["stream"], stream, "{line}");
    }

    // Human form: the name padded, a bar, the line, in the same order; no colour off a
    // terminal.
    let human = sb.run(&["logs"]);
    human.expect_code(0);
    let rows: Vec<String> = human.stdout().lines().map(String::from).collect();
    let expected: Vec<String> = all
        .iter()
        .map(|l| {
            format!(
                "{:<5} | {}",
                l["service"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rows, expected);
    assert!(!human.stdout().contains('\x1b'));
    let bare = sb.run(&["logs", "--no-prefix"]);
    bare.expect_code(0);
    assert_eq!(bare.stdout().lines().collect::<Vec<_>>(), texts);

    // -n: the last N lines of the stack.
    let last = logs_json(&sb, &["-n", "5"]);
    assert_eq!(messages(&last), texts[texts.len() - 5..]);
    // One service.
    let alpha = messages(&logs_json(&sb, &["alpha"]));
    assert_eq!(alpha.len(), 31);
    assert!(alpha.iter().all(|t| t.starts_with("alpha ")));
    // --grep, and -n of what grep keeps.
    let grep = messages(&logs_json(&sb, &["--grep", r"^beta \d+ (1|2)$"]));
    assert_eq!(grep.len(), 2, "{grep:?}");
    assert_eq!(numbers(&grep, "beta"), [1, 2]);
    let last_alpha = messages(&logs_json(&sb, &["-n", "2", "--grep", r"^alpha \d+ \d+$"]));
    assert_eq!(numbers(&last_alpha, "alpha"), [29, 30]);
    // --since: from a line's own time on, that line included; a span; the future.
    let tenth = all[10]["time"].as_str().unwrap();
    let since = logs_json(&sb, &["--since", tenth]);
    assert_eq!(messages(&since), texts[10..], "--since {tenth}");
    assert_eq!(logs_json(&sb, &["--since", "1h"]).len(), 62);
    assert_eq!(logs_json(&sb, &["--since", "today"]).len(), 62);
    assert!(logs_json(&sb, &["--since", "2999-01-01T00:00:00Z"]).is_empty());

    // Bad input: a near-miss name, a time, a regex.
    sb.run(&["logs", "alpah"])
        .expect_code(2)
        .expect_stderr_contains("`alpah` is not a service of project")
        .expect_stderr_contains("did you mean `alpha`?");
    sb.run(&["logs", "--since", "yesterdayish"])
        .expect_code(2)
        .expect_stderr_contains("RFC 3339");
    sb.run(&["logs", "--grep", "("])
        .expect_code(2)
        .expect_stderr_contains("is not a regular expression");
    // No journalctl to run: said so, with what to do.
    let mut no_journalctl = sb.command(&["logs"]);
    no_journalctl.env("PATH", sb.path().join("empty"));
    Ran::of(no_journalctl)
        .expect_code(1)
        .expect_stderr_contains("could not run journalctl to read the journal")
        .expect_stderr_contains("install");
}

/// `logs ARGS` spawned, its stdout lines coming through a channel.
fn spawn_logs(sb: &Sandbox, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = sb
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ccscope logs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads lines off `rx` into `seen` until `done(seen)` holds, failing after `deadline`.
fn read_until(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    mut done: impl FnMut(&[String]) -> bool,
) {
    let start = Instant::now();
    while !done(seen) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "timed out after {DEADLINE:?} waiting for {what}; the last lines: {:#?}",
                &seen[seen.len().saturating_sub(20)..]
            ),
        }
    }
}

/// The pids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_for(what, DEADLINE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

#[test]
#[ignore = "system test: needs journald and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn logs_follow_shows_both_streams_live_across_a_restart_and_ends_on_ctrl_c() {
    require_test_env();
    let project = project("follow");
    let sb = stack(
        &project,
        &format!("{}{}", chatty("alpha", 0), chatty("beta", 0)),
    );
    let mut cleanup = Cleanup {
        sb: &sb,
        children: vec![],
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    let (child, rx) = spawn_logs(&sb, &["logs", "--follow", "--json", "-n", "1"]);
    let follower = child.id();
    cleanup.children.push(child);
    let mut seen = Vec::new();
    let parse = |l: &String| serde_json::from_str::<serde_json::Value>(l).unwrap();
    let pid_of = |v: &serde_json::Value| -> Option<String> {
        v["message"]
            .as_str()?
            .split_whitespace()
            .nth(1)
            .map(String::from)
    };
    // Live lines of both, more than -n 1 gave.
    read_until(&rx, &mut seen, "20 live lines of each service", |seen| {
        let texts: Vec<String> = seen
            .iter()
            .map(|l| parse(l)["message"].to_string())
            .collect();
        let count = |s: &str| texts.iter().filter(|t| t.contains(s)).count();
        count("alpha ") >= 20 && count("beta ") >= 20
    });
    let first_beta_pid = seen
        .iter()
        .map(parse)
        .find(|v| v["service"] == "beta")
        .and_then(|v| pid_of(&v))
        .unwrap();
    sb.run(&["restart", "beta"]).expect_code(0);
    let restarted_at = seen.len();
    read_until(
        &rx,
        &mut seen,
        "10 lines of the restarted beta and alpha's on",
        |seen| {
            let after: Vec<serde_json::Value> = seen[restarted_at..].iter().map(parse).collect();
            let new_beta = after
                .iter()
                .filter(|v| v["service"] == "beta" && pid_of(v).as_deref() != Some(&first_beta_pid))
                .count();
            let alpha = after.iter().filter(|v| v["service"] == "alpha").count();
            new_beta >= 10 && alpha >= 10
        },
    );
    let all: Vec<serde_json::Value> = seen.iter().map(parse).collect();
    assert_time_ordered(&all);
    let texts = messages(&all);
    // Per instance, the numbers only go up; the restarted one starts again at 1.
    let new_beta: Vec<u32> = all
        .iter()
        .filter(|v| v["service"] == "beta" && pid_of(v).as_deref() != Some(&first_beta_pid))
        .filter_map(|v| {
            v["message"]
                .as_str()?
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(new_beta[0], 1, "{texts:#?}");
    assert!(
        new_beta.windows(2).all(|w| w[1] == w[0] + 1),
        "{new_beta:?}"
    );
    let alpha = numbers(&texts, "alpha");
    assert!(alpha.windows(2).all(|w| w[1] == w[0] + 1), "{alpha:?}");

    // Ctrl-C: SIGINT ends it with 130, and its journalctl with it.
    let helpers = children_of(follower);
    assert!(
        !helpers.is_empty(),
        "logs --follow reads through journalctl"
    );
    ccscope::proc::sys::kill(follower as i32, libc::SIGINT).unwrap();
    let mut child = cleanup.children.pop().unwrap();
    let status = wait_exit(&mut child, "logs --follow to end on SIGINT");
    assert_eq!(status.code(), Some(130), "{status:?}");
    for pid in helpers {
        wait_for(&format!("journalctl {pid} to be gone"), DEADLINE, || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| !s.contains(&format!("({}", "journalctl")))
        });
    }
}

#[test]
#[ignore = "system test: needs journald and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn output_written_right_before_a_crash_is_in_the_logs() {
    require_test_env();
    let project = project("crash");
    let sb = stack(
        &project,
        "[services.steady]\nshell = \"exec sleep 300\"\n\
         [services.crashy]\nrestart = \"no\"\n\
         shell = '''sleep 0.3; i=0; while [ $i -lt 500 ]; do i=$((i+1)); echo \"last words $i\"; done; \
         echo 'dying now' >&2; exit 1'''\n",
    );
    let _cleanup = Cleanup {
        sb: &sb,
        children: vec![],
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    wait_for("crashy to have exited", DEADLINE, || {
        let status = sb.run(&["status", "--json"]);
        status.code() == 0
            && status.json()["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["service"] == "crashy" && s["state"] != "running")
    });
    let mut lines = Vec::new();
    wait_for("crashy's 501 lines", DEADLINE, || {
        lines = messages(&logs_json(&sb, &["crashy"]));
        lines.len() >= 501
    });
    let expected: Vec<String> = (1..=500)
        .map(|i| format!("last words {i}"))
        .chain(["dying now".to_string()])
        .collect();
    assert_eq!(lines, expected);
}

/// `ccscope ARGS` in a mount namespace where journald's socket directory is an empty tmpfs:
/// for ccscope (and the services it starts) there is no journald.
fn without_journald(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run/systemd/journal && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_ccscope"))
        .args(args)
        .current_dir(sb.path())
        .env_remove("CCSCOPE_CONFIG")
        .env_remove("CCSCOPE_LOG")
        .env("CCSCOPE_STATE_DIR", sb.state_dir());
    cmd
}

#[test]
#[ignore = "system test: needs root and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn without_journald_the_log_files_answer_and_follow_across_a_restart() {
    require_test_env();
    let project = project("files");
    let sb = stack(
        &project,
        &format!("{}{}", chatty("alpha", 20), chatty("beta", 0)),
    );
    let mut cleanup = Cleanup {
        sb: &sb,
        children: vec![],
    };
    // In the foreground: a detached supervisor would run in the user manager's namespace.
    let run = without_journald(&sb, &["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ccscope run");
    cleanup.children.push(run);
    let logs = sb.state_dir().join("logs").join(&project);
    wait_for("alpha's 21 lines in its log file", DEADLINE, || {
        std::fs::read_to_string(logs.join("alpha.log")).is_ok_and(|t| t.lines().count() >= 21)
    });
    let ran = Ran::of(without_journald(&sb, &["logs", "--json", "alpha"]));
    ran.expect_code(0);
    let lines: Vec<serde_json::Value> = ran
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts = messages(&lines);
    assert_eq!(numbers(&texts, "alpha"), (1..=20).collect::<Vec<_>>());
    assert!(texts.last().unwrap().ends_with(" done"), "{texts:?}");
    // The files have no times and mix both streams.
    assert!(
        lines
            .iter()
            .all(|l| l["time"].is_null() && l["stream"].is_null())
    );
    let human = Ran::of(without_journald(&sb, &["logs", "-n", "2"]));
    human.expect_code(0);
    let rows: Vec<String> = human.stdout().lines().map(String::from).collect();
    assert_eq!(rows.len(), 4, "the last 2 of each service: {rows:?}");
    assert!(rows[0].starts_with("alpha | alpha ") && rows[2].starts_with("beta  | beta "));
    Ran::of(without_journald(&sb, &["logs", "--since", "10m"]))
        .expect_code(2)
        .expect_stderr_contains("carry no timestamps");

    // Following the files: beta's new lines come, and the restarted beta's.
    let mut follow = without_journald(&sb, &["logs", "--follow", "--no-prefix", "-n", "0", "beta"]);
    let mut child = follow
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let follower = child.id();
    cleanup.children.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, "10 new lines of beta", |s| s.len() >= 10);
    let first_pid = seen[0].split_whitespace().nth(1).unwrap().to_string();
    Ran::of(without_journald(&sb, &["restart", "beta"])).expect_code(0);
    read_until(&rx, &mut seen, "5 lines of the restarted beta", |s| {
        s.iter()
            .filter(|l| l.split_whitespace().nth(1) != Some(first_pid.as_str()))
            .count()
            >= 5
    });
    let restarted: Vec<u32> = seen
        .iter()
        .filter(|l| l.split_whitespace().nth(1) != Some(first_pid.as_str()))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert_eq!(restarted[..3], [1, 2, 3], "{seen:#?}");
    ccscope::proc::sys::kill(follower as i32, libc::SIGINT).unwrap();
    let mut child = cleanup.children.pop().unwrap();
    assert_eq!(
        wait_exit(&mut child, "logs --follow to end").code(),
        Some(130)
    );
}
