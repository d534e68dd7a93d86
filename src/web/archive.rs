//! The public archive: every issue that went out, as a page, and its Atom feed.
//! In: a week. Out: the issue as a subscriber read it, personal links removed.

use super::*;

/// Weeks whose issue has gone out to at least one subscriber, newest first.
pub(super) fn sent_issues(store: &Store) -> anyhow::Result<Vec<(String, String)>> {
    Ok(store.sent_issues()?)
}

pub(super) async fn archive(State(state): State<Arc<AppState>>) -> Response {
    let issues = match state.db(|s| sent_issues(s)).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let n = &state.config.newsletter;
    state.respond(
        StatusCode::OK,
        &n.name,
        html! {
            div class="card" {
                form method="post" action=(state.href("subscribe")) {
                    label for="email" { "Get the week's top stories by email, every week." }
                    input type="email" id="email" name="email" required placeholder="you@example.com" autocomplete="email";
                    input type="text" name="name" placeholder="Your name (optional)" autocomplete="name";
                    input type="submit" value="Subscribe";
                }
            }
            div class="card" {
                h2 style="margin-top:0" { "Past issues" }
                @if issues.is_empty() {
                    p class="muted" { "None yet." }
                }
                ul {
                    @for (week, subject) in &issues {
                        li { a href={(state.href("issues/")) (week)} { (subject) } " " span class="muted" { (week) } }
                    }
                }
                p class="muted" { a href=(state.href("feed.xml")) { "Atom feed" } }
            }
            p class="muted" { (n.postal_address) }
        },
    )
}

/// An issue as sent, with the personal parts made general and the stories'
/// own links (never counted ones).
pub(super) fn public_html(issue: &render::Issue, base: &str) -> String {
    render::public_copy(&issue.html, base, &issue.links(), true)
}

pub(super) async fn issue_page(
    State(state): State<Arc<AppState>>,
    Path(week): Path<String>,
) -> Response {
    let Ok(week) = week.parse::<IsoWeek>() else {
        return state.respond(
            StatusCode::NOT_FOUND,
            "No such issue",
            html! { p { a href=(state.href("")) { "All issues" } } },
        );
    };
    let sent = match state
        .db(move |s| Ok(sent_issues(s)?.iter().any(|(w, _)| *w == week.to_string())))
        .await
    {
        Ok(sent) => sent,
        Err(r) => return r,
    };
    let built = digest::read_issue(&state.config.week_dir(&week))
        .ok()
        .flatten();
    match (sent, built) {
        (true, Some((issue, _))) => Html(public_html(
            &issue,
            state.config.newsletter.base_url.as_str(),
        ))
        .into_response(),
        _ => state.respond(
            StatusCode::NOT_FOUND,
            "No such issue",
            html! { p { a href=(state.href("")) { "All issues" } } },
        ),
    }
}

pub(super) async fn feed(State(state): State<Arc<AppState>>) -> Response {
    use atom_syndication::{Entry, Feed, Link, Text};
    let issues = match state.db(|s| sent_issues(s)).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let n = &state.config.newsletter;
    let base = n.base_url.as_str();
    let tz = n.timezone;
    let link = |href: String, rel: &str| Link {
        href,
        rel: rel.into(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    let mut newest = None;
    for (week, subject) in issues {
        let Ok(w) = week.parse::<IsoWeek>() else {
            continue;
        };
        let updated = w.bounds(tz).1.fixed_offset();
        newest = newest.max(Some(updated));
        entries.push(Entry {
            id: format!("{base}issues/{week}"),
            title: Text::plain(subject),
            updated,
            links: vec![link(format!("{base}issues/{week}"), "alternate")],
            ..Default::default()
        });
    }
    let feed = Feed {
        id: base.to_string(),
        title: Text::plain(n.name.clone()),
        updated: newest.unwrap_or_else(|| DateTime::<Utc>::UNIX_EPOCH.fixed_offset()),
        links: vec![
            link(base.to_string(), "alternate"),
            link(format!("{base}feed.xml"), "self"),
        ],
        entries,
        ..Default::default()
    };
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        feed.to_string(),
    )
        .into_response()
}
