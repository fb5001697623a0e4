//! `ccscope exec [--service NAME] -- CMD ARGS…`: an ad-hoc command inside the project's
//! containment, registered and marked like any service, so work started by hand (the
//! `python -c …` that used to bypass everything) is never orphaned.

use std::os::unix::process::ExitStatusExt;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::{Launch, check_unit_name_part};
use crate::contain::{BackendKind, Containment, detect};
use crate::launch::{LaunchSpec, OutputTarget, current_launcher, launch};
use crate::registry::{NewProcess, new_run_id};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The service the command counts as; a configured service lends it its env, env files,
    /// working directory and limits [default: exec]
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    #[command(flatten)]
    pub contain: ContainArgs,

    /// The command and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

pub fn run(ctx: &Context, args: &ExecArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    let service = args.service.clone().unwrap_or_else(|| "exec".to_string());
    check_unit_name_part(&service).map_err(|why| {
        CliError::usage(format!("invalid service name \"{service}\": {why}"))
            .with_hint("use ASCII letters, digits, `_` or `-`")
    })?;
    let registry = ctx.open_registry(Some(&config))?;
    let configured = config.services.get(&service);
    let launcher = current_launcher()
        .map_err(|e| CliError::io("find", std::path::Path::new("/proc/self/exe"), &e))?;
    let interactive = unsafe { libc::isatty(0) } == 1;
    let spec = LaunchSpec {
        project: config.project.name.clone(),
        service: service.clone(),
        instance: Some(std::process::id().to_string()),
        run_id: new_run_id(),
        argv: args.command.clone(),
        env: configured.map(|s| s.env.clone()).unwrap_or_default(),
        env_files: configured.map(|s| s.env_files.clone()).unwrap_or_default(),
        cwd: Some(
            configured
                .and_then(|s| s.cwd.clone())
                .unwrap_or_else(|| ctx.cwd.clone()),
        ),
        limits: configured.map(|s| s.limits.clone()).unwrap_or_default(),
        output: OutputTarget::Inherit,
        inherit_stdin: true,
        // At a terminal the command shares ccscope's process group, so the terminal's job
        // control and Ctrl-C reach it directly; otherwise it leads its own and ccscope forwards.
        own_process_group: !interactive,
        strict_limits: args.contain.strict_limits,
        launcher,
        tap: false,
    };
    if let Some(s) = configured {
        if matches!(s.launch, Launch::Docker(_)) {
            return Err(CliError::usage(format!(
                "service `{service}` is a docker service; exec runs host commands"
            ))
            .with_hint("pick another --service, or leave it out"));
        }
    }
    runtime()?.block_on(async {
        // Listening before the command starts: a signal sent the moment it runs is forwarded,
        // not fatal to ccscope.
        let signals = Signals::listen()?;
        let (containment, report) = detect(args.contain.choice(), args.contain.bus()).await?;
        if report.chosen == BackendKind::Pgroup && args.contain.backend.is_none() {
            ctx.warn(crate::contain::PGROUP_LOSSES);
        }
        let launched = launch(&containment, &spec).await?;
        for limit in &launched.limits.unenforceable {
            ctx.warn(&format!(
                "service `{service}`: the {} limit is not enforced: {}",
                limit.limit, limit.reason
            ));
        }
        let ports = configured.map(|s| s.ports.clone()).unwrap_or_default();
        let record = launched.record(&spec, ports);
        // The command runs already: a registry that fails now is reported, not a reason to
        // abandon it unwaited.
        if let Err(e) = registry.register(&record) {
            ctx.warn(&format!(
                "the command runs, but could not be registered: {e}"
            ));
        }
        let crate::launch::Launched {
            identity,
            scope,
            mut child,
            ..
        } = launched;
        crate::audit::Event {
            event: "exec.start",
            project: &spec.project,
            service: Some(&spec.service),
            message: format!(
                "started `{}` in {}",
                record.command_line,
                scope.display_name()
            ),
            fields: vec![
                ("CCSCOPE_SCOPE", scope.display_name()),
                ("CCSCOPE_TARGET_PID", identity.pid.to_string()),
            ],
        }
        .record(crate::audit::Priority::Notice);

        let pid = identity.pid;
        let waiter = tokio::task::spawn_blocking(move || child.wait());
        let status = signals.forward_until(pid, !interactive, waiter).await?;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));

        if let Err(e) = registry.unregister(identity) {
            ctx.warn(&format!(
                "could not remove the command's registry record: {e}"
            ));
        }
        let left = containment.processes(&scope).await?;
        if left.is_empty() {
            containment.release(&scope).await?;
        } else {
            // What it left behind stays contained and becomes known to `ps` and `stop`.
            let procfs = crate::proc::ProcFs::default();
            for pid in &left {
                if let Ok(identity) = procfs.identity(*pid) {
                    registry.register(&NewProcess {
                        identity,
                        command_line: procfs.cmdline(*pid).unwrap_or_default(),
                        ports: Vec::new(),
                        ..record.clone()
                    })?;
                }
            }
            ctx.warn(&format!(
                "{} process(es) the command started still run, contained in {} and registered",
                left.len(),
                scope.display_name()
            ));
        }
        if ctx.global.json {
            print_json(&serde_json::json!({
                "exit_code": code,
                "scope": scope,
                "left_running": left,
            }))?;
        }
        Ok(code)
    })
}

/// The termination signals ccscope handles (hence survives) while a command runs.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals, CliError> {
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| {
                CliError::new(
                    exit_codes::FAILURE,
                    "internal",
                    format!("could not handle signals: {e}"),
                )
            })
        };
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            int: listen(SignalKind::interrupt())?,
            quit: listen(SignalKind::quit())?,
        })
    }

    /// Forwards them to the command until it exits; returns its status. At a terminal the
    /// command gets Ctrl-C and Ctrl-\ from the terminal itself, so those are not forwarded.
    async fn forward_until(
        mut self,
        pid: i32,
        forward_interrupts: bool,
        mut waiter: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>,
    ) -> Result<std::process::ExitStatus, CliError> {
        loop {
            let forward = tokio::select! {
                status = &mut waiter => {
                    return status
                        .map_err(|e| CliError::new(exit_codes::FAILURE, "internal", format!("waiting for the command failed: {e}")))?
                        .map_err(|e| CliError::new(exit_codes::FAILURE, "io", format!("waiting for the command failed: {}", crate::proc::describe_io(&e))));
                }
                _ = self.term.recv() => Some(libc::SIGTERM),
                _ = self.hup.recv() => Some(libc::SIGHUP),
                _ = self.int.recv() => forward_interrupts.then_some(libc::SIGINT),
                _ = self.quit.recv() => forward_interrupts.then_some(libc::SIGQUIT),
            };
            if let Some(sig) = forward {
                let _ = crate::proc::sys::kill(pid, sig);
            }
        }
    }
}
