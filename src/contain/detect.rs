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
        ContainError::Bus(ref b) if is_unreachable(b) => no_bus(bus, b),
        other => describe(&other),
    })?;
    let version = scopes.version().await.map_err(|e| {
        format!(
            "the {} did not say its version: {}",
            manager_name(bus),
            describe(&e)
        )
    })?;
    Ok((scopes, format!("systemd {version}, {}", manager_name(bus))))
}

fn manager_name(bus: BusKind) -> &'static str {
    match bus {
        BusKind::Session => "user manager on the session bus",
        BusKind::System => "system manager on the system bus",
    }
}

/// The bus itself could not be reached (as opposed to the manager on it refusing).
fn is_unreachable(e: &zbus::Error) -> bool {
    matches!(
        e,
        zbus::Error::Address(_)
            | zbus::Error::InputOutput(_)
            | zbus::Error::Connection(..)
            | zbus::Error::Handshake(_)
    )
}

/// No bus to talk to: what failed, on which address, and how to get one.
fn no_bus(bus: BusKind, e: &zbus::Error) -> String {
    let (which, variable, advice) = match bus {
        BusKind::Session => (
            "session",
            "DBUS_SESSION_BUS_ADDRESS",
            "log in so the user manager runs (or `loginctl enable-linger $USER`), or point \
             DBUS_SESSION_BUS_ADDRESS (unset: $XDG_RUNTIME_DIR/bus) at its bus; as root, \
             --system uses the system manager",
        ),
        BusKind::System => (
            "system",
            "DBUS_SYSTEM_BUS_ADDRESS",
            "check that systemd and D-Bus run on this host (`systemctl is-system-running`), \
             or set DBUS_SYSTEM_BUS_ADDRESS to the system bus",
        ),
    };
    let failure = match e {
        zbus::Error::Address(why) => format!(
            "{variable}=`{}` is not a D-Bus address ({why})",
            std::env::var(variable).unwrap_or_default()
        ),
        other => describe_bus(other),
    };
    format!("no {which} bus: {failure}; {advice}")
}

/// A containment error in words, without a bare `(os error N)`.
fn describe(e: &ContainError) -> String {
    match e {
        ContainError::Io(io) => crate::proc::describe_io(io),
        ContainError::Bus(b) => describe_bus(b),
        other => other.to_string(),
    }
}

/// A D-Bus error in words: zbus's own text ends an I/O cause with "(os error 2)".
pub(crate) fn describe_bus(e: &zbus::Error) -> String {
    use crate::proc::describe_io;
    match e {
        zbus::Error::Connection(io, address) => {
            format!("could not connect to `{address}`: {}", describe_io(io))
        }
        zbus::Error::InputOutput(io) => {
            format!("the bus connection failed: {}", describe_io(io))
        }
        zbus::Error::Handshake(why) => format!("the D-Bus handshake failed: {why}"),
        other => {
            let text = other.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_bus_that_is_not_there_is_named_with_its_address_and_what_to_do() {
        let address = zbus::Address::from_str("unix:path=/nonexistent").unwrap();
        let e = zbus::Error::Connection(
            Arc::new(std::io::Error::from_raw_os_error(libc::ENOENT)),
            address,
        );
        assert_eq!(
            describe_bus(&e),
            "could not connect to `unix:path=/nonexistent`: no such file or directory"
        );
        let said = no_bus(BusKind::Session, &e);
        assert!(
            said.starts_with("no session bus: could not connect"),
            "{said}"
        );
        assert!(said.contains("DBUS_SESSION_BUS_ADDRESS"), "{said}");
        let io = zbus::Error::InputOutput(Arc::new(std::io::Error::from_raw_os_error(
            libc::ECONNRESET,
        )));
        assert!(
            !describe_bus(&io).contains("os error"),
            "{}",
            describe_bus(&io)
        );
    }
}
