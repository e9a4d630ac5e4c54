//! `--fail-if` thresholds for CI: `METRIC OP VALUE[UNIT]`, e.g. `error-rate>1%`, `p99>20ms`,
//! `reply-rate<9000`. A threshold *fails* the run when its comparison is true of the result.
//!
//! Metrics (see [`Metric`]): `error-rate` (%, errors / connections attempted),
//! `error-rate-replies` (%, errors / replies, autobench's), `reply-rate` (replies/s, httperf's
//! sampled average; for runs too short for a sample, replies / test-duration), `request-rate`
//! (req/s), `p50` `p90` `p99` `p999` `max` (coordinated-omission-corrected response latency,
//! unit `us`, `ms` or `s` required), `connect-p99` (connect time, same units), `replies`,
//! `errors` (counts). Operators: `<` `<=` `>` `>=`.

use std::fmt;
use std::str::FromStr;

use crate::result::{Percentiles, RunResult};

/// Valid metric names, for error messages.
pub const METRIC_NAMES: &str =
    "error-rate, error-rate-replies, reply-rate, request-rate, p50, p90, p99, p999, max, connect-p99, replies, errors";

/// A quantity a threshold can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// errors / connections attempted, %.
    ErrorRate,
    /// errors / replies, % (autobench).
    ErrorRateReplies,
    /// Average sampled reply rate, replies/s.
    ReplyRate,
    /// Requests sent / test-duration, req/s.
    RequestRate,
    /// Corrected response latency percentile (per mille: 500, 900, 990, 999) or max (1000).
    Latency(u16),
    /// Connect time p99.
    ConnectP99,
    /// httperf replies.
    Replies,
    /// httperf errors total.
    Errors,
}

/// The kind of value a metric takes, which decides the accepted units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Percent,
    Rate,
    Time,
    Count,
}

impl Metric {
    fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "error-rate" => Metric::ErrorRate,
            "error-rate-replies" => Metric::ErrorRateReplies,
            "reply-rate" => Metric::ReplyRate,
            "request-rate" => Metric::RequestRate,
            "p50" => Metric::Latency(500),
            "p90" => Metric::Latency(900),
            "p99" => Metric::Latency(990),
            "p999" | "p99.9" => Metric::Latency(999),
            "max" => Metric::Latency(1000),
            "connect-p99" => Metric::ConnectP99,
            "replies" => Metric::Replies,
            "errors" => Metric::Errors,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Metric::ErrorRate | Metric::ErrorRateReplies => Kind::Percent,
            Metric::ReplyRate | Metric::RequestRate => Kind::Rate,
            Metric::Latency(_) | Metric::ConnectP99 => Kind::Time,
            Metric::Replies | Metric::Errors => Kind::Count,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error-rate",
            Metric::ErrorRateReplies => "error-rate-replies",
            Metric::ReplyRate => "reply-rate",
            Metric::RequestRate => "request-rate",
            Metric::Latency(500) => "p50",
            Metric::Latency(900) => "p90",
            Metric::Latency(990) => "p99",
            Metric::Latency(999) => "p999",
            Metric::Latency(_) => "max",
            Metric::ConnectP99 => "connect-p99",
            Metric::Replies => "replies",
            Metric::Errors => "errors",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error rate (errors / connections)",
            Metric::ErrorRateReplies => "error rate (errors / replies)",
            Metric::ReplyRate => "reply rate",
            Metric::RequestRate => "request rate",
            Metric::Latency(1000) => "max corrected response latency",
            Metric::Latency(_) => "corrected response latency",
            Metric::ConnectP99 => "connect time p99",
            Metric::Replies => "replies",
            Metric::Errors => "errors",
        }
    }

    /// The metric's value in `r`, in canonical units (%, per second, ms, count). `None` when
    /// undefined (error-rate-replies with errors but no replies), which fails every threshold.
    pub fn value(self, r: &RunResult) -> Option<f64> {
        Some(match self {
            Metric::ErrorRate => r.error_rate_percent(),
            Metric::ErrorRateReplies => return r.error_rate_replies_percent(),
            Metric::ReplyRate => {
                let st = r.reply_rate.stats();
                if st.samples > 0 || r.duration_ns == 0 {
                    st.avg
                } else {
                    r.replies() as f64 / r.duration_s()
                }
            }
            Metric::RequestRate => r.request_rate(),
            Metric::Latency(pm) => {
                let p = Percentiles::of(&r.histograms.latency, &r.moments.latency);
                match pm {
                    500 => p.p50,
                    900 => p.p90,
                    990 => p.p99,
                    999 => p.p999,
                    _ => p.max,
                }
            }
            Metric::ConnectP99 => Percentiles::of(&r.histograms.connect, &r.moments.connect).p99,
            Metric::Replies => r.replies() as f64,
            Metric::Errors => r.errors_total() as f64,
        })
    }
}

/// Comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Gt => actual > threshold,
            Op::Ge => actual >= threshold,
        }
    }
}

/// One parsed `--fail-if` expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// What is tested.
    pub metric: Metric,
    /// How.
    pub op: Op,
    /// Against what, in canonical units (%, per second, ms, count).
    pub value: f64,
    /// The expression as given (for messages).
    pub text: String,
}

/// A `--fail-if` expression that cannot be parsed; the message quotes it and says what was
/// expected where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--fail-if '{expr}': {message}")]
pub struct GateError {
    /// The expression as given.
    pub expr: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl FromStr for Threshold {
    type Err = GateError;

    fn from_str(expr: &str) -> Result<Threshold, GateError> {
        let err = |message: String| GateError {
            expr: expr.to_string(),
            message,
        };
        let s = expr.trim();
        if s.is_empty() {
            return Err(err(format!(
                "empty expression; expected METRIC OP VALUE, e.g. 'p99>20ms' (metrics: {METRIC_NAMES})"
            )));
        }
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_len];
        let metric = Metric::parse(name).ok_or_else(|| {
            err(if name.is_empty() {
                format!("expected a metric name at the start (one of: {METRIC_NAMES})")
            } else {
                format!("unknown metric '{name}' (valid metrics: {METRIC_NAMES})")
            })
        })?;
        let rest = s[name_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(err(format!(
                "expected an operator (<, <=, >, >=) after '{name}', found {}",
                if rest.is_empty() {
                    "end of expression".to_string()
                } else {
                    format!("'{rest}'")
                }
            )));
        };
        let rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num_text = &rest[..num_len];
        let number: f64 = num_text.parse().map_err(|_| {
            err(format!(
                "expected a number after '{}', found {}",
                op.symbol(),
                if rest.is_empty() {
                    "end of expression".to_string()
                } else {
                    format!("'{rest}'")
                }
            ))
        })?;
        if !number.is_finite() || number < 0.0 {
            return Err(err(format!(
                "the value must be a finite non-negative number, found '{num_text}'"
            )));
        }
        let unit = rest[num_len..].trim();
        let value = match (metric.kind(), unit) {
            (Kind::Percent, "" | "%") => number,
            (Kind::Percent, u) => {
                return Err(err(format!(
                    "unexpected unit '{u}' for {name}; expected '%' or nothing"
                )))
            }
            (Kind::Rate, "" | "/s") => number,
            (Kind::Rate, u) => {
                return Err(err(format!(
                    "unexpected unit '{u}' for {name}; expected '/s' or nothing"
                )))
            }
            (Kind::Time, "us") => number / 1000.0,
            (Kind::Time, "ms") => number,
            (Kind::Time, "s") => number * 1000.0,
            (Kind::Time, "") => {
                return Err(err(format!(
                "{name} needs a unit after {num_text}: us, ms or s (e.g. '{name}{}{num_text}ms')",
                op.symbol()
            )))
            }
            (Kind::Time, u) => {
                return Err(err(format!(
                    "unknown time unit '{u}' for {name}; expected us, ms or s"
                )))
            }
            (Kind::Count, "") => {
                if number.fract() != 0.0 {
                    return Err(err(format!(
                        "{name} is a count; expected a whole number, found {num_text}"
                    )));
                }
                number
            }
            (Kind::Count, u) => {
                return Err(err(format!(
                    "unexpected unit '{u}' for {name}; it is a plain count"
                )))
            }
        };
        Ok(Threshold {
            metric,
            op,
            value,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.text)
    }
}

/// Format a value of `kind` with its unit.
fn show(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Percent => format!("{v:.3}%"),
        Kind::Rate => format!("{v:.1}/s"),
        Kind::Time => format!("{v:.3} ms"),
        Kind::Count => format!("{v:.0}"),
    }
}

impl Threshold {
    /// `Some(message)` if this threshold fails `r`.
    pub fn evaluate(&self, r: &RunResult) -> Option<String> {
        let kind = self.metric.kind();
        match self.metric.value(r) {
            Some(actual) if !self.op.holds(actual, self.value) => None,
            Some(actual) => Some(format!(
                "--fail-if '{}': {} ({}) is {}, which is {} {}",
                self.text,
                self.metric.name(),
                self.metric.describe(),
                show(kind, actual),
                self.op.symbol(),
                show(kind, self.value),
            )),
            None => Some(format!(
                "--fail-if '{}': {} ({}) is undefined ({} errors but no replies), which fails the check",
                self.text,
                self.metric.name(),
                self.metric.describe(),
                r.errors_total()
            )),
        }
    }
}

/// Check every threshold against `r`: one message per failed threshold (empty = pass).
pub fn check(thresholds: &[Threshold], r: &RunResult) -> Vec<String> {
    thresholds.iter().filter_map(|t| t.evaluate(r)).collect()
}

/// Parse several expressions, stopping at the first bad one.
pub fn parse_all<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Threshold>, GateError> {
    exprs.iter().map(|e| e.as_ref().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::golden_run;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<Threshold>().unwrap_err().to_string()
    }

    #[test]
    fn parses_every_metric_and_unit() {
        assert_eq!(
            t("error-rate>1%"),
            Threshold {
                metric: Metric::ErrorRate,
                op: Op::Gt,
                value: 1.0,
                text: "error-rate>1%".into()
            }
        );
        assert_eq!(t("error-rate>=1.5").value, 1.5);
        assert_eq!(t(" p99 > 20ms ").op, Op::Gt);
        assert_eq!(t("p99>20ms").value, 20.0);
        assert_eq!(t("p99>250us").value, 0.25);
        assert_eq!(t("p999>=2s").value, 2000.0);
        assert_eq!(t("p99.9>2s").metric, Metric::Latency(999));
        assert_eq!(t("p50<=1ms").op, Op::Le);
        assert_eq!(t("p90<1ms").metric, Metric::Latency(900));
        assert_eq!(t("max>1s").metric, Metric::Latency(1000));
        assert_eq!(t("connect-p99>3ms").metric, Metric::ConnectP99);
        assert_eq!(t("reply-rate<9000").value, 9000.0);
        assert_eq!(t("request-rate<10/s").metric, Metric::RequestRate);
        assert_eq!(
            t("error-rate-replies>0.5%").metric,
            Metric::ErrorRateReplies
        );
        assert_eq!(t("replies<100").metric, Metric::Replies);
        assert_eq!(t("errors>0").metric, Metric::Errors);
        assert_eq!(parse_all(&["errors>0", "p99>1ms"]).unwrap().len(), 2);
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        assert_eq!(
            err("p99>>2ms"),
            "--fail-if 'p99>>2ms': expected a number after '>', found '>2ms'"
        );
        assert_eq!(
            err("p98>2ms"),
            format!("--fail-if 'p98>2ms': unknown metric 'p98' (valid metrics: {METRIC_NAMES})")
        );
        assert_eq!(
            err("p99=2ms"),
            "--fail-if 'p99=2ms': expected an operator (<, <=, >, >=) after 'p99', found '=2ms'"
        );
        assert_eq!(
            err("p99>20"),
            "--fail-if 'p99>20': p99 needs a unit after 20: us, ms or s (e.g. 'p99>20ms')"
        );
        assert_eq!(
            err("p99>20min"),
            "--fail-if 'p99>20min': unknown time unit 'min' for p99; expected us, ms or s"
        );
        assert_eq!(
            err("error-rate>1ms"),
            "--fail-if 'error-rate>1ms': unexpected unit 'ms' for error-rate; expected '%' or nothing"
        );
        assert_eq!(
            err("errors>1.5"),
            "--fail-if 'errors>1.5': errors is a count; expected a whole number, found 1.5"
        );
        assert_eq!(
            err("p99>"),
            "--fail-if 'p99>': expected a number after '>', found end of expression"
        );
        assert_eq!(err("p99"), "--fail-if 'p99': expected an operator (<, <=, >, >=) after 'p99', found end of expression");
        assert!(err("").contains("empty expression"));
        assert!(err(">5").contains("expected a metric name at the start"));
        assert!(err("p99>1.2.3ms").contains("expected a number after '>'"));
        assert!(parse_all(&["errors>0", "bogus<1"])
            .unwrap_err()
            .to_string()
            .contains("'bogus'"));
    }

    #[test]
    fn check_reports_each_failed_threshold() {
        // golden_run: 25 % error rate, 1 error, 4 replies, latencies 3, 3, 4, 8 ms,
        // connect 1..3 ms, reply rate samples 0.6 and 0.2, request rate 4/11.
        let r = golden_run();
        let ths = parse_all(&[
            "error-rate>1%",         // fails: 25 %
            "error-rate>25%",        // passes: not strictly greater
            "error-rate>=25%",       // fails
            "error-rate-replies>20", // fails: 25 %
            "p99>5ms",               // fails: 8 ms (HDR bucket top 8.003 capped at the exact max)
            "max>8ms",               // passes: exact max 8 ms
            "p50>3.1ms",             // passes: 3.001 ms
            "connect-p99>2ms",       // fails: 3 ms
            "reply-rate<0.5",        // fails: 0.4
            "request-rate<0.3",      // passes: 0.36
            "replies<5",             // fails: 4
            "errors>0",              // fails: 1
        ])
        .unwrap();
        let msgs = check(&ths, &r);
        assert_eq!(
            msgs,
            vec![
                "--fail-if 'error-rate>1%': error-rate (error rate (errors / connections)) is 25.000%, which is > 1.000%",
                "--fail-if 'error-rate>=25%': error-rate (error rate (errors / connections)) is 25.000%, which is >= 25.000%",
                "--fail-if 'error-rate-replies>20': error-rate-replies (error rate (errors / replies)) is 25.000%, which is > 20.000%",
                "--fail-if 'p99>5ms': p99 (corrected response latency) is 8.000 ms, which is > 5.000 ms",
                "--fail-if 'connect-p99>2ms': connect-p99 (connect time p99) is 3.000 ms, which is > 2.000 ms",
                "--fail-if 'reply-rate<0.5': reply-rate (reply rate) is 0.4/s, which is < 0.5/s",
                "--fail-if 'replies<5': replies (replies) is 4, which is < 5",
                "--fail-if 'errors>0': errors (errors) is 1, which is > 0",
            ]
        );
        assert!(check(&parse_all(&["error-rate>30%", "p99>1s"]).unwrap(), &r).is_empty());
    }

    #[test]
    fn undefined_and_short_run_values() {
        use crate::record::{testdata::facts, ErrorKind, Recorder, ReplyRecord};
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0);
        rec.error(t0, ErrorKind::ConnRefused);
        let r = rec.finish(t0 + Duration::from_secs(1), facts(0, 1));
        let msgs = check(&[t("error-rate-replies>50%")], &r);
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].contains("undefined (1 errors but no replies)"),
            "{}",
            msgs[0]
        );
        // No reply-rate sample in a 2-s run: reply-rate falls back to replies / duration.
        let mut rec = Recorder::new(t0);
        for _ in 0..10 {
            rec.reply(
                t0,
                &ReplyRecord {
                    status: 200,
                    ..Default::default()
                },
            );
        }
        let r = rec.finish(t0 + Duration::from_secs(2), facts(0, 1));
        assert_eq!(Metric::ReplyRate.value(&r), Some(5.0));
        assert!(check(&[t("reply-rate<5")], &r).is_empty());
        assert_eq!(check(&[t("reply-rate<6")], &r).len(), 1);
    }
}
