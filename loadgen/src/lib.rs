//! `loadgen`: an httperf-compatible HTTP load generator on a modern engine.
//!
//! Module map (results side, pure logic):
//! - [`record`]: per-worker event recorder the engine feeds (lock-free, one per worker thread).
//! - [`result`]: the serialisable result of a run (`RunResult`), exact to merge.
//! - [`httperf_fmt`]: prints httperf's summary layout, and parses it back into numbers.
//! - [`json_out`]: writes a result file atomically.
//! - [`merge`]: combines results from several client processes (`--client I/N`).
//! - [`gate`]: `--fail-if` thresholds for CI.
//! - [`report`]: what the binary prints for a result (summary, -v extras, latency lines).
//!
//! Module map (engine side, I/O):
//! - [`cli`]: the command line (httperf options and the modern interface).
//! - [`config`]: validated run configuration built from the command line.
//! - [`arrival`]: open-loop arrival schedules (fixed, Poisson, uniform).
//! - [`pacer`]: sub-millisecond waits for the schedule (timerfd in the tokio reactor).
//! - [`http_parse`]: sans-I/O HTTP/1.x response parser.
//! - [`engine`]: the tokio engine that opens connections and issues calls.
//! - [`tls`]: rustls client configuration for `https://`.
//! - [`sys`]: process-level facts and limits (RLIMIT_NOFILE, CPU time).
//! - [`progress`]: the live progress line on stderr.

pub mod gate;
pub mod httperf_fmt;
pub mod json_out;
pub mod merge;
pub mod record;
pub mod report;
pub mod result;

pub mod arrival;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http_parse;
pub mod pacer;
pub mod progress;
pub mod sys;
pub mod tls;
