//! The serialisable result of a run (or of several merged client runs).
//!
//! A [`RunResult`] holds *exact* quantities (integer counts, integer-nanosecond sums and sums of
//! squares, HDR histograms, per-second counts, reply-rate window counts) from which every number
//! httperf prints is derived, so results from several client processes merge without loss
//! (see [`crate::merge`]). The [`Summary`] section holds derived, human-friendly numbers and is
//! recomputed from the exact part by [`RunResult::refresh_summary`] whenever the exact part changes.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::record::{ErrorKind, RunFacts};

/// Schema identifier written into every result file; `merge` and `read` refuse other schemas.
pub const RESULT_SCHEMA: &str = "loadgen-result/1";

/// httperf's reply-rate sampling interval (RATE_INTERVAL, 5 s) in nanoseconds.
pub const RATE_INTERVAL_NS: u64 = 5_000_000_000;

/// httperf's number of 1-ms connection-lifetime bins (MAX_LIFETIME 100 s / BIN_WIDTH 1 ms).
pub const LIFETIME_BINS: usize = 100_000;

/// Event counters. Merge: summed field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// connect() attempts (httperf "Total: connections").
    pub conns_attempted: u64,
    /// Handshakes completed (httperf num_connects, the "connect" average's divisor).
    pub conns_established: u64,
    /// Connections that ended (with or without error).
    pub conns_closed: u64,
    /// Connections that ended without error.
    pub conns_ok: u64,
    /// Calls the schedule made due (offered load).
    pub requests_offered: u64,
    /// Requests completely written (httperf "requests").
    pub requests_sent: u64,
    /// Sum of request sizes in bytes.
    pub request_bytes: u64,
    /// Replies completely received, any status (httperf's "replies" counts 1xx..5xx only: see
    /// [`RunResult::replies`]).
    pub replies_received: u64,
    /// Sum of reply header bytes.
    pub header_bytes: u64,
    /// Sum of reply content bytes.
    pub body_bytes: u64,
    /// Sum of reply footer (chunk framing/trailer) bytes.
    pub footer_bytes: u64,
    /// Raw bytes read from sockets.
    pub raw_bytes_received: u64,
    /// Open-loop arrivals refused because `--max-inflight` connections were open (each is also
    /// an attempted connection and an `fd-unavail` error); 0 in older files.
    #[serde(default)]
    pub conns_capped: u64,
    /// Open-loop connections the generator started more than 10 ms after their scheduled instant
    /// ([`crate::record::LATE_START_NS`]); 0 in older files.
    #[serde(default)]
    pub starts_late: u64,
}

impl Counts {
    /// Add `o` field by field.
    pub fn add(&mut self, o: &Counts) {
        self.conns_attempted = self.conns_attempted.saturating_add(o.conns_attempted);
        self.conns_established = self.conns_established.saturating_add(o.conns_established);
        self.conns_closed = self.conns_closed.saturating_add(o.conns_closed);
        self.conns_ok = self.conns_ok.saturating_add(o.conns_ok);
        self.requests_offered = self.requests_offered.saturating_add(o.requests_offered);
        self.requests_sent = self.requests_sent.saturating_add(o.requests_sent);
        self.request_bytes = self.request_bytes.saturating_add(o.request_bytes);
        self.replies_received = self.replies_received.saturating_add(o.replies_received);
        self.header_bytes = self.header_bytes.saturating_add(o.header_bytes);
        self.body_bytes = self.body_bytes.saturating_add(o.body_bytes);
        self.footer_bytes = self.footer_bytes.saturating_add(o.footer_bytes);
        self.raw_bytes_received = self.raw_bytes_received.saturating_add(o.raw_bytes_received);
        self.conns_capped = self.conns_capped.saturating_add(o.conns_capped);
        self.starts_late = self.starts_late.saturating_add(o.starts_late);
    }
}

/// Reply status counts. Merge: summed (classes, `other` and every code).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Replies with status 100..=199.
    #[serde(rename = "1xx")]
    pub s1xx: u64,
    /// Replies with status 200..=299.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// Replies with status 300..=399.
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    /// Replies with status 400..=499.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// Replies with status 500..=599.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    /// Replies with a status outside 100..=599 (httperf does not count them as replies).
    pub other: u64,
    /// Exact count per status code (100..=599).
    pub codes: BTreeMap<u16, u64>,
}

impl StatusCounts {
    /// Whether httperf counts a reply with this status in its totals (classes 1..=5).
    pub fn is_httperf_reply(status: u16) -> bool {
        (100..600).contains(&status)
    }

    /// Count `n` replies with `status`.
    pub fn add_n(&mut self, status: u16, n: u64) {
        match status {
            100..=199 => self.s1xx = self.s1xx.saturating_add(n),
            200..=299 => self.s2xx = self.s2xx.saturating_add(n),
            300..=399 => self.s3xx = self.s3xx.saturating_add(n),
            400..=499 => self.s4xx = self.s4xx.saturating_add(n),
            500..=599 => self.s5xx = self.s5xx.saturating_add(n),
            _ => {
                self.other = self.other.saturating_add(n);
                return;
            }
        }
        let c = self.codes.entry(status).or_insert(0);
        *c = c.saturating_add(n);
    }

    /// Add all of `o`'s counts.
    pub fn add_all(&mut self, o: &StatusCounts) {
        // Class counts follow from the codes; `other` is kept separately. A foreign file whose
        // classes disagree with its codes keeps its class counts (they are what httperf prints).
        self.s1xx = self.s1xx.saturating_add(o.s1xx);
        self.s2xx = self.s2xx.saturating_add(o.s2xx);
        self.s3xx = self.s3xx.saturating_add(o.s3xx);
        self.s4xx = self.s4xx.saturating_add(o.s4xx);
        self.s5xx = self.s5xx.saturating_add(o.s5xx);
        self.other = self.other.saturating_add(o.other);
        for (code, n) in &o.codes {
            let c = self.codes.entry(*code).or_insert(0);
            *c = c.saturating_add(*n);
        }
    }

    /// httperf's "total replies": classes 1xx..5xx.
    pub fn httperf_total(&self) -> u64 {
        [self.s2xx, self.s3xx, self.s4xx, self.s5xx]
            .iter()
            .fold(self.s1xx, |t, n| t.saturating_add(*n))
    }
}

/// Errors by httperf class. Merge: summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorCounts {
    /// Client timeouts (per connection).
    pub client_timo: u64,
    /// ETIMEDOUT.
    pub socket_timo: u64,
    /// ECONNREFUSED.
    pub conn_refused: u64,
    /// ECONNRESET / EPIPE.
    pub conn_reset: u64,
    /// EMFILE.
    pub fd_unavail: u64,
    /// EADDRNOTAVAIL.
    pub addr_unavail: u64,
    /// ENFILE.
    pub ftab_full: u64,
    /// Anything else.
    pub other: u64,
}

impl ErrorCounts {
    /// Count `n` errors of `kind`.
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        let slot = self.slot(kind);
        *slot = slot.saturating_add(n);
    }

    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::ClientTimo => &mut self.client_timo,
            ErrorKind::SocketTimo => &mut self.socket_timo,
            ErrorKind::ConnRefused => &mut self.conn_refused,
            ErrorKind::ConnReset => &mut self.conn_reset,
            ErrorKind::FdUnavail => &mut self.fd_unavail,
            ErrorKind::AddrUnavail => &mut self.addr_unavail,
            ErrorKind::FtabFull => &mut self.ftab_full,
            ErrorKind::Other => &mut self.other,
        }
    }

    /// The count of one class.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        match kind {
            ErrorKind::ClientTimo => self.client_timo,
            ErrorKind::SocketTimo => self.socket_timo,
            ErrorKind::ConnRefused => self.conn_refused,
            ErrorKind::ConnReset => self.conn_reset,
            ErrorKind::FdUnavail => self.fd_unavail,
            ErrorKind::AddrUnavail => self.addr_unavail,
            ErrorKind::FtabFull => self.ftab_full,
            ErrorKind::Other => self.other,
        }
    }

    /// Add all of `o`'s counts.
    pub fn add_all(&mut self, o: &ErrorCounts) {
        for k in ErrorKind::ALL {
            self.add(k, o.get(k));
        }
    }

    /// httperf's "Errors: total".
    pub fn total(&self) -> u64 {
        ErrorKind::ALL
            .iter()
            .fold(0u64, |t, k| t.saturating_add(self.get(*k)))
    }
}

/// Exact running moments of a duration, in integer nanoseconds. Merge: counts and sums added,
/// min of mins, max of maxes (all exact, order-independent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample (0 when `count` is 0).
    pub min_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Sum of samples.
    pub sum_ns: u128,
    /// Sum of squared samples (ns^2).
    pub sum_sq_ns2: u128,
}

impl Moments {
    /// Add one sample.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.sum_sq_ns2 += u128::from(ns) * u128::from(ns);
    }

    /// Fold another set of moments in.
    pub fn merge(&mut self, o: &Moments) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.min_ns < self.min_ns {
            self.min_ns = o.min_ns;
        }
        self.max_ns = self.max_ns.max(o.max_ns);
        self.count = self.count.saturating_add(o.count);
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
        self.sum_sq_ns2 = self.sum_sq_ns2.saturating_add(o.sum_sq_ns2);
    }

    /// Mean in seconds (0 when empty).
    pub fn mean_s(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64 / 1e9
        }
    }

    /// Sum in seconds.
    pub fn sum_s(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// httperf's STDDEV (sample standard deviation, 0 for fewer than 2 samples), in seconds.
    pub fn stddev_s(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = u128::from(self.count);
        // n*s2 - s^2 is exact and non-negative in integers; fall back to floats on overflow.
        let var_ns2 = match (
            n.checked_mul(self.sum_sq_ns2),
            self.sum_ns.checked_mul(self.sum_ns),
        ) {
            (Some(a), Some(b)) => a.saturating_sub(b) as f64 / (n as f64 * (n - 1) as f64),
            _ => {
                let (s, s2, nf) = (self.sum_ns as f64, self.sum_sq_ns2 as f64, n as f64);
                ((s2 - s * s / nf) / (nf - 1.0)).max(0.0)
            }
        };
        var_ns2.sqrt() / 1e9
    }
}

/// An HDR histogram of microseconds, serialised in JSON as base64 of the V2-deflate encoding
/// (the HdrHistogram interchange format) so that merge is exact. Merge: counts added.
#[derive(Clone, Debug)]
pub struct Hist(pub Histogram<u64>);

impl PartialEq for Hist {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl From<Histogram<u64>> for Hist {
    fn from(h: Histogram<u64>) -> Self {
        Hist(h)
    }
}

impl Default for Hist {
    fn default() -> Self {
        Hist(crate::record::new_histogram())
    }
}

impl Hist {
    /// Add `o`'s counts. The receiving histogram grows if `o` covers a larger range (possible
    /// only for histograms read from foreign files), so no count is ever dropped.
    pub fn add(&mut self, o: &Hist) {
        if self.0.add(&o.0).is_err() {
            self.0.auto(true);
            // With auto-resize on, add only fails if o's values exceed u64 ranges, which the
            // deserializer has already rejected; fall back to per-value recording to be total.
            if self.0.add(&o.0).is_err() {
                for v in o.0.iter_recorded() {
                    self.0
                        .saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
            self.0.auto(false);
        }
    }

    /// Value at `quantile` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.value_at_quantile(q) as f64 / 1e3
        }
    }

    /// Highest recorded value in milliseconds (highest equivalent value of its bucket).
    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.max() as f64 / 1e3
        }
    }

    /// The V2-deflate + base64 text form.
    pub fn to_base64(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| format!("cannot encode histogram: {e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Parse the V2(-deflate) + base64 text form.
    pub fn from_base64(s: &str) -> Result<Hist, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| format!("histogram is not valid base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram is not a valid HdrHistogram V2 encoding: {e:?}"))?;
        Ok(Hist(h))
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_base64().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Hist::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// The latency histograms (microseconds). Merge: each added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    /// connect() start -> handshake complete.
    pub connect: Hist,
    /// Connection lifetime (connections with at least one reply, as httperf).
    pub lifetime: Hist,
    /// httperf "response": last request byte -> first reply byte.
    pub response: Hist,
    /// httperf "transfer": first reply byte -> last reply byte.
    pub transfer: Hist,
    /// Scheduled send -> last reply byte (coordinated-omission corrected).
    pub latency: Hist,
    /// Actual send -> last reply byte.
    pub latency_uncorrected: Hist,
    /// Issue lateness: scheduled instant -> start of the request write, one sample per
    /// connection that got to send (its first call; includes the connect). Absent (empty) in
    /// files written before this field existed.
    #[serde(default)]
    pub issue_lateness: Hist,
}

impl Histograms {
    /// Add each of `o`'s histograms to ours.
    pub fn add(&mut self, o: &Histograms) {
        self.connect.add(&o.connect);
        self.lifetime.add(&o.lifetime);
        self.response.add(&o.response);
        self.transfer.add(&o.transfer);
        self.latency.add(&o.latency);
        self.latency_uncorrected.add(&o.latency_uncorrected);
        self.issue_lateness.add(&o.issue_lateness);
    }
}

/// Exact moments (integer ns) of each timed quantity. Merge: [`Moments::merge`] each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MomentSet {
    /// Connect time (httperf "Connection time \[ms\]: connect" = mean).
    pub connect: Moments,
    /// Lifetime of connections with >= 1 reply (httperf "Connection time" min/avg/max/stddev).
    pub lifetime: Moments,
    /// httperf "Reply time: response".
    pub response: Moments,
    /// httperf "Reply time: transfer".
    pub transfer: Moments,
    /// Corrected latency.
    pub latency: Moments,
    /// Uncorrected latency.
    pub latency_uncorrected: Moments,
    /// Issue lateness (see [`Histograms::issue_lateness`]); zero in older files.
    #[serde(default)]
    pub issue_lateness: Moments,
    /// Open loop: scheduled instant -> the connection task starts (the generator's own delay,
    /// without the connect); zero in older files.
    #[serde(default)]
    pub start_lateness: Moments,
}

impl MomentSet {
    /// Merge each quantity's moments.
    pub fn merge(&mut self, o: &MomentSet) {
        self.connect.merge(&o.connect);
        self.lifetime.merge(&o.lifetime);
        self.response.merge(&o.response);
        self.transfer.merge(&o.transfer);
        self.latency.merge(&o.latency);
        self.latency_uncorrected.merge(&o.latency_uncorrected);
        self.issue_lateness.merge(&o.issue_lateness);
        self.start_lateness.merge(&o.start_lateness);
    }
}

/// Width of one [`TimelineBin`], ms.
pub const TIMELINE_BIN_MS: u64 = 100;

/// Connections by start time, one [`TIMELINE_BIN_MS`] bin (what a failover
/// is measured with: which connections, by when they started, got an
/// answer), plus replies and errors by the time they happened. Merge:
/// summed at the wall-clock-aligned bin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineBin {
    /// Start of the bin, ms from the start of the run.
    pub t_ms: u64,
    /// Connections attempted (scheduled, for refused arrivals) in the bin.
    pub started: u64,
    /// Those that ended without error after at least one reply.
    pub replied: u64,
    /// Those that ended in an error.
    pub errors: u64,
    /// Replies (1xx..5xx) received during the bin, on any connection (by
    /// event time: what a closed loop's long-lived connections show); 0 in
    /// older files.
    #[serde(default)]
    pub replies_at: u64,
    /// Errors that occurred during the bin (by event time); 0 in older files.
    #[serde(default)]
    pub errors_at: u64,
}

impl TimelineBin {
    /// Add `o`'s counts (not its `t_ms`).
    pub fn add(&mut self, o: &TimelineBin) {
        self.started = self.started.saturating_add(o.started);
        self.replied = self.replied.saturating_add(o.replied);
        self.errors = self.errors.saturating_add(o.errors);
        self.replies_at = self.replies_at.saturating_add(o.replies_at);
        self.errors_at = self.errors_at.saturating_add(o.errors_at);
    }
}

/// Adds `bins` (of a run that started `shift_ms` after the merged one) into
/// `into`, aligned to the bin grid; `into` grows as needed (bounded by the
/// series cap) and keeps `t_ms` consistent.
pub fn add_timeline(into: &mut Vec<TimelineBin>, bins: &[TimelineBin], shift_ms: u64) {
    let cap = (crate::record::MAX_SERIES_SECS * 1000 / TIMELINE_BIN_MS) as usize;
    for b in bins {
        let i = ((b.t_ms + shift_ms + TIMELINE_BIN_MS / 2) / TIMELINE_BIN_MS) as usize;
        let i = i.min(cap);
        if i >= into.len() {
            let from = into.len();
            into.resize(i + 1, TimelineBin::default());
            for (k, x) in into.iter_mut().enumerate().skip(from) {
                x.t_ms = k as u64 * TIMELINE_BIN_MS;
            }
        }
        into[i].add(b);
    }
}

/// Counts of one second of the run. Merge: summed at the wall-clock-aligned index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondCounts {
    /// Calls that became due (offered load).
    pub offered: u64,
    /// Requests completely written.
    pub issued: u64,
    /// Replies completely received with a 1xx..5xx status (httperf's replies).
    pub replies: u64,
    /// Errors.
    pub errors: u64,
}

impl SecondCounts {
    /// Add `o` field by field.
    pub fn add(&mut self, o: &SecondCounts) {
        self.offered = self.offered.saturating_add(o.offered);
        self.issued = self.issued.saturating_add(o.issued);
        self.replies = self.replies.saturating_add(o.replies);
        self.errors = self.errors.saturating_add(o.errors);
    }
}

/// httperf's reply-rate samples as exact window counts: window 0 spans
/// `[0, first_window_ns)`, window k >= 1 spans `[first + (k-1)*interval, first + k*interval)`;
/// only complete windows are kept (httperf drops the final partial one). Sample k's rate is
/// `counts[k] / window length`. Merge: rebuilt from the merged per-second series on a 5-s grid
/// starting at the merged start (i.e. the aggregate reply rate of all clients in the same 5 s
/// of wall clock), see [`crate::merge`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRateWindows {
    /// Length of window 0 (httperf: `(I + 1) * 5 s / N` for `--client I/N`).
    pub first_window_ns: u64,
    /// Length of every later window (5 s).
    pub interval_ns: u64,
    /// Replies (status 1xx..5xx) per complete window.
    pub counts: Vec<u64>,
    /// Replies that fell after the last complete window (not sampled).
    pub dropped_replies: u64,
}

impl ReplyRateWindows {
    /// The reply rate of each sample, replies/s.
    pub fn samples(&self) -> Vec<f64> {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let len_ns = if k == 0 {
                    self.first_window_ns
                } else {
                    self.interval_ns
                };
                if len_ns == 0 {
                    0.0
                } else {
                    *c as f64 * 1e9 / len_ns as f64
                }
            })
            .collect()
    }

    /// httperf's min/avg/max/stddev over the samples.
    pub fn stats(&self) -> RateStats {
        let samples = self.samples();
        let n = samples.len();
        if n == 0 {
            return RateStats::default();
        }
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        let (mut min, mut max) = (f64::MAX, 0.0f64);
        for r in &samples {
            sum += r;
            sum2 += r * r;
            min = min.min(*r);
            max = max.max(*r);
        }
        let nf = n as f64;
        let stddev = if n < 2 {
            0.0
        } else {
            ((sum2 - sum * sum / nf) / (nf - 1.0)).max(0.0).sqrt()
        };
        RateStats {
            min,
            avg: sum / nf,
            max,
            stddev,
            samples: n as u64,
        }
    }
}

/// Summary statistics of a rate's samples (httperf's "Reply rate" line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateStats {
    /// Smallest sample (0 when none).
    pub min: f64,
    /// Mean of the samples (0 when none).
    pub avg: f64,
    /// Largest sample.
    pub max: f64,
    /// Sample standard deviation (0 for fewer than 2 samples).
    pub stddev: f64,
    /// Number of samples.
    pub samples: u64,
}

/// Percentiles for humans, in milliseconds: p50..p999 from the HDR histograms (3 significant
/// digits: the top of the percentile's bucket, capped at the exact max), max exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// Read the percentiles of a histogram; `max` is the exact maximum from `moments`, and no
    /// percentile is reported above it (an HDR bucket's top can exceed the largest sample).
    pub fn of(h: &Hist, moments: &Moments) -> Percentiles {
        let max = moments.max_ns as f64 / 1e6;
        let q = |q: f64| h.quantile_ms(q).min(max);
        Percentiles {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max,
        }
    }
}

/// One client process's facts (a merged result lists all of them). Merge: concatenated,
/// sorted by index; a duplicated index is an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `--client I/N`: I.
    pub index: u32,
    /// `--client I/N`: N.
    pub count: u32,
    /// The command line httperf would print.
    pub command_line: String,
    /// Wall clock at start (ms since the epoch).
    pub started_unix_ms: u64,
    /// Its test-duration in ns.
    pub duration_ns: u64,
    /// Its max concurrent connections.
    pub max_concurrent: u64,
    /// Its `--max-inflight` cap (open loop; `None` in a closed loop or an older file).
    #[serde(default)]
    pub max_inflight: Option<u64>,
    /// Its maximum connect burst length.
    pub max_connect_burst: u64,
    /// Its user CPU seconds.
    pub cpu_user_s: f64,
    /// Its system CPU seconds.
    pub cpu_system_s: f64,
}

/// CPU time consumed. Merge: summed (percentages are then relative to the merged duration and
/// may exceed 100 %).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub system_s: f64,
}

/// Derived numbers for humans and scripts; recomputed from the exact fields by
/// [`RunResult::refresh_summary`] (never merged).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// httperf "test-duration" in seconds.
    pub test_duration_s: f64,
    /// httperf "replies" (1xx..5xx).
    pub replies: u64,
    /// httperf "Errors: total".
    pub errors_total: u64,
    /// errors / connections attempted * 100 (primary error rate).
    pub error_rate_percent: f64,
    /// errors / replies * 100 (autobench's definition); `None` when there are errors but no
    /// replies (undefined), 0 when neither.
    pub error_rate_replies_percent: Option<f64>,
    /// Connections attempted per second.
    pub connection_rate: f64,
    /// Requests sent per second.
    pub request_rate: f64,
    /// httperf's sampled reply rate.
    pub reply_rate: RateStats,
    /// Each sample's rate (replies/s).
    pub reply_rate_samples: Vec<f64>,
    /// httperf "Net I/O" in KB/s (1024 B): (request + header + content bytes) / duration.
    pub net_io_kb_s: f64,
    /// httperf "Net I/O" in 10^6 bit/s.
    pub net_io_mbps: f64,
    /// Connect time percentiles (ms).
    pub connect_ms: Percentiles,
    /// Response latency, coordinated-omission corrected (scheduled send -> last byte), ms.
    pub latency_ms: Percentiles,
    /// Response latency, uncorrected (actual send -> last byte), ms.
    pub latency_uncorrected_ms: Percentiles,
    /// httperf "response" time (last request byte -> first reply byte) percentiles, ms.
    pub response_ms: Percentiles,
    /// How late the generator itself issued scheduled calls (scheduled instant -> request
    /// write start, including the connect), ms. All zero for files without the data.
    #[serde(default)]
    pub issue_lateness_ms: Percentiles,
    /// [`RunResult::generator_warnings`]: where the generator, not the server, was the limit.
    #[serde(default)]
    pub generator_warnings: Vec<String>,
}

/// The complete result of one client run or of a merge of several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Always [`RESULT_SCHEMA`].
    pub schema: String,
    /// "loadgen X.Y.Z" that produced it.
    pub generator: String,
    /// The command line httperf would print (merged: client 0's, or the lowest index).
    pub command_line: String,
    /// The validated configuration (merged: client 0's / the lowest index's).
    pub config: serde_json::Value,
    /// Every client process that contributed (one entry unless merged).
    pub clients: Vec<ClientInfo>,
    /// Wall clock at start, ms since the epoch (merged: the earliest start).
    pub started_unix_ms: u64,
    /// httperf "test-duration" in ns (merged: latest end - earliest start).
    pub duration_ns: u64,
    /// Max concurrent connections (merged: sum of clients' maxima, an upper bound).
    pub max_concurrent: u64,
    /// httperf "Maximum connect burst length" (merged: max).
    pub max_connect_burst: u64,
    /// CPU time.
    pub cpu: Cpu,
    /// Event counters.
    pub counts: Counts,
    /// Reply status counts.
    pub status: StatusCounts,
    /// Errors by class.
    pub errors: ErrorCounts,
    /// Exact moments of each timed quantity.
    pub moments: MomentSet,
    /// httperf's 1-ms lifetime bins, sparse `[bin, count]` (bin 100000 = 100 s or longer).
    pub lifetime_ms_bins: Vec<(u32, u64)>,
    /// Per-second counts; element i covers `[started + i s, started + (i+1) s)`.
    pub series: Vec<SecondCounts>,
    /// Connections by start time in [`TIMELINE_BIN_MS`] bins (empty in
    /// results of older versions).
    #[serde(default)]
    pub timeline: Vec<TimelineBin>,
    /// httperf reply-rate sample windows.
    pub reply_rate: ReplyRateWindows,
    /// HDR histograms (microseconds), exact to merge.
    pub histograms: Histograms,
    /// Derived numbers (recomputed, not merged).
    pub summary: Summary,
}

/// Everything `Recorder::finish` hands over to build a result.
pub(crate) struct Parts {
    pub facts: RunFacts,
    pub duration_ns: u64,
    pub counts: Counts,
    pub status: StatusCounts,
    pub errors: ErrorCounts,
    pub moments: MomentSet,
    pub hists: Histograms,
    pub lifetime_bins: Vec<(u32, u64)>,
    pub series: Vec<SecondCounts>,
    pub timeline: Vec<TimelineBin>,
    pub reply_rate: ReplyRateWindows,
}

impl RunResult {
    /// Assemble a single-client result and compute its summary.
    pub(crate) fn from_parts(p: Parts) -> RunResult {
        let f = p.facts;
        let client = ClientInfo {
            index: f.client_index,
            count: f.client_count.max(1),
            command_line: f.command_line.clone(),
            started_unix_ms: f.started_unix_ms,
            duration_ns: p.duration_ns,
            max_concurrent: f.max_concurrent,
            max_inflight: f.max_inflight,
            max_connect_burst: f.max_connect_burst,
            cpu_user_s: f.cpu_user_s,
            cpu_system_s: f.cpu_system_s,
        };
        let mut r = RunResult {
            schema: RESULT_SCHEMA.to_string(),
            generator: generator_name(),
            command_line: f.command_line,
            config: f.config,
            clients: vec![client],
            started_unix_ms: f.started_unix_ms,
            duration_ns: p.duration_ns,
            max_concurrent: f.max_concurrent,
            max_connect_burst: f.max_connect_burst,
            cpu: Cpu {
                user_s: f.cpu_user_s,
                system_s: f.cpu_system_s,
            },
            counts: p.counts,
            status: p.status,
            errors: p.errors,
            moments: p.moments,
            lifetime_ms_bins: p.lifetime_bins,
            series: p.series,
            timeline: p.timeline,
            reply_rate: p.reply_rate,
            histograms: p.hists,
            summary: Summary::default(),
        };
        r.refresh_summary();
        r
    }

    /// Recompute [`RunResult::summary`] from the exact fields.
    pub fn refresh_summary(&mut self) {
        let samples = self.reply_rate.samples();
        let d = self.duration_s();
        let net = self.net_io_bytes() as f64;
        self.summary = Summary {
            test_duration_s: d,
            replies: self.replies(),
            errors_total: self.errors_total(),
            error_rate_percent: self.error_rate_percent(),
            error_rate_replies_percent: self.error_rate_replies_percent(),
            connection_rate: per_s(self.counts.conns_attempted as f64, d),
            request_rate: self.request_rate(),
            reply_rate: self.reply_rate.stats(),
            reply_rate_samples: samples,
            net_io_kb_s: per_s(net, d) / 1024.0,
            net_io_mbps: per_s(8e-6 * net, d),
            connect_ms: Percentiles::of(&self.histograms.connect, &self.moments.connect),
            latency_ms: Percentiles::of(&self.histograms.latency, &self.moments.latency),
            latency_uncorrected_ms: Percentiles::of(
                &self.histograms.latency_uncorrected,
                &self.moments.latency_uncorrected,
            ),
            response_ms: Percentiles::of(&self.histograms.response, &self.moments.response),
            issue_lateness_ms: Percentiles::of(
                &self.histograms.issue_lateness,
                &self.moments.issue_lateness,
            ),
            generator_warnings: Vec::new(),
        };
        self.summary.generator_warnings = self.generator_warnings();
    }

    /// Why the generator, rather than the server, may have shaped this run (as wrk2 warns):
    /// arrivals refused by the in-flight cap, and connections the generator itself started
    /// late. Empty when neither happened (late starts count from 10 connections and 1 %).
    pub fn generator_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let attempted = self.counts.conns_attempted.max(1) as f64;
        let capped = self.counts.conns_capped;
        if capped > 0 {
            let caps: Vec<u64> = self.clients.iter().filter_map(|c| c.max_inflight).collect();
            let cap = match caps.as_slice() {
                [] => "the --max-inflight cap".to_string(),
                [one] => format!("--max-inflight {one}"),
                many => format!(
                    "--max-inflight ({} per client, {} in all)",
                    many.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join("/"),
                    many.iter().sum::<u64>()
                ),
            };
            out.push(format!(
                "{capped} of {} connections ({:.1} %) were not started because {cap} connections \
                 were already open; they count as fd-unavail errors. Connections were offered \
                 faster than the server completed them; raise --max-inflight to queue more.",
                self.counts.conns_attempted,
                capped as f64 * 100.0 / attempted
            ));
        }
        let late = self.counts.starts_late;
        let started = self.moments.start_lateness.count.max(1) as f64;
        if late >= 10 && late as f64 > 0.01 * started {
            out.push(format!(
                "{late} connections ({:.1} %) started more than {} ms after their scheduled \
                 instant (worst {:.1} ms): the generator itself was held back (its CPU, or the \
                 scheduler), so load arrived later and burstier than scheduled and latencies \
                 include the delay; use more --threads or client processes, or a lower rate.",
                late as f64 * 100.0 / started,
                crate::record::LATE_START_NS / 1_000_000,
                self.moments.start_lateness.max_ns as f64 / 1e6
            ));
        }
        out
    }

    /// httperf "test-duration" in seconds.
    pub fn duration_s(&self) -> f64 {
        self.duration_ns as f64 / 1e9
    }

    /// httperf's "replies": replies with a 1xx..5xx status.
    pub fn replies(&self) -> u64 {
        self.status.httperf_total()
    }

    /// httperf's "Errors: total".
    pub fn errors_total(&self) -> u64 {
        self.errors.total()
    }

    /// Primary error rate: errors / connections attempted * 100. With no connection attempted
    /// it is 100 if there were errors (nothing could even start), else 0.
    pub fn error_rate_percent(&self) -> f64 {
        let e = self.errors_total();
        match self.counts.conns_attempted {
            0 if e > 0 => 100.0,
            0 => 0.0,
            c => e as f64 * 100.0 / c as f64,
        }
    }

    /// autobench's error rate: errors / replies * 100; `None` when there are errors but no
    /// replies (the ratio is undefined), 0 with neither.
    pub fn error_rate_replies_percent(&self) -> Option<f64> {
        let e = self.errors_total();
        match self.replies() {
            0 if e > 0 => None,
            0 => Some(0.0),
            r => Some(e as f64 * 100.0 / r as f64),
        }
    }

    /// httperf's sampled average reply rate (0 if no sample).
    pub fn reply_rate_avg(&self) -> f64 {
        self.reply_rate.stats().avg
    }

    /// Requests sent / test-duration.
    pub fn request_rate(&self) -> f64 {
        per_s(self.counts.requests_sent as f64, self.duration_s())
    }

    /// Bytes httperf's Net I/O counts: request bytes + reply header + reply content bytes.
    pub fn net_io_bytes(&self) -> u64 {
        self.counts
            .request_bytes
            .saturating_add(self.counts.header_bytes)
            .saturating_add(self.counts.body_bytes)
    }

    /// httperf's connection-lifetime median in seconds: centre of the first 1-ms bin at which
    /// the cumulative count reaches half the lifetimes (0 if none). One deliberate difference:
    /// lifetimes of 100 s or more share an overflow bin that *is* counted (median 100000.5 ms),
    /// where httperf 0.9.0 writes past its array and never reaches them (prints 0).
    pub fn lifetime_median_s(&self) -> f64 {
        let n = self.moments.lifetime.count;
        if n == 0 {
            return 0.0;
        }
        let mut cum = 0u64;
        for (bin, c) in &self.lifetime_ms_bins {
            cum = cum.saturating_add(*c);
            if cum as f64 >= 0.5 * n as f64 {
                return (f64::from(*bin) + 0.5) * 1e-3;
            }
        }
        0.0
    }
}

/// `x / d`, or 0 for a zero duration (httperf would print inf/nan; a zero-length run has no rate).
fn per_s(x: f64, d: f64) -> f64 {
    if d > 0.0 {
        x / d
    } else {
        0.0
    }
}

/// `"loadgen <version>"`: the `generator` field of results.
pub fn generator_name() -> String {
    format!("loadgen {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_and_result_are_send() {
        fn send<T: Send>() {}
        send::<crate::record::Recorder>();
        send::<RunResult>();
    }

    #[test]
    fn moments_match_httperf_formulas() {
        let mut m = Moments::default();
        assert_eq!((m.mean_s(), m.stddev_s()), (0.0, 0.0));
        for v in [20_000_000u64, 11_000_000, 4_000_000] {
            m.add(v);
        }
        assert_eq!((m.count, m.min_ns, m.max_ns), (3, 4_000_000, 20_000_000));
        // Sample standard deviation of 20, 11, 4 ms: sqrt(64.333...) ms.
        assert!((m.stddev_s() - 64.333_333_333_333f64.sqrt() / 1e3).abs() < 1e-12);
        let mut one = Moments::default();
        one.add(7);
        assert_eq!(one.stddev_s(), 0.0);
        // Merge is exact and order-independent.
        let (mut a, mut b) = (Moments::default(), Moments::default());
        a.add(20_000_000);
        b.add(11_000_000);
        b.add(4_000_000);
        let mut ab = a;
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        assert_eq!(ab, m);
        assert_eq!(ba, m);
        let mut e = Moments::default();
        e.merge(&Moments::default());
        assert_eq!(e, Moments::default());
        e.merge(&m);
        assert_eq!(e, m);
        // Overflowing integer variance falls back to floats without panicking.
        let huge = Moments {
            count: 3,
            min_ns: 0,
            max_ns: u64::MAX,
            sum_ns: u128::MAX,
            sum_sq_ns2: u128::MAX,
        };
        assert!(huge.stddev_s().is_finite());
    }

    #[test]
    fn u128_sums_survive_json() {
        let m = Moments {
            count: 2,
            min_ns: 1,
            max_ns: u64::MAX,
            sum_ns: u128::from(u64::MAX) + 1,
            sum_sq_ns2: u128::MAX,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains("340282366920938463463374607431768211455"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Moments>(&text).unwrap(), m);
    }

    #[test]
    fn histogram_text_form_round_trips_and_rejects_garbage() {
        let mut h = Hist::default();
        for v in [1u64, 5, 900, 2_000_000, 3_600_000_000] {
            h.0.record(v).unwrap();
        }
        let text = h.to_base64().unwrap();
        assert_eq!(Hist::from_base64(&text).unwrap(), h);
        assert!(Hist::from_base64("***")
            .unwrap_err()
            .contains("not valid base64"));
        assert!(Hist::from_base64("AAAA")
            .unwrap_err()
            .contains("not a valid HdrHistogram V2 encoding"));
        // Adding a histogram with a wider range grows ours instead of dropping counts.
        let mut wide = Hist(Histogram::new_with_bounds(1, u64::MAX / 4, 3).unwrap());
        wide.0.record(u64::MAX / 8).unwrap();
        h.add(&wide);
        assert_eq!(h.0.len(), 6);
    }

    #[test]
    fn status_classes_and_codes() {
        let mut s = StatusCounts::default();
        for (code, n) in [
            (200, 3),
            (204, 1),
            (404, 2),
            (99, 1),
            (600, 1),
            (199, 1),
            (503, 1),
        ] {
            s.add_n(code, n);
        }
        assert_eq!(
            (s.s1xx, s.s2xx, s.s3xx, s.s4xx, s.s5xx, s.other),
            (1, 4, 0, 2, 1, 2)
        );
        assert_eq!(s.httperf_total(), 8);
        assert_eq!(s.codes.len(), 5);
        let mut t = s.clone();
        t.add_all(&s);
        assert_eq!(t.codes[&200], 6);
        assert_eq!(t.other, 4);
        assert!(StatusCounts::is_httperf_reply(100) && !StatusCounts::is_httperf_reply(600));
    }

    #[test]
    fn reply_rate_stats_like_httperf() {
        let w = ReplyRateWindows {
            first_window_ns: 2_500_000_000,
            interval_ns: RATE_INTERVAL_NS,
            counts: vec![1000, 4000, 5000],
            dropped_replies: 7,
        };
        assert_eq!(w.samples(), vec![400.0, 800.0, 1000.0]);
        let s = w.stats();
        assert_eq!((s.min, s.max, s.samples), (400.0, 1000.0, 3));
        assert!((s.avg - 733.333_333_333_333_4).abs() < 1e-9);
        // sample stddev of 400, 800, 1000
        assert!((s.stddev - 305.505_046_330_389).abs() < 1e-9);
        assert_eq!(ReplyRateWindows::default().stats(), RateStats::default());
    }

    #[test]
    fn error_kinds_serialise_kebab_case() {
        assert_eq!(
            serde_json::to_string(&ErrorKind::ClientTimo).unwrap(),
            "\"client-timo\""
        );
        assert_eq!(
            serde_json::to_string(&ErrorKind::ConnRefused).unwrap(),
            "\"conn-refused\""
        );
        let mut e = ErrorCounts::default();
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            e.add(*k, i as u64 + 1);
            assert_eq!(k.index(), i);
        }
        assert_eq!(e.total(), 36);
        assert_eq!(e.get(ErrorKind::Other), 8);
    }
}
