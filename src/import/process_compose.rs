//! process-compose files (`process-compose.yaml`) → process services run by `/bin/sh -c`.

use std::path::Path;
use std::time::Duration;

use super::compose::normalize;
use super::stack::*;
use super::warning::Warnings;
use super::yaml::{Node, Value};

/// Looks like a process-compose file: top-level `processes`.
pub(crate) fn looks_like_process_compose(doc: &Node) -> bool {
    doc.get("processes").and_then(Node::as_map).is_some()
}

pub(crate) fn add(doc: &Node, path: &Path, w: &mut Warnings<'_>, stack: &mut Stack) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut global_env = Vec::new();
    for (key, value) in doc.as_map().unwrap_or_default() {
        match key.name.as_str() {
            "processes" => {}
            "version" => w.at(key.at, "`version` is the file format's own: not imported"),
            "environment" => global_env = env_list(value, w),
            other => w.at(
                key.at,
                format!("`{other}` has no ccscope equivalent: not imported"),
            ),
        }
    }
    let Some(processes) = doc.get("processes").and_then(Node::as_map) else {
        return;
    };
    for (name, p) in processes {
        let Some(command) = p.get("command").and_then(Node::scalar_text) else {
            w.at(
                name.at,
                format!("process `{}` has no `command`: not imported", name.name),
            );
            continue;
        };
        let mut s = ServiceOut::new(
            name.name.clone(),
            w.file,
            name.at,
            LaunchOut::Shell(command),
        );
        s.env.extend(global_env.iter().cloned());
        for (key, v) in p.as_map().unwrap_or_default() {
            match key.name.as_str() {
                "command" => {}
                "working_dir" => {
                    if let Some(d) = v.scalar_text() {
                        s.cwd = Some(normalize(&dir.join(d)));
                    }
                }
                "environment" => s.env.extend(env_list(v, w)),
                "depends_on" => depends_on(v, w, &mut s.depends_on),
                "readiness_probe" => s.ready = probe(v, w),
                "liveness_probe" => s.liveness = probe(v, w),
                "availability" => s.restart = availability(v, w),
                "shutdown" => shutdown(v, w, &mut s),
                "disabled" => {
                    if matches!(v.value, Value::Bool(true)) {
                        w.at(
                            key.at,
                            format!(
                                "`disabled` not imported: ccscope starts `{}` with the rest \
                                 (leave it out with `ccscope run --only`, or delete it)",
                                name.name
                            ),
                        );
                    }
                }
                "namespace" => w.at(
                    key.at,
                    "`namespace` not imported: ccscope has one namespace per project",
                ),
                "is_daemon" => w.at(
                    key.at,
                    "`is_daemon` not imported: not needed, the service's scope keeps a daemon it \
                     forks and `stop` ends it",
                ),
                other => w.at(
                    key.at,
                    format!(
                        "`{other}` of process `{}` has no ccscope equivalent: not imported",
                        name.name
                    ),
                ),
            }
        }
        stack.services.push(s);
    }
}

fn env_list(v: &Node, w: &mut Warnings<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match &v.value {
        Value::Seq(items) => {
            for item in items {
                match item
                    .scalar_text()
                    .as_deref()
                    .and_then(|t| t.split_once('='))
                {
                    Some((k, val)) => out.push((k.to_string(), val.to_string())),
                    None => w.at(item.at, "an environment entry without `=`: not imported"),
                }
            }
        }
        Value::Map(entries) => {
            for (k, val) in entries {
                out.push((k.name.clone(), val.scalar_text().unwrap_or_default()));
            }
        }
        _ => w.at(v.at, format!("`environment` is {}: not imported", v.kind())),
    }
    out
}

fn depends_on(v: &Node, w: &mut Warnings<'_>, into: &mut Vec<DependencyOut>) {
    for (name, spec) in v.as_map().unwrap_or_default() {
        let condition = spec.get("condition").and_then(Node::scalar_text);
        let at = spec.get("condition").map_or(name.at, |c| c.at);
        let condition = match condition.as_deref() {
            None | Some("process_started") => "started",
            Some("process_healthy") => "healthy",
            Some("process_completed_successfully") => "completed_successfully",
            Some("process_completed") => {
                w.at(at, "`process_completed` imported as `completed_successfully`: ccscope waits for exit code 0");
                "completed_successfully"
            }
            Some("process_log_ready") => {
                w.at(at, "`process_log_ready` imported as `healthy`: give the dependency a `ready = { log = \"…\" }` probe");
                "healthy"
            }
            Some(other) => {
                w.at(
                    at,
                    format!("condition `{other}` unknown: `started` imported"),
                );
                "started"
            }
        };
        into.push(DependencyOut {
            name: name.name.clone(),
            condition,
            restart: false,
        });
    }
}

fn seconds(v: &Node, w: &mut Warnings<'_>) -> Option<Duration> {
    match v.value {
        Value::Int(n) if n >= 0 => Some(Duration::from_secs(n.unsigned_abs())),
        Value::Float(f) if (0.0..86_400.0).contains(&f) => Some(Duration::from_secs_f64(f)),
        _ => {
            w.at(
                v.at,
                format!(
                    "expected a number of seconds, found {}: not imported",
                    v.kind()
                ),
            );
            None
        }
    }
}

fn probe(v: &Node, w: &mut Warnings<'_>) -> Option<ProbeOut> {
    let mut check = None;
    let mut p = ProbeOut {
        check: CheckOut::Exec(Vec::new()),
        interval: None,
        timeout: None,
        retries: None,
        start_timeout: None,
    };
    let mut initial_delay = Duration::ZERO;
    for (k, val) in v.as_map().unwrap_or_default() {
        match k.name.as_str() {
            "exec" => {
                if let Some(cmd) = val.get("command").and_then(Node::scalar_text) {
                    check = Some(CheckOut::Exec(vec!["/bin/sh".into(), "-c".into(), cmd]));
                }
                for (ek, _) in val.as_map().unwrap_or_default() {
                    if ek.name != "command" {
                        w.at(ek.at, format!("exec probe `{}` not imported", ek.name));
                    }
                }
            }
            "http_get" => check = http_get(val, w),
            "initial_delay_seconds" => initial_delay = seconds(val, w).unwrap_or_default(),
            "period_seconds" => p.interval = seconds(val, w),
            "timeout_seconds" => p.timeout = seconds(val, w),
            "failure_threshold" => p.retries = val.scalar_text().and_then(|t| t.parse().ok()),
            "success_threshold" => {
                if !matches!(val.value, Value::Int(1)) {
                    w.at(
                        k.at,
                        "`success_threshold` not imported: one success is ready for ccscope",
                    );
                }
            }
            other => w.at(
                k.at,
                format!("probe `{other}` has no ccscope equivalent: not imported"),
            ),
        }
    }
    p.check = match check {
        Some(c) => c,
        None => {
            w.at(
                v.at,
                "a probe with neither `exec` nor `http_get`: not imported",
            );
            return None;
        }
    };
    // process-compose probes after the initial delay and gives up after `failure_threshold`
    // failures a period apart: ccscope's start timeout is that moment.
    let period = p.interval.unwrap_or(Duration::from_secs(10));
    p.start_timeout =
        Some((initial_delay + period * p.retries.unwrap_or(3).max(1)).max(Duration::from_secs(1)));
    Some(p)
}

fn http_get(v: &Node, w: &mut Warnings<'_>) -> Option<CheckOut> {
    let text = |k: &str| v.get(k).and_then(Node::scalar_text);
    let scheme = text("scheme").unwrap_or_else(|| "http".into());
    if scheme != "http" {
        w.at(
            v.at,
            format!("an http_get probe over `{scheme}` not imported: ccscope probes http:// only"),
        );
        return None;
    }
    let host = text("host").unwrap_or_else(|| "127.0.0.1".into());
    let Some(port) = text("port") else {
        w.at(v.at, "an http_get probe without `port`: not imported");
        return None;
    };
    let path = text("path").unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    Some(CheckOut::Http(format!("http://{host}:{port}{path}")))
}

fn availability(v: &Node, w: &mut Warnings<'_>) -> Option<RestartOut> {
    let mut r = RestartOut {
        policy: "no",
        initial_backoff: None,
        max_restarts: None,
    };
    for (k, val) in v.as_map().unwrap_or_default() {
        match k.name.as_str() {
            "restart" => {
                r.policy = match val.scalar_text().as_deref() {
                    Some("always") => "always",
                    Some("on_failure") => "on-failure",
                    Some("no") | None => "no",
                    Some("exit_on_failure") => {
                        w.at(val.at, "restart `exit_on_failure` imported as `no`: a failed service takes its dependents down, not the whole stack");
                        "no"
                    }
                    Some(other) => {
                        w.at(val.at, format!("restart `{other}` unknown: `no` imported"));
                        "no"
                    }
                }
            }
            "backoff_seconds" => r.initial_backoff = seconds(val, w),
            "max_restarts" => r.max_restarts = val.scalar_text().and_then(|t| t.parse().ok()),
            other => w.at(
                k.at,
                format!("availability `{other}` has no ccscope equivalent: not imported"),
            ),
        }
    }
    Some(r)
}

fn shutdown(v: &Node, w: &mut Warnings<'_>, s: &mut ServiceOut) {
    for (k, val) in v.as_map().unwrap_or_default() {
        match k.name.as_str() {
            "signal" => {
                let found = match &val.value {
                    Value::Int(n) => crate::config::SIGNALS
                        .iter()
                        .find(|s| i64::from(s.number) == *n),
                    _ => val.scalar_text().and_then(|t| {
                        let t = t.to_ascii_uppercase();
                        let t = if t.starts_with("SIG") {
                            t
                        } else {
                            format!("SIG{t}")
                        };
                        crate::config::SIGNALS.iter().find(|s| s.name == t)
                    }),
                };
                match found {
                    Some(sig) => s.stop_signal = Some(sig.name.to_string()),
                    None => w.at(val.at, "a stop signal ccscope does not send: not imported"),
                }
            }
            "timeout_seconds" => s.stop_timeout = seconds(val, w),
            "command" => w.at(
                k.at,
                "shutdown `command` not imported: ccscope stops a service with its stop signal, \
                 then ends its whole scope",
            ),
            other => w.at(
                k.at,
                format!("shutdown `{other}` has no ccscope equivalent: not imported"),
            ),
        }
    }
}
