//! Options of the commands that contain processes (`exec`, `doctor`, and later `run`/`stop`).

use clap::Args;

use crate::contain::{BackendChoice, BackendKind, BusKind};

#[derive(Debug, Clone, Default, Args)]
pub struct ContainArgs {
    /// Force a containment backend instead of choosing the best available
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Option<BackendKind>,

    /// Use the system manager on the system bus (as root) instead of the user manager; a
    /// supervisor (`run`) then exports its D-Bus interface on the system bus too
    #[arg(long)]
    pub system: bool,

    /// Refuse to start anything whose resource limits this host cannot enforce
    #[arg(long)]
    pub strict_limits: bool,
}

impl ContainArgs {
    pub fn choice(&self) -> BackendChoice {
        self.backend
            .map_or(BackendChoice::Auto, BackendChoice::Forced)
    }

    pub fn bus(&self) -> BusKind {
        if self.system {
            BusKind::System
        } else {
            BusKind::Session
        }
    }
}

/// A single-threaded runtime for a command's async work.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::cli::errors::CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::cli::errors::CliError::new(
                crate::cli::exit_codes::FAILURE,
                "internal",
                format!("could not start the async runtime: {e}"),
            )
        })
}
