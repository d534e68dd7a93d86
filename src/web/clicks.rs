//! The counted story link, `/c/<id>`: verifies the signed id, counts the click
//! for that story in that issue, and answers `302` to the story's own link. The
//! id names an issue and a position in it, so the redirect only ever leads to a
//! link the issue holds (no open redirect); a tampered id gets the generic bad
//! link page and counts nothing.
//!
//! Mail security scanners open every link of a message as it arrives. A click is
//! counted as automated, apart from readers' clicks, when it is a HEAD request,
//! when its User-Agent is empty or names a known scanner, crawler, link previewer
//! or HTTP library ([`is_automated_agent`]), or when one copy's links to
//! [`BURST_STORIES`] different stories are opened within [`BURST`] (the earlier
//! clicks of that burst move to automated too).

use super::*;
use crate::store::{Click, ClickKind, ClickOutcome, ClickRules};

/// Different stories of one copy opened within [`BURST`]: a scanner.
pub const BURST_STORIES: usize = 3;
/// See [`BURST_STORIES`].
pub const BURST: std::time::Duration = std::time::Duration::from_secs(5);

/// Words in a User-Agent (compared in lower case) that mean no person clicked:
/// scanners of mail gateways, crawlers, link previews, HTTP libraries.
const AUTOMATED_AGENTS: &[&str] = &[
    "bot",
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

/// Whether a User-Agent is a program's rather than a reader's browser or mail app.
pub fn is_automated_agent(agent: Option<&str>) -> bool {
    let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let agent = agent.to_ascii_lowercase();
    AUTOMATED_AGENTS.iter().any(|word| agent.contains(word))
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
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let kind = if method == axum::http::Method::HEAD || is_automated_agent(agent) {
        ClickKind::Automated
    } else {
        ClickKind::Reader
    };
    let analytics = &state.config.analytics;
    let subscriber = copy
        .strip_prefix('s')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|_| analytics.per_subscriber);
    let rules = ClickRules {
        window: analytics.window,
        burst_stories: BURST_STORIES,
        burst: chrono::Duration::from_std(BURST).expect("a few seconds"),
    };
    let copy = copy.to_string();
    let at = state.now();
    let outcome = state
        .db(move |s| {
            let Some(issue_id) = s.issue_id(&week.to_string())? else {
                return Ok(ClickOutcome::NoSuchStory);
            };
            let click = Click {
                issue_id,
                position,
                copy: &copy,
                subscriber,
                kind,
                at,
            };
            Ok(s.record_click(&click, &rules)?)
        })
        .await;
    let link = match outcome {
        Ok(ClickOutcome::Counted { link, .. }) => link,
        Ok(ClickOutcome::NoSuchStory) => return state.bad_link(),
        Err(r) => return r,
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
        ] {
            assert!(is_automated_agent(agent), "{agent:?}");
        }
        for agent in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
        ] {
            assert!(!is_automated_agent(Some(agent)), "{agent}");
        }
    }
}
