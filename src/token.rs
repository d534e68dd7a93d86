//! Signed tokens for links in mail. In: the secret (`GAZETTE_SECRET`), the list id,
//! a subscriber id (and for confirmations, an address and an expiry). Out: a short
//! URL-safe token, and a verdict on one presented back. Tokens are HMAC-SHA256,
//! truncated to 128 bits, compared in constant time (hmac's `verify_truncated_left`);
//! a bad token says only that it is bad.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The secret used with the file outbox when `GAZETTE_SECRET` is unset: fine for
/// the demo, never for mail that leaves the machine (sending refuses it).
pub const DEVELOPMENT_SECRET: &str = "gazette-development-secret-not-for-real-mail";

const MAC_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Unsubscribe,
    Confirm,
    Bounce,
    Data,
    /// The editor's desk: a form's proof that it came from the desk's own page.
    Desk,
    /// A story link that counts a click on its way (`/c/<id>`).
    Click,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Unsubscribe => "unsubscribe",
            // Tokens name a subscribe request (not a subscriber) since schema 5.
            Purpose::Confirm => "confirm-request",
            Purpose::Bounce => "bounce",
            Purpose::Data => "data",
            Purpose::Desk => "desk",
            Purpose::Click => "click",
        }
    }
}

#[derive(Clone)]
pub struct Signer {
    list_id: String,
    /// The MAC with the key already set up: every token starts from a copy
    /// of it (a send signs a dozen links per message).
    keyed: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("list_id", &self.list_id)
            .finish_non_exhaustive()
    }
}

/// The fewest bytes of `GAZETTE_SECRET` accepted for mail that leaves the
/// machine: an HMAC-SHA256 key shorter than its 32-byte output is weaker than it.
pub const MIN_SECRET_BYTES: usize = 32;

/// No secret fit to sign links with, where one is needed.
#[derive(Debug, thiserror::Error)]
pub enum NoSecret {
    #[error("GAZETTE_SECRET is not set: it signs the unsubscribe links, and mail that leaves this machine needs a real one")]
    Unset,
    #[error("GAZETTE_SECRET is {0} bytes: mail that leaves this machine needs at least {MIN_SECRET_BYTES} (for example `openssl rand -hex 32`)")]
    Short(usize),
}

/// The signer a configuration calls for, and where its secret came from.
#[derive(Debug, Clone)]
pub struct ConfiguredSigner {
    pub signer: Signer,
    /// No `GAZETTE_SECRET`: the file outbox's fixed development secret signs.
    pub development: bool,
}

impl Signer {
    pub fn new(secret: Secret, list_id: &str) -> Signer {
        let keyed = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        Signer {
            list_id: list_id.to_string(),
            keyed,
        }
    }

    /// `GAZETTE_SECRET`, or with the file outbox (mail that never leaves the
    /// machine) a fixed development secret; with a mail server and no secret, an
    /// error.
    pub fn from_config(config: &crate::config::Config) -> Result<ConfiguredSigner, NoSecret> {
        let list_id = &config.newsletter.list_id;
        match (&config.secret, config.is_outbox()) {
            (Some(s), false) if s.expose().len() < MIN_SECRET_BYTES => {
                Err(NoSecret::Short(s.expose().len()))
            }
            (Some(s), _) => Ok(ConfiguredSigner {
                signer: Signer::new(s.clone(), list_id),
                development: false,
            }),
            (None, true) => Ok(ConfiguredSigner {
                signer: Signer::new(Secret::new(DEVELOPMENT_SECRET), list_id),
                development: true,
            }),
            (None, false) => Err(NoSecret::Unset),
        }
    }

    fn mac(&self, purpose: Purpose, payload: &str) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        // Field separators that cannot occur in the fields keep messages unambiguous.
        mac.update(purpose.label().as_bytes());
        mac.update(b"\n");
        mac.update(self.list_id.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac
    }

    fn sign(&self, purpose: Purpose, payload: &str) -> String {
        let tag = self.mac(purpose, payload).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
    }

    fn verify(&self, purpose: Purpose, payload: &str, tag: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        bytes.len() == MAC_BYTES
            && self
                .mac(purpose, payload)
                .verify_truncated_left(&bytes)
                .is_ok()
    }

    fn subscriber_token(&self, purpose: Purpose, subscriber_id: i64) -> String {
        let payload = subscriber_id.to_string();
        format!("{payload}.{}", self.sign(purpose, &payload))
    }

    fn verify_subscriber_token(&self, purpose: Purpose, token: &str) -> Option<i64> {
        let (payload, tag) = token.split_once('.')?;
        let id: i64 = payload.parse().ok()?;
        if id.to_string() != payload {
            return None;
        }
        self.verify(purpose, payload, tag).then_some(id)
    }

    /// The unsubscribe token of a subscriber: `<id>.<mac>`.
    pub fn unsubscribe_token(&self, subscriber_id: i64) -> String {
        self.subscriber_token(Purpose::Unsubscribe, subscriber_id)
    }

    /// The subscriber id an unsubscribe token names, if it is genuine.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<i64> {
        self.verify_subscriber_token(Purpose::Unsubscribe, token)
    }

    /// The token of the "your data" link: `<id>.<mac>`.
    pub fn data_token(&self, subscriber_id: i64) -> String {
        self.subscriber_token(Purpose::Data, subscriber_id)
    }

    pub fn verify_data(&self, token: &str) -> Option<i64> {
        self.verify_subscriber_token(Purpose::Data, token)
    }

    /// The VERP token, `<id>.<hex mac>`: hex survives a server that changes case.
    pub fn bounce_token(&self, subscriber_id: i64) -> String {
        let payload = subscriber_id.to_string();
        let tag = self.mac(Purpose::Bounce, &payload).finalize().into_bytes();
        let hex: String = tag[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{payload}.{hex}")
    }

    pub fn verify_bounce(&self, token: &str) -> Option<i64> {
        let (payload, hex) = token.split_once('.')?;
        let id: i64 = payload.parse().ok()?;
        if id.to_string() != payload || hex.len() != MAC_BYTES * 2 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..MAC_BYTES)
            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect();
        self.mac(Purpose::Bounce, payload)
            .verify_truncated_left(&bytes?)
            .is_ok()
            .then_some(id)
    }

    /// The id of a counted story link: `<week>.<position>.<copy>.<mac>`, where
    /// `copy` tells one copy of the issue from another (URL-safe characters).
    pub fn click_id(&self, week: &str, position: usize, copy: &str) -> String {
        let payload = format!("{week}.{position}.{copy}");
        let tag = self.sign(Purpose::Click, &payload);
        format!("{payload}.{tag}")
    }

    /// The week, position and copy a click id names, if it is genuine.
    pub fn verify_click<'a>(&self, id: &'a str) -> Option<(&'a str, u32, &'a str)> {
        let (payload, tag) = id.rsplit_once('.')?;
        let mut parts = payload.splitn(3, '.');
        let (week, position, copy) = (parts.next()?, parts.next()?, parts.next()?);
        let n: u32 = position.parse().ok()?;
        if n.to_string() != position || copy.is_empty() {
            return None;
        }
        self.verify(Purpose::Click, payload, tag)
            .then_some((week, n, copy))
    }

    /// The token a desk form carries for the browser session `session`.
    pub fn desk_token(&self, session: &str) -> String {
        self.sign(Purpose::Desk, session)
    }

    pub fn verify_desk(&self, session: &str, token: &str) -> bool {
        !session.is_empty() && self.verify(Purpose::Desk, session, token)
    }

    /// A confirmation token for a subscribe request to `email`, valid until
    /// `expires` (Unix s).
    pub fn confirm_token(&self, request_id: i64, email: &str, expires: i64) -> String {
        let payload = format!("{request_id}.{expires}");
        let tag = self.sign(
            Purpose::Confirm,
            &format!("{payload}.{}", email.to_lowercase()),
        );
        format!("{payload}.{tag}")
    }

    /// The request id and expiry of a confirmation token whose MAC is genuine
    /// for `email_of(id)`; the caller checks the expiry against its clock.
    pub fn verify_confirm(
        &self,
        token: &str,
        email_of: impl Fn(i64) -> Option<String>,
    ) -> Option<(i64, i64)> {
        let mut parts = token.splitn(3, '.');
        let (id, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let id_n: i64 = id.parse().ok()?;
        let expires_n: i64 = expires.parse().ok()?;
        let email = email_of(id_n)?;
        let payload = format!("{id}.{expires}.{}", email.to_lowercase());
        self.verify(Purpose::Confirm, &payload, tag)
            .then_some((id_n, expires_n))
    }
}

/// Shortens a token for logs: never print a whole one.
pub fn redact(token: &str) -> String {
    let head: String = token.chars().take(6).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> Signer {
        Signer::new(Secret::new(secret), "weekly.example.com")
    }

    #[test]
    fn token_verifies_only_for_its_subscriber_list_and_secret() {
        let s = signer("k1");
        let t = s.unsubscribe_token(42);
        assert_eq!(s.verify_unsubscribe(&t), Some(42));
        let (_, tag) = t.split_once('.').unwrap();
        assert_eq!(s.verify_unsubscribe(&format!("43.{tag}")), None);
        assert_eq!(s.verify_unsubscribe(&format!("042.{tag}")), None);
        assert_eq!(s.verify_unsubscribe(&t[..t.len() - 2]), None);
        assert_eq!(signer("k2").verify_unsubscribe(&t), None);
        assert_eq!(
            Signer::new(Secret::new("k1"), "other.list").verify_unsubscribe(&t),
            None
        );
        assert_eq!(s.verify_unsubscribe("garbage"), None);
        // An unsubscribe token is not a confirmation token.
        assert_eq!(s.verify_confirm(&t, |_| Some("a@b.c".into())), None);
    }

    #[test]
    fn bounce_tokens_survive_case_changes_and_differ_from_others() {
        let s = signer("k1");
        let t = s.bounce_token(9);
        assert_eq!(s.verify_bounce(&t), Some(9));
        assert_eq!(s.verify_bounce(&t.to_uppercase()), Some(9));
        assert_eq!(s.verify_bounce(&t.replacen("9.", "8.", 1)), None);
        assert_eq!(s.verify_unsubscribe(&s.data_token(9)), None);
        assert_eq!(s.verify_data(&s.data_token(9)), Some(9));
    }

    #[test]
    fn click_ids_name_their_story_and_resist_tampering() {
        let s = signer("k1");
        let id = s.click_id("2026-W06", 3, "Ab-_9x");
        assert_eq!(s.verify_click(&id), Some(("2026-W06", 3, "Ab-_9x")));
        for forged in [
            id.replacen(".3.", ".4.", 1),
            id.replacen("W06", "W07", 1),
            id.replacen("Ab-", "Ac-", 1),
            id.replacen(".3.", ".03.", 1),
            id[..id.len() - 1].to_string(),
        ] {
            assert_eq!(s.verify_click(&forged), None, "{forged}");
        }
        assert_eq!(signer("k2").verify_click(&id), None);
        // A click id is no other token, and no other token is a click id.
        assert_eq!(s.verify_unsubscribe(&id), None);
        assert_eq!(s.verify_click(&s.unsubscribe_token(3)), None);
    }

    #[test]
    fn confirm_token_binds_the_address_and_expiry() {
        let s = signer("k1");
        let t = s.confirm_token(7, "A@Example.com", 1_000);
        assert_eq!(
            s.verify_confirm(&t, |_| Some("a@example.com".into())),
            Some((7, 1_000))
        );
        assert_eq!(s.verify_confirm(&t, |_| Some("b@example.com".into())), None);
        let forged = t.replacen(".1000.", ".9999.", 1);
        assert_eq!(
            s.verify_confirm(&forged, |_| Some("a@example.com".into())),
            None
        );
    }
}
