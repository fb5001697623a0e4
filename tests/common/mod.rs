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

/// Live processes carrying the project's `CCSCOPE_PROJECT` marker and owned by `uid`: with
/// two users running projects of one name, each side's processes apart.
pub fn marked_by(project: &str, uid: u32) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    marked(project)
        .into_iter()
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

/// The unprivileged test user's own session, as `scripts/test-env.sh up` brings it up as
/// root: their user manager in `user@UID.service` (a tree they own), its session bus, and the
/// terminal-like `app.slice/term.scope` whose parent the terminals below are made in.
#[derive(Clone, Debug)]
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub runtime_dir: PathBuf,
    /// `user@UID.service/app.slice/term.scope` on the cgroup2 mount.
    pub term_v2: PathBuf,
    /// The same in the v1 `name=systemd` hierarchy of hybrid hosts.
    pub term_v1: Option<PathBuf>,
}

impl OtherUser {
    /// The session from the `CCSCOPE_TEST_OTHER_*` variables `scripts/test-env.sh env`
    /// prints. Without them (or not as root) the test fails and says why: nothing is skipped.
    pub fn from_env() -> OtherUser {
        require_test_env();
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: this test runs ccscope as the unprivileged user of \
                     scripts/test-env.sh, whose manager `scripts/test-env.sh up` (as root) \
                     starts; run it through scripts/test.sh, or \
                     `eval \"$(scripts/test-env.sh up)\"` again"
                )
            })
        };
        let number = |name: &str| -> u32 {
            var(name)
                .parse()
                .unwrap_or_else(|e| panic!("{name} is not a number: {e}"))
        };
        assert!(
            rustix::process::geteuid().is_root(),
            "the non-root tests start the other user's commands, so they run as root"
        );
        let user = OtherUser {
            name: var("CCSCOPE_TEST_OTHER_USER"),
            uid: number("CCSCOPE_TEST_OTHER_UID"),
            gid: number("CCSCOPE_TEST_OTHER_GID"),
            home: var("CCSCOPE_TEST_OTHER_HOME").into(),
            runtime_dir: var("CCSCOPE_TEST_OTHER_RUNTIME_DIR").into(),
            term_v2: var("CCSCOPE_TEST_OTHER_TERM_V2").into(),
            term_v1: std::env::var_os("CCSCOPE_TEST_OTHER_TERM_V1").map(PathBuf::from),
        };
        assert!(
            user.runtime_dir.join("bus").exists(),
            "{}'s session bus socket {} is missing: `scripts/test-env.sh up` brings it back",
            user.name,
            user.runtime_dir.join("bus").display()
        );
        user
    }

    /// The variables of the user's session, and nothing else of the test's environment.
    pub fn session_env(&self) -> Vec<(String, String)> {
        let rt = self.runtime_dir.display();
        vec![
            ("HOME".into(), self.home.display().to_string()),
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("XDG_RUNTIME_DIR".into(), rt.to_string()),
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                format!("unix:path={rt}/bus"),
            ),
        ]
    }

    /// The ccscope under test, at a path this user can execute (a copy when the build's own
    /// directories are closed to them; made once per build and reused).
    pub fn ccscope(&self) -> PathBuf {
        static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        BINARY
            .get_or_init(|| {
                let built = PathBuf::from(env!("CARGO_BIN_EXE_ccscope"));
                let probe = Command::new("setpriv")
                    .args(self.setpriv_args())
                    .args(["test", "-x"])
                    .arg(&built)
                    .status()
                    .expect("run setpriv");
                if probe.success() {
                    return built;
                }
                self.copy_of(&built)
            })
            .clone()
    }

    fn copy_of(&self, built: &Path) -> PathBuf {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(built).expect("stat the built ccscope");
        let dir = std::env::temp_dir().join(format!(
            "ccscope-nonroot-bin-{}-{}",
            meta.len(),
            meta.mtime()
        ));
        let copy = dir.join("ccscope");
        if !copy.exists() {
            std::fs::create_dir_all(&dir).expect("make the directory for the binary's copy");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Copied beside, then renamed: a concurrent test never runs half a binary.
            let partial = dir.join(format!("ccscope.{}", std::process::id()));
            std::fs::copy(built, &partial).expect("copy the built ccscope");
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&partial, &copy).expect("put the binary's copy in place");
        }
        copy
    }

    fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".into(),
        ]
    }

    /// Hands `path` to the user (chown), so their commands can write there.
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), self.name));
    }
}

/// A terminal of the other user's: a cgroup of its own beside `term.scope` under their
/// `app.slice` (as a desktop starts each terminal in an `app-*.scope`), in both hierarchies,
/// owned by the user. Each command starts there; dropped, whatever is still in it is killed
/// (by the cgroup made here) and it is removed. Tests running at once never share one.
pub struct Terminal {
    pub user: OtherUser,
    pub v2: PathBuf,
    pub v1: Option<PathBuf>,
}

impl Terminal {
    pub fn open(user: &OtherUser) -> Terminal {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("app-ccscope-test-{}-{n}.scope", std::process::id());
        let make = |term: &Path| {
            let dir = term
                .parent()
                .expect("term.scope sits in app.slice")
                .join(&name);
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("make the terminal cgroup {}: {e}", dir.display()));
            for file in [
                "",
                "cgroup.procs",
                "cgroup.threads",
                "cgroup.subtree_control",
                "tasks",
            ] {
                let path = dir.join(file);
                if path.exists() {
                    user.give(&path);
                }
            }
            dir
        };
        Terminal {
            user: user.clone(),
            v2: make(&user.term_v2),
            v1: user.term_v1.as_deref().map(make),
        }
    }

    /// `program args` as the user, from this terminal, in `cwd`, with only the user's
    /// session environment and `env`. A root `sh` moves itself into the terminal's cgroups
    /// (the user could not move a process out of a root-owned cgroup), then drops to the user.
    pub fn command(
        &self,
        cwd: &Path,
        env: &[(&str, &str)],
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(
                "v2=$1 v1=$2; shift 2; \
                 echo $$ > \"$v2/cgroup.procs\" && { [ -z \"$v1\" ] || echo $$ > \"$v1/cgroup.procs\"; } \
                 || { echo \"could not enter the terminal cgroup $v2\" >&2; exit 125; }; \
                 exec \"$@\"",
            )
            .arg("sh")
            .arg(&self.v2)
            .arg(self.v1.as_deref().unwrap_or(Path::new("")))
            .arg("setpriv")
            .args(self.user.setpriv_args())
            .args(["env", "-i"]);
        for (k, v) in self.user.session_env() {
            cmd.arg(format!("{k}={v}"));
        }
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(program).args(args).current_dir(cwd);
        cmd
    }

    /// The processes in the terminal now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.v2.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let cg = ccscope::contain::cgroup::Cgroup::at(&self.v2);
        let _ = cg.kill();
        let _ = cg.wait_empty(Duration::from_secs(10));
        let _ = std::fs::remove_dir(&self.v2);
        if let Some(v1) = &self.v1 {
            // Its processes were the v2 cgroup's, killed above.
            let _ = std::fs::remove_dir(v1);
        }
    }
}

/// A project directory owned by the other user, whose `ccscope` runs as them from a
/// terminal of theirs, against their own user manager, with a state directory of theirs.
/// Dropped, it stops what the project left (`stop --force`, as the user) and closes the
/// terminal, so a failed test leaves nothing running.
pub struct OtherSandbox {
    pub user: OtherUser,
    pub term: Terminal,
    sb: Sandbox,
}

impl OtherSandbox {
    pub fn new() -> OtherSandbox {
        let user = OtherUser::from_env();
        let sb = Sandbox::new();
        user.give(sb.path());
        OtherSandbox {
            term: Terminal::open(&user),
            user,
            sb,
        }
    }

    pub fn path(&self) -> &Path {
        self.sb.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.sb.state_dir()
    }

    /// A file of the user's in the sandbox.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.sb.write(name, text);
        self.user.give(&path);
        path
    }

    /// `ccscope ARGS` as the user, from their terminal, in the sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let state = self.state_dir().display().to_string();
        self.term.command(
            self.path(),
            &[("CCSCOPE_STATE_DIR", &state)],
            self.user.ccscope(),
            args,
        )
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::of(self.command(args))
    }

    /// `/bin/sh -c script` as the user, from their terminal, in the sandbox.
    pub fn sh(&self, script: &str, env: &[(&str, &str)]) -> Command {
        self.term
            .command(self.path(), env, "/bin/sh", &["-c", script])
    }

    /// `/bin/sh -c script` as the user, waited for; it must succeed.
    pub fn run_sh(&self, script: &str) -> Ran {
        let ran = Ran::of(self.sh(script, &[]));
        ran.expect_code(0);
        ran
    }
}

impl Drop for OtherSandbox {
    fn drop(&mut self) {
        if self.path().join("ccscope.toml").exists() {
            let mut stop = self.command(&["stop", "--force"]);
            stop.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _ = stop.status();
        }
    }
}

// --- Docker ---------------------------------------------------------------------------------
// The tests drive their own containers with the docker CLI (ccscope itself speaks the Engine
// API): a container a test starts by hand stands for one started outside ccscope.

/// The offline image scripts/test-env.sh builds (no registry can be reached): a busybox
/// rootfs with `sh`, `httpd`, `nc`, `sleep`, `wget`, ...; `CMD ["/bin/sh"]`.
pub const TEST_IMAGE: &str = "ccscope-test/busybox:latest";

/// The label every container a test starts carries, beside the test's own.
pub const TEST_LABEL: (&str, &str) = ("ccscope.test", "1");

/// The test image: $CCSCOPE_TEST_DOCKER_IMAGE (printed by scripts/test-env.sh) or TEST_IMAGE.
pub fn test_image() -> String {
    std::env::var("CCSCOPE_TEST_DOCKER_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| TEST_IMAGE.to_owned())
}

/// Where the docker CLI looks for the daemon, for messages.
fn docker_socket() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// `docker ARGS`, run and waited for (not checked: see `Ran::expect_code`).
pub fn docker(args: &[&str]) -> Ran {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    Ran::of(cmd)
}

/// Container tests need a Docker daemon and the test image. Like `require_test_env`, this
/// fails (never skips) and says how to get them.
pub fn require_docker() {
    let how = "run the tests through scripts/test.sh, or `eval \"$(scripts/test-env.sh up)\"` \
               first (it starts dockerd where none answers and builds the image offline; \
               `apt-get install docker.io busybox-static` if they are missing)";
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output();
    match version {
        Err(e) => panic!("this test needs the docker CLI, which could not be run ({e}): {how}"),
        Ok(out) if !out.status.success() => panic!(
            "this test needs a Docker daemon answering at {}, and none does ({}): {how}",
            docker_socket(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => {}
    }
    let image = test_image();
    let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(
        inspect.code() == 0,
        "this test needs the image {image} in the daemon at {}, which lacks it: {how}",
        docker_socket()
    );
}

/// Ids (full) of every container, in any state, carrying `label` (`key` or `key=value`).
pub fn containers_labelled(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let ran = docker(&["ps", "--all", "--quiet", "--no-trunc", "--filter", &filter]);
    ran.expect_code(0);
    ran.stdout()
        .lines()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A container a test started with `docker run --detach`, labelled `ccscope.test=1` plus the
/// test's own labels; removed (by id, with its anonymous volumes) when dropped.
pub struct TestContainer {
    pub id: String,
}

impl TestContainer {
    /// `docker run --detach --label ... OPTIONS IMAGE COMMAND...` of the test image;
    /// `options` are `docker run` options (`--name`, `-p`, `--init`, ...).
    pub fn run(labels: &[(&str, &str)], options: &[&str], command: &[&str]) -> TestContainer {
        TestContainer::run_image(&test_image(), labels, options, command)
    }

    /// As `run`, of another image.
    pub fn run_image(
        image: &str,
        labels: &[(&str, &str)],
        options: &[&str],
        command: &[&str],
    ) -> TestContainer {
        let mut args: Vec<String> = vec!["run".into(), "--detach".into()];
        for (key, value) in std::iter::once(&TEST_LABEL).chain(labels) {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        args.extend(options.iter().map(|o| (*o).to_owned()));
        args.push(image.to_owned());
        args.extend(command.iter().map(|c| (*c).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = docker(&args);
        ran.expect_code(0);
        let id = ran.stdout().trim().to_owned();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed no container id: {}",
            ran.explain()
        );
        TestContainer { id }
    }

    /// `docker inspect` of the container, or None once it is gone.
    pub fn inspect(&self) -> Option<serde_json::Value> {
        let ran = docker(&["container", "inspect", &self.id]);
        if ran.code() != 0 {
            return None;
        }
        let mut all: serde_json::Value = serde_json::from_str(&ran.stdout())
            .unwrap_or_else(|e| panic!("docker inspect printed no JSON: {e}\n{}", ran.explain()));
        all.get_mut(0).map(serde_json::Value::take)
    }

    /// Whether the container still exists (in any state).
    pub fn exists(&self) -> bool {
        self.inspect().is_some()
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.inspect()
            .is_some_and(|c| c["State"]["Running"].as_bool() == Some(true))
    }

    /// The host pid of its PID 1 while it runs.
    pub fn pid(&self) -> Option<i32> {
        let pid = self.inspect()?["State"]["Pid"].as_i64()?;
        i32::try_from(pid).ok().filter(|p| *p > 0)
    }

    /// Waits (with `deadline`) until it runs.
    pub fn wait_running(&self, deadline: Duration) {
        wait_for(&format!("container {} to run", self.id), deadline, || {
            self.running()
        });
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // By id, never by name or label: only what this test started.
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The output lines of a child (stdout and stderr, each read on a thread of its own), waited
/// on one at a time with a deadline.
pub struct OutputLines {
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
    cursor: usize,
}

impl OutputLines {
    /// Takes the child's piped stdout and stderr.
    pub fn of(child: &mut std::process::Child) -> OutputLines {
        use std::io::BufRead;
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        OutputLines {
            lines,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// Waits for the next line (after the last one matched) containing every one of
    /// `needles`; returns it.
    pub fn wait_line(&mut self, needles: &[&str], deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        let matches = |l: &String| needles.iter().all(|n| l.contains(n));
        if let Some(i) = self.seen[self.cursor..].iter().position(matches) {
            self.cursor += i + 1;
            return self.seen[self.cursor - 1].clone();
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        self.cursor = self.seen.len();
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {deadline:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The next wait looks at every line again, from the first.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Waits for `child` to exit within `deadline`; returns its code and all it printed.
    pub fn wait_exit(
        &mut self,
        child: &mut std::process::Child,
        deadline: Duration,
    ) -> (i32, String) {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // The output threads end at EOF.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the command did not exit within {deadline:?}; output:\n{}",
                self.seen.join("\n")
            );
            if let Ok(line) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                self.seen.push(line);
            }
        }
    }
}
