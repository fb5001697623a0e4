//! `ccscope import`: the files a team already has — docker compose files, process-compose
//! files, Procfiles — made into a commented ccscope.toml, with a warning at file:line:column
//! for every setting that has no equivalent (never dropped in silence).
//!
//! Each importer (`compose`, `process_compose`, `procfile`) reads its files into a [`Stack`]
//! of services in ccscope's terms; `emit` writes that as TOML; the text is then read back by
//! the configuration's own validation, so what `import` writes is what `check` accepts.
//! YAML comes through `yaml`, which keeps every node's line and column.

mod compose;
mod emit;
mod process_compose;
mod procfile;
mod stack;
mod warning;
mod yaml;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{self, ConfigError, ConfigSource, Diagnostic, Location};
use stack::{LaunchOut, Stack};
pub use warning::ImportWarning;
use warning::Warnings;

/// `a/./b/../c` → `a/c`, without touching the file system.
pub fn normalize_path(p: &Path) -> PathBuf {
    compose::normalize(p)
}

/// The largest file `import` reads: as large as a ccscope.toml may be.
pub const MAX_IMPORT_BYTES: u64 = config::MAX_CONFIG_BYTES;

/// What to import, and how.
pub struct ImportRequest<'a> {
    /// The files, as the user named them (shown so in warnings).
    pub files: &'a [PathBuf],
    /// What relative names are relative to.
    pub cwd: &'a Path,
    /// The output file (its directory is the base of every relative path written).
    pub output: &'a Path,
    /// `--project NAME`.
    pub project: Option<&'a str>,
    /// `--image SERVICE=IMAGE`: a container service's image replaced.
    pub images: &'a [(String, String)],
    /// The environment compose interpolates from (and `COMPOSE_PROJECT_NAME`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// What `import` made.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// The ccscope.toml text.
    #[serde(skip)]
    pub text: String,
    pub project: String,
    /// The compose projects whose containers `stop` sweeps.
    pub docker_compose_projects: Vec<String>,
    /// Start order, as `check` prints it.
    pub layers: Vec<Vec<String>>,
    pub warnings: Vec<ImportWarning>,
}

/// The kind of a file to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    Compose,
    ProcessCompose,
    Procfile,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("could not read {}: {}", path.display(), crate::proc::describe_io(source))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("{} is larger than ccscope reads (the limit is {} KiB)", path.display(), MAX_IMPORT_BYTES / 1024)]
    TooLarge { path: PathBuf },
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    #[error("{} is neither a compose file, a process-compose file nor a Procfile", path.display())]
    UnknownKind { path: PathBuf },
    #[error("service `{name}` is defined in {first} and again in {second}")]
    DuplicateService {
        name: String,
        first: String,
        second: String,
    },
    #[error("nothing to import: the files define no service ccscope can run")]
    NoServices { warnings: Vec<ImportWarning> },
    #[error("invalid project name `{name}`: {why}")]
    BadProject { name: String, why: &'static str },
    #[error("--image names `{name}`, which is not a container service of the import")]
    UnknownImageService { name: String, services: Vec<String> },
    #[error(
        "the configuration import wrote does not validate (a bug of ccscope import):\n{}",
        render(diagnostics)
    )]
    Generated { diagnostics: Vec<Diagnostic> },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ImportError {
    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ImportError::Read { .. } => "check the path and its permissions".into(),
            ImportError::NotAFile { .. } | ImportError::TooLarge { .. } => {
                "name the compose file, process-compose file or Procfile itself".into()
            }
            ImportError::Syntax { .. } => "fix the YAML at that place and import again".into(),
            ImportError::UnknownKind { .. } => "name it docker-compose.yml, compose.yaml, \
                 process-compose.yaml or Procfile, or check that it has `services:` or `processes:`"
                .into(),
            ImportError::DuplicateService { .. } => {
                "rename one of them, or import the files one at a time".into()
            }
            ImportError::NoServices { .. } => {
                "a compose service needs an `image` (ccscope does not build images)".into()
            }
            ImportError::BadProject { .. } => {
                "give --project NAME with letters, digits, `_` and `-`".into()
            }
            ImportError::UnknownImageService { name, services } => {
                match crate::suggest::closest(name, services.iter().map(String::as_str)) {
                    Some(s) => format!(
                        "did you mean `{s}`? container services: {}",
                        services.join(", ")
                    ),
                    None => format!("container services: {}", services.join(", ")),
                }
            }
            ImportError::Generated { .. } => {
                "report it with the input files; meanwhile, fix the lines named above by hand"
                    .into()
            }
        })
    }
}

/// Reads every file of `request`, and returns the ccscope.toml that stands for them.
pub fn import(request: &ImportRequest<'_>) -> Result<Imported, ImportError> {
    let mut warnings = Vec::new();
    let mut stack = Stack::default();
    let mut compose = compose::ComposeImport::default();
    let mut any_compose = false;
    let mut first_dir = None;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let shown: Vec<String> = request
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    for (file, shown) in request.files.iter().zip(&shown) {
        let path = request.cwd.join(file);
        first_dir.get_or_insert_with(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
        let text = read_text(&path)?;
        let kind = detect(&path, &text, shown)?;
        let mut w = Warnings {
            file: shown,
            list: &mut warnings,
        };
        let before = stack.services.len();
        match kind.0 {
            FileKind::Compose => {
                any_compose = true;
                let doc = kind.1.expect("a compose file was parsed to be detected");
                compose.add(&doc, &path, &mut w, request.env);
            }
            FileKind::ProcessCompose => {
                let doc = kind
                    .1
                    .expect("a process-compose file was parsed to be detected");
                process_compose::add(&doc, &path, &mut w, &mut stack);
            }
            FileKind::Procfile => procfile::add(&text, &path, &mut w, &mut stack),
        }
        for s in &stack.services[before..] {
            if let Some(first) = seen.insert(s.name.clone(), s.origin.clone()) {
                return Err(ImportError::DuplicateService {
                    name: s.name.clone(),
                    first,
                    second: s.origin.clone(),
                });
            }
        }
    }
    let project = project_name(
        request,
        any_compose.then(|| compose.project_name()).flatten(),
        first_dir.as_deref(),
    )?;
    if any_compose {
        for (name, file, at) in compose.unbuildable() {
            warnings.push(ImportWarning {
                location: Location {
                    file,
                    line: at.line,
                    column: at.column,
                },
                message: format!(
                    "service `{name}` has a `build` and no `image`: not imported (ccscope runs \
                     images; build it, then add it with an `image`)"
                ),
            });
        }
        let mut from_compose = Stack::default();
        compose.finish(&project, &mut from_compose);
        for s in &from_compose.services {
            if let Some(first) = seen.get(&s.name) {
                return Err(ImportError::DuplicateService {
                    name: s.name.clone(),
                    first: first.clone(),
                    second: s.origin.clone(),
                });
            }
        }
        stack.services.extend(from_compose.services);
        stack.compose_projects = from_compose.compose_projects;
    }
    if stack.services.is_empty() {
        return Err(ImportError::NoServices { warnings });
    }
    rename_invalid(&mut stack, &mut warnings);
    drop_unknown_dependencies(&mut stack, &mut warnings);
    apply_images(&mut stack, request.images)?;
    let output = crate::import::compose::normalize(
        &std::path::absolute(request.cwd.join(request.output))
            .unwrap_or_else(|_| request.output.to_path_buf()),
    );
    let base = output.parent().unwrap_or(Path::new("/")).to_path_buf();
    let text = emit::render(&stack, &project, &shown, &base);
    let config = config::parse_config(
        &text,
        ConfigSource::File(request.output.to_path_buf()),
        &base,
    )
    .map_err(|e| match e {
        ConfigError::Invalid { diagnostics } => ImportError::Generated { diagnostics },
        other => ImportError::Generated {
            diagnostics: vec![Diagnostic {
                location: Location {
                    file: request.output.display().to_string(),
                    line: 1,
                    column: 1,
                },
                message: other.to_string(),
                hint: None,
            }],
        },
    })?;
    Ok(Imported {
        text,
        project,
        docker_compose_projects: stack.compose_projects,
        layers: config::graph::start_layers(&config),
        warnings,
    })
}

/// `--project`, else `COMPOSE_PROJECT_NAME` or the compose project, else the first file's
/// directory; made a valid name as compose makes one (lowercase, `[a-z0-9_-]`).
fn project_name(
    request: &ImportRequest<'_>,
    compose_name: Option<String>,
    first_dir: Option<&Path>,
) -> Result<String, ImportError> {
    if let Some(name) = request.project {
        config::check_unit_name_part(name).map_err(|why| ImportError::BadProject {
            name: name.into(),
            why,
        })?;
        return Ok(name.to_string());
    }
    let from_env = compose_name
        .is_some()
        .then(|| (request.env)("COMPOSE_PROJECT_NAME"))
        .flatten()
        .filter(|n| !n.is_empty());
    let raw = from_env
        .or(compose_name)
        .or_else(|| {
            first_dir
                .and_then(|d| std::path::absolute(d).ok())
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    let mut name: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    name = name
        .trim_start_matches(['_', '-'])
        .chars()
        .take(64)
        .collect();
    config::check_unit_name_part(&name)
        .map_err(|why| ImportError::BadProject { name: raw, why })?;
    Ok(name)
}

fn rename_invalid(stack: &mut Stack, warnings: &mut Vec<ImportWarning>) {
    let mut renamed = BTreeMap::new();
    for s in &mut stack.services {
        if config::check_unit_name_part(&s.name).is_ok() {
            continue;
        }
        let mut name: String = s
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            name.insert(0, 's');
            name.truncate(64);
        }
        warnings.push(ImportWarning {
            location: s.at.clone(),
            message: format!(
                "service `{}` imported as `{name}`: a ccscope service name is letters, digits, `_` and `-`",
                s.name
            ),
        });
        renamed.insert(s.name.clone(), name.clone());
        s.name = name;
    }
    for s in &mut stack.services {
        for d in &mut s.depends_on {
            if let Some(n) = renamed.get(&d.name) {
                d.name = n.clone();
            }
        }
    }
}

fn drop_unknown_dependencies(stack: &mut Stack, warnings: &mut Vec<ImportWarning>) {
    let names: Vec<String> = stack.services.iter().map(|s| s.name.clone()).collect();
    for s in &mut stack.services {
        let at = s.at.clone();
        let name = s.name.clone();
        s.depends_on.retain(|d| {
            let known = names.contains(&d.name);
            if !known {
                warnings.push(ImportWarning {
                    location: at.clone(),
                    message: format!(
                        "`{name}` depends on `{}`, which is not imported: dependency dropped",
                        d.name
                    ),
                });
            }
            known
        });
    }
}

fn apply_images(stack: &mut Stack, images: &[(String, String)]) -> Result<(), ImportError> {
    for (service, image) in images {
        let found = stack.services.iter_mut().find_map(|s| match &mut s.launch {
            LaunchOut::Docker(d) if s.name == *service => Some(d),
            _ => None,
        });
        match found {
            Some(d) => {
                d.image = image.clone();
                // A substituted image is one the user has: never pull it.
                d.pull = Some("never");
            }
            None => {
                return Err(ImportError::UnknownImageService {
                    name: service.clone(),
                    services: stack
                        .services
                        .iter()
                        .filter(|s| matches!(s.launch, LaunchOut::Docker(_)))
                        .map(|s| s.name.clone())
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

/// The file's kind, by its name, else by its content; with its YAML when it is YAML.
fn detect(
    path: &Path,
    text: &str,
    shown: &str,
) -> Result<(FileKind, Option<yaml::Node>), ImportError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if procfile::is_procfile_name(&name) {
        return Ok((FileKind::Procfile, None));
    }
    let parsed = yaml::parse(text);
    let by_name = if name.to_ascii_lowercase().starts_with("process-compose") {
        Some(FileKind::ProcessCompose)
    } else if compose::is_compose_name(&name) {
        Some(FileKind::Compose)
    } else {
        None
    };
    let doc = match (parsed, by_name) {
        (Ok(doc), _) => doc,
        (Err(e), Some(_)) => {
            return Err(ImportError::Syntax {
                location: Location {
                    file: shown.to_string(),
                    line: e.at.line,
                    column: e.at.column,
                },
                message: format!("not valid YAML: {}", e.message),
            });
        }
        // Not YAML and not named like anything: a Procfile if its lines look like one.
        (Err(_), None) => return procfile_shaped(text, path),
    };
    if let Some(kind) = by_name {
        return Ok((kind, Some(doc)));
    }
    if process_compose::looks_like_process_compose(&doc) {
        Ok((FileKind::ProcessCompose, Some(doc)))
    } else if compose::looks_like_compose(&doc) {
        Ok((FileKind::Compose, Some(doc)))
    } else {
        procfile_shaped(text, path)
    }
}

fn procfile_shaped(text: &str, path: &Path) -> Result<(FileKind, Option<yaml::Node>), ImportError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let shaped = lines.peek().is_some()
        && lines.all(|l| {
            l.split_once(':').is_some_and(|(n, c)| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    && !c.trim().is_empty()
            })
        });
    if shaped {
        Ok((FileKind::Procfile, None))
    } else {
        Err(ImportError::UnknownKind {
            path: path.to_path_buf(),
        })
    }
}

/// The text of a regular file of at most [`MAX_IMPORT_BYTES`]; a FIFO or a device is refused
/// without blocking on it.
fn read_text(path: &Path) -> Result<String, ImportError> {
    let io = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "a special file"
        };
        return Err(ImportError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let before =
            std::str::from_utf8(&e.as_bytes()[..e.utf8_error().valid_up_to()]).unwrap_or_default();
        ImportError::Syntax {
            location: Location::of_offset(&path.display().to_string(), before, before.len()),
            message: "the file is not valid UTF-8".into(),
        }
    })
}

/// Writes `text` to `path` through a temporary file beside it renamed over it, so a reader
/// never sees half a file; an existing `path` is replaced only with `force`.
pub fn write_output(path: &Path, text: &str, force: bool) -> Result<(), WriteError> {
    use std::io::Write;
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(
        || "ccscope.toml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} already exists; it was left untouched", .0.display())]
    Exists(PathBuf),
    #[error("could not write {}: {}", path.display(), crate::proc::describe_io(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
