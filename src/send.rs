//! Sending: delivers one built issue to every active subscriber, recording each
//! delivery in the ledger (`deliveries`, one row per issue × subscriber). In: the
//! config, the issue rendered once, its week. Out: a [`SendSummary`], with every
//! accepted message recorded before it is counted.
//!
//! The guarantees, and how they are kept:
//! - never twice: a delivery is claimed (`pending` → `sending`, committed) before
//!   its message is handed to the server, and marked `sent` once the server accepts
//!   it; a later run sends only `pending` rows. A crash between the two leaves
//!   `sending`, which the next run turns into `uncertain` and, by
//!   `[smtp] on_uncertain`, skips (default) or sends again;
//! - never skipped: rows are read from the ledger, not from a cursor kept in memory;
//! - an unsubscribe committed before a claim means no message (the claim checks the
//!   subscriber is still active in the same statement);
//! - one sender per issue: a lock row in the database, taken over only from a
//!   holder that is gone.
//!
//! Subscribers are streamed from SQLite in batches, so memory does not grow with the
//! list. Transient failures (4xx, dropped connections, timeouts) are retried with
//! backoff up to `[smtp] max_attempts`; a permanent refusal of the mailbox (550,
//! 551, 553, 5.1.x) fails the delivery and marks the subscriber bounced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::{Config, SmtpServer, Transport, UncertainPolicy};
use crate::message::{self, Letterhead, Recipient};
use crate::render::Issue;
use crate::store::{self, query, LedgerCounts, Status, Store, StoreError, UnsubscribeMethod};
use crate::token::{Signer, DEVELOPMENT_SECRET};
use crate::week::IsoWeek;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("delivery ledger: {0}")]
    Ledger(String),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("issue {week} is being sent by {holder} (since {since}); wait for it to finish")]
    Locked {
        week: IsoWeek,
        holder: String,
        since: String,
    },
    #[error("GAZETTE_SECRET is not set: it signs the unsubscribe links, and mail that leaves this machine needs a real one")]
    NoSecret,
    #[error("{0}")]
    Message(#[from] message::MessageError),
    #[error("cannot reach the mail server {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("stopped: the mail server refused {count} messages in a row (last: {last}); this looks like a configuration problem, not bad addresses")]
    Refusing { count: usize, last: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The signer for this configuration: `GAZETTE_SECRET`, or with the file outbox
/// (mail that never leaves the machine) a fixed development secret.
pub fn signer(config: &Config) -> Result<(Signer, bool), SendError> {
    match (&config.secret, config.is_outbox()) {
        (Some(s), _) => Ok((Signer::new(s.clone(), &config.newsletter.list_id), false)),
        (None, true) => Ok((
            Signer::new(
                crate::config::Secret::new(DEVELOPMENT_SECRET),
                &config.newsletter.list_id,
            ),
            true,
        )),
        (None, false) => Err(SendError::NoSecret),
    }
}

/// What a send came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendSummary {
    pub week: String,
    /// Accepted by the server in this run.
    pub sent: u64,
    /// Accepted in earlier runs.
    pub already_sent: u64,
    pub failed: u64,
    pub uncertain: u64,
    pub skipped: u64,
    /// Still to do (a later run will): non-zero means the send did not finish.
    pub pending: u64,
    /// Some of the addresses whose delivery is (or was) uncertain.
    pub uncertain_addresses: Vec<String>,
}

impl SendSummary {
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}: sent {}, already sent {}, failed {}, uncertain {}",
            self.week, self.sent, self.already_sent, self.failed, self.uncertain
        );
        if self.skipped > 0 {
            s += &format!(", skipped {} (left the list)", self.skipped);
        }
        if self.pending > 0 {
            s += &format!(", pending {}", self.pending);
        }
        if !self.uncertain_addresses.is_empty() {
            s += &format!("; uncertain: {}", self.uncertain_addresses.join(", "));
        }
        s
    }
}

/// How a send reports progress while it runs.
pub trait Progress: Send + Sync {
    fn start(&self, total: u64);
    fn delivered(&self);
    fn finish(&self);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn delivered(&self) {}
    fn finish(&self) {}
}

// ---------------------------------------------------------------- the ledger

/// The delivery ledger of one issue. Reads (the producer's batches, counts) use
/// a connection of their own; every write goes to one writer thread that commits
/// whatever has queued up in one transaction (group commit) and only then answers.
/// A worker's "sent" record is not waited for, but it is queued before that
/// worker's next claim, so the claim's commit makes it durable too: a crash can
/// leave at most one delivery per connection between claim and record.
struct Ledger {
    reader: Mutex<Connection>,
    issue_id: i64,
    writer: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, String>>;

enum Op {
    Claim(i64, Reply<bool>),
    Sent {
        id: i64,
        reply: String,
        message_id: String,
    },
    Retry {
        id: i64,
        error: String,
        reply: Option<String>,
        at: i64,
        done: Reply<()>,
    },
    Failed {
        id: i64,
        error: String,
        reply: Option<String>,
        bounce: bool,
        done: Reply<()>,
    },
}

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// Applies one write inside the writer's transaction.
fn apply(tx: &rusqlite::Transaction, issue_id: i64, op: &Op) -> rusqlite::Result<bool> {
    let now = unix_now();
    match op {
        Op::Claim(id, _) => {
            let claimed = tx
                .prepare_cached(query("delivery_claim"))?
                .execute(params![issue_id, id, now])?;
            if claimed == 0 {
                tx.prepare_cached(query("delivery_skip_inactive"))?
                    .execute(params![issue_id, id, now])?;
            }
            Ok(claimed == 1)
        }
        Op::Sent {
            id,
            reply,
            message_id,
        } => {
            tx.prepare_cached(query("delivery_sent"))?
                .execute(params![issue_id, id, reply, message_id, now])?;
            Ok(true)
        }
        Op::Retry {
            id,
            error,
            reply,
            at,
            ..
        } => {
            tx.prepare_cached(query("delivery_retry"))?
                .execute(params![issue_id, id, error, reply, at, now])?;
            Ok(true)
        }
        Op::Failed {
            id,
            error,
            reply,
            bounce,
            ..
        } => {
            tx.prepare_cached(query("delivery_failed"))?
                .execute(params![issue_id, id, error, reply, now])?;
            if *bounce {
                store::set_status_in(
                    tx,
                    *id,
                    Status::Bounced,
                    Some(UnsubscribeMethod::Bounce),
                    Some(issue_id),
                    Utc::now(),
                )
                .map_err(|e| match e {
                    StoreError::Sql(e) => e,
                    other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
                })?;
            }
            Ok(true)
        }
    }
}

/// The writer thread: a batch per commit, answers after the commit.
fn write_loop(
    mut conn: Connection,
    issue_id: i64,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Op>,
    sent: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut batch: Vec<Op> = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome: rusqlite::Result<Vec<bool>> = (|| {
            let tx = conn.transaction()?;
            let results = batch
                .iter()
                .map(|op| apply(&tx, issue_id, op))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(results)
        })();
        let failure = outcome.as_ref().err().map(|e| e.to_string());
        let results = outcome.unwrap_or_default();
        for (i, op) in batch.drain(..).enumerate() {
            let result = match &failure {
                Some(e) => Err(e.clone()),
                None => Ok(results[i]),
            };
            match op {
                Op::Claim(_, reply) => {
                    let _ = reply.send(result);
                }
                Op::Sent { .. } => {
                    if result.is_ok() {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Op::Retry { done, .. } | Op::Failed { done, .. } => {
                    let _ = done.send(result.map(|_| ()));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(())
}

impl Ledger {
    fn open(path: &Path, issue_id: i64, sent: Arc<AtomicU64>) -> Result<Ledger, SendError> {
        // Store::open applies migrations and pragmas; keep its connections.
        let reader = Store::open(path)?.into_connection();
        let writer_conn = Store::open(path)?.into_connection();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("gazette-ledger".into())
            .spawn(move || write_loop(writer_conn, issue_id, rx, sent))
            .map_err(|source| SendError::Io {
                path: "the ledger writer thread".into(),
                source,
            })?;
        Ok(Ledger {
            reader: Mutex::new(reader),
            issue_id,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SendError> {
        let mut conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut conn)?)
    }

    fn queue(&self, op: Op) -> Result<(), SendError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .as_ref()
            .and_then(|w| w.send(op).ok())
            .ok_or_else(|| SendError::Ledger("the ledger writer has stopped".into()))
    }

    async fn wait<T>(
        rx: tokio::sync::oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, SendError> {
        rx.await
            .map_err(|_| SendError::Ledger("the ledger writer has stopped".into()))?
            .map_err(SendError::Ledger)
    }

    /// Waits for every queued write to be committed, and stops the writer.
    fn finish(&self) -> Result<(), SendError> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.join()
                .map_err(|_| SendError::Ledger("the ledger writer panicked".into()))?
                .map_err(SendError::Ledger)?;
        }
        Ok(())
    }

    fn counts(&self) -> Result<LedgerCounts, SendError> {
        self.read(|c| ledger_counts(c, self.issue_id))
    }

    fn due(&self, after: i64, limit: usize) -> Result<Vec<(Recipient, u32)>, SendError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(query("deliveries_due"))?;
            let rows = stmt.query_map(
                params![self.issue_id, unix_now(), after, limit as i64],
                |r| {
                    Ok((
                        Recipient {
                            id: r.get(0)?,
                            email: r.get(1)?,
                            name: r.get(2)?,
                        },
                        r.get::<_, i64>(3)? as u32,
                    ))
                },
            )?;
            rows.collect()
        })
    }

    fn next_retry_at(&self) -> Result<Option<i64>, SendError> {
        self.read(|c| {
            c.prepare_cached(query("deliveries_next_retry_at"))?
                .query_row(params![self.issue_id], |r| r.get(0))
        })
    }

    /// Claims a delivery, durably; false (and the row marked skipped, if the
    /// subscriber left) when it is no longer to be sent.
    async fn claim(&self, subscriber_id: i64) -> Result<bool, SendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(Op::Claim(subscriber_id, tx))?;
        Self::wait(rx).await
    }

    /// Records an accepted message; durable with the worker's next claim.
    fn sent(&self, subscriber_id: i64, reply: &str, message_id: &str) -> Result<(), SendError> {
        self.queue(Op::Sent {
            id: subscriber_id,
            reply: reply.to_string(),
            message_id: message_id.to_string(),
        })
    }

    /// Queues a write and waits for its commit.
    async fn commit(&self, op: impl FnOnce(Reply<()>) -> Op) -> Result<(), SendError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.queue(op(done))?;
        Self::wait(rx).await
    }

    async fn retry(
        &self,
        subscriber_id: i64,
        error: &str,
        reply: Option<&str>,
        at: i64,
    ) -> Result<(), SendError> {
        self.commit(|done| Op::Retry {
            id: subscriber_id,
            error: error.to_string(),
            reply: reply.map(str::to_string),
            at,
            done,
        })
        .await
    }

    /// A permanent failure; `bounce` also marks the subscriber bounced.
    async fn failed(
        &self,
        subscriber_id: i64,
        error: &str,
        reply: Option<&str>,
        bounce: bool,
    ) -> Result<(), SendError> {
        self.commit(|done| Op::Failed {
            id: subscriber_id,
            error: error.to_string(),
            reply: reply.map(str::to_string),
            bounce,
            done,
        })
        .await
    }
}

fn ledger_counts(c: &Connection, issue_id: i64) -> rusqlite::Result<LedgerCounts> {
    let mut counts = LedgerCounts::default();
    let mut stmt = c.prepare_cached(query("deliveries_count_by_state"))?;
    let rows = stmt.query_map(params![issue_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
        ))
    })?;
    for row in rows {
        let (state, n, was_uncertain) = row?;
        match state.as_str() {
            "pending" => counts.pending = n,
            "sending" => counts.sending = n,
            "sent" => {
                counts.sent = n;
                counts.resent_uncertain = was_uncertain;
            }
            "failed" => counts.failed = n,
            "uncertain" => counts.uncertain = n,
            "skipped" => counts.skipped = n,
            _ => {}
        }
    }
    Ok(counts)
}

// ---------------------------------------------------------------- the lock

fn holder_name() -> String {
    let host = hostname();
    format!("{host}:{}", std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the process named by a lock holder is gone: on this host, by its pid;
/// elsewhere, by a heartbeat older than a minute.
fn holder_is_gone(holder: &str, heartbeat_at: i64) -> bool {
    let (host, pid) = holder.rsplit_once(':').unwrap_or((holder, ""));
    if host == hostname() {
        if let Ok(pid) = pid.parse::<u32>() {
            if pid == std::process::id() {
                return false;
            }
            return !Path::new(&format!("/proc/{pid}")).exists();
        }
    }
    unix_now() - heartbeat_at > 60
}

struct SendLock {
    path: PathBuf,
    issue_id: i64,
    holder: String,
}

impl SendLock {
    fn acquire(
        store: &mut Store,
        path: &Path,
        issue_id: i64,
        week: IsoWeek,
    ) -> Result<SendLock, SendError> {
        let holder = holder_name();
        let tx = store
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<(String, i64, i64)> = tx
            .prepare_cached(query("lock_get"))?
            .query_row(params![issue_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((other, since, heartbeat)) = current {
            if other != holder && !holder_is_gone(&other, heartbeat) {
                return Err(SendError::Locked {
                    week,
                    holder: other,
                    since: store::from_unix(since).to_rfc3339(),
                });
            }
        }
        tx.prepare_cached(query("lock_put"))?
            .execute(params![issue_id, holder, unix_now()])?;
        tx.commit()?;
        Ok(SendLock {
            path: path.to_path_buf(),
            issue_id,
            holder,
        })
    }
}

/// Keeps a lock's heartbeat fresh, so another host can tell the holder is alive.
fn heartbeat(path: &Path, issue_id: i64, holder: &str) {
    if let Ok(store) = Store::open(path) {
        let _ = store.conn().execute(
            query("lock_heartbeat"),
            params![issue_id, holder, unix_now()],
        );
    }
}

impl Drop for SendLock {
    fn drop(&mut self) {
        if let Ok(store) = Store::open(&self.path) {
            let _ = store
                .conn()
                .execute(query("lock_release"), params![self.issue_id, self.holder]);
        }
    }
}

// ---------------------------------------------------------------- transports

/// What a failed delivery means for the retry policy.
#[derive(Debug)]
struct Failure {
    message: String,
    reply: Option<String>,
    /// Worth trying again later (4xx, network, timeout).
    transient: bool,
    /// The server refused the mailbox itself: the subscriber bounced.
    bounce: bool,
    /// The connection is unusable; reconnect before the next message.
    broken: bool,
    /// 421, or an enhanced code 4.7.x: the server wants fewer messages.
    slow_down: bool,
}

/// A refused or failed delivery, classified for the retry policy.
fn failure(code: Option<u16>, text: String, permanent: bool, broken: bool) -> Failure {
    Failure {
        slow_down: code == Some(421) || text.contains(" 4.7.") || text.starts_with("4.7."),
        reply: code.map(|c| format!("{c} {text}")),
        bounce: permanent && code.is_some_and(|c| is_mailbox_refusal(c, &text)),
        transient: !permanent,
        broken,
        message: text,
    }
}

/// Codes that say the mailbox is bad (not that we are, or the message is).
fn is_mailbox_refusal(code: u16, text: &str) -> bool {
    matches!(code, 550 | 551 | 553) || text.trim_start().starts_with("5.1.")
}

/// An open SMTP connection: gazette's own client on plain connections that need
/// neither TLS nor a login (it pipelines), lettre's otherwise.
enum Conn {
    Lettre(Box<AsyncSmtpConnection>),
    Fast(Box<crate::smtp::Client>),
}

impl Conn {
    fn has_broken(&self) -> bool {
        match self {
            Conn::Lettre(c) => c.has_broken(),
            Conn::Fast(_) => false,
        }
    }
}

/// One worker's way to hand messages over.
enum Channel {
    Outbox(PathBuf),
    Smtp {
        server: SmtpServer,
        require_tls: bool,
        timeout: Duration,
        conn: Option<Conn>,
    },
}

impl Channel {
    fn new(config: &Config, outbox: &Path) -> Channel {
        match &config.smtp.transport {
            Transport::Outbox(_) => Channel::Outbox(outbox.to_path_buf()),
            Transport::Smtp(server) => Channel::to_server(config, server),
        }
    }

    fn to_server(config: &Config, server: &SmtpServer) -> Channel {
        Channel::Smtp {
            server: server.clone(),
            require_tls: config.smtp.require_tls,
            timeout: Duration::from_secs(config.smtp.timeout_secs),
            conn: None,
        }
    }

    /// Makes sure a connection is open; the error says why not.
    async fn ready(&mut self) -> Result<(), String> {
        let Channel::Smtp {
            server,
            require_tls,
            timeout,
            conn,
        } = self
        else {
            return Ok(());
        };
        if conn.as_ref().is_some_and(|c| !c.has_broken()) {
            return Ok(());
        }
        *conn = None;
        let c = tokio::time::timeout(*timeout, connect(server, *require_tls, *timeout))
            .await
            .map_err(|_| format!("no answer within {} s", timeout.as_secs()))??;
        *conn = Some(c);
        Ok(())
    }

    async fn deliver(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
        name: &str,
    ) -> Result<String, Failure> {
        match self {
            Channel::Outbox(dir) => {
                let path = dir.join(name);
                crate::digest::write_atomic(&path, bytes).map_err(|e| Failure {
                    message: e.to_string(),
                    reply: None,
                    transient: true,
                    bounce: false,
                    broken: false,
                    slow_down: false,
                })?;
                Ok(format!("written to {}", path.display()))
            }
            Channel::Smtp { timeout, conn, .. } => {
                let Some(c) = conn.as_mut() else {
                    return Err(Failure {
                        message: "not connected".into(),
                        reply: None,
                        transient: true,
                        bounce: false,
                        broken: true,
                        slow_down: false,
                    });
                };
                let Conn::Lettre(c) = c else {
                    let Conn::Fast(client) = c else {
                        unreachable!()
                    };
                    let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
                    let to = envelope
                        .to()
                        .first()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    return match client.send(&from, &to, bytes).await {
                        Ok(reply) => Ok(reply.to_string().replace('\n', " ")),
                        Err(e) => {
                            if e.broken {
                                *conn = None;
                            }
                            Err(failure(
                                e.reply.as_ref().map(|r| r.code),
                                e.message.replace('\n', " "),
                                e.is_permanent(),
                                e.broken,
                            ))
                        }
                    };
                };
                let result = tokio::time::timeout(*timeout, c.send(envelope, bytes)).await;
                match result {
                    Err(_) => {
                        *conn = None;
                        Err(Failure {
                            message: format!("no reply within {} s", timeout.as_secs()),
                            reply: None,
                            transient: true,
                            bounce: false,
                            broken: true,
                            slow_down: false,
                        })
                    }
                    Ok(Ok(response)) => Ok(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    )),
                    Ok(Err(e)) => {
                        let broken = c.has_broken();
                        if broken {
                            *conn = None;
                        }
                        let code: Option<u16> =
                            e.status().map(|s| s.to_string().parse().unwrap_or(0));
                        Err(failure(code, e.to_string(), e.is_permanent(), broken))
                    }
                }
            }
        }
    }

    async fn close(&mut self) {
        let two_seconds = Duration::from_secs(2);
        match self {
            Channel::Smtp {
                conn: Some(Conn::Lettre(c)),
                ..
            } => {
                let _ = tokio::time::timeout(two_seconds, c.quit()).await;
            }
            Channel::Smtp {
                conn: Some(Conn::Fast(c)),
                ..
            } => {
                let _ = tokio::time::timeout(two_seconds, c.quit()).await;
            }
            _ => {}
        }
    }
}

async fn connect(
    server: &SmtpServer,
    require_tls: bool,
    timeout: Duration,
) -> Result<Conn, String> {
    // Plain, no login: gazette's own client, unless the server offers STARTTLS.
    if !server.implicit_tls && server.user.is_none() {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| e.to_string())?;
        let force = std::env::var("GAZETTE_SMTP_PIPELINING").is_ok_and(|v| v == "always");
        let client = crate::smtp::Client::connect(tcp, &hostname(), timeout, force)
            .await
            .map_err(|e| e.message)?;
        if !client.starttls {
            if require_tls {
                return Err(
                    "the server does not offer STARTTLS and [smtp] require_tls is set".into(),
                );
            }
            return Ok(Conn::Fast(Box::new(client)));
        }
    }
    let hello = ClientId::default();
    let tls = || TlsParameters::new(server.host.clone()).map_err(|e| format!("TLS: {e}"));
    let mut conn = if server.implicit_tls {
        AsyncSmtpConnection::connect_tokio1(
            (server.host.as_str(), server.port),
            Some(timeout),
            &hello,
            Some(tls()?),
            None,
        )
        .await
        .map_err(|e| e.to_string())?
    } else {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| e.to_string())?;
        // TCP_NODELAY, and a body leaves with its final dot: see `wire`.
        let stream = crate::wire::JoinedStream::new(tcp).map_err(|e| e.to_string())?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
            .await
            .map_err(|e| e.to_string())?;
        if conn.can_starttls() {
            conn.starttls(tls()?, &hello)
                .await
                .map_err(|e| format!("STARTTLS: {e}"))?;
        } else if require_tls {
            return Err("the server does not offer STARTTLS and [smtp] require_tls is set".into());
        }
        conn
    };
    if let Some(user) = &server.user {
        let password = server
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), password),
        )
        .await
        .map_err(|e| format!("login as {user}: {e}"))?;
    }
    Ok(Conn::Lettre(Box::new(conn)))
}

fn server_label(config: &Config) -> String {
    match &config.smtp.transport {
        Transport::Smtp(s) => format!("{}:{}", s.host, s.port),
        Transport::Outbox(_) => "the outbox".into(),
    }
}

// ---------------------------------------------------------------- throttling

/// How fast messages may go: at most `rate` a second, at most `per_hour` in any
/// sliding hour, and not at all while a server's "slow down" pause lasts. Pure
/// (the caller passes the time), so it is tested without waiting.
struct Throttle {
    interval: Option<Duration>,
    next_slot: Instant,
    per_hour: usize,
    /// When the messages of the last hour went, oldest first.
    window: std::collections::VecDeque<Instant>,
    paused_until: Instant,
    pause: Duration,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Throttle {
    fn new(rate: f64, per_hour: u32, now: Instant) -> Throttle {
        Throttle {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next_slot: now,
            per_hour: per_hour as usize,
            window: std::collections::VecDeque::new(),
            paused_until: now,
            pause: Duration::ZERO,
        }
    }

    /// Takes a slot at `now` (`None`), or says how long to wait first.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let mut ready_at = self.paused_until.max(if self.interval.is_some() {
            self.next_slot
        } else {
            now
        });
        if self.per_hour > 0 {
            while self
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= HOUR)
            {
                self.window.pop_front();
            }
            if self.window.len() >= self.per_hour {
                ready_at = ready_at.max(self.window[0] + HOUR);
            }
        }
        if ready_at > now {
            return Some(ready_at - now);
        }
        if let Some(interval) = self.interval {
            self.next_slot = self.next_slot.max(now) + interval;
        }
        if self.per_hour > 0 {
            self.window.push_back(now);
        }
        None
    }

    /// The server said 421 or 4.7.x: pause everyone, longer each time in a row
    /// (5 s, 10 s, 20 s … 5 minutes; scaled in tests by `GAZETTE_SMTP_RETRY_MS`).
    fn slow_down(&mut self, now: Instant) -> Duration {
        self.pause = if self.pause.is_zero() {
            backoff(1) * 5
        } else {
            (self.pause * 2).min(Duration::from_secs(300))
        };
        self.paused_until = self.paused_until.max(now + self.pause);
        self.pause
    }

    fn accepted(&mut self) {
        self.pause = Duration::ZERO;
    }
}

// ---------------------------------------------------------------- sending

/// Where the outbox of a week is.
pub fn outbox_dir(config: &Config, week: IsoWeek) -> PathBuf {
    match &config.smtp.transport {
        Transport::Outbox(Some(dir)) => dir.join(week.to_string()),
        _ => config.week_dir(&week).join("outbox"),
    }
}

/// Retry delay after `attempts` attempts: 1 s, 2 s, 4 s … at most 5 minutes
/// (scaled by `GAZETTE_SMTP_RETRY_MS`, in tests).
fn backoff(attempts: u32) -> Duration {
    let base_ms: u64 = std::env::var("GAZETTE_SMTP_RETRY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis((base_ms << attempts.min(12).saturating_sub(1)).min(300_000))
}

/// One relay's share of the send: its limits, and whether it is out of rotation.
struct RelayState {
    label: String,
    throttle: Mutex<Throttle>,
    down_until: Mutex<Option<Instant>>,
}

impl RelayState {
    fn down(&self, now: Instant) -> Option<Instant> {
        let down = *self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.filter(|t| *t > now)
    }
}

struct Shared {
    ledger: Ledger,
    /// Accepted and durably recorded, this run (counted by the ledger writer).
    prebuilt: message::Prebuilt,
    head: Letterhead,
    signer: Signer,
    max_attempts: u32,
    sent: Arc<AtomicU64>,
    in_flight: AtomicUsize,
    stop: Arc<AtomicBool>,
    fatal: Mutex<Option<SendError>>,
    consecutive_refusals: AtomicUsize,
    relays: Vec<RelayState>,
    progress: Arc<dyn Progress>,
}

impl Shared {
    fn fail(&self, e: SendError) {
        self.stop.store(true, Ordering::SeqCst);
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(e);
        }
    }
}

/// Sends `issue` (the one built for `week`) to every active subscriber not yet
/// sent it, and returns the ledger's account.
///
/// Setting `stop` ends the send early: messages already handed to the server are
/// finished and recorded, the rest stay pending for the next run.
pub async fn send_issue(
    config: &Config,
    issue: Issue,
    week: IsoWeek,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
) -> Result<SendSummary, SendError> {
    let (signer, _) = signer(config)?;
    let head = Letterhead::new(config, week, &issue.subject)?;
    let mut store = Store::open(&config.database.path)?;
    let issue_id: i64 = store
        .conn()
        .prepare_cached(query("issue_upsert"))?
        .query_row(params![week.to_string(), issue.subject, unix_now()], |r| {
            r.get(0)
        })?;
    let lock = SendLock::acquire(&mut store, &config.database.path, issue_id, week)?;
    {
        let tx = store.transaction()?;
        let now = unix_now();
        tx.prepare_cached(query("deliveries_mark_uncertain"))?
            .execute(params![issue_id, now])?;
        if config.smtp.on_uncertain == UncertainPolicy::Resend {
            tx.prepare_cached(query("deliveries_resend_uncertain"))?
                .execute(params![issue_id, now])?;
        }
        tx.prepare_cached(query("deliveries_enrol"))?
            .execute(params![issue_id, now])?;
        tx.commit()?;
    }
    let before = ledger_counts(store.conn(), issue_id)?;
    let outbox = outbox_dir(config, week);
    if config.is_outbox() {
        std::fs::create_dir_all(&outbox).map_err(|source| SendError::Io {
            path: outbox.display().to_string(),
            source,
        })?;
    }
    // The relays: [smtp] url, then [[smtp.relays]], each with its connections,
    // rate and hourly limit.
    let plan: Vec<(Option<SmtpServer>, usize, f64, u32)> = match &config.smtp.transport {
        Transport::Outbox(_) => vec![(
            None,
            config.smtp.concurrency,
            config.smtp.rate,
            config.smtp.per_hour,
        )],
        Transport::Smtp(server) => std::iter::once((
            Some(server.clone()),
            config.smtp.concurrency,
            config.smtp.rate,
            config.smtp.per_hour,
        ))
        .chain(
            config
                .smtp
                .relays
                .iter()
                .map(|r| (Some(r.server.clone()), r.concurrency, r.rate, r.per_hour)),
        )
        .collect(),
    };
    let sent = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        ledger: Ledger::open(&config.database.path, issue_id, sent.clone())?,
        prebuilt: message::Prebuilt::new(&issue),
        head,
        signer,
        max_attempts: config.smtp.max_attempts,
        sent,
        in_flight: AtomicUsize::new(0),
        stop,
        fatal: Mutex::new(None),
        consecutive_refusals: AtomicUsize::new(0),
        relays: plan
            .iter()
            .map(|(server, _, rate, per_hour)| RelayState {
                label: match server {
                    Some(s) => format!("{}:{}", s.host, s.port),
                    None => "the outbox".into(),
                },
                throttle: Mutex::new(Throttle::new(*rate, *per_hour, Instant::now())),
                down_until: Mutex::new(None),
            })
            .collect(),
        progress: progress.clone(),
    });
    progress.start(before.pending);

    let workers: usize = plan.iter().map(|(_, n, _, _)| n).sum();
    let (tx, rx) = tokio::sync::mpsc::channel::<(Recipient, u32)>(workers * 4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = tokio::task::JoinSet::new();
    for (relay, (server, connections, _, _)) in plan.iter().enumerate() {
        for _ in 0..*connections {
            let shared = shared.clone();
            let rx = rx.clone();
            let mut channel = match server {
                Some(server) => Channel::to_server(config, server),
                None => Channel::new(config, &outbox),
            };
            tasks.spawn(async move {
                worker(&shared, &mut channel, rx, relay).await;
                channel.close().await;
            });
        }
    }
    let heartbeat = {
        let path = config.database.path.clone();
        let holder = lock.holder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                heartbeat(&path, issue_id, &holder);
            }
        })
    };

    let produced = produce(&shared, tx).await;
    while tasks.join_next().await.is_some() {}
    // Every record queued by the workers is committed before anything is counted.
    let recorded = shared.ledger.finish();
    heartbeat.abort();
    progress.finish();
    produced?;
    recorded?;
    if let Some(e) = shared
        .fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(e);
    }
    let after = shared.ledger.counts()?;
    if after.pending == 0 && after.sending == 0 {
        store
            .conn()
            .prepare_cached(query("issue_finish"))?
            .execute(params![issue_id, unix_now()])?;
    }
    let uncertain_addresses: Vec<String> = {
        let mut stmt = store
            .conn()
            .prepare_cached(query("deliveries_uncertain_emails"))?;
        let rows = stmt.query_map(params![issue_id, 20], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    drop(lock);
    Ok(SendSummary {
        week: week.to_string(),
        sent: shared.sent.load(Ordering::SeqCst),
        already_sent: before.sent,
        failed: after.failed,
        uncertain: after.uncertain + after.resent_uncertain,
        skipped: after.skipped,
        pending: after.pending + after.sending,
        uncertain_addresses,
    })
}

/// Feeds due deliveries to the workers in batches (keyset by subscriber id), then
/// waits for retries that are due later, until nothing is pending.
async fn produce(
    shared: &Shared,
    tx: tokio::sync::mpsc::Sender<(Recipient, u32)>,
) -> Result<(), SendError> {
    const BATCH: usize = 500;
    let mut after = 0i64;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let batch = shared.ledger.due(after, BATCH)?;
        if batch.is_empty() {
            // Everything handed out must be finished before starting over.
            while shared.in_flight.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let Some(next) = shared.ledger.next_retry_at()? else {
                return Ok(());
            };
            let wait = (next - unix_now()).clamp(0, 300);
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64 * 1000)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            after = 0;
            continue;
        }
        for job in batch {
            after = job.0.id;
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            if tx.send(job).await.is_err() {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
        }
    }
}

async fn worker(
    shared: &Shared,
    channel: &mut Channel,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Recipient, u32)>>>,
    relay: usize,
) {
    loop {
        // A relay out of rotation takes no work until it is due back.
        while let Some(until) = shared.relays[relay].down(Instant::now()) {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
        let job = { rx.lock().await.recv().await };
        let Some((recipient, attempts)) = job else {
            return;
        };
        if !shared.stop.load(Ordering::SeqCst) {
            if let Err(e) = deliver_one(shared, channel, &recipient, attempts, relay).await {
                shared.fail(e);
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn deliver_one(
    shared: &Shared,
    channel: &mut Channel,
    recipient: &Recipient,
    attempts: u32,
    relay: usize,
) -> Result<(), SendError> {
    let state = &shared.relays[relay];
    // Connect before claiming: a server that is down never leaves a claim behind.
    let mut tries = 0;
    while let Err(reason) = channel.ready().await {
        tries += 1;
        if tries >= 3 {
            let now = Instant::now();
            let others_up = shared
                .relays
                .iter()
                .enumerate()
                .any(|(i, r)| i != relay && r.down(now).is_none());
            if !others_up {
                return Err(SendError::Unreachable {
                    server: state.label.clone(),
                    reason,
                });
            }
            // Out of rotation for a while; the delivery, never claimed, stays
            // pending for the other relays.
            let back = now + backoff(1) * 60;
            *state.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(back);
            tracing::warn!(relay = %state.label, %reason, "relay out of rotation for a minute");
            return Ok(());
        }
        tokio::time::sleep(backoff(tries)).await;
    }
    // Wait for a slot before claiming: a delivery is claimed only when it goes now.
    loop {
        let wait = state
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now());
        match wait {
            None => break,
            Some(d) => tokio::time::sleep(d).await,
        }
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    if !shared.ledger.claim(recipient.id).await? {
        shared.progress.delivered();
        return Ok(());
    }
    let attempts = attempts + 1;
    let message_id = message::new_message_id(&shared.head, recipient.id);
    let built = message::build(
        &shared.prebuilt,
        &shared.head,
        &shared.signer,
        recipient,
        SystemTime::now(),
        message_id.clone(),
        false,
    );
    let message = match built {
        Ok(m) => m,
        Err(e) => {
            // An address that cannot be written into a message never will be.
            shared
                .ledger
                .failed(recipient.id, &e.to_string(), None, false)
                .await?;
            shared.progress.delivered();
            return Ok(());
        }
    };
    let bytes = message.formatted();
    let file_name = format!("{:010}.eml", recipient.id);
    match channel
        .deliver(message.envelope(), &bytes, &file_name)
        .await
    {
        Ok(reply) => {
            state
                .throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .accepted();
            shared.ledger.sent(recipient.id, &reply, &message_id)?;
            shared.consecutive_refusals.store(0, Ordering::SeqCst);
            shared.progress.delivered();
        }
        Err(f) if f.transient && attempts < shared.max_attempts => {
            if f.slow_down {
                let pause = state
                    .throttle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .slow_down(Instant::now());
                tracing::warn!(pause_secs = pause.as_secs(), reply = ?f.reply, "the server asks us to slow down; pausing");
            }
            tracing::info!(subscriber = recipient.id, attempts, error = %f.message, "transient failure; will retry");
            let at = unix_now() + backoff(attempts).as_secs() as i64;
            shared
                .ledger
                .retry(recipient.id, &f.message, f.reply.as_deref(), at)
                .await?;
            if f.broken {
                tokio::task::yield_now().await;
            }
        }
        Err(f) => {
            tracing::warn!(subscriber = recipient.id, error = %f.message, "delivery failed");
            shared
                .ledger
                .failed(recipient.id, &f.message, f.reply.as_deref(), f.bounce)
                .await?;
            shared.progress.delivered();
            if !f.transient && !f.bounce {
                let n = shared.consecutive_refusals.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= 20 {
                    return Err(SendError::Refusing {
                        count: n,
                        last: f.message,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A channel for a few messages outside the ledger; with the file outbox, its
/// files go into `outbox`.
fn single_channel(config: &Config, outbox: &Path) -> Result<Channel, SendError> {
    if config.is_outbox() {
        std::fs::create_dir_all(outbox).map_err(|source| SendError::Io {
            path: outbox.display().to_string(),
            source,
        })?;
    }
    Ok(Channel::new(config, outbox))
}

async fn channel_ready(channel: &mut Channel, config: &Config) -> Result<(), SendError> {
    channel
        .ready()
        .await
        .map_err(|reason| SendError::Unreachable {
            server: server_label(config),
            reason,
        })
}

/// Sends one message outside any issue (a confirmation mail): over the configured
/// server, or into `<output>/<outbox_name>/` with the file outbox.
pub async fn send_one(
    config: &Config,
    message: &lettre::Message,
    outbox_name: &str,
) -> Result<String, SendError> {
    let mut channel = single_channel(config, &config.output.dir.join(outbox_name))?;
    channel_ready(&mut channel, config).await?;
    let name = format!(
        "{}-{:08x}.eml",
        Utc::now().format("%Y%m%dT%H%M%S"),
        fastrand::u32(..)
    );
    let result = channel
        .deliver(message.envelope(), &message.formatted(), &name)
        .await;
    channel.close().await;
    result.map_err(|f| SendError::Unreachable {
        server: server_label(config),
        reason: f.message,
    })
}

/// `--test ADDR…`: one copy each, "[TEST]" in the subject, no ledger.
pub async fn send_test(
    config: &Config,
    issue: &Issue,
    week: IsoWeek,
    to: &[String],
) -> Result<Vec<String>, SendError> {
    let (signer, _) = signer(config)?;
    let head = Letterhead::new(config, week, &issue.subject)?;
    let mut channel = single_channel(config, &outbox_dir(config, week).join("test"))?;
    let mut report = Vec::new();
    let prebuilt = message::Prebuilt::new(issue);
    for (i, address) in to.iter().enumerate() {
        let recipient = Recipient {
            id: 0,
            email: address.clone(),
            name: None,
        };
        let id = message::new_message_id(&head, 0);
        let message = message::build(
            &prebuilt,
            &head,
            &signer,
            &recipient,
            SystemTime::now(),
            id,
            true,
        )?;
        channel_ready(&mut channel, config).await?;
        match channel
            .deliver(
                message.envelope(),
                &message.formatted(),
                &format!("test-{i}.eml"),
            )
            .await
        {
            Ok(reply) => report.push(format!("test copy to {address}: {reply}")),
            Err(f) => report.push(format!("test copy to {address} FAILED: {}", f.message)),
        }
    }
    channel.close().await;
    Ok(report)
}

/// `--dry-run`: who would receive the issue now, without touching the ledger.
pub fn would_receive(
    store: &Store,
    week: IsoWeek,
    mut each: impl FnMut(&str),
) -> Result<u64, SendError> {
    let issue_id = store.issue_id(&week.to_string())?;
    let mut after = 0i64;
    let mut count = 0u64;
    let mut stmt = store
        .conn()
        .prepare_cached(query("deliveries_would_receive"))?;
    loop {
        let rows: Vec<(i64, String)> = stmt
            .query_map(params![issue_id, after, 1000], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Ok(count);
        }
        for (id, email) in rows {
            after = id;
            count += 1;
            each(&email);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hourly_window_is_honoured_exactly() {
        let t0 = Instant::now();
        let mut t = Throttle::new(0.0, 3, t0);
        assert_eq!(t.take(t0), None);
        assert_eq!(t.take(t0 + Duration::from_secs(10)), None);
        assert_eq!(t.take(t0 + Duration::from_secs(20)), None);
        // The fourth waits until the first is an hour old, to the second.
        assert_eq!(
            t.take(t0 + Duration::from_secs(30)),
            Some(HOUR - Duration::from_secs(30))
        );
        assert_eq!(
            t.take(t0 + HOUR - Duration::from_millis(1)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(t.take(t0 + HOUR), None);
        assert_eq!(t.take(t0 + HOUR), Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_rate_spaces_messages_and_a_slow_down_pauses_all() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2.0, 0, t0);
        assert_eq!(t.take(t0), None);
        assert_eq!(t.take(t0), Some(Duration::from_millis(500)));
        assert_eq!(t.take(t0 + Duration::from_millis(500)), None);
        let pause = t.slow_down(t0 + Duration::from_secs(1));
        assert!(pause > Duration::ZERO);
        assert_eq!(t.take(t0 + Duration::from_secs(1)), Some(pause));
        let longer = t.slow_down(t0 + Duration::from_secs(1));
        assert_eq!(longer, pause * 2);
        t.accepted();
        assert_eq!(t.slow_down(t0 + Duration::from_secs(1)), pause);
    }
}
