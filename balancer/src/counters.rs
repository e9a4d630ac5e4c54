//! Counters: drops by reason, traffic per target, and their views.
//!
//! On the packet path a drop is not an error but a counted
//! [`DropReason`]. The engine owns the live [`Counters`] (one per packet
//! thread); [`Snapshot`] is the serialisable copy the control endpoint
//! returns as JSON, and [`format_stats`] / [`format_list`] render it like
//! `ipvsadm -L -n --stats` and `ipvsadm -L -n` (pure functions, so the CLI
//! can render a snapshot fetched over the control socket).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::conntrack::ConntrackCounters;
use crate::wire::WireError;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Headers contradict themselves (bad version, IHL, lengths, data offset).
    Malformed,
    /// Frame shorter than its headers declare.
    Truncated,
    /// Not an IPv4 frame (ARP, IPv6, VLAN-tagged ...).
    NotIpv4,
    /// IPv4 but not TCP.
    NotTcp,
    /// An IPv4 fragment (not reassembled).
    Fragment,
    /// IPv4 header with options (not forwarded; see `engine`).
    IpOptions,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// TCP checksum wrong (verified when `verify_checksums` is on).
    BadTcpChecksum,
    /// On `front`: not addressed to the VIP and service port.
    NotForVip,
    /// On `back`: not from a configured real server (NAT replies only).
    NotFromRealServer,
    /// A new flow owned by another balancer (the normal fate of most
    /// frames on a multi-balancer LAN).
    NotOwner,
    /// No target available (all quiesced, down or unresolved).
    NoTarget,
    /// Connection table full of established flows.
    TableFull,
    /// Not a SYN and no connection entry (LVS would pass it to the local
    /// stack; we drop it: another balancer may hold the flow).
    NoConnection,
    /// ICMP too short, with a bad checksum, or quoting something that is
    /// not a plain IPv4 header.
    IcmpMalformed,
    /// ICMP other than destination unreachable / time exceeded, or about
    /// something other than TCP (echo requests to the VIP land here).
    IcmpUnsupported,
    /// An ICMP error about a flow not in this balancer's table.
    IcmpNoConnection,
}

impl DropReason {
    /// Every reason, in display order.
    pub const ALL: [DropReason; 17] = [
        DropReason::Malformed,
        DropReason::Truncated,
        DropReason::NotIpv4,
        DropReason::NotTcp,
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::BadChecksum,
        DropReason::BadTcpChecksum,
        DropReason::NotForVip,
        DropReason::NotFromRealServer,
        DropReason::NotOwner,
        DropReason::NoTarget,
        DropReason::TableFull,
        DropReason::NoConnection,
        DropReason::IcmpMalformed,
        DropReason::IcmpUnsupported,
        DropReason::IcmpNoConnection,
    ];
    /// Snake-case name (the JSON key).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Truncated => "truncated",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::NotTcp => "not_tcp",
            DropReason::Fragment => "fragment",
            DropReason::IpOptions => "ip_options",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadTcpChecksum => "bad_tcp_checksum",
            DropReason::NotForVip => "not_for_vip",
            DropReason::NotFromRealServer => "not_from_real_server",
            DropReason::NotOwner => "not_owner",
            DropReason::NoTarget => "no_target",
            DropReason::TableFull => "table_full",
            DropReason::NoConnection => "no_connection",
            DropReason::IcmpMalformed => "icmp_malformed",
            DropReason::IcmpUnsupported => "icmp_unsupported",
            DropReason::IcmpNoConnection => "icmp_no_connection",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::Malformed => DropReason::Malformed,
            WireError::NotIpv4 => DropReason::NotIpv4,
            WireError::BadChecksum => DropReason::BadChecksum,
            WireError::Fragment => DropReason::Fragment,
            WireError::IpOptions => DropReason::IpOptions,
            WireError::NotTcp => DropReason::NotTcp,
        }
    }
}

/// Traffic of one target (ipvsadm's per-destination stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetCounters {
    /// Connections scheduled to it.
    pub conns: u64,
    /// Client -> server packets.
    pub in_pkts: u64,
    /// Server -> client packets (NAT replies only; local/DR replies bypass us).
    pub out_pkts: u64,
    /// Client -> server bytes (IP length).
    pub in_bytes: u64,
    /// Server -> client bytes.
    pub out_bytes: u64,
}

/// Live counters, owned by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// Frames handed to `handle_front`.
    pub front_rx: u64,
    /// Frames handed to `handle_back`.
    pub back_rx: u64,
    /// Frames forwarded out of `front`.
    pub tx_front: u64,
    /// Frames forwarded out of `back`.
    pub tx_back: u64,
    /// Packets delivered to the local server.
    pub delivered_local: u64,
    /// Initial SYNs with a new ISN on a SYN_RECV entry: new flows
    /// rescheduled, not taken for retransmissions.
    pub syn_recv_new_isn: u64,
    /// ICMP errors about flows in the table, rewritten and forwarded.
    pub icmp_forwarded: u64,
    drops: [u64; DropReason::ALL.len()],
    /// Per target, by `Target::index()`.
    pub targets: Vec<TargetCounters>,
}

impl Counters {
    /// Counters for `n_targets` targets (Local + real servers).
    pub fn new(n_targets: usize) -> Self {
        Self {
            targets: vec![TargetCounters::default(); n_targets],
            ..Self::default()
        }
    }
    /// Counts one drop.
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r.idx()] += 1;
    }
    /// Drops of one reason.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.idx()]
    }
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Drops by reason name (every reason present, zeros included).
    pub fn drop_map(&self) -> BTreeMap<String, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), self.drops(*r)))
            .collect()
    }
}

/// One target in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    /// `local` or `real[i]`.
    pub name: String,
    /// Its address:port ("VIP:port" for the local server).
    pub addr: String,
    /// ipvsadm forward column: Local, Masq or Route.
    pub forward: String,
    /// Scheduling weight (0 = quiesced).
    pub weight: u32,
    /// Whether health checks (or the operator) consider it up.
    pub up: bool,
    /// Connections in ESTABLISHED.
    pub active_conns: u32,
    /// Connections in other states.
    pub inactive_conns: u32,
    /// Traffic counters.
    #[serde(flatten)]
    pub traffic: TargetCounters,
}

/// The serialisable state of a balancer's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// VIP:port of the service.
    pub service: String,
    /// Scheduler name.
    pub scheduler: String,
    /// Whether the local server takes flows.
    pub bi_active: bool,
    /// This balancer's cluster id.
    pub node_id: u32,
    /// Ownership buckets this balancer holds (of 4096).
    pub owned_buckets: usize,
    /// Frames received on front.
    pub front_rx: u64,
    /// Frames received on back.
    pub back_rx: u64,
    /// Frames sent on front.
    pub tx_front: u64,
    /// Frames sent on back.
    pub tx_back: u64,
    /// Packets delivered locally.
    pub delivered_local: u64,
    /// Initial SYNs with a new ISN on a SYN_RECV entry (rescheduled as new flows).
    #[serde(default)]
    pub syn_recv_new_isn: u64,
    /// ICMP errors about flows in the table, rewritten and forwarded
    /// (fragmentation-needed among them: path MTU discovery).
    #[serde(default)]
    pub icmp_forwarded: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Connection table entries.
    pub conntrack_entries: usize,
    /// Connection table capacity.
    pub conntrack_capacity: usize,
    /// Connection table counters.
    pub conntrack: ConntrackCounters,
    /// Targets (local first when configured).
    pub targets: Vec<TargetSnapshot>,
}

impl Snapshot {
    /// JSON text of the snapshot.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Renders `ipvsadm -L -n --stats` (exact numbers, as with `--exact`),
/// followed by the drop counters that ipvsadm does not have.
pub fn format_stats(s: &Snapshot) -> String {
    let mut o = String::new();
    // Saturating: the snapshot may come from another process's JSON
    // (`balancer stats`), so its numbers are input, not our own counts.
    let (c, ip, op, ib, ob) = s
        .targets
        .iter()
        .fold((0u64, 0u64, 0u64, 0u64, 0u64), |a, t| {
            (
                a.0.saturating_add(t.traffic.conns),
                a.1.saturating_add(t.traffic.in_pkts),
                a.2.saturating_add(t.traffic.out_pkts),
                a.3.saturating_add(t.traffic.in_bytes),
                a.4.saturating_add(t.traffic.out_bytes),
            )
        });
    let _ = writeln!(
        o,
        "Balancer node {} (conntrack {}/{}, buckets {}/4096)",
        s.node_id, s.conntrack_entries, s.conntrack_capacity, s.owned_buckets
    );
    let _ = writeln!(
        o,
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
    let _ = writeln!(o, "  -> RemoteAddress:Port");
    let _ = writeln!(
        o,
        "TCP  {:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
        s.service, c, ip, op, ib, ob
    );
    for t in &s.targets {
        let x = &t.traffic;
        let _ = writeln!(
            o,
            "  -> {:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
            t.addr, x.conns, x.in_pkts, x.out_pkts, x.in_bytes, x.out_bytes
        );
    }
    let _ = writeln!(o, "Drops:");
    for (k, v) in &s.drops {
        if *v > 0 {
            let _ = writeln!(o, "  {k:<22} {v:>12}");
        }
    }
    o
}

/// Renders `ipvsadm -L -n` (forward method, weight, active/inactive).
pub fn format_list(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Prot LocalAddress:Port Scheduler Flags");
    let _ = writeln!(
        o,
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
    );
    let _ = writeln!(o, "TCP  {} {}", s.service, s.scheduler);
    for t in &s.targets {
        let down = if t.up { "" } else { " (down)" };
        let _ = writeln!(
            o,
            "  -> {:<28} {:<7} {:<6} {:<10} {}{}",
            t.addr, t.forward, t.weight, t.active_conns, t.inactive_conns, down
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let mut c = Counters::new(2);
        c.drop(DropReason::NotOwner);
        c.drop(DropReason::NotOwner);
        c.drop(DropReason::BadChecksum);
        c.targets[1] = TargetCounters {
            conns: 3,
            in_pkts: 30,
            out_pkts: 20,
            in_bytes: 1800,
            out_bytes: 4000,
        };
        Snapshot {
            service: "198.18.1.100:80".into(),
            scheduler: "wlc".into(),
            bi_active: true,
            node_id: 1,
            owned_buckets: 2048,
            front_rx: 33,
            back_rx: 20,
            tx_front: 20,
            tx_back: 30,
            delivered_local: 0,
            syn_recv_new_isn: 0,
            icmp_forwarded: 0,
            drops: c.drop_map(),
            conntrack_entries: 3,
            conntrack_capacity: 1024,
            conntrack: ConntrackCounters::default(),
            targets: vec![
                TargetSnapshot {
                    name: "local".into(),
                    addr: "198.18.1.100:80".into(),
                    forward: "Local".into(),
                    weight: 1,
                    up: true,
                    active_conns: 0,
                    inactive_conns: 0,
                    traffic: c.targets[0],
                },
                TargetSnapshot {
                    name: "real[0]".into(),
                    addr: "198.18.11.12:80".into(),
                    forward: "Masq".into(),
                    weight: 2,
                    up: false,
                    active_conns: 2,
                    inactive_conns: 1,
                    traffic: c.targets[1],
                },
            ],
        }
    }

    #[test]
    fn counts_and_names() {
        let mut c = Counters::new(1);
        for r in DropReason::ALL {
            c.drop(r);
        }
        let n = DropReason::ALL.len() as u64;
        assert_eq!(c.total_drops(), n);
        assert_eq!(c.drop_map().len() as u64, n);
        // ALL lists each reason once, in declaration order (idx()).
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.idx(), i);
        }
        assert_eq!(DropReason::from(WireError::Fragment), DropReason::Fragment);
        // serde names agree with as_str.
        for r in DropReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn json_round_trips() {
        let s = snap();
        let back: Snapshot = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["drops"]["not_owner"], 2);
        assert_eq!(v["targets"][1]["in_bytes"], 1800);
    }

    #[test]
    fn huge_counters_from_json_do_not_overflow_the_totals() {
        // `balancer stats` renders whatever JSON the endpoint returned.
        let mut s = snap();
        for t in &mut s.targets {
            t.traffic.conns = u64::MAX;
            t.traffic.in_bytes = u64::MAX - 1;
        }
        let back: Snapshot = serde_json::from_str(&s.to_json()).unwrap();
        let t = format_stats(&back);
        let total = t.lines().nth(3).unwrap();
        assert!(total.starts_with("TCP  198.18.1.100:80"), "{total}");
        assert_eq!(
            total.split_whitespace().nth(2),
            Some(u64::MAX.to_string().as_str())
        );
    }

    #[test]
    fn stats_table_layout() {
        let t = format_stats(&snap());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
        );
        assert_eq!(
            lines[3],
            "TCP  198.18.1.100:80                     3       30       20     1800     4000"
        );
        assert_eq!(
            lines[5],
            "  -> 198.18.11.12:80                     3       30       20     1800     4000"
        );
        assert!(t.contains("not_owner                         2"));
        assert!(!t.contains("truncated"));
        let l = format_list(&snap());
        assert!(l.contains("TCP  198.18.1.100:80 wlc"));
        assert!(l.contains("  -> 198.18.11.12:80              Masq    2      2          1 (down)"));
    }
}
