//! One supervisor per project: an exclusive `flock` on `<state>/locks/<project>.lock`, held for
//! the supervisor's life (the kernel drops it when the process dies, however it dies). The
//! file says who holds it, so a second `run` can name the holder.
//!
//! The directory and the file are opened through the verified state directory, never through
//! a link: a `locks/<project>.lock` that is a symlink (to a file ccscope must not write) is
//! refused and its target left alone.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::registry::{RegistryError, VerifiedDir};

const LOCKS_DIR: &str = "locks";

pub struct ProjectLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("project `{project}` is already supervised by ccscope pid {}", holder.map_or("?".to_string(), |p| p.to_string()))]
    Held {
        project: String,
        holder: Option<i32>,
        path: PathBuf,
    },
    #[error("could not lock {}: {}", path.display(), crate::proc::describe_io(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state directory, `locks/` or the lock file cannot be used safely.
    #[error(transparent)]
    Unsafe(#[from] RegistryError),
}

pub fn lock_path(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join(LOCKS_DIR).join(lock_name(project))
}

fn lock_name(project: &str) -> String {
    format!("{project}.lock")
}

/// Takes the project's lock, or says who holds it.
pub fn acquire(state_dir: &Path, project: &str) -> Result<ProjectLock, LockError> {
    let locks = VerifiedDir::create_state(state_dir)?.child_dir(LOCKS_DIR)?;
    let path = locks.join(&lock_name(project));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let (mut file, repair) = locks.create_file(&lock_name(project), false)?;
    if let Some(repair) = repair {
        tracing::warn!("{repair}");
    }
    if let Err(err) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        let err = std::io::Error::from(err);
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LockError::Held {
                project: project.to_string(),
                holder: read_holder(&mut file),
                path,
            });
        }
        return Err(io(err));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(ProjectLock { _file: file, path })
}

/// The pid that holds the lock now, or None when nobody does (or the lock cannot be opened
/// safely: [`probe`] and `acquire` say why).
pub fn holder(state_dir: &Path, project: &str) -> Option<i32> {
    probe(state_dir, project).ok().flatten()
}

/// The pid that holds the lock now (None when nobody does), or why the lock could not be
/// taken safely (a link where `locks/` or the lock file should be, another owner): for a
/// caller that wants to refuse before it starts anything, as `run --detach` does before it
/// starts a supervisor. Creates nothing.
pub fn probe(state_dir: &Path, project: &str) -> Result<Option<i32>, LockError> {
    let Some(state) = VerifiedDir::existing_state(state_dir)? else {
        return Ok(None);
    };
    let Some(locks) = state.existing_child_dir(LOCKS_DIR)? else {
        return Ok(None);
    };
    let Some(mut file) = locks.open_existing_file(&lock_name(project))? else {
        return Ok(None);
    };
    if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
        return Ok(None);
    }
    Ok(read_holder(&mut file))
}

fn read_holder(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A lock holder in a process of its own. Every test of this binary runs as a thread of one
    /// process, and a child another test forks holds a copy of each of its descriptors until it
    /// execs: a lock taken and dropped in this process may outlive the drop for a moment. A
    /// lock that another process holds dies when that process does, whatever this one forks.
    struct OtherProcess {
        /// Taken by `die`, so that `Drop` never signals a pid that may have been reused.
        child: Option<Child>,
    }

    impl OtherProcess {
        /// Starts `sh`, which locks `path` as `acquire` does (writing its pid) and waits.
        fn lock(path: &Path) -> OtherProcess {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut child = Command::new("sh")
                .args([
                    "-c",
                    r#"exec 9<>"$0" && flock --exclusive --nonblock 9 && echo $$ > "$0" && echo locked && read -r _"#,
                ])
                .arg(path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start sh (and flock(1), from util-linux)");
            // Its word that it holds the lock is the event to wait for.
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "locked\n", "sh could not lock {}", path.display());
            OtherProcess { child: Some(child) }
        }

        fn pid(&self) -> i32 {
            self.child.as_ref().map_or(0, |c| c.id() as i32)
        }

        /// Kills it and waits until it is gone, its descriptors (and so its lock) with it.
        fn die(mut self) {
            let mut child = self.child.take().unwrap();
            child.kill().unwrap();
            match child.wait() {
                Ok(_) => {}
                // Another test's reaper (`waitpid(-1)`) collected it: it is dead all the same.
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {}
                Err(e) => panic!("could not wait for the lock holder: {e}"),
            }
        }
    }

    impl Drop for OtherProcess {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_dies_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let other = OtherProcess::lock(&lock_path(dir.path(), "demo"));
        assert_eq!(holder(dir.path(), "demo"), Some(other.pid()));
        match acquire(dir.path(), "demo") {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(other.pid())),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lock was granted"),
        }
        assert!(acquire(dir.path(), "other").is_ok(), "projects lock apart");
        other.die();
        assert_eq!(holder(dir.path(), "demo"), None);
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let target = dir.path().join("precious");
        std::fs::write(&target, "root only\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir_all(state.join("locks")).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(state.join("locks"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::os::unix::fs::symlink(&target, lock_path(&state, "demo")).unwrap();
        match acquire(&state, "demo") {
            Err(LockError::Unsafe(RegistryError::Symlink { path })) => {
                assert!(path.ends_with("locks/demo.lock"), "{}", path.display())
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a lock was taken through a link"),
        }
        assert_eq!(holder(&state, "demo"), None);
        assert!(matches!(
            probe(&state, "demo"),
            Err(LockError::Unsafe(RegistryError::Symlink { .. }))
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root only\n");
    }

    #[test]
    fn a_lock_its_holder_left_by_dying_is_granted_and_a_second_open_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing in this process has touched `again` before this `acquire`, so no forked
        // copy of a descriptor of ours can hold it.
        OtherProcess::lock(&lock_path(dir.path(), "again")).die();
        let held = acquire(dir.path(), "again").expect("the lock died with its holder");
        let me = std::process::id() as i32;
        assert_eq!(holder(dir.path(), "again"), Some(me));
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process, as a second supervisor would.
        match acquire(dir.path(), "again") {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(me)),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lock was granted"),
        }
        drop(held);
    }
}
