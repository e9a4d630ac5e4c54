//! Per-node counters, sharded by worker thread, and their `/stats` JSON.
//!
//! Each worker thread owns one [`Shard`] and is its only writer, so updates are
//! a relaxed load and store (no locked instruction, no contention); `/stats`
//! on any thread reads every shard and sums them. Counting rules, chosen so an
//! experiment can add up served requests exactly:
//! * `requests_total` and `requests_by_status` count every request answered
//!   except `/stats` itself, including the 400/431 replies hyper writes for
//!   malformed or oversized request heads;
//! * `/stats` requests are counted only in `stats_requests`;
//! * connections and bytes are wire-level and include `/stats` traffic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

/// Statuses with their own counter; anything else lands in `other`.
pub const TRACKED_STATUSES: [u16; 9] = [200, 400, 403, 404, 405, 408, 414, 431, 500];
const OTHER: usize = TRACKED_STATUSES.len();

/// Index of `status` in a shard's status array.
pub fn status_index(status: u16) -> usize {
    TRACKED_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(OTHER)
}

/// Counters of one worker thread; written only by that thread.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Shard {
    by_status: [AtomicU64; TRACKED_STATUSES.len() + 1],
    stats_requests: AtomicU64,
    conns_accepted: AtomicU64,
    conns_active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    header_timeouts: AtomicU64,
}

/// Single-writer add: only the owning thread calls this, readers tolerate a
/// value that is one update behind.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Shard {
    /// Counts one answered request with this status.
    #[inline]
    pub fn request(&self, status: u16) {
        bump(&self.by_status[status_index(status)], 1);
    }
    /// Counts one `/stats` request (kept out of the request totals).
    #[inline]
    pub fn stats_request(&self) {
        bump(&self.stats_requests, 1);
    }
    /// Counts an accepted connection, which is now active.
    #[inline]
    pub fn conn_opened(&self) {
        bump(&self.conns_accepted, 1);
        bump(&self.conns_active, 1);
    }
    /// Counts a connection that has finished.
    #[inline]
    pub fn conn_closed(&self) {
        let c = &self.conns_active;
        c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
    }
    /// Connections of this shard still open.
    pub fn active(&self) -> u64 {
        self.conns_active.load(Relaxed)
    }
    /// Counts bytes read from clients.
    #[inline]
    pub fn bytes_in(&self, n: u64) {
        bump(&self.bytes_in, n);
    }
    /// Counts bytes written to clients.
    #[inline]
    pub fn bytes_out(&self, n: u64) {
        bump(&self.bytes_out, n);
    }
    /// Counts a connection closed because its request head did not arrive in time.
    #[inline]
    pub fn header_timeout(&self) {
        bump(&self.header_timeouts, 1);
    }
}

/// All shards of a node plus what `/stats` reports about the node itself.
#[derive(Debug)]
pub struct Stats {
    name: String,
    started: Instant,
    shards: Box<[Shard]>,
}

/// A summed, point-in-time view of a node's counters, as served by `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The node's `--name`.
    pub name: String,
    /// Requests answered, `/stats` excluded.
    pub requests_total: u64,
    /// Requests answered per status code (only codes seen; `other` for untracked ones).
    pub requests_by_status: BTreeMap<String, u64>,
    /// `/stats` requests answered (not part of `requests_total`).
    pub stats_requests: u64,
    /// TCP connections accepted since start.
    pub connections_accepted: u64,
    /// TCP connections currently open.
    pub connections_active: u64,
    /// Connections closed because the request head did not arrive in time (or the keep-alive idled out).
    pub header_timeouts: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Seconds since the server started.
    pub uptime_secs: f64,
}

impl Stats {
    /// Creates zeroed counters with one shard per worker thread.
    pub fn new(name: impl Into<String>, workers: usize) -> Self {
        Stats {
            name: name.into(),
            started: Instant::now(),
            shards: (0..workers.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    /// The shard of worker `i` (wraps around, so any index is safe).
    pub fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % self.shards.len()]
    }

    /// Sums all shards.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            name: self.name.clone(),
            requests_total: 0,
            requests_by_status: BTreeMap::new(),
            stats_requests: 0,
            connections_accepted: 0,
            connections_active: 0,
            header_timeouts: 0,
            bytes_in: 0,
            bytes_out: 0,
            uptime_secs: self.started.elapsed().as_secs_f64(),
        };
        let mut by_status = [0u64; TRACKED_STATUSES.len() + 1];
        for sh in self.shards.iter() {
            for (acc, c) in by_status.iter_mut().zip(sh.by_status.iter()) {
                *acc += c.load(Relaxed);
            }
            snap.stats_requests += sh.stats_requests.load(Relaxed);
            snap.connections_accepted += sh.conns_accepted.load(Relaxed);
            snap.connections_active += sh.conns_active.load(Relaxed);
            snap.header_timeouts += sh.header_timeouts.load(Relaxed);
            snap.bytes_in += sh.bytes_in.load(Relaxed);
            snap.bytes_out += sh.bytes_out.load(Relaxed);
        }
        for (i, &n) in by_status.iter().enumerate() {
            snap.requests_total += n;
            if n > 0 {
                let key = TRACKED_STATUSES
                    .get(i)
                    .map_or_else(|| "other".to_string(), |s| s.to_string());
                snap.requests_by_status.insert(key, n);
            }
        }
        snap
    }
}

impl Snapshot {
    /// The JSON body served at `/stats` (one line, newline-terminated).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|e| {
            // Serialising plain numbers and strings cannot fail; keep a valid body anyway.
            format!("{{\"error\":\"{e}\"}}")
        });
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shards_and_keeps_stats_apart() {
        let st = Stats::new("rs1", 2);
        st.shard(0).request(200);
        st.shard(1).request(200);
        st.shard(1).request(404);
        st.shard(0).request(431);
        st.shard(0).request(299);
        st.shard(1).stats_request();
        st.shard(0).conn_opened();
        st.shard(1).conn_opened();
        st.shard(1).conn_closed();
        st.shard(0).bytes_in(10);
        st.shard(1).bytes_out(75);
        st.shard(0).header_timeout();
        let s = st.snapshot();
        assert_eq!(s.name, "rs1");
        assert_eq!(s.requests_total, 5);
        assert_eq!(s.requests_by_status.get("200"), Some(&2));
        assert_eq!(s.requests_by_status.get("404"), Some(&1));
        assert_eq!(s.requests_by_status.get("431"), Some(&1));
        assert_eq!(s.requests_by_status.get("other"), Some(&1));
        assert_eq!(s.requests_by_status.get("500"), None);
        assert_eq!(s.stats_requests, 1);
        assert_eq!(s.connections_accepted, 2);
        assert_eq!(s.connections_active, 1);
        assert_eq!((s.bytes_in, s.bytes_out), (10, 75));
        assert_eq!(s.header_timeouts, 1);
    }

    #[test]
    fn json_shape() {
        let st = Stats::new("node \"a\"", 1);
        st.shard(0).request(200);
        let v: serde_json::Value = serde_json::from_str(&st.snapshot().to_json()).unwrap();
        assert_eq!(v["name"], "node \"a\"");
        assert_eq!(v["requests_total"], 1);
        assert_eq!(v["requests_by_status"]["200"], 1);
        assert_eq!(v["stats_requests"], 0);
        assert_eq!(v["connections_active"], 0);
        assert!(v["uptime_secs"].as_f64().unwrap() >= 0.0);
        for k in [
            "connections_accepted",
            "bytes_in",
            "bytes_out",
            "header_timeouts",
        ] {
            assert!(v[k].is_u64(), "{k}");
        }
    }

    #[test]
    fn closing_more_than_opened_saturates() {
        let st = Stats::new("x", 1);
        st.shard(0).conn_closed();
        assert_eq!(st.snapshot().connections_active, 0);
        assert_eq!(status_index(200), 0);
        assert_eq!(status_index(999), TRACKED_STATUSES.len());
    }
}
