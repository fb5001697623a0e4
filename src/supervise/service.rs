//! One service as the supervisor sees it: its state, its current instance, and the tasks that
//! watch that instance.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::Instant;

use tokio::task::AbortHandle;

use crate::config::Service;
use crate::contain::ScopeHandle;
use crate::proc::ProcessIdentity;

pub use super::progress::ServiceState as State;

pub struct Svc {
    pub name: String,
    pub cfg: Service,
    pub state: State,
    /// Milliseconds since the epoch when it entered `state`.
    pub since_ms: i64,
    pub ready: bool,
    /// Which launch the current instance is; events of older ones are dropped.
    pub generation: u64,
    /// Restarts in total, and in a row (the backoff's exponent; reset once it proves stable).
    pub restarts: u32,
    pub attempt: u32,
    /// Adopted back from an earlier run: its main process is not our child.
    pub adopted: bool,
    pub scope: Option<ScopeHandle>,
    pub main: Option<ProcessIdentity>,
    pub main_status: Option<ExitStatus>,
    pub main_reaped: bool,
    pub emptied: bool,
    /// Why the current instance is being ended as a failure.
    pub failure: Option<String>,
    pub last_exit: Option<String>,
    pub exited_ok: bool,
    pub launched_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    /// Where a stop of this service leads: `Waiting` (a dependency is down) or `Stopped`.
    pub after_stop: State,
    pub output: Rc<RefCell<VecDeque<String>>>,
    pub status_text: Option<String>,
    pub last_watchdog: Rc<Cell<Instant>>,
    /// Probes and timers of the current instance: cancelled when it changes state.
    pub tasks: Vec<AbortHandle>,
    /// Watchers of the current instance (cgroup, notify socket, output): cancelled at its end.
    pub watchers: Vec<AbortHandle>,
}

impl Svc {
    pub fn new(name: &str, cfg: &Service) -> Svc {
        Svc {
            name: name.to_string(),
            cfg: cfg.clone(),
            state: State::Pending,
            since_ms: now_ms(),
            ready: false,
            generation: 0,
            restarts: 0,
            attempt: 0,
            adopted: false,
            scope: None,
            main: None,
            main_status: None,
            main_reaped: false,
            emptied: false,
            failure: None,
            last_exit: None,
            exited_ok: false,
            launched_at: None,
            ready_at: None,
            after_stop: State::Stopped,
            output: Rc::new(RefCell::new(VecDeque::new())),
            status_text: None,
            last_watchdog: Rc::new(Cell::new(Instant::now())),
            tasks: Vec::new(),
            watchers: Vec::new(),
        }
    }

    pub fn enter(&mut self, state: State) {
        if state != self.state {
            self.since_ms = now_ms();
        }
        self.state = state;
    }

    /// Forgets the previous instance before a new launch.
    pub fn reset_instance(&mut self) {
        self.cancel_watchers();
        self.adopted = false;
        self.scope = None;
        self.main = None;
        self.main_status = None;
        self.main_reaped = false;
        self.emptied = false;
        self.failure = None;
        self.ready = false;
        self.ready_at = None;
        self.launched_at = None;
        self.output.borrow_mut().clear();
    }

    pub fn cancel_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    pub fn cancel_watchers(&mut self) {
        for task in self.watchers.drain(..) {
            task.abort();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
