//! The few system calls std and pnet do not offer: the AF_PACKET socket
//! options, TUNSETIFF, a self-pipe woken by signals, poll(2) and the
//! thread CPU clock. Every `unsafe` block of the binary lives here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` lives across the call and the length matches its type.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes passed.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// An unbound AF_PACKET raw socket (protocol 0: it receives nothing until
/// pnet binds it to one interface with ETH_P_ALL), with its buffers sized
/// and PACKET_IGNORE_OUTGOING set so the balancer never reads the frames it
/// sends itself. Returns the socket and the effective (rcvbuf, sndbuf).
pub fn packet_socket(rcvbuf: u32, sndbuf: u32) -> io::Result<(OwnedFd, u32, u32)> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = sock.as_raw_fd();
    for (force, plain, v) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcvbuf),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, sndbuf),
    ] {
        let v = v.min(i32::MAX as u32) as libc::c_int;
        // FORCE ignores rmem_max/wmem_max but needs CAP_NET_ADMIN.
        if setsockopt_int(raw, libc::SOL_SOCKET, force, v).is_err() {
            setsockopt_int(raw, libc::SOL_SOCKET, plain, v)?;
        }
    }
    setsockopt_int(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    // The kernel reports twice the requested value (bookkeeping overhead).
    let r = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF)? as u32 / 2;
    let s = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF)? as u32 / 2;
    Ok((sock, r, s))
}

/// Adds PACKET_MR_ALLMULTI on `ifindex`, so multicast frames (the VIP's
/// multicast MAC) pass NICs that filter them.
pub fn packet_allmulti(fd: RawFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = ifindex as libc::c_int;
    mr.mr_type = libc::PACKET_MR_ALLMULTI as libc::c_ushort;
    // SAFETY: `mr` lives across the call and the length matches its type.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `struct ifreq` as TUNSETIFF reads it (name, flags, padding to 40 bytes).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches to the TUN device `name` (IFF_TUN | IFF_NO_PI): writes inject
/// IPv4 packets into the kernel as if received on that device. The caller
/// checks the device exists first, since TUNSETIFF would otherwise create
/// a new, empty one.
pub fn tun_attach(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TUN name {name:?}: expected 1..=15 characters"),
        ));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` has its
    // layout and size (40 bytes) and lives across the call.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) })?;
    Ok(f)
}

/// The write end of the self-pipe, for the signal handler.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the byte lives across the
        // call. A full pipe (EAGAIN) already means "wake up".
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// A non-blocking self-pipe: the packet loop polls the read end; signal
/// handlers and the control thread write a byte to wake it.
#[derive(Debug)]
pub struct Waker {
    read: File,
    write: File,
}

impl Waker {
    /// Creates the pipe.
    pub fn new() -> io::Result<Self> {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
        // SAFETY: both descriptors are fresh and owned only here.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        Ok(Self { read, write })
    }
    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
    /// A handle that can wake the loop from another thread.
    pub fn handle(&self) -> io::Result<File> {
        self.write.try_clone()
    }
    /// Empties the pipe.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = io::Read::read(&mut &self.read, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    /// Routes SIGINT and SIGTERM to [`stop_requested`] and this pipe.
    pub fn install_signal_handlers(&self) -> io::Result<()> {
        WAKE_FD.store(self.write.as_raw_fd(), Ordering::Relaxed);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: sigaction is plain old data; all-zero is a valid value.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            // SAFETY: `sa` is initialised and the handler only touches
            // atomics and write(2), which are async-signal-safe.
            cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
        }
        Ok(())
    }
}

/// poll(2) over `fds` (timeout rounded up to whole milliseconds); EINTR
/// counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    // Round up: a sub-millisecond remainder must not become a busy poll(0) loop.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid slice of pollfd for its whole length.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; the clock id is a constant.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Reads and thereby clears a socket's pending error (SO_ERROR).
pub fn take_socket_error(fd: RawFd) -> io::Result<()> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR).map(|_| ())
}

/// Reads one frame from a non-blocking packet socket straight into `buf`.
/// `Ok(None)`: nothing queued. The length returned is the frame's real
/// length (MSG_TRUNC), which may exceed `buf.len()` when it was cut.
pub fn recv_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let r = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as usize))
}

/// Sends one frame on a bound packet socket (to its interface).
pub fn send_frame(fd: RawFd, frame: &[u8]) -> io::Result<()> {
    // SAFETY: `frame` is valid for reads of `frame.len()` bytes.
    let r = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
