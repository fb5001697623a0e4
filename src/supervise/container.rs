//! Container services, for the driver: a container is an instance like a process's, its
//! `main` the host identity of its PID 1. Launch is ensure-image + create/start; its end is
//! learned from the Engine's one event stream for the project (a `die` becomes the machine's
//! `MainExited` and `Emptied` at once: when PID 1 of a container ends, the kernel ends the
//! rest of its PID namespace); End is the Engine's stop with the service's signal and
//! timeout; a released instance's container is removed, so a restart creates it again under
//! the same name. Its output lines go to journald (or the log file) through the forwarder's
//! [`Sink`], under the same identifier as a process service's, and through the same tap the
//! driver keeps a process's last lines and `log` readiness with.
//!
//! The event stream and each container's log stream are tasks on the supervisor's one-thread
//! runtime; only the writing of a container's output has a thread of its own (a write to
//! journald may block).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::{DockerSpec, PortMapping, ProbeCheck};
use crate::docker::{ContainerEvent, ContainerInfo, ContainerSpec, DockerError, Engine};
use crate::escalate::Force;
use crate::launch::forward::{OutputStream, Piece, Sink};
use crate::proc::ProcessIdentity;

use super::machine::Input;

/// Deaths of containers not (yet) claimed by a launch, kept for a launch that reads its
/// container's PID 1 after the container already died.
const UNCLAIMED_DEATHS_KEPT: usize = 32;

/// How far back the event stream asks for events it may have missed.
const EVENTS_MARGIN: Duration = Duration::from_secs(2);

/// How long the event stream waits before it subscribes again after it broke.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// A container of this run, as the driver holds it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
}

impl Container {
    /// For messages: `container ccscope-demo-db (3f2a9c1b07de)`.
    pub fn describe(&self) -> String {
        let short: String = self.id.chars().take(12).collect();
        format!("container {} ({short})", self.name)
    }
}

/// The Engine side of a run: connected once (or why not), the project's event stream, and
/// which container is which service's instance.
pub struct Docker {
    engine: Result<Engine, String>,
    project: String,
    /// Container id → (service, generation) of the instances whose end is still to be told.
    live: RefCell<HashMap<String, (String, u64)>>,
    unclaimed: RefCell<VecDeque<(String, i64)>>,
    /// Where the machine's inputs go (the driver's one channel, so they keep their order
    /// with the launches' reports); false once the driver is gone.
    tell: RefCell<Option<Teller>>,
}

type Teller = Box<dyn Fn(Input) -> bool>;

/// Connects to the Engine for `project`; the error, in words with what to do, is kept for
/// the launch of each container service to fail with.
pub async fn connect(project: &str) -> Rc<Docker> {
    let engine = Engine::connect().await.map_err(|e| with_hint(&e));
    Rc::new(Docker {
        engine,
        project: project.to_string(),
        live: RefCell::new(HashMap::new()),
        unclaimed: RefCell::new(VecDeque::new()),
        tell: RefCell::new(None),
    })
}

/// The error's message with its hint, as a launch failure says it.
pub fn with_hint(e: &DockerError) -> String {
    match e.hint() {
        Some(hint) => format!("{e} ({hint})"),
        None => e.to_string(),
    }
}

/// The exit status of a container's PID 1 from the exit code the Engine reports (docker
/// reports a death by signal as 128 + the signal, as a shell would).
pub fn exit_status(code: i64) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(((code & 0xff) as i32) << 8)
}

impl Docker {
    pub fn engine(&self) -> Result<&Engine, String> {
        self.engine.as_ref().map_err(Clone::clone)
    }

    /// Starts the one event stream of the project, before any container is launched: each
    /// death of a container of ours ends its instance, told to `tell`. Subscribed again when
    /// it breaks (the daemon restarted), after which every container still live is looked at
    /// once, for a death the gap hid.
    pub fn watch_events(self: &Rc<Self>, tell: impl Fn(Input) -> bool + 'static) {
        *self.tell.borrow_mut() = Some(Box::new(tell));
        let Ok(engine) = self.engine.clone() else {
            return;
        };
        let me = Rc::clone(self);
        tokio::task::spawn_local(async move {
            let mut first = true;
            // From a little before now (the daemon counts in seconds), and again from a
            // little before a break: a death between subscribing and a launch's claim, or in
            // the gap, is replayed (and told once: `died` forgets what it told).
            let mut since = std::time::SystemTime::now() - EVENTS_MARGIN;
            loop {
                let events = engine.events_since(&me.project, Some(since));
                let mut events = std::pin::pin!(events);
                if !first {
                    me.reconcile().await;
                }
                first = false;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(ContainerEvent::Died { id, exit_code }) => me.died(&id, exit_code),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("the docker event stream broke: {e}");
                            break;
                        }
                    }
                }
                if !me.send(None) {
                    return;
                }
                since = std::time::SystemTime::now() - EVENTS_MARGIN;
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        });
    }

    /// Looks at every live container once: one that is not running any more has died.
    async fn reconcile(&self) {
        let Ok(engine) = &self.engine else {
            return;
        };
        let ids: Vec<String> = self.live.borrow().keys().cloned().collect();
        for id in ids {
            match engine.inspect(&id).await {
                Ok(Some(info)) if info.is_running() => {}
                Ok(Some(info)) => self.died(&id, info.exit_code.unwrap_or(-1)),
                Ok(None) => self.died(&id, -1),
                Err(_) => {}
            }
        }
    }

    /// Tells the machine `input` (None: only whether the driver still listens).
    fn send(&self, input: Option<Input>) -> bool {
        match (&*self.tell.borrow(), input) {
            (Some(tell), Some(input)) => tell(input),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// A container died: its instance's end is told, once.
    pub fn died(&self, id: &str, exit_code: i64) {
        let owner = self.live.borrow_mut().remove(id);
        let Some((service, generation)) = owner else {
            let mut unclaimed = self.unclaimed.borrow_mut();
            if unclaimed.len() == UNCLAIMED_DEATHS_KEPT {
                unclaimed.pop_front();
            }
            unclaimed.push_back((id.to_string(), exit_code));
            return;
        };
        self.send(Some(Input::MainExited {
            service: service.clone(),
            generation,
            status: exit_status(exit_code),
            others_left: 0,
        }));
        self.send(Some(Input::Emptied {
            service,
            generation,
        }));
    }

    /// The container is `service`'s instance `generation`: its death ends that instance. The
    /// exit code of a death that came before this claim is handed back, for the caller to
    /// pass to [`Docker::died`] once the machine has heard of the launch.
    pub fn claim(&self, id: &str, service: &str, generation: u64) -> Option<i64> {
        self.live
            .borrow_mut()
            .insert(id.to_string(), (service.to_string(), generation));
        let mut unclaimed = self.unclaimed.borrow_mut();
        let at = unclaimed.iter().position(|(i, _)| i == id)?;
        unclaimed.remove(at).map(|(_, code)| code)
    }

    /// Forgets a container whose end no longer matters (released without its death seen).
    pub fn unclaim(&self, id: &str) {
        self.live.borrow_mut().remove(id);
    }

    /// Ensures the image (as its pull policy says) and creates and starts the container.
    /// A container that exited before its PID 1 could be seen was an instance all the same
    /// (its restart policy applies, as to a command that exits at once): its main is then
    /// the placeholder pid 0, and its exit code comes back as `Some`.
    pub async fn launch(
        &self,
        spec: &ContainerSpec,
        docker: &DockerSpec,
    ) -> Result<(Container, ProcessIdentity, Option<i64>), String> {
        let engine = self.engine()?;
        engine
            .ensure_image(&spec.image, docker.pull)
            .await
            .map_err(|e| with_hint(&e))?;
        match engine.run(spec).await {
            Ok((info, main)) => Ok((
                Container {
                    id: info.id,
                    name: info.name,
                },
                main,
                None,
            )),
            Err(DockerError::Exited {
                id,
                name,
                exit_code,
            }) => Ok((
                Container { id, name },
                ProcessIdentity {
                    pid: 0,
                    start_time: 0,
                },
                Some(exit_code),
            )),
            Err(e) => Err(with_hint(&e)),
        }
    }

    /// Ends the container: `signal`, `timeout` for it to exit, then SIGKILL; a force cuts the
    /// grace short. Its death is then made sure of, should the event be late or lost.
    pub async fn end(&self, id: &str, signal: i32, timeout: Duration, force: &Force) {
        let Ok(engine) = &self.engine else {
            return;
        };
        let stopped = tokio::select! {
            r = engine.stop(id, signal, timeout) => r.map(drop),
            () = force.forced() => engine.stop(id, libc::SIGKILL, Duration::ZERO).await.map(drop),
        };
        if let Err(e) = stopped {
            tracing::warn!("could not stop container {id}: {e}");
        }
        if self.live.borrow().contains_key(id) {
            match engine.inspect(id).await {
                Ok(Some(info)) if info.is_running() => {}
                Ok(Some(info)) => self.died(id, info.exit_code.unwrap_or(-1)),
                Ok(None) => self.died(id, -1),
                Err(_) => {}
            }
        }
    }

    /// Pauses (`paused`) or unpauses the container, through the Engine; errors in words.
    pub async fn pause(&self, id: &str, paused: bool) -> Result<(), String> {
        let engine = self.engine()?;
        let done = match paused {
            true => engine.pause(id).await,
            false => engine.unpause(id).await,
        };
        done.map_err(|e| with_hint(&e))
    }

    /// Removes the container (gone is fine).
    pub async fn remove(&self, id: &str) {
        if let Ok(engine) = &self.engine {
            if let Err(e) = engine.remove(id).await {
                tracing::warn!("could not remove container {id}: {e}");
            }
        }
    }

    /// One attempt of a probe that runs against the container itself: `exec` inside it, or
    /// its own HEALTHCHECK. None: the probe is not one of those (tcp and http go to the
    /// published port as for a process).
    pub async fn probe(
        &self,
        id: &str,
        check: &ProbeCheck,
        timeout: Duration,
    ) -> Option<Result<(), String>> {
        let engine = match (&self.engine, check) {
            (_, ProbeCheck::Exec { .. } | ProbeCheck::DockerHealthy) => self.engine(),
            _ => return None,
        };
        let engine = match engine {
            Ok(e) => e,
            Err(why) => return Some(Err(why)),
        };
        Some(match check {
            ProbeCheck::Exec { argv } => match engine.exec(id, argv, timeout).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!(
                    "`{}` ended with exit code {code} in the container",
                    argv.join(" ")
                )),
                Err(e) => Err(e.to_string()),
            },
            _ => match tokio::time::timeout(timeout, engine.inspect(id)).await {
                Err(_) => Err(format!(
                    "the docker daemon did not answer within {timeout:?}"
                )),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(None)) => Err("the container is gone".into()),
                Ok(Ok(Some(info))) => health(&info),
            },
        })
    }

    /// Follows the container's output from its start (or from `since`, for one adopted back,
    /// whose earlier output went out already) until it ends: each line to `sink`, and to
    /// `line` (the driver's last lines and `log` readiness). The task ends with the stream,
    /// once the container is over and its last line passed on.
    pub fn follow_logs(
        &self,
        id: &str,
        since: Option<std::time::SystemTime>,
        mut sink: Sink,
        mut line: impl FnMut(&[u8]) + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let engine = self.engine.as_ref().ok()?;
        let logs = engine.logs_since(id, since);
        let id = id.to_string();
        // Written on a thread of its own: a journald that falls behind holds up this
        // container's log stream (the queue is bounded), never the supervisor's loop.
        let (queue, mut queued) = tokio::sync::mpsc::channel::<(OutputStream, Piece)>(OUTPUT_QUEUE);
        let writer = std::thread::Builder::new()
            .name("ccscope-output".into())
            .spawn(move || {
                while let Some((stream, piece)) = queued.blocking_recv() {
                    sink.piece(stream, &piece);
                    // What else is waiting goes out in the same write.
                    while let Ok((stream, piece)) = queued.try_recv() {
                        sink.piece(stream, &piece);
                    }
                    sink.flush();
                }
            });
        if let Err(e) = writer {
            tracing::warn!(
                "the output of container {id} is not kept: no thread to write it: {}",
                crate::proc::describe_io(&e)
            );
        }
        let task = tokio::task::spawn_local(async move {
            let mut logs = std::pin::pin!(logs);
            while let Some(item) = logs.next().await {
                match item {
                    Ok((stream, piece)) => {
                        line(&piece.bytes);
                        // The writer is gone only when it could not start (said above).
                        let _ = queue.send((stream, piece)).await;
                    }
                    Err(e) => {
                        tracing::warn!("following the output of container {id} failed: {e}");
                        return;
                    }
                }
            }
        });
        Some(task)
    }
}

/// How many pieces of a container's output may wait for its writer thread.
const OUTPUT_QUEUE: usize = 4096;

/// A HEALTHCHECK's word as a probe's result.
fn health(info: &ContainerInfo) -> Result<(), String> {
    match info.health.as_deref() {
        Some("healthy") => Ok(()),
        Some(other) => Err(format!("its health is {other}")),
        None if !info.is_running() => Err(format!("the container is {}", info.state)),
        None => Err("its image has no HEALTHCHECK".into()),
    }
}

/// A tcp or http probe of a container service addressed to a port the container listens on
/// inside (a compose habit) goes to the host port it is published on instead; a port the
/// service publishes (or any other) is left alone.
pub fn published(check: &ProbeCheck, ports: &[PortMapping]) -> ProbeCheck {
    let host_port = |port: u16| {
        if ports.iter().any(|m| m.host == port) {
            return None;
        }
        ports.iter().find(|m| m.container == port).map(|m| m.host)
    };
    match check {
        ProbeCheck::Tcp { host, port } if is_local(host) => match host_port(*port) {
            Some(p) => ProbeCheck::Tcp {
                host: host.clone(),
                port: p,
            },
            None => check.clone(),
        },
        ProbeCheck::Http { url, status } => {
            let Some((host, port, _)) = super::probe::split_url(url) else {
                return check.clone();
            };
            match host_port(port).filter(|_| is_local(&host)) {
                Some(p) => {
                    let from = format!(":{port}");
                    let to = format!(":{p}");
                    ProbeCheck::Http {
                        url: url.replacen(&from, &to, 1),
                        status: *status,
                    }
                }
                None => check.clone(),
            }
        }
        _ => check.clone(),
    }
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> Vec<PortMapping> {
        vec![PortMapping {
            host: 18123,
            container: 8123,
        }]
    }

    #[test]
    fn a_probe_of_the_inside_port_goes_to_the_published_one() {
        let tcp = ProbeCheck::Tcp {
            host: "127.0.0.1".into(),
            port: 8123,
        };
        assert!(matches!(
            published(&tcp, &maps()),
            ProbeCheck::Tcp { port: 18123, .. }
        ));
        let http = ProbeCheck::Http {
            url: "http://127.0.0.1:8123/ping".into(),
            status: 200,
        };
        match published(&http, &maps()) {
            ProbeCheck::Http { url, .. } => assert_eq!(url, "http://127.0.0.1:18123/ping"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_probe_of_the_published_port_or_another_host_is_left_alone() {
        let tcp = ProbeCheck::Tcp {
            host: "127.0.0.1".into(),
            port: 18123,
        };
        assert!(matches!(
            published(&tcp, &maps()),
            ProbeCheck::Tcp { port: 18123, .. }
        ));
        let far = ProbeCheck::Tcp {
            host: "10.1.2.3".into(),
            port: 8123,
        };
        assert!(matches!(
            published(&far, &maps()),
            ProbeCheck::Tcp { port: 8123, .. }
        ));
        // A port both published and listened on inside under another mapping stays.
        let both = vec![
            PortMapping {
                host: 8080,
                container: 80,
            },
            PortMapping {
                host: 9090,
                container: 8080,
            },
        ];
        let http = ProbeCheck::Http {
            url: "http://localhost:8080/".into(),
            status: 200,
        };
        match published(&http, &both) {
            ProbeCheck::Http { url, .. } => assert_eq!(url, "http://localhost:8080/"),
            other => panic!("{other:?}"),
        }
    }

    fn info(state: &str, health: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            id: "3f2a".into(),
            name: "ccscope-demo-db".into(),
            image: "img".into(),
            state: state.into(),
            health: health.map(str::to_string),
            labels: Default::default(),
            ports: Vec::new(),
            pid: None,
            started_at: None,
            exit_code: None,
            restart_count: 0,
        }
    }

    #[test]
    fn only_a_healthy_healthcheck_passes_and_a_missing_one_is_named() {
        assert_eq!(health(&info("running", Some("healthy"))), Ok(()));
        assert_eq!(
            health(&info("running", Some("starting"))),
            Err("its health is starting".into())
        );
        assert_eq!(
            health(&info("running", None)),
            Err("its image has no HEALTHCHECK".into())
        );
        assert_eq!(
            health(&info("exited", None)),
            Err("the container is exited".into())
        );
    }

    #[test]
    fn docker_exit_codes_become_exit_statuses() {
        assert_eq!(exit_status(0).code(), Some(0));
        assert_eq!(exit_status(3).code(), Some(3));
        assert_eq!(exit_status(137).code(), Some(137));
        assert!(!exit_status(-1).success());
    }
}
