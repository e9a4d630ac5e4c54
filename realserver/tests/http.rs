//! Black-box HTTP behaviour of the compiled binary over loopback.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn serves_75_byte_page_with_headers() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--name",
        "rs-a",
    ]);
    assert_eq!(
        srv.startup,
        format!(
            "realserver rs-a listening on {} (threads 1, body 75 B)",
            srv.addr()
        )
    );
    for path in ["/", "/index.html"] {
        let r = reqwest::get(srv.url(path)).await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["content-length"], "75");
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        let date = h["date"].to_str().unwrap();
        assert_eq!(date.len(), 29, "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 75);
        assert_eq!(&body[..], PAGE.as_bytes());
    }
}

#[tokio::test]
async fn other_paths_are_404_and_body_bytes_changes_size() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--body-bytes",
        "1000",
    ]);
    assert!(
        srv.startup.ends_with("(threads 1, body 1000 B)"),
        "{}",
        srv.startup
    );
    let r = reqwest::get(srv.url("/nope")).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(srv.url("/")).await.unwrap();
    assert_eq!(r.headers()["content-length"], "1000");
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

#[test]
fn head_has_length_but_no_body() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "1"]);
    let raw = exchange(
        srv.addr(),
        b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(raw.clone()).unwrap();
    assert!(
        text.ends_with("\r\n\r\n"),
        "body after HEAD response: {text:?}"
    );
    let r = parse_responses(&raw, true);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].header("content-length"), Some("75"));
    assert!(r[0].header("date").is_some());
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "2"]);
    let mut s = connect(srv.addr());
    for i in 0..5 {
        let path = if i % 2 == 0 { "/" } else { "/missing" };
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_one(&mut s, false);
        assert_eq!(r.status, if i % 2 == 0 { 200 } else { 404 });
        assert_eq!(r.header("connection"), None);
    }
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_one(&mut s, false);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["connections_accepted"], 1);
    assert_eq!(v["connections_active"], 1);
    assert_eq!(v["requests_total"], 5);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "1"]);
    let raw = exchange(
        srv.addr(),
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    // The last one is a HEAD: parse the first two with bodies, then the head.
    let text = String::from_utf8(raw).unwrap();
    let third = text.rfind("HTTP/1.1 ").unwrap();
    let first_two = parse_responses(&text.as_bytes()[..third], false);
    let last = parse_responses(&text.as_bytes()[third..], true);
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two[0].status, 200);
    assert_eq!(first_two[0].body, PAGE.as_bytes());
    assert_eq!(first_two[1].status, 404);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].status, 200);
    assert_eq!(last[0].header("content-length"), Some("75"));
    assert_eq!(last[0].header("connection"), Some("close"));
}

#[test]
fn http10_closes_by_default_and_connection_close_is_honoured() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "1"]);
    let r = parse_responses(&exchange(srv.addr(), b"GET / HTTP/1.0\r\n\r\n"), false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].version, "HTTP/1.0");
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, PAGE.as_bytes());

    let r = parse_responses(
        &exchange(
            srv.addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        false,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].header("connection"), Some("close"));

    // HTTP/1.0 with keep-alive asked for explicitly stays open.
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = read_one(&mut s, false);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let rest = parse_responses(&read_to_eof(&mut s), false);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].status, 200);
}

#[test]
fn malformed_requests_get_400_and_close() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "1"]);
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\n\r\n",
    ] {
        let raw = exchange(srv.addr(), req);
        let r = parse_responses(&raw, false);
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r[0].status, 400, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r[0].header("connection"), Some("close"));
    }
    let v = srv.stats();
    assert_eq!(v["requests_by_status"]["400"], 4);
}

#[test]
fn oversized_header_block_gets_431() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--max-header-bytes",
        "8192",
    ]);
    // Complete but too large.
    let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 10_000));
    req.extend_from_slice(b"\r\n\r\n");
    let r = parse_responses(&exchange(srv.addr(), &req), false);
    assert_eq!(r[0].status, 431);
    // Never-ending head: cut off at the buffer limit, same answer.
    let mut s = connect(srv.addr());
    let mut endless = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    endless.extend(std::iter::repeat_n(b'b', 100_000));
    // The server may close while we are still writing; that is fine.
    let _ = s.write_all(&endless);
    let r = parse_responses(&read_to_eof(&mut s), false);
    assert_eq!(r[0].status, 431);
    // Just under the limit is fine.
    let mut ok = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: ".to_vec();
    ok.extend(std::iter::repeat_n(b'c', 7000));
    ok.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        parse_responses(&exchange(srv.addr(), &ok), false)[0].status,
        200
    );
    assert_eq!(srv.stats()["requests_by_status"]["431"], 2);
}

#[test]
fn trickling_and_idle_clients_are_closed_after_header_timeout() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--header-timeout",
        "0.5",
    ]);
    let t0 = Instant::now();
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // One header byte every 100 ms: each arrives in time but the head never completes.
    let mut closed = false;
    for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        if t0.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    if !closed {
        // The server closes without a reply; read sees EOF (or a reset).
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut buf);
        assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "not closed: {took:?}");

    // An idle keep-alive connection is closed too.
    let mut s = connect(srv.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let _ = read_one(&mut s, false);
    let rest = read_to_eof(&mut s);
    assert!(rest.is_empty());
    assert!(srv.stats()["header_timeouts"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn stats_count_exactly_what_was_served() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "2", "--name", "rs7"]);
    let client = reqwest::Client::new();
    for _ in 0..7 {
        assert_eq!(client.get(srv.url("/")).send().await.unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(
            client.get(srv.url("/x")).send().await.unwrap().status(),
            404
        );
    }
    assert_eq!(
        client.head(srv.url("/")).send().await.unwrap().status(),
        200
    );
    let _ = exchange(srv.addr(), b"BAD\r\n\r\n");
    for _ in 0..2 {
        client.get(srv.url("/stats")).send().await.unwrap();
    }
    let v: serde_json::Value = client
        .get(srv.url("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["name"], "rs7");
    assert_eq!(v["requests_total"], 12);
    assert_eq!(v["requests_by_status"]["200"], 8);
    assert_eq!(v["requests_by_status"]["404"], 3);
    assert_eq!(v["requests_by_status"]["400"], 1);
    // Includes the /stats request being answered.
    assert_eq!(v["stats_requests"], 3);
    assert!(v["connections_accepted"].as_u64().unwrap() >= 2);
    assert!(v["bytes_in"].as_u64().unwrap() > 0);
    assert!(v["bytes_out"].as_u64().unwrap() >= 8 * 75);
    assert!(v["uptime_secs"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn answers_on_every_listen_address() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.2:0",
        "--threads",
        "2",
    ]);
    assert_eq!(srv.addrs.len(), 2);
    assert_eq!(srv.addrs[1].ip().to_string(), "127.0.0.2");
    for a in &srv.addrs {
        let r = reqwest::get(format!("http://{a}/")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 75);
    }
    assert_eq!(srv.stats()["requests_total"], 2);
}

#[test]
fn work_us_still_serves_correctly() {
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--work-us",
        "2000",
    ]);
    let r = parse_responses(
        &exchange(
            srv.addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ),
        false,
    );
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, PAGE.as_bytes());
}

#[test]
fn other_methods_get_405() {
    let srv = start(&["--listen", "127.0.0.1:0", "--threads", "1"]);
    let r = parse_responses(
        &exchange(
            srv.addr(),
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        ),
        false,
    );
    assert_eq!(r[0].status, 405);
    assert_eq!(r[0].header("allow"), Some("GET, HEAD"));
}
