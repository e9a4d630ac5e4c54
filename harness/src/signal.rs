//! Ctrl-C / SIGTERM handling during `up`: the handler only sets a flag; the
//! executor checks it between steps and rolls back. During teardown the
//! signals are ignored (and so by the commands teardown runs) so cleanup
//! is not cut short.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the handler when SIGINT, SIGTERM or SIGHUP arrives.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn set(handler: libc::sighandler_t) {
    for sig in SIGNALS {
        // SAFETY: installing a handler that only touches an atomic (or
        // SIG_IGN/SIG_DFL) is sound; `signal` has no other preconditions.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

/// Routes SIGINT/SIGTERM/SIGHUP to [`INTERRUPTED`] and returns it.
pub fn catch_interrupts() -> &'static AtomicBool {
    let h: extern "C" fn(libc::c_int) = on_signal;
    set(h as libc::sighandler_t);
    &INTERRUPTED
}

/// Ignores the signals (inherited by child commands) while cleaning up.
pub fn ignore_interrupts() {
    set(libc::SIG_IGN);
}

/// Restores the default dispositions.
pub fn default_interrupts() {
    set(libc::SIG_DFL);
}

/// Whether an interrupt arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
