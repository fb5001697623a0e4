//! `ccscope audit`'s reading side: the project's audit entries from journald (through
//! `journalctl -o json`, matched by our fields so journald's indexes do the filtering), merged
//! with the fallback file's, filtered the same way, oldest first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{AUDIT_FIELD, events, fallback};

/// The longest journal entry read (an entry of ours is a few hundred bytes).
const MAX_ENTRY: u64 = 1 << 20;

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project: String,
    /// Any of these services (all when empty).
    pub services: Vec<String>,
    /// Any of these events (`CCSCOPE_EVENT` names; all when empty).
    pub events: Vec<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub run: Option<String>,
    pub actor: Option<u32>,
    /// Only the last N.
    pub last: Option<usize>,
}

/// One entry, as `audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    #[serde(skip)]
    pub time_us: u64,
    pub project: String,
    pub service: Option<String>,
    pub event: String,
    pub message_id: Option<String>,
    pub priority: u8,
    pub actor_uid: Option<u32>,
    pub actor_pid: Option<i32>,
    pub actor_comm: Option<String>,
    pub reason: Option<String>,
    pub run_id: Option<String>,
    pub message: String,
    /// Where it was read: `journal` or `file`.
    pub source: &'static str,
    /// Every `CCSCOPE_*` field, and `MESSAGE_ID`.
    pub fields: BTreeMap<String, String>,
}

impl Entry {
    fn from_fields(
        time_us: u64,
        priority: u8,
        message: String,
        fields: BTreeMap<String, String>,
        source: &'static str,
    ) -> Option<Entry> {
        let get = |k: &str| fields.get(k).cloned();
        Some(Entry {
            time: format_time(time_us),
            time_us,
            project: get("CCSCOPE_PROJECT")?,
            service: get("CCSCOPE_SERVICE"),
            event: get("CCSCOPE_EVENT")?,
            message_id: get("MESSAGE_ID"),
            priority,
            actor_uid: get("CCSCOPE_ACTOR_UID").and_then(|v| v.parse().ok()),
            actor_pid: get("CCSCOPE_ACTOR_PID").and_then(|v| v.parse().ok()),
            actor_comm: get("CCSCOPE_ACTOR_COMM"),
            reason: get("CCSCOPE_REASON"),
            run_id: get("CCSCOPE_RUN_ID"),
            message,
            source,
            fields,
        })
    }

    /// The catalogue's explanation of it (`-x`), its fields filled in.
    pub fn explain(&self) -> Option<String> {
        let kind = events::kind(&self.event)?;
        let field = |name: &str| match name {
            "MESSAGE" => Some(self.message.clone()),
            _ => self.fields.get(name).cloned(),
        };
        Some(format!(
            "-- Subject: {}\n-- Defined-By: ccscope\n--\n-- {}",
            events::render(kind.subject, &field),
            events::render(kind.body, &field).replace('\n', "\n-- ")
        ))
    }

    fn matches(&self, f: &Filter) -> bool {
        let within = |t: Option<SystemTime>, after: bool| {
            t.is_none_or(|t| {
                let us = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                if after {
                    self.time_us >= us
                } else {
                    self.time_us <= us
                }
            })
        };
        self.project == f.project
            && (f.services.is_empty()
                || self
                    .service
                    .as_ref()
                    .is_some_and(|s| f.services.contains(s)))
            && (f.events.is_empty() || f.events.contains(&self.event))
            && f.run
                .as_ref()
                .is_none_or(|r| self.run_id.as_ref() == Some(r))
            && f.actor.is_none_or(|a| self.actor_uid == Some(a))
            && within(f.since, true)
            && within(f.until, false)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("could not run journalctl: {0}")]
    Journalctl(String),
    #[error(transparent)]
    File(#[from] crate::registry::RegistryError),
}

/// What a query found, and what it could not read.
#[derive(Debug, Default)]
pub struct Found {
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

/// The entries `filter` asks for: journald's (when `journalctl` is there) and the fallback
/// file's in `state_dir`, oldest first.
pub fn query(filter: &Filter, state_dir: &Path) -> Found {
    let mut entries = Vec::new();
    let warnings = for_each(filter, state_dir, &mut |e| entries.push(e));
    Found { entries, warnings }
}

/// The same, each entry handed to `each` as soon as it is read (journald's come in time
/// order; the fallback file's are merged in between), so the first is out long before the
/// last is read. Returns what could not be read.
pub fn for_each(filter: &Filter, state_dir: &Path, each: &mut dyn FnMut(Entry)) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut from_file: Vec<Entry> = match fallback::read(state_dir, &filter.project) {
        Ok(stored) => stored
            .into_iter()
            .filter_map(|s| Entry::from_fields(s.time_us, s.priority, s.message, s.fields, "file"))
            .filter(|e| e.matches(filter))
            .collect(),
        Err(e) => {
            warnings.push(format!("the fallback file was not read: {e}"));
            Vec::new()
        }
    };
    from_file.sort_by_key(|e| e.time_us);
    if let Some(n) = filter.last {
        // The last N of both: few, gathered and cut.
        let mut all = from_file;
        if let Err(e) = from_journal(filter, &mut |entry| all.push(entry)) {
            warnings.push(format!("{e}; only the fallback file was read"));
        }
        all.sort_by_key(|e| e.time_us);
        let skip = all.len().saturating_sub(n);
        all.into_iter().skip(skip).for_each(each);
        return warnings;
    }
    let mut pending = from_file.into_iter().peekable();
    let streamed = from_journal(filter, &mut |entry| {
        while let Some(earlier) = pending.next_if(|f| f.time_us <= entry.time_us) {
            each(earlier);
        }
        each(entry);
    });
    if let Err(e) = streamed {
        warnings.push(format!("{e}; only the fallback file was read"));
    }
    pending.for_each(each);
    warnings
}

/// journalctl's arguments for `filter`: field matches (ANDed across fields, ORed within one)
/// and the time window, in seconds since the epoch.
pub fn journalctl_args(filter: &Filter) -> Vec<String> {
    let mut args: Vec<String> = ["-o", "json", "--no-pager", "-q"]
        .map(String::from)
        .to_vec();
    args.push(format!("{}={}", AUDIT_FIELD.0, AUDIT_FIELD.1));
    args.push(format!("CCSCOPE_PROJECT={}", filter.project));
    args.extend(
        filter
            .services
            .iter()
            .map(|s| format!("CCSCOPE_SERVICE={s}")),
    );
    args.extend(filter.events.iter().map(|e| format!("CCSCOPE_EVENT={e}")));
    if let Some(run) = &filter.run {
        args.push(format!("CCSCOPE_RUN_ID={run}"));
    }
    if let Some(uid) = filter.actor {
        args.push(format!("CCSCOPE_ACTOR_UID={uid}"));
    }
    let epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if let Some(t) = filter.since {
        args.push(format!("--since=@{}", epoch(t)));
    }
    if let Some(t) = filter.until {
        // A whole second later: the entry at the very moment is within.
        args.push(format!("--until=@{}", epoch(t) + 1));
    }
    if let Some(n) = filter.last {
        args.push(format!("--lines={n}"));
    }
    args
}

fn from_journal(filter: &Filter, each: &mut dyn FnMut(Entry)) -> Result<(), QueryError> {
    let mut child = Command::new("journalctl")
        .args(journalctl_args(filter))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| QueryError::Journalctl(crate::proc::describe_io(&e)))?;
    let stdout = child.stdout.take().expect("piped");
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    let mut any = false;
    loop {
        line.clear();
        let n = std::io::Read::take(&mut reader, MAX_ENTRY)
            .read_until(b'\n', &mut line)
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        if let Some(entry) = parse_journal_line(&line).filter(|e| e.matches(filter)) {
            any = true;
            each(entry);
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| QueryError::Journalctl(crate::proc::describe_io(&e)))?;
    if !out.status.success() && !any {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        // No journal files at all is no entries, not a failure.
        if !err.is_empty() && !err.contains("No journal files were found") {
            return Err(QueryError::Journalctl(err.chars().take(300).collect()));
        }
    }
    Ok(())
}

/// One line of `journalctl -o json`: values are strings, or arrays of bytes when not UTF-8.
fn parse_journal_line(line: &[u8]) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    let text = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(bytes) => {
                let bytes: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        }
    };
    let time_us = object
        .get("__REALTIME_TIMESTAMP")
        .and_then(text)?
        .parse()
        .ok()?;
    let priority = object
        .get("PRIORITY")
        .and_then(text)
        .and_then(|p| p.parse().ok())
        .unwrap_or(6);
    let message = object.get("MESSAGE").and_then(text).unwrap_or_default();
    let fields: BTreeMap<String, String> = object
        .iter()
        .filter(|(k, _)| k.starts_with("CCSCOPE_") || *k == "MESSAGE_ID")
        .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
        .collect();
    Entry::from_fields(time_us, priority, message, fields, "journal")
}

/// `2026-12-01T22:10:03.123456Z`.
pub fn format_time(time_us: u64) -> String {
    super::time::rfc3339_micros(UNIX_EPOCH + Duration::from_micros(time_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_become_entries_and_foreign_ones_do_not() {
        let line = br#"{"__REALTIME_TIMESTAMP":"1764626400000000","PRIORITY":"3","MESSAGE":"web: failed","MESSAGE_ID":"x","CCSCOPE_EVENT":"service.failed","CCSCOPE_PROJECT":"p","CCSCOPE_SERVICE":"web","CCSCOPE_ACTOR_UID":"999","CCSCOPE_REASON":[98,111,111,109],"_PID":"1"}"#;
        let e = parse_journal_line(line).unwrap();
        assert_eq!(e.event, "service.failed");
        assert_eq!(e.service.as_deref(), Some("web"));
        assert_eq!(e.actor_uid, Some(999));
        assert_eq!(e.reason.as_deref(), Some("boom"), "bytes are read as text");
        assert_eq!(e.priority, 3);
        assert!(!e.fields.contains_key("_PID"));
        assert_eq!(e.time, "2025-12-01T22:00:00.000000Z");
        assert!(
            parse_journal_line(br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"no project"}"#).is_none()
        );
        assert!(parse_journal_line(b"garbage").is_none());
    }

    #[test]
    fn the_filter_becomes_journal_matches() {
        let f = Filter {
            project: "p".into(),
            services: vec!["a".into(), "b".into()],
            events: vec!["service.failed".into()],
            actor: Some(999),
            since: Some(UNIX_EPOCH + Duration::from_secs(100)),
            last: Some(5),
            ..Filter::default()
        };
        let args = journalctl_args(&f);
        for want in [
            "CCSCOPE_AUDIT=1",
            "CCSCOPE_PROJECT=p",
            "CCSCOPE_SERVICE=a",
            "CCSCOPE_SERVICE=b",
            "CCSCOPE_EVENT=service.failed",
            "CCSCOPE_ACTOR_UID=999",
            "--since=@100",
            "--lines=5",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
    }
}
