//! One counter sample of a service's cgroups: CPU time (`cpu.stat`), memory, pressure stall
//! figures (`cpu.pressure`, `memory.pressure`, `io.pressure`, their `some avg10`), and its
//! processes. Where the memory controller is not in cgroup v2 (hybrid hosts, where it stays
//! bound to v1) there is no `memory.current`: the resident set of the cgroup's processes
//! (`/proc/PID/statm`) stands in, and the sample says which it is.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::contain::ScopeStats;

/// Where a memory figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// The cgroup's own `memory.current` (page cache and kernel memory included).
    Cgroup,
    /// The sum of its processes' resident sets (`/proc/PID/statm`): the fallback where the
    /// cgroup has no `memory.current`; shared pages count once per process.
    Rss,
}

impl MemorySource {
    pub fn describe(self) -> &'static str {
        match self {
            MemorySource::Cgroup => "memory.current",
            MemorySource::Rss => "RSS of its processes (no memory.current here)",
        }
    }
}

/// Pressure stall information: the share of the last 10 s in which some task of the cgroup
/// waited for the resource (`some avg10`, in percent). None where the host has no PSI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub io: Option<f64>,
}

impl Pressure {
    pub fn any(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some() || self.io.is_some()
    }
}

/// What one look at a service's cgroups found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// CPU time its cgroups used so far, in microseconds.
    pub cpu_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_source: Option<MemorySource>,
    pub pressure: Pressure,
    /// The processes in its cgroups.
    pub pids: Vec<i32>,
    /// Seconds since its oldest process started.
    pub uptime_s: Option<u64>,
    /// When the CPU counter was read, in microseconds on the sampler's monotonic clock: the
    /// CPU share is the counter's change over the time between two reads of it, not between
    /// two whole samples (which a loaded machine stretches unevenly).
    pub read_at_us: Option<u64>,
}

/// Reads the counters of these cgroup directories (a service's instances) under the proc
/// filesystem `proc_root`. `extra_pids` are processes outside any cgroup of ours (a
/// container's PID 1, the process-group backend's main pid).
pub fn sample(cgroups: &[PathBuf], extra_pids: &[i32], proc_root: &Path) -> Sample {
    let stats = ScopeStats::sum(cgroups.iter().map(|c| ScopeStats::read(c)));
    let mut pids: Vec<i32> = cgroups.iter().flat_map(|c| procs(c)).collect();
    for pid in extra_pids {
        if !pids.contains(pid) {
            pids.push(*pid);
        }
    }
    let pressure = Pressure {
        cpu: sum_pressure(cgroups, "cpu.pressure"),
        memory: sum_pressure(cgroups, "memory.pressure"),
        io: sum_pressure(cgroups, "io.pressure"),
    };
    let (memory_bytes, memory_source) = match stats.memory_bytes {
        Some(m) => (Some(m), Some(MemorySource::Cgroup)),
        None if pids.is_empty() => (None, None),
        None => (
            Some(pids.iter().filter_map(|p| resident(proc_root, *p)).sum()),
            Some(MemorySource::Rss),
        ),
    };
    let oldest = pids
        .iter()
        .filter_map(|p| crate::proc::read_stat(proc_root, *p).ok())
        .filter(|s| !s.is_zombie())
        .map(|s| s.start_time)
        .min();
    Sample {
        cpu_usec: stats.cpu_usec,
        memory_bytes,
        memory_source,
        pressure,
        pids,
        uptime_s: oldest.and_then(crate::proc::process_age),
        read_at_us: None,
    }
}

/// The pids in a cgroup's `cgroup.procs`.
fn procs(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The `some avg10` figure of a pressure file, summed over the cgroups that have one (a
/// service's instances: each stalls on its own).
fn sum_pressure(cgroups: &[PathBuf], file: &str) -> Option<f64> {
    cgroups
        .iter()
        .filter_map(|c| std::fs::read_to_string(c.join(file)).ok())
        .filter_map(|t| some_avg10(&t))
        .reduce(|a, b| a + b)
}

/// `some avg10=1.50 avg60=… total=…` → 1.5.
pub(crate) fn some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// A process's resident set in bytes (the second field of `/proc/PID/statm`, in pages).
fn resident(proc_root: &Path, pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("statm")).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(before: Option<u64>, after: Option<u64>, elapsed_us: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    if elapsed_us == 0 || after < before {
        return None;
    }
    Some((after - before) as f64 * 100.0 / elapsed_us as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_is_the_some_avg10_figure() {
        let text = "some avg10=12.50 avg60=3.00 avg300=1.00 total=99\n\
                    full avg10=1.00 avg60=0.00 avg300=0.00 total=9\n";
        assert_eq!(some_avg10(text), Some(12.5));
        assert_eq!(some_avg10("full avg10=1.00\n"), None);
        assert_eq!(some_avg10(""), None);
    }

    #[test]
    fn cpu_percent_is_the_counters_delta_over_the_wall_time() {
        assert_eq!(cpu_percent(Some(0), Some(950_000), 1_000_000), Some(95.0));
        assert_eq!(cpu_percent(None, Some(1), 1), None);
        assert_eq!(cpu_percent(Some(5), Some(1), 1), None, "a new cgroup");
        assert_eq!(cpu_percent(Some(1), Some(2), 0), None);
    }

    #[test]
    fn a_cgroup_without_memory_current_falls_back_to_its_processes_resident_sets() {
        let cg = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        std::fs::write(cg.path().join("cgroup.procs"), format!("{me}\n")).unwrap();
        std::fs::write(cg.path().join("cpu.stat"), "usage_usec 7\n").unwrap();
        std::fs::write(
            cg.path().join("cpu.pressure"),
            "some avg10=2.00 avg60=0 avg300=0 total=0\n",
        )
        .unwrap();
        let dirs = [cg.path().to_path_buf()];
        let s = sample(&dirs, &[], Path::new("/proc"));
        assert_eq!(s.pids, vec![me]);
        assert_eq!(s.cpu_usec, Some(7));
        assert_eq!(s.memory_source, Some(MemorySource::Rss));
        assert!(s.memory_bytes.unwrap() > 0, "this test's own resident set");
        assert_eq!(s.pressure.cpu, Some(2.0));
        assert_eq!(s.pressure.io, None);
        assert!(s.uptime_s.is_some());
        std::fs::write(cg.path().join("memory.current"), "4096\n").unwrap();
        let s = sample(&dirs, &[], Path::new("/proc"));
        assert_eq!(
            (s.memory_bytes, s.memory_source),
            (Some(4096), Some(MemorySource::Cgroup))
        );
        let none = sample(&[], &[], Path::new("/proc"));
        assert_eq!((none.memory_bytes, none.memory_source), (None, None));
    }
}
