//! Double answers counted at the router (pure): from the frames seen on the
//! router's interface towards the balancers' LAN, how many client SYNs to
//! the VIP were answered, and how many by more than one distinct SYN-ACK.
//!
//! A client SYN is identified by (client address, client port, client ISN),
//! so a retransmitted SYN is the same SYN. A SYN-ACK from the VIP answers
//! the SYN whose ISN is its acknowledgement number minus one; it is
//! identified by (source MAC, server ISN), so a retransmitted SYN-ACK is the
//! same answer, while a second balancer's answer (another MAC, or another
//! server's ISN) is a second one: the flow was answered twice.
//!
//! [`SynAckCounter`] takes frames one at a time (no I/O); the capture loop
//! is in [`crate::capture`].

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use balancer::wire::{parse_tcp_frame, MacAddr, TcpSegment};
use serde::{Deserialize, Serialize};

/// At most this many client SYNs are tracked (memory bound: ~100 bytes
/// each); later ones are counted in [`RouterCheck::untracked`].
pub const MAX_TRACKED: usize = 4_000_000;

/// What the router saw: the result of the check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterCheck {
    /// Interfaces captured on, `+`-separated (in the router's namespace).
    pub iface: String,
    /// Distinct client SYNs to the VIP (client address, port, ISN).
    pub client_syns: u64,
    /// SYN frames seen again for a SYN already counted: the client's
    /// retransmissions (or, in DR, the same SYN flooded onto a second
    /// captured interface).
    pub syn_retransmissions: u64,
    /// Client SYNs answered by at least one SYN-ACK.
    pub answered: u64,
    /// Client SYNs answered by two or more distinct SYN-ACKs (double answers).
    pub answered_twice: u64,
    /// Client SYNs no SYN-ACK answered.
    pub unanswered: u64,
    /// SYN-ACK frames from the VIP.
    pub synacks: u64,
    /// SYN-ACK frames identical in source MAC and server ISN to one seen before.
    pub synack_retransmissions: u64,
    /// SYN-ACKs for a SYN the capture did not see (e.g. sent before it started).
    pub synacks_without_syn: u64,
    /// Distinct answers by the source MAC that sent them.
    pub answers_by_mac: BTreeMap<String, u64>,
    /// The same by node name, where the harness knows the MAC (its balancers' `front`).
    #[serde(default)]
    pub answers_by_node: BTreeMap<String, u64>,
    /// Up to 5 double-answered SYNs, `client:port isn` with their answers.
    pub twice_examples: Vec<String>,
    /// Client SYNs past [`MAX_TRACKED`], not checked.
    pub untracked: u64,
    /// Frames the kernel dropped because the capture fell behind
    /// (PACKET_STATISTICS); non-zero means the counts may be incomplete.
    pub capture_drops: u64,
}

impl RouterCheck {
    /// One summary line.
    pub fn line(&self) -> String {
        let by: Vec<String> = if self.answers_by_node.is_empty() {
            &self.answers_by_mac
        } else {
            &self.answers_by_node
        }
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
        let mut s = format!(
            "Router check ({}): {} client SYNs ({} retransmitted), {} answered, {} answered twice, \
             {} unanswered; answers by {}; {} SYN-ACK retransmissions",
            self.iface,
            self.client_syns,
            self.syn_retransmissions,
            self.answered,
            self.answered_twice,
            self.unanswered,
            if by.is_empty() {
                "nobody".to_string()
            } else {
                by.join(", ")
            },
            self.synack_retransmissions,
        );
        if self.capture_drops > 0 || self.untracked > 0 {
            s.push_str(&format!(
                "; INCOMPLETE: {} frames dropped by the capture, {} SYNs untracked",
                self.capture_drops, self.untracked
            ));
        }
        s.push('\n');
        s
    }
}

/// (client address, client port, client ISN).
type SynKey = (Ipv4Addr, u16, u32);

/// Counts client SYNs and their distinct SYN-ACKs for one virtual service.
#[derive(Debug)]
pub struct SynAckCounter {
    vip: SocketAddrV4,
    /// Per client SYN: its distinct answers (source MAC, server ISN).
    syns: HashMap<SynKey, Vec<(MacAddr, u32)>>,
    check: RouterCheck,
}

impl SynAckCounter {
    /// A counter for the service at `vip`, captured on `iface`.
    pub fn new(vip: SocketAddrV4, iface: &str) -> SynAckCounter {
        SynAckCounter {
            vip,
            syns: HashMap::new(),
            check: RouterCheck {
                iface: iface.to_string(),
                ..RouterCheck::default()
            },
        }
    }

    /// One Ethernet frame (anything that is not a SYN to or a SYN-ACK from
    /// the VIP is ignored).
    pub fn push(&mut self, frame: &[u8]) {
        let Ok(info) = parse_tcp_frame(frame, true) else {
            return;
        };
        let Some(ack) = frame
            .get(info.tcp_offset()..info.frame_len())
            .and_then(|seg| TcpSegment::new_checked(seg).ok())
            .map(|t| t.ack_number())
        else {
            return;
        };
        let (syn, ack_flag) = (info.flags.syn(), info.flags.ack());
        let (vip, port) = (*self.vip.ip(), self.vip.port());
        if syn && !ack_flag && info.dst_ip == vip && info.dst_port == port {
            self.client_syn((info.src_ip, info.src_port, info.seq));
        } else if syn && ack_flag && info.src_ip == vip && info.src_port == port {
            let key = (info.dst_ip, info.dst_port, ack.wrapping_sub(1));
            self.synack(key, (info.src_mac, info.seq));
        }
    }

    fn client_syn(&mut self, key: SynKey) {
        if self.syns.contains_key(&key) {
            self.check.syn_retransmissions += 1;
        } else if self.syns.len() >= MAX_TRACKED {
            self.check.untracked += 1;
        } else {
            self.syns.insert(key, Vec::new());
        }
    }

    fn synack(&mut self, key: SynKey, answer: (MacAddr, u32)) {
        self.check.synacks += 1;
        let Some(answers) = self.syns.get_mut(&key) else {
            self.check.synacks_without_syn += 1;
            return;
        };
        if answers.contains(&answer) {
            self.check.synack_retransmissions += 1;
            return;
        }
        answers.push(answer);
        *self
            .check
            .answers_by_mac
            .entry(answer.0.to_string())
            .or_default() += 1;
        if answers.len() == 2 && self.check.twice_examples.len() < 5 {
            let who: Vec<String> = answers
                .iter()
                .map(|(mac, isn)| format!("{mac} isn {isn}"))
                .collect();
            self.check.twice_examples.push(format!(
                "{}:{} isn {}: {}",
                key.0,
                key.1,
                key.2,
                who.join(" / ")
            ));
        }
    }

    /// The counts so far (`capture_drops` is the caller's to fill in).
    pub fn check(&self) -> RouterCheck {
        let mut c = self.check.clone();
        c.client_syns = self.syns.len() as u64;
        c.answered = self.syns.values().filter(|a| !a.is_empty()).count() as u64;
        c.answered_twice = self.syns.values().filter(|a| a.len() > 1).count() as u64;
        c.unanswered = c.client_syns - c.answered;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balancer::wire::build::{tcp_frame, FrameSpec};
    use balancer::wire::TcpFlags;

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
    const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const LB1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
    const LB2: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);

    fn syn(client_port: u16, isn: u32) -> Vec<u8> {
        tcp_frame(&FrameSpec {
            src_mac: ROUTER,
            dst_mac: MacAddr([1, 0, 0x5e, 0x12, 1, 100]),
            src_ip: Ipv4Addr::new(198, 18, 0, 11),
            dst_ip: VIP,
            src_port: client_port,
            dst_port: 80,
            flags: TcpFlags::SYN,
            seq: isn,
            ..FrameSpec::default()
        })
    }

    /// A SYN-ACK from `mac` with server ISN `isn` answering (`client_port`, `client_isn`).
    fn synack(mac: MacAddr, client_port: u16, client_isn: u32, isn: u32) -> Vec<u8> {
        let mut f = tcp_frame(&FrameSpec {
            src_mac: mac,
            dst_mac: ROUTER,
            src_ip: VIP,
            dst_ip: Ipv4Addr::new(198, 18, 0, 11),
            src_port: 80,
            dst_port: client_port,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            seq: isn,
            ..FrameSpec::default()
        });
        // The builder leaves the acknowledgement number 0: set it and the checksums.
        let tcp = balancer::wire::ETH_HEADER_LEN + 20;
        f[tcp + 8..tcp + 12].copy_from_slice(&client_isn.wrapping_add(1).to_be_bytes());
        let mut seg = TcpSegment::new_checked(&mut f[tcp..]).unwrap();
        seg.fill_checksum(VIP, Ipv4Addr::new(198, 18, 0, 11));
        f
    }

    fn count(frames: &[Vec<u8>]) -> RouterCheck {
        let mut c = SynAckCounter::new(SocketAddrV4::new(VIP, 80), "eth1");
        for f in frames {
            c.push(f);
        }
        c.check()
    }

    #[test]
    fn one_answer_per_syn_and_retransmissions_are_not_double() {
        let c = count(&[
            syn(40000, 1000),
            syn(40000, 1000), // the client's SYN retransmission
            synack(LB1, 40000, 1000, 7),
            synack(LB1, 40000, 1000, 7), // the server's SYN-ACK retransmission
            syn(40001, 2000),
            synack(LB2, 40001, 2000, 9),
            syn(40002, 3000), // never answered
        ]);
        assert_eq!(
            (c.client_syns, c.answered, c.answered_twice, c.unanswered),
            (3, 2, 0, 1)
        );
        assert_eq!((c.syn_retransmissions, c.synack_retransmissions), (1, 1));
        assert_eq!(c.synacks, 3);
        assert_eq!(c.answers_by_mac.get(&LB1.to_string()), Some(&1));
        assert_eq!(c.answers_by_mac.get(&LB2.to_string()), Some(&1));
        assert!(c.twice_examples.is_empty());
    }

    #[test]
    fn two_answers_are_counted() {
        let c = count(&[
            syn(40000, 1000),
            synack(LB1, 40000, 1000, 7),
            synack(LB2, 40000, 1000, 8), // another balancer, another ISN
            syn(40001, 2000),
            synack(LB1, 40001, 2000, 5),
            synack(LB1, 40001, 2000, 6), // same MAC, another ISN: another answer
            syn(40002, 3000),
            synack(LB1, 40002, 3000, 4),
        ]);
        assert_eq!((c.client_syns, c.answered, c.answered_twice), (3, 3, 2));
        assert_eq!(c.synack_retransmissions, 0);
        assert!(
            c.twice_examples[0].starts_with("198.18.0.11:40000 isn 1000: "),
            "{:?}",
            c.twice_examples
        );
        assert!(
            c.line().contains("3 answered, 2 answered twice"),
            "{}",
            c.line()
        );
    }

    #[test]
    fn other_traffic_and_garbage_are_ignored() {
        let mut other = syn(40000, 1000);
        other[ETH_TYPE] = 0x86; // not IPv4
        let data = tcp_frame(&FrameSpec {
            dst_ip: VIP,
            flags: TcpFlags::ACK,
            ..FrameSpec::default()
        });
        let c = count(&[
            other,
            data,
            vec![0u8; 7],
            synack(LB1, 50000, 1, 2), // a SYN the capture never saw
        ]);
        assert_eq!((c.client_syns, c.synacks, c.synacks_without_syn), (0, 1, 1));
        assert!(c.answers_by_mac.is_empty());
    }

    const ETH_TYPE: usize = 12;
}
