//! Stacks compiled into the binary, selected with `--profile NAME`.

use std::borrow::Cow;

/// The text `ccscope init` writes; also the `example` profile, so `ccscope check --profile
/// example` shows what init would write without writing it.
pub const EXAMPLE: &str = include_str!("profiles/example.toml");

/// The demo stack's template (see [`demo`]).
pub const DEMO_TEMPLATE: &str = include_str!("profiles/demo.toml");

/// The demo's ports sit above this by 23, 17 and 10, away from the usual 8xxx and 9xxx.
pub const DEMO_PORT_BASE: u16 = 28100;

/// The names of every built-in profile.
pub const NAMES: &[&str] = &["demo", "example"];

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
