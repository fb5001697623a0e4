//! `ccscope run`: start the stack in dependency order behind its readiness probes, keep it
//! running, and stop it in order on Ctrl-C or SIGTERM. `--detach` returns once it is ready and
//! leaves the supervisor running as `ccscope-<project>.service` (or a daemon without systemd).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use clap::Args;

use super::contain_args::{ContainArgs, runtime};
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::contain::{BackendKind, detect};
use crate::supervise::detach::{self, DetachRequest, FailedStart, ReportLine, ReportSocket};
use crate::supervise::{self, Ended, Progress, ProgressEvent, RunOptions, ServiceState};

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

    /// Set by `start` (`run --only … --detach` where no supervisor runs), whose own command
    /// line is not a `run`'s: the detached supervisor's is made from these options instead.
    #[arg(skip)]
    pub not_from_the_command_line: bool,
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32, CliError> {
    // A detached supervisor reports to the foreground half first thing, so that even a bad
    // configuration is told there.
    let mut reporter = Reporter::new(ctx, args.report_to.as_deref());
    let result = (|| {
        let config = ctx.load_config()?;
        let state_dir = ctx.state_dir(Some(&config))?;
        if !args.only.is_empty() && args.report_to.is_none() {
            // A supervisor runs the project already: the services are handed to it, so that
            // a second way of starting them stays orchestrated.
            super::verbs::check_names(&config, &args.only)?;
            let request = crate::control::Request::Start {
                services: args.only.clone(),
            };
            if let Some(reply) = super::verbs::ask(ctx, &config, &request)? {
                if !ctx.global.json && !ctx.global.quiet {
                    println!(
                        "project `{}` runs under a supervisor already (pid {}): {} handed to it",
                        config.project.name,
                        reply.supervisor_pid,
                        args.only.join(", ")
                    );
                }
                return super::verbs::finish(ctx, &reply);
            }
        }
        if args.detach && args.report_to.is_none() {
            return run_detached(ctx, args, &config, &state_dir.path);
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
        config_request: ctx.config_request.clone(),
        cwd: ctx.cwd.clone(),
        bus: args.contain.bus(),
    };
    let rt = runtime()?;
    let local = tokio::task::LocalSet::new();
    let ended = local.block_on(&rt, async {
        let (containment, report) = detect(args.contain.choice(), args.contain.bus()).await?;
        if report.chosen == BackendKind::Pgroup && args.contain.backend.is_none() {
            ctx.warn(crate::contain::PGROUP_LOSSES);
        }
        let mut progress = |p: &Progress| reporter.progress(p);
        Ok::<_, CliError>(
            supervise::run(config, containment, &registry, options, &mut progress).await?,
        )
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

/// Says what happens: plain lines (all with -v, the essentials without), a live line on a
/// terminal, JSON lines with --json, or the detached supervisor's report socket.
struct Reporter {
    json: bool,
    verbose: bool,
    quiet: bool,
    /// On a terminal, without -v: one line redrawn until the stack is ready.
    live: Option<BTreeMap<String, ServiceState>>,
    socket: Option<ReportSocket>,
}

impl Reporter {
    fn new(ctx: &Context, report_to: Option<&str>) -> Reporter {
        let socket = report_to.and_then(ReportSocket::connect);
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
            if !socket.progress(p) {
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
            socket.failed(FailedStart {
                code: e.code,
                kind: e.kind.to_string(),
                message: e.message.clone(),
                hint: e.hint.clone(),
            });
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
fn run_detached(
    ctx: &Context,
    args: &RunArgs,
    config: &Config,
    state_dir: &std::path::Path,
) -> Result<i32, CliError> {
    // The state directory is made (and checked) as every command makes it: the report socket
    // is a file in it.
    let registry = ctx.open_registry(Some(config))?;
    // A project enabled as ccscope@<project>.service runs as that unit: the same supervisor
    // `systemctl --user start` would start, ready when the unit is active.
    let enabled = registry.project(&config.project.name)?.and_then(|p| p.unit);
    drop(registry);
    if let Some(unit) = enabled {
        if let Some(code) = super::unit::start_enabled(ctx, &unit)? {
            return Ok(code);
        }
    }
    let request = DetachRequest {
        project: config.project.name.clone(),
        state_dir: state_dir.to_path_buf(),
        cwd: ctx.cwd.clone(),
        args: match args.not_from_the_command_line {
            false => std::env::args_os().collect(),
            true => run_argv(ctx, args),
        },
        choice: args.contain.choice(),
        bus: args.contain.bus(),
    };
    // Everything zbus is used and dropped inside this runtime.
    let detached = runtime()?.block_on(detach::start(&request))?;
    if !ctx.global.quiet && !ctx.global.json {
        println!("supervisor started as {}", detached.how);
    }
    let mut reporter = Reporter::new(ctx, None);
    let mut stopped = false;
    for line in detached.reports()? {
        let progress = match line {
            ReportLine::Failed { error, .. } => {
                let mut err = CliError::new(error.code, "detached", error.message);
                err.hint = error.hint;
                return Err(err);
            }
            ReportLine::Progress(p) => p,
        };
        reporter.progress(&progress);
        match progress.event {
            ProgressEvent::Ready => {
                reporter.finish_live();
                if !ctx.global.quiet && !ctx.global.json {
                    println!("detached: `ccscope status` shows the stack, `ccscope stop` stops it");
                }
                return Ok(exit_codes::SUCCESS);
            }
            ProgressEvent::Stopped => {
                stopped = true;
                break;
            }
            _ => {}
        }
    }
    reporter.finish_live();
    let foreground = foreground_command(ctx, args);
    // The report ended without a word of the stack's end: the supervisor died (killed, or it
    // crashed) with its services perhaps still running.
    if !stopped {
        return Err(CliError::new(
            exit_codes::START_FAILED,
            "start",
            "the detached supervisor ended before the stack was ready, without stopping it: its services may still run",
        )
        .with_hint(format!(
            "`ccscope stop` stops whatever is left; then `{foreground}` in the foreground shows why"
        )));
    }
    Err(CliError::new(
        exit_codes::START_FAILED,
        "start",
        "the stack did not start; the detached supervisor stopped it again",
    )
    .with_hint(format!("run it in the foreground to see why: {foreground}")))
}

/// The `ccscope run` that starts the same stack in the foreground: the same configuration,
/// state directory and options, quoted for a shell.
fn foreground_command(ctx: &Context, args: &RunArgs) -> String {
    let mut words: Vec<String> = vec!["ccscope".into(), "run".into()];
    let mut push = |flag: &str, value: &str| {
        words.push(flag.to_string());
        words.push(shell_word(value));
    };
    if let Some(profile) = &ctx.config_request.profile {
        push("--profile", profile);
    } else if let Some(file) = &ctx.config_request.file {
        push("-f", &file.to_string_lossy());
    }
    if let Some(dir) = &ctx.global.state_dir {
        push("--state-dir", &dir.to_string_lossy());
    }
    if let Some(backend) = args.contain.backend {
        push("--backend", backend.as_str());
    }
    if !args.only.is_empty() {
        words.push("--only".into());
        words.extend(args.only.iter().map(|s| shell_word(s)));
    }
    for (set, flag) in [
        (args.contain.system, "--system"),
        (args.contain.strict_limits, "--strict-limits"),
        (args.clean, "--clean"),
    ] {
        if set {
            words.push(flag.into());
        }
    }
    words.join(" ")
}

/// The command line of the `ccscope run` these options stand for (with `--detach`), as
/// `std::env::args_os()` would hold it had it been typed: the global options given, then
/// `run` and its own.
fn run_argv(ctx: &Context, args: &RunArgs) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = vec!["ccscope".into()];
    let global = &ctx.global;
    if let Some(file) = &global.file {
        argv.extend(["--file".into(), file.into()]);
    }
    if let Some(profile) = &global.profile {
        argv.extend(["--profile".into(), profile.into()]);
    }
    if let Some(dir) = &global.state_dir {
        argv.extend(["--state-dir".into(), dir.into()]);
    }
    for (set, flag) in [(global.json, "--json"), (global.quiet, "--quiet")] {
        if set {
            argv.push(flag.into());
        }
    }
    argv.extend((0..global.verbose).map(|_| "--verbose".into()));
    if global.log_format == super::LogFormat::Json {
        argv.extend(["--log-format".into(), "json".into()]);
    }
    argv.push("run".into());
    if !args.only.is_empty() {
        argv.push("--only".into());
        argv.extend(args.only.iter().map(Into::into));
    }
    if let Some(backend) = args.contain.backend {
        argv.extend(["--backend".into(), backend.as_str().into()]);
    }
    for (set, flag) in [
        (args.contain.system, "--system"),
        (args.contain.strict_limits, "--strict-limits"),
        (args.clean, "--clean"),
        (args.detach, "--detach"),
    ] {
        if set {
            argv.push(flag.into());
        }
    }
    argv
}

/// `word` as a shell reads it back: bare when it is plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod hint_tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cli::GlobalArgs;
    use crate::config::ConfigRequest;

    fn context(file: Option<&str>, profile: Option<&str>, state_dir: Option<&str>) -> Context {
        Context {
            global: GlobalArgs {
                state_dir: state_dir.map(PathBuf::from),
                ..GlobalArgs::default()
            },
            cwd: PathBuf::from("/work"),
            config_request: ConfigRequest {
                file: file.map(PathBuf::from),
                profile: profile.map(str::to_string),
            },
        }
    }

    fn args(only: &[&str], backend: Option<BackendKind>) -> RunArgs {
        RunArgs {
            only: only.iter().map(|s| s.to_string()).collect(),
            clean: false,
            detach: true,
            report_to: None,
            contain: ContainArgs {
                backend,
                system: false,
                strict_limits: false,
            },
            not_from_the_command_line: false,
        }
    }

    #[test]
    fn the_hint_keeps_the_file_state_dir_and_options_that_were_used() {
        let ctx = context(Some("stacks/dev.toml"), None, Some("/tmp/my state"));
        assert_eq!(
            foreground_command(&ctx, &args(&["web"], Some(BackendKind::Cgroupfs))),
            "ccscope run -f stacks/dev.toml --state-dir '/tmp/my state' --backend cgroupfs --only web"
        );
    }

    #[test]
    fn the_hint_names_a_profile_and_nothing_more_when_nothing_more_was_given() {
        let ctx = context(None, Some("demo"), None);
        assert_eq!(
            foreground_command(&ctx, &args(&[], None)),
            "ccscope run --profile demo"
        );
        assert_eq!(
            foreground_command(&context(None, None, None), &args(&[], None)),
            "ccscope run"
        );
    }

    #[test]
    fn shell_words_are_quoted_so_a_shell_reads_them_back() {
        assert_eq!(shell_word("a.toml"), "a.toml");
        assert_eq!(shell_word("it's here"), "'it'\\''s here'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
    }

    #[test]
    fn start_without_a_supervisor_detaches_a_run_of_its_options() {
        let mut ctx = context(None, None, Some("/tmp/my state"));
        ctx.global.file = Some(PathBuf::from("stacks/dev.toml"));
        ctx.global.verbose = 1;
        let mut run = args(&["web", "db"], Some(BackendKind::Cgroupfs));
        run.not_from_the_command_line = true;
        let argv: Vec<String> = run_argv(&ctx, &run)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "ccscope",
                "--file",
                "stacks/dev.toml",
                "--state-dir",
                "/tmp/my state",
                "--verbose",
                "run",
                "--only",
                "web",
                "db",
                "--backend",
                "cgroupfs",
                "--detach"
            ]
        );
        // What the detached half parses back: `run`, its services, no `--detach`.
        let detached =
            detach::detached_argv("ccscope".as_ref(), &run_argv(&ctx, &run), "s".as_ref());
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&detached).unwrap();
        assert!(
            matches!(cli.command, crate::cli::Command::Run(r) if r.only == ["web", "db"] && !r.detach)
        );
    }
}
