//! What a scope's cgroup counted itself: CPU time from `cpu.stat`, memory from
//! `memory.current`. The kernel keeps these for the whole cgroup, exited processes' CPU time
//! included, so they say what the service used, not what its current processes did.

use std::path::Path;

use serde::Serialize;

use super::ScopeHandle;

/// A scope's counters, each None where the host does not provide it (no cgroup at all with
/// the process-group backend; no `memory` controller in cgroup v2 on hybrid hosts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScopeStats {
    /// CPU time used, in microseconds (`usage_usec` of `cpu.stat`).
    pub cpu_usec: Option<u64>,
    /// Memory in use now, in bytes (`memory.current`).
    pub memory_bytes: Option<u64>,
}

impl ScopeStats {
    /// The counters of a cgroup directory.
    pub fn read(cgroup: &Path) -> ScopeStats {
        ScopeStats {
            cpu_usec: flat_key(&cgroup.join("cpu.stat"), "usage_usec"),
            memory_bytes: number(&cgroup.join("memory.current")),
        }
    }

    /// The counters of a scope: none without a cgroup.
    pub fn of(scope: &ScopeHandle) -> ScopeStats {
        scope
            .cgroup
            .as_deref()
            .map_or_else(ScopeStats::default, ScopeStats::read)
    }

    /// The sum of several scopes' counters (a service with several instances); a counter is
    /// None only if none of them has it.
    pub fn sum(stats: impl IntoIterator<Item = ScopeStats>) -> ScopeStats {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        stats
            .into_iter()
            .fold(ScopeStats::default(), |acc, s| ScopeStats {
                cpu_usec: add(acc.cpu_usec, s.cpu_usec),
                memory_bytes: add(acc.memory_bytes, s.memory_bytes),
            })
    }
}

fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn flat_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_cgroup_files_and_add_up() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(
            a.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        std::fs::write(a.path().join("memory.current"), "4096\n").unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("cpu.stat"), "usage_usec 500\n").unwrap();
        let (sa, sb) = (ScopeStats::read(a.path()), ScopeStats::read(b.path()));
        assert_eq!(
            sa,
            ScopeStats {
                cpu_usec: Some(1500),
                memory_bytes: Some(4096)
            }
        );
        assert_eq!(sb.memory_bytes, None, "no memory controller there");
        assert_eq!(
            ScopeStats::sum([sa, sb]),
            ScopeStats {
                cpu_usec: Some(2000),
                memory_bytes: Some(4096)
            }
        );
        assert_eq!(ScopeStats::sum([]), ScopeStats::default());
    }
}
