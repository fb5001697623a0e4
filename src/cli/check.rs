//! `ccscope check`: validate the stack definition and print its start plan.

use clap::Args;
use serde::Serialize;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::{Config, ConfigSource, Launch, ProbeCheck, graph};

#[derive(Debug, Args)]
pub struct CheckArgs {}

#[derive(Serialize)]
struct CheckReport<'a> {
    valid: bool,
    source: &'a ConfigSource,
    project: &'a str,
    /// Start order: each inner list is a layer whose services start in parallel.
    layers: Vec<Vec<String>>,
    services: &'a std::collections::BTreeMap<String, crate::config::Service>,
}

pub fn run(ctx: &Context, _args: &CheckArgs) -> Result<i32, CliError> {
    let config = match ctx.load_config() {
        Ok(c) => c,
        Err(err) if ctx.global.json && !err.diagnostics.is_empty() => {
            print_json(&serde_json::json!({ "valid": false, "diagnostics": err.diagnostics }))?;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    let layers = graph::start_layers(&config);
    if ctx.global.json {
        print_json(&CheckReport {
            valid: true,
            source: &config.source,
            project: &config.project.name,
            layers,
            services: &config.services,
        })?;
    } else if !ctx.global.quiet {
        print_human(&config, &layers, ctx.global.verbose > 0);
    }
    Ok(exit_codes::SUCCESS)
}

fn print_human(config: &Config, layers: &[Vec<String>], verbose: bool) {
    let count = config.services.len();
    println!(
        "{} is valid: project `{}`, {count} service{}",
        config.source.display_name(),
        config.project.name,
        if count == 1 { "" } else { "s" }
    );
    if count == 0 {
        return;
    }
    println!("start plan (the services of one layer start in parallel):");
    for (i, layer) in layers.iter().enumerate() {
        println!("  {}. {}", i + 1, layer.join(", "));
    }
    let order: Vec<String> = layers.iter().map(|l| l.join(", ")).collect();
    println!("order: {}", order.join(" → "));
    if verbose {
        for (name, s) in &config.services {
            let launch = match &s.launch {
                Launch::Command { argv } => argv.join(" "),
                Launch::Shell { script } => format!("sh -c {script:?}"),
                Launch::Docker(d) => format!("docker image {}", d.image),
            };
            println!("\n[{name}]\n  runs: {launch}");
            if !s.depends_on.is_empty() {
                let deps: Vec<String> = s
                    .depends_on
                    .iter()
                    .map(|(d, c)| format!("{d} ({})", spelled(c)))
                    .collect();
                println!("  after: {}", deps.join(", "));
            }
            if !s.ports.is_empty() {
                let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
                println!("  ports: {}", ports.join(", "));
            }
            if let Some(ready) = &s.ready {
                println!(
                    "  ready: {} (every {}, start timeout {})",
                    describe_probe(&ready.check),
                    ready.interval,
                    ready.start_timeout
                );
            }
            println!(
                "  restart: {}, stop: {} after {}",
                spelled(&s.restart.policy),
                s.stop_signal.name,
                s.stop_timeout
            );
        }
    }
}

/// A value as ccscope.toml spells it (`on-failure`, `healthy`).
fn spelled(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

fn describe_probe(check: &ProbeCheck) -> String {
    match check {
        ProbeCheck::Tcp { host, port } => format!("tcp {host}:{port}"),
        ProbeCheck::Http { url, status } => format!("http GET {url} → {status}"),
        ProbeCheck::Exec { argv } => format!("exec {}", argv.join(" ")),
        ProbeCheck::Notify => "sd_notify READY=1".to_string(),
        ProbeCheck::Log { pattern } => format!("output matches /{pattern}/"),
    }
}
