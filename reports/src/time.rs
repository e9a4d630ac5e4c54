//! UTC dates for reports (no time-zone database, no extra dependency).

/// Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
/// (`harness::experiment` has a private copy that can use this once harness depends on us.)
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// "YYYY-MM-DD HH:MM:SS UTC" for milliseconds since the epoch.
pub fn utc(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    let (y, m, d) = civil_from_days((s / 86_400) as i64);
    let t = s % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// "1 h 02 min 03 s", "4 min 05 s" or "12.3 s" for a duration in milliseconds.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{:.1} s", ms as f64 / 1000.0),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min {:02} s", s / 3600, s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 (leap day) 12:34:56.
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(utc(1_798_761_599_999), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(3_723_000), "1 h 02 min 03 s");
    }
}
