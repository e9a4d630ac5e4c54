//! Realization as data: `plan_up(topology, profile)` and `plan_down(inventory)`
//! are pure functions returning the ordered steps (a command with its
//! arguments, or a file operation, plus a description); `exec` runs them and
//! `render_script` prints them as a replayable `#!/bin/sh` script.
//!
//! Every step names the namespace it acts in (`ip -n`, `tc -n`,
//! `ip netns exec`): nothing in an up-plan touches the root namespace.
//! Veth pairs are created directly inside their namespaces
//! (`ip -n bal-sw link add P type veth peer name IF netns bal-NODE`), so no
//! link ever exists in the root namespace, not even for a moment.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cgroup::{procs_file, CgroupFlavor};
use crate::net::multicast_mac;
use crate::profile::Profile;
use crate::topology::{Node, Role, Topology};
use crate::PREFIX;

/// Offload switches turned off on every data-path veth end (see the
/// design's field notes: TSO/GSO/GRO frames and partial checksums break a
/// packet-level balancer).
pub const OFFLOADS_OFF: &[&str] = &["tx", "off", "tso", "off", "gso", "off", "gro", "off"];

/// The TUN device every balancer namespace gets: it holds the VIP (a /32
/// alias labelled `vip0:0`, like the paper's `eth0:0`) so the local server
/// can listen on it, and the balancer injects locally delivered flows
/// through it (wave-2 contract, item 1).
pub const VIP_TUN: &str = "vip0";

/// The nftables table (family `ip`) created in every balancer namespace.
pub const NFT_TABLE: &str = "bal";

/// The namespace of a node: `bal-<node>`.
pub fn netns_name(node: &str) -> String {
    format!("{PREFIX}{node}")
}

/// The switch namespace holding every bridge: `bal-sw`.
pub fn switch_ns() -> String {
    netns_name("sw")
}

/// The bridge of a segment, in the switch namespace: `bal-br-<segment>`.
pub fn bridge_name(segment: &str) -> String {
    format!("{PREFIX}br-{segment}")
}

/// The switch-side end of a node's `index`-th NIC: `bal-<node>-<index>`.
pub fn port_name(node: &str, index: usize) -> String {
    format!("{PREFIX}{node}-{index}")
}

/// One thing to do, with a sentence saying why.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What the step achieves, for logs, errors and the dry-run script.
    pub description: String,
    /// The command or file operation.
    pub action: Action,
}

/// A command (run as a process) or a file operation (done natively, printed
/// as shell in scripts). Resource-creating actions are typed so tests can
/// model what a plan creates and removes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `ip netns add NS`.
    AddNetns {
        /// Namespace.
        ns: String,
    },
    /// `ip netns delete NS` (destroys its veths; their peers go with them).
    DeleteNetns {
        /// Namespace.
        ns: String,
    },
    /// Kill every process inside a namespace (TERM, then KILL), and wait.
    KillNetnsProcs {
        /// Namespace.
        ns: String,
    },
    /// `ip -n NS link add NAME type bridge mcast_snooping 0 stp_state 0`.
    AddBridge {
        /// Namespace (the switch).
        ns: String,
        /// Bridge name.
        name: String,
    },
    /// `ip -n NS link add NAME type veth peer name PEER netns PEER_NS`.
    AddVeth {
        /// Namespace of the first end.
        ns: String,
        /// First end.
        name: String,
        /// Namespace of the peer.
        peer_ns: String,
        /// Peer end.
        peer: String,
    },
    /// `ip -n NS ARGS...` (configuration of existing objects).
    Ip {
        /// Namespace.
        ns: String,
        /// Arguments after `ip -n NS`.
        args: Vec<String>,
    },
    /// `tc -n NS ARGS...`.
    Tc {
        /// Namespace.
        ns: String,
        /// Arguments after `tc -n NS`.
        args: Vec<String>,
    },
    /// `ip netns exec NS ARGV...` (sysctl, ethtool).
    NsExec {
        /// Namespace.
        ns: String,
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// `mkdir -p PATH` (a node cgroup).
    MakeCgroup {
        /// Directory.
        path: PathBuf,
    },
    /// Write CONTENTS to PATH (cgroup control files).
    WriteFile {
        /// File.
        path: PathBuf,
        /// Contents (no trailing newline needed).
        contents: String,
    },
    /// Kill every process of a node cgroup (TERM, then KILL), and wait:
    /// they are that node's processes, placed there by `exec`/`spawn`, even
    /// one that has not entered the namespace yet.
    KillCgroupProcs {
        /// Cgroup directory.
        path: PathBuf,
    },
    /// `rmdir PATH` (retried while the kernel still counts exiting tasks).
    RemoveCgroup {
        /// Directory.
        path: PathBuf,
    },
    /// `ip link delete NAME` in the root namespace: only for prefixed
    /// leftovers found by `down` (the up-plan never creates root links).
    DeleteRootLink {
        /// Link name.
        name: String,
    },
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

impl Action {
    /// The process to run, or `None` for file operations done natively.
    pub fn argv(&self) -> Option<Vec<String>> {
        let mut v: Vec<String> = match self {
            Action::AddNetns { ns } => s(&["ip", "netns", "add", ns]),
            Action::DeleteNetns { ns } => s(&["ip", "netns", "delete", ns]),
            Action::AddBridge { ns, name } => s(&[
                "ip",
                "-n",
                ns,
                "link",
                "add",
                name,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                "stp_state",
                "0",
            ]),
            Action::AddVeth {
                ns,
                name,
                peer_ns,
                peer,
            } => s(&[
                "ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns",
                peer_ns,
            ]),
            Action::Ip { ns, .. } => s(&["ip", "-n", ns]),
            Action::Tc { ns, .. } => s(&["tc", "-n", ns]),
            Action::NsExec { ns, .. } => s(&["ip", "netns", "exec", ns]),
            Action::DeleteRootLink { name } => s(&["ip", "link", "delete", name]),
            Action::KillNetnsProcs { .. }
            | Action::MakeCgroup { .. }
            | Action::WriteFile { .. }
            | Action::KillCgroupProcs { .. }
            | Action::RemoveCgroup { .. } => return None,
        };
        match self {
            Action::Ip { args, .. } | Action::Tc { args, .. } => v.extend(args.iter().cloned()),
            Action::NsExec { argv, .. } => v.extend(argv.iter().cloned()),
            _ => {}
        }
        Some(v)
    }

    /// The equivalent POSIX shell line (arguments quoted).
    pub fn shell(&self) -> String {
        if let Some(argv) = self.argv() {
            return argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        }
        match self {
            Action::KillNetnsProcs { ns } => format!(
                "for p in $(ip netns pids {ns}); do kill -KILL \"$p\" 2>/dev/null || true; done",
                ns = quote(ns)
            ),
            Action::MakeCgroup { path } => format!("mkdir -p {}", quote_path(path)),
            Action::WriteFile { path, contents } => {
                format!("printf '%s\\n' {} > {}", quote(contents), quote_path(path))
            }
            Action::KillCgroupProcs { path } => format!(
                "if [ -d {d} ]; then for p in $(cat {f}); do kill -KILL \"$p\" 2>/dev/null || true; done; fi",
                d = quote_path(path),
                f = quote_path(&procs_file(path)),
            ),
            Action::RemoveCgroup { path } => {
                format!("if [ -d {p} ]; then rmdir {p}; fi", p = quote_path(path))
            }
            _ => String::new(),
        }
    }
}

/// Quotes one shell word (single quotes unless it is plainly safe).
pub fn quote(a: &str) -> String {
    let safe = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if safe {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn quote_path(p: &std::path::Path) -> String {
    quote(&p.to_string_lossy())
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The profile wants CPU quotas but the machine has no CPU controller.
    #[error("profile `{0}` sets CPU quotas but no cgroup CPU controller was found; use `--profile unconstrained`")]
    NoCgroups(String),
}

struct Plan(Vec<Step>);

impl Plan {
    fn push(&mut self, description: impl Into<String>, action: Action) {
        self.0.push(Step {
            description: description.into(),
            action,
        });
    }
    fn ip(&mut self, d: impl Into<String>, ns: &str, args: &[&str]) {
        self.push(
            d,
            Action::Ip {
                ns: ns.into(),
                args: s(args),
            },
        );
    }
    fn nsexec(&mut self, d: impl Into<String>, ns: &str, argv: Vec<String>) {
        self.push(
            d,
            Action::NsExec {
                ns: ns.into(),
                argv,
            },
        );
    }
}

fn sysctl(settings: &[String]) -> Vec<String> {
    let mut v = s(&["sysctl", "-qw"]);
    v.extend(settings.iter().cloned());
    v
}

/// Namespace-wide sysctls of a node, set before its NICs exist (so the
/// `default` values apply to them too).
fn node_sysctls(t: &Topology, n: &Node) -> Vec<String> {
    let mut v = Vec::new();
    let fwd = if n.role == Role::Router { 1 } else { 0 };
    v.push(format!("net.ipv4.ip_forward={fwd}"));
    match n.role {
        // Loose reverse-path filter: in DR, replies from the VIP arrive from a
        // sub-cluster while the VIP's route points at the LB LAN.
        Role::Router => {
            v.push("net.ipv4.conf.all.rp_filter=2".into());
            v.push("net.ipv4.conf.default.rp_filter=2".into());
        }
        // The balancer injects packets from client sources through a TUN
        // (field notes): no reverse-path filtering on any device. It holds
        // the VIP on `vip0`: never answer or announce ARP for it on `front`
        // (the router reaches the VIP through its multicast MAC).
        Role::Balancer => {
            for k in ["all", "default"] {
                v.push(format!("net.ipv4.conf.{k}.rp_filter=0"));
                v.push(format!("net.ipv4.conf.{k}.arp_ignore=1"));
                v.push(format!("net.ipv4.conf.{k}.arp_announce=2"));
            }
        }
        // Clients open many short connections: the whole ephemeral port
        // range, and reuse of TIME_WAIT ports for new outgoing connections.
        Role::Client => {
            v.push("net.ipv4.ip_local_port_range=1024 65535".into());
            v.push("net.ipv4.tcp_tw_reuse=1".into());
        }
        Role::Realserver => {}
    }
    if t.holds_vip(n) {
        for k in ["all", "default"] {
            v.push(format!("net.ipv4.conf.{k}.arp_ignore=1"));
            v.push(format!("net.ipv4.conf.{k}.arp_announce=2"));
        }
    }
    v
}

/// The interface of a balancer on the VIP's segment (`front`).
pub fn front_iface<'a>(t: &Topology, n: &'a Node) -> Option<&'a crate::topology::Iface> {
    let seg = t.vip_segment()?;
    n.ifaces.iter().find(|f| f.segment == seg.name)
}

fn balancer_steps(p: &mut Plan, t: &Topology, n: &Node) {
    let ns = netns_name(&n.name);
    let vip = format!("{}/32", t.vip);
    let label = format!("{VIP_TUN}:0");
    p.ip(
        format!("{}: TUN {VIP_TUN} (local delivery of VIP flows)", n.name),
        &ns,
        &["tuntap", "add", "dev", VIP_TUN, "mode", "tun"],
    );
    p.ip(
        format!("{}:{VIP_TUN} IP alias {label} {vip} (the VIP)", n.name),
        &ns,
        &["addr", "add", &vip, "dev", VIP_TUN, "label", &label],
    );
    p.ip(
        format!("{}:{VIP_TUN} up", n.name),
        &ns,
        &["link", "set", "dev", VIP_TUN, "up"],
    );
    p.nsexec(
        format!(
            "{}: no reverse-path filter on {VIP_TUN} (injected packets carry client sources)",
            n.name
        ),
        &ns,
        sysctl(&[
            format!("net.ipv4.conf.{VIP_TUN}.rp_filter=0"),
            "net.ipv4.conf.all.rp_filter=0".into(),
        ]),
    );
    let Some(front) = front_iface(t, n) else {
        return;
    };
    p.nsexec(
        format!("{}: nftables table {NFT_TABLE}", n.name),
        &ns,
        s(&["nft", "add", "table", "ip", NFT_TABLE]),
    );
    p.nsexec(
        format!(
            "{}: prerouting chain (raw priority, before conntrack)",
            n.name
        ),
        &ns,
        s(&[
            "nft",
            "add",
            "chain",
            "ip",
            NFT_TABLE,
            "prerouting",
            "{",
            "type",
            "filter",
            "hook",
            "prerouting",
            "priority",
            "-300",
            ";",
            "policy",
            "accept",
            ";",
            "}",
        ]),
    );
    let vip = t.vip.to_string();
    p.nsexec(
        format!(
            "{}: drop VIP packets arriving on {} (only the user-space balancer decides)",
            n.name, front.name
        ),
        &ns,
        vip_drop_rule(&front.name, &vip),
    );
}

/// The `nft add rule` command of the balancer's prerouting drop of VIP
/// packets arriving on `front` (the only rule of chain `bal prerouting`);
/// `bench-balancer` flushes that chain for its kernel-forwarding
/// configurations and restores the rule with this same command.
pub fn vip_drop_rule(front: &str, vip: &str) -> Vec<String> {
    s(&[
        "nft",
        "add",
        "rule",
        "ip",
        NFT_TABLE,
        "prerouting",
        "iifname",
        front,
        "ip",
        "daddr",
        vip,
        "counter",
        "drop",
    ])
}

/// Every step that builds the testbed, in order. `cgroups` is needed only
/// when the profile sets CPU quotas.
pub fn plan_up(
    t: &Topology,
    profile: &Profile,
    cgroups: Option<&CgroupFlavor>,
) -> Result<Vec<Step>, PlanError> {
    let mut p = Plan(Vec::new());
    let sw = switch_ns();
    let no_v6 = s(&[
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);

    // Namespaces: the switch first, then one per host.
    for (ns, what) in std::iter::once((sw.clone(), "the switch (bridges only)".to_string())).chain(
        t.nodes.iter().map(|n| {
            (
                netns_name(&n.name),
                format!("host {} ({})", n.name, n.role.as_str()),
            )
        }),
    ) {
        p.push(
            format!("namespace for {what}"),
            Action::AddNetns { ns: ns.clone() },
        );
        p.ip(
            format!("{ns}: loopback up"),
            &ns,
            &["link", "set", "lo", "up"],
        );
        p.nsexec(
            format!("{ns}: no IPv6 (no ND/MLD noise on the data path)"),
            &ns,
            sysctl(&no_v6),
        );
    }
    // A host that loaded br_netfilter (Docker does) makes every bridge of
    // every namespace run the iptables hooks on every bridged frame: a
    // switch does not, and it cost about 15 % of the host's CPU per reply.
    // `-e`: the keys exist only while br_netfilter is loaded.
    let mut no_br_nf = s(&["sysctl", "-qew"]);
    no_br_nf.extend(
        ["iptables", "ip6tables", "arptables"].map(|t| format!("net.bridge.bridge-nf-call-{t}=0")),
    );
    p.nsexec(
        format!("{sw}: bridges do not call netfilter (a switch, not a firewall)"),
        &sw,
        no_br_nf,
    );
    for n in &t.nodes {
        let ns = netns_name(&n.name);
        p.nsexec(
            format!("{ns}: {} sysctls", n.role.as_str()),
            &ns,
            sysctl(&node_sysctls(t, n)),
        );
    }

    // Bridges: flooding of multicast (no snooping) so VIP frames reach every LB.
    for seg in &t.segments {
        let br = bridge_name(&seg.name);
        p.push(
            format!(
                "bridge for segment {} ({}), multicast flooded",
                seg.name, seg.subnet
            ),
            Action::AddBridge {
                ns: sw.clone(),
                name: br.clone(),
            },
        );
        p.ip(format!("{br} up"), &sw, &["link", "set", "dev", &br, "up"]);
    }

    // NICs: a veth per interface, switch end on the segment's bridge.
    let tbf = profile.tbf_args();
    for n in &t.nodes {
        let ns = netns_name(&n.name);
        for (i, f) in n.ifaces.iter().enumerate() {
            let port = port_name(&n.name, i);
            let br = bridge_name(&f.segment);
            p.push(
                format!(
                    "{}:{} plugged into {} (switch port {port})",
                    n.name, f.name, f.segment
                ),
                Action::AddVeth {
                    ns: sw.clone(),
                    name: port.clone(),
                    peer_ns: ns.clone(),
                    peer: f.name.clone(),
                },
            );
            p.ip(
                format!("{port} on {br}, up"),
                &sw,
                &["link", "set", "dev", &port, "master", &br, "up"],
            );
            for (dns, dev) in [(&sw, &port), (&ns, &f.name)] {
                let mut argv = s(&["ethtool", "-K", dev]);
                argv.extend(s(OFFLOADS_OFF));
                p.nsexec(format!("{dns}:{dev}: offloads off"), dns, argv);
                if let Some(tbf) = &tbf {
                    let mut args = s(&["qdisc", "replace", "dev", dev, "root", "tbf"]);
                    args.extend(tbf.iter().cloned());
                    p.push(
                        format!(
                            "{dns}:{dev}: egress limited to {} Mbit/s",
                            profile.link_mbit.unwrap_or(0)
                        ),
                        Action::Tc {
                            ns: dns.clone(),
                            args,
                        },
                    );
                }
            }
            if t.holds_vip(n) {
                p.nsexec(
                    format!(
                        "{}:{}: do not answer or announce ARP for the VIP on lo",
                        n.name, f.name
                    ),
                    &ns,
                    sysctl(&[
                        format!("net.ipv4.conf.{}.arp_ignore=1", f.name),
                        format!("net.ipv4.conf.{}.arp_announce=2", f.name),
                    ]),
                );
            }
            for (k, a) in f.addrs.iter().enumerate() {
                let addr = a.addr.to_string();
                let mut args = s(&["addr", "add", &addr, "dev", &f.name]);
                let what = match &a.label {
                    Some(l) => {
                        args.extend(s(&["label", l]));
                        format!("IP alias {l}")
                    }
                    None if k == 0 => "primary address".to_string(),
                    None => "secondary address".to_string(),
                };
                p.push(
                    format!("{}:{} {what} {addr}", n.name, f.name),
                    Action::Ip {
                        ns: ns.clone(),
                        args,
                    },
                );
            }
            p.ip(
                format!("{}:{} up", n.name, f.name),
                &ns,
                &["link", "set", "dev", &f.name, "up"],
            );
        }
        for a in &n.loopback {
            let addr = a.addr.to_string();
            let mut args = s(&["addr", "add", &addr, "dev", "lo"]);
            if let Some(l) = &a.label {
                args.extend(s(&["label", l]));
            }
            let what = if a.addr.addr == t.vip {
                " (VIP, direct routing)"
            } else {
                ""
            };
            p.push(
                format!("{}: lo alias {addr}{what}", n.name),
                Action::Ip {
                    ns: ns.clone(),
                    args,
                },
            );
        }
    }

    // Balancers: the VIP on a TUN (for local delivery) and a prerouting
    // drop of VIP packets arriving on `front`, so the LB's kernel never
    // answers a flow the user-space balancer did not hand to it (AF_PACKET
    // taps run before netfilter, so the balancer still sees them).
    for n in t.nodes.iter().filter(|n| n.role == Role::Balancer) {
        balancer_steps(&mut p, t, n);
    }

    // Routes (testbed subnets only; no default route anywhere).
    for n in &t.nodes {
        let ns = netns_name(&n.name);
        for r in &n.routes {
            let (to, via) = (r.to.to_string(), r.via.to_string());
            p.ip(
                format!("{}: route to {to} via {via}", n.name),
                &ns,
                &["route", "add", &to, "via", &via],
            );
        }
    }

    // The router resolves the VIP to a multicast MAC on the VIP's segment.
    if let Some(seg) = t.vip_segment() {
        let mac = multicast_mac(t.vip);
        let vip = t.vip.to_string();
        for n in t.nodes.iter().filter(|n| n.role == Role::Router) {
            for f in n.ifaces.iter().filter(|f| f.segment == seg.name) {
                p.ip(
                    format!(
                        "{}: VIP {vip} -> multicast {mac} on {} (every LB receives it)",
                        n.name, f.name
                    ),
                    &netns_name(&n.name),
                    &[
                        "neigh",
                        "replace",
                        &vip,
                        "lladdr",
                        &mac,
                        "nud",
                        "permanent",
                        "dev",
                        &f.name,
                    ],
                );
            }
        }
    }

    // CPU quotas.
    let constrained: Vec<(&Node, u64)> = t
        .nodes
        .iter()
        .filter_map(|n| profile.quota_us(n.role).map(|q| (n, q)))
        .collect();
    if !constrained.is_empty() {
        let cg = cgroups.ok_or_else(|| PlanError::NoCgroups(profile.name.clone()))?;
        for (path, contents) in cg.enable_writes() {
            p.push(
                "cgroup v2: let child cgroups use the cpu controller",
                Action::WriteFile { path, contents },
            );
        }
        for (n, q) in constrained {
            let dir = cg.node_dir(&n.name);
            p.push(
                format!("cgroup of {}", n.name),
                Action::MakeCgroup { path: dir.clone() },
            );
            for (path, contents) in cg.quota_writes(&dir, q, profile.cpu_period_us) {
                p.push(
                    format!("{}: {q} us of CPU per {} us", n.name, profile.cpu_period_us),
                    Action::WriteFile { path, contents },
                );
            }
        }
    }
    Ok(p.0)
}

/// What exists on the machine with our prefix (found by `inventory::discover`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    /// Network namespaces named `bal-*`.
    pub namespaces: Vec<String>,
    /// Links named `bal-*` in the root namespace (should never exist).
    pub root_links: Vec<String>,
    /// Cgroup directories named `bal-*` under the CPU hierarchy.
    pub cgroups: Vec<PathBuf>,
}

impl Inventory {
    /// Whether nothing of ours exists.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.root_links.is_empty() && self.cgroups.is_empty()
    }
}

/// Every step that removes what `inv` lists: processes first, then
/// namespaces (which takes their veths and bridges), stray root links, then
/// cgroups. Processes are found both by namespace and by node cgroup.
pub fn plan_down(inv: &Inventory) -> Vec<Step> {
    let mut p = Plan(Vec::new());
    for ns in &inv.namespaces {
        p.push(
            format!("stop every process in {ns}"),
            Action::KillNetnsProcs { ns: ns.clone() },
        );
    }
    for c in &inv.cgroups {
        p.push(
            format!("stop every process in cgroup {}", c.display()),
            Action::KillCgroupProcs { path: c.clone() },
        );
    }
    for ns in &inv.namespaces {
        p.push(
            format!("delete {ns} (and its links)"),
            Action::DeleteNetns { ns: ns.clone() },
        );
    }
    for l in &inv.root_links {
        p.push(
            format!("delete stray root-namespace link {l}"),
            Action::DeleteRootLink { name: l.clone() },
        );
    }
    for c in &inv.cgroups {
        p.push(
            format!("remove cgroup {}", c.display()),
            Action::RemoveCgroup { path: c.clone() },
        );
    }
    p.0
}

/// The steps as a replayable POSIX shell script (`set -e`, quoted args).
pub fn render_script(title: &str, steps: &[Step]) -> String {
    let mut out = String::from("#!/bin/sh\n");
    let _ = writeln!(out, "# {title}");
    out.push_str("# Generated by `harness`; replay as root.\nset -e\n");
    for st in steps {
        let _ = writeln!(out, "\n# {}", st.description.replace('\n', " "));
        let _ = writeln!(out, "{}", st.action.shell());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Ipv4Net, TESTBED_RANGE};
    use crate::topology::BUILTIN_TOPOLOGIES;
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv4Addr;

    fn v1() -> CgroupFlavor {
        CgroupFlavor::V1 {
            root: "/sys/fs/cgroup/cpu".into(),
        }
    }

    fn all_plans() -> Vec<(String, Vec<Step>)> {
        let mut v = Vec::new();
        for t in BUILTIN_TOPOLOGIES {
            for pr in crate::profile::BUILTIN_PROFILES {
                for cg in [
                    v1(),
                    CgroupFlavor::V2 {
                        root: "/sys/fs/cgroup".into(),
                    },
                ] {
                    let top = Topology::builtin(t).unwrap();
                    let prof = Profile::builtin(pr).unwrap();
                    let steps = plan_up(&top, &prof, Some(&cg)).unwrap();
                    v.push((format!("{t}/{pr}/{}", cg.version()), steps));
                }
            }
        }
        v
    }

    #[test]
    fn every_address_is_inside_the_testbed_range() {
        for (name, steps) in all_plans() {
            for st in &steps {
                for tok in st.action.argv().unwrap_or_default() {
                    let ip = tok
                        .parse::<Ipv4Net>()
                        .map(|n| n.addr)
                        .or_else(|_| tok.parse::<Ipv4Addr>());
                    if let Ok(ip) = ip {
                        assert!(
                            TESTBED_RANGE.contains(ip),
                            "{name}: {tok} in `{}`",
                            st.action.shell()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_step_touches_the_root_namespace() {
        for (name, steps) in all_plans() {
            for st in &steps {
                let Some(argv) = st.action.argv() else {
                    // File operations: only our cgroups (or v2's one enable write).
                    match &st.action {
                        Action::MakeCgroup { path } => {
                            assert!(path
                                .file_name()
                                .unwrap()
                                .to_str()
                                .unwrap()
                                .starts_with(PREFIX))
                        }
                        Action::WriteFile { path, .. } => {
                            let p = path.to_str().unwrap();
                            assert!(
                                p.contains("/bal-") || p.ends_with("cgroup.subtree_control"),
                                "{p}"
                            )
                        }
                        other => panic!("{name}: unexpected native step {other:?}"),
                    }
                    continue;
                };
                let line = argv.join(" ");
                let ns = match (argv[0].as_str(), argv[1].as_str()) {
                    ("ip", "-n") | ("tc", "-n") => &argv[2],
                    ("ip", "netns") if argv[2] == "add" || argv[2] == "exec" => &argv[3],
                    _ => panic!("{name}: `{line}` is not confined to a namespace"),
                };
                assert!(ns.starts_with(PREFIX), "{name}: `{line}`");
                assert!(
                    !argv.iter().any(|a| a == "default"),
                    "{name}: default route? `{line}`"
                );
            }
        }
    }

    #[test]
    fn default_only_appears_in_sysctl_keys() {
        // (guard for the assertion above: sysctl `default` keys are in NsExec argv)
        let t = Topology::builtin("1lb-1rs").unwrap();
        let steps = plan_up(&t, &Profile::builtin("paper").unwrap(), Some(&v1())).unwrap();
        assert!(steps
            .iter()
            .all(|s| !s.action.shell().contains(" default ")));
    }

    #[test]
    fn every_created_name_carries_the_prefix() {
        for (name, steps) in all_plans() {
            for st in &steps {
                match &st.action {
                    Action::AddNetns { ns } => assert!(ns.starts_with(PREFIX), "{name}: {ns}"),
                    Action::AddBridge { name: b, .. } => {
                        assert!(b.starts_with(PREFIX) && b.len() <= 15)
                    }
                    Action::AddVeth { name: l, ns, .. } => {
                        assert_eq!(ns, &switch_ns());
                        assert!(l.starts_with(PREFIX) && l.len() <= 15, "{l}")
                    }
                    Action::MakeCgroup { path } => {
                        assert!(path
                            .file_name()
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .starts_with(PREFIX))
                    }
                    _ => {}
                }
            }
        }
    }

    /// A symbolic machine: what exists after applying steps.
    #[derive(Default, Debug)]
    struct Model {
        ns: BTreeSet<String>,
        links: BTreeMap<String, BTreeSet<String>>,
        peers: Vec<((String, String), (String, String))>,
        cgroups: BTreeSet<PathBuf>,
    }

    impl Model {
        fn apply(&mut self, st: &Step) {
            let need =
                |m: &Model, ns: &str| assert!(m.ns.contains(ns), "{ns} missing for {:?}", st);
            match &st.action {
                Action::AddNetns { ns } => assert!(self.ns.insert(ns.clone()), "{ns} twice"),
                Action::DeleteNetns { ns } => {
                    assert!(self.ns.remove(ns));
                    self.links.remove(ns);
                    let gone: Vec<_> = self
                        .peers
                        .iter()
                        .filter(|(a, b)| a.0 == *ns || b.0 == *ns)
                        .cloned()
                        .collect();
                    for (a, b) in gone {
                        for (n, l) in [a, b] {
                            if let Some(s) = self.links.get_mut(&n) {
                                s.remove(&l);
                            }
                        }
                    }
                }
                Action::AddBridge { ns, name } => {
                    need(self, ns);
                    assert!(self
                        .links
                        .entry(ns.clone())
                        .or_default()
                        .insert(name.clone()));
                }
                Action::AddVeth {
                    ns,
                    name,
                    peer_ns,
                    peer,
                } => {
                    need(self, ns);
                    need(self, peer_ns);
                    assert!(self
                        .links
                        .entry(ns.clone())
                        .or_default()
                        .insert(name.clone()));
                    assert!(self
                        .links
                        .entry(peer_ns.clone())
                        .or_default()
                        .insert(peer.clone()));
                    self.peers
                        .push(((ns.clone(), name.clone()), (peer_ns.clone(), peer.clone())));
                }
                Action::Ip { ns, .. }
                | Action::Tc { ns, .. }
                | Action::NsExec { ns, .. }
                | Action::KillNetnsProcs { ns } => need(self, ns),
                Action::MakeCgroup { path } => assert!(self.cgroups.insert(path.clone())),
                Action::RemoveCgroup { path } => assert!(self.cgroups.remove(path)),
                Action::WriteFile { .. } | Action::KillCgroupProcs { .. } => {}
                Action::DeleteRootLink { .. } => panic!("no root links in the model"),
            }
        }
        fn inventory(&self) -> Inventory {
            Inventory {
                namespaces: self.ns.iter().cloned().collect(),
                root_links: vec![],
                cgroups: self.cgroups.iter().cloned().collect(),
            }
        }
        fn is_empty(&self) -> bool {
            self.ns.is_empty()
                && self.cgroups.is_empty()
                && self.links.values().all(|s| s.is_empty())
        }
    }

    #[test]
    fn down_plan_removes_everything_the_up_plan_creates() {
        for (name, steps) in all_plans() {
            let mut m = Model::default();
            for st in &steps {
                m.apply(st);
            }
            assert!(!m.is_empty());
            let down = plan_down(&m.inventory());
            // Processes are stopped before their namespace goes.
            let first_delete = down
                .iter()
                .position(|s| matches!(s.action, Action::DeleteNetns { .. }))
                .unwrap();
            assert!(down[..first_delete].iter().all(|s| matches!(
                s.action,
                Action::KillNetnsProcs { .. } | Action::KillCgroupProcs { .. }
            )));
            let kills = down[..first_delete].len();
            assert_eq!(
                kills,
                m.ns.len() + m.cgroups.len(),
                "{name}: one kill per namespace and cgroup"
            );
            for st in &down {
                m.apply(st);
            }
            assert!(m.is_empty(), "{name}: left {m:?}");
        }
    }

    #[test]
    fn paper_profile_sets_quotas_and_tbf() {
        let t = Topology::builtin("2lb-2rs").unwrap();
        let steps = plan_up(&t, &Profile::builtin("paper").unwrap(), Some(&v1())).unwrap();
        let script = render_script("t", &steps);
        assert!(
            script.contains("printf '%s\\n' 28000 > /sys/fs/cgroup/cpu/bal-lb2/cpu.cfs_quota_us")
        );
        assert!(
            script.contains("printf '%s\\n' 20000 > /sys/fs/cgroup/cpu/bal-rs1/cpu.cfs_quota_us")
        );
        assert!(!script.contains("bal-client1/cpu"));
        assert!(script.contains("tc -n bal-lb1 qdisc replace dev front root tbf rate 100mbit"));
        assert!(script.contains("tc -n bal-sw qdisc replace dev bal-lb1-0 root tbf rate 100mbit"));
        let un = plan_up(&t, &Profile::builtin("unconstrained").unwrap(), None).unwrap();
        assert!(un
            .iter()
            .all(|s| !matches!(s.action, Action::Tc { .. } | Action::MakeCgroup { .. })));
        assert!(matches!(
            plan_up(&t, &Profile::builtin("paper").unwrap(), None),
            Err(PlanError::NoCgroups(_))
        ));
    }

    #[test]
    fn vip_multicast_neigh_offloads_and_aliases() {
        let t = Topology::builtin("1lb-1rs").unwrap();
        let script = render_script(
            "t",
            &plan_up(&t, &Profile::builtin("unconstrained").unwrap(), None).unwrap(),
        );
        assert!(script.contains(
            "ip -n bal-router neigh replace 198.18.1.100 lladdr 01:00:5e:12:01:64 nud permanent dev eth1"
        ));
        assert!(script.contains("ip -n bal-sw link add bal-br-lan type bridge mcast_snooping 0"));
        let no_br_nf = script
            .find("ip netns exec bal-sw sysctl -qew net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0")
            .expect("bridges without netfilter");
        assert!(
            no_br_nf < script.find("type bridge").unwrap(),
            "before the first bridge"
        );
        assert!(script
            .contains("ip netns exec bal-lb1 ethtool -K front tx off tso off gso off gro off"));
        assert!(script
            .contains("ip netns exec bal-sw ethtool -K bal-lb1-1 tx off tso off gso off gro off"));
        assert!(script.contains("ip -n bal-lb1 addr add 198.18.11.1/24 dev back label back:0"));
        assert!(script.contains("ip -n bal-rs1 route add 198.18.0.0/24 via 198.18.11.1"));
        assert!(script.contains("ip -n bal-client1 route add 198.18.1.0/24 via 198.18.0.1"));
        assert!(script.contains("net.ipv4.ip_forward=1"));
        // In NAT mode only the balancer holds the VIP, on its TUN.
        let vip_lines: Vec<&str> = script
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("198.18.1.100/"))
            .collect();
        assert_eq!(
            vip_lines,
            ["ip -n bal-lb1 addr add 198.18.1.100/32 dev vip0 label vip0:0"]
        );
        let dr = Topology::builtin("1lb-1rs-dr").unwrap();
        let script = render_script(
            "t",
            &plan_up(&dr, &Profile::builtin("unconstrained").unwrap(), None).unwrap(),
        );
        assert!(script.contains("ip -n bal-rs1 addr add 198.18.1.100/32 dev lo label lo:0"));
        assert!(
            script.contains("net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2")
        );
        assert!(script.contains("net.ipv4.conf.all.arp_ignore=1"));
        assert!(script.contains("ip -n bal-rs1 route add 198.18.0.0/24 via 198.18.11.254"));
    }

    #[test]
    fn balancers_get_vip_tun_and_nft_drop() {
        for name in BUILTIN_TOPOLOGIES {
            let t = Topology::builtin(name).unwrap();
            let steps = plan_up(&t, &Profile::builtin("unconstrained").unwrap(), None).unwrap();
            let script = render_script("t", &steps);
            let pos = |needle: &str| {
                script
                    .find(needle)
                    .unwrap_or_else(|| panic!("{name}: `{needle}` missing in\n{script}"))
            };
            for lb in t.nodes.iter().filter(|n| n.role == Role::Balancer) {
                let ns = netns_name(&lb.name);
                let tun = pos(&format!("ip -n {ns} tuntap add dev vip0 mode tun"));
                let addr = pos(&format!(
                    "ip -n {ns} addr add 198.18.1.100/32 dev vip0 label vip0:0"
                ));
                let up = pos(&format!("ip -n {ns} link set dev vip0 up"));
                assert!(tun < addr && addr < up, "{name}: TUN before its address");
                pos(&format!(
                    "ip netns exec {ns} sysctl -qw net.ipv4.conf.vip0.rp_filter=0 net.ipv4.conf.all.rp_filter=0"
                ));
                let table = pos(&format!("ip netns exec {ns} nft add table ip bal"));
                let chain = pos(&format!(
                    "ip netns exec {ns} nft add chain ip bal prerouting '{{' type filter hook prerouting priority -300 ';' policy accept ';' '}}'"
                ));
                let rule = pos(&format!(
                    "ip netns exec {ns} nft add rule ip bal prerouting iifname front ip daddr 198.18.1.100 counter drop"
                ));
                assert!(table < chain && chain < rule, "{name}: nft order");
                // The front interface (the rule's iifname) exists before the rule.
                assert!(pos(&format!("ip -n {ns} link set dev front up")) < rule);
            }
            let lbs = t.nodes.iter().filter(|n| n.role == Role::Balancer).count();
            assert_eq!(script.matches("tuntap add").count(), lbs, "{name}");
            assert_eq!(script.matches("nft add rule").count(), lbs, "{name}");
            // Nobody but balancers gets a TUN or nft rules.
            for n in t.nodes.iter().filter(|n| n.role != Role::Balancer) {
                let ns = netns_name(&n.name);
                assert!(!script.contains(&format!("ip -n {ns} tuntap")), "{name}");
                assert!(!script.contains(&format!("exec {ns} nft")), "{name}");
            }
        }
    }

    #[test]
    fn balancer_and_client_sysctls() {
        let t = Topology::builtin("1lb-1rs").unwrap();
        let script = render_script(
            "t",
            &plan_up(&t, &Profile::builtin("unconstrained").unwrap(), None).unwrap(),
        );
        assert!(script.contains("net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"));
        assert!(script.contains(
            "ip netns exec bal-client1 sysctl -qw net.ipv4.ip_forward=0 'net.ipv4.ip_local_port_range=1024 65535' net.ipv4.tcp_tw_reuse=1"
        ));
    }

    #[test]
    fn script_quoting() {
        assert_eq!(quote("bal-lb1"), "bal-lb1");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm)"), "'$(rm)'");
        let script = render_script("t", &[]);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("\nset -e\n"));
    }

    #[test]
    fn down_plan_handles_stray_root_links() {
        let inv = Inventory {
            namespaces: vec![],
            root_links: vec!["bal-old-0".into()],
            cgroups: vec!["/sys/fs/cgroup/cpu/bal-gone".into()],
        };
        let script = render_script("down", &plan_down(&inv));
        assert!(script.contains("ip link delete bal-old-0"));
        assert!(script.contains("$(cat /sys/fs/cgroup/cpu/bal-gone/cgroup.procs)"));
        assert!(script.contains("rmdir /sys/fs/cgroup/cpu/bal-gone"));
    }
}
