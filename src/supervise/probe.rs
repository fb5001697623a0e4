//! One attempt of a probe: TCP connect, HTTP GET, or a command. (`notify` and `log` probes are
//! not attempts but events: the supervisor's notify socket and output tap deliver them.)

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reaper::{Reaper, describe};
use crate::config::ProbeCheck;

/// What a probe checks, in words, for messages: `http://127.0.0.1:8123/ping`.
pub fn describe_check(check: &ProbeCheck) -> String {
    match check {
        ProbeCheck::Tcp { host, port } => format!("tcp {host}:{port}"),
        ProbeCheck::Http { url, status } => format!("http {url} (status {status})"),
        ProbeCheck::Exec { argv } => format!("exec `{}`", argv.join(" ")),
        ProbeCheck::Notify => "notify READY=1".to_string(),
        ProbeCheck::Log { pattern } => format!("log /{pattern}/"),
        ProbeCheck::DockerHealthy => "docker healthcheck".to_string(),
    }
}

/// Whether the probe is attempted on an interval (rather than waited for as an event).
pub fn is_polled(check: &ProbeCheck) -> bool {
    matches!(
        check,
        ProbeCheck::Tcp { .. } | ProbeCheck::Http { .. } | ProbeCheck::Exec { .. }
    )
}

/// One attempt, bounded by `timeout`. Err says why it did not pass.
pub async fn attempt(check: &ProbeCheck, timeout: Duration, reaper: &Reaper) -> Result<(), String> {
    let work = async {
        match check {
            ProbeCheck::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| format!("connect to {host}:{port}: {}", crate::proc::describe_io(&e))),
            ProbeCheck::Http { url, status } => http_get(url, *status).await,
            ProbeCheck::Exec { argv } => exec(argv, reaper).await,
            ProbeCheck::Notify | ProbeCheck::Log { .. } | ProbeCheck::DockerHealthy => {
                Err("not an attempted probe".into())
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// `http://host[:port][/path]` → (host, port, path).
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_string(), p.parse().ok()?)
        }
        _ => (authority.to_string(), 80),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    (!host.is_empty()).then_some((host, port, path))
}

async fn http_get(url: &str, expected: u16) -> Result<(), String> {
    let (host, port, path) = split_url(url).ok_or_else(|| format!("cannot parse {url}"))?;
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {}", crate::proc::describe_io(&e)))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {url}: {}", crate::proc::describe_io(&e)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read from {url}: {}", crate::proc::describe_io(&e)))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{url} did not answer HTTP"))?;
    if code == expected {
        Ok(())
    } else {
        Err(format!("{url} answered {code}, expected {expected}"))
    }
}

async fn exec(argv: &[String], reaper: &Reaper) -> Result<(), String> {
    let mark = reaper.mark();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {}", argv[0], crate::proc::describe_io(&e)))?;
    let pid = child.id() as i32;
    // Opened before anything can reap it: a timed-out probe is killed by this handle, never by
    // a pid that may since belong to someone else.
    let pidfd = crate::proc::sys::pidfd_open(pid).ok();
    let status = reaper.claim(pid, mark);
    let guard = KillOnDrop(pidfd);
    let status = status
        .await
        .map_err(|_| "the supervisor stopped waiting".to_string())?;
    drop(guard.disarm());
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` ended with {}",
            argv.join(" "),
            describe(status)
        ))
    }
}

/// Kills a probe command that is abandoned (timed out) before it ended.
struct KillOnDrop(Option<std::os::fd::OwnedFd>);

impl KillOnDrop {
    fn disarm(mut self) -> Option<std::os::fd::OwnedFd> {
        self.0.take()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(fd) = &self.0 {
            let _ = crate::proc::sys::pidfd_send_signal(fd, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8123/ping"),
            Some(("127.0.0.1".into(), 8123, "/ping".into()))
        );
        assert_eq!(
            split_url("http://localhost"),
            Some(("localhost".into(), 80, "/".into()))
        );
        assert_eq!(
            split_url("http://[::1]:9000/health?x=1"),
            Some(("::1".into(), 9000, "/health?x=1".into()))
        );
        assert_eq!(split_url("https://x"), None);
        assert_eq!(split_url("http://:80/"), None);
    }
}
