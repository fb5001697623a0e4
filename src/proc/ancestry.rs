//! Who this process descends from. Nothing ccscope does may act on its own caller (a
//! `ccscope stop` run under `ccscope exec`, an `adopt` of the shell that typed it), so every
//! pass that signals, moves or classifies processes first sets these pids apart.

use std::collections::BTreeSet;
use std::path::Path;

use super::identity::read_stat;

/// This process and its ancestors up to (not including) init, read from `proc_root`.
pub fn self_and_ancestors(proc_root: &Path) -> BTreeSet<i32> {
    ancestry(proc_root, std::process::id() as i32)
}

/// `pid` and its ancestors up to (not including) init. The walk ends where a parent cannot
/// be read (it exited meanwhile, or the procfs hides it).
pub fn ancestry(proc_root: &Path, pid: i32) -> BTreeSet<i32> {
    let mut found = BTreeSet::new();
    let mut pid = pid;
    while pid > 1 && found.insert(pid) {
        match read_stat(proc_root, pid) {
            Ok(stat) => pid = stat.ppid,
            Err(_) => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_process(root: &Path, pid: i32, ppid: i32) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} (sh (x)) S {ppid} {pid} 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0",
            1000 + pid
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
    }

    #[test]
    fn the_walk_climbs_to_init_and_stops_at_an_unreadable_parent() {
        let root = tempfile::tempdir().unwrap();
        fake_process(root.path(), 40, 30);
        fake_process(root.path(), 30, 20);
        fake_process(root.path(), 20, 1);
        fake_process(root.path(), 50, 40);
        assert_eq!(
            ancestry(root.path(), 40),
            BTreeSet::from([40, 30, 20]),
            "init is never counted, a child never is"
        );
        fake_process(root.path(), 60, 55);
        assert_eq!(ancestry(root.path(), 60), BTreeSet::from([60, 55]));
    }

    #[test]
    fn this_process_is_its_own_first_ancestor() {
        let mine = self_and_ancestors(Path::new("/proc"));
        assert!(mine.contains(&(std::process::id() as i32)));
    }
}
