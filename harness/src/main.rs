//! `harness`: build, inspect, use and tear down the emulated cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use harness::bench::BenchSpec;
use harness::bench_run::{self, BenchOptions};
use harness::cgroup::CgroupFlavor;
use harness::discover::{describe, discover};
use harness::exec::FAIL_AT_STEP_ENV;
use harness::experiment::{Method, RunSpec, Stop};
use harness::plan::{plan_down, plan_up, render_script};
use harness::privilege::{is_privileged, NEED_ROOT};
use harness::profile::Profile;
use harness::reproduce::{self, ReproduceError, ReproduceOptions};
use harness::run::{self as runner, RunError, RunOptions};
use harness::state::STATE_DIR;
use harness::sweep::SweepArgs;
use harness::testbed::{self, Error, Testbed, UpOptions};
use harness::topology::Topology;
use harness::{signal, status, PREFIX};

#[derive(Parser, Debug)]
#[command(
    name = "harness",
    version,
    about = "Emulated cluster (network namespaces) for the bi-active load balancer experiments",
    long_about = "Emulated cluster (network namespaces) for the bi-active load balancer experiments.\n\n\
        Every namespace, link and cgroup is named `bal-*`; all addresses are in 198.18.0.0/15 \
        (RFC 2544) and live only inside the namespaces; the root namespace gets nothing."
)]
struct Cli {
    /// Print every command to stderr as it runs.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where a benchmark (`bench-balancer`, `flood`) writes, what it runs, and
/// whether a failed check fails the command.
#[derive(clap::Args, Debug)]
struct RecordArgs {
    /// Write the JSON record here (default: in the run directory).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run directory [default: results/<command>-<UTC time>].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Directory holding loadgen, realserver and balancer [default: the harness's own directory].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Exit 1 when a check or target fails.
    #[arg(long)]
    strict: bool,
}

impl RecordArgs {
    /// Where the benchmark `command` reads and writes: the defaults filled in.
    fn paths(&self, command: &str, verbose: bool) -> harness::run::BenchPaths {
        harness::run::BenchPaths {
            bin_dir: self.bin_dir.clone().unwrap_or_else(runner::default_bin_dir),
            out_dir: (self.out_dir.clone()).unwrap_or_else(|| runner::default_out_dir(command)),
            json: self.json.clone(),
            verbose,
            state_dir: PathBuf::from(STATE_DIR),
        }
    }
}

/// Exit status of a benchmark: 1 with `--strict` when one of `failed` (the
/// names of failed checks) exists, else success.
fn strict_exit(strict: bool, failed: &[&str]) -> ExitCode {
    if strict && !failed.is_empty() {
        eprintln!("harness: --strict: failed: {}", failed.join("; "));
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build the testbed (tears down any previous one or leftovers first).
    Up {
        /// Built-in topology (1lb-1rs, 2lb-2rs, 1lb-1rs-dr, 2lb-2rs-dr) or a .toml/.json file.
        #[arg(long, short, default_value = "1lb-1rs")]
        topology: String,
        /// Built-in profile (unconstrained, paper) or a .toml/.json file.
        #[arg(long, short, default_value = "unconstrained")]
        profile: String,
        /// Print the plan as a replayable #!/bin/sh script; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove every namespace, link and cgroup named `bal-*` (also leftovers of crashes).
    Down {
        /// Print what would be removed as a #!/bin/sh script; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what exists: namespaces, links, addresses, routes, cgroups.
    Status,
    /// Run one experiment point: testbed up (or reuse), servers, balancers,
    /// one loadgen per client host, merged result, served-by table, JSON
    /// record; then stop everything and tear down (unless --keep-up).
    #[command(
        after_help = "Example: harness run --topology 1lb-1rs --profile paper --bi-active on --rate 600 --duration 10s\n\
        Writes results/run-<UTC time>/ (configs, logs, client results, result.json) unless --out-dir/--json say otherwise."
    )]
    Run {
        #[command(flatten)]
        point: PointArgs,
        /// Whether each balancer's own server takes flows (the paper's bi-active mode).
        #[arg(long, value_enum, default_value = "on")]
        bi_active: OnOff,
        /// Write the JSON record here (default: RUN_DIR/result.json).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Leave the testbed up afterwards (`harness down` removes it).
        #[arg(long)]
        keep_up: bool,
        /// A fault during the load (repeatable): at=T,ACTION=NODE, T from the start of the
        /// load (4s, 4500ms). ACTION: kill (SIGKILL), stop (SIGTERM), start (a process that is
        /// not running), restart, link-down / link-up (NODE:IFACE), block-heartbeat /
        /// unblock-heartbeat. NODE: lbN (its balancer), lbN-local (its web server), rsN.
        /// Prints when each other balancer's membership changed and from when on every new
        /// connection succeeded; the result gains `faults`, `failover` and `timeline`
        /// (also RUN_DIR/timeline.csv).
        #[arg(long = "fault", value_name = "at=T,ACTION=NODE")]
        faults: Vec<String>,
        /// Start the run with this process not running (repeatable): lbN, lbN-local, rsN.
        #[arg(long = "down", value_name = "NODE")]
        down: Vec<String>,
    },
    /// Internal: count client SYNs and their distinct SYN-ACKs on the IFACEs until SIGTERM, then
    /// write the counts to OUT (`harness run` starts it in the router's namespace).
    #[command(hide = true)]
    RouterWatch {
        /// An interface of the router towards the balancers or servers (repeatable).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// The virtual service, VIP:PORT.
        #[arg(long)]
        vip: std::net::SocketAddrV4,
        /// Where the JSON counts go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Redraw the timeline figure (timeline.svg, timeline.png) of a `harness run` result into
    /// its directory; `harness run` draws it after every run.
    Timeline {
        /// A result.json of `harness run`, or the run directory holding it.
        result: PathBuf,
    },
    /// The paper's comparison in one command: the same point with bi-active
    /// on and off (each on a fresh testbed), printed side by side.
    Demo {
        #[command(flatten)]
        point: PointArgs,
    },
    /// Compare the user-space balancer with nftables DNAT, HAProxy and a
    /// direct path, in one testbed, connection per request; table + JSON.
    #[command(
        long_about = "Compare, in one testbed (topology 1lb-1rs, profile unconstrained) and one invocation, \
the connection-per-request reply rate and the packets per second through the load balancer node of six paths \
from the client hosts to the real server rs1:\n\
  (1) balancer  the user-space balancer, LVS-NAT, bi-active off (every flow to rs1)\n\
  (2) nftables  the LB node's kernel forwards, nftables DNAT VIP:80 -> rs1 (conntrack un-NATs the replies)\n\
  (3) haproxy   HAProxy mode tcp, nbthread 1, listening on VIP:80 in the LB node\n\
  (4) direct    clients -> router -> rs1's own address (the LB is bypassed)\n\
  (5) late-drop the balancer with --early-drop off: the LB kernel takes each handled frame through IP input to its \
own drop (the fallback path; (1) / (5) is the early drop's gain)\n\
  (6) mmsg      the balancer with --io mmsg: recvmmsg(2) into its own buffers instead of the TPACKET_V2 receive \
rings of (1) (the fallback path; (1) / (6) is the rings' gain)\n\n\
Load: loadgen on every client host, closed loop, one request per connection (--concurrency N --num-calls 1), \
for --seconds; --repeat rounds, the configs alternating within each round; medians are reported. Before every run \
TIME_WAIT sockets are flushed in every node (`ss -K`) and rs1's server is restarted.\n\n\
Measured per run: reply rate (replies / load duration) and errors (loadgen); packets received on the LB's \
front + back (ip -s link) per second of load; CPU (utime+stime, /proc/PID/stat) of the balancer or HAProxy per \
such packet (the in-kernel path runs in softirq, which is not per process: n/a); host-wide softirq and busy CPU \
time per reply (/proc/stat, every namespace included). Every namespace shares the host's cores, so the host \
saturates and the reply rate reflects the CPU cost per connection of the whole path; other load on the host adds \
noise (the record keeps the load average at the start).\n\n\
Temporary changes, inside the namespaces only, undone after each run: for (2) and (3) the router's VIP neighbour \
points at the LB's unicast MAC (its kernel ignores TCP in the multicast frames the balancer uses) and the LB's \
prerouting drop of VIP packets is lifted; (2) sets ip_forward=1 and loads table ip balbench; (4) plugs a router \
leg into the sub-cluster (198.18.11.254) and routes rs1's replies and the clients through it.\n\n\
Targets (ratios of median reply rates): balancer / haproxy >= 1.0 and balancer / nftables >= 0.5, shown as \
PASS/FAIL. Exit status 0 whatever the verdict (1 with --strict when a target fails), 1 on errors, 130 on Ctrl-C. \
The testbed is always torn down. Needs root, haproxy, and release binaries (cargo build --release --workspace).",
        after_help = "Example: harness bench-balancer --seconds 5 --repeat 3 --json bench.json\n\
Writes results/bench-balancer-<UTC time>/ (configs, logs, client results, table.txt, bench.json) unless --out-dir/--json say otherwise."
    )]
    BenchBalancer {
        /// Load duration of every run, seconds.
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        seconds: f64,
        /// Runs per configuration (alternating); the table shows medians.
        #[arg(long, value_name = "R", default_value_t = 3)]
        repeat: u32,
        /// Concurrent connections of all clients together (closed loop).
        #[arg(long, value_name = "N", default_value_t = 64)]
        concurrency: u32,
        /// Configurations to run, comma-separated, in table order.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = harness::bench::Target::ALL)]
        targets: Vec<harness::bench::Target>,
        /// loadgen --timeout per operation, seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        timeout: f64,
        /// Worker threads of rs1's web server.
        #[arg(long, value_name = "N", default_value_t = 1)]
        server_threads: u32,
        #[command(flatten)]
        record: RecordArgs,
    },
    /// Hostile load: a no-flood baseline, then a SYN flood, a flood of
    /// non-SYN segments for unknown flows and a stream of malformed frames at
    /// the VIP, each while legitimate clients run at a fixed rate; the
    /// balancer's table occupancy and RSS are sampled throughout.
    #[command(
        long_about = "Hostile load against the balancer (1lb-1rs), measured against a no-flood baseline in the same run.\n\n\
Floods come from the last client host through a temporary veth leg into the LB LAN (no address on it), sent to the \
VIP's multicast MAC at the highest rate the sender reaches (a `harness flood-send` process in that host's namespace and \
cgroup, sendmmsg on AF_PACKET) unless --flood-pps caps it: \
`syn` (initial SYNs from random spoofed sources of the client LAN and random ports), `nonsyn` (ACK, PSH+ACK, FIN+ACK \
of flows nobody opened), `malformed` (runts, truncated IPv4 headers, bad IHL/version/lengths/checksums/data offset, \
fragments, IPv6 and VLAN ethertypes). Spoofed sources are client-LAN addresses no node holds: the balancer's answers \
go back to the flood leg, whose kernel drops them. During each phase the other client hosts run loadgen at --rate; \
/stats (conntrack_entries) and VmRSS of the balancer are sampled every 250 ms. --repeat R runs R rounds (the \
phases alternating within each) and reports per phase the medians of the runs, and the worst run's table and RSS growth.\n\n\
Checks per flood: table never above --table-size (worst run), legit median reply rate at least 0.5 of the baseline's, \
RSS growth (worst run) at most the full table's memory + 16 MiB. Exit 0 whatever the verdict (1 with --strict when a check fails), 1 on errors, 2 on bad options, \
130 on Ctrl-C. The flood leg and the testbed are always removed. Needs root and release binaries.",
        after_help = "Example: harness flood --flood syn,nonsyn,malformed --seconds 10 --rate 500 --repeat 3\n\
Writes results/flood-<UTC time>/ (configs, logs, client results, stats/, table.txt, flood.json) unless --out-dir/--json say otherwise."
    )]
    Flood {
        /// Floods to run after the baseline, comma-separated, in order.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = harness::flood::FloodKind::ALL)]
        flood: Vec<harness::flood::FloodKind>,
        /// Seconds of legitimate load per phase (the flood starts 1 s earlier).
        #[arg(long, value_name = "S", default_value_t = 10.0)]
        seconds: f64,
        /// Legitimate connections per second, all legitimate clients together (open loop).
        #[arg(long, value_name = "R", default_value_t = 500.0)]
        rate: f64,
        /// Cap on flood frames per second (0: as fast as the sender goes).
        #[arg(long, value_name = "PPS", default_value_t = 0)]
        flood_pps: u64,
        /// The balancer's connection table capacity (table_size).
        #[arg(long, value_name = "N", default_value_t = 65536)]
        table_size: usize,
        /// The balancer's SYN_RECV timeout, seconds.
        #[arg(long, value_name = "S", default_value_t = balancer::conntrack::Timeouts::default().syn_recv)]
        syn_recv_timeout: u32,
        /// loadgen --timeout per operation, seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        timeout: f64,
        /// Testbed profile: unconstrained, paper, or a .toml/.json file.
        #[arg(long, default_value = "unconstrained")]
        profile: String,
        /// Rounds: every phase runs R times, the phases alternating within a round; the table shows medians.
        #[arg(long, value_name = "R", default_value_t = 1)]
        repeat: u32,
        #[command(flatten)]
        record: RecordArgs,
    },
    /// Internal: send one flood on the flood leg of the namespace it runs in, until SIGTERM or
    /// --seconds, then write what was sent to OUT (`harness flood` starts it in the flooding host).
    #[command(hide = true)]
    FloodSend {
        /// The flood.
        #[arg(long, value_enum)]
        kind: harness::flood::FloodKind,
        /// JSON file of the flood's target (MACs, VIP, port, spoofed sources).
        #[arg(long, value_name = "FILE")]
        target: PathBuf,
        /// Seed of the frame sequence.
        #[arg(long)]
        seed: u64,
        /// Cap on frames per second (0: as fast as the kernel takes them).
        #[arg(long, value_name = "PPS", default_value_t = 0)]
        flood_pps: u64,
        /// Longest time to send, seconds.
        #[arg(long, value_name = "S")]
        seconds: f64,
        /// Where the JSON report goes.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The paper's Table I matrix with rate sweeps: every configuration at
    /// every rate, repeated, interleaved; results.json, CSVs, Figures 4-7
    /// and REPORT.md in the result directory, updated after every point.
    #[command(
        long_about = "The paper's Table I matrix with rate sweeps, Figures 4-7 and a report.\n\n\
Configurations: 1lb-bi-nat, 1lb-bi-dr, 1lb-nat, 2lb-bi-nat, 2lb-bi-dr, 2lb-nat (topologies 1lb-1rs, 1lb-1rs-dr, \
2lb-2rs, 2lb-2rs-dr). Default rates come from the profile's capacities: from half the plain knee to 1.5 times the \
bi-active knee (paper: 200..1200 req/s with 1 LB, 400..2400 with 2). Points are interleaved: for each repetition, \
for each rate index, every configuration, in an order rotated at each step. Each point gets a fresh testbed, \
fresh servers and balancers, a warm-up at the lowest rate, then the measured load from 3 client hosts \
(--client i/3). After every point, results.json (complete points only) and every CSV, figure and REPORT.md \
are rewritten atomically. Ctrl-C or a failed point: the testbed is torn down, everything measured so far is \
kept, exit 130 or 1; --resume DIR measures what is missing. Bad input: one line, exit 2, nothing created.",
        after_help = "Examples:\n  harness reproduce --quick\n  harness reproduce --configs 1lb-bi-nat,1lb-nat --rates 200,400,800 --repeat 2 --duration 5s\n  harness reproduce --resume results/reproduce-20261129T190000Z"
    )]
    Reproduce {
        /// At most ~5 minutes: 4 rates per configuration, 1 repetition, 6 s points.
        #[arg(long, conflicts_with = "resume")]
        quick: bool,
        /// Configurations, comma-separated [default: all six].
        #[arg(long, value_name = "LIST", conflicts_with = "resume")]
        configs: Option<String>,
        /// Offered request rates (req/s, all clients together), increasing,
        /// comma-separated, for every configuration [default: from the profile].
        #[arg(long, value_name = "LIST", conflicts_with = "resume")]
        rates: Option<String>,
        /// Repetitions of every point [default: 3; --quick: 1].
        #[arg(long, value_name = "R", conflicts_with = "resume")]
        repeat: Option<u32>,
        /// Measured load per point, e.g. 10s [default: 10s; --quick: 6s].
        #[arg(long, value_name = "D", value_parser = loadgen::cli::parse_duration, conflicts_with = "resume")]
        duration: Option<std::time::Duration>,
        /// Built-in profile or a .toml/.json file.
        #[arg(long, short, default_value = "paper", conflicts_with = "resume")]
        profile: String,
        /// Load generator: this project's loadgen or the paper's httperf (three processes).
        #[arg(long, value_enum, default_value = "loadgen", conflicts_with = "resume")]
        generator: harness::sweep::Generator,
        /// Result directory [default: results/reproduce-<UTC time>].
        #[arg(long, value_name = "DIR", conflicts_with = "resume")]
        out_dir: Option<PathBuf>,
        /// Finish an interrupted run: measure only its missing points.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Directory holding loadgen, realserver and balancer [default: the harness's own directory].
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Run a command inside a node's namespace (and cgroup); exits with its code.
    Exec {
        /// Node name (client1, router, lb1, rs1, ... or `sw` for the switch).
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

/// `on` / `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Forwarding method flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// LVS-NAT (topologies 1lb-1rs, 2lb-2rs).
    Nat,
    /// LVS-DR (topologies 1lb-1rs-dr, 2lb-2rs-dr).
    Dr,
}

/// Options shared by `run` and `demo`: one experiment point.
#[derive(Args, Debug, Clone)]
struct PointArgs {
    /// Built-in topology (1lb-1rs, 2lb-2rs, 1lb-1rs-dr, 2lb-2rs-dr) or a .toml/.json file.
    #[arg(long, short, default_value = "1lb-1rs")]
    topology: String,
    /// Built-in profile (unconstrained, paper) or a .toml/.json file
    /// [default: run: unconstrained; demo: paper].
    #[arg(long, short)]
    profile: Option<String>,
    /// Forwarding to the real servers [default: what the topology is built for].
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// Balancer scheduler: rr, wrr, lc, wlc, sh, mh.
    #[arg(long, default_value = "rr")]
    scheduler: String,
    /// Total offered connection rate of all clients together, per second
    /// (each of K clients offers RATE/K) [demo default: 600].
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Closed loop instead of --rate: N keep-alive connections in all (split over the clients),
    /// each held for the whole --duration and issuing requests back to back.
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// How long the clients offer load, e.g. 10s, 500ms, 2m [demo default: 10s].
    #[arg(long, value_name = "D", value_parser = loadgen::cli::parse_duration, conflicts_with = "num_conns")]
    duration: Option<std::time::Duration>,
    /// Total connections (split over the clients) instead of a duration.
    #[arg(long, value_name = "N")]
    num_conns: Option<u64>,
    /// Client hosts to use [default: all client hosts of the topology].
    #[arg(long, value_name = "K")]
    clients: Option<usize>,
    /// loadgen --timeout per operation, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Worker threads of every web server (the paper's machines had one CPU).
    #[arg(long, value_name = "N", default_value_t = 1)]
    server_threads: u32,
    /// Worker threads of each loadgen.
    #[arg(long, value_name = "N", default_value_t = 1)]
    client_threads: u32,
    /// Directory holding loadgen, realserver and balancer [default: the harness's own directory].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Run directory for configs, logs and results [default: results/run-<UTC time>].
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// The demo's default load: see the `paper` profile's calibration notes.
const DEMO_RATE: f64 = 600.0;
/// The demo's default duration (two httperf reply-rate samples).
const DEMO_DURATION_S: f64 = 10.0;

fn point_options(
    a: PointArgs,
    bi_active: bool,
    demo: bool,
    verbose: bool,
) -> Result<RunOptions, String> {
    let topology = Topology::load(&a.topology).map_err(|e| e.to_string())?;
    let default_profile = if demo { "paper" } else { "unconstrained" };
    let profile = Profile::load(a.profile.as_deref().unwrap_or(default_profile))
        .map_err(|e| e.to_string())?;
    let method = match a.method {
        Some(MethodArg::Nat) => Method::Nat,
        Some(MethodArg::Dr) => Method::Dr,
        None => RunSpec::natural_method(&topology),
    };
    let (rate, stop) = match (a.rate, a.duration, a.num_conns) {
        (r, _, Some(n)) => (r, Stop::NumConns(n)),
        (r, Some(d), None) => (r, Stop::DurationS(d.as_secs_f64())),
        (r, None, None) if demo => (r, Stop::DurationS(DEMO_DURATION_S)),
        _ => return Err(
            "give the load: --rate R --duration D, --concurrency N --duration D, or --num-conns N"
                .into(),
        ),
    };
    let rate = if demo && a.concurrency.is_none() {
        rate.or(Some(DEMO_RATE))
    } else {
        rate
    };
    let n_clients = topology
        .nodes
        .iter()
        .filter(|n| n.role == harness::topology::Role::Client)
        .count();
    let spec = RunSpec {
        topology,
        profile,
        bi_active,
        method,
        scheduler: a.scheduler,
        rate,
        concurrency: a.concurrency,
        stop,
        clients: a.clients.unwrap_or(n_clients),
        timeout_s: a.timeout,
        server_threads: a.server_threads,
        client_threads: a.client_threads,
        // The demo is the paper's comparison, which had no health checks: at
        // 600 conn/s the lone real server of bi-active off is overloaded,
        // fails 200 ms checks and would be withdrawn (15 % errors measured).
        health_checks: !demo,
    };
    spec.validate().map_err(|e| e.to_string())?;
    Ok(RunOptions {
        spec,
        bin_dir: a.bin_dir.unwrap_or_else(runner::default_bin_dir),
        out_dir: a
            .out_dir
            .unwrap_or_else(|| runner::default_out_dir(if demo { "demo" } else { "run" })),
        json: None,
        keep_up: false,
        verbose,
        state_dir: PathBuf::from(STATE_DIR),
        faults: Vec::new(),
        down: Vec::new(),
    })
}

/// Parses `--fault` and `--down` and checks the schedule against the
/// topology and the run length.
fn fault_options(
    opts: &mut RunOptions,
    faults: &[String],
    down: &[String],
) -> Result<(), harness::fault::FaultError> {
    let t = &opts.spec.topology;
    let down = down
        .iter()
        .map(|d| harness::fault::parse_down(d, t))
        .collect::<Result<Vec<_>, _>>()?;
    let faults = faults
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<harness::fault::Fault>, _>>()?;
    let duration_ms = match opts.spec.stop {
        Stop::DurationS(d) => Some((d * 1000.0) as u64),
        Stop::NumConns(_) => None,
    };
    opts.faults = harness::fault::check_schedule(&faults, &down, t, duration_ms)?;
    opts.down = down;
    Ok(())
}

fn run_failed(e: RunError) -> ExitCode {
    match e {
        RunError::Interrupted => {
            eprintln!("harness: interrupted; every process was stopped");
            ExitCode::from(130)
        }
        e => fail(e),
    }
}

/// `harness timeline RESULT`: bad input (no such file, not a run record, no
/// timeline) exits 2, a failed write 1.
fn redraw_timeline(result: &Path) -> ExitCode {
    let file = if result.is_dir() {
        result.join("result.json")
    } else {
        result.to_path_buf()
    };
    let record: harness::experiment::RunRecord = match std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            return bad_input(format!(
                "{}: expected the result.json of `harness run`: {e}",
                file.display()
            ))
        }
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    match runner::timeline_figure(&record, &file.display().to_string(), dir) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e @ reports::timeline::TimelineError::NoTimeline { .. }) => bad_input(e),
        Err(e) => fail(e),
    }
}

/// Bad input: one line, exit 2, nothing started.
fn bad_input(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("harness: {e}");
    ExitCode::from(2)
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("harness: {e}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = Path::new(STATE_DIR);
    let needs_root = match &cli.cmd {
        Cmd::Up { dry_run, .. } | Cmd::Down { dry_run } => !dry_run,
        // `run` checks its input first (exit 2 without root too), then privileges.
        Cmd::Run { .. } => false,
        Cmd::Exec { .. }
        | Cmd::RouterWatch { .. }
        | Cmd::FloodSend { .. }
        | Cmd::Demo { .. }
        | Cmd::BenchBalancer { .. }
        | Cmd::Reproduce { .. } => true,
        // `flood` checks its options first (exit 2 without root too), then privileges.
        Cmd::Status | Cmd::Timeline { .. } | Cmd::Flood { .. } => false,
    };
    if needs_root && !is_privileged() {
        eprintln!("{NEED_ROOT}");
        return ExitCode::from(1);
    }
    match cli.cmd {
        Cmd::Up {
            topology,
            profile,
            dry_run,
        } => up(&topology, &profile, dry_run, cli.verbose, dir),
        Cmd::Down { dry_run: true } => {
            let inv = discover(CgroupFlavor::detect().ok().as_ref());
            print!(
                "{}",
                render_script(
                    &format!("harness down: removes {}", describe(&inv)),
                    &plan_down(&inv)
                )
            );
            ExitCode::SUCCESS
        }
        Cmd::Down { dry_run: false } => match testbed::down(dir, cli.verbose) {
            Ok(inv) if inv.is_empty() => {
                println!("nothing to remove (no `{PREFIX}*` namespaces, links or cgroups)");
                ExitCode::SUCCESS
            }
            Ok(inv) => {
                println!("removed {}", describe(&inv));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Status => {
            print!("{}", status::render(dir));
            ExitCode::SUCCESS
        }
        Cmd::Timeline { result } => redraw_timeline(&result),
        Cmd::FloodSend {
            kind,
            target,
            seed,
            flood_pps,
            seconds,
            out,
        } => {
            let Ok(run_for) = Duration::try_from_secs_f64(seconds) else {
                eprintln!("harness: --seconds {seconds}: expected a duration in seconds");
                return ExitCode::from(2);
            };
            let stop = signal::catch_interrupts();
            let r = harness::flood_run::send_to_file(
                kind, &target, seed, flood_pps, run_for, &out, stop,
            );
            match r {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!("flood-send: {e:#}")),
            }
        }
        Cmd::RouterWatch { ifaces, vip, out } => {
            let stop = signal::catch_interrupts();
            match harness::capture::watch(&ifaces, vip, &out, stop) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!("router-watch: {e:#}")),
            }
        }
        Cmd::Run {
            point,
            bi_active,
            json,
            keep_up,
            faults,
            down,
        } => {
            let mut opts = match point_options(point, bi_active == OnOff::On, false, cli.verbose) {
                Ok(o) => o,
                Err(e) => return bad_input(e),
            };
            opts.json = json;
            opts.keep_up = keep_up;
            if let Err(e) = fault_options(&mut opts, &faults, &down) {
                return bad_input(e);
            }
            if !is_privileged() {
                eprintln!("{NEED_ROOT}");
                return ExitCode::from(1);
            }
            match runner::run(&opts) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => run_failed(e),
            }
        }
        Cmd::Demo { point } => {
            let opts = match point_options(point, true, true, cli.verbose) {
                Ok(o) => o,
                Err(e) => return bad_input(e),
            };
            match runner::demo(&opts) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => run_failed(e),
            }
        }
        Cmd::BenchBalancer {
            seconds,
            repeat,
            concurrency,
            targets,
            timeout,
            server_threads,
            record,
        } => {
            let opts = BenchOptions {
                spec: BenchSpec {
                    seconds,
                    repeat,
                    concurrency,
                    targets,
                    timeout_s: timeout,
                    server_threads,
                },
                paths: record.paths("bench-balancer", cli.verbose),
            };
            match bench_run::bench(&opts) {
                Ok(rec) => {
                    let failed: Vec<&str> = rec
                        .checks
                        .iter()
                        .filter(|c| c.pass == Some(false))
                        .map(|c| c.name.as_str())
                        .collect();
                    strict_exit(record.strict, &failed)
                }
                Err(e) => run_failed(e),
            }
        }
        Cmd::Flood {
            flood,
            seconds,
            rate,
            flood_pps,
            table_size,
            syn_recv_timeout,
            timeout,
            profile,
            repeat,
            record,
        } => {
            let spec = harness::flood::FloodSpec {
                floods: flood,
                seconds,
                rate,
                flood_pps,
                table_size,
                syn_recv_timeout_s: syn_recv_timeout,
                timeout_s: timeout,
                repeat,
            };
            let bad = spec.validate().map_err(|e| e.to_string()).and_then(|_| {
                Profile::load(&profile)
                    .map(|_| ())
                    .map_err(|e| format!("--profile {profile}: {e}"))
            });
            if let Err(e) = bad {
                // Bad input: one line, exit 2, nothing started.
                eprintln!("harness: {e}");
                return ExitCode::from(2);
            }
            if !is_privileged() {
                eprintln!("{NEED_ROOT}");
                return ExitCode::from(1);
            }
            let opts = harness::flood_run::FloodOptions {
                spec,
                profile,
                paths: record.paths("flood", cli.verbose),
            };
            match harness::flood_run::flood(&opts) {
                Ok(rec) => {
                    let failed: Vec<&str> = rec
                        .checks
                        .iter()
                        .filter(|c| !c.pass)
                        .map(|c| c.name.as_str())
                        .collect();
                    strict_exit(record.strict, &failed)
                }
                Err(e) => run_failed(e),
            }
        }
        Cmd::Reproduce {
            quick,
            configs,
            rates,
            repeat,
            duration,
            profile,
            generator,
            out_dir,
            resume,
            bin_dir,
        } => {
            let opts = ReproduceOptions {
                sweep: SweepArgs {
                    configs,
                    rates,
                    repeat,
                    duration_s: duration.map(|d| d.as_secs_f64()),
                    quick,
                },
                generator,
                profile,
                out_dir,
                resume,
                bin_dir: bin_dir.unwrap_or_else(runner::default_bin_dir),
                state_dir: PathBuf::from(STATE_DIR),
                verbose: cli.verbose,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            reproduce_cmd(&opts)
        }
        Cmd::Exec { node, cmd } => {
            let tb = match Testbed::attach(dir) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            match tb.exec(&node, &cmd) {
                Ok(st) => exit_code_of(st),
                Err(e) => fail(e),
            }
        }
    }
}

fn reproduce_cmd(opts: &ReproduceOptions) -> ExitCode {
    let failed = |e: ReproduceError| match e {
        ReproduceError::Input(m) => {
            eprintln!("harness reproduce: {m}");
            ExitCode::from(2)
        }
        ReproduceError::Run(e) => run_failed(e),
    };
    match reproduce::prepare(opts) {
        Ok(p) => match reproduce::run(p, opts) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}

fn exit_code_of(st: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)),
        _ => ExitCode::from(1),
    }
}

fn up(topology: &str, profile: &str, dry_run: bool, verbose: bool, dir: &Path) -> ExitCode {
    let t = match Topology::load(topology) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let p = match Profile::load(profile) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if dry_run {
        let flavor = CgroupFlavor::detect().ok();
        return match plan_up(&t, &p, flavor.as_ref()) {
            Ok(steps) => {
                let title = format!(
                    "harness up --topology {} --profile {} ({} steps)\n# Note: `harness up` first removes every `{PREFIX}*` leftover, as `harness down` does.",
                    t.name,
                    p.name,
                    steps.len()
                );
                print!("{}", render_script(&title, &steps));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let start = Instant::now();
    let flag = signal::catch_interrupts();
    let fail_at_step = match std::env::var(FAIL_AT_STEP_ENV) {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return fail(format!(
                    "{FAIL_AT_STEP_ENV}={v}: expected a step number (1-based)"
                ))
            }
        },
        Err(_) => None,
    };
    let r = Testbed::up(
        t,
        p,
        dir,
        flag,
        UpOptions {
            verbose,
            fail_at_step,
        },
    );
    signal::default_interrupts();
    match r {
        Ok(tb) => {
            let st = tb.state();
            let nodes: Vec<&str> = st.topology.nodes.iter().map(|n| n.name.as_str()).collect();
            println!(
                "testbed `{}` (profile `{}`) is up in {} ms: nodes {} (+ switch {PREFIX}sw); VIP {}",
                st.topology.name,
                st.profile.name,
                start.elapsed().as_millis(),
                nodes.join(" "),
                st.topology.vip
            );
            ExitCode::SUCCESS
        }
        Err(
            e @ Error::UpAborted {
                interrupted: true, ..
            },
        ) => {
            eprintln!("harness: {e}");
            ExitCode::from(130)
        }
        Err(e) => fail(e),
    }
}
