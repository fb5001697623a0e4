//! `ccscope ps`: every process of the project, wherever it runs: in its scopes (as the kernel
//! says), in the registry, or outside containment but carrying the project's markers; and its
//! containers, by their labels.

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::ConfigError;
use crate::discover::containers::{self, ContainerRow};
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
    /// The project's containers, or every project's with --all (empty without a docker
    /// daemon).
    containers: &'a [ContainerRow],
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
    let listed = config.as_ref().filter(|_| project.is_some());
    let (processes, (boxes, warnings)) = runtime()?.block_on(async {
        let rows = async {
            match listed {
                Some(c) => containers::project_rows(c).await,
                None => containers::every_project_rows().await,
            }
        };
        let (ps, rows) =
            futures_util::future::join(project::ps(project, &registry, args.contain.bus()), rows)
                .await;
        ps.map(|ps| (ps, rows))
    })?;
    for warning in &warnings {
        ctx.warn(warning);
    }
    if ctx.global.json {
        print_json(&PsReport {
            project,
            processes: &processes,
            containers: &boxes,
        })?;
    } else if !ctx.global.quiet {
        if !processes.is_empty() || boxes.is_empty() {
            print_table(project, &processes);
        }
        print_containers(&boxes);
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

/// The containers' table, under the processes': one line each.
pub(super) fn print_containers(rows: &[ContainerRow]) {
    if rows.is_empty() {
        return;
    }
    println!(
        "{:<12}  {:<20}  {:<24}  {:<10}  {:<9}  {:>8}  {:>9}  {:>10}  {:>8}  {:<13}  IMAGE",
        "CONTAINER",
        "SERVICE",
        "NAME",
        "STATE",
        "HEALTH",
        "UPTIME",
        "CPU",
        "MEMORY",
        "RESTARTS",
        "PORTS"
    );
    for c in rows {
        let ports = if c.ports.is_empty() {
            "-".to_string()
        } else {
            c.ports.join(",")
        };
        println!(
            "{:<12}  {:<20}  {:<24}  {:<10}  {:<9}  {:>8}  {:>9}  {:>10}  {:>8}  {:<13}  {}",
            c.id,
            c.service
                .as_deref()
                .or(c.compose_project.as_deref())
                .unwrap_or("-"),
            c.name,
            c.state,
            c.health.as_deref().unwrap_or("-"),
            c.uptime_s.map_or("-".into(), crate::proc::human_age),
            c.cpu_usec
                .map_or("-".into(), |u| format!("{:.2}s", u as f64 / 1e6)),
            c.memory_bytes
                .map_or("-".into(), |m| format!("{:.1}MiB", m as f64 / 1048576.0)),
            c.restarts,
            ports,
            c.image
        );
    }
}
