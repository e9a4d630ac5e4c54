//! `harness bench-balancer`: the I/O side of [`crate::bench`]. Brings the
//! `1lb-1rs` / `unconstrained` testbed up (or reuses it), then, for each
//! round and each target in turn: flushes TIME_WAIT sockets everywhere,
//! starts a fresh real server, switches the testbed to the target (router
//! neighbour, nftables, sysctl, temporary routes: namespaces only), starts
//! the forwarder (balancer or HAProxy) and checks the path end to end, reads
//! the counters, runs the clients, reads the counters again, and undoes the
//! switch (a guard undoes it on error too). Writes the JSON record
//! atomically, prints the table, and always tears the testbed down — also on
//! error and Ctrl-C.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::bench::{
    checks, client_args, haproxy_config, nft_ruleset, parse_host_cpu, parse_link_mac,
    parse_link_stats, parse_proc_cpu, render_table, setup_steps, summarize, teardown_steps,
    BenchRecord, BenchSpec, Layout, LoadFigures, NsCmd, Sample, Snapshot, Target, BENCH_PROFILE,
    BENCH_SCHEMA, BENCH_TOPOLOGY,
};
use crate::experiment::{
    BalancerPlan, Method, RecordHead, RunSpec, ServerPlan, Stop, SERVICE_PORT,
};
use crate::nsnet::{http_get, tcp_probe};
use crate::plan::netns_name;
use crate::profile::Profile;
use crate::run::{
    balancer_stats, make_run_dir, progress, publish_table, run_loadgens, server_stats,
    start_balancers_with, start_servers, unix_ms, versions, with_testbed, write_json, BenchPaths,
    Binaries, RunError, Site, FETCH_TIMEOUT, SERVER_READY_TIMEOUT,
};
use crate::supervise::{check_interrupt, describe_exit, io_err, spawn_logged, wait_ready, Procs};
use crate::testbed::Testbed;
use crate::topology::Topology;

/// How long the path may take to carry a first request after a switch.
pub const PATH_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Knobs of one benchmark besides the spec.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The benchmark.
    pub spec: BenchSpec,
    /// Binaries, run directory, record (default `bench.json` in the run directory).
    pub paths: BenchPaths,
}

/// Runs the whole benchmark, including teardown. Interrupts
/// (SIGINT/SIGTERM/SIGHUP) stop it cleanly.
pub fn bench(opts: &BenchOptions) -> Result<BenchRecord, RunError> {
    let topology = Topology::load(BENCH_TOPOLOGY).map_err(|e| RunError::Results {
        what: format!("topology {BENCH_TOPOLOGY}"),
        detail: e.to_string(),
    })?;
    let profile = Profile::load(BENCH_PROFILE).map_err(|e| RunError::Results {
        what: format!("profile {BENCH_PROFILE}"),
        detail: e.to_string(),
    })?;
    let layout = Layout::of(&topology).map_err(|e| RunError::Results {
        what: "testbed layout".into(),
        detail: e.to_string(),
    })?;
    opts.spec
        .validate(layout.clients.len())
        .map_err(|e| RunError::Results {
            what: "bench-balancer options".into(),
            detail: e.to_string(),
        })?;
    let bins = Binaries::find(&opts.paths.bin_dir)?;
    let haproxy_version = first_line(Command::new("haproxy").arg("-v"));
    if opts.spec.targets.contains(&Target::Haproxy) && haproxy_version.is_none() {
        return Err(RunError::Process {
            what: "`haproxy -v` failed".into(),
            detail: "install HAProxy (Debian: apt-get install haproxy) or leave `haproxy` out of --targets".into(),
        });
    }
    let u = opts.paths.testbed_use(&topology, &profile);
    with_testbed(&u, |tb, flag| {
        let mut ctx = Ctx::new(tb, &bins, opts, &topology, &profile, layout, flag)?;
        ctx.haproxy_version = haproxy_version;
        ctx.bench()
    })
}

/// A benchmark's point as `harness run` has it: bi-active off, NAT, round
/// robin, no health checks, one thread each, every client host of
/// `layout` at 1 conn/s (a benchmark sets its own load).
pub(crate) fn bench_run_spec(
    topology: &Topology,
    profile: &Profile,
    layout: &Layout,
    seconds: f64,
    timeout_s: f64,
) -> RunSpec {
    RunSpec {
        topology: topology.clone(),
        profile: profile.clone(),
        bi_active: false,
        method: Method::Nat,
        scheduler: "rr".into(),
        rate: Some(1.0),
        concurrency: None,
        stop: Stop::DurationS(seconds),
        clients: layout.clients.len(),
        timeout_s,
        server_threads: 1,
        client_threads: 1,
        health_checks: false,
    }
}

/// The plans of the benchmark's balancer and real server (`layout.lb`, `layout.rs`).
pub(crate) fn bench_plans(
    run_spec: &RunSpec,
    layout: &Layout,
) -> Result<(BalancerPlan, ServerPlan), RunError> {
    let missing = |what: &str, node: &str| RunError::Results {
        what: format!("{what} plan"),
        detail: format!("no plan for {node}"),
    };
    let lb = run_spec
        .balancers()?
        .into_iter()
        .find(|b| b.node == layout.lb)
        .ok_or_else(|| missing("balancer", &layout.lb))?;
    let rs = run_spec
        .servers()
        .into_iter()
        .find(|s| s.node == layout.rs)
        .ok_or_else(|| missing("real server", &layout.rs))?;
    Ok((lb, rs))
}

fn first_line(c: &mut Command) -> Option<String> {
    let o = c.stderr(Stdio::null()).output().ok()?;
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// Everything a run needs, prepared once.
struct Ctx<'a> {
    tb: &'a Testbed,
    bins: &'a Binaries,
    opts: &'a BenchOptions,
    layout: Layout,
    flag: &'a AtomicBool,
    out: PathBuf,
    lb_front_mac: String,
    nft_file: PathBuf,
    haproxy_file: PathBuf,
    balancer_cfg: PathBuf,
    lb: BalancerPlan,
    rs: ServerPlan,
    rs_work_us: Option<u32>,
    clk_tck: f64,
    haproxy_version: Option<String>,
    warned_proc: bool,
}

impl<'a> Ctx<'a> {
    fn new(
        tb: &'a Testbed,
        bins: &'a Binaries,
        opts: &'a BenchOptions,
        topology: &Topology,
        profile: &Profile,
        layout: Layout,
        flag: &'a AtomicBool,
    ) -> Result<Ctx<'a>, RunError> {
        let out = make_run_dir(&opts.paths.out_dir, &["stats"])?;
        let write = |name: &str, text: &str| -> Result<PathBuf, RunError> {
            let p = out.join("config").join(name);
            fs::write(&p, text).map_err(io_err(format!("writing {}", p.display())))?;
            Ok(p)
        };
        let nft_file = write("nat.nft", &nft_ruleset(&layout))?;
        let haproxy_file = write("haproxy.cfg", &haproxy_config(&layout))?;
        // The balancer's configuration as `harness run` writes it, bi-active off.
        let run_spec = RunSpec {
            server_threads: opts.spec.server_threads,
            ..bench_run_spec(
                topology,
                profile,
                &layout,
                opts.spec.seconds,
                opts.spec.timeout_s,
            )
        };
        let (lb, rs) = bench_plans(&run_spec, &layout)?;
        let balancer_cfg = write(&format!("{}.toml", lb.node), &lb.config_toml)?;
        let link = Command::new("ip")
            .args(["-n", &netns_name(&layout.lb), "-j", "link", "show"])
            .output()
            .map_err(io_err("running `ip -j link show`"))?;
        let lb_front_mac = parse_link_mac(&String::from_utf8_lossy(&link.stdout), &layout.front)
            .map_err(|detail| RunError::Results {
                what: format!("MAC of {}:{}", layout.lb, layout.front),
                detail,
            })?;
        // SAFETY: sysconf(3) has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(Ctx {
            tb,
            bins,
            opts,
            flag,
            out,
            lb_front_mac,
            nft_file,
            haproxy_file,
            balancer_cfg,
            lb,
            rs,
            rs_work_us: profile.server_work_us,
            clk_tck: if tck > 0 { tck as f64 } else { 100.0 },
            haproxy_version: None,
            warned_proc: false,
            layout,
        })
    }

    fn bench(&mut self) -> Result<BenchRecord, RunError> {
        let spec = self.opts.spec.clone();
        let started = unix_ms();
        let loadavg = fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        progress(format!(
            "run directory {}; host load average {}",
            self.out.display(),
            loadavg.as_deref().unwrap_or("?")
        ));
        progress(format!("balancer config {}", self.balancer_cfg.display()));
        let total = spec.repeat as usize * spec.targets.len();
        let mut samples = Vec::new();
        for round in 0..spec.repeat {
            for &t in &spec.targets {
                check_interrupt(self.flag)?;
                progress(format!(
                    "run {}/{total}: ({}) {} — {}",
                    samples.len() + 1,
                    spec.targets.iter().position(|x| *x == t).unwrap_or(0) + 1,
                    t.as_str(),
                    t.describe()
                ));
                let s = self.one_run(t, round)?;
                progress(format!(
                    "  {:.0} replies/s, {:.2} % errors, LB {:.0} pkt/s{}",
                    s.reply_rate,
                    s.error_percent,
                    s.lb_pps,
                    match (s.proc_us_per_packet, s.proc_sys_share) {
                        (Some(u), Some(k)) => format!(
                            ", {u:.2} µs process CPU per LB packet ({:.0} % in the kernel)",
                            k * 100.0
                        ),
                        _ => String::new(),
                    }
                ));
                samples.push(s);
            }
        }
        let summary = summarize(&samples, &spec.targets);
        let checks = checks(&summary);
        let table = render_table(&spec, &summary, &checks);
        let setup: BTreeMap<Target, (Vec<NsCmd>, Vec<NsCmd>)> = spec
            .targets
            .iter()
            .map(|&t| {
                (
                    t,
                    (
                        setup_steps(t, &self.layout, &self.lb_front_mac, &self.nft_file),
                        teardown_steps(t, &self.layout),
                    ),
                )
            })
            .collect();
        let record = BenchRecord {
            head: RecordHead {
                schema: BENCH_SCHEMA.into(),
                topology: BENCH_TOPOLOGY.into(),
                profile: BENCH_PROFILE.into(),
                versions: versions(self.bins),
                started_unix_ms: started,
                finished_unix_ms: unix_ms(),
            },
            spec,
            haproxy_version: self.haproxy_version.clone(),
            loadavg_at_start: loadavg,
            samples,
            summary,
            checks,
            table: table.clone(),
            setup,
        };
        let json_path = self.opts.paths.record_path(&self.out, "bench.json");
        write_json(&record, &json_path)?;
        let table_path = publish_table(&self.out, &table)?;
        progress(format!(
            "result written to {} (table: {})",
            json_path.display(),
            table_path.display()
        ));
        Ok(record)
    }

    /// `ss -K state time-wait` in every node of the path (PAWS would
    /// reject reused ports of a different path otherwise: field notes).
    fn flush_time_wait(&self) {
        let l = &self.layout;
        let nodes = l
            .clients
            .iter()
            .chain([&l.router, &l.lb, &l.rs])
            .cloned()
            .collect::<Vec<_>>();
        let argv: Vec<String> = ["ss", "-K", "-t", "state", "time-wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for n in nodes {
            match self.tb.output(&n, &argv) {
                Ok(o) if o.status.success() => {}
                Ok(o) => progress(format!(
                    "warning: `ss -K` in {n} {}: {}",
                    describe_exit(o.status),
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => progress(format!("warning: `ss -K` in {n}: {e}")),
            }
        }
    }

    fn snapshot(&mut self, pid: Option<(u32, &str)>) -> Result<Snapshot, RunError> {
        let o = Command::new("ip")
            .args([
                "-n",
                &netns_name(&self.layout.lb),
                "-j",
                "-s",
                "link",
                "show",
            ])
            .output()
            .map_err(io_err("running `ip -j -s link show`"))?;
        let lb_links = parse_link_stats(&String::from_utf8_lossy(&o.stdout)).map_err(|detail| {
            RunError::Results {
                what: format!("interface counters of {}", self.layout.lb),
                detail,
            }
        })?;
        let host_text = fs::read_to_string("/proc/stat").map_err(io_err("reading /proc/stat"))?;
        let host = parse_host_cpu(&host_text).map_err(|detail| RunError::Results {
            what: "/proc/stat".into(),
            detail,
        })?;
        let proc = match pid {
            None => None,
            Some((pid, expected)) => {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != expected {
                    if !self.warned_proc {
                        progress(format!(
                            "warning: pid {pid} is `{}`, not `{expected}`: its CPU is not reported",
                            comm.trim()
                        ));
                        self.warned_proc = true;
                    }
                    None
                } else {
                    fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| parse_proc_cpu(&s).ok())
                }
            }
        };
        Ok(Snapshot {
            lb_links,
            proc,
            host,
        })
    }

    fn rs_requests(&self) -> Option<u64> {
        let at = SocketAddr::V4(self.rs.listen[0]);
        server_stats(&self.layout.rs, at, &self.rs.name)
            .ok()
            .map(|(n, _)| n)
    }

    /// Waits until a client gets a 200 for `/` through the target's path.
    fn wait_path(&self, t: Target) -> Result<(), RunError> {
        let ns = netns_name(&self.layout.clients[0]);
        let to = SocketAddr::V4(SocketAddrV4::new(self.layout.dest(t), SERVICE_PORT));
        let start = Instant::now();
        loop {
            check_interrupt(self.flag)?;
            let r = http_get(&ns, to, "/", Duration::from_secs(1));
            match r {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= PATH_READY_TIMEOUT => {
                    return Err(RunError::Process {
                        what: format!(
                            "{} path: no reply from http://{to}/ in {} after {} s",
                            t.as_str(),
                            self.layout.clients[0],
                            PATH_READY_TIMEOUT.as_secs()
                        ),
                        detail: e.to_string(),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn one_run(&mut self, t: Target, round: u32) -> Result<Sample, RunError> {
        let l = self.layout.clone();
        let tag = format!("{}-r{round}", t.as_str());
        let prefix = format!("{tag}-");
        self.flush_time_wait();
        let out = self.out.clone();
        let site = Site {
            tb: self.tb,
            bins: self.bins,
            out: &out,
            prefix: &prefix,
            flag: self.flag,
        };
        let mut procs = Procs::default();
        // A fresh real server every run (its counters and sockets reset).
        let threads = self.opts.spec.server_threads;
        let rs = [self.rs.clone()];
        start_servers(site, &rs, threads, self.rs_work_us, &mut procs)?;
        // Switch the testbed to the target; the guard undoes it.
        let _switch = Undo::apply(
            self.tb,
            &setup_steps(t, &l, &self.lb_front_mac, &self.nft_file),
            teardown_steps(t, &l),
        )?;
        let fwd: Option<(usize, &str)> = match t {
            Target::Balancer | Target::LateDrop | Target::Mmsg => {
                let lbs = [self.lb.clone()];
                let extra: &[&str] = match t {
                    Target::LateDrop => &["--early-drop", "off"],
                    Target::Mmsg => &["--io", "mmsg"],
                    _ => &[],
                };
                start_balancers_with(site, &lbs, extra, &mut procs)?;
                Some((1, "balancer"))
            }
            Target::Haproxy => {
                let argv = vec![
                    "haproxy".to_string(),
                    "-db".into(),
                    "-f".into(),
                    self.haproxy_file.display().to_string(),
                ];
                procs.0.push(spawn_logged(
                    self.tb,
                    &l.lb,
                    format!("haproxy in {}", l.lb),
                    argv,
                    self.out.join("logs").join(format!("{tag}.haproxy.log")),
                )?);
                let (ns, vip) = (
                    netns_name(&l.lb),
                    SocketAddr::V4(SocketAddrV4::new(l.vip, SERVICE_PORT)),
                );
                wait_ready(&mut procs.0[1], SERVER_READY_TIMEOUT, self.flag, || {
                    tcp_probe(&ns, vip, FETCH_TIMEOUT)
                })?;
                Some((1, "haproxy"))
            }
            Target::Nftables | Target::Direct => None,
        };
        self.wait_path(t)?;
        let fwd_pid = fwd.map(|(i, name)| (procs.0[i].p.id(), name));
        let served_before = self.rs_requests();
        let before = self.snapshot(fwd_pid)?;

        // The clients, concurrently.
        let k = l.clients.len();
        let url = l.url(t);
        let budget = self.opts.spec.seconds + self.opts.spec.timeout_s + 30.0;
        let spec = &self.opts.spec;
        let merged = run_loadgens(
            site,
            &l.clients,
            |i, json| client_args(spec, &url, i, k, json),
            budget,
        )?;
        let after = self.snapshot(fwd_pid)?;
        let served_after = self.rs_requests();
        if matches!(t, Target::Balancer | Target::LateDrop | Target::Mmsg) {
            if let Ok(v) = balancer_stats(&self.lb) {
                let p = self.out.join("stats").join(format!("{tag}.balancer.json"));
                let _ = fs::write(p, v.to_string());
            }
        }
        procs.stop_all();
        drop(_switch);

        let load = LoadFigures::of(&merged);
        let served = match (served_before, served_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Ok(Sample::compute(
            t,
            round,
            &l,
            load,
            &before,
            &after,
            self.clk_tck,
            served,
        ))
    }
}

/// Namespace commands applied to the testbed; dropping the guard runs
/// their undo commands (each one, best effort; failures are reported), so
/// a temporary switch is undone on every path out (error, Ctrl-C).
pub(crate) struct Undo<'a> {
    tb: &'a Testbed,
    undo: Vec<NsCmd>,
}

impl<'a> Undo<'a> {
    /// Runs `setup` in order (the first failure is the error) and returns
    /// the guard that runs `undo` when dropped (also after a failed setup).
    pub(crate) fn apply(
        tb: &'a Testbed,
        setup: &[NsCmd],
        undo: Vec<NsCmd>,
    ) -> Result<Undo<'a>, RunError> {
        let guard = Undo { tb, undo };
        run_ns_cmds(tb, setup)?;
        Ok(guard)
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for c in &self.undo {
            match self.tb.output(&c.node, &c.argv) {
                Ok(o) if o.status.success() => {}
                Ok(o) => progress(format!(
                    "warning: undo `{}` in {}: {}",
                    c.argv.join(" "),
                    c.node,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => progress(format!("warning: undo `{}`: {e}", c.argv.join(" "))),
            }
        }
    }
}

/// Runs each command in its node; the first failure is the error.
fn run_ns_cmds(tb: &Testbed, cmds: &[NsCmd]) -> Result<(), RunError> {
    for c in cmds {
        let o = tb.output(&c.node, &c.argv)?;
        if !o.status.success() {
            return Err(RunError::Process {
                what: format!("`{}` in {} ({})", c.argv.join(" "), c.node, c.why),
                detail: format!(
                    "{}: {}",
                    describe_exit(o.status),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_is_timestamped() {
        let d = crate::run::default_out_dir("bench-balancer");
        let s = d.to_str().unwrap();
        assert!(
            s.starts_with("results/bench-balancer-") && s.ends_with('Z'),
            "{s}"
        );
    }

    #[test]
    fn first_line_of_a_command() {
        assert_eq!(
            first_line(Command::new("echo").args(["a b", "c"])).as_deref(),
            Some("a b c")
        );
        assert_eq!(first_line(&mut Command::new("false")), None);
        assert_eq!(first_line(&mut Command::new("/nonexistent/prog")), None);
    }

    #[test]
    fn unknown_path_reports_missing_binaries() {
        let d = tempfile::tempdir().unwrap();
        let opts = BenchOptions {
            spec: BenchSpec {
                seconds: 1.0,
                repeat: 1,
                concurrency: 64,
                targets: Target::ALL.to_vec(),
                timeout_s: 5.0,
                server_threads: 1,
            },
            paths: BenchPaths {
                bin_dir: d.path().to_path_buf(),
                out_dir: d.path().join("out"),
                json: None,
                verbose: false,
                state_dir: d.path().join("state"),
            },
        };
        let e = bench(&opts).unwrap_err().to_string();
        assert!(e.contains("`loadgen` not found"), "{e}");
        let mut bad = opts.clone();
        bad.spec.repeat = 0;
        let e = bench(&bad).unwrap_err().to_string();
        assert!(e.contains("--repeat 0"), "{e}");
    }
}
