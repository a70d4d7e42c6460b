//! Deadline arithmetic: calendar durations, and business days in the
//! connector's IANA zone with a program's holidays.
//!
//! Business days keep the anchor's **local** time of day: one business day
//! after Friday 10:00 in New York is Monday 10:00 in New York, whether or
//! not the clocks changed over the weekend (so 14:00Z or 15:00Z). An anchor
//! on a weekend or holiday counts from the start of the next business day.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

use super::{Anchor, Deadline};
use crate::model::Content;

/// Whether `d` is a business day: not Saturday, Sunday or a holiday.
pub fn is_business_day(d: NaiveDate, holidays: &BTreeSet<NaiveDate>) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&d)
}

/// The instant a local date-time falls on in `tz`: a time in the spring-
/// forward gap moves forward by the gap, an ambiguous one takes the earlier.
pub fn local_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    for shift in 0..=3 {
        if let Some(t) = tz
            .from_local_datetime(&(local + ChronoDuration::minutes(30 * shift)))
            .earliest()
        {
            return t.with_timezone(&Utc);
        }
    }
    // No zone has a gap of two hours; UTC is a safe fallback to a panic.
    Utc.from_utc_datetime(&local)
}

/// `anchor` plus `n` business days in `tz`.
pub fn add_business_days(
    anchor: DateTime<Utc>,
    n: u32,
    tz: Tz,
    holidays: &BTreeSet<NaiveDate>,
) -> DateTime<Utc> {
    let local = anchor.with_timezone(&tz).naive_local();
    let (mut date, mut time) = (local.date(), local.time());
    if !is_business_day(date, holidays) {
        // The clock starts when the next business day does.
        time = chrono::NaiveTime::MIN;
        while !is_business_day(date, holidays) {
            date = date.succ_opt().unwrap_or(date);
        }
    }
    let mut left = n;
    // A holiday list cannot empty the calendar (weekdays remain beyond it),
    // but bound the walk anyway.
    let mut steps = 0;
    while left > 0 && steps < 10_000 {
        date = date.succ_opt().unwrap_or(date);
        steps += 1;
        if is_business_day(date, holidays) {
            left -= 1;
        }
    }
    local_instant(tz, date.and_time(time))
}

/// When a deadline measured from `from` falls.
pub fn deadline_from(
    from: DateTime<Utc>,
    deadline: Deadline,
    tz: Tz,
    holidays: &BTreeSet<NaiveDate>,
) -> DateTime<Utc> {
    match deadline {
        Deadline::Calendar(d) => from + ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX),
        Deadline::BusinessDays(n) => add_business_days(from, n, tz, holidays),
    }
}

/// The instant a milestone's `occurred_at` stands for: an RFC 3339 value as
/// is; a date-only value as the **end** of that day in `tz` (the milestone
/// happened some time that day; counting from its end never fires early).
pub fn occurred_instant(occurred_at: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(occurred_at) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(occurred_at, "%Y-%m-%d").ok()?;
    Some(local_instant(tz, d.succ_opt()?.and_time(chrono::NaiveTime::MIN)))
}

/// The anchor of a rule for trigger `c`, learned at `learned`.
pub fn anchor(c: &Content, from: Anchor, learned: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    match from {
        Anchor::LearnedAt => learned,
        // A trigger whose date cannot be read (never, for mapped content)
        // counts from when it was learned rather than never.
        Anchor::OccurredAt => occurred_instant(&c.occurred_at, tz).unwrap_or(learned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }
    fn ny() -> Tz {
        "America/New_York".parse().expect("tz")
    }
    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn business_days_skip_weekends_and_holidays_and_keep_local_time_across_dst() {
        const NONE: &[&str] = &[];
        const THANKSGIVING: &[&str] = &["2026-11-26"];
        // (holidays, anchor, business days, deadline): instants in 2026, UTC
        // hours, counted in New York.
        let cases = [
            (NONE, "11-20T15", 1, "11-23T15"), // Friday 10:00 EST + 1: Monday 10:00
            (NONE, "11-20T15", 5, "11-27T15"), // + 5 from Friday: the next Friday
            (NONE, "11-21T15", 1, "11-24T05"), // from Saturday: Monday 00:00 + 1
            (THANKSGIVING, "11-25T15", 1, "11-27T15"), // Wednesday + 1: Friday
            (THANKSGIVING, "11-25T15", 3, "12-01T15"), // over the holiday and the weekend
            (THANKSGIVING, "11-26T15", 1, "11-30T05"), // from the holiday: Friday 00:00 + 1
            // Clocks spring forward on Sunday 03-08: Monday 10:00 is EDT.
            (NONE, "03-06T15", 1, "03-09T14"),
            // And fall back on Sunday 11-01: Monday 10:00 is EST again.
            (NONE, "10-30T14", 1, "11-02T15"),
        ];
        let at = |s: &str| utc(&format!("2026-{s}:00:00Z"));
        for (holidays, anchor, days, expected) in cases {
            let h: BTreeSet<NaiveDate> = holidays.iter().map(|d| date(d)).collect();
            assert_eq!(
                add_business_days(at(anchor), days, ny(), &h),
                at(expected),
                "{anchor} + {days} business days, holidays {holidays:?}"
            );
        }
        // Calendar hours are elapsed time: 72h over the spring change is
        // 72 real hours (local time moves from 10:00 to 11:00).
        let hours_72 = Deadline::Calendar(std::time::Duration::from_secs(72 * 3600));
        assert_eq!(
            deadline_from(at("03-06T15"), hours_72, ny(), &BTreeSet::new()),
            at("03-09T15")
        );
    }

    #[test]
    fn date_only_counts_from_the_end_of_the_day() {
        assert_eq!(
            occurred_instant("2026-11-20", ny()),
            Some(utc("2026-11-21T05:00:00Z"))
        );
        assert_eq!(
            occurred_instant("2026-11-20T09:30:00-05:00", ny()),
            Some(utc("2026-11-20T14:30:00Z"))
        );
        assert_eq!(occurred_instant("11/20/2026", ny()), None);
    }
}
