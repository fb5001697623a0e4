//! Containers through the Docker Engine API (bollard, version negotiated; never the `docker`
//! CLI): connecting, images, create/start/inspect/list/stop/remove, the event stream, logs,
//! exec and stats. Mechanism only: which containers to stop, when and why is the supervisor's
//! and `stop`'s business. Every container ccscope creates carries the `ccscope.*` labels
//! below; every listing selects by label, so a container without them is never ours.
//!
//! Published ports bind 127.0.0.1 only: a developer's stack is for this machine, and a
//! ClickHouse without a password should not answer the network.

mod engine;
mod lines;
mod spec;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use crate::config::{PortMapping, PullPolicy};
pub use engine::Engine;
pub use spec::{ContainerSpec, definition_hash, sanitize_name};

/// The project a container belongs to.
pub const LABEL_PROJECT: &str = "ccscope.project";
/// The service of the project it runs.
pub const LABEL_SERVICE: &str = "ccscope.service";
/// The run that created it.
pub const LABEL_RUN_ID: &str = "ccscope.run_id";
/// A hash of the service's definition ([`definition_hash`]): same hash, same container.
pub const LABEL_DEFINITION: &str = "ccscope.definition";
/// Set by docker compose on the containers of a compose project.
pub const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// The address published ports bind on the host.
pub const PUBLISH_ADDRESS: &str = "127.0.0.1";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No daemon answers on the socket.
    #[error("reach the docker daemon at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    /// The image is not there and may not (or could not) be pulled.
    #[error("find image {image}: {reason}")]
    ImageMissing { image: String, reason: String },
    /// The container name belongs to a container that is not ours (or ours and running).
    #[error("create container {name}: the name is taken by container {id} ({why})")]
    NameTaken {
        name: String,
        id: String,
        why: String,
    },
    /// The container exited before its PID 1 could be seen (it is left, for its logs).
    #[error("start container {name}: it exited at once with code {exit_code}")]
    Exited {
        id: String,
        name: String,
        exit_code: i64,
    },
    /// The host identity of the container's PID 1 could not be read.
    #[error("read the host process of container {id} (pid {pid}): {reason}")]
    Identity {
        id: String,
        pid: i32,
        reason: String,
    },
    /// An operation took longer than it was given.
    #[error("{action}: no answer within {after:?}")]
    Timeout { action: String, after: Duration },
    /// Any other answer of the daemon.
    #[error("{action}: {reason}")]
    Api { action: String, reason: String },
}

impl DockerError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            DockerError::Unreachable { socket, reason } if reason.contains("permission denied") => {
                Some(format!(
                    "run as root or as a member of the group owning {socket} (usually `docker`)"
                ))
            }
            DockerError::Unreachable { .. } => Some(
                "is dockerd running? Start it, or set DOCKER_HOST to the socket it listens on"
                    .into(),
            ),
            DockerError::ImageMissing { image, .. } => Some(format!(
                "run `docker pull {image}` where a registry answers (or `docker load` it), then try again"
            )),
            DockerError::NameTaken { name, id, .. } => Some(format!(
                "remove that container (`docker rm -f {id}`) if it is yours to remove, or give the service another `name` than {name} in its [docker] table"
            )),
            DockerError::Identity { .. } => Some(
                "ccscope must see dockerd's processes in its own pid namespace (a rootless daemon is not supported)".into(),
            ),
            DockerError::Exited { id, .. } => Some(format!("see its output with `docker logs {id}`")),
            DockerError::Timeout { .. } | DockerError::Api { .. } => None,
        }
    }
}

/// Which containers: ours by project (any run), one service's, or a compose project's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector<'a> {
    Project(&'a str),
    Service {
        project: &'a str,
        service: &'a str,
    },
    Compose(&'a str),
    /// Every project's: any `ccscope.project` label (`ps --all`).
    AnyProject,
    /// Whoever's they are: the containers publishing any of these host ports (to name a
    /// holder), in one call.
    Publishing(&'a [u16]),
}

impl Selector<'_> {
    /// The Engine's filters for these containers: labels, or the published port.
    pub fn filters(&self) -> std::collections::HashMap<String, Vec<String>> {
        match self {
            Selector::Publishing(ports) => std::collections::HashMap::from([(
                "publish".to_string(),
                ports.iter().map(u16::to_string).collect(),
            )]),
            _ => std::collections::HashMap::from([("label".to_string(), self.label_filters())]),
        }
    }

    /// The Engine's `label` filters (`key=value`) that select exactly these containers.
    pub fn label_filters(&self) -> Vec<String> {
        match self {
            Selector::Project(p) => vec![format!("{LABEL_PROJECT}={p}")],
            Selector::Service { project, service } => vec![
                format!("{LABEL_PROJECT}={project}"),
                format!("{LABEL_SERVICE}={service}"),
            ],
            Selector::Compose(c) => vec![format!("{LABEL_COMPOSE_PROJECT}={c}")],
            Selector::AnyProject => vec![LABEL_PROJECT.to_string()],
            Selector::Publishing(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    /// Without docker's leading `/`.
    pub name: String,
    pub image: String,
    /// "running", "exited", "created", "paused", "restarting", "removing", "dead".
    pub state: String,
    /// "healthy", "unhealthy", "starting" (`None` without a HEALTHCHECK).
    pub health: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Published host:container ports.
    pub ports: Vec<PortMapping>,
    /// Host pid of its PID 1 while running.
    pub pid: Option<i32>,
    /// RFC 3339, as the Engine says it.
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
    pub restart_count: u64,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// Its `ccscope.definition` label.
    pub fn definition(&self) -> Option<&str> {
        self.labels.get(LABEL_DEFINITION).map(String::as_str)
    }

    /// Its `ccscope.project` label.
    pub fn project(&self) -> Option<&str> {
        self.labels.get(LABEL_PROJECT).map(String::as_str)
    }

    /// Its `ccscope.service` label.
    pub fn service(&self) -> Option<&str> {
        self.labels.get(LABEL_SERVICE).map(String::as_str)
    }
}

/// What happened to a container of the project, from the Engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    Died { id: String, exit_code: i64 },
    Health { id: String, status: String },
    Started { id: String },
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StopOutcome {
    /// It outlived its timeout and was SIGKILLed.
    pub killed: bool,
    pub took: Duration,
}

/// Which stream a log line came on: the same as a process service's.
pub use crate::launch::forward::OutputStream as LogStream;
/// A piece of a log line: a whole line, or a part of a longer one marked as continued.
pub use crate::launch::forward::Piece;

/// One sample of a container's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContainerStats {
    /// CPU time used since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_filter_by_exact_labels() {
        assert_eq!(
            Selector::Project("p").label_filters(),
            ["ccscope.project=p"]
        );
        assert_eq!(
            Selector::Service {
                project: "p",
                service: "s"
            }
            .label_filters(),
            ["ccscope.project=p", "ccscope.service=s"]
        );
        assert_eq!(
            Selector::Compose("otel").label_filters(),
            ["com.docker.compose.project=otel"]
        );
    }

    #[test]
    fn errors_say_what_failed_and_what_to_do() {
        let e = DockerError::Unreachable {
            socket: "unix:///nowhere.sock".into(),
            reason: "no socket there".into(),
        };
        assert_eq!(
            e.to_string(),
            "reach the docker daemon at unix:///nowhere.sock: no socket there"
        );
        assert!(e.hint().unwrap().contains("DOCKER_HOST"));
        let e = DockerError::ImageMissing {
            image: "ccscope-test/none:1".into(),
            reason: "it is not on this host and pull = \"never\"".into(),
        };
        assert!(e.to_string().contains("ccscope-test/none:1"));
        assert!(
            e.hint()
                .unwrap()
                .contains("docker pull ccscope-test/none:1")
        );
    }
}
