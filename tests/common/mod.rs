//! Shared helpers for the integration tests: run the built binary in a private directory and
//! report failures with the command, its exit code, stdout and stderr.

#![allow(dead_code)] // Each test crate uses its own subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A scratch project directory with its own state directory, and the binary under test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `ccscope ARGS` run in the sandbox, with a clean ccscope environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccscope"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("CCSCOPE_CONFIG")
            .env_remove("CCSCOPE_LOG")
            .env("CCSCOPE_STATE_DIR", self.state_dir());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::of(self.command(args))
    }
}

/// A finished command, kept with its description for failure messages.
pub struct Ran {
    pub description: String,
    pub output: Output,
}

impl Ran {
    pub fn of(mut cmd: Command) -> Ran {
        let description = format!("{cmd:?}");
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("could not run {description}: {e}"));
        Ran {
            description,
            output,
        }
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn explain(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description,
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }

    /// Asserts the exit code, printing everything about the command if it differs.
    pub fn expect_code(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n{}",
            self.explain()
        );
        self
    }

    pub fn expect_stdout_contains(&self, needle: &str) -> &Ran {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.explain()
        );
        self
    }

    pub fn expect_stderr_contains(&self, needle: &str) -> &Ran {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.explain()
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.explain()))
    }

    pub fn stderr_json(&self) -> serde_json::Value {
        serde_json::from_str(self.stderr().trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON: {e}\n{}", self.explain()))
    }
}

/// Waits until `condition` holds, checking every few milliseconds, failing after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// System tests need the environment scripts/test-env.sh brings up. They are `#[ignore]`d
/// with that reason, so a plain `cargo test` counts them as skipped; scripts/test.sh runs
/// them. Run by hand without the environment, they fail here and say why.
pub fn require_test_env() {
    assert!(
        std::env::var_os("CCSCOPE_TEST_ENV").is_some(),
        "this system test needs the real user manager, session bus and journald: \
         run it through scripts/test.sh, or `eval \"$(scripts/test-env.sh up)\"` first"
    );
}

/// A single-threaded tokio runtime for a test's async work.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Hostile services, each writing `$READY` once it has done its worst.
pub mod scripts {
    pub const DOUBLE_FORK_DAEMON: &str =
        "( setsid sh -c 'exec sleep 300' & ); echo > \"$READY\"; exec sleep 300";
    pub const NOHUP_AND_RETURN: &str =
        "nohup sleep 300 >/dev/null 2>&1 & echo > \"$READY\"; exit 0";
    pub const IGNORES_TERM: &str = "trap '' TERM; sleep 300 & echo > \"$READY\"; wait";
}

/// A `/bin/sh -c script` service of `project`, launched by the built ccscope as trampoline,
/// its output in `dir/<service>.log`, and `$READY` naming `dir/<service>.ready`.
pub fn shell_service(
    project: &str,
    service: &str,
    script: &str,
    dir: &Path,
) -> ccscope::launch::LaunchSpec {
    ccscope::launch::LaunchSpec {
        project: project.to_string(),
        service: service.to_string(),
        instance: None,
        run_id: ccscope::registry::new_run_id(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: [(
            "READY".to_string(),
            ready_file(dir, service).display().to_string(),
        )]
        .into(),
        env_files: vec![],
        cwd: Some(dir.to_path_buf()),
        limits: ccscope::config::Limits::default(),
        output: ccscope::launch::OutputTarget::File(dir.join(format!("{service}.log"))),
        inherit_stdin: false,
        own_process_group: true,
        strict_limits: false,
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_ccscope")),
        tap: false,
    }
}

pub fn ready_file(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.ready"))
}

/// Waits until a `shell_service` has written its ready file.
pub fn wait_ready(dir: &Path, service: &str) {
    let ready = ready_file(dir, service);
    let log = dir.join(format!("{service}.log"));
    wait_for(
        &format!("{service} to be ready (log: {})", log.display()),
        Duration::from_secs(20),
        || ready.exists(),
    );
}

/// The journal entries matching `filters` (`FIELD=value`), after a sync, as JSON objects.
pub fn journal_entries(filters: &[String]) -> Vec<serde_json::Value> {
    let _ = std::process::Command::new("journalctl")
        .arg("--sync")
        .status();
    let out = std::process::Command::new("journalctl")
        .args(["-o", "json", "--no-pager"])
        .args(filters)
        .output()
        .expect("run journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("journalctl -o json prints JSON"))
        .collect()
}

/// Waits (with a deadline) for the first journal entry matching `filters`.
pub fn wait_for_journal_entry(what: &str, filters: &[String]) -> serde_json::Value {
    let mut entry = serde_json::Value::Null;
    wait_for(what, Duration::from_secs(10), || {
        match journal_entries(filters).into_iter().next() {
            Some(e) => {
                entry = e;
                true
            }
            None => false,
        }
    });
    entry
}

/// Live processes carrying the project's `CCSCOPE_PROJECT` marker, anywhere.
pub fn marked(project: &str) -> Vec<i32> {
    ccscope::proc::markers::scan(Path::new("/proc"))
        .into_iter()
        .filter(|p| p.markers.project == project)
        .map(|p| p.identity.pid)
        .collect()
}
