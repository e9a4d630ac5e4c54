//! Bad command lines: one clear error line and exit status 2.

mod common;

use common::*;

fn expect_usage_error(args: &[&str], needle: &str) {
    let o = loadgen(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
    assert!(stdout(&o).is_empty(), "{args:?}");
}

#[test]
fn contradictory_and_invalid_flags_exit_2() {
    expect_usage_error(&["ftp://x/", "--rate=1"], "invalid URL");
    expect_usage_error(&["http://h:99999/", "--rate=1"], "port");
    expect_usage_error(
        &["http://127.0.0.1/", "--rate=10", "--concurrency=2"],
        "--rate cannot be combined with --concurrency",
    );
    expect_usage_error(
        &[
            "http://127.0.0.1/",
            "--rate=10",
            "--num-conns=5",
            "--duration=1s",
        ],
        "--num-conns cannot be combined with --duration",
    );
    expect_usage_error(
        &["http://127.0.0.1/", "--server=127.0.0.1", "--rate=1"],
        "cannot be combined with --server",
    );
    expect_usage_error(&["http://127.0.0.1/"], "--rate");
    expect_usage_error(&["--server=h", "--period=x0.1"], "--period");
    expect_usage_error(&["--server=h", "--client=3/2"], "--client");
    expect_usage_error(&["--server=h", "--duration=ten"], "--duration");
    expect_usage_error(&["--no-such-flag"], "--no-such-flag");
    expect_usage_error(
        &["--server=127.0.0.1", "--fail-if=nonsense"],
        "invalid --fail-if",
    );
}

#[test]
fn usage_errors_are_one_line() {
    let o = loadgen(&["http://127.0.0.1/", "--rate=1", "--concurrency=1"]);
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("loadgen: error: "), "{err}");
}

#[test]
fn help_documents_the_interfaces() {
    let o = loadgen(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for flag in [
        "--server",
        "--port",
        "--uri",
        "--rate",
        "--num-conns",
        "--num-calls",
        "--timeout",
        "--think-timeout",
        "--period",
        "--burst-length",
        "--method",
        "--add-header",
        "--http-version",
        "--client",
        "--ssl",
        "--send-buffer",
        "--recv-buffer",
        "--hog",
        "--concurrency",
        "--duration",
        "--arrival",
        "--json",
        "--fail-if",
        "--insecure",
        "addrunavail",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn unresolvable_host_exits_2() {
    let o = loadgen(&["--server=no-such-host.invalid", "--num-conns=1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-host.invalid"));
}
