//! Deterministic per-request CPU work (`--work-us`), to emulate slower hardware.
//!
//! The budget is measured in *thread CPU time* (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall time: a request costs the same CPU whether or not the worker is
//! preempted or throttled by a cgroup quota, which is how a slower machine
//! behaves. Under a CPU quota the wall time per request therefore grows, as it
//! would on the slower machine.

use std::time::Duration;

/// CPU time consumed so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux kernel we run on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Spins until `clock` has advanced by `budget` since the first reading;
/// returns the number of clock readings taken. A clock that stops advancing
/// (an error reading as zero) ends the loop after a bounded number of reads,
/// so this never hangs.
pub fn spin_until(budget: Duration, mut clock: impl FnMut() -> Duration) -> u64 {
    if budget.is_zero() {
        return 0;
    }
    let start = clock();
    let mut reads = 1u64;
    let mut last = start;
    let mut stuck = 0u32;
    loop {
        // A little real work between clock reads, kept opaque to the optimiser.
        let mut x = reads;
        for _ in 0..16 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        std::hint::black_box(x);
        let now = clock();
        reads += 1;
        if now.saturating_sub(start) >= budget {
            return reads;
        }
        if now == last {
            stuck += 1;
            if stuck > 100_000 {
                return reads;
            }
        } else {
            stuck = 0;
            last = now;
        }
    }
}

/// Burns `budget` of the calling thread's CPU time.
pub fn burn_cpu(budget: Duration) {
    spin_until(budget, thread_cpu_time);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_budget_does_nothing() {
        assert_eq!(spin_until(Duration::ZERO, || unreachable!()), 0);
    }

    #[test]
    fn stops_exactly_when_fake_clock_reaches_budget() {
        let mut t = 0u64;
        let reads = spin_until(Duration::from_micros(100), || {
            t += 10;
            Duration::from_micros(t)
        });
        // Start at 10 us; 100 us later is 110 us, the 11th reading.
        assert_eq!(reads, 11);
    }

    #[test]
    fn stuck_clock_does_not_hang() {
        let reads = spin_until(Duration::from_secs(1), || Duration::from_secs(5));
        assert!(reads > 100_000);
    }

    #[test]
    fn burns_at_least_the_budget_of_thread_cpu() {
        let before = thread_cpu_time();
        burn_cpu(Duration::from_millis(3));
        let used = thread_cpu_time() - before;
        assert!(used >= Duration::from_millis(3), "used {used:?}");
    }
}
