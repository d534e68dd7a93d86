//! Delivery reports and complaints as rows (`bounce_events`): whether a report
//! was read before, which delivery a Message-ID names, and recording a report's
//! events with the status change the policy asks for. In: events already matched
//! to subscribers by `bounce`. Out: what each event came to. The policy itself is
//! `bounce::policy`'s; this file stores what it decides.

use chrono::{DateTime, Utc};
use rusqlite::{named_params, params, OptionalExtension};

use super::subscribers::{set_status_in, Status, UnsubscribeMethod};
use super::{sql, to_unix, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    Hard,
    Soft,
    Complaint,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Complaint => "complaint",
        }
    }
}

/// One recipient's failure (or complaint) from one report, matched to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceEvent {
    /// Identifies the report (and the recipient within it): read once.
    pub key: String,
    pub subscriber_id: i64,
    pub issue_id: Option<i64>,
    pub kind: BounceKind,
    /// The enhanced status code (`5.1.1`) or the complaint's feedback type.
    pub status: String,
    pub detail: Option<String>,
}

/// The delivery a Message-ID of ours belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageOrigin {
    pub issue_id: i64,
    pub subscriber_id: i64,
}

impl Store {
    /// Whether a report with this key was read before.
    /// Applies an unsubscribe request read from mail, once per report: the
    /// subscriber (if still receiving) is unsubscribed by `mail`, and the
    /// report is remembered. One transaction. Whether their status changed.
    pub fn apply_mail_unsubscribe(
        &mut self,
        report_key: &str,
        subscriber_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.in_transaction(|tx| {
            tx.prepare_cached(sql::MAIL_REQUEST_SEEN_INSERT)?
                .execute(params![report_key, to_unix(now)])?;
            let status: Option<String> = tx
                .prepare_cached(sql::SUBSCRIBER_BY_ID)?
                .query_row(params![subscriber_id], |r| r.get("status"))
                .optional()?;
            if !matches!(status.as_deref(), Some("active") | Some("pending")) {
                return Ok(false);
            }
            set_status_in(
                tx,
                subscriber_id,
                Status::Unsubscribed,
                Some(UnsubscribeMethod::Mail),
                None,
                now,
            )
        })
    }

    pub fn bounce_report_seen(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::BOUNCE_REPORT_SEEN)?
            .query_row(params![key], |r| r.get("seen"))?)
    }

    /// The delivery that sent the message with this Message-ID, if it was ours.
    pub fn delivery_by_message_id(
        &self,
        message_id: &str,
    ) -> Result<Option<MessageOrigin>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::DELIVERY_BY_MESSAGE_ID)?
            .query_row(params![message_id], |r| {
                Ok(MessageOrigin {
                    issue_id: r.get("issue_id")?,
                    subscriber_id: r.get("subscriber_id")?,
                })
            })
            .optional()?)
    }

    /// Records one report's events in one transaction. For each event `policy`
    /// is told the subscriber's soft bounces so far (distinct issues, this one
    /// included) and says what status, if any, follows. Returns those counts.
    pub fn record_bounces(
        &mut self,
        events: &[BounceEvent],
        now: DateTime<Utc>,
        policy: impl Fn(&BounceEvent, u32) -> Option<(Status, UnsubscribeMethod)>,
    ) -> Result<Vec<u32>, StoreError> {
        self.in_transaction(|tx| {
            let mut soft_counts = Vec::with_capacity(events.len());
            for e in events {
                tx.prepare_cached(sql::BOUNCE_EVENT_INSERT)?
                    .execute(named_params! {
                        ":key": e.key,
                        ":subscriber": e.subscriber_id,
                        ":issue": e.issue_id,
                        ":kind": e.kind.as_str(),
                        ":status": e.status,
                        ":detail": e.detail,
                        ":at": to_unix(now),
                    })?;
                let soft: i64 = tx
                    .prepare_cached(sql::SOFT_BOUNCE_ISSUES)?
                    .query_row(params![e.subscriber_id], |r| r.get("issues"))?;
                let soft = soft.max(0) as u32;
                if let Some((status, method)) = policy(e, soft) {
                    set_status_in(tx, e.subscriber_id, status, Some(method), e.issue_id, now)?;
                }
                soft_counts.push(soft);
            }
            Ok(soft_counts)
        })
    }
}
