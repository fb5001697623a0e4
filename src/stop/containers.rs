//! Step 5 of the stop, the sweep: the project's containers — labelled `ccscope.project=<p>`
//! (from any run, or started by hand with our labels) and those of the compose projects the
//! stack names (`com.docker.compose.project=<name>`) — stopped with their service's stop
//! signal and timeout in their service's layer, then removed (unless kept). Only those exact
//! labels select a container: anything else on the daemon, its networks, volumes and the
//! daemon itself are never touched. No daemon is a notice, not a failure.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Survivor;
use crate::config::Config;
use crate::docker::{ContainerInfo, DockerError, Engine, LABEL_COMPOSE_PROJECT};
use crate::escalate::{Force, Grace};

/// What the sweep does once a container has stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContainerSweep {
    /// Stop the containers, and leave them there (`--keep-containers`).
    pub keep: bool,
}

/// One container of the project, as the stop left it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStop {
    pub id: String,
    pub name: String,
    pub image: String,
    /// The configured service it is part of (its `ccscope.service` label), if any.
    pub service: Option<String>,
    /// The compose project it was found by, for a compose container.
    pub compose_project: Option<String>,
    /// Its state when the stop found it ("running", "exited", …).
    pub state: String,
    /// The stop signal sent (null with --force, or when it was not running).
    pub signal: Option<&'static str>,
    /// Milliseconds from the layer's first signal until it had stopped.
    pub time_to_stop_ms: Option<u64>,
    /// It outlived its stop timeout (or --force came) and was SIGKILLed.
    pub killed: bool,
    pub removed: bool,
    /// What the daemon answered when a stop or removal failed.
    pub error: Option<String>,
    /// What went wrong on the side without failing its stop (a paused container that would
    /// not unpause first): said among the stop's warnings.
    #[serde(skip)]
    pub(crate) warning: Option<String>,
}

/// The daemon and the project's containers on it, as found at the start of the stop.
pub(crate) struct Found {
    pub engine: Option<Engine>,
    pub containers: Vec<ContainerInfo>,
    /// No daemon answers: said once, and the stop goes on with processes only.
    pub notice: Option<String>,
    pub warnings: Vec<String>,
}

/// The daemon's containers of `config`'s project and its compose projects, each once.
pub(crate) async fn find(config: &Config) -> Found {
    let engine = match Engine::connect().await {
        Ok(engine) => engine,
        Err(e) => {
            return Found {
                engine: None,
                containers: Vec::new(),
                notice: Some(unreachable_notice(&e)),
                warnings: Vec::new(),
            };
        }
    };
    let (containers, warnings) = list(&engine, config).await;
    Found {
        engine: Some(engine),
        containers,
        notice: None,
        warnings,
    }
}

fn unreachable_notice(e: &DockerError) -> String {
    match e {
        DockerError::Unreachable { socket, .. } => format!(
            "no docker daemon answers at {socket}: no container was looked for (processes only)"
        ),
        other => format!("docker could not be asked ({other}): no container was looked for"),
    }
}

pub(crate) use crate::discover::containers::{list, short_id};

/// The configured service a container is part of: its `ccscope.service` label, when it is
/// labelled with this project and names a service of the stack.
pub(crate) fn service_of<'c>(config: &Config, c: &'c ContainerInfo) -> Option<&'c str> {
    c.service()
        .filter(|_| c.project() == Some(config.project.name.as_str()))
        .filter(|s| config.services.contains_key(*s))
}

/// How a container is ended: its service's stop signal and timeout (SIGTERM and the default
/// for a container of no configured service, and for a compose container), or a kill.
pub(crate) fn grace(
    config: &Config,
    c: &ContainerInfo,
    force: bool,
    timeout: Option<Duration>,
) -> Grace {
    if force {
        return Grace::None;
    }
    match service_of(config, c).and_then(|s| config.services.get(s)) {
        Some(svc) => Grace::Signal {
            signal: svc.stop_signal,
            timeout: timeout.unwrap_or(svc.stop_timeout.0),
        },
        None => Grace::Signal {
            signal: crate::config::DEFAULT_STOP_SIGNAL,
            timeout: timeout.unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT),
        },
    }
}

/// A container as the report names it before anything is done (`--dry-run`'s line).
pub(crate) fn planned(config: &Config, c: &ContainerInfo, grace: Grace) -> ContainerStop {
    ContainerStop {
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.clone(),
        service: service_of(config, c).map(str::to_string),
        compose_project: c.labels.get(LABEL_COMPOSE_PROJECT).cloned(),
        state: c.state.clone(),
        signal: match grace {
            Grace::Signal { signal, .. } if stoppable(c) => Some(signal.name),
            _ => None,
        },
        time_to_stop_ms: None,
        killed: false,
        removed: false,
        error: None,
        warning: None,
    }
}

/// Whether the container has a process to signal. One that is not running (exited,
/// created) has nothing: only its removal is left. A paused or restarting one is stopped
/// like a running one.
fn stoppable(c: &ContainerInfo) -> bool {
    !matches!(c.state.as_str(), "exited" | "created" | "dead")
}

/// Ends one layer's containers at once, each with its grace, the layer's clock started at
/// `layer_start`; then removes them unless `sweep` keeps them.
pub(crate) async fn end_all(
    engine: &Engine,
    config: &Config,
    group: &[(ContainerInfo, Grace)],
    layer_start: Instant,
    sweep: ContainerSweep,
    force: &Force,
) -> Vec<ContainerStop> {
    let ends = group
        .iter()
        .map(|(c, grace)| end(engine, config, c, *grace, layer_start, sweep, force));
    futures_util::future::join_all(ends).await
}

async fn end(
    engine: &Engine,
    config: &Config,
    c: &ContainerInfo,
    grace: Grace,
    layer_start: Instant,
    sweep: ContainerSweep,
    force: &Force,
) -> ContainerStop {
    let mut report = planned(config, c, grace);
    let stoppable = stoppable(c);
    // A paused container is frozen: it would act on no signal but SIGKILL, and its whole
    // timeout would pass. It is unpaused first (a kill needs no unpause).
    if c.state == "paused" && matches!(grace, Grace::Signal { .. }) && !force.is_forced() {
        if let Err(e) = engine.unpause(&c.id).await {
            report.warning = Some(format!(
                "container {} is paused and could not be unpaused before its stop signal ({e})",
                c.name
            ));
        }
    }
    if stoppable {
        let stopped = match grace {
            Grace::None => engine
                .stop(&c.id, libc::SIGKILL, Duration::ZERO)
                .await
                .map(|_| true),
            Grace::Signal { signal, timeout } => {
                let left = timeout.saturating_sub(layer_start.elapsed());
                tokio::select! {
                    outcome = engine.stop(&c.id, signal.number, left) => outcome.map(|o| o.killed),
                    // A second Ctrl-C or `stop --force` from elsewhere: no more grace.
                    () = force.forced() => engine
                        .stop(&c.id, libc::SIGKILL, Duration::ZERO)
                        .await
                        .map(|_| true),
                }
            }
        };
        match stopped {
            Ok(killed) => {
                report.killed = killed;
                report.time_to_stop_ms = Some(layer_start.elapsed().as_millis() as u64);
            }
            Err(e) => report.error = Some(format!("stop: {e}")),
        }
    }
    if !sweep.keep {
        match engine.remove(&c.id).await {
            Ok(()) => report.removed = true,
            Err(e) => {
                let e = format!("remove: {e}");
                report.error = Some(match report.error.take() {
                    Some(before) => format!("{before}; {e}"),
                    None => e,
                });
            }
        }
    }
    report
}

/// The containers still there after the stop, listed again by label: one running, or one
/// not removed when it should have been, is a survivor.
pub(crate) async fn survivors(
    engine: &Engine,
    config: &Config,
    selection: &super::Selection,
    sweep: ContainerSweep,
    warnings: &mut Vec<String>,
) -> Vec<Survivor> {
    let (left, failed) = list(engine, config).await;
    warnings.extend(
        failed
            .into_iter()
            .map(|w| format!("{w} (to verify the stop)")),
    );
    left.into_iter()
        .filter(|c| selection.includes(service_of(config, c)))
        .filter(|c| !sweep.keep || c.is_running() || c.state == "paused")
        .map(|c| Survivor {
            pid: c.pid.unwrap_or(0),
            command_line: format!("{} (image {})", c.name, c.image),
            where_: format!("container {} ({})", short_id(&c.id), c.state),
            container: Some(c.id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(labels: &[(&str, &str)], state: &str) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef0123".into(),
            name: "c".into(),
            image: "img".into(),
            state: state.into(),
            health: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: Vec::new(),
            pid: None,
            started_at: None,
            exit_code: None,
            restart_count: 0,
        }
    }

    fn config() -> Config {
        crate::config::parse_config(
            r#"
[project]
name = "demo"
[services.db]
command = ["sleep", "1"]
stop_signal = "SIGINT"
stop_timeout = "7s"
"#,
            crate::config::ConfigSource::Profile("test".into()),
            std::path::Path::new("/x"),
        )
        .unwrap()
    }

    #[test]
    fn a_container_of_a_configured_service_gets_its_stop_signal_and_timeout() {
        let config = config();
        let c = container(
            &[("ccscope.project", "demo"), ("ccscope.service", "db")],
            "running",
        );
        match grace(&config, &c, false, None) {
            Grace::Signal { signal, timeout } => {
                assert_eq!(signal.name, "SIGINT");
                assert_eq!(timeout, Duration::from_secs(7));
            }
            Grace::None => panic!("expected a graceful stop"),
        }
        assert_eq!(
            planned(&config, &c, grace(&config, &c, false, None)).signal,
            Some("SIGINT")
        );
    }

    #[test]
    fn an_unknown_service_or_a_compose_container_gets_sigterm_and_the_default() {
        let config = config();
        for c in [
            container(
                &[("ccscope.project", "demo"), ("ccscope.service", "gone")],
                "running",
            ),
            container(&[(LABEL_COMPOSE_PROJECT, "otel")], "running"),
            // Another project's service label names no service of ours.
            container(
                &[("ccscope.project", "other"), ("ccscope.service", "db")],
                "running",
            ),
        ] {
            assert_eq!(service_of(&config, &c), None);
            match grace(&config, &c, false, None) {
                Grace::Signal { signal, timeout } => {
                    assert_eq!(signal.name, "SIGTERM");
                    assert_eq!(timeout, crate::config::DEFAULT_STOP_TIMEOUT);
                }
                Grace::None => panic!("expected a graceful stop"),
            }
        }
    }

    #[test]
    fn force_and_timeout_override_and_a_stopped_container_gets_no_signal() {
        let config = config();
        let c = container(
            &[("ccscope.project", "demo"), ("ccscope.service", "db")],
            "exited",
        );
        assert!(matches!(grace(&config, &c, true, None), Grace::None));
        assert!(matches!(
            grace(&config, &c, false, Some(Duration::from_secs(1))),
            Grace::Signal { timeout, .. } if timeout == Duration::from_secs(1)
        ));
        assert_eq!(
            planned(&config, &c, grace(&config, &c, false, None)).signal,
            None
        );
        assert_eq!(short_id(&c.id), "0123456789ab");
    }
}
