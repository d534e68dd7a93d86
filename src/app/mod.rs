//! The commands, one function each, as `main.rs` and the server call them. In: a
//! loaded [`Config`], the command's arguments and `now`. Out: what the command
//! reports, or an `anyhow` error with the context a person needs (which feed,
//! which file, which line). The stages themselves live in their own modules.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::digest;
use crate::feed::{self, FeedError, Fetched};
use crate::rank::{self, RankSettings, Selection};
use crate::render::{self, DigestRecord, Issue, RenderContext};
use crate::store::{Added, Origin, Status, Store, StoreCounts, UnsubscribeMethod};
use crate::text::clean_line;
use crate::token::Signer;
use crate::week::IsoWeek;

mod bounces;
mod privacy;
mod sending;
mod subscribers;
pub use bounces::*;
pub use privacy::*;
pub use sending::*;
pub use subscribers::*;

/// Opens the database; when this creates it and `[database] seed_subscribers` is
/// set, imports that file once.
pub fn open_store(config: &Config) -> Result<Store> {
    let fresh = !config.database.path.exists();
    // The store's errors name the file already.
    let mut store = Store::open(&config.database.path)?;
    if fresh {
        if let Some(seed) = &config.database.seed_subscribers {
            let report = import_subscribers(&mut store, seed, Utc::now())?;
            tracing::info!("seeded the new database: {}", report.describe());
        }
    }
    Ok(store)
}

/// `gazette init`: creates or upgrades the database.
pub fn init(config: &Config) -> Result<String> {
    let store = open_store(config)?;
    Ok(format!(
        "database {} is at schema version {}",
        config.database.path.display(),
        store.user_version()?
    ))
}

/// What one feed's fetch came to.
#[derive(Debug)]
pub struct FeedReport {
    pub feed: String,
    pub outcome: Result<FeedOutcome, FeedError>,
}

#[derive(Debug)]
pub enum FeedOutcome {
    NotModified,
    Stored {
        items: usize,
        counts: StoreCounts,
        skipped: Vec<String>,
    },
}

/// `gazette fetch`: reads every feed (concurrently), stores what parsed. A broken
/// feed does not stop the others; the caller turns any failure into an exit code.
pub async fn fetch(
    config: &Config,
    store: &mut Store,
    now: DateTime<Utc>,
) -> Result<Vec<FeedReport>> {
    let limits = feed::FetchLimits {
        timeout: Duration::from_secs(config.fetch.timeout_secs),
        max_bytes: config.fetch.max_bytes,
    };
    let client = feed::http_client(&limits);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, source) in config.feeds.iter().enumerate() {
        let state = store.feed(&source.url, source.name.as_deref())?;
        let (feed_id, first_fetch) = (state.id, !state.fetched_before);
        let (client, source, limits) = (client.clone(), source.clone(), limits.clone());
        let zone = config.newsletter.timezone;
        tasks.spawn(async move {
            let fetched = feed::fetch(&client, &source, &state.validators, &limits).await;
            let parsed = match fetched {
                Ok(Fetched::Body {
                    bytes,
                    etag,
                    last_modified,
                }) => {
                    let base = match &source.location {
                        crate::config::FeedLocation::Http(u) => Some(u.to_string()),
                        crate::config::FeedLocation::File(_) => None,
                    };
                    let options = feed::ParseOptions {
                        base: base.as_deref(),
                        zone,
                    };
                    feed::parse_with(&bytes, &options).map(|p| Some((p, etag, last_modified)))
                }
                Ok(Fetched::NotModified) => Ok(None),
                Err(e) => Err(e),
            };
            (i, feed_id, first_fetch, parsed)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.context("a feed task panicked")?);
    }
    results.sort_by_key(|(i, _, _, _)| *i);
    let mut reports = Vec::new();
    for (i, feed_id, first_fetch, parsed) in results {
        let source = &config.feeds[i];
        let outcome = match parsed {
            Ok(Some((parsed, etag, last_modified))) => {
                let counts = store.store_items(feed_id, &parsed.items, now, first_fetch)?;
                store.record_fetch(
                    feed_id,
                    etag.as_deref(),
                    last_modified.as_deref(),
                    now,
                    "ok",
                )?;
                Ok(FeedOutcome::Stored {
                    items: parsed.items.len(),
                    counts,
                    skipped: parsed.skipped,
                })
            }
            Ok(None) => {
                store.record_fetch(feed_id, None, None, now, "not modified")?;
                Ok(FeedOutcome::NotModified)
            }
            Err(e) => {
                store.record_fetch(feed_id, None, None, now, &format!("error: {e}"))?;
                Err(e)
            }
        };
        reports.push(FeedReport {
            feed: source.label().to_string(),
            outcome,
        });
    }
    Ok(reports)
}

/// What a fetch came to, one line per feed (failures included, named), and how
/// many failed.
#[derive(Debug, Default)]
pub struct FetchSummary {
    pub lines: Vec<String>,
    /// `feed NAME: why`, one per failed feed.
    pub failures: Vec<String>,
    pub failed: usize,
    pub total: usize,
}

impl FetchSummary {
    /// The error a fetch with failures ends in (exit 1): the feeds are named.
    pub fn error(&self) -> Option<anyhow::Error> {
        (self.failed > 0).then(|| {
            anyhow::anyhow!(
                "{} of {} feeds failed (the others were stored):\n{}",
                self.failed,
                self.total,
                self.failures.join("\n")
            )
        })
    }
}

/// One line per feed, every time: items, new, updated, skipped (each skipped
/// item named with why), or why it failed.
pub fn summarize_fetch(reports: &[FeedReport]) -> FetchSummary {
    let mut summary = FetchSummary {
        total: reports.len(),
        ..FetchSummary::default()
    };
    for r in reports {
        match &r.outcome {
            Ok(FeedOutcome::NotModified) => summary.lines.push(format!("{}: not modified", r.feed)),
            Ok(FeedOutcome::Stored {
                items,
                counts,
                skipped,
            }) => {
                summary.lines.push(format!(
                    "{}: {items} items, {} new, {} updated, {} skipped",
                    r.feed,
                    counts.new,
                    counts.updated,
                    skipped.len()
                ));
                for s in skipped {
                    summary.lines.push(format!("{}: skipped {s}", r.feed));
                }
            }
            Err(e) => {
                summary.failed += 1;
                summary.lines.push(format!("{}: FAILED: {e}", r.feed));
                summary.failures.push(format!("feed {}: {e}", r.feed));
            }
        }
    }
    summary
}

/// Reads a `url,views` CSV; errors name the file and line.
pub fn read_views_csv(path: &Path) -> Result<Vec<(String, u64)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading views file {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(url_col), Some(views_col)) = (col("url"), col("views")) else {
        bail!(
            "{}: line 1: the header must name columns url and views",
            path.display()
        );
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}: line {line}", path.display()))?;
        let url = record.get(url_col).unwrap_or("");
        let views = record.get(views_col).unwrap_or("");
        let canonical = feed::canonical_url(url).with_context(|| {
            format!(
                "{}: line {line}: {url:?} is not an http(s) URL",
                path.display()
            )
        })?;
        let views: u64 = views.parse().with_context(|| {
            format!(
                "{}: line {line}: views {views:?} is not a whole number",
                path.display()
            )
        })?;
        rows.push((canonical, views));
    }
    Ok(rows)
}

/// `gazette views import FILE`.
pub fn import_views(store: &mut Store, path: &Path) -> Result<String> {
    let rows = read_views_csv(path)?;
    store.import_views(&rows)?;
    Ok(format!("imported views for {} URLs", rows.len()))
}

/// The week a command works on: the one asked for, else the last complete week.
pub fn pick_week(config: &Config, week: Option<IsoWeek>, now: DateTime<Utc>) -> IsoWeek {
    week.unwrap_or_else(|| IsoWeek::last_complete(now, config.newsletter.timezone))
}

/// Everything ranking needs for a week, and its outcome.
pub struct Ranked {
    pub week: IsoWeek,
    pub choices: rank::EditorChoices,
    pub selection: Selection,
    pub reference: DateTime<Utc>,
    pub candidates: usize,
}

/// Gathers the week's stories and signals, reads the editor's choices, ranks.
/// `None` when the week has no stories.
pub fn rank_week(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<Option<Ranked>> {
    let dir = config.week_dir(&week);
    let choices = digest::load_choices(&dir)?;
    let (start, end) = week.bounds(config.newsletter.timezone);
    let mut stories = store.stories_between(start, end)?;
    if stories.is_empty() {
        return Ok(None);
    }
    for pin in &choices.pin {
        if let Some(url) = feed::canonical_url(pin) {
            if !stories.iter().any(|s| s.url == url) {
                if let Some(s) = store.story_with_url(&url)? {
                    stories.push(s);
                }
            }
        }
    }
    let mut views: HashMap<String, u64> = store.views()?;
    if let Some(path) = &config.ranking.views {
        for (url, v) in read_views_csv(path)? {
            views.insert(url, v);
        }
    }
    let reference = now.min(end);
    let selection = rank::rank(
        &stories,
        &views,
        &choices,
        &RankSettings::from(&config.ranking),
        reference,
    )
    .with_context(|| format!("{}", dir.join(digest::ISSUE_FILE).display()))?;
    Ok(Some(Ranked {
        week,
        choices,
        selection,
        reference,
        candidates: stories.len(),
    }))
}

/// The outcome of `build`.
pub struct Built {
    pub week: IsoWeek,
    pub issue: Issue,
    pub record: DigestRecord,
    pub dir: std::path::PathBuf,
    pub sent_size: usize,
    /// Stories left out so Gmail does not clip the issue.
    pub left_out: Vec<String>,
}

/// `gazette build`: ranks the week and writes `digests/<week>/`. `Ok(None)` (and
/// no files) when the week has no stories: no empty digest ever goes out.
pub fn build(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<Option<Built>> {
    let Some(ranked) = rank_week(config, store, week, now)? else {
        return Ok(None);
    };
    let fitted = render_fitting(config, week, ranked.selection, &ranked.choices)?;
    let record = DigestRecord {
        week,
        built_at: now,
        subject: fitted.issue.subject.clone(),
        preheader: fitted.issue.preheader.clone(),
        html_bytes: fitted.issue.html.len(),
        editor: ranked.choices,
        selection: fitted.selection,
    };
    let dir = config.week_dir(&week);
    digest::write_issue(&dir, &fitted.issue, &record)?;
    Ok(Some(Built {
        week,
        issue: fitted.issue,
        record,
        dir,
        sent_size: fitted.sent_size,
        left_out: fitted.left_out,
    }))
}

/// Gmail clips messages past about 102 KB; builds keep a margin under it.
pub const CLIP_GUARD_BYTES: usize = 100 * 1024;

/// An issue rendered to fit: see [`render_fitting`].
pub struct Fitted {
    pub issue: Issue,
    pub selection: Selection,
    pub sent_size: usize,
    /// Titles left out to stay under [`CLIP_GUARD_BYTES`], lowest-ranked first.
    pub left_out: Vec<String>,
}

/// Renders the selection; while the message as sent would pass
/// [`CLIP_GUARD_BYTES`], leaves out the lowest-ranked story that is not pinned
/// and renders again.
pub fn render_fitting(
    config: &Config,
    week: IsoWeek,
    mut selection: Selection,
    choices: &rank::EditorChoices,
) -> Result<Fitted> {
    let ctx = RenderContext {
        newsletter: &config.newsletter,
        week,
        summary_chars: config.ranking.summary_chars,
    };
    let mut left_out = Vec::new();
    loop {
        let issue = render::render(&selection, choices, &ctx)?;
        let sent_size = crate::message::sent_size(&issue, config, week);
        let last_unpinned = selection
            .picks
            .iter()
            .rposition(|c| c.verdict != rank::Verdict::Pinned);
        match last_unpinned {
            Some(i) if sent_size > CLIP_GUARD_BYTES && selection.picks.len() > 1 => {
                let mut c = selection.picks.remove(i);
                c.verdict = rank::Verdict::Clipped;
                c.reason = format!(
                    "left out so Gmail does not clip the issue ({sent_size} bytes as sent with it)"
                );
                left_out.push(c.title.clone());
                selection.others.insert(0, c);
            }
            _ => {
                return Ok(Fitted {
                    issue,
                    selection,
                    sent_size,
                    left_out,
                })
            }
        }
    }
}

/// One line about a build, and a warning when Gmail would clip it.
pub fn describe_build(built: &Built) -> String {
    let mut s = format!(
        "built {}: {} stories, \"{}\", {} bytes as sent, in {}",
        built.week,
        built.record.selection.picks.len(),
        built.issue.subject,
        built.sent_size,
        built.dir.display()
    );
    if !built.left_out.is_empty() {
        s += &format!(
            "\nleft out so Gmail does not clip the issue (over {CLIP_GUARD_BYTES} bytes as sent): {}",
            built.left_out.join("; ")
        );
    }
    if built.sent_size > render::GMAIL_CLIP_BYTES {
        s += &format!(
            "\nwarning: at {} bytes as sent, Gmail will clip this issue (limit about {} bytes); lower [ranking] stories or summary_chars",
            built.sent_size,
            render::GMAIL_CLIP_BYTES
        );
    }
    s
}

/// `gazette explain`: every candidate, its score and parts, in or out and why.
pub fn explain(ranked: &Ranked) -> String {
    let mut out = format!(
        "{}: {} stories, {} candidates after folding duplicates; ages measured at {}\n\n",
        ranked.week,
        ranked.candidates,
        ranked.selection.picks.len() + ranked.selection.others.len(),
        ranked.reference.to_rfc3339()
    );
    let all = ranked
        .selection
        .picks
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("IN #{}", i + 1), c))
        .chain(
            ranked
                .selection
                .others
                .iter()
                .map(|c| ("out".to_string(), c)),
        );
    for (label, c) in all {
        out += &format!("{label:<6} {}\n", c.title);
        out += &format!("       {}\n", c.url);
        out += &format!("       score {}\n", c.explain_score(ranked.reference));
        out += &format!("       why: {}\n", c.reason);
        if !c.folded.is_empty() {
            out += &format!("       folded in: {}\n", c.folded.join(", "));
        }
        out += "\n";
    }
    out
}
