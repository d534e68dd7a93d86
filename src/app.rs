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
use crate::store::{Store, StoreCounts};
use crate::week::IsoWeek;

/// Opens the database; when this creates it and `[database] seed_subscribers` is
/// set, imports that file once.
pub fn open_store(config: &Config) -> Result<Store> {
    let fresh = !config.database.path.exists();
    let mut store = Store::open(&config.database.path)
        .with_context(|| format!("opening database {}", config.database.path.display()))?;
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
        let (feed_id, validators) = store.feed(&source.url, source.name.as_deref())?;
        let (client, source, limits) = (client.clone(), source.clone(), limits.clone());
        tasks.spawn(async move {
            let fetched = feed::fetch(&client, &source, &validators, &limits).await;
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
                    feed::parse(&bytes, base.as_deref()).map(|p| Some((p, etag, last_modified)))
                }
                Ok(Fetched::NotModified) => Ok(None),
                Err(e) => Err(e),
            };
            (i, feed_id, parsed)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.context("a feed task panicked")?);
    }
    results.sort_by_key(|(i, _, _)| *i);
    let mut reports = Vec::new();
    for (i, feed_id, parsed) in results {
        let source = &config.feeds[i];
        let outcome = match parsed {
            Ok(Some((parsed, etag, last_modified))) => {
                let counts = store.store_items(feed_id, &parsed.items, now)?;
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

/// Prints fetch reports; fails (naming every broken feed) if any feed failed.
pub fn summarize_fetch(reports: &[FeedReport]) -> Result<String> {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for r in reports {
        match &r.outcome {
            Ok(FeedOutcome::NotModified) => lines.push(format!("{}: not modified", r.feed)),
            Ok(FeedOutcome::Stored {
                items,
                counts,
                skipped,
            }) => {
                lines.push(format!(
                    "{}: {items} items, {} new, {} updated",
                    r.feed, counts.new, counts.updated
                ));
                for s in skipped {
                    lines.push(format!("{}: skipped {s}", r.feed));
                }
            }
            Err(e) => failures.push(format!("feed {}: {e}", r.feed)),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} feeds failed (the others were stored):\n{}",
            failures.len(),
            reports.len(),
            failures.join("\n")
        );
    }
    Ok(lines.join("\n"))
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

// ---------------------------------------------------------------- subscribers

/// Validates an address with lettre's parser; returns it trimmed.
pub fn valid_address(email: &str) -> Result<String, String> {
    let trimmed = email.trim();
    if trimmed.is_empty() {
        return Err("no address".into());
    }
    trimmed
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("{trimmed:?} is not an email address ({e})"))
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub added: usize,
    pub existing: usize,
    pub bad: Vec<String>,
}

impl ImportReport {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "added {}, already on the list {}, bad lines {}",
            self.added,
            self.existing,
            self.bad.len()
        );
        for b in &self.bad {
            s += &format!("\n  {b}");
        }
        s
    }
}

/// `gazette subscribers import FILE.csv` (header `email,name`, name optional).
/// Good lines are stored in one transaction, bad ones reported by line number;
/// an address already on the list keeps its status (an import never resubscribes).
pub fn import_subscribers(
    store: &mut Store,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {file}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: line 1"))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let email_col = col("email").with_context(|| {
        format!("{file}: line 1: the header must name an `email` column (and optionally `name`)")
    })?;
    let name_col = col("name");
    let mut report = ImportReport::default();
    let mut seen = std::collections::HashSet::new();
    let tx = store.transaction()?;
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.bad.push(format!("{file}: line {line}: {e}"));
                continue;
            }
        };
        let email = match valid_address(record.get(email_col).unwrap_or("")) {
            Ok(e) => e,
            Err(reason) => {
                report.bad.push(format!("{file}: line {line}: {reason}"));
                continue;
            }
        };
        if !seen.insert(crate::store::email_key(&email)) {
            report.existing += 1;
            continue;
        }
        if crate::store::is_suppressed(&tx, &email)? {
            report
                .bad
                .push(format!("{file}: line {line}: {email} was erased at its owner's request and may not be added again"));
            continue;
        }
        let name = name_col
            .and_then(|c| record.get(c))
            .map(feed::clean_line)
            .filter(|n| !n.is_empty());
        match crate::store::add_subscriber_in(
            &tx,
            &email,
            name.as_deref(),
            crate::store::Status::Active,
            now,
        )? {
            crate::store::Added::New(_) => report.added += 1,
            crate::store::Added::Existing(..) => report.existing += 1,
        }
    }
    tx.commit()?;
    Ok(report)
}

// ---------------------------------------------------------------- sending

/// The week's built issue: read from `digests/<week>/`, or built now if it is not
/// there yet. `None` when the week has no stories.
pub fn built_issue(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<Option<Issue>> {
    if let Some((issue, _)) = digest::read_issue(&config.week_dir(&week))? {
        return Ok(Some(issue));
    }
    Ok(build(config, store, week, now)?.map(|b| b.issue))
}

/// True once a send of this week has begun: the issue must not change under it.
pub fn send_started(store: &Store, week: IsoWeek) -> Result<bool> {
    Ok(store.send_started(&week.to_string())?)
}

/// What the weekly job did.
pub struct RunOutcome {
    /// What to tell a person: the build, the send summary.
    pub lines: Vec<String>,
    /// Feeds that failed (the others were used); the job still built and sent.
    pub fetch_error: Option<anyhow::Error>,
    pub summary: Option<crate::send::SendSummary>,
}

/// The weekly job, as `gazette run` and the server's schedule both run it: fetch,
/// build (unless a send of the week has begun: the issue never changes under a
/// send), send. Idempotent: the ledger and the send lock make a second run, or a
/// concurrent one, harmless.
pub async fn run_job(
    config: &Config,
    week: IsoWeek,
    now: DateTime<Utc>,
    progress: std::sync::Arc<dyn crate::send::Progress>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<RunOutcome> {
    let mut store = open_store(config)?;
    let reports = fetch(config, &mut store, now).await?;
    let fetch_error = summarize_fetch(&reports).err();
    let mut lines = Vec::new();
    let issue = if send_started(&store, week)? {
        built_issue(config, &store, week, now)?
    } else {
        build(config, &store, week, now)?.map(|built| {
            lines.push(describe_build(&built));
            built.issue
        })
    };
    drop(store);
    let Some(issue) = issue else {
        lines.push(format!(
            "{week}: no stories were published that week; nothing to send"
        ));
        return Ok(RunOutcome {
            lines,
            fetch_error,
            summary: None,
        });
    };
    let summary = crate::send::send_issue(config, issue, week, progress, stop).await?;
    lines.push(describe_send(&summary));
    Ok(RunOutcome {
        lines,
        fetch_error,
        summary: Some(summary),
    })
}

/// The line a send ends with.
pub fn describe_send(summary: &crate::send::SendSummary) -> String {
    if summary.sent == 0 && summary.pending == 0 {
        format!("{}: nothing left to send. {}", summary.week, summary.line())
    } else {
        summary.line()
    }
}

// ---------------------------------------------------------------- bounces

/// What reading bounce mail came to, one line per message.
#[derive(Debug, Default)]
pub struct BounceImport {
    pub applied: Vec<String>,
    /// Reports already read before: nothing changed.
    pub repeated: usize,
    /// Reports whose subscriber could not be found, and mail that is no report.
    pub unmatched: Vec<String>,
}

impl BounceImport {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} applied, {} already read, {} not recognised or not matched",
            self.applied.len(),
            self.repeated,
            self.unmatched.len()
        );
        for line in self.applied.iter().chain(&self.unmatched) {
            s += &format!("\n  {line}");
        }
        s
    }
}

/// The issue a Message-ID of ours names: `<2026-W06.<id>.<random>@domain>`.
fn issue_of_message_id(store: &Store, message_id: &str) -> Result<Option<i64>> {
    let week = message_id
        .trim_start_matches('<')
        .split('.')
        .next()
        .unwrap_or("");
    if week.parse::<IsoWeek>().is_err() {
        return Ok(None);
    }
    Ok(store.issue_id(week)?)
}

/// `gazette bounces import PATH`: reads delivery reports and complaints and
/// applies the policy: a hard bounce (5.x.x) marks the subscriber bounced; soft
/// ones (4.x.x) count, and `[bounces] soft_limit` of them from different issues
/// mark them bounced; a complaint unsubscribes and marks them complained.
pub fn import_bounces(
    config: &Config,
    store: &mut Store,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<BounceImport> {
    use crate::bounce::{self, Kind};
    use crate::store::{query, Status, UnsubscribeMethod};
    use rusqlite::{params, OptionalExtension};
    let (signer, _) = crate::send::signer(config)?;
    let messages =
        bounce::messages_at(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = BounceImport::default();
    for (label, raw) in messages {
        let report = bounce::read(&raw);
        let seen: bool = store
            .conn()
            .prepare_cached(query("bounce_report_seen"))?
            .query_row([&report.key], |r| r.get(0))?;
        if seen {
            out.repeated += 1;
            continue;
        }
        let events: Vec<(Option<String>, &'static str, String, Option<String>)> = match &report.kind
        {
            Kind::Unrecognised(why) => {
                out.unmatched.push(format!(
                    "{label}: not recognised ({why}): {:?}",
                    report.subject
                ));
                continue;
            }
            Kind::Bounce(recipients) => recipients
                .iter()
                .filter(|r| r.is_hard() || r.is_soft())
                .map(|r| {
                    let kind = if r.is_hard() { "hard" } else { "soft" };
                    (
                        r.address.clone(),
                        kind,
                        r.status.clone(),
                        r.diagnostic.clone(),
                    )
                })
                .collect(),
            Kind::Complaint {
                feedback_type,
                recipient,
            } => {
                vec![(recipient.clone(), "complaint", feedback_type.clone(), None)]
            }
        };
        if events.is_empty() {
            out.unmatched.push(format!(
                "{label}: a delivery report with no failure in it (nothing to do)"
            ));
            continue;
        }
        // Who: the VERP address, the original Message-ID, the original's
        // unsubscribe token, then the failed address itself.
        let by_message: Option<(i64, i64)> = match &report.original.message_id {
            Some(id) => store
                .conn()
                .prepare_cached(query("delivery_by_message_id"))?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            None => None,
        };
        let by_verp = report
            .delivered_to
            .iter()
            .find_map(|a| bounce::verp_subscriber(&signer, a));
        let by_token = report.original.list_unsubscribe.as_deref().and_then(|h| {
            h.split(['<', '>', ','])
                .filter_map(|u| u.trim().rsplit_once("/u/").map(|(_, t)| t.to_string()))
                .find_map(|t| signer.verify_unsubscribe(&t))
        });
        let issue_id = match (by_message, &report.original.message_id) {
            (Some((issue, _)), _) => Some(issue),
            (None, Some(id)) => issue_of_message_id(store, id)?,
            (None, None) => None,
        };
        let single = events.len() == 1;
        let tx = store.transaction()?;
        for (i, (address, kind, status, detail)) in events.into_iter().enumerate() {
            let known = if single {
                by_verp.or(by_message.map(|m| m.1)).or(by_token)
            } else {
                None
            };
            let by_address = match address.as_deref().or(report.original.to.as_deref()) {
                Some(a) => tx
                    .prepare_cached(query("subscriber_by_email"))?
                    .query_row([crate::store::email_key(a)], |r| r.get::<_, i64>(0))
                    .optional()?,
                None => None,
            };
            let Some(subscriber) = known.or(by_address) else {
                out.unmatched.push(format!(
                    "{label}: {kind} {status} for {} matches no subscriber",
                    address.as_deref().unwrap_or("an unnamed recipient")
                ));
                continue;
            };
            let key = if single {
                report.key.clone()
            } else {
                format!("{}#{i}", report.key)
            };
            tx.prepare_cached(query("bounce_event_insert"))?
                .execute(params![
                    key,
                    subscriber,
                    issue_id,
                    kind,
                    status,
                    detail,
                    crate::store::to_unix(now)
                ])?;
            let outcome = match kind {
                "hard" => {
                    crate::store::set_status_in(
                        &tx,
                        subscriber,
                        Status::Bounced,
                        Some(UnsubscribeMethod::Bounce),
                        issue_id,
                        now,
                    )?;
                    "marked bounced".to_string()
                }
                "soft" => {
                    let issues: i64 = tx
                        .prepare_cached(query("soft_bounce_issues"))?
                        .query_row([subscriber], |r| r.get(0))?;
                    if issues >= i64::from(config.bounces.soft_limit) {
                        crate::store::set_status_in(
                            &tx,
                            subscriber,
                            Status::Bounced,
                            Some(UnsubscribeMethod::Bounce),
                            issue_id,
                            now,
                        )?;
                        format!(
                            "soft bounce {issues} of {}: marked bounced",
                            config.bounces.soft_limit
                        )
                    } else {
                        format!("soft bounce {issues} of {}", config.bounces.soft_limit)
                    }
                }
                _ => {
                    crate::store::set_status_in(
                        &tx,
                        subscriber,
                        Status::Complained,
                        Some(UnsubscribeMethod::Complaint),
                        issue_id,
                        now,
                    )?;
                    "unsubscribed and marked complained".to_string()
                }
            };
            out.applied.push(format!(
                "{label}: {kind} {status} for subscriber {subscriber}: {outcome}"
            ));
        }
        tx.commit()?;
    }
    Ok(out)
}

// ---------------------------------------------------------------- privacy, backups

/// `gazette subscribers export EMAIL`.
pub fn export_subscriber(store: &Store, email: &str) -> Result<serde_json::Value> {
    let s = store
        .subscriber_by_email(email)?
        .with_context(|| format!("{email} is not on the list"))?;
    Ok(store
        .export_subscriber(s.id)?
        .expect("the subscriber was just found"))
}

/// `gazette subscribers wipe EMAIL`.
pub fn wipe_subscriber(store: &mut Store, email: &str, now: DateTime<Utc>) -> Result<String> {
    let s = store
        .subscriber_by_email(email)?
        .with_context(|| format!("{email} is not on the list"))?;
    store.wipe_subscriber(s.id, now)?;
    Ok(format!(
        "erased {email}: only a salted hash remains, so no import can add it again"
    ))
}

/// `gazette backup PATH`: a consistent copy of the live database.
pub fn backup(config: &Config, dest: &Path) -> Result<String> {
    if dest.exists() {
        bail!("{} exists already; choose a new file", dest.display());
    }
    let store = open_store(config)?;
    store
        .backup_to(dest)
        .with_context(|| format!("backing up to {}", dest.display()))?;
    crate::store::check_gazette_database(dest)
        .map_err(|why| anyhow::anyhow!("the backup {} is unusable: {why}", dest.display()))?;
    let subscribers: i64 = rusqlite::Connection::open(dest)?.query_row(
        "SELECT count(*) FROM subscribers",
        [],
        |r| r.get(0),
    )?;
    Ok(format!(
        "backed up to {} ({subscribers} subscribers, integrity ok)",
        dest.display()
    ))
}

/// `gazette restore PATH`: replaces the database's content with a backup's,
/// refusing a file that is not a gazette database or is from a newer schema.
pub fn restore(config: &Config, src: &Path) -> Result<String> {
    crate::store::check_gazette_database(src)
        .map_err(|why| anyhow::anyhow!("{}: refusing to restore: {why}", src.display()))?;
    let mut store = open_store(config)?;
    store.restore_from(src)?;
    // Bring an older backup up to this gazette's schema.
    drop(store);
    let store = open_store(config)?;
    Ok(format!(
        "restored {} into {} (schema {})",
        src.display(),
        config.database.path.display(),
        store.user_version()?
    ))
}
