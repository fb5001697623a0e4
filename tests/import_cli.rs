//! `ccscope import` of compose, process-compose and Procfile fixtures written for these tests:
//! each against its golden ccscope.toml and warnings (`CCSCOPE_BLESS=1` rewrites them), each
//! warning with its file:line:column, the output accepted by `ccscope check` with the plan's
//! order; the first user's own compose file imported where pip unpacked it; bad input refused
//! with what to do. The system test runs an imported compose project with the offline test
//! image substituted, and `stop` sweeps a container the compose labels describe.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Sandbox, TestContainer, containers_labelled, docker, require_docker, require_test_env,
    test_image,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// A sandbox holding a copy of fixture directory `name` (dot files included).
fn sandbox_with(name: &str) -> Sandbox {
    let sb = Sandbox::new();
    copy_dir(&fixtures().join(name), sb.path());
    sb
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `ccscope import ARGS` in `sb`, with an environment that interpolates nothing by chance.
fn import(sb: &Sandbox, args: &[&str]) -> common::Ran {
    let mut cmd = sb.command(&["import"]);
    cmd.args(args);
    for var in [
        "COMPOSE_PROJECT_NAME",
        "DB_PASSWORD",
        "WEB_TAG",
        "CLICKHOUSE_HTTP_PORT",
        "CLICKHOUSE_NATIVE_PORT",
        "OTLP_GRPC_PORT",
    ] {
        cmd.env_remove(var);
    }
    common::Ran::of(cmd)
}

/// Compares `actual` with the golden file `name` of fixture `case`, or writes it when
/// `CCSCOPE_BLESS` is set.
fn golden(case: &str, name: &str, actual: &str) {
    let path = fixtures().join(case).join(name);
    if std::env::var_os("CCSCOPE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (CCSCOPE_BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs (CCSCOPE_BLESS=1 rewrites it after a review):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// The `warning:` lines of stderr, each checked to start with file:line:column.
fn warnings(stderr: &str, files: &[&str]) -> String {
    let mut out = String::new();
    for line in stderr.lines().filter(|l| l.starts_with("warning: ")) {
        let rest = &line["warning: ".len()..];
        let located = files.iter().any(|f| {
            rest.strip_prefix(f)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|r| r.split_once(':'))
                .and_then(|(l, r)| r.split_once(": ").map(|(c, _)| (l, c)))
                .is_some_and(|(l, c)| {
                    l.parse::<usize>().is_ok_and(|n| n > 0)
                        && c.parse::<usize>().is_ok_and(|n| n > 0)
                })
        });
        assert!(located, "a warning without file:line:column: {line}");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn check_order(sb: &Sandbox, order: &str) {
    sb.run(&["check", "-f", "ccscope.toml"])
        .expect_code(0)
        .expect_stdout_contains(&format!("order: {order}\n"));
}

#[test]
fn the_first_users_shape_imports_to_a_checked_plan_clickhouse_then_the_collector() {
    let sb = sandbox_with("first-user");
    let ran = import(&sb, &["docker-compose.yml", "--project", "first-user"]);
    ran.expect_code(0).expect_stderr_contains(
        "project `first-user`, 2 services, order clickhouse → otel-collector",
    );
    let written = std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap();
    golden("first-user", "expected.toml", &written);
    golden(
        "first-user",
        "expected.warnings",
        &warnings(&ran.stderr(), &["docker-compose.yml"]),
    );
    check_order(&sb, "clickhouse → otel-collector");
    // What the plan needs of the shape: the healthcheck as the readiness probe the
    // dependency waits on, the named volume under compose's own name, the bound files.
    let json = sb
        .run(&["check", "-f", "ccscope.toml", "--json"])
        .expect_code(0)
        .json();
    let ch = &json["services"]["clickhouse"];
    assert_eq!(ch["ready"]["check"]["kind"], "exec");
    assert_eq!(
        json["services"]["otel-collector"]["depends_on"]["clickhouse"],
        "healthy"
    );
    let volumes = ch["launch"]["volumes"].as_array().unwrap();
    assert_eq!(volumes[0], "first-user_clickhouse_data:/var/lib/clickhouse");
    let bound = sb.path().join("users.xml");
    assert_eq!(
        volumes[2].as_str().unwrap(),
        format!(
            "{}:/etc/clickhouse-server/users.d/users.xml:ro",
            bound.display()
        )
    );
    assert_eq!(ch["launch"]["name"], "cc-clickhouse");
}

#[test]
fn compose_files_merge_in_order_and_every_key_maps_or_warns() {
    let sb = sandbox_with("compose-all");
    let ran = import(
        &sb,
        &[
            "docker-compose.yml",
            "docker-compose.override.yml",
            "--project",
            "shop",
        ],
    );
    ran.expect_code(0);
    let written = std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap();
    golden("compose-all", "expected.toml", &written);
    golden(
        "compose-all",
        "expected.warnings",
        &warnings(
            &ran.stderr(),
            &["docker-compose.yml", "docker-compose.override.yml"],
        ),
    );
    check_order(&sb, "db → cache, migrate → web");
}

#[test]
fn a_process_compose_file_imports_probes_availability_and_shutdown() {
    let sb = sandbox_with("process-compose");
    let ran = import(&sb, &["process-compose.yaml", "--project", "pc"]);
    ran.expect_code(0);
    let written = std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap();
    golden("process-compose", "expected.toml", &written);
    golden(
        "process-compose",
        "expected.warnings",
        &warnings(&ran.stderr(), &["process-compose.yaml"]),
    );
    check_order(&sb, "db → migrate → api");
}

#[test]
fn a_procfile_gets_foremans_ports_and_its_env_file() {
    let sb = sandbox_with("procfile");
    let ran = import(&sb, &["Procfile", "--project", "app"]);
    ran.expect_code(0);
    let written = std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap();
    golden("procfile", "expected.toml", &written);
    golden(
        "procfile",
        "expected.warnings",
        &warnings(&ran.stderr(), &["Procfile"]),
    );
    let json = sb
        .run(&["check", "-f", "ccscope.toml", "--json"])
        .expect_code(0)
        .json();
    for (service, port) in [("web", "5000"), ("worker", "5100"), ("clock", "5200")] {
        assert_eq!(json["services"][service]["env"]["PORT"], port, "{service}");
        assert_eq!(
            json["services"][service]["env_files"][0],
            sb.path().join(".env").display().to_string()
        );
    }
}

#[test]
fn paths_are_written_relative_to_the_output_file() {
    let sb = sandbox_with("first-user");
    std::fs::create_dir(sb.path().join("out")).unwrap();
    import(
        &sb,
        &[
            "docker-compose.yml",
            "-o",
            "out/ccscope.toml",
            "--project",
            "x",
        ],
    )
    .expect_code(0);
    let written = std::fs::read_to_string(sb.path().join("out/ccscope.toml")).unwrap();
    assert!(
        written.contains("\"../users.xml:/etc/clickhouse-server/users.d/users.xml:ro\""),
        "{written}"
    );
    let json = sb
        .run(&["check", "-f", "out/ccscope.toml", "--json"])
        .expect_code(0)
        .json();
    let volume = json["services"]["clickhouse"]["launch"]["volumes"][2]
        .as_str()
        .unwrap()
        .to_string();
    let host = volume.split(':').next().unwrap();
    assert_eq!(
        std::fs::canonicalize(host).unwrap(),
        std::fs::canonicalize(sb.path().join("users.xml")).unwrap()
    );
}

#[test]
fn json_gives_the_plan_and_each_warning_with_its_location() {
    let sb = sandbox_with("first-user");
    let json = import(
        &sb,
        &[
            "docker-compose.yml",
            "-o",
            "-",
            "--json",
            "--project",
            "first-user",
        ],
    )
    .expect_code(0)
    .json();
    assert_eq!(json["project"], "first-user");
    assert_eq!(json["docker_compose_projects"][0], "first-user");
    assert_eq!(
        json["layers"],
        serde_json::json!([["clickhouse"], ["otel-collector"]])
    );
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .contains("[services.clickhouse.docker]")
    );
    let warnings = json["warnings"].as_array().unwrap();
    assert!(!warnings.is_empty());
    for w in warnings {
        assert_eq!(w["location"]["file"], "docker-compose.yml");
        assert!(w["location"]["line"].as_u64().unwrap() > 0, "{w}");
        assert!(w["location"]["column"].as_u64().unwrap() > 0, "{w}");
    }
    assert!(
        !sb.path().join("ccscope.toml").exists(),
        "-o - writes no file"
    );
}

#[test]
fn an_existing_file_is_kept_unless_forced() {
    let sb = sandbox_with("procfile");
    sb.write("ccscope.toml", "# mine\n");
    import(&sb, &["Procfile"])
        .expect_code(5)
        .expect_stderr_contains("already exists")
        .expect_stderr_contains("--force");
    assert_eq!(
        std::fs::read_to_string(sb.path().join("ccscope.toml")).unwrap(),
        "# mine\n"
    );
    import(&sb, &["Procfile", "--force"]).expect_code(0);
    assert!(
        std::fs::read_to_string(sb.path().join("ccscope.toml"))
            .unwrap()
            .contains("[services.web]")
    );
}

#[test]
fn bad_input_is_refused_with_its_place_and_what_to_do() {
    let sb = Sandbox::new();
    sb.write("docker-compose.yml", "services:\n  db:\n    image: [x\n");
    import(&sb, &["docker-compose.yml"])
        .expect_code(3)
        .expect_stderr_contains("docker-compose.yml:4:")
        .expect_stderr_contains("not valid YAML");
    sb.write(
        "compose.yaml",
        "services:\n  a:\n    image: x\n  a:\n    image: y\n",
    );
    import(&sb, &["compose.yaml"])
        .expect_code(3)
        .expect_stderr_contains("compose.yaml:");
    sb.write("notes.txt", "just some prose, not a stack\n");
    import(&sb, &["notes.txt"])
        .expect_code(2)
        .expect_stderr_contains("neither a compose file");
    sb.write("docker-compose.yml", "services:\n  db:\n    build: .\n");
    import(&sb, &["docker-compose.yml"])
        .expect_code(3)
        .expect_stderr_contains("docker-compose.yml:3:5: service `db` has a `build` and no `image`")
        .expect_stderr_contains("ccscope does not build images");
    sb.write(
        "docker-compose.yml",
        "services:\n  clickhouse:\n    image: x\n",
    );
    import(
        &sb,
        &["docker-compose.yml", "--image", "clickhose=y", "-o", "-"],
    )
    .expect_code(2)
    .expect_stderr_contains("did you mean `clickhouse`?");
    import(&sb, &["missing.yml"])
        .expect_code(3)
        .expect_stderr_contains("missing.yml");
    // A FIFO is refused at once, not read until a writer comes.
    let fifo = sb.path().join("compose.yml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    import(&sb, &["compose.yml"])
        .expect_code(3)
        .expect_stderr_contains("not a regular file");
    sb.write("big-compose.yml", &"#".repeat(2 << 20));
    import(&sb, &["big-compose.yml"])
        .expect_code(3)
        .expect_stderr_contains("larger than ccscope reads");
}

/// The compose file context-cleaner 0.3.0 ships: where the package is installed, else where
/// the fixture's script unpacked its wheel (fetched once from PyPI with pip, ~1 MB).
fn first_users_own_file() -> PathBuf {
    let installed = std::process::Command::new("python3")
        .args(["-c", "import importlib.util as u, os; s = u.find_spec('context_cleaner'); print(os.path.dirname(s.origin) if s else '')"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(&d).join("resources/telemetry/docker-compose.yml"))
        .filter(|f| f.is_file());
    if let Some(file) = installed {
        return file;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/context-cleaner");
    let out = std::process::Command::new(fixtures().join("fetch-context-cleaner.sh"))
        .arg(&dir)
        .output()
        .expect("run tests/fixtures/import/fetch-context-cleaner.sh");
    assert!(
        out.status.success(),
        "could not fetch context-cleaner 0.3.0 with pip (PyPI must be reachable): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn the_first_users_own_compose_file_imports_in_place() {
    let file = first_users_own_file();
    let sb = Sandbox::new();
    let ran = import(&sb, &[file.to_str().unwrap(), "-o", "ccscope.toml"]);
    ran.expect_code(0)
        .expect_stderr_contains("2 services, order clickhouse → otel-collector");
    let shown = file.display().to_string();
    let warned = warnings(&ran.stderr(), &[&shown]);
    assert!(warned.contains("networks"), "{warned}");
    check_order(&sb, "clickhouse → otel-collector");
    let json = sb
        .run(&["check", "-f", "ccscope.toml", "--json"])
        .expect_code(0)
        .json();
    let ch = &json["services"]["clickhouse"];
    assert_eq!(ch["launch"]["name"], "clickhouse-otel");
    assert_eq!(json["project"], "telemetry");
    assert_eq!(
        json["services"]["otel-collector"]["depends_on"]["clickhouse"],
        "healthy"
    );
    let bound = file.parent().unwrap().join("otel-simple.yaml");
    // Written relative to the output file, so the path check gives may hold `..`: the same
    // file either way.
    let volume = json["services"]["otel-collector"]["launch"]["volumes"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (host, inside) = volume.rsplit_once(':').unwrap();
    assert_eq!(inside, "/etc/otelcol-contrib/config.yaml", "{volume}");
    assert_eq!(
        std::fs::canonicalize(host).unwrap(),
        std::fs::canonicalize(&bound).unwrap(),
        "{volume}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes what the imported project left, by its labels and its volume's name.
struct ProjectCleanup<'a> {
    sb: &'a Sandbox,
    project: String,
}

impl Drop for ProjectCleanup<'_> {
    fn drop(&mut self) {
        let _ = self.sb.run(&["stop", "--force"]);
        for id in containers_labelled(&format!("ccscope.project={}", self.project)) {
            let _ = docker(&["rm", "-f", &id]);
        }
        let _ = docker(&[
            "volume",
            "rm",
            "-f",
            &format!("{}_clickhouse_data", self.project),
        ]);
    }
}

#[test]
#[ignore = "system test: needs dockerd and the user manager (scripts/test.sh)"]
fn the_imported_compose_project_runs_on_the_test_image_and_stop_sweeps_its_compose_containers() {
    require_test_env();
    require_docker();
    let project = format!("imp{}", std::process::id());
    let sb = sandbox_with("first-user");
    let _cleanup = ProjectCleanup {
        sb: &sb,
        project: project.clone(),
    };
    // An override file, as a team would keep beside its compose file: busybox stands in for
    // both images, on ports of their own; its healthcheck answers at once.
    sb.write(
        "docker-compose.test.yml",
        &format!(
            "services:\n  clickhouse:\n    container_name: {project}-clickhouse\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo Ok > /www/ping && exec httpd -f -p 8123 -h /www\"]\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"--spider\", \"-q\", \"http://localhost:8123/ping\"]\n      interval: 200ms\n      retries: 50\n  otel-collector:\n    container_name: {project}-otel\n    command: [\"sleep\", \"300\"]\n"
        ),
    );
    let image = test_image();
    let mut cmd = sb.command(&[
        "import",
        "docker-compose.yml",
        "docker-compose.test.yml",
        "--project",
        &project,
        "--image",
        &format!("clickhouse={image}"),
        "--image",
        &format!("otel-collector={image}"),
    ]);
    let http = free_port();
    cmd.env("CLICKHOUSE_HTTP_PORT", http.to_string())
        .env("CLICKHOUSE_NATIVE_PORT", free_port().to_string())
        .env("OTLP_GRPC_PORT", free_port().to_string());
    common::Ran::of(cmd).expect_code(0);
    check_order(&sb, "clickhouse → otel-collector");
    // A container the old compose file started: only its compose labels say whose it is.
    let leftover = TestContainer::run(
        &[
            ("com.docker.compose.project", &project),
            ("com.docker.compose.service", "clickhouse"),
        ],
        &["--init"],
        &["sleep", "300"],
    );
    leftover.wait_running(Duration::from_secs(20));
    sb.run(&["run", "--detach"]).expect_code(0);
    let ours = containers_labelled(&format!("ccscope.project={project}"));
    assert_eq!(ours.len(), 2, "both services run as containers: {ours:?}");
    let body = std::process::Command::new("wget")
        .args(["-q", "-O", "-", &format!("http://127.0.0.1:{http}/ping")])
        .output();
    if let Ok(body) = body {
        assert_eq!(String::from_utf8_lossy(&body.stdout).trim(), "Ok");
    }
    let status = sb.run(&["status", "--json"]).expect_code(0).json();
    assert!(status.to_string().contains("otel-collector"), "{status}");
    sb.run(&["stop"]).expect_code(0);
    assert!(containers_labelled(&format!("ccscope.project={project}")).is_empty());
    assert!(
        !leftover.exists(),
        "stop sweeps the container of compose project {project}"
    );
}
