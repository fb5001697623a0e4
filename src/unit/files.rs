//! The unit files `ccscope enable` writes into the user's systemd configuration: the template
//! `ccscope@.service` (one instance per project) and, per project, a drop-in
//! `ccscope@<project>.service.d/ccscope.conf` with what differs between projects (the slice,
//! the state directory, the stop timeout). Each file starts with [`MARKER`]: a file without
//! it is someone else's, never overwritten or removed.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::describe_io;

/// The first line of every file ccscope writes here.
pub const MARKER: &str = "# Written by ccscope enable; ccscope disable removes it.";
/// The template's file name.
pub const TEMPLATE: &str = "ccscope@.service";
/// The drop-in's file name inside `ccscope@<project>.service.d/`.
const DROPIN: &str = "ccscope.conf";

/// The unit of `project`: `ccscope@<project>.service` (a project name is a valid instance).
pub fn instance(project: &str) -> String {
    format!("ccscope@{project}.service")
}

/// The project of an instance name, if it is one of ours.
pub fn project_of(unit: &str) -> Option<&str> {
    unit.strip_prefix("ccscope@")?
        .strip_suffix(".service")
        .filter(|p| !p.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum UnitFileError {
    #[error(
        "find the user's systemd configuration directory: neither XDG_CONFIG_HOME nor HOME is set"
    )]
    NoConfigDir,
    #[error("write {}: {}", path.display(), describe_io(source))]
    Write { path: PathBuf, source: io::Error },
    #[error("read {}: {}", path.display(), describe_io(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("write {}: the file is not ccscope's (it lacks the line `{MARKER}`)", path.display())]
    NotOurs { path: PathBuf },
    #[error("remove {}: {}", path.display(), describe_io(source))]
    Remove { path: PathBuf, source: io::Error },
    #[error("write {} into a unit file: it is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
}

/// `$XDG_CONFIG_HOME/systemd/user`, else `$HOME/.config/systemd/user`: where
/// `systemctl --user enable` puts a user's units.
pub fn user_unit_dir(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, UnitFileError> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(config) = nonempty("XDG_CONFIG_HOME") {
        return Ok(Path::new(&config).join("systemd/user"));
    }
    let home = nonempty("HOME").ok_or(UnitFileError::NoConfigDir)?;
    Ok(Path::new(&home).join(".config/systemd/user"))
}

/// The template: the supervisor of `%i` under a `Type=notify` service, ready once the stack
/// is; `reload` re-reads the configuration; a stop is the supervisor's orderly stop (SIGTERM
/// to it alone: its services live in scopes of their own, which it ends); a crashed or hung
/// supervisor (watchdog) is started again and adopts the running scopes back.
pub fn template_text(exe: &Path) -> Result<String, UnitFileError> {
    let exe = quoted(text_of(exe)?, true);
    Ok(format!(
        "{MARKER}
# The supervisor of one ccscope project: `systemctl --user start ccscope@<project>`.
[Unit]
Description=ccscope stack %i

[Service]
Type=notify
NotifyAccess=main
ExecStart={exe} --project-name %i run
ExecReload={exe} --project-name %i reload
# SIGTERM to the supervisor only: it stops every service in dependency order.
KillMode=mixed
# A supervisor that crashed or hung (WatchdogSec= in a drop-in) is started again; one whose
# stack could not start stays failed, with the reason in its status.
Restart=on-abnormal
RestartSec=1s

[Install]
WantedBy=default.target
"
    ))
}

/// A path as text: unit files are UTF-8.
fn text_of(path: &Path) -> Result<&str, UnitFileError> {
    path.to_str().ok_or_else(|| UnitFileError::NotText {
        path: path.to_path_buf(),
    })
}

/// `value` as one quoted word of a unit file: `\` and `"` escaped, `%` doubled (no
/// specifier expands in it), and in an `Exec…=` line `$` doubled too (no variable does).
fn quoted(value: &str, exec: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The drop-in of `project`: its slice (so `systemctl --user status <slice>` shows the
/// supervisor beside its services' scopes), the state directory its index is in, and start
/// and stop timeouts with room for every service's own.
pub fn dropin_text(
    slice: &str,
    state_dir: &Path,
    services_start: Duration,
    services_stop: Duration,
) -> Result<String, UnitFileError> {
    // Services start and stop in dependency order; their timeouts summed bound the whole.
    let start = services_start.as_secs() + 60;
    let stop = services_stop.as_secs() + 30;
    let environment = quoted(&format!("CCSCOPE_STATE_DIR={}", text_of(state_dir)?), false);
    Ok(format!(
        "{MARKER}
[Service]
Slice={slice}
Environment={environment}
TimeoutStartSec={start}s
TimeoutStopSec={stop}s
"
    ))
}

/// The drop-in's path for `project`.
pub fn dropin_path(unit_dir: &Path, project: &str) -> PathBuf {
    unit_dir
        .join(format!("{}.d", instance(project)))
        .join(DROPIN)
}

/// What writing a file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Unchanged,
}

impl Written {
    pub fn as_str(self) -> &'static str {
        match self {
            Written::Created => "created",
            Written::Updated => "updated",
            Written::Unchanged => "unchanged",
        }
    }
}

/// Reads `path` if it is there (never through a link), bounded.
fn read_existing(path: &Path) -> Result<Option<String>, UnitFileError> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(UnitFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|source| UnitFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Some(text))
}

/// Whether the file at `path` is one ccscope wrote (None: there is none).
pub fn is_ours(path: &Path) -> Result<Option<bool>, UnitFileError> {
    Ok(read_existing(path)?.map(|t| t.starts_with(MARKER)))
}

/// Writes `text` to `path` unless a file that is not ours is there; through a temporary
/// file renamed over it, so a reader never sees half of it.
pub fn write_ours(path: &Path, text: &str) -> Result<Written, UnitFileError> {
    let written = match read_existing(path)? {
        Some(old) if !old.starts_with(MARKER) => {
            return Err(UnitFileError::NotOurs {
                path: path.to_path_buf(),
            });
        }
        Some(old) if old == text => return Ok(Written::Unchanged),
        Some(_) => Written::Updated,
        None => Written::Created,
    };
    let err = |source| UnitFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("ccscope-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })?;
    Ok(written)
}

/// Removes `path` if it is ours (and then its directory, when that is left empty); true
/// when it was removed. A file that is not ours stays and is an error.
pub fn remove_ours(path: &Path) -> Result<bool, UnitFileError> {
    match is_ours(path)? {
        None => Ok(false),
        Some(false) => Err(UnitFileError::NotOurs {
            path: path.to_path_buf(),
        }),
        Some(true) => {
            std::fs::remove_file(path).map_err(|source| UnitFileError::Remove {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(true)
        }
    }
}

/// The projects with a drop-in of ours in `unit_dir`: who still uses the template.
pub fn projects_with_dropins(unit_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(unit_dir) else {
        return Vec::new();
    };
    let mut projects: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let project = project_of(name.strip_suffix(".d")?)?.to_string();
            matches!(is_ours(&dropin_path(unit_dir, &project)), Ok(Some(true))).then_some(project)
        })
        .collect();
    projects.sort();
    projects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_parse_back() {
        assert_eq!(instance("cc"), "ccscope@cc.service");
        assert_eq!(project_of("ccscope@my-app.service"), Some("my-app"));
        assert_eq!(project_of("ccscope@.service"), None);
        assert_eq!(project_of("other@x.service"), None);
    }

    #[test]
    fn the_unit_dir_follows_xdg_then_home() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            user_unit_dir(&env).unwrap(),
            Path::new("/home/u/.config/systemd/user")
        );
        let xdg = |k: &str| Some(format!("/x/{k}"));
        assert_eq!(
            user_unit_dir(&xdg).unwrap(),
            Path::new("/x/XDG_CONFIG_HOME/systemd/user")
        );
        assert!(user_unit_dir(&|_| None).is_err());
    }

    #[test]
    fn the_template_is_a_notify_service_of_the_project() {
        let t = template_text(Path::new("/usr/bin/ccscope")).unwrap();
        assert!(t.starts_with(MARKER));
        for line in [
            "Type=notify",
            "ExecStart=\"/usr/bin/ccscope\" --project-name %i run",
            "ExecReload=\"/usr/bin/ccscope\" --project-name %i reload",
            "KillMode=mixed",
            "WantedBy=default.target",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
        let d = dropin_text(
            "ccscope-cc.slice",
            Path::new("/s/my state"),
            Duration::from_secs(40),
            Duration::from_secs(25),
        )
        .unwrap();
        assert!(d.contains("Slice=ccscope-cc.slice\n"), "{d}");
        assert!(
            d.contains("Environment=\"CCSCOPE_STATE_DIR=/s/my state\"\n"),
            "{d}"
        );
        assert!(d.contains("TimeoutStartSec=100s\n"), "{d}");
        assert!(d.contains("TimeoutStopSec=55s\n"), "{d}");
    }

    #[test]
    fn values_are_quoted_so_systemd_takes_them_as_written() {
        assert_eq!(
            quoted("/home/u/My Tools/ccscope", true),
            "\"/home/u/My Tools/ccscope\""
        );
        assert_eq!(quoted("a%b$c\"d\\e", true), "\"a%%b$$c\\\"d\\\\e\"");
        assert_eq!(quoted("a%b$c", false), "\"a%%b$c\"");
        use std::os::unix::ffi::OsStrExt;
        let bad = Path::new(std::ffi::OsStr::from_bytes(b"/x/\xff"));
        assert!(matches!(
            template_text(bad),
            Err(UnitFileError::NotText { .. })
        ));
    }

    #[test]
    fn the_shipped_template_is_the_one_enable_writes() {
        assert_eq!(
            include_str!("../../units/ccscope@.service"),
            template_text(Path::new("/usr/local/bin/ccscope")).unwrap(),
            "units/ccscope@.service is out of step with files::template_text"
        );
    }

    #[test]
    fn only_our_files_are_overwritten_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.service");
        let text = format!("{MARKER}\nx\n");
        assert_eq!(write_ours(&path, &text).unwrap(), Written::Created);
        assert_eq!(write_ours(&path, &text).unwrap(), Written::Unchanged);
        assert_eq!(
            write_ours(&path, &format!("{text}y\n")).unwrap(),
            Written::Updated
        );
        assert!(remove_ours(&path).unwrap());
        assert!(!remove_ours(&path).unwrap());
        std::fs::write(&path, "[Service]\n").unwrap();
        assert!(matches!(
            write_ours(&path, &text),
            Err(UnitFileError::NotOurs { .. })
        ));
        assert!(matches!(
            remove_ours(&path),
            Err(UnitFileError::NotOurs { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[Service]\n");
    }
}
