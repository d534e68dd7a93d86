//! The counted story link, `/c/<id>`: verifies the signed id, counts the click
//! for that story in that issue, and answers `302` to the story's own link. The
//! id names an issue and a position in it, so the redirect only ever leads to a
//! link the issue holds (no open redirect); a tampered id gets the generic bad
//! link page and counts nothing. A click that cannot be counted (the database
//! busy or failing) still leads to its story.
//!
//! Mail security scanners open every link of a message as it arrives. A click is
//! counted as automated, apart from readers' clicks, when it is a HEAD request,
//! when its User-Agent is empty or names a known scanner, crawler, link previewer
//! or HTTP library ([`is_automated_agent`]), or when one copy's links to
//! [`BURST_STORIES`] different stories are opened within [`BURST`] (the earlier
//! clicks of that burst move to automated too). Bursts are told in memory, for a
//! few seconds: the database keeps no click times, which could tie a copy to the
//! delivery it followed.

use std::collections::HashMap;

use super::*;
use crate::store::{Click, ClickKind, ClickOutcome};

/// Different stories of one copy opened within [`BURST`]: a scanner.
pub const BURST_STORIES: usize = 3;
/// See [`BURST_STORIES`].
pub const BURST: std::time::Duration = std::time::Duration::from_secs(5);

/// Words in a User-Agent (compared in lower case) that mean no person clicked:
/// scanners of mail gateways, crawlers, link previews, HTTP libraries.
pub const AUTOMATED_AGENTS: &[&str] = &[
    "crawl",
    "spider",
    "scan",
    "preview",
    "python",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios",
    "node-fetch",
    "headless",
    "phantomjs",
    "barracuda",
    "proofpoint",
    "mimecast",
    "safelinks",
    "symantec",
    "trendmicro",
    "forcepoint",
    "fortinet",
    "sophos",
    "ironport",
    "msoffice",
    "microsoft office existence discovery",
    "facebookexternalhit",
    "whatsapp",
    "slack",
    "skypeuripreview",
    "validator",
    "monitor",
];

/// Whether a User-Agent is a program's rather than a reader's browser or mail
/// app: empty, one of [`AUTOMATED_AGENTS`], or a word ending in "bot"
/// (Googlebot/2.1, bingbot, AhrefsBot; not a phone named CUBOT X30).
pub fn is_automated_agent(agent: Option<&str>) -> bool {
    let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let agent = agent.to_ascii_lowercase();
    AUTOMATED_AGENTS.iter().any(|word| agent.contains(word))
        || agent
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .any(|word| word.ends_with("bot") && word.len() > 3 && word != "cubot")
}

/// Readers' clicks of the last few seconds, per copy, in memory only.
/// A reader's recent click: its story, when, and whether it was moved to
/// automated already.
type RecentClick = (u32, DateTime<Utc>, bool);

#[derive(Default)]
pub(super) struct Bursts {
    /// By (week, copy).
    recent: HashMap<(String, String), Vec<RecentClick>>,
}

impl Bursts {
    /// Notes a reader's click; when it completes a burst, it is automated, and
    /// the earlier clicks of the burst still counted as a reader's are listed
    /// (one position each) to move to automated.
    fn note(
        &mut self,
        week: &str,
        copy: &str,
        position: u32,
        at: DateTime<Utc>,
    ) -> (bool, Vec<u32>) {
        let burst = chrono::Duration::from_std(BURST).expect("a few seconds");
        if self.recent.len() > 100_000 {
            self.recent
                .retain(|_, clicks| clicks.iter().any(|c| (at - c.1).abs() <= burst));
        }
        let clicks = self
            .recent
            .entry((week.to_string(), copy.to_string()))
            .or_default();
        clicks.retain(|c| (at - c.1).abs() <= burst);
        clicks.push((position, at, false));
        let mut stories: Vec<u32> = clicks.iter().map(|c| c.0).collect();
        stories.sort_unstable();
        stories.dedup();
        if stories.len() < BURST_STORIES {
            return (false, Vec::new());
        }
        let last = clicks.len() - 1;
        let taken_back = clicks[..last]
            .iter()
            .filter(|c| !c.2)
            .map(|c| c.0)
            .collect();
        for c in clicks.iter_mut() {
            c.2 = true;
        }
        (true, taken_back)
    }
}

pub(super) async fn click(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    let Some((week, position, copy)) = state.signer.verify_click(&id) else {
        return state.bad_link();
    };
    let Ok(week) = week.parse::<IsoWeek>() else {
        return state.bad_link();
    };
    let week = week.to_string();
    let at = state.now();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let (mut kind, mut taken_back) = (ClickKind::Reader, Vec::new());
    if method == axum::http::Method::HEAD || is_automated_agent(agent) {
        kind = ClickKind::Automated;
    } else {
        let (burst, earlier) = state
            .bursts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(&week, copy, position, at);
        if burst {
            kind = ClickKind::Automated;
            taken_back = earlier;
        }
    }
    let analytics = &state.config.analytics;
    let named = copy.strip_prefix('s').and_then(|n| n.parse::<i64>().ok());
    let subscriber = named.filter(|_| analytics.per_subscriber);
    // A link that names its subscriber (sent with per_subscriber on), clicked
    // now that it is off: its copy is not kept even as a hash, which anyone
    // could recompute from subscriber ids; the click counts, not as unique.
    let copy = match (named, subscriber) {
        (Some(_), None) => None,
        _ => Some(copy.to_string()),
    };
    let window = analytics.window;
    let counted = {
        let week = week.clone();
        state
            .db(move |s| {
                let Some(issue_id) = s.issue_id(&week)? else {
                    return Ok(ClickOutcome::NoSuchStory);
                };
                let click = Click {
                    issue_id,
                    position,
                    copy: copy.as_deref(),
                    subscriber,
                    kind,
                    taken_back: &taken_back,
                    at,
                };
                Ok(s.record_click(&click, window)?)
            })
            .await
    };
    let link = match counted {
        Ok(ClickOutcome::Counted { link }) => link,
        Ok(ClickOutcome::NoSuchStory) => return state.bad_link(),
        // Not counted (logged already): the reader still gets the story.
        Err(error_page) => match state
            .db(move |s| Ok(s.issue_story_link(&week, position)?))
            .await
        {
            Ok(Some(link)) => link,
            Ok(None) => return state.bad_link(),
            Err(_) => return error_page,
        },
    };
    // Only ever to an http(s) address, written in ASCII as a header needs.
    match url::Url::parse(&link) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.as_str().to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        _ => state.bad_link(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_libraries_and_silence_are_automated_browsers_are_not() {
        for agent in [
            None,
            Some(""),
            Some("Mozilla/5.0 (compatible; Googlebot/2.1)"),
            Some("python-requests/2.31"),
            Some("curl/8.5.0"),
            Some("Mozilla/5.0 (Windows NT 10.0) HeadlessChrome/120.0"),
            Some("Barracuda Sentinel (EE)"),
            Some("Microsoft Office Existence Discovery"),
            Some("facebookexternalhit/1.1"),
            Some("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
            Some("Mozilla/5.0 (compatible; AhrefsBot/7.0)"),
        ] {
            assert!(is_automated_agent(agent), "{agent:?}");
        }
        for agent in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
        ] {
            assert!(!is_automated_agent(Some(agent)), "{agent}");
        }
    }
}

#[cfg(test)]
mod burst_tests {
    use super::*;

    #[test]
    fn three_stories_of_one_copy_within_five_seconds_are_a_burst() {
        let t0: DateTime<Utc> = "2026-02-12T09:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::milliseconds(n);
        let mut b = Bursts::default();
        assert_eq!(b.note("W", "a", 0, s(0)), (false, vec![]));
        // The same story again is no burst.
        assert_eq!(b.note("W", "a", 0, s(100)), (false, vec![]));
        assert_eq!(b.note("W", "a", 1, s(200)), (false, vec![]));
        // The third story: this click and the earlier three are the scanner's.
        assert_eq!(b.note("W", "a", 2, s(300)), (true, vec![0, 0, 1]));
        // Later clicks within the burst: automated, nothing more to take back.
        assert_eq!(b.note("W", "a", 3, s(400)), (true, vec![]));
        // Another copy is apart; so is a reader of this one 5 s later.
        assert_eq!(b.note("W", "b", 1, s(500)), (false, vec![]));
        assert_eq!(b.note("W", "a", 4, s(5_401)), (false, vec![]));
        // Exactly five seconds apart still counts as the same burst.
        let mut b = Bursts::default();
        b.note("W", "c", 0, s(0));
        b.note("W", "c", 1, s(2_500));
        assert_eq!(b.note("W", "c", 2, s(5_000)), (true, vec![0, 1]));
    }
}
