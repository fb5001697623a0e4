//! The shape of ccscope.toml as serde reads it: every field optional and spanned, so that
//! validation can point at the exact line and column of what is wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::duration::HumanDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub project: Option<Spanned<RawProject>>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, Spanned<RawService>>,
    /// `[redirects.<exe>]` (see `redirects.rs`).
    #[serde(default)]
    pub redirects: super::redirects::RawRedirects,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    pub name: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub docker_compose_projects: Option<Spanned<Vec<Spanned<String>>>>,
    pub alerts: Option<Spanned<RawAlerts>>,
}

/// `[project.alerts]`: how a failure is told (a desktop notification, a command), and how
/// often.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    pub desktop: Option<bool>,
    pub exec: Option<Spanned<Vec<Spanned<String>>>>,
    pub rate_limit: Option<Spanned<HumanDuration>>,
}

/// Project-wide defaults for every per-service setting that makes sense to share.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub cwd: Option<Spanned<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub env_file: Option<Spanned<OneOrMany>>,
    pub ready: Option<RawProbeTiming>,
    pub liveness: Option<RawProbeTiming>,
    pub restart: Option<Spanned<RawRestartSpec>>,
    pub stop_signal: Option<Spanned<RawSignal>>,
    pub stop_timeout: Option<Spanned<HumanDuration>>,
    pub limits: Option<RawLimits>,
    pub optional: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub command: Option<Spanned<Vec<String>>>,
    pub shell: Option<Spanned<String>>,
    pub cwd: Option<Spanned<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub env_file: Option<Spanned<OneOrMany>>,
    pub depends_on: Option<Spanned<RawDependsOn>>,
    pub ready: Option<Spanned<RawProbe>>,
    pub liveness: Option<Spanned<RawProbe>>,
    pub restart: Option<Spanned<RawRestartSpec>>,
    pub stop_signal: Option<Spanned<RawSignal>>,
    pub stop_timeout: Option<Spanned<HumanDuration>>,
    pub ports: Option<Vec<Spanned<i64>>>,
    pub discover: Option<RawDiscover>,
    pub limits: Option<RawLimits>,
    pub optional: Option<bool>,
    pub docker: Option<Spanned<RawDocker>>,
    pub watch: Option<Spanned<RawWatch>>,
}

/// Probe timing, shared by `ready` and `liveness`, and all that `[defaults.ready]` may set.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbeTiming {
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    pub start_timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub tcp: Option<Spanned<RawTcpTarget>>,
    pub http: Option<Spanned<String>>,
    pub status: Option<Spanned<u16>>,
    pub exec: Option<Spanned<Vec<String>>>,
    pub notify: Option<Spanned<bool>>,
    pub log: Option<Spanned<String>>,
    /// `docker = "healthy"`: the container's own HEALTHCHECK.
    pub docker: Option<Spanned<String>>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    pub start_timeout: Option<HumanDuration>,
}

impl RawProbe {
    pub fn timing(&self) -> RawProbeTiming {
        RawProbeTiming {
            interval: self.interval,
            timeout: self.timeout,
            retries: self.retries,
            start_timeout: self.start_timeout,
        }
    }
}

/// `tcp = 8110` (a port on 127.0.0.1) or `tcp = "host:port"`.
#[derive(Debug, Clone)]
pub(crate) enum RawTcpTarget {
    Port(i64),
    Address(String),
}

impl<'de> Deserialize<'de> for RawTcpTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawTcpTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or \"host:port\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTcpTarget, E> {
                Ok(RawTcpTarget::Port(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTcpTarget, E> {
                Ok(RawTcpTarget::Address(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on = ["a", "b"]` or `depends_on = { a = "healthy", b = { condition = "started",
/// restart = true } }`.
#[derive(Debug)]
pub(crate) enum RawDependsOn {
    List(Vec<Spanned<String>>),
    Table(Vec<(Spanned<String>, Spanned<RawDependency>)>),
}

/// One entry of the table form: a condition alone, or the long form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawDependency {
    pub condition: Option<RawCondition>,
    pub restart: bool,
}

/// The long form `{ condition = "healthy", restart = true }`: compose's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependencyTable {
    condition: Option<RawCondition>,
    restart: Option<bool>,
}

impl<'de> Deserialize<'de> for RawDependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDependency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a condition such as \"healthy\", or a table with `condition` and `restart`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDependency, E> {
                let condition = RawCondition::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RawDependency {
                    condition: Some(condition),
                    restart: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDependency, A::Error> {
                let t =
                    RawDependencyTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawDependency {
                    condition: t.condition,
                    restart: t.restart.unwrap_or(false),
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawCondition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl<'de> Deserialize<'de> for RawDependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDependsOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of service names, or a table of service name = condition")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawDependsOn, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(RawDependsOn::List(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDependsOn, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key()? {
                    entries.push((name, map.next_value()?));
                }
                Ok(RawDependsOn::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// `watch = { paths = ["src/**/*.py"], ignore = ["**/__pycache__/**"], debounce = "500ms" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWatch {
    pub paths: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    pub debounce: Option<Spanned<HumanDuration>>,
}

/// `restart = "on-failure"` or a table with the policy and its backoff.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub policy: Option<RawRestartPolicy>,
    pub initial_backoff: Option<HumanDuration>,
    pub max_backoff: Option<HumanDuration>,
    pub max_restarts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawRestartPolicy {
    No,
    OnFailure,
    Always,
}

impl RawRestart {
    fn from_policy_name<E: de::Error>(v: &str) -> Result<Self, E> {
        let policy = RawRestartPolicy::deserialize(de::value::StrDeserializer::<E>::new(v))?;
        Ok(RawRestart {
            policy: Some(policy),
            ..RawRestart::default()
        })
    }
}

// The derive above reads the table form; this wrapper adds the string shorthand.
#[derive(Debug, Clone)]
pub(crate) struct RawRestartSpec(pub RawRestart);

impl<'de> Deserialize<'de> for RawRestartSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRestartSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"no\", \"on-failure\", \"always\", or a table with `policy`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRestartSpec, E> {
                RawRestart::from_policy_name(v).map(RawRestartSpec)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRestartSpec, A::Error> {
                RawRestart::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawRestartSpec)
            }
        }
        d.deserialize_any(V)
    }
}

/// A stop signal: `"SIGTERM"`, `"TERM"`, or a number.
#[derive(Debug, Clone)]
pub(crate) enum RawSignal {
    Name(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for RawSignal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSignal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name such as \"SIGTERM\", or its number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSignal, E> {
                Ok(RawSignal::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSignal, E> {
                Ok(RawSignal::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `env_file = ".env"` or `env_file = [".env", ".env.local"]`.
#[derive(Debug, Clone)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or an array of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(p) = seq.next_element()? {
                    all.push(p);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscover {
    #[serde(default)]
    pub cmdline: Vec<Spanned<String>>,
    #[serde(default)]
    pub exe: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory: Option<Spanned<RawSize>>,
    pub tasks: Option<Spanned<i64>>,
    pub cpu: Option<Spanned<String>>,
}

/// A memory size: bytes as an integer, or a string with a unit (`512M`, `2G`).
#[derive(Debug, Clone)]
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512M\" or \"2G\", or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDocker {
    pub image: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub entrypoint: Option<Spanned<Vec<String>>>,
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<RawPortMapping>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub network: Option<Spanned<String>>,
    pub workdir: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub init: Option<bool>,
    pub pull: Option<Spanned<String>>,
}

/// `8123` (same port on both sides) or `"18123:8123"` (host:container).
#[derive(Debug, Clone)]
pub(crate) enum RawPortMapping {
    Same(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPortMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPortMapping;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or \"host:container\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPortMapping, E> {
                Ok(RawPortMapping::Same(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPortMapping, E> {
                Ok(RawPortMapping::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
