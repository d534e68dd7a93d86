//! Validation of the `[smtp]` section: the transport URL (an SMTP server or the
//! file outbox), the limits, the addresses, DKIM and the `[[smtp.relays]]`. In: the
//! raw section and the [`Context`]. Out: the checked [`Smtp`], or the first wrong
//! value as a [`ConfigError`] naming its key (`smtp.url`, `smtp.relays[1].rate`, …).

use std::time::Duration;

use url::Url;

use super::super::raw::{RawRelay, RawSmtp};
use super::super::{CaFile, ConfigError, Dkim, Relay, Secret, Smtp, SmtpServer, Transport};
use super::Context;

/// The backoff stops growing at 5 minutes; a larger base would only be that.
const MAX_RETRY_BASE_MS: u64 = 300_000;

pub(super) fn smtp(cx: &Context, s: RawSmtp) -> Result<Smtp, ConfigError> {
    let transport = transport(cx, &s.url, s.password).map_err(|m| cx.error("smtp.url", m))?;
    if s.concurrency == 0 || s.concurrency > 1000 {
        return Err(cx.error("smtp.concurrency", "must be from 1 to 1000"));
    }
    if !(s.rate.is_finite() && s.rate >= 0.0) {
        return Err(cx.error(
            "smtp.rate",
            "must be a number of messages per second, 0 for unlimited",
        ));
    }
    if s.timeout_secs == 0 {
        return Err(cx.error("smtp.timeout_secs", "must be at least 1"));
    }
    if s.max_attempts == 0 {
        return Err(cx.error("smtp.max_attempts", "must be at least 1"));
    }
    if !(1..=MAX_RETRY_BASE_MS).contains(&s.retry_base_ms) {
        return Err(cx.error(
            "smtp.retry_base_ms",
            format!("must be from 1 to {MAX_RETRY_BASE_MS} milliseconds"),
        ));
    }
    if let Some(m) = &s.unsubscribe_mailto {
        m.parse::<lettre::Address>().map_err(|e| {
            cx.error(
                "smtp.unsubscribe_mailto",
                format!("{m:?} is not an email address: {e}"),
            )
        })?;
    }
    if let Some(d) = &s.bounce_domain {
        format!("bounce@{d}")
            .parse::<lettre::Address>()
            .map_err(|e| {
                cx.error(
                    "smtp.bounce_domain",
                    format!("{d:?} is not a mail domain: {e}"),
                )
            })?;
    }
    if let Some(f) = &s.feedback_id {
        if f.is_empty() || f.len() > 200 || !f.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(cx.error(
                "smtp.feedback_id",
                format!("{f:?} must be 1 to 200 printable ASCII characters, such as \"{{week}}:weekly:fintech:news\""),
            ));
        }
    }
    let ca_file = match &s.ca_file {
        None => None,
        Some(f) => {
            let path = cx.resolve(f);
            let pem = std::fs::read(&path).map_err(|e| {
                cx.error(
                    "smtp.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|e| {
                cx.error(
                    "smtp.ca_file",
                    format!("{} is not a PEM certificate: {e}", path.display()),
                )
            })?;
            Some(CaFile { path, pem })
        }
    };
    let mut relays = Vec::new();
    for (i, r) in s.relays.into_iter().enumerate() {
        if matches!(transport, Transport::Outbox(_)) {
            return Err(cx.error(
                "smtp.relays",
                "relays need an smtp:// or smtps:// [smtp] url, not the file outbox",
            ));
        }
        relays.push(relay(cx, i, r, s.concurrency)?);
    }
    Ok(Smtp {
        transport,
        require_tls: s.require_tls,
        allow_plaintext_auth: s.allow_plaintext_auth,
        concurrency: s.concurrency,
        rate: s.rate,
        per_hour: s.per_hour,
        timeout_secs: s.timeout_secs,
        max_attempts: s.max_attempts,
        on_uncertain: s.on_uncertain,
        retry_base: Duration::from_millis(s.retry_base_ms),
        pipelining: s.pipelining,
        dkim: s.dkim.map(|d| Dkim {
            domain: d.domain,
            selector: d.selector,
            key_file: cx.resolve(&d.key_file),
        }),
        unsubscribe_mailto: s.unsubscribe_mailto,
        bounce_domain: s.bounce_domain,
        feedback_id: s.feedback_id,
        ca_file,
        relays,
    })
}

/// One `[[smtp.relays]]`, the `i`th; its concurrency defaults to `[smtp]`'s.
fn relay(cx: &Context, i: usize, r: RawRelay, concurrency: usize) -> Result<Relay, ConfigError> {
    let key = |k: &str| format!("smtp.relays[{i}].{k}");
    if let Some(var) = &r.password_env {
        if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || var.is_empty() {
            return Err(cx.error(
                &key("password_env"),
                format!("{var:?} is not an environment variable name"),
            ));
        }
    }
    // Read when the relay is used, so commands that send nothing do not need it.
    let password = r.password_env.as_ref().map(|var| {
        Secret(
            cx.env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        )
    });
    let Transport::Smtp(server) =
        transport(cx, &r.url, password).map_err(|m| cx.error(&key("url"), m))?
    else {
        return Err(cx.error(&key("url"), "a relay is an smtp:// or smtps:// URL"));
    };
    let concurrency = r.concurrency.unwrap_or(concurrency);
    if concurrency == 0 || concurrency > 1000 {
        return Err(cx.error(&key("concurrency"), "must be from 1 to 1000"));
    }
    let rate = r.rate.unwrap_or(0.0);
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(cx.error(&key("rate"), "must be messages per second, 0 for unlimited"));
    }
    Ok(Relay {
        server,
        concurrency,
        rate,
        per_hour: r.per_hour.unwrap_or(0),
    })
}

/// `smtp://`, `smtps://` or `file:DIR`; the error is the message for the url's key.
fn transport(cx: &Context, url: &str, password: Option<Secret>) -> Result<Transport, String> {
    if let Some(dir) = url.strip_prefix("file:") {
        let dir = dir.trim_start_matches("//");
        return Ok(Transport::Outbox(if dir.is_empty() {
            None
        } else {
            Some(cx.resolve(dir))
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
