//! `run --detach`: the supervisor runs on in the background — as the transient user service
//! `ccscope-<project>.service` where systemd is the backend, else as a daemon in a session of
//! its own with its output in the state directory — and reports its start back to the
//! foreground half, which relays it and returns once the stack is ready (or failed).
//!
//! The detached supervisor is the same command line minus `--detach`, plus the hidden
//! `--report-to <socket>`: it parses exactly the options the foreground half parsed (with the
//! same working directory and environment), so no second serialiser of the flags can drift
//! from clap's. The report is JSON lines on a Unix socket, typed both ways ([`ReportLine`]):
//! the supervisor's [`Progress`] lines, or one `failed` line saying why it could not start at
//! all.
//!
//! The socket is the file `<state>/run/detach-<run id>.sock`, in a directory only this user
//! can enter, and each end checks the other (SO_PEERCRED): the foreground half hears only
//! the process it started (the daemon's pid, or a process in the transient unit) of its own
//! user, and ignores any other connection until its deadline; the supervisor reports only to
//! a listener of its own user. The file is removed once the report is read.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{self, LockError};
use super::progress::{Progress, ProgressEvent};
use crate::contain::{AnyContainment, BackendChoice, BackendKind, BusKind, ContainError, detect};
use crate::control::{RunDir, SocketError, SocketFile, user_label};
use crate::proc::sys;

/// The flag that asks for a detached run, removed from the detached supervisor's argv.
pub const DETACH_FLAG: &str = "--detach";
/// The hidden flag that tells a detached supervisor where to report.
pub const REPORT_TO_FLAG: &str = "--report-to";
/// How long the detached supervisor has to connect back (it does so as its first action).
pub const REPORT_DEADLINE: Duration = Duration::from_secs(30);
/// The longest report line read; a longer one is skipped.
pub const MAX_REPORT_LINE: usize = 64 * 1024;

/// One line on the report socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportLine {
    /// The detached supervisor could not start: `{"event": "failed", "error": {…}}`.
    Failed {
        event: FailedEvent,
        error: FailedStart,
    },
    Progress(Progress),
}

/// The `event` of a `failed` line (a tag of its own: no progress line has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedEvent {
    Failed,
}

/// Why the detached supervisor could not start, as its command line would have said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedStart {
    /// The exit code it would have exited with.
    pub code: i32,
    #[serde(default)]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
}

/// The detached supervisor's end of the report socket.
pub struct ReportSocket(UnixStream);

impl ReportSocket {
    /// Connects to the foreground half at the socket file `path`; None when it is gone, the
    /// path is no socket in a private directory of ours, or the listener is another user's.
    pub fn connect(path: &str) -> Option<ReportSocket> {
        let (dir, name) = RunDir::of_socket(Path::new(path))
            .map_err(|e| tracing::debug!("report socket not used: {e}"))
            .ok()?;
        let stream = dir.connect(&name).ok()?;
        let peer = sys::peer_cred(&stream).ok()?;
        if peer.uid != sys::euid() {
            tracing::debug!(
                "report socket {path} is held by {}: not reported to",
                user_label(peer.uid)
            );
            return None;
        }
        Some(ReportSocket(stream))
    }

    /// Sends one progress line. False when the foreground half is gone, or has what it
    /// waited for (the stack is ready): the socket is done with then.
    pub fn progress(&mut self, p: &Progress) -> bool {
        self.send(p) && p.event != ProgressEvent::Ready
    }

    /// Says why the supervisor could not start.
    pub fn failed(&mut self, error: FailedStart) {
        self.send(&ReportLine::Failed {
            event: FailedEvent::Failed,
            error,
        });
    }

    fn send(&mut self, line: &impl Serialize) -> bool {
        match serde_json::to_string(line) {
            Ok(text) => writeln!(self.0, "{text}").is_ok(),
            Err(_) => false,
        }
    }
}

/// What the foreground half needs to start the detached supervisor.
#[derive(Debug, Clone)]
pub struct DetachRequest {
    pub project: String,
    pub state_dir: PathBuf,
    /// The detached supervisor's working directory (the foreground half's).
    pub cwd: PathBuf,
    /// The foreground command line as given (`std::env::args_os()`); it holds `--detach`.
    pub args: Vec<OsString>,
    pub choice: BackendChoice,
    pub bus: BusKind,
}

#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("could not open a report socket: {0}")]
    ReportSocket(SocketError),
    #[error(
        "the supervisor's unit {unit} is already running: this project has a supervisor started from another state directory"
    )]
    UnitExists { unit: String },
    #[error("could not find the running ccscope binary: {}", crate::proc::describe_io(.0))]
    Launcher(std::io::Error),
    #[error("could not start the supervisor as a user service: {0}")]
    Service(ContainError),
    #[error("could not open the supervisor's log: {0}")]
    Log(crate::registry::RegistryError),
    #[error("could not start the supervisor {}: {}", .program.display(), crate::proc::describe_io(.source))]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the detached supervisor ({how}) did not report within {}s", REPORT_DEADLINE.as_secs())]
    Silent { how: String },
}

impl DetachError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DetachError::Silent { .. } => Some(
                "its own output says why: `journalctl --user -u ccscope-<project>.service`, or the daemon's log file".into(),
            ),
            DetachError::Log(e) => e.hint(),
            DetachError::UnitExists { unit } => Some(format!(
                "`ccscope stop` stands it down and stops the project from any state directory (or `systemctl --user stop {unit}`)"
            )),
            DetachError::ReportSocket(e) => e.hint(),
            _ => None,
        }
    }
}

/// Who may report: the process that was started.
#[derive(Debug, Clone)]
enum Expected {
    /// The daemon's pid.
    Pid(i32),
    /// A process in this transient unit's cgroup.
    Unit(String),
}

impl Expected {
    fn admits(&self, pid: i32) -> bool {
        match self {
            Expected::Pid(expected) => *expected == pid,
            Expected::Unit(unit) => in_unit(pid, unit),
        }
    }
}

/// Whether `pid`'s cgroup (v2) is the unit `unit`'s (its last component is the unit's name).
fn in_unit(pid: i32, unit: &str) -> bool {
    let mut text = String::new();
    let read = std::fs::File::open(format!("/proc/{pid}/cgroup"))
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text));
    read.is_ok()
        && text
            .lines()
            .filter_map(|l| l.strip_prefix("0::"))
            .any(|path| path.rsplit('/').next() == Some(unit))
}

/// A detached supervisor, started, whose report is still to be read.
pub struct Detached {
    /// How it runs, for people: the unit's name, or the daemon's pid and log file.
    pub how: String,
    listener: UnixListener,
    expected: Expected,
    file: SocketFile,
}

impl Detached {
    /// Its report lines, once it has connected (within [`REPORT_DEADLINE`]); lines that
    /// cannot be read are skipped, and the lines end when it closes the socket. A connection
    /// from any other process, or another user, is closed and the wait goes on.
    pub fn reports(self) -> Result<impl Iterator<Item = ReportLine>, DetachError> {
        let silent = || DetachError::Silent {
            how: self.how.clone(),
        };
        let deadline = Instant::now() + REPORT_DEADLINE;
        let me = sys::euid();
        let stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !sys::wait_readable(&self.listener, left).unwrap_or(false) {
                return Err(silent());
            }
            let Ok((stream, _)) = self.listener.accept() else {
                continue;
            };
            match sys::peer_cred(&stream) {
                Ok(peer) if peer.uid == me && self.expected.admits(peer.pid) => break stream,
                Ok(peer) => tracing::debug!(
                    "report socket {}: pid {} of {} is not the supervisor that was started: closed",
                    self.file.path().display(),
                    peer.pid,
                    user_label(peer.uid)
                ),
                Err(e) => tracing::debug!("report socket: no peer credentials ({e}): closed"),
            }
        };
        // Heard from: nobody else is to connect.
        drop(self.file);
        Ok(bounded_lines(stream).filter_map(|line| serde_json::from_str(&line).ok()))
    }
}

/// The lines of `stream`, each read up to [`MAX_REPORT_LINE`] bytes; a longer one is skipped
/// whole. They end with the stream (or a read error).
fn bounded_lines(stream: UnixStream) -> impl Iterator<Item = String> {
    let mut reader = BufReader::new(stream);
    std::iter::from_fn(move || {
        loop {
            let mut line = Vec::new();
            let n = (&mut reader)
                .take(MAX_REPORT_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .ok()?;
            if n == 0 {
                return None;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if n <= MAX_REPORT_LINE {
                // The stream ended inside the line.
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            // Too long: skip to its end.
            loop {
                let buf = reader.fill_buf().ok()?;
                if buf.is_empty() {
                    return None;
                }
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = buf.len();
                        reader.consume(len);
                    }
                }
            }
        }
    })
}

/// Starts the detached supervisor of `request.project`, unless one runs already.
pub async fn start(request: &DetachRequest) -> Result<Detached, DetachError> {
    // Refused before any unit is started: a lock that cannot be taken safely (a planted
    // link, another user's directory) would otherwise fail only inside the started service.
    if let Some(pid) = lock::probe(&request.state_dir, &request.project)? {
        return Err(DetachError::Locked(LockError::Held {
            project: request.project.clone(),
            holder: Some(pid),
            path: lock::lock_path(&request.state_dir, &request.project),
        }));
    }
    let dir = RunDir::open(&request.state_dir).map_err(DetachError::ReportSocket)?;
    let name = format!("detach-{}.sock", crate::registry::new_run_id());
    let listener = dir.bind(&name).map_err(DetachError::ReportSocket)?;
    let file = SocketFile::new(dir, name);
    let exe = crate::launch::current_launcher().map_err(DetachError::Launcher)?;
    let argv = detached_argv(exe.as_os_str(), &request.args, file.path().as_os_str());
    let (how, expected) = spawn(request, &argv).await?;
    Ok(Detached {
        how,
        listener,
        expected,
        file,
    })
}

/// The detached supervisor's command line: `exe`, then the foreground one's arguments
/// without `--detach` (a flag that takes no value, so no value can be mistaken for it),
/// then `--report-to <socket file>`.
pub fn detached_argv(exe: &OsStr, args: &[OsString], report_to: &OsStr) -> Vec<OsString> {
    std::iter::once(exe.to_os_string())
        .chain(args.iter().skip(1).filter(|a| *a != DETACH_FLAG).cloned())
        .chain([REPORT_TO_FLAG.into(), report_to.into()])
        .collect()
}

/// Starts `argv`: a transient user service where systemd is (or may be) the backend, else a
/// daemon (its own session, stdin on /dev/null, output appended to its log file).
async fn spawn(
    request: &DetachRequest,
    argv: &[OsString],
) -> Result<(String, Expected), DetachError> {
    let wants_systemd = matches!(
        request.choice,
        BackendChoice::Auto | BackendChoice::Forced(BackendKind::Systemd)
    );
    if wants_systemd {
        if let Ok((AnyContainment::Systemd(systemd), _)) = detect(request.choice, request.bus).await
        {
            let env: Vec<String> = std::env::vars()
                .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return match systemd
                .start_supervisor_service(&request.project, &argv, &env, &request.cwd)
                .await
            {
                Ok(unit) => Ok((unit.clone(), Expected::Unit(unit))),
                Err(ContainError::Bus(e)) if is_unit_exists(&e) => Err(DetachError::UnitExists {
                    unit: format!(
                        "ccscope-{}.service",
                        crate::contain::escape_unit_part(&request.project)
                    ),
                }),
                Err(e) => Err(DetachError::Service(e)),
            };
        }
    }
    daemon(request, argv)
}

/// Whether systemd refused a unit because one of its name exists.
fn is_unit_exists(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == "org.freedesktop.systemd1.UnitExists")
}

fn daemon(request: &DetachRequest, argv: &[OsString]) -> Result<(String, Expected), DetachError> {
    let log = crate::launch::log_file_path(&request.state_dir, &request.project, "supervisor");
    let out = crate::launch::open_log_file(&request.state_dir, &request.project, "supervisor")
        .map_err(DetachError::Log)?;
    let err = out.try_clone().map_err(|source| {
        DetachError::Log(crate::registry::RegistryError::Io {
            action: "duplicate the descriptor of",
            path: log.clone(),
            source,
        })
    })?;
    let mut command = std::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir(&request.cwd);
    // Away from the terminal: its hangup or Ctrl-C must not reach the supervisor.
    crate::proc::sys::new_session_on_spawn(&mut command);
    let child = command.spawn().map_err(|source| DetachError::Spawn {
        program: Path::new(&argv[0]).to_path_buf(),
        source,
    })?;
    let pid = child.id() as i32;
    Ok((
        format!("a daemon, pid {pid} (its output: {})", log.display()),
        Expected::Pid(pid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::progress::ServiceState;

    #[test]
    fn the_detached_argv_is_the_given_one_without_detach_and_with_the_report_socket() {
        let given: Vec<OsString> = ["ccscope", "-v", "--profile", "demo", "run", "--detach"]
            .into_iter()
            .chain(["--only", "web", "--backend", "cgroupfs"])
            .map(OsString::from)
            .collect();
        let argv = detached_argv(OsStr::new("/usr/bin/ccscope"), &given, OsStr::new("sock"));
        assert_eq!(
            argv,
            [
                "/usr/bin/ccscope",
                "-v",
                "--profile",
                "demo",
                "run",
                "--only",
                "web",
                "--backend",
                "cgroupfs",
                "--report-to",
                "sock"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn report_lines_read_back_as_they_were_written() {
        let progress = ReportLine::Progress(Progress {
            event: ProgressEvent::State,
            service: Some("failed".into()),
            state: Some(ServiceState::Failed),
            message: "exited with code 1".into(),
            elapsed_ms: 7,
        });
        let failed = ReportLine::Failed {
            event: FailedEvent::Failed,
            error: FailedStart {
                code: 3,
                kind: "config_invalid".into(),
                message: "ccscope.toml:1:1: bad".into(),
                hint: Some("fix it".into()),
            },
        };
        for line in [progress, failed] {
            let text = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<ReportLine>(&text).unwrap(), line);
        }
        let text = serde_json::to_string(&ReportLine::Failed {
            event: FailedEvent::Failed,
            error: FailedStart {
                code: 5,
                kind: "locked".into(),
                message: "m".into(),
                hint: None,
            },
        })
        .unwrap();
        assert!(
            text.starts_with(r#"{"event":"failed","error":{"code":5"#),
            "{text}"
        );
    }
}
