//! `ccscope exec [--service NAME] -- CMD ARGS…`: an ad-hoc command inside the project's
//! containment, registered and marked like any service, so work started by hand (the
//! `python -c …` that used to bypass everything) is never orphaned.

use std::io::IsTerminal;

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::launch::exec::{ExecRequest, exec};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The service the command counts as; a configured service lends it its env, env files,
    /// working directory and limits [default: exec]
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    #[command(flatten)]
    pub contain: ContainArgs,

    /// The command and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

pub fn run(ctx: &Context, args: &ExecArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let registry = ctx.open_registry(Some(&config))?;
    let request = ExecRequest {
        service: args.service.clone(),
        argv: args.command.clone(),
        cwd: ctx.cwd.clone(),
        interactive: std::io::stdin().is_terminal(),
        strict_limits: args.contain.strict_limits,
        choice: args.contain.choice(),
        bus: args.contain.bus(),
    };
    let mut warn = |w: String| ctx.warn(&w);
    let outcome = runtime()?.block_on(exec(&config, &registry, &request, &mut warn))?;
    if ctx.global.json {
        print_json(&outcome)?;
    }
    Ok(outcome.exit_code)
}
