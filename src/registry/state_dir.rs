//! Where ccscope keeps its state, and the permissions it insists on: the directory 0700, the
//! registry file 0600, both owned by the user running ccscope.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::RegistryError;

/// Which rule chose the state directory; shown by `--verbose` and in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateDirOrigin {
    /// `--state-dir` or `CCSCOPE_STATE_DIR`.
    Flag,
    /// `state_dir` in the project's configuration.
    Config,
    /// `$XDG_STATE_HOME/ccscope`.
    XdgStateHome,
    /// `$HOME/.local/state/ccscope`.
    Home,
}

impl StateDirOrigin {
    /// Where the choice came from, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            StateDirOrigin::Flag => "--state-dir or CCSCOPE_STATE_DIR",
            StateDirOrigin::Config => "the configuration's state_dir",
            StateDirOrigin::XdgStateHome => "$XDG_STATE_HOME",
            StateDirOrigin::Home => "$HOME/.local/state",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDir {
    pub path: PathBuf,
    pub origin: StateDirOrigin,
}

impl StateDir {
    /// Flag (or env) first, then the configuration, then XDG, then $HOME.
    pub fn resolve(
        flag: Option<&Path>,
        config: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StateDir, RegistryError> {
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        let (path, origin) = if let Some(p) = flag {
            (p.to_path_buf(), StateDirOrigin::Flag)
        } else if let Some(p) = config {
            (p.to_path_buf(), StateDirOrigin::Config)
        } else if let Some(x) = nonempty("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
            (Path::new(&x).join("ccscope"), StateDirOrigin::XdgStateHome)
        } else if let Some(h) = nonempty("HOME") {
            (
                Path::new(&h).join(".local/state/ccscope"),
                StateDirOrigin::Home,
            )
        } else {
            return Err(RegistryError::NoStateDir);
        };
        Ok(StateDir { path, origin })
    }

    pub fn registry_path(&self) -> PathBuf {
        self.path.join("registry.db")
    }

    /// Creates the directory if needed; refuses one owned by another user; repairs its mode.
    pub fn ensure(&self) -> Result<Vec<String>, RegistryError> {
        let mut repairs = Vec::new();
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(|source| RegistryError::Io {
                action: "create the parent of the state directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(RegistryError::Io {
                    action: "create the state directory",
                    path: self.path.clone(),
                    source,
                });
            }
        }
        if let Some(r) = check_owner_and_mode(&self.path, 0o700, true)? {
            repairs.push(r);
        }
        Ok(repairs)
    }

    /// Creates the registry file 0600 if it is missing, and repairs the mode of an existing one.
    pub fn ensure_registry_file(&self) -> Result<Option<String>, RegistryError> {
        let path = self.registry_path();
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| RegistryError::Io {
                action: "create the registry file",
                path: path.clone(),
                source,
            })?;
        check_owner_and_mode(&path, 0o600, false)
    }
}

/// Refuses paths owned by someone else; tightens a mode that lets group or others in.
fn check_owner_and_mode(
    path: &Path,
    mode: u32,
    is_dir: bool,
) -> Result<Option<String>, RegistryError> {
    // Followed through symlinks: a symlinked ~/.local/state is common and fine.
    let meta = fs::metadata(path).map_err(|source| RegistryError::Io {
        action: "inspect",
        path: path.to_path_buf(),
        source,
    })?;
    if is_dir && !meta.is_dir() {
        return Err(RegistryError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    if !is_dir && !meta.is_file() {
        return Err(RegistryError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let me = crate::proc::sys::euid();
    if meta.uid() != me {
        return Err(RegistryError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let current = meta.mode() & 0o777;
    if current == mode {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        RegistryError::Io {
            action: "set the permissions of",
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(Some(format!(
        "repaired the mode of {} from {current:04o} to {mode:04o}",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn resolution_order_is_flag_config_xdg_home() {
        let env = env_of(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        let flag = StateDir::resolve(Some(Path::new("/f")), Some(Path::new("/c")), &env).unwrap();
        assert_eq!(
            (flag.path.as_path(), flag.origin),
            (Path::new("/f"), StateDirOrigin::Flag)
        );
        let config = StateDir::resolve(None, Some(Path::new("/c")), &env).unwrap();
        assert_eq!(config.origin, StateDirOrigin::Config);
        let xdg = StateDir::resolve(None, None, &env).unwrap();
        assert_eq!(xdg.path, Path::new("/x/ccscope"));
        let home = StateDir::resolve(
            None,
            None,
            &env_of(&[("HOME", "/h"), ("XDG_STATE_HOME", "rel")]),
        )
        .unwrap();
        assert_eq!(
            home.path,
            Path::new("/h/.local/state/ccscope"),
            "a relative XDG_STATE_HOME is ignored, as the spec says"
        );
        assert!(matches!(
            StateDir::resolve(None, None, &env_of(&[])),
            Err(RegistryError::NoStateDir)
        ));
    }

    #[test]
    fn creates_0700_and_repairs_a_loose_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir {
            path: tmp.path().join("a/b/ccscope"),
            origin: StateDirOrigin::Flag,
        };
        assert!(dir.ensure().unwrap().is_empty());
        assert_eq!(fs::metadata(&dir.path).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o755)).unwrap();
        let repairs = dir.ensure().unwrap();
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert_eq!(fs::metadata(&dir.path).unwrap().mode() & 0o777, 0o700);
        assert_eq!(dir.ensure_registry_file().unwrap(), None);
        assert_eq!(
            fs::metadata(dir.registry_path()).unwrap().mode() & 0o777,
            0o600
        );
        fs::set_permissions(dir.registry_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(dir.ensure_registry_file().unwrap().is_some());
        assert_eq!(
            fs::metadata(dir.registry_path()).unwrap().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ccscope");
        fs::write(&path, "").unwrap();
        let dir = StateDir {
            path,
            origin: StateDirOrigin::Flag,
        };
        assert!(matches!(
            dir.ensure(),
            Err(RegistryError::NotADirectory { .. })
        ));
    }
}
