//! Sending: delivers one built issue to every active subscriber, recording each
//! delivery in the ledger (`deliveries`, one row per issue × subscriber). In: the
//! config, the issue rendered once, its week. Out: a [`SendSummary`], with every
//! accepted message recorded before it is counted.
//!
//! Each guarantee lives in one file, named in its opening comment:
//! `ledger.rs` never twice, never skipped, an unsubscribe before the claim means
//! no message; `lock.rs` one sender per issue; `throttle.rs` rates, hourly limits
//! and "slow down" pauses; `worker.rs` claims only what goes now, retries and the
//! stop after 20 refusals; `channel.rs` the outbox and SMTP connections, with
//! failures classified; [`smtp`] and [`wire`] the fast paths on the wire.
//!
//! Subscribers are streamed from SQLite in batches, so memory does not grow with
//! the list.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use chrono::Utc;
use serde::Serialize;

use crate::config::{Config, SmtpServer, Transport, UncertainPolicy};
use crate::message::{self, Letterhead, Recipient};
use crate::render::Issue;
use crate::store::{Store, StoreError};
use crate::token::Signer;
use crate::week::IsoWeek;

mod channel;
mod ledger;
mod lock;
pub mod smtp;
mod throttle;
pub mod wire;
mod worker;

use channel::{server_label, Channel};
use worker::{RelayState, Shared};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delivery ledger")]
    Ledger(#[source] ledger::LedgerError),
    #[error("cannot start the ledger writer thread")]
    Spawn(#[source] std::io::Error),
    #[error("issue {week} is being sent by {holder} (since {since}); wait for it to finish")]
    Locked {
        week: IsoWeek,
        holder: String,
        since: String,
    },
    #[error(transparent)]
    Signer(#[from] crate::token::NoSecret),
    #[error(transparent)]
    Message(#[from] message::MessageError),
    #[error("cannot reach the mail server {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("the mail server {server} answered, but the connection cannot be used: {reason}")]
    Refused { server: String, reason: String },
    #[error("the mail server {server} did not take the message: {reason}")]
    NotTaken { server: String, reason: String },
    #[error("stopped: the mail server refused {count} messages in a row (last: {last}); this looks like a configuration problem, not bad addresses")]
    Refusing { count: usize, last: String },
    #[error("cannot write {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl SendError {
    /// A connection that could not be opened, as the error it is.
    pub(crate) fn dial(server: String, e: channel::DialError) -> SendError {
        match e {
            channel::DialError::Unreachable(reason) => SendError::Unreachable { server, reason },
            channel::DialError::Refused(reason) => SendError::Refused { server, reason },
        }
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
    /// Failed in this run after every attempt was deferred (4xx, timeouts):
    /// the server's trouble, not the address's.
    pub gave_up: u64,
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

/// Progress as log lines at `info`: the total at the start, then a line every
/// `every` while deliveries are made (for `serve` and cron, where no one watches
/// a bar).
pub struct LogProgress {
    label: String,
    every: std::time::Duration,
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<std::time::Instant>,
}

impl LogProgress {
    pub fn new(label: impl Into<String>, every: std::time::Duration) -> LogProgress {
        LogProgress {
            label: label.into(),
            every,
            total: Default::default(),
            done: Default::default(),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Progress for LogProgress {
    fn start(&self, total: u64) {
        use std::sync::atomic::Ordering;
        self.total.store(total, Ordering::Relaxed);
        tracing::info!("{}: {total} deliveries to make", self.label);
    }
    fn delivered(&self) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= self.every {
            *last = std::time::Instant::now();
            tracing::info!(
                "{}: {done} of {} delivered",
                self.label,
                self.total.load(Ordering::Relaxed)
            );
        }
    }
    fn finish(&self) {
        use std::sync::atomic::Ordering;
        tracing::info!(
            "{}: {} deliveries handled in this run",
            self.label,
            self.done.load(Ordering::Relaxed)
        );
    }
}

/// This machine's name: what a send lock names its holder by, and EHLO says.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Where the outbox of a week is.
pub fn outbox_dir(config: &Config, week: IsoWeek) -> PathBuf {
    match &config.smtp.transport {
        Transport::Outbox(Some(dir)) => dir.join(week.to_string()),
        _ => config.week_dir(&week).join("outbox"),
    }
}

fn create_dir(dir: &Path) -> Result<(), SendError> {
    std::fs::create_dir_all(dir).map_err(|source| SendError::Io {
        path: dir.display().to_string(),
        source,
    })
}

/// `[smtp] url`'s server; `None` for the file outbox.
fn main_server(config: &Config) -> Option<&SmtpServer> {
    match &config.smtp.transport {
        Transport::Smtp(s) => Some(s),
        Transport::Outbox(_) => None,
    }
}

/// One relay of a send: where (`None`: the outbox), how many connections, and
/// its limits.
struct RelayPlan {
    server: Option<SmtpServer>,
    connections: usize,
    rate: f64,
    per_hour: u32,
}

/// The relays: `[smtp] url`, then `[[smtp.relays]]`, each with its connections,
/// rate and hourly limit.
fn relay_plan(config: &Config) -> Vec<RelayPlan> {
    let main = |server: Option<SmtpServer>| RelayPlan {
        server,
        connections: config.smtp.concurrency,
        rate: config.smtp.rate,
        per_hour: config.smtp.per_hour,
    };
    match &config.smtp.transport {
        Transport::Outbox(_) => vec![main(None)],
        Transport::Smtp(server) => std::iter::once(main(Some(server.clone())))
            .chain(config.smtp.relays.iter().map(|r| RelayPlan {
                server: Some(r.server.clone()),
                connections: r.concurrency,
                rate: r.rate,
                per_hour: r.per_hour,
            }))
            .collect(),
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
    let signer = Signer::from_config(config)?.signer;
    let head = Letterhead::new(config, week, &issue.subject)?;
    let path = &config.database.path;
    let mut store = Store::open(path)?;
    let issue_id = store.issue_upsert(&week.to_string(), &issue.subject, Utc::now())?;
    let lock = lock::SendLock::acquire(&mut store, path, issue_id, week)?;
    // What a click link may lead to: the stories of the issue as first sent.
    store.record_issue_stories(issue_id, &issue.stories)?;
    if head.clicks.is_some() {
        store.set_clicks_counted(issue_id, true)?;
    }
    let resend = config.smtp.on_uncertain == UncertainPolicy::Resend;
    store.enrol(issue_id, resend, Utc::now())?;
    let before = store.ledger_counts(issue_id)?;
    let outbox = outbox_dir(config, week);
    if config.is_outbox() {
        create_dir(&outbox)?;
    }
    let plan = relay_plan(config);
    let sent = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        ledger: ledger::Ledger::open(path, issue_id, sent.clone())?,
        prebuilt: message::Prebuilt::new(&issue, &head),
        head,
        signer,
        max_attempts: config.smtp.max_attempts,
        retry_base: config.smtp.retry_base,
        sent,
        stop,
        fatal: Mutex::new(None),
        consecutive_refusals: AtomicUsize::new(0),
        gave_up: Default::default(),
        relays: plan
            .iter()
            .map(|relay| RelayState {
                label: server_label(relay.server.as_ref()),
                throttle: Mutex::new(throttle::Throttle::new(
                    relay.rate,
                    relay.per_hour,
                    config.smtp.retry_base,
                    Instant::now(),
                )),
                down_until: Mutex::new(None),
            })
            .collect(),
        progress: progress.clone(),
    });
    progress.start(before.pending);

    let workers: usize = plan.iter().map(|r| r.connections).sum();
    let (queue, jobs) = async_channel::bounded(workers * 4);
    let limit = worker::in_flight_limit(workers);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limit as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for (relay, relay_plan) in plan.iter().enumerate() {
        for _ in 0..relay_plan.connections {
            let (shared, jobs) = (shared.clone(), jobs.clone());
            let mut channel = match &relay_plan.server {
                Some(server) => Channel::to_server(config, server),
                None => Channel::new(config, &outbox),
            };
            tasks.spawn(async move {
                worker::work(&shared, &mut channel, jobs, relay).await;
                channel.close().await;
            });
        }
    }
    drop(jobs);
    let heartbeat = lock.keep_alive();
    let produced = worker::produce(&shared, queue, in_flight, limit).await;
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
    // Not finished while deliveries wait to be tried again by the next run:
    // the schedule and cron would move on to the next week.
    if after.pending == 0 && after.sending == 0 && after.gave_up == 0 {
        store.issue_finish(issue_id, Utc::now())?;
    }
    let uncertain_addresses = store.uncertain_addresses(issue_id, 20)?;
    drop(lock);
    Ok(SendSummary {
        week: week.to_string(),
        sent: shared.sent.load(std::sync::atomic::Ordering::SeqCst),
        already_sent: before.sent,
        failed: after.failed,
        uncertain: after.uncertain + after.resent_uncertain,
        skipped: after.skipped,
        pending: after.pending + after.sending,
        gave_up: shared.gave_up.load(std::sync::atomic::Ordering::SeqCst),
        uncertain_addresses,
    })
}

/// A channel for a few messages outside the ledger, connected; with the file
/// outbox, its files go into `outbox`.
async fn single_channel(config: &Config, outbox: &Path) -> Result<Channel, SendError> {
    if config.is_outbox() {
        create_dir(outbox)?;
    }
    let mut channel = Channel::new(config, outbox);
    channel
        .ready()
        .await
        .map_err(|e| SendError::dial(server_label(main_server(config)), e))?;
    Ok(channel)
}

/// Sends one message outside any issue (a confirmation mail): over the configured
/// server, or into `<output>/<outbox_name>/` with the file outbox.
pub async fn send_one(
    config: &Config,
    message: &lettre::Message,
    outbox_name: &str,
) -> Result<String, SendError> {
    let mut channel = single_channel(config, &config.output.dir.join(outbox_name)).await?;
    let name = format!(
        "{}-{:08x}.eml",
        Utc::now().format("%Y%m%dT%H%M%S"),
        fastrand::u32(..)
    );
    let result = channel
        .deliver(message.envelope(), &message.formatted(), &name, false)
        .await;
    channel.close().await;
    result.map_err(|f| SendError::NotTaken {
        server: server_label(main_server(config)),
        reason: f.reply.unwrap_or(f.message),
    })
}

/// `--test ADDR…`: one copy each, "\[TEST\]" in the subject, no ledger.
pub async fn send_test(
    config: &Config,
    issue: &Issue,
    week: IsoWeek,
    to: &[String],
) -> Result<Vec<String>, SendError> {
    let signer = Signer::from_config(config)?.signer;
    let mut head = Letterhead::new(config, week, &issue.subject)?;
    // A test copy's clicks are the editor's, not readers': its links lead
    // straight to the stories.
    head.clicks = None;
    let mut channel = single_channel(config, &outbox_dir(config, week).join("test")).await?;
    let mut report = Vec::new();
    let prebuilt = message::Prebuilt::new(issue, &head);
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
        let delivered = match channel.ready().await {
            Err(reason) => Err(reason.to_string()),
            Ok(()) => channel
                .deliver(
                    message.envelope(),
                    &message.formatted(),
                    &format!("test-{i}.eml"),
                    false,
                )
                .await
                .map_err(|f| f.message),
        };
        match delivered {
            Ok(reply) => report.push(format!("test copy to {address}: {reply}")),
            Err(why) => report.push(format!("test copy to {address} FAILED: {why}")),
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
    loop {
        let page = store.would_receive(issue_id, after, 1000)?;
        if page.is_empty() {
            return Ok(count);
        }
        for (id, email) in page {
            after = id;
            count += 1;
            each(&email);
        }
    }
}
