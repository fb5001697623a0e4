//! The journal forwarder: a small process inside the service's scope that reads the service's
//! stdout and stderr pipes and writes each line to journald with the service's fields
//! (`SYSLOG_IDENTIFIER`, `CCSCOPE_PROJECT`, `CCSCOPE_SERVICE`, `CCSCOPE_RUN_ID`), which
//! journald's stream protocol cannot carry. Being in the scope, journald also tags it with the
//! scope's unit. It ignores stop signals and ends when the service's last writer closes the
//! pipes, so a graceful stop never costs the service its output (or a SIGPIPE).
//!
//! Without journald it appends to the service's log file instead (FILE_FD). With a tap, it also
//! copies each line to the supervisor's pipe, never blocking on it: a supervisor that reads
//! slowly (or died) costs itself lines, never the service.
//!
//! Usage (internal): `ccscope __journal-forward OUT_FD ERR_FD SERVICE_PID [FILE_FD|- TAP_FD|-]`

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};

use crate::audit::journal::Writer;
use crate::proc::markers;

pub const SUBCOMMAND: &str = "__journal-forward";

/// A line longer than this is cut, so every entry fits one datagram.
const MAX_LINE: usize = 48 * 1024;

struct Stream {
    fd: RawFd,
    priority: u8,
    name: &'static str,
    pending: Vec<u8>,
    open: bool,
}

/// Runs the forwarder. Never returns.
pub fn main(args: &[OsString]) -> ! {
    let parse = |i: usize| {
        args.get(i)
            .and_then(|a| a.to_str())
            .and_then(|a| a.parse::<i32>().ok())
    };
    let (Some(out), Some(err), Some(service_pid)) = (parse(0), parse(1), parse(2)) else {
        eprintln!("ccscope: {SUBCOMMAND} is internal to ccscope");
        std::process::exit(2);
    };
    let mut file = parse(3).map(|fd| unsafe { std::fs::File::from_raw_fd(fd) });
    let mut tap = parse(4).map(|fd| unsafe { std::fs::File::from_raw_fd(fd) });
    if let Some(t) = &tap {
        let _ = crate::proc::sys::set_nonblocking(t);
    }
    unsafe {
        for signal in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGQUIT,
        ] {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (project, service, run_id) = (
        env(markers::PROJECT),
        env(markers::SERVICE),
        env(markers::RUN_ID),
    );
    let pid_text = service_pid.to_string();
    // Without a journal socket the lines are drained and dropped: the service must never
    // block on, or be killed by, a pipe nobody reads.
    let writer = if file.is_some() {
        None
    } else {
        Writer::new().ok()
    };
    let mut streams = [
        Stream {
            fd: out,
            priority: 6,
            name: "stdout",
            pending: Vec::new(),
            open: true,
        },
        Stream {
            fd: err,
            priority: 3,
            name: "stderr",
            pending: Vec::new(),
            open: true,
        },
    ];
    let mut emit = |stream: &Stream, line: &[u8]| {
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
        let fields = [
            ("SYSLOG_IDENTIFIER", service.as_str()),
            ("SYSLOG_PID", pid_text.as_str()),
            ("CCSCOPE_PROJECT", project.as_str()),
            ("CCSCOPE_SERVICE", service.as_str()),
            ("CCSCOPE_RUN_ID", run_id.as_str()),
            ("CCSCOPE_STREAM", stream.name),
        ];
        // journald being away loses lines, never the service.
        if let Some(w) = &writer {
            let _ = w.send(stream.priority, text.trim_end_matches('\r'), &fields);
        }
        let whole = [line, b"\n"].concat();
        if let Some(f) = &mut file {
            let _ = f.write_all(&whole);
        }
        // A full tap drops the line; a closed one (the supervisor is gone) is closed here.
        if let Some(t) = &mut tap {
            if let Err(e) = t.write(&whole) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tap = None;
                }
            }
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    while streams.iter().any(|s| s.open) {
        let mut polls: Vec<libc::pollfd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for p in polls.iter().filter(|p| p.revents != 0) {
            let stream = streams
                .iter_mut()
                .find(|s| s.fd == p.fd)
                .expect("polled fds are ours");
            let got = unsafe { libc::read(stream.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                if got < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                stream.open = false;
                if !stream.pending.is_empty() {
                    let rest = std::mem::take(&mut stream.pending);
                    emit(stream, &rest);
                }
                continue;
            }
            stream.pending.extend_from_slice(&buf[..got as usize]);
            while let Some(end) = stream.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = stream.pending.drain(..=end).collect();
                emit(stream, &line[..line.len() - 1]);
            }
            if stream.pending.len() > MAX_LINE {
                let long = std::mem::take(&mut stream.pending);
                emit(stream, &long);
            }
        }
    }
    std::process::exit(0);
}
