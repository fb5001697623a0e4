//! `ccscope stop [SERVICE]…`: stop everything of the project (or the services named and what
//! requires them), prove it, and say what happened. Works with no supervisor at all: scopes
//! are found by name, strays by their markers, containers by their labels.

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::duration::{HumanDuration, parse_duration};
use crate::contain::{all_available, detect};
use crate::control::{ProjectStandDown, stand_down_project};
use crate::escalate::{Force, WaitNotice};
use crate::stop::containers::short_id;
use crate::stop::{ContainerSweep, Outcome, ShutdownReport, StopOptions, stop_services, stop_with};

#[derive(Debug, Args)]
#[command(after_help = SELECTION_HELP)]
pub struct StopArgs {
    /// Stop only these services and, after them, every service that requires them; the rest
    /// run on [default: the whole project]
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// How long each service gets to exit after its stop signal [default: its stop_timeout]
    #[arg(long, value_name = "DURATION", value_parser = parse_human_duration)]
    pub timeout: Option<HumanDuration>,

    /// Kill at once, without the graceful phase
    #[arg(long)]
    pub force: bool,

    /// List every scope and process that would be signalled, and why; signal nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Stop the project's containers without removing them
    #[arg(long)]
    pub keep_containers: bool,

    #[command(flatten)]
    pub contain: ContainArgs,
}

const SELECTION_HELP: &str = "\
`ccscope stop SERVICE...` stops those services and their dependents, the others run on.
With no supervisor running it ends their scopes, containers and strays directly.
A name that is not a service of the stack is a usage error (exit 2), and nothing is stopped.";

fn parse_human_duration(text: &str) -> Result<HumanDuration, String> {
    parse_duration(text)
        .map(HumanDuration)
        .map_err(|e| format!("{e}; write it like \"500ms\", \"10s\" or \"2m\""))
}

/// How long an INCOMPLETE stop waits for its alert to be delivered.
const STOP_ALERT_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(ctx: &Context, args: &StopArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    check_services(&config, &args.services, "nothing was stopped")?;
    let selective = !args.services.is_empty();
    let (registry, stood_in) = ctx.open_registry_or_memory(Some(&config))?;
    if selective {
        if let Some(code) = ask_live_supervisor(ctx, &config, &registry, args)? {
            return Ok(code);
        }
    }
    tracing::debug!("stop: configuration and registry open");
    let options = StopOptions {
        timeout: args.timeout.map(|t| t.0),
        force: args.force,
        dry_run: args.dry_run,
    };
    let rt = runtime()?;
    let backends = rt.block_on(async {
        Ok::<_, CliError>(match args.contain.backend {
            Some(_) => vec![detect(args.contain.choice(), args.contain.bus()).await?.0],
            None => all_available(args.contain.bus()).await,
        })
    })?;
    tracing::debug!("stop: backends ready");
    // Step 1: a live supervisor stands down first, so it restarts nothing while we stop. The
    // connection stays open until the stop is done; then the supervisor exits. A stop of
    // some services never gets here with one live (`ask_live_supervisor`), and must not end
    // it.
    let stand_down = if args.dry_run || selective {
        None
    } else {
        // Canonical (the state directory is opened by its canonical path): `/s/x/` is `/s/x`.
        let state_dir = ctx.state_dir(Some(&config))?.path;
        let project = &config.project.name;
        // The processes in the project's scopes, and in the detached supervisor's unit beside
        // them in the project's slice: where a supervisor started from anywhere is found.
        let units = [
            format!(
                "ccscope-{}.service",
                crate::contain::escape_unit_part(project)
            ),
            crate::unit::files::instance(project),
        ];
        let (in_scopes, in_unit) = rt.block_on(async {
            let (mut pids, mut in_unit) = (Vec::new(), Vec::new());
            for (scope, in_scope) in
                crate::contain::scopes_with_processes_in(&backends, project).await
            {
                pids.extend(in_scope);
                if let Some(slice) = scope.cgroup.as_deref().and_then(std::path::Path::parent) {
                    for unit in &units {
                        let unit = crate::contain::cgroup::Cgroup::at(slice.join(unit));
                        in_unit.extend(unit.procs().unwrap_or_default());
                    }
                }
            }
            in_unit.sort_unstable();
            in_unit.dedup();
            (pids, in_unit)
        });
        Some(stand_down_project(&ProjectStandDown {
            state_dir: &state_dir,
            project,
            registry: &registry,
            lock_holder: crate::supervise::lock::holder(&state_dir, project),
            in_scopes: &in_scopes,
            in_unit: &in_unit,
            lock_path: &|dir| crate::supervise::lock::lock_path(dir, project),
            force: args.force,
        })?)
    };
    tracing::debug!("stop: stand-down done");
    crate::proc::fault::point(crate::proc::fault::STOP_STOOD_DOWN);
    for warning in stand_down.iter().flat_map(|s| &s.warnings) {
        ctx.warn(warning);
    }
    // A long grace is told on stderr, for people; --json's report stays alone on stdout.
    let force = match ctx.global.quiet {
        true => Force::never(),
        false => Force::never().with_notice(WaitNotice::stderr(
            "`ccscope stop --force` (from another terminal) kills what is left now",
        )),
    };
    let sweep = ContainerSweep {
        keep: args.keep_containers,
    };
    let mut report = if selective {
        let services = args.services.iter().cloned().collect();
        rt.block_on(stop_services(
            &config, &backends, &registry, &options, &services, sweep, &force,
        ))
    } else {
        rt.block_on(stop_with(
            &config, &backends, &registry, &options, sweep, &force,
        ))
    };
    report.supervisor = stand_down.as_ref().and_then(|s| s.report.clone());
    if let Some(stand_down) = stand_down {
        let empty = report.outcome != Outcome::Incomplete;
        for warning in stand_down.finish(empty) {
            ctx.warn(&warning);
        }
    }
    if stood_in && !args.dry_run && !selective {
        report.warnings.push(tidy_registry(ctx, &config));
    }
    for warning in &report.warnings {
        ctx.warn(warning);
    }
    if !report.not_ours.is_empty() {
        let named: Vec<String> = report
            .not_ours
            .iter()
            .map(|p| format!("pid {} (uid {})", p.pid, p.uid))
            .collect();
        ctx.warn(&format!(
            "{} process(es) of `{}` belong to other users and were left alone: {}",
            report.not_ours.len(),
            report.project,
            named.join(", ")
        ));
    }
    // A host without docker is told once, as a notice: a process-only stop is still whole.
    if !ctx.global.quiet {
        for notice in &report.notices {
            eprintln!("notice: {notice}");
        }
    }
    // What a supervisor's own stop would alert of, this one does too.
    if let (false, Some(reason)) = (args.dry_run, report.incomplete_reason()) {
        let alert = crate::audit::alert::Alert::new(
            crate::audit::alert::AlertKind::StopIncomplete,
            &config.project.name,
            None,
            &reason,
        );
        crate::audit::alert::send_once(&config.project.alerts, alert, STOP_ALERT_FLUSH);
    }
    if ctx.global.json {
        print_json(&report)?;
    } else if !ctx.global.quiet || report.outcome == Outcome::Incomplete {
        print_human(&report);
    }
    Ok(match report.outcome {
        Outcome::Incomplete => exit_codes::STOP_INCOMPLETE,
        _ => exit_codes::SUCCESS,
    })
}

/// Every name in `services` is a service of the stack, or the first that is not is a usage
/// error with the closest name that is: nothing is stopped on a typo.
pub(super) fn check_services(
    config: &crate::config::Config,
    services: &[String],
    nothing_done: &str,
) -> Result<(), CliError> {
    let Some((unknown, near)) = crate::config::graph::first_unknown(config, services) else {
        return Ok(());
    };
    let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
    let hint = crate::suggest::hint_with(near, &known, "services");
    Err(CliError::usage(format!(
        "`{unknown}` is not a service of project `{}`; {nothing_done}",
        config.project.name
    ))
    .with_hint(hint))
}

/// `stop SVC…` with a live supervisor: it must stop them itself (and hold them stopped), or
/// it would restart them behind our back. Some(exit code) once it has answered; None when no
/// supervisor is live, and the stop goes on here, directly.
fn ask_live_supervisor(
    ctx: &Context,
    config: &crate::config::Config,
    registry: &crate::registry::Registry,
    args: &StopArgs,
) -> Result<Option<i32>, CliError> {
    // A dry run changes nothing: it lists what a stop of them would signal, as without one.
    if args.dry_run {
        return Ok(None);
    }
    let request = crate::control::Request::Stop {
        services: args.services.clone(),
    };
    let Some(reply) = super::verbs::ask_with(ctx, config, registry, &request)? else {
        return Ok(None);
    };
    if args.force || args.timeout.is_some() || args.keep_containers {
        ctx.warn("the supervisor stopped them with each service's own stop signal and timeout: --force, --timeout and --keep-containers apply only to a stop without one");
    }
    super::verbs::finish(ctx, &reply).map(Some)
}

pub(super) fn print_human(r: &ShutdownReport) {
    if r.outcome == Outcome::NothingToStop {
        match r.selected.is_empty() {
            true => println!(
                "nothing to stop: no scope, stray, container or record of project `{}`",
                r.project
            ),
            false => println!(
                "nothing to stop: no scope, stray, container or record of {} in project `{}`",
                selection_words(r),
                r.project
            ),
        }
        return;
    }
    let dry = r.outcome == Outcome::DryRun;
    if !r.selected.is_empty() {
        let verb = if dry { "would stop" } else { "stopped" };
        println!("{verb} {}", selection_words(r));
    }
    if let Some(s) = &r.supervisor {
        let resumed = if s.resumed {
            ", resumed from SIGSTOP"
        } else {
            ""
        };
        if s.how == "SIGKILL" {
            println!(
                "  supervisor pid {} killed (it could not stand down{resumed})",
                s.pid
            );
        } else {
            println!(
                "  supervisor pid {} stood down ({}{}{resumed})",
                s.pid,
                s.how,
                if s.acknowledged {
                    ", confirmed"
                } else {
                    ", unconfirmed"
                }
            );
        }
    }
    for s in &r.services {
        let what = if dry {
            format!("would stop {} process(es)", s.processes)
        } else {
            let graceful = s
                .signal
                .map_or("killed (--force)".to_string(), |sig| sig.to_string());
            let end = match (s.killed_by_force && s.signal.is_some(), s.time_to_empty_ms) {
                (true, Some(ms)) => format!(", did not exit in time: killed, empty {ms} ms later"),
                (false, Some(ms)) => format!(", empty in {ms} ms"),
                (_, None) => ", still not empty".to_string(),
            };
            format!("{} process(es): {graceful}{end}", s.processes)
        };
        println!("  {:<20} {:<48} {what}", s.service, s.scope);
    }
    for s in &r.strays {
        let service = s.service.as_deref().unwrap_or("?");
        let action = if dry {
            "would be signalled".to_string()
        } else if s.killed_by_force {
            "SIGTERM, then SIGKILL".to_string()
        } else {
            "SIGTERM".to_string()
        };
        println!(
            "  stray pid {} ({service}) `{}`: {action} — {}",
            s.pid, s.command_line, s.reason
        );
    }
    for c in &r.containers {
        let service = c
            .service
            .as_deref()
            .or(c.compose_project.as_deref().map(|_| "compose"))
            .unwrap_or("?");
        let what = if dry {
            match c.signal {
                Some(sig) => format!("would be stopped ({sig}) and removed"),
                None if c.state == "running" => "would be killed (--force) and removed".into(),
                None => format!("{}: would be removed", c.state),
            }
        } else {
            let stopped = match (c.signal, c.killed, c.time_to_stop_ms) {
                (Some(sig), false, Some(ms)) => format!("{sig}, stopped in {ms} ms"),
                (Some(sig), true, Some(ms)) => {
                    format!("{sig}, did not exit in time: killed, stopped {ms} ms after")
                }
                (None, true, Some(ms)) => format!("killed (--force), stopped in {ms} ms"),
                (_, _, None) if c.error.is_none() => format!("was {}", c.state),
                _ => "not stopped".into(),
            };
            let removed = if c.removed { ", removed" } else { ", kept" };
            let error = c
                .error
                .as_deref()
                .map(|e| format!(" — failed to {e}"))
                .unwrap_or_default();
            format!("{stopped}{removed}{error}")
        };
        println!(
            "  container {} {} ({service}, image {}): {what}",
            short_id(&c.id),
            c.name,
            c.image
        );
    }
    if dry {
        println!("dry run: nothing was signalled");
        return;
    }
    for scope in &r.spared {
        println!("  spared {scope}: it holds ccscope itself or its caller");
    }
    if r.registry_records_removed > 0 {
        println!("registry: {} record(s) removed", r.registry_records_removed);
    }
    match r.outcome {
        Outcome::Complete if !r.selected.is_empty() => println!(
            "COMPLETE: nothing of {} is left; the rest of `{}` runs on ({} ms)",
            r.selected
                .iter()
                .chain(&r.dependents)
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            r.project,
            r.elapsed_ms
        ),
        Outcome::Complete => println!(
            "COMPLETE: nothing of `{}` is left ({} ms)",
            r.project, r.elapsed_ms
        ),
        _ => {
            println!(
                "INCOMPLETE: {} process(es) or container(s) of `{}` survived:",
                r.survivors.len(),
                r.project
            );
            for s in &r.survivors {
                match &s.container {
                    Some(_) => println!("  {}: {}", s.where_, s.command_line),
                    None => println!("  pid {} in {}: {}", s.pid, s.where_, s.command_line),
                }
            }
        }
    }
}

/// `bridge_sync (and dependents: dashboard)`: the services asked for, then those added.
fn selection_words(r: &ShutdownReport) -> String {
    match r.dependents.is_empty() {
        true => r.selected.join(", "),
        false => format!(
            "{} (and dependents: {})",
            r.selected.join(", "),
            r.dependents.join(", ")
        ),
    }
}

/// After a stop that went on without the registry: with the supervisor gone (and its hold on
/// the database with it) the registry may open again, and the records of what ended leave
/// it then. Says which it was.
fn tidy_registry(ctx: &Context, config: &crate::config::Config) -> String {
    let Some(registry) = ctx.try_open_registry(Some(config)) else {
        return "the registry is still unusable: the stop is not recorded there; `ccscope doctor` says why".into();
    };
    let procfs = crate::proc::ProcFs::default();
    let tidied = registry.cleanup_stale(&procfs).and_then(|removed| {
        registry.clear_service_states(&config.project.name)?;
        registry.cleanup_stale_runs(&procfs)?;
        Ok(removed)
    });
    match tidied {
        Ok(removed) => format!(
            "the registry opened again after the stop: {removed} record(s) of ended processes removed"
        ),
        Err(e) => format!("the registry opened again after the stop, but could not be tidied: {e}"),
    }
}
