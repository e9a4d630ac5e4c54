//! Namespace tests of whole experiment points (`harness run`): the real
//! balancer, realservers and loadgen on the emulated cluster. They need root
//! and the debug binaries of the workspace (`cargo build --workspace`
//! first: cargo does not build other packages' binaries for a test). One
//! test function (global state: namespaces), serialised with `testbed.rs`
//! by the shared test lock; a guard runs `harness down` at the end, even
//! when an assertion fails.

use std::path::Path;
use std::process::Command;

use harness::experiment::RunRecord;
use harness::state::STATE_DIR;
use harness::topology::Role;

mod common;

use common::harness;

const BIN: &str = env!("CARGO_BIN_EXE_harness");

fn assert_clean(when: &str) {
    common::assert_no_leftovers(when);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains("bal-"),
        "{when}: ip netns list shows ours"
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("bal-"),
        "{when}: root link with our prefix"
    );
    assert!(
        !Path::new(STATE_DIR).join("state.json").exists(),
        "{when}: state file left"
    );
}

/// One `harness run` point at 300 conn/s for 3 s from the three clients;
/// returns its JSON record.
fn point(out: &Path, topology: &str, bi: &str, extra: &[&str]) -> RunRecord {
    let json = out.join(format!("{topology}-{bi}.json"));
    let run_dir = out.join(format!("{topology}-{bi}"));
    let mut args = vec![
        "run",
        "--topology",
        topology,
        "--bi-active",
        bi,
        "--rate",
        "300",
        "--duration",
        "3s",
    ];
    args.extend_from_slice(extra);
    let common::Recorded {
        stdout,
        stderr,
        record: r,
    } = common::run_recorded::<RunRecord>(&args, &run_dir, &json);
    assert!(
        stdout.contains("Served by node") && stdout.contains("Total: connections 900"),
        "{stdout}"
    );
    assert!(stderr.contains("balancer(s) ready"), "{stderr}");
    // Every connection got its reply, and no error.
    let lg = &r.loadgen;
    assert_eq!(lg.counts.conns_attempted, 900, "{topology} {bi}");
    assert_eq!(
        lg.errors_total(),
        0,
        "{topology} {bi}: errors {:?}",
        lg.errors
    );
    assert_eq!(lg.replies(), 900, "{topology} {bi}");
    assert_eq!(lg.status.s2xx, 900, "{topology} {bi}");
    // The servers' own counts add up to what the clients got.
    assert_eq!(
        r.served_total,
        lg.replies(),
        "{topology} {bi}: {:?}",
        r.served
    );
    assert_eq!(r.served.len(), 2);
    assert_eq!(r.balancers.len(), 1);
    assert!(
        r.balancers[0].error.is_none() && r.balancers[0].stats.is_object(),
        "balancer stats: {:?}",
        r.balancers[0]
    );
    assert!(r.versions.kernel.is_some() && r.versions.balancer.is_some());
    for d in [
        "config/lb1.toml",
        "logs/lb1.balancer.log",
        "clients/client1.json",
    ] {
        assert!(run_dir.join(d).is_file(), "{d} missing in {run_dir:?}");
    }
    // The router saw every SYN answered once.
    let rc = r.router.as_ref().expect("router check");
    assert_eq!(
        (
            rc.client_syns,
            rc.answered,
            rc.answered_twice,
            rc.capture_drops
        ),
        (900, 900, 0, 0),
        "{topology} {bi}: {rc:?}"
    );
    r
}

/// `harness run ARGS` into `dir`; its record.
fn run_record(dir: &Path, args: &[&str]) -> RunRecord {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    common::run_recorded(&all, dir, &dir.join("result.json")).record
}

/// No `harness router-watch` process is left anywhere.
fn assert_no_watcher(when: &str) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains("router-watch"), "{when}: left running: {cmd}");
    }
}

/// A balancer joining under closed-loop keep-alive load breaks no
/// connection and answers no SYN twice (at the router); a heartbeat
/// partition makes both answer, and the router check sees it.
fn join_and_partition(out: &Path) {
    let dir = out.join("join-closed");
    let r = run_record(
        &dir,
        &[
            "--topology",
            "2lb-2rs",
            "--concurrency",
            "6",
            "--duration",
            "4s",
            "--down",
            "lb2",
            "--fault",
            "at=1500ms,start=lb2",
        ],
    );
    let held = r.held.as_ref().expect("closed loop: held connections");
    assert_eq!((held.attempted, held.errors), (6, 0), "{held:?}");
    assert!(r.loadgen.replies() > 100, "{}", r.loadgen.replies());
    let rc = r.router.as_ref().expect("router check");
    assert_eq!(
        (rc.client_syns, rc.answered, rc.answered_twice),
        (6, 6, 0),
        "{rc:?}"
    );
    assert!(
        r.failover[0].membership_changed_after_ms.is_some(),
        "lb1 never saw lb2 join: {:?}",
        r.failover
    );
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("start lb2"), "no fault marker in the figure");
    assert!(dir.join("timeline.png").is_file());

    let r = run_record(
        &out.join("partition"),
        &[
            "--topology",
            "2lb-2rs",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--fault",
            "at=1s,block-heartbeat=lb2",
        ],
    );
    let rc = r.router.as_ref().expect("router check");
    assert!(
        rc.answered_twice > 0 && rc.answers_by_node.len() == 2,
        "heartbeats blocked: both balancers should answer some SYNs: {rc:?}"
    );
    assert_no_watcher("after the join and partition runs");
}

fn served(r: &RunRecord, role: Role) -> u64 {
    r.served
        .iter()
        .filter(|s| s.role == role)
        .map(|s| s.requests)
        .sum()
}

#[test]
fn cluster_points() {
    let Some(_testbed) = common::hold_testbed("cluster_points") else {
        return;
    };
    let bins = common::bin_dir();
    let out = tempfile::tempdir().unwrap();
    let o = harness(&["down"]);
    assert!(o.status.success());
    assert_clean("initial down");

    for (topology, method) in [("1lb-1rs", "nat"), ("1lb-1rs-dr", "dr")] {
        // bi-active on, keeping the testbed up for the next point.
        let on = point(
            out.path(),
            topology,
            "on",
            &["--method", method, "--keep-up"],
        );
        assert_eq!(on.spec.method.as_str(), method);
        let (lb, rs) = (served(&on, Role::Balancer), served(&on, Role::Realserver));
        assert!(
            lb > 0 && rs > 0,
            "{topology} bi-active on: both must serve (lb1-local {lb}, rs1 {rs})"
        );
        assert!(
            Path::new(STATE_DIR).join("state.json").exists(),
            "--keep-up left the testbed up"
        );
        // bi-active off, on the same (reused) testbed, then torn down.
        let off = point(out.path(), topology, "off", &["--method", method]);
        assert_eq!(
            served(&off, Role::Balancer),
            0,
            "{topology} bi-active off: the balancer's own server served requests"
        );
        assert_eq!(served(&off, Role::Realserver), 900, "{topology}");
        assert_clean(&format!("after the {topology} points"));
    }

    join_and_partition(out.path());
    assert_clean("after the join and partition runs");

    // Ctrl-C while the clients run: every process stopped, testbed removed.
    let run_dir = out.path().join("interrupted");
    common::interrupt_once_clients_run(
        BIN,
        &[
            "run",
            "--rate",
            "30",
            "--duration",
            "60s",
            "--bin-dir",
            bins.to_str().unwrap(),
            "--out-dir",
            run_dir.to_str().unwrap(),
        ],
        &run_dir.join("logs/client3.loadgen.log"),
    );
    assert_clean("after Ctrl-C during a run");
    assert_no_watcher("after Ctrl-C during a run");

    // A method that does not fit the topology: a clear error, nothing built.
    let o = harness(&[
        "run",
        "--topology",
        "1lb-1rs",
        "--method",
        "dr",
        "--rate",
        "10",
        "--duration",
        "1s",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not fit topology `1lb-1rs`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Missing binaries: a clear error naming the build command, nothing left.
    let empty = tempfile::tempdir().unwrap();
    let o = harness(&[
        "run",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--bin-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cargo build --release"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_clean("at the end");
}
