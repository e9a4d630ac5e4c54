//! The bi-active L4 load balancer: a sans-I/O core.
//!
//! Everything here is plain data and functions that take `now` and frame
//! bytes and return an [`engine::Action`]; the pnet threads, the TUN device
//! and the control socket (the binary's `io` modules) only carry bytes in and out.
//!
//! Module map, bottom-up:
//!
//! * [`checksum`]: Internet checksum (RFC 1071) and incremental update (RFC 1624).
//! * [`wire`]: borrowed, panic-free views over Ethernet II / IPv4 / TCP, and
//!   the frame classifier whose errors become drop reasons.
//! * [`rewrite`]: in-place NAT-in, NAT-out and DR rewrites with incremental checksums.
//! * [`icmp`]: ICMP errors about balanced flows (path MTU discovery through NAT).
//! * [`hash`]: fixed hashes, keyed by the cluster's seed, that every balancer computes alike.
//! * [`sched`]: the [`sched::Scheduler`] trait and rr, wrr, lc, wlc, sh, mh.
//! * [`ownership`]: which live balancer owns a new flow (4096 buckets,
//!   weighted rendezvous over the membership).
//! * [`health`]: per-target health (rise/fall) from check results.
//! * [`heartbeat`]: the signed heartbeat datagram (parse/emit, HMAC-SHA256).
//! * [`membership`]: the heartbeat membership state machine (join, death,
//!   leave, withdrawal) whose view feeds [`engine::Balancer::set_membership`].
//! * [`conntrack`]: the bounded connection table, LVS TCP states and timeouts.
//! * [`config`]: the configuration, parsed from TOML with precise errors.
//! * [`counters`]: drop reasons, per-target counters, JSON snapshot, and an
//!   `ipvsadm -L -n --stats`-like formatter.
//! * [`engine`]: [`engine::Balancer`], the decision core tying it together.
//! * [`status`]: the control endpoint's `/stats` document (snapshot plus
//!   process figures) and its table rendering.
//! * [`fuzzing`]: frame generators and the per-decision invariants, shared by
//!   the property tests and `examples/fuzz_frames.rs`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod config;
pub mod conntrack;
pub mod counters;
pub mod engine;
pub mod fuzzing;
pub mod hash;
pub mod health;
pub mod heartbeat;
pub mod icmp;
pub mod membership;
pub mod ownership;
pub mod rewrite;
pub mod sched;
pub mod status;
pub mod wire;
