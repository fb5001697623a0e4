//! The registry's schema, versioned by `PRAGMA user_version`. Append-only: a released
//! migration is never edited; a change is a new entry at the end.

use rusqlite::{Connection, TransactionBehavior};

/// Migration N (1-based) takes the schema from version N-1 to N.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: processes and runs.
    "CREATE TABLE runs (
        run_id                TEXT PRIMARY KEY,
        project               TEXT NOT NULL,
        supervisor_pid        INTEGER NOT NULL,
        supervisor_start_time INTEGER NOT NULL,
        started_at_ms         INTEGER NOT NULL,
        ended_at_ms           INTEGER,
        state                 TEXT NOT NULL
    );
    CREATE INDEX runs_project ON runs(project);
    CREATE TABLE processes (
        pid              INTEGER NOT NULL,
        start_time       INTEGER NOT NULL,
        command_line     TEXT NOT NULL,
        project          TEXT NOT NULL,
        service          TEXT NOT NULL,
        run_id           TEXT,
        unit             TEXT,
        cgroup           TEXT,
        ports            TEXT NOT NULL DEFAULT '',
        status           INTEGER NOT NULL, -- ProcessStatus: 0 running, 1 stopping, 2 stopped
        source           INTEGER NOT NULL, -- ProcessSource: 0 launched, 1 discovered, 2 adopted
        registered_at_ms INTEGER NOT NULL,
        -- Clustered in listing order, so a listing is one sequential walk.
        PRIMARY KEY (project, service, pid, start_time),
        UNIQUE (pid, start_time)
    ) WITHOUT ROWID;
    CREATE INDEX processes_run ON processes(run_id);",
    // 2: what the supervisor knows about each service, and which config a run was started from.
    "CREATE TABLE service_states (
        project        TEXT NOT NULL,
        service        TEXT NOT NULL,
        run_id         TEXT NOT NULL,
        state          TEXT NOT NULL,
        ready          INTEGER NOT NULL,
        restarts       INTEGER NOT NULL,
        main_pid       INTEGER,
        last_exit      TEXT,
        message        TEXT,
        since_ms       INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (project, service)
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN config_hash TEXT;",
    // 3: the change of a watched file that last restarted a service.
    "ALTER TABLE service_states ADD COLUMN last_trigger TEXT;",
    // 4: the projects index: where each project's configuration is, how its last run ended,
    // and the user unit it is enabled as (`ccscope projects`, `ccscope@<project>.service`).
    "CREATE TABLE projects (
        project        TEXT PRIMARY KEY,
        config_path    TEXT,
        last_run_ms    INTEGER,
        last_outcome   TEXT,
        unit           TEXT,
        updated_at_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// What migrating found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Migration {
    UpToDate,
    Applied { from: i64, to: i64 },
    TooNew { found: i64 },
}

/// Applies the missing migrations in one exclusive transaction. A schema newer than this
/// build knows is left untouched.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<Migration> {
    let seen = user_version(conn)?;
    // A negative version was not written by ccscope: leave the file alone, like a newer one.
    if !(0..=LATEST).contains(&seen) {
        return Ok(Migration::TooNew { found: seen });
    }
    if seen == LATEST {
        return Ok(Migration::UpToDate);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    // Another process may have migrated between our read and our lock.
    let from = user_version(&tx)?;
    if !(0..=LATEST).contains(&from) {
        return Ok(Migration::TooNew { found: from });
    }
    for sql in &MIGRATIONS[from as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    tx.commit()?;
    Ok(if from == LATEST {
        Migration::UpToDate
    } else {
        Migration::Applied { from, to: LATEST }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_to_latest() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            Migration::Applied {
                from: 0,
                to: LATEST
            }
        );
        assert_eq!(user_version(&conn).unwrap(), LATEST);
        assert_eq!(migrate(&mut conn).unwrap(), Migration::UpToDate);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 4, "runs, processes, service_states, projects");
    }

    #[test]
    fn version_1_data_survives_migration_2() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs VALUES ('r1', 'demo', 10, 20, 30, NULL, 'running')",
            [],
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            Migration::Applied {
                from: 1,
                to: LATEST
            }
        );
        let (project, hash): (String, Option<String>) = conn
            .query_row("SELECT project, config_hash FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((project.as_str(), hash), ("demo", None));
    }

    #[test]
    fn leaves_a_newer_schema_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST + 7)
            .unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            Migration::TooNew { found: LATEST + 7 }
        );
        assert_eq!(user_version(&conn).unwrap(), LATEST + 7);
    }

    #[test]
    fn leaves_a_negative_version_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Migration::TooNew { found: -3 });
        assert_eq!(user_version(&conn).unwrap(), -3);
    }

    #[test]
    fn each_migration_applies_on_top_of_the_previous() {
        let conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            conn.execute_batch(sql)
                .unwrap_or_else(|e| panic!("migration {} failed: {e}", i + 1));
        }
    }
}
