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
//! 40 000 conn/s with 0 errors (3.3x) (tokio-timer pacing; see Timing for the timerfd pacer's
//! figures). Rate accuracy (fixed schedule unless noted): 4999.2 req/s at --rate 5000 (10 s),
//! 19998.0 at --rate 20000 (30 s, 600 000 connections, peak RSS 8 MB), Poisson 5002.1 and
//! 20042.4. Overload (20 000 connections stuck open) peaks near 107 MB.
//!
//! Closing: by default the last request of a connection carries `Connection: close` and the
//! engine waits briefly for the server's FIN before closing, so TIME_WAIT stays on the server.
//! Without this (httperf's behaviour, `--no-connection-close`) the client's ephemeral ports fill
//! with TIME_WAIT sockets above ~10 k conn/s and connect() becomes slow (the kernel scans for a
//! free port): 20 k conn/s then collapsed to ~6 k replies/s in our measurement.
//!
//! Overload: past the server's capacity an open loop offers connections faster than they
//! complete, so they pile up. Unbounded, that collapsed the run (nginx, 1 worker, on CPU 0,
//! loadgen on CPU 1, `--num-calls 1 --timeout 5`, 6 s of arrivals): at 3x the capacity
//! ~20 000 sockets piled up (the ephemeral ports), connect() spent its time searching for a
//! free port, loadgen used 95-150 % of a core in the kernel, and the reply rate fell to ~600/s
//! while httperf, whose select() caps it near 1 020 connections, kept ~10 000/s. Now an
//! open-loop arrival that finds `--max-inflight` (default 1 024) connections open is not
//! started: it counts as an attempted connection and an `fd-unavail` error, as in httperf when
//! it has no descriptor, at no system-call cost. A connection that times out is closed with a
//! reset (SO_LINGER 0), so the server drops it and its queued request instead of serving a
//! client that gave up, and neither side keeps FIN_WAIT/TIME_WAIT sockets for it. Both facts
//! that make the generator, not the server, the limit are counted and printed as warnings
//! ([`crate::result::RunResult::generator_warnings`]): arrivals refused by the cap, and
//! connections the generator started more than 10 ms late (a CPU-bound or descheduled generator).
//!
//! Measured with `python3 scripts/bench.py --only overload --repeat 3` (medians of 3 alternating
//! runs; capacity = wrk -c64 close-per-request, 16 359 req/s in that run; reply rate is
//! httperf's sampled figure; CPU from each tool's own CPU line, per reply):
//!
//! | offered (conn/s)  | httperf 0.9.0        | loadgen (cap 1 024)  | loadgen, no cap          |
//! |-------------------|----------------------|----------------------|--------------------------|
//! | 8 179 (half)      | 8 174, 121.9 µs CPU  | 8 179, 101.9 µs CPU  | -                        |
//! | 16 359 (capacity) | 13 845               | 15 159               | -                        |
//! | 49 077 (3x)       | 13 101               | 16 843               | 622 (42 000, other run)  |
//!
//! Caps of 1 024 and 4 096 gave the same reply rates at 3x within this machine's noise (13 254
//! vs 12 728 replies/s, 2 alternating runs at 42 000 conn/s); the default is httperf's 1 024 so
//! that both tools queue the same work on an overloaded server.
//!
//! Timing: schedules are absolute (`start + offset`), so late wake-ups never accumulate drift;
//! a wake-up issues every arrival already due. The driver sleeps on a [`Pacer`] (a timerfd in
//! the worker's own reactor, see `pacer.rs`), not on tokio's timer: tokio rounds deadlines up to
//! its 1-ms tick and woke 0-2 ms late, and that lateness landed in every corrected latency (at
//! 5 000 req/s against a server answering in 0.03-0.05 ms, corrected p50 read 0.7-0.9 ms). To
//! save wake-ups at high rates, an arrival may wait up to `--pace-slack` (default 100 µs) so that
//! one wake-up issues the following arrivals too (`batch_wake`); sparse arrivals still get their
//! own, precise wake-up. The delay actually suffered is reported as *issue lateness*.
//!
//! Measured on the 2-core VM, realserver `--threads 1` pinned to CPU 0, loadgen pinned to CPU 1
//! (one worker), `loadgen http://127.0.0.1:P/ --rate R --duration 10s -v` under
//! `/usr/bin/time`; quiet windows (load average 1-2; runs in busy windows varied by 2x and
//! are not used). Latencies are p50 in ms; CPU is user + system seconds for the whole run.
//!
//! | rate, pacing                         | corrected | uncorrected | issue late | loadgen CPU | server CPU |
//! |--------------------------------------|-----------|-------------|------------|-------------|------------|
//! | 5 000 fixed, tokio timer (before)    | 0.689     | 0.034       | -          | 1.02        | 0.66       |
//! | 5 000 fixed, slack 100 µs (default)  | 0.035     | 0.016       | 0.018      | 1.64        | 0.92       |
//! | 5 000 fixed, `--pace-slack 1ms`      | 0.690     | 0.041       | 0.647      | 1.02        | 0.76       |
//! | 5 000 Poisson, tokio timer (before)  | 0.916     | 0.065       | -          | 1.41        | 1.01       |
//! | 5 000 Poisson, slack 100 µs          | 0.071     | 0.028       | 0.039      | 1.40        | 0.77       |
//! | 20 000 fixed, tokio timer (before)   | 1.085     | 0.155       | -          | 3.57        | 2.64       |
//! | 20 000 fixed, slack 0                | 0.032     | 0.015       | 0.016      | 5.77        | 3.21       |
//! | 20 000 fixed, slack 100 µs (default) | 0.104     | 0.020       | 0.083      | 4.40        | 2.91       |
//! | 20 000 fixed, slack 250 µs           | 0.233     | 0.034       | 0.201      | 3.89        | 2.56       |
//!
//! Rates were within 0.1 % of the target in every row (4 999.8-5 004.3 and 19 997.6-19 999.6
//! req/s; Poisson 20 000: 20 047.2 with corrected p50 0.105, uncorrected 0.024). 30 s at
//! 20 000 req/s (600 000 connections): before 19 997.8 req/s, 11.2 s CPU, peak RSS 9 MB; now
//! 19 998.0-19 999.1 req/s, 13.2-13.3 s CPU, peak RSS 37-45 MB, p50 0.109-0.117 corrected vs
//! 0.022 uncorrected. In those three 30-s runs the single-threaded server (sharing CPU 0 with
//! other jobs) overflowed its accept backlog (`nstat`: ~28 000 ListenOverflows), so ~1 % of
//! connects took 1-3 s of SYN retransmits: they show in `connect_ms` and issue lateness (which
//! includes the connect) and explain the extra RSS (connections waiting). The price of precision
//! is wake-ups (at high rates batches form anyway: 30 000 conn/s x 120 000 with 2 workers took
//! 2.52 s client CPU vs 2.26 s before, 0 errors, corrected p50 0.105 vs 1.791 before): at light load the worker now sleeps and wakes
//! for every arrival instead of once per millisecond, which on this nested VM (expensive idle
//! transitions: ~10x the context switches) costs ~45-60 % more client CPU per connection at
//! 5 000 req/s (~23 -> ~34 µs) and, with the default slack, ~25 % at 20 000 req/s; the server
//! also spends more CPU when its arrivals come evenly spaced instead of in 1-ms clumps. Users
//! who need the cheapest generator can pass `--pace-slack 1ms` (about the old cost, up to 1 ms
//! lateness, visible in the issue-lateness line). A bounded spin before each arrival was rejected:
//! at 5 000 req/s arrivals are 200 µs apart, so it would spin continuously and take the core the
//! server needs. A separate timer thread would add a cross-thread wake-up to every arrival.
//!
//! Latency: `latency` runs from the *scheduled* instant of a call (the arrival instant for the
//! first call of a connection, so it includes any queueing and the connect; the issue instant for
//! later calls on the same connection) to the last reply byte; `latency_uncorrected` runs from
//! the moment the request write started. `issue_lateness` (one sample per connection) runs from
//! the scheduled instant to the start of its first request write, so for one call per connection
//! `latency = issue_lateness + latency_uncorrected` exactly; it includes the connect.
//!
//! Timeouts (`--timeout`): connect, TLS handshake, each request write and each wait for reply
//! bytes must make progress within the timeout (plus `--think-timeout` while waiting for the
//! first byte of a reply); otherwise the connection is closed and one `client-timo` is counted.

use std::cell::RefCell;
use std::collections::VecDeque;
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
    /// Connections open now (open loop: from admission to the end of the task).
    open: AtomicU64,
    max_open: AtomicU64,
    /// Open loop: most connections of this process open at once (`--max-inflight`).
    max_inflight: u64,
    addr_unavailable: AtomicBool,
    live: Option<Arc<Live>>,
}

impl Shared {
    /// Count one more open connection. With `capped` (open loop), refuse it instead when
    /// `max_inflight` are already open: a generator must not let connections pile up past what
    /// it can track (httperf: a connection without a descriptor is an `fd-unavail` error).
    #[inline]
    fn open_conn(&self, capped: bool) -> bool {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if capped && before >= self.max_inflight {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.max_open.fetch_max(before + 1, Ordering::Relaxed);
        true
    }

    #[inline]
    fn close_conn(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a launch starts: an open-loop arrival due at an instant, or a closed-loop slot.
#[derive(Clone, Copy)]
enum Start {
    Arrival(Instant),
    Slot,
}

/// Admit an open-loop arrival (counting it open) or record it as refused by the in-flight cap;
/// closed-loop slots are always admitted (they count their connections themselves).
fn admit<R: RecHandle>(shared: &Shared, rec: &R, what: Start) -> bool {
    match what {
        Start::Slot => true,
        Start::Arrival(scheduled) => {
            if shared.open_conn(true) {
                return true;
            }
            let now = Instant::now();
            rec.with(|r| r.refused(scheduled, now));
            if let Some(l) = &shared.live {
                l.conns.fetch_add(1, Ordering::Relaxed);
                l.errors.fetch_add(1, Ordering::Relaxed);
            }
            false
        }
    }
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
        max_inflight: cfg.max_inflight,
        addr_unavailable: AtomicBool::new(false),
        live,
    });
    let plan = Plan {
        workload: cfg.workload,
        stop: cfg.stop,
        seed: cfg.seed,
        start,
        client: cfg.client,
        pace_slack: cfg.pace_slack,
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
    pace_slack: Duration,
}

impl Plan {
    /// An empty recorder for this run (one per worker, absorbed at the end).
    fn recorder(&self) -> Recorder {
        Recorder::for_client(self.start, self.client.0, self.client.1)
    }
}

/// One launched connection (open loop) or closed-loop slot, on either runtime layout;
/// the guard marks it in flight until it ends.
async fn conn_task<R: RecHandle>(shared: Arc<Shared>, rec: R, what: Start, guard: InflightGuard) {
    match what {
        Start::Slot => slot_loop(&shared, &rec).await,
        Start::Arrival(scheduled) => {
            let late = Instant::now().saturating_duration_since(scheduled);
            rec.with(|r| r.start_lateness(late));
            connection(&shared, &rec, scheduled).await;
            shared.close_conn();
        }
    }
    drop(guard);
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
                let rec = Rc::new(RefCell::new(plan.recorder()));
                let local = tokio::task::LocalSet::new();
                let inflight = Inflight::default();
                let launch = {
                    let rec = rec.clone();
                    let inflight = inflight.clone();
                    move |fut_shared: Arc<Shared>, what: Start| {
                        if admit(&fut_shared, &rec, what) {
                            tokio::task::spawn_local(conn_task(
                                fut_shared,
                                rec.clone(),
                                what,
                                inflight.enter(),
                            ));
                        }
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
    Ok((total.unwrap_or_else(|| plan.recorder()), max_burst))
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
    let rec = Arc::new(Mutex::new(plan.recorder()));
    let inflight = Inflight::default();
    let launch = {
        let rec = rec.clone();
        let inflight = inflight.clone();
        move |fut_shared: Arc<Shared>, what: Start| {
            if admit(&fut_shared, &rec, what) {
                tokio::spawn(conn_task(fut_shared, rec.clone(), what, inflight.enter()));
            }
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
    mut launch: impl FnMut(Arc<Shared>, Start),
) -> u64 {
    match plan.workload {
        Workload::Closed(c) => {
            let slots = share(u64::from(c), w, workers);
            for _ in 0..slots {
                launch(shared.clone(), Start::Slot);
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
    launch: &mut impl FnMut(Arc<Shared>, Start),
) -> u64 {
    let mut more = WorkerArrivals {
        schedule: Schedule::new(dist, plan.seed),
        index: 0,
        w: w as u64,
        workers: workers.max(1) as u64,
        stop: plan.stop,
        start: plan.start,
    };
    let mut ahead: VecDeque<Instant> = VecDeque::new();
    let mut pacer = Pacer::new();
    let mut burst: u64 = 0;
    let mut max_burst: u64 = 0;
    while let Some(at) = ahead.pop_front().or_else(|| more.next()) {
        if at > Instant::now() {
            burst = 0;
            let wake = batch_wake(at, plan.pace_slack, &mut ahead, &mut more);
            pacer.wait_until(wake).await;
        }
        burst += 1;
        max_burst = max_burst.max(burst);
        launch(shared.clone(), Start::Arrival(at));
    }
    max_burst
}

/// One worker's arrival instants: every `workers`-th arrival of the shared schedule, starting at
/// index `w`, until the stop condition.
struct WorkerArrivals {
    schedule: Schedule,
    index: u64,
    w: u64,
    workers: u64,
    stop: Stop,
    start: Instant,
}

impl Iterator for WorkerArrivals {
    type Item = Instant;
    fn next(&mut self) -> Option<Instant> {
        loop {
            let offset = self.schedule.next_offset();
            let i = self.index;
            self.index += 1;
            match self.stop {
                Stop::Conns(n) if i >= n => return None,
                Stop::Duration(d) if offset >= d => return None,
                _ => {}
            }
            if i % self.workers == self.w {
                return Some(self.start + offset);
            }
        }
    }
}

/// The instant to sleep until before issuing arrival `first` (which is in the future): the last
/// of the following arrivals that is due no later than `first + coalesce`, so that one wake-up
/// issues all of them and none is more than `coalesce` late; `first` itself when the next arrival
/// is further away (light load: every arrival gets its own, precise wake-up). Arrivals looked at
/// are queued in `ahead` (in order) and must be issued from there first.
fn batch_wake(
    first: Instant,
    coalesce: Duration,
    ahead: &mut VecDeque<Instant>,
    more: &mut impl Iterator<Item = Instant>,
) -> Instant {
    let limit = first + coalesce;
    let mut wake = first;
    let mut k = 0;
    loop {
        let next = match ahead.get(k) {
            Some(t) => *t,
            None => match more.next() {
                Some(t) => {
                    ahead.push_back(t);
                    t
                }
                None => return wake,
            },
        };
        if next > limit {
            return wake;
        }
        wake = wake.max(next);
        k += 1;
    }
}

/// Closed-loop slot: connection after connection until the run ends.
async fn slot_loop<R: RecHandle>(shared: &Shared, rec: &R) {
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // A connection budget exists only without a deadline (`--num-conns`); with one the
        // counter is a never-exhausted placeholder, so skip the shared CAS per connection.
        if shared.deadline.is_none()
            && shared
                .conns_left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        shared.open_conn(false);
        let ok = connection(shared, rec, Instant::now()).await;
        shared.close_conn();
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
    let mut replies = 0u32;
    let result = connect_and_call(shared, rec, scheduled, conn_start, &mut replies).await;
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
    let mut stream = guarded(&mut wd, socket.connect(shared.addr)).await?;
    stream.set_nodelay(true).map_err(Failure::Io)?;
    let result = match &shared.tls {
        None => {
            let now = Instant::now();
            rec.with(|r| r.conn_established(now, now - conn_start));
            calls(shared, rec, &mut stream, &mut wd, scheduled, replies).await
        }
        Some((connector, name)) => {
            if let (Some(w), Some(t)) = (wd.as_mut(), shared.timeout) {
                w.set(Instant::now() + t);
            }
            // Boxed so the (large) TLS state does not inflate every plain connection's future.
            Box::pin(async {
                let mut tls =
                    guarded(&mut wd, connector.connect(name.clone(), &mut stream)).await?;
                let now = Instant::now();
                rec.with(|r| r.conn_established(now, now - conn_start));
                calls(shared, rec, &mut tls, &mut wd, scheduled, replies).await
            })
            .await
        }
    };
    if matches!(result, Err(Failure::Timeout)) {
        // Abort with a reset rather than a FIN: the server drops the connection (and the request
        // still queued in its accept queue) instead of serving a client that gave up, and
        // neither side keeps a FIN_WAIT/TIME_WAIT socket for it. Matters past saturation.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    result
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
    stream: &mut S,
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
                    await_server_close(stream, wd, &mut buf).await;
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

    fn arrivals(dist: Distribution, stop: Stop, w: u64, workers: u64, t0: Instant) -> Vec<u64> {
        WorkerArrivals {
            schedule: Schedule::new(dist, 9),
            index: 0,
            w,
            workers,
            stop,
            start: t0,
        }
        .map(|t| (t - t0).as_micros() as u64)
        .collect()
    }

    #[test]
    fn workers_split_the_schedule_by_index() {
        let t0 = Instant::now();
        let fixed = Distribution::Fixed { period_s: 1e-4 };
        assert_eq!(
            arrivals(fixed, Stop::Conns(7), 0, 1, t0),
            vec![0, 100, 200, 300, 400, 500, 600]
        );
        assert_eq!(
            arrivals(fixed, Stop::Conns(7), 0, 2, t0),
            vec![0, 200, 400, 600]
        );
        assert_eq!(
            arrivals(fixed, Stop::Conns(7), 1, 2, t0),
            vec![100, 300, 500]
        );
        // --duration: arrivals strictly before the end.
        let d = Stop::Duration(Duration::from_micros(500));
        assert_eq!(arrivals(fixed, d, 0, 1, t0), vec![0, 100, 200, 300, 400]);
        // Random schedules: the union of the workers' arrivals is the one schedule.
        let poisson = Distribution::Poisson { mean_s: 1e-3 };
        let mut all = arrivals(poisson, Stop::Conns(500), 0, 3, t0);
        all.extend(arrivals(poisson, Stop::Conns(500), 1, 3, t0));
        all.extend(arrivals(poisson, Stop::Conns(500), 2, 3, t0));
        all.sort_unstable();
        assert_eq!(all, arrivals(poisson, Stop::Conns(500), 0, 1, t0));
    }

    #[test]
    fn batch_wake_coalesces_only_within_the_window() {
        let t0 = Instant::now();
        let us = |n: u64| t0 + Duration::from_micros(n);
        let win = Duration::from_micros(100);
        // Sparse arrivals (light load): wake exactly at the first one, look one ahead.
        let mut ahead = VecDeque::new();
        let mut more = [us(300), us(500)].into_iter();
        assert_eq!(batch_wake(us(100), win, &mut ahead, &mut more), us(100));
        assert_eq!(ahead, VecDeque::from([us(300)]));
        // Dense arrivals: wake at the last one within 100 µs of the first, none skipped.
        let mut ahead = VecDeque::from([us(130)]);
        let mut more = [us(160), us(200), us(201), us(260)].into_iter();
        assert_eq!(batch_wake(us(100), win, &mut ahead, &mut more), us(200));
        assert_eq!(ahead, VecDeque::from([us(130), us(160), us(200), us(201)]));
        assert_eq!(more.next(), Some(us(260)));
        // Already looked-at arrivals are reused, not regenerated; the schedule may end.
        let mut ahead = VecDeque::from([us(150), us(400)]);
        let mut none = std::iter::empty();
        assert_eq!(batch_wake(us(100), win, &mut ahead, &mut none), us(150));
        let mut ahead = VecDeque::new();
        assert_eq!(batch_wake(us(100), win, &mut ahead, &mut none), us(100));
        assert!(ahead.is_empty());
        // Zero window: always the first arrival itself (equal instants still batch).
        let mut ahead = VecDeque::new();
        let mut more = [us(100), us(101)].into_iter();
        assert_eq!(
            batch_wake(us(100), Duration::ZERO, &mut ahead, &mut more),
            us(100)
        );
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
