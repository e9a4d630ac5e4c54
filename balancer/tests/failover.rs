//! Two balancers with heartbeat membership in network namespaces this test
//! creates (needs root; a loud SKIP otherwise, a failure under CI):
//!
//! ```text
//!  bal-fcli eth0 198.19.8.10 ─┐
//!                             ├─ br0 in bal-fsw (mcast_snooping 0)
//!  bal-flb1 front 198.19.8.1 ─┤   VIP 198.19.9.100 on a TUN in each LB,
//!  bal-flb2 front 198.19.8.2 ─┘   served by a local realserver (bi-active)
//! ```
//!
//! The client resolves the VIP to its multicast MAC, so both balancers see
//! every frame. Each balancer only has its local server (its `back` is a
//! veth pair inside its namespace). Phases: both serve; lb2 is killed
//! (SIGKILL) `FAILOVER_KILLS` times (default 3; each time: lb1's view drops
//! lb2, measured from the kill to lb1's recorded change, then every request
//! succeeds on lb1 alone; lb2 restarts, listens, rejoins and serves again);
//! then lb2's local server (its only target) is killed: its HTTP health
//! check fails, lb2 withdraws and lb1 serves alone; the server comes back
//! and lb2 rejoins; `balancer drain` / `undrain` do the same by hand;
//! heartbeats alone are blocked (nftables in lb2): both claim every bucket
//! and answer every new flow (the documented partition limit, measured and
//! printed), then converge when unblocked;
//! finally lb2 gets SIGTERM: lb1 takes its buckets at once (no dead-after
//! wait) and lb2 exits 0 after draining. Everything lives in 198.19.8.0/22
//! and is deleted on drop, even on panic.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use balancer::membership::{Cause, MembershipDoc};
use common::{have_root, http_get, in_ns, sh, with_ns, Proc};

const SW: &str = "bal-fsw";
const CLI: &str = "bal-fcli";
const LBS: [&str; 2] = ["bal-flb1", "bal-flb2"];
const VIP: &str = "198.19.9.100";
const VIP_MAC: &str = "01:00:5e:13:09:64";

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Deletes the namespaces (and with them every veth, bridge and rule).
struct Topology;

impl Topology {
    fn clean() {
        for ns in [SW, CLI, LBS[0], LBS[1]] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    fn link(ns: &str, dev: &str, port: &str, addr: &str) {
        sh(&[
            "ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns", SW,
        ]);
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        in_ns(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ],
        );
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", SW, "link", "set", port, "master", "br0", "up"]);
    }

    fn up() -> Topology {
        Self::clean();
        let t = Topology;
        for ns in [SW, CLI, LBS[0], LBS[1]] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["ip", "-n", SW, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            SW,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", SW, "link", "set", "br0", "up"]);
        Self::link(CLI, "eth0", "pcli", "198.19.8.10/24");
        sh(&[
            "ip",
            "-n",
            CLI,
            "route",
            "add",
            &format!("{VIP}/32"),
            "dev",
            "eth0",
        ]);
        sh(&[
            "ip",
            "-n",
            CLI,
            "neigh",
            "replace",
            VIP,
            "lladdr",
            VIP_MAC,
            "nud",
            "permanent",
            "dev",
            "eth0",
        ]);
        for (i, ns) in LBS.iter().enumerate() {
            let n = i + 1;
            Self::link(ns, "front", &format!("plb{n}"), &format!("198.19.8.{n}/24"));
            sh(&[
                "ip", "-n", ns, "link", "add", "back", "type", "veth", "peer", "name", "backp",
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("198.19.10.{n}/24"),
                "dev",
                "back",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "back", "up"]);
            sh(&["ip", "-n", ns, "link", "set", "backp", "up"]);
            sh(&[
                "ip", "-n", ns, "tuntap", "add", "dev", "vip0", "mode", "tun",
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "vip0",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "vip0", "up"]);
            in_ns(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
            for dev in ["all", "default", "vip0"] {
                in_ns(
                    ns,
                    &["sysctl", "-qw", &format!("net.ipv4.conf.{dev}.rp_filter=0")],
                );
            }
            // The kernel must not take the VIP's frames from front itself.
            in_ns(ns, &["nft", "add", "table", "ip", "bal"]);
            in_ns(
                ns,
                &[
                    "nft",
                    "add",
                    "chain",
                    "ip",
                    "bal",
                    "pre",
                    "{ type filter hook prerouting priority -300; }",
                ],
            );
            in_ns(
                ns,
                &[
                    "nft", "add", "rule", "ip", "bal", "pre", "iifname", "front", "ip", "daddr",
                    VIP, "drop",
                ],
            );
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        Self::clean();
    }
}

fn start_balancer(bin: &str, n: usize, key: &str) -> Proc {
    let id = n.to_string();
    let control = format!("198.19.8.{n}:9100");
    Proc::start(
        LBS[n - 1],
        &[
            bin,
            "run",
            "--front",
            "front",
            "--back",
            "back",
            "--vip",
            &format!("{VIP}:80"),
            "--bi-active",
            "on",
            "--node-id",
            &id,
            "--member",
            "1",
            "--member",
            "2",
            "--cluster-key-file",
            key,
            "--drain-ms",
            "1000",
            "--control",
            &control,
            "--local",
            &format!("198.19.8.{n}:80"),
            "--health-check",
            "http",
            "--health-path",
            "/stats",
        ],
        "balancer: ready (",
    )
}

fn membership(n: usize) -> MembershipDoc {
    let a: SocketAddr = format!("198.19.8.{n}:9100").parse().unwrap();
    let (code, body) = with_ns(LBS[n - 1], move || http_get(a, "/membership")).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls balancer `n` until its view is `view` (3 s at most).
fn wait_view(n: usize, view: &[u32]) -> MembershipDoc {
    let t0 = Instant::now();
    loop {
        let m = membership(n);
        if m.view == view {
            return m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "lb{n} view {:?}, expected {view:?}: {m:?}",
            m.view
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn served(n: usize) -> u64 {
    let a: SocketAddr = format!("198.19.8.{n}:80").parse().unwrap();
    let (code, body) = with_ns(LBS[n - 1], move || http_get(a, "/stats")).unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["requests_total"].as_u64().unwrap()
}

/// Flows balancer `n` has opened to its local server.
fn opened(n: usize) -> u64 {
    let a: SocketAddr = format!("198.19.8.{n}:9100").parse().unwrap();
    let (code, body) = with_ns(LBS[n - 1], move || http_get(a, "/stats")).unwrap();
    assert_eq!(code, 200, "{body}");
    let d: balancer::status::StatusDoc = serde_json::from_str(&body).unwrap();
    d.snapshot.targets.iter().map(|t| t.traffic.conns).sum()
}

/// `k` GETs of / from the client to the VIP, each from a fresh port.
fn client_gets(k: usize) -> Vec<String> {
    with_ns(CLI, move || {
        let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
        (0..k)
            .filter_map(|i| match http_get(vip, "/") {
                Ok((200, body)) if body.len() == 75 => None,
                other => Some(format!("request {i}: {other:?}")),
            })
            .collect()
    })
}

#[test]
fn survivor_takes_over_and_joiner_rejoins() {
    if !have_root("survivor_takes_over_and_joiner_rejoins") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_balancer");
    let realserver: PathBuf = PathBuf::from(bin).with_file_name("realserver");
    assert!(
        realserver.exists(),
        "{} is missing: build it first (`cargo build -p realserver`, done by `just test`)",
        realserver.display()
    );
    let rsbin = realserver.to_str().unwrap();
    let kills: usize = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("cluster.key");
    std::fs::write(&keyfile, "failover-test-cluster-key-0123456789\n").unwrap();
    let key = keyfile.to_str().unwrap();

    let _topo = Topology::up();
    let mut locals = Vec::new();
    for (i, ns) in LBS.iter().enumerate() {
        let front = format!("198.19.8.{}:80", i + 1);
        locals.push(Proc::start(
            ns,
            &[
                rsbin,
                "--listen",
                &format!("{VIP}:80"),
                "--listen",
                &front,
                "--threads",
                "1",
            ],
            "listening",
        ));
    }
    let _lb1 = start_balancer(bin, 1, key);
    let mut lb2 = start_balancer(bin, 2, key);
    wait_view(1, &[1, 2]);
    wait_view(2, &[1, 2]);

    let errs = client_gets(40);
    assert!(errs.is_empty(), "{errs:?}");
    let (s1, s2) = (served(1), served(2));
    assert!(s1 > 0 && s2 > 0, "both serve: lb1 {s1}, lb2 {s2}");

    let mut detect = Vec::new();
    for round in 0..kills {
        let pid = lb2.child.id() as libc::pid_t;
        let killed_at = wall_ms();
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` execs the balancer).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let _ = lb2.child.wait();
        let m = wait_view(1, &[1]);
        let change = m
            .changes
            .iter()
            .rev()
            .find(|c| c.cause == Cause::PeerDead && c.node == 2)
            .unwrap_or_else(|| panic!("no peer_dead change recorded: {m:?}"));
        let ms = change.at_unix_ms.saturating_sub(killed_at);
        eprintln!("  round {round}: kill -> lb1 view [1] in {ms} ms");
        detect.push(ms);
        let errs = client_gets(20);
        assert!(errs.is_empty(), "after the kill: {errs:?}");
        assert_eq!(m.owned_buckets, 4096);
        lb2 = start_balancer(bin, 2, key);
        wait_view(1, &[1, 2]);
        let before = served(2);
        let errs = client_gets(40);
        assert!(errs.is_empty(), "after the rejoin: {errs:?}");
        assert!(served(2) > before, "lb2 serves again after rejoining");
    }
    detect.sort_unstable();
    eprintln!(
        "detection over {} kills (ms): {detect:?}, median {}, max {}",
        detect.len(),
        detect[detect.len() / 2],
        detect[detect.len() - 1]
    );
    // dead_after (3) intervals after the last heartbeat heard, which was at
    // most one interval before the kill; slack for a debug build.
    for ms in &detect {
        assert!(
            *ms <= 500,
            "detection {ms} ms > 3 intervals + 1 (+100 ms slack)"
        );
    }

    // lb2's only target dies: down within 1 s, lb2 withdraws, lb1 serves alone.
    let local2 = locals.pop().unwrap();
    let down_at = Instant::now();
    drop(local2);
    wait_view(1, &[1]);
    let m2 = membership(2);
    assert_eq!(m2.state, balancer::heartbeat::State::Withdrawn, "{m2:?}");
    let took = down_at.elapsed();
    eprintln!(
        "  lb2's local server killed -> lb1 view [1] in {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let errs = client_gets(20);
    assert!(errs.is_empty(), "with lb2 withdrawn: {errs:?}");
    locals.push(Proc::start(
        LBS[1],
        &[
            rsbin,
            "--listen",
            &format!("{VIP}:80"),
            "--listen",
            "198.19.8.2:80",
            "--threads",
            "1",
        ],
        "listening",
    ));
    wait_view(1, &[1, 2]);
    wait_view(2, &[1, 2]);

    // Operator drain and undrain through the subcommands.
    for (cmd, view) in [("drain", &[1u32][..]), ("undrain", &[1, 2][..])] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                LBS[1],
                bin,
                cmd,
                "--control",
                "198.19.8.2:9100",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_view(1, view);
    }
    let errs = client_gets(20);
    assert!(errs.is_empty(), "after undrain: {errs:?}");

    // Heartbeat partition (the documented limit): only the heartbeats
    // between the two are blocked, both still see every client frame. Each
    // declares the other dead and claims every bucket: new flows are
    // answered by both. Measured here, not hidden; then the views converge.
    in_ns(
        LBS[1],
        &[
            "nft",
            "add table inet hb; add chain inet hb in { type filter hook input priority 0; }; \
             add chain inet hb out { type filter hook output priority 0; }; \
             add rule inet hb in udp dport 7946 drop; add rule inet hb out udp dport 7946 drop",
        ],
    );
    wait_view(1, &[1]);
    wait_view(2, &[2]);
    let (o1, o2) = (opened(1), opened(2));
    let n = 20;
    let errs = client_gets(n);
    let (d1, d2) = (opened(1) - o1, opened(2) - o2);
    let resets = errs.iter().filter(|e| e.contains("reset")).count();
    eprintln!(
        "  heartbeat partition: {n} connections, flows opened by lb1 {d1} and lb2 {d2} \
         (both answered {} SYNs), {} client errors ({resets} resets)",
        d1.min(d2),
        errs.len()
    );
    assert!(
        d1 >= n as u64 && d2 >= n as u64,
        "both claim every bucket: {d1} {d2}"
    );
    in_ns(LBS[1], &["nft", "delete table inet hb"]);
    wait_view(1, &[1, 2]);
    wait_view(2, &[1, 2]);
    let errs = client_gets(20);
    assert!(errs.is_empty(), "after the partition healed: {errs:?}");

    // Graceful leave: lb1 takes over at once, lb2 drains and exits 0.
    let pid = lb2.child.id() as libc::pid_t;
    let term_at = wall_ms();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let m = wait_view(1, &[1]);
    let change = m.changes.last().unwrap();
    assert_eq!(change.cause, Cause::PeerLeft, "{m:?}");
    let took = change.at_unix_ms.saturating_sub(term_at);
    eprintln!("  SIGTERM -> lb1 view [1] in {took} ms");
    assert!(
        took < 100,
        "a leave is taken at once, not after dead-after: {took} ms"
    );
    let errs = client_gets(20);
    assert!(errs.is_empty(), "after the leave: {errs:?}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = lb2.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "lb2 did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", lb2.log());
    assert!(lb2.log().contains("balancer: leaving"), "{}", lb2.log());
    // No heartbeat was refused in a cluster that shares one key.
    let m = membership(1);
    assert!(m.counters.rejected.values().all(|v| *v == 0), "{m:?}");
    drop(locals);
}
