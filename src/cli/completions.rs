//! `ccscope completions SHELL`: a completion script on stdout.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;
use crate::cli::errors::CliError;
use crate::cli::exit_codes;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for
    pub shell: CompletionShell,
}

pub fn run(args: &CompletionsArgs) -> Result<i32, CliError> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "ccscope",
        &mut std::io::stdout(),
    );
    Ok(exit_codes::SUCCESS)
}
