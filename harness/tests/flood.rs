//! Namespace test of `harness flood` (behaviour, not speed): three seconds
//! of each flood, paced to 20 000 frames/s so the debug balancer keeps up,
//! into a 2 048-entry table. Checks that the SYN flood fills the table to
//! its bound and no further, that legitimate clients get replies during
//! every flood, that each malformation is counted under its own reason,
//! that nothing is left behind, and that Ctrl-C in a flood keeps the
//! phases measured so far. Needs root and `cargo build --workspace` first;
//! serialised with the other namespace tests by the shared test lock.

use harness::cgroup::CgroupFlavor;
use harness::discover::discover;
use harness::flood::{FloodKind, FloodRecord, Malformation};

mod common;

use common::harness;

const BIN: &str = env!("CARGO_BIN_EXE_harness");

#[test]
fn bad_flags_get_one_line_and_exit_2() {
    for (args, want) in [
        (
            &["flood", "--seconds", "0.5"][..],
            "--seconds 0.5: expected 1 to 3600",
        ),
        (
            &["flood", "--table-size", "8"][..],
            "--table-size 8: expected 16 to",
        ),
        (&["flood", "--profile", "nope"][..], "--profile nope:"),
        (
            &["flood", "--flood", "syn,bogus"][..],
            "invalid value 'bogus'",
        ),
    ] {
        let o = harness(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        if !args.contains(&"--flood") {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[test]
fn floods_keep_the_table_bounded_and_legit_clients_served() {
    let Some(_testbed) =
        common::hold_testbed("floods_keep_the_table_bounded_and_legit_clients_served")
    else {
        return;
    };
    let bins = common::bin_dir();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let json = out.path().join("flood.json");
    let o = harness(&[
        "flood",
        "--seconds",
        "3",
        "--rate",
        "100",
        "--flood-pps",
        "20000",
        "--table-size",
        "2048",
        "--bin-dir",
        bins.to_str().unwrap(),
        "--out-dir",
        run_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "flood failed ({}):\n{stdout}\n{stderr}",
        o.status
    );
    assert!(!stderr.contains("warning"), "an undo failed:\n{stderr}");
    assert!(stderr.contains("testbed torn down"), "{stderr}");
    assert!(
        stdout.contains("flood fr/s") && stdout.contains("malformed drops:"),
        "{stdout}"
    );
    assert!(run_dir.join("table.txt").is_file());
    let r: FloodRecord = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r.complete);
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["baseline", "syn", "nonsyn", "malformed"]);
    assert!(
        r.phases[0].legit.errors == 0,
        "baseline: {:?}",
        r.phases[0].legit
    );
    for p in &r.phases[1..] {
        let sent = p.sent.as_ref().unwrap();
        assert!(
            sent.frames > 20_000,
            "{}: only {} frames sent",
            p.name,
            sent.frames
        );
        let max = p.max_entries().unwrap();
        assert!(max <= 2048, "{}: table {max} above its bound", p.name);
        assert!(p.legit.replies > 0, "{}: no legit reply", p.name);
        assert!(
            p.probes.len() >= 10,
            "{}: {} probes",
            p.name,
            p.probes.len()
        );
        assert!(p.rss_span().0.is_some(), "{}: no RSS sampled", p.name);
    }
    let syn = &r.phases[1];
    assert_eq!(syn.flood, Some(FloodKind::Syn));
    assert_eq!(
        syn.max_entries(),
        Some(2048),
        "the SYN flood filled the table"
    );
    assert!(syn
        .counters
        .get("conntrack.evicted")
        .is_some_and(|&n| n > 0));
    let nonsyn = &r.phases[2];
    assert!(nonsyn
        .counters
        .get("drop.no_connection")
        .is_some_and(|&n| n > 10_000));
    let drops = r.phases[3].input_drops();
    for m in Malformation::ALL {
        let reason = serde_json::to_value(m.expected()).unwrap();
        let reason = reason.as_str().unwrap();
        assert!(
            drops.get(reason).is_some_and(|&n| n > 0),
            "{m:?}: no `{reason}` drop in {drops:?}"
        );
    }
    let inv = discover(CgroupFlavor::detect().ok().as_ref());
    assert!(inv.is_empty(), "leftovers {inv:?}");

    // Ctrl-C during the SYN flood: 130, nothing left, the baseline kept.
    let run_dir = out.path().join("interrupted");
    common::interrupt_once_clients_run(
        BIN,
        &[
            "flood",
            "--seconds",
            "5",
            "--flood",
            "syn",
            "--flood-pps",
            "20000",
            "--bin-dir",
            bins.to_str().unwrap(),
            "--out-dir",
            run_dir.to_str().unwrap(),
        ],
        &run_dir.join("logs/syn-client1.loadgen.log"),
    );
    let inv = discover(CgroupFlavor::detect().ok().as_ref());
    assert!(inv.is_empty(), "leftovers after Ctrl-C {inv:?}");
    let r: FloodRecord =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("flood.json")).unwrap())
            .unwrap();
    assert!(!r.complete);
    assert_eq!(r.phases.len(), 1, "only the baseline was complete");
}
