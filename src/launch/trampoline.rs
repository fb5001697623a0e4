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
use std::os::unix::ffi::OsStrExt;

/// The hidden subcommand's name; `main` dispatches on it before any argument parsing.
pub const SUBCOMMAND: &str = "__trampoline";

/// Exit code when the parent withdrew the go-ahead.
pub const ABORTED: i32 = 125;
/// Exit code when exec failed (as shells use for "cannot execute").
pub const EXEC_FAILED: i32 = 127;

/// Runs the trampoline with the arguments after the subcommand name. Never returns.
pub fn main(args: &[OsString]) -> ! {
    let Some((go_fd, status_fd, program, forward, argv)) = parse(args) else {
        eprintln!(
            "ccscope: {SUBCOMMAND} is internal to ccscope and takes GO_FD STATUS_FD PROGRAM -- ARGV"
        );
        std::process::exit(2);
    };
    let mut byte = [0u8; 1];
    let got = loop {
        let n = unsafe { libc::read(go_fd, byte.as_mut_ptr().cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break n;
        }
    };
    if got != 1 || byte[0] != b'g' {
        std::process::exit(ABORTED);
    }
    unsafe {
        libc::close(go_fd);
        libc::fcntl(status_fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    if let Some(fds) = forward {
        start_forwarder(&fds);
    }
    reset_signals();
    let errno = exec(&program, &argv);
    let bytes = errno.to_le_bytes();
    unsafe { libc::write(status_fd, bytes.as_ptr().cast(), bytes.len()) };
    std::process::exit(EXEC_FAILED);
}

/// The forwarder's descriptors: stdout and stderr read ends, log file, tap.
struct ForwardFds {
    out: i32,
    err: i32,
    file: Option<i32>,
    tap: Option<i32>,
}

type Parsed = (i32, i32, CString, Option<ForwardFds>, Vec<CString>);

fn parse(args: &[OsString]) -> Option<Parsed> {
    let fd = |i: usize| -> Option<i32> { args.get(i)?.to_str()?.parse().ok() };
    let go_fd = fd(0)?;
    let status_fd = fd(1)?;
    let program = CString::new(args.get(2)?.as_bytes()).ok()?;
    let optional = |i: usize| -> Option<Option<i32>> {
        match args.get(i)?.as_bytes() {
            b"-" => Some(None),
            _ => fd(i).map(Some),
        }
    };
    let (forward, rest) = if args.get(3)?.as_bytes() == b"--forward" {
        let fds = ForwardFds {
            out: fd(4)?,
            err: fd(5)?,
            file: optional(6)?,
            tap: optional(7)?,
        };
        (Some(fds), 8)
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
    Some((go_fd, status_fd, program, forward, argv))
}

/// Forks the forwarder with the pipes' read ends, its own stdio on /dev/null (so it never
/// holds the service's pipes open), then closes its descriptors here: the service keeps none.
fn start_forwarder(fds: &ForwardFds) {
    let service_pid = std::process::id().to_string();
    let text = |fd: Option<i32>| fd.map_or("-".to_string(), |fd| fd.to_string());
    let argv: Vec<CString> = [
        "ccscope",
        super::forward::SUBCOMMAND,
        &fds.out.to_string(),
        &fds.err.to_string(),
        &service_pid,
        &text(fds.file),
        &text(fds.tap),
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    let exe = CString::from(c"/proc/self/exe");
    unsafe {
        // Forked twice, so the forwarder is not the service's child: a service that reaps
        // every child it has must never wait on it.
        let middle = libc::fork();
        if middle == 0 {
            if libc::fork() == 0 {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for target in 0..3 {
                    libc::dup2(null, target);
                }
                exec(&exe, &argv);
            }
            libc::_exit(0);
        }
        if middle > 0 {
            libc::waitpid(middle, std::ptr::null_mut(), 0);
        } else {
            // No forwarder: output goes nowhere rather than into a pipe nobody reads.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        for fd in [Some(fds.out), Some(fds.err), fds.file, fds.tap]
            .into_iter()
            .flatten()
        {
            libc::close(fd);
        }
    }
}

/// The Rust runtime ignores SIGPIPE, and a parent may ignore SIGINT; ignored dispositions
/// survive exec. The service starts with every signal at its default and none blocked.
fn reset_signals() {
    unsafe {
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// execv; returns the errno only if it failed.
fn exec(program: &CString, argv: &[CString]) -> i32 {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    unsafe { libc::execv(program.as_ptr(), ptrs.as_ptr()) };
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::ENOEXEC)
}
