//! ccscope: a process-containment tool and supervisor for a developer's local service stack.
//! See the README for what it does and DESIGN.md for how the parts fit.

pub mod audit;
pub mod cli;
pub mod config;
pub mod contain;
pub mod control;
pub mod dbus;
pub mod demo;
pub mod discover;
pub mod docker;
pub mod doctor;
pub mod escalate;
pub mod import;
pub mod launch;
pub mod proc;
pub mod registry;
pub mod status;
pub mod stop;
pub mod suggest;
pub mod supervise;
pub mod top;
pub mod unit;
pub mod watch;
