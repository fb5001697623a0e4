//! A watcher and nothing else, for scripts/bench-watch.sh: watches `GLOB…` under `DIR` the
//! way a service's `watch` table would, prints `ready` once every directory is watched and a
//! line per burst of changes, and otherwise sleeps until it is killed.
//!
//! Usage: watch_idle DIR GLOB…

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use ccscope::config::WatchSpec;
use ccscope::config::duration::HumanDuration;
use ccscope::watch::Watcher;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), globs) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: watch_idle DIR GLOB…");
        std::process::exit(2);
    };
    let spec = WatchSpec {
        base: PathBuf::from(dir),
        paths: globs
            .iter()
            .map(|g| g.to_string_lossy().into_owned())
            .collect(),
        ignore: Vec::new(),
        debounce: HumanDuration(Duration::from_millis(100)),
    };
    let watcher = Watcher::start(&spec, &[], |change| {
        println!("change {} {}", change.path.display(), change.count);
        let _ = std::io::stdout().flush();
    });
    let _watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            eprintln!("watch_idle: failed to {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
