//! The verbs a client asks a running supervisor for (`start`, `stop`, `restart`, `reload`,
//! `pause`, `resume`), and its typed reply. Both travel as one JSON line each on the control
//! socket, beside the older `stand-down` line: a request is at most [`MAX_REQUEST`] bytes, a
//! reply at most [`MAX_REPLY`].

use serde::{Deserialize, Serialize};

/// The longest request line a supervisor reads.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The longest reply line a client reads.
pub const MAX_REPLY: usize = 1024 * 1024;
/// The most service names one request may carry.
pub const MAX_SERVICES: usize = 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Start these services (and what they need that is not up).
    Start { services: Vec<String> },
    /// Stop these services and what requires them; the supervisor holds them stopped.
    Stop { services: Vec<String> },
    /// End and start again these services (all with `all`), waiting for readiness.
    Restart {
        services: Vec<String>,
        #[serde(default)]
        all: bool,
    },
    /// Re-read the configuration and apply what changed (only say it with `dry_run`).
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
    /// Freeze these services' cgroups (all when empty).
    Pause { services: Vec<String> },
    /// Thaw them (all when empty).
    Resume { services: Vec<String> },
}

impl Request {
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Start { .. } => "start",
            Request::Stop { .. } => "stop",
            Request::Restart { .. } => "restart",
            Request::Reload { .. } => "reload",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
        }
    }

    /// The services named (empty for `reload`).
    pub fn services(&self) -> &[String] {
        match self {
            Request::Start { services }
            | Request::Stop { services }
            | Request::Restart { services, .. }
            | Request::Pause { services }
            | Request::Resume { services } => services,
            Request::Reload { .. } => &[],
        }
    }

    /// Why a request is not even looked at: too many names, or a name no service could have.
    pub fn invalid(&self) -> Option<String> {
        let services = self.services();
        if services.len() > MAX_SERVICES {
            return Some(format!(
                "{} services named; at most {MAX_SERVICES} are read",
                services.len()
            ));
        }
        services
            .iter()
            .find(|s| s.is_empty() || s.len() > 255 || s.chars().any(char::is_control))
            .map(|s| format!("{s:?} is not a service name"))
    }
}

/// Asks for the supervisor's state feed: the line `{"verb":"subscribe"}`, answered by a
/// snapshot line and then one line per state change, until the client closes its end (see
/// `supervise::feed` for the lines). Kept apart from [`Request`]: it is no verb the machine
/// carries out, and its answer is a stream, not one [`Reply`]. A supervisor that predates it
/// answers with a refused [`Reply`] (`invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Subscribe {
    Subscribe,
}

/// What happened to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    /// `restarted`, `started`, `stopped`, `paused`, `resumed`, `added`, `changed`, `removed`,
    /// `unchanged` or `failed`.
    pub action: String,
    /// Why it was touched: `asked`, `depends on dashboard (restart = true)`, `requires bridge`,
    /// `needed by dashboard`.
    pub why: String,
    /// Its state once the request was done.
    pub state: String,
    /// Its main process now, if it runs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<i32>,
    /// What went wrong, or what a person should know.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

/// Why a request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyError {
    /// `unknown_service`, `stopping`, `unsupported`, `config`, `failed` or `invalid`.
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}

/// The supervisor's answer, sent once the request is done (or refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub verb: String,
    pub ok: bool,
    /// The supervisor that did it.
    pub supervisor_pid: i32,
    /// One line a person reads.
    pub message: String,
    /// Each service touched, in the order they were handled.
    pub services: Vec<ServiceChange>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ReplyError>,
    /// How long the supervisor took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Reply {
    /// A refusal: nothing was changed.
    pub fn refused(verb: &str, kind: &str, message: String, hint: Option<String>) -> Reply {
        Reply {
            verb: verb.to_string(),
            ok: false,
            supervisor_pid: std::process::id() as i32,
            message: message.clone(),
            services: Vec::new(),
            error: Some(ReplyError {
                kind: kind.to_string(),
                message,
                hint,
            }),
            elapsed_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_travel_as_one_json_object_with_their_verb() {
        let r = Request::Restart {
            services: vec!["dashboard".into()],
            all: false,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"verb":"restart","services":["dashboard"],"all":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let reload: Request = serde_json::from_str(r#"{"verb":"reload"}"#).unwrap();
        assert_eq!(reload, Request::Reload { dry_run: false });
        assert!(serde_json::from_str::<Request>(r#"{"verb":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"verb":"stop","services":[],"x":1}"#).is_err());
    }

    #[test]
    fn a_subscription_is_its_own_line_and_no_verb() {
        let text = serde_json::to_string(&Subscribe::Subscribe).unwrap();
        assert_eq!(text, r#"{"verb":"subscribe"}"#);
        assert!(serde_json::from_str::<Request>(&text).is_err());
        assert!(serde_json::from_str::<Subscribe>(r#"{"verb":"restart","services":[]}"#).is_err());
    }

    #[test]
    fn names_no_service_could_have_are_not_looked_at() {
        let named = |s: &str| Request::Stop {
            services: vec![s.to_string()],
        };
        assert!(named("web").invalid().is_none());
        assert!(named("").invalid().is_some());
        assert!(named("a\nb").invalid().is_some());
        let many = Request::Start {
            services: vec!["a".into(); MAX_SERVICES + 1],
        };
        assert!(many.invalid().unwrap().contains("at most"));
    }
}
