//! `ccscope ps`: the processes the registry holds.

use clap::Args;
use serde::Serialize;

use super::{Context, print_json};
use crate::config::ConfigError;
use crate::errors::CliError;
use crate::exit_codes;
use crate::registry::{ProcessFilter, ProcessRecord};

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Every project's processes, not only the current project's
    #[arg(long)]
    pub all: bool,
}

#[derive(Serialize)]
struct PsReport<'a> {
    /// The project listed, or null for every project.
    project: Option<&'a str>,
    processes: &'a [ProcessRecord],
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
    // A record is alive only while its (pid, start time) is: the dead are dropped first.
    registry.cleanup_stale(&crate::discover::ProcFs::default())?;
    let project = config
        .as_ref()
        .filter(|_| !args.all)
        .map(|c| c.project.name.as_str());
    let filter = project.map_or(ProcessFilter::All, ProcessFilter::Project);
    let mut processes = registry.list(filter)?;
    // Show what each process runs now: a record made while it was between fork and exec
    // holds its parent's command line.
    let procfs = crate::discover::ProcFs::default();
    for p in &mut processes {
        if procfs.identity(p.pid).is_ok_and(|id| id == p.identity()) {
            if let Ok(now) = procfs.cmdline(p.pid) {
                if !now.is_empty() {
                    p.command_line = now;
                }
            }
        }
    }
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

fn print_table(project: Option<&str>, processes: &[ProcessRecord]) {
    if processes.is_empty() {
        match project {
            Some(p) => println!("no processes registered for project `{p}`"),
            None => println!("no processes registered"),
        }
        return;
    }
    let service_width = processes
        .iter()
        .map(|p| p.service.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let with_project = project.is_none();
    let project_width = processes
        .iter()
        .map(|p| p.project.len())
        .max()
        .unwrap_or(7)
        .max(7);
    if with_project {
        print!("{:<project_width$}  ", "PROJECT");
    }
    println!(
        "{:>7}  {:<service_width$}  {:<8}  {:<10}  {:<11}  COMMAND",
        "PID", "SERVICE", "STATUS", "SOURCE", "PORTS"
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
        println!(
            "{:>7}  {:<service_width$}  {:<8}  {:<10}  {:<11}  {}",
            p.pid, p.service, p.status, p.source, ports, p.command_line
        );
    }
}
