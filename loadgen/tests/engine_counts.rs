//! Black-box runs of the `loadgen` binary against well-behaved in-process servers: every count
//! must match what the server saw.

mod common;

use std::sync::atomic::Ordering;

use common::*;

#[test]
fn httperf_style_open_loop_counts_are_exact() {
    let (port, seen) = good_server(OK_75);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port_s = port.to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--uri=/index.html",
        "--rate=500",
        "--num-conns=50",
        "--timeout=5",
        "--hog",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("loadgen --timeout=5 --client=0/1 --server=127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("Total: connections 50 requests 50 replies 50 test-duration"),
        "{out}"
    );
    assert!(
        out.contains("Reply size [B]: header 39.0 content 75.0 footer 0.0"),
        "{out}"
    );
    let r = result(&json);
    assert_eq!(r.counts.conns_attempted, 50);
    assert_eq!(r.counts.requests_sent, 50);
    assert_eq!(r.counts.replies_received, 50);
    assert_eq!(r.counts.body_bytes, 50 * 75);
    assert_eq!(r.status.s2xx, 50);
    assert_eq!(r.errors_total(), 0);
    assert_eq!(seen.conns.load(Ordering::Relaxed), 50);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 50);
    // 50 connections at 500/s take ~98 ms of schedule.
    assert!(r.duration_s() >= 0.098, "{}", r.duration_s());
    // One call per connection: corrected latency = issue lateness + uncorrected latency, sample
    // by sample, so the exact nanosecond sums decompose too.
    let m = &r.moments;
    assert_eq!(m.issue_lateness.count, 50);
    assert_eq!(
        m.latency.sum_ns,
        m.issue_lateness.sum_ns + m.latency_uncorrected.sum_ns
    );
}

#[test]
fn several_calls_per_connection_and_bursts() {
    let (port, seen) = good_server(OK_75);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port_s = port.to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--rate=1000",
        "--num-conns=20",
        "--num-calls=5",
        "--burst-length=2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    assert_eq!(r.counts.conns_attempted, 20);
    assert_eq!(r.counts.requests_sent, 100);
    assert_eq!(r.counts.replies_received, 100);
    assert_eq!(r.errors_total(), 0);
    assert_eq!(seen.conns.load(Ordering::Relaxed), 20);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 100);
    // Lateness is sampled once per connection (its scheduled first call), not per call.
    assert_eq!(r.moments.issue_lateness.count, 20);
    assert_eq!(r.histograms.issue_lateness.0.len(), 20);
}

#[test]
fn sequential_default_and_poisson_period() {
    let (port, seen) = good_server(OK_75);
    let port_s = port.to_string();
    let o = loadgen(&["--server=127.0.0.1", "--port", &port_s, "--num-conns=7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Total: connections 7 requests 7 replies 7"));
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--period=e0.001",
        "--num-conns=40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Total: connections 40 requests 40 replies 40"));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 47);
}

#[test]
fn closed_loop_keeps_connections_alive() {
    let (port, seen) = good_server(OK_75);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://127.0.0.1:{port}/");
    let o = loadgen(&[
        &url,
        "--concurrency=4",
        "--duration=300ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    assert!(r.counts.replies_received > 10, "{:?}", r.counts);
    assert_eq!(r.counts.requests_sent, r.counts.replies_received);
    assert_eq!(r.errors_total(), 0);
    assert_eq!(r.counts.conns_attempted, 4);
    assert_eq!(seen.conns.load(Ordering::Relaxed), 4);
    assert_eq!(
        seen.requests.load(Ordering::Relaxed),
        r.counts.requests_sent
    );
    assert!(stdout(&o).contains("Latency [ms] (from scheduled send)"));
    assert!(stdout(&o).contains("Issue lateness [ms] (scheduled -> send): p50 "));
    assert_eq!(r.moments.issue_lateness.count, 4);
}

#[test]
fn modern_open_loop_runs_for_the_duration() {
    let (port, _seen) = good_server(OK_75);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = format!("http://127.0.0.1:{port}/");
    let o = loadgen(&[
        &url,
        "--rate=1000",
        "--arrival=poisson",
        "--duration=400ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    // A Poisson process at 1000/s for 0.4 s: 400 expected, well within 300..500.
    assert!(
        (300..500).contains(&r.counts.conns_attempted),
        "{:?}",
        r.counts
    );
    assert_eq!(r.counts.replies_received, r.counts.conns_attempted);
    assert_eq!(r.errors_total(), 0);
}

#[test]
fn head_requests_have_no_body() {
    let (port, seen) = good_server(b"HTTP/1.1 200 OK\r\nContent-Length: 75\r\n\r\n");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let port_s = port.to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--method=HEAD",
        "--num-conns=3",
        "--num-calls=2",
        "--timeout=2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = result(&json);
    assert_eq!(r.counts.replies_received, 6);
    assert_eq!(r.counts.body_bytes, 0);
    assert_eq!(r.errors_total(), 0);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 6);
}

#[test]
fn fail_if_passes_and_fails() {
    let (port, _seen) = good_server(OK_75);
    let port_s = port.to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &port_s,
        "--num-conns=5",
        "--fail-if=error-rate>1%",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let closed = closed_port().to_string();
    let o = loadgen(&[
        "--server=127.0.0.1",
        "--port",
        &closed,
        "--num-conns=5",
        "--fail-if=error-rate>1%",
        "--fail-if=reply-rate<1000000",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("error-rate"), "{err}");
    assert!(err.contains("reply-rate"), "{err}");
    assert!(stdout(&o).contains("connrefused 5"), "{}", stdout(&o));
}

#[test]
fn merge_adds_client_results() {
    let (port, _seen) = good_server(OK_75);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let m = dir.path().join("m.json");
    let port_s = port.to_string();
    for (client, path, n) in [("0/2", &a, "10"), ("1/2", &b, "15")] {
        let o = loadgen(&[
            "--server=127.0.0.1",
            "--port",
            &port_s,
            "--rate=1000",
            "--num-conns",
            n,
            "--client",
            client,
            "--json",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = loadgen(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Total: connections 25 requests 25 replies 25"),
        "{}",
        stdout(&o)
    );
    let r = result(&m);
    assert_eq!(r.counts.replies_received, 25);
}

#[test]
fn closed_loop_with_a_connection_count_ends() {
    let (port, seen) = good_server(OK_75);
    let url = format!("http://127.0.0.1:{port}/");
    let o = loadgen(&[&url, "--concurrency=3", "--num-conns=30", "--num-calls=2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Total: connections 30 requests 60 replies 60"),
        "{}",
        stdout(&o)
    );
    assert_eq!(seen.conns.load(Ordering::Relaxed), 30);
    let o = loadgen(&[&url, "--concurrency=3", "--num-conns=9"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Total: connections 9 requests 9 replies 9"),
        "{}",
        stdout(&o)
    );
}
