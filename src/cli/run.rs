//! `ccscope run`: start the stack in dependency order behind its readiness probes, keep it
//! running, and stop it in order on Ctrl-C or SIGTERM. `--detach` returns once it is ready and
//! leaves the supervisor running as `ccscope-<project>.service` (or a daemon without systemd).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::{Config, ConfigSource};
use crate::contain::{AnyContainment, BackendChoice, BackendKind, detect};
use crate::supervise::{self, Ended, Progress, ProgressEvent, RunError, RunOptions, ServiceState};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start only these services, and what they depend on
    #[arg(long, value_name = "SERVICE", num_args = 1..)]
    pub only: Vec<String>,

    /// Stop what an earlier run left running, instead of adopting it back
    #[arg(long)]
    pub clean: bool,

    /// Return once the stack is ready; the supervisor runs on as the transient user service
    /// ccscope-<project>.service (a daemon where there is no systemd)
    #[arg(long)]
    pub detach: bool,

    /// Internal: where a detached supervisor reports its start
    #[arg(long, hide = true, value_name = "SOCKET")]
    pub report_to: Option<String>,

    #[command(flatten)]
    pub contain: ContainArgs,
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32, CliError> {
    // A detached supervisor reports to the foreground half first thing, so that even a bad
    // configuration is told there.
    let mut reporter = Reporter::new(ctx, args.report_to.as_deref());
    let result = (|| {
        let config = ctx.load_config()?;
        let state_dir = ctx.state_dir(Some(&config))?;
        if args.detach && args.report_to.is_none() {
            return detach(ctx, args, &config, &state_dir.path);
        }
        supervise_here(ctx, args, &config, &state_dir.path, &mut reporter)
    })();
    if let Err(e) = &result {
        reporter.fail(e);
    }
    result
}

fn supervise_here(
    ctx: &Context,
    args: &RunArgs,
    config: &Config,
    state_dir: &std::path::Path,
    reporter: &mut Reporter,
) -> Result<i32, CliError> {
    let registry = ctx.open_registry(Some(config))?;
    let launcher = crate::launch::current_launcher()
        .map_err(|e| CliError::io("find", std::path::Path::new("/proc/self/exe"), &e))?;
    let options = RunOptions {
        only: args.only.clone(),
        clean: args.clean,
        strict_limits: args.contain.strict_limits,
        launcher,
        state_dir: state_dir.to_path_buf(),
    };
    let rt = runtime()?;
    let local = tokio::task::LocalSet::new();
    let ended = local.block_on(&rt, async {
        let (containment, report) = detect(args.contain.choice(), args.contain.bus()).await?;
        if report.chosen == BackendKind::Pgroup && args.contain.backend.is_none() {
            ctx.warn(crate::contain::PGROUP_LOSSES);
        }
        let mut progress = |p: &Progress| reporter.progress(p);
        supervise::run(config, containment, &registry, options, &mut progress)
            .await
            .map_err(run_error)
    })?;
    reporter.finish_live();
    if ctx.global.json {
        print_json(&ended)?;
    }
    Ok(match ended {
        Ended::Stopped { report } => {
            if !ctx.global.json {
                super::stop::print_human(&report);
            }
            match report.outcome {
                crate::stop::Outcome::Incomplete => exit_codes::STOP_INCOMPLETE,
                _ => exit_codes::SUCCESS,
            }
        }
        Ended::StoodDown => {
            if !ctx.global.json && !ctx.global.quiet {
                println!("`ccscope stop` stopped the stack; the supervisor exits");
            }
            exit_codes::SUCCESS
        }
        Ended::StartFailed {
            service,
            reason,
            last_output,
            report,
        } => {
            if !ctx.global.json {
                eprintln!("error: the stack did not start: service `{service}`: {reason}");
                if last_output.is_empty() {
                    eprintln!("  ({service} printed nothing)");
                } else {
                    eprintln!("  last output of {service}:");
                    for line in &last_output {
                        eprintln!("  | {line}");
                    }
                }
                eprintln!("what had started was stopped:");
                super::stop::print_human(&report);
            }
            exit_codes::START_FAILED
        }
    })
}

fn run_error(e: RunError) -> CliError {
    match e {
        RunError::Locked(crate::supervise::lock::LockError::Held {
            project, holder, ..
        }) => CliError::new(
            exit_codes::REFUSED,
            "locked",
            format!(
                "project `{project}` is already running under ccscope pid {}",
                holder.map_or("?".into(), |p| p.to_string())
            ),
        )
        .with_hint("`ccscope status` shows it; `ccscope stop` stops it"),
        RunError::Locked(e) => CliError::new(exit_codes::STATE, "state", e.to_string()),
        RunError::Refused { message, hint } => {
            CliError::new(exit_codes::REFUSED, "refused", message).with_hint(hint)
        }
        RunError::Unsupported(m) => CliError::new(exit_codes::LAUNCH, "launch", m)
            .with_hint("run it with `--only` the other services, or start the container yourself"),
        RunError::Registry(e) => e.into(),
        RunError::Io(m) => CliError::new(exit_codes::FAILURE, "io", m),
    }
}

/// Says what happens: plain lines (all with -v, the essentials without), a live line on a
/// terminal, JSON lines with --json, or the detached supervisor's report socket.
struct Reporter {
    json: bool,
    verbose: bool,
    quiet: bool,
    /// On a terminal, without -v: one line redrawn until the stack is ready.
    live: Option<BTreeMap<String, ServiceState>>,
    socket: Option<UnixStream>,
}

impl Reporter {
    fn new(ctx: &Context, report_to: Option<&str>) -> Reporter {
        let socket = report_to.and_then(|name| {
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
            UnixStream::connect_addr(&addr).ok()
        });
        let live = (report_to.is_none()
            && !ctx.global.json
            && ctx.global.verbose == 0
            && !ctx.global.quiet
            && std::io::stderr().is_terminal())
        .then(BTreeMap::new);
        Reporter {
            json: ctx.global.json,
            verbose: ctx.global.verbose > 0,
            quiet: ctx.global.quiet,
            live,
            socket,
        }
    }

    fn progress(&mut self, p: &Progress) {
        if let Some(socket) = &mut self.socket {
            let line = serde_json::to_string(p).unwrap_or_default();
            if writeln!(socket, "{line}").is_err() || p.event == ProgressEvent::Ready {
                // The foreground half is gone, or has what it waited for.
                self.socket = None;
            }
            return;
        }
        if self.json {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string(p).unwrap_or_default()
            );
            return;
        }
        if let Some(live) = &mut self.live {
            if let (Some(service), Some(state)) = (&p.service, p.state) {
                live.insert(service.clone(), state);
                let line: Vec<String> = live
                    .iter()
                    .map(|(s, st)| format!("{s} {}", live_mark(*st)))
                    .collect();
                let mut err = std::io::stderr();
                let _ = write!(err, "\r\x1b[2K{}", line.join("  "));
                let _ = err.flush();
            }
            if matches!(
                p.event,
                ProgressEvent::Ready | ProgressEvent::Error | ProgressEvent::Stopping
            ) {
                self.finish_live();
            } else {
                return;
            }
        }
        if self.verbose || important(p) {
            if self.quiet && p.event != ProgressEvent::Error {
                return;
            }
            print_progress(p);
        }
    }

    fn finish_live(&mut self) {
        if self.live.take().is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }

    /// A detached supervisor that could not start tells the foreground half why.
    fn fail(&mut self, e: &CliError) {
        if let Some(socket) = &mut self.socket {
            let line = serde_json::json!({ "event": "failed", "error": e });
            let _ = writeln!(socket, "{line}");
        }
    }
}

fn live_mark(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Running => "✓",
        ServiceState::Failed => "✗",
        ServiceState::Restarting => "↻",
        _ => "…",
    }
}

/// What is shown without -v.
fn important(p: &Progress) -> bool {
    match p.event {
        ProgressEvent::Ready
        | ProgressEvent::Error
        | ProgressEvent::Warning
        | ProgressEvent::Stopping
        | ProgressEvent::Stopped => true,
        ProgressEvent::State => matches!(
            p.state,
            Some(ServiceState::Restarting | ServiceState::Failed | ServiceState::Waiting)
        ),
        _ => false,
    }
}

/// One progress line on stdout. A closed or hung-up terminal costs the line, never the
/// supervisor (a failed write is ignored, not a panic).
fn print_progress(p: &Progress) {
    let at = format!("{:>7.3}s", p.elapsed_ms as f64 / 1000.0);
    let mut out = std::io::stdout();
    let _ = match (&p.service, p.state) {
        (Some(s), Some(state)) => writeln!(out, "{at} {s:<20} {state:<10} {}", p.message),
        (Some(s), None) => writeln!(out, "{at} {s:<20} {:<10} {}", p.event.as_str(), p.message),
        (None, _) => writeln!(out, "{at} {}", p.message),
    };
    let _ = out.flush();
}

// ---- --detach ---------------------------------------------------------------------------------

/// Starts the supervisor in the background and relays its start until the stack is ready.
fn detach(
    ctx: &Context,
    args: &RunArgs,
    config: &Config,
    state_dir: &std::path::Path,
) -> Result<i32, CliError> {
    if let Some(pid) = supervise::lock::holder(state_dir, &config.project.name) {
        return Err(run_error(RunError::Locked(
            supervise::lock::LockError::Held {
                project: config.project.name.clone(),
                holder: Some(pid),
                path: supervise::lock::lock_path(state_dir, &config.project.name),
            },
        )));
    }
    let name = format!(
        "ccscope-detach/{}/{}",
        std::process::id(),
        crate::registry::new_run_id()
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|a| UnixListener::bind_addr(&a))
        .map_err(|e| {
            CliError::new(
                exit_codes::FAILURE,
                "io",
                format!(
                    "could not open a report socket: {}",
                    crate::proc::describe_io(&e)
                ),
            )
        })?;
    let argv = detached_argv(ctx, args, config, state_dir, &name)?;
    let how = start_detached(ctx, args, config, state_dir, &argv)?;
    if !ctx.global.quiet && !ctx.global.json {
        println!("supervisor started as {how}");
    }
    let stream = accept_report(&addr, &how)?;
    let mut reporter = Reporter::new(ctx, None);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let line = match serde_json::from_str::<ReportLine>(&line) {
            Ok(ReportLine::Failed { error }) => {
                let mut err = CliError::new(error.code, "detached", error.message);
                err.hint = error.hint;
                return Err(err);
            }
            Ok(ReportLine::Progress(p)) => p,
            Err(_) => continue,
        };
        let progress = line;
        reporter.progress(&progress);
        match progress.event {
            ProgressEvent::Ready => {
                reporter.finish_live();
                if !ctx.global.quiet && !ctx.global.json {
                    println!("detached: `ccscope status` shows the stack, `ccscope stop` stops it");
                }
                return Ok(exit_codes::SUCCESS);
            }
            ProgressEvent::Stopped => break,
            _ => {}
        }
    }
    reporter.finish_live();
    Err(CliError::new(
        exit_codes::START_FAILED,
        "start",
        "the stack did not start; the detached supervisor stopped it again",
    )
    .with_hint(format!(
        "run it in the foreground to see why: ccscope run{}",
        ctx.global
            .profile
            .as_ref()
            .map_or(String::new(), |p| format!(" --profile {p}"))
    )))
}

/// How long the detached supervisor has to connect back (it does so as its first action).
const REPORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn accept_report(listener: &UnixListener, how: &str) -> Result<UnixStream, CliError> {
    use std::os::fd::AsRawFd;
    let silent = || {
        CliError::new(
            exit_codes::START_FAILED,
            "start",
            format!("the detached supervisor ({how}) did not report within {REPORT_DEADLINE:?}"),
        )
        .with_hint("its own output says why: `journalctl --user -u ccscope-<project>.service`, or the daemon's log file")
    };
    match crate::proc::sys::poll_readable(listener.as_raw_fd(), REPORT_DEADLINE) {
        Ok(true) => listener.accept().map(|(s, _)| s).map_err(|_| silent()),
        _ => Err(silent()),
    }
}

/// One line on the report socket of `run --detach`: progress, or why the detached supervisor
/// could not start.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ReportLine {
    Failed { error: FailedStart },
    Progress(Progress),
}

#[derive(serde::Deserialize)]
struct FailedStart {
    code: i32,
    message: String,
    hint: Option<String>,
}

/// The command line of the detached supervisor: this one, made explicit.
fn detached_argv(
    ctx: &Context,
    args: &RunArgs,
    config: &Config,
    state_dir: &std::path::Path,
    report_to: &str,
) -> Result<Vec<String>, CliError> {
    let exe = crate::launch::current_launcher()
        .map_err(|e| CliError::io("find", std::path::Path::new("/proc/self/exe"), &e))?;
    let mut argv = vec![exe.display().to_string()];
    match &config.source {
        ConfigSource::File(path) => argv.extend(["-f".into(), path.display().to_string()]),
        ConfigSource::Profile(name) => argv.extend(["--profile".into(), name.clone()]),
    }
    argv.extend(["--state-dir".into(), state_dir.display().to_string()]);
    for _ in 0..ctx.global.verbose {
        argv.push("-v".into());
    }
    argv.push("run".into());
    if !args.only.is_empty() {
        argv.push("--only".into());
        argv.extend(args.only.iter().cloned());
    }
    if args.clean {
        argv.push("--clean".into());
    }
    if let Some(b) = args.contain.backend {
        argv.extend(["--backend".into(), b.as_str().into()]);
    }
    if args.contain.system {
        argv.push("--system".into());
    }
    if args.contain.strict_limits {
        argv.push("--strict-limits".into());
    }
    argv.extend(["--report-to".into(), report_to.to_string()]);
    Ok(argv)
}

/// Starts the detached supervisor: a transient user service where systemd is the backend,
/// else a daemon (its own session, stdio on /dev/null, output in the state directory).
fn start_detached(
    ctx: &Context,
    args: &RunArgs,
    config: &Config,
    state_dir: &std::path::Path,
    argv: &[String],
) -> Result<String, CliError> {
    let env: Vec<String> = std::env::vars()
        .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let wants_systemd = matches!(
        args.contain.choice(),
        BackendChoice::Auto | BackendChoice::Forced(BackendKind::Systemd)
    );
    // Everything zbus is used and dropped inside the runtime.
    let unit = runtime()?.block_on(async {
        if !wants_systemd {
            return Ok(None);
        }
        match detect(args.contain.choice(), args.contain.bus()).await {
            Ok((AnyContainment::Systemd(systemd), _)) => systemd
                .start_supervisor_service(&config.project.name, argv, &env, &ctx.cwd)
                .await
                .map(Some)
                .map_err(CliError::from),
            _ => Ok(None),
        }
    })?;
    if let Some(unit) = unit {
        return Ok(unit);
    }
    let log = crate::launch::log_file_path(state_dir, &config.project.name, "supervisor");
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, &e))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| CliError::io("open", &log, &e))?;
    let err = out
        .try_clone()
        .map_err(|e| CliError::io("open", &log, &e))?;
    let mut command = std::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir(&ctx.cwd);
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| CliError::io("start", std::path::Path::new(&argv[0]), &e))?;
    Ok(format!(
        "a daemon, pid {} (its output: {})",
        child.id(),
        log.display()
    ))
}
