//! The rows of the registry, typed.

use std::sync::Arc;

use serde::Serialize;

use crate::proc::ProcessIdentity;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The number the registry stores (the variant's position; append-only).
            pub fn code(self) -> i64 {
                self as i64
            }

            pub fn from_code(code: i64) -> Option<Self> {
                [$($name::$variant),+].into_iter().find(|v| v.code() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a process stands in its lifecycle.
    ProcessStatus { Running => "running", Stopping => "stopping", Stopped => "stopped" }
);

text_enum!(
    /// How a process came into the registry.
    ProcessSource { Launched => "launched", Discovered => "discovered", Adopted => "adopted" }
);

text_enum!(
    /// Where a supervisor run stands.
    RunState { Running => "running", Stopping => "stopping", Ended => "ended", Orphaned => "orphaned" }
);

/// What `register` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProcess {
    pub identity: ProcessIdentity,
    pub command_line: String,
    pub project: String,
    pub service: String,
    pub run_id: Option<String>,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    pub ports: Vec<u16>,
    pub status: ProcessStatus,
    pub source: ProcessSource,
}

/// A registered process, as `ps --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessRecord {
    pub pid: i32,
    pub start_time: u64,
    pub command_line: String,
    // The repeated columns are shared between the records of one listing (see `list`).
    pub project: Arc<str>,
    pub service: Arc<str>,
    pub run_id: Option<Arc<str>>,
    pub unit: Option<Arc<str>>,
    pub cgroup: Option<Arc<str>>,
    pub ports: Vec<u16>,
    pub status: ProcessStatus,
    pub source: ProcessSource,
    /// Milliseconds since the Unix epoch.
    pub registered_at_ms: i64,
}

impl ProcessRecord {
    pub fn identity(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// Which processes `list` returns.
#[derive(Debug, Clone, Copy)]
pub enum ProcessFilter<'a> {
    All,
    Project(&'a str),
    Service { project: &'a str, service: &'a str },
}

/// What `start_run` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub run_id: String,
    pub project: String,
    pub supervisor: ProcessIdentity,
    /// Tells whether a later run starts from the same stack definition.
    pub config_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub project: String,
    pub supervisor_pid: i32,
    pub supervisor_start_time: u64,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub state: RunState,
    pub config_hash: Option<String>,
}

/// A project of the index: where its configuration is, its last run, its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectRecord {
    pub project: String,
    /// The configuration file's absolute path; None for a built-in profile.
    pub config_path: Option<String>,
    /// When its last run started (ms since the epoch).
    pub last_run_ms: Option<i64>,
    /// How its last run ended: `stopped`, or `failed: <reason>`; None while one runs.
    pub last_outcome: Option<String>,
    /// The user unit it is enabled as (`ccscope@<project>.service`), if any.
    pub unit: Option<String>,
}

/// What the supervisor last knew about a service (one row per project and service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStateRecord {
    pub project: String,
    pub service: String,
    pub run_id: String,
    /// `pending`, `starting`, `running`, `restarting`, `waiting`, `exited`, `failed`,
    /// `stopping` or `stopped`.
    pub state: String,
    pub ready: bool,
    pub restarts: u32,
    pub main_pid: Option<i32>,
    /// How its last process ended, e.g. `exit code 3` or `signal SIGKILL`.
    pub last_exit: Option<String>,
    /// Why it is in this state, in words.
    pub message: Option<String>,
    /// Milliseconds since the Unix epoch: when it entered this state.
    pub since_ms: i64,
    pub updated_at_ms: i64,
    /// The watched file whose change last restarted it (`watch`).
    pub trigger: Option<String>,
}

/// A fresh run id: time, pid and randomness, 16 hex digits.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut random = [0u8; 4];
    // Entropy is a nicety here (time and pid already separate runs), so a failure is ignored.
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random));
    let mixed = (now.as_millis() as u64) << 20
        ^ u64::from(std::process::id())
        ^ u64::from(u32::from_le_bytes(random)) << 32;
    format!("{mixed:016x}")
}
