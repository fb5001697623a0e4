//! A service's output tap: the output forwarder copies each line to a non-blocking pipe the
//! supervisor reads, to keep the last lines for error reports and to see the line a `log`
//! readiness probe waits for.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// Lines of each service's output kept for error reports.
pub const OUTPUT_KEPT: usize = 20;

/// The last lines of a service's output.
pub type LastLines = Rc<RefCell<VecDeque<String>>>;

/// Reads `tap` to its end: keeps the last [`OUTPUT_KEPT`] lines in `output`, and calls
/// `matched` once, on the first line `pattern` matches.
pub async fn read(
    tap: OwnedFd,
    output: LastLines,
    mut pattern: Option<regex::Regex>,
    mut matched: impl FnMut(&regex::Regex),
) {
    let Ok(fd) = crate::proc::sys::async_readable(tap) else {
        return;
    };
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let n = match guard.try_io(|inner| crate::proc::sys::read(inner.get_ref(), &mut buf)) {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_would_block) => continue,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if pattern.as_ref().is_some_and(|p| p.is_match(&text)) {
                if let Some(p) = pattern.take() {
                    matched(&p);
                }
            }
            keep(&output, text);
        }
    }
}

/// Keeps `line` as the newest of the last [`OUTPUT_KEPT`] lines.
pub fn keep(output: &LastLines, line: String) {
    let mut kept = output.borrow_mut();
    if kept.len() == OUTPUT_KEPT {
        kept.pop_front();
    }
    kept.push_back(line);
}
