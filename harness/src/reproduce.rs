//! `harness reproduce`: the I/O side of [`crate::sweep`]. Validates
//! everything first (options, plan, result directory, binaries) and only
//! then touches the testbed. Every point gets a fresh testbed of its
//! configuration's topology (built in ~0.5 s: no TIME_WAIT socket,
//! conntrack entry, neighbour cache, tbf backlog or server state carries
//! over from the previous point), fresh servers and balancers, a warm-up
//! at the sweep's lowest rate, then the measured load from the three
//! client hosts (loadgen, or the paper's httperf). After every point the
//! complete point is appended to `results.json` (atomically) and the CSVs,
//! figures and `REPORT.md` are re-rendered, so Ctrl-C or a failure keeps
//! everything measured so far, and `--resume DIR` measures what is missing.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use loadgen::httperf_fmt::ParsedSummary;
use reports::model::{BalancerSnapshot, Measured, Point, Reproduction, ServedBy, SweepSpec};

use crate::experiment::{fmt_num, run_dir_name, RunSpec, Served, Stop, SERVICE_PORT};
use crate::profile::Profile;
use crate::run::{
    collect_balancer_stats, collect_served, make_run_dir, notice, progress, run_clients,
    run_loadgens, set_quiet_progress, start_balancers, start_servers, unix_ms, versions,
    with_testbed, Binaries, ClientJob, RunError, Site, TestbedUse,
};
use crate::signal;
use crate::supervise::{check_interrupt, Procs};
use crate::sweep::{
    check_points, eta_s, missing, plan, sweep_spec, Config, Generator, PointKey, SweepArgs,
    TIMEOUT_S,
};
use crate::testbed::Testbed;
use crate::topology::Topology;

/// What `harness reproduce` was given.
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// The sweep options (defaults filled in by [`sweep_spec`]).
    pub sweep: SweepArgs,
    /// `--generator`.
    pub generator: Generator,
    /// `--profile` (a built-in name or a file).
    pub profile: String,
    /// `--out-dir`.
    pub out_dir: Option<PathBuf>,
    /// `--resume`.
    pub resume: Option<PathBuf>,
    /// Directory of loadgen, realserver, balancer.
    pub bin_dir: PathBuf,
    /// State directory of the testbed.
    pub state_dir: PathBuf,
    /// Print every phase and testbed command.
    pub verbose: bool,
    /// The command line, recorded in `results.json`.
    pub command: String,
}

/// Why `reproduce` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// Bad input (exit 2): nothing was created or touched.
    #[error("{0}")]
    Input(String),
    /// A failed point, a missing tool, or an interrupt (exit 1 or 130).
    #[error(transparent)]
    Run(#[from] RunError),
}

fn input<T>(m: impl Into<String>) -> Result<T, ReproduceError> {
    Err(ReproduceError::Input(m.into()))
}

/// A validated run, ready to measure.
pub struct Prepared {
    /// The result directory (absolute).
    pub dir: PathBuf,
    /// The run so far (no point for a new run).
    pub repro: Reproduction,
    /// The profile of every point.
    pub profile: Profile,
    /// The points still to measure, in order.
    pub todo: Vec<PointKey>,
    /// Where the tools are.
    pub bins: Binaries,
}

/// `results/reproduce-<UTC time>`.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("results").join(run_dir_name(unix_ms() / 1000).replacen("run", "reproduce", 1))
}

/// Validates everything and decides what to measure; creates nothing.
pub fn prepare(opts: &ReproduceOptions) -> Result<Prepared, ReproduceError> {
    let (dir, repro, profile) = match &opts.resume {
        Some(d) => resume_of(d)?,
        None => new_run(opts)?,
    };
    let generator = Generator::parse(&repro.spec.generator).ok_or_else(|| {
        ReproduceError::Input(format!(
            "{}: unknown generator `{}`",
            dir.display(),
            repro.spec.generator
        ))
    })?;
    for c in &repro.spec.configs {
        run_spec(c, &profile, &repro.spec, 1.0).map_err(ReproduceError::Input)?;
    }
    let todo = missing(&plan(&repro.spec), &repro.points);
    let bins = Binaries::find(&opts.bin_dir)?;
    if generator == Generator::Httperf && tool_version("httperf").is_none() {
        return Err(RunError::Process {
            what: "httperf is not installed".into(),
            detail: "install it (Debian: apt-get install httperf) or use --generator loadgen"
                .into(),
        }
        .into());
    }
    Ok(Prepared {
        dir,
        repro,
        profile,
        todo,
        bins,
    })
}

/// A new run: the sweep from the options, in a new (or empty) directory;
/// an existing run of the same sweep there is resumed.
fn new_run(opts: &ReproduceOptions) -> Result<(PathBuf, Reproduction, Profile), ReproduceError> {
    let profile = Profile::load(&opts.profile).map_err(|e| ReproduceError::Input(e.to_string()))?;
    let spec = sweep_spec(&opts.sweep, opts.generator, &profile)
        .map_err(|e| ReproduceError::Input(e.0))?;
    let dir = absolute(&opts.out_dir.clone().unwrap_or_else(default_out_dir))?;
    if dir.exists() {
        if dir.join(reports::model::RESULTS_FILE).is_file() {
            let (d, r, p) = resume_of(&dir)?;
            if r.spec != spec {
                return input(format!(
                    "--out-dir {}: holds a run of another sweep ({}); finish it with --resume {} or choose another directory",
                    dir.display(),
                    r.command,
                    dir.display()
                ));
            }
            return Ok((d, r, p));
        }
        let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none());
        if !dir.is_dir() || !empty.unwrap_or(false) {
            return input(format!(
                "--out-dir {}: exists and is not a resumable run (no results.json); choose a new or empty directory",
                dir.display()
            ));
        }
    }
    let versions = version_map(opts)?;
    let profile_json = serde_json::to_value(&profile).map_err(|e| {
        ReproduceError::Input(format!(
            "profile `{}` cannot be recorded: {e}",
            profile.name
        ))
    })?;
    let mut repro = Reproduction::new(
        opts.command.clone(),
        spec,
        profile_json,
        versions,
        unix_ms(),
    );
    repro.notes = notes(&repro.spec, &profile);
    Ok((dir, repro, profile))
}

/// The run stored in `dir`, its profile, and a check that its points fit its sweep.
fn resume_of(dir: &Path) -> Result<(PathBuf, Reproduction, Profile), ReproduceError> {
    let dir = absolute(dir)?;
    let repro = Reproduction::read(&dir).map_err(|e| ReproduceError::Input(e.to_string()))?;
    let profile: Profile = serde_json::from_value(repro.profile.clone()).map_err(|e| {
        ReproduceError::Input(format!(
            "{}: the recorded profile is not a harness profile: {e}",
            dir.display()
        ))
    })?;
    profile
        .validate()
        .map_err(|e| ReproduceError::Input(e.to_string()))?;
    check_points(&repro.spec, &repro.points)
        .map_err(|e| ReproduceError::Input(format!("{}: {}", dir.display(), e.0)))?;
    Ok((dir, repro, profile))
}

fn absolute(p: &Path) -> Result<PathBuf, ReproduceError> {
    std::path::absolute(p)
        .map_err(|e| ReproduceError::Input(format!("{}: cannot resolve: {e}", p.display())))
}

/// The experiment point of configuration `config` at `rate`: its topology,
/// the profile, bi-active and method, three clients, the sweep's duration.
pub fn run_spec(
    config: &str,
    profile: &Profile,
    spec: &SweepSpec,
    rate: f64,
) -> Result<RunSpec, String> {
    let c = Config::get(config).ok_or_else(|| format!("unknown configuration `{config}`"))?;
    let topology = Topology::load(c.topology).map_err(|e| e.to_string())?;
    let s = RunSpec {
        topology,
        profile: profile.clone(),
        bi_active: c.bi_active,
        method: c.method,
        scheduler: "rr".into(),
        rate: Some(rate),
        concurrency: None,
        stop: Stop::DurationS(spec.duration_s),
        clients: spec.clients as usize,
        timeout_s: TIMEOUT_S,
        server_threads: 1,
        client_threads: 1,
        // The paper's runs had none; past saturation they would withdraw balancers.
        health_checks: false,
    };
    s.validate().map_err(|e| format!("{config}: {e}"))?;
    Ok(s)
}

/// What differs from the paper's setup by construction (REPORT.md lists these).
fn notes(spec: &SweepSpec, profile: &Profile) -> Vec<String> {
    let mut v = vec![
        format!(
            "Emulation: every node is a network namespace on one {}-core host; profile `{}` gives balancers {} core and real servers {} core (cgroup quotas) and every web server {} µs of CPU per request, scaling the paper's Pentium III machines; the kernel's packet work is not throttled and all nodes share the host's cores.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            profile.name,
            profile.cpu.balancer.map_or("unlimited".into(), fmt_num),
            profile.cpu.realserver.map_or("unlimited".into(), fmt_num),
            profile.server_work_us.unwrap_or(0)
        ),
        "The balancer is this project's user-space balancer on a TUN device (NAT or DR, round robin, bi-active: its own web server takes an equal share), not LVS in a Linux 2.2 kernel; the web servers are `realserver` (one thread), not Apache.".into(),
        format!(
            "Each point: a fresh testbed and fresh servers, a {} s warm-up at the configuration's lowest rate (not measured), then {} s of load from {} client hosts; timeout {} s per operation (a connection not answered in time is a client-timo error). Served counts exclude the warm-up; balancer counters include it.",
            fmt_num(spec.warmup_s),
            fmt_num(spec.duration_s),
            spec.clients,
            fmt_num(TIMEOUT_S)
        ),
        "Balancers run with heartbeat membership (two-balancer configurations) but without health checks of their targets, as in the paper: past saturation a server misses its checks and a balancer whose targets all look down withdraws from ownership (a quick 2-LB run with checks on lost 17-21 % of the bi-active reply rate past saturation that way).".into(),
    ];
    if spec.generator == "httperf" {
        v.push("httperf 0.9.0 uses select(): it limits itself to 1024 open files (FD_SETSIZE), so past saturation, with many connections waiting for their timeout, it reports fd-unavail errors; loadgen's default --max-inflight is the same 1024.".into());
    }
    v
}

/// The first line of `dpkg-query`'s version of a Debian package (httperf
/// has no side-effect-free `--version`: it also opens a connection).
fn tool_version(pkg: &str) -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!v.is_empty()).then(|| format!("{pkg} {v}"))
}

fn version_map(opts: &ReproduceOptions) -> Result<BTreeMap<String, String>, ReproduceError> {
    let bins = Binaries::find(&opts.bin_dir)?;
    let v = versions(&bins);
    let mut m = BTreeMap::from([("harness".to_string(), v.harness)]);
    for (k, x) in [
        ("loadgen", v.loadgen),
        ("realserver", v.realserver),
        ("balancer", v.balancer),
        ("git_commit", v.git_commit),
        ("kernel", v.kernel),
        ("httperf", tool_version("httperf")),
    ] {
        if let Some(x) = x {
            m.insert(k.to_string(), x);
        }
    }
    Ok(m)
}

/// Requests each server answered between two `/stats` readings.
pub fn served_between(before: &[Served], after: &[Served]) -> Vec<ServedBy> {
    after
        .iter()
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.node == a.node && b.name == a.name)
                .map_or(0, |b| b.requests);
            ServedBy {
                node: a.node.clone(),
                name: a.name.clone(),
                role: a.role.as_str().to_string(),
                requests: a.requests.saturating_sub(b),
            }
        })
        .collect()
}

/// httperf's arguments for client `i` of `k` at the point's rate: the
/// paper's workload (one request per connection, fixed rate), as many
/// connections as `duration_s` at that rate, no `--hog` (it binds every
/// local port itself and defeats TIME_WAIT reuse on this testbed).
pub fn httperf_args(spec: &RunSpec, i: usize, k: usize, duration_s: f64) -> Vec<String> {
    let rate = spec.rate.unwrap_or(1.0) / k.max(1) as f64;
    let conns = ((rate * duration_s).round() as u64).max(1);
    vec![
        "httperf".into(),
        format!("--server={}", spec.topology.vip),
        format!("--port={SERVICE_PORT}"),
        "--uri=/".into(),
        format!("--rate={}", fmt_num(rate)),
        format!("--num-conns={conns}"),
        "--num-calls=1".into(),
        format!("--timeout={}", fmt_num(spec.timeout_s)),
        format!("--client={i}/{k}"),
    ]
}

/// Everything a point needs besides its key.
struct Ctx<'a> {
    dir: &'a Path,
    spec: &'a SweepSpec,
    profile: &'a Profile,
    bins: &'a Binaries,
    generator: Generator,
}

/// Measures one point on a testbed that is up: servers, balancers,
/// warm-up, load, counters. Everything is stopped on return.
fn measure(
    tb: &Testbed,
    flag: &AtomicBool,
    cx: &Ctx<'_>,
    key: &PointKey,
) -> Result<Point, RunError> {
    let spec = run_spec(&key.config, cx.profile, cx.spec, key.rate)
        .map_err(|e| RunError::Plan(crate::experiment::PlanError(e)))?;
    let name = format!("{}-{}-r{}", key.config, fmt_num(key.rate), key.rep);
    let out = make_run_dir(&cx.dir.join("work").join(name), &[])?;
    let site = Site {
        tb,
        bins: cx.bins,
        out: &out,
        prefix: "",
        flag,
    };
    let mut procs = Procs::default();
    let servers = spec.servers();
    let work = spec.profile.server_work_us;
    start_servers(site, &servers, spec.server_threads, work, &mut procs)?;
    let lbs = spec.balancers()?;
    start_balancers(site, &lbs, &mut procs)?;
    let clients = spec.client_nodes();

    // Warm-up at the configuration's lowest rate (below every knee).
    let mut warm = spec.clone();
    warm.rate = cx
        .spec
        .rates
        .get(&key.config)
        .and_then(|r| r.first().copied());
    warm.stop = Stop::DurationS(cx.spec.warmup_s);
    let warm_site = Site {
        prefix: "warmup-",
        ..site
    };
    let budget = cx.spec.warmup_s + TIMEOUT_S + 30.0;
    run_loadgens(warm_site, &clients, |i, j| warm.client_args(i, j), budget)?;
    check_interrupt(flag)?;

    let before = collect_served(&servers)?;
    let started = unix_ms();
    let budget = cx.spec.duration_s + TIMEOUT_S + 30.0;
    let (measured, lg, hp) = match cx.generator {
        Generator::Loadgen => {
            let r = run_loadgens(site, &clients, |i, j| spec.client_args(i, j), budget)?;
            (Measured::from_loadgen(&r), Some(r), None)
        }
        Generator::Httperf => {
            let h = run_httperf(site, &spec, &clients, cx.spec.duration_s, budget)?;
            (Measured::from_httperf(&h), None, Some(h))
        }
    };
    let after = collect_served(&servers)?;
    let balancers = collect_balancer_stats(&lbs)
        .into_iter()
        .map(|b| BalancerSnapshot {
            node: b.node,
            stats: b.stats,
            error: b.error,
        })
        .collect();
    procs.stop_all();
    let c = Config::get(&key.config).ok_or_else(|| RunError::Results {
        what: key.config.clone(),
        detail: "unknown configuration".into(),
    })?;
    let duration_s = match (&lg, &hp) {
        (Some(r), _) => r.summary.test_duration_s,
        (_, Some(h)) => h.iter().map(|s| s.test_duration_s).fold(0.0, f64::max),
        _ => cx.spec.duration_s,
    };
    Ok(Point {
        config: key.config.clone(),
        lbs: c.lbs,
        bi_active: c.bi_active,
        method: c.method.as_str().into(),
        offered_rate: key.rate,
        rep: key.rep,
        started_unix_ms: started,
        duration_s,
        measured,
        loadgen: lg,
        httperf: hp,
        served: served_between(&before, &after),
        balancers,
    })
}

/// Three httperf processes, one per client node; their summaries parsed.
fn run_httperf(
    site: Site<'_>,
    spec: &RunSpec,
    clients: &[String],
    duration_s: f64,
    budget: f64,
) -> Result<Vec<ParsedSummary>, RunError> {
    let k = clients.len();
    let jobs: Vec<ClientJob> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| ClientJob {
            node: c.clone(),
            what: format!("httperf in {c}"),
            argv: httperf_args(spec, i, k, duration_s),
            log: site.out.join("logs").join(format!("{c}.httperf.log")),
        })
        .collect();
    let logs: Vec<PathBuf> = jobs.iter().map(|j| j.log.clone()).collect();
    run_clients(site.tb, jobs, budget, site.flag)?;
    logs.iter()
        .map(|l| {
            let text = std::fs::read_to_string(l).unwrap_or_default();
            loadgen::httperf_fmt::parse_summary(&text).map_err(|e| RunError::Results {
                what: format!("httperf output {}", l.display()),
                detail: e.to_string(),
            })
        })
        .collect()
}

/// Shows progress: a bar with ETA on a terminal, else one line per point.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    t0: Instant,
    guess_s: f64,
}

impl Progress {
    fn new(total: usize, spec: &SweepSpec) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} points, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style.progress_chars("=> "));
            b
        });
        Progress {
            bar,
            total,
            t0: Instant::now(),
            guess_s: spec.warmup_s + spec.duration_s + 4.0,
        }
    }

    fn start(&self, key: &PointKey) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{} {} req/s rep {}",
                key.config,
                fmt_num(key.rate),
                key.rep + 1
            ));
        }
    }

    fn done(&self, n: usize, p: &Point) {
        let m = &p.measured;
        let line = format!(
            "point {n}/{}: {} {} req/s rep {}: reply rate {:.1}/s, errors {:.2} % ({} of {} conns)",
            self.total,
            p.config,
            fmt_num(p.offered_rate),
            p.rep + 1,
            m.reply_rate,
            m.error_rate_pct(),
            m.errors,
            m.conns
        );
        match &self.bar {
            Some(b) => {
                b.println(format!("harness: {line}"));
                b.inc(1);
            }
            None => {
                let eta = eta_s(
                    self.t0.elapsed().as_secs_f64(),
                    n,
                    self.total - n,
                    self.guess_s,
                );
                // Not through `progress`: that is quiet during the sweep.
                notice(format!("{line}; ETA {eta:.0} s"));
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Measures every point of `p.todo` in order, saving and re-rendering after
/// each; returns the finished run. Interrupts and failed points stop it
/// with the testbed torn down and every complete point kept.
pub fn run(p: Prepared, opts: &ReproduceOptions) -> Result<Reproduction, ReproduceError> {
    let Prepared {
        dir,
        mut repro,
        profile,
        todo,
        bins,
    } = p;
    let generator = Generator::parse(&repro.spec.generator).unwrap_or(Generator::Loadgen);
    std::fs::create_dir_all(&dir).map_err(|e| {
        ReproduceError::Run(RunError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })
    })?;
    save(&repro, &dir)?;
    progress(format!(
        "{} point(s) to measure ({} already in {}); results in {}",
        todo.len(),
        repro.points.len(),
        dir.display(),
        dir.display()
    ));
    set_quiet_progress(!opts.verbose);
    let spec = repro.spec.clone();
    let cx = Ctx {
        dir: &dir,
        spec: &spec,
        profile: &profile,
        bins: &bins,
        generator,
    };
    let bar = Progress::new(todo.len(), &spec);
    let result = measure_all(&mut repro, &cx, &todo, &bar, opts);
    bar.finish();
    set_quiet_progress(false);
    result?;
    if repro.finished_unix_ms.is_none() || !todo.is_empty() {
        repro.finished_unix_ms = Some(unix_ms());
        save(&repro, &dir)?;
    }
    progress(format!(
        "done: {} points; report {}",
        repro.points.len(),
        dir.join("REPORT.md").display()
    ));
    Ok(repro)
}

fn measure_all(
    repro: &mut Reproduction,
    cx: &Ctx<'_>,
    todo: &[PointKey],
    bar: &Progress,
    opts: &ReproduceOptions,
) -> Result<(), ReproduceError> {
    for (i, key) in todo.iter().enumerate() {
        signal::catch_interrupts();
        if signal::interrupted() {
            return Err(RunError::Interrupted.into());
        }
        bar.start(key);
        let topology = Topology::load(
            Config::get(&key.config)
                .map(|c| c.topology)
                .unwrap_or_default(),
        )
        .map_err(|e| ReproduceError::Input(e.to_string()))?;
        let u = TestbedUse {
            topology: &topology,
            profile: cx.profile,
            state_dir: &opts.state_dir,
            verbose: opts.verbose,
            keep_up: false,
        };
        let point = with_testbed(&u, |tb, flag| measure(tb, flag, cx, key));
        // `down` restored the default handlers: catch again before saving.
        signal::catch_interrupts();
        let point = point.inspect_err(|_| {
            notice(format!(
                "point {} {} req/s rep {} failed; {} complete point(s) kept in {}",
                key.config,
                fmt_num(key.rate),
                key.rep + 1,
                repro.points.len(),
                cx.dir.display()
            ));
        })?;
        repro.points.push(point);
        save(repro, cx.dir)?;
        if let Some(p) = repro.points.last() {
            bar.done(i + 1, p);
        }
    }
    Ok(())
}

/// `results.json` atomically, then every derived file.
fn save(repro: &Reproduction, dir: &Path) -> Result<(), ReproduceError> {
    repro.write_atomic(dir).map_err(|e| RunError::Results {
        what: "results.json".into(),
        detail: e.to_string(),
    })?;
    if !repro.points.is_empty() {
        reports::render_into(repro, dir).map_err(|e| RunError::Results {
            what: format!("rendering {}", dir.display()),
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Role;

    fn served(name: &str, n: u64) -> Served {
        Served {
            node: name.into(),
            name: name.into(),
            role: Role::Realserver,
            requests: n,
            stats: serde_json::Value::Null,
        }
    }

    #[test]
    fn served_counts_exclude_the_warm_up() {
        let v = served_between(
            &[served("rs1", 30)],
            &[served("rs1", 130), served("rs2", 7)],
        );
        assert_eq!(v[0].requests, 100);
        assert_eq!(v[1].requests, 7);
        assert_eq!(v[0].role, "realserver");
    }

    fn sweep() -> SweepSpec {
        let a = SweepArgs {
            configs: Some("2lb-bi-dr".into()),
            rates: Some("300,600".into()),
            ..SweepArgs::default()
        };
        sweep_spec(&a, Generator::Httperf, &Profile::builtin("paper").unwrap()).unwrap()
    }

    #[test]
    fn httperf_gets_a_third_of_the_load() {
        let s = sweep();
        let spec = run_spec("2lb-bi-dr", &Profile::builtin("paper").unwrap(), &s, 600.0).unwrap();
        assert_eq!(spec.topology.name, "2lb-2rs-dr");
        assert_eq!(spec.method.as_str(), "dr");
        let a = httperf_args(&spec, 2, 3, 10.0);
        assert!(a.contains(&"--rate=200".to_string()), "{a:?}");
        assert!(a.contains(&"--num-conns=2000".to_string()), "{a:?}");
        assert!(a.contains(&"--client=2/3".to_string()), "{a:?}");
        assert!(a.contains(&"--server=198.18.1.100".to_string()), "{a:?}");
        assert!(!a.iter().any(|x| x == "--hog"));
    }

    fn opts(d: &Path) -> ReproduceOptions {
        ReproduceOptions {
            sweep: SweepArgs {
                configs: Some("1lb-nat".into()),
                rates: Some("100,200".into()),
                ..SweepArgs::default()
            },
            generator: Generator::Loadgen,
            profile: "paper".into(),
            out_dir: Some(d.join("out")),
            resume: None,
            bin_dir: d.join("bins"),
            state_dir: d.join("state"),
            verbose: false,
            command: "harness reproduce".into(),
        }
    }

    fn input_err(o: &ReproduceOptions) -> String {
        match prepare(o) {
            Err(ReproduceError::Input(m)) => m,
            Err(e) => panic!("expected an input error, got {e}"),
            Ok(_) => panic!("expected an input error"),
        }
    }

    #[test]
    fn bad_input_creates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.sweep.configs = Some("1lb-bi-nat,bogus".into());
        assert!(input_err(&o).contains("unknown configuration `bogus`"));
        o = opts(d.path());
        o.profile = "no-such-profile".into();
        assert!(input_err(&o).contains("unknown profile"));
        // An existing directory that is not a run.
        std::fs::create_dir_all(d.path().join("out")).unwrap();
        std::fs::write(d.path().join("out/x"), "x").unwrap();
        let e = input_err(&opts(d.path()));
        assert!(e.contains("is not a resumable run"), "{e}");
        // A results.json of another schema.
        std::fs::write(
            d.path().join("out/results.json"),
            r#"{"schema":"harness-run/1"}"#,
        )
        .unwrap();
        let e = input_err(&opts(d.path()));
        assert!(e.contains("expected \"harness-reproduce/1\""), "{e}");
        let mut r = opts(d.path());
        r.resume = Some(d.path().join("out"));
        assert!(input_err(&r).contains("harness-reproduce/1"));
        r.resume = Some(d.path().join("missing"));
        assert!(input_err(&r).contains("cannot read"));
        assert!(!d.path().join("missing").exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("out/x")).unwrap(),
            "x"
        );
    }

    #[test]
    fn missing_binaries_are_a_run_error_after_validation() {
        let d = tempfile::tempdir().unwrap();
        match prepare(&opts(d.path())) {
            Err(ReproduceError::Run(e)) => assert!(e.to_string().contains("not found"), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("binaries are missing"),
        }
        assert!(!d.path().join("out").exists());
    }
}
