//! `[redirects.<exe>]` and `ccscope redirects install|list|remove`: a wrapper is written only
//! where none is or ours is, and removed only if ours; with it first on PATH anything not
//! redirected reaches the real executable with its arguments and exit code; bad redirects
//! are config errors at file:line:column. The system test: `context-cleaner dashboard` typed
//! by hand ends up as the `dashboard` service in its scope under the live supervisor (the
//! same one, the request in the audit trail), with the notice once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{Ran, Sandbox, require_test_env, wait_for_journal_entry};

const MARKER: &str = "# ccscope-redirect: written by `ccscope redirects install`";

fn config(project: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n[defaults]\nstop_timeout = \"3s\"\n\
         [services.base]\nshell = \"exec sleep 300\"\n\
         [services.dashboard]\nshell = \"exec sleep 300\"\ndepends_on = [\"base\"]\n\
         [services.bridge_sync]\nshell = \"exec sleep 300\"\ndepends_on = [\"base\"]\n\
         [redirects.context-cleaner]\n\
         \"dashboard\"   = \"start dashboard\"\n\
         \"bridge sync\" = \"start bridge_sync\"\n\
         \"run\"         = \"run --detach\"\n\
         \"stop\"        = \"stop\"\n"
    )
}

/// A sandbox with the stack, and a stand-in for the real `context-cleaner` in `real/`:
/// `--version` prints its arguments and exits 3, anything else exits 4.
fn sandbox(project: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", &config(project));
    let real = sb.write(
        "real/context-cleaner",
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo \"context-cleaner 0.3.0 (stand-in) $*\"; exit 3;;\nesac\necho \"real context-cleaner: $*\" >&2\nexit 4\n",
    );
    std::fs::set_permissions(real, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb
}

fn bin(sb: &Sandbox) -> PathBuf {
    sb.path().join("bin")
}

/// PATH with the wrappers first, then the real one, then the system's.
fn path_with_wrappers(sb: &Sandbox) -> String {
    format!(
        "{}:{}:{}",
        bin(sb).display(),
        sb.path().join("real").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `sh -c SCRIPT` in the sandbox, with the wrappers first on PATH.
fn typed(sb: &Sandbox, script: &str) -> Ran {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", script])
        .current_dir(sb.path())
        .env("PATH", path_with_wrappers(sb))
        .env("CCSCOPE_STATE_DIR", sb.state_dir())
        .env_remove("CCSCOPE_PROJECT")
        .env_remove("CCSCOPE_CONFIG");
    Ran::of(cmd)
}

#[test]
fn install_writes_a_marked_wrapper_and_anything_else_reaches_the_real_executable() {
    let sb = sandbox("rd-pass");
    let dir = bin(&sb);
    let json = sb
        .run(&[
            "redirects",
            "install",
            "--dir",
            dir.to_str().unwrap(),
            "--json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(json["redirects"][0]["action"], "written");
    let wrapper = dir.join("context-cleaner");
    let text = std::fs::read_to_string(&wrapper).unwrap();
    assert_eq!(text.lines().nth(1), Some(MARKER));
    assert_eq!(
        std::fs::metadata(&wrapper).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // Not redirected: the real one, with every argument as given and its exit code.
    let ran = typed(&sb, "context-cleaner --version 'two words' \"\" '$HOME'");
    ran.expect_code(3)
        .expect_stdout_contains("context-cleaner 0.3.0 (stand-in) --version two words  $HOME\n");
    assert!(!ran.stderr().contains("deprecated"), "{}", ran.stderr());
    // Inside a ccscope service every call passes through: a redirect never loops.
    typed(&sb, "CCSCOPE_PROJECT=x context-cleaner dashboard")
        .expect_code(4)
        .expect_stderr_contains("real context-cleaner: dashboard");
    // Again: unchanged, nothing rewritten.
    let json = sb
        .run(&[
            "redirects",
            "install",
            "--dir",
            dir.to_str().unwrap(),
            "--json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(json["redirects"][0]["action"], "unchanged");
}

#[test]
fn list_says_what_a_shell_runs_and_where_the_rest_goes() {
    let sb = sandbox("rd-list");
    let dir = bin(&sb);
    let d = dir.to_str().unwrap();
    let listed = sb
        .run(&["redirects", "list", "--dir", d, "--json"])
        .expect_code(0)
        .json();
    assert_eq!(listed["redirects"][0]["state"], "missing");
    sb.run(&["redirects", "install", "--dir", d]).expect_code(0);
    let mut cmd = sb.command(&["redirects", "list", "--dir", d, "--json"]);
    cmd.env("PATH", path_with_wrappers(&sb));
    let listed = Ran::of(cmd).expect_code(0).json();
    let r = &listed["redirects"][0];
    assert_eq!(r["state"], "installed");
    assert_eq!(r["first_on_path"], true);
    assert_eq!(
        r["real"],
        sb.path().join("real/context-cleaner").display().to_string()
    );
    assert_eq!(
        r["routes"][0]["subcommand"],
        serde_json::json!(["bridge", "sync"])
    );
    assert_eq!(
        r["routes"][0]["ccscope"],
        serde_json::json!(["start", "bridge_sync"])
    );
    // The real one first: the wrapper is shadowed, and list says how to fix it.
    let mut cmd = sb.command(&["redirects", "list", "--dir", d]);
    cmd.env(
        "PATH",
        format!(
            "{}:{}:/usr/bin:/bin",
            sb.path().join("real").display(),
            dir.display()
        ),
    );
    Ran::of(cmd)
        .expect_code(0)
        .expect_stdout_contains("comes first on PATH: put");
}

#[test]
fn a_file_ccscope_did_not_write_is_neither_overwritten_nor_removed() {
    let sb = sandbox("rd-foreign");
    let dir = bin(&sb);
    let d = dir.to_str().unwrap();
    let theirs = sb.write("bin/context-cleaner", "#!/bin/sh\necho theirs\n");
    sb.run(&["redirects", "install", "--dir", d])
        .expect_code(5)
        .expect_stdout_contains("refused");
    sb.run(&["redirects", "remove", "--dir", d]).expect_code(5);
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "#!/bin/sh\necho theirs\n"
    );
    std::fs::remove_file(&theirs).unwrap();
    sb.run(&["redirects", "install", "--dir", d]).expect_code(0);
    let json = sb
        .run(&["redirects", "remove", "--dir", d, "--json"])
        .expect_code(0)
        .json();
    assert_eq!(json["redirects"][0]["action"], "removed");
    assert!(!theirs.exists());
    let json = sb
        .run(&["redirects", "remove", "--dir", d, "--json"])
        .expect_code(0)
        .json();
    assert_eq!(json["redirects"][0]["action"], "absent");
}

#[test]
fn the_context_cleaner_profile_carries_the_plans_redirects_with_its_settings() {
    let sb = sandbox("rd-profile");
    let real = sb.path().join("real/context-cleaner");
    let dir = bin(&sb);
    let mut cmd = sb.command(&[
        "redirects",
        "install",
        "--profile",
        "context-cleaner",
        "--set",
        "dashboard_port=9111",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    cmd.env("CONTEXT_CLEANER_BIN", &real);
    Ran::of(cmd).expect_code(0);
    let text = std::fs::read_to_string(dir.join("context-cleaner")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("exec \"$ccscope\"") && l.ends_with("'start' 'dashboard'"))
        .unwrap_or_else(|| panic!("no dashboard route in {text}"));
    assert!(
        line.contains("'--profile' 'context-cleaner' '--set' 'dashboard_port=9111'"),
        "{line}"
    );
    assert!(
        text.contains(&format!("real='{}'", real.display())),
        "{text}"
    );
    for route in ["'bridge' ] && [ \"$2\" = 'sync'", "= 'run' ]", "= 'stop' ]"] {
        assert!(text.contains(route), "{route} in {text}");
    }
}

#[test]
fn bad_redirects_are_errors_at_their_line_and_column() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"rd-bad\"\n[services.dashboard]\nshell = \"sleep 1\"\n\
         [redirects.context-cleaner]\n\"dashboard\" = \"strat dashboard\"\n\"ui\" = \"start dashbord\"\nreal = \"bin/cc\"\n\
         [redirects.\"a/b\"]\n\"x\" = \"stop\"\n",
    );
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(
            "ccscope.toml:6:15: redirect `context-cleaner dashboard` leads to `strat`",
        )
        .expect_stderr_contains("did you mean `start`?")
        .expect_stderr_contains(
            "ccscope.toml:7:8: redirect `context-cleaner ui` names service `dashbord`",
        )
        .expect_stderr_contains("did you mean `dashboard`?")
        .expect_stderr_contains(
            "ccscope.toml:8:8: `real` of redirect `context-cleaner` is not an absolute path",
        )
        .expect_stderr_contains("ccscope.toml:9:12: invalid redirected executable `a/b`");
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"rd-none\"\n[services.a]\nshell = \"sleep 1\"\n",
    );
    sb.run(&["redirects", "list"])
        .expect_code(3)
        .expect_stderr_contains("has no [redirects.<exe>] table");
}

#[test]
#[ignore = "system test: needs the user manager, session bus and journald (scripts/test.sh)"]
fn a_redirected_subcommand_runs_as_the_service_under_the_live_supervisor() {
    require_test_env();
    let project = format!("rd{}", std::process::id());
    let sb = sandbox(&project);
    let _stop = Stop(&sb);
    let d = bin(&sb);
    sb.run(&["redirects", "install", "--dir", d.to_str().unwrap()])
        .expect_code(0);
    sb.run(&["run", "--detach", "--only", "base"])
        .expect_code(0);
    let before = sb.run(&["status", "--json"]).expect_code(0).json();
    let supervisor = before["supervisor_pid"].clone();
    assert!(supervisor.as_i64().is_some(), "{before}");
    let ran = typed(&sb, "context-cleaner dashboard --port 9999");
    ran.expect_code(0);
    let stderr = ran.stderr();
    assert_eq!(
        stderr.matches("is deprecated").count(),
        1,
        "the notice once: {stderr}"
    );
    assert!(
        stderr.contains(
            "`context-cleaner dashboard` is deprecated: running `ccscope start dashboard`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("--port 9999"),
        "the arguments left out are named: {stderr}"
    );
    let after = sb.run(&["status", "--json"]).expect_code(0).json();
    assert_eq!(
        after["supervisor_pid"], supervisor,
        "one supervisor: {after}"
    );
    let dashboard = after["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "dashboard")
        .unwrap_or_else(|| panic!("no dashboard in {after}"))
        .clone();
    assert_eq!(dashboard["state"], "running", "{dashboard}");
    assert!(
        dashboard["processes"].as_u64().unwrap() >= 1,
        "inside its scope: {dashboard}"
    );
    // The supervisor served it, and the audit trail says who asked.
    let entry = wait_for_journal_entry(
        "the start request in the journal",
        &[
            "CCSCOPE_EVENT=control.request".to_string(),
            format!("CCSCOPE_PROJECT={project}"),
            "CCSCOPE_VERB=start".to_string(),
        ],
    );
    assert!(
        entry["CCSCOPE_SERVICES"]
            .as_str()
            .unwrap_or_default()
            .contains("dashboard"),
        "{entry}"
    );
    // The rest still reaches the real executable, exit code and all.
    typed(&sb, "context-cleaner --version")
        .expect_code(3)
        .expect_stdout_contains("context-cleaner 0.3.0 (stand-in)");
    // `stop` is redirected too: the whole stack goes.
    typed(&sb, "context-cleaner stop").expect_code(0);
    let done = sb.run(&["status", "--json"]).expect_code(0).json();
    assert!(done["supervisor_pid"].is_null(), "{done}");
}

/// Stops the test's stack, whatever the test did.
struct Stop<'a>(&'a Sandbox);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["stop", "--force"]);
    }
}

#[test]
#[ignore = "system test: needs the user manager, session bus and journald (scripts/test.sh)"]
fn doctor_checks_that_the_wrappers_come_first_on_path() {
    require_test_env();
    let sb = sandbox("rd-doctor");
    let home = sb.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut cmd = sb.command(&["redirects", "install"]);
    cmd.env("HOME", &home);
    Ran::of(cmd).expect_code(0);
    let local_bin = home.join(".local/bin");
    assert!(local_bin.join("context-cleaner").is_file());
    let doctor = |path: String| {
        let mut cmd = sb.command(&["doctor", "--json"]);
        cmd.env("HOME", &home).env("PATH", path);
        Ran::of(cmd).json()
    };
    let real = sb.path().join("real");
    let good = doctor(format!(
        "{}:{}:/usr/bin:/bin",
        local_bin.display(),
        real.display()
    ));
    assert_eq!(good["redirects"][0]["first_on_path"], true, "{good}");
    let bad = doctor(format!(
        "{}:{}:/usr/bin:/bin",
        real.display(),
        local_bin.display()
    ));
    assert_eq!(bad["redirects"][0]["first_on_path"], false, "{bad}");
    assert_eq!(
        bad["redirects"][0]["shadowed_by"],
        real.join("context-cleaner").display().to_string()
    );
}
