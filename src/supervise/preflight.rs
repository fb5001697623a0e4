//! Before anything starts: stale records and runs are cleaned up, scopes an earlier run left
//! populated are adopted back (same stack definition), stopped (`--clean`) or refused, and
//! every declared port must be free — a holder is named, and never touched.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::Config;
use crate::contain::{AnyContainment, BackendKind, Containment, ScopeHandle};
use crate::discover::classify::{self, Class};
use crate::escalate::Force;
use crate::proc::{ProcFs, ProcessIdentity, human_age, process_age};
use crate::registry::{ProcessFilter, Registry};
use crate::stop::StopOptions;

use super::RunError;

/// A scope of an earlier run the new run takes over.
pub struct LeftBehind {
    pub scope: ScopeHandle,
    pub processes: usize,
    /// Its registered main process, if the registry knows it.
    pub main: Option<ProcessIdentity>,
}

/// Runs the preflight for the `selected` services. `warn` hears what it did on the way.
pub async fn preflight(
    config: &Config,
    containment: &AnyContainment,
    registry: &Registry,
    selected: &BTreeSet<String>,
    clean: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<LeftBehind>, RunError> {
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
    let adopted_services: BTreeSet<&str> =
        adopted.iter().map(|a| a.scope.service.as_str()).collect();
    check_ports(config, selected, &adopted_services)?;
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
fn check_ports(
    config: &Config,
    selected: &BTreeSet<String>,
    adopted: &BTreeSet<&str>,
) -> Result<(), RunError> {
    let wanted: Vec<(&String, u16)> = selected
        .iter()
        .filter(|name| !adopted.contains(name.as_str()))
        .flat_map(|name| config.services[name].ports.iter().map(move |p| (name, *p)))
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
            conflicts.push(format!(
                "port {port} needed by {name} is published on {} by a docker container at {address} (docker-proxy pid {pid}), not this project's: ccscope leaves it alone; `docker ps --filter publish={port}` names it",
                listener.address
            ));
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
