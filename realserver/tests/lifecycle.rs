//! Startup errors, signals and graceful shutdown.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn port_in_use_is_one_clear_line_and_exit_1() {
    // A plain listener without SO_REUSEPORT holds the port.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let (code, err) = run_failing(Command::new(bin()).args(["--listen", &addr]));
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn unassigned_address_fails_unless_freebind() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here. Binding sends nothing.
    let (code, err) = run_failing(Command::new(bin()).args(["--listen", "192.0.2.1:0"]));
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("address not available"), "{err}");
    assert!(err.contains("--freebind"), "{err}");

    let mut srv = start(&[
        "--listen",
        "192.0.2.1:0",
        "--listen",
        "127.0.0.1:0",
        "--freebind",
        "--threads",
        "1",
    ]);
    assert_eq!(srv.addrs[0].ip().to_string(), "192.0.2.1");
    srv.signal(libc::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn privileged_port_without_permission_is_one_clear_line() {
    let start_port: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start_port <= 1 {
        eprintln!("skipped: every port is unprivileged on this host");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            bin(),
        ]);
        c
    } else {
        Command::new(bin())
    };
    cmd.args(["--listen", "127.0.0.1:1"]);
    let (code, err) = run_failing(&mut cmd);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn sigterm_finishes_in_flight_request_then_exits_0() {
    // Each request burns 400 ms of worker CPU, so the second one is surely in flight.
    let mut srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--work-us",
        "400000",
    ]);
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_one(&mut s, false).status, 200);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    srv.signal(libc::SIGTERM);
    let rest = read_to_eof(&mut s);
    let r = parse_responses(&rest, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, PAGE.as_bytes());
    // (read_to_eof returned: the server closed the connection after the reply.)
    let st = srv.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    // New connections are refused once shut down.
    assert!(std::net::TcpStream::connect(srv.addr()).is_err());
}

#[test]
fn sigint_exits_0_and_idle_connections_are_closed() {
    let mut srv = start(&["--listen", "127.0.0.1:0", "--threads", "2"]);
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_one(&mut s, false).status, 200);
    srv.signal(libc::SIGINT);
    assert!(read_to_eof(&mut s).is_empty());
    assert_eq!(srv.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(srv.stderr_lines().is_empty());
}

#[test]
fn shutdown_bound_cuts_stuck_connections() {
    // A client that sent half a head keeps its connection busy; the bound ends it.
    let mut srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--shutdown-timeout",
        "0.3",
        "--header-timeout",
        "30",
    ]);
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)).code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let lines = srv.stderr_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("closed 1 connection(s) abruptly")),
        "{lines:?}"
    );
}

#[test]
fn second_server_on_same_port_is_refused_despite_reuseport() {
    let first = start(&["--listen", "127.0.0.1:0", "--threads", "2"]);
    let addr = first.addr().to_string();
    let (code, err) = run_failing(Command::new(bin()).args(["--listen", &addr]));
    assert_eq!(code, Some(1));
    assert!(err.contains("address already in use"), "{err}");
    // The first one is unaffected and still answers.
    let r = parse_responses(&exchange(first.addr(), b"GET / HTTP/1.0\r\n\r\n"), false);
    assert_eq!(r[0].status, 200);
}
