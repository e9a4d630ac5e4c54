//! Heartbeat membership, sans-I/O: heartbeats and `now` in, the datagram
//! to send and the live membership (the engine's `set_membership`) out.
//!
//! # Protocol
//!
//! Every balancer multicasts a signed [`Heartbeat`] on the LB LAN every
//! interval, and at once when its own state changes. It carries the
//! sender's [`State`] and its *view*: the ids it counts as claiming. A
//! node's view is what its engine computes ownership from (`ownership.rs`):
//! the peers heard within `dead_after` intervals whose state is `ready` or
//! `active`, plus itself when `active`.
//!
//! * **Start / restart (join).** A node starts `listening` (claims nothing)
//!   for `dead_after` intervals, so it hears every live peer before it
//!   acts. Then it announces `ready`. Peers add a `ready` node to their
//!   view at once, which stops them from taking *new* flows in the buckets
//!   that move to it. The joiner turns `active` (claims) only when the
//!   latest heartbeat of every peer that claims or may claim (`listening`,
//!   `ready`, `active`) lists it in its view, i.e. after they have let go
//!   and while any of them that turns `active` later counts it too (two
//!   `ready` nodes starting together each wait for the other's list). So a moving bucket has no owner for up to one interval
//!   (a SYN then is dropped everywhere and the client's retransmission
//!   lands on the new owner) and never two. Rendezvous hashing moves only
//!   buckets to the joiner; established flows stay in the connection table
//!   of the node that opened them (the engine follows its table before
//!   ownership, and a node drops, never resets, a non-SYN packet of a flow
//!   it does not hold).
//! * **Death.** A peer unheard for `dead_after` intervals leaves every
//!   survivor's view; only its buckets move (rendezvous hashing).
//! * **Graceful leave (SIGTERM).** The node announces `leaving` and at the
//!   same moment stops claiming; peers drop it from their view as soon as
//!   the announcement arrives (no `dead_after` wait). The order (announce,
//!   then stop) leaves a gap of one LAN delivery, never an overlap. It keeps
//!   serving the flows in its table for the drain period, repeating the
//!   announcement every interval.
//! * **Withdrawal.** With no healthy target (or drained through the control
//!   endpoint) a node announces `withdrawn`: like leaving, without exiting.
//!   When it may serve again it goes `ready` and rejoins as above.
//!
//! Authentication and replay: see [`crate::heartbeat`]. A heartbeat must be
//! signed with the cluster key, name this cluster's VIP and a configured
//! member other than us, carry an (epoch, sequence) above the last one
//! accepted from that member, and have been sent less than [`MAX_AGE_MS`]
//! ago by our wall clock. Everything else is counted by reason and changes
//! nothing.
//!
//! # Limits
//!
//! * **Partition.** If only the heartbeats between two live balancers are
//!   lost (both still see the client traffic), each declares the other dead
//!   and claims every bucket: new flows are then answered by both (two
//!   SYN-ACKs; the client keeps the first, the other server's half-open
//!   flow is reset by the client). Heartbeats share the LAN with client
//!   traffic (fate sharing), so a balancer cut off from its peers is
//!   usually cut off from clients too; nothing in-band can tell the two
//!   cases apart without a third party. When heartbeats come back the
//!   views converge within one interval.
//! * A SYN *retransmission* of a flow opened on the old owner just before
//!   its bucket moved to a joiner reaches both: the old owner follows its
//!   entry, the joiner (no entry) answers too. It needs a lost SYN-ACK
//!   inside the join's one-interval window.
//! * A restarted receiver has no replay history: a captured heartbeat
//!   replayed within [`MAX_AGE_MS`] can keep a dead peer in its view that
//!   long (its buckets unowned: a gap, not a double answer).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::heartbeat::{Heartbeat, Key, Reject, State};
use crate::ownership::Member;

/// Oldest heartbeat accepted, by the sender's and our wall clocks (ms).
pub const MAX_AGE_MS: u64 = 5_000;
/// Membership changes kept for `/membership`.
pub const HISTORY: usize = 32;

/// Timing of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Heartbeat period.
    pub interval: Duration,
    /// Intervals without a heartbeat before a peer is dead.
    pub dead_after: u32,
}

impl Timing {
    /// How long a peer may stay silent (also the joiner's listening time).
    pub fn dead_time(&self) -> Duration {
        self.interval * self.dead_after
    }
}

/// The last accepted heartbeat of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    epoch: u64,
    seq: u64,
    heard: Duration,
    state: State,
    view: Vec<u32>,
}

/// Why the view changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A peer was not heard for `dead_after` intervals.
    PeerDead,
    /// A peer announced `ready`/`active` (joined or came back).
    PeerJoined,
    /// A peer announced `leaving`, `withdrawn` or restarted (`listening`).
    PeerLeft,
    /// This node started claiming.
    SelfActive,
    /// This node stopped claiming (leave, withdrawal).
    SelfStopped,
}

/// One change of the view, for `/membership` and failover measurements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Our wall clock (unix ms) when it happened.
    pub at_unix_ms: u64,
    /// Why.
    pub cause: Cause,
    /// The peer concerned (our id for `self_*`).
    pub node: u32,
    /// The view afterwards.
    pub view: Vec<u32>,
}

/// Counters of the heartbeat layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatCounters {
    /// Datagrams produced for sending.
    pub sent: u64,
    /// Heartbeats accepted.
    pub accepted: u64,
    /// Refused datagrams by reason (`malformed`, `forged`, `foreign`, `replayed`, `own_id`).
    pub rejected: BTreeMap<String, u64>,
}

/// A member as `/membership` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Member id.
    pub id: u32,
    /// Configured ownership weight.
    pub weight: u32,
    /// Last announced state (ours for ourselves), `None`: never heard or dead.
    pub state: Option<State>,
    /// Milliseconds since its last accepted heartbeat (0 for ourselves).
    pub age_ms: Option<u64>,
    /// Its epoch (start time, unix ms).
    pub epoch: Option<u64>,
    /// Whether our view counts it (it owns buckets here).
    pub in_view: bool,
}

/// `GET /membership`: this node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDoc {
    /// Our id.
    pub node_id: u32,
    /// Our announced state.
    pub state: State,
    /// Our epoch (start time, unix ms).
    pub epoch: u64,
    /// Ids counted as claiming (ownership is computed from them).
    pub view: Vec<u32>,
    /// Buckets this node owns.
    pub owned_buckets: usize,
    /// Withdrawn on purpose (drained, or no healthy target).
    pub withdrawn: bool,
    /// Heartbeat interval, ms.
    pub interval_ms: u64,
    /// Intervals before a silent peer is dead.
    pub dead_after: u32,
    /// Every configured member.
    pub members: Vec<MemberStatus>,
    /// Heartbeat counters.
    pub counters: HeartbeatCounters,
    /// Recent view changes, oldest first.
    pub changes: Vec<Change>,
}

/// The membership state machine of one balancer. Owned by the packet thread.
#[derive(Debug, Clone)]
pub struct Node {
    me: u32,
    vip: SocketAddrV4,
    weights: BTreeMap<u32, u32>,
    timing: Timing,
    key: Key,
    state: State,
    listen_until: Duration,
    withdraw: bool,
    epoch: u64,
    seq: u64,
    peers: BTreeMap<u32, Peer>,
    view: BTreeSet<u32>,
    version: u64,
    next_send: Option<Duration>,
    counters: HeartbeatCounters,
    history: VecDeque<Change>,
}

impl Node {
    /// A node that starts listening at `now`; `wall_ms` (unix ms) becomes
    /// its epoch. `members` are the configured members (weights included).
    pub fn new(
        me: u32,
        vip: SocketAddrV4,
        members: &[Member],
        timing: Timing,
        key: Key,
        now: Duration,
        wall_ms: u64,
    ) -> Self {
        let mut counters = HeartbeatCounters::default();
        for r in Reject::ALL {
            counters.rejected.insert(r.name().to_string(), 0);
        }
        Node {
            me,
            vip,
            weights: members.iter().map(|m| (m.id, m.weight)).collect(),
            timing,
            key,
            state: State::Listening,
            listen_until: now + timing.dead_time(),
            withdraw: false,
            epoch: wall_ms,
            seq: 0,
            peers: BTreeMap::new(),
            view: BTreeSet::new(),
            version: 0,
            next_send: Some(now),
            counters,
            history: VecDeque::new(),
        }
    }

    /// Our announced state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Our epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Increases by one each time the view changes.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The live membership for the engine (ids of the view, configured weights).
    pub fn members(&self) -> Vec<Member> {
        self.view
            .iter()
            .map(|&id| Member {
                id,
                weight: self.weights.get(&id).copied().unwrap_or(0),
            })
            .collect()
    }
    /// The counters.
    pub fn counters(&self) -> &HeartbeatCounters {
        &self.counters
    }
    /// Recent view changes, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Change> {
        self.history.iter()
    }
    /// Every configured member with what we know of it.
    pub fn status(&self, now: Duration) -> Vec<MemberStatus> {
        self.weights
            .iter()
            .map(|(&id, &weight)| {
                let (state, age, epoch) = if id == self.me {
                    (Some(self.state), Some(0), Some(self.epoch))
                } else {
                    match self.peers.get(&id) {
                        Some(p) => (
                            Some(p.state),
                            Some(now.saturating_sub(p.heard).as_millis() as u64),
                            Some(p.epoch),
                        ),
                        None => (None, None, None),
                    }
                };
                MemberStatus {
                    id,
                    weight,
                    state,
                    age_ms: age,
                    epoch,
                    in_view: self.view.contains(&id),
                }
            })
            .collect()
    }

    /// The `/membership` document (`owned_buckets` from the engine).
    pub fn doc(&self, now: Duration, owned_buckets: usize) -> MembershipDoc {
        MembershipDoc {
            node_id: self.me,
            state: self.state,
            epoch: self.epoch,
            view: self.view.iter().copied().collect(),
            owned_buckets,
            withdrawn: self.withdraw,
            interval_ms: self.timing.interval.as_millis() as u64,
            dead_after: self.timing.dead_after,
            members: self.status(now),
            counters: self.counters.clone(),
            changes: self.history.iter().cloned().collect(),
        }
    }

    /// Whether we want to be out of ownership (no healthy target, or
    /// drained). Takes effect at the next [`Node::tick`].
    pub fn set_withdrawn(&mut self, withdraw: bool) {
        self.withdraw = withdraw;
    }
    /// Whether a withdrawal is requested.
    pub fn withdrawn(&self) -> bool {
        self.withdraw
    }

    /// SIGTERM: announce `leaving` and stop claiming now. Returns the
    /// datagram to send at once.
    pub fn leave(&mut self, now: Duration, wall_ms: u64) -> Vec<u8> {
        self.state = State::Leaving;
        self.recompute(wall_ms, Cause::SelfStopped, self.me);
        self.emit(now, wall_ms)
    }

    /// Handles a received datagram. A refusal is counted and changes nothing.
    pub fn receive(&mut self, now: Duration, wall_ms: u64, bytes: &[u8]) -> Result<(), Reject> {
        let r = self.accept(now, wall_ms, bytes);
        match r {
            Ok(()) => self.counters.accepted += 1,
            Err(e) => {
                *self
                    .counters
                    .rejected
                    .entry(e.name().to_string())
                    .or_insert(0) += 1
            }
        }
        r
    }

    fn accept(&mut self, now: Duration, wall_ms: u64, bytes: &[u8]) -> Result<(), Reject> {
        let hb = Heartbeat::parse(bytes, &self.key)?;
        if hb.vip != self.vip {
            return Err(Reject::Foreign);
        }
        if hb.node_id == self.me {
            return Err(Reject::OwnId);
        }
        if !self.weights.contains_key(&hb.node_id) {
            return Err(Reject::Foreign);
        }
        if hb.sent_ms.abs_diff(wall_ms) > MAX_AGE_MS {
            return Err(Reject::Replayed);
        }
        if let Some(p) = self.peers.get(&hb.node_id) {
            if (hb.epoch, hb.seq) <= (p.epoch, p.seq) {
                return Err(Reject::Replayed);
            }
        }
        let id = hb.node_id;
        let state = hb.state;
        self.peers.insert(
            id,
            Peer {
                epoch: hb.epoch,
                seq: hb.seq,
                heard: now,
                state,
                view: hb.view,
            },
        );
        let cause = if state.wants_buckets() {
            Cause::PeerJoined
        } else {
            Cause::PeerLeft
        };
        self.step(now, wall_ms, cause, id);
        Ok(())
    }

    /// Advances time: expires silent peers, moves our own state, and
    /// returns a datagram when one is due (every interval, and at once
    /// after our state changed).
    pub fn tick(&mut self, now: Duration, wall_ms: u64) -> Option<Vec<u8>> {
        let dead = self.timing.dead_time();
        let gone: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.heard) > dead)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.peers.remove(&id);
            self.step(now, wall_ms, Cause::PeerDead, id);
        }
        self.step(now, wall_ms, Cause::SelfActive, self.me);
        match self.next_send {
            Some(t) if now >= t => Some(self.emit(now, wall_ms)),
            _ => None,
        }
    }

    /// When [`Node::tick`] next has something to do (send, expire, listen end).
    pub fn next_deadline(&self) -> Duration {
        let dead = self.timing.dead_time();
        let mut t =
            self.next_send
                .unwrap_or(Duration::MAX)
                .min(if self.state == State::Listening {
                    self.listen_until
                } else {
                    Duration::MAX
                });
        for p in self.peers.values() {
            t = t.min(p.heard + dead + Duration::from_millis(1));
        }
        t
    }

    /// Our own transitions, then the view.
    fn step(&mut self, now: Duration, wall_ms: u64, cause: Cause, node: u32) {
        let before = self.state;
        self.state = match self.state {
            State::Leaving => State::Leaving,
            State::Listening if now < self.listen_until => State::Listening,
            _ if self.withdraw => State::Withdrawn,
            State::Listening | State::Withdrawn => State::Ready,
            State::Ready if self.acknowledged() => State::Active,
            s => s,
        };
        if self.state != before {
            // A state change is announced at once.
            self.next_send = Some(now);
        }
        let cause = match (before == self.state, self.state) {
            (true, _) => cause,
            (false, State::Active) => Cause::SelfActive,
            (false, _) => Cause::SelfStopped,
        };
        let node = if before == self.state { node } else { self.me };
        self.recompute(wall_ms, cause, node);
        // Ready may be acknowledged by the view just computed (no active peer).
        if self.state == State::Ready && self.acknowledged() {
            self.state = State::Active;
            self.next_send = Some(now);
            self.recompute(wall_ms, Cause::SelfActive, self.me);
        }
    }

    /// Every peer that claims or may start claiming (`listening`, `ready`,
    /// `active`) lists us in its view: the claiming ones have let go of our
    /// buckets, and one about to claim computes its share with us in it.
    fn acknowledged(&self) -> bool {
        self.peers
            .values()
            .filter(|p| matches!(p.state, State::Listening | State::Ready | State::Active))
            .all(|p| p.view.binary_search(&self.me).is_ok())
    }

    fn recompute(&mut self, wall_ms: u64, cause: Cause, node: u32) {
        let mut view: BTreeSet<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state.wants_buckets())
            .map(|(&id, _)| id)
            .collect();
        if self.state == State::Active {
            view.insert(self.me);
        }
        if view != self.view {
            self.view = view;
            self.version += 1;
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(Change {
                at_unix_ms: wall_ms,
                cause,
                node,
                view: self.view.iter().copied().collect(),
            });
        }
    }

    fn emit(&mut self, now: Duration, wall_ms: u64) -> Vec<u8> {
        self.seq += 1;
        self.next_send = Some(now + self.timing.interval);
        self.counters.sent += 1;
        let hb = Heartbeat {
            state: self.state,
            vip: self.vip,
            node_id: self.me,
            epoch: self.epoch,
            seq: self.seq,
            sent_ms: wall_ms,
            view: self.view.iter().copied().collect(),
        };
        let mut out = Vec::with_capacity(crate::heartbeat::MAX_LEN);
        hb.emit(&self.key, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::{Membership, Ownership, BUCKETS};
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);
    const WALL0: u64 = 1_800_000_000_000;

    fn key() -> Key {
        Key::new(b"membership-test-key").unwrap()
    }

    fn timing() -> Timing {
        Timing {
            interval: 100 * MS,
            dead_after: 3,
        }
    }

    fn vip() -> SocketAddrV4 {
        "198.18.1.100:80".parse().unwrap()
    }

    fn members(n: u32) -> Vec<Member> {
        (1..=n).map(|id| Member { id, weight: 1 }).collect()
    }

    /// A simulated cluster on a lossless LAN: node i runs when `up[i]`,
    /// `link[i][j]` says whether i's datagrams reach j.
    struct Sim {
        nodes: Vec<Option<Node>>,
        link: Vec<Vec<bool>>,
        now: Duration,
    }

    impl Sim {
        fn new(n: u32) -> Self {
            let nodes = (1..=n)
                .map(|id| Some(Self::node(id, n, Duration::ZERO)))
                .collect();
            Sim {
                nodes,
                link: vec![vec![true; n as usize]; n as usize],
                now: Duration::ZERO,
            }
        }
        fn node(id: u32, n: u32, now: Duration) -> Node {
            Node::new(
                id,
                vip(),
                &members(n),
                timing(),
                key(),
                now,
                WALL0 + now.as_millis() as u64,
            )
        }
        fn wall(&self) -> u64 {
            WALL0 + self.now.as_millis() as u64
        }
        fn deliver(&mut self, from: usize, d: &[u8]) {
            let wall = self.wall();
            for j in 0..self.nodes.len() {
                if j != from && self.link[from][j] {
                    if let Some(n) = self.nodes[j].as_mut() {
                        n.receive(self.now, wall, d).unwrap();
                    }
                }
            }
        }
        /// Runs until `until` in 1 ms steps, checking `check` after every
        /// step that changed a view (and after the first).
        fn run(&mut self, until: Duration, mut check: impl FnMut(&Sim)) {
            let mut seen: Option<Vec<Option<(u64, u64)>>> = None;
            while self.now < until {
                self.now += MS;
                for i in 0..self.nodes.len() {
                    let wall = self.wall();
                    let now = self.now;
                    let out = self.nodes[i].as_mut().and_then(|n| n.tick(now, wall));
                    if let Some(d) = out {
                        self.deliver(i, &d);
                    }
                }
                let versions: Vec<Option<(u64, u64)>> = self
                    .nodes
                    .iter()
                    .map(|n| n.as_ref().map(|n| (n.epoch, n.version)))
                    .collect();
                if seen.as_ref() != Some(&versions) {
                    check(self);
                    seen = Some(versions);
                }
            }
        }
        fn n(&self, i: usize) -> &Node {
            self.nodes[i].as_ref().unwrap()
        }
        fn views(&self) -> Vec<Vec<u32>> {
            self.nodes
                .iter()
                .flatten()
                .map(|n| n.members().iter().map(|m| m.id).collect())
                .collect()
        }
    }

    /// No bucket is claimed by two running nodes: each node claims the
    /// buckets its own view assigns to it.
    fn no_double_owner(s: &Sim) {
        let mut owner = vec![None; BUCKETS];
        for n in s.nodes.iter().flatten() {
            let o = Ownership::compute(&Membership::new(n.members()).unwrap());
            for (b, slot) in owner.iter_mut().enumerate() {
                if o.owner_of_bucket(b) == Some(n.me) {
                    assert!(
                        slot.is_none(),
                        "bucket {b} owned by {:?} and {} at {:?}",
                        slot,
                        n.me,
                        s.now
                    );
                    *slot = Some(n.me);
                }
            }
        }
    }

    #[test]
    fn cold_start_converges_without_double_owner() {
        let mut s = Sim::new(3);
        s.run(250 * MS, |s| {
            assert!(
                s.views().iter().all(|v| v.is_empty()),
                "nobody claims while listening"
            );
        });
        s.run(600 * MS, no_double_owner);
        assert_eq!(s.views(), vec![vec![1, 2, 3]; 3]);
        assert!((0..3).all(|i| s.n(i).state() == State::Active));
    }

    #[test]
    fn death_detected_within_dead_after_plus_one_interval() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        assert_eq!(s.views(), vec![vec![1, 2]; 2]);
        let killed_at = s.now;
        s.nodes[1] = None;
        let mut changed = None;
        s.run(2000 * MS, |s| {
            if changed.is_none() && s.n(0).members().len() == 1 {
                changed = Some(s.now);
            }
        });
        let dt = changed.unwrap() - killed_at;
        // Last heard at most one interval before the kill; dead after 3 more.
        assert!(dt <= 400 * MS && dt > 200 * MS, "{dt:?}");
        assert_eq!(s.views(), vec![vec![1]]);
        assert_eq!(s.n(0).history().last().unwrap().cause, Cause::PeerDead);
    }

    #[test]
    fn restart_rejoins_after_listening_and_peers_let_go_first() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        s.nodes[1] = None;
        s.run(1500 * MS, |_| {});
        s.nodes[1] = Some(Sim::node(2, 2, s.now));
        let start = s.now;
        s.run(start + 250 * MS, |s| {
            assert!(
                !s.n(1).members().iter().any(|m| m.id == 2),
                "a joiner claims nothing while listening"
            );
        });
        s.run(start + 1000 * MS, no_double_owner);
        assert_eq!(s.views(), vec![vec![1, 2]; 2]);
    }

    #[test]
    fn leave_is_taken_at_once() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        let (now, wall) = (s.now, s.wall());
        let d = s.nodes[1].as_mut().unwrap().leave(now, wall);
        assert_eq!(s.n(1).members(), vec![Member { id: 1, weight: 1 }]);
        s.deliver(1, &d);
        assert_eq!(s.n(0).members(), vec![Member { id: 1, weight: 1 }]);
        assert_eq!(s.n(0).history().last().unwrap().cause, Cause::PeerLeft);
        s.run(2000 * MS, no_double_owner);
        assert_eq!(s.n(1).state(), State::Leaving);
    }

    #[test]
    fn withdrawal_and_return() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        s.nodes[0].as_mut().unwrap().set_withdrawn(true);
        s.run(1050 * MS, no_double_owner);
        assert_eq!(s.views(), vec![vec![2]; 2]);
        s.nodes[0].as_mut().unwrap().set_withdrawn(false);
        s.run(1500 * MS, no_double_owner);
        assert_eq!(s.views(), vec![vec![1, 2]; 2]);
    }

    #[test]
    fn heartbeat_partition_gives_both_every_bucket_then_heals() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        s.link[0][1] = false;
        s.link[1][0] = false;
        s.run(1500 * MS, |_| {});
        assert_eq!(s.views(), vec![vec![1], vec![2]], "the documented limit");
        s.link[0][1] = true;
        s.link[1][0] = true;
        s.run(1700 * MS, |_| {});
        assert_eq!(s.views(), vec![vec![1, 2]; 2]);
    }

    #[test]
    fn refusals_are_counted_and_change_nothing() {
        let mut s = Sim::new(2);
        s.run(1000 * MS, |_| {});
        let (now, wall) = (s.now, s.wall());
        let before = s.n(0).members();
        let v = s.n(0).version();
        let mut other = Node::new(2, vip(), &members(2), timing(), key(), now, wall);
        let good = other.leave(now, wall);
        let n0 = s.nodes[0].as_mut().unwrap();
        // Forged: another key.
        let mut forger = Node::new(
            2,
            vip(),
            &members(2),
            timing(),
            Key::new(b"not the cluster key").unwrap(),
            now,
            wall,
        );
        assert_eq!(
            n0.receive(now, wall, &forger.leave(now, wall)),
            Err(Reject::Forged)
        );
        // Foreign: another VIP, or an id not configured.
        let mut foreign = Node::new(
            2,
            "198.18.1.101:80".parse().unwrap(),
            &members(2),
            timing(),
            key(),
            now,
            wall,
        );
        assert_eq!(
            n0.receive(now, wall, &foreign.leave(now, wall)),
            Err(Reject::Foreign)
        );
        let mut stranger = Node::new(9, vip(), &members(9), timing(), key(), now, wall);
        assert_eq!(
            n0.receive(now, wall, &stranger.leave(now, wall)),
            Err(Reject::Foreign)
        );
        // Own id.
        let mut me = Node::new(1, vip(), &members(2), timing(), key(), now, wall + 1);
        assert_eq!(
            n0.receive(now, wall, &me.leave(now, wall)),
            Err(Reject::OwnId)
        );
        // Stale: sent long ago (an old epoch too).
        let mut old = Node::new(2, vip(), &members(2), timing(), key(), now, WALL0 - 10_000);
        assert_eq!(
            n0.receive(now, wall, &old.leave(now, WALL0 - 9_000)),
            Err(Reject::Replayed)
        );
        // Malformed.
        assert_eq!(n0.receive(now, wall, &good[..10]), Err(Reject::Malformed));
        assert_eq!(n0.members(), before);
        assert_eq!(n0.version(), v);
        let c = n0.counters();
        for (k, n) in [
            ("forged", 1),
            ("foreign", 2),
            ("own_id", 1),
            ("replayed", 1),
            ("malformed", 1),
        ] {
            assert_eq!(c.rejected[k], n, "{k}");
        }
        // The genuine one is taken once; its replay is refused.
        assert_eq!(n0.receive(now, wall, &good), Ok(()));
        assert_eq!(n0.members(), vec![Member { id: 1, weight: 1 }]);
        assert_eq!(n0.receive(now, wall, &good), Err(Reject::Replayed));
    }

    #[test]
    fn next_deadline_covers_listen_send_and_expiry() {
        let mut n = Node::new(
            1,
            vip(),
            &members(2),
            timing(),
            key(),
            Duration::ZERO,
            WALL0,
        );
        assert_eq!(n.next_deadline(), Duration::ZERO);
        assert!(n.tick(Duration::ZERO, WALL0).is_some());
        assert_eq!(n.next_deadline(), 100 * MS);
        assert!(n.tick(50 * MS, WALL0 + 50).is_none());
        // Alone: after listening it is ready, then active (no peer to ask).
        n.tick(300 * MS, WALL0 + 300);
        assert_eq!(n.state(), State::Active);
        assert_eq!(n.members(), vec![Member { id: 1, weight: 1 }]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Kills, restarts, leaves and withdrawals at random times on a
        /// lossless LAN: no bucket ever has two owners, and in every
        /// steady state all running nodes agree.
        #[test]
        fn no_bucket_has_two_owners(events in proptest::collection::vec((0usize..3, 0u8..4, 50u64..700), 1..6)) {
            let mut s = Sim::new(3);
            s.run(1000 * MS, no_double_owner);
            for (who, what, after) in events {
                let (now, wall) = (s.now, s.wall());
                match (what, s.nodes[who].is_some()) {
                    (0, true) => s.nodes[who] = None,
                    (1, true) => {
                        let d = s.nodes[who].as_mut().unwrap().leave(now, wall);
                        s.deliver(who, &d);
                    }
                    (2, true) => {
                        let n = s.nodes[who].as_mut().unwrap();
                        let w = n.withdrawn();
                        n.set_withdrawn(!w);
                    }
                    (_, false) => s.nodes[who] = Some(Sim::node(who as u32 + 1, 3, now)),
                    _ => {}
                }
                let until = s.now + Duration::from_millis(after);
                s.run(until, no_double_owner);
            }
            let until = s.now + 1000 * MS;
            s.run(until, no_double_owner);
            let claiming: Vec<u32> = s.nodes.iter().flatten()
                .filter(|n| n.state() == State::Active).map(|n| n.me).collect();
            for v in s.nodes.iter().flatten().filter(|n| n.state() != State::Leaving).map(|n| n.members()) {
                let ids: Vec<u32> = v.iter().map(|m| m.id).collect();
                prop_assert_eq!(&ids, &claiming);
            }
        }

        /// The fuzzing generator's datagrams (signed with random fields,
        /// mutated, noise) keep the fuzzing invariants.
        #[test]
        fn fuzzed_heartbeats_keep_invariants(seed in any::<u64>()) {
            let mut rng = crate::fuzzing::Rng::new(seed);
            let mut node = crate::fuzzing::heartbeat_node(Duration::ZERO, WALL0).unwrap();
            let mut now = Duration::ZERO;
            for _ in 0..300 {
                now += Duration::from_millis(rng.below(50) as u64);
                let wall = WALL0 + now.as_millis() as u64;
                let d = crate::fuzzing::gen_heartbeat(&mut rng, wall).unwrap();
                let r = crate::fuzzing::run_heartbeat(&mut node, now, wall, &d);
                prop_assert!(r.is_ok(), "{:?}", r);
                node.tick(now, wall);
            }
        }

        /// Only the dead node's buckets move.
        #[test]
        fn only_dead_nodes_buckets_move(dead in 0usize..3) {
            let mut s = Sim::new(3);
            s.run(1000 * MS, |_| {});
            let survivor = (dead + 1) % 3;
            let before = Ownership::compute(&Membership::new(s.n(survivor).members()).unwrap());
            s.nodes[dead] = None;
            s.run(1500 * MS, |_| {});
            let after = Ownership::compute(&Membership::new(s.n(survivor).members()).unwrap());
            for b in 0..BUCKETS {
                if before.owner_of_bucket(b) != Some(dead as u32 + 1) {
                    prop_assert_eq!(before.owner_of_bucket(b), after.owner_of_bucket(b));
                }
            }
        }

        /// Replaying, corrupting or forging any captured heartbeat never
        /// changes a node's membership.
        #[test]
        fn replayed_or_forged_never_change_membership(flip in any::<prop::sample::Index>(), delay in 0u64..3000) {
            let mut s = Sim::new(2);
            let mut captured = Vec::new();
            s.run(800 * MS, |_| {});
            let (now, wall) = (s.now, s.wall());
            if let Some(d) = s.nodes[1].as_mut().unwrap().tick(now + 100 * MS, wall + 100) {
                captured.push(d);
            }
            let d = s.nodes[1].as_mut().unwrap().leave(now, wall);
            captured.push(d.clone());
            s.deliver(1, &d);
            s.now += Duration::from_millis(delay);
            let (now, wall) = (s.now, s.wall());
            let n0 = s.nodes[0].as_mut().unwrap();
            let (members, version) = (n0.members(), n0.version());
            for c in &captured {
                prop_assert!(n0.receive(now, wall, c).is_err());
                let mut bad = c.clone();
                let i = flip.index(bad.len());
                bad[i] ^= 0x40;
                prop_assert!(n0.receive(now, wall, &bad).is_err());
            }
            prop_assert_eq!(n0.members(), members);
            prop_assert_eq!(n0.version(), version);
        }
    }
}
