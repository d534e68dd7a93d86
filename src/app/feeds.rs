//! `gazette fetch` and `gazette feeds check`: reading every feed and the site's
//! list pages. In: the configured sources. Out: what each stored (or would
//! store), one line per feed, failures named.

use super::*;

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

/// The per-feed limits of `[fetch]`.
fn fetch_limits(config: &Config) -> feed::FetchLimits {
    feed::FetchLimits {
        timeout: Duration::from_secs(config.fetch.timeout_secs),
        max_bytes: config.fetch.max_bytes,
    }
}

/// Parses a fetched feed: relative links resolve against its URL (a file feed's
/// own `rel="self"` link, found by the parser); dates without a zone are the
/// newsletter's.
fn parse_fetched(
    source: &crate::config::FeedSource,
    bytes: &[u8],
    zone: chrono_tz::Tz,
) -> Result<feed::ParsedFeed, FeedError> {
    let base = source.http_url().map(|u| u.to_string());
    feed::parse_with(
        bytes,
        &feed::ParseOptions {
            base: base.as_deref(),
            zone,
        },
    )
}

/// `gazette fetch`: reads every feed (concurrently), stores what parsed. A broken
/// feed does not stop the others; the caller turns any failure into an exit code.
pub async fn fetch(
    config: &Config,
    store: &mut Store,
    now: DateTime<Utc>,
) -> Result<Vec<FeedReport>> {
    let limits = fetch_limits(config);
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
                }) => parse_fetched(&source, &bytes, zone).map(|p| Some((p, etag, last_modified))),
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
                tracing::debug!(
                    feed = source.label(),
                    items = parsed.items.len(),
                    skipped = parsed.skipped.len(),
                    first_fetch,
                    "parsed"
                );
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
    feed::listed_links(
        &String::from_utf8_lossy(&bytes),
        &page.selector,
        page.source.http_url(),
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
    let limits = fetch_limits(config);
    let client = feed::http_client(&limits);
    let mut checks = Vec::new();
    for source in &config.feeds {
        let fetched = feed::fetch(&client, source, &feed::Validators::default(), &limits).await;
        let outcome = fetched.and_then(|f| match f {
            Fetched::Body { bytes, .. } => {
                parse_fetched(source, &bytes, config.newsletter.timezone)
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
                "{} of {} sources failed (feeds and the site's list pages; the others were stored):\n{}",
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
