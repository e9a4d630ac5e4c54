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
//! [cluster]                  # packet-accept ownership
//! node_id = 1
//! members = [{ id = 1, weight = 1 }, { id = 2, weight = 1 }]
//! ```
//!
//! Real server MACs: optional. If absent, the I/O layer resolves them
//! (neighbour table/ARP on `back`) and calls `Balancer::set_real_mac`; until
//! then the server is not a scheduling candidate.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::conntrack::{Timeouts, MAX_CAPACITY};
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

/// Packet-accept ownership settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// This balancer's id.
    pub node_id: u32,
    /// All balancers presumed live at start (this one included).
    pub members: Vec<Member>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node_id: 1,
            members: vec![Member { id: 1, weight: 1 }],
        }
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
    /// Ownership.
    pub cluster: Cluster,
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
    "cluster",
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
const CLUSTER: &[&str] = &["node_id", "members"];
const MEMBER: &[&str] = &["id", "weight"];

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
        let table_size = r
            .int("table_size", 1, MAX_CAPACITY as i64)?
            .map_or(DEFAULT_TABLE_SIZE, |v| v as usize);

        let cluster = match r.table("cluster", CLUSTER)? {
            None => Cluster::default(),
            Some(c) => {
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
                Cluster { node_id, members }
            }
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
            cluster,
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
                &format!("an integer 1..={MAX_CAPACITY}"),
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
        Ok(())
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
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
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
        assert_eq!(c.cluster, Cluster::default());
    }
}
