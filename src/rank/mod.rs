//! Ranking: picks the week's top stories. Pure: in come the week's stories, their
//! signals (page views), the editor's choices (pins, drops), the settings and the
//! clock; out goes a [`Selection`] in which every candidate carries its score, the
//! parts of the score and the reason it is in or out. Same input, same output: ties
//! are broken by URL.
//!
//! Scoring: `(1 + repetition + sources + hot + views) × decay`, where
//! - repetition: +0.5 for each extra time the site listed the story (another
//!   section, another URL, the same headline), at most +2;
//! - sources: +0.5 for each extra feed that carried it, at most +2;
//! - hot: +1 when a feed filed it under hot / featured / trending / popular / …;
//! - views: up to +2, `2 × sqrt(views / most views this week)`;
//! - decay: `0.5^(age / half_life)` (default half-life: a week), age measured at
//!   the end of the week (or now, if it is not over), so a weekly digest still
//!   values Monday's big story.
//!
//! Diversity: at most `max_per_topic` stories per topic and `max_per_source` per
//! feed (0: no cap); if the caps leave the issue short, the best capped stories
//! fill it, and say so.
//!
//! Folding (which stories are the same story) is in `fold.rs`; the tests in
//! `tests.rs`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::feed::canonical_url;
use crate::store::Story;

mod fold;
pub use fold::{fold_duplicates, title_words};

/// What the editor wrote in `digests/<week>/issue.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditorChoices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preheader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intro: Option<String>,
    #[serde(default)]
    pub pin: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RankSettings {
    pub stories: usize,
    pub max_per_topic: usize,
    pub max_per_source: usize,
    pub half_life_hours: f64,
}

impl From<&crate::config::Ranking> for RankSettings {
    fn from(r: &crate::config::Ranking) -> Self {
        RankSettings {
            stories: r.stories,
            max_per_topic: r.max_per_topic,
            max_per_source: r.max_per_source,
            half_life_hours: r.half_life_hours,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RankError {
    #[error("pin: {0} is not a stored story (fetch its feed first, or check the URL)")]
    PinNotFound(String),
    #[error("pin: {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("{0} is both pinned and dropped")]
    PinnedAndDropped(String),
    #[error("pin lists {pins} stories but [ranking] stories is {max}")]
    TooManyPins { pins: usize, max: usize },
}

/// The parts a score is made of, kept so `explain` and the preview can show them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreParts {
    pub repetition: f64,
    pub sources: f64,
    pub hot: f64,
    /// On one of the site's own lists ("Hot this week", "Most read").
    #[serde(default)]
    pub listed: f64,
    pub views: f64,
    /// Comments, relative to the most-commented story of the week.
    #[serde(default)]
    pub comments: f64,
    /// Only in a week without engagement signals: +0.25 for a picture, +0.25
    /// for a summary of substance (100 characters or more).
    #[serde(default)]
    pub substance: f64,
    pub decay: f64,
    /// How readers of recent issues clicked the story's topic, as a factor
    /// (1: they say nothing about it). See [`TopicInterest`].
    #[serde(default = "one")]
    pub readers: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for ScoreParts {
    fn default() -> Self {
        ScoreParts {
            repetition: 0.0,
            sources: 0.0,
            hot: 0.0,
            listed: 0.0,
            views: 0.0,
            comments: 0.0,
            substance: 0.0,
            decay: 0.0,
            readers: 1.0,
        }
    }
}

impl ScoreParts {
    pub fn total(&self) -> f64 {
        (1.0 + self.repetition
            + self.sources
            + self.hot
            + self.listed
            + self.views
            + self.comments
            + self.substance)
            * self.decay
            * self.readers
    }
}

/// What readers' clicks in recent issues say about a topic: a bounded factor
/// on the scores of its stories.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInterest {
    /// The topic as the issues named it.
    pub topic: String,
    /// Its stories' click rate relative to all stories' (smoothed).
    pub ratio: f64,
    /// The same without smoothing: what readers did, as `explain` says it.
    pub observed: f64,
    /// The factor on scores: `ratio ^ click_weight`, within
    /// [`MIN_TOPIC_FACTOR`, `MAX_TOPIC_FACTOR`].
    pub factor: f64,
    /// Over how many issues.
    pub issues: usize,
}

/// The least a topic's clicks can weigh a story down.
pub const MIN_TOPIC_FACTOR: f64 = 0.8;
/// The most a topic's clicks can lift a story.
pub const MAX_TOPIC_FACTOR: f64 = 1.25;

impl TopicInterest {
    /// "Crypto ×1.14: readers clicked 31% more than average over 6 issues".
    pub fn note(&self) -> String {
        let percent = ((self.observed - 1.0) * 100.0).round();
        let how = if percent >= 0.0 {
            format!("{percent:.0}% more")
        } else {
            format!("{:.0}% less", -percent)
        };
        let issues = if self.issues == 1 { "issue" } else { "issues" };
        format!(
            "{} ×{:.2}: readers clicked {how} than average over {} {issues}",
            self.topic, self.factor, self.issues
        )
    }
}

/// A story on one of the site's own lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The list's weight times its position's share: first place counts fully.
    pub score: f64,
    /// Where: `"#2 of 5 on https://site/"`.
    pub place: String,
}

/// What the site and its readers say about the week's stories, besides the
/// feeds themselves.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Page views by canonical URL.
    pub views: HashMap<String, u64>,
    /// Stories on the site's own lists, by canonical URL.
    pub listed: HashMap<String, Listed>,
    /// Normalised headlines of earlier weeks' stories: a headline seen again is a
    /// recurring post (a sponsor slot, a weekly column), not news repeated.
    pub recurring: BTreeSet<Vec<String>>,
    /// Readers' clicks per topic in recent issues, by topic in lower case.
    pub topics: HashMap<String, TopicInterest>,
}

impl Signals {
    pub fn with_views(views: HashMap<String, u64>) -> Signals {
        Signals {
            views,
            ..Signals::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pinned,
    Picked,
    /// Over a diversity cap, but taken because the issue was short.
    Filled,
    Dropped,
    Capped,
    BelowCut,
    /// Picked, then left out so the message stays under Gmail's clipping size.
    Clipped,
}

impl Verdict {
    pub fn is_in(self) -> bool {
        matches!(self, Verdict::Pinned | Verdict::Picked | Verdict::Filled)
    }
}

/// One story (after folding near-duplicates) and what ranking made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The canonical URL: what pins and drops name.
    pub url: String,
    /// The link a reader is sent (the feed's own); older digests lack it.
    #[serde(default)]
    pub link: String,
    pub title: String,
    /// Made from the text of an untitled item.
    #[serde(default)]
    pub title_derived: bool,
    /// Comments counted by the feeds, when they say.
    #[serde(default)]
    pub comments: Option<u64>,
    pub summary: String,
    pub image: Option<String>,
    /// Width and height of the image in pixels, when known.
    #[serde(default)]
    pub image_size: Option<(u32, u32)>,
    pub published_at: DateTime<Utc>,
    pub sources: Vec<String>,
    pub categories: Vec<String>,
    pub topic: Option<String>,
    /// Other URLs folded into this story (same story, another address or headline twin).
    pub folded: Vec<String>,
    pub appearances: u32,
    pub views: u64,
    /// Where the site lists it, when it does.
    #[serde(default)]
    pub listed: Option<Listed>,
    /// Its headline ran in earlier weeks: no repetition boost.
    #[serde(default)]
    pub recurring: bool,
    pub score: f64,
    pub parts: ScoreParts,
    /// Why readers' clicks weigh on its score, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers_note: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
}

/// The outcome: `picks` in issue order, then every other candidate, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub picks: Vec<Candidate>,
    pub others: Vec<Candidate>,
    /// Which signals this week's stories had, in words: what the ranking rests on.
    #[serde(default)]
    pub signals: Vec<String>,
}

/// Category names (as whole words or phrases) that mean "the site thinks this matters".
const HOT_WORDS: &[&str] = &[
    "hot",
    "featured",
    "trending",
    "popular",
    "breaking",
    "top",
    "highlights",
];
const HOT_PHRASES: &[&str] = &[
    "editor's pick",
    "editors pick",
    "must read",
    "most read",
    "top stories",
];
/// Categories that say nothing about the topic.
const NOT_TOPICS: &[&str] = &[
    "uncategorized",
    "uncategorised",
    "news",
    "general",
    "all",
    "latest",
    "recent",
    "topics",
    "home",
];

pub fn is_hot_category(name: &str) -> bool {
    let lower = name.to_lowercase();
    HOT_PHRASES.iter().any(|p| lower.contains(p))
        || lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| HOT_WORDS.contains(&w))
}

fn topic_of(categories: &[String]) -> Option<String> {
    categories
        .iter()
        .find(|c| !is_hot_category(c) && !NOT_TOPICS.contains(&c.to_lowercase().as_str()))
        .cloned()
}

/// Ranks and selects. `stories` are the week's stories plus any pinned story from
/// another week; `reference` is the instant ages are measured at.
pub fn rank(
    stories: &[Story],
    signals: &Signals,
    choices: &EditorChoices,
    settings: &RankSettings,
    reference: DateTime<Utc>,
) -> Result<Selection, RankError> {
    let canon = |u: &String| canonical_url(u).ok_or_else(|| RankError::BadUrl(u.clone()));
    let pins: Vec<String> = choices.pin.iter().map(canon).collect::<Result<_, _>>()?;
    let drops: BTreeSet<String> = choices
        .drop
        .iter()
        .filter_map(|u| canonical_url(u))
        .collect();
    if let Some(p) = pins.iter().find(|p| drops.contains(*p)) {
        return Err(RankError::PinnedAndDropped(p.clone()));
    }
    if pins.len() > settings.stories {
        return Err(RankError::TooManyPins {
            pins: pins.len(),
            max: settings.stories,
        });
    }

    let mut candidates: Vec<Candidate> = fold_duplicates(stories)
        .into_iter()
        .map(|group| merge(stories, &group, signals))
        .collect();
    let max_views = candidates.iter().map(|c| c.views).max().unwrap_or(0);
    let max_comments = candidates
        .iter()
        .filter_map(|c| c.comments)
        .max()
        .unwrap_or(0);
    for c in &mut candidates {
        c.parts = score_parts(c, max_views, max_comments);
    }
    let week_signals = signals_present(&candidates);
    // With nothing but age to go on, age must not decide alone: a weekly digest
    // is not "the N most recent". Decay is then four times milder, and what a
    // story brings (a picture, a summary of substance) counts a little.
    let quiet = week_signals.is_empty();
    let half_life_factor = if quiet { 4.0 } else { 1.0 };
    let half_life_hours = settings.half_life_hours * half_life_factor;
    for c in &mut candidates {
        let age_hours = ((reference - c.published_at).num_seconds().max(0)) as f64 / 3600.0;
        c.parts.decay = 0.5f64.powf(age_hours / half_life_hours);
        if quiet {
            let picture = if c.image.is_some() { 0.25 } else { 0.0 };
            let summary = if c.summary.chars().count() >= 100 {
                0.25
            } else {
                0.0
            };
            c.parts.substance = picture + summary;
        }
        // Pinned stories are placed by the editor, whatever this makes of them.
        if let Some(interest) = c
            .topic
            .as_ref()
            .and_then(|t| signals.topics.get(&t.to_lowercase()))
        {
            c.parts.readers = interest.factor;
            c.readers_note = Some(interest.note());
        }
        c.score = c.parts.total();
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.url.cmp(&b.url)));

    let names = |c: &Candidate| -> Vec<String> {
        std::iter::once(c.url.clone())
            .chain(c.folded.iter().cloned())
            .collect()
    };
    let mut picks: Vec<Candidate> = Vec::new();
    let mut rest: Vec<Candidate> = Vec::new();
    let mut pinned: Vec<Option<Candidate>> = vec![None; pins.len()];
    for mut c in candidates {
        let urls = names(&c);
        if let Some(k) = pins.iter().position(|p| urls.contains(p)) {
            c.verdict = Verdict::Pinned;
            c.reason = format!("pinned by the editor (pin #{})", k + 1);
            pinned[k] = Some(c);
        } else if let Some(d) = urls.iter().find(|u| drops.contains(*u)) {
            c.verdict = Verdict::Dropped;
            c.reason = format!("dropped by the editor ({d})");
            rest.push(c);
        } else {
            rest.push(c);
        }
    }
    // Two pins may name one story (folded duplicates): it stands at the first.
    let pinned_urls: BTreeSet<String> = pinned.iter().flatten().flat_map(names).collect();
    for (k, p) in pinned.into_iter().enumerate() {
        match p {
            Some(c) => picks.push(c),
            None if pinned_urls.contains(&pins[k]) => {}
            None => return Err(RankError::PinNotFound(pins[k].clone())),
        }
    }

    let mut per_topic: HashMap<String, usize> = HashMap::new();
    let mut per_source: HashMap<String, usize> = HashMap::new();
    let count = |c: &Candidate, t: &mut HashMap<String, usize>, s: &mut HashMap<String, usize>| {
        if let Some(topic) = &c.topic {
            *t.entry(topic.to_lowercase()).or_default() += 1;
        }
        for src in &c.sources {
            *s.entry(src.clone()).or_default() += 1;
        }
    };
    for p in &picks {
        count(p, &mut per_topic, &mut per_source);
    }
    let mut capped: Vec<usize> = Vec::new();
    for (i, c) in rest.iter_mut().enumerate() {
        if c.verdict == Verdict::Dropped {
            continue;
        }
        if picks.len() >= settings.stories {
            break;
        }
        let topic_full = settings.max_per_topic > 0
            && c.topic.as_ref().is_some_and(|t| {
                per_topic.get(&t.to_lowercase()).copied().unwrap_or(0) >= settings.max_per_topic
            });
        let source_full = settings.max_per_source > 0
            && !c.sources.is_empty()
            && c.sources
                .iter()
                .all(|s| per_source.get(s).copied().unwrap_or(0) >= settings.max_per_source);
        if topic_full || source_full {
            c.verdict = Verdict::Capped;
            c.reason = if topic_full {
                format!(
                    "topic {:?} already has {} stories (ranking.max_per_topic)",
                    c.topic.as_deref().unwrap_or(""),
                    settings.max_per_topic
                )
            } else {
                format!(
                    "its source already has {} stories (ranking.max_per_source)",
                    settings.max_per_source
                )
            };
            capped.push(i);
            continue;
        }
        count(c, &mut per_topic, &mut per_source);
        c.verdict = Verdict::Picked;
        c.reason = format!("ranked #{} by score", picks.len() + 1);
        picks.push(c.clone());
    }
    for i in capped {
        if picks.len() >= settings.stories {
            break;
        }
        let c = &mut rest[i];
        c.verdict = Verdict::Filled;
        c.reason = format!("{}, but taken to fill the issue", c.reason);
        picks.push(c.clone());
    }
    let picked: BTreeSet<String> = picks.iter().map(|p| p.url.clone()).collect();
    let mut others: Vec<Candidate> = rest
        .into_iter()
        .filter(|c| !picked.contains(&c.url))
        .collect();
    for c in &mut others {
        if c.verdict == Verdict::Picked || c.verdict == Verdict::Filled {
            // Cloned into picks above; cannot happen, as picked URLs were filtered.
            continue;
        }
        if c.verdict != Verdict::Dropped && c.verdict != Verdict::Capped {
            c.verdict = Verdict::BelowCut;
            c.reason = format!(
                "below the cut: the issue holds {} stories",
                settings.stories
            );
        }
    }
    Ok(Selection {
        picks,
        others,
        signals: if week_signals.is_empty() {
            vec![format!(
                "no engagement signal this week (no repetition, second feed, hot category, site list, views or comments): ages decay four times more slowly (half-life {:.0} h), and a picture or a summary of substance counts",
                settings.half_life_hours * half_life_factor
            )]
        } else {
            week_signals
        },
    })
}

/// One candidate from a group of duplicate stories: the representative is the
/// most-listed, then the one with an image, a longer summary, the earlier date,
/// the smaller URL.
fn merge(stories: &[Story], group: &[usize], signals: &Signals) -> Candidate {
    let best = *group
        .iter()
        .max_by(|&&a, &&b| {
            let (x, y) = (&stories[a], &stories[b]);
            x.appearances
                .cmp(&y.appearances)
                .then(x.image.is_some().cmp(&y.image.is_some()))
                .then(x.summary.len().cmp(&y.summary.len()))
                .then(y.published_at.cmp(&x.published_at))
                .then(y.url.cmp(&x.url))
        })
        .expect("groups are never empty");
    let rep = &stories[best];
    let mut sources: BTreeSet<String> = BTreeSet::new();
    let mut categories: Vec<String> = Vec::new();
    let mut folded: Vec<String> = Vec::new();
    let mut appearances = 0;
    let mut total_views = 0u64;
    let mut published = rep.published_at;
    // The representative first, then the rest by URL: the merged categories (and
    // so the topic) must not depend on the order stories were loaded in.
    let mut members: Vec<usize> = group.to_vec();
    members.sort_by(|&a, &b| {
        (a != best)
            .cmp(&(b != best))
            .then(stories[a].url.cmp(&stories[b].url))
    });
    for &i in &members {
        let s = &stories[i];
        sources.extend(s.sources.iter().cloned());
        for c in &s.categories {
            if !categories.iter().any(|x| x.eq_ignore_ascii_case(c)) {
                categories.push(c.clone());
            }
        }
        appearances += s.appearances;
        total_views = total_views.saturating_add(signals.views.get(&s.url).copied().unwrap_or(0));
        published = published.min(s.published_at);
        if i != best {
            folded.push(s.url.clone());
        }
    }
    folded.sort();
    let listed = members
        .iter()
        .filter_map(|&i| signals.listed.get(&stories[i].url))
        .max_by(|a, b| a.score.total_cmp(&b.score));
    Candidate {
        url: rep.url.clone(),
        link: rep.link.clone(),
        title: rep.title.clone(),
        title_derived: rep.title_derived,
        comments: members.iter().filter_map(|&i| stories[i].comments).max(),
        summary: rep.summary.clone(),
        image: rep.image.clone(),
        image_size: rep.image_size,
        published_at: published,
        sources: sources.into_iter().collect(),
        topic: topic_of(&categories),
        categories,
        folded,
        appearances,
        views: total_views,
        listed: listed.cloned(),
        recurring: signals.recurring.contains(&title_words(&rep.title)),
        score: 0.0,
        parts: ScoreParts::default(),
        readers_note: None,
        verdict: Verdict::BelowCut,
        reason: String::new(),
    }
}

/// Which kinds of signal any of the week's candidates has, in words.
fn signals_present(candidates: &[Candidate]) -> Vec<String> {
    let count =
        |f: &dyn Fn(&ScoreParts) -> f64| candidates.iter().filter(|c| f(&c.parts) > 0.0).count();
    [
        ("listed more than once", count(&|p| p.repetition)),
        ("in more than one feed", count(&|p| p.sources)),
        ("in a hot category", count(&|p| p.hot)),
        ("on the site's own lists", count(&|p| p.listed)),
        ("with page views", count(&|p| p.views)),
        ("with comments", count(&|p| p.comments)),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} stories {what}"))
    .collect()
}

/// What speaks for a story besides its age; the caller sets `decay` (and, in a
/// week without signals, `substance`).
fn score_parts(c: &Candidate, max_views: u64, max_comments: u64) -> ScoreParts {
    let share = |n: u64, max: u64| {
        if max > 0 {
            (n as f64 / max as f64).sqrt()
        } else {
            0.0
        }
    };
    ScoreParts {
        // A recurring post (a sponsor slot) repeats by design, not by importance.
        repetition: if c.recurring {
            0.0
        } else {
            0.5 * (c.appearances.saturating_sub(1).min(4)) as f64
        },
        sources: 0.5 * (c.sources.len().saturating_sub(1).min(4)) as f64,
        hot: if c.categories.iter().any(|k| is_hot_category(k)) {
            1.0
        } else {
            0.0
        },
        listed: c.listed.as_ref().map(|l| l.score).unwrap_or(0.0),
        views: 2.0 * share(c.views, max_views),
        comments: 1.5 * share(c.comments.unwrap_or(0), max_comments),
        substance: 0.0,
        decay: 1.0,
        readers: 1.0,
    }
}

impl Candidate {
    /// Where a reader goes: the feed's link, or (for a digest built before
    /// links were kept) the canonical URL.
    pub fn reader_link(&self) -> &str {
        if self.link.is_empty() {
            &self.url
        } else {
            &self.link
        }
    }

    /// The score spelled out: `2.41 = (1 + 0.50 repeated + 1.00 hot) × 0.96 age 0.3 d`.
    pub fn explain_score(&self, reference: DateTime<Utc>) -> String {
        let mut s = format!("{:.2} = (1", self.score);
        let p = &self.parts;
        if p.repetition > 0.0 {
            s += &format!(" + {:.2} listed {}×", p.repetition, self.appearances);
        }
        if p.sources > 0.0 {
            s += &format!(" + {:.2} {} feeds", p.sources, self.sources.len());
        }
        if p.hot > 0.0 {
            s += &format!(" + {:.2} hot", p.hot);
        }
        if p.listed > 0.0 {
            s += &format!(
                " + {:.2} {}",
                p.listed,
                self.listed
                    .as_ref()
                    .map(|l| l.place.as_str())
                    .unwrap_or("by the site")
            );
        }
        if p.views > 0.0 {
            s += &format!(" + {:.2} {} views", p.views, self.views);
        }
        if p.comments > 0.0 {
            s += &format!(
                " + {:.2} {} comments",
                p.comments,
                self.comments.unwrap_or(0)
            );
        }
        if p.substance > 0.0 {
            s += &format!(" + {:.2} picture/summary", p.substance);
        }
        if self.recurring && self.appearances > 1 {
            s += " (recurring headline: no repetition boost)";
        }
        let age_days = (reference - self.published_at).num_seconds().max(0) as f64 / 86400.0;
        s += &format!(") × {:.2} age {:.1} d", p.decay, age_days);
        if let Some(note) = &self.readers_note {
            s += &format!(" × {note}");
        }
        s
    }
}

#[cfg(test)]
mod tests;
