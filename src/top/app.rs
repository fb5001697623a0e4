//! The dashboard's loop: the terminal (raw mode, the alternate screen, restored on every way
//! out), and the threads that feed the [`Dashboard`] — keys, the supervisor's state feed, one
//! counter sample a second, the audit trail's latest events, the services' output followed
//! live — each sending one message to the loop, which applies it and draws.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyEventKind};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::model::{Command, Dashboard, EventLine};
use super::render::{Look, draw};
use super::sample::{Sample, sample};
use crate::audit::logs;
use crate::contain::{BusKind, ScopeHandle};
use crate::control::{Reply, Request, RequestError, Subscription};
use crate::proc::ProcessIdentity;
use crate::supervise::feed::FeedEvent;

/// How often the counters are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the scopes are listed again (and a supervisor looked for, without one), besides
/// when the feed says a service changed.
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// How long the snapshot of a subscription may take.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// How many lines of each service's output the log pane starts with.
const LOG_BACKLOG: usize = 200;
/// The most messages applied between two draws.
const MAX_BATCH: usize = 4096;
/// After how many samples the start-up's pages are let go.
const TRIM_AFTER_SAMPLES: u32 = 3;
/// How many audit events the events pane starts with.
const EVENTS_BACKLOG: usize = 50;

/// Finds the project's live supervisor (None without one).
pub type FindSupervisor = Box<dyn FnMut() -> Option<ProcessIdentity> + Send>;

/// What the dashboard watches, and how it asks.
pub struct Setup {
    pub project: String,
    pub state_dir: PathBuf,
    /// The configured services in order, with their declared ports.
    pub services: Vec<(String, Vec<u16>)>,
    pub backend: String,
    pub bus: BusKind,
    pub colour: bool,
    pub logs: logs::Source,
    pub find_supervisor: FindSupervisor,
    /// How long a verb's reply may take.
    pub request_wait: Duration,
}

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("set up the terminal: {}", crate::proc::describe_io(.0))]
    Terminal(std::io::Error),
}

/// What the loop hears.
enum Msg {
    Key(crossterm::event::KeyEvent),
    Resized,
    Feed(FeedEvent),
    FeedEnded,
    Samples {
        samples: BTreeMap<String, Sample>,
        listening: Vec<u16>,
        at_us: u64,
        /// The backend of the scopes found, if any.
        backend: Option<&'static str>,
    },
    Event(EventLine),
    Log {
        service: String,
        line: String,
    },
    Replied(String),
    /// SIGTERM, SIGHUP or SIGINT.
    Signal,
}

/// Runs the dashboard until `q` (or a signal), and leaves the terminal as it was.
pub fn run(setup: Setup) -> Result<(), TopError> {
    crossterm::terminal::enable_raw_mode().map_err(TopError::Terminal)?;
    let mut stdout = std::io::stdout();
    if let Err(e) = crossterm::execute!(
        stdout,
        crossterm::terminal::EnterAlternateScreen,
        crossterm::cursor::Hide
    ) {
        restore();
        return Err(TopError::Terminal(e));
    }
    // A panic must not leave the terminal raw and on the alternate screen.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let (tx, rx) = mpsc::channel();
    // Before any other thread: SIGTERM, SIGHUP and SIGINT are ours from here on.
    spawn_signals(tx.clone());
    let logs_done = spawn_logs(
        tx.clone(),
        setup.logs.clone(),
        setup.project.clone(),
        setup.services.iter().map(|(n, _)| n.clone()).collect(),
    );
    let result = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .map_err(TopError::Terminal)
        .and_then(|terminal| run_in(terminal, setup, tx, rx));
    restore();
    end_logs(&logs_done);
    result
}

/// Ends the log reader and the `journalctl --follow` it runs, which would otherwise follow
/// on after us until its next line. The reader ends on a signal (it ends journalctl then):
/// one SIGTERM to ourselves, whose handler is ours already, then a bounded wait for it.
fn end_logs(done: &mpsc::Receiver<()>) {
    if done.try_recv().is_ok() {
        return;
    }
    let _ = crate::proc::sys::kill(std::process::id() as i32, libc::SIGTERM);
    let _ = done.recv_timeout(Duration::from_secs(2));
}

/// Leaves the alternate screen, shows the cursor and ends raw mode.
fn restore() {
    let mut stdout = std::io::stdout();
    let _ = crossterm::execute!(
        stdout,
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = stdout.flush();
}

fn run_in(
    mut terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    setup: Setup,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
) -> Result<(), TopError> {
    let mut board = Dashboard::new(&setup.project, &setup.backend, &setup.services);
    let names: Vec<String> = setup.services.iter().map(|(n, _)| n.clone()).collect();
    spawn_keys(tx.clone());
    spawn_events(tx.clone(), setup.project.clone(), setup.state_dir.clone());
    let shared = std::sync::Arc::new(std::sync::Mutex::new(Shared::default()));
    spawn_sampler(
        tx.clone(),
        Sampler {
            project: setup.project.clone(),
            state_dir: setup.state_dir.clone(),
            names,
            bus: setup.bus,
            find_supervisor: setup.find_supervisor,
            shared: shared.clone(),
        },
    );
    let look = |colour| Look {
        colour,
        now_ms: crate::supervise::feed::now_ms(),
        utc_offset_s: crate::proc::sys::utc_offset_at(crate::supervise::feed::now_ms() / 1000),
    };
    let mut samples_seen = 0u32;
    loop {
        terminal
            .draw(|frame| draw(frame, &board, &look(setup.colour)))
            .map_err(TopError::Terminal)?;
        let Ok(first) = rx.recv() else {
            return Ok(());
        };
        // What is waiting is applied before the next draw (a bounded batch: a flood of log
        // lines does not hold the screen back).
        for msg in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH)) {
            match msg {
                Msg::Key(key) => {
                    board.message = None;
                    match board.handle_key(key) {
                        Some(Command::Quit) => return Ok(()),
                        Some(Command::Ask(request)) => ask(
                            &tx,
                            &setup.state_dir,
                            &setup.project,
                            &shared,
                            request,
                            setup.request_wait,
                            &mut board,
                        ),
                        None => {}
                    }
                }
                Msg::Resized => {
                    let _ = terminal.autoresize();
                }
                Msg::Feed(event) => {
                    if matches!(event, FeedEvent::Service(_)) {
                        if let Ok(mut s) = shared.lock() {
                            s.rescan = true;
                        }
                    }
                    board.apply_feed(&event);
                }
                Msg::FeedEnded => board.supervisor_gone(),
                Msg::Samples {
                    samples,
                    listening,
                    at_us,
                    backend,
                } => {
                    if let (Some(kind), false) = (backend, board.live) {
                        board.header.backend = kind.to_string();
                    }
                    board.apply_samples(&samples, &listening, at_us);
                    samples_seen += 1;
                    // Starting is over (configuration, command line, bus connection, the
                    // first screens): those pages need not stay resident, as the
                    // supervisor's do not once its stack is up.
                    if samples_seen == TRIM_AFTER_SAMPLES {
                        crate::proc::sys::trim_resident();
                    }
                }
                Msg::Event(line) => board.push_event(line),
                Msg::Log { service, line } => board.push_log(&service, line),
                Msg::Replied(message) => {
                    board.busy = None;
                    board.message = Some(message);
                }
                Msg::Signal => return Ok(()),
            }
        }
    }
}

/// What the loop and the sampler share: the supervisor the feed comes from, and whether the
/// scopes should be listed again now.
#[derive(Default)]
struct Shared {
    supervisor: Option<ProcessIdentity>,
    rescan: bool,
}

/// Carries a verb out on a thread of its own (a restart waits for readiness), as the CLI's
/// verb sends it.
fn ask(
    tx: &mpsc::Sender<Msg>,
    state_dir: &std::path::Path,
    project: &str,
    shared: &std::sync::Arc<std::sync::Mutex<Shared>>,
    request: Request,
    wait: Duration,
    board: &mut Dashboard,
) {
    let supervisor = shared.lock().ok().and_then(|s| s.supervisor);
    let Some(supervisor) = supervisor else {
        board.message = Some(format!(
            "`{}` needs a live supervisor: none answers for `{project}`",
            request.verb()
        ));
        return;
    };
    if let Some(busy) = &board.busy {
        board.message = Some(format!("{busy}: wait for it to finish"));
        return;
    }
    let what = format!("{} {}", request.verb(), request.services().join(" "));
    board.busy = Some(what.trim_end().to_string());
    let (tx, state_dir, project) = (tx.clone(), state_dir.to_path_buf(), project.to_string());
    std::thread::spawn(move || {
        let said = crate::control::send_request(&state_dir, &project, supervisor, &request, wait);
        let _ = tx.send(Msg::Replied(replied(&request, said)));
    });
}

/// One line on how a request went.
fn replied(request: &Request, said: Result<Reply, RequestError>) -> String {
    match said {
        Ok(reply) => match &reply.error {
            None => reply.message.clone(),
            Some(e) => match &e.hint {
                Some(hint) => format!("{} failed: {} ({hint})", request.verb(), e.message),
                None => format!("{} failed: {}", request.verb(), e.message),
            },
        },
        Err(e) => format!("{} failed: {e}", request.verb()),
    }
}

fn spawn_keys(tx: mpsc::Sender<Msg>) {
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            let msg = match event {
                Event::Key(key) if key.kind != KeyEventKind::Release => Msg::Key(key),
                Event::Resize(..) => Msg::Resized,
                _ => continue,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
}

/// SIGTERM, SIGHUP (the terminal went away) and SIGINT end the dashboard as `q` does, so the
/// terminal is restored. Returns once their handlers are installed.
fn spawn_signals(tx: mpsc::Sender<Msg>) {
    crate::audit::logs::on_stop_signals(move |_| {
        let _ = tx.send(Msg::Signal);
        false
    });
}

/// The latest audit events of the project, once (the feed brings the new ones).
fn spawn_events(tx: mpsc::Sender<Msg>, project: String, state_dir: PathBuf) {
    std::thread::spawn(move || {
        let filter = crate::audit::query::Filter {
            project,
            last: Some(EVENTS_BACKLOG),
            ..Default::default()
        };
        crate::audit::query::for_each(&filter, &state_dir, &mut |e| {
            let _ = tx.send(Msg::Event(EventLine {
                at_ms: (e.time_us / 1000) as i64,
                service: e.service,
                event: e.event,
                message: e.message,
            }));
        });
    });
}

/// The services' output, followed live: one reader for all of them, each line kept under its
/// service (the pane shows the selected one's).
fn spawn_logs(
    tx: mpsc::Sender<Msg>,
    source: logs::Source,
    project: String,
    services: Vec<String>,
) -> mpsc::Receiver<()> {
    let (done, is_done) = mpsc::channel();
    std::thread::spawn(move || {
        let query = logs::Query {
            project,
            services,
            lines: Some(LOG_BACKLOG),
            since: None,
            follow: true,
            grep: None,
        };
        let ended = logs::read(&source, &query, &mut |line| {
            let text = match &line.stream {
                Some(s) if s == "stderr" => format!("! {}", line.message),
                _ => line.message.clone(),
            };
            tx.send(Msg::Log {
                service: line.service.clone(),
                line: text,
            })
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        });
        match ended {
            // The log reader turns these signals into its own end: the dashboard ends too.
            Ok(logs::Ended::Interrupted { .. }) => {
                let _ = tx.send(Msg::Signal);
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Msg::Replied(format!(
                    "the log pane is empty: could not {e}"
                )));
            }
        }
        let _ = done.send(());
    });
    is_done
}

struct Sampler {
    project: String,
    state_dir: PathBuf,
    names: Vec<String>,
    bus: BusKind,
    find_supervisor: FindSupervisor,
    shared: std::sync::Arc<std::sync::Mutex<Shared>>,
}

/// One counter sample a second; the scopes listed again every few seconds (or when the feed
/// says a service changed); and, while no feed runs, a supervisor looked for.
fn spawn_sampler(tx: mpsc::Sender<Msg>, mut s: Sampler) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let backends = rt.block_on(crate::contain::all_available(s.bus));
        let began = Instant::now();
        let mut scopes: Vec<(ScopeHandle, Vec<i32>)> = Vec::new();
        let mut last_scan: Option<Instant> = None;
        loop {
            let rescan = s
                .shared
                .lock()
                .map(|mut x| std::mem::take(&mut x.rescan))
                .unwrap_or(false);
            if rescan || last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
                scopes = rt.block_on(crate::contain::scopes_with_processes_in(
                    &backends, &s.project,
                ));
                last_scan = Some(Instant::now());
                let connected = s.shared.lock().is_ok_and(|x| x.supervisor.is_some());
                if !connected && let Some(found) = (s.find_supervisor)() {
                    connect(&tx, &s, found);
                }
            }
            let mut samples = BTreeMap::new();
            for name in &s.names {
                let cgroups: Vec<PathBuf> = scopes
                    .iter()
                    .filter(|(h, _)| &h.service == name)
                    .filter_map(|(h, _)| h.cgroup.clone())
                    .collect();
                samples.insert(name.clone(), timed_sample(&cgroups, began));
            }
            let listening = crate::discover::sockets::tcp_listeners(std::path::Path::new("/proc"))
                .into_iter()
                .map(|l| l.port)
                .collect();
            let at_us = began.elapsed().as_micros() as u64;
            let backend = scopes.first().map(|(h, _)| h.backend.as_str());
            if tx
                .send(Msg::Samples {
                    samples,
                    listening,
                    at_us,
                    backend,
                })
                .is_err()
            {
                return;
            }
            // The next sample on the second, however long this one took.
            let next = SAMPLE_EVERY.saturating_sub(Duration::from_micros(
                began.elapsed().as_micros() as u64 % SAMPLE_EVERY.as_micros() as u64,
            ));
            std::thread::sleep(next);
        }
    });
}

/// A sample of these cgroups, with when its CPU counter (read first) was read.
fn timed_sample(cgroups: &[PathBuf], began: Instant) -> Sample {
    let at = began.elapsed().as_micros() as u64;
    Sample {
        read_at_us: Some(at),
        ..sample(cgroups, &[], std::path::Path::new("/proc"))
    }
}

/// Subscribes to the supervisor `found` and reads its feed on a thread of its own.
fn connect(tx: &mpsc::Sender<Msg>, s: &Sampler, found: ProcessIdentity) {
    let Ok(subscription) =
        crate::control::subscribe(&s.state_dir, &s.project, found, SUBSCRIBE_WAIT)
    else {
        return;
    };
    if let Ok(mut shared) = s.shared.lock() {
        shared.supervisor = Some(found);
    }
    let (tx, shared) = (tx.clone(), s.shared.clone());
    std::thread::spawn(move || read_feed(subscription, tx, shared));
}

fn read_feed(
    mut subscription: Subscription,
    tx: mpsc::Sender<Msg>,
    shared: std::sync::Arc<std::sync::Mutex<Shared>>,
) {
    loop {
        match subscription.next_line::<FeedEvent>() {
            Ok(Some(FeedEvent::Lagged { .. })) | Ok(None) | Err(_) => break,
            Ok(Some(event)) => {
                if tx.send(Msg::Feed(event)).is_err() {
                    return;
                }
            }
        }
    }
    if let Ok(mut s) = shared.lock() {
        s.supervisor = None;
        s.rescan = true;
    }
    let _ = tx.send(Msg::FeedEnded);
}

/// `top --once`: the dashboard after one sample period, without a terminal: the feed's
/// snapshot (when a supervisor answers), then two counter samples [`SAMPLE_EVERY`] apart.
pub fn once(mut setup: Setup) -> Dashboard {
    let mut board = Dashboard::new(&setup.project, &setup.backend, &setup.services);
    if let Some(found) = (setup.find_supervisor)()
        && let Ok(mut subscription) =
            crate::control::subscribe(&setup.state_dir, &setup.project, found, SUBSCRIBE_WAIT)
        && let Ok(Some(event)) = subscription.next_line::<FeedEvent>()
    {
        board.apply_feed(&event);
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return board;
    };
    let scopes = rt.block_on(async {
        let backends = crate::contain::all_available(setup.bus).await;
        crate::contain::scopes_with_processes_in(&backends, &setup.project).await
    });
    if let (Some((h, _)), false) = (scopes.first(), board.live) {
        board.header.backend = h.backend.as_str().to_string();
    }
    let began = Instant::now();
    for round in 0..2 {
        if round == 1 {
            std::thread::sleep(SAMPLE_EVERY);
        }
        let mut samples = BTreeMap::new();
        for (name, _) in &setup.services {
            let cgroups: Vec<PathBuf> = scopes
                .iter()
                .filter(|(h, _)| &h.service == name)
                .filter_map(|(h, _)| h.cgroup.clone())
                .collect();
            samples.insert(name.clone(), timed_sample(&cgroups, began));
        }
        let listening: Vec<u16> =
            crate::discover::sockets::tcp_listeners(std::path::Path::new("/proc"))
                .into_iter()
                .map(|l| l.port)
                .collect();
        board.apply_samples(&samples, &listening, began.elapsed().as_micros() as u64);
    }
    board
}
