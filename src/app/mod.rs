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
    /// A `[[signals.pages]]` page: how many stories its list linked to.
    Listed(usize),
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
    for page in &config.signals.pages {
        let outcome = fetch_listing(&client, page, &limits).await;
        if let Ok(urls) = &outcome {
            store.record_listing(&page.source.url, urls, now)?;
        }
        reports.push(FeedReport {
            feed: format!("list {} ({})", page.source.url, page.selector),
            outcome: outcome.map(|urls| FeedOutcome::Listed(urls.len())),
        });
    }
    Ok(reports)
}

/// Reads one of the site's list pages: the stories it links to, top first.
async fn fetch_listing(
    client: &reqwest::Client,
    page: &crate::config::SignalPage,
    limits: &feed::FetchLimits,
) -> Result<Vec<String>, FeedError> {
    let fetched = feed::fetch(client, &page.source, &feed::Validators::default(), limits).await?;
    let Fetched::Body { bytes, .. } = fetched else {
        return Ok(Vec::new());
    };
    let base = match &page.source.location {
        crate::config::FeedLocation::Http(u) => Some(u.clone()),
        crate::config::FeedLocation::File(_) => None,
    };
    feed::listed_links(
        &String::from_utf8_lossy(&bytes),
        &page.selector,
        base.as_ref(),
    )
    .map_err(FeedError::Malformed)
}

/// What `gazette feeds check` found in one feed.
#[derive(Debug)]
pub struct FeedCheck {
    pub feed: String,
    pub outcome: Result<feed::ParsedFeed, FeedError>,
}

/// Fetches and parses every configured feed, storing nothing: what an operator
/// reads before trusting a new feed.
pub async fn check_feeds(config: &Config) -> Vec<FeedCheck> {
    let limits = feed::FetchLimits {
        timeout: Duration::from_secs(config.fetch.timeout_secs),
        max_bytes: config.fetch.max_bytes,
    };
    let client = feed::http_client(&limits);
    let mut checks = Vec::new();
    for source in &config.feeds {
        let fetched = feed::fetch(&client, source, &feed::Validators::default(), &limits).await;
        let outcome = fetched.and_then(|f| match f {
            Fetched::Body { bytes, .. } => {
                let base = match &source.location {
                    crate::config::FeedLocation::Http(u) => Some(u.to_string()),
                    crate::config::FeedLocation::File(_) => None,
                };
                let options = feed::ParseOptions {
                    base: base.as_deref(),
                    zone: config.newsletter.timezone,
                };
                feed::parse_with(&bytes, &options)
            }
            Fetched::NotModified => Err(FeedError::Malformed(
                "the server answered 304 Not Modified to an unconditional request".into(),
            )),
        });
        checks.push(FeedCheck {
            feed: source.label().to_string(),
            outcome,
        });
    }
    checks
}

/// The report of `gazette feeds check`: per feed, what share of items has a
/// date, an image and a summary, what was cleaned, and every problem.
pub fn describe_feed_checks(checks: &[FeedCheck]) -> String {
    let mut out = String::new();
    let share = |n: usize, of: usize| match (n * 100 + of / 2).checked_div(of) {
        None => "-".to_string(),
        Some(percent) => format!("{percent}%"),
    };
    for c in checks {
        let parsed = match &c.outcome {
            Err(e) => {
                out += &format!("{}: FAILED: {e}\n", c.feed);
                continue;
            }
            Ok(p) => p,
        };
        let items = &parsed.items;
        let n = items.len();
        let count = |f: &dyn Fn(&feed::FeedItem) -> bool| items.iter().filter(|i| f(i)).count();
        out += &format!(
            "{}: {} items{}\n  dated {}, with image {}, with summary {}\n  boilerplate removed from {}, derived titles {}, links resolved {}\n",
            c.feed,
            n,
            parsed
                .title
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            share(count(&|i| i.published.is_some()), n),
            share(count(&|i| i.image.is_some()), n),
            share(count(&|i| !i.summary.is_empty()), n),
            parsed.stats.boilerplate_removed,
            count(&|i| i.title_derived),
            parsed.stats.links_resolved,
        );
        let mut problems: Vec<String> = parsed
            .skipped
            .iter()
            .map(|s| format!("skipped {s}"))
            .collect();
        let undated = n - count(&|i| i.published.is_some());
        if undated > 0 {
            problems.push(format!(
                "{undated} items have no date gazette can read: they count from when first seen (not on the first fetch)"
            ));
        }
        if n == 0 {
            problems.push("no items".into());
        }
        for p in problems {
            out += &format!("  problem: {p}\n");
        }
    }
    out
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
            Ok(FeedOutcome::Listed(n)) => summary
                .lines
                .push(format!("{}: {n} stories listed", r.feed)),
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

/// Column names that hold a page's address, as analytics tools export them:
/// ours (`url`), Plausible (`name`), Matomo (`label`, `url`), GA4 (`page path…`),
/// Umami (`x`), and the like.
const PAGE_COLUMNS: &[&str] = &[
    "url",
    "page url",
    "page",
    "path",
    "page path",
    "page path and screen class",
    "page path + query string",
    "pagepath",
    "page_path",
    "landing page",
    "name",
    "label",
    "x",
];
/// Column names that hold a count, best first: views over visits over visitors.
const COUNT_COLUMNS: &[&str] = &[
    "views",
    "pageviews",
    "page views",
    "screen_page_views",
    "nb_hits",
    "hits",
    "y",
    "visits",
    "nb_visits",
    "sessions",
    "visitors",
    "nb_uniq_visitors",
    "unique visitors",
    "users",
    "total users",
];

/// Reads page views from a CSV: ours (`url,views`) or an analytics export
/// (Plausible, Matomo, GA4, Umami; their columns are recognised by name, `#`
/// comment lines skipped, `1,234` read as 1234). Addresses are full URLs
/// (canonicalised) or paths (`/blog/x`, matched against stories' paths).
/// Errors name the file and line.
pub fn read_views_csv(path: &Path) -> Result<Vec<(String, u64)>> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading views file {file}"))?;
    let headers = reader.headers()?.clone();
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            headers
                .iter()
                .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(n))
        })
    };
    let (Some(page_col), Some(count_col)) = (find(PAGE_COLUMNS), find(COUNT_COLUMNS)) else {
        bail!(
            "{file}: the header names no page column (url, page, path, name, label…) and count column (views, pageviews, hits, visits, visitors…); found: {}",
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut rows: Vec<(String, u64)> = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| file.clone())?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let page = record.get(page_col).unwrap_or("").trim();
        let count = record
            .get(count_col)
            .unwrap_or("")
            .replace([',', '_', ' '], "");
        let key = if page.starts_with('/') {
            let path = page.split(['?', '#']).next().unwrap_or(page);
            let trimmed = path.trim_end_matches('/');
            if trimmed.is_empty() { "/" } else { trimmed }.to_string()
        } else {
            feed::canonical_url(page).with_context(|| {
                format!("{file}: line {line}: {page:?} is neither an http(s) URL nor a path")
            })?
        };
        let views: u64 = count
            .parse()
            .with_context(|| format!("{file}: line {line}: {count:?} is not a whole number"))?;
        // The same page on several lines (GA4 splits by screen class): add up.
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += views,
            None => rows.push((key, views)),
        }
    }
    Ok(rows)
}

/// Views by canonical URL for the week's stories: a row keyed by a full URL
/// counts for that story, a row keyed by a path for the story with that path.
fn views_of(stories: &[crate::store::Story], rows: &HashMap<String, u64>) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for s in stories {
        let path = url::Url::parse(&s.url)
            .map(|u| {
                let p = u.path().trim_end_matches('/').to_string();
                if p.is_empty() {
                    "/".into()
                } else {
                    p
                }
            })
            .unwrap_or_default();
        if let Some(v) = rows.get(&s.url).or_else(|| rows.get(&path)) {
            out.insert(s.url.clone(), *v);
        }
    }
    out
}

/// What the site and its readers said about the week: views, the site's own
/// lists (as seen from the week's start to a week after its end, since a "Hot
/// this week" list read on Monday is about the week just ended; else as first
/// seen after it) and headlines of the eight weeks before (a headline that
/// recurs is no news).
fn week_signals(
    config: &Config,
    store: &Store,
    stories: &[crate::store::Story],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<rank::Signals> {
    let mut views: HashMap<String, u64> = store.views()?;
    if let Some(path) = &config.ranking.views {
        views.extend(read_views_csv(path)?);
    }
    let mut listed: HashMap<String, rank::Listed> = HashMap::new();
    let listings = store.listings_since(start)?;
    for page in &config.signals.pages {
        let of_page: Vec<&crate::store::Listing> = listings
            .iter()
            .filter(|l| l.page == page.source.url)
            .collect();
        // What the list said during the week (and the week after); failing
        // that, the first look after it, when gazette started later.
        let window = end + chrono::Duration::days(7);
        let mut seen: Vec<&crate::store::Listing> = of_page
            .iter()
            .copied()
            .filter(|l| l.seen_at < window)
            .collect();
        if seen.is_empty() {
            if let Some(first) = of_page.first().map(|l| l.seen_at) {
                seen = of_page
                    .iter()
                    .copied()
                    .filter(|l| l.seen_at == first)
                    .collect();
            }
        }
        for l in seen {
            let share = f64::from(l.entries - l.position.min(l.entries) + 1) / f64::from(l.entries);
            let candidate = rank::Listed {
                score: page.weight * share,
                place: format!("#{} of {} on {}", l.position, l.entries, l.page),
            };
            match listed.get(&l.url) {
                Some(best) if best.score >= candidate.score => {}
                _ => {
                    listed.insert(l.url.clone(), candidate);
                }
            }
        }
    }
    let recurring = store
        .titles_between(start - chrono::Duration::weeks(8), start)?
        .iter()
        .map(|t| rank::title_words(t))
        .filter(|k| !k.is_empty())
        .collect();
    Ok(rank::Signals {
        views: views_of(stories, &views),
        listed,
        recurring,
    })
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
    let signals = week_signals(config, store, &stories, (start, end))?;
    let reference = now.min(end);
    let selection = rank::rank(
        &stories,
        &signals,
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
    for signal in &ranked.selection.signals {
        out += &format!("signals: {signal}\n");
    }
    out += "\n";
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
        let derived = if c.title_derived {
            " (title made from the text: the feed gave none)"
        } else {
            ""
        };
        out += &format!("{label:<6} {}{derived}\n", c.title);
        out += &format!("       {}\n", c.url);
        if c.reader_link() != c.url {
            out += &format!("       readers get {}\n", c.reader_link());
        }
        out += &format!("       score {}\n", c.explain_score(ranked.reference));
        out += &format!("       why: {}\n", c.reason);
        if !c.folded.is_empty() {
            out += &format!("       folded in: {}\n", c.folded.join(", "));
        }
        out += "\n";
    }
    out
}
