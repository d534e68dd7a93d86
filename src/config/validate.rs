//! Validation: turns the raw file types of [`super::raw`] into the public
//! [`Config`], one function per config section. In: the raw sections, the config
//! file's name and directory, and the environment. Out: the checked public types,
//! with relative paths resolved against the config file's directory, or the first
//! wrong value as a [`ConfigError`] that names its key. The `[smtp]` section, the
//! largest, has its own file, [`smtp`].

mod smtp;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;
use url::Url;

use super::env::Overlay;
use super::raw::{
    RawAnalytics, RawBounces, RawConfig, RawDatabase, RawFeed, RawFetch, RawNewsletter, RawOutput,
    RawRanking, RawSchedule, RawServer, RawSignals, RawTheme,
};
use super::{
    Analytics, Bounces, Config, ConfigError, Database, FeedLocation, FeedSource, Fetch, Newsletter,
    Output, Ranking, Schedule, Secret, Server, SignalPage, Signals,
};

/// What every section's validator needs beside its own raw section.
pub(super) struct Context<'a> {
    /// Names the config file in errors.
    pub file: &'a str,
    /// Relative paths are resolved against this.
    pub base_dir: &'a Path,
    /// The whole environment, for keys that name a variable to read (`password_env`).
    pub env: &'a [(String, String)],
    /// Which keys the environment set: their errors name the variable.
    pub overlay: &'a Overlay,
}

impl Context<'_> {
    /// The error for a wrong value at `key`.
    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        self.overlay.error(self.file, key, message)
    }

    /// A path from the config, relative to the config file's directory.
    fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    fn nonempty(&self, key: &str, v: &str) -> Result<(), ConfigError> {
        if v.trim().is_empty() {
            Err(self.error(key, "must not be empty"))
        } else {
            Ok(())
        }
    }
}

/// Checks every section, in the order of the file.
pub(super) fn validate(
    raw: RawConfig,
    cx: &Context,
    secret: Option<Secret>,
) -> Result<Config, ConfigError> {
    let newsletter = newsletter(cx, raw.newsletter)?;
    let newsletter_name = newsletter.name.clone();
    let database = database(cx, raw.database)?;
    let output = output(cx, raw.output)?;
    let feeds = feeds(cx, raw.feeds)?;
    let fetch = fetch(cx, raw.fetch)?;
    let ranking = ranking(cx, raw.ranking)?;
    let mut smtp = smtp::smtp(cx, raw.smtp)?;
    // Unsubscribing by mail: by default at the bounce domain, whose mailbox the
    // bounce reader already reads. Not at the From domain: nobody may read that
    // address (a shared provider's is someone else's), and requests sent there
    // would be lost.
    if smtp.unsubscribe_mailto.is_none() {
        smtp.unsubscribe_mailto = smtp
            .bounce_domain
            .as_ref()
            .map(|domain| format!("unsubscribe@{domain}"));
    }
    Ok(Config {
        base_dir: cx.base_dir.to_path_buf(),
        newsletter,
        database,
        output,
        feeds,
        fetch,
        ranking,
        smtp,
        server: server(cx, raw.server)?,
        schedule: schedule(cx, raw.schedule)?,
        bounces: bounces(cx, raw.bounces)?,
        signals: signals(cx, raw.signals)?,
        theme: theme(cx, raw.theme, &newsletter_name)?,
        analytics: analytics(cx, raw.analytics)?,
        secret,
    })
}

/// `[theme]`: an accent readable on the card (4.5:1), font stacks that cannot
/// carry CSS, an https logo with its size.
fn theme(cx: &Context, t: RawTheme, name: &str) -> Result<crate::theme::Theme, ConfigError> {
    use crate::theme::{self, Logo, Rgb};
    let accent = match &t.accent {
        None => theme::DEFAULT_ACCENT,
        Some(a) => {
            let rgb = Rgb::parse(a).ok_or_else(|| {
                cx.error(
                    "theme.accent",
                    format!("{a:?} is not a colour like \"#0b4f9c\""),
                )
            })?;
            if let Some(problem) = theme::accent_problem(rgb) {
                return Err(cx.error("theme.accent", problem));
            }
            rgb
        }
    };
    let font = |key: &str, v: Option<String>, default: &str| match v {
        None => Ok(default.to_string()),
        Some(f) if theme::font_stack_ok(&f) => Ok(f),
        Some(f) => Err(cx.error(
            key,
            format!("{f:?} is not a font stack like \"Georgia, 'Times New Roman', serif\""),
        )),
    };
    let body_font = font("theme.font", t.font, theme::DEFAULT_FONT)?;
    let headline_font = font(
        "theme.headline_font",
        t.headline_font,
        theme::DEFAULT_HEADLINE_FONT,
    )?;
    let logo = match t.logo {
        None => None,
        Some(l) => {
            let url = Url::parse(&l.url)
                .ok()
                // https for mail; http only from this machine (a preview, a test).
                .filter(|u| {
                    u.scheme() == "https"
                        || (u.scheme() == "http"
                            && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
                })
                .ok_or_else(|| {
                    cx.error(
                        "theme.logo.url",
                        format!("{:?} is not an https:// URL", l.url),
                    )
                })?;
            if !(1..=600).contains(&l.width) || !(1..=600).contains(&l.height) {
                return Err(cx.error(
                    "theme.logo",
                    "width and height are the logo's size in pixels, from 1 to 600",
                ));
            }
            Some(Logo {
                url: url.to_string(),
                width: l.width,
                height: l.height,
                alt: l.alt.unwrap_or_else(|| name.to_string()),
            })
        }
    };
    let footer_note = t.footer_note.filter(|n| !n.trim().is_empty());
    Ok(theme::Theme::new(
        accent,
        &body_font,
        &headline_font,
        logo,
        footer_note,
    ))
}

fn newsletter(cx: &Context, n: RawNewsletter) -> Result<Newsletter, ConfigError> {
    cx.nonempty("newsletter.name", &n.name)?;
    cx.nonempty("newsletter.postal_address", &n.postal_address)?;
    let from: Mailbox = n.from.parse().map_err(|e| {
        cx.error(
            "newsletter.from",
            format!("{:?} is not an email address: {e}", n.from),
        )
    })?;
    let reply_to = match &n.reply_to {
        Some(r) => Some(r.parse::<Mailbox>().map_err(|e| {
            cx.error(
                "newsletter.reply_to",
                format!("{r:?} is not an email address: {e}"),
            )
        })?),
        None => None,
    };
    let mut base_url = Url::parse(&n.base_url).map_err(|e| {
        cx.error(
            "newsletter.base_url",
            format!("{:?} is not a URL: {e}", n.base_url),
        )
    })?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
        return Err(cx.error(
            "newsletter.base_url",
            format!("{:?} must be an http:// or https:// URL", n.base_url),
        ));
    }
    if !base_url.path().ends_with('/') {
        let path = format!("{}/", base_url.path());
        base_url.set_path(&path);
    }
    let timezone: Tz = n.timezone.parse().map_err(|_| {
        cx.error(
            "newsletter.timezone",
            format!(
                "{:?} is not an IANA time zone (for example \"Asia/Karachi\")",
                n.timezone
            ),
        )
    })?;
    let list_id = match n.list_id {
        Some(id) => {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(cx.error(
                    "newsletter.list_id",
                    "must be letters, digits, dots and dashes (RFC 2919)",
                ));
            }
            id
        }
        None => format!("weekly.{}", from.email.domain()),
    };
    Ok(Newsletter {
        name: n.name,
        from,
        reply_to,
        subject_prefix: n
            .subject_prefix
            .map(|p| crate::text::clean_line(&p))
            .filter(|p| !p.is_empty()),
        base_url,
        postal_address: n.postal_address,
        timezone,
        language: n.language,
        list_id,
    })
}

fn database(cx: &Context, d: RawDatabase) -> Result<Database, ConfigError> {
    cx.nonempty("database.path", &d.path)?;
    Ok(Database {
        path: cx.resolve(&d.path),
        seed_subscribers: d.seed_subscribers.map(|p| cx.resolve(&p)),
    })
}

fn output(cx: &Context, o: RawOutput) -> Result<Output, ConfigError> {
    cx.nonempty("output.dir", &o.dir)?;
    Ok(Output {
        dir: cx.resolve(&o.dir),
    })
}

/// Where a feed (or a signal page) is: an http(s) URL or a file path.
fn location(cx: &Context, key: &str, url: &str) -> Result<FeedLocation, ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(FeedLocation::Http(
            Url::parse(url).map_err(|e| cx.error(key, format!("{url:?}: {e}")))?,
        ))
    } else if url.contains("://") {
        Err(cx.error(
            key,
            format!("{url:?}: only http://, https:// or a file path"),
        ))
    } else if url.trim().is_empty() {
        Err(cx.error(key, "must not be empty"))
    } else {
        Ok(FeedLocation::File(cx.resolve(url)))
    }
}

fn signals(cx: &Context, raw: RawSignals) -> Result<Signals, ConfigError> {
    let mut pages = Vec::new();
    for (i, p) in raw.pages.into_iter().enumerate() {
        let location = location(cx, &format!("signals.pages[{i}].url"), &p.url)?;
        if let Err(e) = scraper::Selector::parse(&p.selector) {
            return Err(cx.error(
                &format!("signals.pages[{i}].selector"),
                format!("{:?} is not a CSS selector: {e}", p.selector),
            ));
        }
        if !(p.weight > 0.0 && p.weight <= 10.0) {
            return Err(cx.error(
                &format!("signals.pages[{i}].weight"),
                "must be more than 0 and at most 10",
            ));
        }
        pages.push(SignalPage {
            source: FeedSource {
                url: p.url,
                location,
                name: None,
            },
            selector: p.selector,
            weight: p.weight,
        });
    }
    Ok(Signals { pages })
}

fn feeds(cx: &Context, raw: Vec<RawFeed>) -> Result<Vec<FeedSource>, ConfigError> {
    if raw.is_empty() {
        return Err(cx.error("feeds", "at least one [[feeds]] is needed"));
    }
    let mut feeds: Vec<FeedSource> = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let key = format!("feeds[{i}].url");
        let location = location(cx, &key, &f.url)?;
        if feeds.iter().any(|g| g.url == f.url) {
            return Err(cx.error(&key, format!("{:?} is listed twice", f.url)));
        }
        feeds.push(FeedSource {
            url: f.url,
            location,
            name: f.name,
        });
    }
    Ok(feeds)
}

fn fetch(cx: &Context, f: RawFetch) -> Result<Fetch, ConfigError> {
    if f.timeout_secs == 0 {
        return Err(cx.error("fetch.timeout_secs", "must be at least 1"));
    }
    if f.max_bytes < 1024 {
        return Err(cx.error("fetch.max_bytes", "must be at least 1024"));
    }
    Ok(Fetch {
        timeout_secs: f.timeout_secs,
        max_bytes: f.max_bytes,
    })
}

fn ranking(cx: &Context, r: RawRanking) -> Result<Ranking, ConfigError> {
    if r.stories == 0 || r.stories > 100 {
        return Err(cx.error("ranking.stories", "must be from 1 to 100"));
    }
    if !(r.half_life_hours.is_finite() && r.half_life_hours > 0.0) {
        return Err(cx.error("ranking.half_life_hours", "must be a positive number"));
    }
    if r.summary_chars < 40 {
        return Err(cx.error("ranking.summary_chars", "must be at least 40"));
    }
    if !(0.0..=1.0).contains(&r.click_weight) {
        return Err(cx.error(
            "ranking.click_weight",
            "must be from 0 (clicks do not count) to 1",
        ));
    }
    if r.click_issues == 0 || r.click_issues > 52 {
        return Err(cx.error("ranking.click_issues", "must be from 1 to 52"));
    }
    Ok(Ranking {
        stories: r.stories,
        views: r.views.map(|p| cx.resolve(&p)),
        max_per_topic: r.max_per_topic,
        max_per_source: r.max_per_source,
        half_life_hours: r.half_life_hours,
        summary_chars: r.summary_chars,
        click_weight: r.click_weight,
        click_issues: r.click_issues,
    })
}

fn analytics(cx: &Context, a: RawAnalytics) -> Result<Analytics, ConfigError> {
    if a.window_days == 0 || a.window_days > 366 {
        return Err(cx.error("analytics.window_days", "must be from 1 to 366"));
    }
    Ok(Analytics {
        clicks: a.clicks,
        per_subscriber: a.per_subscriber,
        window: chrono::Duration::days(a.window_days.into()),
    })
}

/// The shortest admin token accepted.
const MIN_ADMIN_TOKEN: usize = 16;

fn server(cx: &Context, s: RawServer) -> Result<Server, ConfigError> {
    let listen = s.listen.parse().map_err(|_| {
        cx.error(
            "server.listen",
            format!("{:?} is not an address:port like 127.0.0.1:8080", s.listen),
        )
    })?;
    if s.confirm_hours == 0 {
        return Err(cx.error("server.confirm_hours", "must be at least 1"));
    }
    // An empty token would open the preview to anyone who sends `?token=`.
    if let Some(token) = &s.admin_token {
        if token.expose().trim().chars().count() < MIN_ADMIN_TOKEN {
            return Err(cx.error(
                "server.admin_token",
                format!("must be at least {MIN_ADMIN_TOKEN} characters (unset it to allow loopback clients only)"),
            ));
        }
        // It travels in a cookie and a header: visible ASCII, no separators.
        if !token
            .expose()
            .chars()
            .all(|c| c.is_ascii_graphic() && !";,\"\\".contains(c))
        {
            return Err(cx.error(
                "server.admin_token",
                "must be printable ASCII without spaces, quotes, commas or semicolons (for example `openssl rand -hex 24`)",
            ));
        }
    }
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    cx.error(
                        &format!("server.trusted_proxies[{i}]"),
                        format!("{p:?} is not an IP address or network like 10.0.0.0/8"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Server {
        listen,
        trusted_proxies,
        forwarded_header: s.forwarded_header,
        admin_token: s.admin_token,
        subscribe_per_hour: s.subscribe_per_hour,
        confirm_hours: s.confirm_hours,
    })
}

fn schedule(cx: &Context, s: RawSchedule) -> Result<Schedule, ConfigError> {
    let cron = |key: &str, v: Option<String>| -> Result<Option<croner::Cron>, ConfigError> {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.parse::<croner::Cron>().map_err(|e| {
                    cx.error(
                        key,
                        format!("{v:?} is not a cron expression like \"0 8 * * MON\": {e}"),
                    )
                })
            })
            .transpose()
    };
    Ok(Schedule {
        fetch: cron("schedule.fetch", s.fetch)?,
        send: cron("schedule.send", s.send)?,
        max_lateness: humantime::parse_duration(&s.max_lateness).map_err(|e| {
            cx.error(
                "schedule.max_lateness",
                format!(
                    "{:?} is not a duration like \"1d\" or \"12h\": {e}",
                    s.max_lateness
                ),
            )
        })?,
        require_approval: s.require_approval,
    })
}

fn bounces(cx: &Context, b: RawBounces) -> Result<Bounces, ConfigError> {
    if b.soft_limit == 0 {
        return Err(cx.error("bounces.soft_limit", "must be at least 1"));
    }
    Ok(Bounces {
        maildir: b.maildir.map(|p| cx.resolve(&p)),
        soft_limit: b.soft_limit,
    })
}
