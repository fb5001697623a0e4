//! `ccscope status`: each configured service as its scope shows it now: running or not, how
//! many processes, since when, declared ports, and the CPU and memory the cgroup itself
//! counted (where the host provides the counters). It asks the kernel, not a supervisor.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::contain::{Containment, all_available};
use crate::errors::CliError;
use crate::exit_codes;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    service: String,
    /// `running` (its scope holds processes) or `stopped`.
    state: &'static str,
    scopes: Vec<String>,
    processes: usize,
    /// Seconds since its oldest process started.
    uptime_s: Option<u64>,
    ports: Vec<u16>,
    /// CPU time its cgroups used, from `cpu.stat` (null without a cgroup).
    cpu_usec: Option<u64>,
    /// Memory its cgroups use now, from `memory.current` (null where the memory controller
    /// is not in cgroup v2, as on hybrid hosts).
    memory_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    project: String,
    services: Vec<ServiceStatus>,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let project = config.project.name.clone();
    let found = runtime()?.block_on(async {
        let mut found = Vec::new();
        for backend in all_available(args.contain.bus()).await {
            for scope in backend.list(&project).await.unwrap_or_default() {
                let pids = backend.processes(&scope).await.unwrap_or_default();
                found.push((scope, pids));
            }
        }
        found
    });
    let boot = boot_time_s();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let procfs = crate::discover::ProcFs::default();
    let mut names: Vec<String> = config.services.keys().cloned().collect();
    for (scope, _) in &found {
        if !names.contains(&scope.service) {
            names.push(scope.service.clone());
        }
    }
    let services = names
        .into_iter()
        .map(|name| {
            let mine: Vec<_> = found.iter().filter(|(s, _)| s.service == name).collect();
            let pids: Vec<i32> = mine.iter().flat_map(|(_, p)| p.iter().copied()).collect();
            let oldest = pids
                .iter()
                .filter_map(|p| procfs.identity(*p).ok())
                .map(|id| id.start_time)
                .min();
            let cgroups: Vec<&Path> = mine
                .iter()
                .filter_map(|(s, _)| s.cgroup.as_deref())
                .collect();
            ServiceStatus {
                state: if pids.is_empty() {
                    "stopped"
                } else {
                    "running"
                },
                scopes: mine.iter().map(|(s, _)| s.display_name()).collect(),
                processes: pids.len(),
                uptime_s: oldest
                    .zip(boot)
                    .map(|(start, boot)| now.saturating_sub(boot + start / ticks)),
                ports: config
                    .services
                    .get(&name)
                    .map(|s| s.ports.clone())
                    .unwrap_or_default(),
                cpu_usec: sum(&cgroups, |c| stat_value(&c.join("cpu.stat"), "usage_usec")),
                memory_bytes: sum(&cgroups, |c| read_number(&c.join("memory.current"))),
                service: name,
            }
        })
        .collect();
    let report = StatusReport { project, services };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(exit_codes::SUCCESS)
}

fn print_human(r: &StatusReport) {
    println!("project `{}`", r.project);
    println!(
        "{:<22} {:<8} {:>5} {:>9} {:>10} {:>10}  PORTS",
        "SERVICE", "STATE", "PIDS", "UPTIME", "CPU", "MEMORY"
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
        println!(
            "{:<22} {:<8} {:>5} {:>9} {:>10} {:>10}  {}",
            s.service,
            s.state,
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
    }
}

/// Sums a counter over cgroups; None if no cgroup provides it.
fn sum(cgroups: &[&Path], read: impl Fn(&Path) -> Option<u64>) -> Option<u64> {
    cgroups.iter().filter_map(|c| read(c)).reduce(|a, b| a + b)
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` line of a flat-keyed cgroup file such as `cpu.stat`.
fn stat_value(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// When the machine booted, in seconds since the epoch (`btime` of /proc/stat).
fn boot_time_s() -> Option<u64> {
    stat_value(Path::new("/proc/stat"), "btime ")
}
