//! The trail a service leaves in what it starts: the pipes its stdout and stderr go through.
//! The journal forwarder, inside the service's scope, holds their read ends; the service and
//! everything it forks hold the write ends. A process that left the scope (another cgroup, an
//! empty environment, a kernel thread's name for argv[0]) still holds them: it is the
//! service's, whatever else it says about itself.
//!
//! Only the forwarder's two output channels make the trail. Other pipes a scope's processes
//! hold prove nothing: `ccscope exec` passes its caller's terminal or pipeline through, an
//! adopted process keeps the pipes of the shell it came from, and every process of those is
//! outside. The tap (the forwarder's copy to the supervisor) is no trail either: the
//! supervisor reads its other end, and a process holding a tap is never a stray by it.
//!
//! Cost: the scopes' processes' command lines (to find the forwarders), three links of each
//! forwarder; then, for the candidates (same uid, outside the scopes, started no earlier than
//! the service), their descriptor links. A process older than the service cannot hold a pipe
//! made for it (unless handed one over a socket, which makes it no escapee).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use crate::contain::ScopeHandle;
use crate::launch::forward;

/// One output channel of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub service: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// `pipe` or `socket`.
    pub kind: &'static str,
    pub inode: u64,
}

impl Channel {
    /// Why a holder of this channel is the service's, for a stray's reason.
    pub fn reason(&self) -> String {
        format!(
            "holds the {} {} of service `{}` ({}:[{}]) outside every scope",
            self.stream, self.kind, self.service, self.kind, self.inode
        )
    }
}

/// The output channels of a project's services, read from their forwarders.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    channels: HashMap<u64, Channel>,
    taps: HashSet<u64>,
    /// The earliest start time (clock ticks after boot) a holder can have: the oldest
    /// service's main process (the forwarder is forked before the service is exec'd).
    since: Option<u64>,
}

/// A forwarder's command line: `ccscope __journal-forward OUT ERR SERVICE_PID FILE|- TAP|-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderArgs {
    pub out: i32,
    pub err: i32,
    pub service_pid: i32,
    pub tap: Option<i32>,
}

impl ForwarderArgs {
    /// Parses a NUL-separated argv block; None if it is not a forwarder's.
    pub fn parse(block: &[u8]) -> Option<ForwarderArgs> {
        let mut args = block
            .strip_suffix(&[0])
            .unwrap_or(block)
            .split(|b| *b == 0)
            .map(|a| std::str::from_utf8(a).ok());
        let _program = args.next()?;
        if args.next()?? != forward::SUBCOMMAND {
            return None;
        }
        let mut number = || args.next().flatten().and_then(|a| a.parse::<i32>().ok());
        let (out, err, service_pid) = (number()?, number()?, number()?);
        let _file = number();
        let tap = number();
        Some(ForwarderArgs {
            out,
            err,
            service_pid,
            tap,
        })
    }
}

/// `pipe:[N]` or `socket:[N]`, as /proc/PID/fd/N reads: the kind and the inode.
pub fn channel_inode(link: &str) -> Option<(&'static str, u64)> {
    let (kind, rest) = if let Some(rest) = link.strip_prefix("pipe:[") {
        ("pipe", rest)
    } else {
        ("socket", link.strip_prefix("socket:[")?)
    };
    Some((kind, rest.strip_suffix(']')?.parse().ok()?))
}

/// A forwarder's channels as read from /proc: each link of its descriptors, and the start
/// times of itself and its service.
#[derive(Debug, Clone, Default)]
pub struct ForwarderSeen {
    pub out: Option<String>,
    pub err: Option<String>,
    pub tap: Option<String>,
    pub start_time: u64,
    /// The service's main process, if it lives (and is not a later process on a reused pid).
    pub service_start_time: Option<u64>,
}

impl Trail {
    /// The trail of `scopes`' services: each forwarder among their processes, read now.
    /// Processes that vanish or cannot be read are skipped.
    pub fn read(proc_root: &Path, scopes: &[(ScopeHandle, Vec<i32>)]) -> Trail {
        let mut trail = Trail::default();
        for (scope, pids) in scopes {
            for pid in pids {
                if let Some(seen) = read_forwarder(proc_root, *pid) {
                    trail.add(&scope.service, &seen);
                }
            }
        }
        trail
    }

    /// Adds one forwarder of `service`.
    pub fn add(&mut self, service: &str, seen: &ForwarderSeen) {
        for (stream, link) in [("stdout", &seen.out), ("stderr", &seen.err)] {
            if let Some((kind, inode)) = link.as_deref().and_then(channel_inode) {
                self.channels.insert(
                    inode,
                    Channel {
                        service: service.to_string(),
                        stream,
                        kind,
                        inode,
                    },
                );
            }
        }
        if let Some((_, inode)) = seen.tap.as_deref().and_then(channel_inode) {
            self.taps.insert(inode);
        }
        // A service pid that started after its forwarder is another process on a reused pid.
        let since = seen
            .service_start_time
            .filter(|s| *s <= seen.start_time)
            .unwrap_or(seen.start_time);
        self.since = Some(self.since.map_or(since, |s| s.min(since)));
    }

    /// Whether there is nothing to follow (no forwarder seen).
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The earliest start time a holder can have.
    pub fn since(&self) -> Option<u64> {
        self.since
    }

    /// Whether the trail asks about this inode at all (a channel or a tap).
    pub fn wants(&self, inode: u64) -> bool {
        self.channels.contains_key(&inode) || self.taps.contains(&inode)
    }

    /// What the inodes a process holds (among those the trail wants) say it is: None for
    /// nothing, or a tap's reader (the supervisor); else the first channel it holds.
    pub fn judge(&self, held: &[u64]) -> Option<&Channel> {
        if held.iter().any(|i| self.taps.contains(i)) {
            return None;
        }
        let mut held = held.to_vec();
        held.sort_unstable();
        held.iter().find_map(|i| self.channels.get(i))
    }
}

/// Reads `pid` as a forwarder: None if it is not one (or vanished).
fn read_forwarder(proc_root: &Path, pid: i32) -> Option<ForwarderSeen> {
    let dir = proc_root.join(pid.to_string());
    // A forwarder's argv is short; a long command line is not one, and is not read whole.
    let mut block = Vec::with_capacity(256);
    std::fs::File::open(dir.join("cmdline"))
        .ok()?
        .take(4096)
        .read_to_end(&mut block)
        .ok()?;
    let args = ForwarderArgs::parse(&block)?;
    let link = |fd: i32| {
        std::fs::read_link(dir.join("fd").join(fd.to_string()))
            .ok()
            .map(|l| l.to_string_lossy().into_owned())
    };
    let stat = crate::proc::read_stat(proc_root, pid).ok()?;
    let service_start_time = crate::proc::read_stat(proc_root, args.service_pid)
        .ok()
        .filter(|s| !s.is_zombie())
        .map(|s| s.start_time);
    Some(ForwarderSeen {
        out: link(args.out),
        err: link(args.err),
        tap: args.tap.and_then(link),
        start_time: stat.start_time,
        service_start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_forwarders_command_line_and_nothing_else() {
        let block = b"ccscope\0__journal-forward\x0023\x0025\x005009\0-\x0022\0";
        assert_eq!(
            ForwarderArgs::parse(block),
            Some(ForwarderArgs {
                out: 23,
                err: 25,
                service_pid: 5009,
                tap: Some(22)
            })
        );
        let no_tap = b"/usr/bin/ccscope\0__journal-forward\x003\x004\x0099\x005\0-\0";
        assert_eq!(ForwarderArgs::parse(no_tap).map(|a| a.tap), Some(None));
        assert_eq!(ForwarderArgs::parse(b"sleep\x00300\0"), None);
        assert_eq!(
            ForwarderArgs::parse(b"ccscope\0__journal-forward\0x\0"),
            None
        );
        assert_eq!(ForwarderArgs::parse(b""), None);
    }

    #[test]
    fn reads_pipe_and_socket_links_only() {
        assert_eq!(channel_inode("pipe:[13375300]"), Some(("pipe", 13375300)));
        assert_eq!(channel_inode("socket:[77]"), Some(("socket", 77)));
        assert_eq!(channel_inode("/dev/null"), None);
        assert_eq!(channel_inode("anon_inode:[eventfd]"), None);
        assert_eq!(channel_inode("pipe:[x]"), None);
    }

    fn seen(
        out: u64,
        err: u64,
        tap: Option<u64>,
        start: u64,
        service: Option<u64>,
    ) -> ForwarderSeen {
        ForwarderSeen {
            out: Some(format!("pipe:[{out}]")),
            err: Some(format!("pipe:[{err}]")),
            tap: tap.map(|t| format!("pipe:[{t}]")),
            start_time: start,
            service_start_time: service,
        }
    }

    #[test]
    fn a_tap_reader_is_no_holder_and_the_oldest_service_bounds_the_search() {
        let mut trail = Trail::default();
        assert!(trail.is_empty());
        trail.add("web", &seen(10, 11, Some(12), 500, Some(499)));
        // Its service pid now names a younger process: the forwarder's own start bounds it.
        trail.add("api", &seen(20, 21, None, 300, Some(900)));
        assert_eq!(trail.since(), Some(300));
        assert_eq!(
            trail.judge(&[11]).map(|c| (c.service.as_str(), c.stream)),
            Some(("web", "stderr"))
        );
        assert_eq!(trail.judge(&[20]).map(|c| c.service.as_str()), Some("api"));
        assert_eq!(trail.judge(&[12, 10]), None, "the supervisor reads the tap");
        assert_eq!(trail.judge(&[99]), None);
        assert!(trail.wants(12) && trail.wants(21) && !trail.wants(99));
        assert!(
            trail
                .judge(&[10])
                .unwrap()
                .reason()
                .contains("stdout pipe of service `web`")
        );
    }
}
