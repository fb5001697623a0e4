//! The supervisor's control socket: how `ccscope stop` tells a live supervisor to stand down
//! before it stops anything, so nothing is restarted behind its back.
//!
//! The socket is the file `<state>/run/<project>.control` ([`sockets`]): inside the state
//! directory, which only its user can enter, so no other user can take the name first or
//! connect. Both ends still check who is on the other end (SO_PEERCRED): the supervisor hears
//! only its own user or root; the client believes only a server of its own user whose pid is
//! the supervisor's, as the run record, the lock or the project's processes name it.
//!
//! The protocol is lines: the client sends `stand-down`; the supervisor finishes any launch in
//! flight, stops probing and restarting, and answers `ok <pid>`; the client stops the project
//! and then closes the connection, and the supervisor exits. The whole exchange has one
//! deadline, and an answer is read up to [`MAX_ANSWER`] bytes.
//! A verb (`restart`, `stop SVC`, `start`, `reload`, `pause`, `resume`) is one JSON line
//! ([`Request`]) on a connection of its own, answered with one JSON line ([`Reply`]) once it is
//! done; the supervisor carries a request through even when its client hangs up.
//! `{"verb":"subscribe"}` ([`Subscribe`]) is answered with a stream instead: a snapshot line,
//! then a line per state change, until the client closes its end ([`subscribe`]).
//! Without the socket (an older supervisor, another state directory's), `SIGUSR1` to its
//! verified pid asks the same, unacknowledged. A supervisor that was stopped (SIGSTOP) is
//! resumed first; one that still does not answer by the deadline is killed.

mod client;
mod find;
pub mod request;
pub mod sockets;

use std::path::Path;
use std::time::Duration;

pub use client::{
    Asking, RequestError, StandDown, StandDownReport, Subscription, send_request, stand_down,
    stand_down_unnamed, subscribe,
};
pub use request::{Reply, ReplyError, Request, ServiceChange, Subscribe};

pub use find::{
    ProjectStandDown, STAND_DOWN_DEADLINE, find_by_scopes, find_supervisor, is_ccscope,
    stand_down_project,
};
pub use sockets::{RunDir, SocketError, SocketFile, user_label};

pub const STAND_DOWN: &str = "stand-down";

/// The signal that asks a supervisor to stand down when its socket does not answer.
pub const STAND_DOWN_SIGNAL: i32 = libc::SIGUSR1;

/// The longest answer a client reads (`ok <pid>\n` is at most 14 bytes).
pub const MAX_ANSWER: usize = 64;

/// How long `--force` waits for a supervisor's answer before it kills it.
pub const FORCE_DEADLINE: Duration = Duration::from_secs(2);

/// How long a supervisor gets to exit once the stop it stood down for is done, and a killed
/// one to be gone.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The control socket's file name in `<state>/run`.
pub fn socket_file_name(project: &str) -> String {
    format!("{project}.control")
}

/// FNV-1a, 64 bit: a stable short name for a path or a config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Binds the control socket (for the supervisor, which holds the project's lock: a file left
/// there is a dead supervisor's, and is replaced). Keep the [`SocketFile`] as long as the
/// listener: dropping it removes the file.
pub fn listen(
    state_dir: &Path,
    project: &str,
) -> Result<(tokio::net::UnixListener, SocketFile), SocketError> {
    let dir = RunDir::open(state_dir)?;
    let name = socket_file_name(project);
    let path = dir.path_of(&name);
    let io = |source| SocketError::Io {
        action: "listen on",
        path: path.clone(),
        source,
    };
    let listener = dir.bind(&name)?;
    listener.set_nonblocking(true).map_err(io)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
    Ok((listener, SocketFile::new(dir, name)))
}
