//! The supervisor behind `ccscope run`: plan → preflight → start → supervise → stop.
//!
//! One event loop on one thread owns every service's state; everything that waits (launches,
//! probes, cgroup `populated` changes, exit statuses, notify sockets, output taps, restart
//! timers) is a small local task that reports back with an [`Event`] carrying the service's
//! launch generation, so a report about an instance that has since been replaced is dropped.
//! Nothing polls a pid: an exit is a reaped status ([`reaper`]) and a cgroup going empty
//! (an inotify event on `cgroup.events`).

mod backoff;
pub mod detach;
pub mod lock;
pub mod notify;
pub mod probe;
pub mod progress;
pub mod reaper;
mod service;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::audit::{Event as AuditEvent, Priority};
use crate::config::{Config, DependencyCondition, Launch, RestartMode, graph};
use crate::contain::{AnyContainment, BackendKind, Containment, ScopeHandle, cgroup};
use crate::control;
use crate::launch::{LaunchError, LaunchSpec, Launched, OutputTarget, launch};
use crate::proc::ProcFs;
use crate::registry::{NewRun, ProcessFilter, Registry, RunState, ServiceStateRecord};
use crate::stop::{ShutdownReport, StopOptions};

use crate::proc::{describe_exit as describe, human_age, process_age};
pub use progress::{Progress, ProgressEvent, ServiceState};
use reaper::Reaper;
use service::{State, Svc};

/// Lines of each service's output kept for error reports.
const OUTPUT_KEPT: usize = 20;
/// A service ready for this long has proven itself: its restart backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What `run` was asked to do.
pub struct RunOptions {
    /// Start these services and what they depend on (all when empty).
    pub only: Vec<String>,
    /// Stop what an earlier run left behind instead of adopting it back.
    pub clean: bool,
    pub strict_limits: bool,
    pub launcher: PathBuf,
    pub state_dir: PathBuf,
}

/// How a run ended.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ended {
    /// Stopped by a signal (Ctrl-C, SIGTERM) after an orderly stop.
    Stopped { report: ShutdownReport },
    /// `ccscope stop` took over (the supervisor stood down).
    StoodDown,
    /// The stack did not come up; what had started was stopped.
    StartFailed {
        service: String,
        reason: String,
        last_output: Vec<String>,
        report: ShutdownReport,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    #[error("{message}")]
    Refused { message: String, hint: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{0}")]
    Io(String),
}

/// What the tasks tell the loop.
enum Event {
    Launched {
        service: String,
        generation: u64,
        result: Box<Result<Launched, LaunchError>>,
        /// Its registry record, made from the spec it was launched with.
        record: Option<crate::registry::NewProcess>,
        exit: Option<oneshot::Receiver<ExitStatus>>,
    },
    MainExited {
        service: String,
        generation: u64,
        status: ExitStatus,
    },
    Emptied {
        service: String,
        generation: u64,
    },
    Ready {
        service: String,
        generation: u64,
        how: String,
    },
    ReadyTimeout {
        service: String,
        generation: u64,
        why: String,
    },
    LivenessFailed {
        service: String,
        generation: u64,
        why: String,
    },
    StopDone {
        service: String,
        generation: u64,
    },
    RestartDue {
        service: String,
        generation: u64,
    },
    Notify {
        service: String,
        generation: u64,
        note: notify::Notification,
    },
    /// Some process was reaped (the process-group backend rechecks its groups).
    Reaped,
    StandDown {
        ack: Option<oneshot::Sender<()>>,
    },
    StopperGone,
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

/// Runs the stack of `config` until it is stopped. `progress` hears every state change.
pub async fn run(
    config: &Config,
    containment: AnyContainment,
    registry: &Registry,
    options: RunOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Ended, RunError> {
    let project = config.project.name.clone();
    let selected = select(config, &options.only)?;
    for name in &selected {
        if let Launch::Docker(_) = config.services[name].launch {
            return Err(RunError::Unsupported(format!(
                "service `{name}` is a docker service; ccscope run starts host commands only for now"
            )));
        }
    }
    let _lock = lock::acquire(&options.state_dir, &project)?;
    // Handled from here on: a Ctrl-C or a stand-down during preflight waits for the loop.
    let signals = Signals::listen()?;
    let control = control::listen(&options.state_dir, &project).map_err(|e| {
        RunError::Io(format!(
            "could not open the control socket: {}",
            crate::proc::describe_io(&e)
        ))
    })?;
    let reaper = Reaper::start().map_err(|e| {
        RunError::Io(format!(
            "could not become a subreaper: {}",
            crate::proc::describe_io(&e)
        ))
    })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        config,
        project: project.clone(),
        run_id: crate::registry::new_run_id(),
        containment: Rc::new(containment),
        registry,
        options,
        reaper,
        tx,
        services: BTreeMap::new(),
        selected: selected.clone(),
        phase: Phase::Starting,
        inflight: 0,
        waiting_acks: Vec::new(),
        began: Instant::now(),
        order: Vec::new(),
        abort: None,
        stopper_gone: false,
        progress,
    };
    let pgroup = sup.containment.kind() == BackendKind::Pgroup;
    if pgroup {
        let tx = sup.tx.clone();
        sup.reaper.on_reap(move || {
            let _ = tx.send(Event::Reaped);
        });
    }
    sup.preflight().await?;
    let me = ProcFs::default()
        .identity(std::process::id() as i32)
        .map_err(|e| RunError::Io(crate::proc::describe_io(&e)))?;
    registry.start_run(&NewRun {
        run_id: sup.run_id.clone(),
        project: project.clone(),
        supervisor: me,
        config_hash: Some(config_hash(config)),
    })?;
    let ended = sup.supervise(rx, control, signals).await;
    let _ = registry.set_run_state(&sup.run_id, RunState::Ended);
    ended
}

/// The services to run: all, or those of `--only` and their dependencies.
fn select(config: &Config, only: &[String]) -> Result<BTreeSet<String>, RunError> {
    if only.is_empty() {
        return Ok(config.services.keys().cloned().collect());
    }
    for name in only {
        if !config.services.contains_key(name) {
            let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
            return Err(RunError::Refused {
                message: format!("--only names `{name}`, which is not a service of this stack"),
                hint: format!("the services are: {}", known.join(", ")),
            });
        }
    }
    Ok(graph::with_dependencies(config, only))
}

/// A stable fingerprint of the stack definition: a later run with the same one may adopt
/// what an earlier one left running.
pub fn config_hash(config: &Config) -> String {
    let services = serde_json::to_vec(&config.services).unwrap_or_default();
    format!("{:016x}", control::fnv1a(&services))
}

/// The signals a supervisor handles: INT, TERM and HUP stop the stack; USR1 stands down.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals, RunError> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen =
            |kind| signal(kind).map_err(|e| RunError::Io(format!("could not handle signals: {e}")));
        Ok(Signals {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            usr1: listen(SignalKind::user_defined1())?,
        })
    }
}

struct Supervisor<'a> {
    config: &'a Config,
    project: String,
    run_id: String,
    containment: Rc<AnyContainment>,
    registry: &'a Registry,
    options: RunOptions,
    reaper: Reaper,
    tx: mpsc::UnboundedSender<Event>,
    services: BTreeMap<String, Svc>,
    selected: BTreeSet<String>,
    phase: Phase,
    /// Launches under way: a stand-down or a stop waits for them, so no scope appears after.
    inflight: usize,
    waiting_acks: Vec<oneshot::Sender<()>>,
    began: Instant,
    /// The services launched, in waves: `clickhouse → telemetry_collector → bridge_sync, dashboard`.
    order: Vec<Vec<String>>,
    /// Why the start failed: (service, reason).
    abort: Option<(String, String)>,
    /// The `ccscope stop` that made it stand down has finished.
    stopper_gone: bool,
    progress: &'a mut dyn FnMut(&Progress),
}

impl Supervisor<'_> {
    fn say(&mut self, event: ProgressEvent, service: Option<&str>, message: String) {
        let state = service.and_then(|s| self.services.get(s)).map(|s| s.state);
        let p = Progress {
            event,
            service: service.map(str::to_string),
            state: if event == ProgressEvent::State {
                state
            } else {
                None
            },
            message,
            elapsed_ms: self.began.elapsed().as_millis() as u64,
        };
        match event {
            ProgressEvent::Error | ProgressEvent::Warning => {
                tracing::debug!(service = p.service, "{}: {}", p.event.as_str(), p.message)
            }
            _ => tracing::debug!(service = p.service, "{}", p.message),
        }
        (self.progress)(&p);
    }

    /// Sets a service's state, records it, and says so.
    fn set_state(&mut self, name: &str, state: State, message: String) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.enter(state);
        let record = ServiceStateRecord {
            project: self.project.clone(),
            service: name.to_string(),
            run_id: self.run_id.clone(),
            state: state.as_str().to_string(),
            ready: svc.ready,
            restarts: svc.restarts,
            main_pid: svc.main.map(|m| m.pid),
            last_exit: svc.last_exit.clone(),
            message: Some(message.clone()),
            since_ms: svc.since_ms,
            updated_at_ms: 0,
        };
        if let Err(e) = self.registry.set_service_state(&record) {
            tracing::warn!("could not record the state of `{name}`: {e}");
        }
        let priority = match state {
            State::Failed => Priority::Error,
            State::Restarting => Priority::Warning,
            _ => Priority::Info,
        };
        AuditEvent {
            event: "service.state",
            project: &self.project,
            service: Some(name),
            message: format!("{name}: {} — {message}", state.as_str()),
            fields: vec![
                ("CCSCOPE_STATE", state.as_str().to_string()),
                ("CCSCOPE_RUN_ID", self.run_id.clone()),
            ],
        }
        .record(priority);
        self.say(ProgressEvent::State, Some(name), message);
    }

    // ---- preflight ------------------------------------------------------------------------

    async fn preflight(&mut self) -> Result<(), RunError> {
        let _ = self.registry.cleanup_stale(&ProcFs::default());
        let _ = self.registry.cleanup_stale_runs(&ProcFs::default());
        let mut running: Vec<(ScopeHandle, Vec<i32>)> = Vec::new();
        for scope in self
            .containment
            .list(&self.project)
            .await
            .unwrap_or_default()
        {
            let pids = self.containment.processes(&scope).await.unwrap_or_default();
            if pids.is_empty() {
                let _ = self.containment.release(&scope).await;
            } else {
                running.push((scope, pids));
            }
        }
        if !running.is_empty() {
            self.left_behind(running).await?;
        }
        self.check_ports()?;
        for name in self.selected.clone() {
            self.services
                .entry(name.clone())
                .or_insert_with(|| Svc::new(&name, &self.config.services[&name]));
        }
        Ok(())
    }

    /// Scopes an earlier run left populated: stopped with `--clean`, adopted back when the
    /// stack definition is unchanged, refused otherwise. Never duplicated.
    async fn left_behind(&mut self, running: Vec<(ScopeHandle, Vec<i32>)>) -> Result<(), RunError> {
        let names: Vec<String> = running.iter().map(|(s, _)| s.display_name()).collect();
        if self.options.clean {
            self.say(
                ProgressEvent::Warning,
                None,
                format!(
                    "--clean: stopping what an earlier run left: {}",
                    names.join(", ")
                ),
            );
            let report = crate::stop::stop(
                self.config,
                std::slice::from_ref(&*self.containment),
                self.registry,
                &StopOptions {
                    timeout: None,
                    force: false,
                    dry_run: false,
                },
            )
            .await?;
            if !report.survivors.is_empty() {
                return Err(RunError::Refused {
                    message: format!(
                        "--clean could not stop everything an earlier run left: {} process(es) survive",
                        report.survivors.len()
                    ),
                    hint: "see `ccscope stop` for the survivors".into(),
                });
            }
            return Ok(());
        }
        let same_config = self
            .registry
            .list_runs(Some(&self.project))?
            .into_iter()
            .find(|r| r.config_hash.is_some())
            .and_then(|r| r.config_hash)
            == Some(config_hash(self.config));
        let adoptable = same_config
            && self.containment.kind() != BackendKind::Pgroup
            && running
                .iter()
                .all(|(s, _)| s.instance.is_none() && self.selected.contains(&s.service));
        if !adoptable {
            let why = if !same_config {
                "the stack definition changed since (or no run recorded it)"
            } else if self.containment.kind() == BackendKind::Pgroup {
                "the process-group backend cannot watch processes it did not start"
            } else {
                "they are not services this run starts"
            };
            return Err(RunError::Refused {
                message: format!(
                    "an earlier run left services running, and they cannot be adopted back ({why}): {}",
                    names.join(", ")
                ),
                hint: "`ccscope run --clean` stops them first; `ccscope stop` stops them".into(),
            });
        }
        for (scope, pids) in running {
            let name = scope.service.clone();
            let mut svc = Svc::new(&name, &self.config.services[&name]);
            svc.generation = 1;
            svc.adopted = true;
            svc.scope = Some(scope.clone());
            svc.main = self
                .registry
                .list(ProcessFilter::Service {
                    project: &self.project,
                    service: &name,
                })?
                .first()
                .map(|r| r.identity());
            self.services.insert(name.clone(), svc);
            self.set_state(
                &name,
                State::Starting,
                format!(
                    "adopted back from an earlier run: {} process(es) in {}",
                    pids.len(),
                    scope.display_name()
                ),
            );
            self.order.push(vec![name.clone()]);
            self.watch(&name, None, None);
            self.probe_readiness(&name);
        }
        Ok(())
    }

    /// Every declared port of a service about to start must be free; a holder is named, and
    /// never touched.
    fn check_ports(&self) -> Result<(), RunError> {
        use crate::discover::classify::{self, Class};
        let proc_root = Path::new("/proc");
        let wanted: Vec<(&String, u16)> = self
            .selected
            .iter()
            // An adopted-back service's port is its own.
            .filter(|name| !self.services.contains_key(*name))
            .flat_map(|name| {
                self.config.services[name]
                    .ports
                    .iter()
                    .map(move |p| (name, *p))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let snapshot = crate::discover::scan::scan(proc_root);
        let mount = crate::contain::cgroup::v2_mount().ok().flatten();
        let classified = classify::classify(
            &snapshot,
            self.config,
            &classify::Scopes {
                scopes: &[],
                v2_mount: mount.as_deref(),
            },
        );
        let mut conflicts = Vec::new();
        let mut strays = Vec::new();
        for (name, port) in wanted {
            // The scan already joined the socket tables to the processes: no second walk.
            let Some((listener, holder)) = snapshot.tcp_holder(port) else {
                continue;
            };
            let Some(pid) = holder else {
                conflicts.push(format!(
                    "port {port} needed by {name} is held on {} by a process ccscope cannot see (another user's, or another namespace)",
                    listener.address
                ));
                continue;
            };
            let holder = snapshot.processes.get(&pid);
            let command = holder.map_or("?".to_string(), |p| p.command_line.clone());
            let age = holder
                .and_then(|p| process_age(p.start_time))
                .map(|s| format!(" {} ago", human_age(s)))
                .unwrap_or_default();
            let class = classified.iter().find(|c| c.pid == pid);
            let whose = match class.map(|c| c.class) {
                Some(Class::Stray) => {
                    strays.push(pid);
                    let origin = match holder.and_then(|p| p.markers.as_ref()) {
                        Some(_) => "left by an earlier run",
                        None => "started by hand",
                    };
                    format!("{origin}{age}, stray of this project")
                }
                _ => format!("started{age}, not this project's: ccscope leaves it alone"),
            };
            conflicts.push(format!(
                "port {port} needed by {name} is held on {} by pid {pid} (`{command}`, {whose})",
                listener.address
            ));
        }
        if conflicts.is_empty() {
            return Ok(());
        }
        let hint = if strays.is_empty() {
            "stop that process, or change the port in the stack definition".to_string()
        } else {
            let pids: Vec<String> = strays.iter().map(i32::to_string).collect();
            format!("`ccscope adopt {}` or `ccscope stop`", pids.join(" "))
        };
        Err(RunError::Refused {
            message: conflicts.join("; "),
            hint,
        })
    }

    // ---- the loop ---------------------------------------------------------------------------

    async fn supervise(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        control: tokio::net::UnixListener,
        signals: Signals,
    ) -> Result<Ended, RunError> {
        let Signals {
            mut int,
            mut term,
            mut hup,
            mut usr1,
        } = signals;
        let plan = self.plan_line();
        self.say(ProgressEvent::Plan, None, format!("start order: {plan}"));
        self.start_eligible();
        self.check_up();
        let mut stood_down_by_signal = false;
        loop {
            if let Some(result) = self.finished(stood_down_by_signal) {
                return result;
            }
            if self.phase == Phase::ShuttingDown && self.inflight == 0 {
                return self.shut_down(&mut [&mut int, &mut term, &mut hup]).await;
            }
            let event = tokio::select! {
                Some(event) = rx.recv() => event,
                _ = int.recv() => { self.begin_shutdown("interrupted (Ctrl-C)"); continue; }
                _ = term.recv() => { self.begin_shutdown("SIGTERM"); continue; }
                _ = hup.recv() => { self.begin_shutdown("SIGHUP"); continue; }
                _ = usr1.recv() => { stood_down_by_signal = true; Event::StandDown { ack: None } }
                Ok((stream, _)) = control.accept() => { self.serve_control(stream); continue; }
            };
            self.handle(event).await;
        }
    }

    /// Whether the loop is done: a stand-down by signal ends once every scope is empty.
    fn finished(&mut self, stood_down_by_signal: bool) -> Option<Result<Ended, RunError>> {
        let all_gone = self.inflight == 0 && self.services.values().all(|s| s.scope.is_none());
        if self.phase == Phase::StoodDown
            && (self.stopper_gone || (stood_down_by_signal && all_gone))
        {
            return Some(Ok(Ended::StoodDown));
        }
        None
    }

    fn plan_line(&self) -> String {
        graph::start_layers(self.config)
            .into_iter()
            .map(|layer| {
                layer
                    .into_iter()
                    .filter(|s| self.selected.contains(s))
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.is_empty())
            .map(|l| l.join(", "))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    fn serve_control(&mut self, stream: tokio::net::UnixStream) {
        let tx = self.tx.clone();
        let me = crate::proc::sys::euid();
        tokio::task::spawn_local(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == me || c.uid() == 0);
            if !allowed {
                return;
            }
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else {
                return;
            };
            if line.trim() != control::STAND_DOWN {
                let _ = write.write_all(b"error unknown request\n").await;
                return;
            }
            let (ack, acked) = oneshot::channel();
            if tx.send(Event::StandDown { ack: Some(ack) }).is_err() || acked.await.is_err() {
                return;
            }
            let answer = format!("ok {}\n", std::process::id());
            if write.write_all(answer.as_bytes()).await.is_err() {
                let _ = tx.send(Event::StopperGone);
                return;
            }
            // The stopper holds the connection while it stops the stack.
            while let Ok(Some(_)) = lines.next_line().await {}
            let _ = tx.send(Event::StopperGone);
        });
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Launched {
                service,
                generation,
                result,
                record,
                exit,
            } => {
                self.inflight -= 1;
                self.launched(&service, generation, *result, record, exit);
                self.release_acks();
            }
            Event::MainExited {
                service,
                generation,
                status,
            } => self.main_exited(&service, generation, status).await,
            Event::Emptied {
                service,
                generation,
            } => {
                if self.current(&service, generation) {
                    if let Some(svc) = self.services.get_mut(&service) {
                        svc.emptied = true;
                    }
                    self.maybe_ended(&service).await;
                }
            }
            Event::Reaped => self.recheck_groups().await,
            Event::Ready {
                service,
                generation,
                how,
            } => {
                if self.current_in(&service, generation, State::Starting) {
                    self.became_ready(&service, how);
                }
            }
            Event::ReadyTimeout {
                service,
                generation,
                why,
            } => {
                if self.current_in(&service, generation, State::Starting) {
                    self.ready_timeout(&service, why);
                }
            }
            Event::LivenessFailed {
                service,
                generation,
                why,
            } => {
                if self.current_in(&service, generation, State::Running) {
                    self.fail_instance(&service, format!("liveness probe failed: {why}"));
                }
            }
            Event::StopDone {
                service,
                generation,
            } => {
                if self.current(&service, generation) {
                    self.maybe_ended(&service).await;
                }
            }
            Event::RestartDue {
                service,
                generation,
            } => {
                if self.current_in(&service, generation, State::Restarting)
                    && matches!(self.phase, Phase::Starting | Phase::Up)
                {
                    if self.dependencies_met(&service) {
                        self.start_service(&service);
                    } else {
                        self.set_state(
                            &service,
                            State::Waiting,
                            "waiting for its dependencies".into(),
                        );
                        self.start_eligible();
                    }
                }
            }
            Event::Notify {
                service,
                generation,
                note,
            } => self.notified(&service, generation, note),
            Event::StandDown { ack } => {
                if let Some(ack) = ack {
                    self.waiting_acks.push(ack);
                }
                if self.phase != Phase::StoodDown {
                    self.phase = Phase::StoodDown;
                    self.say(
                        ProgressEvent::Stopping,
                        None,
                        "ccscope stop is stopping the stack: standing down".into(),
                    );
                    self.cancel_all_tasks();
                    let _ = self
                        .registry
                        .set_run_state(&self.run_id, RunState::Stopping);
                }
                self.release_acks();
            }
            Event::StopperGone => {
                // The stop that took over is done, or died half-way: only an empty stack lets
                // the supervisor go; otherwise it finishes the stop itself.
                let mut left = 0;
                for svc in self.services.values() {
                    if let Some(scope) = &svc.scope {
                        left += self
                            .containment
                            .processes(scope)
                            .await
                            .map_or(0, |p| p.len());
                    }
                }
                if left == 0 {
                    self.stopper_gone = true;
                } else {
                    self.say(ProgressEvent::Warning,
                        None,
                        format!("the stop that took over ended with {left} process(es) still running: stopping the stack"),
                    );
                    self.phase = Phase::ShuttingDown;
                }
            }
        }
    }

    fn current(&self, service: &str, generation: u64) -> bool {
        self.services
            .get(service)
            .is_some_and(|s| s.generation == generation)
    }

    /// Whether a report is about the current instance, and it is still in `state`.
    fn current_in(&self, service: &str, generation: u64, state: State) -> bool {
        self.services
            .get(service)
            .is_some_and(|s| s.generation == generation && s.state == state)
    }

    fn release_acks(&mut self) {
        if self.inflight == 0 {
            for ack in self.waiting_acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    fn cancel_all_tasks(&mut self) {
        for svc in self.services.values_mut() {
            svc.cancel_tasks();
        }
    }

    fn begin_shutdown(&mut self, why: &str) {
        match self.phase {
            Phase::ShuttingDown | Phase::StoodDown => return,
            Phase::Starting | Phase::Up => {}
        }
        self.phase = Phase::ShuttingDown;
        self.say(
            ProgressEvent::Stopping,
            None,
            format!("{why}: stopping the stack"),
        );
        self.cancel_all_tasks();
        let _ = self
            .registry
            .set_run_state(&self.run_id, RunState::Stopping);
    }

    /// The stop flow, run by the supervisor itself. A second Ctrl-C or SIGTERM forces it.
    async fn shut_down(
        &mut self,
        signals: &mut [&mut tokio::signal::unix::Signal],
    ) -> Result<Ended, RunError> {
        let containment = self.containment.clone();
        let backends = std::slice::from_ref(&*containment);
        let graceful = StopOptions {
            timeout: None,
            force: false,
            dry_run: false,
        };
        let report = {
            let stopping = crate::stop::stop(self.config, backends, self.registry, &graceful);
            tokio::pin!(stopping);
            let [int, term, hup] = signals else {
                unreachable!("three signals are passed");
            };
            let forced = tokio::select! {
                report = &mut stopping => Some(report),
                _ = int.recv() => None,
                _ = term.recv() => None,
                _ = hup.recv() => None,
            };
            match forced {
                Some(report) => report?,
                None => {
                    self.say(
                        ProgressEvent::Stopping,
                        None,
                        "second signal: killing at once".into(),
                    );
                    let force = StopOptions {
                        force: true,
                        ..graceful
                    };
                    crate::stop::stop(self.config, backends, self.registry, &force).await?
                }
            }
        };
        let _ = self.registry.clear_service_states(&self.project);
        self.say(
            ProgressEvent::Stopped,
            None,
            format!(
                "stopped: {:?}, {} survivor(s), {} ms",
                report.outcome,
                report.survivors.len(),
                report.elapsed_ms
            ),
        );
        Ok(match self.abort.take() {
            Some((service, reason)) => Ended::StartFailed {
                last_output: self
                    .services
                    .get(&service)
                    .map(|s| s.output.borrow().iter().cloned().collect())
                    .unwrap_or_default(),
                service,
                reason,
                report,
            },
            None => Ended::Stopped { report },
        })
    }

    // ---- starting ---------------------------------------------------------------------------

    /// Whether `name`'s dependencies meet their conditions.
    fn dependencies_met(&self, name: &str) -> bool {
        self.config.services[name]
            .depends_on
            .iter()
            .all(|(dep, condition)| {
                let Some(d) = self.services.get(dep) else {
                    return true;
                };
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
                    DependencyCondition::CompletedSuccessfully => {
                        d.state == State::Exited && d.exited_ok
                    }
                }
            })
    }

    /// Starts every pending or waiting service whose dependencies are met, as one wave.
    fn start_eligible(&mut self) {
        if !matches!(self.phase, Phase::Starting | Phase::Up) {
            return;
        }
        let due: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Pending | State::Waiting))
            .map(|(n, _)| n.clone())
            .filter(|n| self.dependencies_met(n))
            .collect();
        if due.is_empty() {
            return;
        }
        if self.phase == Phase::Starting {
            self.order.push(due.clone());
        }
        for name in due {
            self.start_service(&name);
        }
    }

    fn start_service(&mut self, name: &str) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.cancel_tasks();
        svc.generation += 1;
        svc.reset_instance();
        let generation = svc.generation;
        let cfg = svc.cfg.clone();
        let uses_notify = [cfg.ready.as_ref(), cfg.liveness.as_ref()]
            .into_iter()
            .flatten()
            .any(|p| matches!(p.check, crate::config::ProbeCheck::Notify));
        let mut env = cfg.env.clone();
        if uses_notify {
            match notify::bind(&self.run_id, name, generation) {
                Ok(socket) => {
                    env.insert("NOTIFY_SOCKET".into(), socket.address.clone());
                    if let Some(l) = cfg
                        .liveness
                        .as_ref()
                        .filter(|l| matches!(l.check, crate::config::ProbeCheck::Notify))
                    {
                        env.insert("WATCHDOG_USEC".into(), l.interval.0.as_micros().to_string());
                    }
                    self.listen_notify(name, generation, socket);
                }
                Err(e) => self.say(
                    ProgressEvent::Warning,
                    Some(name),
                    format!(
                        "could not open its notify socket: {}",
                        crate::proc::describe_io(&e)
                    ),
                ),
            }
        }
        let argv = match &cfg.launch {
            Launch::Command { argv } => argv.clone(),
            Launch::Shell { script } => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            Launch::Docker(_) => unreachable!("refused before the start"),
        };
        let spec = LaunchSpec {
            project: self.project.clone(),
            service: name.to_string(),
            instance: None,
            run_id: self.run_id.clone(),
            argv,
            env,
            env_files: cfg.env_files.clone(),
            cwd: cfg.cwd.clone(),
            limits: cfg.limits.clone(),
            output: OutputTarget::for_service(&self.options.state_dir, &self.project, name),
            inherit_stdin: false,
            own_process_group: true,
            strict_limits: self.options.strict_limits,
            launcher: self.options.launcher.clone(),
            tap: true,
        };
        let restarts = self.services[name].restarts;
        let message = if restarts == 0 {
            format!("starting `{}`", spec.argv.join(" "))
        } else {
            format!("restarting (restart {restarts})")
        };
        self.set_state(name, State::Launching, message);
        self.inflight += 1;
        let containment = self.containment.clone();
        let reaper = self.reaper.clone();
        let tx = self.tx.clone();
        let service = name.to_string();
        let ports = cfg.ports.clone();
        tokio::task::spawn_local(async move {
            let mark = reaper.mark();
            let result = launch(&containment, &spec).await;
            let exit = result
                .as_ref()
                .ok()
                .map(|l| reaper.claim(l.identity.pid, mark));
            let record = result.as_ref().ok().map(|l| l.record(&spec, ports));
            let _ = tx.send(Event::Launched {
                service,
                generation,
                result: Box::new(result),
                record,
                exit,
            });
        });
    }

    fn launched(
        &mut self,
        name: &str,
        generation: u64,
        result: Result<Launched, LaunchError>,
        record: Option<crate::registry::NewProcess>,
        exit: Option<oneshot::Receiver<ExitStatus>>,
    ) {
        let launched = match result {
            Ok(l) => l,
            Err(e) => {
                let mut why = e.to_string();
                if let Some(hint) = e.hint() {
                    why.push_str(&format!(" ({hint})"));
                }
                // A launch that cannot work now will not work on retry either: no restart.
                if let Some(svc) = self.services.get_mut(name) {
                    svc.last_exit = Some("not started".into());
                }
                self.set_state(name, State::Failed, why.clone());
                self.service_down(name);
                if self.phase == Phase::Starting && !self.services[name].cfg.optional {
                    self.abort_start(name, why);
                }
                return;
            }
        };
        for limit in &launched.limits.unenforceable {
            self.say(
                ProgressEvent::Warning,
                Some(name),
                format!(
                    "the {} limit is not enforced: {}",
                    limit.limit, limit.reason
                ),
            );
        }
        if let Some(Err(e)) = record.as_ref().map(|r| self.registry.register(r)) {
            self.say(
                ProgressEvent::Warning,
                Some(name),
                format!("could not register its process: {e}"),
            );
        }
        let Launched {
            identity,
            scope,
            tap,
            ..
        } = launched;
        let stale = !self.current(name, generation);
        let svc = self
            .services
            .get_mut(name)
            .expect("launched services exist");
        svc.scope = Some(scope.clone());
        svc.main = Some(identity);
        svc.launched_at = Some(Instant::now());
        if stale || !matches!(self.phase, Phase::Starting | Phase::Up) {
            // Stood down or shutting down while it launched: it is stopped at once, by us as
            // well as by the stop flow, and its end is watched like any other.
            svc.after_stop = State::Stopped;
            self.set_state(
                name,
                State::Stopping,
                "launched while the stack stops".into(),
            );
            self.watch(name, exit, tap);
            self.kill_scope(name);
            return;
        }
        if !self.dependencies_met(name) {
            // A dependency went down while it launched.
            let svc = self
                .services
                .get_mut(name)
                .expect("launched services exist");
            svc.after_stop = State::Waiting;
            self.set_state(
                name,
                State::Stopping,
                "a dependency went down while it launched".into(),
            );
            self.watch(name, exit, tap);
            self.stop_scope(name);
            return;
        }
        self.set_state(
            name,
            State::Starting,
            format!("pid {} in {}", identity.pid, scope.display_name()),
        );
        self.watch(name, exit, tap);
        self.probe_readiness(name);
        // Dependents waiting only for it to be `started` may go now.
        self.start_eligible();
    }

    /// Starts the tasks that report an instance's end: its main process's exit status, its
    /// cgroup going empty, and its output lines.
    fn watch(
        &mut self,
        name: &str,
        exit: Option<oneshot::Receiver<ExitStatus>>,
        tap: Option<std::os::fd::OwnedFd>,
    ) {
        let svc = self.services.get_mut(name).expect("watched services exist");
        let generation = svc.generation;
        if let Some(exit) = exit {
            let tx = self.tx.clone();
            let service = name.to_string();
            // Not cancelled with the other tasks: the status must be collected whatever happens.
            tokio::task::spawn_local(async move {
                if let Ok(status) = exit.await {
                    let _ = tx.send(Event::MainExited {
                        service,
                        generation,
                        status,
                    });
                }
            });
        } else {
            svc.main_reaped = true; // not our child: nothing to wait for
        }
        if let Some(path) = svc.scope.as_ref().and_then(|s| s.cgroup.clone()) {
            let tx = self.tx.clone();
            let service = name.to_string();
            let task = tokio::task::spawn_local(async move {
                let cg = cgroup::Cgroup::at(path);
                // Without an inotify instance to spare, it looks once a second.
                if let Err(e) = cg.until_empty(Duration::from_secs(1)).await {
                    tracing::warn!("watching the cgroup of `{service}` failed: {e}");
                }
                let _ = tx.send(Event::Emptied {
                    service,
                    generation,
                });
            });
            svc.watchers.push(task.abort_handle());
        }
        if let Some(tap) = tap {
            let output = svc.output.clone();
            let pattern = svc.cfg.ready.as_ref().and_then(|p| match &p.check {
                crate::config::ProbeCheck::Log { pattern } => regex::Regex::new(pattern).ok(),
                _ => None,
            });
            let tx = self.tx.clone();
            let service = name.to_string();
            // Not cancelled: it ends at EOF, once the forwarder passed on the last line.
            tokio::task::spawn_local(read_tap(tap, output, pattern, tx, service, generation));
        }
    }

    /// Starts the readiness probe of the current instance, bounded by its start timeout.
    fn probe_readiness(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("probed services exist");
        let generation = svc.generation;
        let tx = self.tx.clone();
        let service = name.to_string();
        let Some(probe) = svc.cfg.ready.clone() else {
            let _ = tx.send(Event::Ready {
                service,
                generation,
                how: "started (no readiness probe)".into(),
            });
            return;
        };
        if svc.adopted && !probe::is_polled(&probe.check) {
            let _ = tx.send(Event::Ready {
                service,
                generation,
                how: "adopted back running (its notify or log probe passed in the earlier run)"
                    .into(),
            });
            return;
        }
        let reaper = self.reaper.clone();
        let task = tokio::task::spawn_local(async move {
            let what = probe::describe_check(&probe.check);
            let deadline = tokio::time::Instant::now()
                .checked_add(probe.start_timeout.0)
                .unwrap_or_else(far_future);
            if !probe::is_polled(&probe.check) {
                tokio::time::sleep_until(deadline).await;
                let _ = tx.send(Event::ReadyTimeout {
                    service,
                    generation,
                    why: format!("{what} did not pass within {}", probe.start_timeout),
                });
                return;
            }
            let began = Instant::now();
            loop {
                let last = match probe::attempt(&probe.check, probe.timeout.0, &reaper).await {
                    Ok(()) => {
                        let _ = tx.send(Event::Ready {
                            service,
                            generation,
                            how: format!("{what} passed after {} ms", began.elapsed().as_millis()),
                        });
                        return;
                    }
                    Err(why) => why,
                };
                let next = tokio::time::Instant::now() + probe.interval.0;
                if next >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    let _ = tx.send(Event::ReadyTimeout {
                        service,
                        generation,
                        why: format!("{what} did not pass within {}: {last}", probe.start_timeout),
                    });
                    return;
                }
                tokio::time::sleep_until(next).await;
            }
        });
        svc.tasks.push(task.abort_handle());
    }

    fn listen_notify(&mut self, name: &str, generation: u64, socket: notify::NotifySocket) {
        let tx = self.tx.clone();
        let service = name.to_string();
        let task = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.socket.recv(&mut buf).await {
                let note = notify::parse(&buf[..n]);
                if tx
                    .send(Event::Notify {
                        service: service.clone(),
                        generation,
                        note,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        if let Some(svc) = self.services.get_mut(name) {
            svc.watchers.push(task.abort_handle());
        }
    }

    fn notified(&mut self, name: &str, generation: u64, note: notify::Notification) {
        if !self.current(name, generation) {
            return;
        }
        let svc = self.services.get_mut(name).expect("current services exist");
        if note.watchdog {
            svc.last_watchdog.set(Instant::now());
        }
        if let Some(status) = &note.status {
            svc.status_text = Some(status.clone());
            tracing::debug!(service = name, "STATUS={status}");
        }
        let waits_for_ready = svc.state == State::Starting
            && svc
                .cfg
                .ready
                .as_ref()
                .is_some_and(|p| matches!(p.check, crate::config::ProbeCheck::Notify));
        if note.stopping {
            self.say(
                ProgressEvent::State,
                Some(name),
                "the service says it is stopping (STOPPING=1)".into(),
            );
        }
        if note.ready && waits_for_ready {
            self.became_ready(name, "notify READY=1 received".into());
        }
    }

    fn became_ready(&mut self, name: &str, how: String) {
        let svc = self.services.get_mut(name).expect("ready services exist");
        svc.cancel_tasks();
        svc.ready = true;
        svc.ready_at = Some(Instant::now());
        self.set_state(name, State::Running, format!("ready: {how}"));
        self.probe_liveness(name);
        self.start_eligible();
        self.check_up();
    }

    fn probe_liveness(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("probed services exist");
        let Some(probe) = svc.cfg.liveness.clone() else {
            return;
        };
        let generation = svc.generation;
        let tx = self.tx.clone();
        let service = name.to_string();
        let reaper = self.reaper.clone();
        let last_watchdog = svc.last_watchdog.clone();
        last_watchdog.set(Instant::now());
        let task = tokio::task::spawn_local(async move {
            let what = probe::describe_check(&probe.check);
            let mut failures = 0;
            loop {
                tokio::time::sleep(probe.interval.0).await;
                let result = match &probe.check {
                    crate::config::ProbeCheck::Notify => {
                        let since = last_watchdog.get().elapsed();
                        if since > probe.interval.0 {
                            Err(format!("no WATCHDOG=1 for {} ms", since.as_millis()))
                        } else {
                            Ok(())
                        }
                    }
                    check if probe::is_polled(check) => {
                        probe::attempt(check, probe.timeout.0, &reaper).await
                    }
                    _ => return, // a log pattern says nothing about liveness
                };
                match result {
                    Ok(()) => failures = 0,
                    Err(why) => {
                        failures += 1;
                        if failures >= probe.retries.max(1) {
                            let _ = tx.send(Event::LivenessFailed {
                                service,
                                generation,
                                why: format!("{what}: {failures} failures in a row, last: {why}"),
                            });
                            return;
                        }
                    }
                }
            }
        });
        svc.tasks.push(task.abort_handle());
    }

    /// Once every selected service is up, the stack is ready.
    fn check_up(&mut self) {
        if self.phase != Phase::Starting {
            return;
        }
        let up = self.services.values().all(|s| {
            (s.state == State::Running && s.ready)
                || (s.state == State::Exited && s.exited_ok)
                || (s.cfg.optional && s.state == State::Failed)
        });
        if !up {
            return;
        }
        self.phase = Phase::Up;
        let order = self
            .order
            .iter()
            .map(|wave| wave.join(", "))
            .collect::<Vec<_>>()
            .join(" → ");
        let failed: Vec<&str> = self
            .services
            .values()
            .filter(|s| s.state == State::Failed)
            .map(|s| s.name.as_str())
            .collect();
        let message = format!(
            "stack ready: {} service(s) in {} ms, started in order {order}{}",
            self.services.len(),
            self.began.elapsed().as_millis(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; degraded: optional {} failed", failed.join(", "))
            }
        );
        AuditEvent {
            event: "run.ready",
            project: &self.project,
            service: None,
            message: message.clone(),
            fields: vec![("CCSCOPE_RUN_ID", self.run_id.clone())],
        }
        .record(Priority::Notice);
        self.say(ProgressEvent::Ready, None, message);
        // Starting is over: the code that parsed, planned and launched need not stay resident.
        crate::proc::sys::trim_own_code();
    }

    fn ready_timeout(&mut self, name: &str, why: String) {
        if self.phase == Phase::Starting && !self.services[name].cfg.optional {
            self.abort_start(name, why.clone());
            self.set_state(name, State::Failed, why);
            return;
        }
        self.fail_instance(name, why);
    }

    fn abort_start(&mut self, name: &str, why: String) {
        if self.abort.is_none() {
            self.abort = Some((name.to_string(), why.clone()));
            self.say(
                ProgressEvent::Error,
                Some(name),
                format!("the stack did not start: {why}"),
            );
        }
        self.begin_shutdown("start failed");
    }

    // ---- ending and restarting --------------------------------------------------------------

    /// The current instance is to end as a failure: kill its scope; its end is handled when
    /// the scope is empty.
    fn fail_instance(&mut self, name: &str, why: String) {
        let svc = self.services.get_mut(name).expect("failed services exist");
        if svc.failure.is_none() {
            svc.failure = Some(why.clone());
        }
        svc.cancel_tasks();
        self.say(ProgressEvent::Warning, Some(name), why);
        // Its stop signal first (the output forwarder outlives it and passes on the last
        // lines), a kill after its stop timeout.
        self.stop_scope(name);
    }

    fn kill_scope(&mut self, name: &str) {
        self.end_scope(name, false);
    }

    async fn main_exited(&mut self, name: &str, generation: u64, status: ExitStatus) {
        if !self.current(name, generation) {
            return;
        }
        let svc = self.services.get_mut(name).expect("current services exist");
        svc.main_reaped = true;
        svc.main_status = Some(status);
        svc.last_exit = Some(describe(status));
        if let Some(main) = svc
            .main
            .filter(|_| matches!(self.phase, Phase::Starting | Phase::Up))
        {
            let _ = self.registry.unregister(main);
        }
        let running = matches!(svc.state, State::Starting | State::Running)
            && matches!(self.phase, Phase::Starting | Phase::Up);
        if running && !status.success() {
            self.fail_instance(
                name,
                format!("its main process ended with {}", describe(status)),
            );
        } else if running {
            let left = match &self.services[name].scope {
                Some(scope) => self.containment.processes(scope).await.map_or(0, |p| {
                    p.into_iter().filter(|pid| !is_forwarder(*pid)).count()
                }),
                None => 0,
            };
            if left > 0 {
                self.say(ProgressEvent::State,
                    Some(name),
                    format!("its main process exited 0; {left} process(es) it started run on in its scope"),
                );
            }
        }
        self.maybe_ended(name).await;
    }

    /// The process-group backend has no cgroup events: each reaped orphan is its cue to look.
    async fn recheck_groups(&mut self) {
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.scope.is_some() && !s.emptied)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let scope = self.services[&name]
                .scope
                .clone()
                .expect("filtered on scope");
            if self
                .containment
                .processes(&scope)
                .await
                .is_ok_and(|p| p.is_empty())
            {
                if let Some(svc) = self.services.get_mut(&name) {
                    svc.emptied = true;
                }
                self.maybe_ended(&name).await;
            }
        }
    }

    /// Handles the end of an instance once both its scope is empty and its main process's
    /// status is in (either may come first).
    async fn maybe_ended(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("ended services exist");
        if !svc.emptied || !svc.main_reaped || svc.scope.is_none() {
            return;
        }
        let scope = svc.scope.take().expect("checked above");
        svc.cancel_tasks();
        svc.cancel_watchers();
        svc.ready = false;
        if !matches!(self.phase, Phase::Starting | Phase::Up) {
            // The stack is being stopped, by us or by `ccscope stop`: the stop flow releases
            // scopes, cleans the registry and reports; the supervisor keeps out of its way
            // (and off the CPU it needs).
            svc.enter(State::Stopped);
            return;
        }
        // Free the name (systemd) or the directory (cgroupfs) for the next instance.
        let _ = self.containment.release(&scope).await;
        for record in self
            .registry
            .list(ProcessFilter::Service {
                project: &self.project,
                service: name,
            })
            .unwrap_or_default()
        {
            let _ = self.registry.unregister(record.identity());
        }
        let svc = self.services.get_mut(name).expect("ended services exist");
        let status = svc.main_status;
        let failure = svc.failure.take().or_else(|| match status {
            Some(s) if !s.success() => Some(format!("its main process ended with {}", describe(s))),
            None if svc.adopted => Some("its processes ended".into()),
            _ => None,
        });
        if svc.state == State::Stopping {
            let target = svc.after_stop;
            let message = match target {
                State::Waiting => "stopped; waiting for its dependencies".to_string(),
                _ => "stopped".to_string(),
            };
            self.set_state(name, target, message);
            self.start_eligible();
            return;
        }
        if !matches!(self.phase, Phase::Starting | Phase::Up) {
            self.set_state(name, State::Stopped, "ended while the stack stops".into());
            return;
        }
        let ok = failure.is_none();
        let stable = svc
            .ready_at
            .is_some_and(|t| t.elapsed() >= STABLE_AFTER.max(svc.cfg.restart.max_backoff.0));
        if stable {
            svc.attempt = 0;
        }
        let policy = &svc.cfg.restart;
        let wants_restart = match policy.policy {
            RestartMode::Always => true,
            RestartMode::OnFailure => !ok,
            RestartMode::No => false,
        };
        let how = failure
            .clone()
            .unwrap_or_else(|| "exited with exit code 0".into());
        if !wants_restart {
            svc.exited_ok = ok;
            let (state, message) = if ok {
                (State::Exited, "completed: exit code 0".to_string())
            } else {
                (State::Failed, format!("{how}; restart policy is `no`"))
            };
            self.set_state(name, state, message);
            if !ok {
                self.service_down(name);
                if self.phase == Phase::Starting && !self.services[name].cfg.optional {
                    self.abort_start(name, how);
                    return;
                }
            }
            self.start_eligible();
            self.check_up();
            return;
        }
        if svc.attempt >= policy.max_restarts {
            let message = format!(
                "{how}; gave up after {} restart(s) in a row (max_restarts = {})",
                svc.attempt, policy.max_restarts
            );
            self.set_state(name, State::Failed, message.clone());
            self.service_down(name);
            if self.phase == Phase::Starting && !self.services[name].cfg.optional {
                self.abort_start(name, message);
            } else {
                self.check_up();
            }
            return;
        }
        let delay = backoff::delay(
            policy.initial_backoff.0,
            policy.max_backoff.0,
            svc.attempt,
            backoff::jitter(),
        );
        svc.attempt += 1;
        svc.restarts += 1;
        let generation = svc.generation;
        let tx = self.tx.clone();
        let service = name.to_string();
        let task = tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Event::RestartDue {
                service,
                generation,
            });
        });
        svc.tasks.push(task.abort_handle());
        self.set_state(
            name,
            State::Restarting,
            format!("{how}; restarting in {:.1} s", delay.as_secs_f64()),
        );
        self.service_down(name);
    }

    /// A service is down (restarting or failed): unless it is optional, what depends on it
    /// stops and waits for it to come back.
    fn service_down(&mut self, name: &str) {
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
            let svc = self.services.get_mut(&dep).expect("listed");
            match svc.state {
                State::Starting | State::Running => {
                    svc.cancel_tasks();
                    svc.after_stop = State::Waiting;
                    self.set_state(
                        &dep,
                        State::Stopping,
                        format!("stopping: it depends on `{name}`, which is down"),
                    );
                    self.stop_scope(&dep);
                    self.service_down(&dep);
                }
                State::Restarting => {
                    svc.cancel_tasks();
                    self.set_state(&dep, State::Waiting, format!("waiting for `{name}`"));
                }
                _ => {}
            }
        }
    }

    /// Stops one service gracefully: its stop signal to the whole scope, then a kill after its
    /// stop timeout.
    fn stop_scope(&mut self, name: &str) {
        self.end_scope(name, true);
    }

    /// Ends the current instance's scope (its stop signal and timeout first if `graceful`,
    /// then a kill), and reports `StopDone`.
    fn end_scope(&mut self, name: &str, graceful: bool) {
        let svc = &self.services[name];
        let Some(scope) = svc.scope.clone() else {
            return;
        };
        let generation = svc.generation;
        let graceful = graceful.then_some((svc.cfg.stop_signal.number, svc.cfg.stop_timeout.0));
        let containment = self.containment.clone();
        let tx = self.tx.clone();
        let service = name.to_string();
        tokio::task::spawn_local(async move {
            let empty = match graceful {
                Some((signal, timeout)) => {
                    let _ = containment.signal(&scope, signal).await;
                    containment
                        .wait_empty(&scope, timeout)
                        .await
                        .unwrap_or(false)
                }
                None => false,
            };
            if !empty {
                let _ = containment.kill(&scope).await;
                let _ = containment.wait_empty(&scope, Duration::from_secs(5)).await;
            }
            let _ = tx.send(Event::StopDone {
                service,
                generation,
            });
        });
    }
}

/// Reads a service's output tap: keeps the last lines, and reports the line a `log` readiness
/// probe waits for.
async fn read_tap(
    tap: std::os::fd::OwnedFd,
    output: Rc<RefCell<VecDeque<String>>>,
    pattern: Option<regex::Regex>,
    tx: mpsc::UnboundedSender<Event>,
    service: String,
    generation: u64,
) {
    let Ok(fd) = crate::proc::sys::async_readable(tap) else {
        return;
    };
    let mut pattern = pattern;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let n = match guard.try_io(|inner| {
            let n = unsafe {
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(inner.get_ref()),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if let Some(p) = &pattern {
                if p.is_match(&text) {
                    let _ = tx.send(Event::Ready {
                        service: service.clone(),
                        generation,
                        how: format!("log line matched /{}/", p.as_str()),
                    });
                    pattern = None;
                }
            }
            let mut kept = output.borrow_mut();
            if kept.len() == OUTPUT_KEPT {
                kept.pop_front();
            }
            kept.push_back(text);
        }
    }
}

/// Whether `pid` is ccscope's own output forwarder (which lives in each scope).
fn is_forwarder(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0).nth(1) == Some(crate::launch::forward::SUBCOMMAND.as_bytes())
    })
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}
