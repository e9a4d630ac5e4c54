//! Shared by the namespace test binaries (`testbed.rs`, `cluster.rs`): a
//! machine-wide lock so they never build testbeds at the same time (cargo
//! runs test binaries one after another, but two `cargo test` invocations
//! may overlap), and the loud SKIP line for unprivileged runs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
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

/// Prints the loud SKIP line.
pub fn skip(test: &str) {
    eprintln!("\n!!!!!!!! SKIP {test}: needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN); NOTHING WAS TESTED !!!!!!!!\n");
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
