//! IPv4 prefixes and the testbed address range (pure, no I/O).
//!
//! The testbed only ever uses the RFC 2544 benchmarking range `198.18.0.0/15`,
//! so nothing it configures can collide with a real network.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The only range the testbed may use: RFC 2544 benchmarking, `198.18.0.0/15`.
pub const TESTBED_RANGE: Ipv4Net = Ipv4Net {
    addr: Ipv4Addr::new(198, 18, 0, 0),
    len: 15,
};

/// An IPv4 address with a prefix length (`198.18.1.11/24`): an interface
/// address when the host part is non-zero, a subnet when it is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    /// The address as written (host bits may be set).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

/// Why a string is not a valid `a.b.c.d/len`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not an IPv4 prefix: {reason} (expected a.b.c.d/len with len 0..=32)")]
pub struct NetParseError {
    input: String,
    reason: &'static str,
}

impl Ipv4Net {
    /// Builds a prefix; `len` above 32 is clamped to 32.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Self {
        Ipv4Net {
            addr,
            len: if len > 32 { 32 } else { len },
        }
    }

    /// The netmask as a 32-bit integer.
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    /// The subnet this address belongs to (host bits cleared).
    pub fn network(self) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::from(u32::from(self.addr) & self.mask()), self.len)
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether the whole prefix `other` lies inside this prefix.
    pub fn contains_net(self, other: Ipv4Net) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| NetParseError {
            input: s.to_string(),
            reason,
        };
        let (a, l) = s.split_once('/').ok_or_else(|| err("missing `/len`"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err("bad address"))?;
        let len: u8 = l.parse().map_err(|_| err("bad prefix length"))?;
        if len > 32 {
            return Err(err("prefix length above 32"));
        }
        Ok(Ipv4Net { addr, len })
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = NetParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// The IPv4 multicast MAC (RFC 1112: `01:00:5e` + low 23 bits) that the router
/// resolves the VIP to, so the LB LAN floods VIP frames to every balancer.
pub fn multicast_mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("01:00:5e:{:02x}:{:02x}:{:02x}", o[1] & 0x7f, o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display() {
        let n: Ipv4Net = "198.18.1.11/24".parse().unwrap();
        assert_eq!(n.addr, Ipv4Addr::new(198, 18, 1, 11));
        assert_eq!(n.len, 24);
        assert_eq!(n.network().to_string(), "198.18.1.0/24");
        assert_eq!(n.to_string(), "198.18.1.11/24");
    }

    #[test]
    fn parse_errors_are_precise() {
        for bad in [
            "198.18.1.1",
            "198.18.1/24",
            "198.18.1.1/33",
            "x/1",
            "1.2.3.4/-1",
        ] {
            let e = bad.parse::<Ipv4Net>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
            assert!(e.contains("expected a.b.c.d/len"), "{e}");
        }
    }

    #[test]
    fn range_membership() {
        assert!(TESTBED_RANGE.contains(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(TESTBED_RANGE.contains(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!TESTBED_RANGE.contains(Ipv4Addr::new(198, 20, 0, 0)));
        assert!(!TESTBED_RANGE.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!TESTBED_RANGE.contains(Ipv4Addr::new(192, 168, 0, 1)));
        assert!(TESTBED_RANGE.contains_net("198.18.11.0/24".parse().unwrap()));
        assert!(!TESTBED_RANGE.contains_net("198.0.0.0/8".parse().unwrap()));
    }

    #[test]
    fn vip_multicast_mac() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(198, 18, 1, 100)),
            "01:00:5e:12:01:64"
        );
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 255, 255, 250)),
            "01:00:5e:7f:ff:fa"
        );
    }

    proptest! {
        #[test]
        fn roundtrip(a in any::<u32>(), len in 0u8..=32) {
            let n = Ipv4Net::new(Ipv4Addr::from(a), len);
            let back: Ipv4Net = n.to_string().parse().unwrap();
            prop_assert_eq!(back, n);
            prop_assert!(n.contains(n.addr));
            prop_assert!(n.network().contains(n.addr));
        }
    }
}
