//! The command line: httperf's options for the common runs, plus a modern interface
//! (`loadgen URL --rate R --duration 10s`, `--concurrency N`, `--json`, `--fail-if`) and the
//! `merge` subcommand. Parsing only; [`crate::config`] validates combinations.
//!
//! Long options may be abbreviated while unique (`--burst=10`), as in httperf.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "httperf-compatible HTTP load generator with an open-loop, coordinated-omission-corrected engine",
    long_about = "httperf-compatible HTTP load generator.\n\n\
        httperf style:  loadgen --server 127.0.0.1 --port 8080 --uri /index.html --rate 1000 --num-conns 10000 --timeout 5\n\
        modern style:   loadgen http://127.0.0.1:8080/ --rate 5000 --duration 10s --json out.json --fail-if 'p99>20ms'\n\
        closed loop:    loadgen http://127.0.0.1:8080/ --concurrency 64 --duration 10s\n\
        merge clients:  loadgen merge c0.json c1.json --json all.json\n\n\
        Open loop: connections are due at scheduled instants whether or not earlier ones finished; \
        latency is measured from the scheduled instant (corrected for coordinated omission) and \
        from the actual send (uncorrected). Errors are classified like httperf's (client-timo, \
        socket-timo, connrefused, connreset, fd-unavail, addrunavail, ftab-full, other); non-2xx \
        replies are not errors. Unlike httperf, EADDRNOTAVAIL (local ephemeral ports exhausted) is \
        counted as addrunavail rather than other, with a hint on stderr. A reply header block over \
        64 KiB, or bytes that are not HTTP/1.x, count as other; a reply cut short by the server \
        counts as connreset. Exit status: 0 ok, 1 a --fail-if threshold failed, 2 bad usage.",
    infer_long_args = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Subcommand (`merge`); without one, a load test runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of a load-test run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Combine result files from several clients (`--client I/N` runs) into one exact summary.
    Merge(MergeArgs),
}

/// `loadgen merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Result files written by `--json` (two or more runs, or one to re-print it).
    #[arg(required = true, value_name = "RESULT.json")]
    pub inputs: Vec<PathBuf>,
    /// Write the combined result to this JSON file (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Fail (exit 1) when a threshold is crossed, e.g. 'error-rate>1%', 'p99>20ms',
    /// 'reply-rate<9000'. Repeatable.
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,
}

/// Open-loop arrival process for `--rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    /// Deterministic: exactly 1/rate seconds apart (httperf --rate, --period=d).
    Fixed,
    /// Exponential gaps with mean 1/rate (httperf --period=e).
    Poisson,
}

/// How the engine uses the CPU cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// One single-threaded tokio runtime per worker thread, each with its own recorder (default:
    /// measured faster, see engine.rs).
    #[default]
    PerCore,
    /// One multi-threaded tokio runtime shared by all connections (one shared recorder).
    MultiThread,
}

/// Options of a load-test run.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Target URL (http:// or https://), e.g. http://127.0.0.1:8080/index.html. Replaces
    /// --server/--port/--uri/--ssl.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    // ---- httperf target options ----
    /// [httperf] Server host name or IP address (default localhost).
    #[arg(long, value_name = "S", help_heading = "httperf options")]
    pub server: Option<String>,
    /// [httperf] Server port (default 80, or 443 with --ssl).
    #[arg(long, value_name = "N", help_heading = "httperf options")]
    pub port: Option<u16>,
    /// [httperf] URI to request (default /).
    #[arg(long, value_name = "S", help_heading = "httperf options")]
    pub uri: Option<String>,
    /// [httperf] Host header value (default: the server name).
    #[arg(
        long = "server-name",
        value_name = "S",
        help_heading = "httperf options"
    )]
    pub server_name: Option<String>,
    /// [httperf] Use TLS (https) to the server.
    #[arg(long, help_heading = "httperf options")]
    pub ssl: bool,

    // ---- workload ----
    /// Connections created per second (open loop; httperf --rate). With --num-calls 1 this is
    /// also the request rate. 0 = sequential connections (httperf).
    #[arg(long, value_name = "X")]
    pub rate: Option<f64>,
    /// [httperf] Interarrival time of connections: [d|e|u]T1[,T2] seconds, e.g. e0.01 (Poisson,
    /// mean 10 ms), d0.001 (fixed), u1,2 (uniform in [1,2) s).
    #[arg(long, value_name = "[D]T1[,T2]", help_heading = "httperf options")]
    pub period: Option<String>,
    /// Arrival process for --rate: fixed (default) or poisson.
    #[arg(long, value_enum, value_name = "KIND")]
    pub arrival: Option<ArrivalKind>,
    /// Closed loop: N keep-alive connections each issuing requests back to back (like wrk).
    #[arg(long, short = 'c', value_name = "N")]
    pub concurrency: Option<u32>,
    /// Run for this long, e.g. 10s, 500ms, 2m (default 10s when a URL is given).
    #[arg(long, short = 'd', value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// [httperf] Total connections to create, then stop (default 1 in httperf style).
    #[arg(long = "num-conns", value_name = "N", help_heading = "httperf options")]
    pub num_conns: Option<u64>,
    /// [httperf] Calls issued on each connection, sequentially over keep-alive (default 1;
    /// unlimited with --concurrency and --duration).
    #[arg(long = "num-calls", value_name = "N", help_heading = "httperf options")]
    pub num_calls: Option<u32>,
    /// [httperf] Calls per burst: that many requests are pipelined before reading replies
    /// (default 1).
    #[arg(
        long = "burst-length",
        value_name = "N",
        help_heading = "httperf options"
    )]
    pub burst_length: Option<u32>,

    // ---- timeouts ----
    /// Per-operation timeout (connect, send, each wait for reply bytes) in seconds, e.g. 5 or
    /// 500ms; expiry counts a client-timo and closes the connection. Default: none in httperf
    /// style, 10s when a URL is given.
    #[arg(long, value_name = "X", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// [httperf] Extra time the server may take to start its reply (added to --timeout for the
    /// first reply byte).
    #[arg(long = "think-timeout", value_name = "X", value_parser = parse_duration, help_heading = "httperf options")]
    pub think_timeout: Option<Duration>,

    // ---- request ----
    /// Request method (GET, HEAD, POST, ...).
    #[arg(long, value_name = "S", default_value = "GET")]
    pub method: String,
    /// Extra request header(s), e.g. 'Accept: */*'. httperf escapes are understood (\n, \r,
    /// \\, \NNN octal) so one argument may carry several headers. Repeatable.
    #[arg(long = "add-header", short = 'H', value_name = "S")]
    pub add_header: Vec<String>,
    /// HTTP version string sent in requests: 1.1 (default) or 1.0.
    #[arg(long = "http-version", value_name = "S", default_value = "1.1")]
    pub http_version: String,

    /// Do not send `Connection: close` on the last request of a connection (httperf's exact
    /// request bytes). By default the last request announces the close so that the server closes
    /// first and the TIME_WAIT state stays on the server side; otherwise above ~10k conn/s the
    /// client's ephemeral ports fill with TIME_WAIT sockets and connects slow down or fail.
    #[arg(long = "no-connection-close")]
    pub no_connection_close: bool,

    // ---- client / sockets ----
    /// [httperf] This is client I of N (0 <= I < N): staggers reply-rate sampling and seeds
    /// random arrivals; recorded in results for `merge`.
    #[arg(long, value_name = "I/N", value_parser = parse_client, help_heading = "httperf options")]
    pub client: Option<(u32, u32)>,
    /// [httperf] Socket send buffer size in bytes (SO_SNDBUF; default: kernel's).
    #[arg(
        long = "send-buffer",
        value_name = "N",
        help_heading = "httperf options"
    )]
    pub send_buffer: Option<u32>,
    /// [httperf] Socket receive buffer size in bytes (SO_RCVBUF; default: kernel's).
    #[arg(
        long = "recv-buffer",
        value_name = "N",
        help_heading = "httperf options"
    )]
    pub recv_buffer: Option<u32>,
    /// [httperf] Accepted for compatibility; no effect (loadgen always uses the kernel's whole
    /// ephemeral port range). When ports run out, connects fail with EADDRNOTAVAIL, which
    /// loadgen counts as addrunavail (httperf files it under "other") and explains on stderr.
    #[arg(long, help_heading = "httperf options")]
    pub hog: bool,
    /// [httperf] Verbose: -v also prints the reply-rate samples and latency percentiles, -vv
    /// also the connection-lifetime histogram (1-ms bins).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    // ---- modern extras ----
    /// Skip TLS certificate verification (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
    /// Also write the full result as JSON to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Fail (exit 1) when a threshold is crossed, e.g. 'error-rate>1%', 'p99>20ms',
    /// 'reply-rate<9000'. Repeatable; every failed threshold is named.
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub fail_if: Vec<String>,
    /// Worker threads (default: one per CPU in open loop, half the CPUs in closed loop, never
    /// more than --concurrency).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Runtime layout: per-core (default) or multi-thread.
    #[arg(long, value_enum, value_name = "KIND", default_value = "per-core")]
    pub runtime: RuntimeKind,
    /// Open loop: longest an arrival may be delayed so that one timer wake-up issues several
    /// (default 100us; 0 = a wake-up per arrival, most precise, most CPU; at most 1s). Each
    /// arrival's actual delay is reported as issue lateness.
    #[arg(long = "pace-slack", value_name = "TIME", value_parser = parse_duration)]
    pub pace_slack: Option<Duration>,
    /// Open loop: most connections this process keeps open at once (default 1024, what httperf's
    /// select() holds). An arrival that finds this many open is not started and counts as an
    /// fd-unavail error, as in httperf when it runs out of descriptors; a warning says how many.
    /// This keeps an overloaded server from burying the generator (and itself) under
    /// connections that can only time out.
    #[arg(long = "max-inflight", value_name = "N")]
    pub max_inflight: Option<u64>,
    /// Seed for random arrivals (default derived from --client, like httperf).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Never draw the progress line (it is only drawn when stderr is a terminal anyway).
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

/// Parse a time: plain seconds (`2.5`) or with a unit (`500ms`, `10s`, `2m`, `1h`, `250us`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a time (expected e.g. 10s, 500ms, 2m or seconds)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown time unit '{other}' in '{s}' (use us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("time '{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse httperf's `--client I/N`.
pub fn parse_client(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("'{s}' is not I/N with 0 <= I < N (e.g. 0/1, 2/4)");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let i: u32 = i.trim().parse().map_err(|_| err())?;
    let n: u32 = n.trim().parse().map_err(|_| err())?;
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn clients() {
        assert_eq!(parse_client("0/1").unwrap(), (0, 1));
        assert_eq!(parse_client("3/4").unwrap(), (3, 4));
        assert!(parse_client("4/4").is_err());
        assert!(parse_client("1").is_err());
        assert!(parse_client("0/0").is_err());
    }

    #[test]
    fn httperf_style_and_abbreviations_parse() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--server=127.0.0.1",
            "--port",
            "8080",
            "--uri=/index.html",
            "--period=e0.01",
            "--num-conns=100",
            "--num-calls=2",
            "--burst=2",
            "--timeout",
            "0.5",
            "--client=1/2",
            "--hog",
            "-v",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let r = cli.run;
        assert_eq!(r.server.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.period.as_deref(), Some("e0.01"));
        assert_eq!(r.burst_length, Some(2));
        assert_eq!(r.timeout, Some(Duration::from_millis(500)));
        assert_eq!(r.client, Some((1, 2)));
        assert_eq!(r.verbose, 1);
    }

    #[test]
    fn merge_subcommand_parses() {
        let cli = Cli::try_parse_from(["loadgen", "merge", "a.json", "b.json", "--json", "o.json"])
            .unwrap();
        match cli.command {
            Some(Command::Merge(m)) => {
                assert_eq!(m.inputs.len(), 2);
                assert_eq!(m.json, Some(PathBuf::from("o.json")));
            }
            None => panic!("expected merge"),
        }
    }
}
