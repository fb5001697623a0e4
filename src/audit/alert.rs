//! Alerts: a service that crashes, gives up restarting, loses readiness or liveness, a start
//! that fails, a stop that leaves survivors, a registry that had to be recovered. Each is told
//! as a desktop notification (`org.freedesktop.Notifications` on the session bus, where a
//! server answers) and, with `[project.alerts] exec`, to a command that gets the alert as JSON
//! on its stdin.
//!
//! An alert is a side channel: delivering one never blocks the supervisor's loop (it is a
//! local task) and never fails anything (what cannot be delivered is logged). A crash loop is
//! one alert, not fifty: per project, service and kind at most one alert goes out within the
//! rate-limit window, and the next one after it says how many were held back.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Notify, OnceCell, oneshot};
use zbus::zvariant::Value;

use crate::config::Alerts;

/// How long the session bus and the notification server get to answer.
const BUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an `exec` alert command may run before it is killed.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an `exec` command's output is passed on to the log.
const EXEC_OUTPUT_LIMIT: usize = 8 * 1024;
/// However many services fail at once, at most this many alerts go out in a minute.
pub const GLOBAL_PER_MINUTE: usize = 10;
/// A reason longer than this is cut: an alert is read at a glance.
const MAX_REASON_CHARS: usize = 1000;

const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
const NOTIFICATIONS_PATH: &str = "/org/freedesktop/Notifications";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Crashed,
    GaveUp,
    ReadinessLost,
    LivenessLost,
    StartFailed,
    StopIncomplete,
    RegistryRecovered,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Crashed => "crashed",
            AlertKind::GaveUp => "gave_up",
            AlertKind::ReadinessLost => "readiness_lost",
            AlertKind::LivenessLost => "liveness_lost",
            AlertKind::StartFailed => "start_failed",
            AlertKind::StopIncomplete => "stop_incomplete",
            AlertKind::RegistryRecovered => "registry_recovered",
        }
    }

    /// What the summary says after the service's (or project's) name.
    fn words(self) -> &'static str {
        match self {
            AlertKind::Crashed => "crashed",
            AlertKind::GaveUp => "gave up restarting",
            AlertKind::ReadinessLost => "is no longer ready",
            AlertKind::LivenessLost => "failed its liveness probe",
            AlertKind::StartFailed => "failed to start",
            AlertKind::StopIncomplete => "did not stop completely",
            AlertKind::RegistryRecovered => "registry was recovered",
        }
    }

    /// The kinds that need someone now: nothing will retry them.
    pub fn critical(self) -> bool {
        matches!(
            self,
            AlertKind::GaveUp | AlertKind::StartFailed | AlertKind::StopIncomplete
        )
    }
}

/// One alert, as the desktop and an `exec` command get it. Its JSON shape is stable: every key
/// is always there (`null` when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub project: String,
    pub service: Option<String>,
    pub reason: String,
    pub run_id: Option<String>,
    pub exit_code: Option<i32>,
    /// The signal's name (`SIGKILL`), when a signal ended it.
    pub signal: Option<String>,
    /// When it happened, RFC 3339 in UTC.
    pub time: String,
    /// How many alerts of this kind for this service were held back by the rate limit since
    /// the last one that went out.
    pub suppressed: u32,
}

impl Alert {
    /// An alert happening now; the exit code and signal are read from the reason when it
    /// names them ("ended with exit code 3", "ended with signal SIGKILL").
    pub fn new(kind: AlertKind, project: &str, service: Option<&str>, reason: &str) -> Alert {
        let reason = match reason.char_indices().nth(MAX_REASON_CHARS) {
            Some((at, _)) => format!("{}…", &reason[..at]),
            None => reason.to_string(),
        };
        let (exit_code, signal) = exit_of(&reason);
        Alert {
            kind,
            project: project.to_string(),
            service: service.map(str::to_string),
            reason,
            run_id: None,
            exit_code,
            signal,
            time: rfc3339(SystemTime::now()),
            suppressed: 0,
        }
    }

    pub fn with_run_id(mut self, run_id: &str) -> Alert {
        self.run_id = Some(run_id.to_string());
        self
    }

    /// "ccscope: dashboard crashed".
    pub fn summary(&self) -> String {
        match &self.service {
            Some(s) => format!("ccscope: {s} {}", self.kind.words()),
            None => format!("ccscope: {} {}", self.project, self.kind.words()),
        }
    }

    /// The project, the service and the reason, and what the rate limit held back.
    pub fn body(&self) -> String {
        let mut body = format!("project {}", self.project);
        if let Some(s) = &self.service {
            body.push_str(&format!(", service {s}"));
        }
        body.push_str(&format!(": {}", self.reason));
        if self.suppressed > 0 {
            body.push_str(&format!(" (and {} more)", self.suppressed));
        }
        body
    }
}

/// The alert an audit event is, if it is one. The one place that knows which events are
/// alerts; it reads the event's name, its `CCSCOPE_STATE` and its words.
///
/// `service.state` events: `restarting` after an unexpected end is `crashed` (a clean exit
/// restarted by `restart = "always"` is not); `failed` is `gave_up` when the restarts ran
/// out, `crashed` when the process ended and nothing restarts it, `start_failed` when it never
/// ran; a failed liveness probe is `liveness_lost` either way. Events named for an alert
/// kind (`service.readiness_lost`, `run.start_failed`, `stop.incomplete`,
/// `registry.recovered`) are that kind.
pub fn alert_for(
    project: &str,
    run_id: &str,
    event: &str,
    service: Option<&str>,
    message: &str,
    fields: &[(&str, String)],
) -> Option<Alert> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    // The state's message is "<service>: <state> — <why>": the why is the reason.
    let reason = message.split_once(" — ").map_or(message, |(_, why)| why);
    let kind = match event {
        "service.restarting" | "service.failed" => {
            let liveness = reason.contains("liveness probe failed");
            match field("CCSCOPE_STATE")? {
                "restarting" if liveness => AlertKind::LivenessLost,
                "restarting" if reason.starts_with("exited with exit code 0") => return None,
                "restarting" => AlertKind::Crashed,
                "failed" if reason.contains("gave up") => AlertKind::GaveUp,
                "failed" if liveness => AlertKind::LivenessLost,
                "failed" if exit_of(reason) != (None, None) => AlertKind::Crashed,
                "failed" => AlertKind::StartFailed,
                _ => return None,
            }
        }
        "service.readiness_lost" => AlertKind::ReadinessLost,
        "run.start_failed" => AlertKind::StartFailed,
        "stop.incomplete" => AlertKind::StopIncomplete,
        "registry.recovered" => AlertKind::RegistryRecovered,
        _ => return None,
    };
    let mut alert = Alert::new(kind, project, service, reason);
    let run_id = field("CCSCOPE_RUN_ID").unwrap_or(run_id);
    if !run_id.is_empty() {
        alert.run_id = Some(run_id.to_string());
    }
    if let Some(code) = field("CCSCOPE_EXIT_CODE").and_then(|c| c.parse().ok()) {
        alert.exit_code = Some(code);
    }
    if let Some(signal) = field("CCSCOPE_SIGNAL") {
        alert.signal = Some(signal.to_string());
    }
    Some(alert)
}

/// The exit code or signal a reason names ("… ended with exit code 3", "… with signal SIGKILL").
fn exit_of(reason: &str) -> (Option<i32>, Option<String>) {
    let after = |needle: &str| {
        reason.split(needle).nth(1).map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
                .unwrap_or_default()
                .to_string()
        })
    };
    let code = after("exit code ").and_then(|c| c.parse().ok());
    let signal = after("with signal ").filter(|s| s.starts_with("SIG"));
    (code, signal)
}

/// `2026-12-01T22:10:07.123Z`.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

// ---- the rate limit ---------------------------------------------------------------------------

/// What the rate limit says about one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it; `suppressed` alerts of its kind were held back before it.
    Send { suppressed: u32 },
    /// Hold it back (it is counted).
    Hold,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the last alert of this key went out.
    sent: Option<Instant>,
    held: u32,
}

/// Per (project, service, kind) at most one alert per window, and at most
/// [`GLOBAL_PER_MINUTE`] in any minute. Fed the time; never looks at a clock.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    global_cap: usize,
    slots: HashMap<(String, Option<String>, AlertKind), Slot>,
    /// When each of the alerts sent in the last minute went out.
    recent: VecDeque<Instant>,
}

impl RateLimit {
    pub fn new(window: Duration, global_cap: usize) -> RateLimit {
        RateLimit {
            window,
            global_cap,
            slots: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    pub fn admit(&mut self, alert: &Alert, now: Instant) -> Admit {
        let minute = Duration::from_secs(60);
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= minute)
        {
            self.recent.pop_front();
        }
        let key = (alert.project.clone(), alert.service.clone(), alert.kind);
        let slot = self.slots.entry(key).or_default();
        let in_window = slot
            .sent
            .is_some_and(|t| now.saturating_duration_since(t) < self.window);
        if in_window || self.recent.len() >= self.global_cap {
            slot.held = slot.held.saturating_add(1);
            return Admit::Hold;
        }
        slot.sent = Some(now);
        self.recent.push_back(now);
        Admit::Send {
            suppressed: std::mem::take(&mut slot.held),
        }
    }
}

// ---- delivery ---------------------------------------------------------------------------------

/// Who waits for an `exec` alert command to end. In a supervisor that is its reaper, the one
/// owner of `waitpid` (a second waiter would steal statuses from it).
pub trait ChildWaiter {
    /// The reap count to claim with, taken before the spawn.
    fn mark(&self) -> u64;
    /// The exit status of `pid`, a child spawned after `mark`.
    fn claim(&self, pid: i32, mark: u64) -> oneshot::Receiver<ExitStatus>;
}

/// The waiter of a command that is not a supervisor (`ccscope stop`): each `exec` alert's
/// process is waited for by its own pid (never `waitpid(-1)`), on a thread of its own.
pub struct OwnChildren;

impl ChildWaiter for OwnChildren {
    fn mark(&self) -> u64 {
        0
    }

    fn claim(&self, pid: i32, _mark: u64) -> oneshot::Receiver<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let Some(pid) = rustix::process::Pid::from_raw(pid) else {
                return;
            };
            if let Ok(Some((_, status))) =
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            {
                let _ = tx.send(ExitStatus::from_raw(status.as_raw()));
            }
        });
        rx
    }
}

/// Sends one alert from a command that is not a supervisor, and waits (at most `within`)
/// for it to be delivered: `ccscope stop` telling of its INCOMPLETE end.
pub fn send_once(alerts: &crate::config::Alerts, alert: Alert, within: Duration) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let alerter = Alerter::new(alerts, Rc::new(OwnChildren));
        alerter.send(alert);
        alerter.flush(within).await;
    });
}

/// Why an alert did not reach where it was going; reads after "failed to deliver an alert: ".
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("the notification server did not answer within {0:?}")]
    NotifyTimeout(Duration),
    #[error("the notification server refused it: {0}")]
    Notify(zbus::Error),
    #[error("cannot run the alert command `{command}`: {why}")]
    Spawn { command: String, why: String },
    #[error("the alert command `{command}` did not end within {timeout:?}: it was killed")]
    ExecTimeout { command: String, timeout: Duration },
    #[error("the alert command `{command}` ended with {status}{output}")]
    ExecFailed {
        command: String,
        status: String,
        output: String,
    },
}

/// Where desktop notifications go: a connection to a session bus on which a notification
/// server answered, found once; `None` when there is none (said once in the log).
struct Desktop {
    connection: zbus::Connection,
    /// The server renders markup in the body: text must be escaped for it.
    markup: bool,
}

struct Inner {
    alerts: Alerts,
    limit: RefCell<RateLimit>,
    desktop: OnceCell<Option<Desktop>>,
    waiter: Rc<dyn ChildWaiter>,
    in_flight: Cell<usize>,
    idle: Notify,
}

/// Delivers a project's alerts as its `[project.alerts]` says. Cheap to clone; must be used
/// on a `LocalSet` (delivery runs as local tasks).
#[derive(Clone)]
pub struct Alerter {
    inner: Rc<Inner>,
}

impl Alerter {
    pub fn new(alerts: &Alerts, waiter: Rc<dyn ChildWaiter>) -> Alerter {
        Alerter {
            inner: Rc::new(Inner {
                alerts: alerts.clone(),
                limit: RefCell::new(RateLimit::new(alerts.rate_limit.0, GLOBAL_PER_MINUTE)),
                desktop: OnceCell::new(),
                waiter,
                in_flight: Cell::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Sends `alert` unless the rate limit holds it back; returns at once.
    pub fn send(&self, mut alert: Alert) {
        let inner = &self.inner;
        if !inner.alerts.desktop && inner.alerts.exec.is_none() {
            return;
        }
        match inner.limit.borrow_mut().admit(&alert, Instant::now()) {
            Admit::Hold => {
                tracing::debug!(
                    "alert {} of `{}` held back by the rate limit",
                    alert.kind.as_str(),
                    alert.service.as_deref().unwrap_or(&alert.project)
                );
                return;
            }
            Admit::Send { suppressed } => alert.suppressed = suppressed,
        }
        let alert = Rc::new(alert);
        if inner.alerts.desktop {
            let (inner, alert) = (self.inner.clone(), alert.clone());
            self.deliver(async move { notify_desktop(&inner, &alert).await });
        }
        if let Some(argv) = &inner.alerts.exec {
            let (argv, waiter) = (argv.clone(), inner.waiter.clone());
            self.deliver(async move { run_exec(&argv, &alert, &*waiter).await });
        }
    }

    fn deliver(&self, delivery: impl Future<Output = Result<(), AlertError>> + 'static) {
        let inner = self.inner.clone();
        inner.in_flight.set(inner.in_flight.get() + 1);
        tokio::task::spawn_local(async move {
            if let Err(e) = delivery.await {
                tracing::warn!("failed to deliver an alert: {e}");
            }
            inner.in_flight.set(inner.in_flight.get() - 1);
            if inner.in_flight.get() == 0 {
                inner.idle.notify_waiters();
            }
        });
    }

    /// Waits, at most `within`, for the alerts on their way: the last ones of a run (a failed
    /// start, an incomplete stop) go out before the supervisor exits.
    pub async fn flush(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            while self.inner.in_flight.get() > 0 {
                let idle = self.inner.idle.notified();
                if self.inner.in_flight.get() == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
    }
}

/// The session bus and a notification server on it, looked for once with a bounded wait.
async fn find_desktop() -> Option<Desktop> {
    let connection = match tokio::time::timeout(BUS_TIMEOUT, zbus::Connection::session()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!("desktop alerts are off: no session bus to send them on ({e})");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "desktop alerts are off: the session bus did not answer within {BUS_TIMEOUT:?}"
            );
            return None;
        }
    };
    let asked = connection.call_method(
        Some(NOTIFICATIONS),
        NOTIFICATIONS_PATH,
        Some(NOTIFICATIONS),
        "GetCapabilities",
        &(),
    );
    let capabilities = match tokio::time::timeout(BUS_TIMEOUT, asked).await {
        Ok(Ok(reply)) => reply
            .body()
            .deserialize::<Vec<String>>()
            .unwrap_or_default(),
        Ok(Err(e)) => {
            tracing::warn!(
                "desktop alerts are off: no notification server answers on the session bus{}; \
                 set `desktop = false` in [project.alerts] to not look for one",
                bus_error_words(&e)
            );
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "desktop alerts are off: no notification server answered on the session bus \
                 within {BUS_TIMEOUT:?}"
            );
            return None;
        }
    };
    Some(Desktop {
        connection,
        markup: capabilities.iter().any(|c| c == "body-markup"),
    })
}

/// Why the server did not answer, as a parenthesis; nothing when there simply is none.
fn bus_error_words(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _)
            if matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
            ) =>
        {
            String::new()
        }
        zbus::Error::MethodError(_, Some(text), _) => format!(" ({text})"),
        other => format!(" ({other})"),
    }
}

async fn notify_desktop(inner: &Inner, alert: &Alert) -> Result<(), AlertError> {
    let Some(desktop) = inner.desktop.get_or_init(find_desktop).await else {
        return Ok(()); // said once, when it was looked for
    };
    let mut body = alert.body();
    if desktop.markup {
        body = body
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
    }
    let urgency: u8 = if alert.kind.critical() { 2 } else { 1 };
    let hints: HashMap<&str, Value<'_>> = HashMap::from([
        ("urgency", Value::from(urgency)),
        ("desktop-entry", Value::from("ccscope")),
    ]);
    let actions: Vec<&str> = Vec::new();
    let summary = alert.summary();
    // Notify(app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout).
    let arguments = (
        "ccscope",
        0u32,
        "",
        summary.as_str(),
        body.as_str(),
        actions,
        hints,
        -1i32,
    );
    let call = desktop.connection.call_method(
        Some(NOTIFICATIONS),
        NOTIFICATIONS_PATH,
        Some(NOTIFICATIONS),
        "Notify",
        &arguments,
    );
    match tokio::time::timeout(BUS_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(AlertError::Notify(e)),
        Err(_) => Err(AlertError::NotifyTimeout(BUS_TIMEOUT)),
    }
}

/// Runs the `exec` command with the alert as JSON on its stdin: its own process group (a
/// Ctrl-C on our terminal is not for it), never our stdin, its output to our log, killed after
/// [`EXEC_TIMEOUT`].
async fn run_exec(
    argv: &[String],
    alert: &Alert,
    waiter: &dyn ChildWaiter,
) -> Result<(), AlertError> {
    let command = argv.join(" ");
    let spawn_error = |why: String| AlertError::Spawn {
        command: command.clone(),
        why,
    };
    let json = serde_json::to_vec(alert).expect("an alert always serialises");
    let (output, output_writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| spawn_error(crate::proc::describe_io(&e.into())))?;
    let stderr_writer = output_writer
        .try_clone()
        .map_err(|e| spawn_error(crate::proc::describe_io(&e)))?;
    let mark = waiter.mark();
    let mut child = {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(output_writer))
            .stderr(Stdio::from(stderr_writer))
            .process_group(0);
        cmd.spawn()
            .map_err(|e| spawn_error(crate::proc::describe_io(&e)))?
        // The command, and with it our copies of the pipe's write end, is dropped here: the
        // output ends when the child's copies close.
    };
    let pid = child.id() as i32;
    // Opened before anything can reap it: a command that overstays is killed by this handle,
    // never by a pid that may since belong to someone else.
    let pidfd = crate::proc::sys::pidfd_open(pid).ok();
    let status = waiter.claim(pid, mark);
    if let Some(mut stdin) = child.stdin.take() {
        // An alert is a few hundred bytes, well within a pipe's buffer: this write does not
        // wait. A command that does not read it gets EPIPE, which is its business.
        use std::io::Write;
        let _ = stdin.write_all(&json);
    }
    let read = read_output(output);
    let ended = tokio::time::timeout(EXEC_TIMEOUT, async {
        let (status, output) = tokio::join!(status, read);
        (status, output)
    })
    .await;
    let Ok((status, output)) = ended else {
        if let Some(fd) = &pidfd {
            let _ = crate::proc::sys::pidfd_send_signal(fd, libc::SIGKILL);
        }
        return Err(AlertError::ExecTimeout {
            command,
            timeout: EXEC_TIMEOUT,
        });
    };
    let output = output.trim_end().to_string();
    match status {
        Ok(s) if s.success() => {
            for line in output.lines() {
                tracing::info!("alert command `{command}`: {line}");
            }
            Ok(())
        }
        Ok(s) => Err(AlertError::ExecFailed {
            command,
            status: crate::proc::describe_exit(s),
            output: if output.is_empty() {
                String::new()
            } else {
                format!("; it said: {output}")
            },
        }),
        // The waiter is gone: the supervisor is ending, and the command with it.
        Err(_) => Ok(()),
    }
}

/// Up to [`EXEC_OUTPUT_LIMIT`] bytes of what the command wrote, until it closes its output.
async fn read_output(fd: OwnedFd) -> String {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = EXEC_OUTPUT_LIMIT.saturating_sub(bytes.len());
                bytes.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, service: &str) -> Alert {
        Alert::new(
            kind,
            "demo",
            Some(service),
            "its main process ended with exit code 3",
        )
    }

    #[test]
    fn a_crash_loop_is_one_alert_per_window_and_the_next_counts_the_rest() {
        let mut limit = RateLimit::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let crash = alert(AlertKind::Crashed, "web");
        assert_eq!(limit.admit(&crash, t0), Admit::Send { suppressed: 0 });
        for i in 1..5 {
            assert_eq!(
                limit.admit(&crash, t0 + Duration::from_secs(i)),
                Admit::Hold
            );
        }
        // Another kind, another service: their own windows.
        assert_eq!(
            limit.admit(
                &alert(AlertKind::GaveUp, "web"),
                t0 + Duration::from_secs(5)
            ),
            Admit::Send { suppressed: 0 }
        );
        assert_eq!(
            limit.admit(
                &alert(AlertKind::Crashed, "db"),
                t0 + Duration::from_secs(5)
            ),
            Admit::Send { suppressed: 0 }
        );
        assert_eq!(
            limit.admit(&crash, t0 + Duration::from_millis(59_999)),
            Admit::Hold
        );
        assert_eq!(
            limit.admit(&crash, t0 + Duration::from_secs(60)),
            Admit::Send { suppressed: 5 }
        );
        assert_eq!(
            limit.admit(&crash, t0 + Duration::from_secs(121)),
            Admit::Send { suppressed: 0 },
            "the count starts again after each alert sent"
        );
    }

    #[test]
    fn at_most_the_global_cap_goes_out_in_a_minute() {
        let mut limit = RateLimit::new(Duration::from_secs(1), 3);
        let t0 = Instant::now();
        let sent = (0..10)
            .filter(|i| {
                let a = alert(AlertKind::Crashed, &format!("s{i}"));
                limit.admit(&a, t0 + Duration::from_millis(i * 10)) != Admit::Hold
            })
            .count();
        assert_eq!(sent, 3);
        // A minute on, a held one goes out and says it was held.
        assert_eq!(
            limit.admit(
                &alert(AlertKind::Crashed, "s5"),
                t0 + Duration::from_secs(61)
            ),
            Admit::Send { suppressed: 1 }
        );
    }

    #[test]
    fn the_json_shape_is_stable() {
        let mut a = Alert::new(
            AlertKind::GaveUp,
            "demo",
            Some("dashboard"),
            "its main process ended with exit code 3; gave up after 5 restart(s) in a row",
        )
        .with_run_id("r-1");
        a.time = "2026-12-01T22:10:07.123Z".into();
        a.suppressed = 4;
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({
                "kind": "gave_up",
                "project": "demo",
                "service": "dashboard",
                "reason": "its main process ended with exit code 3; gave up after 5 restart(s) in a row",
                "run_id": "r-1",
                "exit_code": 3,
                "signal": null,
                "time": "2026-12-01T22:10:07.123Z",
                "suppressed": 4,
            })
        );
        assert_eq!(a.summary(), "ccscope: dashboard gave up restarting");
        assert_eq!(
            a.body(),
            "project demo, service dashboard: its main process ended with exit code 3; gave up \
             after 5 restart(s) in a row (and 4 more)"
        );
        assert!(a.kind.critical());
        let stop = Alert::new(AlertKind::StopIncomplete, "demo", None, "1 survivor");
        assert_eq!(stop.summary(), "ccscope: demo did not stop completely");
        assert_eq!(
            serde_json::to_value(&stop).unwrap()["service"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_796_163_007_123);
        assert_eq!(rfc3339(t), "2026-12-01T22:10:07.123Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    fn state(state: &str, why: &str) -> Option<Alert> {
        alert_for(
            "demo",
            "run-1",
            crate::audit::events::of_state(state),
            Some("web"),
            &format!("web: {state} — {why}"),
            &[
                ("CCSCOPE_STATE", state.to_string()),
                ("CCSCOPE_RUN_ID", "run-1".to_string()),
            ],
        )
    }

    #[test]
    fn state_changes_map_to_alert_kinds() {
        let crash = state(
            "restarting",
            "its main process ended with exit code 3; restarting in 0.1 s",
        )
        .unwrap();
        assert_eq!(crash.kind, AlertKind::Crashed);
        assert_eq!(crash.exit_code, Some(3));
        assert_eq!(crash.run_id.as_deref(), Some("run-1"));
        assert_eq!(
            crash.reason,
            "its main process ended with exit code 3; restarting in 0.1 s"
        );
        let killed = state(
            "restarting",
            "its main process ended with signal SIGKILL; restarting in 1.0 s",
        )
        .unwrap();
        assert_eq!(
            (killed.exit_code, killed.signal.as_deref()),
            (None, Some("SIGKILL"))
        );
        assert_eq!(
            state("restarting", "exited with exit code 0; restarting in 1.0 s"),
            None,
            "restart = \"always\" after a clean exit is no crash"
        );
        let kind = |s: &str, why: &str| state(s, why).map(|a| a.kind);
        assert_eq!(
            kind(
                "restarting",
                "liveness probe failed: tcp 127.0.0.1:80: 3 failures in a row, last: refused; restarting in 1.0 s"
            ),
            Some(AlertKind::LivenessLost)
        );
        assert_eq!(
            kind(
                "failed",
                "its main process ended with exit code 3; gave up after 5 restart(s) in a row (max_restarts = 5)"
            ),
            Some(AlertKind::GaveUp)
        );
        assert_eq!(
            kind(
                "failed",
                "its main process ended with exit code 1; restart policy is `no`"
            ),
            Some(AlertKind::Crashed)
        );
        assert_eq!(
            kind("failed", "cannot run nosuch: no such file or directory"),
            Some(AlertKind::StartFailed)
        );
        assert_eq!(kind("running", "ready"), None);
        assert_eq!(kind("stopped", "stopped"), None);
        let other = alert_for("demo", "run-1", "run.ready", None, "stack ready", &[]);
        assert_eq!(other, None);
        let stop = alert_for("demo", "run-1", "stop.incomplete", None, "1 survivor", &[]).unwrap();
        assert_eq!((stop.kind, stop.service), (AlertKind::StopIncomplete, None));
    }
}
