//! ccscope's own D-Bus interface: the control socket's twin on the session bus (the system
//! bus with `run --system`).
//!
//! Each supervisor owns the name `dev.ccscope.Project.<project>` and exports its project at
//! `/dev/ccscope/project/<project>` (the project name escaped by [`names::escape`]) with the
//! interface `dev.ccscope.Project1` ([`object`], described by
//! `dbus/dev.ccscope.Project1.xml`): the verbs as methods, the run's state as properties,
//! and signals when a service changes state, the stack is ready, or a stop is done.
//!
//! The bus side never touches the driver's state: a call becomes a [`Call`] the driver turns
//! into the same request the control socket hands it, and the driver tells [`Bus`] what
//! happened (a hook per effect), which keeps the properties and sends the signals from one
//! task, in order. Nothing here wakes up by itself: no timer, no polling. Without a bus the
//! supervisor warns once and runs on.

mod names;
mod object;
mod server;

pub use names::{INTERFACE, NAME_PREFIX, PATH_PREFIX, bus_name, escape, object_path};
pub use object::{ProjectError, ProjectObject, ServiceRow};
pub use server::{Bus, export};

use tokio::sync::oneshot;

use crate::control::{Reply, Request};

/// What a caller on the bus asks the driver, its sender already checked.
pub enum Call {
    /// A verb, exactly as the control socket carries it, with who asked (the bus daemon's word
    /// on the caller's uid and pid); answered on `reply` once done.
    Request {
        request: Request,
        uid: u32,
        pid: i32,
        reply: oneshot::Sender<Reply>,
    },
    /// Stop the whole stack as a SIGTERM would; the report comes back through
    /// [`Bus::stop_finished`].
    StopProject,
}

/// A `StopProject` in the journal, with who asked: the machine's own entries say the stop
/// came as a signal.
fn audit_stop_project(project: &str, uid: u32, pid: u32) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default();
    crate::audit::Event {
        event: "control.request",
        project,
        service: None,
        message: format!("stop-project (all) asked over D-Bus by uid {uid} pid {pid} ({comm})"),
        fields: vec![
            ("CCSCOPE_VERB", "stop-project".to_string()),
            ("CCSCOPE_SERVICES", String::new()),
            ("CCSCOPE_ACTOR_UID", uid.to_string()),
            ("CCSCOPE_ACTOR_PID", pid.to_string()),
            ("CCSCOPE_ACTOR_COMM", comm),
        ],
    }
    .record(crate::audit::Priority::Notice);
}
