//! Every process of one project, wherever it runs: inside its scopes (as the kernel says),
//! registered (as the registry says), or outside any scope but carrying the project's markers
//! or holding a service's output pipe (see `trail`). Another user's processes are never the
//! project's, whatever their markers say: a project of the same name is theirs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::classify::pid_owned_by;
use super::sockets;
use super::trail::Trail;
use crate::contain::{AnyContainment, BusKind, Containment, all_available};
use crate::proc::ProcFs;
use crate::proc::markers;
use crate::registry::{ProcessFilter, ProcessRecord, ProcessSource, Registry, RegistryError};

#[derive(Debug, Clone, Serialize)]
pub struct ProjectProcess {
    pub project: String,
    pub pid: i32,
    pub start_time: u64,
    /// Seconds since it started.
    pub age_s: Option<u64>,
    pub service: String,
    pub command_line: String,
    /// TCP ports it listens on.
    pub ports: Vec<u16>,
    /// `launched` (started by ccscope, or a descendant of what it started), `discovered` (found
    /// by its markers outside containment), or `adopted`.
    pub source: ProcessSource,
    /// Inside its service's scope (or, with the process-group backend, its process group).
    pub inside_scope: bool,
    /// The scope it is in, if any.
    pub scope: Option<String>,
    /// Whether the registry holds it.
    pub registered: bool,
}

/// The project's processes, sorted by service then pid.
pub async fn list(
    project: &str,
    backends: &[AnyContainment],
    records: &[ProcessRecord],
) -> Vec<ProjectProcess> {
    let procfs = ProcFs::default();
    let registered: HashMap<(i32, u64), &ProcessRecord> =
        records.iter().map(|r| ((r.pid, r.start_time), r)).collect();
    let mut found: BTreeMap<i32, ProjectProcess> = BTreeMap::new();
    let mut row = |pid: i32, service: &str, scope: Option<String>, fallback: ProcessSource| {
        let Ok(id) = procfs.identity(pid) else {
            return;
        };
        let record = registered.get(&(id.pid, id.start_time));
        found.entry(pid).or_insert_with(|| ProjectProcess {
            project: project.to_string(),
            pid,
            start_time: id.start_time,
            age_s: crate::proc::process_age(id.start_time),
            service: service.to_string(),
            command_line: procfs
                .cmdline(pid)
                .ok()
                .filter(|c| !c.is_empty())
                .or_else(|| record.map(|r| r.command_line.clone()))
                .unwrap_or_default(),
            // The registered (declared) ports until the socket tables say what it listens on.
            ports: record.map(|r| r.ports.clone()).unwrap_or_default(),
            source: record.map_or(fallback, |r| r.source),
            inside_scope: scope.is_some(),
            scope,
            registered: record.is_some(),
        });
    };
    let mut scopes = Vec::new();
    for backend in backends {
        for scope in backend.list(project).await.unwrap_or_default() {
            let name = scope.display_name();
            let pids = backend.processes(&scope).await.unwrap_or_default();
            for pid in &pids {
                row(
                    *pid,
                    &scope.service,
                    Some(name.clone()),
                    ProcessSource::Launched,
                );
            }
            scopes.push((scope, pids));
        }
    }
    for r in records {
        row(r.pid, &r.service, None, r.source);
    }
    let proc_root = Path::new("/proc");
    let me = crate::proc::sys::euid();
    for m in markers::scan(proc_root) {
        if m.markers.project == project && pid_owned_by(m.identity.pid, me) {
            let service = m.markers.service.clone().unwrap_or_else(|| "?".into());
            row(m.identity.pid, &service, None, ProcessSource::Discovered);
        }
    }
    // Whoever holds a service's output pipe outside its scope (an escaped process). The
    // scopes' processes hold them too, and are listed already.
    let trail = Trail::read(proc_root, &scopes);
    if let Some(since) = trail.since().filter(|_| !trail.is_empty()) {
        for (id, held) in super::scan::holders_since(proc_root, me, since, |i| trail.wants(i)) {
            if let Some(channel) = trail.judge(&held) {
                if pid_owned_by(id.pid, me) {
                    row(id.pid, &channel.service, None, ProcessSource::Discovered);
                }
            }
        }
    }
    attach_ports(&mut found);
    let mut all: Vec<ProjectProcess> = found.into_values().collect();
    all.sort_by(|a, b| a.service.cmp(&b.service).then(a.pid.cmp(&b.pid)));
    all
}

/// Fills in each process's listening TCP ports.
fn attach_ports(found: &mut BTreeMap<i32, ProjectProcess>) {
    let proc_root = Path::new("/proc");
    let listeners = sockets::tcp_listeners(proc_root);
    if listeners.is_empty() {
        return;
    }
    let inodes: Vec<u64> = listeners.iter().map(|l| l.inode).collect();
    let holders = sockets::holders_among(proc_root, &inodes, found.keys().copied());
    let mut live: BTreeMap<i32, BTreeSet<u16>> = BTreeMap::new();
    for l in &listeners {
        for pid in holders.get(&l.inode).into_iter().flatten() {
            live.entry(*pid).or_default().insert(l.port);
        }
    }
    for (pid, ports) in live {
        if let Some(p) = found.get_mut(&pid) {
            p.ports = ports.into_iter().collect();
        }
    }
}

/// The distinct services of a listing.
pub fn services(processes: &[ProjectProcess]) -> BTreeSet<&str> {
    processes.iter().map(|p| p.service.as_str()).collect()
}

/// What `ccscope ps` lists: every process of `project` (its scopes, its records, its marked
/// strays), or with no project every project's registered processes. A record is alive only
/// while its (pid, start time) is: the dead are dropped first.
pub async fn ps(
    project: Option<&str>,
    registry: &Registry,
    bus: BusKind,
) -> Result<Vec<ProjectProcess>, RegistryError> {
    registry.cleanup_stale(&ProcFs::default())?;
    Ok(match project {
        Some(name) => {
            let records = registry.list(ProcessFilter::Project(name))?;
            let backends = all_available(bus).await;
            list(name, &backends, &records).await
        }
        None => registry
            .list(ProcessFilter::All)?
            .iter()
            .map(from_record)
            .collect(),
    })
}

/// A registered process of any project, as the registry holds it.
fn from_record(r: &ProcessRecord) -> ProjectProcess {
    let procfs = crate::proc::ProcFs::default();
    let now = procfs
        .identity(r.pid)
        .is_ok_and(|id| id == r.identity())
        .then(|| procfs.cmdline(r.pid).ok())
        .flatten()
        .filter(|c| !c.is_empty());
    let scope = r
        .unit
        .as_deref()
        .or(r.cgroup.as_deref())
        .map(str::to_string);
    ProjectProcess {
        project: r.project.to_string(),
        pid: r.pid,
        start_time: r.start_time,
        age_s: crate::proc::process_age(r.start_time),
        service: r.service.to_string(),
        command_line: now.unwrap_or_else(|| r.command_line.clone()),
        ports: r.ports.clone(),
        source: r.source,
        inside_scope: scope.is_some(),
        scope,
        registered: true,
    }
}
