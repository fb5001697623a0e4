//! The one way ccscope ends things: the stop signal, a wait on the event that says they are
//! gone (a cgroup's `populated 0`, a pidfd turning readable) until a deadline, then SIGKILL and
//! a last bounded wait. A scope and a set of identified strays end the same way; the
//! supervisor's restarts, its own shutdown, a readiness failure and `ccscope stop` all come
//! through here.
//!
//! A [`Force`] turns every escalation in flight that still waits on its grace period into a
//! kill at once: a second Ctrl-C changes how the stop in flight proceeds rather than starting
//! another (nextest's `runner/unix.rs` does the same).
//!
//! A frozen scope (a paused service) is thawed before its stop signal: a frozen process
//! acts on no signal but SIGKILL, so its grace would otherwise run out in full.
//!
//! A long grace is not waited out in silence: a [`Force`] can carry a [`WaitNotice`], told
//! after [`NOTICE_AFTER`] what is still waited for, for how long yet, and how to cut it short.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::contain::{BackendKind, Containment, ScopeHandle};
use crate::proc::sys::{self, Signalled};
use crate::proc::{ProcFs, ProcessIdentity, Signal};

/// How long a SIGKILLed scope or process may take to be gone before it is reported as a
/// survivor. The kernel ends a killed cgroup in milliseconds; this bounds a wedged one (a
/// process in uninterruptible sleep).
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// How an end begins.
#[derive(Debug, Clone, Copy)]
pub enum Grace {
    /// The stop signal, then up to the timeout to be gone, then a kill.
    Signal { signal: Signal, timeout: Duration },
    /// A kill at once.
    None,
}

/// How long a grace period runs before whoever waits is told what it waits for: long enough
/// that a service which exits promptly is never mentioned.
pub const NOTICE_AFTER: Duration = Duration::from_secs(3);

/// Flips every escalation that watches it from its grace period to a kill.
#[derive(Debug)]
pub struct ForceSwitch(watch::Sender<bool>);

/// The watching side of one or more [`ForceSwitch`]es: forced once any of them is.
#[derive(Debug, Clone)]
pub struct Force {
    switches: Vec<watch::Receiver<bool>>,
    notice: Option<WaitNotice>,
}

/// Where a long wait is told (a person's terminal), and how the caller offers to cut it
/// short, e.g. "`ccscope stop --force` kills it now".
#[derive(Clone)]
pub struct WaitNotice {
    how_to_force: String,
    tell: Arc<dyn Fn(&str) + Send + Sync>,
}

impl WaitNotice {
    pub fn new(
        how_to_force: impl Into<String>,
        tell: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        WaitNotice {
            how_to_force: how_to_force.into(),
            tell: Arc::new(tell),
        }
    }

    /// A notice written to stderr as a line of its own.
    pub fn stderr(how_to_force: impl Into<String>) -> Self {
        WaitNotice::new(how_to_force, |line| eprintln!("{line}"))
    }

    fn tell(&self, waited: Duration, left: Duration, what: &str, signal: &str) {
        (self.tell)(&wait_notice_text(
            waited,
            left,
            what,
            signal,
            &self.how_to_force,
        ));
    }
}

impl fmt::Debug for WaitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitNotice")
            .field("how_to_force", &self.how_to_force)
            .finish_non_exhaustive()
    }
}

/// "`db` has not exited 3s after SIGTERM: waiting up to 59m57s more (the stop timeout);
/// `ccscope stop --force` kills it now".
fn wait_notice_text(
    waited: Duration,
    left: Duration,
    what: &str,
    signal: &str,
    how_to_force: &str,
) -> String {
    format!(
        "{what} not exited {} after {signal}: waiting up to {} more (the stop timeout); {how_to_force}",
        human(waited),
        human(left)
    )
}

/// A duration as people say it, to the second: `1h`, `59m57s`, `3s` (`400ms` under a second).
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

impl ForceSwitch {
    pub fn new() -> (ForceSwitch, Force) {
        let (tx, rx) = watch::channel(false);
        (
            ForceSwitch(tx),
            Force {
                switches: vec![rx],
                notice: None,
            },
        )
    }

    /// From now on, nothing that watches this switch waits out a grace period.
    pub fn force(&self) {
        self.0.send_replace(true);
    }
}

impl Force {
    /// A force that never comes.
    pub fn never() -> Force {
        let (switch, force) = ForceSwitch::new();
        // The receiver outlives the sender: `forced` then waits forever, as it should.
        drop(switch);
        force
    }

    /// The same force, telling `notice` of every grace that runs past [`NOTICE_AFTER`].
    pub fn with_notice(mut self, notice: WaitNotice) -> Force {
        self.notice = Some(notice);
        self
    }

    /// Forced once either `a` or `b` is; told as `a` is (else as `b`).
    pub fn either(a: &Force, b: &Force) -> Force {
        Force {
            switches: a.switches.iter().chain(&b.switches).cloned().collect(),
            notice: a.notice.clone().or_else(|| b.notice.clone()),
        }
    }

    pub fn is_forced(&self) -> bool {
        self.switches.iter().any(|rx| *rx.borrow())
    }

    /// Waits for `gone` until `left` has passed or a force comes; true if `gone` came. Past
    /// [`NOTICE_AFTER`] with more to wait, the notice (if any) is told about `what`.
    async fn grace<F: std::future::Future<Output = bool>>(
        &self,
        gone: F,
        left: Duration,
        since: Instant,
        what: impl FnOnce() -> String,
        signal: &str,
    ) -> bool {
        let gone = std::pin::pin!(gone);
        let mut gone = futures_util::future::FutureExt::fuse(gone);
        let already = since.elapsed();
        let notice_in = NOTICE_AFTER.saturating_sub(already);
        // Worth telling only with a second or more still to wait after the notice.
        let long = left.saturating_sub(notice_in) >= Duration::from_secs(1);
        if let Some(notice) = self.notice.as_ref().filter(|_| long) {
            tokio::select! {
                done = &mut gone => return done,
                () = self.forced() => return false,
                () = tokio::time::sleep(notice_in) => {}
            }
            notice.tell(already + notice_in, left - notice_in, &what(), signal);
        }
        tokio::select! {
            done = &mut gone => done,
            () = self.forced() => false,
        }
    }

    /// Resolves once a switch is flipped (never, if every switch is gone unflipped).
    pub async fn forced(&self) {
        let waits = self.switches.iter().map(|rx| {
            let mut rx = rx.clone();
            Box::pin(async move {
                if rx.wait_for(|forced| *forced).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(waits).await;
    }
}

/// What became of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEnd {
    /// The stop signal sent, or None for a kill at once.
    pub signal: Option<&'static str>,
    /// Time from `since` until the scope was empty; None if it never emptied.
    pub empty_after: Option<Duration>,
    /// Whether it had to be killed (its grace ran out, was forced, or there was none).
    pub killed: bool,
    /// It was frozen (paused) and could not be thawed before its stop signal: why. The end
    /// went on all the same.
    pub thaw_failed: Option<String>,
}

/// Ends a scope: its stop signal to every process, a wait on `populated 0` until `since` +
/// the timeout (or until forced), then a kill and up to [`KILL_WAIT`] to empty. `since` is
/// the clock the timeout runs on, so services of one layer share one.
pub async fn end_scope<C: Containment>(
    backend: &C,
    scope: &ScopeHandle,
    grace: Grace,
    since: Instant,
    force: &Force,
) -> ScopeEnd {
    let (signalled, thaw_failed) = send_stop_signal(backend, scope, grace, force).await;
    let mut end = finish(backend, scope, signalled, since, force).await;
    end.thaw_failed = thaw_failed;
    end
}

/// Ends scopes together (a layer of the stop): every stop signal goes out first, then each
/// scope is waited on, killed if it must be, and released. Signalled first, most are empty
/// by the time they are looked at.
pub async fn end_and_release_all<C: Containment>(
    scopes: &[(&C, &ScopeHandle, Grace)],
    since: Instant,
    force: &Force,
) -> Vec<ScopeEnd> {
    let mut signalled = Vec::with_capacity(scopes.len());
    for &(backend, scope, grace) in scopes {
        signalled.push(send_stop_signal(backend, scope, grace, force).await);
    }
    tracing::debug!(
        scopes = scopes.len(),
        ms = since.elapsed().as_millis() as u64,
        "stop signals sent"
    );
    let ends = scopes.iter().zip(signalled).map(
        |(&(backend, scope, _), (signalled, thaw_failed))| async move {
            let mut end = finish(backend, scope, signalled, since, force).await;
            end.thaw_failed = thaw_failed;
            release(backend, scope, &end).await;
            end
        },
    );
    futures_util::future::join_all(ends).await
}

/// The stop signal the grace asks for, unless forced: what was sent, and the timeout; and
/// why a frozen scope could not be thawed first, if it could not. A kill needs no thaw: a
/// frozen process dies of SIGKILL all the same.
async fn send_stop_signal<C: Containment>(
    backend: &C,
    scope: &ScopeHandle,
    grace: Grace,
    force: &Force,
) -> (Option<(Signal, Duration)>, Option<String>) {
    let Grace::Signal { signal, timeout } = grace else {
        return (None, None);
    };
    if force.is_forced() {
        return (None, None);
    }
    let thaw_failed = thaw_if_frozen(backend, scope).await;
    let _ = backend.signal(scope, signal.number).await;
    (Some((signal, timeout)), thaw_failed)
}

/// Thaws the scope if it is frozen (one read of its `cgroup.events` when it is not), so that
/// it can act on its stop signal. Why it could not, if it could not.
async fn thaw_if_frozen<C: Containment>(backend: &C, scope: &ScopeHandle) -> Option<String> {
    match backend.is_frozen(scope).await {
        Ok(false) => None,
        Ok(true) => match backend.freeze(scope, false).await {
            Ok(()) => {
                tracing::debug!(scope = %scope.display_name(), "thawed before its stop signal");
                None
            }
            Err(e) => Some(format!(
                "`{}` is paused and could not be resumed before its stop signal ({e}): a \
                 frozen process acts on no signal, so it was waited on until its stop timeout",
                scope.service
            )),
        },
        Err(e) => Some(format!(
            "could not tell whether `{}` is paused ({e}): it was sent its stop signal as it is",
            scope.service
        )),
    }
}

/// After the stop signal (if any): the wait until the timeout or a force, then the kill.
async fn finish<C: Containment>(
    backend: &C,
    scope: &ScopeHandle,
    signalled: Option<(Signal, Duration)>,
    since: Instant,
    force: &Force,
) -> ScopeEnd {
    let mut end = ScopeEnd {
        signal: signalled.map(|(s, _)| s.name),
        empty_after: None,
        killed: false,
        thaw_failed: None,
    };
    if let Some((signal, timeout)) = signalled {
        let left = timeout.saturating_sub(since.elapsed());
        let emptying = async { backend.wait_empty(scope, left).await.unwrap_or(false) };
        let what = || format!("`{}` has", scope.service);
        let emptied = force.grace(emptying, left, since, what, signal.name).await;
        if emptied {
            end.empty_after = Some(since.elapsed());
            return end;
        }
    }
    end.killed = true;
    let _ = backend.kill(scope).await;
    if backend.wait_empty(scope, KILL_WAIT).await.unwrap_or(false) {
        end.empty_after = Some(since.elapsed());
    }
    end
}

/// Forgets an ended scope. systemd collects an empty scope itself
/// (CollectMode=inactive-or-failed): a round trip per scope through its one-call-at-a-time
/// manager would only add time.
async fn release<C: Containment>(backend: &C, scope: &ScopeHandle, end: &ScopeEnd) {
    if !(end.empty_after.is_some() && backend.kind() == BackendKind::Systemd) {
        let _ = backend.release(scope).await;
    }
}

/// What became of one identified process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessEnd {
    pub identity: ProcessIdentity,
    /// Whether it was still there for a SIGKILL.
    pub killed: bool,
}

/// Ends identified processes (strays): the stop signal to each by pidfd, after checking its
/// start time; a wait on their pidfds until the timeout or until forced; SIGKILL to those
/// still there (checked again); up to [`KILL_WAIT`] for them to go.
pub async fn end_processes(
    processes: &[ProcessIdentity],
    grace: Grace,
    force: &Force,
) -> Vec<ProcessEnd> {
    if let (Grace::Signal { signal, timeout }, false) = (grace, force.is_forced()) {
        let since = Instant::now();
        for id in processes {
            let _ = sys::signal_identified(*id, signal.number);
        }
        let going = async {
            wait_gone(processes, timeout).await;
            true
        };
        let what = || match processes {
            [one] => format!("stray pid {} has", one.pid),
            many => format!("{} stray processes have", many.len()),
        };
        force.grace(going, timeout, since, what, signal.name).await;
    }
    let procfs = ProcFs::default();
    let ends: Vec<ProcessEnd> = processes
        .iter()
        .map(|id| ProcessEnd {
            identity: *id,
            killed: procfs.identity(id.pid).is_ok_and(|now| now == *id)
                && sys::signal_identified(*id, libc::SIGKILL).is_ok_and(|s| s == Signalled::Sent),
        })
        .collect();
    let killed: Vec<ProcessIdentity> = ends
        .iter()
        .filter(|e| e.killed)
        .map(|e| e.identity)
        .collect();
    wait_gone(&killed, KILL_WAIT).await;
    ends
}

/// Waits until every process has exited (its pidfd turns readable; a zombie counts as gone)
/// or `timeout` passed.
pub(crate) async fn wait_gone(processes: &[ProcessIdentity], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    for id in processes {
        let Ok(fd) = sys::pidfd_open(id.pid) else {
            continue; // gone already
        };
        let Ok(fd) = sys::async_readable(fd) else {
            continue;
        };
        let _ = tokio::time::timeout_at(deadline, fd.readable()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contain::fake::{Behaviour, Call, FakeContainment};

    const TERM: Grace = Grace::Signal {
        signal: crate::proc::signal::TERM,
        timeout: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn a_scope_that_honours_its_stop_signal_is_not_killed() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("web", Behaviour::HonoursStop);
        let end = end_scope(&fake, &scope, TERM, Instant::now(), &Force::never()).await;
        assert!(!end.killed);
        assert_eq!(end.signal, Some("SIGTERM"));
        assert_eq!(fake.calls(), [Call::Signal("web".into(), libc::SIGTERM)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_that_ignores_it_is_killed_after_its_stop_timeout() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("db", Behaviour::IgnoresStop);
        let began = tokio::time::Instant::now();
        let end = end_scope(&fake, &scope, TERM, Instant::now(), &Force::never()).await;
        assert!(end.killed);
        assert!(end.empty_after.is_some(), "the kill emptied it");
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(10),
            "the whole grace, then the kill"
        );
        assert_eq!(
            fake.calls(),
            [
                Call::Signal("db".into(), libc::SIGTERM),
                Call::Kill("db".into())
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_force_during_the_grace_kills_at_once() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("db", Behaviour::IgnoresStop);
        let (switch, force) = ForceSwitch::new();
        let began = tokio::time::Instant::now();
        let ending = end_scope(&fake, &scope, TERM, Instant::now(), &force);
        let forcing = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            switch.force();
        };
        let (end, ()) = futures_util::future::join(ending, forcing).await;
        assert!(end.killed);
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(2),
            "not the 10 s grace"
        );
        // Already forced: no stop signal at all, a kill at once.
        let again = fake.scope("web", Behaviour::IgnoresStop);
        let end = end_scope(&fake, &again, TERM, Instant::now(), &force).await;
        assert_eq!(end.signal, None);
        assert_eq!(fake.calls().last(), Some(&Call::Kill("web".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_scope_is_thawed_before_its_stop_signal_and_not_waited_out() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("web", Behaviour::HonoursStop);
        fake.set_frozen(&scope);
        let began = tokio::time::Instant::now();
        let end = end_scope(&fake, &scope, TERM, Instant::now(), &Force::never()).await;
        assert!(!end.killed, "it exited on its stop signal once thawed");
        assert_eq!(end.thaw_failed, None);
        assert_eq!(began.elapsed(), Duration::ZERO, "no grace waited out");
        assert_eq!(
            fake.calls(),
            [
                Call::Freeze("web".into(), false),
                Call::Signal("web".into(), libc::SIGTERM)
            ],
            "thawed first, then signalled"
        );
        // One not frozen is not thawed: nothing but its signal.
        let running = fake.scope("db", Behaviour::HonoursStop);
        end_scope(&fake, &running, TERM, Instant::now(), &Force::never()).await;
        assert_eq!(
            fake.calls().last(),
            Some(&Call::Signal("db".into(), libc::SIGTERM))
        );
        assert!(!fake.calls().contains(&Call::Freeze("db".into(), false)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_that_cannot_be_thawed_is_said_and_still_ended() {
        let mut fake = FakeContainment::new(BackendKind::Cgroupfs);
        fake.thaw_fails = true;
        let scope = fake.scope("web", Behaviour::HonoursStop);
        fake.set_frozen(&scope);
        let end = end_scope(&fake, &scope, TERM, Instant::now(), &Force::never()).await;
        assert!(end.killed, "frozen, it could not act on SIGTERM");
        assert!(end.empty_after.is_some(), "the kill emptied it");
        let why = end.thaw_failed.expect("the failed thaw is said");
        assert!(
            why.starts_with("`web` is paused and could not be resumed before its stop signal (the fake will not thaw)"),
            "{why}"
        );
        // A kill at once asks for no thaw.
        let other = fake.scope("db", Behaviour::IgnoresStop);
        fake.set_frozen(&other);
        let end = end_scope(&fake, &other, Grace::None, Instant::now(), &Force::never()).await;
        assert_eq!(end.thaw_failed, None);
        assert!(!fake.calls().contains(&Call::Freeze("db".into(), false)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_scope_is_reported_not_empty_after_the_kill_wait() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("stuck", Behaviour::Wedged);
        let began = tokio::time::Instant::now();
        let end = end_scope(&fake, &scope, Grace::None, Instant::now(), &Force::never()).await;
        assert!(end.killed);
        assert_eq!(end.empty_after, None);
        assert_eq!(began.elapsed(), KILL_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_layer_is_signalled_before_any_scope_is_waited_on_and_shares_one_clock() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let a = fake.scope("a", Behaviour::IgnoresStop);
        let b = fake.scope("b", Behaviour::HonoursStop);
        let began = tokio::time::Instant::now();
        let ends = end_and_release_all(
            &[(&fake, &a, TERM), (&fake, &b, TERM)],
            Instant::now(),
            &Force::never(),
        )
        .await;
        assert_eq!(
            fake.calls()[..2],
            [
                Call::Signal("a".into(), libc::SIGTERM),
                Call::Signal("b".into(), libc::SIGTERM)
            ],
            "both signals before anything else"
        );
        assert!(ends[0].killed && !ends[1].killed);
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(10),
            "in parallel, not 10 s each"
        );
        let released = fake
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Release(_)))
            .count();
        assert_eq!(released, 2, "cgroupfs scopes are released");
    }

    #[tokio::test(start_paused = true)]
    async fn an_emptied_systemd_scope_is_left_for_systemd_to_collect() {
        let fake = FakeContainment::new(BackendKind::Systemd);
        let scope = fake.scope("web", Behaviour::HonoursStop);
        end_and_release_all(&[(&fake, &scope, TERM)], Instant::now(), &Force::never()).await;
        assert!(!fake.calls().iter().any(|c| matches!(c, Call::Release(_))));
    }

    /// What a notice was told, and when.
    type Told = Arc<std::sync::Mutex<Vec<(Duration, String)>>>;

    /// A force that is never flipped, with a notice that records what it is told and when.
    fn noticed() -> (Force, Told) {
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let began = tokio::time::Instant::now();
        let sink = told.clone();
        let notice = WaitNotice::new("`ccscope stop --force` kills it now", move |line| {
            sink.lock()
                .unwrap()
                .push((began.elapsed(), line.to_string()));
        });
        (Force::never().with_notice(notice), told)
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_grace_says_what_it_waits_for_and_how_to_cut_it_short() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let scope = fake.scope("db", Behaviour::IgnoresStop);
        let (force, told) = noticed();
        let hour = Grace::Signal {
            signal: crate::proc::signal::TERM,
            timeout: Duration::from_secs(3600),
        };
        let began = tokio::time::Instant::now();
        let end = end_scope(&fake, &scope, hour, Instant::now(), &force).await;
        assert!(end.killed);
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(3600),
            "the notice cut nothing short"
        );
        assert_eq!(
            *told.lock().unwrap(),
            [(
                NOTICE_AFTER,
                "`db` has not exited 3s after SIGTERM: waiting up to 59m57s more \
                 (the stop timeout); `ccscope stop --force` kills it now"
                    .to_string()
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_exit_or_a_short_grace_is_not_mentioned() {
        let fake = FakeContainment::new(BackendKind::Cgroupfs);
        let (force, told) = noticed();
        let prompt = fake.scope("web", Behaviour::HonoursStop);
        end_scope(&fake, &prompt, TERM, Instant::now(), &force).await;
        let short = Grace::Signal {
            signal: crate::proc::signal::TERM,
            timeout: NOTICE_AFTER,
        };
        let slow = fake.scope("db", Behaviour::IgnoresStop);
        let end = end_scope(&fake, &slow, short, Instant::now(), &force).await;
        assert!(end.killed);
        assert!(
            told.lock().unwrap().is_empty(),
            "{:?}",
            told.lock().unwrap()
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(3597)), "59m57s");
        assert_eq!(human(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(human(Duration::from_millis(400)), "400ms");
    }

    #[test]
    fn a_force_reaches_every_watcher_and_a_never_force_never_comes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (switch, force) = ForceSwitch::new();
            let other = force.clone();
            assert!(!force.is_forced());
            let waiting = tokio::spawn(async move { other.forced().await });
            switch.force();
            tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .expect("the watcher saw the force")
                .unwrap();
            assert!(force.is_forced());
            let (_kept, unflipped) = ForceSwitch::new();
            let either = Force::either(&unflipped, &force);
            assert!(either.is_forced(), "either is forced when one of them is");
            let never = Force::never();
            assert!(
                tokio::time::timeout(Duration::from_millis(1), never.forced())
                    .await
                    .is_err(),
                "a never force stays pending"
            );
        });
    }
}
