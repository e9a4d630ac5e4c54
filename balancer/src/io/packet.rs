//! One interface's pnet datalink channel over an AF_PACKET socket we build
//! ourselves (buffers, PACKET_IGNORE_OUTGOING), handed to pnet through
//! `Config::socket_fd`; pnet binds it to the interface with ETH_P_ALL and
//! makes it non-blocking. The packet thread owns each [`Port`].

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use anyhow::{bail, Context};
use balancer::wire::MacAddr;
use pnet::datalink::{self, Channel, DataLinkReceiver, DataLinkSender, NetworkInterface};

use super::batch::{drain, Flushed, RETRY_WAIT};
use super::ring::RingLayout;
use super::sys;

/// How frames are read and sent once pnet has set the channel up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// pnet's receiver and sender: poll(0) + recvfrom + copy per frame read,
    /// poll + sendto per frame sent.
    Pnet,
    /// recv(MSG_DONTWAIT) straight into the engine's buffer and send(2) on
    /// the same (pnet-bound) socket: two system calls fewer per forwarded
    /// frame and no copy.
    Direct,
    /// Batched: one recvmmsg(2) reads up to `--batch` frames into
    /// preallocated slots, and the forwarded ones leave with one sendmmsg(2)
    /// per interface and batch (single frames, e.g. ARP, as `Direct`).
    Mmsg,
    /// A TPACKET_V2 receive ring per interface, mapped into the process:
    /// frames are read and rewritten in their ring slots (no system call
    /// per read, no skb clone or queueing in the kernel) and the forwarded
    /// ones leave from there with one sendmmsg(2) per interface and batch.
    Ring,
}

impl IoMode {
    /// The `--io` value (clap's name for it).
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// What one read attempt produced.
#[derive(Debug)]
pub enum Recv {
    /// A frame of this length is at the start of the buffer.
    Frame(usize),
    /// A frame did not fit the buffer (cut): dropped.
    Oversize,
    /// Nothing queued.
    Empty,
    /// A socket error.
    Error(io::Error),
}

/// Socket settings shared by both ports.
#[derive(Debug, Clone, Copy)]
pub struct PortOptions {
    /// Read/send path.
    pub io: IoMode,
    /// Read buffer (largest frame + 1).
    pub frame_buffer: usize,
    /// Requested SO_RCVBUF.
    pub rcvbuf: u32,
    /// Requested SO_SNDBUF.
    pub sndbuf: u32,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Send past the interface's qdisc (PACKET_QDISC_BYPASS).
    pub qdisc_bypass: bool,
}

/// A bound interface: pnet receiver and sender plus what the loop needs.
pub struct Port {
    /// Role in messages: "front" or "back".
    pub role: &'static str,
    /// Interface name.
    pub name: String,
    /// The socket (owned by pnet; polled by the loop).
    pub fd: RawFd,
    /// Interface MAC.
    pub mac: MacAddr,
    /// First IPv4 address of the interface, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// Effective receive buffer in bytes.
    pub rcvbuf: u32,
    /// pnet receiver (read timeout 0: the loop polls first).
    pub rx: Box<dyn DataLinkReceiver>,
    /// pnet sender.
    pub tx: Box<dyn DataLinkSender>,
    /// Read/send path.
    pub io: IoMode,
    /// The receive ring (`--io ring` only).
    pub ring: Option<sys::RxRing>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("role", &self.role)
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

/// Finds an interface by name, with the list of names in the error.
pub fn find_interface(name: &str, role: &str) -> anyhow::Result<NetworkInterface> {
    let all = datalink::interfaces();
    match all.iter().find(|i| i.name == name) {
        Some(i) => Ok(i.clone()),
        None => {
            let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
            bail!(
                "{role} interface '{name}' does not exist (interfaces here: {})",
                names.join(", ")
            )
        }
    }
}

/// The IPv4 addresses of an interface.
pub fn ipv4_addrs(i: &NetworkInterface) -> impl Iterator<Item = Ipv4Addr> + '_ {
    i.ips.iter().filter_map(|n| match n.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    })
}

/// First IPv4 address of an interface.
pub fn first_ipv4(i: &NetworkInterface) -> Option<Ipv4Addr> {
    ipv4_addrs(i).next()
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root / CAP_NET_RAW)",
        _ => "",
    }
}

impl Port {
    /// Opens `name` in the role `role` ("front" or "back").
    pub fn open(role: &'static str, name: &str, o: &PortOptions) -> anyhow::Result<Port> {
        let iface = find_interface(name, role)?;
        let Some(m) = iface.mac else {
            bail!(
                "{role} interface '{name}' has no MAC address (an Ethernet interface is required)"
            );
        };
        let mac = MacAddr([m.0, m.1, m.2, m.3, m.4, m.5]);
        if !iface.is_up() {
            eprintln!("balancer: warning: {role} interface '{name}' is down");
        }
        let (sock, rcvbuf, _) =
            sys::packet_socket(o.rcvbuf, o.sndbuf, o.qdisc_bypass).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open AF_PACKET socket on '{name}' ({role}): {e}{}",
                    hint(&e)
                )
            })?;
        let fd = sock.as_raw_fd();
        if !o.promisc {
            sys::packet_allmulti(fd, iface.index)
                .with_context(|| format!("PACKET_ADD_MEMBERSHIP allmulti on '{name}' ({role})"))?;
        }
        let cfg = datalink::Config {
            read_buffer_size: o.frame_buffer,
            write_buffer_size: o.frame_buffer,
            read_timeout: Some(Duration::ZERO),
            write_timeout: Some(Duration::from_millis(200)),
            promiscuous: o.promisc,
            // pnet takes ownership of the descriptor (closes it on error and on drop).
            socket_fd: Some(sock.into_raw_fd()),
            ..Default::default()
        };
        match datalink::channel(&iface, cfg) {
            Ok(Channel::Ethernet(tx, rx)) => {
                let (ring, io) = match o.io {
                    IoMode::Ring => match open_ring(fd, o, role, name) {
                        Ok(r) => (Some(r), IoMode::Ring),
                        Err(e) => {
                            eprintln!("balancer: warning: {e:#}; {role} uses --io mmsg instead");
                            (None, IoMode::Mmsg)
                        }
                    },
                    io => (None, io),
                };
                Ok(Port {
                    role,
                    name: name.to_string(),
                    fd,
                    mac,
                    ipv4: first_ipv4(&iface),
                    rcvbuf,
                    rx,
                    tx,
                    io,
                    ring,
                })
            }
            Ok(_) => bail!("pnet returned a non-Ethernet channel for '{name}' ({role})"),
            Err(e) => bail!(
                "cannot bind AF_PACKET socket to '{name}' ({role}): {e}{}",
                hint(&e)
            ),
        }
    }

    /// Reads the next frame into `buf` (without blocking).
    pub fn recv(&mut self, buf: &mut [u8]) -> Recv {
        match self.io {
            IoMode::Pnet => match self.rx.next() {
                // A frame filling pnet's buffer may have been cut.
                Ok(frame) if frame.len() >= buf.len() => Recv::Oversize,
                Ok(frame) => {
                    buf[..frame.len()].copy_from_slice(frame);
                    Recv::Frame(frame.len())
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    Recv::Empty
                }
                Err(e) => Recv::Error(e),
            },
            // (With a ring nothing reaches the socket's queue: the loop reads the ring.)
            IoMode::Direct | IoMode::Mmsg | IoMode::Ring => match sys::recv_frame(self.fd, buf) {
                Ok(Some(n)) if n > buf.len() => Recv::Oversize,
                Ok(Some(n)) => Recv::Frame(n),
                Ok(None) => Recv::Empty,
                Err(e) => Recv::Error(e),
            },
        }
    }

    /// Sends one frame under [`drain`]'s policy: EAGAIN and ENOBUFS are
    /// retried a bounded number of times (each after waiting at most
    /// [`RETRY_WAIT`] for room), and a frame given up is counted by reason.
    pub fn send(&mut self, frame: &[u8]) -> Flushed {
        let (fd, io, tx) = (self.fd, self.io, &mut self.tx);
        drain(
            1,
            |_| match io {
                IoMode::Pnet => match tx.send_to(frame, None) {
                    Some(r) => r.map(|()| 1),
                    None => Err(io::Error::other("pnet: frame larger than its write buffer")),
                },
                IoMode::Direct | IoMode::Mmsg | IoMode::Ring => {
                    sys::send_frame(fd, frame).map(|()| 1)
                }
            },
            || wait_writable(fd),
        )
    }
}

/// Maps a receive ring of about `--rcvbuf` bytes whose slots hold
/// `--frame-buffer` bytes, on the bound socket `fd`.
fn open_ring(fd: RawFd, o: &PortOptions, role: &str, name: &str) -> anyhow::Result<sys::RxRing> {
    let layout = RingLayout::new(o.frame_buffer, o.rcvbuf as usize, sys::page_size());
    sys::rx_ring(fd, layout).map_err(|e| {
        anyhow::anyhow!(
            "cannot set up a {} KiB receive ring ({} slots of {} bytes) on '{name}' ({role}): {e}{}",
            layout.bytes() >> 10,
            layout.frames(),
            layout.frame_size,
            hint(&e)
        )
    })
}

/// Waits at most [`RETRY_WAIT`] for room in `fd`'s send buffer (the
/// outcome does not matter: the retry that follows tells).
pub fn wait_writable(fd: RawFd) {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    }];
    let _ = sys::poll(&mut p, RETRY_WAIT);
}
