//! The workers of one send: a producer feeds due deliveries from the ledger into
//! a many-consumer queue; each worker owns one channel (one SMTP connection to
//! one relay, or the outbox) and delivers what it takes. In: the shared state of
//! the send. Out: every delivery claimed, attempted and recorded in the ledger.
//! Guarantees kept here: a delivery is claimed only when its message goes now
//! (after the connection is ready and a throttle slot is taken), so a server
//! that is down, or a pause, never leaves a claim behind; retries follow
//! `[smtp] max_attempts` with backoff; 20 permanent refusals in a row stop the
//! send; a relay that cannot be reached leaves the rotation for a while.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::channel::{Channel, DialError, Failure};
use super::ledger::Ledger;
use super::throttle::{backoff, Throttle};
use super::{Progress, SendError};
use crate::message::{self, Letterhead, Recipient};
use crate::store::DueDelivery;
use crate::token::Signer;

/// A delivery handed to a worker, with the permit that says it is in flight.
pub(crate) type Job = (DueDelivery, OwnedSemaphorePermit);

/// One relay's share of the send: its limits, and whether it is out of rotation.
pub(crate) struct RelayState {
    pub(crate) label: String,
    pub(crate) throttle: Mutex<Throttle>,
    pub(crate) down_until: Mutex<Option<Instant>>,
}

impl RelayState {
    fn down(&self, now: Instant) -> Option<Instant> {
        let down = *self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.filter(|t| *t > now)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every worker of one send shares.
pub(crate) struct Shared {
    pub(crate) ledger: Ledger,
    pub(crate) prebuilt: message::Prebuilt,
    pub(crate) head: Letterhead,
    pub(crate) signer: Signer,
    pub(crate) max_attempts: u32,
    pub(crate) retry_base: Duration,
    /// Accepted and durably recorded, this run (counted by the ledger writer).
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) fatal: Mutex<Option<SendError>>,
    pub(crate) consecutive_refusals: AtomicUsize,
    /// Deliveries failed because the server kept deferring them until the
    /// attempts ran out (not refused for good).
    pub(crate) gave_up: AtomicU64,
    pub(crate) relays: Vec<RelayState>,
    pub(crate) progress: Arc<dyn Progress>,
}

impl Shared {
    pub(crate) fn fail(&self, e: SendError) {
        self.stop.store(true, Ordering::SeqCst);
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(e);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// How many deliveries may be in flight (queued or being delivered) at once.
pub(crate) fn in_flight_limit(workers: usize) -> u32 {
    (workers * 5).max(1) as u32
}

/// Feeds due deliveries to the workers in batches (keyset by subscriber id), then
/// waits for retries that are due later, until nothing is pending. Each job holds
/// one of `limit` permits of `in_flight` until its worker is done with it, so
/// "everything handed out is finished" is "all permits are back".
pub(crate) async fn produce(
    shared: &Shared,
    queue: async_channel::Sender<Job>,
    in_flight: Arc<Semaphore>,
    limit: u32,
) -> Result<(), SendError> {
    const BATCH: usize = 500;
    let mut after = 0i64;
    loop {
        if shared.stopped() {
            return Ok(());
        }
        let batch = shared.ledger.due(after, BATCH)?;
        if batch.is_empty() {
            // Everything handed out must be finished before starting over.
            drop(in_flight.acquire_many(limit).await);
            if shared.stopped() {
                return Ok(());
            }
            let Some(next) = shared.ledger.next_retry_at()? else {
                return Ok(());
            };
            let wait = (next - chrono::Utc::now().timestamp()).clamp(0, 300);
            let wait = if wait > 0 {
                Duration::from_secs(wait as u64)
            } else {
                Duration::from_millis(20)
            };
            // In steps, so a stop (SIGTERM) is not kept waiting for a retry.
            let until = Instant::now() + wait;
            while !shared.stopped() && Instant::now() < until {
                tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
            }
            after = 0;
            continue;
        }
        for delivery in batch {
            after = delivery.subscriber_id;
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            if queue.send((delivery, permit)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// A message whose DATA the server accepted, its body not sent yet: it goes
/// with the next message's commands (RFC 2920), so each message costs one
/// round trip. Holds its job's in-flight permit until it is recorded.
struct Waiting {
    prepared: Prepared,
    body: Vec<u8>,
    _in_flight: OwnedSemaphorePermit,
}

/// One worker: takes jobs until the queue closes, over its own channel. After a
/// stop it keeps taking jobs without delivering them, so their permits come back
/// and the producer is never left waiting.
///
/// On gazette's own client where the server pipelines, a message's body and
/// final dot leave in one write with the next message's MAIL, RCPT and DATA.
/// A connection then has two deliveries in flight (claimed): one whose body
/// went (it may have arrived) and one whose body did not, so a crash leaves at
/// most two uncertain deliveries per connection, of which at most one can
/// have been delivered.
pub(crate) async fn work(
    shared: &Shared,
    channel: &mut Channel,
    queue: async_channel::Receiver<Job>,
    relay: usize,
) {
    // Buffers for the messages this worker writes: the one waiting to go, and
    // the next.
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut waiting: Option<Waiting> = None;
    loop {
        // A relay out of rotation takes no work until it is due back.
        while let (None, Some(until)) = (&waiting, shared.relays[relay].down(Instant::now())) {
            if shared.stopped() {
                break;
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
        // With a message waiting, its body goes now with whatever job is
        // ready, or alone: never wait for the queue while holding it, nor
        // take new work for a relay that left the rotation.
        let job = match &waiting {
            Some(_) if shared.relays[relay].down(Instant::now()).is_some() => None,
            Some(_) => queue.try_recv().ok(),
            None => match queue.recv().await {
                Ok(job) => Some(job),
                Err(_) => return,
            },
        };
        // After a stop: finish what the server is waiting for; drop the rest.
        let job = job.filter(|_| !shared.stopped());
        if waiting.is_none() && job.is_none() {
            continue;
        }
        let (w, step) = pipelined(shared, channel, relay, waiting.take(), job, &mut buffer).await;
        waiting = w;
        if let Err(e) = step {
            shared.fail(e);
        }
    }
}

/// The next job on this worker's channel. On a pipelining connection, one
/// round trip: the waiting message's body (if any) and the job's commands (if
/// it can go now); elsewhere (the outbox, lettre's connections, a server that
/// does not pipeline) the job's message alone. Records every outcome, and
/// returns the message whose body may follow now, if any, even beside an
/// error: a message the server waits for is never dropped.
async fn pipelined(
    shared: &Shared,
    channel: &mut Channel,
    relay: usize,
    mut waiting: Option<Waiting>,
    job: Option<Job>,
    buffer: &mut Vec<u8>,
) -> (Option<Waiting>, Result<(), SendError>) {
    // The next message, claimed and written; with a message waiting the
    // connection is open, so this neither reconnects nor sends. A message
    // never waits on the throttle: when the next must wait for its slot, the
    // waiting one goes alone first.
    let mut next = None;
    if let Some((delivery, permit)) = job {
        let slot_taken = waiting.is_some()
            && shared.relays[relay]
                .throttle()
                .take(Instant::now())
                .is_none();
        if !slot_taken && waiting.is_some() {
            let (_, sent) = exchange(shared, channel, relay, waiting.take(), None, buffer).await;
            if let Err(e) = sent {
                return (None, Err(e));
            }
        }
        let mut body = std::mem::take(buffer);
        match prepare(shared, channel, &delivery, relay, &mut body, slot_taken).await {
            Ok(Some(p)) => next = Some((p, body, permit)),
            Ok(None) => *buffer = body,
            Err(e) => {
                *buffer = body;
                // What waits still goes, alone.
                let (_, sent) = exchange(shared, channel, relay, waiting, None, buffer).await;
                return (None, sent.and(Err(e)));
            }
        }
    }
    exchange(shared, channel, relay, waiting, next, buffer).await
}

/// A claimed and written message, its body, and its job's in-flight permit.
type Next = (Prepared, Vec<u8>, OwnedSemaphorePermit);

/// The round trip of [`pipelined`]: `waiting`'s body and `next`'s commands.
async fn exchange(
    shared: &Shared,
    channel: &mut Channel,
    relay: usize,
    waiting: Option<Waiting>,
    next: Option<Next>,
    buffer: &mut Vec<u8>,
) -> (Option<Waiting>, Result<(), SendError>) {
    if waiting.is_none() && next.is_none() {
        return (None, Ok(()));
    }
    if channel.pipelining_client().is_none() {
        let mut result = Ok(());
        // A message waits only on an open pipelining connection; should that
        // be gone, what waited may or may not have gone.
        if let Some(w) = waiting {
            let lost = Failure::local("the connection closed".into(), true);
            result = record(shared, relay, &w.prepared, Err(lost)).await;
        }
        // The outbox, lettre's connections, a server that does not pipeline:
        // one message at a time.
        if let Some((p, body, _permit)) = next {
            let stuffed = channel.takes_data();
            let name = format!("{:010}.eml", p.id);
            let outcome = channel.deliver(&p.envelope, &body, &name, stuffed).await;
            *buffer = body;
            result = result.and(record(shared, relay, &p, outcome).await);
        }
        return (None, result);
    }
    // A body that goes with no claim after it: the "sent" records queued so
    // far are made durable first, so a crash now leaves this one uncertain,
    // not an earlier one too. (Should the ledger fail, the body still goes:
    // the server waits for it.)
    let mut result = match next {
        None => shared.ledger.barrier().await,
        Some(_) => Ok(()),
    };
    let envelope = next.as_ref().map(|(p, ..)| {
        let from = p.envelope.from().map(|a| a.to_string()).unwrap_or_default();
        let to = p
            .envelope
            .to()
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default();
        (from, to)
    });
    let Some(client) = channel.pipelining_client() else {
        unreachable!("checked above, and nothing between closes it")
    };
    let (done, accepted) = client
        .exchange(
            waiting.as_ref().map(|w| w.body.as_slice()),
            envelope.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        )
        .await;
    let broken =
        matches!(&done, Some(Err(e)) if e.broken) || matches!(&accepted, Some(Err(e)) if e.broken);
    if broken {
        channel.disconnect();
    }
    let mut first_broke = false;
    if let (Some(w), Some(done)) = (waiting, done) {
        first_broke = done.as_ref().is_err_and(|e| e.broken);
        let outcome = done
            .map(|r| super::channel::reply_text(&r))
            .map_err(Failure::from_smtp);
        *buffer = w.body;
        result = result.and(record(shared, relay, &w.prepared, outcome).await);
    }
    let Some((p, body, permit)) = next else {
        return (None, result);
    };
    match accepted {
        Some(Ok(())) => (
            Some(Waiting {
                prepared: p,
                body,
                _in_flight: permit,
            }),
            result,
        ),
        // The connection went with the first message's end: this one's body
        // never left, and the server said nothing about it.
        _ if first_broke => {
            let unsent = Failure::local(
                "not sent: the connection closed before its DATA".into(),
                true,
            );
            (
                None,
                result.and(record(shared, relay, &p, Err(unsent)).await),
            )
        }
        Some(Err(e)) => (
            None,
            result.and(record(shared, relay, &p, Err(Failure::from_smtp(e))).await),
        ),
        None => unreachable!("the client answers for a message it was given"),
    }
}

/// Opens the channel; after three failures, the relay leaves the rotation for a
/// while (or, when no other relay is up, the send stops). `Ok(false)`: this
/// delivery was not attempted and stays pending.
async fn connect(shared: &Shared, channel: &mut Channel, relay: usize) -> Result<bool, SendError> {
    let state = &shared.relays[relay];
    let mut tries = 0;
    while let Err(reason) = channel.ready().await {
        // A refusal (no STARTTLS, a certificate, the login) will not heal by
        // waiting: no retries; the send stops with what to fix, unless other
        // relays can carry it.
        let refused = matches!(reason, DialError::Refused(_));
        tries += 1;
        if tries >= 3 || refused {
            let now = Instant::now();
            let others_up = shared
                .relays
                .iter()
                .enumerate()
                .any(|(i, r)| i != relay && r.down(now).is_none());
            if !others_up {
                return Err(SendError::dial(state.label.clone(), reason));
            }
            let back = now + backoff(shared.retry_base, 1) * 60;
            *state.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(back);
            tracing::warn!(relay = %state.label, %reason, "relay out of rotation for a minute");
            return Ok(false);
        }
        tokio::time::sleep(backoff(shared.retry_base, tries)).await;
    }
    Ok(true)
}

/// Waits for a throttle slot; false when the send was stopped meanwhile.
async fn take_slot(shared: &Shared, relay: usize) -> bool {
    loop {
        let wait = shared.relays[relay].throttle().take(Instant::now());
        match wait {
            None => return true,
            Some(d) => tokio::time::sleep(d).await,
        }
        if shared.stopped() {
            return false;
        }
    }
}

/// A delivery claimed and written, ready to go.
struct Prepared {
    id: i64,
    attempts: u32,
    message_id: String,
    envelope: lettre::address::Envelope,
}

/// Connects, waits for a throttle slot, claims the delivery and writes its
/// message into `buffer` (in DATA's form for gazette's own client). `None`:
/// nothing to send now (not connected, stopped, no longer active, or an
/// address no message can be written to, recorded as failed).
async fn prepare(
    shared: &Shared,
    channel: &mut Channel,
    delivery: &DueDelivery,
    relay: usize,
    buffer: &mut Vec<u8>,
    slot_taken: bool,
) -> Result<Option<Prepared>, SendError> {
    // Connect, then wait for a slot, before claiming: a delivery is claimed only
    // when it goes now.
    if !connect(shared, channel, relay).await? || !(slot_taken || take_slot(shared, relay).await) {
        return Ok(None);
    }
    let id = delivery.subscriber_id;
    if !shared.ledger.claim(id).await? {
        tracing::debug!(subscriber = id, "skipped: no longer active");
        shared.progress.delivered();
        return Ok(None);
    }
    let recipient = Recipient {
        id,
        email: delivery.email.clone(),
        name: delivery.name.clone(),
    };
    let message_id = message::new_message_id(&shared.head, id);
    // Written straight in the form the channel sends: DATA's for gazette's
    // own client, so no copy is made to dot-stuff it.
    buffer.clear();
    let written = shared.prebuilt.write_copy(
        &shared.head,
        &shared.signer,
        &recipient,
        SystemTime::now(),
        message_id.clone(),
        buffer,
        channel.takes_data(),
    );
    match written {
        Ok(envelope) => Ok(Some(Prepared {
            id,
            attempts: delivery.attempts + 1,
            message_id,
            envelope,
        })),
        Err(e) => {
            // An address that cannot be written into a message never will be.
            shared
                .ledger
                .failed(id, &e.to_string(), None, false, false)
                .await?;
            shared.progress.delivered();
            Ok(None)
        }
    }
}

/// Records what became of a delivery: sent, to be retried (with a pause when
/// the server asks for one), or failed.
async fn record(
    shared: &Shared,
    relay: usize,
    p: &Prepared,
    outcome: Result<String, Failure>,
) -> Result<(), SendError> {
    let state = &shared.relays[relay];
    let (id, attempts, message_id) = (p.id, p.attempts, &p.message_id);
    match outcome {
        Ok(reply) => {
            state.throttle().accepted();
            tracing::debug!(subscriber = id, relay = %state.label, %reply, "delivered");
            shared.ledger.sent(id, &reply, message_id)?;
            shared.consecutive_refusals.store(0, Ordering::SeqCst);
            shared.progress.delivered();
        }
        Err(f) if f.transient && attempts < shared.max_attempts => {
            if f.slow_down {
                let pause = state.throttle().slow_down(Instant::now());
                tracing::warn!(pause_secs = pause.as_secs(), reply = ?f.reply, "the server asks us to slow down; pausing");
            }
            tracing::info!(subscriber = id, attempts, error = %f.message, "transient failure; will retry");
            let at = chrono::Utc::now().timestamp()
                + backoff(shared.retry_base, attempts).as_secs() as i64;
            shared
                .ledger
                .retry(id, &f.message, f.reply.as_deref(), at)
                .await?;
            if f.broken {
                tokio::task::yield_now().await;
            }
        }
        Err(f) => {
            tracing::warn!(subscriber = id, error = %f.message, "delivery failed");
            shared
                .ledger
                // Tried again by the next run only when the server answered
                // with a deferral: after a timeout or a cut after the body, the
                // message may have arrived.
                .failed(
                    id,
                    &f.message,
                    f.reply.as_deref(),
                    f.bounce,
                    f.transient && f.reply.is_some(),
                )
                .await?;
            shared.progress.delivered();
            if f.transient && f.reply.is_some() {
                shared.gave_up.fetch_add(1, Ordering::SeqCst);
            }
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
