//! A containment that contains nothing, for unit tests of what drives one (youki's
//! `TestManager`): it records what it was asked, and answers what the test set up.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use super::{BackendKind, ContainError, Containment, LimitReport, ScopeHandle, ScopeSpec};

/// One request the fake was sent, by scope (its service name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Signal(String, i32),
    Kill(String),
    Release(String),
    Freeze(String, bool),
}

/// How a fake scope behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// It empties as soon as it gets its stop signal.
    HonoursStop,
    /// It ignores the stop signal; a kill empties it.
    IgnoresStop,
    /// Nothing empties it (a process stuck in uninterruptible sleep).
    Wedged,
}

pub struct FakeContainment {
    pub kind: BackendKind,
    behaviour: RefCell<Vec<(String, Behaviour)>>,
    emptied: RefCell<BTreeSet<String>>,
    calls: RefCell<Vec<Call>>,
    /// The services whose scopes are frozen now.
    frozen: RefCell<BTreeSet<String>>,
    /// Stop signals sent while frozen, acted on at the thaw.
    pending: RefCell<BTreeSet<String>>,
    /// A thaw fails (and the scope stays frozen).
    pub thaw_fails: bool,
}

impl FakeContainment {
    pub fn new(kind: BackendKind) -> FakeContainment {
        FakeContainment {
            kind,
            behaviour: RefCell::default(),
            emptied: RefCell::default(),
            calls: RefCell::default(),
            frozen: RefCell::default(),
            pending: RefCell::default(),
            thaw_fails: false,
        }
    }

    /// A scope of `service` that behaves so.
    pub fn scope(&self, service: &str, behaviour: Behaviour) -> ScopeHandle {
        self.behaviour
            .borrow_mut()
            .push((service.to_string(), behaviour));
        ScopeHandle {
            backend: self.kind,
            project: "fake".into(),
            service: service.to_string(),
            instance: None,
            unit: None,
            cgroup: None,
            pgid: None,
            run_id: None,
        }
    }

    /// Freezes `scope` behind the caller's back (as `systemctl freeze` would).
    pub fn set_frozen(&self, scope: &ScopeHandle) {
        self.frozen.borrow_mut().insert(scope.service.clone());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn behaviour(&self, scope: &ScopeHandle) -> Behaviour {
        self.behaviour
            .borrow()
            .iter()
            .find(|(s, _)| *s == scope.service)
            .map_or(Behaviour::Wedged, |(_, b)| *b)
    }
}

impl Containment for FakeContainment {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    async fn place(
        &self,
        _spec: &ScopeSpec<'_>,
        _pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError> {
        Err(ContainError::Refused("the fake places nothing".into()))
    }

    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError> {
        Ok(match self.emptied.borrow().contains(&scope.service) {
            true => Vec::new(),
            false => vec![1],
        })
    }

    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError> {
        self.calls
            .borrow_mut()
            .push(Call::Signal(scope.service.clone(), signal));
        if self.behaviour(scope) == Behaviour::HonoursStop {
            // A frozen process acts on its signal only once thawed, as the kernel has it.
            match self.frozen.borrow().contains(&scope.service) {
                true => self.pending.borrow_mut().insert(scope.service.clone()),
                false => self.emptied.borrow_mut().insert(scope.service.clone()),
            };
        }
        Ok(1)
    }

    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        self.calls
            .borrow_mut()
            .push(Call::Kill(scope.service.clone()));
        if self.behaviour(scope) != Behaviour::Wedged {
            self.emptied.borrow_mut().insert(scope.service.clone());
        }
        Ok(())
    }

    /// Empty at once if it is; otherwise the whole deadline passes (on the test's clock).
    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError> {
        if self.emptied.borrow().contains(&scope.service) {
            return Ok(true);
        }
        tokio::time::sleep(deadline).await;
        Ok(self.emptied.borrow().contains(&scope.service))
    }

    async fn release(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        self.calls
            .borrow_mut()
            .push(Call::Release(scope.service.clone()));
        Ok(())
    }

    async fn adopt(&self, _scope: &ScopeHandle, _pid: i32) -> Result<(), ContainError> {
        Err(ContainError::Refused("the fake adopts nothing".into()))
    }

    async fn freeze(&self, scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError> {
        self.calls
            .borrow_mut()
            .push(Call::Freeze(scope.service.clone(), frozen));
        if self.thaw_fails && !frozen {
            return Err(ContainError::Refused("the fake will not thaw".into()));
        }
        let mut set = self.frozen.borrow_mut();
        match frozen {
            true => set.insert(scope.service.clone()),
            false => set.remove(&scope.service),
        };
        if !frozen && self.pending.borrow_mut().remove(&scope.service) {
            self.emptied.borrow_mut().insert(scope.service.clone());
        }
        Ok(())
    }

    async fn is_frozen(&self, scope: &ScopeHandle) -> Result<bool, ContainError> {
        Ok(self.frozen.borrow().contains(&scope.service))
    }

    async fn list(&self, _project: &str) -> Result<Vec<ScopeHandle>, ContainError> {
        Ok(Vec::new())
    }
}
