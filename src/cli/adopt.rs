//! `ccscope adopt PID… | --all [--service NAME]`: moves strays — each with its whole subtree —
//! into their service's scope and registers them (source `adopted`), so that `stop` kills them
//! with the rest. Refuses other users' processes, other projects', foreign ones, and ccscope
//! itself and its caller.

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::all_available;
use crate::discover::adopt::{AdoptRequest, AdoptTargets, adopt};

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The processes to adopt (each with its descendants)
    #[arg(
        value_name = "PID",
        required_unless_present_any = ["all", "container"],
        conflicts_with_all = ["all", "container"]
    )]
    pub pids: Vec<i32>,

    /// Adopt every stray of the project (its stray containers are named, and refused)
    #[arg(long, conflicts_with = "container")]
    pub all: bool,

    /// A stray container of the project to adopt, by id or name (refused with the reason
    /// while no supervisor can take one over)
    #[arg(long, value_name = "ID")]
    pub container: Vec<String>,

    /// The service they belong to [default: the one discovery names]
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    #[command(flatten)]
    pub contain: ContainArgs,
}

pub fn run(ctx: &Context, args: &AdoptArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let request = AdoptRequest {
        targets: if args.all {
            AdoptTargets::AllStrays
        } else if !args.container.is_empty() {
            AdoptTargets::Containers(args.container.clone())
        } else {
            AdoptTargets::Pids(args.pids.clone())
        },
        service: args.service.clone(),
        choice: args.contain.choice(),
        bus: args.contain.bus(),
    };
    let registry = ctx.open_registry(Some(&config))?;
    let report = runtime()?.block_on(async {
        let backends = all_available(request.bus).await;
        adopt(&config, &backends, &registry, &request).await
    })?;
    for warning in &report.warnings {
        ctx.warn(warning);
    }
    if ctx.global.json {
        print_json(&report)?;
    } else {
        for a in &report.adopted {
            println!(
                "adopted pid {} into {} ({}): {} process(es) moved",
                a.pid,
                a.scope,
                a.service,
                a.moved.len()
            );
        }
        for r in &report.refused {
            eprintln!("refused pid {}: {}", r.pid, r.reason);
        }
        for r in &report.containers_refused {
            let id = crate::discover::containers::short_id(&r.id);
            eprintln!("refused container {} ({id}): {}", r.name, r.reason);
        }
        if report.adopted.is_empty()
            && report.refused.is_empty()
            && report.containers_refused.is_empty()
        {
            println!("no stray of project `{}` to adopt", report.project);
        }
    }
    Ok(
        if report.refused.is_empty() && report.containers_refused.is_empty() {
            exit_codes::SUCCESS
        } else {
            exit_codes::REFUSED
        },
    )
}
