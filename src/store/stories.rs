//! Feeds, stories and page views: what `fetch` stores and `build` reads. In: a
//! feed's parsed items. Out: the week's [`Story`] rows with what their
//! appearances in feeds add up to.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{named_params, params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{from_unix, query_all, sql, to_unix, Store, StoreError};
use crate::feed::{FeedItem, Validators};

/// A story as stored, with what its appearances in feeds add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Story {
    pub id: i64,
    /// The canonical URL: what recognises the story.
    pub url: String,
    /// The link a reader is sent: one a feed gave, preferring one on the story's
    /// own site and without tracking parameters.
    pub link: String,
    pub title: String,
    /// The feed gave no title; gazette made this one from the text.
    pub title_derived: bool,
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
    /// The most comments any feed counted for it.
    pub comments: Option<u64>,
}

/// A story's place on one of the site's lists, when it was seen there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub page: String,
    pub url: String,
    /// 1 is the top.
    pub position: u32,
    pub entries: u32,
    pub seen_at: DateTime<Utc>,
}

/// A configured feed as the store knows it.
#[derive(Debug, Clone)]
pub struct FeedState {
    pub id: i64,
    pub validators: Validators,
    /// False until a fetch of the feed succeeded: what it lists on its first
    /// good fetch is its back catalogue.
    pub fetched_before: bool,
}

/// What storing one feed's items did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl Store {
    /// Registers a feed (or renames it); returns its id, remembered validators
    /// and whether it was fetched before.
    pub fn feed(&self, url: &str, name: Option<&str>) -> Result<FeedState, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql::FEED_UPSERT)?;
        Ok(stmt.query_row(params![url, name], |r| {
            Ok(FeedState {
                id: r.get("id")?,
                validators: Validators {
                    etag: r.get("etag")?,
                    last_modified: r.get("last_modified")?,
                },
                fetched_before: r.get::<_, Option<i64>>("last_ok_at")?.is_some(),
            })
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
            .prepare_cached(sql::FEED_RECORD_FETCH)?
            .execute(named_params! {
                ":id": feed_id,
                ":etag": etag,
                ":last_modified": last_modified,
                ":at": to_unix(now),
                ":status": status,
            })?;
        Ok(())
    }

    /// Stores one feed's items in one transaction. A story is the same story when
    /// the feed's guid or the canonical URL is the same; repeats add appearances.
    /// An undated item counts from `now`, except on the feed's first fetch
    /// (`first_fetch`): the back catalogue a feed lists then is not this week's
    /// news, so it is dated at the epoch until the feed gives a date.
    pub fn store_items(
        &mut self,
        feed_id: i64,
        items: &[FeedItem],
        now: DateTime<Utc>,
        first_fetch: bool,
    ) -> Result<StoreCounts, StoreError> {
        self.in_transaction(|tx| store_items_in(tx, feed_id, items, now, first_fetch))
    }

    /// Stories published in `[start, end)`.
    /// When the most recently published stories were published, newest first.
    pub fn recent_publication_times(&self, limit: usize) -> Result<Vec<DateTime<Utc>>, StoreError> {
        query_all(
            &self.conn,
            sql::STORIES_RECENT_TIMES,
            params![limit as i64],
            |r| Ok(from_unix(r.get("published_at")?)),
        )
    }

    /// How many stories were published in `[start, end)`.
    pub fn story_count_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::STORIES_COUNT_BETWEEN)?
            .query_row(params![to_unix(start), to_unix(end)], |r| {
                r.get::<_, i64>("stories")
            })? as u64)
    }

    pub fn stories_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Story>, StoreError> {
        query_all(
            &self.conn,
            sql::STORIES_PUBLISHED_BETWEEN,
            params![to_unix(start), to_unix(end)],
            story_from_row,
        )
    }

    /// The stored story with this canonical URL, if any.
    pub fn story_with_url(&self, url: &str) -> Result<Option<Story>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql::STORY_WITH_URL)?;
        Ok(stmt.query_row(params![url], story_from_row).optional()?)
    }

    /// Replaces view counts for these URLs, in one transaction.
    pub fn import_views(&mut self, rows: &[(String, u64)]) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut stmt = tx.prepare_cached(sql::VIEWS_UPSERT)?;
            for (url, views) in rows {
                stmt.execute(params![url, *views as i64])?;
            }
            Ok(())
        })
    }

    /// Records what one of the site's lists linked to now (canonical URLs, top
    /// first), in one transaction.
    pub fn record_listing(
        &mut self,
        page: &str,
        urls: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut stmt = tx.prepare_cached(sql::LISTING_INSERT)?;
            for (i, url) in urls.iter().enumerate() {
                stmt.execute(named_params! {
                    ":page": page,
                    ":url": url,
                    ":position": i as i64 + 1,
                    ":entries": urls.len() as i64,
                    ":at": to_unix(now),
                })?;
            }
            Ok(())
        })
    }

    /// Every place on the site's lists seen at or after `since`, oldest first.
    pub fn listings_since(&self, since: DateTime<Utc>) -> Result<Vec<Listing>, StoreError> {
        query_all(
            &self.conn,
            sql::LISTINGS_SINCE,
            params![to_unix(since)],
            |r| {
                Ok(Listing {
                    page: r.get("page")?,
                    url: r.get("url")?,
                    position: r.get::<_, i64>("position")?.max(1) as u32,
                    entries: r.get::<_, i64>("entries")?.max(1) as u32,
                    seen_at: from_unix(r.get("seen_at")?),
                })
            },
        )
    }

    /// Headlines of the stories published in `[start, end)`.
    pub fn titles_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        query_all(
            &self.conn,
            sql::TITLES_PUBLISHED_BETWEEN,
            params![to_unix(start), to_unix(end)],
            |r| r.get("title"),
        )
    }

    pub fn views(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql::VIEWS_ALL)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>("url")?,
                r.get::<_, i64>("views")?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn store_items_in(
    tx: &Transaction,
    feed_id: i64,
    items: &[FeedItem],
    now: DateTime<Utc>,
    first_fetch: bool,
) -> Result<StoreCounts, StoreError> {
    let mut counts = StoreCounts::default();
    let now_s = to_unix(now);
    for item in items {
        let existing: Option<i64> = tx
            .prepare_cached(sql::APPEARANCE_STORY)?
            .query_row(params![feed_id, item.guid], |r| r.get("story_id"))
            .optional()?;
        let existing = match existing {
            Some(id) => Some(id),
            None => tx
                .prepare_cached(sql::STORY_BY_URL)?
                .query_row(params![item.url], |r| r.get("id"))
                .optional()?,
        };
        let (published, estimated) = match item.published {
            Some(t) => (to_unix(t), 0),
            None if first_fetch => (0, 1),
            None => (now_s, 1),
        };
        let values = named_params! {
            ":url": item.url,
            ":title": item.title,
            ":summary": item.summary,
            ":image": item.image,
            ":published_at": published,
            ":estimated": estimated,
            ":now": now_s,
            ":image_width": item.image_size.map(|s| s.0),
            ":image_height": item.image_size.map(|s| s.1),
            ":title_derived": item.title_derived,
        };
        let story_id = match existing {
            Some(id) => {
                let mut values = values.to_vec();
                values.push((":id", &id));
                values.retain(|(name, _)| *name != ":url");
                let changed = tx
                    .prepare_cached(sql::STORY_UPDATE)?
                    .execute(values.as_slice())?;
                if changed > 0 {
                    counts.updated += 1;
                } else {
                    counts.unchanged += 1;
                }
                id
            }
            None => {
                counts.new += 1;
                tx.prepare_cached(sql::STORY_INSERT)?
                    .query_row(values, |r| r.get("id"))?
            }
        };
        let categories = serde_json::to_string(&item.categories).expect("strings serialize");
        tx.prepare_cached(sql::APPEARANCE_UPSERT)?.execute(params![
            story_id,
            feed_id,
            item.guid,
            item.link,
            categories,
            now_s,
            item.comments.map(|c| c as i64)
        ])?;
    }
    Ok(counts)
}

/// A row of `stories_published_between` / `story_with_url`.
fn story_from_row(r: &Row) -> rusqlite::Result<Story> {
    let category_lists: String = r.get("category_lists")?;
    let lists: Vec<Vec<String>> = serde_json::from_str(&category_lists).unwrap_or_default();
    let mut categories: Vec<String> = Vec::new();
    for c in lists.into_iter().flatten() {
        if !categories.iter().any(|x| x.eq_ignore_ascii_case(&c)) {
            categories.push(c);
        }
    }
    let mut sources: Vec<String> = r
        .get::<_, Option<String>>("sources")?
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    sources.sort();
    let url: String = r.get("url")?;
    let links: Vec<String> =
        serde_json::from_str(&r.get::<_, String>("links")?).unwrap_or_default();
    Ok(Story {
        id: r.get("id")?,
        link: reader_link(&url, links),
        url,
        title: r.get("title")?,
        title_derived: r.get::<_, i64>("title_derived")? != 0,
        summary: r.get("summary")?,
        image: r.get("image")?,
        image_size: r
            .get::<_, Option<u32>>("image_width")?
            .zip(r.get::<_, Option<u32>>("image_height")?),
        published_at: from_unix(r.get("published_at")?),
        published_estimated: r.get::<_, i64>("published_estimated")? != 0,
        appearances: r.get::<_, i64>("appearances")? as u32,
        sources,
        categories,
        comments: r
            .get::<_, Option<i64>>("comments")?
            .map(|c| c.max(0) as u64),
    })
}

/// Which of the links feeds gave for a story a reader is sent: one whose
/// canonical form is the story's (its own site, not a redirector), then the
/// shortest (tracking parameters are what makes the others longer), then the
/// first seen. The canonical URL only when no feed gave a link at all.
fn reader_link(url: &str, links: Vec<String>) -> String {
    let own = |l: &String| {
        crate::feed::canonical_url(l).is_some_and(|c| url.split('#').next() == Some(c.as_str()))
    };
    links
        .iter()
        .enumerate()
        .min_by_key(|(i, l)| (!own(l), l.len(), *i))
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn item(guid: &str, link: &str, title: &str) -> FeedItem {
        FeedItem {
            guid: guid.into(),
            link: link.into(),
            url: crate::feed::canonical_url(link).unwrap(),
            title: title.into(),
            title_derived: false,
            summary: String::new(),
            categories: vec!["Fintech".into()],
            image: None,
            image_size: None,
            published: Some(Utc.with_ymd_and_hms(2026, 2, 3, 0, 0, 0).unwrap()),
            comments: None,
        }
    }

    #[test]
    fn refetch_never_duplicates_and_counts_appearances() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let feed = store.feed("f", None).unwrap().id;
        let now = Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap();
        let items = vec![
            item("a", "https://x.example/a?utm_source=hot", "A"),
            item("a-topics", "https://www.x.example/a/", "A"),
            item("b", "https://x.example/b", "B"),
        ];
        let c = store.store_items(feed, &items, now, false).unwrap();
        assert_eq!(c.new, 2);
        let c = store.store_items(feed, &items, now, false).unwrap();
        assert_eq!(c.new, 0);
        let week = store
            .stories_between(now - chrono::Duration::days(7), now)
            .unwrap();
        assert_eq!(week.len(), 2);
        assert_eq!(week[0].appearances, 2);
        assert_eq!(week[1].appearances, 1);
    }
}
