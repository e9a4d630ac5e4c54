//! Bounded connection table with the LVS TCP state machine and timeouts.
//!
//! Keyed by (client address, client port, VIP port); each entry records the
//! chosen target, how it is forwarded (local, NAT, DR), the real server
//! endpoint for NAT, the client-side next-hop MAC (replies go back the way
//! the request came) and the TCP state. NAT entries are also indexed by
//! (target, client address, client port) so a real server's reply finds its
//! entry.
//!
//! **State machine**: LVS's `tcp_states` table (ip_vs_proto_tcp.c), driven
//! by the flags of each packet (RST, else SYN, else FIN, else ACK) and its
//! direction: `Input` (client -> server) and `Output` (server -> client) for
//! NAT, `InputOnly` for local and DR flows whose replies bypass the
//! balancer. Every packet re-arms the entry's timer with the timeout of the
//! state it lands in (LVS `tcp_timeouts`: ESTABLISHED 900 s, SYN_RECV 60 s,
//! FIN_WAIT 120 s, TIME_WAIT 120 s, CLOSE 10 s, CLOSE_WAIT 60 s,
//! LAST_ACK 30 s, ...), configurable via [`Timeouts`].
//!
//! **Time**: no clock inside. Callers pass `now` (a `Duration` since any
//! fixed origin); it is clamped to be non-decreasing.
//!
//! **Expiry** is exact and O(expired): entries sit in one intrusive list
//! per state, and since all entries of a state share one timeout, each
//! list is ordered by expiry; [`Conntrack::expire`] pops list heads.
//!
//! **Bound and eviction**: the table never holds more than `capacity`
//! entries (all memory is reserved up front, so there is no rehash pause on
//! the packet path). When full, a new flow evicts a *non-established*
//! entry, by tiers ([`EVICTION_TIERS`]), and within a tier the one closest
//! to expiry: first finished flows (TIME_WAIT, CLOSE: losing one costs at
//! most a stray retransmission), then half-open ones (SYN_RECV and the
//! other handshake states: what a SYN flood fills the table with, oldest
//! first), last flows still closing (FIN_WAIT, CLOSE_WAIT, LAST_ACK: data
//! may still be on its way). Closest-to-expiry alone ranked a connection-
//! per-request client's TIME_WAIT entries (120 s) behind the flood's
//! SYN_RECV entries (60 s), so under a long SYN flood finished flows kept
//! their slots and live handshakes were evicted within a fraction of a
//! second (`harness flood`). Ahead of all tiers goes a half-open entry
//! idle for [`STALE_HALF_OPEN`] (a live client retransmits its SYN sooner):
//! after a flood, its dead handshakes make room before finished flows do.
//! If every entry is ESTABLISHED the new flow is
//! refused ([`TableFull`]) instead: live connections are never broken to
//! admit new ones; the client's SYN retransmission retries.
//!
//! **Memory per entry**: `size_of::<Slot>()` = 48 bytes in the slab, plus
//! the forward index `HashMap<u64, u32>` (16 bytes + 1 control byte per
//! bucket, buckets = next power of two of capacity * 8/7) and, for NAT
//! entries, the same again for the reply index. For a capacity of 2^20:
//! 48 MiB + 2 * 2^21 * 17 B = 116 MiB when full. Measured with
//! `cargo run --release -p balancer --example conntrack_mem`: 1,000,000 NAT
//! entries take 114 MiB (119 bytes/entry), process RSS 116 MiB.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sched::Target;
use crate::wire::{MacAddr, TcpFlags};

/// LVS TCP connection states (ip_vs.h `IP_VS_TCP_S_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    /// No packet seen yet.
    None = 0,
    /// Three-way handshake completed.
    Established,
    /// SYN seen from the server side.
    SynSent,
    /// Client SYN seen.
    SynRecv,
    /// FIN seen from the server side first (NAT).
    FinWait,
    /// Both sides closing.
    TimeWait,
    /// Reset or closed.
    Close,
    /// Client closed first.
    CloseWait,
    /// Last ACK pending.
    LastAck,
    /// Listen (unused by the balancer, kept for table fidelity).
    Listen,
    /// SYN+ACK seen (LVS secure_tcp table).
    SynAck,
}

/// Number of TCP states.
pub const N_STATES: usize = 11;

impl TcpState {
    /// All states, in index order.
    pub const ALL: [TcpState; N_STATES] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];
    /// The LVS name, as `ipvsadm -lc` prints it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }
    /// Whether an initial SYN (SYN without ACK/RST) from the client on an
    /// entry in this state opens a *new* connection on the same tuple
    /// (port reuse, e.g. `tcp_tw_reuse`), rather than retransmitting the
    /// SYN of the current one. Only SYN_RECV with the entry's ISN
    /// (`same_isn`: a retransmission) and ESTABLISHED (a stray SYN the
    /// server's stack answers with a challenge ACK) keep following the
    /// entry; a SYN_RECV entry hit by a SYN with another ISN is a new
    /// connection (the client gave up on the first and reused the port,
    /// or the first SYN was spoofed), so it is scheduled anew. This is LVS's `conn_reuse_mode`
    /// (`is_new_conn_expected`: TIME_WAIT, CLOSE, and FIN_WAIT of
    /// input-only flows with bit 2), extended to every closing state: a
    /// client sends an initial SYN only once its previous connection on
    /// the tuple is gone, and an input-only (local, DR) flow whose client
    /// closed first ends in FIN_WAIT, not TIME_WAIT, so following it would
    /// send the new flow to the old target uncounted.
    pub fn initial_syn_starts_new_flow(self, same_isn: bool) -> bool {
        match self {
            TcpState::SynRecv => !same_isn,
            TcpState::Established => false,
            _ => true,
        }
    }
    fn from_u8(v: u8) -> TcpState {
        TcpState::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(TcpState::Close)
    }
}

/// Direction of a packet relative to the connection, as LVS defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client -> server through the balancer (NAT flows).
    Input,
    /// Server -> client through the balancer (NAT replies).
    Output,
    /// Client -> server of a flow whose replies bypass the balancer (local, DR).
    InputOnly,
}

const ES: TcpState = TcpState::Established;
const SS: TcpState = TcpState::SynSent;
const SR: TcpState = TcpState::SynRecv;
const FW: TcpState = TcpState::FinWait;
const TW: TcpState = TcpState::TimeWait;
const CL: TcpState = TcpState::Close;
const CW: TcpState = TcpState::CloseWait;
const LA: TcpState = TcpState::LastAck;
const LI: TcpState = TcpState::Listen;

/// LVS `tcp_states` (non-secure table): [direction][syn, fin, ack, rst][state].
#[rustfmt::skip]
const TRANSITIONS: [[[TcpState; N_STATES]; 4]; 3] = [
    // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [/*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
     /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
     /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
     /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR]],
    // OUTPUT
    [/*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
     /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
     /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
     /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL]],
    // INPUT_ONLY
    [/*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
     /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
     /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
     /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL]],
];

/// The next state after a packet with `flags` in `dir` (LVS
/// `set_tcp_state`): RST takes precedence, then SYN, FIN, ACK; a packet
/// with none of them moves the connection to CLOSE, as in LVS.
pub fn next_state(state: TcpState, dir: Direction, flags: TcpFlags) -> TcpState {
    let d = match dir {
        Direction::Input => 0,
        Direction::Output => 1,
        Direction::InputOnly => 2,
    };
    let f = if flags.rst() {
        3
    } else if flags.syn() {
        0
    } else if flags.fin() {
        1
    } else if flags.ack() {
        2
    } else {
        return TcpState::Close;
    };
    TRANSITIONS[d][f][state as usize]
}

/// The states a full table evicts from, cheapest loss first (see the
/// module doc); ESTABLISHED is in none of them.
pub const EVICTION_TIERS: [&[TcpState]; 3] = [
    &[TcpState::TimeWait, TcpState::Close],
    &[
        TcpState::None,
        TcpState::SynRecv,
        TcpState::SynSent,
        TcpState::SynAck,
        TcpState::Listen,
    ],
    &[TcpState::FinWait, TcpState::CloseWait, TcpState::LastAck],
];

/// A SYN_RECV entry this long without a packet is taken for a dead
/// handshake and evicted first (Linux retransmits a SYN after 1, 2 and 4 s).
pub const STALE_HALF_OPEN: Duration = Duration::from_secs(5);

/// Per-state timeouts in seconds (LVS `tcp_timeouts` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// NONE (2 s).
    pub none: u32,
    /// ESTABLISHED (900 s).
    pub established: u32,
    /// SYN_SENT (120 s).
    pub syn_sent: u32,
    /// SYN_RECV (60 s).
    pub syn_recv: u32,
    /// FIN_WAIT (120 s).
    pub fin_wait: u32,
    /// TIME_WAIT (120 s).
    pub time_wait: u32,
    /// CLOSE (10 s).
    pub close: u32,
    /// CLOSE_WAIT (60 s).
    pub close_wait: u32,
    /// LAST_ACK (30 s).
    pub last_ack: u32,
    /// LISTEN (120 s).
    pub listen: u32,
    /// SYNACK (120 s).
    pub synack: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            none: 2,
            established: 15 * 60,
            syn_sent: 2 * 60,
            syn_recv: 60,
            fin_wait: 2 * 60,
            time_wait: 2 * 60,
            close: 10,
            close_wait: 60,
            last_ack: 30,
            listen: 2 * 60,
            synack: 120,
        }
    }
}

impl Timeouts {
    /// Timeout of `state`.
    pub fn of(&self, state: TcpState) -> Duration {
        let s = match state {
            TcpState::None => self.none,
            TcpState::Established => self.established,
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::FinWait => self.fin_wait,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::Listen => self.listen,
            TcpState::SynAck => self.synack,
        };
        Duration::from_secs(u64::from(s))
    }
    /// (field name, value) pairs, for validation and display.
    pub fn fields(&self) -> [(&'static str, u32); N_STATES] {
        let mut c = *self;
        c.fields_mut().map(|(n, v)| (n, *v))
    }
    /// (field name, mutable value) pairs, for configuration parsing.
    pub fn fields_mut(&mut self) -> [(&'static str, &mut u32); N_STATES] {
        [
            ("none", &mut self.none),
            ("established", &mut self.established),
            ("syn_sent", &mut self.syn_sent),
            ("syn_recv", &mut self.syn_recv),
            ("fin_wait", &mut self.fin_wait),
            ("time_wait", &mut self.time_wait),
            ("close", &mut self.close),
            ("close_wait", &mut self.close_wait),
            ("last_ack", &mut self.last_ack),
            ("listen", &mut self.listen),
            ("synack", &mut self.synack),
        ]
    }
}

/// How an entry's packets are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Delivered to the local server (replies bypass the balancer).
    Local,
    /// NAT through `back` (replies come back through the balancer).
    Nat,
    /// Direct routing through `back` (replies bypass the balancer).
    Dr,
}

/// Forward lookup key: the client endpoint and the VIP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Client address.
    pub client_ip: Ipv4Addr,
    /// Client port.
    pub client_port: u16,
    /// VIP port the client connected to.
    pub vport: u16,
}

impl ConnKey {
    fn pack(&self) -> u64 {
        (u64::from(u32::from(self.client_ip)) << 32)
            | (u64::from(self.client_port) << 16)
            | u64::from(self.vport)
    }
}

fn reply_key(target: Target, client_ip: Ipv4Addr, client_port: u16) -> u64 {
    ((target.index() as u64 & 0xffff) << 48)
        | (u64::from(u32::from(client_ip)) << 16)
        | u64::from(client_port)
}

/// What the engine stores for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn {
    /// Forward key.
    pub key: ConnKey,
    /// Chosen target.
    pub target: Target,
    /// Forwarding method.
    pub method: Method,
    /// The real server endpoint (NAT destination); the VIP for local/DR.
    pub real: SocketAddrV4,
    /// Source MAC of the client's frame: where replies are sent.
    pub front_mac: MacAddr,
    /// The client's initial sequence number (its SYN's), which tells a
    /// retransmitted SYN from a new connection on the same tuple.
    pub isn: u32,
}

/// A read-only view of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// Forward key.
    pub key: ConnKey,
    /// Chosen target.
    pub target: Target,
    /// Forwarding method.
    pub method: Method,
    /// Real server endpoint.
    pub real: SocketAddrV4,
    /// Client-side next-hop MAC.
    pub front_mac: MacAddr,
    /// TCP state.
    pub state: TcpState,
    /// When it expires unless another packet arrives.
    pub expires: Duration,
    /// The client's initial sequence number.
    pub isn: u32,
}

/// Handle of an entry, valid until the table is next modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u32);

/// The new flow could not be admitted: the table is full of established flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full of established connections")]
pub struct TableFull;

/// Per-target connection counts (LVS activeconns / inactconns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Load {
    /// Entries in ESTABLISHED.
    pub active: u32,
    /// Entries in any other state.
    pub inactive: u32,
}

/// Table counters ("how many?" questions about the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConntrackCounters {
    /// Entries created.
    pub inserted: u64,
    /// Entries removed by timeout.
    pub expired: u64,
    /// Entries evicted to admit a new flow.
    pub evicted: u64,
    /// New flows refused because the table was full of established flows.
    pub table_full: u64,
    /// Entries removed explicitly (a closing entry whose tuple a new SYN
    /// reuses: see [`TcpState::initial_syn_starts_new_flow`]).
    pub removed: u64,
}

const NIL: u32 = u32::MAX;
const FREE: u8 = 0xff;

/// One table slot (48 bytes, 40 before the ISN was kept; see the module doc for the memory budget).
#[derive(Debug, Clone, Copy)]
struct Slot {
    client_ip: u32,
    real_ip: u32,
    expires_ms: u64,
    prev: u32,
    next: u32,
    client_port: u16,
    vport: u16,
    real_port: u16,
    target: u16,
    front_mac: [u8; 6],
    state: u8,
    method: u8,
    isn: u32,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// The connection table. Owned by the engine (one per packet thread).
#[derive(Debug)]
pub struct Conntrack {
    slots: Vec<Slot>,
    free: u32,
    lists: [List; N_STATES],
    fwd: HashMap<u64, u32>,
    rev: HashMap<u64, u32>,
    capacity: usize,
    len: usize,
    timeouts: Timeouts,
    loads: Vec<Load>,
    counters: ConntrackCounters,
    now_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn method_u8(m: Method) -> u8 {
    match m {
        Method::Local => 0,
        Method::Nat => 1,
        Method::Dr => 2,
    }
}

fn method_of(v: u8) -> Method {
    match v {
        0 => Method::Local,
        1 => Method::Nat,
        _ => Method::Dr,
    }
}

/// Bytes per slot in the slab (the hash indexes come on top; see the module doc).
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Largest supported capacity: 2^26 entries, about 7.3 GiB reserved up
/// front ([`table_bytes`]); beyond that a table no longer fits the
/// machines this runs on, and an allocation failure would abort.
pub const MAX_CAPACITY: usize = 1 << 26;

/// Bytes a table of `capacity` entries reserves when it is built: the slab
/// plus both hash indexes (hashbrown: the next power of two of
/// `capacity * 8 / 7` buckets of 16 bytes and a control byte each).
pub fn table_bytes(capacity: usize) -> u64 {
    let cap = capacity as u64;
    let buckets = (cap.saturating_mul(8) / 7).max(1).next_power_of_two();
    cap.saturating_mul(SLOT_BYTES as u64)
        .saturating_add(buckets.saturating_mul(2 * 17))
}

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Capacity outside `1..=MAX_CAPACITY`.
    #[error("table_size: expected an integer 1..={max} (about {per} bytes per entry, reserved up front), got {0}", max = MAX_CAPACITY, per = table_bytes(1 << 20) >> 20)]
    Size(usize),
    /// The memory could not be reserved.
    #[error("table_size {capacity}: the connection table needs {mib} MiB up front, which could not be allocated; lower table_size", mib = bytes >> 20)]
    Alloc {
        /// Requested entries.
        capacity: usize,
        /// Bytes it needs ([`table_bytes`]).
        bytes: u64,
    },
}

impl Conntrack {
    /// A table for at most `capacity` entries (1..=[`MAX_CAPACITY`]) over
    /// `n_targets` targets (Local + real servers), reserving all memory now
    /// with fallible allocations, so an oversized table is an error, not an abort.
    pub fn new(capacity: usize, timeouts: Timeouts, n_targets: usize) -> Result<Self, TableError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(TableError::Size(capacity));
        }
        let alloc = || TableError::Alloc {
            capacity,
            bytes: table_bytes(capacity),
        };
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| alloc())?;
        let mut fwd = HashMap::new();
        fwd.try_reserve(capacity).map_err(|_| alloc())?;
        let mut rev = HashMap::new();
        rev.try_reserve(capacity).map_err(|_| alloc())?;
        Ok(Self {
            slots,
            free: NIL,
            lists: [List {
                head: NIL,
                tail: NIL,
            }; N_STATES],
            fwd,
            rev,
            capacity,
            len: 0,
            timeouts,
            loads: vec![Load::default(); n_targets],
            counters: ConntrackCounters::default(),
            now_ms: 0,
        })
    }
    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Counters.
    pub fn counters(&self) -> ConntrackCounters {
        self.counters
    }
    /// Current timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
    /// Replaces the timeouts (applies from each entry's next packet).
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }
    /// Active/inactive counts of `target` (zero for unknown targets).
    pub fn load(&self, target: Target) -> Load {
        self.loads.get(target.index()).copied().unwrap_or_default()
    }
    /// Number of entries per state, for display.
    pub fn state_counts(&self) -> [(TcpState, usize); N_STATES] {
        let mut out = TcpState::ALL.map(|s| (s, 0));
        for s in &self.slots {
            if s.state != FREE {
                out[usize::from(s.state)].1 += 1;
            }
        }
        out
    }

    fn advance(&mut self, now: Duration) -> u64 {
        self.now_ms = self.now_ms.max(ms(now));
        self.now_ms
    }

    /// Finds the entry of a client packet.
    pub fn lookup(&self, key: &ConnKey) -> Option<ConnId> {
        self.fwd.get(&key.pack()).map(|&i| ConnId(i))
    }

    /// Finds the NAT entry of a real server's reply to `client_ip:client_port`.
    pub fn lookup_reply(
        &self,
        target: Target,
        client_ip: Ipv4Addr,
        client_port: u16,
    ) -> Option<ConnId> {
        self.rev
            .get(&reply_key(target, client_ip, client_port))
            .map(|&i| ConnId(i))
    }

    /// Reads an entry.
    pub fn get(&self, id: ConnId) -> Option<Conn> {
        let s = self.slots.get(id.0 as usize)?;
        if s.state == FREE {
            return None;
        }
        Some(Conn {
            key: ConnKey {
                client_ip: Ipv4Addr::from(s.client_ip),
                client_port: s.client_port,
                vport: s.vport,
            },
            target: Target::from_index(usize::from(s.target)).unwrap_or(Target::Local),
            method: method_of(s.method),
            real: SocketAddrV4::new(Ipv4Addr::from(s.real_ip), s.real_port),
            front_mac: MacAddr(s.front_mac),
            state: TcpState::from_u8(s.state),
            expires: Duration::from_millis(s.expires_ms),
            isn: s.isn,
        })
    }

    fn unlink(&mut self, i: u32) {
        let Slot {
            prev, next, state, ..
        } = self.slots[i as usize];
        let l = &mut self.lists[usize::from(state)];
        if prev == NIL {
            l.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            l.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, i: u32) {
        let state = usize::from(self.slots[i as usize].state);
        let tail = self.lists[state].tail;
        self.slots[i as usize].prev = tail;
        self.slots[i as usize].next = NIL;
        if tail == NIL {
            self.lists[state].head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        self.lists[state].tail = i;
    }

    fn load_mut(&mut self, target: u16) -> Option<&mut Load> {
        self.loads.get_mut(usize::from(target))
    }

    fn account(&mut self, target: u16, state: u8, delta: i32) {
        let active = state == TcpState::Established as u8;
        if let Some(l) = self.load_mut(target) {
            let c = if active {
                &mut l.active
            } else {
                &mut l.inactive
            };
            *c = c.saturating_add_signed(delta);
        }
    }

    fn free_slot(&mut self, i: u32) {
        self.unlink(i);
        let s = self.slots[i as usize];
        self.account(s.target, s.state, -1);
        let key = ConnKey {
            client_ip: Ipv4Addr::from(s.client_ip),
            client_port: s.client_port,
            vport: s.vport,
        };
        self.fwd.remove(&key.pack());
        if method_of(s.method) == Method::Nat {
            if let Some(t) = Target::from_index(usize::from(s.target)) {
                self.rev
                    .remove(&reply_key(t, key.client_ip, key.client_port));
            }
        }
        let slot = &mut self.slots[i as usize];
        slot.state = FREE;
        slot.next = self.free;
        self.free = i;
        self.len -= 1;
    }

    /// Removes an entry (a closing entry whose tuple a new SYN reuses, say).
    pub fn remove(&mut self, id: ConnId) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.free_slot(id.0);
        self.counters.removed += 1;
        true
    }

    /// The eviction victim: the oldest half-open entry if it is stale
    /// ([`STALE_HALF_OPEN`] without a packet at `now_ms`), else in the first
    /// tier of [`EVICTION_TIERS`] that has an entry, the one closest to expiry.
    fn victim(&self, now_ms: u64) -> Option<u32> {
        let oldest = self.lists[TcpState::SynRecv as usize].head;
        if oldest != NIL {
            let timeout = ms(self.timeouts.of(TcpState::SynRecv));
            let last_packet = self.slots[oldest as usize]
                .expires_ms
                .saturating_sub(timeout);
            if now_ms.saturating_sub(last_packet) >= ms(STALE_HALF_OPEN) {
                return Some(oldest);
            }
        }
        EVICTION_TIERS.iter().find_map(|tier| {
            tier.iter()
                .map(|s| self.lists[*s as usize].head)
                .filter(|&h| h != NIL)
                .min_by_key(|&h| self.slots[h as usize].expires_ms)
        })
    }

    /// Admits a new flow in state NONE, evicting per the module policy when
    /// full. An existing entry with the same key is replaced. Follow with
    /// [`Conntrack::update`] for the packet that opened it.
    pub fn insert(&mut self, now: Duration, c: NewConn) -> Result<ConnId, TableFull> {
        let now_ms = self.advance(now);
        if let Some(old) = self.lookup(&c.key) {
            self.remove(old);
        }
        if self.len >= self.capacity {
            match self.victim(now_ms) {
                Some(v) => {
                    self.free_slot(v);
                    self.counters.evicted += 1;
                }
                None => {
                    self.counters.table_full += 1;
                    return Err(TableFull);
                }
            }
        }
        let target = c.target.index() as u16;
        let slot = Slot {
            client_ip: u32::from(c.key.client_ip),
            real_ip: u32::from(*c.real.ip()),
            expires_ms: now_ms.saturating_add(ms(self.timeouts.of(TcpState::None))),
            prev: NIL,
            next: NIL,
            client_port: c.key.client_port,
            vport: c.key.vport,
            real_port: c.real.port(),
            target,
            front_mac: c.front_mac.0,
            state: TcpState::None as u8,
            method: method_u8(c.method),
            isn: c.isn,
        };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            i
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.push_tail(i);
        self.len += 1;
        self.account(target, slot.state, 1);
        self.fwd.insert(c.key.pack(), i);
        if c.method == Method::Nat {
            self.rev
                .insert(reply_key(c.target, c.key.client_ip, c.key.client_port), i);
        }
        self.counters.inserted += 1;
        Ok(ConnId(i))
    }

    /// Applies one packet to an entry: state transition, timer re-arm,
    /// load accounting. Returns the new state (`None` for a stale id).
    pub fn update(
        &mut self,
        id: ConnId,
        now: Duration,
        dir: Direction,
        flags: TcpFlags,
    ) -> Option<TcpState> {
        let now_ms = self.advance(now);
        // Only the state is needed: read the slot, not a whole `Conn` (`get`).
        let raw = self.slots.get(id.0 as usize)?.state;
        if raw == FREE {
            return None;
        }
        let cur = TcpState::from_u8(raw);
        let new = next_state(cur, dir, flags);
        let i = id.0;
        self.unlink(i);
        let target = self.slots[i as usize].target;
        if new != cur {
            self.account(target, cur as u8, -1);
            self.account(target, new as u8, 1);
        }
        let slot = &mut self.slots[i as usize];
        slot.state = new as u8;
        slot.expires_ms = now_ms.saturating_add(ms(self.timeouts.of(new)));
        self.push_tail(i);
        Some(new)
    }

    /// Removes entries whose timer ran out by `now`, at most `budget` of
    /// them (so one call cannot stall the packet loop); returns how many.
    pub fn expire(&mut self, now: Duration, budget: usize) -> usize {
        let now_ms = self.advance(now);
        let mut n = 0;
        for s in 0..N_STATES {
            while n < budget {
                let h = self.lists[s].head;
                if h == NIL || self.slots[h as usize].expires_ms > now_ms {
                    break;
                }
                self.free_slot(h);
                n += 1;
            }
        }
        self.counters.expired += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const FIN_ACK: TcpFlags = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
    const RST: TcpFlags = TcpFlags(TcpFlags::RST);
    const SYN_ACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);

    fn key(i: u32) -> ConnKey {
        ConnKey {
            client_ip: Ipv4Addr::from(0x0a00_0000 + (i >> 16)),
            client_port: (i & 0xffff) as u16,
            vport: 80,
        }
    }

    fn conn(i: u32, method: Method) -> NewConn {
        NewConn {
            key: key(i),
            target: Target::Real(0),
            method,
            real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 12), 80),
            front_mac: MacAddr([2, 0, 0, 0, 0, 9]),
            isn: i,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn slot_is_48_bytes() {
        assert_eq!(SLOT_BYTES, 48);
    }

    #[test]
    fn nat_lifecycle_follows_lvs_table() {
        let mut ct = Conntrack::new(16, Timeouts::default(), 2).unwrap();
        let id = ct.insert(secs(0), conn(1, Method::Nat)).unwrap();
        use Direction::*;
        assert_eq!(ct.update(id, secs(0), Input, SYN), Some(TcpState::SynRecv));
        assert_eq!(
            ct.load(Target::Real(0)),
            Load {
                active: 0,
                inactive: 1
            }
        );
        assert_eq!(
            ct.update(id, secs(0), Output, SYN_ACK),
            Some(TcpState::SynRecv)
        );
        assert_eq!(
            ct.update(id, secs(0), Input, ACK),
            Some(TcpState::Established)
        );
        assert_eq!(
            ct.load(Target::Real(0)),
            Load {
                active: 1,
                inactive: 0
            }
        );
        assert_eq!(ct.get(id).unwrap().expires, secs(900));
        // Server closes first: FIN_WAIT, then client FIN: TIME_WAIT.
        assert_eq!(
            ct.update(id, secs(1), Output, FIN_ACK),
            Some(TcpState::FinWait)
        );
        assert_eq!(
            ct.update(id, secs(1), Input, FIN_ACK),
            Some(TcpState::TimeWait)
        );
        assert_eq!(ct.get(id).unwrap().expires, secs(121));
        assert_eq!(
            ct.load(Target::Real(0)),
            Load {
                active: 0,
                inactive: 1
            }
        );
        assert_eq!(
            ct.lookup_reply(Target::Real(0), key(1).client_ip, key(1).client_port),
            Some(id)
        );
    }

    #[test]
    fn client_close_and_reset() {
        use Direction::*;
        let mut ct = Conntrack::new(16, Timeouts::default(), 2).unwrap();
        let id = ct.insert(secs(0), conn(1, Method::Nat)).unwrap();
        ct.update(id, secs(0), Input, SYN);
        ct.update(id, secs(0), Input, ACK);
        assert_eq!(
            ct.update(id, secs(0), Input, FIN_ACK),
            Some(TcpState::CloseWait)
        );
        assert_eq!(
            ct.update(id, secs(0), Output, FIN_ACK),
            Some(TcpState::TimeWait)
        );
        let id2 = ct.insert(secs(0), conn(2, Method::Local)).unwrap();
        ct.update(id2, secs(0), InputOnly, SYN);
        // LVS: a RST in SYN_RECV keeps SYN_RECV; in ESTABLISHED it closes.
        assert_eq!(
            ct.update(id2, secs(0), InputOnly, RST),
            Some(TcpState::SynRecv)
        );
        ct.update(id2, secs(0), InputOnly, ACK);
        assert_eq!(
            ct.update(id2, secs(0), InputOnly, RST),
            Some(TcpState::Close)
        );
        assert_eq!(ct.get(id2).unwrap().expires, secs(10));
        // DR/local: client FIN in ESTABLISHED goes to FIN_WAIT (input-only table).
        let id3 = ct.insert(secs(0), conn(3, Method::Dr)).unwrap();
        ct.update(id3, secs(0), InputOnly, SYN);
        ct.update(id3, secs(0), InputOnly, ACK);
        assert_eq!(
            ct.update(id3, secs(0), InputOnly, FIN_ACK),
            Some(TcpState::FinWait)
        );
        // No reply index for non-NAT entries.
        assert_eq!(
            ct.lookup_reply(Target::Real(0), key(3).client_ip, key(3).client_port),
            None
        );
    }

    #[test]
    fn expiry_is_exact_and_driven_by_now() {
        use Direction::*;
        let mut ct = Conntrack::new(16, Timeouts::default(), 2).unwrap();
        let a = ct.insert(secs(0), conn(1, Method::Nat)).unwrap();
        ct.update(a, secs(0), Input, SYN); // SYN_RECV, 60 s
        let b = ct.insert(secs(10), conn(2, Method::Nat)).unwrap();
        ct.update(b, secs(10), Input, SYN);
        ct.update(b, secs(10), Input, ACK); // ESTABLISHED, 900 s
        assert_eq!(ct.expire(secs(59), 100), 0);
        assert_eq!(ct.expire(secs(60), 100), 1);
        assert!(ct.lookup(&key(1)).is_none());
        assert!(ct
            .lookup_reply(Target::Real(0), key(1).client_ip, key(1).client_port)
            .is_none());
        assert_eq!(ct.expire(secs(909), 100), 0);
        // A packet re-arms the timer.
        let b = ct.lookup(&key(2)).unwrap();
        ct.update(b, secs(950), Input, ACK);
        assert_eq!(ct.expire(secs(1000), 100), 0);
        assert_eq!(ct.expire(secs(1849), 100), 0);
        assert_eq!(ct.expire(secs(1850), 100), 1);
        assert!(ct.is_empty());
        assert_eq!(ct.counters().expired, 2);
        assert_eq!(ct.load(Target::Real(0)), Load::default());
    }

    #[test]
    fn budget_limits_expiry_work() {
        let mut ct = Conntrack::new(100, Timeouts::default(), 2).unwrap();
        for i in 0..50 {
            ct.insert(secs(0), conn(i, Method::Nat)).unwrap();
        }
        assert_eq!(ct.expire(secs(5), 20), 20);
        assert_eq!(ct.expire(secs(5), 100), 30);
    }

    #[test]
    fn eviction_tiers_cover_every_state_but_established_once() {
        let mut seen: Vec<TcpState> = EVICTION_TIERS
            .iter()
            .flat_map(|t| t.iter().copied())
            .collect();
        seen.sort_by_key(|s| *s as u8);
        let want: Vec<TcpState> = TcpState::ALL
            .iter()
            .copied()
            .filter(|s| *s != TcpState::Established)
            .collect();
        assert_eq!(seen, want);
    }

    /// Flow `i` opened and closed by the server first at `t` seconds: it
    /// ends in TIME_WAIT.
    fn finished_flow(ct: &mut Conntrack, i: u32, t: u64) -> ConnId {
        use Direction::*;
        let id = ct.insert(secs(t), conn(i, Method::Nat)).unwrap();
        for (dir, f) in [
            (Input, SYN),
            (Output, SYN_ACK),
            (Input, ACK),
            (Output, FIN_ACK),
            (Input, FIN_ACK),
        ] {
            ct.update(id, secs(t), dir, f);
        }
        id
    }

    /// A SYN flood into a table holding finished flows: the finished flows
    /// go first, a live handshake keeps its slot (closest-to-expiry alone
    /// evicted it first: SYN_RECV's 60 s is shorter than TIME_WAIT's 120 s).
    #[test]
    fn syn_flood_evicts_finished_flows_before_a_live_handshake() {
        use Direction::*;
        let mut ct = Conntrack::new(10, Timeouts::default(), 2).unwrap();
        // Five finished flows (server closed first: FIN_WAIT, then TIME_WAIT).
        for i in 0..5 {
            let id = finished_flow(&mut ct, i, 0);
            assert_eq!(ct.get(id).unwrap().state, TcpState::TimeWait);
        }
        // A live handshake, then the flood fills the table.
        let live = ct.insert(secs(1), conn(100, Method::Nat)).unwrap();
        ct.update(live, secs(1), Input, SYN);
        ct.update(live, secs(1), Output, SYN_ACK);
        let mut flood = 1000;
        let mut syn = |ct: &mut Conntrack| {
            let id = ct.insert(secs(2), conn(flood, Method::Nat)).unwrap();
            ct.update(id, secs(2), Input, SYN);
            flood += 1;
        };
        for _ in 0..4 {
            syn(&mut ct);
        }
        assert_eq!(ct.len(), 10);
        // Five more flood SYNs: the finished flows make room, the handshake stays.
        for _ in 0..5 {
            syn(&mut ct);
        }
        assert!((0..5).all(|i| ct.lookup(&key(i)).is_none()));
        assert_eq!(ct.get(live).unwrap().state, TcpState::SynRecv);
        // Then half-open entries go, oldest first: the live one (the oldest).
        syn(&mut ct);
        assert!(ct.lookup(&key(100)).is_none());
        assert_eq!(ct.counters().evicted, 6);
    }

    /// After a flood: its stale half-open entries go before finished flows,
    /// a fresh one does not.
    #[test]
    fn stale_half_open_entries_go_first() {
        use Direction::*;
        let mut ct = Conntrack::new(4, Timeouts::default(), 2).unwrap();
        let syn = |ct: &mut Conntrack, i: u32, t: u64| {
            let id = ct.insert(secs(t), conn(i, Method::Nat)).unwrap();
            ct.update(id, secs(t), Input, SYN);
        };
        syn(&mut ct, 0, 0);
        for i in 1..3 {
            finished_flow(&mut ct, i, 0);
        }
        syn(&mut ct, 3, 4);
        // At 4 s flow 0 is not stale yet: a finished flow goes.
        syn(&mut ct, 4, 4);
        assert!(ct.lookup(&key(0)).is_some());
        assert_eq!(ct.lookup(&key(1)), None);
        // At 5 s it is: it goes before the other finished flow.
        syn(&mut ct, 5, 5);
        assert_eq!(ct.lookup(&key(0)), None);
        assert!(ct.lookup(&key(2)).is_some());
        assert_eq!(ct.counters().evicted, 2);
    }

    #[test]
    fn full_table_evicts_half_open_and_protects_established() {
        use Direction::*;
        let mut ct = Conntrack::new(3, Timeouts::default(), 2).unwrap();
        for i in 0..3 {
            let id = ct.insert(secs(u64::from(i)), conn(i, Method::Nat)).unwrap();
            ct.update(id, secs(u64::from(i)), Input, SYN);
        }
        // Establish flow 0: the oldest half-open is now flow 1.
        let id0 = ct.lookup(&key(0)).unwrap();
        ct.update(id0, secs(3), Input, ACK);
        let id = ct.insert(secs(4), conn(10, Method::Nat)).unwrap();
        ct.update(id, secs(4), Input, SYN);
        assert!(ct.lookup(&key(1)).is_none());
        assert!(ct.lookup(&key(0)).is_some());
        assert_eq!(ct.counters().evicted, 1);
        // Establish everything: the next flow is refused.
        for k in [2, 10] {
            let id = ct.lookup(&key(k)).unwrap();
            ct.update(id, secs(5), Input, ACK);
        }
        assert_eq!(ct.insert(secs(6), conn(11, Method::Nat)), Err(TableFull));
        assert_eq!(ct.counters().table_full, 1);
        assert_eq!(ct.len(), 3);
    }

    #[test]
    fn non_monotonic_now_is_clamped() {
        let mut ct = Conntrack::new(4, Timeouts::default(), 2).unwrap();
        ct.insert(secs(100), conn(1, Method::Nat)).unwrap();
        let id = ct.insert(secs(50), conn(2, Method::Nat)).unwrap();
        assert_eq!(ct.get(id).unwrap().expires, secs(102));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, bool),
        Update(u32, u8, u8),
        Expire(u64),
        Remove(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..40, any::<bool>()).prop_map(|(k, nat)| Op::Insert(k, nat)),
            (0u32..40, 0u8..3, any::<u8>()).prop_map(|(k, d, f)| Op::Update(k, d, f)),
            (0u64..300).prop_map(Op::Expire),
            (0u32..40).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Under any operation sequence the table stays within capacity, its
        /// indexes agree with its slots, loads equal a recount and no entry
        /// outlives its timer after `expire`.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..200), cap in 1usize..12) {
            let mut ct = Conntrack::new(cap, Timeouts { established: 30, ..Timeouts::default() }, 2).unwrap();
            let mut now = 0u64;
            for o in ops {
                now += 1;
                let t = secs(now);
                match o {
                    Op::Insert(k, nat) => {
                        let m = if nat { Method::Nat } else { Method::Local };
                        let mut c = conn(k, m);
                        if !nat { c.target = Target::Local; }
                        let _ = ct.insert(t, c);
                    }
                    Op::Update(k, d, f) => {
                        if let Some(id) = ct.lookup(&key(k)) {
                            let dir = [Direction::Input, Direction::Output, Direction::InputOnly][usize::from(d)];
                            ct.update(id, t, dir, TcpFlags(f));
                        }
                    }
                    Op::Expire(dt) => {
                        now += dt;
                        ct.expire(secs(now), usize::MAX);
                        for s in ct.slots.iter().filter(|s| s.state != FREE) {
                            prop_assert!(s.expires_ms > now * 1000);
                        }
                    }
                    Op::Remove(k) => {
                        if let Some(id) = ct.lookup(&key(k)) {
                            prop_assert!(ct.remove(id));
                        }
                    }
                }
                prop_assert!(ct.len() <= cap);
                let live: Vec<&Slot> = ct.slots.iter().filter(|s| s.state != FREE).collect();
                prop_assert_eq!(live.len(), ct.len());
                prop_assert_eq!(ct.fwd.len(), ct.len());
                let nat = live.iter().filter(|s| s.method == 1).count();
                prop_assert_eq!(ct.rev.len(), nat);
                let mut loads = vec![Load::default(); 2];
                for s in &live {
                    let l = &mut loads[usize::from(s.target)];
                    if s.state == TcpState::Established as u8 { l.active += 1 } else { l.inactive += 1 }
                }
                prop_assert_eq!(loads, ct.loads.clone());
                // Each state list is ordered by expiry and holds its states.
                let mut listed = 0;
                for (s, l) in ct.lists.iter().enumerate() {
                    let mut i = l.head;
                    let mut last = 0;
                    while i != NIL {
                        let slot = &ct.slots[i as usize];
                        prop_assert_eq!(usize::from(slot.state), s);
                        prop_assert!(slot.expires_ms >= last);
                        last = slot.expires_ms;
                        listed += 1;
                        i = slot.next;
                    }
                }
                prop_assert_eq!(listed, ct.len());
            }
        }
    }

    #[test]
    fn sizes_outside_the_limit_are_errors_not_aborts() {
        for cap in [0, MAX_CAPACITY + 1, usize::MAX] {
            assert_eq!(
                Conntrack::new(cap, Timeouts::default(), 2).unwrap_err(),
                TableError::Size(cap)
            );
        }
        let e = TableError::Size(usize::MAX).to_string();
        assert!(
            e.starts_with("table_size: expected an integer 1..=67108864"),
            "{e}"
        );
        // The estimate matches the module doc's budget (116 MiB for 2^20).
        assert_eq!(table_bytes(1 << 20) >> 20, 116);
        assert!(table_bytes(MAX_CAPACITY) < 8 << 30);
        let e = TableError::Alloc {
            capacity: MAX_CAPACITY,
            bytes: table_bytes(MAX_CAPACITY),
        };
        assert!(e.to_string().contains("needs 7424 MiB up front"), "{e}");
    }
}
