//! Namespace test of `harness flood` (behaviour, not speed): three seconds
//! of each flood, paced to 20 000 frames/s so the debug balancer keeps up,
//! into a 2 048-entry table. Checks that the SYN flood fills the table to
//! its bound and no further, that legitimate clients get replies during
//! every flood, that each malformation is counted under its own reason,
//! that `--repeat 2` alternates the phases and reports their medians, that
//! nothing is left behind, that Ctrl-C in a flood keeps the phases measured
//! so far, and that the flood sender runs in the flooding host's cgroup. Needs root and `cargo build --workspace` first;
//! serialised with the other namespace tests by the shared test lock.

use std::path::Path;

use harness::cgroup::CgroupFlavor;
use harness::flood::{FloodKind, FloodRecord, Malformation, Phase};

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
            &["flood", "--repeat", "0"][..],
            "--repeat 0: expected 1..=100",
        ),
        (
            &["flood", "--flood", "syn,syn"][..],
            "--flood: syn given twice",
        ),
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
    let common::Recorded {
        stdout, record: r, ..
    } = common::run_benchmark::<FloodRecord>(
        &[
            "flood",
            "--seconds",
            "3",
            "--rate",
            "100",
            "--flood-pps",
            "20000",
            "--table-size",
            "2048",
            "--repeat",
            "2",
        ],
        &run_dir,
        &out.path().join("flood.json"),
    );
    assert!(
        stdout.contains("flood fr/s") && stdout.contains("malformed drops:"),
        "{stdout}"
    );
    assert!(r.complete);
    // Two rounds, the phases alternating within each.
    let runs: Vec<(&str, u32)> = r
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.round))
        .collect();
    let order = ["baseline", "syn", "nonsyn", "malformed"];
    let want: Vec<(&str, u32)> = (0..2).flat_map(|i| order.map(|n| (n, i))).collect();
    assert_eq!(runs, want);
    for p in r.phases.iter().filter(|p| p.flood.is_none()) {
        assert_eq!(p.legit.errors, 0, "baseline: {:?}", p.legit);
    }
    for p in r.phases.iter().filter(|p| p.flood.is_some()) {
        check_flood_phase(p);
    }
    for p in r.phases.iter().filter(|p| p.flood == Some(FloodKind::Syn)) {
        assert_eq!(p.max_entries(), Some(2048), "the SYN flood fills the table");
        assert!(p.counters.get("conntrack.evicted").is_some_and(|&n| n > 0));
    }
    for p in r
        .phases
        .iter()
        .filter(|p| p.flood == Some(FloodKind::Nonsyn))
    {
        let n = p.counters.get("drop.no_connection");
        assert!(n.is_some_and(|&n| n > 10_000), "{:?}", p.counters);
    }
    for p in r
        .phases
        .iter()
        .filter(|p| p.flood == Some(FloodKind::Malformed))
    {
        check_every_malformation_counted(&p.input_drops());
    }
    // The medians: one row per phase over both runs, the checks on them.
    let names: Vec<(&str, usize)> = r
        .summary
        .iter()
        .map(|s| (s.name.as_str(), s.runs))
        .collect();
    assert_eq!(names, order.map(|n| (n, 2)));
    assert_eq!(r.summary[1].max_entries, Some(2048));
    assert_eq!(r.checks.len(), 9);
    assert!(r
        .checks
        .iter()
        .any(|c| c.detail.contains("(worst of 2 runs)")));
    check_interrupt_keeps_the_baseline(&bins, out.path());
    check_sender_in_client_cgroup(out.path());
}

/// What every flood phase must show: frames sent from the flooding host,
/// the table within its bound, legitimate replies, the probes.
fn check_flood_phase(p: &Phase) {
    let sent = p.sent.as_ref().unwrap();
    assert!(
        sent.frames > 20_000,
        "{}: only {} frames sent",
        p.name,
        sent.frames
    );
    assert_eq!(sent.kind, p.flood);
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

fn check_every_malformation_counted(drops: &std::collections::BTreeMap<String, u64>) {
    for m in Malformation::ALL {
        let reason = serde_json::to_value(m.expected()).unwrap();
        let reason = reason.as_str().unwrap();
        assert!(
            drops.get(reason).is_some_and(|&n| n > 0),
            "{m:?}: no `{reason}` drop in {drops:?}"
        );
    }
}

/// Ctrl-C during the SYN flood: 130, nothing left, the baseline kept.
fn check_interrupt_keeps_the_baseline(bins: &Path, out: &Path) {
    let run_dir = out.join("interrupted");
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
        &run_dir.join("logs/syn-r0-client1.loadgen.log"),
    );
    common::assert_no_leftovers("after Ctrl-C");
    let r: FloodRecord =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("flood.json")).unwrap())
            .unwrap();
    assert!(!r.complete);
    assert_eq!(r.phases.len(), 1, "only the baseline was complete");
    assert_eq!(r.summary.len(), 1);
}

/// With a profile that gives client hosts a CPU quota, the flood sender
/// runs in the flooding host's cgroup, as its client processes would (the
/// quota here is two cores: a cgroup, no throttling).
fn check_sender_in_client_cgroup(out: &Path) {
    if CgroupFlavor::detect().is_err() {
        let msg = "SKIP the flood sender's cgroup: no cgroup CPU controller; NOT TESTED";
        assert!(
            std::env::var_os("CI").is_none(),
            "{msg} (a failure under CI)"
        );
        eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
        return;
    }
    let profile = out.join("clients.toml");
    std::fs::write(&profile, "name = \"clients\"\n[cpu]\nclient = 2.0\n").unwrap();
    let run_dir = out.join("cgroup");
    let r: FloodRecord = common::run_benchmark(
        &[
            "flood",
            "--flood",
            "syn",
            "--seconds",
            "1",
            "--rate",
            "50",
            "--flood-pps",
            "5000",
            "--profile",
            profile.to_str().unwrap(),
        ],
        &run_dir,
        &out.join("cgroup.json"),
    )
    .record;
    let sent = r.phases[1].sent.as_ref().unwrap();
    assert_eq!(sent.cgroup.as_deref(), Some("/bal-client3"), "{sent:?}");
}
