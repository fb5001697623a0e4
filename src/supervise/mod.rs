//! The supervisor behind `ccscope run`: plan → preflight → start → supervise → stop.
//!
//! Its rules live in [`machine`], a state machine that does no I/O: it is fed what happened
//! (with the time) and hands back what to do. [`driver`] is the one async executor around it,
//! carrying effects out over the containment backend, the registry, the probes and the
//! control socket; [`container`] is its side of the Docker Engine for container services.
//! Beside them: [`preflight`] (ports, scopes and containers left behind), [`tap`] (the
//! services' output), [`progress`] (the typed lines a run reports), the single owner of
//! `waitpid` ([`reaper`]), the project [`lock`], and sd_notify ([`notify`]).

mod backoff;
pub mod container;
pub mod detach;
pub mod driver;
pub mod feed;
pub mod lock;
pub mod machine;
pub mod notify;
pub mod preflight;
pub mod probe;
pub mod progress;
pub mod reaper;
pub mod tap;
mod unit_status;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Config, Launch, graph};
use crate::contain::AnyContainment;
use crate::control;
use crate::proc::{ProcFs, describe_io};
use crate::registry::{NewRun, Registry, RunState};
use crate::stop::ShutdownReport;

pub use progress::{Progress, ProgressEvent, ServiceState};
use reaper::Reaper;

/// What `run` was asked to do.
pub struct RunOptions {
    /// Start these services and what they depend on (all when empty).
    pub only: Vec<String>,
    /// Stop what an earlier run left behind instead of adopting it back.
    pub clean: bool,
    pub strict_limits: bool,
    pub launcher: PathBuf,
    pub state_dir: PathBuf,
    /// How the configuration was found, and from where: a reload reads it again the same way.
    pub config_request: crate::config::ConfigRequest,
    pub cwd: PathBuf,
    /// The bus the project's D-Bus interface is exported on (`--system`: the system bus).
    pub bus: crate::contain::BusKind,
}

/// How a run ended.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ended {
    /// Stopped by a signal (Ctrl-C, SIGTERM) after an orderly stop.
    Stopped { report: ShutdownReport },
    /// `ccscope stop` took over (the supervisor stood down).
    StoodDown,
    /// The stack did not come up; what had started was stopped.
    StartFailed {
        service: String,
        reason: String,
        last_output: Vec<String>,
        report: ShutdownReport,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    #[error("{message}")]
    Refused { message: String, hint: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{0}")]
    Io(String),
}

/// Runs the stack of `config` until it is stopped. `progress` hears every state change.
pub async fn run(
    config: &Config,
    containment: AnyContainment,
    registry: &Registry,
    options: RunOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Ended, RunError> {
    let began = Instant::now();
    let project = config.project.name.clone();
    let selected = select(config, &options.only)?;
    // Under a `Type=notify` unit, systemd hears the same progress (READY=1, STATUS=…).
    let mut unit = unit_status::UnitStatus::new(&selected);
    let outer = progress;
    let mut both = |p: &Progress| {
        unit.progress(p);
        outer(p)
    };
    let progress: &mut dyn FnMut(&Progress) = &mut both;
    let _lock = lock::acquire(&options.state_dir, &project)?;
    crate::proc::fault::point(crate::proc::fault::SUPERVISOR_LOCKED);
    // Handled from here on: a Ctrl-C or a stand-down during preflight waits for the loop.
    let signals = driver::Signals::listen()
        .map_err(|e| RunError::Io(format!("could not handle signals: {}", describe_io(&e))))?;
    // Dropped before the lock (declared after it): the file goes while no other supervisor
    // can have bound it.
    let (control, _control_file) =
        control::listen(&options.state_dir, &project).map_err(|e| RunError::Io(e.to_string()))?;
    let reaper = Reaper::start()
        .map_err(|e| RunError::Io(format!("could not become a subreaper: {}", describe_io(&e))))?;
    let containment = Rc::new(containment);
    let mut warn = |message: String| {
        progress(&Progress {
            event: ProgressEvent::Warning,
            service: None,
            state: None,
            message,
            elapsed_ms: began.elapsed().as_millis() as u64,
        })
    };
    // Connected once, when a selected service is a container; a daemon that does not answer
    // fails each container service's launch with the reason (the start fails as for a
    // command that cannot run).
    let docker = match selected
        .iter()
        .any(|name| matches!(config.services[name].launch, Launch::Docker(_)))
    {
        true => Some(container::connect(&project).await),
        false => None,
    };
    let left_behind = preflight::preflight(
        config,
        &containment,
        registry,
        docker.as_deref(),
        &selected,
        options.clean,
        &mut warn,
    )
    .await?;
    let run_id = crate::registry::new_run_id();
    let me = ProcFs::default()
        .identity(std::process::id() as i32)
        .map_err(|e| RunError::Io(describe_io(&e)))?;
    registry.start_run(&NewRun {
        run_id: run_id.clone(),
        project: project.clone(),
        supervisor: me,
        config_hash: Some(config_hash(config)),
    })?;
    crate::proc::fault::point(crate::proc::fault::SUPERVISOR_RUN_RECORDED);
    // The projects index: an instance name (`ccscope@<project>`) finds its configuration.
    let config_path = match &config.source {
        crate::config::ConfigSource::File(path) => {
            Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()))
        }
        crate::config::ConfigSource::Profile(_) => None,
    };
    let config_path = config_path.map(|p| p.display().to_string());
    if let Err(e) = registry.note_project_run(&project, config_path.as_deref()) {
        tracing::warn!("could not record `{project}` in the projects index: {e}");
    }
    // WatchdogSec= of the unit: pinged from this loop, so a hung loop is caught.
    let watchdog = crate::unit::notify::watchdog_interval().map(|every| {
        tokio::task::spawn_local(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                crate::unit::notify::notify("WATCHDOG=1");
            }
        })
    });
    let order = graph::plan_line(config, &selected);
    crate::audit::Event {
        event: "run.started",
        project: &project,
        service: None,
        message: format!(
            "supervisor pid {} starts `{project}`: {order}",
            std::process::id()
        ),
        fields: vec![
            ("CCSCOPE_RUN_ID", run_id.clone()),
            ("CCSCOPE_ORDER", order.clone()),
        ],
    }
    .record(crate::audit::Priority::Notice);
    let machine = machine::Machine::new(
        config,
        &selected,
        machine::Setup {
            project,
            run_id: run_id.clone(),
            began,
            began_epoch_ms: epoch_ms(),
            jitter_seed: entropy(),
        },
    );
    let parts = driver::Parts {
        config,
        docker,
        run_id: run_id.clone(),
        containment,
        registry,
        options: &options,
        reaper,
        signals,
        control,
        progress,
    };
    // Every diagnostic of the run carries its id (`--log-format json` shows it).
    let span = tracing::info_span!("run", run_id = %run_id, project = %config.project.name);
    let ended = tracing::Instrument::instrument(
        driver::drive(machine, parts, left_behind.scopes, left_behind.containers),
        span,
    )
    .await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    let _ = registry.set_run_state(&run_id, RunState::Ended);
    let outcome = match &ended {
        Ended::StartFailed {
            service, reason, ..
        } => {
            let outcome = format!("failed: {service} did not come up: {reason}");
            crate::unit::notify::status(&outcome);
            outcome
        }
        Ended::Stopped { .. } | Ended::StoodDown => "stopped".to_string(),
    };
    let _ = registry.note_project_outcome(&config.project.name, &outcome);
    audit_end(&config.project.name, &run_id, &ended, began);
    Ok(ended)
}

/// The run's end in the journal: stopped (how), or the start that failed (an error).
fn audit_end(project: &str, run_id: &str, ended: &Ended, began: Instant) {
    let secs = began.elapsed().as_secs();
    let (event, service, priority, message) = match ended {
        Ended::Stopped { report } => (
            "run.stopped",
            None,
            crate::audit::Priority::Notice,
            format!(
                "the supervisor stopped the stack after {secs} s: {}",
                report.outcome.as_str()
            ),
        ),
        Ended::StoodDown => (
            "run.stopped",
            None,
            crate::audit::Priority::Notice,
            format!("the supervisor stood down for `ccscope stop` after {secs} s"),
        ),
        Ended::StartFailed {
            service, reason, ..
        } => (
            "run.start_failed",
            Some(service.as_str()),
            crate::audit::Priority::Error,
            format!("{service} did not come up: {reason}"),
        ),
    };
    crate::audit::Event {
        event,
        project,
        service,
        message,
        fields: vec![("CCSCOPE_RUN_ID", run_id.to_string())],
    }
    .record(priority);
}

/// The services to run: all, or those of `--only` and their dependencies.
fn select(config: &Config, only: &[String]) -> Result<BTreeSet<String>, RunError> {
    if only.is_empty() {
        return Ok(config.services.keys().cloned().collect());
    }
    for name in only {
        if !config.services.contains_key(name) {
            let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
            return Err(RunError::Refused {
                message: format!("--only names `{name}`, which is not a service of this stack"),
                hint: format!("the services are: {}", known.join(", ")),
            });
        }
    }
    Ok(graph::with_dependencies(config, only))
}

/// A stable fingerprint of the stack definition: a later run with the same one may adopt
/// what an earlier one left running.
pub fn config_hash(config: &Config) -> String {
    let services = serde_json::to_vec(&config.services).unwrap_or_default();
    format!("{:016x}", control::fnv1a(&services))
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Entropy for the restart jitter, from the kernel.
fn entropy() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    u64::from_le_bytes(bytes)
}
