//! The testbed topology as a plain value (hosts, LAN segments, addresses,
//! routes), the built-in topologies and their validation. Pure: nothing here
//! touches the system; `plan` turns a topology into commands.
//!
//! Address plan of the built-ins (RFC 2544 range only, see [`crate::net`]):
//!
//! | segment            | subnet            | members                                            |
//! |--------------------|-------------------|----------------------------------------------------|
//! | `cli` client LAN   | 198.18.0.0/24     | router .1, client*i* .(10+*i*)                    |
//! | `lan` LB LAN       | 198.18.1.0/24     | router .1, lb*i* `front` .(10+*i*), VIP .100 (no kernel holds it) |
//! | `sc`*n* sub-cluster| 198.18.(10+*n*).0/24 | lb*n* `back` .2 + gateway alias .1 (`back:0`), rs .(10+*j*), DR: router .254 |

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::net::{Ipv4Net, TESTBED_RANGE};
use crate::PREFIX;

/// Longest node name: `bal-` + node + `-N` must fit Linux's 15-byte link names.
pub const MAX_NODE_NAME: usize = 15 - PREFIX.len() - 2;
/// Longest segment name: `bal-br-` + segment must fit 15 bytes.
pub const MAX_SEGMENT_NAME: usize = 15 - PREFIX.len() - 3;
/// Most interfaces a node may have (port names end in one digit).
pub const MAX_IFACES: usize = 10;

/// The whole emulated cluster: which hosts exist, which LAN segments
/// connect them, and every address and route (like Mininet's `Topo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Human name (the built-in name, or the file's own).
    pub name: String,
    /// The service address clients connect to. The router resolves it to a
    /// multicast MAC on the segment that contains it.
    pub vip: Ipv4Addr,
    /// LAN segments; each becomes a bridge in the switch namespace.
    pub segments: Vec<Segment>,
    /// Hosts; each becomes a network namespace.
    pub nodes: Vec<Node>,
}

/// One LAN (a bridge in the switch namespace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Short name (bridge `bal-br-<name>`).
    pub name: String,
    /// The subnet every interface on this segment lives in.
    pub subnet: Ipv4Net,
}

/// What a host is for; decides its sysctls and its CPU share in a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Load generator host.
    Client,
    /// Forwards between the client LAN and the LB LAN (`ip_forward=1`).
    Router,
    /// Runs the user-space balancer (`front` and `back` NICs, `ip_forward=0`).
    Balancer,
    /// Runs the web server behind a balancer.
    Realserver,
}

impl Role {
    /// The lowercase name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Router => "router",
            Role::Balancer => "balancer",
            Role::Realserver => "realserver",
        }
    }
}

/// One host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Host name (namespace `bal-<name>`).
    pub name: String,
    /// What the host is for.
    pub role: Role,
    /// NICs, in order (the switch-side port of the i-th is `bal-<name>-<i>`).
    pub ifaces: Vec<Iface>,
    /// Addresses on `lo` (for direct routing: the VIP as a /32 alias).
    #[serde(default)]
    pub loopback: Vec<Addr>,
    /// Static routes (only to testbed subnets; there is never a default route).
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One NIC of a host, plugged into a segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iface {
    /// Name inside the host's namespace (`front`, `back`, `eth0`...).
    pub name: String,
    /// The segment it is plugged into.
    pub segment: String,
    /// Addresses, first one primary; later ones are labelled IP aliases.
    pub addrs: Vec<Addr>,
}

/// An interface address, optionally labelled as an IP alias (`front:0`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addr {
    /// Address with prefix length.
    pub addr: Ipv4Net,
    /// Alias label (must start with the device name, at most 15 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A static route to a testbed subnet through an on-link gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination subnet.
    pub to: Ipv4Net,
    /// Gateway (must be inside one of the host's interface subnets).
    pub via: Ipv4Addr,
}

/// Why a topology cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The name is neither a built-in nor a readable file.
    #[error("unknown topology `{0}`: expected one of {builtins} or a path to a .toml/.json file", builtins = BUILTIN_TOPOLOGIES.join(", "))]
    Unknown(String),
    /// The file could not be read.
    #[error("cannot read topology file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON for a topology.
    #[error("topology file {path} is malformed: {msg}")]
    Parse {
        /// File path.
        path: String,
        /// Parser message (with line/column).
        msg: String,
    },
    /// The value parsed but breaks a rule.
    #[error("topology `{topology}` is invalid: {msg}")]
    Invalid {
        /// Topology name.
        topology: String,
        /// What is wrong, where, and what is expected.
        msg: String,
    },
}

/// Names accepted by [`Topology::builtin`].
pub const BUILTIN_TOPOLOGIES: &[&str] = &["1lb-1rs", "2lb-2rs", "1lb-1rs-dr", "2lb-2rs-dr"];

/// The client LAN.
pub const CLIENT_NET: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 24);
/// The LB LAN (router, every balancer's `front`, the VIP).
pub const LB_NET: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(198, 18, 1, 0), 24);
/// The service address of the built-ins.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// Number of client hosts in the built-ins (the paper's three httperf clients).
pub const CLIENTS: u8 = 3;

/// Sub-cluster `n` (1-based): `198.18.(10+n).0/24`.
pub fn subcluster_net(n: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(198, 18, 10 + n, 0), 24)
}

fn host(net: Ipv4Net, h: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(u32::from(net.addr) | u32::from(h)), len)
}

fn plain(net: Ipv4Net, h: u8) -> Addr {
    Addr {
        addr: host(net, h, net.len),
        label: None,
    }
}

impl Topology {
    /// A built-in topology by name (see [`BUILTIN_TOPOLOGIES`]).
    pub fn builtin(name: &str) -> Option<Topology> {
        match name {
            "1lb-1rs" => Some(Topology::cluster(name, 1, 1, false)),
            "2lb-2rs" => Some(Topology::cluster(name, 2, 1, false)),
            "1lb-1rs-dr" => Some(Topology::cluster(name, 1, 1, true)),
            "2lb-2rs-dr" => Some(Topology::cluster(name, 2, 1, true)),
            _ => None,
        }
    }

    /// A built-in name, or else a `.toml`/`.json` file, validated.
    pub fn load(spec: &str) -> Result<Topology, TopologyError> {
        let t = match Topology::builtin(spec) {
            Some(t) => t,
            None => {
                let path = Path::new(spec);
                if !path.exists() {
                    return Err(TopologyError::Unknown(spec.to_string()));
                }
                let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
                    path: spec.to_string(),
                    source,
                })?;
                Topology::parse(spec, &text)?
            }
        };
        t.validate()?;
        Ok(t)
    }

    /// Parses TOML (or JSON when `origin` ends in `.json`). Not validated.
    pub fn parse(origin: &str, text: &str) -> Result<Topology, TopologyError> {
        let perr = |msg: String| TopologyError::Parse {
            path: origin.to_string(),
            msg,
        };
        if origin.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| perr(e.to_string()))
        } else {
            toml::from_str(text).map_err(|e| perr(e.to_string()))
        }
    }

    /// The paper-shaped cluster: 3 clients, a router, `lbs` balancers each with
    /// `rs_per_lb` real servers on its own sub-cluster. With `dr`, real servers
    /// hold the VIP on `lo` and the router has a leg on each sub-cluster, so
    /// replies go straight to the router without passing the balancer.
    pub fn cluster(name: &str, lbs: u8, rs_per_lb: u8, dr: bool) -> Topology {
        let mut segments = vec![
            Segment {
                name: "cli".into(),
                subnet: CLIENT_NET,
            },
            Segment {
                name: "lan".into(),
                subnet: LB_NET,
            },
        ];
        let mut nodes = Vec::new();
        for i in 1..=CLIENTS {
            nodes.push(Node {
                name: format!("client{i}"),
                role: Role::Client,
                ifaces: vec![Iface {
                    name: "eth0".into(),
                    segment: "cli".into(),
                    addrs: vec![plain(CLIENT_NET, 10 + i)],
                }],
                loopback: vec![],
                routes: vec![Route {
                    to: LB_NET,
                    via: host(CLIENT_NET, 1, 32).addr,
                }],
            });
        }
        let mut router = Node {
            name: "router".into(),
            role: Role::Router,
            ifaces: vec![
                Iface {
                    name: "eth0".into(),
                    segment: "cli".into(),
                    addrs: vec![plain(CLIENT_NET, 1)],
                },
                Iface {
                    name: "eth1".into(),
                    segment: "lan".into(),
                    addrs: vec![plain(LB_NET, 1)],
                },
            ],
            loopback: vec![],
            routes: vec![],
        };
        let mut rs_index = 0u8;
        let mut lb_nodes = Vec::new();
        let mut rs_nodes = Vec::new();
        for n in 1..=lbs {
            let sc = subcluster_net(n);
            let seg = format!("sc{n}");
            segments.push(Segment {
                name: seg.clone(),
                subnet: sc,
            });
            lb_nodes.push(Node {
                name: format!("lb{n}"),
                role: Role::Balancer,
                ifaces: vec![
                    Iface {
                        name: "front".into(),
                        segment: "lan".into(),
                        addrs: vec![plain(LB_NET, 10 + n)],
                    },
                    Iface {
                        name: "back".into(),
                        segment: seg.clone(),
                        addrs: vec![
                            plain(sc, 2),
                            Addr {
                                addr: host(sc, 1, 24),
                                label: Some("back:0".into()),
                            },
                        ],
                    },
                ],
                loopback: vec![],
                routes: vec![Route {
                    to: CLIENT_NET,
                    via: host(LB_NET, 1, 32).addr,
                }],
            });
            if dr {
                router.ifaces.push(Iface {
                    name: format!("eth{}", router.ifaces.len()),
                    segment: seg.clone(),
                    addrs: vec![plain(sc, 254)],
                });
            }
            for j in 1..=rs_per_lb {
                rs_index += 1;
                let gw = if dr { 254 } else { 1 };
                rs_nodes.push(Node {
                    name: format!("rs{rs_index}"),
                    role: Role::Realserver,
                    ifaces: vec![Iface {
                        name: "eth0".into(),
                        segment: seg.clone(),
                        addrs: vec![plain(sc, 10 + j)],
                    }],
                    loopback: if dr {
                        vec![Addr {
                            addr: Ipv4Net::new(VIP, 32),
                            label: Some("lo:0".into()),
                        }]
                    } else {
                        vec![]
                    },
                    routes: vec![Route {
                        to: CLIENT_NET,
                        via: host(sc, gw, 32).addr,
                    }],
                });
            }
        }
        nodes.push(router);
        nodes.extend(lb_nodes);
        nodes.extend(rs_nodes);
        Topology {
            name: name.to_string(),
            vip: VIP,
            segments,
            nodes,
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The segment whose subnet contains the VIP (the LB LAN).
    pub fn vip_segment(&self) -> Option<&Segment> {
        self.segments.iter().find(|s| s.subnet.contains(self.vip))
    }

    /// Whether `node` holds the VIP on its loopback (direct routing target).
    pub fn holds_vip(&self, node: &Node) -> bool {
        node.loopback.iter().any(|a| a.addr.addr == self.vip)
    }

    /// Checks every rule the realization relies on; the message says what is
    /// wrong, where, and what is expected.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let bad = |msg: String| TopologyError::Invalid {
            topology: self.name.clone(),
            msg,
        };
        if !TESTBED_RANGE.contains(self.vip) {
            return Err(bad(format!(
                "vip {} is outside the testbed range {TESTBED_RANGE}",
                self.vip
            )));
        }
        let mut seg_names = BTreeSet::new();
        for s in &self.segments {
            check_name(&s.name, MAX_SEGMENT_NAME)
                .map_err(|m| bad(format!("segment `{}`: {m}", s.name)))?;
            if !seg_names.insert(s.name.as_str()) {
                return Err(bad(format!("segment `{}` is defined twice", s.name)));
            }
            if !TESTBED_RANGE.contains_net(s.subnet) || s.subnet.network() != s.subnet {
                return Err(bad(format!(
                    "segment `{}`: subnet {} must be a network address inside {TESTBED_RANGE}",
                    s.name, s.subnet
                )));
            }
        }
        for (i, a) in self.segments.iter().enumerate() {
            for b in &self.segments[i + 1..] {
                if a.subnet.contains_net(b.subnet) || b.subnet.contains_net(a.subnet) {
                    return Err(bad(format!(
                        "segments `{}` ({}) and `{}` ({}) overlap",
                        a.name, a.subnet, b.name, b.subnet
                    )));
                }
            }
        }
        if self.vip_segment().is_none() {
            return Err(bad(format!(
                "no segment contains the vip {}: the LB LAN must",
                self.vip
            )));
        }
        let mut node_names = BTreeSet::new();
        let mut owners: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut routers = 0;
        for n in &self.nodes {
            let at = format!("node `{}`", n.name);
            check_name(&n.name, MAX_NODE_NAME).map_err(|m| bad(format!("{at}: {m}")))?;
            if n.name == "sw" {
                return Err(bad(format!(
                    "{at}: `sw` is reserved for the switch namespace"
                )));
            }
            if !node_names.insert(n.name.as_str()) {
                return Err(bad(format!("{at} is defined twice")));
            }
            if n.role == Role::Router {
                routers += 1;
            }
            if n.ifaces.is_empty() || n.ifaces.len() > MAX_IFACES {
                return Err(bad(format!(
                    "{at} has {} interfaces, expected 1..={MAX_IFACES}",
                    n.ifaces.len()
                )));
            }
            let mut if_names = BTreeSet::new();
            for f in &n.ifaces {
                let at = format!("{at} interface `{}`", f.name);
                check_name(&f.name, 15).map_err(|m| bad(format!("{at}: {m}")))?;
                if f.name == "lo" || !if_names.insert(f.name.as_str()) {
                    return Err(bad(format!("{at}: name is `lo` or used twice")));
                }
                let seg = self
                    .segments
                    .iter()
                    .find(|s| s.name == f.segment)
                    .ok_or_else(|| bad(format!("{at}: unknown segment `{}`", f.segment)))?;
                if f.addrs.is_empty() {
                    return Err(bad(format!("{at}: needs at least one address")));
                }
                for a in &f.addrs {
                    let at = format!("{at} address {}", a.addr);
                    check_label(&f.name, a.label.as_deref())
                        .map_err(|m| bad(format!("{at}: {m}")))?;
                    if a.addr.network() != seg.subnet {
                        return Err(bad(format!(
                            "{at}: must be a host address of segment `{}` ({}), with the same prefix length",
                            seg.name, seg.subnet
                        )));
                    }
                    let h = u32::from(a.addr.addr) & !a.addr.mask();
                    if h == 0 || h == !a.addr.mask() {
                        return Err(bad(format!("{at}: is the network or broadcast address")));
                    }
                    if a.addr.addr == self.vip {
                        return Err(bad(format!(
                            "{at}: the vip may only be held on `lo` (direct routing); on a LAN it would answer ARP"
                        )));
                    }
                    if let Some(other) = owners.insert(a.addr.addr, n.name.clone()) {
                        return Err(bad(format!("{at}: already used by node `{other}`")));
                    }
                }
            }
            for a in &n.loopback {
                let at = format!("{at} loopback address {}", a.addr);
                check_label("lo", a.label.as_deref()).map_err(|m| bad(format!("{at}: {m}")))?;
                if a.addr.len != 32 || !TESTBED_RANGE.contains(a.addr.addr) {
                    return Err(bad(format!("{at}: must be a /32 inside {TESTBED_RANGE}")));
                }
            }
            for r in &n.routes {
                let at = format!("{at} route to {} via {}", r.to, r.via);
                if !TESTBED_RANGE.contains_net(r.to) || r.to.network() != r.to {
                    return Err(bad(format!(
                        "{at}: destination must be a subnet inside {TESTBED_RANGE} (no default route)"
                    )));
                }
                let onlink = n
                    .ifaces
                    .iter()
                    .flat_map(|f| &f.addrs)
                    .any(|a| a.addr.network().contains(r.via) && a.addr.addr != r.via);
                if !onlink {
                    return Err(bad(format!(
                        "{at}: gateway must be another host on one of the node's segments"
                    )));
                }
            }
        }
        if routers != 1 {
            return Err(bad(format!(
                "expected exactly one router node, found {routers}"
            )));
        }
        let vseg = self
            .vip_segment()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let router_on_vip = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Router)
            .any(|n| n.ifaces.iter().any(|f| f.segment == vseg));
        if !router_on_vip {
            return Err(bad(format!(
                "the router needs an interface on the vip's segment `{vseg}`"
            )));
        }
        Ok(())
    }
}

fn check_name(name: &str, max: usize) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let starts = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if name.is_empty() || name.len() > max || !ok_chars || !starts {
        return Err(format!(
            "name must be 1..={max} characters of [a-z0-9], starting with a letter"
        ));
    }
    Ok(())
}

fn check_label(dev: &str, label: Option<&str>) -> Result<(), String> {
    match label {
        None => Ok(()),
        Some(l)
            if l.len() <= 15 && l.starts_with(&format!("{dev}:")) && l.len() > dev.len() + 1 =>
        {
            Ok(())
        }
        Some(l) => Err(format!(
            "label `{l}` must be `{dev}:<tag>` and at most 15 bytes (an IP alias of `{dev}`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_validate() {
        for name in BUILTIN_TOPOLOGIES {
            let t = Topology::builtin(name).unwrap();
            t.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn builtin_shapes() {
        let t = Topology::builtin("2lb-2rs").unwrap();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["client1", "client2", "client3", "router", "lb1", "lb2", "rs1", "rs2"]
        );
        let lb2 = t.node("lb2").unwrap();
        assert_eq!(lb2.ifaces[0].name, "front");
        assert_eq!(lb2.ifaces[0].addrs[0].addr.to_string(), "198.18.1.12/24");
        assert_eq!(lb2.ifaces[1].name, "back");
        assert_eq!(lb2.ifaces[1].addrs[1].addr.to_string(), "198.18.12.1/24");
        assert_eq!(lb2.ifaces[1].addrs[1].label.as_deref(), Some("back:0"));
        let rs2 = t.node("rs2").unwrap();
        assert_eq!(rs2.routes[0].via, Ipv4Addr::new(198, 18, 12, 1));
        assert!(t.nodes.iter().all(|n| !t.holds_vip(n)));

        let dr = Topology::builtin("1lb-1rs-dr").unwrap();
        let rs1 = dr.node("rs1").unwrap();
        assert!(dr.holds_vip(rs1));
        assert_eq!(rs1.routes[0].via, Ipv4Addr::new(198, 18, 11, 254));
        assert_eq!(dr.node("router").unwrap().ifaces.len(), 3);

        // Two sub-clusters in DR: the router has a leg on each, and each
        // real server replies through the leg on its own sub-cluster.
        let dr2 = Topology::builtin("2lb-2rs-dr").unwrap();
        let legs: Vec<String> = dr2.node("router").unwrap().ifaces[2..]
            .iter()
            .map(|f| format!("{}={}", f.segment, f.addrs[0].addr))
            .collect();
        assert_eq!(legs, ["sc1=198.18.11.254/24", "sc2=198.18.12.254/24"]);
        let rs2 = dr2.node("rs2").unwrap();
        assert!(dr2.holds_vip(rs2));
        assert_eq!(rs2.routes[0].via, Ipv4Addr::new(198, 18, 12, 254));
    }

    #[test]
    fn toml_and_json_roundtrip() {
        let t = Topology::builtin("2lb-2rs").unwrap();
        let s = toml::to_string(&t).unwrap();
        assert_eq!(Topology::parse("t.toml", &s).unwrap(), t);
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(Topology::parse("t.json", &j).unwrap(), t);
    }

    #[test]
    fn unknown_field_is_rejected_with_location() {
        let e = Topology::parse(
            "x.toml",
            "name = \"x\"\nvip = \"198.18.1.100\"\nsegments = []\nnodes = []\ncolour = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.toml") && e.contains("colour"), "{e}");
    }

    fn invalid(mut f: impl FnMut(&mut Topology), needle: &str) {
        let mut t = Topology::builtin("1lb-1rs").unwrap();
        f(&mut t);
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    }

    #[test]
    fn rejects_private_and_public_addresses() {
        invalid(
            |t| t.nodes[0].ifaces[0].addrs[0].addr = "10.0.0.5/24".parse().unwrap(),
            "must be a host address of segment `cli`",
        );
        invalid(
            |t| t.segments[0].subnet = "192.168.0.0/24".parse().unwrap(),
            "inside 198.18.0.0/15",
        );
        invalid(
            |t| t.vip = Ipv4Addr::new(172, 16, 0, 1),
            "outside the testbed range",
        );
        invalid(
            |t| {
                t.nodes[0].routes.push(Route {
                    to: "0.0.0.0/0".parse().unwrap(),
                    via: Ipv4Addr::new(198, 18, 0, 1),
                })
            },
            "no default route",
        );
    }

    #[test]
    fn rejects_structural_mistakes() {
        invalid(|t| t.nodes[1].name = "client1".into(), "defined twice");
        invalid(
            |t| t.nodes[0].name = "averyverylongname".into(),
            "1..=9 characters",
        );
        invalid(
            |t| t.nodes[0].ifaces[0].segment = "nowhere".into(),
            "unknown segment `nowhere`",
        );
        invalid(
            |t| t.nodes[1].ifaces[0].addrs[0].addr = "198.18.0.11/24".parse().unwrap(),
            "already used by node `client1`",
        );
        invalid(
            |t| t.nodes[0].ifaces[0].addrs[0].label = Some("front:0".into()),
            "label `front:0` must be `eth0:<tag>`",
        );
        invalid(
            |t| t.nodes[0].routes[0].via = Ipv4Addr::new(198, 18, 5, 1),
            "gateway must be another host",
        );
        invalid(
            |t| t.nodes.retain(|n| n.role != Role::Router),
            "exactly one router",
        );
        invalid(
            |t| t.nodes[4].ifaces[0].addrs[0].addr = "198.18.1.100/24".parse().unwrap(),
            "only be held on `lo`",
        );
        invalid(|t| t.nodes[0].name = "sw".into(), "reserved");
    }

    #[test]
    fn load_reports_unknown_names() {
        let e = Topology::load("no-such-topology").unwrap_err().to_string();
        assert!(e.contains("1lb-1rs, 2lb-2rs, 1lb-1rs-dr"), "{e}");
    }

    #[test]
    fn load_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        let t = Topology::builtin("1lb-1rs-dr").unwrap();
        std::fs::write(&p, toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(Topology::load(p.to_str().unwrap()).unwrap(), t);
    }
}
