//! `ccscope audit` against the real journald (and, with journald's socket hidden from the
//! process by a mount namespace, the fallback file): a crash loop's crashes with their exit
//! codes, a stop by the unprivileged test user that had to leave our processes alone (with
//! that uid as the actor), and the stop with its outcome; filters by service, event and time;
//! `journalctl` sees the same entries by our fields.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{OtherSandbox, Sandbox, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn project(tag: &str) -> String {
    format!("au{}-{tag}", std::process::id())
}

/// db runs; dashboard crashes (exit 3) until its restart policy gives up.
fn crash_loop(project: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n\
         [services.db]\nshell = \"exec sleep 4242{tag}\"\n\
         discover = {{ cmdline = [\"^sleep 4242{tag}$\"] }}\n\
         [services.dashboard]\nshell = \"echo boom; sleep 0.1; exit 3\"\noptional = true\n\
         depends_on = {{ db = \"started\" }}\n\
         restart = {{ policy = \"on-failure\", initial_backoff = \"20ms\", max_restarts = 3 }}\n",
        tag = std::process::id() % 1000
    )
}

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

fn audit(sb: &Sandbox, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "audit"];
    all.extend_from_slice(args);
    sb.run(&all)
        .expect_code(0)
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn events(entries: &[serde_json::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
#[ignore = "system test: needs journald, the user manager and the unprivileged test user (scripts/test.sh)"]
fn the_trail_names_crashes_a_refused_stop_by_another_user_and_the_stop() {
    let project = project("trail");
    let sb = Sandbox::new();
    let config = crash_loop(&project);
    sb.write("ccscope.toml", &config);
    let _cleanup = Cleanup {
        sb: &sb,
        children: Vec::new(),
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    wait_for("the crash loop to give up", DEADLINE, || {
        events(&audit(&sb, &["--service", "dashboard"])).contains(&"service.failed".to_string())
    });

    // The unprivileged user stops "the same project": our processes are not theirs.
    let other = OtherSandbox::new();
    other.write("ccscope.toml", &config);
    let ran = other.run(&["stop"]);
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert!(
        ran.stderr()
            .contains("belong to other users and were left alone"),
        "the other user is told: {}",
        ran.stderr()
    );
    sb.run(&["stop"]).expect_code(0);

    let entries = audit(&sb, &[]);
    let crashes: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["event"] == "service.restarting" && e["service"] == "dashboard")
        .collect();
    assert_eq!(
        crashes.len(),
        3,
        "three crashes before it gave up: {entries:#?}"
    );
    for crash in &crashes {
        assert_eq!(crash["fields"]["CCSCOPE_EXIT_CODE"], "3", "{crash:#}");
        assert_eq!(crash["priority"], 4, "a crash is a warning");
        assert!(crash["message_id"].is_string());
    }
    let failed = entries
        .iter()
        .find(|e| e["event"] == "service.failed")
        .expect("the give-up");
    assert_eq!(failed["priority"], 3, "a crash loop given up is an error");
    let refused = entries
        .iter()
        .find(|e| e["event"] == "stop.refused")
        .unwrap_or_else(|| panic!("the refusal is in the trail: {entries:#?}"));
    assert_eq!(refused["actor_uid"], other.user.uid, "{refused:#}");
    let stop = entries
        .iter()
        .find(|e| e["event"] == "stop.complete" && e["actor_uid"] == 0)
        .expect("our stop");
    assert!(
        stop["message"].as_str().unwrap().contains("COMPLETE"),
        "{stop:#}"
    );
    // Oldest first, and every supervisor entry carries the run id.
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let run_id = entries
        .iter()
        .find(|e| e["event"] == "run.started")
        .and_then(|e| e["run_id"].as_str())
        .expect("run.started has the run id")
        .to_string();
    let of_run = audit(&sb, &["--run", &run_id]);
    assert!(of_run.iter().all(|e| e["run_id"] == run_id.as_str()));
    assert!(events(&of_run).contains(&"service.failed".to_string()));

    // journald's own reader sees the same entries by our fields.
    let journal = common::journal_entries(&[
        format!("CCSCOPE_PROJECT={project}"),
        "CCSCOPE_EVENT=service.failed".into(),
    ]);
    assert_eq!(journal.len(), 1, "{journal:#?}");
    assert_eq!(journal[0]["MESSAGE_ID"], failed["message_id"]);
    assert_eq!(journal[0]["PRIORITY"], "3");

    // -x explains with the catalogue's text, the fields filled in.
    let explained = sb
        .run(&["audit", "--event", "failed", "-x"])
        .expect_code(0)
        .stdout();
    assert!(
        explained.contains("-- Subject: dashboard failed and is not restarted"),
        "{explained}"
    );
}

#[test]
#[ignore = "system test: needs journald and the user manager (scripts/test.sh)"]
fn filters_by_service_event_and_time_answer_exactly_what_was_asked() {
    let project = project("filter");
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        &format!(
            "[project]\nname = \"{project}\"\n\
             [services.db]\nshell = \"exec sleep 300\"\n\
             [services.dashboard]\nshell = \"exec sleep 301\"\n"
        ),
    );
    let _cleanup = Cleanup {
        sb: &sb,
        children: Vec::new(),
    };
    sb.run(&["run", "--detach"]).expect_code(0);
    sb.run(&["stop", "dashboard"]).expect_code(0);
    sb.run(&["stop"]).expect_code(0);
    let lines = sb
        .run(&[
            "audit",
            "--service",
            "dashboard",
            "--event",
            "stopped",
            "--since",
            "1m",
        ])
        .expect_code(0)
        .stdout();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("service.stopped"), "{}", lines[0]);
    assert!(
        lines[0].contains("asked by uid 0"),
        "who asked is in the reason: {}",
        lines[0]
    );
    // A window that ended before the run has nothing of it.
    let none = audit(&sb, &["--until", "2000-01-01T00:00:00Z"]);
    assert!(none.is_empty(), "{none:#?}");
    let last = audit(&sb, &["-n", "2"]);
    assert_eq!(last.len(), 2);
    assert_eq!(last[1]["event"], "run.stopped");
    sb.run(&["audit", "--event", "explode"])
        .expect_code(2)
        .expect_stderr_contains("is no event ccscope writes");
    sb.run(&["audit", "--since", "soon"])
        .expect_code(2)
        .expect_stderr_contains("is not a time");
}

/// `ccscope ARGS` in a mount namespace where journald's socket directory is an empty tmpfs.
fn without_journald(sb: &Sandbox, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_ccscope");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run/systemd/journal && exec \"$0\" \"$@\"")
        .arg(bin)
        .args(args)
        .current_dir(sb.path())
        .env_remove("CCSCOPE_CONFIG")
        .env("CCSCOPE_STATE_DIR", sb.state_dir());
    cmd
}

#[test]
#[ignore = "system test: needs root for a mount namespace, and cgroupfs (scripts/test.sh)"]
fn without_journald_the_fallback_file_answers_the_same_queries() {
    let project = project("nojournal");
    let sb = Sandbox::new();
    sb.write("ccscope.toml", &crash_loop(&project));
    let supervisor = without_journald(&sb, &["run", "--backend", "cgroupfs"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the supervisor");
    let _cleanup = Cleanup {
        sb: &sb,
        children: vec![supervisor],
    };
    let file = sb.state_dir().join(format!("audit/{project}.jsonl"));
    wait_for("the crash loop to give up, in the file", DEADLINE, || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("service.failed"))
    });
    let ran = Command::new("true").status();
    assert!(ran.is_ok());
    let stop = without_journald(&sb, &["stop"]).output().expect("stop");
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let out = without_journald(&sb, &["--json", "audit", "--service", "dashboard"])
        .output()
        .expect("audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let crashes = entries
        .iter()
        .filter(|e| e["event"] == "service.restarting")
        .count();
    assert_eq!(crashes, 3, "{entries:#?}");
    assert!(
        entries.iter().all(|e| e["source"] == "file"),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["event"] == "service.failed" && e["priority"] == 3)
    );
    // Read from outside the namespace too: the file is merged with the journal.
    let merged = audit(&sb, &["--event", "complete"]);
    assert_eq!(merged.len(), 1, "{merged:#?}");
    assert_eq!(merged[0]["source"], "file");
    // Nothing of it reached the journal.
    assert!(
        common::journal_entries(&[format!("CCSCOPE_PROJECT={project}")]).is_empty(),
        "journald had none of it"
    );
}
