//! Procfiles (foreman, honcho, overmind): `name: command` lines → shell services.
//!
//! As foreman does: each process type gets `PORT` = 5000 + 100 × its position, runs from the
//! Procfile's directory, and reads the `.env` beside it.

use std::path::Path;

use super::compose::normalize;
use super::stack::*;
use super::warning::Warnings;
use super::yaml::Pos;

/// foreman's base port, and the step between process types.
const BASE_PORT: u16 = 5000;
const PORT_STEP: u16 = 100;

pub(crate) fn is_procfile_name(name: &str) -> bool {
    name == "Procfile" || name.starts_with("Procfile.")
}

pub(crate) fn add(text: &str, path: &Path, w: &mut Warnings<'_>, stack: &mut Stack) {
    let dir = normalize(
        &std::path::absolute(path.parent().unwrap_or(Path::new("."))).unwrap_or_default(),
    );
    let dotenv = dir.join(".env");
    let mut index: u16 = 0;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = Pos {
            line: n + 1,
            column: line.len() - line.trim_start().len() + 1,
        };
        let Some((name, command)) = trimmed.split_once(':') else {
            w.at(at, "a line that is not `name: command`: not imported");
            continue;
        };
        let (name, command) = (name.trim(), command.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            w.at(
                at,
                format!("process name `{name}` is not letters, digits, `_` and `-`: not imported"),
            );
            continue;
        }
        if command.is_empty() {
            w.at(at, format!("process `{name}` has no command: not imported"));
            continue;
        }
        let Some(port) = index
            .checked_mul(PORT_STEP)
            .and_then(|p| p.checked_add(BASE_PORT))
        else {
            w.at(
                at,
                "more process types than foreman gives ports to: not imported",
            );
            continue;
        };
        let mut s = ServiceOut::new(
            name.to_string(),
            w.file,
            at,
            LaunchOut::Shell(command.to_string()),
        );
        s.env.insert("PORT".into(), port.to_string());
        s.cwd = Some(dir.clone());
        if dotenv.is_file() {
            s.env_files.push(dotenv.clone());
        }
        s.notes.push(format!("PORT {port}, as foreman gives it"));
        stack.services.push(s);
        index += 1;
    }
}
