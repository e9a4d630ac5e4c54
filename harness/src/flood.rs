//! `harness flood` as data (pure, no I/O): the three hostile floods, the
//! frames they are made of, the pool of spoofed sources, the temporary
//! flood leg's namespace commands, the per-phase figures, the summary table
//! and the JSON record. `flood_run` does the I/O.
//!
//! Where the floods come from: a temporary veth leg from a client host
//! (`client3` of `1lb-1rs`) into the LB LAN bridge, with no IPv4 address,
//! so the client's kernel routes nothing through it. Frames go to the VIP's
//! multicast MAC, as the router sends them, so the balancer sees what an
//! attacker behind the router would make it see (the router's kernel gets
//! a copy too and drops it: not `PACKET_HOST`). Sources are spoofed inside
//! the client LAN, on addresses no node holds. What answers them: the
//! balancer NATs each flood SYN to the real server, whose SYN-ACK comes
//! back through the balancer and leaves `front` to the MAC the SYN came
//! from, i.e. the flood leg, where the client's kernel (no address there,
//! `ip_forward=0`) drops it. Nothing is routed, nothing loops, nothing
//! leaves the testbed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use balancer::checksum::{ipv4_header_checksum, tcp_checksum};
use balancer::counters::DropReason;
use balancer::fuzzing::Rng;
use balancer::wire::build::{syn_options, tcp_frame, FrameSpec};
use balancer::wire::{MacAddr, TcpFlags, ETH_HEADER_LEN};
use serde::{Deserialize, Serialize};

use crate::bench::{cmd, LoadFigures, NsCmd};
use crate::experiment::{fmt_num, RecordHead};
use crate::net::Ipv4Net;
use crate::plan::OFFLOADS_OFF;
use crate::repeat::{by_config, median_count, median_of, spread_of};
use crate::topology::Topology;

/// Schema identifier of the JSON record.
pub const FLOOD_SCHEMA: &str = "harness-flood/1";
/// Switch-side end of the flood leg (in the LB LAN bridge).
pub const FLOOD_PORT: &str = "bal-flood-sw";
/// The flooding host's end of the leg (no address on it).
pub const FLOOD_IFACE: &str = "flood0";
/// The largest frame a generator writes (a slot of the send batch).
pub const MAX_FRAME: usize = 128;
/// Payload bytes of the non-SYN flood's PSH segments.
const PSH_PAYLOAD: usize = 48;
const IP: usize = ETH_HEADER_LEN;
const TCP: usize = IP + 20;

/// One hostile flood.
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
pub enum FloodKind {
    /// Initial SYNs from random spoofed sources and ports.
    Syn,
    /// ACK, PSH+ACK and FIN+ACK segments of flows nobody opened.
    Nonsyn,
    /// Frames each aimed at one input check ([`Malformation`]).
    Malformed,
}

impl FloodKind {
    /// All floods, in run order.
    pub const ALL: [FloodKind; 3] = [FloodKind::Syn, FloodKind::Nonsyn, FloodKind::Malformed];

    /// Name on the command line and in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            FloodKind::Syn => "syn",
            FloodKind::Nonsyn => "nonsyn",
            FloodKind::Malformed => "malformed",
        }
    }
}

/// One kind of malformed frame, aimed at one of the balancer's input checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformation {
    /// An Ethernet header with the IPv4 ethertype and nothing after it
    /// (shorter frames do not leave an AF_PACKET socket: EINVAL).
    Runt,
    /// The IPv4 header cut after 12 bytes.
    TruncatedIp,
    /// IHL 4 (a header shorter than its fixed part).
    BadIhl,
    /// Version 6 inside an IPv4 ethertype.
    BadVersion,
    /// Total length larger than the frame.
    LongTotalLen,
    /// Total length smaller than the header.
    ShortTotalLen,
    /// IPv4 header checksum off by one.
    BadIpChecksum,
    /// TCP checksum off by one.
    BadTcpChecksum,
    /// TCP data offset 2 (shorter than the fixed header).
    BadDataOffset,
    /// A first fragment (more-fragments set).
    Fragment,
    /// IPv6 ethertype.
    Ipv6,
    /// 802.1Q VLAN tag.
    Vlan,
}

impl Malformation {
    /// Every kind, in the order the malformed flood cycles through them.
    pub const ALL: [Malformation; 12] = [
        Malformation::Runt,
        Malformation::TruncatedIp,
        Malformation::BadIhl,
        Malformation::BadVersion,
        Malformation::LongTotalLen,
        Malformation::ShortTotalLen,
        Malformation::BadIpChecksum,
        Malformation::BadTcpChecksum,
        Malformation::BadDataOffset,
        Malformation::Fragment,
        Malformation::Ipv6,
        Malformation::Vlan,
    ];

    /// The drop reason the balancer must count for it.
    pub fn expected(self) -> DropReason {
        match self {
            Malformation::Runt | Malformation::TruncatedIp | Malformation::LongTotalLen => {
                DropReason::Truncated
            }
            Malformation::BadIhl
            | Malformation::BadVersion
            | Malformation::ShortTotalLen
            | Malformation::BadDataOffset => DropReason::Malformed,
            Malformation::BadIpChecksum => DropReason::BadChecksum,
            Malformation::BadTcpChecksum => DropReason::BadTcpChecksum,
            Malformation::Fragment => DropReason::Fragment,
            Malformation::Ipv6 | Malformation::Vlan => DropReason::NotIpv4,
        }
    }
}

/// Where flood frames go and which sources they claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloodTarget {
    /// Source MAC (the flood leg's own, so the bridge learns one MAC only).
    pub src_mac: [u8; 6],
    /// Destination MAC (the VIP's multicast MAC).
    pub dst_mac: [u8; 6],
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// Spoofed source addresses (see [`spoof_pool`]).
    pub sources: Vec<Ipv4Addr>,
}

/// Why a flood cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FloodError(pub String);

/// The client LAN's host addresses that no node holds: spoofed sources
/// whose answers die on the flood leg, and that can never be mistaken for
/// a legitimate client (or the router) by the balancer's table.
pub fn spoof_pool(t: &Topology, client_net: Ipv4Net) -> Vec<Ipv4Addr> {
    let used: Vec<Ipv4Addr> = t
        .nodes
        .iter()
        .flat_map(|n| n.ifaces.iter())
        .flat_map(|i| i.addrs.iter())
        .map(|a| a.addr.addr)
        .collect();
    let net = u32::from(client_net.network().addr);
    let size = 1u64 << (32 - u32::from(client_net.len).min(32));
    (1..size.saturating_sub(1))
        .map(|i| Ipv4Addr::from(net.wrapping_add(i as u32)))
        .filter(|a| !used.contains(a))
        .collect()
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], FloodError> {
    let bad = || {
        FloodError(format!(
            "`{s}` is not a MAC address (expected aa:bb:cc:dd:ee:ff)"
        ))
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

/// Deterministic frame source for one flood: fresh tuples every frame (so
/// a SYN flood really opens new flows), no allocation per frame.
#[derive(Debug, Clone)]
pub struct FrameGen {
    kind: FloodKind,
    target: FloodTarget,
    rng: Rng,
    n: u64,
    syn: Vec<u8>,
    ack: Vec<u8>,
    psh: Vec<u8>,
}

impl FrameGen {
    /// A generator; `seed` makes the sequence reproducible.
    pub fn new(kind: FloodKind, target: FloodTarget, seed: u64) -> Result<Self, FloodError> {
        if target.sources.is_empty() {
            return Err(FloodError("no address to spoof: the pool is empty".into()));
        }
        let spec = |flags: u8, tcp_options: Vec<u8>, payload: Vec<u8>| FrameSpec {
            src_mac: MacAddr(target.src_mac),
            dst_mac: MacAddr(target.dst_mac),
            src_ip: target.sources[0],
            dst_ip: target.vip,
            dst_port: target.port,
            flags,
            tcp_options,
            payload,
            ..FrameSpec::default()
        };
        let syn = tcp_frame(&spec(TcpFlags::SYN, syn_options(), vec![]));
        let ack = tcp_frame(&spec(TcpFlags::ACK, vec![], vec![]));
        let psh = tcp_frame(&spec(
            TcpFlags::ACK | TcpFlags::PSH,
            vec![],
            vec![b'x'; PSH_PAYLOAD],
        ));
        Ok(Self {
            kind,
            target,
            rng: Rng::new(seed),
            n: 0,
            syn,
            ack,
            psh,
        })
    }

    /// Writes the next frame into `buf` (at least [`MAX_FRAME`] bytes) and
    /// returns its length (0 if `buf` is too short).
    pub fn next_into(&mut self, buf: &mut [u8]) -> usize {
        if buf.len() < MAX_FRAME {
            return 0;
        }
        let n = self.n;
        self.n += 1;
        match self.kind {
            FloodKind::Syn => self.valid(buf, TcpFlags::SYN),
            FloodKind::Nonsyn => match n % 3 {
                0 => self.valid(buf, TcpFlags::ACK),
                1 => self.valid(buf, TcpFlags::ACK | TcpFlags::PSH),
                _ => self.valid(buf, TcpFlags::ACK | TcpFlags::FIN),
            },
            FloodKind::Malformed => {
                let m = Malformation::ALL[(n % Malformation::ALL.len() as u64) as usize];
                self.malformed(buf, m)
            }
        }
    }

    /// A well-formed segment with `flags` from a random spoofed tuple,
    /// every checksum right.
    fn valid(&mut self, buf: &mut [u8], flags: u8) -> usize {
        let template = if flags == TcpFlags::SYN {
            &self.syn
        } else if flags & TcpFlags::PSH != 0 {
            &self.psh
        } else {
            &self.ack
        };
        let len = template.len();
        buf[..len].copy_from_slice(template);
        let r = self.rng.next_u64();
        let src = self.target.sources[(r % self.target.sources.len() as u64) as usize];
        let port = 1024 + ((r >> 16) % (65536 - 1024)) as u16;
        buf[IP + 4..IP + 6].copy_from_slice(&((r >> 32) as u16).to_be_bytes());
        buf[IP + 12..IP + 16].copy_from_slice(&src.octets());
        buf[TCP..TCP + 2].copy_from_slice(&port.to_be_bytes());
        buf[TCP + 4..TCP + 8].copy_from_slice(&(self.rng.next_u64() as u32).to_be_bytes());
        if flags != TcpFlags::SYN {
            buf[TCP + 8..TCP + 12].copy_from_slice(&(self.rng.next_u64() as u32).to_be_bytes());
        }
        buf[TCP + 13] = flags;
        fill_checksums(&mut buf[..len], src, self.target.vip);
        len
    }

    /// A frame broken in the way `m` says (otherwise a valid SYN).
    fn malformed(&mut self, buf: &mut [u8], m: Malformation) -> usize {
        let len = self.valid(buf, TcpFlags::SYN);
        let set_ip = |buf: &mut [u8], at: usize, v: &[u8]| {
            buf[IP + at..IP + at + v.len()].copy_from_slice(v);
            let c = ipv4_header_checksum(&buf[IP..IP + 20]);
            buf[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
        };
        match m {
            Malformation::Runt => ETH_HEADER_LEN,
            Malformation::TruncatedIp => IP + 12,
            Malformation::BadIhl => {
                set_ip(buf, 0, &[0x44]);
                len
            }
            Malformation::BadVersion => {
                set_ip(buf, 0, &[0x65]);
                len
            }
            Malformation::LongTotalLen => {
                set_ip(buf, 2, &1400u16.to_be_bytes());
                len
            }
            Malformation::ShortTotalLen => {
                set_ip(buf, 2, &16u16.to_be_bytes());
                len
            }
            Malformation::BadIpChecksum => {
                buf[IP + 11] = buf[IP + 11].wrapping_add(1);
                len
            }
            Malformation::BadTcpChecksum => {
                buf[TCP + 17] = buf[TCP + 17].wrapping_add(1);
                len
            }
            Malformation::BadDataOffset => {
                buf[TCP + 12] = 0x20;
                len
            }
            Malformation::Fragment => {
                set_ip(buf, 6, &[0x20, 0x00]);
                len
            }
            Malformation::Ipv6 => {
                buf[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                len
            }
            Malformation::Vlan => {
                buf[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                len
            }
        }
    }
}

/// Recomputes the IPv4 header and TCP checksums of a frame built from a
/// template (IHL 5, the TCP segment filling the rest of the IPv4 packet).
fn fill_checksums(f: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    f[IP + 10..IP + 12].fill(0);
    let c = ipv4_header_checksum(&f[IP..TCP]);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
    f[TCP + 16..TCP + 18].fill(0);
    let c = tcp_checksum(src, dst, &f[TCP..]);
    f[TCP + 16..TCP + 18].copy_from_slice(&c.to_be_bytes());
}

/// Commands that plug the flood leg (no address) from `node` into the LB
/// LAN bridge, offloads off as on every testbed veth.
pub fn leg_setup(node: &str, lan_bridge: &str) -> Vec<NsCmd> {
    let ns = crate::plan::netns_name(node);
    let mut v = vec![
        cmd(
            "sw",
            &[
                "ip",
                "link",
                "add",
                FLOOD_PORT,
                "type",
                "veth",
                "peer",
                "name",
                FLOOD_IFACE,
                "netns",
                &ns,
            ],
            "temporary flood leg into the LB LAN",
        ),
        cmd(
            "sw",
            &[
                "ip", "link", "set", "dev", FLOOD_PORT, "master", lan_bridge, "up",
            ],
            "plug it into the LB LAN bridge",
        ),
    ];
    for (n, dev) in [("sw", FLOOD_PORT), (node, FLOOD_IFACE)] {
        let mut argv = vec!["ethtool", "-K", dev];
        argv.extend_from_slice(OFFLOADS_OFF);
        v.push(cmd(n, &argv, "offloads off (as every testbed veth)"));
    }
    v.push(cmd(
        node,
        &[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{FLOOD_IFACE}.disable_ipv6=1"),
        ],
        "no IPv6 on the leg (no autoconfiguration traffic)",
    ));
    v.push(cmd(
        node,
        &["ip", "link", "set", "dev", FLOOD_IFACE, "up"],
        "leg up (no IPv4 address: the kernel routes nothing through it)",
    ));
    v
}

/// Commands that remove the flood leg (deleting one end removes both).
pub fn leg_teardown() -> Vec<NsCmd> {
    vec![cmd(
        "sw",
        &["ip", "link", "del", FLOOD_PORT],
        "remove the flood leg",
    )]
}

/// What the flood sender reports (the hidden `flood-send` writes it as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendReport {
    /// The flood.
    pub kind: Option<FloodKind>,
    /// Frames the kernel accepted.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds from the first to the last send.
    pub seconds: f64,
    /// Send calls that failed with ENOBUFS/EAGAIN (the frames were retried).
    pub busy: u64,
    /// The sender's CPU cgroup (`/proc/self/cgroup`): where its CPU time
    /// is charged, i.e. which quota throttles it (`/` for none).
    #[serde(default)]
    pub cgroup: Option<String>,
}

/// The CPU controller's cgroup path in a `/proc/PID/cgroup` text: the v1
/// hierarchy carrying `cpu` (as [`crate::cgroup::CgroupFlavor`] prefers
/// it), else the v2 one (`0::PATH`).
pub fn cpu_cgroup(text: &str) -> Option<String> {
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrl.split(',').any(|c| c == "cpu") {
            return Some(path.to_string());
        }
        if ctrl.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    v2
}

impl SendReport {
    /// Achieved frames per second.
    pub fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One sample of the balancer while a phase runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Seconds since the phase started.
    pub t_s: f64,
    /// Connection table entries (`/stats` `conntrack_entries`).
    pub entries: Option<u64>,
    /// The balancer's resident memory, KiB (`/proc/PID/status` VmRSS).
    pub rss_kib: Option<u64>,
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The counters of a balancer `/stats` document a flood moves, flattened
/// (`front_rx`, `drop.<reason>`, `conntrack.<counter>`, and the frames the
/// kernel dropped in front of its sockets, `rx_dropped_front`/`_back`).
pub fn stats_counters(stats: &serde_json::Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in [
        "front_rx",
        "back_rx",
        "tx_front",
        "tx_back",
        "syn_recv_new_isn",
    ] {
        if let Some(v) = stats.get(k).and_then(serde_json::Value::as_u64) {
            out.insert(k.to_string(), v);
        }
    }
    let process = stats.get("process");
    for k in ["rx_dropped_front", "rx_dropped_back"] {
        if let Some(v) = process
            .and_then(|p| p.get(k))
            .and_then(serde_json::Value::as_u64)
        {
            out.insert(k.to_string(), v);
        }
    }
    for (group, prefix) in [("drops", "drop."), ("conntrack", "conntrack.")] {
        if let Some(m) = stats.get(group).and_then(serde_json::Value::as_object) {
            for (k, v) in m {
                if let Some(v) = v.as_u64() {
                    out.insert(format!("{prefix}{k}"), v);
                }
            }
        }
    }
    out
}

/// `after - before` per counter (counters only grow; a restart shows as 0).
pub fn counter_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// What the legitimate clients got during a phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Legit {
    /// Connections attempted.
    pub conns: u64,
    /// Replies received.
    pub replies: u64,
    /// Errors (httperf's classification), total.
    pub errors: u64,
    /// Errors by type (non-zero ones).
    pub error_types: BTreeMap<String, u64>,
    /// Load duration, seconds.
    pub duration_s: f64,
    /// Replies per second of offered load (replies / `--seconds`; late
    /// replies of a slowed-down phase count, its tail does not dilute them).
    pub reply_rate: f64,
    /// Replies per connection attempted, percent.
    pub success_percent: f64,
    /// Errors per connection attempted, percent.
    pub error_percent: f64,
    /// Median and 99th percentile of the connection lifetime, ms.
    pub lifetime_ms_p50: Option<f64>,
    /// 99th percentile of the connection lifetime, ms.
    pub lifetime_ms_p99: Option<f64>,
}

impl Legit {
    /// The figures of the legitimate clients' merged loadgen result, for
    /// `seconds` of offered load.
    pub fn of(r: &loadgen::result::RunResult, seconds: f64) -> Legit {
        let load = LoadFigures::of(r);
        let error_types = loadgen::record::ErrorKind::ALL
            .iter()
            .map(|k| (k.httperf_label().to_string(), r.errors.get(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let lifetime = |q| (load.replies > 0).then(|| r.histograms.lifetime.quantile_ms(q));
        Legit {
            conns: load.conns,
            replies: load.replies,
            errors: load.errors,
            error_types,
            duration_s: load.duration_s,
            reply_rate: load.replies as f64 / seconds,
            success_percent: load.success_percent(),
            error_percent: load.error_percent(),
            lifetime_ms_p50: lifetime(0.5),
            lifetime_ms_p99: lifetime(0.99),
        }
    }
}

/// One phase: the baseline (no flood) or one flood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `baseline` or the flood's name.
    pub name: String,
    /// The flood (none for the baseline).
    pub flood: Option<FloodKind>,
    /// Round of `--repeat` (0-based).
    #[serde(default)]
    pub round: u32,
    /// What the sender achieved.
    pub sent: Option<SendReport>,
    /// The legitimate clients' figures.
    pub legit: Legit,
    /// Table and memory samples over the phase.
    pub probes: Vec<Probe>,
    /// Table capacity (`table_size`).
    pub capacity: u64,
    /// Counters the phase moved (after - before).
    pub counters: BTreeMap<String, u64>,
}

impl Phase {
    /// Largest table occupancy sampled.
    pub fn max_entries(&self) -> Option<u64> {
        self.probes.iter().filter_map(|p| p.entries).max()
    }
    /// First and last RSS sampled, KiB.
    pub fn rss_span(&self) -> (Option<u64>, Option<u64>) {
        let (first, last) = self.rss_ends();
        (first, last.or(first))
    }

    fn rss_ends(&self) -> (Option<u64>, Option<u64>) {
        let mut it = self.probes.iter().filter_map(|p| p.rss_kib);
        (it.next(), it.next_back())
    }
    /// Largest RSS sampled, KiB.
    pub fn rss_max(&self) -> Option<u64> {
        self.probes.iter().filter_map(|p| p.rss_kib).max()
    }
    /// How far RSS rose above its first sample, KiB.
    pub fn rss_growth(&self) -> Option<u64> {
        let (first, _) = self.rss_span();
        first.zip(self.rss_max()).map(|(a, m)| m.saturating_sub(a))
    }
    /// Input-check drops counted (malformed, truncated, checksums, ...).
    pub fn input_drops(&self) -> BTreeMap<String, u64> {
        input_drops(&self.counters)
    }
}

/// The `drop.<reason>` counters of a counter map, by reason.
pub fn input_drops(counters: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counters
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("drop.").map(|r| (r.to_string(), *v)))
        .collect()
}

/// What one `harness flood` run was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloodSpec {
    /// Floods, in order (after a no-flood baseline).
    pub floods: Vec<FloodKind>,
    /// Seconds of legitimate load per phase.
    pub seconds: f64,
    /// Legitimate connections per second, all clients together.
    pub rate: f64,
    /// Flood frames per second to aim at (0: as fast as possible).
    pub flood_pps: u64,
    /// The balancer's `table_size`.
    pub table_size: usize,
    /// The balancer's SYN_RECV timeout, seconds.
    pub syn_recv_timeout_s: u32,
    /// loadgen --timeout, seconds.
    pub timeout_s: f64,
    /// Rounds: every phase runs this many times, alternating (`--repeat`).
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

impl FloodSpec {
    /// The phases of one round: the baseline (no flood), then each flood.
    pub fn phase_order(&self) -> Vec<Option<FloodKind>> {
        std::iter::once(None)
            .chain(self.floods.iter().map(|&k| Some(k)))
            .collect()
    }

    /// Checks the numbers before anything starts (one line each, naming the flag).
    pub fn validate(&self) -> Result<(), FloodError> {
        let bad = |m: String| Err(FloodError(m));
        if self.floods.is_empty() {
            return bad("--flood: expected at least one of syn, nonsyn, malformed".into());
        }
        if let Some(k) = (1..self.floods.len()).find_map(|i| {
            let k = self.floods[i];
            self.floods[..i].contains(&k).then_some(k)
        }) {
            return bad(format!(
                "--flood: {} given twice (each flood runs once per round; --repeat N runs it N times)",
                k.as_str()
            ));
        }
        crate::repeat::validate(self.repeat).map_err(FloodError)?;
        if !(self.seconds.is_finite() && self.seconds >= 1.0 && self.seconds <= 3600.0) {
            return bad(format!(
                "--seconds {}: expected 1 to 3600",
                fmt_num(self.seconds)
            ));
        }
        if !(self.rate.is_finite() && self.rate >= 1.0 && self.rate <= 100_000.0) {
            return bad(format!(
                "--rate {}: expected 1 to 100000 connections/s",
                fmt_num(self.rate)
            ));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 60.0) {
            return bad(format!(
                "--timeout {}: expected more than 0 and at most 60 s",
                fmt_num(self.timeout_s)
            ));
        }
        if self.table_size < 16 || self.table_size > balancer::conntrack::MAX_CAPACITY {
            return bad(format!(
                "--table-size {}: expected 16 to {}",
                self.table_size,
                balancer::conntrack::MAX_CAPACITY
            ));
        }
        if self.syn_recv_timeout_s == 0 || self.syn_recv_timeout_s > 3600 {
            return bad(format!(
                "--syn-recv-timeout {}: expected 1 to 3600 s",
                self.syn_recv_timeout_s
            ));
        }
        Ok(())
    }
}

/// A verdict of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, e.g. `syn: table <= table_size`.
    pub name: String,
    /// Whether it holds.
    pub pass: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Legitimate reply rate during a flood at least this share of the baseline's.
pub const MIN_REPLY_SHARE: f64 = 0.5;
/// Slack on top of the table's own memory that RSS may grow by (KiB):
/// allocator and socket buffers.
pub const RSS_SLACK_KIB: u64 = 16 * 1024;

/// The most the balancer's RSS may grow over a phase: the whole table
/// (reserved up front, touched as it fills) plus [`RSS_SLACK_KIB`].
pub fn rss_bound_kib(capacity: u64) -> u64 {
    balancer::conntrack::table_bytes(capacity as usize) / 1024 + RSS_SLACK_KIB
}

/// One phase over its runs: medians of what the legitimate clients got and
/// of the flood rate, the worst table and memory figures (what the bounds
/// are checked on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// `baseline` or the flood's name.
    pub name: String,
    /// The flood (none for the baseline).
    pub flood: Option<FloodKind>,
    /// Runs summarised.
    pub runs: usize,
    /// Median flood frames/s the sender achieved.
    pub flood_fps: Option<f64>,
    /// Median legitimate replies.
    pub replies: u64,
    /// Median legitimate replies/s.
    pub reply_rate: f64,
    /// Lowest and highest legitimate replies/s of the runs.
    pub reply_rate_range: (f64, f64),
    /// Median legitimate errors.
    pub errors: u64,
    /// Median legitimate errors per connection, percent.
    pub error_percent: f64,
    /// Median 99th percentile of the connection lifetime, ms.
    pub lifetime_ms_p99: Option<f64>,
    /// Largest table occupancy sampled in any run.
    pub max_entries: Option<u64>,
    /// Table capacity (`table_size`).
    pub capacity: u64,
    /// Largest RSS growth within one run, KiB.
    pub rss_growth_kib: Option<u64>,
    /// Largest RSS sampled in any run, KiB (a leak across rounds shows here).
    pub rss_max_kib: Option<u64>,
    /// Median of every counter the runs moved (0 for a run that did not).
    pub counters: BTreeMap<String, u64>,
    /// Median of every legitimate error type (0 for a run without it).
    pub error_types: BTreeMap<String, u64>,
}

/// The median of each key over `maps` (a map without the key counts 0);
/// keys whose median is 0 are left out.
fn median_counts(maps: &[&BTreeMap<String, u64>]) -> BTreeMap<String, u64> {
    let keys: std::collections::BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let m = median_count(maps, |m| m.get(k).copied().unwrap_or(0))?;
            (m > 0).then(|| (k.clone(), m))
        })
        .collect()
}

/// Summarises the runs per phase, in `order` (see [`FloodSpec::phase_order`]).
pub fn summarize(phases: &[Phase], order: &[Option<FloodKind>]) -> Vec<PhaseSummary> {
    by_config(phases, order, |p| p.flood)
        .into_iter()
        .map(|(flood, runs)| {
            let rate = spread_of(&runs, |p| Some(p.legit.reply_rate));
            let counters: Vec<_> = runs.iter().map(|p| &p.counters).collect();
            let error_types: Vec<_> = runs.iter().map(|p| &p.legit.error_types).collect();
            PhaseSummary {
                name: runs[0].name.clone(),
                flood,
                runs: runs.len(),
                flood_fps: median_of(&runs, |p| p.sent.as_ref().map(SendReport::fps)),
                replies: median_count(&runs, |p| p.legit.replies).unwrap_or(0),
                reply_rate: rate.map_or(0.0, |r| r.median),
                reply_rate_range: rate.map_or((0.0, 0.0), |r| (r.min, r.max)),
                errors: median_count(&runs, |p| p.legit.errors).unwrap_or(0),
                error_percent: median_of(&runs, |p| Some(p.legit.error_percent)).unwrap_or(0.0),
                lifetime_ms_p99: median_of(&runs, |p| p.legit.lifetime_ms_p99),
                max_entries: runs.iter().filter_map(|p| p.max_entries()).max(),
                capacity: runs.iter().map(|p| p.capacity).max().unwrap_or(0),
                rss_growth_kib: runs.iter().filter_map(|p| p.rss_growth()).max(),
                rss_max_kib: runs.iter().filter_map(|p| p.rss_max()).max(),
                counters: median_counts(&counters),
                error_types: median_counts(&error_types),
            }
        })
        .collect()
}

/// The verdicts: per flood, table bounded and memory bounded in the worst
/// run ([`rss_bound_kib`]), legit clients served (median replies, at least
/// [`MIN_REPLY_SHARE`] of the baseline's median rate).
pub fn checks(summary: &[PhaseSummary]) -> Vec<Check> {
    let base = summary.iter().find(|p| p.flood.is_none());
    let mut out = Vec::new();
    for p in summary.iter().filter(|p| p.flood.is_some()) {
        let worst = if p.runs > 1 {
            format!(" (worst of {} runs)", p.runs)
        } else {
            String::new()
        };
        out.push(Check {
            name: format!("{}: table <= table_size", p.name),
            pass: p.max_entries.is_some_and(|m| m <= p.capacity),
            detail: format!("max {} of {}{worst}", opt(p.max_entries), p.capacity),
        });
        let share = base
            .filter(|b| b.reply_rate > 0.0)
            .map(|b| p.reply_rate / b.reply_rate);
        let median = if p.runs > 1 { "median " } else { "" };
        out.push(Check {
            name: format!("{}: legit clients served", p.name),
            pass: p.replies > 0 && share.is_some_and(|s| s >= MIN_REPLY_SHARE),
            detail: format!(
                "{median}{} replies, {:.1} /s = {} of the baseline's (at least {MIN_REPLY_SHARE})",
                p.replies,
                p.reply_rate,
                share.map_or("?".into(), |s| format!("{s:.3}"))
            ),
        });
        let bound = rss_bound_kib(p.capacity);
        out.push(Check {
            name: format!("{}: memory bounded", p.name),
            pass: p.rss_growth_kib.is_some_and(|g| g <= bound),
            detail: format!(
                "RSS grew {} KiB at most{worst} (bound: the full table + {RSS_SLACK_KIB} = {bound} KiB)",
                opt(p.rss_growth_kib)
            ),
        });
    }
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// `k v, k v, ...` (or `none`).
fn list<'a>(items: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let v: Vec<String> = items.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The entries of a counter map, for [`list`].
fn entries(m: &BTreeMap<String, u64>) -> impl Iterator<Item = (&str, u64)> {
    m.iter().map(|(k, v)| (k.as_str(), *v))
}

/// The printed summary: one row per phase, then the input-check counters
/// of each flood, then the verdicts.
pub fn render_table(spec: &FloodSpec, summary: &[PhaseSummary], checks: &[Check]) -> String {
    let mut s = String::new();
    let rounds = if spec.repeat > 1 {
        format!(
            " x {} rounds (phases alternating; medians, worst run for table and RSS)",
            spec.repeat
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "# harness flood: legit {} conn/s for {} s per phase{rounds}, table_size {}, SYN_RECV timeout {} s",
        fmt_num(spec.rate),
        fmt_num(spec.seconds),
        spec.table_size,
        spec.syn_recv_timeout_s
    );
    let _ = writeln!(
        s,
        "{:<10} {:>4} {:>10} {:>9} {:>13} {:>6} {:>6} {:>8} {:>9} {:>9} {:>10}",
        "phase",
        "runs",
        "flood fr/s",
        "replies/s",
        "(min..max)",
        "errors",
        "err %",
        "p99 ms",
        "max table",
        "RSS +KiB",
        "RSS max"
    );
    for p in summary {
        let _ = writeln!(
            s,
            "{:<10} {:>4} {:>10} {:>9.1} {:>13} {:>6} {:>6.2} {:>8} {:>9} {:>9} {:>10}",
            p.name,
            p.runs,
            p.flood_fps.map_or("-".into(), |r| format!("{r:.0}")),
            p.reply_rate,
            format!("({:.0}..{:.0})", p.reply_rate_range.0, p.reply_rate_range.1),
            p.errors,
            p.error_percent,
            p.lifetime_ms_p99.map_or("-".into(), |v| format!("{v:.1}")),
            opt(p.max_entries),
            opt(p.rss_growth_kib),
            p.rss_max_kib.map_or("-".into(), |v| format!("{v} KiB")),
        );
    }
    for p in summary.iter().filter(|p| p.flood.is_some()) {
        let ct = ["inserted", "evicted", "expired", "table_full"].map(|k| {
            let v = p.counters.get(&format!("conntrack.{k}")).copied();
            (k, v.unwrap_or(0))
        });
        let drops = input_drops(&p.counters);
        let _ = writeln!(s, "{} drops: {}", p.name, list(entries(&drops)));
        let _ = writeln!(s, "{} table: {}", p.name, list(ct));
        let kernel = ["front", "back"].map(|k| {
            let v = p.counters.get(&format!("rx_dropped_{k}")).copied();
            (k, v.unwrap_or(0))
        });
        if kernel.iter().any(|(_, v)| *v > 0) {
            let _ = writeln!(
                s,
                "{} dropped by the kernel before the balancer read them: {}",
                p.name,
                list(kernel)
            );
        }
        if !p.error_types.is_empty() {
            let _ = writeln!(
                s,
                "{} legit errors: {}",
                p.name,
                list(entries(&p.error_types))
            );
        }
    }
    for c in checks {
        let verdict = if c.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(s, "{verdict} {}: {}", c.name, c.detail);
    }
    s
}

/// The JSON record of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodRecord {
    /// Schema [`FLOOD_SCHEMA`], topology, profile, versions, wall clock.
    #[serde(flatten)]
    pub head: RecordHead,
    /// What was asked.
    pub spec: FloodSpec,
    /// The node the floods came from.
    pub flood_node: String,
    /// The spoofed sources: how many, of which subnet.
    pub spoofed: String,
    /// Every run of every phase, in run order (round by round, baseline
    /// first in each); a run cut short keeps what it measured.
    pub phases: Vec<Phase>,
    /// Medians per phase (of the runs so far).
    #[serde(default)]
    pub summary: Vec<PhaseSummary>,
    /// Verdicts.
    pub checks: Vec<Check>,
    /// The printed table.
    pub table: String,
    /// Whether every phase ran.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer::config::Forwarding;
    use balancer::engine::{Action, Balancer, Interfaces};
    use balancer::ownership::Member;
    use balancer::sched::SchedulerKind;
    use balancer::wire::parse_tcp_frame;
    use std::time::Duration;

    fn target() -> FloodTarget {
        FloodTarget {
            src_mac: [2, 0, 0, 0, 0, 0x33],
            dst_mac: [1, 0, 0x5e, 18, 1, 100],
            vip: balancer::fuzzing::VIP,
            port: 80,
            sources: vec![Ipv4Addr::new(198, 18, 0, 20), Ipv4Addr::new(198, 18, 0, 21)],
        }
    }

    /// A one-balancer engine on the fuzzing configuration (VIP .100:80).
    fn engine(table: usize) -> Balancer {
        let mut c = balancer::fuzzing::config(Forwarding::Nat, SchedulerKind::Rr);
        c.cluster.members = vec![Member { id: 1, weight: 1 }];
        c.cluster.key = None;
        c.table_size = table;
        let macs = Interfaces {
            front_mac: MacAddr([2, 0, 0, 0, 0, 0xf1]),
            back_mac: MacAddr([2, 0, 0, 0, 0, 0xb1]),
        };
        Balancer::new(&c, macs).unwrap()
    }

    #[test]
    fn syn_flood_frames_are_valid_fresh_initial_syns() {
        let mut g = FrameGen::new(FloodKind::Syn, target(), 7).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        let mut tuples = std::collections::HashSet::new();
        for _ in 0..1000 {
            let n = g.next_into(&mut buf);
            let info = parse_tcp_frame(&buf[..n], false).unwrap();
            assert!(balancer::wire::tcp_checksum_ok(&buf[..n], &info));
            assert!(info.flags.is_initial_syn());
            assert_eq!(info.dst_ip, target().vip);
            assert!(target().sources.contains(&info.src_ip));
            assert_eq!(&buf[0..6], &target().dst_mac);
            tuples.insert((info.src_ip, info.src_port));
        }
        assert!(tuples.len() > 990, "{} distinct tuples", tuples.len());
    }

    #[test]
    fn syn_flood_fills_the_table_to_its_bound_and_no_further() {
        let mut b = engine(256);
        let mut g = FrameGen::new(FloodKind::Syn, target(), 1).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        for i in 0..2000u64 {
            let n = g.next_into(&mut buf);
            let a = b.handle_front(Duration::from_millis(i), &mut buf[..n]);
            assert!(!matches!(a, Action::Drop(_)), "frame {i}: {a:?}");
        }
        let s = b.snapshot();
        assert_eq!(s.conntrack_entries, 256);
        // A few random tuples repeat (a new ISN on a SYN_RECV entry replaces it).
        assert!(s.conntrack.inserted > 1990, "{:?}", s.conntrack);
        assert_eq!(
            s.conntrack.evicted,
            s.conntrack.inserted - s.conntrack.removed - 256
        );
    }

    #[test]
    fn nonsyn_flood_frames_are_valid_and_dropped_as_no_connection() {
        let mut b = engine(64);
        let mut g = FrameGen::new(FloodKind::Nonsyn, target(), 3).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        let mut flags = std::collections::HashSet::new();
        for _ in 0..300 {
            let n = g.next_into(&mut buf);
            let info = parse_tcp_frame(&buf[..n], false).unwrap();
            assert!(balancer::wire::tcp_checksum_ok(&buf[..n], &info));
            assert!(info.flags.ack() && !info.flags.syn());
            flags.insert(buf[TCP + 13]);
            let a = b.handle_front(Duration::ZERO, &mut buf[..n]);
            assert_eq!(a, Action::Drop(DropReason::NoConnection));
        }
        assert_eq!(flags.len(), 3);
        assert_eq!(b.snapshot().conntrack_entries, 0);
    }

    #[test]
    fn each_malformation_hits_its_input_check() {
        let mut b = engine(64);
        let mut g = FrameGen::new(FloodKind::Malformed, target(), 5).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        for round in 0..3 {
            for m in Malformation::ALL {
                let n = g.next_into(&mut buf);
                let a = b.handle_front(Duration::ZERO, &mut buf[..n]);
                assert_eq!(a, Action::Drop(m.expected()), "{m:?} (round {round})");
            }
        }
        assert_eq!(b.snapshot().conntrack_entries, 0);
    }

    #[test]
    fn generator_refuses_short_buffers_and_empty_pools() {
        let mut t = target();
        let mut g = FrameGen::new(FloodKind::Syn, t.clone(), 1).unwrap();
        assert_eq!(g.next_into(&mut [0u8; 40]), 0);
        t.sources.clear();
        assert!(FrameGen::new(FloodKind::Syn, t, 1).is_err());
    }

    #[test]
    fn spoof_pool_leaves_out_every_node_address() {
        let t = Topology::builtin("1lb-1rs").unwrap();
        let net: Ipv4Net = "198.18.0.0/24".parse().unwrap();
        let pool = spoof_pool(&t, net);
        for a in ["198.18.0.1", "198.18.0.11", "198.18.0.12", "198.18.0.13"] {
            assert!(!pool.contains(&a.parse().unwrap()), "{a}");
        }
        assert!(pool.contains(&"198.18.0.2".parse().unwrap()));
        assert!(!pool.contains(&"198.18.0.0".parse().unwrap()));
        assert!(!pool.contains(&"198.18.0.255".parse().unwrap()));
        assert_eq!(pool.len(), 254 - 4);
    }

    #[test]
    fn macs_parse_or_say_why() {
        assert_eq!(
            parse_mac("01:00:5e:12:01:64").unwrap(),
            [1, 0, 0x5e, 0x12, 1, 0x64]
        );
        for bad in [
            "",
            "01:00:5e:12:01",
            "01:00:5e:12:01:6g",
            "1:00:5e:12:01:64",
        ] {
            let e = parse_mac(bad).unwrap_err().to_string();
            assert!(e.contains("not a MAC"), "{e}");
        }
    }

    #[test]
    fn the_cpu_cgroup_is_found_in_v1_hybrid_and_v2() {
        let v1 = "9:name=systemd:/\n2:cpuacct:/\n1:cpu:/bal-client3\n0::/\n";
        assert_eq!(cpu_cgroup(v1).as_deref(), Some("/bal-client3"));
        let both = "4:cpu,cpuacct:/bal-lb1\n";
        assert_eq!(cpu_cgroup(both).as_deref(), Some("/bal-lb1"));
        assert_eq!(cpu_cgroup("0::/bal-rs1\n").as_deref(), Some("/bal-rs1"));
        assert_eq!(cpu_cgroup("garbage\n3:cpuset:/\n"), None);
    }

    #[test]
    fn vm_rss_and_counters_parse() {
        assert_eq!(
            parse_vm_rss("Name:\tbalancer\nVmRSS:\t   12345 kB\n"),
            Some(12345)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let before = stats_counters(&serde_json::json!({
            "front_rx": 10, "drops": {"malformed": 1}, "conntrack": {"inserted": 5}
        }));
        let after = stats_counters(&serde_json::json!({
            "front_rx": 25, "drops": {"malformed": 4, "truncated": 2}, "conntrack": {"inserted": 5},
            "process": {"rx_dropped_front": 9, "pid": 42}
        }));
        let d = counter_delta(&before, &after);
        assert_eq!(d.get("front_rx"), Some(&15));
        assert_eq!(d.get("drop.malformed"), Some(&3));
        assert_eq!(d.get("drop.truncated"), Some(&2));
        assert_eq!(d.get("conntrack.inserted"), None);
        assert_eq!(d.get("rx_dropped_front"), Some(&9));
        assert_eq!(d.get("pid"), None);
    }

    fn phase(name: &str, flood: Option<FloodKind>, rate: f64, max: u64, rss: [u64; 2]) -> Phase {
        Phase {
            name: name.into(),
            flood,
            round: 0,
            sent: None,
            legit: Legit {
                replies: (rate * 10.0) as u64,
                reply_rate: rate,
                ..Legit::default()
            },
            probes: vec![
                Probe {
                    t_s: 0.0,
                    entries: Some(1),
                    rss_kib: Some(rss[0]),
                },
                Probe {
                    t_s: 1.0,
                    entries: Some(max),
                    rss_kib: Some(rss[1]),
                },
            ],
            capacity: 100,
            counters: BTreeMap::new(),
        }
    }

    fn spec(repeat: u32) -> FloodSpec {
        FloodSpec {
            floods: vec![FloodKind::Syn],
            seconds: 10.0,
            rate: 100.0,
            flood_pps: 0,
            table_size: 100,
            syn_recv_timeout_s: 60,
            timeout_s: 5.0,
            repeat,
        }
    }

    const ORDER: [Option<FloodKind>; 2] = [None, Some(FloodKind::Syn)];

    #[test]
    fn checks_judge_bound_service_and_memory() {
        let ok = [
            phase("baseline", None, 100.0, 5, [1000, 1000]),
            phase("syn", Some(FloodKind::Syn), 90.0, 100, [1000, 1200]),
        ];
        let c = checks(&summarize(&ok, &ORDER));
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.pass), "{c:?}");
        let bad = [
            phase("baseline", None, 100.0, 5, [1000, 1000]),
            phase(
                "syn",
                Some(FloodKind::Syn),
                40.0,
                101,
                [1000, 1000 + rss_bound_kib(100) + 1],
            ),
        ];
        let s = summarize(&bad, &ORDER);
        let c = checks(&s);
        assert!(c.iter().all(|c| !c.pass), "{c:?}");
        let t = render_table(&spec(1), &s, &c);
        assert!(
            t.contains("FAIL syn: table <= table_size: max 101 of 100\n"),
            "{t}"
        );
        assert!(!t.contains("rounds"), "{t}");
    }

    /// Three rounds: each phase's figures are the medians of its runs, the
    /// bounds are judged on the worst run.
    fn three_rounds() -> Vec<Phase> {
        let runs = [
            // (baseline rate, syn rate, syn max table, syn RSS growth, evicted)
            (500.0, 200.0, 90, 100, Some(10)),
            (480.0, 300.0, 101, 50, None),
            (100.0, 260.0, 95, 700, Some(30)),
        ];
        let mut v = Vec::new();
        for (round, (b, r, max, grow, ev)) in runs.into_iter().enumerate() {
            let mut base = phase("baseline", None, b, 5, [1000, 1000]);
            let mut syn = phase("syn", Some(FloodKind::Syn), r, max, [2000, 2000 + grow]);
            base.round = round as u32;
            syn.round = round as u32;
            syn.legit.errors = [4, 0, 9][round];
            syn.legit.lifetime_ms_p99 = Some([1.0, 7.0, 3.0][round]);
            syn.sent = Some(SendReport {
                frames: [1000, 3000, 2000][round],
                seconds: 1.0,
                ..SendReport::default()
            });
            if let Some(e) = ev {
                syn.counters.insert("conntrack.evicted".into(), e);
            }
            syn.counters.insert("drop.malformed".into(), 7);
            syn.counters
                .insert("rx_dropped_front".into(), 100 * (round as u64 + 1));
            v.extend([base, syn]);
        }
        v
    }

    #[test]
    fn repeated_phases_report_medians_and_the_worst_run() {
        let s = summarize(&three_rounds(), &ORDER);
        assert_eq!(s.len(), 2);
        let (base, syn) = (&s[0], &s[1]);
        assert_eq!((base.name.as_str(), base.runs), ("baseline", 3));
        assert_eq!(base.reply_rate, 480.0, "the 100/s outlier does not drag it");
        assert_eq!(base.reply_rate_range, (100.0, 500.0));
        assert_eq!(syn.reply_rate, 260.0);
        assert_eq!(syn.replies, 2600);
        assert_eq!(syn.errors, 4);
        assert_eq!(syn.lifetime_ms_p99, Some(3.0));
        assert_eq!(syn.flood_fps, Some(2000.0));
        assert_eq!(syn.max_entries, Some(101), "worst run");
        assert_eq!(syn.rss_growth_kib, Some(700), "worst run");
        assert_eq!(syn.rss_max_kib, Some(2700));
        // A run that did not move a counter counts 0: median of 10, 0, 30.
        assert_eq!(syn.counters.get("conntrack.evicted"), Some(&10));
        assert_eq!(input_drops(&syn.counters).get("malformed"), Some(&7));
        let c = checks(&s);
        let pass: Vec<bool> = c.iter().map(|c| c.pass).collect();
        assert_eq!(pass, [false, true, true], "{c:?}");
        assert!(c[0].detail.contains("max 101 of 100 (worst of 3 runs)"));
        assert!(c[1]
            .detail
            .starts_with("median 2600 replies, 260.0 /s = 0.542"));
        let t = render_table(&spec(3), &s, &c);
        assert!(t.contains("x 3 rounds"), "{t}");
        assert!(t.contains("syn drops: malformed 7\n"), "{t}");
        assert!(
            t.contains(
                "syn dropped by the kernel before the balancer read them: front 200, back 0"
            ),
            "{t}"
        );
        assert!(
            t.contains("syn table: inserted 0, evicted 10, expired 0, table_full 0"),
            "{t}"
        );
    }

    #[test]
    fn a_run_cut_short_summarises_what_it_measured() {
        let all = three_rounds();
        let s = summarize(&all[..3], &ORDER);
        assert_eq!((s[0].runs, s[1].runs), (2, 1));
        assert_eq!(s[0].reply_rate, 490.0);
        assert!(summarize(&[], &ORDER).is_empty());
        assert_eq!(checks(&summarize(&all[..1], &ORDER)), vec![]);
    }

    #[test]
    fn spec_validation_names_the_flag() {
        let ok = FloodSpec {
            floods: FloodKind::ALL.to_vec(),
            rate: 500.0,
            table_size: 65536,
            ..spec(1)
        };
        assert!(ok.validate().is_ok());
        assert_eq!(
            ok.phase_order(),
            [
                None,
                Some(FloodKind::Syn),
                Some(FloodKind::Nonsyn),
                Some(FloodKind::Malformed)
            ]
        );
        type Edit = fn(&mut FloodSpec);
        let cases: [(Edit, &str); 8] = [
            (|s| s.seconds = 0.5, "--seconds 0.5"),
            (|s| s.rate = 0.0, "--rate 0"),
            (|s| s.table_size = 1, "--table-size 1"),
            (|s| s.syn_recv_timeout_s = 0, "--syn-recv-timeout 0"),
            (|s| s.floods.clear(), "--flood"),
            (
                |s| s.floods.push(FloodKind::Nonsyn),
                "--flood: nonsyn given twice",
            ),
            (|s| s.repeat = 0, "--repeat 0: expected 1..=100"),
            (|s| s.repeat = 101, "--repeat 101"),
        ];
        for (f, want) in cases {
            let mut s = ok.clone();
            f(&mut s);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
