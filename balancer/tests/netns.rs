//! End-to-end test of the `balancer` binary in network namespaces it
//! creates itself (needs root; prints a loud SKIP otherwise):
//!
//! ```text
//!  bal-tcli  cli0 198.19.0.10 ── front 198.19.0.1   bal-tlb   back 198.19.2.1 ── eth0 198.19.2.10  bal-trs
//!            clidr 198.19.3.1 ─────────────── (DR return path) ─────────────── rsdr 198.19.3.2
//!                                     vip0 (TUN) 198.19.1.100/32
//! ```
//!
//! The client routes everything via the LB front (so the VIP's frames go to
//! the front MAC); the LB kernel has no VIP on front, drops front→VIP in
//! nftables prerouting and does not forward (ip_forward=0): only the
//! user-space balancer moves packets. Phases: NAT with bi-active off (via
//! `--io pnet`) and on (batched `--io mmsg`), malformed frames, the `stats`
//! CLI, NAT on again through the default receive rings (`--io ring`), DR
//! (via `--io direct`), and SIGTERM → exit 0.
//! Everything lives in 198.19.0.0/16 and is deleted on drop, even on panic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use balancer::status::StatusDoc;
use balancer::wire::build::{tcp_frame, FrameSpec};
use balancer::wire::{Ipv4Packet, MacAddr, TcpFlags};
use common::{drop_vip_on_front, have_root, http_get, in_ns, sh, with_ns, Proc};

const CLI: &str = "bal-tcli";
const LB: &str = "bal-tlb";
const RS: &str = "bal-trs";
const VIP: &str = "198.19.1.100";
const CONTROL: &str = "198.19.0.1:9100";

/// Deletes the namespaces (and with them every veth, address and rule).
struct Topology;

impl Topology {
    fn clean() {
        for ns in [CLI, LB, RS] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    fn up() -> Topology {
        Self::clean();
        let t = Topology;
        for ns in [CLI, LB, RS] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "-n", LB, "link", "add", "front", "type", "veth", "peer", "name", "cli0",
            "netns", CLI,
        ]);
        sh(&[
            "ip", "-n", LB, "link", "add", "back", "type", "veth", "peer", "name", "eth0", "netns",
            RS,
        ]);
        sh(&[
            "ip", "-n", RS, "link", "add", "rsdr", "type", "veth", "peer", "name", "clidr",
            "netns", CLI,
        ]);
        for (ns, dev, addr) in [
            (CLI, "cli0", "198.19.0.10/24"),
            (CLI, "clidr", "198.19.3.1/24"),
            (LB, "front", "198.19.0.1/24"),
            (LB, "back", "198.19.2.1/24"),
            (RS, "eth0", "198.19.2.10/24"),
            (RS, "rsdr", "198.19.3.2/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            in_ns(
                ns,
                &[
                    "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                ],
            );
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        sh(&[
            "ip",
            "-n",
            CLI,
            "route",
            "add",
            "default",
            "via",
            "198.19.0.1",
        ]);
        sh(&[
            "ip",
            "-n",
            RS,
            "route",
            "add",
            "default",
            "via",
            "198.19.2.1",
        ]);
        // LB: the VIP on a TUN only; the kernel neither forwards nor takes
        // front->VIP packets.
        sh(&[
            "ip", "-n", LB, "tuntap", "add", "dev", "vip0", "mode", "tun",
        ]);
        sh(&[
            "ip",
            "-n",
            LB,
            "addr",
            "add",
            &format!("{VIP}/32"),
            "dev",
            "vip0",
        ]);
        sh(&["ip", "-n", LB, "link", "set", "vip0", "up"]);
        in_ns(LB, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        for ns in [LB, CLI] {
            for dev in ["all", "default"] {
                in_ns(
                    ns,
                    &["sysctl", "-qw", &format!("net.ipv4.conf.{dev}.rp_filter=0")],
                );
            }
        }
        in_ns(LB, &["sysctl", "-qw", "net.ipv4.conf.vip0.rp_filter=0"]);
        in_ns(CLI, &["sysctl", "-qw", "net.ipv4.conf.clidr.rp_filter=0"]);
        drop_vip_on_front(LB, VIP);
        // RS: ready for DR too (VIP on lo, no ARP for it).
        sh(&[
            "ip",
            "-n",
            RS,
            "addr",
            "add",
            &format!("{VIP}/32"),
            "dev",
            "lo",
        ]);
        for dev in ["all", "eth0"] {
            in_ns(
                RS,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{dev}.arp_ignore=1"),
                ],
            );
            in_ns(
                RS,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{dev}.arp_announce=2"),
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

/// `n` GETs of / from the client to the VIP, one connection each; returns failures.
/// NAT with bi-active on (rr over the local server and the real one).
const NAT_ON: &[&str] = &[
    "--method",
    "nat",
    "--bi-active",
    "on",
    "--real",
    "198.19.2.10:8080",
];

/// Sends `n` requests through `lb` (NAT/on): all must succeed and round
/// robin must split them about evenly. Returns (real server, local) counts.
fn served_split(lb: &Proc, n: u64) -> (u64, u64) {
    let (rs0, lo0) = (rs_served(), local_served());
    let errs = client_gets(n as usize);
    assert!(errs.is_empty(), "NAT/on failures: {errs:?}\n{}", lb.log());
    let (rs_n, lo_n) = (rs_served() - rs0, local_served() - lo0);
    assert_eq!(rs_n + lo_n, n, "rs {rs_n} + local {lo_n}");
    assert!(
        rs_n >= n * 2 / 5 && lo_n >= n * 2 / 5,
        "rr split: rs {rs_n}, local {lo_n}"
    );
    (rs_n, lo_n)
}

fn client_gets(n: usize) -> Vec<String> {
    with_ns(CLI, move || {
        let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let mut errs = Vec::new();
        for i in 0..n {
            match http_get(vip, "/") {
                Ok((200, body)) if body.len() == 75 => {}
                other => errs.push(format!("request {i}: {other:?}")),
            }
        }
        errs
    })
}

fn served(ns: &str, addr: &str) -> u64 {
    let a: SocketAddr = addr.parse().unwrap();
    let (code, body) = with_ns(ns, move || http_get(a, "/stats")).unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["requests_total"].as_u64().unwrap()
}

fn lb_doc() -> StatusDoc {
    let a: SocketAddr = CONTROL.parse().unwrap();
    let (code, body) = with_ns(LB, move || http_get(a, "/stats")).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn rs_served() -> u64 {
    served(RS, "198.19.2.10:8080")
}

fn local_served() -> u64 {
    served(LB, &format!("{VIP}:80"))
}

fn start_balancer(bin: &str, extra: &[&str]) -> Proc {
    let mut argv = vec![
        bin,
        "run",
        "--front",
        "front",
        "--back",
        "back",
        "--vip",
        "198.19.1.100:80",
        "--scheduler",
        "rr",
        "--table-size",
        "4096",
    ];
    argv.extend_from_slice(extra);
    let p = Proc::start(LB, &argv, "balancer: ready (");
    // Wait until ARP has resolved the real server.
    let t0 = Instant::now();
    loop {
        let d = lb_doc();
        if d.process.unresolved.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "ARP unresolved: {:?}",
            d.process
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn stop(mut p: Proc) -> String {
    sh(&["kill", "-TERM", &p.child.id().to_string()]);
    let status = p.wait_exit(Duration::from_secs(5), "balancer ignored SIGTERM");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        p.log()
    );
    let log = p.log();
    assert!(log.contains("balancer: exiting after"), "{log}");
    log
}

/// Sends malformed frames from the client to the LB front MAC.
fn inject_garbage(lb_front: MacAddr) {
    with_ns(CLI, move || {
        use pnet::datalink::{self, Channel};
        let iface = datalink::interfaces()
            .into_iter()
            .find(|i| i.name == "cli0")
            .unwrap();
        let m = iface.mac.unwrap();
        let src = MacAddr([m.0, m.1, m.2, m.3, m.4, m.5]);
        let Ok(Channel::Ethernet(mut tx, _rx)) = datalink::channel(&iface, Default::default())
        else {
            panic!("no channel on cli0");
        };
        let good = || {
            tcp_frame(&FrameSpec {
                src_mac: src,
                dst_mac: lb_front,
                src_ip: "198.19.0.10".parse().unwrap(),
                dst_ip: VIP.parse().unwrap(),
                src_port: 40000,
                dst_port: 80,
                flags: TcpFlags::SYN,
                ..Default::default()
            })
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        // Truncated: the IPv4 header is cut.
        frames.push(good()[..24].to_vec());
        // Bad IPv4 header checksum.
        let mut f = good();
        f[14 + 10] ^= 0xff;
        frames.push(f);
        // A fragment.
        let mut f = good();
        f[14 + 6] |= 0x20;
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        frames.push(f);
        // UDP to the VIP.
        let mut f = good();
        f[14 + 9] = 17;
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        frames.push(f);
        // IPv4 header claiming version 6.
        let mut f = good();
        f[14] = 0x65;
        frames.push(f);
        // Total length beyond the frame.
        let mut f = good();
        f[14 + 2] = 0x05;
        frames.push(f);
        // A full-size frame of junk with the IPv4 ethertype.
        let mut f = good();
        f.resize(1514, 0xa5);
        f[14] = 0xff;
        frames.push(f);
        for f in &frames {
            tx.send_to(f, None).unwrap().unwrap();
        }
    });
}

#[test]
fn balancer_end_to_end_in_namespaces() {
    if !have_root("balancer_end_to_end_in_namespaces") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_balancer");
    let realserver: PathBuf = PathBuf::from(bin).with_file_name("realserver");
    if !realserver.exists() {
        eprintln!(
            "\n*** SKIP: {} is missing: build it first (`cargo build -p realserver`, done by `just test`) ***\n",
            realserver.display()
        );
        return;
    }
    let rsbin = realserver.to_str().unwrap();
    let t0 = Instant::now();
    let _topo = Topology::up();
    let _rs = Proc::start(
        RS,
        &[
            rsbin,
            "--listen",
            "198.19.2.10:8080",
            "--listen",
            "198.19.1.100:80",
            "--threads",
            "1",
            "--name",
            "rs1",
        ],
        "listening",
    );
    let _local = Proc::start(
        LB,
        &[
            rsbin,
            "--listen",
            "198.19.1.100:80",
            "--threads",
            "1",
            "--name",
            "lb1",
        ],
        "listening",
    );
    let lb_front: MacAddr = in_ns(LB, &["cat", "/sys/class/net/front/address"])
        .trim()
        .parse()
        .unwrap();

    // 1. NAT, bi-active off, pnet I/O: the real server serves everything.
    let lb = start_balancer(
        bin,
        &[
            "--io",
            "pnet",
            "--method",
            "nat",
            "--bi-active",
            "off",
            "--real",
            "198.19.2.10:8080",
        ],
    );
    let (rs0, lo0) = (rs_served(), local_served());
    let errs = client_gets(200);
    assert!(errs.is_empty(), "NAT/off failures: {errs:?}\n{}", lb.log());
    assert_eq!(rs_served() - rs0, 200);
    assert_eq!(local_served() - lo0, 0, "bi-active off: local served some");
    let d = lb_doc();
    assert_eq!(d.snapshot.targets.len(), 1, "{:?}", d.snapshot.targets);
    assert_eq!(d.snapshot.targets[0].traffic.conns, 200);
    assert!(
        d.snapshot.targets[0].traffic.out_pkts >= 600,
        "{:?}",
        d.snapshot.targets[0]
    );
    assert_eq!(d.snapshot.delivered_local, 0);
    assert!(d.process.cpu_secs > 0.0);
    let log = stop(lb);
    assert!(log.contains("real[0] 198.19.2.10 is at"), "{log}");

    // 2. NAT, bi-active on (rr), batched recvmmsg I/O: both serve, the sums add up.
    let lb = start_balancer(bin, &[&["--io", "mmsg"], NAT_ON].concat());
    let (rs_n, lo_n) = served_split(&lb, 200);
    let d = lb_doc();
    assert_eq!(d.snapshot.targets[0].name, "local");
    assert_eq!(d.snapshot.targets[0].traffic.conns, lo_n);
    assert_eq!(d.snapshot.targets[1].traffic.conns, rs_n);
    assert!(d.snapshot.delivered_local > 0);
    assert_eq!(d.process.tun_errors, 0);

    // 3. Malformed frames are counted and the balancer survives.
    let before = d.snapshot.drops.clone();
    inject_garbage(lb_front);
    std::thread::sleep(Duration::from_millis(200));
    let d = lb_doc();
    let delta = |k: &str| d.snapshot.drops[k] - before[k];
    assert!(delta("truncated") >= 2, "{:?}", d.snapshot.drops);
    assert!(delta("bad_checksum") >= 1, "{:?}", d.snapshot.drops);
    assert!(delta("fragment") >= 1, "{:?}", d.snapshot.drops);
    assert!(delta("not_tcp") >= 1, "{:?}", d.snapshot.drops);
    assert!(delta("malformed") >= 2, "{:?}", d.snapshot.drops);
    let errs = client_gets(20);
    assert!(errs.is_empty(), "after garbage: {errs:?}");

    // 4. The stats CLI renders the table from the JSON document.
    let table = in_ns(LB, &[bin, "stats", "--control", CONTROL]);
    assert!(table.contains("TCP  198.19.1.100:80"), "{table}");
    assert!(table.contains("  -> 198.19.2.10:8080"), "{table}");
    assert!(table.contains("Process: pid"), "{table}");
    eprintln!("balancer stats:\n{table}");
    let list = in_ns(LB, &[bin, "stats", "--control", CONTROL, "--list"]);
    assert!(list.contains("Masq"), "{list}");
    let json = in_ns(LB, &[bin, "stats", "--control", CONTROL, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["drops"]["truncated"].as_u64().unwrap() >= 2);
    let log = stop(lb);
    assert!(log.contains("balancer: batches of up to 64:"), "{log}");
    eprintln!("{}", log.lines().last().unwrap_or_default());

    // 4b. The same NAT/on service through the default TPACKET_V2 receive
    // rings, of 56 slots here (fewer than a batch of 64, so batches stop at
    // the ring's size, and 300 connections wrap it dozens of times on each
    // interface).
    let lb = start_balancer(bin, &[&["--rcvbuf", "262144"], NAT_ON].concat());
    served_split(&lb, 300);
    let before = lb_doc();
    assert_eq!(before.process.io, "ring");
    assert!(
        before.snapshot.front_rx >= 300 * 4,
        "{:?}",
        before.snapshot.front_rx
    );
    inject_garbage(lb_front);
    std::thread::sleep(Duration::from_millis(200));
    let d = lb_doc();
    let delta = |k: &str| d.snapshot.drops[k] - before.snapshot.drops[k];
    assert!(delta("truncated") >= 2, "{:?}", d.snapshot.drops);
    assert!(delta("bad_checksum") >= 1, "{:?}", d.snapshot.drops);
    let log = stop(lb);
    assert!(
        log.contains("receive rings (--io ring): 56 slots of 4176 bytes"),
        "{log}"
    );
    assert!(log.contains("ring reads"), "{log}");
    eprintln!("{}", log.lines().last().unwrap_or_default());

    // 5. DR, bi-active off, per-frame direct I/O: MAC rewrite only, the RS
    // answers the client directly.
    sh(&[
        "ip",
        "-n",
        RS,
        "route",
        "add",
        "198.19.0.0/24",
        "via",
        "198.19.3.1",
    ]);
    let lb = start_balancer(
        bin,
        &[
            "--io",
            "direct",
            "--method",
            "dr",
            "--bi-active",
            "off",
            "--real",
            "198.19.2.10:80",
        ],
    );
    let (rs0, lo0) = (rs_served(), local_served());
    let errs = client_gets(200);
    assert!(errs.is_empty(), "DR failures: {errs:?}\n{}", lb.log());
    assert_eq!(rs_served() - rs0, 200);
    assert_eq!(local_served() - lo0, 0);
    let d = lb_doc();
    assert_eq!(d.snapshot.targets[0].forward, "Route");
    assert_eq!(d.snapshot.targets[0].traffic.conns, 200);
    assert_eq!(
        d.snapshot.targets[0].traffic.out_pkts, 0,
        "DR replies bypass the balancer"
    );
    stop(lb);
    eprintln!("namespace test took {:.1} s", t0.elapsed().as_secs_f64());
}
