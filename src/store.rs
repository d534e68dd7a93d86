//! Storage: the one SQLite file (WAL mode) that holds feeds, stories, subscribers,
//! issues, the delivery ledger and unsubscribe events. In: the path, and values to
//! store. Out: typed rows. The schema and every statement live in
//! `subscribers.sql`, embedded at build time; migrations are applied in order and
//! recorded in `PRAGMA user_version`. Every change a user causes is one transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use crate::feed::FeedItem;

const SCHEMA: &str = include_str!("../subscribers.sql");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this gazette knows ({known}); upgrade gazette")]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("subscribers.sql: {0}")]
    Schema(String),
}

/// subscribers.sql split into its numbered migrations and named queries.
struct SqlFile {
    migrations: Vec<(i64, String)>,
    queries: HashMap<String, String>,
}

fn sql_file() -> Result<&'static SqlFile, StoreError> {
    static PARSED: OnceLock<Result<SqlFile, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse_sql_file(SCHEMA))
        .as_ref()
        .map_err(|e| StoreError::Schema(e.clone()))
}

fn parse_sql_file(text: &str) -> Result<SqlFile, String> {
    enum Block {
        None,
        Migration(i64),
        Query(String),
    }
    let mut migrations: Vec<(i64, String)> = Vec::new();
    let mut queries = HashMap::new();
    let mut current = Block::None;
    let mut body = String::new();
    let mut flush = |current: &Block, body: &mut String| -> Result<(), String> {
        let sql = std::mem::take(body).trim().to_string();
        match current {
            Block::None => {}
            Block::Migration(n) => migrations.push((*n, sql)),
            Block::Query(name) => {
                if queries.insert(name.clone(), sql).is_some() {
                    return Err(format!("query {name} is defined twice"));
                }
            }
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(n) = line.strip_prefix("-- migration:") {
            flush(&current, &mut body)?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| format!("line {}: migration number expected", i + 1))?;
            current = Block::Migration(n);
        } else if let Some(name) = line.strip_prefix("-- query:") {
            flush(&current, &mut body)?;
            current = Block::Query(name.trim().to_string());
        } else if !line.trim_start().starts_with("--") {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&current, &mut body)?;
    for (i, (n, _)) in migrations.iter().enumerate() {
        if *n != i as i64 + 1 {
            return Err(format!(
                "migrations must be numbered 1, 2, 3…; found {n} at position {}",
                i + 1
            ));
        }
    }
    Ok(SqlFile {
        migrations,
        queries,
    })
}

/// Every query name the code uses; checked when a database is opened, so a
/// missing one fails at start-up rather than mid-send.
const QUERY_NAMES: &[&str] = &[
    "feed_upsert",
    "feed_record_fetch",
    "appearance_story",
    "story_by_url",
    "story_insert",
    "story_update",
    "appearance_upsert",
    "stories_published_between",
    "story_with_url",
    "views_upsert",
    "views_all",
    "subscriber_insert",
    "subscriber_by_email",
    "subscriber_by_id",
    "subscriber_set_status",
    "subscriber_set_name",
    "subscribers_page",
    "subscribers_count_by_status",
    "subscriber_delete",
    "subscriber_delete_events",
    "subscriber_delete_deliveries",
    "unsubscribe_event_insert",
    "issue_upsert",
    "issue_finish",
    "lock_get",
    "lock_put",
    "lock_heartbeat",
    "lock_release",
    "deliveries_enrol",
    "deliveries_mark_uncertain",
    "deliveries_resend_uncertain",
    "deliveries_due",
    "deliveries_next_retry_at",
    "delivery_claim",
    "delivery_skip_inactive",
    "delivery_sent",
    "delivery_retry",
    "delivery_failed",
    "deliveries_count_by_state",
    "deliveries_uncertain_emails",
    "deliveries_would_receive",
    "bounce_event_insert",
    "soft_bounce_issues",
    "delivery_by_message_id",
    "suppression_salt",
    "suppressed_insert",
    "suppressed_get",
    "suppressed_delete",
    "export_deliveries",
    "export_unsubscribe_events",
    "export_bounce_events",
    "subscriber_delete_bounces",
    "issue_by_week",
    "issue_send_started",
    "issue_finished",
    "issues_sent",
    "bounce_report_seen",
];

/// The SQL text of a named query from subscribers.sql.
pub fn query(name: &str) -> &'static str {
    sql_file()
        .ok()
        .and_then(|f| f.queries.get(name))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("query {name} missing from subscribers.sql (checked at open)"))
}

/// The schema version this build knows.
pub fn schema_version() -> i64 {
    sql_file().map(|f| f.migrations.len() as i64).unwrap_or(0)
}

pub struct Store {
    conn: Connection,
}

/// A story as stored, with what its appearances in feeds add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Story {
    pub id: i64,
    pub url: String,
    pub title: String,
    pub summary: String,
    pub image: Option<String>,
    /// The image's width and height in pixels, when the feed gave them.
    pub image_size: Option<(u32, u32)>,
    pub published_at: DateTime<Utc>,
    /// The feed gave no date: `published_at` is when gazette first saw it.
    pub published_estimated: bool,
    /// How many feed items (across feeds and sections) listed it.
    pub appearances: u32,
    /// Names of the feeds that listed it.
    pub sources: Vec<String>,
    pub categories: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

pub fn to_unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub fn from_unix(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
            }
        }
        let conn = Connection::open(path).map_err(open_err)?;
        let mut store = Store { conn };
        store.configure().map_err(open_err)?;
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

    fn migrate(&mut self, path: &Path) -> Result<(), StoreError> {
        let file = sql_file()?;
        for name in QUERY_NAMES {
            if !file.queries.contains_key(*name) {
                return Err(StoreError::Schema(format!("query {name} is missing")));
            }
        }
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = file.migrations.len() as i64;
        if current > known {
            return Err(StoreError::NewerSchema {
                path: path.display().to_string(),
                found: current,
                known,
            });
        }
        for (n, sql) in &file.migrations[current as usize..] {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Schema(format!("migration {n}: {e}")))?;
            tx.pragma_update(None, "user_version", n)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn into_connection(self) -> Connection {
        self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn user_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Registers a feed (or renames it); returns its id and remembered validators.
    pub fn feed(
        &self,
        url: &str,
        name: Option<&str>,
    ) -> Result<(i64, crate::feed::Validators), StoreError> {
        let mut stmt = self.conn.prepare_cached(query("feed_upsert"))?;
        Ok(stmt.query_row(params![url, name], |r| {
            Ok((
                r.get(0)?,
                crate::feed::Validators {
                    etag: r.get(1)?,
                    last_modified: r.get(2)?,
                },
            ))
        })?)
    }

    pub fn record_fetch(
        &self,
        feed_id: i64,
        etag: Option<&str>,
        last_modified: Option<&str>,
        now: DateTime<Utc>,
        status: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(query("feed_record_fetch"))?
            .execute(params![feed_id, etag, last_modified, to_unix(now), status])?;
        Ok(())
    }

    /// Stores one feed's items in one transaction. A story is the same story when
    /// the feed's guid or the canonical URL is the same; repeats add appearances.
    pub fn store_items(
        &mut self,
        feed_id: i64,
        items: &[FeedItem],
        now: DateTime<Utc>,
    ) -> Result<StoreCounts, StoreError> {
        let tx = self.conn.transaction()?;
        let counts = store_items_in(&tx, feed_id, items, now)?;
        tx.commit()?;
        Ok(counts)
    }

    /// Stories published in `[start, end)`.
    pub fn stories_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Story>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(query("stories_published_between"))?;
        let rows = stmt.query_map(params![to_unix(start), to_unix(end)], story_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stored story with this canonical URL, if any.
    pub fn story_with_url(&self, url: &str) -> Result<Option<Story>, StoreError> {
        let mut stmt = self.conn.prepare_cached(query("story_with_url"))?;
        Ok(stmt.query_row(params![url], story_from_row).optional()?)
    }

    /// Replaces view counts for these URLs, in one transaction.
    pub fn import_views(&mut self, rows: &[(String, u64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(query("views_upsert"))?;
            for (url, views) in rows {
                stmt.execute(params![url, *views as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn views(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached(query("views_all"))?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn store_items_in(
    tx: &Transaction,
    feed_id: i64,
    items: &[FeedItem],
    now: DateTime<Utc>,
) -> Result<StoreCounts, StoreError> {
    let mut counts = StoreCounts::default();
    let now_s = to_unix(now);
    for item in items {
        let existing: Option<i64> = tx
            .prepare_cached(query("appearance_story"))?
            .query_row(params![feed_id, item.guid], |r| r.get(0))
            .optional()?;
        let existing = match existing {
            Some(id) => Some(id),
            None => tx
                .prepare_cached(query("story_by_url"))?
                .query_row(params![item.url], |r| r.get(0))
                .optional()?,
        };
        let (published, estimated) = match item.published {
            Some(t) => (to_unix(t), 0),
            None => (now_s, 1),
        };
        let story_id = match existing {
            Some(id) => {
                let changed = tx.prepare_cached(query("story_update"))?.execute(params![
                    id,
                    item.title,
                    item.summary,
                    item.image,
                    published,
                    estimated,
                    now_s,
                    item.image_size.map(|s| s.0),
                    item.image_size.map(|s| s.1)
                ])?;
                if changed > 0 {
                    counts.updated += 1;
                } else {
                    counts.unchanged += 1;
                }
                id
            }
            None => {
                counts.new += 1;
                tx.prepare_cached(query("story_insert"))?.query_row(
                    params![
                        item.url,
                        item.title,
                        item.summary,
                        item.image,
                        published,
                        estimated,
                        now_s,
                        item.image_size.map(|s| s.0),
                        item.image_size.map(|s| s.1)
                    ],
                    |r| r.get(0),
                )?
            }
        };
        let categories = serde_json::to_string(&item.categories).expect("strings serialize");
        tx.prepare_cached(query("appearance_upsert"))?
            .execute(params![
                story_id, feed_id, item.guid, item.link, categories, now_s
            ])?;
    }
    Ok(counts)
}

fn story_from_row(r: &rusqlite::Row) -> rusqlite::Result<Story> {
    let sources: Option<String> = r.get(8)?;
    let category_lists: String = r.get(9)?;
    let lists: Vec<Vec<String>> = serde_json::from_str(&category_lists).unwrap_or_default();
    let mut categories: Vec<String> = Vec::new();
    for c in lists.into_iter().flatten() {
        if !categories.iter().any(|x| x.eq_ignore_ascii_case(&c)) {
            categories.push(c);
        }
    }
    let mut sources: Vec<String> = sources
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    sources.sort();
    Ok(Story {
        id: r.get(0)?,
        url: r.get(1)?,
        title: r.get(2)?,
        summary: r.get(3)?,
        image: r.get(4)?,
        image_size: r
            .get::<_, Option<u32>>(10)?
            .zip(r.get::<_, Option<u32>>(11)?),
        published_at: from_unix(r.get(5)?),
        published_estimated: r.get::<_, i64>(6)? != 0,
        appearances: r.get::<_, i64>(7)? as u32,
        sources,
        categories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_file_has_every_query_and_migrations_apply() {
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

    fn item(guid: &str, link: &str, title: &str) -> FeedItem {
        FeedItem {
            guid: guid.into(),
            link: link.into(),
            url: crate::feed::canonical_url(link).unwrap(),
            title: title.into(),
            summary: String::new(),
            categories: vec!["Fintech".into()],
            image: None,
            image_size: None,
            published: Some(Utc.with_ymd_and_hms(2026, 2, 3, 0, 0, 0).unwrap()),
        }
    }

    #[test]
    fn refetch_never_duplicates_and_counts_appearances() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let (feed, _) = store.feed("f", None).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap();
        let items = vec![
            item("a", "https://x.example/a?utm_source=hot", "A"),
            item("a-topics", "https://www.x.example/a/", "A"),
            item("b", "https://x.example/b", "B"),
        ];
        let c = store.store_items(feed, &items, now).unwrap();
        assert_eq!(c.new, 2);
        let c = store.store_items(feed, &items, now).unwrap();
        assert_eq!(c.new, 0);
        let week = store
            .stories_between(now - chrono::Duration::days(7), now)
            .unwrap();
        assert_eq!(week.len(), 2);
        assert_eq!(week[0].appearances, 2);
        assert_eq!(week[1].appearances, 1);
    }
}

// ---------------------------------------------------------------- subscribers

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Active,
    Unsubscribed,
    Bounced,
    Complained,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "active" => Status::Active,
            "unsubscribed" => Status::Unsubscribed,
            "bounced" => Status::Bounced,
            "complained" => Status::Complained,
            _ => return None,
        })
    }
}

/// How an unsubscribe came about, as recorded in `unsubscribe_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeMethod {
    OneClick,
    Page,
    Cli,
    Bounce,
    Complaint,
}

impl UnsubscribeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsubscribeMethod::OneClick => "one-click",
            UnsubscribeMethod::Page => "page",
            UnsubscribeMethod::Cli => "cli",
            UnsubscribeMethod::Bounce => "bounce",
            UnsubscribeMethod::Complaint => "complaint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub created_at: DateTime<Utc>,
}

/// The key an address is compared by: addresses are case-insensitive here
/// (RFC 5321 allows case-sensitive local parts; no real mailbox provider uses them).
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

fn subscriber_from_row(r: &rusqlite::Row) -> rusqlite::Result<Subscriber> {
    let status: String = r.get(3)?;
    Ok(Subscriber {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        status: Status::parse(&status).unwrap_or(Status::Pending),
        created_at: from_unix(r.get(4)?),
    })
}

/// What adding one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New(i64),
    /// Already on the list, with this status; left as it is.
    Existing(i64, Status),
}

/// Adds an address (already validated) in `conn`'s current transaction. An address
/// already on the list is never resubscribed.
pub fn add_subscriber_in(
    conn: &Connection,
    email: &str,
    name: Option<&str>,
    status: Status,
    now: DateTime<Utc>,
) -> Result<Added, StoreError> {
    let key = email_key(email);
    let inserted = conn
        .prepare_cached(query("subscriber_insert"))?
        .execute(params![
            email.trim(),
            key,
            name,
            status.as_str(),
            to_unix(now)
        ])?;
    let s = conn
        .prepare_cached(query("subscriber_by_email"))?
        .query_row(params![key], subscriber_from_row)?;
    Ok(if inserted == 1 {
        Added::New(s.id)
    } else {
        Added::Existing(s.id, s.status)
    })
}

/// The delivery states of one issue, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub uncertain: u64,
    pub skipped: u64,
    /// Deliveries that were uncertain after a crash and were sent again.
    pub resent_uncertain: u64,
}

impl Store {
    pub fn add_subscriber(
        &mut self,
        email: &str,
        name: Option<&str>,
        status: Status,
        now: DateTime<Utc>,
    ) -> Result<Added, StoreError> {
        let tx = self.conn.transaction()?;
        let added = add_subscriber_in(&tx, email, name, status, now)?;
        tx.commit()?;
        Ok(added)
    }

    pub fn subscriber_by_email(&self, email: &str) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(query("subscriber_by_email"))?
            .query_row(params![email_key(email)], subscriber_from_row)
            .optional()?)
    }

    pub fn subscriber(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(query("subscriber_by_id"))?
            .query_row(params![id], subscriber_from_row)
            .optional()?)
    }

    /// One page of subscribers after `after_id`, optionally of one status.
    pub fn subscribers_page(
        &self,
        status: Option<Status>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let mut stmt = self.conn.prepare_cached(query("subscribers_page"))?;
        let rows = stmt.query_map(
            params![status.map(Status::as_str), after_id, limit as i64],
            subscriber_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(query("subscribers_count_by_status"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets a status and, for a departure, records the event, in one transaction.
    /// Returns false when the subscriber already had that status.
    pub fn set_status(
        &mut self,
        id: i64,
        status: Status,
        method: Option<UnsubscribeMethod>,
        issue_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let changed = set_status_in(&tx, id, status, method, issue_id, now)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Deletes a subscriber with their ledger rows and events.
    pub fn remove_subscriber(&mut self, id: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        delete_subscriber_in(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    /// The id of a week's issue, once a send of it has begun.
    pub fn issue_id(&self, week: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(query("issue_by_week"))?
            .query_row(params![week], |r| r.get(0))
            .optional()?)
    }

    /// True once a send of this week has begun: the issue must not change under it.
    pub fn send_started(&self, week: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(query("issue_send_started"))?
            .query_row(params![week], |r| r.get(0))?)
    }

    /// True once a send of this week finished with nothing pending.
    pub fn issue_finished(&self, week: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(query("issue_finished"))?
            .query_row(params![week], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    /// `(week, subject)` of every issue that reached a subscriber, newest first.
    pub fn sent_issues(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(query("issues_sent"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.conn.transaction()?)
    }
}

/// Deletes a subscriber and everything recorded about them, inside a caller's
/// transaction.
fn delete_subscriber_in(conn: &Connection, id: i64) -> Result<(), StoreError> {
    for q in [
        "subscriber_delete_deliveries",
        "subscriber_delete_events",
        "subscriber_delete_bounces",
        "subscriber_delete",
    ] {
        conn.prepare_cached(query(q))?.execute(params![id])?;
    }
    Ok(())
}

/// [`Store::set_status`] inside a caller's transaction.
pub fn set_status_in(
    conn: &Connection,
    id: i64,
    status: Status,
    method: Option<UnsubscribeMethod>,
    issue_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(query("subscriber_set_status"))?
        .execute(params![id, status.as_str(), to_unix(now)])?;
    if changed > 0 {
        if let Some(m) = method {
            conn.prepare_cached(query("unsubscribe_event_insert"))?
                .execute(params![id, to_unix(now), m.as_str(), issue_id])?;
        }
    }
    Ok(changed > 0)
}

// ---------------------------------------------------------------- privacy

/// The salted hash an erased address is remembered by (salt: per database).
pub fn suppression_hash(conn: &Connection, email: &str) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let salt: String = conn
        .prepare_cached(query("suppression_salt"))?
        .query_row([], |r| r.get(0))?;
    let digest = Sha256::digest(format!("{salt}\n{}", email_key(email)).as_bytes());
    Ok(format!("{digest:x}"))
}

/// Whether this address was erased on request (and so may not be imported).
pub fn is_suppressed(conn: &Connection, email: &str) -> Result<bool, StoreError> {
    let hash = suppression_hash(conn, email)?;
    Ok(conn
        .prepare_cached(query("suppressed_get"))?
        .query_row(params![hash], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Store {
    /// Everything held about a subscriber, as JSON.
    pub fn export_subscriber(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        use serde_json::json;
        let Some(s) = self.subscriber(id)? else {
            return Ok(None);
        };
        let rows = |name: &str,
                    f: &dyn Fn(&rusqlite::Row) -> rusqlite::Result<serde_json::Value>|
         -> Result<Vec<serde_json::Value>, StoreError> {
            let mut stmt = self.conn.prepare_cached(query(name))?;
            let out = stmt
                .query_map(params![id], |r| f(r))?
                .collect::<Result<_, _>>()?;
            Ok(out)
        };
        let time = |r: &rusqlite::Row, i: usize| -> rusqlite::Result<String> {
            Ok(from_unix(r.get(i)?).to_rfc3339())
        };
        let deliveries = rows("export_deliveries", &|r| {
            Ok(
                json!({"issue": r.get::<_, String>(0)?, "state": r.get::<_, String>(1)?, "attempts": r.get::<_, i64>(2)?,
                "last_error": r.get::<_, Option<String>>(3)?, "server_reply": r.get::<_, Option<String>>(4)?,
                "message_id": r.get::<_, Option<String>>(5)?, "at": time(r, 6)?}),
            )
        })?;
        let unsubscribes = rows("export_unsubscribe_events", &|r| {
            Ok(
                json!({"at": time(r, 0)?, "how": r.get::<_, String>(1)?, "issue": r.get::<_, Option<String>>(2)?}),
            )
        })?;
        let bounces = rows("export_bounce_events", &|r| {
            Ok(
                json!({"at": time(r, 0)?, "kind": r.get::<_, String>(1)?, "status": r.get::<_, Option<String>>(2)?,
                "detail": r.get::<_, Option<String>>(3)?, "issue": r.get::<_, Option<String>>(4)?}),
            )
        })?;
        Ok(Some(json!({
            "subscriber": {"id": s.id, "email": s.email, "name": s.name, "status": s.status, "subscribed_at": s.created_at.to_rfc3339()},
            "deliveries": deliveries,
            "unsubscribe_events": unsubscribes,
            "bounce_and_complaint_reports": bounces,
        })))
    }

    /// Erases a subscriber's personal data, keeping only the salted hash of the
    /// address on the suppression list. One transaction.
    pub fn wipe_subscriber(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let Some(email) = tx
            .prepare_cached(query("subscriber_by_id"))?
            .query_row(params![id], |r| r.get::<_, String>(1))
            .optional()?
        else {
            return Ok(false);
        };
        let hash = suppression_hash(&tx, &email)?;
        tx.prepare_cached(query("suppressed_insert"))?
            .execute(params![hash, to_unix(now)])?;
        delete_subscriber_in(&tx, id)?;
        tx.commit()?;
        Ok(true)
    }

    /// A consistent copy of the live database at `dest`, taken with SQLite's
    /// online backup API (safe while other processes write).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        self.conn.backup(rusqlite::MAIN_DB, dest, None)?;
        Ok(())
    }

    /// Replaces the live database's content with `src`'s (SQLite's backup API, in
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

/// Why `path` cannot be restored, if it cannot: not SQLite, not gazette's, from a
/// newer gazette, or damaged.
pub fn check_gazette_database(path: &Path) -> Result<i64, String> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| format!("not an SQLite database ({e})"))?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('subscribers', 'deliveries', 'issues', 'stories')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("not an SQLite database ({e})"))?;
    if tables != 4 || version < 1 {
        return Err("not a gazette database".into());
    }
    if version > schema_version() {
        return Err(format!(
            "it has schema version {version}, newer than this gazette knows ({})",
            schema_version()
        ));
    }
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("it fails PRAGMA integrity_check: {check}"));
    }
    Ok(version)
}
