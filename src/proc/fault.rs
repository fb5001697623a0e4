//! Test-only fault points: the process SIGKILLs itself at a named point of its work when the
//! environment says so, so that the fault suite (tests/fault_cli.rs) can prove that nothing is
//! lost or escapes when the supervisor or `ccscope stop` dies at that very point.
//!
//! `CCSCOPE_TEST_ABORT_AT=<point>` (one of the names below) arms one point; nothing else does.
//! The variable is read once; an unarmed point costs one load of an initialised cell. The kill
//! is a SIGKILL to ourselves rather than `abort()`: it is what the OOM killer or `kill -9` does
//! — no unwinding, no handler, no destructor, no flush, no core dump — so what is left behind
//! is exactly what a real kill leaves. This is a hook for tests, not a feature: nothing outside
//! the test suite sets the variable.

use std::sync::OnceLock;

/// The variable that arms a point.
pub const ENV: &str = "CCSCOPE_TEST_ABORT_AT";

/// The supervisor holds the project's lock; nothing is recorded or started yet.
pub const SUPERVISOR_LOCKED: &str = "supervisor.locked";
/// The registry has recorded the run; no service is started yet.
pub const SUPERVISOR_RUN_RECORDED: &str = "supervisor.run-recorded";
/// The first service's scope is made and its process runs, not yet in the registry.
pub const SUPERVISOR_FIRST_SCOPE: &str = "supervisor.first-scope";
/// Every service is up; the stack is about to be reported ready.
pub const SUPERVISOR_BEFORE_READY: &str = "supervisor.before-ready";
/// A crashed service is about to be launched again.
pub const SUPERVISOR_RESTARTING: &str = "supervisor.restarting";
/// The supervisor has stood down for a `stop`, and is about to tell it so.
pub const SUPERVISOR_STANDING_DOWN: &str = "supervisor.standing-down";
/// `stop`: the supervisor has stood down (it holds the connection, waiting for the stop).
pub const STOP_STOOD_DOWN: &str = "stop.stood-down";
/// `stop` (or the supervisor's own stop): one layer of scopes is stopped, the next not yet.
pub const STOP_LAYER_DONE: &str = "stop.layer-done";
/// `stop`: every scope and stray is stopped; the registry is not updated yet.
pub const STOP_BEFORE_REGISTRY: &str = "stop.before-registry";

/// Every point, for the tests that go through them all.
pub const POINTS: &[&str] = &[
    SUPERVISOR_LOCKED,
    SUPERVISOR_RUN_RECORDED,
    SUPERVISOR_FIRST_SCOPE,
    SUPERVISOR_BEFORE_READY,
    SUPERVISOR_RESTARTING,
    SUPERVISOR_STANDING_DOWN,
    STOP_STOOD_DOWN,
    STOP_LAYER_DONE,
    STOP_BEFORE_REGISTRY,
];

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Dies here, by SIGKILL, if `name` is the armed point; otherwise does nothing.
pub fn point(name: &'static str) {
    if armed() != Some(name) {
        return;
    }
    // Said first, so a test's failure output shows where the process died.
    eprintln!(
        "ccscope: {ENV}={name}: killing this process (pid {})",
        std::process::id()
    );
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // A SIGKILL to ourselves does not return; should it, the process still dies here.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_point_does_nothing() {
        // The test binary never sets the variable: every point passes.
        assert_eq!(std::env::var_os(ENV), None);
        for point in POINTS {
            super::point(point);
        }
    }

    #[test]
    fn point_names_are_distinct() {
        let names: std::collections::BTreeSet<&str> = POINTS.iter().copied().collect();
        assert_eq!(names.len(), POINTS.len());
    }
}
