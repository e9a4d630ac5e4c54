//! Shared by the harness test binaries: a machine-wide lock so they never
//! build testbeds at the same time (cargo runs test binaries one after
//! another, but two `cargo test` invocations may overlap), the loud SKIP
//! line for unprivileged runs, and the hold a root test takes on the testbed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::state::{lock, Lock};

/// Directory of the test lock (not the state directory: `harness up/down`
/// take that lock themselves).
pub const TEST_LOCK_DIR: &str = "/run/bal-harness-tests";

/// Holds the test lock until dropped (waits up to 15 minutes for it).
pub fn serial() -> Lock {
    lock(Path::new(TEST_LOCK_DIR), Duration::from_secs(900))
        .expect("another namespace test run holds /run/bal-harness-tests/lock")
}

/// Prints the loud SKIP line; under CI (`CI` set) a skip is a failure.
pub fn skip(test: &str) {
    let msg =
        format!("SKIP {test}: needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN); NOTHING WAS TESTED");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} -- under CI this is a failure");
    }
    eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
}

/// The directory of the test executable's sibling binaries:
/// `target/debug/deps/cluster-HASH` -> `target/debug/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap().to_path_buf()
    } else {
        deps.to_path_buf()
    };
    let missing: Vec<String> = ["loadgen", "realserver", "balancer"]
        .iter()
        .filter(|b| !dir.join(b).is_file())
        .map(|b| dir.join(b).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "missing binaries {missing:?}: run `cargo build --workspace` before `cargo test -p harness` \
         (cargo does not build other packages' binaries for a test)"
    );
    dir
}

/// Start `harness ARGS`, wait until `marker` (a client's log file) exists, send SIGINT, and return
/// its output: checks that it exits 130 within 20 s and says it tore the testbed down.
pub fn interrupt_once_clients_run(bin: &str, args: &[&str], marker: &Path) -> std::process::Output {
    let child = std::process::Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the interrupted run never started its clients ({} missing)",
            marker.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let t0 = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(t0.elapsed().as_secs() < 20, "Ctrl-C took too long");
    assert!(stderr.contains("testbed torn down"), "{stderr}");
    o
}

/// Run this build's harness binary with `args` (no stdin).
pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `harness down` when dropped, so a failing assertion leaves nothing (and says so when
/// the cleanup itself fails).
pub struct DownGuard;

impl Drop for DownGuard {
    fn drop(&mut self) {
        let o = harness(&["down"]);
        if !o.status.success() {
            eprintln!(
                "cleanup `harness down` failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// A root test's hold on the testbed: `harness down` when dropped, then the
/// test lock released (fields drop in this order).
pub struct Hold {
    _guard: DownGuard,
    _serial: Lock,
}

/// For a test that builds testbeds: `None` after the loud SKIP when not
/// privileged; otherwise the test lock taken and the cleanup armed.
pub fn hold_testbed(test: &str) -> Option<Hold> {
    if !harness::privilege::is_privileged() {
        skip(test);
        return None;
    }
    let serial = serial();
    Some(Hold {
        _guard: DownGuard,
        _serial: serial,
    })
}

/// What a recording command printed, and its JSON record.
pub struct Recorded<T> {
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// The record it wrote to `--json`.
    pub record: T,
}

/// Runs a recording command (`run`, `bench-balancer`, `flood`): `harness ARGS --bin-dir <debug
/// binaries> --out-dir RUN_DIR --json JSON`; asserts that it succeeded and reads its record.
pub fn run_recorded<T: serde::de::DeserializeOwned>(
    args: &[&str],
    run_dir: &Path,
    json: &Path,
) -> Recorded<T> {
    let bins = bin_dir();
    let mut argv = args.to_vec();
    argv.extend([
        "--bin-dir",
        bins.to_str().unwrap(),
        "--out-dir",
        run_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let o = harness(&argv);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "harness {argv:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        o.status
    );
    let text = std::fs::read_to_string(json).unwrap();
    let record = serde_json::from_str(&text).unwrap();
    Recorded {
        stdout,
        stderr,
        record,
    }
}

/// [`run_recorded`] for a benchmark (`bench-balancer`, `flood`): besides, every undo worked (no
/// warning), the testbed was torn down, the table was written and nothing is left behind.
pub fn run_benchmark<T: serde::de::DeserializeOwned>(
    args: &[&str],
    run_dir: &Path,
    json: &Path,
) -> Recorded<T> {
    let r = run_recorded(args, run_dir, json);
    assert!(
        !r.stderr.contains("warning"),
        "an undo or a flush failed:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("testbed torn down"), "{}", r.stderr);
    assert!(run_dir.join("table.txt").is_file());
    assert_no_leftovers(&args.join(" "));
    r
}

/// Asserts that no namespace, root link or cgroup named `bal-*` is left.
pub fn assert_no_leftovers(when: &str) {
    let inv = harness::discover::discover(harness::cgroup::CgroupFlavor::detect().ok().as_ref());
    assert!(inv.is_empty(), "{when}: leftovers {inv:?}");
}
