//! Sub-millisecond waits for the open-loop schedule.
//!
//! tokio's timer wheel ticks every millisecond and rounds a deadline *up* to the next tick, and
//! the reactor's `epoll_wait` timeout is in whole milliseconds, so `sleep_until(t)` returns
//! 0-2 ms after `t`. For an open-loop generator that lateness lands in every latency measured
//! from the scheduled instant: at light load it dwarfs a loopback server's ~50 µs replies.
//!
//! A [`Pacer`] instead arms a Linux `timerfd` at the absolute `CLOCK_MONOTONIC` instant (the clock
//! [`Instant`] reads) and waits for it in the runtime's own reactor. A timerfd is an hrtimer
//! armed without timer slack, so its expiry wakes `epoll_wait` within tens of microseconds, on
//! the worker's own thread: no helper thread, no cross-thread hand-off, no spinning. The cost is
//! one `timerfd_settime` per wait plus the reactor wake-up. Where no timerfd can be created the
//! pacer falls back to tokio's timer (correct, just coarse). A tokio sleep 2 ms after the
//! deadline backs the timerfd up, so a lost wake-up can never stall the schedule.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How long after the deadline the tokio-timer backstop fires if the timerfd did not.
const BACKSTOP: Duration = Duration::from_millis(2);

/// Waits until absolute instants, as precisely as the OS allows. One per worker (not `Sync`
/// by design: it re-arms one timer).
pub struct Pacer {
    timer: Option<TimerFd>,
    backstop: Pin<Box<tokio::time::Sleep>>,
}

/// A non-blocking timerfd registered with the current runtime, plus the clock calibration that
/// turns an [`Instant`] into the `CLOCK_MONOTONIC` timespec it stands for.
struct TimerFd {
    fd: AsyncFd<OwnedFd>,
    calib: Calibration,
}

/// A pair of readings of the same clock: `instant` first, then `mono` (so `mono` is never
/// earlier than `instant`, and targets computed from it never fire early).
#[derive(Clone, Copy, Debug)]
struct Calibration {
    instant: Instant,
    mono: Duration,
}

impl Calibration {
    /// The `CLOCK_MONOTONIC` reading that corresponds to `due` (saturating at zero).
    fn target(&self, due: Instant) -> Duration {
        if due >= self.instant {
            self.mono.saturating_add(due - self.instant)
        } else {
            self.mono.saturating_sub(self.instant - due)
        }
    }
}

/// `d` as a timespec; never all-zero (an all-zero `it_value` would disarm the timer).
fn timespec(d: Duration) -> libc::timespec {
    let secs = libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX);
    let nanos = d.subsec_nanos();
    libc::timespec {
        tv_sec: secs,
        tv_nsec: if secs == 0 && nanos == 0 {
            1
        } else {
            nanos as libc::c_long
        },
    }
}

fn monotonic_now() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the pointer is valid for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(Duration::new(secs, nanos.min(999_999_999)))
}

impl TimerFd {
    /// Must be called inside a tokio runtime with I/O enabled.
    fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // that we own from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor not owned by anything else.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let instant = Instant::now();
        let mono = monotonic_now()?;
        // SAFETY: `owned` is a valid open descriptor that the AsyncFd takes ownership of; the
        // OwnedFd always returns that same descriptor and is never swapped out.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }?;
        Ok(TimerFd {
            fd,
            calib: Calibration { instant, mono },
        })
    }

    /// Arm the timer to expire once at `due` (absolute; a past instant expires at once).
    fn arm(&self, due: Instant) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: timespec(self.calib.target(due)),
        };
        // SAFETY: `spec` is a valid itimerspec we own; the old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Pacer {
    /// A pacer for the current runtime (must be called inside one). Uses a timerfd when the OS
    /// provides one, else tokio's millisecond timer.
    pub fn new() -> Pacer {
        Pacer {
            timer: TimerFd::new().ok(),
            backstop: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Whether waits use the high-resolution timer (false: tokio's 1-ms timer).
    pub fn is_high_resolution(&self) -> bool {
        self.timer.is_some()
    }

    /// Return at or after `due` (immediately if it has passed).
    pub async fn wait_until(&mut self, due: Instant) {
        if Instant::now() >= due {
            return;
        }
        let on_timerfd = match self.timer.as_ref() {
            Some(timer) => wait_timerfd(timer, &mut self.backstop, due).await.is_ok(),
            None => false,
        };
        if !on_timerfd {
            // No timerfd, or it failed mid-wait: finish this wait on tokio's timer.
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Waits for `due` on the timerfd, with tokio's `backstop` sleep as a safety net against a
/// missed wake-up. An error means the timerfd could not be used; the caller falls back.
async fn wait_timerfd(
    timer: &TimerFd,
    backstop: &mut Pin<Box<tokio::time::Sleep>>,
    due: Instant,
) -> io::Result<()> {
    timer.arm(due)?;
    backstop.as_mut().reset((due + BACKSTOP).into());
    loop {
        tokio::select! {
            biased;
            ready = timer.fd.readable() => {
                let mut guard = ready?;
                // The expiry count is never read: re-arming resets it, and readiness is
                // cleared here (a newer expiry keeps its own readiness event).
                guard.clear_ready();
                if Instant::now() >= due {
                    return Ok(());
                }
                // Stale readiness from an earlier expiry: the timer for `due` is still
                // armed, but re-arm anyway so that no expiry can have slipped by.
                timer.arm(due)?;
            }
            _ = &mut *backstop => {
                return Ok(());
            }
        }
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_maps_instants_onto_the_monotonic_clock() {
        let instant = Instant::now();
        let c = Calibration {
            instant,
            mono: Duration::from_secs(100),
        };
        assert_eq!(c.target(instant), Duration::from_secs(100));
        assert_eq!(
            c.target(instant + Duration::from_micros(250)),
            Duration::from_secs(100) + Duration::from_micros(250)
        );
        if let Some(before) = instant.checked_sub(Duration::from_secs(1)) {
            assert_eq!(c.target(before), Duration::from_secs(99));
        }
        let tiny = Calibration {
            instant,
            mono: Duration::from_nanos(5),
        };
        if let Some(before) = instant.checked_sub(Duration::from_secs(1)) {
            assert_eq!(tiny.target(before), Duration::ZERO);
        }
    }

    #[test]
    fn timespec_is_never_zero() {
        let z = timespec(Duration::ZERO);
        assert_eq!((z.tv_sec, z.tv_nsec), (0, 1));
        let t = timespec(Duration::new(7, 999_999_999));
        assert_eq!((t.tv_sec, t.tv_nsec), (7, 999_999_999));
    }

    #[test]
    fn waits_never_return_early_and_past_instants_return_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = Pacer::new();
            assert!(p.is_high_resolution());
            let start = Instant::now();
            // Past instant: no wait at all (and no arming).
            p.wait_until(start).await;
            // A run of short, increasing deadlines (sub-millisecond gaps), plus a repeat of the
            // same instant, which must not hang on stale readiness.
            for k in 1..=40u64 {
                let due = start + Duration::from_micros(150 * k);
                p.wait_until(due).await;
                assert!(Instant::now() >= due, "returned before deadline {k}");
                p.wait_until(due).await;
            }
        });
    }

    #[test]
    fn fallback_without_timerfd_still_waits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = Pacer::new();
            p.timer = None;
            assert!(!p.is_high_resolution());
            let due = Instant::now() + Duration::from_millis(3);
            p.wait_until(due).await;
            assert!(Instant::now() >= due);
        });
    }
}
