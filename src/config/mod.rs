//! ccscope.toml: its schema, validation with file:line:column errors, the dependency graph,
//! lookup, and the built-in profiles.
//!
//! Text becomes a [`Config`] in two steps: `read` has serde read it into the spanned `schema`
//! types, piece by piece so that every piece that does not fit is reported, then `validate`
//! checks everything it can without running anything and applies defaults. Every later part
//! of ccscope works from the validated model alone.

mod diagnostic;
pub mod duration;
mod env_file;
pub mod graph;
pub mod init;
mod model;
pub mod profiles;
mod read;
mod redirects;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use crate::proc::signal::{SIGNALS, TERM as DEFAULT_STOP_SIGNAL};
pub use diagnostic::{ConfigError, Diagnostic, Location};
pub use env_file::{
    EnvFileError, EnvSyntaxError, MAX_ENV_FILE_BYTES, parse_env_file, read_env_file,
};
pub use model::*;
pub use read::MAX_CONFIG_BYTES;
pub use redirects::{Redirect, Route};
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
    let bytes = read::read_file(&path)?;
    let base = path.parent().unwrap_or(cwd).to_path_buf();
    let shown = request
        .file
        .clone()
        .unwrap_or_else(|| relative_to(&path, cwd));
    let source = ConfigSource::File(shown);
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
        diagnostics: vec![not_utf8(
            &source.display_name(),
            e.as_bytes(),
            &e.utf8_error(),
        )],
    })?;
    parse_config(&text, source, &base)
}

/// Where the first byte that is not UTF-8 sits, and what to do about it.
fn not_utf8(file: &str, bytes: &[u8], e: &std::str::Utf8Error) -> Diagnostic {
    let offset = e.valid_up_to();
    // Everything before `offset` is valid UTF-8, so lines and columns count as elsewhere.
    let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
    Diagnostic {
        location: Location::of_offset(file, before, offset),
        message: format!(
            "the file is not valid UTF-8: byte {:#04x} at offset {offset} does not belong to a \
             UTF-8 character",
            bytes[offset]
        ),
        hint: Some(
            "save the file as UTF-8 (`iconv -f LATIN1 -t UTF-8` converts a Latin-1 file)".into(),
        ),
    }
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
