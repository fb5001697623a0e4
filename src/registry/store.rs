//! Opening the registry (permissions, corruption, migrations) and its typed operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::migrations::{self, Migration};
use super::{
    NewProcess, NewRun, ProcessFilter, ProcessRecord, ProcessSource, ProcessStatus, ProjectRecord,
    RegistryError, RunRecord, RunState, ServiceStateRecord, StateDir, VerifiedDir,
};
use crate::proc::{LivenessProbe, ProcessIdentity};

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

/// What opening found and did, for the caller to tell the user.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The corrupt file was moved here and a fresh registry created.
    pub moved_aside: Option<PathBuf>,
    /// Permission repairs made on the directory or file.
    pub repairs: Vec<String>,
}

const PROCESS_COLUMNS: &str = "pid, start_time, command_line, project, service, run_id, unit, cgroup, ports, status, source, registered_at_ms";

impl Registry {
    /// Opens (creating if needed) the registry in `state_dir`, which is opened and verified
    /// first; the file is created and checked relative to that directory's descriptor, never
    /// through a link.
    pub fn open(state_dir: &StateDir) -> Result<(Registry, OpenReport), RegistryError> {
        let (dir, repairs) = state_dir.open()?;
        let mut report = OpenReport {
            repairs,
            ..OpenReport::default()
        };
        let path = dir.join(REGISTRY_FILE);
        report.repairs.extend(ensure_registry_file(&dir)?);
        let opened = match retry_busy(|| open_checked(&path)) {
            Ok(opened) => opened,
            Err(e) if is_corruption(&e) => {
                let aside = move_aside(&dir)?;
                report.moved_aside = Some(aside);
                ensure_registry_file(&dir)?;
                retry_busy(|| open_checked(&path)).map_err(|source| sqlite(&path, source))?
            }
            Err(source) => return Err(sqlite(&path, source)),
        };
        let conn = match opened {
            Opened::Usable(conn) => conn,
            Opened::TooNew(found) => {
                return Err(RegistryError::SchemaTooNew {
                    path,
                    found,
                    supported: migrations::LATEST,
                });
            }
        };
        let registry = Registry::from_connection(conn, path)?;
        Ok((registry, report))
    }

    /// A private registry in memory, for tests and benchmarks.
    pub fn open_in_memory() -> Result<Registry, RegistryError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|s| sqlite(&path, s))?;
        Registry::from_connection(conn, path)
    }

    fn from_connection(mut conn: Connection, path: PathBuf) -> Result<Registry, RegistryError> {
        match retry_busy(|| migrations::migrate(&mut conn)).map_err(|s| sqlite(&path, s))? {
            Migration::TooNew { found } => Err(RegistryError::SchemaTooNew {
                path,
                found,
                supported: migrations::LATEST,
            }),
            Migration::UpToDate | Migration::Applied { .. } => Ok(Registry { conn, path }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> RegistryError {
        sqlite(&self.path, source)
    }

    /// Records a process; registering the same (pid, start time) again updates it.
    pub fn register(&self, p: &NewProcess) -> Result<(), RegistryError> {
        self.conn
            .prepare_cached(
                "INSERT INTO processes (pid, start_time, command_line, project, service, run_id, unit, cgroup, ports, status, source, registered_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (pid, start_time) DO UPDATE SET
                   command_line = excluded.command_line, project = excluded.project, service = excluded.service,
                   run_id = excluded.run_id, unit = excluded.unit, cgroup = excluded.cgroup, ports = excluded.ports,
                   status = excluded.status, source = excluded.source",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    p.identity.pid,
                    p.identity.start_time as i64,
                    p.command_line,
                    p.project,
                    p.service,
                    p.run_id,
                    p.unit,
                    p.cgroup,
                    join_ports(&p.ports),
                    p.status.code(),
                    p.source.code(),
                    now_ms(),
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forgets a process. Returns whether it was registered.
    pub fn unregister(&self, id: ProcessIdentity) -> Result<bool, RegistryError> {
        self.conn
            .prepare_cached("DELETE FROM processes WHERE pid = ?1 AND start_time = ?2")
            .and_then(|mut stmt| stmt.execute(params![id.pid, id.start_time as i64]))
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Forgets processes, in one transaction (one write to the log, not one each). Returns
    /// how many were registered.
    pub fn unregister_all(&self, ids: &[ProcessIdentity]) -> Result<usize, RegistryError> {
        self.in_write_transaction(|tx| {
            let mut stmt =
                tx.prepare_cached("DELETE FROM processes WHERE pid = ?1 AND start_time = ?2")?;
            let mut dropped = 0;
            for id in ids {
                dropped += stmt.execute(params![id.pid, id.start_time as i64])?;
            }
            Ok(dropped)
        })
    }

    /// Sets a process's status. Returns whether it was registered.
    pub fn mark_status(
        &self,
        id: ProcessIdentity,
        status: ProcessStatus,
    ) -> Result<bool, RegistryError> {
        self.conn
            .prepare_cached("UPDATE processes SET status = ?3 WHERE pid = ?1 AND start_time = ?2")
            .and_then(|mut stmt| stmt.execute(params![id.pid, id.start_time as i64, status.code()]))
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// The registered processes, ordered by project, service and pid.
    pub fn list(&self, filter: ProcessFilter<'_>) -> Result<Vec<ProcessRecord>, RegistryError> {
        let order = "ORDER BY project, service, pid";
        let result = match filter {
            ProcessFilter::All => self.query_processes(&format!("SELECT {PROCESS_COLUMNS} FROM processes {order}"), params![]),
            ProcessFilter::Project(project) => self.query_processes(
                &format!("SELECT {PROCESS_COLUMNS} FROM processes WHERE project = ?1 {order}"),
                params![project],
            ),
            ProcessFilter::Service { project, service } => self.query_processes(
                &format!("SELECT {PROCESS_COLUMNS} FROM processes WHERE project = ?1 AND service = ?2 {order}"),
                params![project, service],
            ),
        };
        result.map_err(|e| self.err(e))
    }

    fn query_processes(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> rusqlite::Result<Vec<ProcessRecord>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(args)?;
        // Rows arrive sorted by project and service, so neighbours share most of their text:
        // reuse the previous row's string instead of allocating the same one again.
        let mut shared: [Option<Arc<str>>; 5] = Default::default();
        let mut records = Vec::new();
        while let Some(row) = rows.next()? {
            let mut text = |column: usize, slot: usize| -> rusqlite::Result<Option<Arc<str>>> {
                let Some(bytes) = row.get_ref(column)?.as_bytes_or_null()? else {
                    return Ok(None);
                };
                match &shared[slot] {
                    Some(prev) if prev.as_bytes() == bytes => Ok(Some(prev.clone())),
                    _ => {
                        let value = std::str::from_utf8(bytes)
                            .map_err(|e| rusqlite::Error::Utf8Error(column, e))?;
                        let fresh: Arc<str> = Arc::from(value);
                        shared[slot] = Some(fresh.clone());
                        Ok(Some(fresh))
                    }
                }
            };
            let project = text(3, 0)?.unwrap_or_default();
            let service = text(4, 1)?.unwrap_or_default();
            let run_id = text(5, 2)?;
            let unit = text(6, 3)?;
            let cgroup = text(7, 4)?;
            records.push(ProcessRecord {
                pid: row.get(0)?,
                start_time: row.get::<_, i64>(1)? as u64,
                command_line: row.get(2)?,
                project,
                service,
                run_id,
                unit,
                cgroup,
                ports: split_ports(row.get_ref(8)?.as_bytes()?),
                status: ProcessStatus::from_code(row.get(9)?).unwrap_or(ProcessStatus::Running),
                source: ProcessSource::from_code(row.get(10)?).unwrap_or(ProcessSource::Discovered),
                registered_at_ms: row.get(11)?,
            });
        }
        Ok(records)
    }

    /// Drops every process record whose (pid, start time) no longer exists or is a zombie.
    /// Returns how many were dropped.
    pub fn cleanup_stale(&self, probe: &dyn LivenessProbe) -> Result<usize, RegistryError> {
        let dead: Vec<ProcessIdentity> = self
            .list(ProcessFilter::All)?
            .into_iter()
            .map(|r| r.identity())
            .filter(|id| !probe.is_alive(*id))
            .collect();
        self.unregister_all(&dead)
    }

    pub fn start_run(&self, run: &NewRun) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "INSERT INTO runs (run_id, project, supervisor_pid, supervisor_start_time, started_at_ms, state, config_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.run_id,
                    run.project,
                    run.supervisor.pid,
                    run.supervisor.start_time as i64,
                    now_ms(),
                    RunState::Running.as_str(),
                    run.config_hash
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Sets a run's state; `Ended` also stamps the end time. Returns whether the run exists.
    pub fn set_run_state(&self, run_id: &str, state: RunState) -> Result<bool, RegistryError> {
        let ended = (state == RunState::Ended).then(now_ms);
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, ended_at_ms = COALESCE(?3, ended_at_ms) WHERE run_id = ?1",
                params![run_id, state.as_str(), ended],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Records the stack definition a run now runs (a reload changed it): a later run adopts
    /// back what this one leaves only with the same one.
    pub fn set_run_config_hash(&self, run_id: &str, hash: &str) -> Result<bool, RegistryError> {
        self.conn
            .execute(
                "UPDATE runs SET config_hash = ?2 WHERE run_id = ?1",
                params![run_id, hash],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, RegistryError> {
        self.conn
            .query_row(
                "SELECT run_id, project, supervisor_pid, supervisor_start_time, started_at_ms, ended_at_ms, state, config_hash FROM runs WHERE run_id = ?1",
                params![run_id],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records that `project` runs now from `config_path` (None: a built-in profile). An
    /// enabled project keeps the file it was enabled with: a run of another file of the same
    /// name (a worktree, a try-out) does not change what its unit starts.
    pub fn note_project_run(
        &self,
        project: &str,
        config_path: Option<&str>,
    ) -> Result<(), RegistryError> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO projects (project, config_path, last_run_ms, last_outcome, updated_at_ms)
                 VALUES (?1, ?2, ?3, NULL, ?3)
                 ON CONFLICT(project) DO UPDATE SET
                   config_path = CASE WHEN projects.unit IS NULL THEN excluded.config_path
                                      ELSE projects.config_path END,
                   last_run_ms = excluded.last_run_ms, last_outcome = NULL,
                   updated_at_ms = excluded.updated_at_ms",
                params![project, config_path, now],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records how `project`'s run ended (`stopped`, `failed: …`).
    pub fn note_project_outcome(&self, project: &str, outcome: &str) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "UPDATE projects SET last_outcome = ?2, updated_at_ms = ?3 WHERE project = ?1",
                params![project, outcome, now_ms()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records `project` (from `config_path`) as enabled as `unit`, or no longer (`None`).
    pub fn set_project_unit(
        &self,
        project: &str,
        config_path: Option<&str>,
        unit: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "INSERT INTO projects (project, config_path, unit, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(project) DO UPDATE SET
                   config_path = COALESCE(excluded.config_path, config_path),
                   unit = excluded.unit, updated_at_ms = excluded.updated_at_ms",
                params![project, config_path, unit, now_ms()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The projects of the index, by name.
    pub fn projects(&self) -> Result<Vec<ProjectRecord>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT project, config_path, last_run_ms, last_outcome, unit FROM projects ORDER BY project",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |row| {
            Ok(ProjectRecord {
                project: row.get(0)?,
                config_path: row.get(1)?,
                last_run_ms: row.get(2)?,
                last_outcome: row.get(3)?,
                unit: row.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// One project of the index.
    pub fn project(&self, project: &str) -> Result<Option<ProjectRecord>, RegistryError> {
        Ok(self.projects()?.into_iter().find(|p| p.project == project))
    }

    /// Runs, newest first; of one project if given.
    pub fn list_runs(&self, project: Option<&str>) -> Result<Vec<RunRecord>, RegistryError> {
        let sql = "SELECT run_id, project, supervisor_pid, supervisor_start_time, started_at_ms, ended_at_ms, state, config_hash
                   FROM runs WHERE ?1 IS NULL OR project = ?1 ORDER BY started_at_ms DESC, run_id";
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project], run_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Drops runs whose supervisor is gone and that no process record still points at; a run
    /// whose supervisor is gone but whose processes remain is marked `orphaned` instead, so
    /// their ownership is not forgotten. Returns how many runs were dropped.
    pub fn cleanup_stale_runs(&self, probe: &dyn LivenessProbe) -> Result<usize, RegistryError> {
        let dead: Vec<String> = self
            .list_runs(None)?
            .into_iter()
            .filter(|r| {
                !probe.is_alive(ProcessIdentity {
                    pid: r.supervisor_pid,
                    start_time: r.supervisor_start_time,
                })
            })
            .map(|r| r.run_id)
            .collect();
        self.in_write_transaction(|tx| {
            let mut dropped = 0;
            for run_id in &dead {
                let deleted = tx.execute(
                    "DELETE FROM runs WHERE run_id = ?1 AND NOT EXISTS (SELECT 1 FROM processes WHERE run_id = ?1)",
                    params![run_id],
                )?;
                if deleted == 0 {
                    tx.execute(
                        "UPDATE runs SET state = ?2 WHERE run_id = ?1 AND state != ?3",
                        params![run_id, RunState::Orphaned.as_str(), RunState::Ended.as_str()],
                    )?;
                }
                dropped += deleted;
            }
            Ok(dropped)
        })
    }

    /// A short write transaction that takes the write lock up front, so it never fails halfway
    /// with a busy snapshot.
    /// Records what the supervisor knows about a service, replacing the previous row.
    pub fn set_service_state(&self, s: &ServiceStateRecord) -> Result<(), RegistryError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO service_states
                 (project, service, run_id, state, ready, restarts, main_pid, last_exit, message, since_ms, updated_at_ms, last_trigger)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    s.project,
                    s.service,
                    s.run_id,
                    s.state,
                    s.ready,
                    s.restarts,
                    s.main_pid,
                    s.last_exit,
                    s.message,
                    s.since_ms,
                    now_ms(),
                    s.trigger
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The supervisor's last word on each service of `project`, by service name.
    pub fn service_states(&self, project: &str) -> Result<Vec<ServiceStateRecord>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT project, service, run_id, state, ready, restarts, main_pid, last_exit, message, since_ms, updated_at_ms, last_trigger
                 FROM service_states WHERE project = ?1 ORDER BY service",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![project], |row| {
                Ok(ServiceStateRecord {
                    project: row.get(0)?,
                    service: row.get(1)?,
                    run_id: row.get(2)?,
                    state: row.get(3)?,
                    ready: row.get(4)?,
                    restarts: row.get(5)?,
                    main_pid: row.get(6)?,
                    last_exit: row.get(7)?,
                    message: row.get(8)?,
                    since_ms: row.get(9)?,
                    updated_at_ms: row.get(10)?,
                    trigger: row.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Forgets the supervisor's view of `project` (after a stop).
    pub fn clear_service_states(&self, project: &str) -> Result<usize, RegistryError> {
        self.conn
            .execute(
                "DELETE FROM service_states WHERE project = ?1",
                params![project],
            )
            .map_err(|e| self.err(e))
    }

    /// Forgets the supervisor's view of `services` of `project` only (after a stop of them),
    /// in one transaction.
    pub fn clear_service_states_of(
        &self,
        project: &str,
        services: &[String],
    ) -> Result<usize, RegistryError> {
        self.in_write_transaction(|tx| {
            let mut stmt = tx
                .prepare_cached("DELETE FROM service_states WHERE project = ?1 AND service = ?2")?;
            let mut removed = 0;
            for service in services {
                removed += stmt.execute(params![project, service])?;
            }
            Ok(removed)
        })
    }

    fn in_write_transaction<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, RegistryError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let value = work(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let state: String = row.get(6)?;
    Ok(RunRecord {
        run_id: row.get(0)?,
        project: row.get(1)?,
        supervisor_pid: row.get(2)?,
        supervisor_start_time: row.get::<_, i64>(3)? as u64,
        started_at_ms: row.get(4)?,
        ended_at_ms: row.get(5)?,
        state: RunState::parse(&state).unwrap_or(RunState::Orphaned),
        config_hash: row.get(7)?,
    })
}

/// Opens the file, sets the connection up, and proves it is a sound SQLite database.
/// Opens the file and proves it is a sound SQLite database of a schema this build knows;
/// only then is anything written to it (the switch to WAL mode writes its header).
fn open_checked(path: &Path) -> Result<Opened, rusqlite::Error> {
    // The path is canonical and the file was checked through the directory's descriptor;
    // NOFOLLOW makes SQLite refuse a link that appeared since, and it opens its -wal, -shm
    // and -journal files with O_NOFOLLOW itself.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(verdict),
        ));
    }
    let version = migrations::user_version(&conn)?;
    if !(0..=migrations::LATEST).contains(&version) {
        return Ok(Opened::TooNew(version));
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "registry could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(Opened::Usable(conn))
}

enum Opened {
    Usable(Connection),
    TooNew(i64),
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// The registry's file name in the state directory.
const REGISTRY_FILE: &str = "registry.db";
/// The files SQLite keeps beside it.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates the registry file 0600 if it is missing and tightens the mode of an existing one,
/// through the directory's descriptor; refuses a link, or anything but a file of ours, there
/// or where SQLite's side files go (SQLite opens those by path).
fn ensure_registry_file(dir: &VerifiedDir) -> Result<Option<String>, RegistryError> {
    for suffix in SIDE_FILES {
        dir.check_entry(&format!("{REGISTRY_FILE}{suffix}"))?;
    }
    let (_file, repair) = dir.create_file(REGISTRY_FILE, false)?;
    Ok(repair)
}

/// Renames the corrupt file (and its WAL and shared-memory files) to `…corrupt-<timestamp>`.
fn move_aside(dir: &VerifiedDir) -> Result<PathBuf, RegistryError> {
    let stamp = utc_stamp(SystemTime::now());
    let aside = format!("{REGISTRY_FILE}.corrupt-{stamp}");
    dir.rename(REGISTRY_FILE, &aside)?;
    for suffix in SIDE_FILES {
        let side = format!("{REGISTRY_FILE}{suffix}");
        if dir.check_entry(&side)?.is_some() {
            // The main file is already aside; a side file that cannot move is removed so the
            // fresh database does not pick it up.
            if dir.rename(&side, &format!("{aside}{suffix}")).is_err() {
                dir.remove_file(&side)?;
            }
        }
    }
    Ok(dir.join(&aside))
}

/// `20261128T041500Z` for the given instant.
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// SQLite answers some lock conflicts without calling the busy handler: a switch to WAL mode,
/// WAL recovery by another connection, a schema change racing a first open. Those are retried
/// here, with a short growing pause, for as long as the busy timeout.
fn retry_busy<T>(mut attempt: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match attempt() {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> RegistryError {
    RegistryError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn join_ports(ports: &[u16]) -> String {
    let strings: Vec<String> = ports.iter().map(u16::to_string).collect();
    strings.join(",")
}

fn split_ports(text: &[u8]) -> Vec<u16> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(|b| *b == b',')
        .filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::registry::StateDirOrigin;

    struct FakeLiveness(HashSet<ProcessIdentity>);

    impl LivenessProbe for FakeLiveness {
        fn is_alive(&self, id: ProcessIdentity) -> bool {
            self.0.contains(&id)
        }
    }

    fn id(pid: i32, start_time: u64) -> ProcessIdentity {
        ProcessIdentity { pid, start_time }
    }

    fn process(pid: i32, start: u64, service: &str) -> NewProcess {
        NewProcess {
            identity: id(pid, start),
            command_line: format!("/bin/{service} --serve"),
            project: "demo".into(),
            service: service.into(),
            run_id: Some("run1".into()),
            unit: Some(format!("ccscope-demo-{service}.scope")),
            cgroup: None,
            ports: vec![8110, 8111],
            status: ProcessStatus::Running,
            source: ProcessSource::Launched,
        }
    }

    #[test]
    fn register_list_mark_unregister() {
        let r = Registry::open_in_memory().unwrap();
        r.register(&process(10, 100, "web")).unwrap();
        r.register(&process(11, 100, "db")).unwrap();
        let mut other = process(12, 100, "web");
        other.project = "other".into();
        r.register(&other).unwrap();

        assert_eq!(r.list(ProcessFilter::All).unwrap().len(), 3);
        let demo = r.list(ProcessFilter::Project("demo")).unwrap();
        assert_eq!(
            demo.iter().map(|p| &*p.service).collect::<Vec<_>>(),
            ["db", "web"]
        );
        assert_eq!(demo[1].ports, vec![8110, 8111]);
        let web = r
            .list(ProcessFilter::Service {
                project: "demo",
                service: "web",
            })
            .unwrap();
        assert_eq!(web.len(), 1);
        assert_eq!(web[0].identity(), id(10, 100));

        assert!(r.mark_status(id(10, 100), ProcessStatus::Stopping).unwrap());
        assert!(
            !r.mark_status(id(10, 999), ProcessStatus::Stopping).unwrap(),
            "another start time is another process"
        );
        assert_eq!(
            r.list(ProcessFilter::Service {
                project: "demo",
                service: "web"
            })
            .unwrap()[0]
                .status,
            ProcessStatus::Stopping
        );

        assert!(r.unregister(id(10, 100)).unwrap());
        assert!(!r.unregister(id(10, 100)).unwrap());
        assert_eq!(r.list(ProcessFilter::All).unwrap().len(), 2);
    }

    #[test]
    fn registering_again_updates_instead_of_duplicating() {
        let r = Registry::open_in_memory().unwrap();
        r.register(&process(10, 100, "web")).unwrap();
        let mut again = process(10, 100, "web");
        again.source = ProcessSource::Adopted;
        r.register(&again).unwrap();
        let all = r.list(ProcessFilter::All).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].source, ProcessSource::Adopted);
    }

    #[test]
    fn cleanup_stale_drops_only_dead_identities() {
        let r = Registry::open_in_memory().unwrap();
        r.register(&process(10, 100, "web")).unwrap();
        r.register(&process(11, 100, "db")).unwrap();
        // pid 11 lives on, but as another process (the pid was reused).
        let alive = FakeLiveness([id(10, 100), id(11, 555)].into_iter().collect());
        assert_eq!(r.cleanup_stale(&alive).unwrap(), 1);
        let left: Vec<_> = r
            .list(ProcessFilter::All)
            .unwrap()
            .iter()
            .map(|p| p.identity())
            .collect();
        assert_eq!(left, vec![id(10, 100)]);
    }

    #[test]
    fn service_states_replace_and_clear() {
        let r = Registry::open_in_memory().unwrap();
        let mut s = ServiceStateRecord {
            project: "demo".into(),
            service: "web".into(),
            run_id: "r1".into(),
            state: "starting".into(),
            ready: false,
            restarts: 0,
            main_pid: Some(10),
            last_exit: None,
            message: None,
            since_ms: 1,
            updated_at_ms: 0,
            trigger: None,
        };
        r.set_service_state(&s).unwrap();
        s.state = "running".into();
        s.ready = true;
        s.restarts = 2;
        r.set_service_state(&s).unwrap();
        let got = r.service_states("demo").unwrap();
        assert_eq!(got.len(), 1, "one row per service, replaced");
        assert_eq!(
            (got[0].state.as_str(), got[0].ready, got[0].restarts),
            ("running", true, 2)
        );
        assert!(r.service_states("other").unwrap().is_empty());
        assert_eq!(r.clear_service_states("demo").unwrap(), 1);
        assert!(r.service_states("demo").unwrap().is_empty());
    }

    #[test]
    fn service_states_clear_by_service() {
        let r = Registry::open_in_memory().unwrap();
        for (project, service) in [("demo", "web"), ("demo", "db"), ("other", "web")] {
            r.set_service_state(&ServiceStateRecord {
                project: project.into(),
                service: service.into(),
                run_id: "r1".into(),
                state: "running".into(),
                ready: true,
                restarts: 0,
                main_pid: None,
                last_exit: None,
                message: None,
                since_ms: 1,
                updated_at_ms: 0,
                trigger: None,
            })
            .unwrap();
        }
        assert_eq!(
            r.clear_service_states_of("demo", &["web".into(), "gone".into()])
                .unwrap(),
            1
        );
        let left: Vec<String> = r
            .service_states("demo")
            .unwrap()
            .into_iter()
            .map(|s| s.service)
            .collect();
        assert_eq!(left, ["db"], "only the named service's state goes");
        assert_eq!(
            r.service_states("other").unwrap().len(),
            1,
            "nor another project's"
        );
    }

    #[test]
    fn runs_start_end_and_go_stale() {
        let r = Registry::open_in_memory().unwrap();
        for (run, pid) in [("a", 1), ("b", 2), ("c", 3)] {
            r.start_run(&NewRun {
                config_hash: Some(format!("hash-{run}")),
                run_id: run.into(),
                project: "demo".into(),
                supervisor: id(pid, 7),
            })
            .unwrap();
        }
        assert!(r.set_run_state("a", RunState::Ended).unwrap());
        assert!(r.run("a").unwrap().unwrap().ended_at_ms.is_some());
        // Run b's supervisor died but one of its processes is still registered.
        let mut p = process(50, 1, "web");
        p.run_id = Some("b".into());
        r.register(&p).unwrap();
        let alive = FakeLiveness([id(3, 7)].into_iter().collect());
        assert_eq!(
            r.cleanup_stale_runs(&alive).unwrap(),
            1,
            "only run a goes: b still owns a process, c lives"
        );
        assert_eq!(r.run("b").unwrap().unwrap().state, RunState::Orphaned);
        assert_eq!(r.run("c").unwrap().unwrap().state, RunState::Running);
        assert!(r.run("a").unwrap().is_none());
        assert_eq!(r.list_runs(Some("demo")).unwrap().len(), 2);
    }

    fn state_dir(tmp: &tempfile::TempDir) -> StateDir {
        StateDir {
            path: tmp.path().join("state"),
            origin: StateDirOrigin::Flag,
        }
    }

    #[test]
    fn opens_a_file_with_the_right_modes_and_persists() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = state_dir(&tmp);
        {
            let (r, report) = Registry::open(&dir).unwrap();
            assert!(report.moved_aside.is_none());
            r.register(&process(10, 100, "web")).unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path), 0o700);
        assert_eq!(mode(&dir.registry_path()), 0o600);
        let (r, _) = Registry::open(&dir).unwrap();
        assert_eq!(r.list(ProcessFilter::All).unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = state_dir(&tmp);
        dir.open().unwrap();
        std::fs::write(
            dir.registry_path(),
            b"this is not a database, it is a grocery list",
        )
        .unwrap();
        let (r, report) = Registry::open(&dir).unwrap();
        let aside = report.moved_aside.expect("moved aside");
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("registry.db.corrupt-")
        );
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            b"this is not a database, it is a grocery list"
        );
        assert!(r.list(ProcessFilter::All).unwrap().is_empty());
    }

    #[test]
    fn a_truncated_file_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = state_dir(&tmp);
        {
            let (r, _) = Registry::open(&dir).unwrap();
            for pid in 0..2000 {
                r.register(&process(pid, 1, "web")).unwrap();
            }
            r.conn
                .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
        }
        let full = std::fs::read(dir.registry_path()).unwrap();
        assert!(
            full.len() > 8192,
            "the test needs a database of several pages"
        );
        std::fs::write(dir.registry_path(), &full[..full.len() / 2]).unwrap();
        let (_, report) = Registry::open(&dir).unwrap();
        assert!(
            report.moved_aside.is_some(),
            "a half database must be detected"
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = state_dir(&tmp);
        {
            let (r, _) = Registry::open(&dir).unwrap();
            r.conn
                .pragma_update(None, "user_version", migrations::LATEST + 1)
                .unwrap();
        }
        let before = std::fs::read(dir.registry_path()).unwrap();
        match Registry::open(&dir) {
            Err(RegistryError::SchemaTooNew { found, .. }) => {
                assert_eq!(found, migrations::LATEST + 1)
            }
            Err(other) => panic!("expected SchemaTooNew, got {other}"),
            Ok(_) => panic!("expected SchemaTooNew, got a registry"),
        }
        assert_eq!(std::fs::read(dir.registry_path()).unwrap(), before);
    }

    #[test]
    fn a_registry_or_side_file_that_is_a_link_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = state_dir(&tmp);
        dir.open().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        for name in ["registry.db", "registry.db-wal", "registry.db-shm"] {
            let link = dir.path.join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            match Registry::open(&dir) {
                Err(RegistryError::Symlink { path }) => assert!(path.ends_with(name)),
                Err(other) => panic!("{name}: expected a refusal, got {other}"),
                Ok(_) => panic!("{name}: the registry was opened through a link"),
            }
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
            assert_eq!(
                std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
                0o644
            );
            std::fs::remove_file(&link).unwrap();
        }
        Registry::open(&dir).expect("opens once the links are gone");
    }

    #[test]
    fn utc_stamps_are_calendar_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_839_296)),
            "20261128T041456Z"
        );
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_868_799)),
            "20000229T235959Z"
        );
    }
}
