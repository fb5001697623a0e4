//! Docker compose files (`docker-compose.yml`, `compose.yaml`) → container services.
//!
//! Several files merge in order as `docker compose -f a -f b` merges them: a later file's
//! scalars replace, its `environment` and `labels` merge by name, `ports` add up, `volumes`
//! merge by container path, `depends_on` by service, and `command`, `entrypoint` and
//! `healthcheck` replace whole. Every key this does not map is a warning at its own file:line.
//! `${VAR}`, `${VAR:-default}` and `$VAR` are interpolated as compose does (the environment,
//! then the `.env` beside the first file), each said as a warning: the value is now fixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::stack::*;
use super::warning::Warnings;
use super::yaml::{Key, Node, Pos, Value};
use crate::config::duration::parse_duration;

/// One compose service as the files so far describe it.
#[derive(Debug, Default)]
struct ComposeService {
    file: String,
    at: Pos,
    image: Option<String>,
    build: Option<Pos>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    container_name: Option<String>,
    user: Option<String>,
    working_dir: Option<String>,
    init: Option<bool>,
    pull: Option<&'static str>,
    ports: Vec<String>,
    environment: BTreeMap<String, String>,
    volumes: Vec<VolumeOut>,
    labels: BTreeMap<String, String>,
    depends_on: Vec<DependencyOut>,
    /// `Some(None)`: the healthcheck is disabled.
    healthcheck: Option<Option<ProbeOut>>,
    restart: Option<RestartOut>,
    stop_signal: Option<String>,
    stop_grace_period: Option<Duration>,
    /// Named volumes it mounts, with where: resolved once the project name is known.
    named: Vec<(usize, Pos)>,
}

/// What every compose file of one import adds up to.
#[derive(Debug, Default)]
pub(crate) struct ComposeImport {
    services: Vec<(String, ComposeService)>,
    name: Option<String>,
    /// Top-level `volumes`: key → its docker name when `name:` or `external` says so.
    volume_names: BTreeMap<String, VolumeNaming>,
    first_dir: Option<PathBuf>,
    dotenv: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
enum VolumeNaming {
    Explicit(String),
    External,
}

/// Looks like a compose file by its name.
pub(crate) fn is_compose_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    (name.starts_with("docker-compose") || name.starts_with("compose"))
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// Looks like a compose file by its content: top-level `services` whose entries have an
/// `image` or a `build`.
pub(crate) fn looks_like_compose(doc: &Node) -> bool {
    doc.get("services").and_then(Node::as_map).is_some_and(|s| {
        s.iter()
            .any(|(_, v)| v.get("image").is_some() || v.get("build").is_some())
    })
}

struct Reader<'w, 'a> {
    w: &'w mut Warnings<'a>,
    dir: &'w Path,
    env: &'w dyn Fn(&str) -> Option<(String, &'static str)>,
}

impl ComposeImport {
    /// Adds one file (`doc`, read from `path`) to the import.
    pub fn add(
        &mut self,
        doc: &Node,
        path: &Path,
        w: &mut Warnings<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if self.first_dir.is_none() {
            self.first_dir = Some(dir.clone());
            self.dotenv = Some(read_dotenv(&dir));
        }
        let dotenv = self.dotenv.clone().unwrap_or_default();
        let lookup = |k: &str| {
            env(k)
                .map(|v| (v, "from the environment"))
                .or_else(|| dotenv.get(k).map(|v| (v.clone(), "from .env")))
        };
        let mut r = Reader {
            w,
            dir: &dir,
            env: &lookup,
        };
        let Some(top) = doc.as_map() else {
            r.w.at(
                doc.at,
                format!("expected a mapping at the top, found {}", doc.kind()),
            );
            return;
        };
        for (key, value) in top {
            match key.name.as_str() {
                "services" => match value.as_map() {
                    Some(services) => {
                        for (name, service) in services {
                            self.service(&mut r, name, service);
                        }
                    }
                    None => r.w.at(
                        value.at,
                        "`services` is not a mapping: nothing imported from it",
                    ),
                },
                "name" => self.name = r.text(value),
                "volumes" => self.volumes(&mut r, value),
                "version" => r.w.at(
                    key.at,
                    "`version` is obsolete (compose ignores it too): not imported",
                ),
                "networks" => r.w.at(
                    key.at,
                    "`networks` not imported: ccscope creates no networks; its containers run \
                     on docker's default bridge (or one existing `network`), reached through \
                     their ports published on 127.0.0.1",
                ),
                other if other.starts_with("x-") => r.w.at(
                    key.at,
                    format!(
                        "extension `{other}` not imported by itself (what services take from \
                         it through anchors is)"
                    ),
                ),
                other => r.w.at(
                    key.at,
                    format!("`{other}` has no ccscope equivalent: not imported"),
                ),
            }
        }
    }

    fn volumes(&mut self, r: &mut Reader<'_, '_>, value: &Node) {
        let Some(entries) = value.as_map() else {
            return;
        };
        for (key, def) in entries {
            let Some(def) = def.as_map() else {
                continue;
            };
            for (k, v) in def {
                match k.name.as_str() {
                    "name" => {
                        if let Some(n) = r.text(v) {
                            self.volume_names
                                .insert(key.name.clone(), VolumeNaming::Explicit(n));
                        }
                    }
                    "external" => {
                        if matches!(v.value, Value::Bool(true)) {
                            self.volume_names
                                .entry(key.name.clone())
                                .or_insert(VolumeNaming::External);
                        }
                    }
                    other => r.w.at(
                        k.at,
                        format!(
                            "volume `{}`: `{other}` not imported (ccscope lets docker create named \
                             volumes with its defaults)",
                            key.name
                        ),
                    ),
                }
            }
        }
    }

    fn service(&mut self, r: &mut Reader<'_, '_>, name: &Key, node: &Node) {
        let index = match self.services.iter().position(|(n, _)| *n == name.name) {
            Some(i) => i,
            None => {
                self.services.push((
                    name.name.clone(),
                    ComposeService {
                        file: r.w.file.to_string(),
                        at: name.at,
                        ..ComposeService::default()
                    },
                ));
                self.services.len() - 1
            }
        };
        let s = &mut self.services[index].1;
        let Some(entries) = node.as_map() else {
            r.w.at(
                node.at,
                format!("service `{}` is not a mapping: not imported", name.name),
            );
            return;
        };
        for (key, v) in entries {
            let at = key.at;
            match key.name.as_str() {
                "image" => s.image = r.text(v),
                "build" => s.build = Some(at),
                "command" => s.command = r.argv(v),
                "entrypoint" => s.entrypoint = r.argv(v),
                "container_name" => s.container_name = r.text(v),
                "user" => s.user = r.text(v),
                "working_dir" => s.working_dir = r.text(v),
                "init" => match v.value {
                    Value::Bool(b) => s.init = Some(b),
                    _ => r.w.at(
                        v.at,
                        format!("`init` is {}, not a boolean: not imported", v.kind()),
                    ),
                },
                "pull_policy" => {
                    s.pull = match r.text(v).as_deref() {
                        Some("always") => Some("always"),
                        Some("never") => Some("never"),
                        Some("missing" | "if_not_present") => Some("missing"),
                        other => {
                            r.w.at(
                                v.at,
                                format!(
                                    "pull_policy `{}` has no ccscope equivalent (it knows missing, never \
                                     and always): not imported",
                                    other.unwrap_or("?")
                                ),
                            );
                            None
                        }
                    }
                }
                "ports" => r.ports(at, v, &mut s.ports),
                "environment" => r.pairs(v, "environment", &mut s.environment),
                "labels" => r.pairs(v, "labels", &mut s.labels),
                "env_file" => {
                    let files: Vec<&Node> = match &v.value {
                        Value::Seq(items) => items.iter().collect(),
                        _ => vec![v],
                    };
                    for f in files {
                        let shown = f
                            .scalar_text()
                            .or_else(|| f.get("path").and_then(Node::scalar_text))
                            .unwrap_or_default();
                        r.w.at(
                            f.at,
                            format!(
                                "env_file `{shown}` not imported: ccscope passes no env file to a \
                                 container; copy the variables you need into \
                                 [services.{}.docker.env]",
                                name.name
                            ),
                        );
                    }
                }
                "volumes" => r.service_volumes(v, s),
                "depends_on" => r.depends_on(v, &mut s.depends_on),
                "healthcheck" => s.healthcheck = Some(r.healthcheck(v)),
                "restart" => s.restart = r.restart(v),
                "stop_signal" => s.stop_signal = r.signal(v),
                "stop_grace_period" => s.stop_grace_period = r.duration(v),
                "profiles" => {
                    let names: Vec<String> = v
                        .as_seq()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(Node::scalar_text)
                        .collect();
                    r.w.at(
                        at,
                        format!(
                            "profiles [{}] not imported: ccscope has no profiles, so `{}` is part \
                             of the stack (`ccscope run --only` picks services)",
                            names.join(", "),
                            name.name
                        ),
                    );
                }
                "networks" => r.w.at(
                    at,
                    format!(
                        "networks of `{}` not imported: ccscope runs the container on docker's \
                         default bridge (set [services.{}.docker] network to an existing one), \
                         without the compose service-name aliases",
                        name.name, name.name
                    ),
                ),
                "expose" => r.w.at(
                    at,
                    "`expose` not imported: it only documents ports; publish them with `ports`",
                ),
                other => r.w.at(
                    at,
                    format!(
                        "`{other}` of service `{}` has no ccscope equivalent: not imported",
                        name.name
                    ),
                ),
            }
        }
    }

    /// The project name compose would use: `name:`, else the first file's directory.
    pub fn project_name(&self) -> Option<String> {
        self.name.clone().or_else(|| {
            self.first_dir
                .as_ref()
                .and_then(|d| std::path::absolute(d).ok())
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
    }

    /// The services, for compose project `project` (named volumes get its prefix, as compose
    /// names them, so the data the old file kept is the data ccscope mounts).
    pub fn finish(self, project: &str, stack: &mut Stack) {
        stack.compose_projects.push(project.to_string());
        for (name, s) in self.services {
            let Some(image) = s.image.clone() else {
                continue;
            };
            let mut volumes = s.volumes.clone();
            for (i, _) in &s.named {
                if let VolumeSource::Named(key) = &volumes[*i].source {
                    let docker_name = match self.volume_names.get(key) {
                        Some(VolumeNaming::Explicit(n)) => n.clone(),
                        Some(VolumeNaming::External) => key.clone(),
                        None => format!("{project}_{key}"),
                    };
                    volumes[*i].source = VolumeSource::Named(docker_name);
                }
            }
            let docker = DockerOut {
                image,
                command: s.command.clone(),
                entrypoint: s.entrypoint.clone(),
                name: s.container_name.clone(),
                ports: s.ports.clone(),
                env: s.environment.clone(),
                volumes,
                labels: s.labels.clone(),
                workdir: s.working_dir.clone(),
                user: s.user.clone(),
                init: s.init,
                pull: s.pull,
            };
            let mut out = ServiceOut::new(name, &s.file, s.at, LaunchOut::Docker(docker));
            out.depends_on = s.depends_on.clone();
            out.ready = s.healthcheck.clone().flatten();
            out.restart = s.restart.clone();
            out.stop_signal = s.stop_signal.clone();
            out.stop_timeout = s.stop_grace_period;
            if s.build.is_some() {
                out.notes
                    .push("built from source in compose: ccscope runs the image named here".into());
            }
            stack.services.push(out);
        }
    }

    /// Services with a `build` and no `image`: ccscope cannot make them. Said once the
    /// files are merged (a later file may give the image).
    pub fn unbuildable(&self) -> Vec<(String, String, Pos)> {
        self.services
            .iter()
            .filter(|(_, s)| s.image.is_none())
            .map(|(n, s)| (n.clone(), s.file.clone(), s.build.unwrap_or(s.at)))
            .collect()
    }
}

fn read_dotenv(dir: &Path) -> BTreeMap<String, String> {
    crate::config::read_env_file(&dir.join(".env"))
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

impl Reader<'_, '_> {
    /// A scalar as text, interpolated; a list or mapping is a warning.
    fn text(&mut self, v: &Node) -> Option<String> {
        match v.scalar_text() {
            Some(t) => Some(self.interpolate(&t, v.at)),
            None if matches!(v.value, Value::Null) => None,
            None => {
                self.w.at(
                    v.at,
                    format!("expected a single value, found {}: not imported", v.kind()),
                );
                None
            }
        }
    }

    fn interpolate(&mut self, text: &str, at: Pos) -> String {
        if !text.contains('$') {
            return text.to_string();
        }
        let (out, used) = interpolate(text, self.env);
        for (var, how) in used {
            self.w
                .at(at, format!("`${var}` interpolated at import time ({how})"));
        }
        out
    }

    /// `command` / `entrypoint`: a list, or a string split as compose splits it (no shell).
    fn argv(&mut self, v: &Node) -> Option<Vec<String>> {
        match &v.value {
            Value::Seq(items) => {
                let argv: Vec<String> = items.iter().filter_map(|i| self.text(i)).collect();
                (!argv.is_empty()).then_some(argv)
            }
            Value::Null => None,
            _ => {
                let text = self.text(v)?;
                match split_words(&text) {
                    Some(argv) if !argv.is_empty() => Some(argv),
                    _ => {
                        self.w.at(v.at, "an unterminated quote: not imported");
                        None
                    }
                }
            }
        }
    }

    fn ports(&mut self, key_at: Pos, v: &Node, into: &mut Vec<String>) {
        let Some(items) = v.as_seq() else {
            self.w.at(
                v.at,
                format!("`ports` is {}, not a list: not imported", v.kind()),
            );
            return;
        };
        let mut wide = false;
        for item in items {
            let mapped = match &item.value {
                Value::Map(_) => {
                    let target = item.get("target").and_then(Node::scalar_text);
                    let published = item.get("published").and_then(Node::scalar_text);
                    let ip = item.get("host_ip").and_then(Node::scalar_text);
                    let proto = item.get("protocol").and_then(Node::scalar_text);
                    match (target, published) {
                        (Some(t), Some(p)) => port_spec(ip.as_deref(), &p, &t, proto.as_deref()),
                        (Some(_), None) => Err("no published port (docker would pick one)".into()),
                        _ => Err("no target port".into()),
                    }
                }
                _ => match item.scalar_text() {
                    Some(t) => parse_short_port(&self.interpolate(&t, item.at)),
                    None => Err(format!("{} is not a port mapping", item.kind())),
                },
            };
            match mapped {
                Ok((spec, any_interface)) => {
                    wide |= any_interface;
                    if !into.contains(&spec) {
                        into.push(spec);
                    }
                }
                Err(why) => self.w.at(item.at, format!("port {why}: not imported")),
            }
        }
        if wide {
            self.w.at(
                key_at,
                "ports are published on 127.0.0.1 only (compose publishes them on every interface)",
            );
        }
    }

    /// `environment` / `labels`: a mapping, or a list of `KEY=value`.
    fn pairs(&mut self, v: &Node, what: &str, into: &mut BTreeMap<String, String>) {
        match &v.value {
            Value::Map(entries) => {
                for (k, val) in entries {
                    match &val.value {
                        Value::Null => self.passthrough(k.at, what, &k.name),
                        _ => {
                            if let Some(t) = self.text(val) {
                                into.insert(k.name.clone(), t);
                            }
                        }
                    }
                }
            }
            Value::Seq(items) => {
                for item in items {
                    let Some(t) = self.text(item) else { continue };
                    match t.split_once('=') {
                        Some((k, val)) => {
                            into.insert(k.to_string(), val.to_string());
                        }
                        None => self.passthrough(item.at, what, &t),
                    }
                }
            }
            _ => self
                .w
                .at(v.at, format!("`{what}` is {}: not imported", v.kind())),
        }
    }

    fn passthrough(&mut self, at: Pos, what: &str, name: &str) {
        if what == "environment" {
            self.w.at(
                at,
                format!(
                    "`{name}` without a value (compose passes the caller's) not imported: \
                     give it a value in the env table"
                ),
            );
        } else {
            self.w
                .at(at, format!("label `{name}` without a value not imported"));
        }
    }

    fn service_volumes(&mut self, v: &Node, s: &mut ComposeService) {
        let Some(items) = v.as_seq() else {
            self.w.at(
                v.at,
                format!("`volumes` is {}, not a list: not imported", v.kind()),
            );
            return;
        };
        for item in items {
            let parsed = match &item.value {
                Value::Map(_) => {
                    let kind = item
                        .get("type")
                        .and_then(Node::scalar_text)
                        .unwrap_or_default();
                    let source = item.get("source").and_then(Node::scalar_text);
                    let target = item.get("target").and_then(Node::scalar_text);
                    let ro = matches!(
                        item.get("read_only").map(|n| &n.value),
                        Some(Value::Bool(true))
                    );
                    match (kind.as_str(), source, target) {
                        ("bind", Some(src), Some(t)) => {
                            Ok((VolumeSource::Bind(self.host_path(&src)), t, ro))
                        }
                        ("volume", Some(src), Some(t)) => Ok((VolumeSource::Named(src), t, ro)),
                        ("volume", None, Some(_)) => Err("is an anonymous volume".to_string()),
                        (other, _, _) if other != "bind" && other != "volume" => {
                            Err(format!("of type `{other}` has no ccscope equivalent"))
                        }
                        _ => Err("has no source or target".to_string()),
                    }
                }
                _ => match item.scalar_text() {
                    Some(t) => {
                        let t = self.interpolate(&t, item.at);
                        self.short_volume(&t)
                    }
                    None => Err(format!("is {}", item.kind())),
                },
            };
            match parsed {
                Ok((source, target, read_only)) => {
                    let named = matches!(source, VolumeSource::Named(_));
                    let volume = VolumeOut {
                        source,
                        target,
                        read_only,
                    };
                    let index = match s.volumes.iter().position(|o| o.target == volume.target) {
                        Some(i) => {
                            s.volumes[i] = volume;
                            s.named.retain(|(n, _)| *n != i);
                            i
                        }
                        None => {
                            s.volumes.push(volume);
                            s.volumes.len() - 1
                        }
                    };
                    if named {
                        s.named.push((index, item.at));
                    }
                }
                Err(why) => self.w.at(item.at, format!("volume {why}: not imported")),
            }
        }
    }

    fn short_volume(&self, text: &str) -> Result<(VolumeSource, String, bool), String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [_] => return Err("is an anonymous volume (a container path alone)".into()),
            [s, t] => (*s, *t, None),
            [s, t, m] => (*s, *t, Some(*m)),
            _ => return Err(format!("`{text}` has more than three parts")),
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) if m.split(',').any(|o| o == "ro") => true,
            Some(m)
                if m.split(',').all(|o| {
                    ["rw", "z", "Z", "cached", "delegated", "consistent"].contains(&o)
                }) =>
            {
                false
            }
            Some(m) => return Err(format!("mode `{m}` has no ccscope equivalent")),
        };
        let source =
            if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
                VolumeSource::Bind(self.host_path(source))
            } else {
                VolumeSource::Named(source.to_string())
            };
        Ok((source, target.to_string(), read_only))
    }

    /// A bind mount's host side, resolved against the compose file's directory.
    fn host_path(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/")
            && let Some((home, _)) = (self.env)("HOME")
        {
            return normalize(&Path::new(&home).join(rest));
        }
        normalize(&self.dir.join(p))
    }

    fn depends_on(&mut self, v: &Node, into: &mut Vec<DependencyOut>) {
        let mut add = |d: DependencyOut| match into.iter_mut().find(|o| o.name == d.name) {
            Some(o) => *o = d,
            None => into.push(d),
        };
        match &v.value {
            Value::Seq(items) => {
                for item in items {
                    if let Some(name) = item.scalar_text() {
                        add(DependencyOut {
                            name,
                            condition: "started",
                            restart: false,
                        });
                    }
                }
            }
            Value::Map(entries) => {
                for (k, spec) in entries {
                    let mut dep = DependencyOut {
                        name: k.name.clone(),
                        condition: "started",
                        restart: false,
                    };
                    for (sk, sv) in spec.as_map().unwrap_or_default() {
                        match (sk.name.as_str(), &sv.value) {
                            ("condition", _) => match sv.scalar_text().as_deref() {
                                Some("service_started") => dep.condition = "started",
                                Some("service_healthy") => dep.condition = "healthy",
                                Some("service_completed_successfully") => {
                                    dep.condition = "completed_successfully";
                                }
                                other => self.w.at(
                                    sv.at,
                                    format!("condition `{}` unknown: `started` imported", other.unwrap_or("?")),
                                ),
                            },
                            ("restart", Value::Bool(b)) => dep.restart = *b,
                            ("required", Value::Bool(true)) => {}
                            ("required", Value::Bool(false)) => self.w.at(
                                sk.at,
                                format!(
                                    "`required: false` not imported: ccscope always needs `{}`; mark that service `optional = true` if its failure should not stop this one",
                                    k.name
                                ),
                            ),
                            (other, _) => self.w.at(sk.at, format!("depends_on `{other}` not imported")),
                        }
                    }
                    add(dep);
                }
            }
            _ => self
                .w
                .at(v.at, format!("`depends_on` is {}: not imported", v.kind())),
        }
    }

    fn healthcheck(&mut self, v: &Node) -> Option<ProbeOut> {
        if matches!(v.get("disable").map(|n| &n.value), Some(Value::Bool(true))) {
            return None;
        }
        let mut argv = None;
        let (mut interval, mut timeout, mut retries, mut start_period) = (None, None, None, None);
        for (k, val) in v.as_map().unwrap_or_default() {
            match k.name.as_str() {
                "test" => {
                    argv = match &val.value {
                        Value::Seq(items) => {
                            let words: Vec<String> =
                                items.iter().filter_map(|i| self.text(i)).collect();
                            match words.split_first() {
                                Some((first, rest)) if first == "CMD" => Some(rest.to_vec()),
                                Some((first, rest)) if first == "CMD-SHELL" => {
                                    Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
                                }
                                Some((first, _)) if first == "NONE" => return None,
                                _ => {
                                    self.w.at(val.at, "a test that starts with neither CMD nor CMD-SHELL: not imported");
                                    None
                                }
                            }
                        }
                        _ => self
                            .text(val)
                            .map(|t| vec!["/bin/sh".into(), "-c".into(), t]),
                    };
                }
                "interval" => interval = self.duration(val),
                "timeout" => timeout = self.duration(val),
                "start_period" => start_period = self.duration(val),
                "retries" => match val.value {
                    Value::Int(n) if n >= 0 => retries = u32::try_from(n).ok(),
                    _ => self.w.at(val.at, "`retries` is not a count: not imported"),
                },
                "disable" => {}
                other => self.w.at(
                    k.at,
                    format!("healthcheck `{other}` has no ccscope equivalent: not imported"),
                ),
            }
        }
        let argv = argv.filter(|a| !a.is_empty())?;
        // Compose gives up after the start period and `retries` failed checks in a row; ccscope
        // waits for readiness as long as `start_timeout`: the same moment.
        let every = interval.unwrap_or(Duration::from_secs(30));
        let start_timeout = start_period.unwrap_or_default() + every * retries.unwrap_or(3).max(1);
        Some(ProbeOut {
            check: CheckOut::Exec(argv),
            interval,
            timeout,
            retries,
            start_timeout: Some(start_timeout.max(Duration::from_secs(1))),
        })
    }

    fn restart(&mut self, v: &Node) -> Option<RestartOut> {
        let text = self.text(v)?;
        let (policy, max) = match text.as_str() {
            "no" | "\"no\"" => ("no", None),
            "always" => ("always", None),
            "unless-stopped" => {
                self.w.at(v.at, "restart `unless-stopped` imported as `always`: ccscope's own stop is the one that holds");
                ("always", None)
            }
            "on-failure" => ("on-failure", None),
            other => match other
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse().ok())
            {
                Some(n) => ("on-failure", Some(n)),
                None => {
                    self.w
                        .at(v.at, format!("restart `{other}` unknown: not imported"));
                    return None;
                }
            },
        };
        Some(RestartOut {
            policy,
            initial_backoff: None,
            max_restarts: max,
        })
    }

    fn signal(&mut self, v: &Node) -> Option<String> {
        let text = self.text(v)?;
        let upper = text.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        if crate::config::SIGNALS.iter().any(|s| s.name == name) {
            Some(name)
        } else {
            self.w.at(
                v.at,
                format!("stop signal `{text}` is not one ccscope sends: not imported"),
            );
            None
        }
    }

    fn duration(&mut self, v: &Node) -> Option<Duration> {
        let text = self.text(v)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.w
                    .at(v.at, format!("duration `{text}` not imported: {e}"));
                None
            }
        }
    }
}

/// A short port mapping: `8123`, `8123:8123`, `127.0.0.1:8123:8123`, `8123:8123/tcp`.
/// Returns `host:container` and whether compose would publish it on every interface.
fn parse_short_port(text: &str) -> Result<(String, bool), String> {
    let (body, proto) = match text.split_once('/') {
        Some((b, p)) => (b, Some(p)),
        None => (text, None),
    };
    let parts: Vec<&str> = body.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [c] => Err(format!("`{c}` has no host port (docker would pick one)")),
        [c, h] => port_spec(None, h, c, proto),
        [c, h, ip] => port_spec(Some(ip), h, c, proto),
        _ => Err(format!("`{text}` is not a port mapping")),
    }
}

fn port_spec(
    ip: Option<&str>,
    host: &str,
    container: &str,
    proto: Option<&str>,
) -> Result<(String, bool), String> {
    if let Some(p) = proto
        && p != "tcp"
    {
        return Err(format!(
            "{host}:{container}/{p}: ccscope publishes TCP only"
        ));
    }
    if host.contains('-') || container.contains('-') {
        return Err(format!(
            "range {host}:{container}: write each port on its own"
        ));
    }
    let number = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0);
    let (Some(h), Some(c)) = (number(host), number(container)) else {
        return Err(format!("`{host}:{container}` is not two port numbers"));
    };
    let wide = match ip.map(|i| i.trim_matches(|c| c == '[' || c == ']')) {
        None | Some("0.0.0.0" | "::" | "") => true,
        Some("127.0.0.1" | "localhost" | "::1") => false,
        Some(other) => return Err(format!("on {other}: ccscope publishes on 127.0.0.1 only")),
    };
    Ok((format!("{h}:{c}"), wide))
}

/// `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`, `$$`, as compose reads them.
/// Returns the text and each variable used, with where its value came from.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<(String, &'static str)>,
) -> (String, Vec<(String, String)>) {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let expr = &inner[..end];
            let (var, default, empty_too) = if let Some((v, d)) = expr.split_once(":-") {
                (v, Some(d), true)
            } else if let Some((v, d)) = expr.split_once('-') {
                (v, Some(d), false)
            } else {
                (expr, None, false)
            };
            let found = env(var).filter(|(v, _)| !(empty_too && v.is_empty()));
            let (value, how) = match (found, default) {
                (Some((v, from)), _) => (v, from.to_string()),
                (None, Some(d)) => (d.to_string(), format!("its default `{d}`")),
                (None, None) => (String::new(), "unset: empty".to_string()),
            };
            out.push_str(&value);
            used.push((format!("{{{expr}}}"), how));
            rest = &inner[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            let var = &after[..len];
            let (value, how) = match env(var) {
                Some((v, from)) => (v, from.to_string()),
                None => (String::new(), "unset: empty".to_string()),
            };
            out.push_str(&value);
            used.push((var.to_string(), how));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    (out, used)
}

/// Words as a POSIX shell splits them, without expansions: quotes and backslashes only.
pub(crate) fn split_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// `a/./b/../c` → `a/c`, without touching the file system.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports_say_what_they_publish() {
        assert_eq!(
            parse_short_port("8123:8123"),
            Ok(("8123:8123".into(), true))
        );
        assert_eq!(
            parse_short_port("127.0.0.1:18123:8123"),
            Ok(("18123:8123".into(), false))
        );
        assert_eq!(
            parse_short_port("9000:9000/tcp"),
            Ok(("9000:9000".into(), true))
        );
        assert!(
            parse_short_port("8125:8125/udp")
                .unwrap_err()
                .contains("TCP only")
        );
        assert!(
            parse_short_port("8123")
                .unwrap_err()
                .contains("no host port")
        );
        assert!(
            parse_short_port("9000-9001:9000-9001")
                .unwrap_err()
                .contains("range")
        );
        assert!(
            parse_short_port("10.0.0.1:1:2")
                .unwrap_err()
                .contains("127.0.0.1 only")
        );
    }

    #[test]
    fn interpolation_as_compose_does_it() {
        let env = |k: &str| match k {
            "PORT" => Some(("8123".to_string(), "from the environment")),
            "EMPTY" => Some((String::new(), "from .env")),
            _ => None,
        };
        let (out, used) = interpolate(
            "${PORT}:${MISSING:-9}:${EMPTY:-d}:${EMPTY-d}:$PORT:$$x",
            &env,
        );
        assert_eq!(out, "8123:9:d::8123:$x");
        assert_eq!(used.len(), 5);
        assert_eq!(interpolate("no dollars", &env).0, "no dollars");
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_words(r#"sh -c 'echo "$A b"' "x y" z\ w"#).unwrap(),
            ["sh", "-c", "echo \"$A b\"", "x y", "z w"]
        );
        assert_eq!(split_words("'open"), None);
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
