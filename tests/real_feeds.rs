//! Real feeds, as published: captured feeds from feed-rs's fixture folder
//! (`tests/fixtures/real/`, sources in its README) and hand-written ones in the
//! shapes real feeds use (`tests/fixtures/handmade/`). What a subscriber would
//! receive from them: the feed's own links, prose without markup or
//! boilerplate, titles without tags, dates read, the right picture, templated
//! series kept apart; and a site's "Hot this week" list lifting its stories.

use std::path::PathBuf;

use gazette::feed::{parse_with, FeedItem, ParseOptions, ParsedFeed};

use crate::util::{fixture, FeedServer, Site};

fn read(dir: &str, name: &str) -> (String, ParsedFeed) {
    let path = fixture(&format!("{dir}/{name}"));
    let bytes = std::fs::read(&path).unwrap();
    let parsed = parse_with(
        &bytes,
        &ParseOptions {
            base: None,
            zone: "Asia/Karachi".parse().unwrap(),
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (String::from_utf8_lossy(&bytes).into_owned(), parsed)
}

fn real_feeds() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus is there");
    files
}

/// Markup and boilerplate a summary or title must never show.
const DEBRIS: &[&str] = &[
    "</p>",
    "<br",
    "<p>",
    "<img",
    "<a ",
    "<div",
    "[link]",
    "[comments]",
    "submitted by",
    "Continue reading",
    "appeared first on",
    "Read More",
    "[…]",
    "[...]",
    "&amp;",
    "&lt;",
    "&#",
];

fn check_text(name: &str, item: &FeedItem) {
    for d in DEBRIS {
        assert!(
            !item.summary.contains(d),
            "{name}: summary holds {d:?}: {:?}",
            item.summary
        );
        assert!(
            !item.title.contains(d),
            "{name}: title holds {d:?}: {:?}",
            item.title
        );
    }
    for marker in ["> ", "* ", "• "] {
        assert!(
            !item.summary.starts_with(marker),
            "{name}: {:?}",
            item.summary
        );
    }
    assert!(!item.title.trim().is_empty(), "{name}: empty title");
    assert!(
        !item.title.contains('<') || !item.title.contains('>'),
        "{name}: tag in title {:?}",
        item.title
    );
}

#[test]
fn every_real_feed_reads_into_clean_items_with_the_feeds_own_links() {
    let mut items = 0;
    for path in real_feeds() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (raw, parsed) = read("real", &name);
        for item in &parsed.items {
            items += 1;
            check_text(&name, item);
            // The link is one the feed gave (absolute, or its path when the feed
            // wrote it relative), never a rewritten canonical form.
            let url = url::Url::parse(&item.link).unwrap();
            let escaped = item.link.replace('&', "&amp;");
            assert!(
                raw.contains(&item.link) || raw.contains(&escaped) || raw.contains(url.path()),
                "{name}: {} is not a link the feed gave",
                item.link
            );
            assert!(item.link.starts_with("http"), "{name}: {}", item.link);
            if let Some(image) = &item.image {
                assert!(image.starts_with("http"), "{name}: image {image}");
                assert!(
                    !image.contains("player.") && !image.ends_with(".mp4"),
                    "{name}: {image}"
                );
            }
        }
    }
    assert!(items >= 50, "{items} items read from the corpus");
}

#[test]
fn links_keep_http_and_www_as_the_feed_wrote_them() {
    // NASA's feed links to http://www.nasa.gov/…; the canonical form is https
    // without www., which is the key, never the link.
    let (_, nasa) = read("real", "rss_2.0_example_2.xml");
    let item = &nasa.items[0];
    assert!(
        item.link.starts_with("http://www.nasa.gov/"),
        "{}",
        item.link
    );
    assert!(item.url.starts_with("https://nasa.gov/"), "{}", item.url);
    // FeedBurner: the article's own address, not feedproxy's.
    let (_, rps) = read("real", "rss_2.0_rps.xml");
    assert!(
        !rps.items[0].link.contains("feedproxy"),
        "{}",
        rps.items[0].link
    );
    assert!(
        rps.items[0].link.contains("rockpapershotgun.com"),
        "{}",
        rps.items[0].link
    );
    // A relative link resolves against xml:base.
    let (_, relative) = read("real", "rss_2.0_relurl_1.xml");
    assert!(relative
        .items
        .iter()
        .all(|i| i.link.starts_with("https://")));
}

#[test]
fn an_empty_href_falls_back_to_the_entry_id_never_the_feed() {
    let (_, feed) = read("handmade", "empty-href.atom");
    let links: Vec<&str> = feed.items.iter().map(|i| i.link.as_str()).collect();
    assert_eq!(
        links,
        [
            "https://blog.example/2026/02/first-post/",
            "https://blog.example/2026/02/second-post/",
            "https://blog.example/2026/02/third-post/"
        ]
    );
}

#[test]
fn posts_that_differ_by_fragment_stay_three_posts() {
    let (_, feed) = read("handmade", "fragments.xml");
    let urls: std::collections::BTreeSet<&str> =
        feed.items.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(feed
        .items
        .iter()
        .all(|i| i.link.starts_with("http://daily.example/2026/02/04.html#a")));
}

#[test]
fn boilerplate_families_and_tags_in_titles_are_removed() {
    let (_, medium) = read("handmade", "medium.xml");
    let m = &medium.items[0];
    assert_eq!(
        m.summary,
        "Every balance we show is a sum over entries that never change. This post explains why that made audits easy. We moved to it in 2024."
    );
    // The picture is the article's, not Medium's 1×1 tracking pixel.
    assert_eq!(
        m.image.as_deref(),
        Some("https://cdn-images-1.medium.com/max/1024/1*abc.jpeg")
    );
    let (_, wp) = read("handmade", "wordpress.xml");
    assert_eq!(wp.items[0].title, "SmartCity Kochi to raise ₹4,000 crore");
    assert_eq!(
        wp.items[0].summary,
        "The city will sell bonds to fund its metro line, the second such sale this year …"
    );
    assert_eq!(wp.items[0].comments, Some(14));
    assert_eq!(
        wp.items[1].summary,
        "Branches will stay open to collect taxes before the deadline."
    );
    // "2026/2/5 14:33:00": no zone, so the newsletter's (Karachi, +5).
    assert_eq!(
        wp.items[1].published.unwrap().to_rfc3339(),
        "2026-02-05T09:33:00+00:00"
    );
    let (_, reddit) = read("real", "atom_mediarss_reddit_1.xml");
    assert!(reddit.items.iter().all(|i| !i.summary.contains("/u/")));
    assert!(reddit.stats.boilerplate_removed >= 20);
}

#[test]
fn dates_real_feeds_write_are_read() {
    let utc = |name: &str| {
        let (_, f) = read("real", name);
        f.items[0].published.map(|t| t.to_rfc3339())
    };
    // "Sat, Dec 16 2023 02:02:33 PM" (no zone: the newsletter's, +5).
    assert_eq!(
        utc("rss_2.0_nbcny.xml").as_deref(),
        Some("2023-12-16T09:02:33+00:00")
    );
    // "Thu, 01 Aug 2019 16:15 EDT".
    assert_eq!(
        utc("rss_2.0_example_2.xml").as_deref(),
        Some("2019-08-01T20:15:00+00:00")
    );
    let dated = real_feeds()
        .iter()
        .map(|p| read("real", &p.file_name().unwrap().to_string_lossy()).1)
        .flat_map(|f| f.items)
        .filter(|i| i.published.is_some())
        .count();
    assert!(dated >= 55, "{dated} items dated");
}

#[test]
fn json_feeds_off_the_spec_are_read_item_by_item() {
    let (_, feed) = read("handmade", "jsonfeed-http.json");
    // Three items are objects; one has no address at all and is named.
    assert_eq!(feed.items.len(), 2, "{:?}", feed.skipped);
    assert_eq!(feed.skipped.len(), 2, "{:?}", feed.skipped);
    let untitled = &feed.items[0];
    assert!(untitled.title_derived);
    assert_eq!(untitled.title, "Just shipped the new payments page.");
    assert_eq!(untitled.categories, ["payments"]);
    assert_eq!(feed.items[1].categories, ["fintech", "3"]);
}

#[test]
fn images_are_chosen_as_specified() {
    // A podcast: the episode's iTunes image.
    let (_, podcast) = read("real", "rss_2.0_anchorfm.xml");
    assert!(podcast.items[0].image.as_deref().unwrap().ends_with(".jpg"));
    // A video feed: a media:thumbnail, never the video itself.
    let (_, video) = read("real", "rss_2.0_ch9.xml");
    let image = video.items[0].image.as_deref().unwrap();
    assert!(!image.ends_with(".mp4"), "{image}");
    // No media at all: the first real <img> of the item's HTML, resolved.
    let (_, base) = read("real", "atom_xml_base.xml");
    assert_eq!(
        base.items[0].image.as_deref(),
        Some("https://numi.st/post/2022/travel-uke/IMG_1232.jpeg")
    );
}

fn build_week(site: &Site, week: &str) -> serde_json::Value {
    site.ok(&["build", "--week", week]);
    site.digest_json(week)
}

#[test]
fn a_templated_series_is_not_folded_or_boosted_and_one_story_in_two_feeds_is() {
    let series = fixture("handmade/weather-series.xml");
    let wire = fixture("handmade/weather-wire.xml");
    let site = Site::new(
        &[series.to_str().unwrap(), wire.to_str().unwrap()],
        "\n[ranking]\nstories = 3\n",
    );
    site.ok(&["fetch"]);
    let json = build_week(&site, "2026-W15");
    let all: Vec<&serde_json::Value> = json["selection"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(json["selection"]["others"].as_array().unwrap())
        .collect();
    // Eleven items, one story told twice: ten candidates.
    assert_eq!(all.len(), 10, "{all:#?}");
    let weather = all
        .iter()
        .filter(|c| c["title"].as_str().unwrap().starts_with("Clima"))
        .count();
    assert_eq!(weather, 7, "every city's page is its own story");
    // The rate cut, in both feeds, leads; no weather page is "listed 7×".
    let lead = &json["selection"]["picks"][0];
    assert!(
        lead["title"].as_str().unwrap().contains("Banco Central"),
        "{lead}"
    );
    assert_eq!(lead["sources"].as_array().unwrap().len(), 2);
    assert!(all[1..]
        .iter()
        .all(|c| c["appearances"].as_u64() == Some(1)));
}

#[test]
fn the_sites_hot_list_lifts_its_stories_to_the_top_and_explain_says_so() {
    let server = FeedServer::start(&["site.rss", "hot-page.html"]);
    let extra = format!(
        "\n[ranking]\nstories = 3\n\n[[signals.pages]]\nurl = {:?}\nselector = \".hot-this-week\"\nweight = 3\n",
        server.url("hot-page.html")
    );
    let without = Site::new(&[&server.url("site.rss")], "\n[ranking]\nstories = 3\n");
    without.ok(&["fetch"]);
    let before = build_week(&without, "2026-W06");
    let site = Site::new(&[&server.url("site.rss")], &extra);
    let fetched = site.ok(&["fetch"]);
    assert!(fetched.contains("2 stories listed"), "{fetched}");
    let after = build_week(&site, "2026-W06");
    let pick = |j: &serde_json::Value, i: usize| {
        j["selection"]["picks"][i]["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(
        pick(&before, 0),
        "https://news.test/crypto/new-tokens",
        "a test that can fail"
    );
    assert_eq!(pick(&after, 0), "https://news.test/crypto/new-tokens");
    // The second place on a list of two counts half as much as the first.
    let all: Vec<&serde_json::Value> = after["selection"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(after["selection"]["others"].as_array().unwrap())
        .collect();
    let listed = |url: &str| {
        all.iter().find(|c| c["url"] == url).unwrap()["parts"]["listed"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(listed("https://news.test/crypto/new-tokens"), 3.0);
    assert_eq!(listed("https://news.test/apps/wallet-million"), 1.5);
    assert_eq!(
        listed("https://news.test/economy/rate-cut"),
        0.0,
        "Topics is not the hot list"
    );
    let explain = site.ok(&["explain", "--week", "2026-W06"]);
    assert!(explain.contains("#1 of 2 on http://127.0.0.1"), "{explain}");
    assert!(
        explain.contains("stories on the site's own lists"),
        "{explain}"
    );
}

#[test]
fn an_empty_href_under_an_xml_base_is_no_link_and_code_in_titles_stays() {
    // WordPress: xml:base is wp-atom.php and every entry's href is empty; the
    // entries' ids are their pages. Titles with generics are words, not tags.
    let (_, feed) = read("handmade", "wp-atom-base.atom");
    let links: Vec<&str> = feed.items.iter().map(|i| i.link.as_str()).collect();
    assert_eq!(
        links,
        [
            "https://blog.example/2026/02/option/",
            "https://blog.example/2026/02/vec/"
        ]
    );
    assert_eq!(feed.items[0].title, "Why Option<T> beats null");
    assert_eq!(feed.items[1].title, "Vec<T> in depth");
}

#[test]
fn an_analytics_export_feeds_views_matched_by_path_and_query() {
    let feed = fixture("handmade/wp-query.xml");
    let site = Site::new(&[feed.to_str().unwrap()], "");
    site.ok(&["fetch"]);
    let csv = fixture("handmade/ga4-export.csv");
    let imported = site.ok(&["views", "import", csv.to_str().unwrap()]);
    assert!(
        imported.contains("imported views for 3 pages"),
        "{imported}"
    );
    assert!(
        imported.contains("left out") && imported.contains("line 11"),
        "{imported}"
    );
    let json = build_week(&site, "2026-W06");
    let views = |url: &str| {
        let all: Vec<&serde_json::Value> = json["selection"]["picks"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        all.iter().find(|c| c["url"] == url).unwrap()["views"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(views("https://q.example/wallet/launch"), 1200);
    assert_eq!(views("https://q.example/article.php?id=7"), 300);
    assert_eq!(views("https://q.example/article.php?id=8"), 1000);
}

#[test]
fn a_failed_first_fetch_does_not_turn_the_back_catalogue_into_news() {
    let site = Site::new(&["later.xml"], "");
    assert!(
        !site.run(&["fetch"]).status.success(),
        "the file is not there yet"
    );
    std::fs::write(
        site.path("later.xml"),
        r#"<rss version="2.0"><channel><title>Undated</title><link>https://u.example/</link><description>d</description>
<item><title>An old post without a date</title><link>https://u.example/old-1</link></item>
<item><title>Another old post without a date</title><link>https://u.example/old-2</link></item>
</channel></rss>"#,
    )
    .unwrap();
    site.ok(&["fetch"]);
    let out = site.ok(&["build", "--week", "2026-W07"]);
    assert!(out.contains("no stories"), "{out}");
}
