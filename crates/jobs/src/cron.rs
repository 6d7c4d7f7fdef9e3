//! Cron expressions with Vixie-cron semantics, evaluated in a time zone.
//!
//! ```text
//! ┌──────── second (0-59, only in the 6-field form)
//! │ ┌────── minute (0-59)
//! │ │ ┌──── hour (0-23)
//! │ │ │ ┌── day of month (1-31)
//! │ │ │ │ ┌ month (1-12 or JAN-DEC)
//! │ │ │ │ │ ┌ day of week (0-7 or SUN-SAT; 0 and 7 are Sunday)
//! * * * * * *
//! ```
//!
//! Each field is a comma list of `*`, `n`, `a-b`, `*/s`, `a-b/s` or `a/s`
//! (from `a` to the field maximum). The macros `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight` and `@hourly` are accepted.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use std::fmt;

/// How far ahead [`Cron::next_after`] searches before giving up.
const SEARCH_YEARS: i64 = 5;

/// Static description of one cron field.
struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    /// Names accepted instead of numbers; `names[i]` stands for `min_name + i`.
    names: &'static [&'static str],
    min_name: u8,
}

const SECOND: Field = Field::numeric("second", 0, 59);
const MINUTE: Field = Field::numeric("minute", 0, 59);
const HOUR: Field = Field::numeric("hour", 0, 23);
const DAY_OF_MONTH: Field = Field::numeric("day of month", 1, 31);
const MONTH: Field = Field {
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    min_name: 1,
    ..Field::numeric("month", 1, 12)
};
const DAY_OF_WEEK: Field = Field {
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    min_name: 0,
    ..Field::numeric("day of week", 0, 7)
};

impl Field {
    const fn numeric(name: &'static str, min: u8, max: u8) -> Field {
        Field {
            name,
            min,
            max,
            names: &[],
            min_name: 0,
        }
    }

    fn error(&self, detail: impl fmt::Display) -> CronError {
        CronError::new(format!("{}: {detail}", self.name))
    }

    /// Parses a whole field (a comma list) into a bitmask of allowed values.
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        let mut mask = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.error(format_args!("empty list item in \"{text}\"")));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(self.parse_step(step)?)),
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (lo, hi) = (self.value(a)?, self.value(b)?);
                if lo > hi {
                    return Err(self.error(format_args!("range {lo}-{hi} is reversed")));
                }
                (lo, hi)
            } else {
                let v = self.value(range)?;
                (v, if step.is_some() { self.max } else { v })
            };
            for v in (lo..=hi).step_by(step.unwrap_or(1)) {
                mask |= 1 << v;
            }
        }
        Ok(mask)
    }

    fn parse_step(&self, text: &str) -> Result<usize, CronError> {
        match text.parse::<usize>() {
            Ok(0) => Err(self.error("step must be at least 1")),
            Ok(step) => Ok(step),
            Err(_) => Err(self.error(format_args!("invalid step \"{text}\""))),
        }
    }

    /// Parses a single number or name and checks it against the field range.
    fn value(&self, text: &str) -> Result<u8, CronError> {
        if text.is_empty() {
            return Err(self.error("missing value"));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u8>() {
                Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
                _ => Err(self.error(format_args!(
                    "{text} is out of range {}-{}",
                    self.min, self.max
                ))),
            };
        }
        (self.min_name..)
            .zip(self.names)
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(v, _)| v)
            .ok_or_else(|| self.error(format_args!("unknown value \"{text}\"")))
    }
}

/// Parses a cron expression; shorthand for [`Cron::parse`].
pub fn parse(expr: &str) -> Result<Cron, CronError> {
    Cron::parse(expr)
}

impl std::str::FromStr for Cron {
    type Err = CronError;

    fn from_str(expr: &str) -> Result<Cron, CronError> {
        Cron::parse(expr)
    }
}

/// Error returned by [`Cron::parse`]; its message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    message: String,
}

impl CronError {
    fn new(message: String) -> Self {
        CronError { message }
    }

    /// The human-readable description, e.g. `hour: 24 is out of range 0-23`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

/// A parsed cron expression.
///
/// Each field is stored as a bitmask in which bit `v` is set when value `v`
/// is allowed. Day-of-week uses bits 0-6 (Sunday = 0; a `7` is folded onto 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Whether the day-of-month field was literally `*`.
    dom_any: bool,
    /// Whether the day-of-week field was literally `*`.
    dow_any: bool,
}

impl Cron {
    /// Parses a 5-field (`min hour dom month dow`, seconds = 0) or 6-field
    /// (`sec min hour dom month dow`) expression, or one of the macros
    /// `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
    /// `@hourly`. Month and weekday names are case-insensitive.
    ///
    /// For the day-of-month/day-of-week OR rule a field counts as
    /// unrestricted only when it is exactly `*` (classic Vixie cron also
    /// treats e.g. `*/2` as unrestricted; this parser does not).
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let trimmed = expr.trim();
        let body = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if trimmed.starts_with('@') => {
                return Err(CronError::new(format!("unknown macro \"{trimmed}\"")));
            }
            _ => trimmed,
        };
        let parts: Vec<&str> = body.split_whitespace().collect();
        let [sec, min, hour, dom, month, dow] = match parts[..] {
            [min, hour, dom, month, dow] => ["0", min, hour, dom, month, dow],
            [sec, min, hour, dom, month, dow] => [sec, min, hour, dom, month, dow],
            _ => {
                return Err(CronError::new(format!(
                    "expected 5 or 6 fields, found {}",
                    parts.len()
                )));
            }
        };
        let mut days_of_week = DAY_OF_WEEK.parse(dow)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Cron {
            source: expr.to_string(),
            seconds: SECOND.parse(sec)?,
            minutes: MINUTE.parse(min)?,
            hours: HOUR.parse(hour)?,
            days_of_month: DAY_OF_MONTH.parse(dom)?,
            months: MONTH.parse(month)?,
            days_of_week,
            dom_any: dom == "*",
            dow_any: dow == "*",
        })
    }

    /// The expression exactly as it was passed to [`Cron::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Returns the first fire time strictly after `after`, or `None` if there
    /// is none within about five years (e.g. `0 0 30 2 *`).
    ///
    /// Fields are matched against the wall-clock time in `tz`. A wall time is
    /// turned into an instant with jiff's "compatible" disambiguation:
    ///
    /// * **Spring forward (gap):** a wall time that does not exist is shifted
    ///   forward by the length of the gap, so `30 2 * * *` fires at 03:30 on
    ///   the day Europe/Berlin jumps from 02:00 to 03:00. Nothing is skipped.
    /// * **Fall back (fold):** a wall time that occurs twice maps to its
    ///   *first* occurrence only, so `30 2 * * *` fires once. Schedules fire
    ///   only in the first pass of the repeated hour; e.g. `* * * * *` is
    ///   silent during the second pass and resumes after it.
    ///
    /// The result is always strictly greater than `after`, so feeding it back
    /// in never yields the same instant twice.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // `best` holds the earliest fire instant found so far and its wall time.
        let mut best: Option<(Timestamp, DateTime)> = None;
        self.walk(scan_start(after, tz), |dt| {
            if best.is_some_and(|(_, wall)| dt > wall) {
                return false; // every later wall time fires later still
            }
            let Ok(ts) = tz.to_ambiguous_timestamp(dt).compatible() else {
                return true;
            };
            if ts <= after {
                return true;
            }
            let wall = tz.to_datetime(ts);
            if best.is_none_or(|(b, _)| ts < b) {
                best = Some((ts, wall));
            }
            // A time shifted out of a gap may fire later than the wall times
            // that follow it, so keep looking; otherwise this is the answer.
            wall != dt
        });
        best.map(|(ts, _)| ts)
    }

    /// Returns up to `n` consecutive fire times strictly after `after`
    /// (fewer if the schedule stops firing within the search horizon).
    pub fn upcoming(&self, after: Timestamp, tz: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut cur = after;
        while out.len() < n {
            match self.next_after(cur, tz) {
                Some(ts) => {
                    out.push(ts);
                    cur = ts;
                }
                None => break,
            }
        }
        out
    }

    /// Vixie rule: when both day fields are restricted, either may match.
    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days_of_month, date.day());
        let dow = has(self.days_of_week, date.weekday().to_sunday_zero_offset());
        if self.dom_any || self.dow_any {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Calls `visit` with every matching wall time at or after `start`, in
    /// order, for about [`SEARCH_YEARS`] years or until `visit` returns false.
    /// Non-matching months and days are skipped whole.
    fn walk(&self, start: DateTime, mut visit: impl FnMut(DateTime) -> bool) {
        let end = start
            .date()
            .checked_add(Span::new().years(SEARCH_YEARS))
            .unwrap_or(Date::MAX);
        let mut date = start.date();
        let mut from = start.time();
        while date <= end {
            let next = if !has(self.months, date.month()) {
                date.first_of_month().checked_add(Span::new().months(1))
            } else {
                if self.day_matches(date) {
                    let (h0, m0, s0) = (from.hour(), from.minute(), from.second());
                    for h in bits(self.hours, h0) {
                        let m_from = if h == h0 { m0 } else { 0 };
                        for m in bits(self.minutes, m_from) {
                            let s_from = if h == h0 && m == m0 { s0 } else { 0 };
                            for s in bits(self.seconds, s_from) {
                                // Values come from validated field ranges.
                                if !visit(date.at(h, m, s, 0)) {
                                    return;
                                }
                            }
                        }
                    }
                }
                date.tomorrow()
            };
            match next {
                Ok(next) => date = next,
                Err(_) => return,
            }
            from = Time::midnight();
        }
    }
}

/// The wall time to start scanning from. Normally the local time of `after`,
/// but shortly after a spring-forward transition the scan starts at the
/// equivalent wall time under the old offset, so that nonexistent times
/// shifted past `after` are not missed.
fn scan_start(after: Timestamp, tz: &TimeZone) -> DateTime {
    let local = tz.to_datetime(after);
    let nano = SignedDuration::from_nanos(1);
    // `preceding` is exclusive, so nudge forward to include a transition at `after`.
    let Some(transition) = after
        .checked_add(nano)
        .ok()
        .and_then(|t| tz.preceding(t).next())
    else {
        return local;
    };
    let Ok(just_before) = transition.timestamp().checked_sub(nano) else {
        return local;
    };
    let old = tz.to_offset(just_before);
    let gap = i64::from(transition.offset().seconds() - old.seconds());
    let since = after.as_second() - transition.timestamp().as_second();
    if gap > 0 && since < gap {
        old.to_datetime(after)
    } else {
        local
    }
}

fn has(mask: u64, value: i8) -> bool {
    u32::try_from(value).is_ok_and(|v| v < 64 && mask & (1 << v) != 0)
}

/// The set bits of `mask` that are `>= from`, ascending.
fn bits(mask: u64, from: i8) -> impl Iterator<Item = i8> {
    (from.max(0)..64).filter(move |&b| mask & (1 << b) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn next(expr: &str, after: &str) -> Option<Timestamp> {
        Cron::parse(expr)
            .unwrap()
            .next_after(ts(after), &TimeZone::UTC)
    }

    fn upcoming_in(expr: &str, after: &str, zone: &TimeZone, n: usize) -> Vec<String> {
        Cron::parse(expr)
            .unwrap()
            .upcoming(ts(after), zone, n)
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn upcoming(expr: &str, after: &str, n: usize) -> Vec<String> {
        upcoming_in(expr, after, &TimeZone::UTC, n)
    }

    /// The parsed field sets, ignoring the source text.
    fn sets(expr: &str) -> [u64; 6] {
        let c = Cron::parse(expr).unwrap();
        let d = c.days_of_month | u64::from(c.dom_any) << 63;
        let w = c.days_of_week | u64::from(c.dow_any) << 63;
        [c.seconds, c.minutes, c.hours, d, c.months, w]
    }

    fn err(expr: &str) -> String {
        Cron::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn every_minute() {
        assert_eq!(
            next("* * * * *", "2026-01-01T00:00:30Z"),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        // Strictly after: an exact fire time is not returned again.
        assert_eq!(
            next("* * * * *", "2026-01-01T00:01:00Z"),
            Some(ts("2026-01-01T00:02:00Z"))
        );
        assert_eq!(
            next("* * * * *", "2026-12-31T23:59:00Z"),
            Some(ts("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn every_fifteen_minutes() {
        assert_eq!(
            upcoming("*/15 * * * *", "2026-01-01T10:07:00Z", 5),
            [
                "2026-01-01T10:15:00Z",
                "2026-01-01T10:30:00Z",
                "2026-01-01T10:45:00Z",
                "2026-01-01T11:00:00Z",
                "2026-01-01T11:15:00Z",
            ]
        );
    }

    #[test]
    fn ranges_with_steps() {
        assert_eq!(
            upcoming("10-30/10 9-17/4 * * *", "2026-01-01T00:00:00Z", 7),
            [
                "2026-01-01T09:10:00Z",
                "2026-01-01T09:20:00Z",
                "2026-01-01T09:30:00Z",
                "2026-01-01T13:10:00Z",
                "2026-01-01T13:20:00Z",
                "2026-01-01T13:30:00Z",
                "2026-01-01T17:10:00Z",
            ]
        );
        // `a/n` runs from a to the field maximum.
        assert_eq!(sets("5/20 * * * *"), sets("5,25,45 * * * *"));
        assert_eq!(sets("0 0 * */5 *"), sets("0 0 * 1,6,11 *"));
        assert_eq!(sets("0 0 * * 1-5/2"), sets("0 0 * * 1,3,5"));
    }

    #[test]
    fn lists() {
        assert_eq!(
            upcoming("0 8,12,18 * * *", "2026-01-01T12:00:00Z", 3),
            [
                "2026-01-01T18:00:00Z",
                "2026-01-02T08:00:00Z",
                "2026-01-02T12:00:00Z",
            ]
        );
        assert_eq!(
            sets("1,2-4,10-20/5 * * * *"),
            sets("1,2,3,4,10,15,20 * * * *")
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(sets("0 9 * JAN,jul Mon-fri"), sets("0 9 * 1,7 1-5"));
        assert_eq!(sets("0 0 * * sun,SAT"), sets("0 0 * * 0,6"));
        assert_eq!(sets("0 0 * feb-Apr/2 *"), sets("0 0 * 2,4 *"));
        // 2026-07-01 is a Wednesday; the next weekday after Friday the 3rd is Monday the 6th.
        assert_eq!(
            upcoming("0 9 * JUL mon-fri", "2026-07-03T09:00:00Z", 1),
            ["2026-07-06T09:00:00Z"]
        );
    }

    #[test]
    fn six_fields_with_seconds() {
        assert_eq!(
            upcoming("*/20 * * * * *", "2026-01-01T00:00:50Z", 3),
            [
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:01:20Z",
                "2026-01-01T00:01:40Z",
            ]
        );
        assert_eq!(
            next("30 0 12 * * *", "2026-01-01T12:00:30Z"),
            Some(ts("2026-01-02T12:00:30Z"))
        );
        // Five fields mean second 0; sub-second input is handled.
        assert_eq!(sets("* * * * *")[0], 1);
        assert_eq!(
            next("* * * * * *", "2026-01-01T00:00:00.5Z"),
            Some(ts("2026-01-01T00:00:01Z"))
        );
    }

    #[test]
    fn macros() {
        assert_eq!(sets("@yearly"), sets("0 0 1 1 *"));
        assert_eq!(sets("@annually"), sets("0 0 1 1 *"));
        assert_eq!(sets("@monthly"), sets("0 0 1 * *"));
        assert_eq!(sets("@weekly"), sets("0 0 * * 0"));
        assert_eq!(sets("@daily"), sets("0 0 * * *"));
        assert_eq!(sets("@midnight"), sets("0 0 * * *"));
        assert_eq!(sets("@hourly"), sets("0 * * * *"));
        assert_eq!(sets(" @DAILY "), sets("0 0 * * *"));
        // 2026-02-01 is a Sunday.
        assert_eq!(
            next("@weekly", "2026-02-01T00:00:00Z"),
            Some(ts("2026-02-08T00:00:00Z"))
        );
        assert_eq!(
            next("@yearly", "2026-06-01T00:00:00Z"),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            next("@hourly", "2026-06-01T05:59:59Z"),
            Some(ts("2026-06-01T06:00:00Z"))
        );
    }

    #[test]
    fn dom_and_dow_are_ored_when_both_restricted() {
        // The 10th or any Friday (Feb 2026: Fridays 6, 13, 20, 27; the 10th is a Tuesday).
        assert_eq!(
            upcoming("0 0 10 * 5", "2026-02-01T00:00:00Z", 4),
            [
                "2026-02-06T00:00:00Z",
                "2026-02-10T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z",
            ]
        );
        // Only one of them restricted: only that one applies.
        assert_eq!(
            upcoming("0 0 10 * *", "2026-02-01T00:00:00Z", 2),
            ["2026-02-10T00:00:00Z", "2026-03-10T00:00:00Z"]
        );
        assert_eq!(
            upcoming("0 0 * * 5", "2026-02-01T00:00:00Z", 2),
            ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z"]
        );
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        assert_eq!(sets("0 0 * * 0"), sets("0 0 * * 7"));
        assert_eq!(sets("0 0 * * 7"), sets("0 0 * * SUN"));
        assert_eq!(sets("0 0 * * 5-7"), sets("0 0 * * 0,5,6"));
        assert_eq!(sets("0 0 * * 0-7"), sets("0 0 * * 0-6"));
        assert_eq!(
            next("0 0 * * 7", "2026-02-02T00:00:00Z"),
            Some(ts("2026-02-08T00:00:00Z"))
        );
    }

    #[test]
    fn leap_day() {
        assert_eq!(
            upcoming("0 0 29 2 *", "2026-03-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
    }

    #[test]
    fn never_firing_returns_none() {
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), None);
        assert_eq!(next("0 0 31 4,6,9,11 *", "2026-01-01T00:00:00Z"), None);
        assert!(upcoming("0 0 30 2 *", "2026-01-01T00:00:00Z", 3).is_empty());
        assert!(upcoming("* * * * *", "2026-01-01T00:00:00Z", 0).is_empty());
        assert_eq!(next("* * * * *", &Timestamp::MAX.to_string()), None);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases = [
            ("0 24 * * *", "hour: 24 is out of range 0-23"),
            ("60 * * * *", "minute: 60 is out of range 0-59"),
            ("60 0 * * * *", "second: 60 is out of range 0-59"),
            ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
            ("0 0 32 * *", "day of month: 32 is out of range 1-31"),
            ("0 0 * 13 *", "month: 13 is out of range 1-12"),
            ("0 0 * * 8", "day of week: 8 is out of range 0-7"),
            (
                "0 99999999999 * * *",
                "hour: 99999999999 is out of range 0-23",
            ),
            ("0 5-3 * * *", "hour: range 5-3 is reversed"),
            ("0 0 * * FRI-MON", "day of week: range 5-1 is reversed"),
            ("*/0 * * * *", "minute: step must be at least 1"),
            ("0 0 1-10/0 * *", "day of month: step must be at least 1"),
            ("*/x * * * *", "minute: invalid step \"x\""),
            ("*/ * * * *", "minute: invalid step \"\""),
            ("1,,2 * * * *", "minute: empty list item in \"1,,2\""),
            ("0 0 * 1, *", "month: empty list item in \"1,\""),
            ("0 -5 * * *", "hour: missing value"),
            ("0 0 * FOO *", "month: unknown value \"FOO\""),
            ("0 0 * MON *", "month: unknown value \"MON\""),
            ("0 0 * * JAN", "day of week: unknown value \"JAN\""),
            ("0 JAN * * *", "hour: unknown value \"JAN\""),
            ("0 1-2-3 * * *", "hour: unknown value \"2-3\""),
            ("0 ? * * *", "hour: unknown value \"?\""),
            ("* * * *", "expected 5 or 6 fields, found 4"),
            ("* * * * * * *", "expected 5 or 6 fields, found 7"),
            ("", "expected 5 or 6 fields, found 0"),
            ("@reboot", "unknown macro \"@reboot\""),
        ];
        for (expr, message) in cases {
            assert_eq!(err(expr), message, "expression {expr:?}");
        }
    }

    #[test]
    fn error_type_and_source() {
        let e = Cron::parse("0 24 * * *").unwrap_err();
        assert_eq!(e.message(), "hour: 24 is out of range 0-23");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "hour: 24 is out of range 0-23");
        assert_eq!(Cron::parse("@daily").unwrap().source(), "@daily");
        assert_eq!(parse("*/5 * * * *").unwrap().source(), "*/5 * * * *");
        assert_eq!("0 0 * * *".parse::<Cron>(), Cron::parse("0 0 * * *"));
    }

    #[test]
    fn time_zone_new_york() {
        let ny = tz("America/New_York");
        // EST (UTC-5) in winter, EDT (UTC-4) in summer.
        assert_eq!(
            upcoming_in("0 9 * * *", "2026-01-15T00:00:00Z", &ny, 1),
            ["2026-01-15T14:00:00Z"]
        );
        assert_eq!(
            upcoming_in("0 9 * * *", "2026-07-15T00:00:00Z", &ny, 1),
            ["2026-07-15T13:00:00Z"]
        );
        // Across the 2026-03-08 spring-forward.
        assert_eq!(
            upcoming_in("0 9 * * *", "2026-03-07T00:00:00Z", &ny, 2),
            ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"]
        );
    }

    #[test]
    fn dst_spring_forward_berlin() {
        let berlin = tz("Europe/Berlin");
        // 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00Z); 02:30 does not
        // exist and is shifted forward to 03:30 CEST.
        assert_eq!(
            upcoming_in("30 2 * * *", "2026-03-28T12:00:00Z", &berlin, 3),
            [
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ]
        );
        // Asked just after the jump, the shifted time is still found.
        assert_eq!(
            upcoming_in("30 2 * * *", "2026-03-29T01:10:00Z", &berlin, 1),
            ["2026-03-29T01:30:00Z"]
        );
        assert_eq!(
            upcoming_in("30 2 * * *", "2026-03-29T01:30:00Z", &berlin, 1),
            ["2026-03-30T00:30:00Z"]
        );
        // Every minute runs straight through the gap without repeats.
        assert_eq!(
            upcoming_in("* * * * *", "2026-03-29T00:58:00Z", &berlin, 4),
            [
                "2026-03-29T00:59:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:01:00Z",
                "2026-03-29T01:02:00Z",
            ]
        );
        // Hourly: 02:00 does not exist and coincides with 03:00.
        assert_eq!(
            upcoming_in("0 * * * *", "2026-03-29T00:00:00Z", &berlin, 3),
            [
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
                "2026-03-29T03:00:00Z",
            ]
        );
    }

    #[test]
    fn dst_fall_back_berlin_fires_once() {
        let berlin = tz("Europe/Berlin");
        // 2026-10-25 03:00 CEST falls back to 02:00 CET (01:00Z); 02:30
        // happens twice and fires only at the first occurrence.
        assert_eq!(
            upcoming_in("30 2 * * *", "2026-10-24T12:00:00Z", &berlin, 3),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z",
            ]
        );
        // Asked between the two occurrences: the second one does not fire.
        assert_eq!(
            upcoming_in("30 2 * * *", "2026-10-25T00:45:00Z", &berlin, 1),
            ["2026-10-26T01:30:00Z"]
        );
        // Every 30 minutes: the repeated hour is only run once.
        assert_eq!(
            upcoming_in("*/30 * * * *", "2026-10-25T00:00:00Z", &berlin, 3),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T02:30:00Z",
            ]
        );
    }

    #[test]
    fn upcoming_is_strictly_increasing() {
        let berlin = tz("Europe/Berlin");
        for expr in ["*/7 * * * * *", "0 */3 * * *", "15 1-3 * * *"] {
            let times =
                Cron::parse(expr)
                    .unwrap()
                    .upcoming(ts("2026-10-24T20:00:00Z"), &berlin, 200);
            assert_eq!(times.len(), 200, "{expr}");
            assert!(times.windows(2).all(|w| w[0] < w[1]), "{expr}");
        }
    }

    #[test]
    fn sparse_schedules_are_found_quickly() {
        assert_eq!(
            next("59 59 23 31 12 *", "2026-01-01T00:00:00Z"),
            Some(ts("2026-12-31T23:59:59Z"))
        );
        // Only matching months are visited: a yearly second is found directly.
        assert_eq!(
            next("0 0 0 1 1 *", "2026-01-01T00:00:00Z"),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            next("0 12 13 * *", "2026-02-13T12:00:00Z"),
            Some(ts("2026-03-13T12:00:00Z"))
        );
    }
}
