//! Configuration: reads `config.toml` (or the file given with `--config`), lays
//! `GAZETTE_<SECTION>__<KEY>` environment variables over it, and validates the
//! result into one [`Config`]. In: TOML text, the config file's directory (relative
//! paths are resolved against it) and the environment. Out: a `Config` whose every
//! value has been checked, or a [`ConfigError`] naming the key that is wrong.
//! Secrets (the SMTP password, the token secret, the admin token) are only ever read
//! from the environment and never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;
use url::Url;

/// The prefix of every environment variable that overrides a config key.
pub const ENV_PREFIX: &str = "GAZETTE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// A value that must never be printed: its `Debug` and `Display` say `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the config file; relative paths in it are resolved against this.
    pub base_dir: PathBuf,
    pub newsletter: Newsletter,
    pub database: Database,
    pub output: Output,
    pub feeds: Vec<FeedSource>,
    pub fetch: Fetch,
    pub ranking: Ranking,
    pub smtp: Smtp,
    pub server: Server,
    pub schedule: Schedule,
    pub bounces: Bounces,
    /// `GAZETTE_SECRET`: the HMAC key of every token in links.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: String,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub base_url: Url,
    pub postal_address: String,
    pub timezone: Tz,
    pub language: String,
    /// Identifies the list in `List-Id` and in tokens, e.g. `weekly.fintech.example`.
    pub list_id: String,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub path: PathBuf,
    /// A `email,name` CSV imported once, when the database is first created.
    pub seed_subscribers: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Output {
    /// Where built issues go: `<dir>/<week>/digest.html` and friends.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLocation {
    Http(Url),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct FeedSource {
    /// The `url` as written in the config: the feed's identity in the database.
    pub url: String,
    pub location: FeedLocation,
    pub name: Option<String>,
}

impl FeedSource {
    /// What to call this feed in messages: its name, else its url.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }
}

#[derive(Debug, Clone)]
pub struct Fetch {
    pub timeout_secs: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Ranking {
    pub stories: usize,
    pub views: Option<PathBuf>,
    pub max_per_topic: usize,
    pub max_per_source: usize,
    pub half_life_hours: f64,
    pub summary_chars: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UncertainPolicy {
    /// A delivery that may or may not have reached the server is not sent again.
    Skip,
    /// It is sent again: a possible duplicate rather than a possible miss.
    Resend,
}

#[derive(Debug, Clone)]
pub enum Transport {
    /// `file:DIR`: one `.eml` per message; DIR relative to the config file.
    /// An empty DIR means `<output>/<week>/outbox`.
    Outbox(Option<PathBuf>),
    Smtp(SmtpServer),
}

#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub transport: Transport,
    pub require_tls: bool,
    pub concurrency: usize,
    pub rate: f64,
    /// At most this many messages in any sliding hour (0: no limit).
    pub per_hour: u32,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub on_uncertain: UncertainPolicy,
    pub dkim: Option<Dkim>,
    /// The address one-click mail unsubscribes go to (`List-Unsubscribe: <mailto:…>`).
    pub unsubscribe_mailto: Option<String>,
    /// When set, each message's envelope sender is `bounce+<token>@<this>` (VERP),
    /// so a bounce names its subscriber.
    pub bounce_domain: Option<String>,
    /// More relays beside `url`, each with its own connections and limits.
    pub relays: Vec<Relay>,
}

#[derive(Debug, Clone)]
pub struct Relay {
    pub server: SmtpServer,
    pub concurrency: usize,
    pub rate: f64,
    pub per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct Bounces {
    /// A Maildir that `serve` reads for bounces and complaints on its fetch schedule.
    pub maildir: Option<PathBuf>,
    /// Soft bounces (4.x.x), each from a different issue, that make a subscriber bounced.
    pub soft_limit: u32,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: std::net::SocketAddr,
    /// `GAZETTE_SERVER__ADMIN_TOKEN`: when set, the preview needs it, from anywhere.
    pub admin_token: Option<Secret>,
    /// Subscribe requests one client address may make per hour.
    pub subscribe_per_hour: u32,
    /// How long a confirmation link stays good.
    pub confirm_hours: u32,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// When `serve` fetches the feeds (a cron expression in the newsletter's zone).
    pub fetch: Option<croner::Cron>,
    /// When `serve` runs the weekly job.
    pub send: Option<croner::Cron>,
    /// A send missed by more than this (the server was down) is skipped, not caught up.
    pub max_lateness: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

// ---- the file's shape: every section denies unknown keys ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    newsletter: RawNewsletter,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    feeds: Vec<RawFeed>,
    #[serde(default)]
    fetch: RawFetch,
    #[serde(default)]
    ranking: RawRanking,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    bounces: RawBounces,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBounces {
    maildir: Option<String>,
    soft_limit: u32,
}

impl Default for RawBounces {
    fn default() -> Self {
        RawBounces {
            maildir: None,
            soft_limit: 3,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    subscribe_per_hour: u32,
    confirm_hours: u32,
    /// Only ever set from `GAZETTE_SERVER__ADMIN_TOKEN`; refused in the file.
    admin_token: Option<Secret>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            subscribe_per_hour: 5,
            confirm_hours: 48,
            admin_token: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    fetch: Option<String>,
    send: Option<String>,
    max_lateness: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            fetch: None,
            send: None,
            max_lateness: "1d".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewsletter {
    name: String,
    from: String,
    reply_to: Option<String>,
    base_url: String,
    postal_address: String,
    timezone: String,
    #[serde(default = "default_language")]
    language: String,
    list_id: Option<String>,
}

fn default_language() -> String {
    "en".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: String,
    seed_subscribers: Option<String>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            path: "gazette.db".into(),
            seed_subscribers: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dir: String,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            dir: "digests".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    url: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFetch {
    timeout_secs: u64,
    max_bytes: u64,
}

impl Default for RawFetch {
    fn default() -> Self {
        RawFetch {
            timeout_secs: 20,
            max_bytes: 5 * 1024 * 1024,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRanking {
    stories: usize,
    views: Option<String>,
    max_per_topic: usize,
    max_per_source: usize,
    half_life_hours: f64,
    summary_chars: usize,
}

impl Default for RawRanking {
    fn default() -> Self {
        RawRanking {
            stories: 8,
            views: None,
            max_per_topic: 3,
            max_per_source: 0,
            half_life_hours: 168.0,
            summary_chars: 280,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSmtp {
    url: String,
    require_tls: bool,
    concurrency: usize,
    rate: f64,
    per_hour: u32,
    timeout_secs: u64,
    max_attempts: u32,
    on_uncertain: UncertainPolicy,
    unsubscribe_mailto: Option<String>,
    bounce_domain: Option<String>,
    relays: Vec<RawRelay>,
    dkim: Option<RawDkim>,
    /// Only ever set from `GAZETTE_SMTP__PASSWORD`; refused in the file.
    password: Option<Secret>,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            url: "file:".into(),
            require_tls: false,
            concurrency: 4,
            rate: 0.0,
            per_hour: 0,
            timeout_secs: 30,
            max_attempts: 5,
            on_uncertain: UncertainPolicy::Skip,
            unsubscribe_mailto: None,
            bounce_domain: None,
            relays: Vec::new(),
            dkim: None,
            password: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    url: String,
    concurrency: Option<usize>,
    rate: Option<f64>,
    per_hour: Option<u32>,
    /// The name of the environment variable that holds this relay's password.
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: String,
    selector: String,
    key_file: String,
}

/// Keys that hold secrets: refused in the file, accepted from the environment.
const SECRET_KEYS: &[&str] = &["smtp.password", "server.admin_token"];

impl Config {
    /// Reads and validates the config file, with the process environment laid over it.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Config::parse(
            &text,
            &path.display().to_string(),
            &base_dir,
            std::env::vars(),
        )
    }

    /// Parses config text. `file` names it in errors; `env` is the environment
    /// (passed in so tests do not depend on the process's).
    pub fn parse(
        text: &str,
        file: &str,
        base_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    file: file.to_string(),
                    message: describe_toml_error(text, &e),
                })?;
        for key in SECRET_KEYS {
            let (section, name) = key.split_once('.').expect("section.key");
            if let Some(toml::Value::Table(t)) = table.get(section) {
                if t.contains_key(name) {
                    return Err(ConfigError::Key {
                        file: file.into(),
                        key: (*key).into(),
                        message: format!(
                            "secrets are not read from the config file; set {} instead",
                            env_var_for(key)
                        ),
                    });
                }
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut secret = None;
        let mut overrides: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (var, value) in env.iter().cloned() {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "SECRET" {
                if !value.is_empty() {
                    secret = Some(Secret(value));
                }
                continue;
            }
            if !rest.contains("__") {
                // GAZETTE_LOG and the like are not config keys.
                continue;
            }
            let key = rest
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            overrides.insert(key, (var, value));
        }
        let mut as_string: Vec<String> = Vec::new();
        let raw: RawConfig = loop {
            let mut merged = table.clone();
            for (key, (var, value)) in &overrides {
                let typed = if as_string.contains(key) {
                    toml::Value::String(value.clone())
                } else {
                    scalar_from_env(value)
                };
                set_path(&mut merged, key, typed).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
            }
            match serde_path_to_error::deserialize::<_, RawConfig>(toml::Value::Table(merged)) {
                Ok(raw) => break raw,
                Err(e) => {
                    let key = e.path().to_string();
                    // A value from the environment that looked like a number but is
                    // wanted as text (a numeric password, say): try it as text.
                    if overrides.contains_key(&key) && !as_string.contains(&key) {
                        as_string.push(key);
                        continue;
                    }
                    let message = e.into_inner().to_string();
                    let message = message.lines().next().unwrap_or("").to_string();
                    return Err(match overrides.get(&key) {
                        Some((var, _)) => ConfigError::Env {
                            var: var.clone(),
                            message: format!("key `{key}`: {message}"),
                        },
                        None => ConfigError::Key {
                            file: file.into(),
                            key: if key == "." {
                                "(top level)".into()
                            } else {
                                key
                            },
                            message,
                        },
                    });
                }
            }
        };
        validate(raw, file, base_dir, secret, &env)
    }

    /// The directory of one week's built issue.
    pub fn week_dir(&self, week: &crate::week::IsoWeek) -> PathBuf {
        self.output.dir.join(week.to_string())
    }

    /// True when messages go to files rather than to a mail server.
    pub fn is_outbox(&self) -> bool {
        matches!(self.smtp.transport, Transport::Outbox(_))
    }
}

/// The environment variable that sets `section.key`.
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.split('.')
            .map(|p| p.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__")
    )
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let first = e
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {first}")
        }
        None => first,
    }
}

fn scalar_from_env(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = value.parse::<f64>() {
        if value.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(value.to_string())
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut current = table;
    for part in &parts[..parts.len() - 1] {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{part}` is a list or a value, not a section; it cannot be set from the environment"
                ))
            }
        };
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn key_error(file: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        file: file.into(),
        key: key.into(),
        message: message.into(),
    }
}

fn validate(
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

fn parse_transport(
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

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("u={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[newsletter]
name = "Weekly"
from = "Weekly <news@example.com>"
base_url = "https://example.com/news"
postal_address = "1 Main St"
timezone = "Asia/Karachi"

[[feeds]]
url = "feed.xml"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            "config.toml",
            Path::new("/etc/gazette"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let c = parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.ranking.stories, 8);
        assert_eq!(c.database.path, Path::new("/etc/gazette/gazette.db"));
        assert_eq!(
            c.feeds[0].location,
            FeedLocation::File("/etc/gazette/feed.xml".into())
        );
        assert_eq!(c.newsletter.base_url.as_str(), "https://example.com/news/");
        assert_eq!(c.newsletter.list_id, "weekly.example.com");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\n[ranking]\nstoriez = 3\n");
        let e = parse(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("ranking") && e.contains("storiez"), "{e}");
    }

    #[test]
    fn wrong_type_and_bad_values_are_named() {
        let e = parse(&format!("{MINIMAL}\n[ranking]\nstories = \"ten\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ranking.stories"), "{e}");
        let e = parse(&MINIMAL.replace("Asia/Karachi", "Mars/Olympus"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("newsletter.timezone"), "{e}");
        let e = parse(
            &MINIMAL.replace("Weekly <news@example.com>", "not an address"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("newsletter.from"), "{e}");
    }

    #[test]
    fn environment_overrides_file_and_names_itself_on_error() {
        let c = parse(
            MINIMAL,
            &[
                ("GAZETTE_DATABASE__PATH", "/var/lib/g.db"),
                ("GAZETTE_RANKING__STORIES", "5"),
                ("GAZETTE_SMTP__PASSWORD", "12345"),
                ("GAZETTE_SMTP__URL", "smtp://mailer@relay.example:2525"),
                ("GAZETTE_SECRET", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(c.database.path, Path::new("/var/lib/g.db"));
        assert_eq!(c.ranking.stories, 5);
        let Transport::Smtp(s) = &c.smtp.transport else {
            panic!("smtp expected")
        };
        assert_eq!(s.password.as_ref().unwrap().expose(), "12345");
        assert_eq!(s.user.as_deref(), Some("mailer"));
        assert_eq!(s.port, 2525);
        assert_eq!(c.secret.as_ref().unwrap().expose(), "s3cret");
        // Secrets never show in debug output.
        let debug = format!("{c:?}");
        assert!(!debug.contains("12345") && !debug.contains("s3cret"));

        let e = parse(MINIMAL, &[("GAZETTE_RANKING__STORIES", "many")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("GAZETTE_RANKING__STORIES"), "{e}");
    }

    #[test]
    fn password_in_file_is_refused() {
        let e = parse(&format!("{MINIMAL}\n[smtp]\npassword = \"x\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("smtp.password") && e.contains("GAZETTE_SMTP__PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = parse("[newsletter]\nname = \n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
