//! Which picture leads a story. In: the images a feed names for an item
//! (media:thumbnail, media:content, enclosures, iTunes) and the item's HTML.
//! Out: one http(s) image URL with its size when known, or none. Never a video,
//! a player page, a tracking pixel, an emoji, an avatar or a share button.

use url::Url;

/// Hosts and paths that serve players or videos, not pictures (for addresses
/// that do not end like a picture).
const NOT_PICTURES: &[&str] = &[
    "player.vimeo.com",
    "youtube.com/embed",
    "youtube-nocookie.com",
    "/embed/",
    "/player/",
    ".mp4",
    ".m4v",
    ".mov",
    ".webm",
    ".mp3",
    ".m4a",
];

/// Hosts whose images are counters, avatars or tracking, never a story's picture.
const NOT_LEAD_HOSTS: &[&str] = &[
    "feeds.feedburner.com",
    "feedburner.google.com",
    "stats.wordpress.com",
    "pixel.wp.com",
    "gravatar.com",
    "secure.gravatar.com",
    "www.gravatar.com",
    "s.w.org",
];

/// Whole path segments or file names (without extension) that say an image is
/// not the story's: `/emoji/…`, `/avatars/…`, `pixel.gif`, `share-button.png`.
const NOT_LEAD_NAMES: &[&str] = &[
    "emoji",
    "emojis",
    "smilies",
    "avatar",
    "avatars",
    "pixel",
    "spacer",
    "blank",
    "tracking",
    "tracker",
    "beacon",
    "share",
    "share-button",
    "sharing",
    "badge",
    "badges",
    "icon",
    "icons",
    "~r",
    "~ff",
    "1x1",
    "transparent",
    "counter",
];

/// Words in an `<img>`'s class that say the same.
const NOT_LEAD_CLASSES: &[&str] = &["wp-smiley", "emoji", "avatar", "share", "icon", "badge"];

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
    let video = !looks_like_image_url(&lower) && NOT_PICTURES.iter().any(|p| lower.contains(p));
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !video
        && size.is_none_or(|(w, _)| w >= 200)
}

/// Whether an image's address or class names it a pixel, emoji, avatar or button.
fn is_decoration(url: &Url, class: &str) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    if NOT_LEAD_HOSTS.contains(&host.as_str()) {
        return true;
    }
    let decorative_segment = url.path_segments().into_iter().flatten().any(|segment| {
        let segment = segment.to_ascii_lowercase();
        let stem = segment
            .rsplit_once('.')
            .map_or(segment.as_str(), |(s, _)| s);
        NOT_LEAD_NAMES.contains(&segment.as_str()) || NOT_LEAD_NAMES.contains(&stem)
    });
    let class = class.to_ascii_lowercase();
    decorative_segment
        || class.split_whitespace().any(|c| {
            NOT_LEAD_CLASSES
                .iter()
                .any(|w| c == *w || c.starts_with(&format!("{w}-")))
        })
}

/// The first `<img>` in an item's HTML that can lead a story: not a tracking
/// pixel, an emoji, an avatar or a share button, and at least 200 px wide when
/// its size is given. Lazy-loaded sources (`data-src`, `srcset`) count.
/// Relative sources resolve against `base`.
pub(super) fn first_in_html(
    html: &str,
    base: Option<&Url>,
) -> Option<(String, Option<(u32, u32)>)> {
    let doc = scraper::Html::parse_fragment(html);
    let img = scraper::Selector::parse("img").expect("static selector");
    for e in doc.select(&img) {
        let attr = |name: &str| e.value().attr(name).map(str::trim);
        let first_of_srcset = |name: &str| {
            attr(name).and_then(|set| set.split(',').next()?.split_whitespace().next())
        };
        let usable = |s: &&str| !s.is_empty() && !s.starts_with("data:");
        let Some(src) = attr("src")
            .filter(usable)
            .or_else(|| attr("data-src").filter(usable))
            .or_else(|| attr("data-lazy-src").filter(usable))
            .or_else(|| first_of_srcset("srcset").filter(usable))
            .or_else(|| first_of_srcset("data-srcset").filter(usable))
        else {
            continue;
        };
        let Some(url) = super::links::resolve_url(src, base) else {
            continue;
        };
        if is_decoration(&url, attr("class").unwrap_or("")) {
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
