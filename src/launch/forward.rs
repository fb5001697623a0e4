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
use std::os::fd::{OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags};

use crate::audit::journal::Writer;
use crate::proc::{markers, sys};

pub const SUBCOMMAND: &str = "__journal-forward";

/// A line longer than this is cut, so every entry fits one datagram.
const MAX_LINE: usize = 48 * 1024;

struct Stream {
    fd: OwnedFd,
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
    let (file, tap): (Option<RawFd>, Option<RawFd>) = (parse(3), parse(4));
    let numbers: Vec<RawFd> = [Some(out), Some(err), file, tap]
        .into_iter()
        .flatten()
        .collect();
    let mut claimed = match sys::claim_inherited(&numbers) {
        Ok(fds) => fds.into_iter(),
        Err(e) => {
            eprintln!("ccscope: {SUBCOMMAND}: {e}");
            std::process::exit(2);
        }
    };
    // In the order they were named: out, err, then the file and the tap where given.
    let (Some(out), Some(err)) = (claimed.next(), claimed.next()) else {
        std::process::exit(2);
    };
    let mut file = file.and_then(|_| claimed.next()).map(std::fs::File::from);
    let mut tap = tap.and_then(|_| claimed.next()).map(std::fs::File::from);
    if let Some(t) = &tap {
        let _ = sys::set_nonblocking(t);
    }
    sys::ignore_signals(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGQUIT,
    ]);
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
        // Which streams have something to read (or hung up).
        let mut ready = [false; 2];
        {
            let open: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].open).collect();
            let mut polls: Vec<PollFd<'_>> = open
                .iter()
                .map(|&i| PollFd::new(&streams[i].fd, PollFlags::IN))
                .collect();
            match rustix::event::poll(&mut polls, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            for (p, &i) in polls.iter().zip(&open) {
                ready[i] = !p.revents().is_empty();
            }
        }
        for (stream, _) in streams.iter_mut().zip(ready).filter(|(_, r)| *r) {
            let got = match sys::read(&stream.fd, &mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(n) if n > 0 => n,
                _ => {
                    stream.open = false;
                    if !stream.pending.is_empty() {
                        let rest = std::mem::take(&mut stream.pending);
                        emit(stream, &rest);
                    }
                    continue;
                }
            };
            stream.pending.extend_from_slice(&buf[..got]);
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
