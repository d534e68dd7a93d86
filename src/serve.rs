//! `gazette serve`: starts the web routes of [`crate::web`] on a listener, runs
//! the weekly [`crate::schedule`] beside them, and shuts both down cleanly. In:
//! the config, a clock, a bound listener and a shutdown signal. Out: when the
//! signal comes, the server stops taking requests, a running send finishes the
//! deliveries in flight and records them, and this returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app;
use crate::config::Config;
use crate::schedule::{Action, Scheduler};
use crate::store::Store;
use crate::token::Signer;
use crate::web::{router, AppState, Clock};
use crate::week::IsoWeek;

/// Where a week's issue stands, for the schedule (`None`: the database could
/// not be read; nothing is done on a guess).
fn week_status(config: &Config, week: IsoWeek) -> Option<app::WeekStatus> {
    Store::open(&config.database.path)
        .map_err(anyhow::Error::from)
        .and_then(|s| app::week_status(&s, week))
        .ok()
}

/// The fetch job: feeds, then the bounce mailbox if one is configured.
async fn fetch_job(config: &Config, now: chrono::DateTime<chrono::Utc>) {
    let result = async {
        let mut store = app::open_store(config)?;
        let reports = app::fetch(config, &mut store, now).await?;
        anyhow::Ok(app::summarize_fetch(&reports))
    }
    .await;
    match result {
        Ok(summary) => {
            // One line per feed and list page.
            for line in &summary.lines {
                tracing::info!(job = "fetch", "{line}");
            }
            if let Some(e) = summary.error() {
                tracing::error!(job = "fetch", "{e:#}");
            }
        }
        Err(e) => tracing::error!(job = "fetch", "{e:#}"),
    }
    if let Some(maildir) = &config.bounces.maildir {
        let result = app::open_store(config)
            .and_then(|mut store| app::import_bounces(config, &mut store, maildir, now));
        match result {
            Ok(b) => tracing::info!(
                job = "bounces",
                "{}",
                b.describe().lines().next().unwrap_or("")
            ),
            Err(e) => tracing::error!(job = "bounces", "{e:#}"),
        }
    }
}

/// The weekly job of `week`, logged.
async fn send_job(
    config: &Config,
    week: IsoWeek,
    now: chrono::DateTime<chrono::Utc>,
    stop: Arc<AtomicBool>,
) {
    let progress: Arc<dyn crate::send::Progress> = Arc::new(crate::send::LogProgress::new(
        format!("sending {week}"),
        Duration::from_secs(10),
    ));
    match app::run_job(config, week, now, progress, stop).await {
        Ok(outcome) => {
            for line in outcome.lines {
                tracing::info!(job = "send", %week, "{line}");
            }
            if let Some(e) = outcome.fetch_error {
                tracing::error!(job = "send", %week, "{e:#}");
            }
        }
        Err(e) => tracing::error!(job = "send", %week, "{e:#}"),
    }
}

/// Runs the schedule until `shutdown` turns true; a send in progress is stopped
/// cleanly (in-flight deliveries finished and recorded) through `stop`.
async fn schedule_loop(
    config: Config,
    clock: Clock,
    stop: Arc<AtomicBool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let tz = config.newsletter.timezone;
    let local = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    let mut scheduler = Scheduler::new(&config.schedule, tz);
    let mut announce = true;
    let mut windows_checked: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = clock();
        // Hourly: click windows past their end drop their keys and hashes,
        // whether or not anyone clicks or reports.
        if windows_checked.is_none_or(|t| now - t >= chrono::Duration::hours(1)) {
            windows_checked = Some(now);
            match crate::store::Store::open(&config.database.path)
                .and_then(|mut s| s.close_click_windows(now))
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    issues = n,
                    "click windows closed: counts kept, copies' hashes dropped"
                ),
                Err(e) => tracing::warn!("closing click windows: {e:#}"),
            }
        }
        // A send that began (before approval was required) may always finish.
        let may_send = |w: IsoWeek| {
            !config.schedule.require_approval
                || matches!(
                    week_status(&config, w),
                    Some(app::WeekStatus::Approved | app::WeekStatus::Sending)
                )
        };
        let is_sent = |w: IsoWeek| week_status(&config, w) == Some(app::WeekStatus::Sent);
        for action in scheduler.due(now, is_sent, may_send) {
            announce = true;
            match action {
                Action::Fetch => {
                    tracing::info!(job = "fetch", "fetching the feeds");
                    fetch_job(&config, now).await
                }
                Action::Send { week, scheduled_at } => {
                    tracing::info!(job = "send", %week, scheduled_at = %local(scheduled_at), "weekly job starting");
                    send_job(&config, week, now, stop.clone()).await;
                }
                Action::AwaitingApproval { week, scheduled_at } => {
                    tracing::info!(job = "send", %week, scheduled_at = %local(scheduled_at), "waiting for an editor's approval; it goes as soon as it is approved, unless max_lateness passes first");
                }
                Action::AlreadySent { week, scheduled_at } => {
                    tracing::info!(job = "send", %week, scheduled_at = %local(scheduled_at), "already sent; nothing to do");
                }
                Action::SkipStale {
                    week,
                    scheduled_at,
                    late_by,
                } => {
                    tracing::warn!(
                        job = "send", %week, scheduled_at = %local(scheduled_at),
                        "skipped: the send was missed by {}, more than [schedule] max_lateness",
                        humantime::format_duration(Duration::from_secs(late_by.as_secs()))
                    );
                }
            }
        }
        let now = clock();
        if announce {
            // After each decision (and at start): what comes next, in the
            // newsletter's time zone.
            announce = false;
            let (fetch, send) = scheduler.upcoming(now);
            tracing::info!(
                next_fetch = %fetch.map(local).unwrap_or_else(|| "none scheduled".into()),
                next_send = %send.map(local).unwrap_or_else(|| "none scheduled".into()),
                "schedule"
            );
        }
        let wait = (scheduler.next_wakeup(now) - now)
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// `gazette serve`: the web routes on `listener` and the schedule, until
/// `shutdown` completes; then it stops taking requests, lets a running send finish
/// the deliveries in flight and record them, and returns.
pub async fn serve(
    config: Config,
    clock: Clock,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Creates (and seeds) the database now, not on the first request or tick.
    crate::app::open_store(&config)?;
    let configured = Signer::from_config(&config)?;
    if configured.development {
        // The development secret is public: anyone could forge the unsubscribe
        // and "your data" links of a server others can reach.
        let listen = listener.local_addr()?;
        if !listen.ip().to_canonical().is_loopback() {
            anyhow::bail!(
                "GAZETTE_SECRET is not set: serving on {listen} would sign links with the public development secret; set GAZETTE_SECRET (at least {} bytes) or listen on loopback",
                crate::token::MIN_SECRET_BYTES
            );
        }
        tracing::warn!("GAZETTE_SECRET is not set: links are signed with the development secret (file outbox, loopback only)");
    }
    let state = Arc::new(AppState::new(
        config.clone(),
        configured.signer,
        clock.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(schedule_loop(config, clock, stop.clone(), rx));
    tracing::info!(listen = %listener.local_addr()?, "serving");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing deliveries in flight");
        stop.store(true, Ordering::SeqCst);
        let _ = tx.send(true);
    })
    .await?;
    scheduler.await?;
    Ok(())
}
