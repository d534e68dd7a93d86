//! Bounces and complaints that come back by mail. In: raw messages, from a
//! Maildir, an mbox file or `.eml` files (split and parsed by the `mail-parser`
//! crate). Out: a [`Report`] per message ([`read`], pure): a delivery status
//! notification (RFC 3464) with each recipient's status, a feedback report
//! (RFC 5965, ARF) with its type, or unrecognised, with why. [`policy`] then finds
//! the subscriber and issue it concerns ([`policy::match_report`]) and says what
//! follows for them ([`policy::decide`]); the store records it.

use std::path::Path;

use mail_parser::{Message, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::token::Signer;

pub mod policy;

/// One recipient's outcome in a delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    pub address: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`.
    pub action: String,
    /// The enhanced status code, `5.1.1`.
    pub status: String,
    pub diagnostic: Option<String>,
}

impl RecipientStatus {
    /// Failed for good: `Action: failed` with a permanent status, or none (some
    /// servers leave Status out), or a 5.x.x status without an action.
    pub fn is_hard(&self) -> bool {
        let failed = self.action.eq_ignore_ascii_case("failed")
            || (self.action.is_empty() && self.status.starts_with('5'));
        failed && !self.status.starts_with('4')
    }
    /// Delayed, or failed with a temporary status (4.4.7: the remote server
    /// gave up retrying): counted towards `[bounces] soft_limit`.
    pub fn is_soft(&self) -> bool {
        !self.is_hard()
            && (self.action.eq_ignore_ascii_case("delayed")
                || (self.status.starts_with('4')
                    && !["delivered", "relayed", "expanded"]
                        .iter()
                        .any(|a| self.action.eq_ignore_ascii_case(a))))
    }
}

/// What the report says about the message it reports on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    pub message_id: Option<String>,
    pub to: Option<String>,
    pub list_unsubscribe: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bounce(Vec<RecipientStatus>),
    /// A feedback report; the feedback type (`abuse`, `fraud`, …) and the
    /// complaining recipient when given.
    Complaint {
        feedback_type: String,
        recipient: Option<String>,
    },
    /// A mail to the `mailto:` of List-Unsubscribe: the words of its subject
    /// after "unsubscribe", one of which should be the subscriber's token.
    UnsubscribeRequest(Vec<String>),
    Unrecognised(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Identifies the report, so reading it again changes nothing.
    pub key: String,
    pub subject: String,
    pub kind: Kind,
    pub original: Original,
    /// Addresses the report was delivered to (To, Delivered-To, X-Original-To):
    /// where a VERP address shows.
    pub delivered_to: Vec<String>,
}

fn header_text(m: &Message, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(crate::text::clean_line)
        .filter(|v| !v.is_empty())
}

fn angle_free(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// `rfc822; user@example.com` → `user@example.com`.
fn typed_address(v: &str) -> String {
    angle_free(v.split_once(';').map(|(_, a)| a).unwrap_or(v)).to_lowercase()
}

/// Splits a `message/delivery-status` or `message/feedback-report` body into its
/// field blocks, each parsed by mail-parser as a header section.
fn field_blocks(text: &str) -> Vec<Message<'static>> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|b| {
            MessageParser::default()
                .parse(format!("{}\r\n\r\n", b.trim().replace('\n', "\r\n")).as_bytes())
                .map(|m| m.into_owned())
        })
        .collect()
}

fn original_from(m: &Message) -> Original {
    Original {
        message_id: m.message_id().map(|id| format!("<{}>", angle_free(id))),
        to: m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|a| a.to_lowercase()),
        list_unsubscribe: header_text(m, "List-Unsubscribe"),
    }
}

/// The machine-readable parts of a report, and the original it reports on.
struct ReportParts {
    status: Option<String>,
    feedback: Option<String>,
    original: Original,
}

/// Finds the report's parts among `m`'s (anywhere in its MIME tree, not in
/// attached messages): the first original is the one reported on.
fn report_parts(m: &Message) -> ReportParts {
    let mut found = ReportParts {
        status: None,
        feedback: None,
        original: Original::default(),
    };
    for part in &m.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let full = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase()
        );
        let text = || {
            part.text_contents()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(part.contents()).into_owned())
        };
        let unset = found.original == Original::default();
        match full.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                found.status = Some(text())
            }
            "message/feedback-report" => found.feedback = Some(text()),
            "message/rfc822" | "message/global" if unset => {
                if let Some(m) = part.message() {
                    found.original = original_from(m);
                }
            }
            "text/rfc822-headers" | "message/rfc822-headers" | "message/global-headers"
                if unset =>
            {
                if let Some(m) = MessageParser::default()
                    .parse(format!("{}\r\n\r\n", text().trim_end()).as_bytes())
                {
                    found.original = original_from(&m);
                }
            }
            _ => {}
        }
    }
    found
}

/// Reads one message: a delivery report, a feedback report, or neither.
pub fn read(raw: &[u8]) -> Report {
    let key_of = |m: Option<&Message>| -> String {
        match m.and_then(|m| m.message_id()) {
            Some(id) => format!("<{}>", angle_free(id)),
            None => format!("sha256:{:x}", Sha256::digest(raw)),
        }
    };
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Report {
            key: key_of(None),
            subject: String::new(),
            kind: Kind::Unrecognised("not a mail message".into()),
            original: Original::default(),
            delivered_to: Vec::new(),
        };
    };
    let subject = msg
        .subject()
        .map(crate::text::clean_line)
        .unwrap_or_default();
    let mut delivered_to: Vec<String> = ["To", "Delivered-To", "X-Original-To", "Envelope-To"]
        .iter()
        .filter_map(|h| msg.header_raw(*h))
        .flat_map(|v| v.split(','))
        .map(|a| angle_free(a.rsplit('<').next().unwrap_or(a)).to_lowercase())
        .filter(|a| a.contains('@'))
        .collect();
    delivered_to.dedup();
    let mut report = Report {
        key: key_of(Some(&msg)),
        subject,
        kind: Kind::Unrecognised(String::new()),
        original: Original::default(),
        delivered_to,
    };
    let mut found = report_parts(&msg);
    if found.status.is_none() && found.feedback.is_none() {
        // A gateway may forward the report inside a message of its own.
        if let Some(inner) = msg
            .parts
            .iter()
            .filter_map(|p| p.message())
            .map(report_parts)
            .find(|r| r.status.is_some() || r.feedback.is_some())
        {
            found = inner;
        }
    }
    report.original = found.original;
    let (status_text, feedback_text) = (found.status, found.feedback);
    // Real servers do not all write RFC 3464 to the letter: no report-type,
    // the report inside a multipart/mixed, a wrong outer type. What makes a
    // report is its machine-readable part.
    report.kind = match (status_text, feedback_text) {
        (Some(text), _) => {
            let recipients: Vec<RecipientStatus> = field_blocks(&text)
                .iter()
                // Some servers leave Status out of a failure: Action says it.
                .filter(|b| b.header_raw("Status").is_some() || b.header_raw("Action").is_some())
                .map(|b| RecipientStatus {
                    // The address as we gave it (Original-Recipient) before the
                    // one it was forwarded to; an rfc822 one (some servers give
                    // X.400 addresses).
                    address: ["Original-Recipient", "Final-Recipient"]
                        .iter()
                        .filter_map(|h| header_text(b, h))
                        .map(|a| typed_address(&a))
                        .find(|a| a.contains('@'))
                        .or_else(|| report.original.to.clone()),
                    action: header_text(b, "Action").unwrap_or_default().to_lowercase(),
                    status: header_text(b, "Status")
                        .unwrap_or_default()
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    diagnostic: header_text(b, "Diagnostic-Code"),
                })
                .collect();
            if recipients.is_empty() {
                Kind::Unrecognised("a delivery report without any recipient status".into())
            } else {
                Kind::Bounce(recipients)
            }
        }
        (None, Some(text)) => {
            let blocks = field_blocks(&text);
            let first = blocks.first();
            match first.and_then(|b| header_text(b, "Feedback-Type")) {
                Some(t) => Kind::Complaint {
                    feedback_type: t.to_lowercase(),
                    recipient: first
                        .and_then(|b| header_text(b, "Original-Rcpt-To"))
                        .map(|a| typed_address(&a))
                        .or_else(|| report.original.to.clone()),
                },
                None => Kind::Unrecognised("a feedback report without Feedback-Type".into()),
            }
        }
        (None, None) => match unsubscribe_request(&report) {
            Some(tokens) => Kind::UnsubscribeRequest(tokens),
            None => Kind::Unrecognised(
                "no message/delivery-status or message/feedback-report part: not a delivery report (RFC 3464) or complaint (RFC 5965)".into(),
            ),
        },
    };
    report
}

/// The candidate tokens of a mail that asks to unsubscribe: its subject reads
/// "unsubscribe <token>" (what List-Unsubscribe's `mailto:` puts there), perhaps
/// behind a "Re:" or "Fwd:".
fn unsubscribe_request(report: &Report) -> Option<Vec<String>> {
    let mut words = report.subject.split_whitespace().peekable();
    while words
        .peek()
        .is_some_and(|w| w.ends_with(':') && w.len() <= 4)
    {
        words.next();
    }
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("unsubscribe") => {
            Some(words.map(str::to_string).collect())
        }
        _ => None,
    }
}

/// Every raw message at `path`: a Maildir (with `cur/` and `new/`), an mbox file,
/// a single message file, or a directory of `.eml` files. Each comes with a label
/// for reports (its file, or the mbox and its position).
pub fn messages_at(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if path.is_dir() {
        if path.join("cur").is_dir() || path.join("new").is_dir() {
            for m in mail_parser::mailbox::maildir::MessageIterator::new(path.to_path_buf())? {
                let m = m?;
                out.push((m.path().display().to_string(), m.unwrap_contents()));
            }
        } else {
            let mut files: Vec<_> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                out.push((f.display().to_string(), std::fs::read(&f)?));
            }
        }
        return Ok(out);
    }
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(b"From ") {
        for (i, m) in mail_parser::mailbox::mbox::MessageIterator::new(std::io::Cursor::new(bytes))
            .enumerate()
        {
            let m = m.map_err(|_| {
                std::io::Error::other(format!(
                    "{}: message {} is not readable",
                    path.display(),
                    i + 1
                ))
            })?;
            out.push((
                format!("{} #{}", path.display(), i + 1),
                m.unwrap_contents(),
            ));
        }
    } else {
        out.push((path.display().to_string(), bytes));
    }
    Ok(out)
}

/// The VERP envelope sender for a subscriber: `bounce+<id>.<hex mac>@domain`.
/// Hex, because some servers change the case of local parts.
pub fn verp_address(signer: &Signer, subscriber_id: i64, domain: &str) -> String {
    format!("bounce+{}@{domain}", signer.bounce_token(subscriber_id))
}

/// The subscriber a VERP address names, if it is one of ours and genuine.
pub fn verp_subscriber(signer: &Signer, address: &str) -> Option<i64> {
    let local = address.split('@').next()?;
    let token = local.strip_prefix("bounce+")?;
    signer.verify_bounce(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_reported_not_guessed() {
        assert!(matches!(read(b"").kind, Kind::Unrecognised(_)));
        assert!(matches!(
            read(b"Subject: hi\r\n\r\nhello").kind,
            Kind::Unrecognised(_)
        ));
    }

    #[test]
    fn an_unsubscribe_mail_offers_its_token() {
        let kind = |raw: &str| read(raw.as_bytes()).kind;
        assert_eq!(
            kind("To: unsubscribe@news.example\r\nSubject: Re: unsubscribe 12.abc\r\n\r\n"),
            Kind::UnsubscribeRequest(vec!["12.abc".into()])
        );
        assert_eq!(
            kind("Subject: UNSUBSCRIBE\r\n\r\n"),
            Kind::UnsubscribeRequest(vec![])
        );
        assert!(matches!(
            kind("To: editor@news.example\r\nSubject: how do I unsubscribe?\r\n\r\n"),
            Kind::Unrecognised(_)
        ));
    }

    #[test]
    fn a_report_is_keyed_by_its_message_id_else_by_its_bytes() {
        assert_eq!(
            read(b"Message-ID: <r1@mx.example>\r\nSubject: x\r\n\r\ny").key,
            "<r1@mx.example>"
        );
        // sha256 of the bytes, computed with Python's hashlib.
        assert_eq!(
            read(b"Subject: x\r\n\r\ny").key,
            "sha256:3e548e2b3e4fc7bd7be7bb3a03ee7e64e0e93fcdb5a30a051ba069cbdc0e26c6"
        );
    }
}
