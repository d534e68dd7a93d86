//! Feeds: turns RSS 2.0, Atom and JSON Feed documents into [`FeedItem`]s. In: a
//! feed's bytes ([`parse_with`], pure), or its location ([`fetch`]: HTTP(S) with a
//! timeout, a size cap and conditional GET, or a file). Out: items with the link
//! the feed gave and a canonical URL, plain-text title and prose summary,
//! categories, image and date, ready to store. Real feeds deviate: dates without
//! zones ([`dates`]), JSON Feeds off the spec (`json.rs`), FeedBurner's origLink
//! and comment counts (`extras.rs`), images in the item's HTML (`images.rs`).
//! Everything a feed says is untrusted text; it is kept as text here and escaped
//! where it is rendered.

use chrono::{DateTime, Utc};
use url::Url;

use crate::text::{clean_line, html_to_text};

pub mod dates;
mod extras;
mod fetch;
mod images;
mod json;
mod links;
mod listing;

pub use fetch::{fetch, http_client, FetchLimits, Fetched, Validators};
pub use links::{canonical_url, canonical_url_with_fragment, same_story};
pub use listing::listed_links;

/// One item of a feed, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// The feed's own id for the item (guid / id), or its link when it has none.
    pub guid: String,
    /// The link a reader is sent: the one the feed gave (FeedBurner's origLink
    /// over a feedproxy link), resolved against `xml:base`, the feed's own URL
    /// or its `rel="self"` link.
    pub link: String,
    /// What recognises the story: the canonical form of `link` (see
    /// [`canonical_url`]), with the fragment where it tells items apart.
    pub url: String,
    pub title: String,
    /// The feed gave no title: `title` is made from the first sentence of the text.
    pub title_derived: bool,
    /// Plain prose, boilerplate removed; cut only when rendered.
    pub summary: String,
    pub categories: Vec<String>,
    pub image: Option<String>,
    /// The image's width and height in pixels, when the feed says.
    pub image_size: Option<(u32, u32)>,
    pub published: Option<DateTime<Utc>>,
    /// Comments on the story (`slash:comments`, `thr:total`), when the feed says.
    pub comments: Option<u64>,
}

/// What reading a feed found, for `gazette feeds check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Items whose text lost boilerplate ("Continue reading…", "The post … appeared first on …").
    pub boilerplate_removed: usize,
    /// Items whose link was relative, FeedBurner's, or taken from the id.
    pub links_resolved: usize,
}

#[derive(Debug, Clone)]
pub struct ParsedFeed {
    pub title: Option<String>,
    pub items: Vec<FeedItem>,
    /// Items left out, each with why (no link, no title and no text).
    pub skipped: Vec<String>,
    pub stats: ParseStats,
}

/// How to read a feed: the URL it came from (relative links resolve against it)
/// and the zone a date without one is in.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    pub base: Option<&'a str>,
    pub zone: chrono_tz::Tz,
}

/// A link of an item as the feed wrote it.
#[derive(Debug, Clone, PartialEq)]
struct RawLink {
    href: String,
    rel: Option<String>,
}

/// An item before gazette's rules are applied, whatever the format.
#[derive(Debug, Clone, Default)]
struct RawItem {
    id: String,
    links: Vec<RawLink>,
    orig_link: Option<String>,
    /// The title and whether the feed says it is HTML.
    title: Option<(String, bool)>,
    summary_html: Option<String>,
    content_html: Option<String>,
    categories: Vec<String>,
    /// Images the feed names (media:*, enclosures, iTunes), best first, with sizes.
    images: Vec<(String, Option<(u32, u32)>)>,
    published: Option<DateTime<Utc>>,
    comments: Option<u64>,
    /// The item's `<link>` was empty, so a link equal to the feed's own URL is
    /// that empty link resolved, not the item's.
    empty_link: bool,
    /// How many of its `<link>`s had an address written in them.
    nonempty_links: usize,
    /// What relative addresses in the item's HTML resolve against, when the
    /// feed says (`xml:base` on its content).
    content_base: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("not a feed: {0}")]
    Malformed(String),
    // The I/O error is part of the message, not a `source`: said once.
    #[error("cannot read {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("larger than the {0}-byte limit (fetch.max_bytes)")]
    TooLarge(u64),
}

/// Parses a feed document. `base` (the feed's own URL) resolves relative links;
/// dates without a zone are read as UTC.
pub fn parse(bytes: &[u8], base: Option<&str>) -> Result<ParsedFeed, FeedError> {
    parse_with(
        bytes,
        &ParseOptions {
            base,
            zone: chrono_tz::UTC,
        },
    )
}

/// Parses a feed document (RSS, Atom, JSON Feed), leniently: one bad item never
/// costs the rest; each one left out is named with why.
pub fn parse_with(bytes: &[u8], options: &ParseOptions) -> Result<ParsedFeed, FeedError> {
    let zone = options.zone;
    let (title, own_base, raw, skipped) = if json::looks_like_json(bytes) {
        let doc = json::parse(bytes, &move |d| dates::parse_lenient(d, zone))
            .map_err(FeedError::Malformed)?;
        (
            doc.title.map(|t| clean_title(&t, false)),
            doc.base,
            doc.items,
            doc.skipped,
        )
    } else {
        let (title, own_base, items) = parse_xml(bytes, options.base, zone)?;
        (title, own_base, items, Vec::new())
    };
    let base = options.base.map(str::to_string).or(own_base);
    let mut feed = ParsedFeed {
        title,
        items: Vec::new(),
        skipped,
        stats: ParseStats::default(),
    };
    for (n, raw) in raw.into_iter().enumerate() {
        match item(raw, base.as_deref(), &mut feed.stats) {
            Ok(item) => feed.items.push(item),
            Err(why) => feed.skipped.push(format!("item {}: {why}", n + 1)),
        }
    }
    keep_distinguishing_fragments(&mut feed.items);
    Ok(feed)
}

/// RSS and Atom through feed-rs, with lenient dates; a feed read from a file is
/// read again against its own `rel="self"` (or home page) link, so its relative
/// links resolve. Returns the title, that link, and the items.
fn parse_xml(bytes: &[u8], base: Option<&str>, zone: chrono_tz::Tz) -> Result<RawFeed, FeedError> {
    let read = |base: Option<&str>| {
        feed_rs::parser::Builder::new()
            .base_uri(base)
            .sanitize_content(false)
            .timestamp_parser(move |d| dates::parse_lenient(d, zone))
            .build()
            .parse(bytes)
            .map_err(|e| FeedError::Malformed(e.to_string()))
    };
    let mut feed = read(base)?;
    let own = feed
        .links
        .iter()
        .find(|l| l.rel.as_deref() == Some("self"))
        .or_else(|| {
            feed.links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        })
        .map(|l| l.href.clone())
        .filter(|h| h.starts_with("http://") || h.starts_with("https://"));
    if base.is_none() {
        if let Some(own) = &own {
            feed = read(Some(own))?;
        }
    }
    let extras = extras::scan(bytes);
    let extras_fit = extras.len() == feed.entries.len();
    let items = feed
        .entries
        .into_iter()
        .enumerate()
        .map(|(n, entry)| {
            let extra = if extras_fit {
                extras[n].clone()
            } else {
                extras::Extras::default()
            };
            raw_from_entry(entry, extra)
        })
        .collect();
    Ok((feed.title.as_ref().map(title_from_text), own, items))
}

/// A feed before gazette's rules: its title, its own link, its items.
type RawFeed = (Option<String>, Option<String>, Vec<RawItem>);

/// Relations that never name the item's own page.
const NOT_THE_PAGE: &[&str] = &["self", "edit", "replies", "enclosure", "license", "payment"];

fn raw_from_entry(entry: feed_rs::model::Entry, extra: extras::Extras) -> RawItem {
    let mut candidates: Vec<&feed_rs::model::Link> = entry
        .links
        .iter()
        .filter(|l| l.rel.as_deref().is_none_or(|r| !NOT_THE_PAGE.contains(&r)))
        .collect();
    // The alternate (or unnamed) link first, and a web page before a PDF.
    candidates.sort_by_key(|l| {
        let other_rel = l.rel.as_deref().is_some_and(|r| r != "alternate");
        let not_a_page = l.media_type.as_deref().is_some_and(|t| !t.contains("html"));
        (other_rel, not_a_page)
    });
    let links: Vec<RawLink> = candidates
        .into_iter()
        .map(|l| RawLink {
            href: l.href.trim().to_string(),
            rel: l.rel.clone(),
        })
        .collect();
    let size = |w: Option<u32>, h: Option<u32>| w.zip(h).filter(|(w, h)| *w > 0 && *h > 0);
    let mut thumbnails = Vec::new();
    let mut contents = Vec::new();
    for m in &entry.media {
        for t in &m.thumbnails {
            thumbnails.push((t.image.uri.clone(), size(t.image.width, t.image.height)));
        }
        for c in &m.content {
            let Some(url) = &c.url else { continue };
            let typed_image = c.content_type.as_ref().is_some_and(|t| t.ty() == "image");
            let untyped = c.content_type.is_none();
            if typed_image || (untyped && images::looks_like_image_url(url.as_str())) {
                contents.push((url.to_string(), size(c.width, c.height)));
            }
        }
    }
    let mut images_found = thumbnails;
    images_found.extend(contents);
    let title = entry.title.as_ref().map(|t| {
        let subty = t.content_type.subty();
        (t.content.clone(), subty == "html" || subty == "xhtml")
    });
    let mut categories: Vec<String> = Vec::new();
    for c in &entry.categories {
        categories.push(c.label.clone().unwrap_or_else(|| c.term.clone()));
    }
    RawItem {
        id: entry.id.trim().to_string(),
        links,
        orig_link: extra.orig_link,
        title,
        summary_html: entry.summary.as_ref().map(|t| t.content.clone()),
        content_html: entry.content.as_ref().and_then(|c| c.body.clone()),
        categories,
        images: images_found,
        published: entry.published.or(entry.updated),
        comments: extra.comments,
        empty_link: extra.empty_link,
        nonempty_links: extra.nonempty_links,
        content_base: extra.content_base,
    }
}

/// A title as text. HTML (declared, or tags written into a text title, as
/// `<span class='webrupee'>₹</span>` is) loses its tags; entities are decoded
/// once; white space is folded.
fn title_from_text(t: &feed_rs::model::Text) -> String {
    let subty = t.content_type.subty();
    clean_title(&t.content, subty == "html" || subty == "xhtml")
}

fn clean_title(content: &str, html: bool) -> String {
    use std::sync::OnceLock;
    static TAG: OnceLock<regex::Regex> = OnceLock::new();
    // Only tags of HTML's text and of what must never run: `Option<T>` or
    // `<template>` in a programming headline are words.
    let tag = TAG.get_or_init(|| {
        regex::Regex::new(
            r"(?i)</?(span|b|i|em|strong|a|br|sup|sub|small|big|font|u|s|mark|abbr|cite|q|img|p|div|wbr|ins|del|script|style|iframe|object|embed|svg|video|audio|form|input|button|noscript|h[1-6])(\s[^<>]*)?/?>",
        )
        .expect("static pattern")
    });
    if html || tag.is_match(content) {
        html_to_text(content)
    } else {
        clean_line(&html_escape::decode_html_entities(content))
    }
}

/// Resolves `href` against `base`; `None` for an empty or non-http(s) link.
fn resolve(href: &str, base: Option<&Url>) -> Option<String> {
    links::resolve_url(href, base).map(|u| u.to_string())
}

/// Applies gazette's rules to one item: its link, title, text and image.
fn item(raw: RawItem, base: Option<&str>, stats: &mut ParseStats) -> Result<FeedItem, String> {
    let base_url = base.and_then(|b| Url::parse(b).ok());
    let feed_url = base_url.as_ref().map(|u| u.as_str().to_string());
    // An empty href resolved against the feed's address (WordPress's `href=""`)
    // says nothing: the feed's address is then no link of the item's.
    let usable = |link: &String| !(raw.empty_link && Some(link) == feed_url.as_ref());
    // Every `<link>` of the item was empty: whatever feed-rs resolved them to
    // (the feed's URL, an `xml:base` such as WordPress's wp-atom.php) is not
    // the item's page.
    let only_empty = raw.empty_link && raw.nonempty_links == 0;
    let own_links: Vec<String> = raw
        .links
        .iter()
        .filter(|_| !only_empty)
        .filter_map(|l| resolve(&l.href, base_url.as_ref()))
        .filter(usable)
        .collect();
    let orig = raw
        .orig_link
        .as_deref()
        .and_then(|l| resolve(l, base_url.as_ref()));
    let from_id = resolve(&raw.id, None);
    let link = orig
        .clone()
        .or_else(|| own_links.first().cloned())
        .or_else(|| from_id.clone().filter(usable));
    let Some(link) = link else {
        return Err(format!(
            "{}: no link (no usable <link>, and its id is not an http(s) URL)",
            raw.title
                .as_ref()
                .map(|(t, html)| clean_title(t, *html))
                .filter(|t| !t.is_empty())
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| "untitled".into())
        ));
    };
    let resolved = orig.is_some()
        || raw
            .links
            .first()
            .is_some_and(|l| Url::parse(&l.href).is_err())
        || own_links.is_empty();
    if resolved {
        stats.links_resolved += 1;
    }
    let url = canonical_url(&link).ok_or_else(|| format!("link {link:?} is not an http(s) URL"))?;
    let from_summary = raw.summary_html.as_deref().map(crate::text::prose);
    let from_content = raw.content_html.as_deref().map(crate::text::prose);
    let boilerplate = from_summary
        .iter()
        .chain(&from_content)
        .any(|p| p.boilerplate > 0);
    if boilerplate {
        stats.boilerplate_removed += 1;
    }
    // The summary; its content's first paragraphs when it is absent or only boilerplate.
    let summary = from_summary
        .map(|p| p.paragraphs.join(" "))
        .filter(|s| !s.is_empty())
        .or_else(|| {
            from_content.map(|p| {
                let mut text = String::new();
                for para in p.paragraphs {
                    if text.chars().count() > 600 {
                        break;
                    }
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(&para);
                }
                text
            })
        })
        .unwrap_or_default();
    let mut title = raw
        .title
        .as_ref()
        .map(|(t, html)| clean_title(t, *html))
        .unwrap_or_default();
    let mut title_derived = false;
    if title.is_empty() {
        title = crate::text::derived_title(&summary)
            .ok_or_else(|| format!("{link}: no title and no text to make one from"))?;
        title_derived = true;
    }
    let mut categories: Vec<String> = Vec::new();
    for c in &raw.categories {
        let name = clean_line(c);
        if !name.is_empty() && !categories.iter().any(|x| x.eq_ignore_ascii_case(&name)) {
            categories.push(name);
        }
    }
    let link_url = Url::parse(&link).ok();
    let html_base = raw
        .content_base
        .as_deref()
        .and_then(|b| resolve(b, link_url.as_ref()))
        .and_then(|b| Url::parse(&b).ok())
        .or_else(|| link_url.clone());
    let (image, image_size) = raw
        .images
        .iter()
        .filter_map(|(u, size)| Some((resolve(u, link_url.as_ref())?, *size)))
        .find(|(u, size)| images::acceptable(u, *size))
        .or_else(|| {
            [&raw.summary_html, &raw.content_html]
                .into_iter()
                .flatten()
                .find_map(|html| images::first_in_html(html, html_base.as_ref()))
        })
        .map(|(u, s)| (Some(u), s))
        .unwrap_or((None, None));
    let guid = if raw.id.is_empty() {
        link.clone()
    } else {
        raw.id.clone()
    };
    Ok(FeedItem {
        guid,
        link,
        url,
        title,
        title_derived,
        summary,
        categories,
        image,
        image_size,
        published: raw.published,
        comments: raw.comments,
    })
}

/// Items of one feed whose links differ only by their fragment are different
/// posts (`23.html#a100620`, `23.html#a070643`): they keep the fragment in
/// their canonical URL, so they are not folded into one.
fn keep_distinguishing_fragments(items: &mut [FeedItem]) {
    use std::collections::HashMap;
    let mut fragments: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for i in items.iter() {
        let fragment = Url::parse(&i.link)
            .ok()
            .and_then(|u| u.fragment().map(str::to_string))
            .unwrap_or_default();
        fragments.entry(i.url.clone()).or_default().insert(fragment);
    }
    for i in items.iter_mut() {
        if fragments.get(&i.url).is_some_and(|f| f.len() > 1) {
            if let Some(with) = canonical_url_with_fragment(&i.link) {
                i.url = with;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_url_folds_variants() {
        let want = Some("https://example.com/a/story".to_string());
        for link in [
            "https://example.com/a/story",
            "http://www.example.com/a/story/",
            "https://m.example.com/a/story?utm_source=x&utm_medium=y",
            "https://EXAMPLE.com:443/a/story?fbclid=abc#comments",
        ] {
            assert_eq!(canonical_url(link), want, "{link}");
        }
        assert_eq!(
            canonical_url("https://example.com/?p=2&utm_campaign=z&a=1").as_deref(),
            Some("https://example.com/?a=1&p=2")
        );
        assert_eq!(
            canonical_url("https://example.com/").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(canonical_url("mailto:a@example.com"), None);
        // Found by the property tests: folding must be idempotent.
        assert_eq!(
            canonical_url("http://www.m.test").as_deref(),
            Some("https://m.test")
        );
        assert_eq!(
            canonical_url("https://m.test").as_deref(),
            Some("https://m.test")
        );
        assert_eq!(canonical_url("not a url"), None);
    }

    #[test]
    fn parses_rss_atom_and_json_feed() {
        let rss = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><title>One &amp; two</title><link>https://ex.com/1?utm_source=rss</link><guid>g1</guid>
<description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description><category>Hot</category>
<pubDate>Mon, 02 Feb 2026 10:00:00 +0500</pubDate></item>
<item><title>No link</title></item></channel></rss>"#;
        let f = parse(rss, None).unwrap();
        assert_eq!(f.items.len(), 1);
        assert_eq!(f.skipped.len(), 1);
        let i = &f.items[0];
        assert_eq!(i.title, "One & two");
        assert_eq!(i.url, "https://ex.com/1");
        assert_eq!(i.summary, "Hello world");
        assert_eq!(i.categories, vec!["Hot"]);
        assert_eq!(
            i.published.unwrap().to_rfc3339(),
            "2026-02-02T05:00:00+00:00"
        );

        let atom = br#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>x</id><updated>2026-02-03T00:00:00Z</updated>
<entry><title type="html">&lt;em&gt;Atom&lt;/em&gt; story</title><id>urn:1</id><link href="/rel/path/"/><updated>2026-02-03T00:00:00Z</updated></entry></feed>"#;
        let f = parse(atom, Some("https://www.site.example/feed.xml")).unwrap();
        assert_eq!(f.items[0].title, "Atom story");
        assert_eq!(f.items[0].url, "https://site.example/rel/path");

        let json = br#"{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[{"id":"1","url":"https://j.example/x","title":"Json story","summary":"S","date_published":"2026-02-04T00:00:00Z","tags":["Fintech"]}]}"#;
        let f = parse(json, None).unwrap();
        assert_eq!(f.items[0].title, "Json story");
        assert_eq!(f.items[0].categories, vec!["Fintech"]);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse(b"<html><body>hi</body></html>", None),
            Err(FeedError::Malformed(_))
        ));
    }
}
