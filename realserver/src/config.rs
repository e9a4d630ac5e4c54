//! Command-line options and the validated configuration built from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::content::DEFAULT_BODY_BYTES;

/// Command-line options of `realserver`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "realserver",
    version,
    about = "Minimal static HTTP/1.x server: the paper's 75-byte page (or files under --root), \
             with per-node /stats"
)]
pub struct Cli {
    /// Address to listen on (repeatable, e.g. the node's own address and the VIP).
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: Vec<SocketAddr>,

    /// Worker threads, each with its own runtime and SO_REUSEPORT listener [default: number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// listen(2) backlog of each listening socket.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(i32).range(1..=1_048_576))]
    pub backlog: i32,

    /// Set IP_FREEBIND, so an address not yet assigned to this host (a VIP) can be bound;
    /// without it such an address is an error at startup.
    #[arg(long)]
    pub freebind: bool,

    /// Node name reported by /stats and the startup line.
    #[arg(long, value_name = "NAME", default_value = "realserver")]
    pub name: String,

    /// Size in bytes of the generated page served at / and /index.html.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BODY_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(0..=(64 << 20)), conflicts_with = "root")]
    pub body_bytes: u64,

    /// Serve files below this directory instead of the generated page (read from disk on every
    /// request; a directory serves its index.html; paths with '..' are refused with 400).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// CPU work per request, in microseconds of the worker thread's CPU time (busy loop),
    /// to emulate slower hardware. /stats is exempt.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub work_us: u64,

    /// Seconds a client has to send a complete request head; also the idle limit of a
    /// keep-alive connection between requests. Fractions allowed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub header_timeout: f64,

    /// Largest request head (request line + headers) accepted; larger gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1024..=65_000))]
    pub max_header_bytes: u32,

    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM before exiting anyway.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs)]
    pub shutdown_timeout: f64,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds such as 10 or 0.5, got '{s}'"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("expected seconds in (0, 86400], got {s}"));
    }
    Ok(v)
}

/// A seconds option as a Duration, with the range `parse_secs` enforces.
fn secs(option: &'static str, v: f64) -> Result<Duration, ConfigError> {
    parse_secs(&v.to_string())
        .map(Duration::from_secs_f64)
        .map_err(|reason| ConfigError::Invalid { option, reason })
}

/// What to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// The generated page of this many bytes at `/` and `/index.html`, 404 elsewhere.
    Page(usize),
    /// Files below this (canonical) directory.
    Root(PathBuf),
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Number of worker threads (at least one).
    pub threads: usize,
    /// listen(2) backlog.
    pub backlog: i32,
    /// Bind with IP_FREEBIND.
    pub freebind: bool,
    /// Node name.
    pub name: String,
    /// Content to serve.
    pub content: ContentSource,
    /// CPU time burnt per request.
    pub work: Duration,
    /// Request-head and keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Largest accepted request head.
    pub max_header_bytes: usize,
    /// Bound on the graceful shutdown.
    pub shutdown_timeout: Duration,
}

/// Why the options do not make a usable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An option holds a value outside its range. clap's parsers already
    /// refuse these on the command line; this catches a [`Cli`] built in code.
    #[error("--{option}: {reason}")]
    Invalid {
        /// The option, without dashes.
        option: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// `--root` does not name a readable directory.
    #[error("--root {path}: {reason}")]
    Root {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Checks the options (the root must be an existing directory) and fills defaults.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        // `Cli`'s fields are public, so a library caller can skip clap's
        // range checks; Duration::from_secs_f64 would panic on them.
        let header_timeout = secs("header-timeout", cli.header_timeout)?;
        let shutdown_timeout = secs("shutdown-timeout", cli.shutdown_timeout)?;
        if cli.listen.is_empty() {
            return Err(ConfigError::Invalid {
                option: "listen",
                reason: "at least one address is needed".into(),
            });
        }
        if cli.threads == Some(0) {
            return Err(ConfigError::Invalid {
                option: "threads",
                reason: "expected 1..=1024, got 0".into(),
            });
        }
        if cli.backlog < 1 {
            return Err(ConfigError::Invalid {
                option: "backlog",
                reason: format!("expected 1..=1048576, got {}", cli.backlog),
            });
        }
        let threads = match cli.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let content = match cli.root {
            Some(path) => {
                let canon = std::fs::canonicalize(&path).map_err(|e| ConfigError::Root {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if !canon.is_dir() {
                    return Err(ConfigError::Root {
                        path,
                        reason: "not a directory".into(),
                    });
                }
                ContentSource::Root(canon)
            }
            None => ContentSource::Page(cli.body_bytes as usize),
        };
        Ok(Config {
            listen: cli.listen,
            threads,
            backlog: cli.backlog,
            freebind: cli.freebind,
            name: cli.name,
            content,
            work: Duration::from_micros(cli.work_us),
            header_timeout,
            max_header_bytes: cli.max_header_bytes as usize,
            shutdown_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("realserver").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = Config::from_cli(parse(&[]).unwrap()).unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
        assert!(c.threads >= 1);
        assert_eq!(c.content, ContentSource::Page(75));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.work, Duration::ZERO);
    }

    #[test]
    fn repeated_listen_and_fractions() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "[::1]:2",
            "--header-timeout",
            "0.5",
            "--threads",
            "3",
        ])
        .unwrap();
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.threads, 3);
        assert_eq!(c.header_timeout, Duration::from_millis(500));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--header-timeout", "0"]).is_err());
        assert!(parse(&["--header-timeout", "abc"]).is_err());
        assert!(parse(&["--listen", "localhost"]).is_err());
        assert!(parse(&["--max-header-bytes", "10"]).is_err());
        assert!(parse(&["--root", "/", "--body-bytes", "5"]).is_err());
    }

    #[test]
    fn out_of_range_fields_set_in_code_are_errors_not_panics() {
        let base = parse(&[]).unwrap();
        type Case = (&'static str, fn(&mut Cli));
        let cases: [Case; 6] = [
            ("--header-timeout: ", |c| c.header_timeout = f64::NAN),
            ("--header-timeout: ", |c| c.header_timeout = -1.0),
            ("--shutdown-timeout: ", |c| {
                c.shutdown_timeout = f64::INFINITY
            }),
            ("--listen: ", |c| c.listen.clear()),
            ("--threads: ", |c| c.threads = Some(0)),
            ("--backlog: ", |c| c.backlog = 0),
        ];
        for (want, set) in cases {
            let mut cli = base.clone();
            set(&mut cli);
            let e = Config::from_cli(cli).unwrap_err().to_string();
            assert!(e.starts_with(want), "{want}: {e}");
        }
        let mut cli = base;
        cli.header_timeout = 0.25;
        assert_eq!(
            Config::from_cli(cli).unwrap().header_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn root_must_be_a_directory() {
        let cli = parse(&["--root", "/definitely/not/here"]).unwrap();
        let e = Config::from_cli(cli).unwrap_err().to_string();
        assert!(e.starts_with("--root /definitely/not/here:"), "{e}");
    }
}
