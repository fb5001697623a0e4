//! `ccscope registry rebuild`: the project's records, made again from what runs — the scopes'
//! processes (source `launched`) and the strays discovery finds (source `discovered`).

use clap::{Args, Subcommand};
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::contain::all_available;
use crate::discover::classify::{Class, discover};
use crate::registry::{NewProcess, ProcessFilter, ProcessSource, ProcessStatus, Registry};

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Rebuild the project's records from the live scopes and discovery
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Debug, Serialize)]
pub struct RebuildReport {
    pub project: String,
    pub removed: usize,
    pub managed: usize,
    pub strays: usize,
}

pub fn run(ctx: &Context, command: &RegistryCommand) -> Result<i32, CliError> {
    let RegistryCommand::Rebuild(args) = command;
    let config = ctx.load_config()?;
    let registry = ctx.open_registry_plain(Some(&config))?;
    let report = runtime()?.block_on(rebuild(&config, &registry, args.contain.bus()))?;
    if ctx.global.json {
        print_json(&report)?;
    } else if !ctx.global.quiet {
        println!(
            "registry of `{}` rebuilt: {} old record(s) removed; {} process(es) in its scopes and {} stray(s) registered",
            report.project, report.removed, report.managed, report.strays
        );
    }
    Ok(exit_codes::SUCCESS)
}

/// Replaces the project's records with what runs now.
pub async fn rebuild(
    config: &Config,
    registry: &Registry,
    bus: crate::contain::BusKind,
) -> Result<RebuildReport, CliError> {
    let project = config.project.name.clone();
    let mut removed = 0;
    for record in registry.list(ProcessFilter::Project(&project))? {
        if registry.unregister(record.identity())? {
            removed += 1;
        }
    }
    let backends = all_available(bus).await;
    let (snapshot, scopes, classified) = discover(config, &backends).await;
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
