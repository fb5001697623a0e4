//! From TOML text to the raw schema, a piece at a time, so that every piece that does not
//! fit is reported rather than only the first one serde meets.
//!
//! The text is parsed once into spanned TOML values (a syntax error stops there: what follows
//! it cannot be read reliably). Then `[project]`, `[defaults]` and each service are
//! deserialized on their own; a table that does not fit is tried again one key at a time, so
//! that an unknown key and a wrong type in one service are both found. Spans stay those of the
//! whole text, so every error keeps its line and column.
//!
//! The text itself comes from [`read_file`]: a regular file only, up to
//! [`MAX_CONFIG_BYTES`], so that a wrong `-f` (a device, a FIFO, a huge file) fails at once
//! instead of blocking or filling memory.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Error, ValueDeserializer};

use super::ConfigError;
use super::schema::{RawConfig, RawDefaults, RawProject, RawService};

/// The largest configuration file ccscope reads: 1 MiB, hundreds of times a real one, and a
/// bound on what a wrong `-f` can make it read. The README says it too.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The bytes of the configuration file at `path` (a link to one is fine: it is only read).
/// Anything but a regular file is refused without reading from it, and so is a file larger
/// than [`MAX_CONFIG_BYTES`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    read_bounded(path, MAX_CONFIG_BYTES)
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ConfigError> {
    read_regular(path, limit).map_err(|e| match e {
        Unreadable::Io(source) => ConfigError::Read {
            path: path.to_path_buf(),
            source,
        },
        Unreadable::NotAFile(what) => ConfigError::NotAFile {
            path: path.to_path_buf(),
            what,
        },
        Unreadable::TooLarge { size } => ConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        },
    })
}

/// Why [`read_regular`] read nothing; each reader of a file words it for its own kind of file.
#[derive(Debug)]
pub(crate) enum Unreadable {
    Io(std::io::Error),
    /// Not a regular file: what it is, in words ("a FIFO (named pipe)").
    NotAFile(&'static str),
    /// Larger than the limit: its size when the fstat saw it, None when it grew while read.
    TooLarge {
        size: Option<u64>,
    },
}

/// The bytes of the regular file at `path`, at most `limit` of them. Anything but a regular
/// file is refused without reading from it (a FIFO cannot block: it is opened non-blocking),
/// and so is a file larger than `limit`, even one that grows while it is read.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, Unreadable> {
    // Non-blocking, so that opening a FIFO returns at once (to be refused below) instead of
    // waiting for a writer; a regular file ignores the flag.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(Unreadable::Io)?;
    let meta = file.metadata().map_err(Unreadable::Io)?;
    if !meta.is_file() {
        return Err(Unreadable::NotAFile(describe(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(Unreadable::TooLarge {
            size: Some(meta.len()),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than the limit tells a file that grew past it since the fstat.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Unreadable::TooLarge { size: None });
    }
    Ok(bytes)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown type"
    }
}

/// What could be read, and every error met on the way.
#[derive(Debug, Default)]
pub(crate) struct RawRead {
    /// Every piece that fits. A service or `[project]` that does not is left out of it.
    pub raw: RawConfig,
    /// Each with the span of what it is about.
    pub errors: Vec<Error>,
    /// A `[project]` table was there but did not fit: it is not "missing".
    pub project_unreadable: bool,
    /// Services whose table did not fit, by name with the name's span: they exist (a
    /// dependency on one is not on an unknown service) but are not validated further.
    pub unreadable_services: BTreeMap<String, Range<usize>>,
}

/// Reads `text`; `Err` is a TOML syntax error, the only one that stops reading.
pub(crate) fn read(text: &str) -> Result<RawRead, Error> {
    let root = DeTable::parse(text)?;
    let mut read = RawRead::default();
    for (key, value) in root.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("project", _) => {
                let (project, errors) = fit::<Spanned<RawProject>>(value);
                if errors.is_empty() {
                    read.raw.project = project;
                } else {
                    read.project_unreadable = true;
                    read.errors.extend(errors);
                }
            }
            ("defaults", _) => {
                // What fits of the defaults still applies, so that services are checked
                // against them as they will run.
                let (defaults, errors) = fit::<RawDefaults>(value);
                read.raw.defaults = defaults.unwrap_or_default();
                read.errors.extend(errors);
            }
            ("services", DeValue::Table(services)) => {
                for (name, service) in services {
                    let (raw, errors) = fit::<Spanned<RawService>>(service);
                    let name = Spanned::new(name.span(), name.get_ref().to_string());
                    match raw {
                        Some(raw) if errors.is_empty() => {
                            read.raw.services.insert(name, raw);
                        }
                        _ => {
                            read.unreadable_services
                                .insert(name.get_ref().clone(), name.span());
                            read.errors.extend(errors);
                        }
                    }
                }
            }
            ("redirects", _) => {
                let (redirects, errors) = fit::<super::redirects::RawRedirects>(value);
                read.raw.redirects = redirects.unwrap_or_default();
                read.errors.extend(errors);
            }
            // An unknown table, or `services` that is not a table: serde says what is wrong
            // (and which keys would be right) when it reads that key alone.
            _ => {
                let mut alone = DeTable::new();
                alone.insert(key.clone(), value.clone());
                let alone = Spanned::new(root.span(), DeValue::Table(alone));
                if let Err(e) = deserialize::<RawConfig>(&alone) {
                    read.errors.push(e);
                }
            }
        }
    }
    Ok(read)
}

/// `value` as a `T`; if it does not fit and is a table, each of its keys alone, so that every
/// key that does not fit is an error of its own. The `T` returned then holds the keys that
/// fit (for a type whose keys are all optional, as every table of the schema is).
fn fit<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> (Option<T>, Vec<Error>) {
    let whole = match deserialize::<T>(value) {
        Ok(t) => return (Some(t), Vec::new()),
        Err(e) => e,
    };
    let DeValue::Table(table) = value.get_ref() else {
        return (None, vec![whole]);
    };
    let mut errors = Vec::new();
    let mut fitting = DeTable::new();
    for (key, item) in table {
        let mut alone = DeTable::new();
        alone.insert(key.clone(), item.clone());
        match deserialize::<T>(&Spanned::new(value.span(), DeValue::Table(alone))) {
            Ok(_) => {
                fitting.insert(key.clone(), item.clone());
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        // Only the keys together do not fit: report what the whole said.
        errors.push(whole);
    }
    let rest = deserialize::<T>(&Spanned::new(value.span(), DeValue::Table(fitting))).ok();
    (rest, errors)
}

fn deserialize<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> Result<T, Error> {
    T::deserialize(ValueDeserializer::from(value.clone()))
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.toml");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        match read_bounded(&path, 99) {
            Err(ConfigError::TooLarge {
                size: Some(100),
                limit: 99,
                ..
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A blocking open of a FIFO without a writer would never return: this test ending
        // at all is half of what it checks.
        for (path, what) in [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (Path::new("/dev/zero"), "a character device"),
            (tmp.path(), "a directory"),
        ] {
            match read_file(path) {
                Err(ConfigError::NotAFile { what: found, .. }) => assert_eq!(found, what),
                other => panic!("{}: expected NotAFile, got {other:?}", path.display()),
            }
        }
    }
}
