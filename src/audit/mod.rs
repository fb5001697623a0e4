//! The audit trail: every lifecycle decision as a structured journald entry, with
//! `CCSCOPE_*` fields (prefixed so they never collide with journald's own `PID` and friends),
//! so `journalctl CCSCOPE_PROJECT=<project>` answers who started or stopped what.

pub mod journal;
pub mod logs;
pub mod time;

pub use journal::{Priority, journald_available};

/// One decision: what happened (`CCSCOPE_EVENT`, e.g. `stop.kill`), to which project and
/// service, in words (`MESSAGE`), with any further `CCSCOPE_*` fields.
pub struct Event<'a> {
    pub event: &'a str,
    pub project: &'a str,
    pub service: Option<&'a str>,
    pub message: String,
    pub fields: Vec<(&'a str, String)>,
}

impl Event<'_> {
    /// Writes the entry. The audit trail never fails the operation it records: without
    /// journald the decision is logged through tracing instead.
    pub fn record(&self, priority: Priority) {
        let mut fields: Vec<(&str, &str)> = vec![
            ("CCSCOPE_EVENT", self.event),
            ("CCSCOPE_PROJECT", self.project),
        ];
        if let Some(s) = self.service {
            fields.push(("CCSCOPE_SERVICE", s));
        }
        fields.extend(self.fields.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = journal::send(priority, &self.message, &fields) {
            tracing::info!(
                event = self.event,
                "{} (not in the journal: {e})",
                self.message
            );
        }
    }
}
