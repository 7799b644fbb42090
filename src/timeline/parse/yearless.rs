//! Dates for timestamps that carry no year: traditional syslog's
//! `Dec  3 14:02:11` (RFC 3164), in `auth.log`, `secure`, `syslog`,
//! `messages`, and yum's `yum.log`.
//!
//! A file of them is read twice. The first pass reads only the stamps, to
//! find where the years turn over and which line is the file's latest; the
//! second dates each line. The year is the latest that keeps every line at
//! or before the file's bound ([`FileContext::yearless_bound_us`]): the
//! earlier of when the evidence was collected and the file's modification
//! time, since no line can be written after either.
//!
//! Lines run forward in time, so a line more than [`TURN_BACK_S`] earlier in
//! the calendar than the line before it is in the next year (a file going
//! from Dec 31 to Jan 1). Smaller steps back (a clock set back, the hour a
//! daylight-saving change repeats, lines a few seconds out of order) stay in
//! the same year.

use time::{Date, Month};

use super::{FileContext, to_us};

/// How far back in the calendar a line must go, from the line before it,
/// to be read as the next year: a week. Clock corrections and daylight
/// saving step back by hours; a year's turn steps back by months (a file
/// quiet from Jan 3 to the next Jan 1 is the one case read wrongly).
pub const TURN_BACK_S: i64 = 7 * DAY_S;
const DAY_S: i64 = 86_400;

/// A time of day on a day of the year, with no year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    month: Month,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Stamp {
    /// A stamp that can exist in some year (Feb 29 can; Jun 31 cannot).
    pub fn new(month: Month, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        // 2000 is a leap year: every day some year has.
        Date::from_calendar_date(2000, month, day)
            .ok()?
            .with_hms(hour, minute, second)
            .ok()?;
        Some(Self {
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Seconds since the start of a leap year: stamps in calendar order.
    fn ordinal(self) -> i64 {
        let day = Date::from_calendar_date(2000, self.month, self.day)
            .map_or(0, |d| i64::from(d.ordinal()));
        day * DAY_S
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// This stamp in `year`, UTC, in microseconds; None for Feb 29 of a
    /// year without one.
    fn in_year(self, year: i32) -> Option<i64> {
        let t = Date::from_calendar_date(year, self.month, self.day)
            .ok()?
            .with_hms(self.hour, self.minute, self.second)
            .ok()?
            .assume_utc();
        Some(to_us(t))
    }
}

/// Years turned over so far, from one stamp to the next.
#[derive(Debug, Clone, Copy, Default)]
struct Turns {
    turns: i32,
    last: Option<i64>,
}

impl Turns {
    fn step(&mut self, s: Stamp) -> i32 {
        let o = s.ordinal();
        if self.last.is_some_and(|last| last - o > TURN_BACK_S) {
            self.turns += 1;
        }
        self.last = Some(o);
        self.turns
    }
}

/// Dates the yearless stamps of one file, given in file order.
#[derive(Debug, Clone)]
pub struct Years {
    base: i32,
    turns: Turns,
}

impl Years {
    /// Reads the file's stamps, in order (the first pass), and picks the
    /// year of its first line.
    pub fn new(ctx: &FileContext, stamps: impl IntoIterator<Item = Stamp>) -> Self {
        let bound = ctx.yearless_bound_us();
        let mut turns = Turns::default();
        // The latest line: the most turns, then the latest in the calendar.
        let mut latest: Option<(i32, i64, Stamp)> = None;
        for s in stamps {
            let n = turns.step(s);
            let key = (n, s.ordinal());
            if latest.is_none_or(|(ln, lo, _)| key >= (ln, lo)) {
                latest = Some((n, key.1, s));
            }
        }
        let bound_year = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(bound) * 1000)
            .map_or(ctx.year_hint, time::OffsetDateTime::year);
        let base = match latest {
            None => bound_year,
            Some((n, _, s)) => {
                // The latest line's year: the latest at or before the bound
                // (Feb 29 looks back to a leap year).
                let year = (bound_year - 8..=bound_year)
                    .rev()
                    .find(|&y| s.in_year(y).is_some_and(|t| t <= bound))
                    .unwrap_or(bound_year - 1);
                year - n
            }
        };
        Self {
            base,
            turns: Turns::default(),
        }
    }

    /// The time of the next stamp of the file (the second pass, the same
    /// stamps in the same order); for Feb 29 in a year without one, that year.
    pub fn date(&mut self, s: Stamp) -> Result<i64, i32> {
        let year = self.base + self.turns.step(s);
        s.in_year(year).ok_or(year)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::parse::time_us;

    fn st(month: Month, day: u8, h: u8, m: u8, s: u8) -> Stamp {
        Stamp::new(month, day, h, m, s).unwrap()
    }

    fn ctx(collected: &str, modified: Option<&str>) -> FileContext {
        FileContext {
            year_hint: 1999,
            modified_us: modified.map(|m| time_us(m).unwrap()),
            collected_us: Some(time_us(collected).unwrap()),
        }
    }

    fn dates(ctx: &FileContext, stamps: &[Stamp]) -> Vec<i64> {
        let mut y = Years::new(ctx, stamps.iter().copied());
        stamps.iter().map(|s| y.date(*s).unwrap()).collect()
    }

    #[test]
    fn the_year_keeps_every_line_before_the_earlier_bound() {
        let stamps = [
            st(Month::December, 10, 8, 0, 0),
            st(Month::December, 28, 23, 0, 0),
        ];
        // Collected in early December of the next year: last December.
        let c = ctx("2026-12-02T09:00:00Z", None);
        assert_eq!(
            dates(&c, &stamps),
            [
                time_us("2025-12-10T08:00:00Z").unwrap(),
                time_us("2025-12-28T23:00:00Z").unwrap()
            ]
        );
        // Collected later that December: this December.
        let c = ctx("2026-12-29T09:00:00Z", None);
        assert_eq!(
            dates(&c, &stamps)[0],
            time_us("2026-12-10T08:00:00Z").unwrap()
        );
        // The modification time, earlier than the collection, bounds it.
        let c = ctx("2026-12-29T09:00:00Z", Some("2026-01-05T00:00:00Z"));
        assert_eq!(
            dates(&c, &stamps)[0],
            time_us("2025-12-10T08:00:00Z").unwrap()
        );
    }

    #[test]
    fn a_file_across_new_year_gets_two_years() {
        let stamps = [
            st(Month::December, 30, 23, 59, 0),
            st(Month::December, 31, 23, 59, 59),
            st(Month::January, 1, 0, 0, 1),
            st(Month::January, 2, 6, 0, 0),
        ];
        let want = [
            "2025-12-30T23:59:00Z",
            "2025-12-31T23:59:59Z",
            "2026-01-01T00:00:01Z",
            "2026-01-02T06:00:00Z",
        ]
        .map(|t| time_us(t).unwrap());
        assert_eq!(dates(&ctx("2026-01-03T00:00:00Z", None), &stamps), want);
        // Collected on Dec 31 of the next year: the January lines are the
        // latest, so they fix the years; the December ones are the year before.
        let later = dates(&ctx("2026-12-31T12:00:00Z", None), &stamps);
        assert_eq!(later, want);
    }

    #[test]
    fn lines_a_little_out_of_order_do_not_turn_the_year() {
        let stamps = [
            st(Month::March, 1, 10, 0, 5),
            st(Month::March, 1, 10, 0, 2),
            // A daylight-saving hour repeated.
            st(Month::March, 1, 9, 30, 0),
            st(Month::March, 2, 1, 0, 0),
        ];
        let d = dates(&ctx("2026-06-01T00:00:00Z", None), &stamps);
        assert_eq!(d[0], time_us("2026-03-01T10:00:05Z").unwrap());
        assert_eq!(d[1], time_us("2026-03-01T10:00:02Z").unwrap());
        assert_eq!(d[2], time_us("2026-03-01T09:30:00Z").unwrap());
        assert_eq!(d[3], time_us("2026-03-02T01:00:00Z").unwrap());
    }

    #[test]
    fn a_host_ahead_of_utc_keeps_its_last_lines_in_the_collection_year() {
        // Written at 09:00 local on a UTC+10 host, collected 30 minutes later.
        let stamps = [st(Month::January, 1, 9, 0, 0)];
        let d = dates(&ctx("2025-12-31T23:30:00Z", None), &stamps);
        assert_eq!(d[0], time_us("2026-01-01T09:00:00Z").unwrap());
    }

    #[test]
    fn without_a_bound_the_hint_is_the_year_of_the_latest_line() {
        let c = FileContext {
            year_hint: 2024,
            ..FileContext::default()
        };
        let stamps = [
            st(Month::December, 31, 0, 0, 0),
            st(Month::January, 1, 0, 0, 0),
        ];
        assert_eq!(
            dates(&c, &stamps),
            [
                time_us("2023-12-31T00:00:00Z").unwrap(),
                time_us("2024-01-01T00:00:00Z").unwrap()
            ]
        );
    }

    #[test]
    fn feb_29_looks_back_to_a_leap_year() {
        let stamps = [st(Month::February, 29, 12, 0, 0)];
        let d = dates(&ctx("2027-03-01T00:00:00Z", None), &stamps);
        assert_eq!(d[0], time_us("2024-02-29T12:00:00Z").unwrap());
        assert!(Stamp::new(Month::June, 31, 0, 0, 0).is_none());
    }
}
