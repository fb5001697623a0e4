//! The machine's side of the verbs a client asks a running supervisor for: `start`, `stop`,
//! `restart`, `pause`, `resume` of single services, `reload` of the configuration, and the
//! restart a watched file's change asks for. Each request becomes targets (a service that must
//! be up again, down, gone, frozen or thawed), and is answered once every target has settled,
//! or one has failed, or the stack began to stop.
//!
//! Services are ended on request through one drain: what depends on a service in the drain
//! ends before it does, and what becomes of each (held stopped, started again, removed) is
//! decided once it has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::config::Service;
use crate::control::{Reply, ReplyError, ServiceChange};

use super::{Effect, Machine, Phase, State, Svc, TimerKind};

/// A verb on services, as the machine takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    /// `restart --all`.
    RestartAll,
    Pause,
    Resume,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart | Verb::RestartAll => "restart",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
        }
    }
}

/// What becomes of a service once the drain has ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Held stopped until a `start`.
    Held,
    /// Started again (a restart).
    Restart,
    /// Gone from the stack (a reload removed it).
    Remove,
}

#[derive(Debug, Clone)]
pub(super) struct Drain {
    pub(super) after: After,
    /// Said when it is stopped: `asked by …`, `src/app.py changed`.
    pub(super) why: String,
}

/// What a request waits for of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Ready (or completed) in an instance newer than `since`.
    Up { since: u64 },
    /// No instance, held stopped.
    Down,
    /// Not in the stack any more.
    Gone,
    /// Its freeze (or thaw) is done: settled by [`Machine::frozen`].
    Frozen,
    /// Nothing to wait for.
    Nothing,
}

#[derive(Debug, Clone)]
struct Target {
    service: String,
    action: &'static str,
    why: String,
    want: Want,
    /// Settled: Ok, or what went wrong.
    settled: Option<Result<(), String>>,
    /// What a person should know even when it went well.
    note: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct PendingRequest {
    id: Option<u64>,
    verb: &'static str,
    began: Instant,
    targets: Vec<Target>,
    /// Said in the reply's message when it went well.
    summary: String,
}

impl Target {
    fn new(service: &str, action: &'static str, why: impl Into<String>, want: Want) -> Target {
        Target {
            service: service.to_string(),
            action,
            why: why.into(),
            want,
            settled: (want == Want::Nothing).then_some(Ok(())),
            note: None,
        }
    }

    fn noting(mut self, note: impl Into<String>) -> Target {
        self.note = Some(note.into());
        self
    }
}

/// A stable fingerprint of one service's definition: a reload restarts what it changed.
pub(super) fn definition_hash(service: &Service) -> u64 {
    let bytes = serde_json::to_vec(service).unwrap_or_default();
    crate::control::fnv1a(&bytes)
}

impl Machine {
    /// Whether a failure of `name` now fails the run's start (and stops the stack).
    pub(super) fn aborts_start(&self, name: &str) -> bool {
        self.phase == Phase::Starting
            && self
                .services
                .get(name)
                .is_some_and(|s| !s.cfg.optional && !s.requested)
    }

    pub(super) fn request(
        &mut self,
        now: Instant,
        id: u64,
        verb: Verb,
        names: Vec<String>,
        actor: &str,
    ) {
        if let Some(reply) = self.refusal(verb.as_str(), &names) {
            self.emit(Effect::Reply { id, reply });
            return;
        }
        let who = format!("asked by {actor}");
        let (targets, summary) = match verb {
            Verb::Start => self.start_services(now, &names, &who),
            Verb::Stop => self.stop_services(now, &names, &who),
            Verb::Restart => self.restart_services(now, &names, &who),
            Verb::RestartAll => {
                let all: Vec<String> = self.services.keys().cloned().collect();
                self.restart_services(now, &all, &who)
            }
            Verb::Pause => self.pause_services(now, &names, &who),
            Verb::Resume => self.resume_services(now, &names, &who),
        };
        self.requests.push(PendingRequest {
            id: Some(id),
            verb: verb.as_str(),
            began: now,
            targets,
            summary,
        });
    }

    /// Why a request is refused before anything changes: the stack is stopping, or a name is
    /// no service of it.
    fn refusal(&self, verb: &str, names: &[String]) -> Option<Reply> {
        if !self.running() {
            return Some(Reply::refused(
                verb,
                "stopping",
                "the stack is being stopped: nothing was changed".into(),
                Some("`ccscope run` starts it again once the stop is done".into()),
            ));
        }
        let unknown = names.iter().find(|n| !self.catalog.contains_key(*n))?;
        let known: Vec<&str> = self.catalog.keys().map(String::as_str).collect();
        let hint = crate::suggest::hint_among(unknown, &known, "services");
        Some(Reply::refused(
            verb,
            "unknown_service",
            format!("`{unknown}` is not a service of this stack; nothing was changed"),
            Some(hint),
        ))
    }

    // ---- start ----------------------------------------------------------------------------

    fn start_services(
        &mut self,
        now: Instant,
        names: &[String],
        who: &str,
    ) -> (Vec<Target>, String) {
        // The services named, and what they need, transitively.
        let mut needed: BTreeMap<String, String> = BTreeMap::new();
        let mut stack: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), "asked".to_string()))
            .collect();
        while let Some((name, why)) = stack.pop() {
            if needed.contains_key(&name) {
                continue;
            }
            if let Some(cfg) = self.catalog.get(&name) {
                for dep in cfg.depends_on.keys() {
                    stack.push((dep.clone(), format!("needed by {name}")));
                }
            }
            needed.insert(name, why);
        }
        let mut targets = Vec::new();
        for (name, why) in needed {
            let asked = why == "asked";
            if !self.services.contains_key(&name) {
                let Some(cfg) = self.catalog.get(&name).cloned() else {
                    continue;
                };
                let mut svc = Svc::new(&name, &cfg, now);
                svc.requested = true;
                self.services.insert(name.clone(), svc);
                self.set_state(now, &name, State::Pending, format!("to be started, {who}"));
                targets.push(Target::new(&name, "started", why, Want::Up { since: 0 }));
                continue;
            }
            let svc = &self.services[&name];
            let generation = svc.generation;
            let up_now = Want::Up {
                since: generation.saturating_sub(1),
            };
            let up_next = Want::Up { since: generation };
            if svc.paused_from.is_some() {
                targets.push(
                    Target::new(&name, "unchanged", why, Want::Nothing)
                        .noting("paused: `ccscope resume` thaws it"),
                );
                continue;
            }
            match svc.state {
                State::Running | State::Starting | State::Launching => {
                    if let Some(drain) = self.draining.get_mut(&name) {
                        // Being stopped by an earlier request: it starts again instead.
                        drain.after = After::Restart;
                        self.svc(&name).held = false;
                        targets.push(Target::new(&name, "started", why, up_next));
                    } else if asked || !self.services[&name].ready {
                        let target = Target::new(&name, "unchanged", why, up_now);
                        targets.push(target.noting("already running"));
                    }
                }
                State::Exited if !asked && self.services[&name].exited_ok => {}
                State::Stopping => {
                    if let Some(drain) = self.draining.get_mut(&name) {
                        drain.after = After::Restart;
                    }
                    self.svc(&name).held = false;
                    targets.push(Target::new(&name, "started", why, up_next));
                }
                State::Pending | State::Waiting => {
                    self.svc(&name).held = false;
                    targets.push(Target::new(&name, "started", why, up_next));
                }
                State::Restarting
                | State::Failed
                | State::Exited
                | State::Stopped
                | State::Paused => {
                    self.disarm(&name);
                    let svc = self.svc(&name);
                    svc.held = false;
                    svc.attempt = 0;
                    svc.requested = true;
                    self.set_state(now, &name, State::Pending, format!("to be started, {who}"));
                    targets.push(Target::new(&name, "started", why, up_next));
                }
            }
        }
        self.start_eligible(now);
        (targets, "started".into())
    }

    // ---- stop -----------------------------------------------------------------------------

    /// The services named and, transitively, each that `edge` links to one already in, with
    /// why (`edge` names the dependency it is linked by, and says how).
    fn closure(
        &self,
        names: &[String],
        edge: impl Fn(&Svc, &dyn Fn(&String) -> bool) -> Option<String>,
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = names
            .iter()
            .filter(|n| self.services.contains_key(*n))
            .map(|n| (n.clone(), "asked".to_string()))
            .collect();
        loop {
            let more: Vec<(String, String)> = self
                .services
                .iter()
                .filter(|(n, _)| !out.contains_key(*n))
                .filter_map(|(n, s)| Some((n.clone(), edge(s, &|d| out.contains_key(d))?)))
                .collect();
            if more.is_empty() {
                return out;
            }
            out.extend(more);
        }
    }

    /// The services named and, transitively, what depends on them.
    fn with_dependents(&self, names: &[String]) -> BTreeMap<String, String> {
        self.closure(names, |s, inside| {
            let dep = s.cfg.depends_on.keys().find(|d| inside(d))?;
            Some(format!("requires {dep}"))
        })
    }

    fn stop_services(
        &mut self,
        now: Instant,
        names: &[String],
        who: &str,
    ) -> (Vec<Target>, String) {
        let mut targets = Vec::new();
        for (name, why) in self.with_dependents(names) {
            let svc = self.svc(&name);
            svc.held = true;
            svc.paused_from = None;
            let ending = svc.scope.is_some() || svc.state == State::Launching;
            if ending {
                self.drain(&name, After::Held, format!("stopped, {who}"));
                targets.push(Target::new(&name, "stopped", why, Want::Down));
            } else if self.services[&name].state == State::Stopped {
                targets.push(
                    Target::new(&name, "unchanged", why, Want::Nothing).noting("already stopped"),
                );
            } else {
                self.disarm(&name);
                self.set_state(now, &name, State::Stopped, format!("stopped, {who}"));
                targets.push(Target::new(&name, "stopped", why, Want::Nothing));
            }
        }
        (targets, "stopped".into())
    }

    // ---- restart --------------------------------------------------------------------------

    /// The services named and, transitively, those that declare `restart = true` on one of
    /// them (and are not held stopped).
    fn with_restart_dependents(&self, names: &[String]) -> BTreeMap<String, String> {
        self.closure(names, |s, inside| {
            let dep = s.cfg.restart_with.iter().find(|d| !s.held && inside(d))?;
            Some(format!("depends on {dep} (restart = true)"))
        })
    }

    fn restart_services(
        &mut self,
        now: Instant,
        names: &[String],
        who: &str,
    ) -> (Vec<Target>, String) {
        let mut targets = Vec::new();
        for (name, why) in self.with_restart_dependents(names) {
            targets.push(self.restart_one(now, &name, why, format!("restarting, {who}")));
        }
        self.start_eligible(now);
        (targets, "restarted".into())
    }

    /// Ends `name`'s instance (if any) and starts it again.
    fn restart_one(&mut self, now: Instant, name: &str, why: String, message: String) -> Target {
        let svc = self.svc(name);
        let since = svc.generation;
        svc.held = false;
        svc.attempt = 0;
        if svc.scope.is_some() || svc.state == State::Launching {
            self.drain(name, After::Restart, message);
        } else {
            self.disarm(name);
            self.svc(name).paused_from = None;
            self.set_state(now, name, State::Pending, message);
        }
        Target::new(name, "restarted", why, Want::Up { since })
    }

    // ---- pause and resume -----------------------------------------------------------------

    /// The services named, or every one when none is.
    fn named_or_all(&self, names: &[String]) -> Vec<String> {
        match names.is_empty() {
            true => self.services.keys().cloned().collect(),
            false => names
                .iter()
                .filter(|n| self.services.contains_key(*n))
                .cloned()
                .collect(),
        }
    }

    fn pause_services(
        &mut self,
        now: Instant,
        names: &[String],
        who: &str,
    ) -> (Vec<Target>, String) {
        let mut targets = Vec::new();
        for name in self.named_or_all(names) {
            let svc = &self.services[&name];
            let state = svc.state;
            let target = if svc.paused_from.is_some() {
                Target::new(&name, "unchanged", "asked", Want::Nothing).noting("already paused")
            } else if self.draining.contains_key(&name) {
                Target::new(&name, "unchanged", "asked", Want::Nothing)
                    .noting("being stopped on request: not paused")
            } else {
                match state {
                    State::Starting | State::Running if svc.scope.is_some() => {
                        let generation = svc.generation;
                        self.disarm(&name);
                        let svc = self.svc(&name);
                        svc.paused_from = Some(state);
                        svc.frozen = true;
                        self.set_state(now, &name, State::Paused, format!("paused, {who}"));
                        self.emit(Effect::Freeze {
                            service: name.clone(),
                            generation,
                            frozen: true,
                        });
                        Target::new(&name, "paused", "asked", Want::Frozen)
                    }
                    // Nothing runs: what holds is its start or its restart timer.
                    State::Pending | State::Waiting | State::Restarting => {
                        self.disarm(&name);
                        self.svc(&name).paused_from = Some(state);
                        self.set_state(now, &name, State::Paused, format!("paused, {who}"));
                        Target::new(&name, "paused", "asked", Want::Nothing).noting(format!(
                            "was {}: it is not started until resumed",
                            state.as_str()
                        ))
                    }
                    _ => Target::new(&name, "unchanged", "asked", Want::Nothing)
                        .noting(format!("{}: nothing to pause", state.as_str())),
                }
            };
            targets.push(target);
        }
        (targets, "paused".into())
    }

    fn resume_services(
        &mut self,
        now: Instant,
        names: &[String],
        who: &str,
    ) -> (Vec<Target>, String) {
        let mut targets = Vec::new();
        for name in self.named_or_all(names) {
            let Some(from) = self.services[&name].paused_from else {
                if !names.is_empty() {
                    targets.push(
                        Target::new(&name, "unchanged", "asked", Want::Nothing)
                            .noting("not paused"),
                    );
                }
                continue;
            };
            let svc = self.svc(&name);
            svc.paused_from = None;
            let want = match svc.frozen && svc.scope.is_some() {
                true => {
                    let generation = svc.generation;
                    svc.frozen = false;
                    self.emit(Effect::Freeze {
                        service: name.clone(),
                        generation,
                        frozen: false,
                    });
                    Want::Frozen
                }
                false => Want::Nothing,
            };
            self.set_state(now, &name, from, format!("resumed, {who}"));
            self.resume_timers(now, &name, from);
            targets.push(Target::new(&name, "resumed", "asked", want));
        }
        self.start_eligible(now);
        (targets, "resumed".into())
    }

    /// What a paused service held starts again: its readiness probe, its liveness ticks, its
    /// restart.
    fn resume_timers(&mut self, now: Instant, name: &str, state: State) {
        match state {
            State::Starting => self.begin_readiness(now, name),
            State::Running => {
                let svc = self.svc(name);
                svc.last_watchdog = now;
                svc.liveness_failures = 0;
                if let Some(probe) = svc.cfg.liveness.clone() {
                    self.arm(name, TimerKind::LivenessTick, now + probe.interval.0);
                }
            }
            State::Restarting => self.arm(name, TimerKind::RestartDue, now),
            _ => {}
        }
    }

    pub(super) fn frozen(
        &mut self,
        now: Instant,
        name: &str,
        generation: u64,
        frozen: bool,
        result: Result<(), String>,
    ) {
        let current = self.current(name, generation).is_some();
        if let (Err(why), true) = (&result, current) {
            let svc = self.svc(name);
            if frozen {
                // The pause did not take: the service runs on as it was.
                svc.frozen = false;
                if let Some(from) = svc.paused_from.take() {
                    self.set_state(now, name, from, format!("could not be paused: {why}"));
                    self.resume_timers(now, name, from);
                }
            } else {
                svc.frozen = true;
                let state = svc.state;
                self.disarm(name);
                self.svc(name).paused_from = Some(state);
                self.set_state(
                    now,
                    name,
                    State::Paused,
                    format!("could not be resumed: {why}"),
                );
            }
        }
        for request in &mut self.requests {
            for target in &mut request.targets {
                if target.service == name && target.want == Want::Frozen && target.settled.is_none()
                {
                    target.settled = Some(result.clone());
                }
            }
        }
    }

    // ---- watched files --------------------------------------------------------------------

    pub(super) fn files_changed(&mut self, now: Instant, name: &str, path: &str) {
        if !self.running() {
            return;
        }
        let Some(svc) = self.services.get(name) else {
            return;
        };
        if svc.held || svc.paused_from.is_some() || self.draining.contains_key(name) {
            return;
        }
        let restartable = matches!(
            svc.state,
            State::Launching | State::Starting | State::Running | State::Failed | State::Exited
        );
        if !restartable {
            return;
        }
        self.svc(name).trigger = Some(path.to_string());
        let why = format!("restarting: {path} changed");
        let mut targets = Vec::new();
        for (service, reason) in self.with_restart_dependents(&[name.to_string()]) {
            targets.push(self.restart_one(now, &service, reason, why.clone()));
        }
        self.start_eligible(now);
        self.requests.push(PendingRequest {
            id: None,
            verb: "watch",
            began: now,
            targets,
            summary: "restarted".into(),
        });
    }

    // ---- reload ---------------------------------------------------------------------------

    pub(super) fn reload(
        &mut self,
        now: Instant,
        id: Option<u64>,
        services: BTreeMap<String, Service>,
        dry_run: bool,
        actor: &str,
    ) {
        if let Some(reply) = self.refusal("reload", &[]) {
            if let Some(id) = id {
                self.emit(Effect::Reply { id, reply });
            }
            return;
        }
        let who = format!("reloaded, asked by {actor}");
        let added: Vec<String> = services
            .keys()
            .filter(|n| !self.catalog.contains_key(*n))
            .cloned()
            .collect();
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|n| !services.contains_key(*n))
            .cloned()
            .collect();
        let changed: Vec<String> = self
            .services
            .iter()
            .filter(|(n, s)| {
                services
                    .get(*n)
                    .is_some_and(|new| definition_hash(new) != definition_hash(&s.cfg))
            })
            .map(|(n, _)| n.clone())
            .collect();
        let mut targets = Vec::new();
        if dry_run {
            for (names, action, why) in [
                (&added, "added", "new in the configuration"),
                (&changed, "changed", "its definition changed"),
                (&removed, "removed", "no longer in the configuration"),
            ] {
                for name in names {
                    targets.push(Target::new(name, action, why, Want::Nothing));
                }
            }
            for name in self.services.keys() {
                if !changed.contains(name) && !removed.contains(name) {
                    targets.push(Target::new(name, "unchanged", "", Want::Nothing));
                }
            }
            self.requests.push(PendingRequest {
                id,
                verb: "reload",
                began: now,
                targets,
                summary: "dry run: nothing was changed".into(),
            });
            return;
        }
        self.catalog = services;
        self.emit(Effect::ConfigApplied { id });
        for name in &changed {
            let cfg = self.catalog[name].clone();
            self.svc(name).cfg = cfg;
        }
        for name in &removed {
            let svc = self.svc(name);
            svc.held = true;
            svc.paused_from = None;
            if svc.scope.is_some() || svc.state == State::Launching {
                self.drain(
                    name,
                    After::Remove,
                    format!("removed from the configuration, {who}"),
                );
            } else {
                self.remove(name);
            }
            targets.push(Target::new(
                name,
                "removed",
                "no longer in the configuration",
                Want::Gone,
            ));
        }
        let restarted: Vec<String> = changed
            .iter()
            .filter(|n| {
                let s = &self.services[*n];
                !s.held && !matches!(s.state, State::Failed | State::Exited)
            })
            .cloned()
            .collect();
        for (name, why) in self.with_restart_dependents(&restarted) {
            let (action, why) = match why.as_str() {
                "asked" => ("changed", "its definition changed".to_string()),
                _ => ("restarted", why),
            };
            let mut target = self.restart_one(now, &name, why, format!("restarting: {who}"));
            target.action = action;
            targets.push(target);
        }
        for name in changed.iter().filter(|n| !restarted.contains(n)) {
            targets.push(
                Target::new(name, "changed", "its definition changed", Want::Nothing)
                    .noting("not running: the new definition is used when it starts"),
            );
        }
        for name in &added {
            let cfg = self.catalog[name].clone();
            let mut svc = Svc::new(name, &cfg, now);
            svc.requested = true;
            self.services.insert(name.clone(), svc);
            self.set_state(now, name, State::Pending, format!("added, {who}"));
            targets.push(Target::new(
                name,
                "added",
                "new in the configuration",
                Want::Up { since: 0 },
            ));
        }
        self.start_eligible(now);
        self.requests.push(PendingRequest {
            id,
            verb: "reload",
            began: now,
            targets,
            summary: "reloaded".into(),
        });
    }

    /// Drops a service that left the configuration and has no instance any more.
    fn remove(&mut self, name: &str) {
        self.disarm(name);
        self.services.remove(name);
        self.emit(Effect::Removed {
            service: name.to_string(),
        });
    }

    // ---- the drain ------------------------------------------------------------------------

    fn drain(&mut self, name: &str, after: After, why: String) {
        self.disarm(name);
        self.draining.insert(name.to_string(), Drain { after, why });
    }

    /// Ends each service of the drain whose dependents in the drain have ended.
    pub(super) fn drain_step(&mut self, now: Instant) {
        if !self.running() {
            return;
        }
        let names: Vec<String> = self.draining.keys().cloned().collect();
        for name in names {
            let Some(svc) = self.services.get(&name) else {
                self.draining.remove(&name);
                continue;
            };
            if svc.state == State::Stopping || svc.end_when_launched {
                continue;
            }
            let blocked = self.draining.keys().any(|other| {
                *other != name
                    && self.services.get(other).is_some_and(|o| {
                        o.cfg.depends_on.contains_key(&name)
                            && (o.scope.is_some() || o.state == State::Launching)
                    })
            });
            if blocked {
                continue;
            }
            let why = self.draining[&name].why.clone();
            if svc.state == State::Launching {
                self.svc(&name).end_when_launched = true;
            } else if svc.scope.is_some() {
                self.disarm(&name);
                self.set_state(now, &name, State::Stopping, why);
                self.end(&name, true);
            } else if let Some(drain) = self.draining.remove(&name) {
                self.after_drain(now, &name, drain);
            }
        }
    }

    /// A service of the drain has ended: held, started again, or removed.
    pub(super) fn after_drain(&mut self, now: Instant, name: &str, drain: Drain) {
        match drain.after {
            After::Held => {
                self.svc(name).held = true;
                self.set_state(now, name, State::Stopped, drain.why);
            }
            After::Restart => {
                let svc = self.svc(name);
                svc.held = false;
                svc.paused_from = None;
                self.set_state(now, name, State::Pending, "stopped; starting again".into());
                self.start_eligible(now);
            }
            After::Remove => self.remove(name),
        }
    }

    // ---- answers --------------------------------------------------------------------------

    /// How a target stands now: None while it is still under way.
    fn evaluate(&self, target: &Target) -> Option<Result<(), String>> {
        if let Some(settled) = &target.settled {
            return Some(settled.clone());
        }
        let svc = self.services.get(&target.service);
        match target.want {
            Want::Nothing => Some(Ok(())),
            Want::Frozen => None,
            Want::Gone => svc.is_none().then_some(Ok(())),
            Want::Down => {
                let Some(svc) = svc else {
                    return Some(Ok(()));
                };
                let ended = svc.scope.is_none()
                    && !matches!(svc.state, State::Launching | State::Stopping)
                    && !self.draining.contains_key(&target.service);
                ended.then_some(Ok(()))
            }
            Want::Up { since } => {
                let Some(svc) = svc else {
                    return Some(Err("it was removed meanwhile".into()));
                };
                if svc.held && svc.state == State::Stopped {
                    return Some(Err("it was stopped meanwhile".into()));
                }
                if let Some(why) = self.blocked_by(svc) {
                    return Some(Err(why));
                }
                if svc.generation <= since {
                    return None;
                }
                match svc.state {
                    State::Running if svc.ready => Some(Ok(())),
                    State::Exited if svc.exited_ok => Some(Ok(())),
                    State::Failed => Some(Err(svc.last_message.clone())),
                    State::Restarting => Some(Err(format!("it ended: {}", svc.last_message))),
                    _ => None,
                }
            }
        }
    }

    /// Why a service that waits to start cannot start now: a dependency is paused, held
    /// stopped, or failed for good (its start would wait for a person, so the request says so
    /// instead of waiting too).
    fn blocked_by(&self, svc: &Svc) -> Option<String> {
        if !matches!(svc.state, State::Pending | State::Waiting) {
            return None;
        }
        svc.cfg.depends_on.keys().find_map(|name| {
            let dep = self.services.get(name)?;
            if dep.paused_from.is_some() {
                Some(format!(
                    "it waits for {name}, which is paused: `ccscope resume {name}` lets it start"
                ))
            } else if dep.held && dep.state == State::Stopped {
                Some(format!(
                    "it waits for {name}, which is stopped: `ccscope start {name}` starts both"
                ))
            } else if dep.state == State::Failed && !dep.cfg.optional {
                Some(format!(
                    "it waits for {name}, which failed: `ccscope start {name}` starts it again"
                ))
            } else {
                None
            }
        })
    }

    /// Answers every request whose targets have all settled, or one of which failed; when the
    /// stack is being stopped, every request still open.
    pub(super) fn answer_settled(&mut self, now: Instant) {
        let stopping = !self.running();
        let mut open = Vec::new();
        for mut request in std::mem::take(&mut self.requests) {
            for i in 0..request.targets.len() {
                if request.targets[i].settled.is_none() {
                    request.targets[i].settled = self.evaluate(&request.targets[i]);
                }
            }
            let failed = request
                .targets
                .iter()
                .any(|t| matches!(t.settled, Some(Err(_))));
            let done = request.targets.iter().all(|t| t.settled.is_some());
            if done || failed || stopping {
                self.answer(now, request, stopping && !done);
            } else {
                open.push(request);
            }
        }
        self.requests.extend(open);
    }

    fn answer(&mut self, now: Instant, request: PendingRequest, cut_short: bool) {
        let elapsed_ms = now.saturating_duration_since(request.began).as_millis() as u64;
        let services: Vec<ServiceChange> = request
            .targets
            .iter()
            .map(|t| {
                let svc = self.services.get(&t.service);
                let message = match &t.settled {
                    Some(Err(why)) => Some(why.clone()),
                    None => Some("not done when the reply was sent".into()),
                    Some(Ok(())) => t.note.clone(),
                };
                ServiceChange {
                    service: t.service.clone(),
                    action: match t.settled {
                        Some(Err(_)) => "failed",
                        _ => t.action,
                    }
                    .to_string(),
                    why: t.why.clone(),
                    state: match (svc, t.action) {
                        (Some(s), _) => s.state.as_str(),
                        (None, "added") => "new",
                        (None, _) => "removed",
                    }
                    .to_string(),
                    pid: svc
                        .filter(|s| s.scope.is_some())
                        .and_then(|s| s.main.map(|m| m.pid)),
                    message,
                }
            })
            .collect();
        let failures: Vec<String> = request
            .targets
            .iter()
            .filter_map(|t| match &t.settled {
                Some(Err(why)) => Some(format!("{}: {why}", t.service)),
                _ => None,
            })
            .collect();
        let acted: BTreeSet<&str> = request
            .targets
            .iter()
            .filter(|t| t.action != "unchanged")
            .map(|t| t.service.as_str())
            .collect();
        let error = if cut_short {
            Some(ReplyError {
                kind: "stopping".into(),
                message: "the stack began to stop before the request was done".into(),
                hint: None,
            })
        } else if !failures.is_empty() {
            Some(ReplyError {
                kind: "failed".into(),
                message: failures.join("; "),
                hint: Some("`ccscope status` shows each service; its output is in the journal (or the log file)".into()),
            })
        } else {
            None
        };
        let message = match &error {
            Some(e) => e.message.clone(),
            None if acted.is_empty() => "nothing to do".into(),
            None => format!(
                "{}: {} ({elapsed_ms} ms)",
                request.summary,
                acted.into_iter().collect::<Vec<_>>().join(", ")
            ),
        };
        let Some(id) = request.id else {
            return;
        };
        let reply = Reply {
            verb: request.verb.to_string(),
            ok: error.is_none(),
            supervisor_pid: 0,
            message,
            services,
            error,
            elapsed_ms,
        };
        self.emit(Effect::Reply { id, reply });
    }
}
