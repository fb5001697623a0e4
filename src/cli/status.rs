//! `ccscope status`: each configured service as its scope shows it now: running or not, how
//! many processes, since when, declared ports, and the CPU and memory the cgroup itself
//! counted (where the host provides the counters). It asks the kernel, not a supervisor.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::{Containment, all_available};
use crate::proc::LivenessProbe;
use crate::registry::{RunState, ServiceStateRecord};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    service: String,
    /// With a live supervisor, its word: `pending`, `launching`, `starting`, `running`,
    /// `restarting`, `waiting`, `exited`, `failed`, `stopping`, `stopped`. Without one, what
    /// the scope shows: `running` (it holds processes) or `stopped`.
    state: String,
    /// Whether its readiness probe passed (null without a live supervisor).
    ready: Option<bool>,
    /// Restarts so far in this run (null without a live supervisor).
    restarts: Option<u32>,
    /// The supervisor's last word on it, e.g. why it failed.
    message: Option<String>,
    scopes: Vec<String>,
    processes: usize,
    /// Seconds since its oldest process started.
    uptime_s: Option<u64>,
    ports: Vec<u16>,
    /// Which of its declared ports something listens on now (TCP): a port is healthy only
    /// while it is listening.
    ports_listening: Vec<u16>,
    /// CPU time its cgroups used, from `cpu.stat` (null without a cgroup).
    cpu_usec: Option<u64>,
    /// Memory its cgroups use now, from `memory.current` (null where the memory controller
    /// is not in cgroup v2, as on hybrid hosts).
    memory_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    project: String,
    /// The live supervisor's pid, if one runs the stack.
    supervisor_pid: Option<i32>,
    services: Vec<ServiceStatus>,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let project = config.project.name.clone();
    let registry = ctx.open_registry(Some(&config))?;
    let procfs_now = crate::proc::ProcFs::default();
    let supervisor_pid = registry
        .list_runs(Some(&project))?
        .into_iter()
        .filter(|r| matches!(r.state, RunState::Running | RunState::Stopping))
        .find(|r| {
            procfs_now.is_alive(crate::proc::ProcessIdentity {
                pid: r.supervisor_pid,
                start_time: r.supervisor_start_time,
            })
        })
        .map(|r| r.supervisor_pid);
    let states: Vec<ServiceStateRecord> = match supervisor_pid {
        Some(_) => registry.service_states(&project)?,
        None => Vec::new(),
    };
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
    let procfs = crate::proc::ProcFs::default();
    let listening: std::collections::BTreeSet<u16> =
        crate::discover::sockets::tcp_listeners(Path::new("/proc"))
            .into_iter()
            .map(|l| l.port)
            .collect();
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
            let known = states.iter().find(|s| s.service == name);
            ServiceStatus {
                state: known.map_or_else(
                    || {
                        if pids.is_empty() {
                            "stopped"
                        } else {
                            "running"
                        }
                        .to_string()
                    },
                    |s| s.state.clone(),
                ),
                ready: known.map(|s| s.ready),
                restarts: known.map(|s| s.restarts),
                message: known.and_then(|s| s.message.clone()),
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
                ports_listening: config
                    .services
                    .get(&name)
                    .map(|s| {
                        s.ports
                            .iter()
                            .copied()
                            .filter(|p| listening.contains(p))
                            .collect()
                    })
                    .unwrap_or_default(),
                cpu_usec: sum(&cgroups, |c| stat_value(&c.join("cpu.stat"), "usage_usec")),
                memory_bytes: sum(&cgroups, |c| read_number(&c.join("memory.current"))),
                service: name,
            }
        })
        .collect();
    let report = StatusReport {
        project,
        supervisor_pid,
        services,
    };
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
        if matches!(
            s.state.as_str(),
            "failed" | "restarting" | "waiting" | "stopping"
        ) {
            if let Some(m) = &s.message {
                println!("    └ {m}");
            }
        }
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
