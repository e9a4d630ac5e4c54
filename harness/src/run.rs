//! `harness run` and `harness demo`, and the phases of an experiment point
//! that every runner shares (`run`, `bench-balancer`, `reproduce`):
//!
//! 1. [`with_testbed`]: bring the testbed up (or reuse a matching one), run
//!    a body, and always tear down (unless kept up) — also on error and
//!    Ctrl-C, which becomes [`RunError::Interrupted`];
//! 2. [`start_servers`] and [`start_balancers`]: start them in their nodes
//!    (namespace + cgroup) and wait until each is ready;
//! 3. [`run_loadgens`] (or [`run_clients`] for any client program): one
//!    process per client host, concurrently, merged into one result;
//! 4. [`collect_served`], [`collect_balancer_stats`], [`balancer_tables`]:
//!    every server's and balancer's `/stats`;
//! 5. [`write_json`]: the record, atomically;
//! 6. printing (`run` only).
//!
//! Process supervision itself is in [`crate::supervise`]. Progress goes to
//! stderr, results to stdout.

use std::io::{self, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loadgen::result::RunResult;
use serde::Serialize;

use crate::discover::discover;
use crate::experiment::{
    run_dir_name, served_table, side_by_side, BalancerPlan, BalancerStats, PlanError, RunRecord,
    RunSpec, Served, ServerPlan, Stop, Versions, RESULT_SCHEMA,
};
use crate::failover;
use crate::fault::{Fault, FaultTarget};
use crate::inject::Injector;
use crate::nsnet::{http_get, tcp_probe};
use crate::plan::netns_name;
use crate::profile::Profile;
use crate::signal;
use crate::supervise::{io_err, spawn_logged, wait_clients_while, wait_ready, Procs};
use crate::testbed::{self, Testbed, UpOptions};
use crate::topology::{Node, Role, Topology};

/// How long a web server may take to listen.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a balancer may take to print its ready line and answer `/stats`.
pub const BALANCER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of one `/stats` fetch or readiness probe.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// What the balancer prints on stderr once packets flow (wave-2 contract).
pub const BALANCER_READY_LINE: &str = "balancer: ready";

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A tool binary is not where it should be.
    #[error("`{name}` not found at {path}: build the binaries first with `cargo build --release` (the harness looks next to its own executable; or pass --bin-dir DIR)")]
    MissingBinary {
        /// Binary name.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The point is not runnable.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Testbed up/down/spawn.
    #[error(transparent)]
    Testbed(#[from] testbed::Error),
    /// File I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (with the path).
        what: String,
        /// OS error.
        source: io::Error,
    },
    /// A process failed, exited early or did not become ready.
    #[error("{what}: {detail}")]
    Process {
        /// Which process and what went wrong.
        what: String,
        /// Exit status and the tail of its log.
        detail: String,
    },
    /// Results could not be read, merged or fetched.
    #[error("{what}: {detail}")]
    Results {
        /// Which result.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Ctrl-C / SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

/// Where the three tool binaries are.
#[derive(Clone, Debug, PartialEq)]
pub struct Binaries {
    /// `loadgen`.
    pub loadgen: PathBuf,
    /// `realserver`.
    pub realserver: PathBuf,
    /// `balancer`.
    pub balancer: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`; each must exist and be a file.
    pub fn find(dir: &Path) -> Result<Binaries, RunError> {
        let get = |name: &'static str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(RunError::MissingBinary { name, path })
            }
        };
        Ok(Binaries {
            loadgen: get("loadgen")?,
            realserver: get("realserver")?,
            balancer: get("balancer")?,
        })
    }
}

/// The directory of the running executable (`target/release` for
/// `target/release/harness`), where the other binaries are built too.
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `results/run-<UTC timestamp>` (relative to the working directory).
pub fn default_out_dir(prefix: &str) -> PathBuf {
    let now = unix_ms() / 1000;
    PathBuf::from("results").join(run_dir_name(now).replacen("run", prefix, 1))
}

/// Where a benchmark (`bench-balancer`, `flood`) finds its binaries and
/// writes its run directory and record, and how it talks.
#[derive(Clone, Debug)]
pub struct BenchPaths {
    /// Directory of loadgen, realserver, balancer.
    pub bin_dir: PathBuf,
    /// Run directory: configs, logs, client results, the record.
    pub out_dir: PathBuf,
    /// Where the JSON record goes (default: in the run directory).
    pub json: Option<PathBuf>,
    /// Echo testbed commands.
    pub verbose: bool,
    /// State directory of the testbed.
    pub state_dir: PathBuf,
}

impl BenchPaths {
    /// `--json`, else `name` in the run directory `out`.
    pub fn record_path(&self, out: &Path, name: &str) -> PathBuf {
        self.json.clone().unwrap_or_else(|| out.join(name))
    }

    /// The testbed of a benchmark: brought up for it, torn down after it.
    pub(crate) fn testbed_use<'a>(
        &'a self,
        topology: &'a Topology,
        profile: &'a Profile,
    ) -> TestbedUse<'a> {
        TestbedUse {
            topology,
            profile,
            state_dir: &self.state_dir,
            verbose: self.verbose,
            keep_up: false,
        }
    }
}

/// Writes a benchmark's table to `table.txt` in the run directory `out`
/// (atomically) and prints it; returns the file's path.
pub(crate) fn publish_table(out: &Path, table: &str) -> Result<PathBuf, RunError> {
    let path = out.join("table.txt");
    loadgen::json_out::write_bytes_atomic(table.as_bytes(), &path)
        .map_err(io_err(format!("writing {}", path.display())))?;
    let mut stdout = io::stdout().lock();
    let _ = write!(stdout, "{table}");
    let _ = stdout.flush();
    Ok(path)
}

/// Knobs of one run besides the point itself.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The point.
    pub spec: RunSpec,
    /// Directory of loadgen, realserver, balancer.
    pub bin_dir: PathBuf,
    /// Run directory: configs, logs, client results, the record.
    pub out_dir: PathBuf,
    /// Where the JSON record goes (default `out_dir/result.json`).
    pub json: Option<PathBuf>,
    /// Leave the testbed up afterwards.
    pub keep_up: bool,
    /// Echo testbed commands.
    pub verbose: bool,
    /// State directory of the testbed.
    pub state_dir: PathBuf,
    /// Faults to inject during the load, sorted by time (checked by
    /// `fault::check_schedule` before anything starts).
    pub faults: Vec<Fault>,
    /// Processes not started at the beginning (`--down`).
    pub down: Vec<FaultTarget>,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When set, [`progress`] prints only warnings and failures (`reproduce`
/// prints one line per point instead of every phase of every point).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns the per-phase progress lines off (warnings still print) or on.
pub(crate) fn set_quiet_progress(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// One line on stderr, also when progress is quiet.
pub fn notice(msg: impl AsRef<str>) {
    let _ = writeln!(io::stderr(), "harness: {}", msg.as_ref());
}

/// One progress line on stderr.
pub fn progress(msg: impl AsRef<str>) {
    let msg = msg.as_ref();
    if QUIET.load(Ordering::Relaxed) && !msg.contains("warning") && !msg.contains("failed") {
        return;
    }
    notice(msg);
}

fn tool_version(bin: &Path) -> Option<String> {
    let o = Command::new(bin).arg("--version").output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout);
    s.lines().next().map(|l| l.trim().to_string())
}

pub(crate) fn versions(bins: &Binaries) -> Versions {
    let git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Versions {
        harness: format!("harness {}", env!("CARGO_PKG_VERSION")),
        loadgen: tool_version(&bins.loadgen),
        realserver: tool_version(&bins.realserver),
        balancer: tool_version(&bins.balancer),
        git_commit: git,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
    }
}

/// Brings the testbed up, or reuses the one described by the state file
/// when it has the same topology and profile and all its namespaces exist.
pub(crate) fn bring_up_testbed(
    topology: &Topology,
    profile: &Profile,
    state_dir: &Path,
    verbose: bool,
    flag: &'static AtomicBool,
) -> Result<Testbed, RunError> {
    if let Ok(tb) = Testbed::attach(state_dir) {
        let inv = discover(None);
        let all_there = topology
            .nodes
            .iter()
            .all(|n| inv.namespaces.contains(&netns_name(&n.name)));
        if tb.topology() == topology && &tb.state().profile == profile && all_there {
            progress(format!(
                "reusing the testbed that is up ({} / {})",
                topology.name, profile.name
            ));
            return Ok(tb);
        }
    }
    let t0 = Instant::now();
    let tb = Testbed::up(
        topology.clone(),
        profile.clone(),
        state_dir,
        flag,
        UpOptions {
            verbose,
            fail_at_step: None,
        },
    )?;
    progress(format!(
        "testbed {} / {} up in {} ms",
        topology.name,
        profile.name,
        t0.elapsed().as_millis()
    ));
    Ok(tb)
}

/// Where and how a runner wants its testbed.
pub(crate) struct TestbedUse<'a> {
    /// The cluster.
    pub topology: &'a Topology,
    /// Node capacities.
    pub profile: &'a Profile,
    /// State directory of the testbed.
    pub state_dir: &'a Path,
    /// Echo testbed commands.
    pub verbose: bool,
    /// Leave it up afterwards.
    pub keep_up: bool,
}

/// Phase 1: brings the testbed up (or reuses it), runs `body` on it, and
/// tears it down afterwards (unless `keep_up`), also after an error or an
/// interrupt; whatever failed while an interrupt was pending is reported as
/// [`RunError::Interrupted`]. Interrupt handlers are default again on return.
pub(crate) fn with_testbed<T>(
    u: &TestbedUse<'_>,
    body: impl FnOnce(&Testbed, &'static AtomicBool) -> Result<T, RunError>,
) -> Result<T, RunError> {
    let flag = signal::catch_interrupts();
    let mut result = bring_up_testbed(u.topology, u.profile, u.state_dir, u.verbose, flag)
        .and_then(|tb| body(&tb, flag));
    if result.is_err() && signal::interrupted() {
        // Whatever failed on the way (e.g. `up` rolled back), it was the interrupt.
        result = Err(RunError::Interrupted);
    }
    if u.keep_up {
        progress("leaving the testbed up (--keep-up); remove it with `harness down`");
        signal::default_interrupts();
    } else {
        // `down` ignores interrupts while it works, then restores defaults.
        match testbed::down(u.state_dir, u.verbose) {
            Ok(_) if result.is_err() => notice("testbed torn down"),
            Ok(_) => progress("testbed torn down"),
            Err(e) if result.is_ok() => return Err(e.into()),
            Err(e) => progress(format!("teardown after the failure also failed: {e}")),
        }
    }
    result
}

/// Runs one point: everything, including teardown (unless `keep_up`).
/// Interrupts (SIGINT/SIGTERM/SIGHUP) stop it cleanly.
pub fn run(opts: &RunOptions) -> Result<RunRecord, RunError> {
    opts.spec.validate()?;
    let bins = Binaries::find(&opts.bin_dir)?;
    let u = TestbedUse {
        topology: &opts.spec.topology,
        profile: &opts.spec.profile,
        state_dir: &opts.state_dir,
        verbose: opts.verbose,
        keep_up: opts.keep_up,
    };
    with_testbed(&u, |tb, flag| run_on(tb, &bins, opts, flag))
}

/// The run directory `out` made absolute, with `logs/`, `clients/`,
/// `config/` and any `extra` subdirectories created.
pub(crate) fn make_run_dir(out: &Path, extra: &[&str]) -> Result<PathBuf, RunError> {
    let out = std::path::absolute(out).map_err(io_err(format!("resolving {}", out.display())))?;
    for d in ["logs", "clients", "config"].iter().chain(extra) {
        std::fs::create_dir_all(out.join(d))
            .map_err(io_err(format!("creating {}", out.join(d).display())))?;
    }
    Ok(out)
}

/// Where a point's processes run and leave their files: the testbed, the
/// binaries, the run directory, a file-name prefix (`""`, or e.g.
/// `balancer-r0-` when several runs share a directory), the interrupt flag.
#[derive(Clone, Copy)]
pub(crate) struct Site<'a> {
    /// The testbed.
    pub tb: &'a Testbed,
    /// The tool binaries.
    pub bins: &'a Binaries,
    /// The run directory (from [`make_run_dir`]).
    pub out: &'a Path,
    /// Prefix of every log and client result file name.
    pub prefix: &'a str,
    /// Set on Ctrl-C.
    pub flag: &'a AtomicBool,
}

impl Site<'_> {
    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.out.join("logs").join(format!("{}{name}", self.prefix))
    }
}

/// Phase 2a: starts `realserver` for each of `servers` (log
/// `logs/{prefix}{name}.realserver.log`) and waits until every one listens
/// on all its addresses. The processes join `procs`.
pub(crate) fn start_servers(
    site: Site<'_>,
    servers: &[ServerPlan],
    threads: u32,
    work_us: Option<u32>,
    procs: &mut Procs,
) -> Result<(), RunError> {
    let first = procs.0.len();
    for s in servers {
        let mut argv = vec![site.bins.realserver.display().to_string()];
        argv.extend(s.args(threads, work_us));
        let log = site.log(&format!("{}.realserver.log", s.name));
        let what = format!("realserver {} (in {})", s.name, s.node);
        procs
            .0
            .push(spawn_logged(site.tb, &s.node, what, argv, log)?);
    }
    for (s, pr) in servers.iter().zip(&mut procs.0[first..]) {
        let ns = netns_name(&s.node);
        let addrs: Vec<SocketAddr> = s.listen.iter().map(|a| SocketAddr::V4(*a)).collect();
        wait_ready(pr, SERVER_READY_TIMEOUT, site.flag, || {
            addrs.iter().all(|a| tcp_probe(&ns, *a, FETCH_TIMEOUT))
        })?;
    }
    Ok(())
}

/// Phase 2b: writes each balancer's configuration to `config/{node}.toml`,
/// starts it (log `logs/{prefix}{node}.balancer.log`) and waits until it
/// printed [`BALANCER_READY_LINE`] and answers `/stats`. The processes join
/// `procs`.
pub(crate) fn start_balancers(
    site: Site<'_>,
    lbs: &[BalancerPlan],
    procs: &mut Procs,
) -> Result<(), RunError> {
    start_balancers_with(site, lbs, &[], procs)
}

/// [`start_balancers`] with extra `balancer run` flags (I/O variants).
pub(crate) fn start_balancers_with(
    site: Site<'_>,
    lbs: &[BalancerPlan],
    extra: &[&str],
    procs: &mut Procs,
) -> Result<(), RunError> {
    let first = procs.0.len();
    for b in lbs {
        let cfg = site.out.join("config").join(format!("{}.toml", b.node));
        std::fs::write(&cfg, &b.config_toml)
            .map_err(io_err(format!("writing {}", cfg.display())))?;
        let mut argv = vec![site.bins.balancer.display().to_string()];
        argv.extend(b.args(&cfg));
        argv.extend(extra.iter().map(|s| s.to_string()));
        let log = site.log(&format!("{}.balancer.log", b.node));
        let what = format!("balancer in {}", b.node);
        procs
            .0
            .push(spawn_logged(site.tb, &b.node, what, argv, log)?);
    }
    for (b, pr) in lbs.iter().zip(&mut procs.0[first..]) {
        let ns = netns_name(&b.node);
        let control = SocketAddr::V4(b.control);
        let log = pr.log.clone();
        wait_ready(pr, BALANCER_READY_TIMEOUT, site.flag, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(BALANCER_READY_LINE))
                && http_get(&ns, control, "/stats", FETCH_TIMEOUT).is_ok()
        })?;
    }
    Ok(())
}

/// One client process: its node, command line and log file.
pub(crate) struct ClientJob {
    /// Node it runs in.
    pub node: String,
    /// What it is, for messages.
    pub what: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// Phase 3 for any client program: starts every job concurrently and waits
/// for all of them (at most `budget_s` seconds; they are killed on return).
pub(crate) fn run_clients(
    tb: &Testbed,
    jobs: Vec<ClientJob>,
    budget_s: f64,
    flag: &AtomicBool,
) -> Result<(), RunError> {
    run_clients_while(tb, jobs, budget_s, flag, &mut || Ok(()))
}

/// [`run_clients`], calling `on_poll` while they run (fault injection).
pub(crate) fn run_clients_while(
    tb: &Testbed,
    jobs: Vec<ClientJob>,
    budget_s: f64,
    flag: &AtomicBool,
    on_poll: &mut dyn FnMut() -> Result<(), RunError>,
) -> Result<(), RunError> {
    let mut clients = Procs::default();
    for j in jobs {
        clients
            .0
            .push(spawn_logged(tb, &j.node, j.what, j.argv, j.log)?);
    }
    wait_clients_while(&mut clients.0, budget_s, flag, on_poll)
}

/// Phase 3 with loadgen: one loadgen per node of `nodes` (arguments
/// `args(i, json)`, result `clients/{prefix}{node}.json`, log
/// `logs/{prefix}{node}.loadgen.log`), run concurrently, results merged.
pub(crate) fn run_loadgens(
    site: Site<'_>,
    nodes: &[String],
    args: impl Fn(usize, &Path) -> Vec<String>,
    budget_s: f64,
) -> Result<RunResult, RunError> {
    run_loadgens_while(site, nodes, args, budget_s, &mut || Ok(()))
}

/// [`run_loadgens`], calling `on_poll` while the clients run (fault injection).
pub(crate) fn run_loadgens_while(
    site: Site<'_>,
    nodes: &[String],
    args: impl Fn(usize, &Path) -> Vec<String>,
    budget_s: f64,
    on_poll: &mut dyn FnMut() -> Result<(), RunError>,
) -> Result<RunResult, RunError> {
    let mut jobs = Vec::new();
    let mut jsons = Vec::new();
    for (i, c) in nodes.iter().enumerate() {
        let json = site
            .out
            .join("clients")
            .join(format!("{}{c}.json", site.prefix));
        let _ = std::fs::remove_file(&json);
        let mut argv = vec![site.bins.loadgen.display().to_string()];
        argv.extend(args(i, &json));
        jobs.push(ClientJob {
            node: c.clone(),
            what: format!("loadgen in {c}"),
            argv,
            log: site.log(&format!("{c}.loadgen.log")),
        });
        jsons.push(json);
    }
    run_clients_while(site.tb, jobs, budget_s, site.flag, on_poll)?;
    merge_client_results(&jsons)
}

/// Reads every client's JSON result and merges them exactly.
pub(crate) fn merge_client_results(jsons: &[PathBuf]) -> Result<RunResult, RunError> {
    let mut results = Vec::new();
    for j in jsons {
        results.push(loadgen::json_out::read(j).map_err(|e| RunError::Results {
            what: format!("client result {}", j.display()),
            detail: e.to_string(),
        })?);
    }
    loadgen::merge::merge(results).map_err(|e| RunError::Results {
        what: "merging the client results".into(),
        detail: e.to_string(),
    })
}

/// How long clients may run: the load, their timeout, and 30 s of slack.
pub(crate) fn client_budget_s(spec: &RunSpec) -> f64 {
    (match (spec.rate, spec.stop) {
        (_, Stop::DurationS(d)) => d,
        (Some(r), Stop::NumConns(n)) => n as f64 / r,
        (None, Stop::NumConns(_)) => 600.0,
    }) + spec.timeout_s
        + 30.0
}

/// A web server's `/stats` at `at` in `node`: `requests_total` and the raw JSON.
pub(crate) fn server_stats(
    node: &str,
    at: SocketAddr,
    name: &str,
) -> Result<(u64, serde_json::Value), RunError> {
    let body = http_get(&netns_name(node), at, "/stats", FETCH_TIMEOUT).map_err(|e| {
        RunError::Results {
            what: format!("stats of {name}"),
            detail: e.to_string(),
        }
    })?;
    let stats: serde_json::Value = serde_json::from_str(&body).map_err(|e| RunError::Results {
        what: format!("stats of {name} (http://{at}/stats)"),
        detail: format!("not JSON: {e}"),
    })?;
    let requests = stats
        .get("requests_total")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| RunError::Results {
            what: format!("stats of {name} (http://{at}/stats)"),
            detail: "no `requests_total` number".into(),
        })?;
    Ok((requests, stats))
}

/// Phase 4a: the requests every web server answered so far.
pub(crate) fn collect_served(servers: &[ServerPlan]) -> Result<Vec<Served>, RunError> {
    servers
        .iter()
        .map(|s| {
            let (requests, stats) = server_stats(&s.node, SocketAddr::V4(s.listen[0]), &s.name)?;
            Ok(Served {
                node: s.node.clone(),
                name: s.name.clone(),
                role: s.role,
                requests,
                stats,
            })
        })
        .collect()
}

/// A balancer's `/stats` as JSON.
pub(crate) fn balancer_stats(b: &BalancerPlan) -> Result<serde_json::Value, String> {
    http_get(
        &netns_name(&b.node),
        SocketAddr::V4(b.control),
        "/stats",
        FETCH_TIMEOUT,
    )
    .map_err(|e| e.to_string())
    .and_then(|body| {
        serde_json::from_str::<serde_json::Value>(&body)
            .map_err(|e| format!("/stats is not JSON: {e}"))
    })
}

/// Phase 4b: every balancer's `/stats` (a failure is recorded and warned
/// about, not fatal: the clients' figures stand on their own).
pub(crate) fn collect_balancer_stats(lbs: &[BalancerPlan]) -> Vec<BalancerStats> {
    lbs.iter()
        .map(|b| {
            let (stats, error) = match balancer_stats(b) {
                Ok(v) => (v, None),
                Err(e) => {
                    progress(format!("warning: balancer stats of {}: {e}", b.node));
                    (serde_json::Value::Null, Some(e))
                }
            };
            BalancerStats {
                node: b.node.clone(),
                stats,
                error,
            }
        })
        .collect()
}

/// Phase 4c: `balancer stats` of each balancer, as printed tables.
pub(crate) fn balancer_tables(tb: &Testbed, bins: &Binaries, lbs: &[BalancerPlan]) -> Vec<String> {
    lbs.iter()
        .filter_map(|b| {
            let argv = vec![
                bins.balancer.display().to_string(),
                "stats".into(),
                "--control".into(),
                b.control.to_string(),
            ];
            tb.output(&b.node, &argv)
                .ok()
                .filter(|o| o.status.success())
                .map(|o| {
                    let text = String::from_utf8_lossy(&o.stdout);
                    format!("{}:\n{}\n", b.node, text.trim_end())
                })
        })
        .collect()
}

/// Phase 5: pretty JSON with a final newline, written atomically.
pub fn write_json(value: &impl Serialize, path: &Path) -> Result<(), RunError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| RunError::Results {
        what: format!("serialising {}", path.display()),
        detail: e.to_string(),
    })?;
    bytes.push(b'\n');
    loadgen::json_out::write_bytes_atomic(&bytes, path)
        .map_err(io_err(format!("writing {}", path.display())))
}

fn run_on(
    tb: &Testbed,
    bins: &Binaries,
    opts: &RunOptions,
    flag: &AtomicBool,
) -> Result<RunRecord, RunError> {
    let spec = &opts.spec;
    let started = unix_ms();
    let out = make_run_dir(&opts.out_dir, &[])?;
    progress(format!("point: {}", spec.describe()));
    progress(format!("run directory {}", out.display()));
    let site = Site {
        tb,
        bins,
        out: &out,
        prefix: "",
        flag,
    };
    let mut procs = Procs::default();
    let servers = spec.servers();
    let work = spec.profile.server_work_us;
    let is_down = |t: String| opts.down.iter().any(|d| d.to_string() == t);
    let up_servers: Vec<ServerPlan> = servers
        .iter()
        .filter(|s| !is_down(s.name.clone()))
        .cloned()
        .collect();
    start_servers(site, &up_servers, spec.server_threads, work, &mut procs)?;
    progress(format!("{} web server(s) listening", up_servers.len()));
    let lbs = spec.balancers()?;
    let up_lbs: Vec<BalancerPlan> = lbs
        .iter()
        .filter(|b| !is_down(b.node.clone()))
        .cloned()
        .collect();
    start_balancers(site, &up_lbs, &mut procs)?;
    progress(format!("{} balancer(s) ready", up_lbs.len()));

    let watch = start_router_watch(site, spec);
    let clients = spec.client_nodes();
    let budget = client_budget_s(spec);
    progress(format!(
        "{} client(s) running (up to {budget:.0} s)",
        clients.len()
    ));
    let load_start = unix_ms();
    // Fault times count from here, the clients' start.
    let mut injector = Injector::new(
        opts.faults.clone(),
        Instant::now(),
        &servers,
        &lbs,
        spec.server_threads,
        work,
    );
    let mut poll = || injector.poll(site, &mut procs);
    let merged = run_loadgens_while(
        site,
        &clients,
        |i, json| spec.client_args(i, json),
        budget,
        &mut poll,
    )?;
    progress(format!(
        "clients done: {} replies, {} errors",
        merged.replies(),
        merged.errors_total()
    ));

    // Servers a fault left stopped have no /stats to fetch.
    let alive: Vec<String> = procs
        .0
        .iter_mut()
        .filter_map(|p| matches!(p.p.try_wait(), Ok(None)).then(|| p.what.clone()))
        .collect();
    let running: Vec<ServerPlan> = servers
        .iter()
        .filter(|s| {
            let what = format!("realserver {} ", s.name);
            alive.iter().any(|w| w.starts_with(&what))
        })
        .cloned()
        .collect();
    let served = collect_served(&running)?;
    let balancers = collect_balancer_stats(&lbs);
    let tables = balancer_tables(tb, bins, &lbs);
    procs.stop_all();
    let router = watch.and_then(finish_router_watch);
    let (faults, failover) = fault_outcomes(&injector.done, load_start, &merged, &balancers);
    let held = spec
        .concurrency
        .map(|c| failover::HeldConnections::from_result(c, &merged));
    if !faults.is_empty() {
        print!("{}", failover::summary(&failover, held.as_ref()));
        let csv = out.join("timeline.csv");
        std::fs::write(&csv, failover::timeline_csv(&merged.timeline))
            .map_err(io_err(format!("writing {}", csv.display())))?;
        progress(format!("timeline written to {}", csv.display()));
    } else if let Some(h) = &held {
        print!("{}", h.line());
    }
    if let Some(r) = &router {
        print!("{}", r.line());
    }

    let merged_timeline = merged.timeline.clone();
    let record = RunRecord {
        schema: RESULT_SCHEMA.into(),
        spec: spec.clone(),
        bin_dir: opts.bin_dir.display().to_string(),
        versions: versions(bins),
        started_unix_ms: started,
        finished_unix_ms: unix_ms(),
        loadgen: merged,
        served_total: served.iter().map(|s| s.requests).sum(),
        served,
        balancers,
        timeline: merged_timeline,
        faults,
        failover,
        held,
        router,
    };
    let json_path = opts.json.clone().unwrap_or_else(|| out.join("result.json"));
    write_json(&record, &json_path)?;
    draw_timeline(&record, &out);
    print_point(&record, &tables);
    progress(format!("result written to {}", json_path.display()));
    Ok(record)
}

/// The router check while it runs: its process, where it writes, and the
/// MACs of the balancers' and servers' interfaces (to name who answered).
pub(crate) struct RouterWatch {
    procs: Procs,
    out: PathBuf,
    macs: Vec<(String, String)>,
}

/// The router and its interfaces that do not face a client: every SYN-ACK
/// to a client arrives on one of them (from a balancer, or in DR from a
/// real server), and the client SYNs leave on one.
fn router_ifaces(t: &Topology) -> Option<(&Node, Vec<String>)> {
    let router = t.nodes.iter().find(|n| n.role == Role::Router)?;
    let client_segments: Vec<&str> = t
        .nodes
        .iter()
        .filter(|n| n.role == Role::Client)
        .flat_map(|n| n.ifaces.iter().map(|f| f.segment.as_str()))
        .collect();
    let ifaces: Vec<String> = router
        .ifaces
        .iter()
        .filter(|f| !client_segments.contains(&f.segment.as_str()))
        .map(|f| f.name.clone())
        .collect();
    (!ifaces.is_empty()).then_some((router, ifaces))
}

/// Every balancer's and real server's interface MACs, with its node name.
fn node_macs(tb: &Testbed, t: &Topology) -> Vec<(String, String)> {
    t.nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Balancer | Role::Realserver))
        .flat_map(|n| n.ifaces.iter().map(move |f| (n, f)))
        .filter_map(|(n, f)| {
            let path = format!("/sys/class/net/{}/address", f.name);
            let o = tb.output(&n.name, &["cat".into(), path]).ok()?;
            let mac = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (o.status.success() && !mac.is_empty()).then(|| (mac, n.name.clone()))
        })
        .collect()
}

/// Starts `harness router-watch` in the router's namespace on its
/// interfaces towards the balancers and servers (log
/// `logs/router-watch.log`, result `router.json`) and waits until it
/// captures. `None` (with a warning) when the topology has no router or it
/// could not start: the run goes on without the check.
pub(crate) fn start_router_watch(site: Site<'_>, spec: &RunSpec) -> Option<RouterWatch> {
    let t = &spec.topology;
    let (router, ifaces) = router_ifaces(t)?;
    let out = site.out.join("router.json");
    let _ = std::fs::remove_file(&out);
    let started = (|| -> Result<RouterWatch, RunError> {
        let exe = std::env::current_exe().map_err(io_err("finding the harness executable"))?;
        let mut argv = vec![exe.display().to_string(), "router-watch".into()];
        for i in &ifaces {
            argv.extend(["--iface".into(), i.clone()]);
        }
        argv.extend([
            "--vip".into(),
            SocketAddrV4::new(t.vip, crate::experiment::SERVICE_PORT).to_string(),
            "--out".into(),
            out.display().to_string(),
        ]);
        let log = site.log("router-watch.log");
        let mut procs = Procs::default();
        let what = format!("router-watch (in {})", router.name);
        procs.0.push(spawn_logged(
            site.tb,
            &router.name,
            what,
            argv,
            log.clone(),
        )?);
        wait_ready(&mut procs.0[0], SERVER_READY_TIMEOUT, site.flag, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(crate::capture::READY_LINE))
        })?;
        let macs = node_macs(site.tb, t);
        Ok(RouterWatch { procs, out, macs })
    })();
    match started {
        Ok(w) => {
            progress(format!(
                "router check capturing on {}:{}",
                router.name,
                ifaces.join("+")
            ));
            Some(w)
        }
        Err(e) => {
            progress(format!("warning: no router check: {e}"));
            None
        }
    }
}

/// Stops the capture (SIGTERM: it writes its counts and exits) and reads
/// its counts, naming the answerers by node.
pub(crate) fn finish_router_watch(mut w: RouterWatch) -> Option<crate::synack::RouterCheck> {
    w.procs.stop_all();
    let read = std::fs::read(&w.out)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            serde_json::from_slice::<crate::synack::RouterCheck>(&b).map_err(|e| e.to_string())
        });
    match read {
        Ok(mut c) => {
            for (mac, node) in &w.macs {
                if let Some(n) = c.answers_by_mac.get(mac) {
                    *c.answers_by_node.entry(node.clone()).or_default() += *n;
                }
            }
            Some(c)
        }
        Err(e) => {
            progress(format!(
                "warning: no router check: {}: {e}",
                w.out.display()
            ));
            None
        }
    }
}

/// `timeline.svg` and `timeline.png` next to the result (a warning, not a
/// failure, when they cannot be drawn: the measured result is written).
fn draw_timeline(record: &RunRecord, out: &Path) {
    match timeline_figure(record, "this run's merged loadgen result", out) {
        Ok(paths) => progress(format!(
            "timeline figure written to {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => progress(format!("warning: no timeline figure: {e}")),
    }
}

/// Draws the timeline figure of `record` (`what` names it in errors) into
/// `dir/timeline.svg` and `.png`, atomically: `harness run` after every
/// run, `harness timeline` for an existing result.
pub fn timeline_figure(
    record: &RunRecord,
    what: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, reports::timeline::TimelineError> {
    let title = match record.faults.as_slice() {
        [] => format!("Timeline of {}, no fault", record.spec.topology.name),
        fs => format!(
            "Timeline of {}: {}",
            record.spec.topology.name,
            fs.iter()
                .map(|f| format!("{} {} at {} ms", f.action, f.node, f.at_ms))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let f = reports::timeline::timeline_figure(
        what,
        title,
        record.spec.describe(),
        &record.timeline,
        failover::markers(&record.failover, record.spec.closed_loop()),
        reports::timeline::Load {
            duration_ms: match record.spec.stop {
                Stop::DurationS(d) => Some((d * 1000.0) as u64),
                Stop::NumConns(_) => None,
            },
            closed_loop: record.spec.closed_loop(),
        },
    )?;
    reports::timeline::write(&f, dir)
}

/// The faults carried out and what each led to (membership changes from
/// the balancers' `/stats`, the clients' timeline).
fn fault_outcomes(
    done: &[(crate::fault::FaultRecord, u64)],
    load_start: u64,
    merged: &RunResult,
    balancers: &[BalancerStats],
) -> (Vec<crate::fault::FaultRecord>, Vec<failover::FaultOutcome>) {
    let faults: Vec<_> = done.iter().map(|(f, _)| f.clone()).collect();
    let times: Vec<u64> = done.iter().map(|(_, t)| *t).collect();
    let changes: Vec<(String, Vec<balancer::membership::Change>)> = balancers
        .iter()
        .filter_map(|b| {
            let ch = serde_json::from_value(b.stats["membership"]["changes"].clone()).ok()?;
            Some((b.node.clone(), ch))
        })
        .collect();
    let start = if merged.started_unix_ms > 0 {
        merged.started_unix_ms
    } else {
        load_start
    };
    let outcomes = failover::analyse(&faults, &times, start, &merged.timeline, &changes);
    (faults, outcomes)
}

/// Phase 6: the httperf-style summary, served-by table and balancer tables.
fn print_point(record: &RunRecord, tables: &[String]) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "# {}", record.spec.describe());
    let _ = loadgen::httperf_fmt::write_summary(&record.loadgen, &mut stdout);
    let _ = writeln!(stdout);
    let _ = write!(
        stdout,
        "{}",
        served_table(&record.served, record.loadgen.replies())
    );
    for t in tables {
        let _ = write!(stdout, "\nBalancer {t}");
    }
    let _ = stdout.flush();
}
/// `harness demo`: the same point with bi-active on, then off, each on a
/// fresh testbed; prints both results and a side-by-side table.
pub fn demo(opts: &RunOptions) -> Result<(RunRecord, RunRecord), RunError> {
    let mut on = opts.clone();
    on.spec.bi_active = true;
    on.out_dir = opts.out_dir.join("bi-active-on");
    on.json = None;
    on.keep_up = false;
    let mut off = on.clone();
    off.spec.bi_active = false;
    off.out_dir = opts.out_dir.join("bi-active-off");
    progress("demo point 1/2: bi-active on");
    let a = run(&on)?;
    progress("demo point 2/2: bi-active off");
    let b = run(&off)?;
    let table = side_by_side(&a, &b);
    println!("\n{table}");
    let path = opts.out_dir.join("demo.txt");
    loadgen::json_out::write_bytes_atomic(table.as_bytes(), &path)
        .map_err(io_err(format!("writing {}", path.display())))?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_the_build_command() {
        let d = tempfile::tempdir().unwrap();
        let e = Binaries::find(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("`loadgen` not found") && e.contains("cargo build --release"),
            "{e}"
        );
        for b in ["loadgen", "realserver"] {
            std::fs::write(d.path().join(b), "").unwrap();
        }
        let e = Binaries::find(d.path()).unwrap_err().to_string();
        assert!(e.contains("`balancer` not found"), "{e}");
        std::fs::write(d.path().join("balancer"), "").unwrap();
        assert_eq!(
            Binaries::find(d.path()).unwrap().balancer,
            d.path().join("balancer")
        );
    }

    #[test]
    fn default_dirs() {
        let d = default_out_dir("demo");
        let s = d.to_str().unwrap();
        assert!(s.starts_with("results/demo-") && s.ends_with('Z'), "{s}");
        assert!(default_bin_dir().is_dir());
    }
}
