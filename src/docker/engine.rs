//! The client: one bollard connection, version negotiated, pinged once.

use std::time::Duration;

use futures_util::Stream;

use super::{
    ContainerEvent, ContainerInfo, ContainerSpec, ContainerStats, DockerError, LogStream,
    PullPolicy, Selector, StopOutcome,
};
use crate::proc::ProcessIdentity;

/// A connected Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    #[expect(dead_code, reason = "the API is committed before its bodies")]
    docker: bollard::Docker,
    socket: String,
}

impl Engine {
    /// Connects to `DOCKER_HOST`, else unix:///var/run/docker.sock; negotiates the API
    /// version and pings. No daemon there is [`DockerError::Unreachable`].
    pub async fn connect() -> Result<Engine, DockerError> {
        unimplemented!()
    }

    /// Connects to `host` (`unix:///path`, `tcp://host:port`), as [`Engine::connect`].
    pub async fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let _ = host;
        unimplemented!()
    }

    /// The address connected to, e.g. `unix:///var/run/docker.sock`.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The negotiated API version, and whether the daemon runs rootless.
    pub async fn version(&self) -> Result<(String, bool), DockerError> {
        unimplemented!()
    }

    /// Makes sure `image` is there, pulling it as `pull` says.
    pub async fn ensure_image(&self, image: &str, pull: PullPolicy) -> Result<(), DockerError> {
        let _ = (image, pull);
        unimplemented!()
    }

    /// Creates and starts the container; its state and the host identity of its PID 1, for
    /// the supervisor. A stopped container of ours holding the name is removed first; one
    /// not ours is [`DockerError::NameTaken`].
    pub async fn run(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(ContainerInfo, ProcessIdentity), DockerError> {
        let _ = spec;
        unimplemented!()
    }

    /// The container by id or name; `None` when there is none.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, DockerError> {
        let _ = id;
        unimplemented!()
    }

    /// The selected containers, in every state.
    pub async fn list(&self, which: Selector<'_>) -> Result<Vec<ContainerInfo>, DockerError> {
        let _ = which;
        unimplemented!()
    }

    /// Sends `signal`, gives the container up to `timeout` to exit, then SIGKILLs it.
    pub async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<StopOutcome, DockerError> {
        let _ = (id, signal, timeout);
        unimplemented!()
    }

    /// Removes the container (forced; its anonymous volumes stay). A container already gone
    /// is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let _ = id;
        unimplemented!()
    }

    /// Events of containers labelled ccscope.project=<project>, as they happen.
    pub fn events(
        &self,
        project: &str,
    ) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + 'static {
        let _ = project;
        futures_util::stream::empty()
    }

    /// Follows stdout and stderr from the container's start: each line (without its
    /// newline; a longer line in pieces of at most [`super::MAX_LOG_LINE`] bytes) with its
    /// stream.
    pub fn logs(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<(LogStream, Vec<u8>), DockerError>> + Send + 'static {
        let _ = id;
        futures_util::stream::empty()
    }

    /// Runs `argv` in the container; its exit code. Longer than `timeout` is
    /// [`DockerError::Timeout`].
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<i64, DockerError> {
        let _ = (id, argv, timeout);
        unimplemented!()
    }

    /// One sample of its CPU time and memory.
    pub async fn stats(&self, id: &str) -> Result<ContainerStats, DockerError> {
        let _ = id;
        unimplemented!()
    }
}
