//! Request → response: pre-built static replies, files under `--root`, and
//! `/stats`. No sockets here; one [`Responder`] per worker thread.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, DATE};
use hyper::{Method, Response, StatusCode};

use crate::config::ContentSource;
use crate::content::{content_type_for, page, resolve_path};
use crate::date::{now_unix_secs, DateCache};
use crate::stats::Stats;
use crate::work::burn_cpu;

/// The response type of every request.
pub type Reply = Response<Full<Bytes>>;

/// A body with its `Content-Length` value formatted once, at startup.
#[derive(Debug, Clone)]
struct Prebuilt {
    body: Bytes,
    len: HeaderValue,
    ctype: HeaderValue,
}

impl Prebuilt {
    fn new(body: Bytes, ctype: &'static str) -> Self {
        Prebuilt {
            len: HeaderValue::from(body.len() as u64),
            body,
            ctype: HeaderValue::from_static(ctype),
        }
    }
}

#[derive(Debug)]
enum Source {
    Page(Prebuilt),
    Root(PathBuf),
}

/// Answers requests for one worker thread: owns that worker's date cache and
/// writes to that worker's stats shard only.
#[derive(Debug)]
pub struct Responder {
    source: Source,
    not_found: Prebuilt,
    bad_request: Prebuilt,
    forbidden: Prebuilt,
    not_allowed: Prebuilt,
    server_error: Prebuilt,
    work: Duration,
    stats: Arc<Stats>,
    shard: usize,
    date: RefCell<DateCache>,
}

fn text(s: &'static str) -> Prebuilt {
    Prebuilt::new(
        Bytes::from_static(s.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

impl Responder {
    /// Builds the responder of worker `shard`, pre-rendering every static reply.
    pub fn new(content: &ContentSource, work: Duration, stats: Arc<Stats>, shard: usize) -> Self {
        let source = match content {
            ContentSource::Page(n) => {
                Source::Page(Prebuilt::new(page(*n), "text/html; charset=utf-8"))
            }
            ContentSource::Root(dir) => Source::Root(dir.clone()),
        };
        Responder {
            source,
            not_found: text("404 Not Found\n"),
            bad_request: text("400 Bad Request\n"),
            forbidden: text("403 Forbidden\n"),
            not_allowed: text("405 Method Not Allowed\n"),
            server_error: text("500 Internal Server Error\n"),
            work,
            stats,
            shard,
            date: RefCell::new(DateCache::new(now_unix_secs())),
        }
    }

    fn reply(&self, status: StatusCode, p: &Prebuilt, head: bool) -> Reply {
        let body = if head { Bytes::new() } else { p.body.clone() };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let date = self.date.borrow_mut().get(now_unix_secs());
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, p.ctype.clone());
        h.insert(CONTENT_LENGTH, p.len.clone());
        h.insert(DATE, date);
        resp
    }

    /// Answers one request (method and path without query) and counts it.
    pub fn respond(&self, method: &Method, path: &str) -> Reply {
        let shard = self.stats.shard(self.shard);
        let head = method == Method::HEAD;
        if path == "/stats" {
            shard.stats_request();
            return self.stats_reply(method, head);
        }
        let resp = if method != Method::GET && !head {
            let mut r = self.reply(StatusCode::METHOD_NOT_ALLOWED, &self.not_allowed, false);
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        } else {
            if !self.work.is_zero() {
                burn_cpu(self.work);
            }
            match &self.source {
                Source::Page(p) => {
                    if path == "/" || path == "/index.html" {
                        self.reply(StatusCode::OK, p, head)
                    } else {
                        self.reply(StatusCode::NOT_FOUND, &self.not_found, head)
                    }
                }
                Source::Root(dir) => self.file_reply(dir, path, head),
            }
        };
        shard.request(resp.status().as_u16());
        resp
    }

    fn stats_reply(&self, method: &Method, head: bool) -> Reply {
        if method != Method::GET && !head {
            let mut r = self.reply(StatusCode::METHOD_NOT_ALLOWED, &self.not_allowed, false);
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let json = Prebuilt::new(
            Bytes::from(self.stats.snapshot().to_json()),
            "application/json",
        );
        let mut r = self.reply(StatusCode::OK, &json, head);
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// Serves a file below `root`, read from disk on every request (blocking
    /// read on the worker thread: fine for the small static files this server
    /// is for, and edits show up immediately). Symbolic links are followed.
    fn file_reply(&self, root: &Path, path: &str, head: bool) -> Reply {
        let rel = match resolve_path(path) {
            Ok(r) => r,
            Err(_) => return self.reply(StatusCode::BAD_REQUEST, &self.bad_request, head),
        };
        let mut full = root.join(&rel.rel);
        if rel.wants_dir || full.is_dir() {
            full.push("index.html");
        }
        match std::fs::read(&full) {
            Ok(data) => {
                let name = full.to_string_lossy();
                let p = Prebuilt::new(Bytes::from(data), content_type_for(&name));
                self.reply(StatusCode::OK, &p, head)
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                    self.reply(StatusCode::NOT_FOUND, &self.not_found, head)
                }
                std::io::ErrorKind::PermissionDenied => {
                    self.reply(StatusCode::FORBIDDEN, &self.forbidden, head)
                }
                // A directory without index.html reads as EISDIR: no listing, so 404.
                std::io::ErrorKind::IsADirectory => {
                    self.reply(StatusCode::NOT_FOUND, &self.not_found, head)
                }
                _ => self.reply(StatusCode::INTERNAL_SERVER_ERROR, &self.server_error, head),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Reply) -> Bytes {
        let fut = r.into_body().collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(fut).unwrap().to_bytes()
    }

    fn page_responder() -> (Responder, Arc<Stats>) {
        let stats = Arc::new(Stats::new("t", 1));
        let r = Responder::new(&ContentSource::Page(75), Duration::ZERO, stats.clone(), 0);
        (r, stats)
    }

    #[test]
    fn page_get_head_404_405() {
        let (r, stats) = page_responder();
        let ok = r.respond(&Method::GET, "/");
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()[CONTENT_LENGTH], "75");
        assert_eq!(ok.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(ok.headers()[DATE].len(), 29);
        assert_eq!(body(ok).len(), 75);
        let h = r.respond(&Method::HEAD, "/index.html");
        assert_eq!(h.headers()[CONTENT_LENGTH], "75");
        assert!(body(h).is_empty());
        assert_eq!(r.respond(&Method::GET, "/nope").status(), 404);
        let p = r.respond(&Method::POST, "/");
        assert_eq!(p.status(), 405);
        assert_eq!(p.headers()[ALLOW], "GET, HEAD");
        let s = r.respond(&Method::GET, "/stats");
        assert_eq!(s.status(), 200);
        let snap = stats.snapshot();
        assert_eq!(snap.requests_total, 4);
        assert_eq!(snap.requests_by_status["200"], 2);
        assert_eq!(snap.stats_requests, 1);
    }

    #[test]
    fn stats_body_is_json_excluding_itself() {
        let (r, _) = page_responder();
        r.respond(&Method::GET, "/");
        let b = body(r.respond(&Method::GET, "/stats"));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["requests_total"], 1);
        assert_eq!(v["stats_requests"], 1);
    }

    #[test]
    fn serves_files_and_refuses_traversal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "abc").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let stats = Arc::new(Stats::new("t", 1));
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let r = Responder::new(&ContentSource::Root(root), Duration::ZERO, stats, 0);
        let a = r.respond(&Method::GET, "/sub/a.txt");
        assert_eq!(a.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(body(a), "abc");
        assert_eq!(body(r.respond(&Method::GET, "/")), "<p>hi</p>");
        assert_eq!(r.respond(&Method::GET, "/sub/a.txt/x").status(), 404);
        assert_eq!(r.respond(&Method::GET, "/empty/").status(), 404);
        assert_eq!(r.respond(&Method::GET, "/missing").status(), 404);
        assert_eq!(r.respond(&Method::GET, "/../etc/passwd").status(), 400);
        assert_eq!(
            r.respond(&Method::GET, "/sub/%2e%2e/%2e%2e/x").status(),
            400
        );
    }
}
