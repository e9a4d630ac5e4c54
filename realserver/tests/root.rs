//! `--root`: serving real files, refusing traversal.

mod common;

use common::*;

#[test]
fn serves_files_and_rejects_traversal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>root index</p>").unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/a b.txt"), "spaced").unwrap();
    std::fs::write(dir.path().join("docs/index.html"), "docs index").unwrap();
    // A secret next to the root that traversal would reach.
    let root = dir.path().join("docs");
    let srv = start(&[
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(srv.startup.contains("root "), "{}", srv.startup);

    let get = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        parse_responses(&exchange(srv.addr(), req.as_bytes()), false).remove(0)
    };
    let r = get("/a%20b.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"spaced");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("6"));
    let r = get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"docs index");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get("/nothing.css").status, 404);
    for evil in [
        "/../index.html",
        "/%2e%2e/index.html",
        "/x/../../index.html",
        "/..%2findex.html",
    ] {
        let r = get(evil);
        assert_eq!(r.status, 400, "{evil}");
        assert_ne!(r.body, b"<p>root index</p>", "{evil}");
    }
}

#[test]
fn root_that_is_not_a_directory_is_an_error() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let (code, err) = run_failing(
        std::process::Command::new(bin())
            .args(["--listen", "127.0.0.1:0", "--root"])
            .arg(f.path()),
    );
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a directory"), "{err}");
}
