//! The command line: clap definitions, one file per subcommand, and the dispatch that maps
//! every outcome to a documented exit code. No logic beyond shaping arguments lives here.

mod adopt;
mod audit;
mod check;
mod completions;
mod contain_args;
mod context;
mod discover;
mod doctor;
pub mod errors;
mod exec;
pub mod exit_codes;
mod import;
mod init;
mod logs;
mod ps;
mod redirects;
mod registry_cmd;
mod run;
mod status;
mod stop;
mod top;
mod unit;
mod verbs;

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use context::Context;

use crate::cli::errors::CliError;

/// Contains every process of a local service stack, and stops all of them.
///
/// ccscope runs each service of a stack in its own systemd scope or cgroup, remembers what
/// runs in a SQLite registry, and finds and stops what escaped.
#[derive(Debug, Parser)]
#[command(name = "ccscope", version, propagate_version = true, after_long_help = exit_code_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The stack definition to use [default: ./ccscope.toml, then parent directories; env: CCSCOPE_CONFIG]
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    pub file: Option<PathBuf>,

    /// Use a built-in stack definition instead of a file (`ccscope check --profile example`)
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,

    /// The project to act on by name, its configuration found in the projects index
    /// (`ccscope projects`); what `ccscope@<project>.service` runs with
    #[arg(long = "project-name", value_name = "NAME", global = true)]
    pub project_name: Option<String>,

    /// A setting of the built-in profile, over its environment variable (`--set bin=PATH`;
    /// repeatable; the README's "The context-cleaner profile" lists them)
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,

    /// Where the registry lives [default: $XDG_STATE_HOME/ccscope; env: CCSCOPE_STATE_DIR]
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    /// Print machine-readable JSON on stdout (errors as JSON on stderr)
    #[arg(long, global = true)]
    pub json: bool,

    /// Say more (repeat for debug output)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Say only what went wrong
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// How ccscope's own diagnostics (warnings, -v, CCSCOPE_LOG) are written on stderr:
    /// `text`, or `json` (one object per line, with the run id on a supervisor's)
    #[arg(long, value_enum, value_name = "FORMAT", global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How diagnostics are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the stack definition and print its start plan
    Check(check::CheckArgs),
    /// Write a commented example ccscope.toml
    Init(init::InitArgs),
    /// Write a ccscope.toml from docker compose files, process-compose files or Procfiles
    ///
    /// Every setting that has no equivalent is a warning with its file:line:column (never
    /// dropped in silence). The written file is validated as `check` does.
    Import(import::ImportArgs),
    /// Start the stack in dependency order, wait until it is ready, and keep it running
    Run(run::RunArgs),
    /// List the processes in the registry
    Ps(ps::PsArgs),
    /// Run a command inside the project's containment (a scope of its own, registered)
    Exec(exec::ExecArgs),
    /// Stop everything of the project, strays included, and prove nothing is left
    Stop(stop::StopArgs),
    /// Start services in the running supervisor (or start one for them), with what they need
    ///
    /// Starts stopped, failed or never-started services and whatever they depend on that is
    /// not up, and returns once they are ready (exit 9 when one does not come up, with why).
    /// With no supervisor running, it is `ccscope run --only SERVICE… --detach`.
    Start(verbs::StartArgs),
    /// Stop and start services again through the running supervisor, waiting until ready
    ///
    /// Each service is ended with its stop signal and timeout and started again; the reply
    /// comes once it is ready (exit 9 when it is not, with why). What depends on it runs on,
    /// unless it declares the dependency with `restart = true`: then it is restarted after it.
    /// Needs a running supervisor (exit 10 without one).
    Restart(verbs::RestartArgs),
    /// Re-read the configuration: start what is new, restart what changed, stop what went
    ///
    /// The rest is left untouched (same pids). A configuration with errors is refused with
    /// its file:line:column errors (exit 3) and nothing changes. SIGHUP to the supervisor does
    /// the same. Needs a running supervisor (exit 10 without one).
    Reload(verbs::ReloadArgs),
    /// Freeze services' cgroups (all when none is named); probes and restarts hold
    ///
    /// Every process of a paused service stops at once; a container is paused through the
    /// Engine. `ccscope stop` of a paused stack thaws it first. The process-group backend
    /// cannot pause (exit 6). Needs a running supervisor (exit 10 without one).
    Pause(verbs::PauseArgs),
    /// Thaw paused services (all when none is named)
    ///
    /// Their probes and restart timers start again. Needs a running supervisor (exit 10
    /// without one).
    Resume(verbs::PauseArgs),
    /// The stack's output, interleaved in time order, each line prefixed with its service
    ///
    /// From journald (by the identifiers ccscope's forwarder writes under), or from the services' log
    /// files in the state directory without it. `--follow` goes on live, across restarts,
    /// until Ctrl-C (exit 130). `--json` prints one object per line: time, service, stream,
    /// message.
    Logs(logs::LogsArgs),
    /// Each service as its scope shows it: state, processes, uptime, ports, CPU and memory
    Status(status::StatusArgs),
    /// The live dashboard of the stack: states, CPU, memory, pressure, events, logs, and keys
    /// that restart, stop, start, pause and reload (`?` lists them); `--once` prints one look
    Top(top::TopArgs),
    /// Who started, stopped, restarted or killed what, when and why: the audit trail
    ///
    /// Reads the project's entries from journald (and the fallback file in the state directory,
    /// where there is no journald), oldest first. Works long after the supervisor is gone.
    Audit(audit::AuditArgs),
    /// Every process of the project: managed, stray or foreign, and why
    Discover(discover::DiscoverArgs),
    /// Move strays (with their descendants) into their service's scope, and register them
    Adopt(adopt::AdoptArgs),
    /// Commands on the registry
    #[command(subcommand)]
    Registry(registry_cmd::RegistryCommand),
    /// Wrappers that lead an executable's old subcommands into ccscope (`[redirects.<exe>]`)
    #[command(subcommand)]
    Redirects(redirects::RedirectsCommand),
    /// Show which containment backend this host gets, which limits hold, and what answers
    Doctor(doctor::DoctorArgs),
    /// Install the project as the systemd user unit ccscope@<project>.service, enabled at login
    ///
    /// Writes the template ccscope@.service into ~/.config/systemd/user (only where it is
    /// missing or ccscope's own), a drop-in with the project's slice, state directory and stop
    /// timeout, records the project in the index, and enables the instance for default.target.
    /// `--now` also starts it and returns once the stack is ready (exit 9 if it fails, with
    /// the unit's status). Then `systemctl --user start|stop|reload|status ccscope@<project>`.
    Enable(unit::EnableArgs),
    /// Undo `ccscope enable`: the instance's link and drop-in, and the template once unused
    Disable(unit::DisableArgs),
    /// The projects ccscope knows: state (running, stopped, failed), supervisor, unit, config
    Projects(unit::ProjectsArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
    /// Commands for looking inside ccscope
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// The same as `ccscope ps`
    ListProcesses(ps::PsArgs),
    /// The same as `ccscope discover`
    DiscoverServices(discover::DiscoverArgs),
}

fn exit_code_help() -> String {
    let mut help = String::from("Exit codes:\n");
    for (code, name, meaning) in exit_codes::TABLE {
        help.push_str(&format!("  {code:>3}  {name:<9} {meaning}\n"));
    }
    help
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    init_logging(&cli.global);
    let json = cli.global.json;
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err, json);
            err.code
        }
    }
}

fn run(cli: Cli) -> Result<i32, CliError> {
    crate::config::profiles::apply_settings(cli.global.profile.as_deref(), &cli.global.set)
        .map_err(CliError::usage)?;
    let ctx = Context::new(cli.global)?;
    // Commands that only read and print end quietly when their output is closed.
    if matches!(
        cli.command,
        Command::Check(_)
            | Command::Ps(_)
            | Command::Status(_)
            | Command::Discover(_)
            | Command::Projects(_)
            | Command::Doctor(_)
            | Command::Completions(_)
            | Command::Debug(_)
    ) {
        crate::proc::sys::default_sigpipe();
    }
    match cli.command {
        Command::Check(args) => check::run(&ctx, &args),
        Command::Init(args) => init::run(&ctx, &args),
        Command::Import(args) => import::run(&ctx, &args),
        Command::Ps(args) | Command::Debug(DebugCommand::ListProcesses(args)) => {
            ps::run(&ctx, &args)
        }
        Command::Exec(args) => exec::run(&ctx, &args),
        Command::Run(args) => run::run(&ctx, &args),
        Command::Discover(args) | Command::Debug(DebugCommand::DiscoverServices(args)) => {
            discover::run(&ctx, &args)
        }
        Command::Adopt(args) => adopt::run(&ctx, &args),
        Command::Registry(command) => registry_cmd::run(&ctx, &command),
        Command::Redirects(command) => redirects::run(&ctx, &command),
        Command::Doctor(args) => doctor::run(&ctx, &args),
        Command::Stop(args) => stop::run(&ctx, &args),
        Command::Start(args) => verbs::start(&ctx, &args),
        Command::Restart(args) => verbs::restart(&ctx, &args),
        Command::Reload(args) => verbs::reload(&ctx, &args),
        Command::Pause(args) => verbs::pause(&ctx, &args, true),
        Command::Resume(args) => verbs::pause(&ctx, &args, false),
        Command::Status(args) => status::run(&ctx, &args),
        Command::Top(args) => top::run(&ctx, &args),
        Command::Audit(args) => audit::run(&ctx, &args),
        Command::Logs(args) => logs::run(&ctx, &args),
        Command::Completions(args) => completions::run(&args),
        Command::Enable(args) => unit::enable(&ctx, &args),
        Command::Disable(args) => unit::disable(&ctx, &args),
        Command::Projects(args) => unit::projects(&ctx, &args),
    }
}

fn report_error(err: &CliError, json: bool) {
    let mut stderr = std::io::stderr().lock();
    if json {
        let doc = serde_json::json!({ "error": err });
        let _ = writeln!(stderr, "{doc}");
    } else {
        let _ = stderr.write_all(err.render().as_bytes());
    }
}

fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCSCOPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("ccscope={level}")));
    if global.log_format == LogFormat::Json {
        // One JSON object per line, with the spans it happened in: a supervisor's carry its
        // run id, the correlation id of its audit trail.
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .try_init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(&std::io::stderr()))
        .with_target(false);
    // Debug output says when, counted from the start of the process: where the time of a
    // command goes is what it is read for.
    let _ = if global.verbose > 1 || std::env::var_os("CCSCOPE_LOG").is_some() {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// Whether what goes to `stream` may carry colour codes: only when it is a terminal, and
/// never with `NO_COLOR` set to anything but the empty string (<https://no-color.org>).
pub(crate) fn use_colour(stream: &impl IsTerminal) -> bool {
    colour_wanted(
        stream.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour_wanted(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Prints a value as one JSON document on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        CliError::new(
            exit_codes::FAILURE,
            "internal",
            format!("could not encode JSON: {e}"),
        )
    })?;
    // A reader that stopped reading (`| head -1`) is not an error of ours.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::new(
            exit_codes::FAILURE,
            "io",
            format!(
                "could not write to stdout: {}",
                crate::proc::describe_io(&e)
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some(OsStr::new(""))));
    }
}
