//! `harness flood`: the I/O side of [`crate::flood`]. Brings the `1lb-1rs`
//! testbed up (or reuses it), plugs a temporary flood leg from the last
//! client host into the LB LAN (a guard removes it, also on error), starts
//! the real server and one balancer (the run's `table_size` and SYN_RECV
//! timeout), then runs `--repeat` rounds of phases: a no-flood baseline and
//! each flood in turn, each with the legitimate clients (the other client
//! hosts) at a fixed rate, the balancer's `/stats` and RSS sampled every
//! [`PROBE_EVERY`]. The flood itself is a process, `harness flood-send`,
//! started in the flooding host like its client processes (its namespace,
//! and its cgroup when the profile gives clients a CPU quota, so that the
//! quota throttles the flood too), sending with sendmmsg(2) on an AF_PACKET
//! socket bound to the leg. The record (every run, and the medians so far)
//! is written atomically after every phase (an interrupted run keeps what
//! it measured), the table printed at the end, and the testbed always torn
//! down — also on error and Ctrl-C.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::{Layout, BENCH_TOPOLOGY};
use crate::bench_run::{bench_plans, bench_run_spec, Undo};
use crate::experiment::{BalancerPlan, RecordHead, RunSpec, ServerPlan};
use crate::flood::{
    checks, counter_delta, cpu_cgroup, leg_setup, leg_teardown, parse_mac, parse_vm_rss,
    render_table, spoof_pool, stats_counters, summarize, FloodKind, FloodRecord, FloodSpec,
    FloodTarget, FrameGen, Legit, Phase, Probe, SendReport, FLOOD_IFACE, FLOOD_SCHEMA, MAX_FRAME,
};
use crate::net::multicast_mac;
use crate::plan::bridge_name;
use crate::profile::Profile;
use crate::repeat::schedule;
use crate::run::{
    balancer_stats, make_run_dir, progress, publish_table, run_loadgens, start_balancers,
    start_servers, unix_ms, versions, with_testbed, write_json, BenchPaths, Binaries, RunError,
    Site, SERVER_READY_TIMEOUT,
};
use crate::supervise::{check_interrupt, io_err, log_tail, spawn_logged, wait_ready, Procs};
use crate::testbed::Testbed;
use crate::topology::Topology;

/// How often the balancer's table and RSS are sampled.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The flood starts this long before the legitimate clients.
pub const FLOOD_LEAD: Duration = Duration::from_secs(1);
/// Frames per sendmmsg(2) call.
const BATCH: usize = 64;

/// Knobs of one run besides the spec.
#[derive(Clone, Debug)]
pub struct FloodOptions {
    /// The run.
    pub spec: FloodSpec,
    /// Testbed profile (`unconstrained` by default).
    pub profile: String,
    /// Binaries, run directory, record (default `flood.json` in the run directory).
    pub paths: BenchPaths,
}

fn results_err(what: impl Into<String>) -> impl FnOnce(String) -> RunError {
    let what = what.into();
    move |detail| RunError::Results { what, detail }
}

/// Runs the whole measurement, including teardown. Interrupts stop it
/// cleanly; bad options fail before anything starts.
pub fn flood(opts: &FloodOptions) -> Result<FloodRecord, RunError> {
    opts.spec
        .validate()
        .map_err(|e| results_err("harness flood options")(e.0))?;
    let topology = Topology::load(BENCH_TOPOLOGY)
        .map_err(|e| results_err(format!("topology {BENCH_TOPOLOGY}"))(e.to_string()))?;
    let profile = Profile::load(&opts.profile)
        .map_err(|e| results_err(format!("--profile {}", opts.profile))(e.to_string()))?;
    let layout = Layout::of(&topology).map_err(|e| results_err("testbed layout")(e.to_string()))?;
    let bins = Binaries::find(&opts.paths.bin_dir)?;
    let u = opts.paths.testbed_use(&topology, &profile);
    with_testbed(&u, |tb, flag| {
        let mut ctx = Ctx::new(tb, &bins, opts, &topology, &profile, layout, flag)?;
        ctx.run()
    })
}

/// Everything a run needs, prepared once.
struct Ctx<'a> {
    tb: &'a Testbed,
    bins: &'a Binaries,
    opts: &'a FloodOptions,
    flag: &'a AtomicBool,
    out: PathBuf,
    topology: &'a Topology,
    profile: String,
    layout: Layout,
    run_spec: RunSpec,
    lb: BalancerPlan,
    rs: ServerPlan,
    rs_work_us: Option<u32>,
    flood_node: String,
    legit: Vec<String>,
    lan_bridge: String,
}

impl<'a> Ctx<'a> {
    fn new(
        tb: &'a Testbed,
        bins: &'a Binaries,
        opts: &'a FloodOptions,
        topology: &'a Topology,
        profile: &Profile,
        layout: Layout,
        flag: &'a AtomicBool,
    ) -> Result<Ctx<'a>, RunError> {
        let out = make_run_dir(&opts.paths.out_dir, &["stats"])?;
        let (legit, flood_node) = match layout.clients.split_last() {
            Some((last, rest)) if !rest.is_empty() => (rest.to_vec(), last.clone()),
            _ => {
                return Err(results_err("testbed layout")(
                    "harness flood needs two client hosts or more".into(),
                ))
            }
        };
        let lan = topology
            .segments
            .iter()
            .find(|s| s.subnet.contains(layout.vip))
            .ok_or_else(|| results_err("testbed layout")("no segment holds the VIP".into()))?;
        let spec = &opts.spec;
        let run_spec = RunSpec {
            rate: Some(spec.rate),
            clients: legit.len(),
            ..bench_run_spec(topology, profile, &layout, spec.seconds, spec.timeout_s)
        };
        let (mut lb, rs) = bench_plans(&run_spec, &layout)?;
        lb.config.table_size = spec.table_size;
        lb.config.timeouts.syn_recv = spec.syn_recv_timeout_s;
        lb.config
            .validate()
            .map_err(|e| results_err("balancer configuration")(e.to_string()))?;
        lb.config_toml = format!(
            "# balancer of {} ({}), written by `harness flood`\n{}",
            lb.node,
            topology.name,
            lb.config.to_toml_string()
        );
        Ok(Ctx {
            tb,
            bins,
            opts,
            flag,
            out,
            topology,
            profile: profile.name.clone(),
            rs_work_us: profile.server_work_us,
            layout,
            run_spec,
            lb,
            rs,
            flood_node,
            legit,
            lan_bridge: bridge_name(&lan.name),
        })
    }

    fn run(&mut self) -> Result<FloodRecord, RunError> {
        let started = unix_ms();
        progress(format!("run directory {}", self.out.display()));
        let _leg = Undo::apply(
            self.tb,
            &leg_setup(&self.flood_node, &self.lan_bridge),
            leg_teardown(),
        )?;
        let target = self.flood_target()?;
        let target_file = self.out.join("flood-target.json");
        write_json(&target, &target_file)?;
        let site = Site {
            tb: self.tb,
            bins: self.bins,
            out: &self.out,
            prefix: "",
            flag: self.flag,
        };
        let mut procs = Procs::default();
        start_servers(
            site,
            std::slice::from_ref(&self.rs),
            1,
            self.rs_work_us,
            &mut procs,
        )?;
        start_balancers(site, std::slice::from_ref(&self.lb), &mut procs)?;
        let pid = procs.0[1].p.id();
        progress(format!(
            "balancer ready (pid {pid}, table_size {}, SYN_RECV timeout {} s); floods from {} ({} spoofed sources {}..{})",
            self.opts.spec.table_size,
            self.opts.spec.syn_recv_timeout_s,
            self.flood_node,
            target.sources.len(),
            target.sources.first().map_or("?".into(), |a| a.to_string()),
            target.sources.last().map_or("?".into(), |a| a.to_string()),
        ));
        let mut record = FloodRecord {
            head: RecordHead {
                schema: FLOOD_SCHEMA.into(),
                topology: self.topology.name.clone(),
                profile: self.profile.clone(),
                versions: versions(self.bins),
                started_unix_ms: started,
                finished_unix_ms: started,
            },
            spec: self.opts.spec.clone(),
            flood_node: self.flood_node.clone(),
            spoofed: format!(
                "{} addresses of {} not held by any node",
                target.sources.len(),
                self.layout.client_net
            ),
            phases: Vec::new(),
            summary: Vec::new(),
            checks: Vec::new(),
            table: String::new(),
            complete: false,
        };
        let json_path = self.opts.paths.record_path(&self.out, "flood.json");
        let order = self.opts.spec.phase_order();
        let runs = schedule(self.opts.spec.repeat, &order);
        for (i, &(round, kind)) in runs.iter().enumerate() {
            check_interrupt(self.flag)?;
            let name = kind.map_or("baseline", FloodKind::as_str);
            progress(format!(
                "phase {}/{}: {name} (round {}/{})",
                i + 1,
                runs.len(),
                round + 1,
                self.opts.spec.repeat
            ));
            let p = self.phase(site, kind, round, &target_file, pid)?;
            progress(format!(
                "  legit {:.1} replies/s, {} errors; flood {}; max table {}",
                p.legit.reply_rate,
                p.legit.errors,
                p.sent.as_ref().map_or("-".into(), |s| format!(
                    "{:.0} frames/s (sender's CPU cgroup {})",
                    s.fps(),
                    s.cgroup.as_deref().unwrap_or("?")
                )),
                p.max_entries().map_or("?".into(), |m| m.to_string())
            ));
            record.phases.push(p);
            record.summary = summarize(&record.phases, &order);
            record.checks = checks(&record.summary);
            record.head.finished_unix_ms = unix_ms();
            write_json(&record, &json_path)?;
        }
        procs.stop_all();
        record.complete = true;
        record.table = render_table(&self.opts.spec, &record.summary, &record.checks);
        write_json(&record, &json_path)?;
        publish_table(&self.out, &record.table)?;
        progress(format!("result written to {}", json_path.display()));
        Ok(record)
    }

    /// MACs and spoofed sources of the floods.
    fn flood_target(&self) -> Result<FloodTarget, RunError> {
        let o = self.tb.output(
            &self.flood_node,
            &[
                "cat".into(),
                format!("/sys/class/net/{FLOOD_IFACE}/address"),
            ],
        )?;
        let text = String::from_utf8_lossy(&o.stdout);
        let src_mac = parse_mac(text.trim())
            .map_err(|e| results_err(format!("MAC of {}:{FLOOD_IFACE}", self.flood_node))(e.0))?;
        let dst_mac = parse_mac(&multicast_mac(self.layout.vip))
            .map_err(|e| results_err("VIP multicast MAC")(e.0))?;
        Ok(FloodTarget {
            src_mac,
            dst_mac,
            vip: self.layout.vip,
            port: crate::experiment::SERVICE_PORT,
            sources: spoof_pool(self.topology, self.layout.client_net),
        })
    }

    /// One phase: counters before, sampler and flood on, legitimate clients
    /// for the phase's seconds, flood and sampler off, counters after.
    fn phase(
        &self,
        site: Site<'_>,
        kind: Option<FloodKind>,
        round: u32,
        target: &Path,
        pid: u32,
    ) -> Result<Phase, RunError> {
        let name = kind.map_or("baseline", FloodKind::as_str).to_string();
        let tag = format!("{name}-r{round}");
        let prefix = format!("{tag}-");
        let site = Site {
            prefix: &prefix,
            ..site
        };
        let before = balancer_stats(&self.lb).map_err(results_err("balancer /stats"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let sampler = {
            let (lb, stop) = (self.lb.clone(), stop.clone());
            std::thread::spawn(move || sample(&lb, pid, t0, &stop))
        };
        let _stop_on_exit = StopOnDrop(stop.clone());
        let sender = kind
            .map(|k| self.start_sender(site, k, target, u64::from(pid) ^ unix_ms()))
            .transpose()?;
        if sender.is_some() {
            std::thread::sleep(FLOOD_LEAD);
        }
        let budget = self.opts.spec.seconds + self.opts.spec.timeout_s + 30.0;
        let rs = &self.run_spec;
        let merged = run_loadgens(site, &self.legit, |i, json| rs.client_args(i, json), budget);
        let sent = sender.map(Sender::finish).transpose()?;
        stop.store(true, Ordering::SeqCst);
        let probes = sampler.join().unwrap_or_default();
        let merged = merged?;
        let after = balancer_stats(&self.lb).map_err(results_err("balancer /stats"))?;
        let p = self.out.join("stats").join(format!("{tag}.balancer.json"));
        let _ = fs::write(p, after.to_string());
        Ok(Phase {
            name,
            flood: kind,
            round,
            sent,
            legit: Legit::of(&merged, self.opts.spec.seconds),
            probes,
            capacity: self.opts.spec.table_size as u64,
            counters: counter_delta(&stats_counters(&before), &stats_counters(&after)),
        })
    }

    /// Starts `harness flood-send` in the flooding host (its namespace, and
    /// its cgroup when the profile constrains clients, as every client
    /// process) and waits until its socket is open.
    fn start_sender(
        &self,
        site: Site<'_>,
        kind: FloodKind,
        target: &Path,
        seed: u64,
    ) -> Result<Sender, RunError> {
        let exe = std::env::current_exe().map_err(io_err("finding the harness executable"))?;
        let out = site
            .out
            .join("stats")
            .join(format!("{}flood-send.json", site.prefix));
        let run_for = FLOOD_LEAD.as_secs_f64() + self.opts.spec.seconds;
        let argv = send_argv(
            &exe,
            kind,
            target,
            seed,
            self.opts.spec.flood_pps,
            run_for,
            &out,
        );
        let what = format!("{} flood-send (in {})", kind.as_str(), self.flood_node);
        let log = site.log("flood-send.log");
        let mut procs = Procs::default();
        procs.0.push(spawn_logged(
            site.tb,
            &self.flood_node,
            what,
            argv,
            log.clone(),
        )?);
        wait_ready(&mut procs.0[0], SERVER_READY_TIMEOUT, site.flag, || {
            fs::read_to_string(&log).is_ok_and(|t| t.contains(SEND_READY_LINE))
        })?;
        Ok(Sender { procs, out, kind })
    }
}

/// `harness flood-send …`: the sender's command line.
fn send_argv(
    exe: &Path,
    kind: FloodKind,
    target: &Path,
    seed: u64,
    pps: u64,
    run_for_s: f64,
    out: &Path,
) -> Vec<String> {
    let mut v = vec![exe.display().to_string(), "flood-send".into()];
    for (flag, value) in [
        ("--kind", kind.as_str().to_string()),
        ("--target", target.display().to_string()),
        ("--seed", seed.to_string()),
        ("--flood-pps", pps.to_string()),
        ("--seconds", run_for_s.to_string()),
        ("--out", out.display().to_string()),
    ] {
        v.extend([flag.to_string(), value]);
    }
    v
}

/// A running `harness flood-send` and where it writes its report.
struct Sender {
    procs: Procs,
    out: PathBuf,
    kind: FloodKind,
}

impl Sender {
    /// Stops the sender (SIGTERM: it writes its report and exits) and
    /// reads its report.
    fn finish(mut self) -> Result<SendReport, RunError> {
        let (what, log) = match self.procs.0.first() {
            Some(p) => (p.what.clone(), p.log.clone()),
            None => return Err(results_err("flood sender")("not started".into())),
        };
        self.procs.stop_all();
        let read = fs::read(&self.out)
            .map_err(|e| format!("{}: {e}", self.out.display()))
            .and_then(|b| serde_json::from_slice::<SendReport>(&b).map_err(|e| e.to_string()));
        match read {
            Ok(r) if r.kind == Some(self.kind) => Ok(r),
            Ok(r) => Err(results_err(what)(format!(
                "report of the wrong flood: {:?}",
                r.kind
            ))),
            Err(e) => Err(RunError::Process {
                what: format!("{what}: no report ({e})"),
                detail: log_tail(&log),
            }),
        }
    }
}

/// What `harness flood-send` prints once its socket is open.
pub const SEND_READY_LINE: &str = "flood-send: sending";

/// `harness flood-send`: sends `kind` frames on the flood leg (in the
/// namespace it runs in) for `run_for` or until `stop` (SIGTERM), then
/// writes the [`SendReport`] to `out` atomically.
pub fn send_to_file(
    kind: FloodKind,
    target: &Path,
    seed: u64,
    pps: u64,
    run_for: Duration,
    out: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<SendReport> {
    use anyhow::Context as _;
    let text = fs::read(target).with_context(|| format!("reading {}", target.display()))?;
    let target: FloodTarget = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a flood target", target.display()))?;
    let gen = FrameGen::new(kind, target, seed)?;
    let sock = flood_socket(FLOOD_IFACE).with_context(|| format!("socket on {FLOOD_IFACE}"))?;
    eprintln!(
        "{SEND_READY_LINE} {} frames on {FLOOD_IFACE}",
        kind.as_str()
    );
    let mut report = send(&sock, gen, pps, run_for, stop).context("sending")?;
    report.kind = Some(kind);
    report.cgroup = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cpu_cgroup(&t));
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    loadgen::json_out::write_bytes_atomic(&bytes, out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "flood-send: {} frames in {:.1} s ({:.0} frames/s, {} busy), CPU cgroup {}",
        report.frames,
        report.seconds,
        report.fps(),
        report.busy,
        report.cgroup.as_deref().unwrap_or("?")
    );
    Ok(report)
}

/// Sets the flag when dropped, so the sampler thread ends on every path
/// out of a phase.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Samples the balancer's table occupancy and RSS until `stop`.
fn sample(lb: &BalancerPlan, pid: u32, t0: Instant, stop: &AtomicBool) -> Vec<Probe> {
    let mut out = Vec::new();
    loop {
        let next = Instant::now() + PROBE_EVERY;
        let entries = balancer_stats(lb).ok().and_then(|v| {
            v.get("conntrack_entries")
                .and_then(serde_json::Value::as_u64)
        });
        let rss_kib = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .filter(|s| s.lines().next().is_some_and(|l| l.ends_with("balancer")))
            .and_then(|s| parse_vm_rss(&s));
        out.push(Probe {
            t_s: t0.elapsed().as_secs_f64(),
            entries,
            rss_kib,
        });
        if stop.load(Ordering::SeqCst) {
            return out;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// A send-only AF_PACKET socket bound to `iface` (protocol 0: it receives
/// nothing), bypassing the qdisc, as the kernel's pktgen-like senders do.
fn flood_socket(iface: &str) -> io::Result<OwnedFd> {
    let name = CString::new(iface).map_err(|_| io::Error::other("NUL in interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` lives across the call and the length matches its type.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: `one` lives across the call and the length matches its type.
    // Best effort: without the bypass the frames take the qdisc path.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// Sends `frames[i]` (offset `i * MAX_FRAME`, length `lens[i]`) with one
/// sendmmsg(2); returns how many the kernel took.
fn send_batch(fd: RawFd, buf: &mut [u8], lens: &[usize]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = buf
        .chunks_exact_mut(MAX_FRAME)
        .zip(lens)
        .map(|(c, &n)| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: n.min(MAX_FRAME),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero (no name, no control) is valid.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; iovs.len()];
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at one iovec of `iovs`, each describing a
    // chunk of `buf`; both outlive the call, and the kernel only reads them
    // (and writes `msg_len` into the headers we own).
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends `gen`'s frames on `sock` for `run_for` (or until `stop`), as fast
/// as the kernel takes them or paced to `pps` (0: unpaced).
fn send(
    sock: &OwnedFd,
    mut gen: FrameGen,
    pps: u64,
    run_for: Duration,
    stop: &AtomicBool,
) -> io::Result<SendReport> {
    let mut buf = vec![0u8; BATCH * MAX_FRAME];
    let mut lens = [0usize; BATCH];
    let mut report = SendReport::default();
    let start = Instant::now();
    while start.elapsed() < run_for
        && !stop.load(Ordering::Relaxed)
        && !crate::signal::interrupted()
    {
        for (slot, len) in buf.chunks_exact_mut(MAX_FRAME).zip(lens.iter_mut()) {
            *len = gen.next_into(slot);
        }
        let mut done = 0;
        while done < BATCH {
            match send_batch(
                sock.as_raw_fd(),
                &mut buf[done * MAX_FRAME..],
                &lens[done..],
            ) {
                Ok(n) => {
                    report.frames += n as u64;
                    report.bytes += lens[done..done + n].iter().sum::<usize>() as u64;
                    done += n.max(1);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => {
                    report.busy += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if pps > 0 {
            let due = Duration::from_secs_f64(report.frames as f64 / pps as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
