//! One experiment point as data (pure, no I/O): what to start where (the
//! realservers, each balancer with its TOML configuration, one loadgen per
//! client host), and how to present what came back (the "served by node"
//! table, the demo's side-by-side table, the JSON result). `run` does the
//! I/O.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use balancer::config::{
    CheckKind, Cluster, Config, Forwarding, HealthSettings, KeySource, LocalServer, RealServer,
};
use balancer::ownership::Member;
use balancer::sched::SchedulerKind;
use serde::{Deserialize, Serialize};

use crate::plan::{front_iface, VIP_TUN};
use crate::profile::Profile;
use crate::topology::{Node, Role, Topology};

/// Port every web server (local and real) and the VIP serve on.
pub const SERVICE_PORT: u16 = 80;
/// Port of each balancer's control endpoint (on its front address).
pub const CONTROL_PORT: u16 = 9100;
/// Schema identifier of the JSON result.
pub const RESULT_SCHEMA: &str = "harness-run/1";

/// How the balancer reaches its real servers: the one `Method` of the
/// workspace, shared with the reports ("nat" / "dr" in every file).
pub use reports::model::Method;

/// The balancer's forwarding setting for `method`.
pub fn forwarding(method: Method) -> Forwarding {
    match method {
        Method::Nat => Forwarding::Nat,
        Method::Dr => Forwarding::Dr,
    }
}

/// When the load stops.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this many seconds.
    DurationS(f64),
    /// After this many connections in total (split over the clients).
    NumConns(u64),
}

/// Everything that defines one experiment point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The cluster.
    pub topology: Topology,
    /// Node capacities.
    pub profile: Profile,
    /// Whether each LB's own server takes flows.
    pub bi_active: bool,
    /// Forwarding to real servers.
    pub method: Method,
    /// Balancer scheduler name.
    pub scheduler: String,
    /// Total offered connection rate (all clients together), per second;
    /// `None` with `NumConns`: sequential connections per client.
    pub rate: Option<f64>,
    /// Closed loop instead of `rate`: this many keep-alive connections in
    /// all (split over the clients), each held for the whole run and
    /// issuing requests back to back (what a join must not break).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// When to stop.
    pub stop: Stop,
    /// Number of client hosts used (the first `clients` of the topology).
    pub clients: usize,
    /// loadgen `--timeout`, seconds.
    pub timeout_s: f64,
    /// realserver `--threads` (the paper's machines had one CPU).
    pub server_threads: u32,
    /// loadgen `--threads` per client.
    pub client_threads: u32,
    /// Whether the balancers health-check their targets (HTTP GET /stats). Off for the Table I
    /// sweeps and bench-balancer: a server past saturation misses its 200 ms checks, and a
    /// balancer whose targets all look down withdraws from ownership, which measures the
    /// checks, not the cluster. On for `harness run`, whose faults need them.
    #[serde(default = "health_checks_default")]
    pub health_checks: bool,
}

/// Records written before the field existed ran with health checks.
fn health_checks_default() -> bool {
    true
}

/// Why a run cannot be planned.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A web server to start: `realserver --listen .. --name ..` in `node`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerPlan {
    /// Node it runs in.
    pub node: String,
    /// Role of that node (balancer: it is the LB's local server).
    pub role: Role,
    /// `--name` (`rsJ`, `lbN-local`).
    pub name: String,
    /// Every `--listen` address; the first is where `/stats` is fetched.
    pub listen: Vec<SocketAddrV4>,
}

impl ServerPlan {
    /// realserver arguments (after the program path).
    pub fn args(&self, threads: u32, work_us: Option<u32>) -> Vec<String> {
        let mut v = Vec::new();
        for l in &self.listen {
            v.push("--listen".into());
            v.push(l.to_string());
        }
        v.extend([
            "--name".into(),
            self.name.clone(),
            "--threads".into(),
            threads.to_string(),
        ]);
        if let Some(w) = work_us.filter(|w| *w > 0) {
            v.push("--work-us".into());
            v.push(w.to_string());
        }
        v
    }
}

/// A balancer to start in `node`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalancerPlan {
    /// Node it runs in.
    pub node: String,
    /// Cluster member id (1-based position among the balancers).
    pub node_id: u32,
    /// Where its control endpoint listens (front address, [`CONTROL_PORT`]).
    pub control: SocketAddrV4,
    /// Nodes of its sub-cluster's real servers, in config order.
    pub real_servers: Vec<String>,
    /// Its configuration, validated by the balancer's own rules.
    pub config: Config,
    /// `config` as the TOML file `balancer run --config` reads (the
    /// balancer's serializer wrote it).
    pub config_toml: String,
    /// Send past the qdisc (`--qdisc-bypass on`): only where the profile
    /// emulates no link rate, since bypassing would skip its tbf shaping.
    pub qdisc_bypass: bool,
}

impl BalancerPlan {
    /// balancer arguments (after the program path) given the config file.
    pub fn args(&self, config: &Path) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--control".into(),
            self.control.to_string(),
            "--tun".into(),
            VIP_TUN.into(),
        ];
        if self.qdisc_bypass {
            v.extend(["--qdisc-bypass".into(), "on".into()]);
        }
        v
    }
}

fn first_addr(n: &Node, seg: &str) -> Option<Ipv4Addr> {
    n.ifaces
        .iter()
        .find(|f| f.segment == seg)
        .and_then(|f| f.addrs.first())
        .map(|a| a.addr.addr)
}

/// A balancer's front interface (on the VIP's segment), its address, and
/// its back interface (the other one).
fn lb_interfaces<'a>(
    t: &'a Topology,
    n: &'a Node,
) -> Result<
    (
        &'a crate::topology::Iface,
        Ipv4Addr,
        &'a crate::topology::Iface,
    ),
    PlanError,
> {
    let front = front_iface(t, n).ok_or_else(|| {
        PlanError(format!(
            "balancer {} has no interface on the VIP's segment",
            n.name
        ))
    })?;
    let front_addr = front
        .addrs
        .first()
        .map(|a| a.addr.addr)
        .ok_or_else(|| PlanError(format!("{}:{} has no address", n.name, front.name)))?;
    let back = n
        .ifaces
        .iter()
        .find(|f| f.name != front.name)
        .ok_or_else(|| {
            PlanError(format!(
                "balancer {} needs a second interface (back) towards its real servers",
                n.name
            ))
        })?;
    Ok((front, front_addr, back))
}

/// The heartbeat key of the balancers this harness process starts: 32
/// bytes from the kernel's random source, hex, drawn once per process (the
/// config files in the run directory carry it; nothing else does).
pub fn run_key() -> Result<&'static str, PlanError> {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k);
    }
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| PlanError(format!("cannot draw a cluster key from /dev/urandom: {e}")))?;
    Ok(KEY.get_or_init(|| b.iter().map(|x| format!("{x:02x}")).collect()))
}

impl RunSpec {
    /// The method the topology is built for: DR when real servers hold the VIP.
    pub fn natural_method(t: &Topology) -> Method {
        if t.nodes
            .iter()
            .any(|n| n.role == Role::Realserver && t.holds_vip(n))
        {
            Method::Dr
        } else {
            Method::Nat
        }
    }

    /// Client host names used, in order.
    pub fn client_nodes(&self) -> Vec<String> {
        self.topology
            .nodes
            .iter()
            .filter(|n| n.role == Role::Client)
            .take(self.clients)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Checks the combination; the message says what is wrong and what to do.
    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError(m));
        let t = &self.topology;
        let n_clients = t.nodes.iter().filter(|n| n.role == Role::Client).count();
        if self.clients == 0 || self.clients > n_clients {
            return bad(format!(
                "--clients {}: topology `{}` has {n_clients} client hosts; expected 1..={n_clients}",
                self.clients, t.name
            ));
        }
        if self.scheduler.parse::<SchedulerKind>().is_err() {
            return bad(format!(
                "--scheduler {}: expected one of {}",
                self.scheduler,
                SchedulerKind::NAMES
            ));
        }
        self.validate_concurrency()?;
        match (self.rate, self.stop) {
            (Some(r), _) if !(r.is_finite() && r > 0.0) => {
                return bad(format!(
                    "--rate {r}: expected a positive number of connections per second"
                ))
            }
            (None, Stop::DurationS(_)) if self.concurrency.is_none() => {
                return bad(
                    "--duration needs --rate R (open loop) or --concurrency N (closed loop)".into(),
                )
            }
            (_, Stop::DurationS(d)) if !(d.is_finite() && d > 0.0 && d <= 3600.0) => {
                return bad(format!(
                    "--duration {d}s: expected more than 0 and at most 1 hour"
                ))
            }
            (_, Stop::NumConns(n)) if n < self.clients as u64 => {
                return bad(format!(
                    "--num-conns {n}: expected at least one connection per client ({})",
                    self.clients
                ))
            }
            _ => {}
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 600.0) {
            return bad(format!(
                "--timeout {}: expected 0 < seconds <= 600",
                self.timeout_s
            ));
        }
        if self.server_threads == 0 || self.client_threads == 0 {
            return bad("thread counts must be at least 1".into());
        }
        let natural = Self::natural_method(t);
        if natural != self.method {
            return bad(format!(
                "--method {} does not fit topology `{}`, which is built for {} ({}); use --method {} or {}",
                self.method.as_str(),
                t.name,
                natural.as_str(),
                match natural {
                    Method::Dr => "its real servers hold the VIP on lo",
                    Method::Nat => "its real servers route replies through their balancer",
                },
                natural.as_str(),
                match self.method {
                    Method::Dr => "a DR topology such as `1lb-1rs-dr`",
                    Method::Nat => "a NAT topology such as `1lb-1rs`",
                }
            ));
        }
        if !t.nodes.iter().any(|n| n.role == Role::Balancer) {
            return bad(format!("topology `{}` has no balancer", t.name));
        }
        // The key only fills the configuration's field here: validation stays pure.
        for p in self.balancers_keyed("validation-only-cluster-key")? {
            if p.real_servers.is_empty() && !self.bi_active {
                return bad(format!(
                    "balancer {} has no real server and --bi-active is off: nobody would serve",
                    p.node
                ));
            }
        }
        Ok(())
    }

    /// Closed loop: exactly one of `--rate` and `--concurrency`, at least one
    /// connection per client, and a duration (the connections are held to
    /// its end; `--num-conns` would end each after one call).
    fn validate_concurrency(&self) -> Result<(), PlanError> {
        let Some(c) = self.concurrency else {
            return Ok(());
        };
        let bad = |m: String| Err(PlanError(m));
        if self.rate.is_some() {
            return bad("--concurrency and --rate both given: choose closed loop (--concurrency N keep-alive connections) or open loop (--rate R new connections per second)".into());
        }
        if (c as usize) < self.clients {
            return bad(format!(
                "--concurrency {c}: expected at least one connection per client ({}; --clients K uses fewer client hosts)",
                self.clients
            ));
        }
        if matches!(self.stop, Stop::NumConns(_)) {
            return bad(format!(
                "--concurrency {c} with --num-conns: closed loop holds its connections for a --duration; give --duration D instead"
            ));
        }
        Ok(())
    }

    /// Whether the load is closed loop (`--concurrency`).
    pub fn closed_loop(&self) -> bool {
        self.concurrency.is_some()
    }

    /// The web servers: one per real server (its own address, plus the VIP
    /// in DR) and one local server per balancer (VIP and front address).
    pub fn servers(&self) -> Vec<ServerPlan> {
        let t = &self.topology;
        let vip = SocketAddrV4::new(t.vip, SERVICE_PORT);
        let mut v = Vec::new();
        for n in &t.nodes {
            match n.role {
                Role::Balancer => {
                    let Some(front) = front_iface(t, n).and_then(|f| f.addrs.first()) else {
                        continue;
                    };
                    v.push(ServerPlan {
                        node: n.name.clone(),
                        role: n.role,
                        name: format!("{}-local", n.name),
                        listen: vec![SocketAddrV4::new(front.addr.addr, SERVICE_PORT), vip],
                    });
                }
                Role::Realserver => {
                    let Some(a) = n.ifaces.first().and_then(|f| f.addrs.first()) else {
                        continue;
                    };
                    let mut listen = vec![SocketAddrV4::new(a.addr.addr, SERVICE_PORT)];
                    if t.holds_vip(n) {
                        listen.push(vip);
                    }
                    v.push(ServerPlan {
                        node: n.name.clone(),
                        role: n.role,
                        name: n.name.clone(),
                        listen,
                    });
                }
                Role::Client | Role::Router => {}
            }
        }
        v
    }

    /// One plan per balancer: interfaces, VIP, local server, the real
    /// servers on its `back` segment, the cluster members with this
    /// process's heartbeat key ([`run_key`]), and HTTP health checks.
    pub fn balancers(&self) -> Result<Vec<BalancerPlan>, PlanError> {
        self.balancers_keyed(run_key()?)
    }

    /// [`RunSpec::balancers`] with a given cluster key (tests pin it).
    pub fn balancers_keyed(&self, key: &str) -> Result<Vec<BalancerPlan>, PlanError> {
        let t = &self.topology;
        let lbs: Vec<&Node> = t
            .nodes
            .iter()
            .filter(|n| n.role == Role::Balancer)
            .collect();
        let members: Vec<Member> = (1..=lbs.len() as u32)
            .map(|id| Member { id, weight: 1 })
            .collect();
        let scheduler: SchedulerKind = self.scheduler.parse().map_err(|_| {
            PlanError(format!(
                "--scheduler {}: expected one of {}",
                self.scheduler,
                SchedulerKind::NAMES
            ))
        })?;
        let mut out = Vec::new();
        for (i, n) in lbs.iter().enumerate() {
            let (front, front_addr, back) = lb_interfaces(t, n)?;
            let reals: Vec<(&Node, Ipv4Addr)> = t
                .nodes
                .iter()
                .filter(|r| r.role == Role::Realserver)
                .filter_map(|r| first_addr(r, &back.segment).map(|a| (r, a)))
                .collect();
            let node_id = (i + 1) as u32;
            let config = Config {
                front_interface: front.name.clone(),
                back_interface: back.name.clone(),
                vip: SocketAddrV4::new(t.vip, SERVICE_PORT),
                bi_active: self.bi_active,
                local: LocalServer {
                    addr: front_addr,
                    port: SERVICE_PORT,
                    weight: 1,
                },
                real_servers: reals
                    .iter()
                    .map(|(_, a)| RealServer {
                        addr: *a,
                        port: SERVICE_PORT,
                        weight: 1,
                        mac: None,
                    })
                    .collect(),
                scheduler,
                forwarding: forwarding(self.method),
                timeouts: Default::default(),
                table_size: balancer::config::DEFAULT_TABLE_SIZE,
                verify_checksums: true,
                cluster: Cluster {
                    node_id,
                    members: members.clone(),
                    key: (members.len() > 1).then(|| KeySource::Inline(key.to_string())),
                    // One seed for the whole cluster, as secret as the key.
                    hash_seed: balancer::hash::seed_from_key(key.as_bytes()),
                    ..Cluster::default()
                },
                health: if self.health_checks {
                    HealthSettings::with_check(CheckKind::Http {
                        // realserver answers /stats without counting it, so the
                        // checks leave the "served by node" table alone.
                        path: "/stats".into(),
                        expect_status: 200,
                    })
                } else {
                    HealthSettings::default()
                },
            };
            config.validate().map_err(|e| {
                PlanError(format!(
                    "balancer {} of topology `{}`: its configuration is invalid: {e}",
                    n.name, t.name
                ))
            })?;
            out.push(BalancerPlan {
                node: n.name.clone(),
                node_id,
                control: SocketAddrV4::new(front_addr, CONTROL_PORT),
                real_servers: reals.iter().map(|(r, _)| r.name.clone()).collect(),
                config_toml: format!(
                    "# balancer of {} ({}), written by `harness run`\n{}",
                    n.name,
                    t.name,
                    config.to_toml_string()
                ),
                config,
                qdisc_bypass: self.profile.link_mbit.is_none(),
            });
        }
        Ok(out)
    }

    /// loadgen arguments (after the program path) for client `i` of the
    /// run's clients, writing its result to `json`.
    pub fn client_args(&self, i: usize, json: &Path) -> Vec<String> {
        let k = self.clients.max(1);
        let mut v = vec![
            format!("http://{}:{SERVICE_PORT}/", self.topology.vip),
            "--client".into(),
            format!("{i}/{k}"),
        ];
        if let Some(r) = self.rate {
            v.push("--rate".into());
            v.push(fmt_num(r / k as f64));
        }
        if let Some(c) = self.concurrency {
            v.push("--concurrency".into());
            v.push(share(u64::from(c), k, i).to_string());
        }
        match self.stop {
            Stop::DurationS(d) => {
                v.push("--duration".into());
                v.push(format!("{}s", fmt_num(d)));
            }
            Stop::NumConns(n) => {
                v.push("--num-conns".into());
                v.push(share(n, k, i).to_string());
            }
        }
        v.extend([
            "--timeout".into(),
            fmt_num(self.timeout_s),
            "--threads".into(),
            self.client_threads.to_string(),
            "--no-progress".into(),
            "--json".into(),
            json.display().to_string(),
        ]);
        v
    }

    /// One line describing the point, for progress and tables.
    pub fn describe(&self) -> String {
        let load = match (self.rate, self.stop) {
            (None, Stop::DurationS(d)) if self.concurrency.is_some() => format!(
                "closed loop, {} keep-alive conns for {} s",
                self.concurrency.unwrap_or(0),
                fmt_num(d)
            ),
            (Some(r), Stop::DurationS(d)) => format!("{} conn/s for {} s", fmt_num(r), fmt_num(d)),
            (Some(r), Stop::NumConns(n)) => format!("{n} conns at {} conn/s", fmt_num(r)),
            (None, Stop::NumConns(n)) => format!("{n} sequential conns"),
            (None, Stop::DurationS(d)) => format!("for {} s", fmt_num(d)),
        };
        format!(
            "topology {}, profile {}, bi-active {}, method {}, scheduler {}, {load}, {} client(s)",
            self.topology.name,
            self.profile.name,
            if self.bi_active { "on" } else { "off" },
            self.method.as_str(),
            self.scheduler,
            self.clients
        )
    }
}

/// Client `i`'s part of `n` split over `k` (the first `n % k` get one more).
pub fn share(n: u64, k: usize, i: usize) -> u64 {
    let k = k.max(1) as u64;
    n / k + u64::from((i as u64) < n % k)
}

/// A number without a trailing `.0` or float noise (`100`, `33.333333`).
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Requests one web server answered during the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Served {
    /// Node it runs in.
    pub node: String,
    /// Its `--name`.
    pub name: String,
    /// Role of the node.
    pub role: Role,
    /// `requests_total` from its `/stats` (`/stats` itself excluded).
    pub requests: u64,
    /// The raw `/stats` JSON.
    pub stats: serde_json::Value,
}

/// Renders the "served by node" table: requests per server, share, and the
/// sum against the replies the clients counted.
pub fn served_table(served: &[Served], replies: u64) -> String {
    let total: u64 = served.iter().map(|s| s.requests).sum();
    let mut out = String::from("Served by node (realserver /stats, requests answered):\n");
    let _ = writeln!(
        out,
        "  {:<12} {:<11} {:>10} {:>7}",
        "server", "node role", "requests", "share"
    );
    for s in served {
        let _ = writeln!(
            out,
            "  {:<12} {:<11} {:>10} {:>6.1}%",
            s.name,
            s.role.as_str(),
            s.requests,
            pct(s.requests, total)
        );
    }
    let diff = total as i128 - replies as i128;
    let _ = writeln!(
        out,
        "  {:<12} {:<11} {:>10}  (clients got {replies} replies; served - replies = {diff})",
        "total", "", total
    );
    out
}

fn pct(a: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        a as f64 * 100.0 / total as f64
    }
}

/// What a benchmark's record (`bench-balancer`, `flood`) opens with,
/// flattened into it (the JSON keeps these as top-level fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordHead {
    /// The record's schema identifier.
    pub schema: String,
    /// Topology name.
    pub topology: String,
    /// Profile name.
    pub profile: String,
    /// Versions of tools, kernel and source.
    pub versions: Versions,
    /// Wall clock at the start, ms since the epoch.
    pub started_unix_ms: u64,
    /// Wall clock at the end (of the last run so far).
    pub finished_unix_ms: u64,
}

/// Tool and system versions recorded with every result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// This harness.
    pub harness: String,
    /// `loadgen --version`.
    pub loadgen: Option<String>,
    /// `realserver --version`.
    pub realserver: Option<String>,
    /// `balancer --version`.
    pub balancer: Option<String>,
    /// `git rev-parse HEAD` of the working directory, if any.
    pub git_commit: Option<String>,
    /// `uname -r`.
    pub kernel: Option<String>,
}

/// A balancer's control-endpoint snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalancerStats {
    /// Node it runs in.
    pub node: String,
    /// The raw `/stats` JSON (`null` if it could not be fetched).
    pub stats: serde_json::Value,
    /// Why it could not be fetched, if so.
    pub error: Option<String>,
}

/// The JSON result of one `harness run` (self-describing: everything
/// needed to rerun it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Always [`RESULT_SCHEMA`].
    pub schema: String,
    /// The point's definition (topology and profile included in full).
    pub spec: RunSpec,
    /// Binaries' directory.
    pub bin_dir: String,
    /// Versions of tools, kernel and source.
    pub versions: Versions,
    /// Wall clock at start / end, ms since the epoch.
    pub started_unix_ms: u64,
    /// Wall clock at the end.
    pub finished_unix_ms: u64,
    /// The merged loadgen result of every client.
    pub loadgen: loadgen::result::RunResult,
    /// Requests each web server answered.
    pub served: Vec<Served>,
    /// Sum of `served`.
    pub served_total: u64,
    /// Every balancer's stats.
    pub balancers: Vec<BalancerStats>,
    /// Connections by start time, 100-ms bins (the merged clients' timeline).
    #[serde(default)]
    pub timeline: Vec<loadgen::result::TimelineBin>,
    /// The faults injected, in order (`--fault`).
    #[serde(default)]
    pub faults: Vec<crate::fault::FaultRecord>,
    /// Per fault: when the other balancers' membership changed and from
    /// when on every new connection succeeded.
    #[serde(default)]
    pub failover: Vec<crate::failover::FaultOutcome>,
    /// Closed loop (`--concurrency`): what became of the long-lived connections.
    #[serde(default)]
    pub held: Option<crate::failover::HeldConnections>,
    /// Client SYNs and their distinct SYN-ACKs counted at the router
    /// (double answers); `None` without a router or when the capture failed.
    #[serde(default)]
    pub router: Option<crate::synack::RouterCheck>,
}

impl RunRecord {
    /// Requests answered by the balancers' own (local) servers.
    pub fn served_by_balancers(&self) -> u64 {
        self.served
            .iter()
            .filter(|s| s.role == Role::Balancer)
            .map(|s| s.requests)
            .sum()
    }
}

/// The demo's side-by-side table of two points (bi-active on, then off).
pub fn side_by_side(on: &RunRecord, off: &RunRecord) -> String {
    let row = |out: &mut String, what: &str, a: String, b: String| {
        let _ = writeln!(out, "  {what:<34} {a:>16} {b:>16}");
    };
    let mut out = String::new();
    let _ = writeln!(out, "bi-active on vs off ({}):", {
        let mut s = on.spec.clone();
        s.bi_active = true;
        s.describe().replace("bi-active on, ", "")
    });
    row(&mut out, "", "bi-active on".into(), "bi-active off".into());
    let f = |r: &RunRecord| r.loadgen.summary.clone();
    let (a, b) = (f(on), f(off));
    let offered = |r: &RunRecord| r.spec.rate.map_or("-".into(), |x| format!("{x:.1}"));
    row(&mut out, "offered rate (conn/s)", offered(on), offered(off));
    row(
        &mut out,
        "request rate (req/s, over test time)",
        format!("{:.1}", a.request_rate),
        format!("{:.1}", b.request_rate),
    );
    row(
        &mut out,
        "reply rate avg (replies/s)",
        format!("{:.1}", a.reply_rate.avg),
        format!("{:.1}", b.reply_rate.avg),
    );
    row(
        &mut out,
        "replies",
        a.replies.to_string(),
        b.replies.to_string(),
    );
    row(
        &mut out,
        "errors",
        a.errors_total.to_string(),
        b.errors_total.to_string(),
    );
    row(
        &mut out,
        "error rate (% of connections)",
        format!("{:.2}", a.error_rate_percent),
        format!("{:.2}", b.error_rate_percent),
    );
    row(
        &mut out,
        "latency p50 / p99 (ms)",
        format!("{:.1} / {:.1}", a.latency_ms.p50, a.latency_ms.p99),
        format!("{:.1} / {:.1}", b.latency_ms.p50, b.latency_ms.p99),
    );
    let split = |r: &RunRecord| {
        r.served
            .iter()
            .map(|s| format!("{} {:.0}%", s.name, pct(s.requests, r.served_total)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  served by (on):  {}", split(on));
    let _ = writeln!(out, "  served by (off): {}", split(off));
    if b.reply_rate.avg > 0.0 {
        let _ = writeln!(
            out,
            "  reply rate, on vs off: {:+.1} % (the paper reports +21.6 %)",
            (a.reply_rate.avg / b.reply_rate.avg - 1.0) * 100.0
        );
    }
    out
}

/// `results/run-YYYYMMDDTHHMMSSZ` for a Unix time in seconds (UTC).
pub fn run_dir_name(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "run-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(topology: &str, bi: bool) -> RunSpec {
        let t = Topology::builtin(topology).unwrap();
        RunSpec {
            method: RunSpec::natural_method(&t),
            topology: t,
            profile: Profile::builtin("unconstrained").unwrap(),
            bi_active: bi,
            scheduler: "rr".into(),
            rate: Some(300.0),
            concurrency: None,
            stop: Stop::DurationS(3.0),
            clients: 3,
            timeout_s: 5.0,
            server_threads: 1,
            client_threads: 1,
            health_checks: true,
        }
    }

    #[test]
    fn health_checks_follow_the_spec() {
        let mut s = spec("1lb-1rs", true);
        let on = s.balancers_keyed("k").unwrap();
        assert!(
            on[0].config_toml.contains("/stats"),
            "{}",
            on[0].config_toml
        );
        s.health_checks = false;
        let off = s.balancers_keyed("k").unwrap();
        assert!(
            !off[0].config_toml.contains("/stats"),
            "{}",
            off[0].config_toml
        );
    }

    #[test]
    fn servers_of_nat_and_dr() {
        let s = spec("2lb-2rs", true);
        let v = s.servers();
        let names: Vec<_> = v.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["lb1-local", "lb2-local", "rs1", "rs2"]);
        assert_eq!(
            v[1].args(1, None).join(" "),
            "--listen 198.18.1.12:80 --listen 198.18.1.100:80 --name lb2-local --threads 1"
        );
        assert_eq!(
            v[2].args(2, Some(500)).join(" "),
            "--listen 198.18.11.11:80 --name rs1 --threads 2 --work-us 500"
        );
        assert_eq!(v[3].listen, ["198.18.12.11:80".parse().unwrap()]);
        let dr = spec("1lb-1rs-dr", true).servers();
        assert_eq!(
            dr[1].listen,
            [
                "198.18.11.11:80".parse().unwrap(),
                "198.18.1.100:80".parse().unwrap()
            ]
        );
    }

    #[test]
    fn balancer_configs_per_sub_cluster() {
        let s = spec("2lb-2rs", false);
        let b = s.balancers().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].node, "lb2");
        assert_eq!(b[1].node_id, 2);
        assert_eq!(b[1].real_servers, ["rs2"]);
        assert_eq!(b[1].control.to_string(), "198.18.1.12:9100");
        let c = &b[1].config;
        assert_eq!(c.scheduler, SchedulerKind::Rr);
        assert_eq!(c.forwarding, Forwarding::Nat);
        assert!(!c.bi_active);
        assert_eq!(
            (c.front_interface.as_str(), c.back_interface.as_str()),
            ("front", "back")
        );
        assert_eq!(c.vip.to_string(), "198.18.1.100:80");
        assert_eq!(c.local.addr.to_string(), "198.18.1.12");
        assert_eq!(c.real_servers.len(), 1);
        assert_eq!(c.real_servers[0].endpoint().to_string(), "198.18.12.11:80");
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(
            c.cluster.members,
            [Member { id: 1, weight: 1 }, Member { id: 2, weight: 1 }]
        );
        assert!(matches!(c.health.check, CheckKind::Http { .. }));
        // The file is the balancer's own serialisation of that value.
        let toml = &b[1].config_toml;
        assert_eq!(&Config::from_toml_str(toml).unwrap(), c);
        // Every run of one process shares one random key; one balancer alone needs none.
        let again = s.balancers().unwrap();
        assert_eq!(again[0].config.cluster.key, again[1].config.cluster.key);
        // ... and one hash seed, written into every balancer's file.
        let seed = again[0].config.cluster.hash_seed;
        assert_ne!(seed, 0);
        assert_eq!(again[1].config.cluster.hash_seed, seed);
        assert!(again[1]
            .config_toml
            .contains(&format!("hash_seed = \"{seed:#018x}\"")));
        assert!(
            matches!(&again[0].config.cluster.key, Some(KeySource::Inline(k)) if k.len() == 64)
        );
        let one = spec("1lb-1rs", true).balancers().unwrap();
        assert_eq!(one[0].config.cluster.key, None);
        assert_eq!(
            b[0].args(Path::new("/r/lb1.toml")).join(" "),
            "run --config /r/lb1.toml --control 198.18.1.11:9100 --tun vip0 --qdisc-bypass on"
        );
        // A profile that shapes the links with tbf keeps the qdisc in the path.
        let mut shaped = spec("1lb-1rs", true);
        shaped.profile = Profile::builtin("paper").unwrap();
        assert!(!shaped.balancers().unwrap()[0]
            .args(Path::new("/r/lb1.toml"))
            .contains(&"--qdisc-bypass".to_string()));
        let dr = spec("1lb-1rs-dr", true).balancers().unwrap();
        assert_eq!(dr[0].config.forwarding, Forwarding::Dr);
        assert!(dr[0].config.bi_active);
    }

    #[test]
    fn client_args_split_the_load() {
        let s = spec("1lb-1rs", true);
        assert_eq!(
            s.client_args(2, Path::new("/r/c2.json")).join(" "),
            "http://198.18.1.100:80/ --client 2/3 --rate 100 --duration 3s --timeout 5 --threads 1 --no-progress --json /r/c2.json"
        );
        let mut s = spec("1lb-1rs", true);
        s.stop = Stop::NumConns(10);
        s.rate = None;
        let n: Vec<String> = (0..3)
            .map(|i| s.client_args(i, Path::new("x")).join(" "))
            .collect();
        assert!(n[0].contains("--num-conns 4") && !n[0].contains("--rate"));
        assert!(n[1].contains("--num-conns 3") && n[2].contains("--num-conns 3"));
        s.rate = Some(1000.0);
        assert!(s
            .client_args(0, Path::new("x"))
            .join(" ")
            .contains("--rate 333.333333"));
        assert_eq!((0..7).map(|i| share(100, 7, i)).sum::<u64>(), 100);
    }

    #[test]
    fn closed_loop_args_and_old_records() {
        let mut s = spec("2lb-2rs", true);
        s.rate = None;
        s.concurrency = Some(24);
        s.stop = Stop::DurationS(12.0);
        s.validate().unwrap();
        let a: Vec<String> = (0..3)
            .map(|i| s.client_args(i, Path::new("x")).join(" "))
            .collect();
        assert!(
            a[0].contains("--concurrency 8 --duration 12s") && !a[0].contains("--rate"),
            "{}",
            a[0]
        );
        assert!(s
            .describe()
            .contains("closed loop, 24 keep-alive conns for 12 s"));
        // A record written before the field existed reads as open loop.
        let mut v = serde_json::to_value(spec("1lb-1rs", true)).unwrap();
        v.as_object_mut().unwrap().remove("concurrency");
        let old: RunSpec = serde_json::from_value(v).unwrap();
        assert_eq!(old.concurrency, None);
    }

    #[test]
    fn validation_messages() {
        let check = |f: &dyn Fn(&mut RunSpec), needle: &str| {
            let mut s = spec("1lb-1rs", true);
            f(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "`{needle}` not in: {e}");
        };
        spec("1lb-1rs", true).validate().unwrap();
        spec("2lb-2rs", false).validate().unwrap();
        spec("1lb-1rs-dr", false).validate().unwrap();
        check(&|s| s.clients = 4, "expected 1..=3");
        check(&|s| s.clients = 0, "expected 1..=3");
        check(&|s| s.scheduler = "fifo".into(), "expected one of rr, wrr");
        check(&|s| s.rate = Some(0.0), "--rate 0");
        check(&|s| s.rate = None, "--duration needs --rate");
        check(
            &|s| s.concurrency = Some(24),
            "--concurrency and --rate both given",
        );
        let closed = |s: &mut RunSpec| {
            s.rate = None;
            s.concurrency = Some(24);
        };
        check(
            &|s| {
                closed(s);
                s.concurrency = Some(2);
            },
            "--concurrency 2: expected at least one connection per client (3",
        );
        check(
            &|s| {
                closed(s);
                s.concurrency = Some(0);
            },
            "--concurrency 0",
        );
        check(
            &|s| {
                closed(s);
                s.stop = Stop::NumConns(100);
            },
            "give --duration D instead",
        );
        check(&|s| s.stop = Stop::DurationS(0.0), "--duration 0s");
        check(
            &|s| s.stop = Stop::NumConns(2),
            "at least one connection per client",
        );
        check(
            &|s| s.method = Method::Dr,
            "use --method nat or a DR topology",
        );
        check(&|s| s.timeout_s = -1.0, "--timeout -1");
        let mut s = spec("1lb-1rs-dr", true);
        s.method = Method::Nat;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("hold the VIP on lo"), "{e}");
    }

    #[test]
    fn served_table_adds_up() {
        let mk = |name: &str, role, requests| Served {
            node: name.into(),
            name: name.into(),
            role,
            requests,
            stats: serde_json::Value::Null,
        };
        let t = served_table(
            &[
                mk("lb1-local", Role::Balancer, 450),
                mk("rs1", Role::Realserver, 150),
            ],
            599,
        );
        assert!(
            t.contains("lb1-local    balancer           450   75.0%"),
            "{t}"
        );
        assert!(
            t.contains("rs1          realserver         150   25.0%"),
            "{t}"
        );
        assert!(
            t.contains("600  (clients got 599 replies; served - replies = 1)"),
            "{t}"
        );
        assert!(served_table(&[], 0).contains("served - replies = 0"));
    }

    #[test]
    fn numbers_and_dir_names() {
        assert_eq!(fmt_num(100.0), "100");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(1.0 / 3.0), "0.333333");
        assert_eq!(run_dir_name(0), "run-19700101T000000Z");
        assert_eq!(run_dir_name(1_795_000_000), "run-20261118T110640Z");
        assert_eq!(run_dir_name(951_782_400), "run-20000229T000000Z");
    }
}
