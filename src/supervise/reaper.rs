//! The one owner of `waitpid` in a supervisor. The supervisor is a child subreaper, so every
//! orphan of every service lands on it; each must be reaped, and a second waiter (tokio's
//! `Child::wait` included) would lose statuses to this one. So: one loop reaps everything on
//! SIGCHLD and hands each status to whoever claimed the pid.
//!
//! A pid is reused only after it was reaped, so a claim names the reap sequence number it was
//! made after (taken before the spawn): an older status for the same pid is never handed out.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::rc::Rc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Statuses nobody has claimed yet are kept this long (a claim may come just after the exit).
const UNCLAIMED_KEPT: usize = 256;

#[derive(Default)]
struct Inner {
    /// How many processes were reaped so far.
    seq: u64,
    claims: HashMap<i32, (u64, oneshot::Sender<ExitStatus>)>,
    unclaimed: VecDeque<(i32, u64, ExitStatus)>,
    /// Told after each round of reaping (the process-group backend rechecks its groups).
    on_reap: Option<Box<dyn Fn()>>,
}

#[derive(Clone)]
pub struct Reaper {
    inner: Rc<RefCell<Inner>>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts the reaping loop on the current
    /// `LocalSet`.
    pub fn start() -> std::io::Result<Reaper> {
        crate::proc::sys::set_child_subreaper()?;
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Reaper {
            inner: Rc::new(RefCell::new(Inner::default())),
        };
        let looping = reaper.clone();
        tokio::task::spawn_local(async move {
            loop {
                looping.reap_all();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Calls `hook` after each round of reaping.
    pub fn on_reap(&self, hook: impl Fn() + 'static) {
        self.inner.borrow_mut().on_reap = Some(Box::new(hook));
    }

    /// The sequence number to claim with, taken before spawning.
    pub fn mark(&self) -> u64 {
        self.inner.borrow().seq
    }

    /// The exit status of `pid`, a child spawned after `mark` was taken.
    pub fn claim(&self, pid: i32, mark: u64) -> oneshot::Receiver<ExitStatus> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.borrow_mut();
        if let Some(at) = inner
            .unclaimed
            .iter()
            .position(|(p, seq, _)| *p == pid && *seq > mark)
        {
            let (_, _, status) = inner.unclaimed.remove(at).expect("position is in range");
            let _ = tx.send(status);
        } else {
            inner.claims.insert(pid, (mark, tx));
        }
        rx
    }

    fn reap_all(&self) {
        let mut reaped_any = false;
        while let Ok(Some((pid, raw))) = rustix::process::wait(rustix::process::WaitOptions::NOHANG)
        {
            let pid = pid.as_raw_nonzero().get();
            reaped_any = true;
            let status = ExitStatus::from_raw(raw.as_raw());
            let mut inner = self.inner.borrow_mut();
            inner.seq += 1;
            let seq = inner.seq;
            match inner.claims.remove(&pid) {
                Some((mark, tx)) if mark < seq => {
                    let _ = tx.send(status);
                }
                other => {
                    if let Some(claim) = other {
                        inner.claims.insert(pid, claim);
                    }
                    if inner.unclaimed.len() == UNCLAIMED_KEPT {
                        inner.unclaimed.pop_front();
                    }
                    inner.unclaimed.push_back((pid, seq, status));
                }
            }
        }
        if reaped_any {
            if let Some(hook) = &self.inner.borrow().on_reap {
                hook();
            }
        }
    }
}

pub use crate::proc::describe_exit as describe;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::zombie_processes,
        reason = "the reaper under test is what waits for them"
    )]
    fn a_claim_gets_the_status_whether_it_comes_before_or_after_the_exit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let reaper = Reaper::start().unwrap();
            let reaped = Rc::new(tokio::sync::Notify::new());
            let hook = reaped.clone();
            reaper.on_reap(move || hook.notify_one());
            // Claimed before it exits.
            let mark = reaper.mark();
            let early = std::process::Command::new("sh")
                .args(["-c", "exit 3"])
                .spawn()
                .unwrap();
            let status = reaper.claim(early.id() as i32, mark).await.unwrap();
            assert_eq!(status.code(), Some(3));
            // Claimed after it was reaped.
            let mark = reaper.mark();
            let late = std::process::Command::new("sh")
                .args(["-c", "kill -9 $$"])
                .spawn()
                .unwrap();
            while reaper.mark() == mark {
                tokio::time::timeout(std::time::Duration::from_secs(10), reaped.notified())
                    .await
                    .expect("reaped within 10 s");
            }
            let status = reaper.claim(late.id() as i32, mark).await.unwrap();
            assert_eq!(describe(status), "signal SIGKILL");
        });
    }
}
