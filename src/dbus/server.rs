//! Exporting a project's object on the bus, and [`Bus`]: the driver's handle on it, which
//! keeps the properties and has one task send the signals, in the order things happened.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use zbus::fdo::RequestNameFlags;
use zbus::fdo::RequestNameReply;
use zbus::object_server::InterfaceRef;

use super::Call;
use super::names::{bus_name, object_path};
use super::object::{Known, ProjectObject, Shared, lock};
use crate::config::Config;
use crate::contain::BusKind;
use crate::registry::{RunState, ServiceStateRecord};
use crate::stop::ShutdownReport;

/// How long connecting and taking the name may take before the supervisor gives up on the bus.
const EXPORT_DEADLINE: Duration = Duration::from_secs(5);

/// How long the supervisor's exit waits for its last answers and signals to be out.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the project name is too long for a bus name (255 bytes at most, escaped)")]
    NameTooLong,
    #[error(
        "connect to the {bus} bus: {reason} (is a bus running? the session bus is found by \
         DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus)"
    )]
    Connect { bus: &'static str, reason: String },
    #[error("serve {path}: {source}")]
    Serve { path: String, source: zbus::Error },
    #[error("take the name {name}: {source}")]
    Name { name: String, source: zbus::Error },
    #[error("take the name {name}: another connection owns it")]
    Taken { name: String },
    #[error("connect to the bus within {} s", EXPORT_DEADLINE.as_secs())]
    TimedOut,
}

/// What the signal task is told, in order.
enum Event {
    Service {
        service: String,
        state: String,
        reason: String,
        /// Its state is not the one it had (a record may change only `ready` or the message).
        changed: bool,
    },
    State,
    StackReady,
    StopFinished(String),
}

/// The driver's handle on the exported object: every method a one-line hook, doing nothing
/// when there is no bus.
pub struct Bus {
    exported: Option<Exported>,
}

struct Exported {
    connection: zbus::Connection,
    shared: Arc<Mutex<Shared>>,
    /// Taken at the exit, which closes the signal task.
    events: Option<mpsc::UnboundedSender<Event>>,
    signals: Option<JoinHandle<()>>,
    replying: Arc<watch::Sender<usize>>,
}

/// Exports `config`'s project on `bus`; `forward` hands each call to the driver (false: it
/// is gone). Without a bus, or when the name is taken, warns once and returns a [`Bus`] that
/// does nothing: the supervisor runs on.
pub async fn export(
    config: &Config,
    bus: BusKind,
    forward: impl FnMut(Call) -> bool + 'static,
) -> Bus {
    let project = &config.project.name;
    let exported = match tokio::time::timeout(EXPORT_DEADLINE, exported(config, bus, forward)).await
    {
        Ok(exported) => exported,
        Err(_) => Err(ExportError::TimedOut),
    };
    match exported {
        Ok(exported) => Bus {
            exported: Some(exported),
        },
        Err(e) => {
            tracing::warn!(
                "the D-Bus interface of `{project}` is not exported: could not {e}; the \
                 supervisor runs on without it (the ccscope commands reach it all the same)"
            );
            Bus { exported: None }
        }
    }
}

async fn exported(
    config: &Config,
    bus: BusKind,
    mut forward: impl FnMut(Call) -> bool + 'static,
) -> Result<Exported, ExportError> {
    let project = &config.project.name;
    let name = bus_name(project).ok_or(ExportError::NameTooLong)?;
    let path = object_path(project);
    let (kind, connection) = match bus {
        BusKind::Session => ("session", zbus::Connection::session().await),
        BusKind::System => ("system", zbus::Connection::system().await),
    };
    let connection = connection.map_err(|e| ExportError::Connect {
        bus: kind,
        reason: without_os_error(&e.to_string()),
    })?;
    let shared = Arc::new(Mutex::new(Shared {
        state: "starting".into(),
        ports: config
            .services
            .iter()
            .map(|(name, s)| (name.clone(), s.ports.clone()))
            .collect(),
        ..Shared::default()
    }));
    let (calls, mut heard) = mpsc::unbounded_channel();
    let replying = Arc::new(watch::Sender::new(0));
    let object = ProjectObject {
        project: project.clone(),
        owner: crate::proc::sys::euid(),
        shared: shared.clone(),
        calls,
        replying: replying.clone(),
    };
    let serve = |source| ExportError::Serve {
        path: path.clone(),
        source,
    };
    connection
        .object_server()
        .at(path.as_str(), object)
        .await
        .map_err(serve)?;
    let iface: InterfaceRef<ProjectObject> = connection
        .object_server()
        .interface(path.as_str())
        .await
        .map_err(serve)?;
    // The object is there before its name is: whoever sees the name can call it.
    let reply = connection
        .request_name_with_flags(name.as_str(), RequestNameFlags::DoNotQueue.into())
        .await
        .map_err(|source| ExportError::Name {
            name: name.clone(),
            source,
        })?;
    if matches!(reply, RequestNameReply::Exists | RequestNameReply::InQueue) {
        return Err(ExportError::Taken { name });
    }
    tokio::task::spawn_local(async move {
        while let Some(call) = heard.recv().await {
            if !forward(call) {
                return;
            }
        }
    });
    let (events, told) = mpsc::unbounded_channel();
    let signals = tokio::task::spawn_local(send_signals(iface, told));
    Ok(Exported {
        connection,
        shared,
        events: Some(events),
        signals: Some(signals),
        replying,
    })
}

/// `text` without the ` (os error N)` std puts after an I/O error's words.
fn without_os_error(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(at) = out.find(" (os error ") {
        let digits = out[at + 11..].find(')').map(|end| at + 11 + end);
        match digits.filter(|end| out[at + 11..*end].bytes().all(|b| b.is_ascii_digit())) {
            Some(end) => out.replace_range(at..=end, ""),
            None => break,
        }
    }
    out
}

/// The one task that sends the object's signals, each as it was told.
async fn send_signals(
    iface: InterfaceRef<ProjectObject>,
    mut told: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = told.recv().await {
        let emitter = iface.signal_emitter();
        let sent = match event {
            Event::Service {
                service,
                state,
                reason,
                changed,
            } => {
                let object = iface.get().await;
                let signal = match changed {
                    true => {
                        ProjectObject::service_state_changed(emitter, &service, &state, &reason)
                            .await
                    }
                    false => Ok(()),
                };
                signal.and(object.services_changed(emitter).await)
            }
            Event::State => iface.get().await.state_changed(emitter).await,
            Event::StackReady => ProjectObject::stack_ready(emitter).await,
            Event::StopFinished(report) => ProjectObject::stop_finished(emitter, &report).await,
        };
        if let Err(e) = sent {
            tracing::debug!("a D-Bus signal was not sent: {e}");
        }
    }
}

impl Bus {
    /// No bus: every hook does nothing.
    pub fn none() -> Bus {
        Bus { exported: None }
    }

    fn tell(&self, event: Event) {
        if let Some(events) = self.exported.as_ref().and_then(|e| e.events.as_ref()) {
            let _ = events.send(event);
        }
    }

    /// A service's state was recorded (`Effect::Record`): `ServiceStateChanged` when its
    /// state is new, and `PropertiesChanged` of `Services`. `cgroup` is its instance's, whose
    /// processes the `Services` property lists.
    pub fn record(&self, record: &ServiceStateRecord, cgroup: Option<&Path>) {
        let Some(exported) = &self.exported else {
            return;
        };
        let known = Known {
            record: record.clone(),
            cgroup: cgroup.map(Path::to_path_buf),
        };
        let before = lock(&exported.shared)
            .services
            .insert(record.service.clone(), known);
        let changed = before.is_none_or(|k| k.record.state != record.state);
        let reason = record.message.clone().or_else(|| record.last_exit.clone());
        self.tell(Event::Service {
            service: record.service.clone(),
            state: record.state.clone(),
            reason: reason.unwrap_or_default(),
            changed,
        });
    }

    /// The run's state changed (`Effect::RunState`).
    pub fn run_state(&self, state: RunState) {
        self.set_state(state.as_str());
    }

    fn set_state(&self, state: &str) {
        let Some(exported) = &self.exported else {
            return;
        };
        lock(&exported.shared).state = state.to_string();
        self.tell(Event::State);
    }

    /// Every service is up (`Effect::StackUp`): the state is `running`, and `StackReady`.
    pub fn stack_ready(&self) {
        self.set_state("running");
        self.tell(Event::StackReady);
    }

    /// The supervisor's stop of the stack is done: `StopFinished`, and the answer of every
    /// `StopProject` call waiting for it.
    pub fn stop_finished(&self, report: &ShutdownReport) {
        let Some(exported) = &self.exported else {
            return;
        };
        let json = serde_json::to_string(report).unwrap_or_default();
        let waiters = std::mem::take(&mut lock(&exported.shared).stop_waiters);
        for waiter in waiters {
            let _ = waiter.send(json.clone());
        }
        self.tell(Event::StopFinished(json));
    }

    /// The supervisor exits (`Effect::Exit`): the state is `ended`; the calls in flight are
    /// answered (those the driver will not answer now, with an error), the signals sent, and
    /// a round trip through the bus daemon makes sure they left, each within a deadline.
    pub async fn flush(&mut self) {
        self.set_state("ended");
        let Some(exported) = &mut self.exported else {
            return;
        };
        // A StopProject still waiting has no stop of the supervisor's own to wait for (it
        // stood down for `ccscope stop`): it is answered so.
        lock(&exported.shared).stop_waiters.clear();
        let mut replying = exported.replying.subscribe();
        let _ = tokio::time::timeout(FLUSH_DEADLINE, replying.wait_for(|n| *n == 0)).await;
        // The answer goes out from the call's task once its handler returned.
        tokio::task::yield_now().await;
        exported.events = None;
        if let Some(signals) = exported.signals.take() {
            let _ = tokio::time::timeout(FLUSH_DEADLINE, signals).await;
        }
        let ping = exported.connection.call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
            &(),
        );
        let _ = tokio::time::timeout(FLUSH_DEADLINE, ping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_errors_number_is_left_out() {
        assert_eq!(
            without_os_error("Failed to connect to `x`: No such file or directory (os error 2)"),
            "Failed to connect to `x`: No such file or directory"
        );
        assert_eq!(without_os_error("a (os error x) b"), "a (os error x) b");
        assert_eq!(without_os_error("plain"), "plain");
    }
}
