//! The stop flow: graceful in reverse dependency order, then strays found by discovery, then
//! force, then registry cleanup, then a fresh scan that proves nothing is left. It needs no
//! supervisor: scopes are found by name, strays by the markers they inherited, the discover
//! rules, or the service's output pipe they still hold. Another user's processes are never
//! strays or survivors, whatever their markers say. The project's containers (`containers`)
//! are stopped in their service's layer beside its scopes, removed, and looked for again.

pub mod containers;
mod selection;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, graph};
use crate::contain::{AnyContainment, Containment, ScopeHandle, cgroup};
use crate::discover::classify;
use crate::discover::trail::Trail;
use crate::escalate::{self, Force, ForceSwitch, Grace, KILL_WAIT};
use crate::proc::markers;
use crate::proc::{LivenessProbe, ProcFs, ProcessIdentity};
use crate::registry::{ProcessFilter, Registry};

pub use containers::{ContainerStop, ContainerSweep};
use selection::Selection;

#[derive(Debug, Clone)]
pub struct StopOptions {
    /// Overrides every service's stop timeout.
    pub timeout: Option<Duration>,
    /// Skip the graceful phase: kill at once.
    pub force: bool,
    /// Say what would be signalled, and signal nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing of the project was running.
    NothingToStop,
    /// Everything is gone.
    Complete,
    /// Something survived; `survivors` names it.
    Incomplete,
    /// `--dry-run`: nothing was signalled.
    DryRun,
}

impl Outcome {
    /// The outcome in words, as `--json` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NothingToStop => "nothing to stop",
            Outcome::Complete => "complete",
            Outcome::Incomplete => "incomplete",
            Outcome::DryRun => "dry run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownReport {
    pub project: String,
    pub outcome: Outcome,
    /// `stop SVC…`: the services asked for. Absent for a stop of the whole project.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<String>,
    /// `stop SVC…`: the services stopped too because they require one asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
    pub services: Vec<ServiceStop>,
    pub strays: Vec<StrayStop>,
    /// The project's containers (its labels, its compose projects), as the stop left them.
    pub containers: Vec<ContainerStop>,
    pub survivors: Vec<Survivor>,
    /// Scopes left alone because they hold ccscope itself or its caller.
    pub spared: Vec<String>,
    pub registry_records_removed: usize,
    /// The live supervisor asked to stand down first, if there was one.
    pub supervisor: Option<crate::control::StandDownReport>,
    /// What went wrong on the side without stopping the stop (the registry could not be
    /// written, …): the stop itself is reported in full above.
    pub warnings: Vec<String>,
    /// What the stop could not look at and did not need to (no docker daemon answers): said
    /// once, not a failure.
    pub notices: Vec<String>,
    /// Processes that carry the project's markers (or match its rules) but belong to another
    /// user: never signalled, said here and in the journal (`stop.refused`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ours: Vec<NotOurs>,
    pub elapsed_ms: u64,
}

/// A process of another user that a stop left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotOurs {
    pub pid: i32,
    pub uid: u32,
    pub command_line: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStop {
    pub service: String,
    pub scope: String,
    pub processes: usize,
    /// The graceful signal sent, or null with --force.
    pub signal: Option<&'static str>,
    /// Milliseconds from the first signal until the scope was empty.
    pub time_to_empty_ms: Option<u64>,
    pub killed_by_force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrayStop {
    pub pid: i32,
    pub start_time: u64,
    pub service: Option<String>,
    pub command_line: String,
    /// Why it counts as the project's.
    pub reason: String,
    pub killed_by_force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Survivor {
    pub pid: i32,
    pub command_line: String,
    #[serde(rename = "where")]
    pub where_: String,
    /// The id of a container still there (its pid is its PID 1's, or 0 once it exited).
    pub container: Option<String>,
}

/// The project's marked processes, except this process and its ancestors, and except another
/// user's: those carry the name of a project of theirs, and are never ours to wait on.
fn marked(
    project: &str,
    selection: &Selection,
    protected: &BTreeSet<i32>,
) -> Vec<markers::MarkedProcess> {
    let me = crate::proc::sys::euid();
    markers::scan(Path::new("/proc"))
        .into_iter()
        .filter(|p| p.markers.project == project && !protected.contains(&p.identity.pid))
        .filter(|p| selection.includes(p.markers.service.as_deref()))
        .filter(|p| classify::pid_owned_by(p.identity.pid, me))
        .collect()
}

/// Stops everything of `config`'s project that `backends` can see, plus every stray, plus
/// its containers (stopped and removed). `force` turns the graceful phase in flight into a
/// kill (a second Ctrl-C). Registry trouble (a full disk, a locked or broken file) does not
/// stop the stop: it is reported in `warnings`.
pub async fn stop(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    options: &StopOptions,
    force: &Force,
) -> ShutdownReport {
    stop_with(
        config,
        backends,
        registry,
        options,
        ContainerSweep::default(),
        force,
    )
    .await
}

/// [`stop`], with what happens to the stopped containers said by `sweep`.
pub async fn stop_with(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    options: &StopOptions,
    sweep: ContainerSweep,
    force: &Force,
) -> ShutdownReport {
    let all = Selection::Project;
    stop_selected(config, backends, registry, options, &all, sweep, force).await
}

/// `ccscope stop SVC…` without a supervisor: [`stop_with`] restricted to `services` and,
/// after them, every service that requires them (all their scopes, whatever the run, their
/// containers, the strays that name one of them, their registry records and states). The
/// project's other services are never touched. An empty `services` stops the whole project.
pub async fn stop_services(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    options: &StopOptions,
    services: &BTreeSet<String>,
    sweep: ContainerSweep,
    force: &Force,
) -> ShutdownReport {
    let selection = Selection::new(config, Some(services));
    stop_selected(
        config, backends, registry, options, &selection, sweep, force,
    )
    .await
}

/// The one stop flow, over what `selection` holds.
async fn stop_selected(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    options: &StopOptions,
    selection: &Selection,
    sweep: ContainerSweep,
    force: &Force,
) -> ShutdownReport {
    let started = Instant::now();
    let project = config.project.name.as_str();
    // This process and its ancestors are never signalled, whatever markers they carry (the
    // caller may itself run under `ccscope exec`).
    let mut protected = crate::proc::ancestry::self_and_ancestors(Path::new("/proc"));
    let mut warnings = Vec::new();
    // The procfs pass the strays are found in reads all of /proc: on a thread of its own it
    // runs while the scopes are listed and signalled. A process started after it is still
    // seen, by the verifying look at the end.
    let scan =
        tokio::task::spawn_blocking(|| crate::discover::scan::scan_processes(Path::new("/proc")));

    let mut scopes: Vec<(&AnyContainment, ScopeHandle)> = Vec::new();
    // Each scope's processes as first seen, by scope name: read once, used three times.
    let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut spared = Vec::new();
    // Spared scopes still count as containment: what they hold is managed, never a stray.
    let mut spared_scopes: Vec<(ScopeHandle, Vec<i32>)> = Vec::new();
    // Per backend, the cgroup directories the project's scopes sit in (its slice): empty at
    // the end, they prove every scope in them empty without listing the scopes again.
    let mut parents: Vec<BTreeSet<std::path::PathBuf>> = vec![BTreeSet::new(); backends.len()];
    // The daemon is asked for the project's containers while the scopes are listed.
    let docker = tokio::spawn({
        let config = config.clone();
        async move { containers::find(&config).await }
    });
    for (backend, parents) in backends.iter().zip(parents.iter_mut()) {
        for (scope, pids) in crate::contain::scopes_with_processes(backend, project).await {
            if let Some(parent) = scope.cgroup.as_deref().and_then(Path::parent) {
                parents.insert(parent.to_path_buf());
            }
            // A service outside the selection runs on: its scope is not stopped, but what it
            // holds is managed, never a stray.
            if !selection.includes(Some(&scope.service)) {
                spared_scopes.push((scope, pids));
                continue;
            }
            // The scope that holds this very process (`ccscope exec -- ccscope stop`) is left
            // alone: stop never ends its caller.
            if pids.iter().any(|p| protected.contains(p)) {
                spared.push(scope.display_name());
                protected.extend(pids.iter().copied());
                spared_scopes.push((scope, pids));
            } else {
                seen.insert(scope.display_name(), pids);
                scopes.push((backend, scope));
            }
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "stop: scopes listed"
    );
    let docker = docker.await.unwrap_or_else(|e| containers::Found {
        engine: None,
        containers: Vec::new(),
        notice: None,
        warnings: vec![format!("the look for containers failed: {e}")],
    });
    warnings.extend(docker.warnings);
    let notices: Vec<String> = docker.notice.into_iter().collect();
    let engine = docker.engine;
    // Reverse dependency order; scopes of services the configuration does not know
    // (`exec`, a renamed service) go first.
    let layers = graph::start_layers(config);
    let rank = |service: &str| {
        layers
            .iter()
            .position(|l| l.iter().any(|s| s == service))
            .map_or(usize::MAX, |i| i)
    };
    let mut by_rank: BTreeMap<std::cmp::Reverse<usize>, Vec<(&AnyContainment, ScopeHandle)>> =
        BTreeMap::new();
    for (b, s) in scopes {
        by_rank
            .entry(std::cmp::Reverse(rank(&s.service)))
            .or_default()
            .push((b, s));
    }
    // A container of service X is part of X's layer; one of no configured service (a
    // compose container, a renamed service) goes first, as an unknown scope does.
    let mut containers_by_rank: BTreeMap<std::cmp::Reverse<usize>, Vec<_>> = BTreeMap::new();
    // A container's processes are the daemon's to end: never strays, whatever they carry,
    // also those of a container the selection leaves running.
    let container_ids: Vec<String> = docker.containers.iter().map(|c| c.id.clone()).collect();
    for c in docker.containers {
        if !selection.includes(containers::service_of(config, &c)) {
            continue;
        }
        let rank = containers::service_of(config, &c).map_or(usize::MAX, rank);
        let grace = containers::grace(config, &c, options.force, options.timeout);
        containers_by_rank
            .entry(std::cmp::Reverse(rank))
            .or_default()
            .push((c, grace));
    }
    let planned_containers = || -> Vec<ContainerStop> {
        containers_by_rank
            .values()
            .flatten()
            .map(|(c, g)| containers::planned(config, c, *g))
            .collect()
    };

    // Strays: what the discovery engine counts as this project's outside every scope (its
    // markers, its services' discover rules, their descendants), never another user's.
    let listed: Vec<(ScopeHandle, Vec<i32>)> = by_rank
        .values()
        .flatten()
        .map(|(_, s)| (s.clone(), seen[&s.display_name()].clone()))
        .chain(spared_scopes)
        .collect();
    // The services' output pipes, read from their forwarders now, before anything is
    // signalled: a killed forwarder leaves no trail to follow to an escaped process.
    let trail = Trail::read(Path::new("/proc"), &listed);
    let mut services: Vec<ServiceStop> = by_rank
        .values()
        .flatten()
        .map(|(_, s)| ServiceStop {
            service: s.service.clone(),
            scope: s.display_name(),
            processes: seen[&s.display_name()].len(),
            signal: None,
            time_to_empty_ms: None,
            killed_by_force: false,
        })
        .collect();
    let registered: Vec<_> = registry
        .list(ProcessFilter::Project(project))
        .unwrap_or_else(|e| {
            warnings.push(format!("could not read the registry's records: {e}"));
            Vec::new()
        })
        .into_iter()
        .filter(|r| selection.includes(Some(&r.service)))
        .collect();
    let mut report = ShutdownReport {
        project: project.to_string(),
        outcome: Outcome::NothingToStop,
        selected: selection.asked(),
        dependents: selection.dependents(),
        services: Vec::new(),
        strays: Vec::new(),
        containers: Vec::new(),
        survivors: Vec::new(),
        spared,
        registry_records_removed: 0,
        supervisor: None,
        warnings: Vec::new(),
        notices: Vec::new(),
        not_ours: Vec::new(),
        elapsed_ms: 0,
    };
    let stray_grace = |timeout: Option<Duration>| match options.force {
        true => Grace::None,
        false => Grace::Signal {
            signal: crate::config::DEFAULT_STOP_SIGNAL,
            timeout: timeout.unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT),
        },
    };
    let mut swept: Vec<ContainerStop> = Vec::new();
    let strays = if (services.is_empty() && containers_by_rank.is_empty()) || options.dry_run {
        let snapshot = scan.await.unwrap_or_default();
        let (found, not_ours) = find_strays(
            &snapshot,
            config,
            &listed,
            &trail,
            &protected,
            &container_ids,
            selection,
        );
        report.not_ours = not_ours;
        if services.is_empty()
            && found.is_empty()
            && registered.is_empty()
            && containers_by_rank.is_empty()
        {
            report.warnings = warnings;
            report.notices = notices;
            let report = report.finish(Outcome::NothingToStop, started);
            audit_refusal(&report);
            return report;
        }
        if options.dry_run {
            report.services = services;
            report.strays = found;
            report.containers = planned_containers();
            report.warnings = warnings;
            report.notices = notices;
            return report.finish(Outcome::DryRun, started);
        }
        // Strays alone: their stop signal, and the stop timeout to go, before SIGKILL.
        let ids = identities(&found);
        let ends = escalate::end_processes(&ids, stray_grace(options.timeout), force).await;
        mark_killed(found, &ends)
    } else {
        // With scopes to stop, strays are looked for once the first layer's stop signals are
        // out, and get theirs at once: the layers' timeouts are their grace, and they are
        // killed when the last layer is done (or forced).
        let (layers_done, strays_cut) = ForceSwitch::new();
        let strays_force = Force::either(force, &strays_cut);
        let ranks: BTreeSet<std::cmp::Reverse<usize>> = by_rank
            .keys()
            .chain(containers_by_rank.keys())
            .copied()
            .collect();
        let scopes = async {
            let mut done = Vec::new();
            let mut swept = Vec::new();
            for rank in &ranks {
                let group = by_rank.get(rank).map_or(&[][..], Vec::as_slice);
                let boxes = containers_by_rank.get(rank).map_or(&[][..], Vec::as_slice);
                // The layer's clock starts once, before its first signal: a service signalled a
                // few milliseconds after the first is not given those milliseconds on top.
                let layer_start = Instant::now();
                let stops: Vec<(&AnyContainment, &ScopeHandle, Grace)> = group
                    .iter()
                    .map(|(b, s)| {
                        let grace = match (options.force, config.services.get(&s.service)) {
                            (true, _) => Grace::None,
                            (false, Some(svc)) => Grace::Signal {
                                signal: svc.stop_signal,
                                timeout: options.timeout.unwrap_or(svc.stop_timeout.0),
                            },
                            (false, None) => Grace::Signal {
                                signal: crate::config::DEFAULT_STOP_SIGNAL,
                                timeout: options
                                    .timeout
                                    .unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT),
                            },
                        };
                        (*b, s, grace)
                    })
                    .collect();
                // The layer's containers end beside its scopes, on the same clock.
                let boxes = async {
                    match (&engine, boxes.is_empty()) {
                        (Some(engine), false) => {
                            containers::end_all(engine, config, boxes, layer_start, sweep, force)
                                .await
                        }
                        _ => Vec::new(),
                    }
                };
                let (ends, boxes) = futures_util::future::join(
                    escalate::end_and_release_all(&stops, layer_start, force),
                    boxes,
                )
                .await;
                done.extend(ends);
                swept.extend(boxes);
                crate::proc::fault::point(crate::proc::fault::STOP_LAYER_DONE);
            }
            layers_done.force();
            (done, swept)
        };
        let strays = async {
            let snapshot = scan.await.unwrap_or_default();
            let (found, not_ours) = find_strays(
                &snapshot,
                config,
                &listed,
                &trail,
                &protected,
                &container_ids,
                selection,
            );
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "stop: strays found"
            );
            let ids = identities(&found);
            let ends = escalate::end_processes(&ids, stray_grace(None), &strays_force).await;
            (mark_killed(found, &ends), not_ours)
        };
        let ((done, boxes), (strays, not_ours)) = futures_util::future::join(scopes, strays).await;
        report.not_ours = not_ours;
        swept = boxes;
        warnings.extend(swept.iter_mut().filter_map(|c| c.warning.take()));
        for (service, end) in services.iter_mut().zip(done) {
            // A paused service is thawed before its stop signal; one that would not thaw was
            // ended all the same, and the stop says so.
            warnings.extend(end.thaw_failed);
            service.signal = end.signal;
            service.killed_by_force = end.killed;
            service.time_to_empty_ms = end.empty_after.map(|d| d.as_millis() as u64);
        }
        strays
    };
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "stop: scopes and strays stopped"
    );

    // Registry cleanup, then a fresh look.
    crate::proc::fault::point(crate::proc::fault::STOP_BEFORE_REGISTRY);
    let ids: Vec<ProcessIdentity> = registered.iter().map(|r| r.identity()).collect();
    let removed = registry.unregister_all(&ids).unwrap_or_else(|e| {
        warnings.push(format!(
            "could not remove the stopped processes from the registry ({e}); the next command cleans up the records of dead processes"
        ));
        0
    });
    let cleared = match selection.services() {
        None => registry.clear_service_states(project),
        Some(services) => registry.clear_service_states_of(project, &services),
    };
    if let Err(e) = cleared {
        warnings.push(format!(
            "could not clear the services' recorded states: {e}"
        ));
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "stop: registry done"
    );
    let stray_ids = identities(&strays);
    report.survivors = survivors(
        project,
        selection,
        &protected,
        &report.spared,
        backends,
        &parents,
        &stray_ids,
    )
    .await;
    if let Some(engine) = &engine {
        report
            .survivors
            .extend(containers::survivors(engine, config, selection, sweep, &mut warnings).await);
    }
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "stop: verified");
    report.services = services;
    report.strays = strays;
    report.containers = swept;
    report.notices = notices;
    report.registry_records_removed = removed;
    report.warnings = warnings;
    let outcome = if report.survivors.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Incomplete
    };
    let report = report.finish(outcome, started);
    audit(&report);
    audit_refusal(&report);
    report
}

/// The stop left another user's processes of the project alone: said in the journal, with
/// this stop's caller as the actor.
fn audit_refusal(report: &ShutdownReport) {
    if report.not_ours.is_empty() {
        return;
    }
    let named: Vec<String> = report
        .not_ours
        .iter()
        .take(10)
        .map(|p| format!("pid {} (uid {}, `{}`)", p.pid, p.uid, p.command_line))
        .collect();
    crate::audit::Event {
        event: "stop.refused",
        project: &report.project,
        service: None,
        message: format!(
            "{} process(es) of `{}` belong to other users and were left alone: {}",
            report.not_ours.len(),
            report.project,
            named.join(", ")
        ),
        fields: Vec::new(),
    }
    .record(crate::audit::Priority::Warning);
}

/// What the discovery engine counts as the project's outside every scope: its markers, its
/// services' discover rules, the holders of its services' output pipes (`trail`), their
/// descendants; never another user's, never ours.
/// A stray is found by its markers, its command line, its executable, the pipes it holds or
/// its parent, never by a port: `snapshot` needs no socket tables.
fn find_strays(
    snapshot: &crate::discover::scan::Snapshot,
    config: &Config,
    listed: &[(ScopeHandle, Vec<i32>)],
    trail: &Trail,
    protected: &BTreeSet<i32>,
    container_ids: &[String],
    selection: &Selection,
) -> (Vec<StrayStop>, Vec<NotOurs>) {
    let mount = cgroup::v2_mount().ok().flatten();
    let scopes = classify::Scopes {
        scopes: listed,
        v2_mount: mount.as_deref(),
    };
    let classified = classify::classify_traced(snapshot, config, &scopes, trail);
    let not_ours = classified
        .iter()
        .filter(|c| c.class == classify::Class::Foreign && c.uid != crate::proc::sys::euid())
        .filter(|c| selection.includes(c.service.as_deref()))
        .map(|c| NotOurs {
            pid: c.pid,
            uid: c.uid,
            command_line: c.command_line.clone(),
        })
        .collect();
    let strays = classified
        .into_iter()
        .filter(|c| c.class == classify::Class::Stray && !protected.contains(&c.pid))
        .filter(|c| selection.includes(c.service.as_deref()))
        .filter(|c| {
            // Docker names a container's cgroup after its full id (`docker-<id>.scope`,
            // `/docker/<id>`).
            c.cgroup
                .as_deref()
                .is_none_or(|cg| !container_ids.iter().any(|id| cg.contains(id.as_str())))
        })
        .map(|c| StrayStop {
            pid: c.pid,
            start_time: c.start_time,
            service: c.service,
            command_line: c.command_line,
            reason: c.reason,
            killed_by_force: false,
        })
        .collect();
    (strays, not_ours)
}

fn identities(strays: &[StrayStop]) -> Vec<ProcessIdentity> {
    strays
        .iter()
        .map(|s| ProcessIdentity {
            pid: s.pid,
            start_time: s.start_time,
        })
        .collect()
}

fn mark_killed(mut strays: Vec<StrayStop>, ends: &[escalate::ProcessEnd]) -> Vec<StrayStop> {
    for (stray, end) in strays.iter_mut().zip(ends) {
        stray.killed_by_force = end.killed;
    }
    strays
}

/// Everything of the project still alive: in a scope, marked anywhere, or a stray the stop
/// found, looked for by its identity (one found by the pipe it held carries no marker to be
/// found again by). A killed process
/// can take a moment to leave: what is seen is waited on (its cgroup's `populated 0`, its
/// pidfd) for up to [`KILL_WAIT`], and then looked at again.
async fn survivors(
    project: &str,
    selection: &Selection,
    protected: &BTreeSet<i32>,
    spared: &[String],
    backends: &[AnyContainment],
    parents: &[BTreeSet<std::path::PathBuf>],
    strays: &[ProcessIdentity],
) -> Vec<Survivor> {
    let first = look(
        project, selection, protected, spared, backends, parents, strays,
    )
    .await;
    if first.is_empty() {
        return Vec::new();
    }
    let waits = first.iter().map(|(backend, scope, left)| async move {
        match (backend, scope) {
            (Some(b), Some(s)) => {
                let _ = b.wait_empty(s, KILL_WAIT).await;
            }
            _ => {
                let ids: Vec<ProcessIdentity> = left
                    .iter()
                    .filter_map(|s| ProcFs::default().identity(s.pid).ok())
                    .collect();
                escalate::wait_gone(&ids, KILL_WAIT).await;
            }
        }
    });
    futures_util::future::join_all(waits).await;
    look(
        project, selection, protected, spared, backends, parents, strays,
    )
    .await
    .into_iter()
    .flat_map(|(_, _, left)| left)
    .collect()
}

/// One look for what is left, by where it is: each scope's processes, then marked processes
/// and the strays found earlier, outside every scope.
async fn look<'a>(
    project: &str,
    selection: &Selection,
    protected: &BTreeSet<i32>,
    spared: &[String],
    backends: &'a [AnyContainment],
    parents: &[BTreeSet<std::path::PathBuf>],
    strays: &[ProcessIdentity],
) -> Vec<(
    Option<&'a AnyContainment>,
    Option<ScopeHandle>,
    Vec<Survivor>,
)> {
    let procfs = ProcFs::default();
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for (backend, parents) in backends.iter().zip(parents) {
        // Every scope in the slice that held the scopes seen at the start is empty, and no
        // new one can be elsewhere (a backend puts all of a project's scopes there): nothing
        // is left in this backend, and no round trip to the manager is needed to know it.
        let parents: Vec<std::path::PathBuf> = parents.iter().cloned().collect();
        if !parents.is_empty() && crate::contain::scope_dirs_empty(backend, &parents) {
            continue;
        }
        for (scope, pids) in crate::contain::scopes_with_processes(backend, project).await {
            if spared.contains(&scope.display_name()) || !selection.includes(Some(&scope.service)) {
                continue;
            }
            let left: Vec<Survivor> = pids
                .into_iter()
                .filter(|pid| !protected.contains(pid) && seen.insert(*pid))
                .map(|pid| Survivor {
                    pid,
                    command_line: procfs.cmdline(pid).unwrap_or_default(),
                    where_: scope.display_name(),
                    container: None,
                })
                .collect();
            if !left.is_empty() {
                found.push((Some(backend), Some(scope), left));
            }
        }
    }
    let mut marked: Vec<Survivor> = marked(project, selection, protected)
        .into_iter()
        .filter(|p| seen.insert(p.identity.pid))
        .map(|p| Survivor {
            pid: p.identity.pid,
            command_line: procfs.cmdline(p.identity.pid).unwrap_or_default(),
            where_: "outside every scope (marked)".into(),
            container: None,
        })
        .collect();
    marked.extend(
        strays
            .iter()
            .filter(|id| procfs.is_alive(**id) && seen.insert(id.pid))
            .map(|id| Survivor {
                pid: id.pid,
                command_line: procfs.cmdline(id.pid).unwrap_or_default(),
                where_: "outside every scope (stray)".into(),
                container: None,
            }),
    );
    if !marked.is_empty() {
        found.push((None, None, marked));
    }
    found
}

impl ShutdownReport {
    /// What an alert of an INCOMPLETE stop says: how many survived, and who (None when the
    /// stop left nothing).
    pub fn incomplete_reason(&self) -> Option<String> {
        if self.outcome != Outcome::Incomplete {
            return None;
        }
        let survivors: Vec<String> = self
            .survivors
            .iter()
            .map(|s| format!("{} ({})", s.pid, s.where_))
            .collect();
        Some(format!(
            "the stop is INCOMPLETE: {} survivor(s): {}",
            self.survivors.len(),
            survivors.join(", ")
        ))
    }

    /// A report of a stop that found nothing to do.
    pub fn empty(config: &Config) -> ShutdownReport {
        ShutdownReport {
            project: config.project.name.clone(),
            outcome: Outcome::NothingToStop,
            selected: Vec::new(),
            dependents: Vec::new(),
            services: Vec::new(),
            strays: Vec::new(),
            containers: Vec::new(),
            survivors: Vec::new(),
            spared: Vec::new(),
            registry_records_removed: 0,
            supervisor: None,
            warnings: Vec::new(),
            notices: Vec::new(),
            not_ours: Vec::new(),
            elapsed_ms: 0,
        }
    }

    fn finish(mut self, outcome: Outcome, started: Instant) -> ShutdownReport {
        self.outcome = outcome;
        self.elapsed_ms = started.elapsed().as_millis() as u64;
        self
    }
}

/// ` (services b, and c that requires it)` for a selective stop, nothing for a whole one.
fn selection_words(report: &ShutdownReport) -> String {
    match (report.selected.is_empty(), report.dependents.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" (services {})", report.selected.join(", ")),
        (false, false) => format!(
            " (services {}, and their dependents {})",
            report.selected.join(", "),
            report.dependents.join(", ")
        ),
    }
}

/// The stop's decisions, one journal entry each: what was signalled or killed, and the outcome.
fn audit(report: &ShutdownReport) {
    use crate::audit::{Event, Priority};
    let caller = std::process::id().to_string();
    for s in &report.services {
        let how = match (s.signal, s.killed_by_force) {
            (Some(sig), false) => format!("stopped by {sig}"),
            (Some(sig), true) => format!("did not exit after {sig}: killed"),
            (None, _) => "killed (--force)".to_string(),
        };
        Event {
            event: if s.killed_by_force {
                "stop.kill"
            } else {
                "stop.signal"
            },
            project: &report.project,
            service: Some(&s.service),
            message: format!("{} in {}: {how}", s.service, s.scope),
            fields: vec![
                ("CCSCOPE_SCOPE", s.scope.clone()),
                ("CCSCOPE_CALLER_PID", caller.clone()),
            ],
        }
        .record(Priority::Notice);
    }
    for s in &report.strays {
        Event {
            event: "stop.stray",
            project: &report.project,
            service: s.service.as_deref(),
            message: format!("stray pid {} `{}`: {}", s.pid, s.command_line, s.reason),
            fields: vec![
                ("CCSCOPE_TARGET_PID", s.pid.to_string()),
                ("CCSCOPE_CALLER_PID", caller.clone()),
            ],
        }
        .record(Priority::Notice);
    }
    for c in &report.containers {
        let how = match (c.signal, c.killed) {
            (Some(sig), false) => format!("stopped by {sig}"),
            (Some(sig), true) => format!("did not exit after {sig}: killed"),
            (None, true) => "killed (--force)".to_string(),
            (None, false) => format!("was {}", c.state),
        };
        let removed = if c.removed { ", removed" } else { "" };
        Event {
            event: if c.killed {
                "stop.container.kill"
            } else {
                "stop.container"
            },
            project: &report.project,
            service: c.service.as_deref(),
            message: format!("container {} ({}): {how}{removed}", c.name, c.image),
            fields: vec![
                ("CCSCOPE_CONTAINER_ID", c.id.clone()),
                ("CCSCOPE_CALLER_PID", caller.clone()),
            ],
        }
        .record(Priority::Notice);
    }
    let (event, priority) = match report.outcome {
        Outcome::Incomplete => ("stop.incomplete", Priority::Error),
        _ => ("stop.complete", Priority::Notice),
    };
    let survivors: Vec<String> = report
        .survivors
        .iter()
        .take(10)
        .map(|s| format!("pid {} `{}` ({})", s.pid, s.command_line, s.where_))
        .collect();
    let named = match survivors.is_empty() {
        true => String::new(),
        false => format!(": {}", survivors.join(", ")),
    };
    Event {
        event,
        project: &report.project,
        service: None,
        message: format!(
            "stop of `{}`{} {}: {} service(s), {} stray(s), {} container(s), {} survivor(s){named} ({} ms)",
            report.project,
            selection_words(report),
            report.outcome.as_str().to_uppercase(),
            report.services.len(),
            report.strays.len(),
            report.containers.len(),
            report.survivors.len(),
            report.elapsed_ms
        ),
        fields: vec![
            ("CCSCOPE_CALLER_PID", caller),
            ("CCSCOPE_OUTCOME", report.outcome.as_str().to_string()),
            ("CCSCOPE_SURVIVORS", report.survivors.len().to_string()),
        ],
    }
    .record(priority);
}
