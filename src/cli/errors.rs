//! The catalogue of errors a user can see: each with its exit code, one clear sentence, and
//! what to do next. Library modules have their own error enums; this is where they meet the
//! command line.

use serde::Serialize;

use crate::cli::exit_codes;
use crate::config::{ConfigError, Diagnostic};
use crate::registry::RegistryError;

#[derive(Debug, Serialize)]
pub struct CliError {
    /// The process exit code (see `exit_codes`).
    pub code: i32,
    /// A short machine-readable name of the kind of error.
    pub kind: &'static str,
    pub message: String,
    pub hint: Option<String>,
    /// For configuration errors: every problem found, each with file:line:column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl CliError {
    pub fn new(code: i32, kind: &'static str, message: impl Into<String>) -> Self {
        CliError {
            code,
            kind,
            message: message.into(),
            hint: None,
            diagnostics: Vec::new(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(exit_codes::USAGE, "usage", message)
    }

    /// An I/O failure on a path, said without a bare `os error N`.
    pub fn io(action: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                Some("you lack permission there: check the path's owner and mode")
            }
            std::io::ErrorKind::NotFound => Some("check that the path exists"),
            _ => None,
        };
        let mut err = CliError::new(
            exit_codes::FAILURE,
            "io",
            format!("could not {action} {}: {}", path.display(), describe_io(e)),
        );
        err.hint = hint.map(String::from);
        err
    }

    /// Human form: `error: …` lines with hints, for stderr.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.diagnostics.is_empty() {
            out.push_str(&format!("error: {}\n", self.message));
        } else {
            for d in &self.diagnostics {
                out.push_str(&format!("error: {d}\n"));
            }
            if self.diagnostics.len() > 1 {
                out.push_str(&format!("{} problems found\n", self.diagnostics.len()));
            }
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  hint: {hint}\n"));
        }
        out
    }
}

pub use crate::proc::describe_io;

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        let hint = e.hint();
        let mut err = match e {
            ConfigError::Invalid { diagnostics } => {
                let message = diagnostics.first().map_or_else(
                    || "invalid configuration".to_string(),
                    |d| format!("{}: {}", d.location, d.message),
                );
                let mut err = CliError::new(exit_codes::CONFIG, "config_invalid", message);
                err.diagnostics = diagnostics;
                err
            }
            ConfigError::Read { path, source } => CliError::new(
                exit_codes::CONFIG,
                "config_unreadable",
                format!(
                    "could not read configuration {}: {}",
                    path.display(),
                    describe_io(&source)
                ),
            ),
            other @ ConfigError::NotFound { .. } => {
                CliError::new(exit_codes::CONFIG, "config_not_found", other.to_string())
            }
            other @ ConfigError::UnknownProfile { .. } => {
                CliError::new(exit_codes::CONFIG, "unknown_profile", other.to_string())
            }
        };
        err.hint = hint;
        err
    }
}

impl From<crate::contain::ContainError> for CliError {
    fn from(e: crate::contain::ContainError) -> Self {
        use crate::contain::ContainError;
        let hint = match &e {
            ContainError::Unavailable { backend: "systemd", .. } => Some(
                "start a user session (or `eval \"$(scripts/test-env.sh up)\"`), or choose --backend cgroupfs".to_string(),
            ),
            ContainError::Unavailable { .. } => Some("run `ccscope doctor` to see which backends this host offers".to_string()),
            ContainError::LimitsUnenforceable(_) => {
                Some("drop the limits, or run without --strict-limits to start with a warning".to_string())
            }
            _ => None,
        };
        let mut err = CliError::new(exit_codes::CONTAIN, "contain", e.to_string());
        err.hint = hint;
        err
    }
}

impl From<crate::launch::LaunchError> for CliError {
    fn from(e: crate::launch::LaunchError) -> Self {
        use crate::launch::LaunchError;
        let hint = e.hint();
        let (code, kind) = match &e {
            LaunchError::Contain { .. } | LaunchError::Limits { .. } => {
                (exit_codes::CONTAIN, "contain")
            }
            _ => (exit_codes::LAUNCH, "launch"),
        };
        let mut err = CliError::new(code, kind, e.to_string());
        err.hint = hint;
        err
    }
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> Self {
        let hint = e.hint();
        let message = match &e {
            RegistryError::Io {
                action,
                path,
                source,
            } => {
                format!(
                    "could not {action} {}: {}",
                    path.display(),
                    describe_io(source)
                )
            }
            other => other.to_string(),
        };
        let mut err = CliError::new(exit_codes::STATE, "state", message);
        err.hint = hint;
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_lose_the_bare_os_error_number() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(describe_io(&e), "permission denied");
        let err = CliError::io("read", std::path::Path::new("/x"), &e);
        assert_eq!(err.message, "could not read /x: permission denied");
        assert!(err.hint.is_some());
    }
}
