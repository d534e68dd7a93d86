//! One subscriber's message. In: the issue rendered once, the [`Letterhead`] shared
//! by every copy, the subscriber, the date and a Message-ID. Out: a lettre
//! `Message`, multipart/alternative (text/plain, then text/html), with From, To,
//! Subject, Date, Message-ID, List-Id, List-Unsubscribe and List-Unsubscribe-Post
//! (RFC 8058), DKIM-signed when configured. Names and titles are untrusted: they go
//! through lettre's header encoder after line breaks are removed, so they cannot
//! add a header.

use std::time::SystemTime;

use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};

/// The headers a DKIM signature covers. Not Content-Type: lettre writes the
/// multipart's Content-Type with the body, after signing, so it cannot be in
/// what lettre hashes (the body hash covers the parts).
const DKIM_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
];
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};

use crate::config::Config;
use crate::render::{pieces, Filling, Issue, Personal, Piece};
use crate::text::clean_line;
use crate::token::Signer;
use crate::week::IsoWeek;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("building the message: {0}")]
    Build(String),
    #[error("DKIM key {path}: {reason}")]
    DkimKey { path: String, reason: String },
}

/// What every copy of one issue shares.
pub struct Letterhead {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub list_id: String,
    pub unsubscribe_base: String,
    pub unsubscribe_mailto: Option<String>,
    pub message_id_domain: String,
    pub week: IsoWeek,
    pub dkim: Option<DkimConfig>,
    pub bounce_domain: Option<String>,
    pub data_base: String,
    pub feedback_id: Option<String>,
    /// Counted story links (`[analytics] clicks`); `None`: the stories' own links.
    pub clicks: Option<ClickLinks>,
}

/// How a copy's story links are made when clicks are counted.
#[derive(Clone)]
pub struct ClickLinks {
    /// `base_url` + `c/`.
    pub base: String,
    /// The issue's week, as every link names it.
    week: String,
    /// The link names the subscriber (`[analytics] per_subscriber`), not just
    /// the copy.
    pub per_subscriber: bool,
    /// Makes each copy's value from its Message-ID. Random per run and never
    /// stored, so nothing kept can tie a copy's links to its subscriber; the
    /// snapshot tests fix it.
    pub copy_key: [u8; 32],
}

impl ClickLinks {
    fn new(config: &Config, week: IsoWeek) -> Option<ClickLinks> {
        config.analytics.clicks.then(|| {
            let mut copy_key = [0u8; 32];
            if getrandom::fill(&mut copy_key).is_err() {
                copy_key = std::array::from_fn(|_| fastrand::u8(..));
            }
            ClickLinks {
                base: format!("{}c/", config.newsletter.base_url),
                week: week.to_string(),
                per_subscriber: config.analytics.per_subscriber,
                copy_key,
            }
        })
    }

    /// What a copy's links say about it: `s<id>` with per-subscriber analytics,
    /// else 12 characters that differ from copy to copy and say nothing of who
    /// it went to.
    fn copy(&self, subscriber_id: i64, message_id: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        if self.per_subscriber {
            return format!("s{subscriber_id}");
        }
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.copy_key)
            .expect("HMAC takes keys of any length");
        mac.update(message_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..9])
    }

    /// One copy's story links, by position.
    fn links(
        &self,
        signer: &Signer,
        stories: usize,
        subscriber_id: i64,
        message_id: &str,
    ) -> Vec<String> {
        let copy = self.copy(subscriber_id, message_id);
        (0..stories)
            .map(|n| format!("{}{}", self.base, signer.click_id(&self.week, n, &copy)))
            .collect()
    }
}

impl Letterhead {
    pub fn new(config: &Config, week: IsoWeek, subject: &str) -> Result<Letterhead, MessageError> {
        let n = &config.newsletter;
        let dkim = match &config.smtp.dkim {
            None => None,
            Some(d) => {
                let pem =
                    std::fs::read_to_string(&d.key_file).map_err(|e| MessageError::DkimKey {
                        path: d.key_file.display().to_string(),
                        reason: e.to_string(),
                    })?;
                let algorithm = if pem.contains("BEGIN RSA PRIVATE KEY") {
                    DkimSigningAlgorithm::Rsa
                } else {
                    DkimSigningAlgorithm::Ed25519
                };
                let key = DkimSigningKey::new(pem.trim(), algorithm).map_err(|e| {
                    MessageError::DkimKey {
                        path: d.key_file.display().to_string(),
                        reason: format!("{e} (an RSA key in PKCS#1 PEM, or a base64 Ed25519 key)"),
                    }
                })?;
                // relaxed/relaxed: what a relay may refold or re-space still
                // verifies. The headers a receiver acts on are signed, the
                // List-Unsubscribe pair included (RFC 8058 §4).
                // A Feedback-ID is signed too, so no one else can claim it.
                let headers = DKIM_HEADERS
                    .iter()
                    .chain(config.smtp.feedback_id.as_ref().map(|_| &"Feedback-ID"))
                    .map(|h| lettre::message::header::HeaderName::new_from_ascii_str(h))
                    .collect();
                let relaxed = DkimCanonicalization {
                    header: DkimCanonicalizationType::Relaxed,
                    body: DkimCanonicalizationType::Relaxed,
                };
                Some(DkimConfig::new(
                    d.selector.clone(),
                    d.domain.clone(),
                    key,
                    headers,
                    relaxed,
                ))
            }
        };
        Ok(Letterhead {
            from: n.from.clone(),
            reply_to: n.reply_to.clone(),
            subject: clean_line(subject),
            list_id: format!(
                "{} <{}>",
                clean_line(&n.name).replace(['<', '>', '"'], ""),
                n.list_id
            ),
            unsubscribe_base: format!("{}u/", n.base_url),
            unsubscribe_mailto: config.smtp.unsubscribe_mailto.clone(),
            message_id_domain: n.from.email.domain().to_string(),
            week,
            dkim,
            bounce_domain: config.smtp.bounce_domain.clone(),
            data_base: format!("{}data/", n.base_url),
            feedback_id: config
                .smtp
                .feedback_id
                .as_ref()
                .map(|f| f.replace("{week}", &week.to_string())),
            clicks: ClickLinks::new(config, week),
        })
    }

    pub fn unsubscribe_url(&self, token: &str) -> String {
        format!("{}{token}", self.unsubscribe_base)
    }
}

/// Who one copy goes to.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
}

/// A fresh Message-ID for one copy: `<week.subscriber.random@domain>`.
pub fn new_message_id(head: &Letterhead, subscriber_id: i64) -> String {
    format!(
        "<{}.{}.{:016x}@{}>",
        head.week,
        subscriber_id,
        // From the OS's generator: a Message-ID is proof that a bounce report
        // is about our mail, so it must not be guessable.
        getrandom::u64().unwrap_or_else(|_| fastrand::u64(..)),
        head.message_id_domain
    )
}

fn raw_header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The issue's two parts, quoted-printable encoded once per issue. A part is kept
/// as its lines (quoted-printable wraps each line on its own): the lines that hold
/// a per-subscriber placeholder are personalized and encoded for each copy, every
/// other line is copied as already encoded. No HTML is rendered and no CSS inlined
/// per message.
pub struct Prebuilt {
    text: Vec<Line>,
    html: Vec<Line>,
    boundary: String,
    /// What lettre writes before the parts (the multipart's Content-Type and a
    /// blank line), and before each part's body (its boundary line and
    /// headers), formatted once.
    multipart_head: Vec<u8>,
    text_head: Vec<u8>,
    html_head: Vec<u8>,
    /// The stories' own links, by position.
    links: Vec<String>,
}

enum Line {
    Encoded(Vec<u8>),
    /// A line with placeholders, cut at them once per issue.
    Personal(Vec<Piece>),
}

/// Lettre's own quoted-printable encoder (the crate lettre uses).
fn qp(line: &str) -> Vec<u8> {
    quoted_printable::encode(line.as_bytes())
}

fn prebuilt_lines(part: &str) -> Vec<Line> {
    part.replace("\r\n", "\n")
        .split('\n')
        .map(|line| {
            if line.contains("{{gazette:") {
                Line::Personal(pieces(line))
            } else {
                Line::Encoded(qp(line))
            }
        })
        .collect()
}

/// A part of the message, its body quoted-printable encoded already.
fn qp_part(content_type: ContentType, bytes: Vec<u8>) -> SinglePart {
    SinglePart::builder()
        .header(content_type)
        .body(Body::dangerous_pre_encoded(
            bytes,
            ContentTransferEncoding::QuotedPrintable,
        ))
}

fn splice(lines: &[Line], personal: &Personal, html: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 80);
    splice_into(lines, &Filling::new(personal, html), &mut out, false);
    out
}

/// Appends a part's lines, filled (each value worked out once for the copy),
/// to `out`; `stuffed`: a line that starts with "." gets another (SMTP DATA).
fn splice_into(lines: &[Line], filling: &Filling, out: &mut Vec<u8>, stuffed: bool) {
    let mut line = String::with_capacity(512);
    // A line may be several on the wire (quoted-printable's soft breaks): each
    // of them is stuffed.
    let push = |out: &mut Vec<u8>, bytes: &[u8]| {
        if stuffed {
            crate::send::smtp::append_stuffed(bytes, out);
        } else {
            out.extend_from_slice(bytes);
        }
    };
    for (i, part) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        match part {
            Line::Encoded(bytes) => push(out, bytes),
            Line::Personal(pieces) => {
                line.clear();
                filling.fill_into(pieces, &mut line);
                push(out, &qp(&line))
            }
        }
    }
}

impl Prebuilt {
    /// The parts of `issue` as `head` sends them: with the stories' own links
    /// in place when clicks are not counted, so those lines are encoded once.
    pub fn new(issue: &Issue, head: &Letterhead) -> Prebuilt {
        let links = issue.links();
        let part = |source: &str, html: bool| match head.clicks {
            Some(_) => prebuilt_lines(source),
            None => prebuilt_lines(&crate::render::with_story_links(source, &links, html)),
        };
        let boundary = format!(
            "gazette-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let multipart = MultiPart::alternative().boundary(boundary.clone()).build();
        let multipart_head = format!("{}\r\n", multipart.headers()).into_bytes();
        let part_head = |content_type: ContentType| {
            format!(
                "--{boundary}\r\n{}\r\n",
                qp_part(content_type, Vec::new()).headers()
            )
            .into_bytes()
        };
        Prebuilt {
            text: part(&issue.text, false),
            html: part(&issue.html, true),
            links,
            multipart_head,
            text_head: part_head(ContentType::TEXT_PLAIN),
            html_head: part_head(ContentType::TEXT_HTML),
            boundary,
        }
    }

    /// One copy's bytes, appended to `out`: exactly lettre's formatting of
    /// the message [`build`] makes, without building its body as lettre parts
    /// and copying it again (the headers are lettre's own). `for_data`: as SMTP
    /// DATA carries it, dot-stuffed and ended by the final ".". The envelope
    /// goes back. A DKIM-signed copy is built whole by lettre, which signs it.
    #[allow(clippy::too_many_arguments)]
    pub fn write_copy(
        &self,
        head: &Letterhead,
        signer: &Signer,
        to: &Recipient,
        date: SystemTime,
        message_id: String,
        out: &mut Vec<u8>,
        for_data: bool,
    ) -> Result<lettre::address::Envelope, MessageError> {
        if head.dkim.is_some() {
            let message = build(self, head, signer, to, date, message_id, false)?;
            let bytes = message.formatted();
            if for_data {
                crate::send::smtp::dot_stuff(&bytes, out);
            } else {
                out.extend_from_slice(&bytes);
            }
            return Ok(message.envelope().clone());
        }
        let mut fillings = None;
        let message = build_with(
            head,
            signer,
            to,
            date,
            message_id,
            false,
            &self.links,
            |p| {
                fillings = Some((Filling::new(p, false), Filling::new(p, true)));
                MultiPart::alternative()
                    .boundary(self.boundary.clone())
                    .build()
            },
        )?;
        let (text, html) = fillings.expect("the body was asked for");
        use std::io::Write as _;
        write!(out, "{}", message.headers()).expect("writing to a Vec");
        out.extend_from_slice(&self.multipart_head);
        for (part_head, lines, filling) in [
            (&self.text_head, &self.text, &text),
            (&self.html_head, &self.html, &html),
        ] {
            out.extend_from_slice(part_head);
            splice_into(lines, filling, out, for_data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(self.boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        if for_data {
            out.extend_from_slice(b".\r\n");
        }
        Ok(message.envelope().clone())
    }

    /// Both parts for one subscriber, as multipart/alternative.
    fn alternative(&self, personal: &Personal) -> MultiPart {
        MultiPart::alternative()
            .boundary(self.boundary.clone())
            .singlepart(qp_part(
                ContentType::TEXT_PLAIN,
                splice(&self.text, personal, false),
            ))
            .singlepart(qp_part(
                ContentType::TEXT_HTML,
                splice(&self.html, personal, true),
            ))
    }
}

/// Builds one subscriber's message. `test` marks a `--test` copy in the subject.
pub fn build(
    prebuilt: &Prebuilt,
    head: &Letterhead,
    signer: &Signer,
    to: &Recipient,
    date: SystemTime,
    message_id: String,
    test: bool,
) -> Result<Message, MessageError> {
    build_with(
        head,
        signer,
        to,
        date,
        message_id,
        test,
        &prebuilt.links,
        |p| prebuilt.alternative(p),
    )
}

/// [`build`], with the body made by `body` from the subscriber's parts;
/// `links` are the stories' own links.
#[allow(clippy::too_many_arguments)]
fn build_with(
    head: &Letterhead,
    signer: &Signer,
    to: &Recipient,
    date: SystemTime,
    message_id: String,
    test: bool,
    links: &[String],
    body: impl FnOnce(&Personal) -> MultiPart,
) -> Result<Message, MessageError> {
    let address: Address = to
        .email
        .parse()
        .map_err(|e: lettre::address::AddressError| MessageError::Address {
            address: to.email.clone(),
            reason: e.to_string(),
        })?;
    // Bounded here too: a name stored before names were bounded must not make
    // a header no server accepts, and so stop everyone's delivery.
    let name = to.name.as_deref().and_then(crate::text::person_name);
    let token = signer.unsubscribe_token(to.id);
    let unsubscribe_url = head.unsubscribe_url(&token);
    let data_url = format!("{}{}", head.data_base, signer.data_token(to.id));
    let story_links = match &head.clicks {
        Some(clicks) => clicks.links(signer, links.len(), to.id, &message_id),
        None => links.to_vec(),
    };
    let personal = Personal {
        name: name.as_deref(),
        unsubscribe_url: &unsubscribe_url,
        data_url: &data_url,
        story_links: &story_links,
    };
    let subject = if test {
        format!("[TEST] {}", head.subject)
    } else {
        head.subject.clone()
    };
    let mut list_unsubscribe = format!("<{unsubscribe_url}>");
    if let Some(mailto) = &head.unsubscribe_mailto {
        list_unsubscribe += &format!(", <mailto:{mailto}?subject=unsubscribe%20{token}>");
    }
    let mut builder = Message::builder();
    if let Some(domain) = &head.bounce_domain {
        // VERP: bounces come back to an address that names the subscriber.
        let verp: Address = crate::bounce::verp_address(signer, to.id, domain)
            .parse()
            .map_err(|e: lettre::address::AddressError| MessageError::Build(e.to_string()))?;
        let envelope = lettre::address::Envelope::new(Some(verp), vec![address.clone()])
            .map_err(|e| MessageError::Build(e.to_string()))?;
        builder = builder.envelope(envelope);
    }
    let mut builder = builder
        .from(head.from.clone())
        .to(Mailbox::new(name.clone(), address))
        .subject(subject)
        .date(date)
        .message_id(Some(message_id))
        .raw_header(raw_header("List-Id", head.list_id.clone()))
        .raw_header(raw_header("List-Unsubscribe", list_unsubscribe))
        .raw_header(raw_header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ));
    if let Some(r) = &head.reply_to {
        builder = builder.reply_to(r.clone());
    }
    if let Some(f) = &head.feedback_id {
        builder = builder.raw_header(raw_header("Feedback-ID", f.clone()));
    }
    let mut message = builder
        .multipart(body(&personal))
        .map_err(|e| MessageError::Build(e.to_string()))?;
    if let Some(dkim) = &head.dkim {
        message.sign(dkim);
    }
    Ok(message)
}

/// The size as sent (encoded, with headers, DKIM-signed when configured) of
/// the largest copy any subscriber can get: the longest name gazette keeps, in
/// letters that encode long, a long address and a large id. What Gmail's
/// clipping limit is measured against, so no copy is clipped.
pub fn sent_size(issue: &Issue, config: &Config, week: IsoWeek) -> Result<usize, MessageError> {
    let head = Letterhead::new(config, week, &issue.subject)?;
    let signer = Signer::new(
        crate::config::Secret::new("size"),
        &config.newsletter.list_id,
    );
    let to = Recipient {
        id: 9_999_999_999,
        email: format!("{}@{}.example.com", "l".repeat(64), "d".repeat(60)),
        name: Some("é".repeat(crate::text::MAX_NAME_CHARS)),
    };
    let id = new_message_id(&head, to.id);
    let message = build(
        &Prebuilt::new(issue, &head),
        &head,
        &signer,
        &to,
        SystemTime::UNIX_EPOCH,
        id,
        false,
    )?;
    Ok(message.formatted().len())
}

/// The double opt-in mail: one link that confirms the subscription.
pub fn confirmation(
    config: &Config,
    email: &str,
    link: &str,
    date: SystemTime,
) -> Result<Message, MessageError> {
    let n = &config.newsletter;
    let address: Address =
        email
            .parse()
            .map_err(|e: lettre::address::AddressError| MessageError::Address {
                address: email.to_string(),
                reason: e.to_string(),
            })?;
    let name = clean_line(&n.name);
    let hours = config.server.confirm_hours;
    let text = format!(
        "Please confirm that you want {name} in your inbox every week:\n\n{link}\n\nThe link works for {hours} hours. If you did not ask for this, ignore this message: nothing will be sent to you.\n\n{}\n",
        clean_line(&n.postal_address)
    );
    let html = maud::html! {
        p { "Please confirm that you want " (name) " in your inbox every week:" }
        p { a href=(link) style="display:inline-block;padding:12px 20px;background:#0b4f9c;color:#ffffff;text-decoration:none;font-weight:bold;" { "Confirm my subscription" } }
        p { "The link works for " (hours) " hours. If you did not ask for this, ignore this message: nothing will be sent to you." }
        p style="color:#4b5563;font-size:13px;" { (clean_line(&n.postal_address)) }
    }
    .into_string();
    let mut builder = Message::builder()
        .from(n.from.clone())
        .to(Mailbox::new(None, address))
        .subject(format!("Confirm your subscription to {name}"))
        .date(date)
        .message_id(Some(format!(
            "<confirm.{:016x}@{}>",
            fastrand::u64(..),
            n.from.email.domain()
        )));
    if let Some(r) = &n.reply_to {
        builder = builder.reply_to(r.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| MessageError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::personalize;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "[newsletter]\nname = \"N\"\nfrom = \"n@news.test\"\nbase_url = \"https://news.test\"\npostal_address = \"x\"\ntimezone = \"UTC\"\n[[feeds]]\nurl = \"f.xml\"\n{extra}"
            ),
            "config.toml",
            std::path::Path::new("."),
            std::iter::empty(),
        )
        .unwrap()
    }

    /// A config that DKIM-signs with a key file holding `key`.
    fn dkim_config(dir: &std::path::Path, key: &str) -> Config {
        let file = dir.join("dkim.key");
        std::fs::write(&file, key).unwrap();
        config(&format!(
            "[smtp.dkim]\ndomain = \"news.test\"\nselector = \"s1\"\nkey_file = {:?}\n",
            file.display().to_string()
        ))
    }

    /// One formatted copy of a tiny issue with `subject`, to `to` named `name`.
    fn formatted(
        c: &Config,
        subject: &str,
        to: &str,
        name: Option<&str>,
    ) -> Result<String, MessageError> {
        let issue = Issue {
            subject: subject.into(),
            preheader: String::new(),
            html: format!(
                "<p>{}</p><a href=\"{}\">u</a>",
                crate::render::GREETING,
                crate::render::UNSUBSCRIBE_URL
            ),
            text: format!(
                "{}\n{}\n",
                crate::render::GREETING,
                crate::render::UNSUBSCRIBE_URL
            ),
            stories: vec![],
        };
        let head = Letterhead::new(c, "2026-W06".parse().unwrap(), subject)?;
        let signer = Signer::new(crate::config::Secret::new("k"), "l");
        let to = Recipient {
            id: 1,
            email: to.into(),
            name: name.map(str::to_string),
        };
        let m = build(
            &Prebuilt::new(&issue, &head),
            &head,
            &signer,
            &to,
            SystemTime::UNIX_EPOCH,
            "<x@news.test>".into(),
            false,
        )?;
        Ok(String::from_utf8(m.formatted()).unwrap())
    }

    #[test]
    fn a_very_long_name_makes_no_header_line_a_server_refuses() {
        let c = config("");
        let name = "x".repeat(5000);
        let m = formatted(&c, "Subject", "a@example.com", Some(&name)).unwrap();
        let head = m.split("\r\n\r\n").next().unwrap();
        assert!(
            head.split("\r\n").all(|l| l.len() <= 998),
            "a header line passes 998 octets"
        );
        assert!(head.contains(&"x".repeat(crate::text::MAX_NAME_CHARS)));
    }

    #[test]
    fn spliced_copies_are_byte_for_byte_lettres_own_formatting() {
        let c = config("");
        let long = "word ".repeat(60);
        let issue = Issue {
            subject: "Subject".into(),
            preheader: String::new(),
            text: format!(
                "{}\n\nA line of {long}= and trailing space \n\u{628}\u{6CC}\u{646}\u{6A9} {long}\nUnsubscribe: {} and more {long}\nData: {}\nStory: {{{{gazette:story:0}}}}\n.a line that starts with a dot\n",
                crate::render::GREETING,
                crate::render::UNSUBSCRIBE_URL,
                crate::render::DATA_URL
            ),
            html: format!(
                "<!DOCTYPE html><html><body>\n<p style=\"margin:0\">{} {long}</p>\n<a href=\"{}\" style=\"color:#0b4f9c\">Unsubscribe</a> <a href=\"{}\">Your data</a>\n<p>\u{628}\u{6CC}\u{646}\u{6A9} = {long}</p><a href=\"{{{{gazette:story:0}}}}\">Story</a>\n</body></html>",
                crate::render::GREETING,
                crate::render::UNSUBSCRIBE_URL,
                crate::render::DATA_URL
            ),
            stories: vec![crate::store::IssueStory {
                link: "https://story.example/a?b=1&c=2".into(),
                title: "A story".into(),
                topic: None,
            }],
        };
        let head = Letterhead::new(&c, "2026-W06".parse().unwrap(), "Subject").unwrap();
        let prebuilt = Prebuilt::new(&issue, &head);
        let signer = Signer::new(crate::config::Secret::new("k"), "l");
        for name in [Some("Amina <Khan> & \"Co\" =?utf-8?"), None] {
            let to = Recipient {
                id: 77,
                email: "amina@example.com".into(),
                name: name.map(str::to_string),
            };
            let ours = build(
                &prebuilt,
                &head,
                &signer,
                &to,
                SystemTime::UNIX_EPOCH,
                "<m@news.test>".into(),
                false,
            )
            .unwrap();
            // Lettre encodes each whole personalized part itself.
            let reference = build_with(
                &head,
                &signer,
                &to,
                SystemTime::UNIX_EPOCH,
                "<m@news.test>".into(),
                false,
                &prebuilt.links,
                |p| {
                    let part = |content_type: ContentType, text: String| {
                        SinglePart::builder().header(content_type).body(
                            Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
                                .unwrap(),
                        )
                    };
                    MultiPart::alternative()
                        .boundary(prebuilt.boundary.clone())
                        .singlepart(part(
                            ContentType::TEXT_PLAIN,
                            personalize(&issue.text, p, false),
                        ))
                        .singlepart(part(
                            ContentType::TEXT_HTML,
                            personalize(&issue.html, p, true),
                        ))
                },
            )
            .unwrap();
            let (ours, reference) = (
                String::from_utf8(ours.formatted()).unwrap(),
                String::from_utf8(reference.formatted()).unwrap(),
            );
            assert_eq!(ours, reference);
            assert!(ours.contains("/u/77."), "the token is spliced in");
            // Written directly, as a file and as DATA carries it.
            let direct = |for_data: bool| {
                let mut out = Vec::new();
                let envelope = prebuilt
                    .write_copy(
                        &head,
                        &signer,
                        &to,
                        SystemTime::UNIX_EPOCH,
                        "<m@news.test>".into(),
                        &mut out,
                        for_data,
                    )
                    .unwrap();
                assert_eq!(envelope.to()[0].to_string(), "amina@example.com");
                out
            };
            assert_eq!(String::from_utf8(direct(false)).unwrap(), reference);
            let mut stuffed = Vec::new();
            crate::send::smtp::dot_stuff(reference.as_bytes(), &mut stuffed);
            assert!(
                stuffed.windows(5).any(|w| w == b"\r\n..a"),
                "a line to stuff"
            );
            assert_eq!(direct(true), stuffed);
            assert!(
                ours.contains("/c/2026-W06.0.") && !ours.contains("story.example"),
                "story links are counted ones"
            );
        }
    }

    #[test]
    fn dkim_signs_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        // An Ed25519 key: 32 bytes, base64.
        let c = dkim_config(dir.path(), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        let text = formatted(&c, "Subject", "a@example.com", None).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let signature = head
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ")
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:"))
            .unwrap_or_else(|| panic!("not signed: {head}"))
            .to_string();
        let tag = |name: &str| -> String {
            signature
                .split(';')
                .find_map(|t| {
                    t.trim()
                        .strip_prefix(&format!("{name}="))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| panic!("no {name}= in {signature}"))
                .split_whitespace()
                .collect()
        };
        assert_eq!(tag("a"), "ed25519-sha256");
        assert_eq!(tag("c"), "relaxed/relaxed");
        assert_eq!((tag("d").as_str(), tag("s").as_str()), ("news.test", "s1"));
        let signed: Vec<String> = tag("h")
            .split(':')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert!(signed.iter().any(|s| s == h), "{h} not in h={signed:?}");
        }
        // The body hash, computed here as RFC 6376 §3.4.4 says (relaxed: runs
        // of whitespace to one space, none at line ends, no empty lines at the
        // end), must be the one signed.
        let mut lines: Vec<String> = body
            .split("\r\n")
            .map(|line| {
                let mut out = String::new();
                let mut space = false;
                for ch in line.chars() {
                    if ch == ' ' || ch == '\t' {
                        space = true;
                    } else {
                        if space {
                            out.push(' ');
                        }
                        space = false;
                        out.push(ch);
                    }
                }
                out
            })
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let canonical = format!("{}\r\n", lines.join("\r\n"));
        use base64::Engine;
        use sha2::Digest;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(canonical));
        assert_eq!(tag("bh"), expected);
    }

    #[test]
    fn a_bad_dkim_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = dkim_config(dir.path(), "not a key");
        let e = formatted(&c, "S", "a@example.com", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dkim.key"), "{e}");
    }

    #[test]
    fn names_and_subjects_cannot_add_headers() {
        let c = config("");
        let text = formatted(
            &c,
            "Hi\r\nBcc: x@evil.test",
            "a@example.com",
            Some("A\r\nCc: y@evil.test"),
        )
        .unwrap();
        assert!(
            !text.contains("\r\nBcc:") && !text.contains("\r\nCc:"),
            "{text}"
        );
        assert!(formatted(&c, "S", "not an address", None).is_err());
    }
}
