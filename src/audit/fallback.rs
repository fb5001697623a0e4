//! The audit trail without journald: one JSON object per line in
//! `<state>/audit/<project>.jsonl`, the same fields journald would have stored (plus the time
//! and the priority), rotated to `<project>.jsonl.1` past 8 MiB. Opened through the verified
//! state directory: never through a link, never a file someone else owns.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Priority;
use crate::registry::{RegistryError, VerifiedDir};

/// Past this size the file is rotated.
const ROTATE_BYTES: u64 = 8 << 20;

/// The longest line read back (an entry is far shorter; a longer one is not ours).
const MAX_LINE: usize = 256 * 1024;

pub const DIR: &str = "audit";

/// One entry as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Microseconds since the Unix epoch, as journald's `__REALTIME_TIMESTAMP`.
    pub time_us: u64,
    pub priority: u8,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

fn file_name(project: &str) -> String {
    format!("{project}.jsonl")
}

/// Appends one entry for `project`.
pub fn append(
    state_dir: &Path,
    project: &str,
    priority: Priority,
    message: &str,
    fields: &[(String, String)],
) -> Result<(), RegistryError> {
    let dir = VerifiedDir::create_state(state_dir)?.child_dir(DIR)?;
    let name = file_name(project);
    if dir
        .check_entry(&name)?
        .is_some_and(|len| len > ROTATE_BYTES)
    {
        dir.rename(&name, &format!("{name}.1"))?;
    }
    let (mut file, _) = dir.create_file(&name, true)?;
    let stored = Stored {
        time_us: now_us(),
        priority: priority as u8,
        message: message.to_string(),
        fields: fields.iter().cloned().collect(),
    };
    let mut line = serde_json::to_vec(&stored).unwrap_or_default();
    line.push(b'\n');
    // One write of the whole line: appends of several processes do not interleave.
    file.write_all(&line).map_err(|e| RegistryError::Io {
        action: "write",
        path: dir.join(&name),
        source: e,
    })
}

/// Every entry of `project` in the files, oldest first (the rotated file, then the current
/// one). Lines that are not entries are skipped.
pub fn read(state_dir: &Path, project: &str) -> Result<Vec<Stored>, RegistryError> {
    let Some(state) = VerifiedDir::existing_state(state_dir)? else {
        return Ok(Vec::new());
    };
    let Some(dir) = state.existing_child_dir(DIR)? else {
        return Ok(Vec::new());
    };
    let name = file_name(project);
    let mut out = Vec::new();
    for file in [format!("{name}.1"), name] {
        let Some(file) = dir.open_existing_file(&file)? else {
            continue;
        };
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            if let Ok(entry) = serde_json::from_slice::<Stored>(&line) {
                out.push(entry);
            }
        }
    }
    out.sort_by_key(|e| e.time_us);
    Ok(out)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_in_order_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let fields = vec![("CCSCOPE_EVENT".to_string(), "service.failed".to_string())];
        append(&state, "p", Priority::Error, "one", &fields).unwrap();
        append(&state, "p", Priority::Notice, "two", &fields).unwrap();
        append(&state, "q", Priority::Notice, "other project", &fields).unwrap();
        let path = state.join("audit/p.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"not json\n").unwrap();
        let got = read(&state, "p").unwrap();
        let messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "two"]);
        assert_eq!(got[0].priority, 3);
        assert_eq!(got[0].fields["CCSCOPE_EVENT"], "service.failed");
        assert!(read(&state, "none").unwrap().is_empty());
    }
}
