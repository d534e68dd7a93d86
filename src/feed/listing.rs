//! A site's own lists ("Hot this week", "Most read") on an HTML page. In: the
//! page, a CSS selector (the `scraper` crate) and the page's URL. Out: the
//! canonical URLs of the stories it links to, top first, each once.

use url::Url;

use super::canonical_url;

/// The stories linked under `selector` in `html`, in page order. The selector
/// may name the links themselves, the list's entries, or a block that holds the
/// list: then each entry (`li`, `article`) counts once, by its first link, so a
/// category link beside a headline is not a story. Relative links resolve
/// against the page's `<base href>`, else its own URL.
pub fn listed_links(html: &str, selector: &str, page: Option<&Url>) -> Result<Vec<String>, String> {
    let selector =
        scraper::Selector::parse(selector).map_err(|e| format!("selector {selector:?}: {e}"))?;
    let links = scraper::Selector::parse("a[href]").expect("static selector");
    let entries = scraper::Selector::parse("li, article").expect("static selector");
    let base_tag = scraper::Selector::parse("base[href]").expect("static selector");
    let doc = scraper::Html::parse_document(html);
    let declared = doc
        .select(&base_tag)
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|h| match page {
            Some(p) => p.join(h).ok(),
            None => Url::parse(h).ok(),
        });
    let base = declared.as_ref().or(page);
    let mut anchors: Vec<scraper::ElementRef> = Vec::new();
    for element in doc.select(&selector) {
        let name = element.value().name();
        if name == "a" {
            anchors.push(element);
        } else if name == "li" || name == "article" {
            anchors.extend(element.select(&links).next());
        } else {
            let mut inner: Vec<scraper::ElementRef> = element
                .select(&entries)
                .filter_map(|entry| entry.select(&links).next())
                .collect();
            if inner.is_empty() {
                inner = element.select(&links).collect();
            }
            anchors.extend(inner);
        }
    }
    let own = page.and_then(|p| canonical_url(p.as_str()));
    let mut out: Vec<String> = Vec::new();
    for a in anchors {
        let Some(href) = a.value().attr("href").map(str::trim) else {
            continue;
        };
        let Some(absolute) = super::links::resolve_url(href, base) else {
            continue;
        };
        if let Some(url) = canonical_url(absolute.as_str()) {
            // A link to the page itself is navigation.
            if Some(&url) != own.as_ref() && !out.contains(&url) {
                out.push(url);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_under_the_selector_in_page_order_once() {
        let html = r#"<nav><a href="/">Home</a></nav>
            <aside class="hot"><h3>Hot this week</h3><ol>
              <li><a href="/b/?utm_source=hot">B</a></li>
              <li><a href="https://www.site.example/a">A</a></li>
              <li><a href="/b/">B again</a></li></ol></aside>
            <main><a href="/c">C</a></main>"#;
        let page = url::Url::parse("https://site.example/news/").unwrap();
        assert_eq!(
            super::listed_links(html, "aside.hot", Some(&page)).unwrap(),
            ["https://site.example/b", "https://site.example/a"]
        );
        assert!(super::listed_links(html, "!!", Some(&page)).is_err());
        // A category link beside each headline is not a story; <base> resolves.
        let with_categories = r#"<base href="https://site.example/"><div class="hot"><ul>
              <li><a href="news/one">One</a> in <a href="category/economy">Economy</a></li>
              <li><a href="news/two">Two</a> in <a href="category/economy">Economy</a></li></ul></div>"#;
        assert_eq!(
            super::listed_links(with_categories, ".hot", None).unwrap(),
            [
                "https://site.example/news/one",
                "https://site.example/news/two"
            ]
        );
    }
}
