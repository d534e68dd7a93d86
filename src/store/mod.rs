//! Storage: the one SQLite file (WAL mode) that holds feeds, stories, subscribers,
//! issues, the delivery ledger, bounces and unsubscribe events. In: the path, and
//! values to store. Out: typed rows. This module is the only place that runs SQL:
//! the connection is private and every table is reached through a typed method.
//! The schema and every statement live in `subscribers.sql`, turned into
//! constants at build time (see `build.rs`), so a query the code names but the
//! file lacks does not compile. Migrations are applied in order, under one
//! `BEGIN IMMEDIATE`, and recorded in `PRAGMA user_version`. Every change a user
//! causes is one transaction.
//!
//! One file per concern: [`stories`] (feeds, stories, views), [`subscribers`]
//! (the list, suppression, export and erasure), [`ledger`] (issues, the send
//! lock, deliveries), [`bounces`] (delivery reports), [`clicks`] (reader
//! analytics and the report's figures), [`backup`].

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, TransactionBehavior};

pub mod backup;
pub mod bounces;
pub mod clicks;
pub mod ledger;
pub mod stories;
pub mod subscribers;

pub use backup::check_gazette_database;
pub use bounces::{BounceEvent, BounceKind, MessageOrigin};
pub use clicks::{Click, ClickKind, ClickOutcome, IssueRow, IssueStory, ListMoves, StoryClicks};
pub use ledger::{DueDelivery, LedgerCounts, LedgerWrite, LockHolder};
pub use stories::{FeedState, Listing, StoreCounts, Story};
pub use subscribers::{
    email_key, Added, Confirmation, Origin, Status, Subscriber, UnsubscribeMethod,
};

/// The statements of `subscribers.sql`, one constant per `-- query:` block.
mod sql {
    include!(concat!(env!("OUT_DIR"), "/queries.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path}: cannot create its directory")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database {path}: cannot create the file")]
    CreateFile {
        path: String,
        source: std::io::Error,
    },
    #[error("database {path} has schema version {found}, newer than this gazette knows ({known}); upgrade gazette")]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("database {path}: migration {number} failed")]
    Migration {
        path: String,
        number: i64,
        source: rusqlite::Error,
    },
    #[error("database")]
    Sql(#[from] rusqlite::Error),
}

/// The schema version this build knows.
pub fn schema_version() -> i64 {
    sql::MIGRATIONS.len() as i64
}

pub fn to_unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub fn from_unix(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

/// An open database. Several may be open on one file at once (the server, a
/// send's ledger writer, a second process); SQLite serialises their writes.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let label = || path.display().to_string();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: label(),
                    source,
                })?;
            }
        }
        let open_err = |source| StoreError::Open {
            path: label(),
            source,
        };
        // A new database holds addresses: its owner's only. SQLite gives its
        // -wal and -shm files the same mode.
        crate::files::create_private(path).map_err(|source| StoreError::CreateFile {
            path: label(),
            source,
        })?;
        let conn = Connection::open(path).map_err(open_err)?;
        let mut store = Store { conn };
        // Switching a new file to WAL takes an exclusive lock that SQLite's busy
        // handler does not wait for (it would deadlock); another process doing
        // the same at the same instant makes this one retry, briefly.
        let mut tries = 0;
        while let Err(e) = store.configure() {
            let busy = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy);
            tries += 1;
            if !busy || tries >= 100 {
                return Err(open_err(e));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        store.migrate(path)?;
        Ok(store)
    }

    fn configure(&self) -> rusqlite::Result<()> {
        // Another process (serve, a second send) may hold the write lock briefly.
        self.conn.busy_timeout(Duration::from_secs(30))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL is durable across a process crash (kill -9), which is
        // the failure the ledger guards against; it skips an fsync per commit.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", true)?;
        // Erased subscribers must not linger in free pages of the file.
        self.conn.pragma_update(None, "secure_delete", true)?;
        Ok(())
    }

    /// Applies the migrations this file lacks. `user_version` is read inside a
    /// `BEGIN IMMEDIATE` transaction, so two processes upgrading one file at once
    /// take turns: the second finds the work done.
    fn migrate(&mut self, path: &Path) -> Result<(), StoreError> {
        let known = schema_version();
        let version = |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get(0));
        // Most opens find the schema current; they need no write lock.
        let current: i64 = version(&self.conn)?;
        if current == known {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = version(&tx)?;
        if current > known {
            return Err(StoreError::NewerSchema {
                path: path.display().to_string(),
                found: current,
                known,
            });
        }
        for (number, sql) in &sql::MIGRATIONS[current as usize..] {
            tx.execute_batch(sql)
                .map_err(|source| StoreError::Migration {
                    path: path.display().to_string(),
                    number: *number,
                    source,
                })?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    pub fn user_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Runs `f` in one transaction: all of it is stored, or nothing.
    fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Store::in_transaction`], holding the write lock from the start
    /// (`BEGIN IMMEDIATE`): one that reads before it writes cannot then fail
    /// because another connection wrote in between.
    fn in_write_transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Every row of a statement, mapped.
fn query_all<T>(
    conn: &Connection,
    statement: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(statement)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.user_version().unwrap(), schema_version());
        drop(store);
        // Opening again applies nothing twice.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.user_version().unwrap(), schema_version());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("999"), "{e}");
    }

    #[test]
    fn two_openers_of_a_new_file_both_succeed() {
        // Many rounds: the race is between the openers' first statements.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|s| s.user_version().unwrap())
                    })
                })
                .collect();
            for h in handles {
                let version = h.join().unwrap();
                assert_eq!(version.unwrap(), schema_version(), "round {round}");
            }
        }
    }
}
