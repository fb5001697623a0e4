//! The trampoline: ccscope's hidden first stage of every launched service. It is spawned
//! normally (so `Command::spawn` returns once it runs), waits on an inherited pipe until the
//! parent has placed it in its scope, and only then execs the service. This is what
//! `systemd-run --scope` does to itself; it is why nothing a service forks can be born outside.
//!
//! Usage (internal): `ccscope __trampoline GO_FD STATUS_FD PROGRAM [--forward OUT_FD ERR_FD FILE_FD|- TAP_FD|-] -- ARGV0 ARGS…`
//! With `--forward`, the read ends of the service's stdout and stderr pipes (and the log file
//! and tap the forwarder writes to): once placed, the trampoline forks the forwarder (inside the
//! scope, like everything after it).
//! GO_FD yields one byte `g` to go; anything else (EOF: the parent gave up) exits 125 without
//! running the service. If exec fails, the errno goes to STATUS_FD (close-on-exec, so a
//! successful exec shows the parent a plain EOF).

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::proc::sys;

/// The hidden subcommand's name; `main` dispatches on it before any argument parsing.
pub const SUBCOMMAND: &str = "__trampoline";

/// Exit code when the parent withdrew the go-ahead.
pub const ABORTED: i32 = 125;
/// Exit code when exec failed (as shells use for "cannot execute").
pub const EXEC_FAILED: i32 = 127;

/// Runs the trampoline with the arguments after the subcommand name. Never returns.
pub fn main(args: &[OsString]) -> ! {
    let Some((fds, program, argv)) = parse(args) else {
        eprintln!(
            "ccscope: {SUBCOMMAND} is internal to ccscope and takes GO_FD STATUS_FD PROGRAM -- ARGV"
        );
        std::process::exit(2);
    };
    let Inherited {
        go,
        status,
        forward,
    } = match claim(&fds) {
        Ok(claimed) => claimed,
        Err(e) => {
            eprintln!("ccscope: {SUBCOMMAND}: {e}");
            std::process::exit(2);
        }
    };
    let mut byte = [0u8; 1];
    let got = loop {
        match sys::read(&go, &mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    if !matches!(got, Ok(1)) || byte[0] != b'g' {
        std::process::exit(ABORTED);
    }
    drop(go);
    // From here a successful exec closes it: the parent sees EOF.
    let _ = sys::set_cloexec(&status, true);
    if let Some(fds) = forward {
        start_forwarder(fds);
    }
    sys::reset_signals();
    let errno = sys::exec(&program, &argv)
        .raw_os_error()
        .unwrap_or(libc::ENOEXEC);
    let _ = sys::write(&status, &errno.to_le_bytes());
    std::process::exit(EXEC_FAILED);
}

/// The descriptor numbers the command line names.
struct Numbers {
    go: RawFd,
    status: RawFd,
    /// stdout and stderr read ends, log file, tap.
    forward: Option<(RawFd, RawFd, Option<RawFd>, Option<RawFd>)>,
}

/// The same descriptors, owned.
struct Inherited {
    go: OwnedFd,
    status: OwnedFd,
    forward: Option<ForwardFds>,
}

/// The forwarder's descriptors: stdout and stderr read ends, log file, tap.
struct ForwardFds {
    out: OwnedFd,
    err: OwnedFd,
    file: Option<OwnedFd>,
    tap: Option<OwnedFd>,
}

type Parsed = (Numbers, CString, Vec<CString>);

fn parse(args: &[OsString]) -> Option<Parsed> {
    let fd = |i: usize| -> Option<RawFd> { args.get(i)?.to_str()?.parse().ok() };
    let go = fd(0)?;
    let status = fd(1)?;
    let program = CString::new(args.get(2)?.as_bytes()).ok()?;
    let optional = |i: usize| -> Option<Option<RawFd>> {
        match args.get(i)?.as_bytes() {
            b"-" => Some(None),
            _ => fd(i).map(Some),
        }
    };
    let (forward, rest) = if args.get(3)?.as_bytes() == b"--forward" {
        (Some((fd(4)?, fd(5)?, optional(6)?, optional(7)?)), 8)
    } else {
        (None, 3)
    };
    if args.get(rest)?.as_bytes() != b"--" {
        return None;
    }
    let argv: Option<Vec<CString>> = args[rest + 1..]
        .iter()
        .map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let argv = argv?;
    if argv.is_empty() {
        return None;
    }
    Some((
        Numbers {
            go,
            status,
            forward,
        },
        program,
        argv,
    ))
}

/// Takes ownership of the descriptors the parent handed down.
fn claim(fds: &Numbers) -> std::io::Result<Inherited> {
    let mut numbers = vec![fds.go, fds.status];
    if let Some((out, err, file, tap)) = fds.forward {
        numbers.extend([Some(out), Some(err), file, tap].into_iter().flatten());
    }
    let mut owned = sys::claim_inherited(&numbers)?.into_iter();
    let mut next = || {
        owned.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a descriptor is missing")
        })
    };
    let go = next()?;
    let status = next()?;
    let forward = match fds.forward {
        None => None,
        Some((_, _, file, tap)) => Some(ForwardFds {
            out: next()?,
            err: next()?,
            file: file.map(|_| next()).transpose()?,
            tap: tap.map(|_| next()).transpose()?,
        }),
    };
    Ok(Inherited {
        go,
        status,
        forward,
    })
}

/// Starts the forwarder with the pipes' read ends, its own stdio on /dev/null (so it never
/// holds the service's pipes open), then closes its descriptors here: the service keeps none.
/// Detached (forked twice), so the forwarder is not the service's child: a service that
/// reaps every child it has must never wait on it.
fn start_forwarder(fds: ForwardFds) {
    let service_pid = std::process::id().to_string();
    let text = |fd: &Option<OwnedFd>| {
        fd.as_ref()
            .map_or("-".to_string(), |fd| fd.as_raw_fd().to_string())
    };
    let argv: Vec<CString> = [
        "ccscope",
        super::forward::SUBCOMMAND,
        &fds.out.as_raw_fd().to_string(),
        &fds.err.as_raw_fd().to_string(),
        &service_pid,
        &text(&fds.file),
        &text(&fds.tap),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let detach = sys::Detach {
        new_session: false,
        null_stdio: true,
    };
    if sys::spawn_detached(c"/proc/self/exe", &argv, detach).is_err() {
        // No forwarder: output goes nowhere rather than into a pipe nobody reads.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
    }
    drop(fds);
}
