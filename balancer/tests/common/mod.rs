//! Shared by the balancer's namespace tests (`netns.rs`, `failover.rs`):
//! shell helpers, child processes killed on drop with their stderr kept,
//! running code inside a namespace, a minimal HTTP GET, and the root check
//! (a loud SKIP; a failure under CI).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Whether we are root; otherwise prints a loud SKIP (and fails under CI).
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg = format!("SKIP: {test} needs root (network namespaces); NOTHING WAS TESTED");
    if std::env::var_os("CI").is_some() {
        panic!("{msg} -- under CI this is a failure");
    }
    eprintln!("\n*** {msg} ***\n");
    false
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// A child process killed on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its stderr lines so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `argv` in `ns` and waits for a stderr line containing `ready`.
    pub fn start(ns: &str, argv: &[&str], ready: &str) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        let ready_s = ready.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!(
                    "  [{}] {line}",
                    if line.starts_with("balancer") {
                        "lb"
                    } else {
                        "rs"
                    }
                );
                if line.contains(&ready_s) {
                    let _ = tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut p = Proc { child, stderr };
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let status = p.child.try_wait();
            panic!(
                "{argv:?} not ready within 10 s ({status:?}); stderr: {:?}",
                p.stderr.lock().unwrap()
            );
        }
        p
    }
    /// Waits up to `within` for the process to exit (panics with `what`
    /// otherwise) and returns its status.
    pub fn wait_exit(&mut self, within: Duration, what: &str) -> std::process::ExitStatus {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t0.elapsed() < within, "{what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
pub fn with_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a valid namespace descriptor; it changes only this thread.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad reply {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// In namespace `ns`, the kernel must not take the VIP's frames arriving on
/// `front` itself (the VIP lives on a TUN there): only the user-space
/// balancer moves them.
pub fn drop_vip_on_front(ns: &str, vip: &str) {
    in_ns(
        ns,
        &[
            "nft",
            &format!(
                "add table ip bal; add chain ip bal pre {{ type filter hook prerouting priority -300; }}; \
                 add rule ip bal pre iifname front ip daddr {vip} drop"
            ),
        ],
    );
}
