//! A process's identity is (pid, start time), never the pid alone: pids are reused, start
//! times (clock ticks since boot, /proc/PID/stat field 22) are not, for a given pid.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Clock ticks after boot at which the process started.
    pub start_time: u64,
}

/// What /proc/PID/stat says that identity and liveness need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatLine {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub start_time: u64,
}

impl StatLine {
    /// Parses a /proc/PID/stat line. comm sits in parentheses and may itself hold spaces and
    /// parentheses, so the fields are counted from the last `)`.
    pub fn parse(line: &str) -> Option<StatLine> {
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        let pid = line[..open].trim().parse().ok()?;
        let comm = line.get(open + 1..close)?.to_string();
        let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
        // After comm: field 3 is state, 4 ppid, ... 22 starttime.
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        let pgrp = rest.next()?.parse().ok()?;
        let start_time = rest.nth(22 - 6)?.parse().ok()?;
        Some(StatLine {
            pid,
            comm,
            state,
            ppid,
            pgrp,
            start_time,
        })
    }

    /// A zombie has exited; it only waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Reads /proc/PID/stat under a procfs root (injectable for tests).
pub fn read_stat(proc_root: &std::path::Path, pid: i32) -> io::Result<StatLine> {
    let path: PathBuf = proc_root.join(pid.to_string()).join("stat");
    let text = fs::read_to_string(&path)?;
    StatLine::parse(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unparsable {}", path.display()),
        )
    })
}

/// Answers "is this exact process still alive?".
pub trait LivenessProbe {
    fn is_alive(&self, id: ProcessIdentity) -> bool;
}

/// The real /proc.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }
}

impl ProcFs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The identity of a live (non-zombie) process.
    pub fn identity(&self, pid: i32) -> io::Result<ProcessIdentity> {
        let stat = read_stat(&self.root, pid)?;
        if stat.is_zombie() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} is a zombie"),
            ));
        }
        Ok(ProcessIdentity {
            pid,
            start_time: stat.start_time,
        })
    }

    /// The command line, arguments joined by spaces (empty for kernel threads).
    pub fn cmdline(&self, pid: i32) -> io::Result<String> {
        let raw = fs::read(self.root.join(pid.to_string()).join("cmdline"))?;
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        Ok(parts.join(" "))
    }
}

impl LivenessProbe for ProcFs {
    fn is_alive(&self, id: ProcessIdentity) -> bool {
        match read_stat(&self.root, id.pid) {
            Ok(stat) => stat.start_time == id.start_time && !stat.is_zombie(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";

    #[test]
    fn parses_comm_with_parentheses_and_start_time() {
        let s = StatLine::parse(LINE).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (odd) cmd");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_time, 987654);
        assert!(!s.is_zombie());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(StatLine::parse("nonsense"), None);
        assert_eq!(StatLine::parse("1 (x) S"), None);
    }

    #[test]
    fn fake_procfs_tells_reuse_and_zombies_apart() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: i32, state: char, start: u64| {
            let d = dir.path().join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("stat"),
                format!("{pid} (x) {state} 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
            )
            .unwrap();
        };
        write(10, 'S', 500);
        write(11, 'Z', 600);
        let procfs = ProcFs::at(dir.path());
        assert!(procfs.is_alive(ProcessIdentity {
            pid: 10,
            start_time: 500
        }));
        assert!(
            !procfs.is_alive(ProcessIdentity {
                pid: 10,
                start_time: 499
            }),
            "a reused pid is another process"
        );
        assert!(
            !procfs.is_alive(ProcessIdentity {
                pid: 11,
                start_time: 600
            }),
            "a zombie is dead"
        );
        assert!(!procfs.is_alive(ProcessIdentity {
            pid: 12,
            start_time: 1
        }));
    }

    #[test]
    fn reads_this_process_from_the_real_procfs() {
        let procfs = ProcFs::default();
        let me = procfs.identity(std::process::id() as i32).unwrap();
        assert!(procfs.is_alive(me));
        assert!(!procfs.is_alive(ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        }));
    }
}
