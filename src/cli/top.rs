//! `ccscope top`: the live dashboard of the stack in the terminal (see [`crate::top`]).
//! `--once` prints one look after a one-second sample instead (as JSON with `--json`, else
//! the screen as text): a dashboard itself has no JSON form.

use std::io::IsTerminal;

use clap::Args;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::top::{Setup, TopError};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one look at the stack after a one-second sample and exit, instead of the live
    /// dashboard (with --json, as JSON)
    #[arg(long)]
    pub once: bool,

    /// Watch the system manager's scopes on the system bus (as root) instead of the user
    /// manager's
    #[arg(long)]
    pub system: bool,
}

pub fn run(ctx: &Context, args: &TopArgs) -> Result<i32, CliError> {
    if ctx.global.json && !args.once {
        return Err(CliError::new(
            exit_codes::USAGE,
            "usage",
            "`top` is a terminal dashboard and has no JSON form".to_string(),
        )
        .with_hint("`ccscope top --once --json` prints one look as JSON; `ccscope status --json` the scopes"));
    }
    let config = ctx.load_config()?;
    let setup = setup(ctx, &config, args)?;
    if args.once {
        let board = crate::top::app::once(setup);
        if ctx.global.json {
            print_json(&serde_json::json!({
                "project": board.header.project,
                "header": board.header,
                "live": board.live,
                "services": board.rows,
            }))?;
        } else {
            print!("{}", crate::top::render::text(&board, 120, 40));
        }
        return Ok(exit_codes::SUCCESS);
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            exit_codes::USAGE,
            "usage",
            "`top` needs a terminal on its standard input and output".to_string(),
        )
        .with_hint(
            "`ccscope top --once` prints one look without one; `ccscope status` the scopes",
        ));
    }
    crate::top::run(setup)
        .map_err(|e: TopError| CliError::new(exit_codes::FAILURE, "terminal", e.to_string()))?;
    Ok(exit_codes::SUCCESS)
}

fn setup(ctx: &Context, config: &Config, args: &TopArgs) -> Result<Setup, CliError> {
    let state_dir = ctx.state_dir(Some(config))?.path;
    let registry = ctx.open_registry(Some(config))?;
    let project = config.project.name.clone();
    let finder_dir = state_dir.clone();
    let finder_project = project.clone();
    let find_supervisor = Box::new(move || {
        let holder = crate::supervise::lock::holder(&finder_dir, &finder_project);
        crate::control::find_supervisor(&registry, &finder_project, holder)
            .ok()
            .flatten()
    });
    let term = std::env::var("TERM").unwrap_or_default();
    Ok(Setup {
        services: config
            .services
            .iter()
            .map(|(name, s)| (name.clone(), s.ports.clone()))
            .collect(),
        // Until the supervisor or the scopes name it.
        backend: "-".to_string(),
        bus: match args.system {
            true => crate::contain::BusKind::System,
            false => crate::contain::BusKind::Session,
        },
        colour: super::use_colour(&std::io::stdout()) && term != "dumb",
        logs: crate::audit::logs::Source::detect(&state_dir),
        find_supervisor,
        request_wait: super::verbs::wait_for(config),
        project,
        state_dir,
    })
}
