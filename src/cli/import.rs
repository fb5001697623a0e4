//! `ccscope import FILE…`: a ccscope.toml from docker compose files, process-compose files
//! and Procfiles, with a warning (file:line:column) for every setting left behind.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::import::{ImportError, ImportRequest, WriteError, import, write_output};

#[derive(Debug, Args)]
#[command(after_long_help = "\
Kinds, by file name or content:
  docker-compose.yml, compose.yaml  container services; several files merge in order as
                                    `docker compose -f a -f b` merges them
  process-compose.yaml              process services (run by /bin/sh -c)
  Procfile                          one shell service a line; PORT 5000, 5100, … as foreman

Examples:
  ccscope import docker-compose.yml
  ccscope import docker-compose.yml docker-compose.override.yml --project telemetry
  ccscope import docker-compose.yml --image clickhouse=clickhouse/clickhouse-server:24.3 -o -")]
pub struct ImportArgs {
    /// The files to import, in order
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Where to write; `-` prints it on stdout
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        default_value = "ccscope.toml"
    )]
    pub output: PathBuf,

    /// The project name [default: COMPOSE_PROJECT_NAME, the compose `name:`, or the first
    /// file's directory, as compose picks it]
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,

    /// Run SERVICE's container from IMAGE instead of the file's (repeatable); it is never pulled
    #[arg(long, value_name = "SERVICE=IMAGE", value_parser = service_image)]
    pub image: Vec<(String, String)>,

    /// Overwrite an existing output file
    #[arg(long)]
    pub force: bool,
}

fn service_image(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((s, i)) if !s.is_empty() && !i.is_empty() => Ok((s.to_string(), i.to_string())),
        _ => {
            Err("write SERVICE=IMAGE, such as clickhouse=clickhouse/clickhouse-server:24.3".into())
        }
    }
}

pub fn run(ctx: &Context, args: &ImportArgs) -> Result<i32, CliError> {
    let to_stdout = args.output.as_os_str() == "-";
    let output = if to_stdout {
        PathBuf::from("ccscope.toml")
    } else {
        args.output.clone()
    };
    let env = |k: &str| std::env::var(k).ok();
    let request = ImportRequest {
        files: &args.files,
        cwd: &ctx.cwd,
        output: &output,
        project: args.project.as_deref(),
        images: &args.image,
        env: &env,
    };
    let imported = import(&request).map_err(import_error)?;
    if !to_stdout {
        write_output(&ctx.cwd.join(&output), &imported.text, args.force).map_err(write_error)?;
    }
    if ctx.global.json {
        let written = (!to_stdout).then(|| ctx.cwd.join(&output));
        let mut doc = serde_json::to_value(&imported).unwrap_or_default();
        doc["written"] = serde_json::json!(written);
        if to_stdout {
            doc["text"] = serde_json::json!(imported.text);
        }
        print_json(&doc)?;
        return Ok(exit_codes::SUCCESS);
    }
    let mut stderr = std::io::stderr().lock();
    for w in &imported.warnings {
        let _ = writeln!(stderr, "warning: {w}");
    }
    if to_stdout {
        let _ = std::io::stdout().lock().write_all(imported.text.as_bytes());
    }
    if !ctx.global.quiet {
        let count: usize = imported.layers.iter().map(Vec::len).sum();
        let order: Vec<String> = imported.layers.iter().map(|l| l.join(", ")).collect();
        let warned = match imported.warnings.len() {
            0 => "no setting left behind".to_string(),
            1 => "1 setting left behind or changed (above)".to_string(),
            n => format!("{n} settings left behind or changed (above)"),
        };
        let target = if to_stdout {
            "stdout".to_string()
        } else {
            output.display().to_string()
        };
        let _ = writeln!(
            stderr,
            "wrote {target}: project `{}`, {count} service{}, order {}; {warned}",
            imported.project,
            if count == 1 { "" } else { "s" },
            order.join(" → ")
        );
        if !to_stdout {
            let _ = writeln!(
                stderr,
                "next: `ccscope check -f {}`, then `ccscope run`",
                output.display()
            );
        }
    }
    Ok(exit_codes::SUCCESS)
}

fn import_error(e: ImportError) -> CliError {
    let hint = e.hint();
    if let ImportError::NoServices { warnings } = &e {
        let mut stderr = std::io::stderr().lock();
        for w in warnings {
            let _ = writeln!(stderr, "warning: {w}");
        }
    }
    let (code, kind) = match &e {
        ImportError::Read { .. } | ImportError::NotAFile { .. } | ImportError::TooLarge { .. } => {
            (exit_codes::CONFIG, "import_unreadable")
        }
        ImportError::Syntax { .. } => (exit_codes::CONFIG, "import_syntax"),
        ImportError::UnknownKind { .. } => (exit_codes::USAGE, "import_unknown_kind"),
        ImportError::UnknownImageService { .. } | ImportError::BadProject { .. } => {
            (exit_codes::USAGE, "usage")
        }
        ImportError::DuplicateService { .. } | ImportError::NoServices { .. } => {
            (exit_codes::CONFIG, "import_nothing")
        }
        ImportError::Generated { .. } => (exit_codes::FAILURE, "internal"),
    };
    let mut err = CliError::new(code, kind, e.to_string());
    err.hint = hint;
    err
}

fn write_error(e: WriteError) -> CliError {
    match e {
        WriteError::Exists(_) => CliError::new(exit_codes::REFUSED, "exists", e.to_string())
            .with_hint("pass --force to overwrite it, or give another -o PATH (`-o -` prints it)"),
        WriteError::Io {
            ref path,
            ref source,
        } => CliError::io("write", path, source),
    }
}
