//! `ccscope doctor`: which containment backend this host gets and why, which limits can hold,
//! and whether journald and Docker answer (Docker's API version, rootless or not).

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::doctor::{DoctorReport, Reachability, doctor};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub contain: ContainArgs,
}

pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<i32, CliError> {
    let report = runtime()?.block_on(doctor(args.contain.bus(), args.contain.backend));
    let redirects = super::redirects::doctor_check(ctx);
    if ctx.global.json {
        let mut doc = serde_json::to_value(&report).unwrap_or_default();
        doc["redirects"] = serde_json::to_value(&redirects).unwrap_or_default();
        print_json(&doc)?;
    } else {
        print_human(&report);
        super::redirects::print_doctor(&redirects);
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
    let d = &r.docker;
    match (d.reachable, &d.api_version, d.rootless) {
        (true, Some(api), Some(rootless)) => println!(
            "docker: reachable ({}), API {api}, {}",
            d.detail,
            if rootless {
                "rootless"
            } else {
                "not rootless (the daemon runs as root)"
            }
        ),
        (true, _, _) => println!("docker: reachable ({})", d.detail),
        (false, _, _) => println!("docker: not reachable ({})", d.detail),
    }
    println!(
        "lingering: {} ({})",
        if r.linger.enabled { "on" } else { "off" },
        r.linger.detail
    );
}
