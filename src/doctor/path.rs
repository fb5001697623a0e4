//! Whether a redirect wrapper is what a shell runs: the first executable of its name on PATH.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::profiles::is_redirect_wrapper;

/// A redirect as PATH sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedirectOnPath {
    pub exe: String,
    /// Where its wrapper is (or would be).
    pub wrapper: PathBuf,
    /// `installed` (ours), `missing`, or `foreign` (a file of that name that is not ours).
    pub state: &'static str,
    /// The wrapper's directory is on PATH.
    pub dir_on_path: bool,
    /// A shell runs the wrapper: it is the first `exe` on PATH.
    pub first_on_path: bool,
    /// What a shell runs instead, when it is not the wrapper.
    pub shadowed_by: Option<PathBuf>,
}

impl RedirectOnPath {
    /// What to do about it, when something is wrong.
    pub fn advice(&self) -> Option<String> {
        let dir = self
            .wrapper
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string();
        match (self.state, self.dir_on_path, &self.shadowed_by) {
            ("missing", _, _) => Some("run `ccscope redirects install`".into()),
            ("foreign", _, _) => Some(format!(
                "{} is not ccscope's: move it, or install into another --dir",
                self.wrapper.display()
            )),
            (_, false, _) => Some(format!("add {dir} to PATH, before the real {}", self.exe)),
            (_, _, Some(other)) => Some(format!(
                "{} comes first on PATH: put {dir} before {} in PATH",
                other.display(),
                other.parent().unwrap_or(Path::new("/")).display()
            )),
            _ => None,
        }
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable `exe` on `path_var`.
pub fn first_on_path(exe: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(exe))
        .find(|p| executable(p))
}

pub fn redirect_on_path(exe: &str, dir: &Path, path_var: Option<&OsStr>) -> RedirectOnPath {
    let wrapper = dir.join(exe);
    let state = match std::fs::symlink_metadata(&wrapper) {
        Err(_) => "missing",
        Ok(m) if m.is_file() && is_redirect_wrapper(&wrapper) => "installed",
        Ok(_) => "foreign",
    };
    let dir_on_path = path_var.is_some_and(|p| std::env::split_paths(p).any(|d| d == dir));
    let first = first_on_path(exe, path_var);
    let first_on_path = state == "installed" && first.as_deref() == Some(wrapper.as_path());
    let shadowed_by = first.filter(|f| state == "installed" && dir_on_path && *f != wrapper);
    RedirectOnPath {
        exe: exe.to_string(),
        wrapper,
        state,
        dir_on_path,
        first_on_path,
        shadowed_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::profiles::REDIRECT_MARKER;

    fn exe(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_wrapper_must_come_first_on_path() {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, other) = (tmp.path().join("ours"), tmp.path().join("other"));
        std::fs::create_dir(&ours).unwrap();
        std::fs::create_dir(&other).unwrap();
        let missing = redirect_on_path("cc", &ours, None);
        assert_eq!(missing.state, "missing");
        assert!(missing.advice().unwrap().contains("redirects install"));
        exe(&ours.join("cc"), &format!("#!/bin/sh\n{REDIRECT_MARKER}\n"));
        exe(&other.join("cc"), "#!/bin/sh\n");
        let first = std::env::join_paths([&ours, &other]).unwrap();
        let r = redirect_on_path("cc", &ours, Some(&first));
        assert!(r.first_on_path && r.advice().is_none(), "{r:?}");
        let second = std::env::join_paths([&other, &ours]).unwrap();
        let r = redirect_on_path("cc", &ours, Some(&second));
        assert_eq!(r.shadowed_by, Some(other.join("cc")));
        assert!(r.advice().unwrap().contains("before"), "{r:?}");
        let absent = std::env::join_paths([&other]).unwrap();
        assert!(
            redirect_on_path("cc", &ours, Some(&absent))
                .advice()
                .unwrap()
                .contains("add")
        );
        exe(&ours.join("cc"), "#!/bin/sh\necho mine\n");
        assert_eq!(redirect_on_path("cc", &ours, Some(&first)).state, "foreign");
    }
}
