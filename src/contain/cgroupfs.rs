//! The cgroupfs backend: `<base>/ccscope/<project>/<service>` directories in cgroup v2,
//! written directly, for hosts without a reachable systemd.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroup::{self, Cgroup};
use super::{
    BackendKind, ContainError, Containment, LimitReport, ScopeHandle, ScopeSpec,
    UnenforceableLimit, cgroup_frozen, freeze_cgroup, requested_limits, wait_cgroup_empty,
};

/// Bounded wait for the kernel to let go of a just-emptied directory.
const REMOVE_DEADLINE: Duration = Duration::from_secs(2);

pub struct CgroupTree {
    /// `<base>/ccscope`.
    root: PathBuf,
}

impl CgroupTree {
    /// Uses `base/ccscope` as the root of every project's subtree.
    pub fn new(base: &Path) -> CgroupTree {
        CgroupTree {
            root: base.join("ccscope"),
        }
    }

    /// Picks the base: `CCSCOPE_CGROUP_ROOT` if set; for root, the cgroup2 mount itself; for
    /// anyone else, the parent of their own cgroup (their delegated subtree) if they may write
    /// it. Returns why not, when there is none.
    pub fn find_base() -> Result<PathBuf, String> {
        if let Some(configured) = std::env::var_os("CCSCOPE_CGROUP_ROOT").filter(|v| !v.is_empty())
        {
            let path = PathBuf::from(configured);
            return if path.join("cgroup.procs").exists() {
                Ok(path)
            } else {
                Err(format!(
                    "CCSCOPE_CGROUP_ROOT={} is not a cgroup v2 directory",
                    path.display()
                ))
            };
        }
        let mount = cgroup::v2_mount()
            .map_err(|e| format!("could not read /proc/self/mountinfo: {e}"))?
            .ok_or_else(|| "no cgroup2 filesystem is mounted".to_string())?;
        if crate::proc::sys::euid() == 0 {
            return Ok(mount);
        }
        let own = cgroup::cgroup_of(std::process::id() as i32).map_err(|e| e.to_string())?;
        let own_dir = mount.join(own.trim_start_matches('/'));
        let parent = own_dir.parent().unwrap_or(&mount).to_path_buf();
        if writable(&parent) {
            Ok(parent)
        } else {
            Err(format!(
                "{} (the parent of this process's cgroup) is not writable for this user",
                parent.display()
            ))
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn project_dir(&self, project: &str) -> PathBuf {
        self.root.join(project)
    }

    fn dir_name(service: &str, instance: Option<&str>) -> String {
        match instance {
            Some(i) => format!("{service}@{i}"),
            None => service.to_string(),
        }
    }

    fn handle(&self, project: &str, dir_name: &str) -> ScopeHandle {
        let (service, instance) = match dir_name.split_once('@') {
            Some((s, i)) => (s.to_string(), Some(i.to_string())),
            None => (dir_name.to_string(), None),
        };
        ScopeHandle {
            backend: BackendKind::Cgroupfs,
            project: project.to_string(),
            service,
            instance,
            unit: None,
            cgroup: Some(self.project_dir(project).join(dir_name)),
            pgid: None,
            run_id: None,
        }
    }

    fn cgroup(scope: &ScopeHandle) -> Result<Cgroup, ContainError> {
        scope.cgroup.clone().map(Cgroup::at).ok_or_else(|| {
            ContainError::Refused(format!("{} has no cgroup directory", scope.display_name()))
        })
    }

    /// Enables what the limits need on the inner nodes, then writes the limit files.
    fn apply_limits(&self, spec: &ScopeSpec<'_>, leaf: &Cgroup) -> LimitReport {
        let mut report = LimitReport::default();
        let wanted = requested_limits(spec.limits);
        if wanted.is_empty() {
            return report;
        }
        let available = Cgroup::at(self.root.parent().unwrap_or(&self.root))
            .controllers()
            .unwrap_or_default();
        let project = Cgroup::at(self.project_dir(spec.project));
        for (limit, controller) in wanted {
            if !available.iter().any(|c| c == controller) {
                report.unenforceable.push(UnenforceableLimit {
                    limit,
                    controller,
                    reason: format!(
                        "the {controller} controller is not available in cgroup v2 here"
                    ),
                });
                continue;
            }
            let base = Cgroup::at(self.root.parent().unwrap_or(&self.root));
            let enabled = base
                .enable_for_children(&[controller])
                .and_then(|()| Cgroup::at(&self.root).enable_for_children(&[controller]))
                .and_then(|()| project.enable_for_children(&[controller]));
            let value = match limit {
                "memory" => (
                    "memory.max",
                    spec.limits.memory_bytes.map(|b| b.to_string()),
                ),
                "tasks" => ("pids.max", spec.limits.tasks.map(|t| t.to_string())),
                _ => (
                    "cpu.max",
                    spec.limits
                        .cpu_percent
                        .map(|p| format!("{} 100000", u64::from(p) * 1000)),
                ),
            };
            let result =
                enabled.and_then(|()| leaf.set(value.0, value.1.as_deref().unwrap_or("max")));
            match result {
                Ok(()) => report.applied.push(limit.to_string()),
                Err(e) => report.unenforceable.push(UnenforceableLimit {
                    limit,
                    controller,
                    reason: e.to_string(),
                }),
            }
        }
        report
    }
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

impl Containment for CgroupTree {
    fn kind(&self) -> BackendKind {
        BackendKind::Cgroupfs
    }

    async fn place(
        &self,
        spec: &ScopeSpec<'_>,
        pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError> {
        let name = Self::dir_name(spec.service, spec.instance);
        let handle = self.handle(spec.project, &name);
        let leaf = Self::cgroup(&handle)?;
        if leaf.exists() && leaf.populated()? {
            return Err(ContainError::AlreadyPopulated {
                what: "cgroup",
                name: leaf.path.display().to_string(),
            });
        }
        let leaf = Cgroup::create(&leaf.path)?;
        let limits = self.apply_limits(spec, &leaf);
        let placed = leaf.add_process(pid).and_then(|()| cgroup::cgroup_of(pid));
        let verdict = match placed {
            Ok(actual) if cgroup::is_cgroup(&leaf.path, &actual) => Ok((handle, limits)),
            Ok(actual) => Err(ContainError::NotPlaced {
                pid,
                expected: leaf.path.display().to_string(),
                actual,
            }),
            Err(e) => Err(e.into()),
        };
        if verdict.is_err() {
            // Nothing of a failed placement stays behind.
            let _ = leaf.remove(REMOVE_DEADLINE);
        }
        verdict
    }

    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError> {
        Ok(super::live(Self::cgroup(scope)?.all_procs()))
    }

    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError> {
        let cg = Self::cgroup(scope)?;
        if !cg.exists() {
            return Ok(0);
        }
        Ok(cg.signal_each(signal))
    }

    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        let cg = Self::cgroup(scope)?;
        if cg.exists() {
            cg.kill()?;
        }
        Ok(())
    }

    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError> {
        wait_cgroup_empty(Self::cgroup(scope)?.path, deadline).await
    }

    async fn release(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        let cg = Self::cgroup(scope)?;
        tokio::task::spawn_blocking(move || cg.remove(REMOVE_DEADLINE))
            .await
            .map_err(|e| ContainError::Io(std::io::Error::other(e)))??;
        // The project's directory goes with its last service, and ccscope's root with its
        // last project; a sibling still there keeps them (rmdir fails, as it should).
        if let Some(project_dir) = scope.cgroup.as_ref().and_then(|c| c.parent()) {
            if fs::remove_dir(project_dir).is_ok() {
                let _ = fs::remove_dir(&self.root);
            }
        }
        Ok(())
    }

    async fn adopt(&self, scope: &ScopeHandle, pid: i32) -> Result<(), ContainError> {
        Ok(Self::cgroup(scope)?.add_process(pid)?)
    }

    async fn freeze(&self, scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError> {
        freeze_cgroup(Self::cgroup(scope)?.path, frozen).await
    }

    async fn is_frozen(&self, scope: &ScopeHandle) -> Result<bool, ContainError> {
        cgroup_frozen(&Self::cgroup(scope)?.path)
    }

    async fn list(&self, project: &str) -> Result<Vec<ScopeHandle>, ContainError> {
        let dir = self.project_dir(project);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut handles: Vec<ScopeHandle> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| self.handle(project, &e.file_name().to_string_lossy()))
            .collect();
        handles.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
        Ok(handles)
    }
}
