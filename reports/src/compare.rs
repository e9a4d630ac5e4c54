//! `reports compare`: judge a run against a baseline, for CI.
//!
//! For every configuration and offered rate measured in both runs (the *common points*), two
//! metrics are compared using the medians and min-max ranges over repetitions:
//!
//! - **Reply rate** (higher is better). Change = `(current - baseline) / baseline * 100`.
//!   It *regressed* when the current median is lower than the baseline median by more than
//!   `max_regression_pct` percent **and** the repetition ranges do not overlap
//!   (current max < baseline min). When either run has a single repetition there is no range:
//!   the threshold alone decides.
//! - **Error rate** (errors / connections, %, lower is better). Change in percentage points.
//!   It *regressed* when the current median exceeds the baseline median by more than
//!   `max_regression_pct` percent of the baseline median **and** by more than
//!   `error_floor_pp` percentage points (so 0 % -> 0.1 % is not a regression), **and** the
//!   ranges do not overlap (current min > baseline max; threshold alone with one repetition).
//!
//! A worse value that fails only the overlap test is reported as "noise"; one better beyond the
//! threshold as "better". Different profiles, generators, durations or tool versions are listed
//! in the output, not refused: the user decides whether the comparison means anything.

use std::collections::BTreeSet;

use crate::model::Reproduction;
use crate::stats::{summarize, RateStats, Spread};

/// The thresholds of the rule (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Largest tolerated worsening, percent of the baseline median.
    pub max_regression_pct: f64,
    /// Smallest error-rate increase, percentage points, that can count as a regression.
    pub error_floor_pp: f64,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            max_regression_pct: 10.0,
            error_floor_pp: 1.0,
        }
    }
}

/// Which number is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Reply rate, replies/s.
    ReplyRate,
    /// Error rate, errors / connections, %.
    ErrorRate,
}

impl Metric {
    /// Column text.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ReplyRate => "reply rate",
            Metric::ErrorRate => "error %",
        }
    }
}

/// The judgement of one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold.
    Ok,
    /// Better than the baseline beyond the threshold.
    Better,
    /// Worse beyond the threshold, but the repetition ranges overlap.
    Noise,
    /// Worse beyond the threshold and outside the baseline's range.
    Regressed,
}

impl Verdict {
    /// Column text.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Better => "better",
            Verdict::Noise => "noise",
            Verdict::Regressed => "REGRESSED",
        }
    }
}

/// One compared (configuration, rate, metric).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Configuration.
    pub config: String,
    /// Offered rate, req/s.
    pub offered_rate: f64,
    /// Metric.
    pub metric: Metric,
    /// Baseline median/min/max and repetitions.
    pub baseline: (Spread, usize),
    /// Current median/min/max and repetitions.
    pub current: (Spread, usize),
    /// Reply rate: relative change, %; error rate: change in percentage points. `None` for a
    /// reply rate against a baseline of 0.
    pub change: Option<f64>,
    /// The judgement.
    pub verdict: Verdict,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The rule applied.
    pub rule: Rule,
    /// One row per common point and metric.
    pub rows: Vec<Row>,
    /// Differences between the runs' setups ("profile: paper -> slow", ...).
    pub differences: Vec<String>,
}

/// Why two runs cannot be compared.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// No configuration and rate was measured in both.
    #[error(
        "no common points: baseline has {baseline}, current has {current} (configuration@rate)"
    )]
    NoCommonPoints {
        /// The baseline's points, abbreviated.
        baseline: String,
        /// The current run's points, abbreviated.
        current: String,
    },
    /// The threshold is not a usable percentage.
    #[error("--max-regression must be a percentage >= 0, got {0}")]
    BadThreshold(f64),
}

/// Judge a reply rate (higher is better).
fn judge_reply(b: (Spread, usize), c: (Spread, usize), rule: &Rule) -> (Option<f64>, Verdict) {
    let change = (b.0.median != 0.0).then(|| (c.0.median - b.0.median) / b.0.median * 100.0);
    let ranges = b.1 > 1 && c.1 > 1;
    let verdict = match change {
        Some(ch) if ch < -rule.max_regression_pct => {
            if ranges && c.0.max >= b.0.min {
                Verdict::Noise
            } else {
                Verdict::Regressed
            }
        }
        Some(ch) if ch > rule.max_regression_pct => Verdict::Better,
        // Baseline 0: anything above it is better, nothing can be worse.
        None if c.0.median > 0.0 => Verdict::Better,
        _ => Verdict::Ok,
    };
    (change, verdict)
}

/// Judge an error rate (lower is better); the change is in percentage points.
fn judge_error(b: (Spread, usize), c: (Spread, usize), rule: &Rule) -> (Option<f64>, Verdict) {
    let pp = c.0.median - b.0.median;
    let beyond =
        |d: f64| d > rule.error_floor_pp && d > b.0.median * rule.max_regression_pct / 100.0;
    let ranges = b.1 > 1 && c.1 > 1;
    let verdict = if beyond(pp) {
        if ranges && c.0.min <= b.0.max {
            Verdict::Noise
        } else {
            Verdict::Regressed
        }
    } else if beyond(-pp) {
        Verdict::Better
    } else {
        Verdict::Ok
    };
    (Some(pp), verdict)
}

/// Compare `current` against `baseline` under `rule`.
pub fn compare(
    baseline: &Reproduction,
    current: &Reproduction,
    rule: Rule,
) -> Result<Comparison, CompareError> {
    if !(rule.max_regression_pct >= 0.0 && rule.max_regression_pct.is_finite()) {
        return Err(CompareError::BadThreshold(rule.max_regression_pct));
    }
    let (bs, cs) = (summarize(&baseline.points), summarize(&current.points));
    let mut rows = Vec::new();
    for c in &cs {
        let Some(b) = bs
            .iter()
            .find(|b| b.config == c.config && b.offered_rate == c.offered_rate)
        else {
            continue;
        };
        rows.push(row(b, c, Metric::ReplyRate, &rule));
        rows.push(row(b, c, Metric::ErrorRate, &rule));
    }
    if rows.is_empty() {
        return Err(CompareError::NoCommonPoints {
            baseline: abbreviate(&bs),
            current: abbreviate(&cs),
        });
    }
    Ok(Comparison {
        rule,
        rows,
        differences: differences(baseline, current),
    })
}

/// One row.
fn row(b: &RateStats, c: &RateStats, metric: Metric, rule: &Rule) -> Row {
    let pick = |s: &RateStats| match metric {
        Metric::ReplyRate => (s.reply_rate, s.reps),
        Metric::ErrorRate => (s.error_rate_pct, s.reps),
    };
    let (bv, cv) = (pick(b), pick(c));
    let (change, verdict) = match metric {
        Metric::ReplyRate => judge_reply(bv, cv, rule),
        Metric::ErrorRate => judge_error(bv, cv, rule),
    };
    Row {
        config: c.config.clone(),
        offered_rate: c.offered_rate,
        metric,
        baseline: bv,
        current: cv,
        change,
        verdict,
    }
}

/// "1lb-nat@100,1lb-nat@200,..." (at most 6 shown; "none" when empty).
fn abbreviate(stats: &[RateStats]) -> String {
    if stats.is_empty() {
        return "none".to_string();
    }
    let mut s: Vec<String> = stats
        .iter()
        .take(6)
        .map(|r| format!("{}@{}", r.config, r.offered_rate))
        .collect();
    if stats.len() > 6 {
        s.push(format!("... ({} in all)", stats.len()));
    }
    s.join(", ")
}

/// What differs between the two runs' setups.
fn differences(b: &Reproduction, c: &Reproduction) -> Vec<String> {
    let (bs, cs) = (&b.spec, &c.spec);
    let mut pairs: Vec<(String, String, String)> = vec![
        ("profile".into(), bs.profile.clone(), cs.profile.clone()),
        (
            "generator".into(),
            bs.generator.clone(),
            cs.generator.clone(),
        ),
        (
            "duration_s".into(),
            bs.duration_s.to_string(),
            cs.duration_s.to_string(),
        ),
        (
            "repeat".into(),
            bs.repeat.to_string(),
            cs.repeat.to_string(),
        ),
        (
            "clients".into(),
            bs.clients.to_string(),
            cs.clients.to_string(),
        ),
    ];
    let keys: BTreeSet<&String> = b.versions.keys().chain(c.versions.keys()).collect();
    let version = |r: &Reproduction, k: &str| {
        r.versions
            .get(k)
            .cloned()
            .unwrap_or_else(|| "(none)".into())
    };
    for k in keys {
        pairs.push((format!("version {k}"), version(b, k), version(c, k)));
    }
    let mut d: Vec<String> = pairs
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(what, x, y)| format!("{what}: {x} -> {y}"))
        .collect();
    if bs.profile == cs.profile && b.profile != c.profile {
        d.push(format!(
            "profile {:?}: same name, different settings",
            cs.profile
        ));
    }
    d
}

impl Comparison {
    /// Whether any row regressed.
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Regressed)
    }

    /// The table and the one-line verdict, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.differences {
            out.push_str(&format!("note: runs differ in {d}\n"));
        }
        out.push_str(&format!(
            "{:<11} {:>8} {:<10} {:>24} {:>24} {:>9}  {}\n",
            "config",
            "rate",
            "metric",
            "baseline med [min-max]",
            "current med [min-max]",
            "change",
            "verdict"
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "{:<11} {:>8} {:<10} {:>24} {:>24} {:>9}  {}\n",
                r.config,
                r.offered_rate,
                r.metric.name(),
                spread_text(r.baseline.0, r.metric),
                spread_text(r.current.0, r.metric),
                change_text(r),
                r.verdict.name()
            ));
        }
        out.push_str(&self.verdict_line());
        out.push('\n');
        out
    }

    /// "compare: ..." one line.
    pub fn verdict_line(&self) -> String {
        let count = |v: Verdict| self.rows.iter().filter(|r| r.verdict == v).count();
        let tally = format!(
            "{} comparisons: {} ok, {} better, {} noise, {} regressed",
            self.rows.len(),
            count(Verdict::Ok),
            count(Verdict::Better),
            count(Verdict::Noise),
            count(Verdict::Regressed)
        );
        if self.regressed() {
            format!(
                "compare: REGRESSION beyond {}% outside the repetitions' range ({tally})",
                self.rule.max_regression_pct
            )
        } else {
            format!(
                "compare: no regression beyond {}% ({tally})",
                self.rule.max_regression_pct
            )
        }
    }
}

/// "1234.5 [1200.0-1250.0]" (reply rate) or "1.23 [0.50-2.00]" (error %).
fn spread_text(s: Spread, m: Metric) -> String {
    match m {
        Metric::ReplyRate => format!("{:.1} [{:.1}-{:.1}]", s.median, s.min, s.max),
        Metric::ErrorRate => format!("{:.2} [{:.2}-{:.2}]", s.median, s.min, s.max),
    }
}

/// "-12.3%" or "+0.40pp" or "n/a".
fn change_text(r: &Row) -> String {
    match (r.change, r.metric) {
        (None, _) => "n/a".to_string(),
        (Some(c), Metric::ReplyRate) => format!("{c:+.1}%"),
        (Some(c), Metric::ErrorRate) => format!("{c:+.2}pp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SweepSpec;
    use crate::stats::tests::pt;
    use std::collections::BTreeMap;

    fn run(points: Vec<crate::model::Point>) -> Reproduction {
        let spec = SweepSpec {
            configs: vec!["1lb-nat".into()],
            rates: BTreeMap::new(),
            repeat: 3,
            duration_s: 10.0,
            warmup_s: 1.0,
            quick: false,
            generator: "loadgen".into(),
            clients: 3,
            profile: "paper".into(),
        };
        let mut r = Reproduction::new("t".into(), spec, serde_json::json!({}), BTreeMap::new(), 0);
        r.points = points;
        r
    }

    /// Three repetitions at one rate with these reply rates and error counts (of 1000 conns).
    fn reps(rates: [f64; 3], errors: [u64; 3]) -> Reproduction {
        run((0..3)
            .map(|i| pt("1lb-nat", 100.0, i as u32, rates[i], errors[i], 1000, None))
            .collect())
    }

    fn verdicts(c: &Comparison) -> Vec<(Metric, Verdict)> {
        c.rows.iter().map(|r| (r.metric, r.verdict)).collect()
    }

    #[test]
    fn self_compare_is_ok() {
        let a = reps([100.0, 95.0, 105.0], [10, 20, 30]);
        let c = compare(&a, &a, Rule::default()).expect("common points");
        assert_eq!(
            verdicts(&c),
            vec![
                (Metric::ReplyRate, Verdict::Ok),
                (Metric::ErrorRate, Verdict::Ok)
            ]
        );
        assert!(!c.regressed());
        assert!(c.differences.is_empty());
        assert_eq!(c.rows[0].change, Some(0.0));
    }

    #[test]
    fn reply_rate_regresses_only_beyond_threshold_and_range() {
        let base = reps([100.0, 95.0, 105.0], [0, 0, 0]);
        // -30 %, ranges apart: regressed.
        let slow = reps([70.0, 66.5, 73.5], [0, 0, 0]);
        let c = compare(&base, &slow, Rule::default()).expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Regressed);
        assert!((c.rows[0].change.expect("defined") + 30.0).abs() < 1e-9);
        assert!(c.regressed());
        assert!(c.verdict_line().starts_with("compare: REGRESSION"));
        // -15 % median but one repetition reaches into the baseline's range: noise.
        let noisy = reps([85.0, 80.0, 96.0], [0, 0, 0]);
        let c = compare(&base, &noisy, Rule::default()).expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Noise);
        assert!(!c.regressed());
        // -5 %: within the threshold.
        let c = compare(&base, &reps([95.0, 94.0, 96.0], [0, 0, 0]), Rule::default()).expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Ok);
        // +30 %: better.
        let c = compare(
            &base,
            &reps([130.0, 129.0, 131.0], [0, 0, 0]),
            Rule::default(),
        )
        .expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Better);
    }

    #[test]
    fn single_repetition_uses_the_threshold_alone() {
        let base = run(vec![pt("1lb-nat", 100.0, 0, 100.0, 0, 1000, None)]);
        let cur = run(vec![pt("1lb-nat", 100.0, 0, 89.0, 0, 1000, None)]);
        let c = compare(&base, &cur, Rule::default()).expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Regressed);
        let cur = run(vec![pt("1lb-nat", 100.0, 0, 91.0, 0, 1000, None)]);
        let c = compare(&base, &cur, Rule::default()).expect("ok");
        assert_eq!(c.rows[0].verdict, Verdict::Ok);
    }

    #[test]
    fn error_rate_needs_the_floor_the_threshold_and_the_range() {
        let base = reps([100.0; 3], [0, 0, 0]);
        // 0 % -> 0.5 %: below the 1 pp floor.
        let c = compare(&base, &reps([100.0; 3], [5, 5, 5]), Rule::default()).expect("ok");
        assert_eq!(c.rows[1].verdict, Verdict::Ok);
        assert_eq!(c.rows[1].change, Some(0.5));
        // 0 % -> 3 %: regressed.
        let c = compare(&base, &reps([100.0; 3], [30, 30, 30]), Rule::default()).expect("ok");
        assert_eq!(c.rows[1].verdict, Verdict::Regressed);
        // 20 % -> 21.5 %: above the floor but within 10 % of 20 %.
        let base = reps([100.0; 3], [200, 200, 200]);
        let c = compare(&base, &reps([100.0; 3], [215, 215, 215]), Rule::default()).expect("ok");
        assert_eq!(c.rows[1].verdict, Verdict::Ok);
        // 20 % -> 30 % but one baseline repetition had 32 %: noise.
        let wide = reps([100.0; 3], [200, 150, 320]);
        let c = compare(&wide, &reps([100.0; 3], [300, 300, 300]), Rule::default()).expect("ok");
        assert_eq!(c.rows[1].verdict, Verdict::Noise);
        // 20 % -> 5 %: better.
        let c = compare(&base, &reps([100.0; 3], [50, 50, 50]), Rule::default()).expect("ok");
        assert_eq!(c.rows[1].verdict, Verdict::Better);
    }

    #[test]
    fn no_common_points_and_bad_threshold_are_errors() {
        let a = reps([100.0; 3], [0; 3]);
        let b = run(vec![pt("2lb-nat", 100.0, 0, 100.0, 0, 1000, None)]);
        let e = compare(&a, &b, Rule::default()).expect_err("nothing common");
        assert!(e.to_string().contains("1lb-nat@100"), "{e}");
        assert!(e.to_string().contains("2lb-nat@100"), "{e}");
        let rule = Rule {
            max_regression_pct: -1.0,
            ..Rule::default()
        };
        assert_eq!(compare(&a, &a, rule), Err(CompareError::BadThreshold(-1.0)));
    }

    #[test]
    fn setup_differences_are_reported_not_refused() {
        let a = reps([100.0; 3], [0; 3]);
        let mut b = a.clone();
        b.spec.profile = "slow".into();
        b.versions.insert("git_commit".into(), "abc".into());
        let c = compare(&a, &b, Rule::default()).expect("still compared");
        assert_eq!(
            c.differences,
            vec![
                "profile: paper -> slow",
                "version git_commit: (none) -> abc"
            ]
        );
        assert!(c
            .render()
            .contains("note: runs differ in profile: paper -> slow"));
    }
}
