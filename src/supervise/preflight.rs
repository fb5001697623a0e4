//! Before anything starts: stale records and runs are cleaned up, scopes an earlier run left
//! populated are adopted back (same stack definition), stopped (`--clean`) or refused, and so
//! are the project's running containers (same `ccscope.definition` label: the same container,
//! not a duplicate); every declared port must be free — a holder is named, and never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::{Config, Launch};
use crate::contain::{AnyContainment, BackendKind, Containment, ScopeHandle};
use crate::discover::classify::{self, Class};
use crate::docker::{Selector, definition_hash};
use crate::escalate::Force;
use crate::proc::{ProcFs, ProcessIdentity, human_age, process_age};
use crate::registry::{ProcessFilter, Registry};
use crate::stop::StopOptions;

use super::RunError;
use super::container::{Container, Docker};

/// A scope of an earlier run the new run takes over.
pub struct LeftBehind {
    pub scope: ScopeHandle,
    pub processes: usize,
    /// Its registered main process, if the registry knows it.
    pub main: Option<ProcessIdentity>,
}

/// A running container of an earlier run the new run takes over (same definition).
pub struct ContainerLeft {
    pub service: String,
    pub container: Container,
    /// The host identity of its PID 1.
    pub main: ProcessIdentity,
}

/// What the preflight adopted back.
pub struct Adopted {
    pub scopes: Vec<LeftBehind>,
    pub containers: Vec<ContainerLeft>,
}

/// Runs the preflight for the `selected` services. `warn` hears what it did on the way.
pub async fn preflight(
    config: &Config,
    containment: &AnyContainment,
    registry: &Registry,
    docker: Option<&Docker>,
    selected: &BTreeSet<String>,
    clean: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Adopted, RunError> {
    let _ = registry.cleanup_stale(&ProcFs::default());
    let _ = registry.cleanup_stale_runs(&ProcFs::default());
    let project = &config.project.name;
    let mut running: Vec<(ScopeHandle, Vec<i32>)> = Vec::new();
    for (scope, pids) in crate::contain::scopes_with_processes(containment, project).await {
        if pids.is_empty() {
            let _ = containment.release(&scope).await;
        } else {
            running.push((scope, pids));
        }
    }
    let adopted = if running.is_empty() {
        Vec::new()
    } else {
        left_behind(
            config,
            containment,
            registry,
            selected,
            clean,
            running,
            warn,
        )
        .await?
    };
    let containers = match docker {
        Some(docker) => containers_left(config, docker, selected, clean, warn).await?,
        None => Vec::new(),
    };
    let adopted_services: BTreeSet<&str> = adopted
        .iter()
        .map(|a| a.scope.service.as_str())
        .chain(containers.iter().map(|c| c.service.as_str()))
        .collect();
    let publishers = match docker.map(|d| d.engine()) {
        Some(Ok(engine)) => publishers(config, selected, engine).await,
        _ => BTreeMap::new(),
    };
    check_ports(config, selected, &adopted_services, &publishers)?;
    Ok(Adopted {
        scopes: adopted,
        containers,
    })
}

/// The project's containers an earlier run (or a hand) left: a stopped one is removed; a
/// running one is stopped and removed with `--clean`, adopted back when it is a selected
/// service's with the same definition, refused otherwise. Never duplicated. Without a daemon
/// there is nothing to look at (the launch of a container service says why).
async fn containers_left(
    config: &Config,
    docker: &Docker,
    selected: &BTreeSet<String>,
    clean: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<ContainerLeft>, RunError> {
    let Ok(engine) = docker.engine() else {
        return Ok(Vec::new());
    };
    let project = &config.project.name;
    let found = match engine.list(Selector::Project(project)).await {
        Ok(found) => found,
        Err(e) => {
            warn(format!(
                "could not list the project's containers: {}",
                super::container::with_hint(&e)
            ));
            return Ok(Vec::new());
        }
    };
    let mut adopted: Vec<ContainerLeft> = Vec::new();
    let mut refused = Vec::new();
    for info in found {
        let container = Container {
            id: info.id.clone(),
            name: info.name.clone(),
        };
        if !info.is_running() {
            docker.remove(&info.id).await;
            continue;
        }
        let service = info.service().unwrap_or_default().to_string();
        let configured = config.services.get(&service);
        if clean {
            warn(format!(
                "--clean: stopping and removing {} an earlier run left",
                container.describe()
            ));
            let (signal, timeout) = configured
                .map_or((libc::SIGTERM, std::time::Duration::from_secs(10)), |s| {
                    (s.stop_signal.number, s.stop_timeout.0)
                });
            docker.end(&info.id, signal, timeout, &Force::never()).await;
            docker.remove(&info.id).await;
            continue;
        }
        let spec = configured.and_then(|s| match &s.launch {
            Launch::Docker(d) => Some(d),
            _ => None,
        });
        let why = match spec {
            _ if !selected.contains(&service) => Some("not a service this run starts"),
            None => Some("its service is not a docker service any more"),
            Some(spec) if info.definition() != Some(definition_hash(spec).as_str()) => {
                Some("its definition changed since")
            }
            Some(_) if adopted.iter().any(|a| a.service == service) => {
                Some("another container of the service is adopted")
            }
            Some(_) => None,
        };
        let main = info
            .pid
            .and_then(|pid| ProcFs::default().identity(pid).ok());
        match (why, main) {
            (None, Some(main)) => adopted.push(ContainerLeft {
                service,
                container,
                main,
            }),
            (None, None) => refused.push(format!(
                "{} (its main process cannot be read)",
                container.describe()
            )),
            (Some(why), _) => refused.push(format!("{} ({why})", container.describe())),
        }
    }
    if !refused.is_empty() {
        return Err(RunError::Refused {
            message: format!(
                "an earlier run left containers running, and they cannot be adopted back: {}",
                refused.join(", ")
            ),
            hint: "`ccscope run --clean` stops and removes them first; `ccscope stop` stops them"
                .into(),
        });
    }
    Ok(adopted)
}

/// Scopes an earlier run left populated: stopped with `--clean`, adopted back when the stack
/// definition is unchanged, refused otherwise. Never duplicated.
async fn left_behind(
    config: &Config,
    containment: &AnyContainment,
    registry: &Registry,
    selected: &BTreeSet<String>,
    clean: bool,
    running: Vec<(ScopeHandle, Vec<i32>)>,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<LeftBehind>, RunError> {
    let project = &config.project.name;
    let names: Vec<String> = running.iter().map(|(s, _)| s.display_name()).collect();
    if clean {
        warn(format!(
            "--clean: stopping what an earlier run left: {}",
            names.join(", ")
        ));
        let options = StopOptions {
            timeout: None,
            force: false,
            dry_run: false,
        };
        let report = crate::stop::stop(
            config,
            std::slice::from_ref(containment),
            registry,
            &options,
            &Force::never(),
        )
        .await;
        for warning in report.warnings {
            warn(warning);
        }
        if !report.survivors.is_empty() {
            return Err(RunError::Refused {
                message: format!(
                    "--clean could not stop everything an earlier run left: {} process(es) survive",
                    report.survivors.len()
                ),
                hint: "see `ccscope stop` for the survivors".into(),
            });
        }
        return Ok(Vec::new());
    }
    let same_config = registry
        .list_runs(Some(project))?
        .into_iter()
        .find(|r| r.config_hash.is_some())
        .and_then(|r| r.config_hash)
        == Some(super::config_hash(config));
    let pgroup = containment.kind() == BackendKind::Pgroup;
    let adoptable = same_config
        && !pgroup
        && running
            .iter()
            .all(|(s, _)| s.instance.is_none() && selected.contains(&s.service));
    if !adoptable {
        let why = if !same_config {
            "the stack definition changed since (or no run recorded it)"
        } else if pgroup {
            "the process-group backend cannot watch processes it did not start"
        } else {
            "they are not services this run starts"
        };
        return Err(RunError::Refused {
            message: format!(
                "an earlier run left services running, and they cannot be adopted back ({why}): {}",
                names.join(", ")
            ),
            hint: "`ccscope run --clean` stops them first; `ccscope stop` stops them".into(),
        });
    }
    let mut adopted = Vec::new();
    for (scope, pids) in running {
        let main = registry
            .list(ProcessFilter::Service {
                project,
                service: &scope.service,
            })?
            .first()
            .map(|r| r.identity());
        adopted.push(LeftBehind {
            scope,
            processes: pids.len(),
            main,
        });
    }
    Ok(adopted)
}

/// Every declared port of a service about to start must be free; a holder is named, and
/// never touched. An adopted-back service's port is its own.
/// The containers (of anyone) that publish a host port the selected services want, by port,
/// in words: so that a port held by Docker's proxy is named by its container, not an address.
async fn publishers(
    config: &Config,
    selected: &BTreeSet<String>,
    engine: &crate::docker::Engine,
) -> BTreeMap<u16, String> {
    let mut ports: Vec<u16> = selected
        .iter()
        .flat_map(|name| {
            let service = &config.services[name];
            match &service.launch {
                Launch::Docker(d) => d.ports.iter().map(|m| m.host).collect(),
                _ => service.ports.clone(),
            }
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return BTreeMap::new();
    }
    // One call for every port (the Engine ORs the values of one filter).
    let found = engine
        .list(crate::docker::Selector::Publishing(&ports))
        .await
        .unwrap_or_default();
    let mut named = BTreeMap::new();
    for c in found {
        for p in c.ports.iter().filter(|p| ports.contains(&p.host)) {
            named.insert(p.host, format!("container {} (image {})", c.name, c.image));
        }
    }
    named
}

fn check_ports(
    config: &Config,
    selected: &BTreeSet<String>,
    adopted: &BTreeSet<&str>,
    publishers: &BTreeMap<u16, String>,
) -> Result<(), RunError> {
    let wanted: Vec<(&String, u16)> = selected
        .iter()
        .filter(|name| !adopted.contains(name.as_str()))
        .flat_map(|name| {
            let service = &config.services[name];
            let published = match &service.launch {
                Launch::Docker(d) => d.ports.iter().map(|m| m.host).collect(),
                _ => Vec::new(),
            };
            let mut ports = service.ports.clone();
            ports.extend(published.into_iter().filter(|p| !service.ports.contains(p)));
            ports.into_iter().map(move |p| (name, p))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let snapshot = crate::discover::scan::scan(Path::new("/proc"));
    let mount = crate::contain::cgroup::v2_mount().ok().flatten();
    let classified = classify::classify(
        &snapshot,
        config,
        &classify::Scopes {
            scopes: &[],
            v2_mount: mount.as_deref(),
        },
    );
    let mut conflicts = Vec::new();
    let mut strays = Vec::new();
    for (name, port) in wanted {
        // The scan already joined the socket tables to the processes: no second walk.
        let Some((listener, holder)) = snapshot.tcp_holder(port) else {
            continue;
        };
        let Some(pid) = holder else {
            conflicts.push(format!(
                "port {port} needed by {name} is held on {} by a process ccscope cannot see (another user's, or another namespace)",
                listener.address
            ));
            continue;
        };
        let holder = snapshot.processes.get(&pid);
        let command = holder.map_or("?".to_string(), |p| p.command_line.clone());
        // Docker's userland proxy holds the ports of a container: say it is a container's,
        // and where it is (the daemon names no container the project does not own).
        if command.starts_with("/usr/sbin/docker-proxy ") || command.starts_with("docker-proxy ") {
            let address = command
                .split_whitespace()
                .skip_while(|w| *w != "-container-ip")
                .nth(1)
                .unwrap_or("?");
            conflicts.push(match publishers.get(&port) {
                Some(container) => format!(
                    "port {port} needed by {name} is published on {} by {container}, not this project's: ccscope leaves it alone",
                    listener.address
                ),
                None => format!(
                    "port {port} needed by {name} is published on {} by a docker container at {address} (docker-proxy pid {pid}), not this project's: ccscope leaves it alone; `docker ps --filter publish={port}` names it",
                    listener.address
                ),
            });
            continue;
        }
        let age = holder
            .and_then(|p| process_age(p.start_time))
            .map(|s| format!(" {} ago", human_age(s)))
            .unwrap_or_default();
        let class = classified.iter().find(|c| c.pid == pid);
        let whose = match class.map(|c| c.class) {
            Some(Class::Stray) => {
                strays.push(pid);
                let origin = match holder.and_then(|p| p.markers.as_ref()) {
                    Some(_) => "left by an earlier run",
                    None => "started by hand",
                };
                format!("{origin}{age}, stray of this project")
            }
            _ => format!("started{age}, not this project's: ccscope leaves it alone"),
        };
        conflicts.push(format!(
            "port {port} needed by {name} is held on {} by pid {pid} (`{command}`, {whose})",
            listener.address
        ));
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    for conflict in &conflicts {
        crate::audit::Event {
            event: "port.conflict",
            project: &config.project.name,
            service: None,
            message: format!("run refused: {conflict}"),
            fields: Vec::new(),
        }
        .record(crate::audit::Priority::Warning);
    }
    let hint = if strays.is_empty() {
        "stop that process, or change the port in the stack definition".to_string()
    } else {
        let pids: Vec<String> = strays.iter().map(i32::to_string).collect();
        format!("`ccscope adopt {}` or `ccscope stop`", pids.join(" "))
    };
    Err(RunError::Refused {
        message: conflicts.join("; "),
        hint,
    })
}
