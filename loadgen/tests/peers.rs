//! loadgen next to its peers, over loopback: a real nginx, real httperf and our realserver.
//!
//! These need `nginx` and `httperf` (Debian packages, installed by `.ci/run`) and the
//! workspace's `realserver` binary (built by `just test`). Where one is missing the test says
//! so loudly on stderr; under CI (`CI` set) a missing peer is a failure, never a silent pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use loadgen::httperf_fmt::{parse_summary, ParsedSummary};

/// The paper's page: 75 bytes, the same as realserver's default.
const PAGE: &[u8] = b"<html><head><title>test</title></head><body>This is a test. </body></html>\n";

fn loadgen_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadgen")
}

/// `true` if the peer program is on PATH; otherwise complains loudly (and fails under CI).
fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        let msg = format!(
            "SKIP: '{program}' is not installed; this test compares loadgen with it \
             (install the Debian package, as .ci/run does)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg} -- under CI this is a failure");
        }
        eprintln!("\n!!!!! {msg} !!!!!\n");
    }
    found
}

/// A workspace binary built next to this test's own target directory.
fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/peers-HASH -> target/<profile>/<name>
    let path = exe.parent()?.parent()?.join(name);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "SKIP: {} is missing; build the workspace first (`just test` does: cargo build --workspace)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg} -- under CI this is a failure");
    }
    eprintln!("\n!!!!! {msg} !!!!!\n");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on 127.0.0.1:{port} after 10 s");
}

/// A child process killed (and reaped) when dropped, even when the test panics.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx with one worker serving the paper's 75-byte page from a temp dir.
struct Nginx {
    proc: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its worker; a SIGKILLed master would orphan it.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.proc.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

fn start_nginx() -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("www")).unwrap();
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    std::fs::write(d.join("www/index.html"), PAGE).unwrap();
    let port = free_port();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log crit;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 100000;\n\
           client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
           server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx {
        proc: child,
        port,
        _dir: dir,
    };
    wait_port(port);
    nginx
}

fn run(program: &str, args: &[String]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn summary(program: &str, out: &Output) -> ParsedSummary {
    let text = String::from_utf8_lossy(&out.stdout);
    parse_summary(&text)
        .unwrap_or_else(|e| panic!("{program}'s output is not httperf's layout ({e}):\n{text}"))
}

fn httperf_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--uri",
        "/index.html",
        "--timeout",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The same fixed workload run by httperf and by loadgen against nginx: replies agree exactly and
/// the reply rate (httperf's 5 s samples, and replies per test-duration) within 2 %.
#[test]
fn agrees_with_httperf_against_nginx() {
    if !have("nginx") || !have("httperf") {
        return;
    }
    let nginx = start_nginx();
    // 2000 conn/s for 12 s: two full 5 s reply-rate samples for each tool.
    let args = httperf_args(nginx.port, &["--rate", "2000", "--num-conns", "24000"]);
    let h = summary("httperf", &run("httperf", &args));
    let l = summary("loadgen", &run(loadgen_bin(), &args));

    assert_eq!(h.connections, 24000, "httperf connections");
    assert_eq!(l.connections, h.connections, "connections");
    assert_eq!(
        h.replies, 24000,
        "httperf replies: the workload is light, all must succeed"
    );
    assert_eq!(l.replies, h.replies, "replies must agree exactly");
    assert_eq!(l.status, h.status, "status classes");
    assert_eq!(l.errors_total, 0, "loadgen errors");
    assert!(
        h.reply_rate_samples >= 2 && l.reply_rate_samples >= 2,
        "both tools should take two 5 s samples (httperf {}, loadgen {})",
        h.reply_rate_samples,
        l.reply_rate_samples
    );
    let within = |a: f64, b: f64| (a - b).abs() <= 0.02 * b;
    assert!(
        within(l.reply_rate_avg, h.reply_rate_avg),
        "sampled reply rate: loadgen {} vs httperf {}",
        l.reply_rate_avg,
        h.reply_rate_avg
    );
    let (lr, hr) = (
        l.replies as f64 / l.test_duration_s,
        h.replies as f64 / h.test_duration_s,
    );
    assert!(
        within(lr, hr),
        "replies/duration: loadgen {lr} vs httperf {hr}"
    );
    assert!(
        within(l.request_rate, h.request_rate),
        "request rate: loadgen {} vs httperf {}",
        l.request_rate,
        h.request_rate
    );
    // Same request on the wire, same page back.
    assert_eq!(PAGE.len(), 75);
    assert_eq!(l.reply_content, 75.0, "content bytes per reply");
    assert_eq!(l.reply_content, h.reply_content, "content bytes per reply");
}

/// `realserver` /stats as JSON, fetched with a plain HTTP/1.0 request.
fn realserver_stats(port: u16) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /stats HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no body in /stats reply: {text}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {body}"))
}

fn start_realserver(bin: &Path) -> (Guard, u16) {
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--threads",
            "1",
            "--name",
            "peer",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start realserver");
    let guard = Guard(child);
    wait_port(port);
    (guard, port)
}

/// Three `--client i/3` processes, run at the same time, merge into exactly what they did in sum,
/// and what one run of the whole workload does; the server's own count agrees.
#[test]
fn three_clients_merge_to_one_run() {
    let Some(bin) = workspace_bin("realserver") else {
        return;
    };
    let (_server, port) = start_realserver(&bin);
    let dir = tempfile::tempdir().unwrap();

    let part = |i: usize| -> Vec<String> {
        let mut a = httperf_args(
            port,
            &["--rate", "300", "--num-conns", "600", "--num-calls", "2"],
        );
        a.push("--client".into());
        a.push(format!("{i}/3"));
        a.push("--json".into());
        a.push(dir.path().join(format!("c{i}.json")).display().to_string());
        a
    };
    let children: Vec<_> = (0..3)
        .map(|i| {
            Command::new(loadgen_bin())
                .args(part(i))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let merged_json = dir.path().join("all.json");
    let mut merge_args: Vec<String> = vec!["merge".into()];
    for i in 0..3 {
        merge_args.push(dir.path().join(format!("c{i}.json")).display().to_string());
    }
    merge_args.push("--json".into());
    merge_args.push(merged_json.display().to_string());
    let merged = summary("loadgen merge", &run(loadgen_bin(), &merge_args));

    let served_by_parts = realserver_stats(port);
    let one = summary(
        "loadgen",
        &run(
            loadgen_bin(),
            &httperf_args(
                port,
                &["--rate", "900", "--num-conns", "1800", "--num-calls", "2"],
            ),
        ),
    );

    assert_eq!(merged.connections, 1800);
    assert_eq!(merged.requests, 3600);
    assert_eq!(merged.replies, 3600);
    assert_eq!(merged.errors_total, 0);
    assert_eq!(
        (
            merged.connections,
            merged.requests,
            merged.replies,
            merged.status
        ),
        (one.connections, one.requests, one.replies, one.status),
        "three merged clients vs one run of the same total workload"
    );
    // The merged file is a full result too, and reads back to the same totals.
    let back = loadgen::json_out::read(&merged_json).unwrap();
    assert_eq!(back.replies(), 3600);
    // The server saw exactly the replies the clients counted.
    let total = served_by_parts["requests_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no requests_total in /stats: {served_by_parts}"));
    assert_eq!(total, 3600, "realserver /stats: {served_by_parts}");
}
