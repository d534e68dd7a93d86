//! What feed-rs leaves out of its model but real feeds carry: FeedBurner's
//! `feedburner:origLink` (the article's own address behind a feedproxy link) and
//! comment counts (`slash:comments`, `thr:total`). In: the XML document's bytes.
//! Out: one [`Extras`] per `<item>`/`<entry>`, in document order, which is the
//! order of feed-rs's entries.

use quick_xml::events::Event;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Extras {
    pub orig_link: Option<String>,
    pub comments: Option<u64>,
    /// The item has a `<link>` with nothing in it (`href=""`, or an empty RSS
    /// `<link/>`): feed-rs resolves that to the feed's own URL, which is no
    /// item's link.
    pub empty_link: bool,
    /// How many `<link>`s of the item have something in them.
    pub nonempty_links: usize,
    /// `xml:base` on the item's content or summary: what its relative image
    /// sources resolve against.
    pub content_base: Option<String>,
}

/// Reads the extras of every item; an unreadable document gives none.
pub(super) fn scan(bytes: &[u8]) -> Vec<Extras> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut out: Vec<Extras> = Vec::new();
    let mut in_item = 0usize;
    let mut field: Option<&'static str> = None;
    // A value arrives in pieces: text, entity references, CDATA.
    let mut value = String::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Empty(e)) => {
                let name = e.name();
                let local = name.local_name();
                if in_item == 0 && (local.as_ref() == b"item" || local.as_ref() == b"entry") {
                    // An empty item is still an item: keep the count in step.
                    out.push(Extras::default());
                } else if in_item > 0 && local.as_ref() == b"link" {
                    let href = e.try_get_attribute("href").ok().flatten();
                    let empty = href.is_none_or(|h| h.value.iter().all(u8::is_ascii_whitespace));
                    count_link(out.last_mut(), empty);
                }
            }
            Ok(Event::Start(e)) => {
                let name = e.name();
                let local = name.local_name();
                let local = local.as_ref();
                let prefix = name
                    .prefix()
                    .map(|p| p.as_ref().to_vec())
                    .unwrap_or_default();
                if local == b"item" || local == b"entry" {
                    in_item += 1;
                    if in_item == 1 {
                        out.push(Extras::default());
                    }
                } else if in_item > 0 {
                    if matches!(local, b"content" | b"summary" | b"description" | b"encoded") {
                        if let Ok(Some(base)) = e.try_get_attribute("xml:base") {
                            if let Some(last) = out.last_mut() {
                                last.content_base =
                                    Some(String::from_utf8_lossy(&base.value).trim().to_string());
                            }
                        }
                    }
                    let href = e.try_get_attribute("href").ok().flatten();
                    field = match (prefix.as_slice(), local) {
                        (b"feedburner", b"origLink") => Some("orig"),
                        (b"slash", b"comments") | (b"thr", b"total") => Some("comments"),
                        (_, b"link") if href.is_some() => {
                            let empty =
                                href.is_some_and(|h| h.value.iter().all(u8::is_ascii_whitespace));
                            count_link(out.last_mut(), empty);
                            None
                        }
                        ([], b"link") => Some("link"),
                        _ => None,
                    };
                    value.clear();
                }
            }
            Ok(Event::Text(t)) if field.is_some() => {
                value.push_str(&String::from_utf8_lossy(&t));
            }
            Ok(Event::CData(c)) if field.is_some() => {
                value.push_str(&String::from_utf8_lossy(&c));
            }
            Ok(Event::GeneralRef(r)) if field.is_some() => {
                let entity = format!("&{};", String::from_utf8_lossy(&r));
                value.push_str(&html_escape::decode_html_entities(&entity));
            }
            Ok(Event::End(e)) => {
                let name = e.name();
                let local = name.local_name();
                if (local.as_ref() == b"item" || local.as_ref() == b"entry") && in_item > 0 {
                    in_item -= 1;
                }
                record(field.take(), out.last_mut(), &value);
                value.clear();
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    out
}

/// Notes one `<link>` of an item, empty or not.
fn count_link(item: Option<&mut Extras>, empty: bool) {
    if let Some(item) = item {
        if empty {
            item.empty_link = true;
        } else {
            item.nonempty_links += 1;
        }
    }
}

fn record(field: Option<&str>, item: Option<&mut Extras>, value: &str) {
    let (Some(field), Some(item)) = (field, item) else {
        return;
    };
    let value = value.trim();
    match field {
        "orig" => item.orig_link = Some(value.to_string()).filter(|v| !v.is_empty()),
        "link" => count_link(Some(item), value.is_empty()),
        _ => item.comments = value.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn orig_links_and_comment_counts_by_item() {
        let xml = br#"<rss xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0" xmlns:slash="http://purl.org/rss/1.0/modules/slash/"><channel>
<item><link>http://feedproxy.google.com/~r/x/1</link><feedburner:origLink>https://x.example/a?b=1&amp;c=2</feedburner:origLink><slash:comments>12</slash:comments></item>
<item><link>https://x.example/b</link></item></channel></rss>"#;
        let extras = super::scan(xml);
        assert_eq!(extras.len(), 2);
        assert_eq!(
            extras[0].orig_link.as_deref(),
            Some("https://x.example/a?b=1&c=2")
        );
        assert_eq!(extras[0].comments, Some(12));
        assert_eq!(extras[1].orig_link, None);
        assert_eq!(extras[1].comments, None);
        assert_eq!((extras[1].empty_link, extras[1].nonempty_links), (false, 1));
    }
}
