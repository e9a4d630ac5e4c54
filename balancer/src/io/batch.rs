//! Batched frame I/O state for `--io mmsg`: the preallocated frame slots
//! that recvmmsg(2) fills, the per-interface queues of frames to forward
//! (offsets into those slots, sent with one sendmmsg(2) per interface and
//! batch), and [`drain`], the pure retry/drop policy for a queue.
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

/// What flushing one send queue did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames given up (socket buffer full, dropped by the device, or
    /// refused): counted as tx errors.
    pub dropped: u64,
    /// Send calls made.
    pub calls: u64,
    /// The last error seen, for a log line.
    pub error: Option<io::Error>,
}

/// Sends a queue of `n` frames through `send(start)`, which sends frames
/// `start..` in one call and returns how many leading ones were taken (or
/// the error of frame `start`). A partial send is retried from the first
/// frame not taken; EAGAIN (socket buffer full) drops the rest of the
/// queue rather than waiting; any other error (ENOBUFS: the device dropped
/// it) drops that one frame and goes on. Every call sends or drops at least
/// one frame, so there are at most `n` calls and the loop never blocks.
pub fn drain(n: usize, mut send: impl FnMut(usize) -> io::Result<usize>) -> Flushed {
    let mut f = Flushed::default();
    let mut start = 0;
    while start < n {
        f.calls += 1;
        match send(start) {
            Ok(k) if k > 0 => {
                let k = k.min(n - start);
                f.sent += k as u64;
                start += k;
            }
            Ok(_) => {
                // Nothing taken and no error: give the frame up so the loop ends.
                f.dropped += 1;
                start += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                f.dropped += (n - start) as u64;
                f.error = Some(e);
                break;
            }
            Err(e) => {
                f.dropped += 1;
                start += 1;
                f.error = Some(e);
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_send_is_one_call() {
        let f = drain(5, |start| Ok(5 - start));
        assert_eq!((f.sent, f.dropped, f.calls), (5, 0, 1));
        assert!(f.error.is_none());
    }

    #[test]
    fn empty_queue_makes_no_call() {
        let f = drain(0, |_| panic!("no call expected"));
        assert_eq!((f.sent, f.dropped, f.calls), (0, 0, 0));
    }

    #[test]
    fn partial_send_is_retried_from_the_first_frame_not_taken() {
        let mut starts = Vec::new();
        let f = drain(10, |start| {
            starts.push(start);
            Ok(3.min(10 - start))
        });
        assert_eq!(starts, vec![0, 3, 6, 9]);
        assert_eq!((f.sent, f.dropped, f.calls), (10, 0, 4));
    }

    #[test]
    fn eagain_drops_the_rest_without_retrying() {
        let mut calls = 0;
        let f = drain(8, |start| {
            calls += 1;
            if start == 0 {
                Ok(2)
            } else {
                Err(io::Error::from_raw_os_error(libc::EAGAIN))
            }
        });
        assert_eq!(calls, 2);
        assert_eq!((f.sent, f.dropped), (2, 6));
        assert_eq!(f.error.map(|e| e.raw_os_error()), Some(Some(libc::EAGAIN)));
    }

    #[test]
    fn enobufs_drops_one_frame_and_goes_on() {
        // Frame 3 is refused once; the others go through.
        let f = drain(6, |start| match start {
            0 => Ok(3),
            3 => Err(io::Error::from_raw_os_error(libc::ENOBUFS)),
            s => Ok(6 - s),
        });
        assert_eq!((f.sent, f.dropped, f.calls), (5, 1, 3));
        assert_eq!(f.error.map(|e| e.raw_os_error()), Some(Some(libc::ENOBUFS)));
    }

    #[test]
    fn a_sender_that_takes_nothing_cannot_loop_forever() {
        let f = drain(4, |_| Ok(0));
        assert_eq!((f.sent, f.dropped, f.calls), (0, 4, 4));
        // Over-reporting is clamped to the queue.
        let f = drain(2, |_| Ok(99));
        assert_eq!((f.sent, f.dropped, f.calls), (2, 0, 1));
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
