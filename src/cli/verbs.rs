//! `ccscope start | restart | reload | pause | resume` (and `stop SVC…` and `run --only` with a
//! live supervisor): each is a request to the project's running supervisor over its control
//! socket, answered once it is done. Names are checked here first, against the configuration,
//! with a did-you-mean; the supervisor checks them again against its own.

use std::time::Duration;

use clap::Args;

use super::contain_args::ContainArgs;
use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::Config;
use crate::control::{Reply, Request, RequestError, send_request};

/// The longest a client waits for a reply, whatever the services' timeouts add up to.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The services to start (with what they need that is not up)
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,

    #[command(flatten)]
    pub contain: ContainArgs,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The services to restart
    #[arg(
        value_name = "SERVICE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub services: Vec<String>,

    /// Restart the whole stack, in dependency order
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Say what a reload would start, restart and stop; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The services to freeze or thaw [default: all of them]
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub fn start(ctx: &Context, args: &StartArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    check_names(&config, &args.services)?;
    let request = Request::Start {
        services: args.services.clone(),
    };
    match ask(ctx, &config, &request)? {
        Some(reply) => finish(ctx, &reply),
        None => {
            // No supervisor: `start SVC…` is `run --only SVC… --detach`.
            if !ctx.global.quiet && !ctx.global.json {
                println!(
                    "no supervisor runs `{}`: starting one for {}",
                    config.project.name,
                    args.services.join(", ")
                );
            }
            let run = super::run::RunArgs {
                only: args.services.clone(),
                clean: false,
                detach: true,
                report_to: None,
                contain: args.contain.clone(),
                not_from_the_command_line: true,
            };
            super::run::run(ctx, &run)
        }
    }
}

pub fn restart(ctx: &Context, args: &RestartArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    check_names(&config, &args.services)?;
    let request = Request::Restart {
        services: args.services.clone(),
        all: args.all,
    };
    needs_supervisor(ctx, &config, &request)
}

pub fn reload(ctx: &Context, args: &ReloadArgs) -> Result<i32, CliError> {
    // The supervisor reads the file itself; reading it here first says its errors with their
    // locations even when no supervisor runs.
    let config = ctx.load_config()?;
    let request = Request::Reload {
        dry_run: args.dry_run,
    };
    needs_supervisor(ctx, &config, &request)
}

pub fn pause(ctx: &Context, args: &PauseArgs, paused: bool) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    check_names(&config, &args.services)?;
    let services = args.services.clone();
    let request = match paused {
        true => Request::Pause { services },
        false => Request::Resume { services },
    };
    needs_supervisor(ctx, &config, &request)
}

/// Sends a request that only a live supervisor can carry out.
fn needs_supervisor(ctx: &Context, config: &Config, request: &Request) -> Result<i32, CliError> {
    match ask(ctx, config, request)? {
        Some(reply) => finish(ctx, &reply),
        None => Err(no_supervisor(config, request.verb())),
    }
}

/// The error of a verb that needs a supervisor and finds none.
pub(super) fn no_supervisor(config: &Config, verb: &str) -> CliError {
    CliError::new(
        exit_codes::NO_SUPERVISOR,
        "no_supervisor",
        format!(
            "no supervisor runs project `{}`: `{verb}` needs one",
            config.project.name
        ),
    )
    .with_hint("`ccscope run --detach` starts the stack with one (`ccscope start SERVICE…` starts only those)")
}

/// Every name must be a service of the configuration: else a did-you-mean, and nothing is
/// asked.
pub(super) fn check_names(config: &Config, names: &[String]) -> Result<(), CliError> {
    super::stop::check_services(config, names, "nothing was asked")
}

/// Sends `request` to the project's live supervisor and waits for its reply; None when no
/// supervisor runs.
pub(super) fn ask(
    ctx: &Context,
    config: &Config,
    request: &Request,
) -> Result<Option<Reply>, CliError> {
    let registry = ctx.open_registry(Some(config))?;
    ask_with(ctx, config, &registry, request)
}

/// [`ask`], with the registry the caller opened (`stop`'s may stand in for one it could
/// not open): a registry whose runs cannot be read leaves the lock's holder to go by.
pub(super) fn ask_with(
    ctx: &Context,
    config: &Config,
    registry: &crate::registry::Registry,
    request: &Request,
) -> Result<Option<Reply>, CliError> {
    let state_dir = ctx.state_dir(Some(config))?.path;
    let project = &config.project.name;
    let holder = crate::supervise::lock::holder(&state_dir, project);
    let live = crate::control::find_supervisor(registry, project, holder).unwrap_or_else(|e| {
        ctx.warn(&format!("could not read the registry's runs: {e}"));
        holder.and_then(|pid| crate::proc::ProcFs::default().identity(pid).ok())
    });
    let Some(supervisor) = live else {
        return Ok(None);
    };
    match send_request(&state_dir, project, supervisor, request, wait_for(config)) {
        Ok(reply) => Ok(Some(reply)),
        Err(RequestError::NoSocket { .. }) if holder.is_none() => Ok(None),
        Err(e) => Err(request_failed(&e)),
    }
}

/// How long a reply may take: every service stopped and started once, within its timeouts
/// (the verbs', and `top`'s keys').
pub(crate) fn wait_for(config: &Config) -> Duration {
    let per_service: Duration = config
        .services
        .values()
        .map(|s| {
            s.stop_timeout.0
                + s.ready
                    .as_ref()
                    .map_or(Duration::ZERO, |p| p.start_timeout.0)
        })
        .sum();
    (Duration::from_secs(30) + per_service).min(MAX_WAIT)
}

fn request_failed(e: &RequestError) -> CliError {
    let (code, hint) = match e {
        RequestError::NotBelieved(_) => (
            exit_codes::REFUSED,
            "nothing was asked of it; `ccscope status` shows who runs the project",
        ),
        RequestError::Silent { .. } => (
            exit_codes::FAILURE,
            "it may still be carrying the request out: `ccscope status` shows where it stands",
        ),
        RequestError::Closed { .. }
        | RequestError::Garbled { .. }
        | RequestError::NoSocket { .. } => (
            exit_codes::FAILURE,
            "`ccscope status` shows the stack; `ccscope stop` stops whatever is left",
        ),
    };
    CliError::new(code, "control", e.to_string()).with_hint(hint)
}

/// Prints the reply and returns its exit code (a failure also as an error).
pub(super) fn finish(ctx: &Context, reply: &Reply) -> Result<i32, CliError> {
    if ctx.global.json {
        print_json(reply)?;
    } else if !ctx.global.quiet || !reply.ok {
        print_reply(reply);
    }
    let Some(error) = &reply.error else {
        return Ok(exit_codes::SUCCESS);
    };
    let code = match error.kind.as_str() {
        "unknown_service" | "invalid" => exit_codes::USAGE,
        "config" => exit_codes::CONFIG,
        "stopping" => exit_codes::REFUSED,
        "unsupported" => exit_codes::CONTAIN,
        _ => exit_codes::START_FAILED,
    };
    let mut err = CliError::new(code, "request", error.message.clone());
    err.hint = error.hint.clone();
    Err(err)
}

fn print_reply(reply: &Reply) {
    if reply.ok {
        println!("{}", reply.message);
    }
    for s in &reply.services {
        let pid = s.pid.map_or(String::new(), |p| format!("pid {p}"));
        let why = match s.why.as_str() {
            "" | "asked" => String::new(),
            why => format!("({why})"),
        };
        let line = format!(
            "  {:<20} {:<10} {:<10} {:<10} {why}",
            s.service, s.action, s.state, pid
        );
        match &s.message {
            Some(m) => println!("{}  {m}", line.trim_end()),
            None => println!("{}", line.trim_end()),
        }
    }
}
