//! Validated run configuration, built from the command line ([`crate::cli::RunArgs`]).
//!
//! Pure: no sockets, no DNS (see [`Target::resolve`]). Every contradictory or invalid combination
//! of flags becomes one [`ConfigError`] whose message names the flags and what is expected; the
//! binary prints it on one line and exits with status 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::arrival::Distribution;
use crate::cli::{ArrivalKind, RunArgs, RuntimeKind};

/// Duration of a modern-style run (`loadgen URL ...`) when neither --duration nor --num-conns is
/// given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Per-operation timeout of a modern-style run when --timeout is not given (httperf style has
/// none, like httperf).
pub const DEFAULT_URL_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `--pace-slack`: an open-loop arrival may wait up to 100 µs to share a timer wake-up
/// with later ones. 0 wakes for every arrival (+60 % client CPU at 20 k conn/s on the 2-core
/// VM), 1 ms costs what tokio's timer did; 100 µs keeps corrected latency within ~0.1 ms of the
/// truth (see engine.rs for the measurements).
pub const DEFAULT_PACE_SLACK: Duration = Duration::from_micros(100);

/// Default `--max-inflight`: open-loop connections one process keeps open at once. Past a
/// server's capacity an uncapped generator piles up tens of thousands of connections that can
/// only time out, spends its core in the kernel and starves the server it measures (see
/// engine.rs, "Overload"). 1 024 is what httperf, the paper's instrument, can hold (select():
/// FD_SETSIZE), so both tools queue the same work on an overloaded server and their curves past
/// saturation compare; beyond it, connections mostly wait in the server's listen queue or in SYN
/// retransmission. Where replies are slow for other reasons (1 024 connections at 10 000 conn/s
/// is 0.1 s each), the warning says so and `--max-inflight` raises it.
pub const DEFAULT_MAX_INFLIGHT: u64 = 1024;

/// A command line that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Two flags that cannot be combined.
    #[error("{0} cannot be combined with {1}")]
    Conflict(&'static str, &'static str),
    /// A flag's value is unacceptable; the message says what is expected.
    #[error("invalid {flag} '{value}': {expected}")]
    Invalid {
        /// The flag (or "URL").
        flag: &'static str,
        /// The value given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// Something required is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// The server name does not resolve.
    #[error("cannot resolve server '{host}': {why}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's message.
        why: String,
    },
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal (without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS (https:// or --ssl).
    pub tls: bool,
    /// Request target, e.g. `/index.html?x=1`.
    pub uri: String,
    /// Value of the Host header.
    pub host_header: String,
}

impl Target {
    /// Resolve the host to a socket address (first address returned by the system resolver).
    pub fn resolve(&self) -> Result<SocketAddr, ConfigError> {
        let err = |why: String| ConfigError::Resolve {
            host: self.host.clone(),
            why,
        };
        let mut addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?;
        addrs.next().ok_or_else(|| err("no address".to_string()))
    }
}

/// How connections are created.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// Open loop: connections start at scheduled instants, regardless of earlier ones.
    Open(Distribution),
    /// Closed loop: this many connection slots; each opens a connection, issues its calls, and
    /// opens the next when it ends. `--rate 0` (httperf's sequential mode) is `Closed(1)`.
    Closed(u32),
}

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many connections have completed or failed (httperf --num-conns).
    Conns(u64),
    /// No new connection or call starts after this much time; in-flight calls finish.
    Duration(Duration),
}

/// Everything the engine needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where requests go.
    pub target: Target,
    /// The request method.
    pub method: String,
    /// One request, pre-built (sent as is for every call but a connection's last).
    pub request: Vec<u8>,
    /// The last request of a connection: announces `Connection: close` (unless
    /// --no-connection-close or the user set a Connection header) so the server closes first.
    pub request_last: Vec<u8>,
    /// The method is HEAD (replies have no body).
    pub head_request: bool,
    /// Open or closed loop.
    pub workload: Workload,
    /// When to stop.
    pub stop: Stop,
    /// Calls per connection (`None` = unlimited: closed loop keeps the connection until the end).
    pub calls_per_conn: Option<u32>,
    /// Calls pipelined per burst.
    pub burst: u32,
    /// Per-operation timeout (`None` = wait forever, httperf's default).
    pub timeout: Option<Duration>,
    /// Extra wait for the first reply byte.
    pub think_timeout: Duration,
    /// SO_SNDBUF.
    pub send_buffer: Option<u32>,
    /// SO_RCVBUF.
    pub recv_buffer: Option<u32>,
    /// `--client I/N`.
    pub client: (u32, u32),
    /// Skip certificate verification.
    pub insecure: bool,
    /// Worker threads.
    pub threads: usize,
    /// Runtime layout.
    pub runtime: RuntimeKind,
    /// Open loop: most an arrival may be delayed to share a timer wake-up (`--pace-slack`).
    pub pace_slack: Duration,
    /// Open loop: most connections open at once (`--max-inflight`).
    pub max_inflight: u64,
    /// Seed of random arrival schedules.
    pub seed: u64,
    /// httperf -v level.
    pub verbose: u8,
    /// Draw a progress line if stderr is a terminal.
    pub progress: bool,
    /// `--json FILE`.
    pub json: Option<PathBuf>,
    /// `--fail-if` expressions (parsed by [`crate::gate`]).
    pub fail_if: Vec<String>,
    /// httperf-style normalised command line (first line of the summary).
    pub command_line: String,
}

/// Split `http[s]://host[:port][/path]` into a target.
pub fn parse_url(url: &str) -> Result<Target, ConfigError> {
    let bad = |expected: &str| ConfigError::Invalid {
        flag: "URL",
        value: url.to_string(),
        expected: expected.to_string(),
    };
    let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else {
        return Err(bad("expected http://HOST[:PORT][/PATH] or https://..."));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.split('#').next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("user information (user@host) is not supported"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unterminated IPv6 literal (missing ']')"))?;
        let port = match after {
            "" => default_port,
            p => parse_port(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?)
                .ok_or_else(|| bad("port must be a number 1-65535"))?,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                parse_port(p).ok_or_else(|| bad("port must be a number 1-65535"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host name"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(bad("host name contains invalid characters"));
    }
    let uri = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad(
            "path contains spaces or control characters (percent-encode them)",
        ));
    }
    let host_header = host_header(&host, port, default_port);
    Ok(Target {
        host,
        port,
        tls,
        uri,
        host_header,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    match (s.get(..prefix.len()), s.get(prefix.len()..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case(prefix) => Some(rest),
        _ => None,
    }
}

fn parse_port(p: &str) -> Option<u16> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn host_header(host: &str, port: u16, default_port: u16) -> String {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == default_port {
        h
    } else {
        format!("{h}:{port}")
    }
}

/// Decode httperf's --add-header escapes (`\n`, `\r`, `\a` = line feed as httperf's manual says,
/// `\\`, `\NNN` octal) and normalise to CRLF-terminated header lines.
pub fn decode_headers(raw: &str) -> Result<String, ConfigError> {
    let bad = |expected: &str| ConfigError::Invalid {
        flag: "--add-header",
        value: raw.to_string(),
        expected: expected.to_string(),
    };
    let mut bytes: Vec<u8> = Vec::with_capacity(raw.len());
    let src = raw.as_bytes();
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'\\' && i + 1 < src.len() {
            let c = src[i + 1];
            match c {
                b'n' | b'a' => bytes.push(b'\n'),
                b'r' => bytes.push(b'\r'),
                b'\\' => bytes.push(b'\\'),
                b'0'..=b'7' => {
                    let mut v: u32 = 0;
                    let mut j = i + 1;
                    while j < src.len() && j < i + 4 && (b'0'..=b'7').contains(&src[j]) {
                        v = v * 8 + u32::from(src[j] - b'0');
                        j += 1;
                    }
                    bytes.push(u8::try_from(v).map_err(|_| bad("octal escape above \\377"))?);
                    i = j;
                    continue;
                }
                _ => bytes.extend_from_slice(&src[i..i + 2]),
            }
            i += 2;
        } else {
            bytes.push(src[i]);
            i += 1;
        }
    }
    let mut out = String::new();
    let text = String::from_utf8(bytes).map_err(|_| bad("header text is not UTF-8"))?;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((name, _))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {}
            _ => return Err(bad("each header must look like 'Name: value'")),
        }
        if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(bad("header contains control characters"));
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok(out)
}

/// Is `s` an HTTP token (method names)?
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `flag`'s value when given, rejecting 0 (every count flag needs at least 1).
fn at_least_one<T: Copy + Into<u64>>(
    flag: &'static str,
    v: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match v {
        Some(n) if n.into() == 0 => Err(ConfigError::Invalid {
            flag,
            value: "0".into(),
            expected: "at least 1".into(),
        }),
        other => Ok(other),
    }
}

/// Where requests go: a URL, or httperf's --server/--port/--uri/--ssl; --server-name overrides
/// the Host header of either.
fn target_from_args(args: &RunArgs) -> Result<Target, ConfigError> {
    use ConfigError::{Conflict, Invalid};
    let mut target = if let Some(url) = &args.url {
        for (given, flag) in [
            (args.server.is_some(), "--server"),
            (args.port.is_some(), "--port"),
            (args.uri.is_some(), "--uri"),
            (args.ssl, "--ssl (use https://)"),
        ] {
            if given {
                return Err(Conflict("a URL", flag));
            }
        }
        parse_url(url)?
    } else {
        httperf_target(args)?
    };
    if let Some(name) = &args.server_name {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid {
                flag: "--server-name",
                value: name.clone(),
                expected: "a host name".into(),
            });
        }
        target.host_header = name.clone();
    }
    Ok(target)
}

/// httperf's target options (defaults: localhost, port 80 or 443, `/`).
fn httperf_target(args: &RunArgs) -> Result<Target, ConfigError> {
    use ConfigError::Invalid;
    let host = args
        .server
        .clone()
        .unwrap_or_else(|| "localhost".to_string());
    let default_port = if args.ssl { 443 } else { 80 };
    let port = match args.port {
        Some(0) => {
            return Err(Invalid {
                flag: "--port",
                value: "0".into(),
                expected: "a port 1-65535".into(),
            })
        }
        Some(p) => p,
        None => default_port,
    };
    let uri = args.uri.clone().unwrap_or_else(|| "/".to_string());
    if uri.is_empty() || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Invalid {
            flag: "--uri",
            value: uri,
            expected: "a non-empty path without spaces or control characters".into(),
        });
    }
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid {
            flag: "--server",
            value: host,
            expected: "a host name or IP address".into(),
        });
    }
    // httperf sends the bare server name as Host.
    let host_header = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(Target {
        host,
        port,
        tls: args.ssl,
        uri,
        host_header,
    })
}

/// Open loop (--rate, --period) or closed loop (--concurrency, httperf's sequential default).
fn workload_from_args(args: &RunArgs, url_mode: bool) -> Result<Workload, ConfigError> {
    use ConfigError::{Conflict, Invalid, Missing};
    if args.concurrency.is_some() {
        for (given, flag) in [
            (args.rate.is_some(), "--rate"),
            (args.period.is_some(), "--period"),
            (args.arrival.is_some(), "--arrival"),
        ] {
            if given {
                return Err(Conflict(flag, "--concurrency"));
            }
        }
    }
    if args.rate.is_some() && args.period.is_some() {
        return Err(Conflict("--rate", "--period"));
    }
    if args.arrival.is_some() && args.period.is_some() {
        return Err(Conflict(
            "--arrival",
            "--period (its letter d/e/u chooses the distribution)",
        ));
    }
    if args.arrival.is_some() && args.rate.is_none() {
        return Err(Missing("--arrival needs --rate"));
    }
    if let Some(c) = at_least_one("--concurrency", args.concurrency)? {
        return Ok(Workload::Closed(c));
    }
    if let Some(rate) = args.rate {
        if !rate.is_finite() || rate < 0.0 {
            return Err(Invalid {
                flag: "--rate",
                value: rate.to_string(),
                expected: "a number >= 0 (0 = sequential connections)".into(),
            });
        }
        if rate == 0.0 {
            return Ok(Workload::Closed(1));
        }
        return Ok(Workload::Open(
            match args.arrival.unwrap_or(ArrivalKind::Fixed) {
                ArrivalKind::Fixed => Distribution::Fixed {
                    period_s: 1.0 / rate,
                },
                ArrivalKind::Poisson => Distribution::Poisson { mean_s: 1.0 / rate },
            },
        ));
    }
    if let Some(p) = &args.period {
        let d = Distribution::parse_period(p).map_err(|e| Invalid {
            flag: "--period",
            value: p.clone(),
            expected: e.to_string(),
        })?;
        return Ok(d.map_or(Workload::Closed(1), Workload::Open));
    }
    if url_mode {
        return Err(Missing(
            "a URL run needs --rate R (open loop) or --concurrency N (closed loop)",
        ));
    }
    Ok(Workload::Closed(1))
}

/// --num-conns or --duration (a URL run defaults to 10 s, httperf style to one connection).
fn stop_from_args(args: &RunArgs, url_mode: bool) -> Result<Stop, ConfigError> {
    if args.num_conns.is_some() && args.duration.is_some() {
        return Err(ConfigError::Conflict("--num-conns", "--duration"));
    }
    Ok(
        match (at_least_one("--num-conns", args.num_conns)?, args.duration) {
            (Some(n), _) => Stop::Conns(n),
            (None, Some(d)) if d.is_zero() => {
                return Err(ConfigError::Invalid {
                    flag: "--duration",
                    value: "0".into(),
                    expected: "a positive time such as 10s".into(),
                })
            }
            (None, Some(d)) => Stop::Duration(d),
            (None, None) if url_mode => Stop::Duration(DEFAULT_DURATION),
            (None, None) => Stop::Conns(1),
        },
    )
}

/// The request bytes: every call's, and the connection's last one, which announces the close
/// (unless --no-connection-close or a user Connection header) so that the server closes first.
fn requests_from_args(
    args: &RunArgs,
    target: &Target,
    calls_per_conn: Option<u32>,
) -> Result<(String, String), ConfigError> {
    use ConfigError::Invalid;
    if !is_token(&args.method) {
        return Err(Invalid {
            flag: "--method",
            value: args.method.clone(),
            expected: "an HTTP method token such as GET, HEAD, POST".into(),
        });
    }
    let version = match args.http_version.as_str() {
        v @ ("1.0" | "1.1") => v,
        other => {
            return Err(Invalid {
                flag: "--http-version",
                value: other.to_string(),
                expected: "1.0 or 1.1".into(),
            })
        }
    };
    let mut extra = String::new();
    for h in &args.add_header {
        extra.push_str(&decode_headers(h)?);
    }
    let head = format!(
        "{} {} HTTP/{}\r\nUser-Agent: loadgen/{}\r\nHost: {}\r\n",
        args.method,
        target.uri,
        version,
        env!("CARGO_PKG_VERSION"),
        target.host_header
    );
    let user_connection = extra
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("connection:"));
    let mut request = head.clone();
    if version == "1.0" && calls_per_conn != Some(1) && !user_connection {
        request.push_str("Connection: keep-alive\r\n");
    }
    request.push_str(&extra);
    request.push_str("\r\n");
    let mut request_last = head;
    if version == "1.1" && !args.no_connection_close && !user_connection {
        request_last.push_str("Connection: close\r\n");
    } else if version == "1.0" && args.no_connection_close && calls_per_conn != Some(1) {
        request_last.push_str("Connection: keep-alive\r\n");
    }
    request_last.push_str(&extra);
    request_last.push_str("\r\n");
    Ok((request, request_last))
}

/// Worker threads. Defaults measured on loopback (see engine.rs): open loop scales with one
/// worker per CPU; a closed loop saturates with half the CPUs and more workers only take CPU
/// from a server on the same machine; never more workers than closed-loop connections.
fn threads_from_args(
    args: &RunArgs,
    workload: Workload,
    cpus: usize,
) -> Result<usize, ConfigError> {
    let default_threads = match workload {
        Workload::Open(_) => cpus,
        Workload::Closed(_) => cpus / 2,
    };
    let given = at_least_one("--threads", args.threads.map(|t| t as u64))?;
    let mut threads = given.map_or(default_threads, |t| t as usize).max(1);
    if let Workload::Closed(c) = workload {
        threads = threads.min(c as usize);
    }
    Ok(threads)
}

impl Config {
    /// Validate `args` into a configuration. `cpus` is the default worker count.
    pub fn from_args(args: &RunArgs, cpus: usize) -> Result<Config, ConfigError> {
        use ConfigError::{Invalid, Missing};
        let url_mode = args.url.is_some();
        let target = target_from_args(args)?;
        let workload = workload_from_args(args, url_mode)?;
        let stop = stop_from_args(args, url_mode)?;
        let calls_per_conn = match at_least_one("--num-calls", args.num_calls)? {
            Some(n) => Some(n),
            // Closed loop for a duration: keep each connection until the end (like wrk). With
            // --num-conns every connection must end, so it makes one call (httperf's default).
            None if args.concurrency.is_some() && matches!(stop, Stop::Duration(_)) => None,
            None => Some(1),
        };
        let burst = at_least_one("--burst-length", args.burst_length)?.unwrap_or(1);
        let (request, request_last) = requests_from_args(args, &target, calls_per_conn)?;
        let timeout = match args.timeout {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None if url_mode => Some(DEFAULT_URL_TIMEOUT),
            None => None,
        };
        let client = args.client.unwrap_or((0, 1));
        let threads = threads_from_args(args, workload, cpus)?;
        let pace_slack = args.pace_slack.unwrap_or(DEFAULT_PACE_SLACK);
        if pace_slack > Duration::from_secs(1) {
            return Err(Invalid {
                flag: "--pace-slack",
                value: format!("{pace_slack:?}"),
                expected: "at most 1s (it delays arrivals; 100us is the default)".into(),
            });
        }
        let max_inflight =
            at_least_one("--max-inflight", args.max_inflight)?.unwrap_or(DEFAULT_MAX_INFLIGHT);
        if args.insecure && !target.tls {
            return Err(Missing("--insecure only applies to https:// (or --ssl)"));
        }
        let mut cfg = Config {
            method: args.method.clone(),
            head_request: args.method.eq_ignore_ascii_case("HEAD"),
            request: request.into_bytes(),
            request_last: request_last.into_bytes(),
            target,
            workload,
            stop,
            calls_per_conn,
            burst,
            timeout,
            think_timeout: args.think_timeout.unwrap_or(Duration::ZERO),
            send_buffer: args.send_buffer,
            recv_buffer: args.recv_buffer,
            client,
            insecure: args.insecure,
            threads,
            runtime: args.runtime,
            pace_slack,
            max_inflight,
            seed: args
                .seed
                .unwrap_or(0x6c6f_6164_6765_6e00 ^ u64::from(client.0)),
            verbose: args.verbose,
            progress: !args.no_progress,
            json: args.json.clone(),
            fail_if: args.fail_if.clone(),
            command_line: String::new(),
        };
        cfg.command_line = cfg.httperf_command_line();
        Ok(cfg)
    }

    /// The normalised command line in httperf's style (what httperf prints first).
    fn httperf_command_line(&self) -> String {
        let mut s = String::from("loadgen");
        if let Some(t) = self.timeout {
            s.push_str(&format!(" --timeout={}", t.as_secs_f64()));
        }
        if !self.think_timeout.is_zero() {
            s.push_str(&format!(
                " --think-timeout={}",
                self.think_timeout.as_secs_f64()
            ));
        }
        s.push_str(&format!(
            " --client={}/{} --server={} --port={} --uri={}",
            self.client.0, self.client.1, self.target.host, self.target.port, self.target.uri
        ));
        match self.workload {
            Workload::Open(Distribution::Fixed { period_s }) => {
                s.push_str(&format!(" --rate={}", 1.0 / period_s))
            }
            Workload::Open(d) => s.push_str(&format!(" --period={}", d.httperf_spelling())),
            Workload::Closed(1) => {}
            Workload::Closed(c) => s.push_str(&format!(" --concurrency={c}")),
        }
        if let Some(b) = self.send_buffer {
            s.push_str(&format!(" --send-buffer={b}"));
        }
        if let Some(b) = self.recv_buffer {
            s.push_str(&format!(" --recv-buffer={b}"));
        }
        if self.target.tls {
            s.push_str(" --ssl");
        }
        if !self.method.eq_ignore_ascii_case("GET") {
            s.push_str(&format!(" --method={}", self.method));
        }
        match self.stop {
            Stop::Conns(n) => s.push_str(&format!(" --num-conns={n}")),
            Stop::Duration(d) => s.push_str(&format!(" --duration={}s", d.as_secs_f64())),
        }
        if let Some(c) = self.calls_per_conn {
            s.push_str(&format!(" --num-calls={c}"));
        }
        if self.burst > 1 {
            s.push_str(&format!(" --burst-length={}", self.burst));
        }
        s
    }

    /// The configuration as JSON (stored in results so a run can be reproduced).
    pub fn to_json(&self) -> serde_json::Value {
        let workload = match self.workload {
            Workload::Open(d) => {
                serde_json::json!({"loop": "open", "arrival": d, "rate": d.rate()})
            }
            Workload::Closed(c) => serde_json::json!({"loop": "closed", "concurrency": c}),
        };
        let stop = match self.stop {
            Stop::Conns(n) => serde_json::json!({"num_conns": n}),
            Stop::Duration(d) => serde_json::json!({"duration_s": d.as_secs_f64()}),
        };
        serde_json::json!({
            "target": {
                "host": self.target.host,
                "port": self.target.port,
                "tls": self.target.tls,
                "uri": self.target.uri,
                "host_header": self.target.host_header,
            },
            "method": self.method,
            "request": String::from_utf8_lossy(&self.request),
            "request_last": String::from_utf8_lossy(&self.request_last),
            "workload": workload,
            "stop": stop,
            "calls_per_conn": self.calls_per_conn,
            "burst_length": self.burst,
            "timeout_s": self.timeout.map(|t| t.as_secs_f64()),
            "think_timeout_s": self.think_timeout.as_secs_f64(),
            "send_buffer": self.send_buffer,
            "recv_buffer": self.recv_buffer,
            "client": [self.client.0, self.client.1],
            "insecure": self.insecure,
            "threads": self.threads,
            "runtime": self.runtime,
            "pace_slack_s": self.pace_slack.as_secs_f64(),
            "max_inflight": self.max_inflight,
            "seed": self.seed,
            "command_line": self.command_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).unwrap();
        Config::from_args(&cli.run, 2)
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?x=1#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.uri.as_str()),
            ("127.0.0.1", 8080, false, "/a/b?x=1")
        );
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = parse_url("https://example.test").unwrap();
        assert_eq!((t.port, t.tls, t.uri.as_str()), (443, true, "/"));
        assert_eq!(t.host_header, "example.test");
        let t = parse_url("http://[::1]:81/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert_eq!(t.host_header, "[::1]:81");
        for bad in [
            "ftp://x/",
            "127.0.0.1:80",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u@h/",
            "http://[::1/",
            "http://h/a b",
            "ht€p://h/",
            "€",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_escapes() {
        assert_eq!(
            decode_headers("Referer: foo\\nAuth: secret\\n").unwrap(),
            "Referer: foo\r\nAuth: secret\r\n"
        );
        assert_eq!(decode_headers("X: \\101").unwrap(), "X: A\r\n");
        assert_eq!(decode_headers("Accept: */*").unwrap(), "Accept: */*\r\n");
        assert!(decode_headers("no colon here").is_err());
    }

    #[test]
    fn httperf_defaults() {
        let c = cfg(&["--server", "127.0.0.1", "--port", "8080"]).unwrap();
        assert_eq!(c.workload, Workload::Closed(1));
        assert_eq!(c.stop, Stop::Conns(1));
        assert_eq!(c.timeout, None);
        assert_eq!(c.calls_per_conn, Some(1));
        assert_eq!(
            std::str::from_utf8(&c.request).unwrap(),
            format!(
                "GET / HTTP/1.1\r\nUser-Agent: loadgen/{}\r\nHost: 127.0.0.1\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            std::str::from_utf8(&c.request_last).unwrap(),
            format!(
                "GET / HTTP/1.1\r\nUser-Agent: loadgen/{}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(c
            .command_line
            .starts_with("loadgen --client=0/1 --server=127.0.0.1 --port=8080"));
        let c = cfg(&["--server=h", "--no-connection-close"]).unwrap();
        assert_eq!(c.request, c.request_last);
        let c = cfg(&["--server=h", "--add-header=Connection: keep-alive"]).unwrap();
        assert_eq!(c.request, c.request_last);
    }

    #[test]
    fn httperf_rate_and_period() {
        let c = cfg(&["--server=h", "--rate=200", "--num-conns=10"]).unwrap();
        assert_eq!(
            c.workload,
            Workload::Open(Distribution::Fixed { period_s: 0.005 })
        );
        let c = cfg(&["--server=h", "--period=e0.01", "--num-conns=10"]).unwrap();
        assert_eq!(
            c.workload,
            Workload::Open(Distribution::Poisson { mean_s: 0.01 })
        );
        let c = cfg(&["http://h/", "--rate=100", "--arrival=poisson"]).unwrap();
        assert_eq!(
            c.workload,
            Workload::Open(Distribution::Poisson { mean_s: 0.01 })
        );
        assert_eq!(c.stop, Stop::Duration(DEFAULT_DURATION));
        assert_eq!(c.timeout, Some(DEFAULT_URL_TIMEOUT));
    }

    #[test]
    fn contradictions_are_errors() {
        for args in [
            &["http://h/", "--rate=1", "--concurrency=2"][..],
            &["http://h/", "--server=h", "--rate=1"],
            &["http://h/", "--rate=1", "--num-conns=5", "--duration=1s"],
            &["--server=h", "--rate=1", "--period=d1"],
            &["http://h/", "--arrival=poisson", "--concurrency=2"],
            &["http://h/"],
            &["http://h/", "--concurrency=0"],
            &["http://h/", "--rate=-5"],
            &["http://h/", "--rate=1", "--http-version=2"],
            &["http://h/", "--rate=1", "--method=G T"],
            &["http://h/", "--rate=1", "--insecure"],
            &["--server=h", "--period=x"],
            &["http://h/", "--concurrency=1", "--num-calls=0"],
        ] {
            assert!(cfg(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn count_flags_need_at_least_one() {
        for (args, flag) in [
            (&["http://h/", "--concurrency=0"][..], "--concurrency"),
            (&["--server=h", "--num-conns=0"], "--num-conns"),
            (&["--server=h", "--num-calls=0"], "--num-calls"),
            (&["--server=h", "--burst-length=0"], "--burst-length"),
            (&["--server=h", "--threads=0"], "--threads"),
            (
                &["--server=h", "--rate=5", "--max-inflight=0"],
                "--max-inflight",
            ),
        ] {
            let e = cfg(args).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid {flag} '0': at least 1"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn max_inflight_default_and_override() {
        let c = cfg(&["--server=h", "--rate=5"]).unwrap();
        assert_eq!(c.max_inflight, DEFAULT_MAX_INFLIGHT);
        assert_eq!(c.to_json()["max_inflight"], DEFAULT_MAX_INFLIGHT);
        let c = cfg(&["--server=h", "--rate=5", "--max-inflight=100"]).unwrap();
        assert_eq!(c.max_inflight, 100);
    }

    #[test]
    fn closed_loop_defaults_to_unlimited_calls() {
        let c = cfg(&["http://h:81/x", "-c", "64", "-d", "5s"]).unwrap();
        assert_eq!(c.workload, Workload::Closed(64));
        assert_eq!(c.calls_per_conn, None);
        assert_eq!(c.stop, Stop::Duration(Duration::from_secs(5)));
        assert_eq!(c.threads, 1);
        let c = cfg(&["http://h:81/x", "-c", "64", "--threads", "2"]).unwrap();
        assert_eq!(c.threads, 2);
        let c = cfg(&["http://h:81/x", "--rate", "10"]).unwrap();
        assert_eq!(c.threads, 2);
        let c = cfg(&["http://h:81/x", "-c", "1"]).unwrap();
        assert_eq!(c.threads, 1);
        // A connection count needs connections that end.
        let c = cfg(&["http://h:81/x", "-c", "4", "--num-conns", "100"]).unwrap();
        assert_eq!(c.calls_per_conn, Some(1));
    }

    #[test]
    fn pace_slack_defaults_and_bounds() {
        let c = cfg(&["http://h:81/x", "--rate", "10"]).unwrap();
        assert_eq!(c.pace_slack, DEFAULT_PACE_SLACK);
        assert_eq!(c.to_json()["pace_slack_s"], 0.0001);
        let c = cfg(&["http://h:81/x", "--rate", "10", "--pace-slack", "0"]).unwrap();
        assert_eq!(c.pace_slack, Duration::ZERO);
        let c = cfg(&["http://h:81/x", "--rate", "10", "--pace-slack", "1ms"]).unwrap();
        assert_eq!(c.pace_slack, Duration::from_millis(1));
        let e = cfg(&["http://h:81/x", "--rate", "10", "--pace-slack", "2s"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --pace-slack '2s': at most 1s (it delays arrivals; 100us is the default)"
        );
    }
}
