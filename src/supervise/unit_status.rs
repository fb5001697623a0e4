//! What a supervisor under a `Type=notify` unit tells systemd, read off the same progress
//! lines a terminal sees: `READY=1` once the stack is up (not when the process starts), a
//! `STATUS=` a person can read in `systemctl --user status` ("4/4 services ready",
//! "dashboard restarting in 2 s", "stopping: 2 left"), `STOPPING=1`, and the reason of a start
//! that failed. Outside a unit it costs a map update per state change.

use std::collections::{BTreeMap, BTreeSet};

use super::{Progress, ProgressEvent, ServiceState};
use crate::unit::notify;

pub(crate) struct UnitStatus {
    states: BTreeMap<String, ServiceState>,
    ready: bool,
    stopping: bool,
}

impl UnitStatus {
    pub(crate) fn new(selected: &BTreeSet<String>) -> UnitStatus {
        UnitStatus {
            states: selected
                .iter()
                .map(|s| (s.clone(), ServiceState::Pending))
                .collect(),
            ready: false,
            stopping: false,
        }
    }

    /// Hears one progress line; says what changed, under a unit.
    pub(crate) fn progress(&mut self, p: &Progress) {
        if let Some(line) = self.hear(p) {
            if notify::under_unit() {
                notify::notify(&line);
            }
        }
    }

    /// The notification `p` makes, if any.
    fn hear(&mut self, p: &Progress) -> Option<String> {
        match p.event {
            ProgressEvent::State => {
                let (service, state) = (p.service.as_ref()?, p.state?);
                self.states.insert(service.clone(), state);
                let status = match state {
                    _ if self.stopping => self.stopping_line(),
                    ServiceState::Restarting | ServiceState::Failed | ServiceState::Waiting => {
                        format!("{service} {}: {}", state.as_str(), p.message)
                    }
                    _ => self.ready_line(),
                };
                Some(format!("STATUS={}", one_line(&status)))
            }
            ProgressEvent::Ready | ProgressEvent::Degraded => {
                self.ready = true;
                let mut status = self.ready_line();
                if p.event == ProgressEvent::Degraded {
                    status = format!("{status} ({})", p.message);
                }
                Some(format!("READY=1\nSTATUS={}", one_line(&status)))
            }
            ProgressEvent::Stopping => {
                self.stopping = true;
                Some(format!("STOPPING=1\nSTATUS={}", self.stopping_line()))
            }
            ProgressEvent::Stopped => Some("STATUS=stopped".into()),
            ProgressEvent::Error => Some(format!("STATUS={}", one_line(&p.message))),
            ProgressEvent::Plan => Some(format!("STATUS=starting {}", one_line(&p.message))),
            ProgressEvent::Warning => None,
        }
    }

    fn ready_line(&self) -> String {
        let up = self
            .states
            .values()
            .filter(|s| matches!(s, ServiceState::Running | ServiceState::Exited))
            .count();
        let total = self.states.len();
        match self.ready {
            true => format!("{up}/{total} services ready"),
            false => format!("starting: {up}/{total} services ready"),
        }
    }

    fn stopping_line(&self) -> String {
        let left = self
            .states
            .values()
            .filter(|s| {
                !matches!(
                    s,
                    ServiceState::Stopped
                        | ServiceState::Exited
                        | ServiceState::Failed
                        | ServiceState::Pending
                )
            })
            .count();
        format!("stopping: {left} left")
    }
}

/// A status is one line.
fn one_line(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(event: ProgressEvent, service: Option<&str>, state: Option<ServiceState>) -> Progress {
        Progress {
            event,
            service: service.map(String::from),
            state,
            message: "restarting in 2 s".into(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn ready_once_the_stack_is_then_what_each_change_means() {
        let selected: BTreeSet<String> = ["db", "web"].map(String::from).into();
        let mut u = UnitStatus::new(&selected);
        let state =
            |u: &mut UnitStatus, s, st| u.hear(&line(ProgressEvent::State, Some(s), Some(st)));
        assert_eq!(
            state(&mut u, "db", ServiceState::Running).unwrap(),
            "STATUS=starting: 1/2 services ready"
        );
        state(&mut u, "web", ServiceState::Running);
        assert_eq!(
            u.hear(&line(ProgressEvent::Ready, None, None)).unwrap(),
            "READY=1\nSTATUS=2/2 services ready"
        );
        assert_eq!(
            state(&mut u, "web", ServiceState::Restarting).unwrap(),
            "STATUS=web restarting: restarting in 2 s"
        );
        assert_eq!(
            u.hear(&line(ProgressEvent::Stopping, None, None)).unwrap(),
            "STOPPING=1\nSTATUS=stopping: 2 left"
        );
        assert_eq!(
            state(&mut u, "db", ServiceState::Stopped).unwrap(),
            "STATUS=stopping: 1 left"
        );
    }
}
