//! Property tests (proptest; `cargo fuzz` needs a nightly compiler, which this
//! project's machines do not have). Ranking keeps its promises for any input; the
//! parsers of untrusted input (feeds, config, CSV imports, tokens, bounce mail)
//! never panic, whatever bytes they get. A panic found here becomes a regression
//! test beside it.

use std::collections::{HashMap, HashSet};

use chrono::{Duration, TimeZone, Utc};
use gazette::rank::{self, EditorChoices, RankSettings, Verdict};
use gazette::store::Story;
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "bank", "rate", "crypto", "wallet", "cuts", "launch", "app", "policy", "راست", "بینک",
    "fintech", "loan",
];

/// A story's shape: title words, hour of the week, appearances, topic, hot, source.
type RawStory = (Vec<usize>, u32, u32, Option<usize>, bool, u8);

fn story_strategy() -> impl Strategy<Value = RawStory> {
    (
        proptest::collection::vec(0..WORDS.len(), 1..7),
        0u32..7 * 24,
        1u32..4,
        proptest::option::of(0usize..4),
        any::<bool>(),
        0u8..3,
    )
}

fn build_stories(raw: &[RawStory]) -> Vec<Story> {
    let start = Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap();
    raw.iter()
        .enumerate()
        .map(
            |(i, (words, hour, appearances, topic, hot, source))| Story {
                id: i as i64,
                url: format!("https://s{source}.test/story/{i}"),
                link: format!("https://s{source}.test/story/{i}"),
                title_derived: false,
                comments: None,
                title: words
                    .iter()
                    .map(|w| WORDS[*w])
                    .collect::<Vec<_>>()
                    .join(" "),
                summary: String::new(),
                image: None,
                image_size: None,
                published_at: start + Duration::hours(*hour as i64),
                published_estimated: false,
                appearances: *appearances,
                sources: vec![format!("Feed {source}")],
                categories: topic
                    .map(|t| format!("Topic {t}"))
                    .into_iter()
                    .chain(hot.then(|| "Hot".to_string()))
                    .collect(),
            },
        )
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ranking_keeps_its_promises(
        raw in proptest::collection::vec(story_strategy(), 0..40),
        n in 1usize..12,
        pin_picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        drop_picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        views in proptest::collection::vec((any::<prop::sample::Index>(), 0u64..100_000), 0..10),
        max_per_topic in 0usize..3,
        max_per_source in 0usize..3,
    ) {
        let stories = build_stories(&raw);
        let urls: Vec<String> = stories.iter().map(|s| s.url.clone()).collect();
        let mut pins: Vec<String> = Vec::new();
        if !urls.is_empty() {
            for p in &pin_picks {
                let u = p.get(&urls).clone();
                if !pins.contains(&u) && pins.len() < n { pins.push(u); }
            }
        }
        // A pin may fold with another story: drop only what no pin folds with.
        let groups = rank::fold_duplicates(&stories);
        let pinned_groups: HashSet<usize> = groups.iter().enumerate()
            .filter(|(_, g)| g.iter().any(|&i| pins.contains(&urls[i]))).map(|(k, _)| k).collect();
        let drops: Vec<String> = if urls.is_empty() { vec![] } else {
            drop_picks.iter().map(|d| d.get(&urls).clone())
                .filter(|u| groups.iter().enumerate().all(|(k, g)| !(pinned_groups.contains(&k) && g.iter().any(|&i| &urls[i] == u))))
                .collect()
        };
        let views: HashMap<String, u64> = if urls.is_empty() { HashMap::new() } else {
            views.iter().map(|(i, v)| (i.get(&urls).clone(), *v)).collect()
        };
        let choices = EditorChoices { pin: pins.clone(), drop: drops.clone(), ..Default::default() };
        let settings = RankSettings { stories: n, max_per_topic, max_per_source, half_life_hours: 168.0 };
        let reference = Utc.with_ymd_and_hms(2026, 2, 9, 0, 0, 0).unwrap();
        let sel = rank::rank(&stories, &rank::Signals::with_views(views.clone()), &choices, &settings, reference).unwrap();

        prop_assert!(sel.picks.len() <= n);
        // Pins: all in, first, in the editor's order (two pins folded into one
        // story count once). Checked from the picks alone, not with the ranking's
        // own folding.
        let pinned = sel.picks.iter().take_while(|c| c.verdict == Verdict::Pinned).count();
        prop_assert!(sel.picks[pinned..].iter().all(|c| c.verdict != Verdict::Pinned), "pins first");
        // A pin folded into an earlier pin's story goes where that one is.
        let mut placed: Vec<usize> = Vec::new();
        for p in &pins {
            let at = sel.picks[..pinned].iter().position(|c| &c.url == p || c.folded.contains(p));
            prop_assert!(at.is_some(), "pin {} not among the first picks", p);
            let at = at.unwrap();
            if placed.contains(&at) {
                continue;
            }
            prop_assert!(placed.last().is_none_or(|&last| at > last), "pin {} out of the editor's order", p);
            placed.push(at);
        }
        prop_assert_eq!(placed.len(), pinned, "every pinned pick is a pin");
        // The picks are the best-scored: every story picked on its score
        // scores at least as well as any left below the cut.
        let lowest_picked = sel.picks.iter().filter(|c| c.verdict == Verdict::Picked).map(|c| c.score).fold(f64::INFINITY, f64::min);
        for c in sel.others.iter().filter(|c| c.verdict == Verdict::BelowCut) {
            prop_assert!(c.score <= lowest_picked, "{} ({}) below the cut scores over a pick ({})", c.url, c.score, lowest_picked);
        }
        // Drops: never in.
        for pick in &sel.picks {
            prop_assert!(!drops.contains(&pick.url) && !pick.folded.iter().any(|f| drops.contains(f)));
        }
        // No story twice, in or out.
        let mut seen = HashSet::new();
        for c in sel.picks.iter().chain(&sel.others) {
            for u in std::iter::once(&c.url).chain(&c.folded) {
                prop_assert!(seen.insert(u.clone()), "{} twice", u);
            }
        }
        prop_assert_eq!(seen.len(), stories.len());
        // The issue is full when it can be: short only when nothing is left but
        // what the editor dropped (a capped story fills a short issue).
        if sel.picks.len() < n {
            for c in &sel.others {
                prop_assert_eq!(c.verdict, Verdict::Dropped, "{} left out of a short issue", c.url);
            }
        }
        // Same input, same output; and the order stories arrive in does not matter.
        prop_assert_eq!(&rank::rank(&stories, &rank::Signals::with_views(views.clone()), &choices, &settings, reference).unwrap(), &sel);
        let mut reversed = stories.clone();
        reversed.reverse();
        let again = rank::rank(&reversed, &rank::Signals::with_views(views.clone()), &choices, &settings, reference).unwrap();
        let urls_of = |s: &rank::Selection| s.picks.iter().map(|c| c.url.clone()).collect::<Vec<_>>();
        prop_assert_eq!(urls_of(&again), urls_of(&sel));
    }

    #[test]
    fn feed_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = gazette::feed::parse(&bytes, None);
    }

    #[test]
    fn feed_like_text_never_panics(items in proptest::collection::vec(("[^<>]{0,30}", "[ -~]{0,40}", "[ -~]{0,40}"), 0..5)) {
        let body: String = items.iter().map(|(t, l, d)| format!("<item><title>{t}</title><link>{l}</link><pubDate>{d}</pubDate><description>{t}{l}</description></item>")).collect();
        let xml = format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>x</title>{body}</channel></rss>");
        if let Ok(feed) = gazette::feed::parse(xml.as_bytes(), Some("https://base.test/feed")) {
            for item in feed.items {
                prop_assert!(item.url.starts_with("https://"));
                prop_assert!(!item.title.contains('\n') && !item.summary.contains('\n'));
            }
        }
    }

    #[test]
    fn canonical_urls_are_stable(url in "(https?://)?(www\\.|m\\.)?[a-z]{1,8}\\.test(/[a-z0-9]{0,6}){0,3}/?(\\?(utm_source|a|fbclid)=[a-z0-9]{0,4})?") {
        if let Some(c) = gazette::feed::canonical_url(&url) {
            prop_assert_eq!(gazette::feed::canonical_url(&c), Some(c.clone()));
            prop_assert!(!c.contains("utm_") && !c.contains("fbclid"));
        }
    }

    #[test]
    fn config_parsing_never_panics(text in "[\\[\\]a-z_=\" .\\n0-9:/@<>-]{0,300}") {
        let _ = gazette::config::Config::parse(&text, "config.toml", std::path::Path::new("."), std::iter::empty());
    }

    /// Every kind of token verifies for what it was made for, and one changed
    /// character (anywhere: the id, the MAC), another id, or another kind of
    /// token never verifies.
    #[test]
    fn tokens_verify_only_unchanged_and_for_their_purpose(
        id in 0i64..1_000_000,
        at in any::<prop::sample::Index>(),
        with in "[0-9A-Za-z_-]",
    ) {
        let signer = gazette::token::Signer::new(gazette::config::Secret::new("property"), "list.test");
        let unsubscribe = signer.unsubscribe_token(id);
        let data = signer.data_token(id);
        let bounce = signer.bounce_token(id);
        let confirm = signer.confirm_token(id, "a@b.test", 2_000_000_000);
        let email = |_| Some("a@b.test".to_string());
        prop_assert_eq!(signer.verify_unsubscribe(&unsubscribe), Some(id));
        prop_assert_eq!(signer.verify_data(&data), Some(id));
        prop_assert_eq!(signer.verify_bounce(&bounce), Some(id));
        prop_assert_eq!(signer.verify_confirm(&confirm, email), Some((id, 2_000_000_000)));
        // Crossed purposes never verify.
        prop_assert_eq!(signer.verify_unsubscribe(&data), None);
        prop_assert_eq!(signer.verify_data(&unsubscribe), None);
        prop_assert_eq!(signer.verify_confirm(&unsubscribe, email), None);
        // One character changed, anywhere.
        for token in [&unsubscribe, &data, &confirm] {
            let i = at.index(token.len());
            let mut changed: Vec<char> = token.chars().collect();
            if changed[i].to_string() == with {
                continue;
            }
            changed[i] = with.chars().next().unwrap();
            let changed: String = changed.into_iter().collect();
            prop_assert_eq!(signer.verify_unsubscribe(&changed), None, "{}", changed);
            prop_assert_eq!(signer.verify_data(&changed), None, "{}", changed);
            prop_assert_eq!(signer.verify_confirm(&changed, email), None, "{}", changed);
        }
        // Another id with this MAC.
        let (_, mac) = unsubscribe.split_once('.').unwrap();
        prop_assert_eq!(signer.verify_unsubscribe(&format!("{}.{mac}", id + 1)), None);
    }

    #[test]
    fn bounce_reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = gazette::bounce::read(&bytes);
    }

    #[test]
    fn mutated_reports_never_panic(cut in 0usize..4000, flip in 0usize..4000, byte in any::<u8>()) {
        for name in ["postfix-hard.eml", "gmail-hard.eml", "yahoo-arf.eml", "microsoft-hard.eml"] {
            let mut raw = std::fs::read(crate::util::fixture(&format!("bounces/{name}"))).unwrap();
            if flip < raw.len() { raw[flip] = byte; }
            raw.truncate(cut.min(raw.len()));
            let _ = gazette::bounce::read(&raw);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn csv_imports_store_good_lines_report_bad_ones_and_repeat_harmlessly(
        lines in proptest::collection::vec(prop_oneof![
            "[a-z]{1,6}@[a-z]{1,5}\\.test(,[A-Za-z ]{0,8})?",
            "[A-Z]{1,6}@[A-Z]{1,5}\\.TEST",
            "[ -~]{0,20}",
            "\"[a-z]{1,4}@x\\.test\",\"a,b\"",
        ], 0..30)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, format!("email,name\n{}\n", lines.join("\n"))).unwrap();
        let mut store = gazette::store::Store::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        let first = match gazette::app::import_subscribers(&mut store, &path, now) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let stored: u64 = store.count_by_status().unwrap().iter().map(|(_, n)| *n).sum();
        prop_assert_eq!(stored as usize, first.added);
        let second = gazette::app::import_subscribers(&mut store, &path, now).unwrap();
        prop_assert_eq!(second.added, 0);
        prop_assert_eq!(second.bad.len(), first.bad.len());
        let again: u64 = store.count_by_status().unwrap().iter().map(|(_, n)| *n).sum();
        prop_assert_eq!(again, stored);
    }
}
