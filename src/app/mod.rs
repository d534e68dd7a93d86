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
use crate::token::Signer;
use crate::week::IsoWeek;

mod bounces;
mod feeds;
mod privacy;
mod report;
mod sending;
mod signals;
mod subscribers;
pub use bounces::*;
pub use feeds::*;
pub use privacy::*;
pub use report::*;
pub use sending::*;
pub use signals::*;
pub use subscribers::*;

/// Opens the database; when this creates it and `[database] seed_subscribers` is
/// set, imports that file once.
pub fn open_store(config: &Config) -> Result<Store> {
    let fresh = !config.database.path.exists();
    // A seed that cannot be read must not leave an empty database behind:
    // it would never be seeded once the path is fixed.
    if let (true, Some(seed)) = (fresh, &config.database.seed_subscribers) {
        if !seed.is_file() {
            bail!(
                "[database] seed_subscribers: {} does not exist (nothing was created; fix the path, or remove the key)",
                seed.display()
            );
        }
    }
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
    let choices = digest::read_choices(&dir)?;
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
    // Once a send began, the issue is what subscribers received: frozen for
    // every path, so no one gets another subject and the archive stays true.
    if store.send_started(&week.to_string())? {
        let counts = match store.issue_id(&week.to_string())? {
            Some(id) => store.ledger_counts(id)?,
            None => Default::default(),
        };
        bail!(
            "{week}: a send of this issue has begun ({} delivered so far), so the issue is frozen; digests/{week}/ is what subscribers receive",
            counts.sent
        );
    }
    if let Some((by, at)) = store.approval(&week.to_string())? {
        bail!(
            "{week}: approved by {by} on {}, so the issue is frozen as approved; `gazette unapprove --week {week}` to change it",
            at.with_timezone(&config.newsletter.timezone).format("%Y-%m-%d %H:%M %Z")
        );
    }
    let Some(ranked) = rank_week(config, store, week, now)? else {
        return Ok(None);
    };
    digest::ensure_choices_file(&config.week_dir(&week))?;
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
    digest::write_issue(
        &dir,
        &fitted.issue,
        &record,
        config.newsletter.base_url.as_str(),
    )?;
    tracing::info!(
        %week,
        stories = record.selection.picks.len(),
        bytes = fitted.sent_size,
        subject = %record.subject,
        "issue built"
    );
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
        theme: &config.theme,
        week,
        summary_chars: config.ranking.summary_chars,
    };
    let mut left_out = Vec::new();
    loop {
        let issue = render::render(&selection, choices, &ctx)?;
        let sent_size = crate::message::sent_size(&issue, config, week)?;
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

/// `gazette explain`: every candidate, its score and parts, in or out and why;
/// times in the newsletter's zone `tz`.
pub fn explain(ranked: &Ranked, tz: chrono_tz::Tz) -> String {
    let mut out = format!(
        "{}: {} stories, {} candidates after folding duplicates; ages measured at {}\n\n",
        ranked.week,
        ranked.candidates,
        ranked.selection.picks.len() + ranked.selection.others.len(),
        ranked
            .reference
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %Z")
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
