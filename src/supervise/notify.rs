//! The sd_notify protocol, as systemd speaks it: each service gets `NOTIFY_SOCKET`, a datagram
//! socket (abstract, so no path length or stale file to worry about), and may send
//! `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`, newline-separated.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;

use tokio::net::UnixDatagram;

/// What one datagram said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    pub ready: bool,
    pub status: Option<String>,
    pub watchdog: bool,
    pub stopping: bool,
}

pub fn parse(datagram: &[u8]) -> Notification {
    let mut n = Notification::default();
    for line in String::from_utf8_lossy(datagram).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("STATUS", text)) => n.status = Some(text.to_string()),
            Some(("WATCHDOG", "1")) => n.watchdog = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            _ => {}
        }
    }
    n
}

/// A bound notify socket and the value of `NOTIFY_SOCKET` that reaches it.
pub struct NotifySocket {
    pub socket: UnixDatagram,
    pub address: String,
}

/// Binds `@ccscope/<run id>/<service>/<generation>`: a fresh name per launch, so a datagram
/// from an earlier instance never counts for the new one.
pub fn bind(run_id: &str, service: &str, generation: u64) -> std::io::Result<NotifySocket> {
    let name = format!("ccscope/{run_id}/{service}/{generation}");
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    Ok(NotifySocket {
        socket: UnixDatagram::from_std(socket)?,
        address: format!("@{name}"),
    })
}

/// Sends one notification to `NOTIFY_SOCKET` (what a service does; the demo uses it).
pub fn send(message: &str) -> std::io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    match target.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(message.as_bytes(), &target)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_systemd_parses() {
        let n = parse(b"READY=1\nSTATUS=serving 3 clients\nMAINPID=12\n");
        assert!(n.ready && !n.watchdog && !n.stopping);
        assert_eq!(n.status.as_deref(), Some("serving 3 clients"));
        assert!(parse(b"WATCHDOG=1").watchdog);
        assert!(parse(b"STOPPING=1").stopping);
        assert_eq!(parse(b"READY=0"), Notification::default());
    }
}
