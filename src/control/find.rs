//! Which process supervises a project now, and asking it to stand down. `stop` and `status`
//! both need the first; `stop` the second, before it touches anything.

use std::path::Path;
use std::time::Duration;

use crate::proc::{LivenessProbe, ProcFs, ProcessIdentity};
use crate::registry::{Registry, RegistryError, RunState};

use super::{StandDown, stand_down, stand_down_unnamed};

/// How long a supervisor gets to finish a launch in flight and confirm it stood down.
pub const STAND_DOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The project's live supervisor: the one its run record names (a running or stopping run
/// whose (pid, start time) is alive), else the holder of the project's lock (`lock_holder`,
/// which outlives a deleted registry). Never this process itself.
pub fn find_supervisor(
    registry: &Registry,
    project: &str,
    lock_holder: Option<i32>,
) -> Result<Option<ProcessIdentity>, RegistryError> {
    let procfs = ProcFs::default();
    let me = std::process::id() as i32;
    let recorded = registry
        .list_runs(Some(project))?
        .into_iter()
        .filter(|r| matches!(r.state, RunState::Running | RunState::Stopping))
        .map(|r| ProcessIdentity {
            pid: r.supervisor_pid,
            start_time: r.supervisor_start_time,
        })
        .find(|id| id.pid != me && procfs.is_alive(*id));
    Ok(recorded.or_else(|| {
        lock_holder
            .filter(|pid| *pid != me)
            .and_then(|pid| procfs.identity(pid).ok())
    }))
}

/// Step 1 of a stop: the project's live supervisor (found as [`find_supervisor`] does) stands
/// down, so that it restarts nothing while the stop runs. Without record and lock (their
/// files are gone), whatever supervisor answers on the project's control socket is asked.
/// None when no supervisor runs. Keep the answer until the stop is done: the supervisor
/// exits when it is dropped.
pub fn stand_down_project(
    state_dir: &Path,
    project: &str,
    registry: &Registry,
    lock_holder: Option<i32>,
) -> Result<Option<StandDown>, RegistryError> {
    Ok(match find_supervisor(registry, project, lock_holder)? {
        Some(supervisor) => stand_down(state_dir, project, supervisor, STAND_DOWN_DEADLINE),
        None => stand_down_unnamed(state_dir, project, STAND_DOWN_DEADLINE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::NewRun;

    fn run(registry: &Registry, run_id: &str, id: ProcessIdentity, state: RunState) {
        registry
            .start_run(&NewRun {
                run_id: run_id.into(),
                project: "demo".into(),
                supervisor: id,
                config_hash: None,
            })
            .unwrap();
        registry.set_run_state(run_id, state).unwrap();
    }

    #[test]
    fn a_live_run_record_names_the_supervisor_and_a_dead_one_does_not() {
        let registry = Registry::open_in_memory().unwrap();
        assert_eq!(find_supervisor(&registry, "demo", None).unwrap(), None);
        // The parent of this test process is alive and is not this process.
        let parent = ProcFs::default()
            .identity(std::os::unix::process::parent_id() as i32)
            .unwrap();
        let dead = ProcessIdentity {
            pid: parent.pid,
            start_time: parent.start_time + 1,
        };
        run(&registry, "r1", dead, RunState::Running);
        assert_eq!(
            find_supervisor(&registry, "demo", None).unwrap(),
            None,
            "a reused pid is not the supervisor"
        );
        run(&registry, "r2", parent, RunState::Ended);
        assert_eq!(find_supervisor(&registry, "demo", None).unwrap(), None);
        run(&registry, "r3", parent, RunState::Running);
        assert_eq!(
            find_supervisor(&registry, "demo", None).unwrap(),
            Some(parent)
        );
        assert_eq!(find_supervisor(&registry, "other", None).unwrap(), None);
    }

    #[test]
    fn the_lock_holder_counts_when_no_record_does_but_never_this_process() {
        let registry = Registry::open_in_memory().unwrap();
        let me = std::process::id() as i32;
        assert_eq!(find_supervisor(&registry, "demo", Some(me)).unwrap(), None);
        let parent = std::os::unix::process::parent_id() as i32;
        assert_eq!(
            find_supervisor(&registry, "demo", Some(parent))
                .unwrap()
                .map(|id| id.pid),
            Some(parent)
        );
    }
}
