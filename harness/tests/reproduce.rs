//! Namespace tests of `harness reproduce` end to end: a tiny sweep (one
//! configuration, two rates, 2 s points), bad input, and Ctrl-C mid-run
//! followed by `--resume`. They need root and the debug binaries of the
//! workspace (`cargo build --workspace` first). One test function (global
//! state: namespaces), serialised with the other namespace tests by the
//! shared test lock; a guard runs `harness down` at the end.

use std::path::Path;
use std::process::Command;

use reports::model::Reproduction;

mod common;

use common::harness;

const BIN: &str = env!("CARGO_BIN_EXE_harness");

fn assert_no_namespace(when: &str) {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&netns.stdout);
    assert!(!list.contains("bal-"), "{when}: namespaces left: {list}");
}

/// Every point complete and consistent: the clients' figures add up, the
/// servers' counts (warm-up excluded) match the replies, and `points.csv`
/// has exactly one row per point.
fn check_dir(dir: &Path, points: usize) -> Reproduction {
    let r = Reproduction::read(dir).unwrap();
    assert_eq!(r.points.len(), points, "{:?}", r.points);
    for p in &r.points {
        let m = &p.measured;
        let lg = p.loadgen.as_ref().expect("loadgen result recorded");
        assert_eq!(m.replies, lg.replies());
        assert_eq!(m.conns, lg.counts.conns_attempted);
        assert!(m.conns > 0 && m.replies + m.errors <= m.conns, "{m:?}");
        let served: u64 = p.served.iter().map(|s| s.requests).sum();
        assert_eq!(
            served, m.replies,
            "{}@{}: {:?}",
            p.config, p.offered_rate, p.served
        );
        assert!(p.balancers.iter().all(|b| b.error.is_none()));
    }
    let csv = std::fs::read_to_string(dir.join("points.csv")).unwrap();
    assert_eq!(csv.lines().count(), points + 1, "{csv}");
    for f in [
        "summary.csv",
        "REPORT.md",
        "fig4.png",
        "fig4.svg",
        "fig6.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    r
}

#[test]
fn reproduce_end_to_end() {
    let Some(_testbed) = common::hold_testbed("reproduce_end_to_end") else {
        return;
    };
    let bins = common::bin_dir();
    let bins = bins.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // A tiny sweep: one configuration, two rates below saturation.
    let a = tmp.path().join("a");
    let o = harness(&[
        "reproduce",
        "--configs",
        "1lb-bi-nat",
        "--rates",
        "60,120",
        "--duration",
        "2s",
        "--repeat",
        "1",
        "--bin-dir",
        bins,
        "--out-dir",
        a.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("point 2/2: 1lb-bi-nat 120 req/s rep 1"),
        "{stderr}"
    );
    let r = check_dir(&a, 2);
    assert!(r.finished_unix_ms.is_some());
    assert_eq!(r.spec.rates["1lb-bi-nat"], vec![60.0, 120.0]);
    for p in &r.points {
        assert_eq!(p.measured.errors, 0, "{:?}", p.measured);
        // Bi-active: the balancer's own server and the real server both serve.
        assert!(p.served.iter().all(|s| s.requests > 0), "{:?}", p.served);
    }
    assert_no_namespace("after the tiny sweep");

    // The same directory again: its run is complete, nothing to measure.
    let o = harness(&[
        "reproduce",
        "--resume",
        a.to_str().unwrap(),
        "--bin-dir",
        bins,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_dir(&a, 2);

    // Bad input: one line, exit 2, nothing created or overwritten.
    let none = tmp.path().join("none");
    for (args, needle) in [
        (
            vec!["--configs", "1lb-bi-nat,9lb-nat"],
            "unknown configuration `9lb-nat`",
        ),
        (vec!["--rates", "300,200"], "200 follows 300"),
        (vec!["--rates", "0,200"], "not a positive rate"),
    ] {
        let mut v = vec!["reproduce", "--out-dir", none.to_str().unwrap()];
        v.extend(args);
        let o = harness(&v);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{v:?}: {e}");
        assert!(
            e.contains(needle) && e.trim().lines().count() == 1,
            "{v:?}: {e}"
        );
        assert!(!none.exists());
    }
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("results.json"), r#"{"schema":"harness-run/1"}"#).unwrap();
    for args in [
        vec!["reproduce", "--resume", other.to_str().unwrap()],
        vec!["reproduce", "--out-dir", other.to_str().unwrap()],
    ] {
        let o = harness(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains("expected \"harness-reproduce/1\""), "{e}");
    }
    assert_eq!(
        std::fs::read_to_string(other.join("results.json")).unwrap(),
        r#"{"schema":"harness-run/1"}"#
    );
    let o = harness(&["reproduce", "--out-dir", a.to_str().unwrap(), "--quick"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("holds a run of another sweep"), "{e}");

    // Ctrl-C during the second point: torn down, the first point kept,
    // then --resume measures the other three.
    let b = tmp.path().join("b");
    let b_s = b.to_str().unwrap();
    let args = [
        "reproduce",
        "--configs",
        "1lb-nat,1lb-bi-nat",
        "--rates",
        "60,120",
        "--duration",
        "2s",
        "--repeat",
        "1",
        "--bin-dir",
        bins,
        "--out-dir",
        b_s,
    ];
    // Plan order: 1lb-nat@60, 1lb-bi-nat@60, then (rotated) 1lb-bi-nat@120, 1lb-nat@120.
    let marker = b.join("work/1lb-bi-nat-60-r0/logs/client3.loadgen.log");
    common::interrupt_once_clients_run(BIN, &args, &marker);
    assert_no_namespace("after Ctrl-C");
    let r = check_dir(&b, 1);
    assert!(r.points[0].is("1lb-nat", 60.0, 0), "{:?}", r.points[0]);
    assert!(r.finished_unix_ms.is_none());
    let first = r.points[0].clone();

    // --resume takes the stored sweep and measures the three missing points.
    let o = harness(&["reproduce", "--resume", b_s, "--bin-dir", bins]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("3 point(s) to measure (1 already in"), "{e}");
    let r = check_dir(&b, 4);
    assert_eq!(r.points[0], first, "the kept point is untouched");
    assert!(r.finished_unix_ms.is_some());
    assert_no_namespace("at the end");
}
