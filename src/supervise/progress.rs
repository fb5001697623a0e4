//! What a running stack tells the outside: one [`Progress`] line per event, for people (`-v`),
//! for `--json` (one object per line) and for the foreground half of `run --detach`, which
//! reads the same typed lines back.

use serde::{Deserialize, Serialize};

/// The kind of a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The start order, before anything starts.
    Plan,
    /// A service changed state.
    State,
    /// Every selected service is up.
    Ready,
    /// The stack runs without an optional service.
    Degraded,
    /// The stack is being stopped.
    Stopping,
    /// The stack was stopped.
    Stopped,
    Error,
    Warning,
}

impl ProgressEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressEvent::Plan => "plan",
            ProgressEvent::State => "state",
            ProgressEvent::Ready => "ready",
            ProgressEvent::Degraded => "degraded",
            ProgressEvent::Stopping => "stopping",
            ProgressEvent::Stopped => "stopped",
            ProgressEvent::Error => "error",
            ProgressEvent::Warning => "warning",
        }
    }
}

/// A service's state as the supervisor keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not started yet: its dependencies are not met.
    Pending,
    /// Its launch is under way.
    Launching,
    /// Launched; its readiness probe has not passed yet.
    Starting,
    /// Ready (or started, without a probe).
    Running,
    /// Ended; starts again after its backoff.
    Restarting,
    /// Stopped because a dependency is down; starts again when it is back.
    Waiting,
    /// Ran to completion with exit code 0 and is not restarted.
    Exited,
    /// Ended and is not restarted: restart policy `no`, or too many restarts in a row.
    Failed,
    /// Being stopped (its dependency went down, or the stack stops).
    Stopping,
    /// Stopped with the stack, or on request (`ccscope stop SVC`: held until asked to start).
    Stopped,
    /// Frozen on request (`ccscope pause`): its probes and restart timers hold.
    Paused,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Pending => "pending",
            ServiceState::Launching => "launching",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Restarting => "restarting",
            ServiceState::Waiting => "waiting",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Paused => "paused",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One line of progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub event: ProgressEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The service's new state, on `state` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ServiceState>,
    pub message: String,
    /// Milliseconds since `run` began.
    pub elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_it_was_written() {
        let p = Progress {
            event: ProgressEvent::State,
            service: Some("db".into()),
            state: Some(ServiceState::Restarting),
            message: "restarting in 0.3 s".into(),
            elapsed_ms: 42,
        };
        let line = serde_json::to_string(&p).unwrap();
        assert_eq!(
            line,
            r#"{"event":"state","service":"db","state":"restarting","message":"restarting in 0.3 s","elapsed_ms":42}"#
        );
        assert_eq!(serde_json::from_str::<Progress>(&line).unwrap(), p);
    }
}
