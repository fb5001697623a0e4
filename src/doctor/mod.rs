//! What this host offers ccscope: which containment backend it gets and why, which limits can
//! hold, and whether journald and Docker answer — Docker's API version, and whether it runs
//! rootless (`ccscope doctor`).

pub mod path;

use serde::Serialize;

use crate::contain::{BackendKind, BusKind, Candidate, cgroup, survey};

#[derive(Serialize)]
pub struct DoctorReport {
    /// The backend `exec` and `run` would use (or the forced one, if available).
    pub backend: Option<BackendKind>,
    pub candidates: Vec<Candidate>,
    pub cgroup_v2: Option<CgroupReport>,
    pub limits: LimitSupport,
    pub journald: Reachability,
    pub docker: DockerReport,
    /// Whether this user's manager runs without a login session (`loginctl enable-linger`),
    /// so an enabled `ccscope@<project>.service` starts at boot, not at the first login.
    pub linger: Linger,
}

#[derive(Serialize)]
pub struct Linger {
    pub enabled: bool,
    pub detail: String,
}

#[derive(Serialize)]
pub struct DockerReport {
    pub reachable: bool,
    /// The socket asked, and what it answered (or why it did not).
    pub detail: String,
    /// The API version negotiated with the daemon.
    pub api_version: Option<String>,
    /// Whether the daemon runs rootless (its containers then run as this user).
    pub rootless: Option<bool>,
}

#[derive(Serialize)]
pub struct CgroupReport {
    pub mount: String,
    pub controllers: Vec<String>,
}

/// Whether each limit can be enforced through cgroup v2 on this host.
#[derive(Serialize)]
pub struct LimitSupport {
    pub memory: bool,
    pub tasks: bool,
    pub cpu: bool,
}

#[derive(Serialize)]
pub struct Reachability {
    pub reachable: bool,
    pub detail: String,
}

/// Looks at the host. `forced` is the backend asked for (`--backend`), if any: the report's
/// backend is it when it is available, else none.
pub async fn doctor(bus: BusKind, forced: Option<BackendKind>) -> DoctorReport {
    let candidates = survey(bus).await;
    let backend = match forced {
        Some(forced) => candidates
            .iter()
            .find(|c| c.backend == forced && c.available)
            .map(|c| c.backend),
        None => candidates.iter().find(|c| c.available).map(|c| c.backend),
    };
    let cgroup_v2 = cgroup::v2_mount().ok().flatten().map(|mount| CgroupReport {
        controllers: cgroup::Cgroup::at(&mount).controllers().unwrap_or_default(),
        mount: mount.display().to_string(),
    });
    let has = |c: &str| {
        cgroup_v2
            .as_ref()
            .is_some_and(|r| r.controllers.iter().any(|x| x == c))
    };
    let limits = LimitSupport {
        memory: has("memory"),
        tasks: has("pids"),
        cpu: has("cpu"),
    };
    DoctorReport {
        backend,
        candidates,
        cgroup_v2,
        limits,
        journald: journald(),
        docker: docker().await,
        linger: linger(),
    }
}

/// logind's mark of a lingering user: `/var/lib/systemd/linger/<name>`.
fn linger() -> Linger {
    let uid = rustix::process::getuid().as_raw();
    let Some(name) = crate::control::sockets::user_name(uid) else {
        return Linger {
            enabled: false,
            detail: format!("uid {uid} has no name in /etc/passwd"),
        };
    };
    let mark = std::path::Path::new("/var/lib/systemd/linger").join(&name);
    match mark.exists() {
        true => Linger {
            enabled: true,
            detail: format!("{} exists: enabled units start at boot", mark.display()),
        },
        false => Linger {
            enabled: false,
            detail: format!(
                "enabled units start at {name}'s first login; `loginctl enable-linger {name}` starts them at boot"
            ),
        },
    }
}

fn journald() -> Reachability {
    let socket = crate::audit::journal::JOURNAL_SOCKET;
    match crate::audit::journal::send(
        crate::audit::Priority::Debug,
        "ccscope doctor probe",
        &[("CCSCOPE_EVENT", "doctor")],
    ) {
        Ok(()) => Reachability {
            reachable: true,
            detail: socket.to_string(),
        },
        Err(e) => Reachability {
            reachable: false,
            detail: crate::proc::describe_io(&e),
        },
    }
}

/// Connects as `run` and `stop` do (DOCKER_HOST, else the default socket; version negotiated,
/// pinged), then asks the daemon its version and security options.
async fn docker() -> DockerReport {
    let engine = match crate::docker::Engine::connect().await {
        Ok(engine) => engine,
        Err(e) => {
            return DockerReport {
                reachable: false,
                detail: match e.hint() {
                    Some(hint) => format!("{e}; {hint}"),
                    None => e.to_string(),
                },
                api_version: None,
                rootless: None,
            };
        }
    };
    match engine.version().await {
        Ok((api, rootless)) => DockerReport {
            reachable: true,
            detail: engine.socket().to_string(),
            api_version: Some(api),
            rootless: Some(rootless),
        },
        Err(e) => DockerReport {
            reachable: true,
            detail: format!("{}: answers, but not its version: {e}", engine.socket()),
            api_version: None,
            rootless: None,
        },
    }
}
