//! The heartbeat datagram: parse and emit, authenticated with HMAC-SHA256.
//!
//! Every balancer multicasts one of these on the LB LAN each heartbeat
//! interval (UDP, TTL 1; see `membership` for what they mean). Layout,
//! big-endian, [`HEADER_LEN`] bytes, then `view_len` member ids, then the
//! tag:
//!
//! ```text
//!  0  magic "BLHB"        4
//!  4  version (1)         1
//!  5  state               1   0 listening, 1 ready, 2 active, 3 leaving, 4 withdrawn
//!  6  reserved (0)        1
//!  7  view_len            1   <= MAX_MEMBERS
//!  8  VIP address         4   the service this cluster balances
//! 12  VIP port            2
//! 14  node id             4
//! 18  epoch               8   sender's start time, unix ms (a restart raises it)
//! 26  sequence            8   +1 per datagram within an epoch
//! 34  sent at             8   sender's wall clock, unix ms
//! 42  view                4 * view_len   ids the sender counts as claiming
//!  .  HMAC-SHA256        32   over every byte before it, with the cluster key
//! ```
//!
//! Parsing is panic-free on any input; the reasons a datagram is refused
//! are [`Reject`] values, which the membership layer counts.

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ownership::MAX_MEMBERS;

/// First bytes of every heartbeat.
pub const MAGIC: [u8; 4] = *b"BLHB";
/// Wire format version.
pub const VERSION: u8 = 1;
/// Bytes before the view.
pub const HEADER_LEN: usize = 42;
/// Bytes of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Largest heartbeat.
pub const MAX_LEN: usize = HEADER_LEN + 4 * MAX_MEMBERS + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// What the sender is doing, as announced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Started or restarted: learning the cluster, claiming nothing.
    Listening,
    /// Wants to claim; peers add it to their view, it claims once they did.
    Ready,
    /// Claims its buckets.
    Active,
    /// SIGTERM: claims nothing, finishes its flows, then exits.
    Leaving,
    /// No healthy target or drained: claims nothing, finishes its flows.
    Withdrawn,
}

impl State {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => State::Listening,
            1 => State::Ready,
            2 => State::Active,
            3 => State::Leaving,
            4 => State::Withdrawn,
            _ => return None,
        })
    }
    fn to_byte(self) -> u8 {
        match self {
            State::Listening => 0,
            State::Ready => 1,
            State::Active => 2,
            State::Leaving => 3,
            State::Withdrawn => 4,
        }
    }
    /// Whether peers count a member in this state in their view.
    pub fn wants_buckets(self) -> bool {
        matches!(self, State::Ready | State::Active)
    }
}

/// One heartbeat's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's state.
    pub state: State,
    /// The service (foreign clusters have another one).
    pub vip: SocketAddrV4,
    /// Sender id.
    pub node_id: u32,
    /// Sender start time, unix ms.
    pub epoch: u64,
    /// Per-epoch sequence number.
    pub seq: u64,
    /// Sender wall clock at sending, unix ms.
    pub sent_ms: u64,
    /// Member ids the sender counts as claiming (sorted, unique).
    pub view: Vec<u32>,
}

/// Why a datagram is not a heartbeat we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum Reject {
    /// Too short or long, wrong magic, version, state or view.
    #[error("malformed")]
    Malformed,
    /// Authentication failed (wrong key or altered bytes).
    #[error("forged")]
    Forged,
    /// Another cluster's (other VIP) or a node id not configured.
    #[error("foreign")]
    Foreign,
    /// Not newer than the last accepted from that sender (epoch, seq), or
    /// sent too long ago.
    #[error("replayed")]
    Replayed,
    /// Our own id (looped back, or another node configured with our id).
    #[error("own_id")]
    OwnId,
}

impl Reject {
    /// Every reason, for counters.
    pub const ALL: [Reject; 5] = [
        Reject::Malformed,
        Reject::Forged,
        Reject::Foreign,
        Reject::Replayed,
        Reject::OwnId,
    ];
    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Forged => "forged",
            Reject::Foreign => "foreign",
            Reject::Replayed => "replayed",
            Reject::OwnId => "own_id",
        }
    }
}

/// The cluster key, ready to sign and verify.
#[derive(Clone)]
pub struct Key(HmacSha256);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A key HMAC refused (it takes every length, so this does not occur).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster key was refused by HMAC-SHA256")]
pub struct BadKey;

impl Key {
    /// A key from its bytes (the configuration requires at least
    /// `config::MIN_KEY_LEN`).
    pub fn new(bytes: &[u8]) -> Result<Self, BadKey> {
        HmacSha256::new_from_slice(bytes)
            .map(Key)
            .map_err(|_| BadKey)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Heartbeat {
    /// Appends the signed datagram to `out` (cleared first).
    pub fn emit(&self, key: &Key, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.state.to_byte());
        out.push(0);
        let n = self.view.len().min(MAX_MEMBERS);
        out.push(n as u8);
        out.extend_from_slice(&self.vip.ip().octets());
        out.extend_from_slice(&self.vip.port().to_be_bytes());
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        for id in &self.view[..n] {
            out.extend_from_slice(&id.to_be_bytes());
        }
        let mut mac = key.0.clone();
        mac.update(out);
        out.extend_from_slice(&mac.finalize().into_bytes());
    }

    /// Parses and authenticates a datagram: structure first (`Malformed`),
    /// then the tag (`Forged`). Never panics.
    pub fn parse(bytes: &[u8], key: &Key) -> Result<Heartbeat, Reject> {
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes.len() > MAX_LEN {
            return Err(Reject::Malformed);
        }
        if bytes[0..4] != MAGIC || bytes[4] != VERSION || bytes[6] != 0 {
            return Err(Reject::Malformed);
        }
        let state = State::from_byte(bytes[5]).ok_or(Reject::Malformed)?;
        let n = usize::from(bytes[7]);
        if n > MAX_MEMBERS || bytes.len() != HEADER_LEN + 4 * n + TAG_LEN {
            return Err(Reject::Malformed);
        }
        let body = &bytes[..HEADER_LEN + 4 * n];
        let mut mac = key.0.clone();
        mac.update(body);
        mac.verify_slice(&bytes[body.len()..])
            .map_err(|_| Reject::Forged)?;
        let view: Vec<u32> = (0..n).map(|i| be_u32(body, HEADER_LEN + 4 * i)).collect();
        if view.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Reject::Malformed);
        }
        let vip = SocketAddrV4::new(
            Ipv4Addr::new(bytes[8], bytes[9], bytes[10], bytes[11]),
            u16::from_be_bytes([bytes[12], bytes[13]]),
        );
        Ok(Heartbeat {
            state,
            vip,
            node_id: be_u32(bytes, 14),
            epoch: be_u64(bytes, 18),
            seq: be_u64(bytes, 26),
            sent_ms: be_u64(bytes, 34),
            view,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hb() -> Heartbeat {
        Heartbeat {
            state: State::Active,
            vip: "198.18.1.100:80".parse().unwrap(),
            node_id: 2,
            epoch: 1_700_000_000_000,
            seq: 7,
            sent_ms: 1_700_000_000_700,
            view: vec![1, 2],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let k = Key::new(b"0123456789abcdef").unwrap();
        let mut out = Vec::new();
        hb().emit(&k, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 8 + TAG_LEN);
        assert_eq!(&out[..8], b"BLHB\x01\x02\x00\x02");
        assert_eq!(Heartbeat::parse(&out, &k), Ok(hb()));
    }

    #[test]
    fn refusals() {
        let k = Key::new(b"0123456789abcdef").unwrap();
        let mut out = Vec::new();
        hb().emit(&k, &mut out);
        let other = Key::new(b"fedcba9876543210").unwrap();
        assert_eq!(Heartbeat::parse(&out, &other), Err(Reject::Forged));
        let mut flipped = out.clone();
        flipped[30] ^= 1;
        assert_eq!(Heartbeat::parse(&flipped, &k), Err(Reject::Forged));
        assert_eq!(Heartbeat::parse(&out[..40], &k), Err(Reject::Malformed));
        let mut bad_state = out.clone();
        bad_state[5] = 9;
        assert_eq!(Heartbeat::parse(&bad_state, &k), Err(Reject::Malformed));
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(Heartbeat::parse(&longer, &k), Err(Reject::Malformed));
        // An unsorted view is refused even when properly signed.
        let mut h = hb();
        h.view = vec![2, 1];
        h.emit(&k, &mut out);
        assert_eq!(Heartbeat::parse(&out, &k), Err(Reject::Malformed));
    }

    proptest! {
        /// Any bytes: no panic; whatever parses re-emits to the same bytes.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let k = Key::new(b"0123456789abcdef").unwrap();
            if let Ok(h) = Heartbeat::parse(&bytes, &k) {
                let mut out = Vec::new();
                h.emit(&k, &mut out);
                prop_assert_eq!(out, bytes);
            }
        }

        /// Any single-bit change of a signed heartbeat is refused.
        #[test]
        fn any_bit_flip_is_refused(bit in 0usize..(HEADER_LEN + 8 + TAG_LEN) * 8) {
            let k = Key::new(b"0123456789abcdef").unwrap();
            let mut out = Vec::new();
            hb().emit(&k, &mut out);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Heartbeat::parse(&out, &k).is_err());
        }
    }
}
