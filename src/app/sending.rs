//! `gazette send` and `run`: the issue built (or read back) and sent. In: a week.
//! Out: the lines to print and the send's summary.

use super::*;

/// The week's built issue: read from `digests/<week>/`, or built now if it is not
/// there yet. `None` when the week has no stories.
pub fn built_issue(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    now: DateTime<Utc>,
) -> Result<Option<Issue>> {
    if let Some((issue, _)) = digest::read_issue(&config.week_dir(&week))? {
        return Ok(Some(issue));
    }
    Ok(build(config, store, week, now)?.map(|b| b.issue))
}

/// True once a send of this week has begun: the issue must not change under it.
pub fn send_started(store: &Store, week: IsoWeek) -> Result<bool> {
    Ok(store.send_started(&week.to_string())?)
}

/// What the weekly job did.
pub struct RunOutcome {
    /// What to tell a person: the build, the send summary.
    pub lines: Vec<String>,
    /// Feeds that failed (the others were used); the job still built and sent.
    pub fetch_error: Option<anyhow::Error>,
    pub summary: Option<crate::send::SendSummary>,
}

/// The weekly job, as `gazette run` and the server's schedule both run it: fetch,
/// build (unless a send of the week has begun: the issue never changes under a
/// send), send. Idempotent: the ledger and the send lock make a second run, or a
/// concurrent one, harmless.
pub async fn run_job(
    config: &Config,
    week: IsoWeek,
    now: DateTime<Utc>,
    progress: std::sync::Arc<dyn crate::send::Progress>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<RunOutcome> {
    let mut store = open_store(config)?;
    let reports = fetch(config, &mut store, now).await?;
    let fetch_error = summarize_fetch(&reports).error();
    let mut lines = Vec::new();
    let issue = if send_started(&store, week)? {
        built_issue(config, &store, week, now)?
    } else {
        build(config, &store, week, now)?.map(|built| {
            lines.push(describe_build(&built));
            built.issue
        })
    };
    drop(store);
    let Some(issue) = issue else {
        lines.push(format!(
            "{week}: no stories were published that week; nothing to send"
        ));
        return Ok(RunOutcome {
            lines,
            fetch_error,
            summary: None,
        });
    };
    let summary = crate::send::send_issue(config, issue, week, progress, stop).await?;
    lines.push(describe_send(&summary));
    Ok(RunOutcome {
        lines,
        fetch_error,
        summary: Some(summary),
    })
}

/// `gazette send --dry-run`: who would receive the week's issue now, one
/// address a line; how many.
pub fn would_receive(config: &Config, week: IsoWeek, out: &mut impl std::io::Write) -> Result<u64> {
    let store = open_store(config)?;
    let mut written = Ok(());
    let n = crate::send::would_receive(&store, week, |email| {
        if written.is_ok() {
            written = writeln!(out, "{email}");
        }
    })?;
    written?;
    Ok(n)
}

/// `gazette send [--test ADDR…]`: sends the week's issue (building it first if
/// needed) to every active subscriber not yet sent it, or "\[TEST\]" copies to
/// `test` only, outside the ledger.
pub async fn send(
    config: &Config,
    week: IsoWeek,
    now: DateTime<Utc>,
    test: &[String],
    progress: impl FnOnce() -> Result<std::sync::Arc<dyn crate::send::Progress>>,
) -> Result<RunOutcome> {
    let store = open_store(config)?;
    let issue = built_issue(config, &store, week, now)?;
    drop(store);
    let Some(issue) = issue else {
        return Ok(RunOutcome {
            lines: vec![format!(
                "{week}: no stories were published that week; nothing to send"
            )],
            fetch_error: None,
            summary: None,
        });
    };
    if !test.is_empty() {
        return Ok(RunOutcome {
            lines: crate::send::send_test(config, &issue, week, test).await?,
            fetch_error: None,
            summary: None,
        });
    }
    // The progress display (and its note about the secret) only once there is
    // an issue to send.
    let summary =
        crate::send::send_issue(config, issue, week, progress()?, std::sync::Arc::default())
            .await?;
    Ok(RunOutcome {
        lines: vec![describe_send(&summary)],
        fetch_error: None,
        summary: Some(summary),
    })
}

/// The line a send ends with.
pub fn describe_send(summary: &crate::send::SendSummary) -> String {
    if summary.sent == 0 && summary.pending == 0 {
        format!("{}: nothing left to send. {}", summary.week, summary.line())
    } else {
        summary.line()
    }
}
