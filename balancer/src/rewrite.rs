//! In-place frame rewrites for the forwarding methods, with RFC 1624
//! incremental checksum updates.
//!
//! * NAT in: client -> VIP:vport becomes client -> real:rport, MACs for `back`.
//! * NAT out: real:rport -> client becomes VIP:vport -> client, MACs for `front`.
//! * DR: MACs only (the real server holds the VIP on `lo`).
//!
//! Only the addresses, ports, MACs and the two checksums change: TTL, TCP
//! options and timestamps are left as they are (a NAT balancer that touched
//! timestamps would trip PAWS on the servers). A packet whose checksum was
//! wrong before stays wrong after, so the receiving host still drops it.

#![forbid(unsafe_code)]

use std::net::SocketAddrV4;

use crate::checksum::{update16, update32};
use crate::wire::{
    EthernetFrame, Ipv4Packet, MacAddr, TcpSegment, WireError, ETHERTYPE_IPV4, ETH_HEADER_LEN,
};

/// The MAC header a rewritten frame leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPair {
    /// Our interface's MAC.
    pub src: MacAddr,
    /// The next hop's MAC.
    pub dst: MacAddr,
}

/// Which end of the TCP/IP 4-tuple a NAT rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

fn set_macs(frame: &mut [u8], macs: MacPair) -> Result<(), WireError> {
    let mut eth = EthernetFrame::new_checked(frame)?;
    eth.set_src_mac(macs.src);
    eth.set_dst_mac(macs.dst);
    Ok(())
}

fn nat(frame: &mut [u8], end: End, to: SocketAddrV4, macs: MacPair) -> Result<usize, WireError> {
    {
        let eth = EthernetFrame::new_checked(&*frame)?;
        if eth.ethertype() != ETHERTYPE_IPV4 {
            return Err(WireError::NotIpv4);
        }
    }
    let ip_buf = &mut frame[ETH_HEADER_LEN..];
    let mut ip = Ipv4Packet::new_checked(ip_buf)?;
    if ip.is_fragment() {
        return Err(WireError::Fragment);
    }
    if ip.protocol() != crate::checksum::IPPROTO_TCP {
        return Err(WireError::NotTcp);
    }
    let total = ip.total_len();
    let old_addr = match end {
        End::Src => ip.src_addr(),
        End::Dst => ip.dst_addr(),
    };
    let new_addr = *to.ip();
    // Validate the TCP header before touching anything.
    TcpSegment::new_checked(ip.payload_mut())?;

    let ip_csum = update32(ip.checksum(), u32::from(old_addr), u32::from(new_addr));
    match end {
        End::Src => ip.set_src_addr(new_addr),
        End::Dst => ip.set_dst_addr(new_addr),
    }
    ip.set_checksum(ip_csum);

    let mut tcp = TcpSegment::new_checked(ip.payload_mut())?;
    let old_port = match end {
        End::Src => tcp.src_port(),
        End::Dst => tcp.dst_port(),
    };
    let c = update32(tcp.checksum(), u32::from(old_addr), u32::from(new_addr));
    let c = update16(c, old_port, to.port());
    match end {
        End::Src => tcp.set_src_port(to.port()),
        End::Dst => tcp.set_dst_port(to.port()),
    }
    tcp.set_checksum(c);
    set_macs(frame, macs)?;
    Ok(ETH_HEADER_LEN + total)
}

/// NAT in: rewrites the destination to the real server `to` and the MACs to
/// `macs` (our `back` MAC -> real server). Returns the frame length to send
/// (link padding excluded). On error the frame is unchanged.
pub fn nat_in(frame: &mut [u8], to: SocketAddrV4, macs: MacPair) -> Result<usize, WireError> {
    nat(frame, End::Dst, to, macs)
}

/// NAT out: rewrites the source of a real server's reply to the VIP
/// `from` and the MACs to `macs` (our `front` MAC -> client-side next hop).
/// Returns the frame length to send. On error the frame is unchanged.
pub fn nat_out(frame: &mut [u8], from: SocketAddrV4, macs: MacPair) -> Result<usize, WireError> {
    nat(frame, End::Src, from, macs)
}

/// Direct routing: rewrites only the MACs (our `back` MAC -> real server's
/// MAC); IP and TCP are untouched. Returns the frame length to send.
pub fn dr(frame: &mut [u8], macs: MacPair) -> Result<usize, WireError> {
    let total = {
        let eth = EthernetFrame::new_checked(&*frame)?;
        if eth.ethertype() != ETHERTYPE_IPV4 {
            return Err(WireError::NotIpv4);
        }
        Ipv4Packet::new_checked(eth.payload())?.total_len()
    };
    set_macs(frame, macs)?;
    Ok(ETH_HEADER_LEN + total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{syn_options, tcp_frame, FrameSpec};
    use crate::wire::{parse_tcp_frame, TcpFlags};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Full verification of both checksums of a frame.
    fn verify(frame: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        ip.verify_checksum() && tcp.verify_checksum(ip.src_addr(), ip.dst_addr())
    }

    fn macs() -> MacPair {
        MacPair {
            src: MacAddr([0xaa; 6]),
            dst: MacAddr([0xbb; 6]),
        }
    }

    #[test]
    fn nat_in_rewrites_dst_and_keeps_options() {
        let spec = FrameSpec {
            tcp_options: syn_options(),
            pad: 4,
            ..Default::default()
        };
        let mut f = tcp_frame(&spec);
        let before = f.clone();
        let to = SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 12), 8080);
        let len = nat_in(&mut f, to, macs()).unwrap();
        assert_eq!(len, before.len() - 4);
        let info = parse_tcp_frame(&f[..len], false).unwrap();
        assert_eq!(info.dst_ip, *to.ip());
        assert_eq!(info.dst_port, 8080);
        assert_eq!(info.src_ip, spec.src_ip);
        assert_eq!(info.src_port, spec.src_port);
        assert_eq!(info.src_mac, MacAddr([0xaa; 6]));
        assert_eq!(info.dst_mac, MacAddr([0xbb; 6]));
        assert!(verify(&f));
        // TTL, TCP options and everything past the ports unchanged.
        assert_eq!(f[22], before[22]);
        assert_eq!(f[38..50], before[38..50]);
        assert_eq!(f[52..len], before[52..len]);
    }

    #[test]
    fn nat_out_rewrites_src() {
        let spec = FrameSpec {
            src_ip: Ipv4Addr::new(198, 18, 11, 12),
            src_port: 8080,
            dst_ip: Ipv4Addr::new(198, 18, 2, 1),
            dst_port: 40000,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            payload: b"hello".to_vec(),
            ..Default::default()
        };
        let mut f = tcp_frame(&spec);
        let vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 100), 80);
        let len = nat_out(&mut f, vip, macs()).unwrap();
        let info = parse_tcp_frame(&f[..len], false).unwrap();
        assert_eq!((info.src_ip, info.src_port), (*vip.ip(), 80));
        assert_eq!((info.dst_ip, info.dst_port), (spec.dst_ip, 40000));
        assert!(verify(&f));
    }

    #[test]
    fn dr_only_touches_macs() {
        let mut f = tcp_frame(&FrameSpec {
            pad: 10,
            ..Default::default()
        });
        let before = f.clone();
        let len = dr(&mut f, macs()).unwrap();
        assert_eq!(len, before.len() - 10);
        assert_eq!(f[12..], before[12..]);
        assert_eq!(f[0..6], [0xbb; 6]);
        assert_eq!(f[6..12], [0xaa; 6]);
    }

    #[test]
    fn errors_leave_frame_unchanged() {
        let mut f = tcp_frame(&FrameSpec::default());
        f[23] = 17; // UDP
        let before = f.clone();
        let to = SocketAddrV4::new(Ipv4Addr::new(1, 1, 1, 1), 1);
        assert_eq!(nat_in(&mut f, to, macs()), Err(WireError::NotTcp));
        assert_eq!(f, before);
        assert_eq!(nat_in(&mut f[..20], to, macs()), Err(WireError::Truncated));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any valid frame, any rewrite: the result re-parses, carries the
        /// new endpoint and both checksums verify by full computation.
        #[test]
        fn rewrites_verify(
            src in any::<u32>(), dst in any::<u32>(), sp in any::<u16>(), dp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            opts in proptest::collection::vec(any::<u8>(), 0..40),
            pad in 0usize..20,
            new_ip in any::<u32>(), new_port in any::<u16>(), inbound in any::<bool>(),
        ) {
            let spec = FrameSpec {
                src_ip: Ipv4Addr::from(src), dst_ip: Ipv4Addr::from(dst),
                src_port: sp, dst_port: dp, tcp_options: opts, payload, pad,
                ..Default::default()
            };
            let mut f = tcp_frame(&spec);
            let ep = SocketAddrV4::new(Ipv4Addr::from(new_ip), new_port);
            let len = if inbound { nat_in(&mut f, ep, macs()) } else { nat_out(&mut f, ep, macs()) }.unwrap();
            let info = parse_tcp_frame(&f[..len], false).unwrap();
            if inbound {
                prop_assert_eq!((info.dst_ip, info.dst_port), (*ep.ip(), new_port));
                prop_assert_eq!((info.src_ip, info.src_port), (spec.src_ip, sp));
            } else {
                prop_assert_eq!((info.src_ip, info.src_port), (*ep.ip(), new_port));
                prop_assert_eq!((info.dst_ip, info.dst_port), (spec.dst_ip, dp));
            }
            prop_assert!(verify(&f));
        }

        /// Rewrites never panic on arbitrary bytes.
        #[test]
        fn rewrites_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let ep = SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5);
            let _ = nat_in(&mut bytes, ep, macs());
            let _ = nat_out(&mut bytes, ep, macs());
            let _ = dr(&mut bytes, macs());
        }
    }
}
