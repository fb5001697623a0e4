//! The async executor around the [`Machine`]: it carries the machine's effects out over the
//! containment backend, the registry, the probes, journald and the control socket, and feeds
//! what happens back as inputs, with the time.
//!
//! One event loop on one thread. Everything that waits (a launch, a probe attempt, a cgroup's
//! `populated` change, an exit status, a notify socket, an output tap, an escalation) is a
//! small local task that reports back tagged with the instance's generation, so a report about
//! an instance that has since been replaced is dropped by the machine. Nothing polls a pid: an
//! exit is a reaped status ([`Reaper`]) and a cgroup going empty a `cgroup.events` change.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::audit::Event as AuditEvent;
use crate::audit::alert::{Alert, AlertKind, Alerter, ChildWaiter, alert_for};
use crate::config::{Config, DockerSpec, Launch, Probe, ProbeCheck, Service};
use crate::contain::{AnyContainment, BackendKind, Containment, ScopeHandle, cgroup};
use crate::control::{Reply, Request};
use crate::docker::ContainerSpec;
use crate::escalate::{self, Force, ForceSwitch, Grace};
use crate::launch::forward::Sink;
use crate::launch::{LaunchError, LaunchSpec, Launched, OutputTarget, launch};
use crate::proc::ProcessIdentity;
use crate::registry::{NewProcess, ProcessFilter, Registry};
use crate::stop::{ShutdownReport, StopOptions};

use super::container::{self, Container, Docker};
// The state feed (`ccscope top`): hooks marked "feed:" below.
use super::feed::{self, Feed};
use super::machine::{
    AdoptedBack, Effect, Finish, Input, LaunchedInstance, Machine, ProbeKind, SignalInput, Verb,
};
use super::preflight::{ContainerLeft, LeftBehind};
use super::reaper::Reaper;
use super::tap::{self, LastLines};
use super::{Ended, Progress, RunOptions, notify, probe};

#[path = "driver_verbs.rs"]
mod verbs;
use verbs::instance_cfg;

/// How long a cgroup watch waits between looks when its `cgroup.events` cannot be registered
/// with the reactor.
const CGROUP_FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Once the stack is up, its start-up pages are let go twice: at once, and this long after,
/// for what the last reports of the start touched again.
const TRIM_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// After a main process failed, how often and for how long its scope's emptying is looked at
/// besides the `cgroup.events` change that should tell it.
const EMPTY_RECHECK: Duration = Duration::from_millis(500);
const EMPTY_RECHECK_FOR: Duration = Duration::from_secs(120);

/// How long a container's removal waits for its last output lines to be passed on.
const LAST_LINES_WAIT: Duration = Duration::from_secs(2);

/// How long the supervisor's exit waits for its last alerts (a failed start, an incomplete
/// stop) to be delivered.
const ALERT_FLUSH: Duration = Duration::from_secs(5);

/// What the tasks tell the loop, beyond plain machine inputs.
enum Report {
    Input(Input),
    Launched {
        service: String,
        generation: u64,
        result: Box<Result<Launched, LaunchError>>,
        /// Its registry record, made from the spec it was launched with.
        record: Option<NewProcess>,
        exit: Option<oneshot::Receiver<ExitStatus>>,
    },
    /// A container instance was created and started (or why not); `early` is the exit code
    /// of a death the event stream saw before the launch could claim it.
    ContainerLaunched {
        service: String,
        generation: u64,
        result: Result<(Container, ProcessIdentity), String>,
        early: Option<i64>,
    },
    /// Some process was reaped (the process-group backend rechecks its groups).
    Reaped,
    StandDown {
        ack: oneshot::Sender<()>,
    },
    StopperGone,
    /// feed: a client subscribes to the state feed; given its snapshot and receiver at once.
    Subscribe {
        reply: oneshot::Sender<(feed::Snapshot, feed::Receiver)>,
    },
    /// A client's verb, answered on `reply` once done.
    Request {
        request: Request,
        actor: Actor,
        reply: oneshot::Sender<Reply>,
    },
}

/// Who asked for a verb, from the control socket's peer credentials.
#[derive(Debug, Clone)]
pub struct Actor {
    pub uid: u32,
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
}

impl Actor {
    /// Reads what /proc says of the peer `pid` (its command line cut to 1 KiB).
    fn of(uid: u32, pid: i32) -> Actor {
        let procfs = crate::proc::ProcFs::default();
        let mut cmdline = procfs.cmdline(pid).unwrap_or_default();
        if cmdline.len() > 1024 {
            let mut cut = 1024;
            while !cmdline.is_char_boundary(cut) {
                cut -= 1;
            }
            cmdline.truncate(cut);
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        Actor {
            uid,
            pid,
            comm,
            cmdline,
        }
    }

    /// `uid 1000 pid 4242 (ccscope restart web)`.
    fn describe(&self) -> String {
        let what = match self.cmdline.is_empty() {
            true => &self.comm,
            false => &self.cmdline,
        };
        format!("uid {} pid {} ({what})", self.uid, self.pid)
    }
}

/// The signals a supervisor handles: INT and TERM stop the stack; HUP reloads the
/// configuration (or, when the terminal it ran in hung up, stops the stack); USR1 stands down.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

/// What the driver holds of a service's current instance.
#[derive(Default)]
struct Instance {
    generation: u64,
    scope: Option<ScopeHandle>,
    /// Watchers of the instance (cgroup, notify socket): stopped when it is forgotten.
    watchers: Vec<AbortHandle>,
    output: LastLines,
    /// A container service's container, while it is the instance.
    container: Option<Container>,
    /// The removal of the service's last container: the next one (same name) waits for it.
    removing: Option<tokio::task::JoinHandle<()>>,
    /// The task passing the container's output on; it ends with the container's output,
    /// which its removal waits for.
    logs: Option<tokio::task::JoinHandle<()>>,
    /// The definition the instance was launched with (a reload may have changed the
    /// configuration since): its stop signal and timeout, its probes.
    cfg: Option<Rc<Service>>,
    /// Its cgroup or container is frozen (`ccscope pause`).
    frozen: bool,
}

pub struct Driver<'a> {
    /// The configuration launches use: the one `run` read, or the last reload's.
    config: Rc<Config>,
    /// A reload's configuration, until the machine says it is applied.
    reloaded: HashMap<Option<u64>, Rc<Config>>,
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    next_request: u64,
    /// Whether the supervisor began with a terminal on stderr: a SIGHUP then is its hangup
    /// when the terminal is gone, and a reload when it is not.
    terminal: bool,
    /// The file watches of the services that have `watch`, with the spec each was made from.
    watches: BTreeMap<String, (crate::config::WatchSpec, crate::watch::Watcher)>,
    /// The services or the configuration changed: the watches are looked at again.
    rewatch: bool,
    docker: Option<Rc<Docker>>,
    run_id: String,
    containment: Rc<AnyContainment>,
    registry: &'a Registry,
    options: &'a RunOptions,
    reaper: Reaper,
    tx: mpsc::UnboundedSender<Report>,
    instances: BTreeMap<String, Instance>,
    acks: HashMap<u64, oneshot::Sender<()>>,
    next_ack: u64,
    force_switch: ForceSwitch,
    force: Force,
    progress: &'a mut dyn FnMut(&Progress),
    /// Tells `[project.alerts]` of crashes, give-ups, failed starts and incomplete stops.
    alerter: Alerter,
    /// D-Bus (src/dbus): the project's object on the bus, told of each state change.
    bus: crate::dbus::Bus,
    /// feed: state changes to subscribers (nothing is built while there are none).
    feed: Feed,
}

/// Everything the driver needs to run, made by [`super::run`].
pub struct Parts<'a> {
    pub config: &'a Config,
    /// The Engine, when the run has container services.
    pub docker: Option<Rc<Docker>>,
    pub run_id: String,
    pub containment: Rc<AnyContainment>,
    pub registry: &'a Registry,
    pub options: &'a RunOptions,
    pub reaper: Reaper,
    pub signals: Signals,
    pub control: tokio::net::UnixListener,
    pub progress: &'a mut dyn FnMut(&Progress),
}

/// Runs `machine` until it finishes. `left_behind` are the scopes and containers the
/// preflight adopted back.
pub async fn drive<'a>(
    mut machine: Machine,
    parts: Parts<'a>,
    left_behind: Vec<LeftBehind>,
    containers_left: Vec<ContainerLeft>,
) -> Ended {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (force_switch, force) = ForceSwitch::new();
    let force = force.with_notice(escalate::WaitNotice::stderr(
        "Ctrl-C again or `ccscope stop --force` kills what is left now",
    ));
    let Parts {
        config,
        docker,
        run_id,
        containment,
        registry,
        options,
        reaper,
        signals,
        control,
        progress,
    } = parts;
    if let Some(docker) = &docker {
        let tx = tx.clone();
        docker.watch_events(move |input| tx.send(Report::Input(input)).is_ok());
    }
    let alerter = Alerter::new(&config.project.alerts, Rc::new(reaper.clone()));
    // D-Bus (src/dbus): exported before the start, so its signals are seen; without a bus,
    // a warning and nothing more.
    let bus = {
        let tx = tx.clone();
        crate::dbus::export(config, options.bus, move |call| bus_call(call, &tx)).await
    };
    let mut driver = Driver {
        bus,
        alerter,
        config: Rc::new(config.clone()),
        reloaded: HashMap::new(),
        replies: HashMap::new(),
        next_request: 0,
        terminal: crate::proc::sys::is_terminal(2),
        watches: BTreeMap::new(),
        rewatch: true,
        docker,
        run_id,
        containment,
        registry,
        options,
        reaper,
        tx,
        instances: BTreeMap::new(),
        acks: HashMap::new(),
        next_ack: 0,
        force_switch,
        force,
        progress,
        feed: Feed::new(),
    };
    if driver.containment.kind() == BackendKind::Pgroup {
        let tx = driver.tx.clone();
        driver.reaper.on_reap(move || {
            let _ = tx.send(Report::Reaped);
        });
    }
    for left in left_behind {
        let service = left.scope.service.clone();
        driver.instances.insert(
            service.clone(),
            Instance {
                generation: 1,
                scope: Some(left.scope.clone()),
                ..Instance::default()
            },
        );
        driver.watch(&service, None, None);
        machine.adopt_back(
            Instant::now(),
            AdoptedBack {
                service,
                scope: left.scope.display_name(),
                processes: left.processes,
                main: left.main,
            },
        );
    }
    for left in containers_left {
        driver.adopt_container(&mut machine, left);
    }
    machine.start(Instant::now());

    let Signals {
        mut int,
        mut term,
        mut hup,
        mut usr1,
    } = signals;
    let mut stopping: Option<Pin<Box<dyn Future<Output = ShutdownReport> + 'a>>> = None;
    let mut report: Option<ShutdownReport> = None;
    loop {
        while let Some(effect) = machine.poll_effect() {
            match effect {
                Effect::RunStop { force } => {
                    if force {
                        driver.force_switch.force();
                    }
                    stopping = Some(Box::pin(stop_flow(
                        driver.config.clone(),
                        driver.registry,
                        driver.containment.clone(),
                        driver.force.clone(),
                    )));
                }
                Effect::Exit(finish) => {
                    driver.alert_on_exit(&finish, report.as_ref());
                    driver.alerter.flush(ALERT_FLUSH).await;
                    driver.bus.flush().await; // D-Bus (src/dbus)
                    return driver.ended(finish, report.take());
                }
                effect => driver.apply(effect).await,
            }
        }
        if std::mem::take(&mut driver.rewatch) {
            driver.sync_watches(&machine);
        }
        let wake = machine.poll_timeout();
        let input = tokio::select! {
            Some(r) = rx.recv() => match driver.report(r).await {
                Some(input) => input,
                None => continue,
            },
            _ = int.recv() => Input::Signal(SignalInput::Interrupt),
            _ = term.recv() => Input::Signal(SignalInput::Terminate),
            _ = hup.recv() => match driver.terminal && !crate::proc::sys::is_terminal(2) {
                true => Input::Signal(SignalInput::Hangup),
                false => match driver.reload(None, false, "SIGHUP".into()) {
                    Some(input) => input,
                    None => continue,
                },
            },
            _ = usr1.recv() => Input::Signal(SignalInput::StandDown),
            Ok((stream, _)) = control.accept() => {
                serve_control(stream, driver.tx.clone());
                continue;
            }
            done = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => {
                stopping = None;
                let input = Input::StopDone {
                    outcome: done.outcome,
                    survivors: done.survivors.len(),
                    elapsed_ms: done.elapsed_ms,
                };
                driver.bus.stop_finished(&done); // D-Bus (src/dbus)
                report = Some(done);
                input
            }
            () = sleep_until(wake), if wake.is_some() => {
                machine.handle_timeout(Instant::now());
                continue;
            }
        };
        machine.handle(Instant::now(), input);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// The stop flow over the whole stack, as `ccscope stop` runs it; `force` cuts its grace short.
async fn stop_flow(
    config: Rc<Config>,
    registry: &Registry,
    containment: Rc<AnyContainment>,
    force: Force,
) -> ShutdownReport {
    let options = StopOptions {
        timeout: None,
        force: false,
        dry_run: false,
    };
    let backends = std::slice::from_ref(&*containment);
    crate::stop::stop(&config, backends, registry, &options, &force).await
}

impl Driver<'_> {
    /// The alerts the end of a run is: a start that failed, a stop that left survivors.
    fn alert_on_exit(&self, finish: &Finish, report: Option<&ShutdownReport>) {
        let project = &self.config.project.name;
        if let Finish::StartFailed { service, reason } = finish {
            let alert = Alert::new(AlertKind::StartFailed, project, Some(service), reason);
            self.alerter.send(alert.with_run_id(&self.run_id));
        }
        if let Some(reason) = report.and_then(ShutdownReport::incomplete_reason) {
            let alert = Alert::new(AlertKind::StopIncomplete, project, None, &reason);
            self.alerter.send(alert.with_run_id(&self.run_id));
        }
    }

    fn ended(&mut self, finish: Finish, report: Option<ShutdownReport>) -> Ended {
        let report = || {
            report
                .clone()
                .unwrap_or_else(|| ShutdownReport::empty(&self.config))
        };
        match finish {
            Finish::StoodDown => {
                // The stop that took over clears them too, but a state this loop recorded
                // after it did (a service's end heard late) would outlive the stack. The lock
                // is still ours: no other supervisor of the project records in the meantime.
                let _ = self
                    .registry
                    .clear_service_states(&self.config.project.name);
                Ended::StoodDown
            }
            Finish::Stopped => {
                let _ = self
                    .registry
                    .clear_service_states(&self.config.project.name);
                Ended::Stopped { report: report() }
            }
            Finish::StartFailed { service, reason } => {
                let _ = self
                    .registry
                    .clear_service_states(&self.config.project.name);
                let last_output = self
                    .instances
                    .get(&service)
                    .map(|i| i.output.borrow().iter().cloned().collect())
                    .unwrap_or_default();
                Ended::StartFailed {
                    service,
                    reason,
                    last_output,
                    report: report(),
                }
            }
        }
    }

    /// Turns a task's report into the machine's input (None: handled here).
    async fn report(&mut self, report: Report) -> Option<Input> {
        match report {
            Report::Input(input) => Some(input),
            Report::Launched {
                service,
                generation,
                result,
                record,
                exit,
            } => Some(self.launched(service, generation, *result, record, exit)),
            Report::ContainerLaunched {
                service,
                generation,
                result,
                early,
            } => Some(self.container_launched(service, generation, result, early)),
            Report::Reaped => {
                self.recheck_groups().await;
                None
            }
            Report::StandDown { ack } => {
                self.next_ack += 1;
                self.acks.insert(self.next_ack, ack);
                Some(Input::StandDown {
                    ack: Some(self.next_ack),
                })
            }
            Report::Request {
                request,
                actor,
                reply,
            } => self.request(request, actor, reply),
            Report::Subscribe { reply } => {
                let backend = self.containment.kind().as_str();
                let subscribed = self.feed.subscribe_with(
                    self.registry,
                    &self.config,
                    &self.run_id,
                    backend,
                    &|s| self.cgroup_of(s),
                );
                let _ = reply.send(subscribed);
                None
            }
            Report::StopperGone => {
                let mut left = 0;
                for scope in self.instances.values().filter_map(|i| i.scope.as_ref()) {
                    left += self
                        .containment
                        .processes(scope)
                        .await
                        .map_or(0, |p| p.len());
                }
                Some(Input::StopperGone { left })
            }
        }
    }

    fn launched(
        &mut self,
        service: String,
        generation: u64,
        result: Result<Launched, LaunchError>,
        record: Option<NewProcess>,
        exit: Option<oneshot::Receiver<ExitStatus>>,
    ) -> Input {
        let launched = match result {
            Ok(l) => l,
            Err(e) => {
                let mut why = e.to_string();
                if let Some(hint) = e.hint() {
                    why.push_str(&format!(" ({hint})"));
                }
                return Input::Launched {
                    service,
                    generation,
                    outcome: Err(why),
                };
            }
        };
        crate::proc::fault::point(crate::proc::fault::SUPERVISOR_FIRST_SCOPE);
        let mut warnings: Vec<String> = launched
            .limits
            .unenforceable
            .iter()
            .map(|l| format!("the {} limit is not enforced: {}", l.limit, l.reason))
            .collect();
        for warning in &warnings {
            AuditEvent {
                event: "limit.unenforceable",
                project: &self.config.project.name,
                service: Some(&service),
                message: format!("{service}: {warning}"),
                fields: vec![("CCSCOPE_RUN_ID", self.run_id.clone())],
            }
            .record(crate::audit::Priority::Warning);
        }
        if let Some(Err(e)) = record.as_ref().map(|r| self.registry.register(r)) {
            warnings.push(format!("could not register its process: {e}"));
        }
        let Launched {
            identity,
            scope,
            tap,
            ..
        } = launched;
        let instance = self.instances.entry(service.clone()).or_default();
        if instance.generation == generation {
            instance.scope = Some(scope.clone());
        }
        self.watch(&service, exit, tap);
        Input::Launched {
            service,
            generation,
            outcome: Ok(LaunchedInstance {
                main: identity,
                scope: scope.display_name(),
                warnings,
            }),
        }
    }

    /// Carries out one effect.
    async fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Launch {
                service,
                generation,
            } => self.launch(&service, generation),
            Effect::End {
                service,
                generation,
                graceful,
            } => self.end(&service, generation, graceful),
            Effect::Probe {
                service,
                generation,
                kind,
                probe,
            } => self.probe(service, generation, kind, probe),
            Effect::Forget {
                service,
                generation,
                release,
            } => self.forget(&service, generation, release).await,
            Effect::Unregister(id) => {
                let _ = self.registry.unregister(id);
            }
            Effect::Record(record) => {
                if let Err(e) = self.registry.set_service_state(&record) {
                    tracing::warn!("could not record the state of `{}`: {e}", record.service);
                }
                // D-Bus (src/dbus): ServiceStateChanged and PropertiesChanged.
                self.bus.record(&record, self.cgroup_of(&record.service));
                // feed:
                self.feed
                    .service_changed(&record, &self.config, &|s| self.cgroup_of(s));
            }
            Effect::RunState(state) => {
                let _ = self.registry.set_run_state(&self.run_id, state);
                self.bus.run_state(state); // D-Bus (src/dbus)
                // feed:
                self.feed
                    .run_changed(&self.config.project.name, &self.run_id, state.as_str());
            }
            Effect::Audit(note) => {
                // feed:
                self.feed.audited(&self.config.project.name, &note);
                let project = &self.config.project.name;
                let service = note.service.as_deref();
                let alert = alert_for(
                    project,
                    &self.run_id,
                    note.event,
                    service,
                    &note.message,
                    &note.fields,
                );
                if let Some(alert) = alert {
                    self.alerter.send(alert);
                }
                AuditEvent {
                    event: note.event,
                    project,
                    service,
                    message: note.message,
                    fields: note.fields,
                }
                .record(note.priority)
            }
            Effect::Progress(p) => {
                if p.event == super::ProgressEvent::Ready {
                    crate::proc::fault::point(crate::proc::fault::SUPERVISOR_BEFORE_READY);
                }
                tracing::debug!(service = p.service, "{}: {}", p.event.as_str(), p.message);
                (self.progress)(&p);
            }
            Effect::AckStandDown(id) => {
                crate::proc::fault::point(crate::proc::fault::SUPERVISOR_STANDING_DOWN);
                if let Some(ack) = self.acks.remove(&id) {
                    let _ = ack.send(());
                }
            }
            Effect::ForceStop => self.force_switch.force(),
            Effect::Freeze {
                service,
                generation,
                frozen,
            } => self.freeze(service, generation, frozen),
            Effect::Reply { id, reply } => self.send_reply(id, reply),
            Effect::ConfigApplied { id } => {
                self.config_applied(id).await;
                self.rewatch = true;
            }
            Effect::Removed { service } => {
                self.removed(&service);
                self.rewatch = true;
            }
            // Starting is over: the code that parsed, planned and launched need not stay
            // resident.
            Effect::StackUp => {
                self.bus.stack_ready(); // D-Bus (src/dbus)
                // feed:
                self.feed
                    .stack_up(self.registry, &self.config.project.name, &self.run_id);
                crate::proc::sys::trim_resident();
                // What the last steps of the start touched again goes too, once they are done.
                tokio::task::spawn_local(async {
                    tokio::time::sleep(TRIM_AGAIN_AFTER).await;
                    crate::proc::sys::trim_resident();
                });
            }
            Effect::RunStop { .. } | Effect::Exit(_) => {
                unreachable!("handled by the loop")
            }
        }
    }

    fn launch(&mut self, name: &str, generation: u64) {
        if generation > 1 {
            crate::proc::fault::point(crate::proc::fault::SUPERVISOR_RESTARTING);
        }
        let config = self.config.clone();
        let cfg = &config.services[name];
        let instance = self.instances.entry(name.to_string()).or_default();
        for watcher in instance.watchers.drain(..) {
            watcher.abort();
        }
        instance.generation = generation;
        instance.scope = None;
        instance.container = None;
        instance.frozen = false;
        instance.cfg = Some(Rc::new(cfg.clone()));
        instance.output.borrow_mut().clear();
        if let Launch::Docker(spec) = &cfg.launch {
            self.launch_container(name, generation, spec.clone());
            return;
        }
        let uses_notify = [cfg.ready.as_ref(), cfg.liveness.as_ref()]
            .into_iter()
            .flatten()
            .any(|p| matches!(p.check, ProbeCheck::Notify));
        let mut env = cfg.env.clone();
        if uses_notify {
            match notify::bind(&self.run_id, name, generation) {
                Ok(socket) => {
                    env.insert("NOTIFY_SOCKET".into(), socket.address.clone());
                    if let Some(l) = cfg
                        .liveness
                        .as_ref()
                        .filter(|l| matches!(l.check, ProbeCheck::Notify))
                    {
                        env.insert("WATCHDOG_USEC".into(), l.interval.0.as_micros().to_string());
                    }
                    self.listen_notify(name, generation, socket);
                }
                Err(e) => tracing::warn!(
                    "could not open the notify socket of `{name}`: {}",
                    crate::proc::describe_io(&e)
                ),
            }
        }
        let argv = match &cfg.launch {
            Launch::Command { argv } => argv.clone(),
            Launch::Shell { script } => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            Launch::Docker(_) => unreachable!("launched as a container above"),
        };
        let spec = LaunchSpec {
            project: self.config.project.name.clone(),
            service: name.to_string(),
            instance: None,
            run_id: self.run_id.clone(),
            argv,
            env,
            env_files: cfg.env_files.clone(),
            cwd: cfg.cwd.clone(),
            limits: cfg.limits.clone(),
            output: OutputTarget::for_service(
                &self.options.state_dir,
                &self.config.project.name,
                name,
            ),
            inherit_stdin: false,
            own_process_group: true,
            strict_limits: self.options.strict_limits,
            launcher: self.options.launcher.clone(),
            tap: true,
        };
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
            let _ = tx.send(Report::Launched {
                service,
                generation,
                result: Box::new(result),
                record,
                exit,
            });
        });
    }

    /// Starts the tasks that report an instance's end: its main process's exit status, its
    /// cgroup going empty, and its output lines.
    fn watch(
        &mut self,
        name: &str,
        exit: Option<oneshot::Receiver<ExitStatus>>,
        tap: Option<std::os::fd::OwnedFd>,
    ) {
        let Some(instance) = self.instances.get_mut(name) else {
            return;
        };
        let generation = instance.generation;
        if let Some(exit) = exit {
            let tx = self.tx.clone();
            let service = name.to_string();
            let containment = self.containment.clone();
            let scope = instance.scope.clone();
            // Not cancelled with the other watchers: the status must be collected whatever
            // happens.
            tokio::task::spawn_local(async move {
                let Ok(status) = exit.await else {
                    return;
                };
                let others_left = match (&scope, status.success()) {
                    (Some(scope), true) => containment.processes(scope).await.map_or(0, |p| {
                        p.into_iter().filter(|pid| !is_forwarder(*pid)).count()
                    }),
                    _ => 0,
                };
                // Not kept while the emptying is re-checked below: the backend (its bus
                // connection) must not outlive the runtime in a task still sleeping at exit.
                drop(containment);
                let _ = tx.send(Report::Input(Input::MainExited {
                    service: service.clone(),
                    generation,
                    status,
                    others_left,
                }));
                // A failed main process means the scope is ended now. Its emptying is told by
                // a `cgroup.events` change, which the kernel may deliver late under load; a
                // bounded re-check makes sure the end is heard (the machine drops a second
                // report of it).
                if let (false, Some(path)) = (status.success(), scope.and_then(|s| s.cgroup)) {
                    let cg = cgroup::Cgroup::at(path);
                    let emptied = tokio::time::timeout(
                        EMPTY_RECHECK_FOR,
                        cg.until_empty_promptly(EMPTY_RECHECK),
                    )
                    .await;
                    // Gone (an error reading it) is empty too; only the time running out is not.
                    if emptied.is_ok() {
                        let _ = tx.send(Report::Input(Input::Emptied {
                            service,
                            generation,
                        }));
                    }
                }
            });
        }
        if let Some(path) = instance.scope.as_ref().and_then(|s| s.cgroup.clone()) {
            let tx = self.tx.clone();
            let service = name.to_string();
            let task = tokio::task::spawn_local(async move {
                let cg = cgroup::Cgroup::at(path);
                if let Err(e) = cg.until_empty(CGROUP_FALLBACK_POLL).await {
                    tracing::warn!("watching the cgroup of `{service}` failed: {e}");
                }
                let _ = tx.send(Report::Input(Input::Emptied {
                    service,
                    generation,
                }));
            });
            instance.watchers.push(task.abort_handle());
        }
        if let Some(tap) = tap {
            let pattern = self.config.services[name]
                .ready
                .as_ref()
                .and_then(|p| match &p.check {
                    ProbeCheck::Log { pattern } => regex::Regex::new(pattern).ok(),
                    _ => None,
                });
            let tx = self.tx.clone();
            let service = name.to_string();
            // Not cancelled: it ends at EOF, once the forwarder passed on the last line.
            tokio::task::spawn_local(tap::read(tap, instance.output.clone(), pattern, move |p| {
                let _ = tx.send(Report::Input(Input::LogMatched {
                    service: service.clone(),
                    generation,
                    pattern: p.as_str().to_string(),
                }));
            }));
        }
    }

    fn listen_notify(&mut self, name: &str, generation: u64, socket: notify::NotifySocket) {
        let tx = self.tx.clone();
        let service = name.to_string();
        let task = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.socket.recv(&mut buf).await {
                let note = notify::parse(&buf[..n]);
                if let Some(status) = &note.status {
                    tracing::debug!(service, "STATUS={status}");
                }
                let input = Input::Notify {
                    service: service.clone(),
                    generation,
                    note,
                };
                if tx.send(Report::Input(input)).is_err() {
                    return;
                }
            }
        });
        if let Some(instance) = self.instances.get_mut(name) {
            instance.watchers.push(task.abort_handle());
        }
    }

    /// Ends an instance through the one escalation: its stop signal and stop timeout first
    /// if `graceful`, then a kill; a forced stop cuts the grace short.
    fn end(&mut self, name: &str, generation: u64, graceful: bool) {
        let instance = self
            .instances
            .get(name)
            .filter(|i| i.generation == generation);
        let Some(cfg) = instance_cfg(&self.config, instance, name) else {
            return;
        };
        if let Launch::Docker(_) = cfg.launch {
            self.end_container(name, generation, graceful, &cfg);
            return;
        }
        let scope = instance.and_then(|i| i.scope.clone());
        let grace = match graceful {
            true => Grace::Signal {
                signal: cfg.stop_signal,
                timeout: cfg.stop_timeout.0,
            },
            false => Grace::None,
        };
        let containment = self.containment.clone();
        let force = self.force.clone();
        let tx = self.tx.clone();
        let service = name.to_string();
        tokio::task::spawn_local(async move {
            if let Some(scope) = scope {
                escalate::end_scope(&*containment, &scope, grace, Instant::now(), &force).await;
            }
            let _ = tx.send(Report::Input(Input::EndDone {
                service,
                generation,
            }));
        });
    }

    /// The instance is over: its watchers stop; with `release`, its scope is freed (the name
    /// for systemd, the directory for cgroupfs) for the next instance, and the service's
    /// records go.
    async fn forget(&mut self, name: &str, generation: u64, release: bool) {
        let Some(instance) = self
            .instances
            .get_mut(name)
            .filter(|i| i.generation == generation)
        else {
            return;
        };
        for watcher in instance.watchers.drain(..) {
            watcher.abort();
        }
        let scope = instance.scope.take();
        let container = instance.container.take();
        if let (Some(docker), Some(container)) = (&self.docker, &container) {
            docker.unclaim(&container.id);
        }
        if !release {
            return;
        }
        let logs = instance.logs.take();
        if let (Some(docker), Some(container)) = (self.docker.clone(), container) {
            // Removed in the background once its last lines are passed on; the next launch
            // of the service (same name) waits.
            let task = tokio::task::spawn_local(async move {
                if let Some(logs) = logs {
                    let _ = tokio::time::timeout(LAST_LINES_WAIT, logs).await;
                }
                docker.remove(&container.id).await;
            });
            instance.removing = Some(task);
        }
        if let Some(scope) = scope {
            let _ = self.containment.release(&scope).await;
        }
        let ended: Vec<_> = self
            .registry
            .list(ProcessFilter::Service {
                project: &self.config.project.name,
                service: name,
            })
            .unwrap_or_default()
            .iter()
            .map(|r| r.identity())
            .collect();
        let _ = self.registry.unregister_all(&ended);
    }

    /// Launches a container instance: the last container's removal first (same name), then
    /// the image as its pull policy says, then create and start.
    fn launch_container(&mut self, name: &str, generation: u64, spec: DockerSpec) {
        let tx = self.tx.clone();
        let service = name.to_string();
        let Some(docker) = self.docker.clone() else {
            let _ = tx.send(Report::ContainerLaunched {
                service,
                generation,
                result: Err("no connection to the docker daemon was made".into()),
                early: None,
            });
            return;
        };
        let removing = self.instances.get_mut(name).and_then(|i| i.removing.take());
        let container = ContainerSpec::of(&self.config.project.name, name, &spec, &self.run_id);
        tokio::task::spawn_local(async move {
            if let Some(removing) = removing {
                let _ = removing.await;
            }
            let launched = docker.launch(&container, &spec).await;
            // No await from the claim to the report: the machine hears of the launch before
            // any death the event stream tells.
            let (result, early) = match launched {
                Ok((container, main, exited)) => {
                    let seen = docker.claim(&container.id, &service, generation);
                    (Ok((container, main)), seen.or(exited))
                }
                Err(why) => (Err(why), None),
            };
            let _ = tx.send(Report::ContainerLaunched {
                service,
                generation,
                result,
                early,
            });
        });
    }

    fn container_launched(
        &mut self,
        service: String,
        generation: u64,
        result: Result<(Container, ProcessIdentity), String>,
        early: Option<i64>,
    ) -> Input {
        let (container, main) = match result {
            Ok(launched) => launched,
            Err(why) => {
                return Input::Launched {
                    service,
                    generation,
                    outcome: Err(why),
                };
            }
        };
        crate::proc::fault::point(crate::proc::fault::SUPERVISOR_FIRST_SCOPE);
        let scope = container.describe();
        let instance = self.instances.entry(service.clone()).or_default();
        if instance.generation == generation {
            instance.container = Some(container.clone());
            self.follow(&service, &container, None);
        }
        if let (Some(code), Some(docker)) = (early, &self.docker) {
            // Queued behind this launch's input, which the loop hands the machine first.
            docker.died(&container.id, code);
        }
        Input::Launched {
            service,
            generation,
            outcome: Ok(LaunchedInstance {
                main,
                scope,
                warnings: Vec::new(),
            }),
        }
    }

    /// Takes over a running container an earlier run left (same definition), as its
    /// service's instance 1.
    fn adopt_container(&mut self, machine: &mut Machine, left: ContainerLeft) {
        let ContainerLeft {
            service,
            container,
            main,
        } = left;
        let early = self
            .docker
            .as_ref()
            .and_then(|d| d.claim(&container.id, &service, 1));
        self.instances.insert(
            service.clone(),
            Instance {
                generation: 1,
                container: Some(container.clone()),
                ..Instance::default()
            },
        );
        self.follow(&service, &container, Some(std::time::SystemTime::now()));
        machine.adopt_back(
            Instant::now(),
            AdoptedBack {
                service,
                scope: container.describe(),
                processes: 1,
                main: Some(main),
            },
        );
        if let (Some(code), Some(docker)) = (early, &self.docker) {
            docker.died(&container.id, code);
        }
    }

    /// Follows a container's output to journald (or its log file) as the forwarder would,
    /// keeping its last lines and watching for its `log` readiness line.
    fn follow(&mut self, name: &str, container: &Container, since: Option<std::time::SystemTime>) {
        let (Some(docker), Some(instance)) = (&self.docker, self.instances.get_mut(name)) else {
            return;
        };
        let project = &self.config.project.name;
        let sink = match OutputTarget::for_service(&self.options.state_dir, project, name) {
            OutputTarget::StateLog {
                state_dir,
                project,
                service,
            } => match crate::launch::open_log_file(&state_dir, &project, &service) {
                Ok(file) => Sink::to_file(file),
                Err(e) => {
                    tracing::warn!("could not open the log file of `{service}`: {e}");
                    return;
                }
            },
            _ => Sink::to_journald(project, name),
        };
        let mut pattern = self.config.services[name]
            .ready
            .as_ref()
            .and_then(|p| match &p.check {
                ProbeCheck::Log { pattern } => regex::Regex::new(pattern).ok(),
                _ => None,
            });
        let output = instance.output.clone();
        let tx = self.tx.clone();
        let service = name.to_string();
        let generation = instance.generation;
        let task = docker.follow_logs(&container.id, since, sink, move |line| {
            let text = String::from_utf8_lossy(line).into_owned();
            if pattern.as_ref().is_some_and(|p| p.is_match(&text)) {
                if let Some(p) = pattern.take() {
                    let _ = tx.send(Report::Input(Input::LogMatched {
                        service: service.clone(),
                        generation,
                        pattern: p.as_str().to_string(),
                    }));
                }
            }
            tap::keep(&output, text);
        });
        instance.logs = task;
    }

    /// Ends a container instance: the Engine's stop with the service's signal and timeout
    /// (a kill at once when not graceful, or once forced).
    fn end_container(&mut self, name: &str, generation: u64, graceful: bool, cfg: &Service) {
        let instance = self
            .instances
            .get(name)
            .filter(|i| i.generation == generation);
        let container = instance.and_then(|i| i.container.clone());
        // A paused container would hold its stop signal until the timeout: it is unpaused.
        let paused = instance.is_some_and(|i| i.frozen);
        let (signal, timeout) = match graceful {
            true => (cfg.stop_signal.number, cfg.stop_timeout.0),
            false => (libc::SIGKILL, Duration::ZERO),
        };
        let docker = self.docker.clone();
        let force = self.force.clone();
        let tx = self.tx.clone();
        let service = name.to_string();
        tokio::task::spawn_local(async move {
            if let (Some(docker), Some(container)) = (docker, container) {
                if paused {
                    let _ = docker.pause(&container.id, false).await;
                }
                docker.end(&container.id, signal, timeout, &force).await;
            }
            let _ = tx.send(Report::Input(Input::EndDone {
                service,
                generation,
            }));
        });
    }

    /// Runs one attempt of a probe: against a container itself (`exec`, its HEALTHCHECK), or
    /// as for a process (a container's tcp and http go to its published ports).
    fn probe(&mut self, service: String, generation: u64, kind: ProbeKind, probe: Probe) {
        let tx = self.tx.clone();
        let reaper = self.reaper.clone();
        let mut check = probe.check.clone();
        let mut inside = None;
        let instance = self
            .instances
            .get(&service)
            .filter(|i| i.generation == generation);
        let cfg = instance_cfg(&self.config, instance, &service);
        if let Some(Launch::Docker(spec)) = cfg.as_ref().map(|c| &c.launch) {
            check = container::published(&check, &spec.ports);
            let id = self
                .instances
                .get(&service)
                .filter(|i| i.generation == generation)
                .and_then(|i| i.container.as_ref())
                .map(|c| c.id.clone());
            inside = self.docker.clone().zip(id);
        }
        let timeout = probe.timeout.0;
        tokio::task::spawn_local(async move {
            let inside = match &inside {
                Some((docker, id)) => docker.probe(id, &check, timeout).await,
                None => None,
            };
            let result = match inside {
                Some(result) => result,
                None => probe::attempt(&check, timeout, &reaper).await,
            };
            let _ = tx.send(Report::Input(Input::ProbeResult {
                service,
                generation,
                kind,
                result,
            }));
        });
    }

    /// The cgroup of a service's current instance, whose processes the bus interface and the
    /// feed list.
    fn cgroup_of(&self, service: &str) -> Option<&std::path::Path> {
        self.instances
            .get(service)?
            .scope
            .as_ref()?
            .cgroup
            .as_deref()
    }

    /// The process-group backend has no cgroup events: each reaped orphan is its cue to look.
    async fn recheck_groups(&mut self) {
        let watched: Vec<(String, u64, ScopeHandle)> = self
            .instances
            .iter()
            .filter_map(|(n, i)| Some((n.clone(), i.generation, i.scope.clone()?)))
            .collect();
        for (service, generation, scope) in watched {
            if self
                .containment
                .processes(&scope)
                .await
                .is_ok_and(|p| p.is_empty())
            {
                let _ = self.tx.send(Report::Input(Input::Emptied {
                    service,
                    generation,
                }));
            }
        }
    }
}

/// Serves one connection on the control socket: only our own user (or root) is heard. The
/// first line is `stand-down` or one JSON request ([`Request`]), answered with one JSON line
/// once it is done.
fn serve_control(stream: tokio::net::UnixStream, tx: mpsc::UnboundedSender<Report>) {
    let me = crate::proc::sys::euid();
    tokio::task::spawn_local(async move {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let Ok(peer) = stream.peer_cred() else {
            return;
        };
        if peer.uid() != me && peer.uid() != 0 {
            return;
        }
        let (read, mut write) = stream.into_split();
        // A request is one line; a peer that sends more is read no further.
        let limit = crate::control::request::MAX_REQUEST as u64;
        let mut lines = BufReader::new(read.take(limit)).lines();
        let Ok(Some(line)) = lines.next_line().await else {
            return;
        };
        // feed: a subscription is answered with a stream, not one reply.
        if serde_json::from_str::<crate::control::Subscribe>(&line).is_ok() {
            let (given, taken) = oneshot::channel();
            if tx.send(Report::Subscribe { reply: given }).is_err() {
                return;
            }
            if let Ok((snapshot, events)) = taken.await {
                feed::stream_to(write, lines.into_inner(), snapshot, events).await;
            }
            return;
        }
        if line.trim_start().starts_with('{') {
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let actor = Actor::of(peer.uid(), peer.pid().unwrap_or(0));
                    let (reply, replied) = oneshot::channel();
                    if tx
                        .send(Report::Request {
                            request,
                            actor,
                            reply,
                        })
                        .is_err()
                    {
                        return;
                    }
                    match replied.await {
                        Ok(reply) => reply,
                        Err(_) => return,
                    }
                }
                Err(e) => Reply::refused(
                    "unknown",
                    "invalid",
                    format!("the request could not be read: {e}"),
                    Some(
                        "the client and the supervisor may be different versions of ccscope".into(),
                    ),
                ),
            };
            let mut text = serde_json::to_vec(&reply).unwrap_or_default();
            text.push(b'\n');
            let _ = write.write_all(&text).await;
            return;
        }
        if line.trim() != crate::control::STAND_DOWN {
            let _ = write.write_all(b"error unknown request\n").await;
            return;
        }
        let (ack, acked) = oneshot::channel();
        if tx.send(Report::StandDown { ack }).is_err() || acked.await.is_err() {
            return;
        }
        let answer = format!("ok {}\n", std::process::id());
        if write.write_all(answer.as_bytes()).await.is_err() {
            let _ = tx.send(Report::StopperGone);
            return;
        }
        // The stopper holds the connection while it stops the stack.
        while let Ok(Some(_)) = lines.next_line().await {}
        let _ = tx.send(Report::StopperGone);
    });
}

/// D-Bus (src/dbus): a call on the project's bus interface, handed to the loop as the control
/// socket hands its requests ([`serve_control`]); false once the loop is gone.
fn bus_call(call: crate::dbus::Call, tx: &mpsc::UnboundedSender<Report>) -> bool {
    let report = match call {
        crate::dbus::Call::Request {
            request,
            uid,
            pid,
            reply,
        } => Report::Request {
            request,
            actor: Actor::of(uid, pid),
            reply,
        },
        crate::dbus::Call::StopProject => Report::Input(Input::Signal(SignalInput::Terminate)),
    };
    tx.send(report).is_ok()
}

/// Whether `pid` is ccscope's own output forwarder (which lives in each scope).
fn is_forwarder(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0).nth(1) == Some(crate::launch::forward::SUBCOMMAND.as_bytes())
    })
}

/// An `exec` alert command is the supervisor's child: its status is the reaper's to hand out.
impl ChildWaiter for Reaper {
    fn mark(&self) -> u64 {
        Reaper::mark(self)
    }

    fn claim(&self, pid: i32, mark: u64) -> oneshot::Receiver<ExitStatus> {
        Reaper::claim(self, pid, mark)
    }
}
