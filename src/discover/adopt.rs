//! Adoption: strays — each with its whole subtree — move into their service's scope and are
//! registered (source `adopted`), so that `stop` ends them with the rest. Refused: other
//! users' processes, other projects', foreign ones, what some ccscope scope holds already,
//! and ccscope itself with its ancestors (its caller). A stray container of the project is
//! named and refused with the reason: only a live supervisor could take one over, and none
//! offers that yet (`run` adopts back a container of an unchanged definition by itself).
//! Containers without the project's labels are never named, let alone touched.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::classify::{Class, Classified, discover, in_any_ccscope_cgroup, owned_by};
use super::scan::Snapshot;
use crate::config::Config;
use crate::contain::{
    AnyContainment, BackendChoice, BackendKind, BusKind, ContainError, Containment, ScopeHandle,
    ScopeSpec, detect,
};
use crate::proc::ProcFs;
use crate::registry::{NewProcess, ProcessSource, ProcessStatus, Registry};

/// Which processes to adopt.
#[derive(Debug, Clone)]
pub enum AdoptTargets {
    /// These pids, each with its descendants.
    Pids(Vec<i32>),
    /// Every stray root of the project (its descendants move with it), and every stray
    /// container of it.
    AllStrays,
    /// These containers, by id or name.
    Containers(Vec<String>),
}

/// What `adopt` was asked.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    pub targets: AdoptTargets,
    /// The service they belong to; None: the one discovery names.
    pub service: Option<String>,
    /// The backend for a scope made anew (a service without one).
    pub choice: BackendChoice,
    pub bus: BusKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adopted {
    pub pid: i32,
    pub service: String,
    pub scope: String,
    /// Every process moved: the pid and its descendants.
    pub moved: Vec<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub pid: i32,
    pub reason: String,
}

/// A container that was not adopted, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedContainer {
    pub id: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    pub project: String,
    pub adopted: Vec<Adopted>,
    pub refused: Vec<Refused>,
    pub containers_refused: Vec<RefusedContainer>,
    /// What went wrong after a move succeeded (a registry write): said, not fatal.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("--service names `{0}`, which is not a service of this stack")]
    UnknownService(String),
    #[error(transparent)]
    Contain(#[from] ContainError),
}

/// Adopts what `request` names. `backends` are those whose scopes may already hold the
/// service (every available one); a scope made anew uses the backend `request.choice` picks.
pub async fn adopt(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    request: &AdoptRequest,
) -> Result<AdoptReport, AdoptError> {
    if let Some(s) = &request.service {
        if !config.services.contains_key(s) {
            return Err(AdoptError::UnknownService(s.clone()));
        }
    }
    let (snapshot, mut scopes, classified) = discover(config, backends).await;
    let project = config.project.name.clone();
    let mut report = AdoptReport {
        project: project.clone(),
        adopted: Vec::new(),
        refused: Vec::new(),
        containers_refused: Vec::new(),
        warnings: Vec::new(),
    };
    if let AdoptTargets::Containers(wanted) = &request.targets {
        report.containers_refused = refuse_containers(config, registry, Some(wanted)).await;
        return Ok(report);
    }
    let targets: Vec<i32> = match &request.targets {
        // Roots only: a stray's descendants move with it.
        AdoptTargets::AllStrays => classified
            .iter()
            .filter(|c| c.class == Class::Stray && !c.reason.starts_with("descends from"))
            .map(|c| c.pid)
            .collect(),
        AdoptTargets::Pids(pids) => pids.clone(),
        AdoptTargets::Containers(_) => Vec::new(),
    };
    if matches!(request.targets, AdoptTargets::AllStrays) {
        report.containers_refused = refuse_containers(config, registry, None).await;
    }
    let guard = Guard {
        protected: crate::proc::ancestry::self_and_ancestors(Path::new("/proc")),
        me: crate::proc::sys::euid(),
        project: &project,
    };
    let mut chosen: Option<AnyContainment> = None;
    for pid in targets {
        let found = classified.iter().find(|c| c.pid == pid);
        let service = match guard.check(pid, found, &snapshot, request.service.as_deref()) {
            Ok(service) => service,
            Err(reason) => {
                report.refused.push(Refused { pid, reason });
                continue;
            }
        };
        // The service's scope where it exists (in whichever backend holds it), else a new one.
        let existing = scopes
            .iter()
            .map(|(s, _)| s)
            .find(|s| s.service == service && s.instance.is_none())
            .cloned();
        let backend = match &existing {
            Some(scope) => backends.iter().find(|b| b.kind() == scope.backend),
            None => {
                if chosen.is_none() {
                    chosen = Some(detect(request.choice, request.bus).await?.0);
                }
                chosen.as_ref()
            }
        };
        let Some(backend) = backend else {
            report.refused.push(Refused {
                pid,
                reason: "no containment backend can hold it".into(),
            });
            continue;
        };
        if backend.kind() == BackendKind::Pgroup {
            report.refused.push(Refused {
                pid,
                reason: "the process-group backend cannot take in a running process; adoption needs systemd or cgroupfs".into(),
            });
            continue;
        }
        match guard
            .move_subtree(backend, existing, config, &service, pid, &snapshot)
            .await
        {
            Ok((scope, moved)) => {
                report
                    .warnings
                    .extend(register(registry, &project, &service, &scope, &moved));
                if !scopes.iter().any(|(s, _)| s == &scope) {
                    // Made for this one: the service's next strays join it.
                    scopes.push((scope.clone(), moved.clone()));
                }
                crate::audit::Event {
                    event: "adopt",
                    project: &project,
                    service: Some(&service),
                    message: format!(
                        "adopted pid {pid} and {} descendant(s) into {}",
                        moved.len().saturating_sub(1),
                        scope.display_name()
                    ),
                    fields: vec![("CCSCOPE_TARGET_PID", pid.to_string())],
                }
                .record(crate::audit::Priority::Notice);
                report.adopted.push(Adopted {
                    pid,
                    service,
                    scope: scope.display_name(),
                    moved,
                });
            }
            Err(reason) => report.refused.push(Refused { pid, reason }),
        }
    }
    Ok(report)
}

/// The stray containers of the project (`wanted`: these, by id or name; None: all of them),
/// each refused with the reason. Without a docker daemon there is none to name.
async fn refuse_containers(
    config: &Config,
    registry: &Registry,
    wanted: Option<&[String]>,
) -> Vec<RefusedContainer> {
    use super::containers;
    let engine = match crate::docker::Engine::connect().await {
        Ok(engine) => engine,
        Err(e) => {
            return wanted
                .unwrap_or_default()
                .iter()
                .map(|w| RefusedContainer {
                    id: String::new(),
                    name: w.clone(),
                    reason: format!("cannot be looked at: {e}"),
                })
                .collect();
        }
    };
    let live_run = containers::live_run_id(registry, &config.project.name);
    let (ours, _) = containers::list(&engine, config).await;
    let classified = containers::classify(config, &ours, &[], live_run.as_deref());
    let why = match &live_run {
        Some(run) => format!(
            "the live supervisor (run {run}) cannot take over a container it did not start; \
             `ccscope stop` removes it, and the next `ccscope run` starts its service anew"
        ),
        None => "adopting a container needs a running supervisor to take it over, and none \
                 runs: `ccscope run` takes back a container of an unchanged definition by \
                 itself; `ccscope stop` removes it"
            .to_string(),
    };
    let Some(wanted) = wanted else {
        return classified
            .into_iter()
            .filter(|c| c.class == Class::Stray)
            .map(|c| RefusedContainer {
                id: c.id,
                name: c.name,
                reason: why.clone(),
            })
            .collect();
    };
    let mut refused = Vec::new();
    for w in wanted {
        let found = match engine.inspect(w).await {
            Ok(found) => found,
            Err(e) => {
                refused.push(RefusedContainer {
                    id: String::new(),
                    name: w.clone(),
                    reason: format!("cannot be looked at: {e}"),
                });
                continue;
            }
        };
        let reason = match &found {
            None => "no such container".to_string(),
            Some(c) if !containers::is_ours(config, c) => format!(
                "not this project's: it carries neither ccscope.project={} nor a compose \
                 project the stack lists; ccscope never touches it",
                config.project.name
            ),
            Some(c) => match classified.iter().find(|k| k.id == c.id).map(|k| k.class) {
                Some(Class::Managed) => "already the live run's".to_string(),
                _ => why.clone(),
            },
        };
        refused.push(RefusedContainer {
            id: found.as_ref().map_or_else(String::new, |c| c.id.clone()),
            name: found.map_or_else(|| w.clone(), |c| c.name),
            reason,
        });
    }
    refused
}

/// What may never move: ccscope and its ancestors, another user's process, another
/// project's.
struct Guard<'a> {
    protected: BTreeSet<i32>,
    me: u32,
    project: &'a str,
}

impl Guard<'_> {
    /// Whether `pid` may be adopted, and into which service (`named`, else discovery's).
    fn check(
        &self,
        pid: i32,
        found: Option<&Classified>,
        snapshot: &Snapshot,
        named: Option<&str>,
    ) -> Result<String, String> {
        let me = self.me;
        if self.protected.contains(&pid) {
            return Err("it is ccscope itself or its caller".into());
        }
        let Some(process) = snapshot.processes.get(&pid) else {
            return Err("no such process (or it cannot be read)".into());
        };
        if process.uid != me {
            return Err(format!(
                "it belongs to uid {}, not to you (uid {me})",
                process.uid
            ));
        }
        if in_any_ccscope_cgroup(process) {
            return Err(format!(
                "it is inside a scope of ccscope already ({})",
                process.cgroup.as_deref().unwrap_or("?")
            ));
        }
        if let Some(m) = &process.markers {
            if m.project != self.project {
                return Err(format!("it belongs to project `{}`", m.project));
            }
        }
        let named = named.map(str::to_string);
        match found.map(|c| c.class) {
            Some(Class::Managed) => Err(format!(
                "it is already inside {}",
                found.and_then(|c| c.scope.clone()).unwrap_or_default()
            )),
            Some(Class::Foreign) => Err(format!(
                "it is foreign: {}",
                found.map(|c| c.reason.clone()).unwrap_or_default()
            )),
            Some(Class::Stray) => named
                .or_else(|| found.and_then(|c| c.service.clone()))
                .ok_or_else(|| "discovery cannot tell its service: name it with --service".into()),
            // Not recognised by discovery: only when the user names the service.
            None => named.ok_or_else(|| {
                "discovery does not count it as this project's: name its service with --service to adopt it anyway".into()
            }),
        }
    }

    /// Only what is plainly ours moves: not another user's, not another project's, not a
    /// process already in some ccscope scope (nor anything below such a process).
    fn eligible(&self, pid: i32, snap: &Snapshot) -> bool {
        !self.protected.contains(&pid)
            && snap.processes.get(&pid).is_some_and(|x| {
                owned_by(x, self.me)
                    && !in_any_ccscope_cgroup(x)
                    && x.markers.as_ref().is_none_or(|m| m.project == self.project)
            })
    }

    /// Moves `pid` and its descendants into the service's scope (made around `pid` if there
    /// is none), then — up to three rounds — whatever they forked meanwhile.
    async fn move_subtree(
        &self,
        backend: &AnyContainment,
        existing: Option<ScopeHandle>,
        config: &Config,
        service: &str,
        pid: i32,
        snapshot: &Snapshot,
    ) -> Result<(ScopeHandle, Vec<i32>), String> {
        let procfs = ProcFs::default();
        // The process the scan saw, and no other that got its pid since.
        let same = |p: i32, snap: &Snapshot| {
            snap.processes
                .get(&p)
                .is_some_and(|x| procfs.identity(p).is_ok_and(|now| now == x.identity()))
        };
        if !same(pid, snapshot) {
            return Err("it exited (or its pid now names another process)".into());
        }
        let mut tree: Vec<i32> = pruned_subtree(snapshot, pid, &|p| self.eligible(p, snapshot));
        let limits = config
            .services
            .get(service)
            .map(|s| s.limits.clone())
            .unwrap_or_default();
        let (scope, mut moved) = match existing {
            Some(scope) => (scope, Vec::new()),
            None => {
                let spec = ScopeSpec {
                    project: &config.project.name,
                    service,
                    instance: None,
                    run_id: "adopted",
                    description: format!(
                        "ccscope {} / {service}: adopted pid {pid}",
                        config.project.name
                    ),
                    limits: &limits,
                };
                let (scope, _) = backend
                    .place(&spec, pid)
                    .await
                    .map_err(|e| format!("could not make a scope for it: {e}"))?;
                tree.retain(|p| *p != pid);
                (scope, vec![pid])
            }
        };
        let mut current = snapshot.clone();
        for round in 0..3 {
            for p in &tree {
                if !same(*p, &current) {
                    continue; // exited, or no longer the process we saw
                }
                match backend.adopt(&scope, *p).await {
                    Ok(()) => moved.push(*p),
                    // Gone meanwhile: nothing to move.
                    Err(_) if !Path::new(&format!("/proc/{p}")).exists() => {}
                    Err(e) => return Err(format!("could not move pid {p}: {e}")),
                }
            }
            // Children forked while we moved their parents.
            let again = super::scan::scan(Path::new("/proc"));
            if !same(pid, &again) {
                break;
            }
            // Those moved already sit in our scope now: the walk passes through them.
            tree = pruned_subtree(&again, pid, &|p| {
                moved.contains(&p) || self.eligible(p, &again)
            })
            .into_iter()
            .filter(|p| !moved.contains(p))
            .collect();
            current = again;
            if tree.is_empty() || round == 2 {
                break;
            }
        }
        Ok((scope, moved))
    }
}

/// `root` and the descendants reached through processes that `keep` accepts (a rejected
/// process is skipped with everything below it).
fn pruned_subtree(snapshot: &Snapshot, root: i32, keep: &dyn Fn(i32) -> bool) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in snapshot.processes.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut all = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if pid != root && !keep(pid) {
            continue;
        }
        all.push(pid);
        stack.extend(children.get(&pid).cloned().unwrap_or_default());
    }
    all
}

/// Registers the moved processes; returns a warning for each that could not be.
fn register(
    registry: &Registry,
    project: &str,
    service: &str,
    scope: &ScopeHandle,
    moved: &[i32],
) -> Vec<String> {
    let procfs = ProcFs::default();
    let mut warnings = Vec::new();
    for pid in moved {
        let Ok(identity) = procfs.identity(*pid) else {
            continue;
        };
        let record = NewProcess {
            identity,
            command_line: procfs.cmdline(*pid).unwrap_or_default(),
            project: project.to_string(),
            service: service.to_string(),
            run_id: None,
            unit: scope.unit.clone(),
            cgroup: scope.cgroup.as_ref().map(|c| c.display().to_string()),
            ports: Vec::new(),
            status: ProcessStatus::Running,
            source: ProcessSource::Adopted,
        };
        if let Err(e) = registry.register(&record) {
            warnings.push(format!(
                "pid {pid} was adopted but could not be registered: {e}"
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::scan::ScannedProcess;

    fn process(pid: i32, ppid: i32) -> ScannedProcess {
        ScannedProcess {
            pid,
            start_time: 100 + pid as u64,
            ppid,
            uid: 1000,
            exe: None,
            comm: "x".into(),
            command_line: format!("cmd {pid}"),
            cgroup: None,
            markers: None,
            listening: Vec::new(),
        }
    }

    #[test]
    fn a_subtree_is_walked_past_nothing_it_must_not_touch() {
        let mut snapshot = Snapshot::default();
        for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (13, 10), (14, 13), (20, 1)] {
            snapshot.processes.insert(pid, process(pid, ppid));
        }
        let mut all = pruned_subtree(&snapshot, 10, &|_| true);
        all.sort_unstable();
        assert_eq!(all, [10, 11, 12, 13, 14]);
        let mut pruned = pruned_subtree(&snapshot, 10, &|p| p != 13);
        pruned.sort_unstable();
        assert_eq!(pruned, [10, 11, 12], "13 is skipped with what is below it");
    }
}
