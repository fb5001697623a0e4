//! One pass over procfs: every process (identity, parent, owner, executable, command line,
//! cgroup, `CCSCOPE_*` markers where readable) and every listening socket (TCP and UDP over
//! IPv4 and IPv6, Unix), joined to the processes holding them through the socket inodes in
//! `/proc/PID/fd`. Processes that vanish mid-scan or cannot be read are skipped and counted,
//! never an error.
//!
//! Our own parser rather than the `procfs` crate: it reads only the files discovery needs,
//! each once, and reuses one buffer.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::io::Read;
use std::mem::MaybeUninit;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};
use serde::Serialize;

use super::sockets;
use crate::proc::markers::{self, Markers};
use crate::proc::{ProcessIdentity, StatLine};

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listening {
    /// `tcp`, `tcp6`, `udp`, `udp6` or `unix`.
    pub protocol: &'static str,
    /// The local address (`127.0.0.1`, `::`), or the path of a Unix socket (`@name` if abstract).
    pub address: String,
    /// The port (none for Unix sockets).
    pub port: Option<u16>,
    #[serde(skip)]
    pub inode: u64,
}

/// One process as the scan saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ScannedProcess {
    pub pid: i32,
    pub start_time: u64,
    pub ppid: i32,
    pub uid: u32,
    /// The file name of /proc/PID/exe (None where it cannot be read: another user's, a kernel
    /// thread).
    pub exe: Option<String>,
    pub comm: String,
    /// Arguments joined by spaces.
    pub command_line: String,
    /// The v2 cgroup, relative to the mount (`/user.slice/…`).
    pub cgroup: Option<String>,
    #[serde(skip)]
    pub markers: Option<Markers>,
    pub listening: Vec<Listening>,
}

impl ScannedProcess {
    pub fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// What one pass found.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// By pid.
    pub processes: HashMap<i32, ScannedProcess>,
    /// Processes that vanished mid-scan or could not be read.
    pub skipped: usize,
    /// Every listening socket the tables list, held by a process seen or not.
    pub listening: Vec<Listening>,
}

impl Snapshot {
    /// The TCP socket listening on `port`, and the pid holding it if the scan saw one.
    pub fn tcp_holder(&self, port: u16) -> Option<(&Listening, Option<i32>)> {
        let listener = self
            .listening
            .iter()
            .find(|l| l.port == Some(port) && l.protocol.starts_with("tcp"))?;
        let holder = self
            .processes
            .values()
            .filter(|p| p.listening.iter().any(|l| l.inode == listener.inode))
            .map(|p| p.pid)
            .min();
        Some((listener, holder))
    }

    /// `pid` and its descendants, parents first.
    pub fn subtree(&self, pid: i32) -> Vec<i32> {
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in self.processes.values() {
            children.entry(p.ppid).or_default().push(p.pid);
        }
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            if let Some(kids) = children.get(&all[i]) {
                let mut kids = kids.clone();
                kids.sort_unstable();
                all.extend(kids.into_iter().filter(|k| *k != pid));
            }
            i += 1;
        }
        all
    }
}

/// Scans `proc_root` (normally `/proc`), split over the CPUs (up to 8 threads).
pub fn scan(proc_root: &Path) -> Snapshot {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    scan_with(proc_root, cpus.min(8))
}

/// Scans the processes alone: no socket tables, no walk of each process's descriptors (the
/// costliest part). For what needs no ports: the strays a stop looks for.
pub fn scan_processes(proc_root: &Path) -> Snapshot {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    scan_inner(proc_root, cpus.min(8), false)
}

/// Scans with at most `threads` threads (processes are independent of one another).
pub fn scan_with(proc_root: &Path, threads: usize) -> Snapshot {
    scan_inner(proc_root, threads, true)
}

fn scan_inner(proc_root: &Path, threads: usize, sockets: bool) -> Snapshot {
    let listening = if sockets {
        listening_sockets(proc_root)
    } else {
        Vec::new()
    };
    let by_inode: HashMap<u64, &Listening> = listening.iter().map(|l| (l.inode, l)).collect();
    let dirs: Vec<(i32, std::path::PathBuf)> = super::pid_dirs(proc_root).collect();
    let workers = threads.max(1).min(dirs.len().div_ceil(256).max(1));
    let chunk = dirs.len().div_ceil(workers).max(1);
    let read_chunk = |part: &[(i32, std::path::PathBuf)]| {
        let mut buf = Vec::with_capacity(8192);
        let mut link = [0u8; 64];
        let mut found = Vec::with_capacity(part.len());
        let mut skipped = 0;
        for (pid, dir) in part {
            match read_process(*pid, dir, &by_inode, &mut buf, &mut link) {
                Some(p) => found.push(p),
                None => skipped += 1,
            }
        }
        (found, skipped)
    };
    let parts: Vec<(Vec<ScannedProcess>, usize)> = if workers == 1 {
        vec![read_chunk(&dirs)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = dirs
                .chunks(chunk)
                .map(|part| scope.spawn(move || read_chunk(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut snapshot = Snapshot::default();
    for (found, skipped) in parts {
        snapshot.skipped += skipped;
        snapshot
            .processes
            .extend(found.into_iter().map(|p| (p.pid, p)));
    }
    drop(by_inode);
    snapshot.listening = listening;
    snapshot
}

fn read_process(
    pid: i32,
    dir: &Path,
    sockets: &HashMap<u64, &Listening>,
    buf: &mut Vec<u8>,
    link: &mut [u8; 64],
) -> Option<ScannedProcess> {
    // The process's directory is opened once; every file is read relative to it (no path
    // built, no path walked again).
    let at = Dir::open(dir, OFlags::PATH)?;
    let uid = at.owner()?;
    at.read(c"stat", buf).ok()?;
    let stat = StatLine::parse(std::str::from_utf8(buf).ok()?)?;
    if stat.is_zombie() {
        return None;
    }
    at.read(c"cmdline", buf).ok()?;
    let command_line = join_args(buf);
    let cgroup = at.read(c"cgroup", buf).ok().and_then(|()| {
        std::str::from_utf8(buf)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_string)
    });
    let markers = at
        .read(c"environ", buf)
        .ok()
        .and_then(|()| markers::parse_environ(buf));
    let mut exe_buf = [0u8; 512];
    let exe = at.read_link_into(c"exe", &mut exe_buf).and_then(|target| {
        let name = target.rsplit('/').next()?;
        Some(name.trim_end_matches(" (deleted)").to_string())
    });
    let mut listening = Vec::new();
    if !sockets.is_empty() {
        if let Some(fds) = at.open_dir(c"fd") {
            let mut seen = HashSet::new();
            fds.each_entry(|name| {
                // readlinkat into a stack buffer: thousands of descriptors, no allocation each.
                let Some(target) = fds.read_link_into(name, link) else {
                    return;
                };
                if let Some(l) = socket_inode(target).and_then(|inode| sockets.get(&inode)) {
                    if seen.insert(l.inode) {
                        listening.push((*l).clone());
                    }
                }
            });
        }
    }
    Some(ScannedProcess {
        pid,
        start_time: stat.start_time,
        ppid: stat.ppid,
        uid,
        exe,
        comm: stat.comm,
        command_line,
        cgroup,
        markers,
        listening,
    })
}

/// The pipe and socket inodes among `pid`'s open descriptors that `wanted` asks for (each
/// once). Empty if the process vanished or its descriptors cannot be read.
pub fn held_inodes(proc_root: &Path, pid: i32, wanted: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut held = Vec::new();
    let Some(fds) = Dir::open(&proc_root.join(pid.to_string()).join("fd"), OFlags::RDONLY) else {
        return held;
    };
    let mut link = [0u8; 64];
    fds.each_entry(|name| {
        let Some(target) = fds.read_link_into(name, &mut link) else {
            return;
        };
        if let Some((_, inode)) = super::trail::channel_inode(target) {
            if wanted(inode) && !held.contains(&inode) {
                held.push(inode);
            }
        }
    });
    held
}

/// One pass over procfs for the holders of `wanted` inodes among the processes owned by `uid`
/// (the owner of /proc/PID) that started at or after `since`: (identity, the inodes held).
/// Only those processes' descriptors are read.
pub fn holders_since(
    proc_root: &Path,
    uid: u32,
    since: u64,
    wanted: impl Fn(u64) -> bool,
) -> Vec<(ProcessIdentity, Vec<u64>)> {
    let mut found = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    for (pid, dir) in super::pid_dirs(proc_root) {
        let Some(at) = Dir::open(&dir, OFlags::PATH) else {
            continue;
        };
        if at.owner() != Some(uid) || at.read(c"stat", &mut buf).is_err() {
            continue;
        }
        let Some(stat) = std::str::from_utf8(&buf).ok().and_then(StatLine::parse) else {
            continue;
        };
        if stat.is_zombie() || stat.start_time < since {
            continue;
        }
        let held = held_inodes(proc_root, pid, &wanted);
        if !held.is_empty() {
            found.push((
                ProcessIdentity {
                    pid,
                    start_time: stat.start_time,
                },
                held,
            ));
        }
    }
    found
}

/// A directory opened once, read relative to its descriptor.
struct Dir(std::os::fd::OwnedFd);

impl Dir {
    fn open(path: &Path, flags: OFlags) -> Option<Dir> {
        // rustix turns a short path into a C string on the stack: no allocation.
        rfs::open(
            path,
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .map(Dir)
    }

    /// The directory's owner (for /proc/PID: the process's uid).
    fn owner(&self) -> Option<u32> {
        rfs::fstat(&self.0).ok().map(|st| st.st_uid)
    }

    /// Reads the file `name` into `buf` (cleared first).
    fn read(&self, name: &CStr, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        let fd = rfs::openat(
            &self.0,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        fs::File::from(fd).read_to_end(buf).map(drop)
    }

    /// A subdirectory, opened for reading its entries.
    fn open_dir(&self, name: &CStr) -> Option<Dir> {
        rfs::openat(
            &self.0,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .map(Dir)
    }

    /// A symlink's target, into a caller's (stack) buffer; None if unreadable or longer.
    fn read_link_into<'b, const N: usize>(
        &self,
        name: &CStr,
        buf: &'b mut [u8; N],
    ) -> Option<&'b str> {
        let n = rfs::readlinkat_raw(&self.0, name, &mut *buf).ok()?;
        if n == 0 || n >= N {
            return None;
        }
        std::str::from_utf8(&buf[..n]).ok()
    }

    /// Calls `each` with the name of every entry but `.` and `..`. The entries are read with
    /// getdents into a stack buffer, straight from this descriptor: no copy of it, no
    /// allocation.
    fn each_entry(&self, mut each: impl FnMut(&CStr)) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = rfs::RawDir::new(&self.0, &mut buf);
        while let Some(Ok(entry)) = entries.next() {
            let name = entry.file_name();
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                each(name);
            }
        }
    }
}

fn join_args(block: &[u8]) -> String {
    let trimmed = block.strip_suffix(&[0]).unwrap_or(block);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every listening socket of this network namespace: TCP in state LISTEN, UDP sockets bound
/// to a port (state 07, unconnected), Unix sockets in state LISTEN or datagram sockets with a
/// path.
pub fn listening_sockets(proc_root: &Path) -> Vec<Listening> {
    let mut all = Vec::new();
    // The table, the protocol, and the state that means listening (TCP LISTEN; an unconnected
    // UDP socket).
    let tables = [
        ("net/tcp", "tcp", "0A"),
        ("net/tcp6", "tcp6", "0A"),
        ("net/udp", "udp", "07"),
        ("net/udp6", "udp6", "07"),
    ];
    for (table, protocol, state) in tables {
        if let Ok(text) = fs::read_to_string(proc_root.join(table)) {
            all.extend(
                sockets::parse_table(&text, state)
                    .into_iter()
                    .map(|l| Listening {
                        protocol,
                        address: l.address,
                        port: Some(l.port),
                        inode: l.inode,
                    }),
            );
        }
    }
    if let Ok(text) = fs::read_to_string(proc_root.join("net/unix")) {
        all.extend(parse_unix_table(&text));
    }
    all
}

/// `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode Path`. Listening: flags
/// `00010000` (__SO_ACCEPTCON) with a path.
pub fn parse_unix_table(text: &str) -> Vec<Listening> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let path = f.get(7)?;
            if *f.get(3)? != "00010000" {
                return None;
            }
            Some(Listening {
                protocol: "unix",
                address: path.to_string(),
                port: None,
                inode: f.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_listeners_only() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 21925 /run/dbus/system_bus_socket\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 21926 /run/dbus/system_bus_socket\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 999\n";
        let got = parse_unix_table(text);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].address, "/run/dbus/system_bus_socket");
        assert_eq!(got[0].inode, 21925);
    }

    #[test]
    fn one_pass_sees_this_process_its_parent_and_its_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snapshot = scan(Path::new("/proc"));
        let me = &snapshot.processes[&(std::process::id() as i32)];
        assert_eq!(me.ppid, std::os::unix::process::parent_id() as i32);
        assert!(me.command_line.contains("ccscope"), "{}", me.command_line);
        assert!(me.cgroup.is_some());
        assert!(
            me.listening
                .iter()
                .any(|l| l.protocol == "tcp" && l.port == Some(port)),
            "{:?}",
            me.listening
        );
        assert!(snapshot.subtree(1).len() > 1, "pid 1 has descendants");
    }
}
