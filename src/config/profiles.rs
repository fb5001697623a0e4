//! Stacks compiled into the binary, selected with `--profile NAME`.
//!
//! `context-cleaner` is the first user's whole stack; what differs between machines (where the
//! app is installed, its data directory, ports, images) comes from the environment or from
//! `--set KEY=VALUE` ([`apply_settings`], before the configuration is loaded), as
//! [`CONTEXT_CLEANER_SETTINGS`] lists them.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The text `ccscope init` writes; also the `example` profile, so `ccscope check --profile
/// example` shows what init would write without writing it.
pub const EXAMPLE: &str = include_str!("profiles/example.toml");

/// The demo stack's template (see [`demo`]).
pub const DEMO_TEMPLATE: &str = include_str!("profiles/demo.toml");

/// The context-cleaner stack's template (see [`context_cleaner`]).
pub const CONTEXT_CLEANER_TEMPLATE: &str = include_str!("profiles/context-cleaner.toml");

/// The demo's ports sit above this by 23, 17 and 10, away from the usual 8xxx and 9xxx.
pub const DEMO_PORT_BASE: u16 = 28100;

/// The names of every built-in profile.
pub const NAMES: &[&str] = &["context-cleaner", "demo", "example"];

/// A setting of the context-cleaner profile: its `--set` key, its environment variable, and
/// what it is, with its default.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub meaning: &'static str,
}

pub const CONTEXT_CLEANER_SETTINGS: &[Setting] = &[
    Setting {
        key: "bin",
        env: "CONTEXT_CLEANER_BIN",
        meaning: "the app's `context-cleaner` executable [default: the first on PATH that is \
                  not a ccscope redirect]",
    },
    Setting {
        key: "python",
        env: "CONTEXT_CLEANER_PYTHON",
        meaning: "the Python of its venv, which runs the dashboard [default: `python` beside \
                  the executable, else python3]",
    },
    Setting {
        key: "data_dir",
        env: "CONTEXT_CLEANER_DATA_DIR",
        meaning: "the app's data directory [default: ~/.context_cleaner/data]",
    },
    Setting {
        key: "telemetry_dir",
        env: "CONTEXT_CLEANER_TELEMETRY_DIR",
        meaning: "the package's resources/telemetry, whose config files the containers mount \
                  [default: found in the venv beside the executable; none: nothing mounted]",
    },
    Setting {
        key: "dashboard_port",
        env: "CONTEXT_CLEANER_PORT",
        meaning: "the dashboard's port [default: 8110]",
    },
    Setting {
        key: "clickhouse_port",
        env: "CCSCOPE_CC_CLICKHOUSE_PORT",
        meaning: "ClickHouse's HTTP port on 127.0.0.1 [default: 8123]",
    },
    Setting {
        key: "otlp_port",
        env: "CCSCOPE_CC_OTLP_PORT",
        meaning: "the collector's OTLP gRPC port [default: 4317]",
    },
    Setting {
        key: "otlp_http_port",
        env: "CCSCOPE_CC_OTLP_HTTP_PORT",
        meaning: "the collector's OTLP HTTP port [default: 4318]",
    },
    Setting {
        key: "clickhouse_image",
        env: "CCSCOPE_CC_CLICKHOUSE_IMAGE",
        meaning: "[default: clickhouse/clickhouse-server:latest, as the app's compose file]",
    },
    Setting {
        key: "otel_image",
        env: "CCSCOPE_CC_OTEL_IMAGE",
        meaning: "[default: otel/opentelemetry-collector-contrib:latest]",
    },
    Setting {
        key: "network",
        env: "CCSCOPE_CC_NETWORK",
        meaning: "an existing docker network for both containers, where the collector reaches \
                  `clickhouse` by name [default: none, docker's bridge]",
    },
    Setting {
        key: "project",
        env: "CCSCOPE_CC_PROJECT",
        meaning: "the project name [default: context-cleaner]",
    },
];

static SET: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Takes the `--set KEY=VALUE` pairs of the command line. Each must be a setting of the
/// profile in use; without `--profile context-cleaner` there is nothing to set.
pub fn apply_settings(profile: Option<&str>, pairs: &[String]) -> Result<(), String> {
    if pairs.is_empty() {
        return Ok(());
    }
    if profile != Some("context-cleaner") {
        return Err(
            "--set applies to a built-in profile's settings: only `--profile context-cleaner` has any"
                .into(),
        );
    }
    let mut parsed = Vec::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("--set `{pair}` is not KEY=VALUE"));
        };
        if !CONTEXT_CLEANER_SETTINGS.iter().any(|s| s.key == key) {
            let keys = CONTEXT_CLEANER_SETTINGS.iter().map(|s| s.key);
            let hint = crate::suggest::closest(key, keys.clone())
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            let all: Vec<&str> = keys.collect();
            return Err(format!(
                "`{key}` is not a setting of the context-cleaner profile ({hint}settings: {})",
                all.join(", ")
            ));
        }
        parsed.push((key.to_string(), value.to_string()));
    }
    let _ = SET.set(parsed);
    Ok(())
}

/// A setting from `--set`, else its environment variable; empty counts as unset.
fn setting(key: &str) -> Option<String> {
    let from_set = SET.get().and_then(|s| {
        s.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    });
    let env = CONTEXT_CLEANER_SETTINGS.iter().find(|s| s.key == key)?.env;
    from_set
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.is_empty())
}

pub fn find(name: &str) -> Option<Cow<'static, str>> {
    match name {
        "example" => Some(Cow::Borrowed(EXAMPLE)),
        "demo" => Some(Cow::Owned(demo(
            &std::env::var("CCSCOPE_DEMO_PROJECT")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "demo".into()),
            std::env::var("CCSCOPE_DEMO_PORT_BASE")
                .ok()
                .and_then(|b| b.parse().ok())
                .filter(|b| *b <= u16::MAX - 100)
                .unwrap_or(DEMO_PORT_BASE),
        ))),
        "context-cleaner" => Some(Cow::Owned(context_cleaner())),
        _ => None,
    }
}

pub fn names() -> Vec<&'static str> {
    NAMES.to_vec()
}

/// The demo stack for `project`, its ports above `port_base`, its services run by this very
/// ccscope binary.
pub fn demo(project: &str, port_base: u16) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "ccscope".into());
    let quoted = exe.replace('\\', "\\\\").replace('"', "\\\"");
    DEMO_TEMPLATE
        .replace("@PROJECT@", project)
        .replace("@CCSCOPE@", &quoted)
        .replace("@CLICKHOUSE_PORT@", &(port_base + 23).to_string())
        .replace("@TELEMETRY_PORT@", &(port_base + 17).to_string())
        .replace("@DASHBOARD_PORT@", &(port_base + 10).to_string())
}

/// The line a ccscope redirect wrapper carries, by which ccscope knows its own files.
pub const REDIRECT_MARKER: &str = "# ccscope-redirect: written by `ccscope redirects install`";

/// Whether the file at `path` is a ccscope redirect wrapper (its second line is the marker).
pub fn is_redirect_wrapper(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    String::from_utf8_lossy(&head[..n])
        .lines()
        .take(3)
        .any(|l| l == REDIRECT_MARKER)
}

/// The first executable `name` on PATH that is not a ccscope redirect wrapper.
pub fn real_executable(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                && !is_redirect_wrapper(p)
        })
}

/// A TOML basic string of `s`.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A port setting, or its default when unset or not a port (validation would not say which
/// setting was wrong; the default is at least a port).
fn port(key: &str, default: u16) -> u16 {
    match setting(key).map(|v| v.parse::<u16>()) {
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            tracing::warn!("--set {key} / its variable is not a port number: using {default}");
            default
        }
        None => default,
    }
}

/// The context-cleaner stack, its settings applied.
pub fn context_cleaner() -> String {
    let bin = setting("bin")
        .map(PathBuf::from)
        .or_else(|| real_executable("context-cleaner", std::env::var_os("PATH").as_deref()));
    if bin.is_none() {
        tracing::warn!(
            "no context-cleaner executable found (CONTEXT_CLEANER_BIN is unset and none is on \
             PATH, ccscope's own redirects aside): install it with `python3.12 -m venv ~/.venvs/cc && \
             ~/.venvs/cc/bin/pip install context-cleaner==0.3.0`, then set \
             CONTEXT_CLEANER_BIN=~/.venvs/cc/bin/context-cleaner (or --set bin=PATH)"
        );
    }
    let venv_bin = bin.as_deref().and_then(Path::parent);
    let python = setting("python").or_else(|| {
        venv_bin
            .map(|d| d.join("python"))
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
    });
    let telemetry = setting("telemetry_dir").map(PathBuf::from).or_else(|| {
        let lib = venv_bin?.parent()?.join("lib");
        std::fs::read_dir(lib)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| {
                e.path()
                    .join("site-packages/context_cleaner/resources/telemetry")
            })
            .find(|p| p.is_dir())
    });
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let data_dir = setting("data_dir").unwrap_or_else(|| format!("{home}/.context_cleaner/data"));
    let mount = |file: &str, target: &str| {
        telemetry
            .as_ref()
            .map(|d| {
                format!(
                    ", {}",
                    quoted(&format!("{}:{target}", d.join(file).display()))
                )
            })
            .unwrap_or_default()
    };
    let clickhouse_volumes = format!(
        "\"telemetry_clickhouse_data:/var/lib/clickhouse\"{}{}",
        mount(
            "otel-clickhouse-init.sql",
            "/docker-entrypoint-initdb.d/init.sql"
        ),
        mount(
            "clickhouse-users.xml",
            "/etc/clickhouse-server/users.d/users.xml"
        ),
    );
    let otel_volumes = mount("otel-simple.yaml", "/etc/otelcol-contrib/config.yaml")
        .trim_start_matches(", ")
        .to_string();
    let network = setting("network")
        .map(|n| format!("network = {}", quoted(&n)))
        .unwrap_or_default();
    // On a network of its own, the collector's config reaches `clickhouse:9000` by name.
    let clickhouse_network = if network.is_empty() {
        String::new()
    } else {
        format!("{network}\nname = \"clickhouse\"")
    };
    let project = setting("project").unwrap_or_else(|| "context-cleaner".into());
    let real = bin
        .as_ref()
        .filter(|b| b.is_absolute())
        .map(|b| format!("real = {}", quoted(&b.display().to_string())))
        .unwrap_or_default();
    let text = |s: &Option<String>, default: &str| {
        let v = s.clone().unwrap_or_else(|| default.to_string());
        quoted(&v).trim_matches('"').to_string()
    };
    CONTEXT_CLEANER_TEMPLATE
        .replace("@PROJECT@", &text(&Some(project), ""))
        .replace(
            "@CONTEXT_CLEANER@",
            &text(&bin.map(|b| b.display().to_string()), "context-cleaner"),
        )
        .replace("@PYTHON@", &text(&python, "python3"))
        .replace("@DATA_DIR@", &text(&Some(data_dir), ""))
        .replace(
            "@CLICKHOUSE_IMAGE@",
            &text(
                &setting("clickhouse_image"),
                "clickhouse/clickhouse-server:latest",
            ),
        )
        .replace(
            "@OTEL_IMAGE@",
            &text(
                &setting("otel_image"),
                "otel/opentelemetry-collector-contrib:latest",
            ),
        )
        .replace("@CLICKHOUSE_VOLUMES@", &clickhouse_volumes)
        .replace("@OTEL_VOLUMES@", &otel_volumes)
        .replace("@REAL@", &real)
        .replace("@CLICKHOUSE_NETWORK@", &clickhouse_network)
        .replace("@NETWORK@", &network)
        .replace(
            "@DASHBOARD_PORT@",
            &port("dashboard_port", 8110).to_string(),
        )
        .replace(
            "@CLICKHOUSE_PORT@",
            &port("clickhouse_port", 8123).to_string(),
        )
        .replace("@OTLP_PORT@", &port("otlp_port", 4317).to_string())
        .replace(
            "@OTLP_HTTP_PORT@",
            &port("otlp_http_port", 4318).to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(service: &str) -> Vec<regex::Regex> {
        let config = crate::config::parse_config(
            &context_cleaner(),
            crate::config::ConfigSource::Profile("context-cleaner".into()),
            Path::new("/"),
        )
        .unwrap();
        config.services[service]
            .discover
            .cmdline
            .iter()
            .map(|r| regex::Regex::new(r).unwrap())
            .collect()
    }

    #[test]
    fn the_profile_validates_and_plans_as_the_first_users_plan_draws_it() {
        let config = crate::config::parse_config(
            &context_cleaner(),
            crate::config::ConfigSource::Profile("context-cleaner".into()),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            crate::config::graph::start_layers(&config),
            vec![
                vec!["clickhouse".to_string()],
                vec!["telemetry_collector".to_string()],
                vec!["bridge_sync".to_string(), "dashboard".to_string()],
            ]
        );
        assert_eq!(config.project.docker_compose_projects, ["telemetry"]);
    }

    #[test]
    fn every_side_door_is_found_and_ccscope_itself_is_not() {
        let dashboard = rules("dashboard");
        let bridge = rules("bridge_sync");
        let hits = |rules: &[regex::Regex], line: &str| rules.iter().any(|r| r.is_match(line));
        for line in [
            "/home/u/.venvs/cc/bin/python3.12 /home/u/.venvs/cc/bin/context-cleaner dashboard --port 9999",
            "context-cleaner run --dashboard-port 8111",
            "python3 -m context_cleaner.cli.main dashboard --port 9999",
            "python -c from context_cleaner.dashboard import Dashboard; Dashboard().start_server()",
            "python3.12 -u -c import context_cleaner; print(1)",
            "python start_context_cleaner.py --daemon",
            "/usr/bin/python3 /opt/cc/bin/context-cleaner run --no-orchestration",
        ] {
            assert!(hits(&dashboard, line), "not found: {line}");
        }
        for line in [
            "/v/bin/python3.12 /v/bin/context-cleaner bridge sync --start-monitoring --interval 15",
            "python3 -m context_cleaner.cli.main bridge sync",
            "context-cleaner bridge sync --once",
        ] {
            assert!(hits(&bridge, line), "not found: {line}");
        }
        for line in [
            "ccscope run --profile context-cleaner",
            "/usr/bin/ccscope stop --project context-cleaner",
            "timeout 5 context-cleaner stop",
            "grep context_cleaner notes.txt",
            "vim context_cleaner/cli/main.py",
        ] {
            assert!(
                !hits(&dashboard, line) && !hits(&bridge, line),
                "taken for a side door: {line}"
            );
        }
    }

    #[test]
    fn a_redirect_wrapper_is_never_the_real_executable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (first, second) = (tmp.path().join("a"), tmp.path().join("b"));
        for dir in [&first, &second] {
            std::fs::create_dir(dir).unwrap();
        }
        let write = |p: &Path, text: &str| {
            std::fs::write(p, text).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(
            &first.join("cc"),
            &format!("#!/bin/sh\n{REDIRECT_MARKER}\n"),
        );
        write(&second.join("cc"), "#!/bin/sh\necho real\n");
        let path = std::env::join_paths([&first, &second]).unwrap();
        assert_eq!(real_executable("cc", Some(&path)), Some(second.join("cc")));
        assert!(is_redirect_wrapper(&first.join("cc")));
    }
}
