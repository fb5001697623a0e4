//! The stop flow: graceful in reverse dependency order, then strays found by their markers,
//! then force, then registry cleanup, then a fresh scan that proves nothing is left. It needs
//! no supervisor: scopes are found by name, strays by the markers they inherited.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, graph};
use crate::contain::{AnyContainment, BackendKind, Containment, ScopeHandle, cgroup};
use crate::discover::classify;
use crate::proc::markers;
use crate::proc::sys::{self, Signalled};
use crate::proc::{ProcFs, ProcessIdentity};
use crate::registry::{ProcessFilter, Registry, RegistryError};

/// How long a forced kill may take to empty a scope before its survivors are reported.
const FORCE_DEADLINE: Duration = Duration::from_secs(5);

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

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownReport {
    pub project: String,
    pub outcome: Outcome,
    pub services: Vec<ServiceStop>,
    pub strays: Vec<StrayStop>,
    pub survivors: Vec<Survivor>,
    /// Scopes left alone because they hold ccscope itself or its caller.
    pub spared: Vec<String>,
    pub registry_records_removed: usize,
    /// The live supervisor asked to stand down first, if there was one.
    pub supervisor: Option<crate::control::StandDownReport>,
    pub elapsed_ms: u64,
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
}

/// This process and its ancestors: never signalled, whatever markers they carry (the caller
/// may itself run under `ccscope exec`).
fn protected() -> BTreeSet<i32> {
    let mut protected = BTreeSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && protected.insert(pid) {
        match crate::proc::read_stat(Path::new("/proc"), pid) {
            Ok(stat) => pid = stat.ppid,
            Err(_) => break,
        }
    }
    protected
}

/// The project's marked processes, except ours.
fn marked(project: &str, protected: &BTreeSet<i32>) -> Vec<markers::MarkedProcess> {
    markers::scan(Path::new("/proc"))
        .into_iter()
        .filter(|p| p.markers.project == project && !protected.contains(&p.identity.pid))
        .collect()
}

/// Stops everything of `config`'s project that `backends` can see, plus every stray.
pub async fn stop(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    options: &StopOptions,
) -> Result<ShutdownReport, RegistryError> {
    let started = Instant::now();
    let project = config.project.name.as_str();
    let mut protected = protected();

    let mut scopes: Vec<(&AnyContainment, ScopeHandle)> = Vec::new();
    // Each scope's processes as first seen, by scope name: read once, used three times.
    let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut spared = Vec::new();
    // Spared scopes still count as containment: what they hold is managed, never a stray.
    let mut spared_scopes: Vec<(ScopeHandle, Vec<i32>)> = Vec::new();
    for backend in backends {
        for scope in backend.list(project).await.unwrap_or_default() {
            // The scope that holds this very process (`ccscope exec -- ccscope stop`) is left
            // alone: stop never ends its caller.
            let pids = backend.processes(&scope).await.unwrap_or_default();
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

    // Strays: what the discovery engine counts as this project's outside every scope (its
    // markers, its services' discover rules, their descendants), never another user's.
    let listed: Vec<(ScopeHandle, Vec<i32>)> = by_rank
        .values()
        .flatten()
        .map(|(_, s)| (s.clone(), seen[&s.display_name()].clone()))
        .chain(spared_scopes)
        .collect();
    let find_strays = || -> Vec<StrayStop> {
        let snapshot = crate::discover::scan::scan(Path::new("/proc"));
        let mount = cgroup::v2_mount().ok().flatten();
        let scopes = classify::Scopes {
            scopes: &listed,
            v2_mount: mount.as_deref(),
        };
        classify::classify(&snapshot, config, &scopes)
            .into_iter()
            .filter(|c| c.class == classify::Class::Stray && !protected.contains(&c.pid))
            .map(|c| StrayStop {
                pid: c.pid,
                start_time: c.start_time,
                service: c.service,
                command_line: c.command_line,
                reason: c.reason,
                killed_by_force: false,
            })
            .collect()
    };

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
    let registered = registry.list(ProcessFilter::Project(project))?;
    let mut report = ShutdownReport {
        project: project.to_string(),
        outcome: Outcome::NothingToStop,
        services: Vec::new(),
        strays: Vec::new(),
        survivors: Vec::new(),
        spared,
        registry_records_removed: 0,
        supervisor: None,
        elapsed_ms: 0,
    };
    // With scopes to stop, strays are looked for once their stop signals are out: the scopes'
    // timeouts run meanwhile.
    let mut strays: Option<Vec<StrayStop>> = None;
    if services.is_empty() || options.dry_run {
        let found = find_strays();
        if services.is_empty() && found.is_empty() && registered.is_empty() {
            return Ok(report.finish(Outcome::NothingToStop, started));
        }
        if options.dry_run {
            report.services = services;
            report.strays = found;
            return Ok(report.finish(Outcome::DryRun, started));
        }
        strays = Some(found);
    }

    // A layer at a time, the services of one layer in parallel, each on its own clock: its
    // stop signal, up to its stop timeout to empty (an event), then a kill if it did not.
    let mut index = 0;
    for group in by_rank.values() {
        // The layer's clock starts once, before its first signal: a service signalled a few
        // milliseconds after the first is not given those milliseconds on top.
        let layer_start = Instant::now();
        let stops = group.iter().map(|(b, s)| {
            let (signal, timeout) = match config.services.get(&s.service) {
                Some(svc) => (
                    svc.stop_signal,
                    options.timeout.unwrap_or(svc.stop_timeout.0),
                ),
                None => (
                    crate::config::DEFAULT_STOP_SIGNAL,
                    options.timeout.unwrap_or(Duration::from_secs(10)),
                ),
            };
            stop_one(
                b,
                s,
                layer_start,
                (!options.force).then_some((signal, timeout)),
            )
        });
        let stops = futures_util::future::join_all(stops);
        let done = if strays.is_none() {
            // Polled after every stop of the layer has sent its signal.
            // Strays get their SIGTERM at once, so the layer's timeouts are their grace too.
            let (done, found) = futures_util::future::join(stops, async {
                let found = find_strays();
                if !options.force {
                    term_strays(&found);
                }
                found
            })
            .await;
            strays = Some(found);
            done
        } else {
            stops.await
        };
        for stopped in done {
            services[index] = ServiceStop {
                service: std::mem::take(&mut services[index].service),
                scope: std::mem::take(&mut services[index].scope),
                processes: services[index].processes,
                ..stopped
            };
            index += 1;
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "stop: scopes stopped"
    );

    // Strays: SIGTERM, then SIGKILL for those still there; each by pidfd, after checking its
    // start time.
    let mut strays = strays.unwrap_or_default();
    if services.is_empty() && !options.force && !strays.is_empty() {
        // Strays alone: SIGTERM, and the default stop timeout to go (each exit is an event
        // on its pidfd), before SIGKILL.
        term_strays(&strays);
        let timeout = options
            .timeout
            .unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT);
        wait_strays_gone(&strays, timeout).await;
    }
    let procfs = ProcFs::default();
    for stray in &mut strays {
        let id = ProcessIdentity {
            pid: stray.pid,
            start_time: stray.start_time,
        };
        if procfs.identity(id.pid).is_ok_and(|now| now == id) {
            stray.killed_by_force =
                sys::signal_identified(id, libc::SIGKILL).is_ok_and(|s| s == Signalled::Sent);
        }
    }

    // Registry cleanup, then a fresh look.
    let mut removed = 0;
    for record in &registered {
        if registry.unregister(record.identity())? {
            removed += 1;
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "stop: strays and registry done"
    );
    registry.clear_service_states(project)?;
    report.survivors = survivors(project, &protected, &report.spared, backends).await;
    report.services = services;
    report.strays = strays;
    report.registry_records_removed = removed;
    let outcome = if report.survivors.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Incomplete
    };
    let report = report.finish(outcome, started);
    audit(&report);
    Ok(report)
}

/// SIGTERM to each stray, by pidfd after checking its start time.
fn term_strays(strays: &[StrayStop]) {
    for stray in strays {
        let id = ProcessIdentity {
            pid: stray.pid,
            start_time: stray.start_time,
        };
        let _ = sys::signal_identified(id, libc::SIGTERM);
    }
}

/// Waits until every stray has exited (its pidfd turns readable) or `timeout` passed.
async fn wait_strays_gone(strays: &[StrayStop], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for stray in strays {
        let Ok(fd) = sys::pidfd_open(stray.pid) else {
            continue; // gone already
        };
        let Ok(fd) = sys::async_readable(fd) else {
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, fd.readable()).await;
    }
}

/// Stops one scope: `graceful` (its stop signal and timeout) first unless forced, then a kill
/// if it is not empty by then; releases it. The report's service and scope are filled in by
/// the caller.
async fn stop_one(
    b: &AnyContainment,
    s: &ScopeHandle,
    t: Instant,
    graceful: Option<(crate::config::Signal, Duration)>,
) -> ServiceStop {
    let ms = |t: Instant| t.elapsed().as_millis() as u64;
    let mut stopped = ServiceStop {
        service: String::new(),
        scope: String::new(),
        processes: 0,
        signal: graceful.map(|(signal, _)| signal.name),
        time_to_empty_ms: None,
        killed_by_force: false,
    };
    if let Some((signal, timeout)) = graceful {
        let _ = b.signal(s, signal.number).await;
        let left = timeout.saturating_sub(t.elapsed());
        if b.wait_empty(s, left).await.unwrap_or(false) {
            stopped.time_to_empty_ms = Some(ms(t));
        }
    }
    if stopped.time_to_empty_ms.is_none() {
        stopped.killed_by_force = true;
        let _ = b.kill(s).await;
        if b.wait_empty(s, FORCE_DEADLINE).await.unwrap_or(false) {
            stopped.time_to_empty_ms = Some(ms(t));
        }
    }
    // systemd collects an empty scope itself (CollectMode=inactive-or-failed): a round trip
    // per scope through its one-call-at-a-time manager would only add time.
    if !(stopped.time_to_empty_ms.is_some() && b.kind() == BackendKind::Systemd) {
        let _ = b.release(s).await;
    }
    stopped
}

/// Everything of the project still alive: in a scope, or marked anywhere. A killed process
/// can take a moment to leave; each is given until the force deadline.
async fn survivors(
    project: &str,
    protected: &BTreeSet<i32>,
    spared: &[String],
    backends: &[AnyContainment],
) -> Vec<Survivor> {
    let deadline = Instant::now() + FORCE_DEADLINE;
    loop {
        let mut left = Vec::new();
        for backend in backends {
            for scope in backend.list(project).await.unwrap_or_default() {
                if spared.contains(&scope.display_name()) {
                    continue;
                }
                for pid in backend.processes(&scope).await.unwrap_or_default() {
                    if !protected.contains(&pid) {
                        left.push(Survivor {
                            pid,
                            command_line: ProcFs::default().cmdline(pid).unwrap_or_default(),
                            where_: scope.display_name(),
                        });
                    }
                }
            }
        }
        for p in marked(project, protected) {
            if !left.iter().any(|s| s.pid == p.identity.pid) {
                left.push(Survivor {
                    pid: p.identity.pid,
                    command_line: ProcFs::default()
                        .cmdline(p.identity.pid)
                        .unwrap_or_default(),
                    where_: "outside every scope (marked)".into(),
                });
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl ShutdownReport {
    fn finish(mut self, outcome: Outcome, started: Instant) -> ShutdownReport {
        self.outcome = outcome;
        self.elapsed_ms = started.elapsed().as_millis() as u64;
        self
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
    let (event, priority) = match report.outcome {
        Outcome::Incomplete => ("stop.incomplete", Priority::Error),
        _ => ("stop.complete", Priority::Notice),
    };
    Event {
        event,
        project: &report.project,
        service: None,
        message: format!(
            "stop of `{}`: {} service(s), {} stray(s), {} survivor(s)",
            report.project,
            report.services.len(),
            report.strays.len(),
            report.survivors.len()
        ),
        fields: vec![("CCSCOPE_CALLER_PID", caller)],
    }
    .record(priority);
}
