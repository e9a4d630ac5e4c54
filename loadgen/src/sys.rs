//! Process-level facts and limits: RLIMIT_NOFILE, CPU time, and mapping OS errors to httperf's
//! error classes.

use std::io;

use crate::record::ErrorKind;

/// Raise the soft RLIMIT_NOFILE to the hard limit so that many concurrent connections do not run
/// out of descriptors. Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the pointer is valid for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(lim.rlim_cur)
}

/// User and system CPU seconds this process has used so far (all threads).
pub fn cpu_times() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Milliseconds since the Unix epoch (wall clock), 0 if the clock is before 1970.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// httperf's class for a socket error. Timeouts of our own (`--timeout`) are classified by the
/// engine as `ClientTimo` before this is consulted.
pub fn classify_io_error(e: &io::Error) -> ErrorKind {
    if let Some(code) = e.raw_os_error() {
        return match code {
            libc::ETIMEDOUT => ErrorKind::SocketTimo,
            libc::ECONNREFUSED => ErrorKind::ConnRefused,
            libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => ErrorKind::ConnReset,
            libc::EMFILE => ErrorKind::FdUnavail,
            libc::ENFILE => ErrorKind::FtabFull,
            libc::EADDRNOTAVAIL | libc::EADDRINUSE => ErrorKind::AddrUnavail,
            _ => ErrorKind::Other,
        };
    }
    match e.kind() {
        io::ErrorKind::TimedOut => ErrorKind::SocketTimo,
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnRefused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => ErrorKind::ConnReset,
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => ErrorKind::AddrUnavail,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_httperf() {
        let e = |c| io::Error::from_raw_os_error(c);
        assert_eq!(
            classify_io_error(&e(libc::ECONNREFUSED)),
            ErrorKind::ConnRefused
        );
        assert_eq!(
            classify_io_error(&e(libc::ECONNRESET)),
            ErrorKind::ConnReset
        );
        assert_eq!(
            classify_io_error(&e(libc::ETIMEDOUT)),
            ErrorKind::SocketTimo
        );
        assert_eq!(classify_io_error(&e(libc::EMFILE)), ErrorKind::FdUnavail);
        assert_eq!(classify_io_error(&e(libc::ENFILE)), ErrorKind::FtabFull);
        assert_eq!(
            classify_io_error(&e(libc::EADDRNOTAVAIL)),
            ErrorKind::AddrUnavail
        );
        assert_eq!(classify_io_error(&e(libc::EINVAL)), ErrorKind::Other);
        assert_eq!(
            classify_io_error(&io::Error::new(io::ErrorKind::UnexpectedEof, "x")),
            ErrorKind::ConnReset
        );
    }

    #[test]
    fn nofile_limit_and_cpu_time() {
        assert!(raise_nofile_limit().unwrap() >= 1);
        let (u, s) = cpu_times();
        assert!(u >= 0.0 && s >= 0.0);
        assert!(unix_ms_now() > 1_600_000_000_000);
    }
}
