//! Where a service's stdout and stderr go: journald, through a forwarder in the service's
//! scope that adds the service's fields (see `forward`), or, without journald, a log file per
//! service in the state directory. Never a pipe that nobody reads.
//!
//! A log file in the state directory is opened through the verified directory, never through
//! a link (see [`open_log_file`]).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::registry::{RegistryError, VerifiedDir};

/// journald's socket, whose presence says journald runs.
/// A log file is rotated (to `.1`) at start when it has grown past this.
const ROTATE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// journald, each line tagged `SYSLOG_IDENTIFIER=<service>` and the `CCSCOPE_*` fields;
    /// the scope tags `_SYSTEMD_USER_UNIT`.
    Journald,
    /// Append to the log file `<state_dir>/logs/<project>/<service>.log` ([`open_log_file`]).
    StateLog {
        state_dir: PathBuf,
        project: String,
        service: String,
    },
    /// Append to this file, which the caller chose (outside the state directory); opened
    /// without following a link in its last component.
    File(PathBuf),
    /// ccscope's own stdout and stderr (`ccscope exec`).
    Inherit,
}

impl OutputTarget {
    /// journald when its stream socket is there, else the service's log file under `state_dir`.
    pub fn for_service(state_dir: &Path, project: &str, service: &str) -> OutputTarget {
        if crate::audit::journal::journald_streams_available() {
            OutputTarget::Journald
        } else {
            OutputTarget::StateLog {
                state_dir: state_dir.to_path_buf(),
                project: project.to_string(),
                service: service.to_string(),
            }
        }
    }
}

/// Where [`open_log_file`] writes, for messages.
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
pub(super) fn open(target: &OutputTarget, tap: Option<OwnedFd>) -> Result<Opened, OpenError> {
    let file = match target {
        OutputTarget::Inherit => {
            return Ok(Opened {
                stdout: Stdio::inherit(),
                stderr: Stdio::inherit(),
                forward: None,
            });
        }
        OutputTarget::Journald => None,
        OutputTarget::StateLog {
            state_dir,
            project,
            service,
        } => Some(open_log_file(state_dir, project, service).map_err(OpenError::Log)?),
        OutputTarget::File(path) => Some(open_chosen_log(path)?),
    };
    let file = match (file, &tap) {
        (Some(file), None) => {
            // Nobody reads along: the service writes to the file itself.
            let copy = file.try_clone()?;
            return Ok(Opened {
                stdout: Stdio::from(file),
                stderr: Stdio::from(copy),
                forward: None,
            });
        }
        (file, _) => file.map(OwnedFd::from),
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

/// Why the output could not be opened.
pub(super) enum OpenError {
    Io(io::Error),
    /// The log file in the state directory (the message names it and says why).
    Log(RegistryError),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Opens the log file `<state_dir>/logs/<project>/<name>.log` to append to it (created
/// 0600), every step relative to the verified state directory and never through a link; a
/// file grown past 8 MiB is first renamed to `<name>.log.1`. Used for a service's output
/// without journald, and for a daemonised supervisor's own output (`name` "supervisor").
pub fn open_log_file(
    state_dir: &Path,
    project: &str,
    name: &str,
) -> Result<fs::File, RegistryError> {
    let dir = VerifiedDir::create_state(state_dir)?
        .child_dir("logs")?
        .child_dir(project)?;
    let file = format!("{name}.log");
    if dir
        .check_entry(&file)?
        .is_some_and(|len| len > ROTATE_BYTES)
    {
        dir.rename(&file, &format!("{file}.1"))?;
    }
    let (log, repair) = dir.create_file(&file, true)?;
    if let Some(repair) = repair {
        tracing::warn!("{repair}");
    }
    Ok(log)
}

/// A log file the caller named: its directory is the caller's; only its last component is
/// kept from being a link.
fn open_chosen_log(path: &Path) -> io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_is_made_0600_under_0700_directories_and_never_through_a_link() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        drop(open_log_file(&state, "demo", "web").unwrap());
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&log_file_path(&state, "demo", "web")), 0o600);
        assert_eq!(mode(&state.join("logs")), 0o700);
        assert_eq!(mode(&state.join("logs/demo")), 0o700);
        let target = tmp.path().join("precious");
        fs::write(&target, "keep").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, log_file_path(&state, "demo", "api")).unwrap();
        assert!(matches!(
            open_log_file(&state, "demo", "api"),
            Err(RegistryError::Symlink { .. })
        ));
        std::os::unix::fs::symlink(tmp.path(), state.join("logs/other")).unwrap();
        assert!(matches!(
            open_log_file(&state, "other", "web"),
            Err(RegistryError::Symlink { .. })
        ));
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(mode(&target), 0o644);
    }

    #[test]
    fn a_big_log_file_is_rotated_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let log = open_log_file(&state, "demo", "web").unwrap();
        log.set_len(ROTATE_BYTES + 1).unwrap();
        drop(log);
        let fresh = open_log_file(&state, "demo", "web").unwrap();
        assert_eq!(fresh.metadata().unwrap().len(), 0);
        let rotated = state.join("logs/demo/web.log.1");
        assert_eq!(fs::metadata(rotated).unwrap().len(), ROTATE_BYTES + 1);
    }
}
