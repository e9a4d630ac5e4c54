//! Small in-process HTTP servers (well-behaved and misbehaving) on 127.0.0.1 port 0, and a
//! runner for the compiled `loadgen` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a test server saw.
#[derive(Default)]
pub struct Seen {
    pub conns: AtomicU64,
    pub requests: AtomicU64,
}

/// Start a server whose every accepted connection is handled by `handler` on its own thread.
pub fn serve<F>(handler: F) -> (u16, Arc<Seen>)
where
    F: Fn(TcpStream, &Seen) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(handler);
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            s.conns.fetch_add(1, Ordering::Relaxed);
            let h = handler.clone();
            let s2 = s.clone();
            std::thread::spawn(move || h(stream, &s2));
        }
    });
    (port, seen)
}

/// Read until one request head has arrived; false on EOF.
pub fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

/// Keep-alive server answering every request (pipelined ones too) with `reply`.
pub fn good_server(reply: &'static [u8]) -> (u16, Arc<Seen>) {
    serve(move |mut s, seen| {
        let mut buf = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
            while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..i + 4);
                seen.requests.fetch_add(1, Ordering::Relaxed);
                if s.write_all(reply).is_err() {
                    return;
                }
            }
        }
    })
}

/// The paper's 75-byte page.
pub const OK_75: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 75\r\n\r\n\
<html><body>loadgen test page: seventy-five bytes exactly!!!</body></html>\n";

/// A port nobody listens on.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Run the loadgen binary with `args`, bounded by a generous wall-clock limit.
pub fn loadgen(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "loadgen {args:?} hung; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Read a `--json` result.
pub fn result(path: &Path) -> loadgen::result::RunResult {
    loadgen::json_out::read(path).unwrap()
}
