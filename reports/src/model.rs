//! The `results.json` schema (`harness-reproduce/1`): the single source of truth of a result
//! directory. Every other file (CSVs, figures, `REPORT.md`) is derived from it by
//! [`crate::render`], so a run can be re-rendered, resumed and compared without re-measuring.
//!
//! A [`Reproduction`] records what was asked ([`SweepSpec`]), the profile and tool versions, and
//! one [`Point`] per measured (configuration, offered rate, repetition). Points are appended by
//! the harness only once complete, so every point in the file is a complete row.
//!
//! [`Measured`] holds the generator-independent numbers the reports use, computed the same way
//! from loadgen's merged result ([`Measured::from_loadgen`]) and from the parsed output of the
//! paper's three httperf processes ([`Measured::from_httperf`]).
//!
//! Definitions (DESIGN.md): *reply rate* is httperf's sampled average reply rate (replies/s);
//! *error rate* is errors / connections attempted, in percent ([`Measured::error_rate_pct`]);
//! autobench's errors / replies, in percent, is also given ([`Measured::error_rate_replies_pct`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use loadgen::httperf_fmt::ParsedSummary;
use loadgen::record::ErrorKind;
use loadgen::result::{ErrorCounts, RunResult};
use serde::{Deserialize, Serialize};

/// Schema identifier of `results.json`; [`Reproduction::read`] refuses any other.
pub const SCHEMA: &str = "harness-reproduce/1";

/// File name of the source of truth inside a result directory.
pub const RESULTS_FILE: &str = "results.json";

/// The paper's Table I configurations, in the order figures and tables list them.
pub const TABLE_I: [&str; 6] = [
    "1lb-bi-nat",
    "1lb-bi-dr",
    "1lb-nat",
    "2lb-bi-nat",
    "2lb-bi-dr",
    "2lb-nat",
];

/// A whole reproduction run: what was asked, with what, and every point measured so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reproduction {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The command line as run (for the report and for rerunning it).
    pub command: String,
    /// What was asked: configurations, rates, repetitions, durations, generator.
    pub spec: SweepSpec,
    /// The full profile as the harness serialises it (calibration, link shaping, server work).
    pub profile: serde_json::Value,
    /// Versions of everything involved: `git_commit`, `kernel`, `loadgen`, `balancer`,
    /// `realserver`, `httperf`, `harness`, ... (free-form keys, reported as they are).
    pub versions: BTreeMap<String, String>,
    /// Wall clock at the start of the run, ms since the epoch.
    pub started_unix_ms: u64,
    /// Wall clock at the end of the run; `None` while running or after an interruption.
    #[serde(default)]
    pub finished_unix_ms: Option<u64>,
    /// Every complete point, in the order measured.
    #[serde(default)]
    pub points: Vec<Point>,
    /// The harness's notes on why results may differ from the paper (calibration, emulation,
    /// kernel, ...), printed in REPORT.md's "Why this differs from the paper" section.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// What a reproduction run was asked to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Configuration names (a subset of [`TABLE_I`], in the order asked).
    pub configs: Vec<String>,
    /// Offered request rates per configuration, req/s, strictly increasing.
    pub rates: BTreeMap<String, Vec<f64>>,
    /// Repetitions of every (configuration, rate).
    pub repeat: u32,
    /// Measured duration of one point, seconds (after the warm-up).
    pub duration_s: f64,
    /// Warm-up before each point, seconds (not measured).
    pub warmup_s: f64,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// "loadgen" or "httperf".
    pub generator: String,
    /// Client hosts (processes `--client i/N`), 3 as in the paper.
    pub clients: u32,
    /// Profile name, e.g. "paper".
    pub profile: String,
}

/// One measured (configuration, offered rate, repetition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Configuration name, e.g. "1lb-bi-nat".
    pub config: String,
    /// Number of load balancers (1 or 2).
    pub lbs: u32,
    /// Whether the balancers ran bi-active.
    pub bi_active: bool,
    /// Forwarding method: "nat" or "dr".
    pub method: String,
    /// Offered request rate of all clients together, req/s.
    pub offered_rate: f64,
    /// Repetition index, 0-based.
    pub rep: u32,
    /// Wall clock at the start of the measurement, ms since the epoch.
    pub started_unix_ms: u64,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// The generator-independent numbers the reports use.
    pub measured: Measured,
    /// Merged result of all clients (generator loadgen).
    #[serde(default)]
    pub loadgen: Option<RunResult>,
    /// Parsed summary of each client process (generator httperf), in client order.
    #[serde(default)]
    pub httperf: Option<Vec<ParsedSummary>>,
    /// Requests served per real server (or balancer answering locally).
    #[serde(default)]
    pub served: Vec<ServedBy>,
    /// Each balancer's counters at the end of the point.
    #[serde(default)]
    pub balancers: Vec<BalancerSnapshot>,
}

/// Generator-independent numbers of one point (all clients together).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Connections attempted.
    pub conns: u64,
    /// Requests sent.
    pub requests: u64,
    /// Replies received (status 1xx..5xx, as httperf counts them).
    pub replies: u64,
    /// httperf's sampled average reply rate, replies/s (all clients together).
    pub reply_rate: f64,
    /// Number of reply-rate samples behind `reply_rate` (httperf: one per 5 s).
    pub reply_rate_samples: u32,
    /// httperf "Errors: total".
    pub errors: u64,
    /// Errors by httperf class label: client-timo, socket-timo, connrefused, connreset,
    /// fd-unavail, addrunavail, ftab-full, other (every label present, zeros included).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Median latency, ms (loadgen's coordinated-omission-corrected latency); `None` for
    /// httperf, which has no percentiles.
    #[serde(default)]
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency, ms; `None` for httperf.
    #[serde(default)]
    pub p99_ms: Option<f64>,
    /// Why the generator rather than the system under test was the limit: loadgen's own
    /// warnings (in-flight cap hit, late starts: `RunResult::generator_warnings`), or what the
    /// harness established; `None` otherwise.
    #[serde(default)]
    pub generator_limited: Option<String>,
}

/// Requests one node served during a point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedBy {
    /// Namespace / host name, e.g. "rs1".
    pub node: String,
    /// Human name, e.g. "real server 1".
    pub name: String,
    /// "realserver" or "balancer".
    pub role: String,
    /// Requests it served.
    pub requests: u64,
}

/// One balancer's counters as read at the end of a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalancerSnapshot {
    /// Namespace / host name, e.g. "lb1".
    pub node: String,
    /// Its stats JSON as it reported it (`Null` when it could not be read).
    pub stats: serde_json::Value,
    /// Why the stats could not be read, if they could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// What a configuration name means: its Table I row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigKind {
    /// Number of load balancers.
    pub lbs: u32,
    /// Bi-active or plain.
    pub bi_active: bool,
    /// Forwarding method.
    pub method: Method,
}

/// Forwarding method of a configuration (and of every harness run). Serialised as "nat" / "dr".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Network address translation (replies go back through the balancer).
    Nat,
    /// Direct routing (replies go straight from the real server to the client).
    Dr,
}

impl Method {
    /// The name used in configuration names and `results.json` ("nat", "dr").
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Nat => "nat",
            Method::Dr => "dr",
        }
    }
}

impl ConfigKind {
    /// Parse a Table I name (`1lb-bi-nat`, ..., `2lb-nat`); `None` for anything else.
    pub fn parse(name: &str) -> Option<ConfigKind> {
        let (lbs, rest) = match name.split_once("lb-")? {
            ("1", r) => (1, r),
            ("2", r) => (2, r),
            _ => return None,
        };
        let (bi_active, method) = match rest {
            "bi-nat" => (true, Method::Nat),
            "bi-dr" => (true, Method::Dr),
            "nat" => (false, Method::Nat),
            _ => return None,
        };
        Some(ConfigKind {
            lbs,
            bi_active,
            method,
        })
    }
}

/// Why `results.json` could not be read or written. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON of this schema's shape.
    #[error("{} is not a valid {SCHEMA} file: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde_json's message (with line and column).
        message: String,
    },
    /// The file declares another schema (or none).
    #[error("{} has schema {found:?}, expected {SCHEMA:?}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// What it declares ("" when it has no schema field).
        found: String,
    },
    /// The file could not be written (the I/O error's text names the file).
    #[error("{source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Reproduction {
    /// An empty run (no point yet) with the current schema.
    pub fn new(
        command: String,
        spec: SweepSpec,
        profile: serde_json::Value,
        versions: BTreeMap<String, String>,
        started_unix_ms: u64,
    ) -> Reproduction {
        Reproduction {
            schema: SCHEMA.to_string(),
            command,
            spec,
            profile,
            versions,
            started_unix_ms,
            finished_unix_ms: None,
            points: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The offered rates the spec asks for `config` (empty when it has none).
    pub fn rates_of(&self, config: &str) -> &[f64] {
        self.spec.rates.get(config).map_or(&[], |v| v.as_slice())
    }

    /// Parse `results.json` text; `path` is used in error messages only. The schema is checked
    /// before the shape, so a file of another schema gets that message, not a field error.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Reproduction, ModelError> {
        let json_err = |e: serde_json::Error| ModelError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // Only the schema first (any other field ignored), then the text itself: going through
        // `serde_json::Value` would turn loadgen's u128 sums above u64::MAX into floats.
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            schema: Option<serde_json::Value>,
        }
        let head: Head = serde_json::from_str(text).map_err(json_err)?;
        let found = head.schema.as_ref().and_then(|s| s.as_str()).unwrap_or("");
        if found != SCHEMA {
            return Err(ModelError::Schema {
                path: path.to_path_buf(),
                found: found.to_string(),
            });
        }
        serde_json::from_str(text).map_err(json_err)
    }

    /// Read `path` (a `results.json`, or a result directory containing one).
    pub fn read(path: &Path) -> Result<Reproduction, ModelError> {
        let file = if path.is_dir() {
            path.join(RESULTS_FILE)
        } else {
            path.to_path_buf()
        };
        let text = fs::read_to_string(&file).map_err(|source| ModelError::Read {
            path: file.clone(),
            source,
        })?;
        Reproduction::from_json_str(&text, &file)
    }

    /// Pretty JSON with a trailing newline. Fails only if a loadgen histogram cannot be
    /// encoded.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Write `DIR/results.json` atomically (temp file + rename); returns the file's path.
    pub fn write_atomic(&self, dir: &Path) -> Result<PathBuf, ModelError> {
        let path = dir.join(RESULTS_FILE);
        let write_err = |source| ModelError::Write {
            path: path.clone(),
            source,
        };
        let bytes = self.to_json_bytes().map_err(|e| {
            write_err(std::io::Error::other(format!(
                "cannot encode {}: {e}",
                path.display()
            )))
        })?;
        loadgen::json_out::write_bytes_atomic(&bytes, &path).map_err(write_err)?;
        Ok(path)
    }
}

impl Point {
    /// Whether this is the measurement of (`config`, `offered_rate`, `rep`), the key `--resume`
    /// uses to find what is missing (rates compared exactly: they come from the same spec).
    pub fn is(&self, config: &str, offered_rate: f64, rep: u32) -> bool {
        self.config == config && self.offered_rate == offered_rate && self.rep == rep
    }
}

/// httperf labels of every error class with its count.
fn errors_by_kind(e: &ErrorCounts) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .map(|k| (k.httperf_label().to_string(), e.get(*k)))
        .collect()
}

impl Measured {
    /// The numbers of loadgen's merged result of all clients. Its reply rate is sampled on the
    /// merged per-second series, i.e. the aggregate rate of all clients in the same 5 s.
    pub fn from_loadgen(r: &RunResult) -> Measured {
        let rate = r.reply_rate.stats();
        let has_latency = r.moments.latency.count > 0;
        Measured {
            conns: r.counts.conns_attempted,
            requests: r.counts.requests_sent,
            replies: r.replies(),
            reply_rate: rate.avg,
            reply_rate_samples: u32::try_from(rate.samples).unwrap_or(u32::MAX),
            errors: r.errors_total(),
            errors_by_kind: errors_by_kind(&r.errors),
            p50_ms: has_latency.then_some(r.summary.latency_ms.p50),
            p99_ms: has_latency.then_some(r.summary.latency_ms.p99),
            // loadgen's own wrk2-style warnings (in-flight cap hit, late starts), recomputed
            // from the exact counters so that results written before they existed get them too.
            generator_limited: {
                let w = r.generator_warnings();
                (!w.is_empty()).then(|| w.join(" "))
            },
        }
    }

    /// The numbers of the paper's httperf clients, one summary each: counts and errors summed,
    /// reply rate = the sum of the clients' average sampled reply rates (the clients run
    /// concurrently, so their rates add), samples = the fewest any client took.
    pub fn from_httperf(clients: &[ParsedSummary]) -> Measured {
        let mut errors = ErrorCounts::default();
        let mut m = Measured::default();
        for c in clients {
            m.conns = m.conns.saturating_add(c.connections);
            m.requests = m.requests.saturating_add(c.requests);
            m.replies = m.replies.saturating_add(c.replies);
            m.reply_rate += c.reply_rate_avg;
            m.errors = m.errors.saturating_add(c.errors_total);
            errors.add_all(&c.errors);
        }
        let fewest = clients.iter().map(|c| c.reply_rate_samples).min();
        m.reply_rate_samples = u32::try_from(fewest.unwrap_or(0)).unwrap_or(u32::MAX);
        m.errors_by_kind = errors_by_kind(&errors);
        m
    }

    /// Error rate: errors / connections attempted, in percent. With no connection attempted it
    /// is 100 when there were errors (nothing could even start), else 0 (as loadgen).
    pub fn error_rate_pct(&self) -> f64 {
        match self.conns {
            0 if self.errors > 0 => 100.0,
            0 => 0.0,
            c => self.errors as f64 * 100.0 / c as f64,
        }
    }

    /// autobench's error rate: errors / replies, in percent; `None` when there are errors but
    /// no replies (undefined), 0 with neither.
    pub fn error_rate_replies_pct(&self) -> Option<f64> {
        match self.replies {
            0 if self.errors > 0 => None,
            0 => Some(0.0),
            r => Some(self.errors as f64 * 100.0 / r as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SweepSpec {
        SweepSpec {
            configs: vec!["1lb-bi-nat".into(), "1lb-nat".into()],
            rates: BTreeMap::from([
                ("1lb-bi-nat".to_string(), vec![100.0, 200.0]),
                ("1lb-nat".to_string(), vec![100.0, 200.0]),
            ]),
            repeat: 1,
            duration_s: 10.0,
            warmup_s: 2.0,
            quick: true,
            generator: "httperf".into(),
            clients: 3,
            profile: "paper".into(),
        }
    }

    fn httperf_client(replies: u64, rate: f64, samples: u64, refused: u64) -> ParsedSummary {
        let mut errors = ErrorCounts::default();
        errors.add(ErrorKind::ConnRefused, refused);
        ParsedSummary {
            connections: replies + refused,
            requests: replies,
            replies,
            reply_rate_avg: rate,
            reply_rate_samples: samples,
            errors_total: refused,
            errors,
            ..ParsedSummary::default()
        }
    }

    fn point(m: Measured) -> Point {
        Point {
            config: "1lb-nat".into(),
            lbs: 1,
            bi_active: false,
            method: "nat".into(),
            offered_rate: 200.0,
            rep: 0,
            started_unix_ms: 1,
            duration_s: 10.0,
            measured: m,
            loadgen: None,
            httperf: None,
            served: vec![ServedBy {
                node: "rs1".into(),
                name: "real server 1".into(),
                role: "realserver".into(),
                requests: 7,
            }],
            balancers: vec![BalancerSnapshot {
                node: "lb1".into(),
                stats: serde_json::Value::Null,
                error: Some("no answer".into()),
            }],
        }
    }

    #[test]
    fn httperf_clients_add_up() {
        let m = Measured::from_httperf(&[
            httperf_client(100, 10.0, 4, 0),
            httperf_client(200, 20.5, 3, 5),
            httperf_client(300, 30.0, 4, 1),
        ]);
        assert_eq!(
            (m.conns, m.requests, m.replies, m.errors),
            (606, 600, 600, 6)
        );
        assert!((m.reply_rate - 60.5).abs() < 1e-9);
        assert_eq!(m.reply_rate_samples, 3);
        assert_eq!(m.errors_by_kind["connrefused"], 6);
        assert_eq!(m.errors_by_kind.len(), 8);
        assert_eq!(m.p50_ms, None);
        assert!((m.error_rate_pct() - 600.0 / 606.0).abs() < 1e-9);
        assert_eq!(m.error_rate_replies_pct(), Some(1.0));
    }

    /// A merged loadgen result with the given counts (every other field empty).
    pub(crate) fn loadgen_result(replies: u64, windows: Vec<u64>, refused: u64) -> RunResult {
        let mut r = RunResult {
            schema: loadgen::result::RESULT_SCHEMA.to_string(),
            generator: "loadgen test".into(),
            command_line: String::new(),
            config: serde_json::Value::Null,
            clients: Vec::new(),
            started_unix_ms: 0,
            duration_ns: 20_000_000_000,
            max_concurrent: 0,
            max_connect_burst: 0,
            cpu: Default::default(),
            counts: Default::default(),
            status: Default::default(),
            errors: Default::default(),
            moments: Default::default(),
            lifetime_ms_bins: Vec::new(),
            series: Vec::new(),
            timeline: Vec::new(),
            reply_rate: Default::default(),
            histograms: Default::default(),
            summary: Default::default(),
        };
        r.counts.conns_attempted = replies + refused;
        r.counts.requests_sent = replies;
        r.status.add_n(200, replies);
        r.errors.add(ErrorKind::ConnRefused, refused);
        r.reply_rate.first_window_ns = 5_000_000_000;
        r.reply_rate.interval_ns = 5_000_000_000;
        r.reply_rate.counts = windows;
        for ms in 1..=100u64 {
            r.histograms.latency.0.record(ms * 1000).expect("in range");
            r.moments.latency.add(ms * 1_000_000);
        }
        r.refresh_summary();
        r
    }

    #[test]
    fn loadgen_result_gives_the_same_numbers() {
        let r = loadgen_result(1000, vec![250, 250, 250, 250], 10);
        let m = Measured::from_loadgen(&r);
        assert_eq!(
            (m.conns, m.requests, m.replies, m.errors),
            (1010, 1000, 1000, 10)
        );
        assert!((m.reply_rate - 50.0).abs() < 1e-9);
        assert_eq!(m.reply_rate_samples, 4);
        assert_eq!(m.errors_by_kind["connrefused"], 10);
        let p50 = m.p50_ms.expect("latency recorded");
        let p99 = m.p99_ms.expect("latency recorded");
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.0).contains(&p99), "{p99}");
        assert_eq!(m.error_rate_pct(), r.error_rate_percent());
        assert_eq!(m.error_rate_replies_pct(), r.error_rate_replies_percent());
        assert_eq!(m.generator_limited, None);
        // Arrivals refused by loadgen's in-flight cap: the generator says so, and so do we.
        let mut capped = r.clone();
        capped.counts.conns_capped = 7;
        let m = Measured::from_loadgen(&capped);
        let why = m.generator_limited.expect("cap hit is reported");
        assert!(why.starts_with("7 of 1010 connections"), "{why}");
    }

    #[test]
    fn error_rates_at_the_edges() {
        let none = Measured::default();
        assert_eq!(none.error_rate_pct(), 0.0);
        assert_eq!(none.error_rate_replies_pct(), Some(0.0));
        let only_errors = Measured {
            errors: 3,
            ..Measured::default()
        };
        assert_eq!(only_errors.error_rate_pct(), 100.0);
        assert_eq!(only_errors.error_rate_replies_pct(), None);
    }

    #[test]
    fn config_names_parse_to_table_i_rows() {
        let k = ConfigKind::parse("2lb-bi-dr").expect("valid name");
        assert_eq!((k.lbs, k.bi_active, k.method), (2, true, Method::Dr));
        let k = ConfigKind::parse("1lb-nat").expect("valid name");
        assert_eq!((k.lbs, k.bi_active, k.method), (1, false, Method::Nat));
        for name in TABLE_I {
            assert!(ConfigKind::parse(name).is_some(), "{name}");
        }
        assert_eq!(serde_json::json!(Method::Dr), serde_json::json!("dr"));
        for bad in ["3lb-nat", "1lb-dr", "1lb-bi-", "lb-nat", "", "1lb-bi-nat-x"] {
            assert_eq!(ConfigKind::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_through_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Reproduction::new(
            "harness reproduce --quick".into(),
            spec(),
            serde_json::json!({"name": "paper"}),
            BTreeMap::from([("kernel".to_string(), "6.1".to_string())]),
            42,
        );
        let clients = [httperf_client(10, 1.0, 2, 1)];
        let mut p = point(Measured::from_httperf(&clients));
        p.httperf = Some(clients.to_vec());
        r.points.push(p);
        let path = r.write_atomic(dir.path()).expect("write");
        assert_eq!(path, dir.path().join(RESULTS_FILE));
        assert_eq!(Reproduction::read(dir.path()).expect("read dir"), r);
        assert_eq!(Reproduction::read(&path).expect("read file"), r);
    }

    #[test]
    fn u128_sums_above_u64_survive_a_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Reproduction::new(
            "harness reproduce".into(),
            spec(),
            serde_json::Value::Null,
            BTreeMap::new(),
            1,
        );
        let mut lg = loadgen_result(10, vec![2], 0);
        lg.moments.latency.sum_sq_ns2 = u128::from(u64::MAX) * 4;
        let mut p = point(Measured::from_loadgen(&lg));
        p.loadgen = Some(lg);
        r.points.push(p);
        r.write_atomic(dir.path()).expect("write");
        assert_eq!(Reproduction::read(dir.path()).expect("read back"), r);
    }

    #[test]
    fn bad_files_get_one_line_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = Reproduction::read(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(missing, ModelError::Read { .. }));
        assert!(missing.to_string().contains("nope"));

        let p = dir.path().join("results.json");
        fs::write(&p, "not json").expect("write");
        let e = Reproduction::read(&p).expect_err("not json");
        assert!(matches!(e, ModelError::Json { .. }), "{e}");
        assert!(e.to_string().contains("results.json"));

        fs::write(&p, r#"{"schema": "loadgen-result/1"}"#).expect("write");
        let e = Reproduction::read(&p).expect_err("other schema");
        assert!(matches!(e, ModelError::Schema { ref found, .. } if found == "loadgen-result/1"));
        assert!(!e.to_string().contains('\n'));

        fs::write(&p, format!(r#"{{"schema": "{SCHEMA}", "command": 3}}"#)).expect("write");
        let e = Reproduction::read(&p).expect_err("wrong shape");
        assert!(matches!(e, ModelError::Json { .. }), "{e}");
    }
}
