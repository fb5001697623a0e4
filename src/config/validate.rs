//! From text to a validated [`Config`]: parse, then check everything that can be checked
//! without running anything, collecting every problem with its file:line:column.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use toml::Spanned;

use super::diagnostic::{ConfigError, Diagnostic, Location};
use super::duration::HumanDuration;
use super::graph;
use super::model::*;
use super::schema::*;
use crate::proc::signal::{SIGNALS, TERM};
use crate::suggest::closest;

/// Environment variables ccscope sets itself on every process it launches.
pub const RESERVED_ENV: &[&str] = &["CCSCOPE_PROJECT", "CCSCOPE_SERVICE", "CCSCOPE_RUN_ID"];

/// Parses and validates `text`. Relative paths resolve against `base_dir`.
pub fn parse_config(
    text: &str,
    source: ConfigSource,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let file = source.display_name();
    let read = super::read::read(text).map_err(|e| ConfigError::Invalid {
        diagnostics: vec![toml_error_diagnostic(&file, text, &e)],
    })?;
    let mut v = Validator {
        file: &file,
        text,
        base_dir,
        diagnostics: Vec::new(),
    };
    for e in &read.errors {
        let d = toml_error_diagnostic(&file, text, e);
        v.diagnostics.push(d);
    }
    let raw = read.raw;
    // A [project] or service that did not fit has its error already; checking what is left
    // of it would only add errors that are not there (a command of the wrong type is not a
    // missing command).
    let project = if read.project_unreadable {
        None
    } else {
        v.project(raw.project.as_ref())
    };
    for (name, span) in &read.unreadable_services {
        v.check_name("service", name, span.clone());
    }
    let mut services = BTreeMap::new();
    let mut dependency_spans = BTreeMap::new();
    for (name, service) in &raw.services {
        v.check_name("service", name.get_ref(), name.span());
        if let Some(s) = v.service(name.get_ref(), service, &raw.defaults) {
            services.insert(name.get_ref().clone(), s);
        }
        if let Some(deps) = &service.get_ref().depends_on {
            dependency_spans.insert(name.get_ref().clone(), depends_span_by_name(deps));
        }
    }
    v.check_dependencies(&raw, &read.unreadable_services, &dependency_spans);
    v.check_ports(&raw);
    // [redirects]: their own checks, in redirects.rs.
    let known: BTreeSet<String> = raw
        .services
        .keys()
        .map(|k| k.get_ref().clone())
        .chain(read.unreadable_services.keys().cloned())
        .collect();
    let redirects =
        super::redirects::validate(&raw.redirects, &known, &mut |span, message, hint| {
            v.error(span, message, hint)
        });
    if !v.diagnostics.is_empty() {
        v.diagnostics
            .sort_by_key(|d| (d.location.line, d.location.column));
        // A bad value in [defaults] is found once for each service that inherits it.
        v.diagnostics.dedup();
        return Err(ConfigError::Invalid {
            diagnostics: v.diagnostics,
        });
    }
    let project = project.expect("a missing project always leaves a diagnostic");
    Ok(Config {
        source,
        project,
        services,
        redirects,
    })
}

/// Turns a toml / serde error into a diagnostic, adding "did you mean" to unknown keys and values.
fn toml_error_diagnostic(file: &str, text: &str, e: &toml::de::Error) -> Diagnostic {
    let offset = e.span().map_or(0, |s| s.start);
    let location = Location::of_offset(file, text, offset);
    let message = e.message().trim().to_string();
    let (message, hint) = explain_unknown(&message, text, offset);
    Diagnostic {
        location,
        message,
        hint,
    }
}

/// serde says "unknown field `x`, expected one of `a`, `b`"; we say where and suggest the closest.
fn explain_unknown(message: &str, text: &str, offset: usize) -> (String, Option<String>) {
    let noun = if message.starts_with("unknown field") {
        "key"
    } else if message.starts_with("unknown variant") {
        "value"
    } else {
        return (message.to_string(), None);
    };
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let Some((unknown, expected)) = quoted.split_first() else {
        return (message.to_string(), None);
    };
    let table = enclosing_table(text, offset);
    let place = table.map(|t| format!(" in [{t}]")).unwrap_or_default();
    let message = format!("unknown {noun} `{unknown}`{place}");
    let hint = match closest(unknown, expected.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if expected.is_empty() => format!("remove `{unknown}`"),
        None => format!("expected one of: {}", expected.join(", ")),
    };
    (message, Some(hint))
}

/// The name of the `[table]` header above byte `offset`, if any.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim_start_matches('[').trim().to_string())
    })
}

fn depends_span_by_name(deps: &Spanned<RawDependsOn>) -> BTreeMap<String, Range<usize>> {
    let mut spans = BTreeMap::new();
    match deps.get_ref() {
        RawDependsOn::List(names) => {
            for n in names {
                spans.insert(n.get_ref().clone(), n.span());
            }
        }
        RawDependsOn::Table(entries) => {
            for (n, _) in entries {
                spans.insert(n.get_ref().clone(), n.span());
            }
        }
    }
    spans
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    base_dir: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        self.diagnostics.push(Diagnostic {
            location: Location::of_offset(self.file, self.text, span.start),
            message: message.into(),
            hint,
        });
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A NUL cannot be in an argument, an environment variable or a path (the kernel takes
    /// them as C strings), so a value that would become one is refused here, where it is
    /// written, rather than by `run`. TOML writes a NUL only as an escape, which locates it.
    fn refuse_nul<'s>(
        &mut self,
        what: &str,
        values: impl IntoIterator<Item = &'s str>,
        span: Range<usize>,
    ) -> bool {
        if !values.into_iter().any(|v| v.contains('\0')) {
            return true;
        }
        let escape_in = |range: Range<usize>| {
            let text = self.text.get(range.clone())?;
            ["\\u0000", "\\U00000000"]
                .iter()
                .filter_map(|e| text.find(e))
                .min()
                .map(|at| range.start + at)
        };
        // An inherited value's escape is in [defaults], outside the service's span.
        let at = escape_in(span.clone())
            .or_else(|| escape_in(0..self.text.len()))
            .unwrap_or(span.start);
        self.error(
            at..at,
            format!("{what} contains a NUL character (\\u0000)"),
            Some("an argument, environment variable or path cannot hold a NUL: remove it".into()),
        );
        false
    }

    fn project(&mut self, raw: Option<&Spanned<RawProject>>) -> Option<Project> {
        let Some(raw) = raw else {
            self.error(
                0..0,
                "missing [project] table",
                Some("add `[project]` with `name = \"my-stack\"` at the top".into()),
            );
            return None;
        };
        let Some(name) = &raw.get_ref().name else {
            self.error(
                raw.span(),
                "[project] has no `name`",
                Some(
                    "add `name = \"my-stack\"`: it names the systemd slice and every scope".into(),
                ),
            );
            return None;
        };
        self.check_name("project", name.get_ref(), name.span());
        let mut compose = Vec::new();
        for c in raw
            .get_ref()
            .docker_compose_projects
            .iter()
            .flat_map(|l| l.get_ref())
        {
            match check_compose_project(c.get_ref()) {
                Ok(()) if compose.contains(c.get_ref()) => self.error(
                    c.span(),
                    format!("compose project \"{}\" is listed twice", c.get_ref()),
                    Some("remove the repeated name".into()),
                ),
                Ok(()) => compose.push(c.get_ref().clone()),
                Err(why) => self.error(
                    c.span(),
                    format!(
                        "invalid compose project name \"{}\": {why}",
                        c.get_ref().escape_debug()
                    ),
                    Some("write the name `docker compose ls` shows".into()),
                ),
            }
        }
        let alerts = raw
            .get_ref()
            .alerts
            .as_ref()
            .map(|a| self.alerts(a))
            .unwrap_or_default();
        Some(Project {
            docker_compose_projects: compose,
            alerts,
            name: name.get_ref().clone(),
            state_dir: raw
                .get_ref()
                .state_dir
                .as_ref()
                .map(|d| self.path(d.get_ref())),
        })
    }

    /// `[project.alerts]`; a wrong value leaves its diagnostic and the default in its place.
    fn alerts(&mut self, raw: &Spanned<RawAlerts>) -> Alerts {
        let a = raw.get_ref();
        let mut alerts = Alerts::default();
        if let Some(desktop) = a.desktop {
            alerts.desktop = desktop;
        }
        if let Some(exec) = &a.exec {
            let argv: Vec<String> = exec.get_ref().iter().map(|s| s.get_ref().clone()).collect();
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                self.error(
                    exec.span(),
                    "the alert `exec` of [project.alerts] has no command",
                    Some(
                        "write the command and its arguments, such as `exec = [\"notify-me\", \"--urgent\"]`, \
                         or remove `exec`"
                            .into(),
                    ),
                );
            } else if argv.len() > MAX_ALERT_ARGS
                || argv.iter().any(|s| s.len() > MAX_ALERT_ARG_BYTES)
            {
                self.error(
                    exec.span(),
                    format!(
                        "the alert `exec` of [project.alerts] is too long: at most \
                         {MAX_ALERT_ARGS} arguments of at most {MAX_ALERT_ARG_BYTES} bytes each"
                    ),
                    Some(
                        "the alert comes on its stdin as JSON: it need not be in the arguments"
                            .into(),
                    ),
                );
            } else if self.refuse_nul(
                "the alert `exec` of [project.alerts]",
                argv.iter().map(String::as_str),
                exec.span(),
            ) {
                alerts.exec = Some(argv);
            }
        }
        if let Some(limit) = &a.rate_limit {
            let value = *limit.get_ref();
            if value.0 < MIN_ALERT_RATE_LIMIT {
                self.error(
                    limit.span(),
                    format!(
                        "the alert rate_limit of [project.alerts] is {value}: it must be at least {}",
                        HumanDuration(MIN_ALERT_RATE_LIMIT)
                    ),
                    Some("write a duration such as \"60s\" or \"5m\"".into()),
                );
            } else {
                alerts.rate_limit = value;
            }
        }
        alerts
    }

    /// Project and service names become parts of systemd unit names and cgroup directories.
    fn check_name(&mut self, what: &str, name: &str, span: Range<usize>) {
        if let Err(why) = check_unit_name_part(name) {
            self.error(
                span,
                format!("invalid {what} name \"{name}\": {why}"),
                Some(
                    "use 1 to 64 ASCII letters, digits, `_` or `-`, starting with a letter or digit"
                        .into(),
                ),
            );
        }
    }

    fn service(
        &mut self,
        name: &str,
        raw: &Spanned<RawService>,
        defaults: &RawDefaults,
    ) -> Option<Service> {
        let span = raw.span();
        let s = raw.get_ref();
        let errors_before = self.diagnostics.len();
        let launch = self.launch(name, s, span.clone());
        let env = self.env(name, defaults.env.as_ref(), s.env.as_ref(), span.clone());
        let env_file = s.env_file.as_ref().or(defaults.env_file.as_ref());
        if let Some(f) = env_file {
            let what = format!("an env_file of service `{name}`");
            self.refuse_nul(&what, f.get_ref().0.iter().map(String::as_str), f.span());
        }
        let env_files = env_file
            .map(|f| f.get_ref().0.iter().map(|p| self.path(p)).collect())
            .unwrap_or_default();
        let cwd = s.cwd.as_ref().or(defaults.cwd.as_ref());
        if let Some(c) = cwd {
            let what = format!("the cwd of service `{name}`");
            self.refuse_nul(&what, [c.get_ref().as_str()], c.span());
        }
        let cwd = cwd.map(|c| self.path(c.get_ref()));
        let (depends_on, restart_with) = self.depends_on(s.depends_on.as_ref());
        let watch = s.watch.as_ref().and_then(|w| self.watch(name, w));
        let ready = s.ready.as_ref().and_then(|p| {
            self.probe(
                name,
                "ready",
                p,
                defaults.ready.as_ref(),
                s.docker.is_some(),
            )
        });
        let liveness = s.liveness.as_ref().and_then(|p| {
            self.probe(
                name,
                "liveness",
                p,
                defaults.liveness.as_ref(),
                s.docker.is_some(),
            )
        });
        let restart = self.restart(s.restart.as_ref(), defaults.restart.as_ref());
        let stop_signal = s
            .stop_signal
            .as_ref()
            .or(defaults.stop_signal.as_ref())
            .map_or(Some(TERM), |sig| self.signal(sig));
        let stop_timeout = s
            .stop_timeout
            .as_ref()
            .or(defaults.stop_timeout.as_ref())
            .map_or(HumanDuration(DEFAULT_STOP_TIMEOUT), |t| *t.get_ref());
        let ports = self.ports(s.ports.as_deref().unwrap_or_default());
        let discover = self.discover(s.discover.as_ref());
        let limits = self.limits(s.limits.as_ref().or(defaults.limits.as_ref()));
        if self.diagnostics.len() > errors_before {
            return None;
        }
        Some(Service {
            name: name.to_string(),
            launch: launch?,
            cwd,
            env,
            env_files,
            depends_on,
            restart_with,
            ready,
            liveness,
            restart,
            stop_signal: stop_signal?,
            stop_timeout,
            ports,
            discover,
            limits,
            optional: s.optional.or(defaults.optional).unwrap_or(false),
            watch,
        })
    }

    fn launch(&mut self, name: &str, s: &RawService, span: Range<usize>) -> Option<Launch> {
        match (&s.command, &s.shell, &s.docker) {
            (Some(c), Some(_), _) => {
                self.error(
                    c.span(),
                    format!("service `{name}` has both `command` and `shell`"),
                    Some(
                        "keep one: `command` is an argv array, `shell` a line run by /bin/sh -c"
                            .into(),
                    ),
                );
                None
            }
            (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
                let at = s
                    .command
                    .as_ref()
                    .map(|c| c.span())
                    .or_else(|| s.shell.as_ref().map(|x| x.span()))
                    .unwrap_or(span);
                self.error(
                    at,
                    format!("service `{name}` is a docker service and also has a command"),
                    Some(format!(
                        "put the container's command in [services.{name}.docker] as `command = [...]`"
                    )),
                );
                None
            }
            (Some(c), None, None) => {
                if c.get_ref().is_empty() || c.get_ref()[0].trim().is_empty() {
                    self.error(
                        c.span(),
                        format!("the command of service `{name}` is empty"),
                        Some(
                            "name the program first: command = [\"python3\", \"-m\", \"app\"]"
                                .into(),
                        ),
                    );
                    return None;
                }
                let what = format!("the command of service `{name}`");
                if !self.refuse_nul(&what, c.get_ref().iter().map(String::as_str), c.span()) {
                    return None;
                }
                Some(Launch::Command {
                    argv: c.get_ref().clone(),
                })
            }
            (None, Some(sh), None) => {
                if sh.get_ref().trim().is_empty() {
                    self.error(
                        sh.span(),
                        format!("the shell line of service `{name}` is empty"),
                        None,
                    );
                    return None;
                }
                let what = format!("the shell line of service `{name}`");
                if !self.refuse_nul(&what, [sh.get_ref().as_str()], sh.span()) {
                    return None;
                }
                Some(Launch::Shell {
                    script: sh.get_ref().clone(),
                })
            }
            (None, None, Some(d)) => self.docker(name, d).map(Launch::Docker),
            (None, None, None) => {
                self.error(
                    span,
                    format!("service `{name}` has no command"),
                    Some(
                        "add `command = [\"program\", \"arg\"]`, or `shell = \"…\"`, or a [docker] table"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn docker(&mut self, name: &str, d: &Spanned<RawDocker>) -> Option<DockerSpec> {
        let raw = d.get_ref();
        let image = match &raw.image {
            Some(i) if !i.get_ref().trim().is_empty() => i.get_ref().clone(),
            _ => {
                self.error(
                    d.span(),
                    format!("the docker section of service `{name}` has no `image`"),
                    Some("add `image = \"clickhouse/clickhouse-server:24.3\"`".into()),
                );
                return None;
            }
        };
        let mut ports = Vec::new();
        for p in &raw.ports {
            match parse_port_mapping(p.get_ref()) {
                Ok(m) => ports.push(m),
                Err(why) => self.error(
                    p.span(),
                    format!("invalid docker port mapping: {why}"),
                    Some(
                        "write a port number, or \"host:container\" such as \"18123:8123\"".into(),
                    ),
                ),
            }
        }
        for key in raw.labels.keys() {
            if key.starts_with("ccscope.") {
                self.error(
                    d.span(),
                    format!(
                        "label `{key}` is reserved: ccscope sets the `ccscope.*` labels itself"
                    ),
                    Some("use another prefix for your own labels".into()),
                );
            }
        }
        let what = format!("the docker section of service `{name}`");
        let argvs = [("command", &raw.command), ("entrypoint", &raw.entrypoint)];
        for (key, argv) in argvs {
            if let Some(argv) = argv {
                if argv.get_ref().is_empty() {
                    self.error(
                        argv.span(),
                        format!("the docker `{key}` of service `{name}` is empty"),
                        Some(format!(
                            "write `{key} = [\"program\", \"arg\"]`, or remove it to keep the image's"
                        )),
                    );
                }
                let strings = argv.get_ref().iter().map(String::as_str);
                if !self.refuse_nul(&what, strings, argv.span()) {
                    return None;
                }
            }
        }
        let strings = raw.env.keys().chain(raw.env.values());
        if !self.refuse_nul(&what, strings.map(String::as_str), d.span()) {
            return None;
        }
        let container_name = raw.name.as_ref().and_then(|n| {
            let value = n.get_ref();
            match check_container_name(value) {
                Ok(()) => Some(value.clone()),
                Err(why) => {
                    self.error(
                        n.span(),
                        format!("invalid container name \"{}\": {why}", value.escape_debug()),
                        Some(
                            "use letters, digits, `_`, `.` or `-`, starting with a letter or digit"
                                .into(),
                        ),
                    );
                    None
                }
            }
        });
        let mut volumes = Vec::new();
        for v in &raw.volumes {
            match parse_volume(v.get_ref()) {
                Ok((host, container, mode)) => {
                    // A path (it has a `/` or starts with `.`) is bound, relative to the
                    // configuration's directory; a bare word is a named volume, kept as is.
                    let host = if host.contains('/') || host.starts_with('.') {
                        let relative = host.strip_prefix("./").unwrap_or(host);
                        self.path(relative).display().to_string()
                    } else {
                        host.to_string()
                    };
                    volumes.push(match mode {
                        Some(mode) => format!("{host}:{container}:{mode}"),
                        None => format!("{host}:{container}"),
                    });
                }
                Err(why) => self.error(
                    v.span(),
                    format!("invalid docker volume \"{}\": {why}", v.get_ref().escape_debug()),
                    Some(
                        "write \"host-path:/container/path\" (optionally with \":ro\"), or \"volume-name:/container/path\""
                            .into(),
                    ),
                ),
            }
        }
        let network = self.docker_word(name, "network", raw.network.as_ref(), |v| {
            check_container_name(v)
        });
        let workdir = self.docker_word(name, "workdir", raw.workdir.as_ref(), |v| {
            if v.starts_with('/') {
                Ok(())
            } else {
                Err("it is not an absolute path".into())
            }
        });
        let user = self.docker_word(name, "user", raw.user.as_ref(), |v| {
            if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err("it holds a space or a control character".into())
            } else {
                Ok(())
            }
        });
        let pull = match raw.pull.as_ref() {
            None => PullPolicy::Missing,
            Some(p) => match p.get_ref().as_str() {
                "missing" => PullPolicy::Missing,
                "never" => PullPolicy::Never,
                "always" => PullPolicy::Always,
                other => {
                    self.error(
                        p.span(),
                        format!("unknown pull policy \"{}\"", other.escape_debug()),
                        Some("write \"missing\" (the default), \"never\" or \"always\"".into()),
                    );
                    PullPolicy::Missing
                }
            },
        };
        Some(DockerSpec {
            image,
            command: raw.command.as_ref().map(|c| c.get_ref().clone()),
            entrypoint: raw.entrypoint.as_ref().map(|c| c.get_ref().clone()),
            name: container_name,
            ports,
            env: raw.env.clone(),
            volumes,
            labels: raw.labels.clone(),
            network,
            workdir,
            user,
            init: raw.init.unwrap_or(true),
            pull,
        })
    }

    /// An optional docker setting that is one word: checked by `check`, bounded, no NUL.
    fn docker_word(
        &mut self,
        service: &str,
        key: &str,
        value: Option<&Spanned<String>>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let v = value?;
        let text = v.get_ref();
        let why = if text.is_empty() {
            Some("it is empty".to_string())
        } else if text.len() > MAX_DOCKER_WORD {
            Some(format!("it is longer than {MAX_DOCKER_WORD} bytes"))
        } else if text.contains('\0') {
            Some("it holds a NUL".to_string())
        } else {
            check(text).err()
        };
        match why {
            None => Some(text.clone()),
            Some(why) => {
                self.error(
                    v.span(),
                    format!(
                        "invalid docker `{key}` \"{}\" of service `{service}`: {why}",
                        text.escape_debug()
                    ),
                    None,
                );
                None
            }
        }
    }

    fn env(
        &mut self,
        name: &str,
        defaults: Option<&BTreeMap<String, String>>,
        own: Option<&BTreeMap<String, String>>,
        span: Range<usize>,
    ) -> BTreeMap<String, String> {
        let mut env = defaults.cloned().unwrap_or_default();
        env.extend(own.cloned().unwrap_or_default());
        for key in env.keys() {
            if RESERVED_ENV.contains(&key.as_str()) {
                self.error(
                    span.clone(),
                    format!("service `{name}` sets `{key}`, which ccscope sets itself"),
                    Some(format!("remove `{key}` from env")),
                );
            } else if key.contains('\0') {
                let what = format!("an environment variable name of service `{name}`");
                self.refuse_nul(&what, [key.as_str()], span.clone());
            } else if key.is_empty() || key.contains('=') {
                self.error(
                    span.clone(),
                    format!("service `{name}` has an invalid environment variable name \"{key}\""),
                    None,
                );
            }
        }
        for (key, value) in &env {
            let what = format!("the value of `{key}` in the env of service `{name}`");
            // The escape to point at is the one after the key's name.
            let from = self
                .text
                .get(span.clone())
                .and_then(|t| t.find(key.as_str()))
                .map_or(span.start, |k| span.start + k);
            self.refuse_nul(&what, [value.as_str()], from..span.end);
        }
        env
    }

    /// The conditions, and the dependencies declared with `restart = true`.
    fn depends_on(
        &mut self,
        raw: Option<&Spanned<RawDependsOn>>,
    ) -> (BTreeMap<String, DependencyCondition>, BTreeSet<String>) {
        let mut deps = BTreeMap::new();
        let mut restart_with = BTreeSet::new();
        let Some(raw) = raw else {
            return (deps, restart_with);
        };
        match raw.get_ref() {
            RawDependsOn::List(names) => {
                for n in names {
                    deps.insert(n.get_ref().clone(), DependencyCondition::Healthy);
                }
            }
            RawDependsOn::Table(entries) => {
                for (n, d) in entries {
                    let d = d.get_ref();
                    // The long form without `condition` means what the array form means.
                    let condition = match d.condition.unwrap_or(RawCondition::Healthy) {
                        RawCondition::Started => DependencyCondition::Started,
                        RawCondition::Healthy => DependencyCondition::Healthy,
                        RawCondition::CompletedSuccessfully => {
                            DependencyCondition::CompletedSuccessfully
                        }
                    };
                    deps.insert(n.get_ref().clone(), condition);
                    if d.restart {
                        restart_with.insert(n.get_ref().clone());
                    }
                }
            }
        }
        (deps, restart_with)
    }

    fn watch(&mut self, service: &str, raw: &Spanned<RawWatch>) -> Option<WatchSpec> {
        let w = raw.get_ref();
        let errors_before = self.diagnostics.len();
        let paths = match &w.paths {
            Some(p) if !p.get_ref().is_empty() => p.get_ref().as_slice(),
            Some(p) => {
                self.error(
                    p.span(),
                    format!("the watch of service `{service}` has no paths"),
                    Some("list the files to watch, such as `paths = [\"src/**/*.py\"]`".into()),
                );
                &[]
            }
            None => {
                self.error(
                    raw.span(),
                    format!("the watch of service `{service}` has no `paths`"),
                    Some(
                        "add `paths = [\"src/**/*.py\"]`: globs relative to this file's directory"
                            .into(),
                    ),
                );
                &[]
            }
        };
        for glob in paths.iter().chain(&w.ignore) {
            self.check_watch_glob(service, glob);
        }
        let debounce = match &w.debounce {
            None => HumanDuration(DEFAULT_WATCH_DEBOUNCE),
            Some(d) => {
                let value = *d.get_ref();
                if value.0.is_zero() || value.0 > MAX_WATCH_DEBOUNCE {
                    self.error(
                        d.span(),
                        format!(
                            "the watch debounce of service `{service}` is {value}: it must be \
                             longer than 0 and at most {}",
                            HumanDuration(MAX_WATCH_DEBOUNCE)
                        ),
                        Some("write a duration such as \"500ms\" or \"2s\"".into()),
                    );
                }
                value
            }
        };
        if self.diagnostics.len() > errors_before {
            return None;
        }
        Some(WatchSpec {
            base: self.base_dir.to_path_buf(),
            paths: paths.iter().map(|p| p.get_ref().clone()).collect(),
            ignore: w.ignore.iter().map(|p| p.get_ref().clone()).collect(),
            debounce,
        })
    }

    fn check_watch_glob(&mut self, service: &str, glob: &Spanned<String>) {
        let text = glob.get_ref();
        let syntax_hint = "`*` matches within one directory, `**` across directories, `?` one \
                           character, `[abc]` and `{a,b}` alternatives; escape a literal one \
                           with `\\`";
        let (why, hint) = if text.trim().is_empty() {
            (
                "it is empty".to_string(),
                "remove it, or name the files to watch",
            )
        } else if text.len() > MAX_WATCH_GLOB {
            (
                format!("it is longer than {MAX_WATCH_GLOB} bytes"),
                "a path is at most 4096 bytes: shorten it",
            )
        } else if text.contains('\0') {
            ("it holds a NUL".to_string(), "remove the NUL")
        } else {
            // globset says "error parsing glob '<glob>': <what>"; the glob is in our message.
            match watch_glob(text) {
                Ok(_) => return,
                Err(e) => (e.kind().to_string(), syntax_hint),
            }
        };
        self.error(
            glob.span(),
            format!(
                "invalid watch glob \"{}\" of service `{service}`: {why}",
                text.escape_debug()
            ),
            Some(hint.into()),
        );
    }

    fn probe(
        &mut self,
        service: &str,
        which: &str,
        raw: &Spanned<RawProbe>,
        defaults: Option<&RawProbeTiming>,
        is_docker: bool,
    ) -> Option<Probe> {
        let p = raw.get_ref();
        let kinds = [
            p.docker.as_ref().map(|_| "docker"),
            p.tcp.as_ref().map(|_| "tcp"),
            p.http.as_ref().map(|_| "http"),
            p.exec.as_ref().map(|_| "exec"),
            p.notify.as_ref().map(|_| "notify"),
            p.log.as_ref().map(|_| "log"),
        ];
        let given: Vec<&str> = kinds.into_iter().flatten().collect();
        if given.len() != 1 {
            let message = if given.is_empty() {
                format!("the {which} probe of service `{service}` names no check")
            } else {
                format!(
                    "the {which} probe of service `{service}` names {} checks ({}); it takes one",
                    given.len(),
                    given.join(", ")
                )
            };
            self.error(
                raw.span(),
                message,
                Some(
                    "use exactly one of `tcp`, `http`, `exec`, `notify`, `log` or `docker`".into(),
                ),
            );
            return None;
        }
        if let (Some(status), None) = (&p.status, &p.http) {
            self.error(
                status.span(),
                "`status` applies only to an `http` probe",
                None,
            );
        }
        let check = if let Some(t) = &p.tcp {
            match parse_tcp_target(t.get_ref()) {
                Ok((host, port)) => ProbeCheck::Tcp { host, port },
                Err(why) => {
                    self.error(
                        t.span(),
                        format!("invalid tcp probe: {why}"),
                        Some("write a port such as 8110, or \"127.0.0.1:8110\"".into()),
                    );
                    return None;
                }
            }
        } else if let Some(url) = &p.http {
            if !url.get_ref().starts_with("http://") {
                self.error(
                    url.span(),
                    format!(
                        "the http probe needs an http:// URL, not \"{}\"",
                        url.get_ref()
                    ),
                    Some("write it like \"http://127.0.0.1:8110/health\"".into()),
                );
                return None;
            }
            let status = p.status.as_ref().map_or(200, |s| *s.get_ref());
            if !(100..=599).contains(&status) {
                let at = p.status.as_ref().map_or(raw.span(), |s| s.span());
                self.error(at, format!("{status} is not an HTTP status"), None);
                return None;
            }
            ProbeCheck::Http {
                url: url.get_ref().clone(),
                status,
            }
        } else if let Some(argv) = &p.exec {
            if argv.get_ref().first().is_none_or(|p| p.trim().is_empty()) {
                self.error(argv.span(), "the exec probe's command is empty", None);
                return None;
            }
            let what = format!("the exec probe of service `{service}`");
            if !self.refuse_nul(
                &what,
                argv.get_ref().iter().map(String::as_str),
                argv.span(),
            ) {
                return None;
            }
            ProbeCheck::Exec {
                argv: argv.get_ref().clone(),
            }
        } else if let Some(docker) = &p.docker {
            if !is_docker {
                self.error(
                    docker.span(),
                    format!(
                        "the {which} probe of service `{service}` waits for a docker HEALTHCHECK, but the service is not a container"
                    ),
                    Some("use `tcp`, `http`, `exec`, `notify` or `log`, or give it a [docker] table".into()),
                );
                return None;
            }
            if docker.get_ref() != "healthy" {
                self.error(
                    docker.span(),
                    format!(
                        "unknown docker probe \"{}\"",
                        docker.get_ref().escape_debug()
                    ),
                    Some("write `docker = \"healthy\"` to wait for the image's HEALTHCHECK".into()),
                );
                return None;
            }
            ProbeCheck::DockerHealthy
        } else if let Some(notify) = &p.notify {
            if !notify.get_ref() {
                self.error(
                    notify.span(),
                    "`notify = false` is not a probe",
                    Some("write `notify = true`, or remove the probe".into()),
                );
                return None;
            }
            ProbeCheck::Notify
        } else {
            let pattern = p.log.as_ref().expect("one kind is given");
            if !self.check_regex(pattern) {
                return None;
            }
            ProbeCheck::Log {
                pattern: pattern.get_ref().clone(),
            }
        };
        let own = p.timing();
        let fallback = defaults.cloned().unwrap_or_default();
        let pick = |a: Option<HumanDuration>, b: Option<HumanDuration>, d| {
            a.or(b).unwrap_or(HumanDuration(d))
        };
        let probe = Probe {
            check,
            interval: pick(own.interval, fallback.interval, DEFAULT_PROBE_INTERVAL),
            timeout: pick(own.timeout, fallback.timeout, DEFAULT_PROBE_TIMEOUT),
            retries: own
                .retries
                .or(fallback.retries)
                .unwrap_or(DEFAULT_PROBE_RETRIES),
            start_timeout: pick(
                own.start_timeout,
                fallback.start_timeout,
                DEFAULT_START_TIMEOUT,
            ),
        };
        if probe.interval.0.is_zero() || probe.timeout.0.is_zero() {
            self.error(
                raw.span(),
                format!("the {which} probe of service `{service}` has a zero interval or timeout"),
                Some("give both a positive duration such as \"500ms\"".into()),
            );
            return None;
        }
        Some(probe)
    }

    fn check_regex(&mut self, pattern: &Spanned<String>) -> bool {
        match Regex::new(pattern.get_ref()) {
            Ok(_) => true,
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                self.error(
                    pattern.span(),
                    format!("invalid regex \"{}\": {}", pattern.get_ref(), last.trim_start_matches("error: ")),
                    Some("regexes use Rust `regex` syntax; escape literal characters such as `.` and `(`".into()),
                );
                false
            }
        }
    }

    fn restart(
        &mut self,
        own_raw: Option<&Spanned<RawRestartSpec>>,
        defaults_raw: Option<&Spanned<RawRestartSpec>>,
    ) -> RestartPolicy {
        let own = own_raw.map(|r| r.get_ref().0.clone()).unwrap_or_default();
        let base = defaults_raw
            .map(|r| r.get_ref().0.clone())
            .unwrap_or_default();
        let policy = match own.policy.or(base.policy).unwrap_or(RawRestartPolicy::No) {
            RawRestartPolicy::No => RestartMode::No,
            RawRestartPolicy::OnFailure => RestartMode::OnFailure,
            RawRestartPolicy::Always => RestartMode::Always,
        };
        let initial = own
            .initial_backoff
            .or(base.initial_backoff)
            .unwrap_or(HumanDuration(DEFAULT_INITIAL_BACKOFF));
        let max = own
            .max_backoff
            .or(base.max_backoff)
            .unwrap_or(HumanDuration(DEFAULT_MAX_BACKOFF));
        let policy = RestartPolicy {
            policy,
            initial_backoff: initial,
            max_backoff: max.max(initial),
            max_restarts: own
                .max_restarts
                .or(base.max_restarts)
                .unwrap_or(DEFAULT_MAX_RESTARTS),
        };
        if initial > max {
            let span = own_raw.or(defaults_raw).map_or(0..0, |r| r.span());
            self.error(
                span,
                format!("restart initial_backoff {initial} is longer than max_backoff {max}"),
                Some("make initial_backoff at most max_backoff".into()),
            );
        }
        policy
    }

    fn signal(&mut self, raw: &Spanned<RawSignal>) -> Option<Signal> {
        let found = match raw.get_ref() {
            RawSignal::Name(n) => {
                let upper = n.to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                SIGNALS
                    .iter()
                    .find(|s| s.name.strip_prefix("SIG") == Some(bare))
            }
            RawSignal::Number(n) => SIGNALS.iter().find(|s| i64::from(s.number) == *n),
        };
        if found.is_none() {
            let shown = match raw.get_ref() {
                RawSignal::Name(n) => format!("\"{n}\""),
                RawSignal::Number(n) => n.to_string(),
            };
            let names: Vec<&str> = SIGNALS.iter().map(|s| s.name).collect();
            self.error(
                raw.span(),
                format!("{shown} is not a stop signal ccscope accepts"),
                Some(format!("use one of: {}", names.join(", "))),
            );
        }
        found.copied()
    }

    fn ports(&mut self, raw: &[Spanned<i64>]) -> Vec<u16> {
        let mut ports = Vec::new();
        for p in raw {
            match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => ports.push(port),
                _ => self.error(
                    p.span(),
                    format!("port {} is out of range", p.get_ref()),
                    Some("ports are 1 to 65535".into()),
                ),
            }
        }
        ports
    }

    fn discover(&mut self, raw: Option<&RawDiscover>) -> DiscoverRules {
        let Some(raw) = raw else {
            return DiscoverRules::default();
        };
        let cmdline = raw
            .cmdline
            .iter()
            .filter(|p| self.check_regex(p))
            .map(|p| p.get_ref().clone())
            .collect();
        let mut exe = Vec::new();
        for e in &raw.exe {
            if e.get_ref().is_empty() || e.get_ref().contains('/') {
                self.error(
                    e.span(),
                    format!("invalid executable name \"{}\"", e.get_ref()),
                    Some("give the file name only, such as \"clickhouse-server\"".into()),
                );
            } else {
                exe.push(e.get_ref().clone());
            }
        }
        DiscoverRules { cmdline, exe }
    }

    fn limits(&mut self, raw: Option<&RawLimits>) -> Limits {
        let Some(raw) = raw else {
            return Limits::default();
        };
        let memory_bytes = raw
            .memory
            .as_ref()
            .and_then(|m| match parse_size(m.get_ref()) {
                Ok(b) => Some(b),
                Err(why) => {
                    self.error(
                        m.span(),
                        format!("invalid memory limit: {why}"),
                        Some("write it like \"512M\" or \"2G\"".into()),
                    );
                    None
                }
            });
        let tasks = raw
            .tasks
            .as_ref()
            .and_then(|t| match u64::try_from(*t.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.error(
                        t.span(),
                        format!(
                            "invalid tasks limit {}: it must be a positive number",
                            t.get_ref()
                        ),
                        None,
                    );
                    None
                }
            });
        let cpu_percent = raw.cpu.as_ref().and_then(|c| {
            let parsed = c
                .get_ref()
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|n| *n > 0);
            if parsed.is_none() {
                self.error(
                    c.span(),
                    format!("invalid cpu limit \"{}\"", c.get_ref()),
                    Some("write a percentage of one CPU, such as \"50%\" or \"150%\"".into()),
                );
            }
            parsed
        });
        Limits {
            memory_bytes,
            tasks,
            cpu_percent,
        }
    }

    fn check_dependencies(
        &mut self,
        raw: &RawConfig,
        unreadable: &BTreeMap<String, Range<usize>>,
        spans: &BTreeMap<String, BTreeMap<String, Range<usize>>>,
    ) {
        let mut names: Vec<&str> = raw.services.keys().map(|k| k.get_ref().as_str()).collect();
        names.extend(unreadable.keys().map(String::as_str));
        names.sort_unstable();
        let mut unknown = false;
        for (service, deps) in spans {
            for (dep, span) in deps {
                if !names.contains(&dep.as_str()) {
                    unknown = true;
                    let hint = match closest(dep, names.iter().copied().filter(|n| n != service)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("declared services: {}", names.join(", ")),
                    };
                    self.error(
                        span.clone(),
                        format!("service `{service}` depends on `{dep}`, which is not a service"),
                        Some(hint),
                    );
                }
            }
        }
        if unknown {
            return;
        }
        let edges: BTreeMap<&str, Vec<&str>> = spans
            .iter()
            .map(|(s, deps)| (s.as_str(), deps.keys().map(String::as_str).collect()))
            .collect();
        for cycle in graph::find_cycles(&names, &edges) {
            let first = &cycle[0];
            let second = &cycle[1];
            let span = spans[first.as_str()][second.as_str()].clone();
            self.error(
                span,
                format!("dependency cycle: {}", cycle.join(" → ")),
                Some(
                    "remove one of these `depends_on` entries so the services can start in order"
                        .into(),
                ),
            );
        }
    }

    fn check_ports(&mut self, raw: &RawConfig) {
        let mut owners: BTreeMap<i64, &str> = BTreeMap::new();
        for (name, service) in &raw.services {
            let s = service.get_ref();
            let mut declared: Vec<(i64, Range<usize>)> = s
                .ports
                .iter()
                .flatten()
                .map(|p| (*p.get_ref(), p.span()))
                .collect();
            if let Some(d) = &s.docker {
                for p in &d.get_ref().ports {
                    if let Ok(m) = parse_port_mapping(p.get_ref()) {
                        if !declared.iter().any(|(x, _)| *x == i64::from(m.host)) {
                            declared.push((i64::from(m.host), p.span()));
                        }
                    }
                }
            }
            for (port, span) in declared {
                match owners.get(&port) {
                    Some(owner) if *owner == name.get_ref() => self.error(
                        span,
                        format!("service `{owner}` declares port {port} twice"),
                        Some("remove the repeated port".into()),
                    ),
                    Some(owner) => self.error(
                        span,
                        format!(
                            "port {port} is declared by both `{owner}` and `{}`",
                            name.get_ref()
                        ),
                        Some(
                            "two services cannot listen on one port: give one of them another"
                                .into(),
                        ),
                    ),
                    None => {
                        owners.insert(port, name.get_ref());
                    }
                }
            }
        }
    }
}

/// Project and service names become parts of unit names (`ccscope-<project>.slice`) and
/// cgroup directories: keep them to what both accept everywhere.
pub fn check_unit_name_part(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("only ASCII letters, digits, `_` and `-` may appear in it");
    }
    Ok(())
}

fn parse_tcp_target(t: &RawTcpTarget) -> Result<(String, u16), String> {
    match t {
        RawTcpTarget::Port(p) => port_number(*p).map(|p| ("127.0.0.1".to_string(), p)),
        RawTcpTarget::Address(a) => {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or_else(|| format!("\"{a}\" has no port"))?;
            let port: i64 = port
                .parse()
                .map_err(|_| format!("\"{port}\" is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("\"{a}\" has no host"));
            }
            Ok((host.to_string(), port_number(port)?))
        }
    }
}

fn port_number(p: i64) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p} is out of range 1–65535"))
}

fn parse_port_mapping(m: &RawPortMapping) -> Result<PortMapping, String> {
    match m {
        RawPortMapping::Same(p) => port_number(*p).map(|p| PortMapping {
            host: p,
            container: p,
        }),
        RawPortMapping::Text(t) => {
            let (host, container) = t.split_once(':').unwrap_or((t, t));
            let parse = |x: &str| -> Result<u16, String> {
                let n: i64 = x
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{x}\" is not a port"))?;
                port_number(n)
            };
            Ok(PortMapping {
                host: parse(host)?,
                container: parse(container)?,
            })
        }
    }
}

/// `512M`, `2G`, `1024K`, `1T` (powers of 1024, with an optional `i`/`B`), or a byte count.
pub fn parse_size(s: &RawSize) -> Result<u64, String> {
    match s {
        RawSize::Bytes(b) => u64::try_from(*b)
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("{b} is not a positive number of bytes")),
        RawSize::Text(t) => {
            let trimmed = t.trim();
            let digits = trimmed
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(trimmed.len());
            let (number, unit) = trimmed.split_at(digits);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("\"{t}\" does not start with a number"))?;
            let unit = unit
                .trim()
                .trim_end_matches(['B', 'b'])
                .trim_end_matches('i');
            let shift = match unit.to_ascii_uppercase().as_str() {
                "" => 0,
                "K" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => return Err(format!("\"{t}\" has an unknown unit")),
            };
            number
                .checked_mul(1u64 << shift)
                .filter(|b| *b > 0)
                .ok_or_else(|| format!("\"{t}\" is out of range"))
        }
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    const HEAD: &str = "[project]\nname = \"demo\"\n";

    /// Every diagnostic of `text`: (line, column, message).
    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        let source = ConfigSource::File("ccscope.toml".into());
        match parse_config(text, source, Path::new("/stack")) {
            Err(ConfigError::Invalid { diagnostics }) => diagnostics
                .into_iter()
                .map(|d| (d.location.line, d.location.column, d.message))
                .collect(),
            Err(other) => panic!("expected an invalid-config error, got {other}"),
            Ok(_) => panic!("the config validated:\n{text}"),
        }
    }

    #[test]
    fn a_nul_in_an_env_value_is_refused_where_it_is_written() {
        let found = errors(&format!(
            "{HEAD}[services.a]\ncommand = [\"x\"]\nenv = {{ OK = \"1\", BAD = \"a\\u0000b\" }}\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, col, msg) = &found[0];
        assert_eq!((*line, *col), (5, 27), "{msg}");
        assert_eq!(
            msg,
            "the value of `BAD` in the env of service `a` contains a NUL character (\\u0000)"
        );
    }

    #[test]
    fn a_nul_inherited_from_defaults_points_into_defaults() {
        let found = errors(&format!(
            "{HEAD}[defaults]\nenv = {{ X = \"\\U00000000\" }}\n[services.a]\ncommand = [\"x\"]\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (4, 14), "{found:?}");
    }

    #[test]
    fn a_nul_in_the_command_shell_cwd_env_name_or_probe_is_refused() {
        for (body, line, col, what) in [
            (
                "command = [\"x\", \"a\\u0000\"]",
                4,
                19,
                "the command of service `a`",
            ),
            (
                "shell = \"echo \\u0000\"",
                4,
                15,
                "the shell line of service `a`",
            ),
            (
                "command = [\"x\"]\ncwd = \"/t\\u0000\"",
                5,
                10,
                "the cwd of service `a`",
            ),
            (
                "command = [\"x\"]\nenv = { \"K\\u0000\" = \"v\" }",
                5,
                11,
                "an environment variable name of service `a`",
            ),
            (
                "command = [\"x\"]\nready = { exec = [\"t\\u0000\"] }",
                5,
                21,
                "the exec probe of service `a`",
            ),
            (
                "command = [\"x\"]\nenv_file = \"e\\u0000\"",
                5,
                14,
                "an env_file of service `a`",
            ),
        ] {
            let found = errors(&format!("{HEAD}[services.a]\n{body}\n"));
            assert_eq!(found.len(), 1, "{body}: {found:?}");
            let (l, c, msg) = &found[0];
            assert_eq!((*l, *c), (line, col), "{body}: {msg}");
            assert!(msg.starts_with(what), "{body}: {msg}");
            assert!(msg.ends_with("contains a NUL character (\\u0000)"), "{msg}");
        }
    }
}

#[cfg(test)]
mod duration_cap_tests {
    use super::*;

    #[test]
    fn a_stop_timeout_beyond_a_day_is_refused_where_it_is_written() {
        let text = "[project]\nname = \"demo\"\n[services.a]\ncommand = [\"x\"]\n\
                    stop_timeout = \"100000h\"\n";
        let source = ConfigSource::File("ccscope.toml".into());
        let Err(ConfigError::Invalid { diagnostics }) =
            parse_config(text, source, Path::new("/stack"))
        else {
            panic!("100000h was accepted");
        };
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let d = &diagnostics[0];
        assert_eq!((d.location.line, d.location.column), (5, 16));
        assert_eq!(
            d.message,
            "invalid duration \"100000h\": it is longer than 24h, the longest wait ccscope \
             accepts; write at most \"24h\""
        );
    }
}

/// The longest docker name, network, workdir or user accepted.
const MAX_DOCKER_WORD: usize = 255;

/// Docker's charset for container (and network) names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn check_container_name(name: &str) -> Result<(), String> {
    if name.len() < 2 {
        return Err("a name takes at least two characters".into());
    }
    if name.len() > MAX_DOCKER_WORD {
        return Err(format!("it is longer than {MAX_DOCKER_WORD} bytes"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it does not start with a letter or digit".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(c) => Err(format!("`{}` is not allowed in it", c.escape_debug())),
        None => Ok(()),
    }
}

/// `host:container[:ro|:rw]` → its parts; the container side is an absolute path.
fn parse_volume(text: &str) -> Result<(&str, &str, Option<&str>), String> {
    if text.contains('\0') {
        return Err("it holds a NUL".into());
    }
    if text.len() > 4096 {
        return Err("it is longer than 4096 bytes".into());
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, None),
        [h, c, m] => (*h, *c, Some(*m)),
        _ => return Err("it is not `host:container` or `host:container:mode`".into()),
    };
    if host.is_empty() {
        return Err("the host side is empty".into());
    }
    if !container.starts_with('/') {
        return Err(format!(
            "the container side \"{container}\" is not an absolute path"
        ));
    }
    if let Some(m) = mode {
        if !matches!(m, "ro" | "rw") {
            return Err(format!("unknown mode \"{m}\" (it takes \"ro\" or \"rw\")"));
        }
    }
    let is_path = host.contains('/') || host.starts_with('.');
    if !is_path && check_container_name(host).is_err() {
        return Err(format!(
            "\"{host}\" is neither a path nor a volume name (write \"./{host}\" for a directory)"
        ));
    }
    Ok((host, container, mode))
}

/// Compose's project-name charset: lowercase letters, digits, `_` and `-`, first a letter
/// or digit.
fn check_compose_project(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_DOCKER_WORD {
        return Err(format!("it takes 1 to {MAX_DOCKER_WORD} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("it does not start with a lowercase letter or digit".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
    {
        Some(c) => Err(format!("`{}` is not allowed in it", c.escape_debug())),
        None => Ok(()),
    }
}
