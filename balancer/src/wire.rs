//! Borrowed views over Ethernet II, IPv4 and TCP headers in a byte buffer.
//!
//! smoltcp style: `new_checked` validates every length a later accessor
//! relies on, so accessors never panic and no input can crash the parser.
//! Views are generic over `T: AsRef<[u8]>` (read) and `T: AsMut<[u8]>`
//! (setters), so one type serves `&[u8]` and `&mut [u8]`.
//!
//! Lengths: the IPv4 payload is sliced by the IPv4 *total length*, never by
//! the frame length, because short Ethernet frames are padded to 60 bytes.
//!
//! Errors separate *truncated* (the buffer ends before what a header
//! declares, e.g. a capture cut short) from *malformed* (headers contradict
//! themselves or RFC 791/793, e.g. IHL < 5, total length < header length).
//!
//! IPv4 options (IHL > 5) are parsed correctly (TCP starts at IHL * 4), and
//! [`parse_tcp_frame`] reports them as [`WireError::IpOptions`] unless the
//! caller allows them: the engine drops them (see `engine` for why).

#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;

use crate::checksum;

/// Why a frame could not be used; each maps onto a counted drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the length some header declares.
    #[error("truncated: the buffer ends before the length a header declares")]
    Truncated,
    /// Header fields are inconsistent (bad version, IHL, lengths, data offset).
    #[error("malformed header")]
    Malformed,
    /// Ethertype is not IPv4 (ARP, IPv6, VLAN-tagged, ...).
    #[error("not an IPv4 frame")]
    NotIpv4,
    /// IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// A fragment (MF set or non-zero offset): the balancer does not reassemble.
    #[error("IPv4 fragment")]
    Fragment,
    /// IPv4 header carries options (IHL > 5) and the caller does not accept them.
    #[error("IPv4 options present")]
    IpOptions,
    /// IPv4 protocol is not TCP.
    #[error("not TCP")]
    NotTcp,
}

/// Ethernet II header length.
pub const ETH_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// TCP header length without options.
pub const TCP_MIN_HEADER_LEN: usize = 20;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a textual MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a MAC address like 02:00:00:00:00:01, got {0:?}")]
pub struct MacParseError(pub String);

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            // from_str_radix alone would take "+f" as 0x0f.
            if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacParseError(s.to_string()));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_string()))?;
            n += 1;
        }
        if n != 6 {
            return Err(MacParseError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

/// An Ethernet II frame view (no 802.1Q parsing: tagged frames are `NotIpv4`).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf` after checking it holds a whole Ethernet header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < ETH_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// Destination MAC.
    pub fn dst_mac(&self) -> MacAddr {
        mac_at(self.buf.as_ref(), 0)
    }
    /// Source MAC.
    pub fn src_mac(&self) -> MacAddr {
        mac_at(self.buf.as_ref(), 6)
    }
    /// Ethertype (0x0800 for IPv4).
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }
    /// Everything after the 14-byte header (may include link padding).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[ETH_HEADER_LEN..]
    }
    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_mac(&mut self, mac: MacAddr) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac.0);
    }
    /// Sets the source MAC.
    pub fn set_src_mac(&mut self, mac: MacAddr) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac.0);
    }
    /// Sets the ethertype.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buf.as_mut()[12..14].copy_from_slice(&t.to_be_bytes());
    }
    /// Mutable payload after the Ethernet header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[ETH_HEADER_LEN..]
    }
}

/// An IPv4 packet view; the buffer may be longer than the total length
/// (link padding), never shorter.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buf` after checking version, IHL and total length against
    /// each other and against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < IPV4_MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let hl = usize::from(b[0] & 0x0f) * 4;
        if hl < IPV4_MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(be16(b, 2));
        if total < hl {
            return Err(WireError::Malformed);
        }
        if hl > b.len() || total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// IP version (always 4 after `new_checked`).
    pub fn version(&self) -> u8 {
        self.buf.as_ref()[0] >> 4
    }
    /// Header length in bytes (IHL * 4), 20..=60.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }
    /// Whether the header carries options.
    pub fn has_options(&self) -> bool {
        self.header_len() > IPV4_MIN_HEADER_LEN
    }
    /// DSCP/ECN byte.
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    /// Total length (header + payload) in bytes.
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 2))
    }
    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.buf.as_ref()[6] & 0x40 != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf.as_ref(), 6) & 0x1fff
    }
    /// True for any fragment (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }
    /// Protocol number (6 = TCP).
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }
    /// Header checksum as on the wire.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buf.as_ref(), 12))
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.buf.as_ref(), 16))
    }
    /// The whole header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len()]
    }
    /// The options bytes (empty when IHL = 5).
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[IPV4_MIN_HEADER_LEN..self.header_len()]
    }
    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::internet_checksum(self.header()) == 0
    }
    /// The payload, sliced by the total length (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the source address (checksum left alone: see `fill_checksum`).
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[12..16].copy_from_slice(&a.octets());
    }
    /// Sets the destination address (checksum left alone).
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[16..20].copy_from_slice(&a.octets());
    }
    /// Sets the TTL (checksum left alone).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buf.as_mut()[8] = ttl;
    }
    /// Writes the header checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        self.buf.as_mut()[10..12].copy_from_slice(&c.to_be_bytes());
    }
    /// Recomputes and writes the header checksum in full.
    pub fn fill_checksum(&mut self) {
        let c = checksum::ipv4_header_checksum(self.header());
        self.set_checksum(c);
    }
    /// Mutable payload, sliced by the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len());
        &mut self.buf.as_mut()[hl..tl]
    }
}

/// TCP flag bits (low 8 bits of the flags field).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// FIN set.
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// A connection-opening SYN: SYN without ACK and RST.
    pub fn is_initial_syn(self) -> bool {
        self.syn() && !self.ack() && !self.rst()
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::ACK, '.'),
            (Self::URG, 'U'),
        ];
        for (bit, c) in names {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A TCP segment view over the IPv4 payload (already cut to total length).
#[derive(Debug, Clone)]
pub struct TcpSegment<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Wraps `buf` after checking the fixed header and the data offset.
    /// `buf` must be exactly the IPv4 payload, so a data offset past its end
    /// is malformed (the IP total length disagrees), and a segment shorter
    /// than 20 bytes is malformed too.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < TCP_MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let hl = usize::from(b[12] >> 4) * 4;
        if hl < TCP_MIN_HEADER_LEN || hl > b.len() {
            return Err(WireError::Malformed);
        }
        Ok(Self { buf })
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }
    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }
    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[12] >> 4) * 4
    }
    /// Flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buf.as_ref()[13])
    }
    /// Receive window.
    pub fn window(&self) -> u16 {
        be16(self.buf.as_ref(), 14)
    }
    /// Checksum as on the wire.
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }
    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        be16(self.buf.as_ref(), 18)
    }
    /// Option bytes (MSS, timestamps, ...), untouched by the balancer.
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[TCP_MIN_HEADER_LEN..self.header_len()]
    }
    /// Payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
    /// Whether the checksum verifies for the given pseudo-header addresses.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::tcp_verifies(src, dst, self.buf.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    /// Sets the source port (checksum left alone).
    pub fn set_src_port(&mut self, p: u16) {
        self.buf.as_mut()[0..2].copy_from_slice(&p.to_be_bytes());
    }
    /// Sets the destination port (checksum left alone).
    pub fn set_dst_port(&mut self, p: u16) {
        self.buf.as_mut()[2..4].copy_from_slice(&p.to_be_bytes());
    }
    /// Sets the flags byte (checksum left alone).
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buf.as_mut()[13] = f.0;
    }
    /// Writes the checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        self.buf.as_mut()[16..18].copy_from_slice(&c.to_be_bytes());
    }
    /// Recomputes and writes the checksum in full.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = checksum::tcp_checksum(src, dst, self.buf.as_ref());
        self.set_checksum(c);
    }
}

/// What the engine needs from a validated Ethernet/IPv4/TCP frame, with the
/// offsets a rewrite uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFrameInfo {
    /// Source MAC (the previous hop).
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// TCP flags.
    pub flags: TcpFlags,
    /// TCP sequence number (a SYN's is the client's ISN).
    pub seq: u32,
    /// IPv4 header length (20 unless options were allowed).
    pub ip_header_len: usize,
    /// IPv4 total length: the frame to send is `ETH_HEADER_LEN + ip_total_len`.
    pub ip_total_len: usize,
}

impl TcpFrameInfo {
    /// Frame length without link padding.
    pub fn frame_len(&self) -> usize {
        ETH_HEADER_LEN + self.ip_total_len
    }
    /// Offset of the TCP header in the frame.
    pub fn tcp_offset(&self) -> usize {
        ETH_HEADER_LEN + self.ip_header_len
    }
}

/// Whether the TCP checksum of a frame that [`tcp_frame_info`] accepted
/// verifies (the segment is sliced by the IPv4 total length, so link
/// padding is not summed). The IPv4 header checksum is checked by the
/// parser itself: no NIC offloads it, whereas transmit checksum offload
/// leaves TCP checksums partial, hence this separate, switchable check.
pub fn tcp_checksum_ok(frame: &[u8], info: &TcpFrameInfo) -> bool {
    frame
        .get(info.tcp_offset()..info.frame_len())
        .is_some_and(|seg| checksum::tcp_verifies(info.src_ip, info.dst_ip, seg))
}

/// Validates a frame as unfragmented Ethernet/IPv4/TCP (checking the IPv4
/// header checksum, not the TCP one) and extracts what the engine needs.
/// Check order, which decides the drop reason of a frame with several
/// faults: Ethernet length, ethertype, IPv4 structure, header checksum,
/// fragment, options, protocol, TCP structure.
pub fn parse_tcp_frame(frame: &[u8], allow_ip_options: bool) -> Result<TcpFrameInfo, WireError> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Err(WireError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    tcp_frame_info(&eth, &ip, allow_ip_options)
}

/// The IPv4 checks every protocol gets after the structure: header
/// checksum, fragment, options (in that order).
pub fn check_ipv4(ip: &Ipv4Packet<&[u8]>, allow_ip_options: bool) -> Result<(), WireError> {
    if !ip.verify_checksum() {
        return Err(WireError::BadChecksum);
    }
    if ip.is_fragment() {
        return Err(WireError::Fragment);
    }
    if ip.has_options() && !allow_ip_options {
        return Err(WireError::IpOptions);
    }
    Ok(())
}

/// The checks of [`parse_tcp_frame`] after the IPv4 structure (header
/// checksum, fragment, options, protocol, TCP structure), for a caller that
/// already holds the Ethernet and IPv4 views and must not parse them again.
pub fn tcp_frame_info(
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv4Packet<&[u8]>,
    allow_ip_options: bool,
) -> Result<TcpFrameInfo, WireError> {
    check_ipv4(ip, allow_ip_options)?;
    if ip.protocol() != checksum::IPPROTO_TCP {
        return Err(WireError::NotTcp);
    }
    let tcp = TcpSegment::new_checked(ip.payload())?;
    Ok(TcpFrameInfo {
        src_mac: eth.src_mac(),
        dst_mac: eth.dst_mac(),
        src_ip: ip.src_addr(),
        dst_ip: ip.dst_addr(),
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        flags: tcp.flags(),
        seq: tcp.seq(),
        ip_header_len: ip.header_len(),
        ip_total_len: ip.total_len(),
    })
}

/// Test and example helper: builds a valid Ethernet/IPv4/TCP frame with
/// correct checksums, optional TCP options and payload, and `pad` bytes of
/// trailing link padding (which the parsers must ignore).
pub mod build {
    use super::*;

    /// Parameters of a frame to build.
    #[derive(Debug, Clone)]
    pub struct FrameSpec {
        /// Source MAC.
        pub src_mac: MacAddr,
        /// Destination MAC.
        pub dst_mac: MacAddr,
        /// IPv4 source.
        pub src_ip: Ipv4Addr,
        /// IPv4 destination.
        pub dst_ip: Ipv4Addr,
        /// TCP source port.
        pub src_port: u16,
        /// TCP destination port.
        pub dst_port: u16,
        /// TCP flags.
        pub flags: u8,
        /// Sequence number.
        pub seq: u32,
        /// TCP options (padded to a multiple of 4 with zeros).
        pub tcp_options: Vec<u8>,
        /// TCP payload.
        pub payload: Vec<u8>,
        /// Trailing bytes after the IPv4 packet (link padding).
        pub pad: usize,
        /// TTL.
        pub ttl: u8,
    }

    impl Default for FrameSpec {
        fn default() -> Self {
            Self {
                src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                src_ip: Ipv4Addr::new(198, 18, 2, 1),
                dst_ip: Ipv4Addr::new(198, 18, 1, 100),
                src_port: 40000,
                dst_port: 80,
                flags: TcpFlags::SYN,
                seq: 1,
                tcp_options: Vec::new(),
                payload: Vec::new(),
                pad: 0,
                ttl: 64,
            }
        }
    }

    /// Builds the frame described by `spec` with correct checksums.
    pub fn tcp_frame(spec: &FrameSpec) -> Vec<u8> {
        let mut opts = spec.tcp_options.clone();
        opts.truncate(40);
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let tcp_len = TCP_MIN_HEADER_LEN + opts.len() + spec.payload.len();
        let total = IPV4_MIN_HEADER_LEN + tcp_len;
        let mut f = vec![0u8; ETH_HEADER_LEN + total + spec.pad];
        f[0..6].copy_from_slice(&spec.dst_mac.0);
        f[6..12].copy_from_slice(&spec.src_mac.0);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut f[ETH_HEADER_LEN..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = spec.ttl;
        ip[9] = checksum::IPPROTO_TCP;
        ip[12..16].copy_from_slice(&spec.src_ip.octets());
        ip[16..20].copy_from_slice(&spec.dst_ip.octets());
        let c = checksum::ipv4_header_checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut ip[IPV4_MIN_HEADER_LEN..total];
        t[0..2].copy_from_slice(&spec.src_port.to_be_bytes());
        t[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
        t[4..8].copy_from_slice(&spec.seq.to_be_bytes());
        t[12] = (((TCP_MIN_HEADER_LEN + opts.len()) / 4) as u8) << 4;
        t[13] = spec.flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[20..20 + opts.len()].copy_from_slice(&opts);
        t[20 + opts.len()..].copy_from_slice(&spec.payload);
        let c = checksum::tcp_checksum(spec.src_ip, spec.dst_ip, t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// A TCP timestamp option (kind 8) plus MSS, as Linux sends on a SYN.
    pub fn syn_options() -> Vec<u8> {
        vec![
            2, 4, 0x05, 0xb4, // MSS 1460
            4, 2, // SACK permitted
            8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, // timestamps
            1, 3, 3, 7, // NOP, window scale 7
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_built_frame_with_padding() {
        let spec = FrameSpec {
            pad: 6,
            tcp_options: syn_options(),
            ..Default::default()
        };
        let f = tcp_frame(&spec);
        let info = parse_tcp_frame(&f, false).unwrap();
        assert_eq!(info.src_ip, spec.src_ip);
        assert_eq!(info.dst_port, 80);
        assert!(info.flags.is_initial_syn());
        assert_eq!(info.frame_len(), f.len() - 6);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(tcp.options().len(), 20);
        assert!(tcp.payload().is_empty());
    }

    #[test]
    fn classifies_faults() {
        let good = tcp_frame(&FrameSpec::default());
        assert_eq!(
            parse_tcp_frame(&good[..10], false),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_tcp_frame(&good[..30], false),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_tcp_frame(&good[..50], false),
            Err(WireError::Truncated)
        );

        let mut f = good.clone();
        f[12] = 0x86;
        f[13] = 0xdd;
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::NotIpv4));

        let mut f = good.clone();
        f[14] = 0x65; // version 6
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Malformed));

        let mut f = good.clone();
        f[14] = 0x44; // IHL 4
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Malformed));

        let mut f = good.clone();
        f[16..18].copy_from_slice(&10u16.to_be_bytes()); // total < header
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Malformed));

        let mut f = good.clone();
        f[24] ^= 1; // TTL changed, checksum not updated
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::BadChecksum));

        let mut f = good.clone();
        f[20] |= 0x20; // MF
        let mut ip = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
        ip.fill_checksum();
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Fragment));

        let mut f = good.clone();
        f[21] = 1; // offset 1
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Fragment));

        let mut f = good.clone();
        f[23] = 17; // UDP
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::NotTcp));

        let mut f = good.clone();
        f[14 + 20 + 12] = 0xf0; // data offset 60 > 20-byte segment
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::Malformed));
    }

    /// Inserts a 4-byte NOP option block into the IPv4 header.
    fn with_ip_options(good: &[u8]) -> Vec<u8> {
        let mut f = good[..34].to_vec();
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&good[34..]);
        f[14] = 0x46;
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        f
    }

    #[test]
    fn ip_options_policy() {
        let good = tcp_frame(&FrameSpec::default());
        let f = with_ip_options(&good);
        assert_eq!(parse_tcp_frame(&f, false), Err(WireError::IpOptions));
        let info = parse_tcp_frame(&f, true).unwrap();
        assert_eq!(info.ip_header_len, 24);
        assert_eq!(info.tcp_offset(), 38);
        assert_eq!(info.dst_port, 80);
    }

    #[test]
    fn setters_round_trip() {
        let mut f = tcp_frame(&FrameSpec::default());
        let mut eth = EthernetFrame::new_checked(&mut f[..]).unwrap();
        eth.set_src_mac(MacAddr([9; 6]));
        eth.set_dst_mac(MacAddr::BROADCAST);
        assert_eq!(eth.src_mac(), MacAddr([9; 6]));
        assert_eq!(eth.dst_mac(), MacAddr::BROADCAST);
        let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).unwrap();
        ip.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        ip.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        let mut tcp = TcpSegment::new_checked(ip.payload_mut()).unwrap();
        tcp.set_src_port(1);
        tcp.set_dst_port(2);
        tcp.fill_checksum(s, d);
        assert!(tcp.verify_checksum(s, d));
        assert_eq!((tcp.src_port(), tcp.dst_port()), (1, 2));
    }

    #[test]
    fn mac_parse() {
        assert_eq!(
            "02:00:0a:FF:00:01".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0, 10, 255, 0, 1])
        );
        assert!("02:00:0a:FF:00".parse::<MacAddr>().is_err());
        assert!("02:00:0a:FF:00:01:02".parse::<MacAddr>().is_err());
        assert!("zz:00:0a:FF:00:01".parse::<MacAddr>().is_err());
        // A sign is not a hex digit.
        assert!("02:00:00:00:00:+1".parse::<MacAddr>().is_err());
        assert!("+2:00:00:00:00:01".parse::<MacAddr>().is_err());
        assert_eq!(
            MacAddr([2, 0, 10, 255, 0, 1]).to_string(),
            "02:00:0a:ff:00:01"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No input panics any parser or accessor.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), opts in any::<bool>()) {
            let _ = parse_tcp_frame(&bytes, opts);
            if let Ok(eth) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (eth.src_mac(), eth.dst_mac(), eth.ethertype());
                if let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) {
                    let _ = (ip.options(), ip.payload(), ip.verify_checksum(), ip.is_fragment(), ip.header());
                    if let Ok(tcp) = TcpSegment::new_checked(ip.payload()) {
                        let _ = (tcp.options(), tcp.payload(), tcp.flags(), tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
                    }
                }
            }
            if let Ok(tcp) = TcpSegment::new_checked(&bytes[..]) {
                let _ = (tcp.options(), tcp.payload(), tcp.seq(), tcp.ack_number(), tcp.window(), tcp.urgent());
            }
        }

        /// Mutating one byte of a valid frame never panics, and a frame
        /// that still parses reports fields consistent with its bytes.
        #[test]
        fn mutated_frames_never_panic(at in 0usize..80, val in any::<u8>(), cut in 0usize..80) {
            let mut f = tcp_frame(&FrameSpec { tcp_options: syn_options(), payload: vec![7; 10], ..Default::default() });
            let at = at % f.len();
            f[at] = val;
            let cut = f.len().saturating_sub(cut);
            if let Ok(info) = parse_tcp_frame(&f[..cut], true) {
                prop_assert!(info.frame_len() <= cut);
                prop_assert!(info.tcp_offset() + 20 <= info.frame_len());
            }
        }
    }
}

/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP operation: request (who-has).
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply (is-at).
pub const ARP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP frame padded to the 60-byte Ethernet minimum.
pub const ARP_FRAME_LEN: usize = 60;

/// An Ethernet/IPv4 ARP message (RFC 826), as the I/O layer uses it to
/// resolve real-server MACs on `back`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// [`ARP_REQUEST`] or [`ARP_REPLY`] (other values are passed through).
    pub op: u16,
    /// Sender hardware address (the MAC being announced).
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// Parses an Ethernet frame as Ethernet/IPv4 ARP; link padding is ignored.
/// Errors: `NotIpv4` for another ethertype (the caller tests ARP first),
/// `Truncated` for a short frame, `Malformed` for other hardware/protocol
/// types or address lengths.
pub fn parse_arp(frame: &[u8]) -> Result<Arp, WireError> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ETHERTYPE_ARP {
        return Err(WireError::NotIpv4);
    }
    let a = eth.payload();
    if a.len() < 28 {
        return Err(WireError::Truncated);
    }
    // htype Ethernet (1), ptype IPv4, hlen 6, plen 4.
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return Err(WireError::Malformed);
    }
    Ok(Arp {
        op: be16(a, 6),
        sender_mac: mac_at(a, 8),
        sender_ip: Ipv4Addr::from(be32(a, 14)),
        target_mac: mac_at(a, 18),
        target_ip: Ipv4Addr::from(be32(a, 24)),
    })
}

/// Builds a broadcast ARP who-has `target_ip` from `src_mac`/`src_ip`
/// (`src_ip` 0.0.0.0 makes it an RFC 5227 probe), padded to 60 bytes.
pub fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut f[ETH_HEADER_LEN..];
    a[0..2].copy_from_slice(&1u16.to_be_bytes());
    a[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    a[8..14].copy_from_slice(&src_mac.0);
    a[14..18].copy_from_slice(&src_ip.octets());
    // target MAC stays zero (unknown).
    a[24..28].copy_from_slice(&target_ip.octets());
    f
}

#[cfg(test)]
mod arp_tests {
    use super::*;

    const M: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb1]);

    #[test]
    fn request_round_trips() {
        let f = arp_request(M, Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        let a = parse_arp(&f).unwrap();
        assert_eq!(a.op, ARP_REQUEST);
        assert_eq!(a.sender_mac, M);
        assert_eq!(a.sender_ip, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(a.target_mac, MacAddr::default());
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 1, 0, 11));
        // Unpadded 42-byte frames parse too.
        assert_eq!(parse_arp(&f[..42]).unwrap(), a);
    }

    #[test]
    fn bad_arp_is_rejected_not_panicking() {
        let f = arp_request(M, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(parse_arp(&f[..41]), Err(WireError::Truncated));
        assert_eq!(parse_arp(&f[..10]), Err(WireError::Truncated));
        let mut g = f;
        g[14 + 4] = 8; // hlen
        assert_eq!(parse_arp(&g), Err(WireError::Malformed));
        let mut g = f;
        g[13] = 0x00; // ethertype 0x0800
        assert_eq!(parse_arp(&g), Err(WireError::NotIpv4));
        for n in 0..f.len() {
            let _ = parse_arp(&f[..n]);
        }
    }
}
