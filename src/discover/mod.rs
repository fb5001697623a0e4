//! Discovery: one procfs pass (processes, socket tables), the trail of the services' output
//! pipes, the project's containers on the Docker daemon, and the classification of what
//! belongs to a project.

pub mod adopt;
pub mod classify;
pub mod containers;
pub mod project;
pub mod rebuild;
pub mod scan;
pub mod sockets;
pub mod trail;

pub use crate::proc::pid_dirs;
