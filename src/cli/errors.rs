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

impl From<crate::config::init::InitError> for CliError {
    fn from(e: crate::config::init::InitError) -> Self {
        use crate::config::init::InitError;
        match e {
            InitError::BadName { .. } => CliError::usage(e.to_string()).with_hint(
                "use 1 to 64 ASCII letters, digits, `_` or `-`, starting with a letter or digit",
            ),
            InitError::Exists(_) => CliError::new(exit_codes::REFUSED, "exists", e.to_string())
                .with_hint("pass --force to overwrite it, or give another PATH"),
            InitError::BadTemplate(_) => {
                CliError::new(exit_codes::FAILURE, "internal", e.to_string())
            }
            InitError::Write {
                ref path,
                ref source,
            } => CliError::io("write", path, source),
        }
    }
}

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
            other @ (ConfigError::NotAFile { .. } | ConfigError::TooLarge { .. }) => {
                CliError::new(exit_codes::CONFIG, "config_unreadable", other.to_string())
            }
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
        let hint = contain_hint(&e);
        let mut err = CliError::new(exit_codes::CONTAIN, "contain", e.to_string());
        err.hint = hint;
        err
    }
}

fn contain_hint(e: &crate::contain::ContainError) -> Option<String> {
    use crate::contain::ContainError;
    match e {
        ContainError::Unavailable { backend: "systemd", .. } => Some(
            "start a user session (or `eval \"$(scripts/test-env.sh up)\"`), or choose --backend cgroupfs".to_string(),
        ),
        ContainError::Unavailable { .. } => {
            Some("run `ccscope doctor` to see which backends this host offers".to_string())
        }
        ContainError::LimitsUnenforceable(_) => Some(
            "drop the limits, or run without --strict-limits to start with a warning".to_string(),
        ),
        _ => None,
    }
}

impl From<crate::launch::LaunchError> for CliError {
    /// The launch error's message leaves the service out; it is named here, once.
    fn from(e: crate::launch::LaunchError) -> Self {
        use crate::launch::LaunchError;
        let hint = e.hint();
        let (code, kind) = match &e {
            LaunchError::Contain { .. } | LaunchError::Limits { .. } => {
                (exit_codes::CONTAIN, "contain")
            }
            LaunchError::Preflight(_) | LaunchError::Spawn { .. } | LaunchError::Exec { .. } => {
                (exit_codes::LAUNCH, "launch")
            }
            LaunchError::Log { .. } => (exit_codes::STATE, "state"),
        };
        let mut err = CliError::new(code, kind, format!("service `{}`: {e}", e.service()));
        err.hint = hint;
        err
    }
}

impl From<crate::launch::exec::ExecError> for CliError {
    fn from(e: crate::launch::exec::ExecError) -> Self {
        use crate::launch::exec::ExecError;
        match e {
            ExecError::InvalidService { .. } => {
                CliError::usage(e.to_string()).with_hint("use ASCII letters, digits, `_` or `-`")
            }
            ExecError::DockerService(_) => {
                CliError::usage(e.to_string()).with_hint("pick another --service, or leave it out")
            }
            ExecError::Launcher(io) => {
                CliError::io("find", std::path::Path::new("/proc/self/exe"), &io)
            }
            ExecError::Signals(_) => CliError::new(exit_codes::FAILURE, "internal", e.to_string()),
            ExecError::Wait(_) => CliError::new(exit_codes::FAILURE, "io", e.to_string()),
            ExecError::Contain(e) => e.into(),
            ExecError::Launch(e) => e.into(),
            ExecError::Registry(e) => e.into(),
        }
    }
}

impl From<crate::discover::adopt::AdoptError> for CliError {
    fn from(e: crate::discover::adopt::AdoptError) -> Self {
        use crate::discover::adopt::AdoptError;
        match e {
            AdoptError::UnknownService(_) => CliError::usage(e.to_string()),
            AdoptError::Contain(e) => e.into(),
        }
    }
}

impl From<crate::supervise::lock::LockError> for CliError {
    fn from(e: crate::supervise::lock::LockError) -> Self {
        use crate::supervise::lock::LockError;
        match e {
            LockError::Held {
                project, holder, ..
            } => CliError::new(
                exit_codes::REFUSED,
                "locked",
                format!(
                    "project `{project}` is already running under ccscope pid {}",
                    holder.map_or("?".into(), |p| p.to_string())
                ),
            )
            .with_hint("`ccscope status` shows it; `ccscope stop` stops it"),
            LockError::Io { .. } => CliError::new(exit_codes::STATE, "state", e.to_string()),
            LockError::Unsafe(e) => e.into(),
        }
    }
}

impl From<crate::supervise::RunError> for CliError {
    fn from(e: crate::supervise::RunError) -> Self {
        use crate::supervise::RunError;
        match e {
            RunError::Locked(e) => e.into(),
            RunError::Refused { message, hint } => {
                CliError::new(exit_codes::REFUSED, "refused", message).with_hint(hint)
            }
            RunError::Unsupported(m) => CliError::new(exit_codes::LAUNCH, "launch", m).with_hint(
                "run it with `--only` the other services, or start the container yourself",
            ),
            RunError::Registry(e) => e.into(),
            RunError::Io(m) => CliError::new(exit_codes::FAILURE, "io", m),
        }
    }
}

impl From<crate::supervise::detach::DetachError> for CliError {
    fn from(e: crate::supervise::detach::DetachError) -> Self {
        use crate::supervise::detach::DetachError;
        let (code, kind, hint) = match e {
            DetachError::Locked(lock) => return lock.into(),
            DetachError::Launcher(io) => {
                return CliError::io("find", std::path::Path::new("/proc/self/exe"), &io);
            }
            DetachError::Service(ref c) => (exit_codes::CONTAIN, "contain", contain_hint(c)),
            DetachError::ReportSocket(_) | DetachError::Log(_) | DetachError::Spawn { .. } => {
                (exit_codes::FAILURE, "io", e.hint())
            }
            DetachError::Silent { .. } => (exit_codes::START_FAILED, "start", e.hint()),
            DetachError::UnitExists { .. } => (exit_codes::REFUSED, "locked", e.hint()),
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
    fn an_io_error_names_the_path_and_what_to_do() {
        let e = std::io::Error::from_raw_os_error(13);
        let err = CliError::io("read", std::path::Path::new("/x"), &e);
        assert_eq!(err.message, "could not read /x: permission denied");
        assert!(err.hint.is_some());
    }

    #[test]
    fn a_launch_error_names_its_service_once() {
        use crate::launch::{LaunchError, PreflightError};
        let e = LaunchError::Preflight(PreflightError::NotFound {
            service: "a".into(),
            program: "nope".into(),
        });
        assert_eq!(e.service(), "a");
        assert!(
            !e.to_string().contains("service `a`"),
            "the library's message leaves the service to whoever shows it: {e}"
        );
        let err = CliError::from(e);
        assert_eq!(
            err.message,
            "service `a`: command `nope` was not found in PATH"
        );
        assert_eq!(err.code, exit_codes::LAUNCH);
        let e = LaunchError::Spawn {
            service: "b".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            CliError::from(e).message,
            "service `b`: could not start the launcher: permission denied"
        );
    }

    #[test]
    fn exit_codes_follow_the_kind_of_error() {
        use crate::launch::exec::ExecError;
        use crate::supervise::lock::LockError;
        let held = LockError::Held {
            project: "demo".into(),
            holder: Some(42),
            path: "/s/locks/demo.lock".into(),
        };
        let err = CliError::from(crate::supervise::RunError::Locked(held));
        assert_eq!((err.code, err.kind), (exit_codes::REFUSED, "locked"));
        assert!(err.message.contains("pid 42"), "{}", err.message);
        let err = CliError::from(ExecError::InvalidService {
            service: "a b".into(),
            why: "it holds a space",
        });
        assert_eq!(err.code, exit_codes::USAGE);
        let err = CliError::from(crate::discover::adopt::AdoptError::UnknownService(
            "x".into(),
        ));
        assert_eq!(err.code, exit_codes::USAGE);
        let err = CliError::from(crate::supervise::detach::DetachError::Silent {
            how: "a daemon".into(),
        });
        assert_eq!(err.code, exit_codes::START_FAILED);
        assert!(err.hint.is_some());
    }
}
