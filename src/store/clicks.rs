//! Reader analytics as rows: the stories an issue links to, the clicks on them,
//! and the figures `gazette report` is made of. In: a verified click (issue,
//! story position, the copy it came from, what kind of client), or an issue to
//! report on. Out: where the click leads and how it was counted; report rows.
//!
//! Privacy: the copy a click came from is stored only as a hash keyed with the
//! issue's own random key, and only while the issue's click window is open. When
//! it closes the counts are folded into `story_clicks` and the key and hashes
//! are dropped, so no table can tie a click to a copy, let alone a person.
//! `subscriber_clicks` is written only when the operator opted in.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rusqlite::{params, OptionalExtension};
use sha2::Sha256;

use super::{from_unix, query_all, sql, to_unix, Store, StoreError};

/// A story as an issue links to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssueStory {
    pub link: String,
    pub title: String,
    pub topic: Option<String>,
}

/// How a click is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    Reader,
    /// A HEAD request, an empty or known scanner's User-Agent, or part of a
    /// burst across one copy's links: counted apart.
    Automated,
}

/// One verified click.
#[derive(Debug, Clone)]
pub struct Click<'a> {
    pub issue_id: i64,
    pub position: u32,
    /// What the link says about the copy it is in (a random value per copy, or
    /// with per-subscriber analytics the subscriber): hashed before storing.
    /// `None`: not to be kept at all; the click counts, but not as unique.
    pub copy: Option<&'a str>,
    /// The subscriber, with `[analytics] per_subscriber` only.
    pub subscriber: Option<i64>,
    pub kind: ClickKind,
    /// Earlier clicks of this copy, one per position listed, counted as a
    /// reader's and now known to be a scanner's: they move to automated.
    pub taken_back: &'a [u32],
    pub at: DateTime<Utc>,
}

/// What became of a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickOutcome {
    /// Counted; go to `link`.
    Counted { link: String },
    /// The issue holds no story at that position.
    NoSuchStory,
}

/// Counts per story of one issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoryClicks {
    pub clicks: u64,
    pub unique: u64,
    pub automated: u64,
}

/// Who joined and who left since a time, and how many are active now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMoves {
    pub joins: Vec<DateTime<Utc>>,
    pub leaves: Vec<DateTime<Utc>>,
    pub active_now: u64,
}

/// An issue whose send began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRow {
    pub id: i64,
    pub week: String,
    pub subject: String,
    pub started_at: DateTime<Utc>,
    pub sent: u64,
    /// Its links went through `/c/`: its clicks were counted.
    pub clicks_counted: bool,
}

fn copy_hash(key: &[u8], copy: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(copy.as_bytes());
    mac.finalize().into_bytes()[..16].to_vec()
}

fn random_key() -> Vec<u8> {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        key = std::array::from_fn(|_| fastrand::u8(..));
    }
    key.to_vec()
}

impl Store {
    /// Records the stories an issue links to; the first send's list stays.
    pub fn record_issue_stories(
        &mut self,
        issue_id: i64,
        stories: &[IssueStory],
    ) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut insert = tx.prepare_cached(sql::ISSUE_STORY_INSERT)?;
            for (position, s) in stories.iter().enumerate() {
                insert.execute(params![issue_id, position as i64, s.link, s.title, s.topic])?;
            }
            Ok(())
        })
    }

    /// The stories an issue links to, in order.
    pub fn issue_stories(&self, issue_id: i64) -> Result<Vec<IssueStory>, StoreError> {
        query_all(&self.conn, sql::ISSUE_STORIES_OF, params![issue_id], |r| {
            Ok(IssueStory {
                link: r.get("link")?,
                title: r.get("title")?,
                topic: r.get("topic")?,
            })
        })
    }

    /// Closes the click windows that ended by `now`: counts folded into
    /// `story_clicks`, the copies' hashes and the key dropped. One transaction.
    pub fn close_click_windows(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.in_write_transaction(|tx| close_windows_in(tx, now))
    }

    /// Counts one click and says where it leads. One transaction, taken for
    /// writing at once: a click must not fail because a send committed to the
    /// ledger between its reads and its writes.
    pub fn record_click(
        &mut self,
        click: &Click,
        window: chrono::Duration,
    ) -> Result<ClickOutcome, StoreError> {
        self.in_write_transaction(|tx| {
            close_windows_in(tx, click.at)?;
            let target = tx
                .prepare_cached(sql::CLICK_TARGET)?
                .query_row(params![click.issue_id, click.position as i64], |r| {
                    Ok((
                        r.get::<_, String>("link")?,
                        r.get::<_, i64>("created_at")?,
                        r.get::<_, Option<Vec<u8>>>("key")?,
                        r.get::<_, Option<i64>>("closes_at")?,
                    ))
                })
                .optional()?;
            let Some((link, started, key, closes_at)) = target else {
                return Ok(ClickOutcome::NoSuchStory);
            };
            let closes = started + window.num_seconds();
            let key = match (key, closes_at) {
                (Some(key), _) => Some(key),
                // Closed already: no copy can be told from another any more.
                (None, Some(_)) => None,
                (None, None) if to_unix(click.at) < closes => {
                    let key = random_key();
                    tx.prepare_cached(sql::CLICK_WINDOW_OPEN)?.execute(params![
                        click.issue_id,
                        key,
                        closes
                    ])?;
                    Some(key)
                }
                (None, None) => None,
            };
            let position = i64::from(click.position);
            let automated = click.kind == ClickKind::Automated;
            let add_to_story = |position: i64, reader: i64, bot: i64| {
                tx.prepare_cached(sql::STORY_CLICKS_ADD)?
                    .execute(params![click.issue_id, position, reader, 0, bot])
                    .map(drop)
            };
            match key.zip(click.copy) {
                None => {
                    for &p in click.taken_back {
                        add_to_story(i64::from(p), -1, 1)?;
                    }
                    add_to_story(position, i64::from(!automated), i64::from(automated))?;
                }
                Some((key, copy)) => {
                    let copy = copy_hash(&key, copy);
                    let add = |position: i64, automated: bool| {
                        tx.prepare_cached(sql::CLICKS_SEEN_ADD)?
                            .execute(params![click.issue_id, copy, position, automated, 1])
                            .map(drop)
                    };
                    for &p in click.taken_back {
                        let p = i64::from(p);
                        tx.prepare_cached(sql::CLICKS_SEEN_TAKE_BACK)?
                            .execute(params![click.issue_id, copy, p])?;
                        let emptied = tx
                            .prepare_cached(sql::CLICKS_SEEN_DROP_EMPTY)?
                            .query_row(params![click.issue_id, copy, p], |r| r.get::<_, i64>(0))
                            .optional()?;
                        if let (Some(_), Some(id)) = (emptied, click.subscriber) {
                            tx.prepare_cached(sql::SUBSCRIBER_CLICK_DELETE)?
                                .execute(params![id, click.issue_id, p])?;
                        }
                        add(p, true)?;
                    }
                    add(position, automated)?;
                }
            }
            if let (Some(id), false) = (click.subscriber, automated) {
                tx.prepare_cached(sql::SUBSCRIBER_CLICK_INSERT)?
                    .execute(params![id, click.issue_id, position, to_unix(click.at)])?;
            }
            Ok(ClickOutcome::Counted { link })
        })
    }

    /// The link of an issue's story, read without counting anything: where a
    /// click goes when it could not be counted.
    pub fn issue_story_link(
        &self,
        week: &str,
        position: u32,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::ISSUE_STORY_LINK)?
            .query_row(params![week, i64::from(position)], |r| r.get("link"))
            .optional()?)
    }

    /// Marks whether an issue's mail counts clicks.
    pub fn set_clicks_counted(&self, issue_id: i64, counted: bool) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql::ISSUE_CLICKS_COUNTED)?
            .execute(params![issue_id, counted])?;
        Ok(())
    }

    /// Clicks per story of an issue, by position (open window included).
    pub fn story_clicks(&self, issue_id: i64) -> Result<Vec<StoryClicks>, StoreError> {
        query_all(
            &self.conn,
            sql::STORY_CLICK_COUNTS,
            params![issue_id],
            |r| {
                Ok(StoryClicks {
                    clicks: r.get::<_, i64>("clicks")? as u64,
                    unique: r.get::<_, i64>("unique_clicks")? as u64,
                    automated: r.get::<_, i64>("automated")? as u64,
                })
            },
        )
    }

    /// How many copies of an issue had at least one story opened by a reader
    /// (while its window was open: later clicks cannot be told apart).
    pub fn issue_readers(&self, issue_id: i64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(sql::ISSUE_READER_COUNT)?
            .query_row(params![issue_id], |r| r.get("readers"))?;
        Ok(n as u64)
    }

    /// Every issue whose send began, oldest first.
    pub fn report_issues(&self) -> Result<Vec<IssueRow>, StoreError> {
        query_all(&self.conn, sql::REPORT_ISSUES, [], |r| {
            Ok(IssueRow {
                id: r.get("id")?,
                week: r.get("week")?,
                subject: r.get("subject")?,
                started_at: from_unix(r.get("created_at")?),
                sent: r.get::<_, i64>("sent")? as u64,
                clicks_counted: r.get("clicks_counted")?,
            })
        })
    }

    /// Subscribers with a bounce or complaint report about an issue, by kind.
    pub fn report_bounces(&self, issue_id: i64) -> Result<Vec<(String, u64)>, StoreError> {
        query_all(&self.conn, sql::REPORT_BOUNCES, params![issue_id], |r| {
            Ok((r.get("kind")?, r.get::<_, i64>("subscribers")? as u64))
        })
    }

    /// Unsubscribes after an issue, by method: those naming it, and those
    /// naming none in `[from, until)`.
    pub fn report_unsubscribes(
        &self,
        issue_id: i64,
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let until = until.map(to_unix).unwrap_or(i64::MAX);
        query_all(
            &self.conn,
            sql::REPORT_UNSUBSCRIBES,
            params![issue_id, to_unix(from), until],
            |r| Ok((r.get("method")?, r.get::<_, i64>("events")? as u64)),
        )
    }

    /// The list's history since `from`: when someone became active (joins)
    /// or stopped being active (leaves); and how many are active now.
    pub fn report_list_since(&self, from: DateTime<Utc>) -> Result<ListMoves, StoreError> {
        let moves = query_all(
            &self.conn,
            sql::REPORT_LIST_MOVES_SINCE,
            params![to_unix(from)],
            |r| Ok((from_unix(r.get("at")?), r.get::<_, bool>("joined")?)),
        )?;
        let active: i64 = self
            .conn
            .prepare_cached(sql::REPORT_ACTIVE_NOW)?
            .query_row([], |r| r.get("active"))?;
        let (joins, leaves): (Vec<_>, Vec<_>) = moves.into_iter().partition(|(_, joined)| *joined);
        Ok(ListMoves {
            joins: joins.into_iter().map(|(at, _)| at).collect(),
            leaves: leaves.into_iter().map(|(at, _)| at).collect(),
            active_now: active as u64,
        })
    }
}

fn close_windows_in(tx: &rusqlite::Connection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let due = query_all(tx, sql::CLICK_WINDOWS_DUE, params![to_unix(now)], |r| {
        r.get::<_, i64>("issue_id")
    })?;
    for issue in &due {
        tx.prepare_cached(sql::CLICKS_SEEN_FOLD)?
            .execute(params![issue])?;
        tx.prepare_cached(sql::ISSUE_READERS_FOLD)?
            .execute(params![issue])?;
        tx.prepare_cached(sql::CLICKS_SEEN_DELETE_ISSUE)?
            .execute(params![issue])?;
        tx.prepare_cached(sql::CLICK_WINDOW_CLOSE)?
            .execute(params![issue])?;
    }
    Ok(due.len())
}
