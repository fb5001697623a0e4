//! The supervisor's rules, with no I/O: a [`Machine`] owns the stack's state and is fed
//! [`Input`]s (an instance launched, its main process exited, its cgroup emptied, a probe's
//! result, a notify message, a control request, a signal) and timeouts, each with the time
//! passed in; it hands back [`Effect`]s (launch an instance, end one, run a probe, write a
//! record, an audit event, a progress line) to be drained with [`Machine::poll_effect`], and
//! says when it next wants to be woken with [`Machine::poll_timeout`]. It never touches a
//! socket, a file or a clock, so its tests run simulated minutes in microseconds.
//!
//! The shape is quinn-proto's `Connection`: `handle(now, input)` / `handle_timeout(now)` in,
//! `poll_effect()` / `poll_timeout()` out; [`super::driver`] is the async executor around it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::audit::Priority;
use crate::config::{Config, DependencyCondition, Launch, Probe, ProbeCheck, RestartMode, Service};
use crate::control::Reply;
use crate::proc::{ProcessIdentity, describe_exit};
use crate::registry::{RunState, ServiceStateRecord};
use crate::stop::Outcome;

use super::backoff;
use super::notify::Notification;
use super::probe::{describe_check, is_polled};
use super::progress::{Progress, ProgressEvent, ServiceState as State};

#[path = "machine_verbs.rs"]
mod verbs;
pub use verbs::Verb;
use verbs::{Drain, PendingRequest};

/// The first readiness retry comes this soon; each next one twice as late, up to the probe's
/// `interval`: most services are ready within milliseconds of their launch, and a restart
/// should not wait a whole interval for the second look.
const FIRST_RETRY: Duration = Duration::from_millis(2);

/// When the readiness retry after `failures` failed attempts is due, from now.
fn first_retries(interval: Duration, failures: u32) -> Duration {
    let early = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    early.min(interval)
}

/// A service ready for this long has proven itself: its restart backoff starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Which probe a [`Effect::Probe`] or [`Input::ProbeResult`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeKind {
    Readiness,
    Liveness,
}

/// The signals a supervisor handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalInput {
    /// Ctrl-C.
    Interrupt,
    Terminate,
    Hangup,
    /// SIGUSR1: stand down, unacknowledged (`ccscope stop` could not reach the socket).
    StandDown,
}

impl SignalInput {
    fn why(self) -> &'static str {
        match self {
            SignalInput::Interrupt => "interrupted (Ctrl-C)",
            SignalInput::Terminate => "SIGTERM",
            SignalInput::Hangup => "SIGHUP",
            SignalInput::StandDown => "SIGUSR1",
        }
    }
}

/// A launched instance, as the driver saw it come up.
#[derive(Debug, Clone)]
pub struct LaunchedInstance {
    pub main: ProcessIdentity,
    /// The scope's name, for messages.
    pub scope: String,
    /// Warnings the launch produced (unenforceable limits, a record that could not be
    /// written), said once it is known to be current.
    pub warnings: Vec<String>,
}

/// A scope an earlier run left populated, adopted back (same stack definition).
#[derive(Debug, Clone)]
pub struct AdoptedBack {
    pub service: String,
    pub scope: String,
    pub processes: usize,
    /// Its registered main process, if the registry knows it (not our child: no status).
    pub main: Option<ProcessIdentity>,
}

/// What happened, told to the machine.
#[derive(Debug, Clone)]
pub enum Input {
    Launched {
        service: String,
        generation: u64,
        outcome: Result<LaunchedInstance, String>,
    },
    /// The instance's main process was reaped. `others_left` counts what else its scope still
    /// holds (ccscope's own output forwarder not counted), looked at when it exited 0.
    MainExited {
        service: String,
        generation: u64,
        status: ExitStatus,
        others_left: usize,
    },
    /// The instance's cgroup holds no process any more.
    Emptied {
        service: String,
        generation: u64,
    },
    /// An [`Effect::End`] is done (the scope is empty, or the kill's wait ran out).
    EndDone {
        service: String,
        generation: u64,
    },
    ProbeResult {
        service: String,
        generation: u64,
        kind: ProbeKind,
        result: Result<(), String>,
    },
    /// A line of the instance's output matched its `log` readiness pattern.
    LogMatched {
        service: String,
        generation: u64,
        pattern: String,
    },
    Notify {
        service: String,
        generation: u64,
        note: Notification,
    },
    /// `ccscope stop` asks the supervisor to stand down; `ack` is answered with
    /// [`Effect::AckStandDown`] once no launch is in flight.
    StandDown {
        ack: Option<u64>,
    },
    /// The `ccscope stop` that took over hung up; `left` processes are still in the scopes.
    StopperGone {
        left: usize,
    },
    Signal(SignalInput),
    /// The stop flow of an [`Effect::RunStop`] finished.
    StopDone {
        outcome: Outcome,
        survivors: usize,
        elapsed_ms: u64,
    },
    /// A client asks for a verb on these services (names known to the configuration);
    /// `actor` says who, for the records. Answered with [`Effect::Reply`] once done.
    Request {
        id: u64,
        verb: Verb,
        services: Vec<String>,
        actor: String,
    },
    /// The configuration was read again (`ccscope reload`, or SIGHUP when `id` is None): its
    /// services replace the running definition, or with `dry_run` only the plan is said.
    Reload {
        id: Option<u64>,
        services: BTreeMap<String, Service>,
        dry_run: bool,
        actor: String,
    },
    /// An [`Effect::Freeze`] is done.
    Frozen {
        service: String,
        generation: u64,
        frozen: bool,
        result: Result<(), String>,
    },
    /// A file the service's `watch` covers changed (a burst of changes, once).
    FilesChanged {
        service: String,
        path: String,
    },
}

/// An audit event, for the driver to write to journald.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    pub event: &'static str,
    pub service: Option<String>,
    pub priority: Priority,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
}

/// How the supervisor's run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Stopped by a signal, after an orderly stop.
    Stopped,
    /// `ccscope stop` took over.
    StoodDown,
    /// The stack did not come up; what had started was stopped.
    StartFailed { service: String, reason: String },
}

/// What the machine wants done.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Launch a new instance of the service; answer with [`Input::Launched`], then watch it
    /// ([`Input::MainExited`], [`Input::Emptied`], notify, log lines).
    Launch {
        service: String,
        generation: u64,
    },
    /// End the instance: its stop signal, its stop timeout, then a kill (`graceful`), or a kill
    /// at once; answer with [`Input::EndDone`]. A paused (frozen) instance is thawed first, so
    /// its stop signal is acted on at once.
    End {
        service: String,
        generation: u64,
        graceful: bool,
    },
    /// Freeze (or thaw) the instance's cgroup or container; answer with [`Input::Frozen`].
    Freeze {
        service: String,
        generation: u64,
        frozen: bool,
    },
    /// Answer request `id`.
    Reply {
        id: u64,
        reply: Reply,
    },
    /// A reload was applied: launches from now on use the configuration it read.
    ConfigApplied {
        id: Option<u64>,
    },
    /// The service was removed from the configuration and its last instance has ended.
    Removed {
        service: String,
    },
    /// Run one attempt of a probe; answer with [`Input::ProbeResult`].
    Probe {
        service: String,
        generation: u64,
        kind: ProbeKind,
        probe: Probe,
    },
    /// The instance is over: stop watching it; with `release`, free its scope's name and drop
    /// the service's registry records.
    Forget {
        service: String,
        generation: u64,
        release: bool,
    },
    /// Remove the record of a process that ended.
    Unregister(ProcessIdentity),
    Record(ServiceStateRecord),
    RunState(RunState),
    Audit(AuditNote),
    Progress(Progress),
    AckStandDown(u64),
    /// Run the stop flow over the whole stack (killing at once with `force`); answer with
    /// [`Input::StopDone`].
    RunStop {
        force: bool,
    },
    /// The stop in flight kills what still has grace, now.
    ForceStop,
    /// Every service is up: start-up code need not stay resident.
    StackUp,
    Exit(Finish),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Up,
    /// Stopping the stack itself (signal, or a failed start).
    ShuttingDown,
    /// `ccscope stop` is stopping it: start and restart nothing.
    StoodDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    RestartDue,
    ReadinessRetry,
    ReadinessDeadline,
    LivenessTick,
}

/// One service as the machine keeps it.
#[derive(Debug)]
struct Svc {
    name: String,
    cfg: Service,
    state: State,
    since: Instant,
    ready: bool,
    /// Which launch the current instance is; inputs about older ones are dropped.
    generation: u64,
    /// Restarts in total, and in a row (the backoff's exponent; reset once it proves stable).
    restarts: u32,
    attempt: u32,
    /// Adopted back from an earlier run: its main process is not our child.
    adopted: bool,
    /// The current instance still has a scope (launched, not yet ended).
    scope: Option<String>,
    main: Option<ProcessIdentity>,
    main_status: Option<ExitStatus>,
    main_reaped: bool,
    emptied: bool,
    /// Why the current instance is being ended as a failure.
    failure: Option<String>,
    last_exit: Option<String>,
    exited_ok: bool,
    ready_at: Option<Instant>,
    /// Where a stop of this service leads: `Waiting` (a dependency is down) or `Stopped`.
    after_stop: State,
    /// The readiness probe of the current instance: when it began, its last failure.
    probe_began: Option<Instant>,
    /// Readiness attempts of the current instance that failed so far.
    probe_failures: u32,
    probe_last: Option<String>,
    liveness_failures: u32,
    last_watchdog: Instant,
    status_text: Option<String>,
    /// READY=1 came while the instance was still launching (the service runs from the
    /// moment it is placed; the launch's report can come after its first datagram).
    ready_early: bool,
    /// Stopped on request (`ccscope stop SVC`): neither started nor restarted until asked.
    held: bool,
    /// Started by a request after the run began: its failure never fails the run's start.
    requested: bool,
    /// While paused, the state it was paused in.
    paused_from: Option<State>,
    /// Its cgroup (or container) is frozen now, or a freeze is asked.
    frozen: bool,
    /// Asked to end while its launch was in flight: ended once it is placed.
    end_when_launched: bool,
    /// The message of its last state change.
    last_message: String,
    /// The last change of a watched file that restarted it.
    trigger: Option<String>,
}

impl Svc {
    fn new(name: &str, cfg: &Service, now: Instant) -> Svc {
        Svc {
            name: name.to_string(),
            cfg: cfg.clone(),
            state: State::Pending,
            since: now,
            ready: false,
            generation: 0,
            restarts: 0,
            attempt: 0,
            adopted: false,
            scope: None,
            main: None,
            main_status: None,
            main_reaped: false,
            emptied: false,
            failure: None,
            last_exit: None,
            exited_ok: false,
            ready_at: None,
            after_stop: State::Stopped,
            probe_began: None,
            probe_failures: 0,
            probe_last: None,
            liveness_failures: 0,
            last_watchdog: now,
            status_text: None,
            ready_early: false,
            held: false,
            requested: false,
            paused_from: None,
            frozen: false,
            end_when_launched: false,
            last_message: String::new(),
            trigger: None,
        }
    }

    fn reset_instance(&mut self) {
        self.adopted = false;
        self.scope = None;
        self.main = None;
        self.main_status = None;
        self.main_reaped = false;
        self.emptied = false;
        self.failure = None;
        self.ready = false;
        self.ready_at = None;
        self.probe_began = None;
        self.probe_last = None;
        self.probe_failures = 0;
        self.liveness_failures = 0;
        self.ready_early = false;
        self.frozen = false;
        self.end_when_launched = false;
    }
}

/// A read-only view of one service, for status and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub state: State,
    pub held: bool,
    pub trigger: Option<String>,
    pub ready: bool,
    pub generation: u64,
    pub restarts: u32,
    pub main: Option<ProcessIdentity>,
    pub status_text: Option<String>,
}

/// What the machine starts from.
#[derive(Debug, Clone)]
pub struct Setup {
    pub project: String,
    pub run_id: String,
    /// When `run` began (progress lines count from here), and that moment in milliseconds
    /// since the epoch (for the records).
    pub began: Instant,
    pub began_epoch_ms: i64,
    /// Seeds the restart jitter: the driver passes entropy, tests a constant.
    pub jitter_seed: u64,
}

pub struct Machine {
    setup: Setup,
    services: BTreeMap<String, Svc>,
    /// The start plan, `a → b, c`, for the selected services.
    plan: String,
    phase: Phase,
    /// Launches under way: a stand-down or a stop waits for them, so no scope appears after.
    inflight: usize,
    waiting_acks: Vec<u64>,
    /// The services launched, in waves: `clickhouse → telemetry_collector → bridge_sync, dashboard`.
    order: Vec<Vec<String>>,
    /// Why the start failed: (service, reason).
    abort: Option<(String, String)>,
    stopper_gone: bool,
    stood_down_by_signal: bool,
    stop_started: bool,
    /// A second signal came before the stop flow could begin: it begins forced.
    force_pending: bool,
    finished: bool,
    timers: BTreeMap<(String, TimerKind), Instant>,
    rng: u64,
    effects: VecDeque<Effect>,
    /// Every service of the configuration, selected or not: what a `start` or a reload adds.
    catalog: BTreeMap<String, Service>,
    /// Services being ended on request, and what becomes of each once it has ended. One is
    /// ended only once what depends on it in the drain has ended.
    draining: BTreeMap<String, Drain>,
    /// Requests not answered yet.
    requests: Vec<PendingRequest>,
}

impl Machine {
    /// A machine for the `selected` services of `config`, all pending.
    pub fn new(config: &Config, selected: &BTreeSet<String>, setup: Setup) -> Machine {
        let now = setup.began;
        let services = selected
            .iter()
            .filter_map(|name| {
                let cfg = config.services.get(name)?;
                Some((name.clone(), Svc::new(name, cfg, now)))
            })
            .collect();
        let plan = crate::config::graph::plan_line(config, selected);
        Machine {
            rng: setup.jitter_seed | 1,
            setup,
            services,
            plan,
            phase: Phase::Starting,
            inflight: 0,
            waiting_acks: Vec::new(),
            order: Vec::new(),
            abort: None,
            stopper_gone: false,
            stood_down_by_signal: false,
            stop_started: false,
            force_pending: false,
            finished: false,
            timers: BTreeMap::new(),
            effects: VecDeque::new(),
            catalog: config.services.clone(),
            draining: BTreeMap::new(),
            requests: Vec::new(),
        }
    }

    // ---- the interface ---------------------------------------------------------------------

    /// Takes over a scope an earlier run left, before [`Machine::start`]. Its cgroup is
    /// watched by the driver under generation 1.
    pub fn adopt_back(&mut self, now: Instant, adopted: AdoptedBack) {
        let Some(svc) = self.services.get_mut(&adopted.service) else {
            return;
        };
        svc.generation = 1;
        svc.adopted = true;
        svc.scope = Some(adopted.scope.clone());
        svc.main = adopted.main;
        // Not our child: there is no exit status to wait for.
        svc.main_reaped = true;
        let name = adopted.service;
        self.set_state(
            now,
            &name,
            State::Starting,
            format!(
                "adopted back from an earlier run: {} process(es) in {}",
                adopted.processes, adopted.scope
            ),
        );
        self.order.push(vec![name]);
    }

    /// Says the plan and starts the first wave. Services adopted back are probed from here,
    /// once every one of them is known: one ready at once must not start a service that is
    /// only waiting to be adopted too.
    pub fn start(&mut self, now: Instant) {
        let plan = format!("start order: {}", self.plan);
        self.say(now, ProgressEvent::Plan, None, plan);
        let adopted: Vec<String> = self
            .services
            .values()
            .filter(|s| s.adopted)
            .map(|s| s.name.clone())
            .collect();
        for name in adopted {
            self.begin_readiness(now, &name);
        }
        self.start_eligible(now);
        self.check_up(now);
        self.settle(now);
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.finished {
            return;
        }
        match input {
            Input::Launched {
                service,
                generation,
                outcome,
            } => {
                self.inflight = self.inflight.saturating_sub(1);
                self.launched(now, &service, generation, outcome);
                self.release_acks();
            }
            Input::MainExited {
                service,
                generation,
                status,
                others_left,
            } => self.main_exited(now, &service, generation, status, others_left),
            Input::Emptied {
                service,
                generation,
            } => {
                if let Some(svc) = self.current_mut(&service, generation) {
                    svc.emptied = true;
                    self.maybe_ended(now, &service);
                }
            }
            Input::EndDone {
                service,
                generation,
            } => {
                if self.current(&service, generation).is_some() {
                    self.maybe_ended(now, &service);
                }
            }
            Input::ProbeResult {
                service,
                generation,
                kind,
                result,
            } => self.probe_result(now, &service, generation, kind, result),
            Input::LogMatched {
                service,
                generation,
                pattern,
            } => {
                let waits = self
                    .current_in(&service, generation, State::Starting)
                    .is_some_and(|s| {
                        s.cfg
                            .ready
                            .as_ref()
                            .is_some_and(|p| matches!(p.check, ProbeCheck::Log { .. }))
                    });
                if waits && self.running() {
                    self.became_ready(now, &service, format!("log line matched /{pattern}/"));
                }
            }
            Input::Notify {
                service,
                generation,
                note,
            } => self.notified(now, &service, generation, note),
            Input::StandDown { ack } => self.stand_down(now, ack),
            Input::StopperGone { left } => {
                // The stop that took over is done, or died half-way: only an empty stack lets
                // the supervisor go; otherwise it finishes the stop itself.
                if left == 0 {
                    self.stopper_gone = true;
                } else {
                    self.say(
                        now,
                        ProgressEvent::Warning,
                        None,
                        format!("the stop that took over ended with {left} process(es) still running: stopping the stack"),
                    );
                    self.phase = Phase::ShuttingDown;
                }
            }
            Input::Signal(SignalInput::StandDown) => {
                self.stood_down_by_signal = true;
                self.stand_down(now, None);
            }
            Input::Signal(signal) => self.signalled(now, signal),
            Input::StopDone {
                outcome,
                survivors,
                elapsed_ms,
            } => {
                self.say(
                    now,
                    ProgressEvent::Stopped,
                    None,
                    format!(
                        "stopped: {}, {survivors} survivor(s), {elapsed_ms} ms",
                        outcome.as_str()
                    ),
                );
                let finish = match self.abort.take() {
                    Some((service, reason)) => Finish::StartFailed { service, reason },
                    None => Finish::Stopped,
                };
                self.finish(finish);
            }
            Input::Request {
                id,
                verb,
                services,
                actor,
            } => self.request(now, id, verb, services, &actor),
            Input::Reload {
                id,
                services,
                dry_run,
                actor,
            } => self.reload(now, id, services, dry_run, &actor),
            Input::Frozen {
                service,
                generation,
                frozen,
                result,
            } => self.frozen(now, &service, generation, frozen, result),
            Input::FilesChanged { service, path } => self.files_changed(now, &service, &path),
        }
        self.settle(now);
    }

    /// Fires every timer due at `now`, each at its own time, in order. Timers armed while
    /// these fire wait for the next call, so a zero interval cannot spin.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<((String, TimerKind), Instant)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, at)| (k.clone(), *at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        for (key, at) in due {
            if self.finished {
                return;
            }
            // Cancelled or re-armed by an earlier one meanwhile: not due any more.
            if self.timers.get(&key) != Some(&at) {
                continue;
            }
            self.timers.remove(&key);
            self.timer_fired(at, &key.0, key.1);
        }
        self.settle(now);
    }

    /// When the machine next wants [`Machine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn service(&self, name: &str) -> Option<ServiceView> {
        self.services.get(name).map(|s| ServiceView {
            state: s.state,
            held: s.held,
            trigger: s.trigger.clone(),
            ready: s.ready,
            generation: s.generation,
            restarts: s.restarts,
            main: s.main,
            status_text: s.status_text.clone(),
        })
    }

    /// The waves the services were launched in, as `a → b, c`.
    pub fn order_line(&self) -> String {
        self.order
            .iter()
            .map(|wave| wave.join(", "))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    // ---- bookkeeping ------------------------------------------------------------------------

    fn running(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Up)
    }

    fn current(&self, service: &str, generation: u64) -> Option<&Svc> {
        self.services
            .get(service)
            .filter(|s| s.generation == generation)
    }

    fn current_mut(&mut self, service: &str, generation: u64) -> Option<&mut Svc> {
        self.services
            .get_mut(service)
            .filter(|s| s.generation == generation)
    }

    /// The service, if a report is about its current instance and it is still in `state`.
    fn current_in(&self, service: &str, generation: u64, state: State) -> Option<&Svc> {
        self.current(service, generation)
            .filter(|s| s.state == state)
    }

    fn svc(&mut self, name: &str) -> &mut Svc {
        self.services
            .get_mut(name)
            .expect("the machine only names services it holds")
    }

    fn emit(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    fn arm(&mut self, name: &str, kind: TimerKind, at: Instant) {
        self.timers.insert((name.to_string(), kind), at);
    }

    /// Cancels the probes and timers of a service's current instance.
    fn disarm(&mut self, name: &str) {
        self.timers.retain(|(n, _), _| n != name);
    }

    fn disarm_all(&mut self) {
        self.timers.clear();
    }

    fn jitter(&mut self) -> f64 {
        // xorshift64*: plenty for spreading restarts apart.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let bits = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    fn elapsed_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.setup.began).as_millis() as u64
    }

    fn say(&mut self, now: Instant, event: ProgressEvent, service: Option<&str>, message: String) {
        let state = match event {
            ProgressEvent::State => service.and_then(|s| self.services.get(s)).map(|s| s.state),
            _ => None,
        };
        let progress = Progress {
            event,
            service: service.map(str::to_string),
            state,
            message,
            elapsed_ms: self.elapsed_ms(now),
        };
        self.emit(Effect::Progress(progress));
    }

    /// Sets a service's state, records it, audits it, and says so.
    fn set_state(&mut self, now: Instant, name: &str, state: State, message: String) {
        let epoch = self.setup.began_epoch_ms;
        let began = self.setup.began;
        let (project, run_id) = (self.setup.project.clone(), self.setup.run_id.clone());
        let svc = self.svc(name);
        if svc.state != state {
            svc.since = now;
        }
        svc.state = state;
        svc.last_message = message.clone();
        let record = ServiceStateRecord {
            project,
            service: name.to_string(),
            run_id: run_id.clone(),
            state: state.as_str().to_string(),
            ready: svc.ready,
            restarts: svc.restarts,
            main_pid: svc.main.map(|m| m.pid),
            last_exit: svc.last_exit.clone(),
            message: Some(message.clone()),
            since_ms: epoch + svc.since.saturating_duration_since(began).as_millis() as i64,
            updated_at_ms: 0,
            trigger: svc.trigger.clone(),
        };
        // How its last process ended, where the state says it ended.
        let ended = matches!(state, State::Restarting | State::Failed | State::Exited)
            .then_some(svc.main_status)
            .flatten();
        self.emit(Effect::Record(record));
        // A crash is a warning; a service that failed for good is an error.
        let priority = match state {
            State::Failed => Priority::Error,
            State::Restarting => Priority::Warning,
            _ => Priority::Info,
        };
        let mut fields = vec![
            ("CCSCOPE_STATE", state.as_str().to_string()),
            ("CCSCOPE_RUN_ID", run_id),
            ("CCSCOPE_REASON", message.clone()),
        ];
        if let Some(status) = ended {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => fields.push(("CCSCOPE_EXIT_CODE", code.to_string())),
                (None, Some(sig)) => {
                    fields.push(("CCSCOPE_SIGNAL", crate::proc::signal::signal_name(sig)))
                }
                _ => {}
            }
        }
        self.emit(Effect::Audit(AuditNote {
            event: crate::audit::events::of_state(state.as_str()),
            service: Some(name.to_string()),
            priority,
            message: format!("{name}: {} — {message}", state.as_str()),
            fields,
        }));
        self.say(now, ProgressEvent::State, Some(name), message);
    }

    fn release_acks(&mut self) {
        if self.inflight == 0 {
            for ack in std::mem::take(&mut self.waiting_acks) {
                self.emit(Effect::AckStandDown(ack));
            }
        }
    }

    fn finish(&mut self, finish: Finish) {
        self.disarm_all();
        self.finished = true;
        self.emit(Effect::Exit(finish));
    }

    /// After every input: a shutdown waiting for launches in flight begins once they are
    /// done; a stand-down ends once its stopper is gone (or, by signal, once all is empty).
    fn settle(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.drain_step(now);
        self.answer_settled(now);
        if self.phase == Phase::ShuttingDown && self.inflight == 0 && !self.stop_started {
            self.stop_started = true;
            self.emit(Effect::RunStop {
                force: self.force_pending,
            });
        }
        let all_gone = self.inflight == 0 && self.services.values().all(|s| s.scope.is_none());
        if self.phase == Phase::StoodDown
            && (self.stopper_gone || (self.stood_down_by_signal && all_gone))
        {
            self.finish(Finish::StoodDown);
        }
    }

    // ---- control ------------------------------------------------------------------------------

    fn stand_down(&mut self, now: Instant, ack: Option<u64>) {
        if let Some(ack) = ack {
            self.waiting_acks.push(ack);
        }
        if self.phase == Phase::ShuttingDown && self.stop_started {
            // Our own stop is already under way; let the stopper know once it can go on.
        } else if self.phase != Phase::StoodDown {
            self.phase = Phase::StoodDown;
            self.say(
                now,
                ProgressEvent::Stopping,
                None,
                "ccscope stop is stopping the stack: standing down".into(),
            );
            self.disarm_all();
            self.emit(Effect::RunState(RunState::Stopping));
        }
        self.release_acks();
    }

    fn signalled(&mut self, now: Instant, signal: SignalInput) {
        match self.phase {
            Phase::Starting | Phase::Up => self.begin_shutdown(now, signal.why()),
            Phase::ShuttingDown => {
                if self.force_pending {
                    return;
                }
                self.force_pending = true;
                self.say(
                    now,
                    ProgressEvent::Stopping,
                    None,
                    "second signal: killing at once".into(),
                );
                if self.stop_started {
                    self.emit(Effect::ForceStop);
                }
            }
            Phase::StoodDown => {}
        }
    }

    fn begin_shutdown(&mut self, now: Instant, why: &str) {
        if !self.running() {
            return;
        }
        self.phase = Phase::ShuttingDown;
        self.say(
            now,
            ProgressEvent::Stopping,
            None,
            format!("{why}: stopping the stack"),
        );
        self.disarm_all();
        self.emit(Effect::RunState(RunState::Stopping));
    }

    fn abort_start(&mut self, now: Instant, name: &str, why: String) {
        if self.abort.is_none() {
            self.abort = Some((name.to_string(), why.clone()));
            self.say(
                now,
                ProgressEvent::Error,
                Some(name),
                format!("the stack did not start: {why}"),
            );
        }
        self.begin_shutdown(now, "start failed");
    }

    // ---- starting -----------------------------------------------------------------------------

    /// Whether `name`'s dependencies meet their conditions.
    fn dependencies_met(&self, name: &str) -> bool {
        self.services[name]
            .cfg
            .depends_on
            .iter()
            .all(|(dep, condition)| {
                let Some(d) = self.services.get(dep) else {
                    return true;
                };
                if self.draining.contains_key(dep) {
                    return false; // being ended on request: wait for it to come back
                }
                if d.cfg.optional && d.state == State::Failed {
                    return true; // degraded, not blocking
                }
                match condition {
                    // A dependency that already ran to completion with exit code 0 was both.
                    _ if d.state == State::Exited && d.exited_ok => true,
                    DependencyCondition::Started => {
                        matches!(d.state, State::Starting | State::Running)
                    }
                    DependencyCondition::Healthy => d.state == State::Running && d.ready,
                    DependencyCondition::CompletedSuccessfully => false,
                }
            })
    }

    /// Starts every pending or waiting service whose dependencies are met, as one wave.
    fn start_eligible(&mut self, now: Instant) {
        if !self.running() {
            return;
        }
        let due: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Pending | State::Waiting) && !s.held)
            .map(|(n, _)| n.clone())
            .filter(|n| !self.draining.contains_key(n) && self.dependencies_met(n))
            .collect();
        if due.is_empty() {
            return;
        }
        if self.phase == Phase::Starting {
            self.order.push(due.clone());
        }
        for name in due {
            self.start_service(now, &name);
        }
    }

    fn start_service(&mut self, now: Instant, name: &str) {
        self.disarm(name);
        let svc = self.svc(name);
        svc.generation += 1;
        svc.reset_instance();
        let generation = svc.generation;
        let message = if svc.restarts == 0 {
            let argv = match &svc.cfg.launch {
                Launch::Command { argv } => argv.join(" "),
                Launch::Shell { script } => format!("/bin/sh -c {script}"),
                Launch::Docker(d) => format!("docker image {}", d.image),
            };
            format!("starting `{argv}`")
        } else {
            format!("restarting (restart {})", svc.restarts)
        };
        self.set_state(now, name, State::Launching, message);
        self.inflight += 1;
        self.emit(Effect::Launch {
            service: name.to_string(),
            generation,
        });
    }

    fn launched(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        outcome: Result<LaunchedInstance, String>,
    ) {
        if !self.services.contains_key(name) {
            return;
        }
        let instance = match outcome {
            Ok(instance) => instance,
            Err(why) => {
                if self.current(name, generation).is_none() {
                    return;
                }
                // A launch that cannot work now will not work on retry either: no restart.
                self.draining.remove(name);
                self.svc(name).last_exit = Some("not started".into());
                self.set_state(now, name, State::Failed, why.clone());
                self.service_down(now, name);
                if self.aborts_start(name) {
                    self.abort_start(now, name, why);
                } else {
                    // An optional service failed: what depends on it goes on without it.
                    self.start_eligible(now);
                    self.check_up(now);
                }
                return;
            }
        };
        for warning in instance.warnings {
            self.say(now, ProgressEvent::Warning, Some(name), warning);
        }
        let stale = self.current(name, generation).is_none();
        if stale {
            // A newer launch replaced it while it launched (cannot happen while launches of a
            // service are serialised; kept safe): end it at once.
            self.emit(Effect::End {
                service: name.to_string(),
                generation,
                graceful: false,
            });
            return;
        }
        let svc = self.svc(name);
        svc.scope = Some(instance.scope.clone());
        svc.main = Some(instance.main);
        if !self.running() {
            // Stood down or shutting down while it launched: it is stopped at once, by us as
            // well as by the stop flow, and its end is watched like any other.
            self.svc(name).after_stop = State::Stopped;
            self.set_state(
                now,
                name,
                State::Stopping,
                "launched while the stack stops".into(),
            );
            self.end(name, false);
            return;
        }
        if std::mem::take(&mut self.svc(name).end_when_launched) {
            let why = self
                .draining
                .get(name)
                .map_or_else(|| "asked to end".to_string(), |d| d.why.clone());
            self.set_state(now, name, State::Stopping, why);
            self.end(name, true);
            return;
        }
        if !self.dependencies_met(name) {
            // A dependency went down while it launched.
            self.svc(name).after_stop = State::Waiting;
            self.set_state(
                now,
                name,
                State::Stopping,
                "a dependency went down while it launched".into(),
            );
            self.end(name, true);
            return;
        }
        self.set_state(
            now,
            name,
            State::Starting,
            format!("pid {} in {}", instance.main.pid, instance.scope),
        );
        self.begin_readiness(now, name);
        // Dependents waiting only for it to be `started` may go now.
        self.start_eligible(now);
    }

    /// The readiness probe of the current instance, bounded by its start timeout.
    fn begin_readiness(&mut self, now: Instant, name: &str) {
        let svc = self.svc(name);
        let Some(probe) = svc.cfg.ready.clone() else {
            self.became_ready(now, name, "started (no readiness probe)".into());
            return;
        };
        if svc.adopted && !is_polled(&probe.check) {
            self.became_ready(
                now,
                name,
                "adopted back running (its notify or log probe passed in the earlier run)".into(),
            );
            return;
        }
        if svc.ready_early && matches!(probe.check, ProbeCheck::Notify) {
            self.became_ready(now, name, "notify READY=1 received".into());
            return;
        }
        svc.probe_began = Some(now);
        svc.probe_last = None;
        svc.probe_failures = 0;
        let deadline = now.checked_add(probe.start_timeout.0);
        if let Some(deadline) = deadline {
            self.arm(name, TimerKind::ReadinessDeadline, deadline);
        }
        if is_polled(&probe.check) {
            self.probe(name, ProbeKind::Readiness, probe);
        }
    }

    fn probe(&mut self, name: &str, kind: ProbeKind, probe: Probe) {
        let generation = self.services[name].generation;
        self.emit(Effect::Probe {
            service: name.to_string(),
            generation,
            kind,
            probe,
        });
    }

    fn probe_result(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        kind: ProbeKind,
        result: Result<(), String>,
    ) {
        if !self.running() {
            return;
        }
        match kind {
            ProbeKind::Readiness => {
                let Some(svc) = self.current_in(name, generation, State::Starting) else {
                    return;
                };
                let Some(probe) = svc.cfg.ready.clone() else {
                    return;
                };
                let what = describe_check(&probe.check);
                match result {
                    Ok(()) => {
                        let began = svc.probe_began.unwrap_or(now);
                        let ms = now.saturating_duration_since(began).as_millis();
                        self.became_ready(now, name, format!("{what} passed after {ms} ms"));
                    }
                    Err(why) => {
                        let svc = self.svc(name);
                        svc.probe_last = Some(why);
                        svc.probe_failures += 1;
                        let next = now + first_retries(probe.interval.0, svc.probe_failures);
                        let deadline = self
                            .timers
                            .get(&(name.to_string(), TimerKind::ReadinessDeadline))
                            .copied();
                        // The last try before the deadline: the deadline says why.
                        if deadline.is_none_or(|d| next < d) {
                            self.arm(name, TimerKind::ReadinessRetry, next);
                        }
                    }
                }
            }
            ProbeKind::Liveness => {
                let Some(svc) = self.current_in(name, generation, State::Running) else {
                    return;
                };
                let Some(probe) = svc.cfg.liveness.clone() else {
                    return;
                };
                self.liveness_outcome(now, name, &probe, result);
            }
        }
    }

    fn liveness_outcome(
        &mut self,
        now: Instant,
        name: &str,
        probe: &Probe,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => {
                self.svc(name).liveness_failures = 0;
                self.arm(name, TimerKind::LivenessTick, now + probe.interval.0);
            }
            Err(why) => {
                let svc = self.svc(name);
                svc.liveness_failures += 1;
                let failures = svc.liveness_failures;
                if failures >= probe.retries.max(1) {
                    let what = describe_check(&probe.check);
                    self.fail_instance(
                        now,
                        name,
                        format!(
                            "liveness probe failed: {what}: {failures} failures in a row, last: {why}"
                        ),
                    );
                } else {
                    self.arm(name, TimerKind::LivenessTick, now + probe.interval.0);
                }
            }
        }
    }

    fn timer_fired(&mut self, now: Instant, name: &str, kind: TimerKind) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        match kind {
            TimerKind::RestartDue => {
                if svc.state != State::Restarting || !self.running() {
                    return;
                }
                if self.dependencies_met(name) {
                    self.start_service(now, name);
                } else {
                    self.set_state(
                        now,
                        name,
                        State::Waiting,
                        "waiting for its dependencies".into(),
                    );
                    self.start_eligible(now);
                }
            }
            TimerKind::ReadinessRetry => {
                if svc.state != State::Starting || !self.running() {
                    return;
                }
                if let Some(probe) = svc.cfg.ready.clone() {
                    self.probe(name, ProbeKind::Readiness, probe);
                }
            }
            TimerKind::ReadinessDeadline => {
                if svc.state != State::Starting || !self.running() {
                    return;
                }
                let Some(probe) = svc.cfg.ready.as_ref() else {
                    return;
                };
                let what = describe_check(&probe.check);
                let why = match &svc.probe_last {
                    Some(last) => {
                        format!("{what} did not pass within {}: {last}", probe.start_timeout)
                    }
                    None => format!("{what} did not pass within {}", probe.start_timeout),
                };
                self.timers
                    .remove(&(name.to_string(), TimerKind::ReadinessRetry));
                self.ready_timeout(now, name, why);
            }
            TimerKind::LivenessTick => {
                if svc.state != State::Running || !self.running() {
                    return;
                }
                let Some(probe) = svc.cfg.liveness.clone() else {
                    return;
                };
                match &probe.check {
                    ProbeCheck::Notify => {
                        let since = now.saturating_duration_since(svc.last_watchdog);
                        let result = if since > probe.interval.0 {
                            Err(format!("no WATCHDOG=1 for {} ms", since.as_millis()))
                        } else {
                            Ok(())
                        };
                        self.liveness_outcome(now, name, &probe, result);
                    }
                    check if is_polled(check) => self.probe(name, ProbeKind::Liveness, probe),
                    _ => {} // a log pattern says nothing about liveness
                }
            }
        }
    }

    fn notified(&mut self, now: Instant, name: &str, generation: u64, note: Notification) {
        let running = self.running();
        let Some(svc) = self.current_mut(name, generation) else {
            return;
        };
        if note.watchdog {
            svc.last_watchdog = now;
        }
        if let Some(status) = &note.status {
            svc.status_text = Some(status.clone());
        }
        let waits_for_ready = svc.state == State::Starting
            && svc
                .cfg
                .ready
                .as_ref()
                .is_some_and(|p| matches!(p.check, ProbeCheck::Notify));
        if note.ready && svc.state == State::Launching {
            svc.ready_early = true;
        }
        if note.stopping {
            self.say(
                now,
                ProgressEvent::State,
                Some(name),
                "the service says it is stopping (STOPPING=1)".into(),
            );
        }
        if note.ready && waits_for_ready && running {
            self.became_ready(now, name, "notify READY=1 received".into());
        }
    }

    fn became_ready(&mut self, now: Instant, name: &str, how: String) {
        self.disarm(name);
        let svc = self.svc(name);
        svc.ready = true;
        svc.ready_at = Some(now);
        self.set_state(now, name, State::Running, format!("ready: {how}"));
        let svc = self.svc(name);
        if let Some(probe) = svc.cfg.liveness.clone() {
            svc.last_watchdog = now;
            svc.liveness_failures = 0;
            if !matches!(probe.check, ProbeCheck::Log { .. }) {
                self.arm(name, TimerKind::LivenessTick, now + probe.interval.0);
            }
        }
        self.start_eligible(now);
        self.check_up(now);
    }

    /// Once every selected service is up, the stack is ready.
    fn check_up(&mut self, now: Instant) {
        if self.phase != Phase::Starting {
            return;
        }
        let up = self.services.values().all(|s| {
            s.held
                || s.paused_from.is_some()
                || (s.state == State::Running && s.ready)
                || (s.state == State::Exited && s.exited_ok)
                || (s.cfg.optional && s.state == State::Failed)
        });
        if !up {
            return;
        }
        self.phase = Phase::Up;
        let failed: Vec<&str> = self
            .services
            .values()
            .filter(|s| s.state == State::Failed)
            .map(|s| s.name.as_str())
            .collect();
        let message = format!(
            "stack ready: {} service(s) in {} ms, started in order {}{}",
            self.services.len(),
            self.elapsed_ms(now),
            self.order_line(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; degraded: optional {} failed", failed.join(", "))
            }
        );
        self.emit(Effect::Audit(AuditNote {
            event: "run.ready",
            service: None,
            priority: Priority::Notice,
            message: message.clone(),
            fields: vec![("CCSCOPE_RUN_ID", self.setup.run_id.clone())],
        }));
        self.say(now, ProgressEvent::Ready, None, message);
        self.emit(Effect::StackUp);
    }

    fn ready_timeout(&mut self, now: Instant, name: &str, why: String) {
        if self.aborts_start(name) {
            self.abort_start(now, name, why.clone());
            self.set_state(now, name, State::Failed, why);
            return;
        }
        self.fail_instance(now, name, why);
    }

    // ---- ending and restarting ------------------------------------------------------------

    /// The current instance is to end as a failure: its stop signal, then a kill after its
    /// stop timeout; its end is handled when the scope is empty.
    fn fail_instance(&mut self, now: Instant, name: &str, why: String) {
        self.disarm(name);
        let svc = self.svc(name);
        if svc.failure.is_none() {
            svc.failure = Some(why.clone());
        }
        self.say(now, ProgressEvent::Warning, Some(name), why);
        self.end(name, true);
    }

    fn end(&mut self, name: &str, graceful: bool) {
        let svc = &self.services[name];
        if svc.scope.is_none() {
            return;
        }
        let generation = svc.generation;
        self.emit(Effect::End {
            service: name.to_string(),
            generation,
            graceful,
        });
    }

    fn main_exited(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        status: ExitStatus,
        others_left: usize,
    ) {
        let running = self.running();
        let Some(svc) = self.current_mut(name, generation) else {
            return;
        };
        svc.main_reaped = true;
        svc.main_status = Some(status);
        svc.last_exit = Some(describe_exit(status));
        let main = svc.main.filter(|_| running);
        let live = matches!(svc.state, State::Starting | State::Running) && running;
        if let Some(main) = main {
            self.emit(Effect::Unregister(main));
        }
        if live && !status.success() {
            self.fail_instance(
                now,
                name,
                format!("its main process ended with {}", describe_exit(status)),
            );
        } else if live && others_left > 0 {
            self.say(
                now,
                ProgressEvent::State,
                Some(name),
                format!("its main process exited 0; {others_left} process(es) it started run on in its scope"),
            );
        }
        self.maybe_ended(now, name);
    }

    /// Handles the end of an instance once both its scope is empty and its main process's
    /// status is in (either may come first).
    fn maybe_ended(&mut self, now: Instant, name: &str) {
        let running = self.running();
        let svc = self.svc(name);
        if !svc.emptied || !svc.main_reaped || svc.scope.is_none() {
            return;
        }
        svc.scope = None;
        svc.ready = false;
        let generation = svc.generation;
        self.disarm(name);
        self.emit(Effect::Forget {
            service: name.to_string(),
            generation,
            release: running,
        });
        if !running {
            // The stack is being stopped, by us or by `ccscope stop`: the stop flow releases
            // scopes, cleans the registry and reports; the supervisor keeps out of its way.
            self.svc(name).state = State::Stopped;
            return;
        }
        if let Some(drain) = self.draining.remove(name) {
            self.svc(name).failure = None;
            self.after_drain(now, name, drain);
            return;
        }
        let svc = self.svc(name);
        let status = svc.main_status;
        let failure = svc.failure.take().or_else(|| match status {
            Some(s) if !s.success() => {
                Some(format!("its main process ended with {}", describe_exit(s)))
            }
            None if svc.adopted => Some("its processes ended".into()),
            _ => None,
        });
        if svc.state == State::Stopping {
            let target = svc.after_stop;
            let message = match target {
                State::Waiting => "stopped; waiting for its dependencies".to_string(),
                _ => "stopped".to_string(),
            };
            self.set_state(now, name, target, message);
            self.start_eligible(now);
            return;
        }
        let ok = failure.is_none();
        let proven = STABLE_AFTER.max(svc.cfg.restart.max_backoff.0);
        if svc
            .ready_at
            .is_some_and(|t| now.saturating_duration_since(t) >= proven)
        {
            svc.attempt = 0;
        }
        let policy = svc.cfg.restart.clone();
        let wants_restart = match policy.policy {
            RestartMode::Always => true,
            RestartMode::OnFailure => !ok,
            RestartMode::No => false,
        };
        let how = failure.unwrap_or_else(|| "exited with exit code 0".into());
        if !wants_restart {
            svc.exited_ok = ok;
            let (state, message) = if ok {
                (State::Exited, "completed: exit code 0".to_string())
            } else {
                (State::Failed, format!("{how}; restart policy is `no`"))
            };
            self.set_state(now, name, state, message);
            if !ok {
                self.service_down(now, name);
                if self.aborts_start(name) {
                    self.abort_start(now, name, how);
                    return;
                }
            }
            self.start_eligible(now);
            self.check_up(now);
            return;
        }
        if svc.attempt >= policy.max_restarts {
            let message = format!(
                "{how}; gave up after {} restart(s) in a row (max_restarts = {})",
                svc.attempt, policy.max_restarts
            );
            self.set_state(now, name, State::Failed, message.clone());
            self.service_down(now, name);
            if self.aborts_start(name) {
                self.abort_start(now, name, message);
            } else {
                self.check_up(now);
            }
            return;
        }
        let attempt = svc.attempt;
        let jitter = self.jitter();
        let delay = backoff::delay(
            policy.initial_backoff.0,
            policy.max_backoff.0,
            attempt,
            jitter,
        );
        let svc = self.svc(name);
        svc.attempt += 1;
        svc.restarts += 1;
        self.arm(name, TimerKind::RestartDue, now + delay);
        self.set_state(
            now,
            name,
            State::Restarting,
            format!("{how}; restarting in {:.1} s", delay.as_secs_f64()),
        );
        self.service_down(now, name);
    }

    /// A service is down (restarting or failed): unless it is optional, what depends on it
    /// stops and waits for it to come back.
    fn service_down(&mut self, now: Instant, name: &str) {
        if self.services.get(name).is_none_or(|s| s.cfg.optional) {
            return;
        }
        let dependents: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.cfg.depends_on.contains_key(name))
            .map(|(n, _)| n.clone())
            .collect();
        for dep in dependents {
            match self.services[&dep].state {
                State::Starting | State::Running => {
                    self.disarm(&dep);
                    self.svc(&dep).after_stop = State::Waiting;
                    self.set_state(
                        now,
                        &dep,
                        State::Stopping,
                        format!("stopping: it depends on `{name}`, which is down"),
                    );
                    self.end(&dep, true);
                    self.service_down(now, &dep);
                }
                State::Restarting => {
                    self.disarm(&dep);
                    self.set_state(now, &dep, State::Waiting, format!("waiting for `{name}`"));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
