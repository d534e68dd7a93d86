//! JSON Feed, read leniently: what real feeds publish rather than what the spec
//! says. `"version": "http://jsonfeed.org/version/1"` (http), tags as one string,
//! a missing title, numbers where strings belong: read, not refused. In: the
//! document's bytes. Out: the feed's own links and its items, each as a
//! [`RawItem`]; an item that cannot be read is named, the others kept.

use serde_json::Value;

use super::{RawItem, RawLink};

pub(super) struct JsonDocument {
    pub title: Option<String>,
    /// `feed_url`, then `home_page_url`: a base for relative links.
    pub base: Option<String>,
    pub items: Vec<RawItem>,
    pub skipped: Vec<String>,
}

/// Whether `bytes` look like JSON (after a BOM and white space).
pub(super) fn looks_like_json(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()).filter(|s| !s.trim().is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn parse(
    bytes: &[u8],
    date: &dyn Fn(&str) -> Option<chrono::DateTime<chrono::Utc>>,
) -> Result<JsonDocument, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("JSON: {e}"))?;
    let version = doc.get("version").and_then(Value::as_str).unwrap_or("");
    let items = doc.get("items").and_then(Value::as_array);
    if !version.contains("jsonfeed.org/version/") && items.is_none() {
        return Err("JSON, but not a JSON Feed (no version, no items)".into());
    }
    let mut out = JsonDocument {
        title: text(doc.get("title")),
        base: text(doc.get("feed_url")).or_else(|| text(doc.get("home_page_url"))),
        items: Vec::new(),
        skipped: Vec::new(),
    };
    for (n, item) in items.into_iter().flatten().enumerate() {
        if !item.is_object() {
            out.skipped.push(format!("item {}: not an object", n + 1));
            continue;
        }
        let mut links = Vec::new();
        for (key, rel) in [("url", None), ("external_url", Some("related"))] {
            if let Some(href) = text(item.get(key)) {
                links.push(RawLink {
                    href,
                    rel: rel.map(str::to_string),
                });
            }
        }
        let categories = match item.get("tags") {
            Some(Value::String(s)) => s
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            Some(Value::Array(a)) => a.iter().filter_map(|t| text(Some(t))).collect(),
            _ => Vec::new(),
        };
        let mut images = Vec::new();
        for key in ["image", "banner_image"] {
            if let Some(url) = text(item.get(key)) {
                images.push((url, None));
            }
        }
        for a in item
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mime = a.get("mime_type").and_then(Value::as_str).unwrap_or("");
            if let (true, Some(url)) = (mime.starts_with("image/"), text(a.get("url"))) {
                images.push((url, None));
            }
        }
        out.items.push(RawItem {
            id: text(item.get("id")).unwrap_or_default(),
            links,
            orig_link: None,
            title: text(item.get("title")).map(|t| (t, false)),
            // JSON Feed's summary is plain text: its `<` are words.
            summary_html: text(item.get("summary"))
                .map(|t| html_escape::encode_text(&t).into_owned()),
            content_html: text(item.get("content_html")).or_else(|| {
                text(item.get("content_text")).map(|t| html_escape::encode_text(&t).into_owned())
            }),
            categories,
            images,
            published: text(item.get("date_published"))
                .or_else(|| text(item.get("date_modified")))
                .and_then(|d| date(&d)),
            comments: None,
            empty_link: false,
            nonempty_links: 0,
            content_base: None,
        });
    }
    Ok(out)
}
