//! The driver's side of the verbs: a client's request read off the control socket is checked,
//! audited with who asked, and handed to the machine; a reload reads the configuration
//! again first; a freeze is carried out on the instance's cgroup or container; the reply goes
//! back to the connection that asked (if it is still there: a client that hung up does not
//! stop a request half-way).

use std::rc::Rc;

use tokio::sync::oneshot;

use crate::audit::{Event as AuditEvent, Priority};
use crate::config::{Config, Launch};
use crate::contain::Containment;
use crate::control::{Reply, Request};

use super::{Actor, Driver, Input, Report, Verb};

impl Driver<'_> {
    /// Turns a client's request into the machine's input; a request that cannot be taken is
    /// answered at once.
    pub(super) fn request(
        &mut self,
        request: Request,
        actor: Actor,
        reply: oneshot::Sender<Reply>,
    ) -> Option<Input> {
        let verb = request.verb();
        let services = request.services().to_vec();
        AuditEvent {
            event: "control.request",
            project: &self.config.project.name,
            service: None,
            message: format!(
                "{verb} {} asked by {}",
                if services.is_empty() {
                    "(all)".to_string()
                } else {
                    services.join(" ")
                },
                actor.describe()
            ),
            fields: vec![
                ("CCSCOPE_VERB", verb.to_string()),
                ("CCSCOPE_SERVICES", services.join(" ")),
                ("CCSCOPE_ACTOR_UID", actor.uid.to_string()),
                ("CCSCOPE_ACTOR_PID", actor.pid.to_string()),
                ("CCSCOPE_ACTOR_COMM", actor.comm.clone()),
                ("CCSCOPE_ACTOR_CMDLINE", actor.cmdline.clone()),
                ("CCSCOPE_RUN_ID", self.run_id.clone()),
            ],
        }
        .record(Priority::Notice);
        if let Some(why) = request.invalid() {
            let _ = reply.send(self.signed(Reply::refused(verb, "invalid", why, None)));
            return None;
        }
        // Refused before anything changes, in the backend's own words.
        let pausing = matches!(request, Request::Pause { .. });
        if (pausing || matches!(request, Request::Resume { .. }))
            && self.containment.kind() == crate::contain::BackendKind::Pgroup
        {
            let why = crate::contain::cannot_freeze(pausing).to_string();
            let _ = reply.send(self.signed(Reply::refused(verb, "unsupported", why, None)));
            return None;
        }
        self.next_request += 1;
        let id = self.next_request;
        // A start may add a service the run left out: its watch begins with it.
        self.rewatch = true;
        self.replies.insert(id, reply);
        let actor = actor.describe();
        let verb = match request {
            Request::Start { .. } => Verb::Start,
            Request::Stop { .. } => Verb::Stop,
            Request::Restart { all: true, .. } => Verb::RestartAll,
            Request::Restart { .. } => Verb::Restart,
            Request::Pause { .. } => Verb::Pause,
            Request::Resume { .. } => Verb::Resume,
            Request::Reload { dry_run } => return self.reload(Some(id), dry_run, actor),
        };
        Some(Input::Request {
            id,
            verb,
            services,
            actor,
        })
    }

    /// Reads the configuration again, as `run` read it. One with errors is refused with its
    /// located errors (and, from SIGHUP, said as a warning); nothing changes.
    pub(super) fn reload(
        &mut self,
        id: Option<u64>,
        dry_run: bool,
        actor: String,
    ) -> Option<Input> {
        let refuse = |this: &mut Self, kind: &str, message: String, hint: Option<String>| {
            match id.and_then(|id| this.replies.remove(&id)) {
                Some(reply) => {
                    let _ = reply.send(this.signed(Reply::refused("reload", kind, message, hint)));
                }
                None => tracing::warn!("reload (SIGHUP) refused: {message}"),
            }
            None
        };
        let config = match crate::config::load(&self.options.config_request, &self.options.cwd) {
            Ok(config) => config,
            Err(e) => {
                let hint = e.hint().unwrap_or_else(|| {
                    "fix the configuration and reload again: the stack runs on unchanged".into()
                });
                return refuse(
                    self,
                    "config",
                    format!("the configuration has errors; nothing was changed:\n{e}"),
                    Some(hint),
                );
            }
        };
        if config.project.name != self.config.project.name {
            return refuse(
                self,
                "config",
                format!(
                    "the project's name changed from `{}` to `{}`: a reload cannot rename a running stack; nothing was changed",
                    self.config.project.name, config.project.name
                ),
                Some("`ccscope stop`, then `ccscope run` with the new name".into()),
            );
        }
        let services = config.services.clone();
        self.reloaded.insert(id, Rc::new(config));
        // Under a unit: `reloading` in `systemctl status` until the new one is applied; a
        // reload while the stack still starts leaves the start's own READY=1 to come.
        if !dry_run && crate::unit::notify::was_ready() {
            crate::unit::notify::notify("RELOADING=1\nSTATUS=reloading the configuration");
        }
        Some(Input::Reload {
            id,
            services,
            dry_run,
            actor,
        })
    }

    /// The reply with this supervisor's pid on it.
    pub(super) fn signed(&self, mut reply: Reply) -> Reply {
        reply.supervisor_pid = std::process::id() as i32;
        reply
    }

    pub(super) fn send_reply(&mut self, id: u64, reply: Reply) {
        let reply = self.signed(reply);
        if let Some(to) = self.replies.remove(&id) {
            // A client that hung up is not told; what it asked for is done all the same.
            let _ = to.send(reply);
        }
    }

    /// A reload was applied: launches use its configuration from now on. The Engine is
    /// connected if it brought the first container service.
    pub(super) async fn config_applied(&mut self, id: Option<u64>) {
        let Some(config) = self.reloaded.remove(&id) else {
            return;
        };
        self.reloaded.clear();
        match crate::unit::notify::was_ready() {
            true => crate::unit::notify::notify("READY=1\nSTATUS=configuration reloaded"),
            false => crate::unit::notify::status("starting: configuration reloaded"),
        }
        let containers = config
            .services
            .values()
            .any(|s| matches!(s.launch, Launch::Docker(_)));
        if containers && self.docker.is_none() {
            let docker = super::container::connect(&config.project.name).await;
            let tx = self.tx.clone();
            docker.watch_events(move |input| tx.send(Report::Input(input)).is_ok());
            self.docker = Some(docker);
        }
        if let Err(e) = self
            .registry
            .set_run_config_hash(&self.run_id, &super::super::config_hash(&config))
        {
            tracing::warn!("could not record the reloaded configuration's hash: {e}");
        }
        // `[project.alerts]` edited: alerts go as the file now says (a fresh rate limit).
        if config.project.alerts != self.config.project.alerts {
            self.alerter = crate::audit::alert::Alerter::new(
                &config.project.alerts,
                Rc::new(self.reaper.clone()),
            );
        }
        self.config = config;
    }

    /// The service left the configuration and its last instance is over.
    pub(super) fn removed(&mut self, service: &str) {
        self.instances.remove(service);
        let _ = self
            .registry
            .clear_service_states_of(&self.config.project.name, &[service.to_string()]);
    }

    /// Freezes or thaws the instance: its cgroup through the backend, a container through
    /// the Engine. Answered with [`Input::Frozen`].
    pub(super) fn freeze(&mut self, service: String, generation: u64, frozen: bool) {
        let Some(instance) = self
            .instances
            .get_mut(&service)
            .filter(|i| i.generation == generation)
        else {
            let _ = self.tx.send(Report::Input(Input::Frozen {
                service,
                generation,
                frozen,
                result: Err("its instance has ended".into()),
            }));
            return;
        };
        instance.frozen = frozen;
        let scope = instance.scope.clone();
        let container = instance.container.as_ref().map(|c| c.id.clone());
        let docker = self.docker.clone();
        let containment = self.containment.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_local(async move {
            let result = match (container, docker, scope) {
                (Some(id), Some(docker), _) => docker.pause(&id, frozen).await,
                (_, _, Some(scope)) => containment
                    .freeze(&scope, frozen)
                    .await
                    .map_err(|e| e.to_string()),
                _ => Err("it has neither a scope nor a container".into()),
            };
            let _ = tx.send(Report::Input(Input::Frozen {
                service,
                generation,
                frozen,
                result,
            }));
        });
    }
}

impl Driver<'_> {
    /// Watches the files of every service of the stack that has `watch` (and no others): a
    /// service added or given a new `watch` is watched from now, one removed no more. The
    /// state directory is never watched.
    pub(super) fn sync_watches(&mut self, machine: &super::Machine) {
        let wanted: std::collections::BTreeMap<String, crate::config::WatchSpec> = self
            .config
            .services
            .iter()
            .filter(|(name, _)| machine.service(name).is_some())
            .filter_map(|(name, s)| Some((name.clone(), s.watch.clone()?)))
            .collect();
        self.watches
            .retain(|name, (spec, _)| wanted.get(name) == Some(spec));
        for (name, spec) in wanted {
            if self.watches.contains_key(&name) {
                continue;
            }
            let tx = self.tx.clone();
            let service = name.clone();
            let never = [self.options.state_dir.clone()];
            let started = crate::watch::Watcher::start(&spec, &never, move |change| {
                let _ = tx.send(Report::Input(Input::FilesChanged {
                    service: service.clone(),
                    path: change.path.display().to_string(),
                }));
            });
            match started {
                Ok(watcher) => {
                    self.watches.insert(name, (spec, watcher));
                }
                Err(e) => tracing::warn!("the files of `{name}` are not watched: {e}"),
            }
        }
    }
}

/// The configuration of a service as the instance was launched with it, else the current one.
pub(super) fn instance_cfg(
    config: &Config,
    instance: Option<&super::Instance>,
    name: &str,
) -> Option<Rc<crate::config::Service>> {
    instance
        .and_then(|i| i.cfg.clone())
        .or_else(|| config.services.get(name).cloned().map(Rc::new))
}
