//! What an importer makes of a file: the services in ccscope's terms, before they are written
//! out as TOML. Paths are absolute here; the writer makes them relative to the output file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::yaml::Pos;
use crate::config::Location;

/// The stack read from every file.
#[derive(Debug, Default)]
pub(crate) struct Stack {
    /// Compose projects whose containers the stack's `stop` sweeps.
    pub compose_projects: Vec<String>,
    pub services: Vec<ServiceOut>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceOut {
    pub name: String,
    /// `file:line` of its definition, written above it.
    pub origin: String,
    /// Where its definition starts, for warnings about the service as a whole.
    pub at: Location,
    pub launch: LaunchOut,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub env_files: Vec<PathBuf>,
    pub depends_on: Vec<DependencyOut>,
    pub ready: Option<ProbeOut>,
    pub liveness: Option<ProbeOut>,
    pub restart: Option<RestartOut>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<Duration>,
    pub ports: Vec<u16>,
    /// Comment lines written above the service (without `# `).
    pub notes: Vec<String>,
}

impl ServiceOut {
    pub fn new(name: String, file: &str, at: Pos, launch: LaunchOut) -> ServiceOut {
        ServiceOut {
            name,
            origin: format!("{file}:{}", at.line),
            at: Location {
                file: file.to_string(),
                line: at.line,
                column: at.column,
            },
            launch,
            cwd: None,
            env: BTreeMap::new(),
            env_files: Vec::new(),
            depends_on: Vec::new(),
            ready: None,
            liveness: None,
            restart: None,
            stop_signal: None,
            stop_timeout: None,
            ports: Vec::new(),
            notes: Vec::new(),
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "one per imported service, built once and read once"
)]
#[derive(Debug, Clone)]
pub(crate) enum LaunchOut {
    Shell(String),
    Docker(DockerOut),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DockerOut {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub name: Option<String>,
    /// `host:container`.
    pub ports: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub volumes: Vec<VolumeOut>,
    pub labels: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub init: Option<bool>,
    pub pull: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct VolumeOut {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum VolumeSource {
    /// A host path bound into the container (absolute).
    Bind(PathBuf),
    /// A named volume, by its name in docker.
    Named(String),
}

#[derive(Debug, Clone)]
pub(crate) struct DependencyOut {
    pub name: String,
    /// `started`, `healthy` or `completed_successfully`.
    pub condition: &'static str,
    pub restart: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ProbeOut {
    pub check: CheckOut,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) enum CheckOut {
    Exec(Vec<String>),
    Http(String),
}

#[derive(Debug, Clone)]
pub(crate) struct RestartOut {
    /// `no`, `on-failure` or `always`.
    pub policy: &'static str,
    pub initial_backoff: Option<Duration>,
    pub max_restarts: Option<u32>,
}
