//! Dates as feeds really write them. In: the text of a `pubDate`, `updated`,
//! `dc:date` or `date_published`, and the zone to read a date without one in
//! (the newsletter's). Out: an instant, or `None` when nothing sensible reads it.
//! RFC 3339 and RFC 2822 first, then the common deviations: no zone, slashes,
//! 12-hour clocks, no seconds, zone abbreviations, a weekday in another
//! language, month before day.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Zone abbreviations seen in feeds, as offsets from UTC in minutes.
const ZONES: &[(&str, i32)] = &[
    ("UT", 0),
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("EST", -300),
    ("EDT", -240),
    ("CST", -360),
    ("CDT", -300),
    ("MST", -420),
    ("MDT", -360),
    ("PST", -480),
    ("PDT", -420),
    ("AKST", -540),
    ("HST", -600),
    ("CET", 60),
    ("CEST", 120),
    ("MET", 60),
    ("MEST", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("BST", 60),
    ("IST", 330),
    ("PKT", 300),
    ("SGT", 480),
    ("HKT", 480),
    ("JST", 540),
    ("KST", 540),
    ("AEST", 600),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
    ("BRT", -180),
    ("ART", -180),
];

/// Formats with an offset (`%z`), tried after the RFCs.
const ZONED: &[&str] = &[
    "%d %b %Y %H:%M:%S %z",
    "%d %b %Y %H:%M %z",
    "%d %B %Y %H:%M:%S %z",
    "%b %d %Y %H:%M:%S %z",
    "%b %d, %Y %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M:%S%.f %z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M %z",
    "%Y/%m/%d %H:%M:%S %z",
    "%b %d %Y %I:%M:%S %p %z",
    "%d %b %Y %I:%M:%S %p %z",
    "%d %b %Y %I:%M %p %z",
    "%b %d %Y %H:%M:%S GMT%z",
];

/// Formats without a zone, read in the newsletter's.
const NAIVE: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %I:%M:%S %p",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d %b %Y %H:%M:%S",
    "%d %b %Y %H:%M",
    "%d %b %Y %I:%M %p",
    "%d %b %Y %I:%M:%S %p",
    "%b %d %Y %I:%M:%S %p",
    "%b %d %Y %I:%M %p",
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y %I:%M %p",
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y %I:%M:%S %p",
    "%b %d %Y %H:%M:%S",
    "%b %d, %Y %H:%M:%S",
    // Month first (as US sites write) before day first: a first number over 12
    // fails the one and reads with the other.
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
];

/// Date-only formats: noon in the newsletter's zone, so the day stays the day.
const DAYS: &[&str] = &[
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d %b %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %B %Y",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
];

/// Reads a feed's date leniently; a date without a zone is read in `zone`.
pub fn parse_lenient(text: &str, zone: Tz) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.with_timezone(&Utc));
    }
    let cleaned = normalise(text);
    for f in ZONED {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(&cleaned, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in NAIVE {
        if let Ok(t) = NaiveDateTime::parse_from_str(&cleaned, f) {
            return in_zone(t, zone);
        }
    }
    for f in DAYS {
        if let Ok(d) = NaiveDate::parse_from_str(&cleaned, f) {
            return in_zone(d.and_hms_opt(12, 0, 0)?, zone);
        }
    }
    None
}

fn in_zone(t: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    // A time that does not exist (skipped by a spring-forward) is read as the
    // hour after it, as clocks showed it.
    zone.from_local_datetime(&t)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(t + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// Drops a leading weekday (in any language: a word before a comma), turns a
/// trailing zone abbreviation into an offset, and folds white space.
fn normalise(text: &str) -> String {
    let mut s = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((first, rest)) = s.split_once(", ") {
        if first.chars().all(char::is_alphabetic) && first.chars().count() <= 9 {
            s = rest.to_string();
        }
    } else if let Some((first, rest)) = s.split_once(' ') {
        // "Tue 10 Feb 2026 …", "Sat Dec 16 2023 …": a weekday without its comma.
        let weekday = first.chars().all(char::is_alphabetic) && first.chars().count() <= 3;
        let then_date = rest
            .split(' ')
            .next()
            .is_some_and(|w| w.chars().all(char::is_alphanumeric));
        if weekday && then_date {
            s = rest.to_string();
        }
    }
    // JavaScript's Date.toString(): "… GMT+0100 (Central European Standard Time)".
    if let Some(i) = s.find(" (") {
        s.truncate(i);
    }
    if let Some((head, last)) = s.rsplit_once(' ') {
        if let Some((_, minutes)) = ZONES.iter().find(|(name, _)| *name == last) {
            let sign = if *minutes < 0 { '-' } else { '+' };
            s = format!(
                "{head} {sign}{:02}{:02}",
                minutes.abs() / 60,
                minutes.abs() % 60
            );
        }
    }
    if let Some(stripped) = s.strip_suffix('Z') {
        if stripped.ends_with(|c: char| c.is_ascii_digit()) {
            s = format!("{stripped}+0000");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str, zone: Tz) -> String {
        parse_lenient(text, zone)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn the_forms_real_feeds_use() {
        let karachi: Tz = "Asia/Karachi".parse().unwrap();
        let cases = [
            ("2026-02-03T10:00:00Z", "2026-02-03T10:00:00+00:00"),
            (
                "Tue, 03 Feb 2026 10:00:00 +0500",
                "2026-02-03T05:00:00+00:00",
            ),
            // No zone: the newsletter's (Karachi, +5).
            ("2018-01-06T08:00", "2018-01-06T03:00:00+00:00"),
            ("2020/1/10 14:33:00", "2020-01-10T09:33:00+00:00"),
            ("Sat, Dec 16 2023 02:02:33 PM", "2023-12-16T09:02:33+00:00"),
            ("Thu, 01 Aug 2019 16:15 EDT", "2019-08-01T20:15:00+00:00"),
            (
                "mer, 16 nov 2022 10:00:00 +0100",
                "2022-11-16T09:00:00+00:00",
            ),
            ("2022-12-17", "2022-12-17T07:00:00+00:00"),
            (
                "Fri, 31 May 2019 12:17:58 -0700",
                "2019-05-31T19:17:58+00:00",
            ),
            ("2019-08-01 16:15:00.123Z", "2019-08-01T16:15:00.123+00:00"),
            ("Tue, 10 Feb 2026 15:30 IST", "2026-02-10T10:00:00+00:00"),
            ("02/13/2026 10:00:00", "2026-02-13T05:00:00+00:00"),
            ("13/02/2026 10:00:00", "2026-02-13T05:00:00+00:00"),
            ("2/12/2026 3:45:00 PM", "2026-02-12T10:45:00+00:00"),
            ("2026-02-10 3:45 PM", "2026-02-10T10:45:00+00:00"),
            ("Tue, 10 Feb 2026 03:45 PM", "2026-02-10T10:45:00+00:00"),
            ("February 10, 2026 3:45 pm", "2026-02-10T10:45:00+00:00"),
            (
                "Tue 10 Feb 2026 10:00:00 +0000",
                "2026-02-10T10:00:00+00:00",
            ),
            (
                "Tue Feb 10 2026 10:00:00 GMT+0100 (Central European Standard Time)",
                "2026-02-10T09:00:00+00:00",
            ),
            ("Tue, 10 Feb 2026 12:00:00 EET", "2026-02-10T10:00:00+00:00"),
        ];
        for (text, want) in cases {
            assert_eq!(utc(text, karachi), want, "{text}");
        }
        assert_eq!(utc("next Tuesday", karachi), "none");
        // New York springs forward at 02:00 on 8 March 2026: 02:30 is read as 03:30 EDT.
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            utc("2026-03-08 02:30", new_york),
            "2026-03-08T07:30:00+00:00"
        );
        assert_eq!(utc("", karachi), "none");
    }
}
