//! Black-box tests of the `harness` binary that need no root and build no
//! testbed: `harness run`'s closed-loop checks (one line, exit 2, before the
//! privilege check, so nothing starts) and `harness timeline` on result
//! files built here.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::experiment::{RunRecord, RunSpec, Stop, Versions, RESULT_SCHEMA};
use harness::fault::FaultRecord;
use harness::profile::Profile;
use harness::topology::Topology;
use loadgen::record::{Recorder, RunFacts};

mod common;

use common::harness;

#[test]
fn closed_loop_bad_combinations_exit_2_with_one_line() {
    for (args, needle) in [
        (
            &["--rate", "100", "--concurrency", "24", "--duration", "3s"][..],
            "--concurrency and --rate both given",
        ),
        (
            &["--concurrency", "0", "--duration", "3s"],
            "--concurrency 0: expected at least one connection per client (3",
        ),
        (
            &["--concurrency", "24", "--num-conns", "100"],
            "give --duration D instead",
        ),
        (&["--concurrency", "24"], "--concurrency N --duration D"),
    ] {
        let mut all = vec!["run", "--topology", "2lb-2rs"];
        all.extend_from_slice(args);
        let o = harness(&all);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{all:?}: {e}");
        assert!(e.contains(needle), "{all:?}: `{needle}` not in {e}");
    }
}

/// A `harness run` record whose clients made `conns` connections, one
/// every 100 ms, each replied, with lb2 killed at 200 ms.
fn record(conns: u64) -> RunRecord {
    let t0 = Instant::now();
    let mut r = Recorder::new(t0);
    for i in 0..conns {
        let at = t0 + Duration::from_millis(100 * i);
        r.conn_started(at);
        r.conn_closed(
            at + Duration::from_millis(1),
            Duration::from_millis(1),
            1,
            true,
        );
    }
    let facts = RunFacts {
        command_line: "loadgen".into(),
        config: serde_json::json!({}),
        client_index: 0,
        client_count: 1,
        max_concurrent: 1,
        max_inflight: None,
        max_connect_burst: 1,
        cpu_user_s: 0.0,
        cpu_system_s: 0.0,
        started_unix_ms: 1_700_000_000_000,
    };
    let loadgen = r.finish(t0 + Duration::from_secs(1), facts);
    RunRecord {
        schema: RESULT_SCHEMA.into(),
        spec: RunSpec {
            topology: Topology::builtin("2lb-2rs").unwrap(),
            profile: Profile::builtin("unconstrained").unwrap(),
            bi_active: true,
            method: harness::experiment::Method::Nat,
            scheduler: "rr".into(),
            rate: Some(10.0),
            concurrency: None,
            stop: Stop::DurationS(1.0),
            clients: 1,
            timeout_s: 5.0,
            server_threads: 1,
            client_threads: 1,
            health_checks: true,
        },
        bin_dir: String::new(),
        versions: Versions::default(),
        started_unix_ms: 0,
        finished_unix_ms: 0,
        timeline: loadgen.timeline.clone(),
        loadgen,
        served: Vec::new(),
        served_total: 0,
        balancers: Vec::new(),
        faults: vec![FaultRecord {
            at_ms: 200,
            action: "kill".into(),
            node: "lb2".into(),
        }],
        failover: Vec::new(),
        held: None,
        router: None,
    }
}

fn write(dir: &Path, r: &RunRecord) {
    std::fs::write(dir.join("result.json"), serde_json::to_vec(r).unwrap()).unwrap();
}

#[test]
fn timeline_redraws_a_result_and_refuses_one_without_timeline() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &record(10));
    let o = harness(&["timeline", d.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(d.path().join("timeline.svg")).unwrap();
    assert!(svg.contains("kill lb2"), "no fault marker");
    assert!(std::fs::read(d.path().join("timeline.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));

    let e = tempfile::tempdir().unwrap();
    write(e.path(), &record(0));
    let o = harness(&["timeline", e.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("has no timeline"), "{err}");
    assert!(!e.path().join("timeline.svg").exists());

    let o = harness(&["timeline", "/nonexistent/result.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("expected the result.json of `harness run`")
    );
}
