//! `ccscope audit`: who started, stopped, restarted or killed what, when and why — the
//! project's audit entries from journald and the fallback file, oldest first. It needs no
//! supervisor: the journal outlives it.

use std::io::Write;
use std::time::SystemTime;

use clap::Args;

use super::Context;
use crate::audit::events;
use crate::audit::query::{self, Entry, Filter};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about these services
    #[arg(long = "service", value_name = "SERVICE", num_args = 1..)]
    pub services: Vec<String>,

    /// Only these events: a whole name (`service.failed`) or its last part (`failed`, `stopped`)
    #[arg(long = "event", value_name = "EVENT", num_args = 1..)]
    pub events: Vec<String>,

    /// From this moment: `10m`, `2h`, `3d` ago, `today`, `yesterday`, or an RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Up to this moment (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only the entries of this run (the correlation id every entry of a run carries)
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run: Option<String>,

    /// Only what this user caused (a uid)
    #[arg(long, value_name = "UID")]
    pub actor: Option<u32>,

    /// Only the last N entries
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,

    /// Explain each entry with its catalogue text, as `journalctl -x` does
    #[arg(short = 'x', long = "explain")]
    pub explain: bool,

    /// Print the journal catalogue of ccscope's events (for /usr/lib/systemd/catalog/) and exit
    #[arg(long, exclusive = true)]
    pub catalog: bool,
}

pub fn run(ctx: &Context, args: &AuditArgs) -> Result<i32, CliError> {
    if args.catalog {
        print!("{}", events::catalog());
        return Ok(exit_codes::SUCCESS);
    }
    let config = ctx.load_config()?;
    let state_dir = ctx.state_dir(Some(&config))?.path;
    let now = SystemTime::now();
    let time = |flag: &str, text: &Option<String>| -> Result<Option<SystemTime>, CliError> {
        text.as_deref()
            .map(|t| {
                crate::audit::time::parse_since(t, now)
                    .map_err(|e| CliError::usage(format!("{flag}: {e}")))
            })
            .transpose()
    };
    let mut event_names = Vec::new();
    for word in &args.events {
        let kinds = events::matching(word);
        if kinds.is_empty() {
            let names: Vec<&str> = events::KINDS.iter().map(|k| k.name).collect();
            let hint = crate::suggest::hint_among(word, &names, "events");
            return Err(
                CliError::usage(format!("`{word}` is no event ccscope writes")).with_hint(hint),
            );
        }
        event_names.extend(kinds.iter().map(|k| k.name.to_string()));
    }
    let filter = Filter {
        project: config.project.name.clone(),
        services: args.services.clone(),
        events: event_names,
        since: time("--since", &args.since)?,
        until: time("--until", &args.until)?,
        run: args.run.clone(),
        actor: args.actor,
        last: args.lines,
    };
    // Each entry is printed as soon as it is read: the first is out long before the last.
    let mut out = std::io::stdout().lock();
    let mut count = 0usize;
    let json = ctx.global.json;
    if json {
        let _ = write!(out, "[");
    }
    let warnings = query::for_each(&filter, &state_dir, &mut |entry| {
        let _ = if json {
            let text = serde_json::to_string_pretty(&entry).unwrap_or_default();
            let sep = if count == 0 { "\n" } else { ",\n" };
            write!(out, "{sep}{text}")
        } else {
            let explained = match args.explain {
                true => entry
                    .explain()
                    .map(|t| format!("\n{t}"))
                    .unwrap_or_default(),
                false => String::new(),
            };
            writeln!(out, "{}{explained}", line(&entry))
        };
        count += 1;
    });
    if json {
        let _ = writeln!(out, "{}]", if count == 0 { "" } else { "\n" });
    } else if count == 0 && !ctx.global.quiet {
        let _ = writeln!(
            out,
            "no audit entries of project `{}` match",
            filter.project
        );
    }
    drop(out);
    for warning in &warnings {
        ctx.warn(warning);
    }
    Ok(exit_codes::SUCCESS)
}

/// `2026-12-01T22:10:03.123456Z  web  service.failed  uid 0 ccscope[412]  why`.
fn line(e: &Entry) -> String {
    let actor = match (e.actor_uid, &e.actor_comm, e.actor_pid) {
        (Some(uid), Some(comm), Some(pid)) => format!("uid {uid} {comm}[{pid}]"),
        (Some(uid), _, _) => format!("uid {uid}"),
        _ => "-".into(),
    };
    format!(
        "{}  {:<16} {:<20} {:<22} {}",
        e.time,
        e.service.as_deref().unwrap_or("-"),
        e.event,
        actor,
        e.reason.as_deref().unwrap_or(&e.message)
    )
}
