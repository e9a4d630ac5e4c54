//! The I/O shell: one current-thread tokio runtime per worker thread, each
//! with its own SO_REUSEPORT listener per address (like nginx workers), hyper's
//! HTTP/1 connection driver, and bounded graceful shutdown.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

use crate::config::{Config, ContentSource};
use crate::handler::{Reply, Responder};
use crate::io::{ByteCounter, Counted};
use crate::listener::{bind_group, BindError, ListenOptions};
use crate::stats::{Shard, Stats};

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A worker's runtime or thread could not be created.
    #[error("cannot start worker {worker}: {source}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// The system error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A worker thread stopped before shutdown was requested.
    #[error("worker {0} stopped unexpectedly")]
    WorkerDied(usize),
}

/// Sockets bound and ready to serve; nothing is accepted until [`Server::start`].
#[derive(Debug)]
pub struct Server {
    config: Arc<Config>,
    /// `per_worker[w]` holds worker `w`'s socket for each listen address.
    per_worker: Vec<Vec<std::net::TcpListener>>,
    local_addrs: Vec<SocketAddr>,
    stats: Arc<Stats>,
}

/// What a finished worker reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerExit {
    /// Connections still open when the shutdown bound expired (closed abruptly).
    pub cut_connections: u64,
}

/// Worker threads that are serving.
#[derive(Debug)]
pub struct Running {
    threads: Vec<std::thread::JoinHandle<Result<WorkerExit, ServerError>>>,
    exited: mpsc::UnboundedReceiver<usize>,
}

impl Server {
    /// Opens every listening socket (one per worker per address) up front, so
    /// that bind errors surface before anything is served.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let opts = ListenOptions {
            backlog: config.backlog,
            freebind: config.freebind,
        };
        let threads = config.threads.max(1);
        let mut per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut local_addrs = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let group = bind_group(addr, threads, opts)?;
            let actual = group[0]
                .local_addr()
                .map_err(|source| BindError { addr, source })?;
            local_addrs.push(actual);
            for (w, l) in group.into_iter().enumerate() {
                per_worker[w].push(l);
            }
        }
        let stats = Arc::new(Stats::new(config.name.clone(), threads));
        Ok(Server {
            config: Arc::new(config),
            per_worker,
            local_addrs,
            stats,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The node's counters, shared with the workers.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The one-line startup message printed to stderr.
    pub fn startup_line(&self) -> String {
        let addrs: Vec<String> = self.local_addrs.iter().map(|a| a.to_string()).collect();
        let what = match &self.config.content {
            ContentSource::Page(n) => format!("body {n} B"),
            ContentSource::Root(dir) => format!("root {}", dir.display()),
        };
        format!(
            "realserver {} listening on {} (threads {}, {what})",
            self.config.name,
            addrs.join(", "),
            self.per_worker.len()
        )
    }

    /// Starts the worker threads; they serve until `shutdown` turns true.
    pub fn start(self, shutdown: watch::Receiver<bool>) -> Result<Running, ServerError> {
        let (tx, exited) = mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(self.per_worker.len());
        for (w, listeners) in self.per_worker.into_iter().enumerate() {
            let cfg = self.config.clone();
            let stats = self.stats.clone();
            let rx = shutdown.clone();
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || {
                    let r = run_worker(w, listeners, cfg, stats, rx);
                    let _ = tx.send(w);
                    r
                })
                .map_err(|source| ServerError::Worker { worker: w, source })?;
            threads.push(h);
        }
        Ok(Running { threads, exited })
    }
}

impl Running {
    /// Waits until any worker exits (normally only after shutdown); returns its index.
    pub async fn any_exited(&mut self) -> Option<usize> {
        self.exited.recv().await
    }

    /// Joins all workers and sums what they report.
    pub fn join(self) -> Result<WorkerExit, ServerError> {
        let mut total = WorkerExit::default();
        for (w, h) in self.threads.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(e)) => total.cut_connections += e.cut_connections,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ServerError::WorkerDied(w)),
            }
        }
        Ok(total)
    }
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully within the
/// configured bound. `on_ready` runs once everything listens and signal
/// handlers are in place (the binary prints its startup line there).
pub fn serve_until_signal(
    server: Server,
    on_ready: impl FnOnce(&Server),
) -> Result<WorkerExit, ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Signals)?;
    let (mut int, mut term) = rt
        .block_on(async {
            Ok((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .map_err(ServerError::Signals)?;
    let (tx, rx) = watch::channel(false);
    on_ready(&server);
    let mut running = server.start(rx)?;
    let died = rt.block_on(async {
        tokio::select! {
            _ = int.recv() => None,
            _ = term.recv() => None,
            w = running.any_exited() => w,
        }
    });
    let _ = tx.send(true);
    let result = running.join();
    match (died, result) {
        (_, Err(e)) => Err(e),
        (Some(w), Ok(_)) => Err(ServerError::WorkerDied(w)),
        (None, Ok(exit)) => Ok(exit),
    }
}

/// Per-worker state shared by that worker's connections (never crosses threads).
struct Worker {
    responder: Responder,
    http: http1::Builder,
    stats: Arc<Stats>,
    shard: usize,
}

impl Worker {
    fn shard(&self) -> &Shard {
        self.stats.shard(self.shard)
    }
}

/// Byte counting goes to the worker's own shard.
#[derive(Clone)]
struct WorkerCounter(Rc<Worker>);

impl ByteCounter for WorkerCounter {
    #[inline]
    fn read(&self, n: u64) {
        self.0.shard().bytes_in(n);
    }
    #[inline]
    fn written(&self, n: u64) {
        self.0.shard().bytes_out(n);
    }
}

/// hyper service answering synchronously: no boxing, no per-request clone.
struct Svc(Rc<Worker>);

impl hyper::service::Service<Request<Incoming>> for Svc {
    type Response = Reply;
    type Error = Infallible;
    type Future = Ready<Result<Reply, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        ready(Ok(self.0.responder.respond(req.method(), req.uri().path())))
    }
}

fn http_builder(cfg: &Config) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true)
        .half_close(false)
        .max_header_size(cfg.max_header_bytes)
        .max_buf_size((cfg.max_header_bytes * 2).max(16 * 1024))
        .auto_date_header(false)
        .pipeline_flush(false);
    b
}

fn run_worker(
    w: usize,
    listeners: Vec<std::net::TcpListener>,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<WorkerExit, ServerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServerError::Worker { worker: w, source })?;
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Rc::new(Worker {
            responder: Responder::new(&cfg.content, cfg.work, stats.clone(), w),
            http: http_builder(&cfg),
            stats,
            shard: w,
        });
        let mut accept_tasks = Vec::with_capacity(listeners.len());
        for l in listeners {
            let l = tokio::net::TcpListener::from_std(l)
                .map_err(|source| ServerError::Worker { worker: w, source })?;
            accept_tasks.push(tokio::task::spawn_local(accept_loop(
                l,
                worker.clone(),
                shutdown.clone(),
            )));
        }
        // Err means the sender is gone: treat it as a shutdown too.
        let _ = shutdown.wait_for(|s| *s).await;
        for t in &accept_tasks {
            t.abort();
        }
        for t in accept_tasks {
            let _ = t.await;
        }
        // Listeners are closed now; let in-flight connections finish, bounded.
        let deadline = Instant::now() + cfg.shutdown_timeout;
        while worker.shard().active() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(WorkerExit {
            cut_connections: worker.shard().active(),
        })
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    worker: Rc<Worker>,
    shutdown: watch::Receiver<bool>,
) {
    let mut last_report: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                tokio::task::spawn_local(serve_conn(stream, worker.clone(), shutdown.clone()));
            }
            Err(e) => {
                // Per-connection failures (the peer reset before accept) are routine.
                use std::io::ErrorKind::*;
                if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
                    continue;
                }
                // Out of descriptors or memory: report at most once a second and back off.
                if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("realserver: accept failed: {e}");
                    last_report = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_conn(stream: TcpStream, worker: Rc<Worker>, mut shutdown: watch::Receiver<bool>) {
    worker.shard().conn_opened();
    let io = TokioIo::new(Counted::new(stream, WorkerCounter(worker.clone())));
    // Boxed: hyper's connection state is large, and keeping it out of the
    // task's future saves copying it on every task state change (measured
    // with callgrind: fewer instructions per connection than an inline pin).
    let mut conn = Box::pin(worker.http.serve_connection(io, Svc(worker.clone())));
    let res = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = shutdown.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    let shard = worker.shard();
    if let Err(e) = res {
        // hyper already wrote the matching error response; count it like any reply.
        if e.is_parse_too_large() {
            shard.request(431);
        } else if e.is_parse() && !e.is_parse_version_h2() {
            shard.request(400);
        } else if e.is_timeout() {
            shard.header_timeout();
        }
    }
    shard.conn_closed();
}
