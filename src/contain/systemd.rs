//! The systemd backend: a transient scope per service instance, `ccscope-<project>-<service>.scope`
//! under `ccscope-<project>.slice`, created over D-Bus with the process already in it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::proxy::CacheProperties;
use zbus::zvariant::Value;

use super::cgroup::{self, Cgroup};
use super::systemd_proxy::ManagerProxy;
use super::{
    BackendKind, ContainError, Containment, LimitReport, ScopeHandle, ScopeSpec,
    UnenforceableLimit, cgroup_frozen, freeze_cgroup, requested_limits, wait_cgroup_empty,
};
use crate::proc::sys;

/// How long systemd may take to run the start job of a scope.
const JOB_DEADLINE: Duration = Duration::from_secs(10);

/// Which bus the manager is reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// The user's session bus and user manager (the default).
    Session,
    /// The system bus and PID 1 (`--system`, as root).
    System,
}

pub struct SystemdScopes {
    manager: ManagerProxy<'static>,
    connection: zbus::Connection,
    /// Where cgroup2 is mounted; unit ControlGroup paths are relative to it.
    v2_mount: PathBuf,
    /// Each project slice's cgroup, once asked: a scope's cgroup is its unit name under it,
    /// so placing a scope needs no question of its own.
    slice_dirs: std::sync::Mutex<std::collections::HashMap<String, PathBuf>>,
}

/// systemd's unit-name escaping of one name part: `-` would mean nesting in slice names, so
/// it becomes `\x2d`, like every byte outside `[A-Za-z0-9:_.]`.
pub fn escape_unit_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for (i, b) in part.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b':' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn unescape_unit_part(part: &str) -> String {
    let mut out = Vec::new();
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(v) = part
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn slice_name(project: &str) -> String {
    format!("ccscope-{}.slice", escape_unit_part(project))
}

pub fn scope_name(project: &str, service: &str, instance: Option<&str>) -> String {
    match instance {
        Some(i) => format!(
            "ccscope-{}-{}-{}.scope",
            escape_unit_part(project),
            escape_unit_part(service),
            escape_unit_part(i)
        ),
        None => format!(
            "ccscope-{}-{}.scope",
            escape_unit_part(project),
            escape_unit_part(service)
        ),
    }
}

/// (service, instance) from a scope name of `project`, or None for someone else's unit.
fn parse_scope_name(project: &str, unit: &str) -> Option<(String, Option<String>)> {
    let rest = unit
        .strip_prefix(&format!("ccscope-{}-", escape_unit_part(project)))?
        .strip_suffix(".scope")?;
    let mut parts = rest.split('-');
    let service = unescape_unit_part(parts.next()?);
    let instance = parts.next().map(unescape_unit_part);
    if parts.next().is_some() {
        return None;
    }
    Some((service, instance))
}

impl SystemdScopes {
    /// Connects to the manager and subscribes to its job signals.
    pub async fn connect(bus: BusKind) -> Result<SystemdScopes, ContainError> {
        let connection = match bus {
            BusKind::Session => zbus::Connection::session().await?,
            BusKind::System => zbus::Connection::system().await?,
        };
        let manager = ManagerProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        manager.subscribe().await?;
        let v2_mount = cgroup::v2_mount()?.ok_or_else(|| ContainError::Unavailable {
            backend: "systemd",
            reason: "no cgroup2 filesystem is mounted".into(),
        })?;
        Ok(SystemdScopes {
            manager,
            connection,
            v2_mount,
            slice_dirs: Default::default(),
        })
    }

    pub async fn version(&self) -> Result<String, ContainError> {
        Ok(self.manager.version().await?)
    }

    /// The cgroup of the project's slice, asked once per connection.
    async fn slice_cgroup(&self, project: &str) -> Result<PathBuf, ContainError> {
        let slice = slice_name(project);
        if let Some(dir) = self.lock_slice_dirs().get(&slice) {
            return Ok(dir.clone());
        }
        let dir = self.unit_cgroup(&slice).await?;
        self.lock_slice_dirs().insert(slice, dir.clone());
        Ok(dir)
    }

    fn lock_slice_dirs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, PathBuf>> {
        // A panic elsewhere cannot leave the map half-written: take it as it is.
        self.slice_dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The unit's cgroup as a directory on disk.
    async fn unit_cgroup(&self, unit: &str) -> Result<PathBuf, ContainError> {
        let path = self.manager.get_unit(unit).await?;
        // ControlGroup lives on the unit type's own interface: a slice is not a scope.
        let interface = if unit.ends_with(".slice") {
            "org.freedesktop.systemd1.Slice"
        } else {
            "org.freedesktop.systemd1.Scope"
        };
        let value = zbus::fdo::PropertiesProxy::builder(&self.connection)
            .destination("org.freedesktop.systemd1")?
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()
            .await?
            .get(
                zbus::names::InterfaceName::from_static_str(interface)
                    .map_err(zbus::Error::from)?,
                "ControlGroup",
            )
            .await
            .map_err(zbus::Error::from)?;
        let relative = String::try_from(value).map_err(zbus::Error::from)?;
        // An inactive unit reports "": that is no cgroup, not the root of all of them.
        if relative.trim_start_matches('/').is_empty() {
            return Err(ContainError::Refused(format!(
                "{unit} has no cgroup (it is not active)"
            )));
        }
        Ok(self.v2_mount.join(relative.trim_start_matches('/')))
    }

    fn handle(
        &self,
        project: &str,
        service: &str,
        instance: Option<String>,
        unit: String,
        cgroup: Option<PathBuf>,
    ) -> ScopeHandle {
        ScopeHandle {
            backend: BackendKind::Systemd,
            project: project.to_string(),
            service: service.to_string(),
            instance,
            unit: Some(unit),
            cgroup,
            pgid: None,
            run_id: None,
        }
    }

    fn unit(scope: &ScopeHandle) -> Result<&str, ContainError> {
        scope.unit.as_deref().ok_or_else(|| {
            ContainError::Refused(format!("{} is not a systemd unit", scope.display_name()))
        })
    }

    /// Starts `ccscope-<project>.service`, a transient user service running `argv` (the
    /// supervisor of `run --detach`), in the project's slice. Returns the unit's name once
    /// systemd has executed it.
    pub async fn start_supervisor_service(
        &self,
        project: &str,
        argv: &[String],
        environment: &[String],
        cwd: &std::path::Path,
    ) -> Result<String, ContainError> {
        let unit = format!("ccscope-{}.service", escape_unit_part(project));
        // A failed unit of an earlier supervisor keeps its name until reset.
        let _ = self.manager.reset_failed_unit(&unit).await;
        let exec = vec![(argv[0].clone(), argv.to_vec(), false)];
        let properties: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from(format!("ccscope supervisor of project {project}")),
            ),
            ("Slice", Value::from(slice_name(project))),
            ("Type", Value::from("exec")),
            ("CollectMode", Value::from("inactive-or-failed")),
            ("ExecStart", Value::from(exec)),
            ("Environment", Value::from(environment.to_vec())),
            ("WorkingDirectory", Value::from(cwd.display().to_string())),
        ];
        self.start_scope(&unit, &properties).await?;
        Ok(unit)
    }

    /// Starts a transient unit and waits for its start job to finish.
    async fn start_scope(
        &self,
        unit: &str,
        properties: &[(&str, Value<'_>)],
    ) -> Result<(), ContainError> {
        // Listen before asking, so the job's end cannot slip past.
        let mut removed = self.manager.receive_job_removed().await?;
        let job = self
            .manager
            .start_transient_unit(unit, "fail", properties, &[])
            .await?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args()?;
                if args.job().as_str() == job.as_str() {
                    return Ok(args.result().to_string());
                }
            }
            Err(ContainError::Refused(
                "the bus closed while waiting for systemd".into(),
            ))
        };
        let result = tokio::time::timeout(JOB_DEADLINE, wait)
            .await
            .map_err(|_| ContainError::JobTimeout(JOB_DEADLINE))??;
        if result != "done" {
            return Err(ContainError::JobFailed {
                unit: unit.to_string(),
                result,
            });
        }
        Ok(())
    }
}

/// Why a scope's start job "failed", when the reason is the one an ordinary user meets: a
/// user manager may move a process only between cgroups it owns, its own tree under
/// user@UID.service, and a shell outside that tree (a login session's `session-N.scope`, a
/// container's root) is not in it. systemd says only "failed"; this says why and what to do.
/// None when that is not the case (root's manager may move anything).
fn outside_manager_tree(
    unit: &str,
    result: &str,
    euid: u32,
    own_cgroup: &str,
    v2_mount: &Path,
) -> Option<String> {
    let manager = format!("user@{euid}.service");
    let inside = own_cgroup.split('/').any(|part| part == manager);
    if result != "failed" || euid == 0 || own_cgroup.is_empty() || inside {
        return None;
    }
    let dir = match own_cgroup.trim_matches('/') {
        "" => v2_mount.to_path_buf(),
        relative => v2_mount.join(relative),
    };
    Some(format!(
        "systemd could not start scope {unit}: the user manager ({manager}) cannot move a \
         process out of cgroup {own_cgroup}, which it does not own (ccscope runs outside the \
         manager's tree); run ccscope from a terminal of your desktop session, or from a shell \
         the user manager starts (`systemd-run --user --pty --same-dir --wait --collect $SHELL`), \
         or use `--backend cgroupfs` if {} is writable to you",
        dir.display()
    ))
}

/// Whether a bus error is systemd's `org.freedesktop.systemd1.<name>`.
fn is_method_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str().ends_with(name))
}

fn limit_properties(spec: &ScopeSpec<'_>) -> Vec<(&'static str, Value<'static>)> {
    let mut props = Vec::new();
    if let Some(bytes) = spec.limits.memory_bytes {
        props.push(("MemoryMax", Value::U64(bytes)));
    }
    if let Some(tasks) = spec.limits.tasks {
        props.push(("TasksMax", Value::U64(tasks)));
    }
    if let Some(percent) = spec.limits.cpu_percent {
        // systemd's CPUQuota=150% is 1.5 s of CPU per second.
        props.push((
            "CPUQuotaPerSecUSec",
            Value::U64(u64::from(percent) * 10_000),
        ));
    }
    props
}

/// systemd accepts limits on any scope and silently does not apply those whose controller is
/// not in the scope's cgroup (as on hybrid hosts, where they are bound to v1): say so instead.
fn check_limits(spec: &ScopeSpec<'_>, cgroup: &Cgroup) -> LimitReport {
    let mut report = LimitReport::default();
    let wanted = requested_limits(spec.limits);
    if wanted.is_empty() {
        return report;
    }
    // The controllers a scope can use are those its parent hands down.
    let available = cgroup.controllers().unwrap_or_default();
    for (limit, controller) in wanted {
        if available.iter().any(|c| c == controller) {
            report.applied.push(limit.to_string());
        } else {
            report.unenforceable.push(UnenforceableLimit {
                limit,
                controller,
                reason: format!(
                    "the {controller} controller is not enabled for {} (on hybrid hosts it is bound to cgroup v1)",
                    cgroup.path.display()
                ),
            });
        }
    }
    report
}

impl Containment for SystemdScopes {
    fn kind(&self) -> BackendKind {
        BackendKind::Systemd
    }

    async fn place(
        &self,
        spec: &ScopeSpec<'_>,
        pid: i32,
    ) -> Result<(ScopeHandle, LimitReport), ContainError> {
        let unit = scope_name(spec.project, spec.service, spec.instance);
        let slice = slice_name(spec.project);
        let mut properties: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(spec.description.as_str())),
            ("Slice", Value::from(slice.as_str())),
            ("PIDs", Value::from(vec![pid as u32])),
            // Delegate=yes so strays can later be attached into the scope.
            ("Delegate", Value::from(true)),
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        properties.extend(limit_properties(spec));
        let mut started = self.start_scope(&unit, &properties).await;
        if matches!(&started, Err(ContainError::Bus(e)) if is_method_error(e, "UnitExists")) {
            // A failed scope of an earlier start keeps its name until reset: reset, and try
            // once more (asked only then, not before every start).
            let _ = self.manager.reset_failed_unit(&unit).await;
            started = self.start_scope(&unit, &properties).await;
        }
        match started {
            Err(ContainError::Bus(e)) if is_method_error(&e, "UnitExists") => {
                return Err(ContainError::AlreadyPopulated {
                    what: "systemd scope",
                    name: unit,
                });
            }
            Err(ContainError::JobFailed { unit, result }) => {
                // The process to move is in the cgroup we are in.
                let own = cgroup::cgroup_of(pid)
                    .or_else(|_| cgroup::cgroup_of(std::process::id() as i32))
                    .unwrap_or_default();
                let why = outside_manager_tree(&unit, &result, sys::euid(), &own, &self.v2_mount);
                return Err(why.map_or(
                    ContainError::JobFailed { unit, result },
                    ContainError::Refused,
                ));
            }
            other => other?,
        }
        let placed = async {
            let actual = cgroup::cgroup_of(pid)?;
            // The scope's cgroup is its name under the slice's; asked of systemd only if the
            // process is not found there.
            let expected = self
                .slice_cgroup(spec.project)
                .await
                .ok()
                .map(|s| s.join(&unit))
                .filter(|dir| cgroup::is_cgroup(dir, &actual));
            let dir = match expected {
                Some(dir) => dir,
                None => self.unit_cgroup(&unit).await?,
            };
            Ok::<_, ContainError>((dir, actual))
        }
        .await;
        let (cgroup_dir, actual) = match placed {
            Ok(p) => p,
            Err(e) => {
                let _ = self.manager.stop_unit(&unit, "replace").await;
                return Err(e);
            }
        };
        if !cgroup::is_cgroup(&cgroup_dir, &actual) {
            let _ = self.manager.stop_unit(&unit, "replace").await;
            return Err(ContainError::NotPlaced {
                pid,
                expected: cgroup_dir.display().to_string(),
                actual,
            });
        }
        let limits = check_limits(spec, &Cgroup::at(&cgroup_dir));
        let handle = self.handle(
            spec.project,
            spec.service,
            spec.instance.map(str::to_string),
            unit,
            Some(cgroup_dir),
        );
        Ok((handle, limits))
    }

    async fn processes(&self, scope: &ScopeHandle) -> Result<Vec<i32>, ContainError> {
        Ok(match &scope.cgroup {
            Some(c) => super::live(Cgroup::at(c).all_procs()),
            None => Vec::new(),
        })
    }

    async fn signal(&self, scope: &ScopeHandle, signal: i32) -> Result<usize, ContainError> {
        // Straight through the delegated cgroup: no round trip through the manager, which
        // handles its calls one at a time (40 scopes signalled at once would queue).
        if let Some(dir) = &scope.cgroup {
            return Ok(Cgroup::at(dir).signal_each(signal));
        }
        let before = self.processes(scope).await?.len();
        match self
            .manager
            .kill_unit(Self::unit(scope)?, "all", signal)
            .await
        {
            Ok(()) => Ok(before),
            Err(e) if is_method_error(&e, "NoSuchUnit") => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    async fn kill(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        // cgroup.kill is atomic and needs no round trip; KillUnit where the kernel lacks it.
        if let Some(dir) = &scope.cgroup {
            let cg = Cgroup::at(dir);
            if dir.join("cgroup.kill").exists() {
                return match cg.kill() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                };
            }
        }
        match self
            .manager
            .kill_unit(Self::unit(scope)?, "all", libc::SIGKILL)
            .await
        {
            Err(e) if is_method_error(&e, "NoSuchUnit") => Ok(()),
            other => Ok(other?),
        }
    }

    async fn wait_empty(
        &self,
        scope: &ScopeHandle,
        deadline: Duration,
    ) -> Result<bool, ContainError> {
        match &scope.cgroup {
            Some(dir) => wait_cgroup_empty(dir.clone(), deadline).await,
            None => Ok(true),
        }
    }

    async fn release(&self, scope: &ScopeHandle) -> Result<(), ContainError> {
        let unit = Self::unit(scope)?;
        // An empty scope is collected by systemd itself; stop it if it lingers, reset if failed.
        let _ = self.manager.stop_unit(unit, "replace").await;
        let _ = self.manager.reset_failed_unit(unit).await;
        // The project's slice stays: stopping it would stop every scope in it, including one
        // being placed at this moment by a parallel launch.
        Ok(())
    }

    async fn adopt(&self, scope: &ScopeHandle, pid: i32) -> Result<(), ContainError> {
        Ok(self
            .manager
            .attach_processes_to_unit(Self::unit(scope)?, "", &[pid as u32])
            .await?)
    }

    /// FreezeUnit/ThawUnit, so systemd knows (`systemctl status` says `frozen`), then the
    /// kernel's word that it is done. systemd answers once it has seen the cgroup frozen, but
    /// says no where it has no freezer of its own (a hybrid cgroup host, before v254) and
    /// answers at once when it thinks the unit is already so (frozen behind its back): then
    /// the scope's own `cgroup.freeze` is written, and waited on.
    async fn freeze(&self, scope: &ScopeHandle, frozen: bool) -> Result<(), ContainError> {
        let unit = Self::unit(scope)?;
        let asked = if frozen {
            self.manager.freeze_unit(unit).await
        } else {
            self.manager.thaw_unit(unit).await
        };
        match asked {
            Ok(()) => {}
            Err(e) if is_method_error(&e, "NotSupported") && scope.cgroup.is_some() => {
                tracing::debug!("{unit}: systemd cannot freeze here ({e}): cgroup.freeze");
            }
            Err(e) if is_method_error(&e, "NoSuchUnit") => {
                return Err(ContainError::Refused(format!("{unit} is not running")));
            }
            Err(e) => return Err(e.into()),
        }
        let Some(dir) = &scope.cgroup else {
            return Ok(());
        };
        if cgroup_frozen(dir)? == frozen {
            return Ok(());
        }
        freeze_cgroup(dir.clone(), frozen).await
    }

    async fn is_frozen(&self, scope: &ScopeHandle) -> Result<bool, ContainError> {
        match &scope.cgroup {
            Some(dir) => cgroup_frozen(dir),
            None => Ok(false),
        }
    }

    fn is_scope_dir(&self, name: &str) -> bool {
        name.ends_with(".scope")
    }

    async fn list(&self, project: &str) -> Result<Vec<ScopeHandle>, ContainError> {
        let pattern = format!("ccscope-{}-*.scope", escape_unit_part(project));
        let rows = self
            .manager
            .list_units_by_patterns(&[], &[pattern.as_str()])
            .await?;
        tracing::debug!(units = rows.len(), "systemd: units listed");
        let mut handles = Vec::new();
        // One question for the slice instead of one per scope: the manager answers one call at
        // a time, and a scope's cgroup is its unit name under its slice's.
        let slice = self.slice_cgroup(project).await.ok();
        for row in rows {
            // (name, description, load state, active state, …): an inactive scope holds nothing.
            if row.3 == "inactive" {
                continue;
            }
            let unit = row.0;
            let Some((service, instance)) = parse_scope_name(project, &unit) else {
                continue;
            };
            let cgroup = match slice.as_ref().map(|s| s.join(&unit)).filter(|c| c.is_dir()) {
                Some(c) => Some(c),
                None => self.unit_cgroup(&unit).await.ok(),
            };
            handles.push(self.handle(project, &service, instance, unit, cgroup));
        }
        handles.sort_by(|a, b| a.unit.cmp(&b.unit));
        Ok(handles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_dashes_so_projects_never_nest() {
        assert_eq!(
            slice_name("context-cleaner"),
            "ccscope-context\\x2dcleaner.slice"
        );
        assert_eq!(
            scope_name("cc", "bridge_sync", None),
            "ccscope-cc-bridge_sync.scope"
        );
        assert_eq!(
            scope_name("a-b", "c-d", Some("42")),
            "ccscope-a\\x2db-c\\x2dd-42.scope"
        );
    }

    #[test]
    fn scope_names_parse_back_for_their_project_only() {
        let unit = scope_name("a-b", "c-d", Some("42"));
        assert_eq!(
            parse_scope_name("a-b", &unit),
            Some(("c-d".into(), Some("42".into())))
        );
        assert_eq!(
            parse_scope_name("a", &unit),
            None,
            "project `a` must not claim project `a-b`'s scopes"
        );
        assert_eq!(
            parse_scope_name("cc", "ccscope-cc-web.scope"),
            Some(("web".into(), None))
        );
        assert_eq!(parse_scope_name("cc", "ccscope-cc-web.service"), None);
    }

    #[test]
    fn a_failed_job_of_a_user_outside_its_managers_tree_is_explained() {
        let mount = Path::new("/sys/fs/cgroup");
        let session = "/user.slice/user-1000.slice/session-3.scope";
        let why = outside_manager_tree("ccscope-p-web.scope", "failed", 1000, session, mount)
            .expect("explained");
        assert_eq!(
            why,
            "systemd could not start scope ccscope-p-web.scope: the user manager \
             (user@1000.service) cannot move a process out of cgroup \
             /user.slice/user-1000.slice/session-3.scope, which it does not own (ccscope runs \
             outside the manager's tree); run ccscope from a terminal of your desktop session, \
             or from a shell the user manager starts (`systemd-run --user --pty --same-dir \
             --wait --collect $SHELL`), or use `--backend cgroupfs` if \
             /sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope is writable to you"
        );
    }

    #[test]
    fn other_job_failures_are_left_as_systemd_said_them() {
        let mount = Path::new("/sys/fs/cgroup");
        let term = "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope";
        let session = "/user.slice/user-1000.slice/session-3.scope";
        // Inside the manager's tree, as root, another result, or our cgroup unknown.
        assert_eq!(outside_manager_tree("u", "failed", 1000, term, mount), None);
        assert_eq!(outside_manager_tree("u", "failed", 0, session, mount), None);
        assert_eq!(
            outside_manager_tree("u", "timeout", 1000, session, mount),
            None
        );
        assert_eq!(outside_manager_tree("u", "failed", 1000, "", mount), None);
        // At the root of the hierarchy (a container's shell), the mount itself is named.
        let root = outside_manager_tree("u", "failed", 1000, "/", mount).unwrap();
        assert!(
            root.ends_with("if /sys/fs/cgroup is writable to you"),
            "{root}"
        );
        // Another user's manager is not ours.
        let elses = "/user.slice/user-1001.slice/user@1001.service/app.slice/x.scope";
        assert!(outside_manager_tree("u", "failed", 1000, elses, mount).is_some());
    }
}
