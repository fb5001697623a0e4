//! The imported stack written as a commented ccscope.toml. Paths are written relative to the
//! file's own directory (as ccscope reads them), so the pair can move together.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path};
use std::time::Duration;

use super::stack::*;
use crate::config::duration::format_duration;

/// The TOML text of `stack`, its paths relative to `base` (the output file's directory).
pub(crate) fn render(stack: &Stack, project: &str, sources: &[String], base: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ccscope.toml, written by `ccscope import {}`.",
        sources.join(" ")
    );
    out.push_str(
        "# Each setting that has no ccscope equivalent was printed as a warning with its file:line.\n\
         # Check it with `ccscope check`; the reference is the \"Configuration\" section of the README.\n\n",
    );
    out.push_str("[project]\n");
    let _ = writeln!(out, "name = {}", quote(project));
    if !stack.compose_projects.is_empty() {
        out.push_str(
            "# Containers docker compose started for these projects are stopped with the stack.\n",
        );
        let _ = writeln!(
            out,
            "docker_compose_projects = {}",
            array(&stack.compose_projects)
        );
    }
    for s in &stack.services {
        out.push('\n');
        service(&mut out, s, base);
    }
    out
}

fn service(out: &mut String, s: &ServiceOut, base: &Path) {
    let table = format!("services.{}", key(&s.name));
    let _ = writeln!(out, "# From {}.", s.origin);
    for note in &s.notes {
        let _ = writeln!(out, "# {note}.");
    }
    let _ = writeln!(out, "[{table}]");
    match &s.launch {
        LaunchOut::Shell(script) => {
            let _ = writeln!(out, "shell = {}", quote(script));
        }
        LaunchOut::Docker(_) => {}
    }
    if let Some(cwd) = &s.cwd {
        let _ = writeln!(out, "cwd = {}", quote(&relative(cwd, base)));
    }
    if !s.env_files.is_empty() {
        let files: Vec<String> = s.env_files.iter().map(|f| relative(f, base)).collect();
        let _ = writeln!(out, "env_file = {}", array(&files));
    }
    if !s.depends_on.is_empty() {
        let deps: Vec<String> = s
            .depends_on
            .iter()
            .map(|d| {
                let value = if d.restart {
                    format!("{{ condition = {}, restart = true }}", quote(d.condition))
                } else {
                    quote(d.condition)
                };
                format!("{} = {value}", key(&d.name))
            })
            .collect();
        let _ = writeln!(out, "depends_on = {{ {} }}", deps.join(", "));
    }
    if !s.ports.is_empty() {
        let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
        let _ = writeln!(out, "ports = [{}]", ports.join(", "));
    }
    if let Some(r) = &s.restart {
        if r.initial_backoff.is_none() && r.max_restarts.is_none() {
            let _ = writeln!(out, "restart = {}", quote(r.policy));
        } else {
            let mut parts = vec![format!("policy = {}", quote(r.policy))];
            if let Some(b) = r.initial_backoff {
                parts.push(format!("initial_backoff = {}", duration(b)));
                // ccscope's backoff doubles up to max_backoff; keep it at least the start.
                parts.push(format!(
                    "max_backoff = {}",
                    duration(b.max(Duration::from_secs(30)))
                ));
            }
            if let Some(m) = r.max_restarts {
                parts.push(format!("max_restarts = {m}"));
            }
            let _ = writeln!(out, "restart = {{ {} }}", parts.join(", "));
        }
    }
    if let Some(sig) = &s.stop_signal {
        let _ = writeln!(out, "stop_signal = {}", quote(sig));
    }
    if let Some(t) = s.stop_timeout {
        let _ = writeln!(out, "stop_timeout = {}", duration(t));
    }
    pairs(out, &format!("{table}.env"), &s.env);
    if let LaunchOut::Docker(d) = &s.launch {
        docker(out, &table, d, base);
    }
    if let Some(p) = &s.ready {
        probe(out, &format!("{table}.ready"), p);
    }
    if let Some(p) = &s.liveness {
        probe(out, &format!("{table}.liveness"), p);
    }
}

fn docker(out: &mut String, table: &str, d: &DockerOut, base: &Path) {
    let _ = writeln!(out, "[{table}.docker]");
    let _ = writeln!(out, "image = {}", quote(&d.image));
    if let Some(name) = &d.name {
        let _ = writeln!(out, "name = {}", quote(name));
    }
    if let Some(e) = &d.entrypoint {
        let _ = writeln!(out, "entrypoint = {}", array(e));
    }
    if let Some(c) = &d.command {
        let _ = writeln!(out, "command = {}", array(c));
    }
    if !d.ports.is_empty() {
        let _ = writeln!(out, "ports = {}", array(&d.ports));
    }
    if !d.volumes.is_empty() {
        let volumes: Vec<String> = d
            .volumes
            .iter()
            .map(|v| {
                let source = match &v.source {
                    VolumeSource::Bind(p) => {
                        let r = relative(p, base);
                        // A host side without `/` or a leading `.` would be a named volume.
                        if r.starts_with('.') || r.starts_with('/') {
                            r
                        } else {
                            format!("./{r}")
                        }
                    }
                    VolumeSource::Named(n) => n.clone(),
                };
                let mode = if v.read_only { ":ro" } else { "" };
                format!("{source}:{}{mode}", v.target)
            })
            .collect();
        out.push_str("volumes = [\n");
        for v in volumes {
            let _ = writeln!(out, "  {},", quote(&v));
        }
        out.push_str("]\n");
    }
    if let Some(w) = &d.workdir {
        let _ = writeln!(out, "workdir = {}", quote(w));
    }
    if let Some(u) = &d.user {
        let _ = writeln!(out, "user = {}", quote(u));
    }
    if let Some(i) = d.init {
        let _ = writeln!(out, "init = {i}");
    }
    if let Some(p) = d.pull {
        let _ = writeln!(out, "pull = {}", quote(p));
    }
    pairs(out, &format!("{table}.docker.env"), &d.env);
    pairs(out, &format!("{table}.docker.labels"), &d.labels);
}

fn probe(out: &mut String, table: &str, p: &ProbeOut) {
    let _ = writeln!(out, "[{table}]");
    match &p.check {
        CheckOut::Exec(argv) => {
            let _ = writeln!(out, "exec = {}", array(argv));
        }
        CheckOut::Http(url) => {
            let _ = writeln!(out, "http = {}", quote(url));
        }
    }
    if let Some(i) = p.interval.filter(|d| !d.is_zero()) {
        let _ = writeln!(out, "interval = {}", duration(i));
    }
    if let Some(t) = p.timeout.filter(|d| !d.is_zero()) {
        let _ = writeln!(out, "timeout = {}", duration(t));
    }
    if let Some(r) = p.retries {
        let _ = writeln!(out, "retries = {r}");
    }
    if let Some(s) = p.start_timeout {
        let _ = writeln!(out, "start_timeout = {}", duration(s));
    }
}

fn pairs(out: &mut String, table: &str, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let _ = writeln!(out, "[{table}]");
    for (k, v) in map {
        let _ = writeln!(out, "{} = {}", key(k), quote(v));
    }
}

fn duration(d: Duration) -> String {
    quote(&format_duration(d))
}

/// A TOML basic string on one line (so it serves as a key too).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A bare key where TOML allows one, else a quoted one.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// `path` relative to `base` (both absolute and normalized); `.` for `base` itself.
pub(crate) fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Nothing in common but the root: the absolute path says more than a row of `..`.
    if common <= 1 {
        return path.display().to_string();
    }
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common).collect();
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_go_up_and_down() {
        let base = Path::new("/w/proj");
        assert_eq!(relative(Path::new("/w/proj/a/b.yaml"), base), "a/b.yaml");
        assert_eq!(relative(Path::new("/w/other/x"), base), "../other/x");
        assert_eq!(relative(Path::new("/w/proj"), base), ".");
        assert_eq!(relative(Path::new("/etc/x"), base), "/etc/x");
    }

    #[test]
    fn keys_are_quoted_only_when_they_must_be() {
        assert_eq!(key("otel-collector"), "otel-collector");
        assert_eq!(key("com.example.team"), "\"com.example.team\"");
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
