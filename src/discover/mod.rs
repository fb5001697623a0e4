//! procfs: who a process is, whether it still lives. (The full discovery engine, socket
//! tables and classification, grows here.)

mod identity;
pub mod markers;
pub mod project;
pub mod sockets;

pub use identity::{LivenessProbe, ProcFs, ProcessIdentity, StatLine, read_stat};
