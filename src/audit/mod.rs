//! The audit trail: every lifecycle decision as a structured journald entry, with
//! `CCSCOPE_*` fields (prefixed so they never collide with journald's own `PID` and friends),
//! a fixed `MESSAGE_ID` per kind of event ([`events`]), and who caused it
//! (`CCSCOPE_ACTOR_UID` / `_PID` / `_COMM`), so `journalctl CCSCOPE_PROJECT=<project>` and
//! `ccscope audit` answer who started or stopped what. Without journald the same entries go to
//! a JSON-lines file in the state directory ([`fallback`]), which [`query`] reads as well.

pub mod alert;
pub mod events;
pub mod fallback;
pub mod journal;
pub mod logs;
pub mod query;
pub mod time;

use std::sync::OnceLock;

pub use journal::{Priority, journald_available};

/// The field every audit entry carries, so a query never reads the services' output.
pub const AUDIT_FIELD: (&str, &str) = ("CCSCOPE_AUDIT", "1");

/// One decision: what happened (`CCSCOPE_EVENT`, e.g. `stop.kill`), to which project and
/// service, in words (`MESSAGE`), with any further `CCSCOPE_*` fields.
pub struct Event<'a> {
    pub event: &'a str,
    pub project: &'a str,
    pub service: Option<&'a str>,
    pub message: String,
    pub fields: Vec<(&'a str, String)>,
}

/// Where the entries go when journald does not take them: set once by the command that knows
/// its state directory.
static FALLBACK_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

/// The state directory whose `audit/` holds the fallback file of each project.
pub fn set_state_dir(dir: &std::path::Path) {
    let _ = FALLBACK_DIR.set(dir.to_path_buf());
}

/// This process, as the actor of what it decides by itself.
fn own_actor() -> [(&'static str, String); 3] {
    // Read once: a fork keeps it, an exec starts a new process (and a new static).
    static COMM: OnceLock<String> = OnceLock::new();
    let comm = COMM
        .get_or_init(|| {
            std::fs::read_to_string("/proc/self/comm")
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "ccscope".into())
        })
        .clone();
    [
        ("CCSCOPE_ACTOR_UID", crate::proc::sys::euid().to_string()),
        ("CCSCOPE_ACTOR_PID", std::process::id().to_string()),
        ("CCSCOPE_ACTOR_COMM", comm),
    ]
}

impl Event<'_> {
    /// Every field of the entry but `MESSAGE` and `PRIORITY`: the kind's `MESSAGE_ID`, the
    /// project and service, the reason (the message, unless one is given), who caused it
    /// (this process, unless the fields say), and the rest.
    pub fn all_fields(&self) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = vec![
            ("CCSCOPE_EVENT".into(), self.event.to_string()),
            ("CCSCOPE_PROJECT".into(), self.project.to_string()),
            (AUDIT_FIELD.0.into(), AUDIT_FIELD.1.into()),
        ];
        if let Some(kind) = events::kind(self.event) {
            fields.push(("MESSAGE_ID".into(), kind.message_id.to_string()));
        }
        if let Some(s) = self.service {
            fields.push(("CCSCOPE_SERVICE".into(), s.to_string()));
        }
        let given = |name: &str| self.fields.iter().any(|(k, _)| *k == name);
        if !given("CCSCOPE_REASON") {
            fields.push(("CCSCOPE_REASON".into(), self.message.clone()));
        }
        if !given("CCSCOPE_ACTOR_UID") {
            fields.extend(own_actor().map(|(k, v)| (k.to_string(), v)));
        }
        fields.extend(self.fields.iter().map(|(k, v)| (k.to_string(), v.clone())));
        fields
    }

    /// Writes the entry. The audit trail never fails the operation it records: without
    /// journald the entry goes to the state directory's fallback file, and failing that it is
    /// logged through tracing.
    pub fn record(&self, priority: Priority) {
        let fields = self.all_fields();
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let Err(e) = journal::send(priority, &self.message, &borrowed) else {
            return;
        };
        let written = FALLBACK_DIR
            .get()
            .map(|dir| fallback::append(dir, self.project, priority, &self.message, &fields));
        match written {
            Some(Ok(())) => {}
            Some(Err(f)) => tracing::info!(
                event = self.event,
                "{} (not in the journal: {e}; not in the fallback file: {f})",
                self.message
            ),
            None => tracing::info!(
                event = self.event,
                "{} (not in the journal: {e})",
                self.message
            ),
        }
    }
}
