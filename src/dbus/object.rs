//! The object a supervisor exports: `dev.ccscope.Project1` at `/dev/ccscope/project/<p>`.
//!
//! Its methods are the control socket's verbs: each call's sender is checked first (its uid,
//! asked of the bus daemon), then the same [`Request`] the CLI sends goes to the driver, and
//! the call is answered with the supervisor's [`Reply`] once the request is done. Its
//! properties are what the driver last recorded of the run, kept in [`Shared`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, watch};
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::proxy::CacheProperties;
use zbus::{Connection, fdo, interface};

use super::Call;
use crate::control::{Reply, Request};
use crate::registry::ServiceStateRecord;

/// One service as the `Services` property shows it (`(ssbuauaqs)`): name, state, ready,
/// restarts, pids (its main process first, then the rest of its scope's), declared ports, and
/// the supervisor's last word on it.
pub type ServiceRow = (String, String, bool, u32, Vec<u32>, Vec<u16>, String);

/// The errors a call is answered with, `dev.ccscope.Project1.Error.<Kind>`: the kinds of the
/// control socket's [`crate::control::ReplyError`], and `AccessDenied`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "dev.ccscope.Project1.Error")]
pub enum ProjectError {
    /// The caller is neither the supervisor's user nor root.
    AccessDenied(String),
    /// A service the configuration does not have.
    UnknownService(String),
    /// The stack is being stopped: nothing is started or restarted any more.
    Stopping(String),
    /// The backend cannot do it (a pause on process groups).
    Unsupported(String),
    /// A reload read a configuration that does not hold.
    Config(String),
    /// The request itself is not one the supervisor reads.
    Invalid(String),
    /// It was tried, and did not work (a service that did not come up again, say).
    Failed(String),
}

/// What the driver last said of the run, read by the properties and kept by [`super::Bus`].
#[derive(Default)]
pub(crate) struct Shared {
    /// `starting`, `running`, `stopping` or `ended`.
    pub state: String,
    pub services: BTreeMap<String, Known>,
    /// Each service's declared ports, from the configuration the run began with.
    pub ports: BTreeMap<String, Vec<u16>>,
    /// The `StopProject` calls waiting for the stop report (as JSON).
    pub stop_waiters: Vec<oneshot::Sender<String>>,
    /// A `StopProject` was passed on to the driver already: a second one waits for the same
    /// stop (another stop signal would cut its grace short).
    pub stop_asked: bool,
}

/// A service's last recorded state, and where its processes are.
pub(crate) struct Known {
    pub record: ServiceStateRecord,
    pub cgroup: Option<PathBuf>,
}

impl Shared {
    pub fn rows(&self) -> Vec<ServiceRow> {
        self.services
            .iter()
            .map(|(name, known)| {
                let r = &known.record;
                // The main process a record names is gone in the states after its end.
                let alive = PROCESS_STATES.contains(&r.state.as_str());
                let main = r.main_pid.filter(|_| alive).map(|p| p as u32);
                let mut pids: Vec<u32> = main.into_iter().collect();
                if let Some(cgroup) = &known.cgroup {
                    let procs = crate::contain::cgroup::Cgroup::at(cgroup).procs();
                    for pid in procs.unwrap_or_default().into_iter().map(|p| p as u32) {
                        if !pids.contains(&pid) {
                            pids.push(pid);
                        }
                    }
                }
                let reason = r.message.clone().or_else(|| r.last_exit.clone());
                (
                    name.clone(),
                    r.state.clone(),
                    r.ready,
                    r.restarts,
                    pids,
                    self.ports.get(name).cloned().unwrap_or_default(),
                    reason.unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The supervisor's states in which a service's main process runs.
const PROCESS_STATES: &[&str] = &["launching", "starting", "running", "stopping", "paused"];

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Nothing panics while holding it; a poisoned lock still holds the last state.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The object of one project.
pub struct ProjectObject {
    pub(crate) project: String,
    /// The supervisor's own uid: the one user (beside root) it serves, as the control socket.
    pub(crate) owner: u32,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) calls: mpsc::UnboundedSender<Call>,
    /// How many calls are being carried out: the supervisor's exit waits for their answers.
    pub(crate) replying: Arc<watch::Sender<usize>>,
}

/// Counts a call while it is being carried out.
struct Replying(Arc<watch::Sender<usize>>);

impl Replying {
    fn new(count: &Arc<watch::Sender<usize>>) -> Replying {
        count.send_modify(|n| *n += 1);
        Replying(count.clone())
    }
}

impl Drop for Replying {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl ProjectObject {
    /// Who sent the call, by uid and pid as the bus daemon vouches for them; refused unless it
    /// is the supervisor's user or root (as the control socket).
    async fn caller(
        &self,
        header: Option<&Header<'_>>,
        connection: &Connection,
    ) -> Result<(u32, u32), ProjectError> {
        let Some(header) = header else {
            // Not a call from the bus: the object asking itself for a PropertiesChanged.
            return Ok((self.owner, std::process::id()));
        };
        let Some(sender) = header.sender() else {
            return Err(ProjectError::AccessDenied(
                "the call carries no sender, so its user cannot be checked".into(),
            ));
        };
        let daemon = fdo::DBusProxy::builder(connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| asking_failed(sender, &e))?;
        let name = BusName::Unique(sender.to_owned());
        let uid = daemon
            .get_connection_unix_user(name.clone())
            .await
            .map_err(|e| asking_failed(sender, &e))?;
        if uid != self.owner && uid != 0 {
            return Err(ProjectError::AccessDenied(format!(
                "uid {uid} may not control project `{}`: its supervisor serves only its own user \
                 (uid {}) and root",
                self.project, self.owner
            )));
        }
        let pid = daemon
            .get_connection_unix_process_id(name)
            .await
            .unwrap_or(0);
        Ok((uid, pid))
    }

    /// Hands `request` to the driver as the control socket does, and answers with its reply.
    async fn ask(
        &self,
        header: &Header<'_>,
        connection: &Connection,
        request: Request,
    ) -> Result<String, ProjectError> {
        let (uid, pid) = self.caller(Some(header), connection).await?;
        let _replying = Replying::new(&self.replying);
        let (reply, replied) = oneshot::channel();
        let call = Call::Request {
            request,
            uid,
            pid: pid as i32,
            reply,
        };
        self.calls.send(call).map_err(|_| {
            ProjectError::Failed("the supervisor is ending: it takes no more requests".into())
        })?;
        let reply = replied
            .await
            .map_err(|_| ProjectError::Failed("the supervisor ended before it answered".into()))?;
        answer(reply)
    }
}

fn asking_failed(sender: &str, e: &dyn std::fmt::Display) -> ProjectError {
    ProjectError::AccessDenied(format!(
        "the bus daemon did not say which user {sender} is ({e}), so the call is refused"
    ))
}

/// A done request's reply as the call's answer (the JSON `ccscope VERB --json` prints), or
/// the error it names.
pub(crate) fn answer(reply: Reply) -> Result<String, ProjectError> {
    if reply.ok {
        return Ok(serde_json::to_string(&reply).unwrap_or_default());
    }
    let (kind, mut message) = match &reply.error {
        Some(e) => (e.kind.as_str(), e.message.clone()),
        None => ("failed", reply.message.clone()),
    };
    if let Some(hint) = reply.error.as_ref().and_then(|e| e.hint.as_ref()) {
        message.push_str(&format!(" ({hint})"));
    }
    Err(match kind {
        "unknown_service" => ProjectError::UnknownService(message),
        "stopping" => ProjectError::Stopping(message),
        "unsupported" => ProjectError::Unsupported(message),
        "config" => ProjectError::Config(message),
        "invalid" => ProjectError::Invalid(message),
        _ => ProjectError::Failed(message),
    })
}

fn denied(e: ProjectError) -> fdo::Error {
    fdo::Error::AccessDenied(match e {
        ProjectError::AccessDenied(m) | ProjectError::Failed(m) => m,
        other => other.to_string(),
    })
}

#[interface(name = "dev.ccscope.Project1")]
impl ProjectObject {
    /// Starts these services (and what they need that is not up). Each verb answers once it is
    /// done, with the reply `ccscope VERB --json` prints, or with an error
    /// `dev.ccscope.Project1.Error.<Kind>` saying why.
    #[zbus(out_args("reply"))]
    async fn start(
        &self,
        services: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        if services.is_empty() {
            return Err(ProjectError::Invalid(
                "Start names the services to start".into(),
            ));
        }
        self.ask(&header, connection, Request::Start { services })
            .await
    }

    /// Stops these services and what requires them; the supervisor holds them stopped.
    #[zbus(out_args("reply"))]
    async fn stop(
        &self,
        services: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        if services.is_empty() {
            return Err(ProjectError::Invalid(
                "Stop names the services to stop; StopProject stops the whole stack".into(),
            ));
        }
        self.ask(&header, connection, Request::Stop { services })
            .await
    }

    /// Ends and starts again these services (the whole stack, in order, when none is named),
    /// waiting for them to be ready.
    #[zbus(out_args("reply"))]
    async fn restart(
        &self,
        services: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        let all = services.is_empty();
        self.ask(&header, connection, Request::Restart { services, all })
            .await
    }

    /// Freezes these services' cgroups (all when none is named).
    #[zbus(out_args("reply"))]
    async fn pause(
        &self,
        services: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        self.ask(&header, connection, Request::Pause { services })
            .await
    }

    /// Thaws them (all when none is named).
    #[zbus(out_args("reply"))]
    async fn resume(
        &self,
        services: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        self.ask(&header, connection, Request::Resume { services })
            .await
    }

    /// Reads the configuration again and applies what changed.
    #[zbus(out_args("reply"))]
    async fn reload(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        self.ask(&header, connection, Request::Reload { dry_run: false })
            .await
    }

    /// Stops the whole stack as SIGTERM to the supervisor would, and answers with the stop
    /// report (the JSON `ccscope stop --json` prints); the supervisor exits after.
    #[zbus(out_args("report"))]
    async fn stop_project(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<String, ProjectError> {
        let (uid, pid) = self.caller(Some(&header), connection).await?;
        let _replying = Replying::new(&self.replying);
        let (waiter, report) = oneshot::channel();
        let pass_on = {
            let mut shared = lock(&self.shared);
            shared.stop_waiters.push(waiter);
            let first = !shared.stop_asked && shared.state != "stopping";
            shared.stop_asked = true;
            first
        };
        if pass_on {
            super::audit_stop_project(&self.project, uid, pid);
            if self.calls.send(Call::StopProject).is_err() {
                return Err(ProjectError::Failed(
                    "the supervisor is ending: it takes no more requests".into(),
                ));
            }
        }
        report.await.map_err(|_| {
            ProjectError::Failed(
                "the supervisor ended without a stop of its own to report (`ccscope stop` took \
                 over, or it stood down)"
                    .into(),
            )
        })
    }

    /// The run's state: `starting`, `running` (every service was ready), `stopping`, `ended`.
    #[zbus(property)]
    async fn state(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<String> {
        self.caller(header.as_ref(), connection)
            .await
            .map_err(denied)?;
        Ok(lock(&self.shared).state.clone())
    }

    /// Each service the run knows: `(name, state, ready, restarts, pids, ports, reason)`.
    #[zbus(property)]
    async fn services(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<Vec<ServiceRow>> {
        self.caller(header.as_ref(), connection)
            .await
            .map_err(denied)?;
        Ok(lock(&self.shared).rows())
    }

    /// The project's name, unescaped.
    #[zbus(property(emits_changed_signal = "const"))]
    fn project(&self) -> String {
        self.project.clone()
    }

    /// A service entered a new state (`restarting` after a crash, say), with why.
    #[zbus(signal)]
    pub(crate) async fn service_state_changed(
        emitter: &SignalEmitter<'_>,
        service: &str,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    /// Every selected service is up and ready.
    #[zbus(signal)]
    pub(crate) async fn stack_ready(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    /// The supervisor's stop of the whole stack is done: the report, as JSON.
    #[zbus(signal)]
    pub(crate) async fn stop_finished(
        emitter: &SignalEmitter<'_>,
        report: &str,
    ) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ReplyError;

    fn reply(ok: bool, kind: Option<&str>) -> Reply {
        Reply {
            verb: "restart".into(),
            ok,
            supervisor_pid: 7,
            message: "restarted dashboard".into(),
            services: vec![],
            error: kind.map(|k| ReplyError {
                kind: k.into(),
                message: "no service `x`".into(),
                hint: Some("the services are: a, b".into()),
            }),
            elapsed_ms: 3,
        }
    }

    #[test]
    fn a_done_request_answers_with_the_clis_json_and_a_refusal_with_its_kind() {
        let json = answer(reply(true, None)).unwrap();
        let back: Reply = serde_json::from_str(&json).unwrap();
        assert_eq!(back, reply(true, None));
        let err = answer(reply(false, Some("unknown_service"))).unwrap_err();
        assert!(matches!(&err, ProjectError::UnknownService(m)
            if m == "no service `x` (the services are: a, b)"));
        let name = zbus::DBusError::name(&err);
        assert_eq!(name.as_str(), "dev.ccscope.Project1.Error.UnknownService");
        for (kind, name) in [
            ("stopping", "Stopping"),
            ("unsupported", "Unsupported"),
            ("config", "Config"),
            ("invalid", "Invalid"),
            ("failed", "Failed"),
            ("something new", "Failed"),
        ] {
            let err = answer(reply(false, Some(kind))).unwrap_err();
            assert_eq!(
                zbus::DBusError::name(&err).as_str(),
                format!("dev.ccscope.Project1.Error.{name}")
            );
        }
    }

    #[test]
    fn rows_show_the_recorded_state_and_the_declared_ports() {
        let mut shared = Shared::default();
        shared.ports.insert("web".into(), vec![8080]);
        shared.services.insert(
            "web".into(),
            Known {
                record: ServiceStateRecord {
                    project: "p".into(),
                    service: "web".into(),
                    run_id: "r".into(),
                    state: "running".into(),
                    ready: false,
                    restarts: 2,
                    main_pid: Some(42),
                    last_exit: Some("exit code 3".into()),
                    message: None,
                    since_ms: 0,
                    updated_at_ms: 0,
                    trigger: None,
                },
                cgroup: None,
            },
        );
        let mut ended = shared.services["web"].record.clone();
        ended.state = "failed".into();
        shared.services.insert(
            "db".into(),
            Known {
                record: ended,
                cgroup: None,
            },
        );
        assert_eq!(
            shared.rows()[0].4,
            Vec::<u32>::new(),
            "no pid once it failed"
        );
        shared.services.remove("db");
        assert_eq!(
            shared.rows(),
            vec![(
                "web".to_string(),
                "running".to_string(),
                false,
                2,
                vec![42],
                vec![8080],
                "exit code 3".to_string()
            )]
        );
    }
}

#[cfg(test)]
mod xml_tests {
    use super::*;
    use zbus::object_server::Interface;

    const XML: &str = include_str!("../../dbus/dev.ccscope.Project1.xml");

    /// The interface as zbus generates it from the code above.
    fn generated() -> String {
        let (calls, _) = mpsc::unbounded_channel();
        let object = ProjectObject {
            project: "p".into(),
            owner: 0,
            shared: Default::default(),
            calls,
            replying: Arc::new(watch::Sender::new(0)),
        };
        let mut xml = String::new();
        object.introspect_to_writer(&mut xml, 2);
        xml
    }

    /// The `<interface>` element of `xml`, each line trimmed.
    fn interface(xml: &str) -> Vec<String> {
        let start = xml.find("<interface name=\"dev.ccscope.Project1\">");
        let end = xml.find("</interface>");
        let (Some(start), Some(end)) = (start, end) else {
            return vec![];
        };
        xml[start..end]
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn the_shipped_xml_is_what_the_code_serves() {
        if std::env::var_os("CCSCOPE_REGENERATE_XML").is_some() {
            // The recipe of dbus/README.md: the file's head kept, its interface written anew.
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dbus/dev.ccscope.Project1.xml");
            let head = XML.find("  <interface").map_or(XML, |i| &XML[..i]);
            std::fs::write(path, format!("{head}{}</node>\n", generated())).unwrap();
            return;
        }
        let generated = interface(&generated());
        assert!(!generated.is_empty());
        assert_eq!(
            interface(XML),
            generated,
            "dbus/dev.ccscope.Project1.xml is out of step with src/dbus/object.rs: \
             regenerate it as dbus/README.md says\n{}",
            generated.join("\n")
        );
    }
}
