//! Reading a stack's output back (`ccscope logs`): from journald, where the forwarder and the
//! container log follower wrote each service's streams under `SYSLOG_IDENTIFIER=
//! <project>/<service>`, through `journalctl -o json` matched on those identifiers and the
//! stream transport (so audit events, native entries, are never taken for output); or,
//! without journald, from the per-service log files in the state directory. Lines journald
//! split at its `LineMax` (`_LINE_BREAK=line-max`) are joined back.
//!
//! Following never polls: journald is followed by `journalctl -f` from the cursor of the last
//! entry the backlog printed (so no line falls between the two), the log files through
//! inotify on their directory, which also sees a file recreated or rotated by a restart.
//! Everything comes to one loop through one channel (lines, a file change, the end of
//! journalctl, an interrupt), so Ctrl-C ends it between two lines, with journalctl ended too.
//!
//! Everything read is bounded: a journal entry's JSON at [`MAX_ENTRY_JSON`], a joined line at
//! [`MAX_LINE`] (a longer one is printed in parts of that size).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::proc::describe_io;
use crate::registry::{RegistryError, VerifiedDir};

/// The longest JSON text of one journal entry read; a longer one is skipped (a 48 KiB piece
/// of bytes that are not UTF-8, printed as an array of numbers, is about 200 KiB).
pub const MAX_ENTRY_JSON: usize = 1 << 20;
/// The longest line printed whole; a longer one comes out in parts of this size.
pub const MAX_LINE: usize = 4 << 20;

/// The fields journalctl is asked for (it adds its own `__REALTIME_TIMESTAMP`, `__CURSOR`).
/// `_STREAM_ID` is the writer's connection: the pieces of a line are consecutive in it, and
/// pieces of two runs (two forwarders) never mix.
const FIELDS: &str = "MESSAGE,SYSLOG_IDENTIFIER,PRIORITY,_LINE_BREAK,_STREAM_ID";

/// One line of a service's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When journald received it (its first piece); None from a log file, which has no times.
    pub time: Option<SystemTime>,
    pub service: String,
    /// `stdout` or `stderr`; None from a log file, where both streams are one.
    pub stream: Option<String>,
    pub message: String,
}

/// Where the output is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Journald,
    /// The log files `<state_dir>/logs/<project>/<service>.log` (and the `.log.1` rotated).
    Files {
        state_dir: PathBuf,
    },
}

impl Source {
    /// journald where it runs, else the log files the services wrote without it.
    pub fn detect(state_dir: &Path) -> Source {
        if super::journal::journald_streams_available() {
            Source::Journald
        } else {
            Source::Files {
                state_dir: state_dir.to_path_buf(),
            }
        }
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Query {
    pub project: String,
    /// The services whose output to show, in the order their files are read (never empty:
    /// journald is matched on each one's identifier).
    pub services: Vec<String>,
    /// Only the last N lines (of those `grep` keeps); from the log files, of each service.
    pub lines: Option<usize>,
    pub since: Option<SystemTime>,
    pub follow: bool,
    pub grep: Option<Regex>,
}

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Everything asked for was printed.
    Finished,
    /// A signal ended it: SIGINT (Ctrl-C), SIGTERM or SIGHUP.
    Interrupted { signal: i32 },
    /// Whoever reads the output went away (`ccscope logs | head`).
    OutputClosed,
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(
        "run journalctl to read the journal: {} (it comes with systemd: install it, \
         or read the log files of a stack run without journald)",
        describe_io(.0)
    )]
    NoJournalctl(io::Error),
    #[error("read the journal: journalctl {status}: {stderr}")]
    Journalctl { status: String, stderr: String },
    #[error("read journalctl's output: {}", describe_io(.0))]
    JournalctlOutput(io::Error),
    #[error("read the log file {}: {}", path.display(), describe_io(source))]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("open the log files: {0}")]
    State(#[from] RegistryError),
    #[error(
        "show output since a time from the log files: they carry no timestamps \
         (only journald records when each line was written)"
    )]
    SinceWithoutTimes,
    #[error("find output of project `{project}`: there is no log directory {dir}")]
    NoLogDir { project: String, dir: PathBuf },
    #[error("watch {dir} for new output: {message}")]
    Watch { dir: PathBuf, message: String },
    #[error("write the output: {}", describe_io(.0))]
    Output(io::Error),
}

/// Prints each line of `query` from `source` through `print`, oldest first, then (with
/// `follow`) every new one until interrupted.
pub fn read(
    source: &Source,
    query: &Query,
    print: &mut dyn FnMut(&LogLine) -> io::Result<()>,
) -> Result<Ended, LogsError> {
    let (tx, rx) = mpsc::channel();
    watch_interrupt(tx.clone());
    read_with(source, query, print, &tx, &rx)
}

/// [`read`] with the channel given, and no SIGINT handler of its own (unit tests share one
/// process, whose signal dispositions are not theirs to change).
fn read_with(
    source: &Source,
    query: &Query,
    print: &mut dyn FnMut(&LogLine) -> io::Result<()>,
    tx: &mpsc::Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
) -> Result<Ended, LogsError> {
    let mut out = Output {
        print,
        grep: query.grep.as_ref(),
    };
    match source {
        Source::Journald => read_journal(query, tx, rx, &mut out),
        Source::Files { state_dir } => read_files(state_dir, query, tx, rx, &mut out),
    }
}

/// What comes to the one loop.
enum Msg {
    Entry(Entry),
    /// journalctl ended its output (the reader thread saw EOF, or a read failed).
    JournalEnd(Option<io::Error>),
    /// Something changed in the log directory.
    Changed,
    WatchFailed(String),
    Interrupted(i32),
}

/// SIGINT, SIGTERM and SIGHUP become a message, so the loop ends between two lines and ends
/// journalctl. Once this is installed their default action (die at once) no longer applies.
fn watch_interrupt(tx: mpsc::Sender<Msg>) {
    on_stop_signals(move |number| tx.send(Msg::Interrupted(number)).is_ok());
}

/// Hands each SIGINT, SIGTERM and SIGHUP (by number) to `each`, on a thread of its own, until
/// `each` says no more; returns once the handlers are in (at most 5 s), so a signal that
/// comes after the return is never the default's (death at once). For `logs` and `top`.
pub(crate) fn on_stop_signals(mut each: impl FnMut(i32) -> bool + Send + 'static) {
    let (installed, is_installed) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            let _ = installed.send(());
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let handlers = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            );
            let _ = installed.send(());
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = handlers else {
                return;
            };
            loop {
                let number = tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                    _ = hup.recv() => libc::SIGHUP,
                };
                if !each(number) {
                    return;
                }
            }
        });
    });
    let _ = is_installed.recv_timeout(Duration::from_secs(5));
}

/// Lines on their way to the printer: grep first.
struct Output<'a> {
    print: &'a mut dyn FnMut(&LogLine) -> io::Result<()>,
    grep: Option<&'a Regex>,
}

impl Output<'_> {
    fn keeps(&self, line: &LogLine) -> bool {
        self.grep.is_none_or(|re| re.is_match(&line.message))
    }

    /// Prints a line; Some(how it ended) when the output is gone.
    fn put(&mut self, line: &LogLine) -> Result<Option<Ended>, LogsError> {
        if !self.keeps(line) {
            return Ok(None);
        }
        match (self.print)(line) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Some(Ended::OutputClosed)),
            Err(e) => Err(LogsError::Output(e)),
        }
    }
}

// --- journald -------------------------------------------------------------------------------

/// One journal entry of service output, as journalctl printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    time: Option<SystemTime>,
    cursor: Option<String>,
    service: String,
    stream: Option<String>,
    /// The writer's connection (one per run of a forwarder, or of a container's follower).
    connection: Option<String>,
    message: Vec<u8>,
    /// The line goes on in the next entry of its service, stream and writer.
    continued: bool,
}

/// journalctl's arguments for the backlog (`after`: None) or for following on after it.
fn journalctl_args(query: &Query, follow_after: Option<Follow<'_>>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--output=json",
        // Without it, a field over 4 KiB is printed as null.
        "--all",
        "--no-pager",
        "--quiet",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--output-fields={FIELDS}"));
    match follow_after {
        None => {
            if let (Some(n), None) = (query.lines, &query.grep) {
                args.push(format!("--lines={n}"));
            }
            if let Some(since) = query.since {
                args.push(format!("--since={}", journal_time(since)));
            }
        }
        Some(follow) => {
            args.push("--follow".into());
            args.push("--lines=all".into());
            match follow {
                Follow::AfterCursor(cursor) => args.push(format!("--after-cursor={cursor}")),
                Follow::Since(since) => args.push(format!("--since={}", journal_time(since))),
            }
        }
    }
    // Fields of one name are ORed by journalctl, of different names ANDed.
    args.push("_TRANSPORT=stdout".into());
    for service in &query.services {
        args.push(format!(
            "SYSLOG_IDENTIFIER={}",
            super::journal::output_identifier(&query.project, service)
        ));
    }
    args
}

#[derive(Debug, Clone, Copy)]
enum Follow<'a> {
    AfterCursor(&'a str),
    Since(SystemTime),
}

/// `@SECONDS.MICROS`, which journalctl takes as a time.
fn journal_time(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("@{}.{:06}", d.as_secs(), d.subsec_micros())
}

fn read_journal(
    query: &Query,
    tx: &mpsc::Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
    out: &mut Output<'_>,
) -> Result<Ended, LogsError> {
    // No identifier to match: journalctl would give every stdout entry of the journal.
    if query.services.is_empty() {
        return Ok(Ended::Finished);
    }
    let started = SystemTime::now();
    let mut joiner = Joiner::default();
    // With `-n N` and `--grep`, the last N of the lines grep keeps: held until the backlog ends.
    let mut last: Option<VecDeque<LogLine>> = match (query.lines, &query.grep) {
        (Some(n), Some(_)) => Some(VecDeque::with_capacity(n.min(4096))),
        _ => None,
    };
    let mut cursor: Option<String> = None;
    let sink = |line: LogLine, out: &mut Output<'_>, last: &mut Option<VecDeque<LogLine>>| {
        if let (Some(held), Some(n)) = (last.as_mut(), query.lines) {
            if out.keeps(&line) && n > 0 {
                if held.len() == n {
                    held.pop_front();
                }
                held.push_back(line);
            }
            Ok(None)
        } else {
            out.put(&line)
        }
    };
    let backlog = journalctl_args(query, None);
    match run_journalctl(&backlog, tx, rx, |entry| {
        if entry.cursor.is_some() {
            cursor.clone_from(&entry.cursor);
        }
        for line in joiner.push(entry) {
            if let Some(end) = sink(line, out, &mut last)? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    })? {
        Ended::Finished => {}
        other => return Ok(other),
    }
    if let Some(held) = last.take() {
        for line in held {
            if let Some(end) = out.put(&line)? {
                return Ok(end);
            }
        }
    }
    if !query.follow {
        for line in joiner.flush() {
            if let Some(end) = out.put(&line)? {
                return Ok(end);
            }
        }
        return Ok(Ended::Finished);
    }
    // From after the last entry the backlog saw; with none, from when it began (it saw
    // everything before), or from `--since` when that is later.
    let from = match &cursor {
        Some(c) => Follow::AfterCursor(c),
        None => Follow::Since(query.since.map_or(started, |s| s.max(started))),
    };
    let follow = journalctl_args(query, Some(from));
    run_journalctl(&follow, tx, rx, |entry| {
        for line in joiner.push(entry) {
            if let Some(end) = out.put(&line)? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    })
}

/// Runs journalctl with `args`, handing each entry to `each` until it ends, `each` says the
/// output is gone, or SIGINT comes (journalctl is killed and reaped either way).
fn run_journalctl(
    args: &[String],
    tx: &mpsc::Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
    mut each: impl FnMut(Entry) -> Result<Option<Ended>, LogsError>,
) -> Result<Ended, LogsError> {
    use std::os::unix::process::CommandExt;
    // In a process group of its own: a terminal's Ctrl-C reaches only us, and we end it, so
    // it never dies first and looks like a failed query.
    let mut child = Command::new("journalctl")
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LogsError::NoJournalctl)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let reader_tx = tx.clone();
    std::thread::spawn(move || read_entries(stdout, &reader_tx));
    // Its complaints are short; read beside its output so neither pipe can fill.
    let complaints = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(4096).read_to_string(&mut text);
        text
    });
    let stop = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    loop {
        let msg = rx.recv().expect("the sender is held here");
        match msg {
            Msg::Entry(entry) => match each(entry) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    stop(&mut child);
                    return Ok(end);
                }
                Err(e) => {
                    stop(&mut child);
                    return Err(e);
                }
            },
            Msg::JournalEnd(failed) => {
                let status = child.wait().map_err(LogsError::JournalctlOutput)?;
                let stderr = complaints.join().unwrap_or_default();
                if let Some(e) = failed {
                    return Err(LogsError::JournalctlOutput(e));
                }
                if !status.success() {
                    return Err(LogsError::Journalctl {
                        status: describe_status(status),
                        stderr: stderr.trim().to_string(),
                    });
                }
                return Ok(Ended::Finished);
            }
            Msg::Interrupted(signal) => {
                stop(&mut child);
                return Ok(Ended::Interrupted { signal });
            }
            Msg::Changed | Msg::WatchFailed(_) => {}
        }
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    }
}

/// The reader thread: journalctl's output, one entry per line, each bounded.
fn read_entries(stdout: impl Read, tx: &mpsc::Sender<Msg>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut line, MAX_ENTRY_JSON) {
            Ok(None) => {
                let _ = tx.send(Msg::JournalEnd(None));
                return;
            }
            Ok(Some(false)) => {
                tracing::warn!(
                    "a journal entry over {} bytes of JSON was skipped",
                    MAX_ENTRY_JSON
                );
            }
            Ok(Some(true)) => {
                if let Some(entry) = parse_entry(&line) {
                    if tx.send(Msg::Entry(entry)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::JournalEnd(Some(e)));
                return;
            }
        }
    }
}

/// Reads one line (without its newline) into `line`, keeping at most `max` bytes. None at the
/// end; Some(false) when the line was longer (the rest is read and dropped).
fn read_bounded_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut whole = true;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(whole));
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if whole && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            whole = false;
            line.clear();
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(whole));
        }
    }
}

/// One entry of journalctl's JSON; None when it is not an object (nothing of ours).
fn parse_entry(json: &[u8]) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let object = value.as_object()?;
    let text = |name: &str| object.get(name).and_then(field_bytes).map(lossy);
    let time = text("__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|us| UNIX_EPOCH + Duration::from_micros(us));
    // `<project>/<service>`; neither name has a `/`.
    let identifier = text("SYSLOG_IDENTIFIER").unwrap_or_default();
    let service = match identifier.rsplit_once('/') {
        Some((_, service)) => service.to_string(),
        None => identifier,
    };
    let stream = match text("PRIORITY").as_deref() {
        Some("3") => "stderr",
        _ => "stdout",
    };
    Some(Entry {
        time,
        cursor: text("__CURSOR"),
        service,
        stream: Some(stream.to_string()),
        connection: text("_STREAM_ID"),
        message: object
            .get("MESSAGE")
            .and_then(field_bytes)
            .unwrap_or_default(),
        // Not `eof` (a stream ended inside a line) nor `nul`: those lines are over.
        continued: text("_LINE_BREAK").as_deref() == Some("line-max"),
    })
}

/// A field's bytes as journalctl prints them: a string; an array of numbers (bytes that are
/// not printable UTF-8); an array of values when the entry has the field more than once (the
/// first is taken); null (too big without `--all`).
fn field_bytes(value: &serde_json::Value) -> Option<Vec<u8>> {
    match value {
        serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
        serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_number) => Some(
            items
                .iter()
                .map(|n| {
                    n.as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .unwrap_or(b'?')
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => items.first().and_then(field_bytes),
        _ => None,
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Whose line a piece is of: service, connection.
type LineKey = (String, Option<String>);
/// A line being joined: the time and stream of its first piece, its bytes so far.
type Partial = (Option<SystemTime>, Option<String>, Vec<u8>);

/// Joins the pieces of long lines back, per service and connection: the time and the stream
/// of a line's first piece (journald gives only the first its `<N>` priority), and its bytes
/// so far.
#[derive(Default)]
struct Joiner {
    pending: HashMap<LineKey, Partial>,
}

impl Joiner {
    /// The lines `entry` completes (none while a line goes on; a line grown past
    /// [`MAX_LINE`] leaves in parts).
    fn push(&mut self, entry: Entry) -> Vec<LogLine> {
        let key = (entry.service.clone(), entry.connection.clone());
        let mut done = Vec::new();
        let (time, stream, mut bytes) =
            self.pending
                .remove(&key)
                .unwrap_or((entry.time, entry.stream.clone(), Vec::new()));
        let line = |time, bytes| LogLine {
            time,
            service: entry.service.clone(),
            stream: stream.clone(),
            message: lossy(bytes),
        };
        bytes.extend_from_slice(&entry.message);
        if bytes.len() > MAX_LINE {
            let rest = bytes.split_off(MAX_LINE);
            done.push(line(time, bytes));
            bytes = rest;
        }
        if entry.continued {
            self.pending.insert(key, (time, stream, bytes));
        } else {
            done.push(line(time, bytes));
        }
        done
    }

    /// Lines whose last piece never came (the reading ended first), oldest first.
    fn flush(&mut self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .pending
            .drain()
            .map(|((service, _), (time, stream, bytes))| LogLine {
                time,
                service,
                stream,
                message: lossy(bytes),
            })
            .collect();
        lines.sort_by_key(|l| l.time);
        lines
    }
}

// --- log files ------------------------------------------------------------------------------

/// A service's log file being read: where it is, the open file and how far it was read.
struct Tail {
    service: String,
    name: String,
    file: Option<File>,
    inode: u64,
    offset: u64,
    pending: Vec<u8>,
}

impl Tail {
    fn new(service: &str) -> Tail {
        Tail {
            service: service.to_string(),
            name: format!("{service}.log"),
            file: None,
            inode: 0,
            offset: 0,
            pending: Vec::new(),
        }
    }

    fn line(&self, bytes: &[u8]) -> LogLine {
        LogLine {
            time: None,
            service: self.service.clone(),
            stream: None,
            message: lossy(bytes.strip_suffix(b"\r").unwrap_or(bytes).to_vec()),
        }
    }

    /// Reads what is new in the file it holds, then, if the path now names another file (a
    /// restart recreated it, a rotation renamed it away), the whole of that one. Each
    /// complete line goes to `each`; a partial last line waits for its end.
    fn catch_up(
        &mut self,
        dir: &VerifiedDir,
        each: &mut dyn FnMut(LogLine) -> Result<Option<Ended>, LogsError>,
    ) -> Result<Option<Ended>, LogsError> {
        if let Some(end) = self.read_new(dir, each)? {
            return Ok(Some(end));
        }
        let Some(file) = dir.open_existing_file(&self.name)? else {
            return Ok(None);
        };
        let inode = file
            .metadata()
            .map_err(|source| self.read_error(dir, source))?
            .ino();
        if self.file.is_some() && inode == self.inode {
            return Ok(None);
        }
        // A new file: what the old one held unfinished was its last line.
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            if let Some(end) = each(self.line(&rest))? {
                return Ok(Some(end));
            }
        }
        self.file = Some(file);
        self.inode = inode;
        self.offset = 0;
        self.read_new(dir, each)
    }

    fn read_error(&self, dir: &VerifiedDir, source: io::Error) -> LogsError {
        LogsError::ReadFile {
            path: dir.join(&self.name),
            source,
        }
    }

    fn read_new(
        &mut self,
        dir: &VerifiedDir,
        each: &mut dyn FnMut(LogLine) -> Result<Option<Ended>, LogsError>,
    ) -> Result<Option<Ended>, LogsError> {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|source| self.read_error(dir, source))?
            .len();
        if len < self.offset {
            // Truncated in place: it starts again.
            self.offset = 0;
            self.pending.clear();
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let got = match file.read_at(&mut buf, self.offset) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.read_error(dir, source)),
            };
            self.offset += got as u64;
            let mut start = 0;
            let chunk = &buf[..got];
            while let Some(i) = chunk[start..].iter().position(|b| *b == b'\n') {
                let end = start + i;
                let line = if self.pending.is_empty() {
                    self.line(&chunk[start..end])
                } else {
                    self.pending.extend_from_slice(&chunk[start..end]);
                    let whole = std::mem::take(&mut self.pending);
                    self.line(&whole)
                };
                start = end + 1;
                if let Some(ended) = each(line)? {
                    return Ok(Some(ended));
                }
            }
            self.pending.extend_from_slice(&chunk[start..]);
            if self.pending.len() >= MAX_LINE {
                let part = std::mem::take(&mut self.pending);
                if let Some(ended) = each(self.line(&part))? {
                    return Ok(Some(ended));
                }
            }
        }
    }
}

fn read_files(
    state_dir: &Path,
    query: &Query,
    tx: &mpsc::Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
    out: &mut Output<'_>,
) -> Result<Ended, LogsError> {
    if query.since.is_some() {
        return Err(LogsError::SinceWithoutTimes);
    }
    let no_dir = || LogsError::NoLogDir {
        project: query.project.clone(),
        dir: state_dir.join("logs").join(&query.project),
    };
    let dir = if query.follow {
        // Following before the first run: the directory the services will write to.
        VerifiedDir::create_state(state_dir)?
            .child_dir("logs")?
            .child_dir(&query.project)?
    } else {
        VerifiedDir::existing_state(state_dir)?
            .ok_or_else(no_dir)?
            .existing_child_dir("logs")?
            .ok_or_else(no_dir)?
            .existing_child_dir(&query.project)?
            .ok_or_else(no_dir)?
    };
    // Watching starts before the first read, so nothing written in between is missed.
    let _watcher = if query.follow {
        Some(watch_dir(dir.path(), tx.clone())?)
    } else {
        None
    };
    let mut tails: Vec<Tail> = query.services.iter().map(|s| Tail::new(s)).collect();
    // The backlog, service after service (the files have no times to interleave by): the
    // rotated file first, then the current one; with `-n N`, the last N of each service.
    for tail in &mut tails {
        let mut held: VecDeque<LogLine> = VecDeque::new();
        let mut keep = |line: LogLine, out: &mut Output<'_>| -> Result<Option<Ended>, LogsError> {
            match query.lines {
                Some(n) => {
                    if out.keeps(&line) && n > 0 {
                        if held.len() == n {
                            held.pop_front();
                        }
                        held.push_back(line);
                    }
                    Ok(None)
                }
                None => out.put(&line),
            }
        };
        let mut rotated = Tail::new(&tail.service);
        rotated.name = format!("{}.log.1", tail.service);
        for t in [&mut rotated, &mut *tail] {
            if let Some(end) = t.catch_up(&dir, &mut |line| keep(line, out))? {
                return Ok(end);
            }
        }
        if !rotated.pending.is_empty() {
            let rest = std::mem::take(&mut rotated.pending);
            if let Some(end) = keep(rotated.line(&rest), out)? {
                return Ok(end);
            }
        }
        if !query.follow && !tail.pending.is_empty() {
            let rest = std::mem::take(&mut tail.pending);
            if let Some(end) = keep(tail.line(&rest), out)? {
                return Ok(end);
            }
        }
        for line in held {
            if let Some(end) = out.put(&line)? {
                return Ok(end);
            }
        }
    }
    if !query.follow {
        return Ok(Ended::Finished);
    }
    loop {
        match rx.recv().expect("the sender is held here") {
            Msg::Changed => {
                // One catch-up for a burst of changes: each write is an event.
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Msg::Interrupted(signal) => return Ok(Ended::Interrupted { signal }),
                        Msg::WatchFailed(message) => {
                            return Err(LogsError::Watch {
                                dir: dir.path().to_path_buf(),
                                message,
                            });
                        }
                        _ => {}
                    }
                }
                for tail in &mut tails {
                    if let Some(end) = tail.catch_up(&dir, &mut |line| out.put(&line))? {
                        return Ok(end);
                    }
                }
            }
            Msg::WatchFailed(message) => {
                return Err(LogsError::Watch {
                    dir: dir.path().to_path_buf(),
                    message,
                });
            }
            Msg::Interrupted(signal) => return Ok(Ended::Interrupted { signal }),
            Msg::Entry(_) | Msg::JournalEnd(_) => {}
        }
    }
}

/// inotify on the log directory: any change to a file in it (written, created, renamed,
/// truncated) is a `Changed`.
fn watch_dir(dir: &Path, tx: mpsc::Sender<Msg>) -> Result<notify::INotifyWatcher, LogsError> {
    use notify::Watcher;
    let failed = |e: notify::Error| LogsError::Watch {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    let mut watcher = notify::INotifyWatcher::new(
        move |event: notify::Result<notify::Event>| {
            let _ = match event {
                Ok(_) => tx.send(Msg::Changed),
                Err(e) => tx.send(Msg::WatchFailed(e.to_string())),
            };
        },
        notify::Config::default(),
    )
    .map_err(failed)?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(failed)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: &str, message: &str, continued: bool, us: u64) -> Entry {
        Entry {
            time: Some(UNIX_EPOCH + Duration::from_micros(us)),
            cursor: None,
            service: service.into(),
            stream: Some("stdout".into()),
            connection: Some("s1".into()),
            message: message.as_bytes().to_vec(),
            continued,
        }
    }

    #[test]
    fn an_entry_reads_back_with_bytes_that_are_not_utf8() {
        let json = br#"{"__REALTIME_TIMESTAMP":"1796162911310365","__CURSOR":"s=1","MESSAGE":[97,27,91,49,109,98,255],"SYSLOG_IDENTIFIER":"demo/web","PRIORITY":"3","_PID":"7"}"#;
        let e = parse_entry(json).unwrap();
        assert_eq!(e.message, b"a\x1b[1mb\xff");
        assert_eq!(e.service, "web");
        assert_eq!(e.stream.as_deref(), Some("stderr"));
        assert_eq!(
            e.time,
            Some(UNIX_EPOCH + Duration::from_micros(1_796_162_911_310_365))
        );
        assert!(!e.continued);
        let twice = br#"{"MESSAGE":["one","two"],"SYSLOG_IDENTIFIER":"demo/db","PRIORITY":"6","_LINE_BREAK":"line-max"}"#;
        let e = parse_entry(twice).unwrap();
        assert_eq!(e.message, b"one");
        assert_eq!(e.stream.as_deref(), Some("stdout"));
        assert!(e.continued);
        let ended = br#"{"MESSAGE":"half","SYSLOG_IDENTIFIER":"demo/db","_LINE_BREAK":"eof"}"#;
        assert!(!parse_entry(ended).unwrap().continued, "eof ends the line");
        assert!(parse_entry(b"not json").is_none());
    }

    #[test]
    fn pieces_join_back_per_service_and_keep_the_first_time() {
        let mut j = Joiner::default();
        assert!(j.push(entry("web", "abc", true, 1)).is_empty());
        let other = j.push(entry("db", "whole", false, 2));
        assert_eq!(other[0].message, "whole");
        assert!(j.push(entry("web", "def", true, 3)).is_empty());
        let done = j.push(entry("web", "g", false, 4));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].message, "abcdefg");
        assert_eq!(done[0].time, Some(UNIX_EPOCH + Duration::from_micros(1)));
        assert!(j.push(entry("web", "tail", true, 5)).is_empty());
        let flushed = j.flush();
        assert_eq!(flushed[0].message, "tail");
    }

    #[test]
    fn a_line_longer_than_the_bound_is_skipped_whole() {
        let data = format!("{}\nshort\n{}", "x".repeat(100), "end");
        let mut reader = BufReader::with_capacity(16, data.as_bytes());
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 50).unwrap(),
            Some(false)
        );
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 50).unwrap(),
            Some(true)
        );
        assert_eq!(line, b"short");
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 50).unwrap(),
            Some(true)
        );
        assert_eq!(line, b"end");
        assert_eq!(read_bounded_line(&mut reader, &mut line, 50).unwrap(), None);
    }

    #[test]
    fn journalctl_is_asked_for_our_fields_only() {
        let q = Query {
            project: "demo".into(),
            services: vec!["web".into(), "db".into()],
            lines: Some(5),
            since: Some(UNIX_EPOCH + Duration::from_micros(1_500_000)),
            follow: true,
            grep: None,
        };
        let args = journalctl_args(&q, None);
        for want in [
            "--lines=5",
            "--since=@1.500000",
            "_TRANSPORT=stdout",
            "SYSLOG_IDENTIFIER=demo/web",
            "SYSLOG_IDENTIFIER=demo/db",
            "--all",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--follow"));
        let follow = journalctl_args(&q, Some(Follow::AfterCursor("s=1")));
        assert!(follow.iter().any(|a| a == "--after-cursor=s=1"));
        assert!(follow.iter().any(|a| a == "--follow"));
        assert!(!follow.iter().any(|a| a == "--lines=5"));
        let grep = Query {
            grep: Some(Regex::new("x").unwrap()),
            ..q
        };
        assert!(
            !journalctl_args(&grep, None)
                .iter()
                .any(|a| a.starts_with("--lines=5"))
        );
    }

    fn read_files_of(
        state: &Path,
        query: &Query,
        print: &mut dyn FnMut(&LogLine) -> io::Result<()>,
    ) -> Result<Ended, LogsError> {
        let (tx, rx) = mpsc::channel();
        read_with(
            &Source::Files {
                state_dir: state.to_path_buf(),
            },
            query,
            print,
            &tx,
            &rx,
        )
    }

    fn collect(state: &Path, query: &Query) -> Vec<String> {
        let mut got = Vec::new();
        let ended = read_files_of(state, query, &mut |l| {
            got.push(format!("{}: {}", l.service, l.message));
            Ok(())
        })
        .unwrap();
        assert_eq!(ended, Ended::Finished);
        got
    }

    #[test]
    fn a_followed_log_file_is_read_on_when_appended_recreated_or_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let append = |text: &str| {
            let mut f = crate::launch::open_log_file(&state, "demo", "web").unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        };
        append("one\ntw");
        let dir = VerifiedDir::create_state(&state)
            .unwrap()
            .child_dir("logs")
            .unwrap()
            .child_dir("demo")
            .unwrap();
        let mut tail = Tail::new("web");
        let mut got = Vec::new();
        let mut step = |tail: &mut Tail| {
            tail.catch_up(&dir, &mut |l| {
                got.push(l.message);
                Ok(None)
            })
            .unwrap();
            std::mem::take(&mut got)
        };
        assert_eq!(step(&mut tail), ["one"], "a partial line waits");
        append("o\nthree\n");
        assert_eq!(step(&mut tail), ["two", "three"]);
        // Rotated away and made anew (a restart past the size limit): the old one's last
        // words, then the new one from its start.
        append("four\n");
        std::fs::rename(
            state.join("logs/demo/web.log"),
            state.join("logs/demo/web.log.1"),
        )
        .unwrap();
        append("five\n");
        assert_eq!(step(&mut tail), ["four", "five"]);
        // Truncated in place: read again from the start.
        std::fs::write(state.join("logs/demo/web.log"), "").unwrap();
        append("six\n");
        assert_eq!(step(&mut tail), ["six"]);
        assert!(step(&mut tail).is_empty());
    }

    #[test]
    fn log_files_are_read_service_after_service_rotated_first() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let write = |name: &str, text: &str| {
            let mut f = crate::launch::open_log_file(&state, "demo", name).unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        };
        write("web", "w1\nw2\r\n");
        write("db", "d1\nd2\nd3 unfinished");
        std::fs::write(state.join("logs/demo/web.log.1"), "w0\n").unwrap();
        let mut q = Query {
            project: "demo".into(),
            services: vec!["web".into(), "db".into(), "none".into()],
            lines: None,
            since: None,
            follow: false,
            grep: None,
        };
        assert_eq!(
            collect(&state, &q),
            [
                "web: w0",
                "web: w1",
                "web: w2",
                "db: d1",
                "db: d2",
                "db: d3 unfinished"
            ]
        );
        q.lines = Some(1);
        assert_eq!(collect(&state, &q), ["web: w2", "db: d3 unfinished"]);
        q.lines = None;
        q.grep = Some(Regex::new("2$").unwrap());
        assert_eq!(collect(&state, &q), ["web: w2", "db: d2"]);
        q.project = "other".into();
        let err = read_files_of(&state, &q, &mut |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("no log directory"), "{err}");
    }
}
