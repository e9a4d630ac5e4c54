//! The heartbeat socket: UDP multicast on `front`, polled by the packet
//! thread next to the frame sockets.
//!
//! Why multicast with TTL 1 on the packet thread: the LB LAN already floods
//! multicast to every balancer (the VIP's frames arrive that way), a
//! group keeps heartbeats away from hosts that did not join it (unlike
//! broadcast, which every host on the segment must look at), TTL 1 keeps
//! them from ever being routed off the segment, and the socket is bound to
//! `front` (SO_BINDTODEVICE) so they share the fate of the client traffic.
//! Running it on the packet thread (its descriptor in the same poll(2), its
//! deadline in the poll timeout) means the membership view and the engine
//! have one owner and no lock; a heartbeat costs one datagram per interval,
//! nothing next to the frame rate. The cost: a packet thread stuck for
//! longer than `dead_after` intervals looks dead to its peers — which is
//! the truth for its clients too.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

/// The bound, joined, non-blocking heartbeat socket.
#[derive(Debug)]
pub struct HeartbeatSocket {
    sock: UdpSocket,
    group: SocketAddrV4,
    /// Datagrams that could not be sent.
    pub send_errors: u64,
}

impl HeartbeatSocket {
    /// Joins `group:port` on interface `iface` (whose IPv4 address is `local`).
    pub fn open(iface: &str, local: Ipv4Addr, group: Ipv4Addr, port: u16) -> anyhow::Result<Self> {
        let what = format!("heartbeat socket {group}:{port} on {iface} ({local})");
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .with_context(|| format!("creating the {what}"))?;
        s.set_reuse_address(true)?;
        s.bind_device(Some(iface.as_bytes()))
            .with_context(|| format!("binding the {what} to its interface (needs CAP_NET_RAW)"))?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            .with_context(|| format!("binding the {what}"))?;
        s.join_multicast_v4(&group, &local)
            .with_context(|| format!("joining the {what}"))?;
        s.set_multicast_if_v4(&local)?;
        s.set_multicast_ttl_v4(1)?;
        s.set_multicast_loop_v4(false)?;
        s.set_nonblocking(true)?;
        Ok(Self {
            sock: s.into(),
            group: SocketAddrV4::new(group, port),
            send_errors: 0,
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends one heartbeat to the group (a failure is counted: the next
    /// interval sends again).
    pub fn send(&mut self, datagram: &[u8]) {
        if self.sock.send_to(datagram, self.group).is_err() {
            self.send_errors += 1;
        }
    }

    /// Receives one queued datagram into `buf`; `None` when nothing is queued.
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        match self.sock.recv_from(buf) {
            Ok((n, _)) => buf.get(..n),
            Err(_) => None,
        }
    }
}
