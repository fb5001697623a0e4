//! The dashboard's state, without any I/O: it is fed the supervisor's feed, counter samples,
//! audit entries, log lines and keys (with the time), and hands back what to do. The
//! rendering reads it; the app loop feeds it.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Serialize;

use super::sample::{MemorySource, Pressure, Sample, cpu_percent};
use crate::control::Request;
use crate::supervise::feed::{FeedEvent, ServiceEvent, Snapshot};

/// How many samples the history graphs keep (one a second).
pub const HISTORY: usize = 120;
/// How many log lines are kept per service, and audit events in all.
pub const LOG_LINES: usize = 1000;
pub const EVENTS: usize = 200;

/// One service's row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub service: String,
    /// The supervisor's word; without one, `running` (its scope holds processes) or
    /// `stopped`.
    pub state: String,
    pub ready: Option<bool>,
    pub restarts: Option<u32>,
    pub main_pid: Option<i32>,
    pub pids: Vec<i32>,
    /// CPU in percent of one core over the last sample period.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_source: Option<MemorySource>,
    pub pressure: Pressure,
    pub ports: Vec<u16>,
    pub ports_listening: Vec<u16>,
    pub uptime_s: Option<u64>,
    /// The last reason for a failure or a restart.
    pub reason: Option<String>,
    #[serde(skip)]
    cpu_usec: Option<u64>,
    #[serde(skip)]
    cpu_read_at_us: Option<u64>,
    #[serde(skip)]
    pub cpu_history: VecDeque<u64>,
    #[serde(skip)]
    pub memory_history: VecDeque<u64>,
}

/// A line of the events pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub service: Option<String>,
    pub event: String,
    pub message: String,
}

/// What the header says.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Header {
    pub project: String,
    pub backend: String,
    pub supervisor_pid: Option<i32>,
    /// When the supervisor's run started (ms since the epoch).
    pub started_at_ms: Option<i64>,
    pub startup_ms: Option<u64>,
    /// `running`, `stopping`, `ended`; None without a supervisor.
    pub run_state: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Service,
    State,
    Ready,
    Restarts,
    Pids,
    Cpu,
    Memory,
    Pressure,
    Ports,
    Uptime,
    Reason,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Service,
        Column::State,
        Column::Ready,
        Column::Restarts,
        Column::Pids,
        Column::Cpu,
        Column::Memory,
        Column::Pressure,
        Column::Ports,
        Column::Uptime,
        Column::Reason,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Service => "SERVICE",
            Column::State => "STATE",
            Column::Ready => "READY",
            Column::Restarts => "RST",
            Column::Pids => "PIDS",
            Column::Cpu => "CPU%",
            Column::Memory => "MEM",
            Column::Pressure => "PSI cpu/mem/io",
            Column::Ports => "PORTS",
            Column::Uptime => "UP",
            Column::Reason => "LAST REASON",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Services,
    Events,
    Logs,
}

/// What the keyboard is talking to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter on the service names (`/`).
    Filter,
    /// Typing a search in the full-screen log (`/` there).
    Search,
    Help,
    /// Waiting for `y` to carry out this request.
    Confirm(Request),
    /// The selected service's log on the whole screen.
    LogFull,
}

/// What the loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
    /// Send this request to the supervisor (as the CLI verb would).
    Ask(Request),
}

/// The whole dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub header: Header,
    pub rows: Vec<Row>,
    /// The selected service's name (it stays selected when the order changes).
    pub selected: Option<String>,
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    pub search: String,
    pub focus: Pane,
    pub mode: Mode,
    pub events: VecDeque<EventLine>,
    pub logs: BTreeMap<String, VecDeque<String>>,
    /// Lines scrolled back from the end, in the focused log or events pane.
    pub log_scroll: usize,
    pub events_scroll: usize,
    /// One line for a person: the last request's outcome, or why a key did nothing.
    pub message: Option<String>,
    pub stack_cpu: VecDeque<u64>,
    pub stack_memory: VecDeque<u64>,
    /// Microseconds on a monotonic clock of the last sample.
    last_sample_us: Option<u64>,
    /// Whether a live supervisor's feed drives the states.
    pub live: bool,
    /// A request is being carried out.
    pub busy: Option<String>,
}

impl Dashboard {
    /// A dashboard of the configured services, in order, before anything is known.
    pub fn new(project: &str, backend: &str, services: &[(String, Vec<u16>)]) -> Dashboard {
        Dashboard {
            header: Header {
                project: project.to_string(),
                backend: backend.to_string(),
                ..Header::default()
            },
            rows: services
                .iter()
                .map(|(name, ports)| Row {
                    service: name.clone(),
                    state: "stopped".into(),
                    ports: ports.clone(),
                    ..Row::default()
                })
                .collect(),
            selected: services.first().map(|(n, _)| n.clone()),
            sort: Column::Service,
            descending: false,
            filter: String::new(),
            search: String::new(),
            focus: Pane::Services,
            mode: Mode::Normal,
            events: VecDeque::new(),
            logs: BTreeMap::new(),
            log_scroll: 0,
            events_scroll: 0,
            message: None,
            stack_cpu: VecDeque::new(),
            stack_memory: VecDeque::new(),
            last_sample_us: None,
            live: false,
            busy: None,
        }
    }

    fn row_mut(&mut self, service: &str) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|r| r.service == service) {
            return &mut self.rows[i];
        }
        self.rows.push(Row {
            service: service.to_string(),
            state: "stopped".into(),
            ..Row::default()
        });
        if self.selected.is_none() {
            self.selected = Some(service.to_string());
        }
        self.rows.last_mut().expect("just pushed")
    }

    /// The supervisor's feed: a snapshot, a change, an audit event.
    pub fn apply_feed(&mut self, event: &FeedEvent) {
        match event {
            FeedEvent::Snapshot(s) => self.apply_snapshot(s),
            FeedEvent::Service(s) => self.apply_service(s),
            FeedEvent::Run { state, .. } => self.header.run_state = Some(state.clone()),
            FeedEvent::StackUp { startup_ms, .. } => self.header.startup_ms = Some(*startup_ms),
            FeedEvent::Audit {
                service,
                event,
                message,
                at_ms,
                ..
            } => self.push_event(EventLine {
                at_ms: *at_ms,
                service: service.clone(),
                event: event.clone(),
                message: message.clone(),
            }),
            FeedEvent::Lagged { .. } => {}
        }
    }

    fn apply_snapshot(&mut self, s: &Snapshot) {
        self.live = true;
        self.header.backend = s.backend.clone();
        self.header.supervisor_pid = Some(s.supervisor_pid);
        self.header.started_at_ms = Some(s.started_at_ms);
        self.header.startup_ms = s.startup_ms;
        self.header.run_state = Some(s.run_state.clone());
        for service in &s.services {
            self.apply_service(service);
        }
    }

    fn apply_service(&mut self, s: &ServiceEvent) {
        let row = self.row_mut(&s.service);
        row.state = s.state.clone();
        row.ready = Some(s.ready);
        row.restarts = Some(s.restarts);
        row.main_pid = s.main_pid;
        if !s.pids.is_empty() || !matches!(s.state.as_str(), "running" | "starting") {
            row.pids = s.pids.clone();
        }
        row.ports = s.ports.clone();
        if s.reason.is_some() || s.last_exit.is_some() {
            row.reason = s.reason.clone().or_else(|| s.last_exit.clone());
        }
    }

    /// The supervisor went away (or never was): states come from the scopes again.
    pub fn supervisor_gone(&mut self) {
        if self.live {
            self.message = Some("the supervisor's feed ended: showing the scopes only".into());
        }
        self.live = false;
        self.header.supervisor_pid = None;
        self.header.run_state = None;
        for row in &mut self.rows {
            row.ready = None;
            row.restarts = None;
        }
    }

    /// A counter sample of every service, taken at `at_us` on a monotonic clock, with the TCP
    /// ports something listens on.
    pub fn apply_samples(
        &mut self,
        samples: &BTreeMap<String, Sample>,
        listening: &[u16],
        at_us: u64,
    ) {
        let elapsed = self.last_sample_us.map(|t| at_us.saturating_sub(t));
        self.last_sample_us = Some(at_us);
        let live = self.live;
        let (mut cpu_total, mut memory_total) = (0.0, 0u64);
        for row in &mut self.rows {
            let empty = Sample::default();
            let s = samples.get(&row.service).unwrap_or(&empty);
            // Between the two reads of the counter where both were timed, else between the
            // two samples.
            let between = match (row.cpu_read_at_us, s.read_at_us) {
                (Some(before), Some(now)) => Some(now.saturating_sub(before)),
                _ => elapsed,
            };
            row.cpu_percent = between.and_then(|e| cpu_percent(row.cpu_usec, s.cpu_usec, e));
            row.cpu_usec = s.cpu_usec;
            row.cpu_read_at_us = s.read_at_us;
            row.memory_bytes = s.memory_bytes;
            row.memory_source = s.memory_source;
            row.pressure = s.pressure;
            row.uptime_s = s.uptime_s;
            // The feed's pids stand where no cgroup could be read (a container, a process
            // group).
            if !s.pids.is_empty() || !live {
                row.pids = s.pids.clone();
            }
            row.ports_listening = row
                .ports
                .iter()
                .copied()
                .filter(|p| listening.contains(p))
                .collect();
            if !live {
                row.state = match s.pids.is_empty() {
                    true => "stopped".into(),
                    false => "running".into(),
                };
            }
            cpu_total += row.cpu_percent.unwrap_or(0.0);
            memory_total += row.memory_bytes.unwrap_or(0);
            push(
                &mut row.cpu_history,
                (row.cpu_percent.unwrap_or(0.0) * 10.0) as u64,
            );
            push(&mut row.memory_history, row.memory_bytes.unwrap_or(0));
        }
        push(&mut self.stack_cpu, (cpu_total * 10.0) as u64);
        push(&mut self.stack_memory, memory_total);
    }

    pub fn push_event(&mut self, line: EventLine) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(line);
    }

    pub fn push_log(&mut self, service: &str, line: String) {
        let lines = self.logs.entry(service.to_string()).or_default();
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The rows shown, filtered and sorted.
    pub fn visible(&self) -> Vec<&Row> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| needle.is_empty() || r.service.to_lowercase().contains(&needle))
            .collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            let order = compare(a, b, key).then_with(|| a.service.cmp(&b.service));
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
        rows
    }

    pub fn selected_row(&self) -> Option<&Row> {
        let name = self.selected.as_deref()?;
        self.rows.iter().find(|r| r.service == name)
    }

    /// Services ready, and in all.
    pub fn ready_count(&self) -> (usize, usize) {
        let ready = self
            .rows
            .iter()
            .filter(|r| match r.ready {
                Some(ready) => ready,
                None => r.state == "running",
            })
            .count();
        (ready, self.rows.len())
    }

    fn move_selection(&mut self, by: isize) {
        let names: Vec<String> = self.visible().iter().map(|r| r.service.clone()).collect();
        if names.is_empty() {
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|s| names.iter().position(|n| n == s))
            .unwrap_or(0) as isize;
        let next = (at + by).clamp(0, names.len() as isize - 1) as usize;
        self.selected = Some(names[next].clone());
        self.log_scroll = 0;
    }

    /// Keeps the selection on a visible row once the filter changed.
    fn reselect(&mut self) {
        let names: Vec<String> = self.visible().iter().map(|r| r.service.clone()).collect();
        if !self.selected.as_ref().is_some_and(|s| names.contains(s)) {
            self.selected = names.first().cloned().or(self.selected.take());
        }
    }

    /// A key: what it changes here, and what the loop must do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        match self.mode.clone() {
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) if self.filter.len() < 64 => self.filter.push(c),
                    _ => {}
                }
                self.reselect();
                None
            }
            Mode::Search => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::LogFull,
                    KeyCode::Esc => {
                        self.search.clear();
                        self.mode = Mode::LogFull;
                    }
                    KeyCode::Backspace => {
                        self.search.pop();
                    }
                    KeyCode::Char(c) if self.search.len() < 64 => self.search.push(c),
                    _ => {}
                }
                None
            }
            Mode::Help => {
                self.mode = Mode::Normal;
                None
            }
            Mode::Confirm(request) => {
                self.mode = Mode::Normal;
                match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => Some(Command::Ask(request)),
                    _ => {
                        self.message = Some("nothing was asked".into());
                        None
                    }
                }
            }
            Mode::LogFull => match key.code {
                KeyCode::Char('l') | KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    None
                }
                KeyCode::Char('q') => Some(Command::Quit),
                KeyCode::Char('/') => {
                    self.mode = Mode::Search;
                    None
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.log_scroll += 1;
                    None
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.log_scroll = self.log_scroll.saturating_sub(1);
                    None
                }
                KeyCode::PageUp => {
                    self.log_scroll += 20;
                    None
                }
                KeyCode::PageDown => {
                    self.log_scroll = self.log_scroll.saturating_sub(20);
                    None
                }
                KeyCode::End => {
                    self.log_scroll = 0;
                    None
                }
                _ => None,
            },
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Command> {
        let selected = self.selected.clone();
        let one = |s: &Option<String>| s.iter().cloned().collect::<Vec<String>>();
        let verb = |this: &mut Dashboard, request: Request| -> Option<Command> {
            if !this.live {
                this.message = Some(format!(
                    "`{}` needs a live supervisor: `ccscope run --detach` starts one",
                    request.verb()
                ));
                return None;
            }
            if request.services().is_empty() && !matches!(request, Request::Reload { .. }) {
                this.message = Some("no service is selected".into());
                return None;
            }
            Some(Command::Ask(request))
        };
        match key.code {
            KeyCode::Char('q') => Some(Command::Quit),
            // Esc clears a kept filter first.
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                None
            }
            KeyCode::Esc => Some(Command::Quit),
            KeyCode::Char('?') | KeyCode::Char('h') => {
                self.mode = Mode::Help;
                None
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                None
            }
            KeyCode::Char('l') => {
                self.mode = Mode::LogFull;
                self.log_scroll = 0;
                None
            }
            KeyCode::Tab => {
                self.focus = match self.focus {
                    Pane::Services => Pane::Events,
                    Pane::Events => Pane::Logs,
                    Pane::Logs => Pane::Services,
                };
                None
            }
            KeyCode::BackTab => {
                self.focus = match self.focus {
                    Pane::Services => Pane::Logs,
                    Pane::Events => Pane::Services,
                    Pane::Logs => Pane::Events,
                };
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.scroll(-1);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.scroll(1);
                None
            }
            KeyCode::PageUp => {
                self.scroll(-10);
                None
            }
            KeyCode::PageDown => {
                self.scroll(10);
                None
            }
            KeyCode::Char('o') | KeyCode::Right => {
                self.sort = next_column(self.sort, 1);
                None
            }
            KeyCode::Left => {
                self.sort = next_column(self.sort, -1);
                None
            }
            KeyCode::Char('O') => {
                self.descending = !self.descending;
                None
            }
            KeyCode::Char('r') => verb(
                self,
                Request::Restart {
                    services: one(&selected),
                    all: false,
                },
            ),
            KeyCode::Char('s') => verb(
                self,
                Request::Stop {
                    services: one(&selected),
                },
            ),
            KeyCode::Char('S') => verb(
                self,
                Request::Start {
                    services: one(&selected),
                },
            ),
            KeyCode::Char('p') => {
                let services = one(&selected);
                let paused = self.selected_row().is_some_and(|r| r.state == "paused");
                match paused {
                    true => verb(self, Request::Resume { services }),
                    false => verb(self, Request::Pause { services }),
                }
            }
            KeyCode::Char('R') => verb(self, Request::Reload { dry_run: false }),
            KeyCode::Char('X') => {
                let services: Vec<String> = self.rows.iter().map(|r| r.service.clone()).collect();
                let asked = verb(self, Request::Stop { services });
                if let Some(Command::Ask(request)) = asked {
                    self.mode = Mode::Confirm(request);
                    self.message = Some(format!(
                        "stop the whole stack of `{}` (the supervisor holds it stopped)? y/n",
                        self.header.project
                    ));
                }
                None
            }
            _ => None,
        }
    }

    fn scroll(&mut self, by: isize) {
        match self.focus {
            Pane::Services => self.move_selection(by),
            Pane::Events => self.events_scroll = shift(self.events_scroll, -by),
            Pane::Logs => self.log_scroll = shift(self.log_scroll, -by),
        }
    }

    /// The selected service's log lines, those matching the search when there is one.
    pub fn log_lines(&self) -> Vec<&str> {
        let Some(name) = self.selected.as_deref() else {
            return Vec::new();
        };
        let needle = self.search.to_lowercase();
        self.logs
            .get(name)
            .map(|l| {
                l.iter()
                    .map(String::as_str)
                    .filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn shift(at: usize, by: isize) -> usize {
    (at as isize + by).max(0) as usize
}

fn push(history: &mut VecDeque<u64>, value: u64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

fn next_column(c: Column, by: isize) -> Column {
    let at = Column::ALL.iter().position(|x| *x == c).unwrap_or(0) as isize;
    let n = Column::ALL.len() as isize;
    Column::ALL[((at + by).rem_euclid(n)) as usize]
}

fn compare(a: &Row, b: &Row, key: Column) -> std::cmp::Ordering {
    let f = |x: Option<f64>, y: Option<f64>| {
        x.unwrap_or(-1.0)
            .partial_cmp(&y.unwrap_or(-1.0))
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    match key {
        Column::Service => a.service.cmp(&b.service),
        Column::State => a.state.cmp(&b.state),
        Column::Ready => a.ready.cmp(&b.ready),
        Column::Restarts => a.restarts.cmp(&b.restarts),
        Column::Pids => a.pids.len().cmp(&b.pids.len()),
        Column::Cpu => f(a.cpu_percent, b.cpu_percent),
        Column::Memory => a.memory_bytes.cmp(&b.memory_bytes),
        Column::Pressure => f(worst(&a.pressure), worst(&b.pressure)),
        Column::Ports => a.ports.cmp(&b.ports),
        Column::Uptime => a.uptime_s.cmp(&b.uptime_s),
        Column::Reason => a.reason.cmp(&b.reason),
    }
}

fn worst(p: &Pressure) -> Option<f64> {
    [p.cpu, p.memory, p.io]
        .into_iter()
        .flatten()
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEvent;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn board() -> Dashboard {
        Dashboard::new(
            "demo",
            "systemd",
            &[("db".into(), vec![5432]), ("web".into(), vec![8080])],
        )
    }

    fn service(name: &str, state: &str) -> ServiceEvent {
        ServiceEvent {
            project: "demo".into(),
            service: name.into(),
            run_id: "r".into(),
            state: state.into(),
            ready: state == "running",
            restarts: 1,
            main_pid: Some(10),
            pids: vec![10, 11],
            ports: vec![5432],
            reason: Some("exited with code 1".into()),
            last_exit: None,
            since_ms: 0,
            trigger: None,
        }
    }

    #[test]
    fn verbs_need_a_live_supervisor_and_ask_as_the_cli_does() {
        let mut d = board();
        assert_eq!(d.handle_key(key('r')), None);
        assert!(
            d.message
                .as_deref()
                .unwrap()
                .contains("needs a live supervisor")
        );
        d.apply_feed(&FeedEvent::Snapshot(Snapshot {
            project: "demo".into(),
            run_id: "r".into(),
            supervisor_pid: 7,
            started_at_ms: 0,
            startup_ms: Some(900),
            run_state: "running".into(),
            backend: "systemd".into(),
            services: vec![service("db", "running"), service("web", "paused")],
        }));
        assert_eq!(
            d.handle_key(key('r')),
            Some(Command::Ask(Request::Restart {
                services: vec!["db".into()],
                all: false
            }))
        );
        d.handle_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
        assert_eq!(d.selected.as_deref(), Some("web"));
        assert_eq!(
            d.handle_key(key('p')),
            Some(Command::Ask(Request::Resume {
                services: vec!["web".into()]
            })),
            "p on a paused service resumes it"
        );
        // The whole stack is stopped only once confirmed.
        assert_eq!(d.handle_key(key('X')), None);
        assert!(matches!(d.mode, Mode::Confirm(_)));
        assert_eq!(d.handle_key(key('n')), None);
        assert_eq!(d.handle_key(key('X')), None);
        assert_eq!(
            d.handle_key(key('y')),
            Some(Command::Ask(Request::Stop {
                services: vec!["db".into(), "web".into()]
            }))
        );
        assert_eq!(d.handle_key(key('q')), Some(Command::Quit));
    }

    #[test]
    fn the_filter_and_the_sort_order_what_is_shown() {
        let mut d = board();
        d.handle_key(key('/'));
        d.handle_key(key('w'));
        assert_eq!(d.mode, Mode::Filter);
        let shown: Vec<&str> = d.visible().iter().map(|r| r.service.as_str()).collect();
        assert_eq!(shown, ["web"]);
        assert_eq!(
            d.selected.as_deref(),
            Some("web"),
            "the selection follows the filter"
        );
        d.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(
            (d.mode.clone(), d.visible().len()),
            (Mode::Normal, 1),
            "kept"
        );
        assert_eq!(
            d.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
            None,
            "Esc clears a kept filter before it quits"
        );
        assert_eq!(d.visible().len(), 2);
        let mut samples = BTreeMap::new();
        samples.insert(
            "web".to_string(),
            Sample {
                cpu_usec: Some(0),
                ..Sample::default()
            },
        );
        samples.insert(
            "db".to_string(),
            Sample {
                cpu_usec: Some(0),
                ..Sample::default()
            },
        );
        d.apply_samples(&samples, &[], 0);
        samples.get_mut("web").unwrap().cpu_usec = Some(500_000);
        samples.get_mut("db").unwrap().cpu_usec = Some(100_000);
        d.apply_samples(&samples, &[8080], 1_000_000);
        let web = d.rows.iter().find(|r| r.service == "web").unwrap();
        assert_eq!(web.cpu_percent, Some(50.0));
        assert_eq!(web.ports_listening, vec![8080]);
        assert_eq!(
            d.stack_cpu.back(),
            Some(&600),
            "tenths of a percent, summed"
        );
        d.sort = Column::Cpu;
        d.descending = true;
        let shown: Vec<&str> = d.visible().iter().map(|r| r.service.as_str()).collect();
        assert_eq!(shown, ["web", "db"]);
    }

    #[test]
    fn cpu_is_the_counters_change_between_its_two_reads() {
        let mut d = board();
        let at = |cpu, read| {
            let mut samples = BTreeMap::new();
            samples.insert(
                "db".to_string(),
                Sample {
                    cpu_usec: Some(cpu),
                    read_at_us: Some(read),
                    ..Sample::default()
                },
            );
            samples
        };
        // The samples are 1 s apart, but the first read of db's counter came 200 ms late.
        d.apply_samples(&at(0, 200_000), &[], 0);
        d.apply_samples(&at(800_000, 1_000_000), &[], 1_000_000);
        assert_eq!(d.rows[0].cpu_percent, Some(100.0));
    }

    #[test]
    fn without_a_supervisor_the_scopes_say_running_or_stopped() {
        let mut d = board();
        let mut samples = BTreeMap::new();
        samples.insert(
            "db".to_string(),
            Sample {
                pids: vec![3],
                ..Sample::default()
            },
        );
        d.apply_samples(&samples, &[], 0);
        assert_eq!(d.rows[0].state, "running");
        assert_eq!(d.rows[1].state, "stopped");
        assert_eq!(d.ready_count(), (1, 2));
    }

    #[test]
    fn logs_and_events_are_bounded_and_searched() {
        let mut d = board();
        for i in 0..LOG_LINES + 5 {
            d.push_log("db", format!("line {i}"));
        }
        assert_eq!(d.logs["db"].len(), LOG_LINES);
        d.search = "LINE 100".into();
        assert!(d.log_lines().iter().all(|l| l.contains("line 100")));
        for i in 0..EVENTS + 1 {
            d.push_event(EventLine {
                at_ms: i as i64,
                service: None,
                event: "x".into(),
                message: String::new(),
            });
        }
        assert_eq!(d.events.len(), EVENTS);
        assert_eq!(d.events.front().unwrap().at_ms, 1);
    }
}
