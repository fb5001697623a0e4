//! journald's native protocol: one datagram of `KEY=value` fields to its socket. Small enough
//! to write by hand, and it gives exact control over the field names `ccscope audit` queries.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where journald listens for native-protocol datagrams.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Syslog priorities, as journald's PRIORITY field takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Whether journald's socket is there to write to.
pub fn journald_available() -> bool {
    Path::new(JOURNAL_SOCKET).exists()
}

/// Whether journald takes stream connections, where service output goes (a container that
/// bind-mounts only the native socket has none: output then goes to the log files).
pub fn journald_streams_available() -> bool {
    Path::new(STREAM_SOCKET).exists()
}

/// Encodes fields in the native protocol. Names must be uppercase letters, digits and `_`,
/// not starting with `_` (those are journald's own trusted fields).
pub fn encode(fields: &[(&str, &str)]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(&mut out, fields)?;
    Ok(out)
}

/// [`encode`], appended to `out` (a buffer used again for every entry).
fn encode_into(out: &mut Vec<u8>, fields: &[(&str, &str)]) -> io::Result<()> {
    for (name, value) in fields {
        if !valid_field_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid journal field name {name:?}"),
            ));
        }
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            // Binary-safe form: name, newline, little-endian u64 length, value, newline.
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    Ok(())
}

fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('_')
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Sends one entry. `MESSAGE` and `PRIORITY` are added from the arguments.
pub fn send(priority: Priority, message: &str, fields: &[(&str, &str)]) -> io::Result<()> {
    // One socket for the whole process: a stop writes an entry per service it stopped.
    static SHARED: std::sync::OnceLock<Option<Writer>> = std::sync::OnceLock::new();
    match SHARED.get_or_init(|| Writer::new().ok()) {
        Some(writer) => writer.send(priority as u8, message, fields),
        None => Writer::new()?.send(priority as u8, message, fields),
    }
}

/// One socket for many entries (a service's output, line by line): connected to journald once,
/// so a datagram is not addressed by path each time, and one buffer for every entry.
pub struct Writer {
    socket: UnixDatagram,
    connected: AtomicBool,
    buffer: Mutex<Vec<u8>>,
}

impl Writer {
    pub fn new() -> io::Result<Writer> {
        let socket = UnixDatagram::unbound()?;
        let connected = socket.connect(JOURNAL_SOCKET).is_ok();
        Ok(Writer {
            socket,
            connected: AtomicBool::new(connected),
            buffer: Mutex::new(Vec::with_capacity(512)),
        })
    }

    /// Sends one entry at syslog `priority` (0–7); `SYSLOG_IDENTIFIER` defaults to ccscope.
    pub fn send(&self, priority: u8, message: &str, fields: &[(&str, &str)]) -> io::Result<()> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.clear();
        let digits = [b'0' + priority.min(7)];
        let priority_text = std::str::from_utf8(&digits).unwrap_or("6");
        encode_into(
            &mut buffer,
            &[("MESSAGE", message), ("PRIORITY", priority_text)],
        )?;
        encode_into(&mut buffer, fields)?;
        if !fields.iter().any(|(n, _)| *n == "SYSLOG_IDENTIFIER") {
            encode_into(&mut buffer, &[("SYSLOG_IDENTIFIER", "ccscope")])?;
        }
        let sent = match self.connected.load(Ordering::Relaxed) {
            true => self.socket.send(&buffer),
            false => self.socket.send_to(&buffer, JOURNAL_SOCKET),
        };
        let sent = match sent {
            // journald restarted since the socket was connected: connect again, once.
            Err(e) if self.connected.load(Ordering::Relaxed) && is_stale(&e) => {
                self.connected.store(false, Ordering::Relaxed);
                match self.socket.connect(JOURNAL_SOCKET) {
                    Ok(()) => {
                        self.connected.store(true, Ordering::Relaxed);
                        self.socket.send(&buffer)
                    }
                    Err(_) => self.socket.send_to(&buffer, JOURNAL_SOCKET),
                }
            }
            other => other,
        };
        sent.map(drop).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not write to journald at {JOURNAL_SOCKET}: {e}"),
            )
        })
    }
}

/// Where journald takes stream connections, the protocol systemd gives a service's stdout.
pub const STREAM_SOCKET: &str = "/run/systemd/journal/stdout";

/// The `SYSLOG_IDENTIFIER` of a service's output lines: `<project>/<service>`, what
/// `ccscope logs` matches on, and what `journalctl` prints before each line.
pub fn output_identifier(project: &str, service: &str) -> String {
    format!("{project}/{service}")
}

/// The send buffer a stream connection asks for.
const STREAM_SEND_BUFFER: usize = 1 << 20;

/// One stream connection to journald, as systemd gives a service's stdout: its header sets
/// the identifier of every line, each line starts with its priority as `<N>` (stdout's and
/// stderr's lines share the connection, so journald keeps them in the order written), and
/// journald itself splits the text into entries, one per line (a line over its `LineMax`,
/// 48 KiB by default, in pieces marked `_LINE_BREAK=line-max`). Far cheaper for journald than a datagram per line, so it keeps up
/// with a service writing as fast as it can. Writes block while journald is busy: the pipe
/// behind them fills and slows the writer, and no line is lost.
pub struct StreamWriter {
    header: Vec<u8>,
    socket: Option<std::os::unix::net::UnixStream>,
}

impl StreamWriter {
    /// A connection for lines of `identifier`, each starting with its `<N>` priority (a line
    /// without one is info), made on first use.
    pub fn new(identifier: &str) -> StreamWriter {
        // identifier, unit id, priority, level prefix, to syslog, to kmsg, to console. journald
        // takes one level prefix off a line: a service's own `<3>` behind ours is its text.
        let identifier: String = identifier.chars().filter(|c| *c != '\n').collect();
        let header = format!("{identifier}\n\n6\n1\n0\n0\n0\n");
        StreamWriter {
            header: header.into_bytes(),
            socket: None,
        }
    }

    fn connect(&self) -> io::Result<std::os::unix::net::UnixStream> {
        use std::io::Write;
        let mut socket = std::os::unix::net::UnixStream::connect(STREAM_SOCKET)?;
        // journald never writes back; a shut read side says so.
        let _ = socket.shutdown(std::net::Shutdown::Read);
        // Room for what the service writes while journald is busy elsewhere, so that it has
        // the next lines waiting when it comes back (the default is about 200 KiB).
        let _ = crate::proc::sys::set_send_buffer(&socket, STREAM_SEND_BUFFER);
        // journald compares each read's sender with the peer it accepted, and breaks the line
        // where they differ (`_LINE_BREAK=pid-change`). What is sent after it accepted but
        // before it asked for credentials would carry none (pid 0) and break a line there;
        // asking on this side too has every byte carry ours.
        let _ = crate::proc::sys::set_pass_credentials(&socket);
        socket.write_all(&self.header)?;
        Ok(socket)
    }

    /// Writes `bytes` (lines ended by newlines; a line may go on in the next write). A
    /// connection journald closed (it restarted) is made again, once.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        if bytes.is_empty() {
            return Ok(());
        }
        for attempt in 0..2 {
            if self.socket.is_none() {
                self.socket = Some(self.connect().map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("could not connect to journald at {STREAM_SOCKET}: {e}"),
                    )
                })?);
            }
            let socket = self.socket.as_mut().expect("connected above");
            match socket.write_all(bytes) {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 0 && is_stale(&e) => self.socket = None,
                Err(e) => {
                    self.socket = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// A connected socket whose peer went away (journald restarted).
fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_simple_and_multiline_values() {
        let bytes = encode(&[("A", "1"), ("B", "x\ny")]).unwrap();
        let mut expected = b"A=1\nB\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"x\ny\n");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn refuses_trusted_and_lowercase_names() {
        assert!(encode(&[("_PID", "1")]).is_err());
        assert!(encode(&[("pid", "1")]).is_err());
        assert!(encode(&[("", "1")]).is_err());
    }
}
