//! The config file's shape, as serde reads it: one `Raw*` struct per section, every
//! one with `deny_unknown_fields` so a misspelt key is an error, and with the
//! defaults of the keys that may be left out. Nothing here is checked beyond its
//! type; [`super::validate`] turns these into the public types.

use serde::Deserialize;

use super::{Pipelining, Secret, UncertainPolicy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) newsletter: RawNewsletter,
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) output: RawOutput,
    #[serde(default)]
    pub(super) feeds: Vec<RawFeed>,
    #[serde(default)]
    pub(super) fetch: RawFetch,
    #[serde(default)]
    pub(super) ranking: RawRanking,
    #[serde(default)]
    pub(super) smtp: RawSmtp,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) bounces: RawBounces,
    #[serde(default)]
    pub(super) signals: RawSignals,
    #[serde(default)]
    pub(super) theme: RawTheme,
    #[serde(default)]
    pub(super) analytics: RawAnalytics,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAnalytics {
    pub(super) clicks: bool,
    pub(super) per_subscriber: bool,
    pub(super) window_days: u32,
}

impl Default for RawAnalytics {
    fn default() -> Self {
        RawAnalytics {
            clicks: true,
            per_subscriber: false,
            window_days: 30,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTheme {
    pub(super) accent: Option<String>,
    pub(super) font: Option<String>,
    pub(super) headline_font: Option<String>,
    pub(super) footer_note: Option<String>,
    pub(super) logo: Option<RawLogo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogo {
    pub(super) url: String,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) alt: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSignals {
    pub(super) pages: Vec<RawSignalPage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignalPage {
    pub(super) url: String,
    pub(super) selector: String,
    #[serde(default = "default_weight")]
    pub(super) weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBounces {
    pub(super) maildir: Option<String>,
    pub(super) soft_limit: u32,
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
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) subscribe_per_hour: u32,
    pub(super) confirm_hours: u32,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) forwarded_header: crate::web::client::ForwardedHeader,
    /// Only ever set from `GAZETTE_SERVER__ADMIN_TOKEN`; refused in the file.
    pub(super) admin_token: Option<Secret>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            subscribe_per_hour: 5,
            confirm_hours: 48,
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            admin_token: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSchedule {
    pub(super) fetch: Option<String>,
    pub(super) send: Option<String>,
    pub(super) max_lateness: String,
    pub(super) require_approval: bool,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            fetch: None,
            send: None,
            max_lateness: "1d".into(),
            require_approval: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNewsletter {
    pub(super) name: String,
    pub(super) from: String,
    pub(super) reply_to: Option<String>,
    /// Put before the lead headline in the default subject ("Fintech Weekly: …").
    pub(super) subject_prefix: Option<String>,
    pub(super) base_url: String,
    pub(super) postal_address: String,
    pub(super) timezone: String,
    #[serde(default = "default_language")]
    pub(super) language: String,
    pub(super) list_id: Option<String>,
}

fn default_language() -> String {
    "en".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) path: String,
    pub(super) seed_subscribers: Option<String>,
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
pub(super) struct RawOutput {
    pub(super) dir: String,
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
pub(super) struct RawFeed {
    pub(super) url: String,
    pub(super) name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFetch {
    pub(super) timeout_secs: u64,
    pub(super) max_bytes: u64,
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
pub(super) struct RawRanking {
    pub(super) stories: usize,
    pub(super) views: Option<String>,
    pub(super) max_per_topic: usize,
    pub(super) max_per_source: usize,
    pub(super) half_life_hours: f64,
    pub(super) summary_chars: usize,
    pub(super) click_weight: f64,
    pub(super) click_issues: usize,
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
            click_weight: 0.5,
            click_issues: 6,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSmtp {
    pub(super) url: String,
    pub(super) require_tls: bool,
    pub(super) allow_plaintext_auth: bool,
    pub(super) concurrency: usize,
    pub(super) rate: f64,
    pub(super) per_hour: u32,
    pub(super) timeout_secs: u64,
    pub(super) max_attempts: u32,
    pub(super) on_uncertain: UncertainPolicy,
    pub(super) retry_base_ms: u64,
    pub(super) pipelining: Pipelining,
    pub(super) unsubscribe_mailto: Option<String>,
    pub(super) bounce_domain: Option<String>,
    pub(super) feedback_id: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) relays: Vec<RawRelay>,
    pub(super) dkim: Option<RawDkim>,
    /// Only ever set from `GAZETTE_SMTP__PASSWORD`; refused in the file.
    pub(super) password: Option<Secret>,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            url: "file:".into(),
            require_tls: false,
            allow_plaintext_auth: false,
            concurrency: 4,
            rate: 0.0,
            per_hour: 0,
            timeout_secs: 30,
            max_attempts: 5,
            on_uncertain: UncertainPolicy::Skip,
            retry_base_ms: 1000,
            pipelining: Pipelining::Auto,
            unsubscribe_mailto: None,
            bounce_domain: None,
            feedback_id: None,
            ca_file: None,
            relays: Vec::new(),
            dkim: None,
            password: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub(super) url: String,
    pub(super) concurrency: Option<usize>,
    pub(super) rate: Option<f64>,
    pub(super) per_hour: Option<u32>,
    /// The name of the environment variable that holds this relay's password.
    pub(super) password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    pub(super) domain: String,
    pub(super) selector: String,
    pub(super) key_file: String,
}
