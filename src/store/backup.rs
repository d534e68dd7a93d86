//! Backups: a consistent copy of the live database (SQLite's online backup API,
//! safe while `serve` and `send` write), putting one back, and telling whether a
//! file is a usable gazette database at all. In: paths. Out: the copy, or why not.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{schema_version, sql, Store, StoreError};

impl Store {
    /// A consistent copy of the live database at `dest`.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        self.conn.backup(rusqlite::MAIN_DB, dest, None)?;
        Ok(())
    }

    /// Replaces the live database's content with `src`'s (the backup API in
    /// reverse). The caller has checked `src` with [`check_gazette_database`].
    pub fn restore_from(&mut self, src: &Path) -> Result<(), StoreError> {
        self.conn.restore(
            rusqlite::MAIN_DB,
            src,
            None::<fn(rusqlite::backup::Progress)>,
        )?;
        Ok(())
    }
}

/// What a usable backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    pub subscribers: i64,
}

/// Why a file is not a usable gazette database.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("cannot open it: {0}")]
    CannotOpen(rusqlite::Error),
    #[error("not an SQLite database ({0})")]
    NotSqlite(rusqlite::Error),
    #[error("not a gazette database")]
    NotGazette,
    #[error("it has schema version {found}, newer than this gazette knows ({known})")]
    Newer { found: i64, known: i64 },
    #[error("it fails PRAGMA integrity_check: {0}")]
    Damaged(String),
}

/// What `path` holds, or why it cannot be restored: not SQLite, not gazette's,
/// from a newer gazette, or damaged.
pub fn check_gazette_database(path: &Path) -> Result<BackupInfo, Unusable> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Unusable::CannotOpen)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(Unusable::NotSqlite)?;
    let tables: i64 = conn
        .query_row(sql::DATABASE_GAZETTE_TABLES, [], |r| r.get("tables"))
        .map_err(Unusable::NotSqlite)?;
    if tables != 4 || version < 1 {
        return Err(Unusable::NotGazette);
    }
    if version > schema_version() {
        return Err(Unusable::Newer {
            found: version,
            known: schema_version(),
        });
    }
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| Unusable::Damaged(e.to_string()))?;
    if check != "ok" {
        return Err(Unusable::Damaged(check));
    }
    let subscribers: i64 = conn
        .query_row(sql::DATABASE_SUBSCRIBER_COUNT, [], |r| r.get("subscribers"))
        .map_err(|e| Unusable::Damaged(e.to_string()))?;
    Ok(BackupInfo { subscribers })
}
