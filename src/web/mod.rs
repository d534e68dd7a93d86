//! The routes and pages of `gazette serve` (axum; [`crate::serve`] starts them):
//! one-click unsubscribe (RFC 8058), double opt-in subscribe, the public archive
//! and its Atom feed, counted story links (`/c/`), the editor's preview and
//! report, and `/healthz`. In: HTTP requests and the [`Config`]. Out: pages, and
//! changes to the subscriber list, each one transaction. Tokens in paths are
//! verified in constant time; a bad one gets a page that says nothing about who is
//! subscribed, and logs show tokens shortened, never whole.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
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
use crate::render;
use crate::store::{Confirmation, Status, Store, UnsubscribeMethod};
use crate::theme::Theme;
use crate::token::{self, Signer};
use crate::week::IsoWeek;

mod archive;
pub mod clicks;
pub mod client;
mod preview;
mod report;
use archive::*;
use preview::*;

/// A clock the tests can set.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct AppState {
    pub config: Config,
    /// The path of `[newsletter] base_url` (`/` or `/newsletter/`): pages link
    /// under it, since a proxy may serve gazette below a prefix.
    base_path: String,
    pub signer: Signer,
    pub clock: Clock,
    limiter: Mutex<RateLimiter>,
    /// Readers' clicks of the last seconds: scanners' bursts.
    bursts: Mutex<clicks::Bursts>,
    /// One connection for the server's requests: SQLite takes one writer at a
    /// time anyway, and waiting on a mutex beats SQLite's sleeping busy handler.
    store: Arc<Mutex<Option<Store>>>,
}

impl AppState {
    pub fn new(config: Config, signer: Signer, clock: Clock) -> AppState {
        AppState {
            base_path: config.newsletter.base_url.path().to_string(),
            config,
            signer,
            clock,
            limiter: Mutex::new(RateLimiter::default()),
            bursts: Mutex::default(),
            store: Arc::new(Mutex::new(None)),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// A link to one of gazette's pages, `rel` to `base_url`'s path.
    fn href(&self, rel: &str) -> String {
        format!("{}{rel}", self.base_path)
    }

    fn respond(&self, status: StatusCode, title: &str, body: Markup) -> Response {
        (
            status,
            Html(page(&self.config.theme, title, body).into_string()),
        )
            .into_response()
    }

    /// What a bad, forged or expired token gets: nothing about anyone.
    fn bad_link(&self) -> Response {
        self.respond(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            html! { p { "The link is incomplete or no longer valid. If you copied it, check that you copied all of it." } },
        )
    }

    fn thanks(&self) -> Response {
        self.respond(
            StatusCode::OK,
            "Check your inbox",
            html! { div class="card" { p { "If that address can subscribe, a message with a confirmation link is on its way. The subscription starts when you follow it." } } },
        )
    }

    fn server_error(&self, e: anyhow::Error) -> Response {
        tracing::error!("{e:#}");
        self.respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            html! { p { "Please try again in a minute." } },
        )
    }

    /// The client of a request, through the trusted proxies.
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> client::Client {
        let server = &self.config.server;
        client::client(
            peer.ip(),
            headers,
            &server.trusted_proxies,
            server.forwarded_header,
        )
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
        .map_err(|e| self.server_error(anyhow::anyhow!("{e}")))?
        .map_err(|e| self.server_error(e))
    }
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

/// The Content-Security-Policy of every page: no scripts at all.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; form-action 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'";

/// Headers every answer carries: no scripts, no framing by other sites, no
/// sniffing, and no Referer (a page's URL can hold a token; a reader following a
/// story link must not hand it to the story's site).
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
];

pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(archive))
        .route("/healthz", get(healthz))
        .route("/feed.xml", get(feed))
        .route("/issues/{week}", get(issue_page))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/c/{id}", get(clicks::click))
        .route("/subscribe", axum::routing::post(subscribe))
        .route("/confirm/{token}", get(confirm_page).post(confirm))
        .route("/data/{token}", get(your_data))
        .route("/preview", get(preview_now))
        .route("/report", get(report::report_latest))
        .route("/report/{week}", get(report::report_page))
        .route("/preview/{week}", get(preview_week).post(desk_change))
        .route("/preview/{week}/intro", axum::routing::post(intro_preview))
        .route("/preview/{week}/digest.html", get(preview_digest));
    // Served at the root and under base_url's path, so a proxy may pass the
    // prefix on or strip it.
    let prefix = state.base_path.trim_end_matches('/').to_string();
    let mut router = if prefix.is_empty() {
        routes
    } else {
        // base_url itself ends in "/": the footer's links point there.
        routes
            .clone()
            .nest(&prefix, routes)
            .route(&format!("{prefix}/"), get(archive))
    };
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::HeaderName::from_static(name),
                header::HeaderValue::from_static(value),
            ),
        );
    }
    router
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %req.method(), path = %redacted_path(req.uri().path()))
                })
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
}

/// A request path fit for logs: tokens shortened, never whole, wherever they
/// appear (a path that 404s, such as `/newsletter/u/<token>` behind a proxy
/// that did not strip its prefix, carries one too). A token is the segment after
/// `u`, `confirm`, `data` or `c`, or any long segment.
pub fn redacted_path(path: &str) -> String {
    let mut after_marker = false;
    path.split('/')
        .map(|segment| {
            let secret = after_marker || segment.len() >= 24;
            after_marker = matches!(segment, "u" | "confirm" | "data" | "c");
            if secret && !segment.is_empty() {
                token::redact(segment)
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The pages' CSS, in the theme's accent and fonts.
fn page_css(theme: &Theme) -> String {
    let (accent, dark, font, headline) = (
        theme.accent,
        theme.accent_dark,
        &theme.font,
        &theme.headline_font,
    );
    format!("body{{margin:0;font:16px/1.5 {font};color:#1f2937;background:#eef1f5}}\
main{{max-width:640px;margin:0 auto;padding:24px 16px;box-sizing:border-box}}\
h1{{font:bold 26px/1.25 {headline};margin:0 0 16px}}a{{color:{accent}}}\
.card{{background:#fff;padding:20px;border-radius:6px;margin:0 0 16px}}\
button,input[type=submit]{{font:inherit;font-weight:bold;min-height:44px;padding:10px 18px;border:0;border-radius:4px;background:{accent};color:#fff;cursor:pointer}}\
input[type=email],input[type=text],textarea{{font:inherit;min-height:44px;padding:8px;border:1px solid #9ca3af;border-radius:4px;width:100%;box-sizing:border-box;margin:0 0 10px}}\
ul{{padding-left:20px}}li{{margin:6px 0}}.muted{{color:#4b5563;font-size:14px}}\
@media (prefers-color-scheme:dark){{body{{background:#0f141a;color:#eef1f5}}.card{{background:#1a2129}}a{{color:{dark}}}.muted{{color:#c3cad3}}}}")
}

/// A page of gazette's own, in the site's colours and fonts.
fn page(theme: &Theme, title: &str, body: Markup) -> Markup {
    page_with(theme, title, "", body, None)
}

/// [`page`] with CSS of its own and, for the desk, its one script.
fn page_with(
    theme: &Theme,
    title: &str,
    extra_css: &str,
    body: Markup,
    script: Option<&str>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(page_css(theme))) (PreEscaped(extra_css)) }
            }
            body {
                main { h1 { (title) } (body) }
                @if let Some(script) = script {
                    script { (PreEscaped(script)) }
                }
            }
        }
    }
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
        return state.bad_link();
    };
    let subscriber = match state.db(move |s| Ok(s.subscriber(id)?)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let name = state.config.newsletter.name.clone();
    let already = subscriber
        .as_ref()
        .is_none_or(|s| s.status != Status::Active);
    state.respond(
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
                    // Posts back to this page's own URL, whatever prefix serves it.
                    form method="post" {
                        input type="hidden" name="confirm" value="page";
                        button type="submit" { "Unsubscribe" }
                    }
                }
            }
        },
    )
}

/// Whether a POST body is RFC 8058's one-click request: the form field
/// `List-Unsubscribe=One-Click`, url-encoded or as `multipart/form-data` (both
/// are allowed, §3.1).
fn is_one_click(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    if url::form_urlencoded::parse(body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click") {
        return true;
    }
    // multipart/form-data: the part named List-Unsubscribe holds One-Click.
    text.split("name=\"List-Unsubscribe\"").skip(1).any(|rest| {
        rest.split_once("\r\n\r\n")
            .or_else(|| rest.split_once("\n\n"))
            .is_some_and(|(_, value)| value.trim_start().starts_with("One-Click"))
    })
}

/// POST of the List-Unsubscribe URL: with the body `List-Unsubscribe=One-Click`
/// from a mailbox provider (RFC 8058), or from the page's button. Idempotent.
async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = state.signer.verify_unsubscribe(&token) else {
        return state.bad_link();
    };
    let one_click = is_one_click(&body);
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
    state.respond(
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

/// Double opt-in. The answer is the same, and comes as fast, whether or not the
/// address is known: past the checks that need no database (the form, the rate
/// limits), the request is recorded and its mail sent in the background.
async fn subscribe(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubscribeForm>,
) -> Response {
    let per_hour = state.config.server.subscribe_per_hour;
    let client = state.client(peer, &headers);
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(&format!("ip:{}", client.ip), per_hour, Instant::now());
    if !allowed {
        return state.respond(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            html! { p { "Please try again later." } },
        );
    }
    let email = match app::valid_address(&form.email) {
        Ok(e) => e,
        Err(_) => {
            return state.respond(
                StatusCode::BAD_REQUEST,
                "That is not an email address",
                html! { p { a href=(state.href("")) { "Try again" } } },
            )
        }
    };
    // At most a few confirmation mails per address an hour, however many clients ask.
    let mail_allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(&format!("to:{}", email.to_lowercase()), 3, Instant::now());
    let name = crate::text::person_name(&form.name);
    let now = state.now();
    let background = state.clone();
    tokio::spawn(async move {
        if let Err(e) = record_and_mail(background, email, name, mail_allowed, now).await {
            tracing::error!("subscribe request not handled: {e:#}");
        }
    });
    state.thanks()
}

/// The part of a subscribe request whose duration depends on the address.
async fn record_and_mail(
    state: Arc<AppState>,
    email: String,
    name: Option<String>,
    mail_allowed: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let confirm_hours = i64::from(state.config.server.confirm_hours);
    let for_store = email.clone();
    let request = state
        .db(move |s| {
            // Unconfirmed requests older than a confirmation link's life are gone.
            s.expire_pending(now - chrono::Duration::hours(confirm_hours))?;
            Ok(s.request_subscription(&for_store, name.as_deref(), now)?)
        })
        .await
        .map_err(|_| anyhow::anyhow!("the database refused the request (logged above)"))?;
    // Active subscribers need nothing.
    let (Some(request), true) = (request, mail_allowed) else {
        return Ok(());
    };
    let expires = now.timestamp() + confirm_hours * 3600;
    let token = state.signer.confirm_token(request, &email, expires);
    let link = format!("{}confirm/{token}", state.config.newsletter.base_url);
    let m = crate::message::confirmation(&state.config, &email, &link, SystemTime::now())?;
    crate::send::send_one(&state.config, &m, "confirmations")
        .await
        .with_context(|| format!("confirmation mail for request {request} not sent"))?;
    Ok(())
}

/// The subscribe request a confirmation token names, if genuine and not expired.
async fn confirmation_request(
    state: &Arc<AppState>,
    token: String,
) -> Result<Option<i64>, Response> {
    let now = state.now();
    let signer = state.signer.clone();
    state
        .db(move |s| {
            let email_of = |id: i64| s.subscribe_request_email(id).ok().flatten();
            Ok(signer
                .verify_confirm(&token, email_of)
                .filter(|(_, expires)| *expires >= now.timestamp())
                .map(|(request, _)| request))
        })
        .await
}

fn confirmation_answer(state: &AppState, outcome: Confirmation, done: bool) -> Response {
    let name = state.config.newsletter.name.clone();
    match outcome {
        Confirmation::Open { .. } if done => state.respond(
            StatusCode::OK,
            "You are subscribed",
            html! { div class="card" { p { "Welcome to " (name) ". The next issue will reach you on its day." } } },
        ),
        // A GET (a person, or a mail scanner following links) only shows the
        // button, with the name the request gave, which its owner can change:
        // somebody else may have typed it.
        Confirmation::Open { name: given, .. } => state.respond(
            StatusCode::OK,
            &format!("Subscribe to {name}"),
            html! {
                div class="card" {
                    p { "Press the button to start receiving " (name) "." }
                    form method="post" {
                        label for="name" { "Your name, for the greeting (optional)" }
                        input type="text" id="name" name="name" maxlength=(crate::text::MAX_NAME_CHARS) value=(given.unwrap_or_default());
                        button type="submit" { "Confirm my subscription" }
                    }
                }
            },
        ),
        Confirmation::Used => state.respond(
            StatusCode::OK,
            "This link was used already",
            html! { div class="card" { p { "Each confirmation link works once. To subscribe again, use the form on the newsletter's page." } } },
        ),
        Confirmation::Superseded => state.respond(
            StatusCode::OK,
            "You unsubscribed after asking",
            html! { div class="card" { p { "This link is older than your unsubscribe, so it changes nothing. To come back, use the form on the newsletter's page." } } },
        ),
    }
}

/// GET of a confirmation link: a page with a button, and no change.
async fn confirm_page(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let request = match confirmation_request(&state, token).await {
        Ok(Some(r)) => r,
        Ok(None) => return state.bad_link(),
        Err(r) => return r,
    };
    match state
        .db(move |s| Ok(s.subscribe_request_state(request)?))
        .await
    {
        Ok(outcome) => confirmation_answer(&state, outcome, false),
        Err(r) => r,
    }
}

/// POST of a confirmation link (the button): the subscription starts, once, with
/// the name the form sent (when it sent one).
async fn confirm(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let name = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "name")
        .map(|(_, v)| crate::text::person_name(&v));
    let request = match confirmation_request(&state, token).await {
        Ok(Some(r)) => r,
        Ok(None) => return state.bad_link(),
        Err(r) => return r,
    };
    let now = state.now();
    match state
        .db(move |s| Ok(s.confirm_request(request, name, now)?))
        .await
    {
        Ok(outcome) => {
            if matches!(outcome, Confirmation::Open { .. }) {
                tracing::info!(request, "subscription confirmed");
            }
            confirmation_answer(&state, outcome, true)
        }
        Err(r) => r,
    }
}

/// The "your data" link: everything held about the subscriber, as JSON.
async fn your_data(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let Some(id) = state.signer.verify_data(&token) else {
        return state.bad_link();
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
        Ok(None) => state.respond(
            StatusCode::NOT_FOUND,
            "Nothing held",
            html! { p { "We hold no data for this link: the address was removed or erased." } },
        ),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn admin_needs_loopback_or_the_token() {
        let outside: IpAddr = "203.0.113.5".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let c = |ip: IpAddr| {
            client::client(
                ip,
                &HeaderMap::new(),
                &[],
                client::ForwardedHeader::XForwardedFor,
            )
        };
        assert!(admin_allowed(c(local), None, None));
        assert!(admin_allowed(c("::1".parse().unwrap()), None, None));
        assert!(!admin_allowed(c(outside), None, None));
        assert!(!admin_allowed(c(outside), None, Some("guess")));
        assert!(admin_allowed(c(outside), Some("s3cret"), Some("s3cret")));
        assert!(!admin_allowed(c(local), Some("s3cret"), None));
        assert!(!admin_allowed(c(local), Some("s3cret"), Some("s3cre")));
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
        assert_eq!(
            redacted_path("/newsletter/u/12.abcdefghijklmnop/x"),
            "/newsletter/u/12.abc…/x"
        );
        assert_eq!(
            redacted_path("/anything/12.abcdefghijklmnopqrstuvwxyz"),
            "/anything/12.abc…"
        );
    }
}
