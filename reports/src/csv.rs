//! `points.csv` (one row per point and repetition) and `summary.csv` (median/min/max per
//! configuration and rate), RFC 4180 style: comma separated, `\n` line ends, a field quoted
//! when it holds a comma, quote or line break (quotes doubled), an empty field for "undefined".

use crate::model::Point;
use crate::stats::{config_rank, RateStats, Spread};

/// Columns of `points.csv`, in order.
pub const POINTS_COLUMNS: [&str; 19] = [
    "config",
    "lbs",
    "bi_active",
    "method",
    "offered_rate",
    "rep",
    "conns",
    "requests",
    "replies",
    "reply_rate",
    "reply_rate_samples",
    "errors",
    "error_rate_pct",
    "error_rate_replies_pct",
    "p50_ms",
    "p99_ms",
    "duration_s",
    "started_unix_ms",
    "generator_limited",
];

/// Quote one field if it needs it.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line from already formatted fields.
fn line(fields: &[String]) -> String {
    let mut l = fields
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
    l.push('\n');
    l
}

/// A number with `decimals` decimals; empty when undefined.
fn num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => String::new(),
    }
}

/// A rate as given (no trailing zeros: `1500` not `1500.000`).
fn rate(x: f64) -> String {
    format!("{x}")
}

/// `points.csv`: every point, sorted by configuration (Table I order), rate and repetition.
pub fn points_csv(points: &[Point]) -> String {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by(|a, b| {
        config_rank(&a.config)
            .cmp(&config_rank(&b.config))
            .then(a.offered_rate.total_cmp(&b.offered_rate))
            .then(a.rep.cmp(&b.rep))
    });
    let header: Vec<String> = POINTS_COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut out = line(&header);
    for p in sorted {
        let m = &p.measured;
        out.push_str(&line(&[
            p.config.clone(),
            p.lbs.to_string(),
            p.bi_active.to_string(),
            p.method.clone(),
            rate(p.offered_rate),
            p.rep.to_string(),
            m.conns.to_string(),
            m.requests.to_string(),
            m.replies.to_string(),
            num(Some(m.reply_rate), 3),
            m.reply_rate_samples.to_string(),
            m.errors.to_string(),
            num(Some(m.error_rate_pct()), 4),
            num(m.error_rate_replies_pct(), 4),
            num(m.p50_ms, 3),
            num(m.p99_ms, 3),
            num(Some(p.duration_s), 3),
            p.started_unix_ms.to_string(),
            m.generator_limited.clone().unwrap_or_default(),
        ]));
    }
    out
}

/// The quantities of `summary.csv`, each as `NAME_median,NAME_min,NAME_max`.
const SUMMARY_QUANTITIES: [&str; 5] = [
    "reply_rate",
    "error_rate_pct",
    "error_rate_replies_pct",
    "p50_ms",
    "p99_ms",
];

/// `summary.csv`: one row per configuration and rate.
pub fn summary_csv(stats: &[RateStats]) -> String {
    let mut header: Vec<String> = [
        "config",
        "lbs",
        "bi_active",
        "method",
        "offered_rate",
        "reps",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    for q in SUMMARY_QUANTITIES {
        for s in ["median", "min", "max"] {
            header.push(format!("{q}_{s}"));
        }
    }
    let mut out = line(&header);
    for s in stats {
        let mut row = vec![
            s.config.clone(),
            s.lbs.to_string(),
            s.bi_active.to_string(),
            s.method.clone(),
            rate(s.offered_rate),
            s.reps.to_string(),
        ];
        let spreads = [
            (Some(s.reply_rate), 3),
            (Some(s.error_rate_pct), 4),
            (s.error_rate_replies_pct, 4),
            (s.p50_ms, 3),
            (s.p99_ms, 3),
        ];
        for (sp, d) in spreads {
            push_spread(&mut row, sp, d);
        }
        out.push_str(&line(&row));
    }
    out
}

/// Append median, min, max (or three empty fields).
fn push_spread(row: &mut Vec<String>, s: Option<Spread>, decimals: usize) {
    row.push(num(s.map(|s| s.median), decimals));
    row.push(num(s.map(|s| s.min), decimals));
    row.push(num(s.map(|s| s.max), decimals));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize;
    use crate::stats::tests::pt;

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn points_rows_have_the_required_columns_in_order() {
        let mut p = pt("1lb-nat", 1500.0, 0, 1200.5, 5, 1000, Some(2.5));
        p.measured.generator_limited = Some("client CPU 100%, \"saturated\"".into());
        let httperf = pt("1lb-bi-nat", 1500.0, 1, 1400.0, 0, 0, None);
        let text = points_csv(&[p, httperf]);
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        let required = "config,lbs,bi_active,method,offered_rate,rep";
        assert!(header.starts_with(required), "{header}");
        for c in [
            "replies",
            "reply_rate",
            "errors",
            "error_rate_pct",
            "error_rate_replies_pct",
            "p50_ms",
            "p99_ms",
        ] {
            assert!(header.split(',').any(|h| h == c), "missing {c}");
        }
        // Table I order: bi-active first.
        assert_eq!(
            lines.next(),
            Some("1lb-bi-nat,1,true,nat,1500,1,0,0,0,1400.000,2,0,0.0000,0.0000,,,10.000,0,")
        );
        assert_eq!(
            lines.next(),
            Some(
                "1lb-nat,1,false,nat,1500,0,1000,1000,995,1200.500,2,5,0.5000,0.5025,2.500,10.000,\
                 10.000,0,\"client CPU 100%, \"\"saturated\"\"\""
            )
        );
        assert_eq!(lines.next(), None);
        for l in text.lines() {
            assert!(l.matches(',').count() >= POINTS_COLUMNS.len() - 1);
        }
    }

    #[test]
    fn summary_has_median_min_max() {
        let points = vec![
            pt("2lb-nat", 100.0, 0, 90.0, 0, 100, None),
            pt("2lb-nat", 100.0, 1, 80.0, 10, 100, None),
            pt("2lb-nat", 100.0, 2, 100.0, 20, 100, None),
        ];
        let text = summary_csv(&summarize(&points));
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        assert!(header.starts_with(
            "config,lbs,bi_active,method,offered_rate,reps,reply_rate_median,reply_rate_min,reply_rate_max,"
        ));
        let row = lines.next().expect("row");
        assert!(
            row.starts_with(
                "2lb-nat,2,false,nat,100,3,90.000,80.000,100.000,10.0000,0.0000,20.0000,"
            ),
            "{row}"
        );
        assert!(row.ends_with(",,,,,,"), "no latency for httperf: {row}");
    }
}
