//! `ccscope top`: the live health dashboard of a stack, in the terminal (ratatui on
//! crossterm). State and rendering are apart: [`model`] is the dashboard's state, fed and
//! never fetching (the supervisor's feed, counter samples, audit events, log lines, keys);
//! [`render`] draws it as a pure function, tested with ratatui's `TestBackend`; [`sample`]
//! reads a service's cgroup counters; [`app`] owns the terminal and the threads that feed the
//! model.
//!
//! Without a live supervisor it is a read-only view of the scopes; with one, its state feed
//! (`{"verb":"subscribe"}` on the control socket) drives the states as they change, and the
//! keys send the very requests the CLI verbs send.

pub mod app;
pub mod model;
pub mod render;
pub mod sample;

#[cfg(test)]
mod snapshot_tests;

pub use app::{FindSupervisor, Setup, TopError, run};
pub use model::{Dashboard, Row};
pub use sample::MemorySource;
