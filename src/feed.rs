//! Feeds: turns RSS 2.0, Atom and JSON Feed documents into [`FeedItem`]s. In: a
//! feed's bytes ([`parse`], pure), or its location ([`fetch`]: HTTP(S) with a
//! timeout, a size cap and conditional GET, or a file). Out: items with a canonical
//! URL, plain-text title and summary, categories, image and date, ready to store.
//! Everything a feed says is untrusted text; it is kept as text here and escaped
//! where it is rendered.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use crate::config::{FeedLocation, FeedSource};
use crate::text::{clean_line, html_to_text};

/// One item of a feed, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// The feed's own id for the item (guid / id), or its link when it has none.
    pub guid: String,
    /// The link as the feed gave it.
    pub link: String,
    /// The canonical form of `link`: see [`canonical_url`].
    pub url: String,
    pub title: String,
    pub summary: String,
    pub categories: Vec<String>,
    pub image: Option<String>,
    /// The image's width and height in pixels, when the feed says.
    pub image_size: Option<(u32, u32)>,
    pub published: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ParsedFeed {
    pub title: Option<String>,
    pub items: Vec<FeedItem>,
    /// Items left out, each with why (no link, no title).
    pub skipped: Vec<String>,
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

/// Query parameters that only track where a click came from; they never change
/// which story a URL names.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid",
    "mc_eid", "_ga", "_gl", "ref_src", "ref_url", "cmpid", "spm", "share", "amp",
];

/// The one URL a story is known by: https, host without `www.`/`m.`, no default
/// port, no fragment, no tracking parameters (`utm_*`, `fbclid`, …), remaining
/// parameters sorted, no trailing slash. `None` when `link` is not an http(s) URL.
pub fn canonical_url(link: &str) -> Option<String> {
    let mut url = Url::parse(link.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let mut host = url.host_str()?.to_ascii_lowercase();
    // `www.` and `m.` name the same site, down to a name that still has a dot.
    while let Some(rest) = host
        .strip_prefix("www.")
        .or_else(|| host.strip_prefix("m."))
    {
        if !rest.contains('.') {
            break;
        }
        host = rest.to_string();
    }
    url.set_host(Some(&host)).ok()?;
    url.set_scheme("https").ok()?;
    if matches!(url.port(), Some(80) | Some(443)) {
        url.set_port(None).ok()?;
    }
    url.set_fragment(None);
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("utm_") && !TRACKING_PARAMS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    if params.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(params);
    }
    let path = url.path().to_string();
    if path.len() > 1 && path.ends_with('/') {
        url.set_path(path.trim_end_matches('/'));
    }
    let mut s = url.to_string();
    if url.path() == "/" && url.query().is_none() {
        s.pop();
    }
    Some(s)
}

/// Parses a feed document. `base` (the feed's own URL) resolves relative links.
pub fn parse(bytes: &[u8], base: Option<&str>) -> Result<ParsedFeed, FeedError> {
    let feed = feed_rs::parser::Builder::new()
        .base_uri(base)
        .sanitize_content(false)
        .build()
        .parse(bytes)
        .map_err(|e| FeedError::Malformed(e.to_string()))?;
    let base_url = base.and_then(|b| Url::parse(b).ok());
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for (n, entry) in feed.entries.into_iter().enumerate() {
        let title = entry.title.as_ref().map(title_text).unwrap_or_default();
        let link = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .or(entry.links.first())
            .map(|l| l.href.clone())
            .or_else(|| entry.id.starts_with("http").then(|| entry.id.clone()));
        let Some(link) = link else {
            skipped.push(format!("item {}: no link", n + 1));
            continue;
        };
        let link = match &base_url {
            Some(b) => b.join(&link).map(|u| u.to_string()).unwrap_or(link),
            None => link,
        };
        let Some(url) = canonical_url(&link) else {
            skipped.push(format!(
                "item {}: link {link:?} is not an http(s) URL",
                n + 1
            ));
            continue;
        };
        if title.is_empty() {
            skipped.push(format!("item {} ({link}): no title", n + 1));
            continue;
        }
        let summary = entry
            .summary
            .as_ref()
            .map(|t| html_to_text(&t.content))
            .filter(|s| !s.is_empty())
            .or_else(|| {
                entry
                    .content
                    .as_ref()
                    .and_then(|c| c.body.as_deref())
                    .map(html_to_text)
            })
            .unwrap_or_default();
        let mut categories: Vec<String> = Vec::new();
        for c in &entry.categories {
            let name = clean_line(c.label.as_deref().unwrap_or(&c.term));
            if !name.is_empty() && !categories.iter().any(|x| x.eq_ignore_ascii_case(&name)) {
                categories.push(name);
            }
        }
        let size = |w: Option<u32>, h: Option<u32>| w.zip(h).filter(|(w, h)| *w > 0 && *h > 0);
        let found = entry
            .media
            .iter()
            .flat_map(|m| {
                m.content
                    .iter()
                    .filter(|c| c.content_type.as_ref().is_none_or(|t| t.ty() == "image"))
                    .filter_map(|c| {
                        c.url
                            .as_ref()
                            .map(|u| (u.to_string(), size(c.width, c.height)))
                    })
                    .chain(
                        m.thumbnails
                            .iter()
                            .map(|t| (t.image.uri.clone(), size(t.image.width, t.image.height))),
                    )
            })
            .find(|(u, _)| u.starts_with("https://") || u.starts_with("http://"));
        let (image, image_size) = match found {
            Some((u, s)) => (Some(u), s),
            None => (None, None),
        };
        let guid = if entry.id.trim().is_empty() {
            link.clone()
        } else {
            entry.id.trim().to_string()
        };
        items.push(FeedItem {
            guid,
            link,
            url,
            title,
            summary,
            categories,
            image,
            image_size,
            published: entry.published.or(entry.updated),
        });
    }
    Ok(ParsedFeed {
        title: feed.title.as_ref().map(title_text),
        items,
        skipped,
    })
}

/// A title as text. Atom says when a title is HTML; otherwise it is text, in which
/// (as WordPress does) entities may still be encoded once more: decode those, keep
/// everything else, `<` included, as the words it is.
fn title_text(t: &feed_rs::model::Text) -> String {
    if t.content_type.subty() == "html" || t.content_type.subty() == "xhtml" {
        html_to_text(&t.content)
    } else {
        clean_line(&html_escape::decode_html_entities(&t.content))
    }
}

/// What a fetch brought back.
#[derive(Debug)]
pub enum Fetched {
    /// The server said 304: nothing changed since the validators we sent.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Conditional-GET validators remembered from the last fetch.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Settings for [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub timeout: Duration,
    pub max_bytes: u64,
}

/// An HTTP client set up for feeds: rustls, the timeout, a user agent.
pub fn http_client(limits: &FetchLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout)
        .user_agent(concat!("gazette/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("the HTTP client's settings are static")
}

/// Reads one feed's bytes, over HTTP(S) or from its file.
pub async fn fetch(
    client: &reqwest::Client,
    source: &FeedSource,
    validators: &Validators,
    limits: &FetchLimits,
) -> Result<Fetched, FeedError> {
    match &source.location {
        FeedLocation::File(path) => read_file(path, limits.max_bytes),
        FeedLocation::Http(url) => fetch_http(client, url, validators, limits.max_bytes).await,
    }
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Fetched, FeedError> {
    let file_err = |error| FeedError::File {
        path: path.display().to_string(),
        error,
    };
    let len = std::fs::metadata(path).map_err(file_err)?.len();
    if len > max_bytes {
        return Err(FeedError::TooLarge(max_bytes));
    }
    let bytes = std::fs::read(path).map_err(file_err)?;
    Ok(Fetched::Body {
        bytes,
        etag: None,
        last_modified: None,
    })
}

async fn fetch_http(
    client: &reqwest::Client,
    url: &Url,
    validators: &Validators,
    max_bytes: u64,
) -> Result<Fetched, FeedError> {
    use reqwest::header;
    let mut request = client.get(url.clone()).header(
        header::ACCEPT,
        "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.8",
    );
    if let Some(etag) = &validators.etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &validators.last_modified {
        request = request.header(header::IF_MODIFIED_SINCE, lm);
    }
    let mut response = request.send().await.map_err(describe_reqwest)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FeedError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(FeedError::TooLarge(max_bytes));
    }
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header_text(header::ETAG);
    let last_modified = header_text(header::LAST_MODIFIED);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_reqwest)? {
        if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(FeedError::TooLarge(max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body {
        bytes,
        etag,
        last_modified,
    })
}

fn describe_reqwest(e: reqwest::Error) -> FeedError {
    use std::error::Error;
    let mut message = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    FeedError::Unreachable(message)
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
