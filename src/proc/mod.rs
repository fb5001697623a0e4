//! The shared vocabulary at the bottom: who a process is (pid + start time), how old it is,
//! signals by name, I/O error context, and the system calls std does not wrap. Every layer
//! may use it; it uses nothing else of ccscope.

pub mod age;
pub mod ancestry;
pub mod error;
pub mod fault;
mod identity;
pub mod markers;
pub mod signal;
pub mod sys;

pub use age::{human_age, process_age};
pub use error::describe_io;
pub use identity::{LivenessProbe, ProcFs, ProcessIdentity, StatLine, read_stat};
pub use signal::{Signal, describe_exit, signal_name};

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
