//! procfs: who a process is, whether it still lives. (The full discovery engine, socket
//! tables and classification, grows here.)

pub mod classify;
mod identity;
pub mod markers;
pub mod project;
pub mod scan;
pub mod sockets;

pub use identity::{LivenessProbe, ProcFs, ProcessIdentity, StatLine, read_stat};

/// Every process directory of a procfs: (pid, its directory). An unreadable procfs is empty.
pub fn pid_dirs(proc_root: &std::path::Path) -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            Some((pid, entry.path()))
        })
}
