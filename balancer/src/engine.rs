//! The decision core: frames and `now` in, an [`Action`] out.
//!
//! [`Balancer`] owns the connection table, scheduler, ownership table and
//! counters; it never touches a socket or a clock. The I/O layer calls
//! [`Balancer::handle_front`] for every frame read on `front`,
//! [`Balancer::handle_back`] for every frame read on `back`, and
//! [`Balancer::tick`] on its timer (and on read timeouts), then carries out
//! the returned action on the same buffer, which has been rewritten in place.
//!
//! Decisions on `front` (client side), in order:
//! 1. Not Ethernet/IPv4, truncated or malformed: dropped with that reason.
//!    Not to VIP:port: `NotForVip`. Then a bad IPv4 header checksum,
//!    fragments, IPv4 options and non-TCP are dropped by reason, and (with
//!    `verify_checksums`, the default) a bad TCP checksum: `BadTcpChecksum`. IPv4
//!    options are dropped rather than forwarded: legitimate TCP to a web
//!    VIP does not carry them, the routers in front drop or slow-path them,
//!    and source-route/record-route options name addresses a NAT would
//!    have to rewrite too (the wire parser does support them, so changing
//!    this policy is one flag).
//! 2. A packet of a flow in the table follows its entry, whatever the
//!    current ownership says (so a joining balancer breaks no established
//!    flow). Exception, as LVS's `conn_reuse_mode`: an initial SYN (no
//!    ACK/RST) hitting an entry in any state but SYN_RECV or ESTABLISHED
//!    (TIME_WAIT, CLOSE, FIN_WAIT, CLOSE_WAIT, LAST_ACK, ...) is a client
//!    reusing the tuple: the old entry is removed and the SYN is handled
//!    as a new flow below (ownership, scheduling, counting). A SYN on a
//!    SYN_RECV entry with the entry's ISN is a retransmission and follows
//!    the entry; with another ISN it is a new connection, handled as a new
//!    flow too and counted (`syn_recv_new_isn`). See
//!    [`crate::conntrack::TcpState::initial_syn_starts_new_flow`].
//! 3. Otherwise only an initial SYN (SYN without ACK/RST) opens a flow,
//!    and only on the owning balancer (`NotOwner` elsewhere, silently
//!    counted: every balancer sees every frame). Any other packet without
//!    an entry is `NoConnection` on the owner and `NotOwner` elsewhere.
//!    LVS would hand such packets to the local stack (which answers RST);
//!    we drop them, because another balancer may hold the flow and a RST
//!    from us would kill it.
//! 4. A new flow is scheduled among the candidate targets (local server if
//!    bi-active, real servers that are up and whose MAC is known), entered
//!    in the table (or refused: `TableFull`), then delivered:
//!    `DeliverLocal` (the IP packet, unchanged, for the TUN holding the
//!    VIP), or NAT/DR-rewritten and `Forward { iface: Back }`.
//!
//! ICMP destination-unreachable and time-exceeded errors (on `front` to
//! the VIP, on `back` from the real server side) that quote a packet of a
//! flow in the table are rewritten and forwarded like the flow ([`icmp`]:
//! fragmentation-needed must reach the sender for path MTU discovery);
//! other ICMP is dropped as `IcmpUnsupported`, `IcmpMalformed` or
//! `IcmpNoConnection`.
//!
//! On `back` only NAT replies are expected (their TCP checksum verified
//! like the client's, when on): from a configured real server
//! endpoint (else `NotFromRealServer`) to a client with an entry (else
//! `NoConnection`); they are rewritten to come from VIP:port and sent out
//! of `front` to the MAC the client's packets came from.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Forwarding};
use crate::conntrack::{Conn, ConnKey, Conntrack, Direction, Method, NewConn, TcpState};
use crate::counters::{Counters, DropReason, Snapshot, TargetSnapshot};
use crate::icmp::{self, IcmpError, IPPROTO_ICMP};
use crate::ownership::{Member, Membership, MembershipError, Ownership};
use crate::rewrite::{self, MacPair};
use crate::sched::{Candidate, FlowKey, HashTable, Scheduler, SchedulerKind, TableRequest, Target};
use crate::wire::{
    check_ipv4, parse_tcp_frame, tcp_checksum_ok, tcp_frame_info, EthernetFrame, Ipv4Packet,
    MacAddr, TcpFrameInfo, ETHERTYPE_IPV4, ETH_HEADER_LEN,
};

/// Which interface a frame leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Iface {
    /// The LB LAN (clients).
    Front,
    /// The sub-cluster LAN (real servers).
    Back,
}

/// What the I/O layer does with a frame after `handle_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `frame[..len]` (rewritten in place, link padding cut) on `iface`.
    Forward {
        /// Outgoing interface.
        iface: Iface,
        /// Bytes to send from the start of the buffer.
        len: usize,
    },
    /// Write the IP packet `frame[offset..offset + len]` into the TUN that
    /// holds the VIP, for the local server.
    DeliverLocal {
        /// Start of the IPv4 header.
        offset: usize,
        /// IPv4 total length.
        len: usize,
    },
    /// Drop the frame; the reason has been counted.
    Drop(DropReason),
}

/// This balancer's interface MACs, which the I/O layer reads from the NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interfaces {
    /// MAC of `front`.
    pub front_mac: MacAddr,
    /// MAC of `back`.
    pub back_mac: MacAddr,
}

/// Why a balancer could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The cluster membership is invalid.
    #[error("cluster membership: {0}")]
    Membership(#[from] MembershipError),
    /// The connection table could not be reserved.
    #[error(transparent)]
    Table(#[from] crate::conntrack::TableError),
}

/// Entries expired per `tick` at most, so one tick cannot stall the loop.
pub const TICK_EXPIRY_BUDGET: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct TargetState {
    target: Target,
    endpoint: SocketAddrV4,
    weight: u32,
    up: bool,
    mac: Option<MacAddr>,
}

/// The balancer's decision core. One per packet thread; not shared.
pub struct Balancer {
    vip: SocketAddrV4,
    forwarding: Forwarding,
    bi_active: bool,
    verify_checksums: bool,
    scheduler: Box<dyn Scheduler>,
    scheduler_kind: SchedulerKind,
    targets: Vec<TargetState>,
    by_endpoint: HashMap<SocketAddrV4, Target>,
    conntrack: Conntrack,
    node_id: u32,
    hash_seed: u64,
    ownership: Ownership,
    macs: Interfaces,
    counters: Counters,
    candidates: Vec<Candidate>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("vip", &self.vip)
            .field("node_id", &self.node_id)
            .field("scheduler", &self.scheduler_kind)
            .field("conntrack_len", &self.conntrack.len())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// Builds the core from a configuration and the interface MACs.
    pub fn new(cfg: &Config, macs: Interfaces) -> Result<Self, EngineError> {
        cfg.validate()?;
        let membership = Membership::new(cfg.cluster.members.clone())?;
        let mut targets = vec![TargetState {
            target: Target::Local,
            endpoint: cfg.vip,
            weight: cfg.local.weight,
            up: true,
            mac: None,
        }];
        let mut by_endpoint = HashMap::new();
        for (i, rs) in cfg.real_servers.iter().enumerate() {
            // validate() bounds the count below u16::MAX.
            let t = Target::Real(i as u16);
            targets.push(TargetState {
                target: t,
                endpoint: rs.endpoint(),
                weight: rs.weight,
                up: true,
                mac: rs.mac,
            });
            by_endpoint.insert(rs.endpoint(), t);
        }
        let n = targets.len();
        let mut b = Self {
            vip: cfg.vip,
            forwarding: cfg.forwarding,
            bi_active: cfg.bi_active,
            verify_checksums: cfg.verify_checksums,
            scheduler: cfg.scheduler.build(cfg.cluster.hash_seed, false),
            scheduler_kind: cfg.scheduler,
            targets,
            by_endpoint,
            conntrack: Conntrack::new(cfg.table_size, cfg.timeouts, n)?,
            node_id: cfg.cluster.node_id,
            hash_seed: cfg.cluster.hash_seed,
            ownership: Ownership::compute(&membership),
            macs,
            counters: Counters::new(n),
            candidates: Vec::with_capacity(n),
        };
        // The first table is built here, at startup; later ones off the
        // packet thread (see `take_table_request`).
        b.observe_candidates();
        b.build_tables_now();
        Ok(b)
    }

    /// A lookup table the scheduler (sh, mh) wants rebuilt after its
    /// candidates changed, once per change: build it with
    /// [`HashTable::build`] on another thread and hand it to
    /// [`Balancer::install_table`]. Until then decisions use the previous
    /// table (flows for targets no longer eligible fall back to eligible ones).
    pub fn take_table_request(&mut self) -> Option<TableRequest> {
        self.scheduler.take_request()
    }

    /// Swaps in a table built from [`Balancer::take_table_request`], in one
    /// step between two decisions; false (ignored) if the candidates have
    /// changed again since it was asked for.
    pub fn install_table(&mut self, table: Arc<HashTable>) -> bool {
        self.scheduler.install(table)
    }

    /// Builds a wanted table on the calling thread (startup, tests, tools
    /// without a builder thread).
    pub fn build_tables_now(&mut self) {
        if let Some(r) = self.take_table_request() {
            self.install_table(Arc::new(HashTable::build(&r)));
        }
    }

    /// Tells the scheduler of the current candidates after a change.
    fn observe_candidates(&mut self) {
        self.fill_candidates();
        self.scheduler.observe(&self.candidates);
    }

    /// Handles a frame read on `front`.
    pub fn handle_front(&mut self, now: Duration, frame: &mut [u8]) -> Action {
        self.counters.front_rx += 1;
        let a = self.front(now, frame);
        self.account(a);
        a
    }

    /// Handles a frame read on `back`.
    pub fn handle_back(&mut self, now: Duration, frame: &mut [u8]) -> Action {
        self.counters.back_rx += 1;
        let a = self.back(now, frame);
        self.account(a);
        a
    }

    /// Expires connection entries due by `now`; returns how many.
    pub fn tick(&mut self, now: Duration) -> usize {
        self.conntrack.expire(now, TICK_EXPIRY_BUDGET)
    }

    /// Replaces the live-balancer membership (from the heartbeat layer).
    /// Only new flows follow the new assignment.
    pub fn set_membership(&mut self, members: Vec<Member>) -> Result<(), MembershipError> {
        let m = Membership::new(members)?;
        self.ownership = Ownership::compute(&m);
        Ok(())
    }

    /// This balancer's cluster id.
    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// The current ownership table.
    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// Sets a real server's MAC once the I/O layer has resolved it.
    /// Returns false for an unknown index.
    pub fn set_real_mac(&mut self, index: u16, mac: MacAddr) -> bool {
        match self.targets.get_mut(Target::Real(index).index()) {
            Some(t) => {
                t.mac = Some(mac);
                self.observe_candidates();
                true
            }
            None => false,
        }
    }

    /// Changes a target's weight (0 quiesces: no new flows, existing ones
    /// continue). Returns false for an unknown target.
    pub fn set_weight(&mut self, target: Target, weight: u32) -> bool {
        match self.targets.get_mut(target.index()) {
            Some(t) => {
                t.weight = weight;
                self.observe_candidates();
                true
            }
            None => false,
        }
    }

    /// Marks a target up or down (health checks): a down target gets no
    /// new flows; existing ones continue. Returns false for an unknown target.
    pub fn set_up(&mut self, target: Target, up: bool) -> bool {
        match self.targets.get_mut(target.index()) {
            Some(t) => {
                t.up = up;
                self.observe_candidates();
                true
            }
            None => false,
        }
    }

    /// Live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The connection table (read-only).
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// A serialisable copy of the counters and target state.
    pub fn snapshot(&self) -> Snapshot {
        let targets = self
            .targets
            .iter()
            .filter(|t| self.bi_active || t.target != Target::Local)
            .map(|t| {
                let load = self.conntrack.load(t.target);
                let forward = match (t.target, self.forwarding) {
                    (Target::Local, _) => "Local",
                    (_, Forwarding::Nat) => "Masq",
                    (_, Forwarding::Dr) => "Route",
                };
                TargetSnapshot {
                    name: t.target.to_string(),
                    addr: t.endpoint.to_string(),
                    forward: forward.to_string(),
                    weight: t.weight,
                    up: t.up,
                    active_conns: load.active,
                    inactive_conns: load.inactive,
                    traffic: self
                        .counters
                        .targets
                        .get(t.target.index())
                        .copied()
                        .unwrap_or_default(),
                }
            })
            .collect();
        let c = &self.counters;
        Snapshot {
            service: self.vip.to_string(),
            scheduler: self.scheduler_kind.to_string(),
            bi_active: self.bi_active,
            node_id: self.node_id,
            owned_buckets: self.ownership.bucket_count(self.node_id),
            front_rx: c.front_rx,
            back_rx: c.back_rx,
            tx_front: c.tx_front,
            tx_back: c.tx_back,
            delivered_local: c.delivered_local,
            syn_recv_new_isn: c.syn_recv_new_isn,
            icmp_forwarded: c.icmp_forwarded,
            drops: c.drop_map(),
            conntrack_entries: self.conntrack.len(),
            conntrack_capacity: self.conntrack.capacity(),
            conntrack: self.conntrack.counters(),
            targets,
        }
    }

    fn account(&mut self, a: Action) {
        match a {
            Action::Drop(r) => self.counters.drop(r),
            Action::Forward {
                iface: Iface::Front,
                ..
            } => self.counters.tx_front += 1,
            Action::Forward {
                iface: Iface::Back, ..
            } => self.counters.tx_back += 1,
            Action::DeliverLocal { .. } => self.counters.delivered_local += 1,
        }
    }

    /// Is the frame for the VIP? Cheap structural checks first, so traffic
    /// that is not ours is counted as such rather than by its faults.
    fn classify_front(&self, frame: &[u8]) -> Result<Inbound, DropReason> {
        let eth = EthernetFrame::new_checked(frame).map_err(DropReason::from)?;
        if eth.ethertype() != ETHERTYPE_IPV4 {
            return Err(DropReason::NotIpv4);
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).map_err(DropReason::from)?;
        if ip.dst_addr() != *self.vip.ip() {
            return Err(DropReason::NotForVip);
        }
        if ip.protocol() == IPPROTO_ICMP {
            check_ipv4(&ip, false).map_err(DropReason::from)?;
            return icmp::parse(&ip).map(Inbound::Icmp);
        }
        let info = tcp_frame_info(&eth, &ip, false).map_err(DropReason::from)?;
        if info.dst_port != self.vip.port() {
            return Err(DropReason::NotForVip);
        }
        self.verify_tcp(frame, &info)?;
        Ok(Inbound::Tcp(info))
    }

    /// The switchable TCP checksum check of both interfaces.
    fn verify_tcp(&self, frame: &[u8], info: &TcpFrameInfo) -> Result<(), DropReason> {
        if self.verify_checksums && !tcp_checksum_ok(frame, info) {
            return Err(DropReason::BadTcpChecksum);
        }
        Ok(())
    }

    fn front(&mut self, now: Duration, frame: &mut [u8]) -> Action {
        let info = match self.classify_front(frame) {
            Ok(Inbound::Tcp(i)) => i,
            Ok(Inbound::Icmp(e)) => return self.front_icmp(frame, &e),
            Err(r) => return Action::Drop(r),
        };
        let key = ConnKey {
            client_ip: info.src_ip,
            client_port: info.src_port,
            vport: info.dst_port,
        };
        if let Some(id) = self.conntrack.lookup(&key) {
            if let Some(conn) = self.conntrack.get(id) {
                let same_isn = conn.isn == info.seq;
                let reuse =
                    info.flags.is_initial_syn() && conn.state.initial_syn_starts_new_flow(same_isn);
                if !reuse {
                    let dir = direction_in(conn.method);
                    self.conntrack.update(id, now, dir, info.flags);
                    return self.deliver_in(&conn, frame, &info);
                }
                if conn.state == TcpState::SynRecv {
                    self.counters.syn_recv_new_isn += 1;
                }
                self.conntrack.remove(id);
            }
        }
        let owned = self.owner_of(info.src_ip, info.src_port) == Some(self.node_id);
        if !owned {
            return Action::Drop(DropReason::NotOwner);
        }
        if !info.flags.is_initial_syn() {
            return Action::Drop(DropReason::NoConnection);
        }
        let flow = FlowKey {
            client_ip: info.src_ip,
            client_port: info.src_port,
        };
        let Some(target) = self.schedule(&flow) else {
            return Action::Drop(DropReason::NoTarget);
        };
        let (method, real) = match target {
            Target::Local => (Method::Local, self.vip),
            Target::Real(_) => {
                let ep = self
                    .targets
                    .get(target.index())
                    .map_or(self.vip, |t| t.endpoint);
                let m = match self.forwarding {
                    Forwarding::Nat => Method::Nat,
                    Forwarding::Dr => Method::Dr,
                };
                (m, ep)
            }
        };
        let new = NewConn {
            key,
            target,
            method,
            real,
            front_mac: info.src_mac,
            isn: info.seq,
        };
        let Ok(id) = self.conntrack.insert(now, new) else {
            return Action::Drop(DropReason::TableFull);
        };
        self.conntrack
            .update(id, now, direction_in(method), info.flags);
        if let Some(c) = self.counters.targets.get_mut(target.index()) {
            c.conns += 1;
        }
        match self.conntrack.get(id) {
            Some(conn) => self.deliver_in(&conn, frame, &info),
            None => Action::Drop(DropReason::TableFull),
        }
    }

    fn schedule(&mut self, flow: &FlowKey) -> Option<Target> {
        self.fill_candidates();
        self.scheduler.pick(flow, &self.candidates)
    }

    /// The targets a new flow may go to, with weights and loads.
    fn fill_candidates(&mut self) {
        self.candidates.clear();
        for t in &self.targets {
            let eligible = match t.target {
                Target::Local => self.bi_active,
                Target::Real(_) => t.mac.is_some(),
            };
            if !eligible || !t.up {
                continue;
            }
            let load = self.conntrack.load(t.target);
            self.candidates.push(Candidate {
                target: t.target,
                weight: t.weight,
                active: load.active,
                inactive: load.inactive,
            });
        }
    }

    fn deliver_in(&mut self, conn: &Conn, frame: &mut [u8], info: &TcpFrameInfo) -> Action {
        let idx = conn.target.index();
        let bytes = info.ip_total_len as u64;
        let action = match conn.method {
            Method::Local => Action::DeliverLocal {
                offset: ETH_HEADER_LEN,
                len: info.ip_total_len,
            },
            Method::Nat | Method::Dr => {
                let Some(mac) = self.targets.get(idx).and_then(|t| t.mac) else {
                    return Action::Drop(DropReason::NoTarget);
                };
                let macs = MacPair {
                    src: self.macs.back_mac,
                    dst: mac,
                };
                let r = if conn.method == Method::Nat {
                    rewrite::nat_in(frame, conn.real, macs)
                } else {
                    rewrite::dr(frame, macs)
                };
                match r {
                    Ok(len) => Action::Forward {
                        iface: Iface::Back,
                        len,
                    },
                    Err(e) => return Action::Drop(e.into()),
                }
            }
        };
        if let Some(c) = self.counters.targets.get_mut(idx) {
            c.in_pkts += 1;
            c.in_bytes += bytes;
        }
        action
    }

    /// An ICMP error on `front` quoting our reply `VIP:vport -> client`:
    /// delivered like the flow it is about.
    fn front_icmp(&mut self, frame: &mut [u8], e: &IcmpError) -> Action {
        let key = ConnKey {
            client_ip: *e.quoted_dst.ip(),
            client_port: e.quoted_dst.port(),
            vport: e.quoted_src.port(),
        };
        let conn = (e.quoted_src.ip() == self.vip.ip())
            .then(|| self.conntrack.lookup(&key))
            .flatten()
            .and_then(|id| self.conntrack.get(id));
        let Some(conn) = conn else {
            return Action::Drop(DropReason::IcmpNoConnection);
        };
        let action = match conn.method {
            Method::Local => Action::DeliverLocal {
                offset: ETH_HEADER_LEN,
                len: e.ip_total_len,
            },
            Method::Nat | Method::Dr => {
                let Some(mac) = self.targets.get(conn.target.index()).and_then(|t| t.mac) else {
                    return Action::Drop(DropReason::NoTarget);
                };
                let macs = MacPair {
                    src: self.macs.back_mac,
                    dst: mac,
                };
                let r = if conn.method == Method::Nat {
                    icmp::nat_in(frame, conn.real, macs)
                } else {
                    rewrite::dr(frame, macs).map_err(DropReason::from)
                };
                match r {
                    Ok(len) => Action::Forward {
                        iface: Iface::Back,
                        len,
                    },
                    Err(r) => return Action::Drop(r),
                }
            }
        };
        self.counters.icmp_forwarded += 1;
        action
    }

    /// An ICMP error on `back` quoting `client -> real:rport` of a NAT
    /// flow: to the client, from the VIP, quoting `client -> VIP:vport`.
    fn back_icmp(&mut self, frame: &mut [u8]) -> Action {
        let e = match Ipv4Packet::new_checked(frame.get(ETH_HEADER_LEN..).unwrap_or_default())
            .map_err(DropReason::from)
            .and_then(|ip| {
                check_ipv4(&ip, false).map_err(DropReason::from)?;
                icmp::parse(&ip)
            }) {
            Ok(e) => e,
            Err(r) => return Action::Drop(r),
        };
        let conn = self
            .by_endpoint
            .get(&e.quoted_dst)
            .and_then(|&t| {
                self.conntrack
                    .lookup_reply(t, *e.quoted_src.ip(), e.quoted_src.port())
            })
            .and_then(|id| self.conntrack.get(id));
        let Some(conn) = conn else {
            return Action::Drop(DropReason::IcmpNoConnection);
        };
        let macs = MacPair {
            src: self.macs.front_mac,
            dst: conn.front_mac,
        };
        let vip = SocketAddrV4::new(*self.vip.ip(), conn.key.vport);
        match icmp::nat_out(frame, vip, macs) {
            Ok(len) => {
                self.counters.icmp_forwarded += 1;
                Action::Forward {
                    iface: Iface::Front,
                    len,
                }
            }
            Err(r) => Action::Drop(r),
        }
    }

    fn back(&mut self, now: Duration, frame: &mut [u8]) -> Action {
        if is_icmp(frame) {
            return self.back_icmp(frame);
        }
        let info = match parse_tcp_frame(frame, false) {
            Ok(i) => i,
            Err(e) => return Action::Drop(e.into()),
        };
        if let Err(r) = self.verify_tcp(frame, &info) {
            return Action::Drop(r);
        }
        let src = SocketAddrV4::new(info.src_ip, info.src_port);
        let Some(&target) = self.by_endpoint.get(&src) else {
            return Action::Drop(DropReason::NotFromRealServer);
        };
        let Some(id) = self
            .conntrack
            .lookup_reply(target, info.dst_ip, info.dst_port)
        else {
            return Action::Drop(DropReason::NoConnection);
        };
        let Some(conn) = self.conntrack.get(id) else {
            return Action::Drop(DropReason::NoConnection);
        };
        self.conntrack
            .update(id, now, Direction::Output, info.flags);
        let macs = MacPair {
            src: self.macs.front_mac,
            dst: conn.front_mac,
        };
        let vip = SocketAddrV4::new(*self.vip.ip(), conn.key.vport);
        match rewrite::nat_out(frame, vip, macs) {
            Ok(len) => {
                if let Some(c) = self.counters.targets.get_mut(target.index()) {
                    c.out_pkts += 1;
                    c.out_bytes += info.ip_total_len as u64;
                }
                Action::Forward {
                    iface: Iface::Front,
                    len,
                }
            }
            Err(e) => Action::Drop(e.into()),
        }
    }

    /// Owner of a new flow from `ip:port` under the current membership and
    /// the cluster's hash seed.
    pub fn owner_of(&self, ip: Ipv4Addr, port: u16) -> Option<u32> {
        self.ownership.owner(self.hash_seed, ip, port)
    }
}

/// What a front frame for the VIP carries.
enum Inbound {
    Tcp(TcpFrameInfo),
    Icmp(IcmpError),
}

/// Whether a frame is Ethernet/IPv4 with protocol ICMP (structure not yet checked).
fn is_icmp(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&ETHERTYPE_IPV4.to_be_bytes()[..])
        && frame.get(ETH_HEADER_LEN + 9) == Some(&IPPROTO_ICMP)
}

fn direction_in(m: Method) -> Direction {
    match m {
        Method::Nat => Direction::Input,
        Method::Local | Method::Dr => Direction::InputOnly,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cluster, KeySource, LocalServer, RealServer};
    use crate::conntrack::Timeouts;
    use crate::wire::build::{syn_options, tcp_frame, FrameSpec};
    use crate::wire::{TcpFlags, TcpSegment};

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
    const RS0: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 12);
    const RS1: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 13);
    const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xee]);
    const FRONT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xf1]);
    const BACK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb1]);
    const RS0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
    const RS1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 3]);

    fn cfg() -> Config {
        Config {
            front_interface: "f".into(),
            back_interface: "b".into(),
            vip: SocketAddrV4::new(VIP, 80),
            bi_active: false,
            local: LocalServer {
                addr: Ipv4Addr::LOCALHOST,
                port: 80,
                weight: 1,
            },
            real_servers: vec![
                RealServer {
                    addr: RS0,
                    port: 8080,
                    weight: 1,
                    mac: Some(RS0_MAC),
                },
                RealServer {
                    addr: RS1,
                    port: 8080,
                    weight: 1,
                    mac: Some(RS1_MAC),
                },
            ],
            scheduler: SchedulerKind::Rr,
            forwarding: Forwarding::Nat,
            timeouts: Timeouts::default(),
            table_size: 1024,
            verify_checksums: true,
            cluster: Cluster::default(),
            health: Default::default(),
        }
    }

    fn lb(c: &Config) -> Balancer {
        Balancer::new(
            c,
            Interfaces {
                front_mac: FRONT_MAC,
                back_mac: BACK_MAC,
            },
        )
        .unwrap()
    }

    fn client(port: u16, flags: u8) -> Vec<u8> {
        tcp_frame(&FrameSpec {
            src_mac: ROUTER_MAC,
            dst_mac: MacAddr([1, 0, 0x5e, 0, 0, 100]),
            src_ip: Ipv4Addr::new(198, 18, 2, 1),
            dst_ip: VIP,
            src_port: port,
            dst_port: 80,
            flags,
            tcp_options: if flags == TcpFlags::SYN {
                syn_options()
            } else {
                vec![]
            },
            pad: if flags == TcpFlags::SYN { 0 } else { 6 },
            ..Default::default()
        })
    }

    fn reply(from: Ipv4Addr, port: u16, flags: u8) -> Vec<u8> {
        tcp_frame(&FrameSpec {
            src_mac: RS0_MAC,
            dst_mac: BACK_MAC,
            src_ip: from,
            src_port: 8080,
            dst_ip: Ipv4Addr::new(198, 18, 2, 1),
            dst_port: port,
            flags,
            payload: b"HTTP/1.0 200 OK\r\n\r\n".to_vec(),
            ..Default::default()
        })
    }

    fn fully_valid(f: &[u8]) -> TcpFrameInfo {
        let info = parse_tcp_frame(f, false).unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        info
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn nat_round_trip() {
        let mut b = lb(&cfg());
        let mut syn = client(40000, TcpFlags::SYN);
        let orig = syn.clone();
        let a = b.handle_front(T0, &mut syn);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Back,
                len: syn.len()
            }
        );
        let out = fully_valid(&syn);
        assert_eq!((out.dst_ip, out.dst_port), (RS0, 8080));
        assert_eq!(
            (out.src_ip, out.src_port),
            (Ipv4Addr::new(198, 18, 2, 1), 40000)
        );
        assert_eq!((out.src_mac, out.dst_mac), (BACK_MAC, RS0_MAC));
        assert_eq!(syn[54..74], orig[54..74], "TCP options untouched");

        let mut r = reply(RS0, 40000, TcpFlags::SYN | TcpFlags::ACK);
        let a = b.handle_back(T0, &mut r);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Front,
                len: r.len()
            }
        );
        let out = fully_valid(&r);
        assert_eq!((out.src_ip, out.src_port), (VIP, 80));
        assert_eq!(
            (out.dst_ip, out.dst_port),
            (Ipv4Addr::new(198, 18, 2, 1), 40000)
        );
        assert_eq!((out.src_mac, out.dst_mac), (FRONT_MAC, ROUTER_MAC));

        // The client's ACK (padded frame) follows the entry; padding is cut.
        let mut ack = client(40000, TcpFlags::ACK);
        let a = b.handle_front(T0, &mut ack);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Back,
                len: ack.len() - 6
            }
        );
        fully_valid(&ack[..ack.len() - 6]);
        let id = b.conntrack().lookup(&ConnKey {
            client_ip: Ipv4Addr::new(198, 18, 2, 1),
            client_port: 40000,
            vport: 80,
        });
        assert_eq!(
            b.conntrack().get(id.unwrap()).unwrap().state,
            TcpState::Established
        );
        let s = b.snapshot();
        assert_eq!(s.targets[0].traffic.conns, 1);
        assert_eq!(s.targets[0].traffic.in_pkts, 2);
        assert_eq!(s.targets[0].traffic.out_pkts, 1);
        assert_eq!(s.targets[0].active_conns, 1);
        assert_eq!(s.tx_back, 2);
        assert_eq!(s.tx_front, 1);
    }

    #[test]
    fn rr_spreads_new_flows() {
        let mut b = lb(&cfg());
        let mut seen = Vec::new();
        for p in 1000..1004 {
            let mut f = client(p, TcpFlags::SYN);
            b.handle_front(T0, &mut f);
            seen.push(parse_tcp_frame(&f, false).unwrap().dst_ip);
        }
        assert_eq!(seen, vec![RS0, RS1, RS0, RS1]);
    }

    #[test]
    fn bi_active_local_delivery() {
        let mut c = cfg();
        c.bi_active = true;
        c.real_servers.truncate(1);
        let mut b = lb(&c);
        let mut f = client(5000, TcpFlags::SYN);
        let orig = f.clone();
        let a = b.handle_front(T0, &mut f);
        // rr: Local first.
        assert_eq!(
            a,
            Action::DeliverLocal {
                offset: 14,
                len: f.len() - 14
            }
        );
        assert_eq!(f, orig, "local delivery leaves the packet unchanged");
        let mut f2 = client(5001, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut f2),
            Action::Forward {
                iface: Iface::Back,
                ..
            }
        ));
        // Local flow continues locally (input-only state machine).
        let mut ack = client(5000, TcpFlags::ACK);
        assert!(matches!(
            b.handle_front(T0, &mut ack),
            Action::DeliverLocal { .. }
        ));
        assert_eq!(b.snapshot().targets[0].forward, "Local");
        assert_eq!(b.counters().delivered_local, 2);
    }

    #[test]
    fn bi_active_off_never_delivers_locally() {
        let mut b = lb(&cfg());
        for p in 0..50 {
            let mut f = client(2000 + p, TcpFlags::SYN);
            assert!(matches!(b.handle_front(T0, &mut f), Action::Forward { .. }));
        }
        assert_eq!(b.counters().delivered_local, 0);
        assert!(b.snapshot().targets.iter().all(|t| t.name != "local"));
    }

    #[test]
    fn dr_rewrites_macs_only() {
        let mut c = cfg();
        c.forwarding = Forwarding::Dr;
        for rs in &mut c.real_servers {
            rs.port = 80;
        }
        let mut b = lb(&c);
        let mut f = client(40000, TcpFlags::SYN);
        let orig = f.clone();
        let a = b.handle_front(T0, &mut f);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Back,
                len: f.len()
            }
        );
        assert_eq!(f[14..], orig[14..]);
        assert_eq!(f[0..6], RS0_MAC.0);
        assert_eq!(f[6..12], BACK_MAC.0);
        assert_eq!(b.snapshot().targets[0].forward, "Route");
    }

    #[test]
    fn drops_are_classified_and_counted() {
        let mut b = lb(&cfg());
        let mut ack = client(1, TcpFlags::ACK);
        assert_eq!(
            b.handle_front(T0, &mut ack),
            Action::Drop(DropReason::NoConnection)
        );
        let mut other = tcp_frame(&FrameSpec {
            dst_ip: Ipv4Addr::new(198, 18, 0, 5),
            ..Default::default()
        });
        assert_eq!(
            b.handle_front(T0, &mut other),
            Action::Drop(DropReason::NotForVip)
        );
        let mut wrong_port = client(1, TcpFlags::SYN);
        wrong_port[14 + 20 + 3] = 81;
        // (checksum now wrong for TCP, but the port decides first)
        assert_eq!(
            b.handle_front(T0, &mut wrong_port),
            Action::Drop(DropReason::NotForVip)
        );
        let mut bad = client(1, TcpFlags::SYN);
        bad[14 + 8] = 1; // TTL without checksum update
        assert_eq!(
            b.handle_front(T0, &mut bad),
            Action::Drop(DropReason::BadChecksum)
        );
        let mut short = client(1, TcpFlags::SYN);
        assert_eq!(
            b.handle_front(T0, &mut short[..40]),
            Action::Drop(DropReason::Truncated)
        );
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(
            b.handle_front(T0, &mut arp),
            Action::Drop(DropReason::NotIpv4)
        );
        let mut stray = reply(Ipv4Addr::new(198, 18, 11, 199), 1, TcpFlags::ACK);
        assert_eq!(
            b.handle_back(T0, &mut stray),
            Action::Drop(DropReason::NotFromRealServer)
        );
        let mut late = reply(RS0, 1, TcpFlags::ACK);
        assert_eq!(
            b.handle_back(T0, &mut late),
            Action::Drop(DropReason::NoConnection)
        );
        let c = b.counters();
        assert_eq!(c.drops(DropReason::NoConnection), 2);
        assert_eq!(c.drops(DropReason::NotForVip), 2);
        assert_eq!(c.total_drops(), 8);
        assert_eq!(c.front_rx, 6);
        assert_eq!(c.back_rx, 2);
    }

    #[test]
    fn not_owner_is_dropped_and_peer_takes_it() {
        let mut c1 = cfg();
        c1.cluster = Cluster {
            node_id: 1,
            members: vec![Member { id: 1, weight: 1 }, Member { id: 2, weight: 1 }],
            key: Some(KeySource::Inline("engine-test-cluster-key".into())),
            ..Cluster::default()
        };
        let mut c2 = c1.clone();
        c2.cluster.node_id = 2;
        let (mut b1, mut b2) = (lb(&c1), lb(&c2));
        let mut taken = [0, 0];
        for p in 0..400u16 {
            let mut f1 = client(p + 1024, TcpFlags::SYN);
            let mut f2 = f1.clone();
            let a1 = b1.handle_front(T0, &mut f1);
            let a2 = b2.handle_front(T0, &mut f2);
            // Exactly one balancer takes every flow.
            match (a1, a2) {
                (Action::Forward { .. }, Action::Drop(DropReason::NotOwner)) => taken[0] += 1,
                (Action::Drop(DropReason::NotOwner), Action::Forward { .. }) => taken[1] += 1,
                other => panic!("flow {p}: {other:?}"),
            }
        }
        assert!(taken[0] > 120 && taken[1] > 120, "{taken:?}");
        // LB 2 dies: LB 1 takes new flows of LB 2's buckets; LB 1's own
        // flows in its table keep going.
        b1.set_membership(vec![Member { id: 1, weight: 1 }])
            .unwrap();
        for p in 0..400u16 {
            let mut f = client(p + 1024, TcpFlags::ACK);
            let a = b1.handle_front(T0, &mut f);
            assert_ne!(a, Action::Drop(DropReason::NotOwner));
        }
        assert_eq!(b1.ownership().bucket_count(1), 4096);
    }

    #[test]
    fn joining_balancer_breaks_no_established_flow() {
        let mut b = lb(&cfg());
        for p in 0..100u16 {
            let mut f = client(3000 + p, TcpFlags::SYN);
            assert!(matches!(b.handle_front(T0, &mut f), Action::Forward { .. }));
        }
        b.set_membership(vec![
            Member { id: 1, weight: 1 },
            Member { id: 2, weight: 1 },
        ])
        .unwrap();
        for p in 0..100u16 {
            let mut f = client(3000 + p, TcpFlags::ACK);
            let a = b.handle_front(T0, &mut f);
            assert!(matches!(a, Action::Forward { .. }), "{p}: {a:?}");
        }
    }

    #[test]
    fn quiesced_target_keeps_existing_flows() {
        let mut b = lb(&cfg());
        let mut f = client(1, TcpFlags::SYN);
        b.handle_front(T0, &mut f);
        assert_eq!(parse_tcp_frame(&f, false).unwrap().dst_ip, RS0);
        b.set_weight(Target::Real(0), 0);
        for p in 2..10 {
            let mut f = client(p, TcpFlags::SYN);
            b.handle_front(T0, &mut f);
            assert_eq!(parse_tcp_frame(&f, false).unwrap().dst_ip, RS1);
        }
        let mut ack = client(1, TcpFlags::ACK);
        b.handle_front(T0, &mut ack);
        assert_eq!(
            parse_tcp_frame(&ack[..ack.len() - 6], false)
                .unwrap()
                .dst_ip,
            RS0
        );
        // Down and quiesced: nothing left.
        b.set_up(Target::Real(1), false);
        let mut f = client(99, TcpFlags::SYN);
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::NoTarget)
        );
    }

    #[test]
    fn unresolved_mac_is_not_a_candidate() {
        let mut c = cfg();
        c.real_servers[0].mac = None;
        let mut b = lb(&c);
        for p in 0..4 {
            let mut f = client(p, TcpFlags::SYN);
            b.handle_front(T0, &mut f);
            assert_eq!(parse_tcp_frame(&f, false).unwrap().dst_ip, RS1);
        }
        assert!(b.set_real_mac(0, RS0_MAC));
        assert!(!b.set_real_mac(7, RS0_MAC));
        let mut seen = Vec::new();
        for p in 10..14 {
            let mut f = client(p, TcpFlags::SYN);
            b.handle_front(T0, &mut f);
            seen.push(parse_tcp_frame(&f, false).unwrap().dst_ip);
        }
        assert!(seen.contains(&RS0));
    }

    #[test]
    fn expiry_and_time_wait_reuse() {
        let mut b = lb(&cfg());
        let mut f = client(7, TcpFlags::SYN);
        b.handle_front(T0, &mut f);
        assert_eq!(b.conntrack().len(), 1);
        assert_eq!(b.tick(Duration::from_secs(59)), 0);
        assert_eq!(b.tick(Duration::from_secs(60)), 1);
        let mut ack = client(7, TcpFlags::ACK);
        assert_eq!(
            b.handle_front(Duration::from_secs(61), &mut ack),
            Action::Drop(DropReason::NoConnection)
        );
        // Close a flow, then reuse its port with a new SYN.
        let t = Duration::from_secs(100);
        let mut syn = client(8, TcpFlags::SYN);
        b.handle_front(t, &mut syn);
        let mut rst = client(8, TcpFlags::RST);
        b.handle_front(t, &mut rst);
        let key = ConnKey {
            client_ip: Ipv4Addr::new(198, 18, 2, 1),
            client_port: 8,
            vport: 80,
        };
        let id = b.conntrack().lookup(&key).unwrap();
        // RST from the client in SYN_RECV stays SYN_RECV (LVS table); a
        // FIN moves it to TIME_WAIT.
        assert_eq!(b.conntrack().get(id).unwrap().state, TcpState::SynRecv);
        let mut fin = client(8, TcpFlags::FIN | TcpFlags::ACK);
        b.handle_front(t, &mut fin);
        assert_eq!(b.conntrack().get(id).unwrap().state, TcpState::TimeWait);
        let mut syn = client(8, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(t, &mut syn),
            Action::Forward { .. }
        ));
        let id = b.conntrack().lookup(&key).unwrap();
        assert_eq!(b.conntrack().get(id).unwrap().state, TcpState::SynRecv);
        assert_eq!(b.conntrack().counters().removed, 1);
    }

    fn key_of(port: u16) -> ConnKey {
        ConnKey {
            client_ip: Ipv4Addr::new(198, 18, 2, 1),
            client_port: port,
            vport: 80,
        }
    }

    fn state_of(b: &Balancer, port: u16) -> Option<TcpState> {
        let id = b.conntrack().lookup(&key_of(port))?;
        Some(b.conntrack().get(id)?.state)
    }

    fn total_conns(b: &Balancer) -> u64 {
        b.counters().targets.iter().map(|t| t.conns).sum()
    }

    /// Client side of a connection-per-request exchange whose replies
    /// bypass the balancer (local or DR): SYN, ACK, request, FIN, last ACK.
    /// Returns the SYN's action.
    fn input_only_flow(b: &mut Balancer, now: Duration, port: u16) -> Action {
        let mut syn = client(port, TcpFlags::SYN);
        let a = b.handle_front(now, &mut syn);
        for flags in [
            TcpFlags::ACK,
            TcpFlags::ACK | TcpFlags::PSH,
            TcpFlags::FIN | TcpFlags::ACK,
            TcpFlags::ACK,
        ] {
            let mut f = client(port, flags);
            b.handle_front(now, &mut f);
        }
        a
    }

    #[test]
    fn reused_tuple_after_fin_exchange_is_a_new_flow() {
        // The harness case: bi-active, rr over local + one real server; the
        // local flow's entry ends in FIN_WAIT (input-only table), and the
        // client (tcp_tw_reuse) opens a new connection from the same port.
        let mut c = cfg();
        c.bi_active = true;
        c.real_servers.truncate(1);
        let mut b = lb(&c);
        let t = Duration::from_secs(1);
        let a = input_only_flow(&mut b, t, 6000);
        assert!(matches!(a, Action::DeliverLocal { .. }), "{a:?}");
        assert_eq!(state_of(&b, 6000), Some(TcpState::FinWait));

        // Same tuple, new SYN: scheduled anew (rr: the real server next),
        // counted once more.
        let mut syn = client(6000, TcpFlags::SYN);
        let a = b.handle_front(t, &mut syn);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Back,
                len: syn.len()
            }
        );
        assert_eq!(parse_tcp_frame(&syn, false).unwrap().dst_ip, RS0);
        assert_eq!(state_of(&b, 6000), Some(TcpState::SynRecv));
        let s = b.snapshot();
        assert_eq!(s.targets[0].traffic.conns, 1, "local");
        assert_eq!(s.targets[1].traffic.conns, 1, "rs0");
        assert_eq!(s.conntrack.removed, 1);
        assert_eq!(s.conntrack_entries, 1);
        // The new flow's packets follow the new entry, not the old target.
        let mut ack = client(6000, TcpFlags::ACK);
        assert!(matches!(
            b.handle_front(t, &mut ack),
            Action::Forward {
                iface: Iface::Back,
                ..
            }
        ));
        assert_eq!(state_of(&b, 6000), Some(TcpState::Established));
    }

    #[test]
    fn syn_on_every_closing_state_starts_a_new_flow() {
        // NAT flows driven into each closing state, then a new SYN.
        let cases: [(&[(bool, u8)], TcpState); 4] = [
            // client FIN first: CLOSE_WAIT
            (
                &[(true, TcpFlags::FIN | TcpFlags::ACK)],
                TcpState::CloseWait,
            ),
            // server FIN first: FIN_WAIT
            (&[(false, TcpFlags::FIN | TcpFlags::ACK)], TcpState::FinWait),
            // client FIN, server's last ACK missing: still CLOSE_WAIT, then
            // the client's ACK after a server FIN: TIME_WAIT
            (
                &[
                    (true, TcpFlags::FIN | TcpFlags::ACK),
                    (false, TcpFlags::FIN | TcpFlags::ACK),
                ],
                TcpState::TimeWait,
            ),
            // reset: CLOSE
            (&[(true, TcpFlags::RST)], TcpState::Close),
        ];
        for (i, (steps, want)) in cases.iter().enumerate() {
            let mut b = lb(&cfg());
            let port = 7000 + i as u16;
            let mut syn = client(port, TcpFlags::SYN);
            b.handle_front(T0, &mut syn);
            let mut sa = reply(RS0, port, TcpFlags::SYN | TcpFlags::ACK);
            b.handle_back(T0, &mut sa);
            let mut ack = client(port, TcpFlags::ACK);
            b.handle_front(T0, &mut ack);
            for &(from_client, flags) in *steps {
                let mut f = if from_client {
                    client(port, flags)
                } else {
                    reply(RS0, port, flags)
                };
                b.handle_front(T0, &mut f);
                b.handle_back(T0, &mut f);
            }
            assert_eq!(state_of(&b, port), Some(*want), "case {i}");
            let mut syn = client(port, TcpFlags::SYN);
            assert!(matches!(
                b.handle_front(T0, &mut syn),
                Action::Forward { .. }
            ));
            // rr: the second flow goes to the other real server.
            assert_eq!(
                parse_tcp_frame(&syn, false).unwrap().dst_ip,
                RS1,
                "case {i}"
            );
            assert_eq!(state_of(&b, port), Some(TcpState::SynRecv), "case {i}");
            assert_eq!(total_conns(&b), 2, "case {i}");
            // The old server's late packets no longer find an entry.
            let mut late = reply(RS0, port, TcpFlags::ACK);
            assert_eq!(
                b.handle_back(T0, &mut late),
                Action::Drop(DropReason::NoConnection),
                "case {i}"
            );
        }
    }

    #[test]
    fn syn_retransmit_and_syn_on_established_follow_the_entry() {
        let mut c = cfg();
        c.bi_active = true;
        let mut b = lb(&c);
        let mut syn = client(8000, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::DeliverLocal { .. }
        ));
        // Retransmitted SYN (SYN_RECV): same target, not a new connection.
        for _ in 0..3 {
            let mut syn = client(8000, TcpFlags::SYN);
            assert!(matches!(
                b.handle_front(T0, &mut syn),
                Action::DeliverLocal { .. }
            ));
        }
        assert_eq!(total_conns(&b), 1);
        assert_eq!(b.conntrack().counters().inserted, 1);
        // ESTABLISHED: a stray SYN follows the entry too (the server's
        // stack answers it with a challenge ACK).
        let mut ack = client(8000, TcpFlags::ACK);
        b.handle_front(T0, &mut ack);
        let mut syn = client(8000, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::DeliverLocal { .. }
        ));
        assert_eq!(state_of(&b, 8000), Some(TcpState::Established));
        assert_eq!(total_conns(&b), 1);
        assert_eq!(b.conntrack().counters().removed, 0);
    }

    #[test]
    fn reuse_on_a_balancer_that_no_longer_owns_the_tuple_drops_the_entry() {
        // LB 1 served the flow alone; LB 2 joined and now owns the tuple.
        // The new SYN must be taken by LB 2 only: LB 1 forgets its closing
        // entry instead of answering too (no flow answered by two LBs).
        let mut c1 = cfg();
        c1.bi_active = true;
        c1.cluster = Cluster {
            node_id: 1,
            members: vec![Member { id: 1, weight: 1 }],
            ..Cluster::default()
        };
        let mut b1 = lb(&c1);
        let two = vec![Member { id: 1, weight: 1 }, Member { id: 2, weight: 1 }];
        let port = (1024..u16::MAX)
            .find(|&p| {
                Ownership::compute(&Membership::new(two.clone()).unwrap()).owner(
                    0,
                    Ipv4Addr::new(198, 18, 2, 1),
                    p,
                ) == Some(2)
            })
            .unwrap();
        input_only_flow(&mut b1, T0, port);
        assert_eq!(state_of(&b1, port), Some(TcpState::FinWait));
        b1.set_membership(two).unwrap();
        let mut syn = client(port, TcpFlags::SYN);
        assert_eq!(
            b1.handle_front(T0, &mut syn),
            Action::Drop(DropReason::NotOwner)
        );
        assert_eq!(state_of(&b1, port), None);
        assert_eq!(total_conns(&b1), 1);
    }

    #[test]
    fn conns_equal_accepted_syns_under_port_reuse() {
        // Many connection-per-request flows over a small port space (so
        // tuples are reused while their entries are closing), NAT and local
        // mixed: every accepted initial SYN is exactly one new connection,
        // and per-target conns add up to the SYNs each target received.
        let mut c = cfg();
        c.bi_active = true;
        let mut b = lb(&c);
        let mut accepted = 0u64;
        let mut to_local = 0u64;
        let mut to_rs = [0u64; 2];
        for i in 0..600u32 {
            let now = Duration::from_millis(u64::from(i) * 10);
            let port = 20_000 + (i % 37) as u16;
            let mut syn = client(port, TcpFlags::SYN);
            match b.handle_front(now, &mut syn) {
                Action::DeliverLocal { .. } => to_local += 1,
                Action::Forward { .. } => {
                    let dst = parse_tcp_frame(&syn, false).unwrap().dst_ip;
                    to_rs[usize::from(dst == RS1)] += 1;
                    let mut sa = reply(dst, port, TcpFlags::SYN | TcpFlags::ACK);
                    b.handle_back(now, &mut sa);
                }
                a => panic!("flow {i}: {a:?}"),
            }
            accepted += 1;
            // Client closes first, or the server does, alternately.
            let mut ack = client(port, TcpFlags::ACK);
            b.handle_front(now, &mut ack);
            let mut fin = client(port, TcpFlags::FIN | TcpFlags::ACK);
            b.handle_front(now, &mut fin);
            if i % 2 == 0 {
                for rs in [RS0, RS1] {
                    let mut sfin = reply(rs, port, TcpFlags::FIN | TcpFlags::ACK);
                    b.handle_back(now, &mut sfin);
                }
            }
            b.tick(now);
        }
        let s = b.snapshot();
        let conns: Vec<u64> = s.targets.iter().map(|t| t.traffic.conns).collect();
        assert_eq!(conns, vec![to_local, to_rs[0], to_rs[1]]);
        assert_eq!(conns.iter().sum::<u64>(), accepted);
        assert_eq!(s.conntrack.inserted, accepted);
        assert_eq!(
            s.conntrack.inserted,
            s.conntrack.removed
                + s.conntrack.expired
                + s.conntrack.evicted
                + s.conntrack_entries as u64
        );
        assert!(s.conntrack.removed > 500, "{:?}", s.conntrack);
    }

    #[test]
    fn table_full_is_counted() {
        let mut c = cfg();
        c.table_size = 2;
        let mut b = lb(&c);
        for p in 0..2 {
            let mut syn = client(p, TcpFlags::SYN);
            b.handle_front(T0, &mut syn);
            let mut ack = client(p, TcpFlags::ACK);
            b.handle_front(T0, &mut ack);
        }
        let mut syn = client(9, TcpFlags::SYN);
        assert_eq!(
            b.handle_front(T0, &mut syn),
            Action::Drop(DropReason::TableFull)
        );
        assert_eq!(b.snapshot().conntrack.table_full, 1);
    }

    #[test]
    fn ip_options_and_fragments_dropped() {
        let mut b = lb(&cfg());
        let good = client(1, TcpFlags::SYN);
        let mut f = good[..34].to_vec();
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&good[34..]);
        f[14] = 0x46;
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::IpOptions)
        );
        let mut f = good.clone();
        f[20] |= 0x20;
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::Fragment)
        );
    }

    fn client_data(port: u16) -> Vec<u8> {
        tcp_frame(&FrameSpec {
            src_mac: ROUTER_MAC,
            dst_mac: MacAddr([1, 0, 0x5e, 0, 0, 100]),
            src_ip: Ipv4Addr::new(198, 18, 2, 1),
            dst_ip: VIP,
            src_port: port,
            dst_port: 80,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            ..Default::default()
        })
    }

    /// A balancer holding one established NAT flow from client port 5000.
    fn with_flow(verify: bool) -> Balancer {
        let mut c = cfg();
        c.verify_checksums = verify;
        let mut b = lb(&c);
        let mut syn = client(5000, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::Forward { .. }
        ));
        let mut sa = reply(RS0, 5000, TcpFlags::SYN | TcpFlags::ACK);
        assert!(matches!(b.handle_back(T0, &mut sa), Action::Forward { .. }));
        b
    }

    #[test]
    fn bad_tcp_checksums_are_dropped_and_counted_unless_off() {
        let mut b = with_flow(true);
        let mut good = client_data(5000);
        assert!(matches!(
            b.handle_front(T0, &mut good),
            Action::Forward { .. }
        ));
        let mut bad = client_data(5000);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            b.handle_front(T0, &mut bad),
            Action::Drop(DropReason::BadTcpChecksum)
        );
        let mut bad_reply = reply(RS0, 5000, TcpFlags::ACK);
        let last = bad_reply.len() - 1;
        bad_reply[last] ^= 0x40;
        assert_eq!(
            b.handle_back(T0, &mut bad_reply),
            Action::Drop(DropReason::BadTcpChecksum)
        );
        assert_eq!(b.snapshot().drops["bad_tcp_checksum"], 2);

        // Off: the same corruption goes through (as a NIC offload would need).
        let mut b = with_flow(false);
        let mut bad = client_data(5000);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            b.handle_front(T0, &mut bad),
            Action::Forward { .. }
        ));
        assert_eq!(b.counters().drops(DropReason::BadTcpChecksum), 0);
    }

    #[test]
    fn either_zero_checksum_representation_verifies() {
        // One's complement: a computed 0x0000 may travel as 0xffff.
        let mut f = client_data(5000);
        for delta in 0u16..=u16::MAX {
            f[54..56].copy_from_slice(&delta.to_be_bytes());
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let c = crate::checksum::tcp_checksum(src, dst, &f[34..]);
            if c == 0 {
                f[50..52].copy_from_slice(&0xffffu16.to_be_bytes());
                let info = parse_tcp_frame(&f, false).unwrap();
                assert!(tcp_checksum_ok(&f, &info));
                f[50..52].copy_from_slice(&0u16.to_be_bytes());
                assert!(tcp_checksum_ok(&f, &info));
                return;
            }
        }
        panic!("no payload word gives a zero checksum");
    }

    mod checksum_property {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any single corrupted byte of the checksummed range (IPv4
            /// header, TCP header and payload) of a frame of an established
            /// flow gets it dropped, on either interface, when verification is on.
            #[test]
            fn any_single_corrupted_byte_is_dropped(
                pos in any::<prop::sample::Index>(),
                xor in 1u8..=255,
                front in any::<bool>(),
            ) {
                let mut b = with_flow(true);
                let mut f = if front {
                    client_data(5000)
                } else {
                    reply(RS0, 5000, TcpFlags::ACK | TcpFlags::PSH)
                };
                let range = ETH_HEADER_LEN..f.len();
                let at = range.start + pos.index(range.len());
                f[at] ^= xor;
                let tx = (b.counters().tx_front, b.counters().tx_back);
                let a = if front { b.handle_front(T0, &mut f) } else { b.handle_back(T0, &mut f) };
                prop_assert!(matches!(a, Action::Drop(_)), "byte {} ^ {:#x}: {:?}", at, xor, a);
                prop_assert_eq!((b.counters().tx_front, b.counters().tx_back), tx);
            }
        }
    }

    fn syn_with_isn(port: u16, isn: u32) -> Vec<u8> {
        tcp_frame(&FrameSpec {
            src_mac: ROUTER_MAC,
            dst_mac: MacAddr([1, 0, 0x5e, 0, 0, 100]),
            src_ip: Ipv4Addr::new(198, 18, 2, 1),
            dst_ip: VIP,
            src_port: port,
            dst_port: 80,
            flags: TcpFlags::SYN,
            seq: isn,
            tcp_options: syn_options(),
            ..Default::default()
        })
    }

    #[test]
    fn syn_with_a_new_isn_on_syn_recv_is_a_new_flow() {
        let mut c = cfg();
        c.bi_active = true;
        c.real_servers.truncate(1);
        let mut b = lb(&c);
        let mut syn = syn_with_isn(9000, 1000);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::DeliverLocal { .. }
        ));
        // Same ISN: a retransmission, same target, not counted again.
        for _ in 0..2 {
            let mut syn = syn_with_isn(9000, 1000);
            assert!(matches!(
                b.handle_front(T0, &mut syn),
                Action::DeliverLocal { .. }
            ));
        }
        assert_eq!(total_conns(&b), 1);
        assert_eq!(b.snapshot().syn_recv_new_isn, 0);
        // Another ISN: a new connection, scheduled anew (rr: the real server).
        let mut syn = syn_with_isn(9000, 77_000);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::Forward {
                iface: Iface::Back,
                ..
            }
        ));
        assert_eq!(parse_tcp_frame(&syn, false).unwrap().dst_ip, RS0);
        let s = b.snapshot();
        assert_eq!(s.syn_recv_new_isn, 1);
        assert_eq!(total_conns(&b), 2);
        assert_eq!(s.conntrack.removed, 1);
        assert_eq!(s.conntrack_entries, 1);
        let id = b.conntrack().lookup(&key_of(9000)).unwrap();
        assert_eq!(b.conntrack().get(id).unwrap().isn, 77_000);
        // Its retransmission follows the new entry.
        let mut again = syn_with_isn(9000, 77_000);
        assert!(matches!(
            b.handle_front(T0, &mut again),
            Action::Forward {
                iface: Iface::Back,
                ..
            }
        ));
        assert_eq!(total_conns(&b), 2);
        assert_eq!(b.snapshot().syn_recv_new_isn, 1);
    }

    #[test]
    fn balancers_sharing_a_seed_partition_new_flows_and_the_seed_moves_them() {
        let member = |id: u32, seed: u64| {
            let mut c = cfg();
            c.cluster = Cluster {
                node_id: id,
                members: vec![Member { id: 1, weight: 1 }, Member { id: 2, weight: 1 }],
                key: Some(KeySource::Inline("a-cluster-key-of-16+".into())),
                hash_seed: seed,
                ..Cluster::default()
            };
            lb(&c)
        };
        let seed = 0x0123_4567_89ab_cdef;
        let (mut b1, mut b2) = (member(1, seed), member(2, seed));
        let unseeded = member(1, 0);
        let mut moved = 0;
        for port in 1000..1400 {
            let mut taken = 0;
            for b in [&mut b1, &mut b2] {
                let mut syn = client(port, TcpFlags::SYN);
                taken +=
                    usize::from(b.handle_front(T0, &mut syn) != Action::Drop(DropReason::NotOwner));
            }
            assert_eq!(taken, 1, "port {port}");
            let ip = Ipv4Addr::new(198, 18, 2, 1);
            moved += usize::from(b1.owner_of(ip, port) != unseeded.owner_of(ip, port));
        }
        // About half the flows change owner under another seed.
        assert!((100..300).contains(&moved), "{moved}");
    }

    #[test]
    fn icmp_errors_about_flows_reach_their_sender_rewritten() {
        use crate::icmp::{build_error, checksums_ok, DEST_UNREACH, FRAG_NEEDED};
        let router = Ipv4Addr::new(198, 18, 1, 1);
        let cl = Ipv4Addr::new(198, 18, 2, 1);
        let to_lb = MacPair {
            src: ROUTER_MAC,
            dst: FRONT_MAC,
        };
        let mut c = cfg();
        c.bi_active = true;
        c.real_servers.truncate(1);
        let mut b = lb(&c);
        // Flow 5000 is local (rr: local first), flow 5001 NAT to RS0.
        let mut syn = client(5000, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::DeliverLocal { .. }
        ));
        let mut syn = client(5001, TcpFlags::SYN);
        assert!(matches!(
            b.handle_front(T0, &mut syn),
            Action::Forward { .. }
        ));
        let forwarded = syn[14..].to_vec(); // client -> RS0:8080 as sent on back
        let mut reply_frame = reply(RS0, 5001, TcpFlags::SYN | TcpFlags::ACK);
        assert!(matches!(
            b.handle_back(T0, &mut reply_frame),
            Action::Forward { .. }
        ));
        let reply_ip = reply_frame[14..].to_vec(); // VIP:80 -> client as sent on front

        // Front: a router cannot forward our (large) reply: frag-needed to the
        // VIP, quoting it whole. It reaches RS0, about RS0:8080 -> client.
        let mut f = build_error(
            to_lb,
            (router, VIP),
            (DEST_UNREACH, FRAG_NEEDED, 1280),
            &reply_ip,
            reply_ip.len(),
        );
        let a = b.handle_front(T0, &mut f);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Back,
                len: f.len()
            }
        );
        assert!(checksums_ok(&f, true));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (router, RS0));
        let e = icmp::parse(&ip).unwrap();
        assert_eq!(e.quoted_src, SocketAddrV4::new(RS0, 8080));
        assert_eq!(e.quoted_dst, SocketAddrV4::new(cl, 5001));
        assert_eq!((&f[0..6], &f[6..12]), (&RS0_MAC.0[..], &BACK_MAC.0[..]));
        assert_eq!(&f[38..42], &1280u32.to_be_bytes(), "MTU kept");

        // Back: RS0's side reports our forwarded packet (8-byte quote). It
        // reaches the client from the VIP, about client -> VIP:80.
        let mut f = build_error(
            MacPair {
                src: RS0_MAC,
                dst: BACK_MAC,
            },
            (RS0, cl),
            (DEST_UNREACH, 3, 0),
            &forwarded,
            28,
        );
        let a = b.handle_back(T0, &mut f);
        assert_eq!(
            a,
            Action::Forward {
                iface: Iface::Front,
                len: f.len()
            }
        );
        assert!(checksums_ok(&f, false));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, cl));
        let e = icmp::parse(&ip).unwrap();
        assert_eq!(
            (e.quoted_src, e.quoted_dst),
            (SocketAddrV4::new(cl, 5001), SocketAddrV4::new(VIP, 80))
        );
        assert_eq!((&f[0..6], &f[6..12]), (&ROUTER_MAC.0[..], &FRONT_MAC.0[..]));

        // A router's error to the VIP about our reply to client port `port`.
        let to_vip = |kind: u8, port: u16, quote: usize| {
            let q = tcp_frame(&FrameSpec {
                src_ip: VIP,
                src_port: 80,
                dst_ip: cl,
                dst_port: port,
                ..Default::default()
            });
            build_error(
                to_lb,
                (router, VIP),
                (kind, FRAG_NEEDED, 1400),
                &q[14..],
                quote,
            )
        };
        // The local flow's error goes to the local stack unchanged.
        let mut f = to_vip(DEST_UNREACH, 5000, 28);
        let orig = f.clone();
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::DeliverLocal {
                offset: 14,
                len: f.len() - 14
            }
        );
        assert_eq!(f, orig);
        assert_eq!(b.snapshot().icmp_forwarded, 3);

        // Unknown flow, unsupported type, malformed: counted drops.
        let mut f = to_vip(DEST_UNREACH, 6000, 28);
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::IcmpNoConnection)
        );
        let mut f = to_vip(8, 6000, 28);
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::IcmpUnsupported)
        );
        let mut f = to_vip(DEST_UNREACH, 6000, 20);
        assert_eq!(
            b.handle_front(T0, &mut f),
            Action::Drop(DropReason::IcmpMalformed)
        );
        let mut f = build_error(
            MacPair {
                src: RS0_MAC,
                dst: BACK_MAC,
            },
            (RS0, cl),
            (DEST_UNREACH, 3, 0),
            &forwarded,
            28,
        );
        f[14 + 20 + 8 + 12] ^= 1; // quoted source changed, ICMP checksum now wrong
        assert_eq!(
            b.handle_back(T0, &mut f),
            Action::Drop(DropReason::IcmpMalformed)
        );
        let d = b.snapshot().drops;
        assert_eq!(
            (
                d["icmp_no_connection"],
                d["icmp_unsupported"],
                d["icmp_malformed"]
            ),
            (1, 1, 2)
        );
    }

    #[test]
    fn maglev_tables_are_rebuilt_off_the_decision_path() {
        let mut c = cfg();
        c.scheduler = SchedulerKind::Mh;
        let mut b = lb(&c);
        // The first table was built at startup: nothing pending.
        assert_eq!(b.take_table_request(), None);
        b.set_weight(Target::Real(0), 0);
        let r = b.take_table_request().expect("a rebuild is asked for");
        assert_eq!(b.take_table_request(), None);
        // Until the new table is installed every new flow still gets an
        // eligible target (RS1: RS0 is quiesced).
        for p in 0..50 {
            let mut syn = client(p, TcpFlags::SYN);
            assert!(matches!(
                b.handle_front(T0, &mut syn),
                Action::Forward { .. }
            ));
            assert_eq!(parse_tcp_frame(&syn, false).unwrap().dst_ip, RS1);
        }
        assert!(b.install_table(Arc::new(HashTable::build(&r))));
        b.set_weight(Target::Real(0), 1);
        b.build_tables_now();
        assert_eq!(b.take_table_request(), None);
    }
}
