//! Namespace test of `harness bench-balancer` (behaviour, not speed): a
//! one-second run of every configuration with the debug binaries. Needs
//! root, `haproxy`, and `cargo build --workspace` first. Serialised with the
//! other namespace tests by the shared test lock; a guard runs `harness
//! down` at the end, even when an assertion fails.

use harness::bench::{BenchRecord, Target};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_harness");

#[test]
fn bench_balancer_runs_every_configuration() {
    let Some(_testbed) = common::hold_testbed("bench_balancer_runs_every_configuration") else {
        return;
    };
    let bins = common::bin_dir();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let json = out.path().join("bench.json");
    // The balancer runs last: it only works if every other configuration's
    // switch (router neighbour, prerouting drop, ip_forward, routes) was
    // undone, since a unicast VIP neighbour would let the LB kernel answer.
    let common::Recorded {
        stdout, record: r, ..
    } = common::run_benchmark::<BenchRecord>(
        &[
            "bench-balancer",
            "--seconds",
            "1",
            "--repeat",
            "1",
            "--targets",
            "nftables,haproxy,direct,balancer",
        ],
        &run_dir,
        &json,
    );
    for needle in [
        "replies/s",
        "(1) nftables",
        "(2) haproxy",
        "(3) direct",
        "(4) balancer",
        "balancer / haproxy",
        "balancer / nftables",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing in:\n{stdout}");
    }
    assert_eq!(r.samples.len(), 4);
    for s in &r.samples {
        assert!(s.replies > 0, "{:?}: no replies", s.target);
        assert!(s.duration_s > 0.5, "{:?}: {}", s.target, s.duration_s);
        // The real server's own count: every reply was served by it.
        let served = s.served_by_rs.unwrap();
        assert!(
            served >= s.replies,
            "{:?}: served {served} < replies",
            s.target
        );
        // The forwarder processes report their CPU; the kernel paths do not.
        let has_proc = matches!(s.target, Target::Balancer | Target::Haproxy);
        assert_eq!(s.proc_cpu_s.is_some(), has_proc, "{:?}", s.target);
        if s.target == Target::Direct {
            assert!(
                s.lb_packets * 10 < s.replies,
                "direct: {} packets went through the LB for {} replies",
                s.lb_packets,
                s.replies
            );
        } else {
            assert!(
                s.lb_packets >= 4 * s.replies,
                "{:?}: only {} LB packets for {} replies",
                s.target,
                s.lb_packets,
                s.replies
            );
        }
    }
    let b = r
        .samples
        .iter()
        .find(|s| s.target == Target::Balancer)
        .unwrap();
    assert!(b.error_percent < 1.0, "balancer after the switches: {b:?}");
    assert_eq!(r.summary.len(), 4);
    assert_eq!(r.checks.len(), 2);
    assert!(r
        .checks
        .iter()
        .all(|c| c.ratio.is_some() && c.pass.is_some()));

    // Ctrl-C during a run: every process stopped, testbed removed, 130.
    let run_dir = out.path().join("interrupted");
    common::interrupt_once_clients_run(
        BIN,
        &[
            "bench-balancer",
            "--seconds",
            "30",
            "--targets",
            "haproxy",
            "--bin-dir",
            bins.to_str().unwrap(),
            "--out-dir",
            run_dir.to_str().unwrap(),
        ],
        &run_dir.join("logs/haproxy-r0-client3.loadgen.log"),
    );
    common::assert_no_leftovers("after Ctrl-C");
}
