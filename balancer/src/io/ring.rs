//! The geometry of a TPACKET_V2 receive ring and the reading of its frame
//! headers (pure: the mapping itself is [`super::sys::RxRing`]).
//!
//! With `--io ring` each interface's socket hands frames over through a
//! ring of fixed-size slots shared with the kernel: the kernel copies a frame
//! into the next free slot and flips the slot's status word to "user"; the
//! packet thread reads it there, rewrites it in place, sends it on straight
//! from the slot, and flips the status back. Compared with recvmmsg(2) this
//! saves the system call and, per frame, the skb clone, its queueing and
//! the second copy out of it. TPACKET_V2 rather than V3: V3 hands over whole
//! blocks, and a block is only handed over when it is full or its timer
//! (a millisecond at least) expires, which would add up to that much latency
//! to every frame at low rates.

/// Bytes the kernel puts in front of the frame data in a V2 slot at most:
/// the header and `sockaddr_ll` aligned (52 → 64), then up to 16 bytes so
/// that the network header is 16-byte aligned (data at 66 for Ethernet).
pub const SLOT_OVERHEAD: usize = 80;

/// The shape of a ring, as `PACKET_RX_RING` takes it (`struct tpacket_req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Bytes per slot (header + frame), a multiple of 16.
    pub frame_size: usize,
    /// Bytes per block (page-aligned; the kernel allocates blocks separately).
    pub block_size: usize,
    /// Number of blocks.
    pub blocks: usize,
}

/// Slots per block are chosen so that a block is at least this many slots
/// (fewer, larger allocations) unless the ring is smaller.
const MIN_SLOTS_PER_BLOCK: usize = 8;

impl RingLayout {
    /// A ring whose slots hold frames of up to `frame_buffer - 1` bytes (the
    /// `--frame-buffer` contract: a frame filling the buffer counts as cut),
    /// spanning about `ring_bytes` (at least one block), with `page`-sized pages.
    pub fn new(frame_buffer: usize, ring_bytes: usize, page: usize) -> RingLayout {
        let page = page.max(1);
        let frame_size = (frame_buffer + SLOT_OVERHEAD).next_multiple_of(16);
        let block_size = (frame_size * MIN_SLOTS_PER_BLOCK).next_multiple_of(page);
        let blocks = (ring_bytes / block_size).max(1);
        RingLayout {
            frame_size,
            block_size,
            blocks,
        }
    }

    /// Slots in one block (the block's tail past the last whole slot is unused).
    pub fn frames_per_block(&self) -> usize {
        self.block_size / self.frame_size
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.frames_per_block() * self.blocks
    }

    /// Bytes of the mapping (every block, back to back).
    pub fn bytes(&self) -> usize {
        self.block_size * self.blocks
    }

    /// Where slot `i` (modulo the ring) starts in the mapping.
    pub fn slot_offset(&self, i: usize) -> usize {
        let i = i % self.frames();
        let fpb = self.frames_per_block();
        (i / fpb) * self.block_size + (i % fpb) * self.frame_size
    }
}

/// `TP_STATUS_USER`: the slot holds a frame for user space.
pub const STATUS_USER: u32 = 1;
/// `TP_STATUS_COPY`: the frame did not fit the slot (only a prefix is there).
pub const STATUS_COPY: u32 = 1 << 1;

/// A received frame, from its slot header (`struct tpacket2_hdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFrame {
    /// Offset of the frame's first byte (the Ethernet header) in the slot.
    pub data: usize,
    /// Bytes of the frame in the slot.
    pub len: usize,
    /// Only a prefix of the frame is in the slot (it was longer than the
    /// slot, or the header is inconsistent): never forwarded.
    pub cut: bool,
}

/// Reads a user-owned slot's header: `status`, `tp_len` (the frame's real
/// length), `tp_snaplen` (bytes stored) and `tp_mac` (where they start), for
/// a slot of `frame_size` bytes. A header pointing outside the slot is
/// reported as cut with length 0 rather than trusted.
pub fn read_header(
    status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    frame_size: usize,
) -> RingFrame {
    let (data, len) = (usize::from(tp_mac), tp_snaplen as usize);
    let inside = data
        .checked_add(len)
        .is_some_and(|end| end <= frame_size && data >= 32);
    if !inside {
        return RingFrame {
            data: 0,
            len: 0,
            cut: true,
        };
    }
    RingFrame {
        data,
        len,
        cut: status & STATUS_COPY != 0 || tp_snaplen < tp_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_for_the_default_buffers_holds_a_4095_byte_frame_per_slot() {
        let l = RingLayout::new(4096, 4 << 20, 4096);
        assert_eq!(l.frame_size, 4176);
        assert_eq!(l.frame_size % 16, 0);
        assert_eq!(l.block_size % 4096, 0);
        assert!(l.frames_per_block() >= MIN_SLOTS_PER_BLOCK);
        assert!(l.bytes() <= 4 << 20 && l.bytes() > (4 << 20) - l.block_size);
        // The kernel's constraint: frames = frames per block x blocks.
        assert_eq!(l.frames(), l.frames_per_block() * l.blocks);
        assert!(l.frame_size - SLOT_OVERHEAD >= 4096);
    }

    #[test]
    fn a_ring_smaller_than_one_block_still_has_one() {
        let l = RingLayout::new(2048, 1, 4096);
        assert_eq!(l.blocks, 1);
        assert!(l.frames() >= MIN_SLOTS_PER_BLOCK);
    }

    #[test]
    fn slots_never_straddle_blocks_and_wrap_around() {
        let l = RingLayout::new(2048, 1 << 20, 4096);
        let fpb = l.frames_per_block();
        for i in 0..l.frames() {
            let off = l.slot_offset(i);
            let block = off / l.block_size;
            assert_eq!(block, i / fpb);
            assert!(off % l.block_size + l.frame_size <= l.block_size);
        }
        assert_eq!(l.slot_offset(l.frames()), 0);
        assert_eq!(l.slot_offset(l.frames() + fpb), l.block_size);
    }

    #[test]
    fn headers_inside_the_slot_are_read_and_cut_frames_flagged() {
        let whole = read_header(STATUS_USER, 74, 74, 66, 2128);
        assert_eq!(
            whole,
            RingFrame {
                data: 66,
                len: 74,
                cut: false
            }
        );
        assert!(read_header(STATUS_USER | STATUS_COPY, 74, 74, 66, 2128).cut);
        assert!(read_header(STATUS_USER, 9000, 2062, 66, 2128).cut);
        // TP_STATUS_LOSING (4) only reports earlier drops: the frame itself is whole.
        assert!(!read_header(STATUS_USER | 4, 60, 60, 66, 2128).cut);
    }

    #[test]
    fn headers_pointing_outside_the_slot_are_not_trusted() {
        for (snap, mac) in [(2100, 66), (10, 2126), (u32::MAX, 66), (60, 0)] {
            let f = read_header(STATUS_USER, snap, snap, mac, 2128);
            assert!(f.cut && f.len == 0, "snaplen {snap} mac {mac}");
        }
    }
}
