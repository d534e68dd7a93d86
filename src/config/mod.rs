//! Configuration: reads `config.toml` (or the file given with `--config`), lays
//! `GAZETTE_<SECTION>__<KEY>` environment variables over it, and validates the
//! result into one [`Config`]. In: TOML text, the config file's directory (relative
//! paths are resolved against it) and the environment. Out: a `Config` whose every
//! value has been checked, or a [`ConfigError`] naming the key that is wrong.
//! Secrets (the SMTP password, the token secret, the admin token) are only ever read
//! from the environment and never printed.
//!
//! The parts, in the order a config goes through them: `raw` is the file's shape
//! (serde types that refuse unknown keys), `env` lays the environment over it and
//! remembers which variable set which key, and `validate` checks each section into
//! the public types defined here.

mod env;
mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;
use url::Url;

use env::Overlay;
use validate::{validate, Context};

/// The prefix of every environment variable that overrides a config key.
pub const ENV_PREFIX: &str = "GAZETTE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read. The I/O error is part of the message and not
    /// a `source`, so that a printed chain (`{:#}`) says it once, before the hint.
    #[error(
        "{file}: cannot read: {error}; pick another file with --config PATH or GAZETTE_CONFIG"
    )]
    Read { file: String, error: std::io::Error },
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
    pub signals: Signals,
    pub theme: crate::theme::Theme,
    pub analytics: Analytics,
    /// `GAZETTE_SECRET`: the HMAC key of every token in links.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: String,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Before the lead headline in the default subject; none by default.
    pub subject_prefix: Option<String>,
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

/// `[signals]`: what the site says matters, besides its feeds.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub pages: Vec<SignalPage>,
}

/// `[[signals.pages]]`: an HTML page of the site (its "Hot this week" or "Most
/// read" list): every story linked under `selector` counts as listed, the first
/// fully (`weight`), later ones less.
#[derive(Debug, Clone)]
pub struct SignalPage {
    /// Where the page is, read like a feed's (http(s) or a file).
    pub source: FeedSource,
    pub selector: String,
    pub weight: f64,
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

    /// Its URL when it is read over HTTP(S): what relative links resolve against.
    pub fn http_url(&self) -> Option<&url::Url> {
        match &self.location {
            FeedLocation::Http(u) => Some(u),
            FeedLocation::File(_) => None,
        }
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
    /// How strongly readers' clicks per topic weigh on scores (0: not at all).
    pub click_weight: f64,
    /// How many recent issues' clicks that weighs.
    pub click_issues: usize,
}

/// `[analytics]`: what is counted of readers' clicks.
#[derive(Debug, Clone)]
pub struct Analytics {
    /// Story links in mail go through `/c/<id>`, which counts them.
    pub clicks: bool,
    /// Also record which subscriber clicked what (an explicit opt-in).
    pub per_subscriber: bool,
    /// How long after an issue's send began its clicks are de-duplicated.
    pub window: chrono::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UncertainPolicy {
    /// A delivery that may or may not have reached the server is not sent again.
    Skip,
    /// It is sent again: a possible duplicate rather than a possible miss.
    Resend,
}

/// Whether gazette's own SMTP client sends a message's commands in one batch
/// (RFC 2920) instead of waiting for each reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipelining {
    /// When the server's EHLO reply advertises PIPELINING.
    #[default]
    Auto,
    /// Even when the server does not advertise it.
    Always,
    /// One command at a time.
    Never,
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

/// `[smtp] ca_file`: where it was, and its PEM text.
#[derive(Debug, Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub transport: Transport,
    pub require_tls: bool,
    /// Log in (AUTH) on a connection without TLS; off unless set on purpose:
    /// the password would cross the network in clear text.
    pub allow_plaintext_auth: bool,
    pub concurrency: usize,
    pub rate: f64,
    /// At most this many messages in any sliding hour (0: no limit).
    pub per_hour: u32,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub on_uncertain: UncertainPolicy,
    /// The first retry's delay and the unit of the backoff (1 s, 2 s, 4 s …) and of
    /// the slow-down pause after a 421 (`retry_base_ms`; tests make it small).
    pub retry_base: std::time::Duration,
    /// Whether to pipeline SMTP commands (RFC 2920).
    pub pipelining: Pipelining,
    pub dkim: Option<Dkim>,
    /// The address one-click mail unsubscribes go to (`List-Unsubscribe: <mailto:…>`).
    pub unsubscribe_mailto: Option<String>,
    /// When set, each message's envelope sender is `bounce+<token>@<this>` (VERP),
    /// so a bounce names its subscriber.
    pub bounce_domain: Option<String>,
    /// The `Feedback-ID` header (Gmail's feedback loop), `{week}` replaced by
    /// the issue's week: `{week}:weekly:news:example`.
    pub feedback_id: Option<String>,
    /// A PEM certificate (authority) trusted besides the system's web roots, for
    /// a relay with its own CA; read and checked once, when the config is loaded.
    pub ca_file: Option<CaFile>,
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
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` and
    /// `Forwarded` headers name the real client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header the trusted proxies set (only that one is read: a client
    /// can send the other itself).
    pub forwarded_header: crate::web::client::ForwardedHeader,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// When `serve` fetches the feeds (a cron expression in the newsletter's zone).
    pub fetch: Option<croner::Cron>,
    /// When `serve` runs the weekly job.
    pub send: Option<croner::Cron>,
    /// A send missed by more than this (the server was down) is skipped, not caught up.
    pub max_lateness: std::time::Duration,
    /// Send only an issue an editor approved (`gazette approve`, or the desk).
    pub require_approval: bool,
}

#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

/// Keys that hold secrets: refused in the file, accepted from the environment.
const SECRET_KEYS: &[&str] = &["smtp.password", "server.admin_token"];

impl Config {
    /// Reads and validates the config file, with the process environment laid over it.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.display().to_string(),
            error,
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
        let overlay = Overlay::from_env(&env);
        let raw = overlay.read(&table, file)?;
        let cx = Context {
            file,
            base_dir,
            env: &env,
            overlay: &overlay,
        };
        validate(raw, &cx, env::secret(&env))
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

/// A TOML error as a person reads it: `line N: what is wrong` (shared by
/// config.toml and the editor's issue.toml).
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
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

#[cfg(test)]
mod tests;
