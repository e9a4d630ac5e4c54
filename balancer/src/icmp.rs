//! ICMP errors about balanced flows, so that path MTU discovery works
//! through the balancer (LVS `ip_vs_in_icmp` / `ip_vs_out_icmp`).
//!
//! An ICMP destination-unreachable (type 3, fragmentation-needed is code
//! 4) or time-exceeded (type 11) message quotes the IPv4 header and at
//! least 8 bytes of the TCP header of the packet that caused it. When that
//! packet belongs to a flow in the connection table, the error must reach
//! the host that sent it, with the addresses it knows:
//!
//! * **On front** (a router on the client side answers a reply we sent as
//!   `VIP:vport -> client`): for a NAT flow the real server sent it as
//!   `real:rport -> client`, so the outer destination becomes the real
//!   server and the quoted source becomes `real:rport` ([`nat_in`]); a
//!   local flow's ICMP goes to the local stack unchanged, a DR flow's to the
//!   real server with only the MACs changed.
//! * **On back** (the real server or a router on its side answers a packet
//!   we forwarded as `client -> real:rport`): the client sent it to
//!   `VIP:vport`, so the quoted destination becomes `VIP:vport` and the
//!   outer source the VIP, as LVS does ([`nat_out`]).
//!
//! Checksums: the outer and quoted IPv4 headers and the ICMP message are
//! recomputed in full (they are short); the quoted TCP checksum, when the
//! quote reaches it, is updated incrementally (RFC 1624) like a rewritten
//! segment's. The MTU field is left alone: NAT does not change sizes.

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::checksum::{internet_checksum, ipv4_header_checksum, update16, update32, IPPROTO_TCP};
use crate::counters::DropReason;
use crate::rewrite::MacPair;
use crate::wire::{EthernetFrame, Ipv4Packet, ETH_HEADER_LEN, IPV4_MIN_HEADER_LEN};

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// ICMP destination unreachable.
pub const DEST_UNREACH: u8 = 3;
/// Destination-unreachable code: fragmentation needed and DF set (RFC 1191).
pub const FRAG_NEEDED: u8 = 4;
/// ICMP time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// ICMP header length (type, code, checksum, 4 bytes of rest-of-header).
pub const ICMP_HEADER_LEN: usize = 8;
/// The least of the offending packet an ICMP error must quote: its IPv4
/// header (without options here) and 8 bytes of TCP (ports and sequence).
pub const MIN_QUOTE: usize = IPV4_MIN_HEADER_LEN + 8;

/// A validated ICMP error about a TCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// ICMP type ([`DEST_UNREACH`] or [`TIME_EXCEEDED`]).
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// Source of the quoted packet.
    pub quoted_src: SocketAddrV4,
    /// Destination of the quoted packet.
    pub quoted_dst: SocketAddrV4,
    /// Outer IPv4 total length: the frame to send is `ETH_HEADER_LEN + ip_total_len`.
    pub ip_total_len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Validates the ICMP message of an IPv4 packet (already checked by the
/// caller: header checksum, no fragment, no options, protocol ICMP).
/// `IcmpMalformed`: too short, bad ICMP checksum, or a quote that is not a
/// plain IPv4 header with a valid checksum; `IcmpUnsupported`: another ICMP type, or a quote of
/// something other than TCP.
pub fn parse(ip: &Ipv4Packet<&[u8]>) -> Result<IcmpError, DropReason> {
    let m = ip.payload();
    if m.len() < ICMP_HEADER_LEN + MIN_QUOTE {
        // Too short for an error message; an echo may be legitimately short.
        return Err(match m.first() {
            Some(&DEST_UNREACH | &TIME_EXCEEDED) | None => DropReason::IcmpMalformed,
            Some(_) => DropReason::IcmpUnsupported,
        });
    }
    if internet_checksum(m) != 0 {
        return Err(DropReason::IcmpMalformed);
    }
    let (kind, code) = (m[0], m[1]);
    if kind != DEST_UNREACH && kind != TIME_EXCEEDED {
        return Err(DropReason::IcmpUnsupported);
    }
    let q = &m[ICMP_HEADER_LEN..];
    if q[0] != 0x45 || internet_checksum(&q[..IPV4_MIN_HEADER_LEN]) != 0 {
        // Not IPv4, a quoted header with options (we never send those), or
        // one whose checksum is wrong (a router quotes what it received,
        // which had a valid header, so this one was damaged or forged).
        return Err(DropReason::IcmpMalformed);
    }
    if q[9] != IPPROTO_TCP {
        return Err(DropReason::IcmpUnsupported);
    }
    let t = &q[IPV4_MIN_HEADER_LEN..];
    Ok(IcmpError {
        kind,
        code,
        quoted_src: SocketAddrV4::new(addr(q, 12), be16(t, 0)),
        quoted_dst: SocketAddrV4::new(addr(q, 16), be16(t, 2)),
        ip_total_len: ip.total_len(),
    })
}

/// New values for the outer header and the quoted packet; `None` keeps one.
#[derive(Debug, Clone, Copy, Default)]
struct Change {
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    quoted_src: Option<SocketAddrV4>,
    quoted_dst: Option<SocketAddrV4>,
}

/// Applies `c` to a frame that [`parse`] accepted, with every checksum
/// made right, and sets the MACs. Returns the frame length to send.
fn rewrite(frame: &mut [u8], c: Change, macs: MacPair) -> Result<usize, DropReason> {
    let mut eth = EthernetFrame::new_checked(&mut *frame).map_err(DropReason::from)?;
    eth.set_src_mac(macs.src);
    eth.set_dst_mac(macs.dst);
    let mut ip = Ipv4Packet::new_checked(&mut frame[ETH_HEADER_LEN..]).map_err(DropReason::from)?;
    if let Some(a) = c.outer_src {
        ip.set_src_addr(a);
    }
    if let Some(a) = c.outer_dst {
        ip.set_dst_addr(a);
    }
    ip.fill_checksum();
    let total = ip.total_len();
    let hl = ip.header_len();
    let m = frame
        .get_mut(ETH_HEADER_LEN + hl..ETH_HEADER_LEN + total)
        .ok_or(DropReason::IcmpMalformed)?;
    if m.len() < ICMP_HEADER_LEN + MIN_QUOTE {
        return Err(DropReason::IcmpMalformed);
    }
    rewrite_quote(&mut m[ICMP_HEADER_LEN..], c);
    m[2..4].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(ETH_HEADER_LEN + total)
}

/// Rewrites the quoted IPv4 header and TCP ports (and the quoted TCP
/// checksum, incrementally, when the quote reaches it).
fn rewrite_quote(q: &mut [u8], c: Change) {
    let (qh, t) = q.split_at_mut(IPV4_MIN_HEADER_LEN);
    let mut tcp_sum = (t.len() >= 18).then(|| be16(t, 16));
    for (end, to) in [(0usize, c.quoted_src), (1, c.quoted_dst)] {
        let Some(to) = to else { continue };
        let (a_at, p_at) = (12 + 4 * end, 2 * end);
        let old_a = u32::from(addr(qh, a_at));
        let old_p = be16(t, p_at);
        qh[a_at..a_at + 4].copy_from_slice(&to.ip().octets());
        t[p_at..p_at + 2].copy_from_slice(&to.port().to_be_bytes());
        tcp_sum =
            tcp_sum.map(|s| update16(update32(s, old_a, u32::from(*to.ip())), old_p, to.port()));
    }
    let sum = ipv4_header_checksum(qh);
    qh[10..12].copy_from_slice(&sum.to_be_bytes());
    if let Some(s) = tcp_sum {
        t[16..18].copy_from_slice(&s.to_be_bytes());
    }
}

/// An error from the client side about our reply `VIP:vport -> client` of
/// a NAT flow: to the real server `real`, quoting `real:rport -> client`.
pub fn nat_in(frame: &mut [u8], real: SocketAddrV4, macs: MacPair) -> Result<usize, DropReason> {
    let c = Change {
        outer_dst: Some(*real.ip()),
        quoted_src: Some(real),
        ..Change::default()
    };
    rewrite(frame, c, macs)
}

/// An error from the server side about `client -> real:rport`: to the
/// client, from the VIP, quoting `client -> VIP:vport`.
pub fn nat_out(frame: &mut [u8], vip: SocketAddrV4, macs: MacPair) -> Result<usize, DropReason> {
    let c = Change {
        outer_src: Some(*vip.ip()),
        quoted_dst: Some(vip),
        ..Change::default()
    };
    rewrite(frame, c, macs)
}

/// Test and fuzzing helper: builds an Ethernet/IPv4/ICMP error from
/// `outer_src` to `outer_dst` quoting `quoted` (an IPv4 packet, cut to
/// `quote_len` bytes), with correct checksums.
pub fn build_error(
    macs: MacPair,
    (outer_src, outer_dst): (Ipv4Addr, Ipv4Addr),
    (kind, code, rest): (u8, u8, u32),
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let quote = &quoted[..quote_len.min(quoted.len())];
    let total = IPV4_MIN_HEADER_LEN + ICMP_HEADER_LEN + quote.len();
    let mut f = vec![0u8; ETH_HEADER_LEN + total];
    f[0..6].copy_from_slice(&macs.dst.0);
    f[6..12].copy_from_slice(&macs.src.0);
    f[12..14].copy_from_slice(&crate::wire::ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_HEADER_LEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = IPPROTO_ICMP;
    ip[12..16].copy_from_slice(&outer_src.octets());
    ip[16..20].copy_from_slice(&outer_dst.octets());
    let sum = ipv4_header_checksum(&ip[..IPV4_MIN_HEADER_LEN]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let m = &mut ip[IPV4_MIN_HEADER_LEN..];
    m[0] = kind;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[ICMP_HEADER_LEN..].copy_from_slice(quote);
    let sum = internet_checksum(m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Whether a frame is a well-formed ICMP error with every checksum right:
/// outer IPv4 header, ICMP message, quoted IPv4 header, and the quoted TCP
/// checksum when `quoted_tcp_complete` (the quote holds the whole segment).
pub fn checksums_ok(frame: &[u8], quoted_tcp_complete: bool) -> bool {
    let Ok(ip) = EthernetFrame::new_checked(frame)
        .and_then(|e| Ipv4Packet::new_checked(&frame[ETH_HEADER_LEN..]).map(|ip| (e, ip)))
        .map(|(_, ip)| ip)
    else {
        return false;
    };
    if !ip.verify_checksum() || parse(&ip).is_err() {
        return false;
    }
    let q = &ip.payload()[ICMP_HEADER_LEN..];
    if internet_checksum(&q[..IPV4_MIN_HEADER_LEN]) != 0 {
        return false;
    }
    !quoted_tcp_complete
        || crate::checksum::tcp_verifies(addr(q, 12), addr(q, 16), &q[IPV4_MIN_HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{tcp_frame, FrameSpec};
    use crate::wire::{MacAddr, TcpFlags};
    use proptest::prelude::*;

    const M: MacPair = MacPair {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };

    fn segment(src: SocketAddrV4, dst: SocketAddrV4, payload: usize) -> Vec<u8> {
        let f = tcp_frame(&FrameSpec {
            src_ip: *src.ip(),
            src_port: src.port(),
            dst_ip: *dst.ip(),
            dst_port: dst.port(),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            seq: 0x0102_0304,
            payload: vec![0xab; payload],
            ..Default::default()
        });
        f[ETH_HEADER_LEN..].to_vec()
    }

    #[test]
    fn parse_classifies() {
        let vip: SocketAddrV4 = "198.18.1.100:80".parse().unwrap();
        let cl: SocketAddrV4 = "198.18.2.1:40000".parse().unwrap();
        let q = segment(vip, cl, 0);
        let router = Ipv4Addr::new(198, 18, 1, 1);
        let f = build_error(
            M,
            (router, *vip.ip()),
            (DEST_UNREACH, FRAG_NEEDED, 1400),
            &q,
            28,
        );
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let e = parse(&ip).unwrap();
        assert_eq!(
            (e.kind, e.code, e.quoted_src, e.quoted_dst),
            (3, 4, vip, cl)
        );
        assert!(checksums_ok(&f, false));
        // Echo request: unsupported; a quote cut short or a bad checksum: malformed.
        let echo = build_error(M, (router, *vip.ip()), (8, 0, 0), &q, 28);
        let ip = Ipv4Packet::new_checked(&echo[14..]).unwrap();
        assert_eq!(parse(&ip), Err(DropReason::IcmpUnsupported));
        let short = build_error(M, (router, *vip.ip()), (3, 4, 0), &q, 27);
        let ip = Ipv4Packet::new_checked(&short[14..]).unwrap();
        assert_eq!(parse(&ip), Err(DropReason::IcmpMalformed));
        let mut bad = f.clone();
        bad[14 + 20 + 8 + 24] ^= 1;
        let ip = Ipv4Packet::new_checked(&bad[14..]).unwrap();
        assert_eq!(parse(&ip), Err(DropReason::IcmpMalformed));
        // A quoted header with a bad checksum, under a valid ICMP checksum.
        let mut q2 = q.clone();
        q2[8] ^= 0x10; // TTL changed, header checksum not updated
        let f2 = build_error(
            M,
            (router, *vip.ip()),
            (DEST_UNREACH, FRAG_NEEDED, 1400),
            &q2,
            28,
        );
        let ip = Ipv4Packet::new_checked(&f2[14..]).unwrap();
        assert_eq!(parse(&ip), Err(DropReason::IcmpMalformed));
    }

    fn endpoint() -> impl Strategy<Value = SocketAddrV4> {
        (any::<u32>(), any::<u16>()).prop_map(|(a, p)| SocketAddrV4::new(Ipv4Addr::from(a), p))
    }

    proptest! {
        /// Both rewrites leave every checksum right (the quoted TCP one
        /// too when the whole segment is quoted) and change exactly the
        /// addresses and ports they should.
        #[test]
        fn rewrites_keep_every_checksum(
            vip in endpoint(), cl in endpoint(), real in endpoint(), router in any::<u32>(),
            payload in 0usize..64, full in any::<bool>(), mtu in any::<u32>(),
        ) {
            let router = Ipv4Addr::from(router);
            // Front: quote of our reply VIP -> client, to the real server.
            let q = segment(vip, cl, payload);
            let len = if full { q.len() } else { MIN_QUOTE };
            let mut f = build_error(M, (router, *vip.ip()), (3, 4, mtu), &q, len);
            let n = nat_in(&mut f, real, M).unwrap();
            prop_assert_eq!(n, f.len());
            prop_assert!(checksums_ok(&f, full));
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            prop_assert_eq!((ip.src_addr(), ip.dst_addr()), (router, *real.ip()));
            let e = parse(&ip).unwrap();
            prop_assert_eq!((e.quoted_src, e.quoted_dst), (real, cl));
            prop_assert_eq!(u32::from_be_bytes([f[38], f[39], f[40], f[41]]), mtu);
            // Back: quote of client -> real, to the client from the VIP.
            let q = segment(cl, real, payload);
            let mut f = build_error(M, (router, *cl.ip()), (3, 3, 0), &q, len);
            nat_out(&mut f, vip, M).unwrap();
            prop_assert!(checksums_ok(&f, full));
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            prop_assert_eq!((ip.src_addr(), ip.dst_addr()), (*vip.ip(), *cl.ip()));
            let e = parse(&ip).unwrap();
            prop_assert_eq!((e.quoted_src, e.quoted_dst), (cl, vip));
        }

        /// Arbitrary bytes after a valid outer header never panic.
        #[test]
        fn parse_and_rewrite_never_panic(body in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut f = build_error(M, (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST), (3, 4, 0), &body, body.len());
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            if parse(&ip).is_ok() {
                let _ = nat_in(&mut f, "10.0.0.1:1".parse().unwrap(), M);
            }
        }
    }
}
