//! Env files (`env_file = ".env"`): read and parsed here, once, for both `ccscope check` and
//! the launch that sets their variables, so that a file `check` passes is one `run` can use.
//!
//! A file is read only if it is a regular file of at most [`MAX_ENV_FILE_BYTES`] (a FIFO would
//! block, a device or a huge file never end), and a NUL, a byte that is not UTF-8 or a line
//! that is not `KEY=value` is refused with the file's path, line and column.

use std::path::{Path, PathBuf};

use super::Location;
use super::read::{Unreadable, read_regular};

/// The largest env file ccscope reads: 1 MiB, far beyond a real one.
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// Why an env file cannot be used. The messages do not name the service: whoever shows one
/// says which service it is about.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("could not read env file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("env file {} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "env file {} is larger than ccscope reads ({}; the limit is {} KiB)",
        path.display(),
        size.map_or("it grew while being read".to_string(), |s| format!("{s} bytes")),
        limit / 1024
    )]
    TooLarge {
        path: PathBuf,
        /// Its size when opened; None when it grew past the limit while being read.
        size: Option<u64>,
        limit: u64,
    },
    #[error("env file {location}: {reason}")]
    Syntax { location: Location, reason: String },
}

impl EnvFileError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            EnvFileError::Read { .. } => {
                "check the path (relative to the configuration file) and its permissions".into()
            }
            EnvFileError::NotAFile { .. } => {
                "name a regular file in `env_file` (a pipe or a device could block or never end)"
                    .into()
            }
            EnvFileError::TooLarge { .. } => {
                "an env file holds a few KEY=value lines: check that `env_file` names the right file"
                    .into()
            }
            EnvFileError::Syntax { .. } => {
                "write one KEY=value per line, in UTF-8 text without NUL bytes; # starts a comment"
                    .into()
            }
        }
    }
}

/// A line that cannot be read: where (a byte offset in the whole text) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSyntaxError {
    pub offset: usize,
    pub reason: String,
}

/// The variables of the env file at `path`, in file order.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let bytes = read_bounded(path, MAX_ENV_FILE_BYTES)?;
    let file = path.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let offset = e.valid_up_to();
        // What comes before the first bad byte is UTF-8: lines and columns count as elsewhere.
        let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        EnvFileError::Syntax {
            location: Location::of_offset(&file, before, offset),
            reason: format!(
                "byte {:#04x} is not UTF-8: an env file is UTF-8 text",
                bytes[offset]
            ),
        }
    })?;
    parse_env_file(text).map_err(|e| EnvFileError::Syntax {
        location: Location::of_offset(&file, text, e.offset),
        reason: e.reason,
    })
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, EnvFileError> {
    read_regular(path, limit).map_err(|e| match e {
        Unreadable::Io(e) => EnvFileError::Read {
            path: path.to_path_buf(),
            reason: crate::proc::describe_io(&e),
        },
        Unreadable::NotAFile(what) => EnvFileError::NotAFile {
            path: path.to_path_buf(),
            what,
        },
        Unreadable::TooLarge { size } => EnvFileError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        },
    })
}

/// `KEY=value` lines; blank lines and `#` comments skipped; an `export ` prefix and matching
/// surrounding quotes are removed. A NUL anywhere is refused: it cannot be passed in an
/// environment, and a file holding one is not text.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvSyntaxError> {
    if let Some(offset) = text.find('\0') {
        return Err(EnvSyntaxError {
            offset,
            reason: "a NUL byte: an environment variable cannot hold one".into(),
        });
    }
    let mut vars = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = start;
        start += raw.len();
        let body = raw.trim_start();
        let mut at = line_start + (raw.len() - body.len());
        let line = body.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export ") {
            Some(rest) => {
                at += "export ".len();
                rest
            }
            None => line,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(EnvSyntaxError {
                offset: at,
                reason: format!("`{line}` has no `=`"),
            });
        };
        let key_at = at + (key.len() - key.trim_start().len());
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvSyntaxError {
                offset: key_at,
                reason: format!("`{key}` is not a variable name"),
            });
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| value.strip_prefix(*a)?.strip_suffix(*b))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(text: &str) -> (String, String) {
        let e = parse_env_file(text).unwrap_err();
        (
            Location::of_offset("f", text, e.offset).to_string(),
            e.reason,
        )
    }

    #[test]
    fn env_files_read_like_dotenv() {
        let text = "# comment\nA=1\nexport B = \"two words\"\n\nC='x=y'\r\n  D = é \n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into()),
                ("D".into(), "é".into()),
            ]
        );
        assert_eq!(parse_env_file("").unwrap(), vec![]);
        assert_eq!(
            parse_env_file("A=1").unwrap(),
            vec![("A".into(), "1".into())]
        );
    }

    #[test]
    fn a_line_that_is_not_key_value_is_located_at_its_line_and_column() {
        assert_eq!(
            located("A=1\n  nonsense\n"),
            ("f:2:3".into(), "`nonsense` has no `=`".into())
        );
        assert_eq!(
            located("A=1\nexport  BAD-NAME=1\n"),
            ("f:2:9".into(), "`BAD-NAME` is not a variable name".into())
        );
        assert_eq!(
            located("é=1\n").1,
            "`é` is not a variable name",
            "names are ASCII"
        );
        assert_eq!(located("=1\n").0, "f:1:1");
    }

    #[test]
    fn a_nul_is_refused_where_it_is_even_in_a_comment() {
        let (at, why) = located("A=1\nB=tw\0o\n");
        assert_eq!(at, "f:2:5");
        assert!(why.contains("NUL"), "{why}");
        // Columns count characters: `é` is one.
        assert_eq!(located("A=1\nB=é\0\n").0, "f:2:4");
        assert_eq!(located("# a\0comment\n").0, "f:1:4");
    }

    fn tmp_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (tmp, path)
    }

    #[test]
    fn a_file_is_read_and_its_errors_carry_its_path_line_and_column() {
        let (_tmp, path) = tmp_with(".env", b"A=1\nB=x\0\n");
        match read_env_file(&path) {
            Err(e @ EnvFileError::Syntax { .. }) => assert_eq!(
                e.to_string(),
                format!(
                    "env file {}:2:4: a NUL byte: an environment variable cannot hold one",
                    path.display()
                )
            ),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        let (_tmp, path) = tmp_with(".env", b"A=1\nB=\xe9t\xe9\n");
        match read_env_file(&path) {
            Err(EnvFileError::Syntax { location, reason }) => {
                assert_eq!((location.line, location.column), (2, 3));
                assert!(reason.contains("0xe9 is not UTF-8"), "{reason}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        let (_tmp, path) = tmp_with(".env", b"A=1\n");
        assert_eq!(
            read_env_file(&path).unwrap(),
            vec![("A".into(), "1".into())]
        );
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let (tmp, path) = tmp_with(".env", &[b'#'; 100]);
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_bounded(&path, 99),
            Err(EnvFileError::TooLarge {
                size: Some(100),
                limit: 99,
                ..
            })
        ));
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Refused at once, not a read that waits for a writer.
        assert!(matches!(
            read_env_file(&fifo),
            Err(EnvFileError::NotAFile {
                what: "a FIFO (named pipe)",
                ..
            })
        ));
        assert!(matches!(
            read_env_file(tmp.path()),
            Err(EnvFileError::NotAFile {
                what: "a directory",
                ..
            })
        ));
        let missing = read_env_file(&tmp.path().join("missing.env")).unwrap_err();
        assert!(matches!(missing, EnvFileError::Read { .. }), "{missing:?}");
        assert!(
            missing.to_string().contains("missing.env")
                && !missing.to_string().contains("os error"),
            "{missing}"
        );
    }
}
