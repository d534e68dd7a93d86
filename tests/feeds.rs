//! `gazette fetch`: feeds over HTTP on loopback and from files, stored once.

use crate::util::{fixture, stderr, FeedServer, Site};

#[test]
fn fetch_stores_each_story_once_with_tracking_stripped() {
    let server = FeedServer::start(&["site.rss", "wire.atom"]);
    let site = Site::with_fixture_feeds(&server, "");
    let out = site.ok(&["fetch"]);
    assert!(out.contains("site.rss: 6 items, 5 new"), "{out}");

    let store = site.store();
    let (start, end) = (
        "2026-01-01T00:00:00Z".parse().unwrap(),
        "2026-03-01T00:00:00Z".parse().unwrap(),
    );
    let stories = store.stories_between(start, end).unwrap();
    let urls: Vec<&str> = stories.iter().map(|s| s.url.as_str()).collect();
    // Two sections of site.rss list the rate cut under two URL variants: one story.
    assert_eq!(
        urls.iter().filter(|u| u.contains("rate-cut")).count(),
        1,
        "{urls:?}"
    );
    let rate = stories
        .iter()
        .find(|s| s.url == "https://news.test/economy/rate-cut")
        .unwrap();
    assert_eq!(rate.appearances, 2);
    assert_eq!(
        rate.summary,
        "The central bank cut its policy rate to spur lending."
    );
    assert_eq!(
        rate.image.as_deref(),
        Some("https://news.test/img/rate.jpg")
    );
    assert!(urls
        .iter()
        .all(|u| !u.contains("utm_") && !u.contains("fbclid") && !u.contains("www.")));
    assert!(urls.contains(&"https://blog.test/posts/remittances"));
    assert_eq!(stories.len(), 5 + 2 + 1);

    // Fetching again stores nothing new, and the HTTP feeds answer 304.
    let out = site.ok(&["fetch"]);
    assert!(out.contains("site.rss: not modified"), "{out}");
    assert_eq!(server.statuses("site.rss"), vec![200, 304]);
    assert_eq!(
        site.store().stories_between(start, end).unwrap().len(),
        stories.len()
    );
}

#[test]
fn stories_accumulate_across_fetches() {
    // A feed that later lists only its newest items still leaves the older ones stored.
    let site = Site::new(&["feed.xml"], "");
    std::fs::copy(fixture("site.rss"), site.path("feed.xml")).unwrap();
    site.ok(&["fetch"]);
    std::fs::copy(fixture("wire.atom"), site.path("feed.xml")).unwrap();
    site.ok(&["fetch"]);
    let (start, end) = (
        "2026-01-01T00:00:00Z".parse().unwrap(),
        "2026-03-01T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(site.store().stories_between(start, end).unwrap().len(), 7);
}

#[test]
fn broken_and_unreachable_feeds_are_named_and_the_rest_stored() {
    let server = FeedServer::start(&["site.rss"]);
    // Port 9 on loopback: nothing listens there.
    let unreachable = "http://127.0.0.1:9/feed.xml";
    let missing = server.url("missing.xml");
    let broken = fixture("broken.xml");
    let site = Site::new(
        &[
            &server.url("site.rss"),
            broken.to_str().unwrap(),
            unreachable,
            &missing,
        ],
        "",
    );
    let out = site.run(&["fetch"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("3 of 4 sources failed"), "{err}");
    assert!(err.contains("feed broken.xml: not a feed"), "{err}");
    assert!(err.contains("feed feed.xml: unreachable"), "{err}");
    assert!(err.contains("feed missing.xml: HTTP status 404"), "{err}");
    // The good feed still says what it stored, one line, even though others failed.
    let out_text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out_text
            .lines()
            .any(|l| l.contains("items,") && l.contains("new,") && l.contains("skipped")),
        "{out_text}"
    );
    assert!(
        out_text.contains("missing.xml: FAILED: HTTP status 404"),
        "{out_text}"
    );
    let (start, end) = (
        "2026-01-01T00:00:00Z".parse().unwrap(),
        "2026-03-01T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(site.store().stories_between(start, end).unwrap().len(), 5);
}

#[test]
fn oversized_feed_is_refused_by_name() {
    let site = Site::new(&["big.xml"], "\n[fetch]\nmax_bytes = 2048\n");
    std::fs::copy(fixture("site.rss"), site.path("big.xml")).unwrap();
    let out = site.run(&["fetch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("feed big.xml: larger than the 2048-byte limit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_mistakes_are_named_by_key() {
    let site = Site::new(&["feed.xml"], "\n[ranking]\nstoriez = 3\n");
    let out = site.run(&["fetch"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("config.toml") && err.contains("storiez"),
        "{err}"
    );

    let site = Site::new(&["feed.xml"], "");
    let out = site
        .command(&["fetch"])
        .env("GAZETTE_RANKING__STORIES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GAZETTE_RANKING__STORIES"),
        "{}",
        stderr(&out)
    );

    let text = std::fs::read_to_string(site.path("config.toml"))
        .unwrap()
        .replace("UTC", "Nowhere/Special");
    std::fs::write(site.path("config.toml"), text).unwrap();
    let out = site.run(&["fetch"]);
    assert!(
        stderr(&out).contains("newsletter.timezone"),
        "{}",
        stderr(&out)
    );
}
