//! Choosing a backend: systemd if its manager answers on the bus, else cgroupfs if a cgroup v2
//! directory is writable, else process groups; each refusal recorded for `ccscope doctor`.

use serde::Serialize;

use super::{
    AnyContainment, BackendKind, BusKind, CgroupTree, ContainError, ProcessGroups, SystemdScopes,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Forced(BackendKind),
}

/// Why each backend was or was not chosen.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub chosen: BackendKind,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub backend: BackendKind,
    pub available: bool,
    /// What was found (available) or what is missing (not available).
    pub detail: String,
}

async fn try_systemd(bus: BusKind) -> Result<(SystemdScopes, String), String> {
    let scopes = SystemdScopes::connect(bus).await.map_err(|e| match e {
        ContainError::Bus(ref b)
            if matches!(**b, zbus::Error::Address(_) | zbus::Error::InputOutput(_)) =>
        {
            format!(
                "no {} bus to connect to ({e})",
                if bus == BusKind::Session {
                    "session"
                } else {
                    "system"
                }
            )
        }
        other => other.to_string(),
    })?;
    let version = scopes.version().await.map_err(|e| e.to_string())?;
    let which = if bus == BusKind::Session {
        "user manager on the session bus"
    } else {
        "system manager on the system bus"
    };
    Ok((scopes, format!("systemd {version}, {which}")))
}

fn try_cgroupfs() -> Result<(CgroupTree, String), String> {
    let base = CgroupTree::find_base()?;
    let tree = CgroupTree::new(&base);
    Ok((
        tree,
        format!("cgroup v2 subtree {}", base.join("ccscope").display()),
    ))
}

/// Picks the backend; with `Forced`, that one or an error saying why it cannot be used.
pub async fn detect(
    choice: BackendChoice,
    bus: BusKind,
) -> Result<(AnyContainment, BackendReport), ContainError> {
    let mut candidates = Vec::new();
    let wants = |k: BackendKind| {
        matches!(choice, BackendChoice::Auto) || choice == BackendChoice::Forced(k)
    };
    let refuse = |backend: BackendKind, reason: &str| ContainError::Unavailable {
        backend: backend.as_str(),
        reason: reason.to_string(),
    };

    if wants(BackendKind::Systemd) {
        match try_systemd(bus).await {
            Ok((scopes, detail)) => {
                candidates.push(Candidate {
                    backend: BackendKind::Systemd,
                    available: true,
                    detail,
                });
                return Ok((
                    AnyContainment::Systemd(scopes),
                    report(BackendKind::Systemd, candidates),
                ));
            }
            Err(reason) if choice == BackendChoice::Forced(BackendKind::Systemd) => {
                return Err(refuse(BackendKind::Systemd, &reason));
            }
            Err(reason) => candidates.push(Candidate {
                backend: BackendKind::Systemd,
                available: false,
                detail: reason,
            }),
        }
    }
    if wants(BackendKind::Cgroupfs) {
        match try_cgroupfs() {
            Ok((tree, detail)) => {
                candidates.push(Candidate {
                    backend: BackendKind::Cgroupfs,
                    available: true,
                    detail,
                });
                return Ok((
                    AnyContainment::Cgroupfs(tree),
                    report(BackendKind::Cgroupfs, candidates),
                ));
            }
            Err(reason) if choice == BackendChoice::Forced(BackendKind::Cgroupfs) => {
                return Err(refuse(BackendKind::Cgroupfs, &reason));
            }
            Err(reason) => candidates.push(Candidate {
                backend: BackendKind::Cgroupfs,
                available: false,
                detail: reason,
            }),
        }
    }
    candidates.push(Candidate {
        backend: BackendKind::Pgroup,
        available: true,
        detail: super::pgroup::LOSSES.to_string(),
    });
    Ok((
        AnyContainment::Pgroup(ProcessGroups::new()),
        report(BackendKind::Pgroup, candidates),
    ))
}

fn report(chosen: BackendKind, candidates: Vec<Candidate>) -> BackendReport {
    BackendReport { chosen, candidates }
}

/// Every backend's availability, none chosen: what `ccscope doctor` shows.
pub async fn survey(bus: BusKind) -> Vec<Candidate> {
    let systemd = match try_systemd(bus).await {
        Ok((_, detail)) => Candidate {
            backend: BackendKind::Systemd,
            available: true,
            detail,
        },
        Err(detail) => Candidate {
            backend: BackendKind::Systemd,
            available: false,
            detail,
        },
    };
    let cgroupfs = match try_cgroupfs() {
        Ok((_, detail)) => Candidate {
            backend: BackendKind::Cgroupfs,
            available: true,
            detail,
        },
        Err(detail) => Candidate {
            backend: BackendKind::Cgroupfs,
            available: false,
            detail,
        },
    };
    let pgroup = Candidate {
        backend: BackendKind::Pgroup,
        available: true,
        detail: "always available as the last resort; without a cgroup it loses atomic kills, \
                 exit events, limits, and processes that leave their group and clear their environment"
            .to_string(),
    };
    vec![systemd, cgroupfs, pgroup]
}
