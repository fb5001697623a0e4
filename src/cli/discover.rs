//! `ccscope discover` (also `ccscope debug discover-services`): every process and container
//! of the project — managed, stray or foreign — with why it is classified so.

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::all_available;
use crate::discover::classify::{Class, Classified, discover};
use crate::discover::containers::{self, ClassifiedContainer, short_id};

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
    /// The project's containers (by label, and its compose projects'), and containers
    /// publishing a declared port.
    containers: &'a [ClassifiedContainer],
    /// Why containers were not looked at (no docker daemon answers), if they were not.
    docker: Option<String>,
}

pub fn run(ctx: &Context, args: &DiscoverArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let live_run = ctx
        .try_open_registry(Some(&config))
        .and_then(|r| containers::live_run_id(&r, &config.project.name));
    let ((snapshot, _, mut classified), (boxes, docker)) = runtime()?.block_on(async {
        let backends = all_available(args.contain.bus()).await;
        futures_util::future::join(
            discover(&config, &backends),
            look_at_containers(&config, live_run.as_deref()),
        )
        .await
    });
    // Docker's userland proxy holding the port one of the project's own containers publishes
    // is that container's, listed below: not a foreign process in the way.
    let published: Vec<u16> = boxes
        .iter()
        .filter(|c| c.class != Class::Foreign)
        .flat_map(|c| c.ports.iter().copied())
        .collect();
    classified.retain(|p| {
        !(p.class == Class::Foreign
            && p.command_line.contains("docker-proxy")
            && !p.ports.is_empty()
            && p.ports.iter().all(|port| published.contains(port)))
    });
    audit_strays(&config.project.name, &classified);
    for warning in docker
        .iter()
        .filter(|_| !ctx.global.json && containers::uses_docker(&config))
    {
        ctx.warn(warning);
    }
    if ctx.global.json {
        print_json(&DiscoverReport {
            project: &config.project.name,
            skipped: snapshot.skipped,
            processes: &classified,
            containers: &boxes,
            docker,
        })?;
    } else if !ctx.global.quiet {
        print_table(&config.project.name, snapshot.skipped, &classified);
        print_containers(&boxes);
    }
    Ok(exit_codes::SUCCESS)
}

/// Strays found are an event of the audit trail (`discover.stray`), so who ran what by a side
/// door is on record beside who stopped it.
fn audit_strays(project: &str, all: &[Classified]) {
    let strays: Vec<String> = all
        .iter()
        .filter(|p| p.class == Class::Stray)
        .map(|p| {
            format!(
                "pid {} ({}): {}",
                p.pid,
                p.service.as_deref().unwrap_or("?"),
                p.command_line
            )
        })
        .collect();
    if strays.is_empty() {
        return;
    }
    crate::audit::Event {
        event: "discover.stray",
        project,
        service: None,
        message: format!("{} stray process(es): {}", strays.len(), strays.join("; ")),
        fields: vec![("CCSCOPE_STRAYS", strays.len().to_string())],
    }
    .record(crate::audit::Priority::Warning);
}

/// The project's containers, classified; or why there are none to show.
async fn look_at_containers(
    config: &crate::config::Config,
    live_run: Option<&str>,
) -> (Vec<ClassifiedContainer>, Option<String>) {
    let engine = match crate::docker::Engine::connect().await {
        Ok(e) => e,
        Err(e) => return (Vec::new(), Some(format!("containers not looked at: {e}"))),
    };
    let (found, failed) = containers::list(&engine, config).await;
    let why = (!failed.is_empty()).then(|| failed.join("; "));
    let others = containers::publishing_declared_ports(&engine, config).await;
    (containers::classify(config, &found, &others, live_run), why)
}

fn print_containers(all: &[ClassifiedContainer]) {
    if all.is_empty() {
        return;
    }
    println!(
        "{:<8} {:<12} {:<20} {:<24} {:<10}  IMAGE",
        "CLASS", "CONTAINER", "SERVICE", "NAME", "STATE"
    );
    for c in all {
        println!(
            "{:<8} {:<12} {:<20} {:<24} {:<10}  {}",
            c.class.as_str(),
            short_id(&c.id),
            c.service
                .as_deref()
                .or(c.compose_project.as_deref())
                .unwrap_or("-"),
            c.name,
            c.state,
            c.image
        );
        println!("{:<8} {:<12} └ {}", "", "", c.reason);
    }
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
