//! The journal forwarder: a small process inside the service's scope that reads the service's
//! stdout and stderr pipes and writes them to journald over its stream protocol, as systemd
//! does for a service's stdout: one connection, its header naming the service
//! (`SYSLOG_IDENTIFIER=<project>/<service>`, what `ccscope logs` matches on), each line led
//! by its stream's priority (`<6>` stdout, `<3>` stderr), so both streams keep the order
//! they were read in. Being in the scope, journald also tags each line with
//! the scope's unit and cgroup. It ignores stop signals and ends when the service's last
//! writer closes the pipes, so a graceful stop never costs the service its output (or a
//! SIGPIPE). What one read of a pipe brings is written in one go, so the forwarder costs a
//! fraction of what journald spends on the lines.
//!
//! journald splits a line longer than its `LineMax` (48 KiB by default) into entries marked
//! `_LINE_BREAK=line-max`; `ccscope logs` joins them back. A long line still open on one
//! stream when the other writes a line is ended there (the connection carries one line at a
//! time), so it reads back as two. The tap's pieces are cut at
//! [`MAX_LINE`] at a UTF-8 character boundary, and a line still being written leaves in such
//! pieces as it grows, so no read is ever dropped.
//!
//! Without journald it appends to the service's log file instead (FILE_FD), byte for byte: the
//! pieces of a long line are written without a newline between them. With a tap, it also
//! copies each line to the supervisor's pipe, never blocking on it: a supervisor that reads
//! slowly (or died) costs itself lines, never the service.
//!
//! Usage (internal): `ccscope __journal-forward OUT_FD ERR_FD SERVICE_PID [FILE_FD|- TAP_FD|-]`

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags};

use crate::audit::journal::{StreamWriter, output_identifier};
use crate::proc::{markers, sys};

pub const SUBCOMMAND: &str = "__journal-forward";

/// The most bytes of a line one entry carries, so every entry fits one datagram.
pub const MAX_LINE: usize = 48 * 1024;

/// One entry's worth of a line: its bytes, and whether the line goes on in the next piece.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub bytes: Vec<u8>,
    pub continued: bool,
}

/// Where to cut `bytes` so the first part has at most `max` bytes and does not end inside a
/// UTF-8 character (that would show as U+FFFD on both sides). Bytes that are not UTF-8 are cut
/// at `max`.
fn cut_at(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    // A character is at most 4 bytes: at most 3 continuation bytes to step back over.
    let mut cut = max;
    while cut > 0 && max - cut < 3 && is_continuation(bytes[cut]) {
        cut -= 1;
    }
    if cut == 0 || is_continuation(bytes[cut]) {
        max
    } else {
        cut
    }
}

/// Splits one line (without its newline) into pieces of at most `max` bytes, handing each to
/// `each` with whether the line goes on after it; the last is `continued` only when the line
/// is not finished yet (`finished` false).
fn split_line(line: &[u8], max: usize, finished: bool, each: &mut impl FnMut(&[u8], bool)) {
    let mut rest = line;
    loop {
        let cut = cut_at(rest, max);
        let last = cut == rest.len();
        each(&rest[..cut], !(last && finished));
        rest = &rest[cut..];
        if last {
            break;
        }
    }
}

/// Hands `each` the complete lines of `pending` (as pieces of at most `max` bytes), and, of a
/// line longer than `max` still without its newline, every whole piece but the tail (which may
/// yet end the line); at `eof` the rest too, as a finished line. Then drops what it handed out.
/// The pieces are borrowed from `pending`: nothing is allocated per line.
pub fn for_each_piece(
    pending: &mut Vec<u8>,
    max: usize,
    eof: bool,
    mut each: impl FnMut(&[u8], bool),
) {
    let mut start = 0;
    while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
        split_line(&pending[start..start + end], max, true, &mut each);
        start += end + 1;
    }
    if eof {
        if start < pending.len() {
            split_line(&pending[start..], max, true, &mut each);
        }
        start = pending.len();
    } else {
        while pending.len() - start > max {
            let cut = cut_at(&pending[start..], max);
            each(&pending[start..start + cut], true);
            start += cut;
        }
    }
    pending.drain(..start);
}

/// [`for_each_piece`], the pieces owned: how a container's output frames become pieces.
pub fn take_pieces(pending: &mut Vec<u8>, max: usize, eof: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    for_each_piece(pending, max, eof, |bytes, continued| {
        out.push(Piece {
            bytes: bytes.to_vec(),
            continued,
        })
    });
    out
}

struct Stream {
    fd: OwnedFd,
    name: OutputStream,
    pending: Vec<u8>,
    open: bool,
}

/// Which of a service's streams a line came on (a process's pipes, a container's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    /// The level prefix of its lines to journald: info for stdout, error for stderr.
    fn level_prefix(self) -> &'static [u8] {
        match self {
            OutputStream::Stdout => b"<6>",
            OutputStream::Stderr => b"<3>",
        }
    }
}

/// Where a service's output lines go, as the forwarder writes them: journald, over one stream
/// connection whose header names the service (`<project>/<service>`) and whose lines each
/// start with their stream's priority, or its log file byte for byte. Pieces are gathered and written once
/// per [`Sink::flush`], a write per read of the pipes rather than per line. Also used by the
/// supervisor for the output of a container service, which has no forwarder of its own.
pub struct Sink {
    journal: Option<StreamWriter>,
    file: Option<std::fs::File>,
    /// What waits for the next flush.
    pending: Vec<u8>,
    /// The stream whose line is open in the connection (its last piece was continued).
    open_line: Option<OutputStream>,
}

impl Sink {
    /// journald, each line tagged `SYSLOG_IDENTIFIER=<project>/<service>`, stdout at info and
    /// stderr at error priority. Without a journal socket the lines are dropped.
    pub fn to_journald(project: &str, service: &str) -> Sink {
        Sink {
            journal: Some(StreamWriter::new(&output_identifier(project, service))),
            file: None,
            pending: Vec::new(),
            open_line: None,
        }
    }

    /// The service's log file, appended to.
    pub fn to_file(file: std::fs::File) -> Sink {
        Sink {
            journal: None,
            file: Some(file),
            pending: Vec::new(),
            open_line: None,
        }
    }

    /// One whole line (without its newline), written at once.
    pub fn line(&mut self, stream: OutputStream, line: &[u8]) {
        split_line(line, MAX_LINE, true, &mut |bytes, continued| {
            self.piece_of(stream, bytes, continued)
        });
        self.flush();
    }

    /// One piece of a line (as [`take_pieces`] makes them), kept for the next flush.
    pub fn piece(&mut self, stream: OutputStream, piece: &Piece) {
        self.piece_of(stream, &piece.bytes, piece.continued);
    }

    /// One piece of a line, `continued` when the line goes on in the next, kept for the next
    /// flush.
    pub fn piece_of(&mut self, stream: OutputStream, piece: &[u8], continued: bool) {
        let mut bytes = piece;
        if self.journal.is_some() {
            match self.open_line {
                Some(open) if open == stream => {}
                open => {
                    if open.is_some() {
                        self.pending.push(b'\n');
                    }
                    self.pending.extend_from_slice(stream.level_prefix());
                }
            }
            self.open_line = continued.then_some(stream);
            // A `\r` before the newline is the line's end, not its text; inside a long line
            // it is. The log file keeps every byte.
            if !continued {
                bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            }
        }
        self.pending.extend_from_slice(bytes);
        if !continued {
            self.pending.push(b'\n');
        }
    }

    /// Writes what the pieces since the last flush gathered. journald being away loses
    /// lines, never the service.
    pub fn flush(&mut self) {
        if let Some(writer) = &mut self.journal {
            // What did not get through is lost; a line left open in it is over, and the
            // next piece starts a line with its own priority.
            if writer.write(&self.pending).is_err() {
                self.open_line = None;
            }
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(&self.pending);
        }
        self.pending.clear();
    }
}

/// Runs the forwarder. Never returns.
pub fn main(args: &[OsString]) -> ! {
    let parse = |i: usize| {
        args.get(i)
            .and_then(|a| a.to_str())
            .and_then(|a| a.parse::<i32>().ok())
    };
    // The service's pid (third) is named for whoever reads the forwarder's command line.
    let (Some(out), Some(err), Some(_service_pid)) = (parse(0), parse(1), parse(2)) else {
        eprintln!("ccscope: {SUBCOMMAND} is internal to ccscope");
        std::process::exit(2);
    };
    let (file, tap): (Option<RawFd>, Option<RawFd>) = (parse(3), parse(4));
    let numbers: Vec<RawFd> = [Some(out), Some(err), file, tap]
        .into_iter()
        .flatten()
        .collect();
    let mut claimed = match sys::claim_inherited(&numbers) {
        Ok(fds) => fds.into_iter(),
        Err(e) => {
            eprintln!("ccscope: {SUBCOMMAND}: {e}");
            std::process::exit(2);
        }
    };
    // In the order they were named: out, err, then the file and the tap where given.
    let (Some(out), Some(err)) = (claimed.next(), claimed.next()) else {
        std::process::exit(2);
    };
    let file = file.and_then(|_| claimed.next()).map(std::fs::File::from);
    let mut tap = tap.and_then(|_| claimed.next()).map(std::fs::File::from);
    if let Some(t) = &tap {
        let _ = sys::set_nonblocking(t);
    }
    sys::ignore_signals(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGQUIT,
    ]);
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (project, service) = (env(markers::PROJECT), env(markers::SERVICE));
    // Without a journal socket the lines are drained and dropped: the service must never
    // block on, or be killed by, a pipe nobody reads.
    let mut sink = match file {
        Some(file) => Sink::to_file(file),
        None => Sink::to_journald(&project, &service),
    };
    let mut streams = [
        Stream {
            fd: out,
            name: OutputStream::Stdout,
            pending: Vec::new(),
            open: true,
        },
        Stream {
            fd: err,
            name: OutputStream::Stderr,
            pending: Vec::new(),
            open: true,
        },
    ];
    // A full tap drops the piece; a closed one (the supervisor is gone) is closed here. The
    // supervisor reads the tap by lines: each piece is one, written with its newline at once.
    let mut tap_line = Vec::new();
    let mut emit = |sink: &mut Sink, name: OutputStream, piece: &[u8], continued: bool| {
        sink.piece_of(name, piece, continued);
        if let Some(t) = &mut tap {
            tap_line.clear();
            tap_line.extend_from_slice(piece);
            tap_line.push(b'\n');
            if let Err(e) = t.write(&tap_line) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tap = None;
                }
            }
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    // One forwarder lives beside every service: what it touched to start (the arguments, the
    // environment, the rest of ccscope's binary) need not stay resident while it forwards.
    sys::trim_resident();
    while streams.iter().any(|s| s.open) {
        // Which streams have something to read (or hung up).
        let mut ready = [false; 2];
        {
            let open: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].open).collect();
            let mut polls: Vec<PollFd<'_>> = open
                .iter()
                .map(|&i| PollFd::new(&streams[i].fd, PollFlags::IN))
                .collect();
            match rustix::event::poll(&mut polls, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            for (p, &i) in polls.iter().zip(&open) {
                ready[i] = !p.revents().is_empty();
            }
        }
        for (stream, _) in streams.iter_mut().zip(ready).filter(|(_, r)| *r) {
            let got = match sys::read(&stream.fd, &mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(n) if n > 0 => n,
                _ => {
                    stream.open = false;
                    let name = stream.name;
                    for_each_piece(&mut stream.pending, MAX_LINE, true, |p, c| {
                        emit(&mut sink, name, p, c)
                    });
                    continue;
                }
            };
            stream.pending.extend_from_slice(&buf[..got]);
            let name = stream.name;
            for_each_piece(&mut stream.pending, MAX_LINE, false, |p, c| {
                emit(&mut sink, name, p, c)
            });
        }
        sink.flush();
    }
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: &[Piece]) -> Vec<(String, bool)> {
        pieces
            .iter()
            .map(|p| (String::from_utf8(p.bytes.clone()).unwrap(), p.continued))
            .collect()
    }

    #[test]
    fn short_lines_are_one_piece_each_and_a_partial_line_waits() {
        let mut pending = b"one\ntwo\r\nthr".to_vec();
        let pieces = take_pieces(&mut pending, 8, false);
        assert_eq!(
            texts(&pieces),
            [("one".into(), false), ("two\r".into(), false)]
        );
        assert_eq!(pending, b"thr");
        pending.extend_from_slice(b"ee\n");
        assert_eq!(
            texts(&take_pieces(&mut pending, 8, false)),
            [("three".into(), false)]
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn a_long_line_is_split_into_marked_pieces_and_loses_nothing() {
        let line = "0123456789".repeat(3);
        let mut pending = format!("{line}\nnext\n").into_bytes();
        let got = texts(&take_pieces(&mut pending, 8, false));
        assert_eq!(got.len(), 4 + 1, "{got:?}");
        assert!(got[..3].iter().all(|(t, c)| *c && t.len() == 8), "{got:?}");
        assert_eq!(got[3], ("456789".into(), false));
        assert_eq!(got[4], ("next".into(), false));
        let joined: String = got[..4].iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(joined, line);
    }

    #[test]
    fn a_line_of_exactly_whole_pieces_has_no_empty_tail() {
        let mut pending = b"0123456789abcdef\n".to_vec();
        let got = texts(&take_pieces(&mut pending, 8, false));
        assert_eq!(got, [("01234567".into(), true), ("89abcdef".into(), false)]);
    }

    #[test]
    fn a_growing_line_without_newline_leaves_in_pieces_and_keeps_its_tail() {
        let mut pending = vec![b'x'; 20];
        let pieces = take_pieces(&mut pending, 8, false);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.continued && p.bytes.len() == 8));
        assert_eq!(pending.len(), 4, "the tail may still end the line");
        pending.extend_from_slice(b"yy");
        let last = take_pieces(&mut pending, 8, true);
        assert_eq!(texts(&last), [("xxxxyy".into(), false)]);
        assert!(pending.is_empty());
    }

    #[test]
    fn pieces_end_at_character_boundaries() {
        // "a" then three-byte characters: a cut at 8 would fall inside the third `€`.
        let line = format!("a{}", "€".repeat(10));
        let mut pending = format!("{line}\n").into_bytes();
        let pieces = take_pieces(&mut pending, 8, false);
        let mut joined = String::new();
        for p in &pieces {
            let text = std::str::from_utf8(&p.bytes).expect("every piece is whole UTF-8");
            assert!(p.bytes.len() <= 8);
            joined.push_str(text);
        }
        assert_eq!(joined, line);
        assert_eq!(pieces[0].bytes.len(), 7, "a€€ is 7 bytes");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_at_the_limit() {
        let mut pending = vec![0x80; 20];
        let pieces = take_pieces(&mut pending, 8, true);
        let sizes: Vec<usize> = pieces.iter().map(|p| p.bytes.len()).collect();
        assert_eq!(sizes, [8, 8, 4]);
    }

    #[test]
    fn an_empty_line_is_an_entry_and_eof_with_nothing_pending_is_none() {
        let mut pending = b"\n".to_vec();
        assert_eq!(
            texts(&take_pieces(&mut pending, 8, false)),
            [(String::new(), false)]
        );
        assert!(take_pieces(&mut pending, 8, true).is_empty());
    }
}
