//! The last resort, for hosts with no writable cgroup at all: each service in its own process
//! group, its members found by process group and by the environment markers they inherit,
//! the caller a child subreaper so double-forked daemons come back to it.
//!
//! What is lost, and said at start: a kill is several passes, not one atomic write (a process
//! forking during it is caught by the next pass); "empty" is polled, not an event; limits
//! cannot be enforced; a process that both leaves the process group and clears its
//! environment escapes.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    BackendKind, ContainError, Containment, LimitReport, ScopeHandle, ScopeSpec,
    UnenforceableLimit, requested_limits,
};
use crate::proc::ProcessIdentity;
use crate::proc::markers;
use crate::proc::sys;

/// How often "empty yet?" is checked without an event to wait on.
const POLL: Duration = Duration::from_millis(10);
/// Kill passes before giving up on a service that keeps forking.
const KILL_PASSES: usize = 50;

pub const LOSSES: &str = "no writable cgroup: services are tracked by process group and environment markers; \
lost are atomic kills (several passes instead), event-driven exit detection (polled every 10 ms), \
resource limits, and any process that leaves its process group and clears its environment";

/// Why the process-group backend cannot pause, and what to do instead.
const CANNOT_FREEZE: &str = "pausing needs a cgroup, which freezes every process of a service at \
once; a process group can only be sent SIGSTOP process by process (one forking meanwhile runs \
on), and any process of the same user can undo it with SIGCONT; run the stack with the systemd \
or the cgroupfs backend (`--backend systemd` or `--backend cgroupfs`)";

/// Why this backend pauses (`frozen`) or resumes nothing: said by `freeze`, and by the
/// supervisor before it changes anything.
pub fn cannot_freeze(frozen: bool) -> ContainError {
    ContainError::CannotFreeze {
        backend: "process-group",
        action: if frozen { "pause" } else { "resume" },
        reason: CANNOT_FREEZE,
    }
}

pub struct ProcessGroups {
    proc_root: std::path::PathBuf,
}

impl Default for ProcessGroups {
    fn default() -> Self {
        ProcessGroups {
            proc_root: "/proc".into(),
        }
    }
}

impl ProcessGroups {
    /// Makes this process the reaper of orphans, so daemons that double-fork stay below it.
    pub fn new() -> ProcessGroups {
        if let Err(e) = sys::set_child_subreaper() {
            tracing::warn!("could not become a child subreaper: {e}");
        }
        ProcessGroups::default()
    }

    /// The live members: in the process group, or carrying this instance's markers. One
    /// pass over /proc, one decision per process (a second read could disagree with the first
    /// while a process is in the middle of exec).
    fn members(&self, scope: &ScopeHandle) -> Vec<ProcessIdentity> {
        // A process group number outlives its group and can be reused by a stranger: the group
        // counts only while its leader is alive and carries this instance's markers.
        let group = scope
            .pgid
            .filter(|leader| self.carries_markers(*leader, scope));
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let Ok(stat) = crate::proc::read_stat(&self.proc_root, pid) else {
                continue;
            };
            if stat.is_zombie() {
                continue;
            }
            let member = Some(stat.pgrp) == group || self.carries_markers(pid, scope);
            if member && self.owned_by_us(pid) {
                found.push(ProcessIdentity {
                    pid,
                    start_time: stat.start_time,
                });
            }
        }
        found
    }

    /// Whether `pid` is our user's: another user's process is never a member, whatever its
    /// group or markers say (root can read anyone's environment, and a marker is only text).
    fn owned_by_us(&self, pid: i32) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.proc_root.join(pid.to_string()))
            .is_ok_and(|m| m.uid() == sys::euid())
    }

    /// Whether `pid` carries the markers of exactly this service instance (and is ours).
    fn carries_markers(&self, pid: i32, scope: &ScopeHandle) -> bool {
        if !self.owned_by_us(pid) {
            return false;
        }
        let environ =
            std::fs::read(self.proc_root.join(pid.to_string()).join("environ")).unwrap_or_default();
        markers::parse_environ(&environ).is_some_and(|m| {
            m.project == scope.project
                && m.service.as_deref() == Some(scope.service.as_str())
                && m.run_id.is_some()
                && m.run_id == scope.run_id
        })
    }

    fn signal_members(&self, scope: &ScopeHandle, signal: i32) -> usize {
        let mut sent = 0;
        for id in self.members(scope) {
            if sys::signal_identified(id, signal).is_ok_and(|s| s == sys::Signalled::Sent) {
                sent += 1;
            }
        }
        sent
    }
}

impl Containment for ProcessGroups {
    fn kind(&self) -> BackendKind {
        BackendKind::Pgroup
    }

    async fn place(
        &self,
        spec: &ScopeSpec<'_>,
        pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError> {
        // Normally the launcher made `pid` the leader of its own group before it ran
        // anything; a command at a terminal (`exec`) keeps the terminal's group, and then the
        // markers alone find its processes.
        let stat = crate::proc::read_stat(Path::new(&self.proc_root), pid)?;
        let pgid = (stat.pgrp == pid).then_some(pid);
        let limits = LimitReport {
            applied: Vec::new(),
            unenforceable: requested_limits(spec.limits)
                .into_iter()
                .map(|(limit, controller)| UnenforceableLimit {
                    limit,
                    controller,
                    reason: "the process-group backend has no cgroup to enforce it in".into(),
                })
                .collect(),
        };
        let handle = ScopeHandle {
            backend: BackendKind::Pgroup,
            project: spec.project.to_string(),
            service: spec.service.to_string(),
            instance: spec.instance.map(str::to_string),
            unit: None,
            cgroup: None,
            pgid,
            run_id: Some(spec.run_id.to_string()),
        };
        Ok((handle, limits))
    }

    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError> {
        Ok(self.members(scope).into_iter().map(|id| id.pid).collect())
    }

    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError> {
        Ok(self.signal_members(scope, signal))
    }

    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        for _ in 0..KILL_PASSES {
            if self.signal_members(scope, libc::SIGKILL) == 0 {
                return Ok(());
            }
            // Killed but not yet exited processes would be counted again at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(ContainError::Refused(format!(
            "{} still had processes after {KILL_PASSES} kill passes",
            scope.display_name()
        )))
    }

    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError> {
        let start = Instant::now();
        loop {
            if self.members(scope).is_empty() {
                return Ok(true);
            }
            if start.elapsed() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL.min(deadline.saturating_sub(start.elapsed()))).await;
        }
    }

    async fn release(&self, _scope: &ScopeHandle) -> Result<(), ContainError> {
        Ok(())
    }

    async fn adopt(&self, scope: &ScopeHandle, pid: i32) -> Result<(), ContainError> {
        let pgid = scope
            .pgid
            .ok_or_else(|| ContainError::Refused("no process group to adopt into".into()))?;
        if let Err(e) = sys::set_process_group(pid, pgid) {
            return Err(ContainError::Refused(format!(
                "process {pid} cannot join process group {pgid}: {} (only children in the same session can)",
                crate::proc::describe_io(&e)
            )));
        }
        Ok(())
    }

    /// Refused: SIGSTOP to each member is no freeze. A process forking between the passes
    /// runs on, and any process of the same user can SIGCONT a stopped one; a paused service
    /// would be paused only as far as nobody touches it.
    async fn freeze(&self, _scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError> {
        Err(cannot_freeze(frozen))
    }

    /// Never: this backend freezes nothing.
    async fn is_frozen(&self, _scope: &ScopeHandle) -> Result<bool, ContainError> {
        Ok(false)
    }

    async fn list(&self, project: &str) -> Result<Vec<ScopeHandle>, ContainError> {
        let marked: Vec<markers::MarkedProcess> = markers::scan(Path::new(&self.proc_root))
            .into_iter()
            .filter(|p| p.markers.project == project && p.markers.service.is_some())
            .filter(|p| self.owned_by_us(p.identity.pid))
            .collect();
        let mut seen = std::collections::BTreeMap::new();
        for p in &marked {
            let service = p.markers.service.clone().unwrap_or_default();
            // The group is the instance's only if its leader is one of this instance's processes.
            let leader_is_ours = marked.iter().any(|l| {
                l.identity.pid == p.pgrp
                    && l.markers.service == p.markers.service
                    && l.markers.run_id == p.markers.run_id
            });
            let entry = seen
                .entry((service.clone(), p.markers.run_id.clone()))
                .or_insert(ScopeHandle {
                    backend: BackendKind::Pgroup,
                    project: project.to_string(),
                    service,
                    instance: None,
                    unit: None,
                    cgroup: None,
                    pgid: None,
                    run_id: p.markers.run_id.clone(),
                });
            if leader_is_ours {
                entry.pgid = Some(p.pgrp);
            }
        }
        Ok(seen.into_values().collect())
    }
}
