//! What happened to an issue, and what readers' clicks teach the ranking. In: the
//! store (ledger, bounces, unsubscribes, clicks) and a week. Out: a [`Report`]
//! (`gazette report`, as a table or JSON, and the editor's report page), and the
//! per-topic [`TopicInterest`] that weighs the next issues' scores.
//!
//! Counts are per story and issue, never per person. A story's click rate is its
//! unique clicks (one per copy) per message sent: the share of recipients who
//! opened it. An issue's click rate is the share of copies in which a reader
//! opened at least one story.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::rank::{TopicInterest, MAX_TOPIC_FACTOR, MIN_TOPIC_FACTOR};
use crate::store::{IssueRow, Store};
use crate::week::IsoWeek;

/// How many weeks the list's history covers.
pub const LIST_WEEKS: usize = 12;
/// How many issues the click-rate history covers.
pub const HISTORY_ISSUES: usize = 8;
/// Pseudo-clicks that pull a topic seen little towards the average: a topic
/// needs clicks, not luck, to move its stories.
pub const PRIOR_CLICKS: f64 = 5.0;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub week: String,
    pub subject: String,
    pub started_at: DateTime<Utc>,
    pub delivery: Delivery,
    pub bounced: Bounced,
    pub complained: u64,
    /// By how they left: one-click, page, mail, complaint, bounce, cli.
    pub unsubscribed: BTreeMap<String, u64>,
    pub stories: Vec<StoryReport>,
    pub topics: Vec<TopicReport>,
    pub clicks: ClickTotals,
    /// The list week by week, oldest first, up to this week.
    pub list: Vec<ListWeek>,
    /// The last issues' click rates, oldest first, this one last.
    pub issues: Vec<IssueClicks>,
    /// Whether this issue's links counted clicks (`[analytics] clicks`).
    pub clicks_counted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Delivery {
    /// Everyone the issue was meant for.
    pub enrolled: u64,
    pub sent: u64,
    pub failed: u64,
    /// Not sent yet: pending, being sent, uncertain after a crash, or deferred
    /// by the server until the attempts ran out (the next run tries again).
    pub unfinished: u64,
    /// Left the list before their turn.
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Bounced {
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoryReport {
    pub position: usize,
    pub title: String,
    pub topic: Option<String>,
    pub link: String,
    pub clicks: u64,
    pub unique_clicks: u64,
    /// Unique clicks per message sent.
    pub click_rate: f64,
    /// Scanners and link checkers, apart.
    pub automated: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopicReport {
    pub topic: String,
    pub stories: usize,
    pub clicks: u64,
    pub unique_clicks: u64,
    /// Unique clicks per story per message sent.
    pub click_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ClickTotals {
    pub clicks: u64,
    pub unique_clicks: u64,
    pub automated: u64,
    /// Copies in which a reader opened at least one story.
    pub readers: u64,
    /// `readers` per message sent.
    pub click_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListWeek {
    pub week: String,
    /// Active subscribers at the week's end.
    pub active: u64,
    pub joins: u64,
    pub leaves: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IssueClicks {
    pub week: String,
    /// Its links counted clicks; else the figures below are zeros that mean
    /// nothing.
    pub clicks_counted: bool,
    pub sent: u64,
    pub unique_clicks: u64,
    pub readers: u64,
    /// Readers who opened at least one story, per message sent.
    pub click_rate: f64,
}

/// "1 story", "3 stories".
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn rate(clicks: u64, sent: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        clicks as f64 / sent as f64
    }
}

/// `gazette report`: the report of `week`'s issue, by default the latest sent.
pub fn report_week(
    config: &Config,
    store: &mut Store,
    week: Option<IsoWeek>,
    now: DateTime<Utc>,
) -> Result<Report> {
    let issues = store.report_issues()?;
    let week = match week {
        Some(w) => w,
        None => match issues.last() {
            Some(i) => i.week.parse()?,
            None => anyhow::bail!("no issue has been sent yet: there is nothing to report"),
        },
    };
    let sent: Vec<&str> = issues.iter().map(|i| i.week.as_str()).collect();
    store.close_click_windows(now)?;
    report(config, store, week, now)?.with_context(|| {
        format!(
            "{week}: no issue of that week was sent (sent: {})",
            if sent.is_empty() {
                "none".to_string()
            } else {
                sent.join(", ")
            }
        )
    })
}

/// The report of a week's issue; `None` when it was never sent to anyone.
pub fn report(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<Option<Report>> {
    let issues = store.report_issues()?;
    let w = week.to_string();
    let Some(at) = issues.iter().position(|i| i.week == w) else {
        return Ok(None);
    };
    let issue = &issues[at];
    let counts = store.ledger_counts(issue.id)?;
    let delivery = Delivery {
        enrolled: counts.pending
            + counts.sending
            + counts.sent
            + counts.failed
            + counts.uncertain
            + counts.skipped,
        sent: counts.sent,
        // Deferred until the attempts ran out: the next run tries them again.
        failed: counts.failed - counts.gave_up,
        unfinished: counts.pending + counts.sending + counts.uncertain + counts.gave_up,
        skipped: counts.skipped,
    };
    let mut bounced = Bounced::default();
    let mut complained = 0;
    for (kind, n) in store.report_bounces(issue.id)? {
        match kind.as_str() {
            "hard" => bounced.hard = n,
            "soft" => bounced.soft = n,
            "complaint" => complained = n,
            _ => {}
        }
    }
    let next_start = issues.get(at + 1).map(|i| i.started_at);
    let unsubscribed: BTreeMap<String, u64> = store
        .report_unsubscribes(issue.id, issue.started_at, next_start)?
        .into_iter()
        .collect();

    let stories = story_reports(store, issue)?;
    let mut topics: BTreeMap<String, TopicReport> = BTreeMap::new();
    for s in &stories {
        let Some(topic) = &s.topic else { continue };
        let t = topics
            .entry(topic.to_lowercase())
            .or_insert_with(|| TopicReport {
                topic: topic.clone(),
                stories: 0,
                clicks: 0,
                unique_clicks: 0,
                click_rate: 0.0,
            });
        t.stories += 1;
        t.clicks += s.clicks;
        t.unique_clicks += s.unique_clicks;
    }
    let mut topics: Vec<TopicReport> = topics.into_values().collect();
    for t in &mut topics {
        t.click_rate = rate(t.unique_clicks, issue.sent * t.stories as u64);
    }
    topics.sort_by(|a, b| b.click_rate.total_cmp(&a.click_rate));
    let readers = store.issue_readers(issue.id)?;
    let clicks = ClickTotals {
        clicks: stories.iter().map(|s| s.clicks).sum(),
        unique_clicks: stories.iter().map(|s| s.unique_clicks).sum(),
        automated: stories.iter().map(|s| s.automated).sum(),
        readers,
        click_rate: rate(readers, issue.sent),
    };

    let history = issues[at.saturating_sub(HISTORY_ISSUES - 1)..=at]
        .iter()
        .map(|i| {
            let unique: u64 = store.story_clicks(i.id)?.iter().map(|c| c.unique).sum();
            let readers = store.issue_readers(i.id)?;
            Ok(IssueClicks {
                week: i.week.clone(),
                clicks_counted: i.clicks_counted,
                sent: i.sent,
                unique_clicks: unique,
                readers,
                click_rate: rate(readers, i.sent),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(Some(Report {
        week: w,
        subject: issue.subject.clone(),
        started_at: issue.started_at,
        delivery,
        bounced,
        complained,
        unsubscribed,
        stories,
        topics,
        clicks,
        list: list_history(config, store, now)?,
        issues: history,
        clicks_counted: issue.clicks_counted,
    }))
}

fn story_reports(store: &Store, issue: &IssueRow) -> Result<Vec<StoryReport>> {
    let stories = store.issue_stories(issue.id)?;
    let clicks = store.story_clicks(issue.id)?;
    Ok(stories
        .into_iter()
        .zip(clicks)
        .enumerate()
        .map(|(position, (s, c))| StoryReport {
            position,
            title: s.title,
            topic: s.topic,
            link: s.link,
            clicks: c.clicks,
            unique_clicks: c.unique,
            click_rate: rate(c.unique, issue.sent),
            automated: c.automated,
        })
        .collect())
}

/// Active subscribers, joins and leaves for the [`LIST_WEEKS`] weeks up to
/// now's. Earlier sizes are counted back from
/// today's: today's active, less who became active since, plus who stopped.
fn list_history(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<Vec<ListWeek>> {
    let tz = config.newsletter.timezone;
    let last = IsoWeek::containing(now, tz);
    let mut weeks = vec![last];
    while weeks.len() < LIST_WEEKS {
        let earlier = weeks.last().expect("one at least").previous();
        weeks.push(earlier);
    }
    weeks.reverse();
    let from = weeks[0].bounds(tz).0;
    let crate::store::ListMoves {
        joins,
        leaves,
        active_now,
    } = store.report_list_since(from)?;
    let count = |times: &[DateTime<Utc>], (start, end): (DateTime<Utc>, DateTime<Utc>)| {
        times.iter().filter(|t| **t >= start && **t < end).count() as u64
    };
    Ok(weeks
        .into_iter()
        .map(|w| {
            let (start, end) = w.bounds(tz);
            let far = DateTime::<Utc>::MAX_UTC;
            let active =
                (active_now + count(&leaves, (end, far))).saturating_sub(count(&joins, (end, far)));
            ListWeek {
                week: w.to_string(),
                active,
                joins: count(&joins, (start, end)),
                leaves: count(&leaves, (start, end)),
            }
        })
        .collect())
}

/// What readers' clicks in the last `[ranking] click_issues` issues sent before
/// `week` (of those whose links counted clicks) say about each topic; empty with
/// `click_weight = 0` or no clicks.
///
/// A story's expected unique clicks are what the average story of its kind got
/// per message, lead or brief (the lead, with two links at the top, draws
/// more), times the messages it went out in. A topic's ratio is
/// its stories' unique clicks over their expected ones, both plus
/// [`PRIOR_CLICKS`]; its factor is [`topic_factor`].
pub fn topic_interest(
    config: &Config,
    store: &Store,
    week: IsoWeek,
) -> Result<HashMap<String, TopicInterest>> {
    let weight = config.ranking.click_weight;
    if weight == 0.0 {
        return Ok(HashMap::new());
    }
    let w = week.to_string();
    let issues: Vec<IssueRow> = store
        .report_issues()
        .context("reading the issues' clicks")?
        .into_iter()
        .filter(|i| i.week < w && i.sent > 0 && i.clicks_counted)
        .collect();
    let recent = &issues[issues.len().saturating_sub(config.ranking.click_issues)..];
    let reports = recent
        .iter()
        .map(|issue| Ok((issue, story_reports(store, issue)?)))
        .collect::<Result<Vec<_>>>()?;
    // The lead and the briefs: unique clicks and messages of each, over the
    // issues.
    let place = |position: usize| usize::from(position > 0);
    let mut by_place = [(0u64, 0u64); 2];
    for (issue, stories) in &reports {
        for s in stories {
            by_place[place(s.position)].0 += s.unique_clicks;
            by_place[place(s.position)].1 += issue.sent;
        }
    }
    if by_place.iter().all(|(clicks, _)| *clicks == 0) {
        return Ok(HashMap::new());
    }
    // By topic in lower case: its name, expected and actual unique clicks,
    // and how many issues it was in.
    let mut topics: HashMap<String, (String, f64, u64, usize)> = HashMap::new();
    for (issue, stories) in &reports {
        let mut seen_here: Vec<String> = Vec::new();
        for s in stories {
            let Some(topic) = &s.topic else { continue };
            let (clicks, sent) = by_place[place(s.position)];
            let expected = clicks as f64 / sent.max(1) as f64 * issue.sent as f64;
            let key = topic.to_lowercase();
            let t = topics
                .entry(key.clone())
                .or_insert((topic.clone(), 0.0, 0, 0));
            t.1 += expected;
            t.2 += s.unique_clicks;
            if !seen_here.contains(&key) {
                t.3 += 1;
                seen_here.push(key);
            }
        }
    }
    Ok(topics
        .into_iter()
        .filter_map(|(key, (topic, expected, clicked, issues))| {
            let (ratio, factor) = topic_factor(clicked, expected, weight);
            let observed = if expected > 0.0 {
                clicked as f64 / expected
            } else {
                ratio
            };
            // A factor that changes nothing says nothing.
            ((factor - 1.0).abs() >= 0.005).then_some((
                key,
                TopicInterest {
                    topic,
                    ratio,
                    observed,
                    factor,
                    issues,
                },
            ))
        })
        .collect())
}

/// A topic's ratio (its unique clicks over those expected, both plus
/// [`PRIOR_CLICKS`]) and its factor: the ratio to the power `weight`, within
/// [`MIN_TOPIC_FACTOR`] and [`MAX_TOPIC_FACTOR`].
pub fn topic_factor(clicked: u64, expected: f64, weight: f64) -> (f64, f64) {
    let ratio = (clicked as f64 + PRIOR_CLICKS) / (expected + PRIOR_CLICKS);
    let factor = ratio.powf(weight).clamp(MIN_TOPIC_FACTOR, MAX_TOPIC_FACTOR);
    (ratio, factor)
}

/// The report as a terminal table.
pub fn describe_report(r: &Report) -> String {
    let d = &r.delivery;
    let percent = |x: f64| format!("{:.1}%", x * 100.0);
    let mut out = format!("{} · {}\n\n", r.week, r.subject);
    out += &format!(
        "delivery     {} enrolled · {} sent · {} failed · {} unfinished · {} skipped\n",
        d.enrolled, d.sent, d.failed, d.unfinished, d.skipped
    );
    out += &format!(
        "bounced      {} hard · {} soft · complained {}\n",
        r.bounced.hard, r.bounced.soft, r.complained
    );
    let left: Vec<String> = r
        .unsubscribed
        .iter()
        .map(|(m, n)| format!("{n} {m}"))
        .collect();
    out += &format!(
        "unsubscribed {}\n",
        if left.is_empty() {
            "none".to_string()
        } else {
            left.join(" · ")
        }
    );
    if r.clicks_counted {
        out += &format!(
            "clicks       {} ({} unique) · {} with a click ({} of messages sent) · {} automated (counted apart)\n\n",
            r.clicks.clicks,
            r.clicks.unique_clicks,
            plural(r.clicks.readers, "copy", "copies"),
            percent(r.clicks.click_rate),
            r.clicks.automated
        );
        // Rank: the story's place by score (the lead is 1); the mail groups
        // the briefs by topic.
        out += &format!(
            "{:>4}  {:>6}  {:>6}  {:>6}  {:>9}  story\n",
            "rank", "clicks", "unique", "rate", "automated"
        );
        for s in &r.stories {
            let topic = s
                .topic
                .as_deref()
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default();
            out += &format!(
                "{:>4}  {:>6}  {:>6}  {:>6}  {:>9}  {}{topic}\n",
                s.position + 1,
                s.clicks,
                s.unique_clicks,
                percent(s.click_rate),
                s.automated,
                crate::text::cut_at_word(&s.title, 60)
            );
        }
        if !r.topics.is_empty() {
            out += "\nby topic (unique clicks per story and message sent)\n";
            for t in &r.topics {
                out += &format!(
                    "  {:<24} {} · {} · {}\n",
                    t.topic,
                    plural(t.stories as u64, "story", "stories"),
                    plural(t.unique_clicks, "unique click", "unique clicks"),
                    percent(t.click_rate)
                );
            }
        }
    } else {
        out += "clicks       not counted: this issue went out with [analytics] clicks = false\n";
    }
    out += "\nthe list (week: active at its end, +joined, -left)\n";
    for l in &r.list {
        out += &format!(
            "  {}  {:>6}  +{} -{}\n",
            l.week, l.active, l.joins, l.leaves
        );
    }
    out += "\nclick rate of recent issues (copies with a click)\n";
    for i in &r.issues {
        let rate = if i.clicks_counted {
            percent(i.click_rate)
        } else {
            "not counted".into()
        };
        out += &format!("  {}  {:>11} of {} sent\n", i.week, rate, i.sent);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_factor_is_smoothed_weighted_and_bounded() {
        // As expected: no change, whatever the weight.
        assert_eq!(topic_factor(20, 20.0, 0.5), (1.0, 1.0));
        // 31% more than expected on plenty of clicks: sqrt(1.31) at weight 0.5.
        let (ratio, factor) = topic_factor(1310 - 5, 995.0, 0.5);
        assert!((ratio - 1.31).abs() < 1e-9, "{ratio}");
        assert!((factor - 1.31f64.sqrt()).abs() < 1e-9, "{factor}");
        // The same ratio at weight 1 moves the score by all of it, up to the cap.
        assert!((topic_factor(1305, 995.0, 1.0).1 - 1.25).abs() < 1e-9);
        // Few clicks move little: 3 clicks where 1 was expected is not ×3.
        let (ratio, _) = topic_factor(3, 1.0, 1.0);
        assert!((ratio - 8.0 / 6.0).abs() < 1e-9, "{ratio}");
        // Never below ×0.8, however little a topic is clicked.
        assert_eq!(topic_factor(0, 500.0, 1.0).1, MIN_TOPIC_FACTOR);
    }
}
