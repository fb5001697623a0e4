//! `ccscope adopt PID… | --all [--service NAME]`: moves strays — each with its whole subtree —
//! into their service's scope and registers them (source `adopted`), so that `stop` kills them
//! with the rest. Refuses other users' processes, other projects', foreign ones, and ccscope
//! itself and its caller.

use clap::Args;
use serde::Serialize;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::contain::{
    AnyContainment, BackendKind, Containment, ScopeHandle, ScopeSpec, all_available, detect,
};
use crate::discover::classify::{
    Class, Classified, discover, in_any_ccscope_cgroup, owned_by, protected,
};
use crate::discover::scan::Snapshot;
use crate::registry::{NewProcess, ProcessSource, ProcessStatus, Registry};

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The processes to adopt (each with its descendants)
    #[arg(
        value_name = "PID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub pids: Vec<i32>,

    /// Adopt every stray of the project
    #[arg(long)]
    pub all: bool,

    /// The service they belong to [default: the one discovery names]
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Debug, Serialize)]
struct Adopted {
    pid: i32,
    service: String,
    scope: String,
    /// Every process moved: the pid and its descendants.
    moved: Vec<i32>,
}

#[derive(Debug, Serialize)]
struct Refused {
    pid: i32,
    reason: String,
}

#[derive(Debug, Serialize)]
struct AdoptReport {
    project: String,
    adopted: Vec<Adopted>,
    refused: Vec<Refused>,
}

pub fn run(ctx: &Context, args: &AdoptArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    if let Some(s) = &args.service {
        if !config.services.contains_key(s) {
            return Err(CliError::usage(format!(
                "--service names `{s}`, which is not a service of this stack"
            )));
        }
    }
    let registry = ctx.open_registry(Some(&config))?;
    let report = runtime()?.block_on(adopt(ctx, args, &config, &registry))?;
    if ctx.global.json {
        print_json(&report)?;
    } else {
        for a in &report.adopted {
            println!(
                "adopted pid {} into {} ({}): {} process(es) moved",
                a.pid,
                a.scope,
                a.service,
                a.moved.len()
            );
        }
        for r in &report.refused {
            eprintln!("refused pid {}: {}", r.pid, r.reason);
        }
        if report.adopted.is_empty() && report.refused.is_empty() {
            println!("no stray of project `{}` to adopt", report.project);
        }
    }
    Ok(if report.refused.is_empty() {
        exit_codes::SUCCESS
    } else {
        exit_codes::REFUSED
    })
}

async fn adopt(
    ctx: &Context,
    args: &AdoptArgs,
    config: &Config,
    registry: &Registry,
) -> Result<AdoptReport, CliError> {
    let backends = all_available(args.contain.bus()).await;
    let (snapshot, mut scopes, classified) = discover(config, &backends).await;
    let project = config.project.name.clone();
    let mut report = AdoptReport {
        project: project.clone(),
        adopted: Vec::new(),
        refused: Vec::new(),
    };
    let targets: Vec<i32> = if args.all {
        // Roots only: a stray's descendants move with it.
        classified
            .iter()
            .filter(|c| c.class == Class::Stray && !c.reason.starts_with("descends from"))
            .map(|c| c.pid)
            .collect()
    } else {
        args.pids.clone()
    };
    let protected = protected(&snapshot);
    let me = crate::proc::sys::euid();
    let mut chosen: Option<AnyContainment> = None;
    for pid in targets {
        let found = classified.iter().find(|c| c.pid == pid);
        let service = match check(pid, found, &snapshot, &protected, me, args, &project) {
            Ok(service) => service,
            Err(reason) => {
                report.refused.push(Refused { pid, reason });
                continue;
            }
        };
        // The service's scope where it exists (in whichever backend holds it), else a new one.
        let existing = scopes
            .iter()
            .map(|(s, _)| s)
            .find(|s| s.service == service && s.instance.is_none())
            .cloned();
        let backend = match &existing {
            Some(scope) => backends.iter().find(|b| b.kind() == scope.backend),
            None => {
                if chosen.is_none() {
                    chosen = Some(detect(args.contain.choice(), args.contain.bus()).await?.0);
                }
                chosen.as_ref()
            }
        };
        let Some(backend) = backend else {
            report.refused.push(Refused {
                pid,
                reason: "no containment backend can hold it".into(),
            });
            continue;
        };
        if backend.kind() == BackendKind::Pgroup {
            report.refused.push(Refused {
                pid,
                reason: "the process-group backend cannot take in a running process; adoption needs systemd or cgroupfs".into(),
            });
            continue;
        }
        match move_subtree(
            backend, existing, config, &service, pid, &snapshot, &protected, me,
        )
        .await
        {
            Ok((scope, moved)) => {
                register(registry, &project, &service, &scope, &moved, ctx);
                if !scopes.iter().any(|(s, _)| s == &scope) {
                    // Made for this one: the service's next strays join it.
                    scopes.push((scope.clone(), moved.clone()));
                }
                crate::audit::Event {
                    event: "adopt",
                    project: &project,
                    service: Some(&service),
                    message: format!(
                        "adopted pid {pid} and {} descendant(s) into {}",
                        moved.len().saturating_sub(1),
                        scope.display_name()
                    ),
                    fields: vec![("CCSCOPE_TARGET_PID", pid.to_string())],
                }
                .record(crate::audit::Priority::Notice);
                report.adopted.push(Adopted {
                    pid,
                    service,
                    scope: scope.display_name(),
                    moved,
                });
            }
            Err(reason) => report.refused.push(Refused { pid, reason }),
        }
    }
    Ok(report)
}

/// Whether `pid` may be adopted, and into which service.
fn check(
    pid: i32,
    found: Option<&Classified>,
    snapshot: &Snapshot,
    protected: &std::collections::BTreeSet<i32>,
    me: u32,
    args: &AdoptArgs,
    project: &str,
) -> Result<String, String> {
    if protected.contains(&pid) {
        return Err("it is ccscope itself or its caller".into());
    }
    let Some(process) = snapshot.processes.get(&pid) else {
        return Err("no such process (or it cannot be read)".into());
    };
    if process.uid != me {
        return Err(format!(
            "it belongs to uid {}, not to you (uid {me})",
            process.uid
        ));
    }
    if in_any_ccscope_cgroup(process) {
        return Err(format!(
            "it is inside a scope of ccscope already ({})",
            process.cgroup.as_deref().unwrap_or("?")
        ));
    }
    if let Some(m) = &process.markers {
        if m.project != project {
            return Err(format!("it belongs to project `{}`", m.project));
        }
    }
    match found.map(|c| c.class) {
        Some(Class::Managed) => Err(format!(
            "it is already inside {}",
            found.and_then(|c| c.scope.clone()).unwrap_or_default()
        )),
        Some(Class::Foreign) => Err(format!(
            "it is foreign: {}",
            found.map(|c| c.reason.clone()).unwrap_or_default()
        )),
        Some(Class::Stray) => args
            .service
            .clone()
            .or_else(|| found.and_then(|c| c.service.clone()))
            .ok_or_else(|| "discovery cannot tell its service: name it with --service".into()),
        // Not recognised by discovery: only when the user names the service.
        None => args.service.clone().ok_or_else(|| {
            "discovery does not count it as this project's: name its service with --service to adopt it anyway".into()
        }),
    }
}

/// Moves `pid` and its descendants into the service's scope (made around `pid` if there is
/// none), then once more whatever they forked meanwhile.
#[allow(clippy::too_many_arguments)]
async fn move_subtree(
    backend: &AnyContainment,
    existing: Option<ScopeHandle>,
    config: &Config,
    service: &str,
    pid: i32,
    snapshot: &Snapshot,
    protected: &std::collections::BTreeSet<i32>,
    me: u32,
) -> Result<(ScopeHandle, Vec<i32>), String> {
    // Only what is plainly ours moves: not another user's, not another project's, not a
    // process already in some ccscope scope (nor anything below such a process).
    let project = config.project.name.as_str();
    let eligible = |p: &i32, snap: &Snapshot| {
        !protected.contains(p)
            && snap.processes.get(p).is_some_and(|x| {
                owned_by(x, me)
                    && !in_any_ccscope_cgroup(x)
                    && x.markers.as_ref().is_none_or(|m| m.project == project)
            })
    };
    // The process the scan saw, and no other that got its pid since.
    let same = |p: i32, snap: &Snapshot| {
        snap.processes.get(&p).is_some_and(|x| {
            crate::proc::ProcFs::default()
                .identity(p)
                .is_ok_and(|now| now == x.identity())
        })
    };
    if !same(pid, snapshot) {
        return Err("it exited (or its pid now names another process)".into());
    }
    let mut tree: Vec<i32> = pruned_subtree(snapshot, pid, &|p| eligible(&p, snapshot));
    let limits = config
        .services
        .get(service)
        .map(|s| s.limits.clone())
        .unwrap_or_default();
    let (scope, mut moved) = match existing {
        Some(scope) => (scope, Vec::new()),
        None => {
            let spec = ScopeSpec {
                project: &config.project.name,
                service,
                instance: None,
                run_id: "adopted",
                description: format!(
                    "ccscope {} / {service}: adopted pid {pid}",
                    config.project.name
                ),
                limits: &limits,
            };
            let (scope, _) = backend
                .place(&spec, pid)
                .await
                .map_err(|e| format!("could not make a scope for it: {e}"))?;
            tree.retain(|p| *p != pid);
            (scope, vec![pid])
        }
    };
    let mut current = snapshot.clone();
    for round in 0..3 {
        for p in &tree {
            if !same(*p, &current) {
                continue; // exited, or no longer the process we saw
            }
            match backend.adopt(&scope, *p).await {
                Ok(()) => moved.push(*p),
                // Gone meanwhile: nothing to move.
                Err(_) if !std::path::Path::new(&format!("/proc/{p}")).exists() => {}
                Err(e) => return Err(format!("could not move pid {p}: {e}")),
            }
        }
        // Children forked while we moved their parents.
        let again = crate::discover::scan::scan(std::path::Path::new("/proc"));
        if !same(pid, &again) {
            break;
        }
        // Those moved already sit in our scope now: the walk passes through them.
        tree = pruned_subtree(&again, pid, &|p| moved.contains(&p) || eligible(&p, &again))
            .into_iter()
            .filter(|p| !moved.contains(p))
            .collect();
        current = again;
        if tree.is_empty() || round == 2 {
            break;
        }
    }
    Ok((scope, moved))
}

/// `root` and the descendants reached through processes that `keep` accepts (a rejected
/// process is skipped with everything below it).
fn pruned_subtree(snapshot: &Snapshot, root: i32, keep: &dyn Fn(i32) -> bool) -> Vec<i32> {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for p in snapshot.processes.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut all = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if pid != root && !keep(pid) {
            continue;
        }
        all.push(pid);
        stack.extend(children.get(&pid).cloned().unwrap_or_default());
    }
    all
}

fn register(
    registry: &Registry,
    project: &str,
    service: &str,
    scope: &ScopeHandle,
    moved: &[i32],
    ctx: &Context,
) {
    let procfs = crate::proc::ProcFs::default();
    for pid in moved {
        let Ok(identity) = procfs.identity(*pid) else {
            continue;
        };
        let record = NewProcess {
            identity,
            command_line: procfs.cmdline(*pid).unwrap_or_default(),
            project: project.to_string(),
            service: service.to_string(),
            run_id: None,
            unit: scope.unit.clone(),
            cgroup: scope.cgroup.as_ref().map(|c| c.display().to_string()),
            ports: Vec::new(),
            status: ProcessStatus::Running,
            source: ProcessSource::Adopted,
        };
        if let Err(e) = registry.register(&record) {
            ctx.warn(&format!(
                "pid {pid} was adopted but could not be registered: {e}"
            ));
        }
    }
}
