//! The control endpoint's document: the engine [`Snapshot`] plus what only
//! the I/O process knows (uptime, rates, CPU per packet, I/O errors, ARP).
//!
//! `GET /stats` returns a [`StatusDoc`] as JSON. The snapshot's fields are
//! flattened to the top level, so a reader that only knows [`Snapshot`]
//! (e.g. the harness) deserialises the same document and ignores
//! `process`. [`format_status`] renders a fetched document like
//! `ipvsadm -L -n --stats` followed by the process figures; it is pure, so
//! `balancer stats` runs it on the deserialised JSON.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::counters::{format_stats, Snapshot};
use crate::health::TargetHealth;
use crate::membership::MembershipDoc;

/// Process-level figures kept by the packet thread.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Seconds since the packet loop started.
    pub uptime_secs: f64,
    /// Frames read (front + back, ARP included) per second over the last full second.
    pub rx_pps: f64,
    /// Frames sent or delivered locally per second over the last full second.
    pub tx_pps: f64,
    /// Frames read on both interfaces (ARP included).
    pub packets_in: u64,
    /// Frames sent on front/back plus packets written to the TUN.
    pub packets_out: u64,
    /// CPU time of the packet thread, seconds.
    pub cpu_secs: f64,
    /// Packet-thread CPU time per frame read, nanoseconds.
    pub cpu_ns_per_packet_in: f64,
    /// Packet-thread CPU time per packet forwarded or delivered, nanoseconds.
    pub cpu_ns_per_packet_out: f64,
    /// Send errors on front (the frame is lost).
    pub tx_errors_front: u64,
    /// Send errors on back.
    pub tx_errors_back: u64,
    /// Sends retried after EAGAIN (socket buffer full) or ENOBUFS.
    #[serde(default)]
    pub tx_retries: u64,
    /// Frames given up after the retries because the socket buffer stayed full (EAGAIN).
    #[serde(default)]
    pub tx_would_block: u64,
    /// Frames given up after the retries because the device queue dropped them (ENOBUFS).
    #[serde(default)]
    pub tx_no_buffers: u64,
    /// Frames given up for any other send error.
    #[serde(default)]
    pub tx_other_errors: u64,
    /// sh/mh lookup tables built off the packet thread and swapped in.
    #[serde(default)]
    pub tables_installed: u64,
    /// Write errors on the TUN (local delivery lost).
    pub tun_errors: u64,
    /// Frames that filled the whole read buffer (possibly cut: dropped).
    pub rx_oversize: u64,
    /// Receive errors other than timeouts.
    pub rx_errors: u64,
    /// Frames the kernel dropped in front of front's packet socket (its
    /// buffer or ring was full): the balancer never saw them.
    #[serde(default)]
    pub rx_dropped_front: u64,
    /// The same on back.
    #[serde(default)]
    pub rx_dropped_back: u64,
    /// The frame I/O path (`--io`).
    #[serde(default)]
    pub io: String,
    /// ARP requests sent on back.
    pub arp_requests: u64,
    /// ARP frames read on back (not given to the engine).
    pub arp_seen: u64,
    /// Real servers whose MAC is still unknown (they get no flows).
    pub unresolved: Vec<String>,
    /// The tc ingress early drop per interface ("off" when not asked for).
    #[serde(default)]
    pub early_drop: String,
}

/// The `/stats` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// The engine's counters and targets (flattened into the top level).
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// Process figures.
    pub process: ProcessInfo,
    /// Heartbeat membership (absent without peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipDoc>,
    /// Health checks per target (absent when checks are off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<TargetHealth>>,
}

impl StatusDoc {
    /// Pretty JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Renders the ipvsadm-like table and the process figures.
pub fn format_status(d: &StatusDoc) -> String {
    let mut o = format_stats(&d.snapshot);
    let p = &d.process;
    let s = &d.snapshot;
    let _ = writeln!(
        o,
        "Frames: front rx {} back rx {}, tx front {} back {}, delivered local {}",
        s.front_rx, s.back_rx, s.tx_front, s.tx_back, s.delivered_local
    );
    let _ = writeln!(
        o,
        "Process: pid {}, up {:.1} s, rx {:.0} pps, tx {:.0} pps, cpu {:.3} s ({:.0} ns per frame in, {:.0} ns per packet out){}",
        p.pid, p.uptime_secs, p.rx_pps, p.tx_pps, p.cpu_secs, p.cpu_ns_per_packet_in, p.cpu_ns_per_packet_out,
        if p.io.is_empty() { String::new() } else { format!(", io {}", p.io) }
    );
    let errs = [
        ("tx_errors_front", p.tx_errors_front),
        ("tx_errors_back", p.tx_errors_back),
        ("tx_retries", p.tx_retries),
        ("tx_would_block", p.tx_would_block),
        ("tx_no_buffers", p.tx_no_buffers),
        ("tx_other_errors", p.tx_other_errors),
        ("tun_errors", p.tun_errors),
        ("rx_oversize", p.rx_oversize),
        ("rx_errors", p.rx_errors),
        ("rx_dropped_front", p.rx_dropped_front),
        ("rx_dropped_back", p.rx_dropped_back),
    ];
    if errs.iter().any(|(_, v)| *v > 0) {
        let _ = writeln!(o, "I/O errors:");
        for (k, v) in errs {
            if v > 0 {
                let _ = writeln!(o, "  {k:<22} {v:>12}");
            }
        }
    }
    let _ = writeln!(
        o,
        "ARP: {} requests sent, {} frames seen{}",
        p.arp_requests,
        p.arp_seen,
        if p.unresolved.is_empty() {
            String::new()
        } else {
            format!(", unresolved: {}", p.unresolved.join(", "))
        }
    );
    if let Some(m) = &d.membership {
        format_membership(&mut o, m);
    }
    if let Some(h) = &d.health {
        let _ = writeln!(o, "Health:");
        for t in h {
            let _ = writeln!(
                o,
                "  {:<8} {:<21} {:<4} for {:>7} ms, {} checks, {} failed{}",
                t.name,
                t.addr,
                if t.up { "up" } else { "DOWN" },
                t.since_ms,
                t.checks,
                t.failures,
                t.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (last: {e})"))
            );
        }
    }
    o
}

/// The membership lines of `balancer stats`.
fn format_membership(o: &mut String, m: &MembershipDoc) {
    let _ = writeln!(
        o,
        "Membership: node {} {:?}, epoch {}, view {:?}, {} buckets owned here{}",
        m.node_id,
        m.state,
        m.epoch,
        m.view,
        m.owned_buckets,
        if m.withdrawn { ", withdrawn" } else { "" }
    );
    for mb in &m.members {
        let _ = writeln!(
            o,
            "  member {:<4} weight {:<3} {:<10} last heard {:>8}  {}",
            mb.id,
            mb.weight,
            mb.state
                .map_or("unheard".to_string(), |s| format!("{s:?}").to_lowercase()),
            mb.age_ms.map_or("-".to_string(), |a| format!("{a} ms")),
            if mb.in_view { "in view" } else { "" }
        );
    }
    let c = &m.counters;
    let refused: Vec<String> = c
        .rejected
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        o,
        "Heartbeats: {} sent, {} accepted, refused: {}",
        c.sent,
        c.accepted,
        if refused.is_empty() {
            "none".to_string()
        } else {
            refused.join(", ")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::{Balancer, Interfaces};
    use crate::wire::MacAddr;

    fn doc() -> StatusDoc {
        let cfg = Config::from_toml_str(
            "[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n[[real_servers]]\naddr = \"10.1.0.2\"\n",
        )
        .unwrap();
        let b = Balancer::new(
            &cfg,
            Interfaces {
                front_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                back_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            },
        )
        .unwrap();
        StatusDoc {
            snapshot: b.snapshot(),
            process: ProcessInfo {
                pid: 42,
                uptime_secs: 1.5,
                rx_errors: 3,
                rx_dropped_front: 5,
                io: "ring".into(),
                unresolved: vec!["real[0] 10.1.0.2".into()],
                ..Default::default()
            },
            membership: None,
            health: None,
        }
    }

    #[test]
    fn json_is_a_snapshot_too() {
        let d = doc();
        let text = d.to_json();
        let back: StatusDoc = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        // A Snapshot-only reader gets the same snapshot.
        let snap: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(snap, d.snapshot);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["service"], "10.0.0.1:80");
        assert_eq!(v["process"]["pid"], 42);
    }

    #[test]
    fn table_from_deserialised_doc() {
        let d: StatusDoc = serde_json::from_str(&doc().to_json()).unwrap();
        let t = format_status(&d);
        assert!(t.contains("TCP  10.0.0.1:80"), "{t}");
        assert!(t.contains("  -> 10.1.0.2:80"), "{t}");
        assert!(t.contains("Process: pid 42, up 1.5 s"), "{t}");
        assert!(t.contains("rx_errors"), "{t}");
        assert!(t.contains("per packet out), io ring"), "{t}");
        assert!(t.contains("rx_dropped_front                  5"), "{t}");
        assert!(t.contains("unresolved: real[0] 10.1.0.2"), "{t}");
    }

    #[test]
    fn membership_and_health_lines() {
        use crate::health::Health;
        use crate::heartbeat::Key;
        use crate::membership::{Node, Timing};
        use crate::ownership::Member;
        use std::time::Duration;
        let mut d = doc();
        let members = [Member { id: 1, weight: 1 }, Member { id: 2, weight: 1 }];
        let timing = Timing {
            interval: Duration::from_millis(100),
            dead_after: 3,
        };
        let key = Key::new(b"status-test-cluster-key").unwrap();
        let mut n = Node::new(
            1,
            "10.0.0.1:80".parse().unwrap(),
            &members,
            timing,
            key,
            Duration::ZERO,
            1_000,
        );
        let _ = n.tick(Duration::from_millis(300), 1_300);
        let _ = n.receive(Duration::from_millis(300), 1_300, b"garbage");
        d.membership = Some(n.doc(Duration::from_millis(400), 4096));
        let mut h = Health::new(
            &[("real0".into(), "10.1.0.2:80".into())],
            2,
            1,
            Duration::ZERO,
        );
        h.record(
            0,
            Duration::from_millis(200),
            Err("connect: refused".into()),
        );
        d.health = Some(h.doc(Duration::from_millis(700)));
        let back: StatusDoc = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(back, d);
        let t = format_status(&back);
        assert!(
            t.contains("Membership: node 1 Active, epoch 1000, view [1], 4096 buckets owned here"),
            "{t}"
        );
        assert!(t.contains("  member 2    weight 1   unheard"), "{t}");
        assert!(t.contains("refused: malformed 1"), "{t}");
        assert!(t.contains("real0    10.1.0.2:80           DOWN for     500 ms, 1 checks, 1 failed (last: connect: refused)"), "{t}");
    }
}
