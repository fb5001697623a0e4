//! The registry made again from what runs: the project's records are replaced by the
//! processes of its scopes (source `launched`) and the strays discovery finds (source
//! `discovered`). `ccscope registry rebuild` runs it, and opening a corrupt registry does.

use serde::Serialize;

use super::classify::{Class, discover};
use crate::config::Config;
use crate::contain::AnyContainment;
use crate::registry::{
    NewProcess, ProcessFilter, ProcessSource, ProcessStatus, Registry, RegistryError,
};

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub project: String,
    /// Old records removed.
    pub removed: usize,
    /// Processes of the project's scopes registered.
    pub managed: usize,
    /// Strays registered.
    pub strays: usize,
}

/// Replaces `config`'s project's records with what `backends` and discovery find now.
pub async fn rebuild(
    config: &Config,
    backends: &[AnyContainment],
    registry: &Registry,
) -> Result<RebuildReport, RegistryError> {
    let project = config.project.name.clone();
    let mut removed = 0;
    for record in registry.list(ProcessFilter::Project(&project))? {
        if registry.unregister(record.identity())? {
            removed += 1;
        }
    }
    let (snapshot, scopes, classified) = discover(config, backends).await;
    let (mut managed, mut strays) = (0, 0);
    for c in classified.iter().filter(|c| c.class != Class::Foreign) {
        let Some(p) = snapshot.processes.get(&c.pid) else {
            continue;
        };
        let scope = scopes
            .iter()
            .map(|(s, _)| s)
            .find(|s| c.scope.as_deref() == Some(s.display_name().as_str()));
        registry.register(&NewProcess {
            identity: p.identity(),
            command_line: p.command_line.clone(),
            project: project.clone(),
            service: c.service.clone().unwrap_or_else(|| "unknown".into()),
            run_id: p.markers.as_ref().and_then(|m| m.run_id.clone()),
            unit: scope.and_then(|s| s.unit.clone()),
            cgroup: scope.and_then(|s| s.cgroup.as_ref().map(|d| d.display().to_string())),
            ports: c.ports.clone(),
            status: ProcessStatus::Running,
            source: if c.class == Class::Managed {
                ProcessSource::Launched
            } else {
                ProcessSource::Discovered
            },
        })?;
        if c.class == Class::Managed {
            managed += 1;
        } else {
            strays += 1;
        }
    }
    Ok(RebuildReport {
        project,
        removed,
        managed,
        strays,
    })
}
