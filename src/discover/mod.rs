//! procfs: who a process is, whether it still lives. (The full discovery engine, socket
//! tables and classification, grows here.)

pub mod adopt;
pub mod classify;
pub mod project;
pub mod rebuild;
pub mod scan;
pub mod sockets;

pub use crate::proc::pid_dirs;
