//! What is checked before anything is created: the program exists and may be executed, the
//! working directory exists, the env files are readable and parse. A failure here leaves nothing
//! behind.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::LaunchSpec;
// Re-exported where it always was; the one parser is the configuration's.
pub use crate::config::parse_env_file;
use crate::config::{EnvFileError, read_env_file};

/// What makes a service impossible to start. The messages do not name the service: whoever
/// shows one says which service it is about, once.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("command `{program}` was not found in PATH")]
    NotFound { service: String, program: String },
    #[error("{} is not an executable file", path.display())]
    NotExecutable { service: String, path: PathBuf },
    #[error("working directory {} does not exist", path.display())]
    NoCwd { service: String, path: PathBuf },
    /// Read and parsed as `ccscope check` does.
    #[error("{source}")]
    EnvFile {
        service: String,
        #[source]
        source: EnvFileError,
    },
}

impl PreflightError {
    /// The service the check failed for.
    pub fn service(&self) -> &str {
        match self {
            PreflightError::NotFound { service, .. }
            | PreflightError::NotExecutable { service, .. }
            | PreflightError::NoCwd { service, .. }
            | PreflightError::EnvFile { service, .. } => service,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            PreflightError::NotFound { .. } => {
                "install it, fix the name, or give its full path".into()
            }
            PreflightError::NotExecutable { path, .. } => {
                format!("check it is a program and `chmod +x {}`", path.display())
            }
            PreflightError::NoCwd { .. } => {
                "create the directory or fix `cwd` in the configuration".into()
            }
            PreflightError::EnvFile { source, .. } => source.hint(),
        })
    }
}

pub(super) struct Prepared {
    pub program: PathBuf,
    pub env: BTreeMap<OsString, OsString>,
}

pub(super) fn prepare(spec: &LaunchSpec) -> Result<Prepared, PreflightError> {
    if let Some(cwd) = &spec.cwd {
        if !cwd.is_dir() {
            return Err(PreflightError::NoCwd {
                service: spec.service.clone(),
                path: cwd.clone(),
            });
        }
    }
    // vars_os: a variable that is not UTF-8 is passed on as it is, never a panic.
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    // The supervisor's own unit's: a service that speaks sd_notify must not tell it (a
    // `notify` readiness probe gives the service a socket of its own).
    for unit_only in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        env.remove(std::ffi::OsStr::new(unit_only));
    }
    for file in &spec.env_files {
        let parsed = read_env_file(file).map_err(|source| PreflightError::EnvFile {
            service: spec.service.clone(),
            source,
        })?;
        env.extend(parsed.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
    let program = resolve(spec, &env)?;
    Ok(Prepared { program, env })
}

/// The program's path: as given if it holds a `/` (relative to the working directory), else
/// the first executable match in the service's PATH.
fn resolve(
    spec: &LaunchSpec,
    env: &BTreeMap<OsString, OsString>,
) -> Result<PathBuf, PreflightError> {
    let name = spec.argv.first().map(String::as_str).unwrap_or("");
    if name.contains('/') {
        let path = match &spec.cwd {
            Some(cwd) if Path::new(name).is_relative() => cwd.join(name),
            _ => PathBuf::from(name),
        };
        if !path.exists() {
            return Err(PreflightError::NotFound {
                service: spec.service.clone(),
                program: name.to_string(),
            });
        }
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(PreflightError::NotExecutable {
                service: spec.service.clone(),
                path,
            })
        };
    }
    let search = env
        .get(std::ffi::OsStr::new("PATH"))
        .and_then(|p| p.to_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let mut found_not_executable = None;
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            if is_executable(&candidate) {
                return Ok(candidate);
            }
            found_not_executable.get_or_insert(candidate);
        }
    }
    Err(match found_not_executable {
        Some(path) => PreflightError::NotExecutable {
            service: spec.service.clone(),
            path,
        },
        None => PreflightError::NotFound {
            service: spec.service.clone(),
            program: name.to_string(),
        },
    })
}

fn is_executable(path: &Path) -> bool {
    path.is_file() && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}
