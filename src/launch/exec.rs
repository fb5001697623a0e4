//! `exec` as one call: an ad-hoc command inside the project's containment, registered and
//! marked like any service, waited for with the termination signals forwarded to it, and
//! whatever it leaves behind kept contained and registered — so work started by hand is never
//! orphaned.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use serde::Serialize;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{LaunchError, LaunchSpec, Launched, OutputTarget, current_launcher, launch};
use crate::config::{Config, Launch, check_unit_name_part};
use crate::contain::{
    BackendChoice, BackendKind, BusKind, ContainError, Containment, PGROUP_LOSSES, ScopeHandle,
    detect,
};
use crate::proc::ProcFs;
use crate::registry::{NewProcess, Registry, RegistryError, new_run_id};

/// The service name a command counts as when none is given.
pub const DEFAULT_SERVICE: &str = "exec";

/// What `exec` was asked.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The service it counts as; a configured one lends it its env, env files, working
    /// directory, limits and ports. None: [`DEFAULT_SERVICE`].
    pub service: Option<String>,
    pub argv: Vec<String>,
    /// Its working directory unless the service names one.
    pub cwd: PathBuf,
    /// Whether ccscope's stdin is a terminal: then the command shares ccscope's process
    /// group, so the terminal's job control and Ctrl-C reach it directly; otherwise it leads
    /// its own and ccscope forwards Ctrl-C and Ctrl-\ too.
    pub interactive: bool,
    pub strict_limits: bool,
    pub choice: BackendChoice,
    pub bus: BusKind,
}

/// How the command ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    /// Its exit code, or 128 + the signal that ended it (as a shell reports it).
    pub exit_code: i32,
    pub scope: ScopeHandle,
    /// What it started that still runs, contained and registered.
    pub left_running: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid service name \"{service}\": {why}")]
    InvalidService { service: String, why: &'static str },
    #[error("service `{0}` is a docker service; exec runs host commands")]
    DockerService(String),
    #[error("could not find the running ccscope binary: {}", crate::proc::describe_io(.0))]
    Launcher(std::io::Error),
    #[error("could not handle signals: {}", crate::proc::describe_io(.0))]
    Signals(std::io::Error),
    #[error(transparent)]
    Contain(#[from] ContainError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("waiting for the command failed: {}", crate::proc::describe_io(.0))]
    Wait(std::io::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Runs `request`'s command to its end. `warn` hears, as they happen, what the user should
/// know but what does not stop the command (an unenforced limit, a registry that failed, what
/// it left running).
pub async fn exec(
    config: &Config,
    registry: &Registry,
    request: &ExecRequest,
    warn: &mut dyn FnMut(String),
) -> Result<ExecOutcome, ExecError> {
    let service = request
        .service
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
    check_unit_name_part(&service).map_err(|why| ExecError::InvalidService {
        service: service.clone(),
        why,
    })?;
    let configured = config.services.get(&service);
    let launcher = current_launcher().map_err(ExecError::Launcher)?;
    if configured.is_some_and(|s| matches!(s.launch, Launch::Docker(_))) {
        return Err(ExecError::DockerService(service));
    }
    let spec = LaunchSpec {
        project: config.project.name.clone(),
        service: service.clone(),
        instance: Some(std::process::id().to_string()),
        run_id: new_run_id(),
        argv: request.argv.clone(),
        env: configured.map(|s| s.env.clone()).unwrap_or_default(),
        env_files: configured.map(|s| s.env_files.clone()).unwrap_or_default(),
        cwd: Some(
            configured
                .and_then(|s| s.cwd.clone())
                .unwrap_or_else(|| request.cwd.clone()),
        ),
        limits: configured.map(|s| s.limits.clone()).unwrap_or_default(),
        output: OutputTarget::Inherit,
        inherit_stdin: true,
        own_process_group: !request.interactive,
        strict_limits: request.strict_limits,
        launcher,
        tap: false,
    };
    // Listening before the command starts: a signal sent the moment it runs is forwarded,
    // not fatal to ccscope.
    let signals = Signals::listen().map_err(ExecError::Signals)?;
    let (containment, report) = detect(request.choice, request.bus).await?;
    if report.chosen == BackendKind::Pgroup && request.choice == BackendChoice::Auto {
        warn(PGROUP_LOSSES.to_string());
    }
    let launched = launch(&containment, &spec).await?;
    for limit in &launched.limits.unenforceable {
        warn(format!(
            "service `{service}`: the {} limit is not enforced: {}",
            limit.limit, limit.reason
        ));
    }
    let ports = configured.map(|s| s.ports.clone()).unwrap_or_default();
    let record = launched.record(&spec, ports);
    // The command runs already: a registry that fails now is reported, not a reason to
    // abandon it unwaited.
    if let Err(e) = registry.register(&record) {
        warn(format!(
            "the command runs, but could not be registered: {e}"
        ));
    }
    let Launched {
        identity,
        scope,
        mut child,
        ..
    } = launched;
    crate::audit::Event {
        event: "exec.start",
        project: &spec.project,
        service: Some(&spec.service),
        message: format!(
            "started `{}` in {}",
            record.command_line,
            scope.display_name()
        ),
        fields: vec![
            ("CCSCOPE_SCOPE", scope.display_name()),
            ("CCSCOPE_TARGET_PID", identity.pid.to_string()),
        ],
    }
    .record(crate::audit::Priority::Notice);

    let waiter = tokio::task::spawn_blocking(move || child.wait());
    let status = signals
        .forward_until(identity.pid, !request.interactive, waiter)
        .await
        .map_err(ExecError::Wait)?;
    let exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));

    if let Err(e) = registry.unregister(identity) {
        warn(format!(
            "could not remove the command's registry record: {e}"
        ));
    }
    let left_running = containment.processes(&scope).await?;
    if left_running.is_empty() {
        containment.release(&scope).await?;
    } else {
        // What it left behind stays contained and becomes known to `ps` and `stop`.
        let procfs = ProcFs::default();
        for pid in &left_running {
            if let Ok(identity) = procfs.identity(*pid) {
                registry.register(&NewProcess {
                    identity,
                    command_line: procfs.cmdline(*pid).unwrap_or_default(),
                    ports: Vec::new(),
                    ..record.clone()
                })?;
            }
        }
        warn(format!(
            "{} process(es) the command started still run, contained in {} and registered",
            left_running.len(),
            scope.display_name()
        ));
    }
    Ok(ExecOutcome {
        exit_code,
        scope,
        left_running,
    })
}

/// The termination signals ccscope handles (hence survives) while a command runs.
struct Signals {
    term: Signal,
    hup: Signal,
    int: Signal,
    quit: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Forwards them to the command until it exits; returns its status. At a terminal the
    /// command gets Ctrl-C and Ctrl-\ from the terminal itself, so those are not forwarded.
    async fn forward_until(
        mut self,
        pid: i32,
        forward_interrupts: bool,
        mut waiter: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>,
    ) -> std::io::Result<std::process::ExitStatus> {
        loop {
            let forward = tokio::select! {
                status = &mut waiter => return status.map_err(std::io::Error::other)?,
                _ = self.term.recv() => Some(libc::SIGTERM),
                _ = self.hup.recv() => Some(libc::SIGHUP),
                _ = self.int.recv() => forward_interrupts.then_some(libc::SIGINT),
                _ = self.quit.recv() => forward_interrupts.then_some(libc::SIGQUIT),
            };
            if let Some(sig) = forward {
                let _ = crate::proc::sys::kill(pid, sig);
            }
        }
    }
}
