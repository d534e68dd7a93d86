//! `gazette build` and `explain`: the week's stories, folded, ranked, rendered.

use crate::util::{stderr, FeedServer, Site};

fn fetched_site(extra: &str) -> (FeedServer, Site) {
    let server = FeedServer::start(&["site.rss", "wire.atom"]);
    let site = Site::with_fixture_feeds(&server, extra);
    site.ok(&["fetch"]);
    (server, site)
}

fn pick_urls(json: &serde_json::Value) -> Vec<String> {
    json["selection"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn build_folds_duplicates_and_leaves_out_other_weeks() {
    let (_server, site) = fetched_site("");
    let out = site.ok(&["build", "--week", "2026-W06"]);
    assert!(out.contains("built 2026-W06: 6 stories"), "{out}");
    let json = site.digest_json("2026-W06");
    let urls = pick_urls(&json);
    assert_eq!(urls.len(), 6, "{urls:?}");
    assert!(
        !urls.iter().any(|u| u.contains("old/story")),
        "out-of-week story picked"
    );
    // The rate cut, from two sections of one feed and from the wire, is one story.
    let rate: Vec<_> = json["selection"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["title"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("policy rate")
        })
        .collect();
    assert_eq!(rate.len(), 1);
    assert_eq!(rate[0]["appearances"], 3);
    assert_eq!(
        rate[0]["folded"][0],
        "https://wire.test/2026/02/03/central-bank-rate"
    );
    assert_eq!(
        urls[0], "https://news.test/economy/rate-cut",
        "the most repeated, hot story leads"
    );
    let html = std::fs::read_to_string(site.path("digests/2026-W06/digest.html")).unwrap();
    assert_eq!(
        html.matches(">Central bank cuts policy rate by 100 basis points</a>")
            .count(),
        1
    );
    assert!(!html.contains(">Central Bank Cuts Policy Rate by 100 Basis Points</a>"));
    assert!(site.path("digests/2026-W06/digest.txt").exists());
    // The lead image is decorative beside its headline (empty alt, not a
    // link), with a width and height from the feed (1200×675).
    let img = html
        .split("<img")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();
    assert!(img.contains("alt=\"\""), "{img}");
    assert!(
        img.contains("width=\"552\"") && img.contains("height=\"311\""),
        "{img}"
    );
}

#[test]
fn editor_pins_and_drops_are_obeyed() {
    let (_server, site) = fetched_site("\n[ranking]\nstories = 3\n");
    std::fs::create_dir_all(site.path("digests/2026-W06")).unwrap();
    std::fs::write(
        site.path("digests/2026-W06/issue.toml"),
        r#"subject = "Our pick of the week"
intro = "Hello **readers**. <b>raw</b>"
pin = ["https://www.wire.test/2026/02/07/spectrum?utm_source=editor", "https://blog.test/posts/remittances"]
drop = ["http://news.test/economy/rate-cut/"]
"#,
    ).unwrap();
    site.ok(&["build", "--week", "2026-W06"]);
    let json = site.digest_json("2026-W06");
    let urls = pick_urls(&json);
    assert_eq!(urls[0], "https://wire.test/2026/02/07/spectrum");
    assert_eq!(urls[1], "https://blog.test/posts/remittances");
    assert_eq!(urls.len(), 3);
    assert!(!urls.iter().any(|u| u.contains("rate-cut")));
    assert_eq!(json["subject"], "Our pick of the week");
    let html = std::fs::read_to_string(site.path("digests/2026-W06/digest.html")).unwrap();
    assert!(
        html.contains("<strong>readers</strong>") && html.contains("&lt;b&gt;raw&lt;/b&gt;"),
        "intro markdown rendered, raw HTML shown as text"
    );
    let explain = site.ok(&["explain", "--week", "2026-W06"]);
    assert!(
        explain.contains("pinned by the editor (pin #1)"),
        "{explain}"
    );
    assert!(explain.contains("dropped by the editor"), "{explain}");
    assert!(explain.contains("below the cut"), "{explain}");
}

#[test]
fn a_pin_that_is_not_stored_is_an_error_naming_it() {
    let (_server, site) = fetched_site("");
    std::fs::create_dir_all(site.path("digests/2026-W06")).unwrap();
    std::fs::write(
        site.path("digests/2026-W06/issue.toml"),
        "pin = [\"https://nowhere.test/x\"]\n",
    )
    .unwrap();
    let out = site.run(&["build", "--week", "2026-W06"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("issue.toml") && err.contains("https://nowhere.test/x"),
        "{err}"
    );
    std::fs::write(site.path("digests/2026-W06/issue.toml"), "pins = []\n").unwrap();
    let err = stderr(&site.run(&["build", "--week", "2026-W06"]));
    assert!(
        err.contains("issue.toml") && err.contains("line 1") && err.contains("pins"),
        "{err}"
    );
}

#[test]
fn untrusted_feed_text_is_escaped_and_other_scripts_survive() {
    let (_server, site) = fetched_site("");
    site.ok(&["build", "--week", "2026-W06"]);
    let html = std::fs::read_to_string(site.path("digests/2026-W06/digest.html")).unwrap();
    assert!(
        !html.contains("<script"),
        "a feed's script reached the HTML"
    );
    // Markup written into a title is markup, not words: its tags are dropped
    // (never shown raw, never run), the words around them kept.
    assert!(
        html.contains("Wallet app reaches a million users"),
        "the title lost its tags"
    );
    assert!(
        !html.contains("&lt;script"),
        "a title's tags were shown as text"
    );
    assert!(
        !html.contains("onerror"),
        "markup in a summary reached the HTML"
    );
    assert!(html.contains("Downloads passed one million &amp; counting."));
    // Urdu survives intact, marked for automatic direction.
    assert!(html.contains("بینک دولت پاکستان نے شرح سود کم کر دی"));
    assert!(html.contains("dir=\"auto\""));
    let text = std::fs::read_to_string(site.path("digests/2026-W06/digest.txt")).unwrap();
    assert!(text.contains("مرکزی بینک نے پالیسی ریٹ میں کمی کا اعلان کیا۔"));
}

#[test]
fn a_week_without_stories_writes_no_issue() {
    let (_server, site) = fetched_site("");
    let out = site.ok(&["build", "--week", "2025-W10"]);
    assert!(out.contains("no stories"), "{out}");
    assert!(!site.path("digests/2025-W10/digest.html").exists());
    assert!(!site.path("digests/2025-W10/digest.json").exists());
}

#[test]
fn default_week_is_the_last_complete_one() {
    // NOW is Thursday 12 Feb 2026: the last complete week is 2026-W06.
    let (_server, site) = fetched_site("");
    let out = site.ok(&["build"]);
    assert!(out.contains("built 2026-W06"), "{out}");
}

#[test]
fn the_sample_issue_holds_each_seed_story_once() {
    let site = Site::sample();
    site.ok(&["run", "--week", "2026-W06"]);
    let json = site.digest_json("2026-W06");
    let picks = json["selection"]["picks"].as_array().unwrap();
    assert_eq!(picks.len(), 9, "the seed page has nine stories");
    let html = std::fs::read_to_string(site.path("digests/2026-W06/digest.html")).unwrap();
    // The lead as h2, the others as h3 briefs, under the h1 masthead.
    assert_eq!(html.matches("<h1 class=\"masthead-title\"").count(), 1);
    assert_eq!(html.matches("<h2 class=\"lead-headline\"").count(), 1);
    assert_eq!(html.matches("<h3 class=\"brief-headline\"").count(), 8);
    for p in picks {
        let url = p["url"].as_str().unwrap();
        assert_eq!(p["appearances"], 2, "{url} is listed twice on the page");
        // The reader gets a link the feed gave (the clean one, not the Hot
        // list's tracking variant), never one gazette rewrote.
        let link = p["link"].as_str().unwrap();
        assert!(!link.contains("utm_"), "{link}");
        assert!(
            std::fs::read_to_string(site.path("sample/fintech-news.xml"))
                .unwrap()
                .contains(&format!("<link>{link}</link>")),
            "{link} is not a link of the feed"
        );
        // One link per story (its headline), and the lead's one call to action.
        let lead = p == &picks[0];
        assert_eq!(
            html.matches(&format!("href=\"{link}\"")).count(),
            if lead { 2 } else { 1 },
            "{link}"
        );
        // The text part puts each story's link right under its headline.
        let text = std::fs::read_to_string(site.path("digests/2026-W06/digest.txt")).unwrap();
        assert_eq!(text.matches(&format!("\n{link}\n")).count(), 1, "{link}");
    }
    // Nothing for one subscriber in the files a person opens.
    for file in ["digest.html", "digest.txt"] {
        let body = std::fs::read_to_string(site.path(&format!("digests/2026-W06/{file}"))).unwrap();
        assert!(!body.contains("{{gazette:"), "{file}");
    }
    // No link text twice over different stories ("Read the story →" nine times).
    let texts: Vec<&str> = html
        .split("</a>")
        .filter_map(|a| a.rsplit('>').next())
        .filter(|t| !t.trim().is_empty())
        .collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), texts.len(), "{texts:?}");
    // The sample subscribers each get one message in the file outbox.
    let outbox: Vec<_> = std::fs::read_dir(site.path("digests/2026-W06/outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let sample_subscribers = std::fs::read_to_string(site.path("sample/subscribers.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(outbox.len(), sample_subscribers, "{outbox:?}");
    assert!(site
        .ok(&["run", "--week", "2026-W06"])
        .contains("nothing left to send"));
}

#[test]
fn views_import_command_feeds_ranking() {
    let (_server, site) = fetched_site("");
    std::fs::write(
        site.path("views.csv"),
        "url,views\nhttps://www.news.test/crypto/new-tokens/?utm_source=x,100000\n",
    )
    .unwrap();
    site.ok(&["views", "import", "views.csv"]);
    site.ok(&["build", "--week", "2026-W06"]);
    let json = site.digest_json("2026-W06");
    let tokens = json["selection"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == "https://news.test/crypto/new-tokens")
        .unwrap()
        .clone();
    assert_eq!(tokens["views"], 100000);
    assert_eq!(tokens["parts"]["views"], 2.0);
    std::fs::write(
        site.path("bad.csv"),
        "url,views\nhttps://x.test/a,12\nnot a url,3\n",
    )
    .unwrap();
    let err = stderr(&site.run(&["views", "import", "bad.csv"]));
    assert!(err.contains("bad.csv: line 3"), "{err}");
}

#[test]
fn an_issue_gmail_would_clip_drops_its_lowest_ranked_stories_but_never_a_pin() {
    let mut items = String::new();
    for i in 0..40 {
        let words: String = (0..400)
            .map(|w| format!("word{} ", (w * 7 + i) % 97))
            .collect();
        // Briefs show a sentence of the summary: the headlines carry the weight.
        let headline: String = (0..150)
            .map(|w| format!("head{} ", (w * 11 + i) % 89))
            .collect();
        items += &format!(
            "<item><title>Long story number {i} about subject {i} {headline}</title><link>https://long.test/{i}</link><guid>{i}</guid>\
             <pubDate>Wed, 04 Feb 2026 {:02}:00:00 +0000</pubDate><description>{words}</description></item>",
            i % 24
        );
    }
    let site = Site::new(
        &["long.xml"],
        "\n[ranking]\nstories = 40\nsummary_chars = 3000\nmax_per_topic = 0\n",
    );
    std::fs::write(site.path("long.xml"), format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>L</title>{items}</channel></rss>")).unwrap();
    site.ok(&["fetch"]);
    // The earliest story ranks last: pin it.
    std::fs::create_dir_all(site.path("digests/2026-W06")).unwrap();
    std::fs::write(
        site.path("digests/2026-W06/issue.toml"),
        "pin = [\"https://long.test/0\"]\n",
    )
    .unwrap();
    let out = site.ok(&["build", "--week", "2026-W06"]);
    assert!(
        out.contains("left out so Gmail does not clip the issue"),
        "{out}"
    );
    let json = site.digest_json("2026-W06");
    let picks = pick_urls(&json);
    assert!(picks.len() < 40 && picks.len() > 1, "{}", picks.len());
    assert_eq!(picks[0], "https://long.test/0", "the pin stays, first");
    let clipped = json["selection"]["others"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "clipped")
        .count();
    assert_eq!(clipped, 40 - picks.len());
    // Measured on the messages as sent, not on what the build says: subscribers
    // with the longest name gazette keeps, in letters that encode long, and a
    // long address, each get a copy under Gmail's 102 KB.
    std::fs::write(
        site.path("long-names.csv"),
        format!(
            "email,name\n{}@{}.example.com,{}\nshort@example.com,Al\n",
            "l".repeat(64),
            "d".repeat(60),
            "ü".repeat(100)
        ),
    )
    .unwrap();
    site.ok(&["subscribers", "import", "long-names.csv"]);
    site.ok(&["send", "--week", "2026-W06"]);
    let mut copies = 0;
    for entry in std::fs::read_dir(site.path("digests/2026-W06/outbox")).unwrap() {
        let bytes = std::fs::metadata(entry.unwrap().path()).unwrap().len();
        assert!(
            bytes <= 102 * 1024,
            "a copy of {bytes} bytes would be clipped"
        );
        copies += 1;
    }
    assert_eq!(copies, 2);
}

#[test]
fn an_issue_is_frozen_once_its_send_began() {
    let (_server, site) = fetched_site("");
    site.import_people("reader", 2);
    site.ok(&["send", "--week", "2026-W06"]);
    let before = std::fs::read(site.path("digests/2026-W06/digest.html")).unwrap();
    std::fs::write(
        site.path("digests/2026-W06/issue.toml"),
        "subject = \"Another subject\"\n",
    )
    .unwrap();
    let out = site.run(&["build", "--week", "2026-W06"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("2026-W06") && err.contains("frozen"), "{err}");
    assert_eq!(
        std::fs::read(site.path("digests/2026-W06/digest.html")).unwrap(),
        before,
        "the built issue is untouched"
    );
}

#[test]
fn a_stray_quote_costs_its_own_line_only_and_every_line_is_accounted_for() {
    let site = Site::new(&["feed.xml"], "");
    let mut csv = String::from("email,name\n");
    for i in 1..=50 {
        if i % 10 == 0 {
            csv += &format!("\"bad{i}@x.example,B\n");
        } else if i % 10 == 5 {
            csv += &format!("extra{i}@x.example,Name,surplus\n");
        } else {
            csv += &format!("good{i}@x.example,Person {i}\n");
        }
    }
    std::fs::write(site.path("people.csv"), csv).unwrap();
    let out = site.run(&["subscribers", "import", "people.csv"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("added 40"), "{stdout}");
    assert!(stdout.contains("bad lines 10"), "{stdout}");
    // The stray quote on line 11 (bad10) is named, and the line after it stored.
    assert!(stdout.contains("people.csv: line 11: a quote"), "{stdout}");
    assert!(stdout.contains("people.csv: line 6: 3 fields"), "{stdout}");
    assert_eq!(site.count("SELECT count(*) FROM subscribers"), 40);
}
