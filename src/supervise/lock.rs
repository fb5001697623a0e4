//! One supervisor per project: an exclusive `flock` on `<state>/locks/<project>.lock`, held for
//! the supervisor's life (the kernel drops it when the process dies, however it dies). The
//! file says who holds it, so a second `run` can name the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

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
}

pub fn lock_path(state_dir: &Path, project: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{project}.lock"))
}

/// Takes the project's lock, or says who holds it.
pub fn acquire(state_dir: &Path, project: &str) -> Result<ProjectLock, LockError> {
    let path = lock_path(state_dir, project);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
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

/// The pid that holds the lock now, or None when nobody does.
pub fn holder(state_dir: &Path, project: &str) -> Option<i32> {
    let mut file = File::open(lock_path(state_dir, project)).ok()?;
    if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
        return None;
    }
    read_holder(&mut file)
}

fn read_holder(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_dies_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "demo").unwrap();
        assert_eq!(holder(dir.path(), "demo"), Some(std::process::id() as i32));
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process, as a second supervisor would.
        match acquire(dir.path(), "demo") {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id() as i32))
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second lock was granted"),
        }
        assert!(acquire(dir.path(), "other").is_ok(), "projects lock apart");
        drop(held);
        assert_eq!(holder(dir.path(), "demo"), None);
        assert!(acquire(dir.path(), "demo").is_ok());
    }
}
