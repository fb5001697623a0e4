//! `--profile context-cleaner`: `check` prints the plan's order; `--set` takes the profile's
//! settings and refuses others; with stand-in executables (a `context-cleaner` and a venv
//! `python` written by the test) and a stand-in image (the offline busybox image, committed
//! with a command that answers ClickHouse's `/ping` and the collector's port) the stack runs
//! and `stop` brings it to zero; a missing image or executable fails naming it and the fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Sandbox, containers_labelled, docker, marked, require_docker, require_test_env, test_image,
    wait_for,
};

const ORDER: &str = "order: clickhouse → telemetry_collector → bridge_sync, dashboard\n";

#[test]
fn check_prints_the_plans_order() {
    let sb = Sandbox::new();
    let ran = sb.run(&["check", "--profile", "context-cleaner"]);
    ran.expect_code(0)
        .expect_stdout_contains(
            "<profile context-cleaner> is valid: project `context-cleaner`, 4 services",
        )
        .expect_stdout_contains(ORDER);
    let json = sb
        .run(&["check", "--profile", "context-cleaner", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(json["project"], "context-cleaner");
    assert_eq!(
        json["layers"],
        serde_json::json!([
            ["clickhouse"],
            ["telemetry_collector"],
            ["bridge_sync", "dashboard"]
        ])
    );
    let ready = &json["services"]["dashboard"]["ready"];
    assert_eq!(ready["check"]["url"], "http://127.0.0.1:8110/health");
}

#[test]
fn set_overrides_the_environment_and_refuses_what_is_not_a_setting() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(&[
        "check",
        "--profile",
        "context-cleaner",
        "--json",
        "--set",
        "dashboard_port=9111",
    ]);
    cmd.env("CONTEXT_CLEANER_PORT", "9222")
        .env("CCSCOPE_CC_CLICKHOUSE_PORT", "18123");
    let json = common::Ran::of(cmd).expect_code(0).json();
    assert_eq!(json["services"]["dashboard"]["ports"][0], 9111);
    assert_eq!(
        json["services"]["clickhouse"]["ready"]["check"]["url"],
        "http://127.0.0.1:18123/ping"
    );
    sb.run(&[
        "check",
        "--profile",
        "context-cleaner",
        "--set",
        "dashbord_port=1",
    ])
    .expect_code(2)
    .expect_stderr_contains("did you mean `dashboard_port`?");
    sb.run(&["check", "--profile", "example", "--set", "bin=x"])
        .expect_code(2)
        .expect_stderr_contains("only `--profile context-cleaner`");
    sb.run(&["check", "--profile", "context-cleaner", "--set", "bin"])
        .expect_code(2)
        .expect_stderr_contains("not KEY=VALUE");
}

#[test]
fn without_the_app_check_says_how_to_install_it() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["check", "--profile", "context-cleaner"]);
    cmd.env("PATH", "/usr/bin:/bin")
        .env_remove("CONTEXT_CLEANER_BIN");
    common::Ran::of(cmd)
        .expect_code(0)
        .expect_stderr_contains("no context-cleaner executable found")
        .expect_stderr_contains("pip install context-cleaner==0.3.0");
}

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A venv as pip makes it, with stand-ins: `bin/context-cleaner` (`bridge sync` sleeps,
/// `--version` says so and exits 3), `bin/python` (serves `/health` on $CONTEXT_CLEANER_PORT),
/// and the package's resources/telemetry. Returns the venv's directory.
pub fn stand_in_venv(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    write_exe(
        &venv.join("bin/context-cleaner"),
        "#!/bin/sh\n\
         # A stand-in for the app's entry point.\n\
         case \"$1 $2\" in\n  \"bridge sync\") echo 'bridge sync: monitoring'; exec sleep 300;;\nesac\n\
         case \"$1\" in\n  --version) echo 'context-cleaner 0.3.0 (stand-in)'; exit 3;;\nesac\n\
         echo \"stand-in context-cleaner: $*\" >&2\nexit 4\n",
    );
    write_exe(
        &venv.join("bin/python"),
        r#"#!/bin/sh
# A stand-in for the venv's python: whatever it is asked, it serves /health.
exec python3 -c 'import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["CONTEXT_CLEANER_PORT"])), H).serve_forever()'
"#,
    );
    let telemetry = venv.join("lib/python3.12/site-packages/context_cleaner/resources/telemetry");
    std::fs::create_dir_all(&telemetry).unwrap();
    for file in [
        "otel-simple.yaml",
        "otel-clickhouse-init.sql",
        "clickhouse-users.xml",
    ] {
        std::fs::write(telemetry.join(file), "# stand-in\n").unwrap();
    }
    venv
}

/// The test image committed with a command that serves `/ping` on 8123 and listens on 4317:
/// one stand-in for both of the stack's images. Removed when dropped.
pub struct StandInImage(pub String);

impl StandInImage {
    pub fn new(tag: &str) -> StandInImage {
        let name = format!("ccscope-test/cc-standin:{tag}");
        let container = format!("cc-standin-{tag}");
        docker(&["create", "--name", &container, &test_image()]).expect_code(0);
        docker(&[
            "commit",
            "--change",
            r#"CMD ["sh", "-c", "mkdir -p /www && echo Ok > /www/ping && httpd -p 4317 -h /www && exec httpd -f -p 8123 -h /www"]"#,
            &container,
            &name,
        ])
        .expect_code(0);
        docker(&["rm", "-f", &container]).expect_code(0);
        StandInImage(name)
    }
}

impl Drop for StandInImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The profile's settings for a test: its own project, ports, data directory and stand-ins.
pub struct Stack {
    pub project: String,
    pub venv: PathBuf,
    pub settings: Vec<(String, String)>,
}

impl Stack {
    pub fn new(sb: &Sandbox, tag: &str, image: &str) -> Stack {
        let project = format!("cc{}-{tag}", std::process::id());
        let venv = stand_in_venv(sb.path());
        let dashboard = free_port();
        let settings = vec![
            ("CCSCOPE_CC_PROJECT".to_string(), project.clone()),
            (
                "CONTEXT_CLEANER_BIN".into(),
                venv.join("bin/context-cleaner").display().to_string(),
            ),
            (
                "CONTEXT_CLEANER_DATA_DIR".into(),
                sb.path().join("data").display().to_string(),
            ),
            ("CONTEXT_CLEANER_PORT".into(), dashboard.to_string()),
            ("CCSCOPE_CC_CLICKHOUSE_PORT".into(), free_port().to_string()),
            ("CCSCOPE_CC_OTLP_PORT".into(), free_port().to_string()),
            ("CCSCOPE_CC_OTLP_HTTP_PORT".into(), free_port().to_string()),
            ("CCSCOPE_CC_CLICKHOUSE_IMAGE".into(), image.to_string()),
            ("CCSCOPE_CC_OTEL_IMAGE".into(), image.to_string()),
        ];
        Stack {
            project,
            venv,
            settings,
        }
    }

    pub fn command(&self, sb: &Sandbox, args: &[&str]) -> std::process::Command {
        let mut cmd = sb.command(&["--profile", "context-cleaner"]);
        cmd.args(args);
        for (k, v) in &self.settings {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, sb: &Sandbox, args: &[&str]) -> common::Ran {
        common::Ran::of(self.command(sb, args))
    }
}

/// Stops the test's project and removes what is left of its containers, by label.
struct Cleanup<'a> {
    sb: &'a Sandbox,
    stack: &'a Stack,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.stack.run(self.sb, &["stop", "--force"]);
        for id in containers_labelled(&format!("ccscope.project={}", self.stack.project)) {
            let _ = docker(&["rm", "-f", &id]);
        }
    }
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn with_stand_ins_the_whole_stack_runs_and_stops_to_zero() {
    require_test_env();
    require_docker();
    let image = StandInImage::new(&format!("run{}", std::process::id()));
    let sb = Sandbox::new();
    let stack = Stack::new(&sb, "run", &image.0);
    let _cleanup = Cleanup {
        sb: &sb,
        stack: &stack,
    };
    stack
        .run(&sb, &["check"])
        .expect_code(0)
        .expect_stdout_contains(ORDER);
    stack.run(&sb, &["run", "--detach"]).expect_code(0);
    let status = stack.run(&sb, &["status", "--json"]).expect_code(0).json();
    let text = status.to_string();
    for service in [
        "clickhouse",
        "telemetry_collector",
        "bridge_sync",
        "dashboard",
    ] {
        assert!(text.contains(service), "{service} in {status}");
    }
    assert_eq!(
        containers_labelled(&format!("ccscope.project={}", stack.project)).len(),
        2
    );
    assert!(
        !marked(&stack.project).is_empty(),
        "the processes carry the project's marker"
    );
    let port = &stack
        .settings
        .iter()
        .find(|(k, _)| k == "CONTEXT_CLEANER_PORT")
        .unwrap()
        .1;
    std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("the dashboard answers");
    stack.run(&sb, &["stop"]).expect_code(0);
    wait_for("no process of the project", Duration::from_secs(5), || {
        marked(&stack.project).is_empty()
    });
    assert!(containers_labelled(&format!("ccscope.project={}", stack.project)).is_empty());
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn a_missing_image_or_executable_fails_naming_it_and_the_fix() {
    require_test_env();
    require_docker();
    let image = StandInImage::new(&format!("miss{}", std::process::id()));
    let sb = Sandbox::new();
    let mut stack = Stack::new(&sb, "miss", &image.0);
    {
        let _cleanup = Cleanup {
            sb: &sb,
            stack: &stack,
        };
        let absent = "ccscope-test/absent-clickhouse:none";
        let mut cmd = stack.command(&sb, &["run", "--detach"]);
        cmd.env("CCSCOPE_CC_CLICKHOUSE_IMAGE", absent);
        let ran = common::Ran::of(cmd);
        let said = format!("{}{}", ran.stdout(), ran.stderr());
        assert_ne!(ran.code(), 0, "{}\n{said}", ran.description);
        assert!(said.contains(&format!("find image {absent}")), "{said}");
        assert!(said.contains(&format!("docker pull {absent}")), "{said}");
    }
    stack.project.push('x');
    for (k, v) in &mut stack.settings {
        if k == "CCSCOPE_CC_PROJECT" {
            v.push('x');
        }
    }
    let _cleanup = Cleanup {
        sb: &sb,
        stack: &stack,
    };
    let missing = sb.path().join("nowhere/context-cleaner");
    let mut cmd = stack.command(&sb, &["run", "--detach"]);
    cmd.env("CONTEXT_CLEANER_BIN", &missing);
    let ran = common::Ran::of(cmd);
    let said = format!("{}{}", ran.stdout(), ran.stderr());
    assert_ne!(ran.code(), 0, "{}\n{said}", ran.description);
    assert!(said.contains(&missing.display().to_string()), "{said}");
    assert!(said.contains("bridge_sync"), "{said}");
}
