//! `check` reads the services' env files as `run` does: a NUL, a byte that is not UTF-8 or a
//! line that is not `KEY=value` is refused with the env file's path:line:column, a file that
//! cannot be read (missing, a FIFO) is refused without blocking, and `run` of the same file
//! fails at the same place (before, `check` passed and only `run` failed, without a column).

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, marked, require_test_env};

fn stack(project: &str, env_file: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n[defaults]\nenv_file = \"{env_file}\"\n\
         [services.web]\ncommand = [\"sleep\", \"300\"]\n\
         [services.worker]\ncommand = [\"sleep\", \"300\"]\nenv_file = [\"good.env\", \"{env_file}\"]\n"
    )
}

fn sandbox(env_file: &str, text: &[u8]) -> (Sandbox, String) {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", &stack("envf", env_file));
    sb.write("good.env", "A=1\n");
    let path = sb.path().join(env_file);
    std::fs::write(&path, text).unwrap();
    (sb, path.display().to_string())
}

#[test]
fn check_refuses_a_nul_in_an_env_file_at_its_line_and_column() {
    let (sb, path) = sandbox("app.env", b"# settings\nA=1\nB=tw\0o\n");
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&format!(
            "{path}:3:5: a NUL byte: an environment variable cannot hold one \
             (an env_file of service `web`)"
        ))
        .expect_stderr_contains("write one KEY=value per line");
    // Named by both services, said once.
    let ran = sb.run(&["check"]);
    assert_eq!(
        ran.stderr().matches(&format!("{path}:3:5")).count(),
        1,
        "{}",
        ran.stderr()
    );

    let json = sb.run(&["--json", "check"]);
    json.expect_code(3);
    let doc = json.json();
    assert_eq!(doc["valid"], false, "{doc}");
    let location = &doc["diagnostics"][0]["location"];
    assert_eq!(location["file"], path.as_str(), "{doc}");
    assert_eq!(
        (location["line"].as_u64(), location["column"].as_u64()),
        (Some(3), Some(5))
    );
}

#[test]
fn check_refuses_a_line_that_is_not_key_value_and_bytes_that_are_not_utf8() {
    let (sb, path) = sandbox("app.env", b"A=1\n\n   just words\n");
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&format!("{path}:3:4: `just words` has no `=`"));
    let (sb, path) = sandbox("app.env", b"export BAD-NAME=1\n");
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&format!("{path}:1:8: `BAD-NAME` is not a variable name"));
    let (sb, path) = sandbox("app.env", b"A=caf\xe9\n");
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&format!("{path}:1:6: byte 0xe9 is not UTF-8"));
}

#[test]
fn check_refuses_an_env_file_it_cannot_read_without_blocking_on_a_fifo() {
    let sb = Sandbox::new();
    sb.write("ccscope.toml", &stack("envf", "missing.env"));
    sb.write("good.env", "A=1\n");
    let ran = sb.run(&["check"]);
    ran.expect_code(3)
        .expect_stderr_contains("service `web`: could not read env file")
        .expect_stderr_contains("missing.env")
        .expect_stderr_contains("check the path (relative to the configuration file)");
    assert!(!ran.stderr().contains("os error"), "{}", ran.stderr());

    let sb = Sandbox::new();
    sb.write("ccscope.toml", &stack("envf", "fifo.env"));
    sb.write("good.env", "A=1\n");
    let fifo = sb.path().join("fifo.env");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let started = Instant::now();
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&format!(
            "env file {} is a FIFO (named pipe), not a regular file",
            fifo.display()
        ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "check did not wait for a writer: {:?}",
        started.elapsed()
    );
}

#[test]
fn check_passes_env_files_that_parse_and_other_commands_do_not_read_them() {
    let (sb, _) = sandbox("app.env", b"# c\nexport B = \"two words\"\nC='x=y'\n");
    sb.run(&["check"])
        .expect_code(0)
        .expect_stdout_contains("is valid");
    // A broken env file fails `check` and the start of a service, not the commands that only
    // look at or end a stack.
    let (sb, _) = sandbox("app.env", b"B=\0\n");
    sb.run(&["check"]).expect_code(3);
    sb.run(&["ps", "--json"]).expect_code(0);
}

#[test]
#[ignore = "system test: needs the user manager and session bus (scripts/test.sh)"]
fn run_of_an_env_file_with_a_nul_fails_where_check_says() {
    require_test_env();
    let project = format!("e{}-nul", std::process::id());
    let sb = Sandbox::new();
    sb.write("ccscope.toml", &stack(&project, "app.env"));
    sb.write("good.env", "A=1\n");
    let path = sb.write("app.env", "A=1\nB=tw\0o\n");
    let at = format!("{}:2:5: a NUL byte", path.display());
    sb.run(&["check"])
        .expect_code(3)
        .expect_stderr_contains(&at);
    sb.run(&["run", "--backend", "systemd"])
        .expect_code(9)
        .expect_stderr_contains(&format!("env file {at}"))
        .expect_stderr_contains("write one KEY=value per line");
    assert_eq!(marked(&project), Vec::<i32>::new(), "nothing was started");
}
