//! Batched frame I/O state for `--io mmsg`: the preallocated frame slots
//! that recvmmsg(2) fills, the per-interface queues of frames to forward
//! (offsets into those slots, sent with one sendmmsg(2) per interface and
//! batch), and [`drain`], the pure retry/drop policy for a queue (also
//! used for single sends), with [`TxDrops`] counting what it gives up by reason.
//!
//! Nothing here allocates after [`Batch::new`]; the packet thread owns the
//! one [`Batch`].

use std::io;

use super::sys::{MsgVec, RxFrame};

/// Frames per batch when `--batch` is not given.
pub const DEFAULT_BATCH: usize = 64;
/// Largest accepted `--batch` (Linux caps one mmsg call at UIO_MAXIOV = 1024).
pub const MAX_BATCH: usize = 1024;

/// Counters of the batched path (summary line only).
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchStats {
    /// recvmmsg(2) calls that returned at least one frame.
    pub rx_calls: u64,
    /// Frames they returned.
    pub rx_frames: u64,
    /// sendmmsg(2) calls.
    pub tx_calls: u64,
}

/// Receive slots, send queues and message headers of the packet thread.
#[derive(Debug)]
pub struct Batch {
    /// Bytes per slot (the frame buffer size).
    pub slot: usize,
    /// `size` slots of `slot` bytes; frame `i` of a batch lives in slot `i`.
    pub bufs: Vec<u8>,
    /// What recvmmsg(2) put in each slot.
    pub rx: Vec<RxFrame>,
    /// Headers for recvmmsg(2).
    pub rx_msgs: MsgVec,
    /// Headers for sendmmsg(2).
    pub tx_msgs: MsgVec,
    /// Frames to send as (offset in `bufs`, length), indexed front = 0, back = 1.
    pub txq: [Vec<(usize, usize)>; 2],
    /// Frames asked of the next recvmmsg(2): [`next_want`] of the last
    /// result, so a trickle of single frames does not pay for setting up
    /// every header of a full batch on each call.
    pub want: usize,
    /// Call and frame counts.
    pub stats: BatchStats,
}

/// Smallest number of frames asked of one recvmmsg(2) call.
pub const MIN_WANT: usize = 8;

/// Frames to ask of the next recvmmsg(2) after one returned `got`: twice
/// that (so a full answer doubles the request until `size`), never below
/// [`MIN_WANT`] nor above `size`.
pub fn next_want(got: usize, size: usize) -> usize {
    got.saturating_mul(2).max(MIN_WANT).min(size)
}

impl Batch {
    /// Allocates everything for batches of `size` frames (clamped to
    /// 1..=[`MAX_BATCH`]) of up to `slot` bytes.
    pub fn new(size: usize, slot: usize) -> Self {
        let size = size.clamp(1, MAX_BATCH);
        Self {
            slot,
            bufs: vec![0; size * slot],
            rx: vec![RxFrame::default(); size],
            rx_msgs: MsgVec::new(size),
            tx_msgs: MsgVec::new(size),
            txq: [Vec::with_capacity(size), Vec::with_capacity(size)],
            want: size,
            stats: BatchStats::default(),
        }
    }

    /// Frames per batch.
    pub fn size(&self) -> usize {
        self.rx.len()
    }
}

/// Times one frame is retried after EAGAIN or ENOBUFS before it is given up.
pub const MAX_SEND_RETRIES: u32 = 3;
/// Longest wait for room in the socket buffer before a retry (poll POLLOUT).
pub const RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Frames given up, by the reason the kernel gave (each also counts as a
/// tx error of its interface).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxDrops {
    /// EAGAIN after [`MAX_SEND_RETRIES`] waits: the socket buffer stayed full.
    pub would_block: u64,
    /// ENOBUFS after [`MAX_SEND_RETRIES`] retries: the device queue dropped it.
    pub no_buffers: u64,
    /// Any other error (the frame is not retried).
    pub other: u64,
}

impl TxDrops {
    /// Counts `n` frames given up because of `e`.
    pub fn count(&mut self, e: &io::Error, n: u64) {
        match reason(e) {
            Retry::WouldBlock => self.would_block += n,
            Retry::NoBuffers => self.no_buffers += n,
            Retry::No => self.other += n,
        }
    }
    /// All of them.
    pub fn total(&self) -> u64 {
        self.would_block + self.no_buffers + self.other
    }
}

/// Whether a send error is worth a bounded retry, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    WouldBlock,
    NoBuffers,
    No,
}

fn reason(e: &io::Error) -> Retry {
    if e.kind() == io::ErrorKind::WouldBlock {
        Retry::WouldBlock
    } else if e.raw_os_error() == Some(libc::ENOBUFS) {
        Retry::NoBuffers
    } else {
        Retry::No
    }
}

/// What flushing one send queue did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames given up, by reason (counted as tx errors).
    pub dropped: TxDrops,
    /// Send calls made.
    pub calls: u64,
    /// Retries after EAGAIN or ENOBUFS.
    pub retries: u64,
    /// The last error seen, for a log line.
    pub error: Option<io::Error>,
}

/// Sends a queue of `n` frames through `send(start)`, which sends frames
/// `start..` in one call and returns how many leading ones were taken (or
/// the error of frame `start`). A partial send is retried from the first
/// frame not taken. EAGAIN (socket buffer full) and ENOBUFS (the device
/// queue dropped the frame) are retried up to [`MAX_SEND_RETRIES`] times,
/// each after `wait()` (which waits at most [`RETRY_WAIT`] for room);
/// then EAGAIN gives up the rest of the queue (the buffer stays full) and
/// ENOBUFS that one frame, counted by reason. Other errors give up that
/// frame at once. So the loop is bounded (at most `n * (MAX_SEND_RETRIES
/// + 1)` calls) and nothing is dropped uncounted.
pub fn drain(
    n: usize,
    mut send: impl FnMut(usize) -> io::Result<usize>,
    mut wait: impl FnMut(),
) -> Flushed {
    let mut f = Flushed::default();
    let mut start = 0;
    let mut tries = 0;
    while start < n {
        f.calls += 1;
        match send(start) {
            Ok(k) if k > 0 => {
                let k = k.min(n - start);
                f.sent += k as u64;
                start += k;
                tries = 0;
            }
            Ok(_) => {
                // Nothing taken and no error: give the frame up so the loop ends.
                f.dropped.other += 1;
                start += 1;
                tries = 0;
            }
            Err(e) => {
                let r = reason(&e);
                if r != Retry::No && tries < MAX_SEND_RETRIES {
                    tries += 1;
                    f.retries += 1;
                    wait();
                    continue;
                }
                let lost = if r == Retry::WouldBlock { n - start } else { 1 };
                f.dropped.count(&e, lost as u64);
                start += lost;
                tries = 0;
                f.error = Some(e);
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_wait() {}

    #[test]
    fn full_send_is_one_call() {
        let f = drain(5, |start| Ok(5 - start), no_wait);
        assert_eq!((f.sent, f.dropped.total(), f.calls), (5, 0, 1));
        assert!(f.error.is_none());
    }

    #[test]
    fn empty_queue_makes_no_call() {
        let f = drain(0, |_| panic!("no call expected"), no_wait);
        assert_eq!((f.sent, f.dropped.total(), f.calls), (0, 0, 0));
    }

    #[test]
    fn partial_send_is_retried_from_the_first_frame_not_taken() {
        let mut starts = Vec::new();
        let f = drain(
            10,
            |start| {
                starts.push(start);
                Ok(3.min(10 - start))
            },
            no_wait,
        );
        assert_eq!(starts, vec![0, 3, 6, 9]);
        assert_eq!((f.sent, f.dropped.total(), f.calls), (10, 0, 4));
    }

    fn err(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn eagain_waits_and_retries_then_sends() {
        // The buffer is full twice, then there is room again.
        let mut full = 2;
        let mut waits = 0;
        let f = drain(
            8,
            |start| {
                if start == 2 && full > 0 {
                    full -= 1;
                    return Err(err(libc::EAGAIN));
                }
                Ok(if start == 0 { 2 } else { 8 - start })
            },
            || waits += 1,
        );
        assert_eq!(waits, 2);
        assert_eq!((f.sent, f.dropped.total(), f.retries), (8, 0, 2));
    }

    #[test]
    fn eagain_that_persists_drops_the_rest_counted_as_would_block() {
        let mut calls = 0;
        let f = drain(
            8,
            |start| {
                calls += 1;
                if start == 0 {
                    Ok(2)
                } else {
                    Err(err(libc::EAGAIN))
                }
            },
            no_wait,
        );
        assert_eq!(calls, 2 + MAX_SEND_RETRIES);
        assert_eq!(f.sent, 2);
        assert_eq!(
            f.dropped,
            TxDrops {
                would_block: 6,
                ..TxDrops::default()
            }
        );
        assert_eq!(f.error.map(|e| e.raw_os_error()), Some(Some(libc::EAGAIN)));
    }

    #[test]
    fn enobufs_is_retried_then_drops_one_frame_and_goes_on() {
        // Frame 3 is refused once (then sent); frame 4 always.
        let mut refused3 = false;
        let f = drain(
            6,
            |start| match start {
                0 => Ok(3),
                3 if !refused3 => {
                    refused3 = true;
                    Err(err(libc::ENOBUFS))
                }
                3 => Ok(1),
                4 => Err(err(libc::ENOBUFS)),
                s => Ok(6 - s),
            },
            no_wait,
        );
        assert_eq!(f.sent, 5);
        assert_eq!(
            f.dropped,
            TxDrops {
                no_buffers: 1,
                ..TxDrops::default()
            }
        );
        assert_eq!(f.retries, 1 + u64::from(MAX_SEND_RETRIES));
        assert_eq!(f.error.map(|e| e.raw_os_error()), Some(Some(libc::ENOBUFS)));
    }

    #[test]
    fn other_errors_drop_one_frame_without_retry() {
        let f = drain(
            3,
            |start| {
                if start == 1 {
                    Err(err(libc::EMSGSIZE))
                } else {
                    Ok(1)
                }
            },
            || panic!("no wait for a hard error"),
        );
        assert_eq!((f.sent, f.dropped.other, f.retries), (2, 1, 0));
    }

    #[test]
    fn a_sender_that_takes_nothing_cannot_loop_forever() {
        let f = drain(4, |_| Ok(0), no_wait);
        assert_eq!((f.sent, f.dropped.other, f.calls), (0, 4, 4));
        // Over-reporting is clamped to the queue.
        let f = drain(2, |_| Ok(99), no_wait);
        assert_eq!((f.sent, f.dropped.total(), f.calls), (2, 0, 1));
        // Errors forever: bounded calls.
        let f = drain(5, |_| Err(err(libc::ENOBUFS)), no_wait);
        assert_eq!(f.calls, 5 * u64::from(MAX_SEND_RETRIES + 1));
        assert_eq!(f.dropped.no_buffers, 5);
    }

    #[test]
    fn the_request_follows_the_traffic_within_bounds() {
        assert_eq!(next_want(0, 64), MIN_WANT);
        assert_eq!(next_want(1, 64), MIN_WANT);
        assert_eq!(next_want(8, 64), 16);
        assert_eq!(next_want(16, 64), 32);
        assert_eq!(next_want(40, 64), 64);
        assert_eq!(next_want(64, 64), 64);
        // A batch smaller than MIN_WANT is the ceiling.
        assert_eq!(next_want(0, 4), 4);
        assert_eq!(next_want(usize::MAX, 64), 64);
    }

    #[test]
    fn batch_sizes_are_bounded() {
        assert_eq!(Batch::new(0, 2048).size(), 1);
        assert_eq!(Batch::new(5000, 2048).size(), MAX_BATCH);
        let b = Batch::new(4, 2048);
        assert_eq!(b.bufs.len(), 4 * 2048);
        assert_eq!(b.txq[0].capacity(), 4);
    }
}
