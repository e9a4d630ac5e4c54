//! Statistics over repetitions: for each (configuration, offered rate), the median, min and max
//! of every number the reports plot or compare.
//!
//! The median of an even number of values is the mean of the two middle ones. A value that is
//! undefined for some repetitions (autobench's error rate with no reply; latency percentiles from
//! httperf) is summarised over the repetitions where it is defined, and is `None` when it is
//! defined for none.

use crate::model::{Point, TABLE_I};

/// Median, min and max of one quantity over repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there is none. NaNs are ignored.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Everything summarised for one (configuration, offered rate).
#[derive(Clone, Debug, PartialEq)]
pub struct RateStats {
    /// Configuration name.
    pub config: String,
    /// Number of load balancers.
    pub lbs: u32,
    /// Bi-active or not.
    pub bi_active: bool,
    /// "nat" or "dr".
    pub method: String,
    /// Offered request rate, req/s.
    pub offered_rate: f64,
    /// Repetitions summarised.
    pub reps: usize,
    /// Reply rate, replies/s.
    pub reply_rate: Spread,
    /// Error rate, errors / connections, %.
    pub error_rate_pct: Spread,
    /// autobench's error rate, errors / replies, %.
    pub error_rate_replies_pct: Option<Spread>,
    /// Median latency, ms.
    pub p50_ms: Option<Spread>,
    /// 99th-percentile latency, ms.
    pub p99_ms: Option<Spread>,
}

/// Order of configurations in tables and figures: Table I order first, then any other name
/// alphabetically.
pub fn config_rank(name: &str) -> (usize, String) {
    let i = TABLE_I.iter().position(|c| *c == name);
    (i.unwrap_or(TABLE_I.len()), name.to_string())
}

/// Summarise `points` per (configuration, offered rate), sorted by [`config_rank`] then rate.
pub fn summarize(points: &[Point]) -> Vec<RateStats> {
    let mut keys: Vec<(&str, f64)> = points
        .iter()
        .map(|p| (p.config.as_str(), p.offered_rate))
        .collect();
    keys.sort_by(|a, b| {
        config_rank(a.0)
            .cmp(&config_rank(b.0))
            .then(a.1.total_cmp(&b.1))
    });
    keys.dedup();
    keys.into_iter()
        .filter_map(|(config, rate)| {
            let group: Vec<&Point> = points
                .iter()
                .filter(|p| p.config == config && p.offered_rate == rate)
                .collect();
            summarize_group(&group)
        })
        .collect()
}

/// One group's statistics (`None` for an empty group).
fn summarize_group(group: &[&Point]) -> Option<RateStats> {
    let first = group.first()?;
    let measured = || group.iter().map(|p| &p.measured);
    Some(RateStats {
        config: first.config.clone(),
        lbs: first.lbs,
        bi_active: first.bi_active,
        method: first.method.clone(),
        offered_rate: first.offered_rate,
        reps: group.len(),
        reply_rate: Spread::of(measured().map(|m| m.reply_rate))?,
        error_rate_pct: Spread::of(measured().map(|m| m.error_rate_pct()))?,
        error_rate_replies_pct: Spread::of(measured().filter_map(|m| m.error_rate_replies_pct())),
        p50_ms: Spread::of(measured().filter_map(|m| m.p50_ms)),
        p99_ms: Spread::of(measured().filter_map(|m| m.p99_ms)),
    })
}

/// The statistics of one configuration, in increasing rate order.
pub fn of_config<'a>(stats: &'a [RateStats], config: &str) -> Vec<&'a RateStats> {
    stats.iter().filter(|s| s.config == config).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{ConfigKind, Measured};
    use std::collections::BTreeMap;

    /// A point with the given numbers (httperf-like when `p50` is `None`).
    pub(crate) fn pt(
        config: &str,
        rate: f64,
        rep: u32,
        reply_rate: f64,
        errors: u64,
        conns: u64,
        p50: Option<f64>,
    ) -> Point {
        let kind = ConfigKind::parse(config).expect("test uses Table I names");
        let replies = conns.saturating_sub(errors);
        Point {
            config: config.into(),
            lbs: kind.lbs,
            bi_active: kind.bi_active,
            method: kind.method.as_str().into(),
            offered_rate: rate,
            rep,
            started_unix_ms: 0,
            duration_s: 10.0,
            measured: Measured {
                conns,
                requests: conns,
                replies,
                reply_rate,
                reply_rate_samples: 2,
                errors,
                errors_by_kind: BTreeMap::from([("client-timo".to_string(), errors)]),
                p50_ms: p50,
                p99_ms: p50.map(|x| x * 4.0),
                generator_limited: None,
            },
            loadgen: None,
            httperf: None,
            served: Vec::new(),
            balancers: Vec::new(),
        }
    }

    #[test]
    fn spread_median_odd_even_and_nan() {
        let s = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 2.0, 10.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(Spread::of([f64::NAN]), None);
        assert_eq!(Spread::of(Vec::new()), None);
    }

    #[test]
    fn groups_by_config_and_rate_in_table_order() {
        let points = vec![
            pt("1lb-nat", 200.0, 0, 150.0, 10, 100, Some(2.0)),
            pt("1lb-bi-nat", 200.0, 1, 190.0, 0, 100, Some(1.0)),
            pt("1lb-bi-nat", 100.0, 0, 100.0, 0, 100, None),
            pt("1lb-bi-nat", 200.0, 0, 180.0, 2, 100, Some(3.0)),
            pt("1lb-bi-nat", 200.0, 2, 200.0, 4, 100, None),
        ];
        let s = summarize(&points);
        let keys: Vec<(&str, f64, usize)> = s
            .iter()
            .map(|r| (r.config.as_str(), r.offered_rate, r.reps))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("1lb-bi-nat", 100.0, 1),
                ("1lb-bi-nat", 200.0, 3),
                ("1lb-nat", 200.0, 1)
            ]
        );
        let g = &s[1];
        assert_eq!(
            (g.reply_rate.median, g.reply_rate.min, g.reply_rate.max),
            (190.0, 180.0, 200.0)
        );
        assert_eq!(
            (
                g.error_rate_pct.median,
                g.error_rate_pct.min,
                g.error_rate_pct.max
            ),
            (2.0, 0.0, 4.0)
        );
        // p50 over the two repetitions that have one.
        let p50 = g.p50_ms.expect("two reps with latency");
        assert_eq!((p50.median, p50.min, p50.max), (2.0, 1.0, 3.0));
        assert_eq!(s[0].p50_ms, None);
        assert_eq!(of_config(&s, "1lb-nat").len(), 1);
    }
}
