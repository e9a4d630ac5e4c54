//! Per-worker event recorder: the engine reports every event here, `finish` turns it into a
//! [`RunResult`].
//!
//! Owned by exactly one worker thread (no locks, `Send`); workers are folded together with
//! [`Recorder::absorb`] at the end. Every event method is O(1) and allocation-free in the steady
//! state: histograms have fixed bounds (values above saturate), the per-second series and the
//! reply-rate windows are pre-sized and grow at most once per second (amortised), capped at
//! [`MAX_SERIES_SECS`] so memory stays bounded whatever the clock says.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::result::{
    Counts, ErrorCounts, Histograms, MomentSet, ReplyRateWindows, RunResult, SecondCounts,
    StatusCounts, TimelineBin, LIFETIME_BINS, RATE_INTERVAL_NS, TIMELINE_BIN_MS,
};

/// httperf's error classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The client-side timeout (`--timeout`) fired; counted once per connection.
    ClientTimo,
    /// The kernel reported ETIMEDOUT.
    SocketTimo,
    /// ECONNREFUSED.
    ConnRefused,
    /// ECONNRESET or EPIPE.
    ConnReset,
    /// Out of file descriptors (EMFILE).
    FdUnavail,
    /// No local port/address available (EADDRNOTAVAIL).
    AddrUnavail,
    /// System file table full (ENFILE).
    FtabFull,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// All kinds, in httperf's print order of the two "Errors:" lines' fields' storage index.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::ClientTimo,
        ErrorKind::SocketTimo,
        ErrorKind::ConnRefused,
        ErrorKind::ConnReset,
        ErrorKind::FdUnavail,
        ErrorKind::AddrUnavail,
        ErrorKind::FtabFull,
        ErrorKind::Other,
    ];

    /// Dense index into per-kind counter arrays (the order of [`ErrorKind::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label httperf prints for this class ("client-timo", "connrefused", ...).
    pub fn httperf_label(self) -> &'static str {
        match self {
            ErrorKind::ClientTimo => "client-timo",
            ErrorKind::SocketTimo => "socket-timo",
            ErrorKind::ConnRefused => "connrefused",
            ErrorKind::ConnReset => "connreset",
            ErrorKind::FdUnavail => "fd-unavail",
            ErrorKind::AddrUnavail => "addrunavail",
            ErrorKind::FtabFull => "ftab-full",
            ErrorKind::Other => "other",
        }
    }
}

/// One complete reply, as the engine saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyRecord {
    /// HTTP status code.
    pub status: u16,
    /// Status line + header lines + final CRLF.
    pub header_bytes: u64,
    /// Content bytes (for chunked: the decoded content length).
    pub body_bytes: u64,
    /// Chunked framing/trailer bytes (httperf's "footer").
    pub footer_bytes: u64,
    /// Last request byte written -> first reply byte (httperf "response").
    pub response_time: Duration,
    /// First reply byte -> last reply byte (httperf "transfer").
    pub transfer_time: Duration,
    /// SCHEDULED send instant -> last reply byte (coordinated-omission corrected).
    pub latency: Duration,
    /// ACTUAL send start -> last reply byte.
    pub latency_uncorrected: Duration,
}

/// Facts only the engine knows, handed over at the end.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// First line httperf prints, e.g. "httperf --client=0/1 --server=...".
    pub command_line: String,
    /// The validated configuration, serialised by the engine.
    pub config: serde_json::Value,
    /// `--client I/N`: I.
    pub client_index: u32,
    /// `--client I/N`: N.
    pub client_count: u32,
    /// Max simultaneously open connections.
    pub max_concurrent: u64,
    /// Open loop: the `--max-inflight` cap (`None` in a closed loop).
    pub max_inflight: Option<u64>,
    /// httperf "Maximum connect burst length".
    pub max_connect_burst: u64,
    /// User CPU seconds consumed during the test.
    pub cpu_user_s: f64,
    /// System CPU seconds consumed during the test.
    pub cpu_system_s: f64,
    /// Wall clock (ms since the Unix epoch) at the Recorder's `start`.
    pub started_unix_ms: u64,
}

/// An open-loop connection that starts more than this after its scheduled instant (10 ms) was
/// held back by the generator itself (its CPU, or the scheduler giving that CPU to others), not
/// by the server: counted in `Counts::starts_late` and reported as a warning when it is not
/// rare. 1 ms flagged most points of a reproduction on a shared 2-core host, where a client
/// namespace waits a few ms for a core behind the servers and balancers: jitter that moves
/// latencies, not rates.
pub const LATE_START_NS: u64 = 10_000_000;

/// Longest run the per-second series and the reply-rate windows cover (7 days); events later
/// than this are still counted in every total, and land in the last series bucket.
pub const MAX_SERIES_SECS: u64 = 7 * 24 * 3600;

/// Initial capacity of the per-second series (10 minutes) so short runs never reallocate.
const SERIES_PRESIZE: usize = 600;

/// Highest value (microseconds) the latency histograms track: one hour. Larger values saturate.
pub const HIST_HIGH_US: u64 = 3_600_000_000;

/// Significant figures of every histogram.
pub const HIST_SIGFIG: u8 = 3;

/// A histogram with the fixed bounds every recorder and result uses (1 us .. 1 h, 3 digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are compile-time constants that satisfy new_with_bounds' preconditions
    // (low >= 1, high >= 2*low, sigfig <= 5); no input can make this fail.
    Histogram::new_with_bounds(1, HIST_HIGH_US, HIST_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Saturating conversion of a duration to whole nanoseconds.
pub(crate) fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Record a duration in microseconds (floor), saturating at the histogram's top.
#[inline]
fn hist_record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.min(HIST_HIGH_US));
}

/// One worker's running tallies. Create one per worker thread with the same `start`.
pub struct Recorder {
    start: Instant,
    /// httperf's first reply-rate sample fires at this offset from start (ns); later ones every
    /// 5 s. Depends on `--client I/N`; see [`Recorder::for_client`].
    first_sample_ns: u64,
    counts: Counts,
    /// Replies per status code 0..=599 (index = code); larger codes in `status_over`.
    status_codes: Vec<u64>,
    status_over: u64,
    errors: ErrorCounts,
    moments: MomentSet,
    hists: Histograms,
    /// httperf's 1-ms connection-lifetime bins (index LIFETIME_BINS = 100 s or more), for its
    /// median.
    lifetime_bins: Vec<u64>,
    series: Vec<SecondCounts>,
    /// Connections by start time, [`TIMELINE_BIN_MS`] bins (grown like `series`).
    timeline: Vec<TimelineBin>,
    /// Replies per httperf sample window (window 0 = [0, first_sample), then 5-s windows).
    windows: Vec<u64>,
}

impl Recorder {
    /// A recorder whose clock starts at `start`, sampling reply rate like `--client=0/1`.
    pub fn new(start: Instant) -> Self {
        Self::for_client(start, 0, 1)
    }

    /// A recorder for client `index` of `count` (`--client I/N`): httperf staggers the first
    /// reply-rate sample to `(I + 1) * 5 s / N` so clients sample at different times. A `count`
    /// of 0 is treated as 1 and an index >= count as count - 1.
    pub fn for_client(start: Instant, index: u32, count: u32) -> Self {
        let count = count.max(1);
        let index = index.min(count - 1);
        let first_sample_ns = (u64::from(index) + 1) * RATE_INTERVAL_NS / u64::from(count);
        Recorder {
            start,
            first_sample_ns: first_sample_ns.max(1),
            counts: Counts::default(),
            status_codes: vec![0; 600],
            status_over: 0,
            errors: ErrorCounts::default(),
            moments: MomentSet::default(),
            hists: Histograms {
                connect: new_histogram().into(),
                lifetime: new_histogram().into(),
                response: new_histogram().into(),
                transfer: new_histogram().into(),
                latency: new_histogram().into(),
                latency_uncorrected: new_histogram().into(),
                issue_lateness: new_histogram().into(),
            },
            // calloc'ed: untouched pages cost no RSS.
            lifetime_bins: vec![0; LIFETIME_BINS + 1],
            series: Vec::with_capacity(SERIES_PRESIZE),
            timeline: Vec::with_capacity(SERIES_PRESIZE * 10),
            windows: Vec::with_capacity(SERIES_PRESIZE / 5 + 2),
        }
    }

    /// The instant this recorder measures from.
    pub fn start(&self) -> Instant {
        self.start
    }

    #[inline]
    fn offset_ns(&self, at: Instant) -> u64 {
        dur_ns(at.saturating_duration_since(self.start))
    }

    #[inline]
    fn second(&mut self, at: Instant) -> &mut SecondCounts {
        let sec = (self.offset_ns(at) / 1_000_000_000).min(MAX_SERIES_SECS) as usize;
        if sec >= self.series.len() {
            self.series.resize(sec + 1, SecondCounts::default());
        }
        &mut self.series[sec]
    }

    /// The timeline bin of instant `at` (a connection's start, a reply, an error).
    #[inline]
    fn timeline_bin(&mut self, at: Instant) -> &mut TimelineBin {
        let cap = MAX_SERIES_SECS * 1000 / TIMELINE_BIN_MS;
        let i = (self.offset_ns(at) / (TIMELINE_BIN_MS * 1_000_000)).min(cap) as usize;
        if i >= self.timeline.len() {
            let from = self.timeline.len();
            self.timeline.resize(i + 1, TimelineBin::default());
            for (k, b) in self.timeline.iter_mut().enumerate().skip(from) {
                b.t_ms = k as u64 * TIMELINE_BIN_MS;
            }
        }
        &mut self.timeline[i]
    }

    #[inline]
    fn window_index(&self, ns: u64) -> usize {
        if ns < self.first_sample_ns {
            0
        } else {
            let w = 1 + (ns - self.first_sample_ns) / RATE_INTERVAL_NS;
            w.min(MAX_SERIES_SECS / 5 + 1) as usize
        }
    }

    /// A call became due by the schedule (offered load). Closed loop: called at send time.
    pub fn request_due(&mut self, scheduled: Instant) {
        self.counts.requests_offered += 1;
        self.second(scheduled).offered += 1;
    }

    /// The first request of a connection started to be written `lateness` after its scheduled
    /// instant (open loop: the arrival; closed loop: the connection start). Includes the
    /// connect; later calls on the connection have no schedule to be late against.
    pub fn issue_lateness(&mut self, lateness: Duration) {
        self.moments.issue_lateness.add(dur_ns(lateness));
        hist_record(&mut self.hists.issue_lateness.0, lateness);
    }

    /// An open-loop connection task started `lateness` after its scheduled instant: the
    /// generator's own delay (the connect is not in it, unlike issue lateness).
    pub fn start_lateness(&mut self, lateness: Duration) {
        let ns = dur_ns(lateness);
        self.moments.start_lateness.add(ns);
        if ns > LATE_START_NS {
            self.counts.starts_late += 1;
        }
    }

    /// An open-loop arrival found `--max-inflight` connections open and was not started: an
    /// attempted connection that failed with `fd-unavail`, as in httperf when it runs out of
    /// descriptors. Its first call was still offered.
    pub fn refused(&mut self, scheduled: Instant, at: Instant) {
        self.request_due(scheduled);
        self.counts.conns_attempted += 1;
        self.counts.conns_capped += 1;
        self.error(at, ErrorKind::FdUnavail);
        let b = self.timeline_bin(scheduled);
        b.started += 1;
        b.errors += 1;
        self.counts.conns_closed += 1;
    }

    /// A connect() was attempted.
    pub fn conn_started(&mut self, _at: Instant) {
        self.counts.conns_attempted += 1;
    }

    /// The TCP (and TLS) handshake completed after `connect_time`.
    pub fn conn_established(&mut self, _at: Instant, connect_time: Duration) {
        self.counts.conns_established += 1;
        self.moments.connect.add(dur_ns(connect_time));
        hist_record(&mut self.hists.connect.0, connect_time);
    }

    /// A request of `bytes` bytes was fully written.
    pub fn request_sent(&mut self, at: Instant, bytes: u64) {
        self.counts.requests_sent += 1;
        self.counts.request_bytes += bytes;
        self.second(at).issued += 1;
    }

    /// A reply was completely received.
    pub fn reply(&mut self, at: Instant, reply: &ReplyRecord) {
        let ns = self.offset_ns(at);
        match self.status_codes.get_mut(usize::from(reply.status)) {
            Some(n) => *n += 1,
            None => self.status_over += 1,
        }
        self.counts.replies_received += 1;
        self.counts.header_bytes += reply.header_bytes;
        self.counts.body_bytes += reply.body_bytes;
        self.counts.footer_bytes += reply.footer_bytes;
        self.moments.response.add(dur_ns(reply.response_time));
        self.moments.transfer.add(dur_ns(reply.transfer_time));
        self.moments.latency.add(dur_ns(reply.latency));
        self.moments
            .latency_uncorrected
            .add(dur_ns(reply.latency_uncorrected));
        hist_record(&mut self.hists.response.0, reply.response_time);
        hist_record(&mut self.hists.transfer.0, reply.transfer_time);
        hist_record(&mut self.hists.latency.0, reply.latency);
        hist_record(
            &mut self.hists.latency_uncorrected.0,
            reply.latency_uncorrected,
        );
        // httperf's reply counts (totals, rate samples) include only 1xx..5xx statuses; the
        // per-second series follows the same rule so merged reply rates agree with it.
        if StatusCounts::is_httperf_reply(reply.status) {
            let w = self.window_index(ns);
            if w >= self.windows.len() {
                self.windows.resize(w + 1, 0);
            }
            self.windows[w] += 1;
            self.second(at).replies += 1;
            self.timeline_bin(at).replies_at += 1;
        }
    }

    /// One error, counted as httperf does (client-timo counts connections, not calls).
    pub fn error(&mut self, at: Instant, kind: ErrorKind) {
        self.errors.add(kind, 1);
        self.second(at).errors += 1;
        self.timeline_bin(at).errors_at += 1;
    }

    /// A connection ended. `ok` = it ended without error. `replies` = replies received on it.
    ///
    /// Like httperf, the "Connection time" statistics (min/avg/max/median/stddev, histogram)
    /// cover connections that completed at least one reply (`replies > 0`); `ok` is counted
    /// separately (`conns_ok`).
    pub fn conn_closed(&mut self, at: Instant, lifetime: Duration, replies: u32, ok: bool) {
        self.counts.conns_closed += 1;
        let b = self.timeline_bin(at.checked_sub(lifetime).unwrap_or(at));
        b.started += 1;
        if !ok {
            b.errors += 1;
        } else if replies > 0 {
            b.replied += 1;
        }
        if ok {
            self.counts.conns_ok += 1;
        }
        if replies > 0 {
            let ns = dur_ns(lifetime);
            self.moments.lifetime.add(ns);
            hist_record(&mut self.hists.lifetime.0, lifetime);
            let bin = ((ns / 1_000_000) as usize).min(LIFETIME_BINS);
            self.lifetime_bins[bin] += 1;
        }
    }

    /// Raw bytes read from sockets (all framing included; informational, httperf's Net I/O uses
    /// the request, header and content byte counts).
    pub fn bytes_received(&mut self, n: u64) {
        self.counts.raw_bytes_received += n;
    }

    /// Fold another worker's recorder into this one (same `start`).
    ///
    /// Counts, moments, histograms, lifetime bins, series and reply-rate windows are summed
    /// index by index. Both recorders should share `start` and client sampling phase; if not,
    /// `other`'s per-second and per-window counts are added at their own indices (totals stay
    /// exact, the time placement is then `other`'s).
    pub fn absorb(&mut self, other: Recorder) {
        self.counts.add(&other.counts);
        for (a, b) in self.status_codes.iter_mut().zip(other.status_codes.iter()) {
            *a += *b;
        }
        self.status_over += other.status_over;
        self.errors.add_all(&other.errors);
        self.moments.merge(&other.moments);
        self.hists.add(&other.hists);
        for (a, b) in self
            .lifetime_bins
            .iter_mut()
            .zip(other.lifetime_bins.iter())
        {
            *a += *b;
        }
        if other.series.len() > self.series.len() {
            self.series
                .resize(other.series.len(), SecondCounts::default());
        }
        for (a, b) in self.series.iter_mut().zip(other.series.iter()) {
            a.add(b);
        }
        if other.windows.len() > self.windows.len() {
            self.windows.resize(other.windows.len(), 0);
        }
        for (a, b) in self.windows.iter_mut().zip(other.windows.iter()) {
            *a += *b;
        }
        crate::result::add_timeline(&mut self.timeline, &other.timeline, 0);
    }

    /// Close the books at `end` (httperf "test-duration" = end - start).
    ///
    /// Reply-rate windows that end after `end` (the final partial window) are dropped, as
    /// httperf's sampling timer never fires for them. The series is trimmed/padded to cover
    /// exactly `ceil(duration)` seconds (events after `end` stay in their bucket).
    pub fn finish(self, end: Instant, facts: RunFacts) -> RunResult {
        let duration_ns = dur_ns(end.saturating_duration_since(self.start));
        // Complete windows: window 0 ends at first_sample, window k at first_sample + 5k.
        let complete = if duration_ns < self.first_sample_ns {
            0
        } else {
            1 + (duration_ns - self.first_sample_ns) / RATE_INTERVAL_NS
        };
        let complete = (complete as usize).min(MAX_SERIES_SECS as usize / 5 + 2);
        let mut window_counts = self.windows;
        let dropped_replies = window_counts.iter().skip(complete).sum();
        window_counts.resize(complete, 0);
        let reply_rate = ReplyRateWindows {
            first_window_ns: self.first_sample_ns,
            interval_ns: RATE_INTERVAL_NS,
            counts: window_counts,
            dropped_replies,
        };
        let mut series = self.series;
        let covered = duration_ns.div_ceil(1_000_000_000).min(MAX_SERIES_SECS + 1) as usize;
        if series.len() < covered {
            series.resize(covered, SecondCounts::default());
        }
        let mut status = StatusCounts::default();
        for (code, n) in self.status_codes.iter().enumerate() {
            if *n > 0 {
                status.add_n(code as u16, *n);
            }
        }
        status.other += self.status_over;
        let lifetime_bins = self
            .lifetime_bins
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c))
            .collect();
        RunResult::from_parts(crate::result::Parts {
            facts,
            duration_ns,
            counts: self.counts,
            status,
            errors: self.errors,
            moments: self.moments,
            hists: self.hists,
            lifetime_bins,
            series,
            timeline: self.timeline,
            reply_rate,
        })
    }
}

/// Synthetic event streams shared by the results modules' tests.
#[cfg(test)]
pub(crate) mod testdata {
    use super::*;

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub fn facts(index: u32, count: u32) -> RunFacts {
        RunFacts {
            command_line: format!(
                "httperf --client={index}/{count} --server=127.0.0.1 --port=8080 --uri=/ --rate=1"
            ),
            config: serde_json::json!({
                "target": {"host": "127.0.0.1", "port": 8080, "tls": false, "uri": "/",
                           "host_header": "127.0.0.1:8080"},
                "method": "GET",
                "client": [index, count],
            }),
            client_index: index,
            client_count: count,
            max_concurrent: 1,
            max_inflight: Some(4096),
            max_connect_burst: 1,
            cpu_user_s: 1.5,
            cpu_system_s: 2.25,
            started_unix_ms: 1_700_000_000_000,
        }
    }

    fn reply(
        status: u16,
        header: u64,
        body: u64,
        footer: u64,
        resp: u64,
        xfer: u64,
    ) -> ReplyRecord {
        ReplyRecord {
            status,
            header_bytes: header,
            body_bytes: body,
            footer_bytes: footer,
            response_time: ms(resp),
            transfer_time: ms(xfer),
            latency: ms(resp + xfer + 1),
            latency_uncorrected: ms(resp + xfer),
        }
    }

    /// The hand-computed run of the httperf golden test: 4 connections, 4 replies (one 404),
    /// one connection refused, 11 s.
    pub fn golden_run() -> RunResult {
        let t0 = Instant::now();
        let at = |m: u64| t0 + ms(m);
        let mut r = Recorder::new(t0);
        // Connection A: two calls.
        r.conn_started(at(0));
        r.conn_established(at(1), ms(1));
        r.request_due(at(1));
        r.issue_lateness(ms(1));
        r.request_sent(at(1), 70);
        r.reply(at(3), &reply(200, 200, 75, 0, 1, 1));
        r.request_due(at(10));
        r.request_sent(at(10), 70);
        r.reply(at(12), &reply(200, 200, 75, 0, 1, 1));
        r.conn_closed(at(20), ms(20), 2, true);
        // Connection B: one 404.
        r.conn_started(at(1000));
        r.conn_established(at(1003), ms(3));
        r.request_due(at(1003));
        r.issue_lateness(ms(3));
        r.request_sent(at(1003), 70);
        r.reply(at(1010), &reply(404, 150, 150, 0, 5, 2));
        r.conn_closed(at(1011), ms(11), 1, true);
        // Connection C: refused.
        r.conn_started(at(2000));
        r.error(at(2000), ErrorKind::ConnRefused);
        r.conn_closed(at(2000), ms(0), 0, false);
        // Connection D: chunked reply with a 5-byte footer.
        r.conn_started(at(6000));
        r.conn_established(at(6002), ms(2));
        r.request_due(at(6002));
        r.issue_lateness(ms(2));
        r.request_sent(at(6002), 70);
        r.reply(at(6004), &reply(200, 200, 75, 5, 1, 2));
        r.conn_closed(at(6004), ms(4), 1, true);
        r.bytes_received(1500);
        r.finish(at(11_000), facts(0, 1))
    }

    /// Deterministic pseudo-random connections: (start ms, connect ms, calls, status, error?).
    pub struct Lcg(pub u64);
    impl Lcg {
        pub fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Feed connection number `i` of a pseudo-random stream into `r` (times relative to `t0`).
    pub fn feed_conn(r: &mut Recorder, t0: Instant, rng: &mut Lcg, i: u64) {
        let start_ms = i * 7; // 143 conn/s over the run
        let at = |m: u64| t0 + ms(m);
        if i % 50 == 49 {
            r.refused(at(start_ms), at(start_ms));
            return;
        }
        r.start_lateness(Duration::from_micros(i % 1500));
        r.conn_started(at(start_ms));
        if rng.next(10) == 0 {
            let kinds = [
                ErrorKind::ConnRefused,
                ErrorKind::ClientTimo,
                ErrorKind::ConnReset,
            ];
            r.error(at(start_ms + 1), kinds[rng.next(3) as usize]);
            r.conn_closed(at(start_ms + 1), ms(1), 0, false);
            return;
        }
        let connect = Duration::from_micros(50 + rng.next(3000));
        let mut now = start_ms + 1;
        r.conn_established(at(now), connect);
        let calls = 1 + rng.next(3) as u32;
        r.issue_lateness(connect + Duration::from_micros(rng.next(2000)));
        for _ in 0..calls {
            r.request_due(at(now));
            r.request_sent(at(now), 60 + rng.next(20));
            let resp = rng.next(40);
            let xfer = rng.next(3);
            now += resp + xfer;
            let status = [200, 200, 200, 301, 404, 503][rng.next(6) as usize];
            r.reply(
                at(now),
                &reply(status, 150 + rng.next(100), rng.next(5000), 0, resp, xfer),
            );
            r.bytes_received(400);
        }
        r.conn_closed(at(now), ms(now - start_ms), calls, true);
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;

    #[test]
    fn golden_run_exact_counts() {
        let r = golden_run();
        assert_eq!(r.duration_ns, 11_000_000_000);
        assert_eq!(r.counts.conns_attempted, 4);
        assert_eq!(r.counts.conns_established, 3);
        assert_eq!(r.counts.conns_closed, 4);
        assert_eq!(r.counts.conns_ok, 3);
        assert_eq!(r.counts.requests_offered, 4);
        assert_eq!(r.counts.requests_sent, 4);
        assert_eq!(r.counts.request_bytes, 280);
        assert_eq!(r.counts.header_bytes, 750);
        assert_eq!(r.counts.body_bytes, 375);
        assert_eq!(r.counts.footer_bytes, 5);
        assert_eq!(r.counts.raw_bytes_received, 1500);
        assert_eq!(r.replies(), 4);
        assert_eq!((r.status.s2xx, r.status.s4xx, r.status.other), (3, 1, 0));
        assert_eq!(r.status.codes.get(&200), Some(&3));
        assert_eq!(r.status.codes.get(&404), Some(&1));
        assert_eq!(r.errors.conn_refused, 1);
        assert_eq!(r.errors_total(), 1);
        assert_eq!(r.error_rate_percent(), 25.0);
        assert_eq!(r.error_rate_replies_percent(), Some(25.0));
        // Lifetimes 20, 11, 4 ms (the refused connection had no reply: excluded like httperf).
        let lt = r.moments.lifetime;
        assert_eq!((lt.count, lt.min_ns, lt.max_ns), (3, 4_000_000, 20_000_000));
        assert_eq!(lt.sum_ns, 35_000_000);
        assert_eq!(lt.sum_sq_ns2, (400 + 121 + 16) * 1_000_000_000_000u128);
        assert_eq!(r.lifetime_ms_bins, vec![(4, 1), (11, 1), (20, 1)]);
        assert!((r.lifetime_median_s() - 0.0115).abs() < 1e-12);
        assert_eq!(r.moments.connect.sum_ns, 6_000_000);
        assert_eq!(r.moments.connect.count, 3);
        assert_eq!(r.moments.transfer.sum_ns, 6_000_000);
        assert_eq!(r.moments.response.sum_ns, 8_000_000);
        // Windows [0,5 s) and [5,10 s); the run ends at 11 s, inside the third window.
        assert_eq!(r.reply_rate.counts, vec![3, 1]);
        assert_eq!(r.reply_rate.dropped_replies, 0);
        assert_eq!(r.reply_rate.samples(), vec![0.6, 0.2]);
        // Series: 11 seconds, offered/issued/replies/errors where they happened.
        assert_eq!(r.series.len(), 11);
        assert_eq!(
            (r.series[0].offered, r.series[0].issued, r.series[0].replies),
            (2, 2, 2)
        );
        assert_eq!((r.series[1].issued, r.series[1].replies), (1, 1));
        assert_eq!(r.series[2].errors, 1);
        assert_eq!(r.series[6].replies, 1);
        let total: u64 = r.series.iter().map(|s| s.replies).sum();
        assert_eq!(total, 4);
        // Histograms hold every sample.
        assert_eq!(r.histograms.latency.0.len(), 4);
        assert_eq!(r.histograms.connect.0.len(), 3);
        assert_eq!(r.histograms.lifetime.0.len(), 3);
        // HDR keeps 3 significant digits: 3000 us lies in the bucket [3000, 3001].
        assert_eq!(r.histograms.connect.0.max(), 3001);
        assert_eq!(r.summary.connect_ms.max, 3.0);
        // latency = resp + xfer + 1 ms: 3, 3, 8, 4 ms.
        assert_eq!(r.summary.latency_ms.p50, 3.001); // bucket [3000, 3001] us
        assert_eq!(r.summary.latency_ms.max, 8.0);
        assert_eq!(r.summary.latency_uncorrected_ms.max, 7.0);
        // Issue lateness: one sample per connection that sent (1, 3, 2 ms).
        let il = r.moments.issue_lateness;
        assert_eq!((il.count, il.min_ns, il.max_ns), (3, 1_000_000, 3_000_000));
        assert_eq!(il.sum_ns, 6_000_000);
        assert_eq!(r.histograms.issue_lateness.0.len(), 3);
        assert_eq!(r.summary.issue_lateness_ms.p50, 2.0);
        assert_eq!(r.summary.issue_lateness_ms.max, 3.0);
        assert_eq!(r.clients.len(), 1);
        assert_eq!(r.clients[0].index, 0);
    }

    #[test]
    fn client_offset_shifts_first_sample_like_httperf() {
        // --client=1/3: first sample at (1+1)*5/3 s = 3.333 s, then every 5 s.
        let t0 = Instant::now();
        let mut r = Recorder::for_client(t0, 1, 3);
        let ok = ReplyRecord {
            status: 200,
            ..Default::default()
        };
        for m in [100, 3_300, 3_400, 8_300, 8_400, 13_000] {
            r.reply(t0 + ms(m), &ok);
        }
        let res = r.finish(t0 + ms(13_000), facts(1, 3));
        assert_eq!(res.reply_rate.first_window_ns, 3_333_333_333);
        assert_eq!(res.reply_rate.counts, vec![2, 2]);
        assert_eq!(res.reply_rate.dropped_replies, 2);
        let s = res.reply_rate.samples();
        assert!((s[0] - 2.0 / 3.333_333_333).abs() < 1e-9);
        assert_eq!(s[1], 0.4);
    }

    #[test]
    fn short_run_has_no_sample_and_final_partial_window_is_dropped() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        r.reply(
            t0 + ms(10),
            &ReplyRecord {
                status: 200,
                ..Default::default()
            },
        );
        let res = r.finish(t0 + ms(4_999), facts(0, 1));
        assert!(res.reply_rate.counts.is_empty());
        assert_eq!(res.reply_rate.dropped_replies, 1);
        assert_eq!(res.reply_rate_avg(), 0.0);
        assert_eq!(res.summary.reply_rate.samples, 0);
        // Exactly 5 s: one complete sample.
        let mut r = Recorder::new(t0);
        r.reply(
            t0 + ms(10),
            &ReplyRecord {
                status: 200,
                ..Default::default()
            },
        );
        let res = r.finish(t0 + ms(5_000), facts(0, 1));
        assert_eq!(res.reply_rate.counts, vec![1]);
        assert_eq!(res.reply_rate_avg(), 0.2);
    }

    #[test]
    fn odd_statuses_and_extreme_times_do_not_panic() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0 + ms(1000));
        // Before start: bucket 0. Far future: capped bucket. Huge durations: saturated.
        r.request_due(t0);
        let huge = Duration::from_secs(10 * 365 * 86_400);
        let rec = ReplyRecord {
            status: 999,
            response_time: huge,
            transfer_time: huge,
            latency: huge,
            latency_uncorrected: huge,
            ..Default::default()
        };
        r.reply(t0 + huge, &rec);
        r.reply(
            t0 + ms(1500),
            &ReplyRecord {
                status: 0,
                ..Default::default()
            },
        );
        r.conn_established(t0, huge);
        r.conn_closed(t0 + huge, huge, 1, true);
        let res = r.finish(t0, facts(0, 1));
        assert_eq!(res.duration_ns, 0);
        assert_eq!(res.status.other, 2);
        assert_eq!(res.replies(), 0);
        assert_eq!(res.counts.replies_received, 2);
        assert_eq!(res.series[0].offered, 1);
        assert_eq!(
            res.histograms.latency.0.max(),
            res.histograms.latency.0.highest_equivalent(HIST_HIGH_US)
        );
        assert_eq!(res.lifetime_ms_bins, vec![(LIFETIME_BINS as u32, 1)]);
        assert_eq!(res.request_rate(), 0.0);
        assert!(res.series.len() as u64 <= MAX_SERIES_SECS + 1);
    }

    #[test]
    fn absorb_equals_one_recorder() {
        let t0 = Instant::now();
        let mut all = Recorder::new(t0);
        let mut parts = [Recorder::new(t0), Recorder::new(t0)];
        let (mut rng_a, mut rng_b) = (Lcg(7), Lcg(7));
        for i in 0..2000 {
            feed_conn(&mut all, t0, &mut rng_a, i);
            feed_conn(&mut parts[(i % 2) as usize], t0, &mut rng_b, i);
        }
        let [mut a, b] = parts;
        a.absorb(b);
        let end = t0 + ms(15_000);
        let x = all.finish(end, facts(0, 1));
        let y = a.finish(end, facts(0, 1));
        assert_eq!(x, y);
        assert!(x.replies() > 2000);
    }

    #[test]
    fn error_rates_edge_cases() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        r.error(t0, ErrorKind::FdUnavail);
        let res = r.finish(t0 + ms(10), facts(0, 1));
        assert_eq!(res.error_rate_percent(), 100.0);
        assert_eq!(res.error_rate_replies_percent(), None);
        let res = Recorder::new(t0).finish(t0, facts(0, 1));
        assert_eq!(res.error_rate_percent(), 0.0);
        assert_eq!(res.error_rate_replies_percent(), Some(0.0));
    }

    #[test]
    fn refused_arrivals_are_attempted_fd_unavail_connections() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        r.refused(t0, t0 + ms(1));
        r.refused(t0 + ms(1), t0 + ms(1));
        let res = r.finish(t0 + ms(10), facts(0, 1));
        assert_eq!(res.counts.conns_attempted, 2);
        assert_eq!(res.counts.conns_closed, 2);
        assert_eq!(res.counts.conns_capped, 2);
        assert_eq!(res.counts.requests_offered, 2);
        assert_eq!(res.counts.requests_sent, 0);
        assert_eq!(res.errors.fd_unavail, 2);
        assert_eq!(res.error_rate_percent(), 100.0);
        let w = &res.summary.generator_warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("2 of 2 connections (100.0 %)"), "{w:?}");
        assert!(w[0].contains("--max-inflight 4096"), "{w:?}");
    }

    #[test]
    fn late_starts_warn_only_past_one_percent() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        for _ in 0..199 {
            r.start_lateness(Duration::from_micros(50));
        }
        // 1 late start in 200 (0.5 %) is noise; exactly at the threshold is not late.
        r.start_lateness(Duration::from_nanos(LATE_START_NS + 1));
        r.start_lateness(Duration::from_nanos(LATE_START_NS));
        let res = r.finish(t0 + ms(10), facts(0, 1));
        assert_eq!(res.counts.starts_late, 1);
        assert!(res.summary.generator_warnings.is_empty());
        // A handful of late starts cannot bias a rate, even as a large share of a short run.
        let mut r = Recorder::new(t0);
        for i in 0..100u64 {
            r.start_lateness(ms(if i < 9 { 25 } else { 0 }));
        }
        let res = r.finish(t0 + ms(10), facts(0, 1));
        assert_eq!(res.counts.starts_late, 9);
        assert!(res.summary.generator_warnings.is_empty());
        let mut r = Recorder::new(t0);
        for i in 0..400u64 {
            r.start_lateness(ms(if i < 12 { 25 } else { 0 }));
        }
        let res = r.finish(t0 + ms(10), facts(0, 1));
        assert_eq!(res.counts.starts_late, 12);
        let w = &res.summary.generator_warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("12 connections (3.0 %) started more than 10 ms"),
            "{w:?}"
        );
        assert!(w[0].contains("worst 25.0 ms"), "{w:?}");
    }
}

#[cfg(test)]
mod timeline_tests {
    use super::testdata::golden_run;

    /// Connections land in the 100-ms bin of their start: replied, or errors.
    #[test]
    fn golden_run_timeline() {
        let r = golden_run();
        let got: Vec<(u64, u64, u64, u64)> = r
            .timeline
            .iter()
            .filter(|b| b.started > 0)
            .map(|b| (b.t_ms, b.started, b.replied, b.errors))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1, 1, 0),
                (1000, 1, 1, 0),
                (2000, 1, 0, 1),
                (6000, 1, 1, 0)
            ]
        );
        assert!(r
            .timeline
            .iter()
            .enumerate()
            .all(|(i, b)| b.t_ms == i as u64 * 100));
        // By event time: every reply and every error lands in the bin it happened in.
        let replies_at: u64 = r.timeline.iter().map(|b| b.replies_at).sum();
        let errors_at: u64 = r.timeline.iter().map(|b| b.errors_at).sum();
        assert_eq!((replies_at, errors_at), (r.replies(), r.errors_total()));
    }
}
