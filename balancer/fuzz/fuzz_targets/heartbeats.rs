//! Coverage-guided fuzz target for the heartbeat path (`RUSTC_BOOTSTRAP=1
//! cargo fuzz run heartbeats` from `balancer/`): the input is a sequence of
//! datagrams, each prefixed by a time step byte (10 ms units) and a length
//! byte, received by a membership node with the invariants of
//! `balancer::fuzzing::run_heartbeat`. Random bytes exercise the parser's
//! refusals; the HMAC keeps them out of the state machine, which the
//! `fuzz_frames` example drives with signed datagrams.
#![no_main]

use std::time::Duration;

use balancer::fuzzing::{heartbeat_node, run_heartbeat};
use libfuzzer_sys::fuzz_target;

const WALL0: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(mut node) = heartbeat_node(Duration::ZERO, WALL0) else {
        panic!("fuzzing key refused");
    };
    let mut now = Duration::ZERO;
    let mut rest = data;
    while let [step, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        now += Duration::from_millis(u64::from(*step) * 10);
        let wall = WALL0 + now.as_millis() as u64;
        if let Err(e) = run_heartbeat(&mut node, now, wall, datagram) {
            panic!("{e}");
        }
        node.tick(now, wall);
        rest = next;
    }
});
