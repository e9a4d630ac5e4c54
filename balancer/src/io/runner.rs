//! The packet loop: one OS thread owns the engine and both ports and
//! polls `front`, `back` and the self-pipe with poll(2).
//!
//! Why one thread and no lock: on the target machines (2 cores shared with
//! clients and servers) a second packet thread mostly competes for the same
//! cores, and one owner means the engine needs no Mutex and the control
//! endpoint gets consistent snapshots by asking the loop (see `control`).
//!
//! With `--io mmsg` (default) the loop reads up to `--batch` frames per
//! recvmmsg(2) into preallocated slots, runs each through the engine (which
//! rewrites in place), queues the forwards per interface and sends each
//! queue with one sendmmsg(2) at the end of the batch (TUN deliveries are a
//! write(2) each, as they come). Per frame, with `--io direct`, the loop
//! does one recv(2) straight into its buffer, the decision, and one send(2)
//! on the same pnet-built socket (or one write(2) to the TUN). `--io pnet`
//! goes through pnet's receiver and sender instead, which add a poll(2) per
//! frame read and per frame sent plus a copy (pnet lends its buffer
//! read-only): measured in the 3-namespace test topology, 2.2 µs vs 1.5 µs
//! of packet-thread CPU per frame (keep-alive HTTP), 3.3 vs 2.5 µs (a
//! connection per request).
//!
//! mmsg vs direct, same topology, NAT, loadgen at 64 concurrent (medians
//! of 5 alternated 5 s runs, 2 cores): a connection per request 2.49 ->
//! 2.29 µs per frame (-8 %, and +8 % replies/s since the balancer is the
//! bottleneck there), keep-alive 2.54 -> 2.43 µs (-4 %, within noise), an
//! open-loop 8000 connections/s no better (4.27 vs 4.38 µs, within noise;
//! there the poll(2) sleep/wake-up per few frames dominates). The
//! syscall entries batching removes were only ~10 % of the cost: about
//! half of this thread's CPU is the receiving namespace's TCP stack, which
//! a veth runs in the sender's context (softirq on sendmmsg's return), and
//! most of the rest is the per-frame AF_PACKET send/receive work itself.
//!
//! No allocation on any packet path; ARP, expiry and rate sampling run on
//! the timer tick, which is also the poll timeout.
//!
//! With peers configured, the heartbeat socket is a fourth descriptor in
//! the same poll(2) and the membership node's next deadline bounds the
//! poll timeout (see `io::heartbeat` for why on this thread). Whenever the
//! node's view changes the engine's membership is replaced. The ready line
//! is printed when the node first claims buckets. The first SIGINT/SIGTERM
//! announces the leave and drains (established flows are served for the
//! drain period, or until none is left); a second one exits at once.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use balancer::config::CheckKind;
use balancer::config::Config;
use balancer::conntrack::TcpState;
use balancer::engine::{Action, Balancer, Iface, Interfaces};
use balancer::health::Health;
use balancer::heartbeat::{Key, State, MAX_LEN};
use balancer::membership::{Node, Timing};
use balancer::sched::Target;
use balancer::status::{ProcessInfo, StatusDoc};
use balancer::wire::{arp_request, parse_arp, ETHERTYPE_ARP};

use super::arp::Resolver;
use super::batch::{drain, next_want, Batch, Flushed, TxDrops, MAX_BATCH};
use super::control::{self, Command, Request};
use super::early_drop::{self, Rule};
use super::health::{self as checker, CheckResult};
use super::heartbeat::HeartbeatSocket;
use super::packet::{find_interface, ipv4_addrs, wait_writable, IoMode, Port, PortOptions, Recv};
use super::sys::{self, Waker};
use super::tables::Tables;

/// ARP retry interval for unresolved real servers.
const ARP_INTERVAL: Duration = Duration::from_secs(1);

/// I/O settings that are not part of the engine's [`Config`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Socket options for both ports.
    pub port: PortOptions,
    /// Timer tick (and poll timeout).
    pub tick: Duration,
    /// TUN device holding the VIP (bi-active only).
    pub tun: String,
    /// Control endpoint; None: front's first IPv4 address, port 9100.
    pub control: Option<SocketAddr>,
    /// Frames per batch (mmsg) or per wake-up and port (direct, pnet).
    pub batch: usize,
    /// The cluster key's bytes (required when the configuration lists peers).
    pub cluster_key: Option<Vec<u8>>,
    /// Drop the handled frames at tc ingress (see [`super::early_drop`]).
    pub early_drop: bool,
}

/// Unix time in milliseconds (heartbeat epochs and freshness).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Health checks of the packet loop (only when enabled).
struct Checks {
    health: Health,
    /// Engine target of each checked index.
    targets: Vec<Target>,
    results: Receiver<CheckResult>,
}

/// Heartbeat membership state of the packet loop (only with peers).
struct Cluster {
    node: Node,
    sock: HeartbeatSocket,
    /// The node's view version last given to the engine.
    applied: u64,
    buf: Vec<u8>,
}

#[derive(Debug, Default)]
struct IoCounters {
    packets_in: u64,
    packets_out: u64,
    tx_errors_front: u64,
    tx_errors_back: u64,
    tx_retries: u64,
    tx_drops: TxDrops,
    tables_installed: u64,
    tun_errors: u64,
    rx_oversize: u64,
    rx_errors: u64,
    arp_requests: u64,
    arp_seen: u64,
    /// Frames the kernel dropped in front of the packet sockets (full
    /// socket buffer or ring), front and back (PACKET_STATISTICS, per tick).
    rx_dropped: [u64; 2],
}

impl IoCounters {
    /// Counts frames given up on `iface`: tx errors of the interface, and by reason.
    fn tx_lost(&mut self, iface: Iface, d: TxDrops) {
        *pick(iface, &mut self.tx_errors_front, &mut self.tx_errors_back) += d.total();
        self.tx_drops.would_block += d.would_block;
        self.tx_drops.no_buffers += d.no_buffers;
        self.tx_drops.other += d.other;
    }
}

/// One frame lost for a reason other than the kernel's (a length bug).
const ONE_OTHER: TxDrops = TxDrops {
    would_block: 0,
    no_buffers: 0,
    other: 1,
};

#[derive(Debug)]
struct Rate {
    at: Instant,
    in_: u64,
    out: u64,
    rx_pps: f64,
    tx_pps: f64,
}

struct Loop {
    /// Builds sh/mh tables off this thread.
    tables: Tables,
    bal: Balancer,
    front: Port,
    back: Port,
    tun: Option<File>,
    buf: Vec<u8>,
    batch: Option<Batch>,
    batch_size: usize,
    io: IoCounters,
    resolver: Resolver,
    start: Instant,
    cpu0: Duration,
    rate: Rate,
    requests: Receiver<Request>,
    waker: Waker,
    tick: Duration,
    logged_rx_error: [bool; 2],
    logged_tx_error: [bool; 3],
    cluster: Option<Cluster>,
    /// Printed once the node first claims buckets.
    ready_line: Option<String>,
    drain: Duration,
    drain_until: Option<Instant>,
    /// When the drain last looked for flows left.
    flows_checked: Instant,
    checks: Option<Checks>,
    /// Withdrawn by the operator (`POST /drain`).
    drained: bool,
    /// The tcx links of the early drop: attached while they are open.
    _early_drop: Vec<OwnedFd>,
    /// What the early drop does, per interface (for `/stats`).
    early_drop: String,
}

fn open_tun(name: &str, vip: Ipv4Addr) -> anyhow::Result<File> {
    let hint = format!(
        "create it first: ip tuntap add dev {name} mode tun && ip addr add {vip}/32 dev {name} && ip link set {name} up"
    );
    let iface = find_interface(name, "TUN").with_context(|| hint.clone())?;
    if !iface
        .ips
        .iter()
        .any(|n| n.ip() == std::net::IpAddr::V4(vip))
    {
        eprintln!("balancer: warning: TUN '{name}' does not hold the VIP {vip}; local delivery will not reach a server ({hint})");
    }
    let f = sys::tun_attach(name).map_err(|e| {
        let extra = match e.raw_os_error() {
            Some(libc::EPERM) => " (needs root / CAP_NET_ADMIN)",
            Some(libc::EINVAL) => " (is it a TUN device in tun mode without packet info? `ip tuntap add dev NAME mode tun`)",
            Some(libc::EBUSY) => " (another process holds it)",
            _ => "",
        };
        anyhow::anyhow!("cannot attach to TUN '{name}': {e}{extra}")
    })?;
    if !iface.is_up() {
        eprintln!("balancer: warning: TUN '{name}' is down ({hint})");
    }
    Ok(f)
}

/// Opens everything, prints the ready line and runs until SIGINT/SIGTERM.
pub fn run(cfg: Config, o: RunOptions) -> anyhow::Result<()> {
    if cfg.front_interface == cfg.back_interface {
        bail!(
            "front and back are the same interface '{}': the balancer needs two",
            cfg.front_interface
        );
    }
    // Name every missing interface before opening anything.
    find_interface(&cfg.front_interface, "front")?;
    find_interface(&cfg.back_interface, "back")?;
    let front = Port::open("front", &cfg.front_interface, &o.port)?;
    let back = Port::open("back", &cfg.back_interface, &o.port)?;
    let (early_links, early_drop) = if o.early_drop {
        attach_early_drop(&cfg)?
    } else {
        (Vec::new(), "off".to_string())
    };
    let tun = if cfg.bi_active {
        Some(open_tun(&o.tun, *cfg.vip.ip())?)
    } else {
        None
    };
    let bal = Balancer::new(
        &cfg,
        Interfaces {
            front_mac: front.mac,
            back_mac: back.mac,
        },
    )
    .context("building the balancer")?;
    let start = Instant::now();
    let cluster = open_cluster(&cfg, &o, &front, start)?;
    let control_addr = o
        .control
        .unwrap_or_else(|| SocketAddr::new(front.ipv4.unwrap_or(Ipv4Addr::LOCALHOST).into(), 9100));
    let listener = control::bind(control_addr)?;
    let waker = Waker::new().context("creating the wake-up pipe")?;
    waker
        .install_signal_handlers()
        .context("installing SIGINT/SIGTERM handlers")?;
    let checks = start_checks(&cfg, &waker, start)?;
    let tables = Tables::spawn(waker.handle().context("cloning the wake-up pipe")?)?;
    let (req_tx, req_rx) = mpsc::channel();
    control::spawn(
        listener,
        req_tx,
        waker.handle().context("cloning the wake-up pipe")?,
    )?;
    if back.ipv4.is_none() && cfg.real_servers.iter().any(|r| r.mac.is_none()) {
        eprintln!(
            "balancer: warning: back interface '{}' has no IPv4 address; ARP requests go out as probes (sender 0.0.0.0)",
            back.name
        );
    }
    eprintln!(
        "balancer: control endpoint http://{control_addr}/stats; sockets rcvbuf {} / {} bytes",
        front.rcvbuf, back.rcvbuf
    );
    if let Some(r) = front.ring.as_ref().map(|r| r.layout()) {
        eprintln!(
            "balancer: receive rings (--io ring): {} slots of {} bytes ({} KiB) per interface",
            r.frames(),
            r.frame_size,
            r.bytes() >> 10
        );
    }
    let ready_line = format!(
        "balancer: ready (front {}, back {}, vip {}, {} real servers, method {}, bi-active {})",
        cfg.front_interface,
        cfg.back_interface,
        cfg.vip,
        cfg.real_servers.len(),
        cfg.forwarding,
        if cfg.bi_active { "on" } else { "off" }
    );
    if cluster.is_some() {
        eprintln!(
            "balancer: node {} listening for peers ({} ms) before claiming buckets",
            cfg.cluster.node_id,
            u64::from(cfg.cluster.heartbeat.interval_ms)
                * u64::from(cfg.cluster.heartbeat.dead_after)
        );
    }
    let now = start;
    let batch = batch_for(&front, &back, o.batch, o.port.frame_buffer);
    let mut l = Loop {
        bal,
        front,
        back,
        tun,
        buf: vec![0; o.port.frame_buffer],
        batch,
        batch_size: o.batch.clamp(1, MAX_BATCH),
        io: IoCounters::default(),
        resolver: Resolver::new(&cfg, ARP_INTERVAL),
        start: now,
        cpu0: sys::thread_cpu_time(),
        rate: Rate {
            at: now,
            in_: 0,
            out: 0,
            rx_pps: 0.0,
            tx_pps: 0.0,
        },
        requests: req_rx,
        waker,
        tick: o.tick,
        logged_rx_error: [false; 2],
        logged_tx_error: [false; 3],
        ready_line: Some(ready_line),
        cluster,
        drain: Duration::from_millis(cfg.cluster.heartbeat.drain_ms.into()),
        drain_until: None,
        flows_checked: now,
        checks,
        drained: false,
        tables,
        _early_drop: early_links,
        early_drop,
    };
    l.run()?;
    l.summary();
    Ok(())
}

/// The batch state the ports' read paths need: receive slots for
/// recvmmsg(2) when a port uses it (with rings frames stay in their ring
/// slots: headers and send queues only), none for per-frame I/O.
fn batch_for(front: &Port, back: &Port, size: usize, frame_buffer: usize) -> Option<Batch> {
    match (front.io, back.io) {
        (IoMode::Ring, IoMode::Ring) => Some(Batch::new(size, 0)),
        (IoMode::Mmsg | IoMode::Ring, _) | (_, IoMode::Mmsg | IoMode::Ring) => {
            Some(Batch::new(size, frame_buffer))
        }
        _ => None,
    }
}

/// Attaches the early drop to front (frames to the VIP) and back (TCP/ICMP
/// not to back's own addresses). A kernel without tcx or a process without
/// CAP_BPF only costs CPU: a warning, and the balancer runs without it.
fn attach_early_drop(cfg: &Config) -> anyhow::Result<(Vec<OwnedFd>, String)> {
    let front = find_interface(&cfg.front_interface, "front")?;
    let back = find_interface(&cfg.back_interface, "back")?;
    let own: Vec<Ipv4Addr> = ipv4_addrs(&back).collect();
    let mut links = Vec::new();
    let mut said = Vec::new();
    for (role, iface, rule) in [
        ("front", &front, Rule::To(vec![*cfg.vip.ip()])),
        ("back", &back, Rule::TcpIcmpNotTo(own)),
    ] {
        let what = early_drop::describe(&rule);
        let attached = sys::bpf_load_tc(&early_drop::encode(&early_drop::program(&rule)), role)
            .and_then(|prog| sys::bpf_tcx_attach(prog.as_raw_fd(), iface.index));
        match attached {
            Ok(link) => {
                links.push(link);
                said.push(format!("{role}: tcx ingress drops {what}"));
            }
            Err(e) => {
                eprintln!(
                    "balancer: warning: no early drop on {role} '{}' ({e}); its kernel carries the \\
                     balancer's frames to its own drop (more CPU per frame)",
                    iface.name
                );
                said.push(format!("{role}: off ({e})"));
            }
        }
    }
    let line = said.join("; ");
    eprintln!("balancer: early drop: {line}");
    Ok((links, line))
}

/// Starts the health checker when checks are on: the local server (with
/// bi-active) and every real server, all up at first.
fn start_checks(cfg: &Config, waker: &Waker, start: Instant) -> anyhow::Result<Option<Checks>> {
    if cfg.health.check == CheckKind::None {
        return Ok(None);
    }
    let mut targets = Vec::new();
    let mut addrs = Vec::new();
    let mut names = Vec::new();
    if cfg.bi_active {
        targets.push(Target::Local);
        let a = std::net::SocketAddrV4::new(cfg.local.addr, cfg.local.port);
        addrs.push(a);
        names.push((Target::Local.to_string(), a.to_string()));
    }
    for (i, r) in cfg.real_servers.iter().enumerate() {
        let t = Target::Real(i as u16);
        targets.push(t);
        addrs.push(r.endpoint());
        names.push((t.to_string(), r.endpoint().to_string()));
    }
    let (tx, rx) = mpsc::channel();
    let wake = waker.handle().context("cloning the wake-up pipe")?;
    checker::spawn(addrs, cfg.health.clone(), tx, wake)?;
    eprintln!(
        "balancer: health checks ({}) of {} targets every {} ms, timeout {} ms, rise {}, fall {}",
        cfg.health.check.name(),
        targets.len(),
        cfg.health.interval_ms,
        cfg.health.timeout_ms,
        cfg.health.rise,
        cfg.health.fall
    );
    Ok(Some(Checks {
        health: Health::new(&names, cfg.health.rise, cfg.health.fall, start.elapsed()),
        targets,
        results: rx,
    }))
}

/// The membership node and heartbeat socket, when the configuration lists
/// peers; the engine then starts with an empty membership (claims nothing).
fn open_cluster(
    cfg: &Config,
    o: &RunOptions,
    front: &Port,
    start: Instant,
) -> anyhow::Result<Option<Cluster>> {
    if !cfg.cluster.has_peers() {
        return Ok(None);
    }
    let Some(key) = &o.cluster_key else {
        bail!("cluster.members lists peers but no cluster key was loaded");
    };
    let local = front.ipv4.with_context(|| {
        format!(
            "front interface '{}' has no IPv4 address: heartbeats need one to join their multicast group",
            cfg.front_interface
        )
    })?;
    let h = cfg.cluster.heartbeat;
    let sock = HeartbeatSocket::open(&cfg.front_interface, local, h.group, h.port)?;
    let node = Node::new(
        cfg.cluster.node_id,
        cfg.vip,
        &cfg.cluster.members,
        Timing {
            interval: Duration::from_millis(h.interval_ms.into()),
            dead_after: h.dead_after,
        },
        Key::new(key).context("cluster key")?,
        start.elapsed(),
        wall_ms(),
    );
    Ok(Some(Cluster {
        node,
        sock,
        applied: u64::MAX,
        buf: vec![0; MAX_LEN + 1],
    }))
}

/// Runs one received frame through the engine (ARP replies on `back` go
/// to the resolver instead: `None`).
fn decide(
    bal: &mut Balancer,
    resolver: &mut Resolver,
    io: &mut IoCounters,
    which: Iface,
    now: Duration,
    frame: &mut [u8],
) -> Option<Action> {
    match which {
        Iface::Front => Some(bal.handle_front(now, frame)),
        Iface::Back => {
            if frame.len() >= 14 && frame[12..14] == ETHERTYPE_ARP.to_be_bytes() {
                io.arp_seen += 1;
                if let Ok(arp) = parse_arp(frame) {
                    resolver.learn(&arp, |l| {
                        bal.set_real_mac(l.index, l.mac);
                        match l.previous {
                            None => eprintln!(
                                "balancer: real[{}] {} is at {} (ARP on back)",
                                l.index, l.ip, l.mac
                            ),
                            Some(p) => eprintln!(
                                "balancer: real[{}] {} moved from {p} to {} (ARP on back)",
                                l.index, l.ip, l.mac
                            ),
                        }
                    });
                }
                return None;
            }
            Some(bal.handle_back(now, frame))
        }
    }
}

/// Writes the IP packet `frame[offset..offset + len]` into the TUN (local
/// delivery), counting the outcome; a range outside the frame is an error.
fn tun_write(
    tun: Option<&mut File>,
    frame: &[u8],
    (offset, len): (usize, usize),
    io: &mut IoCounters,
    logged: &mut bool,
) {
    let packet = offset
        .checked_add(len)
        .and_then(|end| frame.get(offset..end));
    let ok = match (tun, packet) {
        (Some(t), Some(p)) => match t.write(p) {
            Ok(_) => true,
            Err(e) => {
                if !*logged {
                    *logged = true;
                    eprintln!("balancer: TUN write error: {e} (counted; logged once)");
                }
                false
            }
        },
        _ => false,
    };
    if ok {
        io.packets_out += 1;
    } else {
        io.tun_errors += 1;
    }
}

/// `front` or `back` (a port, or one of its fields) by `which`; a function
/// rather than a method so that the rest of the loop stays borrowable.
fn pick<T>(which: Iface, front: T, back: T) -> T {
    match which {
        Iface::Front => front,
        Iface::Back => back,
    }
}

/// The [`Pipeline`] of the loop `$l` and its batch `$b`: a macro, not a
/// method, so that the borrows stay split by field and the ring of the
/// port being read can be borrowed beside it.
macro_rules! pipeline {
    ($l:ident, $b:ident) => {
        Pipeline {
            bal: &mut $l.bal,
            resolver: &mut $l.resolver,
            io: &mut $l.io,
            tun: $l.tun.as_mut(),
            logged_tun: &mut $l.logged_tx_error[2],
            txq: &mut $b.txq,
        }
    };
}

/// The batched paths' per-frame work: the engine's verdict on a frame,
/// then forwards queued per interface for one sendmmsg(2) each and local
/// deliveries written to the TUN.
struct Pipeline<'a> {
    bal: &'a mut Balancer,
    resolver: &'a mut Resolver,
    io: &'a mut IoCounters,
    tun: Option<&'a mut File>,
    logged_tun: &'a mut bool,
    /// Frames to send as (offset in the batch's buffer or the ring, length), front = 0, back = 1.
    txq: &'a mut [Vec<(usize, usize)>; 2],
}

impl Pipeline<'_> {
    /// Takes `frame`, read on `which` and starting at `at` in its buffer.
    fn frame(&mut self, which: Iface, now: Duration, frame: &mut [u8], at: usize) {
        let Some(action) = decide(self.bal, self.resolver, self.io, which, now, frame) else {
            return;
        };
        match action {
            // The engine never grows a frame; a longer length would be a bug: drop.
            Action::Forward { iface, len } if len <= frame.len() => {
                self.txq[usize::from(iface == Iface::Back)].push((at, len));
            }
            Action::Forward { iface, .. } => self.io.tx_lost(iface, ONE_OTHER),
            Action::DeliverLocal { offset, len } => tun_write(
                self.tun.as_deref_mut(),
                frame,
                (offset, len),
                self.io,
                self.logged_tun,
            ),
            Action::Drop(_) => {}
        }
    }
}

impl Loop {
    fn run(&mut self) -> anyhow::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.front.fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.back.fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.cluster.as_ref().map_or(-1, |c| c.sock.fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        self.on_tick();
        self.membership();
        let mut next_tick = Instant::now() + self.tick;
        while self.keep_running() {
            let wait = next_tick
                .min(self.membership_deadline())
                .saturating_duration_since(Instant::now());
            sys::poll(&mut fds, wait).context("poll(2) on the packet sockets")?;
            if fds[0].revents != 0 {
                self.pump(Iface::Front);
            }
            if fds[1].revents != 0 {
                self.pump(Iface::Back);
            }
            if fds[2].revents != 0 {
                self.waker.drain();
                self.answer();
                self.health_results();
            }
            if fds[3].revents != 0 {
                self.receive_heartbeats();
            }
            self.membership();
            self.swap_tables();
            let now = Instant::now();
            if now >= next_tick {
                self.on_tick();
                next_tick += self.tick;
                if next_tick <= now {
                    next_tick = now + self.tick;
                }
            }
        }
        Ok(())
    }

    /// Passes the engine's table request (after a weight, health or MAC
    /// change) to the builder thread, and installs what it has built.
    fn swap_tables(&mut self) {
        if let Some(r) = self.bal.take_table_request() {
            if !self.tables.request(r) {
                // The builder is gone (it cannot panic on a valid request):
                // build here rather than keep a stale table forever.
                self.bal.build_tables_now();
            }
        }
        while let Ok(t) = self.tables.ready() {
            if self.bal.install_table(t) {
                self.io.tables_installed += 1;
            }
        }
    }

    /// Reads what one port has queued and carries out the actions: one
    /// recvmmsg/sendmmsg batch (`--io mmsg`) or up to `batch` frames one
    /// by one (`--io direct` / `--io pnet`).
    fn pump(&mut self, which: Iface) {
        let io = pick(which, self.front.io, self.back.io);
        match io {
            IoMode::Mmsg => self.pump_batch(which),
            IoMode::Ring => self.pump_ring(which),
            IoMode::Direct | IoMode::Pnet => self.pump_single(which),
        }
    }

    /// Counts and logs (once per port) a receive error, and clears it.
    fn rx_error(&mut self, which: Iface, e: &std::io::Error) {
        self.io.rx_errors += 1;
        let port = pick(which, &self.front, &self.back);
        let i = usize::from(which == Iface::Back);
        if !self.logged_rx_error[i] {
            self.logged_rx_error[i] = true;
            eprintln!(
                "balancer: receive error on {} '{}': {e} (counted in rx_errors; logged once)",
                port.role, port.name
            );
        }
        // Reading SO_ERROR clears a pending socket error (e.g. ENETDOWN).
        let _ = sys::take_socket_error(port.fd);
    }

    /// Per-frame path: up to `batch` reads, each frame sent at once.
    fn pump_single(&mut self, which: Iface) {
        let now = self.start.elapsed();
        for _ in 0..self.batch_size {
            let port = pick(which, &mut self.front, &mut self.back);
            let n = match port.recv(&mut self.buf) {
                Recv::Frame(n) => n,
                Recv::Empty => break,
                Recv::Oversize => {
                    // Possibly cut (offloads on?): never forward a partial frame.
                    self.io.packets_in += 1;
                    self.io.rx_oversize += 1;
                    continue;
                }
                Recv::Error(e) => {
                    self.rx_error(which, &e);
                    break;
                }
            };
            self.io.packets_in += 1;
            let frame = &mut self.buf[..n];
            let Some(action) = decide(
                &mut self.bal,
                &mut self.resolver,
                &mut self.io,
                which,
                now,
                frame,
            ) else {
                continue;
            };
            self.execute(action);
        }
    }

    /// Batched path: one recvmmsg(2), every frame through the engine, the
    /// forwards queued per interface and flushed with one sendmmsg(2) each
    /// (local deliveries are written to the TUN as they come).
    fn pump_batch(&mut self, which: Iface) {
        let Some(b) = self.batch.as_mut() else {
            return;
        };
        let fd = pick(which, self.front.fd, self.back.fd);
        let want = b.want.clamp(1, b.rx.len());
        let got = sys::recv_frames(fd, &mut b.rx_msgs, &mut b.bufs, b.slot, &mut b.rx[..want]);
        b.want = next_want(*got.as_ref().unwrap_or(&0), b.rx.len());
        let n = match got {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                self.rx_error(which, &e);
                return;
            }
        };
        b.stats.rx_calls += 1;
        b.stats.rx_frames += n as u64;
        let now = self.start.elapsed();
        let slot = b.slot;
        let mut p = pipeline!(self, b);
        for i in 0..n {
            let rx = b.rx[i];
            p.io.packets_in += 1;
            if rx.truncated {
                // Cut (offloads on?): never forward a partial frame.
                p.io.rx_oversize += 1;
                continue;
            }
            let off = i * slot;
            let Some(frame) = b.bufs.get_mut(off..off + rx.len) else {
                p.io.rx_oversize += 1;
                continue;
            };
            p.frame(which, now, frame, off);
        }
        self.flush(Iface::Front, None);
        self.flush(Iface::Back, None);
    }

    /// Ring path: every frame the kernel has handed over (up to `--batch`)
    /// through the engine in its slot, the forwards queued per interface and
    /// flushed straight from the slots with one sendmmsg(2) each, then the
    /// slots given back.
    fn pump_ring(&mut self, which: Iface) {
        let Some(b) = self.batch.as_mut() else {
            return;
        };
        let port = pick(which, &mut self.front, &mut self.back);
        let Some(ring) = port.ring.as_mut() else {
            return;
        };
        let now = self.start.elapsed();
        // Past the ring's size `frame` would come round to slots taken already.
        let most = b.size().min(ring.layout().frames());
        let mut taken = 0;
        let mut p = pipeline!(self, b);
        while taken < most {
            let Some((at, f)) = ring.frame(taken) else {
                break;
            };
            taken += 1;
            p.io.packets_in += 1;
            if f.cut {
                // Cut (offloads on?): never forward a partial frame.
                p.io.rx_oversize += 1;
                continue;
            }
            p.frame(which, now, ring.bytes_mut(at, f.len), at);
        }
        if taken == 0 {
            return;
        }
        b.stats.rx_calls += 1;
        b.stats.rx_frames += taken as u64;
        self.flush(Iface::Front, Some(which));
        self.flush(Iface::Back, Some(which));
        let port = pick(which, &mut self.front, &mut self.back);
        if let Some(ring) = port.ring.as_mut() {
            ring.release(taken);
        }
    }

    /// Sends one interface's queued frames (sendmmsg; partial sends, EAGAIN
    /// and ENOBUFS retried within bounds, see [`drain`]) and empties the
    /// queue. The frames are in the batch's buffer, or with `ring` in the
    /// receive ring of that interface.
    fn flush(&mut self, iface: Iface, ring: Option<Iface>) {
        let Some(b) = self.batch.as_mut() else {
            return;
        };
        let i = usize::from(iface == Iface::Back);
        if b.txq[i].is_empty() {
            return;
        }
        let port = pick(iface, &self.front, &self.back);
        let ring = ring.and_then(|r| pick(r, &self.front, &self.back).ring.as_ref());
        let (q, msgs, bufs) = (&b.txq[i], &mut b.tx_msgs, &b.bufs);
        let f = drain(
            q.len(),
            |start| match ring {
                Some(r) => r.send(port.fd, msgs, &q[start..]),
                None => sys::send_frames(port.fd, msgs, bufs, &q[start..]),
            },
            || wait_writable(port.fd),
        );
        b.txq[i].clear();
        b.stats.tx_calls += f.calls;
        self.sent(iface, f);
    }

    /// Counts what one send did on `iface` (frames given up as tx errors
    /// of the interface and by reason), logging the first error once.
    fn sent(&mut self, iface: Iface, f: Flushed) {
        let (port, i) = match iface {
            Iface::Front => (&self.front, 0),
            Iface::Back => (&self.back, 1),
        };
        self.io.packets_out += f.sent;
        self.io.tx_retries += f.retries;
        self.io.tx_lost(iface, f.dropped);
        if let Some(e) = f.error {
            if !self.logged_tx_error[i] {
                self.logged_tx_error[i] = true;
                eprintln!(
                    "balancer: send error on {} '{}': {e} ({} frames dropped after {} retries, counted by reason; logged once)",
                    port.role,
                    port.name,
                    f.dropped.total(),
                    f.retries
                );
            }
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Forward { iface, len } => {
                // The engine never grows a frame; a longer length would be a
                // bug: dropped and counted, as on the batched path.
                let Some(frame) = self.buf.get(..len) else {
                    self.io.tx_lost(iface, ONE_OTHER);
                    return;
                };
                let port = pick(iface, &mut self.front, &mut self.back);
                let f = port.send(frame);
                self.sent(iface, f);
            }
            Action::DeliverLocal { offset, len } => tun_write(
                self.tun.as_mut(),
                &self.buf,
                (offset, len),
                &mut self.io,
                &mut self.logged_tx_error[2],
            ),
            Action::Drop(_) => {}
        }
    }

    /// False when the loop should end: no signal yet keeps it going; the
    /// first signal starts the leave and drain (with peers), which ends
    /// after the drain period, when no flow is left, or at a second signal.
    fn keep_running(&mut self) -> bool {
        if !sys::stop_requested() {
            return true;
        }
        if sys::signal_count() >= 2 {
            return false;
        }
        let start = self.start;
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        match self.drain_until {
            None => {
                let d = c.node.leave(start.elapsed(), wall_ms());
                c.sock.send(&d);
                self.membership();
                eprintln!(
                    "balancer: leaving: announced to peers; serving established flows for up to {} ms (a second signal exits now)",
                    self.drain.as_millis()
                );
                self.drain_until = Some(Instant::now() + self.drain);
                true
            }
            Some(t) => {
                let now = Instant::now();
                if now >= t {
                    return false;
                }
                // A full table scan: at most once per tick.
                if now.duration_since(self.flows_checked) < self.tick {
                    return true;
                }
                self.flows_checked = now;
                self.flows_left()
            }
        }
    }

    /// Whether the table still holds a flow that is not closing.
    fn flows_left(&self) -> bool {
        self.bal
            .conntrack()
            .state_counts()
            .iter()
            .any(|(s, n)| *n > 0 && !matches!(s, TcpState::TimeWait | TcpState::Close))
    }

    /// Applies the checker's results: transitions mark targets up or down
    /// in the engine; no healthy target (or an operator drain) withdraws
    /// the node from ownership.
    fn health_results(&mut self) {
        let now = self.start.elapsed();
        let Some(ch) = self.checks.as_mut() else {
            return;
        };
        while let Ok((i, r)) = ch.results.try_recv() {
            let Some(t) = ch.health.record(i, now, r.clone()) else {
                continue;
            };
            let target = ch.targets.get(i).copied().unwrap_or(Target::Local);
            self.bal.set_up(target, t.up);
            eprintln!(
                "balancer: target {target} is {}{}",
                if t.up { "up" } else { "DOWN" },
                r.err().map_or(String::new(), |e| format!(" ({e})"))
            );
        }
        self.update_withdrawal("health checks");
    }

    /// Withdraws from ownership when drained or no target is healthy;
    /// `by` says what asked (for the log line).
    fn update_withdrawal(&mut self, by: &str) {
        let healthy = self.checks.as_ref().is_none_or(|c| c.health.any_up());
        let want = self.drained || !healthy;
        if let Some(c) = self.cluster.as_mut() {
            if c.node.withdrawn() != want {
                c.node.set_withdrawn(want);
                eprintln!(
                    "balancer: {} ownership ({by}: {})",
                    if want {
                        "withdrawing from"
                    } else {
                        "rejoining"
                    },
                    match (self.drained, healthy) {
                        (true, _) => "drained",
                        (false, true) => "not drained, a target is healthy",
                        (false, false) => "no healthy target",
                    }
                );
                // Announce now rather than at the next deadline.
                let now = self.start.elapsed();
                if let Some(d) = c.node.tick(now, wall_ms()) {
                    c.sock.send(&d);
                }
            }
        }
    }

    /// When the membership node next needs a tick.
    fn membership_deadline(&self) -> Instant {
        match &self.cluster {
            Some(c) => {
                let d = c.node.next_deadline();
                self.start
                    .checked_add(d)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            }
            None => Instant::now() + Duration::from_secs(3600),
        }
    }

    /// Reads every queued heartbeat into the membership node (refusals are
    /// counted there).
    fn receive_heartbeats(&mut self) {
        let now = self.start.elapsed();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        for _ in 0..64 {
            let Some(d) = c.sock.recv(&mut c.buf) else {
                break;
            };
            let _ = c.node.receive(now, wall_ms(), d);
        }
    }

    /// Ticks the membership node (sending what is due) and gives a changed
    /// view to the engine; prints the ready line once the node claims.
    fn membership(&mut self) {
        let now = self.start.elapsed();
        let Some(c) = self.cluster.as_mut() else {
            if let Some(line) = self.ready_line.take() {
                eprintln!("{line}");
            }
            return;
        };
        if now >= c.node.next_deadline() {
            if let Some(d) = c.node.tick(now, wall_ms()) {
                c.sock.send(&d);
            }
        }
        if c.node.version() != c.applied {
            c.applied = c.node.version();
            let members = c.node.members();
            if let Err(e) = self.bal.set_membership(members.clone()) {
                eprintln!("balancer: membership refused by the engine: {e}");
            }
            let ids: Vec<u32> = members.iter().map(|m| m.id).collect();
            let cause = c
                .node
                .history()
                .last()
                .map_or("start".to_string(), |h| format!("{:?} {}", h.cause, h.node));
            eprintln!(
                "balancer: membership {ids:?} ({cause}), {} buckets owned here",
                self.bal.ownership().bucket_count(self.bal.node_id())
            );
        }
        if c.node.state() == State::Active {
            if let Some(line) = self.ready_line.take() {
                eprintln!("{line}");
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.start.elapsed();
        self.bal.tick(now);
        for (i, port) in [&self.front, &self.back].into_iter().enumerate() {
            // Reading resets the kernel's count: add it up here.
            if let Ok(n) = sys::packet_drops(port.fd) {
                self.io.rx_dropped[i] += n;
            }
        }
        let ips = self.resolver.due(now);
        if !ips.is_empty() {
            let src = self.back.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED);
            for ip in ips {
                let f = arp_request(self.back.mac, src, ip);
                let r = self.back.send(&f);
                self.io.arp_requests += r.sent;
                // Not a forwarded packet: only a loss is counted.
                self.sent(Iface::Back, Flushed { sent: 0, ..r });
            }
        }
        let t = Instant::now();
        let dt = t.duration_since(self.rate.at).as_secs_f64();
        if dt >= 1.0 {
            self.rate.rx_pps = (self.io.packets_in - self.rate.in_) as f64 / dt;
            self.rate.tx_pps = (self.io.packets_out - self.rate.out) as f64 / dt;
            self.rate = Rate {
                at: t,
                in_: self.io.packets_in,
                out: self.io.packets_out,
                ..self.rate
            };
        }
        self.answer();
    }

    /// Answers the control thread's pending requests.
    fn answer(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            match r {
                Request::Doc(reply) => {
                    let _ = reply.try_send(self.doc());
                }
                Request::Command(c, reply) => {
                    let _ = reply.try_send(self.command(c));
                }
            }
        }
    }

    /// Carries out an operator command.
    fn command(&mut self, c: Command) -> Result<String, String> {
        match c {
            Command::Drain | Command::Undrain => {
                if self.cluster.is_none() {
                    return Err("no peers configured: nobody would take over the buckets".into());
                }
                self.drained = c == Command::Drain;
                self.update_withdrawal("control");
                Ok(if self.drained {
                    "drained: no new flows here; established flows continue".into()
                } else {
                    "undrained: rejoining ownership".into()
                })
            }
            Command::Weight { target, weight } => {
                if target == Target::Local && !self.bal.snapshot().bi_active {
                    return Err("bi-active is off: the local server takes no flows".into());
                }
                if self.bal.set_weight(target, weight) {
                    eprintln!("balancer: weight of {target} set to {weight} (control)");
                    Ok(format!("weight of {target} set to {weight}"))
                } else {
                    Err(format!("no target {target}"))
                }
            }
        }
    }

    fn process(&self) -> ProcessInfo {
        let cpu = sys::thread_cpu_time().saturating_sub(self.cpu0);
        let io = &self.io;
        let per = |n: u64| {
            if n == 0 {
                0.0
            } else {
                cpu.as_nanos() as f64 / n as f64
            }
        };
        ProcessInfo {
            pid: std::process::id(),
            uptime_secs: self.start.elapsed().as_secs_f64(),
            rx_pps: self.rate.rx_pps,
            tx_pps: self.rate.tx_pps,
            packets_in: io.packets_in,
            packets_out: io.packets_out,
            cpu_secs: cpu.as_secs_f64(),
            cpu_ns_per_packet_in: per(io.packets_in),
            cpu_ns_per_packet_out: per(io.packets_out),
            tx_errors_front: io.tx_errors_front,
            tx_errors_back: io.tx_errors_back,
            tx_retries: io.tx_retries,
            tx_would_block: io.tx_drops.would_block,
            tx_no_buffers: io.tx_drops.no_buffers,
            tx_other_errors: io.tx_drops.other,
            tables_installed: io.tables_installed,
            tun_errors: io.tun_errors,
            rx_oversize: io.rx_oversize,
            rx_errors: io.rx_errors,
            rx_dropped_front: io.rx_dropped[0],
            rx_dropped_back: io.rx_dropped[1],
            io: self.front.io.name(),
            arp_requests: io.arp_requests,
            arp_seen: io.arp_seen,
            unresolved: self.resolver.unresolved(),
            early_drop: self.early_drop.clone(),
        }
    }

    fn doc(&self) -> StatusDoc {
        let snapshot = self.bal.snapshot();
        let membership = self
            .cluster
            .as_ref()
            .map(|c| c.node.doc(self.start.elapsed(), snapshot.owned_buckets));
        let health = self
            .checks
            .as_ref()
            .map(|c| c.health.doc(self.start.elapsed()));
        StatusDoc {
            snapshot,
            process: self.process(),
            membership,
            health,
        }
    }

    fn summary(&self) {
        let p = self.process();
        let s = self.bal.snapshot();
        let drops: u64 = s.drops.values().sum();
        eprintln!(
            "balancer: exiting after {:.1} s: {} frames in, {} out (front {}, back {}, local {}), {} dropped; packet thread cpu {:.3} s = {:.0} ns per frame in, {:.0} ns per packet out",
            p.uptime_secs,
            p.packets_in,
            p.packets_out,
            s.tx_front,
            s.tx_back,
            s.delivered_local,
            drops,
            p.cpu_secs,
            p.cpu_ns_per_packet_in,
            p.cpu_ns_per_packet_out
        );
        if let Some(b) = &self.batch {
            let st = b.stats;
            let avg = if st.rx_calls == 0 {
                0.0
            } else {
                st.rx_frames as f64 / st.rx_calls as f64
            };
            let reads = if self.front.io == IoMode::Ring {
                "ring reads"
            } else {
                "recvmmsg calls"
            };
            eprintln!(
                "balancer: batches of up to {}: {} {reads} ({avg:.1} frames each), {} sendmmsg calls; {} + {} frames dropped by the kernel in front of the sockets (front + back)",
                b.size(),
                st.rx_calls,
                st.tx_calls,
                self.io.rx_dropped[0],
                self.io.rx_dropped[1]
            );
        }
    }
}
