//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The full computation is used to verify IPv4 headers and in tests; the
//! incremental update is what the NAT rewrite uses on the fast path, so a
//! rewrite costs a few additions instead of a pass over the whole segment.
//! pnet has no incremental update, hence this module.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// IP protocol number of TCP, used in the TCP pseudo-header.
pub const IPPROTO_TCP: u8 = 6;

/// Adds `data` as big-endian 16-bit words to the running sum `acc`
/// (an odd trailing byte is padded with zero, as RFC 1071 says).
pub fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds a wide running sum into 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data` (the complement of its one's complement sum).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// Checksum for an IPv4 header, computed as if its checksum field (bytes
/// 10..12) were zero. `header` is the whole header, options included.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let acc = sum_words(header.get(..10).unwrap_or(header), 0);
    let acc = sum_words(header.get(12..).unwrap_or(&[]), acc);
    !fold(acc)
}

/// Sum of the TCP/UDP pseudo-header (RFC 793 section 3.1).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += u64::from(protocol);
    acc += u64::from(length);
    acc
}

/// Checksum of a TCP segment (header + payload) with its pseudo-header,
/// computed as if the checksum field (segment bytes 16..18) were zero.
/// Segments longer than 65535 bytes cannot occur in IPv4; the length is
/// truncated to 16 bits like the on-wire field.
pub fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let acc = pseudo_header_sum(src, dst, IPPROTO_TCP, segment.len() as u16);
    let acc = sum_words(segment.get(..16).unwrap_or(segment), acc);
    let acc = sum_words(segment.get(18..).unwrap_or(&[]), acc);
    !fold(acc)
}

/// Whether a TCP segment (header + payload, checksum field included)
/// verifies against its pseudo-header: the one's complement sum of all of
/// it is 0xffff (RFC 1071 section 1, verification). Either representation
/// of zero in the checksum field is accepted.
pub fn tcp_verifies(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> bool {
    let acc = pseudo_header_sum(src, dst, IPPROTO_TCP, segment.len() as u16);
    fold(sum_words(segment, acc)) == 0xffff
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// RFC 1624 update for a 32-bit field (an IPv4 address): two 16-bit words.
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!hc)
        + u64::from(!((old >> 16) as u16))
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // Header from the Wikipedia IPv4 checksum example; checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&h), 0xb861);
        // A correct header sums (checksum included) to 0xffff.
        assert_eq!(internet_checksum(&h), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum_words(&[0xab], 0), 0xab00);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    fn ipv4_header() -> impl Strategy<Value = Vec<u8>> {
        (0usize..=10).prop_flat_map(|opt_words| {
            proptest::collection::vec(any::<u8>(), 20 + 4 * opt_words).prop_map(move |mut h| {
                h[0] = 0x40 | (5 + opt_words as u8);
                h
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn ipv4_incremental_16_equals_full(mut h in ipv4_header(), word in 0usize..10, new in any::<u16>()) {
            prop_assume!(word != 5); // the checksum field itself
            let c = ipv4_header_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([h[2 * word], h[2 * word + 1]]);
            h[2 * word..2 * word + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update16(c, old, new), ipv4_header_checksum(&h));
        }

        #[test]
        fn ipv4_incremental_32_equals_full(mut h in ipv4_header(), dst in any::<bool>(), new in any::<u32>()) {
            let c = ipv4_header_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let at = if dst { 16 } else { 12 };
            let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            h[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let inc = update32(c, old, new);
            prop_assert_eq!(inc, ipv4_header_checksum(&h));
            // And the updated header verifies.
            h[10..12].copy_from_slice(&inc.to_be_bytes());
            prop_assert_eq!(internet_checksum(&h), 0);
        }

        #[test]
        fn tcp_incremental_equals_full(
            seg in proptest::collection::vec(any::<u8>(), 20..200),
            src in any::<u32>(), dst in any::<u32>(),
            new_addr in any::<u32>(), new_port in any::<u16>(),
            rewrite_src in any::<bool>(),
        ) {
            let mut seg = seg;
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let c = tcp_checksum(src, dst, &seg);
            seg[16..18].copy_from_slice(&c.to_be_bytes());
            // NAT-style rewrite: one address (pseudo-header) and one port.
            let port_at = if rewrite_src { 0 } else { 2 };
            let old_port = u16::from_be_bytes([seg[port_at], seg[port_at + 1]]);
            seg[port_at..port_at + 2].copy_from_slice(&new_port.to_be_bytes());
            let (nsrc, ndst, old_addr) = if rewrite_src {
                (Ipv4Addr::from(new_addr), dst, u32::from(src))
            } else {
                (src, Ipv4Addr::from(new_addr), u32::from(dst))
            };
            let inc = update16(update32(c, old_addr, new_addr), old_port, new_port);
            prop_assert_eq!(inc, tcp_checksum(nsrc, ndst, &seg));
        }
    }
}
