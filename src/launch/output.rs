//! Where a service's stdout and stderr go: a journald stream (as systemd connects its own
//! services), or, without journald, a log file per service in the state directory. Never a
//! pipe that nobody reads.

use std::fs;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// journald's socket for stdout streams.
const JOURNAL_STREAM: &str = "/run/systemd/journal/stdout";
/// A log file is rotated (to `.1`) at start when it has grown past this.
const ROTATE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// journald, tagged `SYSLOG_IDENTIFIER=<service>`; the scope tags `_SYSTEMD_USER_UNIT`.
    Journald,
    /// Append to this file.
    File(PathBuf),
    /// ccscope's own stdout and stderr (`ccscope exec`).
    Inherit,
}

impl OutputTarget {
    /// journald when its socket is there, else the service's log file under `state_dir`.
    pub fn for_service(state_dir: &Path, project: &str, service: &str) -> OutputTarget {
        if Path::new(JOURNAL_STREAM).exists() {
            OutputTarget::Journald
        } else {
            OutputTarget::File(log_file_path(state_dir, project, service))
        }
    }
}

pub fn log_file_path(state_dir: &Path, project: &str, service: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(project)
        .join(format!("{service}.log"))
}

pub(super) fn open(target: &OutputTarget, service: &str) -> io::Result<(Stdio, Stdio)> {
    match target {
        OutputTarget::Inherit => Ok((Stdio::inherit(), Stdio::inherit())),
        OutputTarget::Journald => {
            let stdout = journal_stream(service, 6)?;
            let stderr = journal_stream(service, 3)?;
            Ok((
                Stdio::from(std::os::fd::OwnedFd::from(stdout)),
                Stdio::from(std::os::fd::OwnedFd::from(stderr)),
            ))
        }
        OutputTarget::File(path) => {
            let file = open_log(path)?;
            let copy = file.try_clone()?;
            Ok((Stdio::from(file), Stdio::from(copy)))
        }
    }
}

/// A connected journald stream: the header names the identifier and priority, then every
/// line written becomes an entry.
fn journal_stream(identifier: &str, priority: u8) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(JOURNAL_STREAM).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not connect to journald at {JOURNAL_STREAM}: {e}"),
        )
    })?;
    // identifier, unit id, priority, level prefix, forward to syslog, kmsg, console.
    write!(stream, "{identifier}\n\n{priority}\n0\n0\n0\n0\n")?;
    stream.shutdown(std::net::Shutdown::Read)?;
    Ok(stream)
}

fn open_log(path: &Path) -> io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    if fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        fs::rename(path, rotated)?;
    }
    fs::OpenOptions::new().create(true).append(true).open(path)
}
