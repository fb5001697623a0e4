//! The system calls ccscope makes that std does not wrap, each behind a safe function that
//! returns `io::Result`. Most go through rustix, which wraps them safely; what rustix cannot
//! make safe (fork, exec, signal dispositions, a descriptor inherited by number, a tokio
//! registration, `madvise`) is here too, and nowhere else: every `unsafe` block of ccscope
//! lives in this file and says why it is sound.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::identity::{ProcFs, ProcessIdentity};

pub fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path or argument holds a NUL byte",
        )
    })
}

/// A positive process id as rustix takes it (0 and negative ids mean other things to the
/// kernel, and are refused here).
fn pid(pid: i32) -> io::Result<Pid> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A signal number as rustix takes it. Every signal ccscope sends has a name; the real-time
/// ones (which rustix leaves to libc) are refused rather than sent unchecked.
fn signal(number: i32) -> io::Result<Signal> {
    Signal::from_named_raw(number).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// kill(2): to a process (`pid` > 0), to this process's group (0), or to the group `-pid`
/// (`pid` < -1); signal 0 only checks that the target exists. ESRCH (already gone) is
/// reported as an error; callers decide what it means.
pub fn kill(target: i32, number: i32) -> io::Result<()> {
    use rustix::process as p;
    match (target, number) {
        (0, 0) => p::test_kill_current_process_group(),
        (0, n) => p::kill_current_process_group(signal(n)?),
        (t, 0) if t > 0 => p::test_kill_process(pid(t)?),
        (t, n) if t > 0 => p::kill_process(pid(t)?, signal(n)?),
        (t, 0) if t < -1 => p::test_kill_process_group(pid(t.saturating_neg())?),
        (t, n) if t < -1 => p::kill_process_group(pid(t.saturating_neg())?, signal(n)?),
        // -1 would be every process we may signal: never meant, never sent.
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
    .map_err(io::Error::from)
}

/// A pidfd for `pid`: from here on, signals reach this process or nothing, even if the pid
/// is reused.
pub fn pidfd_open(target: i32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        pid(target)?,
        rustix::process::PidfdFlags::empty(),
    )?)
}

pub fn pidfd_send_signal(pidfd: impl AsFd, number: i32) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(pidfd, signal(number)?)?)
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

/// Waits until `fd` is readable (or hung up) or `timeout` passes. Returns whether it became
/// ready.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let left = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&left)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`wait_readable`] for a caller that holds only the descriptor's number. Prefer
/// `wait_readable`, which borrows the descriptor and so cannot be handed a closed one.
pub fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so a sub-millisecond remainder still waits instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is one valid, writable pollfd and the count says one. A number that
        // names no open descriptor is answered with POLLNVAL, not undefined behaviour: poll
        // only looks the descriptor up, it does not take or close it.
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

/// read(2) on a descriptor (non-blocking ones give `WouldBlock`, a signal `Interrupted`).
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// write(2) on a descriptor.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::io::write(fd, buf)?)
}

/// setpgid(2): moves process `target` into the process group `group`.
pub fn set_process_group(target: i32, group: i32) -> io::Result<()> {
    Ok(rustix::process::setpgid(
        Some(pid(target)?),
        Some(pid(group)?),
    )?)
}

/// Makes this process the reaper of its orphaned descendants.
pub fn set_child_subreaper() -> io::Result<()> {
    // The kernel reads the argument as a flag; rustix takes it as a pid, any nonzero one.
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// Clock ticks per second, the unit of a process's start time.
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The local zone's offset east of UTC, in seconds, at `at` (seconds since the epoch), as
/// the C library's `localtime_r` knows it from `TZ` and /etc/localtime; 0 when it cannot say.
pub fn utc_offset_at(at: i64) -> i64 {
    let at: libc::time_t = at;
    // SAFETY: localtime_r reads `at` and writes only the `tm` it is handed, which lives on
    // this stack frame; it is the thread-safe form (no static buffer). A zeroed `tm` is a
    // valid value of the plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::localtime_r(&at, &mut tm) };
    if done.is_null() { 0 } else { tm.tm_gmtoff }
}

/// Whether descriptor `fd` of this process is a terminal that still answers: after a
/// hangup its ioctls fail (EIO), so a terminal that went away reads as none.
pub fn is_terminal(fd: i32) -> bool {
    // SAFETY: isatty only looks at the descriptor number; an invalid one is an error.
    unsafe { libc::isatty(fd) == 1 }
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Asks for a socket send buffer of `bytes` (the kernel caps it at `net.core.wmem_max`).
pub fn set_send_buffer(fd: &impl AsFd, bytes: usize) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_send_buffer_size(
        fd, bytes,
    )?)
}

/// Has the kernel attach this process's credentials to everything sent on a Unix socket
/// (SO_PASSCRED on the sending side).
pub fn set_pass_credentials(fd: &impl AsFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(fd, true)?)
}

/// Sets O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(rustix::fs::fcntl_setfl(
        fd,
        flags | rustix::fs::OFlags::NONBLOCK,
    )?)
}

/// Sets or clears close-on-exec on a descriptor.
pub fn set_cloexec(fd: impl AsFd, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec {
        rustix::io::FdFlags::CLOEXEC
    } else {
        rustix::io::FdFlags::empty()
    };
    Ok(rustix::io::fcntl_setfd(fd, flags)?)
}

/// Registers an owned, non-blocking descriptor with the runtime's reactor, for reading.
pub fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    async_with_interest(fd, tokio::io::Interest::READABLE)
}

/// Registers an owned, non-blocking descriptor with the runtime's reactor for `interest`
/// (`PRIORITY`: the `POLLPRI` a cgroup's `cgroup.events` raises on every change).
pub fn async_with_interest(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: tokio asks that the descriptor be open and stay the same open description for
    // the AsyncFd's whole life. An OwnedFd is open by construction, cannot be closed or
    // swapped while the AsyncFd owns it (only `get_mut` could, and nothing of ours swaps the
    // OwnedFd it returns), and is closed only when the AsyncFd drops it or hands it back.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, interest).map_err(std::io::Error::from)
    }
}

/// Set once the descriptors this process inherited have been claimed.
static INHERITED_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Takes ownership of descriptors this process was handed across exec by number (the
/// trampoline's pipes, the forwarder's streams), for the hidden subcommands' `main`s.
///
/// Refused (`InvalidInput`) for a standard stream, a number given twice, a descriptor that is
/// not open, one that is close-on-exec (so was opened by this process, not inherited: all that
/// ccscope, std and rustix open is close-on-exec), and for any call after the first: each
/// descriptor gets exactly one owner.
pub fn claim_inherited(fds: &[RawFd]) -> io::Result<Vec<OwnedFd>> {
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    for (i, &fd) in fds.iter().enumerate() {
        if fd <= 2 {
            return refuse(format!("descriptor {fd} is a standard stream"));
        }
        if fds[..i].contains(&fd) {
            return refuse(format!("descriptor {fd} is named twice"));
        }
        // SAFETY: F_GETFD takes no pointer and changes nothing; on a number that names no
        // open descriptor it fails with EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return refuse(format!(
                "descriptor {fd} is not open ({})",
                io::Error::last_os_error()
            ));
        }
        if flags & libc::FD_CLOEXEC != 0 {
            return refuse(format!("descriptor {fd} was not inherited"));
        }
    }
    if INHERITED_CLAIMED.swap(true, Ordering::SeqCst) {
        return refuse("inherited descriptors are claimed once per process".into());
    }
    Ok(fds
        .iter()
        // SAFETY: each number is open (checked above), was inherited across exec (it is not
        // close-on-exec, which everything this process opens is), is named once, and this is
        // the only claim this process makes (the flag above): so nothing else owns it, and the
        // OwnedFd becomes its one owner.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect())
}

/// Sets every signal but SIGKILL and SIGSTOP to its default disposition and unblocks all:
/// the Rust runtime ignores SIGPIPE and a parent may ignore SIGINT, and ignored dispositions
/// and the mask survive exec.
/// SIGPIPE back to its default: a command that only prints ends quietly when its reader goes
/// away (`ccscope ps | head`), as other command-line tools do, instead of failing a write.
/// Never for a supervisor, whose services must not go with its terminal's pipe.
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL installs no handler; no code of ours runs in signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

pub fn reset_signals() {
    for number in 1..32 {
        if number != libc::SIGKILL && number != libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal
            // context; a handler another part of the program set up (tokio's) simply stops
            // being called, which is memory-safe. Invalid numbers only fail with EINVAL.
            unsafe { libc::signal(number, libc::SIG_DFL) };
        }
    }
    // SAFETY: `none` is a local sigset_t, initialised by sigemptyset before sigprocmask reads
    // it; the old mask is not asked for (null is allowed).
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Ignores each of `signals` from here on.
pub fn ignore_signals(signals: &[i32]) {
    for &number in signals {
        // SAFETY: SIG_IGN installs no handler, so no code runs in signal context; an invalid
        // number only fails with EINVAL.
        unsafe { libc::signal(number, libc::SIG_IGN) };
    }
}

/// NULL-terminated pointers to `argv`'s strings, for execv: valid while `argv` lives.
fn exec_pointers(argv: &[CString]) -> Vec<*const libc::c_char> {
    argv.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Replaces this process with `program` (execv: no PATH search, this environment). Returns
/// only if that failed, with why.
pub fn exec(program: &CStr, argv: &[CString]) -> io::Error {
    let pointers = exec_pointers(argv);
    // SAFETY: `program` is NUL-terminated; `pointers` holds pointers to NUL-terminated strings
    // that `argv` keeps alive across the call, and ends with a null pointer, as execv requires.
    unsafe { libc::execv(program.as_ptr(), pointers.as_ptr()) };
    io::Error::last_os_error()
}

/// How [`spawn_detached`] sets up the detached process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detach {
    /// It leads a session of its own (no controlling terminal, out of our process group).
    pub new_session: bool,
    /// Its stdin, stdout and stderr are /dev/null (so it holds none of ours open).
    pub null_stdio: bool,
}

/// Starts `program` with `argv` as nobody's child: forked twice, the middle process exits at
/// once and is reaped here, so the grandchild is reparented (to the nearest subreaper or
/// init). Descriptors that are not close-on-exec go with it. Returns once the middle process
/// is reaped; whether the exec itself worked is not reported (a failed one exits 127).
pub fn spawn_detached(program: &CStr, argv: &[CString], how: Detach) -> io::Result<()> {
    // Everything the children need is made before the fork: between fork and exec only
    // async-signal-safe calls run, and none allocates.
    let pointers = exec_pointers(argv);
    let null = c"/dev/null";
    // SAFETY: fork duplicates only this thread. The children below make raw system calls
    // only (setsid, open, dup2, fork, execv, _exit: all async-signal-safe, none allocating
    // or taking a lock another thread could hold) and end in exec or _exit, so they never
    // return into Rust code that might rely on the other threads or on destructors. The
    // pointers execv gets were made above and stay valid (this function's `argv` and
    // `program` are borrowed for its whole run).
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return Err(io::Error::last_os_error());
    }
    if middle == 0 {
        // SAFETY: as above; this is the middle child, which exits without returning.
        unsafe {
            if how.new_session {
                libc::setsid();
            }
            if libc::fork() == 0 {
                if how.null_stdio {
                    let fd = libc::open(null.as_ptr(), libc::O_RDWR);
                    if fd >= 0 {
                        for target in 0..3 {
                            libc::dup2(fd, target);
                        }
                        if fd > 2 {
                            libc::close(fd);
                        }
                    }
                }
                libc::execv(program.as_ptr(), pointers.as_ptr());
                libc::_exit(127);
            }
            libc::_exit(0);
        }
    }
    let middle = pid(middle)?;
    loop {
        match rustix::process::waitpid(Some(middle), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            // SIGCHLD ignored (inherited so across exec): the kernel reaped it already.
            Ok(_) | Err(rustix::io::Errno::CHILD) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a child spawned from a [`Command`] does to itself between fork and exec.
#[derive(Debug, Clone, Default)]
pub struct ChildSetup {
    /// setsid: it leads a session and a process group of its own.
    pub new_session: bool,
    /// Descriptors (close-on-exec in the parent) that it keeps across exec. The parent must
    /// hold them open until `spawn` returns.
    pub inherit: Vec<RawFd>,
}

/// Has `command`'s child apply `setup` before it execs.
pub fn set_child_setup(command: &mut Command, setup: ChildSetup) {
    let ChildSetup {
        new_session,
        inherit,
    } = setup;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: setsid and fcntl are raw system calls, iterating the Vec (moved in,
    // built before the fork) reads memory without allocating, and building an io::Error from
    // errno allocates nothing. A number in `inherit` that names no open descriptor only makes
    // fcntl fail with EBADF, which fails the spawn.
    unsafe {
        command.pre_exec(move || {
            if new_session {
                rustix::process::setsid()?;
            }
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Has `command`'s child lead a session of its own (a daemon: no controlling terminal, out of
/// the caller's process group).
pub fn new_session_on_spawn(command: &mut Command) {
    set_child_setup(
        command,
        ChildSetup {
            new_session: true,
            inherit: Vec::new(),
        },
    );
}

/// Lets go of what a long-running supervisor that has finished starting a stack no longer
/// needs resident: the pages of every read-only file mapping none of whose pages were ever
/// written (code and constants of the program and its libraries), and the free memory the
/// allocator still holds. What is used again comes back from the page cache, unchanged.
/// A mapping with a written page (relocations made read-only afterwards) is never touched.
pub fn trim_resident() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_read_only_file_mappings(&smaps) {
        // SAFETY: the range is exactly one mapping the kernel lists as private, read-only,
        // backed by a file, with no anonymous (written, copy-on-write) page: every page holds
        // what the file holds at that offset, and nothing can write it. Dropping the pages
        // only makes the next access fault them in again, with the same bytes, from the
        // file; references into it (code, string constants) stay valid.
        let _ = unsafe {
            rustix::mm::madvise(
                start as *mut std::ffi::c_void,
                end - start,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
    }
    // SAFETY: malloc_trim takes no pointer and only returns free heap memory to the kernel;
    // glibc serialises it with every other allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The (start, end) of every mapping in `smaps` that is private, read-only, backed by a file,
/// and has no anonymous page.
fn clean_read_only_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: `start-end perms offset dev inode [path]`.
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let range = usize::from_str_radix(start, 16)
                .ok()
                .zip(usize::from_str_radix(end, 16).ok());
            current = range.filter(|_| matches!(perms, "r-xp" | "r--p") && path.starts_with('/'));
        } else if first == "Anonymous:" {
            let anonymous = fields.next().unwrap_or("1");
            if let Some(range) = current.take().filter(|_| anonymous == "0") {
                found.push(range);
            }
        }
    }
    found
}

/// Who is on the other end of a connected Unix socket, as the kernel recorded it when the
/// connection was made (SO_PEERCRED): neither end can claim another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer_cred(socket: impl AsFd) -> io::Result<PeerCred> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a local ucred the kernel writes at most `len` bytes into, and `len`
    // says its size; the descriptor is borrowed for the call, so it is open.
    let r = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
    })
}

/// The owner of the file `name` inside `dir`, and whether it is a socket (not followed).
pub fn socket_owner_at(dir: impl AsFd, name: &str) -> io::Result<(u32, bool)> {
    let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    Ok((st.st_uid, kind == rustix::fs::FileType::Socket))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    #[test]
    fn only_clean_read_only_file_mappings_are_trimmed() {
        let smaps = "\
55d0a000-55d0b000 r--p 00000000 08:01 1 /usr/bin/x
Anonymous:             0 kB
55d0b000-55d0c000 r-xp 00001000 08:01 1 /usr/bin/x
Anonymous:             0 kB
55d0c000-55d0d000 r--p 00002000 08:01 1 /usr/bin/x
Anonymous:             4 kB
55d0d000-55d0e000 rw-p 00003000 08:01 1 /usr/bin/x
Anonymous:             0 kB
7f000000-7f001000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7f001000-7f002000 rw-s 00000000 00:1a 9 /tmp/registry.db-shm
Anonymous:             0 kB
";
        assert_eq!(
            super::clean_read_only_file_mappings(smaps),
            [(0x55d0a000, 0x55d0b000), (0x55d0b000, 0x55d0c000)],
            "relocated (written) pages, writable, shared and kernel mappings stay"
        );
        super::trim_resident();
    }

    use super::*;

    #[test]
    fn kill_checks_existence_and_refuses_unnamed_signals() {
        let me = std::process::id() as i32;
        kill(me, 0).expect("this process exists");
        let e = kill(me, libc::SIGRTMIN() + 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = pidfd_send_signal(pidfd_open(me).unwrap(), libc::SIGRTMIN() + 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn a_pipe_is_close_on_exec_and_carries_bytes() {
        let (r, w) = pipe().unwrap();
        for fd in [&r, &w] {
            assert!(
                rustix::io::fcntl_getfd(fd)
                    .unwrap()
                    .contains(rustix::io::FdFlags::CLOEXEC)
            );
        }
        assert!(!wait_readable(&r, Duration::from_millis(1)).unwrap());
        assert_eq!(write(&w, b"go").unwrap(), 2);
        assert!(wait_readable(&r, Duration::from_secs(10)).unwrap());
        let mut buf = [0u8; 4];
        assert_eq!(read(&r, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"go");
        set_nonblocking(&r).unwrap();
        assert_eq!(
            read(&r, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn descriptors_this_process_opened_cannot_be_claimed_as_inherited() {
        let (r, _w) = pipe().unwrap();
        let e = claim_inherited(&[r.as_raw_fd()]).unwrap_err();
        assert!(e.to_string().contains("was not inherited"), "{e}");
        let e = claim_inherited(&[1]).unwrap_err();
        assert!(e.to_string().contains("standard stream"), "{e}");
    }

    #[test]
    fn a_socketpair_names_this_process_as_its_peer() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_cred(&a).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, euid());
    }
}
