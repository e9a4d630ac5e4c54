//! `loadgen` binary: parse the command line, run the engine (or `merge`), print the httperf
//! summary, write `--json`, apply `--fail-if`.
//!
//! Exit status: 0 success, 1 a `--fail-if` threshold failed, 2 bad usage or the run could not
//! start (one `loadgen: error: ...` line on stderr).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use loadgen::cli::{Cli, Command, MergeArgs, RunArgs};
use loadgen::config::{Config, Workload};
use loadgen::engine::{self, Live};
use loadgen::record::RunFacts;
use loadgen::result::RunResult;
use loadgen::{gate, httperf_fmt, json_out, merge, sys};

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
    exprs
        .iter()
        .map(|s| {
            s.parse::<gate::Threshold>()
                .map_err(|e| anyhow::anyhow!("invalid --fail-if '{s}': {e}"))
        })
        .collect()
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
    httperf_fmt::write_summary(r, &mut out).context("writing the summary to stdout")?;
    if modern || verbose > 0 {
        let pct = |p: &loadgen::result::Percentiles| {
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
    out.flush()?;
    drop(out);
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
        .map(|live| spawn_progress(live, done.clone(), &cfg));

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

/// Draw a one-line progress display on stderr until `done`.
fn spawn_progress(
    live: Arc<Live>,
    done: Arc<AtomicBool>,
    cfg: &Config,
) -> std::thread::JoinHandle<()> {
    let total = match cfg.stop {
        loadgen::config::Stop::Conns(n) => Some(n),
        loadgen::config::Stop::Duration(_) => None,
    };
    let duration = match cfg.stop {
        loadgen::config::Stop::Duration(d) => Some(d),
        loadgen::config::Stop::Conns(_) => None,
    };
    let open = matches!(cfg.workload, Workload::Open(_));
    std::thread::spawn(move || {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new(duration.map_or(0, |d| d.as_millis() as u64)),
        };
        let style = if total.is_some() {
            "{elapsed_precise} [{bar:30}] {pos}/{len} conns  {msg}"
        } else {
            "{elapsed_precise} [{bar:30}] {percent:>3}%  {msg}"
        };
        if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
            bar.set_style(s.progress_chars("=> "));
        }
        let start = std::time::Instant::now();
        let mut last_replies = 0u64;
        let mut last_t = start;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let replies = live.replies.load(Ordering::Relaxed);
            let errors = live.errors.load(Ordering::Relaxed);
            let conns = live.conns.load(Ordering::Relaxed);
            let now = std::time::Instant::now();
            let dt = now.duration_since(last_t).as_secs_f64();
            let rate = if dt > 0.0 {
                (replies - last_replies) as f64 / dt
            } else {
                0.0
            };
            last_replies = replies;
            last_t = now;
            if total.is_some() {
                bar.set_position(conns);
            } else {
                bar.set_position(now.duration_since(start).as_millis() as u64);
            }
            bar.set_message(format!(
                "replies {replies} ({rate:.0}/s) errors {errors}{}",
                if open { "" } else { " closed-loop" }
            ));
        }
        bar.finish_and_clear();
    })
}
