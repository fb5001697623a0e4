//! Containment: the kernel, not a pid list, decides what belongs to a service.
//!
//! One seam ([`Containment`]), three backends, one [`detect`]:
//! - [`SystemdScopes`]: a transient systemd scope per service instance, under one slice per
//!   project, created over D-Bus; what `systemctl --user` shows.
//! - [`CgroupTree`]: a cgroup v2 directory per service instance, for hosts without systemd.
//! - [`ProcessGroups`]: the last resort without any writable cgroup; weaker, and says so.
//!
//! A launched process is placed before it runs one instruction of the service (see
//! `crate::launch`); after that the backend can signal, kill and wait on the whole service.

pub mod cgroup;
mod cgroupfs;
mod detect;
#[cfg(test)]
pub(crate) mod fake;
mod pgroup;
pub mod stats;
mod systemd;
pub mod systemd_proxy;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use cgroupfs::CgroupTree;
pub use detect::{BackendChoice, BackendReport, Candidate, all_available, detect, survey};
pub use pgroup::{LOSSES as PGROUP_LOSSES, ProcessGroups, cannot_freeze};
pub use stats::ScopeStats;
pub use systemd::{BusKind, SystemdScopes, escape_unit_part, slice_name};

use crate::config::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Transient systemd scopes over D-Bus.
    Systemd,
    /// cgroup v2 directories written directly.
    Cgroupfs,
    /// Process groups and environment markers (no cgroup at all).
    Pgroup,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Systemd => "systemd",
            BackendKind::Cgroupfs => "cgroupfs",
            BackendKind::Pgroup => "pgroup",
        }
    }
}

/// What a new scope is for.
#[derive(Debug, Clone)]
pub struct ScopeSpec<'a> {
    pub project: &'a str,
    pub service: &'a str,
    /// Tells concurrent instances of one service apart (`ccscope exec`); None for the service itself.
    pub instance: Option<&'a str>,
    pub run_id: &'a str,
    pub description: String,
    pub limits: &'a Limits,
}

/// A placed service instance: enough to signal, kill, wait on and find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeHandle {
    pub backend: BackendKind,
    pub project: String,
    pub service: String,
    pub instance: Option<String>,
    /// The systemd unit (systemd backend).
    pub unit: Option<String>,
    /// The cgroup directory on disk (systemd and cgroupfs backends).
    pub cgroup: Option<PathBuf>,
    /// The process group (process-group backend), also the leader's pid.
    pub pgid: Option<i32>,
    /// The run whose markers its processes carry (process-group backend).
    pub run_id: Option<String>,
}

impl ScopeHandle {
    /// A short name for messages: the unit, else the cgroup, else the process group.
    pub fn display_name(&self) -> String {
        if let Some(u) = &self.unit {
            u.clone()
        } else if let Some(c) = &self.cgroup {
            c.display().to_string()
        } else {
            format!("process group {}", self.pgid.unwrap_or(0))
        }
    }
}

/// Which limits a scope can enforce, and which it cannot (and why).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LimitReport {
    pub applied: Vec<String>,
    pub unenforceable: Vec<UnenforceableLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnenforceableLimit {
    /// `memory`, `tasks` or `cpu`.
    pub limit: &'static str,
    /// The cgroup controller it needs.
    pub controller: &'static str,
    pub reason: String,
}

/// The controller each limit needs, and whether the spec asks for it.
pub(crate) fn requested_limits(limits: &Limits) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    if limits.memory_bytes.is_some() {
        wanted.push(("memory", "memory"));
    }
    if limits.tasks.is_some() {
        wanted.push(("tasks", "pids"));
    }
    if limits.cpu_percent.is_some() {
        wanted.push(("cpu", "cpu"));
    }
    wanted
}

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("systemd: {0}")]
    Bus(Box<zbus::Error>),
    #[error("systemd could not start scope {unit}: job {result}")]
    JobFailed { unit: String, result: String },
    #[error("timed out after {0:?} waiting for systemd to start the scope")]
    JobTimeout(Duration),
    #[error("process {pid} is in cgroup {actual}, not in {expected}")]
    NotPlaced {
        pid: i32,
        expected: String,
        actual: String,
    },
    #[error("{what} still holds processes from an earlier start: {name}")]
    AlreadyPopulated { what: &'static str, name: String },
    #[error("the {backend} backend is not available: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("limits cannot be enforced: {}", describe_unenforceable(.0))]
    LimitsUnenforceable(Vec<UnenforceableLimit>),
    #[error("{0}")]
    Refused(String),
    /// The backend has no way to freeze a service (the process-group backend).
    #[error("the {backend} backend cannot {action} a service: {reason}")]
    CannotFreeze {
        backend: &'static str,
        /// `pause` or `resume`.
        action: &'static str,
        reason: &'static str,
    },
}

impl From<zbus::Error> for ContainError {
    fn from(e: zbus::Error) -> Self {
        ContainError::Bus(Box::new(e))
    }
}

fn describe_unenforceable(limits: &[UnenforceableLimit]) -> String {
    limits
        .iter()
        .map(|l| format!("{} ({})", l.limit, l.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The seam every backend implements.
#[expect(
    async_fn_in_trait,
    reason = "used through the AnyContainment enum, never as dyn; Send bounds are not needed"
)]
pub trait Containment {
    fn kind(&self) -> BackendKind;

    /// Creates the scope for `spec` around `pid`, which must not have started the service yet,
    /// and returns only when the process is verifiably inside.
    async fn place(
        &self,
        spec: &ScopeSpec<'_>,
        pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError>;

    /// The processes in the scope now.
    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError>;

    /// Sends `signal` to every process of the scope. Returns how many were signalled.
    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError>;

    /// SIGKILLs every process of the scope at once.
    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError>;

    /// Waits until the scope is empty (zombies count as gone). False if the deadline passed.
    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError>;

    /// Forgets an empty scope: removes its cgroup, or resets the failed unit so the name can
    /// be used again.
    async fn release(&self, scope: &ScopeHandle) -> Result<(), ContainError>;

    /// Moves a running process (and only it: callers walk subtrees) into the scope.
    async fn adopt(&self, scope: &ScopeHandle, pid: i32) -> Result<(), ContainError>;

    /// Freezes or thaws the scope, and returns only once the kernel says every process of
    /// it is frozen (or running again): `Ok` means it is so.
    async fn freeze(&self, scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError>;

    /// Whether the scope is frozen now (its cgroup's `cgroup.events` says `frozen 1`). A
    /// scope that is gone is not.
    async fn is_frozen(&self, scope: &ScopeHandle) -> Result<bool, ContainError>;

    /// The project's scopes that exist now, found by name.
    async fn list(&self, project: &str) -> Result<Vec<ScopeHandle>, ContainError>;

    /// Whether a directory named `name`, beside the project's scopes (in the cgroup that
    /// holds them), is a scope of this backend. What else lives there (the supervisor's own
    /// service, under systemd) is not.
    fn is_scope_dir(&self, name: &str) -> bool {
        let _ = name;
        true
    }
}

/// The backend chosen for this run.
pub enum AnyContainment {
    Systemd(SystemdScopes),
    Cgroupfs(CgroupTree),
    Pgroup(ProcessGroups),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            AnyContainment::Systemd($b) => $call,
            AnyContainment::Cgroupfs($b) => $call,
            AnyContainment::Pgroup($b) => $call,
        }
    };
}

impl Containment for AnyContainment {
    fn kind(&self) -> BackendKind {
        dispatch!(self, b => b.kind())
    }
    async fn place(
        &self,
        spec: &ScopeSpec<'_>,
        pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError> {
        dispatch!(self, b => b.place(spec, pid).await)
    }
    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError> {
        dispatch!(self, b => b.processes(scope).await)
    }
    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError> {
        dispatch!(self, b => b.signal(scope, signal).await)
    }
    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        dispatch!(self, b => b.kill(scope).await)
    }
    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError> {
        dispatch!(self, b => b.wait_empty(scope, deadline).await)
    }
    async fn release(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        dispatch!(self, b => b.release(scope).await)
    }
    async fn adopt(&self, scope: &ScopeHandle, pid: i32) -> Result<(), ContainError> {
        dispatch!(self, b => b.adopt(scope, pid).await)
    }
    async fn freeze(&self, scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError> {
        dispatch!(self, b => b.freeze(scope, frozen).await)
    }
    async fn is_frozen(&self, scope: &ScopeHandle) -> Result<bool, ContainError> {
        dispatch!(self, b => b.is_frozen(scope).await)
    }
    async fn list(&self, project: &str) -> Result<Vec<ScopeHandle>, ContainError> {
        dispatch!(self, b => b.list(project).await)
    }
    fn is_scope_dir(&self, name: &str) -> bool {
        dispatch!(self, b => b.is_scope_dir(name))
    }
}

/// The project's scopes that `backend` holds now, each with its processes. A scope that
/// cannot be read counts as empty, and a backend that cannot list has none: callers act on
/// what is there, and a later scan proves the result.
pub async fn scopes_with_processes(
    backend: &AnyContainment,
    project: &str,
) -> Vec<(ScopeHandle, Vec<i32>)> {
    let mut found = Vec::new();
    let scopes = backend.list(project).await.unwrap_or_default();
    tracing::debug!(
        scopes = scopes.len(),
        "scopes listed, reading their processes"
    );
    for scope in scopes {
        let pids = backend.processes(&scope).await.unwrap_or_default();
        found.push((scope, pids));
    }
    found
}

/// [`scopes_with_processes`] over several backends (an earlier run may have used another).
pub async fn scopes_with_processes_in(
    backends: &[AnyContainment],
    project: &str,
) -> Vec<(ScopeHandle, Vec<i32>)> {
    let mut found = Vec::new();
    for backend in backends {
        found.extend(scopes_with_processes(backend, project).await);
    }
    found
}

/// Whether every scope directory in `parents` (the cgroups a backend's scopes of a project
/// sit in) is empty: proven by their `cgroup.events`, without listing the scopes over the
/// bus. False when any is populated or a parent cannot be read.
pub fn scope_dirs_empty(backend: &AnyContainment, parents: &[PathBuf]) -> bool {
    parents.iter().all(|parent| {
        let Ok(entries) = std::fs::read_dir(parent) else {
            return false;
        };
        entries.flatten().all(|entry| {
            let is_scope = entry.file_type().is_ok_and(|t| t.is_dir())
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| backend.is_scope_dir(n));
            !is_scope
                || cgroup::Cgroup::at(entry.path())
                    .populated()
                    .is_ok_and(|p| !p)
        })
    })
}

/// Waits up to `deadline` for a cgroup to hold no process, on the runtime's reactor (see
/// [`cgroup::Cgroup::until_empty_promptly`]).
pub(crate) async fn wait_cgroup_empty(
    path: PathBuf,
    deadline: Duration,
) -> Result<bool, ContainError> {
    let cg = cgroup::Cgroup::at(path);
    let prompt = cg.until_empty_promptly(Duration::from_millis(5));
    match tokio::time::timeout(deadline, prompt).await {
        Ok(done) => done.map(|()| true).map_err(ContainError::Io),
        Err(_) => Ok(false),
    }
}

/// How long a freeze or thaw may take to be reported done by the kernel. A task in an
/// uninterruptible sleep (a stuck NFS read) holds a freeze up until it wakes.
pub(crate) const FREEZE_DEADLINE: Duration = Duration::from_secs(5);

/// Whether the cgroup at `path` is frozen: one read of its `cgroup.events`.
pub(crate) fn cgroup_frozen(path: &std::path::Path) -> Result<bool, ContainError> {
    Ok(cgroup::Cgroup::at(path).frozen()?)
}

/// Freezes or thaws the cgroup at `path` and waits (off the runtime's threads) until the
/// kernel reports it done, up to [`FREEZE_DEADLINE`].
pub(crate) async fn freeze_cgroup(path: PathBuf, frozen: bool) -> Result<(), ContainError> {
    let cg = cgroup::Cgroup::at(path);
    tokio::task::spawn_blocking(move || cg.freeze(frozen, FREEZE_DEADLINE))
        .await
        .map_err(|e| ContainError::Io(std::io::Error::other(e)))??;
    Ok(())
}

/// Live (non-zombie) pids of a list.
pub(crate) fn live(pids: Vec<i32>) -> Vec<i32> {
    let procfs = crate::proc::ProcFs::default();
    pids.into_iter()
        .filter(|p| procfs.identity(*p).is_ok())
        .collect()
}
