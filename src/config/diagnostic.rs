//! Configuration errors that point at file:line:column and say what to do.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A place in a configuration text, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line and column (in characters) of byte `offset` in `text`.
    pub fn of_offset(file: &str, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_string(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no ccscope.toml in {} or any parent directory", start.display())]
    NotFound { start: PathBuf },
    #[error("could not read configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "configuration {} is larger than ccscope reads ({}; the limit is {} KiB)",
        path.display(),
        size.map_or("it grew while being read".to_string(), |s| format!("{s} bytes")),
        limit / 1024
    )]
    TooLarge {
        path: PathBuf,
        /// Its size when it was opened; None when it grew past the limit while being read.
        size: Option<u64>,
        limit: u64,
    },
    #[error("{}", render_all(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("there is no built-in profile `{name}`")]
    UnknownProfile {
        name: String,
        available: Vec<&'static str>,
    },
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

impl ConfigError {
    /// What the user can do next, where ccscope knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NotFound { .. } => Some(
                "run `ccscope init` to write an example, or name one with -f FILE or CCSCOPE_CONFIG"
                    .into(),
            ),
            ConfigError::Read { .. } => Some("check the path and its permissions".into()),
            ConfigError::NotAFile { .. } => Some(
                "name a regular file with -f or CCSCOPE_CONFIG (a pipe or a device could block or \
                 never end); to use generated text, write it to a file first"
                    .into(),
            ),
            ConfigError::TooLarge { .. } => Some(
                "a ccscope.toml is a few kilobytes: check that -f or CCSCOPE_CONFIG names the right file"
                    .into(),
            ),
            ConfigError::Invalid { .. } => None,
            ConfigError::UnknownProfile { name, available } => {
                let names: Vec<&str> = available.to_vec();
                Some(match crate::suggest::closest(name, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? built-in profiles: {}", names.join(", ")),
                    None if names.is_empty() => "this build has no built-in profiles".into(),
                    None => format!("built-in profiles: {}", names.join(", ")),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let text = "a = 1\nbb = 2\n  ccc = 3";
        assert_eq!(Location::of_offset("f", text, 0).to_string(), "f:1:1");
        assert_eq!(Location::of_offset("f", text, 6).to_string(), "f:2:1");
        assert_eq!(Location::of_offset("f", text, 15).to_string(), "f:3:3");
        assert_eq!(Location::of_offset("f", text, 999).to_string(), "f:3:10");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "name = \"é\" x";
        assert_eq!(
            Location::of_offset("f", text, text.find('x').unwrap()).column,
            12
        );
    }
}
