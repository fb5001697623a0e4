//! `ccscope check`: validate the stack definition and print its start plan. The services' env
//! files are read and parsed too, as `run` will (other commands load the configuration without
//! them: a broken `.env` must not stop `stop`).

use clap::Args;
use serde::Serialize;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::{
    Config, ConfigError, ConfigSource, Diagnostic, EnvFileError, Launch, ProbeCheck, graph,
    read_env_file,
};

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
    let config = match ctx
        .load_config()
        .and_then(|c| check_env_files(&c).map(|()| c))
    {
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

/// Every env file of the services, read and parsed as `run` does, each once though several
/// services name it. A line that does not parse is a diagnostic at the file's line and column;
/// a file that cannot be read at all (missing, not a regular file, too large) has no line to
/// point at and is an error of its own, said once the lines of the others are right.
fn check_env_files(config: &Config) -> Result<(), CliError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut diagnostics = Vec::new();
    let mut unreadable = None;
    for (name, service) in &config.services {
        for path in &service.env_files {
            if !seen.insert(path) {
                continue;
            }
            let Err(e) = read_env_file(path) else {
                continue;
            };
            let hint = e.hint();
            match e {
                EnvFileError::Syntax { location, reason } => diagnostics.push(Diagnostic {
                    location,
                    message: format!("{reason} (an env_file of service `{name}`)"),
                    hint: Some(hint),
                }),
                other => {
                    unreadable.get_or_insert((name, other, hint));
                }
            }
        }
    }
    if !diagnostics.is_empty() {
        return Err(ConfigError::Invalid { diagnostics }.into());
    }
    match unreadable {
        Some((name, e, hint)) => Err(CliError::new(
            exit_codes::CONFIG,
            "env_file_unreadable",
            format!("service `{name}`: {e}"),
        )
        .with_hint(hint)),
        None => Ok(()),
    }
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
        ProbeCheck::DockerHealthy => "docker HEALTHCHECK healthy".to_string(),
    }
}
