//! The audit trail: every lifecycle decision as a structured journald entry, with
//! `CCSCOPE_*` fields (prefixed so they never collide with journald's own `PID` and friends).

pub mod journal;

pub use journal::{Priority, journald_available};
