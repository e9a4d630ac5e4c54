//! The router check's capture (I/O): `harness router-watch`, run by
//! `harness run` inside the router's namespace, reads every TCP frame with
//! SYN set on the router's interfaces towards the balancers and servers
//! (every one but the clients': the client SYNs the router sends, the
//! SYN-ACKs it receives, from a balancer or, in DR, a real server)
//! through an AF_PACKET socket with a classic BPF filter, feeds them to
//! [`SynAckCounter`], and on SIGTERM/SIGINT writes the counts as JSON
//! (atomically) and exits 0.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::synack::{RouterCheck, SynAckCounter};

/// Printed on stderr once the socket is bound (what `harness run` waits for).
pub const READY_LINE: &str = "router-watch: capturing";

/// Largest frame read whole (the filter passes only SYN segments, which are small).
const FRAME_BUF: usize = 2048;

/// A capture socket bound to one interface.
pub struct Capture {
    fd: OwnedFd,
}

/// Classic BPF: accept IPv4, unfragmented TCP with SYN set (SYN and
/// SYN-ACK), drop the rest in the kernel. As `tcpdump -dd 'tcp[tcpflags] &
/// tcp-syn != 0'` would build it for Ethernet.
fn syn_filter() -> [libc::sock_filter; 11] {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        op(0x28, 0, 0, 12),     // 0: ldh [12] (ethertype)
        op(0x15, 0, 8, 0x0800), // 1: jeq IPv4, else drop
        op(0x30, 0, 0, 23),     // 2: ldb [23] (IP protocol)
        op(0x15, 0, 6, 6),      // 3: jeq TCP, else drop
        op(0x28, 0, 0, 20),     // 4: ldh [20] (flags, fragment offset)
        op(0x45, 4, 0, 0x1fff), // 5: jset fragment offset: drop
        op(0xb1, 0, 0, 14),     // 6: ldxb 4*([14]&0xf) (IP header length)
        op(0x50, 0, 0, 27),     // 7: ldb [x+27] (TCP flags)
        op(0x45, 0, 1, 0x02),   // 8: jset SYN: accept, else drop
        op(0x06, 0, 0, 0xffff), // 9: accept
        op(0x06, 0, 0, 0),      // 10: drop
    ]
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl Capture {
    /// Opens the socket (protocol 0: it receives nothing yet), attaches the
    /// filter, then binds it to `iface` for every protocol, so no frame of
    /// another interface or an unfiltered one is ever queued.
    pub fn open(iface: &str) -> io::Result<Capture> {
        let name = std::ffi::CString::new(iface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::other(format!(
                "no interface `{iface}` in this namespace"
            )));
        }
        // SAFETY: plain socket(2); the result is checked.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let filter = syn_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        let rcvbuf: libc::c_int = 8 << 20;
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf)?;
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` lives across the call and the length matches its type.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(Capture { fd })
    }

    /// Hands every queued frame to `f` (non-blocking).
    pub fn drain(&self, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let raw = self.fd.as_raw_fd();
        let mut buf = [0u8; FRAME_BUF];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let r =
                unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                    _ => Err(e),
                };
            }
            f(&buf[..r as usize]);
        }
    }

    /// Frames the kernel dropped for this socket since the last call (PACKET_STATISTICS).
    pub fn drops(&self) -> io::Result<u64> {
        // SAFETY: tpacket_stats is plain old data; all-zero is valid.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` live across the call and `len` is its size.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok(u64::from(st.tp_drops))
    }
}

/// Waits up to `timeout_ms` until one of `caps` has a frame queued (a
/// signal ends the wait early).
fn wait_any(caps: &[Capture], timeout_ms: i32) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = caps
        .iter()
        .map(|c| libc::pollfd {
            fd: c.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// `harness router-watch`: captures on every one of `ifaces` until `stop`
/// is set (the signal handler), then writes the counts to `out` atomically.
pub fn watch(
    ifaces: &[String],
    vip: SocketAddrV4,
    out: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<RouterCheck> {
    use anyhow::Context as _;
    let caps = ifaces
        .iter()
        .map(|i| Capture::open(i).with_context(|| format!("capture on {i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names = ifaces.join("+");
    eprintln!("{READY_LINE} on {names} for SYNs to {vip}");
    let mut counter = SynAckCounter::new(vip, &names);
    let mut drops = 0u64;
    let mut read_all = |counter: &mut SynAckCounter| -> anyhow::Result<()> {
        for (c, i) in caps.iter().zip(ifaces) {
            c.drain(&mut |frame| counter.push(frame))
                .with_context(|| format!("reading frames on {i}"))?;
            drops += c.drops().unwrap_or(0);
        }
        Ok(())
    };
    while !stop.load(Ordering::SeqCst) {
        wait_any(&caps, 100)?;
        read_all(&mut counter)?;
    }
    // What arrived before the signal is still queued: read it.
    read_all(&mut counter)?;
    let mut check = counter.check();
    check.capture_drops = drops;
    let mut bytes = serde_json::to_vec_pretty(&check)?;
    bytes.push(b'\n');
    loadgen::json_out::write_bytes_atomic(&bytes, out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("router-watch: {}", check.line().trim_end());
    Ok(check)
}
