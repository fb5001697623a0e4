//! `ccscope enable`, `ccscope disable` and `ccscope projects`: a project as a systemd user
//! unit, `ccscope@<project>.service`, started at login (or at boot, with lingering) and
//! steered with `systemctl --user` like any other.
//!
//! `enable` writes the template `ccscope@.service` into the user's unit directory (only
//! where it is missing or ours), a drop-in for the project (its slice, state directory and
//! stop timeout), records the project in the index, and asks the manager to enable the
//! instance for `default.target` (and, with `--now`, to start it: the job finishes once the
//! stack is ready, since the supervisor says `READY=1` only then). `disable` undoes exactly
//! that: the instance's link and drop-in, and the template once no project uses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use serde_json::json;

use super::context::Context;
use super::errors::CliError;
use super::exit_codes;
use crate::config::{Config, ConfigSource};
use crate::contain::systemd_proxy::{ManagerProxy, ServiceProxy, UnitProxy};
use crate::unit::files::{self, Written};

#[derive(Debug, Args)]
pub struct EnableArgs {
    /// Also start it now, and wait until the stack is ready
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Also stop it now (the orderly stop of every service)
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct ProjectsArgs {}

/// How long a start or stop job may take before `--now` gives up waiting (the unit's own
/// timeouts end it sooner).
const JOB_DEADLINE: Duration = Duration::from_secs(600);

fn bus_error(action: &str, e: &zbus::Error) -> CliError {
    CliError::new(
        exit_codes::CONTAIN,
        "systemd",
        format!("{action}: the systemd user manager answered: {}", bus_text(e)),
    )
    .with_hint(
        "is the user manager running and reachable (`systemctl --user status`, DBUS_SESSION_BUS_ADDRESS)?",
    )
}

/// A bus error's own words, without zbus's type names.
fn bus_text(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(_, Some(text), _) => text.clone(),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::ServiceUnknown(t) | zbus::fdo::Error::Failed(t) => t.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

fn unit_file_error(e: files::UnitFileError) -> CliError {
    let hint = match &e {
        files::UnitFileError::NotOurs { .. } => {
            "that file is someone else's: ccscope leaves it alone; move it away to let `ccscope enable` write its own"
        }
        _ => "check the directory's permissions",
    };
    CliError::new(exit_codes::REFUSED, "unit-file", e.to_string()).with_hint(hint)
}

async fn manager() -> Result<(zbus::Connection, ManagerProxy<'static>), CliError> {
    let connection = zbus::Connection::session()
        .await
        .map_err(|e| bus_error("connect to the session bus", &e))?;
    let manager = ManagerProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| bus_error("reach the user manager", &e))?;
    Ok((connection, manager))
}

/// The configuration file of the project to enable: a built-in profile has none.
fn config_file(config: &Config) -> Result<PathBuf, CliError> {
    match &config.source {
        ConfigSource::File(path) => std::fs::canonicalize(path)
            .map_err(|e| CliError::io("resolve the configuration's path", path, &e)),
        ConfigSource::Profile(name) => Err(CliError::usage(format!(
            "`ccscope enable` needs a configuration file; the built-in profile `{name}` is none"
        ))
        .with_hint("write it to a file first, and enable that with -f FILE")),
    }
}

/// The user's unit directory, which the manager must read units from.
async fn unit_dir(manager: &ManagerProxy<'_>) -> Result<PathBuf, CliError> {
    let dir = files::user_unit_dir(&|k| std::env::var(k).ok()).map_err(unit_file_error)?;
    let searched = manager
        .unit_path()
        .await
        .map_err(|e| bus_error("read the user manager's unit path", &e))?;
    if !searched.iter().any(|p| Path::new(p) == dir) {
        return Err(CliError::new(
            exit_codes::REFUSED,
            "unit-file",
            format!(
                "install the unit into {}: the user manager does not read units from there",
                dir.display()
            ),
        )
        .with_hint(format!(
            "run ccscope with the HOME (or XDG_CONFIG_HOME) of the user manager; it reads: {}",
            searched.join(", ")
        )));
    }
    Ok(dir)
}

/// Starts or stops `unit` and waits for the job to finish; its result (`done`, `failed`…).
async fn run_job(
    connection: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
    start: bool,
) -> Result<String, CliError> {
    let action = if start { "start" } else { "stop" };
    manager
        .subscribe()
        .await
        .map_err(|e| bus_error("subscribe to the user manager's jobs", &e))?;
    let mut removed = manager
        .receive_job_removed()
        .await
        .map_err(|e| bus_error("follow the user manager's jobs", &e))?;
    let job = match start {
        true => manager.start_unit(unit, "replace").await,
        false => manager.stop_unit(unit, "replace").await,
    }
    .map_err(|e| bus_error(&format!("{action} {unit}"), &e))?;
    let _ = connection;
    let wait = async {
        while let Some(signal) = removed.next().await {
            if let Ok(args) = signal.args() {
                if args.job().as_str() == job.as_str() {
                    return Some(args.result().to_string());
                }
            }
        }
        None
    };
    match tokio::time::timeout(JOB_DEADLINE, wait).await {
        Ok(Some(result)) => Ok(result),
        Ok(None) => Err(CliError::new(
            exit_codes::FAILURE,
            "systemd",
            format!("{action} {unit}: the user manager's bus connection closed"),
        )),
        Err(_) => Err(CliError::new(
            exit_codes::FAILURE,
            "systemd",
            format!(
                "{action} {unit}: the job had not finished after {} s",
                JOB_DEADLINE.as_secs()
            ),
        )
        .with_hint(format!("`systemctl --user status {unit}` says where it is"))),
    }
}

/// The unit's active state and its supervisor's status line, as `systemctl status` shows.
async fn unit_state(
    connection: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
) -> Option<(String, String, u32)> {
    let path = manager.load_unit(unit).await.ok()?;
    let u = UnitProxy::builder(connection)
        .path(path.clone())
        .ok()?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .ok()?;
    let s = ServiceProxy::builder(connection)
        .path(path)
        .ok()?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .ok()?;
    Some((
        u.active_state().await.ok()?,
        s.status_text().await.unwrap_or_default(),
        s.main_pid().await.unwrap_or(0),
    ))
}

pub fn enable(ctx: &Context, args: &EnableArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let config_path = config_file(&config)?;
    let state_dir = ctx.state_dir(Some(&config))?.path;
    let project = config.project.name.clone();
    let unit = files::instance(&project);
    let exe = std::env::current_exe().map_err(|e| {
        CliError::io(
            "find ccscope's own executable",
            Path::new("/proc/self/exe"),
            &e,
        )
    })?;
    let stop: Duration = config.services.values().map(|s| s.stop_timeout.0).sum();
    let start: Duration = config
        .services
        .values()
        .filter_map(|s| s.ready.as_ref().map(|p| p.start_timeout.0))
        .sum();
    super::contain_args::runtime()?.block_on(async {
        let (connection, manager) = manager().await?;
        let dir = unit_dir(&manager).await?;
        let template = dir.join(files::TEMPLATE);
        let dropin = files::dropin_path(&dir, &project);
        let template_text = files::template_text(&exe).map_err(unit_file_error)?;
        let template_written =
            files::write_ours(&template, &template_text).map_err(unit_file_error)?;
        let slice = crate::contain::slice_name(&project);
        let dropin_text =
            files::dropin_text(&slice, &state_dir, start, stop).map_err(unit_file_error)?;
        let dropin_written = files::write_ours(&dropin, &dropin_text).map_err(unit_file_error)?;
        manager
            .reload()
            .await
            .map_err(|e| bus_error("reload the user manager's units", &e))?;
        let (_, changes) = manager
            .enable_unit_files(&[unit.as_str()], false, false)
            .await
            .map_err(|e| bus_error(&format!("enable {unit}"), &e))?;
        let registry = ctx.open_registry(Some(&config))?;
        let config_text = config_path.display().to_string();
        if let Err(e) = registry.set_project_unit(&project, Some(&config_text), Some(&unit)) {
            ctx.warn(&format!(
                "{unit} is enabled, but the projects index could not record it: {e}"
            ));
        }
        let mut started = None;
        if args.now {
            let result = run_job(&connection, &manager, &unit, true).await?;
            let state = unit_state(&connection, &manager, &unit).await;
            started = Some((result, state));
        }
        let links: Vec<String> = changes
            .iter()
            .filter(|(kind, _, _)| kind == "symlink")
            .map(|(_, link, target)| format!("{link} → {target}"))
            .collect();
        if ctx.global.json {
            let started_json = started.as_ref().map(|(result, state)| {
                json!({
                    "result": result,
                    "active_state": state.as_ref().map(|s| s.0.clone()),
                    "status": state.as_ref().map(|s| s.1.clone()),
                    "main_pid": state.as_ref().map(|s| s.2),
                })
            });
            println!(
                "{}",
                json!({
                    "project": project,
                    "unit": unit,
                    "config": config_text,
                    "template": {"path": template, "written": template_written.as_str()},
                    "dropin": {"path": dropin, "written": dropin_written.as_str()},
                    "links": links,
                    "started": started_json,
                })
            );
        } else if !ctx.global.quiet {
            println!("enabled {unit} for default.target (project `{project}`, {config_text})");
            say_written(&template, template_written);
            say_written(&dropin, dropin_written);
            for link in &links {
                println!("  linked {link}");
            }
        }
        match started {
            Some((result, state)) if result != "done" => {
                let status = state.map(|s| s.1).filter(|s| !s.is_empty());
                Err(CliError::new(
                    exit_codes::START_FAILED,
                    "start-failed",
                    format!(
                        "{unit} did not start ({result}){}",
                        status.map(|s| format!(": {s}")).unwrap_or_default()
                    ),
                )
                .with_hint(format!(
                    "`journalctl --user -u {unit}` and `ccscope audit` say why; it stays enabled"
                )))
            }
            Some((_, state)) => {
                if !ctx.global.json && !ctx.global.quiet {
                    let (active, status, pid) = state.unwrap_or_default();
                    println!("started {unit}: {active}, supervisor pid {pid}: {status}");
                }
                Ok(exit_codes::SUCCESS)
            }
            None => {
                if !ctx.global.json && !ctx.global.quiet {
                    println!("  start it now with `systemctl --user start {unit}` (or `ccscope enable --now`)");
                }
                Ok(exit_codes::SUCCESS)
            }
        }
    })
}

/// `run --detach` of an enabled project: its unit is started (and waited for, until the stack
/// is ready) when the manager knows it as enabled; None when it does not (the unit file was
/// removed behind ccscope's back), and the caller detaches as it would without a unit.
pub fn start_enabled(ctx: &Context, unit: &str) -> Result<Option<i32>, CliError> {
    super::contain_args::runtime()?.block_on(async {
        let Ok((connection, manager)) = manager().await else {
            return Ok(None);
        };
        match manager.get_unit_file_state(unit).await {
            Ok(state) if state == "enabled" => {}
            _ => return Ok(None),
        }
        let result = run_job(&connection, &manager, unit, true).await?;
        let (active, status, pid) = unit_state(&connection, &manager, unit)
            .await
            .unwrap_or_default();
        if result != "done" {
            return Err(CliError::new(
                exit_codes::START_FAILED,
                "start-failed",
                format!("{unit} did not start ({result}): {status}"),
            )
            .with_hint(format!("`journalctl --user -u {unit}` and `ccscope audit` say why")));
        }
        if ctx.global.json {
            println!(
                "{}",
                json!({"unit": unit, "active_state": active, "status": status, "supervisor_pid": pid})
            );
        } else if !ctx.global.quiet {
            println!("supervisor started as {unit} (pid {pid}): {status}");
        }
        Ok(Some(exit_codes::SUCCESS))
    })
}

fn say_written(path: &Path, written: Written) {
    println!("  {} {}", written.as_str(), path.display());
}

pub fn disable(ctx: &Context, args: &DisableArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let project = config.project.name.clone();
    let unit = files::instance(&project);
    super::contain_args::runtime()?.block_on(async {
        let (connection, manager) = manager().await?;
        let dir = unit_dir(&manager).await?;
        let mut stopped = None;
        if args.now {
            stopped = Some(run_job(&connection, &manager, &unit, false).await?);
        }
        let changes = manager
            .disable_unit_files(&[unit.as_str()], false)
            .await
            .map_err(|e| bus_error(&format!("disable {unit}"), &e))?;
        let dropin = files::dropin_path(&dir, &project);
        let dropin_removed = files::remove_ours(&dropin).map_err(unit_file_error)?;
        if let Some(d) = dropin.parent() {
            // Only when empty: a drop-in of the user's own stays, and so does its directory.
            let _ = std::fs::remove_dir(d);
        }
        // The template goes with the last project that used it.
        let template = dir.join(files::TEMPLATE);
        let others = files::projects_with_dropins(&dir);
        let template_removed = match others.is_empty() {
            true => files::remove_ours(&template).map_err(unit_file_error)?,
            false => false,
        };
        manager
            .reload()
            .await
            .map_err(|e| bus_error("reload the user manager's units", &e))?;
        let registry = ctx.open_registry(Some(&config))?;
        if let Err(e) = registry.set_project_unit(&project, None, None) {
            ctx.warn(&format!(
                "{unit} is disabled, but the projects index could not record it: {e}"
            ));
        }
        let removed_links: Vec<String> = changes
            .iter()
            .filter(|(kind, _, _)| kind == "unlink")
            .map(|(_, link, _)| link.clone())
            .collect();
        if ctx.global.json {
            println!(
                "{}",
                json!({
                    "project": project,
                    "unit": unit,
                    "stopped": stopped,
                    "removed": {
                        "links": removed_links,
                        "dropin": dropin_removed.then(|| dropin.display().to_string()),
                        "template": template_removed.then(|| template.display().to_string()),
                    },
                    "template_kept_for": others,
                })
            );
        } else if !ctx.global.quiet {
            if let Some(result) = &stopped {
                println!("stopped {unit} ({result})");
            }
            println!("disabled {unit} (project `{project}`)");
            for link in &removed_links {
                println!("  removed {link}");
            }
            if dropin_removed {
                println!("  removed {}", dropin.display());
            }
            match template_removed {
                true => println!("  removed {}", template.display()),
                false if !others.is_empty() => {
                    println!("  kept {} for {}", template.display(), others.join(", "))
                }
                false => {}
            }
        }
        Ok(exit_codes::SUCCESS)
    })
}

pub fn projects(ctx: &Context, _args: &ProjectsArgs) -> Result<i32, CliError> {
    let registry = ctx.open_registry(None)?;
    let known = registry.projects()?;
    let runs = registry.list_runs(None)?;
    let procfs = crate::proc::ProcFs::default();
    let alive = |pid: i32, start: u64| procfs.identity(pid).is_ok_and(|id| id.start_time == start);
    let mut rows = Vec::new();
    for p in &known {
        let live = runs.iter().find(|r| {
            r.project == p.project
                && r.state != crate::registry::RunState::Ended
                && alive(r.supervisor_pid, r.supervisor_start_time)
        });
        let state = match (live, &p.last_outcome) {
            (Some(_), _) => "running",
            (None, Some(o)) if o.starts_with("failed") => "failed",
            _ => "stopped",
        };
        rows.push((p, state, live.map(|r| r.supervisor_pid)));
    }
    if ctx.global.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, state, pid)| {
                json!({
                    "project": p.project,
                    "state": state,
                    "supervisor_pid": pid,
                    "config": p.config_path,
                    "unit": p.unit,
                    "last_run": p.last_run_ms.map(|ms| crate::audit::time::rfc3339_micros(
                        std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
                    )),
                    "last_outcome": p.last_outcome,
                })
            })
            .collect();
        println!("{}", json!({ "projects": list }));
        return Ok(exit_codes::SUCCESS);
    }
    if rows.is_empty() {
        println!("no projects yet: `ccscope run` or `ccscope enable` records one");
        return Ok(exit_codes::SUCCESS);
    }
    let width = rows
        .iter()
        .map(|(p, ..)| p.project.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<width$}  {:<8}  {:>7}  {:<30}  CONFIG",
        "PROJECT", "STATE", "PID", "UNIT"
    );
    for (p, state, pid) in &rows {
        println!(
            "{:<width$}  {:<8}  {:>7}  {:<30}  {}",
            p.project,
            state,
            pid.map_or("-".to_string(), |p| p.to_string()),
            p.unit.as_deref().unwrap_or("-"),
            p.config_path.as_deref().unwrap_or("(built-in profile)")
        );
        if let (Some(outcome), "failed") = (&p.last_outcome, *state) {
            println!("{:<width$}  {outcome}", "");
        }
    }
    Ok(exit_codes::SUCCESS)
}
