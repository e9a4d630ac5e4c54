//! Black-box tests of the `reports` binary on synthetic result directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use reports::model::{ConfigKind, Measured, Point, Reproduction, SweepSpec, TABLE_I};

const RATES: [f64; 7] = [400.0, 800.0, 1200.0, 1600.0, 2000.0, 2400.0, 2800.0];

/// Where each configuration saturates, replies/s (made up, bi-active ahead of plain NAT).
fn capacity(config: &str) -> f64 {
    match config {
        "1lb-bi-nat" => 1200.0,
        "1lb-bi-dr" => 1300.0,
        "1lb-nat" => 1000.0,
        "2lb-bi-nat" => 2100.0,
        "2lb-bi-dr" => 2300.0,
        _ => 1800.0,
    }
}

/// A point of a made-up saturation curve: replies follow the offered rate up to the capacity
/// and decline slowly past it, connections beyond the capacity partly fail; repetitions differ
/// by -1 %, 0 %, +1 %.
fn point(config: &str, rate: f64, rep: u32, scale: f64) -> Point {
    let kind = ConfigKind::parse(config).expect("Table I name");
    let cap = capacity(config);
    let jitter = 1.0 + (f64::from(rep) - 1.0) * 0.01;
    let reply_rate = if rate <= cap {
        rate
    } else {
        cap - 0.1 * (rate - cap)
    } * jitter
        * scale;
    let duration = 10.0;
    let conns = (rate * duration) as u64;
    let errors = ((rate - cap).max(0.0) / rate * conns as f64 * 0.8) as u64;
    Point {
        config: config.into(),
        lbs: kind.lbs,
        bi_active: kind.bi_active,
        method: kind.method.as_str().into(),
        offered_rate: rate,
        rep,
        started_unix_ms: 1_790_000_000_000 + u64::from(rep) * 10_000,
        duration_s: duration,
        measured: Measured {
            conns,
            requests: conns - errors,
            replies: (reply_rate * duration) as u64,
            reply_rate,
            reply_rate_samples: 2,
            errors,
            errors_by_kind: BTreeMap::from([("client-timo".to_string(), errors)]),
            p50_ms: Some(1.0 + rate / cap),
            p99_ms: Some(5.0 * (1.0 + rate / cap)),
            generator_limited: None,
        },
        loadgen: None,
        httperf: None,
        served: Vec::new(),
        balancers: Vec::new(),
    }
}

/// A finished 3-repetition run of `configs`, reply rates multiplied by `scale`.
fn synthetic(configs: &[&str], scale: f64) -> Reproduction {
    let spec = SweepSpec {
        configs: configs.iter().map(|c| c.to_string()).collect(),
        rates: configs
            .iter()
            .map(|c| (c.to_string(), RATES.to_vec()))
            .collect(),
        repeat: 3,
        duration_s: 10.0,
        warmup_s: 2.0,
        quick: false,
        generator: "loadgen".into(),
        clients: 3,
        profile: "paper".into(),
    };
    let mut r = Reproduction::new(
        "harness reproduce --repeat 3 (synthetic test data)".into(),
        spec,
        serde_json::json!({"name": "paper"}),
        BTreeMap::from([("git_commit".to_string(), "test".to_string())]),
        1_790_000_000_000,
    );
    for rep in 0..3 {
        for rate in RATES {
            for c in configs {
                r.points.push(point(c, rate, rep, scale));
            }
        }
    }
    r.finished_unix_ms = Some(1_790_000_000_000 + 1_500_000);
    r
}

fn reports(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reports"))
        .args(args)
        .output()
        .expect("run the reports binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exactly one line of stderr, containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn render_writes_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    synthetic(&TABLE_I, 1.0)
        .write_atomic(dir.path())
        .expect("write results.json");
    let out = reports(&[Path::new("render"), dir.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in reports::render::output_names() {
        let bytes = fs::read(dir.path().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}");
            assert!(bytes.len() > 20_000, "{name} is only {} bytes", bytes.len());
        }
        if name.ends_with(".svg") {
            let svg = text(&bytes);
            assert!(svg.contains("<svg"), "{name}");
            assert!(
                svg.contains("profile paper · generator loadgen · 3 repetitions"),
                "{name}"
            );
        }
    }
    let svg = text(&fs::read(dir.path().join("fig6.svg")).expect("fig6"));
    assert!(svg.contains("Fig. 6: Error rate vs request rate, 1 load balancer"));
    assert!(svg.contains("errors / connections attempted (%)"));
    let points = text(&fs::read(dir.path().join("points.csv")).expect("points"));
    assert_eq!(points.lines().count(), 1 + 6 * 7 * 3);
    let summary = text(&fs::read(dir.path().join("summary.csv")).expect("summary"));
    assert_eq!(summary.lines().count(), 1 + 6 * 7);
    let md = text(&fs::read(dir.path().join("REPORT.md")).expect("report"));
    // 1lb-bi-nat vs 1lb-nat: max gain at 2800 req/s: (1200-160)/(1000-180) - 1 = +26.8 %.
    assert!(
        md.contains("| 1lb-bi-nat vs 1lb-nat | +21.6 % | +26.8 % (at 2800 req/s) |"),
        "{md}"
    );
    assert!(
        md.contains("past it (4 rates) the gain ranges from +23.4 % to +26.8 %"),
        "{md}"
    );
    // No temp file left behind.
    for e in fs::read_dir(dir.path()).expect("list") {
        let name = e.expect("entry").file_name();
        assert!(!name.to_string_lossy().contains(".tmp."), "{name:?}");
    }
}

#[test]
fn render_of_a_subset_draws_what_is_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    synthetic(&["1lb-bi-nat"], 1.0)
        .write_atomic(dir.path())
        .expect("write");
    let out = reports(&[Path::new("render"), dir.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fig5 = text(&fs::read(dir.path().join("fig5.svg")).expect("fig5"));
    assert!(fig5.contains("No data for 2lb-bi-nat, 2lb-bi-dr, 2lb-nat"));
    let fig4 = text(&fs::read(dir.path().join("fig4.svg")).expect("fig4"));
    assert!(fig4.contains("1lb-bi-nat") && !fig4.contains("No data"));
    let md = text(&fs::read(dir.path().join("REPORT.md")).expect("report"));
    assert!(md.contains("no data (1lb-nat not measured)"));
}

#[test]
fn render_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    assert_one_line_error(&reports(&[Path::new("render"), &missing]), "missing");

    fs::write(dir.path().join("results.json"), "{\"schema\": \"other/1\"}").expect("write");
    let out = reports(&[Path::new("render"), dir.path()]);
    assert_one_line_error(&out, "expected \"harness-reproduce/1\"");
    fs::write(dir.path().join("results.json"), "{ not json").expect("write");
    assert_one_line_error(&reports(&[Path::new("render"), dir.path()]), "results.json");
    let files: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(files.len(), 1, "only results.json");
}

/// Two result directories: a baseline and `current`.
fn two_runs(current: &Reproduction) -> (tempfile::TempDir, tempfile::TempDir) {
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    synthetic(&TABLE_I, 1.0)
        .write_atomic(a.path())
        .expect("write");
    current.write_atomic(b.path()).expect("write");
    (a, b)
}

#[test]
fn compare_self_is_ok() {
    let (a, b) = two_runs(&synthetic(&TABLE_I, 1.0));
    let out = reports(&[Path::new("compare"), a.path(), b.path()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 1 + 6 * 7 * 2 + 1, "{stdout}");
    assert!(stdout.lines().last().expect("verdict").starts_with(
        "compare: no regression beyond 10% (84 comparisons: 84 ok, 0 better, 0 noise, 0 regressed)"
    ));
}

#[test]
fn compare_flags_a_slower_run() {
    let mut slow = synthetic(&TABLE_I, 0.7);
    slow.spec.profile = "slow-servers".into();
    let (a, b) = two_runs(&slow);
    let out = reports(&[Path::new("compare"), a.path(), b.path()]);
    let stdout = text(&out.stdout);
    // Shown with --nocapture: the README's example table comes from here.
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("note: runs differ in profile: paper -> slow-servers"));
    assert!(stdout.contains("-30.0%"), "{stdout}");
    assert!(stdout.contains("REGRESSED"));
    assert!(stdout
        .lines()
        .last()
        .expect("verdict")
        .starts_with("compare: REGRESSION beyond 10%"));
    // A looser threshold lets it pass.
    let out = Command::new(env!("CARGO_BIN_EXE_reports"))
        .args(["compare", "--max-regression", "35"])
        .args([a.path(), b.path()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn compare_bad_input_exits_2() {
    let (a, b) = two_runs(&synthetic(&TABLE_I, 1.0));
    let missing = a.path().join("nope");
    assert_one_line_error(
        &reports(&[Path::new("compare"), a.path(), &missing]),
        "current directory",
    );
    fs::write(
        b.path().join("results.json"),
        "{\"schema\": \"loadgen-result/1\"}",
    )
    .expect("write");
    assert_one_line_error(
        &reports(&[Path::new("compare"), a.path(), b.path()]),
        "has schema \"loadgen-result/1\"",
    );
    let other = synthetic(&["2lb-nat"], 1.0);
    let mut only_other = other.clone();
    only_other.points.retain(|p| p.offered_rate == 400.0);
    let c = tempfile::tempdir().expect("tempdir");
    only_other.write_atomic(c.path()).expect("write");
    let d = tempfile::tempdir().expect("tempdir");
    synthetic(&["1lb-nat"], 1.0)
        .write_atomic(d.path())
        .expect("write");
    assert_one_line_error(
        &reports(&[Path::new("compare"), d.path(), c.path()]),
        "no common points",
    );
}
