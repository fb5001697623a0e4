//! What to create, built from a service's [`DockerSpec`]: the name, the labels and the
//! definition hash that tells whether a running container still matches its configuration.

use std::collections::BTreeMap;

use crate::config::{DockerSpec, PortMapping, PullPolicy};

/// Everything the Engine is asked to create, with ccscope's labels already in `labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub project: String,
    pub service: String,
    pub run_id: String,
    pub name: String,
    pub image: String,
    /// [`definition_hash`] of the service's DockerSpec.
    pub definition: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub init: bool,
    pub pull: PullPolicy,
    /// The user's labels plus `ccscope.project`, `.service`, `.run_id`, `.definition`.
    pub labels: BTreeMap<String, String>,
}

impl ContainerSpec {
    /// The container for `service` of `project` in run `run_id`.
    pub fn of(project: &str, service: &str, spec: &DockerSpec, run_id: &str) -> ContainerSpec {
        let _ = (project, service, spec, run_id);
        unimplemented!()
    }
}

/// A stable hash (hex) of everything that defines the container — image, command,
/// entrypoint, env, ports, volumes, network, workdir, user, init, the user's labels — and
/// nothing of the run: equal across runs for an unchanged definition.
pub fn definition_hash(spec: &DockerSpec) -> String {
    let _ = spec;
    unimplemented!()
}

/// `text` in docker's container-name charset (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): any other
/// character becomes `-`, and a name not starting with a letter or digit gets an `x` first.
pub fn sanitize_name(text: &str) -> String {
    let _ = text;
    unimplemented!()
}
