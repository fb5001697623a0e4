//! sd_notify: the supervisor telling the systemd unit it runs under (`Type=notify`) how it is
//! doing — `READY=1` once the stack is ready, `STATUS=` lines for `systemctl --user status`,
//! `RELOADING=1`, `STOPPING=1`, and `WATCHDOG=1` pings when the unit sets `WatchdogSec=`.
//! A datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace); without
//! that variable every call does nothing, so a supervisor outside a unit pays nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The connection to the unit's notify socket, made once; None outside a notify unit.
struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
}

fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER
        .get_or_init(|| {
            let path = std::env::var_os("NOTIFY_SOCKET")?;
            let address = socket_address(path.as_encoded_bytes()).ok()?;
            let socket = UnixDatagram::unbound().ok()?;
            Some(Notifier { socket, address })
        })
        .as_ref()
}

fn socket_address(path: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match path.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name),
        None => std::os::unix::net::SocketAddr::from_pathname(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path),
        ),
    }
}

/// Whether the supervisor runs under a unit that listens (`NOTIFY_SOCKET` is set).
pub fn under_unit() -> bool {
    notifier().is_some()
}

/// Whether `READY=1` went out already (a reload may then say it again).
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the unit was told the stack is ready.
pub fn was_ready() -> bool {
    READY_SENT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sends `state` (newline-separated `KEY=value` assignments); nothing outside a unit. A
/// failure is logged at debug: the unit's view is a courtesy, never the supervisor's fate.
pub fn notify(state: &str) {
    let Some(n) = notifier() else { return };
    if state.lines().any(|l| l == "READY=1") {
        READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Err(e) = n.socket.send_to_addr(state.as_bytes(), &n.address) {
        tracing::debug!("could not notify systemd ({state:?}): {e}");
    }
}

/// `STATUS=` with `text` on one line.
pub fn status(text: &str) {
    notify(&format!("STATUS={}", one_line(text)));
}

/// The watchdog's ping interval (half of `WatchdogSec=`), when the unit asks for pings and
/// they are this process's to send.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0 && under_unit()).then(|| Duration::from_micros(usec / 2))
}

/// A status line is one line, and bounded.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 512 {
        let mut cut = 512;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_one_bounded_line() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        assert!(one_line(&"é".repeat(400)).len() <= 512);
    }

    #[test]
    fn abstract_and_path_addresses_are_told_apart() {
        use std::os::linux::net::SocketAddrExt;
        let a = socket_address(b"@notify-1").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"notify-1"[..]));
        let p = socket_address(b"/run/user/0/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/user/0/systemd/notify"))
        );
    }
}
