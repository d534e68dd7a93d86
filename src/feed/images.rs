//! Which picture leads a story. In: the images a feed names for an item
//! (media:thumbnail, media:content, enclosures, iTunes) and the item's HTML.
//! Out: one http(s) image URL with its size when known, or none. Never a video,
//! a player page, a tracking pixel, an emoji, an avatar or a share button.

use url::Url;

/// Hosts and paths that serve players or videos, not pictures.
const NOT_PICTURES: &[&str] = &[
    "player.vimeo.com",
    "youtube.com/embed",
    "youtube-nocookie.com",
    "/embed/",
    "/player/",
    "/video/",
    ".mp4",
    ".m4v",
    ".mov",
    ".webm",
    ".mp3",
    ".m4a",
];

/// Words in an image's address or class that say it is not the story's picture.
const NOT_LEAD: &[&str] = &[
    "pixel",
    "tracking",
    "tracker",
    "beacon",
    "/~r/",
    "/~ff/",
    "feedburner",
    "emoji",
    "smiley",
    "wp-smiley",
    "gravatar",
    "avatar",
    "share",
    "button",
    "badge",
    "icon",
    "spacer",
    "blank.gif",
    "stats.wordpress",
    "feeds.feedburner",
    "counter",
    "1x1",
];

/// Whether a URL's path ends like a picture.
pub(super) fn looks_like_image_url(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Whether an image the feed names may lead: http(s), not a player or video,
/// and (when its size is known) at least 200 px wide.
pub(super) fn acceptable(url: &str, size: Option<(u32, u32)>) -> bool {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !NOT_PICTURES.iter().any(|p| lower.contains(p))
        && size.is_none_or(|(w, _)| w >= 200)
}

/// The first `<img>` in an item's HTML that can lead a story: not a tracking
/// pixel, an emoji, an avatar or a share button, and at least 200 px wide when
/// its size is given. Relative sources resolve against the item's link.
pub(super) fn first_in_html(
    html: &str,
    base: Option<&Url>,
) -> Option<(String, Option<(u32, u32)>)> {
    let doc = scraper::Html::parse_fragment(html);
    let img = scraper::Selector::parse("img").expect("static selector");
    for e in doc.select(&img) {
        let attr = |name: &str| e.value().attr(name).map(str::trim);
        let Some(src) = attr("src").filter(|s| !s.is_empty() && !s.starts_with("data:")) else {
            continue;
        };
        let url = match (Url::parse(src), base) {
            (Ok(u), _) => u,
            (Err(_), Some(b)) => match b.join(src) {
                Ok(u) => u,
                Err(_) => continue,
            },
            _ => continue,
        };
        let text = format!("{} {}", url.as_str(), attr("class").unwrap_or("")).to_ascii_lowercase();
        if NOT_LEAD.iter().any(|w| text.contains(w)) {
            continue;
        }
        let number =
            |name: &str| attr(name).and_then(|v| v.trim_end_matches("px").parse::<u32>().ok());
        let (w, h) = (number("width"), number("height"));
        if w.is_some_and(|w| w < 200) || h.is_some_and(|h| h < 100) {
            continue;
        }
        if acceptable(url.as_str(), None) {
            return Some((url.to_string(), w.zip(h)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_real_picture_in_the_html_leads() {
        let html = r#"<p><img src="https://feeds.feedburner.com/~r/x/~4/abc" width="1" height="1">
            <img class="wp-smiley" src="https://s.w.org/images/core/emoji/72x72/1f600.png">
            <img src="/avatar/me.png" width="48" height="48">
            <img src="/2024/comic.png" width="600" height="400" alt="A comic"></p>"#;
        let base = Url::parse("https://comic.example/post/1").unwrap();
        assert_eq!(
            first_in_html(html, Some(&base)),
            Some((
                "https://comic.example/2024/comic.png".into(),
                Some((600, 400))
            ))
        );
        assert_eq!(first_in_html("<p>no picture</p>", Some(&base)), None);
    }

    #[test]
    fn players_and_videos_never_lead() {
        assert!(!acceptable("https://player.vimeo.com/video/123", None));
        assert!(!acceptable("https://cdn.example/clip.mp4", None));
        assert!(!acceptable(
            "https://cdn.example/tiny.jpg",
            Some((100, 100))
        ));
        assert!(acceptable(
            "https://cdn.example/photo.jpg",
            Some((1200, 800))
        ));
    }
}
