//! `ccscope discover` (also `ccscope debug discover-services`): every process of the project
//! — managed, stray or foreign — with why it is classified so.

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::all_available;
use crate::discover::classify::{Class, Classified, discover};

#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Serialize)]
struct DiscoverReport<'a> {
    project: &'a str,
    /// Processes that vanished mid-scan or could not be read.
    skipped: usize,
    processes: &'a [Classified],
}

pub fn run(ctx: &Context, args: &DiscoverArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let (snapshot, _, classified) = runtime()?.block_on(async {
        let backends = all_available(args.contain.bus()).await;
        discover(&config, &backends).await
    });
    if ctx.global.json {
        print_json(&DiscoverReport {
            project: &config.project.name,
            skipped: snapshot.skipped,
            processes: &classified,
        })?;
    } else if !ctx.global.quiet {
        print_table(&config.project.name, snapshot.skipped, &classified);
    }
    Ok(exit_codes::SUCCESS)
}

fn print_table(project: &str, skipped: usize, all: &[Classified]) {
    let count = |c: Class| all.iter().filter(|p| p.class == c).count();
    println!(
        "project `{project}`: {} managed, {} stray, {} foreign ({skipped} process(es) could not be read)",
        count(Class::Managed),
        count(Class::Stray),
        count(Class::Foreign)
    );
    if all.is_empty() {
        return;
    }
    println!(
        "{:<8} {:>7} {:<20} {:<11} {:>8}  COMMAND",
        "CLASS", "PID", "SERVICE", "PORTS", "AGE"
    );
    for p in all {
        let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
        let age = p.age_s.map_or("-".to_string(), crate::proc::human_age);
        println!(
            "{:<8} {:>7} {:<20} {:<11} {:>8}  {}",
            p.class.as_str(),
            p.pid,
            p.service.as_deref().unwrap_or("-"),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            },
            age,
            p.command_line
        );
        println!("{:<8} {:>7} └ {}", "", "", p.reason);
    }
}
