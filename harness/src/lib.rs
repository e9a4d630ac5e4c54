//! Testbed provisioning for the bi-active balancer experiments: an emulated
//! cluster made of network namespaces on one Linux host.
//!
//! Module map:
//! - [`net`]: IPv4 prefixes, the RFC 2544 testbed range, VIP multicast MAC.
//! - [`topology`]: the cluster as a plain value (hosts, segments, addresses,
//!   routes), built-ins `1lb-1rs`, `2lb-2rs`, `1lb-1rs-dr`, `2lb-2rs-dr`,
//!   validation.
//! - [`profile`]: node CPU shares and link rates (`unconstrained`, `paper`).
//! - [`cgroup`]: which CPU-controller hierarchy this host has, node cgroups.
//! - [`plan`]: pure `plan_up(topology, profile)` / `plan_down(inventory)`
//!   returning steps; `render_script` prints them as `#!/bin/sh`.
//! - [`exec`]: runs steps (commands and native file operations).
//! - [`discover`]: finds everything carrying our prefix (for `down`).
//! - [`state`]: the atomically written state file and the up/down lock.
//! - [`testbed`]: the handle: `up` with rollback, `down`, `exec`/`spawn`
//!   inside a node (namespace + cgroup).
//! - [`status`]: the `harness status` report.
//! - [`signal`], [`privilege`]: Ctrl-C handling and the root check.
//! - [`nsnet`]: TCP probes and HTTP `GET`s from inside a node's namespace.
//! - [`experiment`]: one experiment point as data (servers, balancer
//!   configs, loadgen arguments) and its tables and JSON record (pure).
//! - [`failover`]: per-fault outcome (membership change delay, first
//!   clean timeline bin), summary and timeline CSV (pure).
//! - [`fault`]: `--fault at=T,ACTION=NODE` and `--down NODE` as data,
//!   checked against the topology and run length (pure).
//! - [`inject`]: carries out the fault schedule while the clients run.
//! - [`synack`]: double answers at the router: client SYNs and their
//!   distinct SYN-ACKs, counted from frames (pure).
//! - [`capture`]: `harness router-watch`, the AF_PACKET capture in the
//!   router's namespace feeding [`synack`].
//! - [`supervise`]: processes in nodes: spawn with a log, wait until ready,
//!   wait for clients with a budget, stop all (TERM, then KILL).
//! - [`run`]: `harness run` / `harness demo`, and the named phases of a
//!   point every runner shares (testbed up/down, servers, balancers,
//!   clients and their merged result, stats, the JSON record).
//! - [`bench`]: `harness bench-balancer` as data: the four forwarding paths
//!   (balancer, nftables DNAT, HAProxy, direct), the namespace commands that
//!   switch between them, counter parsers, medians, table, JSON record.
//! - [`repeat`]: `--repeat N` as data: run order (alternating), runs per
//!   configuration, medians (shared by `bench-balancer`, `flood`, `reproduce`).
//! - [`sweep`]: `harness reproduce` as data: Table I configurations, default
//!   rate sweeps from the profile, validation, interleaved plan, resume set.
//! - [`reproduce`]: runs the sweep (fresh testbed per point, warm-up,
//!   loadgen or httperf), saves and re-renders after every point.
//! - [`bench_run`]: runs `bench-balancer` (alternating targets, counters
//!   around every run), always undoes every switch and tears down.
//! - [`flood`]: `harness flood` as data: SYN, non-SYN and malformed flood
//!   frames, spoofed sources, the flood leg's commands, figures, checks.
//! - [`flood_run`]: runs `harness flood` (baseline, then each flood with
//!   legitimate clients, table and RSS sampled) and the AF_PACKET sender.

pub mod bench;
pub mod bench_run;
pub mod capture;
pub mod cgroup;
pub mod discover;
pub mod exec;
pub mod experiment;
pub mod failover;
pub mod fault;
pub mod flood;
pub mod flood_run;
pub mod inject;
pub mod net;
pub mod nsnet;
pub mod plan;
pub mod privilege;
pub mod profile;
pub mod repeat;
pub mod reproduce;
pub mod run;
pub mod signal;
pub mod state;
pub mod status;
pub mod supervise;
pub mod sweep;
pub mod synack;
pub mod testbed;
pub mod topology;

/// The prefix of every namespace, link and cgroup the harness creates, so
/// that `down` can find and remove all of them, even after a crash.
pub const PREFIX: &str = "bal-";

pub use testbed::{NodeProcess, Testbed};
