//! `harness run` and `harness demo`: the I/O side of an experiment point.
//! Brings the testbed up (or reuses a matching one), starts the web servers
//! and balancers in their nodes (namespace + cgroup), waits until each is
//! ready, runs one loadgen per client host concurrently, merges their
//! results, fetches every server's and balancer's `/stats`, writes the JSON
//! record atomically, and always stops every process and (unless
//! `keep_up`) tears the testbed down — also on error and Ctrl-C.
//! Progress goes to stderr, results to stdout.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::discover::discover;
use crate::experiment::{
    run_dir_name, served_table, side_by_side, BalancerStats, PlanError, RunRecord, RunSpec, Served,
    Stop, Versions, RESULT_SCHEMA,
};
use crate::nsnet::{http_get, tcp_probe};
use crate::plan::netns_name;
use crate::profile::Profile;
use crate::testbed::{self, Testbed, UpOptions};
use crate::topology::Topology;
use crate::{signal, NodeProcess};

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

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
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
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One progress line on stderr.
pub fn progress(msg: impl AsRef<str>) {
    let _ = writeln!(io::stderr(), "harness: {}", msg.as_ref());
}

/// A started process with its log file.
pub(crate) struct Proc {
    pub(crate) what: String,
    pub(crate) p: NodeProcess,
    pub(crate) log: PathBuf,
}

/// Every process of the run; stopped (TERM, then KILL) when dropped.
#[derive(Default)]
pub(crate) struct Procs(pub(crate) Vec<Proc>);

impl Procs {
    pub(crate) fn stop_all(&mut self) {
        for pr in &mut self.0 {
            if let (Ok(None), Ok(pgid)) = (pr.p.try_wait(), libc::pid_t::try_from(pr.p.id())) {
                // SAFETY: killpg(2) on the process group the testbed created
                // for this child (process_group(0)); the leader is not reaped
                // yet, so the pgid cannot have been reused.
                unsafe {
                    libc::killpg(pgid, libc::SIGTERM);
                }
            }
        }
        let start = Instant::now();
        for pr in &mut self.0 {
            while start.elapsed() < Duration::from_secs(3) {
                match pr.p.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
            let _ = pr.p.kill();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n    ");
    if tail.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        format!("log {}:\n    {tail}", path.display())
    }
}

pub(crate) fn describe_exit(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "exited".into(),
    }
}

pub(crate) fn check_interrupt(flag: &AtomicBool) -> Result<(), RunError> {
    if flag.load(Ordering::SeqCst) {
        Err(RunError::Interrupted)
    } else {
        Ok(())
    }
}

/// Waits for every client process to exit, polling for an interrupt, and fails
/// when one exits unsuccessfully or they outlive `budget_s` seconds (they are
/// killed when the caller drops them).
pub(crate) fn wait_clients(
    clients: &mut [Proc],
    budget_s: f64,
    flag: &AtomicBool,
) -> Result<(), RunError> {
    let t0 = Instant::now();
    let mut done = vec![None; clients.len()];
    while done.iter().any(Option::is_none) {
        check_interrupt(flag)?;
        for (i, pr) in clients.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = pr.p.try_wait().ok().flatten();
            }
        }
        if t0.elapsed().as_secs_f64() > budget_s {
            return Err(RunError::Process {
                what: format!("clients still running after {budget_s:.0} s"),
                detail: "killed them".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (pr, st) in clients.iter().zip(&done) {
        if let Some(st) = st.filter(|s| !s.success()) {
            return Err(RunError::Process {
                what: format!("{} {}", pr.what, describe_exit(st)),
                detail: log_tail(&pr.log),
            });
        }
    }
    Ok(())
}

/// Polls `ready` until it holds, the process exits, time runs out or an
/// interrupt arrives.
pub(crate) fn wait_ready(
    pr: &mut Proc,
    timeout: Duration,
    flag: &AtomicBool,
    mut ready: impl FnMut() -> bool,
) -> Result<(), RunError> {
    let start = Instant::now();
    loop {
        check_interrupt(flag)?;
        if let Ok(Some(st)) = pr.p.try_wait() {
            return Err(RunError::Process {
                what: format!("{} {}", pr.what, describe_exit(st)),
                detail: log_tail(&pr.log),
            });
        }
        if ready() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(RunError::Process {
                what: format!("{} not ready after {} s", pr.what, timeout.as_secs()),
                detail: log_tail(&pr.log),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn spawn_logged(
    tb: &Testbed,
    node: &str,
    what: String,
    argv: Vec<String>,
    log: PathBuf,
) -> Result<Proc, RunError> {
    let f = File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
    let f2 = f
        .try_clone()
        .map_err(io_err(format!("opening {}", log.display())))?;
    let p = tb.spawn(node, &argv, |c| {
        c.stdin(Stdio::null()).stdout(f).stderr(f2);
    })?;
    Ok(Proc { what, p, log })
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
fn bring_up(opts: &RunOptions, flag: &'static AtomicBool) -> Result<Testbed, RunError> {
    bring_up_testbed(
        &opts.spec.topology,
        &opts.spec.profile,
        &opts.state_dir,
        opts.verbose,
        flag,
    )
}

/// [`bring_up`] for any topology and profile (also used by `bench-balancer`).
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

/// Runs one point: everything, including teardown (unless `keep_up`).
/// Interrupts (SIGINT/SIGTERM/SIGHUP) stop it cleanly.
pub fn run(opts: &RunOptions) -> Result<RunRecord, RunError> {
    opts.spec.validate()?;
    let bins = Binaries::find(&opts.bin_dir)?;
    let flag = signal::catch_interrupts();
    let mut result = bring_up(opts, flag).and_then(|tb| run_on(&tb, &bins, opts, flag));
    if result.is_err() && signal::interrupted() {
        // Whatever failed on the way (e.g. `up` rolled back), it was the interrupt.
        result = Err(RunError::Interrupted);
    }
    if opts.keep_up {
        progress("leaving the testbed up (--keep-up); remove it with `harness down`");
        signal::default_interrupts();
    } else {
        // `down` ignores interrupts while it works, then restores defaults.
        match testbed::down(&opts.state_dir, opts.verbose) {
            Ok(_) => progress("testbed torn down"),
            Err(e) if result.is_ok() => return Err(e.into()),
            Err(e) => progress(format!("teardown after the failure also failed: {e}")),
        }
    }
    result
}

fn run_on(
    tb: &Testbed,
    bins: &Binaries,
    opts: &RunOptions,
    flag: &AtomicBool,
) -> Result<RunRecord, RunError> {
    let spec = &opts.spec;
    let started = unix_ms();
    let out = std::path::absolute(&opts.out_dir)
        .map_err(io_err(format!("resolving {}", opts.out_dir.display())))?;
    for d in ["logs", "clients", "config"] {
        std::fs::create_dir_all(out.join(d))
            .map_err(io_err(format!("creating {}", out.join(d).display())))?;
    }
    progress(format!("point: {}", spec.describe()));
    progress(format!("run directory {}", out.display()));
    let mut procs = Procs::default();

    // Web servers (real servers and each balancer's local server).
    let servers = spec.servers();
    for s in &servers {
        let mut argv = vec![bins.realserver.display().to_string()];
        argv.extend(s.args(spec.server_threads, spec.profile.server_work_us));
        let log = out.join("logs").join(format!("{}.realserver.log", s.name));
        procs.0.push(spawn_logged(
            tb,
            &s.node,
            format!("realserver {} (in {})", s.name, s.node),
            argv,
            log,
        )?);
    }
    for (i, s) in servers.iter().enumerate() {
        let ns = netns_name(&s.node);
        let addrs: Vec<SocketAddr> = s.listen.iter().map(|a| SocketAddr::V4(*a)).collect();
        wait_ready(&mut procs.0[i], SERVER_READY_TIMEOUT, flag, || {
            addrs.iter().all(|a| tcp_probe(&ns, *a, FETCH_TIMEOUT))
        })?;
    }
    progress(format!("{} web server(s) listening", servers.len()));

    // Balancers.
    let lbs = spec.balancers()?;
    let first_lb = procs.0.len();
    for b in &lbs {
        let cfg = out.join("config").join(format!("{}.toml", b.node));
        std::fs::write(&cfg, &b.config_toml)
            .map_err(io_err(format!("writing {}", cfg.display())))?;
        let mut argv = vec![bins.balancer.display().to_string()];
        argv.extend(b.args(&cfg));
        let log = out.join("logs").join(format!("{}.balancer.log", b.node));
        procs.0.push(spawn_logged(
            tb,
            &b.node,
            format!("balancer in {}", b.node),
            argv,
            log,
        )?);
    }
    for (i, b) in lbs.iter().enumerate() {
        let ns = netns_name(&b.node);
        let control = SocketAddr::V4(b.control);
        let pr = &mut procs.0[first_lb + i];
        let log = pr.log.clone();
        wait_ready(pr, BALANCER_READY_TIMEOUT, flag, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(BALANCER_READY_LINE))
                && http_get(&ns, control, "/stats", FETCH_TIMEOUT).is_ok()
        })?;
    }
    progress(format!("{} balancer(s) ready", lbs.len()));

    // Clients, concurrently.
    let clients = spec.client_nodes();
    let mut loadgens = Vec::new();
    let mut jsons = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let json = out.join("clients").join(format!("{c}.json"));
        let _ = std::fs::remove_file(&json);
        let mut argv = vec![bins.loadgen.display().to_string()];
        argv.extend(spec.client_args(i, &json));
        let log = out.join("logs").join(format!("{c}.loadgen.log"));
        loadgens.push(spawn_logged(tb, c, format!("loadgen in {c}"), argv, log)?);
        jsons.push(json);
    }
    let budget = match (spec.rate, spec.stop) {
        (_, Stop::DurationS(d)) => d,
        (Some(r), Stop::NumConns(n)) => n as f64 / r,
        (None, Stop::NumConns(_)) => 600.0,
    } + spec.timeout_s
        + 30.0;
    progress(format!(
        "{} client(s) running (up to {:.0} s)",
        clients.len(),
        budget
    ));
    wait_clients(&mut loadgens, budget, flag)?;
    let mut results = Vec::new();
    for j in &jsons {
        results.push(loadgen::json_out::read(j).map_err(|e| RunError::Results {
            what: format!("client result {}", j.display()),
            detail: e.to_string(),
        })?);
    }
    let merged = loadgen::merge::merge(results).map_err(|e| RunError::Results {
        what: "merging the client results".into(),
        detail: e.to_string(),
    })?;
    progress(format!(
        "clients done: {} replies, {} errors",
        merged.replies(),
        merged.errors_total()
    ));

    // Stats of every web server and balancer.
    let mut served = Vec::new();
    for s in &servers {
        let ns = netns_name(&s.node);
        let at = SocketAddr::V4(s.listen[0]);
        let body = http_get(&ns, at, "/stats", FETCH_TIMEOUT).map_err(|e| RunError::Results {
            what: format!("stats of {}", s.name),
            detail: e.to_string(),
        })?;
        let stats: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| RunError::Results {
                what: format!("stats of {} (http://{at}/stats)", s.name),
                detail: format!("not JSON: {e}"),
            })?;
        let requests = stats
            .get("requests_total")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| RunError::Results {
                what: format!("stats of {} (http://{at}/stats)", s.name),
                detail: "no `requests_total` number".into(),
            })?;
        served.push(Served {
            node: s.node.clone(),
            name: s.name.clone(),
            role: s.role,
            requests,
            stats,
        });
    }
    let mut balancers = Vec::new();
    for b in &lbs {
        let ns = netns_name(&b.node);
        let r = http_get(&ns, SocketAddr::V4(b.control), "/stats", FETCH_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                serde_json::from_str::<serde_json::Value>(&body)
                    .map_err(|e| format!("/stats is not JSON: {e}"))
            });
        let (stats, error) = match r {
            Ok(v) => (v, None),
            Err(e) => {
                progress(format!("warning: balancer stats of {}: {e}", b.node));
                (serde_json::Value::Null, Some(e))
            }
        };
        balancers.push(BalancerStats {
            node: b.node.clone(),
            stats,
            error,
        });
    }
    let table_of_lbs: Vec<String> = lbs
        .iter()
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
        .collect();
    procs.stop_all();
    drop(loadgens);

    let served_total = served.iter().map(|s| s.requests).sum();
    let record = RunRecord {
        schema: RESULT_SCHEMA.into(),
        spec: spec.clone(),
        bin_dir: opts.bin_dir.display().to_string(),
        versions: versions(bins),
        started_unix_ms: started,
        finished_unix_ms: unix_ms(),
        loadgen: merged,
        served,
        served_total,
        balancers,
    };
    let json_path = opts.json.clone().unwrap_or_else(|| out.join("result.json"));
    let mut bytes = serde_json::to_vec_pretty(&record).map_err(|e| RunError::Results {
        what: "serialising the record".into(),
        detail: e.to_string(),
    })?;
    bytes.push(b'\n');
    loadgen::json_out::write_bytes_atomic(&bytes, &json_path)
        .map_err(io_err(format!("writing {}", json_path.display())))?;

    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "# {}", spec.describe());
    let _ = loadgen::httperf_fmt::write_summary(&record.loadgen, &mut stdout);
    let _ = writeln!(stdout);
    let _ = write!(
        stdout,
        "{}",
        served_table(&record.served, record.loadgen.replies())
    );
    for t in table_of_lbs {
        let _ = write!(stdout, "\nBalancer {t}");
    }
    let _ = stdout.flush();
    progress(format!("result written to {}", json_path.display()));
    Ok(record)
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
    fn log_tails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        assert!(log_tail(&p).contains("is empty"));
        std::fs::write(&p, (1..=10).map(|i| format!("l{i}\n")).collect::<String>()).unwrap();
        let t = log_tail(&p);
        assert!(
            t.contains("l10") && t.contains("l5") && !t.contains("l4"),
            "{t}"
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
