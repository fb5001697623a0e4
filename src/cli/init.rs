//! `ccscope init`: write a commented example ccscope.toml.

use std::path::PathBuf;

use clap::Args;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::FILE_NAME;
use crate::config::init::init;

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
    init(&path, args.name.as_deref(), args.force, &ctx.cwd)?;
    if ctx.global.json {
        print_json(&serde_json::json!({ "written": path }))?;
    } else if !ctx.global.quiet {
        println!("wrote {}; check it with `ccscope check`", path.display());
    }
    Ok(exit_codes::SUCCESS)
}
