//! Watching a service's files (`watch = { paths, ignore, debounce }`): inotify through the
//! `notify` crate, never polling, and one report per burst of changes.
//!
//! What is watched is the smallest set of directories that can hold a match: the literal
//! prefix of each glob (`src` for `src/**/*.py`), recursively when the rest of the glob can
//! reach below it, only that directory when it cannot (`*.toml`), and the parent directory of a
//! glob with no wildcard at all (a literal directory means everything under it). ccscope walks
//! those trees itself and adds one non-recursive inotify watch per directory rather than using
//! notify's recursive mode, so that `.git` directories and the `never` paths (the state
//! directory) are not even watched, and so that a directory created later is watched as soon
//! as its creation is heard, with the files already in it counted as changes (they may have
//! been written before the watch was in place). Symbolic links to directories are not
//! followed below a glob's prefix.
//!
//! A glob's prefix that does not exist yet is not an error: its nearest existing ancestor is
//! watched (that directory alone, and each directory on the way down as it appears), so that
//! `build/**/*.js` starts to count once `build` is made. Only when no ancestor can be watched
//! at all does [`Watcher::start`] fail.
//!
//! A watched directory that is removed stops being watched (the kernel drops its watch); made
//! again, it is watched again when its parent is watched, that is below a `**` or on the way
//! down to a prefix that was missing. A glob's prefix itself removed and made again is not
//! seen until the next start.
//!
//! Events go from notify's thread into a bounded queue to one thread of ours, which blocks on
//! it (no timer runs while nothing changes: idle costs no CPU), matches each path against the
//! globs, and calls `on_burst` once `debounce` has passed with no further matching change. A
//! full queue, or the kernel's own queue overflowing, is not a lost change: every tree is
//! walked again (to watch any directory missed) and counted as one change.

use std::collections::VecDeque;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use globset::{GlobSet, GlobSetBuilder};
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::config::{WatchSpec, watch_glob};
use crate::proc::error::describe_io;

#[cfg(test)]
mod tests;

/// Events waiting for the matching thread; beyond this they are dropped and a rescan stands
/// for them.
const QUEUE: usize = 4096;

/// Where the kernel's limit on inotify watches per user is read and set.
const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";
const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// One burst of changes, reported once the burst is over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The first matching path of the burst: relative to the spec's base when it is under it
    /// (`src/app.py`), absolute otherwise. After a rescan, the directory rescanned.
    pub path: PathBuf,
    /// How many matching events the burst held (the kernel merges identical events that
    /// follow each other, so a burst of writes to one file may count fewer).
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("resolve the directory {} that watch paths are relative to: {}", path.display(), describe_io(source))]
    Base { path: PathBuf, source: io::Error },
    #[error("compile the watch glob \"{glob}\": {}", source.kind())]
    Glob {
        glob: String,
        source: globset::Error,
    },
    #[error("set up inotify: {reason}")]
    Init { reason: String },
    #[error(
        "watch {}: the limit of inotify watches is reached (fs.inotify.max_user_watches = \
         {}, {added} directories already watched for this service); raise it with \
         `sysctl fs.inotify.max_user_watches=524288` ({MAX_USER_WATCHES}), or narrow the \
         service's `watch.paths`", path.display(), limit.map_or_else(|| "unknown".into(), |l| l.to_string())
    )]
    TooManyWatches {
        path: PathBuf,
        limit: Option<u64>,
        added: usize,
    },
    #[error("watch {}: {reason}", path.display())]
    Watch { path: PathBuf, reason: String },
    #[error("start the watching thread: {}", describe_io(.0))]
    Thread(io::Error),
}

/// A running watch; dropping it stops watching (and waits for its thread, which is never
/// long: the thread only ever blocks on its queue).
pub struct Watcher {
    queue: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

enum Msg {
    Event(notify::Event),
    Error(notify::Error),
    Stop,
}

impl Watcher {
    /// Starts watching what `spec` names, never anything under `never` (the state directory,
    /// whose writes would otherwise restart a service on every registry update). `on_burst` is
    /// called from the watcher's own thread. Every directory is watched before this returns,
    /// so a change made after it is seen.
    pub fn start(
        spec: &WatchSpec,
        never: &[PathBuf],
        on_burst: impl Fn(Change) + Send + 'static,
    ) -> Result<Watcher, WatchError> {
        let scope = Scope::new(spec, never)?;
        let (queue, events) = sync_channel::<Msg>(QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let handler = {
            let queue = queue.clone();
            let overflowed = Arc::clone(&overflowed);
            move |event: notify::Result<notify::Event>| {
                let msg = match event {
                    // Opening and reading files (a service importing its own sources) is not
                    // a change; neither is the close after a write, whose write was one.
                    Ok(e) if !e.need_rescan() && !is_change(&e.kind) => return,
                    Ok(e) => Msg::Event(e),
                    Err(e) => Msg::Error(e),
                };
                if let Err(TrySendError::Full(_)) = queue.try_send(msg) {
                    overflowed.store(true, Ordering::Release);
                }
            }
        };
        let watcher = RecommendedWatcher::new(handler, notify::Config::default()).map_err(|e| {
            WatchError::Init {
                reason: init_failure(&e),
            }
        })?;
        let mut worker = Worker {
            scope,
            watcher,
            added: 0,
            pending: None,
        };
        worker.watch_all(false)?;
        let debounce = spec.debounce.0;
        let thread = std::thread::Builder::new()
            .name("ccscope-watch".into())
            .spawn(move || worker.run(&events, &overflowed, debounce, on_burst))
            .map_err(WatchError::Thread)?;
        Ok(Watcher {
            queue,
            thread: Some(thread),
        })
    }

    /// [`Watcher::start`] with the bursts sent into a tokio channel, for a driver that awaits
    /// them (the receiver works on any runtime, a `LocalSet` too).
    pub fn channel(
        spec: &WatchSpec,
        never: &[PathBuf],
    ) -> Result<(Watcher, tokio::sync::mpsc::UnboundedReceiver<Change>), WatchError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // A closed receiver only means nobody listens any more; the owner drops the watcher.
        let watcher = Watcher::start(spec, never, move |change| {
            let _ = tx.send(change);
        })?;
        Ok((watcher, rx))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // A blocking send: the thread drains the queue, so there is room soon.
        let _ = self.queue.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The kinds of event that are a change of a file: created, written, its metadata changed
/// (`touch`), renamed or removed.
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    )
}

/// What is watched and what matches: pure, so that it is tested without inotify.
#[derive(Debug)]
struct Scope {
    base: PathBuf,
    roots: Vec<Root>,
    paths: GlobSet,
    ignore: GlobSet,
    never: Vec<PathBuf>,
}

/// A directory to watch: alone, or with everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Root {
    dir: PathBuf,
    recursive: bool,
}

/// A glob split at its first component with a wildcard: the literal directory before it
/// (absolute, `.` and `..` resolved) and the rest.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    prefix: PathBuf,
    rest: String,
}

fn split_glob(base: &Path, glob: &str) -> Split {
    let is_literal = |c: &str| !c.contains(['*', '?', '[', ']', '{', '}', '\\']);
    let mut prefix = if glob.starts_with('/') {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    let mut parts = glob.split('/').filter(|c| !c.is_empty()).peekable();
    while let Some(part) = parts.next_if(|p| is_literal(p)) {
        match part {
            "." => {}
            ".." => {
                prefix.pop();
            }
            name => prefix.push(name),
        }
    }
    Split {
        prefix,
        rest: parts.collect::<Vec<_>>().join("/"),
    }
}

impl Scope {
    fn new(spec: &WatchSpec, never: &[PathBuf]) -> Result<Scope, WatchError> {
        let base = std::fs::canonicalize(&spec.base).map_err(|source| WatchError::Base {
            path: spec.base.clone(),
            source,
        })?;
        let mut roots = Vec::new();
        let mut paths = GlobSetBuilder::new();
        for glob in &spec.paths {
            let split = split_glob(&base, glob);
            let anchored = escape(&split.prefix);
            if split.rest.is_empty() {
                // No wildcard: a directory means all of it, anything else that very path.
                if split.prefix.is_dir() {
                    paths.add(compile(
                        glob,
                        &format!("{}/**", anchored.trim_end_matches('/')),
                    )?);
                    roots.push(Root {
                        dir: split.prefix,
                        recursive: true,
                    });
                } else {
                    paths.add(compile(glob, &anchored)?);
                    let parent = split.prefix.parent().unwrap_or(Path::new("/"));
                    roots.push(Root {
                        dir: parent.to_path_buf(),
                        recursive: false,
                    });
                }
            } else {
                let joined = format!("{}/{}", anchored.trim_end_matches('/'), split.rest);
                paths.add(compile(glob, &joined)?);
                roots.push(Root {
                    recursive: split.rest.contains('/') || split.rest.contains("**"),
                    dir: split.prefix,
                });
            }
        }
        let mut ignore = GlobSetBuilder::new();
        for glob in &spec.ignore {
            let split = split_glob(&base, glob);
            let anchored = escape(&split.prefix);
            let joined = if split.rest.is_empty() {
                anchored
            } else {
                format!("{}/{}", anchored.trim_end_matches('/'), split.rest)
            };
            ignore.add(compile(glob, &joined)?);
        }
        let mut never_all = Vec::new();
        for n in never {
            never_all.push(n.clone());
            if let Ok(c) = std::fs::canonicalize(n) {
                never_all.push(c);
            }
        }
        let build = |b: GlobSetBuilder, glob: &str| {
            b.build().map_err(|source| WatchError::Glob {
                glob: glob.to_string(),
                source,
            })
        };
        Ok(Scope {
            base,
            roots: dedup_roots(roots),
            paths: build(paths, "watch.paths")?,
            ignore: build(ignore, "watch.ignore")?,
            never: never_all,
        })
    }

    /// Whether a directory is watched: it is a root, or below a recursive one, or on the way
    /// down to a root that does not exist yet; and it is neither `.git` nor under `never`.
    fn wants_dir(&self, dir: &Path) -> bool {
        if self.excluded(dir) {
            return false;
        }
        self.roots.iter().any(|r| {
            (dir.starts_with(&r.dir) && (r.recursive || dir == r.dir)) || r.dir.starts_with(dir)
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        path.components()
            .any(|c| c == Component::Normal(".git".as_ref()))
            || self.never.iter().any(|n| path.starts_with(n))
    }

    fn matches(&self, path: &Path) -> bool {
        !self.excluded(path) && self.paths.is_match(path) && !self.ignore.is_match(path)
    }

    fn shown(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.base) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
            _ => path.to_path_buf(),
        }
    }
}

/// A literal path as a glob: each metacharacter, the backslash too, escaped by a backslash.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '?' | '*' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn compile(written: &str, anchored: &str) -> Result<globset::Glob, WatchError> {
    watch_glob(anchored).map_err(|source| WatchError::Glob {
        glob: written.to_string(),
        source,
    })
}

/// Drops roots covered by a recursive root above them.
fn dedup_roots(mut roots: Vec<Root>) -> Vec<Root> {
    roots.sort_by(|a, b| a.dir.cmp(&b.dir).then(b.recursive.cmp(&a.recursive)));
    let mut kept: Vec<Root> = Vec::new();
    for r in roots {
        let covered = kept.iter().any(|k| {
            r.dir.starts_with(&k.dir) && (k.recursive || (k.dir == r.dir && !r.recursive))
        });
        if !covered {
            kept.push(r);
        }
    }
    kept
}

struct Worker {
    scope: Scope,
    watcher: RecommendedWatcher,
    /// Directories watched so far (for the limit's message).
    added: usize,
    /// The burst so far: its first path and how many matching events.
    pending: Option<(PathBuf, usize)>,
}

impl Worker {
    /// Watches every root, from its nearest existing ancestor down. `count` makes the files
    /// found changes (after an overflow: a change may be among them).
    fn watch_all(&mut self, count: bool) -> Result<(), WatchError> {
        for root in self.scope.roots.clone() {
            let start = root
                .dir
                .ancestors()
                .find(|a| a.is_dir())
                .unwrap_or(Path::new("/"))
                .to_path_buf();
            if !self.scope.wants_dir(&start) {
                continue;
            }
            // The first directory must be watchable; below it, what cannot be read is skipped.
            self.watch_dir(&start)?;
            self.walk(&start, count, true)?;
        }
        Ok(())
    }

    fn watch_dir(&mut self, dir: &Path) -> Result<(), WatchError> {
        match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.added += 1;
                Ok(())
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                Err(WatchError::TooManyWatches {
                    path: dir.to_path_buf(),
                    limit: std::fs::read_to_string(MAX_USER_WATCHES)
                        .ok()
                        .and_then(|t| t.trim().parse().ok()),
                    added: self.added,
                })
            }
            Err(e) => Err(WatchError::Watch {
                path: dir.to_path_buf(),
                reason: describe_notify(&e),
            }),
        }
    }

    /// Watches the directories below `top` that are wanted (`top` itself is, unless
    /// `top_watched` is false), breadth first without recursion; with `count`, every matching
    /// file met is a change.
    fn walk(&mut self, top: &Path, count: bool, top_watched: bool) -> Result<(), WatchError> {
        let mut queue = VecDeque::from([top.to_path_buf()]);
        let mut first = top_watched;
        while let Some(dir) = queue.pop_front() {
            if !std::mem::take(&mut first) {
                match self.watch_dir(&dir) {
                    Ok(()) => {}
                    Err(e @ WatchError::TooManyWatches { .. }) => return Err(e),
                    // Gone again, or not ours to read: nothing in it can be watched.
                    Err(e) => {
                        tracing::debug!("not watching {}: {e}", dir.display());
                        continue;
                    }
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && self.scope.wants_dir(&path) {
                    queue.push_back(path.clone());
                }
                if count && self.scope.matches(&path) {
                    self.note(path);
                }
            }
        }
        Ok(())
    }

    fn note(&mut self, path: PathBuf) {
        match &mut self.pending {
            Some((_, n)) => *n += 1,
            None => self.pending = Some((path, 1)),
        }
    }

    fn handle(&mut self, event: notify::Event) {
        if event.need_rescan() {
            self.rescan();
            return;
        }
        let may_be_new_dir = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any
        );
        for path in event.paths {
            if may_be_new_dir
                && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
                && self.scope.wants_dir(&path)
            {
                if let Err(e) = self.walk(&path, true, false) {
                    tracing::warn!("a new directory is not watched: {e}");
                }
            }
            if self.scope.matches(&path) {
                self.note(path);
            }
        }
    }

    /// Events were lost: watch whatever appeared meanwhile, and count it as one change.
    fn rescan(&mut self) {
        if let Err(e) = self.watch_all(false) {
            tracing::warn!("after lost file events, not every directory is watched: {e}");
        }
        let first = self.scope.roots.first().map(|r| r.dir.clone());
        if let Some(dir) = first {
            self.note(dir);
        }
    }

    fn run(
        mut self,
        events: &Receiver<Msg>,
        overflowed: &AtomicBool,
        debounce: Duration,
        on_burst: impl Fn(Change),
    ) {
        let mut deadline: Option<Instant> = None;
        loop {
            let msg = match deadline {
                // Nothing pending: block with no timeout, so idle costs nothing.
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            let before = self.pending.as_ref().map_or(0, |(_, n)| *n);
            match msg {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Event(e)) => self.handle(e),
                Ok(Msg::Error(e)) => tracing::warn!("file watch: {}", describe_notify(&e)),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some((path, count)) = self.pending.take() {
                        on_burst(Change {
                            path: self.scope.shown(&path),
                            count,
                        });
                    }
                    deadline = None;
                    continue;
                }
            }
            if overflowed.swap(false, Ordering::AcqRel) {
                self.rescan();
            }
            // Trailing debounce: each matching change moves the end of the burst.
            if self.pending.as_ref().map_or(0, |(_, n)| *n) > before {
                deadline = Some(Instant::now() + debounce);
            }
        }
    }
}

/// Why inotify could not be set up; out of instances (EMFILE from inotify_init), the sysctl
/// that raises their limit.
fn init_failure(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => format!(
            "the limit of inotify instances is reached (fs.inotify.max_user_instances = {}); \
             raise it with `sysctl fs.inotify.max_user_instances=1024` ({MAX_USER_INSTANCES})",
            std::fs::read_to_string(MAX_USER_INSTANCES)
                .map_or_else(|_| "unknown".into(), |t| t.trim().to_string())
        ),
        _ => describe_notify(e),
    }
}

/// notify's error in words, without its Debug names or a bare `os error N`.
fn describe_notify(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::Io(io) => describe_io(io),
        notify::ErrorKind::PathNotFound => "no such file or directory".into(),
        notify::ErrorKind::MaxFilesWatch => format!(
            "the limit of inotify watches is reached (raise fs.inotify.max_user_watches, \
             {MAX_USER_WATCHES})"
        ),
        notify::ErrorKind::Generic(text) => text.clone(),
        notify::ErrorKind::WatchNotFound => "the watch is gone".into(),
        notify::ErrorKind::InvalidConfig(_) => "notify refused its configuration".into(),
    }
}
