//! `[redirects.<exe>]`: an executable people run by hand, and which of its subcommands lead
//! to which ccscope command instead. `ccscope redirects install` writes the wrappers.
//!
//! ```toml
//! [redirects.context-cleaner]
//! "dashboard"   = "start dashboard"
//! "bridge sync" = "start bridge_sync"
//! real = "/opt/cc/bin/context-cleaner"   # else the next one on PATH
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use serde::Serialize;
use toml::Spanned;

/// The raw table: subcommand (or `real`) → ccscope command line, each spanned.
pub(crate) type RawRedirects =
    BTreeMap<Spanned<String>, Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>;

/// One redirected executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// The executable's file name (`context-cleaner`).
    pub exe: String,
    /// The real executable, when the configuration names it; else the next one on PATH.
    pub real: Option<PathBuf>,
    /// Subcommand words → the ccscope arguments that replace them, longest first (so that
    /// `bridge sync` is tried before `bridge`).
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub subcommand: Vec<String>,
    pub ccscope: Vec<String>,
}

/// The ccscope verbs a redirect may lead to; the ones that take service names come first.
const SERVICE_VERBS: &[&str] = &[
    "start", "stop", "restart", "pause", "resume", "logs", "status",
];
const OTHER_VERBS: &[&str] = &["run", "ps", "reload", "discover", "audit"];
const MAX_WORDS: usize = 16;

/// Checks `raw` against the services; each problem goes to `error(span, message, hint)`.
pub(crate) fn validate(
    raw: &RawRedirects,
    services: &BTreeSet<String>,
    error: &mut dyn FnMut(Range<usize>, String, Option<String>),
) -> BTreeMap<String, Redirect> {
    let mut out = BTreeMap::new();
    for (exe, table) in raw {
        let name = exe.get_ref();
        if let Err(why) = check_exe(name) {
            error(
                exe.span(),
                format!(
                    "invalid redirected executable `{}`: {why}",
                    name.escape_debug()
                ),
                Some("name the executable's file, such as `context-cleaner`".into()),
            );
            continue;
        }
        let mut redirect = Redirect {
            exe: name.clone(),
            real: None,
            routes: Vec::new(),
        };
        for (key, value) in table.get_ref() {
            let text = value.get_ref();
            if text.contains('\0') || key.get_ref().contains('\0') {
                error(
                    value.span(),
                    "a redirect holds a NUL character".into(),
                    None,
                );
                continue;
            }
            if key.get_ref() == "real" {
                if text.starts_with('/') {
                    redirect.real = Some(PathBuf::from(text));
                } else {
                    error(
                        value.span(),
                        format!("`real` of redirect `{name}` is not an absolute path"),
                        Some(format!(
                            "write real = \"/full/path/to/{name}\", or leave it out for the next one on PATH"
                        )),
                    );
                }
                continue;
            }
            let subcommand: Vec<String> =
                key.get_ref().split_whitespace().map(String::from).collect();
            let ccscope: Vec<String> = text.split_whitespace().map(String::from).collect();
            if subcommand.is_empty() || subcommand.len() > MAX_WORDS {
                error(
                    key.span(),
                    format!("redirect `{name}`: a subcommand of 1 to {MAX_WORDS} words is needed"),
                    None,
                );
                continue;
            }
            let Some(verb) = ccscope.first() else {
                error(
                    value.span(),
                    format!("redirect `{name} {}` leads nowhere", key.get_ref()),
                    Some("write a ccscope command such as \"start dashboard\"".into()),
                );
                continue;
            };
            if ccscope.len() > MAX_WORDS {
                error(
                    value.span(),
                    format!(
                        "redirect `{name} {}`: more than {MAX_WORDS} words",
                        key.get_ref()
                    ),
                    None,
                );
                continue;
            }
            if !SERVICE_VERBS.contains(&verb.as_str()) && !OTHER_VERBS.contains(&verb.as_str()) {
                let all = SERVICE_VERBS.iter().chain(OTHER_VERBS).copied();
                let hint = match crate::suggest::closest(verb, all.clone()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "a redirect leads to one of: {}",
                        all.collect::<Vec<_>>().join(", ")
                    ),
                };
                error(
                    value.span(),
                    format!(
                        "redirect `{name} {}` leads to `{verb}`, which is not a ccscope command it can run",
                        key.get_ref()
                    ),
                    Some(hint),
                );
                continue;
            }
            if SERVICE_VERBS.contains(&verb.as_str()) {
                for word in ccscope[1..].iter().filter(|w| !w.starts_with('-')) {
                    if !services.contains(word) {
                        let hint =
                            crate::suggest::closest(word, services.iter().map(String::as_str))
                                .map(|s| format!("did you mean `{s}`?"));
                        error(
                            value.span(),
                            format!(
                                "redirect `{name} {}` names service `{word}`, which the configuration does not have",
                                key.get_ref()
                            ),
                            hint,
                        );
                    }
                }
            }
            redirect.routes.push(Route {
                subcommand,
                ccscope,
            });
        }
        redirect
            .routes
            .sort_by_key(|r| std::cmp::Reverse(r.subcommand.len()));
        out.insert(name.clone(), redirect);
    }
    out
}

fn check_exe(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("it is not a file name");
    }
    if name.len() > 255 {
        return Err("it is longer than 255 bytes");
    }
    if name.contains('/') {
        return Err("it holds a `/` (give the file name; the wrapper goes in --dir)");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'\"\\$`".contains(c))
    {
        return Err("it holds a space, a quote, `$`, a backslash or a control character");
    }
    Ok(())
}
