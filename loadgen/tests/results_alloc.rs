//! The recorder's hot path neither allocates in the steady state nor grows without bound:
//! a counting global allocator watches the recording thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use loadgen::record::{ErrorKind, Recorder, ReplyRecord, RunFacts};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only adds thread-local counters (const-initialised,
// so touching them never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + l.size() as u64));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + l.size() as u64));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + n as u64));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> (u64, u64) {
    (ALLOCS.with(|c| c.get()), BYTES.with(|c| c.get()))
}

/// One connection's worth of events, `conn` numbers it, at 20k conn/s.
fn events(r: &mut Recorder, t0: Instant, conn: u64) {
    let at = t0 + Duration::from_micros(conn * 50);
    let ms = Duration::from_millis;
    r.conn_started(at);
    r.conn_established(at, ms(1));
    r.request_due(at);
    r.request_sent(at, 70);
    let reply = ReplyRecord {
        status: if conn.is_multiple_of(50) { 503 } else { 200 },
        header_bytes: 200,
        body_bytes: 75,
        footer_bytes: 0,
        response_time: Duration::from_micros(100 + conn % 5000),
        transfer_time: Duration::from_micros(conn % 7),
        latency: Duration::from_micros(200 + conn % 90_000),
        latency_uncorrected: Duration::from_micros(150 + conn % 9000),
    };
    r.reply(at + ms(2), &reply);
    r.bytes_received(275);
    if conn.is_multiple_of(1000) {
        r.error(at, ErrorKind::ConnReset);
    }
    r.conn_closed(
        at + ms(2),
        ms(2 + conn % 300),
        1,
        !conn.is_multiple_of(1000),
    );
}

#[test]
fn steady_state_allocates_nothing_and_memory_is_bounded() {
    let t0 = Instant::now();
    let (a0, b0) = allocs();
    let mut r = Recorder::new(t0);
    let (a1, b1) = allocs();
    let setup_bytes = b1 - b0;
    // Warm up: the first second sees every status code used below.
    for c in 0..20_000 {
        events(&mut r, t0, c);
    }
    let (a2, _) = allocs();
    // 30 s at 20k conn/s (600k connections, 3.6M events): within the pre-sized series
    // (10 minutes), nothing may allocate.
    for c in 20_000..600_000 {
        events(&mut r, t0, c);
    }
    let (a3, b3) = allocs();
    assert_eq!(
        a3 - a2,
        0,
        "recorder allocated {} times in the steady state",
        a3 - a2
    );
    assert!(
        a2 - a1 <= 4,
        "warm-up allocated {} times (status code map)",
        a2 - a1
    );
    // Fixed footprint: histograms + lifetime bins + pre-sized series, well under 100 MB.
    assert!(
        setup_bytes < 3 * 1024 * 1024,
        "recorder reserves {setup_bytes} bytes"
    );
    assert!(
        b3 - b0 < 4 * 1024 * 1024,
        "{} bytes allocated in total",
        b3 - b0
    );
    assert!(a1 - a0 < 20);

    let res = r.finish(t0 + Duration::from_secs(30), RunFacts::default());
    assert_eq!(res.counts.conns_attempted, 600_000);
    assert_eq!(res.replies(), 600_000);
    assert_eq!(res.reply_rate.counts.len(), 6);
    assert_eq!(res.series.len(), 31);
}
