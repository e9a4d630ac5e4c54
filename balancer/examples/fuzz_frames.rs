//! Bounded random-mutation fuzzer for the engine (stable Rust; no
//! cargo-fuzz needed): runs generated, mutated and random frames through
//! three balancer configurations, and every eighth iteration a generated
//! heartbeat datagram through a membership node, checking the invariants
//! of `balancer::fuzzing` after each, until N frames or S seconds.
//!
//! Run: `cargo run --release -p balancer --example fuzz_frames -- [--iterations N] [--seconds S] [--seed X]`
//! Exit status 1 (with the seed, iteration and frame in hex) on a violation or panic.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use balancer::engine::Action;
use balancer::fuzzing::{
    balancers, gen_frame, gen_heartbeat, heartbeat_node, random_control, run_heartbeat, run_one,
    Rng,
};

fn main() -> anyhow::Result<()> {
    let mut iterations: u64 = 10_000_000;
    let mut seconds: f64 = 30.0;
    let mut seed: u64 = 0x5eed;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a}: missing value"))?;
        match a.as_str() {
            "--iterations" => {
                iterations = v
                    .parse()
                    .with_context(|| format!("--iterations: expected a count, got {v:?}"))?
            }
            "--seconds" => {
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds: expected a number, got {v:?}"))?
            }
            "--seed" => {
                seed = v
                    .parse()
                    .with_context(|| format!("--seed: expected an integer, got {v:?}"))?
            }
            other => bail!("unknown option {other:?} (expected --iterations, --seconds, --seed)"),
        }
    }
    // Silence the default hook: a panic is reported below with its input.
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
    let mut rng = Rng::new(seed);
    let mut bs = balancers();
    let mut now = Duration::ZERO;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    const WALL0: u64 = 1_800_000_000_000;
    let mut node = heartbeat_node(Duration::ZERO, WALL0)?;
    let start = Instant::now();
    let mut done = 0u64;
    while done < iterations && (!done.is_multiple_of(1024) || Instant::now() < deadline) {
        let (frame, front) = gen_frame(&mut rng);
        now += Duration::from_millis(rng.below(200) as u64);
        for (k, b) in bs.iter_mut().enumerate() {
            let r = catch_unwind(AssertUnwindSafe(|| run_one(b, now, &frame, front)));
            let action = match r {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => bail!(
                    "seed {seed} iteration {done} balancer {k}: {e}\nframe ({}): {frame:02x?}",
                    if front { "front" } else { "back" }
                ),
                Err(_) => bail!(
                    "seed {seed} iteration {done} balancer {k}: PANIC\nframe ({}): {frame:02x?}",
                    if front { "front" } else { "back" }
                ),
            };
            let key = match action {
                Action::Forward { iface, .. } => format!("forward_{iface:?}").to_lowercase(),
                Action::DeliverLocal { .. } => "deliver_local".to_string(),
                Action::Drop(r) => format!("drop_{}", r.as_str()),
            };
            *outcomes.entry(key).or_insert(0) += 1;
            if rng.below(1000) == 0 {
                b.tick(now);
            }
            if rng.below(5000) == 0 {
                random_control(b, &mut rng);
            }
        }
        if done.is_multiple_of(8) {
            let wall = WALL0 + now.as_millis() as u64;
            let hb = gen_heartbeat(&mut rng, wall)?;
            let r = catch_unwind(AssertUnwindSafe(|| {
                let r = run_heartbeat(&mut node, now, wall, &hb);
                node.tick(now, wall);
                r
            }));
            let key = match r {
                Ok(Ok(None)) => "heartbeat_accepted".to_string(),
                Ok(Ok(Some(reason))) => format!("heartbeat_{}", reason.name()),
                Ok(Err(e)) => {
                    bail!("seed {seed} iteration {done} heartbeat: {e}\ndatagram: {hb:02x?}")
                }
                Err(_) => {
                    bail!("seed {seed} iteration {done} heartbeat: PANIC\ndatagram: {hb:02x?}")
                }
            };
            *outcomes.entry(key).or_insert(0) += 1;
        }
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("fuzz_frames: seed {seed}, {done} frames x {} balancers in {secs:.1} s ({:.0} frames/s), no violation", bs.len(), done as f64 / secs.max(1e-9));
    for (k, v) in &outcomes {
        println!("  {k:<28} {v:>12}");
    }
    // Counters that are not actions (summed over the balancers).
    let snaps: Vec<_> = bs.iter().map(|b| b.snapshot()).collect();
    let sum = |f: fn(&balancer::counters::Snapshot) -> u64| snaps.iter().map(f).sum::<u64>();
    println!(
        "  {:<28} {:>12}",
        "icmp_forwarded",
        sum(|s| s.icmp_forwarded)
    );
    println!(
        "  {:<28} {:>12}",
        "syn_recv_new_isn",
        sum(|s| s.syn_recv_new_isn)
    );
    Ok(())
}
