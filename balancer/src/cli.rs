//! Command-line options (clap derive) and their translation into a
//! [`Config`], which goes through the same [`Config::validate`] as a TOML
//! file. Pure: unit-tested without any socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use balancer::config::{
    CheckKind, Config, Forwarding, KeySource, LocalServer, RealServer, MAX_WEIGHT, MIN_KEY_LEN,
};
use balancer::ownership::{Member, MAX_MEMBER_WEIGHT};
use balancer::sched::SchedulerKind;
use balancer::wire::MacAddr;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// User-space bi-active L4 load balancer (LVS-style NAT/DR over AF_PACKET).
#[derive(Debug, Parser)]
#[command(
    name = "balancer",
    version,
    about = "User-space bi-active L4 load balancer (LVS-style NAT/DR over AF_PACKET)",
    long_about = "User-space bi-active L4 load balancer (LVS-style NAT/DR over AF_PACKET).\n\n\
        `balancer run` reads every frame on the front and back interfaces (pnet/AF_PACKET), \
        schedules new TCP flows for the VIP among the local server (bi-active, delivered \
        through a TUN device holding the VIP) and the real servers behind `back` (NAT or DR), \
        and serves its counters as JSON on `GET /stats`. `balancer stats` prints them like \
        `ipvsadm -L -n --stats`."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the balancer (needs root or CAP_NET_RAW + CAP_NET_ADMIN).
    Run(Box<RunArgs>),
    /// Fetch a running balancer's counters from its control endpoint and print them
    /// (with its membership and target health when those are on).
    Stats(StatsArgs),
    /// Withdraw a running balancer from ownership: peers take its buckets, its established
    /// flows continue (needs peers).
    Drain(ControlArgs),
    /// Undo `drain`: the balancer rejoins (listen, ready, claim).
    Undrain(ControlArgs),
    /// Set a target's scheduling weight on a running balancer (0 quiesces it).
    Weight(WeightArgs),
}

/// Options of the commands that only talk to a control endpoint.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The balancer's control endpoint (its `--control`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub control: SocketAddr,
    /// Give up after this many milliseconds.
    #[arg(long = "timeout-ms", value_name = "MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
}

/// `balancer weight` options.
#[derive(Debug, Args)]
pub struct WeightArgs {
    /// Endpoint and timeout.
    #[command(flatten)]
    pub control: ControlArgs,
    /// The target: `local`, or `realN` (N as in `balancer stats`).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Its new weight, 0..=65535.
    #[arg(value_name = "WEIGHT", value_parser = clap::value_parser!(u32).range(0..=65535))]
    pub weight: u32,
}

/// `on` / `off` switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Forwarding method flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// LVS-NAT: destination rewritten, real servers route replies back through `back`.
    Nat,
    /// LVS-DR: MAC rewritten only; real servers hold the VIP on `lo` and reply directly.
    Dr,
}

/// Scheduler flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchedArg {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source hashing.
    Sh,
    /// Maglev (consistent) hashing.
    Mh,
}

impl From<SchedArg> for SchedulerKind {
    fn from(s: SchedArg) -> Self {
        match s {
            SchedArg::Rr => SchedulerKind::Rr,
            SchedArg::Wrr => SchedulerKind::Wrr,
            SchedArg::Lc => SchedulerKind::Lc,
            SchedArg::Wlc => SchedulerKind::Wlc,
            SchedArg::Sh => SchedulerKind::Sh,
            SchedArg::Mh => SchedulerKind::Mh,
        }
    }
}

/// `balancer run` options. Flags override the `--config` file field by field;
/// `--real` (and `--member`) replace the file's whole list.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file (format: see the balancer crate's `config` module docs).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface on the LB LAN (clients and the VIP).
    #[arg(long, value_name = "IF")]
    pub front: Option<String>,
    /// Interface on the sub-cluster LAN (real servers).
    #[arg(long, value_name = "IF")]
    pub back: Option<String>,
    /// The virtual service, e.g. 198.18.1.100:80.
    #[arg(long, value_name = "ADDR:PORT")]
    pub vip: Option<SocketAddrV4>,
    /// The local server for bi-active mode: where health checks reach it, and its weight
    /// (the port must equal the VIP port). Default 127.0.0.1:VIP-PORT, weight 1.
    #[arg(long, value_name = "ADDR:PORT[,weight=W]", value_parser = parse_local)]
    pub local: Option<TargetSpec>,
    /// A real server on `back` (repeatable; replaces the file's list). The MAC is resolved
    /// by ARP on `back` unless given; weight defaults to 1 (0 quiesces).
    #[arg(long = "real", value_name = "ADDR:PORT[,weight=W][,mac=M]", value_parser = parse_real)]
    pub real: Vec<TargetSpec>,
    /// Scheduler for new flows.
    #[arg(long, value_enum, value_name = "NAME")]
    pub scheduler: Option<SchedArg>,
    /// Forwarding method to the real servers.
    #[arg(long, value_enum, value_name = "METHOD")]
    pub method: Option<MethodArg>,
    /// Whether the balancer's own server takes flows (on) or it only forwards (off: plain LVS).
    #[arg(long = "bi-active", value_enum, value_name = "on|off")]
    pub bi_active: Option<OnOff>,
    /// Connection table capacity (entries).
    #[arg(long = "table-size", value_name = "N")]
    pub table_size: Option<usize>,
    /// Whether input frames' IPv4 header and TCP checksums are verified (default on;
    /// off only where offloads leave them partial).
    #[arg(long = "verify-checksums", value_enum, value_name = "on|off")]
    pub verify_checksums: Option<OnOff>,
    /// A TCP state timeout in seconds, e.g. `--timeout established=300` (repeatable). States:
    /// none, established, syn_sent, syn_recv, fin_wait, time_wait, close, close_wait,
    /// last_ack, listen, synack.
    #[arg(long = "timeout", value_name = "STATE=SECS", value_parser = parse_timeout)]
    pub timeouts: Vec<(String, u32)>,
    /// This balancer's cluster id (packet-accept ownership).
    #[arg(long = "node-id", value_name = "ID")]
    pub node_id: Option<u32>,
    /// A live balancer of the cluster, this one included (repeatable; replaces the file's list).
    #[arg(long = "member", value_name = "ID[,weight=W]", value_parser = parse_member)]
    pub members: Vec<Member>,
    /// File holding the cluster key that authenticates heartbeats (HMAC-SHA256; at least 16
    /// bytes, trailing whitespace ignored). Required when the cluster lists peers, unless the
    /// config file has `cluster.key` or `cluster.key_file`. There is no flag for the key itself:
    /// command lines are visible to every local user.
    #[arg(long = "cluster-key-file", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Heartbeat period in milliseconds (default 100).
    #[arg(long = "heartbeat-interval", value_name = "MS",
          value_parser = clap::value_parser!(u32).range(10..=60_000))]
    pub heartbeat_interval: Option<u32>,
    /// A peer unheard for this many heartbeat intervals is dead (default 3).
    #[arg(long = "dead-after", value_name = "N",
          value_parser = clap::value_parser!(u32).range(2..=100))]
    pub dead_after: Option<u32>,
    /// After SIGTERM: announce the leave, then keep serving established flows this many
    /// milliseconds before exiting (default 5000; a second signal exits at once).
    #[arg(long = "drain-ms", value_name = "MS",
          value_parser = clap::value_parser!(u32).range(0..=3_600_000))]
    pub drain_ms: Option<u32>,
    /// Seed of the ownership and sh/mh flow hashes, `0x` and 1..=16 hex digits: the same on
    /// every balancer of the cluster, and secret (default 0, or the file's cluster.hash_seed).
    #[arg(long = "hash-seed", value_name = "0xHEX", value_parser = parse_hash_seed)]
    pub hash_seed: Option<u64>,
    /// Health check of every target (local server included): `http` (GET --health-path,
    /// expecting --health-status), `tcp` (connect) or `none` (default, unless the file has
    /// a [health] section).
    #[arg(long = "health-check", value_name = "KIND", value_parser = ["http", "tcp", "none"])]
    pub health_check: Option<String>,
    /// Path of the HTTP health check (default /).
    #[arg(long = "health-path", value_name = "PATH")]
    pub health_path: Option<String>,
    /// Status that means healthy for the HTTP check (default 200).
    #[arg(long = "health-status", value_name = "CODE")]
    pub health_status: Option<u16>,
    /// Health check period, ms (default 200); `--health-timeout` (ms, default 200),
    /// `--rise` (default 2) and `--fall` (default 3) as in keepalived.
    #[arg(long = "health-interval", value_name = "MS")]
    pub health_interval: Option<u32>,
    /// Give up on one health check after this many ms.
    #[arg(long = "health-timeout", value_name = "MS")]
    pub health_timeout: Option<u32>,
    /// Consecutive successful checks that bring a down target back.
    #[arg(long, value_name = "N")]
    pub rise: Option<u32>,
    /// Consecutive failed checks that take a target down.
    #[arg(long, value_name = "N")]
    pub fall: Option<u32>,
    /// Existing TUN device holding the VIP, for local delivery (opened only with bi-active on).
    #[arg(long, value_name = "NAME", default_value = "vip0")]
    pub tun: String,
    /// Control endpoint (HTTP, `GET /stats`). Default: front's first IPv4 address, port 9100.
    #[arg(long, value_name = "ADDR:PORT")]
    pub control: Option<SocketAddr>,
    /// Read buffer per interface in bytes; a frame filling it is dropped as possibly cut.
    #[arg(long = "frame-buffer", value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(2048..=65536))]
    pub frame_buffer: u32,
    /// Socket receive buffer (SO_RCVBUF, forced beyond rmem_max when root).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u32).range(65536..=(1 << 30)))]
    pub rcvbuf: u32,
    /// Socket send buffer (SO_SNDBUF, forced beyond wmem_max when root).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u32).range(65536..=(1 << 30)))]
    pub sndbuf: u32,
    /// Timer tick in milliseconds: connection expiry, ARP retries and rate sampling run on it.
    #[arg(long = "tick-ms", value_name = "MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..=1000))]
    pub tick_ms: u64,
    /// Frame I/O path after pnet has set up the channel: `ring` (default) maps a TPACKET_V2
    /// receive ring of about `--rcvbuf` bytes per interface (slots of `--frame-buffer` bytes)
    /// and reads, rewrites and sends frames in place, forwarded ones with one sendmmsg(2) per
    /// interface and batch: no system call per read and no skb clone per frame (measured
    /// 9-11% less balancer CPU per packet than `mmsg` under saturating load); it falls back to
    /// `mmsg`, with a warning, where a ring cannot be set up. `mmsg` reads up to `--batch`
    /// frames per recvmmsg(2) into its own buffers and sends as `ring` does (~4-8% less CPU
    /// per frame than `direct`); `direct` reads with one recv(2) and sends with one send(2)
    /// per frame; `pnet` uses pnet's receiver/sender (a poll(2) per frame read and per frame
    /// sent, plus a copy: ~25-30% more CPU per frame). Local (TUN) deliveries are one
    /// write(2) per packet in every mode.
    #[arg(long, value_enum, value_name = "MODE", default_value = "ring")]
    pub io: crate::io::packet::IoMode,
    /// Frames per batch: frames read from the ring (at most its size) per sendmmsg(2) call with
    /// `--io ring`, per recvmmsg(2)/sendmmsg(2) call with `mmsg` (memory: N x --frame-buffer
    /// bytes); frames read per wake-up and interface with `direct` and `pnet`.
    #[arg(long, value_name = "N", default_value_t = crate::io::batch::DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..=crate::io::batch::MAX_BATCH as i64))]
    pub batch: u32,
    /// Drop the frames the balancer handles at tc ingress (tcx eBPF programs attached while it
    /// runs), right after its packet sockets took them: front's frames to the VIP and back's
    /// TCP/ICMP not addressed to back itself. Without it the node's kernel carries each of them
    /// through IP input to its own drop (nftables prerouting, a failed route lookup). Falls back
    /// to `off` with a warning when the kernel refuses (no tcx before Linux 6.6, no CAP_BPF).
    #[arg(
        long = "early-drop",
        value_enum,
        value_name = "ON|OFF",
        default_value = "on"
    )]
    pub early_drop: OnOff,
    /// Send frames straight to the driver, past front's and back's queueing discipline
    /// (PACKET_QDISC_BYPASS): less work per frame sent, but no shaping. Leave it off where a
    /// qdisc matters (the harness turns it on only for profiles without emulated link rates).
    #[arg(
        long = "qdisc-bypass",
        value_enum,
        value_name = "ON|OFF",
        default_value = "off"
    )]
    pub qdisc_bypass: OnOff,
    /// Put front and back into promiscuous mode (not needed on veth/bridges; needed on NICs
    /// that filter unicast frames for other MACs).
    #[arg(long)]
    pub promisc: bool,
}

/// `balancer stats` options.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The balancer's control endpoint (its `--control`).
    #[arg(long, value_name = "ADDR:PORT")]
    pub control: SocketAddr,
    /// Print the raw JSON document instead of the table.
    #[arg(long, conflicts_with = "list")]
    pub json: bool,
    /// Print the `ipvsadm -L -n`-like list (weights, active/inactive connections).
    #[arg(long)]
    pub list: bool,
    /// Give up after this many milliseconds.
    #[arg(long = "timeout-ms", value_name = "MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
}

/// A `--real` / `--local` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSpec {
    /// Address.
    pub addr: Ipv4Addr,
    /// Port, if given.
    pub port: Option<u16>,
    /// Weight, if given.
    pub weight: Option<u32>,
    /// MAC, if given.
    pub mac: Option<MacAddr>,
}

fn parse_target(s: &str, allow_mac: bool) -> Result<TargetSpec, String> {
    let mut parts = s.split(',');
    let head = parts.next().unwrap_or_default().trim();
    let (addr, port) = match head.parse::<SocketAddrV4>() {
        Ok(sa) => (*sa.ip(), Some(sa.port())),
        Err(_) => match head.parse::<Ipv4Addr>() {
            Ok(a) => (a, None),
            Err(_) => {
                return Err(format!(
                    "expected an IPv4 ADDR:PORT like 198.18.11.11:80 first, got {head:?}"
                ))
            }
        },
    };
    if port == Some(0) {
        return Err("port 0 is not a service port (expected 1..=65535)".into());
    }
    let mut spec = TargetSpec {
        addr,
        port,
        weight: None,
        mac: None,
    };
    for opt in parts {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k.trim() {
            "weight" => {
                let w: u32 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w| i64::from(*w) <= MAX_WEIGHT)
                    .ok_or_else(|| format!("weight: expected an integer 0..=65535, got {v:?}"))?;
                spec.weight = Some(w);
            }
            "mac" if allow_mac => {
                spec.mac = Some(v.trim().parse().map_err(|e| format!("mac: {e}"))?);
            }
            other => {
                let known = if allow_mac {
                    "weight=W or mac=M"
                } else {
                    "weight=W"
                };
                return Err(format!("unknown option {other:?} (expected {known})"));
            }
        }
    }
    Ok(spec)
}

fn parse_real(s: &str) -> Result<TargetSpec, String> {
    parse_target(s, true)
}

fn parse_local(s: &str) -> Result<TargetSpec, String> {
    parse_target(s, false)
}

const TIMEOUT_NAMES: &str =
    "none, established, syn_sent, syn_recv, fin_wait, time_wait, close, close_wait, last_ack, listen, synack";

fn parse_timeout(s: &str) -> Result<(String, u32), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected STATE=SECS like established=300, got {s:?}"))?;
    let k = k.trim().replace('-', "_");
    if !TIMEOUT_NAMES.split(", ").any(|n| n == k) {
        return Err(format!(
            "unknown TCP state {k:?} (expected one of {TIMEOUT_NAMES})"
        ));
    }
    let secs: u32 = v
        .trim()
        .parse()
        .ok()
        .filter(|s| *s >= 1 && i64::from(*s) <= balancer::config::MAX_TIMEOUT)
        .ok_or_else(|| {
            format!(
                "{k}: expected seconds 1..={}, got {v:?}",
                balancer::config::MAX_TIMEOUT
            )
        })?;
    Ok((k, secs))
}

fn parse_member(s: &str) -> Result<Member, String> {
    let mut parts = s.split(',');
    let id_s = parts.next().unwrap_or_default().trim();
    let id: u32 = id_s
        .parse()
        .map_err(|_| format!("expected a balancer id (integer) first, got {id_s:?}"))?;
    let mut m = Member { id, weight: 1 };
    for opt in parts {
        match opt.split_once('=') {
            Some(("weight", v)) => {
                m.weight = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w| *w <= MAX_MEMBER_WEIGHT)
                    .ok_or_else(|| {
                        format!("weight: expected an integer 0..={MAX_MEMBER_WEIGHT}, got {v:?}")
                    })?;
            }
            _ => return Err(format!("unknown option {opt:?} (expected weight=W)")),
        }
    }
    Ok(m)
}

/// Why flags and file could not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is invalid.
    #[error("configuration file {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// Field-level error.
        source: balancer::config::ConfigError,
    },
    /// The cluster key file could not be read.
    #[error("cannot read cluster key file {path}: {source}")]
    KeyFile {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster key file holds too few bytes.
    #[error("cluster key file {path}: expected at least {MIN_KEY_LEN} bytes (trailing whitespace ignored), got {len}")]
    ShortKey {
        /// The path given.
        path: String,
        /// Bytes found.
        len: usize,
    },
    /// A required setting is in neither flags nor file.
    #[error("missing {0} (give it as a flag or in --config FILE)")]
    Missing(&'static str),
    /// The combination breaks a rule of the configuration.
    #[error("invalid settings (flags override the file; names are the file's fields): {0}")]
    Invalid(#[from] balancer::config::ConfigError),
}

/// The cluster key's bytes: inline, or the key file's content with
/// trailing whitespace trimmed (at least `MIN_KEY_LEN` bytes). `None`
/// without a key (then the configuration has no peers).
pub fn load_key(c: &Config) -> Result<Option<Vec<u8>>, BuildError> {
    let bytes = match &c.cluster.key {
        None => return Ok(None),
        Some(KeySource::Inline(k)) => k.as_bytes().to_vec(),
        Some(KeySource::File(p)) => {
            let path = p.display().to_string();
            let mut b = std::fs::read(p).map_err(|source| BuildError::KeyFile {
                path: path.clone(),
                source,
            })?;
            while b.last().is_some_and(u8::is_ascii_whitespace) {
                b.pop();
            }
            if b.len() < MIN_KEY_LEN {
                return Err(BuildError::ShortKey { path, len: b.len() });
            }
            b
        }
    };
    Ok(Some(bytes))
}

/// Builds the configuration: the file (if any), then each flag on top, then validation.
pub fn build_config(a: &RunArgs) -> Result<Config, BuildError> {
    let base = match &a.config {
        Some(p) => {
            let path = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| BuildError::Read {
                path: path.clone(),
                source,
            })?;
            Some(Config::from_toml_str(&text).map_err(|source| BuildError::File { path, source })?)
        }
        None => None,
    };
    apply_flags(base, a)
}

/// Applies the flags to an optional base configuration (pure part of [`build_config`]).
pub fn apply_flags(base: Option<Config>, a: &RunArgs) -> Result<Config, BuildError> {
    let mut c = match base {
        Some(c) => c,
        None => {
            let vip = a.vip.ok_or(BuildError::Missing("--vip ADDR:PORT"))?;
            Config {
                front_interface: a.front.clone().ok_or(BuildError::Missing("--front IF"))?,
                back_interface: a.back.clone().ok_or(BuildError::Missing("--back IF"))?,
                vip,
                bi_active: false,
                local: LocalServer {
                    addr: Ipv4Addr::LOCALHOST,
                    port: vip.port(),
                    weight: 1,
                },
                real_servers: Vec::new(),
                scheduler: SchedulerKind::Wlc,
                forwarding: Forwarding::Nat,
                timeouts: Default::default(),
                table_size: balancer::config::DEFAULT_TABLE_SIZE,
                verify_checksums: true,
                cluster: Default::default(),
                health: Default::default(),
            }
        }
    };
    if let Some(f) = &a.front {
        c.front_interface = f.clone();
    }
    if let Some(b) = &a.back {
        c.back_interface = b.clone();
    }
    if let Some(v) = a.vip {
        // Keep a default local port in step with the VIP port.
        if c.local.port == c.vip.port() {
            c.local.port = v.port();
        }
        c.vip = v;
    }
    if let Some(l) = a.local {
        c.local = LocalServer {
            addr: l.addr,
            port: l.port.unwrap_or(c.vip.port()),
            weight: l.weight.unwrap_or(c.local.weight),
        };
    }
    if !a.real.is_empty() {
        c.real_servers = a
            .real
            .iter()
            .map(|r| RealServer {
                addr: r.addr,
                port: r.port.unwrap_or(c.vip.port()),
                weight: r.weight.unwrap_or(1),
                mac: r.mac,
            })
            .collect();
    }
    if let Some(s) = a.scheduler {
        c.scheduler = s.into();
    }
    if let Some(m) = a.method {
        c.forwarding = match m {
            MethodArg::Nat => Forwarding::Nat,
            MethodArg::Dr => Forwarding::Dr,
        };
    }
    if let Some(b) = a.bi_active {
        c.bi_active = b == OnOff::On;
    }
    if let Some(n) = a.table_size {
        c.table_size = n;
    }
    if let Some(v) = a.verify_checksums {
        c.verify_checksums = v == OnOff::On;
    }
    for (name, secs) in &a.timeouts {
        for (n, slot) in c.timeouts.fields_mut() {
            if n == name {
                *slot = *secs;
            }
        }
    }
    if !a.members.is_empty() {
        c.cluster.members = a.members.clone();
    }
    if let Some(id) = a.node_id {
        c.cluster.node_id = id;
        if a.members.is_empty() && c.cluster.members.len() == 1 {
            // A single-member default cluster follows the id.
            c.cluster.members[0].id = id;
        }
    }
    apply_cluster_flags(&mut c, a);
    apply_health_flags(&mut c, a);
    c.validate()?;
    Ok(c)
}

fn apply_cluster_flags(c: &mut Config, a: &RunArgs) {
    if let Some(f) = &a.cluster_key_file {
        c.cluster.key = Some(KeySource::File(f.clone()));
    }
    let h = &mut c.cluster.heartbeat;
    if let Some(v) = a.heartbeat_interval {
        h.interval_ms = v;
    }
    if let Some(v) = a.dead_after {
        h.dead_after = v;
    }
    if let Some(v) = a.drain_ms {
        h.drain_ms = v;
    }
    if let Some(s) = a.hash_seed {
        c.cluster.hash_seed = s;
    }
}

fn parse_hash_seed(s: &str) -> Result<u64, String> {
    balancer::config::parse_seed(s)
        .ok_or_else(|| format!("expected \"0x\" and 1..=16 hex digits, got {s:?}"))
}

fn apply_health_flags(c: &mut Config, a: &RunArgs) {
    let h = &mut c.health;
    let (old_path, old_status) = match &h.check {
        CheckKind::Http {
            path,
            expect_status,
        } => (path.clone(), *expect_status),
        _ => ("/".to_string(), 200),
    };
    match a.health_check.as_deref() {
        Some("none") => h.check = CheckKind::None,
        Some("tcp") => h.check = CheckKind::Tcp,
        Some("http") => {
            h.check = CheckKind::Http {
                path: old_path,
                expect_status: old_status,
            }
        }
        _ => {}
    }
    if let CheckKind::Http {
        path,
        expect_status,
    } = &mut h.check
    {
        if let Some(p) = &a.health_path {
            path.clone_from(p);
        }
        if let Some(s) = a.health_status {
            *expect_status = s;
        }
    }
    for (flag, slot) in [
        (a.health_interval, &mut h.interval_ms),
        (a.health_timeout, &mut h.timeout_ms),
        (a.rise, &mut h.rise),
        (a.fall, &mut h.fall),
    ] {
        if let Some(v) = flag {
            *slot = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(v: &[&str]) -> RunArgs {
        let mut full = vec!["balancer", "run"];
        full.extend_from_slice(v);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Run(a) => *a,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_alone_build_a_config() {
        let a = args(&[
            "--front",
            "front",
            "--back",
            "back",
            "--vip",
            "198.19.1.100:80",
            "--real",
            "198.19.2.10:8080,weight=3,mac=02:00:00:00:00:0a",
            "--real",
            "198.19.2.11",
            "--scheduler",
            "rr",
            "--bi-active",
            "on",
            "--local",
            "127.0.0.1:80,weight=2",
            "--timeout",
            "established=300",
            "--timeout",
            "fin-wait=5",
            "--table-size",
            "1000",
            "--verify-checksums",
            "off",
        ]);
        let c = apply_flags(None, &a).unwrap();
        assert_eq!(c.front_interface, "front");
        assert_eq!(c.vip, "198.19.1.100:80".parse().unwrap());
        assert_eq!(c.real_servers.len(), 2);
        assert_eq!(c.real_servers[0].port, 8080);
        assert_eq!(c.real_servers[0].weight, 3);
        assert_eq!(c.real_servers[0].mac, Some(MacAddr([2, 0, 0, 0, 0, 10])));
        assert_eq!(c.real_servers[1].port, 80);
        assert_eq!(c.real_servers[1].mac, None);
        assert_eq!(c.scheduler, SchedulerKind::Rr);
        assert!(c.bi_active);
        assert_eq!(c.local.weight, 2);
        assert_eq!(c.timeouts.established, 300);
        assert_eq!(c.timeouts.fin_wait, 5);
        assert_eq!(c.table_size, 1000);
        assert!(!c.verify_checksums);
        assert!(
            apply_flags(
                None,
                &args(&[
                    "--front",
                    "f",
                    "--back",
                    "b",
                    "--vip",
                    "198.19.1.100:80",
                    "--real",
                    "198.19.2.11"
                ])
            )
            .unwrap()
            .verify_checksums
        );
    }

    #[test]
    fn flags_override_file() {
        let file = Config::from_toml_str(
            "bi_active = true\n[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n[[real_servers]]\naddr = \"10.1.0.2\"\n",
        )
        .unwrap();
        let a = args(&["--back", "b2", "--bi-active", "off", "--method", "dr"]);
        let c = apply_flags(Some(file.clone()), &a).unwrap();
        assert_eq!(c.front_interface, "f");
        assert_eq!(c.back_interface, "b2");
        assert!(!c.bi_active);
        assert_eq!(c.forwarding, Forwarding::Dr);
        assert_eq!(c.real_servers, file.real_servers);
        // VIP port change carries the default local port along.
        let a = args(&["--vip", "10.0.0.1:8080", "--real", "10.1.0.2:8080"]);
        let c = apply_flags(Some(file), &a).unwrap();
        assert_eq!(c.local.port, 8080);
    }

    #[test]
    fn precise_errors() {
        let e = apply_flags(None, &args(&["--front", "f", "--vip", "10.0.0.1:80"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "missing --back IF (give it as a flag or in --config FILE)"
        );
        let e = apply_flags(
            None,
            &args(&["--front", "f", "--back", "b", "--vip", "10.0.0.1:80"]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("real_servers: missing"), "{e}");
        let e = apply_flags(
            None,
            &args(&[
                "--front",
                "f",
                "--back",
                "b",
                "--vip",
                "10.0.0.1:80",
                "--method",
                "dr",
                "--real",
                "10.1.0.2:8080",
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("real_servers[0].port: expected the VIP port 80"),
            "{e}"
        );
        let bad = |v: &[&str]| {
            let mut full = vec!["balancer", "run"];
            full.extend_from_slice(v);
            Cli::try_parse_from(full).unwrap_err().to_string()
        };
        assert!(bad(&["--real", "10.1.0.2:80,wieght=3"]).contains("unknown option \"wieght\""));
        assert!(bad(&["--real", "10.1.0.2:80,weight=70000"])
            .contains("weight: expected an integer 0..=65535"));
        assert!(bad(&["--real", "10.1.0.2:80,mac=zz"]).contains("mac: expected a MAC address"));
        assert!(bad(&["--real", "host:80"]).contains("expected an IPv4 ADDR:PORT"));
        assert!(
            bad(&["--local", "127.0.0.1:80,mac=02:00:00:00:00:01"]).contains("expected weight=W")
        );
        assert!(bad(&["--timeout", "establshed=3"]).contains("unknown TCP state"));
        assert!(bad(&["--timeout", "established=0"]).contains("expected seconds"));
        assert!(bad(&["--scheduler", "fifo"]).contains("invalid value 'fifo'"));
        assert!(bad(&["--member", "x"]).contains("expected a balancer id"));
        assert!(bad(&["--frame-buffer", "100"]).contains("2048"));
        assert!(bad(&["--batch", "0"]).contains("1..=1024"));
        assert!(bad(&["--batch", "1025"]).contains("1..=1024"));
        assert!(bad(&["--io", "xdp"]).contains("invalid value 'xdp'"));
    }

    #[test]
    fn io_defaults_to_batched_mmsg() {
        use crate::io::packet::IoMode;
        let a = args(&[]);
        assert_eq!(a.io, IoMode::Ring);
        assert_eq!(a.batch, 64);
        let a = args(&["--io", "pnet", "--batch", "8"]);
        assert_eq!((a.io, a.batch), (IoMode::Pnet, 8));
        assert_eq!(args(&["--io", "direct"]).io, IoMode::Direct);
        assert_eq!(args(&["--io", "mmsg"]).io, IoMode::Mmsg);
    }

    #[test]
    fn members_and_node_id() {
        let base = [
            "--front",
            "f",
            "--back",
            "b",
            "--vip",
            "10.0.0.1:80",
            "--real",
            "10.1.0.2",
        ];
        let mut v = base.to_vec();
        v.extend_from_slice(&["--node-id", "2"]);
        let c = apply_flags(None, &args(&v)).unwrap();
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.cluster.members, vec![Member { id: 2, weight: 1 }]);
        let mut v = base.to_vec();
        v.extend_from_slice(&["--node-id", "2", "--member", "1", "--member", "2,weight=3"]);
        let e = apply_flags(None, &args(&v)).unwrap_err().to_string();
        assert!(e.contains("cluster.key: missing"), "{e}");
        v.extend_from_slice(&["--cluster-key-file", "/k", "--heartbeat-interval", "50"]);
        let c = apply_flags(None, &args(&v)).unwrap();
        assert_eq!(c.cluster.members[1], Member { id: 2, weight: 3 });
        assert_eq!(c.cluster.key, Some(KeySource::File("/k".into())));
        assert_eq!(c.cluster.heartbeat.interval_ms, 50);
        let mut v = base.to_vec();
        v.extend_from_slice(&["--node-id", "5", "--member", "1"]);
        let e = apply_flags(None, &args(&v)).unwrap_err().to_string();
        assert!(e.contains("cluster.node_id"), "{e}");
    }

    #[test]
    fn health_flags() {
        let base = [
            "--front",
            "f",
            "--back",
            "b",
            "--vip",
            "10.0.0.1:80",
            "--real",
            "10.1.0.2",
        ];
        let c = apply_flags(None, &args(&base)).unwrap();
        assert_eq!(c.health.check, CheckKind::None);
        let mut v = base.to_vec();
        v.extend_from_slice(&[
            "--health-check",
            "http",
            "--health-path",
            "/h",
            "--fall",
            "2",
        ]);
        let c = apply_flags(None, &args(&v)).unwrap();
        assert_eq!(
            c.health.check,
            CheckKind::Http {
                path: "/h".into(),
                expect_status: 200
            }
        );
        assert_eq!(
            (c.health.fall, c.health.rise, c.health.interval_ms),
            (2, 2, 200)
        );
        let mut v = base.to_vec();
        v.extend_from_slice(&["--health-check", "tcp", "--rise", "0"]);
        let e = apply_flags(None, &args(&v)).unwrap_err().to_string();
        assert!(
            e.contains("health.rise: expected an integer 1..=100, got 0"),
            "{e}"
        );
    }
}
