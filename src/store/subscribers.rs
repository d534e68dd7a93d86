//! The subscriber list: adding (never resubscribing, never bringing back an
//! erased address on an operator's say-so), statuses with the event that changed
//! them, the suppression list of erased addresses, export and erasure. In:
//! addresses already validated. Out: [`Subscriber`] rows and what each change did.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{from_unix, query_all, sql, to_unix, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Active,
    Unsubscribed,
    Bounced,
    Complained,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "active" => Status::Active,
            "unsubscribed" => Status::Unsubscribed,
            "bounced" => Status::Bounced,
            "complained" => Status::Complained,
            _ => return None,
        })
    }
}

/// How an unsubscribe came about, as recorded in `unsubscribe_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeMethod {
    OneClick,
    Page,
    Cli,
    Bounce,
    Complaint,
    /// A mail to the `mailto:` of List-Unsubscribe, read by `bounces import`.
    Mail,
}

impl UnsubscribeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsubscribeMethod::OneClick => "one-click",
            UnsubscribeMethod::Page => "page",
            UnsubscribeMethod::Cli => "cli",
            UnsubscribeMethod::Bounce => "bounce",
            UnsubscribeMethod::Complaint => "complaint",
            UnsubscribeMethod::Mail => "mail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub created_at: DateTime<Utc>,
}

/// The key an address is compared by: addresses are case-insensitive here
/// (RFC 5321 allows case-sensitive local parts; no real mailbox provider uses them).
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A row of `subscriber_by_email`, `subscriber_by_id`, `subscribers_page`.
fn subscriber_from_row(r: &Row) -> rusqlite::Result<Subscriber> {
    let status: String = r.get("status")?;
    Ok(Subscriber {
        id: r.get("id")?,
        email: r.get("email")?,
        name: r.get("name")?,
        status: Status::parse(&status).unwrap_or(Status::Pending),
        created_at: from_unix(r.get("created_at")?),
    })
}

/// Who asks for an address to be added: an erased address may come back only
/// by its owner's own (confirmed) request, never by an operator's add or import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Operator,
    OwnRequest,
}

/// What adding one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New(i64),
    /// Already on the list, with this status; left as it is.
    Existing(i64, Status),
    /// Erased at its owner's request; an operator may not add it again.
    Erased,
}

/// Adds an address inside a caller's transaction. An address already on the list
/// is never resubscribed.
fn add_subscriber_in(
    conn: &Connection,
    email: &str,
    name: Option<&str>,
    status: Status,
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<Added, StoreError> {
    if origin == Origin::Operator && is_suppressed_in(conn, email)? {
        return Ok(Added::Erased);
    }
    let key = email_key(email);
    let inserted = conn
        .prepare_cached(sql::SUBSCRIBER_INSERT)?
        .execute(params![
            email.trim(),
            key,
            name,
            status.as_str(),
            to_unix(now)
        ])?;
    let s = conn
        .prepare_cached(sql::SUBSCRIBER_BY_EMAIL)?
        .query_row(params![key], subscriber_from_row)?;
    Ok(if inserted == 1 {
        Added::New(s.id)
    } else {
        Added::Existing(s.id, s.status)
    })
}

/// Sets a status and, for a departure, records the event, inside a caller's
/// transaction. False when the subscriber already had that status.
pub(super) fn set_status_in(
    conn: &Connection,
    id: i64,
    status: Status,
    method: Option<UnsubscribeMethod>,
    issue_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(sql::SUBSCRIBER_SET_STATUS)?
        .execute(params![id, status.as_str(), to_unix(now)])?;
    if changed > 0 {
        if let Some(m) = method {
            // A departure that names no issue (the link in the footer, the
            // command line) is put down to the last issue the subscriber got.
            let issue_id = match issue_id {
                Some(i) => Some(i),
                None => conn
                    .prepare_cached(sql::SUBSCRIBER_LAST_ISSUE)?
                    .query_row(params![id], |r| r.get("issue_id"))?,
            };
            conn.prepare_cached(sql::UNSUBSCRIBE_EVENT_INSERT)?
                .execute(params![id, to_unix(now), m.as_str(), issue_id])?;
        }
    }
    Ok(changed > 0)
}

/// Deletes a subscriber and everything recorded about them, inside a caller's
/// transaction.
fn delete_subscriber_in(conn: &Connection, id: i64) -> Result<(), StoreError> {
    for statement in [
        sql::SUBSCRIBER_DELETE_REQUESTS,
        sql::SUBSCRIBER_DELETE_DELIVERIES,
        sql::SUBSCRIBER_DELETE_EVENTS,
        sql::SUBSCRIBER_DELETE_CLICKS,
        sql::SUBSCRIBER_DELETE_BOUNCES,
        sql::SUBSCRIBER_DELETE,
    ] {
        conn.prepare_cached(statement)?.execute(params![id])?;
    }
    Ok(())
}

/// The address of a subscriber, inside a caller's transaction.
fn email_of_in(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(sql::SUBSCRIBER_BY_ID)?
        .query_row(params![id], |r| r.get("email"))
        .optional()?)
}

/// The salted hash an erased address is remembered by (salt: per database).
fn suppression_hash(conn: &Connection, email: &str) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let salt: String = conn
        .prepare_cached(sql::SUPPRESSION_SALT)?
        .query_row([], |r| r.get("value"))?;
    let digest = Sha256::digest(format!("{salt}\n{}", email_key(email)).as_bytes());
    Ok(format!("{digest:x}"))
}

fn is_suppressed_in(conn: &Connection, email: &str) -> Result<bool, StoreError> {
    let hash = suppression_hash(conn, email)?;
    Ok(conn
        .prepare_cached(sql::SUPPRESSED_GET)?
        .query_row(params![hash], |_| Ok(()))
        .optional()?
        .is_some())
}

/// What a confirmation link can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Not used yet: pressing the button makes `subscriber_id` active as `name`.
    Open {
        subscriber_id: i64,
        name: Option<String>,
    },
    /// Already used (or expired and forgotten).
    Used,
    /// The subscriber unsubscribed after asking: an old link never undoes that.
    Superseded,
}

fn request_state_in(conn: &Connection, request: i64) -> Result<Confirmation, StoreError> {
    let row = conn
        .prepare_cached(sql::SUBSCRIBE_REQUEST_BY_ID)?
        .query_row(params![request], |r| {
            Ok((
                r.get::<_, i64>("subscriber_id")?,
                r.get::<_, Option<String>>("name")?,
                r.get::<_, i64>("requested_at")?,
                r.get::<_, Option<i64>>("used_at")?,
            ))
        })
        .optional()?;
    let Some((subscriber_id, name, requested_at, used_at)) = row else {
        return Ok(Confirmation::Used);
    };
    if used_at.is_some() {
        return Ok(Confirmation::Used);
    }
    let last_unsubscribe: Option<i64> = conn
        .prepare_cached(sql::SUBSCRIBER_LAST_UNSUBSCRIBE)?
        .query_row(params![subscriber_id], |r| r.get("at"))?;
    if last_unsubscribe.is_some_and(|at| at >= requested_at) {
        return Ok(Confirmation::Superseded);
    }
    Ok(Confirmation::Open {
        subscriber_id,
        name,
    })
}

impl Store {
    pub fn add_subscriber(
        &mut self,
        email: &str,
        name: Option<&str>,
        status: Status,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Result<Added, StoreError> {
        self.in_transaction(|tx| add_subscriber_in(tx, email, name, status, origin, now))
    }

    /// Adds many addresses as active, in one transaction: all of them are stored,
    /// or (on a database error) none. One outcome per address, in order.
    pub fn import_subscribers<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Added>, StoreError> {
        self.in_transaction(|tx| {
            rows.into_iter()
                .map(|(email, name)| {
                    add_subscriber_in(tx, email, name, Status::Active, Origin::Operator, now)
                })
                .collect()
        })
    }

    pub fn subscriber_by_email(&self, email: &str) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::SUBSCRIBER_BY_EMAIL)?
            .query_row(params![email_key(email)], subscriber_from_row)
            .optional()?)
    }

    pub fn subscriber(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::SUBSCRIBER_BY_ID)?
            .query_row(params![id], subscriber_from_row)
            .optional()?)
    }

    /// One page of subscribers after `after_id`, optionally of one status.
    pub fn subscribers_page(
        &self,
        status: Option<Status>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Subscriber>, StoreError> {
        query_all(
            &self.conn,
            sql::SUBSCRIBERS_PAGE,
            params![status.map(Status::as_str), after_id, limit as i64],
            subscriber_from_row,
        )
    }

    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        query_all(&self.conn, sql::SUBSCRIBERS_COUNT_BY_STATUS, [], |r| {
            Ok((r.get("status")?, r.get::<_, i64>("subscribers")? as u64))
        })
    }

    /// Sets a status and, for a departure, records the event, in one transaction.
    /// Returns false when the subscriber already had that status.
    pub fn set_status(
        &mut self,
        id: i64,
        status: Status,
        method: Option<UnsubscribeMethod>,
        issue_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.in_transaction(|tx| set_status_in(tx, id, status, method, issue_id, now))
    }

    /// Records a request from the subscribe form: the address as pending when it
    /// is new (with no name: nothing a stranger typed is stored on anyone), and the
    /// request with its name, applied only when its own link is confirmed. The
    /// request's id, or `None` when the address is already active. One transaction.
    pub fn request_subscription(
        &mut self,
        email: &str,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        self.in_transaction(|tx| {
            let id =
                match add_subscriber_in(tx, email, None, Status::Pending, Origin::OwnRequest, now)?
                {
                    Added::New(id) => id,
                    Added::Existing(_, Status::Active) | Added::Erased => return Ok(None),
                    // Left, bounced or still pending: they confirm (again).
                    Added::Existing(id, _) => id,
                };
            let request = tx
                .prepare_cached(sql::SUBSCRIBE_REQUEST_INSERT)?
                .query_row(params![id, name, to_unix(now)], |r| r.get("id"))?;
            Ok(Some(request))
        })
    }

    /// The address a subscribe request is for (its confirmation token is bound to it).
    pub fn subscribe_request_email(&self, request: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql::SUBSCRIBE_REQUEST_BY_ID)?
            .query_row(params![request], |r| r.get("email"))
            .optional()?)
    }

    /// Whether a subscribe request's link can still confirm, without using it.
    pub fn subscribe_request_state(&self, request: i64) -> Result<Confirmation, StoreError> {
        request_state_in(&self.conn, request)
    }

    /// Someone followed a confirmation link and pressed the button: the request is
    /// used (a link confirms once), the name sent with the button (`Some`), or else
    /// the one the request gave, becomes the subscriber's, they
    /// are active, and their own request lifts an erasure's suppression. A link
    /// older than the subscriber's last unsubscribe never undoes it. One transaction.
    pub fn confirm_request(
        &mut self,
        request: i64,
        name: Option<Option<String>>,
        now: DateTime<Utc>,
    ) -> Result<Confirmation, StoreError> {
        self.in_transaction(|tx| {
            let state = request_state_in(tx, request)?;
            let Confirmation::Open {
                subscriber_id,
                name: requested,
            } = &state
            else {
                return Ok(state);
            };
            let name = name.as_ref().unwrap_or(requested);
            tx.prepare_cached(sql::SUBSCRIBE_REQUEST_USE)?
                .execute(params![request, to_unix(now)])?;
            tx.prepare_cached(sql::SUBSCRIBER_SET_NAME)?
                .execute(params![subscriber_id, name, to_unix(now)])?;
            set_status_in(tx, *subscriber_id, Status::Active, None, None, now)?;
            if let Some(email) = email_of_in(tx, *subscriber_id)? {
                let hash = suppression_hash(tx, &email)?;
                tx.prepare_cached(sql::SUPPRESSED_DELETE)?
                    .execute(params![hash])?;
            }
            Ok(state)
        })
    }

    /// Forgets subscriptions requested before `before` and never confirmed (a
    /// stranger's request for someone else's address expires), and requests whose
    /// links have expired; how many subscribers.
    pub fn expire_pending(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached(sql::SUBSCRIBE_REQUESTS_EXPIRE)?
            .execute(params![to_unix(before)])?;
        Ok(self
            .conn
            .prepare_cached(sql::SUBSCRIBERS_EXPIRE_PENDING)?
            .execute(params![to_unix(before)])?)
    }

    /// Deletes a subscriber with their ledger rows and events.
    pub fn remove_subscriber(&mut self, id: i64) -> Result<(), StoreError> {
        self.in_transaction(|tx| delete_subscriber_in(tx, id))
    }

    /// Whether this address was erased on request (and so may not be imported).
    pub fn is_suppressed(&self, email: &str) -> Result<bool, StoreError> {
        is_suppressed_in(&self.conn, email)
    }

    /// Everything held about a subscriber, as JSON.
    pub fn export_subscriber(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        use serde_json::json;
        let Some(s) = self.subscriber(id)? else {
            return Ok(None);
        };
        let rows = |statement: &str,
                    f: &dyn Fn(&Row) -> rusqlite::Result<serde_json::Value>|
         -> Result<Vec<serde_json::Value>, StoreError> {
            query_all(&self.conn, statement, params![id], f)
        };
        let time = |r: &Row, column: &str| -> rusqlite::Result<String> {
            Ok(from_unix(r.get(column)?).to_rfc3339())
        };
        let deliveries = rows(sql::EXPORT_DELIVERIES, &|r| {
            Ok(json!({
                "issue": r.get::<_, String>("week")?,
                "state": r.get::<_, String>("state")?,
                "attempts": r.get::<_, i64>("attempts")?,
                "last_error": r.get::<_, Option<String>>("last_error")?,
                "server_reply": r.get::<_, Option<String>>("smtp_reply")?,
                "message_id": r.get::<_, Option<String>>("message_id")?,
                "at": time(r, "updated_at")?,
            }))
        })?;
        let unsubscribes = rows(sql::EXPORT_UNSUBSCRIBE_EVENTS, &|r| {
            Ok(json!({
                "at": time(r, "at")?,
                "how": r.get::<_, String>("method")?,
                "issue": r.get::<_, Option<String>>("week")?,
            }))
        })?;
        let bounces = rows(sql::EXPORT_BOUNCE_EVENTS, &|r| {
            Ok(json!({
                "at": time(r, "at")?,
                "kind": r.get::<_, String>("kind")?,
                "status": r.get::<_, Option<String>>("status")?,
                "detail": r.get::<_, Option<String>>("detail")?,
                "issue": r.get::<_, Option<String>>("week")?,
            }))
        })?;
        let requests = rows(sql::EXPORT_SUBSCRIBE_REQUESTS, &|r| {
            Ok(json!({
                "at": time(r, "requested_at")?,
                "name_given": r.get::<_, Option<String>>("name")?,
                "confirmed_at": r.get::<_, Option<i64>>("used_at")?.map(|t| from_unix(t).to_rfc3339()),
            }))
        })?;
        let clicks = rows(sql::EXPORT_SUBSCRIBER_CLICKS, &|r| {
            Ok(json!({
                "issue": r.get::<_, String>("week")?,
                "story": r.get::<_, Option<String>>("title")?,
                "link": r.get::<_, Option<String>>("link")?,
                "at": time(r, "at")?,
            }))
        })?;
        Ok(Some(json!({
            "subscriber": {"id": s.id, "email": s.email, "name": s.name, "status": s.status, "subscribed_at": s.created_at.to_rfc3339()},
            "deliveries": deliveries,
            "unsubscribe_events": unsubscribes,
            "bounce_and_complaint_reports": bounces,
            "subscribe_requests": requests,
            "story_clicks": clicks,
        })))
    }

    /// Erases a subscriber's personal data, keeping only the salted hash of the
    /// address on the suppression list. One transaction.
    pub fn wipe_subscriber(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.in_transaction(|tx| {
            let Some(email) = email_of_in(tx, id)? else {
                return Ok(false);
            };
            let hash = suppression_hash(tx, &email)?;
            tx.prepare_cached(sql::SUPPRESSED_INSERT)?
                .execute(params![hash, to_unix(now)])?;
            delete_subscriber_in(tx, id)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_never_given_twice_so_old_links_reach_nobody_new() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        let add = |store: &mut Store, email: &str| match store
            .add_subscriber(email, None, Status::Active, Origin::Operator, now)
            .unwrap()
        {
            Added::New(id) => id,
            other => panic!("{other:?}"),
        };
        let a = add(&mut store, "a@x.example");
        let b = add(&mut store, "b@x.example");
        // The highest id goes (erased, or removed): the next address gets a new one.
        assert!(store.wipe_subscriber(b, now).unwrap());
        let c = add(&mut store, "c@x.example");
        assert!(c > b, "{c} reuses {b}");
        store.remove_subscriber(c).unwrap();
        let d = add(&mut store, "d@x.example");
        assert!(d > c && a < b);
        assert!(store.subscriber(b).unwrap().is_none());
    }
}
