//! Where ccscope's local sockets live: files in `<state>/run/`, a directory of the state
//! directory that is ours, 0700 and no symlink. An abstract socket has no access control
//! and a name anyone can take first; a file in a directory only we can enter has both.
//!
//! A Unix socket's path is limited to 107 bytes. A longer one is bound and connected
//! through `/proc/self/fd/<fd>/<name>`, the path of the directory's own open descriptor,
//! which names the same directory without spelling its path.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::proc::sys;
use crate::registry::{RegistryError, VerifiedDir};

/// The sub-directory of the state directory that holds the sockets.
pub const RUN_DIR: &str = "run";

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("could not {action} {}: {}", .path.display(), crate::proc::describe_io(.source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The directory itself: a link, another user's, open to others (the state directory's
    /// own rules, [`VerifiedDir`]).
    #[error(transparent)]
    Dir(#[from] RegistryError),
}

impl SocketError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SocketError::Dir(e) => e.hint(),
            SocketError::Io { .. } => None,
        }
    }
}

/// `uid 999 (ccscope-other)`, or `uid 999` when /etc/passwd does not name it.
pub fn user_label(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The name /etc/passwd gives `uid` (read up to 1 MiB).
pub fn user_name(uid: u32) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid.to_string()).then(|| name.to_string())
    })
}

/// `<state>/run`, open and verified as the state directory is (ours, no link, nobody else
/// may write): every socket is bound and connected relative to it.
#[derive(Debug)]
pub struct RunDir(VerifiedDir);

impl RunDir {
    /// Opens `<state>/run`, creating it 0700; refuses one that is a symlink, another user's,
    /// or open to others.
    pub fn open(state_dir: &Path) -> Result<RunDir, SocketError> {
        Ok(RunDir(
            VerifiedDir::create_state(state_dir)?.child_dir(RUN_DIR)?,
        ))
    }

    /// Opens an existing `<state>/run` (for a client): None when there is none.
    pub fn existing(state_dir: &Path) -> Result<Option<RunDir>, SocketError> {
        let Some(state) = VerifiedDir::existing_state(state_dir)? else {
            return Ok(None);
        };
        Ok(state.existing_child_dir(RUN_DIR)?.map(RunDir))
    }

    /// The directory holding the socket file `path` (as `--report-to` names it), opened and
    /// checked as [`RunDir::existing`] does, and the file's name.
    pub fn of_socket(path: &Path) -> Result<(RunDir, String), SocketError> {
        let invalid = || SocketError::Io {
            action: "use the socket",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a socket file's path"),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(invalid)?
            .to_string();
        let parent = path.parent().ok_or_else(invalid)?;
        let dir = VerifiedDir::existing_state(parent)?.ok_or_else(|| SocketError::Io {
            action: "open",
            path: parent.to_path_buf(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        Ok((RunDir(dir), name))
    }

    /// The socket file's path, as people (and `--report-to`) see it.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Binds the socket file `name`, replacing a file left there (the caller makes sure no
    /// live peer can be serving it: it holds the project's lock, or the name is new).
    pub fn bind(&self, name: &str) -> Result<UnixListener, SocketError> {
        self.0.remove_file(name)?;
        UnixListener::bind(self.0.socket_path(name)).map_err(|source| SocketError::Io {
            action: "bind the socket",
            path: self.path_of(name),
            source,
        })
    }

    /// Connects to the socket file `name`. `NotFound` or `ConnectionRefused` when nobody
    /// serves it.
    pub fn connect(&self, name: &str) -> io::Result<UnixStream> {
        UnixStream::connect(self.0.socket_path(name))
    }

    /// The owner of the socket file `name`, if there is one (not followed).
    pub fn owner_of(&self, name: &str) -> Option<u32> {
        sys::socket_owner_at(&self.0, name).ok().map(|(uid, _)| uid)
    }

    /// Removes the socket file `name` (nothing when it is gone already).
    pub fn remove(&self, name: &str) {
        let _ = self.0.remove_file(name);
    }
}

impl AsFd for RunDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A bound socket file, removed when this is dropped.
#[derive(Debug)]
pub struct SocketFile {
    dir: RunDir,
    name: String,
}

impl SocketFile {
    pub fn new(dir: RunDir, name: String) -> SocketFile {
        SocketFile { dir, name }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path_of(&self.name)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.dir.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_run_directory_is_made_private_and_a_link_or_an_open_one_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let dir = RunDir::open(state.path()).unwrap();
        let meta = std::fs::metadata(state.path().join(RUN_DIR)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let listener = dir.bind("a.sock").unwrap();
        // A second bind replaces the file the first left.
        drop(listener);
        let _again = dir.bind("a.sock").unwrap();
        assert!(dir.connect("a.sock").is_ok());
        assert_eq!(
            dir.connect("none.sock").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );

        let open = tempfile::tempdir().unwrap();
        std::fs::create_dir(open.path().join(RUN_DIR)).unwrap();
        std::fs::set_permissions(
            open.path().join(RUN_DIR),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = RunDir::open(open.path()).unwrap_err();
        assert!(
            matches!(e, SocketError::Dir(RegistryError::OthersCanWrite { .. })),
            "{e}"
        );

        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(state.path().join(RUN_DIR), linked.path().join(RUN_DIR))
            .unwrap();
        let e = RunDir::open(linked.path()).unwrap_err();
        assert!(
            matches!(e, SocketError::Dir(RegistryError::Symlink { .. })),
            "{e}"
        );
    }

    #[test]
    fn a_path_too_long_for_a_socket_address_goes_through_the_directory_descriptor() {
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("d".repeat(100));
        std::fs::create_dir(&state).unwrap();
        let dir = RunDir::open(&state).unwrap();
        assert!(dir.path_of("x.sock").as_os_str().len() > 107);
        let listener = dir.bind("x.sock").unwrap();
        assert!(state.join(RUN_DIR).join("x.sock").exists());
        let _client = dir.connect("x.sock").unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(
            sys::peer_cred(&server).unwrap().pid,
            std::process::id() as i32
        );
        let (again, name) = RunDir::of_socket(&dir.path_of("x.sock")).unwrap();
        assert!(again.connect(&name).is_ok());
        SocketFile::new(again, name);
        assert!(
            !state.join(RUN_DIR).join("x.sock").exists(),
            "dropped, removed"
        );
    }

    #[test]
    fn a_trailing_slash_names_the_same_state_directory() {
        let state = tempfile::tempdir().unwrap();
        let spelled = format!("{}/", state.path().display());
        // The state directory is canonicalised as it is opened: one set of sockets.
        assert_eq!(
            RunDir::open(Path::new(&spelled)).unwrap().path_of("x.sock"),
            RunDir::open(state.path()).unwrap().path_of("x.sock")
        );
    }

    #[test]
    fn users_are_named_by_uid_and_name() {
        assert_eq!(user_label(0), "uid 0 (root)");
        assert_eq!(user_label(4_000_000_000), "uid 4000000000");
    }
}
