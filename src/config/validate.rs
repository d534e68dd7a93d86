//! Validation: turns the raw file types into the public [`Config`], checking every
//! value and naming the key of the first that is wrong.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;
use url::Url;

use super::raw::RawConfig;
use super::{
    Bounces, Config, ConfigError, Database, Dkim, FeedLocation, FeedSource, Fetch, Newsletter,
    Output, Ranking, Relay, Schedule, Secret, Server, Smtp, SmtpServer, Transport,
};

pub(super) fn key_error(file: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        file: file.into(),
        key: key.into(),
        message: message.into(),
    }
}

pub(super) fn validate(
    raw: RawConfig,
    file: &str,
    base_dir: &Path,
    secret: Option<Secret>,
    env: &[(String, String)],
) -> Result<Config, ConfigError> {
    let n = raw.newsletter;
    let nonempty = |key: &str, v: &str| {
        if v.trim().is_empty() {
            Err(key_error(file, key, "must not be empty"))
        } else {
            Ok(())
        }
    };
    nonempty("newsletter.name", &n.name)?;
    nonempty("newsletter.postal_address", &n.postal_address)?;
    let from: Mailbox = n.from.parse().map_err(|e| {
        key_error(
            file,
            "newsletter.from",
            format!("{:?} is not an email address: {e}", n.from),
        )
    })?;
    let reply_to = match &n.reply_to {
        Some(r) => Some(r.parse::<Mailbox>().map_err(|e| {
            key_error(
                file,
                "newsletter.reply_to",
                format!("{r:?} is not an email address: {e}"),
            )
        })?),
        None => None,
    };
    let mut base_url = Url::parse(&n.base_url).map_err(|e| {
        key_error(
            file,
            "newsletter.base_url",
            format!("{:?} is not a URL: {e}", n.base_url),
        )
    })?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
        return Err(key_error(
            file,
            "newsletter.base_url",
            format!("{:?} must be an http:// or https:// URL", n.base_url),
        ));
    }
    if !base_url.path().ends_with('/') {
        let path = format!("{}/", base_url.path());
        base_url.set_path(&path);
    }
    let timezone: Tz = n.timezone.parse().map_err(|_| {
        key_error(
            file,
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
                return Err(key_error(
                    file,
                    "newsletter.list_id",
                    "must be letters, digits, dots and dashes (RFC 2919)",
                ));
            }
            id
        }
        None => format!("weekly.{}", from.email.domain()),
    };

    let resolve = |p: &str| -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }
    };
    nonempty("database.path", &raw.database.path)?;
    nonempty("output.dir", &raw.output.dir)?;

    if raw.feeds.is_empty() {
        return Err(key_error(file, "feeds", "at least one [[feeds]] is needed"));
    }
    let mut feeds = Vec::new();
    for (i, f) in raw.feeds.into_iter().enumerate() {
        let key = format!("feeds[{i}].url");
        let location = if f.url.starts_with("http://") || f.url.starts_with("https://") {
            FeedLocation::Http(
                Url::parse(&f.url)
                    .map_err(|e| key_error(file, &key, format!("{:?}: {e}", f.url)))?,
            )
        } else if f.url.contains("://") {
            return Err(key_error(
                file,
                &key,
                format!("{:?}: only http://, https:// or a file path", f.url),
            ));
        } else if f.url.trim().is_empty() {
            return Err(key_error(file, &key, "must not be empty"));
        } else {
            FeedLocation::File(resolve(&f.url))
        };
        if feeds.iter().any(|g: &FeedSource| g.url == f.url) {
            return Err(key_error(
                file,
                &key,
                format!("{:?} is listed twice", f.url),
            ));
        }
        feeds.push(FeedSource {
            url: f.url,
            location,
            name: f.name,
        });
    }

    if raw.fetch.timeout_secs == 0 {
        return Err(key_error(file, "fetch.timeout_secs", "must be at least 1"));
    }
    if raw.fetch.max_bytes < 1024 {
        return Err(key_error(file, "fetch.max_bytes", "must be at least 1024"));
    }
    let r = raw.ranking;
    if r.stories == 0 || r.stories > 100 {
        return Err(key_error(file, "ranking.stories", "must be from 1 to 100"));
    }
    if !(r.half_life_hours.is_finite() && r.half_life_hours > 0.0) {
        return Err(key_error(
            file,
            "ranking.half_life_hours",
            "must be a positive number",
        ));
    }
    if r.summary_chars < 40 {
        return Err(key_error(
            file,
            "ranking.summary_chars",
            "must be at least 40",
        ));
    }

    let s = raw.smtp;
    let transport = parse_transport(&s.url, s.password, &resolve)
        .map_err(|m| key_error(file, "smtp.url", m))?;
    if s.concurrency == 0 || s.concurrency > 1000 {
        return Err(key_error(
            file,
            "smtp.concurrency",
            "must be from 1 to 1000",
        ));
    }
    if !(s.rate.is_finite() && s.rate >= 0.0) {
        return Err(key_error(
            file,
            "smtp.rate",
            "must be a number of messages per second, 0 for unlimited",
        ));
    }
    if s.timeout_secs == 0 {
        return Err(key_error(file, "smtp.timeout_secs", "must be at least 1"));
    }
    if s.max_attempts == 0 {
        return Err(key_error(file, "smtp.max_attempts", "must be at least 1"));
    }
    if let Some(m) = &s.unsubscribe_mailto {
        m.parse::<lettre::Address>().map_err(|e| {
            key_error(
                file,
                "smtp.unsubscribe_mailto",
                format!("{m:?} is not an email address: {e}"),
            )
        })?;
    }
    let bounce_domain = match &s.bounce_domain {
        Some(d) => {
            format!("bounce@{d}")
                .parse::<lettre::Address>()
                .map_err(|e| {
                    key_error(
                        file,
                        "smtp.bounce_domain",
                        format!("{d:?} is not a mail domain: {e}"),
                    )
                })?;
            Some(d.clone())
        }
        None => None,
    };
    let mut relays = Vec::new();
    for (i, r) in s.relays.iter().enumerate() {
        let key = |k: &str| format!("smtp.relays[{i}].{k}");
        if matches!(transport, Transport::Outbox(_)) {
            return Err(key_error(
                file,
                "smtp.relays",
                "relays need an smtp:// or smtps:// [smtp] url, not the file outbox",
            ));
        }
        // Read when the relay is used, so commands that send nothing do not need it.
        let password = r.password_env.as_ref().map(|var| {
            Secret(
                env.iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            )
        });
        if let Some(var) = &r.password_env {
            if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || var.is_empty() {
                return Err(key_error(
                    file,
                    &key("password_env"),
                    format!("{var:?} is not an environment variable name"),
                ));
            }
        }
        let Transport::Smtp(server) = parse_transport(&r.url, password, &resolve)
            .map_err(|m| key_error(file, &key("url"), m))?
        else {
            return Err(key_error(
                file,
                &key("url"),
                "a relay is an smtp:// or smtps:// URL",
            ));
        };
        let concurrency = r.concurrency.unwrap_or(s.concurrency);
        if concurrency == 0 || concurrency > 1000 {
            return Err(key_error(
                file,
                &key("concurrency"),
                "must be from 1 to 1000",
            ));
        }
        let rate = r.rate.unwrap_or(0.0);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(key_error(
                file,
                &key("rate"),
                "must be messages per second, 0 for unlimited",
            ));
        }
        relays.push(Relay {
            server,
            concurrency,
            rate,
            per_hour: r.per_hour.unwrap_or(0),
        });
    }
    if raw.bounces.soft_limit == 0 {
        return Err(key_error(file, "bounces.soft_limit", "must be at least 1"));
    }
    let dkim = s.dkim.map(|d| Dkim {
        domain: d.domain,
        selector: d.selector,
        key_file: resolve(&d.key_file),
    });

    let listen = raw.server.listen.parse().map_err(|_| {
        key_error(
            file,
            "server.listen",
            format!(
                "{:?} is not an address:port like 127.0.0.1:8080",
                raw.server.listen
            ),
        )
    })?;
    if raw.server.confirm_hours == 0 {
        return Err(key_error(
            file,
            "server.confirm_hours",
            "must be at least 1",
        ));
    }
    let cron = |key: &str, v: &Option<String>| -> Result<Option<croner::Cron>, ConfigError> {
        v.as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.parse::<croner::Cron>().map_err(|e| {
                    key_error(
                        file,
                        key,
                        format!("{v:?} is not a cron expression like \"0 8 * * MON\": {e}"),
                    )
                })
            })
            .transpose()
    };
    let schedule = Schedule {
        fetch: cron("schedule.fetch", &raw.schedule.fetch)?,
        send: cron("schedule.send", &raw.schedule.send)?,
        max_lateness: humantime::parse_duration(&raw.schedule.max_lateness).map_err(|e| {
            key_error(
                file,
                "schedule.max_lateness",
                format!(
                    "{:?} is not a duration like \"1d\" or \"12h\": {e}",
                    raw.schedule.max_lateness
                ),
            )
        })?,
    };

    Ok(Config {
        base_dir: base_dir.to_path_buf(),
        newsletter: Newsletter {
            name: n.name,
            from,
            reply_to,
            base_url,
            postal_address: n.postal_address,
            timezone,
            language: n.language,
            list_id,
        },
        database: Database {
            path: resolve(&raw.database.path),
            seed_subscribers: raw.database.seed_subscribers.as_deref().map(resolve),
        },
        output: Output {
            dir: resolve(&raw.output.dir),
        },
        feeds,
        fetch: Fetch {
            timeout_secs: raw.fetch.timeout_secs,
            max_bytes: raw.fetch.max_bytes,
        },
        ranking: Ranking {
            stories: r.stories,
            views: r.views.as_deref().map(resolve),
            max_per_topic: r.max_per_topic,
            max_per_source: r.max_per_source,
            half_life_hours: r.half_life_hours,
            summary_chars: r.summary_chars,
        },
        smtp: Smtp {
            transport,
            require_tls: s.require_tls,
            concurrency: s.concurrency,
            rate: s.rate,
            per_hour: s.per_hour,
            timeout_secs: s.timeout_secs,
            max_attempts: s.max_attempts,
            on_uncertain: s.on_uncertain,
            dkim,
            unsubscribe_mailto: s.unsubscribe_mailto,
            bounce_domain,
            relays,
        },
        bounces: Bounces {
            maildir: raw.bounces.maildir.as_deref().map(resolve),
            soft_limit: raw.bounces.soft_limit,
        },
        server: Server {
            listen,
            admin_token: raw.server.admin_token,
            subscribe_per_hour: raw.server.subscribe_per_hour,
            confirm_hours: raw.server.confirm_hours,
        },
        schedule,
        secret,
    })
}

pub(super) fn parse_transport(
    url: &str,
    password: Option<Secret>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Transport, String> {
    if let Some(dir) = url.strip_prefix("file:") {
        let dir = dir.trim_start_matches("//");
        return Ok(Transport::Outbox(if dir.is_empty() {
            None
        } else {
            Some(resolve(dir))
        }));
    }
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let implicit_tls = match parsed.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!(
                "scheme {other:?} is not one of smtp://, smtps:// or file:DIR"
            ))
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if parsed.password().is_some() {
        return Err("put the password in GAZETTE_SMTP__PASSWORD, not in the URL".into());
    }
    let user = match parsed.username() {
        "" => None,
        u => Some(
            percent_decode(u).ok_or_else(|| format!("the user in {url:?} is not valid UTF-8"))?,
        ),
    };
    Ok(Transport::Smtp(SmtpServer {
        host,
        port: parsed
            .port()
            .unwrap_or(if implicit_tls { 465 } else { 587 }),
        implicit_tls,
        user,
        password,
    }))
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("u={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}
