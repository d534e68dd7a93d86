//! What the site and its readers say about a week's stories, besides the feeds:
//! page views (our CSV or an analytics export), the site's own lists, and
//! headlines seen before. In: the config, the store, the week's stories. Out:
//! the [`rank::Signals`] ranking weighs.

use super::*;

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

/// A views file read: its rows by key (canonical URL, or path with query), the
/// rows that name no page (an export's totals row), and the bad lines, each
/// with why.
#[derive(Debug, Default)]
pub struct ViewsFile {
    pub rows: Vec<(String, u64)>,
    pub skipped: Vec<String>,
    pub bad: Vec<String>,
}

/// The key a page is matched by: the path (no trailing slash) and the query of
/// its canonical form, so `/article.php?id=7` and `?id=8` stay apart.
fn path_key(canonical: &str) -> Option<String> {
    let url = url::Url::parse(canonical).ok()?;
    let path = url.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    Some(match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// Reads page views from a CSV: ours (`url,views`) or an analytics export
/// (Plausible, Matomo, GA4, Umami; their columns are recognised by name, `#`
/// comment lines skipped, `1,234` read as 1234). Addresses are full URLs or
/// paths (`/blog/x?id=3`, matched against stories' paths and queries). A row
/// that names no page or holds no count (a totals row) is left out and named;
/// a file without a page and a count column is an error that names the file.
pub fn read_views_csv(path: &Path) -> Result<ViewsFile> {
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
    let mut out = ViewsFile::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for record in reader.records() {
        let record = record.with_context(|| file.clone())?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let page = record.get(page_col).unwrap_or("").trim();
        let count = record
            .get(count_col)
            .unwrap_or("")
            .replace([',', '_', ' '], "");
        let key = if page.starts_with('/') {
            feed::canonical_url(&format!("https://path.invalid{page}")).and_then(|c| path_key(&c))
        } else {
            feed::canonical_url(page)
        };
        if page.is_empty() {
            out.skipped
                .push(format!("{file}: line {line}: no page (a totals row)"));
            continue;
        }
        let Some(key) = key else {
            out.bad.push(format!(
                "{file}: line {line}: {page:?} is neither an http(s) URL nor a path"
            ));
            continue;
        };
        let Ok(views) = count.parse::<u64>() else {
            out.bad.push(format!(
                "{file}: line {line}: {count:?} is not a whole number"
            ));
            continue;
        };
        // The same page on several lines (GA4 splits by screen class): add up.
        match index.get(&key) {
            Some(&i) => out.rows[i].1 += views,
            None => {
                index.insert(key.clone(), out.rows.len());
                out.rows.push((key, views));
            }
        }
    }
    Ok(out)
}

/// Views by canonical URL for the week's stories: a row keyed by a full URL
/// counts for that story, a row keyed by a path (and query) for the story with
/// that path (and query).
fn views_of(stories: &[crate::store::Story], rows: &HashMap<String, u64>) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for s in stories {
        let by_path = path_key(&s.url).and_then(|k| rows.get(&k));
        if let Some(v) = rows.get(&s.url).or(by_path) {
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
pub(crate) fn week_signals(
    config: &Config,
    store: &Store,
    stories: &[crate::store::Story],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<rank::Signals> {
    let mut views: HashMap<String, u64> = store.views()?;
    if let Some(path) = &config.ranking.views {
        let file = read_views_csv(path)?;
        for line in &file.bad {
            tracing::warn!("left out of the views: {line}");
        }
        views.extend(file.rows);
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
    let week = crate::week::IsoWeek::containing(start, config.newsletter.timezone);
    Ok(rank::Signals {
        views: views_of(stories, &views),
        listed,
        recurring,
        topics: super::topic_interest(config, store, week)?,
    })
}

/// `gazette views import FILE`.
pub fn import_views(store: &mut Store, path: &Path) -> Result<String> {
    let file = read_views_csv(path)?;
    store.import_views(&file.rows)?;
    let mut out = format!("imported views for {} pages", file.rows.len());
    for line in &file.skipped {
        out += &format!("\n  left out: {line}");
    }
    if !file.bad.is_empty() {
        bail!(
            "{out}\n{} bad lines (the good ones were stored):\n{}",
            file.bad.len(),
            file.bad.join("\n")
        );
    }
    Ok(out)
}
