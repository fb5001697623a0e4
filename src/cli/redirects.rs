//! `ccscope redirects install|list|remove`: small wrappers named like the executables of
//! `[redirects.<exe>]`, put first on PATH, so that a subcommand typed from memory leads into
//! ccscope (with a one-line notice) instead of around it, and everything else reaches the
//! real executable untouched.
//!
//! A wrapper is a short POSIX shell script rather than a link to ccscope dispatching on
//! argv[0]: it carries the project's configuration and the real executable's place in
//! itself, anyone can read what it does, it costs no ccscope start-up for the commands it
//! passes through, and its marker line lets `install` and `remove` touch only files ccscope
//! wrote.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Context, print_json};
use crate::cli::errors::CliError;
use crate::cli::exit_codes;
use crate::config::profiles::{REDIRECT_MARKER, is_redirect_wrapper, real_executable};
use crate::config::{Config, ConfigSource, Redirect};
use crate::doctor::path::{RedirectOnPath, redirect_on_path};

#[derive(Debug, Subcommand)]
pub enum RedirectsCommand {
    /// Write a wrapper for each `[redirects.<exe>]` into DIR (only where none is, or ours is)
    Install(DirArgs),
    /// Each redirect: its wrapper, whether a shell runs it (first on PATH), and its routes
    List(DirArgs),
    /// Remove the wrappers ccscope wrote (a file it did not write is left alone)
    Remove(DirArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Where the wrappers go; it must come first on PATH [default: ~/.local/bin]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The directory `redirects` works in: `--dir`, else ~/.local/bin.
pub(crate) fn default_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/bin"))
}

fn dir_of(ctx: &Context, args: &DirArgs) -> Result<PathBuf, CliError> {
    match &args.dir {
        Some(d) => Ok(crate::import::normalize_path(&ctx.cwd.join(d))),
        None => default_dir().ok_or_else(|| {
            CliError::usage("HOME is not set, so there is no ~/.local/bin")
                .with_hint("give --dir DIR")
        }),
    }
}

pub fn run(ctx: &Context, command: &RedirectsCommand) -> Result<i32, CliError> {
    let config = ctx.load_config()?;
    if config.redirects.is_empty() {
        return Err(CliError::new(
            exit_codes::CONFIG,
            "no_redirects",
            format!(
                "{} has no [redirects.<exe>] table",
                config.source.display_name()
            ),
        )
        .with_hint(
            "add one, such as [redirects.context-cleaner] with \"dashboard\" = \"start dashboard\"",
        ));
    }
    match command {
        RedirectsCommand::Install(args) => install(ctx, &config, &dir_of(ctx, args)?),
        RedirectsCommand::List(args) => list(ctx, &config, &dir_of(ctx, args)?),
        RedirectsCommand::Remove(args) => remove(ctx, &config, &dir_of(ctx, args)?),
    }
}

#[derive(Serialize)]
struct Outcome {
    exe: String,
    wrapper: PathBuf,
    /// `written`, `updated`, `unchanged`, `removed`, `absent`, or `refused`.
    action: &'static str,
    why: Option<String>,
}

fn install(ctx: &Context, config: &Config, dir: &Path) -> Result<i32, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, &e))?;
    let ccscope = std::env::current_exe()
        .map_err(|e| CliError::io("find", Path::new("/proc/self/exe"), &e))?;
    let target = target_of(ctx, config);
    let mut outcomes = Vec::new();
    for redirect in config.redirects.values() {
        let path = dir.join(&redirect.exe);
        let script = wrapper_script(redirect, &ccscope, &target, &config.project.name);
        let existing = std::fs::symlink_metadata(&path);
        let action = match &existing {
            Ok(m) if !m.is_file() || !is_redirect_wrapper(&path) => {
                outcomes.push(Outcome {
                    exe: redirect.exe.clone(),
                    wrapper: path.clone(),
                    action: "refused",
                    why: Some(
                        "a file of that name that ccscope did not write is there: left alone"
                            .into(),
                    ),
                });
                continue;
            }
            Ok(_) if std::fs::read_to_string(&path).is_ok_and(|t| t == script) => "unchanged",
            Ok(_) => "updated",
            Err(_) => "written",
        };
        if action != "unchanged" {
            write_executable(&path, &script).map_err(|e| CliError::io("write", &path, &e))?;
        }
        outcomes.push(Outcome {
            exe: redirect.exe.clone(),
            wrapper: path,
            action,
            why: None,
        });
    }
    report(ctx, &outcomes, dir)
}

fn remove(ctx: &Context, config: &Config, dir: &Path) -> Result<i32, CliError> {
    let mut outcomes = Vec::new();
    for redirect in config.redirects.values() {
        let path = dir.join(&redirect.exe);
        let (action, why) = match std::fs::symlink_metadata(&path) {
            Err(_) => ("absent", None),
            Ok(m) if m.is_file() && is_redirect_wrapper(&path) => {
                std::fs::remove_file(&path).map_err(|e| CliError::io("remove", &path, &e))?;
                ("removed", None)
            }
            Ok(_) => (
                "refused",
                Some("ccscope did not write it: left alone".to_string()),
            ),
        };
        outcomes.push(Outcome {
            exe: redirect.exe.clone(),
            wrapper: path,
            action,
            why,
        });
    }
    report(ctx, &outcomes, dir)
}

fn report(ctx: &Context, outcomes: &[Outcome], dir: &Path) -> Result<i32, CliError> {
    let refused = outcomes.iter().any(|o| o.action == "refused");
    if ctx.global.json {
        print_json(&serde_json::json!({ "dir": dir, "redirects": outcomes }))?;
    } else if !ctx.global.quiet || refused {
        for o in outcomes {
            let why = o
                .why
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            println!("{:<9} {}{why}", o.action, o.wrapper.display());
        }
        let path = std::env::var_os("PATH");
        for o in outcomes
            .iter()
            .filter(|o| o.action != "removed" && o.action != "absent")
        {
            if let Some(advice) = redirect_on_path(&o.exe, dir, path.as_deref()).advice() {
                println!("  note: {advice}");
            }
        }
    }
    Ok(if refused {
        exit_codes::REFUSED
    } else {
        exit_codes::SUCCESS
    })
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    on_path: RedirectOnPath,
    /// The executable anything not redirected goes to.
    real: Option<PathBuf>,
    routes: &'a [crate::config::Route],
    advice: Option<String>,
}

fn list(ctx: &Context, config: &Config, dir: &Path) -> Result<i32, CliError> {
    let path = std::env::var_os("PATH");
    let listed: Vec<Listed<'_>> = config
        .redirects
        .values()
        .map(|r| {
            let on_path = redirect_on_path(&r.exe, dir, path.as_deref());
            let advice = on_path.advice();
            Listed {
                on_path,
                real: r
                    .real
                    .clone()
                    .or_else(|| real_executable(&r.exe, path.as_deref())),
                routes: &r.routes,
                advice,
            }
        })
        .collect();
    if ctx.global.json {
        print_json(&serde_json::json!({ "dir": dir, "redirects": listed }))?;
        return Ok(exit_codes::SUCCESS);
    }
    for l in &listed {
        let shell_runs = if l.on_path.first_on_path {
            ", first on PATH"
        } else {
            ""
        };
        println!(
            "{}: {} ({}{shell_runs})",
            l.on_path.exe,
            l.on_path.wrapper.display(),
            l.on_path.state
        );
        for route in l.routes {
            println!(
                "  {} {:<16} → ccscope {}",
                l.on_path.exe,
                route.subcommand.join(" "),
                route.ccscope.join(" ")
            );
        }
        match &l.real {
            Some(real) => println!("  anything else   → {}", real.display()),
            None => println!(
                "  anything else   → (no real {} found on PATH)",
                l.on_path.exe
            ),
        }
        if let Some(advice) = &l.advice {
            println!("  note: {advice}");
        }
    }
    Ok(exit_codes::SUCCESS)
}

/// How the wrapper names the configuration: the file's absolute path, or the profile.
fn target_of(ctx: &Context, config: &Config) -> Vec<String> {
    let mut args = match &config.source {
        ConfigSource::File(p) => vec!["--file".to_string(), ctx.cwd.join(p).display().to_string()],
        ConfigSource::Profile(name) => vec!["--profile".to_string(), name.clone()],
    };
    // The profile's settings given at install time hold for every redirected call.
    for pair in &ctx.global.set {
        args.push("--set".into());
        args.push(pair.clone());
    }
    if let Some(state) = &ctx.global.state_dir {
        args.push("--state-dir".into());
        args.push(ctx.cwd.join(state).display().to_string());
    }
    args
}

/// `s` in single quotes for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The wrapper for `redirect`: redirected subcommands run `ccscope TARGET… ARGS…` after a
/// notice; anything else (and everything inside a ccscope service, so a redirect can never
/// loop into itself) goes to the real executable with its arguments and exit code intact.
pub(crate) fn wrapper_script(
    redirect: &Redirect,
    ccscope: &Path,
    target: &[String],
    project: &str,
) -> String {
    let exe = &redirect.exe;
    let target: Vec<String> = target.iter().map(|t| sh_quote(t)).collect();
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(REDIRECT_MARKER);
    s.push('\n');
    s.push_str(&format!(
        "# `{exe}` leads into ccscope for project `{project}`. A redirected subcommand says so\n\
         # once on stderr and runs its ccscope command; anything else goes, arguments and exit\n\
         # code intact, to the real {exe}. Inside a ccscope service (CCSCOPE_PROJECT set) all of\n\
         # it goes to the real one, so a redirect never loops. `ccscope redirects remove` removes it.\n"
    ));
    s.push_str(&format!(
        "ccscope={}\n",
        sh_quote(&ccscope.display().to_string())
    ));
    s.push_str(&format!(
        "real={}\n",
        sh_quote(
            &redirect
                .real
                .as_ref()
                .map(|r| r.display().to_string())
                .unwrap_or_default()
        )
    ));
    s.push_str(&format!("marker={}\n", sh_quote(REDIRECT_MARKER)));
    s.push_str(&format!("exe={}\n\n", sh_quote(exe)));
    s.push_str(
        "[ -x \"$ccscope\" ] || ccscope=ccscope\n\
         notice() {\n    \
             # $1: what was typed; $2: the ccscope command; the rest: arguments left out.\n    \
             typed=$1 instead=$2\n    \
             shift 2\n    \
             extra=\"\"\n    \
             [ \"$#\" -gt 0 ] && extra=\" (its arguments \\`$*\\` are the configuration's to give now)\"\n    \
             echo \"$exe: \\`$exe $typed\\` is deprecated: running \\`ccscope $instead\\` for this project instead$extra\" >&2\n\
         }\n\n\
         if [ -z \"${CCSCOPE_PROJECT-}\" ]; then\n",
    );
    for route in &redirect.routes {
        let n = route.subcommand.len();
        let mut test = format!("[ \"$#\" -ge {n} ]");
        for (i, w) in route.subcommand.iter().enumerate() {
            test.push_str(&format!(" && [ \"${}\" = {} ]", i + 1, sh_quote(w)));
        }
        let ccscope_args: Vec<String> = route.ccscope.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&format!(
            "    if {test}; then\n        shift {n}\n        notice {} {} \"$@\"\n        exec \"$ccscope\" {} {}\n    fi\n",
            sh_quote(&route.subcommand.join(" ")),
            sh_quote(&route.ccscope.join(" ")),
            target.join(" "),
            ccscope_args.join(" "),
        ));
    }
    s.push_str(
        "fi\n\n\
         # The real one: as configured, else the next on PATH that is no ccscope redirect.\n\
         if [ -z \"$real\" ]; then\n    \
             set -f\n    \
             old_ifs=$IFS\n    \
             IFS=:\n    \
             for d in $PATH; do\n        \
                 c=\"$d/$exe\"\n        \
                 case \"$d\" in /*) ;; *) continue ;; esac\n        \
                 [ -f \"$c\" ] && [ -x \"$c\" ] || continue\n        \
                 head -n 3 \"$c\" 2>/dev/null | grep -qxF \"$marker\" && continue\n        \
                 real=$c\n        \
                 break\n    \
             done\n    \
             IFS=$old_ifs\n    \
             set +f\n\
         fi\n\
         if [ -z \"$real\" ]; then\n    \
             echo \"$exe: no real $exe after ccscope's redirect on PATH: install it, or set real = \\\"/path/to/$exe\\\" in [redirects.$exe]\" >&2\n    \
             exit 127\n\
         fi\n\
         exec \"$real\" \"$@\"\n",
    );
    s
}

/// Writes `text` as a 0755 file at `path`, through a temporary file renamed over it.
fn write_executable(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&temp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// For `ccscope doctor`: each redirect of the configuration (if one is found) as PATH sees
/// it in ~/.local/bin.
pub(crate) fn doctor_check(ctx: &Context) -> Vec<RedirectOnPath> {
    let (Ok(config), Some(dir)) = (ctx.load_config(), default_dir()) else {
        return Vec::new();
    };
    let path = std::env::var_os("PATH");
    config
        .redirects
        .keys()
        .map(|exe| redirect_on_path(exe, &dir, path.as_deref()))
        .collect()
}

pub(crate) fn print_doctor(checks: &[RedirectOnPath]) {
    for c in checks {
        match c.advice() {
            None => println!(
                "redirect {}: {} runs first on PATH",
                c.exe,
                c.wrapper.display()
            ),
            Some(advice) => println!(
                "redirect {}: {} is {} — {advice}",
                c.exe,
                c.wrapper.display(),
                if c.state == "installed" {
                    "not run"
                } else {
                    c.state
                }
            ),
        }
    }
}
