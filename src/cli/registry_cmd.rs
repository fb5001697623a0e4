//! `ccscope registry rebuild`: the project's records, made again from what runs — the scopes'
//! processes (source `launched`) and the strays discovery finds (source `discovered`).

use clap::{Args, Subcommand};

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::contain::all_available;
use crate::discover::rebuild::RebuildReport;
use crate::registry::Registry;

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

/// Replaces the project's records with what runs now (every backend is searched: an earlier
/// run may have used another).
pub async fn rebuild(
    config: &Config,
    registry: &Registry,
    bus: crate::contain::BusKind,
) -> Result<RebuildReport, CliError> {
    let backends = all_available(bus).await;
    Ok(crate::discover::rebuild::rebuild(config, &backends, registry).await?)
}
