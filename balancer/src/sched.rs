//! Schedulers: which target a *new* flow goes to (LVS semantics).
//!
//! All schedulers implement [`Scheduler`]. The engine passes, for every new
//! flow, the candidate targets that are up (health) and resolvable, with
//! their weight and current load (active/inactive connections, which is how
//! lc and wlc are "told" about opened and closed connections: the
//! connection table keeps the counts, so a scheduler never drifts from it).
//!
//! Quiescing: a target of weight 0 is never picked for a new flow; flows
//! already in the connection table keep going to it (the engine does not
//! consult the scheduler for them). With bi-active off the engine never
//! offers [`Target::Local`].
//!
//! | name | LVS analogue | rule |
//! |------|--------------|------|
//! | `rr`  | ip_vs_rr  | next target in turn, skipping weight 0 |
//! | `wrr` | ip_vs_wrr | interleaved weighted round robin (gcd stepping) |
//! | `lc`  | ip_vs_lc  | least `active*256 + inactive` |
//! | `wlc` | ip_vs_wlc | least `(active*256 + inactive) / weight` |
//! | `sh`  | ip_vs_sh  | 256-bucket table over weights, hashed by client address |
//! | `mh`  | ip_vs_mh  | Maglev lookup table (65537 slots), hashed by client address and port |
//!
//! The sh and mh tables ([`HashTable`]) are built from a pure
//! [`TableRequest`], so the engine's scheduler never builds one on the
//! packet thread: the I/O layer builds it on a helper thread and the
//! packet thread swaps it in (see [`Hashing`]).

#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hash;

/// Where a flow is served: the balancer's own server (bi-active) or one of
/// the configured real servers (by index in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// The local server on this balancer (direct delivery via the TUN).
    Local,
    /// `real_servers[i]` of the configuration.
    Real(u16),
}

impl Target {
    /// Dense index: Local = 0, Real(i) = i + 1 (per-target arrays use it).
    pub fn index(self) -> usize {
        match self {
            Target::Local => 0,
            Target::Real(i) => usize::from(i) + 1,
        }
    }
    /// Inverse of [`Target::index`].
    pub fn from_index(i: usize) -> Option<Target> {
        match i {
            0 => Some(Target::Local),
            n => u16::try_from(n - 1).ok().map(Target::Real),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local => write!(f, "local"),
            Target::Real(i) => write!(f, "real[{i}]"),
        }
    }
}

/// A target offered to a scheduler for one new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Which target.
    pub target: Target,
    /// Scheduling weight; 0 means quiesced (never picked).
    pub weight: u32,
    /// Connections in ESTABLISHED.
    pub active: u32,
    /// Connections in any other state.
    pub inactive: u32,
}

impl Candidate {
    /// LVS connection overhead (ip_vs_dest_conn_overhead): active * 256 + inactive.
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }
}

/// The client side of a new flow, what hashing schedulers key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address.
    pub client_ip: Ipv4Addr,
    /// Client port.
    pub client_port: u16,
}

/// Picks a target for a new flow. Implementations never return a target
/// absent from `candidates` or of weight 0; `None` means no target.
pub trait Scheduler: Send {
    /// The LVS-style short name (`rr`, `wlc`, ...).
    fn name(&self) -> &'static str;
    /// Chooses the target of the new flow `flow` among `candidates`.
    fn pick(&mut self, flow: &FlowKey, candidates: &[Candidate]) -> Option<Target>;
    /// Told of the current candidates when they change (weights, health,
    /// resolved MACs), so a table-driven scheduler can ask for a rebuild
    /// before the next flow arrives.
    fn observe(&mut self, _candidates: &[Candidate]) {}
    /// The table to build off the packet thread, while one is wanted.
    fn take_request(&mut self) -> Option<TableRequest> {
        None
    }
    /// Installs a table built from [`Scheduler::take_request`]; false (and
    /// nothing changes) when it is not the one currently wanted.
    fn install(&mut self, _table: Arc<HashTable>) -> bool {
        false
    }
}

/// Scheduler names, as written in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Source hashing.
    Sh,
    /// Maglev hashing.
    Mh,
}

impl SchedulerKind {
    /// All names, for error messages.
    pub const NAMES: &'static str = "rr, wrr, lc, wlc, sh, mh";

    /// Builds a fresh scheduler of this kind; the hashing ones (sh, mh)
    /// key their flow hash with the cluster's `hash_seed` and rebuild their
    /// table in `pick` (`inline`) or only via [`Scheduler::install`].
    pub fn build(self, hash_seed: u64, inline: bool) -> Box<dyn Scheduler> {
        match self {
            SchedulerKind::Rr => Box::new(RoundRobin::default()),
            SchedulerKind::Wrr => Box::new(WeightedRoundRobin::default()),
            SchedulerKind::Lc => Box::new(LeastConn),
            SchedulerKind::Wlc => Box::new(WeightedLeastConn),
            SchedulerKind::Sh => Box::new(Hashing::new(TableKind::Sh, hash_seed, inline)),
            SchedulerKind::Mh => Box::new(Hashing::new(TableKind::Mh, hash_seed, inline)),
        }
    }
    /// The short name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
        }
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "rr" => SchedulerKind::Rr,
            "wrr" => SchedulerKind::Wrr,
            "lc" => SchedulerKind::Lc,
            "wlc" => SchedulerKind::Wlc,
            "sh" => SchedulerKind::Sh,
            "mh" => SchedulerKind::Mh,
            other => return Err(format!("expected one of {}, got {other:?}", Self::NAMES)),
        })
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The (target, weight) list a table-based scheduler was built for; a
/// change in it triggers a rebuild (LVS rebuilds on every dest update).
fn signature(c: &[Candidate]) -> Vec<(Target, u32)> {
    c.iter().map(|c| (c.target, c.weight)).collect()
}

fn same_signature(sig: &[(Target, u32)], c: &[Candidate]) -> bool {
    sig.len() == c.len()
        && sig
            .iter()
            .zip(c)
            .all(|(s, c)| s.0 == c.target && s.1 == c.weight)
}

/// Round robin (ip_vs_rr): the next target after the last one picked,
/// skipping weight 0.
#[derive(Debug, Default)]
pub struct RoundRobin {
    last: Option<Target>,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }
    fn pick(&mut self, _flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        let n = c.len();
        if n == 0 {
            return None;
        }
        let start = self
            .last
            .and_then(|t| c.iter().position(|x| x.target == t))
            .map_or(0, |p| p + 1);
        let found = (0..n).map(|k| &c[(start + k) % n]).find(|x| x.weight > 0)?;
        self.last = Some(found.target);
        Some(found.target)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Interleaved weighted round robin (ip_vs_wrr): the current weight `cw`
/// steps down by the gcd of the weights; a target is due while its weight
/// is at least `cw`. Weights 4,3,2 give A A B A B C A B C.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    sig: Vec<(Target, u32)>,
    i: Option<usize>,
    cw: u32,
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }
    fn pick(&mut self, _flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        if !same_signature(&self.sig, c) {
            self.sig = signature(c);
            self.i = None;
            self.cw = 0;
        }
        let n = c.len();
        let max = c.iter().map(|x| x.weight).max().unwrap_or(0);
        if max == 0 {
            return None;
        }
        let g = c.iter().map(|x| x.weight).fold(0, gcd);
        // The target of maximal weight is due at every cw, so a pick is
        // found within one pass plus one step: the bound is n + 1.
        for _ in 0..=(2 * n) {
            let i = self.i.map_or(0, |i| (i + 1) % n);
            self.i = Some(i);
            if i == 0 {
                self.cw = self.cw.saturating_sub(g);
                if self.cw == 0 {
                    self.cw = max;
                }
            }
            if c[i].weight >= self.cw && c[i].weight > 0 {
                return Some(c[i].target);
            }
        }
        None
    }
}

/// Least connection (ip_vs_lc): least `active * 256 + inactive` among
/// targets of non-zero weight; ties go to the first listed.
#[derive(Debug, Default)]
pub struct LeastConn;

impl Scheduler for LeastConn {
    fn name(&self) -> &'static str {
        "lc"
    }
    fn pick(&mut self, _flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        c.iter()
            .filter(|x| x.weight > 0)
            .min_by_key(|x| x.overhead())
            .map(|x| x.target)
    }
}

/// Weighted least connection (ip_vs_wlc): least overhead / weight,
/// compared by cross-multiplication as LVS does (`loh * w > doh * lw`).
#[derive(Debug, Default)]
pub struct WeightedLeastConn;

impl Scheduler for WeightedLeastConn {
    fn name(&self) -> &'static str {
        "wlc"
    }
    fn pick(&mut self, _flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        let mut least: Option<&Candidate> = None;
        for d in c.iter().filter(|x| x.weight > 0) {
            least = match least {
                None => Some(d),
                Some(l) => {
                    let lhs = u128::from(l.overhead()) * u128::from(d.weight);
                    let rhs = u128::from(d.overhead()) * u128::from(l.weight);
                    if lhs > rhs {
                        Some(d)
                    } else {
                        Some(l)
                    }
                }
            };
        }
        least.map(|l| l.target)
    }
}

/// Buckets of the source-hash table (LVS IP_VS_SH_TAB_SIZE).
pub const SH_TABLE_SIZE: usize = 256;
/// Slots of the Maglev lookup table (prime, as Maglev requires).
pub const MH_TABLE_SIZE: usize = 65537;

/// The two table-driven schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// Source hashing (ip_vs_sh): 256 buckets over weights, keyed by client address.
    Sh,
    /// Maglev hashing (ip_vs_mh): 65537 slots, keyed by client address and port.
    Mh,
}

/// What to build a lookup table for: a pure description, so that the
/// table can be built on any thread (the I/O layer's table builder) and
/// handed back to the packet thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRequest {
    /// Which table.
    pub kind: TableKind,
    /// The cluster's hash seed.
    pub seed: u64,
    /// The (target, weight) list it is for.
    pub sig: Vec<(Target, u32)>,
}

/// A built lookup table of [`TableKind`] for one (target, weight) list.
/// Immutable once built and shared by `Arc`: the packet thread swaps one
/// table for another in a single assignment between two decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTable {
    kind: TableKind,
    seed: u64,
    sig: Vec<(Target, u32)>,
    slots: Vec<Target>,
}

impl HashTable {
    /// Builds the table `r` describes (pure; up to a few ms for Maglev).
    pub fn build(r: &TableRequest) -> Self {
        let live: Vec<(Target, u32)> = r.sig.iter().copied().filter(|x| x.1 > 0).collect();
        let slots = match r.kind {
            TableKind::Sh => sh_slots(&live),
            TableKind::Mh => mh_slots(&live),
        };
        Self {
            kind: r.kind,
            seed: r.seed,
            sig: r.sig.clone(),
            slots,
        }
    }
    /// The (target, weight) list it was built for.
    pub fn sig(&self) -> &[(Target, u32)] {
        &self.sig
    }
    /// Which slot a flow hashes to (`None` for an empty table).
    fn slot(&self, flow: &FlowKey) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let i = match self.kind {
            TableKind::Sh => {
                // LVS ip_vs_sh_hashkey: Knuth multiplicative hash of the
                // address, mixed with the cluster seed here (seed 0: LVS's).
                let key = u32::from(flow.client_ip) ^ (hash::mix64(self.seed) as u32);
                (key.wrapping_mul(2_654_435_761) >> 24) as usize
            }
            TableKind::Mh => {
                let h = hash::flow_hash(self.seed, flow.client_ip, flow.client_port);
                (h % MH_TABLE_SIZE as u64) as usize
            }
        };
        Some(i % self.slots.len())
    }
    /// The table's target for a flow.
    pub fn lookup(&self, flow: &FlowKey) -> Option<Target> {
        self.slot(flow).and_then(|i| self.slots.get(i).copied())
    }
}

/// SH table: each target of non-zero weight holds `weight / gcd`
/// consecutive buckets in turn.
fn sh_slots(live: &[(Target, u32)]) -> Vec<Target> {
    let mut table = Vec::with_capacity(SH_TABLE_SIZE);
    if live.is_empty() {
        return table;
    }
    let g = live.iter().map(|x| x.1).fold(0, gcd).max(1);
    let mut k = 0;
    while table.len() < SH_TABLE_SIZE {
        let (t, w) = live[k % live.len()];
        let turns = (w / g) as usize;
        for _ in 0..turns.min(SH_TABLE_SIZE - table.len()) {
            table.push(t);
        }
        k += 1;
    }
    table
}

/// Maglev table (paper section 3.4): each target walks its own permutation
/// and claims the next free slot, `weight / gcd` (scaled to at most 64)
/// slots per round.
fn mh_slots(live: &[(Target, u32)]) -> Vec<Target> {
    if live.is_empty() {
        return Vec::new();
    }
    let m = MH_TABLE_SIZE as u64;
    let g = live.iter().map(|x| x.1).fold(0, gcd).max(1);
    let max_turns = live.iter().map(|x| x.1 / g).max().unwrap_or(1).max(1);
    let turns: Vec<u32> = live
        .iter()
        .map(|x| {
            let t = x.1 / g;
            if max_turns > 64 {
                ((u64::from(t) * 64 / u64::from(max_turns)) as u32).max(1)
            } else {
                t
            }
        })
        .collect();
    let mut perm: Vec<(u64, u64)> = live
        .iter()
        .map(|x| {
            let id = x.0.index() as u64;
            let offset = hash::hash2(id, 1) % m;
            let skip = hash::hash2(id, 2) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut slots: Vec<Option<Target>> = vec![None; MH_TABLE_SIZE];
    let mut filled = 0;
    'fill: loop {
        for (i, t) in live.iter().enumerate() {
            for _ in 0..turns[i] {
                let (ref mut next, skip) = perm[i];
                while slots[*next as usize].is_some() {
                    *next = (*next + skip) % m;
                }
                slots[*next as usize] = Some(t.0);
                filled += 1;
                if filled == MH_TABLE_SIZE {
                    break 'fill;
                }
            }
        }
    }
    slots.into_iter().flatten().collect()
}

/// Slots walked past a stale table's ineligible target before the fallback.
const STALE_WALK: usize = 64;

/// The table-driven schedulers `sh` and `mh`. In `inline` mode a change of
/// the candidates' (target, weight) list rebuilds the table in `pick`
/// (tools and tests). Otherwise (the engine) `pick` never builds: it keeps
/// deciding with the installed table and records a [`TableRequest`] that
/// the I/O layer builds on a helper thread and hands back through
/// [`Scheduler::install`]; until then a flow whose slot names a target no
/// longer eligible takes the next eligible slot (at most [`STALE_WALK`]),
/// else a hash over the eligible candidates, so decisions stay valid.
#[derive(Debug)]
pub struct Hashing {
    kind: TableKind,
    seed: u64,
    inline: bool,
    table: Arc<HashTable>,
    want: Option<TableRequest>,
    asked: bool,
}

impl Hashing {
    /// A scheduler of `kind` under hash `seed`, with an empty table.
    pub fn new(kind: TableKind, seed: u64, inline: bool) -> Self {
        Self {
            kind,
            seed,
            inline,
            table: Arc::new(HashTable::build(&TableRequest {
                kind,
                seed,
                sig: Vec::new(),
            })),
            want: None,
            asked: false,
        }
    }
    /// The installed table.
    pub fn table(&self) -> &Arc<HashTable> {
        &self.table
    }
    fn request(&self, c: &[Candidate]) -> TableRequest {
        TableRequest {
            kind: self.kind,
            seed: self.seed,
            sig: signature(c),
        }
    }
    fn fallback(&self, flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        let eligible = |t: Target| c.iter().any(|x| x.target == t && x.weight > 0);
        if let Some(i) = self.table.slot(flow) {
            let n = self.table.slots.len();
            for k in 1..=STALE_WALK.min(n) {
                let t = self.table.slots[(i + k) % n];
                if eligible(t) {
                    return Some(t);
                }
            }
        }
        let live: Vec<Target> = c
            .iter()
            .filter(|x| x.weight > 0)
            .map(|x| x.target)
            .collect();
        let h = hash::flow_hash(self.seed, flow.client_ip, flow.client_port);
        live.get((h % live.len().max(1) as u64) as usize).copied()
    }
}

impl Scheduler for Hashing {
    fn name(&self) -> &'static str {
        match self.kind {
            TableKind::Sh => "sh",
            TableKind::Mh => "mh",
        }
    }
    fn pick(&mut self, flow: &FlowKey, c: &[Candidate]) -> Option<Target> {
        self.observe(c);
        if self.inline {
            if let Some(r) = self.want.take() {
                self.table = Arc::new(HashTable::build(&r));
            }
        }
        match self.table.lookup(flow) {
            Some(t) if c.iter().any(|x| x.target == t && x.weight > 0) => Some(t),
            _ => self.fallback(flow, c),
        }
    }
    fn observe(&mut self, c: &[Candidate]) {
        let stale = !same_signature(&self.table.sig, c);
        let asked = self
            .want
            .as_ref()
            .is_some_and(|w| same_signature(&w.sig, c));
        if stale && !asked {
            self.want = Some(self.request(c));
            self.asked = false;
        } else if !stale {
            self.want = None;
        }
    }
    fn take_request(&mut self) -> Option<TableRequest> {
        if self.inline || self.asked {
            return None;
        }
        self.asked = self.want.is_some();
        self.want.clone()
    }
    fn install(&mut self, table: Arc<HashTable>) -> bool {
        let current = self.want.as_ref().is_some_and(|w| w.sig == table.sig);
        if table.kind != self.kind || table.seed != self.seed || !current {
            return false;
        }
        self.table = table;
        self.want = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Candidate {
                target: if i == 0 {
                    Target::Local
                } else {
                    Target::Real(i as u16 - 1)
                },
                weight: w,
                active: 0,
                inactive: 0,
            })
            .collect()
    }

    fn flow(i: u32) -> FlowKey {
        FlowKey {
            client_ip: Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i)),
            client_port: (i % 50000) as u16 + 1024,
        }
    }

    fn counts(s: &mut dyn Scheduler, c: &[Candidate], n: u32) -> HashMap<Target, u32> {
        let mut m = HashMap::new();
        for i in 0..n {
            if let Some(t) = s.pick(&flow(i), c) {
                *m.entry(t).or_insert(0) += 1;
            }
        }
        m
    }

    #[test]
    fn rr_cycles_and_skips_quiesced() {
        let c = cands(&[1, 0, 1, 1]);
        let mut s = RoundRobin::default();
        let seq: Vec<_> = (0..6).map(|i| s.pick(&flow(i), &c).unwrap()).collect();
        use Target::*;
        assert_eq!(seq, vec![Local, Real(1), Real(2), Local, Real(1), Real(2)]);
        assert_eq!(s.pick(&flow(0), &cands(&[0, 0])), None);
    }

    #[test]
    fn wrr_interleaves_like_lvs() {
        let c = cands(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::default();
        let seq: Vec<usize> = (0..9)
            .map(|i| s.pick(&flow(i), &c).unwrap().index())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn wrr_weights_and_quiescing() {
        let c = cands(&[5, 0, 1, 2]);
        let mut s = WeightedRoundRobin::default();
        let m = counts(&mut s, &c, 800);
        assert_eq!(m.get(&Target::Local), Some(&500));
        assert_eq!(m.get(&Target::Real(0)), None);
        assert_eq!(m.get(&Target::Real(1)), Some(&100));
        assert_eq!(m.get(&Target::Real(2)), Some(&200));
    }

    #[test]
    fn lc_and_wlc_follow_lvs_overhead() {
        let mut c = cands(&[1, 1, 3]);
        c[0].active = 2; // overhead 512
        c[1].active = 1;
        c[1].inactive = 300; // overhead 556
        c[2].active = 4; // overhead 1024, per weight 341
        assert_eq!(LeastConn.pick(&flow(0), &c), Some(Target::Local));
        assert_eq!(WeightedLeastConn.pick(&flow(0), &c), Some(Target::Real(1)));
        c[2].weight = 0;
        assert_eq!(WeightedLeastConn.pick(&flow(0), &c), Some(Target::Local));
        c[0].weight = 0;
        assert_eq!(LeastConn.pick(&flow(0), &c), Some(Target::Real(0)));
    }

    #[test]
    fn wlc_balances_by_weight_when_told_of_opens() {
        let mut c = cands(&[1, 2, 3]);
        let mut s = WeightedLeastConn;
        for i in 0..600 {
            let t = s.pick(&flow(i), &c).unwrap();
            c[t.index()].active += 1; // the connection table reports it open
        }
        let a: Vec<u32> = c.iter().map(|x| x.active).collect();
        assert_eq!(a, vec![100, 200, 300]);
    }

    #[test]
    fn sh_is_sticky_per_client_address() {
        let c = cands(&[1, 1, 1, 1]);
        let mut s = Hashing::new(TableKind::Sh, 0, true);
        for i in 0..200 {
            let mut f = flow(i);
            let a = s.pick(&f, &c);
            f.client_port = f.client_port.wrapping_add(17);
            assert_eq!(a, s.pick(&f, &c));
        }
        let m = counts(&mut s, &c, 4000);
        assert_eq!(m.len(), 4);
        assert!(m.values().all(|&n| n > 700), "{m:?}");
    }

    #[test]
    fn mh_weights_and_minimal_disruption() {
        let c = cands(&[1, 1, 2, 0]);
        let mut s = Hashing::new(TableKind::Mh, 0, true);
        let m = counts(&mut s, &c, 40000);
        assert_eq!(m.get(&Target::Real(2)), None);
        let (a, b, d) = (m[&Target::Local], m[&Target::Real(0)], m[&Target::Real(1)]);
        assert!((9000..11000).contains(&a), "{m:?}");
        assert!((9000..11000).contains(&b), "{m:?}");
        assert!((18000..22000).contains(&d), "{m:?}");
        // Quiesce Real(0): flows of other targets mostly stay.
        let before: Vec<_> = (0..5000).map(|i| s.pick(&flow(i), &c).unwrap()).collect();
        let c2 = cands(&[1, 0, 2, 0]);
        let mut moved_other = 0;
        for (i, b) in before.iter().enumerate() {
            let now = s.pick(&flow(i as u32), &c2).unwrap();
            assert_ne!(now, Target::Real(0));
            if *b != Target::Real(0) && now != *b {
                moved_other += 1;
            }
        }
        assert!(moved_other < 5000 / 20, "moved {moved_other}");
    }

    fn all_kinds() -> [SchedulerKind; 6] {
        use SchedulerKind::*;
        [Rr, Wrr, Lc, Wlc, Sh, Mh]
    }

    #[test]
    fn names_round_trip() {
        for k in all_kinds() {
            assert_eq!(k.as_str().parse::<SchedulerKind>().unwrap(), k);
            assert_eq!(k.build(0, true).name(), k.as_str());
        }
        assert!("fifo".parse::<SchedulerKind>().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// No scheduler ever picks a quiesced or absent target, and each
        /// finds one whenever some weight is positive.
        #[test]
        fn never_picks_quiesced(weights in proptest::collection::vec(0u32..5, 1..6),
                                loads in proptest::collection::vec((0u32..50, 0u32..50), 6),
                                flows in proptest::collection::vec(any::<u32>(), 1..30)) {
            let mut c = cands(&weights);
            for (x, l) in c.iter_mut().zip(&loads) {
                x.active = l.0;
                x.inactive = l.1;
            }
            let any_live = weights.iter().any(|&w| w > 0);
            for k in all_kinds() {
                let mut s = k.build(0, true);
                for &f in &flows {
                    let got = s.pick(&flow(f), &c);
                    prop_assert_eq!(got.is_some(), any_live, "{}", k);
                    if let Some(t) = got {
                        let cand = c.iter().find(|x| x.target == t);
                        prop_assert!(cand.is_some_and(|x| x.weight > 0), "{} picked {:?}", k, t);
                    }
                }
            }
        }
    }

    #[test]
    fn deferred_tables_are_asked_for_once_and_never_built_in_pick() {
        let a = cands(&[1, 1, 1]);
        let mut s = Hashing::new(TableKind::Mh, 7, false);
        s.observe(&a);
        let r = s.take_request().unwrap();
        assert_eq!(s.take_request(), None, "asked once");
        // Before any table: still a valid decision (fallback).
        let t = s.pick(&flow(1), &a).unwrap();
        assert!(a.iter().any(|c| c.target == t));
        assert!(s.install(Arc::new(HashTable::build(&r))));
        let table = Arc::clone(s.table());
        // Quiesce Real(0): pick does not build, the old table stays, and
        // no decision goes to Real(0).
        let b = cands(&[1, 0, 1]);
        for i in 0..2000 {
            let t = s.pick(&flow(i), &b).unwrap();
            assert_ne!(t, Target::Real(0));
            if table.lookup(&flow(i)) != Some(Target::Real(0)) {
                assert_eq!(
                    Some(t),
                    table.lookup(&flow(i)),
                    "unaffected flows keep their target"
                );
            }
        }
        assert!(Arc::ptr_eq(s.table(), &table));
        let rb = s.take_request().unwrap();
        assert_eq!(rb.sig, signature(&b));
        // A table for an outdated list is refused.
        assert!(!s.install(Arc::new(HashTable::build(&r))));
        assert!(s.install(Arc::new(HashTable::build(&rb))));
        assert_eq!(s.take_request(), None);
    }

    #[test]
    fn the_swap_is_atomic_with_respect_to_decisions() {
        // Decisions keep flowing on this thread while another thread builds
        // the new table; every decision is the old table's or the new one's
        // (never a half-built table's), and once one decision has used the
        // new table, every later one does: a single switch-over point.
        let a = cands(&[1, 1, 1, 1]);
        let b = cands(&[1, 1, 1, 3]);
        let mut s = Hashing::new(TableKind::Mh, 42, false);
        s.observe(&a);
        let ra = s.take_request().unwrap();
        let old = Arc::new(HashTable::build(&ra));
        assert!(s.install(Arc::clone(&old)));
        s.observe(&b);
        let rb = s.take_request().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let builder = std::thread::spawn(move || tx.send(Arc::new(HashTable::build(&rb))));
        let new = Arc::new(HashTable::build(&s.request(&b)));
        // Flows whose target differs between the tables tell them apart.
        let probes: Vec<FlowKey> = (0..200_000)
            .map(flow)
            .filter(|f| old.lookup(f) != new.lookup(f))
            .collect();
        assert!(probes.len() > 1000, "{}", probes.len());
        let (mut switched_at, mut i) = (None, 0usize);
        loop {
            if let Ok(t) = rx.try_recv() {
                assert!(s.install(t));
            }
            let f = &probes[i % probes.len()];
            let got = s.pick(f, &b);
            if got == new.lookup(f) {
                switched_at.get_or_insert(i);
            } else {
                assert_eq!(got, old.lookup(f), "decision {i} from neither table");
                assert!(
                    switched_at.is_none(),
                    "old table used at {i} after the switch at {switched_at:?}"
                );
            }
            i += 1;
            if switched_at.is_some_and(|k| i > k + 10_000) {
                break;
            }
        }
        builder.join().unwrap().unwrap();
        assert!(switched_at.is_some());
    }
}
