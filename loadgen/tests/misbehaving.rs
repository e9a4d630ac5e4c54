//! Each misbehaving server is classified into httperf's error classes, never hangs past the
//! timeout, never panics.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Run `conns` sequential connections against `port` with a 0.5 s timeout; return the result.
fn run(port: u16, conns: &str, extra: &[&str]) -> (loadgen::result::RunResult, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port_s = port.to_string();
    let mut args = vec![
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--num-conns",
        conns,
        "--timeout=0.5",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = loadgen(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (result(&json), stdout(&o))
}

#[test]
fn refused() {
    let (r, out) = run(closed_port(), "3", &[]);
    assert_eq!(r.errors.conn_refused, 3);
    assert_eq!(r.errors_total(), 3);
    assert_eq!(r.counts.replies_received, 0);
    assert!(out.contains("Errors: total 3 client-timo 0 socket-timo 0 connrefused 3 connreset 0"));
    // -v adds the latency lines; with no reply they must not read as zero latency.
    let (_, out) = run(closed_port(), "3", &["-v"]);
    assert!(
        out.contains("Latency [ms] (from scheduled send): n/a (no replies)"),
        "{out}"
    );
    assert!(
        out.contains("Issue lateness [ms] (scheduled -> send): n/a (nothing sent)"),
        "{out}"
    );
}

#[test]
fn reset_after_request() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        let sock = socket2::SockRef::from(&s);
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    });
    let (r, _) = run(port, "3", &[]);
    assert_eq!(r.errors.conn_reset, 3, "{:?}", r.errors);
    assert_eq!(r.errors_total(), 3);
}

#[test]
fn stall_is_a_client_timeout() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let t = Instant::now();
    let (r, _) = run(port, "2", &["--rate=100"]);
    assert_eq!(r.errors.client_timo, 2, "{:?}", r.errors);
    assert_eq!(r.errors_total(), 2);
    // Two parallel connections, each timing out after 0.5 s.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn overload_is_capped_counted_and_reset() {
    // A server that never answers: the first --max-inflight connections stay open until the
    // client timeout, every later arrival is refused (fd-unavail) without a socket, and the
    // timed-out connections are aborted with a reset rather than a FIN.
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen_resets = resets.clone();
    let (port, seen) = serve(move |mut s, _| {
        read_request(&mut s);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 64];
        if let Err(e) = std::io::Read::read(&mut s, &mut b) {
            if e.kind() == std::io::ErrorKind::ConnectionReset {
                seen_resets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port_s = port.to_string();
    // 40 arrivals 10 ms apart (0.39 s of schedule), 4 allowed in flight, each held 0.5 s.
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--rate=100",
        "--num-conns=40",
        "--timeout=0.5",
        "--max-inflight=4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = result(&json);
    assert_eq!(r.counts.conns_attempted, 40);
    assert_eq!(r.counts.conns_capped, 36);
    assert_eq!(r.errors.fd_unavail, 36, "{:?}", r.errors);
    assert_eq!(r.errors.client_timo, 4, "{:?}", r.errors);
    assert_eq!(r.max_concurrent, 4);
    assert_eq!(r.clients[0].max_inflight, Some(4));
    assert!(stdout(&o).contains("Errors: fd-unavail 36 addrunavail 0"));
    let warnings = &r.summary.generator_warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("36 of 40 connections"), "{warnings:?}");
    assert!(warnings[0].contains("--max-inflight 4"), "{warnings:?}");
    assert!(
        stderr(&o).contains("loadgen: warning: 36 of 40 connections"),
        "{}",
        stderr(&o)
    );
    // Only the admitted connections reached the server, and each was reset.
    assert_eq!(seen.conns.load(std::sync::atomic::Ordering::Relaxed), 4);
    let deadline = Instant::now() + Duration::from_secs(3);
    while resets.load(std::sync::atomic::Ordering::Relaxed) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(resets.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[test]
fn think_timeout_extends_the_wait_for_the_first_byte() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        std::thread::sleep(Duration::from_millis(700));
        let _ = s.write_all(OK_75);
    });
    let (r, _) = run(port, "1", &["--think-timeout=1"]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.counts.replies_received, 1);
}

#[test]
fn garbage_is_other() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        let _ = s.write_all(b"\x00\x01\x02 this is not http\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    let (r, _) = run(port, "2", &[]);
    assert_eq!(r.errors.other, 2, "{:?}", r.errors);
    assert_eq!(r.errors_total(), 2);
}

#[test]
fn truncated_body_is_connreset() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    });
    let (r, _) = run(port, "2", &[]);
    assert_eq!(r.errors.conn_reset, 2, "{:?}", r.errors);
    assert_eq!(r.counts.replies_received, 0);
}

#[test]
fn close_before_any_reply_byte_is_connreset() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
    });
    let (r, _) = run(port, "2", &[]);
    assert_eq!(r.errors.conn_reset, 2, "{:?}", r.errors);
}

#[test]
fn huge_headers_are_other() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        let mut reply = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
        reply.extend(std::iter::repeat_n(b'a', 70 * 1024));
        reply.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let _ = s.write_all(&reply);
        std::thread::sleep(Duration::from_millis(200));
    });
    let (r, _) = run(port, "2", &[]);
    assert_eq!(r.errors.other, 2, "{:?}", r.errors);
}

#[test]
fn chunked_reply_counts_body_and_footer() {
    let (port, _) = good_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let (r, _) = run(port, "2", &["--num-calls=2"]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.counts.replies_received, 4);
    assert_eq!(r.counts.body_bytes, 4 * 11);
    // "5\r\n" + "\r\n" + "6\r\n" + "\r\n" + "0\r\n" + "\r\n" = 15 framing bytes per reply.
    assert_eq!(r.counts.footer_bytes, 4 * 15);
}

#[test]
fn interim_replies_are_not_counted() {
    let (port, _) =
        good_server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let (r, _) = run(port, "3", &[]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.counts.replies_received, 3);
    assert_eq!(r.status.s1xx, 0);
    assert_eq!(r.status.s2xx, 3);
}

#[test]
fn close_delimited_body_is_a_reply() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nServer: t\r\n\r\n0123456789");
    });
    let (r, _) = run(port, "3", &[]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.counts.replies_received, 3);
    assert_eq!(r.counts.body_bytes, 30);
}

#[test]
fn non_2xx_replies_are_not_errors_and_connection_close_is_honoured() {
    let (port, seen) =
        good_server(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy");
    let (r, _) = run(port, "4", &["--num-calls=3"]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.status.s5xx, 4);
    // The server asked to close after the first reply: one call per connection.
    assert_eq!(r.counts.requests_sent, 4);
    assert_eq!(seen.conns.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[test]
fn slow_trickle_within_timeout_completes() {
    let (port, _) = serve(|mut s, _| {
        read_request(&mut s);
        for chunk in OK_75.chunks(20) {
            let _ = s.write_all(chunk);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (r, _) = run(port, "1", &[]);
    assert_eq!(r.errors_total(), 0, "{:?}", r.errors);
    assert_eq!(r.counts.body_bytes, 75);
    assert!(
        r.summary.latency_ms.max >= 150.0,
        "{:?}",
        r.summary.latency_ms
    );
}

/// Keeps the unused-import lint quiet when a test above changes.
#[allow(dead_code)]
fn _uses(_: TcpStream) {}
