//! The supervisor's rules, one test per rule at least, on simulated time: no process, no
//! socket, no clock. A test of a 10-minute backoff runs in microseconds.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{ConfigSource, parse_config};

const SECOND: Duration = Duration::from_secs(1);
const READY: &str = "READY=1";
const WATCHDOG: &str = "WATCHDOG=1";

/// A machine fed by hand, with its effects collected.
struct Sim {
    machine: Machine,
    now: Instant,
    effects: Vec<Effect>,
}

fn config(text: &str) -> Config {
    let text = format!("[project]\nname = \"sim\"\n{text}");
    parse_config(&text, ConfigSource::File("sim.toml".into()), Path::new("/"))
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

impl Sim {
    fn new(text: &str) -> Sim {
        Sim::only(text, &[])
    }

    /// A machine for `only` of the services (all when empty), started.
    fn only(text: &str, only: &[&str]) -> Sim {
        let config = config(text);
        let selected: BTreeSet<String> = if only.is_empty() {
            config.services.keys().cloned().collect()
        } else {
            only.iter().map(|s| s.to_string()).collect()
        };
        let now = Instant::now();
        let machine = Machine::new(
            &config,
            &selected,
            Setup {
                project: "sim".into(),
                run_id: "run-1".into(),
                began: now,
                began_epoch_ms: 1_000_000,
                jitter_seed: 42,
            },
        );
        let mut sim = Sim {
            machine,
            now,
            effects: Vec::new(),
        };
        sim.machine.start(now);
        sim.collect();
        sim
    }

    fn collect(&mut self) {
        while let Some(e) = self.machine.poll_effect() {
            self.effects.push(e);
        }
    }

    /// The effects since the last call.
    fn take(&mut self) -> Vec<Effect> {
        self.collect();
        std::mem::take(&mut self.effects)
    }

    fn input(&mut self, input: Input) {
        self.machine.handle(self.now, input);
        self.collect();
    }

    /// Lets `by` pass, firing every timer on the way at its own time.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.machine.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.machine.handle_timeout(self.now);
            self.collect();
        }
        self.now = until;
    }

    fn state(&self, service: &str) -> State {
        self.machine
            .service(service)
            .expect("a service of the test")
            .state
    }

    fn generation(&self, service: &str) -> u64 {
        self.machine.service(service).unwrap().generation
    }

    fn launched(&mut self, service: &str) {
        let generation = self.generation(service);
        self.input(Input::Launched {
            service: service.into(),
            generation,
            outcome: Ok(LaunchedInstance {
                main: ProcessIdentity {
                    pid: 1000 + generation as i32,
                    start_time: generation,
                },
                scope: format!("ccscope-sim-{service}.scope"),
                warnings: Vec::new(),
            }),
        });
    }

    /// A datagram on the current instance's notify socket: `READY=1` or `WATCHDOG=1`.
    fn notify(&mut self, service: &str, what: &str) {
        let generation = self.generation(service);
        self.input(Input::Notify {
            service: service.into(),
            generation,
            note: Notification {
                ready: what == READY,
                watchdog: what == WATCHDOG,
                ..Notification::default()
            },
        });
    }

    fn probe(&mut self, service: &str, kind: ProbeKind, result: Result<(), String>) {
        let generation = self.generation(service);
        self.input(Input::ProbeResult {
            service: service.into(),
            generation,
            kind,
            result,
        });
    }

    /// Launched and ready (its readiness probe passed, if it has one that is polled).
    fn up(&mut self, service: &str) {
        self.launched(service);
        if self.state(service) == State::Starting {
            self.probe(service, ProbeKind::Readiness, Ok(()));
        }
        assert_eq!(self.state(service), State::Running, "{service} is up");
    }

    /// The instance's main process exits with `code` and its cgroup empties.
    fn exits(&mut self, service: &str, code: i32) {
        let generation = self.generation(service);
        self.input(Input::MainExited {
            service: service.into(),
            generation,
            status: ExitStatus::from_raw(code << 8),
            others_left: 0,
        });
        self.input(Input::Emptied {
            service: service.into(),
            generation,
        });
    }

    /// An [`Effect::End`] the machine asked for is carried out: the scope empties.
    fn ended(&mut self, service: &str) {
        let generation = self.generation(service);
        self.input(Input::MainExited {
            service: service.into(),
            generation,
            status: ExitStatus::from_raw(libc::SIGTERM),
            others_left: 0,
        });
        self.input(Input::Emptied {
            service: service.into(),
            generation,
        });
        self.input(Input::EndDone {
            service: service.into(),
            generation,
        });
    }
}

fn launches(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Launch { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect()
}

fn ends(effects: &[Effect]) -> Vec<(String, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::End {
                service, graceful, ..
            } => Some((service.clone(), *graceful)),
            _ => None,
        })
        .collect()
}

fn messages(effects: &[Effect], service: &str) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Progress(p) if p.service.as_deref() == Some(service) => Some(p.message.clone()),
            _ => None,
        })
        .collect()
}

fn restart_delay(effects: &[Effect], service: &str) -> Option<f64> {
    messages(effects, service).iter().find_map(|m| {
        let (_, rest) = m.split_once("restarting in ")?;
        rest.strip_suffix(" s")?.parse().ok()
    })
}

fn exit_of(effects: &[Effect]) -> Option<Finish> {
    effects.iter().find_map(|e| match e {
        Effect::Exit(f) => Some(f.clone()),
        _ => None,
    })
}

fn has_run_stop(effects: &[Effect]) -> Option<bool> {
    effects.iter().find_map(|e| match e {
        Effect::RunStop { force } => Some(*force),
        _ => None,
    })
}

const CHAIN: &str = r#"
[services.db]
command = ["db"]
ready = { tcp = 5432 }
[services.api]
command = ["api"]
depends_on = { db = "healthy" }
[services.web]
command = ["web"]
depends_on = { db = "started" }
"#;

#[test]
fn healthy_waits_for_readiness_started_only_for_the_launch() {
    let mut sim = Sim::new(CHAIN);
    assert_eq!(launches(&sim.take()), ["db"], "only db has no dependency");
    sim.launched("db");
    assert_eq!(sim.state("db"), State::Starting);
    let effects = sim.take();
    assert_eq!(
        launches(&effects),
        ["web"],
        "`started` is met by the launch"
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Probe { service, kind: ProbeKind::Readiness, .. } if service == "db")),
        "db's readiness is probed"
    );
    sim.probe("db", ProbeKind::Readiness, Ok(()));
    assert_eq!(
        launches(&sim.take()),
        ["api"],
        "`healthy` waits for the probe"
    );
    assert_eq!(sim.state("db"), State::Running);
}

const MIGRATE_THEN_APP: &str = r#"
[services.migrate]
command = ["migrate"]
restart = "no"
[services.app]
command = ["app"]
depends_on = { migrate = "completed_successfully" }
"#;

#[test]
fn completed_successfully_waits_for_exit_code_zero() {
    let mut sim = Sim::new(MIGRATE_THEN_APP);
    assert_eq!(launches(&sim.take()), ["migrate"]);
    sim.up("migrate");
    assert!(launches(&sim.take()).is_empty(), "running is not completed");
    sim.exits("migrate", 0);
    assert_eq!(sim.state("migrate"), State::Exited);
    assert_eq!(launches(&sim.take()), ["app"]);
    sim.up("app");
    assert!(
        sim.take()
            .iter()
            .any(|e| matches!(e, Effect::Progress(p) if p.event == ProgressEvent::Ready)),
        "an exited-0 service counts as up"
    );
}

#[test]
fn a_failed_completion_fails_the_start_and_stops_the_stack() {
    let mut sim = Sim::new(MIGRATE_THEN_APP);
    sim.up("migrate");
    sim.take();
    sim.exits("migrate", 3);
    let effects = sim.take();
    assert_eq!(sim.state("migrate"), State::Failed);
    assert!(launches(&effects).is_empty(), "app never starts");
    assert_eq!(has_run_stop(&effects), Some(false), "the stack is stopped");
}

#[test]
fn a_layer_starts_in_parallel() {
    let mut sim = Sim::new(
        r#"
[services.db]
command = ["db"]
[services.a]
command = ["a"]
depends_on = { db = "healthy" }
[services.b]
command = ["b"]
depends_on = { db = "healthy" }
[services.c]
command = ["c"]
depends_on = { db = "healthy" }
"#,
    );
    sim.take();
    sim.up("db");
    assert_eq!(
        launches(&sim.take()),
        ["a", "b", "c"],
        "one wave, launched before any of them answered"
    );
    for s in ["a", "b", "c"] {
        sim.up(s);
    }
    assert_eq!(sim.machine.order_line(), "db → a, b, c");
}

#[test]
fn a_readiness_timeout_names_the_probe_and_stops_what_had_started() {
    let mut sim = Sim::new(
        r#"
[services.db]
command = ["db"]
[services.api]
command = ["api"]
depends_on = { db = "healthy" }
ready = { tcp = 8080, interval = "1s", start_timeout = "5s" }
"#,
    );
    sim.up("db");
    sim.launched("api");
    sim.take();
    // Every attempt fails; the next comes after the interval, none after the deadline.
    for _ in 0..4 {
        sim.probe(
            "api",
            ProbeKind::Readiness,
            Err("connection refused".into()),
        );
        let before = sim.now;
        sim.advance(SECOND);
        let probes = sim
            .take()
            .iter()
            .filter(|e| matches!(e, Effect::Probe { .. }))
            .count();
        assert_eq!(
            probes,
            1,
            "one retry after the interval ({:?})",
            sim.now - before
        );
    }
    sim.probe(
        "api",
        ProbeKind::Readiness,
        Err("connection refused".into()),
    );
    sim.advance(SECOND);
    let effects = sim.take();
    assert_eq!(sim.state("api"), State::Failed);
    let error = effects
        .iter()
        .find_map(|e| match e {
            Effect::Progress(p) if p.event == ProgressEvent::Error => Some(p.message.clone()),
            _ => None,
        })
        .expect("an error line");
    assert_eq!(
        error,
        "the stack did not start: tcp 127.0.0.1:8080 did not pass within 5s: connection refused"
    );
    assert_eq!(
        has_run_stop(&effects),
        Some(false),
        "the stop flow stops what had started, in reverse order"
    );
    sim.input(Input::StopDone {
        outcome: Outcome::Complete,
        survivors: 0,
        elapsed_ms: 12,
    });
    let effects = sim.take();
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Progress(p) if p.message == "stopped: complete, 0 survivor(s), 12 ms")),
        "no Debug name in the stopped line: {effects:?}"
    );
    assert_eq!(
        exit_of(&effects),
        Some(Finish::StartFailed {
            service: "api".into(),
            reason: "tcp 127.0.0.1:8080 did not pass within 5s: connection refused".into(),
        })
    );
}

const FLAKY: &str = r#"
[services.svc]
command = ["svc"]
restart = { policy = "on-failure", initial_backoff = "1s", max_backoff = "10m", max_restarts = 12 }
"#;

#[test]
fn on_failure_restarts_with_a_growing_backoff_within_its_jitter() {
    let mut sim = Sim::new(FLAKY);
    let mut expected = 1.0_f64;
    for restart in 1..=12 {
        sim.up("svc");
        sim.take();
        sim.exits("svc", 1);
        let effects = sim.take();
        assert_eq!(sim.state("svc"), State::Restarting);
        let delay = restart_delay(&effects, "svc").expect("a restart delay is said");
        let base = expected.min(600.0);
        assert!(
            delay >= base * 0.8 - 0.05 && delay <= base * 1.2 + 0.05,
            "restart {restart}: {delay} s is within ±20% of {base} s"
        );
        // Nothing happens before the delay, the launch right after it.
        let at = sim.machine.poll_timeout().expect("a restart timer");
        sim.advance(at - sim.now - Duration::from_millis(1));
        assert!(launches(&sim.take()).is_empty(), "not before the backoff");
        sim.advance(Duration::from_millis(1));
        assert_eq!(launches(&sim.take()), ["svc"], "restart {restart}");
        expected *= 2.0;
    }
    // 1 + 2 + … + 512 + 600 + 600 s: twenty minutes of backoff, simulated.
    assert!(sim.now - sim.machine.setup.began > Duration::from_secs(1600));
    sim.up("svc");
    sim.exits("svc", 1);
    let effects = sim.take();
    assert_eq!(sim.state("svc"), State::Failed);
    assert!(
        messages(&effects, "svc").iter().any(|m| m
            == "its main process ended with exit code 1; gave up after 12 restart(s) in a row (max_restarts = 12)"),
        "{:?}",
        messages(&effects, "svc")
    );
}

#[test]
fn on_failure_does_not_restart_a_clean_exit_but_always_does() {
    let mut sim = Sim::new(FLAKY);
    sim.up("svc");
    sim.exits("svc", 0);
    assert_eq!(sim.state("svc"), State::Exited);

    let mut sim = Sim::new(
        r#"
[services.svc]
command = ["svc"]
restart = { policy = "always", initial_backoff = "1s" }
"#,
    );
    sim.up("svc");
    sim.exits("svc", 0);
    assert_eq!(sim.state("svc"), State::Restarting);
    sim.advance(Duration::from_secs(2));
    assert_eq!(
        launches(&sim.take()).last().map(String::as_str),
        Some("svc")
    );
}

#[test]
fn policy_no_fails_without_a_restart() {
    let mut sim = Sim::new("[services.svc]\ncommand = [\"svc\"]\nrestart = \"no\"\n");
    sim.up("svc");
    sim.advance(Duration::from_secs(60));
    sim.take();
    sim.exits("svc", 2);
    let effects = sim.take();
    assert_eq!(sim.state("svc"), State::Failed);
    assert!(
        messages(&effects, "svc")
            .contains(&"its main process ended with exit code 2; restart policy is `no`".into())
    );
    assert_eq!(sim.machine.poll_timeout(), None, "nothing is scheduled");
}

#[test]
fn a_service_that_proved_stable_starts_its_backoff_over() {
    let mut sim = Sim::new(FLAKY);
    for _ in 0..3 {
        sim.up("svc");
        sim.exits("svc", 1);
        let at = sim.machine.poll_timeout().unwrap();
        sim.advance(at - sim.now);
    }
    sim.up("svc");
    sim.take();
    // Ready for longer than max_backoff (10 min): proven.
    sim.advance(Duration::from_secs(601));
    sim.exits("svc", 1);
    let delay = restart_delay(&sim.take(), "svc").unwrap();
    assert!((0.75..=1.25).contains(&delay), "back to ~1 s: {delay}");
}

#[test]
fn a_required_dependency_down_takes_its_dependents_to_waiting_and_back() {
    let mut sim = Sim::new(
        r#"
[services.db]
command = ["db"]
restart = { policy = "on-failure", initial_backoff = "1s" }
[services.api]
command = ["api"]
depends_on = { db = "healthy" }
[services.web]
command = ["web"]
depends_on = { api = "healthy" }
"#,
    );
    sim.up("db");
    sim.up("api");
    sim.up("web");
    sim.take();
    sim.exits("db", 1);
    let effects = sim.take();
    assert_eq!(sim.state("db"), State::Restarting);
    assert_eq!(sim.state("api"), State::Stopping);
    assert_eq!(
        sim.state("web"),
        State::Stopping,
        "the cascade goes all the way"
    );
    assert_eq!(
        ends(&effects),
        [
            ("db".to_string(), true),
            ("api".to_string(), true),
            ("web".to_string(), true)
        ],
        "what is left of db's scope, then its dependents: graceful stops"
    );
    sim.ended("api");
    sim.ended("web");
    assert_eq!(sim.state("api"), State::Waiting);
    assert_eq!(sim.state("web"), State::Waiting);
    sim.advance(Duration::from_secs(2));
    assert_eq!(launches(&sim.take()), ["db"], "the dependents wait");
    sim.up("db");
    assert_eq!(launches(&sim.take()), ["api"], "back once db is ready");
    sim.up("api");
    assert_eq!(launches(&sim.take()), ["web"]);
    sim.up("web");
    assert_eq!(sim.machine.service("api").unwrap().generation, 2);
}

#[test]
fn an_optional_dependency_only_degrades_the_stack() {
    let mut sim = Sim::new(
        r#"
[services.cache]
command = ["cache"]
optional = true
restart = "no"
[services.app]
command = ["app"]
depends_on = { cache = "healthy" }
"#,
    );
    assert_eq!(launches(&sim.take()), ["cache"]);
    sim.input(Input::Launched {
        service: "cache".into(),
        generation: 1,
        outcome: Err("command `cache` was not found".into()),
    });
    let effects = sim.take();
    assert_eq!(sim.state("cache"), State::Failed);
    assert_eq!(
        launches(&effects),
        ["app"],
        "a failed optional dependency does not block"
    );
    assert_eq!(has_run_stop(&effects), None, "and does not stop the stack");
    sim.up("app");
    let ready = sim
        .take()
        .into_iter()
        .find_map(|e| match e {
            Effect::Progress(p) if p.event == ProgressEvent::Ready => Some(p.message),
            _ => None,
        })
        .expect("the stack is ready");
    assert!(
        ready.ends_with("degraded: optional cache failed"),
        "{ready}"
    );
}

#[test]
fn a_failing_liveness_probe_ends_the_instance_after_its_retries() {
    let mut sim = Sim::new(
        r#"
[services.web]
command = ["web"]
liveness = { http = "http://127.0.0.1:8080/health", interval = "5s", retries = 3 }
restart = { policy = "on-failure", initial_backoff = "1s" }
"#,
    );
    sim.up("web");
    sim.take();
    for failure in 1..=3 {
        sim.advance(Duration::from_secs(5));
        let probes = sim.take();
        assert!(
            probes.iter().any(|e| matches!(
                e,
                Effect::Probe {
                    kind: ProbeKind::Liveness,
                    ..
                }
            )),
            "a liveness probe every interval"
        );
        sim.probe("web", ProbeKind::Liveness, Err("status 500".into()));
        if failure < 3 {
            assert_eq!(
                sim.state("web"),
                State::Running,
                "{failure} failure(s) are tolerated"
            );
        }
    }
    let effects = sim.take();
    assert_eq!(ends(&effects), [("web".to_string(), true)]);
    assert!(messages(&effects, "web").contains(
        &"liveness probe failed: http http://127.0.0.1:8080/health (status 200): 3 failures in a row, last: status 500".into()
    ));
    sim.ended("web");
    assert_eq!(sim.state("web"), State::Restarting);
}

#[test]
fn a_missing_watchdog_fails_a_notify_liveness() {
    let mut sim = Sim::new(
        r#"
[services.worker]
command = ["worker"]
ready = { notify = true }
liveness = { notify = true, interval = "2s", retries = 1 }
"#,
    );
    sim.launched("worker");
    sim.notify("worker", READY);
    assert_eq!(sim.state("worker"), State::Running);
    for _ in 0..3 {
        sim.advance(Duration::from_millis(1500));
        sim.notify("worker", WATCHDOG);
    }
    assert!(
        ends(&sim.take()).is_empty(),
        "a watchdog within the interval keeps it"
    );
    sim.advance(Duration::from_secs(5));
    assert_eq!(ends(&sim.take()), [("worker".to_string(), true)]);
}

#[test]
fn a_main_process_exiting_zero_while_its_daemons_run_leaves_the_service_running() {
    let mut sim = Sim::new(CHAIN);
    sim.up("db");
    sim.take();
    let generation = sim.generation("db");
    sim.input(Input::MainExited {
        service: "db".into(),
        generation,
        status: ExitStatus::from_raw(0),
        others_left: 2,
    });
    let effects = sim.take();
    assert_eq!(
        sim.state("db"),
        State::Running,
        "its scope still holds its daemons"
    );
    assert!(messages(&effects, "db").contains(
        &"its main process exited 0; 2 process(es) it started run on in its scope".into()
    ));
    assert!(ends(&effects).is_empty() && launches(&effects).is_empty());
    // The daemons going is the end of the instance.
    sim.input(Input::Emptied {
        service: "db".into(),
        generation,
    });
    assert_ne!(sim.state("db"), State::Running);
}

#[test]
fn a_stand_down_during_start_up_waits_for_launches_in_flight_and_starts_nothing_more() {
    let mut sim = Sim::new(CHAIN);
    assert_eq!(launches(&sim.take()), ["db"]);
    sim.input(Input::StandDown { ack: Some(7) });
    let effects = sim.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::AckStandDown(_))),
        "not acknowledged while db's launch is in flight"
    );
    sim.launched("db");
    let effects = sim.take();
    assert!(effects.iter().any(|e| matches!(e, Effect::AckStandDown(7))));
    assert_eq!(
        ends(&effects),
        [("db".to_string(), false)],
        "launched while stopping: killed"
    );
    assert!(launches(&effects).is_empty(), "web does not start");
    sim.advance(Duration::from_secs(600));
    assert!(launches(&sim.take()).is_empty());
    sim.input(Input::StopperGone { left: 0 });
    assert_eq!(exit_of(&sim.take()), Some(Finish::StoodDown));
}

#[test]
fn a_stopper_that_leaves_processes_behind_makes_the_supervisor_stop_the_stack() {
    let mut sim = Sim::new(CHAIN);
    for s in ["db", "web", "api"] {
        sim.up(s);
    }
    sim.take();
    sim.input(Input::StandDown { ack: Some(1) });
    sim.input(Input::StopperGone { left: 3 });
    assert_eq!(has_run_stop(&sim.take()), Some(false));
}

#[test]
fn a_second_signal_escalates_the_stop_in_flight() {
    let mut sim = Sim::new(CHAIN);
    for s in ["db", "web", "api"] {
        sim.up(s);
    }
    sim.take();
    sim.input(Input::Signal(SignalInput::Interrupt));
    let effects = sim.take();
    assert_eq!(has_run_stop(&effects), Some(false), "a graceful stop");
    sim.input(Input::Signal(SignalInput::Terminate));
    let effects = sim.take();
    assert!(
        effects.iter().any(|e| matches!(e, Effect::ForceStop)),
        "the stop in flight is forced"
    );
    assert_eq!(has_run_stop(&effects), None, "no second stop");
    sim.input(Input::Signal(SignalInput::Interrupt));
    assert!(sim.take().is_empty(), "a third changes nothing more");
    sim.input(Input::StopDone {
        outcome: Outcome::Complete,
        survivors: 0,
        elapsed_ms: 3,
    });
    assert_eq!(exit_of(&sim.take()), Some(Finish::Stopped));
}

#[test]
fn a_second_signal_before_the_stop_began_makes_it_begin_forced() {
    let mut sim = Sim::new(CHAIN);
    sim.take();
    // db's launch is in flight: the stop waits for it.
    sim.input(Input::Signal(SignalInput::Interrupt));
    sim.input(Input::Signal(SignalInput::Interrupt));
    assert_eq!(has_run_stop(&sim.take()), None);
    sim.launched("db");
    let effects = sim.take();
    assert_eq!(has_run_stop(&effects), Some(true), "it begins by killing");
}

#[test]
fn reports_about_a_replaced_instance_are_dropped() {
    let mut sim = Sim::new(FLAKY);
    sim.up("svc");
    sim.exits("svc", 1);
    sim.advance(Duration::from_secs(2));
    sim.launched("svc");
    assert_eq!(sim.generation("svc"), 2);
    sim.take();
    // A late exit of instance 1.
    sim.input(Input::MainExited {
        service: "svc".into(),
        generation: 1,
        status: ExitStatus::from_raw(9),
        others_left: 0,
    });
    assert!(sim.take().is_empty());
    assert_eq!(
        sim.state("svc"),
        State::Running,
        "without a probe, launched is running"
    );
}

#[test]
fn only_the_selected_services_are_started() {
    let mut sim = Sim::only(CHAIN, &["db"]);
    assert_eq!(launches(&sim.take()), ["db"]);
    sim.up("db");
    assert!(sim.machine.service("web").is_none());
}

#[test]
fn a_ready_notification_that_comes_before_the_launch_report_still_counts() {
    let mut sim = Sim::new(
        r#"
[services.worker]
command = ["worker"]
ready = { notify = true }
"#,
    );
    assert_eq!(launches(&sim.take()), ["worker"]);
    // The service runs from the moment it is placed: its READY=1 can overtake the report.
    sim.notify("worker", READY);
    assert_eq!(sim.state("worker"), State::Launching);
    sim.launched("worker");
    assert_eq!(sim.state("worker"), State::Running);
    assert!(
        sim.machine.poll_timeout().is_none(),
        "no readiness deadline left"
    );
}

// ---- verbs ---------------------------------------------------------------------------------

impl Sim {
    fn ask(&mut self, verb: Verb, services: &[&str]) -> u64 {
        let id = self.effects.len() as u64 + 100;
        self.input(Input::Request {
            id,
            verb,
            services: services.iter().map(|s| s.to_string()).collect(),
            actor: "uid 0 pid 1 (test)".into(),
        });
        id
    }

    /// The reply to request `id`, if it was sent since the last `take`.
    fn reply(&mut self, id: u64) -> Option<Reply> {
        self.collect();
        self.effects.iter().find_map(|e| match e {
            Effect::Reply { id: i, reply } if *i == id => Some(reply.clone()),
            _ => None,
        })
    }

    fn all_up(&mut self) {
        for name in ["db", "api", "web"] {
            self.up(name);
        }
        self.take();
    }
}

#[test]
fn a_restart_ends_and_starts_only_that_service_and_answers_once_it_is_ready() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Restart, &["db"]);
    assert_eq!(ends(&sim.take()), [("db".to_string(), true)]);
    assert!(sim.reply(id).is_none(), "no reply before it is ready again");
    sim.ended("db");
    assert_eq!(launches(&sim.take()), ["db"]);
    assert_eq!(sim.state("api"), State::Running, "dependents run on");
    sim.up("db");
    let reply = sim.reply(id).expect("answered once ready");
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.services[0].action, "restarted");
    assert!(ends(&sim.take()).is_empty(), "nothing else was ended");
}

#[test]
fn restart_true_on_a_dependency_restarts_the_dependent_after_it() {
    let mut sim = Sim::new(CHAIN);
    sim.machine
        .services
        .get_mut("api")
        .unwrap()
        .cfg
        .restart_with
        .insert("db".into());
    sim.all_up();
    let id = sim.ask(Verb::Restart, &["db"]);
    // The dependent ends first; only then its dependency.
    assert_eq!(ends(&sim.take()), [("api".to_string(), true)]);
    sim.ended("api");
    assert_eq!(ends(&sim.take()), [("db".to_string(), true)]);
    sim.ended("db");
    assert_eq!(
        launches(&sim.take()),
        ["db"],
        "api waits for db to be healthy"
    );
    sim.up("db");
    assert_eq!(launches(&sim.take()), ["api"]);
    assert!(sim.reply(id).is_none());
    sim.up("api");
    let reply = sim.reply(id).unwrap();
    assert!(reply.ok);
    let why: Vec<&str> = reply.services.iter().map(|s| s.why.as_str()).collect();
    assert_eq!(why, ["depends on db (restart = true)", "asked"]);
    assert_eq!(
        sim.state("web"),
        State::Running,
        "web declared no restart = true"
    );
}

#[test]
fn a_stopped_service_and_its_dependents_are_held_until_started_again() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Stop, &["db"]);
    let mut ended: Vec<String> = ends(&sim.take()).into_iter().map(|(s, _)| s).collect();
    ended.sort();
    assert_eq!(ended, ["api", "web"], "what requires db ends first");
    sim.ended("api");
    sim.ended("web");
    assert_eq!(ends(&sim.take()), [("db".to_string(), true)]);
    sim.ended("db");
    let reply = sim.reply(id).unwrap();
    assert!(reply.ok);
    for name in ["db", "api", "web"] {
        assert_eq!(sim.state(name), State::Stopped);
    }
    sim.advance(Duration::from_secs(600));
    assert!(
        launches(&sim.take()).is_empty(),
        "nothing held is restarted"
    );
    let id = sim.ask(Verb::Start, &["api"]);
    assert_eq!(launches(&sim.take()), ["db"], "with what it needs");
    sim.up("db");
    assert_eq!(launches(&sim.take()), ["api"]);
    sim.up("api");
    let reply = sim.reply(id).unwrap();
    assert!(reply.ok, "{reply:?}");
    assert_eq!(sim.state("web"), State::Stopped, "web was not asked for");
}

#[test]
fn a_crash_while_stopping_on_request_is_not_restarted() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    sim.ask(Verb::Stop, &["web"]);
    sim.exits("web", 3);
    assert_eq!(sim.state("web"), State::Stopped);
    sim.advance(Duration::from_secs(60));
    assert!(launches(&sim.take()).is_empty());
}

#[test]
fn unknown_names_and_a_stack_being_stopped_are_refused_and_nothing_changes() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Restart, &["dbb"]);
    let reply = sim.reply(id).unwrap();
    let error = reply.error.unwrap();
    assert_eq!(error.kind, "unknown_service");
    assert!(error.hint.unwrap().contains("did you mean `db`?"));
    assert!(ends(&sim.take()).is_empty());
    sim.input(Input::Signal(SignalInput::Terminate));
    sim.take();
    let id = sim.ask(Verb::Restart, &["db"]);
    assert_eq!(sim.reply(id).unwrap().error.unwrap().kind, "stopping");
}

#[test]
fn a_request_open_when_the_stack_begins_to_stop_is_answered_at_once() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Restart, &["web"]);
    sim.input(Input::Signal(SignalInput::Terminate));
    let reply = sim.reply(id).expect("answered");
    assert!(!reply.ok);
    assert_eq!(reply.error.unwrap().kind, "stopping");
}

#[test]
fn a_restart_that_fails_its_start_says_why() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Restart, &["web"]);
    sim.ended("web");
    let generation = sim.generation("web");
    sim.input(Input::Launched {
        service: "web".into(),
        generation,
        outcome: Err("web: no such file".into()),
    });
    let reply = sim.reply(id).unwrap();
    assert!(!reply.ok);
    assert!(reply.error.unwrap().message.contains("no such file"));
    assert!(has_run_stop(&sim.take()).is_none(), "the stack runs on");
}

#[test]
fn a_paused_service_holds_its_probes_and_resumes_them() {
    let mut sim = Sim::new(
        r#"
[services.db]
command = ["db"]
liveness = { tcp = 5432, interval = "1s" }
"#,
    );
    sim.up("db");
    sim.take();
    let id = sim.ask(Verb::Pause, &[]);
    let effects = sim.take();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Freeze { frozen: true, .. }))
    );
    assert_eq!(sim.state("db"), State::Paused);
    assert!(sim.reply(id).is_none(), "answered once frozen");
    let generation = sim.generation("db");
    sim.input(Input::Frozen {
        service: "db".into(),
        generation,
        frozen: true,
        result: Ok(()),
    });
    assert!(sim.reply(id).unwrap().ok);
    sim.take();
    sim.advance(Duration::from_secs(30));
    let probes = sim
        .take()
        .iter()
        .filter(|e| matches!(e, Effect::Probe { .. }))
        .count();
    assert_eq!(probes, 0, "no liveness probe while paused");
    let id = sim.ask(Verb::Resume, &["db"]);
    assert_eq!(sim.state("db"), State::Running);
    sim.input(Input::Frozen {
        service: "db".into(),
        generation,
        frozen: false,
        result: Ok(()),
    });
    assert!(sim.reply(id).unwrap().ok);
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take().iter().any(|e| matches!(e, Effect::Probe { .. })),
        "probes again"
    );
}

#[test]
fn a_pause_that_does_not_take_leaves_the_service_as_it_was() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let id = sim.ask(Verb::Pause, &["web"]);
    let generation = sim.generation("web");
    sim.input(Input::Frozen {
        service: "web".into(),
        generation,
        frozen: true,
        result: Err("cannot freeze".into()),
    });
    assert_eq!(sim.state("web"), State::Running);
    let reply = sim.reply(id).unwrap();
    assert!(!reply.ok);
    assert!(reply.error.unwrap().message.contains("cannot freeze"));
}

#[test]
fn a_reload_starts_what_is_new_restarts_what_changed_and_removes_what_went() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let mut services = config(CHAIN).services;
    services.remove("web");
    services
        .get_mut("api")
        .unwrap()
        .env
        .insert("X".into(), "1".into());
    let extra = config("[services.extra]\ncommand = [\"extra\"]\n").services;
    services.extend(extra);
    let db_generation = sim.generation("db");
    sim.input(Input::Reload {
        id: Some(7),
        services,
        dry_run: false,
        actor: "test".into(),
    });
    let effects = sim.take();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ConfigApplied { id: Some(7) }))
    );
    let mut ended: Vec<String> = ends(&effects).into_iter().map(|(s, _)| s).collect();
    ended.sort();
    assert_eq!(ended, ["api", "web"]);
    assert_eq!(launches(&effects), ["extra"]);
    sim.ended("api");
    sim.ended("web");
    let effects = sim.take();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Removed { service } if service == "web"))
    );
    assert_eq!(launches(&effects), ["api"]);
    sim.up("api");
    sim.up("extra");
    let reply = sim.reply(7).unwrap();
    assert!(reply.ok, "{reply:?}");
    let actions: BTreeSet<(String, String)> = reply
        .services
        .iter()
        .map(|s| (s.service.clone(), s.action.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> =
        [("api", "changed"), ("extra", "added"), ("web", "removed")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(actions, expected);
    assert_eq!(sim.generation("db"), db_generation, "db untouched");
    assert!(sim.machine.service("web").is_none());
}

#[test]
fn a_dry_run_reload_changes_nothing() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    let mut services = config(CHAIN).services;
    services.remove("web");
    sim.input(Input::Reload {
        id: Some(9),
        services,
        dry_run: true,
        actor: "test".into(),
    });
    let reply = sim.reply(9).unwrap();
    assert!(
        reply
            .services
            .iter()
            .any(|s| s.service == "web" && s.action == "removed")
    );
    let effects = sim.take();
    assert!(ends(&effects).is_empty() && launches(&effects).is_empty());
    assert_eq!(sim.state("web"), State::Running);
}

#[test]
fn a_watched_change_restarts_the_service_once_and_is_remembered() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    sim.input(Input::FilesChanged {
        service: "web".into(),
        path: "src/app.py".into(),
    });
    assert_eq!(ends(&sim.take()), [("web".to_string(), true)]);
    // A second burst while it restarts does not restart it twice.
    sim.input(Input::FilesChanged {
        service: "web".into(),
        path: "src/app.py".into(),
    });
    assert!(ends(&sim.take()).is_empty());
    sim.ended("web");
    assert_eq!(launches(&sim.take()), ["web"]);
    assert_eq!(
        sim.machine.service("web").unwrap().trigger.as_deref(),
        Some("src/app.py")
    );
}

#[test]
fn start_of_a_service_left_out_by_only_adds_it() {
    let mut sim = Sim::only(CHAIN, &["db"]);
    sim.up("db");
    sim.take();
    let id = sim.ask(Verb::Start, &["web"]);
    assert_eq!(launches(&sim.take()), ["web"]);
    sim.up("web");
    assert!(sim.reply(id).unwrap().ok);
    assert!(
        sim.machine.service("api").is_none(),
        "api was not asked for"
    );
}

#[test]
fn readiness_retries_start_soon_and_slow_down_to_the_interval() {
    let mut sim = Sim::new(
        r#"
[services.db]
command = ["db"]
ready = { tcp = 5432, interval = "100ms" }
"#,
    );
    sim.launched("db");
    let began = sim.now;
    let mut at = Vec::new();
    for _ in 0..9 {
        sim.take();
        sim.probe("db", ProbeKind::Readiness, Err("refused".into()));
        let due = sim.machine.poll_timeout().expect("a retry is armed");
        at.push(due.saturating_duration_since(sim.now).as_millis());
        sim.advance(due.saturating_duration_since(sim.now));
    }
    assert_eq!(at, [2, 4, 8, 16, 32, 64, 100, 100, 100]);
    assert!(sim.now.saturating_duration_since(began) < Duration::from_secs(1));
}

#[test]
fn the_first_retry_schedule_never_passes_the_interval() {
    assert_eq!(
        first_retries(Duration::from_millis(500), 1),
        Duration::from_millis(2)
    );
    assert_eq!(
        first_retries(Duration::from_millis(500), 9),
        Duration::from_millis(500)
    );
    assert_eq!(
        first_retries(Duration::from_millis(1), 1),
        Duration::from_millis(1)
    );
    assert_eq!(
        first_retries(Duration::from_secs(30), 40),
        Duration::from_secs(30)
    );
}

#[test]
fn a_start_that_waits_for_a_paused_dependency_says_so_instead_of_waiting() {
    let mut sim = Sim::new(CHAIN);
    sim.all_up();
    sim.ask(Verb::Stop, &["web"]);
    sim.ended("web");
    sim.ask(Verb::Pause, &["db"]);
    let generation = sim.generation("db");
    sim.input(Input::Frozen {
        service: "db".into(),
        generation,
        frozen: true,
        result: Ok(()),
    });
    let id = sim.ask(Verb::Start, &["web"]);
    let reply = sim.reply(id).expect("answered at once");
    assert!(!reply.ok);
    assert!(
        reply.error.unwrap().message.contains("db, which is paused"),
        "{:?}",
        reply.services
    );
}
