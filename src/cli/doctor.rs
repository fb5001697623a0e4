//! `ccscope doctor`: which containment backend this host gets and why, which limits can hold,
//! and whether journald and Docker answer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::contain::{BackendKind, Candidate, cgroup, survey};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Serialize)]
struct DoctorReport {
    /// The backend `exec` and `run` would use (or the forced one, if available).
    backend: Option<BackendKind>,
    candidates: Vec<Candidate>,
    cgroup_v2: Option<CgroupReport>,
    limits: LimitSupport,
    journald: Reachability,
    docker: Reachability,
}

#[derive(Serialize)]
struct CgroupReport {
    mount: String,
    controllers: Vec<String>,
}

/// Whether each limit can be enforced through cgroup v2 on this host.
#[derive(Serialize)]
struct LimitSupport {
    memory: bool,
    tasks: bool,
    cpu: bool,
}

#[derive(Serialize)]
struct Reachability {
    reachable: bool,
    detail: String,
}

pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<i32, CliError> {
    let candidates = runtime()?.block_on(survey(args.contain.bus()));
    let backend = match args.contain.backend {
        Some(forced) => candidates
            .iter()
            .find(|c| c.backend == forced && c.available)
            .map(|c| c.backend),
        None => candidates.iter().find(|c| c.available).map(|c| c.backend),
    };
    let cgroup_v2 = cgroup::v2_mount().ok().flatten().map(|mount| CgroupReport {
        controllers: cgroup::Cgroup::at(&mount).controllers().unwrap_or_default(),
        mount: mount.display().to_string(),
    });
    let has = |c: &str| {
        cgroup_v2
            .as_ref()
            .is_some_and(|r| r.controllers.iter().any(|x| x == c))
    };
    let limits = LimitSupport {
        memory: has("memory"),
        tasks: has("pids"),
        cpu: has("cpu"),
    };
    let report = DoctorReport {
        backend,
        candidates,
        cgroup_v2,
        limits,
        journald: journald(),
        docker: docker(),
    };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.backend.is_some() {
        exit_codes::SUCCESS
    } else {
        exit_codes::CONTAIN
    })
}

fn print_human(r: &DoctorReport) {
    match r.backend {
        Some(b) => println!("backend: {}", b.as_str()),
        None => println!("backend: none usable (the forced backend is not available)"),
    }
    for c in &r.candidates {
        let mark = if c.available { "yes" } else { "no " };
        println!("  {:<9} {mark}  {}", c.backend.as_str(), c.detail);
    }
    match &r.cgroup_v2 {
        Some(cg) => println!(
            "cgroup v2: {} (controllers: {})",
            cg.mount,
            if cg.controllers.is_empty() {
                "none".into()
            } else {
                cg.controllers.join(" ")
            }
        ),
        None => println!("cgroup v2: not mounted"),
    }
    let yn = |b: bool| {
        if b {
            "enforceable"
        } else {
            "not enforceable here"
        }
    };
    println!(
        "limits: memory {}, tasks {}, cpu {}",
        yn(r.limits.memory),
        yn(r.limits.tasks),
        yn(r.limits.cpu)
    );
    let say = |name: &str, x: &Reachability| {
        println!(
            "{name}: {} ({})",
            if x.reachable {
                "reachable"
            } else {
                "not reachable"
            },
            x.detail
        )
    };
    say("journald", &r.journald);
    say("docker", &r.docker);
}

fn journald() -> Reachability {
    let socket = crate::audit::journal::JOURNAL_SOCKET;
    match crate::audit::journal::send(
        crate::audit::Priority::Debug,
        "ccscope doctor probe",
        &[("CCSCOPE_EVENT", "doctor")],
    ) {
        Ok(()) => Reachability {
            reachable: true,
            detail: socket.to_string(),
        },
        Err(e) => Reachability {
            reachable: false,
            detail: crate::proc::describe_io(&e),
        },
    }
}

/// GET /_ping on the Engine API socket.
fn docker() -> Reachability {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
    let attempt = || -> std::io::Result<bool> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.") && answer.contains(" 200 "))
    };
    match attempt() {
        Ok(true) => Reachability {
            reachable: true,
            detail: path,
        },
        Ok(false) => Reachability {
            reachable: false,
            detail: format!("{path} answered, but not with 200 OK"),
        },
        Err(e) => Reachability {
            reachable: false,
            detail: format!("{path}: {}", crate::proc::describe_io(&e)),
        },
    }
}
