//! Fixed, seedless hash functions.
//!
//! Ownership must be computed identically by every balancer, so it cannot
//! use std's randomly keyed `RandomState`; these mixers (the SplitMix64
//! finalizer) are fixed and fast. They are not meant to resist
//! hash flooding: the connection table keeps std's keyed SipHash for that.

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

/// Hash of a client endpoint (address and port), the flow identity used for
/// packet-accept ownership and the consistent-hash scheduler.
pub fn flow_hash(ip: Ipv4Addr, port: u16) -> u64 {
    hash2(u64::from(u32::from(ip)), u64::from(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned: every balancer build must agree on these.
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_ne!(
            flow_hash(Ipv4Addr::new(10, 0, 0, 1), 1),
            flow_hash(Ipv4Addr::new(10, 0, 0, 1), 2)
        );
    }
}
