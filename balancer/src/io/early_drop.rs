//! Early drop: keep the LB node's kernel from carrying the frames the
//! balancer handles up its own stack only to discard them.
//!
//! Without it, every VIP frame on `front` goes through `ip_rcv` to the
//! harness's nftables prerouting drop, and every NATed reply on `back` (a
//! real server answering a client) gets a full route lookup that fails
//! (`ip_forward` is 0) before `ip_error` discards it. AF_PACKET taps see a
//! frame before tc ingress does, so a tcx ingress program can drop it right
//! after the balancer's socket has taken its copy.
//!
//! The program is attached through a BPF link that the balancer process
//! owns: it disappears when the balancer exits or is killed, so a dead
//! balancer's node falls back to the static nftables drop underneath (the
//! kernel must never answer for the VIP itself). What is dropped here is
//! exactly what the kernel would have dropped later, never anything it
//! would have used: frames to the node's own addresses, multicast
//! (heartbeats), ARP and everything not IPv4 pass.
//!
//! This file is pure (instruction encoding); loading and attaching are in
//! [`super::sys`].

use std::net::Ipv4Addr;

/// What one interface's program drops; everything else passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// IPv4 frames to any of these destinations (`front`: the VIP).
    To(Vec<Ipv4Addr>),
    /// IPv4 TCP and ICMP frames to any destination other than these (`back`:
    /// the interface's own addresses), multicast and broadcast excepted.
    TcpIcmpNotTo(Vec<Ipv4Addr>),
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (little-endian host: x86_64, aarch64).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// tcx verdicts (`enum tcx_action_base`).
pub const TCX_NEXT: i32 = -1;
/// Drop the frame.
pub const TCX_DROP: i32 = 2;

// Opcodes (class | op | source) and registers.
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND32_K: u8 = 0x54;
const JA: u8 = 0x05;
const JGT_X: u8 = 0x2d;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
/// 32-bit compare: a register loaded by LDX_W is zero-extended while a
/// 64-bit compare would sign-extend the immediate.
const JEQ32_K: u8 = 0x16;
const EXIT: u8 = 0x95;
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

/// `struct __sk_buff` offsets of `data` and `data_end`.
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
/// Ethernet header (14) + the IPv4 header up to the destination address (20).
const MIN_FRAME: i32 = 34;
const ETHERTYPE_OFF: i16 = 12;
const IP_PROTO_OFF: i16 = 23;
const IP_DST_OFF: i16 = 30;
/// 0x0800 as read by a little-endian 16-bit load of the wire bytes 08 00.
const ETHERTYPE_IPV4_LE: i32 = 0x0008;

#[derive(Clone, Copy)]
enum To {
    Pass,
    Drop,
    /// Skip this many instructions after the jump.
    Skip(i16),
}

struct Asm {
    insns: Vec<Insn>,
    fixups: Vec<(usize, To)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: To) {
        self.fixups.push((self.insns.len(), to));
        self.op(code, dst, src, 0, imm);
    }

    /// Appends the two exits and resolves every jump to them.
    fn finish(mut self) -> Vec<Insn> {
        let drop_at = self.insns.len();
        self.op(MOV64_K, R0, 0, 0, TCX_DROP);
        self.op(EXIT, 0, 0, 0, 0);
        let pass_at = self.insns.len();
        self.op(MOV64_K, R0, 0, 0, TCX_NEXT);
        self.op(EXIT, 0, 0, 0, 0);
        for (at, to) in self.fixups {
            let off = match to {
                To::Pass => pass_at as i64 - at as i64 - 1,
                To::Drop => drop_at as i64 - at as i64 - 1,
                To::Skip(n) => i64::from(n),
            };
            // Programs are a few dozen instructions: always in range.
            self.insns[at].off = off as i16;
        }
        self.insns
    }
}

/// An address as the 32-bit little-endian load of its wire bytes reads it.
fn wire_le(a: Ipv4Addr) -> i32 {
    i32::from_le_bytes(a.octets())
}

/// The tcx ingress program for `rule`.
pub fn program(rule: &Rule) -> Vec<Insn> {
    let mut a = Asm {
        insns: Vec::new(),
        fixups: Vec::new(),
    };
    // r2 = data, r3 = data_end; pass anything shorter than an IPv4 header.
    a.op(LDX_W, R2, R1, SKB_DATA, 0);
    a.op(LDX_W, R3, R1, SKB_DATA_END, 0);
    a.op(MOV64_X, R4, R2, 0, 0);
    a.op(ADD64_K, R4, 0, 0, MIN_FRAME);
    a.jump(JGT_X, R4, R3, 0, To::Pass);
    a.op(LDX_H, R5, R2, ETHERTYPE_OFF, 0);
    a.jump(JNE_K, R5, 0, ETHERTYPE_IPV4_LE, To::Pass);
    match rule {
        Rule::To(dsts) => {
            a.op(LDX_W, R5, R2, IP_DST_OFF, 0);
            for d in dsts {
                a.jump(JEQ32_K, R5, 0, wire_le(*d), To::Drop);
            }
            a.jump(JA, 0, 0, 0, To::Pass);
        }
        Rule::TcpIcmpNotTo(local) => {
            a.op(LDX_B, R5, R2, IP_PROTO_OFF, 0);
            a.jump(JEQ_K, R5, 0, libc::IPPROTO_TCP, To::Skip(1));
            a.jump(JNE_K, R5, 0, libc::IPPROTO_ICMP, To::Pass);
            a.op(LDX_W, R5, R2, IP_DST_OFF, 0);
            for l in local {
                a.jump(JEQ32_K, R5, 0, wire_le(*l), To::Pass);
            }
            a.jump(JEQ32_K, R5, 0, wire_le(Ipv4Addr::BROADCAST), To::Pass);
            // Multicast: the first octet (the low byte here) is 224..=239.
            a.op(MOV64_X, R6, R5, 0, 0);
            a.op(AND32_K, R6, 0, 0, 0xf0);
            a.jump(JEQ32_K, R6, 0, 0xe0, To::Pass);
            a.jump(JA, 0, 0, 0, To::Drop);
        }
    }
    a.finish()
}

/// The program as the bytes `BPF_PROG_LOAD` takes.
pub fn encode(p: &[Insn]) -> Vec<u8> {
    p.iter().flat_map(|i| i.encode()).collect()
}

/// A human summary for the startup line and `/stats`.
pub fn describe(rule: &Rule) -> String {
    let list = |v: &[Ipv4Addr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match rule {
        Rule::To(d) => format!("IPv4 to {}", list(d)),
        Rule::TcpIcmpNotTo(l) => format!("IPv4 TCP/ICMP not to {}", list(l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal interpreter of exactly the instructions `program` emits,
    /// run over a frame: the verdict the kernel will give (the root test in
    /// `sys` checks the same frames in the kernel itself).
    fn run(p: &[Insn], frame: &[u8]) -> i32 {
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        let load = |at: i64, n: usize| -> i64 {
            let at = at as usize;
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&frame[at..at + n]);
            i64::from_le_bytes(b)
        };
        // r1 is a context: data at "address" 0, data_end at len.
        for _ in 0..1000 {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                LDX_W if s == 1 => {
                    r[d] = if i.off == SKB_DATA {
                        0
                    } else {
                        frame.len() as i64
                    }
                }
                LDX_W => r[d] = load(r[s] + i64::from(i.off), 4),
                LDX_H => r[d] = load(r[s] + i64::from(i.off), 2),
                LDX_B => r[d] = load(r[s] + i64::from(i.off), 1),
                MOV64_X => r[d] = r[s],
                MOV64_K => r[d] = i64::from(i.imm),
                ADD64_K => r[d] += i64::from(i.imm),
                AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as i64,
                JA => pc = (pc as i64 + i64::from(i.off)) as usize,
                JGT_X | JEQ_K | JNE_K | JEQ32_K => {
                    let take = match i.code {
                        JGT_X => (r[d] as u64) > (r[s] as u64),
                        JEQ_K => r[d] == i64::from(i.imm),
                        JNE_K => r[d] != i64::from(i.imm),
                        _ => r[d] as u32 == i.imm as u32,
                    };
                    if take {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => return r[0] as i32,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program did not exit")
    }

    pub(crate) fn frame(ethertype: u16, proto: u8, dst: Ipv4Addr, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(14)];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if len >= 34 {
            f[14] = 0x45;
            f[23] = proto;
            f[26..30].copy_from_slice(&[198, 18, 0, 10]);
            f[30..34].copy_from_slice(&dst.octets());
        }
        f
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
    const OWN: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    #[test]
    fn front_drops_only_ipv4_to_the_vip() {
        let p = program(&Rule::To(vec![VIP]));
        assert_eq!(run(&p, &frame(0x0800, 6, VIP, 60)), TCX_DROP);
        assert_eq!(run(&p, &frame(0x0800, 17, VIP, 60)), TCX_DROP);
        assert_eq!(run(&p, &frame(0x0800, 6, OWN, 60)), TCX_NEXT);
        assert_eq!(run(&p, &frame(0x0806, 0, VIP, 60)), TCX_NEXT, "ARP");
        assert_eq!(run(&p, &frame(0x0800, 6, VIP, 33)), TCX_NEXT, "short");
        let mc = Ipv4Addr::new(239, 255, 77, 1);
        assert_eq!(run(&p, &frame(0x0800, 17, mc, 60)), TCX_NEXT, "heartbeat");
    }

    #[test]
    fn addresses_with_the_high_bit_set_compare_right() {
        // 198.18.1.200: its last octet makes the little-endian word negative.
        let high = Ipv4Addr::new(198, 18, 1, 200);
        let p = program(&Rule::To(vec![high]));
        assert!(wire_le(high) < 0);
        assert_eq!(run(&p, &frame(0x0800, 6, high, 60)), TCX_DROP);
        assert_eq!(run(&p, &frame(0x0800, 6, VIP, 60)), TCX_NEXT);
    }

    #[test]
    fn back_drops_tcp_and_icmp_not_to_its_own_addresses() {
        let p = program(&Rule::TcpIcmpNotTo(vec![OWN]));
        assert_eq!(
            run(&p, &frame(0x0800, 6, CLIENT, 60)),
            TCX_DROP,
            "NATed reply"
        );
        assert_eq!(run(&p, &frame(0x0800, 1, CLIENT, 60)), TCX_DROP, "ICMP");
        assert_eq!(
            run(&p, &frame(0x0800, 6, OWN, 60)),
            TCX_NEXT,
            "health check"
        );
        assert_eq!(run(&p, &frame(0x0800, 17, CLIENT, 60)), TCX_NEXT, "UDP");
        let mc = Ipv4Addr::new(224, 0, 0, 18);
        assert_eq!(run(&p, &frame(0x0800, 6, mc, 60)), TCX_NEXT, "multicast");
        assert_eq!(
            run(&p, &frame(0x0800, 1, Ipv4Addr::BROADCAST, 60)),
            TCX_NEXT
        );
        assert_eq!(run(&p, &frame(0x86dd, 6, CLIENT, 60)), TCX_NEXT, "IPv6");
        assert_eq!(run(&p, &frame(0x0800, 6, CLIENT, 20)), TCX_NEXT, "short");
        // With no address of its own, every unicast TCP/ICMP frame is dropped.
        let p = program(&Rule::TcpIcmpNotTo(vec![]));
        assert_eq!(run(&p, &frame(0x0800, 6, OWN, 60)), TCX_DROP);
    }

    #[test]
    fn encoding_matches_the_kernel_layout() {
        let i = Insn {
            code: LDX_W,
            dst: R5,
            src: R2,
            off: IP_DST_OFF,
            imm: -2,
        };
        assert_eq!(i.encode(), [0x61, 0x25, 30, 0, 0xfe, 0xff, 0xff, 0xff]);
        let p = program(&Rule::To(vec![VIP]));
        assert_eq!(encode(&p).len(), p.len() * 8);
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
    }

    /// The same verdicts from the kernel itself: the verifier accepts both
    /// programs and BPF_PROG_TEST_RUN gives what the interpreter above gave.
    #[test]
    fn the_kernel_accepts_the_programs_and_agrees() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let msg = "SKIP: early_drop kernel test needs root (bpf); NOTHING WAS TESTED";
            if std::env::var_os("CI").is_some() {
                panic!("{msg} -- under CI this is a failure");
            }
            eprintln!("\n*** {msg} ***\n");
            return;
        }
        use std::os::fd::AsRawFd;
        let cases = [
            (Rule::To(vec![VIP]), frame(0x0800, 6, VIP, 60), TCX_DROP),
            (Rule::To(vec![VIP]), frame(0x0800, 6, OWN, 60), TCX_NEXT),
            (Rule::To(vec![VIP]), frame(0x0806, 0, VIP, 60), TCX_NEXT),
            // (BPF_PROG_TEST_RUN refuses an IPv4 frame shorter than an IP
            // header: the short case is the interpreter's; the verifier
            // itself refuses a program whose loads are not bounds-checked.)
            (
                Rule::TcpIcmpNotTo(vec![OWN]),
                frame(0x0800, 6, CLIENT, 60),
                TCX_DROP,
            ),
            (
                Rule::TcpIcmpNotTo(vec![OWN]),
                frame(0x0800, 1, CLIENT, 60),
                TCX_DROP,
            ),
            (
                Rule::TcpIcmpNotTo(vec![OWN]),
                frame(0x0800, 6, OWN, 60),
                TCX_NEXT,
            ),
            (
                Rule::TcpIcmpNotTo(vec![OWN]),
                frame(0x0800, 17, CLIENT, 60),
                TCX_NEXT,
            ),
            (
                Rule::TcpIcmpNotTo(vec![OWN]),
                frame(0x0800, 6, Ipv4Addr::new(224, 0, 0, 18), 60),
                TCX_NEXT,
            ),
        ];
        for (rule, f, want) in cases {
            let p = program(&rule);
            assert_eq!(run(&p, &f), want, "interpreter: {rule:?}");
            let fd = crate::io::sys::bpf_load_tc(&encode(&p), "bal_test")
                .unwrap_or_else(|e| panic!("{rule:?}: load: {e}"));
            let got = crate::io::sys::bpf_test_run(fd.as_raw_fd(), &f).unwrap_or_else(|e| {
                panic!("{rule:?}: test run on {} bytes {f:02x?}: {e}", f.len())
            });
            assert_eq!(got, want, "kernel: {rule:?} on {f:02x?}");
        }
    }

    #[test]
    fn describe_names_the_addresses() {
        assert_eq!(describe(&Rule::To(vec![VIP])), "IPv4 to 198.18.1.100");
        assert_eq!(
            describe(&Rule::TcpIcmpNotTo(vec![OWN, VIP])),
            "IPv4 TCP/ICMP not to 198.18.2.1,198.18.1.100"
        );
    }
}
