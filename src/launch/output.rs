//! Where a service's stdout and stderr go: journald, through a forwarder in the service's
//! scope that adds the service's fields (see `forward`), or, without journald, a log file per
//! service in the state directory. Never a pipe that nobody reads.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// journald's socket, whose presence says journald runs.
const JOURNAL_SOCKET: &str = crate::audit::journal::JOURNAL_SOCKET;
/// A log file is rotated (to `.1`) at start when it has grown past this.
const ROTATE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// journald, each line tagged `SYSLOG_IDENTIFIER=<service>` and the `CCSCOPE_*` fields;
    /// the scope tags `_SYSTEMD_USER_UNIT`.
    Journald,
    /// Append to this file.
    File(PathBuf),
    /// ccscope's own stdout and stderr (`ccscope exec`).
    Inherit,
}

impl OutputTarget {
    /// journald when its socket is there, else the service's log file under `state_dir`.
    pub fn for_service(state_dir: &Path, project: &str, service: &str) -> OutputTarget {
        if Path::new(JOURNAL_SOCKET).exists() {
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

/// The read ends of the service's stdout and stderr pipes, which the trampoline hands to the
/// forwarder inside the scope, and where the forwarder writes: journald or a log file, plus
/// optionally a tap (a pipe to the supervisor, which reads it for log probes and error reports).
pub(super) struct Forward {
    pub out: OwnedFd,
    pub err: OwnedFd,
    /// The log file; None means journald.
    pub file: Option<OwnedFd>,
    pub tap: Option<OwnedFd>,
}

/// The child's stdout and stderr, and the forwarder's ends when there is one.
pub(super) struct Opened {
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub forward: Option<Forward>,
}

/// Opens the service's output. With `tap`, a pipe's write end for the forwarder to copy every
/// line to; the caller keeps the read end.
pub(super) fn open(target: &OutputTarget, tap: Option<OwnedFd>) -> io::Result<Opened> {
    let file = match target {
        OutputTarget::Inherit => {
            return Ok(Opened {
                stdout: Stdio::inherit(),
                stderr: Stdio::inherit(),
                forward: None,
            });
        }
        OutputTarget::Journald => None,
        OutputTarget::File(path) => {
            let file = open_log(path)?;
            if tap.is_none() {
                // Nobody reads along: the service writes to the file itself.
                let copy = file.try_clone()?;
                return Ok(Opened {
                    stdout: Stdio::from(file),
                    stderr: Stdio::from(copy),
                    forward: None,
                });
            }
            Some(OwnedFd::from(file))
        }
    };
    let (out_read, out_write) = crate::proc::sys::pipe()?;
    let (err_read, err_write) = crate::proc::sys::pipe()?;
    Ok(Opened {
        stdout: Stdio::from(out_write),
        stderr: Stdio::from(err_write),
        forward: Some(Forward {
            out: out_read,
            err: err_read,
            file,
            tap,
        }),
    })
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
