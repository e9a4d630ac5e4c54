//! Coverage-guided fuzz target (`RUSTC_BOOTSTRAP=1 cargo fuzz run
//! engine_frames` from `balancer/`): the input is a sequence of frames,
//! each prefixed by a control byte (bit 0: front or back side, bits 1..7:
//! time step in 100 ms units) and a length byte; every frame goes through
//! a NAT and a DR balancer with the invariants of `balancer::fuzzing`.
#![no_main]

use std::time::Duration;

use balancer::config::Forwarding;
use balancer::engine::{Balancer, Interfaces};
use balancer::fuzzing::{config, run_one};
use balancer::sched::SchedulerKind;
use balancer::wire::MacAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let macs = Interfaces {
        front_mac: MacAddr([2, 0, 0, 0, 0, 0xf1]),
        back_mac: MacAddr([2, 0, 0, 0, 0, 0xb1]),
    };
    // wlc and rr: cheap to build per input (mh builds a 65537-slot table).
    let mut bs: Vec<Balancer> = [
        (Forwarding::Nat, SchedulerKind::Wlc),
        (Forwarding::Dr, SchedulerKind::Rr),
    ]
    .into_iter()
    .enumerate()
    .filter_map(|(i, (f, s))| {
        // The DR one skips TCP checksum verification, so that inputs
        // without a valid checksum still reach the deeper paths.
        let mut c = config(f, s);
        c.verify_checksums = i == 0;
        Balancer::new(&c, macs).ok()
    })
    .collect();
    assert_eq!(bs.len(), 2);
    let mut now = Duration::ZERO;
    let mut rest = data;
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(n);
        now += Duration::from_millis(u64::from(ctl >> 1) * 100);
        for b in &mut bs {
            if let Err(e) = run_one(b, now, frame, ctl & 1 == 0) {
                panic!("{e}");
            }
            b.tick(now);
        }
        rest = next;
    }
});
