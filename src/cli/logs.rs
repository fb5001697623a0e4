//! `ccscope logs`: the stack's output, oldest first, interleaved in time order, each line
//! prefixed with its service (one colour per service on a terminal, as compose and honcho
//! do), or one JSON object per line with `--json`. The reading is `audit::logs`'s; this file
//! shapes the arguments and prints.

use std::io::{self, Write};
use std::time::SystemTime;

use clap::Args;

use super::Context;
use crate::audit::logs::{self, Ended, LogLine, LogsError, Query, Source};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;

/// The prefix colours, in the services' order (compose's palette: no black, no white).
const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "31", "96", "93", "92", "95"];

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The services whose output to show [default: all of them]
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Keep printing new output as it comes (Ctrl-C ends it); across restarts of a service
    #[arg(long)]
    pub follow: bool,

    /// Only the last N lines (from log files without journald: of each service)
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,

    /// Only output since then: `10m`, `2h`, `1h30m`, `today`, `yesterday`, or an RFC 3339
    /// time (`2026-12-01T10:00:00Z`; without a zone, local time)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only lines matching this regular expression (Rust `regex` syntax)
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,

    /// Print the lines bare, without the service's name before each
    #[arg(long)]
    pub no_prefix: bool,
}

pub fn run(ctx: &Context, args: &LogsArgs) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    super::verbs::check_names(&config, &args.services)?;
    let since = match &args.since {
        Some(text) => Some(
            crate::audit::time::parse_since(text, SystemTime::now())
                .map_err(|e| CliError::usage(format!("--since {text:?} is not understood: {e}")))?,
        ),
        None => None,
    };
    let grep = match &args.grep {
        Some(re) => Some(regex::Regex::new(re).map_err(|e| {
            CliError::usage(format!("--grep {re:?} is not a regular expression: {e}"))
                .with_hint("the syntax is Rust's regex crate's: https://docs.rs/regex")
        })?),
        None => None,
    };
    let all: Vec<String> = config.services.keys().cloned().collect();
    let shown = if args.services.is_empty() {
        all.clone()
    } else {
        args.services.clone()
    };
    let state_dir = ctx.state_dir(Some(&config))?.path;
    let source = Source::detect(&state_dir);
    let query = Query {
        project: config.project.name.clone(),
        services: shown.clone(),
        lines: args.lines,
        since,
        follow: args.follow,
        grep,
    };
    let stdout = io::stdout();
    let colour = super::use_colour(&stdout);
    let mut printer = Printer {
        out: io::BufWriter::new(stdout.lock()),
        json: ctx.global.json,
        prefix: !args.no_prefix,
        width: shown.iter().map(String::len).max().unwrap_or(0),
        colour,
        all,
        flush_each: args.follow,
    };
    let ended = logs::read(&source, &query, &mut |line| printer.print(line));
    let flushed = printer.out.flush();
    match ended {
        // As a shell reports a command a signal ended: 130 for Ctrl-C.
        Ok(Ended::Interrupted { signal }) => Ok(128 + signal),
        Ok(Ended::OutputClosed) => Ok(exit_codes::SUCCESS),
        Ok(Ended::Finished) => match flushed {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(logs_error(LogsError::Output(e), &query))
            }
            _ => Ok(exit_codes::SUCCESS),
        },
        Err(e) => Err(logs_error(e, &query)),
    }
}

/// How lines are printed.
struct Printer<W: Write> {
    out: W,
    json: bool,
    prefix: bool,
    width: usize,
    colour: bool,
    /// Every service of the project, whose place gives each its colour.
    all: Vec<String>,
    /// Following: each line is flushed as it comes.
    flush_each: bool,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, line: &LogLine) -> io::Result<()> {
        if self.json {
            let doc = serde_json::json!({
                "time": line.time.map(crate::audit::time::rfc3339_micros),
                "service": line.service,
                "stream": line.stream,
                "message": line.message,
            });
            writeln!(self.out, "{doc}")?;
        } else if !self.prefix {
            writeln!(self.out, "{}", line.message)?;
        } else if self.colour {
            let place = self
                .all
                .iter()
                .position(|s| *s == line.service)
                .unwrap_or(0);
            let code = COLOURS[place % COLOURS.len()];
            writeln!(
                self.out,
                "\x1b[{code}m{:<width$} |\x1b[0m {}",
                line.service,
                line.message,
                width = self.width
            )?;
        } else {
            writeln!(
                self.out,
                "{:<width$} | {}",
                line.service,
                line.message,
                width = self.width
            )?;
        }
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }
}

fn logs_error(e: LogsError, query: &Query) -> CliError {
    let hint = match &e {
        LogsError::NoJournalctl(_) => Some("apt-get install systemd (journalctl is part of it)"),
        LogsError::SinceWithoutTimes => {
            Some("leave out --since (or -n N for the last lines), or run the stack with journald")
        }
        LogsError::NoLogDir { .. } => Some(
            "without journald a service's output goes to its log file once the stack has run: \
             `ccscope run` first, or `ccscope logs --follow` to wait for it",
        ),
        LogsError::Journalctl { .. } => Some(
            "run the same query with `journalctl CCSCOPE_PROJECT=<project>` to see what it says",
        ),
        _ => None,
    };
    let code = match e {
        LogsError::SinceWithoutTimes => exit_codes::USAGE,
        LogsError::State(_) => exit_codes::STATE,
        _ => exit_codes::FAILURE,
    };
    let kind = match e {
        LogsError::NoJournalctl(_) | LogsError::Journalctl { .. } => "journal",
        LogsError::SinceWithoutTimes => "usage",
        LogsError::State(_) => "state",
        _ => "io",
    };
    let mut err = CliError::new(
        code,
        kind,
        format!("could not {e} (project `{}`)", query.project),
    );
    err.hint = hint.map(String::from);
    err
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn printer(json: bool, prefix: bool, colour: bool) -> Printer<Vec<u8>> {
        Printer {
            out: Vec::new(),
            json,
            prefix,
            width: 5,
            colour,
            all: vec!["db".into(), "web".into()],
            flush_each: false,
        }
    }

    fn line(service: &str) -> LogLine {
        LogLine {
            time: Some(UNIX_EPOCH + Duration::from_micros(1_796_162_804_000_001)),
            service: service.into(),
            stream: Some("stdout".into()),
            message: "hello".into(),
        }
    }

    #[test]
    fn prefixes_are_padded_and_coloured_per_service() {
        let mut p = printer(false, true, false);
        p.print(&line("web")).unwrap();
        assert_eq!(String::from_utf8(p.out).unwrap(), "web   | hello\n");
        let mut p = printer(false, true, true);
        p.print(&line("db")).unwrap();
        p.print(&line("web")).unwrap();
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "\x1b[36mdb    |\x1b[0m hello\n\x1b[33mweb   |\x1b[0m hello\n"
        );
        let mut p = printer(false, false, true);
        p.print(&line("db")).unwrap();
        assert_eq!(String::from_utf8(p.out).unwrap(), "hello\n");
    }

    #[test]
    fn json_lines_carry_the_time_in_rfc3339_with_micros() {
        let mut p = printer(true, true, true);
        p.print(&line("web")).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&p.out).unwrap();
        assert_eq!(doc["time"], "2026-12-01T22:06:44.000001Z");
        assert_eq!(doc["service"], "web");
        assert_eq!(doc["stream"], "stdout");
        assert_eq!(doc["message"], "hello");
    }
}
