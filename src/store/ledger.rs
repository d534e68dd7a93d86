//! Issues, the send lock and the delivery ledger (`deliveries`, one row per
//! issue × subscriber) as SQL. In: an issue's id and the writes a send makes.
//! Out: the rows due, the counts by state. The guarantees these rows keep
//! (never twice, never skipped) are argued in `send::ledger`, which decides when
//! each write happens; this file only says how a write is stored.

use chrono::{DateTime, Utc};
use rusqlite::{named_params, params, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;

use super::subscribers::{set_status_in, Status, UnsubscribeMethod};
use super::{from_unix, query_all, sql, to_unix, Store, StoreError};

/// The delivery states of one issue, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub uncertain: u64,
    pub skipped: u64,
    /// Deliveries that were uncertain after a crash and were sent again.
    pub resent_uncertain: u64,
    /// Failed deliveries the server deferred until the attempts ran out: the
    /// next run tries them again.
    pub gave_up: u64,
}

/// A delivery that is due now, with who it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub subscriber_id: i64,
    pub email: String,
    pub name: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// One change to a delivery, as the send makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerWrite {
    /// `pending` → `sending`, only while the subscriber is still active; a
    /// subscriber who left has their row marked `skipped` instead.
    Claim { subscriber_id: i64 },
    Sent {
        subscriber_id: i64,
        reply: String,
        message_id: String,
    },
    /// Back to `pending`, due again at `at` (Unix seconds).
    Retry {
        subscriber_id: i64,
        error: String,
        reply: Option<String>,
        at: i64,
    },
    /// `failed`; `bounce` also marks the subscriber bounced.
    Failed {
        subscriber_id: i64,
        error: String,
        reply: Option<String>,
        bounce: bool,
        /// Deferred until the attempts ran out: the next run tries again.
        gave_up: bool,
    },
    /// Nothing: its commit makes the writes queued before it durable.
    Barrier,
}

/// Who holds a send lock, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub holder: String,
    pub since: DateTime<Utc>,
    /// The holder's last sign of life (Unix seconds).
    pub heartbeat_at: i64,
}

impl Store {
    /// The id of a week's issue, once a send of it has begun.
    pub fn issue_id(&self, week: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::ISSUE_BY_WEEK)?
            .query_row(params![week], |r| r.get("id"))
            .optional()?)
    }

    /// Records (or renames) a week's issue; its id.
    pub fn issue_upsert(
        &self,
        week: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::ISSUE_UPSERT)?
            .query_row(params![week, subject, to_unix(now)], |r| r.get("id"))?)
    }

    /// Marks an issue's send finished: nothing is pending any more.
    pub fn issue_finish(&self, issue_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql::ISSUE_FINISH)?
            .execute(params![issue_id, to_unix(now)])?;
        Ok(())
    }

    /// True once a send of this week has begun: the issue must not change under it.
    pub fn send_started(&self, week: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::ISSUE_SEND_STARTED)?
            .query_row(params![week], |r| r.get("started"))?)
    }

    /// Who approved the week's issue, and when, if anyone did.
    pub fn approval(&self, week: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::APPROVAL_GET)?
            .query_row(params![week], |r| {
                Ok((r.get("approved_by")?, from_unix(r.get("approved_at")?)))
            })
            .optional()?)
    }

    pub fn approve(&self, week: &str, by: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql::APPROVAL_PUT)?
            .execute(params![week, by, to_unix(now)])?;
        Ok(())
    }

    /// False when the week was not approved.
    pub fn unapprove(&self, week: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::APPROVAL_DELETE)?
            .execute(params![week])?
            > 0)
    }

    /// True once a send of this week finished with nothing pending.
    pub fn issue_finished(&self, week: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::ISSUE_FINISHED)?
            .query_row(params![week], |r| r.get("finished"))
            .optional()?
            .unwrap_or(false))
    }

    /// `(week, subject)` of every issue that reached a subscriber, newest first.
    pub fn sent_issues(&self) -> Result<Vec<(String, String)>, StoreError> {
        query_all(&self.conn, sql::ISSUES_SENT, [], |r| {
            Ok((r.get("week")?, r.get("subject")?))
        })
    }

    /// Takes an issue's send lock for `holder`, unless another holder has it and
    /// `is_gone` says that holder is still alive: then who holds it. One
    /// `BEGIN IMMEDIATE` transaction, so two senders cannot both take it.
    pub fn lock_take(
        &mut self,
        issue_id: i64,
        holder: &str,
        now: DateTime<Utc>,
        is_gone: impl Fn(&LockHolder) -> bool,
    ) -> Result<Option<LockHolder>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = tx
            .prepare_cached(sql::LOCK_GET)?
            .query_row(params![issue_id], |r| {
                Ok(LockHolder {
                    holder: r.get("holder")?,
                    since: from_unix(r.get("acquired_at")?),
                    heartbeat_at: r.get("heartbeat_at")?,
                })
            })
            .optional()?;
        if let Some(other) = current {
            if other.holder != holder && !is_gone(&other) {
                return Ok(Some(other));
            }
        }
        tx.prepare_cached(sql::LOCK_PUT)?
            .execute(params![issue_id, holder, to_unix(now)])?;
        tx.commit()?;
        Ok(None)
    }

    pub fn lock_heartbeat(
        &self,
        issue_id: i64,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql::LOCK_HEARTBEAT)?
            .execute(params![issue_id, holder, to_unix(now)])?;
        Ok(())
    }

    pub fn lock_release(&self, issue_id: i64, holder: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql::LOCK_RELEASE)?
            .execute(params![issue_id, holder])?;
        Ok(())
    }

    /// Readies an issue's ledger for a send, in one transaction: deliveries left
    /// in flight by a crash become `uncertain` (and, with `resend_uncertain`,
    /// `pending` again), and every active subscriber not yet enrolled is.
    pub fn enrol(
        &mut self,
        issue_id: i64,
        resend_uncertain: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_unix(now);
        self.in_transaction(|tx| {
            tx.prepare_cached(sql::DELIVERIES_MARK_UNCERTAIN)?
                .execute(params![issue_id, now])?;
            if resend_uncertain {
                tx.prepare_cached(sql::DELIVERIES_RESEND_UNCERTAIN)?
                    .execute(params![issue_id, now])?;
            }
            tx.prepare_cached(sql::DELIVERIES_REQUEUE_GAVE_UP)?
                .execute(params![issue_id, now])?;
            tx.prepare_cached(sql::DELIVERIES_ENROL)?
                .execute(params![issue_id, now])?;
            Ok(())
        })
    }

    /// Applies a batch of ledger writes in one transaction (a group commit):
    /// all are durable when this returns, or none. For each write, whether it
    /// took effect (a claim of a subscriber who left does not).
    pub fn ledger_apply(
        &mut self,
        issue_id: i64,
        writes: &[&LedgerWrite],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.in_transaction(|tx| {
            writes
                .iter()
                .map(|w| apply_in(tx, issue_id, w, now))
                .collect()
        })
    }

    pub fn ledger_counts(&self, issue_id: i64) -> Result<LedgerCounts, StoreError> {
        let mut counts = LedgerCounts::default();
        let mut stmt = self.conn.prepare_cached(sql::DELIVERIES_COUNT_BY_STATE)?;
        let rows = stmt.query_map(params![issue_id], |r| {
            Ok((
                r.get::<_, String>("state")?,
                r.get::<_, i64>("deliveries")? as u64,
                r.get::<_, Option<i64>>("were_uncertain")?.unwrap_or(0) as u64,
                r.get::<_, Option<i64>>("gave_up")?.unwrap_or(0) as u64,
            ))
        })?;
        for row in rows {
            let (state, n, was_uncertain, gave_up) = row?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "sending" => counts.sending = n,
                "sent" => {
                    counts.sent = n;
                    counts.resent_uncertain = was_uncertain;
                }
                "failed" => {
                    counts.failed = n;
                    counts.gave_up = gave_up;
                }
                "uncertain" => counts.uncertain = n,
                "skipped" => counts.skipped = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Up to `limit` deliveries due at `now`, after subscriber `after` (keyset).
    pub fn deliveries_due(
        &self,
        issue_id: i64,
        now: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        query_all(
            &self.conn,
            sql::DELIVERIES_DUE,
            named_params! {
                ":issue": issue_id,
                ":now": to_unix(now),
                ":after": after,
                ":limit": limit as i64,
            },
            |r| {
                Ok(DueDelivery {
                    subscriber_id: r.get("subscriber_id")?,
                    email: r.get("email")?,
                    name: r.get("name")?,
                    attempts: r.get::<_, i64>("attempts")? as u32,
                })
            },
        )
    }

    /// When the earliest pending retry is due (Unix seconds), if any is pending.
    pub fn next_retry_at(&self, issue_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::DELIVERIES_NEXT_RETRY_AT)?
            .query_row(params![issue_id], |r| r.get("next_attempt_at"))?)
    }

    /// Some of the addresses whose delivery of this issue is (or was) uncertain.
    pub fn uncertain_addresses(
        &self,
        issue_id: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        query_all(
            &self.conn,
            sql::DELIVERIES_UNCERTAIN_EMAILS,
            params![issue_id, limit as i64],
            |r| r.get("email"),
        )
    }

    /// Who would receive the issue now (`(id, email)`), a page after `after`,
    /// without touching the ledger.
    pub fn would_receive(
        &self,
        issue_id: Option<i64>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        query_all(
            &self.conn,
            sql::DELIVERIES_WOULD_RECEIVE,
            params![issue_id, after, limit as i64],
            |r| Ok((r.get("id")?, r.get("email")?)),
        )
    }
}

/// One ledger write inside the batch's transaction.
fn apply_in(
    tx: &Transaction,
    issue_id: i64,
    write: &LedgerWrite,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let at = to_unix(now);
    match write {
        LedgerWrite::Barrier => Ok(true),
        LedgerWrite::Claim { subscriber_id } => {
            let claimed = tx.prepare_cached(sql::DELIVERY_CLAIM)?.execute(params![
                issue_id,
                subscriber_id,
                at
            ])?;
            if claimed == 0 {
                tx.prepare_cached(sql::DELIVERY_SKIP_INACTIVE)?
                    .execute(params![issue_id, subscriber_id, at])?;
            }
            Ok(claimed == 1)
        }
        LedgerWrite::Sent {
            subscriber_id,
            reply,
            message_id,
        } => {
            tx.prepare_cached(sql::DELIVERY_SENT)?.execute(params![
                issue_id,
                subscriber_id,
                reply,
                message_id,
                at
            ])?;
            Ok(true)
        }
        LedgerWrite::Retry {
            subscriber_id,
            error,
            reply,
            at: due,
        } => {
            tx.prepare_cached(sql::DELIVERY_RETRY)?
                .execute(named_params! {
                    ":issue": issue_id,
                    ":subscriber": subscriber_id,
                    ":error": error,
                    ":reply": reply,
                    ":due": due,
                    ":now": at,
                })?;
            Ok(true)
        }
        LedgerWrite::Failed {
            subscriber_id,
            error,
            reply,
            bounce,
            gave_up,
        } => {
            tx.prepare_cached(sql::DELIVERY_FAILED)?.execute(params![
                issue_id,
                subscriber_id,
                error,
                reply,
                at,
                *gave_up
            ])?;
            if *bounce {
                set_status_in(
                    tx,
                    *subscriber_id,
                    Status::Bounced,
                    Some(UnsubscribeMethod::Bounce),
                    Some(issue_id),
                    now,
                )?;
            }
            Ok(true)
        }
    }
}
