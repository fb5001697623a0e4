//! Choosing a backend: systemd if its manager answers on the bus, else cgroupfs if a cgroup v2
//! directory is writable, else process groups; each refusal recorded for `ccscope doctor`.

use serde::Serialize;

use super::{
    AnyContainment, BackendKind, BusKind, CgroupTree, ContainError, Containment, ProcessGroups,
    SystemdScopes,
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
    let wants =
        |k: BackendKind| choice == BackendChoice::Auto || choice == BackendChoice::Forced(k);
    if wants(BackendKind::Systemd) {
        match try_systemd(bus).await {
            Ok((scopes, detail)) => {
                return Ok(chosen(AnyContainment::Systemd(scopes), detail, candidates));
            }
            Err(reason) => passed_over(BackendKind::Systemd, reason, choice, &mut candidates)?,
        }
    }
    if wants(BackendKind::Cgroupfs) {
        match try_cgroupfs() {
            Ok((tree, detail)) => {
                return Ok(chosen(AnyContainment::Cgroupfs(tree), detail, candidates));
            }
            Err(reason) => passed_over(BackendKind::Cgroupfs, reason, choice, &mut candidates)?,
        }
    }
    let detail = super::pgroup::LOSSES.to_string();
    Ok(chosen(
        AnyContainment::Pgroup(ProcessGroups::new()),
        detail,
        candidates,
    ))
}

fn chosen(
    containment: AnyContainment,
    detail: String,
    mut candidates: Vec<Candidate>,
) -> (AnyContainment, BackendReport) {
    let backend = containment.kind();
    candidates.push(Candidate {
        backend,
        available: true,
        detail,
    });
    (
        containment,
        BackendReport {
            chosen: backend,
            candidates,
        },
    )
}

/// Records why a backend was not used; an error if it was the one forced.
fn passed_over(
    backend: BackendKind,
    reason: String,
    choice: BackendChoice,
    candidates: &mut Vec<Candidate>,
) -> Result<(), ContainError> {
    if choice == BackendChoice::Forced(backend) {
        return Err(ContainError::Unavailable {
            backend: backend.as_str(),
            reason,
        });
    }
    candidates.push(Candidate {
        backend,
        available: false,
        detail: reason,
    });
    Ok(())
}

impl Candidate {
    fn of<T>(backend: BackendKind, probe: Result<(T, String), String>) -> Candidate {
        match probe {
            Ok((_, detail)) => Candidate {
                backend,
                available: true,
                detail,
            },
            Err(detail) => Candidate {
                backend,
                available: false,
                detail,
            },
        }
    }
}

/// Every backend's availability, none chosen: what `ccscope doctor` shows.
pub async fn survey(bus: BusKind) -> Vec<Candidate> {
    vec![
        Candidate::of(BackendKind::Systemd, try_systemd(bus).await),
        Candidate::of(BackendKind::Cgroupfs, try_cgroupfs()),
        Candidate {
            backend: BackendKind::Pgroup,
            available: true,
            detail: "always available as the last resort; without a cgroup it loses atomic kills, \
                     exit events, limits, and processes that leave their group and clear their environment"
                .to_string(),
        },
    ]
}

/// Every cgroup backend that answers (systemd, cgroupfs), or the process-group one if none
/// does: `stop` looks through all of them, since an earlier run may have used either.
pub async fn all_available(bus: BusKind) -> Vec<AnyContainment> {
    let mut found = Vec::new();
    if let Ok((scopes, _)) = try_systemd(bus).await {
        found.push(AnyContainment::Systemd(scopes));
    }
    if let Ok((tree, _)) = try_cgroupfs() {
        found.push(AnyContainment::Cgroupfs(tree));
    }
    if found.is_empty() {
        found.push(AnyContainment::Pgroup(ProcessGroups::new()));
    }
    found
}
