//! The weekly schedule that `gazette serve` keeps. Pure: in come the `[schedule]`
//! cron expressions, the newsletter's time zone, what has already been handled,
//! whether a week's issue has gone out, and `now`; out come the [`Action`]s due.
//! The server runs them (the same code as `gazette run`) and sleeps until
//! [`Scheduler::next_wakeup`].
//!
//! A send time is handled once. If the server was down at that time, it catches up
//! once on start, unless more than `max_lateness` has passed: then the week is
//! skipped, and said so. A week whose issue has already gone out (a system cron ran
//! `gazette run`) is left alone; if both fire at once, the send lock and the ledger
//! keep it to one message per subscriber.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::config::Schedule;
use crate::week::IsoWeek;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Fetch,
    /// Run the weekly job for `week` (scheduled at `scheduled_at`).
    Send {
        week: IsoWeek,
        scheduled_at: DateTime<Utc>,
    },
    /// The send at `scheduled_at` was missed by more than `max_lateness`.
    SkipStale {
        week: IsoWeek,
        scheduled_at: DateTime<Utc>,
        late_by: Duration,
    },
    /// The send at `scheduled_at` finds `week` already sent (by a system cron,
    /// or before a restart): nothing to do.
    AlreadySent {
        week: IsoWeek,
        scheduled_at: DateTime<Utc>,
    },
    /// The send at `scheduled_at` waits for an editor to approve `week`
    /// (`[schedule] require_approval`); said once, then the send follows as
    /// soon as it is approved, or is skipped past `max_lateness`.
    AwaitingApproval {
        week: IsoWeek,
        scheduled_at: DateTime<Utc>,
    },
}

pub struct Scheduler {
    fetch: Option<Cron>,
    send: Option<Cron>,
    tz: Tz,
    max_lateness: Duration,
    handled_fetch: Option<DateTime<Utc>>,
    handled_send: Option<DateTime<Utc>>,
    /// The send whose wait for approval was announced.
    announced_wait: Option<DateTime<Utc>>,
}

/// `now` to the whole second: cron times are whole seconds, and an occurrence
/// computed from a clock with a sub-second part keeps that part, so it would
/// never equal the occurrence already handled (and fire on every tick).
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

fn previous(cron: &Cron, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&whole_second(now).with_timezone(&tz), true)
        .ok()
        .map(|t| whole_second(t.with_timezone(&Utc)))
}

fn next(cron: &Cron, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&whole_second(now).with_timezone(&tz), false)
        .ok()
        .map(|t| whole_second(t.with_timezone(&Utc)))
}

impl Scheduler {
    pub fn new(schedule: &Schedule, tz: Tz) -> Scheduler {
        Scheduler {
            fetch: schedule.fetch.clone(),
            send: schedule.send.clone(),
            tz,
            max_lateness: schedule.max_lateness,
            handled_fetch: None,
            handled_send: None,
            announced_wait: None,
        }
    }

    /// The actions due at `now`. `is_sent(week)` says whether that week's issue has
    /// already gone out (its send finished); `may_send(week)` whether it may go
    /// (approved, or no approval required).
    pub fn due(
        &mut self,
        now: DateTime<Utc>,
        is_sent: impl Fn(IsoWeek) -> bool,
        may_send: impl Fn(IsoWeek) -> bool,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(cron) = &self.fetch {
            if let Some(at) = previous(cron, now, self.tz) {
                if self.handled_fetch != Some(at) {
                    self.handled_fetch = Some(at);
                    actions.push(Action::Fetch);
                }
            }
        }
        if let Some(cron) = &self.send {
            if let Some(at) = previous(cron, now, self.tz) {
                if self.handled_send != Some(at) {
                    // The issue a send time sends: the last week complete at that time.
                    let week = IsoWeek::last_complete(at, self.tz);
                    let late_by = (now - at).to_std().unwrap_or_default();
                    if is_sent(week) {
                        self.handled_send = Some(at);
                        actions.push(Action::AlreadySent {
                            week,
                            scheduled_at: at,
                        });
                    } else if late_by > self.max_lateness {
                        self.handled_send = Some(at);
                        actions.push(Action::SkipStale {
                            week,
                            scheduled_at: at,
                            late_by,
                        });
                    } else if !may_send(week) {
                        // Not handled: asked again at every tick until approved.
                        if self.announced_wait != Some(at) {
                            self.announced_wait = Some(at);
                            actions.push(Action::AwaitingApproval {
                                week,
                                scheduled_at: at,
                            });
                        }
                    } else {
                        self.handled_send = Some(at);
                        actions.push(Action::Send {
                            week,
                            scheduled_at: at,
                        });
                    }
                }
            }
        }
        actions
    }

    /// The next fetch and the next send after `now`, for the log.
    pub fn upcoming(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let after = |c: &Option<Cron>| c.as_ref().and_then(|c| next(c, now, self.tz));
        (after(&self.fetch), after(&self.send))
    }

    /// When something is next due (at most an hour away, so a clock change or a
    /// long sleep is noticed).
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let hour = now + chrono::Duration::hours(1);
        [&self.fetch, &self.send]
            .into_iter()
            .flatten()
            .filter_map(|c| next(c, now, self.tz))
            .fold(hour, |a, b| a.min(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_clock_with_sub_seconds_fires_each_time_once() {
        let schedule = Schedule {
            fetch: Some("0 * * * *".parse().unwrap()),
            send: Some("0 8 * * MON".parse().unwrap()),
            require_approval: false,
            max_lateness: Duration::from_secs(86400),
        };
        let mut s = Scheduler::new(&schedule, chrono_tz::UTC);
        // A real clock's reading: nanoseconds and all, ticking on.
        let start = Utc::now();
        let mut fetches = 0;
        let mut sends = 0;
        for tick in 0..50 {
            let now = start + chrono::Duration::milliseconds(tick * 137);
            for a in s.due(now, |_| false, |_| true) {
                match a {
                    Action::Fetch => fetches += 1,
                    _ => sends += 1,
                }
            }
        }
        assert!(start.nanosecond() > 0 || fetches == 1);
        assert_eq!(fetches, 1, "one fetch for the hour, not one a tick");
        assert!(sends <= 1, "the week's send (or its skip) once: {sends}");
    }

    fn scheduler(max_lateness_hours: u64) -> Scheduler {
        Scheduler::new(
            &Schedule {
                fetch: None,
                send: Some("0 8 * * MON".parse().unwrap()),
                require_approval: false,
                max_lateness: Duration::from_secs(max_lateness_hours * 3600),
            },
            "Asia/Karachi".parse().unwrap(),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn fires_once_at_the_send_time_for_the_week_just_ended() {
        let mut s = scheduler(24);
        // Monday 9 Feb 2026, 08:00 in Karachi is 03:00 UTC.
        let send_at = at("2026-02-09T03:00:00Z");
        // Started on Sunday: last week's Monday send (2 Feb) is days late: skipped once.
        let first = s.due(at("2026-02-08T12:00:00Z"), |_| false, |_| true);
        assert!(
            matches!(first.as_slice(), [Action::SkipStale { .. }]),
            "{first:?}"
        );
        assert_eq!(
            s.due(at("2026-02-09T02:59:59Z"), |_| false, |_| true),
            vec![]
        );
        assert_eq!(
            s.due(at("2026-02-09T03:00:00Z"), |_| false, |_| true),
            vec![Action::Send {
                week: "2026-W06".parse().unwrap(),
                scheduled_at: send_at
            }]
        );
        assert_eq!(
            s.due(at("2026-02-09T03:00:30Z"), |_| false, |_| true),
            vec![]
        );
        assert_eq!(
            s.due(at("2026-02-09T09:00:00Z"), |_| false, |_| true),
            vec![]
        );
        assert_eq!(
            s.next_wakeup(at("2026-02-09T03:00:30Z")),
            at("2026-02-09T04:00:30Z")
        );
    }

    #[test]
    fn catches_up_once_after_downtime_within_max_lateness() {
        let mut s = scheduler(24);
        let actions = s.due(at("2026-02-09T10:00:00Z"), |_| false, |_| true);
        assert!(
            matches!(actions.as_slice(), [Action::Send { .. }]),
            "{actions:?}"
        );
        assert_eq!(
            s.due(at("2026-02-09T10:05:00Z"), |_| false, |_| true),
            vec![]
        );
    }

    #[test]
    fn a_week_already_sent_by_cron_is_left_alone() {
        let mut s = scheduler(24);
        assert_eq!(
            s.due(at("2026-02-09T03:00:00Z"), |_| true, |_| true),
            vec![Action::AlreadySent {
                week: "2026-W06".parse().unwrap(),
                scheduled_at: at("2026-02-09T03:00:00Z"),
            }]
        );
        assert_eq!(
            s.due(at("2026-02-09T03:00:01Z"), |_| true, |_| true),
            vec![]
        );
    }

    #[test]
    fn a_send_waits_for_approval_then_goes_or_is_skipped_when_late() {
        let week: IsoWeek = "2026-W06".parse().unwrap();
        let waiting = Action::AwaitingApproval {
            week,
            scheduled_at: at("2026-02-09T03:00:00Z"),
        };
        let mut s = scheduler(2);
        // Said once, not at every tick.
        assert_eq!(
            s.due(at("2026-02-09T03:00:00Z"), |_| false, |_| false),
            vec![waiting]
        );
        assert_eq!(
            s.due(at("2026-02-09T03:30:00Z"), |_| false, |_| false),
            vec![]
        );
        // Approved within max_lateness: it goes.
        assert_eq!(
            s.due(at("2026-02-09T04:00:00Z"), |_| false, |_| true),
            vec![Action::Send {
                week,
                scheduled_at: at("2026-02-09T03:00:00Z"),
            }]
        );
        // Never approved: skipped once max_lateness has passed.
        let mut s = scheduler(2);
        s.due(at("2026-02-09T03:00:00Z"), |_| false, |_| false);
        let late = s.due(at("2026-02-09T05:00:01Z"), |_| false, |_| false);
        assert!(
            matches!(late.as_slice(), [Action::SkipStale { .. }]),
            "{late:?}"
        );
        assert_eq!(
            s.due(at("2026-02-09T06:00:00Z"), |_| false, |_| true),
            vec![]
        );
    }

    #[test]
    fn a_stale_week_is_skipped() {
        let mut s = scheduler(1);
        let actions = s.due(at("2026-02-09T05:00:00Z"), |_| false, |_| true);
        assert_eq!(
            actions,
            vec![Action::SkipStale {
                week: "2026-W06".parse().unwrap(),
                scheduled_at: at("2026-02-09T03:00:00Z"),
                late_by: Duration::from_secs(2 * 3600),
            }]
        );
    }
}
