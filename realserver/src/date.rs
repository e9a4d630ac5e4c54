//! The `Date` header: formatted once per second and cached, never per request.

use hyper::body::Bytes;
use hyper::header::HeaderValue;

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// Formats Unix seconds as an RFC 9110 IMF-fixdate (always GMT, fixed width).
pub fn format_http_date(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let weekday = DAYS[(days % 7) as usize];
    // Civil-from-days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Years beyond 9999 do not fit the fixed width; clamp (never reached in practice).
    let year = year.clamp(0, 9999) as u64;
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(weekday);
    let two = |buf: &mut [u8], v: u64| {
        buf[0] = b'0' + (v / 10) as u8;
        buf[1] = b'0' + (v % 10) as u8;
    };
    two(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    two(&mut out[17..19], h);
    two(&mut out[20..22], m);
    two(&mut out[23..25], s);
    out
}

/// Per-worker cache of the formatted `Date` header value; owned by one worker
/// thread. `get` reformats only when the second changes, so a request costs a
/// clock read and a reference-count increment.
#[derive(Debug)]
pub struct DateCache {
    secs: u64,
    value: HeaderValue,
}

impl DateCache {
    /// Creates a cache holding the date for `unix_secs`.
    pub fn new(unix_secs: u64) -> Self {
        DateCache {
            secs: unix_secs,
            value: Self::render(unix_secs),
        }
    }

    fn render(unix_secs: u64) -> HeaderValue {
        let bytes = Bytes::copy_from_slice(&format_http_date(unix_secs));
        // An IMF-fixdate is plain visible ASCII, always a valid header value.
        HeaderValue::from_maybe_shared(bytes)
            .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    }

    /// The header value for `unix_secs`, refreshed if the second moved on.
    pub fn get(&mut self, unix_secs: u64) -> HeaderValue {
        if unix_secs != self.secs {
            self.secs = unix_secs;
            self.value = Self::render(unix_secs);
        }
        self.value.clone()
    }
}

/// Current Unix time in whole seconds (0 if the clock is before 1970).
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> String {
        String::from_utf8(format_http_date(secs).to_vec()).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(s(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(s(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(s(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(s(4_133_980_799), "Fri, 31 Dec 2100 23:59:59 GMT");
        // 2100 is not a leap year.
        assert_eq!(s(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(s(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn cache_refreshes_only_when_second_changes() {
        let mut c = DateCache::new(0);
        let a = c.get(0);
        assert_eq!(a, "Thu, 01 Jan 1970 00:00:00 GMT");
        // Same second: the very same shared bytes are handed out again.
        let b = c.get(0);
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        let d = c.get(1);
        assert_eq!(d, "Thu, 01 Jan 1970 00:00:01 GMT");
        assert_ne!(a.as_bytes().as_ptr(), d.as_bytes().as_ptr());
    }
}
