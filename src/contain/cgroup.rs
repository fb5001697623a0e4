//! cgroup v2 by plain file I/O: find the mount, create and remove directories, move
//! processes in, signal or kill a whole tree, and wait for `populated 0` as an event.
//! Both the systemd and the cgroupfs backend end up here: a systemd scope is a cgroup too.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::proc::sys;

/// Where cgroup2 is mounted: `/sys/fs/cgroup` on v2-only hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones. Read from mountinfo, never assumed.
pub fn v2_mount() -> io::Result<Option<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(v2_mount_from_mountinfo(&text))
}

/// The mount point of the first `cgroup2` line of a mountinfo text.
pub fn v2_mount_from_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\040` and friends.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 cgroup of a process, as a path relative to the v2 mount (`/user.slice/…`).
pub fn cgroup_of(pid: i32) -> io::Result<String> {
    let mut buf = [0u8; 4096];
    let text = read_small(Path::new(&format!("/proc/{pid}/cgroup")), &mut buf)?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} has no cgroup v2 entry"),
            )
        })
}

/// Reads a small kernel file (a process's cgroup, a cgroup's process list) into `buf` with as
/// few system calls as it takes: these are read for every process of a stop. A file larger
/// than `buf` is read whole the ordinary way.
fn read_small<'b>(path: &Path, buf: &'b mut [u8]) -> io::Result<std::borrow::Cow<'b, str>> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                return Ok(String::from_utf8_lossy(&buf[..len]));
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)?;
    let mut all = buf.to_vec();
    all.extend(rest);
    Ok(std::borrow::Cow::Owned(
        String::from_utf8_lossy(&all).into_owned(),
    ))
}

/// Whether the cgroup directory `dir` is the cgroup `relative` (as /proc/PID/cgroup names
/// it). The root cgroup `/` is never any directory of ours.
pub fn is_cgroup(dir: &Path, relative: &str) -> bool {
    let relative = relative.trim_start_matches('/');
    !relative.is_empty() && dir.ends_with(relative)
}

/// How a whole cgroup was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMethod {
    /// One write to `cgroup.kill` (Linux 5.14+): atomic, forks included.
    CgroupKill,
    /// Freeze, SIGKILL every pid, thaw: for kernels without `cgroup.kill`.
    FreezeAndSignal,
}

/// One cgroup v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub path: PathBuf,
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "could not {what} {}: {}",
            path.display(),
            crate::proc::describe_io(&e)
        ),
    )
}

impl Cgroup {
    pub fn at(path: impl Into<PathBuf>) -> Cgroup {
        Cgroup { path: path.into() }
    }

    /// Creates the directory and any missing parents.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Cgroup> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|e| with_path(e, "create cgroup", &path))?;
        Ok(Cgroup { path })
    }

    pub fn exists(&self) -> bool {
        self.path.join("cgroup.procs").exists()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn write(&self, name: &str, value: &str) -> io::Result<()> {
        let path = self.file(name);
        fs::write(&path, value).map_err(|e| with_path(e, &format!("write {value:?} to"), &path))
    }

    /// Moves a process into this cgroup.
    pub fn add_process(&self, pid: i32) -> io::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The processes directly in this cgroup (not in its children).
    pub fn procs(&self) -> io::Result<Vec<i32>> {
        let path = self.file("cgroup.procs");
        let mut buf = [0u8; 4096];
        let text = read_small(&path, &mut buf).map_err(|e| with_path(e, "read", &path))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// This cgroup and every descendant directory, parents first.
    pub fn tree(&self) -> Vec<Cgroup> {
        let mut all = vec![self.clone()];
        let mut i = 0;
        while i < all.len() {
            if let Ok(entries) = fs::read_dir(&all[i].path) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        all.push(Cgroup { path: entry.path() });
                    }
                }
            }
            i += 1;
        }
        all
    }

    /// Every process in this cgroup and its descendants.
    pub fn all_procs(&self) -> Vec<i32> {
        self.tree()
            .iter()
            .flat_map(|c| c.procs().unwrap_or_default())
            .collect()
    }

    /// A key of `cgroup.events` (`populated`, `frozen`). A cgroup that is being removed
    /// answers ENODEV; both that and a missing file read as NotFound.
    fn event(&self, key: &str) -> io::Result<Option<bool>> {
        let path = self.file("cgroup.events");
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("cgroup {} is gone", self.path.display()),
                )
            } else {
                with_path(e, "read", &path)
            }
        })?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u8>().ok())
            .map(|v| v == 1))
    }

    /// Whether any process lives in this cgroup or below it. A removed cgroup is empty.
    pub fn populated(&self) -> io::Result<bool> {
        match self.event("populated") {
            Ok(v) => Ok(v.unwrap_or(false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the kernel reports the tree frozen (`frozen 1` in `cgroup.events`: every
    /// process in it stopped, by its own `cgroup.freeze` or an ancestor's). A removed
    /// cgroup, or a kernel without the v2 freezer, is not frozen.
    pub fn frozen(&self) -> io::Result<bool> {
        match self.event("frozen") {
            Ok(v) => Ok(v.unwrap_or(false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The controllers available to this cgroup (its `cgroup.controllers`).
    pub fn controllers(&self) -> io::Result<Vec<String>> {
        let path = self.file("cgroup.controllers");
        let text = fs::read_to_string(&path).map_err(|e| with_path(e, "read", &path))?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    }

    /// Enables controllers for this cgroup's children. Fails with EBUSY on a cgroup that holds
    /// processes itself, so only ever called on the inner nodes ccscope made.
    pub fn enable_for_children(&self, controllers: &[&str]) -> io::Result<()> {
        if controllers.is_empty() {
            return Ok(());
        }
        let value: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
        self.write("cgroup.subtree_control", &value.join(" "))
    }

    pub fn set(&self, file: &str, value: &str) -> io::Result<()> {
        self.write(file, value)
    }

    /// Freezes (true) or thaws (false) the whole tree and waits until the kernel says so.
    pub fn freeze(&self, frozen: bool, deadline: Duration) -> io::Result<()> {
        self.write("cgroup.freeze", if frozen { "1" } else { "0" })?;
        let done = self.wait_for_event(deadline, |c| {
            Ok(c.event("frozen")?.unwrap_or(!frozen) == frozen || !c.populated()?)
        })?;
        if done {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "cgroup {} did not {} within {deadline:?}",
                    self.path.display(),
                    if frozen { "freeze" } else { "thaw" }
                ),
            ))
        }
    }

    /// Sends `signal` to every process of the tree. The tree is frozen meanwhile, so no
    /// process can fork a child that the pass would miss, nor exit and free its pid for reuse.
    /// Returns how many processes were signalled.
    pub fn signal_all(&self, signal: i32) -> io::Result<usize> {
        // A tree that will not freeze in time is signalled unfrozen rather than not at all.
        let freezable = self.file("cgroup.freeze").exists();
        let frozen = freezable && self.freeze(true, Duration::from_secs(2)).is_ok();
        let pids = self.all_procs();
        for pid in &pids {
            // A process that is gone already is what we wanted.
            let _ = sys::kill(*pid, signal);
        }
        if freezable {
            let thawed = self.freeze(false, Duration::from_secs(2));
            if frozen {
                thawed?;
            }
        }
        Ok(pids.len())
    }

    /// Sends `signal` to every process of the tree without stopping it, the way systemd's
    /// KillUnit does: pass after pass until a pass finds no process it has not signalled, so
    /// children forked meanwhile are signalled too. Each process is signalled through a pidfd
    /// opened before the list that confirms it is read, so a pid that was freed and reused
    /// meanwhile is never hit. Returns how many processes were signalled.
    pub fn signal_each(&self, signal: i32) -> usize {
        // A pidfd is opened for each pid listed, and the list read again: a pid still listed
        // after its pidfd was opened names a process in this tree (were the pid reused by a
        // process elsewhere, that one would have to be in the tree now to be listed), so no
        // per-process look at /proc/PID/cgroup is needed. The next read also shows what was
        // forked meanwhile; a bounded number of rounds catches a fork loop's children.
        let mut seen = std::collections::BTreeSet::new();
        let mut opened: Vec<(i32, OwnedFd)> = Vec::new();
        for round in 0..=16 {
            let listed: std::collections::BTreeSet<i32> = self
                .tree()
                .iter()
                .flat_map(|c| c.procs().unwrap_or_default())
                .collect();
            for (pid, fd) in opened.drain(..) {
                if listed.contains(&pid) {
                    let _ = sys::pidfd_send_signal(&fd, signal);
                }
            }
            if round == 16 {
                break;
            }
            for pid in listed {
                if seen.insert(pid) {
                    // Gone already when it fails: nothing to signal.
                    if let Ok(fd) = sys::pidfd_open(pid) {
                        opened.push((pid, fd));
                    }
                }
            }
            if opened.is_empty() {
                break;
            }
        }
        seen.len()
    }

    /// SIGKILLs every process of the tree at once.
    pub fn kill(&self) -> io::Result<KillMethod> {
        if self.file("cgroup.kill").exists() {
            self.write("cgroup.kill", "1")?;
            return Ok(KillMethod::CgroupKill);
        }
        self.signal_all(libc::SIGKILL)?;
        Ok(KillMethod::FreezeAndSignal)
    }

    /// Waits until nothing lives in the tree, woken by `cgroup.events` changes (inotify), not
    /// by polling. Returns false if the deadline passed first.
    pub fn wait_empty(&self, deadline: Duration) -> io::Result<bool> {
        self.wait_for_event(deadline, |c| Ok(!c.populated()?))
    }

    fn wait_for_event(
        &self,
        deadline: Duration,
        mut done: impl FnMut(&Cgroup) -> io::Result<bool>,
    ) -> io::Result<bool> {
        let events = self.file("cgroup.events");
        let watch = match EventsWatch::new(&events) {
            Ok(w) => Some(w),
            // The cgroup vanished (or is vanishing): nothing can live in it.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENODEV) =>
            {
                return done(self);
            }
            Err(e) => return Err(e),
        };
        let start = Instant::now();
        loop {
            if done(self)? {
                return Ok(true);
            }
            let Some(left) = deadline.checked_sub(start.elapsed()) else {
                return Ok(false);
            };
            if let Some(w) = &watch {
                w.wait(left)?;
            }
        }
    }

    /// Waits, for as long as it takes, until the cgroup holds no process, on the runtime's own
    /// reactor (no thread, no timer): each `cgroup.events` change wakes it once. Returns at
    /// once if the cgroup is gone. Where the file cannot be registered with the reactor, it
    /// looks every `fallback_poll` instead.
    pub async fn until_empty(&self, fallback_poll: Duration) -> io::Result<()> {
        // Already empty (a stop signal often ends a scope before it is waited on): nothing to
        // open or register.
        if !self.populated()? {
            return Ok(());
        }
        // `cgroup.events` raises POLLPRI on every change: the reactor waits on the file itself.
        // (An inotify instance would do too, but closing one waits for an RCU grace period,
        // milliseconds each, and a stop closes one per scope.)
        let path = self.file("cgroup.events");
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
        };
        let file = match file {
            Ok(f) => f,
            // The cgroup vanished (or is vanishing): nothing can live in it.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENODEV) =>
            {
                return Ok(());
            }
            Err(e) => return Err(with_path(e, "open", &path)),
        };
        let watch =
            match sys::async_with_interest(OwnedFd::from(file), tokio::io::Interest::PRIORITY) {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!("cannot wait on {} ({e}): polling", path.display());
                    while self.populated()? {
                        tokio::time::sleep(fallback_poll).await;
                    }
                    return Ok(());
                }
            };
        loop {
            if !self.populated()? {
                return Ok(());
            }
            let mut ready = watch.ready(tokio::io::Interest::PRIORITY).await?;
            ready.clear_ready();
        }
    }

    /// The same, for a short wait that must end promptly (a stop): woken by the
    /// `cgroup.events` change and, in case its delivery lags (the kernel defers it, and many
    /// cgroups emptying at once queue up), by a re-check every `recheck`.
    pub async fn until_empty_promptly(&self, recheck: Duration) -> io::Result<()> {
        let watching = self.until_empty(recheck);
        tokio::pin!(watching);
        loop {
            tokio::select! {
                done = &mut watching => return done,
                _ = tokio::time::sleep(recheck) => {
                    if !self.populated().unwrap_or(false) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Removes the tree, children first. A directory still populated a moment after its
    /// processes were killed is retried for up to `deadline`.
    pub fn remove(&self, deadline: Duration) -> io::Result<()> {
        let start = Instant::now();
        let mut tree = self.tree();
        tree.reverse();
        for cgroup in tree {
            loop {
                match fs::remove_dir(&cgroup.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < deadline =>
                    {
                        cgroup.wait_empty(deadline.saturating_sub(start.elapsed()))?;
                        // Empty but still busy: the kernel frees it an instant later.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(with_path(e, "remove cgroup", &cgroup.path)),
                }
            }
        }
        Ok(())
    }
}

/// An inotify watch on one `cgroup.events` file; the kernel signals it on every change.
struct EventsWatch {
    fd: OwnedFd,
}

impl EventsWatch {
    fn new(path: &Path) -> io::Result<EventsWatch> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        if let Err(e) = inotify::add_watch(&fd, path, inotify::WatchFlags::MODIFY) {
            // The cgroup went meanwhile: the instance is closed aside, off this thread.
            close_aside(fd);
            return Err(e.into());
        }
        Ok(EventsWatch { fd })
    }

    /// Waits up to `timeout` for a change, then drains the queued events.
    fn wait(&self, timeout: Duration) -> io::Result<()> {
        sys::wait_readable(&self.fd, timeout)?;
        drain(&self.fd);
        Ok(())
    }
}

/// Closes an inotify descriptor on the runtime's blocking pool when there is one.
fn close_aside(fd: OwnedFd) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(move || drop(fd))),
        Err(_) => drop(fd),
    }
}

/// Reads a non-blocking inotify descriptor until it has nothing queued.
fn drain(fd: impl AsFd) {
    let mut buf = [0u8; 4096];
    while sys::read(&fd, &mut buf).is_ok_and(|n| n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_mount_on_hybrid_and_unified_hosts() {
        let hybrid = "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_mount_from_mountinfo(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            v2_mount_from_mountinfo(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let none = "22 1 0:21 / /proc rw - proc proc rw\n";
        assert_eq!(v2_mount_from_mountinfo(none), None);
        let escaped = "1 1 0:1 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_mount_from_mountinfo(escaped),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }

    #[test]
    fn the_root_cgroup_is_never_ours() {
        let dir = Path::new("/sys/fs/cgroup/ccscope/demo/web");
        assert!(is_cgroup(dir, "/ccscope/demo/web"));
        assert!(
            !is_cgroup(dir, "/"),
            "a process in the root cgroup was not placed"
        );
        assert!(!is_cgroup(dir, "/demo/web2"));
        assert!(!is_cgroup(dir, "/eb"), "whole components only");
    }

    #[test]
    fn reads_a_fake_cgroup_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroup::create(tmp.path().join("a/b")).unwrap();
        fs::write(cg.path.join("cgroup.procs"), "12\n34\n").unwrap();
        fs::write(cg.path.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        fs::write(cg.path.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(cg.procs().unwrap(), vec![12, 34]);
        assert!(cg.populated().unwrap());
        assert_eq!(cg.controllers().unwrap(), vec!["cpu", "memory", "pids"]);
        fs::write(cg.path.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert!(cg.wait_empty(Duration::from_millis(10)).unwrap());
        assert!(
            !Cgroup::at(tmp.path().join("gone")).populated().unwrap(),
            "a removed cgroup is empty"
        );
    }
}
