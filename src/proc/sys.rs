//! The few system calls ccscope makes that std does not wrap, each behind a safe function
//! that returns `io::Result`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::identity::{ProcFs, ProcessIdentity};

pub fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path or argument holds a NUL byte",
        )
    })
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// kill(2). ESRCH (already gone) is reported as an error; callers decide what it means.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    check(unsafe { libc::kill(pid, signal) } as libc::c_long).map(drop)
}

/// A pidfd for `pid`: from here on, signals reach this process or nothing, even if the pid
/// is reused.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// What became of a signal sent to an identified process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    Sent,
    /// The process had already exited (or is a zombie).
    Gone,
    /// The pid now belongs to another process: nothing was sent.
    Reused,
}

/// Signals exactly the process `id` names: the pidfd is opened first, the start time checked
/// after, so the signal cannot reach a process that took over the pid.
pub fn signal_identified(id: ProcessIdentity, signal: i32) -> io::Result<Signalled> {
    let pidfd = match pidfd_open(id.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Signalled::Gone),
        Err(e) => return Err(e),
    };
    match ProcFs::default().identity(id.pid) {
        Ok(now) if now == id => {}
        Ok(_) => return Ok(Signalled::Reused),
        Err(_) => return Ok(Signalled::Gone),
    }
    match pidfd_send_signal(&pidfd, signal) {
        Ok(()) => Ok(Signalled::Sent),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(Signalled::Gone),
        Err(e) => Err(e),
    }
}

/// Waits until `fd` is readable or `timeout` passes. Returns whether it became readable.
pub fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // Rounded up, so a sub-millisecond remainder still waits instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Makes this process the reaper of its orphaned descendants.
pub fn set_child_subreaper() -> io::Result<()> {
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } as libc::c_long)
        .map(drop)
}

/// Clock ticks per second, the unit of a process's start time.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes no pointers and only reads the system's configuration.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100).max(1)
}

pub fn euid() -> u32 {
    unsafe { libc::geteuid() }
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers an owned, non-blocking descriptor with the runtime's reactor, for reading.
pub fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open, and stays the same descriptor until the AsyncFd drops it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            .map_err(std::io::Error::from)
    }
}

/// Lets go of this program's code pages (its `r-xp` mappings, which are never written): a
/// long-running supervisor that has finished starting a stack keeps only the code it goes on
/// running resident; the rest comes back from the page cache if it is ever needed again.
/// Written mappings (data, relocations) are never touched.
pub fn trim_own_code() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "r-xp" || fields[5] != exe {
            continue;
        }
        let Some((start, end)) = fields[0].split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: a private, read-only, executable file mapping holds no data of its own;
        // dropping its pages only makes the next use fault them in again from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// read(2) into `buf`; the error of a non-blocking descriptor with nothing to read is
/// `WouldBlock`.
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call, and
    // the descriptor is borrowed from an owner that keeps it open.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Makes the child that `command` spawns lead a new session (setsid(2) between fork and
/// exec): it has no controlling terminal, so a terminal's hangup or Ctrl-C never reaches it.
pub fn new_session_on_spawn(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2),
    // which is async-signal-safe, then reads errno; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
