//! httperf 0.9.0's summary layout: [`write_summary`] prints a [`RunResult`] line for line as
//! httperf's `stat/basic.c` does (same labels, units, `printf` precisions and arithmetic, including
//! its integer division of byte counts), and [`parse_summary`] reads such text (ours or real
//! httperf's) back into numbers.
//!
//! Both directions share one table of line templates ([`TEMPLATES`]), in which `{}` stands for a
//! number, so the printer and the parser cannot drift apart.

use std::io::{self, Write};

use crate::record::ErrorKind;
use crate::result::{ErrorCounts, RunResult};

/// The summary lines httperf prints, in order; `{}` marks a number.
pub const TEMPLATES: [&str; 16] = [
    "Maximum connect burst length: {}",
    "Total: connections {} requests {} replies {} test-duration {} s",
    "Connection rate: {} conn/s ({} ms/conn, <={} concurrent connections)",
    "Connection time [ms]: min {} avg {} max {} median {} stddev {}",
    "Connection time [ms]: connect {}",
    "Connection length [replies/conn]: {}",
    "Request rate: {} req/s ({} ms/req)",
    "Request size [B]: {}",
    "Reply rate [replies/s]: min {} avg {} max {} stddev {} ({} samples)",
    "Reply time [ms]: response {} transfer {}",
    "Reply size [B]: header {} content {} footer {} (total {})",
    "Reply status: 1xx={} 2xx={} 3xx={} 4xx={} 5xx={}",
    "CPU time [s]: user {} system {} (user {}% system {}% total {}%)",
    "Net I/O: {} KB/s ({}*10^6 bps)",
    "Errors: total {} client-timo {} socket-timo {} connrefused {} connreset {}",
    "Errors: fd-unavail {} addrunavail {} ftab-full {} other {}",
];

/// Which template lines must be present for a text to count as an httperf summary
/// (all but "Maximum connect burst length", which httperf omits for some workloads).
const REQUIRED: [bool; 16] = [
    false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
];

/// `a / b` as httperf computes rates: 0 when `b` is 0 (httperf would print inf or nan).
fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Print `r` in httperf's layout: the command line, the connect-burst line, then the summary
/// exactly as httperf 0.9.0's `stat/basic.c` `dump()` prints it.
pub fn write_summary(r: &RunResult, out: &mut dyn Write) -> io::Result<()> {
    let delta = r.duration_s();
    let c = &r.counts;
    let m = &r.moments;
    let total_replies = r.replies();
    let lifetimes = m.lifetime.count;

    writeln!(out, "{}", r.command_line)?;
    writeln!(out, "Maximum connect burst length: {}", r.max_connect_burst)?;
    writeln!(out)?;
    writeln!(
        out,
        "Total: connections {} requests {} replies {} test-duration {:.3} s",
        c.conns_attempted, c.requests_sent, total_replies, delta
    )?;
    writeln!(out)?;

    let conn_period = div(delta, c.conns_attempted as f64);
    writeln!(
        out,
        "Connection rate: {:.1} conn/s ({:.1} ms/conn, <={} concurrent connections)",
        div(c.conns_attempted as f64, delta),
        1e3 * conn_period,
        r.max_concurrent
    )?;
    let (lt_min, lt_avg, lt_max, lt_stddev) = if lifetimes > 0 {
        (
            m.lifetime.min_ns as f64 / 1e9,
            m.lifetime.mean_s(),
            m.lifetime.max_ns as f64 / 1e9,
            m.lifetime.stddev_s(),
        )
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    writeln!(
        out,
        "Connection time [ms]: min {:.1} avg {:.1} max {:.1} median {:.1} stddev {:.1}",
        1e3 * lt_min,
        1e3 * lt_avg,
        1e3 * lt_max,
        1e3 * r.lifetime_median_s(),
        1e3 * lt_stddev
    )?;
    writeln!(
        out,
        "Connection time [ms]: connect {:.1}",
        1e3 * m.connect.mean_s()
    )?;
    writeln!(
        out,
        "Connection length [replies/conn]: {:.3}",
        div(total_replies as f64, lifetimes as f64)
    )?;
    writeln!(out)?;

    let call_period = div(delta, c.requests_sent as f64);
    writeln!(
        out,
        "Request rate: {:.1} req/s ({:.1} ms/req)",
        div(c.requests_sent as f64, delta),
        1e3 * call_period
    )?;
    // httperf divides integer byte counts by integer counts (truncating) before printing.
    let call_size = c.request_bytes.checked_div(c.requests_sent).unwrap_or(0);
    writeln!(out, "Request size [B]: {:.1}", call_size as f64)?;
    writeln!(out)?;

    let rs = r.reply_rate.stats();
    writeln!(
        out,
        "Reply rate [replies/s]: min {:.1} avg {:.1} max {:.1} stddev {:.1} ({} samples)",
        rs.min, rs.avg, rs.max, rs.stddev, rs.samples
    )?;
    // httperf: response averaged over replies started, transfer over 1xx..5xx replies.
    writeln!(
        out,
        "Reply time [ms]: response {:.1} transfer {:.1}",
        1e3 * m.response.mean_s(),
        1e3 * div(m.transfer.sum_s(), total_replies as f64)
    )?;
    let hdr = c.header_bytes.checked_div(total_replies).unwrap_or(0);
    let body = c.body_bytes.checked_div(total_replies).unwrap_or(0);
    let foot = c.footer_bytes.checked_div(total_replies).unwrap_or(0);
    writeln!(
        out,
        "Reply size [B]: header {:.1} content {:.1} footer {:.1} (total {:.1})",
        hdr as f64,
        body as f64,
        foot as f64,
        hdr.saturating_add(body).saturating_add(foot) as f64
    )?;
    let s = &r.status;
    writeln!(
        out,
        "Reply status: 1xx={} 2xx={} 3xx={} 4xx={} 5xx={}",
        s.s1xx, s.s2xx, s.s3xx, s.s4xx, s.s5xx
    )?;
    writeln!(out)?;

    let (user, sys) = (r.cpu.user_s, r.cpu.system_s);
    writeln!(
        out,
        "CPU time [s]: user {:.2} system {:.2} (user {:.1}% system {:.1}% total {:.1}%)",
        user,
        sys,
        100.0 * div(user, delta),
        100.0 * div(sys, delta),
        100.0 * div(user + sys, delta)
    )?;
    let total_size = r.net_io_bytes() as f64;
    writeln!(
        out,
        "Net I/O: {:.1} KB/s ({:.1}*10^6 bps)",
        div(total_size, delta) / 1024.0,
        div(8e-6 * total_size, delta)
    )?;
    writeln!(out)?;

    let e = &r.errors;
    writeln!(
        out,
        "Errors: total {} client-timo {} socket-timo {} connrefused {} connreset {}",
        e.total(),
        e.client_timo,
        e.socket_timo,
        e.conn_refused,
        e.conn_reset
    )?;
    writeln!(
        out,
        "Errors: fd-unavail {} addrunavail {} ftab-full {} other {}",
        e.fd_unavail, e.addr_unavail, e.ftab_full, e.other
    )?;
    Ok(())
}

/// The summary as a `String` (convenience for tests and reports).
pub fn summary_string(r: &RunResult) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_summary(r, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Connection-time statistics as printed (milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnTimeMs {
    /// min
    pub min: f64,
    /// avg
    pub avg: f64,
    /// max
    pub max: f64,
    /// median
    pub median: f64,
    /// stddev
    pub stddev: f64,
}

/// The numbers of an httperf summary, as printed (rounded as printed). Serialisable so that
/// a harness can keep the parsed output of real httperf runs in its result files.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParsedSummary {
    /// The echoed command line (first line starting with "httperf "), if present.
    pub command_line: Option<String>,
    /// "Maximum connect burst length", if present.
    pub max_connect_burst: Option<u64>,
    /// Total: connections.
    pub connections: u64,
    /// Total: requests.
    pub requests: u64,
    /// Total: replies.
    pub replies: u64,
    /// Total: test-duration (s).
    pub test_duration_s: f64,
    /// Connection rate (conn/s).
    pub connection_rate: f64,
    /// ms/conn.
    pub ms_per_conn: f64,
    /// "<=N concurrent connections".
    pub max_concurrent: u64,
    /// Connection time \[ms\] min/avg/max/median/stddev.
    pub conn_time_ms: ConnTimeMs,
    /// Connection time \[ms\]: connect.
    pub connect_ms: f64,
    /// Connection length \[replies/conn\].
    pub conn_length: f64,
    /// Request rate (req/s).
    pub request_rate: f64,
    /// ms/req.
    pub ms_per_req: f64,
    /// Request size \[B\].
    pub request_size: f64,
    /// Reply rate min.
    pub reply_rate_min: f64,
    /// Reply rate avg.
    pub reply_rate_avg: f64,
    /// Reply rate max.
    pub reply_rate_max: f64,
    /// Reply rate stddev.
    pub reply_rate_stddev: f64,
    /// Reply rate samples.
    pub reply_rate_samples: u64,
    /// Reply time \[ms\]: response.
    pub response_ms: f64,
    /// Reply time \[ms\]: transfer.
    pub transfer_ms: f64,
    /// Reply size \[B\]: header.
    pub reply_header: f64,
    /// Reply size \[B\]: content.
    pub reply_content: f64,
    /// Reply size \[B\]: footer.
    pub reply_footer: f64,
    /// Reply size \[B\]: total.
    pub reply_total: f64,
    /// Reply status 1xx..5xx.
    pub status: [u64; 5],
    /// CPU user seconds.
    pub cpu_user_s: f64,
    /// CPU system seconds.
    pub cpu_system_s: f64,
    /// CPU user %.
    pub cpu_user_pct: f64,
    /// CPU system %.
    pub cpu_system_pct: f64,
    /// CPU total %.
    pub cpu_total_pct: f64,
    /// Net I/O KB/s.
    pub net_io_kb_s: f64,
    /// Net I/O 10^6 bps.
    pub net_io_mbps: f64,
    /// "Errors: total".
    pub errors_total: u64,
    /// Errors by class.
    pub errors: ErrorCounts,
}

impl ParsedSummary {
    /// Errors / connections * 100 (0 without connections), the primary error rate.
    pub fn error_rate_percent(&self) -> f64 {
        if self.connections == 0 {
            if self.errors_total > 0 {
                100.0
            } else {
                0.0
            }
        } else {
            self.errors_total as f64 * 100.0 / self.connections as f64
        }
    }
}

/// Why a text is not a readable httperf summary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A line with a known label does not follow its template.
    #[error(
        "line {line}, column {column}: {message} (line: {text:?}; expected the form {template:?})"
    )]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// 1-based character column where matching failed.
        column: usize,
        /// What was wrong.
        message: String,
        /// The offending line.
        text: String,
        /// The template it should follow.
        template: String,
    },
    /// A line that starts with a known label matches none of that label's templates.
    #[error("line {line}: {text:?} starts like an httperf summary line but matches none of: {candidates}")]
    UnknownForm {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
        /// The templates tried.
        candidates: String,
    },
    /// The same summary line appears twice.
    #[error("line {line}: duplicate summary line {template:?} (first seen on line {first})")]
    Duplicate {
        /// 1-based line number of the repeat.
        line: usize,
        /// 1-based line number of the first occurrence.
        first: usize,
        /// The template.
        template: String,
    },
    /// A required summary line is absent.
    #[error("missing summary line of the form {template:?}")]
    Missing {
        /// The template.
        template: String,
    },
    /// A value that must be a whole number is not.
    #[error("line {line}: {value} is not a non-negative whole number in {template:?}")]
    NotInteger {
        /// 1-based line number.
        line: usize,
        /// The value as parsed.
        value: f64,
        /// The template.
        template: String,
    },
}

/// Match `line` against `template`; on success the numbers in order, on failure
/// `(column, message)`.
fn match_template(line: &str, template: &str) -> Result<Vec<f64>, (usize, String)> {
    let mut nums = Vec::new();
    let mut pos = 0usize; // byte offset in line
    let col = |pos: usize| line[..pos].chars().count() + 1;
    let mut pieces = template.split("{}").peekable();
    let mut first = true;
    while let Some(lit) = pieces.next() {
        if !first {
            // A number precedes this literal.
            let rest = &line[pos..];
            let len: usize = rest
                .char_indices()
                .take_while(|(_, ch)| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '+'))
                .map(|(_, ch)| ch.len_utf8())
                .sum();
            let tok = &rest[..len];
            // "10^6" and similar never occur as numbers: a token ending in 'e' is a word.
            let value: f64 = tok.parse().map_err(|_| {
                (
                    col(pos),
                    if tok.is_empty() {
                        format!(
                            "expected a number, found {:?}",
                            rest.chars().next().unwrap_or(' ')
                        )
                    } else {
                        format!("expected a number, found {tok:?}")
                    },
                )
            })?;
            nums.push(value);
            pos += len;
        }
        first = false;
        let rest = &line[pos..];
        if !rest.starts_with(lit) {
            let found: String = rest.chars().take(lit.chars().count().max(1)).collect();
            return Err((
                col(pos),
                if rest.is_empty() {
                    format!("line ends where {lit:?} was expected")
                } else {
                    format!("expected {lit:?}, found {found:?}")
                },
            ));
        }
        pos += lit.len();
        if pieces.peek().is_none() && pos != line.len() {
            return Err((
                col(pos),
                format!("unexpected trailing text {:?}", &line[pos..]),
            ));
        }
    }
    Ok(nums)
}

/// Text before a template's first number: identifies which line it is.
fn prefix(template: &str) -> &str {
    template.split("{}").next().unwrap_or(template)
}

/// Text up to and including the first ':' (the label a line starts with).
fn label(template: &str) -> &str {
    match template.find(':') {
        Some(i) => &template[..=i],
        None => template,
    }
}

fn to_u64(v: f64, line: usize, t: &str) -> Result<u64, ParseError> {
    if v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64 {
        Ok(v as u64)
    } else {
        Err(ParseError::NotInteger {
            line,
            value: v,
            template: t.to_string(),
        })
    }
}

/// Parse an httperf-format summary (ours or real httperf 0.9.0's, including the echoed command
/// line, warnings and verbose lines, which are skipped) back into numbers.
pub fn parse_summary(text: &str) -> Result<ParsedSummary, ParseError> {
    let mut found: [Option<(usize, Vec<f64>)>; 16] = Default::default();
    let mut command_line = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim_end();
        if command_line.is_none() && line.starts_with("httperf ") {
            command_line = Some(line.to_string());
            continue;
        }
        let Some(ti) = TEMPLATES.iter().position(|t| line.starts_with(prefix(t))) else {
            // A known label with an unknown continuation is an error; anything else is noise.
            let cands: Vec<&str> = TEMPLATES
                .iter()
                .copied()
                .filter(|t| line.starts_with(label(t)))
                .collect();
            if !cands.is_empty() {
                return Err(ParseError::UnknownForm {
                    line: lineno,
                    text: line.to_string(),
                    candidates: cands.join(" | "),
                });
            }
            continue;
        };
        let t = TEMPLATES[ti];
        let nums = match_template(line, t).map_err(|(column, message)| ParseError::BadLine {
            line: lineno,
            column,
            message,
            text: line.to_string(),
            template: t.to_string(),
        })?;
        if let Some((first, _)) = &found[ti] {
            return Err(ParseError::Duplicate {
                line: lineno,
                first: *first,
                template: t.to_string(),
            });
        }
        found[ti] = Some((lineno, nums));
    }
    for (ti, req) in REQUIRED.iter().enumerate() {
        if *req && found[ti].is_none() {
            return Err(ParseError::Missing {
                template: TEMPLATES[ti].to_string(),
            });
        }
    }
    // Every required slot is Some from here on; `get` returns the numbers and their line.
    let get = |ti: usize| -> (usize, Vec<f64>) {
        found[ti]
            .clone()
            .unwrap_or((0, vec![0.0; TEMPLATES[ti].matches("{}").count()]))
    };
    let int = |ti: usize, k: usize| -> Result<u64, ParseError> {
        let (line, nums) = get(ti);
        to_u64(nums[k], line, TEMPLATES[ti])
    };
    let num = |ti: usize, k: usize| -> f64 { get(ti).1[k] };

    let max_connect_burst = match &found[0] {
        Some(_) => Some(int(0, 0)?),
        None => None,
    };
    let mut errors = ErrorCounts::default();
    errors.add(ErrorKind::ClientTimo, int(14, 1)?);
    errors.add(ErrorKind::SocketTimo, int(14, 2)?);
    errors.add(ErrorKind::ConnRefused, int(14, 3)?);
    errors.add(ErrorKind::ConnReset, int(14, 4)?);
    errors.add(ErrorKind::FdUnavail, int(15, 0)?);
    errors.add(ErrorKind::AddrUnavail, int(15, 1)?);
    errors.add(ErrorKind::FtabFull, int(15, 2)?);
    errors.add(ErrorKind::Other, int(15, 3)?);
    Ok(ParsedSummary {
        command_line,
        max_connect_burst,
        connections: int(1, 0)?,
        requests: int(1, 1)?,
        replies: int(1, 2)?,
        test_duration_s: num(1, 3),
        connection_rate: num(2, 0),
        ms_per_conn: num(2, 1),
        max_concurrent: int(2, 2)?,
        conn_time_ms: ConnTimeMs {
            min: num(3, 0),
            avg: num(3, 1),
            max: num(3, 2),
            median: num(3, 3),
            stddev: num(3, 4),
        },
        connect_ms: num(4, 0),
        conn_length: num(5, 0),
        request_rate: num(6, 0),
        ms_per_req: num(6, 1),
        request_size: num(7, 0),
        reply_rate_min: num(8, 0),
        reply_rate_avg: num(8, 1),
        reply_rate_max: num(8, 2),
        reply_rate_stddev: num(8, 3),
        reply_rate_samples: int(8, 4)?,
        response_ms: num(9, 0),
        transfer_ms: num(9, 1),
        reply_header: num(10, 0),
        reply_content: num(10, 1),
        reply_footer: num(10, 2),
        reply_total: num(10, 3),
        status: [
            int(11, 0)?,
            int(11, 1)?,
            int(11, 2)?,
            int(11, 3)?,
            int(11, 4)?,
        ],
        cpu_user_s: num(12, 0),
        cpu_system_s: num(12, 1),
        cpu_user_pct: num(12, 2),
        cpu_system_pct: num(12, 3),
        cpu_total_pct: num(12, 4),
        net_io_kb_s: num(13, 0),
        net_io_mbps: num(13, 1),
        errors_total: int(14, 0)?,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{facts, feed_conn, golden_run, Lcg};
    use crate::record::Recorder;
    use std::time::{Duration, Instant};

    const GOLDEN: &str = "\
httperf --client=0/1 --server=127.0.0.1 --port=8080 --uri=/ --rate=1
Maximum connect burst length: 1

Total: connections 4 requests 4 replies 4 test-duration 11.000 s

Connection rate: 0.4 conn/s (2750.0 ms/conn, <=1 concurrent connections)
Connection time [ms]: min 4.0 avg 11.7 max 20.0 median 11.5 stddev 8.0
Connection time [ms]: connect 2.0
Connection length [replies/conn]: 1.333

Request rate: 0.4 req/s (2750.0 ms/req)
Request size [B]: 70.0

Reply rate [replies/s]: min 0.2 avg 0.4 max 0.6 stddev 0.3 (2 samples)
Reply time [ms]: response 2.0 transfer 1.5
Reply size [B]: header 187.0 content 93.0 footer 1.0 (total 281.0)
Reply status: 1xx=0 2xx=3 3xx=0 4xx=1 5xx=0

CPU time [s]: user 1.50 system 2.25 (user 13.6% system 20.5% total 34.1%)
Net I/O: 0.1 KB/s (0.0*10^6 bps)

Errors: total 1 client-timo 0 socket-timo 0 connrefused 1 connreset 0
Errors: fd-unavail 0 addrunavail 0 ftab-full 0 other 0
";

    #[test]
    fn golden_summary_line_for_line() {
        let text = summary_string(&golden_run());
        for (i, (got, want)) in text.lines().zip(GOLDEN.lines()).enumerate() {
            assert_eq!(got, want, "line {}", i + 1);
        }
        assert_eq!(text, GOLDEN);
    }

    #[test]
    fn layout_matches_real_httperf_line_for_line() {
        // Same sequence of labels and blank lines as a real httperf 0.9.0 run (minus the
        // warning it prints on stderr).
        let real = include_str!("../tests/fixtures/httperf-0.9.0-ok-400rps.txt");
        let shape = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("httperf"))
                .map(|l| {
                    l.split(|c: char| c.is_ascii_digit())
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        };
        assert_eq!(shape(&summary_string(&golden_run())), shape(real));
    }

    #[test]
    fn parses_real_httperf_output() {
        let p = parse_summary(include_str!(
            "../tests/fixtures/httperf-0.9.0-ok-400rps.txt"
        ))
        .unwrap();
        assert_eq!(
            p.command_line.as_deref(),
            Some("httperf --timeout=5 --client=0/1 --server=127.0.0.1 --port=18431 --uri=/index.html --rate=400 --send-buffer=4096 --recv-buffer=16384 --num-conns=4400 --num-calls=2")
        );
        assert_eq!(p.max_connect_burst, Some(1));
        assert_eq!((p.connections, p.requests, p.replies), (4400, 8800, 8800));
        assert_eq!(p.test_duration_s, 10.998);
        assert_eq!(
            (p.connection_rate, p.ms_per_conn, p.max_concurrent),
            (400.1, 2.5, 1)
        );
        assert_eq!(
            p.conn_time_ms,
            ConnTimeMs {
                min: 0.0,
                avg: 0.2,
                max: 1.3,
                median: 0.5,
                stddev: 0.1
            }
        );
        assert_eq!((p.connect_ms, p.conn_length), (0.0, 2.0));
        assert_eq!(
            (p.request_rate, p.ms_per_req, p.request_size),
            (800.1, 1.2, 72.0)
        );
        assert_eq!(
            (
                p.reply_rate_min,
                p.reply_rate_avg,
                p.reply_rate_max,
                p.reply_rate_stddev
            ),
            (799.9, 800.0, 800.1, 0.1)
        );
        assert_eq!(p.reply_rate_samples, 2);
        assert_eq!((p.response_ms, p.transfer_ms), (0.1, 0.0));
        assert_eq!(
            (
                p.reply_header,
                p.reply_content,
                p.reply_footer,
                p.reply_total
            ),
            (236.0, 75.0, 0.0, 311.0)
        );
        assert_eq!(p.status, [0, 8800, 0, 0, 0]);
        assert_eq!((p.cpu_user_s, p.cpu_system_s), (2.48, 8.51));
        assert_eq!(
            (p.cpu_user_pct, p.cpu_system_pct, p.cpu_total_pct),
            (22.6, 77.4, 99.9)
        );
        assert_eq!((p.net_io_kb_s, p.net_io_mbps), (299.3, 2.5));
        assert_eq!(p.errors_total, 0);
        assert_eq!(p.error_rate_percent(), 0.0);
    }

    #[test]
    fn parses_real_httperf_errors_and_404s() {
        let p = parse_summary(include_str!(
            "../tests/fixtures/httperf-0.9.0-connrefused-client1of3.txt"
        ))
        .unwrap();
        assert_eq!((p.connections, p.requests, p.replies), (600, 0, 0));
        assert_eq!(p.errors_total, 600);
        assert_eq!(p.errors.conn_refused, 600);
        assert_eq!(p.errors.total(), 600);
        assert_eq!(p.error_rate_percent(), 100.0);
        assert_eq!(p.reply_rate_samples, 0);

        let p = parse_summary(include_str!(
            "../tests/fixtures/httperf-0.9.0-404-3calls.txt"
        ))
        .unwrap();
        assert_eq!(p.status, [0, 0, 0, 300, 0]);
        assert_eq!(p.conn_length, 3.0);
        assert_eq!((p.reply_header, p.reply_content), (155.0, 153.0));

        let p = parse_summary(include_str!(
            "../tests/fixtures/httperf-0.9.0-client1of3-300rps.txt"
        ))
        .unwrap();
        assert_eq!((p.reply_rate_avg, p.reply_rate_samples), (300.0, 2));
    }

    /// Round a value as `%.{digits}f` would.
    fn printed(v: f64, digits: usize) -> f64 {
        format!("{v:.digits$}").parse().unwrap()
    }

    #[test]
    fn our_output_parses_back_to_our_numbers() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0);
        let mut rng = Lcg(3);
        for i in 0..3000 {
            feed_conn(&mut rec, t0, &mut rng, i);
        }
        let r = rec.finish(t0 + Duration::from_millis(21_500), facts(0, 1));
        let p = parse_summary(&summary_string(&r)).unwrap();
        assert_eq!(p.command_line.as_deref(), Some(r.command_line.as_str()));
        assert_eq!(p.connections, r.counts.conns_attempted);
        assert_eq!(p.requests, r.counts.requests_sent);
        assert_eq!(p.replies, r.replies());
        assert_eq!(p.test_duration_s, 21.5);
        assert_eq!(p.errors_total, r.errors_total());
        assert_eq!(p.errors, r.errors);
        assert_eq!(
            p.status,
            [
                r.status.s1xx,
                r.status.s2xx,
                r.status.s3xx,
                r.status.s4xx,
                r.status.s5xx
            ]
        );
        let rs = r.reply_rate.stats();
        assert_eq!(rs.samples, 4);
        assert_eq!(p.reply_rate_samples, 4);
        assert_eq!(p.reply_rate_avg, printed(rs.avg, 1));
        assert_eq!(p.reply_rate_stddev, printed(rs.stddev, 1));
        assert_eq!(p.request_rate, printed(r.request_rate(), 1));
        assert_eq!(
            p.conn_time_ms.avg,
            printed(1e3 * r.moments.lifetime.mean_s(), 1)
        );
        assert_eq!(
            p.conn_time_ms.stddev,
            printed(1e3 * r.moments.lifetime.stddev_s(), 1)
        );
        assert_eq!(
            p.conn_time_ms.median,
            printed(1e3 * r.lifetime_median_s(), 1)
        );
        assert_eq!(p.connect_ms, printed(1e3 * r.moments.connect.mean_s(), 1));
        assert_eq!(p.net_io_kb_s, printed(r.summary.net_io_kb_s, 1));
        assert!(p.errors_total > 0 && p.replies > 0);
    }

    #[test]
    fn parse_errors_are_precise() {
        let bad = GOLDEN.replace(
            "Connection time [ms]: connect 2.0",
            "Connection time [ms]: connect x2.0",
        );
        let e = parse_summary(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 8, column 31: expected a number, found \"x2.0\" (line: \"Connection time [ms]: connect x2.0\"; expected the form \"Connection time [ms]: connect {}\")"
        );

        let bad = GOLDEN.replace("(2 samples)", "(2 sample)");
        let e = parse_summary(&bad).unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 14, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("expected \" samples)\", found \" sample)\""),
            "{e}"
        );

        let bad = GOLDEN.replace("Reply time [ms]: response", "Reply time [ms]: latency");
        let e = parse_summary(&bad).unwrap_err();
        assert!(matches!(e, ParseError::UnknownForm { line: 15, .. }), "{e}");

        let bad = GOLDEN.replace("Net I/O: 0.1 KB/s (0.0*10^6 bps)\n", "");
        assert_eq!(
            parse_summary(&bad).unwrap_err(),
            ParseError::Missing {
                template: "Net I/O: {} KB/s ({}*10^6 bps)".into()
            }
        );

        let bad = format!("{GOLDEN}Request size [B]: 70.0\n");
        assert!(matches!(
            parse_summary(&bad).unwrap_err(),
            ParseError::Duplicate {
                line: 24,
                first: 12,
                ..
            }
        ));

        let bad = GOLDEN.replace("Total: connections 4 ", "Total: connections 4.5 ");
        assert!(matches!(
            parse_summary(&bad).unwrap_err(),
            ParseError::NotInteger { line: 4, .. }
        ));

        let bad = GOLDEN.replace(
            "replies 4 test-duration 11.000 s",
            "replies 4 test-duration 11.000 s extra",
        );
        assert!(parse_summary(&bad)
            .unwrap_err()
            .to_string()
            .contains("unexpected trailing text \" extra\""));

        assert!(matches!(
            parse_summary("").unwrap_err(),
            ParseError::Missing { .. }
        ));
        assert!(matches!(
            parse_summary("garbage\n\u{0}\u{ffff}").unwrap_err(),
            ParseError::Missing { .. }
        ));
    }

    #[test]
    fn zero_duration_prints_zero_rates_not_nan() {
        let t0 = Instant::now();
        let r = Recorder::new(t0).finish(t0, facts(0, 1));
        let text = summary_string(&r);
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        assert!(text.contains("Total: connections 0 requests 0 replies 0 test-duration 0.000 s"));
        parse_summary(&text).unwrap();
    }

    #[test]
    fn parses_nan_and_inf_as_httperf_prints_them() {
        let t = GOLDEN
            .replace(
                "Connection rate: 0.4 conn/s",
                "Connection rate: -nan conn/s",
            )
            .replace("Request rate: 0.4 req/s", "Request rate: inf req/s");
        let p = parse_summary(&t).unwrap();
        assert!(p.connection_rate.is_nan());
        assert!(p.request_rate.is_infinite());
    }
}
