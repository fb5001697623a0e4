//! The client: one bollard connection, version negotiated, pinged once. Exits are learned
//! from the Engine (its wait and event endpoints), never by polling.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding, PortMap, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::lines::LineSplitter;
use super::{
    ContainerEvent, ContainerInfo, ContainerSpec, ContainerStats, DockerError, LABEL_PROJECT,
    LogStream, PUBLISH_ADDRESS, Piece, PortMapping, PullPolicy, Selector, StopOutcome,
};
use crate::proc::{ProcFs, ProcessIdentity, describe_io};

/// Where the daemon listens when DOCKER_HOST says nothing.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// How long connecting (version negotiation and ping) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// bollard's bound on one request's answer (headers; streams run on). Pulling an image or
/// creating a container can take a while on a busy daemon.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How far back the read after a follow looks for entries the follow missed.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long a SIGKILLed container may take to be reported dead.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// A connected Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
}

impl Engine {
    /// Connects to `DOCKER_HOST`, else unix:///var/run/docker.sock; negotiates the API
    /// version and pings. No daemon there is [`DockerError::Unreachable`].
    pub async fn connect() -> Result<Engine, DockerError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Engine::connect_to(&host).await
    }

    /// Connects to `host` (`unix:///path`, `tcp://host:port`), as [`Engine::connect`].
    pub async fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let unreachable = |reason: String| DockerError::Unreachable {
            socket: host.to_string(),
            reason,
        };
        let docker = match host {
            h if h.starts_with("unix://") => {
                Docker::connect_with_unix(h, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            h if h.starts_with("tcp://") || h.starts_with("http://") => {
                Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            _ => {
                return Err(unreachable(
                    "only unix:// and tcp:// addresses are supported".into(),
                ));
            }
        }
        .map_err(|e| unreachable(reason(&e)))?;
        let connected = async {
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok::<_, BollardError>(docker)
        };
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(reason(&e))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(Engine {
            docker,
            socket: host.to_string(),
        })
    }

    /// The address connected to, e.g. `unix:///var/run/docker.sock`.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The daemon's API version, and whether the daemon runs rootless.
    pub async fn version(&self) -> Result<(String, bool), DockerError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| api("ask the docker daemon its version", &e))?;
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| api("ask the docker daemon about itself", &e))?;
        let rootless = info
            .security_options
            .iter()
            .flatten()
            .any(|o| is_rootless_option(o));
        let api_version = version
            .api_version
            .unwrap_or_else(|| self.docker.client_version().to_string());
        Ok((api_version, rootless))
    }

    /// Makes sure `image` is there, pulling it as `pull` says.
    pub async fn ensure_image(&self, image: &str, pull: PullPolicy) -> Result<(), DockerError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if status(&e) == Some(404) => false,
            Err(e) => return Err(api(&format!("look up image {image}"), &e)),
        };
        match (pull, present) {
            (PullPolicy::Missing, true) | (PullPolicy::Never, true) => Ok(()),
            (PullPolicy::Never, false) => Err(DockerError::ImageMissing {
                image: image.to_string(),
                reason: "it is not on this host and the service says pull = \"never\"".into(),
            }),
            (PullPolicy::Missing, false) | (PullPolicy::Always, _) => self.pull(image).await,
        }
    }

    async fn pull(&self, image: &str) -> Result<(), DockerError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                return Err(DockerError::ImageMissing {
                    image: image.to_string(),
                    reason: format!("pulling it failed: {}", reason(&e)),
                });
            }
        }
        Ok(())
    }

    /// Creates and starts the container; its state and the host identity of its PID 1, for
    /// the supervisor. A stopped container of ours holding the name is removed first; one
    /// not ours is [`DockerError::NameTaken`]. One that exits before its PID 1 is seen is
    /// [`DockerError::Exited`] (and left, for its logs).
    pub async fn run(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(ContainerInfo, ProcessIdentity), DockerError> {
        let id = match self.create(spec).await {
            Err(e) if status(&e) == Some(409) => {
                self.clear_name(spec).await?;
                self.create(spec).await
            }
            other => other,
        }
        .map_err(|e| api(&format!("create container {}", spec.name), &e))?;
        if let Err(e) = self.docker.start_container(&id, None).await {
            // Created but never started (a port taken, a bind missing): nothing to keep.
            let _ = self.remove(&id).await;
            return Err(api(&format!("start container {}", spec.name), &e));
        }
        let info = self.inspect(&id).await?.ok_or_else(|| DockerError::Api {
            action: format!("start container {}", spec.name),
            reason: "it was removed as soon as it started".into(),
        })?;
        let Some(pid) = info.pid else {
            return Err(DockerError::Exited {
                id: info.id,
                name: info.name,
                exit_code: info.exit_code.unwrap_or(-1),
            });
        };
        let identity = ProcFs::default().identity(pid).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DockerError::Exited {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    exit_code: -1,
                }
            } else {
                DockerError::Identity {
                    id: info.id.clone(),
                    pid,
                    reason: describe_io(&e),
                }
            }
        })?;
        Ok((info, identity))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, BollardError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), create_body(spec))
            .await?;
        Ok(created.id)
    }

    /// The name is taken: a stopped container of the same service of ours goes; anything
    /// else is the user's to sort out.
    async fn clear_name(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let Some(holder) = self.inspect(&spec.name).await? else {
            return Ok(()); // gone in between: the retry will tell
        };
        let ours = holder.project() == Some(spec.project.as_str())
            && holder.service() == Some(spec.service.as_str());
        if !ours {
            return Err(DockerError::NameTaken {
                name: spec.name.clone(),
                id: short(&holder.id),
                why: format!(
                    "image {}, not ccscope's container for service {} of project {}",
                    holder.image, spec.service, spec.project
                ),
            });
        }
        if holder.is_running() {
            return Err(DockerError::NameTaken {
                name: spec.name.clone(),
                id: short(&holder.id),
                why: "ccscope's own, still running from an earlier run; `ccscope stop` ends it"
                    .into(),
            });
        }
        self.remove(&holder.id).await
    }

    /// The container by id or name; `None` when there is none.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, DockerError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(info_of(c))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(api(&format!("inspect container {id}"), &e)),
        }
    }

    /// The selected containers, in every state.
    pub async fn list(&self, which: Selector<'_>) -> Result<Vec<ContainerInfo>, DockerError> {
        let filters = which.filters();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| api("list containers", &e))?;
        // The summary lacks the pid, start time and exit code: inspect each (a stack has few).
        let ids: Vec<String> = summaries.into_iter().filter_map(|s| s.id).collect();
        let inspected = futures_util::future::join_all(ids.iter().map(|id| self.inspect(id))).await;
        let mut out = Vec::new();
        for info in inspected {
            // One removed between the list and its inspection is simply gone.
            if let Some(info) = info? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sends `signal`, gives the container up to `timeout` to exit, then SIGKILLs it. The
    /// exit is the Engine's wait (condition not-running, so one that exits before the wait
    /// is asked is seen too).
    pub async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<StopOutcome, DockerError> {
        let started = Instant::now();
        let action = format!("stop container {id}");
        match self.inspect(id).await? {
            // A paused container's processes are frozen: they would act on no signal but
            // SIGKILL, and the whole timeout would pass. (Docker unpauses for the image's own
            // stop signal, not for another.) One that will not unpause is signalled anyway.
            Some(c) if c.state == "paused" => {
                if signal != libc::SIGKILL {
                    if let Err(e) = self.unpause(id).await {
                        tracing::warn!("could not unpause container {id} to stop it: {e}");
                    }
                }
            }
            Some(c) if c.is_running() || c.state == "restarting" => {}
            _ => {
                return Ok(StopOutcome {
                    killed: false,
                    took: started.elapsed(),
                });
            }
        }
        let mut exited = Box::pin(self.wait(id));
        if !self.kill(id, signal).await.map_err(|e| api(&action, &e))? {
            return Ok(StopOutcome {
                killed: false,
                took: started.elapsed(),
            });
        }
        if let Ok(done) = tokio::time::timeout(timeout, &mut exited).await {
            done.map_err(|e| api(&action, &e))?;
            return Ok(StopOutcome {
                killed: false,
                took: started.elapsed(),
            });
        }
        self.kill(id, libc::SIGKILL)
            .await
            .map_err(|e| api(&action, &e))?;
        match tokio::time::timeout(KILL_GRACE, &mut exited).await {
            Ok(done) => done.map_err(|e| api(&action, &e))?,
            Err(_) => {
                return Err(DockerError::Timeout {
                    action: format!("{action} after SIGKILL"),
                    after: KILL_GRACE,
                });
            }
        }
        Ok(StopOutcome {
            killed: true,
            took: started.elapsed(),
        })
    }

    /// Pauses the container: the daemon freezes its cgroup. One paused already is fine.
    pub async fn pause(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.pause_container(id).await {
            Ok(()) => Ok(()),
            // Docker answers 409 or, before 23.0, 500 for these.
            Err(e) if reason(&e).contains("is already paused") => Ok(()),
            Err(e) => Err(api(&format!("pause container {id}"), &e)),
        }
    }

    /// Unpauses the container. One not paused is fine.
    pub async fn unpause(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.unpause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if reason(&e).contains("is not paused") => Ok(()),
            Err(e) => Err(api(&format!("unpause container {id}"), &e)),
        }
    }

    /// Sends a signal; false when the container is no longer running (or gone).
    async fn kill(&self, id: &str, signal: i32) -> Result<bool, BollardError> {
        let options = KillContainerOptionsBuilder::new()
            .signal(&signal.to_string())
            .build();
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Resolves once the container is not running (or gone).
    async fn wait(&self, id: &str) -> Result<(), BollardError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(id, Some(options));
        match stream.next().await {
            // bollard turns a non-zero exit code into an error: an exit all the same.
            None | Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) if status(&e) == Some(404) => Ok(()),
            Some(Err(e)) => Err(e),
        }
    }

    /// Removes the container (forced; its anonymous volumes stay). A container already gone
    /// is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            // Already being removed (by docker or another stop): gone soon, not our failure.
            Err(e) if status(&e) == Some(409) && reason(&e).contains("already in progress") => {
                Ok(())
            }
            Err(e) => Err(api(&format!("remove container {id}"), &e)),
        }
    }

    /// Events of containers labelled ccscope.project=<project>, as they happen: deaths
    /// (with the exit code), health changes and starts.
    pub fn events(
        &self,
        project: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + 'static {
        self.events_since(project, None)
    }

    /// As [`Engine::events`], also those since `since` (the daemon keeps recent events):
    /// subscribed from just before a `run`, nothing between the two is missed.
    pub fn events_since(
        &self,
        project: &str,
        since: Option<SystemTime>,
    ) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_PROJECT}={project}")],
            ),
            (
                "event".to_string(),
                vec!["die".into(), "start".into(), "health_status".into()],
            ),
        ]);
        let mut options = EventsOptionsBuilder::new().filters(&filters);
        if let Some(since) = since {
            let at = since.duration_since(UNIX_EPOCH).unwrap_or_default();
            options = options.since(&format!("{}.{:09}", at.as_secs(), at.subsec_nanos()));
        }
        let options = options.build();
        self.docker
            .events(Some(options))
            .map_err(|e| api("follow the docker daemon's events", &e))
            .try_filter_map(|m| async move {
                let id = m.actor.as_ref().and_then(|a| a.id.clone());
                let attributes = m.actor.and_then(|a| a.attributes).unwrap_or_default();
                Ok(id.and_then(|id| event_of(id, m.action.as_deref()?, &attributes)))
            })
    }

    /// Follows stdout and stderr from the container's start: each line (without its
    /// newline; a longer line in pieces of at most
    /// [`MAX_LINE`](crate::launch::forward::MAX_LINE) bytes, marked as continued) with its
    /// stream. Ends when the container stops.
    pub fn logs(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<(LogStream, Piece), DockerError>> + Send + 'static {
        self.logs_since(id, None)
    }

    /// As [`Engine::logs`], from `since` on (an adopted container's earlier output is not
    /// sent again).
    ///
    /// The Engine can close a follow as the container exits before its last entries are
    /// read (the copier writes a final partial line only at exit): when the follow ends,
    /// the last seconds are read once more and what comes after the last entry seen is
    /// sent too. Entries are matched by their timestamps, which are stripped.
    pub fn logs_since(
        &self,
        id: &str,
        since: Option<SystemTime>,
    ) -> impl Stream<Item = Result<(LogStream, Piece), DockerError>> + Send + 'static {
        let mut options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail("all");
        if let Some(since) = since {
            options = options.since(epoch_secs(since));
        }
        let action = format!("follow the output of container {id}");
        // The last timestamp seen on each stream (stdout, stderr): each stream is copied in
        // order, but the two are not ordered between them.
        let last_seen: Arc<Mutex<[Option<String>; 2]>> = Arc::default();
        let seen = Arc::clone(&last_seen);
        let follow = self
            .docker
            .logs(id, Some(options.build()))
            .map(move |frame| {
                let frame = frame.map(untimestamp);
                if let Ok((Some(ts), f)) = &frame {
                    if let Ok(mut last) = seen.lock() {
                        last[stream_slot(f)] = Some(ts.clone());
                    }
                }
                frame.map(|(_, f)| f)
            });
        let docker = self.docker.clone();
        let id_after = id.to_string();
        let catch_up = futures_util::stream::once(async move {
            let after = last_seen.lock().map(|l| l.clone()).unwrap_or_default();
            let recent = SystemTime::now()
                .checked_sub(CATCH_UP)
                .unwrap_or(UNIX_EPOCH);
            let options = LogsOptionsBuilder::new()
                .follow(false)
                .stdout(true)
                .stderr(true)
                .timestamps(true)
                .since(epoch_secs(recent))
                .build();
            docker
                .logs(&id_after, Some(options))
                // Best effort: a container removed meanwhile has nothing more to say.
                .filter_map(move |frame| {
                    let after = after.clone();
                    async move {
                        let (ts, frame) = untimestamp(frame.ok()?);
                        match (ts, &after[stream_slot(&frame)]) {
                            (Some(ts), Some(after)) if ts <= *after => None,
                            _ => Some(Ok(frame)),
                        }
                    }
                })
        })
        .flatten();
        let frames = follow
            .chain(catch_up)
            .map(Some)
            .chain(futures_util::stream::iter([None]));
        let mut splitter = LineSplitter::new();
        frames
            .map(
                move |frame| -> Vec<Result<(LogStream, Piece), DockerError>> {
                    match frame {
                        Some(Ok(bollard::container::LogOutput::StdErr { message })) => splitter
                            .push(LogStream::Stderr, &message)
                            .into_iter()
                            .map(Ok)
                            .collect(),
                        Some(Ok(
                            bollard::container::LogOutput::StdOut { message }
                            | bollard::container::LogOutput::Console { message },
                        )) => splitter
                            .push(LogStream::Stdout, &message)
                            .into_iter()
                            .map(Ok)
                            .collect(),
                        Some(Ok(bollard::container::LogOutput::StdIn { .. })) => Vec::new(),
                        Some(Err(e)) => {
                            let mut out: Vec<_> = splitter.finish().into_iter().map(Ok).collect();
                            out.push(Err(api(&action, &e)));
                            out
                        }
                        None => splitter.finish().into_iter().map(Ok).collect(),
                    }
                },
            )
            .flat_map(futures_util::stream::iter)
    }

    /// Runs `argv` in the container; its exit code. Longer than `timeout` is
    /// [`DockerError::Timeout`] (the command is left to end by itself: the Engine cannot
    /// signal an exec).
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<i64, DockerError> {
        let action = format!("run `{}` in container {id}", argv.join(" "));
        let work = async {
            let created = self
                .docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(argv.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
            // Attached, the output ends when the command does: that is the exit, unpolled.
            // The output itself is drained and dropped, so it costs no memory.
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&created.id, Some(StartExecOptions::default()))
                .await?
            {
                while let Some(chunk) = output.next().await {
                    chunk?;
                }
            }
            let done = self.docker.inspect_exec(&created.id).await?;
            Ok::<_, BollardError>(done.exit_code)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(Some(code))) => Ok(code),
            Ok(Ok(None)) => Err(DockerError::Api {
                action,
                reason: "the daemon reported no exit code".into(),
            }),
            Ok(Err(e)) => Err(api(&action, &e)),
            Err(_) => Err(DockerError::Timeout {
                action,
                after: timeout,
            }),
        }
    }

    /// One sample of its CPU time and memory (memory as `docker stats` counts it: without
    /// the inactive page cache).
    pub async fn stats(&self, id: &str) -> Result<ContainerStats, DockerError> {
        let action = format!("read the resource use of container {id}");
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let sample = self
            .docker
            .stats(id, Some(options))
            .next()
            .await
            .ok_or_else(|| DockerError::Api {
                action: action.clone(),
                reason: "the daemon sent no sample".into(),
            })?
            .map_err(|e| api(&action, &e))?;
        let cpu_ns = sample
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let memory_bytes = sample.memory_stats.map_or(0, |m| {
            let inactive = m
                .stats
                .as_ref()
                .and_then(|s| {
                    s.get("inactive_file")
                        .or_else(|| s.get("total_inactive_file"))
                })
                .copied()
                .unwrap_or(0);
            m.usage.unwrap_or(0).saturating_sub(inactive)
        });
        Ok(ContainerStats {
            cpu_ns,
            memory_bytes,
        })
    }
}

/// The Engine's create body for `spec`: ports on [`PUBLISH_ADDRESS`], Docker's restart
/// policy `no` (restarts are ccscope's).
fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut bindings: PortMap = HashMap::new();
    for p in &spec.ports {
        bindings
            .entry(format!("{}/tcp", p.container))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(PUBLISH_ADDRESS.to_string()),
                host_port: Some(p.host.to_string()),
            });
    }
    let mut exposed: Vec<String> = bindings.keys().cloned().collect();
    exposed.sort();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            network_mode: spec.network.clone(),
            init: Some(spec.init),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn info_of(c: ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let running = state.running == Some(true);
    let health = state
        .health
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none");
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let ports = ports_of(c.host_config.and_then(|h| h.port_bindings));
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.or(c.image).unwrap_or_default(),
        state: status,
        health,
        labels,
        ports,
        pid: state
            .pid
            .filter(|p| running && *p > 0)
            .and_then(|p| i32::try_from(p).ok()),
        started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
        exit_code: if running { None } else { state.exit_code },
        restart_count: c.restart_count.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
    }
}

/// TCP bindings as host:container pairs, each once (docker lists IPv4 and IPv6 apart).
fn ports_of(map: Option<PortMap>) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for (key, bindings) in map.unwrap_or_default() {
        let Some(container) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        for b in bindings.into_iter().flatten() {
            if let Some(host) = b.host_port.and_then(|p| p.parse::<u16>().ok()) {
                let m = PortMapping { host, container };
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out.sort_by_key(|m| (m.host, m.container));
    out
}

/// One event of the stream, if it is one we report.
fn event_of(
    id: String,
    action: &str,
    attributes: &HashMap<String, String>,
) -> Option<ContainerEvent> {
    if action == "die" {
        let exit_code = attributes
            .get("exitCode")
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        return Some(ContainerEvent::Died { id, exit_code });
    }
    if action == "start" {
        return Some(ContainerEvent::Started { id });
    }
    // "health_status: healthy" (the status after the colon).
    let status = action.strip_prefix("health_status")?;
    let status = status.trim_start_matches(':').trim();
    Some(ContainerEvent::Health {
        id,
        status: status.to_string(),
    })
}

/// Which stream's last timestamp an entry updates: 0 stdout (and a tty), 1 stderr.
fn stream_slot(frame: &bollard::container::LogOutput) -> usize {
    usize::from(matches!(
        frame,
        bollard::container::LogOutput::StdErr { .. }
    ))
}

/// Seconds since the epoch, as the logs endpoint's `since` takes them.
fn epoch_secs(t: SystemTime) -> i32 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Splits the Engine's `2026-12-01T20:05:01.12345Z ` prefix off an entry: the timestamp in
/// a form that sorts as it should (the fraction padded to nine digits), and the entry.
fn untimestamp(
    frame: bollard::container::LogOutput,
) -> (Option<String>, bollard::container::LogOutput) {
    use bollard::container::LogOutput;
    let (message, rebuild): (&bytes::Bytes, fn(bytes::Bytes) -> LogOutput) = match &frame {
        LogOutput::StdOut { message } => (message, |m| LogOutput::StdOut { message: m }),
        LogOutput::StdErr { message } => (message, |m| LogOutput::StdErr { message: m }),
        LogOutput::Console { message } => (message, |m| LogOutput::Console { message: m }),
        LogOutput::StdIn { message } => (message, |m| LogOutput::StdIn { message: m }),
    };
    let Some(space) = message.iter().position(|&b| b == b' ') else {
        return (None, frame);
    };
    let Some(key) = std::str::from_utf8(&message[..space])
        .ok()
        .and_then(sortable_timestamp)
    else {
        return (None, frame);
    };
    let rest = message.slice(space + 1..);
    (Some(key), rebuild(rest))
}

/// `2026-12-01T20:05:01.12345Z` → `2026-12-01T20:05:01.123450000`; not a timestamp → None.
fn sortable_timestamp(ts: &str) -> Option<String> {
    let ts = ts.strip_suffix('Z')?;
    let (whole, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    let looks_right = whole.len() == 19
        && whole.as_bytes().get(10) == Some(&b'T')
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit());
    looks_right.then(|| format!("{whole}.{fraction:0<9}"))
}

/// `name=rootless` among the daemon's security options.
fn is_rootless_option(option: &str) -> bool {
    option.split(',').any(|kv| kv == "name=rootless")
}

/// The HTTP status of an answer from the daemon, if the error is one.
fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What went wrong, in words: the daemon's own message, or the I/O error at the bottom of
/// the chain (with its errno named), never a bare Debug.
fn reason(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => return message.clone(),
        BollardError::SocketNotFoundError(path) => return format!("no socket at {path}"),
        BollardError::RequestTimeoutError => {
            return format!("no answer within {REQUEST_TIMEOUT_SECS}s");
        }
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        source = s.source();
    }
    e.to_string()
}

fn api(action: &str, e: &BollardError) -> DockerError {
    DockerError::Api {
        action: action.to_string(),
        reason: reason(e),
    }
}

/// Docker's short id (12 hex digits), as `docker ps` shows it.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DockerSpec;
    use crate::docker::LABEL_SERVICE;

    #[test]
    fn the_create_body_publishes_on_loopback_with_no_docker_restarts() {
        let docker = DockerSpec {
            image: "img".into(),
            command: Some(vec!["sleep".into(), "9".into()]),
            entrypoint: None,
            name: None,
            ports: vec![
                PortMapping {
                    host: 18123,
                    container: 8123,
                },
                PortMapping {
                    host: 19000,
                    container: 9000,
                },
            ],
            env: BTreeMap::from([("A".into(), "1".into())]),
            volumes: vec!["/srv:/data:ro".into()],
            labels: BTreeMap::new(),
            network: Some("net".into()),
            workdir: Some("/w".into()),
            user: Some("1000:1000".into()),
            init: true,
            pull: PullPolicy::Missing,
        };
        let spec = ContainerSpec::of("p", "s", &docker, "r");
        let body = create_body(&spec);
        let host = body.host_config.clone().unwrap();
        let b = &host.port_bindings.clone().unwrap()["8123/tcp"];
        assert_eq!(
            b.as_ref().unwrap()[0],
            PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("18123".into())
            }
        );
        assert_eq!(
            body.exposed_ports.clone().unwrap(),
            ["8123/tcp", "9000/tcp"]
        );
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(host.init, Some(true));
        assert_eq!(host.binds.unwrap(), ["/srv:/data:ro"]);
        assert_eq!(host.network_mode.as_deref(), Some("net"));
        assert_eq!(body.env.unwrap(), ["A=1"]);
        assert_eq!(body.labels.unwrap()[LABEL_SERVICE], "s");
        assert_eq!(ports_of(host.port_bindings).len(), 2);
    }

    #[test]
    fn events_are_read_from_their_action() {
        let attrs = HashMap::from([("exitCode".to_string(), "137".to_string())]);
        assert_eq!(
            event_of("a".into(), "die", &attrs),
            Some(ContainerEvent::Died {
                id: "a".into(),
                exit_code: 137
            })
        );
        assert_eq!(
            event_of("a".into(), "health_status: healthy", &HashMap::new()),
            Some(ContainerEvent::Health {
                id: "a".into(),
                status: "healthy".into()
            })
        );
        assert_eq!(
            event_of("a".into(), "start", &HashMap::new()),
            Some(ContainerEvent::Started { id: "a".into() })
        );
        assert_eq!(event_of("a".into(), "attach", &HashMap::new()), None);
    }

    #[test]
    fn log_timestamps_are_split_off_and_sort_as_times() {
        use bollard::container::LogOutput;
        let frame = LogOutput::StdOut {
            message: bytes::Bytes::from_static(b"2026-12-01T20:05:01.12345Z hello world\n"),
        };
        let (ts, rest) = untimestamp(frame);
        assert_eq!(ts.as_deref(), Some("2026-12-01T20:05:01.123450000"));
        assert_eq!(rest.into_bytes().as_ref(), b"hello world\n");
        // Nine digits sort after five that are smaller, whatever their length.
        assert!(
            sortable_timestamp("2026-12-01T20:05:01.9Z").unwrap()
                > sortable_timestamp("2026-12-01T20:05:01.123456789Z").unwrap()
        );
        assert_eq!(
            sortable_timestamp("2026-12-01T20:05:01Z").as_deref(),
            Some("2026-12-01T20:05:01.000000000")
        );
        let plain = LogOutput::StdErr {
            message: bytes::Bytes::from_static(b"no stamp here"),
        };
        let (ts, rest) = untimestamp(plain);
        assert_eq!(ts, None);
        assert_eq!(rest.into_bytes().as_ref(), b"no stamp here");
    }

    #[test]
    fn rootless_is_read_from_the_security_options() {
        assert!(is_rootless_option("name=rootless"));
        assert!(!is_rootless_option("name=seccomp,profile=builtin"));
        assert!(!is_rootless_option("name=rootlessish"));
    }

    #[test]
    fn ports_are_listed_once_per_pair() {
        let map: PortMap = HashMap::from([
            (
                "80/tcp".to_string(),
                Some(vec![
                    PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("8080".into()),
                    },
                    PortBinding {
                        host_ip: Some("::".into()),
                        host_port: Some("8080".into()),
                    },
                ]),
            ),
            ("53/udp".to_string(), None),
        ]);
        assert_eq!(
            ports_of(Some(map)),
            [PortMapping {
                host: 8080,
                container: 80
            }]
        );
    }
}
