//! The tokio engine: opens connections on schedule (open loop) or back to back (closed loop),
//! issues pre-built requests, parses replies with [`crate::http_parse`], and reports every event
//! to a [`Recorder`].
//!
//! Layout: by default one current-thread tokio runtime per worker thread ("per-core"), each with
//! its own `Recorder` (no locks on the hot path), absorbed into one at the end. The open-loop
//! schedule is shared by index: worker `w` of `W` issues arrivals `w, w+W, w+2W, ...` of the same
//! deterministic schedule, so the offered load is exactly the configured one. The alternative
//! layout (`--runtime multi-thread`: one work-stealing runtime, one `Mutex<Recorder>`) is kept for
//! comparison.
//!
//! Why per-core: measured on the 2-core development VM against nginx (1 worker, 75-byte file,
//! loopback), release build. Other engineers' jobs shared the machine; the table uses a quiet
//! window (load average ~1-2, 3 interleaved runs each, medians); in busy windows single runs
//! varied by +-30 %.
//!
//! | workload                                         | per-core 1 thr | per-core 2 thr | multi-thread 2 thr | wrk -t1 |
//! |--------------------------------------------------|----------------|----------------|--------------------|---------|
//! | closed loop, 64 conns, 3 s: req/s                | 185.7 k        | 166.3 k        | 182.1 k            | 182.9 k |
//! | closed loop: client CPU s per 100 k requests     | 0.46           | 0.47           | 0.49               | 0.50    |
//! | open loop 30 k conn/s x 120 k conns: client CPU s| 2.12           | 1.96           | 2.66               | -       |
//! | open loop 36 k conn/s: errors                    | 0              | 0              | 0                  | -       |
//! | open loop 40 k conn/s: errors                    | collapses      | 0              | 0                  | -       |
//!
//! The per-core layout costs the least CPU per connection (no `Mutex<Recorder>`, no work
//! stealing) and sustains the highest open-loop rate with one thread per CPU, so it is the
//! default. In a closed loop against a server on the same 2 cores, a second client thread only
//! takes CPU from the server, so closed loops default to half the CPUs (see `config.rs`).
//! Commands: `loadgen http://127.0.0.1:P/index.html -c 64 -d 3s --runtime R --threads T` vs
//! `wrk -t1 -c64 -d3s URL`; `loadgen --server 127.0.0.1 --port P --uri /index.html --rate 30000
//! --num-conns 120000 --timeout 5 --runtime R --threads T` (CPU from loadgen's own CPU line).
//!
//! Connection-per-request capacity on the same box: httperf 0.9.0 sustains 12 000 conn/s, fails
//! at 15 000 (fd-unavail) and at 14 000 spun at 100 % CPU without finishing; loadgen sustains
//! 40 000 conn/s with 0 errors (3.3x). Rate accuracy (fixed schedule unless noted): 4999.2 req/s
//! at --rate 5000 (10 s), 19998.0 at --rate 20000 (30 s, 600 000 connections, peak RSS 8 MB),
//! Poisson 5002.1 and 20042.4. Overload (20 000 connections stuck open) peaks near 107 MB.
//!
//! Closing: by default the last request of a connection carries `Connection: close` and the
//! engine waits briefly for the server's FIN before closing, so TIME_WAIT stays on the server.
//! Without this (httperf's behaviour, `--no-connection-close`) the client's ephemeral ports fill
//! with TIME_WAIT sockets above ~10 k conn/s and connect() becomes slow (the kernel scans for a
//! free port): 20 k conn/s then collapsed to ~6 k replies/s in our measurement.
//!
//! Timing: tokio timers have ~1 ms granularity, so the open-loop driver sleeps until the next
//! arrival's absolute instant (`start + offset`) and, when it wakes, issues every arrival that is
//! already due in one batch. Schedules are absolute, so late wake-ups never accumulate drift.
//!
//! Latency: `latency` runs from the *scheduled* instant of a call (the arrival instant for the
//! first call of a connection, so it includes any queueing and the connect; the issue instant for
//! later calls on the same connection) to the last reply byte; `latency_uncorrected` runs from
//! the moment the request write started.
//!
//! Timeouts (`--timeout`): connect, TLS handshake, each request write and each wait for reply
//! bytes must make progress within the timeout (plus `--think-timeout` while waiting for the
//! first byte of a reply); otherwise the connection is closed and one `client-timo` is counted.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Notify;

use crate::arrival::{Distribution, Schedule};
use crate::cli::RuntimeKind;
use crate::config::{Config, ConfigError, Stop, Workload};
use crate::http_parse::{ParseError, Progress, ResponseParser, MAX_HEADER_BYTES};
use crate::pacer::Pacer;
use crate::record::{ErrorKind, Recorder, ReplyRecord};
use crate::sys::classify_io_error;
use crate::tls::TlsError;

/// Initial read buffer per connection; grows (up to [`MAX_READ_BUF`]) for big replies.
const INITIAL_READ_BUF: usize = 2048;
/// Largest read buffer: must hold a maximal header block plus one read.
const MAX_READ_BUF: usize = 2 * MAX_HEADER_BYTES;

/// Why a run could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The server name does not resolve.
    #[error(transparent)]
    Resolve(#[from] ConfigError),
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A runtime or worker thread could not be created.
    #[error("cannot start worker: {0}")]
    Runtime(#[from] io::Error),
    /// A worker thread panicked (a bug).
    #[error("a worker thread panicked")]
    WorkerPanicked,
}

/// Counters for the live progress line (only updated when a progress line is drawn).
#[derive(Debug, Default)]
pub struct Live {
    /// Replies received so far.
    pub replies: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
    /// Connections opened so far.
    pub conns: AtomicU64,
}

/// What the engine hands back: the combined recorder and the facts only it knows.
pub struct Outcome {
    /// All workers' events.
    pub recorder: Recorder,
    /// Start of the run (offset 0 of the schedule).
    pub start: Instant,
    /// When the last connection finished.
    pub end: Instant,
    /// Wall clock at `start`.
    pub started_unix_ms: u64,
    /// Most connections open at once.
    pub max_concurrent: u64,
    /// Most connections started in one batch without waiting (httperf's connect burst).
    pub max_connect_burst: u64,
    /// Some connect failed with EADDRNOTAVAIL (ephemeral ports exhausted).
    pub addr_unavailable: bool,
}

/// State shared by every task of a run (read-only except the atomics).
struct Shared {
    addr: SocketAddr,
    /// `burst` copies of the request.
    request: Vec<u8>,
    request_len: usize,
    /// `last_bursts[b - 1]`: b - 1 requests followed by the connection's last request.
    last_bursts: Vec<Vec<u8>>,
    head: bool,
    burst: u32,
    calls_per_conn: Option<u32>,
    timeout: Option<Duration>,
    think: Duration,
    send_buffer: Option<u32>,
    recv_buffer: Option<u32>,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Calls may not start after this instant (`--duration`).
    deadline: Option<Instant>,
    /// Closed loop with --num-conns: connections left to start.
    conns_left: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    addr_unavailable: AtomicBool,
    live: Option<Arc<Live>>,
}

/// Access to a recorder from a connection task (per-core: `Rc<RefCell>`; multi-thread: `Mutex`).
trait RecHandle: Clone + 'static {
    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T;
}

impl RecHandle for Rc<RefCell<Recorder>> {
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        f(&mut self.borrow_mut())
    }
}

impl RecHandle for Arc<Mutex<Recorder>> {
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        let mut guard = match self.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// Count of running connection tasks, with a wake-up when it drops to zero.
#[derive(Clone, Default)]
struct Inflight {
    n: Arc<AtomicU64>,
    zero: Arc<Notify>,
}

struct InflightGuard(Inflight);

impl Inflight {
    fn enter(&self) -> InflightGuard {
        self.n.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }
    async fn wait_idle(&self) {
        while self.n.load(Ordering::Acquire) != 0 {
            self.zero.notified().await;
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_one();
        }
    }
}

/// Run the configured load and return the recorded events.
pub fn run(cfg: &Config, live: Option<Arc<Live>>) -> Result<Outcome, EngineError> {
    let addr = cfg.target.resolve()?;
    let tls = if cfg.target.tls {
        let config = crate::tls::client_config(cfg.insecure)?;
        let name = crate::tls::server_name(&cfg.target.host)?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    let burst = cfg.burst.max(1);
    let mut request = Vec::with_capacity(cfg.request.len() * burst as usize);
    for _ in 0..burst {
        request.extend_from_slice(&cfg.request);
    }
    let last_bursts = (1..=burst as usize)
        .map(|b| {
            let mut v = request[..cfg.request.len() * (b - 1)].to_vec();
            v.extend_from_slice(&cfg.request_last);
            v
        })
        .collect();
    let started_unix_ms = crate::sys::unix_ms_now();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        request,
        request_len: cfg.request.len(),
        last_bursts,
        head: cfg.head_request,
        burst,
        calls_per_conn: cfg.calls_per_conn,
        timeout: cfg.timeout,
        think: cfg.think_timeout,
        send_buffer: cfg.send_buffer,
        recv_buffer: cfg.recv_buffer,
        tls,
        deadline: match cfg.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Conns(_) => None,
        },
        conns_left: AtomicU64::new(match cfg.stop {
            Stop::Conns(n) => n,
            Stop::Duration(_) => u64::MAX,
        }),
        open: AtomicU64::new(0),
        max_open: AtomicU64::new(0),
        addr_unavailable: AtomicBool::new(false),
        live,
    });
    let plan = Plan {
        workload: cfg.workload,
        stop: cfg.stop,
        seed: cfg.seed,
        start,
        client: cfg.client,
    };
    let (recorder, max_burst) = match cfg.runtime {
        RuntimeKind::PerCore => run_per_core(&shared, &plan, cfg.threads)?,
        RuntimeKind::MultiThread => run_multi_thread(&shared, &plan, cfg.threads)?,
    };
    let end = Instant::now();
    Ok(Outcome {
        recorder,
        start,
        end,
        started_unix_ms,
        max_concurrent: shared.max_open.load(Ordering::Relaxed),
        max_connect_burst: max_burst,
        addr_unavailable: shared.addr_unavailable.load(Ordering::Relaxed),
    })
}

/// What each worker needs to know about the workload.
#[derive(Clone, Copy)]
struct Plan {
    workload: Workload,
    stop: Stop,
    seed: u64,
    start: Instant,
    client: (u32, u32),
}

/// Share of `total` for worker `w` of `workers` (the first `total % workers` get one more).
fn share(total: u64, w: usize, workers: usize) -> u64 {
    let (w, n) = (w as u64, workers as u64);
    total / n + u64::from(w < total % n)
}

fn run_per_core(
    shared: &Arc<Shared>,
    plan: &Plan,
    threads: usize,
) -> Result<(Recorder, u64), EngineError> {
    let mut handles = Vec::with_capacity(threads);
    for w in 0..threads {
        let shared = shared.clone();
        let plan = *plan;
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-w{w}"))
            .spawn(move || -> io::Result<(Recorder, u64)> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let rec = Rc::new(RefCell::new(Recorder::for_client(
                    plan.start,
                    plan.client.0,
                    plan.client.1,
                )));
                let local = tokio::task::LocalSet::new();
                let inflight = Inflight::default();
                let launch = {
                    let rec = rec.clone();
                    let inflight = inflight.clone();
                    move |fut_shared: Arc<Shared>, scheduled: Instant, closed: bool| {
                        let guard = inflight.enter();
                        let rec = rec.clone();
                        tokio::task::spawn_local(async move {
                            if closed {
                                slot_loop(&fut_shared, &rec).await;
                            } else {
                                connection(&fut_shared, &rec, scheduled).await;
                            }
                            drop(guard);
                        });
                    }
                };
                let burst = local.block_on(&rt, async {
                    let b = drive(&shared, &plan, w, threads, launch).await;
                    inflight.wait_idle().await;
                    b
                });
                drop(local);
                let rec = Rc::try_unwrap(rec)
                    .map(RefCell::into_inner)
                    .map_err(|_| io::Error::other("recorder still shared at worker end"))?;
                Ok((rec, burst))
            })?;
        handles.push(handle);
    }
    let mut total: Option<Recorder> = None;
    let mut max_burst = 0;
    for h in handles {
        let (rec, burst) = h.join().map_err(|_| EngineError::WorkerPanicked)??;
        max_burst = max_burst.max(burst);
        match total.as_mut() {
            Some(t) => t.absorb(rec),
            None => total = Some(rec),
        }
    }
    Ok((
        total.unwrap_or_else(|| Recorder::for_client(plan.start, plan.client.0, plan.client.1)),
        max_burst,
    ))
}

fn run_multi_thread(
    shared: &Arc<Shared>,
    plan: &Plan,
    threads: usize,
) -> Result<(Recorder, u64), EngineError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let rec = Arc::new(Mutex::new(Recorder::for_client(
        plan.start,
        plan.client.0,
        plan.client.1,
    )));
    let inflight = Inflight::default();
    let launch = {
        let rec = rec.clone();
        let inflight = inflight.clone();
        move |fut_shared: Arc<Shared>, scheduled: Instant, closed: bool| {
            let guard = inflight.enter();
            let rec = rec.clone();
            tokio::spawn(async move {
                if closed {
                    slot_loop(&fut_shared, &rec).await;
                } else {
                    connection(&fut_shared, &rec, scheduled).await;
                }
                drop(guard);
            });
        }
    };
    let burst = rt.block_on(async {
        let b = drive(shared, plan, 0, 1, launch).await;
        inflight.wait_idle().await;
        b
    });
    drop(rt);
    let rec = Arc::try_unwrap(rec)
        .map_err(|_| EngineError::Runtime(io::Error::other("recorder still shared at end")))?;
    let rec = match rec.into_inner() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    Ok((rec, burst))
}

/// Worker `w` of `workers`: start its share of connections (open loop: its arrivals of the
/// schedule; closed loop: its slots). Returns the longest batch of connects issued at once.
async fn drive(
    shared: &Arc<Shared>,
    plan: &Plan,
    w: usize,
    workers: usize,
    mut launch: impl FnMut(Arc<Shared>, Instant, bool),
) -> u64 {
    match plan.workload {
        Workload::Closed(c) => {
            let slots = share(u64::from(c), w, workers);
            for _ in 0..slots {
                launch(shared.clone(), plan.start, true);
            }
            slots
        }
        Workload::Open(dist) => open_arrivals(shared, plan, dist, w, workers, &mut launch).await,
    }
}

async fn open_arrivals(
    shared: &Arc<Shared>,
    plan: &Plan,
    dist: Distribution,
    w: usize,
    workers: usize,
    launch: &mut impl FnMut(Arc<Shared>, Instant, bool),
) -> u64 {
    let mut schedule = Schedule::new(dist, plan.seed);
    let mut pacer = Pacer::new();
    let mut index: u64 = 0;
    let mut burst: u64 = 0;
    let mut max_burst: u64 = 0;
    loop {
        let offset = schedule.next_offset();
        let i = index;
        index += 1;
        match plan.stop {
            Stop::Conns(n) if i >= n => break,
            Stop::Duration(d) if offset >= d => break,
            _ => {}
        }
        if i % workers as u64 != w as u64 {
            continue;
        }
        let at = plan.start + offset;
        if at > Instant::now() {
            burst = 0;
            pacer.wait_until(at).await;
        }
        burst += 1;
        max_burst = max_burst.max(burst);
        launch(shared.clone(), at, false);
    }
    max_burst
}

/// Closed-loop slot: connection after connection until the run ends.
async fn slot_loop<R: RecHandle>(shared: &Shared, rec: &R) {
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let left = shared
            .conns_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if left.is_err() {
            break;
        }
        let ok = connection(shared, rec, Instant::now()).await;
        if !ok {
            // Do not spin on a refusing server: give other tasks (and the clock) a chance.
            tokio::task::yield_now().await;
        }
    }
}

/// How a connection failed.
enum Failure {
    Timeout,
    Io(io::Error),
    Parse(ParseError),
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Timeout => ErrorKind::ClientTimo,
            Failure::Io(e) => classify_io_error(e),
            Failure::Parse(ParseError::Truncated) => ErrorKind::ConnReset,
            Failure::Parse(_) => ErrorKind::Other,
        }
    }
}

/// A connection's timeout: one timer per connection, re-armed lazily.
///
/// Every operation moves `deadline` forward (a plain store, no timer work); the timer is only
/// touched when it fires before the current deadline (then it is re-armed) or when a deadline
/// earlier than the armed one is set. Registering a fresh tokio timer for every read would cost
/// a timer-wheel insert and removal per reply.
struct Watchdog {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Instant,
    deadline: Instant,
}

impl Watchdog {
    fn new(deadline: Instant) -> Self {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            armed: deadline,
            deadline,
        }
    }

    /// The next operation must complete by `deadline`.
    #[inline]
    fn set(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if deadline < self.armed {
            self.armed = deadline;
            self.sleep.as_mut().reset(deadline.into());
        }
    }
}

/// Await `fut` under the watchdog (no watchdog: no timeout).
async fn guarded<T>(
    wd: &mut Option<Watchdog>,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    let Some(wd) = wd.as_mut() else {
        return fut.await.map_err(Failure::Io);
    };
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            r = &mut fut => return r.map_err(Failure::Io),
            _ = &mut wd.sleep => {
                if Instant::now() >= wd.deadline {
                    return Err(Failure::Timeout);
                }
                wd.armed = wd.deadline;
                let d = wd.deadline;
                wd.sleep.as_mut().reset(d.into());
            }
        }
    }
}

/// One connection: connect, issue its calls, close. Returns whether it ended without error.
async fn connection<R: RecHandle>(shared: &Shared, rec: &R, scheduled: Instant) -> bool {
    let conn_start = Instant::now();
    rec.with(|r| r.conn_started(conn_start));
    if let Some(l) = &shared.live {
        l.conns.fetch_add(1, Ordering::Relaxed);
    }
    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.max_open.fetch_max(open, Ordering::Relaxed);

    let mut replies = 0u32;
    let result = connect_and_call(shared, rec, scheduled, conn_start, &mut replies).await;
    shared.open.fetch_sub(1, Ordering::Relaxed);
    let now = Instant::now();
    let ok = match result {
        Ok(()) => true,
        Err(f) => {
            let kind = f.kind();
            if kind == ErrorKind::AddrUnavail {
                shared.addr_unavailable.store(true, Ordering::Relaxed);
            }
            rec.with(|r| r.error(now, kind));
            if let Some(l) = &shared.live {
                l.errors.fetch_add(1, Ordering::Relaxed);
            }
            false
        }
    };
    rec.with(|r| r.conn_closed(now, now - conn_start, replies, ok));
    ok
}

async fn connect_and_call<R: RecHandle>(
    shared: &Shared,
    rec: &R,
    scheduled: Instant,
    conn_start: Instant,
    replies: &mut u32,
) -> Result<(), Failure> {
    let socket = if shared.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(Failure::Io)?;
    if let Some(n) = shared.send_buffer {
        socket.set_send_buffer_size(n).map_err(Failure::Io)?;
    }
    if let Some(n) = shared.recv_buffer {
        socket.set_recv_buffer_size(n).map_err(Failure::Io)?;
    }
    let mut wd = shared.timeout.map(|t| Watchdog::new(conn_start + t));
    let stream = guarded(&mut wd, socket.connect(shared.addr)).await?;
    stream.set_nodelay(true).map_err(Failure::Io)?;
    match &shared.tls {
        None => {
            let now = Instant::now();
            rec.with(|r| r.conn_established(now, now - conn_start));
            calls(shared, rec, stream, &mut wd, scheduled, replies).await
        }
        Some((connector, name)) => {
            if let (Some(w), Some(t)) = (wd.as_mut(), shared.timeout) {
                w.set(Instant::now() + t);
            }
            // Boxed so the (large) TLS state does not inflate every plain connection's future.
            Box::pin(async {
                let tls = guarded(&mut wd, connector.connect(name.clone(), stream)).await?;
                let now = Instant::now();
                rec.with(|r| r.conn_established(now, now - conn_start));
                calls(shared, rec, tls, &mut wd, scheduled, replies).await
            })
            .await
        }
    }
}

/// A connection's read buffer: bytes `[start, end)` are received but not yet parsed.
struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

thread_local! {
    /// Per-thread free list of read buffers, so a connection per request does not allocate and
    /// zero a fresh buffer each time.
    static BUF_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Most buffers kept in a thread's free list.
const BUF_POOL_MAX: usize = 1024;

impl ReadBuf {
    /// An empty buffer; memory is taken (from the pool) at the first read, so connections still
    /// connecting cost nothing here.
    fn new() -> Self {
        ReadBuf {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Free space to read into (compacting or growing as needed).
    fn space(&mut self) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = BUF_POOL
                .with(|p| p.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; INITIAL_READ_BUF]);
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < MAX_READ_BUF {
                let new_len = (self.data.len() * 2).min(MAX_READ_BUF);
                self.data.resize(new_len, 0);
            }
        }
        &mut self.data[self.end..]
    }
    /// A read of `n` bytes filled the whole free space: a big reply is streaming; read more per
    /// system call.
    fn filled(&mut self, n: usize, had: usize) {
        self.end += n;
        if n == had && self.data.len() < MAX_READ_BUF && self.start == 0 {
            let new_len = (self.data.len() * 2).min(MAX_READ_BUF);
            self.data.resize(new_len, 0);
        }
    }
}

/// Longest wait for the server's FIN after a reply that ends the connection.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// The server said it will close: wait (briefly) for its FIN before closing our side, so that
/// the server is the active closer and TIME_WAIT stays on its side, not on our ephemeral ports.
/// Bytes after the reply are ignored; errors and a late FIN are not failures.
async fn await_server_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    wd: &mut Option<Watchdog>,
    buf: &mut ReadBuf,
) {
    buf.start = 0;
    buf.end = 0;
    let space = buf.space();
    match wd.as_mut() {
        Some(w) => {
            w.set(Instant::now() + CLOSE_LINGER);
            let _ = guarded(wd, stream.read(space)).await;
        }
        None => {
            let _ = tokio::time::timeout(CLOSE_LINGER, stream.read(space)).await;
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if self.data.len() == INITIAL_READ_BUF {
            let data = std::mem::take(&mut self.data);
            // During thread teardown the pool may be gone; then the buffer is simply freed.
            let _ = BUF_POOL.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < BUF_POOL_MAX {
                    p.push(data);
                }
            });
        }
    }
}

/// Issue the connection's calls (in bursts) and read their replies.
async fn calls<S, R>(
    shared: &Shared,
    rec: &R,
    mut stream: S,
    wd: &mut Option<Watchdog>,
    scheduled: Instant,
    replies: &mut u32,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: RecHandle,
{
    let mut parser = ResponseParser::new(shared.head);
    let mut buf = ReadBuf::new();
    let mut issued: u32 = 0;
    loop {
        let b = match shared.calls_per_conn {
            Some(total) => shared.burst.min(total - issued),
            None => shared.burst,
        };
        if b == 0 {
            return Ok(());
        }
        if issued > 0 && shared.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        let send_start = Instant::now();
        let due = if issued == 0 { scheduled } else { send_start };
        rec.with(|r| {
            for _ in 0..b {
                r.request_due(due);
            }
            if issued == 0 {
                r.issue_lateness(send_start.saturating_duration_since(scheduled));
            }
        });
        let last = shared
            .calls_per_conn
            .is_some_and(|total| issued + b == total);
        let bytes = if last {
            &shared.last_bursts[b as usize - 1][..]
        } else {
            &shared.request[..shared.request_len * b as usize]
        };
        if let (Some(w), Some(t)) = (wd.as_mut(), shared.timeout) {
            w.set(send_start + t);
        }
        guarded(wd, stream.write_all(bytes)).await?;
        // A no-op for TCP; pushes out any TLS record rustls still buffers.
        guarded(wd, stream.flush()).await?;
        let sent_at = Instant::now();
        let mut last_progress = sent_at;
        let len = shared.request_len as u64;
        let last_len = bytes.len() as u64 - len * (u64::from(b) - 1);
        rec.with(|r| {
            for i in 0..b {
                r.request_sent(sent_at, if i + 1 == b { last_len } else { len });
            }
        });
        issued += b;
        for _ in 0..b {
            let mut first_byte: Option<Instant> = None;
            let mut eof = false;
            let reply = loop {
                if buf.end > buf.start {
                    first_byte.get_or_insert_with(Instant::now);
                    match parser.advance(buf.pending()).map_err(Failure::Parse)? {
                        Progress::NeedMore { consumed } => buf.consume(consumed),
                        Progress::Complete { consumed, reply } => {
                            buf.consume(consumed);
                            break reply;
                        }
                    }
                }
                if let (Some(w), Some(t)) = (wd.as_mut(), shared.timeout) {
                    // Waiting for the first byte of a reply may also take the think time.
                    let base = first_byte.map_or(sent_at + shared.think, |_| last_progress);
                    w.set(base.max(last_progress) + t);
                }
                let space = buf.space();
                let had = space.len();
                if had == 0 {
                    // Only reachable if the parser kept more than MAX_READ_BUF bytes, which its
                    // own caps prevent; treat as an oversized header block.
                    return Err(Failure::Parse(ParseError::HeaderTooLarge));
                }
                let n = guarded(wd, stream.read(space)).await?;
                if n == 0 {
                    eof = true;
                    break parser.eof().map_err(Failure::Parse)?;
                }
                if wd.is_some() {
                    last_progress = Instant::now();
                }
                rec.with(|r| r.bytes_received(n as u64));
                buf.filled(n, had);
            };
            let done = Instant::now();
            let first = first_byte.unwrap_or(done);
            let record = ReplyRecord {
                status: reply.status,
                header_bytes: reply.header_bytes,
                body_bytes: reply.body_bytes,
                footer_bytes: reply.footer_bytes,
                response_time: first.saturating_duration_since(sent_at),
                transfer_time: done.saturating_duration_since(first),
                latency: done.saturating_duration_since(due),
                latency_uncorrected: done.saturating_duration_since(send_start),
            };
            rec.with(|r| r.reply(done, &record));
            if let Some(l) = &shared.live {
                l.replies.fetch_add(1, Ordering::Relaxed);
            }
            *replies += 1;
            parser.reset();
            if !reply.keep_alive {
                if !eof {
                    await_server_close(&mut stream, wd, &mut buf).await;
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 5, 64, 1001] {
            for workers in 1..5 {
                let s: u64 = (0..workers).map(|w| share(total, w, workers)).sum();
                assert_eq!(s, total);
            }
        }
    }

    #[test]
    fn read_buf_compacts_and_grows() {
        let mut b = ReadBuf::new();
        let s = b.space();
        let had = s.len();
        s[..10].copy_from_slice(b"0123456789");
        b.filled(10, had);
        b.consume(4);
        assert_eq!(b.pending(), b"456789");
        // Fill to the end, then ask for space: compaction moves pending bytes to the front.
        let had = b.space().len();
        b.filled(had, had);
        assert_eq!(b.end, INITIAL_READ_BUF);
        let space = b.space().len();
        assert_eq!((b.start, space), (0, 4));
        assert_eq!(&b.pending()[..6], b"456789");
        // A read that fills all free space with nothing consumed doubles the buffer.
        b.filled(space, space);
        assert_eq!(b.data.len(), 2 * INITIAL_READ_BUF);
        b.consume(b.end - b.start);
        assert_eq!((b.start, b.end), (0, 0));
    }
}
