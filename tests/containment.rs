//! Nothing a service starts escapes its scope, on every backend: the real systemd user
//! manager, real cgroupfs, and the process-group fallback.
//!
//! Each hostile service below writes a ready file once it has done its worst; the test waits
//! for that file (with a deadline), kills the scope, waits for it to empty (an event), and then
//! scans all of /proc for any process still carrying this run's markers. Zombies count as dead.
//!
//! Pausing: a frozen scope's processes are stopped by the kernel (`cgroup.events` frozen 1,
//! no CPU time), run again once thawed, and die of a kill while frozen; the process-group
//! backend refuses to pause at all.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ccscope::contain::{
    AnyContainment, BackendChoice, BackendKind, BusKind, Containment, ProcessGroups, ScopeHandle,
    detect,
};
use ccscope::launch::{LaunchSpec, Launched, OutputTarget, launch};
use ccscope::proc::markers;
use common::{require_test_env, scripts};

async fn backend(kind: BackendKind) -> AnyContainment {
    let (c, report) = detect(BackendChoice::Forced(kind), BusKind::Session)
        .await
        .unwrap_or_else(|e| panic!("the {} backend must be available here: {e}", kind.as_str()));
    assert_eq!(report.chosen, kind);
    c
}

/// A unique project per test process and call, so parallel tests never share a scope.
fn project(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

struct Case {
    dir: tempfile::TempDir,
    spec: LaunchSpec,
}

impl Case {
    fn new(project: &str, service: &str, script: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let spec = common::shell_service(project, service, script, dir.path());
        Case { dir, spec }
    }

    fn wait_ready(&self) {
        common::wait_ready(self.dir.path(), &self.spec.service);
    }

    /// Live processes anywhere on the machine that carry this case's run marker.
    fn marked(&self) -> BTreeSet<i32> {
        markers::scan(Path::new("/proc"))
            .into_iter()
            .filter(|p| p.markers.run_id.as_deref() == Some(self.spec.run_id.as_str()))
            .map(|p| p.identity.pid)
            .collect()
    }
}

/// Launches the case, waits until it has done its worst, and proves every process that
/// carries its marker is inside its scope. Returns the launch and the processes inside.
async fn launch_contained(
    c: &AnyContainment,
    case: &Case,
    label: &str,
) -> (Launched, BTreeSet<i32>) {
    let launched = launch(c, &case.spec)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    case.wait_ready();
    let inside: BTreeSet<i32> = c
        .processes(&launched.scope)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let marked = case.marked();
    assert!(
        !marked.is_empty(),
        "{label}: its processes carry the markers"
    );
    let escaped: Vec<_> = marked.difference(&inside).collect();
    assert!(
        escaped.is_empty(),
        "{label}: escaped {}: {escaped:?}",
        launched.scope.display_name()
    );
    (launched, inside)
}

/// Kills the scope, waits for it to empty, and proves no marked process survives anywhere.
async fn kill_and_prove_empty(c: &AnyContainment, case: &Case, mut launched: Launched) {
    c.kill(&launched.scope).await.unwrap();
    assert!(
        c.wait_empty(&launched.scope, Duration::from_secs(10))
            .await
            .unwrap(),
        "{} did not empty within 10 s after kill",
        launched.scope.display_name()
    );
    let _ = launched.child.wait();
    reap_orphans(c);
    let survivors = case.marked();
    assert!(
        survivors.is_empty(),
        "processes escaped {}: {survivors:?}",
        launched.scope.display_name()
    );
    c.release(&launched.scope).await.unwrap();
}

/// The process-group backend makes the test a subreaper: reap the orphans it collected.
fn reap_orphans(c: &AnyContainment) {
    if c.kind() == BackendKind::Pgroup {
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
}

const GRANDCHILD_IGNORES_TERM_AND_HUP: &str =
    "sh -c 'trap \"\" TERM HUP; sleep 300 & echo > \"$READY\"; wait' & wait";
const FORKS_200: &str =
    "i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done; echo > \"$READY\"; wait";

async fn hostile_services_leave_nothing(kind: BackendKind) {
    let c = backend(kind).await;
    let project = project(kind.as_str());
    for (service, script) in [
        ("double_fork", scripts::DOUBLE_FORK_DAEMON),
        ("nohup", scripts::NOHUP_AND_RETURN),
        ("ignores_term", scripts::IGNORES_TERM),
        ("grandchild_ignores", GRANDCHILD_IGNORES_TERM_AND_HUP),
        ("forks_200", FORKS_200),
    ] {
        let case = Case::new(&project, service, script);
        let (launched, _) = launch_contained(&c, &case, service).await;
        if service.contains("ignores") {
            // The stop signal reaches every process; the ignorers survive it, SIGKILL does not.
            let sent = c.signal(&launched.scope, libc::SIGTERM).await.unwrap();
            assert!(sent >= 1, "{service}: SIGTERM reached {sent} processes");
            assert!(
                !case.marked().is_empty(),
                "{service}: SIGTERM-ignorers are still there"
            );
        }
        kill_and_prove_empty(&c, &case, launched).await;
    }
}

/// (e) 200 times: a service that forks 200 children the moment it starts never has one
/// outside its scope.
async fn placement_race(kind: BackendKind, rounds: usize) {
    let c = backend(kind).await;
    let project = project(&format!("race-{}", kind.as_str()));
    for round in 0..rounds {
        let case = Case::new(&project, "forker", FORKS_200);
        let (launched, inside) = launch_contained(&c, &case, &format!("round {round}")).await;
        assert!(
            inside.len() > 200,
            "round {round}: the forker and its 200 children are inside ({})",
            inside.len()
        );
        kill_and_prove_empty(&c, &case, launched).await;
    }
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn systemd_scopes_contain_hostile_services() {
    require_test_env();
    common::runtime().block_on(hostile_services_leave_nothing(BackendKind::Systemd));
}

#[test]
#[ignore = "system test: needs root and a writable cgroup v2 hierarchy (run scripts/test.sh)"]
fn cgroupfs_contains_hostile_services() {
    require_test_env();
    common::runtime().block_on(hostile_services_leave_nothing(BackendKind::Cgroupfs));
}

#[test]
fn process_groups_contain_hostile_services() {
    common::runtime().block_on(hostile_services_leave_nothing(BackendKind::Pgroup));
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn systemd_placement_race_200_rounds() {
    require_test_env();
    common::runtime().block_on(placement_race(BackendKind::Systemd, 200));
}

#[test]
#[ignore = "system test: needs root and a writable cgroup v2 hierarchy (run scripts/test.sh)"]
fn cgroupfs_placement_race_200_rounds() {
    require_test_env();
    common::runtime().block_on(placement_race(BackendKind::Cgroupfs, 200));
}

#[test]
fn process_group_placement_race_200_rounds() {
    common::runtime().block_on(placement_race(BackendKind::Pgroup, 200));
}

#[test]
#[ignore = "system test: needs journald and the user manager of scripts/test-env.sh (run scripts/test.sh)"]
fn service_output_lands_in_journald_under_its_identifier_and_scope() {
    require_test_env();
    common::runtime().block_on(async {
        let c = backend(BackendKind::Systemd).await;
        let mut case = Case::new(&project("journal"), "talker", "");
        let line = format!("hello from {}", case.spec.run_id);
        case.spec.argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo '{line}'; echo > \"$READY\"; exec sleep 300"),
        ];
        case.spec.output = OutputTarget::Journald;
        let (launched, _) = launch_contained(&c, &case, "talker").await;
        let unit = launched.scope.unit.clone().unwrap();
        let entry = common::wait_for_journal_entry(
            "the service's line in the journal",
            &[
                format!("SYSLOG_IDENTIFIER={}/talker", case.spec.project),
                format!("MESSAGE={line}"),
            ],
        );
        // A stream of journald's, as systemd gives a service's stdout, from inside the scope.
        assert_eq!(entry["_SYSTEMD_USER_UNIT"], unit.as_str(), "{entry}");
        assert_eq!(entry["_TRANSPORT"], "stdout", "{entry}");
        assert_eq!(entry["PRIORITY"], "6", "{entry}");
        assert_ne!(
            entry["_PID"],
            launched.identity.pid.to_string(),
            "the forwarder wrote it, not the service: {entry}"
        );
        kill_and_prove_empty(&c, &case, launched).await;
    });
}

/// A service that spins: its shell waits on a busy loop of its own.
const SPINS: &str = "sh -c 'while :; do :; done' & echo > \"$READY\"; wait";

/// Each process's (state, utime + stime in clock ticks), from /proc/PID/stat; a process gone
/// meanwhile is left out.
fn cpu_and_states(pids: &[i32]) -> Vec<(i32, char, u64)> {
    pids.iter()
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields count from its end.
            let rest = &text[text.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let state = fields.first()?.chars().next()?;
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((*pid, state, utime + stime))
        })
        .collect()
}

fn cpu_total(pids: &[i32]) -> u64 {
    cpu_and_states(pids).iter().map(|(_, _, t)| t).sum()
}

/// What the kernel says of the scope's freeze: `frozen` in its `cgroup.events`.
fn events_frozen(scope: &ScopeHandle) -> bool {
    let dir = scope
        .cgroup
        .as_ref()
        .expect("a cgroup scope has a directory");
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    events.lines().any(|l| l.trim() == "frozen 1")
}

/// Waits (with a deadline) until the processes have used more CPU than `than` ticks.
fn wait_cpu_grows(pids: &[i32], than: u64, what: &str) -> u64 {
    let mut now = 0;
    common::wait_for(what, Duration::from_secs(10), || {
        now = cpu_total(pids);
        now > than
    });
    now
}

async fn freezing_stops_every_process_and_thawing_runs_them_again(kind: BackendKind) {
    let c = backend(kind).await;
    let case = Case::new(
        &project(&format!("freeze-{}", kind.as_str())),
        "spinner",
        SPINS,
    );
    let (launched, inside) = launch_contained(&c, &case, "spinner").await;
    let scope = &launched.scope;
    let pids: Vec<i32> = inside.into_iter().collect();
    assert!(pids.len() >= 2, "the shell and its loop: {pids:?}");
    assert!(!c.is_frozen(scope).await.unwrap(), "not frozen yet");
    assert!(!events_frozen(scope));
    // It really spins (else a still CPU time below would prove nothing).
    let before = cpu_total(&pids);
    wait_cpu_grows(&pids, before, "the spinner to use CPU");

    c.freeze(scope, true)
        .await
        .unwrap_or_else(|e| panic!("freeze {}: {e}", scope.display_name()));
    // Returned Ok: frozen, with no wait of the caller's own.
    assert!(events_frozen(scope), "cgroup.events says frozen 1 at once");
    assert!(c.is_frozen(scope).await.unwrap());
    let frozen = cpu_and_states(&pids);
    assert_eq!(frozen.len(), pids.len(), "every process is still there");
    for (pid, state, _) in &frozen {
        // A task in the v2 freezer sleeps in it: `S` (or `D`), never running.
        assert!(
            matches!(state, 'S' | 'D'),
            "pid {pid} is in state {state} while frozen: {frozen:?}"
        );
    }
    let first = cpu_total(&pids);
    // A window of 200 ms, some 20 ticks of a spinning loop: none may be used.
    std::thread::sleep(Duration::from_millis(200));
    let second = cpu_total(&pids);
    assert_eq!(first, second, "no CPU time while frozen");
    // Freezing what is frozen is no error.
    c.freeze(scope, true).await.unwrap();

    c.freeze(scope, false)
        .await
        .unwrap_or_else(|e| panic!("thaw {}: {e}", scope.display_name()));
    assert!(!events_frozen(scope), "cgroup.events says frozen 0 at once");
    assert!(!c.is_frozen(scope).await.unwrap());
    wait_cpu_grows(&pids, second, "the spinner to use CPU again once thawed");

    // A frozen scope still dies of a kill (what `stop --force` of a paused stack does).
    c.freeze(scope, true).await.unwrap();
    assert!(events_frozen(scope));
    kill_and_prove_empty(&c, &case, launched).await;
}

#[test]
#[ignore = "system test: needs the user manager and session bus of scripts/test-env.sh (run scripts/test.sh)"]
fn systemd_scopes_freeze_and_thaw() {
    require_test_env();
    common::runtime().block_on(freezing_stops_every_process_and_thawing_runs_them_again(
        BackendKind::Systemd,
    ));
}

#[test]
#[ignore = "system test: needs root and a writable cgroup v2 hierarchy (run scripts/test.sh)"]
fn cgroupfs_scopes_freeze_and_thaw() {
    require_test_env();
    common::runtime().block_on(freezing_stops_every_process_and_thawing_runs_them_again(
        BackendKind::Cgroupfs,
    ));
}

#[test]
fn process_groups_refuse_to_pause_and_say_why() {
    common::runtime().block_on(async {
        let c = ProcessGroups::default();
        let scope = ScopeHandle {
            backend: BackendKind::Pgroup,
            project: "p".into(),
            service: "web".into(),
            instance: None,
            unit: None,
            cgroup: None,
            pgid: Some(std::process::id() as i32),
            run_id: Some("r".into()),
        };
        for (frozen, verb) in [(true, "pause"), (false, "resume")] {
            let e = c
                .freeze(&scope, frozen)
                .await
                .expect_err("refused")
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "the process-group backend cannot {verb} a service: pausing needs a cgroup"
                )),
                "{e}"
            );
            assert!(e.contains("SIGCONT"), "says why SIGSTOP is no pause: {e}");
            assert!(
                e.contains("`--backend systemd` or `--backend cgroupfs`"),
                "says what to do: {e}"
            );
        }
        assert!(!c.is_frozen(&scope).await.unwrap());
    });
}
