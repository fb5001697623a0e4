//! The project's containers on the Docker daemon, found by label only: `ccscope.project=<p>`
//! (any run, or started by hand with our labels) and `com.docker.compose.project=<name>` of
//! the compose projects the stack lists. Classified as processes are:
//! - **managed**: labelled with the live run's `ccscope.run_id`;
//! - **stray**: ours by label, but of no live run (an earlier run, a SIGKILLed supervisor,
//!   started by hand), or of a listed compose project;
//! - **foreign**: not ours, but publishing a port a service declares.
//!
//! Also the rows `ps` and `status` show: short id, name, image, state, health, published
//! ports, CPU and memory from the stats API, uptime, restarts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::classify::Class;
use crate::config::Config;
use crate::docker::{
    ContainerInfo, Engine, LABEL_COMPOSE_PROJECT, LABEL_PROJECT, LABEL_RUN_ID, Selector,
};
use crate::proc::LivenessProbe;
use crate::registry::{Registry, RunState};

/// Lists by every label the stack owns, each container once; a listing that fails is said
/// in the second list (the others still count).
pub async fn list(engine: &Engine, config: &Config) -> (Vec<ContainerInfo>, Vec<String>) {
    let project = config.project.name.as_str();
    let mut selectors = vec![Selector::Project(project)];
    selectors.extend(
        config
            .project
            .docker_compose_projects
            .iter()
            .map(|c| Selector::Compose(c.as_str())),
    );
    let mut by_id: BTreeMap<String, ContainerInfo> = BTreeMap::new();
    let mut warnings = Vec::new();
    for selector in selectors {
        match engine.list(selector).await {
            Ok(found) => {
                for c in found {
                    by_id.entry(c.id.clone()).or_insert(c);
                }
            }
            Err(e) => warnings.push(format!(
                "could not list the containers of {}: {e}",
                describe(selector)
            )),
        }
    }
    (by_id.into_values().collect(), warnings)
}

fn describe(selector: Selector<'_>) -> String {
    match selector {
        Selector::Project(p) => format!("project `{p}`"),
        Selector::Service { project, service } => format!("service {service} of `{project}`"),
        Selector::Compose(c) => format!("compose project `{c}`"),
        Selector::AnyProject => "every project".to_string(),
        Selector::Publishing(ports) => format!("ports {ports:?}"),
    }
}

/// The containers, anyone's, that publish a host port a service declares: the candidates
/// for `foreign` (ours among them are told apart by [`classify`]).
pub async fn publishing_declared_ports(engine: &Engine, config: &Config) -> Vec<ContainerInfo> {
    let mut ports: Vec<u16> = config
        .services
        .values()
        .flat_map(|s| s.ports.iter().copied())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return Vec::new();
    }
    engine
        .list(Selector::Publishing(&ports))
        .await
        .unwrap_or_default()
}

/// Whether the stack names anything on docker (a container service, a compose project): a
/// daemon that does not answer is worth saying only then.
pub fn uses_docker(config: &Config) -> bool {
    !config.project.docker_compose_projects.is_empty()
        || config
            .services
            .values()
            .any(|s| matches!(s.launch, crate::config::Launch::Docker(_)))
}

/// Whether `c` is the project's by its exact labels (never by its name or image).
pub fn is_ours(config: &Config, c: &ContainerInfo) -> bool {
    c.labels.get(LABEL_PROJECT) == Some(&config.project.name)
        || c.labels
            .get(LABEL_COMPOSE_PROJECT)
            .is_some_and(|p| config.project.docker_compose_projects.contains(p))
}

/// The run id of the project's live run, if a supervisor of it is alive.
pub fn live_run_id(registry: &Registry, project: &str) -> Option<String> {
    let procfs = crate::proc::ProcFs::default();
    registry
        .list_runs(Some(project))
        .ok()?
        .into_iter()
        .filter(|r| matches!(r.state, RunState::Running | RunState::Stopping))
        .find(|r| {
            procfs.is_alive(crate::proc::ProcessIdentity {
                pid: r.supervisor_pid,
                start_time: r.supervisor_start_time,
            })
        })
        .map(|r| r.run_id)
}

/// A container of (or in the way of) the project, and why it is classified so.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifiedContainer {
    pub class: Class,
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    /// Its `ccscope.service` label (managed, stray), or the service whose port it publishes
    /// (foreign).
    pub service: Option<String>,
    pub compose_project: Option<String>,
    pub run_id: Option<String>,
    /// Published host ports.
    pub ports: Vec<u16>,
    pub reason: String,
}

/// Classifies `ours` (listed by label) and `others` (any container that may publish a
/// declared port; ours among them are skipped). `live_run` is the live run's id.
pub fn classify(
    config: &Config,
    ours: &[ContainerInfo],
    others: &[ContainerInfo],
    live_run: Option<&str>,
) -> Vec<ClassifiedContainer> {
    let mut all = Vec::new();
    for c in ours.iter().filter(|c| is_ours(config, c)) {
        let run = c.labels.get(LABEL_RUN_ID).map(String::as_str);
        let compose = c.labels.get(LABEL_COMPOSE_PROJECT);
        let labelled = c.project() == Some(config.project.name.as_str());
        let (class, reason) = match (labelled, run, live_run) {
            (true, Some(run), Some(live)) if run == live => {
                (Class::Managed, format!("labelled with the live run {live}"))
            }
            (true, Some(run), _) => (
                Class::Stray,
                format!(
                    "labelled ccscope.project={}, of run {run}, which is not live",
                    config.project.name
                ),
            ),
            (true, None, _) => (
                Class::Stray,
                format!(
                    "labelled ccscope.project={} by hand (no run id)",
                    config.project.name
                ),
            ),
            (false, _, _) => (
                Class::Stray,
                format!(
                    "of compose project `{}`, which the stack lists",
                    compose.map_or("?", String::as_str)
                ),
            ),
        };
        all.push(entry(c, class, c.service().map(str::to_string), reason));
    }
    let declared: BTreeMap<u16, &str> = config
        .services
        .values()
        .flat_map(|s| s.ports.iter().map(move |p| (*p, s.name.as_str())))
        .collect();
    for c in others.iter().filter(|c| !is_ours(config, c)) {
        if let Some((port, service)) = c
            .ports
            .iter()
            .find_map(|p| declared.get(&p.host).map(|s| (p.host, *s)))
        {
            let reason =
                format!("not this project's, but publishes port {port}, which {service} declares");
            all.push(entry(c, Class::Foreign, Some(service.to_string()), reason));
        }
    }
    all.sort_by(|a, b| (a.class, &a.service, &a.name).cmp(&(b.class, &b.service, &b.name)));
    all
}

fn entry(
    c: &ContainerInfo,
    class: Class,
    service: Option<String>,
    reason: String,
) -> ClassifiedContainer {
    ClassifiedContainer {
        class,
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.clone(),
        state: c.state.clone(),
        service,
        compose_project: c.labels.get(LABEL_COMPOSE_PROJECT).cloned(),
        run_id: c.labels.get(LABEL_RUN_ID).cloned(),
        ports: c.ports.iter().map(|p| p.host).collect(),
        reason,
    }
}

/// One container as `ps` and `status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRow {
    /// The short id (12 characters).
    pub id: String,
    pub name: String,
    pub image: String,
    /// Its `ccscope.project` label (none for a compose project's container).
    pub project: Option<String>,
    pub service: Option<String>,
    pub compose_project: Option<String>,
    pub state: String,
    pub health: Option<String>,
    /// Published `host:container` ports.
    pub ports: Vec<String>,
    /// Host pid of its PID 1 while running.
    pub pid: Option<i32>,
    /// CPU time since it started, from the stats API (null when not running).
    pub cpu_usec: Option<u64>,
    /// Memory in use, from the stats API.
    pub memory_bytes: Option<u64>,
    /// Seconds since its PID 1 started.
    pub uptime_s: Option<u64>,
    /// Restarts the daemon counted (ccscope's own restarts make new containers).
    pub restarts: u64,
}

/// The rows of `containers`, with a stats sample of each running one (asked at once).
pub async fn rows(engine: &Engine, containers: &[ContainerInfo]) -> Vec<ContainerRow> {
    let procfs = crate::proc::ProcFs::default();
    let samples = futures_util::future::join_all(containers.iter().map(|c| async move {
        match c.is_running() {
            true => engine.stats(&c.id).await.ok(),
            false => None,
        }
    }))
    .await;
    containers
        .iter()
        .zip(samples)
        .map(|(c, stats)| ContainerRow {
            id: short_id(&c.id).to_string(),
            name: c.name.clone(),
            image: c.image.clone(),
            project: c.project().map(str::to_string),
            service: c.service().map(str::to_string),
            compose_project: c.labels.get(LABEL_COMPOSE_PROJECT).cloned(),
            state: c.state.clone(),
            health: c.health.clone(),
            ports: c
                .ports
                .iter()
                .map(|p| format!("{}:{}", p.host, p.container))
                .collect(),
            pid: c.pid.filter(|_| c.is_running()),
            cpu_usec: stats.map(|s| s.cpu_ns / 1000),
            memory_bytes: stats.map(|s| s.memory_bytes),
            uptime_s: c
                .pid
                .filter(|_| c.is_running())
                .and_then(|pid| procfs.identity(pid).ok())
                .and_then(|id| crate::proc::process_age(id.start_time)),
            restarts: c.restart_count,
        })
        .collect()
}

/// The project's containers as rows, or why there are none to show: no daemon answers (a
/// host without docker says nothing), or a listing failed.
pub async fn project_rows(config: &Config) -> (Vec<ContainerRow>, Vec<String>) {
    let Ok(engine) = Engine::connect().await else {
        return (Vec::new(), Vec::new());
    };
    let (found, warnings) = list(&engine, config).await;
    (rows(&engine, &found).await, warnings)
}

/// Every project's containers as rows (`ps --all`): those with a `ccscope.project` label.
/// A host without docker has none; a listing that fails is said.
pub async fn every_project_rows() -> (Vec<ContainerRow>, Vec<String>) {
    let Ok(engine) = Engine::connect().await else {
        return (Vec::new(), Vec::new());
    };
    match engine.list(Selector::AnyProject).await {
        Ok(found) => (rows(&engine, &found).await, Vec::new()),
        Err(e) => (
            Vec::new(),
            vec![format!(
                "could not list the containers of every project: {e}"
            )],
        ),
    }
}

/// The 12 characters of a container id people see.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortMapping;

    fn container(name: &str, labels: &[(&str, &str)], ports: &[u16]) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}0123456789abcdef"),
            name: name.into(),
            image: "img".into(),
            state: "running".into(),
            health: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: ports
                .iter()
                .map(|p| PortMapping {
                    host: *p,
                    container: 80,
                })
                .collect(),
            pid: None,
            started_at: None,
            exit_code: None,
            restart_count: 0,
        }
    }

    fn config() -> Config {
        crate::config::parse_config(
            "[project]\nname = \"demo\"\ndocker_compose_projects = [\"otel\"]\n\
             [services.db]\ncommand = [\"db\"]\nports = [8123]\n",
            crate::config::ConfigSource::Profile("test".into()),
            std::path::Path::new("/x"),
        )
        .unwrap()
    }

    #[test]
    fn the_live_runs_containers_are_managed_and_the_rest_of_ours_stray() {
        let config = config();
        let ours = [
            container(
                "live",
                &[("ccscope.project", "demo"), ("ccscope.run_id", "r2")],
                &[],
            ),
            container(
                "old",
                &[("ccscope.project", "demo"), ("ccscope.run_id", "r1")],
                &[],
            ),
            container("byhand", &[("ccscope.project", "demo")], &[]),
            container("otel", &[("com.docker.compose.project", "otel")], &[]),
        ];
        let got = classify(&config, &ours, &[], Some("r2"));
        let class = |name: &str| got.iter().find(|c| c.name == name).map(|c| c.class);
        assert_eq!(class("live"), Some(Class::Managed));
        assert_eq!(class("old"), Some(Class::Stray));
        assert_eq!(class("byhand"), Some(Class::Stray));
        assert_eq!(class("otel"), Some(Class::Stray));
        // Without a live run, nothing is managed.
        let got = classify(&config, &ours, &[], None);
        assert!(got.iter().all(|c| c.class == Class::Stray));
    }

    #[test]
    fn a_container_publishing_a_declared_port_is_foreign_and_others_are_not_listed() {
        let config = config();
        let others = [
            container("clickhouse", &[], &[8123]),
            container("elsewhere", &[("ccscope.project", "other")], &[9000]),
            container("lookalike", &[("com.docker.compose.project", "otelx")], &[]),
        ];
        // A listing that brought back what is not ours classifies none of it as ours.
        let got = classify(&config, &others, &others, None);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].class, Class::Foreign);
        assert_eq!(got[0].name, "clickhouse");
        assert_eq!(got[0].service.as_deref(), Some("db"));
        assert!(got[0].reason.contains("8123"));
    }
}
