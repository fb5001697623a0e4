//! What to create, built from a service's [`DockerSpec`]: the name, the labels and the
//! definition hash that tells whether a running container still matches its configuration.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{LABEL_DEFINITION, LABEL_PROJECT, LABEL_RUN_ID, LABEL_SERVICE};
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
        let definition = definition_hash(spec);
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| sanitize_name(&format!("ccscope-{project}-{service}")));
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_PROJECT.into(), project.into());
        labels.insert(LABEL_SERVICE.into(), service.into());
        labels.insert(LABEL_RUN_ID.into(), run_id.into());
        labels.insert(LABEL_DEFINITION.into(), definition.clone());
        ContainerSpec {
            project: project.into(),
            service: service.into(),
            run_id: run_id.into(),
            name,
            image: spec.image.clone(),
            definition,
            command: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: spec.env.clone(),
            ports: spec.ports.clone(),
            volumes: spec.volumes.clone(),
            network: spec.network.clone(),
            workdir: spec.workdir.clone(),
            user: spec.user.clone(),
            init: spec.init,
            pull: spec.pull,
            labels,
        }
    }
}

/// What the hash covers, in a fixed order: serde_json writes struct fields in declaration
/// order and BTreeMaps sorted, so equal definitions give equal bytes.
#[derive(Serialize)]
struct Canonical<'a> {
    version: u32,
    image: &'a str,
    command: &'a Option<Vec<String>>,
    entrypoint: &'a Option<Vec<String>>,
    env: &'a BTreeMap<String, String>,
    ports: Vec<(u16, u16)>,
    volumes: &'a [String],
    network: &'a Option<String>,
    workdir: &'a Option<String>,
    user: &'a Option<String>,
    init: bool,
    labels: &'a BTreeMap<String, String>,
}

/// A stable hash (hex) of everything that defines the container — image, command,
/// entrypoint, env, ports, volumes, network, workdir, user, init, the user's labels — and
/// nothing of the run: equal across runs for an unchanged definition. FNV-1a (64 bits) over
/// a canonical JSON: it tells definitions apart, it is not a defence against anyone.
pub fn definition_hash(spec: &DockerSpec) -> String {
    let canonical = Canonical {
        version: 1,
        image: &spec.image,
        command: &spec.command,
        entrypoint: &spec.entrypoint,
        env: &spec.env,
        ports: spec.ports.iter().map(|p| (p.host, p.container)).collect(),
        volumes: &spec.volumes,
        network: &spec.network,
        workdir: &spec.workdir,
        user: &spec.user,
        init: spec.init,
        labels: &spec.labels,
    };
    // Serialising plain strings, numbers and maps with string keys cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    format!("{:016x}", fnv1a(&bytes))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The longest container name we make (docker takes more; a name is for people).
const MAX_NAME: usize = 128;

/// `text` in docker's container-name charset (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): any other
/// character becomes `-`, and a name not starting with a letter or digit gets an `x` first.
pub fn sanitize_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'x');
    }
    if name.len() < 2 {
        name.push('x');
    }
    name.truncate(MAX_NAME);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DockerSpec {
        DockerSpec {
            image: "clickhouse/clickhouse-server:24.3".into(),
            command: None,
            entrypoint: None,
            name: None,
            ports: vec![PortMapping {
                host: 18123,
                container: 8123,
            }],
            env: BTreeMap::from([("A".into(), "1".into())]),
            volumes: vec!["/srv/data:/var/lib/clickhouse".into()],
            labels: BTreeMap::from([("team".into(), "db".into())]),
            network: None,
            workdir: None,
            user: None,
            init: true,
            pull: PullPolicy::Missing,
        }
    }

    #[test]
    fn the_spec_carries_our_labels_and_the_default_name() {
        let c = ContainerSpec::of("stack", "clickhouse", &spec(), "run-1");
        assert_eq!(c.name, "ccscope-stack-clickhouse");
        assert_eq!(c.labels[LABEL_PROJECT], "stack");
        assert_eq!(c.labels[LABEL_SERVICE], "clickhouse");
        assert_eq!(c.labels[LABEL_RUN_ID], "run-1");
        assert_eq!(c.labels[LABEL_DEFINITION], c.definition);
        assert_eq!(c.labels["team"], "db");
        assert!(c.init);
    }

    #[test]
    fn a_given_name_is_kept() {
        let mut s = spec();
        s.name = Some("clickhouse-otel".into());
        assert_eq!(ContainerSpec::of("p", "s", &s, "r").name, "clickhouse-otel");
    }

    #[test]
    fn the_definition_hash_ignores_the_run_and_sees_every_option() {
        let base = ContainerSpec::of("p", "s", &spec(), "run-1").definition;
        assert_eq!(
            base,
            ContainerSpec::of("p", "s", &spec(), "run-2").definition
        );
        assert_eq!(base, definition_hash(&spec()), "stable across calls");
        assert_eq!(base.len(), 16);
        let changes: Vec<fn(&mut DockerSpec)> = vec![
            |s| s.image.push('x'),
            |s| s.command = Some(vec!["sh".into()]),
            |s| s.entrypoint = Some(vec!["/init".into()]),
            |s| {
                s.env.insert("B".into(), "2".into());
            },
            |s| s.ports[0].host = 18124,
            |s| s.volumes.push("v:/v".into()),
            |s| s.network = Some("net".into()),
            |s| s.workdir = Some("/w".into()),
            |s| s.user = Some("1000".into()),
            |s| s.init = false,
            |s| {
                s.labels.insert("x".into(), "y".into());
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let mut s = spec();
            change(&mut s);
            assert_ne!(definition_hash(&s), base, "change {i} is not seen");
        }
        // The pull policy and the name say how to get the container, not what it is.
        let mut s = spec();
        s.pull = PullPolicy::Always;
        assert_eq!(definition_hash(&s), base);
    }

    #[test]
    fn names_are_sanitised_to_dockers_charset() {
        assert_eq!(sanitize_name("ccscope-a-b"), "ccscope-a-b");
        assert_eq!(sanitize_name("a b/c:d"), "a-b-c-d");
        assert_eq!(sanitize_name("_x"), "x_x");
        assert_eq!(sanitize_name("é"), "x-");
        assert_eq!(sanitize_name(""), "xx");
        assert_eq!(sanitize_name(&"a".repeat(300)).len(), MAX_NAME);
    }
}
