//! Listening sockets: SO_REUSEPORT groups (one socket per worker, like nginx
//! workers), optional IP_FREEBIND, TCP_NODELAY inherited by accepted sockets,
//! and bind errors turned into one clear sentence.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listening socket could not be set up, with the address it was for.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {}", explain(.source))]
pub struct BindError {
    /// The address that was asked for.
    pub addr: SocketAddr,
    /// The system error.
    pub source: io::Error,
}

fn explain(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address already in use (another process is listening on this port)".into()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
        }
        io::ErrorKind::AddrNotAvailable => "address not available on this host (no interface \
             has it; pass --freebind to bind an address such as a VIP that is assigned later)"
            .into(),
        _ => e.to_string(),
    }
}

/// Options shared by every listening socket.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// listen(2) backlog.
    pub backlog: i32,
    /// Set IP_FREEBIND so an address not (yet) present on this host can be bound.
    pub freebind: bool,
}

/// Opens a non-blocking listening socket with SO_REUSEADDR, SO_REUSEPORT and
/// TCP_NODELAY (Linux copies it to every accepted socket, saving a system call
/// per connection).
pub fn bind(addr: SocketAddr, opts: ListenOptions) -> Result<TcpListener, BindError> {
    let wrap = |source| BindError { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(wrap)?;
    sock.set_reuse_address(true).map_err(wrap)?;
    sock.set_reuse_port(true).map_err(wrap)?;
    sock.set_nodelay(true).map_err(wrap)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(wrap)?;
    }
    if opts.freebind {
        if addr.is_ipv6() {
            sock.set_freebind_ipv6(true).map_err(wrap)?;
        } else {
            sock.set_freebind(true).map_err(wrap)?;
        }
    }
    sock.bind(&addr.into()).map_err(wrap)?;
    sock.listen(opts.backlog).map_err(wrap)?;
    sock.set_nonblocking(true).map_err(wrap)?;
    Ok(sock.into())
}

/// Fails with `AddrInUse` if any socket already listens on `addr`, even one in
/// somebody else's SO_REUSEPORT group. Without this check a second server
/// started by mistake on the same port would silently share its traffic.
/// The probe sets only SO_REUSEADDR, so TIME_WAIT leftovers do not count.
fn probe_exclusive(addr: SocketAddr, opts: ListenOptions) -> Result<(), BindError> {
    let wrap = |source| BindError { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(wrap)?;
    sock.set_reuse_address(true).map_err(wrap)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(wrap)?;
    }
    if opts.freebind {
        if addr.is_ipv6() {
            sock.set_freebind_ipv6(true).map_err(wrap)?;
        } else {
            sock.set_freebind(true).map_err(wrap)?;
        }
    }
    sock.bind(&addr.into()).map_err(wrap)
}

/// Opens `count` sockets in one SO_REUSEPORT group on `addr`, after checking
/// that nobody else listens there. With port 0 the first socket picks the
/// port and the others join it.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    opts: ListenOptions,
) -> Result<Vec<TcpListener>, BindError> {
    if addr.port() != 0 {
        probe_exclusive(addr, opts)?;
    }
    let first = bind(addr, opts)?;
    let actual = first
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    let mut out = Vec::with_capacity(count.max(1));
    out.push(first);
    for _ in 1..count {
        out.push(bind(actual, opts)?);
    }
    Ok(out)
}
