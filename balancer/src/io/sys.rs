//! The few system calls std and pnet do not offer: the AF_PACKET socket
//! options, TUNSETIFF, a self-pipe woken by signals, poll(2), the thread
//! CPU clock, and batched frame I/O (recvmmsg(2)/sendmmsg(2) over
//! preallocated headers). Every `unsafe` block of the binary lives here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use super::ring::{RingFrame, RingLayout};

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
/// sends itself. With `qdisc_bypass`, frames sent go straight to the driver
/// (PACKET_QDISC_BYPASS), skipping the interface's queueing discipline.
/// Returns the socket and the effective (rcvbuf, sndbuf).
pub fn packet_socket(
    rcvbuf: u32,
    sndbuf: u32,
    qdisc_bypass: bool,
) -> io::Result<(OwnedFd, u32, u32)> {
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
    if qdisc_bypass {
        setsockopt_int(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
    }
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
/// SIGINT/SIGTERM received so far.
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// How many SIGINT/SIGTERM arrived (the second one ends a drain).
pub fn signal_count() -> u32 {
    SIGNALS.load(Ordering::Relaxed)
}

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
    SIGNALS.fetch_add(1, Ordering::Relaxed);
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

/// One received frame of a [`recv_frames`] batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxFrame {
    /// The frame's real length (it may exceed the slot when cut).
    pub len: usize,
    /// The frame did not fit its slot: only a prefix was stored.
    pub truncated: bool,
}

/// Preallocated message headers and iovecs for recvmmsg(2)/sendmmsg(2), so
/// the per-batch path allocates nothing. The pointers inside are rewritten
/// from borrowed slices right before each call and never used after it.
pub struct MsgVec {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

impl std::fmt::Debug for MsgVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgVec")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

impl MsgVec {
    /// Headers for up to `cap` messages (at least 1) of one iovec each.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: mmsghdr is plain old data (pointers, lengths, flags); the
        // all-zero value (null pointers, zero lengths) is valid.
        let hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            hdrs: vec![hdr; cap],
            iovs: vec![iov; cap],
        }
    }

    /// Messages per call at most.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Points header `i` (no address, no control data) at its iovec.
    fn point(&mut self, i: usize, base: *mut libc::c_void, len: usize) {
        self.iovs[i] = libc::iovec {
            iov_base: base,
            iov_len: len,
        };
        let h = &mut self.hdrs[i];
        h.msg_hdr.msg_name = std::ptr::null_mut();
        h.msg_hdr.msg_namelen = 0;
        h.msg_hdr.msg_iov = &mut self.iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = std::ptr::null_mut();
        h.msg_hdr.msg_controllen = 0;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }
}

/// Reads up to `out.len()` frames (bounded by the headers' capacity and by
/// the number of whole `slot`-byte slots in `buf`) with one recvmmsg(2)
/// (MSG_DONTWAIT): frame `i` lands at `buf[i * slot..]` and is described by
/// `out[i]`. `Ok(0)`: nothing queued.
pub fn recv_frames(
    fd: RawFd,
    m: &mut MsgVec,
    buf: &mut [u8],
    slot: usize,
    out: &mut [RxFrame],
) -> io::Result<usize> {
    if slot == 0 {
        return Ok(0);
    }
    let mut n = 0;
    for (i, chunk) in buf
        .chunks_exact_mut(slot)
        .take(out.len().min(m.capacity()))
        .enumerate()
    {
        m.point(i, chunk.as_mut_ptr().cast(), chunk.len());
        n = i + 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: headers 0..n point at iovecs of `m` that describe disjoint
    // chunks of `buf`, all borrowed (mutably) for the duration of the call;
    // no address or control buffers; a null timeout is allowed.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            m.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    let got = (r as usize).min(n);
    for (o, h) in out.iter_mut().zip(&m.hdrs[..got]) {
        let len = h.msg_len as usize;
        *o = RxFrame {
            len,
            truncated: len > slot || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(got)
}

/// Sends the frames `buf[off..off + len]`, for `(off, len)` in `frames`
/// (at most the headers' capacity), with one sendmmsg(2) (MSG_DONTWAIT) on
/// a bound packet socket. Returns how many leading frames the kernel took
/// (at least 1), or the error of the first one. A range outside `buf` ends
/// the batch before it (`InvalidInput` if it is the first).
pub fn send_frames(
    fd: RawFd,
    m: &mut MsgVec,
    buf: &[u8],
    frames: &[(usize, usize)],
) -> io::Result<usize> {
    // SAFETY: `buf` is borrowed for the whole call, so all of it stays
    // readable and unchanged while sendmmsg reads it.
    unsafe { send_region(fd, m, buf.as_ptr(), buf.len(), frames) }
}

/// [`send_frames`] over `len` bytes at `base`.
///
/// # Safety
/// Every range of `frames` that lies inside `base..base + len` must be
/// readable and not written by anyone for the duration of the call.
unsafe fn send_region(
    fd: RawFd,
    m: &mut MsgVec,
    base: *const u8,
    len: usize,
    frames: &[(usize, usize)],
) -> io::Result<usize> {
    let mut n = 0;
    for &(off, flen) in frames.iter().take(m.capacity()) {
        if off.checked_add(flen).is_none_or(|end| end > len) {
            break;
        }
        // sendmmsg only reads through the pointer; `off` is inside the region.
        m.point(n, base.wrapping_add(off).cast_mut().cast(), flen);
        n += 1;
    }
    if n == 0 {
        return if frames.is_empty() {
            Ok(0)
        } else {
            // A bare kind: no allocation on the packet path.
            Err(io::ErrorKind::InvalidInput.into())
        };
    }
    // SAFETY: headers 0..n point at iovecs of `m` describing ranges inside
    // the region, which the caller keeps readable and unchanged during the
    // call; the kernel only reads them (and writes `msg_len` into the
    // headers we own).
    let r = unsafe {
        libc::sendmmsg(
            fd,
            m.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r as usize).min(n))
}

/// A TPACKET_V2 receive ring of a packet socket, mapped into this process
/// (`--io ring`; geometry and header reading in [`super::ring`]).
///
/// Slots are handed over in order: the kernel fills slot after slot and
/// sets each one's status word to "user"; [`RxRing::frame`] looks at the
/// slots from the read head on, and [`RxRing::release`] gives the oldest
/// ones back (status "kernel") and moves the head. While a slot is ours
/// the kernel neither reads nor writes it, so its bytes can be borrowed
/// mutably, rewritten and sent from.
pub struct RxRing {
    base: std::ptr::NonNull<u8>,
    layout: RingLayout,
    /// Next slot to read (counts up forever; taken modulo the ring).
    head: usize,
}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("layout", &self.layout)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// Sets up a TPACKET_V2 receive ring of `layout` on the packet socket `fd`
/// (bound or not) and maps it. From then on received frames go to the ring,
/// no longer to the socket's queue.
pub fn rx_ring(fd: RawFd, layout: RingLayout) -> io::Result<RxRing> {
    let v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, v2)?;
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "ring too large");
    let c = |v: usize| libc::c_uint::try_from(v).map_err(|_| too_big());
    let req = libc::tpacket_req {
        tp_block_size: c(layout.block_size)?,
        tp_block_nr: c(layout.blocks)?,
        tp_frame_size: c(layout.frame_size)?,
        tp_frame_nr: c(layout.frames())?,
    };
    // SAFETY: `req` lives across the call and the length matches its type.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            (&req as *const libc::tpacket_req).cast(),
            std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
        )
    })?;
    // SAFETY: a fresh shared mapping of the ring the kernel just allocated
    // for `fd`, of exactly its size; the result is checked before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            layout.bytes(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = std::ptr::NonNull::new(p.cast::<u8>())
        .ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(RxRing {
        base,
        layout,
        head: 0,
    })
}

impl RxRing {
    /// The ring's geometry.
    pub fn layout(&self) -> RingLayout {
        self.layout
    }

    /// The status word of the slot that starts at `off` in the mapping.
    fn status_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is a slot start inside the mapping (from
        // `slot_offset`), 16-byte aligned (page-aligned blocks, slot sizes
        // multiple of 16), and the first 4 bytes of a slot are the status
        // word the kernel also accesses atomically; the mapping lives as
        // long as `self`.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The frame in the `k`-th slot from the read head, if the kernel has
    /// handed it over (slots are handed over in order, so the first slot
    /// that is not ours ends a batch), with the offset of its first byte in
    /// the mapping (for [`RxRing::bytes_mut`] and [`RxRing::send`]).
    pub fn frame(&self, k: usize) -> Option<(usize, RingFrame)> {
        let off = self.layout.slot_offset(self.head + k);
        let status = self.status_at(off).load(Ordering::Acquire);
        if status & super::ring::STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the slot is ours (status read with Acquire above), so the
        // kernel's writes to its header are visible and it no longer
        // writes it; the header is the first 32 bytes of the slot.
        let h = unsafe { &*self.base.as_ptr().add(off).cast::<libc::tpacket2_hdr>() };
        let f = super::ring::read_header(
            status,
            h.tp_len,
            h.tp_snaplen,
            h.tp_mac,
            self.layout.frame_size,
        );
        Some((off + f.data, f))
    }

    /// The `len` bytes at `at` for reading and rewriting in place: a frame
    /// as [`RxRing::frame`] gave it (offset and length) since the last
    /// [`RxRing::release`].
    pub fn bytes_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        debug_assert!(at
            .checked_add(len)
            .is_some_and(|end| end <= self.layout.bytes()));
        // SAFETY: `read_header` keeps a frame within its slot, so `at..at +
        // len` is inside the mapping and inside a slot that is ours until
        // `release`; `&mut self` keeps any other borrow of the ring out
        // while this one lives.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(at), len) }
    }

    /// Sends frames given as (offset in the mapping, length), as
    /// [`send_frames`] does from a buffer. Offsets must be those of frames
    /// read since the last release (see [`RxRing::frame`]).
    pub fn send(&self, fd: RawFd, m: &mut MsgVec, frames: &[(usize, usize)]) -> io::Result<usize> {
        // SAFETY: the ranges the loop queues are frames read from slots that
        // are ours until `release`, which needs `&mut self` and so cannot
        // run during this call; the kernel does not write our slots.
        unsafe { send_region(fd, m, self.base.as_ptr(), self.layout.bytes(), frames) }
    }

    /// Gives the `n` oldest slots back to the kernel and moves the head past them.
    pub fn release(&mut self, n: usize) {
        for k in 0..n {
            let off = self.layout.slot_offset(self.head + k);
            self.status_at(off)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.head = self.head.wrapping_add(n) % self.layout.frames();
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `rx_ring`, unmapped once; no borrow of
        // it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.layout.bytes()) };
    }
}

/// The size of a memory page (4096 when the system does not say).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(r).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Frames the kernel dropped for the packet socket `fd` since the last call
/// (PACKET_STATISTICS, which also resets the count): a full socket buffer or ring.
pub fn packet_drops(fd: RawFd) -> io::Result<u64> {
    // SAFETY: tpacket_stats is plain old data; all-zero is valid.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` and `len` live across the call and `len` is its size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    })?;
    Ok(u64::from(st.tp_drops))
}

/// `union bpf_attr`, zero-filled (the kernel refuses non-zero bytes past
/// the fields it knows), written field by field at the uapi offsets.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        BpfAttr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    #[cfg(test)]
    fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;

/// bpf(2); returns the new descriptor (or 0 for commands that make none).
fn bpf(cmd: libc::c_long, attr: &mut BpfAttr) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a valid, initialised 128-byte bpf_attr that lives
    // across the call; every pointer stored in it was set by the caller to
    // a buffer that also outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<BpfAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as libc::c_int)
    }
}

/// Loads a tc (sched_cls) program given as encoded instructions; on a
/// verifier refusal the error carries the verifier's last lines.
pub fn bpf_load_tc(insns: &[u8], name: &str) -> io::Result<OwnedFd> {
    static LICENSE: &[u8] = b"MIT\0";
    let mut log = vec![0u8; 16 * 1024];
    let mut pname = [0u8; 16];
    for (d, s) in pname.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut a = BpfAttr::new();
    a.u32(0, BPF_PROG_TYPE_SCHED_CLS)
        .u32(4, (insns.len() / 8) as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, LICENSE.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .u32(68, BPF_TCX_INGRESS);
    a.0[48..64].copy_from_slice(&pname);
    match bpf(BPF_PROG_LOAD, &mut a) {
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            if tail.is_empty() {
                Err(e)
            } else {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(io::Error::new(
                    e.kind(),
                    format!("{e}; verifier: {}", tail.join(" | ")),
                ))
            }
        }
    }
}

/// Attaches a loaded tc program to `ifindex`'s ingress (tcx) through a BPF
/// link: the program stays attached exactly as long as the returned
/// descriptor is open (this process's lifetime at most).
pub fn bpf_tcx_attach(prog: RawFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut a = BpfAttr::new();
    a.u32(0, prog as u32)
        .u32(4, ifindex)
        .u32(8, BPF_TCX_INGRESS);
    let fd = bpf(BPF_LINK_CREATE, &mut a)?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs a loaded tc program once over `frame` in the kernel
/// (BPF_PROG_TEST_RUN) and returns its verdict: what tests check the
/// program's behaviour with.
#[cfg(test)]
pub fn bpf_test_run(prog: RawFd, frame: &[u8]) -> io::Result<i32> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut a = BpfAttr::new();
    a.u32(0, prog as u32)
        .u32(8, frame.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.read_u32(4) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected AF_UNIX datagram pair: recvmmsg/sendmmsg work on it as on
    /// a packet socket (one datagram per message), without root.
    fn dgram_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        // SAFETY: both descriptors are fresh and owned only here.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn batched_send_and_receive_round_trip() {
        let (a, b) = dgram_pair();
        let mut tx = MsgVec::new(4);
        let data: Vec<u8> = (0u8..64).collect();
        // Three frames out of one buffer; the third is longer than a slot.
        let frames = [(0, 5), (10, 8), (20, 12)];
        assert_eq!(
            send_frames(a.as_raw_fd(), &mut tx, &data, &frames).unwrap(),
            3
        );
        let mut rx = MsgVec::new(4);
        let mut buf = vec![0u8; 4 * 8];
        let mut out = [RxFrame::default(); 4];
        let n = recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 8, &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            out[0],
            RxFrame {
                len: 5,
                truncated: false
            }
        );
        assert_eq!(&buf[..5], &data[..5]);
        assert_eq!(
            out[1],
            RxFrame {
                len: 8,
                truncated: false
            }
        );
        assert_eq!(&buf[8..16], &data[10..18]);
        assert!(out[2].truncated, "{:?}", out[2]);
        assert_eq!(&buf[16..24], &data[20..28]);
        // Nothing queued: Ok(0), not an error.
        assert_eq!(
            recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 8, &mut out).unwrap(),
            0
        );
    }

    #[test]
    fn batches_are_bounded_by_headers_slots_and_output() {
        let (a, b) = dgram_pair();
        let mut tx = MsgVec::new(2);
        let data = [7u8; 16];
        let frames = [(0, 4), (4, 4), (8, 4)];
        // Only as many as there are headers go per call.
        assert_eq!(
            send_frames(a.as_raw_fd(), &mut tx, &data, &frames).unwrap(),
            2
        );
        assert_eq!(
            send_frames(a.as_raw_fd(), &mut tx, &data, &frames[2..]).unwrap(),
            1
        );
        let mut rx = MsgVec::new(8);
        let mut out = [RxFrame::default(); 8];
        // Two whole slots in the buffer: two frames, the third stays queued.
        let mut buf = vec![0u8; 2 * 4 + 3];
        assert_eq!(
            recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 4, &mut out).unwrap(),
            2
        );
        assert_eq!(
            recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 4, &mut out[..1]).unwrap(),
            1
        );
        assert_eq!(
            recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 0, &mut out).unwrap(),
            0
        );
    }

    #[test]
    fn a_range_outside_the_buffer_is_refused_not_read() {
        let (a, b) = dgram_pair();
        let mut tx = MsgVec::new(4);
        let data = [1u8; 8];
        let e = send_frames(a.as_raw_fd(), &mut tx, &data, &[(4, 8)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = send_frames(a.as_raw_fd(), &mut tx, &data, &[(usize::MAX, 2)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // A bad range ends the batch before it; the good ones before it go.
        assert_eq!(
            send_frames(a.as_raw_fd(), &mut tx, &data, &[(0, 2), (6, 4)]).unwrap(),
            1
        );
        assert_eq!(send_frames(a.as_raw_fd(), &mut tx, &data, &[]).unwrap(), 0);
        let mut rx = MsgVec::new(4);
        let mut buf = vec![0u8; 4 * 8];
        let mut out = [RxFrame::default(); 4];
        assert_eq!(
            recv_frames(b.as_raw_fd(), &mut rx, &mut buf, 8, &mut out).unwrap(),
            1
        );
        assert_eq!(out[0].len, 2);
    }

    #[test]
    fn a_full_socket_buffer_is_would_block() {
        let (a, _b) = dgram_pair();
        let mut tx = MsgVec::new(64);
        let data = vec![0u8; 1024];
        let frames = [(0usize, 1024usize); 64];
        // Fill the peer's queue until sendmmsg reports EAGAIN (never blocks).
        let mut err = None;
        for _ in 0..10_000 {
            if let Err(e) = send_frames(a.as_raw_fd(), &mut tx, &data, &frames) {
                err = Some(e);
                break;
            }
        }
        let e = err.expect("a socket buffer never filled up");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    }
}
