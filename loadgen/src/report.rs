//! What the binary prints for a result: httperf's `-v` reply-rate samples and `-vv` lifetime
//! histogram, the summary in httperf's layout ([`crate::httperf_fmt`]), then (modern style or
//! `-v`) the latency and issue-lateness lines. Pure: writes to any `io::Write`.

use std::io::{self, Write};

use crate::httperf_fmt;
use crate::result::{Percentiles, RunResult};

/// Write the report of `r`: `verbose` is httperf's `-v` level, `modern` a URL-style run.
pub fn write(r: &RunResult, verbose: u8, modern: bool, out: &mut dyn Write) -> io::Result<()> {
    if verbose > 0 {
        for s in &r.summary.reply_rate_samples {
            writeln!(out, "reply-rate = {s:<8.1}")?;
        }
    }
    if verbose > 1 && !r.lifetime_ms_bins.is_empty() {
        // httperf -vv: 1-ms bins of connection lifetime, ':' marking skipped empty bins.
        writeln!(out, "\nConnection lifetime histogram (time in ms):")?;
        let mut prev: Option<u32> = None;
        for &(bin, count) in &r.lifetime_ms_bins {
            if bin > 0 && prev != Some(bin - 1) {
                writeln!(out, "{:>14}", ':')?;
            }
            writeln!(out, "{:16.1} {}", f64::from(bin) + 0.5, count)?;
            prev = Some(bin);
        }
        writeln!(out)?;
    }
    httperf_fmt::write_summary(r, out)?;
    if modern || verbose > 0 {
        let pct = |p: &Percentiles| {
            format!(
                "p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
                p.p50, p.p90, p.p99, p.p999, p.max
            )
        };
        // Without a reply there is no latency to report; zeros would read as "instant".
        let (latency, uncorrected) = if r.replies() == 0 {
            (
                "n/a (no replies)".to_string(),
                "n/a (no replies)".to_string(),
            )
        } else {
            (
                pct(&r.summary.latency_ms),
                pct(&r.summary.latency_uncorrected_ms),
            )
        };
        writeln!(out)?;
        writeln!(out, "Latency [ms] (from scheduled send): {latency}")?;
        writeln!(out, "Latency [ms] (uncorrected):         {uncorrected}")?;
        let lateness = if r.counts.requests_sent == 0 {
            "n/a (nothing sent)".to_string()
        } else {
            pct(&r.summary.issue_lateness_ms)
        };
        writeln!(out, "Issue lateness [ms] (scheduled -> send): {lateness}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::golden_run;

    fn text(r: &RunResult, verbose: u8, modern: bool) -> String {
        let mut v = Vec::new();
        write(r, verbose, modern, &mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn httperf_style_is_the_bare_summary() {
        let r = golden_run();
        assert_eq!(text(&r, 0, false), httperf_fmt::summary_string(&r));
    }

    #[test]
    fn verbose_and_modern_extras() {
        let r = golden_run();
        let modern = text(&r, 0, true);
        assert!(modern.starts_with(&httperf_fmt::summary_string(&r)));
        assert!(modern.contains("\nLatency [ms] (from scheduled send): p50 "));
        assert!(modern.contains("Latency [ms] (uncorrected):         p50 "));
        assert!(modern.contains("Issue lateness [ms] (scheduled -> send): p50 "));
        let v1 = text(&r, 1, false);
        assert!(v1.starts_with("reply-rate = "), "{v1}");
        assert!(v1.contains("Latency [ms]"));
        let v2 = text(&r, 2, false);
        assert!(v2.contains("Connection lifetime histogram (time in ms):"));
    }
}
