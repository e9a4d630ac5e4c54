//! Measures the connection table's memory: inserts N flows (default
//! 1,000,000) into a table of that capacity and prints the process RSS
//! before and after, read from /proc/self/status.
//!
//! Run: `cargo run --release -p balancer --example conntrack_mem [-- N]`

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use balancer::conntrack::{ConnKey, Conntrack, Direction, Method, NewConn, Timeouts, SLOT_BYTES};
use balancer::sched::Target;
use balancer::wire::{MacAddr, TcpFlags};

/// VmRSS and VmHWM in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .map_err(|e| anyhow::anyhow!("N: expected a count, got {s:?}: {e}"))?,
        None => 1_000_000,
    };
    let (rss0, _) = rss_kib();
    let mut ct = Conntrack::new(n, Timeouts::default(), 9)?;
    let (rss_alloc, _) = rss_kib();
    let start = Instant::now();
    for i in 0..n as u32 {
        let key = ConnKey {
            client_ip: Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i >> 14)),
            client_port: 1024 + (i & 0x3fff) as u16,
            vport: 80,
        };
        let target = Target::Real((i % 8) as u16);
        let id = ct
            .insert(
                Duration::ZERO,
                NewConn {
                    key,
                    target,
                    method: Method::Nat,
                    real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 11, 12 + (i % 8) as u8), 80),
                    front_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    isn: i,
                },
            )
            .map_err(|e| anyhow::anyhow!("insert {i}: {e}"))?;
        ct.update(
            id,
            Duration::ZERO,
            Direction::Input,
            TcpFlags(TcpFlags::SYN),
        );
    }
    let took = start.elapsed();
    let (rss1, hwm) = rss_kib();
    println!("entries:             {}", ct.len());
    println!("slot size:           {SLOT_BYTES} bytes");
    println!("RSS before table:    {:.1} MiB", rss0 as f64 / 1024.0);
    println!("RSS after reserve:   {:.1} MiB", rss_alloc as f64 / 1024.0);
    println!(
        "RSS after inserts:   {:.1} MiB (peak {:.1} MiB)",
        rss1 as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "table memory:        {:.1} MiB = {:.0} bytes/entry",
        (rss1 - rss0) as f64 / 1024.0,
        (rss1 - rss0) as f64 * 1024.0 / n.max(1) as f64
    );
    println!(
        "insert+update time:  {:.0} ns/flow",
        took.as_nanos() as f64 / n.max(1) as f64
    );
    Ok(())
}
