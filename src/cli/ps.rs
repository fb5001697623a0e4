//! `ccscope ps`: every process of the project, wherever it runs: in its scopes (as the kernel
//! says), in the registry, or outside containment but carrying the project's markers.

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::ConfigError;
use crate::discover::project::{self, ProjectProcess};

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Every project's registered processes, not only the current project's
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Serialize)]
struct PsReport<'a> {
    /// The project listed, or null for every project.
    project: Option<&'a str>,
    processes: &'a [ProjectProcess],
}

pub fn run(ctx: &Context, args: &PsArgs) -> Result<i32, CliError> {
    // Without --all, the current project; with no configuration to say which, every project.
    let config = match crate::config::load(&ctx.config_request, &ctx.cwd) {
        Ok(c) => Some(c),
        Err(ConfigError::NotFound { .. }) if !ctx.config_named() => None,
        Err(e) => return Err(e.into()),
    };
    // The configuration may name the state directory, so --all reads it too.
    let registry = ctx.open_registry(config.as_ref())?;
    let project = config
        .as_ref()
        .filter(|_| !args.all)
        .map(|c| c.project.name.as_str());
    let processes = runtime()?.block_on(project::ps(project, &registry, args.contain.bus()))?;
    if ctx.global.json {
        print_json(&PsReport {
            project,
            processes: &processes,
        })?;
    } else if !ctx.global.quiet {
        print_table(project, &processes);
    }
    Ok(exit_codes::SUCCESS)
}

fn print_table(project: Option<&str>, processes: &[ProjectProcess]) {
    if processes.is_empty() {
        match project {
            Some(p) => println!("no processes of project `{p}` run"),
            None => println!("no processes registered"),
        }
        return;
    }
    let width = |f: fn(&ProjectProcess) -> usize, min: usize| {
        processes.iter().map(f).max().unwrap_or(min).max(min)
    };
    let service_width = width(|p| p.service.len(), 7);
    let project_width = width(|p| p.project.len(), 7);
    let with_project = project.is_none();
    if with_project {
        print!("{:<project_width$}  ", "PROJECT");
    }
    println!(
        "{:>7}  {:<service_width$}  {:<10}  {:<6}  {:>7}  {:<11}  COMMAND",
        "PID", "SERVICE", "SOURCE", "SCOPE", "STARTED", "PORTS"
    );
    for p in processes {
        if with_project {
            print!("{:<project_width$}  ", p.project);
        }
        let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
        let ports = if ports.is_empty() {
            "-".to_string()
        } else {
            ports.join(",")
        };
        let age = p.age_s.map_or("-".to_string(), |s| {
            format!("{} ago", crate::proc::human_age(s))
        });
        println!(
            "{:>7}  {:<service_width$}  {:<10}  {:<6}  {:>7}  {:<11}  {}",
            p.pid,
            p.service,
            p.source.as_str(),
            if p.inside_scope { "inside" } else { "OUTSIDE" },
            age,
            ports,
            p.command_line
        );
    }
}
