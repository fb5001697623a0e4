//! `ccscope init`: write a commented example ccscope.toml.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::{ConfigSource, FILE_NAME, check_unit_name_part, parse_config, profiles};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write [default: ./ccscope.toml]
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// The project name to write (letters, digits, `_`, `-`) [default: context-cleaner]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: &InitArgs) -> Result<i32, CliError> {
    let path = ctx.cwd.join(
        args.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(FILE_NAME)),
    );
    let mut text = profiles::EXAMPLE.to_string();
    if let Some(name) = &args.name {
        check_unit_name_part(name).map_err(|why| {
            CliError::usage(format!("invalid project name \"{name}\": {why}")).with_hint(
                "use 1 to 64 ASCII letters, digits, `_` or `-`, starting with a letter or digit",
            )
        })?;
        text = text.replacen(
            "name = \"context-cleaner\"",
            &format!("name = \"{name}\""),
            1,
        );
    }
    // The template is validated before it is written: init never writes a file check rejects.
    if let Err(e) = parse_config(&text, ConfigSource::Profile("example".into()), &ctx.cwd) {
        return Err(CliError::new(
            exit_codes::FAILURE,
            "internal",
            format!("the built-in example is invalid: {e}"),
        ));
    }
    if path.exists() && !args.force {
        return Err(CliError::new(
            exit_codes::REFUSED,
            "exists",
            format!("{} already exists; it was left untouched", path.display()),
        )
        .with_hint("pass --force to overwrite it, or give another PATH"));
    }
    write_atomically(&path, text.as_bytes())?;
    if ctx.global.json {
        print_json(&serde_json::json!({ "written": path }))?;
    } else if !ctx.global.quiet {
        println!("wrote {}; check it with `ccscope check`", path.display());
    }
    Ok(exit_codes::SUCCESS)
}

/// Writes to a temporary file beside `path`, then renames it over: never a half-written file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let file_name = path.file_name().map_or_else(
        || "ccscope.toml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        CliError::io("write", path, &e)
    })
}
