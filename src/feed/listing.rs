//! A site's own lists ("Hot this week", "Most read") on an HTML page. In: the
//! page, a CSS selector (the `scraper` crate) and the page's URL. Out: the
//! canonical URLs of the stories it links to, top first, each once.

use url::Url;

use super::canonical_url;

/// The stories linked under `selector` in `html`, in page order. The selector
/// may name the links themselves or blocks that hold them.
pub fn listed_links(html: &str, selector: &str, page: Option<&Url>) -> Result<Vec<String>, String> {
    let selector =
        scraper::Selector::parse(selector).map_err(|e| format!("selector {selector:?}: {e}"))?;
    let links = scraper::Selector::parse("a[href]").expect("static selector");
    let doc = scraper::Html::parse_document(html);
    let mut out: Vec<String> = Vec::new();
    for element in doc.select(&selector) {
        let anchors: Vec<scraper::ElementRef> = if element.value().name() == "a" {
            vec![element]
        } else {
            element.select(&links).collect()
        };
        for a in anchors {
            let Some(href) = a.value().attr("href") else {
                continue;
            };
            let absolute = match (Url::parse(href.trim()), page) {
                (Ok(u), _) => u,
                (Err(_), Some(base)) => match base.join(href.trim()) {
                    Ok(u) => u,
                    Err(_) => continue,
                },
                _ => continue,
            };
            if let Some(url) = canonical_url(absolute.as_str()) {
                // A link to the page itself or the site's home is navigation.
                let is_page = page.and_then(|p| canonical_url(p.as_str())) == Some(url.clone());
                if !is_page && !out.contains(&url) {
                    out.push(url);
                }
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
    }
}
