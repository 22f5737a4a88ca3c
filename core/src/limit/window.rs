//! Fixed UTC quota windows (hour, day, ISO week, calendar month) by civil-date arithmetic.

/// Seconds in an hour.
const HOUR: u64 = 3600;
/// Seconds in a day (UTC has no leap seconds in unix time).
const DAY: u64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const EPOCH_SHIFT: u64 = 719_468;
/// Days in a 400-year Gregorian era.
const ERA_DAYS: u64 = 146_097;

/// The length of a [`super::Quota`] window; every window starts and ends on a UTC boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// From `hh:00:00` to the next hour.
    Hour,
    /// From midnight UTC to the next midnight.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A calendar month: the 1st 00:00 UTC to the 1st of the next month.
    Month,
    /// A calendar year: 1 January 00:00 UTC to the next 1 January.
    Year,
}

/// The unix second at which the `period` window holding `now_unix_secs` starts.
pub fn window_start(period: Period, now_unix_secs: u64) -> u64 {
    let days = now_unix_secs / DAY;
    match period {
        Period::Hour => now_unix_secs - now_unix_secs % HOUR,
        Period::Day => days * DAY,
        // 1970-01-01 was a Thursday: days + 3 counts from a Monday. The week of 1970-01-01 started
        // before the epoch, so its start saturates to 0.
        Period::Week => days.saturating_sub((days + 3) % 7) * DAY,
        Period::Month => {
            let (y, m, _) = civil_from_days(days);
            days_from_civil(y, m, 1) * DAY
        }
        Period::Year => {
            let (y, _, _) = civil_from_days(days);
            days_from_civil(y, 1, 1) * DAY
        }
    }
}

/// The unix second at which the `period` window holding `now_unix_secs` ends (the next one starts),
/// saturating at `u64::MAX`.
pub fn window_end(period: Period, now_unix_secs: u64) -> u64 {
    match period {
        Period::Hour => window_start(period, now_unix_secs).saturating_add(HOUR),
        Period::Day => window_start(period, now_unix_secs).saturating_add(DAY),
        Period::Week => {
            let days = now_unix_secs / DAY;
            (days + 7 - (days + 3) % 7).saturating_mul(DAY)
        }
        Period::Month => {
            let (y, m, _) = civil_from_days(now_unix_secs / DAY);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1).saturating_mul(DAY)
        }
        Period::Year => {
            let (y, _, _) = civil_from_days(now_unix_secs / DAY);
            days_from_civil(y + 1, 1, 1).saturating_mul(DAY)
        }
    }
}

/// Days since 1970-01-01 of the civil date `y-m-d` (Howard Hinnant's `days_from_civil`, for dates
/// on or after 0000-03-01; `m` in 1..=12, `d` in 1..=31).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    // Years start in March, so the leap day is the last day of the year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * ERA_DAYS + doe).saturating_sub(EPOCH_SHIFT)
}

/// The civil date `(year, month, day)` of `days` since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + EPOCH_SHIFT;
    let era = z / ERA_DAYS;
    let doe = z % ERA_DAYS;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / (ERA_DAYS - 1)) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = era * 400 + yoe + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z, a Thursday.
    const JAN_1_2026: u64 = 1_767_225_600;

    fn window(period: Period, now: u64) -> (u64, u64) {
        (window_start(period, now), window_end(period, now))
    }

    #[test]
    fn hours_and_days() {
        let t = JAN_1_2026 + 5 * HOUR;
        assert_eq!(window(Period::Hour, t - 1), (t - HOUR, t));
        assert_eq!(window(Period::Hour, t), (t, t + HOUR));
        assert_eq!(window(Period::Hour, t + HOUR - 1), (t, t + HOUR));
        assert_eq!(
            window(Period::Day, JAN_1_2026 - 1),
            (JAN_1_2026 - DAY, JAN_1_2026)
        );
        assert_eq!(
            window(Period::Day, JAN_1_2026),
            (JAN_1_2026, JAN_1_2026 + DAY)
        );
        assert_eq!(
            window(Period::Day, JAN_1_2026 + DAY - 1),
            (JAN_1_2026, JAN_1_2026 + DAY)
        );
        assert_eq!(window(Period::Hour, 0), (0, HOUR));
        assert_eq!(window(Period::Day, 0), (0, DAY));
    }

    #[test]
    fn years_are_calendar_years() {
        const JAN_1_2025: u64 = 1_735_689_600;
        const JAN_1_2027: u64 = 1_798_761_600;
        assert_eq!(window(Period::Year, JAN_1_2026), (JAN_1_2026, JAN_1_2027));
        assert_eq!(
            window(Period::Year, JAN_1_2027 - 1),
            (JAN_1_2026, JAN_1_2027)
        );
        assert_eq!(
            window(Period::Year, JAN_1_2026 - 1),
            (JAN_1_2025, JAN_1_2026)
        );
        // 2024 was a leap year: 366 days.
        const JAN_1_2024: u64 = 1_704_067_200;
        assert_eq!(JAN_1_2025 - JAN_1_2024, 366 * DAY);
        assert_eq!(
            window(Period::Year, JAN_1_2024 + 59 * DAY),
            (JAN_1_2024, JAN_1_2025)
        );
        assert_eq!(window(Period::Year, 0), (0, 365 * DAY));
    }

    #[test]
    fn weeks_start_on_monday() {
        let mon_dec_29_2025 = JAN_1_2026 - 3 * DAY;
        let mon_jan_5_2026 = 1_767_571_200;
        let week = 7 * DAY;
        assert_eq!(
            window(Period::Week, JAN_1_2026),
            (mon_dec_29_2025, mon_jan_5_2026)
        );
        assert_eq!(
            window(Period::Week, mon_jan_5_2026 - 1),
            (mon_dec_29_2025, mon_jan_5_2026)
        );
        assert_eq!(
            window(Period::Week, mon_jan_5_2026),
            (mon_jan_5_2026, mon_jan_5_2026 + week)
        );
        // Sunday 23:59:59 is still the week of the Monday before.
        assert_eq!(
            window(Period::Week, mon_jan_5_2026 + week - 1),
            (mon_jan_5_2026, mon_jan_5_2026 + week)
        );
        // The week of Tue 2028-02-29 runs from Mon 2028-02-28 to Mon 2028-03-06.
        assert_eq!(
            window(Period::Week, 1_835_395_200 + 12 * HOUR),
            (1_835_308_800, 1_835_913_600)
        );
        // The epoch's week began on Monday 1969-12-29.
        assert_eq!(window(Period::Week, 0), (0, 4 * DAY));
    }

    #[test]
    fn months_are_calendar_months() {
        let dec_1_2027 = 1_827_619_200;
        let jan_1_2028 = 1_830_297_600;
        let feb_1_2028 = 1_832_976_000;
        let mar_1_2028 = 1_835_481_600;
        assert_eq!(
            window(Period::Month, jan_1_2028 - 1),
            (dec_1_2027, jan_1_2028)
        );
        assert_eq!(window(Period::Month, jan_1_2028), (jan_1_2028, feb_1_2028));
        // February of the leap year 2028 has 29 days.
        assert_eq!(window(Period::Month, feb_1_2028), (feb_1_2028, mar_1_2028));
        assert_eq!(
            window(Period::Month, mar_1_2028 - 1),
            (feb_1_2028, mar_1_2028)
        );
        assert_eq!(mar_1_2028 - feb_1_2028, 29 * DAY);
        assert_eq!(window(Period::Month, mar_1_2028).0, mar_1_2028);
        // 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(
            window(Period::Month, 949_363_200),
            (949_363_200, 951_868_800)
        );
        assert_eq!(
            window(Period::Month, 4_105_123_200),
            (4_105_123_200, 4_107_542_400)
        );
        assert_eq!(window(Period::Month, 0), (0, 31 * DAY));
    }

    #[test]
    fn civil_round_trip() {
        for days in (0..200_000).step_by(7).chain([u64::MAX / DAY]) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(window_end(Period::Month, u64::MAX), u64::MAX);
        assert_eq!(window_end(Period::Week, u64::MAX), u64::MAX);
    }
}
