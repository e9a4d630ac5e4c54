//! Namespace tests of the whole testbed (need root: they create and delete
//! `bal-*` namespaces and cgroups). They share global state, so everything
//! runs as one sequence in one test function, and a guard runs
//! `harness down` at the end even when an assertion fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::cgroup::CgroupFlavor;
use harness::discover::discover;
use harness::privilege::NEED_ROOT;
use harness::state::STATE_DIR;
use harness::Testbed;

mod common;

use common::harness;

const BIN: &str = env!("CARGO_BIN_EXE_harness");

fn ok(args: &[&str]) -> String {
    let o = harness(args);
    assert!(
        o.status.success(),
        "harness {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ours_left() -> harness::plan::Inventory {
    discover(CgroupFlavor::detect().ok().as_ref())
}

fn assert_clean(when: &str) {
    let inv = ours_left();
    assert!(inv.is_empty(), "{when}: leftovers {inv:?}");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !netns.contains("bal-"),
        "{when}: ip netns list shows {netns}"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("bal-"),
        "{when}: root link with prefix"
    );
    assert!(
        !std::path::Path::new(STATE_DIR).join("state.json").exists(),
        "{when}: state file left"
    );
}

/// The root namespace never gets a testbed address or route.
fn assert_root_untouched() {
    for args in [&["-o", "addr"][..], &["route", "show", "table", "all"][..]] {
        let o = Command::new("ip").args(args).output().unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            !s.contains("198.18.") && !s.contains("198.19."),
            "root namespace has testbed state: {s}"
        );
    }
}

/// A TCP listener bound inside namespace `ns` (setns on a short-lived
/// thread: the socket stays in that namespace). Accepts one connection
/// within 10 s, writes `greeting`, and reports whether it served.
fn serve_once_in(ns: &str, addr: &str, greeting: &'static str) -> thread::JoinHandle<bool> {
    let l = listen_in(ns, addr);
    l.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.write_all(greeting.as_bytes()).unwrap();
                    return true;
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        false
    })
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on the calling thread only, with a valid namespace fd.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}");
}

/// A listening socket inside `ns` (no accept).
fn listen_in(ns: &str, addr: &str) -> TcpListener {
    let ns = ns.to_string();
    let addr: SocketAddr = addr.parse().unwrap();
    thread::spawn(move || {
        enter(&ns);
        TcpListener::bind(addr).unwrap()
    })
    .join()
    .unwrap()
}

/// Sends a SYN from `src` (bound) to `dst:port` inside `ns`; returns the
/// socket (close it to stop the retransmissions).
fn syn_from_in(ns: &str, src: [u8; 4], dst: [u8; 4], port: u16) -> std::os::fd::OwnedFd {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter(&ns);
        let sin = |a: [u8; 4], p: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: p.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls on a fresh descriptor with valid sockaddr_in pointers.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            assert!(fd >= 0);
            let (s, d) = (sin(src, 0), sin(dst, port));
            assert_eq!(
                libc::bind(fd, (&s as *const libc::sockaddr_in).cast(), len),
                0,
                "bind VIP"
            );
            libc::connect(fd, (&d as *const libc::sockaddr_in).cast(), len);
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }
    })
    .join()
    .unwrap()
}

/// From `node` (via `harness exec`), connects to ip:port and reads a line.
fn tcp_line_from(node: &str, ip: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port} && head -n1 <&3");
    let o = harness(&["exec", node, "--", "timeout", "5", "bash", "-c", &script]);
    assert!(
        o.status.success(),
        "{node} -> {ip}:{port}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn check_tcp(listen_ns: &str, ip: &str, port: u16, from: &str) {
    let greeting: &'static str = Box::leak(format!("hello from {listen_ns}\n").into_boxed_str());
    let server = serve_once_in(listen_ns, &format!("{ip}:{port}"), greeting);
    assert_eq!(tcp_line_from(from, ip, port), greeting.trim());
    assert!(server.join().unwrap());
}

fn in_addr_errors(node: &str) -> u64 {
    let snmp = ok(&["exec", node, "--", "cat", "/proc/net/snmp"]);
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (h, v) = (ip.next().unwrap(), ip.next().unwrap());
    let i = h
        .split_whitespace()
        .position(|x| x == "InAddrErrors")
        .unwrap();
    v.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Packets counted by the balancer namespace's nftables rule that drops
/// VIP packets arriving on `front`.
fn nft_vip_drops(node: &str) -> u64 {
    let out = ok(&[
        "exec",
        node,
        "--",
        "nft",
        "list",
        "chain",
        "ip",
        "bal",
        "prerouting",
    ]);
    let line = out
        .lines()
        .find(|l| l.contains("iifname \"front\"") && l.contains("drop"))
        .unwrap_or_else(|| panic!("{node}: no VIP drop rule in\n{out}"));
    let mut w = line.split_whitespace();
    w.find(|x| *x == "packets").unwrap();
    w.next().unwrap().parse().unwrap()
}

/// A SYN to the VIP from client1 must reach every balancer (multicast MAC,
/// flooded by the bridge) and be dropped there: by the nftables rule in
/// prerouting (the LB holds the VIP on its TUN `vip0`), so its kernel never
/// answers, and its IP layer never sees it (no InAddrErrors either).
fn check_vip_reaches(lbs: &[&str]) {
    let before: Vec<(u64, u64)> = lbs
        .iter()
        .map(|l| (nft_vip_drops(l), in_addr_errors(l)))
        .collect();
    let o = harness(&[
        "exec",
        "client1",
        "--",
        "timeout",
        "1",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/198.18.1.100/80",
    ]);
    assert!(
        !o.status.success(),
        "nobody should answer the VIP without a balancer"
    );
    for (l, (drops, addr_errors)) in lbs.iter().zip(before) {
        assert!(
            nft_vip_drops(l) > drops,
            "{l} did not receive the VIP frame (nft drop counter unchanged)"
        );
        assert_eq!(
            in_addr_errors(l),
            addr_errors,
            "{l}: the VIP frame got past the nft drop"
        );
    }
}

fn check_router_vip() {
    let r = ok(&["exec", "router", "--", "ip", "route", "get", "198.18.1.100"]);
    assert!(r.contains("dev eth1"), "router route to VIP: {r}");
    let n = ok(&[
        "exec",
        "router",
        "--",
        "ip",
        "neigh",
        "show",
        "198.18.1.100",
        "dev",
        "eth1",
    ]);
    assert!(
        n.contains("01:00:5e:12:01:64") && n.contains("PERMANENT"),
        "router neigh: {n}"
    );
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn testbed_lifecycle() {
    let Some(_testbed) = common::hold_testbed("testbed_lifecycle") else {
        return;
    };
    ok(&["down"]);
    assert_clean("initial down");

    // Without privileges: one clear line, exit 1.
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                BIN,
                "up",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&o.stderr), format!("{NEED_ROOT}\n"));
    } else {
        eprintln!("!!!! SKIP non-root check: setpriv not installed");
    }

    // --dry-run prints a valid script and creates nothing.
    let script = ok(&[
        "up",
        "--dry-run",
        "--topology",
        "2lb-2rs",
        "--profile",
        "paper",
    ]);
    assert!(script.starts_with("#!/bin/sh\n") && script.contains("\nset -e\n"));
    assert!(script.contains("ip netns add bal-lb2"));
    let mut sh = Command::new("sh")
        .arg("-n")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        sh.wait().unwrap().success(),
        "dry-run script is not valid sh"
    );
    ok(&["down", "--dry-run"]);
    assert_clean("after dry runs");

    // The dry-run script really is replayable, and `down` removes what it
    // made even though no state file records it.
    let script = ok(&[
        "up",
        "--dry-run",
        "--topology",
        "1lb-1rs",
        "--profile",
        "paper",
    ]);
    let mut sh = Command::new("sh").stdin(Stdio::piped()).spawn().unwrap();
    sh.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        sh.wait().unwrap().success(),
        "replaying the dry-run script failed"
    );
    let inv = ours_left();
    assert_eq!(inv.namespaces.len(), 7, "{inv:?}");
    assert_eq!(inv.cgroups.len(), 2, "{inv:?}");
    let down_script = ok(&["down", "--dry-run"]);
    assert!(
        down_script.contains("ip netns delete bal-lb1"),
        "{down_script}"
    );
    ok(&["down"]);
    assert_clean("after replayed script");

    // 1lb-1rs: connectivity, VIP delivery, exit codes, isolation.
    let out = ok(&["up", "--topology", "1lb-1rs"]);
    assert!(out.contains("is up"), "{out}");
    check_tcp("bal-lb1", "198.18.1.11", 7001, "client1"); // client -> router -> lb front
    check_tcp("bal-rs1", "198.18.11.11", 7002, "lb1"); // lb back -> rs
    check_router_vip();
    check_vip_reaches(&["lb1"]);
    assert_root_untouched();
    let o = harness(&["exec", "rs1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "exit code forwarded");
    let o = harness(&["exec", "nope", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no node `nope`"));
    let st = ok(&["status"]);
    assert!(
        st.contains("state: up; topology 1lb-1rs") && st.contains("bal-lb1"),
        "{st}"
    );
    assert!(st.contains("198.18.11.1/24 (back:0)"), "{st}");
    assert!(
        st.contains("198.18.1.100/32 (vip0:0)"),
        "VIP on the TUN: {st}"
    );
    let rp = ok(&[
        "exec",
        "lb1",
        "--",
        "sysctl",
        "-n",
        "net.ipv4.conf.vip0.rp_filter",
        "net.ipv4.conf.all.rp_filter",
    ]);
    assert_eq!(rp.split_whitespace().collect::<Vec<_>>(), ["0", "0"]);

    // up twice: idempotent (redo), still works.
    ok(&["up", "--topology", "1lb-1rs"]);
    ok(&["up", "--topology", "1lb-1rs"]);
    let inv = ours_left();
    assert_eq!(inv.namespaces.len(), 7, "{inv:?}");
    check_tcp("bal-lb1", "198.18.1.11", 7003, "client2");

    // paper profile on 2lb-2rs: quotas, tbf, cgroup placement, both LBs get VIP frames.
    ok(&["up", "--topology", "2lb-2rs", "--profile", "paper"]);
    let cg = CgroupFlavor::detect().expect("this machine has a cpu controller");
    let q = |node: &str| match &cg {
        CgroupFlavor::V1 { .. } => {
            read(&format!("{}/cpu.cfs_quota_us", cg.node_dir(node).display()))
        }
        CgroupFlavor::V2 { .. } => read(&format!("{}/cpu.max", cg.node_dir(node).display())),
    };
    let (lbq, rsq) = match cg {
        CgroupFlavor::V1 { .. } => ("28000", "20000"),
        CgroupFlavor::V2 { .. } => ("28000 100000", "20000 100000"),
    };
    assert_eq!(q("lb1"), lbq);
    assert_eq!(q("lb2"), lbq);
    assert_eq!(q("rs1"), rsq);
    assert_eq!(q("rs2"), rsq);
    assert!(!cg.node_dir("client1").exists() && !cg.node_dir("router").exists());
    for (node, dev) in [("lb1", "front"), ("rs2", "eth0"), ("sw", "bal-lb2-0")] {
        let tc = ok(&["exec", node, "--", "tc", "qdisc", "show", "dev", dev]);
        assert!(
            tc.contains("tbf") && tc.contains("rate 100Mbit"),
            "{node}:{dev}: {tc}"
        );
    }
    let cgself = ok(&["exec", "lb2", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        cgself.contains("/bal-lb2"),
        "exec joins the node cgroup: {cgself}"
    );
    let cgself = ok(&["exec", "client1", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        !cgself.contains("/bal-"),
        "clients are unconstrained: {cgself}"
    );
    check_vip_reaches(&["lb1", "lb2"]);
    check_tcp("bal-rs2", "198.18.12.11", 7004, "lb2");

    // Library handle: spawned processes land in the node's cgroup and die with `down`.
    let tb = Testbed::attach(std::path::Path::new(STATE_DIR)).unwrap();
    let mut p = tb
        .spawn("rs1", &["sleep".into(), "30".into()], |_| {})
        .unwrap();
    let mut in_cg = false;
    for _ in 0..100 {
        in_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", p.id()))
            .unwrap_or_default()
            .contains("/bal-rs1");
        if in_cg {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(in_cg, "spawned process is in bal-rs1's cgroup");
    ok(&["down"]);
    assert_clean("after down with a process running");
    let t0 = Instant::now();
    let status = p.wait().unwrap();
    assert!(
        !status.success() && t0.elapsed() < Duration::from_secs(5),
        "down killed the spawned process"
    );

    // DR variant: rs1 holds the VIP on lo, replies reach clients via the router leg.
    ok(&["up", "--topology", "1lb-1rs-dr"]);
    let lo = ok(&["exec", "rs1", "--", "ip", "-o", "addr", "show", "dev", "lo"]);
    assert!(
        lo.contains("198.18.1.100/32") && lo.contains("lo:0"),
        "{lo}"
    );
    let arp = ok(&[
        "exec",
        "rs1",
        "--",
        "sysctl",
        "-n",
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.eth0.arp_announce",
    ]);
    assert_eq!(arp.split_whitespace().collect::<Vec<_>>(), ["1", "2"]);
    let r = ok(&[
        "exec",
        "rs1",
        "--",
        "ip",
        "route",
        "get",
        "198.18.0.11",
        "from",
        "198.18.1.100",
    ]);
    assert!(
        r.contains("via 198.18.11.254"),
        "DR replies go to the router leg: {r}"
    );
    check_tcp("bal-router", "198.18.11.254", 7005, "rs1");
    check_router_vip();
    // A SYN sourced from the VIP on rs1 reaches client1 through the router
    // (loose rp_filter); the client's SYN-ACK then goes to the LBs, as DR wants.
    let _listener = listen_in("bal-client1", "198.18.0.11:7007");
    let _syn = syn_from_in("bal-rs1", [198, 18, 1, 100], [198, 18, 0, 11], 7007);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = ok(&["exec", "client1", "--", "ss", "-Htn", "state", "syn-recv"]);
        if seen.contains("198.18.1.100") {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.contains("198.18.1.100"),
        "client1 got no SYN from the VIP: {seen:?}"
    );
    ok(&["down"]);
    assert_clean("after DR down");

    // A failing step halfway: rolled back, nothing left.
    let o = Command::new(BIN)
        .args(["up", "--topology", "2lb-2rs", "--profile", "paper"])
        .env("HARNESS_FAIL_AT_STEP", "60")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("step 60/") && err.contains("nothing left behind"),
        "{err}"
    );
    assert_clean("after injected failure");

    // Ctrl-C during up: rolled back (exit 130), or up had already finished.
    let mut child = Command::new(BIN)
        .args(["up", "--topology", "2lb-2rs", "--profile", "paper"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(60));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let code = child.wait().unwrap().code();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    match code {
        Some(130) => {
            assert!(
                err.contains("interrupted") && err.contains("nothing left behind"),
                "{err}"
            );
            assert_clean("after Ctrl-C");
        }
        Some(0) => {
            eprintln!("note: up finished before SIGINT arrived");
            ok(&["down"]);
        }
        other => panic!("unexpected exit {other:?} after SIGINT: {err}"),
    }

    // kill -9 mid-way, at several moments: the next down (or up) cleans everything.
    for (i, ms) in [40u64, 90, 150].into_iter().enumerate() {
        let mut child = Command::new(BIN)
            .args(["up", "--topology", "2lb-2rs", "--profile", "paper"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if i == 1 {
            // The next up cleans the debris and builds a working testbed.
            ok(&["up", "--topology", "1lb-1rs"]);
            assert_eq!(ours_left().namespaces.len(), 7);
            check_tcp("bal-lb1", "198.18.1.11", 7006, "client3");
        }
        ok(&["down"]);
        assert_clean(&format!("after kill -9 at {ms} ms"));
    }
}
