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

/// Where a week's issue stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeekStatus {
    /// Stories, no issue approved or sent: the editor's to shape.
    Building,
    Approved,
    Sending,
    Sent,
}

impl WeekStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            WeekStatus::Building => "building",
            WeekStatus::Approved => "approved",
            WeekStatus::Sending => "sending",
            WeekStatus::Sent => "sent",
        }
    }
}

pub fn week_status(store: &Store, week: IsoWeek) -> Result<WeekStatus> {
    let w = week.to_string();
    Ok(if store.issue_finished(&w)? {
        WeekStatus::Sent
    } else if store.send_started(&w)? {
        WeekStatus::Sending
    } else if store.approval(&w)?.is_some() {
        WeekStatus::Approved
    } else {
        WeekStatus::Building
    })
}

/// The week whose issue goes out next: the last complete week, unless it went
/// out already, then the week in progress.
pub fn next_week(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<IsoWeek> {
    let last = IsoWeek::last_complete(now, config.newsletter.timezone);
    Ok(if store.issue_finished(&last.to_string())? {
        last.next()
    } else {
        last
    })
}

/// The weeks for the desk, newest first, with their story counts and status:
/// the week that goes out next, then the latest weeks that have stories.
pub fn recent_weeks(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
    count: usize,
) -> Result<Vec<(IsoWeek, u64, WeekStatus)>> {
    let tz = config.newsletter.timezone;
    let mut weeks = vec![next_week(config, store, now)?];
    for at in store.recent_publication_times(5000)? {
        if weeks.len() >= count {
            break;
        }
        let week = IsoWeek::containing(at, tz);
        if !weeks.contains(&week) {
            weeks.push(week);
        }
    }
    weeks
        .into_iter()
        .map(|week| {
            let (start, end) = week.bounds(tz);
            Ok((
                week,
                store.story_count_between(start, end)?,
                week_status(store, week)?,
            ))
        })
        .collect()
}

/// What identifies an issue's content for an approval: its subject and its
/// stories in order.
pub fn fingerprint(subject: &str, picks: &[crate::rank::Candidate]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(subject.as_bytes());
    for c in picks {
        h.update(b"\n");
        h.update(c.url.as_bytes());
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

/// `gazette approve --week W`: builds the issue if it may still change, then
/// records who vouched for it; it is sent as it stands, and frozen until
/// unapproved. `seen`: the [`fingerprint`] of the issue the editor looked at;
/// when the issue built now differs (stories fetched since), nothing is approved.
pub fn approve(
    config: &Config,
    store: &Store,
    week: IsoWeek,
    by: &str,
    seen: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String> {
    let by = crate::text::clean_line(by);
    if by.is_empty() {
        bail!("say who approves it (--by NAME)");
    }
    let w = week.to_string();
    if let Some((who, _)) = store.approval(&w)? {
        return Ok(format!("{week}: already approved by {who}"));
    }
    if !send_started(store, week)? {
        let Some(built) = build(config, store, week, now)? else {
            bail!("{week}: no stories were published that week; there is no issue to approve");
        };
        let built_print = fingerprint(&built.issue.subject, &built.record.selection.picks);
        if seen.is_some_and(|s| s != built_print) {
            bail!("{week}: the issue changed since you looked at it (new stories, or another editor's change); look again, then approve");
        }
        store.approve(&w, &by, now)?;
        return Ok(format!(
            "{week}: approved by {by}: {:?}, {} stories; frozen until `gazette unapprove --week {week}`",
            built.issue.subject,
            built.record.selection.picks.len()
        ));
    }
    store.approve(&w, &by, now)?;
    Ok(format!(
        "{week}: approved by {by} (its send had begun already)"
    ))
}

/// `gazette unapprove --week W`: the issue may change again (not once a send began).
pub fn unapprove(store: &Store, week: IsoWeek) -> Result<String> {
    if send_started(store, week)? {
        bail!("{week}: a send of this issue has begun; it stays as it was approved");
    }
    Ok(if store.unapprove(&week.to_string())? {
        format!("{week}: no longer approved; the editor may change it again")
    } else {
        format!("{week}: was not approved")
    })
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
    let approved = store.approval(&week.to_string())?.is_some();
    if config.schedule.require_approval && !approved && !send_started(&store, week)? {
        lines.push(format!(
            "{week}: waiting for an editor's approval ([schedule] require_approval); nothing sent. Approve it on the desk or with `gazette approve --week {week}`"
        ));
        return Ok(RunOutcome {
            lines,
            fetch_error,
            summary: None,
        });
    }
    // A send that began, or an approval, froze the issue: send it as it is.
    let issue = if send_started(&store, week)? || approved {
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
    if test.is_empty()
        && config.schedule.require_approval
        && store.approval(&week.to_string())?.is_none()
        && !send_started(&store, week)?
    {
        bail!(
            "{week}: not approved, and [schedule] require_approval is set; approve it on the desk or with `gazette approve --week {week}` (a test copy, --test, needs no approval)"
        );
    }
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
    if summary.sent == 0 && summary.pending == 0 && summary.gave_up == 0 {
        format!("{}: nothing left to send. {}", summary.week, summary.line())
    } else {
        summary.line()
    }
}
