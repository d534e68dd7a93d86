//! The web side of `gazette serve` (axum): one-click unsubscribe (RFC 8058),
//! double opt-in subscribe, the public archive and its Atom feed, the editor's
//! preview, and `/healthz`. In: HTTP requests and the [`Config`]. Out: pages, and
//! changes to the subscriber list, each one transaction. Tokens in paths are
//! verified in constant time; a bad one gets a page that says nothing about who is
//! subscribed, and logs show tokens shortened, never whole.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::app;
use crate::config::Config;
use crate::digest;
use crate::rank::Candidate;
use crate::render::{self, Personal};
use crate::store::{Status, Store, UnsubscribeMethod};
use crate::token::{self, Signer};
use crate::week::IsoWeek;

/// A clock the tests can set.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct AppState {
    pub config: Config,
    pub signer: Signer,
    pub clock: Clock,
    limiter: Mutex<RateLimiter>,
    /// One connection for the server's requests: SQLite takes one writer at a
    /// time anyway, and waiting on a mutex beats SQLite's sleeping busy handler.
    store: Arc<Mutex<Option<Store>>>,
}

impl AppState {
    pub fn new(config: Config, signer: Signer, clock: Clock) -> AppState {
        AppState {
            config,
            signer,
            clock,
            limiter: Mutex::new(RateLimiter::default()),
            store: Arc::new(Mutex::new(None)),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Runs `f` on the server's connection (opened on first use), off the async
    /// threads.
    async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, Response> {
        let path = self.config.database.path.clone();
        let shared = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = shared.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(Store::open(&path)?);
            }
            f(slot.as_mut().expect("opened above"))
        })
        .await
        .map_err(|e| server_error(anyhow::anyhow!("{e}")))?
        .map_err(server_error)
    }
}

fn server_error(e: anyhow::Error) -> Response {
    tracing::error!("{e:#}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(
            page(
                "Something went wrong",
                html! { p { "Please try again in a minute." } },
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// Sliding one-hour windows of events per key: client addresses for the form,
/// target addresses for confirmation mails.
#[derive(Default)]
struct RateLimiter {
    events: HashMap<String, VecDeque<Instant>>,
}

impl RateLimiter {
    fn allow(&mut self, key: &str, per_hour: u32, now: Instant) -> bool {
        let window = Duration::from_secs(3600);
        if self.events.len() > 100_000 {
            self.events
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = self.events.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= per_hour as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(archive))
        .route("/healthz", get(healthz))
        .route("/feed.xml", get(feed))
        .route("/issues/{week}", get(issue_page))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/subscribe", axum::routing::post(subscribe))
        .route("/confirm/{token}", get(confirm))
        .route("/data/{token}", get(your_data))
        .route("/preview", get(preview_now))
        .route("/preview/{week}", get(preview_week))
        .route("/preview/{week}/digest.html", get(preview_digest))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %req.method(), path = %redacted_path(req.uri().path()))
                })
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
}

/// A request path fit for logs: tokens shortened, never whole.
pub fn redacted_path(path: &str) -> String {
    for prefix in ["/u/", "/confirm/", "/data/"] {
        if let Some(t) = path.strip_prefix(prefix) {
            return format!("{prefix}{}", token::redact(t));
        }
    }
    path.to_string()
}

const PAGE_CSS: &str = "body{margin:0;font:16px/1.5 -apple-system,Segoe UI,Arial,sans-serif;color:#1f2937;background:#eef1f5}\
main{max-width:640px;margin:0 auto;padding:24px 16px;box-sizing:border-box}\
h1{font:bold 26px/1.25 Georgia,serif;margin:0 0 16px}a{color:#0b4f9c}\
.card{background:#fff;padding:20px;border-radius:6px;margin:0 0 16px}\
button,input[type=submit]{font:inherit;font-weight:bold;min-height:44px;padding:10px 18px;border:0;border-radius:4px;background:#0b4f9c;color:#fff;cursor:pointer}\
input[type=email],input[type=text]{font:inherit;min-height:44px;padding:8px;border:1px solid #9ca3af;border-radius:4px;width:100%;box-sizing:border-box;margin:0 0 10px}\
ul{padding-left:20px}li{margin:6px 0}.muted{color:#4b5563;font-size:14px}\
@media (prefers-color-scheme:dark){body{background:#0f141a;color:#eef1f5}.card{background:#1a2129}a{color:#8fc1ff}.muted{color:#c3cad3}}";

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(PAGE_CSS)) }
            }
            body { main { h1 { (title) } (body) } }
        }
    }
}

fn respond(status: StatusCode, title: &str, body: Markup) -> Response {
    (status, Html(page(title, body).into_string())).into_response()
}

/// What a bad, forged or expired token gets: nothing about anyone.
fn bad_link() -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        "This link does not work",
        html! { p { "The link is incomplete or no longer valid. If you copied it, check that you copied all of it." } },
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.db(|s| Ok(s.user_version()?)).await {
        Ok(v) => (StatusCode::OK, format!("ok, schema {v}\n")).into_response(),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------- unsubscribe

async fn unsubscribe_page(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Response {
    let Some(id) = state.signer.verify_unsubscribe(&token) else {
        return bad_link();
    };
    let subscriber = match state.db(move |s| Ok(s.subscriber(id)?)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let name = state.config.newsletter.name.clone();
    let already = subscriber
        .as_ref()
        .is_none_or(|s| s.status != Status::Active);
    respond(
        StatusCode::OK,
        &format!("Unsubscribe from {name}"),
        html! {
            div class="card" {
                @if let Some(s) = &subscriber {
                    p { "Address: " strong { (s.email) } }
                }
                @if already {
                    p { "This address is not receiving " (name) "." }
                } @else {
                    p { "You will get no more issues of " (name) " at this address." }
                    form method="post" action={"/u/" (token)} {
                        input type="hidden" name="confirm" value="page";
                        button type="submit" { "Unsubscribe" }
                    }
                }
            }
        },
    )
}

/// POST of the List-Unsubscribe URL: with the body `List-Unsubscribe=One-Click`
/// from a mailbox provider (RFC 8058), or from the page's button. Idempotent.
async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = state.signer.verify_unsubscribe(&token) else {
        return bad_link();
    };
    let one_click = String::from_utf8_lossy(&body).contains("List-Unsubscribe=One-Click");
    let method = if one_click {
        UnsubscribeMethod::OneClick
    } else {
        UnsubscribeMethod::Page
    };
    let now = state.now();
    let changed = state
        .db(move |s| {
            Ok(match s.subscriber(id)? {
                Some(sub) if sub.status != Status::Unsubscribed => {
                    s.set_status(id, Status::Unsubscribed, Some(method), None, now)?
                }
                _ => false,
            })
        })
        .await;
    if let Err(r) = changed {
        return r;
    }
    tracing::info!(token = %token::redact(&token), method = method.as_str(), "unsubscribed");
    if one_click {
        return (StatusCode::OK, "unsubscribed\n").into_response();
    }
    let name = state.config.newsletter.name.clone();
    respond(
        StatusCode::OK,
        "You are unsubscribed",
        html! { div class="card" { p { "You will get no more issues of " (name) ". Sorry to see you go." } } },
    )
}

// ---------------------------------------------------------------- subscribe

#[derive(Deserialize)]
struct SubscribeForm {
    email: String,
    #[serde(default)]
    name: String,
}

fn thanks() -> Response {
    respond(
        StatusCode::OK,
        "Check your inbox",
        html! { div class="card" { p { "If that address can subscribe, a message with a confirmation link is on its way. The subscription starts when you follow it." } } },
    )
}

/// Double opt-in: the answer is the same whether or not the address is known;
/// the mail goes out in the background so timing tells nothing either.
async fn subscribe(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<SubscribeForm>,
) -> Response {
    let per_hour = state.config.server.subscribe_per_hour;
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(&format!("ip:{}", peer.ip()), per_hour, Instant::now());
    if !allowed {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            html! { p { "Please try again later." } },
        );
    }
    let email = match app::valid_address(&form.email) {
        Ok(e) => e,
        Err(_) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "That is not an email address",
                html! { p { a href="/" { "Try again" } } },
            )
        }
    };
    // At most a few confirmation mails per address an hour, however many clients ask.
    let mail_allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(&format!("to:{}", email.to_lowercase()), 3, Instant::now());
    let name = Some(crate::feed::clean_line(&form.name)).filter(|n| !n.is_empty());
    let now = state.now();
    let for_mail = email.clone();
    let pending = state
        .db(move |s| {
            let id = match s.add_subscriber(&for_mail, name.as_deref(), Status::Pending, now)? {
                crate::store::Added::New(id) => Some(id),
                // Active subscribers need nothing; everyone else confirms (again).
                crate::store::Added::Existing(_, Status::Active) => None,
                crate::store::Added::Existing(id, _) => Some(id),
            };
            Ok(id)
        })
        .await;
    let id = match pending {
        Ok(id) => id,
        Err(r) => return r,
    };
    if let (Some(id), true) = (id, mail_allowed) {
        let expires = now.timestamp() + i64::from(state.config.server.confirm_hours) * 3600;
        let token = state.signer.confirm_token(id, &email, expires);
        let link = format!("{}confirm/{token}", state.config.newsletter.base_url);
        let state = state.clone();
        tokio::spawn(async move {
            let result = async {
                let m =
                    crate::message::confirmation(&state.config, &email, &link, SystemTime::now())?;
                crate::send::send_one(&state.config, &m, "confirmations").await?;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(subscriber = id, "confirmation mail not sent: {e:#}");
            }
        });
    }
    thanks()
}

async fn confirm(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let now = state.now();
    let signer = state.signer.clone();
    let outcome = state
        .db(move |s| {
            let email_of = |id: i64| s.subscriber(id).ok().flatten().map(|x| x.email);
            let Some((id, expires)) = signer.verify_confirm(&token, email_of) else {
                return Ok(false);
            };
            if expires < now.timestamp() {
                return Ok(false);
            }
            s.set_status(id, Status::Active, None, None, now)?;
            // Their own confirmed request lifts an erasure's suppression.
            if let Some(sub) = s.subscriber(id)? {
                let hash = crate::store::suppression_hash(s.conn(), &sub.email)?;
                s.conn()
                    .execute(crate::store::query("suppressed_delete"), [hash])?;
            }
            Ok(true)
        })
        .await;
    match outcome {
        Ok(true) => {
            let name = state.config.newsletter.name.clone();
            respond(
                StatusCode::OK,
                "You are subscribed",
                html! { div class="card" { p { "Welcome to " (name) ". The next issue will reach you on its day." } } },
            )
        }
        Ok(false) => bad_link(),
        Err(r) => r,
    }
}

/// The "your data" link: everything held about the subscriber, as JSON.
async fn your_data(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let Some(id) = state.signer.verify_data(&token) else {
        return bad_link();
    };
    match state.db(move |s| Ok(s.export_subscriber(id)?)).await {
        Ok(Some(data)) => (
            [
                (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "inline; filename=\"your-data.json\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            serde_json::to_string_pretty(&data).unwrap_or_default(),
        )
            .into_response(),
        Ok(None) => respond(
            StatusCode::NOT_FOUND,
            "Nothing held",
            html! { p { "We hold no data for this link: the address was removed or erased." } },
        ),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------- archive

/// Weeks whose issue has gone out to at least one subscriber, newest first.
fn sent_issues(store: &Store) -> anyhow::Result<Vec<(String, String)>> {
    Ok(store.sent_issues()?)
}

async fn archive(State(state): State<Arc<AppState>>) -> Response {
    let issues = match state.db(|s| sent_issues(s)).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let n = &state.config.newsletter;
    respond(
        StatusCode::OK,
        &n.name,
        html! {
            div class="card" {
                form method="post" action="/subscribe" {
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
                        li { a href={"/issues/" (week)} { (subject) } " " span class="muted" { (week) } }
                    }
                }
                p class="muted" { a href="/feed.xml" { "Atom feed" } }
            }
            p class="muted" { (n.postal_address) }
        },
    )
}

/// An issue as sent, with the personal parts made general.
fn public_html(html: &str, base: &str) -> String {
    public_part(html, base, true)
}

/// A part of the issue with the personal links pointing at the archive instead.
fn public_part(part: &str, base: &str, html: bool) -> String {
    let general = Personal {
        name: None,
        unsubscribe_url: base,
        data_url: base,
    };
    render::personalize(part, &general, html)
}

async fn issue_page(State(state): State<Arc<AppState>>, Path(week): Path<String>) -> Response {
    let Ok(week) = week.parse::<IsoWeek>() else {
        return respond(
            StatusCode::NOT_FOUND,
            "No such issue",
            html! { p { a href="/" { "All issues" } } },
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
            &issue.html,
            state.config.newsletter.base_url.as_str(),
        ))
        .into_response(),
        _ => respond(
            StatusCode::NOT_FOUND,
            "No such issue",
            html! { p { a href="/" { "All issues" } } },
        ),
    }
}

async fn feed(State(state): State<Arc<AppState>>) -> Response {
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

// ---------------------------------------------------------------- preview

/// Admin routes: from loopback only, unless `[server] admin_token` is set, and
/// then only with it (from anywhere), compared in constant time.
pub fn admin_allowed(peer: IpAddr, admin_token: Option<&str>, presented: Option<&str>) -> bool {
    match admin_token {
        Some(expected) => {
            presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
        }
        None => peer.is_loopback(),
    }
}

#[derive(Deserialize, Default)]
struct PreviewQuery {
    token: Option<String>,
    width: Option<u32>,
    scheme: Option<String>,
}

fn presented_token<'a>(q: &'a PreviewQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    q.token.as_deref().or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

/// `None` when the request may see admin routes, else the refusal to send.
fn refuse_non_admin(
    state: &AppState,
    peer: SocketAddr,
    q: &PreviewQuery,
    headers: &HeaderMap,
) -> Option<Response> {
    let expected = state.config.server.admin_token.as_ref().map(|t| t.expose());
    if admin_allowed(peer.ip(), expected, presented_token(q, headers)) {
        return None;
    }
    Some(respond(
        StatusCode::FORBIDDEN,
        "Forbidden",
        html! { p { "The preview is for the editors." } },
    ))
}

/// What the preview shows: the issue as it would go out now, re-rendered from
/// the stories and `issue.toml` (or, once a send has begun, as built).
struct PreviewData {
    week: IsoWeek,
    issue: render::Issue,
    candidates: Vec<Candidate>,
    sent_size: usize,
    frozen: bool,
}

fn preview_data(
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

async fn preview_now(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<SocketAddr>,
    q: Query<PreviewQuery>,
    headers: HeaderMap,
) -> Response {
    let week = app::pick_week(&state.config, None, state.now());
    preview(state, peer, q, headers, week).await
}

async fn preview_week(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<SocketAddr>,
    q: Query<PreviewQuery>,
    headers: HeaderMap,
    Path(week): Path<String>,
) -> Response {
    match week.parse() {
        Ok(week) => preview(state, peer, q, headers, week).await,
        Err(e) => respond(
            StatusCode::NOT_FOUND,
            "No such week",
            html! { p { (e.to_string()) } },
        ),
    }
}

async fn preview(
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
    let data = match state.db(move |s| preview_data(&config, s, week, now)).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(d) = data else {
        return respond(
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
        iframe title="The digest" src={"/preview/" (d.week) "/digest.html?x=1" (token_q)}
            style={"width:" (width) "px;max-width:100%;height:900px;border:1px solid #9ca3af;background:#fff;color-scheme:" (if dark {"dark"} else {"light"})} {}
        h2 { "Candidates" }
        div style="overflow-x:auto" {
            table style="border-collapse:collapse;font-size:14px;width:100%" {
                tr { th align="left" { "#" } th align="left" { "Story" } th align="right" { "Score" } th align="left" { "Why" } }
                @for (i, c) in d.candidates.iter().enumerate() {
                    tr style="border-top:1px solid #d8dde4;vertical-align:top" {
                        td { @if c.verdict.is_in() { (i + 1) } @else { "–" } }
                        td { a dir="auto" href=(c.url) { (c.title) } br; span class="muted" { (c.explain_score(d.week.bounds(state.config.newsletter.timezone).1.min(state.now()))) } }
                        td align="right" { (format!("{:.2}", c.score)) }
                        td { (c.reason) }
                    }
                }
            }
        }
        h2 { "Text part" }
        pre style="white-space:pre-wrap;font-size:13px;background:#fff;color:#1f2937;padding:12px;overflow-x:auto" {
            (public_part(&d.issue.text, state.config.newsletter.base_url.as_str(), false))
        }
    };
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Preview of " (d.week) }
                style { (PreEscaped(PAGE_CSS)) "main{max-width:1100px}" }
            }
            body { main { h1 { "Preview of " (d.week) } (body) } }
        }
    };
    Html(html.into_string()).into_response()
}

async fn preview_digest(
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

// ---------------------------------------------------------------- the server

/// Whether a week's issue has gone out: its send finished with nothing pending.
fn issue_finished(config: &Config, week: IsoWeek) -> bool {
    Store::open(&config.database.path)
        .and_then(|s| s.issue_finished(&week.to_string()))
        .unwrap_or(false)
}

/// Runs the schedule until `shutdown` turns true; a send in progress is stopped
/// cleanly (in-flight deliveries finished and recorded) through `stop`.
async fn schedule_loop(
    config: Config,
    clock: Clock,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::schedule::{Action, Scheduler};
    let mut scheduler = Scheduler::new(&config.schedule, config.newsletter.timezone);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = clock();
        for action in scheduler.due(now, |w| issue_finished(&config, w)) {
            match action {
                Action::Fetch => {
                    let result = async {
                        let mut store = app::open_store(&config)?;
                        let reports = app::fetch(&config, &mut store, now).await?;
                        app::summarize_fetch(&reports)
                    }
                    .await;
                    match result {
                        Ok(_) => tracing::info!(job = "fetch", "feeds fetched"),
                        Err(e) => tracing::error!(job = "fetch", "{e:#}"),
                    }
                    if let Some(maildir) = &config.bounces.maildir {
                        let result = app::open_store(&config).and_then(|mut store| {
                            app::import_bounces(&config, &mut store, maildir, now)
                        });
                        match result {
                            Ok(b) => tracing::info!(
                                job = "bounces",
                                "{}",
                                b.describe().lines().next().unwrap_or("")
                            ),
                            Err(e) => tracing::error!(job = "bounces", "{e:#}"),
                        }
                    }
                }
                Action::Send { week, scheduled_at } => {
                    tracing::info!(job = "send", %week, scheduled_at = %scheduled_at, "weekly job starting");
                    let progress: Arc<dyn crate::send::Progress> =
                        Arc::new(crate::send::NoProgress);
                    match app::run_job(&config, week, now, progress, stop.clone()).await {
                        Ok(outcome) => {
                            for line in outcome.lines {
                                tracing::info!(job = "send", %week, "{line}");
                            }
                            if let Some(e) = outcome.fetch_error {
                                tracing::error!(job = "send", %week, "{e:#}");
                            }
                        }
                        Err(e) => tracing::error!(job = "send", %week, "{e:#}"),
                    }
                }
                Action::SkipStale {
                    week,
                    scheduled_at,
                    late_by,
                } => {
                    tracing::warn!(
                        job = "send", %week, scheduled_at = %scheduled_at,
                        "skipped: the send was missed by {}, more than [schedule] max_lateness",
                        humantime::format_duration(Duration::from_secs(late_by.as_secs()))
                    );
                }
            }
        }
        let now = clock();
        let wait = (scheduler.next_wakeup(now) - now)
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// `gazette serve`: the web routes on `listener` and the schedule, until
/// `shutdown` completes; then it stops taking requests, lets a running send finish
/// the deliveries in flight and record them, and returns.
pub async fn serve(
    config: Config,
    clock: Clock,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (signer, development) = crate::send::signer(&config)?;
    if development {
        tracing::warn!("GAZETTE_SECRET is not set: links are signed with the development secret (file outbox only)");
    }
    let state = Arc::new(AppState::new(config.clone(), signer, clock.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(schedule_loop(config, clock, stop.clone(), rx));
    tracing::info!(listen = %listener.local_addr()?, "serving");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing deliveries in flight");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = tx.send(true);
    })
    .await?;
    scheduler.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_needs_loopback_or_the_token() {
        let outside: IpAddr = "203.0.113.5".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(admin_allowed(local, None, None));
        assert!(admin_allowed("::1".parse().unwrap(), None, None));
        assert!(!admin_allowed(outside, None, None));
        assert!(!admin_allowed(outside, None, Some("guess")));
        assert!(admin_allowed(outside, Some("s3cret"), Some("s3cret")));
        assert!(!admin_allowed(local, Some("s3cret"), None));
        assert!(!admin_allowed(local, Some("s3cret"), Some("s3cre")));
    }

    #[test]
    fn rate_limit_slides() {
        let mut l = RateLimiter::default();
        let t = Instant::now();
        assert!(l.allow("a", 2, t));
        assert!(l.allow("a", 2, t));
        assert!(!l.allow("a", 2, t));
        assert!(l.allow("b", 2, t));
        assert!(l.allow("a", 2, t + Duration::from_secs(3601)));
    }

    #[test]
    fn logs_never_hold_a_whole_token() {
        assert_eq!(redacted_path("/u/12.abcdefghijklmnop"), "/u/12.abc…");
        assert_eq!(redacted_path("/confirm/1.99.xyzxyzxyz"), "/confirm/1.99.x…");
        assert_eq!(redacted_path("/issues/2026-W06"), "/issues/2026-W06");
    }
}
