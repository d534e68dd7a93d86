//! The editor's preview: the exact issue before it goes out, each story's score
//! and reasons. In: a week, and the admin token or a loopback client. Out: pages.

use super::*;

/// Admin routes: from this machine only (not through an undeclared proxy),
/// unless `[server] admin_token` is set, and then only with it (from anywhere),
/// compared in constant time.
pub fn admin_allowed(
    client: client::Client,
    admin_token: Option<&str>,
    presented: Option<&str>,
) -> bool {
    match admin_token {
        Some(expected) => {
            presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
        }
        None => client.is_local(),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct PreviewQuery {
    token: Option<String>,
    width: Option<u32>,
    scheme: Option<String>,
}

pub(super) fn presented_token<'a>(q: &'a PreviewQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    q.token.as_deref().or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

/// `None` when the request may see admin routes, else the refusal to send.
pub(super) fn refuse_non_admin(
    state: &AppState,
    peer: SocketAddr,
    q: &PreviewQuery,
    headers: &HeaderMap,
) -> Option<Response> {
    let expected = state.config.server.admin_token.as_ref().map(|t| t.expose());
    if admin_allowed(
        state.client(peer, headers),
        expected,
        presented_token(q, headers),
    ) {
        return None;
    }
    Some(state.respond(
        StatusCode::FORBIDDEN,
        "Forbidden",
        html! { p { "The preview is for the editors." } },
    ))
}

/// What the preview shows: the issue as it would go out now, re-rendered from
/// the stories and `issue.toml` (or, once a send has begun, as built).
pub(super) struct PreviewData {
    week: IsoWeek,
    issue: render::Issue,
    candidates: Vec<Candidate>,
    sent_size: usize,
    frozen: bool,
}

pub(super) fn preview_data(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PreviewData>> {
    let frozen = app::send_started(store, week)?;
    let (issue, selection) = if frozen {
        match digest::read_issue(&config.week_dir(&week))? {
            Some((issue, record)) => (issue, record.selection),
            None => return Ok(None),
        }
    } else {
        let Some(ranked) = app::rank_week(config, store, week, now)? else {
            return Ok(None);
        };
        let fitted = app::render_fitting(config, week, ranked.selection, &ranked.choices)?;
        (fitted.issue, fitted.selection)
    };
    Ok(Some(PreviewData {
        week,
        sent_size: crate::message::sent_size(&issue, config, week),
        issue,
        candidates: selection
            .picks
            .into_iter()
            .chain(selection.others)
            .collect(),
        frozen,
    }))
}

pub(super) async fn preview_now(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<SocketAddr>,
    q: Query<PreviewQuery>,
    headers: HeaderMap,
) -> Response {
    let week = app::pick_week(&state.config, None, state.now());
    preview(state, peer, q, headers, week).await
}

pub(super) async fn preview_week(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<SocketAddr>,
    q: Query<PreviewQuery>,
    headers: HeaderMap,
    Path(week): Path<String>,
) -> Response {
    match week.parse() {
        Ok(week) => preview(state, peer, q, headers, week).await,
        Err(e) => state.respond(
            StatusCode::NOT_FOUND,
            "No such week",
            html! { p { (e.to_string()) } },
        ),
    }
}

pub(super) async fn preview(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
    week: IsoWeek,
) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, peer, &q, &headers) {
        return refusal;
    }
    let config = state.config.clone();
    let now = state.now();
    // What stops the issue from building (a broken issue.toml, with its line;
    // an unknown pin) is the editor's to fix: shown here, not as a server error.
    let data = match state
        .db(move |s| Ok(preview_data(&config, s, week, now).map_err(|e| format!("{e:#}"))))
        .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(why)) => {
            tracing::warn!(%week, "preview: {why}");
            return state.respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{week} cannot be built"),
                html! {
                    div class="card" {
                        p { "The issue cannot be built as it stands:" }
                        pre style="white-space:pre-wrap" { (why) }
                        p class="muted" { "Fix digests/" (week) "/issue.toml and reload." }
                    }
                },
            );
        }
        Err(r) => return r,
    };
    let Some(d) = data else {
        return state.respond(
            StatusCode::OK,
            &format!("Preview of {week}"),
            html! { p { "No stories were published that week: no issue would go out." } },
        );
    };
    let width = if q.width == Some(360) { 360 } else { 800 };
    let dark = q.scheme.as_deref() == Some("dark");
    let token_q = q
        .token
        .as_deref()
        .map(|t| format!("&token={t}"))
        .unwrap_or_default();
    let view = |w: u32, scheme: &str| format!("?width={w}&scheme={scheme}{token_q}");
    let base = state.href("");
    let limit = render::GMAIL_CLIP_BYTES;
    let body = html! {
        p {
            strong { (d.issue.subject) } br;
            span class="muted" { (d.issue.preheader) }
        }
        p {
            "Size as sent: " strong { (d.sent_size / 1024) " KB" } " of Gmail's " (limit / 1024) " KB clipping limit "
            @if d.sent_size > limit { strong style="color:#b91c1c" { "(Gmail will clip it)" } } @else { "(fits)" }
            @if d.frozen { br; span class="muted" { "A send of this issue has begun: this is the issue as built, and it no longer changes." } }
            @else { br; span class="muted" { "Edit digests/" (d.week) "/issue.toml and reload." } }
        }
        p {
            "Width: " a href=(view(360, if dark {"dark"} else {"light"})) { "360 px" } " · " a href=(view(800, if dark {"dark"} else {"light"})) { "800 px" }
            " — Scheme: " a href=(view(width, "light")) { "light" } " · " a href=(view(width, "dark")) { "dark" }
        }
        iframe title="The digest" src={(base) "preview/" (d.week) "/digest.html?x=1" (token_q)}
            style={"width:" (width) "px;max-width:100%;height:900px;border:1px solid #9ca3af;background:#fff;color-scheme:" (if dark {"dark"} else {"light"})} {}
        h2 { "Candidates" }
        div style="overflow-x:auto" {
            table style="border-collapse:collapse;font-size:14px;width:100%" {
                tr { th align="left" { "#" } th align="left" { "Story" } th align="right" { "Score" } th align="left" { "Why" } }
                @for (i, c) in d.candidates.iter().enumerate() {
                    tr style="border-top:1px solid #d8dde4;vertical-align:top" {
                        td { @if c.verdict.is_in() { (i + 1) } @else { "–" } }
                        td { a dir="auto" href=(c.reader_link()) { (c.title) } br; span class="muted" { (c.explain_score(d.week.bounds(state.config.newsletter.timezone).1.min(state.now()))) } }
                        td align="right" { (format!("{:.2}", c.score)) }
                        td { (c.reason) }
                    }
                }
            }
        }
        h2 { "Text part" }
        pre style="white-space:pre-wrap;font-size:13px;background:#fff;color:#1f2937;padding:12px;overflow-x:auto" {
            (render::public_copy(&d.issue.text, state.config.newsletter.base_url.as_str(), false))
        }
    };
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Preview of " (d.week) }
                style { (PreEscaped(page_css(&state.config.theme))) "main{max-width:1100px}" }
            }
            body { main { h1 { "Preview of " (d.week) } (body) } }
        }
    };
    Html(html.into_string()).into_response()
}

pub(super) async fn preview_digest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
    Path(week): Path<String>,
) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, peer, &q, &headers) {
        return refusal;
    }
    let Ok(week) = week.parse::<IsoWeek>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let config = state.config.clone();
    let now = state.now();
    match state.db(move |s| preview_data(&config, s, week, now)).await {
        Ok(Some(d)) => Html(public_html(
            &d.issue.html,
            state.config.newsletter.base_url.as_str(),
        ))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}
