//! Packet-accept ownership: which live balancer answers a new flow.
//!
//! Every balancer sees every packet for the VIP, so exactly one must take
//! each new flow. The flow's client address and port hash (with the
//! cluster's `hash_seed`, see [`crate::hash`]) into a fixed space of [`BUCKETS`]
//! buckets, as CLUSTERIP and Maglev do; each bucket is assigned to one live
//! balancer by weighted rendezvous (highest random weight) hashing: member
//! `m` of weight `w` takes part as `w` virtual nodes `(m, 0..w)`, and the
//! bucket goes to the virtual node with the highest `hash(node, bucket)`
//! (ties broken by member id, then replica). Consequences:
//!
//! * the assignment is a pure function of the membership (order of
//!   listing does not matter), so every balancer computes the same one;
//! * when a balancer leaves, only its buckets move (the maximum over the
//!   remaining virtual nodes is unchanged); when one joins, buckets move
//!   only to it;
//! * a member's expected share is `w / sum(w)`.
//!
//! Ownership decides only *new* flows: the engine keeps serving flows in its
//! connection table whatever the current assignment says, so a joining
//! balancer breaks no established flow.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::hash;

/// Number of ownership buckets (a power of two, fixed for the cluster).
pub const BUCKETS: usize = 4096;
/// Largest member weight (bounds the assignment cost: buckets * sum of weights).
pub const MAX_MEMBER_WEIGHT: u32 = 255;
/// Most members of a cluster. With [`MAX_MEMBER_WEIGHT`] it bounds
/// [`Ownership::compute`] to `BUCKETS * 64 * 255` hashes (well under a
/// second), whatever a configuration or a membership update lists.
pub const MAX_MEMBERS: usize = 64;

/// A live balancer: its cluster-wide id and ownership weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Cluster-wide balancer id (configured, unique).
    pub id: u32,
    /// Ownership weight 0..=255; 0 owns nothing (drains new flows).
    pub weight: u32,
}

/// Why a membership is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Two members share an id.
    #[error("member id {0} appears twice")]
    DuplicateId(u32),
    /// More than [`MAX_MEMBERS`] members.
    #[error("{count} members, at most {max} supported", max = MAX_MEMBERS)]
    TooMany {
        /// How many were listed.
        count: usize,
    },
    /// A weight exceeds [`MAX_MEMBER_WEIGHT`].
    #[error("member {id}: weight {weight} exceeds {max}", max = MAX_MEMBER_WEIGHT)]
    WeightTooLarge {
        /// The member.
        id: u32,
        /// Its weight.
        weight: u32,
    },
}

/// The set of live balancers, normalised (sorted by id, ids unique).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Membership {
    members: Vec<Member>,
}

impl Membership {
    /// Builds a membership from members in any order.
    pub fn new(mut members: Vec<Member>) -> Result<Self, MembershipError> {
        if members.len() > MAX_MEMBERS {
            return Err(MembershipError::TooMany {
                count: members.len(),
            });
        }
        members.sort();
        for w in members.windows(2) {
            if w[0].id == w[1].id {
                return Err(MembershipError::DuplicateId(w[0].id));
            }
        }
        if let Some(m) = members.iter().find(|m| m.weight > MAX_MEMBER_WEIGHT) {
            return Err(MembershipError::WeightTooLarge {
                id: m.id,
                weight: m.weight,
            });
        }
        Ok(Self { members })
    }
    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
    /// Whether `id` is a member.
    pub fn contains(&self, id: u32) -> bool {
        self.members.iter().any(|m| m.id == id)
    }
    /// This membership without member `id` (a balancer declared dead).
    pub fn without(&self, id: u32) -> Self {
        Self {
            members: self
                .members
                .iter()
                .copied()
                .filter(|m| m.id != id)
                .collect(),
        }
    }
}

/// The bucket of a flow, a pure function of the cluster's hash seed and
/// the client endpoint.
pub fn bucket_of(seed: u64, client_ip: Ipv4Addr, client_port: u16) -> usize {
    (hash::flow_hash(seed, client_ip, client_port) % BUCKETS as u64) as usize
}

/// Bucket -> owner table for one membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    owners: Vec<Option<u32>>,
    membership: Membership,
}

impl Ownership {
    /// Computes the assignment (cost: BUCKETS * sum of weights hashes; done
    /// on membership change only).
    pub fn compute(membership: &Membership) -> Self {
        let owners = (0..BUCKETS as u64)
            .map(|b| {
                let mut best: Option<(u64, u32, u32)> = None;
                for m in &membership.members {
                    for r in 0..m.weight {
                        let node = (u64::from(m.id) << 32) | u64::from(r);
                        let score = (hash::hash2(node, b), m.id, r);
                        if best.is_none_or(|b| score > b) {
                            best = Some(score);
                        }
                    }
                }
                best.map(|(_, id, _)| id)
            })
            .collect();
        Self {
            owners,
            membership: membership.clone(),
        }
    }
    /// The membership this table was computed for.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// Owner of a bucket (`None` when no member has positive weight).
    pub fn owner_of_bucket(&self, bucket: usize) -> Option<u32> {
        self.owners.get(bucket).copied().flatten()
    }
    /// Owner of a new flow from `client_ip:client_port` under hash `seed`.
    pub fn owner(&self, seed: u64, client_ip: Ipv4Addr, client_port: u16) -> Option<u32> {
        self.owner_of_bucket(bucket_of(seed, client_ip, client_port))
    }
    /// Number of buckets `id` owns.
    pub fn bucket_count(&self, id: u32) -> usize {
        self.owners.iter().filter(|o| **o == Some(id)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: &[(u32, u32)]) -> Membership {
        Membership::new(
            v.iter()
                .map(|&(id, weight)| Member { id, weight })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn single_member_owns_all() {
        let o = Ownership::compute(&ms(&[(7, 1)]));
        assert_eq!(o.bucket_count(7), BUCKETS);
        assert_eq!(o.owner(0, Ipv4Addr::new(1, 2, 3, 4), 5), Some(7));
    }

    #[test]
    fn member_count_is_bounded() {
        let many = |n: u32| (0..n).map(|id| Member { id, weight: 255 }).collect();
        assert!(Membership::new(many(MAX_MEMBERS as u32)).is_ok());
        assert_eq!(
            Membership::new(many(MAX_MEMBERS as u32 + 1)),
            Err(MembershipError::TooMany {
                count: MAX_MEMBERS + 1
            })
        );
    }

    #[test]
    fn empty_or_zero_weight_owns_nothing() {
        let o = Ownership::compute(&ms(&[]));
        assert_eq!(o.owner_of_bucket(0), None);
        let o = Ownership::compute(&ms(&[(1, 0), (2, 1)]));
        assert_eq!(o.bucket_count(1), 0);
        assert_eq!(o.bucket_count(2), BUCKETS);
    }

    #[test]
    fn weights_shape_the_shares() {
        let o = Ownership::compute(&ms(&[(1, 1), (2, 1), (3, 2)]));
        let (a, b, c) = (o.bucket_count(1), o.bucket_count(2), o.bucket_count(3));
        assert_eq!(a + b + c, BUCKETS);
        assert!((850..1200).contains(&a), "{a} {b} {c}");
        assert!((850..1200).contains(&b), "{a} {b} {c}");
        assert!((1800..2300).contains(&c), "{a} {b} {c}");
    }

    /// Pinned values: balancers of different builds must agree, so any
    /// change here breaks mixed-version clusters and must be deliberate.
    #[test]
    fn assignment_is_pinned() {
        assert_eq!(bucket_of(0, Ipv4Addr::new(10, 0, 0, 1), 1234), 2919);
        let o = Ownership::compute(&ms(&[(1, 1), (2, 1), (3, 2)]));
        let first: Vec<u32> = (0..16).filter_map(|b| o.owner_of_bucket(b)).collect();
        assert_eq!(first, vec![2, 3, 3, 2, 3, 3, 3, 3, 2, 3, 3, 1, 3, 3, 2, 2]);
        assert_eq!(
            (o.bucket_count(1), o.bucket_count(2), o.bucket_count(3)),
            (1054, 1051, 1991)
        );
    }

    #[test]
    fn rejects_bad_membership() {
        let dup = Membership::new(vec![
            Member { id: 1, weight: 1 },
            Member { id: 1, weight: 2 },
        ]);
        assert_eq!(dup, Err(MembershipError::DuplicateId(1)));
        let big = Membership::new(vec![Member { id: 1, weight: 256 }]);
        assert!(matches!(big, Err(MembershipError::WeightTooLarge { .. })));
    }

    fn membership() -> impl Strategy<Value = Vec<(u32, u32)>> {
        proptest::collection::btree_map(0u32..20, 0u32..4, 1..5)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every bucket has exactly one owner, a member of positive weight
        /// (none only if no such member), whatever the listing order.
        #[test]
        fn partition_and_order_independent(m in membership()) {
            let o = Ownership::compute(&ms(&m));
            let mut rev = m.clone();
            rev.reverse();
            prop_assert_eq!(&o, &Ownership::compute(&ms(&rev)));
            let live: Vec<u32> = m.iter().filter(|x| x.1 > 0).map(|x| x.0).collect();
            let total: usize = live.iter().map(|&id| o.bucket_count(id)).sum();
            if live.is_empty() {
                prop_assert_eq!(total, 0);
            } else {
                prop_assert_eq!(total, BUCKETS);
                for b in 0..BUCKETS {
                    let owner = o.owner_of_bucket(b);
                    prop_assert!(owner.is_some_and(|id| live.contains(&id)));
                }
            }
        }

        /// Removing a member moves only that member's buckets; adding it
        /// back moves buckets only to it.
        #[test]
        fn removal_moves_only_its_buckets(m in membership(), pick in any::<prop::sample::Index>()) {
            let full = ms(&m);
            let gone = m[pick.index(m.len())].0;
            let before = Ownership::compute(&full);
            let after = Ownership::compute(&full.without(gone));
            for b in 0..BUCKETS {
                if before.owner_of_bucket(b) != Some(gone) {
                    prop_assert_eq!(before.owner_of_bucket(b), after.owner_of_bucket(b));
                } else {
                    prop_assert_ne!(after.owner_of_bucket(b), Some(gone));
                }
            }
        }
    }
}
