//! Where ccscope keeps its state, and how it keeps it its own: the directory is opened once by
//! descriptor (of its canonical path, never through a link) and checked on that descriptor —
//! owned by the user running ccscope and writable by nobody else. Everything ccscope writes
//! there is opened relative to a verified descriptor with `O_NOFOLLOW`: sub-directories 0700,
//! files 0600. A directory another user could write to is refused, not repaired: what they may
//! have planted in it would still be there. Only a loose mode that lets nobody else write
//! (0755) is tightened, with `fchmod` on the verified descriptor.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use serde::Serialize;

use super::RegistryError;

/// The mode of every directory ccscope makes in its state.
const DIR_MODE: u32 = 0o700;
/// The mode of every file ccscope writes in its state.
const FILE_MODE: u32 = 0o600;
/// Group or others may write: someone else could have put things here.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// Anyone at all may write.
const WRITABLE_BY_ANYONE: u32 = 0o002;
const STICKY: u32 = 0o1000;
/// `sun_path` of a unix socket address, its terminating NUL included.
const SUN_PATH_MAX: usize = 108;

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

/// The state directory as chosen: a path, not yet opened or checked (see [`StateDir::open`]).
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

    /// `registry.db` under the path as given (not canonicalised).
    pub fn registry_path(&self) -> PathBuf {
        self.path.join("registry.db")
    }

    /// Creates the directory if it is missing, opens and verifies it (see [`VerifiedDir`]),
    /// and says what it tightened. The directory's path in the result is canonical: one
    /// directory however it was spelled (a trailing slash, `..`, a symlink to it).
    pub fn open(&self) -> Result<(VerifiedDir, Vec<String>), RegistryError> {
        let (dir, repair) = VerifiedDir::open_state(&self.path, true)?;
        let dir = dir.ok_or_else(|| RegistryError::Io {
            action: "create the state directory",
            path: self.path.clone(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        Ok((dir, repair.into_iter().collect()))
    }
}

/// A directory held open by descriptor and checked on that descriptor: a directory (no link
/// followed to reach its last component), owned by the effective user, writable by nobody
/// else. Files and directories inside it are opened relative to the descriptor, so that
/// nothing renamed or planted on the way can redirect them.
#[derive(Debug)]
pub struct VerifiedDir {
    fd: OwnedFd,
    /// Canonical (no symlink in it), for messages and for APIs that only take a path.
    path: PathBuf,
}

impl VerifiedDir {
    /// The state directory at `path`, created (with its parents) when `create` says so;
    /// `Ok((None, _))` when it is missing and `create` is false. A mode that lets nobody else
    /// write but is not 0700 is tightened (the message in the result says so).
    pub(crate) fn open_state(
        path: &Path,
        create: bool,
    ) -> Result<(Option<VerifiedDir>, Option<String>), RegistryError> {
        if create {
            // Nothing is made under a directory that another user could replace.
            if let Some(existing) = deepest_existing(path) {
                check_ancestors(&existing, &existing)?;
            }
            create_missing(path)?;
        }
        let canonical = match fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok((None, None)),
            Err(source) => {
                return Err(RegistryError::Io {
                    action: "find",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if let Some(parent) = canonical.parent() {
            check_ancestors(&canonical, parent)?;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(rfs::CWD, &canonical, flags, Mode::empty())
            .map_err(|e| dir_open_error(e, &canonical))?;
        let dir = VerifiedDir {
            fd,
            path: canonical,
        };
        let repair = dir.verify_self()?;
        Ok((Some(dir), repair))
    }

    /// Opens the state directory at `path` (creating it if missing) for a caller that was
    /// handed its path (a supervisor, the lock, a log file). Tightening it is logged; the CLI
    /// has already told the user about it when it opened the directory first.
    pub fn create_state(path: &Path) -> Result<VerifiedDir, RegistryError> {
        let (dir, repair) = VerifiedDir::open_state(path, true)?;
        if let Some(repair) = repair {
            tracing::warn!("{repair}");
        }
        dir.ok_or_else(|| RegistryError::Io {
            action: "create the state directory",
            path: path.to_path_buf(),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// Opens the state directory at `path` if it exists, without creating it.
    pub fn existing_state(path: &Path) -> Result<Option<VerifiedDir>, RegistryError> {
        let (dir, repair) = VerifiedDir::open_state(path, false)?;
        if let Some(repair) = repair {
            tracing::warn!("{repair}");
        }
        Ok(dir)
    }

    /// The canonical path of this directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, as a path (for messages, or for an API that takes a path).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The sub-directory `name`, made 0700 if missing, opened without following a link and
    /// verified as this one is.
    pub fn child_dir(&self, name: &str) -> Result<VerifiedDir, RegistryError> {
        let path = self.entry_path(name)?;
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(RegistryError::Io {
                    action: "create the directory",
                    path,
                    source: e.into(),
                });
            }
        }
        self.open_child_dir(name, path.clone())?
            .ok_or_else(|| RegistryError::Io {
                action: "open the directory",
                path,
                source: io::ErrorKind::NotFound.into(),
            })
    }

    /// The sub-directory `name` if it exists (not created), verified as [`Self::child_dir`].
    pub fn existing_child_dir(&self, name: &str) -> Result<Option<VerifiedDir>, RegistryError> {
        let path = self.entry_path(name)?;
        self.open_child_dir(name, path)
    }

    fn open_child_dir(
        &self,
        name: &str,
        path: PathBuf,
    ) -> Result<Option<VerifiedDir>, RegistryError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            // O_DIRECTORY meeting a link says "not a directory": say which it is.
            Err(rustix::io::Errno::NOTDIR)
                if rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
            {
                return Err(RegistryError::Symlink { path });
            }
            Err(e) => return Err(dir_open_error(e, &path)),
        };
        let dir = VerifiedDir { fd, path };
        if let Some(repair) = dir.verify_self()? {
            tracing::warn!("{repair}");
        }
        Ok(Some(dir))
    }

    /// Opens the file `name` for writing, creating it 0600 if missing, never through a link:
    /// it must be a regular file of ours with no other hard link. A loose mode is tightened
    /// (the message says so). `append` opens it `O_APPEND`.
    pub fn create_file(
        &self,
        name: &str,
        append: bool,
    ) -> Result<(File, Option<String>), RegistryError> {
        let path = self.entry_path(name)?;
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if append {
            flags |= OFlags::APPEND;
        }
        // Non-blocking so that a FIFO where the file should be cannot stall the open; it is
        // refused below, and a regular file ignores the flag.
        flags |= OFlags::NONBLOCK;
        let fd = rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| file_open_error(e, "open", &path))?;
        let repair = verify_file(&fd, &path, true)?;
        clear_nonblock(&fd, &path)?;
        Ok((File::from(fd), repair))
    }

    /// Opens the existing file `name` for reading, never through a link; `None` when it is
    /// missing. It must be a regular file of ours.
    pub fn open_existing_file(&self, name: &str) -> Result<Option<File>, RegistryError> {
        let path = self.entry_path(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(file_open_error(e, "open", &path)),
        };
        verify_file(&fd, &path, false)?;
        clear_nonblock(&fd, &path)?;
        Ok(Some(File::from(fd)))
    }

    /// Checks, without following a link, that `name` is missing or a regular file of ours;
    /// returns its size when it is there. For files another component opens by path (SQLite's
    /// `-wal`, `-shm` and `-journal`).
    pub fn check_entry(&self, name: &str) -> Result<Option<u64>, RegistryError> {
        let path = self.entry_path(name)?;
        let st = match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(RegistryError::Io {
                    action: "inspect",
                    path,
                    source: e.into(),
                });
            }
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Symlink {
            return Err(RegistryError::Symlink { path });
        }
        if kind != FileType::RegularFile {
            return Err(RegistryError::NotAFile {
                path,
                what: describe_kind(kind),
            });
        }
        let me = crate::proc::sys::euid();
        if st.st_uid != me {
            return Err(RegistryError::ForeignOwner {
                path,
                owner: st.st_uid,
                me,
            });
        }
        Ok(Some(st.st_size as u64))
    }

    /// Renames `from` to `to`, both in this directory (a rename never follows a link).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), RegistryError> {
        let path = self.entry_path(from)?;
        self.entry_path(to)?;
        rfs::renameat(&self.fd, from, &self.fd, to).map_err(|e| RegistryError::Io {
            action: "rename",
            path,
            source: e.into(),
        })
    }

    /// Removes the file `name` (the link itself, if it is one); missing is fine.
    pub fn remove_file(&self, name: &str) -> Result<(), RegistryError> {
        let path = self.entry_path(name)?;
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(RegistryError::Io {
                action: "remove",
                path,
                source: e.into(),
            }),
        }
    }

    /// A path for a unix socket named `name` in this directory, short enough for `sun_path`
    /// (108 bytes with its NUL): the canonical path when it fits, else
    /// `/proc/self/fd/<fd>/<name>`, which the kernel resolves through this verified
    /// descriptor. That second form means this directory only in this process and only while
    /// `self` is open: bind or connect with it, do not store it or hand it to another process.
    /// A `name` too long even for that (over about 80 bytes) gives a path `bind` refuses
    /// with `ENAMETOOLONG`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        let full = self.path.join(name);
        if full.as_os_str().len() < SUN_PATH_MAX {
            return full;
        }
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }

    /// `name` as a path in this directory; it must be one plain component, so that an
    /// `openat` of it cannot leave the directory.
    fn entry_path(&self, name: &str) -> Result<PathBuf, RegistryError> {
        let path = self.path.join(name);
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(RegistryError::Io {
                action: "name a file in",
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the name must be a single path component",
                ),
            });
        }
        Ok(path)
    }

    /// Checks the descriptor itself: ours, writable by nobody else; tightens a safe loose mode.
    fn verify_self(&self) -> Result<Option<String>, RegistryError> {
        let st = rfs::fstat(&self.fd).map_err(|e| RegistryError::Io {
            action: "inspect",
            path: self.path.clone(),
            source: e.into(),
        })?;
        let me = crate::proc::sys::euid();
        if st.st_uid != me {
            return Err(RegistryError::ForeignOwner {
                path: self.path.clone(),
                owner: st.st_uid,
                me,
            });
        }
        let mode = st.st_mode & 0o7777;
        if mode & WRITABLE_BY_OTHERS != 0 {
            return Err(RegistryError::OthersCanWrite {
                path: self.path.clone(),
                mode,
            });
        }
        if mode == DIR_MODE {
            return Ok(None);
        }
        rfs::fchmod(&self.fd, Mode::from_raw_mode(DIR_MODE)).map_err(|e| RegistryError::Io {
            action: "set the permissions of",
            path: self.path.clone(),
            source: e.into(),
        })?;
        Ok(Some(format!(
            "tightened the mode of {} from {mode:04o} to {DIR_MODE:04o}",
            self.path.display()
        )))
    }
}

impl AsFd for VerifiedDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Makes the directory (0700) and its parents when missing. The parents are not ccscope's to
/// police beyond [`check_ancestors`]; a symlinked `~/.local/state` is common and fine.
fn create_missing(path: &Path) -> Result<(), RegistryError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| RegistryError::Io {
            action: "create the parent of the state directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(RegistryError::Io {
            action: "create the state directory",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The canonical path of the deepest directory above `path` that exists.
fn deepest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find_map(|a| fs::canonicalize(a).ok())
}

/// Refuses a state directory `path` that another user could replace: `from` or a directory
/// above it is theirs, or anyone may write it without the sticky bit (in a sticky directory
/// such as /tmp, only the owner of an entry may rename or remove it). A group-writable
/// directory above is let be: with user private groups (umask 002) that group is the user
/// alone, and the state directory itself is still held to "nobody else writes". `from` is
/// canonical, so each of these is a real directory.
fn check_ancestors(path: &Path, from: &Path) -> Result<(), RegistryError> {
    let me = crate::proc::sys::euid();
    for parent in from.ancestors() {
        let meta = fs::symlink_metadata(parent).map_err(|source| RegistryError::Io {
            action: "inspect",
            path: parent.to_path_buf(),
            source,
        })?;
        let mode = meta.mode() & 0o7777;
        let foreign = meta.uid() != 0 && meta.uid() != me;
        if foreign || (mode & WRITABLE_BY_ANYONE != 0 && mode & STICKY == 0) {
            return Err(RegistryError::ReplaceableParent {
                path: path.to_path_buf(),
                parent: parent.to_path_buf(),
                owner: meta.uid(),
                mode,
            });
        }
    }
    Ok(())
}

/// A file ccscope opened in its state: regular, ours, one link. With `tighten`, a mode other
/// than 0600 is set to 0600 on the descriptor.
fn verify_file(fd: &OwnedFd, path: &Path, tighten: bool) -> Result<Option<String>, RegistryError> {
    let st = rfs::fstat(fd).map_err(|e| RegistryError::Io {
        action: "inspect",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(RegistryError::NotAFile {
            path: path.to_path_buf(),
            what: describe_kind(kind),
        });
    }
    let me = crate::proc::sys::euid();
    if st.st_uid != me {
        return Err(RegistryError::ForeignOwner {
            path: path.to_path_buf(),
            owner: st.st_uid,
            me,
        });
    }
    if st.st_nlink > 1 {
        return Err(RegistryError::HardLinked {
            path: path.to_path_buf(),
            links: st.st_nlink as u64,
        });
    }
    let mode = st.st_mode & 0o7777;
    if !tighten || mode == FILE_MODE {
        return Ok(None);
    }
    rfs::fchmod(fd, Mode::from_raw_mode(FILE_MODE)).map_err(|e| RegistryError::Io {
        action: "set the permissions of",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(Some(format!(
        "tightened the mode of {} from {mode:04o} to {FILE_MODE:04o}",
        path.display()
    )))
}

fn clear_nonblock(fd: &OwnedFd, path: &Path) -> Result<(), RegistryError> {
    let flags =
        rustix::fs::fcntl_getfl(fd).and_then(|f| rustix::fs::fcntl_setfl(fd, f - OFlags::NONBLOCK));
    flags.map_err(|e| RegistryError::Io {
        action: "set the flags of",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn dir_open_error(e: rustix::io::Errno, path: &Path) -> RegistryError {
    match e {
        rustix::io::Errno::LOOP => RegistryError::Symlink {
            path: path.to_path_buf(),
        },
        rustix::io::Errno::NOTDIR => RegistryError::NotADirectory {
            path: path.to_path_buf(),
        },
        e => RegistryError::Io {
            action: "open the directory",
            path: path.to_path_buf(),
            source: e.into(),
        },
    }
}

fn file_open_error(e: rustix::io::Errno, action: &'static str, path: &Path) -> RegistryError {
    match e {
        // O_NOFOLLOW met a link where the file should be.
        rustix::io::Errno::LOOP => RegistryError::Symlink {
            path: path.to_path_buf(),
        },
        e => RegistryError::Io {
            action,
            path: path.to_path_buf(),
            source: e.into(),
        },
    }
}

/// What a thing that is not a regular file is, in words.
pub(crate) fn describe_kind(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn flag(path: PathBuf) -> StateDir {
        StateDir {
            path,
            origin: StateDirOrigin::Flag,
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
    fn creates_0700_and_tightens_a_mode_that_lets_nobody_else_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = flag(tmp.path().join("a/b/ccscope"));
        let (_, repairs) = dir.open().unwrap();
        assert!(repairs.is_empty(), "{repairs:?}");
        assert_eq!(mode(&dir.path), 0o700);
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o755)).unwrap();
        let (opened, repairs) = dir.open().unwrap();
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert!(repairs[0].contains("from 0755 to 0700"), "{repairs:?}");
        assert_eq!(mode(&dir.path), 0o700);
        let (_, repair) = opened.create_file("f", false).unwrap();
        assert_eq!(repair, None);
        assert_eq!(mode(&dir.path.join("f")), 0o600);
        fs::set_permissions(dir.path.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(opened.create_file("f", false).unwrap().1.is_some());
        assert_eq!(mode(&dir.path.join("f")), 0o600);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_and_left_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        for loose in [0o777, 0o1777, 0o720, 0o702] {
            let path = tmp.path().join(format!("s{loose:o}"));
            fs::create_dir(&path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            match flag(path.clone()).open() {
                Err(RegistryError::OthersCanWrite { mode, .. }) => assert_eq!(mode, loose),
                other => panic!("{loose:04o}: expected a refusal, got {other:?}"),
            }
            assert_eq!(mode(&path), loose, "the mode is not touched");
        }
    }

    #[test]
    fn spellings_and_links_of_one_directory_are_one_canonical_path() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("state");
        let (a, _) = flag(real.clone()).open().unwrap();
        let (b, _) = flag(tmp.path().join("state/")).open().unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let (c, _) = flag(tmp.path().join("link")).open().unwrap();
        let (d, _) = flag(tmp.path().join("state/../state")).open().unwrap();
        let canonical = fs::canonicalize(&real).unwrap();
        for dir in [a, b, c, d] {
            assert_eq!(dir.path(), canonical);
        }
    }

    #[test]
    fn a_link_to_a_directory_others_can_write_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::symlink(&shared, tmp.path().join("state")).unwrap();
        let err = flag(tmp.path().join("state")).open().unwrap_err();
        assert!(
            matches!(err, RegistryError::OthersCanWrite { mode: 0o1777, .. }),
            "{err:?}"
        );
        assert_eq!(mode(&shared), 0o1777);
    }

    #[test]
    fn a_directory_under_one_others_can_write_without_sticky_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = flag(open.join("state/deeper")).open().unwrap_err();
        assert!(
            matches!(&err, RegistryError::ReplaceableParent { parent, .. } if *parent == fs::canonicalize(&open).unwrap()),
            "{err:?}"
        );
        assert!(!open.join("state").exists(), "nothing is made there");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        flag(open.join("state"))
            .open()
            .expect("a sticky parent lets nobody rename our directory");
    }

    #[test]
    fn files_and_directories_are_never_opened_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = flag(tmp.path().join("state")).open().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, "precious").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("f")).unwrap();
        assert!(matches!(
            dir.create_file("f", false),
            Err(RegistryError::Symlink { .. })
        ));
        assert!(matches!(
            dir.open_existing_file("f"),
            Err(RegistryError::Symlink { .. })
        ));
        assert!(matches!(
            dir.check_entry("f"),
            Err(RegistryError::Symlink { .. })
        ));
        // A dangling link is refused too, and nothing is created at its target.
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), dir.join("g")).unwrap();
        assert!(matches!(
            dir.create_file("g", true),
            Err(RegistryError::Symlink { .. })
        ));
        assert!(!tmp.path().join("nowhere").exists());
        std::os::unix::fs::symlink(tmp.path(), dir.join("d")).unwrap();
        assert!(matches!(
            dir.child_dir("d"),
            Err(RegistryError::Symlink { .. })
        ));
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(mode(&target), 0o640);
    }

    #[test]
    fn hard_links_fifos_and_names_with_slashes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = flag(tmp.path().join("state")).open().unwrap();
        fs::write(tmp.path().join("other"), "x").unwrap();
        fs::hard_link(tmp.path().join("other"), dir.join("h")).unwrap();
        assert!(matches!(
            dir.create_file("h", false),
            Err(RegistryError::HardLinked { links: 2, .. })
        ));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            dir.create_file("p", false),
            Err(RegistryError::NotAFile {
                what: "a FIFO (named pipe)",
                ..
            })
        ));
        assert!(matches!(
            dir.check_entry("p"),
            Err(RegistryError::NotAFile { .. })
        ));
        for bad in ["", ".", "..", "a/b"] {
            assert!(dir.create_file(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sub_directory_is_made_0700_and_one_others_can_write_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = flag(tmp.path().join("state")).open().unwrap();
        let locks = dir.child_dir("locks").unwrap();
        assert_eq!(mode(locks.path()), 0o700);
        assert!(dir.existing_child_dir("none").unwrap().is_none());
        fs::set_permissions(locks.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            dir.child_dir("locks"),
            Err(RegistryError::OthersCanWrite { .. })
        ));
    }

    #[test]
    fn a_socket_path_fits_in_sun_path() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("d".repeat(100));
        let (dir, _) = flag(deep).open().unwrap();
        let short = dir.socket_path("control.sock");
        assert!(
            short.as_os_str().len() < SUN_PATH_MAX,
            "{}",
            short.display()
        );
        assert!(short.starts_with("/proc/self/fd/"), "{}", short.display());
        // The short form names the same directory, for bind and connect alike.
        let listener = std::os::unix::net::UnixListener::bind(&short).unwrap();
        assert!(dir.join("control.sock").exists());
        std::os::unix::net::UnixStream::connect(dir.socket_path("control.sock")).unwrap();
        drop(listener.accept().unwrap());
        let (near, _) = flag(tmp.path().join("near")).open().unwrap();
        assert_eq!(near.socket_path("s"), near.join("s"));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ccscope");
        fs::write(&path, "").unwrap();
        assert!(matches!(
            flag(path).open(),
            Err(RegistryError::NotADirectory { .. })
        ));
    }

    #[test]
    fn a_missing_directory_is_not_created_by_existing_state() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("none");
        assert!(VerifiedDir::existing_state(&path).unwrap().is_none());
        assert!(!path.exists());
    }
}
