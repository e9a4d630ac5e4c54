//! The paper's claims, measured the same way: bi-active against plain NAT with the same number
//! of balancers, on the rates both configurations were measured at ("common rates"), from the
//! medians over repetitions.
//!
//! Definitions (the report states them too):
//! - *reply-rate gain* at a rate r: `(median_on(r) - median_off(r)) / median_off(r) * 100`;
//!   the paper's "+21.6 %" ("increases up to 21.6 %") is read as the **maximum over common
//!   rates**, rates where the plain configuration had no reply excluded.
//! - *error-rate change* at r: `err_on(r) - err_off(r)` in **percentage points**, with the error
//!   rate errors / connections attempted in percent (the quantity of Figs. 6 and 7); the paper's
//!   "-18.9 %" ("decrease up to 18.9 %") is read as the **largest reduction (most negative
//!   change) over common rates**. Percentage points rather than a relative change because the
//!   relative change is -100 % wherever bi-active has no error and plain NAT has a few, which
//!   says nothing about the size of the difference; the relative change is given beside it
//!   when the plain configuration had errors.
//! - Both are also given at the **highest common rate** (past saturation when the sweep reached
//!   it), and each configuration's *saturation reply rate* is its largest median reply rate.

use crate::stats::{of_config, RateStats};

/// The paper's reply-rate claim, percent.
pub const PAPER_REPLY_GAIN_PCT: f64 = 21.6;
/// The paper's error-rate claim, percent (a reduction).
pub const PAPER_ERROR_CHANGE_PCT: f64 = -18.9;

/// The comparisons the paper makes: (bi-active configuration, plain configuration).
pub const PAIRS: [(&str, &str); 4] = [
    ("1lb-bi-nat", "1lb-nat"),
    ("1lb-bi-dr", "1lb-nat"),
    ("2lb-bi-nat", "2lb-nat"),
    ("2lb-bi-dr", "2lb-nat"),
];

/// A reply-rate gain measured at one offered rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AtRate {
    /// Offered rate, req/s.
    pub offered_rate: f64,
    /// Relative change, percent.
    pub pct: f64,
    /// Absolute change, replies/s.
    pub abs: f64,
}

/// An error-rate change measured at one offered rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorAt {
    /// Offered rate, req/s.
    pub offered_rate: f64,
    /// Change in percentage points (the primary figure).
    pub pp: f64,
    /// Relative change, percent; `None` when the plain configuration had no error.
    pub rel_pct: Option<f64>,
}

/// Bi-active against plain at the common rates of one pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PairGains {
    /// Bi-active configuration.
    pub on: String,
    /// Plain configuration.
    pub off: String,
    /// Number of rates both were measured at.
    pub common_rates: usize,
    /// Largest reply-rate gain and its rate.
    pub reply_max: Option<AtRate>,
    /// Reply-rate gain at the highest common rate.
    pub reply_at_top: Option<AtRate>,
    /// Largest error-rate reduction (most negative change in percentage points) and its rate.
    pub error_best: Option<ErrorAt>,
    /// Error-rate change at the highest common rate.
    pub error_at_top: Option<ErrorAt>,
}

/// A configuration's saturation: its largest median reply rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Saturation {
    /// Configuration.
    pub config: String,
    /// Largest median reply rate, replies/s.
    pub reply_rate: f64,
    /// Offered rate at which it was reached, req/s.
    pub offered_rate: f64,
    /// Highest offered rate measured, req/s.
    pub top_rate: f64,
}

/// Relative change of `on` against `off`, percent; `None` when `off` is 0.
fn relative(on: f64, off: f64) -> Option<f64> {
    (off != 0.0).then(|| (on - off) / off * 100.0)
}

/// The (on, off) pairs of medians at every common rate, in rate order.
fn common<'a>(stats: &'a [RateStats], on: &str, off: &str) -> Vec<(&'a RateStats, &'a RateStats)> {
    let offs = of_config(stats, off);
    of_config(stats, on)
        .into_iter()
        .filter_map(|a| {
            offs.iter()
                .find(|b| b.offered_rate == a.offered_rate)
                .map(|b| (a, *b))
        })
        .collect()
}

/// Reply-rate and error-rate change at one rate.
fn changes(a: &RateStats, b: &RateStats) -> (Option<AtRate>, ErrorAt) {
    let (ra, rb) = (a.reply_rate.median, b.reply_rate.median);
    let (ea, eb) = (a.error_rate_pct.median, b.error_rate_pct.median);
    let reply = relative(ra, rb).map(|pct| AtRate {
        offered_rate: a.offered_rate,
        pct,
        abs: ra - rb,
    });
    let error = ErrorAt {
        offered_rate: a.offered_rate,
        pp: ea - eb,
        rel_pct: relative(ea, eb),
    };
    (reply, error)
}

/// The gains of `on` over `off` (see the module doc for the definitions).
pub fn pair_gains(stats: &[RateStats], on: &str, off: &str) -> PairGains {
    let pairs = common(stats, on, off);
    let all: Vec<(Option<AtRate>, ErrorAt)> = pairs.iter().map(|(a, b)| changes(a, b)).collect();
    let top = all.last().copied();
    PairGains {
        on: on.to_string(),
        off: off.to_string(),
        common_rates: pairs.len(),
        reply_max: all
            .iter()
            .filter_map(|c| c.0)
            .max_by(|x, y| x.pct.total_cmp(&y.pct)),
        reply_at_top: top.and_then(|c| c.0),
        error_best: all.iter().map(|c| c.1).min_by(|x, y| x.pp.total_cmp(&y.pp)),
        error_at_top: top.map(|c| c.1),
    }
}

/// The gains of every pair of [`PAIRS`].
pub fn all_pairs(stats: &[RateStats]) -> Vec<PairGains> {
    PAIRS
        .iter()
        .map(|(on, off)| pair_gains(stats, on, off))
        .collect()
}

/// A configuration's saturation point; `None` when it has no data.
pub fn saturation(stats: &[RateStats], config: &str) -> Option<Saturation> {
    let rows = of_config(stats, config);
    let best = rows
        .iter()
        .max_by(|a, b| a.reply_rate.median.total_cmp(&b.reply_rate.median))?;
    Some(Saturation {
        config: config.to_string(),
        reply_rate: best.reply_rate.median,
        offered_rate: best.offered_rate,
        top_rate: rows.last().map_or(best.offered_rate, |r| r.offered_rate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize;
    use crate::stats::tests::pt;

    fn sweep(config: &str, rows: &[(f64, f64, u64)]) -> Vec<crate::model::Point> {
        rows.iter()
            .map(|(rate, reply, errors)| pt(config, *rate, 0, *reply, *errors, 1000, None))
            .collect()
    }

    #[test]
    fn gains_are_max_over_common_rates_and_at_the_top() {
        let mut points = sweep(
            "1lb-bi-nat",
            &[(100.0, 100.0, 0), (200.0, 200.0, 10), (300.0, 240.0, 50)],
        );
        points.extend(sweep(
            "1lb-nat",
            &[
                (100.0, 100.0, 0),
                (200.0, 160.0, 40),
                (300.0, 200.0, 100),
                (400.0, 190.0, 200),
            ],
        ));
        let g = pair_gains(&summarize(&points), "1lb-bi-nat", "1lb-nat");
        assert_eq!(g.common_rates, 3);
        let r = g.reply_max.expect("reply gain");
        assert_eq!((r.offered_rate, r.pct, r.abs), (200.0, 25.0, 40.0));
        let t = g.reply_at_top.expect("top");
        assert_eq!((t.offered_rate, t.pct, t.abs), (300.0, 20.0, 40.0));
        // Error rates (errors/1000 conns): off 0, 4 %, 10 %; on 0, 1 %, 5 %: -3 pp (-75 %) at
        // 200, -5 pp (-50 %) at 300: the largest reduction in points is at 300.
        let e = g.error_best.expect("error change");
        assert_eq!(e.offered_rate, 300.0);
        assert!((e.pp + 5.0).abs() < 1e-9, "{e:?}");
        assert!(
            (e.rel_pct.expect("off had errors") + 50.0).abs() < 1e-9,
            "{e:?}"
        );
        let et = g.error_at_top.expect("error at top");
        assert_eq!(et, e);
    }

    #[test]
    fn no_errors_in_the_baseline_gives_points_but_no_relative_change() {
        let mut points = sweep("2lb-bi-dr", &[(100.0, 100.0, 3)]);
        points.extend(sweep("2lb-nat", &[(100.0, 90.0, 0)]));
        let g = pair_gains(&summarize(&points), "2lb-bi-dr", "2lb-nat");
        let e = g.error_best.expect("common rate");
        assert!((e.pp - 0.3).abs() < 1e-9, "{e:?}");
        assert_eq!(e.rel_pct, None);
        assert!(g.reply_max.is_some());
    }

    #[test]
    fn missing_configuration_gives_no_common_rate() {
        let points = sweep("1lb-bi-dr", &[(100.0, 100.0, 0)]);
        let g = pair_gains(&summarize(&points), "1lb-bi-dr", "1lb-nat");
        assert_eq!(g.common_rates, 0);
        assert_eq!((g.reply_max, g.error_best), (None, None));
        assert_eq!(all_pairs(&summarize(&points)).len(), 4);
    }

    #[test]
    fn saturation_is_the_largest_median() {
        let points = sweep(
            "1lb-nat",
            &[(100.0, 100.0, 0), (200.0, 180.0, 0), (300.0, 170.0, 0)],
        );
        let s = saturation(&summarize(&points), "1lb-nat").expect("data");
        assert_eq!(
            (s.reply_rate, s.offered_rate, s.top_rate),
            (180.0, 200.0, 300.0)
        );
        assert_eq!(saturation(&summarize(&points), "2lb-nat"), None);
    }
}
