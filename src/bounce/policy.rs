//! What a report means for the list. In: a parsed [`Report`], the signer, and a
//! [`Directory`] to look subscribers and deliveries up in. Out: the events to
//! record, each matched to a subscriber, and lines for what matched nobody.
//!
//! Who a report concerns: the VERP address gazette sent from
//! (`bounce+<token>@[smtp] bounce_domain`), the original Message-ID (one gazette
//! recorded sending), or the original's List-Unsubscribe token. These are the
//! proof that the report is about mail gazette sent: anyone can mail a report
//! naming a subscriber's address, so a report without proof changes nobody and
//! is listed as unverified. Nothing is guessed: what matches no subscriber is
//! reported. A mail to the List-Unsubscribe `mailto:` unsubscribes the subscriber
//! whose token its subject carries. The policy ([`decide`]): a
//! hard bounce (5.x.x) marks the subscriber bounced; soft ones (4.x.x) count, and
//! `[bounces] soft_limit` of them from different issues mark them bounced; a
//! complaint unsubscribes and marks them complained.

use super::{verp_subscriber, Kind, Report};
use crate::store::{
    BounceEvent, BounceKind, MessageOrigin, Status, Store, StoreError, UnsubscribeMethod,
};
use crate::token::Signer;
use crate::week::IsoWeek;

/// Where subscribers and deliveries are looked up (the store; a map in tests).
pub trait Directory {
    fn delivery_by_message_id(&self, id: &str) -> Result<Option<MessageOrigin>, StoreError>;
    fn issue_of_week(&self, week: &str) -> Result<Option<i64>, StoreError>;
    fn subscriber_with_address(&self, address: &str) -> Result<Option<i64>, StoreError>;
}

impl Directory for Store {
    fn delivery_by_message_id(&self, id: &str) -> Result<Option<MessageOrigin>, StoreError> {
        Store::delivery_by_message_id(self, id)
    }
    fn issue_of_week(&self, week: &str) -> Result<Option<i64>, StoreError> {
        self.issue_id(week)
    }
    fn subscriber_with_address(&self, address: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.subscriber_by_email(address)?.map(|s| s.id))
    }
}

/// What one report came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// Not a delivery report or complaint; why.
    Unrecognised(String),
    /// A delivery report with no failure in it (delivered, relayed…).
    NoFailure,
    /// The events matched to subscribers, a line for each that matched none,
    /// and one for each failure that names a subscriber's address but carries no
    /// proof that it concerns mail gazette sent them.
    Events {
        events: Vec<BounceEvent>,
        unmatched: Vec<String>,
        unverified: Vec<String>,
    },
    /// An unsubscribe request by mail with this subscriber's genuine token.
    Unsubscribe(i64),
    /// A report or request that proves nothing; why.
    Unverified(String),
}

/// The issue a Message-ID of ours names: `<2026-W06.<id>.<random>@domain>`.
fn issue_of_message_id(
    directory: &impl Directory,
    message_id: &str,
) -> Result<Option<i64>, StoreError> {
    let week = message_id
        .trim_start_matches('<')
        .split('.')
        .next()
        .unwrap_or("");
    if week.parse::<IsoWeek>().is_err() {
        return Ok(None);
    }
    directory.issue_of_week(week)
}

/// A subject fit for output: long words (a token, almost genuine) cut short.
fn redact_long_words(subject: &str) -> String {
    subject
        .split_whitespace()
        .map(|w| {
            if w.len() >= 16 {
                crate::token::redact(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds who and which issue each failure of `report` concerns. `label` names
/// the message in the lines for what matched nobody.
pub fn match_report(
    report: &Report,
    label: &str,
    signer: &Signer,
    directory: &impl Directory,
) -> Result<Matched, StoreError> {
    // (address, kind, status, detail)
    let failures: Vec<(Option<String>, BounceKind, String, Option<String>)> = match &report.kind {
        Kind::Unrecognised(why) => return Ok(Matched::Unrecognised(why.clone())),
        Kind::UnsubscribeRequest(tokens) => {
            return Ok(
                match tokens.iter().find_map(|t| signer.verify_unsubscribe(t)) {
                    Some(id) => Matched::Unsubscribe(id),
                    None => Matched::Unverified(format!(
                        "{label}: an unsubscribe request by mail without a valid token: {:?}",
                        redact_long_words(&report.subject)
                    )),
                },
            )
        }
        Kind::Bounce(recipients) => recipients
            .iter()
            .filter(|r| r.is_hard() || r.is_soft())
            .map(|r| {
                let kind = if r.is_hard() {
                    BounceKind::Hard
                } else {
                    BounceKind::Soft
                };
                (
                    r.address.clone(),
                    kind,
                    r.status.clone(),
                    r.diagnostic.clone(),
                )
            })
            .collect(),
        Kind::Complaint {
            feedback_type,
            recipient,
        } => vec![(
            recipient.clone(),
            BounceKind::Complaint,
            feedback_type.clone(),
            None,
        )],
    };
    if failures.is_empty() {
        return Ok(Matched::NoFailure);
    }
    let original = &report.original;
    let by_message = match &original.message_id {
        Some(id) => directory.delivery_by_message_id(id)?,
        None => None,
    };
    let by_verp = report
        .delivered_to
        .iter()
        .find_map(|a| verp_subscriber(signer, a));
    let by_token = original.list_unsubscribe.as_deref().and_then(|h| {
        h.split(['<', '>', ','])
            .filter_map(|u| u.trim().rsplit_once("/u/").map(|(_, t)| t.to_string()))
            .find_map(|t| signer.verify_unsubscribe(&t))
    });
    let issue_id = match (by_message, &original.message_id) {
        (Some(origin), _) => Some(origin.issue_id),
        (None, Some(id)) => issue_of_message_id(directory, id)?,
        (None, None) => None,
    };
    // What names the message (VERP, Message-ID, token) names its one recipient,
    // and proves the report is about our mail. A report on several recipients
    // applies to the one the proof names, found by address.
    let proven = by_verp.or(by_message.map(|m| m.subscriber_id)).or(by_token);
    let single = failures.len() == 1;
    let mut events = Vec::new();
    let mut unmatched = Vec::new();
    let mut unverified = Vec::new();
    for (i, (address, kind, status, detail)) in failures.into_iter().enumerate() {
        let named = address.as_deref().unwrap_or("an unnamed recipient");
        let by_address = match address.as_deref().or(original.to.as_deref()) {
            Some(a) => directory.subscriber_with_address(a)?,
            None => None,
        };
        let subscriber = match (proven, by_address) {
            (Some(p), _) if single => Some(p),
            (Some(p), Some(a)) if p == a => Some(p),
            (_, Some(a)) => {
                unverified.push(format!(
                    "{label}: {} {status} for {named} (subscriber {a}) carries no proof it concerns mail we sent them (our VERP address, a Message-ID we sent, or their link token): not applied",
                    kind.as_str()
                ));
                None
            }
            (_, None) => {
                unmatched.push(format!(
                    "{label}: {} {status} for {named} matches no subscriber",
                    kind.as_str()
                ));
                None
            }
        };
        let Some(subscriber_id) = subscriber else {
            continue;
        };
        events.push(BounceEvent {
            key: if single {
                report.key.clone()
            } else {
                format!("{}#{i}", report.key)
            },
            subscriber_id,
            issue_id,
            kind,
            status,
            detail,
        });
    }
    Ok(Matched::Events {
        events,
        unmatched,
        unverified,
    })
}

/// The status an event leads to, given the subscriber's soft bounces so far
/// (distinct issues, this one included).
pub fn decide(
    event: &BounceEvent,
    soft_issues: u32,
    soft_limit: u32,
) -> Option<(Status, UnsubscribeMethod)> {
    match event.kind {
        BounceKind::Hard => Some((Status::Bounced, UnsubscribeMethod::Bounce)),
        BounceKind::Soft if soft_issues >= soft_limit => {
            Some((Status::Bounced, UnsubscribeMethod::Bounce))
        }
        BounceKind::Soft => None,
        BounceKind::Complaint => Some((Status::Complained, UnsubscribeMethod::Complaint)),
    }
}

/// What [`decide`] did, in words.
pub fn describe(event: &BounceEvent, soft_issues: u32, soft_limit: u32) -> String {
    match (event.kind, decide(event, soft_issues, soft_limit)) {
        (BounceKind::Hard, _) => "marked bounced".into(),
        (BounceKind::Soft, Some(_)) => {
            format!("soft bounce {soft_issues} of {soft_limit}: marked bounced")
        }
        (BounceKind::Soft, None) => format!("soft bounce {soft_issues} of {soft_limit}"),
        (BounceKind::Complaint, _) => "unsubscribed and marked complained".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::{Original, RecipientStatus};
    use std::collections::HashMap;

    struct Map(HashMap<String, i64>);

    impl Directory for Map {
        fn delivery_by_message_id(&self, _: &str) -> Result<Option<MessageOrigin>, StoreError> {
            Ok(None)
        }
        fn issue_of_week(&self, _: &str) -> Result<Option<i64>, StoreError> {
            Ok(None)
        }
        fn subscriber_with_address(&self, a: &str) -> Result<Option<i64>, StoreError> {
            Ok(self.0.get(&a.to_lowercase()).copied())
        }
    }

    fn bounce(recipients: &[(&str, &str, &str)]) -> Report {
        Report {
            key: "k".into(),
            subject: "Undelivered".into(),
            kind: Kind::Bounce(
                recipients
                    .iter()
                    .map(|(a, action, status)| RecipientStatus {
                        address: Some(a.to_string()),
                        action: action.to_string(),
                        status: status.to_string(),
                        diagnostic: None,
                    })
                    .collect(),
            ),
            original: Original::default(),
            delivered_to: vec![],
        }
    }

    fn signer() -> Signer {
        Signer::new(crate::config::Secret::new("s"), "list")
    }

    #[test]
    fn only_the_recipient_the_proof_names_is_applied() {
        let s = signer();
        let directory = Map(HashMap::from([
            ("a@x.example".to_string(), 7),
            ("d@x.example".to_string(), 8),
        ]));
        let mut report = bounce(&[
            ("A@x.example", "failed", "5.1.1"),
            ("b@x.example", "delayed", "4.2.2"),
            ("c@x.example", "delivered", "2.0.0"),
            ("d@x.example", "failed", "5.1.1"),
        ]);
        report.delivered_to = vec![super::super::verp_address(&s, 7, "b.example")];
        let Matched::Events {
            events,
            unmatched,
            unverified,
        } = match_report(&report, "m1", &s, &directory).unwrap()
        else {
            panic!("events expected");
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].subscriber_id, 7);
        assert_eq!(events[0].kind, BounceKind::Hard);
        assert_eq!(events[0].key, "k#0");
        assert_eq!(unmatched.len(), 1);
        assert!(unmatched[0].contains("b@x.example"), "{unmatched:?}");
        assert_eq!(unverified.len(), 1);
        assert!(unverified[0].contains("d@x.example"), "{unverified:?}");
    }

    #[test]
    fn a_report_without_proof_changes_nobody() {
        let directory = Map(HashMap::from([("a@x.example".to_string(), 7)]));
        let mut report = bounce(&[("a@x.example", "failed", "5.1.1")]);
        report.delivered_to = vec!["mailer-daemon@attacker.example".into()];
        report.original.message_id = Some("<2026-W06.7.forged@news.example>".into());
        let Matched::Events {
            events, unverified, ..
        } = match_report(&report, "m", &signer(), &directory).unwrap()
        else {
            panic!("events expected");
        };
        assert!(events.is_empty(), "{events:?}");
        assert!(unverified[0].contains("subscriber 7"), "{unverified:?}");
    }

    #[test]
    fn an_unsubscribe_mail_needs_a_genuine_token() {
        let s = signer();
        let mut report = bounce(&[]);
        report.kind = Kind::UnsubscribeRequest(vec!["please".into(), s.unsubscribe_token(5)]);
        assert_eq!(
            match_report(&report, "m", &s, &Map(HashMap::new())).unwrap(),
            Matched::Unsubscribe(5)
        );
        report.kind = Kind::UnsubscribeRequest(vec![format!("{}x", s.unsubscribe_token(5))]);
        assert!(matches!(
            match_report(&report, "m", &s, &Map(HashMap::new())).unwrap(),
            Matched::Unverified(_)
        ));
    }

    #[test]
    fn a_verp_address_names_the_subscriber_whatever_the_report_says() {
        let s = signer();
        let mut report = bounce(&[("someone-else@x.example", "failed", "5.1.1")]);
        report.delivered_to = vec![super::super::verp_address(&s, 42, "b.example")];
        let Matched::Events { events, .. } =
            match_report(&report, "m", &s, &Map(HashMap::new())).unwrap()
        else {
            panic!("events expected");
        };
        assert_eq!(events[0].subscriber_id, 42);
        assert_eq!(events[0].key, "k");
    }

    #[test]
    fn the_policy_counts_soft_bounces_to_the_limit() {
        let event = |kind| BounceEvent {
            key: "k".into(),
            subscriber_id: 1,
            issue_id: None,
            kind,
            status: "x".into(),
            detail: None,
        };
        assert_eq!(decide(&event(BounceKind::Soft), 2, 3), None);
        assert_eq!(
            decide(&event(BounceKind::Soft), 3, 3),
            Some((Status::Bounced, UnsubscribeMethod::Bounce))
        );
        assert_eq!(
            decide(&event(BounceKind::Hard), 0, 3),
            Some((Status::Bounced, UnsubscribeMethod::Bounce))
        );
        assert_eq!(
            decide(&event(BounceKind::Complaint), 0, 3),
            Some((Status::Complained, UnsubscribeMethod::Complaint))
        );
        assert_eq!(
            describe(&event(BounceKind::Soft), 2, 3),
            "soft bounce 2 of 3"
        );
    }
}
