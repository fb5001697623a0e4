//! The watcher against real inotify in temporary directories. No test sleeps for a fixed time
//! to wait for something: each waits on the channel with a deadline, and "nothing happened"
//! is a bounded window of four debounces, after which a matching write proves the watcher was
//! alive all along (its burst names that write, not anything before it).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::duration::HumanDuration;

const DEBOUNCE: Duration = Duration::from_millis(150);
/// Far longer than any change takes to be heard; only a failing test waits this long.
const DEADLINE: Duration = Duration::from_secs(10);

fn spec(base: &Path, paths: &[&str], ignore: &[&str]) -> WatchSpec {
    WatchSpec {
        base: base.to_path_buf(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        ignore: ignore.iter().map(|p| p.to_string()).collect(),
        debounce: HumanDuration(DEBOUNCE),
    }
}

fn start(spec: &WatchSpec, never: &[PathBuf]) -> (Watcher, mpsc::Receiver<Change>) {
    let (tx, rx) = mpsc::channel();
    let watcher = Watcher::start(spec, never, move |c| {
        let _ = tx.send(c);
    })
    .unwrap_or_else(|e| panic!("failed to {e}"));
    (watcher, rx)
}

fn next(rx: &mpsc::Receiver<Change>) -> Change {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no change reported within {DEADLINE:?}"))
}

/// Asserts that nothing is reported for four debounces.
fn quiet(rx: &mpsc::Receiver<Change>, what: &str) {
    let until = Instant::now() + DEBOUNCE * 4;
    if let Ok(c) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        panic!("{what}: a change was reported: {c:?}");
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(path, text).unwrap();
}

#[test]
fn a_burst_of_fifty_writes_is_one_change_named_relative_to_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("src/pkg/app.py");
    write(&file, "");
    let (_w, rx) = start(&spec(tmp.path(), &["src/**/*.py"], &[]), &[]);
    for i in 0..50 {
        write(&file, &format!("v{i}\n"));
    }
    let change = next(&rx);
    assert_eq!(change.path, Path::new("src/pkg/app.py"));
    assert!(change.count >= 1, "{change:?}");
    quiet(&rx, "after the burst");
}

#[test]
fn ignored_git_and_never_files_give_nothing_and_a_match_after_them_is_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for p in ["src/x/__pycache__", ".git/objects", "state", "src/y"] {
        fs::create_dir_all(tmp.path().join(p)).unwrap();
    }
    let (_w, rx) = start(
        &spec(tmp.path(), &["**"], &["**/__pycache__/**", "**/*.log"]),
        std::slice::from_ref(&state),
    );
    write(&tmp.path().join("src/x/__pycache__/app.pyc"), "x");
    write(&tmp.path().join(".git/HEAD"), "ref: x");
    write(&tmp.path().join(".git/objects/ab"), "x");
    write(&tmp.path().join("state/registry.db"), "x");
    write(&tmp.path().join("src/y/debug.log"), "x");
    // A directory made under an ignored tree or in .git is not a match either.
    write(&tmp.path().join(".git/refs/heads/main"), "x");
    quiet(&rx, "ignored, .git and state-directory writes");
    write(&tmp.path().join("src/y/ok.py"), "x");
    let change = next(&rx);
    assert_eq!(change.path, Path::new("src/y/ok.py"));
    quiet(&rx, "after the one match");
}

#[test]
fn a_file_in_a_directory_made_after_the_start_matches() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("src")).unwrap();
    let (_w, rx) = start(&spec(tmp.path(), &["src/**/*.py"], &[]), &[]);
    // Made at once with its file: the file may be written before the new directory is
    // watched, and is a change all the same.
    write(&tmp.path().join("src/new/deeper/m.py"), "x");
    assert_eq!(next(&rx).path, Path::new("src/new/deeper/m.py"));
    // Once watched, a later write there is heard by the directory's own watch.
    write(&tmp.path().join("src/new/deeper/m.py"), "y");
    assert_eq!(next(&rx).path, Path::new("src/new/deeper/m.py"));
}

#[test]
fn a_prefix_that_does_not_exist_yet_is_watched_from_its_nearest_ancestor() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, rx) = start(&spec(tmp.path(), &["build/out/**/*.js"], &[]), &[]);
    write(&tmp.path().join("unrelated.js"), "x");
    quiet(&rx, "a file outside the glob beside the missing prefix");
    fs::create_dir(tmp.path().join("build")).unwrap();
    fs::create_dir(tmp.path().join("build/out")).unwrap();
    write(&tmp.path().join("build/out/a/b.js"), "x");
    assert_eq!(next(&rx).path, Path::new("build/out/a/b.js"));
}

#[test]
fn a_literal_file_is_watched_alone_and_a_path_outside_the_base_stays_absolute() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("stack");
    let elsewhere = tmp.path().join("shared");
    fs::create_dir_all(&base).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    write(&base.join("app.conf"), "x");
    let elsewhere = fs::canonicalize(elsewhere).unwrap();
    let other = format!("{}/*.toml", elsewhere.display());
    let (_w, rx) = start(&spec(&base, &["./app.conf", &other], &[]), &[]);
    write(&base.join("app.conf.bak"), "x");
    write(&base.join("sub/app.conf"), "x");
    quiet(&rx, "a sibling of the watched file");
    fs::write(base.join("app.conf"), "y").unwrap();
    assert_eq!(next(&rx).path, Path::new("app.conf"));
    write(&elsewhere.join("c.toml"), "x");
    assert_eq!(next(&rx).path, elsewhere.join("c.toml"));
}

#[test]
fn a_literal_directory_means_everything_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("conf.d/deep")).unwrap();
    let (_w, rx) = start(&spec(tmp.path(), &["conf.d"], &[]), &[]);
    write(&tmp.path().join("conf.d.txt"), "x");
    quiet(&rx, "a sibling with the directory's name as its prefix");
    write(&tmp.path().join("conf.d/deep/x.conf"), "x");
    assert_eq!(next(&rx).path, Path::new("conf.d/deep/x.conf"));
}

#[test]
fn touching_a_file_is_a_change_and_reading_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("main.py");
    write(&file, "x");
    let (_w, rx) = start(&spec(tmp.path(), &["*.py"], &[]), &[]);
    let _ = fs::read(&file).unwrap();
    quiet(&rx, "a read");
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(next(&rx).path, Path::new("main.py"));
}

#[tokio::test]
async fn the_channel_form_hands_bursts_to_a_tokio_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let (watcher, mut rx) = Watcher::channel(&spec(tmp.path(), &["*.txt"], &[]), &[]).unwrap();
    write(&tmp.path().join("a.txt"), "x");
    let change = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no change within the deadline")
        .expect("the channel closed");
    assert_eq!(change.path, Path::new("a.txt"));
    drop(watcher);
    assert!(
        rx.recv().await.is_none(),
        "dropping the watcher closes the channel"
    );
}

#[test]
fn a_base_that_does_not_exist_is_a_clear_error() {
    let err = Watcher::start(
        &spec(Path::new("/nonexistent/ccscope"), &["*"], &[]),
        &[],
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "resolve the directory /nonexistent/ccscope that watch paths are relative to: no such \
         file or directory"
    );
}

#[test]
fn the_limit_of_watches_is_named_with_the_sysctl_to_raise_it() {
    let err = WatchError::TooManyWatches {
        path: "/stack/src/deep".into(),
        limit: Some(8192),
        added: 8000,
    };
    assert_eq!(
        err.to_string(),
        "watch /stack/src/deep: the limit of inotify watches is reached \
         (fs.inotify.max_user_watches = 8192, 8000 directories already watched for this \
         service); raise it with `sysctl fs.inotify.max_user_watches=524288` \
         (/proc/sys/fs/inotify/max_user_watches), or narrow the service's `watch.paths`"
    );
}

mod scope {
    use super::*;

    fn scope(paths: &[&str], ignore: &[&str]) -> Scope {
        // `/` exists and is canonical: the scope is computed without touching anything else.
        Scope::new(
            &spec(Path::new("/"), paths, ignore),
            &[PathBuf::from("/st")],
        )
        .unwrap()
    }

    #[test]
    fn a_glob_splits_at_its_first_wildcard_with_dots_resolved() {
        let base = Path::new("/stack/app");
        let split = |g| split_glob(base, g);
        assert_eq!(
            split("src/**/*.py"),
            Split {
                prefix: "/stack/app/src".into(),
                rest: "**/*.py".into()
            }
        );
        assert_eq!(split("./a/../b/*.c").prefix, Path::new("/stack/app/b"));
        assert_eq!(split("../shared/x/*").prefix, Path::new("/stack/shared/x"));
        assert_eq!(split("/etc/app/{a,b}.conf").prefix, Path::new("/etc/app"));
        assert_eq!(split("lit/file.txt").rest, "");
        assert_eq!(split("a/[b/c]/d").rest, "[b/c]/d", "a class is kept whole");
    }

    #[test]
    fn only_what_can_hold_a_match_is_watched() {
        let s = scope(
            &["a/**/*.py", "a/b/*.py", "c/*.toml", "d/file.txt", "/st/x/*"],
            &[],
        );
        assert_eq!(
            s.roots,
            [
                Root {
                    dir: "/a".into(),
                    recursive: true
                },
                Root {
                    dir: "/c".into(),
                    recursive: false
                },
                Root {
                    dir: "/d".into(),
                    recursive: false
                },
                Root {
                    dir: "/st/x".into(),
                    recursive: false
                },
            ],
            "a/b is covered by a/**; d/file.txt, which does not exist, is watched in d"
        );
        assert!(s.wants_dir(Path::new("/a/b/c")));
        assert!(s.wants_dir(Path::new("/c")));
        assert!(
            !s.wants_dir(Path::new("/c/sub")),
            "c/*.toml cannot reach below c"
        );
        assert!(!s.wants_dir(Path::new("/a/.git")));
        assert!(!s.wants_dir(Path::new("/a/x/.git/refs")));
        assert!(!s.wants_dir(Path::new("/st/x")), "under never");
        assert!(s.wants_dir(Path::new("/")), "on the way down to the roots");
        assert!(!s.wants_dir(Path::new("/e")));
    }

    #[test]
    fn matching_applies_paths_then_ignore_git_and_never() {
        let s = scope(
            &["src/**/*.py", "conf"],
            &["**/__pycache__/**", "src/gen/*"],
        );
        assert!(s.matches(Path::new("/src/a.py")));
        assert!(s.matches(Path::new("/src/x/y/a.py")));
        assert!(!s.matches(Path::new("/src/a.pyc")));
        assert!(!s.matches(Path::new("/src/x/__pycache__/a.py")));
        assert!(!s.matches(Path::new("/src/gen/a.py")));
        assert!(
            s.matches(Path::new("/src/gen/deeper/a.py")),
            "`*` stays in one directory"
        );
        assert!(!s.matches(Path::new("/src/.git/a.py")));
        assert!(
            s.matches(Path::new("/conf")),
            "a literal path that is not a directory"
        );
        assert!(!s.matches(Path::new("/conf.d")));
        assert_eq!(s.shown(Path::new("/src/a.py")), Path::new("src/a.py"));
    }

    #[test]
    fn a_base_with_glob_characters_in_its_name_is_taken_literally() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("we[ir]d {dir} *");
        fs::create_dir_all(base.join("src")).unwrap();
        let s = Scope::new(&spec(&base, &["src/*.py"], &[]), &[]).unwrap();
        let base = fs::canonicalize(&base).unwrap();
        assert!(s.matches(&base.join("src/a.py")));
        assert!(!s.matches(&tmp.path().join("wed {dir} x/src/a.py")));
    }
}
