//! The state directory against another local user, end to end: `ccscope-other` (the
//! unprivileged user of scripts/test-env.sh) plants links in a state directory it can write,
//! and root's ccscope refuses the directory (exit 4, "state") with the reason and what to do,
//! touching neither the directory's mode nor what the links point at. A link left behind in a
//! directory made private again is refused too (never written through). And a configuration
//! that is a device, a FIFO or a huge file fails at once (exit 3, "config").

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Ran, Sandbox, require_test_env};

/// `state`: the state directory or the registry cannot be used.
const EXIT_STATE: i32 = 4;
/// `config`: no configuration, or an unusable one.
const EXIT_CONFIG: i32 = 3;

const OTHERS_CAN_WRITE: &str = "can be written by other users";

fn project(tag: &str) -> String {
    format!("sd{}-{tag}", std::process::id())
}

/// A sandbox the other user can walk into (not write), holding a configuration of one
/// long-sleeping service and a root-only file the attacks aim at.
struct Scene {
    sb: Sandbox,
    project: String,
    secret: PathBuf,
}

const SECRET: &str = "root only: never to be overwritten\n";

impl Scene {
    fn new(tag: &str) -> Scene {
        let sb = Sandbox::new();
        set_mode(sb.path(), 0o755);
        let project = project(tag);
        sb.write(
            "ccscope.toml",
            &format!(
                "[project]\nname = \"{project}\"\n\n[services.web]\ncommand = [\"sleep\", \"300\"]\n"
            ),
        );
        let secret = sb.write("secret", SECRET);
        set_mode(&secret, 0o600);
        Scene {
            sb,
            project,
            secret,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.sb.path().join(name)
    }

    /// `ccscope ARGS` with this state directory; a `run` that should have been refused but
    /// was not is stopped again when the scene ends.
    fn run(&self, state: &Path, args: &[&str]) -> Ran {
        let mut cmd = self.sb.command(args);
        cmd.env("CCSCOPE_STATE_DIR", state);
        Ran::of(cmd)
    }

    /// `ccscope run` in the foreground, under a deadline: the refusals below come before it
    /// starts anything (the lock is taken first), so a run that goes on is a failure.
    fn run_foreground(&self, state: &Path) -> Ran {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=2", "30", env!("CARGO_BIN_EXE_ccscope"), "run"])
            .current_dir(self.sb.path())
            .env_remove("CCSCOPE_CONFIG")
            .env_remove("CCSCOPE_LOG")
            .env("CCSCOPE_STATE_DIR", state);
        Ran::of(cmd)
    }

    fn expect_secret_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.secret).unwrap(),
            SECRET,
            "the file a planted link points at was written"
        );
        assert_eq!(mode(&self.secret), 0o600, "its mode was changed");
    }
}

/// Stops what a `run --detach` that was not refused started (on a build without the fix).
struct StopAfter<'a> {
    scene: &'a Scene,
    state: PathBuf,
}

impl Drop for StopAfter<'_> {
    fn drop(&mut self) {
        let _ = self.scene.run(&self.state, &["stop"]);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `script` with sh as the unprivileged test user; it must succeed.
fn as_other(script: &str, args: &[&Path]) {
    let user = std::env::var("CCSCOPE_TEST_OTHER_USER").unwrap_or("ccscope-other".into());
    let ran = Ran::of({
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--clear-groups",
            "sh",
            "-euc",
            script,
            "sh",
        ]);
        cmd.args(args);
        cmd
    });
    ran.expect_code(0);
}

fn expect_refused(ran: &Ran, needles: &[&str]) {
    ran.expect_code(EXIT_STATE).expect_stderr_contains("hint:");
    for needle in needles {
        ran.expect_stderr_contains(needle);
    }
}

#[test]
#[ignore = "system test: needs root, the user ccscope-other and the environment of scripts/test-env.sh (run scripts/test.sh)"]
fn a_lock_link_planted_by_another_user_is_never_written_through() {
    require_test_env();
    let scene = Scene::new("lock");
    let state = scene.path("state");
    std::fs::create_dir(&state).unwrap();
    set_mode(&state, 0o777);
    let lock_name = format!("{}.lock", scene.project);
    as_other(
        r#"mkdir "$1/locks" && ln -s "$2" "$1/locks/$3""#,
        &[&state, &scene.secret, Path::new(&lock_name)],
    );
    let _stop = StopAfter {
        scene: &scene,
        state: state.clone(),
    };
    let ran = scene.run(&state, &["run", "--detach"]);
    expect_refused(&ran, &[OTHERS_CAN_WRITE, "mode 0777", "mkdir -m 700"]);
    scene.expect_secret_untouched();
    assert_eq!(mode(&state), 0o777, "refused, not repaired");
    assert!(
        state.join("locks").join(&lock_name).is_symlink(),
        "what was planted stays"
    );

    // Made private again by hand, with what was planted still in it: the other user's
    // `locks/` is not ours. (In the foreground: `run --detach` would start a supervisor
    // first, which then fails on the lock.)
    set_mode(&state, 0o700);
    let ran = scene.run_foreground(&state);
    expect_refused(&ran, &["locks", "belongs to uid"]);
    scene.expect_secret_untouched();

    // And a link in a `locks/` of ours is refused by the open itself.
    std::fs::remove_dir_all(state.join("locks")).unwrap();
    std::fs::create_dir(state.join("locks")).unwrap();
    set_mode(&state.join("locks"), 0o700);
    std::os::unix::fs::symlink(&scene.secret, state.join("locks").join(&lock_name)).unwrap();
    let ran = scene.run_foreground(&state);
    expect_refused(
        &ran,
        &[
            &lock_name,
            "is a symbolic link, and ccscope never writes through one",
        ],
    );
    scene.expect_secret_untouched();
}

#[test]
#[ignore = "system test: needs root, the user ccscope-other and the environment of scripts/test-env.sh (run scripts/test.sh)"]
fn a_registry_link_planted_by_another_user_is_never_created_or_chmodded_through() {
    require_test_env();
    let scene = Scene::new("db");
    let state = scene.path("state");
    std::fs::create_dir(&state).unwrap();
    set_mode(&state, 0o777);
    let absent = scene.path("would-be-created");
    as_other(
        r#"ln -s "$2" "$1/registry.db" && ln -s "$3" "$1/registry.db-wal""#,
        &[&state, &scene.secret, &absent],
    );
    let ran = scene.run(&state, &["ps", "--all"]);
    expect_refused(&ran, &[OTHERS_CAN_WRITE]);
    scene.expect_secret_untouched();
    assert_eq!(mode(&state), 0o777, "refused, not repaired");

    // Private again, the links still there: each is refused by name, nothing behind it
    // created, chmodded or moved.
    set_mode(&state, 0o700);
    let ran = scene.run(&state, &["ps", "--all"]);
    expect_refused(&ran, &["registry.db", "is a symbolic link"]);
    scene.expect_secret_untouched();
    assert!(!absent.exists(), "a dangling link's target was created");
    std::fs::remove_file(state.join("registry.db-wal")).unwrap();
    let ran = scene.run(&state, &["ps", "--all"]);
    expect_refused(&ran, &["registry.db is a symbolic link"]);
    scene.expect_secret_untouched();
    assert!(state.join("registry.db").is_symlink(), "the link was moved");
}

#[test]
#[ignore = "system test: needs root, the user ccscope-other and the environment of scripts/test-env.sh (run scripts/test.sh)"]
fn a_state_dir_that_links_to_a_sticky_world_writable_dir_is_refused_and_its_mode_kept() {
    require_test_env();
    let scene = Scene::new("link");
    // Like /tmp: root's, 1777.
    let shared = scene.path("shared");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    // The other user was there first.
    as_other(r#"ln -s "$2" "$1/registry.db""#, &[&shared, &scene.secret]);
    let state = scene.path("state");
    std::os::unix::fs::symlink(&shared, &state).unwrap();
    for args in [&["ps", "--all"][..], &["status"], &["run", "--detach"]] {
        let _stop = StopAfter {
            scene: &scene,
            state: state.clone(),
        };
        let ran = scene.run(&state, args);
        expect_refused(&ran, &[OTHERS_CAN_WRITE, "mode 1777"]);
        // The canonical directory is named, not the link.
        ran.expect_stderr_contains(&shared.canonicalize().unwrap().display().to_string());
        assert_eq!(
            mode(&shared),
            0o1777,
            "`{}` changed its mode",
            args.join(" ")
        );
        scene.expect_secret_untouched();
    }
}

#[test]
#[ignore = "system test: needs root, the user ccscope-other and the environment of scripts/test-env.sh (run scripts/test.sh)"]
fn ccscope_state_dir_naming_a_sticky_world_writable_dir_is_refused_and_its_mode_kept() {
    require_test_env();
    let scene = Scene::new("env");
    let shared = scene.path("tmp");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    as_other(r#"echo planted > "$1/registry.db""#, &[&shared]);
    let _stop = StopAfter {
        scene: &scene,
        state: shared.clone(),
    };
    for args in [&["ps", "--all"][..], &["run", "--detach"]] {
        let ran = scene.run(&shared, args);
        expect_refused(&ran, &[OTHERS_CAN_WRITE, "mode 1777", "--state-dir"]);
        assert_eq!(
            mode(&shared),
            0o1777,
            "`{}` changed its mode",
            args.join(" ")
        );
    }
    assert_eq!(
        std::fs::read_to_string(shared.join("registry.db")).unwrap(),
        "planted\n",
        "what the other user put there stays as it was"
    );
}

/// `ccscope check -f FILE` under a deadline (and a memory cap, so that an unbounded read
/// fails instead of filling the machine): a check that blocks or reads without end fails.
fn check_bounded(sb: &Sandbox, file: &Path) -> Ran {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"ulimit -v 2000000 && exec timeout --kill-after=2 10 "$@""#,
        "sh",
        env!("CARGO_BIN_EXE_ccscope"),
        "check",
        "-f",
    ])
    .arg(file)
    .current_dir(sb.path())
    .env_remove("CCSCOPE_CONFIG")
    .env("CCSCOPE_STATE_DIR", sb.state_dir());
    Ran::of(cmd)
}

#[test]
fn a_configuration_that_is_a_device_is_refused_at_once() {
    let sb = Sandbox::new();
    check_bounded(&sb, Path::new("/dev/zero"))
        .expect_code(EXIT_CONFIG)
        .expect_stderr_contains("configuration /dev/zero is a character device, not a regular file")
        .expect_stderr_contains("hint:");
}

#[test]
fn a_configuration_that_is_a_fifo_is_refused_without_waiting_for_a_writer() {
    let sb = Sandbox::new();
    let fifo = sb.path().join("ccscope.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo {}", fifo.display());
    check_bounded(&sb, &fifo)
        .expect_code(EXIT_CONFIG)
        .expect_stderr_contains("is a FIFO (named pipe), not a regular file");
}

#[test]
fn a_configuration_over_the_size_cap_is_refused_with_the_cap_named() {
    let sb = Sandbox::new();
    let mut text = String::from("[project]\nname = \"big\"\n");
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let big = sb.write("big.toml", &text);
    check_bounded(&sb, &big)
        .expect_code(EXIT_CONFIG)
        .expect_stderr_contains("is larger than ccscope reads")
        .expect_stderr_contains("the limit is 1024 KiB");
    // Just under the cap is read (and found valid up to its lack of services).
    let small = sb.write("small.toml", &text[..(1 << 20) - 100]);
    let ran = check_bounded(&sb, &small);
    assert!(
        !ran.stderr().contains("larger than"),
        "a file under the cap was refused: {}",
        ran.stderr()
    );
}
