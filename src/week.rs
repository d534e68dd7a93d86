//! ISO weeks, the unit an issue covers. In: a `2026-W06` string, or an instant and
//! the newsletter's time zone. Out: an [`IsoWeek`] and the UTC instants at which it
//! starts (Monday 00:00 local) and ends (the next Monday 00:00 local).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IsoWeek {
    year: i32,
    week: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an ISO week like 2026-W06")]
pub struct WeekParseError(String);

impl IsoWeek {
    pub fn new(year: i32, week: u32) -> Option<IsoWeek> {
        // Years a newsletter can have: far from chrono's limits, where the
        // week's bounds would overflow.
        if !(1970..=9999).contains(&year) {
            return None;
        }
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).map(|_| IsoWeek { year, week })
    }

    /// The week that contains `at`, as seen in `tz`.
    pub fn containing(at: DateTime<Utc>, tz: Tz) -> IsoWeek {
        let iso = at.with_timezone(&tz).date_naive().iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The most recent week that has fully ended at `now`.
    pub fn last_complete(now: DateTime<Utc>, tz: Tz) -> IsoWeek {
        IsoWeek::containing(now, tz).previous()
    }

    pub fn previous(self) -> IsoWeek {
        self.shifted(-7)
    }

    pub fn next(self) -> IsoWeek {
        self.shifted(7)
    }

    fn shifted(self, days: i64) -> IsoWeek {
        let iso = (self.monday() + Duration::days(days)).iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    pub fn monday(self) -> NaiveDate {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon).expect("validated week")
    }

    /// `[start, end)` in UTC: Monday 00:00 to the next Monday 00:00 in `tz`.
    pub fn bounds(self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = local_midnight(self.monday(), tz);
        let end = local_midnight(self.monday() + Duration::days(7), tz);
        (start, end)
    }

    pub fn contains(self, at: DateTime<Utc>, tz: Tz) -> bool {
        let (start, end) = self.bounds(tz);
        start <= at && at < end
    }
}

/// Midnight of `date` in `tz`; where a DST change skips midnight, the first instant
/// of that day.
fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut time = date.and_time(NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&time).earliest() {
            return t.with_timezone(&Utc);
        }
        time += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-W{:02}", self.year, self.week)
    }
}

impl FromStr for IsoWeek {
    type Err = WeekParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || WeekParseError(s.to_string());
        let (year, week) = s.trim().split_once(['W', 'w']).ok_or_else(err)?;
        let year: i32 = year.trim_end_matches('-').parse().map_err(|_| err())?;
        let week: u32 = week.parse().map_err(|_| err())?;
        IsoWeek::new(year, week).ok_or_else(err)
    }
}

impl TryFrom<String> for IsoWeek {
    type Error = WeekParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IsoWeek> for String {
    fn from(w: IsoWeek) -> String {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_far_off_are_refused_not_a_panic() {
        assert!("262143-W01".parse::<IsoWeek>().is_err());
        assert!("0001-W01".parse::<IsoWeek>().is_err());
        assert!("2026-W06".parse::<IsoWeek>().is_ok());
    }

    #[test]
    fn parses_and_prints() {
        let w: IsoWeek = "2026-W06".parse().unwrap();
        assert_eq!(w.to_string(), "2026-W06");
        assert!("2026-W54".parse::<IsoWeek>().is_err());
        assert!("yesterday".parse::<IsoWeek>().is_err());
        assert_eq!(
            "2020-W53".parse::<IsoWeek>().unwrap().to_string(),
            "2020-W53"
        );
    }

    #[test]
    fn bounds_follow_the_time_zone() {
        let tz: Tz = "Asia/Karachi".parse().unwrap();
        let (start, end) = "2026-W06".parse::<IsoWeek>().unwrap().bounds(tz);
        // Monday 2 February 2026 00:00 in Karachi (UTC+5).
        assert_eq!(start.to_rfc3339(), "2026-02-01T19:00:00+00:00");
        assert_eq!(end - start, Duration::days(7));
    }

    #[test]
    fn last_complete_week_crosses_years() {
        let tz: Tz = "UTC".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2027, 1, 6, 12, 0, 0).unwrap();
        assert_eq!(IsoWeek::last_complete(now, tz).to_string(), "2026-W53");
    }
}
