//! Fuzzing support: random and mutated frames, and the invariants every
//! engine decision must satisfy.
//!
//! Shared by the engine's property test, the bounded random-mutation
//! runner (`examples/fuzz_frames.rs`, what `just fuzz` runs on stable) and
//! any coverage-guided target. Invariants checked per frame:
//!
//! * no panic (the caller observes that);
//! * `Forward { len }`: `len` fits the buffer, the frame parses as
//!   Ethernet/IPv4/TCP, its IPv4 checksum verifies, and if the input's TCP
//!   checksum verified, the output's does too (rewrites keep checksums);
//!   a forwarded ICMP error parses as one with every checksum right;
//! * `DeliverLocal { offset, len }`: the range fits the buffer and the IP
//!   packet is byte-for-byte the one received;
//! * the connection table never exceeds its capacity;
//! * per-target `conns` grow by exactly one for an accepted initial SYN
//!   that opens a flow (no entry, or a closing entry it reuses) and by
//!   zero for anything else (so `/stats` connections equal accepted SYNs).
//!
//! Heartbeats ([`gen_heartbeat`], [`run_heartbeat`]) get the same
//! treatment: signed datagrams with random fields, mutated and random
//! ones, through a membership [`Node`], checking per datagram that nothing
//! refused changes the membership and nothing unconfigured enters it.

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::config::{Cluster, Config, Forwarding, KeySource, LocalServer, RealServer};
use crate::conntrack::{ConnKey, Timeouts};
use crate::engine::{Action, Balancer, Interfaces};
use crate::heartbeat::{self, BadKey, Heartbeat, Key, Reject, State};
use crate::membership::{Node, Timing};
use crate::ownership::Member;
use crate::sched::{SchedulerKind, Target};
use crate::wire::build::{syn_options, tcp_frame, FrameSpec};
use crate::wire::{parse_tcp_frame, Ipv4Packet, MacAddr, TcpFlags, TcpSegment, ETH_HEADER_LEN};

/// The VIP of the fuzzing configuration.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// Real servers of the fuzzing configuration.
pub const REALS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 18, 11, 11),
    Ipv4Addr::new(198, 18, 11, 12),
];

/// A small-table configuration (so eviction and TableFull paths run),
/// bi-active, two balancers in the cluster (so NotOwner paths run).
pub fn config(forwarding: Forwarding, scheduler: SchedulerKind) -> Config {
    Config {
        front_interface: "front".into(),
        back_interface: "back".into(),
        vip: SocketAddrV4::new(VIP, 80),
        bi_active: true,
        local: LocalServer {
            addr: Ipv4Addr::LOCALHOST,
            port: 80,
            weight: 1,
        },
        real_servers: REALS
            .iter()
            .enumerate()
            .map(|(i, &addr)| RealServer {
                addr,
                port: if forwarding == Forwarding::Nat {
                    8080
                } else {
                    80
                },
                weight: 1 + i as u32,
                mac: Some(MacAddr([2, 0, 0, 0, 1, i as u8])),
            })
            .collect(),
        scheduler,
        forwarding,
        timeouts: Timeouts::default(),
        table_size: 64,
        verify_checksums: true,
        cluster: Cluster {
            node_id: 1,
            members: vec![Member { id: 1, weight: 2 }, Member { id: 2, weight: 1 }],
            key: Some(KeySource::Inline("fuzzing-cluster-key".into())),
            heartbeat: Default::default(),
            hash_seed: 0x5eed_0fc1_u64,
        },
        health: Default::default(),
    }
}

/// Balancers covering NAT and DR with different schedulers.
pub fn balancers() -> Vec<Balancer> {
    let macs = Interfaces {
        front_mac: MacAddr([2, 0, 0, 0, 0, 0xf1]),
        back_mac: MacAddr([2, 0, 0, 0, 0, 0xb1]),
    };
    [
        (Forwarding::Nat, SchedulerKind::Wlc),
        (Forwarding::Dr, SchedulerKind::Mh),
        (Forwarding::Nat, SchedulerKind::Sh),
    ]
    .into_iter()
    .enumerate()
    .filter_map(|(i, (f, s))| {
        // The third runs without TCP checksum verification, so mutated
        // segments still reach the rewrites.
        let mut c = config(f, s);
        c.verify_checksums = i != 2;
        Balancer::new(&c, macs).ok()
    })
    .collect()
}

fn tcp_ok(frame: &[u8]) -> bool {
    let Ok(info) = parse_tcp_frame(frame, true) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(&frame[ETH_HEADER_LEN..info.frame_len()]) else {
        return false;
    };
    TcpSegment::new_checked(ip.payload())
        .is_ok_and(|t| t.verify_checksum(ip.src_addr(), ip.dst_addr()))
}

/// Runs one frame through `b` (front or back) and checks the invariants;
/// `Err` describes the violation.
pub fn run_one(
    b: &mut Balancer,
    now: Duration,
    input: &[u8],
    front: bool,
) -> Result<Action, String> {
    let mut buf = input.to_vec();
    let tcp_was_ok = tcp_ok(input);
    let conns_before = total_conns(b);
    let opens_flow = front && opens_new_flow(b, input);
    let action = if front {
        b.handle_front(now, &mut buf)
    } else {
        b.handle_back(now, &mut buf)
    };
    match action {
        Action::Forward { len, .. } => {
            let out = buf
                .get(..len)
                .ok_or_else(|| format!("Forward len {len} > buffer {}", buf.len()))?;
            if out.get(ETH_HEADER_LEN + 9) == Some(&crate::icmp::IPPROTO_ICMP) {
                if !crate::icmp::checksums_ok(out, false) {
                    return Err("forwarded ICMP error malformed or with a bad checksum".into());
                }
                return Ok(action);
            }
            parse_tcp_frame(out, false)
                .map_err(|e| format!("forwarded frame does not parse: {e}"))?;
            if tcp_was_ok && !tcp_ok(out) {
                return Err("TCP checksum valid on input, invalid on output".into());
            }
        }
        Action::DeliverLocal { offset, len } => {
            let end = offset
                .checked_add(len)
                .ok_or("DeliverLocal range overflows")?;
            let out = buf
                .get(offset..end)
                .ok_or_else(|| format!("DeliverLocal {offset}+{len} > {}", buf.len()))?;
            if Some(out) != input.get(offset..end) {
                return Err("DeliverLocal changed the packet".into());
            }
        }
        Action::Drop(_) => {}
    }
    if b.conntrack().len() > b.conntrack().capacity() {
        return Err("connection table above capacity".into());
    }
    let counted = total_conns(b) - conns_before;
    let accepted = opens_flow && !matches!(action, Action::Drop(_));
    if counted != u64::from(accepted) {
        return Err(format!(
            "{counted} new connections counted for {action:?} (initial SYN opening a flow: {opens_flow})"
        ));
    }
    Ok(action)
}

fn total_conns(b: &Balancer) -> u64 {
    b.counters().targets.iter().map(|t| t.conns).sum()
}

/// Whether a front frame is an initial SYN that, if accepted, opens a new
/// flow: no entry for its tuple, or one a new SYN reuses.
fn opens_new_flow(b: &Balancer, frame: &[u8]) -> bool {
    let Ok(info) = parse_tcp_frame(frame, false) else {
        return false;
    };
    if !info.flags.is_initial_syn() {
        return false;
    }
    let key = ConnKey {
        client_ip: info.src_ip,
        client_port: info.src_port,
        vport: info.dst_port,
    };
    b.conntrack()
        .lookup(&key)
        .and_then(|id| b.conntrack().get(id))
        .is_none_or(|c| c.state.initial_syn_starts_new_flow(c.isn == info.seq))
}

/// Applies a random control event (what health checks, operators and the
/// heartbeat do under traffic): a weight change (0 quiesces), a target up
/// or down, or a membership change.
pub fn random_control(b: &mut Balancer, rng: &mut Rng) {
    let target = match rng.below(3) {
        0 => Target::Local,
        i => Target::Real(i as u16 - 1),
    };
    match rng.below(3) {
        0 => {
            b.set_weight(target, rng.below(3) as u32);
        }
        1 => {
            b.set_up(target, rng.below(3) != 0);
        }
        _ => {
            let members = [(1, 2), (2, 1), (3, 1)]
                .into_iter()
                .filter(|_| rng.below(3) != 0)
                .map(|(id, weight)| Member { id, weight })
                .collect();
            // Ids are distinct and weights small: this cannot fail.
            let _ = b.set_membership(members);
        }
    }
    // Half the time the rebuilt sh/mh table arrives at once; otherwise the
    // frames that follow are decided with the stale one (its fallback).
    if rng.below(2) == 0 {
        b.build_tables_now();
    }
}

/// xorshift64*: a tiny deterministic generator (no dependency, reproducible by seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Generates a frame and the side it arrives on: a mix of valid client and
/// server traffic over a small port space (so flows repeat and go through
/// their states), mutated variants (bytes flipped, cut, extended, with the
/// IPv4 checksum sometimes repaired so deeper paths run) and pure noise.
pub fn gen_frame(rng: &mut Rng) -> (Vec<u8>, bool) {
    let kind = rng.below(10);
    if kind == 0 {
        let len = rng.below(128);
        return (
            (0..len).map(|_| rng.next_u64() as u8).collect(),
            rng.below(2) == 0,
        );
    }
    let flags = [
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags::ACK | TcpFlags::PSH,
        TcpFlags::FIN | TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::ACK,
        0,
    ][rng.below(7)];
    let client = Ipv4Addr::new(198, 18, 2, 1 + rng.below(4) as u8);
    let cport = 1024 + rng.below(64) as u16;
    let front = rng.below(3) != 0;
    let mut spec = FrameSpec {
        flags,
        tcp_options: if rng.below(2) == 0 {
            syn_options()
        } else {
            vec![]
        },
        payload: vec![b'x'; rng.below(40)],
        pad: rng.below(2) * rng.below(20),
        ..Default::default()
    };
    if front {
        spec.src_ip = client;
        spec.src_port = cport;
        spec.dst_ip = VIP;
        spec.dst_port = 80;
    } else {
        spec.src_ip = REALS[rng.below(2)];
        spec.src_port = [8080, 80][rng.below(2)];
        spec.dst_ip = client;
        spec.dst_port = cport;
    }
    let mut f = tcp_frame(&spec);
    if rng.below(8) == 0 {
        f = icmp_about(rng, &spec, front);
    }
    if kind >= 6 {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(f.len());
            f[at] = rng.next_u64() as u8;
        }
        match rng.below(4) {
            0 => f.truncate(rng.below(f.len() + 1)),
            1 => f.extend((0..rng.below(30)).map(|_| rng.next_u64() as u8)),
            _ => {}
        }
        if rng.below(2) == 0 {
            if let Ok(mut ip) =
                Ipv4Packet::new_checked(f.get_mut(ETH_HEADER_LEN..).unwrap_or_default())
            {
                ip.fill_checksum();
            }
        }
    }
    (f, front)
}

/// An ICMP error about the flow of `spec` arriving on the same side: on
/// front from a router to the VIP quoting our reply (VIP -> client), on
/// back from the real server to the client quoting the forwarded packet.
fn icmp_about(rng: &mut Rng, spec: &FrameSpec, front: bool) -> Vec<u8> {
    // The quoted packet went the other way.
    let quoted = FrameSpec {
        src_ip: spec.dst_ip,
        dst_ip: spec.src_ip,
        src_port: spec.dst_port,
        dst_port: spec.src_port,
        pad: 0,
        ..spec.clone()
    };
    let q = tcp_frame(&quoted);
    let macs = crate::rewrite::MacPair {
        src: spec.src_mac,
        dst: spec.dst_mac,
    };
    let (outer_src, outer_dst) = if front {
        (Ipv4Addr::new(198, 18, 1, 1), VIP)
    } else {
        (spec.src_ip, spec.dst_ip)
    };
    let (kind, code) = [(3, 4), (3, 3), (11, 0), (8, 0)][rng.below(4)];
    let len = 20 + rng.below(q.len() - ETH_HEADER_LEN - 19);
    crate::icmp::build_error(
        macs,
        (outer_src, outer_dst),
        (kind, code, 1280),
        &q[ETH_HEADER_LEN..],
        len,
    )
}

/// The cluster key of the heartbeat fuzzing.
pub const HEARTBEAT_KEY: &[u8] = b"fuzzing-heartbeat-key";

/// A membership node (id 1 of members 1..=3) for heartbeat fuzzing.
pub fn heartbeat_node(now: Duration, wall_ms: u64) -> Result<Node, BadKey> {
    let members: Vec<Member> = (1..=3).map(|id| Member { id, weight: 1 }).collect();
    let timing = Timing {
        interval: Duration::from_millis(100),
        dead_after: 3,
    };
    Ok(Node::new(
        1,
        SocketAddrV4::new(VIP, 80),
        &members,
        timing,
        Key::new(HEARTBEAT_KEY)?,
        now,
        wall_ms,
    ))
}

/// Generates a heartbeat datagram: signed ones with random fields (so the
/// membership logic runs), mutated signed ones (a byte flipped, cut or
/// extended: the parser's refusals) and noise.
pub fn gen_heartbeat(rng: &mut Rng, wall_ms: u64) -> Result<Vec<u8>, BadKey> {
    let states = [
        State::Listening,
        State::Ready,
        State::Active,
        State::Leaving,
        State::Withdrawn,
    ];
    let hb = Heartbeat {
        state: states[rng.below(states.len())],
        vip: SocketAddrV4::new(VIP, if rng.below(20) == 0 { 81 } else { 80 }),
        node_id: rng.below(5) as u32,
        epoch: wall_ms.saturating_sub(rng.below(3) as u64 * 1000),
        seq: rng.below(50) as u64,
        sent_ms: wall_ms.saturating_sub(rng.below(7000) as u64),
        view: (1..=4).filter(|_| rng.below(2) == 0).collect(),
    };
    let mut out = Vec::new();
    hb.emit(&Key::new(HEARTBEAT_KEY)?, &mut out);
    match rng.below(6) {
        0 => {
            let i = rng.below(out.len());
            out[i] ^= 1 << rng.below(8);
        }
        1 => out.truncate(rng.below(out.len())),
        2 => out.push(rng.below(256) as u8),
        3 => {
            let n = rng.below(heartbeat::MAX_LEN + 8);
            out = (0..n).map(|_| rng.below(256) as u8).collect();
        }
        _ => {}
    }
    Ok(out)
}

/// Runs one datagram through `node` and checks the invariants: no panic
/// (the caller observes that), what is accepted re-emits to the same bytes,
/// a refusal changes neither the view nor its version, and the view only
/// holds configured members.
pub fn run_heartbeat(
    node: &mut Node,
    now: Duration,
    wall_ms: u64,
    bytes: &[u8],
) -> Result<Option<Reject>, String> {
    let (members, version) = (node.members(), node.version());
    let r = node.receive(now, wall_ms, bytes);
    if let Err(reason) = r {
        if node.members() != members || node.version() != version {
            return Err(format!(
                "refused ({reason}) heartbeat changed the membership"
            ));
        }
    } else {
        let key = Key::new(HEARTBEAT_KEY).map_err(|e| e.to_string())?;
        let hb = Heartbeat::parse(bytes, &key).map_err(|e| format!("accepted, reparse {e}"))?;
        let mut out = Vec::new();
        hb.emit(&key, &mut out);
        if out != bytes {
            return Err("accepted heartbeat does not re-emit to its bytes".into());
        }
    }
    if node.members().iter().any(|m| !(1..=3).contains(&m.id)) {
        return Err(format!(
            "view holds an unconfigured member: {:?}",
            node.members()
        ));
    }
    Ok(r.err())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Sequences of generated frames keep every invariant.
        #[test]
        fn engine_invariants_hold(seed in any::<u64>()) {
            let mut rng = super::Rng::new(seed);
            let mut bs = balancers();
            prop_assert_eq!(bs.len(), 3);
            let mut now = Duration::ZERO;
            for _ in 0..300 {
                let (f, front) = gen_frame(&mut rng);
                now += Duration::from_millis(rng.below(2000) as u64);
                for b in &mut bs {
                    if let Err(e) = run_one(b, now, &f, front) {
                        prop_assert!(false, "{} on {:02x?}", e, f);
                    }
                    if rng.below(50) == 0 {
                        b.tick(now);
                    }
                    if rng.below(100) == 0 {
                        random_control(b, &mut rng);
                    }
                }
            }
        }

        /// Arbitrary bytes on either side keep every invariant.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..120), front in any::<bool>()) {
            for b in &mut balancers() {
                if let Err(e) = run_one(b, Duration::ZERO, &bytes, front) {
                    prop_assert!(false, "{}", e);
                }
            }
        }
    }

    #[test]
    fn generator_reaches_every_action() {
        let mut rng = super::Rng::new(7);
        let mut bs = balancers();
        let (mut fwd, mut local, mut drops) = (0, 0, 0);
        for i in 0..5000u64 {
            let (f, front) = gen_frame(&mut rng);
            for b in &mut bs {
                match run_one(b, Duration::from_millis(i), &f, front).unwrap() {
                    Action::Forward { .. } => fwd += 1,
                    Action::DeliverLocal { .. } => local += 1,
                    Action::Drop(_) => drops += 1,
                }
            }
        }
        assert!(
            fwd > 100 && local > 100 && drops > 100,
            "{fwd} {local} {drops}"
        );
        let icmp: u64 = bs.iter().map(|b| b.snapshot().icmp_forwarded).sum();
        assert!(icmp > 10, "{icmp} ICMP errors forwarded");
    }
}
