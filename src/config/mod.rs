//! ccscope.toml: its schema, validation with file:line:column errors, the dependency graph,
//! lookup, and the built-in profiles.
//!
//! Text becomes a [`Config`] in two steps: serde reads it into the spanned `schema` types,
//! then `validate` checks everything it can without running anything and applies defaults.
//! Every later part of ccscope works from the validated model alone.

mod diagnostic;
pub mod duration;
pub mod graph;
mod model;
pub mod profiles;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use crate::proc::signal::{SIGNALS, TERM as DEFAULT_STOP_SIGNAL};
pub use diagnostic::{ConfigError, Diagnostic, Location};
pub use model::*;
pub use validate::{RESERVED_ENV, check_unit_name_part, parse_config};

/// The file name looked up in the current directory and its parents.
pub const FILE_NAME: &str = "ccscope.toml";

/// Where to read the configuration from, as the command line and environment said.
#[derive(Debug, Clone, Default)]
pub struct ConfigRequest {
    /// `-f FILE` or `CCSCOPE_CONFIG`.
    pub file: Option<PathBuf>,
    /// `--profile NAME`.
    pub profile: Option<String>,
}

/// Finds, reads and validates the configuration.
pub fn load(request: &ConfigRequest, cwd: &Path) -> Result<Config, ConfigError> {
    if let Some(name) = &request.profile {
        let text = profiles::find(name).ok_or_else(|| ConfigError::UnknownProfile {
            name: name.clone(),
            available: profiles::names(),
        })?;
        return parse_config(&text, ConfigSource::Profile(name.clone()), cwd);
    }
    let path = match &request.file {
        Some(file) => cwd.join(file),
        None => find_upwards(cwd).ok_or_else(|| ConfigError::NotFound {
            start: cwd.to_path_buf(),
        })?,
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(cwd).to_path_buf();
    let shown = request
        .file
        .clone()
        .unwrap_or_else(|| relative_to(&path, cwd));
    parse_config(&text, ConfigSource::File(shown), &base)
}

/// `./ccscope.toml`, then the same name in each parent directory.
pub fn find_upwards(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
}

fn relative_to(path: &Path, cwd: &Path) -> PathBuf {
    path.strip_prefix(cwd)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests;
