//! `ccscope status` as data: each configured service as its scope shows it now — running or
//! not, how many processes, since when, declared ports and which of them listen, and the CPU
//! and memory its cgroups counted — with the live supervisor's word on it where one runs.
//! It asks the kernel and the registry, never the supervisor itself; and the Docker daemon
//! for the project's containers (a running container of a service counts as its process).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::contain::{AnyContainment, ScopeHandle, ScopeStats, scopes_with_processes_in};
use crate::discover::containers::{self, ContainerRow};
use crate::proc::ProcFs;
use crate::registry::{Registry, RegistryError, ServiceStateRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// With a live supervisor, its word: `pending`, `launching`, `starting`, `running`,
    /// `restarting`, `waiting`, `exited`, `failed`, `stopping`, `stopped`. Without one, what
    /// the scope shows: `running` (it holds processes) or `stopped`. A service the supervisor
    /// last called `starting`, `running` or `stopping` whose scopes hold no process is
    /// `stopped`, whatever the registry says (its scopes were emptied behind the supervisor's
    /// back, or a stop did not finish), with a message saying so.
    pub state: String,
    /// Whether its readiness probe passed (null without a live supervisor).
    pub ready: Option<bool>,
    /// Restarts so far in this run (null without a live supervisor).
    pub restarts: Option<u32>,
    /// The supervisor's last word on it, e.g. why it failed; or why its word no longer holds.
    pub message: Option<String>,
    /// The watched file whose change last restarted it (`watch`; null without one).
    pub last_trigger: Option<String>,
    pub scopes: Vec<String>,
    pub processes: usize,
    /// Seconds since its oldest process started.
    pub uptime_s: Option<u64>,
    pub ports: Vec<u16>,
    /// Which of its declared ports something listens on now (TCP): a port is healthy only
    /// while it is listening.
    pub ports_listening: Vec<u16>,
    /// CPU time its cgroups used, from `cpu.stat` (null without a cgroup).
    pub cpu_usec: Option<u64>,
    /// Memory its cgroups use now, from `memory.current` (null where the memory controller
    /// is not in cgroup v2, as on hybrid hosts).
    pub memory_bytes: Option<u64>,
    /// The supervisor's word said processes, and its scopes hold none.
    #[serde(skip)]
    pub contradicted: bool,
}

impl ServiceStatus {
    /// Whether the supervisor's message says something a person should see under the line.
    pub fn message_matters(&self) -> bool {
        self.contradicted
            || matches!(
                self.state.as_str(),
                "failed" | "restarting" | "waiting" | "stopping" | "paused"
            )
            || (self.state == "stopped" && self.restarts.is_some())
    }
}

/// The supervisor's states that mean its service has a process in its scope now.
const STATES_WITH_PROCESSES: &[&str] = &["starting", "running", "stopping"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub project: String,
    /// The live supervisor's pid, if one runs the stack.
    pub supervisor_pid: Option<i32>,
    pub services: Vec<ServiceStatus>,
    /// The project's containers (by label, and its compose projects'), empty without docker.
    pub containers: Vec<ContainerRow>,
}

/// The status of `config`'s project now. The supervisor is found as
/// [`crate::control::find_supervisor`] finds it (its run record, else `lock_holder`).
pub async fn status(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
    lock_holder: Option<i32>,
) -> Result<StatusReport, RegistryError> {
    let project = &config.project.name;
    let supervisor = crate::control::find_supervisor(registry, project, lock_holder)?;
    let states = match supervisor {
        Some(_) => registry.service_states(project)?,
        None => Vec::new(),
    };
    let (scopes, (containers, _)) = futures_util::future::join(
        scopes_with_processes_in(backends, project),
        containers::project_rows(config),
    )
    .await;
    let listening: BTreeSet<u16> = crate::discover::sockets::tcp_listeners(Path::new("/proc"))
        .into_iter()
        .map(|l| l.port)
        .collect();
    let procfs = ProcFs::default();
    let observed = Observed {
        supervisor_pid: supervisor.map(|s| s.pid),
        states: &states,
        scopes: &scopes,
        listening: &listening,
        start_time: &|pid| procfs.identity(pid).ok().map(|id| id.start_time),
        age: &crate::proc::process_age,
        stats: &ScopeStats::of,
        containers: &containers,
    };
    Ok(assemble(config, &observed))
}

/// What the report is made from, read by [`status`] (fed by hand in tests).
struct Observed<'a> {
    supervisor_pid: Option<i32>,
    states: &'a [ServiceStateRecord],
    scopes: &'a [(ScopeHandle, Vec<i32>)],
    listening: &'a BTreeSet<u16>,
    /// A live process's start time (clock ticks after boot).
    start_time: &'a dyn Fn(i32) -> Option<u64>,
    /// Seconds since a start time.
    age: &'a dyn Fn(u64) -> Option<u64>,
    stats: &'a dyn Fn(&ScopeHandle) -> ScopeStats,
    containers: &'a [ContainerRow],
}

/// The configured services in their order, then any service only a scope knows (`exec`, a
/// renamed one).
fn assemble(config: &Config, seen: &Observed<'_>) -> StatusReport {
    let mut names: Vec<String> = config.services.keys().cloned().collect();
    for (scope, _) in seen.scopes {
        if !names.contains(&scope.service) {
            names.push(scope.service.clone());
        }
    }
    let services = names
        .into_iter()
        .map(|name| {
            let mine: Vec<&(ScopeHandle, Vec<i32>)> = seen
                .scopes
                .iter()
                .filter(|(s, _)| s.service == name)
                .collect();
            // A container service's process is its container's PID 1 (in docker's cgroup,
            // not in a scope of ours).
            let pids: Vec<i32> = mine
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .chain(
                    seen.containers
                        .iter()
                        .filter(|c| c.service.as_deref() == Some(name.as_str()))
                        .filter_map(|c| c.pid),
                )
                .collect();
            let oldest = pids.iter().filter_map(|p| (seen.start_time)(*p)).min();
            let stats = ScopeStats::sum(mine.iter().map(|(s, _)| (seen.stats)(s)));
            let known = seen.states.iter().find(|s| s.service == name);
            let ports = config
                .services
                .get(&name)
                .map(|s| s.ports.clone())
                .unwrap_or_default();
            // The kernel has the last word: a recorded state that needs a process, with none
            // left in the scope, is what a stop cut short (or a kill behind the supervisor's
            // back) leaves.
            let contradicted = pids.is_empty()
                && known.is_some_and(|s| STATES_WITH_PROCESSES.contains(&s.state.as_str()));
            let (state, ready, message) = match known {
                Some(k) if contradicted => (
                    "stopped".to_string(),
                    Some(false),
                    Some(format!(
                        "recorded as {}, but no process is left in its scope: it was stopped \
                         outside its supervisor, or a stop did not finish; `ccscope stop` ends \
                         what is left of the run",
                        k.state
                    )),
                ),
                Some(k) => (k.state.clone(), Some(k.ready), k.message.clone()),
                None if pids.is_empty() => ("stopped".to_string(), None, None),
                None => ("running".to_string(), None, None),
            };
            ServiceStatus {
                state,
                ready,
                restarts: known.map(|s| s.restarts),
                message,
                last_trigger: known.and_then(|s| s.trigger.clone()),
                contradicted,
                scopes: mine.iter().map(|(s, _)| s.display_name()).collect(),
                processes: pids.len(),
                uptime_s: oldest.and_then(seen.age),
                ports_listening: ports
                    .iter()
                    .copied()
                    .filter(|p| seen.listening.contains(p))
                    .collect(),
                ports,
                cpu_usec: stats.cpu_usec,
                memory_bytes: stats.memory_bytes,
                service: name,
            }
        })
        .collect();
    StatusReport {
        project: config.project.name.clone(),
        supervisor_pid: seen.supervisor_pid,
        services,
        containers: seen.containers.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contain::BackendKind;

    fn config() -> Config {
        crate::config::parse_config(
            "[project]\nname = \"demo\"\n\
             [services.db]\ncommand = [\"db\"]\nports = [5432]\n\
             [services.web]\ncommand = [\"web\"]\nports = [8080, 8081]\n",
            crate::config::ConfigSource::Profile("test".into()),
            Path::new("/"),
        )
        .unwrap()
    }

    fn scope(service: &str, instance: Option<&str>) -> ScopeHandle {
        ScopeHandle {
            backend: BackendKind::Cgroupfs,
            project: "demo".into(),
            service: service.into(),
            instance: instance.map(str::to_string),
            unit: None,
            cgroup: Some(format!("/cg/{service}{}", instance.unwrap_or("")).into()),
            pgid: None,
            run_id: None,
        }
    }

    #[test]
    fn scopes_counters_and_the_supervisors_word_make_one_line_per_service() {
        let config = config();
        let scopes = vec![
            (scope("web", None), vec![10, 11]),
            (scope("exec", Some("77")), vec![20]),
            (scope("exec", Some("78")), vec![21]),
        ];
        let states = vec![ServiceStateRecord {
            project: "demo".into(),
            service: "web".into(),
            run_id: "r".into(),
            state: "restarting".into(),
            ready: false,
            restarts: 2,
            main_pid: Some(10),
            last_exit: Some("exit code 1".into()),
            message: Some("exited with code 1".into()),
            since_ms: 0,
            updated_at_ms: 0,
            trigger: None,
        }];
        let listening = BTreeSet::from([8081, 9999]);
        let report = assemble(
            &config,
            &Observed {
                supervisor_pid: Some(5),
                states: &states,
                scopes: &scopes,
                listening: &listening,
                start_time: &|pid| Some(1000 + pid as u64),
                age: &|start| Some(5000 - start),
                stats: &|s| ScopeStats {
                    cpu_usec: Some(100),
                    memory_bytes: (s.service == "exec").then_some(7),
                },
                containers: &[],
            },
        );
        assert_eq!(report.supervisor_pid, Some(5));
        let names: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["db", "web", "exec"], "configured first, then found");
        let [db, web, exec] = &report.services[..] else {
            unreachable!()
        };
        assert_eq!(
            (db.state.as_str(), db.processes, db.uptime_s, db.cpu_usec),
            ("stopped", 0, None, None)
        );
        assert_eq!(web.state, "restarting");
        assert!(web.message_matters());
        assert_eq!((web.ready, web.restarts), (Some(false), Some(2)));
        assert_eq!(web.uptime_s, Some(5000 - 1010), "the oldest process counts");
        assert_eq!(web.ports_listening, vec![8081]);
        assert_eq!((web.cpu_usec, web.memory_bytes), (Some(100), None));
        assert_eq!(exec.state, "running", "no word from the supervisor on it");
        assert_eq!(exec.scopes.len(), 2);
        assert_eq!(
            (exec.processes, exec.cpu_usec, exec.memory_bytes),
            (2, Some(200), Some(14)),
            "instances add up"
        );
    }
    #[test]
    fn a_recorded_running_service_whose_scope_is_empty_is_not_running() {
        let config = config();
        let record = |service: &str, state: &str| ServiceStateRecord {
            project: "demo".into(),
            service: service.into(),
            run_id: "r".into(),
            state: state.into(),
            ready: true,
            restarts: 0,
            main_pid: Some(10),
            last_exit: None,
            message: None,
            since_ms: 0,
            updated_at_ms: 0,
            trigger: None,
        };
        // A stop cut short: `db` was killed with its scope, `web` still runs.
        let states = vec![record("db", "running"), record("web", "running")];
        let scopes = vec![(scope("web", None), vec![10])];
        let report = assemble(
            &config,
            &Observed {
                supervisor_pid: Some(5),
                states: &states,
                scopes: &scopes,
                listening: &BTreeSet::new(),
                start_time: &|_| Some(1),
                age: &|_| Some(1),
                stats: &|_| ScopeStats::default(),
                containers: &[],
            },
        );
        let [db, web] = &report.services[..] else {
            unreachable!()
        };
        assert_eq!(
            (db.state.as_str(), db.ready, db.processes),
            ("stopped", Some(false), 0)
        );
        assert!(db.message_matters());
        let message = db.message.as_deref().unwrap();
        assert!(
            message.starts_with("recorded as running, but no process is left in its scope"),
            "{message}"
        );
        assert_eq!((web.state.as_str(), web.ready), ("running", Some(true)));
        assert!(!web.message_matters());
    }
}
