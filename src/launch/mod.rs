//! Race-free launch: check everything that can fail before anything is created, spawn the
//! trampoline, place it in its scope, and only then let it exec the service.

pub mod exec;
pub mod forward;
mod output;
mod preflight;
pub mod trampoline;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub use output::{OutputTarget, log_file_path, open_log_file};
pub use preflight::{PreflightError, parse_env_file};

use crate::config::Limits;
use crate::contain::{
    AnyContainment, ContainError, Containment, LimitReport, ScopeHandle, ScopeSpec,
};
use crate::proc::markers;
use crate::proc::{ProcFs, ProcessIdentity};
use crate::registry::{NewProcess, ProcessSource, ProcessStatus};

/// Everything needed to start one service instance.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub project: String,
    pub service: String,
    /// Tells concurrent instances apart (`ccscope exec`); None for a configured service.
    pub instance: Option<String>,
    pub run_id: String,
    pub argv: Vec<String>,
    /// Variables set on top of ccscope's own environment (env files first, then these).
    pub env: BTreeMap<String, String>,
    pub env_files: Vec<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub limits: Limits,
    pub output: OutputTarget,
    /// Inherit ccscope's stdin (`exec`) instead of /dev/null.
    pub inherit_stdin: bool,
    /// Lead a session (and so a process group) of its own, away from any terminal, so a
    /// terminal's Ctrl-C reaches only the supervisor.
    pub own_process_group: bool,
    /// Refuse to start when a limit cannot be enforced.
    pub strict_limits: bool,
    /// The ccscope binary that serves as trampoline (normally the running one).
    pub launcher: PathBuf,
    /// Copy every output line to a pipe whose read end comes back in [`Launched::tap`].
    pub tap: bool,
}

/// The running ccscope binary, which is its own trampoline.
pub fn current_launcher() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}

/// A running, contained service instance.
#[derive(Debug)]
pub struct Launched {
    pub identity: ProcessIdentity,
    pub scope: ScopeHandle,
    pub limits: LimitReport,
    pub command_line: String,
    /// The process itself (the trampoline became the service: same pid).
    pub child: Child,
    /// The read end of the output tap (non-blocking), when the spec asked for one.
    pub tap: Option<OwnedFd>,
}

impl Launched {
    /// The registry record for this process.
    pub fn record(&self, spec: &LaunchSpec, ports: Vec<u16>) -> NewProcess {
        NewProcess {
            identity: self.identity,
            command_line: self.command_line.clone(),
            project: spec.project.clone(),
            service: spec.service.clone(),
            run_id: Some(spec.run_id.clone()),
            unit: self.scope.unit.clone(),
            cgroup: self.scope.cgroup.as_ref().map(|c| c.display().to_string()),
            ports,
            status: ProcessStatus::Running,
            source: ProcessSource::Launched,
        }
    }
}

/// Why a service instance did not start. Like [`PreflightError`]'s, the messages leave the
/// service out ([`LaunchError::service`] names it): the supervisor shows them on the
/// service's own line, the CLI prefixes them once.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("could not start the launcher: {}", crate::proc::describe_io(.source))]
    Spawn {
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not be contained: {source}")]
    Contain {
        service: String,
        #[source]
        source: ContainError,
    },
    #[error("{source}")]
    Limits {
        service: String,
        #[source]
        source: ContainError,
    },
    #[error("could not execute {program}: {reason}")]
    Exec {
        service: String,
        program: String,
        reason: String,
    },
    /// Its log file in the state directory cannot be opened safely.
    #[error("could not open its log file: {source}")]
    Log {
        service: String,
        #[source]
        source: crate::registry::RegistryError,
    },
}

impl LaunchError {
    /// The service that did not start.
    pub fn service(&self) -> &str {
        match self {
            LaunchError::Preflight(p) => p.service(),
            LaunchError::Spawn { service, .. }
            | LaunchError::Contain { service, .. }
            | LaunchError::Limits { service, .. }
            | LaunchError::Exec { service, .. }
            | LaunchError::Log { service, .. } => service,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            LaunchError::Preflight(p) => p.hint(),
            LaunchError::Log { source, .. } => source.hint(),
            LaunchError::Limits { .. } => Some(
                "drop the limits, or run without --strict-limits to start with a warning".into(),
            ),
            LaunchError::Contain {
                source: ContainError::AlreadyPopulated { .. },
                ..
            } => Some("an earlier start is still running: stop it first".into()),
            _ => None,
        }
    }
}

/// Starts `spec` inside a new scope of `containment`. On any failure nothing is left behind:
/// no process, no scope.
pub async fn launch(
    containment: &AnyContainment,
    spec: &LaunchSpec,
) -> Result<Launched, LaunchError> {
    let prepared = preflight::prepare(spec)?;
    let (go_read, go_write) = crate::proc::sys::pipe().map_err(|e| spawn_error(spec, e))?;
    let (status_read, status_write) = crate::proc::sys::pipe().map_err(|e| spawn_error(spec, e))?;
    let (tap_read, tap_write) = match spec.tap {
        true => {
            let (r, w) = crate::proc::sys::pipe().map_err(|e| spawn_error(spec, e))?;
            crate::proc::sys::set_nonblocking(&r).map_err(|e| spawn_error(spec, e))?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let (mut command, forward) =
        trampoline_command(spec, &prepared, &go_read, &status_write, tap_write)?;
    let child = command.spawn().map_err(|e| spawn_error(spec, e))?;
    tracing::debug!(service = spec.service, "launch: trampoline spawned");
    // The parent's copies must close, or the child's pipes would never see EOF.
    drop((go_read, status_write, forward, command));
    let pid = child.id() as i32;
    // Read while the trampoline waits for the go-ahead: it cannot have exited (or been reaped,
    // and its pid reused) yet. exec keeps the pid and the start time.
    let identity = match ProcFs::default().identity(pid) {
        Ok(id) => id,
        Err(e) => {
            abandon(child, go_write);
            return Err(spawn_error(spec, e));
        }
    };

    let scope_spec = ScopeSpec {
        project: &spec.project,
        service: &spec.service,
        instance: spec.instance.as_deref(),
        run_id: &spec.run_id,
        description: format!(
            "ccscope {} / {}: {}",
            spec.project,
            spec.service,
            spec.argv.join(" ")
        ),
        limits: &spec.limits,
    };
    let placed = containment.place(&scope_spec, pid).await;
    tracing::debug!(service = spec.service, "launch: placed");
    let (scope, limits) = match placed {
        Ok(p) => p,
        Err(source) => {
            abandon(child, go_write);
            return Err(LaunchError::Contain {
                service: spec.service.clone(),
                source,
            });
        }
    };
    if spec.strict_limits && !limits.unenforceable.is_empty() {
        abandon(child, go_write);
        let _ = containment.release(&scope).await;
        return Err(LaunchError::Limits {
            service: spec.service.clone(),
            source: ContainError::LimitsUnenforceable(limits.unenforceable),
        });
    }

    // Placed and verified: let it run the service.
    let mut go = std::fs::File::from(go_write);
    let went = go.write_all(b"g");
    drop(go);
    // The trampoline now execs the service: its status pipe closes (close-on-exec) or says
    // why the exec failed. Waited on the reactor, so that launches in flight overlap instead
    // of queueing behind each other's exec.
    let errno = exec_status(status_read).await;
    let exec_failed = errno.is_some();
    let errno = errno.unwrap_or_default();
    if went.is_err() || exec_failed {
        let mut child = child;
        let _ = child.wait();
        let _ = containment.release(&scope).await;
        let reason = if exec_failed {
            crate::proc::describe_io(&std::io::Error::from_raw_os_error(i32::from_le_bytes(
                errno,
            )))
        } else {
            "the launcher exited before it could run it".to_string()
        };
        return Err(LaunchError::Exec {
            service: spec.service.clone(),
            program: prepared.program.display().to_string(),
            reason,
        });
    }
    Ok(Launched {
        identity,
        scope,
        limits,
        command_line: spec.argv.join(" "),
        child,
        tap: tap_read,
    })
}

/// Reads the trampoline's status pipe to its end: the errno of a failed exec (4 bytes), or
/// None once the pipe closes on a successful one.
async fn exec_status(status: OwnedFd) -> Option<[u8; 4]> {
    let mut errno = [0u8; 4];
    let mut got = 0;
    let readable = crate::proc::sys::set_nonblocking(&status)
        .and_then(|()| crate::proc::sys::async_readable(status));
    let Ok(fd) = readable else {
        return None;
    };
    while got < errno.len() {
        let Ok(mut ready) = fd.readable().await else {
            return None;
        };
        match ready.try_io(|inner| crate::proc::sys::read(inner.get_ref(), &mut errno[got..])) {
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return None,
            Err(_would_block) => {}
        }
    }
    Some(errno)
}

fn spawn_error(spec: &LaunchSpec, source: std::io::Error) -> LaunchError {
    LaunchError::Spawn {
        service: spec.service.clone(),
        source,
    }
}

/// Withdraws the go-ahead: the trampoline sees EOF and exits without running the service.
fn abandon(mut child: Child, go_write: OwnedFd) {
    drop(go_write);
    let _ = child.wait();
}

/// The trampoline's command, and the journal pipes' read ends it inherits (to be closed in
/// the parent once it is spawned).
fn trampoline_command(
    spec: &LaunchSpec,
    prepared: &preflight::Prepared,
    go_read: &OwnedFd,
    status_write: &OwnedFd,
    tap: Option<OwnedFd>,
) -> Result<(Command, Option<output::Forward>), LaunchError> {
    let opened = output::open(&spec.output, tap).map_err(|e| match e {
        output::OpenError::Io(e) => spawn_error(spec, e),
        output::OpenError::Log(source) => LaunchError::Log {
            service: spec.service.clone(),
            source,
        },
    })?;
    let mut keep = vec![go_read.as_raw_fd(), status_write.as_raw_fd()];
    let mut command = Command::new(&spec.launcher);
    command
        .arg(trampoline::SUBCOMMAND)
        .arg(go_read.as_raw_fd().to_string())
        .arg(status_write.as_raw_fd().to_string())
        .arg(&prepared.program);
    if let Some(f) = &opened.forward {
        let optional = |fd: &Option<OwnedFd>| fd.as_ref().map(|f| f.as_raw_fd());
        let (file, tap) = (optional(&f.file), optional(&f.tap));
        keep.extend(
            [Some(f.out.as_raw_fd()), Some(f.err.as_raw_fd()), file, tap]
                .into_iter()
                .flatten(),
        );
        let text = |fd: Option<i32>| fd.map_or("-".to_string(), |fd| fd.to_string());
        command
            .arg("--forward")
            .arg(f.out.as_raw_fd().to_string())
            .arg(f.err.as_raw_fd().to_string())
            .arg(text(file))
            .arg(text(tap));
    }
    command
        .arg("--")
        .args(&spec.argv)
        .env_clear()
        .envs(&prepared.env)
        .env(markers::PROJECT, &spec.project)
        .env(markers::SERVICE, &spec.service)
        .env(markers::RUN_ID, &spec.run_id);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    command.stdin(if spec.inherit_stdin {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    command.stdout(opened.stdout).stderr(opened.stderr);
    // The descriptors in `keep` are held open by the caller until `spawn` returns.
    crate::proc::sys::set_child_setup(
        &mut command,
        crate::proc::sys::ChildSetup {
            new_session: spec.own_process_group,
            inherit: keep,
        },
    );
    Ok((command, opened.forward))
}
