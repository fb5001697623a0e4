//! The built binary, end to end: every command's human output, --json, errors and exit codes.

mod common;

use common::Sandbox;

const VALID: &str = r#"
[project]
name = "shop"

[services.db]
command = ["postgres"]
ports = [5432]

[services.api]
command = ["api", "--port", "8080"]
depends_on = ["db"]
ports = [8080]

[services.web]
command = ["web"]
depends_on = { api = "started", db = "healthy" }
"#;

#[test]
fn check_prints_the_start_plan() {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", VALID);
    sb.run(&["check"])
        .expect_code(0)
        .expect_stdout_contains("ccscope.toml is valid: project `shop`, 3 services")
        .expect_stdout_contains("  1. db\n  2. api\n  3. web")
        .expect_stdout_contains("order: db → api → web");
}

#[test]
fn check_json_is_stable() {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", VALID);
    let doc = sb.run(&["check", "--json"]).expect_code(0).json();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["project"], "shop");
    assert_eq!(doc["layers"], serde_json::json!([["db"], ["api"], ["web"]]));
    assert_eq!(
        doc["source"],
        serde_json::json!({"kind": "file", "name": "ccscope.toml"})
    );
    assert_eq!(doc["services"]["web"]["depends_on"]["api"], "started");
    assert_eq!(
        doc["services"]["api"]["launch"],
        serde_json::json!({"kind": "command", "argv": ["api", "--port", "8080"]})
    );
    assert_eq!(doc["services"]["db"]["stop_timeout"], "10s");
}

#[test]
fn check_finds_the_file_in_a_parent_directory() {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", VALID);
    std::fs::create_dir_all(sb.path().join("src/deep")).unwrap();
    let mut cmd = sb.command(&["check"]);
    cmd.current_dir(sb.path().join("src/deep"));
    common::Ran::of(cmd)
        .expect_code(0)
        .expect_stdout_contains("project `shop`");
}

#[test]
fn check_reports_errors_with_location_and_exit_code_3() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"shop\"\n[services.db]\ncomand = [\"x\"]\n",
    );
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains("error: ccscope.toml:4:1: unknown key `comand` in [services.db]")
        .expect_stderr_contains("hint: did you mean `command`?");
}

#[test]
fn check_json_reports_diagnostics_on_stdout_and_the_error_on_stderr() {
    let sb = Sandbox::new();
    sb.write(
        "stack.toml",
        "[project]\nname = \"shop\"\n[services.a]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n",
    );
    let ran = sb.run(&["-f", "stack.toml", "check", "--json"]);
    ran.expect_code(3);
    let doc = ran.json();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["diagnostics"][0]["message"], "dependency cycle: a → a");
    assert_eq!(
        doc["diagnostics"][0]["location"],
        serde_json::json!({"file": "stack.toml", "line": 5, "column": 15})
    );
    let err = ran.stderr_json();
    assert_eq!(err["error"]["code"], 3);
    assert_eq!(err["error"]["kind"], "config_invalid");
}

#[test]
fn a_missing_configuration_says_what_to_do() {
    let sb = Sandbox::new();
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains("error: no ccscope.toml in")
        .expect_stderr_contains("run `ccscope init`");
    sb.run(&["-f", "nope.toml", "check"])
        .expect_code(3)
        .expect_stderr_contains("could not read configuration")
        .expect_stderr_contains("no such file or directory");
}

#[test]
fn ccscope_config_names_the_file_and_f_overrides_it() {
    let sb = Sandbox::new();
    sb.write("a.toml", "[project]\nname = \"from-env\"\n");
    sb.write("b.toml", "[project]\nname = \"from-flag\"\n");
    let mut cmd = sb.command(&["check"]);
    cmd.env("CCSCOPE_CONFIG", "a.toml");
    common::Ran::of(cmd)
        .expect_code(0)
        .expect_stdout_contains("project `from-env`");
    let mut cmd = sb.command(&["-f", "b.toml", "check"]);
    cmd.env("CCSCOPE_CONFIG", "a.toml");
    common::Ran::of(cmd)
        .expect_code(0)
        .expect_stdout_contains("project `from-flag`");
}

#[test]
fn profiles_are_built_in_and_misspellings_are_caught() {
    let sb = Sandbox::new();
    sb.run(&["check", "--profile", "example"])
        .expect_code(0)
        .expect_stdout_contains("<profile example> is valid: project `context-cleaner`, 4 services")
        .expect_stdout_contains("order: clickhouse → telemetry_collector → bridge_sync, dashboard");
    sb.run(&["check", "--profile", "exampel"])
        .expect_code(3)
        .expect_stderr_contains("there is no built-in profile `exampel`")
        .expect_stderr_contains("did you mean `example`?");
    sb.run(&["check", "--profile", "example", "-f", "x.toml"])
        .expect_code(2);
}

#[test]
fn init_writes_a_valid_example_and_refuses_to_overwrite() {
    let sb = Sandbox::new();
    sb.run(&["init", "--name", "myapp"])
        .expect_code(0)
        .expect_stdout_contains("wrote");
    let written = std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap();
    assert!(written.contains("name = \"myapp\""));
    sb.run(&["check"])
        .expect_code(0)
        .expect_stdout_contains("project `myapp`");

    std::fs::write(sb.path().join("ccscope.toml"), "# mine\n").unwrap();
    sb.run(&["init"])
        .expect_code(5)
        .expect_stderr_contains("already exists; it was left untouched")
        .expect_stderr_contains("--force");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap(),
        "# mine\n"
    );
    sb.run(&["init", "--force"]).expect_code(0);
    sb.run(&["check"]).expect_code(0);
    let doc = sb
        .run(&["init", "other.toml", "--json"])
        .expect_code(0)
        .json();
    assert!(doc["written"].as_str().unwrap().ends_with("other.toml"));
    sb.run(&["init", "x.toml", "--name", "bad name"])
        .expect_code(2)
        .expect_stderr_contains("invalid project name");
    assert!(!sb.path().join("x.toml").exists());
}

#[test]
fn init_into_a_missing_directory_fails_clearly() {
    let sb = Sandbox::new();
    sb.run(&["init", "no/such/dir/ccscope.toml"])
        .expect_code(1)
        .expect_stderr_contains("could not write")
        .expect_stderr_contains("no such file or directory");
}

#[test]
fn ps_on_an_empty_registry() {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", VALID);
    sb.run(&["ps"])
        .expect_code(0)
        .expect_stdout_contains("no processes of project `shop` run");
    let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
    assert_eq!(
        doc,
        serde_json::json!({"project": "shop", "processes": [], "containers": []})
    );
    let doc = sb
        .run(&["debug", "list-processes", "--all", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(
        doc,
        serde_json::json!({"project": null, "processes": [], "containers": []})
    );
    let state = sb.state_dir();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(state.join("registry.db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn ps_lists_what_the_registry_holds() {
    use ccscope::registry::*;
    let sb = Sandbox::new();
    sb.write("ccscope.toml", VALID);
    let dir = StateDir {
        path: sb.state_dir(),
        origin: StateDirOrigin::Flag,
    };
    let (registry, _) = Registry::open(&dir).unwrap();
    // Real, live processes: `ps` drops records whose process is gone.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let procfs = ccscope::proc::ProcFs::default();
    let me = procfs.identity(std::process::id() as i32).unwrap();
    let them = procfs.identity(other.id() as i32).unwrap();
    for (identity, project, service) in [(me, "shop", "api"), (them, "other", "x")] {
        registry
            .register(&NewProcess {
                identity,
                command_line: format!("{service} --port 8080"),
                project: project.into(),
                service: service.into(),
                run_id: None,
                unit: None,
                cgroup: None,
                ports: vec![8080],
                status: ProcessStatus::Running,
                source: ProcessSource::Discovered,
            })
            .unwrap();
    }
    drop(registry);
    let ran = sb.run(&["ps"]);
    // The command line shown is the process's own, read fresh from /proc.
    ran.expect_code(0)
        .expect_stdout_contains(&format!("{}  api ", me.pid));
    assert!(
        !ran.stdout().contains("sleep 30"),
        "another project's process is not listed:\n{}",
        ran.stdout()
    );
    let doc = sb.run(&["ps", "--json"]).expect_code(0).json();
    let p = &doc["processes"][0];
    assert_eq!(
        (
            p["pid"].as_i64(),
            p["service"].as_str(),
            p["source"].as_str()
        ),
        (Some(i64::from(me.pid)), Some("api"), Some("discovered"))
    );
    assert_eq!(p["ports"], serde_json::json!([8080]));
    assert!(
        p["command_line"].as_str().unwrap().contains("/cli-"),
        "the test binary's own command line: {p}"
    );
    let all = sb.run(&["ps", "--all", "--json"]).expect_code(0).json();
    assert_eq!(all["processes"].as_array().unwrap().len(), 2);
    // Once a process is gone, `ps` forgets it.
    other.kill().unwrap();
    other.wait().unwrap();
    let all = sb.run(&["ps", "--all", "--json"]).expect_code(0).json();
    assert_eq!(all["processes"].as_array().unwrap().len(), 1, "{all}");
}

#[test]
fn a_corrupt_registry_is_moved_aside_with_both_paths_named() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::write(
        sb.state_dir().join("registry.db"),
        "garbage, not sqlite, definitely not",
    )
    .unwrap();
    let ran = sb.run(&["ps", "--all"]);
    ran.expect_code(0)
        .expect_stderr_contains("was corrupt; it was moved to")
        .expect_stderr_contains("registry.db.corrupt-");
    let moved = std::fs::read_dir(sb.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("registry.db.corrupt-")
        });
    assert!(moved);
}

#[test]
fn an_unusable_state_directory_is_a_state_error_with_a_hint() {
    let sb = Sandbox::new();
    sb.write("state", "a file where the directory should be");
    sb.run(&["ps", "--all"])
        .expect_code(4)
        .expect_stderr_contains("is not a directory")
        .expect_stderr_contains("hint:");
    let err = sb
        .run(&["ps", "--all", "--json"])
        .expect_code(4)
        .stderr_json();
    assert_eq!(err["error"]["kind"], "state");
}

#[test]
fn completions_for_each_shell() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let ran = sb.run(&["completions", shell]);
        ran.expect_code(0);
        assert!(
            ran.stdout().contains("ccscope"),
            "{shell} completions mention ccscope"
        );
    }
    sb.run(&["completions", "powershell"]).expect_code(2);
}

#[test]
fn help_lists_the_exit_codes_and_unknown_commands_are_usage_errors() {
    let sb = Sandbox::new();
    sb.run(&["--help"])
        .expect_code(0)
        .expect_stdout_contains("Exit codes:");
    sb.run(&["frobnicate"]).expect_code(2);
    sb.run(&["check", "-v", "-q"]).expect_code(2);
}

#[test]
fn an_empty_ccscope_state_dir_counts_as_unset() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["ps", "--all", "--json"]);
    cmd.env("CCSCOPE_STATE_DIR", "")
        .env("XDG_STATE_HOME", sb.path().join("xdg"));
    common::Ran::of(cmd).expect_code(0);
    assert!(
        sb.path().join("xdg/ccscope/registry.db").is_file(),
        "fell back to $XDG_STATE_HOME/ccscope"
    );
}

#[test]
fn the_project_state_dir_is_used_by_ps_and_ps_all() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"shop\"\nstate_dir = \".state\"\n",
    );
    for args in [&["ps"][..], &["ps", "--all"][..]] {
        let mut cmd = sb.command(args);
        cmd.env_remove("CCSCOPE_STATE_DIR");
        common::Ran::of(cmd).expect_code(0);
    }
    assert!(
        sb.path().join(".state/registry.db").is_file(),
        "relative to the config's directory"
    );
    assert!(!sb.state_dir().exists());
}

#[test]
fn warnings_are_json_lines_under_json() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::write(
        sb.state_dir().join("registry.db"),
        "not a database at all, no",
    )
    .unwrap();
    let ran = sb.run(&["ps", "--all", "--json"]);
    ran.expect_code(0);
    // Every line is a JSON warning (the directory's loose 0755 is tightened first).
    let warnings: Vec<serde_json::Value> = ran
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w["warning"].as_str().unwrap().contains("was corrupt")),
        "{warnings:?}"
    );
    assert_eq!(ran.json()["processes"], serde_json::json!([]));
}

#[test]
fn a_bad_default_is_reported_once_not_once_per_service() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"shop\"\n[defaults]\nstop_signal = \"SIGNOPE\"\n[services.a]\ncommand = [\"a\"]\n[services.b]\ncommand = [\"b\"]\n",
    );
    let ran = sb.run(&["check"]);
    ran.expect_code(3)
        .expect_stderr_contains("ccscope.toml:4:15: \"SIGNOPE\" is not a stop signal");
    assert_eq!(
        ran.stderr().matches("SIGNOPE").count(),
        1,
        "{}",
        ran.stderr()
    );
}

/// `ccscope ps -v` under script(1), so its stderr is a real terminal; `NO_COLOR` as given.
fn ps_verbose_on_a_terminal(sb: &Sandbox, no_color: Option<&str>) -> common::Ran {
    let line = format!(
        "'{}' ps -v",
        env!("CARGO_BIN_EXE_ccscope").replace('\'', r"'\''")
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(sb.path())
        .env_remove("CCSCOPE_LOG")
        .env("CCSCOPE_STATE_DIR", sb.state_dir());
    match no_color {
        Some(value) => cmd.env("NO_COLOR", value),
        None => cmd.env_remove("NO_COLOR"),
    };
    common::Ran::of(cmd)
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    let sb = Sandbox::new();
    let mut piped = sb.command(&["ps", "-v"]);
    piped.env_remove("NO_COLOR");
    let piped = common::Ran::of(piped);
    assert!(
        !piped.output.stderr.contains(&0x1b),
        "colour codes in piped stderr: {:?}",
        piped.stderr()
    );
    piped
        .expect_code(0)
        .expect_stderr_contains("INFO state directory");

    // The same line on a terminal is coloured, so the check above could have failed...
    let tty = ps_verbose_on_a_terminal(&sb, None);
    tty.expect_code(0).expect_stdout_contains("state directory");
    assert!(
        tty.output.stdout.contains(&0x1b),
        "no colour on a terminal: {:?}",
        tty.stdout()
    );
    // ...and NO_COLOR turns it off there too; set but empty, it does not count.
    let no_color = ps_verbose_on_a_terminal(&sb, Some("1"));
    no_color
        .expect_code(0)
        .expect_stdout_contains("INFO state directory");
    assert!(
        !no_color.output.stdout.contains(&0x1b),
        "colour codes despite NO_COLOR=1: {:?}",
        no_color.stdout()
    );
    let empty = ps_verbose_on_a_terminal(&sb, Some(""));
    assert!(
        empty.output.stdout.contains(&0x1b),
        "an empty NO_COLOR turned colour off: {:?}",
        empty.stdout()
    );
}

#[test]
fn doctor_names_a_missing_session_bus_and_what_to_do_without_an_os_error_number() {
    let sb = Sandbox::new();
    for json in [false, true] {
        let mut cmd = sb.command(if json {
            &["doctor", "--json"]
        } else {
            &["doctor"]
        });
        cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
        let ran = common::Ran::of(cmd);
        // Another backend (cgroupfs, process groups) is chosen instead.
        ran.expect_code(0);
        let everything = format!("{}{}", ran.stdout(), ran.stderr());
        assert!(
            !everything.contains("os error"),
            "a bare os error in doctor's output:\n{everything}"
        );
        let systemd = if json {
            let doc = ran.json();
            let found = doc["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["backend"] == "systemd")
                .cloned()
                .unwrap_or_else(|| panic!("no systemd candidate: {doc}"));
            assert_eq!(found["available"], false, "{found}");
            found["detail"].as_str().unwrap().to_string()
        } else {
            ran.stdout()
                .lines()
                .find(|l| l.trim_start().starts_with("systemd"))
                .unwrap_or_else(|| panic!("no systemd line:\n{}", ran.stdout()))
                .to_string()
        };
        for needle in [
            "no session bus",
            "could not connect to `unix:path=/nonexistent`",
            "no such file or directory",
            "DBUS_SESSION_BUS_ADDRESS",
        ] {
            assert!(
                systemd.contains(needle),
                "{needle:?} missing in {systemd:?}"
            );
        }
    }
}

#[test]
fn a_configuration_that_is_not_utf8_says_so_and_where() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path().join("ccscope.toml"),
        b"[project]\nname = \"shop\"\n# r\xe9sum\xe9\n",
    )
    .unwrap();
    let ran = sb.run(&["check"]);
    ran.expect_code(3)
        .expect_stderr_contains("error: ccscope.toml:3:4: the file is not valid UTF-8")
        .expect_stderr_contains("hint: save the file as UTF-8");
    assert!(
        !ran.stderr().contains("permissions"),
        "a hint about permissions:\n{}",
        ran.stderr()
    );
}

#[test]
fn three_mistakes_in_three_places_are_three_located_diagnostics() {
    let sb = Sandbox::new();
    sb.write(
        "ccscope.toml",
        "[project]\nname = \"shop\"\n\
         [services.db]\ncomand = [\"pg\"]\n\
         [services.api]\ncommand = [\"api\"]\nstop_timeout = 10\n\
         [services.web]\ncommand = [\"web\"]\ndepends_on = [\"apu\"]\n",
    );
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(
            "error: ccscope.toml:4:1: unknown key `comand` in [services.db]\n  \
             hint: did you mean `command`?\n",
        )
        .expect_stderr_contains(
            "error: ccscope.toml:7:16: a duration needs a unit: write \"10s\" or \"10ms\", not 10\n",
        )
        .expect_stderr_contains(
            "error: ccscope.toml:10:15: service `web` depends on `apu`, which is not a service\n",
        )
        .expect_stderr_contains("3 problems found");

    let ran = sb.run(&["check", "--json"]);
    ran.expect_code(3);
    let doc = ran.json();
    let located: Vec<(u64, u64)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["location"]["file"], "ccscope.toml", "{d}");
            (
                d["location"]["line"].as_u64().unwrap(),
                d["location"]["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(located, vec![(4, 1), (7, 16), (10, 15)], "{doc}");
}

#[test]
fn a_listing_whose_reader_went_away_ends_quietly() {
    // `ccscope check | head -0`: the pipe is closed before anything is written.
    let sb = Sandbox::new();
    let mut child = sb
        .command(&["--profile", "demo", "check"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}
