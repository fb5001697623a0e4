//! `ccscope init`: the commented example stack, with the project's name, written where asked
//! without ever leaving a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ConfigSource, check_unit_name_part, parse_config, profiles};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid project name \"{name}\": {why}")]
    BadName { name: String, why: &'static str },
    #[error("{} already exists; it was left untouched", .0.display())]
    Exists(PathBuf),
    #[error("the built-in example is invalid: {0}")]
    BadTemplate(String),
    #[error("could not write {}: {}", path.display(), crate::proc::describe_io(source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The example stack, named `name` (the template's own name without one). It is validated
/// before it is returned: init never writes a file that `check` rejects.
pub fn example(name: Option<&str>, base_dir: &Path) -> Result<String, InitError> {
    let mut text = profiles::EXAMPLE.to_string();
    if let Some(name) = name {
        check_unit_name_part(name).map_err(|why| InitError::BadName {
            name: name.to_string(),
            why,
        })?;
        text = text.replacen(
            "name = \"context-cleaner\"",
            &format!("name = \"{name}\""),
            1,
        );
    }
    parse_config(&text, ConfigSource::Profile("example".into()), base_dir)
        .map_err(|e| InitError::BadTemplate(e.to_string()))?;
    Ok(text)
}

/// Writes the example to `path`; an existing file is replaced only with `force`.
pub fn init(
    path: &Path,
    name: Option<&str>,
    force: bool,
    base_dir: &Path,
) -> Result<(), InitError> {
    let text = example(name, base_dir)?;
    if path.exists() && !force {
        return Err(InitError::Exists(path.to_path_buf()));
    }
    write_atomically(path, text.as_bytes()).map_err(|source| InitError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes to a temporary file beside `path`, then renames it over: never a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map_or_else(
        || "ccscope.toml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
