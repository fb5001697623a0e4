//! What this host offers ccscope: which containment backend it gets and why, which limits can
//! hold, and whether journald and Docker answer (`ccscope doctor`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

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
    pub docker: Reachability,
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
        docker: docker(),
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

/// GET /_ping on the Engine API socket.
fn docker() -> Reachability {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
    let attempt = || -> std::io::Result<bool> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.") && answer.contains(" 200 "))
    };
    match attempt() {
        Ok(true) => Reachability {
            reachable: true,
            detail: path,
        },
        Ok(false) => Reachability {
            reachable: false,
            detail: format!("{path} answered, but not with 200 OK"),
        },
        Err(e) => Reachability {
            reachable: false,
            detail: format!("{path}: {}", crate::proc::describe_io(&e)),
        },
    }
}
