//! The editor's desk: the exact issue before it goes out, each story's score and
//! reasons, and the forms that shape it: pin, unpin, drop, restore and reorder
//! stories; subject, preheader and intro (Markdown, previewed as it is typed);
//! a test copy; approval. In: a week, and the admin token (once, then a cookie)
//! or a loopback client. Out: pages, and changes written to
//! `digests/<week>/issue.toml`, which stays the source of truth (edited in
//! place, comments kept, and still editable by hand).
//!
//! Forms carry a token tied to the browser's desk session (a `SameSite=Strict`
//! cookie), so another site cannot post to them; the admin token is never put in
//! a URL the desk makes.

use super::*;
use crate::digest::Edit;

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

const ADMIN_COOKIE: &str = "gazette_admin";
const SESSION_COOKIE: &str = "gazette_desk";

#[derive(Deserialize, Default)]
pub(super) struct PreviewQuery {
    token: Option<String>,
    width: Option<u32>,
    scheme: Option<String>,
    /// What the last change did, shown once after its redirect; `sig` proves
    /// the desk wrote it.
    done: Option<String>,
    sig: Option<String>,
}

/// A cookie of the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) fn presented_token<'a>(q: &'a PreviewQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    q.token
        .as_deref()
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .or_else(|| cookie(headers, ADMIN_COOKIE))
}

/// Whether the request names this server: base_url's host, or this machine.
/// A page whose domain re-resolves to 127.0.0.1 (DNS rebinding) names its own
/// host, and so never reaches the desk from the editor's browser.
fn host_is_ours(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let ours = state.config.newsletter.base_url.host_str().unwrap_or("");
    name.eq_ignore_ascii_case(ours.trim_start_matches('[').trim_end_matches(']'))
        || name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `None` when the request may see admin routes, else the refusal to send.
pub(super) fn refuse_non_admin(
    state: &AppState,
    peer: SocketAddr,
    q: &PreviewQuery,
    headers: &HeaderMap,
) -> Option<Response> {
    let expected = state.config.server.admin_token.as_ref().map(|t| t.expose());
    if host_is_ours(state, headers)
        && admin_allowed(
            state.client(peer, headers),
            expected,
            presented_token(q, headers),
        )
    {
        return None;
    }
    Some(state.respond(
        StatusCode::FORBIDDEN,
        "Forbidden",
        html! { p { "The preview is for the editors." } },
    ))
}

/// A cookie for the desk's pages only, out of reach of scripts. The desk
/// session is `Strict` (no other site's form carries it); the admin token's is
/// `Lax`, so a link to the desk followed from mail or chat still opens it (its
/// forms need the session's token anyway).
fn set_cookie(state: &AppState, name: &str, value: &str) -> (header::HeaderName, String) {
    let same_site = if name == ADMIN_COOKIE {
        "Lax"
    } else {
        "Strict"
    };
    let secure = if state.config.newsletter.base_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    (
        header::SET_COOKIE,
        format!(
            "{name}={value}; Path={}; HttpOnly; SameSite={same_site}{secure}",
            state.href("")
        ),
    )
}

/// A fresh desk session id.
fn new_session() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the desk shows: the issue as it would go out now, re-rendered from
/// the stories and `issue.toml` (or, once frozen, as built).
pub(super) struct PreviewData {
    week: IsoWeek,
    issue: render::Issue,
    choices: crate::rank::EditorChoices,
    candidates: Vec<Candidate>,
    sent_size: usize,
    status: app::WeekStatus,
    approval: Option<(String, DateTime<Utc>)>,
    weeks: Vec<(IsoWeek, u64, app::WeekStatus)>,
    /// What the approve form vouches for ([`app::fingerprint`]).
    fingerprint: String,
    /// The subject and preheader gazette would choose, shown as placeholders.
    default_subject: String,
    default_preheader: String,
    default_intro: String,
    /// What readers did with it, once it went out.
    report: Option<app::Report>,
}

impl PreviewData {
    /// Approved or being sent: the issue no longer changes.
    fn frozen(&self) -> bool {
        self.status != app::WeekStatus::Building
    }
}

/// The issue as it would go out now: built (when frozen) or re-rendered, with
/// its selection and the editor's choices; `None` for a week without stories.
type PreviewIssue = (
    render::Issue,
    crate::rank::Selection,
    crate::rank::EditorChoices,
    app::WeekStatus,
);

fn preview_issue(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PreviewIssue>> {
    let status = app::week_status(store, week)?;
    if status != app::WeekStatus::Building {
        return Ok(digest::read_issue(&config.week_dir(&week))?
            .map(|(issue, record)| (issue, record.selection, record.editor, status)));
    }
    let Some(ranked) = app::rank_week(config, store, week, now)? else {
        return Ok(None);
    };
    let fitted = app::render_fitting(config, week, ranked.selection, &ranked.choices)?;
    Ok(Some((
        fitted.issue,
        fitted.selection,
        ranked.choices,
        status,
    )))
}

/// Everything the desk shows for `week`.
pub(super) fn preview_data(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PreviewData>> {
    let Some((issue, selection, choices, status)) = preview_issue(config, store, week, now)? else {
        return Ok(None);
    };
    let weeks = app::recent_weeks(config, store, now, 8)?;
    let plain = crate::rank::EditorChoices::default();
    Ok(Some(PreviewData {
        week,
        fingerprint: app::fingerprint(&issue.subject, &selection.picks),
        sent_size: crate::message::sent_size(&issue, config, week)?,
        default_subject: render::subject(&selection, &plain, &config.newsletter),
        default_preheader: render::preheader(&selection, &plain),
        default_intro: render::generated_intro(&selection),
        issue,
        choices,
        candidates: selection
            .picks
            .into_iter()
            .chain(selection.others)
            .collect(),
        approval: store.approval(&week.to_string())?,
        report: match status {
            app::WeekStatus::Sending | app::WeekStatus::Sent => {
                app::report(config, store, week, now)?
            }
            _ => None,
        },
        status,
        weeks,
    }))
}

pub(super) async fn preview_now(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, peer, &q, &headers) {
        return refusal;
    }
    let (config, now) = (state.config.clone(), state.now());
    match state.db(move |s| app::next_week(&config, s, now)).await {
        Ok(week) => keep_token(&state, &q, redirect(&state, week, None)),
        Err(r) => r,
    }
}

/// A token that came in the URL goes into a cookie, so the desk never needs it
/// in an address again (history, logs, Referer).
pub(super) fn keep_token(state: &AppState, q: &PreviewQuery, mut response: Response) -> Response {
    if let Some(token) = q.token.as_deref() {
        let (name, value) = set_cookie(state, ADMIN_COOKIE, token);
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

/// To the desk of `week`, saying `done` (signed, so no link from elsewhere can
/// put words on the desk).
fn redirect(state: &AppState, week: IsoWeek, done: Option<&str>) -> Response {
    let mut to = state.href(&format!("preview/{week}"));
    if let Some(done) = done {
        to += "?";
        to += &url::form_urlencoded::Serializer::new(String::new())
            .append_pair("done", done)
            .append_pair("sig", &state.signer.desk_token(&format!("done:{done}")))
            .finish();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

pub(super) fn no_such_week(state: &AppState, e: crate::week::WeekParseError) -> Response {
    state.respond(
        StatusCode::NOT_FOUND,
        "No such week",
        html! { p { (e.to_string()) } },
    )
}

/// The desk script: the intro's Markdown previewed as it is typed. Allowed by
/// its hash in the page's Content-Security-Policy, and nothing else is.
const DESK_SCRIPT: &str = "const t=document.getElementById('intro'),o=document.getElementById('intro-preview'),f=document.getElementById('words');let w;if(t&&o&&f){t.addEventListener('input',()=>{clearTimeout(w);w=setTimeout(async()=>{const r=await fetch(o.dataset.url,{method:'POST',body:new URLSearchParams({csrf:f.elements.csrf.value,intro:t.value})});if(r.ok){o.innerHTML=await r.text();}},250);});}";

/// The desk's policy: every page's, plus its one script (by hash, computed
/// once) and that script's requests to the desk.
static DESK_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(DESK_SCRIPT));
    format!("{CSP}; script-src 'sha256-{hash}'; connect-src 'self'")
});

pub(super) async fn preview_week(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
    Path(week): Path<String>,
) -> Response {
    let week = match week.parse::<IsoWeek>() {
        Ok(w) => w,
        Err(e) => return no_such_week(&state, e),
    };
    if let Some(refusal) = refuse_non_admin(&state, peer, &q, &headers) {
        return refusal;
    }
    // The token came in the URL: into a cookie, and out of the address bar.
    if q.token.is_some() {
        return keep_token(&state, &q, redirect(&state, week, None));
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
    let session = cookie(&headers, SESSION_COOKIE)
        .filter(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string);
    let fresh = session.is_none();
    let session = session.unwrap_or_else(new_session);
    let csrf = state.signer.desk_token(&session);
    let page = desk_page(&state, &d, &q, &csrf);
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_SECURITY_POLICY, DESK_CSP.as_str())],
        Html(page.into_string()),
    )
        .into_response();
    if fresh {
        let (name, value) = set_cookie(&state, SESSION_COOKIE, &session);
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

fn desk_page(state: &AppState, d: &PreviewData, q: &PreviewQuery, csrf: &str) -> Markup {
    let tz = state.config.newsletter.timezone;
    let width = if q.width == Some(360) { 360 } else { 800 };
    let dark = q.scheme.as_deref() == Some("dark");
    let view = |w: u32, scheme: &str| format!("?width={w}&scheme={scheme}");
    let here = state.href(&format!("preview/{}", d.week));
    let limit = render::GMAIL_CLIP_BYTES;
    let frozen = d.frozen();
    let listed =
        |list: &[String], c: &Candidate| list.iter().any(|p| crate::feed::same_story(p, &c.url));
    let pinned = |c: &Candidate| listed(&d.choices.pin, c);
    let dropped = |c: &Candidate| listed(&d.choices.drop, c);
    let action = |name: &str, label: &str, url: &str| {
        html! {
            form method="post" action=(here) style="display:inline" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value=(name);
                input type="hidden" name="url" value=(url);
                button type="submit" class="small" { (label) }
            }
        }
    };
    let body = html! {
        nav class="card" aria-label="Weeks" {
            strong { "Weeks" }
            ul class="weeks" {
                @for (w, stories, status) in &d.weeks {
                    li {
                        @if *w == d.week { strong { (w) } } @else { a href=(state.href(&format!("preview/{w}"))) { (w) } }
                        " · " (stories) " stories · " span class={"status " (status.as_str())} { (status.as_str()) }
                    }
                }
            }
        }
        @if let Some(r) = &d.report {
            div class="card" {
                h2 { "Readers" }
                p {
                    (r.delivery.sent) " sent · " (r.clicks.readers) " copies with a click (" (format!("{:.1}%", r.clicks.click_rate * 100.0)) ") · "
                    a href=(state.href(&format!("report/{}", d.week))) { "the whole report" }
                }
                (super::report::story_bars(r))
            }
        }
        @if let Some(done) = q.done.as_ref().filter(|d| state.signer.verify_desk(&format!("done:{d}"), q.sig.as_deref().unwrap_or(""))) {
            p class="card done" role="status" { (crate::text::clean_line(done)) }
        }
        div class="card" {
            p {
                "Status: " strong class={"status " (d.status.as_str())} { (d.status.as_str()) }
                @if let Some((by, at)) = &d.approval {
                    " — approved by " strong { (by) } " on " (at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"))
                }
            }
            p {
                strong { (d.issue.subject) } br;
                span class="muted" { (d.issue.preheader) }
            }
            p {
                "Size as sent: " strong { (d.sent_size / 1024) " KB" } " of Gmail's " (limit / 1024) " KB clipping limit "
                @if d.sent_size > limit { strong style="color:#b91c1c" { "(Gmail will clip it)" } } @else { "(fits)" }
            }
            @match d.status {
                app::WeekStatus::Building => {
                    form method="post" action=(here) class="inline" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value="approve";
                        input type="hidden" name="seen" value=(d.fingerprint);
                        label for="by" { "Your name" }
                        input type="text" id="by" name="by" required maxlength="100" autocomplete="name";
                        button type="submit" { "Approve this issue" }
                    }
                    @if state.config.schedule.require_approval {
                        p class="muted" { "The scheduled send waits for an approval." }
                    }
                }
                app::WeekStatus::Approved => {
                    p class="muted" { "Approved: it goes out as it stands, and does not change until unapproved." }
                    form method="post" action=(here) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="action" value="unapprove";
                        button type="submit" { "Unapprove" }
                    }
                }
                _ => {
                    p class="muted" { "A send of this issue has begun: this is the issue as built, and it no longer changes." }
                }
            }
        }
        @if !frozen {
            form id="words" method="post" action=(here) class="card" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="save";
                label for="subject" { "Subject" }
                input type="text" id="subject" name="subject" maxlength="150" value=(d.choices.subject.clone().unwrap_or_default()) placeholder=(d.default_subject);
                label for="preheader" { "Preheader (the line inboxes show after the subject)" }
                input type="text" id="preheader" name="preheader" maxlength="150" value=(d.choices.preheader.clone().unwrap_or_default()) placeholder=(d.default_preheader);
                label for="intro" { "Intro (Markdown)" }
                textarea id="intro" name="intro" rows="5" placeholder=(d.default_intro) { (d.choices.intro.clone().unwrap_or_default()) }
                div id="intro-preview" class="intro-preview" data-url=(format!("{here}/intro")) aria-live="polite" {
                    (PreEscaped(render::intro_html(d.choices.intro.as_deref().unwrap_or(&d.default_intro))))
                }
                button type="submit" { "Save" }
                span class="muted" { " Saved into digests/" (d.week) "/issue.toml, which you may also edit by hand." }
            }
        }
        div class="card" {
            p {
                "Width: " a href=(view(360, if dark {"dark"} else {"light"})) { "360 px" } " · " a href=(view(800, if dark {"dark"} else {"light"})) { "800 px" }
                " — Scheme: " a href=(view(width, "light")) { "light" } " · " a href=(view(width, "dark")) { "dark" }
            }
            iframe title="The digest" src={(here) "/digest.html"}
                style={"width:" (width) "px;max-width:100%;height:900px;border:1px solid #9ca3af;background:#fff;color-scheme:" (if dark {"dark"} else {"light"})} {}
        }
        @if !frozen {
            form method="post" action=(here) class="card inline" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="test";
                label for="to" { "Send a test to" }
                input type="email" id="to" name="to" required placeholder="you@example.com";
                button type="submit" { "Send the test" }
            }
        }
        h2 { "Stories" }
        div style="overflow-x:auto" {
            table class="stories" {
                tr { th { "#" } th { "Story" } th { "Score" } th { "Why" } @if !frozen { th { "Change" } } }
                @for (i, c) in d.candidates.iter().enumerate() {
                    tr {
                        td { @if c.verdict.is_in() { (i + 1) } @else { "–" } }
                        td { a dir="auto" href=(c.reader_link()) { (c.title) } br; span class="muted" { (c.explain_score(d.week.bounds(tz).1.min(state.now()))) } }
                        td { (format!("{:.2}", c.score)) }
                        td { (c.reason) }
                        @if !frozen {
                            td class="actions" {
                                @if pinned(c) {
                                    (action("up", "↑ Up", &c.url))
                                    (action("down", "↓ Down", &c.url))
                                    (action("unpin", "Unpin", &c.url))
                                } @else if dropped(c) {
                                    (action("restore", "Restore", &c.url))
                                } @else {
                                    (action("pin", "Pin", &c.url))
                                    (action("drop", "Drop", &c.url))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Text part" }
        pre class="text-part" {
            (render::public_copy(&d.issue.text, state.config.newsletter.base_url.as_str(), &d.issue.links(), false))
        }
    };
    let css = "main{max-width:1100px}label{display:block;font-weight:bold;margin:8px 0 4px}\
.inline label{display:inline;margin-right:8px}.inline input[type=text],.inline input[type=email]{width:auto;min-width:240px;margin-right:8px}\
button.small{min-height:44px;padding:6px 12px;margin:2px;font-size:14px}\
table.stories{border-collapse:collapse;font-size:14px;width:100%}table.stories th{text-align:left}\
table.stories td{border-top:1px solid #d8dde4;vertical-align:top;padding:6px 4px}.actions{white-space:nowrap}\
.intro-preview{border-left:3px solid #9ca3af;padding:0 12px;margin:0 0 12px}.weeks{columns:2}\
.status{text-transform:uppercase;font-size:13px;letter-spacing:.5px}.done{border-left:4px solid #15803d}\
.text-part{white-space:pre-wrap;font-size:13px;background:#fff;color:#1f2937;padding:12px;overflow-x:auto}";
    let css = &format!("{css}{}", super::report::CHART_CSS);
    page_with(
        &state.config.theme,
        &format!("Issue of {}", d.week),
        css,
        body,
        Some(DESK_SCRIPT),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct DeskForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    url: String,
    subject: Option<String>,
    preheader: Option<String>,
    intro: Option<String>,
    #[serde(default)]
    by: String,
    /// The fingerprint of the issue the approving editor saw.
    seen: Option<String>,
    #[serde(default)]
    to: String,
}

/// A POST of a desk form: the form's token must belong to this browser's desk
/// session.
fn refuse_forged(state: &AppState, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    let session = cookie(headers, SESSION_COOKIE).unwrap_or("");
    if state.signer.verify_desk(session, csrf) {
        return None;
    }
    Some(state.respond(
        StatusCode::FORBIDDEN,
        "This form has expired",
        html! { p { "Reload the desk and try again." } },
    ))
}

/// POST of a desk form: one change, then back to the desk saying what it did.
pub(super) async fn desk_change(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(week): Path<String>,
    Form(form): Form<DeskForm>,
) -> Response {
    let week = match week.parse::<IsoWeek>() {
        Ok(w) => w,
        Err(e) => return no_such_week(&state, e),
    };
    if let Some(refusal) = refuse_non_admin(&state, peer, &PreviewQuery::default(), &headers) {
        return refusal;
    }
    if let Some(refusal) = refuse_forged(&state, &headers, &form.csrf) {
        return refusal;
    }
    let outcome = match form.action.as_str() {
        "test" => send_test_copy(&state, week, &form.to).await,
        _ => {
            let config = state.config.clone();
            let now = state.now();
            state
                .db(move |s| Ok(change(&config, s, week, &form, now)))
                .await
                .unwrap_or_else(|_| Err("the database is not available; try again".into()))
        }
    };
    let done = match outcome {
        Ok(done) => {
            tracing::info!(%week, "desk: {done}");
            done
        }
        Err(why) => format!("Not done: {why}"),
    };
    redirect(&state, week, Some(&done))
}

/// Applies one desk form to the week; what it did, or why not.
fn change(
    config: &Config,
    store: &mut Store,
    week: IsoWeek,
    form: &DeskForm,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let err = |e: anyhow::Error| format!("{e:#}");
    match form.action.as_str() {
        "approve" => {
            return app::approve(config, store, week, &form.by, form.seen.as_deref(), now)
                .map_err(err)
        }
        "unapprove" => return app::unapprove(store, week).map_err(err),
        _ => {}
    }
    if app::week_status(store, week).map_err(err)? != app::WeekStatus::Building {
        return Err(format!(
            "{week} is approved or being sent, so it does not change (unapprove it first)"
        ));
    }
    let (start, end) = week.bounds(config.newsletter.timezone);
    if store
        .story_count_between(start, end)
        .map_err(|e| e.to_string())?
        == 0
    {
        return Err(format!("{week} has no stories"));
    }
    let url = || form.url.clone();
    if form.action == "pin" {
        let pins = digest::read_choices(&config.week_dir(&week))
            .map_err(|e| e.to_string())?
            .pin
            .len();
        if pins >= config.ranking.stories {
            return Err(format!(
                "the issue holds {} stories ([ranking] stories) and {pins} are pinned already; unpin one first",
                config.ranking.stories
            ));
        }
    }
    let edits: Vec<Edit> = match form.action.as_str() {
        "pin" => vec![Edit::Pin(url())],
        "unpin" => vec![Edit::Unpin(url())],
        "drop" => vec![Edit::Drop(url())],
        "restore" => vec![Edit::Restore(url())],
        "up" => vec![Edit::Move {
            url: url(),
            up: true,
        }],
        "down" => vec![Edit::Move {
            url: url(),
            up: false,
        }],
        "save" => [
            ("subject", &form.subject),
            ("preheader", &form.preheader),
            ("intro", &form.intro),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|value| Edit::Text { key, value }))
        .collect(),
        other => return Err(format!("unknown action {other:?}")),
    };
    let dir = config.week_dir(&week);
    for edit in &edits {
        digest::edit_choices(&dir, edit).map_err(|e| e.to_string())?;
    }
    Ok(match form.action.as_str() {
        "save" => "Saved the subject, preheader and intro".to_string(),
        action => format!("{action}: {}", form.url),
    })
}

/// "Send a test to…": the issue as it stands now, built, to one address.
async fn send_test_copy(state: &Arc<AppState>, week: IsoWeek, to: &str) -> Result<String, String> {
    let address = app::valid_address(to).map_err(|e| e.to_string())?;
    let config = state.config.clone();
    let now = state.now();
    let issue = state
        .db(move |s| {
            Ok(match app::week_status(s, week)? {
                app::WeekStatus::Building => app::build(&config, s, week, now)?.map(|b| b.issue),
                _ => app::built_issue(&config, s, week, now)?,
            })
        })
        .await
        .map_err(|_| "the issue could not be built (see the log)".to_string())?
        .ok_or_else(|| format!("{week} has no stories"))?;
    let lines = crate::send::send_test(&state.config, &issue, week, &[address])
        .await
        .map_err(|e| e.to_string())?;
    Ok(lines.join("; "))
}

#[derive(Deserialize)]
pub(super) struct IntroForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    intro: String,
}

/// The intro's Markdown as the digest will show it (raw HTML shown as text).
pub(super) async fn intro_preview(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<IntroForm>,
) -> Response {
    if let Some(refusal) = refuse_non_admin(&state, peer, &PreviewQuery::default(), &headers) {
        return refusal;
    }
    if let Some(refusal) = refuse_forged(&state, &headers, &form.csrf) {
        return refusal;
    }
    Html(render::intro_html(&form.intro)).into_response()
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
    // The issue alone: not the desk's weeks, sizes and approval.
    match state
        .db(move |s| preview_issue(&config, s, week, now))
        .await
    {
        Ok(Some((issue, ..))) => Html(public_html(
            &issue,
            state.config.newsletter.base_url.as_str(),
        ))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}
