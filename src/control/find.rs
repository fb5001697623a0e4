//! Which process supervises a project now, and asking it to stand down. `stop` and `status`
//! both need the first; `stop` the second, before it touches anything.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::{LivenessProbe, ProcFs, ProcessIdentity};
use crate::registry::{Registry, RegistryError, RunState};

use super::{Asking, StandDown, stand_down, stand_down_unnamed};

/// How long a supervisor gets to finish a launch in flight and confirm it stood down.
pub const STAND_DOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The most descriptors of a supervisor looked at for its lock file.
const MAX_FDS: usize = 4096;

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

/// Whether `pid` is a ccscope of this user: its executable is this one, or a file named
/// `ccscope…`, and it runs with our uid.
pub fn is_ccscope(pid: i32) -> bool {
    let dir = format!("/proc/{pid}");
    let ours = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == crate::proc::sys::euid());
    let exe = format!("{dir}/exe");
    let same = match (std::fs::metadata(&exe), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let named = std::fs::read_link(&exe).is_ok_and(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ccscope"))
    });
    ours && (same || named)
}

/// The project's supervisor found by its work, however it was started (another state
/// directory, another spelling of it): a process of the detached supervisor's unit
/// (`in_unit`), else the parent of processes in the project's scopes (it spawns them, and is
/// their subreaper), if it is this user's ccscope and holds the project's lock open (a
/// supervisor does from its start; `ccscope exec`, also the parent of a scope's process,
/// does not). With its identity, the state directory of that lock (`lock_path` maps a state
/// directory to the project's lock file), where its control socket is. Never this process
/// or its ancestors.
pub fn find_by_scopes(
    in_unit: &[i32],
    in_scopes: &[i32],
    lock_path: &dyn Fn(&Path) -> PathBuf,
) -> Option<(ProcessIdentity, PathBuf)> {
    let proc_root = Path::new("/proc");
    let protected = crate::proc::ancestry::self_and_ancestors(proc_root);
    let mut parents: Vec<i32> = in_scopes
        .iter()
        .filter_map(|pid| crate::proc::read_stat(proc_root, *pid).ok())
        .map(|s| s.ppid)
        .filter(|ppid| *ppid > 1 && !in_scopes.contains(ppid))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    let procfs = ProcFs::default();
    let unit = in_unit.iter().copied();
    unit.chain(parents)
        .filter(|pid| !protected.contains(pid))
        .find_map(|pid| {
            let identity = procfs.identity(pid).ok()?;
            if !is_ccscope(pid) {
                return None;
            }
            Some((identity, held_state_dir(pid, lock_path)?))
        })
}

/// The state directory whose project lock `pid` holds open.
fn held_state_dir(pid: i32, lock_path: &dyn Fn(&Path) -> PathBuf) -> Option<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .take(MAX_FDS)
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .find_map(|target| {
            target
                .ancestors()
                .skip(1)
                .find(|dir| lock_path(dir) == target)
                .map(Path::to_path_buf)
        })
}

/// What step 1 of a stop needs to find and ask the project's supervisor.
pub struct ProjectStandDown<'a> {
    pub state_dir: &'a Path,
    pub project: &'a str,
    pub registry: &'a Registry,
    /// The pid the project's lock file names, if it is held.
    pub lock_holder: Option<i32>,
    /// The processes in the project's scopes now.
    pub in_scopes: &'a [i32],
    /// The processes in the detached supervisor's unit (`ccscope-<project>.service`).
    pub in_unit: &'a [i32],
    /// The project's lock file in a state directory.
    pub lock_path: &'a dyn Fn(&Path) -> PathBuf,
    /// `stop --force`.
    pub force: bool,
}

/// Step 1 of a stop: the project's live supervisor stands down, so that it restarts nothing
/// while the stop runs. It is found as [`find_supervisor`] does, else as [`find_by_scopes`]
/// does (a supervisor of another state directory); without either, whatever supervisor of
/// ours answers on the project's control socket is asked. Keep the answer until the stop is
/// done, then finish it: the supervisor exits.
pub fn stand_down_project(request: &ProjectStandDown<'_>) -> Result<StandDown, RegistryError> {
    let asking = |state_dir| Asking {
        project: request.project,
        state_dir,
        force: request.force,
        deadline: STAND_DOWN_DEADLINE,
    };
    if let Some(supervisor) =
        find_supervisor(request.registry, request.project, request.lock_holder)?
    {
        return Ok(stand_down(asking(Some(request.state_dir)), supervisor).unwrap_or_default());
    }
    if let Some((supervisor, state_dir)) =
        find_by_scopes(request.in_unit, request.in_scopes, request.lock_path)
    {
        let mut done = stand_down(asking(Some(&state_dir)), supervisor).unwrap_or_default();
        if done.report.is_some() {
            done.warnings.insert(
                0,
                format!(
                    "the supervisor (pid {}) was found by the project's processes: it runs with the state directory {}",
                    supervisor.pid,
                    state_dir.display()
                ),
            );
        }
        return Ok(done);
    }
    Ok(stand_down_unnamed(
        request.state_dir,
        request.project,
        STAND_DOWN_DEADLINE,
    ))
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
