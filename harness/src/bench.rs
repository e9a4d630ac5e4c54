//! `harness bench-balancer` as data (pure, no I/O): the four forwarding
//! paths it compares, the namespace commands that switch the testbed from
//! one to the next and back, the HAProxy and nftables configurations, the
//! parsers of the counters it reads (`ip -j -s link`, `/proc/PID/stat`,
//! `/proc/stat`), the per-run sample, medians, the table and the JSON
//! record. `bench_run` does the I/O.
//!
//! What is measured, per run: closed-loop connection-per-request load
//! (`loadgen --concurrency N --num-calls 1`) from every client host for
//! S seconds; the reply rate (replies / load duration), the packets the
//! balancer node received on its two data NICs (`front` + `back`) per
//! second of load, the CPU time of the forwarding process (balancer or
//! HAProxy) per such packet, and two host-wide figures per reply (softirq
//! time and all busy CPU time from `/proc/stat`), which are the only honest
//! CPU figures for the in-kernel path (softirq time is not per-process).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::experiment::{fmt_num, share, RecordHead, SERVICE_PORT};
use crate::net::{multicast_mac, Ipv4Net};
use crate::plan::{bridge_name, front_iface, vip_drop_rule, NFT_TABLE, OFFLOADS_OFF};
use crate::repeat::{by_config, median_of, spread_of};
use crate::topology::{Role, Topology};

/// Schema identifier of the JSON record.
pub const BENCH_SCHEMA: &str = "harness-bench-balancer/1";
/// The testbed every configuration runs in.
pub const BENCH_TOPOLOGY: &str = "1lb-1rs";
/// Its profile (no CPU quotas, no link shaping: the host is the limit).
pub const BENCH_PROFILE: &str = "unconstrained";
/// nftables table (family `ip`) holding the DNAT of configuration `nftables`.
pub const NAT_TABLE: &str = "balbench";
/// Switch-side end of the router's temporary leg on the sub-cluster.
pub const DIRECT_PORT: &str = "bal-bench-rt";
/// Router-side end of that leg.
pub const DIRECT_IFACE: &str = "bench0";
/// Target: balancer ÷ HAProxy reply rate at least this.
pub const TARGET_VS_HAPROXY: f64 = 1.0;
/// Target: balancer ÷ nftables reply rate at least this.
pub const TARGET_VS_NFTABLES: f64 = 0.5;

/// One forwarding path between the clients and the real server.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The user-space balancer, LVS-NAT, bi-active off (every flow to rs1).
    Balancer,
    /// The LB node's kernel forwarding with an nftables DNAT to rs1.
    Nftables,
    /// HAProxy, TCP mode, one thread, on the VIP in the LB node.
    Haproxy,
    /// No balancer: clients connect to rs1's own address through the router.
    Direct,
    /// The user-space balancer with `--early-drop off`: its node's kernel
    /// takes every handled frame through IP input to its own drop (the
    /// fallback path, and the A/B of the early drop).
    LateDrop,
    /// The user-space balancer with `--io mmsg` (recvmmsg into its own
    /// buffers instead of the default receive rings: the fallback path, and
    /// the A/B of the rings).
    Mmsg,
}

impl Target {
    /// Every target, in table order.
    pub const ALL: [Target; 6] = [
        Target::Balancer,
        Target::Nftables,
        Target::Haproxy,
        Target::Direct,
        Target::LateDrop,
        Target::Mmsg,
    ];

    /// Lowercase name (`balancer`, `nftables`, `haproxy`, `direct`, `late-drop`, `mmsg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Balancer => "balancer",
            Target::Nftables => "nftables",
            Target::Haproxy => "haproxy",
            Target::Direct => "direct",
            Target::LateDrop => "late-drop",
            Target::Mmsg => "mmsg",
        }
    }

    /// One line saying what the path is.
    pub fn describe(self) -> &'static str {
        match self {
            Target::Balancer => "user-space balancer, LVS-NAT, bi-active off",
            Target::Nftables => "LB kernel forwarding + nftables DNAT (conntrack un-NATs replies)",
            Target::Haproxy => "HAProxy mode tcp, nbthread 1, on VIP:80 in the LB node",
            Target::Direct => "clients -> router -> rs1 address (LB bypassed)",
            Target::LateDrop => "balancer with --early-drop off (the LB kernel drops in IP input)",
            Target::Mmsg => "balancer with --io mmsg (recvmmsg instead of receive rings)",
        }
    }
}

/// The knobs of one benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSpec {
    /// Load duration of every run, seconds.
    pub seconds: f64,
    /// Runs per target (targets alternate within each round).
    pub repeat: u32,
    /// Closed-loop concurrency of all clients together.
    pub concurrency: u32,
    /// Which targets, in order.
    pub targets: Vec<Target>,
    /// loadgen `--timeout`, seconds.
    pub timeout_s: f64,
    /// realserver `--threads` of rs1.
    pub server_threads: u32,
}

/// Why a benchmark cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl BenchSpec {
    /// Checks the knobs; the message names the flag and what is expected.
    pub fn validate(&self, clients: usize) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError(m));
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 600.0) {
            return bad(format!(
                "--seconds {}: expected more than 0 and at most 600",
                self.seconds
            ));
        }
        crate::repeat::validate(self.repeat).map_err(BenchError)?;
        if (self.concurrency as usize) < clients || self.concurrency > 8_000 {
            return bad(format!(
                "--concurrency {}: expected {clients}..=8000 (HAProxy runs with maxconn 9000) (at least one connection per client host)",
                self.concurrency
            ));
        }
        if self.targets.is_empty() {
            return bad(
                "--targets: expected at least one of balancer, nftables, haproxy, direct".into(),
            );
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 60.0) {
            return bad(format!(
                "--timeout {}: expected 0 < seconds <= 60",
                self.timeout_s
            ));
        }
        if self.server_threads == 0 {
            return bad("--server-threads 0: expected at least 1".into());
        }
        Ok(())
    }
}

/// Names and addresses of the testbed the commands need, derived from the
/// topology (so nothing is hard-coded twice).
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The balancer node.
    pub lb: String,
    /// Its interface on the LB LAN.
    pub front: String,
    /// Its interface on the sub-cluster.
    pub back: String,
    /// The router node.
    pub router: String,
    /// The router's interface on the LB LAN (where the VIP neighbour lives).
    pub router_lan: String,
    /// The router's address on the client LAN (the clients' gateway).
    pub router_client_addr: Ipv4Addr,
    /// The real server node.
    pub rs: String,
    /// Its address.
    pub rs_addr: Ipv4Addr,
    /// The gateway rs1 normally routes clients through (the LB's back alias).
    pub rs_gateway: Ipv4Addr,
    /// The sub-cluster's bridge (in the switch namespace).
    pub sc_bridge: String,
    /// The sub-cluster subnet.
    pub sc_net: Ipv4Net,
    /// The router's temporary address on the sub-cluster (last host address).
    pub router_sc_addr: Ipv4Net,
    /// The client hosts.
    pub clients: Vec<String>,
    /// The client subnet.
    pub client_net: Ipv4Net,
}

impl Layout {
    /// Reads the layout of a one-balancer, one-real-server NAT topology.
    pub fn of(t: &Topology) -> Result<Layout, BenchError> {
        let err = |m: &str| BenchError(format!("topology `{}`: {m}", t.name));
        let lb = t
            .nodes
            .iter()
            .find(|n| n.role == Role::Balancer)
            .ok_or_else(|| err("no balancer node"))?;
        let front = front_iface(t, lb).ok_or_else(|| err("the balancer has no front interface"))?;
        let back = lb
            .ifaces
            .iter()
            .find(|f| f.name != front.name)
            .ok_or_else(|| err("the balancer has no back interface"))?;
        let sc = t
            .segments
            .iter()
            .find(|s| s.name == back.segment)
            .ok_or_else(|| err("the balancer's back segment is not declared"))?;
        let rs = t
            .nodes
            .iter()
            .find(|n| n.role == Role::Realserver && n.ifaces.iter().any(|f| f.segment == sc.name))
            .ok_or_else(|| err("no real server on the balancer's sub-cluster"))?;
        let rs_addr = rs
            .ifaces
            .iter()
            .find(|f| f.segment == sc.name)
            .and_then(|f| f.addrs.first())
            .map(|a| a.addr.addr)
            .ok_or_else(|| err("the real server has no address"))?;
        let clients: Vec<&crate::topology::Node> =
            t.nodes.iter().filter(|n| n.role == Role::Client).collect();
        let cli_seg = clients
            .first()
            .and_then(|c| c.ifaces.first())
            .map(|f| f.segment.clone())
            .ok_or_else(|| err("no client host"))?;
        let client_net = t
            .segments
            .iter()
            .find(|s| s.name == cli_seg)
            .map(|s| s.subnet.network())
            .ok_or_else(|| err("the client segment is not declared"))?;
        let rs_gateway = rs
            .routes
            .iter()
            .find(|r| r.to.network() == client_net)
            .map(|r| r.via)
            .ok_or_else(|| err("the real server has no route to the clients"))?;
        let router = t
            .nodes
            .iter()
            .find(|n| n.role == Role::Router)
            .ok_or_else(|| err("no router"))?;
        let vip_seg = t
            .vip_segment()
            .ok_or_else(|| err("no segment holds the VIP"))?;
        let router_lan = router
            .ifaces
            .iter()
            .find(|f| f.segment == vip_seg.name)
            .ok_or_else(|| err("the router has no leg on the LB LAN"))?;
        let router_client_addr = router
            .ifaces
            .iter()
            .find(|f| f.segment == cli_seg)
            .and_then(|f| f.addrs.first())
            .map(|a| a.addr.addr)
            .ok_or_else(|| err("the router has no address on the client LAN"))?;
        if router.ifaces.iter().any(|f| f.segment == sc.name) {
            return Err(err(
                "the router already has a leg on the sub-cluster (a DR topology); use 1lb-1rs",
            ));
        }
        let net = sc.subnet.network();
        let last = u32::from(net.addr) | !net.mask();
        let router_sc = Ipv4Addr::from(last.saturating_sub(1));
        if !net.contains(router_sc) || router_sc == rs_addr {
            return Err(err("the sub-cluster has no free last host address"));
        }
        Ok(Layout {
            vip: t.vip,
            lb: lb.name.clone(),
            front: front.name.clone(),
            back: back.name.clone(),
            router: router.name.clone(),
            router_lan: router_lan.name.clone(),
            router_client_addr,
            rs: rs.name.clone(),
            rs_addr,
            rs_gateway,
            sc_bridge: bridge_name(&sc.name),
            sc_net: net,
            router_sc_addr: Ipv4Net::new(router_sc, net.len),
            clients: clients.iter().map(|c| c.name.clone()).collect(),
            client_net,
        })
    }

    /// Where the clients send their requests for `target`.
    pub fn url(&self, target: Target) -> String {
        match target {
            Target::Direct => format!("http://{}:{SERVICE_PORT}/", self.rs_addr),
            _ => format!("http://{}:{SERVICE_PORT}/", self.vip),
        }
    }

    /// The address the clients connect to for `target`.
    pub fn dest(&self, target: Target) -> Ipv4Addr {
        match target {
            Target::Direct => self.rs_addr,
            _ => self.vip,
        }
    }
}

/// A command to run inside a node's namespace (`sw`: the switch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NsCmd {
    /// Node name.
    pub node: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Why, for progress and error messages.
    pub why: String,
}

pub(crate) fn cmd(node: &str, argv: &[&str], why: impl Into<String>) -> NsCmd {
    NsCmd {
        node: node.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        why: why.into(),
    }
}

/// The router's VIP neighbour entry pointing at `mac`.
fn vip_neigh(l: &Layout, mac: &str, why: &str) -> NsCmd {
    let vip = l.vip.to_string();
    cmd(
        &l.router,
        &[
            "ip",
            "neigh",
            "replace",
            &vip,
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            &l.router_lan,
        ],
        why,
    )
}

fn flush_prerouting(l: &Layout, why: &str) -> NsCmd {
    cmd(
        &l.lb,
        &["nft", "flush", "chain", "ip", NFT_TABLE, "prerouting"],
        why,
    )
}

fn restore_drop(l: &Layout) -> NsCmd {
    NsCmd {
        node: l.lb.clone(),
        argv: vip_drop_rule(&l.front, &l.vip.to_string()),
        why: "restore the drop of VIP packets arriving on front".into(),
    }
}

/// Commands that switch the testbed from its normal state to `target`'s.
/// `lb_front_mac` is the balancer's `front` MAC; `nft_file` holds
/// [`nft_ruleset`].
pub fn setup_steps(t: Target, l: &Layout, lb_front_mac: &str, nft_file: &Path) -> Vec<NsCmd> {
    // The LB kernel accepts TCP only in frames addressed to it (PACKET_HOST),
    // not in the multicast frames every balancer gets: point the router's
    // VIP neighbour at this LB's own MAC while the kernel path is measured.
    let unicast = || {
        vip_neigh(
            l,
            lb_front_mac,
            "VIP -> the LB's unicast MAC (its kernel drops TCP in multicast frames)",
        )
    };
    match t {
        Target::Balancer | Target::LateDrop | Target::Mmsg => vec![],
        Target::Nftables => vec![
            unicast(),
            flush_prerouting(l, "let VIP packets from front reach the kernel"),
            cmd(
                &l.lb,
                &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                "the LB kernel forwards (this configuration only)",
            ),
            cmd(
                &l.lb,
                &["nft", "-f", &nft_file.display().to_string()],
                "DNAT VIP:80 to the real server",
            ),
        ],
        Target::Haproxy => vec![
            unicast(),
            flush_prerouting(l, "let VIP packets from front reach HAProxy"),
        ],
        Target::Direct => {
            let mut v = vec![
                cmd(
                    "sw",
                    &[
                        "ip",
                        "link",
                        "add",
                        DIRECT_PORT,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        DIRECT_IFACE,
                        "netns",
                        &crate::plan::netns_name(&l.router),
                    ],
                    "temporary router leg on the sub-cluster",
                ),
                cmd(
                    "sw",
                    &[
                        "ip",
                        "link",
                        "set",
                        "dev",
                        DIRECT_PORT,
                        "master",
                        &l.sc_bridge,
                        "up",
                    ],
                    "plug it into the sub-cluster bridge",
                ),
            ];
            for (node, dev) in [("sw", DIRECT_PORT), (l.router.as_str(), DIRECT_IFACE)] {
                let mut argv = vec!["ethtool", "-K", dev];
                argv.extend_from_slice(OFFLOADS_OFF);
                v.push(cmd(node, &argv, "offloads off (as every testbed veth)"));
            }
            v.push(cmd(
                &l.router,
                &[
                    "ip",
                    "addr",
                    "add",
                    &l.router_sc_addr.to_string(),
                    "dev",
                    DIRECT_IFACE,
                ],
                "router address on the sub-cluster",
            ));
            v.push(cmd(
                &l.router,
                &["ip", "link", "set", "dev", DIRECT_IFACE, "up"],
                "leg up",
            ));
            v.push(cmd(
                &l.rs,
                &[
                    "ip",
                    "route",
                    "replace",
                    &l.client_net.to_string(),
                    "via",
                    &l.router_sc_addr.addr.to_string(),
                ],
                "real server answers clients through the router",
            ));
            for c in &l.clients {
                v.push(cmd(
                    c,
                    &[
                        "ip",
                        "route",
                        "replace",
                        &l.sc_net.to_string(),
                        "via",
                        &l.router_client_addr.to_string(),
                    ],
                    "clients reach the sub-cluster through the router",
                ));
            }
            v
        }
    }
}

/// Commands that bring the testbed back from `target`'s state to normal.
/// Each is run even if an earlier one failed (best effort).
pub fn teardown_steps(t: Target, l: &Layout) -> Vec<NsCmd> {
    let multicast = || {
        vip_neigh(
            l,
            &multicast_mac(l.vip),
            "VIP -> multicast MAC again (every LB receives it)",
        )
    };
    match t {
        Target::Balancer | Target::LateDrop | Target::Mmsg => vec![],
        Target::Nftables => vec![
            cmd(
                &l.lb,
                &["nft", "delete", "table", "ip", NAT_TABLE],
                "remove the DNAT",
            ),
            cmd(
                &l.lb,
                &["sysctl", "-qw", "net.ipv4.ip_forward=0"],
                "the LB kernel forwards nothing again",
            ),
            flush_prerouting(l, "reset the prerouting chain"),
            restore_drop(l),
            multicast(),
        ],
        Target::Haproxy => vec![
            flush_prerouting(l, "reset the prerouting chain"),
            restore_drop(l),
            multicast(),
        ],
        Target::Direct => {
            let mut v = vec![cmd(
                &l.rs,
                &[
                    "ip",
                    "route",
                    "replace",
                    &l.client_net.to_string(),
                    "via",
                    &l.rs_gateway.to_string(),
                ],
                "real server answers clients through its balancer again",
            )];
            for c in &l.clients {
                v.push(cmd(
                    c,
                    &["ip", "route", "del", &l.sc_net.to_string()],
                    "remove the clients' route to the sub-cluster",
                ));
            }
            v.push(cmd(
                "sw",
                &["ip", "link", "del", DIRECT_PORT],
                "remove the router's temporary leg",
            ));
            v
        }
    }
}

/// The nftables ruleset of target `nftables`: DNAT of new VIP:80 flows
/// arriving on `front` to the real server. Replies need no rule: conntrack
/// reverses the DNAT (their source becomes the VIP again), which is what
/// LVS-NAT does; the real server routes replies through the LB anyway.
pub fn nft_ruleset(l: &Layout) -> String {
    format!(
        "# bench-balancer: in-kernel NAT reference (LVS-NAT equivalent)\n\
         table ip {NAT_TABLE} {{\n\
         \tchain vip_dnat {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"{front}\" ip daddr {vip} tcp dport {SERVICE_PORT} counter dnat to {rs}:{SERVICE_PORT}\n\
         \t}}\n\
         }}\n",
        front = l.front,
        vip = l.vip,
        rs = l.rs_addr,
    )
}

/// The HAProxy configuration of target `haproxy`: TCP mode, one thread,
/// listening on VIP:80, one server (the real server), no logging.
pub fn haproxy_config(l: &Layout) -> String {
    format!(
        "# bench-balancer: HAProxy reference (TCP mode, one thread)\n\
         global\n\
         \tnbthread 1\n\
         \tmaxconn 9000\n\
         \n\
         defaults\n\
         \tmode tcp\n\
         \ttimeout connect 5s\n\
         \ttimeout client 30s\n\
         \ttimeout server 30s\n\
         \n\
         frontend vip\n\
         \tbind {vip}:{SERVICE_PORT}\n\
         \tdefault_backend rs\n\
         \n\
         backend rs\n\
         \tserver {name} {rs}:{SERVICE_PORT}\n",
        vip = l.vip,
        name = l.rs,
        rs = l.rs_addr,
    )
}

/// loadgen arguments (after the program path) for client `i` of `k`:
/// closed loop, one request per connection, for the run's duration.
pub fn client_args(spec: &BenchSpec, url: &str, i: usize, k: usize, json: &Path) -> Vec<String> {
    vec![
        url.to_string(),
        "--concurrency".into(),
        share(u64::from(spec.concurrency), k, i).to_string(),
        "--num-calls".into(),
        "1".into(),
        "--duration".into(),
        format!("{}s", fmt_num(spec.seconds)),
        "--timeout".into(),
        fmt_num(spec.timeout_s),
        "--threads".into(),
        "1".into(),
        "--client".into(),
        format!("{i}/{k}"),
        "--no-progress".into(),
        "--json".into(),
        json.display().to_string(),
    ]
}

/// Packet counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Parses `ip -j -s link show` into counters per interface name.
pub fn parse_link_stats(json: &str) -> Result<BTreeMap<String, LinkCounters>, String> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("`ip -j -s link` output is not JSON: {e}"))?;
    let arr = v
        .as_array()
        .ok_or("`ip -j -s link` output is not a JSON array")?;
    let mut out = BTreeMap::new();
    for l in arr {
        let Some(name) = l.get("ifname").and_then(|n| n.as_str()) else {
            return Err("`ip -j -s link`: an entry without `ifname`".into());
        };
        let get = |dir: &str| {
            l.get("stats64")
                .and_then(|s| s.get(dir))
                .and_then(|d| d.get("packets"))
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("`ip -j -s link`: {name} has no stats64.{dir}.packets"))
        };
        out.insert(
            name.to_string(),
            LinkCounters {
                rx_packets: get("rx")?,
                tx_packets: get("tx")?,
            },
        );
    }
    Ok(out)
}

/// The MAC address of `ifname` in `ip -j link show` output.
pub fn parse_link_mac(json: &str, ifname: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("`ip -j link` output is not JSON: {e}"))?;
    v.as_array()
        .into_iter()
        .flatten()
        .find(|l| l.get("ifname").and_then(|n| n.as_str()) == Some(ifname))
        .and_then(|l| l.get("address"))
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("`ip -j link`: no interface `{ifname}` with an address"))
}

/// CPU time of one process (all threads), in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcCpu {
    /// User mode (`utime`).
    pub user: u64,
    /// Kernel mode (`stime`: system calls, and softirq work the kernel
    /// happened to run in this process's context).
    pub sys: u64,
}

/// utime and stime (clock ticks, all threads) from `/proc/PID/stat`.
pub fn parse_proc_cpu(stat: &str) -> Result<ProcCpu, String> {
    // The command name (field 2) may contain spaces and parentheses: split
    // after the last `)`; the rest starts with field 3 (state).
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("/proc/PID/stat has no `)` after the command name")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize, what: &str| {
        f.get(i)
            .and_then(|x| x.parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/PID/stat: field {what} missing or not a number"))
    };
    Ok(ProcCpu {
        user: num(11, "14 (utime)")?,
        sys: num(12, "15 (stime)")?,
    })
}

/// Host-wide CPU time from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCpu {
    /// Time in softirq (packet processing of every namespace).
    pub softirq: u64,
    /// Time not idle and not waiting for I/O.
    pub busy: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_host_cpu(stat: &str) -> Result<HostCpu, String> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat has no aggregate `cpu` line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("/proc/stat `cpu` line: {e}"))?;
    if f.len() < 7 {
        return Err(format!(
            "/proc/stat `cpu` line has {} fields, expected at least 7",
            f.len()
        ));
    }
    // user nice system idle iowait irq softirq [steal guest guest_nice];
    // guest time is already included in user.
    let total: u64 = f.iter().take(8).sum();
    Ok(HostCpu {
        softirq: f[6],
        busy: total - f[3] - f[4],
    })
}

/// The counters read just before and just after a run's load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The balancer node's interfaces.
    pub lb_links: BTreeMap<String, LinkCounters>,
    /// CPU ticks of the forwarding process, if there is one.
    pub proc: Option<ProcCpu>,
    /// Host-wide CPU.
    pub host: HostCpu,
}

/// One run of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The target.
    pub target: Target,
    /// Round (0-based).
    pub round: u32,
    /// Connections attempted by all clients.
    pub conns: u64,
    /// Replies received.
    pub replies: u64,
    /// Errors (httperf classes, all clients).
    pub errors: u64,
    /// Errors per connection attempted, percent.
    pub error_percent: f64,
    /// Load duration (loadgen's test duration), seconds.
    pub duration_s: f64,
    /// Replies per second of load.
    pub reply_rate: f64,
    /// Packets the LB node received on front + back during the run.
    pub lb_packets: u64,
    /// `lb_packets` per second of load.
    pub lb_pps: f64,
    /// CPU seconds of the forwarding process (balancer or HAProxy).
    pub proc_cpu_s: Option<f64>,
    /// Process CPU microseconds per LB packet.
    pub proc_us_per_packet: Option<f64>,
    /// Share of the process CPU spent in the kernel (stime / (utime + stime)).
    pub proc_sys_share: Option<f64>,
    /// Host-wide softirq seconds during the run.
    pub host_softirq_s: f64,
    /// Host-wide busy CPU seconds during the run.
    pub host_busy_s: f64,
    /// Requests the real server says it answered (its `/stats`).
    pub served_by_rs: Option<u64>,
}

/// Loadgen's merged figures of one run (`bench-balancer`'s runs and
/// `flood`'s legitimate clients).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadFigures {
    /// Connections attempted.
    pub conns: u64,
    /// Replies.
    pub replies: u64,
    /// Errors.
    pub errors: u64,
    /// Load duration, seconds.
    pub duration_s: f64,
}

impl LoadFigures {
    /// The figures of a merged loadgen result.
    pub fn of(r: &loadgen::result::RunResult) -> LoadFigures {
        LoadFigures {
            conns: r.counts.conns_attempted,
            replies: r.replies(),
            errors: r.errors_total(),
            duration_s: r.summary.test_duration_s,
        }
    }

    /// `n` per connection attempted, percent (0 without connections).
    fn per_conn_percent(&self, n: u64) -> f64 {
        if self.conns > 0 {
            n as f64 * 100.0 / self.conns as f64
        } else {
            0.0
        }
    }

    /// Errors per connection attempted, percent.
    pub fn error_percent(&self) -> f64 {
        self.per_conn_percent(self.errors)
    }

    /// Replies per connection attempted, percent.
    pub fn success_percent(&self) -> f64 {
        self.per_conn_percent(self.replies)
    }
}

impl Sample {
    /// Computes a sample from the load figures and the two snapshots
    /// (`clk_tck`: ticks per second of `/proc` CPU times).
    #[allow(clippy::too_many_arguments)]
    pub fn compute(
        target: Target,
        round: u32,
        l: &Layout,
        load: LoadFigures,
        before: &Snapshot,
        after: &Snapshot,
        clk_tck: f64,
        served_by_rs: Option<u64>,
    ) -> Sample {
        let rx = |s: &Snapshot| -> u64 {
            [&l.front, &l.back]
                .iter()
                .filter_map(|d| s.lb_links.get(*d))
                .map(|c| c.rx_packets)
                .sum()
        };
        let lb_packets = rx(after).saturating_sub(rx(before));
        let per_s = |x: f64| {
            if load.duration_s > 0.0 {
                x / load.duration_s
            } else {
                0.0
            }
        };
        let (proc_cpu_s, proc_sys_share) = match (before.proc, after.proc) {
            (Some(a), Some(b)) => {
                let user = b.user.saturating_sub(a.user);
                let sys = b.sys.saturating_sub(a.sys);
                let total = user + sys;
                (
                    Some(total as f64 / clk_tck),
                    (total > 0).then(|| sys as f64 / total as f64),
                )
            }
            _ => (None, None),
        };
        let proc_us_per_packet = proc_cpu_s
            .filter(|_| lb_packets > 0)
            .map(|s| s * 1e6 / lb_packets as f64);
        Sample {
            target,
            round,
            conns: load.conns,
            replies: load.replies,
            errors: load.errors,
            error_percent: load.error_percent(),
            duration_s: load.duration_s,
            reply_rate: per_s(load.replies as f64),
            lb_packets,
            lb_pps: per_s(lb_packets as f64),
            proc_cpu_s,
            proc_us_per_packet,
            proc_sys_share,
            host_softirq_s: after.host.softirq.saturating_sub(before.host.softirq) as f64 / clk_tck,
            host_busy_s: after.host.busy.saturating_sub(before.host.busy) as f64 / clk_tck,
            served_by_rs,
        }
    }
}

/// Medians of one target's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// The target.
    pub target: Target,
    /// Number of runs.
    pub runs: usize,
    /// Median reply rate, replies/s.
    pub reply_rate: f64,
    /// Lowest and highest reply rate of the runs.
    pub reply_rate_range: (f64, f64),
    /// Median error percentage.
    pub error_percent: f64,
    /// Median packets/s received by the LB node (front + back).
    pub lb_pps: f64,
    /// Median LB packets per reply.
    pub lb_packets_per_reply: Option<f64>,
    /// Median process CPU µs per LB packet (balancer, HAProxy; else none).
    pub proc_us_per_packet: Option<f64>,
    /// Median share of that CPU spent in the kernel.
    pub proc_sys_share: Option<f64>,
    /// Median host-wide softirq µs per reply.
    pub host_softirq_us_per_reply: Option<f64>,
    /// Median host-wide busy CPU µs per reply.
    pub host_busy_us_per_reply: Option<f64>,
    /// Median reply rate ÷ the balancer's median reply rate.
    pub vs_balancer: Option<f64>,
}

/// Summarises the samples per target, in `targets` order.
pub fn summarize(samples: &[Sample], targets: &[Target]) -> Vec<TargetSummary> {
    let per_reply = |x: &Sample, v: f64| (x.replies > 0).then(|| v / x.replies as f64);
    let mut out: Vec<TargetSummary> = by_config(samples, targets, |x| x.target)
        .into_iter()
        .map(|(t, s)| {
            let rate = spread_of(&s, |x| Some(x.reply_rate));
            TargetSummary {
                target: t,
                runs: s.len(),
                reply_rate: rate.map_or(0.0, |r| r.median),
                reply_rate_range: rate.map_or((0.0, 0.0), |r| (r.min, r.max)),
                error_percent: median_of(&s, |x| Some(x.error_percent)).unwrap_or(0.0),
                lb_pps: median_of(&s, |x| Some(x.lb_pps)).unwrap_or(0.0),
                lb_packets_per_reply: median_of(&s, |x| per_reply(x, x.lb_packets as f64)),
                proc_us_per_packet: median_of(&s, |x| x.proc_us_per_packet),
                proc_sys_share: median_of(&s, |x| x.proc_sys_share),
                host_softirq_us_per_reply: median_of(&s, |x| per_reply(x, x.host_softirq_s * 1e6)),
                host_busy_us_per_reply: median_of(&s, |x| per_reply(x, x.host_busy_s * 1e6)),
                vs_balancer: None,
            }
        })
        .collect();
    let base = out
        .iter()
        .find(|s| s.target == Target::Balancer)
        .map(|s| s.reply_rate)
        .filter(|r| *r > 0.0);
    for s in &mut out {
        s.vs_balancer = base.map(|b| s.reply_rate / b);
    }
    out
}

/// One of the two targets of the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is compared, e.g. `balancer / haproxy`.
    pub name: String,
    /// The measured ratio of median reply rates (none if a side is missing).
    pub ratio: Option<f64>,
    /// The required minimum.
    pub min: f64,
    /// Whether it holds (none if not measured).
    pub pass: Option<bool>,
}

/// The targets: balancer ÷ HAProxy ≥ 1.0 and balancer ÷ nftables ≥ 0.5.
pub fn checks(summary: &[TargetSummary]) -> Vec<Check> {
    let rate = |t: Target| summary.iter().find(|s| s.target == t).map(|s| s.reply_rate);
    [
        (Target::Haproxy, TARGET_VS_HAPROXY),
        (Target::Nftables, TARGET_VS_NFTABLES),
    ]
    .into_iter()
    .map(|(other, min)| {
        let ratio = match (rate(Target::Balancer), rate(other)) {
            (Some(b), Some(o)) if o > 0.0 => Some(b / o),
            _ => None,
        };
        Check {
            name: format!("balancer / {}", other.as_str()),
            ratio,
            min,
            pass: ratio.map(|r| r >= min),
        }
    })
    .collect()
}

fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.prec$}"))
}

/// The result table and the targets, as printed.
pub fn render_table(spec: &BenchSpec, summary: &[TargetSummary], checks: &[Check]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench-balancer: topology {BENCH_TOPOLOGY}, profile {BENCH_PROFILE}; closed loop, one request per connection, \
         concurrency {} over the client hosts, {} s x {} run(s) per config (alternating), medians",
        spec.concurrency,
        fmt_num(spec.seconds),
        spec.repeat
    );
    let _ = writeln!(
        out,
        "  {:<12} {:>10} {:>15} {:>6} {:>9} {:>7} {:>16} {:>12} {:>9} {:>7}",
        "config",
        "replies/s",
        "(min..max)",
        "err %",
        "LB pkt/s",
        "pkt/rep",
        "proc µs/pk (sys)",
        "softirq µs/r",
        "host µs/r",
        "vs (1)"
    );
    for (i, s) in summary.iter().enumerate() {
        let proc = match s.target {
            Target::Nftables => "n/a (kern)".to_string(),
            Target::Direct => "-".to_string(),
            _ => match (s.proc_us_per_packet, s.proc_sys_share) {
                (Some(u), Some(k)) => format!("{u:.2} ({:.0}%)", k * 100.0),
                (u, _) => opt(u, 2),
            },
        };
        let _ = writeln!(
            out,
            "  {:<12} {:>10.0} {:>15} {:>6.2} {:>9.0} {:>7} {:>16} {:>12} {:>9} {:>7}",
            format!("({}) {}", i + 1, s.target.as_str()),
            s.reply_rate,
            format!("({:.0}..{:.0})", s.reply_rate_range.0, s.reply_rate_range.1),
            s.error_percent,
            s.lb_pps,
            opt(s.lb_packets_per_reply, 1),
            proc,
            opt(s.host_softirq_us_per_reply, 1),
            opt(s.host_busy_us_per_reply, 1),
            opt(s.vs_balancer, 2),
        );
    }
    let _ = writeln!(out, "  configs:");
    for (i, s) in summary.iter().enumerate() {
        let _ = writeln!(
            out,
            "    ({}) {:<9} {}",
            i + 1,
            s.target.as_str(),
            s.target.describe()
        );
    }
    let _ = writeln!(
        out,
        "  LB pkt/s: packets received on the LB node's front + back per second of load; \
         proc µs/pk: CPU (user+sys) of the balancer / HAProxy process per such packet, \
         (sys): the kernel's share of it \
         (the in-kernel path has no process: n/a); softirq µs/r and host µs/r: host-wide \
         softirq and busy CPU time per reply (every namespace: clients, router, LB, server; and any other load on the host). With every namespace on the same cores, the host saturates: reply rate x host µs/r ~ cores x 1e6."
    );
    let _ = writeln!(out, "targets:");
    for c in checks {
        let verdict = match c.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "NOT MEASURED",
        };
        let _ = writeln!(
            out,
            "  {:<22} {:>6}  (target >= {:.1})  {verdict}",
            c.name,
            opt(c.ratio, 2),
            c.min
        );
    }
    out
}

/// The JSON record of one `bench-balancer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// Schema [`BENCH_SCHEMA`], topology, profile, versions, wall clock.
    #[serde(flatten)]
    pub head: RecordHead,
    /// The knobs.
    pub spec: BenchSpec,
    /// `haproxy -v` first line.
    pub haproxy_version: Option<String>,
    /// Host load average (1, 5, 15 min) at the start: others' work skews results.
    pub loadavg_at_start: Option<String>,
    /// Every run, in order.
    pub samples: Vec<Sample>,
    /// Medians per target.
    pub summary: Vec<TargetSummary>,
    /// The two targets.
    pub checks: Vec<Check>,
    /// The table as printed.
    pub table: String,
    /// The commands each target ran before and after its runs.
    pub setup: BTreeMap<Target, (Vec<NsCmd>, Vec<NsCmd>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::of(&Topology::builtin(BENCH_TOPOLOGY).unwrap()).unwrap()
    }

    fn spec() -> BenchSpec {
        BenchSpec {
            seconds: 5.0,
            repeat: 3,
            concurrency: 64,
            targets: Target::ALL.to_vec(),
            timeout_s: 5.0,
            server_threads: 1,
        }
    }

    #[test]
    fn layout_of_1lb_1rs() {
        let l = layout();
        assert_eq!(l.vip.to_string(), "198.18.1.100");
        assert_eq!(
            (l.lb.as_str(), l.front.as_str(), l.back.as_str()),
            ("lb1", "front", "back")
        );
        assert_eq!(
            (l.router.as_str(), l.router_lan.as_str()),
            ("router", "eth1")
        );
        assert_eq!(l.router_client_addr.to_string(), "198.18.0.1");
        assert_eq!(
            (l.rs.as_str(), l.rs_addr.to_string().as_str()),
            ("rs1", "198.18.11.11")
        );
        assert_eq!(l.rs_gateway.to_string(), "198.18.11.1");
        assert_eq!(l.sc_bridge, "bal-br-sc1");
        assert_eq!(l.sc_net.to_string(), "198.18.11.0/24");
        assert_eq!(l.router_sc_addr.to_string(), "198.18.11.254/24");
        assert_eq!(l.clients, ["client1", "client2", "client3"]);
        assert_eq!(l.client_net.to_string(), "198.18.0.0/24");
        assert_eq!(l.url(Target::Direct), "http://198.18.11.11:80/");
        assert_eq!(l.url(Target::Haproxy), "http://198.18.1.100:80/");
        // A DR topology already routes around the balancer: refused.
        let e = Layout::of(&Topology::builtin("1lb-1rs-dr").unwrap()).unwrap_err();
        assert!(e.to_string().contains("use 1lb-1rs"), "{e}");
    }

    fn line(c: &NsCmd) -> String {
        format!("{}: {}", c.node, c.argv.join(" "))
    }

    #[test]
    fn every_setup_is_undone() {
        let l = layout();
        let f = Path::new("/r/nat.nft");
        assert!(setup_steps(Target::Balancer, &l, "aa:bb:cc:dd:ee:ff", f).is_empty());
        assert!(teardown_steps(Target::Balancer, &l).is_empty());
        let nft: Vec<String> = setup_steps(Target::Nftables, &l, "aa:bb:cc:dd:ee:ff", f)
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            nft,
            [
                "router: ip neigh replace 198.18.1.100 lladdr aa:bb:cc:dd:ee:ff nud permanent dev eth1",
                "lb1: nft flush chain ip bal prerouting",
                "lb1: sysctl -qw net.ipv4.ip_forward=1",
                "lb1: nft -f /r/nat.nft",
            ]
        );
        let undo: Vec<String> = teardown_steps(Target::Nftables, &l)
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            undo,
            [
                "lb1: nft delete table ip balbench",
                "lb1: sysctl -qw net.ipv4.ip_forward=0",
                "lb1: nft flush chain ip bal prerouting",
                "lb1: nft add rule ip bal prerouting iifname front ip daddr 198.18.1.100 counter drop",
                "router: ip neigh replace 198.18.1.100 lladdr 01:00:5e:12:01:64 nud permanent dev eth1",
            ]
        );
        let hap: Vec<String> = teardown_steps(Target::Haproxy, &l)
            .iter()
            .map(line)
            .collect();
        assert_eq!(hap, undo[2..]);
        let direct: Vec<String> = setup_steps(Target::Direct, &l, "x", f)
            .iter()
            .map(line)
            .collect();
        for needle in [
            "sw: ip link add bal-bench-rt type veth peer name bench0 netns bal-router",
            "sw: ip link set dev bal-bench-rt master bal-br-sc1 up",
            "sw: ethtool -K bal-bench-rt tx off tso off gso off gro off",
            "router: ethtool -K bench0 tx off tso off gso off gro off",
            "router: ip addr add 198.18.11.254/24 dev bench0",
            "rs1: ip route replace 198.18.0.0/24 via 198.18.11.254",
            "client3: ip route replace 198.18.11.0/24 via 198.18.0.1",
        ] {
            assert!(
                direct.iter().any(|d| d == needle),
                "`{needle}` missing: {direct:#?}"
            );
        }
        let undo: Vec<String> = teardown_steps(Target::Direct, &l)
            .iter()
            .map(line)
            .collect();
        assert_eq!(
            undo[0],
            "rs1: ip route replace 198.18.0.0/24 via 198.18.11.1"
        );
        assert!(undo.contains(&"client2: ip route del 198.18.11.0/24".to_string()));
        assert_eq!(undo.last().unwrap(), "sw: ip link del bal-bench-rt");
    }

    #[test]
    fn nft_and_haproxy_configs() {
        let l = layout();
        let n = nft_ruleset(&l);
        assert!(n.contains("table ip balbench {"), "{n}");
        assert!(
            n.contains("type nat hook prerouting priority dstnat;"),
            "{n}"
        );
        assert!(
            n.contains("iifname \"front\" ip daddr 198.18.1.100 tcp dport 80 counter dnat to 198.18.11.11:80"),
            "{n}"
        );
        let h = haproxy_config(&l);
        for needle in [
            "nbthread 1",
            "mode tcp",
            "bind 198.18.1.100:80",
            "server rs1 198.18.11.11:80",
        ] {
            assert!(h.contains(needle), "`{needle}` missing:\n{h}");
        }
    }

    #[test]
    fn client_args_split_concurrency() {
        let s = spec();
        let a: Vec<String> = (0..3)
            .map(|i| {
                client_args(&s, "http://198.18.1.100:80/", i, 3, Path::new("/r/c.json")).join(" ")
            })
            .collect();
        assert_eq!(
            a[0],
            "http://198.18.1.100:80/ --concurrency 22 --num-calls 1 --duration 5s --timeout 5 --threads 1 --client 0/3 --no-progress --json /r/c.json"
        );
        assert!(a[1].contains("--concurrency 21") && a[2].contains("--client 2/3"));
    }

    #[test]
    fn spec_validation() {
        spec().validate(3).unwrap();
        for (f, needle) in [
            (
                Box::new(|s: &mut BenchSpec| s.seconds = 0.0) as Box<dyn Fn(&mut BenchSpec)>,
                "--seconds 0",
            ),
            (Box::new(|s: &mut BenchSpec| s.repeat = 0), "--repeat 0"),
            (
                Box::new(|s: &mut BenchSpec| s.concurrency = 2),
                "--concurrency 2: expected 3..=8000",
            ),
            (Box::new(|s: &mut BenchSpec| s.targets.clear()), "--targets"),
            (
                Box::new(|s: &mut BenchSpec| s.timeout_s = f64::NAN),
                "--timeout NaN",
            ),
        ] {
            let mut s = spec();
            f(&mut s);
            let e = s.validate(3).unwrap_err().to_string();
            assert!(e.contains(needle), "`{needle}` not in {e}");
        }
    }

    #[test]
    fn parsers() {
        let j = r#"[{"ifname":"lo","stats64":{"rx":{"packets":1},"tx":{"packets":2}}},
                   {"ifname":"front","address":"aa:bb:cc:00:11:22","stats64":{"rx":{"bytes":9,"packets":100},"tx":{"packets":90}}}]"#;
        let m = parse_link_stats(j).unwrap();
        assert_eq!(
            m["front"],
            LinkCounters {
                rx_packets: 100,
                tx_packets: 90
            }
        );
        assert_eq!(parse_link_mac(j, "front").unwrap(), "aa:bb:cc:00:11:22");
        assert!(parse_link_mac(j, "back")
            .unwrap_err()
            .contains("no interface `back`"));
        assert!(parse_link_stats("[{\"ifname\":\"x\"}]")
            .unwrap_err()
            .contains("x has no stats64.rx.packets"));
        assert!(parse_link_stats("{}")
            .unwrap_err()
            .contains("not a JSON array"));
        assert!(parse_link_stats("nope").unwrap_err().contains("not JSON"));

        let stat =
            "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 12345";
        assert_eq!(
            parse_proc_cpu(stat).unwrap(),
            ProcCpu { user: 250, sys: 75 }
        );
        assert!(parse_proc_cpu("4242 (x) S 1")
            .unwrap_err()
            .contains("utime"));
        assert!(parse_proc_cpu("garbage").is_err());

        let ps = "cpu  100 5 50 1000 20 3 40 0 0 0\ncpu0 1 2 3 4 5 6 7\n";
        assert_eq!(
            parse_host_cpu(ps).unwrap(),
            HostCpu {
                softirq: 40,
                busy: 198
            }
        );
        assert!(parse_host_cpu("cpu0 1 2")
            .unwrap_err()
            .contains("no aggregate"));
        assert!(parse_host_cpu("cpu  1 2 3")
            .unwrap_err()
            .contains("3 fields"));
    }

    fn snap(front_rx: u64, back_rx: u64, proc: Option<u64>, softirq: u64, busy: u64) -> Snapshot {
        let mut lb_links = BTreeMap::new();
        lb_links.insert(
            "front".into(),
            LinkCounters {
                rx_packets: front_rx,
                tx_packets: 0,
            },
        );
        lb_links.insert(
            "back".into(),
            LinkCounters {
                rx_packets: back_rx,
                tx_packets: 0,
            },
        );
        lb_links.insert(
            "vip0".into(),
            LinkCounters {
                rx_packets: 999,
                tx_packets: 0,
            },
        );
        Snapshot {
            lb_links,
            proc: proc.map(|p| ProcCpu {
                user: p / 2,
                sys: p - p / 2,
            }),
            host: HostCpu { softirq, busy },
        }
    }

    #[test]
    fn sample_arithmetic() {
        let l = layout();
        let load = LoadFigures {
            conns: 10_000,
            replies: 9_900,
            errors: 100,
            duration_s: 2.0,
        };
        let s = Sample::compute(
            Target::Balancer,
            1,
            &l,
            load,
            &snap(1000, 500, Some(10), 5, 50),
            &snap(51_000, 50_500, Some(60), 25, 250),
            100.0,
            Some(9_900),
        );
        assert_eq!(s.lb_packets, 100_000);
        assert_eq!(s.lb_pps, 50_000.0);
        assert_eq!(s.reply_rate, 4_950.0);
        assert_eq!(s.error_percent, 1.0);
        assert_eq!(s.proc_cpu_s, Some(0.5));
        assert_eq!(s.proc_us_per_packet, Some(5.0));
        assert_eq!(s.proc_sys_share, Some(0.5));
        assert!((s.host_softirq_s - 0.2).abs() < 1e-12 && (s.host_busy_s - 2.0).abs() < 1e-12);
        let k = Sample::compute(
            Target::Nftables,
            0,
            &l,
            LoadFigures {
                duration_s: 0.0,
                ..load
            },
            &snap(0, 0, None, 0, 0),
            &snap(0, 0, None, 0, 0),
            100.0,
            None,
        );
        assert_eq!(
            (k.reply_rate, k.lb_pps, k.proc_us_per_packet),
            (0.0, 0.0, None)
        );
    }

    #[test]
    fn medians_summary_checks_and_table() {
        let l = layout();
        let mk = |t, round, replies: u64, proc: Option<u64>| {
            Sample::compute(
                t,
                round,
                &l,
                LoadFigures {
                    conns: replies,
                    replies,
                    errors: 0,
                    duration_s: 1.0,
                },
                &snap(0, 0, proc.map(|_| 0), 0, 0),
                &snap(replies * 5, replies * 5, proc, replies / 100, replies / 10),
                100.0,
                None,
            )
        };
        let samples = vec![
            mk(Target::Balancer, 0, 9_000, Some(50)),
            mk(Target::Nftables, 0, 20_000, None),
            mk(Target::Haproxy, 0, 10_000, Some(80)),
            mk(Target::Balancer, 1, 11_000, Some(50)),
            mk(Target::Nftables, 1, 22_000, None),
            mk(Target::Haproxy, 1, 12_000, Some(80)),
        ];
        let sum = summarize(&samples, &Target::ALL);
        assert_eq!(sum.len(), 3, "direct was not run");
        assert_eq!(sum[0].reply_rate, 10_000.0);
        assert_eq!(sum[0].reply_rate_range, (9_000.0, 11_000.0));
        assert_eq!(sum[0].vs_balancer, Some(1.0));
        assert_eq!(sum[1].vs_balancer, Some(2.1));
        assert_eq!(sum[0].lb_packets_per_reply, Some(10.0));
        assert_eq!(sum[1].proc_us_per_packet, None);
        assert!((sum[0].host_busy_us_per_reply.unwrap() - 1000.0).abs() < 1e-9);
        let c = checks(&sum);
        assert_eq!(c[0].name, "balancer / haproxy");
        assert!((c[0].ratio.unwrap() - 10.0 / 11.0).abs() < 1e-12);
        assert_eq!(c[0].pass, Some(false));
        assert!((c[1].ratio.unwrap() - 10.0 / 21.0).abs() < 1e-12);
        assert_eq!(c[1].pass, Some(false));
        let t = render_table(&spec(), &sum, &c);
        assert!(t.contains("(1) balancer"), "{t}");
        assert!(t.contains("n/a (kern)"), "{t}");
        assert!(t.contains(" (50%)"), "{t}");
        assert!(t.contains("balancer / haproxy"), "{t}");
        assert!(t.contains("0.91  (target >= 1.0)  FAIL"), "{t}");
        assert!(!t.contains("PASS"), "{t}");
        // Without HAProxy runs the check says so instead of guessing.
        let only: Vec<Sample> = samples
            .into_iter()
            .filter(|s| s.target != Target::Haproxy)
            .collect();
        let c = checks(&summarize(&only, &Target::ALL));
        assert_eq!((c[0].ratio, c[0].pass), (None, None));
        assert!(render_table(&spec(), &summarize(&only, &Target::ALL), &c).contains("NOT MEASURED"));
    }
}
