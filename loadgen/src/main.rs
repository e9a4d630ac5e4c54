//! `loadgen` binary: parse the command line, run the engine (or `merge`), print the httperf
//! summary, write `--json`, apply `--fail-if`.
//!
//! Exit status: 0 success, 1 a `--fail-if` threshold failed, 2 bad usage or the run could not
//! start (one `loadgen: error: ...` line on stderr).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use loadgen::cli::{Cli, Command, MergeArgs, RunArgs};
use loadgen::config::{Config, Workload};
use loadgen::engine::{self, Live};
use loadgen::record::RunFacts;
use loadgen::result::RunResult;
use loadgen::{gate, json_out, merge, progress, report, sys};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Some(Command::Merge(m)) => merge_cmd(&m),
        None => run_cmd(&cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<ExitMarker>() {
            Some(m) => ExitCode::from(m.0),
            None => {
                eprintln!("loadgen: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Error value meaning "already reported, exit with this status".
#[derive(Debug)]
struct ExitMarker(u8);
impl std::fmt::Display for ExitMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for ExitMarker {}

fn parse_thresholds(exprs: &[String]) -> Result<Vec<gate::Threshold>> {
    // GateError names the expression itself.
    gate::parse_all(exprs).map_err(|e| anyhow::anyhow!("invalid {e}"))
}

/// Print the summary, write JSON, apply thresholds.
fn report(
    r: &RunResult,
    json: Option<&std::path::Path>,
    thresholds: &[gate::Threshold],
    verbose: u8,
    modern: bool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report::write(r, verbose, modern, &mut out).context("writing the summary to stdout")?;
    out.flush()?;
    drop(out);
    // On stderr, so that stdout stays httperf's layout line for line.
    for w in &r.summary.generator_warnings {
        eprintln!("loadgen: warning: {w}");
    }
    if let Some(path) = json {
        json_out::write_atomic(r, path)
            .with_context(|| format!("writing result JSON to {}", path.display()))?;
    }
    let failed = gate::check(thresholds, r);
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("loadgen: threshold failed: {f}");
        }
        return Err(ExitMarker(1).into());
    }
    Ok(())
}

fn merge_cmd(m: &MergeArgs) -> Result<()> {
    let thresholds = parse_thresholds(&m.fail_if)?;
    let mut results = Vec::with_capacity(m.inputs.len());
    for p in &m.inputs {
        results.push(json_out::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    let merged = merge::merge(results).context("merging results")?;
    report(&merged, m.json.as_deref(), &thresholds, 0, false)
}

fn run_cmd(args: &RunArgs) -> Result<()> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cfg = Config::from_args(args, cpus)?;
    let thresholds = parse_thresholds(&cfg.fail_if)?;
    if let Err(e) = sys::raise_nofile_limit() {
        eprintln!("loadgen: warning: cannot raise the open-file limit: {e}");
    }

    let show_progress = cfg.progress && std::io::stderr().is_terminal();
    let live = show_progress.then(|| Arc::new(Live::default()));
    let done = Arc::new(AtomicBool::new(false));
    let progress_thread = live
        .clone()
        .map(|live| progress::spawn(live, done.clone(), &cfg));

    let (cpu_u0, cpu_s0) = sys::cpu_times();
    let run = engine::run(&cfg, live);
    let (cpu_u1, cpu_s1) = sys::cpu_times();
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    let outcome = run?;
    if outcome.addr_unavailable {
        eprintln!(
            "loadgen: hint: connects failed with EADDRNOTAVAIL (counted as addrunavail): the local \
             ephemeral ports ran out; widen net.ipv4.ip_local_port_range, keep net.ipv4.tcp_tw_reuse \
             enabled, drop --no-connection-close, use --num-calls > 1 (keep-alive), or lower --rate"
        );
    }
    let facts = RunFacts {
        command_line: cfg.command_line.clone(),
        config: cfg.to_json(),
        client_index: cfg.client.0,
        client_count: cfg.client.1,
        max_concurrent: outcome.max_concurrent,
        max_inflight: matches!(cfg.workload, Workload::Open(_)).then_some(cfg.max_inflight),
        max_connect_burst: outcome.max_connect_burst,
        cpu_user_s: (cpu_u1 - cpu_u0).max(0.0),
        cpu_system_s: (cpu_s1 - cpu_s0).max(0.0),
        started_unix_ms: outcome.started_unix_ms,
    };
    let result = outcome.recorder.finish(outcome.end, facts);
    report(
        &result,
        cfg.json.as_deref(),
        &thresholds,
        cfg.verbose,
        args.url.is_some(),
    )
}
