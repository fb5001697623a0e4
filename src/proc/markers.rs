//! The environment markers every launched process carries (`CCSCOPE_PROJECT`,
//! `CCSCOPE_SERVICE`, `CCSCOPE_RUN_ID`), read back from /proc/PID/environ. Children inherit
//! them, so they find a service's processes wherever they went.

use std::fs;
use std::path::Path;

use crate::proc::{ProcessIdentity, read_stat};

pub const PROJECT: &str = "CCSCOPE_PROJECT";
pub const SERVICE: &str = "CCSCOPE_SERVICE";
pub const RUN_ID: &str = "CCSCOPE_RUN_ID";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub project: String,
    pub service: Option<String>,
    pub run_id: Option<String>,
}

/// A live process that carries markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    pub identity: ProcessIdentity,
    pub pgrp: i32,
    pub markers: Markers,
}

/// Parses a NUL-separated environ block; None without a `CCSCOPE_PROJECT`.
pub fn parse_environ(block: &[u8]) -> Option<Markers> {
    let mut project = None;
    let mut service = None;
    let mut run_id = None;
    for entry in block.split(|b| *b == 0) {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = (&entry[..eq], &entry[eq + 1..]);
        let value = || String::from_utf8_lossy(value).into_owned();
        match key {
            b"CCSCOPE_PROJECT" => project = Some(value()),
            b"CCSCOPE_SERVICE" => service = Some(value()),
            b"CCSCOPE_RUN_ID" => run_id = Some(value()),
            _ => {}
        }
    }
    Some(Markers {
        project: project?,
        service,
        run_id,
    })
}

/// Every live (non-zombie) process under `proc_root` whose environment carries markers.
/// Processes that vanish or cannot be read (another user's) are skipped.
pub fn scan(proc_root: &Path) -> Vec<MarkedProcess> {
    let mut found = Vec::new();
    for (pid, dir) in super::pid_dirs(proc_root) {
        let Ok(block) = fs::read(dir.join("environ")) else {
            continue;
        };
        let Some(markers) = parse_environ(&block) else {
            continue;
        };
        let Ok(stat) = read_stat(proc_root, pid) else {
            continue;
        };
        if stat.is_zombie() {
            continue;
        }
        found.push(MarkedProcess {
            identity: ProcessIdentity {
                pid,
                start_time: stat.start_time,
            },
            pgrp: stat.pgrp,
            markers,
        });
    }
    found.sort_by_key(|p| p.identity.pid);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_markers_from_an_environ_block() {
        let block = b"PATH=/bin\0CCSCOPE_PROJECT=shop\0CCSCOPE_SERVICE=api\0CCSCOPE_RUN_ID=abc\0";
        assert_eq!(
            parse_environ(block),
            Some(Markers {
                project: "shop".into(),
                service: Some("api".into()),
                run_id: Some("abc".into())
            })
        );
        assert_eq!(
            parse_environ(b"PATH=/bin\0CCSCOPE_SERVICE=api\0"),
            None,
            "no project, no marker"
        );
        assert_eq!(parse_environ(b""), None);
    }
}
