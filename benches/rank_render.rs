//! Benchmark: a week of 10,000 stories from 50 feeds, through every stage of a
//! build: parse, store, load, rank, render. Prints the time of each stage, and
//! ranking's time against a reference run in the same invocation (sorting the
//! same stories by date alone: the least any ranking must do).
//!
//! Run: `cargo bench --bench rank_render`

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use gazette::rank::{self, EditorChoices, RankSettings};
use gazette::render::{self, RenderContext};
use gazette::store::Store;

const FEEDS: usize = 50;
const PER_FEED: usize = 200;

const WORDS: &[&str] = &[
    "bank",
    "rate",
    "crypto",
    "wallet",
    "payments",
    "regulator",
    "startup",
    "funding",
    "merchant",
    "loan",
    "exchange",
    "market",
    "digital",
    "mobile",
    "launch",
    "policy",
    "growth",
    "inflation",
    "remittances",
    "insurance",
    "fraud",
    "identity",
    "lending",
    "savings",
    "bond",
    "stock",
    "profit",
    "license",
    "app",
];

fn feed_xml(feed: usize) -> String {
    let start = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    let mut items = String::new();
    for i in 0..PER_FEED {
        let n = feed * PER_FEED + i;
        // Every 10th story repeats another feed's headline: work for folding.
        let seed = if i % 10 == 0 {
            (n + 7 * PER_FEED + 1) % (FEEDS * PER_FEED)
        } else {
            n
        };
        let title: Vec<&str> = (0..8)
            .map(|k| WORDS[(seed * 31 + k * 7 + seed / 13) % WORDS.len()])
            .collect();
        let date = start + Duration::minutes((n * 60 * 24 * 7 / (FEEDS * PER_FEED)) as i64);
        items += &format!(
            "<item><title>{} {seed}</title><link>https://site{feed}.test/story/{n}?utm_source=rss</link><guid>{n}</guid>\
             <pubDate>{}</pubDate><category>{}</category><category>{}</category>\
             <description>&lt;p&gt;Summary of story {n}: {}.&lt;/p&gt;</description></item>\n",
            title.join(" "),
            date.to_rfc2822(),
            WORDS[n % WORDS.len()],
            if n % 17 == 0 { "Hot" } else { "Latest" },
            WORDS.iter().cycle().skip(n % 11).take(40).cloned().collect::<Vec<_>>().join(" "),
        );
    }
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Feed {feed}</title>{items}</channel></rss>")
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let feeds: Vec<String> = (0..FEEDS).map(feed_xml).collect();

    let t = Instant::now();
    let parsed: Vec<_> = feeds
        .iter()
        .map(|f| gazette::feed::parse(f.as_bytes(), None).unwrap())
        .collect();
    let parse = t.elapsed();

    let mut store = Store::open(&dir.path().join("bench.db")).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap();
    let t = Instant::now();
    for (i, p) in parsed.iter().enumerate() {
        let id = store.feed(&format!("feed{i}"), None).unwrap().id;
        store.store_items(id, &p.items, now, false).unwrap();
    }
    let stored = t.elapsed();

    let t = Instant::now();
    let (start, end) = (
        Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap(),
    );
    let stories = store.stories_between(start, end).unwrap();
    let load = t.elapsed();

    let t = Instant::now();
    let mut by_date: Vec<_> = stories.iter().collect();
    by_date.sort_by(|a, b| b.published_at.cmp(&a.published_at).then(a.url.cmp(&b.url)));
    let reference = t.elapsed();

    let settings = RankSettings {
        stories: 10,
        max_per_topic: 3,
        max_per_source: 2,
        half_life_hours: 168.0,
    };
    let t = Instant::now();
    let selection = rank::rank(
        &stories,
        &rank::Signals::default(),
        &EditorChoices::default(),
        &settings,
        end,
    )
    .unwrap();
    let ranking = t.elapsed();

    let config = gazette::config::Config::parse(
        "[newsletter]\nname = \"Bench\"\nfrom = \"b@bench.test\"\nbase_url = \"https://bench.test\"\npostal_address = \"x\"\ntimezone = \"UTC\"\n[[feeds]]\nurl = \"x.xml\"\n",
        "bench.toml",
        dir.path(),
        std::iter::empty(),
    )
    .unwrap();
    let ctx = RenderContext {
        newsletter: &config.newsletter,
        theme: &config.theme,
        week: "2026-W06".parse().unwrap(),
        summary_chars: 280,
    };
    let t = Instant::now();
    let issue = render::render(&selection, &EditorChoices::default(), &ctx).unwrap();
    let rendering = t.elapsed();

    let candidates = selection.picks.len() + selection.others.len();
    println!(
        "rank_render: {} stories from {FEEDS} feeds, {} in the week, {candidates} after folding",
        FEEDS * PER_FEED,
        stories.len()
    );
    println!("  parse   {:>9.1} ms", parse.as_secs_f64() * 1e3);
    println!("  store   {:>9.1} ms", stored.as_secs_f64() * 1e3);
    println!("  load    {:>9.1} ms", load.as_secs_f64() * 1e3);
    println!(
        "  rank    {:>9.1} ms   ({:.1}× the reference: sorting by date, {:.2} ms)",
        ranking.as_secs_f64() * 1e3,
        ranking.as_secs_f64() / reference.as_secs_f64().max(1e-9),
        reference.as_secs_f64() * 1e3
    );
    println!(
        "  render  {:>9.1} ms   ({} bytes of HTML, {} of text)",
        rendering.as_secs_f64() * 1e3,
        issue.html.len(),
        issue.text.len()
    );
}
