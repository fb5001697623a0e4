//! What every subcommand needs: the global options resolved against the environment.

use std::path::PathBuf;

use super::GlobalArgs;
use crate::cli::errors::CliError;
use crate::config::{self, Config, ConfigRequest};
use crate::registry::{Registry, StateDir};

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The configuration file the projects index has for `project`.
fn config_of_project(global: &GlobalArgs, project: &str) -> Result<PathBuf, CliError> {
    let chosen = StateDir::resolve(global.state_dir.as_deref(), None, &|k| {
        std::env::var(k).ok()
    })?;
    let (registry, _) = Registry::open(&chosen)?;
    let known = registry.projects()?;
    match known.iter().find(|p| p.project == project) {
        Some(found) => found.config_path.clone().map(PathBuf::from).ok_or_else(|| {
            CliError::usage(format!(
                "project `{project}` last ran from a built-in profile, which --project-name cannot name"
            ))
            .with_hint("give --profile NAME instead")
        }),
        None => {
            let names: Vec<&str> = known.iter().map(|p| p.project.as_str()).collect();
            let hint = match names.is_empty() {
                true => "run it once with -f FILE (or `ccscope enable -f FILE`) so that ccscope knows where its configuration is".to_string(),
                false => crate::suggest::hint_among(project, &names, "known projects"),
            };
            Err(CliError::usage(format!(
                "project `{project}` is not in the projects index of {}",
                chosen.path.display()
            ))
            .with_hint(hint))
        }
    }
}

pub struct Context {
    pub global: GlobalArgs,
    pub cwd: PathBuf,
    pub config_request: ConfigRequest,
}

impl Context {
    pub fn new(mut global: GlobalArgs) -> Result<Context, CliError> {
        // --state-dir beats CCSCOPE_STATE_DIR; an empty variable counts as unset.
        global.state_dir = global.state_dir.or_else(|| env_path("CCSCOPE_STATE_DIR"));
        let cwd = std::env::current_dir().map_err(|e| {
            CliError::io("read the current directory", std::path::Path::new("."), &e)
        })?;
        // -f beats CCSCOPE_CONFIG; --profile and -f together are a contradiction.
        let env_file = env_path("CCSCOPE_CONFIG");
        if global.profile.is_some() && global.file.is_some() {
            return Err(
                CliError::usage("--profile and -f/--file both name a configuration")
                    .with_hint("give one of them"),
            );
        }
        // --project-name NAME (without -f or --profile): the file the projects index has for it,
        // before CCSCOPE_CONFIG; how `ccscope@<project>.service` finds its configuration.
        let env_file = match (&global.project_name, &global.file, &global.profile) {
            (Some(project), None, None) => Some(config_of_project(&global, project)?),
            _ => env_file,
        };
        let config_request = ConfigRequest {
            file: global.file.clone().or(if global.profile.is_some() {
                None
            } else {
                env_file
            }),
            profile: global.profile.clone(),
        };
        Ok(Context {
            global,
            cwd,
            config_request,
        })
    }

    /// The project `--project-name` names, checked against the configuration's: a file given with
    /// `-f` that is another project's is refused rather than acted on.
    pub fn check_project(&self, config: &Config) -> Result<(), CliError> {
        match &self.global.project_name {
            Some(named) if *named != config.project.name => Err(CliError::usage(format!(
                "--project-name names `{named}`, but {} is project `{}`",
                config.source.display_name(),
                config.project.name
            ))
            .with_hint("give -f with that project's file, or leave out one of them")),
            _ => Ok(()),
        }
    }

    /// True when the user named a configuration (flag, env or profile) rather than relying on lookup.
    pub fn config_named(&self) -> bool {
        self.config_request.file.is_some() || self.config_request.profile.is_some()
    }

    pub fn load_config(&self) -> Result<Config, CliError> {
        let config = config::load(&self.config_request, &self.cwd)?;
        self.check_project(&config)?;
        Ok(config)
    }

    /// The state directory, created if missing, verified (ours, writable by nobody else: one
    /// that others could write is refused) and canonical, so that every name derived from it
    /// (sockets, the supervisor's arguments) is the same however the directory was spelled.
    /// Tightening a loose mode is told as a warning.
    pub fn state_dir(&self, config: Option<&Config>) -> Result<StateDir, CliError> {
        let from_config = config.and_then(|c| c.project.state_dir.as_deref());
        let chosen = StateDir::resolve(self.global.state_dir.as_deref(), from_config, &|k| {
            std::env::var(k).ok()
        })?;
        let (verified, repairs) = chosen.open()?;
        for repair in &repairs {
            self.warn(repair);
        }
        // Where the audit trail goes when journald does not take it.
        crate::audit::set_state_dir(verified.path());
        Ok(StateDir {
            path: verified.path().to_path_buf(),
            origin: chosen.origin,
        })
    }

    /// Opens the registry and tells the user about anything opening had to repair. A registry
    /// that was corrupt (and moved aside) is rebuilt for the configured project from its live
    /// scopes and discovery (`ccscope registry rebuild`).
    pub fn open_registry(&self, config: Option<&Config>) -> Result<Registry, CliError> {
        self.open_registry_with(config, None)
    }

    /// Opens the registry for a command that must do its work without one (`stop`): a
    /// registry that cannot be opened or read (a full disk, a lock held by a wedged writer, a
    /// file SQLite cannot use) is warned about and stood in for by an empty one in memory, so
    /// that the stop goes by what the scopes and /proc show. The state directory's own
    /// refusals (a planted link, another user's directory) still stop the command.
    /// True beside it when it is the stand-in.
    pub fn open_registry_or_memory(
        &self,
        config: Option<&Config>,
    ) -> Result<(Registry, bool), CliError> {
        let mut stood_in = false;
        let registry = self.open_registry_with(config, Some(&mut stood_in))?;
        Ok((registry, stood_in))
    }

    fn open_registry_with(
        &self,
        config: Option<&Config>,
        or_memory: Option<&mut bool>,
    ) -> Result<Registry, CliError> {
        let (registry, moved_aside) = match self.open_registry_reporting(config) {
            Ok(opened) => opened,
            Err(Unopened::Registry(
                e @ (crate::registry::RegistryError::Sqlite { .. }
                | crate::registry::RegistryError::Io { .. }),
            )) if or_memory.is_some() => {
                self.warn(&format!(
                    "{e}: going on without it, by what the scopes and /proc show"
                ));
                if let Some(stood_in) = or_memory {
                    *stood_in = true;
                }
                return Ok(Registry::open_in_memory()?);
            }
            Err(Unopened::Registry(e)) => return Err(e.into()),
            Err(Unopened::Cli(e)) => return Err(e),
        };
        if moved_aside {
            crate::audit::Event {
                event: "registry.recovered",
                project: config.map_or("-", |c| c.project.name.as_str()),
                service: None,
                message: "the registry was corrupt: it was moved aside and a fresh one created"
                    .into(),
                fields: Vec::new(),
            }
            .record(crate::audit::Priority::Error);
        }
        if let (true, Some(config)) = (moved_aside, config) {
            let rebuilt = super::contain_args::runtime()?.block_on(
                super::registry_cmd::rebuild(config, &registry, crate::contain::BusKind::Session),
            )?;
            self.warn(&format!(
                "registry rebuilt for `{}`: {} process(es) in its scopes and {} stray(s) registered",
                rebuilt.project, rebuilt.managed, rebuilt.strays
            ));
        }
        Ok(registry)
    }

    /// Opens the registry without rebuilding it (for `registry rebuild` itself).
    /// Opens the registry without rebuilding it and without a word: None when it cannot be.
    pub fn try_open_registry(&self, config: Option<&Config>) -> Option<Registry> {
        let dir = self.state_dir(config).ok()?;
        Registry::open(&dir).ok().map(|(registry, _)| registry)
    }

    pub fn open_registry_plain(&self, config: Option<&Config>) -> Result<Registry, CliError> {
        match self.open_registry_reporting(config) {
            Ok((registry, _)) => Ok(registry),
            Err(Unopened::Registry(e)) => Err(e.into()),
            Err(Unopened::Cli(e)) => Err(e),
        }
    }

    fn open_registry_reporting(
        &self,
        config: Option<&Config>,
    ) -> Result<(Registry, bool), Unopened> {
        let dir = self.state_dir(config).map_err(Unopened::Cli)?;
        tracing::info!(path = %dir.path.display(), from = dir.origin.as_str(), "state directory");
        let (registry, report) = Registry::open(&dir).map_err(Unopened::Registry)?;
        if let Some(aside) = &report.moved_aside {
            self.warn(&format!(
                "the registry {} was corrupt; it was moved to {} and a fresh one created",
                registry.path().display(),
                aside.display()
            ));
        }
        for repair in &report.repairs {
            self.warn(repair);
        }
        Ok((registry, report.moved_aside.is_some()))
    }

    /// A warning on stderr: `warning: …`, or one JSON line `{"warning": "…"}` with --json.
    pub fn warn(&self, message: &str) {
        if self.global.json {
            eprintln!("{}", serde_json::json!({ "warning": message }));
        } else {
            eprintln!("warning: {message}");
        }
    }
}

/// Why the registry was not opened: the state directory (already a CLI error), or the
/// registry itself (kept typed, so that `stop` can go on without it).
enum Unopened {
    Cli(CliError),
    Registry(crate::registry::RegistryError),
}
