//! Combine the results of several client processes (`--client I/N`, possibly on several hosts)
//! into one, exactly.
//!
//! What [`merge`] does with each field of [`RunResult`]:
//! - `schema`: must be [`RESULT_SCHEMA`] in every input, else [`MergeError::Schema`]
//!   (results written by other loadgen versions with the same schema merge fine).
//! - `config.target` and `config.method`: must be equal in every input that has them, else
//!   [`MergeError::Incompatible`] (merging runs against different servers/URIs is meaningless).
//!   Other configuration (rate, number of connections, ...) may differ between clients.
//! - `clients`: concatenated and sorted by index; the same index twice is
//!   [`MergeError::DuplicateClient`]; different `N` in `--client I/N` is
//!   [`MergeError::ClientCount`].
//! - `command_line`, `config`, `generator`: those of the input with the lowest client index.
//! - `started_unix_ms`: the earliest start; `duration_ns`: latest end minus earliest start.
//! - `counts`, `status`, `errors`, `cpu`: summed. `moments`: counts and integer sums added, min of
//!   minima, max of maxima (exact). `histograms`: HDR counts added (exact). `lifetime_ms_bins`:
//!   summed per bin (exact, so httperf's median is exact too).
//! - `max_concurrent`: summed (an upper bound: clients' peaks need not coincide);
//!   `max_connect_burst`: the maximum.
//! - `series`: aligned by wall clock: input i's second k lands at merged second
//!   `k + round((started_i - started_min) / 1 s)` and counts are summed (each count stays in the
//!   total; its placement is exact to +-0.5 s because inputs start at arbitrary milliseconds).
//! - `timeline`: aligned by wall clock to the 100-ms grid: input i's bin at `t_ms` lands at
//!   `round((t_ms + started_i - started_min) / 100 ms)`; counts summed.
//! - `reply_rate`: one input: unchanged (httperf's own samples). Several: rebuilt as the
//!   *aggregate* reply rate of all clients: the merged series' replies summed over consecutive
//!   5-s windows from the merged start, keeping only windows that end within the merged
//!   duration (like httperf, the final partial window is dropped; its replies are counted in
//!   `dropped_replies`). So "Reply rate avg" of a merge is the total reply rate the server saw.
//! - `summary`: recomputed from the merged exact fields.

use std::collections::{BTreeMap, HashMap};

use crate::record::MAX_SERIES_SECS;
use crate::result::{ReplyRateWindows, RunResult, SecondCounts, RATE_INTERVAL_NS, RESULT_SCHEMA};

/// Why results cannot be merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("nothing to merge: no result given")]
    Empty,
    /// An input has another result schema.
    #[error("input {input} has result schema {found:?}, expected {expected:?} (results of different schema versions cannot be merged)")]
    Schema {
        /// 0-based position of the input.
        input: usize,
        /// Its schema.
        found: String,
        /// The schema this build merges.
        expected: &'static str,
    },
    /// Two inputs claim the same client index.
    #[error("client index {index} appears twice (inputs {first} and {second}): each --client I/N must be merged once")]
    DuplicateClient {
        /// The index.
        index: u32,
        /// 0-based position of the first input with it.
        first: usize,
        /// 0-based position of the second.
        second: usize,
    },
    /// Inputs disagree on N in `--client I/N`.
    #[error(
        "inputs disagree on the number of clients: input {first} says {a}, input {second} says {b}"
    )]
    ClientCount {
        /// 0-based input.
        first: usize,
        /// Its N.
        a: u32,
        /// 0-based input.
        second: usize,
        /// Its N.
        b: u32,
    },
    /// Inputs started too far apart to be one run (the merged series would be huge).
    #[error("input {input} started {apart_s} s after the earliest input; inputs more than {max_s} s apart are not one run")]
    TooFarApart {
        /// 0-based input.
        input: usize,
        /// Seconds after the earliest start.
        apart_s: u64,
        /// The limit ([`MAX_SERIES_SECS`]).
        max_s: u64,
    },
    /// Inputs measured different targets.
    #[error("inputs {first} and {second} have different {field}: {a} vs {b}")]
    Incompatible {
        /// The config field that differs ("target" or "method").
        field: &'static str,
        /// 0-based input.
        first: usize,
        /// 0-based input.
        second: usize,
        /// First value (JSON).
        a: String,
        /// Second value (JSON).
        b: String,
    },
}

/// Configuration fields that must agree between merged inputs.
const MUST_MATCH: [&str; 2] = ["target", "method"];

/// Merge several results into one; exact (see the module documentation for each field).
pub fn merge(results: Vec<RunResult>) -> Result<RunResult, MergeError> {
    if results.is_empty() {
        return Err(MergeError::Empty);
    }
    validate(&results)?;
    let start = results.iter().map(|r| r.started_unix_ms).min().unwrap_or(0);
    for (i, r) in results.iter().enumerate() {
        let apart_s = (r.started_unix_ms - start) / 1000;
        if apart_s > MAX_SERIES_SECS {
            return Err(MergeError::TooFarApart {
                input: i,
                apart_s,
                max_s: MAX_SERIES_SECS,
            });
        }
    }
    if results.len() == 1 {
        let mut only = results;
        let mut r = only.remove(0);
        r.refresh_summary();
        return Ok(r);
    }

    // The input with the lowest client index provides command line and config.
    let lead = results
        .iter()
        .enumerate()
        .min_by_key(|(_, r)| r.clients.iter().map(|c| c.index).min().unwrap_or(u32::MAX))
        .map(|(i, _)| i)
        .unwrap_or(0);

    let mut out = results[lead].clone();
    out.started_unix_ms = start;
    out.clients = Vec::new();
    out.duration_ns = 0;
    out.max_concurrent = 0;
    out.max_connect_burst = 0;
    out.cpu = Default::default();
    out.counts = Default::default();
    out.status = Default::default();
    out.errors = Default::default();
    out.moments = Default::default();
    out.histograms = Default::default();
    out.series = Vec::new();
    out.timeline = Vec::new();
    let mut bins: BTreeMap<u32, u64> = BTreeMap::new();

    for r in &results {
        let delta_ms = r.started_unix_ms - start;
        out.duration_ns = out
            .duration_ns
            .max((delta_ms * 1_000_000).saturating_add(r.duration_ns));
        out.clients.extend(r.clients.iter().cloned());
        out.max_concurrent = out.max_concurrent.saturating_add(r.max_concurrent);
        out.max_connect_burst = out.max_connect_burst.max(r.max_connect_burst);
        out.cpu.user_s += r.cpu.user_s;
        out.cpu.system_s += r.cpu.system_s;
        out.counts.add(&r.counts);
        out.status.add_all(&r.status);
        out.errors.add_all(&r.errors);
        out.moments.merge(&r.moments);
        out.histograms.add(&r.histograms);
        for (bin, c) in &r.lifetime_ms_bins {
            let e = bins.entry(*bin).or_insert(0);
            *e = e.saturating_add(*c);
        }
        let shift = ((delta_ms + 500) / 1000) as usize;
        let need = shift + r.series.len();
        if out.series.len() < need {
            out.series.resize(need, SecondCounts::default());
        }
        for (k, s) in r.series.iter().enumerate() {
            out.series[shift + k].add(s);
        }
        crate::result::add_timeline(&mut out.timeline, &r.timeline, delta_ms);
    }
    out.clients.sort_by_key(|c| c.index);
    out.lifetime_ms_bins = bins.into_iter().collect();
    let covered = out
        .duration_ns
        .div_ceil(1_000_000_000)
        .min(MAX_SERIES_SECS + 1) as usize;
    if out.series.len() < covered {
        out.series.resize(covered, SecondCounts::default());
    }
    out.reply_rate = aggregate_windows(&out.series, out.duration_ns);
    out.refresh_summary();
    Ok(out)
}

/// Reply-rate windows of 5 s from the start of `series`, complete windows only.
fn aggregate_windows(series: &[SecondCounts], duration_ns: u64) -> ReplyRateWindows {
    let per = (RATE_INTERVAL_NS / 1_000_000_000) as usize;
    // Windows past the series' end hold no replies; the cap only bounds memory for absurd
    // durations read from files (the series itself is capped at MAX_SERIES_SECS).
    let complete = (duration_ns / RATE_INTERVAL_NS).min(MAX_SERIES_SECS / 5 + 1) as usize;
    let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, |t, n| t.saturating_add(n));
    let counts: Vec<u64> = (0..complete)
        .map(|w| sum(&mut series.iter().skip(w * per).take(per).map(|s| s.replies)))
        .collect();
    let sampled = sum(&mut counts.iter().copied());
    let all = sum(&mut series.iter().map(|s| s.replies));
    ReplyRateWindows {
        first_window_ns: RATE_INTERVAL_NS,
        interval_ns: RATE_INTERVAL_NS,
        counts,
        dropped_replies: all.saturating_sub(sampled),
    }
}

fn validate(results: &[RunResult]) -> Result<(), MergeError> {
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut count: Option<(usize, u32)> = None;
    for (i, r) in results.iter().enumerate() {
        if r.schema != RESULT_SCHEMA {
            return Err(MergeError::Schema {
                input: i,
                found: r.schema.clone(),
                expected: RESULT_SCHEMA,
            });
        }
        for c in &r.clients {
            if let Some(first) = seen.insert(c.index, i) {
                return Err(MergeError::DuplicateClient {
                    index: c.index,
                    first,
                    second: i,
                });
            }
            match count {
                None => count = Some((i, c.count)),
                Some((first, n)) if n != c.count => {
                    return Err(MergeError::ClientCount {
                        first,
                        a: n,
                        second: i,
                        b: c.count,
                    })
                }
                Some(_) => {}
            }
        }
    }
    for field in MUST_MATCH {
        let mut reference: Option<(usize, &serde_json::Value)> = None;
        for (i, r) in results.iter().enumerate() {
            let Some(v) = r.config.get(field) else {
                continue;
            };
            match reference {
                None => reference = Some((i, v)),
                Some((first, a)) if a != v => {
                    return Err(MergeError::Incompatible {
                        field,
                        first,
                        second: i,
                        a: a.to_string(),
                        b: v.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{facts, feed_conn, golden_run, Lcg};
    use crate::record::{Recorder, RunFacts};
    use std::time::{Duration, Instant};

    fn three_clients_and_one(conns: u64, end_ms: u64) -> (RunResult, Vec<RunResult>) {
        let t0 = Instant::now();
        let mut all = Recorder::new(t0);
        let mut parts: Vec<Recorder> = (0..3).map(|i| Recorder::for_client(t0, i, 3)).collect();
        let (mut rng_a, mut rng_b) = (Lcg(11), Lcg(11));
        for i in 0..conns {
            feed_conn(&mut all, t0, &mut rng_a, i);
            feed_conn(&mut parts[(i % 3) as usize], t0, &mut rng_b, i);
        }
        let end = t0 + Duration::from_millis(end_ms);
        let one = all.finish(end, facts(0, 1));
        let many = parts
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.finish(end, facts(i as u32, 3)))
            .collect();
        (one, many)
    }

    #[test]
    fn merging_three_clients_equals_one_recorder() {
        let (one, many) = three_clients_and_one(3000, 22_000);
        // Each client samples at its own phase: 5/3, 10/3, 5 s.
        assert_eq!(many[0].reply_rate.first_window_ns, 1_666_666_666);
        let m = merge(many).unwrap();
        assert_eq!(m.counts, one.counts);
        assert_eq!(m.status, one.status);
        assert_eq!(m.errors, one.errors);
        assert_eq!(m.moments, one.moments);
        assert_eq!(m.histograms, one.histograms);
        assert_eq!(m.lifetime_ms_bins, one.lifetime_ms_bins);
        assert_eq!(m.series, one.series);
        assert_eq!(m.duration_ns, one.duration_ns);
        // Same start: the aggregate 5-s grid is the single client's 0/1 grid.
        assert_eq!(m.reply_rate, one.reply_rate);
        assert_eq!(m.reply_rate.counts.len(), 4);
        assert_eq!(m.summary.connect_ms, one.summary.connect_ms);
        assert_eq!(m.summary.latency_ms, one.summary.latency_ms);
        assert_eq!(m.error_rate_percent(), one.error_rate_percent());
        assert_eq!(m.reply_rate_avg(), one.reply_rate_avg());
        assert_eq!(
            m.clients.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(m.cpu.user_s, 4.5);
        assert_eq!(m.max_concurrent, 3);
        assert_eq!(m.command_line, one.command_line.replace("0/1", "0/3"));
        // The printed httperf summary agrees too, except CPU and concurrency (summed) and the
        // command line.
        let a = crate::httperf_fmt::summary_string(&m);
        let b = crate::httperf_fmt::summary_string(&one);
        let differing: Vec<_> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(differing.len(), 3, "{differing:#?}");
    }

    #[test]
    fn merge_is_order_independent_and_associative() {
        let (_, many) = three_clients_and_one(900, 12_000);
        let abc = merge(many.clone()).unwrap();
        let cba = merge(many.iter().rev().cloned().collect()).unwrap();
        let ab = merge(vec![many[0].clone(), many[1].clone()]).unwrap();
        let ab_c = merge(vec![ab, many[2].clone()]).unwrap();
        assert_eq!(abc, cba);
        assert_eq!(abc, ab_c);
    }

    #[test]
    fn series_aligned_by_wall_clock() {
        let t0 = Instant::now();
        let mk = |idx: u32, started: u64, reply_ms: u64| {
            let mut r = Recorder::for_client(t0, idx, 2);
            let ok = crate::record::ReplyRecord {
                status: 200,
                ..Default::default()
            };
            r.reply(t0 + Duration::from_millis(reply_ms), &ok);
            let f = RunFacts {
                started_unix_ms: started,
                ..facts(idx, 2)
            };
            r.finish(t0 + Duration::from_millis(10_000), f)
        };
        // Client 1 started 2.6 s later: its second 0 is merged second 3 (rounded).
        let m = merge(vec![mk(0, 1_000_000, 500), mk(1, 1_002_600, 500)]).unwrap();
        assert_eq!(m.started_unix_ms, 1_000_000);
        assert_eq!(m.duration_ns, 12_600_000_000);
        assert_eq!(m.series.len(), 13);
        assert_eq!(m.series[0].replies, 1);
        assert_eq!(m.series[3].replies, 1);
        assert_eq!(m.reply_rate.counts, vec![2, 0]);
        assert_eq!(m.reply_rate.first_window_ns, 5_000_000_000);
        assert_eq!(m.reply_rate.samples(), vec![0.4, 0.0]);
    }

    #[test]
    fn timeline_aligned_by_wall_clock() {
        let t0 = Instant::now();
        let mk = |idx: u32, started: u64, conn_ms: u64, ok: bool| {
            let mut r = Recorder::for_client(t0, idx, 2);
            let at = t0 + Duration::from_millis(conn_ms + 5);
            r.conn_started(t0 + Duration::from_millis(conn_ms));
            r.conn_closed(at, Duration::from_millis(5), u32::from(ok), ok);
            let f = RunFacts {
                started_unix_ms: started,
                ..facts(idx, 2)
            };
            r.finish(t0 + Duration::from_millis(1_000), f)
        };
        // Client 1 started 260 ms later: its connection at 150 ms is at 410 ms -> bin 400.
        let m = merge(vec![
            mk(0, 1_000_000, 150, true),
            mk(1, 1_000_260, 150, false),
        ])
        .unwrap();
        let at = |t: u64| m.timeline.iter().find(|b| b.t_ms == t).copied().unwrap();
        assert_eq!(
            (at(100).started, at(100).replied, at(100).errors),
            (1, 1, 0)
        );
        assert_eq!(
            (at(400).started, at(400).replied, at(400).errors),
            (1, 0, 1)
        );
        assert_eq!(m.timeline.iter().map(|b| b.started).sum::<u64>(), 2);
    }

    #[test]
    fn absurd_counts_saturate_instead_of_panicking() {
        let mut a = golden_run();
        let mut b = golden_run();
        b.clients[0].index = 1;
        for r in [&mut a, &mut b] {
            r.clients[0].count = 2;
            r.counts.conns_attempted = u64::MAX;
            r.counts.request_bytes = u64::MAX;
            r.status.s2xx = u64::MAX;
            r.errors.other = u64::MAX;
            r.moments.lifetime.sum_ns = u128::MAX;
            r.moments.lifetime.sum_sq_ns2 = u128::MAX;
            r.series[0].replies = u64::MAX;
            r.lifetime_ms_bins = vec![(3, u64::MAX)];
        }
        let m = merge(vec![a, b]).unwrap();
        assert_eq!(m.counts.conns_attempted, u64::MAX);
        assert_eq!(m.replies(), u64::MAX);
        assert_eq!(m.errors_total(), u64::MAX);
        assert_eq!(m.reply_rate.counts[0], u64::MAX);
        let text = crate::httperf_fmt::summary_string(&m);
        assert!(
            text.contains("Total: connections 18446744073709551615 "),
            "{text}"
        );
    }

    #[test]
    fn single_input_is_unchanged() {
        let r = golden_run();
        assert_eq!(merge(vec![r.clone()]).unwrap(), r);
    }

    #[test]
    fn incompatible_inputs_are_refused() {
        assert_eq!(merge(vec![]).unwrap_err(), MergeError::Empty);

        let a = golden_run();
        let e = merge(vec![a.clone(), a.clone()]).unwrap_err();
        assert_eq!(
            e,
            MergeError::DuplicateClient {
                index: 0,
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "client index 0 appears twice (inputs 0 and 1): each --client I/N must be merged once"
        );

        let mut b = golden_run();
        b.clients[0].index = 1;
        b.clients[0].count = 2;
        assert!(matches!(
            merge(vec![a.clone(), b.clone()]).unwrap_err(),
            MergeError::ClientCount { a: 1, b: 2, .. }
        ));

        let mut b = golden_run();
        b.clients[0].index = 1;
        let mut a1 = a.clone();
        a1.clients[0].count = 2;
        b.clients[0].count = 2;
        b.config["target"]["uri"] = serde_json::json!("/other");
        let e = merge(vec![a1.clone(), b.clone()]).unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::Incompatible {
                    field: "target",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/other"), "{e}");

        b.config["target"]["uri"] = serde_json::json!("/");
        b.schema = "loadgen-result/0".into();
        let e = merge(vec![a1.clone(), b.clone()]).unwrap_err();
        assert!(matches!(e, MergeError::Schema { input: 1, .. }), "{e}");

        b.schema = RESULT_SCHEMA.into();
        b.config["method"] = serde_json::json!("HEAD");
        assert!(matches!(
            merge(vec![a1.clone(), b.clone()]).unwrap_err(),
            MergeError::Incompatible {
                field: "method",
                ..
            }
        ));
        b.config["method"] = serde_json::json!("GET");
        b.started_unix_ms += (MAX_SERIES_SECS + 1) * 1000;
        let e = merge(vec![a1.clone(), b.clone()]).unwrap_err();
        assert!(matches!(e, MergeError::TooFarApart { input: 1, .. }), "{e}");
        b.started_unix_ms = a1.started_unix_ms + 1500;
        b.duration_ns = u64::MAX;
        let m = merge(vec![a1, b]).unwrap();
        assert_eq!(m.clients.len(), 2);
        assert_eq!(m.duration_ns, u64::MAX);
    }
}
