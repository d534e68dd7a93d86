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

use super::channel::{Channel, DialError};
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

/// One worker: takes jobs until the queue closes, over its own channel. After a
/// stop it keeps taking jobs without delivering them, so their permits come back
/// and the producer is never left waiting.
pub(crate) async fn work(
    shared: &Shared,
    channel: &mut Channel,
    queue: async_channel::Receiver<Job>,
    relay: usize,
) {
    // One buffer for every message this worker writes.
    let mut buffer = Vec::with_capacity(64 * 1024);
    loop {
        // A relay out of rotation takes no work until it is due back.
        while let Some(until) = shared.relays[relay].down(Instant::now()) {
            if shared.stopped() {
                break;
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
        }
        let Ok((delivery, _in_flight)) = queue.recv().await else {
            return;
        };
        if !shared.stopped() {
            if let Err(e) = deliver_one(shared, channel, &delivery, relay, &mut buffer).await {
                shared.fail(e);
            }
        }
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

async fn deliver_one(
    shared: &Shared,
    channel: &mut Channel,
    delivery: &DueDelivery,
    relay: usize,
    buffer: &mut Vec<u8>,
) -> Result<(), SendError> {
    let state = &shared.relays[relay];
    // Connect, then wait for a slot, before claiming: a delivery is claimed only
    // when it goes now.
    if !connect(shared, channel, relay).await? || !take_slot(shared, relay).await {
        return Ok(());
    }
    let id = delivery.subscriber_id;
    if !shared.ledger.claim(id).await? {
        tracing::debug!(subscriber = id, "skipped: no longer active");
        shared.progress.delivered();
        return Ok(());
    }
    let attempts = delivery.attempts + 1;
    let recipient = Recipient {
        id,
        email: delivery.email.clone(),
        name: delivery.name.clone(),
    };
    let message_id = message::new_message_id(&shared.head, id);
    // Written straight in the form the channel sends: DATA's for gazette's
    // own client, so no copy is made to dot-stuff it.
    let stuffed = channel.takes_data();
    buffer.clear();
    let written = shared.prebuilt.write_copy(
        &shared.head,
        &shared.signer,
        &recipient,
        SystemTime::now(),
        message_id.clone(),
        buffer,
        stuffed,
    );
    let envelope = match written {
        Ok(envelope) => envelope,
        Err(e) => {
            // An address that cannot be written into a message never will be.
            shared
                .ledger
                .failed(id, &e.to_string(), None, false, false)
                .await?;
            shared.progress.delivered();
            return Ok(());
        }
    };
    let file_name = format!("{id:010}.eml");
    match channel
        .deliver(&envelope, buffer, &file_name, stuffed)
        .await
    {
        Ok(reply) => {
            state.throttle().accepted();
            tracing::debug!(subscriber = id, relay = %state.label, %reply, "delivered");
            shared.ledger.sent(id, &reply, &message_id)?;
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
