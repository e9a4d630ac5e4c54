//! The balancer configuration, parsed from TOML with precise errors.
//!
//! Parsing walks the TOML tree by hand (not `#[derive(Deserialize)]`) so
//! that every error names the field path, what is expected and what was
//! found, e.g. `real_servers[1].weight: expected an integer 0..=65535, got
//! -3`; unknown keys are rejected with the list of known ones. A CLI-flag
//! front end builds the same [`Config`] and calls [`Config::validate`].
//!
//! ```toml
//! scheduler = "wlc"          # rr | wrr | lc | wlc | sh | mh
//! forwarding = "nat"         # nat | dr (for the real servers)
//! bi_active = true           # the local server takes flows too
//! table_size = 1048576       # connection table capacity
//! verify_checksums = true    # drop input whose IPv4 header or TCP checksum is wrong
//!
//! [interfaces]
//! front = "lb1-front"
//! back = "lb1-back"
//!
//! [vip]
//! addr = "198.18.1.100"
//! port = 80
//!
//! [local]                    # the balancer's own server (bi-active)
//! addr = "127.0.0.1"         # where health checks reach it
//! port = 80                  # must equal vip.port (delivery keeps the port)
//! weight = 1
//!
//! [[real_servers]]
//! addr = "198.18.11.11"
//! port = 80
//! weight = 1
//! mac = "02:00:00:00:01:02"  # optional: else the I/O layer resolves it (ARP)
//!
//! [timeouts]                 # seconds, LVS defaults
//! established = 900
//! syn_recv = 60
//!
//! [cluster]                  # packet-accept ownership and heartbeat membership
//! node_id = 1
//! members = [{ id = 1, weight = 1 }, { id = 2, weight = 1 }]
//! key_file = "/etc/balancer/cluster.key"  # or key = "..." (>= 16 bytes); required with peers
//! heartbeat_interval_ms = 100
//! dead_after = 3             # intervals without a heartbeat before a peer is dead
//! heartbeat_group = "239.255.77.1"  # multicast group on front (TTL 1)
//! heartbeat_port = 7946
//! drain_ms = 5000            # after SIGTERM: keep serving established flows this long
//! hash_seed = "0x1f2e3d4c5b6a7988"  # keys the ownership and sh/mh flow hashes: the same
//!                            # on every balancer, secret (default 0: the seedless hash)
//!
//! [health]                   # health checks of every target (opt-in: default check = "none")
//! check = "http"             # http | tcp | none
//! path = "/"                 # http only
//! expect_status = 200        # http only
//! interval_ms = 200
//! timeout_ms = 200
//! rise = 2                   # successes before a down target is up again
//! fall = 3                   # failures before an up target is down
//! ```
//!
//! [`Config::to_toml_string`] writes a configuration back in this format
//! (every field explicit); parsing its output gives the same [`Config`]
//! (property-tested), so other tools (the harness) build a [`Config`]
//! rather than format TOML themselves.
//!
//! Real server MACs: optional. If absent, the I/O layer resolves them
//! (neighbour table/ARP on `back`) and calls `Balancer::set_real_mac`; until
//! then the server is not a scheduling candidate.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::conntrack::{table_bytes, Timeouts, MAX_CAPACITY};
use crate::ownership::{Member, MAX_MEMBERS, MAX_MEMBER_WEIGHT};
use crate::sched::SchedulerKind;
use crate::wire::MacAddr;

/// How flows reach the real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// LVS-NAT: destination rewritten, replies return through `back`.
    Nat,
    /// LVS-DR: MAC rewritten only, the real server holds the VIP on `lo`.
    Dr,
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forwarding::Nat => "nat",
            Forwarding::Dr => "dr",
        })
    }
}

/// The balancer's own server (bi-active mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalServer {
    /// Where health checks reach it (delivery itself goes to the VIP via the TUN).
    pub addr: Ipv4Addr,
    /// Its port; equal to the VIP port, since local delivery keeps the port.
    pub port: u16,
    /// Scheduling weight 0..=65535 (0 quiesces it).
    pub weight: u32,
}

/// A real server of this balancer's sub-cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServer {
    /// Address on the `back` segment.
    pub addr: Ipv4Addr,
    /// Service port (NAT may change it; DR requires the VIP port).
    pub port: u16,
    /// Scheduling weight 0..=65535 (0 quiesces it).
    pub weight: u32,
    /// MAC on `back`, or `None` for the I/O layer to resolve.
    pub mac: Option<MacAddr>,
}

impl RealServer {
    /// addr:port.
    pub fn endpoint(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, self.port)
    }
}

/// Where the cluster key (HMAC-SHA256 of every heartbeat) comes from. Never a
/// command-line value: a flag would show it in `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// `key = "..."` in the configuration file itself.
    Inline(String),
    /// `key_file = "PATH"`: the file's bytes, trailing whitespace trimmed.
    File(PathBuf),
}

/// Shortest accepted cluster key, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Heartbeat timing and addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatSettings {
    /// Announce period in milliseconds.
    pub interval_ms: u32,
    /// A peer unheard for this many intervals is dead.
    pub dead_after: u32,
    /// Multicast group on `front` (sent with TTL 1: never routed).
    pub group: Ipv4Addr,
    /// UDP port of the heartbeats.
    pub port: u16,
    /// After SIGTERM: how long established flows are still served.
    pub drain_ms: u32,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        Self {
            interval_ms: 100,
            dead_after: 3,
            group: Ipv4Addr::new(239, 255, 77, 1),
            port: 7946,
            drain_ms: 5000,
        }
    }
}

/// Packet-accept ownership settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// This balancer's id.
    pub node_id: u32,
    /// Every balancer that may be a member (this one included); the live
    /// membership is the subset heard from (see `membership`).
    pub members: Vec<Member>,
    /// The heartbeat key; required when `members` lists peers.
    pub key: Option<KeySource>,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatSettings,
    /// Seed of the ownership and flow hashes (sh, mh): every balancer of a
    /// cluster must use the same one, and it should be secret, so that an
    /// outsider cannot aim traffic at one bucket. 0 (the default) keeps
    /// the seedless hash, deterministic across builds.
    pub hash_seed: u64,
}

impl Cluster {
    /// Whether heartbeats run (more than one member configured).
    pub fn has_peers(&self) -> bool {
        self.members.len() > 1
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node_id: 1,
            members: vec![Member { id: 1, weight: 1 }],
            key: None,
            heartbeat: HeartbeatSettings::default(),
            hash_seed: 0,
        }
    }
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// No checks: every target is up.
    None,
    /// A TCP connect to the target's address and port.
    Tcp,
    /// An HTTP/1.1 GET of `path`, expecting status `expect_status`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Status code that means healthy.
        expect_status: u16,
    },
}

impl CheckKind {
    /// Config name (`none`, `tcp`, `http`).
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// Health checks of every target (local server included), keepalived-like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSettings {
    /// The check.
    pub check: CheckKind,
    /// Period between the starts of two checks of one target, ms.
    pub interval_ms: u32,
    /// Give up on one check after this many ms.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down target up.
    pub rise: u32,
    /// Consecutive failures that take an up target down.
    pub fall: u32,
}

impl HealthSettings {
    /// The defaults with a given check: a dead target is down within
    /// `fall * interval` = 600 ms (+ `timeout` when it stops answering).
    pub fn with_check(check: CheckKind) -> Self {
        Self {
            check,
            interval_ms: 200,
            timeout_ms: 200,
            rise: 2,
            fall: 3,
        }
    }
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self::with_check(CheckKind::None)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Interface on the LB LAN (clients, VIP).
    pub front_interface: String,
    /// Interface on the sub-cluster LAN (real servers).
    pub back_interface: String,
    /// The virtual service.
    pub vip: SocketAddrV4,
    /// Whether the local server takes flows (bi-active) or the balancer only forwards.
    pub bi_active: bool,
    /// The local server.
    pub local: LocalServer,
    /// Real servers; `Target::Real(i)` is `real_servers[i]`.
    pub real_servers: Vec<RealServer>,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Forwarding method to real servers.
    pub forwarding: Forwarding,
    /// TCP state timeouts.
    pub timeouts: Timeouts,
    /// Connection table capacity.
    pub table_size: usize,
    /// Whether input frames' IPv4 header and TCP checksums are verified
    /// (RFC 1071); off only where a NIC or veth left them partial.
    pub verify_checksums: bool,
    /// Ownership.
    pub cluster: Cluster,
    /// Health checks.
    pub health: HealthSettings,
}

/// A configuration error, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid TOML.
    #[error("TOML syntax error: {0}")]
    Syntax(String),
    /// A field has the wrong type or value.
    #[error("{path}: expected {expected}, got {got}")]
    Invalid {
        /// Field path, e.g. `real_servers[1].weight`.
        path: String,
        /// What is accepted.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A required field is absent.
    #[error("{path}: missing (expected {expected})")]
    Missing {
        /// Field path.
        path: String,
        /// What is accepted.
        expected: String,
    },
    /// A key the configuration does not know (a typo?).
    #[error("{path}: unknown field (known fields: {known})")]
    Unknown {
        /// Field path.
        path: String,
        /// Known keys at that level.
        known: String,
    },
}

fn invalid(path: &str, expected: &str, got: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// A short rendering of a TOML value for error messages.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

/// A table being read, with its path, that remembers the keys consumed.
struct Reader<'a> {
    t: &'a Table,
    path: String,
    known: &'static [&'static str],
}

impl<'a> Reader<'a> {
    fn new(
        t: &'a Table,
        path: String,
        known: &'static [&'static str],
    ) -> Result<Self, ConfigError> {
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                return Err(ConfigError::Unknown {
                    path: join(&path, k),
                    known: known.join(", "),
                });
            }
        }
        Ok(Self { t, path, known })
    }
    fn p(&self, k: &str) -> String {
        debug_assert!(self.known.contains(&k));
        join(&self.path, k)
    }
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.t.get(k)
    }
    fn req(&self, k: &str, expected: &str) -> Result<&'a Value, ConfigError> {
        self.get(k).ok_or_else(|| ConfigError::Missing {
            path: self.p(k),
            expected: expected.into(),
        })
    }
    fn string(&self, k: &str, expected: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(invalid(&self.p(k), expected, show(v))),
        }
    }
    fn req_string(&self, k: &str, expected: &str) -> Result<&'a str, ConfigError> {
        self.req(k, expected)?;
        self.string(k, expected).map(|s| s.unwrap_or_default())
    }
    fn int(&self, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, ConfigError> {
        let expected = format!("an integer {lo}..={hi}");
        match self.get(k) {
            None => Ok(None),
            Some(Value::Integer(i)) if (lo..=hi).contains(i) => Ok(Some(*i)),
            Some(v) => Err(invalid(&self.p(k), &expected, show(v))),
        }
    }
    fn req_int(&self, k: &str, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        self.req(k, &format!("an integer {lo}..={hi}"))?;
        self.int(k, lo, hi).map(|v| v.unwrap_or_default())
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid(&self.p(k), "true or false", show(v))),
        }
    }
    fn ipv4(&self, k: &str) -> Result<Option<Ipv4Addr>, ConfigError> {
        const E: &str = "an IPv4 address like \"198.18.1.100\"";
        match self.string(k, E)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| invalid(&self.p(k), E, format!("{s:?}"))),
        }
    }
    fn req_ipv4(&self, k: &str) -> Result<Ipv4Addr, ConfigError> {
        self.req(k, "an IPv4 address like \"198.18.1.100\"")?;
        self.ipv4(k).map(|a| a.unwrap_or(Ipv4Addr::UNSPECIFIED))
    }
    fn table(
        &self,
        k: &str,
        known: &'static [&'static str],
    ) -> Result<Option<Reader<'a>>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Table(t)) => Reader::new(t, self.p(k), known).map(Some),
            Some(v) => Err(invalid(&self.p(k), "a table", show(v))),
        }
    }
    fn array_of_tables(
        &self,
        k: &str,
        known: &'static [&'static str],
    ) -> Result<Vec<Reader<'a>>, ConfigError> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let path = format!("{}[{i}]", self.p(k));
                    match v {
                        Value::Table(t) => Reader::new(t, path, known),
                        other => Err(invalid(&path, "a table", show(other))),
                    }
                })
                .collect(),
            Some(v) => Err(invalid(&self.p(k), "an array of tables", show(v))),
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Largest scheduling weight (as in LVS's 16-bit-range weights).
pub const MAX_WEIGHT: i64 = 65535;
/// Largest timeout in seconds (one week).
pub const MAX_TIMEOUT: i64 = 7 * 24 * 3600;
/// Default connection table capacity.
pub const DEFAULT_TABLE_SIZE: usize = 1 << 20;

const TOP: &[&str] = &[
    "interfaces",
    "vip",
    "bi_active",
    "local",
    "real_servers",
    "scheduler",
    "forwarding",
    "timeouts",
    "table_size",
    "verify_checksums",
    "cluster",
    "health",
];
const IFACES: &[&str] = &["front", "back"];
const VIP: &[&str] = &["addr", "port"];
const LOCAL: &[&str] = &["addr", "port", "weight"];
const REAL: &[&str] = &["addr", "port", "weight", "mac"];
const TIMEOUTS: &[&str] = &[
    "none",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "synack",
];
const CLUSTER: &[&str] = &[
    "node_id",
    "members",
    "key",
    "key_file",
    "heartbeat_interval_ms",
    "dead_after",
    "heartbeat_group",
    "heartbeat_port",
    "drain_ms",
    "hash_seed",
];
const HEALTH: &[&str] = &[
    "check",
    "path",
    "expect_status",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
];
const MEMBER: &[&str] = &["id", "weight"];

fn parse_cluster(c: &Reader<'_>) -> Result<Cluster, ConfigError> {
    let node_id = c.req_int("node_id", 0, i64::from(u32::MAX))? as u32;
    let mut members = Vec::new();
    for m in c.array_of_tables("members", MEMBER)? {
        members.push(Member {
            id: m.req_int("id", 0, i64::from(u32::MAX))? as u32,
            weight: m
                .int("weight", 0, i64::from(MAX_MEMBER_WEIGHT))?
                .unwrap_or(1) as u32,
        });
    }
    if c.get("members").is_none() {
        members.push(Member {
            id: node_id,
            weight: 1,
        });
    }
    let key = match (
        c.string("key", "the cluster key as a string")?,
        c.string("key_file", "a path to the cluster key file")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "cluster.key_file",
                "either cluster.key or cluster.key_file, not both",
                "both",
            ))
        }
        (Some(k), None) => Some(KeySource::Inline(k.to_string())),
        (None, Some(f)) => Some(KeySource::File(PathBuf::from(f))),
        (None, None) => None,
    };
    let d = HeartbeatSettings::default();
    let heartbeat = HeartbeatSettings {
        interval_ms: c
            .int("heartbeat_interval_ms", 10, MAX_INTERVAL_MS)?
            .map_or(d.interval_ms, |v| v as u32),
        dead_after: c
            .int("dead_after", 2, MAX_DEAD_AFTER)?
            .map_or(d.dead_after, |v| v as u32),
        group: c.ipv4("heartbeat_group")?.unwrap_or(d.group),
        port: c
            .int("heartbeat_port", 1, 65535)?
            .map_or(d.port, |v| v as u16),
        drain_ms: c
            .int("drain_ms", 0, MAX_DRAIN_MS)?
            .map_or(d.drain_ms, |v| v as u32),
    };
    Ok(Cluster {
        node_id,
        members,
        key,
        heartbeat,
        hash_seed: parse_hash_seed(c)?,
    })
}

/// What `cluster.hash_seed` accepts.
const HASH_SEED_EXPECTED: &str =
    "a 64-bit seed: \"0x\" and 1..=16 hex digits, or a non-negative integer";

/// `cluster.hash_seed`: a hex string covers all 64 bits (TOML integers are signed).
fn parse_hash_seed(c: &Reader<'_>) -> Result<u64, ConfigError> {
    match c.get("hash_seed") {
        None => Ok(0),
        Some(Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
        Some(Value::String(s)) => parse_seed(s)
            .ok_or_else(|| invalid(&c.p("hash_seed"), HASH_SEED_EXPECTED, format!("{s:?}"))),
        Some(v) => Err(invalid(&c.p("hash_seed"), HASH_SEED_EXPECTED, show(v))),
    }
}

/// Parses `0x` followed by 1..=16 hex digits (the CLI flag uses it too).
pub fn parse_seed(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn parse_health(h: &Reader<'_>) -> Result<HealthSettings, ConfigError> {
    let check = match h.string("check", "http, tcp or none")? {
        None | Some("none") => CheckKind::None,
        Some("tcp") => CheckKind::Tcp,
        Some("http") => CheckKind::Http {
            path: h
                .string("path", "an HTTP path like \"/\"")?
                .unwrap_or("/")
                .to_string(),
            expect_status: h.int("expect_status", 100, 599)?.map_or(200, |v| v as u16),
        },
        Some(s) => {
            return Err(invalid(
                "health.check",
                "http, tcp or none",
                format!("{s:?}"),
            ))
        }
    };
    if !matches!(check, CheckKind::Http { .. }) {
        for k in ["path", "expect_status"] {
            if h.get(k).is_some() {
                return Err(invalid(
                    &h.p(k),
                    "no such field unless check = \"http\"",
                    "a value",
                ));
            }
        }
    }
    let d = HealthSettings::with_check(check);
    Ok(HealthSettings {
        interval_ms: h
            .int("interval_ms", 10, MAX_INTERVAL_MS)?
            .map_or(d.interval_ms, |v| v as u32),
        timeout_ms: h
            .int("timeout_ms", 1, MAX_INTERVAL_MS)?
            .map_or(d.timeout_ms, |v| v as u32),
        rise: h
            .int("rise", 1, MAX_RISE_FALL)?
            .map_or(d.rise, |v| v as u32),
        fall: h
            .int("fall", 1, MAX_RISE_FALL)?
            .map_or(d.fall, |v| v as u32),
        ..d
    })
}

fn in_range(path: &str, v: u32, lo: i64, hi: i64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&i64::from(v)) {
        Ok(())
    } else {
        Err(invalid(path, &format!("an integer {lo}..={hi}"), v))
    }
}

/// Largest heartbeat or health-check interval, ms (one minute).
pub const MAX_INTERVAL_MS: i64 = 60_000;
/// Largest `dead_after` (intervals).
pub const MAX_DEAD_AFTER: i64 = 100;
/// Largest drain period, ms (one hour).
pub const MAX_DRAIN_MS: i64 = 3_600_000;
/// Largest `rise` / `fall`.
pub const MAX_RISE_FALL: i64 = 100;

/// What `table_size` accepts, with the memory it costs, for error messages.
fn table_size_expected() -> String {
    format!(
        "an integer 1..={MAX_CAPACITY} (the connection table reserves about {} bytes per entry up front, {:.1} GiB at the limit)",
        table_bytes(1 << 20) >> 20,
        table_bytes(MAX_CAPACITY) as f64 / f64::from(1u32 << 30)
    )
}

impl Config {
    /// Parses and validates a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let root: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string().trim().to_string()))?;
        let r = Reader::new(&root, String::new(), TOP)?;

        let ifaces = r
            .table("interfaces", IFACES)?
            .ok_or_else(|| ConfigError::Missing {
                path: "interfaces".into(),
                expected: "a table with front and back interface names".into(),
            })?;
        let front = ifaces.req_string("front", "an interface name")?.to_string();
        let back = ifaces.req_string("back", "an interface name")?.to_string();

        let vip = r.table("vip", VIP)?.ok_or_else(|| ConfigError::Missing {
            path: "vip".into(),
            expected: "a table with addr and port".into(),
        })?;
        let vip = SocketAddrV4::new(vip.req_ipv4("addr")?, vip.req_int("port", 1, 65535)? as u16);

        let bi_active = r.bool("bi_active")?.unwrap_or(false);
        let local = match r.table("local", LOCAL)? {
            None => LocalServer {
                addr: Ipv4Addr::LOCALHOST,
                port: vip.port(),
                weight: 1,
            },
            Some(l) => LocalServer {
                addr: l.ipv4("addr")?.unwrap_or(Ipv4Addr::LOCALHOST),
                port: l.int("port", 1, 65535)?.map_or(vip.port(), |p| p as u16),
                weight: l.int("weight", 0, MAX_WEIGHT)?.unwrap_or(1) as u32,
            },
        };

        let mut real_servers = Vec::new();
        for rs in r.array_of_tables("real_servers", REAL)? {
            let mac = match rs.string("mac", "a MAC address like \"02:00:00:00:00:01\"")? {
                None => None,
                Some(s) => Some(s.parse::<MacAddr>().map_err(|_| {
                    invalid(
                        &rs.p("mac"),
                        "a MAC address like \"02:00:00:00:00:01\"",
                        format!("{s:?}"),
                    )
                })?),
            };
            real_servers.push(RealServer {
                addr: rs.req_ipv4("addr")?,
                port: rs.int("port", 1, 65535)?.map_or(vip.port(), |p| p as u16),
                weight: rs.int("weight", 0, MAX_WEIGHT)?.unwrap_or(1) as u32,
                mac,
            });
        }

        let scheduler = match r.string("scheduler", SchedulerKind::NAMES)? {
            None => SchedulerKind::Wlc,
            Some(s) => s.parse().map_err(|_| {
                invalid(
                    "scheduler",
                    &format!("one of {}", SchedulerKind::NAMES),
                    format!("{s:?}"),
                )
            })?,
        };
        let forwarding = match r.string("forwarding", "nat or dr")? {
            None | Some("nat") => Forwarding::Nat,
            Some("dr") => Forwarding::Dr,
            Some(s) => return Err(invalid("forwarding", "nat or dr", format!("{s:?}"))),
        };

        let mut timeouts = Timeouts::default();
        if let Some(t) = r.table("timeouts", TIMEOUTS)? {
            for (name, slot) in timeouts.fields_mut() {
                if let Some(v) = t.int(name, 1, MAX_TIMEOUT)? {
                    *slot = v as u32;
                }
            }
        }
        let table_size = match r.get("table_size") {
            None => DEFAULT_TABLE_SIZE,
            Some(Value::Integer(i)) if (1..=MAX_CAPACITY as i64).contains(i) => *i as usize,
            Some(v) => return Err(invalid("table_size", &table_size_expected(), show(v))),
        };
        let verify_checksums = r.bool("verify_checksums")?.unwrap_or(true);

        let cluster = match r.table("cluster", CLUSTER)? {
            None => Cluster::default(),
            Some(c) => parse_cluster(&c)?,
        };
        let health = match r.table("health", HEALTH)? {
            None => HealthSettings::default(),
            Some(h) => parse_health(&h)?,
        };

        let cfg = Config {
            front_interface: front,
            back_interface: back,
            vip,
            bi_active,
            local,
            real_servers,
            scheduler,
            forwarding,
            timeouts,
            table_size,
            verify_checksums,
            cluster,
            health,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the cross-field rules (also for configurations built from CLI flags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (path, name) in [
            ("interfaces.front", &self.front_interface),
            ("interfaces.back", &self.back_interface),
        ] {
            // Linux IFNAMSIZ is 16 including the NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(invalid(
                    path,
                    "an interface name of 1..=15 characters without '/' or spaces",
                    format!("{name:?}"),
                ));
            }
        }
        if self.vip.port() == 0 {
            return Err(invalid("vip.port", "an integer 1..=65535", 0));
        }
        if self.vip.ip().is_unspecified()
            || self.vip.ip().is_broadcast()
            || self.vip.ip().is_multicast()
        {
            return Err(invalid("vip.addr", "a unicast IPv4 address", self.vip.ip()));
        }
        if self.local.port != self.vip.port() {
            return Err(invalid(
                "local.port",
                &format!(
                    "the VIP port {} (local delivery is direct routing and keeps the destination port)",
                    self.vip.port()
                ),
                self.local.port,
            ));
        }
        if self.local.weight > MAX_WEIGHT as u32 {
            return Err(invalid(
                "local.weight",
                "an integer 0..=65535",
                self.local.weight,
            ));
        }
        if self.real_servers.len() >= usize::from(u16::MAX) {
            return Err(invalid(
                "real_servers",
                "at most 65534 servers",
                self.real_servers.len(),
            ));
        }
        if self.real_servers.is_empty() && !self.bi_active {
            return Err(ConfigError::Missing {
                path: "real_servers".into(),
                expected: "at least one real server, or bi_active = true".into(),
            });
        }
        for (i, rs) in self.real_servers.iter().enumerate() {
            if rs.weight > MAX_WEIGHT as u32 {
                return Err(invalid(
                    &format!("real_servers[{i}].weight"),
                    "an integer 0..=65535",
                    rs.weight,
                ));
            }
            if rs.addr.is_unspecified() || rs.addr.is_broadcast() || rs.addr.is_multicast() {
                return Err(invalid(
                    &format!("real_servers[{i}].addr"),
                    "a unicast IPv4 address",
                    rs.addr,
                ));
            }
            if rs.port == 0 {
                return Err(invalid(
                    &format!("real_servers[{i}].port"),
                    "an integer 1..=65535",
                    0,
                ));
            }
            if self.forwarding == Forwarding::Dr && rs.port != self.vip.port() {
                return Err(invalid(
                    &format!("real_servers[{i}].port"),
                    &format!(
                        "the VIP port {} with forwarding = \"dr\" (DR cannot change ports)",
                        self.vip.port()
                    ),
                    rs.port,
                ));
            }
            if let Some(j) = self.real_servers[..i]
                .iter()
                .position(|o| o.endpoint() == rs.endpoint())
            {
                return Err(invalid(
                    &format!("real_servers[{i}]"),
                    &format!("an endpoint distinct from real_servers[{j}]"),
                    rs.endpoint(),
                ));
            }
        }
        for (name, v) in self.timeouts.fields() {
            if v == 0 || i64::from(v) > MAX_TIMEOUT {
                return Err(invalid(
                    &format!("timeouts.{name}"),
                    &format!("an integer 1..={MAX_TIMEOUT}"),
                    v,
                ));
            }
        }
        if self.table_size == 0 || self.table_size > MAX_CAPACITY {
            return Err(invalid(
                "table_size",
                &table_size_expected(),
                self.table_size,
            ));
        }
        let ms = &self.cluster.members;
        if ms.len() > MAX_MEMBERS {
            return Err(invalid(
                "cluster.members",
                &format!("at most {MAX_MEMBERS} balancers"),
                ms.len(),
            ));
        }
        for (i, m) in ms.iter().enumerate() {
            if ms[..i].iter().any(|o| o.id == m.id) {
                return Err(invalid(
                    &format!("cluster.members[{i}].id"),
                    "an id not listed before",
                    m.id,
                ));
            }
            if m.weight > MAX_MEMBER_WEIGHT {
                return Err(invalid(
                    &format!("cluster.members[{i}].weight"),
                    "an integer 0..=255",
                    m.weight,
                ));
            }
        }
        if !ms.iter().any(|m| m.id == self.cluster.node_id) {
            return Err(invalid(
                "cluster.node_id",
                "the id of one of cluster.members",
                self.cluster.node_id,
            ));
        }
        self.validate_heartbeat()?;
        self.validate_health()
    }

    fn validate_heartbeat(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        match &c.key {
            None if c.has_peers() => {
                return Err(ConfigError::Missing {
                    path: "cluster.key".into(),
                    expected:
                        "a cluster key (cluster.key or cluster.key_file, or --cluster-key-file) \
                               to authenticate heartbeats, since cluster.members lists peers"
                            .into(),
                })
            }
            Some(KeySource::Inline(k)) if k.len() < MIN_KEY_LEN => {
                return Err(invalid(
                    "cluster.key",
                    &format!("at least {MIN_KEY_LEN} bytes"),
                    format!("{} bytes", k.len()),
                ))
            }
            Some(KeySource::File(p)) if p.as_os_str().is_empty() => {
                return Err(invalid("cluster.key_file", "a path", "\"\""))
            }
            _ => {}
        }
        let h = &c.heartbeat;
        in_range(
            "cluster.heartbeat_interval_ms",
            h.interval_ms,
            10,
            MAX_INTERVAL_MS,
        )?;
        in_range("cluster.dead_after", h.dead_after, 2, MAX_DEAD_AFTER)?;
        in_range("cluster.drain_ms", h.drain_ms, 0, MAX_DRAIN_MS)?;
        in_range("cluster.heartbeat_port", u32::from(h.port), 1, 65535)?;
        if !h.group.is_multicast() || h.group.is_link_local() {
            return Err(invalid(
                "cluster.heartbeat_group",
                "an IPv4 multicast group 224.0.1.0..=239.255.255.255",
                h.group,
            ));
        }
        Ok(())
    }

    fn validate_health(&self) -> Result<(), ConfigError> {
        let h = &self.health;
        in_range("health.interval_ms", h.interval_ms, 10, MAX_INTERVAL_MS)?;
        in_range("health.timeout_ms", h.timeout_ms, 1, MAX_INTERVAL_MS)?;
        in_range("health.rise", h.rise, 1, MAX_RISE_FALL)?;
        in_range("health.fall", h.fall, 1, MAX_RISE_FALL)?;
        if let CheckKind::Http {
            path,
            expect_status,
        } = &h.check
        {
            if !path.starts_with('/') || path.len() > 1024 || path.contains(char::is_whitespace) {
                return Err(invalid(
                    "health.path",
                    "a path of at most 1024 characters starting with '/' without spaces",
                    format!("{path:?}"),
                ));
            }
            in_range("health.expect_status", u32::from(*expect_status), 100, 599)?;
        }
        Ok(())
    }

    /// Writes the configuration in the TOML format [`Config::from_toml_str`]
    /// reads, every field explicit.
    pub fn to_toml_string(&self) -> String {
        let mut root = Table::new();
        let tbl = |pairs: Vec<(&str, Value)>| -> Value {
            Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let s = |x: &dyn fmt::Display| Value::String(x.to_string());
        let i = |x: i64| Value::Integer(x);
        root.insert("scheduler".into(), s(&self.scheduler));
        root.insert("forwarding".into(), s(&self.forwarding));
        root.insert("bi_active".into(), Value::Boolean(self.bi_active));
        root.insert("table_size".into(), i(self.table_size as i64));
        root.insert(
            "verify_checksums".into(),
            Value::Boolean(self.verify_checksums),
        );
        root.insert(
            "interfaces".into(),
            tbl(vec![
                ("front", s(&self.front_interface)),
                ("back", s(&self.back_interface)),
            ]),
        );
        root.insert(
            "vip".into(),
            tbl(vec![
                ("addr", s(self.vip.ip())),
                ("port", i(self.vip.port().into())),
            ]),
        );
        root.insert(
            "local".into(),
            tbl(vec![
                ("addr", s(&self.local.addr)),
                ("port", i(self.local.port.into())),
                ("weight", i(self.local.weight.into())),
            ]),
        );
        let reals = self.real_servers.iter().map(|r| {
            let mut v = vec![
                ("addr", s(&r.addr)),
                ("port", i(r.port.into())),
                ("weight", i(r.weight.into())),
            ];
            if let Some(m) = r.mac {
                v.push(("mac", s(&m)));
            }
            tbl(v)
        });
        root.insert("real_servers".into(), Value::Array(reals.collect()));
        let timeouts = self.timeouts.fields().map(|(n, v)| (n, i(v.into())));
        root.insert("timeouts".into(), tbl(timeouts.to_vec()));
        root.insert("cluster".into(), self.cluster_toml());
        root.insert("health".into(), self.health_toml());
        // A table of plain values always serialises.
        toml::to_string(&root).unwrap_or_default()
    }

    fn cluster_toml(&self) -> Value {
        let c = &self.cluster;
        let h = &c.heartbeat;
        let mut t = Table::new();
        t.insert("node_id".into(), Value::Integer(c.node_id.into()));
        let members = c.members.iter().map(|m| {
            let mut t = Table::new();
            t.insert("id".into(), Value::Integer(m.id.into()));
            t.insert("weight".into(), Value::Integer(m.weight.into()));
            Value::Table(t)
        });
        t.insert("members".into(), Value::Array(members.collect()));
        match &c.key {
            Some(KeySource::Inline(k)) => t.insert("key".into(), Value::String(k.clone())),
            Some(KeySource::File(p)) => t.insert(
                "key_file".into(),
                Value::String(p.to_string_lossy().into_owned()),
            ),
            None => None,
        };
        for (k, v) in [
            ("heartbeat_interval_ms", h.interval_ms),
            ("dead_after", h.dead_after),
            ("heartbeat_port", h.port.into()),
            ("drain_ms", h.drain_ms),
        ] {
            t.insert(k.into(), Value::Integer(v.into()));
        }
        t.insert("heartbeat_group".into(), Value::String(h.group.to_string()));
        t.insert(
            "hash_seed".into(),
            Value::String(format!("{:#018x}", c.hash_seed)),
        );
        Value::Table(t)
    }

    fn health_toml(&self) -> Value {
        let h = &self.health;
        let mut t = Table::new();
        t.insert("check".into(), Value::String(h.check.name().into()));
        if let CheckKind::Http {
            path,
            expect_status,
        } = &h.check
        {
            t.insert("path".into(), Value::String(path.clone()));
            t.insert(
                "expect_status".into(),
                Value::Integer((*expect_status).into()),
            );
        }
        for (k, v) in [
            ("interval_ms", h.interval_ms),
            ("timeout_ms", h.timeout_ms),
            ("rise", h.rise),
            ("fall", h.fall),
        ] {
            t.insert(k.into(), Value::Integer(v.into()));
        }
        Value::Table(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
scheduler = "wrr"
forwarding = "nat"
bi_active = true
table_size = 4096

[interfaces]
front = "lb1-front"
back = "lb1-back"

[vip]
addr = "198.18.1.100"
port = 80

[local]
weight = 2

[[real_servers]]
addr = "198.18.11.11"
weight = 3
mac = "02:00:00:00:01:02"

[[real_servers]]
addr = "198.18.11.12"
port = 8080

[timeouts]
established = 300

[cluster]
node_id = 2
members = [{ id = 1 }, { id = 2, weight = 3 }]
key = "0123456789abcdef-test"
heartbeat_interval_ms = 50

[health]
check = "http"
path = "/health"
"#;

    #[test]
    fn parses_good_config() {
        let c = Config::from_toml_str(GOOD).unwrap();
        assert_eq!(c.vip, "198.18.1.100:80".parse().unwrap());
        assert_eq!(c.scheduler, SchedulerKind::Wrr);
        assert!(c.bi_active);
        assert_eq!(c.local.weight, 2);
        assert_eq!(c.local.port, 80);
        assert_eq!(c.real_servers.len(), 2);
        assert_eq!(c.real_servers[0].port, 80);
        assert_eq!(c.real_servers[0].mac, Some(MacAddr([2, 0, 0, 0, 1, 2])));
        assert_eq!(c.real_servers[1].weight, 1);
        assert_eq!(c.real_servers[1].mac, None);
        assert_eq!(c.timeouts.established, 300);
        assert_eq!(c.timeouts.syn_recv, 60);
        assert_eq!(c.table_size, 4096);
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.cluster.members[1], Member { id: 2, weight: 3 });
        assert_eq!(
            c.cluster.key,
            Some(KeySource::Inline("0123456789abcdef-test".into()))
        );
        assert_eq!(c.cluster.heartbeat.interval_ms, 50);
        assert_eq!(c.cluster.heartbeat.dead_after, 3);
        assert_eq!(
            c.health.check,
            CheckKind::Http {
                path: "/health".into(),
                expect_status: 200
            }
        );
        assert_eq!((c.health.rise, c.health.fall), (2, 3));
    }

    #[test]
    fn cluster_and_health_errors() {
        let no_key = GOOD.replace("key = \"0123456789abcdef-test\"\n", "");
        assert!(err(&no_key).starts_with("cluster.key: missing (expected a cluster key"));
        let short = GOOD.replace("0123456789abcdef-test", "short");
        assert_eq!(
            err(&short),
            "cluster.key: expected at least 16 bytes, got 5 bytes"
        );
        let both = GOOD.replace(
            "heartbeat_interval_ms",
            "key_file = \"/k\"\nheartbeat_interval_ms",
        );
        assert!(err(&both).starts_with("cluster.key_file: expected either"));
        let group = GOOD.replace(
            "heartbeat_interval_ms = 50",
            "heartbeat_group = \"198.18.1.1\"",
        );
        assert!(err(&group).starts_with("cluster.heartbeat_group: expected an IPv4 multicast"));
        let dead = GOOD.replace("heartbeat_interval_ms = 50", "dead_after = 1");
        assert_eq!(
            err(&dead),
            "cluster.dead_after: expected an integer 2..=100, got 1"
        );
        let check = GOOD.replace("check = \"http\"", "check = \"icmp\"");
        assert_eq!(
            err(&check),
            "health.check: expected http, tcp or none, got \"icmp\""
        );
        let path = GOOD.replace("\"/health\"", "\"health\"");
        assert!(err(&path).starts_with("health.path: expected a path"));
        let tcp_path = GOOD.replace("check = \"http\"", "check = \"tcp\"");
        assert!(err(&tcp_path).starts_with("health.path: expected no such field"));
        // One member: no peers, no key needed.
        let alone = no_key.replace("members = [{ id = 1 }, { id = 2, weight = 3 }]", "");
        assert!(Config::from_toml_str(&alone).is_ok());
    }

    #[test]
    fn serialiser_output_reads_back() {
        let c = Config::from_toml_str(GOOD).unwrap();
        let text = c.to_toml_string();
        assert_eq!(Config::from_toml_str(&text).unwrap(), c, "{text}");
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn hash_seed_forms_and_errors() {
        let with = |v: &str| GOOD.replace("[cluster]\n", &format!("[cluster]\nhash_seed = {v}\n"));
        assert!(GOOD.contains("[cluster]\n"));
        let seed = |v: &str| Config::from_toml_str(&with(v)).map(|c| c.cluster.hash_seed);
        assert_eq!(seed("\"0xffffffffffffffff\""), Ok(u64::MAX));
        assert_eq!(seed("\"0x2a\""), Ok(42));
        assert_eq!(seed("42"), Ok(42));
        assert_eq!(Config::from_toml_str(GOOD).unwrap().cluster.hash_seed, 0);
        for bad in [
            "\"42\"",
            "\"0x\"",
            "\"0x1ffffffffffffffff\"",
            "\"0xzz\"",
            "-1",
            "true",
        ] {
            let e = err(&with(bad));
            assert!(
                e.starts_with("cluster.hash_seed: expected a 64-bit seed: \"0x\" and 1..=16 hex digits, or a non-negative integer, got "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn precise_errors() {
        let bad_weight = GOOD.replace("port = 8080", "port = 8080\nweight = -3");
        assert_eq!(
            err(&bad_weight),
            "real_servers[1].weight: expected an integer 0..=65535, got -3"
        );
        let typo = GOOD.replace("weight = 3\n", "wieght = 3\n");
        assert_eq!(
            err(&typo),
            "real_servers[0].wieght: unknown field (known fields: addr, port, weight, mac)"
        );
        let bad_ip = GOOD.replace("198.18.11.12", "198.18.11.300");
        assert_eq!(
            err(&bad_ip),
            "real_servers[1].addr: expected an IPv4 address like \"198.18.1.100\", got \"198.18.11.300\""
        );
        let bad_sched = GOOD.replace("\"wrr\"", "\"fifo\"");
        assert_eq!(
            err(&bad_sched),
            "scheduler: expected one of rr, wrr, lc, wlc, sh, mh, got \"fifo\""
        );
        let bad_mac = GOOD.replace("02:00:00:00:01:02", "02:00:00:00:01");
        assert!(err(&bad_mac).starts_with("real_servers[0].mac: expected a MAC address"));
        let no_vip = GOOD.replace("[vip]\naddr = \"198.18.1.100\"\n", "[vip]\n");
        assert_eq!(
            err(&no_vip),
            "vip.addr: missing (expected an IPv4 address like \"198.18.1.100\")"
        );
        let bad_type = GOOD.replace("bi_active = true", "bi_active = \"yes\"");
        assert_eq!(
            err(&bad_type),
            "bi_active: expected true or false, got \"yes\""
        );
        let bad_timeout = GOOD.replace("established = 300", "established = 0");
        assert_eq!(
            err(&bad_timeout),
            "timeouts.established: expected an integer 1..=604800, got 0"
        );
        let bad_node = GOOD.replace("node_id = 2", "node_id = 9");
        assert_eq!(
            err(&bad_node),
            "cluster.node_id: expected the id of one of cluster.members, got 9"
        );
        let members: Vec<String> = (0..=MAX_MEMBERS)
            .map(|i| format!("{{ id = {i} }}"))
            .collect();
        let too_many = GOOD.replace(
            "members = [{ id = 1 }, { id = 2, weight = 3 }]",
            &format!("members = [{}]", members.join(", ")),
        );
        assert_eq!(
            err(&too_many),
            "cluster.members: expected at most 64 balancers, got 65"
        );
        let dup = GOOD.replace("198.18.11.12\"\nport = 8080", "198.18.11.11\"\nport = 80");
        assert!(err(&dup)
            .starts_with("real_servers[1]: expected an endpoint distinct from real_servers[0]"));
        let local_port = GOOD.replace("weight = 2", "weight = 2\nport = 81");
        assert!(err(&local_port).starts_with("local.port: expected the VIP port 80"));
        let dr_port = GOOD.replace("\"nat\"", "\"dr\"");
        assert!(err(&dr_port).starts_with(
            "real_servers[1].port: expected the VIP port 80 with forwarding = \"dr\""
        ));
        assert!(err("this is = = not toml").starts_with("TOML syntax error"));
        let no_targets = GOOD
            .replace("bi_active = true", "bi_active = false")
            .split("[[real_servers]]")
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            err(&no_targets),
            "real_servers: missing (expected at least one real server, or bi_active = true)"
        );
    }

    #[test]
    fn defaults_for_minimal_config() {
        let c = Config::from_toml_str(
            "[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n[[real_servers]]\naddr = \"10.1.0.2\"\n",
        )
        .unwrap();
        assert!(!c.bi_active);
        assert_eq!(c.scheduler, SchedulerKind::Wlc);
        assert_eq!(c.forwarding, Forwarding::Nat);
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.table_size, DEFAULT_TABLE_SIZE);
        assert!(c.verify_checksums);
        assert_eq!(c.cluster, Cluster::default());
        assert_eq!(c.health, HealthSettings::default());
    }

    mod roundtrip {
        use super::super::*;
        use proptest::prelude::*;

        fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
            (1u8..=223, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d))
        }

        fn real() -> impl Strategy<Value = RealServer> {
            (
                ipv4(),
                1u16..,
                0u32..=MAX_WEIGHT as u32,
                proptest::option::of(any::<[u8; 6]>()),
            )
                .prop_map(|(addr, port, weight, mac)| RealServer {
                    addr,
                    port,
                    weight,
                    mac: mac.map(MacAddr),
                })
        }

        fn cluster() -> impl Strategy<Value = Cluster> {
            (
                proptest::collection::btree_map(any::<u32>(), 0u32..=MAX_MEMBER_WEIGHT, 1..6),
                any::<prop::sample::Index>(),
                prop_oneof![
                    "[ -~]{16,40}".prop_map(KeySource::Inline),
                    "/[a-z0-9/._-]{1,30}".prop_map(|p| KeySource::File(p.into())),
                ],
                (10u32..=60_000, 2u32..=100, 1u16.., 0u32..=3_600_000),
                (224u8..=239, any::<[u8; 3]>(), any::<u64>()),
            )
                .prop_map(
                    |(ms, pick, key, (iv, dead, port, drain), (a, [b, c, d], hash_seed))| {
                        let members: Vec<Member> = ms
                            .into_iter()
                            .map(|(id, weight)| Member { id, weight })
                            .collect();
                        let group = match Ipv4Addr::new(a, b, c, d) {
                            g if g.is_link_local() || (a == 224 && b == 0 && c == 0) => {
                                Ipv4Addr::new(239, b, c, d)
                            }
                            g => g,
                        };
                        Cluster {
                            node_id: members[pick.index(members.len())].id,
                            members,
                            key: Some(key),
                            heartbeat: HeartbeatSettings {
                                interval_ms: iv,
                                dead_after: dead,
                                group,
                                port,
                                drain_ms: drain,
                            },
                            hash_seed,
                        }
                    },
                )
        }

        fn health() -> impl Strategy<Value = HealthSettings> {
            (
                prop_oneof![
                    Just(CheckKind::None),
                    Just(CheckKind::Tcp),
                    ("/[!-~]{0,20}", 100u16..=599).prop_map(|(path, expect_status)| {
                        CheckKind::Http {
                            path,
                            expect_status,
                        }
                    }),
                ],
                (10u32..=60_000, 1u32..=60_000, 1u32..=100, 1u32..=100),
            )
                .prop_map(|(check, (interval_ms, timeout_ms, rise, fall))| {
                    HealthSettings {
                        check,
                        interval_ms,
                        timeout_ms,
                        rise,
                        fall,
                    }
                })
        }

        fn config() -> impl Strategy<Value = Config> {
            (
                ("[a-z0-9.-]{1,15}", "[a-z0-9.-]{1,15}", ipv4(), 1u16..),
                (any::<bool>(), ipv4(), 0u32..=MAX_WEIGHT as u32),
                proptest::collection::vec(real(), 0..4),
                (
                    0usize..6,
                    any::<bool>(),
                    1usize..=MAX_CAPACITY,
                    any::<bool>(),
                ),
                proptest::array::uniform11(1u32..=MAX_TIMEOUT as u32),
                cluster(),
                health(),
            )
                .prop_map(
                    |(
                        (f, b, vip, port),
                        (bi, laddr, lw),
                        reals,
                        (sched, dr, table_size, verify_checksums),
                        t,
                        cluster,
                        health,
                    )| {
                        let forwarding = if dr { Forwarding::Dr } else { Forwarding::Nat };
                        let mut real_servers: Vec<RealServer> = Vec::new();
                        for mut r in reals {
                            if dr {
                                r.port = port;
                            }
                            if !real_servers.iter().any(|o| o.endpoint() == r.endpoint()) {
                                real_servers.push(r);
                            }
                        }
                        let mut timeouts = Timeouts::default();
                        for ((_, slot), v) in timeouts.fields_mut().into_iter().zip(t) {
                            *slot = v;
                        }
                        let kinds = [
                            SchedulerKind::Rr,
                            SchedulerKind::Wrr,
                            SchedulerKind::Lc,
                            SchedulerKind::Wlc,
                            SchedulerKind::Sh,
                            SchedulerKind::Mh,
                        ];
                        Config {
                            front_interface: f,
                            back_interface: b,
                            vip: SocketAddrV4::new(vip, port),
                            bi_active: bi || real_servers.is_empty(),
                            local: LocalServer {
                                addr: laddr,
                                port,
                                weight: lw,
                            },
                            real_servers,
                            scheduler: kinds[sched % kinds.len()],
                            forwarding,
                            timeouts,
                            table_size,
                            verify_checksums,
                            cluster,
                            health,
                        }
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every valid configuration survives writing and reading back.
            #[test]
            fn toml_round_trip(c in config()) {
                prop_assert_eq!(c.validate(), Ok(()));
                let text = c.to_toml_string();
                prop_assert_eq!(Config::from_toml_str(&text), Ok(c), "{}", text);
            }
        }
    }
}
