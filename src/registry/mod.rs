//! The SQLite registry: what ccscope launched, discovered or adopted, and which runs own it,
//! remembered across crashes and sessions.
//!
//! One file per user (`<state dir>/registry.db`), WAL mode, a busy timeout, every write a
//! single statement or a short IMMEDIATE transaction, so that many ccscope processes can
//! share it without "database is locked". The schema is versioned (`migrations`); a corrupt
//! file is moved aside, a newer schema refused.

mod migrations;
mod records;
mod state_dir;
mod store;

use std::path::PathBuf;

pub use records::*;
pub use state_dir::{StateDir, StateDirOrigin, VerifiedDir};
pub use store::{OpenReport, Registry};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no state directory: neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("{} is a symbolic link, and ccscope never writes through one", path.display())]
    Symlink { path: PathBuf },
    #[error("{} has {links} hard links; ccscope writes only to files that are its alone", path.display())]
    HardLinked { path: PathBuf, links: u64 },
    #[error(
        "state directory {} can be written by other users (mode {mode:04o}), so anything in it may have been planted",
        path.display()
    )]
    OthersCanWrite { path: PathBuf, mode: u32 },
    #[error(
        "state directory {} lies under {}, which {}",
        path.display(),
        parent.display(),
        if *mode & 0o002 != 0 && *mode & 0o1000 == 0 {
            format!("other users can write without the sticky bit (mode {mode:04o}), so they could replace it")
        } else {
            format!("belongs to uid {owner}, who could replace it")
        }
    )]
    ReplaceableParent {
        path: PathBuf,
        parent: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error("{} belongs to uid {owner}, not to you (uid {me})", path.display())]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "registry {} was written by a newer ccscope (schema version {found}; this build knows up to {supported})",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("registry {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl RegistryError {
    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RegistryError::NoStateDir => "pass --state-dir DIR or set CCSCOPE_STATE_DIR".into(),
            RegistryError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "you lack permission there: choose another place with --state-dir or CCSCOPE_STATE_DIR".into()
            }
            RegistryError::Io { .. } => "check the path, or choose another with --state-dir".into(),
            RegistryError::NotADirectory { .. } | RegistryError::NotAFile { .. } => {
                "move the thing at that path away, or choose another place with --state-dir".into()
            }
            RegistryError::Symlink { .. } | RegistryError::HardLinked { .. } => {
                "someone may have planted it: see where it leads, then remove it (`rm` removes the link, not its target) and try again".into()
            }
            RegistryError::OthersCanWrite { .. } => {
                "ccscope refuses it and changes nothing there (what others put in it stays): make a fresh directory of your own (`mkdir -m 700 DIR`) and pass it with --state-dir or CCSCOPE_STATE_DIR".into()
            }
            RegistryError::ReplaceableParent { .. } => {
                "ccscope changes nothing there: choose a state directory whose parents only you or root can change (your home is one) and pass it with --state-dir or CCSCOPE_STATE_DIR".into()
            }
            RegistryError::ForeignOwner { .. } => {
                "ccscope keeps each user's state apart: run as that user, or use --state-dir with a directory of your own".into()
            }
            RegistryError::SchemaTooNew { .. } => {
                "upgrade ccscope, or use another --state-dir; the file was left untouched".into()
            }
            RegistryError::Sqlite { .. } => return None,
        })
    }
}
