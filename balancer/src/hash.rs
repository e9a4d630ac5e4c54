//! Fixed hash functions, keyed by the cluster-wide seed where it matters.
//!
//! Ownership must be computed identically by every balancer, so it cannot
//! use std's per-process `RandomState`; these mixers (the SplitMix64
//! finalizer) are fixed and fast. The flow hash takes the cluster's
//! `hash_seed` (configuration, the same on every balancer), so an outsider
//! who does not know it cannot compute which client ports fall into one
//! ownership bucket or Maglev slot and aim a flood at one balancer or
//! server. Seed 0 gives the former seedless values. This is a keyed mix,
//! not a cryptographic PRF: it hides buckets from someone who cannot watch
//! them; the connection table keeps std's keyed SipHash against flooding.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// SplitMix64 finalizer: a bijective, well-avalanching 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of two 64-bit words (order matters).
pub fn hash2(a: u64, b: u64) -> u64 {
    mix64(mix64(a ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(b))
}

/// Hash of a client endpoint (address and port) under the cluster's
/// `seed`, the flow identity used for packet-accept ownership and the
/// consistent-hash scheduler. With seed 0 it is the former seedless hash.
pub fn flow_hash(seed: u64, ip: Ipv4Addr, port: u16) -> u64 {
    hash2(
        u64::from(u32::from(ip)) ^ seed,
        u64::from(port) ^ seed.rotate_left(32),
    )
}

/// A cluster's hash seed derived from its shared secret (SHA-256 of a
/// label and the key, first 8 bytes), for tools that configure every
/// balancer of a cluster from one key (the harness): the same on every
/// balancer, as secret as the key, and not the key itself.
pub fn seed_from_key(key: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::new()
        .chain_update(b"balancer cluster.hash_seed\0")
        .chain_update(key)
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: every balancer build must agree on these.
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_ne!(flow_hash(0, a, 1), flow_hash(0, a, 2));
        // Seed 0 is the former seedless hash.
        assert_eq!(flow_hash(0, a, 1), hash2(u64::from(u32::from(a)), 1));
    }

    #[test]
    fn seed_from_key_is_stable_and_key_dependent() {
        assert_eq!(seed_from_key(b"k1"), seed_from_key(b"k1"));
        assert_ne!(seed_from_key(b"k1"), seed_from_key(b"k2"));
        assert_ne!(seed_from_key(b""), 0);
    }

    #[test]
    fn the_seed_reshuffles_which_ports_share_a_bucket() {
        // Without the seed, an outsider cannot tell which of its ports
        // collide: the port sets of bucket 0 under two seeds barely overlap.
        let a = Ipv4Addr::new(203, 0, 113, 9);
        let bucket0 = |seed: u64| -> Vec<u16> {
            (0..=u16::MAX)
                .filter(|&p| flow_hash(seed, a, p).is_multiple_of(4096))
                .collect()
        };
        let (x, y) = (bucket0(0), bucket0(0x5eed_1234_abcd_0042));
        assert!(x.len() > 4 && y.len() > 4, "{} {}", x.len(), y.len());
        let common = x.iter().filter(|p| y.contains(p)).count();
        assert!(common * 4 < x.len(), "{common} of {}", x.len());
    }
}
