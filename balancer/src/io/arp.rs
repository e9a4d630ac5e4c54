//! Real-server MAC resolution on `back` by our own ARP: who-has requests
//! every interval for each unresolved server, and learning from every ARP
//! frame read on `back` (replies, and the senders of requests). Pure state:
//! the packet loop sends the frames and feeds in what it reads.

use std::net::Ipv4Addr;
use std::time::Duration;

use balancer::config::Config;
use balancer::wire::{Arp, MacAddr, ARP_REPLY, ARP_REQUEST};

/// One real server whose MAC the balancer learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    index: u16,
    ip: Ipv4Addr,
    mac: Option<MacAddr>,
}

/// What [`Resolver::learn`] found out about one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// Index in the configuration's `real_servers`.
    pub index: u16,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The MAC now known.
    pub mac: MacAddr,
    /// The MAC known before (None: first resolution).
    pub previous: Option<MacAddr>,
}

/// ARP state for the real servers without a configured MAC.
#[derive(Debug, Clone)]
pub struct Resolver {
    entries: Vec<Entry>,
    interval: Duration,
    next_due: Duration,
}

impl Resolver {
    /// Tracks every real server of `cfg` whose MAC is not configured.
    pub fn new(cfg: &Config, interval: Duration) -> Self {
        let entries = cfg
            .real_servers
            .iter()
            .enumerate()
            .filter(|(_, rs)| rs.mac.is_none())
            .map(|(i, rs)| Entry {
                // validate() bounds the count below u16::MAX.
                index: i as u16,
                ip: rs.addr,
                mac: None,
            })
            .collect();
        Self {
            entries,
            interval,
            next_due: Duration::ZERO,
        }
    }

    /// If requests are due at `now`, the distinct unresolved addresses to
    /// ask for (and the next round is scheduled); otherwise empty.
    pub fn due(&mut self, now: Duration) -> Vec<Ipv4Addr> {
        if now < self.next_due {
            return Vec::new();
        }
        self.next_due = now + self.interval;
        let mut ips: Vec<Ipv4Addr> = self
            .entries
            .iter()
            .filter(|e| e.mac.is_none())
            .map(|e| e.ip)
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Learns from one ARP frame; calls `f` for each server whose MAC is
    /// new or changed. Frames claiming 0.0.0.0 (probes), or a broadcast,
    /// multicast or zero MAC, teach nothing.
    pub fn learn(&mut self, arp: &Arp, mut f: impl FnMut(Learned)) {
        if arp.op != ARP_REPLY && arp.op != ARP_REQUEST {
            return;
        }
        let m = arp.sender_mac;
        if arp.sender_ip.is_unspecified() || m.0[0] & 1 == 1 || m == MacAddr::default() {
            return;
        }
        for e in self.entries.iter_mut().filter(|e| e.ip == arp.sender_ip) {
            if e.mac != Some(m) {
                let previous = e.mac.replace(m);
                f(Learned {
                    index: e.index,
                    ip: e.ip,
                    mac: m,
                    previous,
                });
            }
        }
    }

    /// "real[i] ADDR" of every server still unresolved.
    pub fn unresolved(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.mac.is_none())
            .map(|e| format!("real[{}] {}", e.index, e.ip))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer::config::Config;

    fn cfg() -> Config {
        Config::from_toml_str(
            "[interfaces]\nfront = \"f\"\nback = \"b\"\n[vip]\naddr = \"10.0.0.1\"\nport = 80\n\
             [[real_servers]]\naddr = \"10.1.0.2\"\n\
             [[real_servers]]\naddr = \"10.1.0.3\"\nmac = \"02:00:00:00:00:03\"\n\
             [[real_servers]]\naddr = \"10.1.0.2\"\nport = 8080\n",
        )
        .unwrap()
    }

    fn reply(ip: [u8; 4], mac: u8) -> Arp {
        Arp {
            op: ARP_REPLY,
            sender_mac: MacAddr([2, 0, 0, 0, 0, mac]),
            sender_ip: Ipv4Addr::from(ip),
            target_mac: MacAddr([2, 0, 0, 0, 0, 0xb1]),
            target_ip: Ipv4Addr::new(10, 1, 0, 1),
        }
    }

    #[test]
    fn requests_each_interval_until_resolved() {
        let mut r = Resolver::new(&cfg(), Duration::from_secs(1));
        let t = Duration::from_millis;
        assert_eq!(r.due(t(0)), vec![Ipv4Addr::new(10, 1, 0, 2)]);
        assert!(r.due(t(500)).is_empty());
        assert_eq!(r.due(t(1000)).len(), 1);
        assert_eq!(r.unresolved(), vec!["real[0] 10.1.0.2", "real[2] 10.1.0.2"]);
        let mut got = Vec::new();
        r.learn(&reply([10, 1, 0, 2], 2), |l| got.push(l));
        // Both endpoints on that address learn the MAC.
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].index, 0);
        assert_eq!(got[1].index, 2);
        assert_eq!(got[0].previous, None);
        assert!(r.unresolved().is_empty());
        assert!(r.due(t(5000)).is_empty());
        // Same MAC again: nothing; a changed MAC is reported.
        r.learn(&reply([10, 1, 0, 2], 2), |_| panic!("no change"));
        let mut got = Vec::new();
        r.learn(&reply([10, 1, 0, 2], 9), |l| got.push(l));
        assert_eq!(got[0].previous, Some(MacAddr([2, 0, 0, 0, 0, 2])));
    }

    #[test]
    fn ignores_configured_probes_and_junk() {
        let mut r = Resolver::new(&cfg(), Duration::from_secs(1));
        // The configured MAC is not overridden by ARP.
        r.learn(&reply([10, 1, 0, 3], 7), |_| panic!("configured"));
        r.learn(&reply([0, 0, 0, 0], 7), |_| panic!("probe"));
        let mut bcast = reply([10, 1, 0, 2], 7);
        bcast.sender_mac = MacAddr::BROADCAST;
        r.learn(&bcast, |_| panic!("broadcast"));
        let mut op = reply([10, 1, 0, 2], 7);
        op.op = 9;
        r.learn(&op, |_| panic!("op"));
        // A request from the server teaches its MAC too.
        let mut req = reply([10, 1, 0, 2], 7);
        req.op = ARP_REQUEST;
        let mut n = 0;
        r.learn(&req, |_| n += 1);
        assert_eq!(n, 2);
    }
}
