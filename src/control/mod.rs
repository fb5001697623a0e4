//! The supervisor's control socket: how `ccscope stop` tells a live supervisor to stand down
//! before it stops anything, so nothing is restarted behind its back.
//!
//! The socket is abstract (`@ccscope-control/<uid>/<state dir hash>/<project>`): no file to
//! go stale, no path length limit. Abstract sockets have no permissions, so the supervisor
//! checks the peer's uid (its own, or root). The protocol is lines:
//! the client sends `stand-down`; the supervisor finishes any launch in flight, stops probing
//! and restarting, and answers `ok <pid>`; the client stops the project and then closes the
//! connection, and the supervisor exits.
//! Without the socket (an older or wedged supervisor), `SIGUSR1` to its verified pid asks the
//! same, unacknowledged.

mod find;

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use find::{STAND_DOWN_DEADLINE, find_supervisor, stand_down_project};

use crate::proc::ProcessIdentity;
use crate::proc::sys::{Signalled, signal_identified};

pub const STAND_DOWN: &str = "stand-down";

/// The signal that asks a supervisor to stand down when its socket does not answer.
pub const STAND_DOWN_SIGNAL: i32 = libc::SIGUSR1;

/// The socket's abstract name for a project in a state directory.
pub fn socket_name(state_dir: &Path, project: &str) -> String {
    format!(
        "ccscope-control/{}/{:016x}/{project}",
        crate::proc::sys::euid(),
        fnv1a(state_dir.as_os_str().as_encoded_bytes())
    )
}

/// FNV-1a, 64 bit: a stable short name for a path or a config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Binds the control socket (for the supervisor).
pub fn listen(state_dir: &Path, project: &str) -> std::io::Result<tokio::net::UnixListener> {
    let addr = SocketAddr::from_abstract_name(socket_name(state_dir, project).as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// How a supervisor was asked to stand down.
#[derive(Debug, Clone, Serialize)]
pub struct StandDownReport {
    pub pid: i32,
    /// `control socket` or `SIGUSR1`.
    pub how: &'static str,
    /// Whether it confirmed that it stopped starting and restarting services.
    pub acknowledged: bool,
}

impl StandDownReport {
    /// What a person should be told about it: nothing when the supervisor confirmed.
    pub fn warning(&self) -> Option<String> {
        (!self.acknowledged).then(|| {
            format!(
                "the supervisor (pid {}) did not answer on its control socket; it was sent SIGUSR1 to stand down",
                self.pid
            )
        })
    }
}

/// An open stand-down: keep it until the stop is done, then drop it (the supervisor exits when
/// the connection closes).
pub struct StandDown {
    pub report: StandDownReport,
    _connection: Option<UnixStream>,
}

/// Asks the supervisor `supervisor` of `project` to stand down and waits up to `timeout` for
/// its answer. None when it is no longer running.
pub fn stand_down(
    state_dir: &Path,
    project: &str,
    supervisor: ProcessIdentity,
    timeout: Duration,
) -> Option<StandDown> {
    if let Some(connection) = ask(state_dir, project, timeout) {
        return Some(StandDown {
            report: StandDownReport {
                pid: supervisor.pid,
                how: "control socket",
                acknowledged: true,
            },
            _connection: Some(connection),
        });
    }
    match signal_identified(supervisor, STAND_DOWN_SIGNAL) {
        Ok(Signalled::Sent) => Some(StandDown {
            report: StandDownReport {
                pid: supervisor.pid,
                how: "SIGUSR1",
                acknowledged: false,
            },
            _connection: None,
        }),
        _ => None,
    }
}

/// Asks whatever supervisor answers on the project's control socket, when neither the
/// registry nor the lock names one (both gone with their state directory's files). Its pid
/// comes from its answer.
pub fn stand_down_unnamed(state_dir: &Path, project: &str, timeout: Duration) -> Option<StandDown> {
    let (connection, pid) = ask_with_pid(state_dir, project, timeout)?;
    Some(StandDown {
        report: StandDownReport {
            pid,
            how: "control socket",
            acknowledged: true,
        },
        _connection: Some(connection),
    })
}

fn ask(state_dir: &Path, project: &str, timeout: Duration) -> Option<UnixStream> {
    ask_with_pid(state_dir, project, timeout).map(|(c, _)| c)
}

fn ask_with_pid(state_dir: &Path, project: &str, timeout: Duration) -> Option<(UnixStream, i32)> {
    let addr = SocketAddr::from_abstract_name(socket_name(state_dir, project).as_bytes()).ok()?;
    let mut stream = UnixStream::connect_addr(&addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    writeln!(stream, "{STAND_DOWN}").ok()?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).ok()?;
    let pid = answer.strip_prefix("ok")?.trim().parse().unwrap_or(0);
    Some((stream, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_by_state_dir_and_project() {
        let a = socket_name(Path::new("/s/a"), "demo");
        assert_ne!(a, socket_name(Path::new("/s/b"), "demo"));
        assert_ne!(a, socket_name(Path::new("/s/a"), "other"));
        assert_eq!(a, socket_name(Path::new("/s/a"), "demo"));
    }
}
