//! The client side of the control socket: asking a verified supervisor to stand down, and
//! believing only the right answer from the right process, all under one deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::find::is_ccscope;
use super::sockets::{RunDir, user_label};
use super::{
    EXIT_DEADLINE, FORCE_DEADLINE, MAX_ANSWER, STAND_DOWN, STAND_DOWN_SIGNAL, socket_file_name,
};
use crate::proc::sys::{self, PeerCred, Signalled, signal_identified};
use crate::proc::{ProcFs, ProcessIdentity, describe_io};

/// How a supervisor was asked to stand down.
#[derive(Debug, Clone, Serialize)]
pub struct StandDownReport {
    pub pid: i32,
    /// `control socket`, `SIGUSR1` or `SIGKILL`.
    pub how: &'static str,
    /// Whether it confirmed that it stopped starting and restarting services.
    pub acknowledged: bool,
    /// It was stopped (SIGSTOP) and was sent SIGCONT.
    pub resumed: bool,
}

/// A stand-down under way: keep it until the stop is done, then [`StandDown::finish`] it (the
/// supervisor exits when the connection closes).
#[derive(Debug, Default)]
pub struct StandDown {
    /// The supervisor asked, if one was found.
    pub report: Option<StandDownReport>,
    /// What a person should be told: an impostor not believed, a supervisor resumed or killed.
    pub warnings: Vec<String>,
    supervisor: Option<ProcessIdentity>,
    connection: Option<UnixStream>,
}

impl StandDown {
    /// Ends the stand-down once the stop is done: the connection closes and the supervisor is
    /// waited on to exit. When the stop left the stack empty, a supervisor that has not
    /// exited within [`EXIT_DEADLINE`] is killed (it would keep the project's lock); else it
    /// finishes the stop itself and is not waited on. Returns what a person should be told.
    pub fn finish(mut self, stack_empty: bool) -> Vec<String> {
        drop(self.connection.take());
        let mut said = Vec::new();
        let (Some(supervisor), Some(report)) = (self.supervisor, &self.report) else {
            return said;
        };
        if report.how == "SIGKILL" || !stack_empty {
            return said;
        }
        if !wait_gone(supervisor, EXIT_DEADLINE) {
            let _ = signal_identified(supervisor, libc::SIGKILL);
            wait_gone(supervisor, EXIT_DEADLINE);
            said.push(format!(
                "the supervisor (pid {}) did not exit within {} s of the stop: it was killed",
                supervisor.pid,
                EXIT_DEADLINE.as_secs()
            ));
        }
        said
    }
}

/// What the control socket said.
enum Asked {
    /// Nobody serves it.
    Absent,
    /// The supervisor confirmed: keep the connection.
    Confirmed {
        connection: UnixStream,
        peer: PeerCred,
    },
    /// Someone else answered: why it was not believed.
    NotBelieved(String),
    /// The right process, but no answer by the deadline.
    Silent,
    /// The right process closed the connection without an answer: it is ending already (its
    /// own stop under way, say after the stop it stood down for died).
    Closed,
}

/// Connects to `project`'s control socket in `dir` and asks it to stand down, all of it by
/// `deadline`. The server must be this user's and, when `expected` is known, that process;
/// when it is not, a ccscope: nothing else is even asked.
fn ask(dir: &RunDir, project: &str, expected: Option<i32>, deadline: Instant) -> Asked {
    let (stream, peer) = match connect_verified(dir, project, expected) {
        Ok(connected) => connected,
        Err(asked) => return asked,
    };
    let path = dir.path_of(&socket_file_name(project));
    match exchange(stream, deadline) {
        Exchange::Answered(connection, pid) if pid == peer.pid => {
            Asked::Confirmed { connection, peer }
        }
        Exchange::Answered(_, pid) => Asked::NotBelieved(format!(
            "the control socket {} answered `ok {pid}` from pid {}: not believed",
            path.display(),
            peer.pid
        )),
        Exchange::Garbled(text) => Asked::NotBelieved(format!(
            "the control socket {} answered {text:?}, not `ok <pid>`: not believed",
            path.display()
        )),
        Exchange::Silent => Asked::Silent,
        Exchange::Closed => Asked::Closed,
    }
}

/// Connects to `project`'s control socket in `dir` and checks who serves it: this user, and
/// when `expected` is known that process, else a ccscope. Why not, as [`Asked`].
fn connect_verified(
    dir: &RunDir,
    project: &str,
    expected: Option<i32>,
) -> Result<(UnixStream, PeerCred), Asked> {
    let name = socket_file_name(project);
    let path = dir.path_of(&name);
    let stream = match dir.connect(&name) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(Asked::Absent);
        }
        Err(e) => {
            return Err(Asked::NotBelieved(format!(
                "could not connect to the control socket {}: {}",
                path.display(),
                describe_io(&e)
            )));
        }
    };
    let peer = match sys::peer_cred(&stream) {
        Ok(p) => p,
        Err(e) => {
            return Err(Asked::NotBelieved(format!(
                "could not tell who serves the control socket {}: {}",
                path.display(),
                describe_io(&e)
            )));
        }
    };
    if let Some(why) = refusal(peer, expected, sys::euid()) {
        return Err(Asked::NotBelieved(format!(
            "the control socket {} {why}",
            path.display()
        )));
    }
    if expected.is_none() && !is_ccscope(peer.pid) {
        return Err(Asked::NotBelieved(format!(
            "the control socket {} is served by pid {} ({}), which is no ccscope: not believed",
            path.display(),
            peer.pid,
            ProcFs::default().cmdline(peer.pid).unwrap_or_default()
        )));
    }
    Ok((stream, peer))
}

/// Why a request to a supervisor got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the supervisor (pid {pid}) has no control socket in {}", dir.display())]
    NoSocket { pid: i32, dir: std::path::PathBuf },
    #[error("{0}")]
    NotBelieved(String),
    #[error("the supervisor (pid {pid}) did not answer within {} s", waited.as_secs())]
    Silent { pid: i32, waited: Duration },
    #[error("the supervisor (pid {pid}) closed the connection before it answered: it is ending")]
    Closed { pid: i32 },
    #[error("the supervisor (pid {pid}) answered something that is not a reply: {text}")]
    Garbled { pid: i32, text: String },
}

/// Sends `request` to the verified supervisor `supervisor` over its control socket in
/// `state_dir` and waits for its reply until `wait` has passed. The reply comes once the
/// request is done (services ready again, stopped, frozen), so `wait` must leave room for
/// the services' own stop and start timeouts.
pub fn send_request(
    state_dir: &Path,
    project: &str,
    supervisor: ProcessIdentity,
    request: &crate::control::Request,
    wait: Duration,
) -> Result<crate::control::Reply, RequestError> {
    let pid = supervisor.pid;
    let deadline = Instant::now() + wait;
    let mut stream = connect_to(state_dir, project, pid)?;
    let mut line = serde_json::to_vec(request).unwrap_or_default();
    line.push(b'\n');
    let silent = || RequestError::Silent { pid, waited: wait };
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    stream.set_write_timeout(left()).map_err(|_| silent())?;
    if let Err(e) = stream.write_all(&line) {
        return Err(match ended(&e) {
            Exchange::Closed => RequestError::Closed { pid },
            _ => silent(),
        });
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(time) = left() else {
            return Err(silent());
        };
        stream.set_read_timeout(Some(time)).map_err(|_| silent())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(RequestError::Closed { pid }),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match ended(&e) {
                    Exchange::Closed => RequestError::Closed { pid },
                    _ => silent(),
                });
            }
        }
        if let Some(end) = reply.iter().position(|b| *b == b'\n') {
            return serde_json::from_slice(&reply[..end]).map_err(|_| RequestError::Garbled {
                pid,
                text: String::from_utf8_lossy(&reply[..end.min(200)]).into_owned(),
            });
        }
        if reply.len() > crate::control::request::MAX_REPLY {
            return Err(RequestError::Garbled {
                pid,
                text: format!("more than {} bytes without a line end", reply.len()),
            });
        }
    }
}

/// A subscription to a supervisor's state feed: read its lines with [`Subscription::next_line`];
/// dropping it closes the connection, which ends the stream on the supervisor's side.
#[derive(Debug)]
pub struct Subscription {
    pid: i32,
    reader: std::io::BufReader<UnixStream>,
}

impl Subscription {
    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The next line, decoded as `T`; None once the supervisor closed the stream (it ended,
    /// or the subscriber fell behind). Blocks until a line comes: read it on a thread of its
    /// own. A line is read up to [`crate::control::request::MAX_REPLY`] bytes.
    pub fn next_line<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, RequestError> {
        use std::io::BufRead;
        let pid = self.pid;
        let mut line = Vec::new();
        let limit = crate::control::request::MAX_REPLY as u64;
        let read = (&mut self.reader).take(limit).read_until(b'\n', &mut line);
        match read {
            Ok(0) => return Ok(None),
            Ok(_) if line.last() != Some(&b'\n') => {
                return Err(if line.len() as u64 >= limit {
                    RequestError::Garbled {
                        pid,
                        text: format!("more than {limit} bytes without a line end"),
                    }
                } else {
                    RequestError::Closed { pid }
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(match ended(&e) {
                    Exchange::Closed => RequestError::Closed { pid },
                    _ => RequestError::Silent {
                        pid,
                        waited: Duration::ZERO,
                    },
                });
            }
        }
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|_| RequestError::Garbled {
                pid,
                text: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
            })
    }

    /// Stops reading now (a thread blocked in [`Subscription::next_line`] gets None).
    pub fn shutdown(&self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

/// The control socket of the supervisor `pid` of `project`, its peer checked.
fn connect_to(state_dir: &Path, project: &str, pid: i32) -> Result<UnixStream, RequestError> {
    let no_socket = || RequestError::NoSocket {
        pid,
        dir: state_dir.join("run"),
    };
    let dir = match RunDir::existing(state_dir) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Err(no_socket()),
        Err(e) => return Err(RequestError::NotBelieved(e.to_string())),
    };
    match connect_verified(&dir, project, Some(pid)) {
        Ok((stream, _)) => Ok(stream),
        Err(Asked::NotBelieved(why)) => Err(RequestError::NotBelieved(why)),
        Err(_) => Err(no_socket()),
    }
}

/// Subscribes to the state feed of the verified supervisor `supervisor` over its control
/// socket in `state_dir`. The first line (the snapshot) must come within `wait`; the lines
/// after it come when state changes, with no deadline.
pub fn subscribe(
    state_dir: &Path,
    project: &str,
    supervisor: ProcessIdentity,
    wait: Duration,
) -> Result<Subscription, RequestError> {
    let pid = supervisor.pid;
    let mut stream = connect_to(state_dir, project, pid)?;
    let silent = || RequestError::Silent { pid, waited: wait };
    let mut line = serde_json::to_vec(&crate::control::Subscribe::Subscribe).unwrap_or_default();
    line.push(b'\n');
    stream.set_write_timeout(Some(wait)).map_err(|_| silent())?;
    if let Err(e) = stream.write_all(&line) {
        return Err(match ended(&e) {
            Exchange::Closed => RequestError::Closed { pid },
            _ => silent(),
        });
    }
    // The snapshot is made at once; the changes after it come whenever they come.
    stream.set_read_timeout(Some(wait)).map_err(|_| silent())?;
    let mut reader = std::io::BufReader::new(stream);
    match std::io::BufRead::fill_buf(&mut reader) {
        Ok(first) if !first.is_empty() => {}
        Ok(_) => return Err(RequestError::Closed { pid }),
        Err(_) => return Err(silent()),
    }
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|_| silent())?;
    Ok(Subscription { pid, reader })
}

/// Why a server whose credentials are `peer` is not believed, if it is not.
fn refusal(peer: PeerCred, expected: Option<i32>, me: u32) -> Option<String> {
    if peer.uid != me {
        return Some(format!(
            "is held by {}, not by this user (uid {me}): not believed",
            user_label(peer.uid)
        ));
    }
    match expected {
        Some(pid) if pid != peer.pid => Some(format!(
            "is served by pid {}, not by the supervisor (pid {pid}): not believed",
            peer.pid
        )),
        _ => None,
    }
}

/// How an exchange ended.
enum Exchange {
    Answered(UnixStream, i32),
    /// Something that is not `ok <pid>` (shown escaped, cut to [`MAX_ANSWER`] bytes).
    Garbled(String),
    /// No whole answer by the deadline.
    Silent,
    /// The connection closed before a whole answer.
    Closed,
}

/// Sends `stand-down` and reads the answer, every step within the one `deadline`: a server
/// that trickles bytes gets no more time for each one.
fn exchange(mut stream: UnixStream, deadline: Instant) -> Exchange {
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    let Some(time) = left() else {
        return Exchange::Silent;
    };
    if stream.set_write_timeout(Some(time)).is_err() {
        return Exchange::Silent;
    }
    if let Err(e) = stream.write_all(format!("{STAND_DOWN}\n").as_bytes()) {
        return ended(&e);
    }
    let mut answer = [0u8; MAX_ANSWER];
    let mut len = 0;
    while len < MAX_ANSWER {
        let Some(time) = left() else {
            return Exchange::Silent;
        };
        if stream.set_read_timeout(Some(time)).is_err() {
            return Exchange::Silent;
        }
        match stream.read(&mut answer[len..]) {
            Ok(0) => return Exchange::Closed,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return ended(&e),
        }
        if let Some(end) = answer[..len].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&answer[..end]).into_owned();
            return match parse_answer(&line) {
                Some(pid) => Exchange::Answered(stream, pid),
                None => Exchange::Garbled(line),
            };
        }
    }
    Exchange::Garbled(String::from_utf8_lossy(&answer[..len]).into_owned())
}

/// An exchange cut short by `e`: the peer closed its end, or it let the deadline pass.
fn ended(e: &std::io::Error) -> Exchange {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    match e.kind() {
        BrokenPipe | ConnectionReset => Exchange::Closed,
        _ => Exchange::Silent,
    }
}

/// `ok <pid>` → the pid.
fn parse_answer(line: &str) -> Option<i32> {
    let pid = line.strip_prefix("ok ")?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
        .filter(|pid| *pid > 0)
}

/// How a supervisor is asked.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    pub project: &'a str,
    /// Its state directory, where its control socket is, when known.
    pub state_dir: Option<&'a Path>,
    /// `stop --force`: a stopped supervisor is killed at once, a silent one after
    /// [`FORCE_DEADLINE`].
    pub force: bool,
    pub deadline: Duration,
}

/// Asks the verified supervisor `supervisor` to stand down: over its control socket when
/// it has one, else by SIGUSR1; one that was stopped is resumed first (or, with `--force`,
/// killed); one that does not answer by the deadline is killed. None when it is gone.
pub fn stand_down(asking: Asking<'_>, supervisor: ProcessIdentity) -> Option<StandDown> {
    let given = match asking.force {
        true => asking.deadline.min(FORCE_DEADLINE),
        false => asking.deadline,
    };
    let deadline = Instant::now() + given;
    let stat = crate::proc::read_stat(Path::new("/proc"), supervisor.pid).ok()?;
    if stat.start_time != supervisor.start_time || stat.is_zombie() {
        return None;
    }
    let mut done = StandDown {
        supervisor: Some(supervisor),
        ..StandDown::default()
    };
    let pid = supervisor.pid;
    let stopped = matches!(stat.state, 'T' | 't');
    if stopped && asking.force {
        return kill(
            done,
            supervisor,
            false,
            format!("the supervisor (pid {pid}) was stopped (SIGSTOP): --force killed it"),
        );
    }
    let resumed = stopped && signal_identified(supervisor, libc::SIGCONT).is_ok();
    if resumed {
        done.warnings.push(format!(
            "the supervisor (pid {pid}) was stopped (SIGSTOP): it was resumed with SIGCONT"
        ));
    }
    let dir = match asking.state_dir.map(RunDir::existing) {
        Some(Ok(dir)) => dir,
        Some(Err(e)) => {
            done.warnings
                .push(format!("its control socket was not used: {e}"));
            None
        }
        None => None,
    };
    let asked = match &dir {
        Some(dir) => ask(dir, asking.project, Some(pid), deadline),
        None => Asked::Absent,
    };
    match asked {
        Asked::Confirmed { connection, .. } => {
            done.report = Some(StandDownReport {
                pid,
                how: "control socket",
                acknowledged: true,
                resumed,
            });
            done.connection = Some(connection);
            return Some(done);
        }
        Asked::Silent => {
            return kill(
                done,
                supervisor,
                resumed,
                format!(
                    "the supervisor (pid {pid}) did not answer on its control socket within {} s: it was killed",
                    given.as_secs()
                ),
            );
        }
        // Not killed: it is ending by itself. The stop goes on beside it, and `finish` waits
        // for it to exit (and kills it only if it does not).
        Asked::Closed => {
            done.report = Some(StandDownReport {
                pid,
                how: "control socket",
                acknowledged: false,
                resumed,
            });
            return Some(done);
        }
        Asked::NotBelieved(why) => done.warnings.push(why),
        Asked::Absent => {}
    }
    match signal_identified(supervisor, STAND_DOWN_SIGNAL) {
        Ok(Signalled::Sent) => {
            done.warnings.push(format!(
                "the supervisor (pid {pid}) did not answer on a control socket; it was sent SIGUSR1 to stand down"
            ));
            done.report = Some(StandDownReport {
                pid,
                how: "SIGUSR1",
                acknowledged: false,
                resumed,
            });
            Some(done)
        }
        _ => None,
    }
}

/// Kills the supervisor (by its identity) and waits for it to be gone.
fn kill(
    mut done: StandDown,
    supervisor: ProcessIdentity,
    resumed: bool,
    why: String,
) -> Option<StandDown> {
    match signal_identified(supervisor, libc::SIGKILL) {
        Ok(Signalled::Sent) => {}
        _ => return None,
    }
    if !wait_gone(supervisor, EXIT_DEADLINE) {
        done.warnings.push(format!(
            "the supervisor (pid {}) was killed but had not gone within {} s",
            supervisor.pid,
            EXIT_DEADLINE.as_secs()
        ));
    }
    done.warnings.push(why);
    done.report = Some(StandDownReport {
        pid: supervisor.pid,
        how: "SIGKILL",
        acknowledged: false,
        resumed,
    });
    Some(done)
}

/// Waits (on its pidfd) until the process `id` is gone, for up to `timeout`.
fn wait_gone(id: ProcessIdentity, timeout: Duration) -> bool {
    let Ok(pidfd) = sys::pidfd_open(id.pid) else {
        return true;
    };
    // Opened first, checked after: the pidfd is of this very process, or it is gone.
    match ProcFs::default().identity(id.pid) {
        Ok(now) if now == id => {}
        _ => return true,
    }
    sys::wait_readable(&pidfd, timeout).unwrap_or(false)
}

/// Asks whatever supervisor answers on the project's control socket in `state_dir`, when
/// neither the registry, nor the lock, nor the project's processes name one. It is believed
/// only if it is this user's ccscope and its answer names its own pid.
pub fn stand_down_unnamed(state_dir: &Path, project: &str, timeout: Duration) -> StandDown {
    let mut done = StandDown::default();
    let dir = match RunDir::existing(state_dir) {
        Ok(Some(dir)) => dir,
        Ok(None) => return done,
        Err(e) => {
            done.warnings
                .push(format!("the control socket was not used: {e}"));
            return done;
        }
    };
    match ask(&dir, project, None, Instant::now() + timeout) {
        Asked::Confirmed { connection, peer } => match ProcFs::default().identity(peer.pid).ok() {
            Some(identity) => {
                done.report = Some(StandDownReport {
                    pid: peer.pid,
                    how: "control socket",
                    acknowledged: true,
                    resumed: false,
                });
                done.supervisor = Some(identity);
                done.connection = Some(connection);
            }
            None => done.warnings.push(format!(
                "pid {} answered on the control socket {} and was gone at once: not believed",
                peer.pid,
                dir.path_of(&socket_file_name(project)).display()
            )),
        },
        Asked::NotBelieved(why) => done.warnings.push(why),
        Asked::Absent | Asked::Silent | Asked::Closed => {}
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_answer_names_a_pid() {
        assert_eq!(parse_answer("ok 4100"), Some(4100));
        for bad in [
            "ok",
            "ok ",
            "ok -1",
            "ok 0",
            "ok 1 2",
            "OK 5",
            "ok 99999999999",
            "no 5",
        ] {
            assert_eq!(parse_answer(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_server_of_another_user_or_another_pid_is_not_believed() {
        let me = PeerCred { pid: 10, uid: 0 };
        assert_eq!(refusal(me, Some(10), 0), None);
        assert_eq!(refusal(me, None, 0), None);
        let other = refusal(
            PeerCred {
                pid: 10,
                uid: 4_000_000_000,
            },
            Some(10),
            0,
        )
        .unwrap();
        assert!(
            other.contains("held by uid 4000000000, not by this user"),
            "{other}"
        );
        let impostor = refusal(PeerCred { pid: 1, uid: 0 }, Some(10), 0).unwrap();
        assert!(
            impostor.contains("served by pid 1, not by the supervisor (pid 10)"),
            "{impostor}"
        );
    }

    #[test]
    fn a_server_that_trickles_bytes_is_given_one_deadline_in_all() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let trickler = std::thread::spawn(move || {
            let mut request = [0u8; 16];
            let _ = server.read(&mut request);
            // One byte at a time, never a whole line: each read would wait less than a
            // per-read timeout.
            for _ in 0..40 {
                if server.write_all(b"o").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let deadline = Instant::now() + Duration::from_millis(300);
        assert!(matches!(exchange(client, deadline), Exchange::Silent));
        // The trickler goes on for 2 s: the exchange gave up at its one deadline, not after
        // the last byte.
        assert!(
            !trickler.is_finished(),
            "the exchange waited out the trickler"
        );
        trickler.join().unwrap();
    }

    #[test]
    fn a_connection_closed_without_an_answer_is_told_from_silence() {
        // Closed before the request (the write fails) and after it (the read ends).
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        assert!(matches!(
            exchange(client, Instant::now() + Duration::from_secs(10)),
            Exchange::Closed
        ));
        let (client, mut server) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut request = [0u8; 16];
            let _ = server.read(&mut request);
        });
        assert!(matches!(
            exchange(client, Instant::now() + Duration::from_secs(10)),
            Exchange::Closed
        ));
        reader.join().unwrap();
    }

    #[test]
    fn an_endless_answer_is_cut_and_refused() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(&[b'x'; 4 * MAX_ANSWER]).unwrap();
        match exchange(client, Instant::now() + Duration::from_secs(10)) {
            Exchange::Garbled(text) => assert_eq!(text.len(), MAX_ANSWER),
            _ => panic!("not refused as garbled"),
        }
    }

    #[test]
    fn a_well_formed_answer_keeps_the_connection() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(b"ok 77\n").unwrap();
        match exchange(client, Instant::now() + Duration::from_secs(10)) {
            Exchange::Answered(_, pid) => assert_eq!(pid, 77),
            _ => panic!("not answered"),
        }
    }
}
