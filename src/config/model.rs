//! The validated stack definition: what the rest of ccscope works from. Every value here has
//! passed validation; defaults are already applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::duration::HumanDuration;

/// Where a configuration came from; errors name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ConfigSource {
    File(PathBuf),
    Profile(String),
}

impl ConfigSource {
    /// The name shown in front of `:line:column`.
    pub fn display_name(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Profile(name) => format!("<profile {name}>"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub source: ConfigSource,
    pub project: Project,
    pub services: BTreeMap<String, Service>,
    /// `[redirects.<exe>]`: executables whose subcommands lead into ccscope.
    pub redirects: BTreeMap<String, super::redirects::Redirect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    pub state_dir: Option<PathBuf>,
    /// Compose projects whose containers (`com.docker.compose.project=<name>`) belong to this
    /// stack: `stop` sweeps them with ours.
    pub docker_compose_projects: Vec<String>,
    /// `[project.alerts]`: who is told when a service fails.
    pub alerts: Alerts,
}

/// `[project.alerts]`: a service that crashes, gives up, loses liveness, fails to start or
/// outlives a stop is told as a desktop notification and/or to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alerts {
    /// A notification through `org.freedesktop.Notifications` on the session bus.
    pub desktop: bool,
    /// A command run with the alert as JSON on its stdin.
    pub exec: Option<Vec<String>>,
    /// At most one alert per service and kind within this long; the rest are counted.
    pub rate_limit: HumanDuration,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            desktop: true,
            exec: None,
            rate_limit: HumanDuration(DEFAULT_ALERT_RATE_LIMIT),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub launch: Launch,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub env_files: Vec<PathBuf>,
    pub depends_on: BTreeMap<String, DependencyCondition>,
    /// The dependencies declared with `restart = true`: a deliberate restart of one of them
    /// restarts this service after it (compose's semantics). Each is also in `depends_on`.
    pub restart_with: BTreeSet<String>,
    pub ready: Option<Probe>,
    pub liveness: Option<Probe>,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    pub stop_timeout: HumanDuration,
    pub ports: Vec<u16>,
    pub discover: DiscoverRules,
    pub limits: Limits,
    pub optional: bool,
    /// Files whose change restarts the service.
    pub watch: Option<WatchSpec>,
}

/// `watch = { paths, ignore, debounce }`: restart the service when matching files change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchSpec {
    /// The configuration file's directory: relative globs are relative to it. For a built-in
    /// profile, the directory ccscope was started in.
    pub base: PathBuf,
    /// Globs of the files to watch (`*` stays within one path component, `**` crosses any
    /// number of them); relative to `base`, or absolute. Never empty.
    pub paths: Vec<String>,
    /// Globs of files never to react to, relative to `base` or absolute.
    pub ignore: Vec<String>,
    /// How long changes must have stopped before the burst counts as one change.
    pub debounce: HumanDuration,
}

/// A `watch` glob as ccscope reads it, for validation and for the watcher alike: `*` and `?`
/// never match a `/`, `**` matches any number of path components, `{a,b}` and `[ab]` work.
pub fn watch_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
}

/// How a service's process is started.
#[expect(
    clippy::large_enum_variant,
    reason = "one per service, built once; boxing would only cost every match a deref"
)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Launch {
    /// An argv array, executed directly.
    Command { argv: Vec<String> },
    /// A command line run by `/bin/sh -c`, only where the config says `shell = "…"`.
    Shell { script: String },
    /// A container run through the Docker Engine API.
    Docker(DockerSpec),
}

#[derive(Debug, Clone, Serialize)]
pub struct DockerSpec {
    pub image: String,
    /// Replaces the image's CMD.
    pub command: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// The container's name; `None` means `ccscope-<project>-<service>`.
    pub name: Option<String>,
    pub ports: Vec<PortMapping>,
    pub env: BTreeMap<String, String>,
    /// `host:container[:ro|:rw]`; a relative host path is already resolved against the
    /// configuration file's directory, a named volume (no `/`, not starting with `.`) is kept.
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// A network to attach to instead of the default bridge.
    pub network: Option<String>,
    pub workdir: Option<String>,
    /// `user`, `user:group`, `uid` or `uid:gid`, as docker takes it.
    pub user: Option<String>,
    /// An init process as PID 1 (docker's `--init`), so the stop signal reaches the service.
    pub init: bool,
    pub pull: PullPolicy,
}

/// When the image is pulled before the container is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Only when the image is not there.
    #[default]
    Missing,
    /// Never: a missing image is an error.
    Never,
    /// Before every start.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// The dependency's process has been launched.
    Started,
    /// The dependency's readiness probe passed (or it was launched, if it has none).
    Healthy,
    /// The dependency ran to completion with exit code 0.
    CompletedSuccessfully,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub check: ProbeCheck,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    pub retries: u32,
    pub start_timeout: HumanDuration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeCheck {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: String,
        status: u16,
    },
    Exec {
        argv: Vec<String>,
    },
    Notify,
    Log {
        pattern: String,
    },
    /// The container's own HEALTHCHECK reports healthy (docker services only).
    DockerHealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartPolicy {
    pub policy: RestartMode,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    pub max_restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    No,
    OnFailure,
    Always,
}

pub use crate::proc::signal::Signal;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoverRules {
    /// Regexes matched against the whole command line (arguments joined by spaces).
    pub cmdline: Vec<String>,
    /// Executable names (the file name of /proc/PID/exe, or comm).
    pub exe: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    /// CPU quota in percent of one CPU (150 = one and a half CPUs).
    pub cpu_percent: Option<u32>,
}

pub(crate) const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);
pub(crate) const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_PROBE_RETRIES: u32 = 3;
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_RESTARTS: u32 = 5;
pub(crate) const DEFAULT_ALERT_RATE_LIMIT: Duration = Duration::from_secs(60);
/// A shorter window would let a crash loop through one alert at a time.
pub(crate) const MIN_ALERT_RATE_LIMIT: Duration = Duration::from_secs(1);
/// Bounds on `[project.alerts] exec`: a command line, not a payload.
pub(crate) const MAX_ALERT_ARGS: usize = 64;
pub(crate) const MAX_ALERT_ARG_BYTES: usize = 4096;
pub(crate) const DEFAULT_WATCH_DEBOUNCE: Duration = Duration::from_millis(500);
/// A longer debounce would hold a restart back for longer than anyone waits for one.
pub(crate) const MAX_WATCH_DEBOUNCE: Duration = Duration::from_secs(60);
/// The longest watch glob accepted (a path is at most 4096 bytes on Linux).
pub(crate) const MAX_WATCH_GLOB: usize = 4096;
