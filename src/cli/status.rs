//! `ccscope status`: each configured service as its scope shows it now: running or not, how
//! many processes, since when, declared ports, and the CPU and memory the cgroup itself
//! counted (where the host provides the counters), and the project's containers. It asks the
//! kernel and the Docker daemon, not a supervisor.

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::all_available;
use crate::status::{StatusReport, status};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let registry = ctx.open_registry(Some(&config))?;
    let lock_holder =
        crate::supervise::lock::holder(&ctx.state_dir(Some(&config))?.path, &config.project.name);
    let report = runtime()?.block_on(async {
        let backends = all_available(args.contain.bus()).await;
        status(&config, &backends, &registry, lock_holder).await
    })?;
    if ctx.global.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(exit_codes::SUCCESS)
}

fn print_human(r: &StatusReport) {
    match r.supervisor_pid {
        Some(pid) => println!("project `{}`, supervised by pid {pid}", r.project),
        None => println!("project `{}`, no supervisor running", r.project),
    }
    println!(
        "{:<22} {:<10} {:<5} {:>8} {:>5} {:>9} {:>10} {:>10}  PORTS",
        "SERVICE", "STATE", "READY", "RESTARTS", "PIDS", "UPTIME", "CPU", "MEMORY"
    );
    for s in &r.services {
        let uptime = s.uptime_s.map_or("-".into(), |u| format!("{u}s"));
        let cpu = s
            .cpu_usec
            .map_or("-".into(), |c| format!("{:.2}s", c as f64 / 1e6));
        let memory = s
            .memory_bytes
            .map_or("-".into(), |m| format!("{:.1}MiB", m as f64 / 1048576.0));
        let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
        let ready = s.ready.map_or("-", |r| if r { "yes" } else { "no" });
        let restarts = s.restarts.map_or("-".to_string(), |r| r.to_string());
        println!(
            "{:<22} {:<10} {:<5} {:>8} {:>5} {:>9} {:>10} {:>10}  {}",
            s.service,
            s.state,
            ready,
            restarts,
            s.processes,
            uptime,
            cpu,
            memory,
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            }
        );
        if let (true, Some(m)) = (s.message_matters(), &s.message) {
            println!("    └ {m}");
        }
        if let Some(file) = &s.last_trigger {
            println!("    └ last restarted by a change of {file} (watch)");
        }
    }
    if !r.containers.is_empty() {
        println!();
        super::ps::print_containers(&r.containers);
    }
}
